/* cnn_classifier.c — see cnn_classifier.h. */
#include "models/cnn_classifier.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/act.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/pool.h"

/* ------------------------------------------------------------ configuration */

void cnn_config_check(const cnn_config *c)
{
    if (c->in_chans < 1 || c->in_chans > 4096)
        die("CNN classifier: in_chans %d (1 .. 4096)", c->in_chans);
    if (c->n_stages < 1 || c->n_stages > CNN_MAX_STAGES)
        die("CNN classifier: %d stages (1 .. %d widths)", c->n_stages, CNN_MAX_STAGES);
    if (c->groups < 1)
        die("CNN classifier: %d GroupNorm groups", c->groups);
    for (int s = 0; s < c->n_stages; s++) {
        if (c->widths[s] < 1 || c->widths[s] > 65536)
            die("CNN classifier: stage %d width %d (1 .. 65536)", s, c->widths[s]);
        if (c->widths[s] % c->groups)
            die("CNN classifier: stage %d width %d is not divisible by the %d GroupNorm groups", s, c->widths[s],
                c->groups);
    }
    if (c->num_classes < 0)
        die("CNN classifier: %d classes", c->num_classes);
    if (!(c->gn_eps > 0))
        die("CNN classifier: GroupNorm eps %g (must be > 0)", c->gn_eps);
}

const char *cnn_config_to_json(const cnn_config *c, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "{\"arch\": \"cnn\", \"in_chans\": %d, \"widths\": [", c->in_chans);
    for (int s = 0; s < c->n_stages && n < size; s++)
        n += (size_t)snprintf(buf + n, size - n, "%s%d", s ? ", " : "", c->widths[s]);
    if (n < size)
        snprintf(buf + n, size - n, "], \"groups\": %d, \"num_classes\": %d, \"gn_eps\": %g}", c->groups,
                 c->num_classes, c->gn_eps);
    return buf;
}

bool cnn_in_file(const safetensors *st, const char *prefix)
{
    char key[PARAM_NAME_MAX + 64];
    snprintf(key, sizeof key, "%sstages.0.conv1.weight", prefix);
    return safetensors_find(st, key) != NULL;
}

cnn_config cnn_config_from_checkpoint(const safetensors *st, const char *prefix, int groups)
{
    cnn_config c = {.gn_eps = 1e-5f};
    char key[PARAM_NAME_MAX + 64], shape[160];
    for (int s = 0;; s++) {
        snprintf(key, sizeof key, "%sstages.%d.conv1.weight", prefix, s);
        const st_tensor *t = safetensors_find(st, key);
        if (!t)
            break;
        if (s >= CNN_MAX_STAGES)
            die("'%s': more than %d CNN stages (%s)", st->path, CNN_MAX_STAGES, key);
        int cin = s ? c.widths[s - 1] : t->ndim == 4 ? (int)t->shape[1] : 0;
        if (t->ndim != 4 || t->shape[2] != 3 || t->shape[3] != 3 || t->shape[1] != cin || t->shape[0] < 1)
            die("'%s': '%s' has shape %s; a CNN stage's conv1 is [width, %s, 3, 3]", st->path, key,
                st_shape_str(t->ndim, t->shape, shape, sizeof shape), s ? "previous width" : "in_chans");
        if (s == 0)
            c.in_chans = cin;
        c.widths[s] = (int)t->shape[0];
        c.n_stages = s + 1;
    }
    if (c.n_stages == 0)
        die("'%s': not a CNN classifier (no %sstages.0.conv1.weight); --feature-net cnn takes a file from "
            "`repae train-encoder --arch cnn`",
            st->path, prefix);
    snprintf(key, sizeof key, "%shead.weight", prefix);
    const st_tensor *h = safetensors_find(st, key);
    if (h) {
        if (h->ndim != 2 || h->shape[1] != c.widths[c.n_stages - 1])
            die("'%s': '%s' has shape %s; the head is [classes, %d]", st->path, key,
                st_shape_str(h->ndim, h->shape, shape, sizeof shape), c.widths[c.n_stages - 1]);
        c.num_classes = (int)h->shape[0];
    }
    const char *meta = safetensors_meta(st, "config");
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *g = j ? cJSON_GetObjectItemCaseSensitive(j, "groups") : NULL;
    const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "gn_eps") : NULL;
    if (groups <= 0 && cJSON_IsNumber(g))
        groups = g->valueint;
    if (cJSON_IsNumber(e) && e->valuedouble > 0)
        c.gn_eps = (float)e->valuedouble;
    cJSON_Delete(j);
    if (groups <= 0)
        die("'%s': the CNN's GroupNorm group count is not recorded (metadata config {\"groups\": G}); the file "
            "should come from `repae train-encoder --arch cnn`",
            st->path);
    c.groups = groups;
    cnn_config_check(&c);
    return c;
}

/* ------------------------------------------------------------------ model */

void cnn_build(cnn_classifier *m, const cnn_config *cfg)
{
    cnn_config_check(cfg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->dim = cfg->widths[cfg->n_stages - 1];
    param_table *t = &m->table;
    char n[PARAM_NAME_MAX];
    int cin = cfg->in_chans;
    for (int s = 0; s < cfg->n_stages; s++) {
        cnn_stage *p = &m->stages[s];
        const int64_t w = cfg->widths[s];
        p->cin = cin;
        p->cout = (int)w;
        p->conv1_w = param_add(t, param_name(n, "stages.%d.conv1.weight", s), INIT_TORCH_DEFAULT, 4,
                               (int64_t[]){w, cin, 3, 3});
        p->norm1_w = param_add(t, param_name(n, "stages.%d.norm1.weight", s), INIT_ONE, 1, (int64_t[]){w});
        p->norm1_b = param_add(t, param_name(n, "stages.%d.norm1.bias", s), INIT_ZERO, 1, (int64_t[]){w});
        p->conv2_w = param_add(t, param_name(n, "stages.%d.conv2.weight", s), INIT_TORCH_DEFAULT, 4,
                               (int64_t[]){w, w, 3, 3});
        p->norm2_w = param_add(t, param_name(n, "stages.%d.norm2.weight", s), INIT_ONE, 1, (int64_t[]){w});
        p->norm2_b = param_add(t, param_name(n, "stages.%d.norm2.bias", s), INIT_ZERO, 1, (int64_t[]){w});
        cin = (int)w;
    }
    if (cfg->num_classes > 0) {
        m->head_w = param_add(t, "head.weight", INIT_TORCH_DEFAULT, 2, (int64_t[]){cfg->num_classes, m->dim});
        m->head_b = param_add_ex(t, "head.bias", INIT_TORCH_BIAS, (float)m->dim, PARAM_TRAINABLE, 1,
                                 (int64_t[]){cfg->num_classes});
    }
}

void cnn_free(cnn_classifier *m)
{
    param_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

void cnn_init_weights(const cnn_classifier *m, float *params, uint64_t seed) { param_init(&m->table, params, seed); }

void cnn_load(const cnn_classifier *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode)
{
    param_load(&m->table, params, st, prefix, mode);
}

float *cnn_from_checkpoint(cnn_classifier *m, const safetensors *st, const char *prefix, int groups,
                           param_load_mode mode)
{
    cnn_config c = cnn_config_from_checkpoint(st, prefix, groups);
    cnn_build(m, &c);
    float *params = param_alloc(&m->table);
    cnn_load(m, params, st, prefix, mode);
    return params;
}

/* ------------------------------------------------------------- activations */

/* One code path for planning (ar == NULL: count bytes) and carving. */
typedef struct planner {
    arena *ar;
    size_t bytes;
} planner;

static float *take(planner *p, size_t n)
{
    if (p->ar)
        return arena_floats(p->ar, n ? n : 1);
    p->bytes += arena_round((n ? n : 1) * sizeof(float));
    return NULL;
}

static void acts_carve(cnn_acts *a, const cnn_classifier *m, planner *p, int B, int H, int W, bool train)
{
    const cnn_config *c = &m->cfg;
    const int G = c->groups;
    memset(a, 0, sizeof *a);
    a->B = B, a->H = H, a->W = W;
    a->train = train;
    size_t max_act = 0, max_pool = 0, ws = 0;
    for (int s = 0; s < c->n_stages; s++) {
        cnn_stage_acts *t = &a->st[s];
        const cnn_stage *q = &m->stages[s];
        if (H < 2 || W < 2)
            die("CNN classifier: %d stages need images of at least %dx%d pixels (stage %d gets %dx%d)", c->n_stages,
                1 << c->n_stages, 1 << c->n_stages, s, H, W);
        t->H = H, t->W = W;
        t->conv1 = conv2d_make(B, q->cin, H, W, q->cout, 3, 1, 1);
        t->conv2 = conv2d_make(B, q->cout, H, W, q->cout, 3, 1, 1);
        size_t w1 = conv2d_workspace_floats(&t->conv1), w2 = conv2d_workspace_floats(&t->conv2);
        ws = w1 > ws ? w1 : ws;
        ws = w2 > ws ? w2 : ws;
        size_t n = (size_t)B * q->cout * H * W, np = (size_t)B * q->cout * (H / 2) * (W / 2);
        max_act = n > max_act ? n : max_act;
        max_pool = np > max_pool ? np : max_pool;
        H /= 2, W /= 2;
    }
    a->workspace = take(p, ws);
    a->features = take(p, (size_t)B * m->dim);
    if (train) {
        for (int s = 0; s < c->n_stages; s++) {
            cnn_stage_acts *t = &a->st[s];
            size_t n = conv2d_out_numel(&t->conv1), g = (size_t)B * G;
            t->c1 = take(p, n), t->r1 = take(p, n), t->c2 = take(p, n), t->r2 = take(p, n);
            t->mean1 = take(p, g), t->rstd1 = take(p, g), t->mean2 = take(p, g), t->rstd2 = take(p, g);
            t->pool = take(p, (size_t)B * m->stages[s].cout * (t->H / 2) * (t->W / 2));
        }
        a->grad_a = take(p, max_act);
        a->grad_b = take(p, max_act);
        a->grad_p = take(p, max_pool);
        a->dfeat = take(p, (size_t)B * m->dim);
    } else {
        /* Nothing kept: conv outputs in one buffer, normalised activations in
         * another, pool outputs alternating between two. */
        float *conv = take(p, max_act), *act = take(p, max_act);
        float *pool[2] = {take(p, max_pool), take(p, max_pool)};
        for (int s = 0; s < c->n_stages; s++)
            a->st[s] = (cnn_stage_acts){.H = a->st[s].H, .W = a->st[s].W, .conv1 = a->st[s].conv1,
                                        .conv2 = a->st[s].conv2, .c1 = conv, .c2 = conv, .r1 = act, .r2 = act,
                                        .pool = pool[s % 2]};
    }
}

size_t cnn_plan_bytes(const cnn_classifier *m, int B, int H, int W, bool train)
{
    planner p = {0};
    cnn_acts a;
    acts_carve(&a, m, &p, B, H, W, train);
    return p.bytes;
}

void cnn_acts_alloc(cnn_acts *a, const cnn_classifier *m, arena *ar, int B, int H, int W, bool train)
{
    planner p = {.ar = ar};
    acts_carve(a, m, &p, B, H, W, train);
}

/* ------------------------------------------------------------------ passes */

void cnn_forward(const cnn_classifier *m, const float *params, cnn_acts *a, const float *img, float *features,
                 float *logits)
{
    const cnn_config *c = &m->cfg;
    const float *P = params;
    const int B = a->B, G = c->groups, L = c->n_stages - 1;
    a->img = img;
    const float *in = img;
    for (int s = 0; s <= L; s++) {
        cnn_stage_acts *t = &a->st[s];
        const cnn_stage *q = &m->stages[s];
        const int HW = t->H * t->W;
        const size_t n = (size_t)B * q->cout * HW;
        conv2d_forward(t->c1, in, P + q->conv1_w, NULL, &t->conv1, a->workspace);
        group_norm_forward(t->r1, t->mean1, t->rstd1, t->c1, P + q->norm1_w, P + q->norm1_b, B, q->cout, HW, G,
                           c->gn_eps);
        relu_forward(t->r1, t->r1, n);
        conv2d_forward(t->c2, t->r1, P + q->conv2_w, NULL, &t->conv2, a->workspace);
        group_norm_forward(t->r2, t->mean2, t->rstd2, t->c2, P + q->norm2_w, P + q->norm2_b, B, q->cout, HW, G,
                           c->gn_eps);
        relu_forward(t->r2, t->r2, n);
        maxpool2x2_forward(t->pool, t->r2, B, q->cout, t->H, t->W);
        in = t->pool;
    }
    /* Global average pool of the last stage's pooled map. */
    const int D = m->dim, hw = (a->st[L].H / 2) * (a->st[L].W / 2);
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            const float *x = in + ((size_t)b * D + d) * hw;
            double sum = 0;
            for (int i = 0; i < hw; i++)
                sum += x[i];
            a->features[(size_t)b * D + d] = (float)(sum / hw);
        }
    if (features)
        memcpy(features, a->features, (size_t)B * D * sizeof(float));
    if (logits) {
        if (c->num_classes <= 0)
            die("CNN classifier: logits asked of a model without a head (num_classes 0)");
        linear_forward(logits, a->features, P + m->head_w, P + m->head_b, B, D, c->num_classes);
    }
}

void cnn_backward(const cnn_classifier *m, const float *params, const cnn_acts *a, float *grads, float *d_img,
                  const float *d_features, const float *d_logits)
{
    if (!a->train)
        die("cnn_backward: the forward ran in inference mode (nothing saved)");
    const cnn_config *c = &m->cfg;
    const float *P = params;
    const int B = a->B, G = c->groups, L = c->n_stages - 1, D = m->dim;
    float *dfeat = a->dfeat;
    memset(dfeat, 0, (size_t)B * D * sizeof(float));
    if (d_features)
        for (size_t i = 0; i < (size_t)B * D; i++)
            dfeat[i] += d_features[i];
    if (d_logits) {
        if (c->num_classes <= 0)
            die("cnn_backward: logit gradients for a model without a head");
        linear_backward(dfeat, true, grads ? grads + m->head_w : NULL, grads ? grads + m->head_b : NULL, d_logits,
                        a->features, P + m->head_w, B, D, c->num_classes);
    }
    /* Average pool: every pixel of the last map gets dfeat / hw. */
    const int hw = (a->st[L].H / 2) * (a->st[L].W / 2);
    float *dp = a->grad_p;
    for (size_t bd = 0; bd < (size_t)B * D; bd++)
        for (int i = 0; i < hw; i++)
            dp[bd * hw + i] = dfeat[bd] / (float)hw;
    /* Two buffers of the largest activation take turns holding the gradient
     * of the current tensor; grad_p holds the gradient of a pool output. */
    float *ga = a->grad_a, *gb = a->grad_b;
    for (int s = L; s >= 0; s--) {
        const cnn_stage_acts *t = &a->st[s];
        const cnn_stage *q = &m->stages[s];
        const int HW = t->H * t->W;
        const size_t n = (size_t)B * q->cout * HW, bytes = n * sizeof(float);
        memset(ga, 0, bytes);
        maxpool2x2_backward(ga, dp, t->r2, B, q->cout, t->H, t->W); /* d r2 */
        memset(gb, 0, bytes);
        relu_backward(gb, ga, t->r2, n); /* d GroupNorm-2 output (r2 > 0 exactly where its input is) */
        memset(ga, 0, bytes);
        group_norm_backward(ga, grads ? grads + q->norm2_w : NULL, grads ? grads + q->norm2_b : NULL, gb, t->c2,
                            t->mean2, t->rstd2, P + q->norm2_w, B, q->cout, HW, G); /* d c2 */
        memset(gb, 0, bytes);
        conv2d_backward(gb, grads ? grads + q->conv2_w : NULL, NULL, ga, t->r1, P + q->conv2_w, &t->conv2,
                        a->workspace); /* d r1 */
        memset(ga, 0, bytes);
        relu_backward(ga, gb, t->r1, n);
        memset(gb, 0, bytes);
        group_norm_backward(gb, grads ? grads + q->norm1_w : NULL, grads ? grads + q->norm1_b : NULL, ga, t->c1,
                            t->mean1, t->rstd1, P + q->norm1_w, B, q->cout, HW, G); /* d c1 */
        if (s > 0) {
            /* d of the previous stage's pool output: grad_p is free again (its
             * content was consumed by this stage's max-pool backward). */
            memset(dp, 0, conv2d_x_numel(&t->conv1) * sizeof(float));
            conv2d_backward(dp, grads ? grads + q->conv1_w : NULL, NULL, gb, a->st[s - 1].pool, P + q->conv1_w,
                            &t->conv1, a->workspace);
        } else if (d_img || grads)
            conv2d_backward(d_img, grads ? grads + q->conv1_w : NULL, NULL, gb, a->img, P + q->conv1_w, &t->conv1,
                            a->workspace);
    }
}
