/* SiT: parameter table and counts for the presets, config detection and
 * load/save round trips, finite-difference checks of the whole model
 * (input latent in the REPA-E alignment pass and in the train-mode SiT pass,
 * every parameter tensor), the frozen fast path and accumulation, and
 * PyTorch parity against tests/fixtures/models/sit_tiny*.safetensors
 * (dev/ref/models_ref.py). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "diffusion/denoising_objective.h"
#include "models/sit.h"
#include "ops/gemm.h"
#include "ops/gemm_packed.h"
#include "sit_problem.h"
#include "test.h"

/* ------------------------------------------------------------ helpers */

/* max |got - want| <= rel · max|want| + floor: the fixtures' tolerance rule
 * (dev/ref/README.md: errors relative to the tensor's largest entry). */
static int check_rel_max(const char *what, const float *got, const float *want, size_t n, double rel, double floor_)
{
    double wmax = 0, emax = 0;
    for (size_t i = 0; i < n; i++) {
        wmax = fmax(wmax, fabs(want[i]));
        emax = fmax(emax, fabs((double)got[i] - want[i]));
    }
    if (getenv("TEST_VERBOSE"))
        printf("       %-52s max err / max|want| = %.3g\n", what, wmax > 0 ? emax / wmax : emax);
    return check_close(what, got, want, n, rel * wmax + floor_, 0.0);
}

static int fixture_check_rel(const safetensors *st, const char *name, const float *got, size_t n, double rel,
                             double floor_)
{
    size_t m;
    float *want = fixture_f32(st, name, &m);
    int ok = 0;
    if (m != n)
        CHECK(0, "%s: fixture has %zu elements, computed %zu", name, m, n);
    else {
        char what[256];
        snprintf(what, sizeof what, "%s vs torch", name);
        ok = check_rel_max(what, got, want, n, rel, floor_);
    }
    free(want);
    return ok;
}

static int *fixture_ints(const safetensors *st, const char *name, size_t *n)
{
    const st_tensor *t = safetensors_require(st, name);
    int64_t *v = xmalloc((size_t)t->numel * sizeof(int64_t));
    safetensors_read_i64(st, t, v);
    int *r = xmalloc((size_t)t->numel * sizeof(int));
    for (int64_t i = 0; i < t->numel; i++)
        r[i] = (int)v[i];
    free(v);
    if (n)
        *n = (size_t)t->numel;
    return r;
}

/* Walks the table: every trainable tensor's gradient against "<prefix><key>". */
static void check_grads_by_name(const safetensors *st, const sit *m, const float *grads, const char *prefix,
                                double rel, double floor_)
{
    char key[PARAM_NAME_MAX + 32];
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        if (e->kind != PARAM_TRAINABLE)
            continue;
        snprintf(key, sizeof key, "%s%s", prefix, e->name);
        if (!safetensors_find(st, key)) {
            CHECK(0, "fixture has no '%s'", key);
            continue;
        }
        fixture_check_rel(st, key, grads + e->offset, e->numel, rel, floor_);
    }
}

/* A small model for finite differences: two encoders of different widths,
 * encoder_depth inside the stack, non-square everything. */
static sit_config tiny_config(bool qk_norm)
{
    sit_config c = sit_config_default();
    c.depth = 3, c.hidden = 32, c.heads = 2, c.patch = 2;
    c.in_channels = 3, c.input_size = 8;
    c.num_classes = 10, c.encoder_depth = 2, c.projector_dim = 40;
    c.n_encoders = 2, c.z_dims[0] = 24, c.z_dims[1] = 12;
    c.qk_norm = qk_norm;
    return c;
}

/* ------------------------------------------------------------ table and counts */

static void test_preset_counts_and_keys(void)
{
    sit_config c = sit_config_default();
    CHECK(sit_config_preset(&c, "SiT-XL/2") == 0, "SiT-XL/2 preset missing");
    sit m;
    sit_build(&m, &c); /* the table only: no weights allocated */
    /* spec §4.1: 675,111,184 (incl. the 256x1152 frozen pos_embed) + projector 8,131,328 */
    CHECK(sit_param_count(&m, false) == 675111184u, "SiT-XL/2 has %zu parameters, spec says 675,111,184",
          sit_param_count(&m, false));
    CHECK(sit_projector_param_count(&m) == 8131328u, "projector has %zu parameters, spec says 8,131,328",
          sit_projector_param_count(&m));
    CHECK(param_count(&m.table, PARAM_FROZEN) == 256u * 1152u, "frozen = pos_embed only, got %zu",
          param_count(&m.table, PARAM_FROZEN));
    CHECK(param_count(&m.table, PARAM_BUFFER) == 9, "BN buffers: 4 + 4 + 1, got %zu",
          param_count(&m.table, PARAM_BUFFER));
    /* key list: state-dict order and count */
    const char *first[] = {"pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight",
                           "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias",
                           "y_embedder.embedding_table.weight", "blocks.0.attn.qkv.weight",
                           "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
                           "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight",
                           "blocks.0.mlp.fc2.bias", "blocks.0.adaLN_modulation.1.weight",
                           "blocks.0.adaLN_modulation.1.bias"};
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        CHECK(strcmp(m.table.entries[i].name, first[i]) == 0, "key %zu is '%s', expected '%s'", i,
              m.table.entries[i].name, first[i]);
    const char *last[] = {"projectors.0.0.weight", "projectors.0.0.bias", "projectors.0.2.weight",
                          "projectors.0.2.bias", "projectors.0.4.weight", "projectors.0.4.bias",
                          "final_layer.linear.weight", "final_layer.linear.bias",
                          "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias",
                          "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"};
    int nl = (int)(sizeof last / sizeof last[0]);
    CHECK(m.table.n == 8 + 28 * 10 + 6 + 4 + 3, "SiT-XL/2 has %d keys, expected %d", m.table.n, 8 + 280 + 13);
    for (int i = 0; i < nl; i++)
        CHECK(strcmp(m.table.entries[m.table.n - nl + i].name, last[i]) == 0, "key '%s', expected '%s'",
              m.table.entries[m.table.n - nl + i].name, last[i]);
    const param_entry *e = param_find(&m.table, "blocks.27.attn.qkv.weight");
    CHECK(e && e->shape[0] == 3456 && e->shape[1] == 1152, "blocks.27.attn.qkv.weight shape");
    e = param_find(&m.table, "y_embedder.embedding_table.weight");
    CHECK(e && e->shape[0] == 1001, "label table has the null class row");
    e = param_find(&m.table, "bn.num_batches_tracked");
    CHECK(e && e->ndim == 0 && e->numel == 1 && e->kind == PARAM_BUFFER, "num_batches_tracked is a 0-dim buffer");
    CHECK(param_find(&m.table, "pos_embed")->kind == PARAM_FROZEN, "pos_embed is frozen");
    sit_free(&m);

    /* SiT-XL/1 on the f16d32 latent: 675,148,064 */
    c = sit_config_default();
    sit_config_preset(&c, "SiT-XL/1");
    c.in_channels = 32, c.input_size = 16;
    sit_build(&m, &c);
    CHECK(sit_param_count(&m, false) == 675148064u, "SiT-XL/1 C=32 has %zu parameters, spec says 675,148,064",
          sit_param_count(&m, false));
    CHECK(sit_param_count(&m, true) == 675148064u + 8131328u, "with projector");
    sit_free(&m);

    /* presets and heads */
    const struct {
        const char *name;
        int depth, hidden, heads, patch;
    } pr[] = {{"SiT-S/2", 12, 384, 6, 2}, {"SiT-B/4", 12, 768, 12, 4}, {"SiT-L/8", 24, 1024, 16, 8},
              {"SiT-XL/1", 28, 1152, 16, 1}};
    for (size_t i = 0; i < sizeof pr / sizeof pr[0]; i++) {
        c = sit_config_default();
        CHECK(sit_config_preset(&c, pr[i].name) == 0, "%s", pr[i].name);
        CHECK(c.depth == pr[i].depth && c.hidden == pr[i].hidden && c.heads == pr[i].heads &&
                  c.patch == pr[i].patch,
              "%s: depth %d hidden %d heads %d patch %d", pr[i].name, c.depth, c.hidden, c.heads, c.patch);
        CHECK(sit_heads_for_hidden(pr[i].hidden) == pr[i].heads, "heads for %d", pr[i].hidden);
    }
    CHECK(sit_config_preset(&c, "SiT-XL/3") == -1 && sit_config_preset(&c, "SiT-M/2") == -1 &&
              sit_config_preset(&c, "SiT-B/2x") == -1,
          "bad preset names must be refused");

    /* qk_norm: LayerNorm(head_dim) weight and bias for q and k in every
     * block; no class dropout: no null-class row */
    c = sit_config_default();
    sit_config_preset(&c, "SiT-B/2");
    sit_build(&m, &c);
    size_t plain = sit_param_count(&m, false);
    sit_free(&m);
    c.qk_norm = true;
    sit_build(&m, &c);
    CHECK(sit_param_count(&m, false) == plain + 12 * 4 * 64, "qk_norm adds %zu parameters, want 12·4·64",
          sit_param_count(&m, false) - plain);
    for (int i = 0; i < 12; i++) {
        const char *parts[4] = {"q_norm.weight", "q_norm.bias", "k_norm.weight", "k_norm.bias"};
        for (int k = 0; k < 4; k++) {
            char key[64];
            snprintf(key, sizeof key, "blocks.%d.attn.%s", i, parts[k]);
            const param_entry *q = param_find(&m.table, key);
            CHECK(q && q->ndim == 1 && q->shape[0] == 64 && q->kind == PARAM_TRAINABLE, "%s: [64], trainable", key);
        }
    }
    sit_free(&m);
    c.qk_norm = false, c.class_dropout_prob = 0.0f;
    sit_build(&m, &c);
    e = param_find(&m.table, "y_embedder.embedding_table.weight");
    CHECK(e && e->shape[0] == 1000, "no class dropout: 1000 label rows, got %lld", e ? (long long)e->shape[0] : -1LL);
    sit_free(&m);

    /* SiT-B/2 count (spec: 12 blocks of 12·768² + 13·768 weights ...): check the parts add up */
    c = sit_config_default();
    sit_config_preset(&c, "SiT-B/2");
    sit_build(&m, &c);
    size_t D = 768, blk = 3 * D * D + 3 * D + D * D + D + 4 * D * D + 4 * D + 4 * D * D + D + 6 * D * D + 6 * D;
    size_t want = 256 * D + (D * 16 + D) + (D * 256 + D + D * D + D) + 1001 * D + 12 * blk + (16 * D + 16) +
                  (2 * D * D + 2 * D);
    CHECK(sit_param_count(&m, false) == want, "SiT-B/2: %zu parameters, expected %zu", sit_param_count(&m, false),
          want);
    sit_free(&m);
}

/* ------------------------------------------------------------ configuration */

/* A configuration that sit_config_check must refuse, and the words it must
 * use: the default (SiT-XL/2 with one encoder) with one field changed. */
typedef struct {
    const char *what, *message;
    void (*change)(sit_config *);
} config_case;

static void cfg_depth0(sit_config *c) { c->depth = 0; }
static void cfg_hidden3(sit_config *c) { c->hidden = 3, c->heads = 1; }
static void cfg_heads0(sit_config *c) { c->heads = 0; }
static void cfg_patch0(sit_config *c) { c->patch = 0; }
static void cfg_channels0(sit_config *c) { c->in_channels = 0; }
static void cfg_input0(sit_config *c) { c->input_size = 0; }
static void cfg_heads7(sit_config *c) { c->heads = 7; }
static void cfg_hidden6(sit_config *c) { c->hidden = 6, c->heads = 2; }
static void cfg_input33(sit_config *c) { c->input_size = 33; }
static void cfg_classes0(sit_config *c) { c->num_classes = 0; }
static void cfg_dropout1(sit_config *c) { c->class_dropout_prob = 1.0f; }
static void cfg_dropout_neg(sit_config *c) { c->class_dropout_prob = -0.01f; }
static void cfg_encoders_neg(sit_config *c) { c->n_encoders = -1; }
static void cfg_encoders_many(sit_config *c) { c->n_encoders = SIT_MAX_ENCODERS + 1; }
static void cfg_enc_depth0(sit_config *c) { c->encoder_depth = 0; }
static void cfg_enc_depth29(sit_config *c) { c->encoder_depth = 29; }
static void cfg_proj_dim0(sit_config *c) { c->projector_dim = 0; }
static void cfg_zdim0(sit_config *c) { c->n_encoders = 2, c->z_dims[1] = 0; }
static void cfg_zdim0_first(sit_config *c) { c->z_dims[0] = 0; }
static void cfg_proj_type(sit_config *c) { c->projector_type = (sit_projector_type)7; }
static void cfg_kernel_even(sit_config *c) { c->projector_type = SIT_PROJECTOR_CONV, c->projector_kernel = 4; }
static void cfg_kernel0(sit_config *c) { c->projector_type = SIT_PROJECTOR_CONV, c->projector_kernel = 0; }
static void cfg_kernel33(sit_config *c) { c->projector_type = SIT_PROJECTOR_CONV, c->projector_kernel = 33; }
static void cfg_mlp_empty(sit_config *c) { c->mlp_ratio = 0.0001f; }
static void cfg_eps0(sit_config *c) { c->bn_eps = 0.0f; }
static void cfg_eps_nan(sit_config *c) { c->bn_eps = NAN; }
static void cfg_momentum_neg(sit_config *c) { c->bn_momentum = -0.5f; }
static void cfg_momentum_big(sit_config *c) { c->bn_momentum = 1.5f; }

static const config_case bad_configs[] = {
    {"depth 0", "depth 0, hidden 1152, heads 16, patch 2, channels 4, input 32 must all be positive", cfg_depth0},
    {"hidden 3", "hidden 3, heads 1", cfg_hidden3},
    {"heads 0", "heads 0, patch 2", cfg_heads0},
    {"patch 0", "patch 0, channels 4", cfg_patch0},
    {"channels 0", "channels 0, input 32 must", cfg_channels0},
    {"input 0", "input 0 must all be positive", cfg_input0},
    {"heads 7", "hidden size 1152 is not a multiple of the 7 heads", cfg_heads7},
    {"hidden 6", "hidden size 6 must be a multiple of 4", cfg_hidden6},
    {"input 33", "input size 33 is not a multiple of the patch size 2", cfg_input33},
    {"classes 0", "num_classes 0 must be positive", cfg_classes0},
    {"dropout 1", "class dropout probability 1 is outside [0, 1)", cfg_dropout1},
    {"dropout -0.01", "class dropout probability -0.01 is outside [0, 1)", cfg_dropout_neg},
    {"-1 encoders", "-1 encoders (at most", cfg_encoders_neg},
    {"too many encoders", "encoders (at most", cfg_encoders_many},
    {"encoder depth 0", "encoder_depth 0 is outside [1, depth = 28]", cfg_enc_depth0},
    {"encoder depth 29", "encoder_depth 29 is outside [1, depth = 28]", cfg_enc_depth29},
    {"projector dim 0", "projector_dim 0 must be positive", cfg_proj_dim0},
    {"z dim 0", "z_dims[1] = 0 must be positive", cfg_zdim0},
    {"first z dim 0", "z_dims[0] = 0 must be positive", cfg_zdim0_first},
    {"projector type 7", "unknown projector type 7", cfg_proj_type},
    {"conv kernel 4", "conv projector kernel 4 must be odd and in [1, 31]", cfg_kernel_even},
    {"conv kernel 0", "conv projector kernel 0 must be odd", cfg_kernel0},
    {"conv kernel 33", "conv projector kernel 33 must be odd", cfg_kernel33},
    {"mlp ratio 0.0001", "gives an empty MLP", cfg_mlp_empty},
    {"bn eps 0", "BN eps 0 must be > 0", cfg_eps0},
    {"bn eps NaN", "BN eps nan must be > 0", cfg_eps_nan},
    {"bn momentum -0.5", "momentum -0.5 in [0, 1]", cfg_momentum_neg},
    {"bn momentum 1.5", "momentum 1.5 in [0, 1]", cfg_momentum_big},
};

static void check_changed_config(void *arg)
{
    const config_case *k = arg;
    sit_config c = sit_config_default();
    k->change(&c);
    sit_config_check(&c);
}

static void build_changed_config(void *arg)
{
    const config_case *k = arg;
    sit_config c = sit_config_default();
    k->change(&c);
    sit m;
    sit_build(&m, &c);
}

/* The defaults are the spec's SiT-XL/2 with one 768-wide encoder; every
 * refusal of sit_config_check names its field; the edges of each range are
 * accepted. */
static void test_config_defaults_and_checks(void)
{
    sit_config c = sit_config_default();
    CHECK(c.depth == 28 && c.hidden == 1152 && c.heads == 16 && c.patch == 2 && c.in_channels == 4 &&
              c.input_size == 32 && c.num_classes == 1000 && c.class_dropout_prob == 0.1f,
          "default size: depth %d hidden %d heads %d patch %d C %d input %d classes %d dropout %g", c.depth, c.hidden,
          c.heads, c.patch, c.in_channels, c.input_size, c.num_classes, c.class_dropout_prob);
    CHECK(c.encoder_depth == 8 && c.projector_dim == 2048 && c.projector_type == SIT_PROJECTOR_MLP &&
              c.projector_kernel == 3 && c.n_encoders == 1 && c.z_dims[0] == 768,
          "default REPA head: encoder_depth %d projector_dim %d type %d kernel %d encoders %d z_dim %d",
          c.encoder_depth, c.projector_dim, (int)c.projector_type, c.projector_kernel, c.n_encoders, c.z_dims[0]);
    CHECK(!c.qk_norm && c.mlp_ratio == 4.0f && c.bn_momentum == 0.1f && c.bn_eps == 1e-4f,
          "default qk_norm %d mlp_ratio %g bn momentum %g eps %g", (int)c.qk_norm, c.mlp_ratio, c.bn_momentum,
          c.bn_eps);
    char buf[512];
    CHECK(!strcmp(sit_config_str(&c, buf, sizeof buf),
                  "depth 28 hidden 1152 heads 16 patch 2 C 4 input 32 classes 1000 dropout 0.1 encoder_depth 8 "
                  "projector 2048 z_dims 768 qk_norm 0 mlp_ratio 4 bn_momentum 0.1 bn_eps 0.0001"),
          "default config string '%s'", buf);
    CHECK(sit_heads_for_hidden(1000) == 0, "no preset has hidden 1000: 0 heads, got %d", sit_heads_for_hidden(1000));
    sit_config_check(&c);
    for (size_t k = 0; k < sizeof bad_configs / sizeof bad_configs[0]; k++)
        expect_die(bad_configs[k].what, check_changed_config, (void *)&bad_configs[k], bad_configs[k].message);
    expect_die("sit_build checks its config", build_changed_config, (void *)&bad_configs[0], bad_configs[0].message);
    /* the edges that are allowed */
    sit_config e = c;
    e.depth = 1, e.encoder_depth = 1, e.hidden = 4, e.heads = 1, e.patch = 1, e.in_channels = 1, e.input_size = 1;
    e.num_classes = 1, e.class_dropout_prob = 0.0f, e.bn_momentum = 0.0f, e.projector_dim = 1, e.z_dims[0] = 1;
    e.mlp_ratio = 0.25f; /* an MLP one wide */
    sit_config_check(&e);
    e = c;
    e.encoder_depth = e.depth, e.bn_momentum = 1.0f, e.n_encoders = SIT_MAX_ENCODERS;
    for (int i = 0; i < SIT_MAX_ENCODERS; i++)
        e.z_dims[i] = 384;
    e.projector_type = SIT_PROJECTOR_CONV, e.projector_kernel = 31;
    sit_config_check(&e);
    e.projector_kernel = 1;
    sit_config_check(&e);
    /* two conv-projector encoders: the string names the kernel and both widths;
     * a short buffer holds the string's first bytes, terminated */
    e = c;
    e.n_encoders = 2, e.z_dims[1] = 1024, e.projector_type = SIT_PROJECTOR_CONV, e.qk_norm = true;
    CHECK(!strcmp(sit_config_str(&e, buf, sizeof buf),
                  "depth 28 hidden 1152 heads 16 patch 2 C 4 input 32 classes 1000 dropout 0.1 encoder_depth 8 "
                  "projector conv kernel 3 z_dims 768,1024 qk_norm 1 mlp_ratio 4 bn_momentum 0.1 bn_eps 0.0001"),
          "config string with two conv projectors '%s'", buf);
    char full[512], small[40];
    memset(small, 'x', sizeof small);
    sit_config_str(&e, full, sizeof full);
    sit_config_str(&e, small, sizeof small);
    CHECK(strlen(small) == sizeof small - 1 && !strncmp(small, full, sizeof small - 1),
          "a 40-byte buffer holds '%s'", small);
    char mid[150]; /* cut inside the z_dims list */
    sit_config_str(&e, mid, sizeof mid);
    CHECK(strlen(mid) == sizeof mid - 1 && !strncmp(mid, full, sizeof mid - 1), "a 150-byte buffer holds '%s'", mid);
    e = c; /* without encoders, the REPA head's fields are not looked at */
    e.n_encoders = 0, e.encoder_depth = 0, e.projector_dim = 0, e.projector_type = (sit_projector_type)7;
    sit_config_check(&e);
    CHECK(!strcmp(sit_config_str(&e, buf, sizeof buf),
                  "depth 28 hidden 1152 heads 16 patch 2 C 4 input 32 classes 1000 dropout 0.1 encoder_depth 0 "
                  "projector 0 z_dims none qk_norm 0 mlp_ratio 4 bn_momentum 0.1 bn_eps 0.0001"),
          "config string without encoders '%s'", buf);
}

/* ------------------------------------------------------------ configuration from a file */

/* sit_config_from_weights reads the configuration off a few tensors' shapes.
 * The base file: D 8, a 2×2 grid of patch 4 over 4 channels, 10 classes and
 * the null row, blocks 0 and 1, MLP width 24, q/k norms, one MLP projector
 * 16 → 12.  Each case replaces one tensor's shape (ndim 0: drops it) or
 * adds one, and must be refused in its words. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    const char *message;
} sit_shape_case;

static const sit_shape_case sit_shape_cases[] = {
    {"pos_embed", 0, {0}, "no tensor 'pos_embed': not a SiT state dict (or the wrong key prefix)"},
    {"pos_embed", 2, {4, 8}, "tensor 'pos_embed' has 2 dimensions, expected 3"},
    {"pos_embed", 3, {1, 5, 8}, "pos_embed has 5 tokens, not a square grid"},
    {"x_embedder.proj.weight", 4, {8, 4, 4, 3}, "x_embedder.proj.weight has an unexpected shape"},
    {"x_embedder.proj.weight", 4, {9, 4, 4, 4}, "x_embedder.proj.weight has an unexpected shape"},
    {"y_embedder.embedding_table.weight", 2, {1, 8}, "num_classes 0 must be positive"},
    {"y_embedder.embedding_table.weight", 3, {1, 11, 8}, "'y_embedder.embedding_table.weight' has 3 dimensions"},
    {"blocks.0.attn.qkv.weight", 0, {0}, "no SiT blocks (blocks.0.attn.qkv.weight) under prefix ''"},
    {"blocks.0.mlp.fc1.weight", 0, {0}, "no tensor 'blocks.0.mlp.fc1.weight'"},
    {"projectors.0.4.weight", 0, {0}, "no tensor 'projectors.0.4.weight'"},
    {"projectors.0.0.weight", 3, {16, 8, 1}, "'projectors.0.0.weight' has 3 dimensions, expected 2"},
    {"projectors.0.projection_layer.weight", 4, {12, 9, 3, 3},
     "'projectors.0.projection_layer.weight' has shape [12, 9, 3, 3]; a conv projector is [z_dim, 8, k, k] with odd k"},
    {"projectors.0.projection_layer.weight", 4, {12, 8, 2, 2}, "has shape [12, 8, 2, 2]; a conv projector is"},
    {"projectors.0.projection_layer.weight", 4, {12, 8, 3, 1}, "has shape [12, 8, 3, 1]; a conv projector is"},
    {"projectors.0.projection_layer.weight", 4, {12, 8, 33, 33}, "has shape [12, 8, 33, 33]; a conv projector is"},
    {"projectors.0.projection_layer.weight", 3, {12, 8, 3}, "has 3 dimensions, expected 4"},
};

static void write_sit_shapes(const char *path, const sit_shape_case *k)
{
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } base[] = {{"pos_embed", 3, {1, 4, 8}},
                {"x_embedder.proj.weight", 4, {8, 4, 4, 4}},
                {"y_embedder.embedding_table.weight", 2, {11, 8}},
                {"blocks.0.attn.qkv.weight", 2, {24, 8}},
                {"blocks.0.attn.q_norm.weight", 1, {4}},
                {"blocks.0.mlp.fc1.weight", 2, {24, 8}},
                {"blocks.1.attn.qkv.weight", 2, {24, 8}},
                {"projectors.0.0.weight", 2, {16, 8}},
                {"projectors.0.4.weight", 2, {12, 16}}};
    static float zeros[12 * 8 * 33 * 33];
    st_writer *w = st_writer_new();
    bool added = false;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        if (k && !strcmp(k->name, base[i].name)) {
            added = true;
            if (k->ndim > 0)
                st_writer_add_f32(w, k->name, k->ndim, k->shape, zeros);
        } else {
            st_writer_add_f32(w, base[i].name, base[i].ndim, base[i].shape, zeros);
        }
    }
    if (k && !added)
        st_writer_add_f32(w, k->name, k->ndim, k->shape, zeros);
    st_writer_save(w, path);
    st_writer_free(w);
}

static void sit_config_of(void *arg)
{
    safetensors *st = safetensors_open((const char *)arg);
    sit_config c = sit_config_default();
    c.encoder_depth = 1;
    sit_config_from_weights(&c, st, "", 2);
}

static void sit_config_of_without_heads(void *arg)
{
    safetensors *st = safetensors_open((const char *)arg);
    sit_config c = sit_config_default();
    c.encoder_depth = 1;
    sit_config_from_weights(&c, st, NULL, 0);
}

static void test_config_from_weights(void)
{
    const char *path = test_tmp_path("sit_shapes.safetensors");
    write_sit_shapes(path, NULL);
    safetensors *st = safetensors_open(path);
    sit_config c = sit_config_default();
    c.encoder_depth = 1; /* (a configuration the file does not hold) */
    c.projector_type = SIT_PROJECTOR_CONV; /* the file's MLP projector must replace it */
    sit_config_from_weights(&c, st, NULL, 2);
    CHECK(c.hidden == 8 && c.heads == 2 && c.patch == 4 && c.in_channels == 4 && c.input_size == 8 && c.depth == 2 &&
              c.mlp_ratio == 3.0f && c.qk_norm && c.num_classes == 10 && c.n_encoders == 1 &&
              c.projector_type == SIT_PROJECTOR_MLP && c.projector_dim == 16 && c.z_dims[0] == 12,
          "read D %d heads %d p %d C %d input %d depth %d ratio %g qk %d classes %d encoders %d type %d P %d z %d",
          c.hidden, c.heads, c.patch, c.in_channels, c.input_size, c.depth, c.mlp_ratio, (int)c.qk_norm,
          c.num_classes, c.n_encoders, (int)c.projector_type, c.projector_dim, c.z_dims[0]);
    c = sit_config_default();
    c.encoder_depth = 1, c.class_dropout_prob = 0.0f; /* then every row of the table is a class */
    sit_config_from_weights(&c, st, "", 2);
    CHECK(c.num_classes == 11, "without class dropout: 11 classes, got %d", c.num_classes);
    sit_config_from_weights(&c, st, "", 1);
    CHECK(c.heads == 1, "one head asked for: %d", c.heads);
    safetensors_close(st);
    expect_die("hidden 8 without heads", sit_config_of_without_heads, (void *)path,
               "hidden size 8 matches no SiT preset, so the head count is unknown; give it explicitly");
    for (size_t k = 0; k < sizeof sit_shape_cases / sizeof sit_shape_cases[0]; k++) {
        write_sit_shapes(path, &sit_shape_cases[k]);
        expect_die(sit_shape_cases[k].message, sit_config_of, (void *)path, sit_shape_cases[k].message);
    }
}

typedef struct {
    const sit *m;
    float *w;
    float bad;
} stats_case;

static void set_bad_scale(void *arg)
{
    const stats_case *k = arg;
    float bias[3] = {0}, scale[3] = {1.0f, k->bad, 1.0f};
    sit_set_latent_stats(k->m, k->w, bias, scale);
}

static void test_init_rules(void)
{
    sit_config c = tiny_config(false);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_init_weights(&m, w, 7);
    /* adaLN-Zero and the final layer start at exactly zero */
    const char *zeros[] = {"blocks.1.adaLN_modulation.1.weight", "blocks.2.adaLN_modulation.1.bias",
                           "final_layer.linear.weight", "final_layer.linear.bias",
                           "final_layer.adaLN_modulation.1.weight", "bn.running_mean", "bn.num_batches_tracked",
                           "blocks.0.attn.qkv.bias", "x_embedder.proj.bias"};
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) {
        const param_entry *e = param_find(&m.table, zeros[i]);
        int allz = 1;
        for (size_t k = 0; k < e->numel; k++)
            allz &= w[e->offset + k] == 0.0f;
        CHECK(allz, "%s should start at zero", zeros[i]);
    }
    const param_entry *e = param_find(&m.table, "bn.running_var");
    CHECK(w[e->offset] == 1.0f && w[e->offset + 2] == 1.0f, "running_var starts at 1");
    /* Xavier bound of the patch embed on its [D, C·p·p] view: sqrt(6/(12+32)) */
    e = param_find(&m.table, "x_embedder.proj.weight");
    double a = sqrt(6.0 / (12 + 32)), mx = 0;
    for (size_t k = 0; k < e->numel; k++)
        mx = fmax(mx, fabs(w[e->offset + k]));
    CHECK(mx <= a && mx > 0.9 * a, "patch embed max %g, Xavier bound %g", mx, a);
    /* qkv: full-matrix Xavier sqrt(6/(32+96)) */
    e = param_find(&m.table, "blocks.0.attn.qkv.weight");
    a = sqrt(6.0 / (32 + 96)), mx = 0;
    for (size_t k = 0; k < e->numel; k++)
        mx = fmax(mx, fabs(w[e->offset + k]));
    CHECK(mx <= a && mx > 0.9 * a, "qkv max %g, Xavier bound %g", mx, a);
    /* label table and t_embedder: N(0, 0.02²) */
    e = param_find(&m.table, "y_embedder.embedding_table.weight");
    CHECK(e->shape[0] == 11, "10 classes + null");
    double ss = 0;
    for (size_t k = 0; k < e->numel; k++)
        ss += (double)w[e->offset + k] * w[e->offset + k];
    double sd = sqrt(ss / e->numel);
    CHECK(sd > 0.016 && sd < 0.024, "label table std %g, want 0.02", sd);
    /* pos_embed: token (row 1, col 2), first entry sin(2·ω0) = sin 2, entry Q: cos 2, entry 2Q: sin 1 */
    e = param_find(&m.table, "pos_embed");
    const float *pe = w + e->offset + (size_t)(1 * 4 + 2) * 32;
    CHECK(fabsf(pe[0] - sinf(2.0f)) < 1e-6f && fabsf(pe[8] - cosf(2.0f)) < 1e-6f && fabsf(pe[16] - sinf(1.0f)) < 1e-6f,
          "pos_embed halves: column first (%g %g %g)", pe[0], pe[8], pe[16]);
    /* With the true init the output is exactly zero (adaLN-Zero + zero final layer). */
    int N = 2;
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *x = alloc_normal(N * CHW, 1.0f, 3), *v = alloc_normal(N * CHW, 1.0f, 4), t[2] = {0.3f, 0.9f};
    int y[2] = {1, 10};
    arena ar = arena_create(sit_velocity_plan_bytes(&m, N));
    sit_velocity(&m, w, false, &ar, v, x, t, y, N);
    double vmax = 0;
    for (size_t i = 0; i < N * CHW; i++)
        vmax = fmax(vmax, fabs(v[i]));
    CHECK(vmax == 0.0, "output under the spec init should be exactly 0, max %g", vmax);
    /* latent stats round trip */
    float bias[3] = {0.1f, -0.2f, 0.3f}, scale[3] = {0.5f, 2.0f, 1.25f}, b2[3], s2[3];
    sit_set_latent_stats(&m, w, bias, scale);
    sit_get_latent_stats(&m, w, b2, s2);
    for (int k = 0; k < 3; k++)
        CHECK(b2[k] == bias[k] && fabsf(s2[k] - scale[k]) < 1e-6f * scale[k], "latent stats round trip [%d]", k);
    /* a scale that cannot be inverted is refused, naming its channel */
    const float bad_scales[3] = {0.0f, NAN, INFINITY};
    const char *bad_words[3] = {"scale[1] = 0 cannot be inverted", "scale[1] = nan cannot be inverted",
                                "scale[1] = inf cannot be inverted"};
    for (int k = 0; k < 3; k++) {
        stats_case sc = {&m, w, bad_scales[k]};
        expect_die(bad_words[k], set_bad_scale, &sc, bad_words[k]);
    }
    arena_free(&ar);
    free(x), free(v), free(w);
    sit_free(&m);
}

static void test_save_load_and_detect(void)
{
    for (int qk = 0; qk < 2; qk++) {
        sit_config c = tiny_config(qk);
        sit m;
        sit_build(&m, &c);
        float *w = param_alloc(&m.table);
        sit_test_randomize(&m, w, 11, true);
        w[m.bn_count] = 5;
        char path[] = "/tmp/repae_test_sit_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp");
        close(fd);
        /* a checkpoint holding two copies under prefixes */
        float *w2 = param_alloc(&m.table);
        sit_test_randomize(&m, w2, 12, true);
        st_writer *wr = st_writer_new();
        sit_save(&m, w, wr, "model.");
        sit_save(&m, w2, wr, "ema.");
        st_writer_save(wr, path);
        st_writer_free(wr);
        safetensors *st = safetensors_open(path);
        sit_config d = sit_config_default();
        d.encoder_depth = 2; /* not in the shapes */
        sit_config_from_weights(&d, st, "ema.", 2); /* hidden 32 matches no preset: heads given */
        CHECK(d.depth == 3 && d.hidden == 32 && d.heads == 2 && d.patch == 2 && d.in_channels == 3 &&
                  d.input_size == 8 && d.num_classes == 10 && d.n_encoders == 2 && d.z_dims[0] == 24 &&
                  d.z_dims[1] == 12 && d.projector_dim == 40 && d.qk_norm == (bool)qk && d.mlp_ratio == 4.0f,
              "detected config differs (qk %d): depth %d hidden %d patch %d C %d input %d classes %d E %d", qk,
              d.depth, d.hidden, d.patch, d.in_channels, d.input_size, d.num_classes, d.n_encoders);
        sit m2;
        sit_build(&m2, &d);
        CHECK(m2.table.total == m.table.total, "same table size");
        float *r = param_alloc(&m2.table), *r2 = param_alloc(&m2.table);
        sit_load(&m2, r, st, "model.", PARAM_IGNORE_EXTRA);
        sit_load(&m2, r2, st, "ema.", PARAM_IGNORE_EXTRA);
        CHECK(memcmp(r, w, m.table.total * sizeof(float)) == 0, "model. copy round trip is exact");
        CHECK(memcmp(r2, w2, m.table.total * sizeof(float)) == 0, "ema. copy round trip is exact");
        CHECK(r[m.bn_count] == 5.0f, "num_batches_tracked round trip");
        safetensors_close(st);
        /* standalone file: no prefix, config in the metadata */
        sit_save_file(&m, w, path);
        st = safetensors_open(path);
        const char *fmt = safetensors_meta(st, "format");
        CHECK(fmt && strcmp(fmt, "repae-sit") == 0 && safetensors_meta(st, "sit_config"), "sit_save_file metadata");
        memset(r, 0, m.table.total * sizeof(float));
        sit_load(&m, r, st, "", PARAM_STRICT);
        CHECK(memcmp(r, w, m.table.total * sizeof(float)) == 0, "sit_save_file round trip is exact");
        safetensors_close(st);
        unlink(path);
        free(r), free(r2), free(w), free(w2);
        sit_free(&m2);
        sit_free(&m);
    }
}

/* ------------------------------------------------------------ finite differences */

/* The REPA-E VAE-alignment pass: SiT frozen, eval BN, align-only; the
 * gradient of 1.5·proj_loss into the latent. */
static void test_fd_alignment_pass_dz(void)
{
    sit_config c = tiny_config(false);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 21, true);
    int N = 3;
    sit_problem p = sit_problem_make(&m, N, 100, 0.4f, -1.0f);
    denoising_opts o = {.train = false, .align_only = true, .path = PATH_COSINE};
    arena ar = arena_create(2 * denoising_objective_plan_bytes(&m, N, &o));
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *dz = alloc_zeros(N * CHW);
    float *w_before = xmalloc(m.table.total * sizeof(float));
    memcpy(w_before, w, m.table.total * sizeof(float));
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    in.force_drop = NULL; /* eval: no dropout, nothing drawn */
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    CHECK(a.model_output == NULL && a.denoising_loss == NULL && a.net.n_blocks == 2, "align-only runs 2 blocks only");
    for (int n = 0; n < N; n++)
        CHECK(a.labels[n] == p.y[n], "no label dropout in eval mode");
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, NULL, dz);
    CHECK(memcmp(w_before, w, m.table.total * sizeof(float)) == 0, "eval forward/backward must not touch params");
    sit_fd_ctx ctx = {&m, w, &ar, o, in, N, 0.0f, 1.5f};
    /* float32 loss with ~1e-7 relative rounding over a step of 1e-2 plus O(h²)
     * curvature: measured <= 4e-5 of |grad|, limit 1e-3 (a wrong factor or a
     * missing path is O(1)). */
    fd_check_direction("align-only eval-BN d/dz", sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 1);
    fd_check_direction("align-only eval-BN d/dz (2)", sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 2);
    /* the eval-BN gradient is per-channel: entries must not depend on running stats updates */
    arena_free(&ar);
    free(dz), free(w), free(w_before);
    sit_problem_free(&p);
    sit_free(&m);
}

/* The SiT pass in train mode (batch statistics), full depth: input gradient
 * (through the batch-statistics BN backward and both the x_t and the v*
 * paths) and every parameter tensor. */
/* A label outside the table is refused: below 0, past the null class, and
 * the null class itself when there is no class dropout (the table then has
 * no null row).  With dropout the null class is a valid label. */
typedef struct {
    int label;
    float dropout;
} label_case;

/* The tiny SiT with the case's class dropout, its weights randomised. */
static float *build_with_dropout(sit *m, const label_case *k)
{
    sit_config c = tiny_config(false);
    c.class_dropout_prob = k->dropout;
    sit_build(m, &c);
    float *w = param_alloc(&m->table);
    sit_test_randomize(m, w, 7, true);
    return w;
}

static void forward_with_label(void *arg)
{
    const label_case *k = arg;
    sit m;
    float *w = build_with_dropout(&m, k);
    sit_problem p = sit_problem_make(&m, 2, 300, 0.0f, -1.0f);
    p.y[1] = k->label, p.drop[0] = p.drop[1] = 0;
    denoising_opts o = {.train = true, .path = PATH_LINEAR};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, 2, &o));
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, 2);
}

/* One objective forward of the tiny SiT (dropout 0.1, train mode) with one
 * input taken away or zeroed (`what`), to see it refused. */
static void forward_missing(void *arg)
{
    const char *what = arg;
    sit m;
    float *w = build_with_dropout(&m, &(label_case){0, strcmp(what, "drop, no dropout") ? 0.1f : 0.0f});
    sit_problem p = sit_problem_make(&m, 2, 300, 0.0f, -1.0f);
    denoising_opts o = {.train = true, .path = PATH_LINEAR};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, 2, &o));
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    int N = 2;
    rng r = rng_new(1, 2);
    in.rng = NULL;
    if (!strcmp(what, "N"))
        N = 0;
    else if (!strcmp(what, "one sample"))
        N = 1;
    else if (!strcmp(what, "z"))
        in.z = NULL;
    else if (!strcmp(what, "y"))
        in.y = NULL;
    else if (!strcmp(what, "zs"))
        in.zs[0] = NULL;
    else if (!strcmp(what, "t"))
        in.time_input = NULL;
    else if (!strcmp(what, "noise"))
        in.noise = NULL;
    else if (!strcmp(what, "drop"))
        in.force_drop = NULL;
    else if (!strcmp(what, "drop, eval mode") || !strcmp(what, "drop, no dropout"))
        in.force_drop = NULL, o.train = !strcmp(what, "drop, no dropout");
    else if (!strcmp(what, "everything drawn"))
        in.time_input = in.noise = NULL, in.force_drop = NULL, in.rng = &r;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
}

static void velocity_with_label(void *arg)
{
    const label_case *k = arg;
    sit m;
    float *w = build_with_dropout(&m, k), x[2 * 3 * 8 * 8] = {0}, v[2 * 3 * 8 * 8], t[2] = {0.5f, 0.5f};
    int y[2] = {0, k->label};
    arena ar = arena_create(sit_velocity_plan_bytes(&m, 2));
    sit_velocity(&m, w, false, &ar, v, x, t, y, 2);
}

/* The objective's inputs: a batch of none, no latent, no labels or no REPA
 * target are refused; so is anything left to draw (t, ε, the label
 * dropout in train mode) without an rng.  Eval mode draws no dropout, and
 * drawn t and ε come from the rng in that order. */
static void test_objective_inputs(void)
{
    const struct {
        const char *what, *message;
    } bad[] = {
        {"N", "needs N >= 1, a latent and labels"},
        {"z", "needs N >= 1, a latent and labels"},
        {"y", "needs N >= 1, a latent and labels"},
        {"zs", "missing REPA target for encoder 0"},
        {"t", "t, noise or label dropout must be drawn but no rng was given"},
        {"noise", "t, noise or label dropout must be drawn but no rng was given"},
        {"drop", "t, noise or label dropout must be drawn but no rng was given"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        expect_die(bad[k].what, forward_missing, (void *)bad[k].what, bad[k].message);
    char err[512];
    CHECK(run_in_child(forward_missing, "drop, eval mode", err, sizeof err) == 0, "eval mode draws no dropout: %s",
          err);
    CHECK(run_in_child(forward_missing, "drop, no dropout", err, sizeof err) == 0,
          "train mode without class dropout draws none: %s", err);
    CHECK(run_in_child(forward_missing, "one sample", err, sizeof err) == 0, "a batch of one: %s", err);
    CHECK(run_in_child(forward_missing, "everything drawn", err, sizeof err) == 0, "all drawn from an rng: %s", err);

    /* Drawn: t (lognormal on the linear path), then ε, from the rng given. */
    sit m;
    float *w = build_with_dropout(&m, &(label_case){0, 0.1f});
    sit_problem p = sit_problem_make(&m, 2, 300, 0.0f, -1.0f);
    denoising_opts o = {.train = true, .path = PATH_LINEAR, .weighting = TIME_WEIGHTING_LOGNORMAL};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, 2, &o));
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    rng r = rng_new(3, 4), same = rng_new(3, 4);
    in.time_input = in.noise = NULL, in.rng = &r;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, 2);
    const size_t CHW = (size_t)m.C * m.H * m.H;
    float t[2], *eps = alloc_zeros(2 * CHW);
    denoising_draw_time(t, &same, 2, TIME_WEIGHTING_LOGNORMAL, PATH_LINEAR);
    rng_normal_fill(&same, eps, 2 * CHW);
    CHECK(!memcmp(a.time_input, t, sizeof t) && !memcmp(a.noise, eps, 2 * CHW * sizeof(float)) && t[0] > 0 &&
              t[0] < 1 && t[0] != t[1],
          "drawn t %g %g, ε[0] %g: want t %g %g, ε[0] %g", a.time_input[0], a.time_input[1], a.noise[0], t[0], t[1],
          eps[0]);
    arena_free(&ar);
    free(eps), free(w);
    sit_problem_free(&p);
    sit_free(&m);

    CHECK(time_weighting_parse("uniform") == TIME_WEIGHTING_UNIFORM &&
              time_weighting_parse("lognormal") == TIME_WEIGHTING_LOGNORMAL,
          "the two time weightings by name");
}

static void parse_weighting(void *arg)
{
    time_weighting_parse(arg);
}

static void test_time_weighting_names(void)
{
    expect_die("a bogus weighting", parse_weighting, "logit", "unknown time weighting 'logit' (expected 'uniform'");
    expect_die("no weighting", parse_weighting, NULL, "unknown time weighting '(null)'");
    expect_die("a prefix", parse_weighting, "lognorm", "unknown time weighting 'lognorm'");
}

static void test_labels_outside_the_table(void)
{
    const label_case bad[3] = {{-1, 0.1f}, {11, 0.1f}, {10, 0.0f}};
    expect_die("label -1", forward_with_label, (void *)&bad[0], "label -1 of sample 1 is outside [0, 11)");
    expect_die("label 11", forward_with_label, (void *)&bad[1], "label 11 of sample 1 is outside [0, 11)");
    expect_die("the null class without dropout", forward_with_label, (void *)&bad[2],
               "label 10 of sample 1 is outside [0, 10)");
    const label_case null_ok = {10, 0.1f};
    char err[512];
    CHECK(run_in_child(forward_with_label, (void *)&null_ok, err, sizeof err) == 0,
          "the null class with dropout must be accepted: %s", err);
    /* the sampler's velocity: the same rule */
    expect_die("velocity, label -1", velocity_with_label, (void *)&bad[0], "sit_velocity: label -1 of sample 1 is "
               "outside [0, 11)");
    expect_die("velocity, label 11", velocity_with_label, (void *)&bad[1], "label 11 of sample 1 is outside [0, 11)");
    expect_die("velocity, the null class without dropout", velocity_with_label, (void *)&bad[2],
               "label 10 of sample 1 is outside [0, 10)");
    CHECK(run_in_child(velocity_with_label, (void *)&null_ok, err, sizeof err) == 0,
          "velocity: the null class with dropout (the unconditional half of CFG) must be accepted: %s", err);
}

/* The network refuses calls it cannot serve: no samples or a missing input,
 * align-only mode without a projector, label dropout to draw without an
 * rng. */
static void net_misuse(void *arg)
{
    const int which = *(const int *)arg;
    sit_config c = tiny_config(false);
    if (which == 3)
        c.n_encoders = 0;
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table), x[2 * 3 * 8 * 8] = {0}, t[2] = {0.5f, 0.5f};
    int y[2] = {1, 2};
    sit_net_opts o = {.train = which == 4, .align_only = which == 3};
    sit_net_inputs in = {x, t, y, NULL, NULL};
    if (which == 1)
        in.t = NULL;
    if (which == 2)
        in.y = NULL;
    arena ar = arena_create(sit_net_plan_bytes(&m, 2, &o));
    sit_acts a;
    sit_net_forward(&a, &m, w, &ar, &o, &in, which == 0 ? 0 : 2);
}

static void test_net_misuse(void)
{
    static const int which[5] = {0, 1, 2, 3, 4};
    const char *want = "sit_net_forward: needs N >= 1, x_t, t and labels";
    expect_die("no samples", net_misuse, (void *)&which[0], want);
    expect_die("no times", net_misuse, (void *)&which[1], want);
    expect_die("no labels", net_misuse, (void *)&which[2], want);
    expect_die("align-only without a projector", net_misuse, (void *)&which[3],
               "sit_net_forward: align-only mode needs at least one projector");
    expect_die("dropout without an rng", net_misuse, (void *)&which[4],
               "sit_net_forward: label dropout must be drawn but no rng was given");
}

static void fd_full_model(bool qk_norm, path_type path)
{
    sit_config c = tiny_config(qk_norm);
    sit m;
    sit_build(&m, &c);
    if (qk_norm) /* pos_embed trainable, as the release's REPA-E loop makes it: its gradient is checked too */
        m.table.entries[param_find(&m.table, "pos_embed") - m.table.entries].kind = PARAM_TRAINABLE;
    float *w = param_alloc(&m.table), *g = param_alloc(&m.table);
    sit_test_randomize(&m, w, 31 + qk_norm, true);
    int N = 3;
    sit_problem p = sit_problem_make(&m, N, 200, 0.4f, -1.0f);
    denoising_opts o = {.train = true, .align_only = false, .path = path};
    arena ar = arena_create(2 * denoising_objective_plan_bytes(&m, N, &o));
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *dz = alloc_zeros(N * CHW);
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    CHECK(a.labels[1] == c.num_classes && a.labels[0] == p.y[0], "forced label dropout");
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, g, dz);
    sit_fd_ctx ctx = {&m, w, &ar, o, in, N, 1.0f, 0.5f};
    char what[200];
    snprintf(what, sizeof what, "train-BN full d/dz (qk %d, path %d)", qk_norm, path);
    fd_check_direction(what, sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 3);
    /* a few elements of every trainable tensor: central differences with
     * h = 1e-2 on O(1) parameters; |err| <= 1e-4 + 1e-2·max|grad of that tensor|
     * (float32 loss rounding ~1e-7·|L|/h ≈ 1e-5, curvature O(h²)). */
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        if (e->kind != PARAM_TRAINABLE)
            continue;
        snprintf(what, sizeof what, "d/d %s (qk %d)", e->name, qk_norm);
        fd_check(what, sit_fd_loss, &ctx, w + e->offset, g + e->offset, e->numel, 1e-2, 1e-4, 1e-2, 4);
    }
    /* and the whole trainable vector along one random direction per tensor group */
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        if (e->kind != PARAM_TRAINABLE || e->numel < 64)
            continue;
        snprintf(what, sizeof what, "dir d/d %s (qk %d)", e->name, qk_norm);
        fd_check_direction(what, sit_fd_loss, &ctx, w + e->offset, g + e->offset, e->numel, 1e-2, 1e-3, 40 + i); /* measured <= 1.4e-4 */
    }
    arena_free(&ar);
    free(dz), free(w), free(g);
    sit_problem_free(&p);
    sit_free(&m);
}

static void test_fd_train_pass(void) { fd_full_model(false, PATH_LINEAR); }
static void test_fd_train_pass_qknorm_cosine(void) { fd_full_model(true, PATH_COSINE); }

/* Eval-mode full depth (the LDM-only trainer's setting): input gradient with
 * the per-channel eval BN and both paths into z. */
static void test_fd_eval_full_dz(void)
{
    sit_config c = tiny_config(false);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 41, true);
    int N = 2;
    sit_problem p = sit_problem_make(&m, N, 300, 0.4f, -1.0f);
    denoising_opts o = {.train = false, .align_only = false, .path = PATH_LINEAR};
    arena ar = arena_create(2 * denoising_objective_plan_bytes(&m, N, &o));
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *dz = alloc_zeros(N * CHW);
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    for (int n = 0; n < N; n++)
        CHECK(a.labels[n] == p.y[n], "eval mode ignores the dropout mask (sample %d)", n);
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, NULL, dz);
    sit_fd_ctx ctx = {&m, w, &ar, o, in, N, 1.0f, 0.5f};
    fd_check_direction("eval-BN full d/dz", sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 4);
    arena_free(&ar);
    free(dz), free(w);
    sit_problem_free(&p);
    sit_free(&m);
}

/* ------------------------------------------------------------ conventions */

/* The frozen pass computes no parameter gradient, gives the same dz as a
 * pass that also computes them, and both dz and dparams accumulate (+=).
 * Frozen and buffer entries of dparams are never written. */
static void test_frozen_and_accumulate(void)
{
    sit_config c = tiny_config(false);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 51, true);
    int N = 3;
    sit_problem p = sit_problem_make(&m, N, 400, 0.4f, -1.0f);
    size_t CHW = (size_t)m.C * m.H * m.H, P = m.table.total;
    for (int mode = 0; mode < 2; mode++) {
        denoising_opts o = mode == 0 ? (denoising_opts){.train = false, .align_only = true}
                                     : (denoising_opts){.train = true, .align_only = false};
        arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
        denoising_inputs in = sit_problem_inputs(&p, &m);
        float *dz1 = alloc_zeros(N * CHW), *dz2 = alloc_zeros(N * CHW), *dzacc = alloc_zeros(N * CHW);
        float *g = param_alloc(&m.table), *gacc = param_alloc(&m.table);
        for (int i = 0; i < m.table.n; i++) {
            const param_entry *e = &m.table.entries[i];
            for (size_t k = 0; k < e->numel; k++)
                g[e->offset + k] = e->kind == PARAM_TRAINABLE ? 0.0f : 1234.5f;
        }
        for (size_t i = 0; i < N * CHW; i++)
            dzacc[i] = 0.25f;
        for (size_t i = 0; i < P; i++)
            gacc[i] = 0.5f;
        denoising_pass a;
        float *w0 = xmalloc(P * sizeof(float));
        memcpy(w0, w, P * sizeof(float));
        denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
        size_t used = ar.used;
        denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, NULL, dz1); /* frozen fast path */
        CHECK(ar.used == used, "backward releases its scratch");
        denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, g, dz2);
        denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, gacc, dzacc);
        denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, gacc, dzacc);
        /* The plan is the pass's peak, exactly (covering it is the arena's own check). */
        CHECK(ar.high_water == ar.capacity, "plan of %zu bytes for a peak of %zu", ar.capacity, ar.high_water);
        CHECK(memcmp(dz1, dz2, N * CHW * sizeof(float)) == 0, "dz must not depend on whether dparams is computed");
        int untouched = 1;
        for (int i = 0; i < m.table.n; i++) {
            const param_entry *e = &m.table.entries[i];
            if (e->kind != PARAM_TRAINABLE)
                for (size_t k = 0; k < e->numel; k++)
                    untouched &= g[e->offset + k] == 1234.5f;
        }
        CHECK(untouched, "frozen/buffer entries of dparams must not be written (pos_embed, bn.*)");
        for (size_t i = 0; i < N * CHW; i++)
            dzacc[i] = (dzacc[i] - 0.25f) * 0.5f;
        check_close("dz accumulates (+=)", dzacc, dz1, N * CHW, 1e-7, 1e-5);
        float *gd = xmalloc(P * sizeof(float));
        for (int i = 0; i < m.table.n; i++) {
            const param_entry *e = &m.table.entries[i];
            if (e->kind != PARAM_TRAINABLE)
                continue;
            for (size_t k = 0; k < e->numel; k++)
                gd[e->offset + k] = (gacc[e->offset + k] - 0.5f) * 0.5f;
            check_close(e->name, gd + e->offset, g + e->offset, e->numel, 1e-6, 1e-4);
        }
        if (mode == 0) {
            /* align-only: blocks after encoder_depth and the final layer get exactly zero */
            const char *unused[] = {"blocks.2.mlp.fc1.weight", "final_layer.linear.weight", "blocks.2.attn.qkv.bias"};
            for (int u = 0; u < 3; u++) {
                const param_entry *e = param_find(&m.table, unused[u]);
                int z = 1;
                for (size_t k = 0; k < e->numel; k++)
                    z &= g[e->offset + k] == 0.0f;
                CHECK(z, "%s must get no gradient in align-only mode", unused[u]);
            }
            CHECK(memcmp(w0, w, P * sizeof(float)) == 0, "eval mode must not change BN running stats");
        } else {
            CHECK(w[m.bn_count] == w0[m.bn_count] + 1.0f, "train mode counts the batch");
            CHECK(w[m.bn_mean] != w0[m.bn_mean], "train mode updates the running mean");
        }
        free(gd), free(w0);
        free(dz1), free(dz2), free(dzacc), free(g), free(gacc);
        arena_free(&ar);
    }
    free(w);
    sit_problem_free(&p);
    sit_free(&m);
}

/* Draws: t, ε and label dropout from the rng when not supplied; the same
 * draws reproduce; returned t/ε reused with train BN give the SiT pass. */
/* Training times (spec §5 step 2): uniform t = U[0,1); lognormal σ = exp(n),
 * n ~ N(0,1), t = σ/(1+σ) on the linear path and (2/π)·atan(σ) on the
 * cosine one, one normal per sample from the same stream. */
static void test_time_draws(void)
{
    enum { N = 64 };
    float t[N];
    for (int w = 0; w < 2; w++)
        for (int path = 0; path < 2; path++) {
            time_weighting tw = w ? TIME_WEIGHTING_LOGNORMAL : TIME_WEIGHTING_UNIFORM;
            path_type pt = path ? PATH_COSINE : PATH_LINEAR;
            rng r = rng_new(21, 3), ref = rng_new(21, 3);
            denoising_draw_time(t, &r, N, tw, pt);
            int bad = 0;
            for (int n = 0; n < N; n++) {
                float want;
                if (!w)
                    want = rng_uniform(&ref);
                else {
                    double sig = exp((double)rng_normal(&ref));
                    want = (float)(path ? 2.0 / M_PI * atan(sig) : sig / (1.0 + sig));
                }
                bad += t[n] != want || !(t[n] >= 0 && t[n] < 1);
            }
            CHECK(bad == 0, "%s times on the %s path: %d of %d differ from the formula", w ? "lognormal" : "uniform",
                  path ? "cosine" : "linear", bad, N);
        }
    /* The two lognormal maps differ (a draw of σ = 1 gives 1/2 on both). */
    rng a = rng_new(5, 1), b = rng_new(5, 1);
    float tl[N], tc[N];
    denoising_draw_time(tl, &a, N, TIME_WEIGHTING_LOGNORMAL, PATH_LINEAR);
    denoising_draw_time(tc, &b, N, TIME_WEIGHTING_LOGNORMAL, PATH_COSINE);
    CHECK(memcmp(tl, tc, sizeof tl) != 0, "lognormal times should depend on the path");
    CHECK(time_weighting_parse("lognormal") == TIME_WEIGHTING_LOGNORMAL &&
              time_weighting_parse("uniform") == TIME_WEIGHTING_UNIFORM,
          "weighting names");
}

static void test_draws_and_velocity(void)
{
    sit_config c = tiny_config(false);
    c.class_dropout_prob = 0.5f;
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 61, true);
    int N = 8;
    sit_problem p = sit_problem_make(&m, N, 500, 0.4f, -1.0f);
    size_t CHW = (size_t)m.C * m.H * m.H;
    denoising_opts o = {.train = true};
    /* three forwards kept side by side, then the velocity */
    arena ar = arena_create(3 * denoising_objective_plan_bytes(&m, N, &o) + sit_velocity_plan_bytes(&m, N));
    denoising_inputs in = sit_problem_inputs(&p, &m);
    in.time_input = NULL, in.noise = NULL, in.force_drop = NULL;
    rng r1 = rng_new(9, 1), r2 = rng_new(9, 1);
    in.rng = &r1;
    denoising_pass a, b;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    in.rng = &r2;
    denoising_objective_forward(&b, &m, w, &ar, &o, &in, N);
    CHECK(memcmp(a.time_input, b.time_input, N * sizeof(float)) == 0 &&
              memcmp(a.noise, b.noise, N * CHW * sizeof(float)) == 0 &&
              memcmp(a.labels, b.labels, N * sizeof(int)) == 0,
          "same rng state, same draws");
    int dropped = 0, tin = 1;
    for (int n = 0; n < N; n++) {
        dropped += a.labels[n] == c.num_classes;
        tin &= a.time_input[n] >= 0 && a.time_input[n] < 1;
    }
    CHECK(tin, "uniform t in [0,1)");
    CHECK(dropped > 0 && dropped < N, "p = 0.5 dropout over 8 samples dropped %d", dropped);
    /* Eval mode: sit_velocity on x_t = α·BN_eval(z) + σ·ε equals the training forward's output */
    denoising_opts oe = {.train = false};
    in.time_input = a.time_input, in.noise = a.noise, in.rng = NULL;
    denoising_pass e;
    denoising_objective_forward(&e, &m, w, &ar, &oe, &in, N);
    float *xt = xmalloc(N * CHW * sizeof(float)), *v = xmalloc(N * CHW * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < m.C; ch++) {
            float rs = (float)(1.0 / sqrt((double)w[m.bn_var + ch] + c.bn_eps)), mu = w[m.bn_mean + ch];
            for (int k = 0; k < m.H * m.H; k++) {
                size_t i = n * CHW + (size_t)ch * m.H * m.H + k;
                xt[i] = (1.0f - a.time_input[n]) * ((p.z[i] - mu) * rs) + a.time_input[n] * a.noise[i];
            }
        }
    sit_velocity(&m, w, false, &ar, v, xt, e.time_input, e.labels, N);
    check_close("sit_velocity == training forward output (eval)", v, e.model_output, N * CHW, 1e-5, 1e-4);
    free(xt), free(v);
    arena_free(&ar);
    free(w);
    sit_problem_free(&p);
    sit_free(&m);
}

/* ------------------------------------------------------------ PyTorch parity */

/* The shapes give everything but the heads and encoder_depth: those two come
 * from the fixture's config JSON (the constructor arguments). */
static int meta_int(const safetensors *st, const char *key)
{
    const char *js = safetensors_meta(st, "config");
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    int r = cJSON_IsNumber(v) ? v->valueint : -1;
    cJSON_Delete(root);
    CHECK(r >= 0, "fixture config has no '%s'", key);
    return r;
}

static void load_fixture_model(sit *m, float **w, const safetensors *st)
{
    sit_config c = sit_config_default();
    c.encoder_depth = meta_int(st, "encoder_depth");
    sit_config_from_weights(&c, st, "", meta_int(st, "num_heads"));
    sit_build(m, &c);
    *w = param_alloc(&m->table);
    sit_load(m, *w, st, "", PARAM_IGNORE_EXTRA);
}

/* Tolerances, as max error / max|want| per tensor.  The fixtures hold float64
 * results of the float32 inputs; the float32 torch run itself differs from
 * them by up to 7.1e-7 (metadata fp32_vs_fp64).  Our float32 pass has the
 * same rounding depth (3 blocks, sums of <= 256 terms) and measures <= 6e-7
 * on forwards and <= 1.1e-6 on gradients (TEST_VERBOSE=1 prints them); the
 * limits leave ~10x room for other BLAS kernels / thread counts while a
 * wrong term (a missing path, a swapped chunk) is O(1e-2..1). */
#define FWD_REL 5e-6
#define GRAD_REL 2e-5
/* Mathematically zero gradients (qk-norm k_norm.bias) are stored as exact
 * zeros; float32 leaves ~1e-9 there. */
#define GRAD_FLOOR 1e-7

static void train_case(const char *fixture)
{
    safetensors *st = fixture_open(fixture);
    sit m;
    float *w;
    load_fixture_model(&m, &w, st);
    CHECK(m.cfg.depth == 3 && m.cfg.hidden == 64 && m.cfg.heads == 4 && m.cfg.n_encoders == 1 &&
              m.cfg.z_dims[0] == 32 && m.cfg.projector_dim == 64 && m.cfg.num_classes == 10,
          "fixture config detection");
    size_t nx;
    float *x = fixture_f32(st, "train.x", &nx), *t = fixture_f32(st, "train.time_input", NULL);
    float *eps = fixture_f32(st, "train.noises", NULL), *zs = fixture_f32(st, "train.zs.0", NULL);
    int *y = fixture_ints(st, "train.y", NULL), *drop = fixture_ints(st, "train.drop_mask", NULL);
    int N = 4;
    denoising_opts o = {.train = true, .path = PATH_LINEAR};
    denoising_inputs in = {.z = x, .y = y, .zs = {zs}, .time_input = t, .noise = eps, .force_drop = drop};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
    denoising_pass a;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    size_t CHW = (size_t)m.C * m.H * m.H;
    fixture_check_rel(st, "train.model_output", a.model_output, N * CHW, FWD_REL, 0);
    fixture_check_rel(st, "train.zs_tilde.0", a.zs_tilde[0], (size_t)N * m.T * 32, FWD_REL, 0);
    fixture_check_rel(st, "train.denoising_loss", a.denoising_loss, N, FWD_REL, 0);
    fixture_check_rel(st, "train.proj_loss", &a.proj_loss, 1, FWD_REL, 0);
    float L = (float)sit_loss_of(&a, N, false, 1.0f, 0.5f);
    fixture_check_rel(st, "train.loss", &L, 1, FWD_REL, 0);
    int *yd = fixture_ints(st, "train.y_dropped", NULL);
    for (int n = 0; n < N; n++)
        CHECK(a.labels[n] == yd[n], "label after dropout [%d]: %d vs %d", n, a.labels[n], yd[n]);
    /* running stats: one float32 update of double-accumulated moments */
    fixture_check_rel(st, "train.bn.running_mean", w + m.bn_mean, m.C, 1e-6, 1e-7);
    fixture_check_rel(st, "train.bn.running_var", w + m.bn_var, m.C, 1e-6, 1e-7);
    fixture_check(st, "train.bn.num_batches_tracked", w + m.bn_count, 1, 0, 0);
    float *g = param_alloc(&m.table), *dz = alloc_zeros(nx);
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, g, dz);
    check_grads_by_name(st, &m, g, "train.grad.", GRAD_REL, GRAD_FLOOR);
    fixture_check_rel(st, "train.grad.x", dz, nx, GRAD_REL, 0);
    arena_free(&ar);
    free(x), free(t), free(eps), free(zs), free(y), free(drop), free(yd), free(g), free(dz), free(w);
    sit_free(&m);
    safetensors_close(st);
}

static void test_torch_train_pass(void) { train_case("models/sit_tiny"); }
static void test_torch_train_pass_qknorm(void) { train_case("models/sit_tiny_qknorm"); }

static void test_torch_alignment_pass(void)
{
    safetensors *st = fixture_open("models/sit_tiny");
    sit m;
    float *w;
    load_fixture_model(&m, &w, st);
    size_t nx;
    float *x = fixture_f32(st, "align.x", &nx), *t = fixture_f32(st, "align.time_input", NULL);
    float *eps = fixture_f32(st, "align.noises", NULL), *zs = fixture_f32(st, "align.zs.0", NULL);
    int *y = fixture_ints(st, "align.y", NULL);
    int N = 4;
    denoising_opts o = {.train = false, .align_only = true, .path = PATH_COSINE};
    denoising_inputs in = {.z = x, .y = y, .zs = {zs}, .time_input = t, .noise = eps};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
    denoising_pass a;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    fixture_check_rel(st, "align.zs_tilde.0", a.zs_tilde[0], (size_t)N * m.T * 32, FWD_REL, 0);
    fixture_check_rel(st, "align.proj_loss", &a.proj_loss, 1, FWD_REL, 0);
    float *dz = alloc_zeros(nx);
    denoising_objective_backward(&m, w, &a, &ar, 0.0f, 1.0f, NULL, dz); /* fixture: coefficient 1 */
    fixture_check_rel(st, "align.grad.x", dz, nx, GRAD_REL, 0);
    arena_free(&ar);
    free(x), free(t), free(eps), free(zs), free(y), free(dz), free(w);
    sit_free(&m);
    safetensors_close(st);
}

static void test_torch_inference(void)
{
    safetensors *st = fixture_open("models/sit_tiny");
    sit m;
    float *w;
    load_fixture_model(&m, &w, st);
    size_t nx;
    float *x = fixture_f32(st, "infer.x", &nx), *t = fixture_f32(st, "infer.t", NULL);
    float *cot = fixture_f32(st, "infer.cot.out", NULL);
    int *y = fixture_ints(st, "infer.y", NULL);
    int N = 3;
    CHECK(y[2] == 10, "the fixture passes the null class explicitly");
    const sit_net_opts o = {.train = false};
    arena ar = arena_create(sit_net_plan_bytes(&m, N, &o) + sit_velocity_plan_bytes(&m, N));
    float *v = alloc_zeros(nx);
    sit_velocity(&m, w, false, &ar, v, x, t, y, N);
    fixture_check_rel(st, "infer.out", v, nx, FWD_REL, 0);
    sit_acts a;
    sit_net_forward(&a, &m, w, &ar, &o, &(sit_net_inputs){.x_t = x, .t = t, .y = y}, N);
    CHECK(memcmp(a.model_output, v, nx * sizeof(float)) == 0, "sit_net_forward == sit_velocity bit for bit");
    /* The weights packed for sampling give the same bits (where gemm() runs
     * our kernels, as on every host with AVX2 and two threads). */
    float *wp = param_alloc(&m.table), *vp = alloc_zeros(nx);
    memcpy(wp, w, m.table.total * sizeof(float));
    const bool packed = sit_pack_for_sampling(&m, wp);
    CHECK(packed == (gemm_prepacked_width() > 0 && gemm_outside_regions_uses_own_kernel()),
          "sit_pack_for_sampling packed: %d", packed);
    CHECK(!packed || memcmp(wp, w, m.table.total * sizeof(float)) != 0, "packing rearranged no weight");
    sit_velocity(&m, wp, packed, &ar, vp, x, t, y, N);
    CHECK(memcmp(vp, v, nx * sizeof(float)) == 0, "sit_velocity on packed weights == unpacked, bit for bit");
    free(wp), free(vp);
    float *g = param_alloc(&m.table), *dx = alloc_zeros(nx);
    sit_net_backward(&m, w, &a, &ar, cot, NULL, g, dx);
    check_grads_by_name(st, &m, g, "infer.grad.", GRAD_REL, GRAD_FLOOR);
    fixture_check_rel(st, "infer.grad.x", dx, nx, GRAD_REL, 0);
    arena_free(&ar);
    free(x), free(t), free(cot), free(y), free(v), free(g), free(dx), free(w);
    sit_free(&m);
    safetensors_close(st);
}

/* ------------------------------------------------------------ timing (opt-in) */

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
}

/* SIT_BENCH=1: SiT-B/2, batch 4, 4×32×32 latent, train-mode SiT pass fwd+bwd. */
static void bench_sit_b2(void)
{
    sit_config c = sit_config_default();
    sit_config_preset(&c, "SiT-B/2");
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table), *g = param_alloc(&m.table);
    sit_test_randomize(&m, w, 1, true);
    int N = 4;
    sit_problem p = sit_problem_make(&m, N, 1, 0.4f, -1.0f);
    denoising_opts o = {.train = true};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
    denoising_inputs in = sit_problem_inputs(&p, &m);
    printf("       SiT-B/2 N=4: arena %.0f MiB, %d threads\n", denoising_objective_plan_bytes(&m, N, &o) / 1048576.0,
           omp_get_max_threads());
    for (int it = 0; it < 3; it++) {
        denoising_pass a;
        double t0 = now_s();
        denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
        double t1 = now_s();
        denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, g, NULL);
        double t2 = now_s();
        printf("       SiT-B/2 N=4 fwd %.3f s  bwd %.3f s  total %.3f s\n", t1 - t0, t2 - t1, t2 - t0);
        arena_reset(&ar, 0);
    }
    arena_free(&ar);
    free(w), free(g);
    sit_problem_free(&p);
    sit_free(&m);
}

int main(void)
{
    RUN(test_preset_counts_and_keys);
    RUN(test_config_defaults_and_checks);
    RUN(test_config_from_weights);
    RUN(test_labels_outside_the_table);
    RUN(test_objective_inputs);
    RUN(test_time_weighting_names);
    RUN(test_net_misuse);
    RUN(test_init_rules);
    RUN(test_save_load_and_detect);
    RUN(test_fd_alignment_pass_dz);
    RUN(test_fd_train_pass);
    RUN(test_fd_train_pass_qknorm_cosine);
    RUN(test_fd_eval_full_dz);
    RUN(test_frozen_and_accumulate);
    RUN(test_time_draws);
    RUN(test_draws_and_velocity);
    RUN(test_torch_train_pass);
    RUN(test_torch_train_pass_qknorm);
    RUN(test_torch_alignment_pass);
    RUN(test_torch_inference);
    if (getenv("SIT_BENCH"))
        RUN(bench_sit_b2);
    return test_summary();
}
