/* Cross-entropy (src/ops/cross_entropy.c): PyTorch parity on ordinary, huge
 * and tied logits (tests/fixtures/ops/cross_entropy.safetensors, written by
 * dev/ref/cross_entropy_ref.py), finite differences, += accumulation, the
 * arg-max count and the bad-label error.
 *
 * Tolerances: we sum the log-sum-exp in double and round once, torch works
 * in float32: the loss agrees to ~1e-6 relative; gradients are
 * (softmax − onehot)/N, a few float ulp apart: 1e-6 absolute on entries of
 * size ≤ 1/N.  Finite differences: the loss returns float, so L carries
 * ~6e-8·|L| of rounding; with h = 1e-2 that is ~1e-5 absolute, far below the
 * 1e-3 relative-to-max tolerance used. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/cross_entropy.h"
#include "test.h"

static void check_case(const safetensors *st, const char *prefix)
{
    char name[64];
    size_t n_logits, n_labels;
    snprintf(name, sizeof name, "%s.logits", prefix);
    float *logits = fixture_f32(st, name, &n_logits);
    snprintf(name, sizeof name, "%s.labels", prefix);
    float *lab = fixture_f32(st, name, &n_labels);
    int N = (int)n_labels, K = (int)(n_logits / n_labels);
    int *labels = malloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++)
        labels[i] = (int)lab[i];
    snprintf(name, sizeof name, "%s.cot", prefix);
    float *cot = fixture_f32(st, name, NULL);
    float *probs = alloc_zeros(n_logits), *grad = alloc_zeros(n_logits);
    float loss = cross_entropy_forward(probs, logits, labels, N, K);
    snprintf(name, sizeof name, "%s.loss", prefix);
    fixture_check(st, name, &loss, 1, 1e-6, 1e-6);
    cross_entropy_backward(grad, cot[0], probs, labels, N, K);
    snprintf(name, sizeof name, "%s.grad.logits", prefix);
    fixture_check(st, name, grad, n_logits, 1e-6, 1e-5);
    float correct = (float)count_correct(logits, labels, N, K);
    snprintf(name, sizeof name, "%s.correct", prefix);
    fixture_check(st, name, &correct, 1, 0, 0);
    for (size_t i = 0; i < n_logits; i++)
        CHECK(isfinite(probs[i]), "%s: probs[%zu] = %g", prefix, i, probs[i]);
    free(logits), free(lab), free(labels), free(cot), free(probs), free(grad);
}

static void test_cross_entropy_matches_torch(void)
{
    safetensors *st = fixture_open("ops/cross_entropy");
    check_case(st, "a");
    check_case(st, "big");
    check_case(st, "tie");
    safetensors_close(st);
}

typedef struct {
    float *logits, *probs;
    const int *labels;
    int N, K;
    float cot;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    return (double)c->cot * cross_entropy_forward(c->probs, c->logits, c->labels, c->N, c->K);
}

static void test_cross_entropy_finite_differences(void)
{
    int N = 5, K = 7, labels[5] = {0, 6, 3, 3, 1};
    float *logits = alloc_normal((size_t)N * K, 1.5f, 11), *probs = alloc_zeros((size_t)N * K);
    float *grad = alloc_zeros((size_t)N * K);
    ce_ctx c = {logits, probs, labels, N, K, 0.7f};
    cross_entropy_forward(probs, logits, labels, N, K);
    cross_entropy_backward(grad, c.cot, probs, labels, N, K);
    fd_check("cross_entropy dlogits", ce_loss, &c, logits, grad, (size_t)N * K, 1e-2, 1e-5, 1e-3, 0);
    free(logits), free(probs), free(grad);
}

static void test_cross_entropy_backward_adds(void)
{
    int N = 3, K = 4, labels[3] = {1, 0, 3};
    float *logits = alloc_normal(12, 1.0f, 5), *probs = alloc_zeros(12);
    float *once = alloc_zeros(12), *twice = alloc_normal(12, 1.0f, 6), *base = malloc(12 * sizeof(float));
    memcpy(base, twice, 12 * sizeof(float));
    cross_entropy_forward(probs, logits, labels, N, K);
    cross_entropy_backward(once, 1.0f, probs, labels, N, K);
    cross_entropy_backward(twice, 1.0f, probs, labels, N, K);
    for (int i = 0; i < 12; i++)
        base[i] += once[i];
    check_close("backward adds into dlogits", twice, base, 12, 1e-7, 1e-6);
    cross_entropy_backward(NULL, 1.0f, probs, labels, N, K); /* NULL: not needed, no crash */
    /* Each row of the gradient sums to 0 (softmax minus a one-hot). */
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += once[n * K + k];
        CHECK(fabs(s) < 1e-7, "row %d of dlogits sums to %g", n, s);
    }
    free(logits), free(probs), free(once), free(twice), free(base);
}

/* Logits 1000 apart (past double's exp), an empty batch, a batch of one. */
static void test_cross_entropy_edges(void)
{
    float wide[3] = {-500.0f, 500.0f, 0.0f}, p[3], d[3] = {0, 0, 0};
    int label = 2;
    float loss = cross_entropy_forward(p, wide, &label, 1, 3);
    CHECK(loss == 500.0f && p[1] == 1.0f && p[0] == 0.0f && p[2] == 0.0f, "logits 1000 apart: loss %g, p %g %g %g",
          (double)loss, (double)p[0], (double)p[1], (double)p[2]);
    cross_entropy_backward(d, 2.0f, p, &label, 1, 3); /* one row: the whole dloss */
    CHECK(d[0] == 0.0f && d[1] == 2.0f && d[2] == -2.0f, "one row's gradient %g %g %g", (double)d[0], (double)d[1],
          (double)d[2]);
    CHECK(cross_entropy_forward(p, wide, &label, 0, 3) == 0.0f, "an empty batch's loss is 0");
}

static void bad_label(void *ctx)
{
    float logits[6] = {0}, probs[6];
    int labels[2] = {1, 3};
    cross_entropy_forward(probs, logits, labels, 2, 3);
}

static void test_cross_entropy_bad_label_dies(void)
{
    expect_die("label out of range", bad_label, NULL, "label 3 of row 1 is outside [0, 3)");
}

int main(void)
{
    RUN(test_cross_entropy_matches_torch);
    RUN(test_cross_entropy_finite_differences);
    RUN(test_cross_entropy_backward_adds);
    RUN(test_cross_entropy_bad_label_dies);
    RUN(test_cross_entropy_edges);
    return test_summary();
}
