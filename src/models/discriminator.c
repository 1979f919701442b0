#include "models/discriminator.h"

#include <string.h>

#include "core/error.h"
#include "ops/act.h"
#include "ops/norm.h"

void disc_build(discriminator *d, const disc_config *config)
{
    const disc_config cfg = *config;
    if (cfg.in_channels < 1 || cfg.ndf < 1 || cfg.n_layers < 1 || cfg.n_layers + 2 > DISC_MAX_CONVS)
        die("discriminator: unsupported configuration (in %d, ndf %d, layers %d)", cfg.in_channels, cfg.ndf,
            cfg.n_layers);
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->bn_eps = 1e-5f;
    d->bn_momentum = 0.1f;
    d->slope = 0.2f;
    char name[PARAM_NAME_MAX];
    int index = 0; /* position in the PyTorch Sequential */
    int cin = cfg.in_channels;
    for (int i = 0; i < cfg.n_layers + 2; i++) {
        disc_conv *c = &d->convs[i];
        bool first = i == 0, last = i == cfg.n_layers + 1;
        /* Width ndf·min(2^i, 8); the reference writes the stride-1 layer
         * (i = n_layers) apart, with the same rule. */
        int next_mult = i == 0 ? 1 : (1 << i) < 8 ? (1 << i) : 8;
        c->cin = cin;
        c->cout = last ? 1 : cfg.ndf * next_mult;
        c->stride = i < cfg.n_layers ? 2 : 1;
        c->has_bias = first || last;
        c->has_bn = !first && !last;
        c->has_act = !last;
        int64_t wshape[4] = {c->cout, c->cin, 4, 4};
        c->weight = param_add_ex(&d->table, param_name(name, "main.%d.weight", index), INIT_NORMAL, 0.02f,
                                 PARAM_TRAINABLE, 4, wshape);
        if (c->has_bias)
            c->bias = param_add_ex(&d->table, param_name(name, "main.%d.bias", index), INIT_TORCH_BIAS,
                                   (float)(c->cin * 16), PARAM_TRAINABLE, 1, (int64_t[]){c->cout});
        index++;
        if (c->has_bn) {
            int64_t ch[1] = {c->cout};
            c->bn_weight = param_add_ex(&d->table, param_name(name, "main.%d.weight", index), INIT_NORMAL_ONE, 0.02f,
                                        PARAM_TRAINABLE, 1, ch);
            c->bn_bias = param_add(&d->table, param_name(name, "main.%d.bias", index), INIT_ZERO, 1, ch);
            c->bn_mean = param_add_ex(&d->table, param_name(name, "main.%d.running_mean", index), INIT_ZERO, 0,
                                      PARAM_BUFFER, 1, ch);
            c->bn_var = param_add_ex(&d->table, param_name(name, "main.%d.running_var", index), INIT_ONE, 0,
                                     PARAM_BUFFER, 1, ch);
            c->bn_count = param_add_ex(&d->table, param_name(name, "main.%d.num_batches_tracked", index), INIT_ZERO,
                                       0, PARAM_BUFFER, 0, NULL);
            index++;
        }
        if (c->has_act)
            index++;
        cin = c->cout;
    }
    d->n_convs = cfg.n_layers + 2;
}

void disc_free(discriminator *d) { param_table_free(&d->table); }

void disc_init_weights(const discriminator *d, float *params, uint64_t seed) { param_init(&d->table, params, seed); }

void disc_load(const discriminator *d, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    param_load(&d->table, params, st, prefix, mode);
}

void disc_save(const discriminator *d, const float *params, st_writer *w, const char *prefix)
{
    param_save(&d->table, params, w, prefix);
}

static void layer_shapes(const discriminator *d, int B, int H, int W, conv2d_shape *shapes)
{
    for (int i = 0; i < d->n_convs; i++) {
        const disc_conv *c = &d->convs[i];
        shapes[i] = conv2d_make(B, c->cin, H, W, c->cout, 4, c->stride, 1);
        H = conv2d_out_h(&shapes[i]);
        W = conv2d_out_w(&shapes[i]);
        if (H < 1 || W < 1)
            die("discriminator: a %d-layer PatchGAN needs larger images (layer %d has no output pixels)",
                d->cfg.n_layers, i);
    }
}

int disc_logits_h(const discriminator *d, int H)
{
    conv2d_shape s[DISC_MAX_CONVS];
    layer_shapes(d, 1, H, H, s);
    return conv2d_out_h(&s[d->n_convs - 1]);
}

int disc_logits_w(const discriminator *d, int W)
{
    conv2d_shape s[DISC_MAX_CONVS];
    layer_shapes(d, 1, W, W, s);
    return conv2d_out_w(&s[d->n_convs - 1]);
}

size_t disc_acts_bytes(const discriminator *d, int B, int H, int W)
{
    conv2d_shape s[DISC_MAX_CONVS];
    layer_shapes(d, B, H, W, s);
    size_t bytes = 0, ws = 0;
    for (int i = 0; i < d->n_convs; i++) {
        size_t n = conv2d_out_numel(&s[i]) * sizeof(float);
        if (i < d->n_convs - 1)
            bytes += arena_round(n); /* conv_out (the last conv writes the caller's logits) */
        if (d->convs[i].has_bn)
            bytes += arena_round(n) + 2 * arena_round((size_t)d->convs[i].cout * sizeof(float));
        if (d->convs[i].has_act)
            bytes += arena_round(n);
        if (conv2d_workspace_floats(&s[i]) > ws)
            ws = conv2d_workspace_floats(&s[i]);
    }
    size_t max_n = 0;
    for (int i = 0; i < d->n_convs; i++)
        if (conv2d_out_numel(&s[i]) > max_n)
            max_n = conv2d_out_numel(&s[i]);
    return bytes + arena_round((ws ? ws : 1) * sizeof(float)) + 2 * arena_round(max_n * sizeof(float));
}

void disc_forward(const discriminator *d, float *params, disc_acts *s, float *logits, const float *x, int B, int H,
                  int W, arena *a)
{
    memset(s, 0, sizeof *s);
    s->B = B;
    s->input = x;
    layer_shapes(d, B, H, W, s->shape);
    size_t ws = 0;
    for (int i = 0; i < d->n_convs; i++)
        if (conv2d_workspace_floats(&s->shape[i]) > ws)
            ws = conv2d_workspace_floats(&s->shape[i]);
    s->workspace = arena_floats(a, ws ? ws : 1);
    size_t max_n = 0;
    for (int i = 0; i < d->n_convs; i++)
        if (conv2d_out_numel(&s->shape[i]) > max_n)
            max_n = conv2d_out_numel(&s->shape[i]);
    s->grad_a = arena_floats(a, max_n);
    s->grad_b = arena_floats(a, max_n);
    const float *in = x;
    for (int i = 0; i < d->n_convs; i++) {
        const disc_conv *c = &d->convs[i];
        const conv2d_shape *sh = &s->shape[i];
        size_t n = conv2d_out_numel(sh);
        int HW = conv2d_out_h(sh) * conv2d_out_w(sh);
        bool last = i == d->n_convs - 1;
        s->conv_out[i] = last ? logits : arena_floats(a, n);
        conv2d_forward(s->conv_out[i], in, params + c->weight, c->has_bias ? params + c->bias : NULL, sh,
                       s->workspace);
        const float *pre_act = s->conv_out[i];
        if (c->has_bn) {
            s->bn_out[i] = arena_floats(a, n);
            s->mean[i] = arena_floats(a, (size_t)c->cout);
            s->rstd[i] = arena_floats(a, (size_t)c->cout);
            batch_norm_train_forward(s->bn_out[i], s->mean[i], s->rstd[i], params + c->bn_mean, params + c->bn_var,
                                     s->conv_out[i], params + c->bn_weight, params + c->bn_bias, B, c->cout, HW,
                                     d->bn_eps, d->bn_momentum);
            params[c->bn_count] += 1.0f;
            pre_act = s->bn_out[i];
        }
        if (c->has_act) {
            s->act_out[i] = arena_floats(a, n);
            leaky_relu_forward(s->act_out[i], pre_act, n, d->slope);
            in = s->act_out[i];
        }
    }
}

void disc_replay_running_stats(const discriminator *d, float *params, const disc_acts *s)
{
    for (int i = 0; i < d->n_convs; i++) {
        const disc_conv *c = &d->convs[i];
        if (!c->has_bn)
            continue;
        const conv2d_shape *sh = &s->shape[i];
        batch_norm_running_update(params + c->bn_mean, params + c->bn_var, s->conv_out[i], s->B, c->cout,
                                  conv2d_out_h(sh) * conv2d_out_w(sh), d->bn_momentum);
        params[c->bn_count] += 1.0f;
    }
}

void disc_backward(const discriminator *d, const float *params, const disc_acts *s, const float *dlogits,
                   float *dparams, float *dx)
{
    /* Two gradient buffers of the largest activation, reused layer by layer:
     * `dcur` holds the gradient of the current conv's output. */
    float *buf_a = s->grad_a, *buf_b = s->grad_b;
    size_t last_n = conv2d_out_numel(&s->shape[d->n_convs - 1]);
    memcpy(buf_a, dlogits, last_n * sizeof(float));
    float *dcur = buf_a, *dprev = buf_b;
    for (int i = d->n_convs - 1; i >= 0; i--) {
        const disc_conv *c = &d->convs[i];
        const conv2d_shape *sh = &s->shape[i];
        const float *in = i == 0 ? s->input : s->act_out[i - 1];
        float *din = NULL;
        if (i > 0) {
            /* Gradient w.r.t. the previous layer's activation output, then back
             * through its LeakyReLU and BatchNorm into its conv output. */
            din = dprev;
            memset(din, 0, conv2d_x_numel(sh) * sizeof(float));
        } else
            din = dx;
        conv2d_backward(din, dparams ? dparams + c->weight : NULL,
                        dparams && c->has_bias ? dparams + c->bias : NULL, dcur, in, params + c->weight, sh,
                        s->workspace);
        if (i == 0)
            break;
        const disc_conv *p = &d->convs[i - 1];
        const conv2d_shape *psh = &s->shape[i - 1];
        size_t n = conv2d_out_numel(psh);
        int HW = conv2d_out_h(psh) * conv2d_out_w(psh);
        /* d(act_out) is in dprev; turn it into d(conv_out) in dcur. */
        float *dpre = dcur;
        memset(dpre, 0, n * sizeof(float));
        leaky_relu_backward(dpre, dprev, p->has_bn ? s->bn_out[i - 1] : s->conv_out[i - 1], n, d->slope);
        if (p->has_bn) {
            memset(dprev, 0, n * sizeof(float));
            batch_norm_train_backward(dprev, dparams ? dparams + p->bn_weight : NULL,
                                      dparams ? dparams + p->bn_bias : NULL, dpre, s->conv_out[i - 1], s->mean[i - 1],
                                      s->rstd[i - 1], params + p->bn_weight, s->B, p->cout, HW);
            float *t = dcur;
            dcur = dprev;
            dprev = t;
        }
    }
}
