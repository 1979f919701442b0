/* denoising_objective.c — the SiT's training objective (spec §5).
 *
 * Arena layout of one pass:
 *   [ pass state | network activations ][ backward scratch | network backward scratch ]
 * The state and the scratch are carved by one function each, which the
 * planning pass runs with a NULL arena to count the bytes.
 */
#include "diffusion/denoising_objective.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "ops/loss.h"

time_weighting time_weighting_parse(const char *name)
{
    if (name && strcmp(name, "uniform") == 0)
        return TIME_WEIGHTING_UNIFORM;
    if (name && strcmp(name, "lognormal") == 0)
        return TIME_WEIGHTING_LOGNORMAL;
    die("unknown time weighting '%s' (expected 'uniform' or 'lognormal')", name ? name : "(null)");
}

void denoising_draw_time(float *t, rng *r, int N, time_weighting weighting, path_type path)
{
    for (int n = 0; n < N; n++) {
        if (weighting == TIME_WEIGHTING_UNIFORM) {
            t[n] = rng_uniform(r);
        } else {
            double sig = exp((double)rng_normal(r));
            t[n] = (float)(path == PATH_LINEAR ? sig / (1.0 + sig) : 2.0 / M_PI * atan(sig));
        }
    }
}

/* ---- carving: the same code plans (ar == NULL) and allocates ---- */

static float *carve(arena *ar, size_t *bytes, size_t n)
{
    size_t b = n ? n * sizeof(float) : 1;
    *bytes += arena_round(b);
    return ar ? arena_alloc(ar, b) : NULL;
}

/* The pass state; xn and x_t are forward temporaries. */
static size_t carve_state(denoising_pass *a, float **xn, float **xt, const sit *m, int N, const denoising_opts *o,
                          arena *ar)
{
    const size_t CHW = (size_t)m->C * m->H * m->H;
    size_t bytes = 0;
    memset(a, 0, sizeof *a);
    a->N = N;
    a->opts = *o;
    a->time_input = carve(ar, &bytes, N);
    a->noise = carve(ar, &bytes, N * CHW);
    a->bn_mean = carve(ar, &bytes, m->C), a->bn_rstd = carve(ar, &bytes, m->C);
    a->target = o->align_only ? NULL : carve(ar, &bytes, N * CHW);
    a->denoising_loss = o->align_only ? NULL : carve(ar, &bytes, N);
    *xn = carve(ar, &bytes, N * CHW);
    *xt = carve(ar, &bytes, N * CHW);
    return bytes;
}

typedef struct objective_scratch {
    float *dpred, *dtarget;             /* [N,C,H,W] (not in align-only mode) */
    float *dloss;                       /* [N] */
    float *dzs_tilde[SIT_MAX_ENCODERS]; /* [N,T,z_dims[e]] */
    float *dxt, *dxn;                   /* [N,C,H,W] */
} objective_scratch;

static size_t carve_scratch(objective_scratch *s, const sit *m, int N, const denoising_opts *o, arena *ar)
{
    const size_t CHW = (size_t)m->C * m->H * m->H;
    size_t bytes = 0;
    memset(s, 0, sizeof *s);
    if (!o->align_only) {
        s->dpred = carve(ar, &bytes, N * CHW);
        s->dtarget = carve(ar, &bytes, N * CHW);
    }
    s->dloss = carve(ar, &bytes, N);
    for (int e = 0; e < m->cfg.n_encoders; e++)
        s->dzs_tilde[e] = carve(ar, &bytes, (size_t)N * m->T * m->cfg.z_dims[e]);
    s->dxt = carve(ar, &bytes, N * CHW), s->dxn = carve(ar, &bytes, N * CHW);
    return bytes;
}

static sit_net_opts net_opts(const denoising_opts *o) { return (sit_net_opts){o->train, o->align_only}; }

size_t denoising_objective_plan_bytes(const sit *m, int N, const denoising_opts *opts)
{
    denoising_pass a;
    objective_scratch s;
    float *xn, *xt;
    const sit_net_opts no = net_opts(opts);
    return carve_state(&a, &xn, &xt, m, N, opts, NULL) + sit_net_plan_bytes(m, N, &no) +
           carve_scratch(&s, m, N, opts, NULL);
}

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

void denoising_objective_forward(denoising_pass *a, const sit *m, float *params, arena *ar,
                                 const denoising_opts *opts, const denoising_inputs *in, int N)
{
    const sit_config *cfg = &m->cfg;
    if (N < 1 || !in->z || !in->y)
        die("denoising_objective_forward: needs N >= 1, a latent and labels");
    for (int e = 0; e < cfg->n_encoders; e++)
        if (!in->zs[e])
            die("denoising_objective_forward: missing REPA target for encoder %d", e);
    if ((!in->time_input || !in->noise || (opts->train && !in->force_drop && cfg->class_dropout_prob > 0)) &&
        !in->rng)
        die("denoising_objective_forward: t, noise or label dropout must be drawn but no rng was given");
    float *xn, *xt;
    carve_state(a, &xn, &xt, m, N, opts, ar);
    a->z = in->z;
    for (int e = 0; e < cfg->n_encoders; e++)
        a->zs[e] = in->zs[e];
    const int T = m->T;
    const size_t CHW = (size_t)m->C * m->H * m->H;

    /* time, then noise (the network draws the label dropout after them) */
    if (in->time_input)
        memcpy(a->time_input, in->time_input, (size_t)N * sizeof(float));
    else
        denoising_draw_time(a->time_input, in->rng, N, opts->weighting, opts->path);
    if (in->noise)
        memcpy(a->noise, in->noise, (size_t)N * CHW * sizeof(float));
    else
        rng_normal_fill(in->rng, a->noise, (size_t)N * CHW);

    /* latent BatchNorm, interpolant and velocity target, network */
    sit_latent_norm_forward(m, params, xn, a->bn_mean, a->bn_rstd, in->z, N, opts->train);
    interpolant_forward(opts->path, xt, a->target, xn, a->noise, a->time_input, N, CHW);
    const sit_net_opts no = net_opts(opts);
    const sit_net_inputs ni = {.x_t = xt, .t = a->time_input, .y = in->y, .force_drop = in->force_drop,
                               .rng = in->rng};
    sit_net_forward(&a->net, m, params, ar, &no, &ni, N);
    a->labels = a->net.labels;
    a->model_output = a->net.model_output;
    for (int e = 0; e < cfg->n_encoders; e++)
        a->zs_tilde[e] = a->net.zs_tilde[e];

    /* losses */
    double pl = 0;
    for (int e = 0; e < cfg->n_encoders; e++)
        pl += repa_cosine_loss_forward(a->zs_tilde[e], in->zs[e], N, T, cfg->z_dims[e]);
    a->proj_loss = cfg->n_encoders ? (float)(pl / cfg->n_encoders) : 0.0f;
    if (!opts->align_only)
        mse_per_sample_forward(a->denoising_loss, a->model_output, a->target, N, (int)CHW);
}

void denoising_objective_backward(const sit *m, const float *params, const denoising_pass *a, arena *ar,
                                  float w_denoise, float w_proj, float *dparams, float *dz)
{
    const sit_config *cfg = &m->cfg;
    const int N = a->N, T = m->T;
    const size_t CHW = (size_t)m->C * m->H * m->H;
    const bool full = !a->opts.align_only;
    if (!dparams && !dz)
        return;
    size_t mark = arena_mark(ar);
    objective_scratch s;
    carve_scratch(&s, m, N, &a->opts, ar);

    /* the losses' gradients w.r.t. model_output, v* and zs_tilde */
    if (full) {
        for (int n = 0; n < N; n++)
            s.dloss[n] = w_denoise / (float)N;
        zero(s.dpred, (size_t)N * CHW);
        if (dz)
            zero(s.dtarget, (size_t)N * CHW);
        mse_per_sample_backward(s.dpred, dz ? s.dtarget : NULL, s.dloss, a->model_output, a->target, N, (int)CHW);
    }
    for (int e = 0; e < cfg->n_encoders; e++) {
        const int Z = cfg->z_dims[e];
        zero(s.dzs_tilde[e], (size_t)N * T * Z);
        repa_cosine_loss_backward(s.dzs_tilde[e], NULL, w_proj / cfg->n_encoders, a->zs_tilde[e], a->zs[e], N, T,
                                  Z);
    }

    /* the network, into x_t */
    if (dz)
        zero(s.dxt, (size_t)N * CHW);
    sit_net_backward(m, params, &a->net, ar, full ? s.dpred : NULL,
                     cfg->n_encoders ? (const float *const *)s.dzs_tilde : NULL, dparams, dz ? s.dxt : NULL);

    /* into the latent: x_t = α·xn + σ·ε, v* = α'·xn + σ'·ε, xn = BN(z) */
    if (dz) {
        for (int n = 0; n < N; n++) {
            const interp_coeffs_f32 k = interpolant_coeffs_f32(a->opts.path, a->time_input[n]);
            const float al = k.alpha, dal = k.d_alpha;
            const float *gx = s.dxt + n * CHW, *gt = full ? s.dtarget + n * CHW : NULL;
            float *o = s.dxn + n * CHW;
            for (size_t i = 0; i < CHW; i++)
                o[i] = al * gx[i] + (gt ? dal * gt[i] : 0.0f);
        }
        sit_latent_norm_backward(m, params, dz, s.dxn, a->z, a->bn_mean, a->bn_rstd, N, a->opts.train);
    }
    arena_reset(ar, mark);
}
