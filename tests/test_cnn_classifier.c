/* CNN classifier (the evaluation network): parameter table against the
 * PyTorch module, forward (features, logits, loss) and the full backward
 * (every parameter gradient by state-dict key, the input gradient) against
 * dev/ref/cnn_ref.py, finite differences, inference mode = train mode, the
 * configuration read back from a file, and clear errors for bad ones. */
#include <math.h>

#include "models/cnn_classifier.h"
#include "ops/cross_entropy.h"
#include "param_check.h"
#include "test.h"

static void test_cnn_table(void)
{
    safetensors *st = fixture_open("models/cnn_tiny");
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 3, .widths = {32, 64, 128}, .groups = 8,
                                      .num_classes = 10, .gn_eps = 1e-5f});
    long long want = safetensors_meta_ll(st, "param_count_32_64_128");
    CHECK((long long)param_count(&m.table, PARAM_TRAINABLE) == want, "parameters %zu, torch counts %lld",
          param_count(&m.table, PARAM_TRAINABLE), want);
    CHECK(m.dim == 128 && param_find(&m.table, "stages.2.norm2.bias") && param_find(&m.table, "head.bias") &&
              !param_find(&m.table, "stages.0.conv1.bias"),
          "key names differ from the reference");
    cnn_free(&m);
    /* Without a head: features only. */
    cnn_build(&m, &(cnn_config){.in_chans = 3, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f});
    CHECK(!param_find(&m.table, "head.weight") && param_count(&m.table, PARAM_TRAINABLE) == 4 * 27 + 4 * 36 + 16,
          "headless table: %zu parameters", param_count(&m.table, PARAM_TRAINABLE));
    cnn_free(&m);
    safetensors_close(st);
}

typedef struct {
    cnn_classifier *m;
    const float *w;
    cnn_acts *a;
    float *x, *cot, *features, *logits, *probs;
    int *labels;
    int B, K;
} cnn_ctx;

/* The fixture's scalar: cross-entropy(logits) + Σ features·cot. */
static double cnn_loss(void *p)
{
    cnn_ctx *c = p;
    cnn_forward(c->m, c->w, c->a, c->x, c->features, c->logits);
    double l = cross_entropy_forward(c->probs, c->logits, c->labels, c->B, c->K);
    return l + dot_f64(c->features, c->cot, (size_t)c->B * c->m->dim);
}

static void test_cnn_matches_torch(void)
{
    safetensors *st = fixture_open("models/cnn_tiny");
    cnn_classifier m;
    float *mw = cnn_from_checkpoint(&m, st, "", 0, PARAM_IGNORE_EXTRA);
    CHECK(m.cfg.in_chans == 1 && m.cfg.n_stages == 2 && m.cfg.widths[0] == 8 && m.cfg.widths[1] == 16 &&
              m.cfg.groups == 4 && m.cfg.num_classes == 5 && m.dim == 16,
          "configuration from the fixture: in %d stages %d widths %d,%d groups %d classes %d", m.cfg.in_chans,
          m.cfg.n_stages, m.cfg.widths[0], m.cfg.widths[1], m.cfg.groups, m.cfg.num_classes);
    const int B = 3, K = 5, D = 16, S = 16;
    const size_t nx = (size_t)B * S * S;
    float *x = fixture_f32(st, "x", NULL), *cot = fixture_f32(st, "cot.features", NULL);
    float *lab = fixture_f32(st, "labels", NULL), *want_loss = fixture_f32(st, "loss", NULL);
    int labels[3] = {(int)lab[0], (int)lab[1], (int)lab[2]};
    float *features = alloc_zeros((size_t)B * D), *logits = alloc_zeros((size_t)B * K), *probs = alloc_zeros(B * K);
    float *dlogits = alloc_zeros((size_t)B * K), *grads = param_alloc(&m.table), *dx = alloc_zeros(nx);
    arena ar = arena_create(cnn_plan_bytes(&m, B, S, S, true));
    cnn_acts a;
    cnn_acts_alloc(&a, &m, &ar, B, S, S, true);
    CHECK(ar.used <= ar.capacity && ar.used == cnn_plan_bytes(&m, B, S, S, true), "plan %zu bytes, carved %zu",
          cnn_plan_bytes(&m, B, S, S, true), ar.used);
    cnn_forward(&m, mw, &a, x, features, logits);
    /* Four 3×3 convs of ≤ 144 terms and two GroupNorms in float32: ~1e-6 relative. */
    fixture_check(st, "features", features, (size_t)B * D, 1e-5, 1e-4);
    fixture_check(st, "logits", logits, (size_t)B * K, 1e-5, 1e-4);
    float loss = cross_entropy_forward(probs, logits, labels, B, K);
    CHECK(fabsf(loss - want_loss[0]) <= 1e-5f * (1 + fabsf(want_loss[0])), "loss %.8g, torch %.8g", loss,
          want_loss[0]);
    cross_entropy_backward(dlogits, 1.0f, probs, labels, B, K);
    cnn_backward(&m, mw, &a, grads, dx, cot, dlogits);
    /* Gradients through two GroupNorm backwards each stage: ~1e-5 relative. */
    check_params_against_fixture(st, &m.table, grads, "grad.", PARAM_TRAINABLE, 1e-5, 1e-3);
    fixture_check(st, "grad.x", dx, nx, 1e-6, 1e-3);

    /* Inference mode (shared scratch) gives the same features and logits, bit for bit. */
    arena ai = arena_create(cnn_plan_bytes(&m, B, S, S, false));
    cnn_acts a2;
    cnn_acts_alloc(&a2, &m, &ai, B, S, S, false);
    CHECK(cnn_plan_bytes(&m, B, S, S, false) < cnn_plan_bytes(&m, B, S, S, true), "inference plan not smaller");
    float *f2 = alloc_zeros((size_t)B * D), *l2 = alloc_zeros((size_t)B * K);
    cnn_forward(&m, mw, &a2, x, f2, l2);
    CHECK(!memcmp(f2, features, (size_t)B * D * sizeof(float)) && !memcmp(l2, logits, (size_t)B * K * sizeof(float)),
          "inference-mode outputs differ from train-mode ones");

    /* Backward adds: a second backward onto the same buffers doubles them;
     * a frozen model (grads NULL) still gives the input gradient. */
    float *dx2 = alloc_zeros(nx), *grads2 = param_alloc(&m.table);
    memcpy(grads2, grads, m.table.total * sizeof(float));
    memcpy(dx2, dx, nx * sizeof(float));
    cnn_backward(&m, mw, &a, grads2, dx2, cot, dlogits);
    for (size_t i = 0; i < m.table.total; i++)
        grads2[i] -= 2 * grads[i];
    for (size_t i = 0; i < nx; i++)
        dx2[i] -= 2 * dx[i];
    float *zeros = alloc_zeros(m.table.total > nx ? m.table.total : nx);
    check_close("grads accumulate", grads2, zeros, m.table.total, 1e-6, 0);
    check_close("dx accumulates", dx2, zeros, nx, 1e-6, 0);
    memset(dx2, 0, nx * sizeof(float));
    cnn_backward(&m, mw, &a, NULL, dx2, cot, dlogits);
    check_close("frozen model: dx", dx2, dx, nx, 0, 0);

    /* Finite differences of the same scalar (float32 forward, double sum). */
    cnn_ctx c = {&m, mw, &a, x, cot, features, logits, probs, labels, B, K};
    fd_check_direction("cnn d/dx", cnn_loss, &c, x, dx, nx, 1e-2, 2e-3, 5);
    size_t w = param_find(&m.table, "stages.1.conv2.weight")->offset;
    /* Small steps: a ReLU or max-pool switch within ±h would bias the quotient;
     * float32 rounding of the O(1) scalar then limits the quotient to ~1e-3. */
    fd_check("cnn d/d stages.1.conv2.weight", cnn_loss, &c, mw + w, grads + w, 16 * 16 * 9, 2e-4, 1e-4, 5e-3,
             40);
    size_t g = param_find(&m.table, "stages.0.norm1.weight")->offset;
    fd_check("cnn d/d stages.0.norm1.weight", cnn_loss, &c, mw + g, grads + g, 8, 2e-4, 1e-4, 5e-3, 0);
    size_t h = param_find(&m.table, "head.weight")->offset;
    fd_check("cnn d/d head.weight", cnn_loss, &c, mw + h, grads + h, (size_t)K * D, 1e-3, 1e-4, 5e-3, 0);

    arena_free(&ar), arena_free(&ai);
    free(x), free(cot), free(lab), free(want_loss), free(features), free(logits), free(probs), free(dlogits);
    free(grads), free(dx), free(f2), free(l2), free(dx2), free(grads2), free(zeros), free(mw);
    cnn_free(&m);
    safetensors_close(st);
}

static void build_bad_groups(void *ctx)
{
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 2, .widths = {8, 12}, .groups = 8, .gn_eps = 1e-5f});
}

static void acts_too_small(void *ctx)
{
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 3, .widths = {4, 4, 4}, .groups = 2, .gn_eps = 1e-5f});
    cnn_plan_bytes(&m, 2, 4, 4, false);
}

static void load_no_groups(void *ctx)
{
    /* A CNN state dict without the metadata that records the groups. */
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f});
    st_writer *w = st_writer_new();
    param_save(&m.table, param_alloc(&m.table), w, "");
    st_writer_save(w, ctx);
    st_writer_free(w);
    safetensors *st = safetensors_open(ctx);
    cnn_config_from_checkpoint(st, "", 0);
}

static void load_not_cnn(void *ctx)
{
    safetensors *st = fixture_open("models/disc_tiny");
    cnn_config_from_checkpoint(st, "", 0);
}

static void test_cnn_bad_configurations(void)
{
    expect_die("widths not divisible by groups", build_bad_groups, NULL, "stage 1 width 12 is not divisible by the 8");
    expect_die("images too small", acts_too_small, NULL, "need images of at least 8x8");
    char path[] = "/tmp/repae-cnn-nogroups.safetensors";
    expect_die("no groups recorded", load_no_groups, path, "GroupNorm group count is not recorded");
    remove(path);
    expect_die("not a CNN", load_not_cnn, NULL, "not a CNN classifier");
}

int main(void)
{
    RUN(test_cnn_table);
    RUN(test_cnn_matches_torch);
    RUN(test_cnn_bad_configurations);
    return test_summary();
}
