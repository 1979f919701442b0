/* AdamW + gradient clipping against torch.optim.AdamW and
 * clip_grad_norm_ (dev/ref/adamw_ref.py), and the EMA rule. */
#include <math.h>

#include "models/params.h"
#include "train/adamw.h"
#include "train/ema.h"
#include "test.h"

static void build_table(param_table *t)
{
    param_add(t, "a", INIT_EXTERNAL, 2, (int64_t[]){5, 3});
    param_add(t, "b", INIT_EXTERNAL, 1, (int64_t[]){4});
    /* A frozen tensor and a buffer: AdamW and clipping must ignore them. */
    param_add_ex(t, "frozen", INIT_CONSTANT, 2.0f, PARAM_FROZEN, 1, (int64_t[]){3});
    param_add_ex(t, "bn.running_var", INIT_CONSTANT, 1.0f, PARAM_BUFFER, 1, (int64_t[]){2});
}

static void load(const safetensors *st, const param_table *t, float *dst, const char *fmt)
{
    char key[64];
    for (int i = 0; i < 2; i++) {
        const param_entry *e = &t->entries[i];
        snprintf(key, sizeof key, fmt, e->name);
        safetensors_load_f32(st, key, e->ndim, e->shape, dst + e->offset);
    }
}

static void test_adamw_matches_torch(void)
{
    safetensors *st = fixture_open("train/adamw");
    param_table t = {0};
    build_table(&t);
    float *p = param_alloc(&t), *g = param_alloc(&t), *want = param_alloc(&t);
    param_init(&t, p, 0);
    load(st, &t, p, "p0.%s");
    adamw opt = adamw_create(&t, 1e-2f);
    for (int s = 0; s < 4; s++) {
        char fmt[32];
        snprintf(fmt, sizeof fmt, "g%d.%%s", s);
        grad_zero(&t, g);
        load(st, &t, g, fmt);
        g[param_find(&t, "frozen")->offset] = 100.0f; /* must not count in the norm */
        double norm = grad_clip(&t, g, 1.0);
        char name[32];
        snprintf(name, sizeof name, "norm%d", s);
        float want_norm;
        safetensors_load_f32(st, name, 1, (int64_t[]){1}, &want_norm);
        /* torch sums squares in float32; ours in double: agree to ~1e-6 relative. */
        CHECK(fabs(norm - want_norm) <= 1e-5 * want_norm, "step %d: grad norm %.8g vs torch %.8g", s, norm, want_norm);
        adamw_step(&opt, p, g);
        snprintf(fmt, sizeof fmt, "p%d.%%s", s + 1);
        load(st, &t, want, fmt);
        char what[64];
        snprintf(what, sizeof what, "params after step %d", s);
        /* Same formula in the same precision; differences only from the clip
         * coefficient (double vs float norm): ~1e-7 relative of the update. */
        check_close(what, p, want, t.entries[1].offset + t.entries[1].numel, 1e-6, 1e-5);
    }
    load(st, &t, want, "m.%s");
    check_close("exp_avg", opt.m, want, t.entries[1].offset + 4, 1e-7, 1e-5);
    load(st, &t, want, "v.%s");
    check_close("exp_avg_sq", opt.v, want, t.entries[1].offset + 4, 1e-9, 1e-5);
    CHECK(p[param_find(&t, "frozen")->offset] == 2.0f, "frozen tensor was changed");
    CHECK(p[param_find(&t, "bn.running_var")->offset] == 1.0f, "buffer was changed");
    adamw_free(&opt);
    free(p), free(g), free(want);
    param_table_free(&t);
    safetensors_close(st);
}

static void test_ema_rule(void)
{
    param_table t = {0};
    param_add(&t, "w", INIT_CONSTANT, 1, (int64_t[]){3});
    param_add_ex(&t, "bn.running_mean", INIT_CONSTANT, 0, PARAM_BUFFER, 1, (int64_t[]){2});
    param_add_ex(&t, "bn.num_batches_tracked", INIT_CONSTANT, 0, PARAM_BUFFER, 0, NULL);
    float *ema = param_alloc(&t), *p = param_alloc(&t);
    size_t w = param_find(&t, "w")->offset, rm = param_find(&t, "bn.running_mean")->offset,
           nb = param_find(&t, "bn.num_batches_tracked")->offset;
    p[w] = 1.0f, p[rm] = 4.0f, p[nb] = 5.0f;
    ema_update(&t, ema, p, 0.0f);
    CHECK(ema[w] == 1.0f && ema[rm] == 4.0f && ema[nb] == 5.0f, "decay 0 must copy");
    p[w] = 3.0f, p[rm] = 8.0f, p[nb] = 6.0f;
    ema_update(&t, ema, p, 0.75f);
    CHECK(fabsf(ema[w] - 1.5f) < 1e-7f, "ema of a parameter: %g, want 1.5", ema[w]);
    CHECK(fabsf(ema[rm] - 5.0f) < 1e-7f, "ema of a running stat: %g, want 5", ema[rm]);
    CHECK(ema[nb] == 6.0f, "counter must be copied, got %g", ema[nb]);
    free(ema), free(p);
    param_table_free(&t);
}

int main(void)
{
    RUN(test_adamw_matches_torch);
    RUN(test_ema_rule);
    return test_summary();
}
