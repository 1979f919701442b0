/* PatchGAN discriminator: parameter count, train-mode forward, running
 * statistics and full backward against dev/ref/disc_ref.py, and finite
 * differences through the train-mode BatchNorms. */
#include <math.h>

#include "models/discriminator.h"
#include "param_check.h"
#include "test.h"

static void test_disc_parameter_count(void)
{
    discriminator d;
    disc_build(&d, &(disc_config){3, 64, 3});
    /* spec §7.4: 2,765,633 trainable parameters (running stats are buffers) */
    CHECK(param_count(&d.table, PARAM_TRAINABLE) == 2765633, "trainable parameters %zu, spec says 2,765,633",
          param_count(&d.table, PARAM_TRAINABLE));
    CHECK(param_find(&d.table, "main.11.bias") && param_find(&d.table, "main.9.running_var") &&
              !param_find(&d.table, "main.2.bias"),
          "key names differ from the reference");
    CHECK(disc_logits_h(&d, 256) == 30, "logits for 256 px should be 30x30, got %d", disc_logits_h(&d, 256));
    disc_free(&d);
}

typedef struct {
    discriminator *d;
    float *params, *x, *cot, *logits;
    int B;
    arena *a;
} disc_ctx;

static double disc_loss(void *p)
{
    disc_ctx *c = p;
    size_t mark = arena_mark(c->a);
    /* Running stats move on every forward; they don't affect train-mode outputs. */
    disc_acts s;
    disc_forward(c->d, c->params, &s, c->logits, c->x, c->B, 32, 32, c->a);
    arena_reset(c->a, mark);
    return dot_f64(c->logits, c->cot, (size_t)c->B * 4);
}

static void test_disc_matches_torch(void)
{
    safetensors *st = fixture_open("models/disc_tiny");
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 3});
    float *params = param_alloc(&d.table), *grads = param_alloc(&d.table);
    disc_load(&d, params, st, "", PARAM_IGNORE_EXTRA);
    int B = 3;
    float *x = fixture_f32(st, "x", NULL), *cot = fixture_f32(st, "cot", NULL);
    float *logits = alloc_zeros((size_t)B * 4), *dx = alloc_zeros((size_t)B * 3 * 32 * 32);
    arena a = arena_create(2 * disc_acts_bytes(&d, B, 32, 32)); /* saved acts + one for the FD forwards */
    disc_acts s;
    disc_forward(&d, params, &s, logits, x, B, 32, 32, &a);
    /* Four conv layers of fp32 sums over ≤ 512 terms: ~1e-6 relative. */
    fixture_check(st, "logits", logits, (size_t)B * 4, 1e-5, 1e-4);
    check_params_against_fixture(st, &d.table, params, "after.", PARAM_BUFFER, 1e-6, 1e-5);
    disc_backward(&d, params, &s, cot, grads, dx);
    /* Gradients pass back through three train-mode BNs: ~1e-5 relative. */
    check_params_against_fixture(st, &d.table, grads, "grad.", PARAM_TRAINABLE, 1e-5, 1e-3);
    fixture_check(st, "grad.x", dx, (size_t)B * 3 * 32 * 32, 1e-6, 1e-3);

    /* Finite differences w.r.t. the input along a random direction, with the
     * batch statistics recomputed at every evaluation (train-mode BN). */
    disc_ctx c = {&d, params, x, cot, logits, B, &a};
    fd_check_direction("disc d/dx", disc_loss, &c, x, dx, (size_t)B * 3 * 32 * 32, 1e-2, 2e-3, 5);
    size_t w8 = param_find(&d.table, "main.8.weight")->offset;
    /* Small steps: a LeakyReLU kink within ±h would bias the quotient. */
    fd_check("disc d/d main.8.weight", disc_loss, &c, params + w8, grads + w8, 64 * 32 * 16, 1e-3, 1e-4, 5e-3, 40);

    /* Frozen discriminator (the generator loss): only dx, and it accumulates. */
    float *dx2 = alloc_zeros((size_t)B * 3 * 32 * 32);
    for (size_t i = 0; i < (size_t)B * 3 * 32 * 32; i++)
        dx2[i] = 1.0f;
    arena_reset(&a, 0);
    disc_forward(&d, params, &s, logits, x, B, 32, 32, &a);
    disc_backward(&d, params, &s, cot, NULL, dx2);
    for (size_t i = 0; i < (size_t)B * 3 * 32 * 32; i++)
        dx2[i] -= 1.0f;
    check_close("frozen dx accumulates", dx2, dx, (size_t)B * 3 * 32 * 32, 1e-6, 1e-4);

    arena_free(&a);
    free(params), free(grads), free(x), free(cot), free(logits), free(dx), free(dx2);
    disc_free(&d);
    safetensors_close(st);
}

int main(void)
{
    RUN(test_disc_parameter_count);
    RUN(test_disc_matches_torch);
    return test_summary();
}
