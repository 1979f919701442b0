/* AdamW + gradient clipping against torch.optim.AdamW and
 * clip_grad_norm_ (dev/ref/adamw_ref.py), and the EMA rule. */
#include <math.h>
#include <omp.h>

#include "core/error.h"
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

/* The fixture's metadata names its weight decay (adamw_ref.py). */
static void adamw_against(const char *fixture)
{
    safetensors *st = fixture_open(fixture);
    const float weight_decay = safetensors_meta_f32(st, "weight_decay", NAN);
    CHECK(isfinite(weight_decay), "%s: no weight_decay in its metadata", fixture);
    param_table t = {0};
    build_table(&t);
    float *p = param_alloc(&t), *g = param_alloc(&t), *want = param_alloc(&t);
    param_init(&t, p, 0);
    load(st, &t, p, "p0.%s");
    adamw opt = adamw_create(&t, 1e-2f);
    opt.weight_decay = weight_decay;
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
        snprintf(what, sizeof what, "%s: params after step %d", fixture, s);
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

static void test_adamw_matches_torch(void) { adamw_against("train/adamw"); }

/* Decoupled weight decay (train-encoder's 0.05) and gradients of 1e-8, where
 * eps sets the step. */
static void test_adamw_weight_decay_and_eps_match_torch(void) { adamw_against("train/adamw_wd"); }

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
    /* Names longer than "num_batches_tracked" are averaged unless they end in it. */
    param_table u = {0};
    param_add(&u, "blocks.0.attn.qkv.weight", INIT_CONSTANT, 1, (int64_t[]){2});
    param_add_ex(&u, "x_embedder.bn.num_batches_tracked", INIT_CONSTANT, 0, PARAM_BUFFER, 0, NULL);
    /* A top-level BatchNorm's counter has the name alone. */
    param_add_ex(&u, "num_batches_tracked", INIT_CONSTANT, 0, PARAM_BUFFER, 0, NULL);
    float *ue = param_alloc(&u), *up = param_alloc(&u);
    size_t q = param_find(&u, "blocks.0.attn.qkv.weight")->offset,
           c = param_find(&u, "x_embedder.bn.num_batches_tracked")->offset,
           bare = param_find(&u, "num_batches_tracked")->offset;
    up[q] = up[q + 1] = 3.0f, up[c] = 9.0f, up[bare] = 7.0f;
    ema_update(&u, ue, up, 0.75f);
    CHECK(ue[q] == 0.75f && ue[q + 1] == 0.75f && ue[c] == 9.0f && ue[bare] == 7.0f,
          "long names: %g %g (want 0.75), counters %g %g (want 9, 7)", ue[q], ue[q + 1], ue[c], ue[bare]);
    free(ue), free(up);
    param_table_free(&u);
    free(ema), free(p);
    param_table_free(&t);
}

/* Tensors over 65,536 elements are shared out among the threads (AdamW,
 * the gradient norm, clipping, EMA); no test model has one.  Every element
 * must be updated once, whatever the team: results equal one thread's (the
 * norm to rounding, its partial sums being added in another order), and the
 * norm the double sum over the trainable tensors only. */
static void test_large_tensors_split_across_threads(void)
{
    param_table t = {0};
    param_add(&t, "big", INIT_EXTERNAL, 1, (int64_t[]){100003});
    param_add(&t, "small", INIT_EXTERNAL, 1, (int64_t[]){70});
    param_add_ex(&t, "frozen_big", INIT_CONSTANT, 2.0f, PARAM_FROZEN, 1, (int64_t[]){70000});
    param_add(&t, "big2", INIT_EXTERNAL, 2, (int64_t[]){257, 255}); /* 65,535: one thread */
    param_add(&t, "big3", INIT_EXTERNAL, 1, (int64_t[]){65537});
    param_add(&t, "edge", INIT_EXTERNAL, 1, (int64_t[]){65536}); /* the largest done by one thread */
    param_add_ex(&t, "bn.running_mean", INIT_CONSTANT, 0, PARAM_BUFFER, 1, (int64_t[]){80001});
    size_t n = t.total;
    float *p0 = alloc_normal(n, 1.0f, 11), *g0 = alloc_normal(n, 0.5f, 12), *e0 = alloc_normal(n, 1.0f, 13);
    double want = 0;
    for (int i = 0; i < t.n; i++)
        if (t.entries[i].kind == PARAM_TRAINABLE)
            for (size_t k = 0; k < t.entries[i].numel; k++)
                want += (double)g0[t.entries[i].offset + k] * g0[t.entries[i].offset + k];
    want = sqrt(want);
    float *p1 = NULL, *e1 = NULL;
    const int max_threads = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        float *p = xmalloc(n * sizeof(float)), *g = xmalloc(n * sizeof(float)), *e = xmalloc(n * sizeof(float));
        memcpy(p, p0, n * sizeof(float)), memcpy(g, g0, n * sizeof(float)), memcpy(e, e0, n * sizeof(float));
        double norm = grad_clip(&t, g, want / 4);
        CHECK(fabs(norm - want) <= 1e-12 * want, "%d threads: norm %.15g, want %.15g", nt, norm, want);
        const float c = (float)(want / 4 / (norm + 1e-6));
        size_t wrong = 0;
        for (int i = 0; i < t.n; i++) {
            const param_entry *pe = &t.entries[i];
            for (size_t k = pe->offset; k < pe->offset + pe->numel; k++)
                wrong += g[k] != (pe->kind == PARAM_TRAINABLE ? g0[k] * c : g0[k]);
        }
        CHECK(wrong == 0, "%d threads: %zu gradient elements not clipped exactly once", nt, wrong);
        adamw o = adamw_create(&t, 1e-3f);
        adamw_step(&o, p, g);
        adamw_step(&o, p, g);
        adamw_free(&o);
        ema_update(&t, e, p, 0.9f);
        size_t unchanged = 0;
        for (int i = 0; i < t.n; i++) {
            const param_entry *pe = &t.entries[i];
            if (pe->kind == PARAM_TRAINABLE)
                for (size_t k = pe->offset; k < pe->offset + pe->numel; k++)
                    unchanged += p[k] == p0[k];
        }
        CHECK(unchanged == 0, "%d threads: %zu trainable elements not updated by AdamW", nt, unchanged);
        if (nt == 1)
            p1 = p, e1 = e, p = e = NULL;
        else {
            CHECK(!memcmp(p, p1, n * sizeof(float)), "%d threads: AdamW differs from one thread's", nt);
            CHECK(!memcmp(e, e1, n * sizeof(float)), "%d threads: EMA differs from one thread's", nt);
        }
        free(p), free(g), free(e);
    }
    omp_set_num_threads(max_threads);
    /* The EMA rule itself, element by element (one thread's result). */
    size_t off = param_find(&t, "big")->offset, wrong = 0;
    for (size_t k = off; k < off + 100003; k++) {
        float a = e0[k];
        a = 0.9f * a + (1.0f - 0.9f) * p1[k];
        wrong += e1[k] != a;
    }
    CHECK(wrong == 0, "EMA of a large tensor: %zu elements off the rule", wrong);
    free(p0), free(g0), free(e0), free(p1), free(e1);
    param_table_free(&t);
}

int main(void)
{
    RUN(test_adamw_matches_torch);
    RUN(test_adamw_weight_decay_and_eps_match_torch);
    RUN(test_ema_rule);
    RUN(test_large_tensors_split_across_threads);
    return test_summary();
}
