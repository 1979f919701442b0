#include "train/vae_loss.h"

#include <string.h>

#include "core/dist.h"
#include "core/error.h"
#include "ops/loss.h"

float vae_loss_factor(const vae_loss *L, long long step)
{
    return L->disc && step >= L->w.disc_start ? L->w.disc_factor : 0.0f;
}

static size_t n_logits(const vae_loss *L)
{
    return (size_t)L->B * disc_logits_h(L->disc, L->H) * disc_logits_w(L->disc, L->W);
}

size_t vae_loss_plan_bytes(const vae_loss *L)
{
    size_t peak = 0;
    if (L->lp) {
        size_t n3 = (size_t)L->B * 3 * L->H * L->W;
        peak = lpips_acts_bytes(L->lp, L->B, L->H, L->W) + 3 * arena_round(n3 * sizeof(float)) +
               2 * arena_round((size_t)L->B * sizeof(float));
    }
    if (L->disc) {
        size_t acts = disc_acts_bytes(L->disc, L->B, L->H, L->W), lg = arena_round(n_logits(L) * sizeof(float));
        size_t d_step = 2 * acts + 4 * lg; /* the generator pass needs half of it */
        if (d_step > peak)
            peak = d_step;
    }
    return peak;
}

size_t vae_loss_fake_pass_bytes(const vae_loss *L)
{
    if (!L->disc)
        return 0;
    return disc_acts_bytes(L->disc, L->B, L->H, L->W) + arena_round(n_logits(L) * sizeof(float));
}

/* LPIPS needs RGB: a 1-channel image is replicated, and the gradient of
 * the three copies is summed back. */
static void to_rgb(float *dst, const float *src, int B, int C, int HW)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++)
            memcpy(dst + ((size_t)b * 3 + c) * HW, src + ((size_t)b * C + (C == 3 ? c : 0)) * HW,
                   (size_t)HW * sizeof(float));
}

static void add_from_rgb(float *dst, const float *src3, int B, int C, int HW)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            float *d = dst + ((size_t)b * C + (C == 3 ? c : 0)) * HW;
            const float *s = src3 + ((size_t)b * 3 + c) * HW;
            for (int i = 0; i < HW; i++)
                d[i] += s[i];
        }
}

double vae_generator_loss(const vae_loss *L, long long step, const float *x, const float *recon, const float *mean,
                          const float *logvar, int M, float *d_recon, float *d_mean, float *d_logvar, arena *ar,
                          vae_loss_logs *logs, vae_loss_fake_pass *keep)
{
    if (keep)
        keep->kept = false;
    const vae_loss_weights *w = &L->w;
    int B = L->B, C = L->C, HW = L->H * L->W;
    size_t n_img = (size_t)B * C * HW;
    float factor = vae_loss_factor(L, step);
    logs->reconstruction_loss = w->reconstruction * l1_mean_forward(x, recon, n_img);
    l1_mean_backward(NULL, d_recon, w->reconstruction, x, recon, n_img);
    logs->perceptual_loss = 0;
    if (L->lp && w->perceptual > 0) {
        size_t mark = arena_mark(ar);
        size_t n3 = (size_t)B * 3 * HW;
        float *x3 = arena_floats(ar, n3), *r3 = arena_floats(ar, n3), *d3 = arena_zeros(ar, n3);
        float *dist = arena_floats(ar, (size_t)B), *ddist = arena_floats(ar, (size_t)B);
        to_rgb(x3, x, B, C, HW);
        to_rgb(r3, recon, B, C, HW);
        lpips_acts la;
        lpips_forward(L->lp, L->lpips_params, &la, dist, x3, r3, B, L->H, L->W, ar);
        double s = 0;
        for (int n = 0; n < B; n++) {
            s += dist[n];
            ddist[n] = w->perceptual / B;
        }
        logs->perceptual_loss = w->perceptual * s / B;
        lpips_backward(L->lp, L->lpips_params, &la, ddist, d3);
        add_from_rgb(d_recon, d3, B, C, HW);
        arena_reset(ar, mark);
    }
    double kl = kl_diag_gaussian_forward(mean, logvar, B, M);
    logs->kl_loss = w->kl * kl;
    kl_diag_gaussian_backward(d_mean, d_logvar, w->kl, mean, logvar, B, M);
    logs->gan_loss = logs->weighted_gan_loss = 0;
    if (L->disc) {
        /* The discriminator is frozen here but stays in train mode: batch
         * statistics, running stats updated, full BN backward into recon. */
        size_t mark = arena_mark(ar);
        size_t nl = n_logits(L);
        float *logits = arena_floats(ar, nl);
        disc_acts da;
        disc_forward(L->disc, L->disc_params, &da, logits, recon, B, L->H, L->W, ar);
        size_t kept_mark = arena_mark(ar); /* the pass above stays when kept */
        float *dlog = arena_zeros(ar, nl);
        logs->gan_loss = hinge_g_loss_forward(logits, nl);
        logs->weighted_gan_loss = w->disc * factor * logs->gan_loss;
        if (factor != 0) {
            hinge_g_loss_backward(dlog, w->disc * factor, nl);
            disc_backward(L->disc, L->disc_params, &da, dlog, NULL, d_recon);
        }
        if (keep) {
            *keep = (vae_loss_fake_pass){.kept = true, .acts = da, .logits = logits};
            arena_reset(ar, kept_mark);
        } else {
            arena_reset(ar, mark);
        }
    }
    logs->discriminator_factor = factor;
    logs->d_weight = w->disc;
    return logs->reconstruction_loss + logs->perceptual_loss + logs->kl_loss + logs->weighted_gan_loss;
}

void vae_discriminator_step(const vae_loss *L, long long step, const float *x, const float *recon, float *disc_grads,
                            adamw *opt, double max_grad_norm, float *lecam_ema_real, float *lecam_ema_fake,
                            arena *ar, vae_loss_logs *logs, const vae_loss_fake_pass *fake)
{
    logs->d_loss = logs->grad_norm_disc = logs->logits_real = logs->logits_fake = logs->lecam_loss = 0;
    if (!L->disc)
        return;
    const vae_loss_weights *w = &L->w;
    int B = L->B;
    float factor = vae_loss_factor(L, step);
    size_t mark = arena_mark(ar);
    size_t nl = n_logits(L);
    if (fake && fake->kept && fake->acts.input != recon)
        die("vae_discriminator_step: the kept D(recon) pass ran on another reconstruction");
    bool reuse = fake && fake->kept;
    float *lr = arena_floats(ar, nl), *lf = reuse ? fake->logits : arena_floats(ar, nl);
    float *dr = arena_zeros(ar, nl), *df = arena_zeros(ar, nl);
    disc_acts ar_real, ar_fake;
    disc_forward(L->disc, L->disc_params, &ar_real, lr, x, B, L->H, L->W, ar);
    if (reuse) { /* the running stats move as the reference's second D(recon) moves them, after D(x) */
        ar_fake = fake->acts;
        disc_replay_running_stats(L->disc, L->disc_params, &ar_fake);
    } else {
        disc_forward(L->disc, L->disc_params, &ar_fake, lf, recon, B, L->H, L->W, ar);
    }
    double d = hinge_d_loss_forward(lr, nl, lf, nl);
    hinge_d_loss_backward(dr, df, factor, lr, nl, lf, nl);
    if (w->lecam > 0 && L->disc && step >= w->disc_start) {
        logs->lecam_loss = lecam_forward(lr, nl, lf, nl, *lecam_ema_real, *lecam_ema_fake);
        lecam_backward(dr, df, w->lecam * factor, lr, nl, lf, nl, *lecam_ema_real, *lecam_ema_fake);
        lecam_ema_update(lecam_ema_real, lecam_ema_fake, lr, nl, lf, nl, LECAM_EMA_DECAY);
        d += w->lecam * logs->lecam_loss;
    }
    logs->d_loss = factor * d;
    logs->logits_real = mean_f64(lr, nl);
    logs->logits_fake = mean_f64(lf, nl);
    grad_zero(&L->disc->table, disc_grads);
    disc_backward(L->disc, L->disc_params, &ar_real, dr, disc_grads, NULL);
    disc_backward(L->disc, L->disc_params, &ar_fake, df, disc_grads, NULL);
    dist_allreduce_mean(disc_grads, L->disc->table.total); /* data parallel */
    logs->grad_norm_disc = grad_clip(&L->disc->table, disc_grads, max_grad_norm);
    adamw_step(opt, L->disc_params, disc_grads);
    /* BatchNorm statistics stay per rank, as in the reference; like its DDP
     * (broadcast_buffers) every rank then continues from rank 0's buffers. */
    if (dist_world() > 1)
        for (int i = 0; i < L->disc->table.n; i++) {
            const param_entry *e = &L->disc->table.entries[i];
            if (e->kind == PARAM_BUFFER)
                dist_broadcast(L->disc_params + e->offset, e->numel * sizeof(float), 0);
        }
    arena_reset(ar, mark);
}
