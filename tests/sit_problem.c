#include "sit_problem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/spatial_norm.h"
#include "test.h"

void sit_test_randomize(const sit *m, float *params, uint64_t seed, bool norms_near_one)
{
    sit_init_weights(m, params, seed);
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        float *p = params + e->offset;
        if (e->kind != PARAM_TRAINABLE)
            continue;
        double fan_in = e->ndim >= 2 ? (double)e->numel / (double)e->shape[0] : 1.0;
        float std = e->ndim >= 2 ? (float)(1.0 / sqrt(fan_in)) : 0.2f;
        if (strstr(e->name, "adaLN"))
            std *= 0.8f;
        fill_normal(p, e->numel, std, seed + 17 * (uint64_t)i + 1);
        if (norms_near_one && strstr(e->name, "norm.weight"))
            for (size_t k = 0; k < e->numel; k++)
                p[k] += 1.0f;
    }
    float bias[8], scale[8];
    for (int c = 0; c < m->C; c++)
        bias[c] = 0.3f * (float)c - 0.2f, scale[c] = 0.7f + 0.25f * (float)c;
    sit_set_latent_stats(m, params, bias, scale);
}

sit_problem sit_problem_make(const sit *m, int N, uint64_t seed, float z_shift, float zscore_alpha)
{
    sit_problem p = {0};
    p.N = N;
    size_t CHW = (size_t)m->C * m->H * m->H;
    p.z = alloc_normal(N * CHW, 1.2f, seed);
    if (z_shift != 0.0f)
        for (size_t i = 0; i < N * CHW; i++)
            p.z[i] += z_shift;
    p.t = alloc_uniform(N, 0.05f, 0.95f, seed + 1);
    p.eps = alloc_normal(N * CHW, 1.0f, seed + 2);
    for (int e = 0; e < m->cfg.n_encoders; e++) {
        p.zs[e] = alloc_normal((size_t)N * m->T * m->cfg.z_dims[e], 1.0f, seed + 3 + e);
        if (zscore_alpha >= 0.0f)
            spatial_norm_forward(p.zs[e], p.zs[e], N, m->T, m->cfg.z_dims[e], zscore_alpha, SPATIAL_NORM_EPS);
    }
    for (int n = 0; n < N; n++)
        p.y[n] = (3 * n + 1) % m->cfg.num_classes, p.drop[n] = n == 1;
    return p;
}

void sit_problem_free(sit_problem *p)
{
    free(p->z), free(p->t), free(p->eps);
    for (int e = 0; e < SIT_MAX_ENCODERS; e++)
        free(p->zs[e]);
}

denoising_inputs sit_problem_inputs(const sit_problem *p, const sit *m)
{
    denoising_inputs in = {0};
    in.z = p->z, in.y = p->y, in.time_input = p->t, in.noise = p->eps, in.force_drop = p->drop;
    for (int e = 0; e < m->cfg.n_encoders; e++)
        in.zs[e] = p->zs[e];
    return in;
}

double sit_loss_of(const denoising_pass *a, int N, bool align_only, float wd, float wp)
{
    double L = (double)wp * a->proj_loss;
    if (!align_only) {
        double s = 0;
        for (int n = 0; n < N; n++)
            s += a->denoising_loss[n];
        L += wd * s / N;
    }
    return L;
}

double sit_fd_loss(void *p)
{
    sit_fd_ctx *c = p;
    size_t mark = arena_mark(c->ar);
    denoising_pass a;
    denoising_objective_forward(&a, c->m, c->params, c->ar, &c->opts, &c->in, c->N);
    double L = sit_loss_of(&a, c->N, c->opts.align_only, c->wd, c->wp);
    arena_reset(c->ar, mark);
    return L;
}
