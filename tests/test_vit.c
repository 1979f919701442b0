/* DINOv2-family ViT (src/models/vit.c) and the encoder preprocessing
 * (src/models/encoder_preprocess.c):
 *   - preset parameter counts and keys against the reference's param_counts.json;
 *   - PyTorch parity on tests/fixtures/models/vit_tiny{,_reg,_swiglu}.safetensors
 *     (dev/ref/models_ref.py): the load-time pos_embed resample, the outputs,
 *     and every gradient by name from the parameter table (_swiglu: ViT-g's
 *     SwiGLUFFNFused FFN);
 *   - finite differences on a random model (1-channel input, head, registers;
 *     a variant without layerscale; a SwiGLU variant);
 *   - backward accumulates (+=), NULL gradients, inference == train forward;
 *   - save/load round trip, config detection (SwiGLU from mlp.w12), clear
 *     errors (strict load);
 *   - preprocessing parity with torch (dev/ref/vit_preprocess_ref.py).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/error.h"
#include "models/encoder_preprocess.h"
#include "ops/resample.h"
#include "models/params.h"
#include "models/vit.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

static cJSON *fixture_config(const safetensors *st)
{
    const char *s = safetensors_meta(st, "config");
    if (!s)
        die("fixture '%s' has no config metadata", st->path);
    cJSON *j = cJSON_Parse(s);
    if (!j)
        die("fixture '%s': config metadata is not JSON", st->path);
    return j;
}

static int json_int(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(v))
        die("config has no number '%s'", k);
    return v->valueint;
}

/* Adds noise to every parameter so no path is trivially zero/one (gammas and
 * tokens included); head/LN weights stay O(1). */
static void perturb(const vit *m, float *params, float std, uint64_t seed)
{
    float *noise = alloc_normal(m->table.total, 1.0f, seed);
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        float s = std;
        if (e->ndim == 2 && e->kind == PARAM_TRAINABLE && strstr(e->name, "weight"))
            s = std / sqrtf((float)e->shape[1]) * 4.0f;
        for (size_t k = 0; k < e->numel; k++)
            params[e->offset + k] += s * noise[e->offset + k];
    }
    free(noise);
}

/* ---------------------------------------------------------- presets, keys */

static void test_preset_counts_and_keys(void)
{
    size_t jlen;
    char *js = read_file_all("tests/fixtures/models/param_counts.json", &jlen);
    cJSON *root = cJSON_Parse(js);
    CHECK(root != NULL, "param_counts.json does not parse");
    if (!root) {
        free(js);
        return;
    }
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(root, "dinov2_counts");
    static const char *names[] = {"dinov2-vit-s", "dinov2-vit-s-reg", "dinov2-vit-b", "dinov2-vit-b-reg",
                                  "dinov2-vit-l", "dinov2-vit-l-reg", "dinov2-vit-g", "dinov2-vit-g-reg"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        /* Count from the table alone (ViT-g's weights would be 4.5 GB). */
        vit_config c = vit_preset(names[i], 518);
        vit m;
        vit_build(&m, &c);
        char key[64];
        const char *reg = strstr(names[i], "-reg");
        snprintf(key, sizeof key, "%.*s/14%s", (int)(reg ? reg - names[i] : (long)strlen(names[i])), names[i],
                 reg ? "-reg" : "");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(counts, key);
        CHECK(cJSON_IsNumber(want) && (double)param_count_all(&m.table) == want->valuedouble,
              "%s: %zu parameters, torch says %.0f", names[i], param_count_all(&m.table),
              cJSON_IsNumber(want) ? want->valuedouble : -1.0);
        if (strcmp(names[i], "dinov2-vit-b") == 0 || strcmp(names[i], "dinov2-vit-g") == 0) {
            const int g = names[i][11] == 'g';
            if (g)
                CHECK(param_count_all(&m.table) == 1136480768, "ViT-g/14 @518 should have 1,136,480,768 parameters");
            else
                CHECK(param_count_all(&m.table) == 86580480, "ViT-B/14 @518 should have 86,580,480 parameters");
            /* Keys, order and shapes against the torch state dict. */
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, g ? "dinov2-vit-g/14" : "dinov2-vit-b/14");
            CHECK(e != NULL, "param_counts.json has no entry for %s", names[i]);
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(e, "params");
            int n = 0;
            const cJSON *p;
            cJSON_ArrayForEach(p, params)
            {
                const param_entry *pe = param_find(&m.table, p->string);
                CHECK(pe != NULL, "torch key '%s' missing from the table", p->string);
                if (pe) {
                    int same = cJSON_GetArraySize(p) == pe->ndim;
                    for (int d = 0; same && d < pe->ndim; d++)
                        same = cJSON_GetArrayItem(p, d)->valuedouble == (double)pe->shape[d];
                    CHECK(same, "shape of '%s' differs from torch", p->string);
                }
                n++;
            }
            CHECK(n == m.table.n, "table has %d entries, torch state dict %d", m.table.n, n);
        }
        vit_free(&m);
    }
    /* 224 input: pos_embed is the resampled 16×16 table. */
    vit_config c = vit_preset("dinov2-vit-b", 224);
    vit m;
    vit_build(&m, &c);
    const param_entry *pe = param_find(&m.table, "pos_embed");
    CHECK(pe && pe->shape[1] == 257 && m.grid == 16 && m.ntok == 257, "ViT-B/14 @224 should have 1+16² positions");
    CHECK(param_count_all(&m.table) == 86580480 - (1369 - 256) * 768, "ViT-B/14 @224 count");
    vit_free(&m);
    cJSON_Delete(root);
    free(js);
}

/* Head counts (parameter counts cannot see them): DINOv2's heads are 64
 * wide (spec §8.1: ViT-B, 768 = 12 × 64), in the presets and in the table a
 * checkpoint without a config is read with. */
static void test_head_counts(void)
{
    static const struct { const char *name; int width, heads; } dinov2[] = {
        {"dinov2-vit-s", 384, 6}, {"dinov2-vit-b", 768, 12}, {"dinov2-vit-l", 1024, 16}, {"dinov2-vit-g", 1536, 24}};
    for (size_t i = 0; i < sizeof dinov2 / sizeof dinov2[0]; i++) {
        vit_config c = vit_preset(dinov2[i].name, 224);
        CHECK(c.embed_dim == dinov2[i].width && c.heads == dinov2[i].heads, "%s: width %d, %d heads", dinov2[i].name,
              c.embed_dim, c.heads);
        CHECK(vit_heads_for_width(dinov2[i].width) == dinov2[i].heads, "heads for width %d: %d", dinov2[i].width,
              vit_heads_for_width(dinov2[i].width));
    }
    CHECK(vit_heads_for_width(192) == 3, "ViT-Ti width 192: 3 heads");
    CHECK(vit_heads_for_width(500) == 0, "an unknown width has no default head count");
}

static void make_unknown(void *ctx) { (void)ctx, (void)vit_preset("dinov2-vit-x", 224); }

static void test_unsupported_presets_die_clearly(void)
{
    expect_die("unknown preset", make_unknown, NULL, "unknown ViT preset");
}

/* vit_config_check: each refusal by its words, from dinov2-vit-s at 224
 * with one field changed; the edges of each range are accepted. */
typedef struct {
    const char *what, *message;
    void (*change)(vit_config *);
} vit_config_case;

static void vc_patch0(vit_config *c) { c->patch = 0; }
static void vc_img0(vit_config *c) { c->img_size = 0; }
static void vc_img225(vit_config *c) { c->img_size = 225; }
static void vc_chans0(vit_config *c) { c->in_chans = 0; }
static void vc_dim0(vit_config *c) { c->embed_dim = 0; }
static void vc_heads0(vit_config *c) { c->heads = 0; }
static void vc_heads5(vit_config *c) { c->heads = 5; }
static void vc_depth0(vit_config *c) { c->depth = 0; }
static void vc_ffn_kind(vit_config *c) { c->ffn = (vit_ffn)5; }
static void vc_ffn_negative(vit_config *c) { c->ffn_hidden = -3; }
static void vc_ratio0(vit_config *c) { c->mlp_ratio = 0.0f; }
static void vc_ratio_tiny(vit_config *c) { c->mlp_ratio = 1e-4f; }
static void vc_registers(vit_config *c) { c->num_register_tokens = -1; }
static void vc_classes(vit_config *c) { c->num_classes = -1; }
static void vc_eps0(vit_config *c) { c->ln_eps = 0.0f; }

static const vit_config_case bad_vit_configs[] = {
    {"patch 0", "img_size 224 is not a positive multiple of the patch size 0", vc_patch0},
    {"img 0", "img_size 0 is not a positive multiple of the patch size 14", vc_img0},
    {"img 225", "img_size 225 is not a positive multiple of the patch size 14", vc_img225},
    {"in_chans 0", "in_chans 0 must be positive", vc_chans0},
    {"embed_dim 0", "embed_dim 0 is not a positive multiple of heads 6", vc_dim0},
    {"heads 0", "embed_dim 384 is not a positive multiple of heads 0", vc_heads0},
    {"heads 5", "embed_dim 384 is not a positive multiple of heads 5", vc_heads5},
    {"depth 0", "depth 0 must be positive", vc_depth0},
    {"FFN kind 5", "unknown FFN kind 5", vc_ffn_kind},
    {"ffn_hidden -3", "ffn_hidden -3 must be positive (or 0: from mlp_ratio)", vc_ffn_negative},
    {"mlp_ratio 0", "mlp_ratio 0 gives no FFN width", vc_ratio0},
    {"mlp_ratio 1e-4", "mlp_ratio 0.0001 gives no FFN width", vc_ratio_tiny},
    {"-1 registers", "negative register or class count", vc_registers},
    {"-1 classes", "negative register or class count", vc_classes},
    {"ln_eps 0", "ln_eps must be positive", vc_eps0},
};

static void check_changed_vit_config(void *arg)
{
    const vit_config_case *k = arg;
    vit_config c = vit_preset("dinov2-vit-s", 224);
    k->change(&c);
    vit_config_check(&c);
}

static void build_changed_vit_config(void *arg)
{
    const vit_config_case *k = arg;
    vit_config c = vit_preset("dinov2-vit-s", 224);
    k->change(&c);
    vit m;
    vit_build(&m, &c);
}

static void test_config_check(void)
{
    for (size_t k = 0; k < sizeof bad_vit_configs / sizeof bad_vit_configs[0]; k++)
        expect_die(bad_vit_configs[k].what, check_changed_vit_config, (void *)&bad_vit_configs[k],
                   bad_vit_configs[k].message);
    vit_config c = vit_preset("dinov2-vit-s", 224);
    vit_config_check(&c);
    c.patch = 1, c.img_size = 1, c.in_chans = 1, c.embed_dim = 1, c.heads = 1, c.depth = 1;
    c.ffn_hidden = 1, c.mlp_ratio = 0.0f; /* an explicit width needs no ratio */
    vit_config_check(&c);
    c = vit_preset("dinov2-vit-s", 224);
    c.mlp_ratio = 0.5f; /* a ratio under 1 is a width all the same */
    vit_config_check(&c);
    expect_die("vit_build checks its config", build_changed_vit_config, (void *)&bad_vit_configs[0],
               bad_vit_configs[0].message);
}

/* vit_config_from_checkpoint reads the configuration off the shapes of a
 * few tensors.  A file of those tensors (zeros) for D = 8, 1 channel, patch
 * 4, a 2×2 grid, 1 block, MLP width 16, 2 register tokens, 3 classes; each
 * case changes one shape (or adds a tensor) and must be refused in its
 * words.  The unchanged file gives that configuration back. */
typedef struct {
    const char *name; /* the tensor whose shape changes (NULL: none) */
    int ndim;
    int64_t shape[4];
    const char *extra; /* a tensor to add (NULL: none) */
    const char *message;
} shape_case;

static const shape_case vit_shape_cases[] = {
    {"cls_token", 3, {2, 1, 8}, NULL, "cls_token has shape [2, 1, 8], expected [1, 1, D]"},
    {"cls_token", 3, {1, 2, 8}, NULL, "cls_token has shape [1, 2, 8], expected [1, 1, D]"},
    {"cls_token", 2, {1, 8}, NULL, "cls_token has shape [1, 8], expected [1, 1, D]"},
    {"patch_embed.proj.weight", 4, {9, 1, 4, 4}, NULL, "patch_embed.proj.weight has shape [9, 1, 4, 4], expected [8"},
    {"patch_embed.proj.weight", 4, {8, 1, 4, 3}, NULL, "patch_embed.proj.weight has shape [8, 1, 4, 3]"},
    {"patch_embed.proj.weight", 3, {8, 1, 4}, NULL, "patch_embed.proj.weight has shape [8, 1, 4]"},
    {"pos_embed", 3, {2, 5, 8}, NULL, "pos_embed has shape [2, 5, 8], expected [1, 1+G², 8]"},
    {"pos_embed", 3, {1, 5, 9}, NULL, "pos_embed has shape [1, 5, 9]"},
    {"pos_embed", 2, {5, 8}, NULL, "pos_embed has shape [5, 8]"},
    {"pos_embed", 3, {1, 6, 8}, NULL, "pos_embed has 5 patch entries, not a square grid"},
    {"blocks.0.mlp.fc1.weight", 2, {16, 9}, NULL, "blocks.0.mlp.fc1.weight has shape [16, 9], expected [H, 8]"},
    {"blocks.0.mlp.fc1.weight", 1, {16}, NULL, "blocks.0.mlp.fc1.weight has shape [16], expected [H, 8]"},
    {"register_tokens", 3, {2, 2, 8}, NULL, "register_tokens has shape [2, 2, 8], expected [1, R, 8]"},
    {"register_tokens", 3, {1, 2, 7}, NULL, "register_tokens has shape [1, 2, 7]"},
    {"register_tokens", 2, {2, 8}, NULL, "register_tokens has shape [2, 8]"},
    {"head.weight", 2, {3, 7}, NULL, "head.weight has shape [3, 7], expected [K, 8]"},
    {"head.weight", 1, {3}, NULL, "head.weight has shape [3], expected [K, 8]"},
    {NULL, 0, {0}, "blocks.0.0.norm1.weight", "chunked block keys (blocks.<chunk>.<i>.*, block_chunks > 0)"},
    {NULL, 0, {0}, "blocks.0.mlp.w3.weight", "no tensor 'blocks.0.mlp.w12.weight'"},
    {"blocks.0.mlp.w12.weight", 2, {31, 8}, NULL, "blocks.0.mlp.w12.weight has shape [31, 8], expected [2H, 8]"},
    {"blocks.0.mlp.w12.weight", 2, {32, 9}, NULL, "blocks.0.mlp.w12.weight has shape [32, 9]"},
    {"blocks.0.mlp.w12.weight", 1, {32}, NULL, "blocks.0.mlp.w12.weight has shape [32]"},
    {"blocks.0.mlp.w12.weight", 2, {0, 8}, NULL, "blocks.0.mlp.w12.weight has shape [0, 8]"},
};

static void write_shapes(const char *path, const shape_case *k)
{
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } base[] = {{"cls_token", 3, {1, 1, 8}},         {"patch_embed.proj.weight", 4, {8, 1, 4, 4}},
                {"pos_embed", 3, {1, 5, 8}},         {"blocks.0.norm1.weight", 1, {8}},
                {"blocks.0.mlp.fc1.weight", 2, {16, 8}}, {"register_tokens", 3, {1, 2, 8}},
                {"head.weight", 2, {3, 8}}};
    static float zeros[4096];
    st_writer *w = st_writer_new();
    bool swiglu = k && k->name && !strcmp(k->name, "blocks.0.mlp.w12.weight");
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        if (swiglu && !strcmp(base[i].name, "blocks.0.mlp.fc1.weight"))
            continue;
        if (k && k->name && !strcmp(k->name, base[i].name))
            st_writer_add_f32(w, base[i].name, k->ndim, k->shape, zeros);
        else
            st_writer_add_f32(w, base[i].name, base[i].ndim, base[i].shape, zeros);
    }
    if (swiglu)
        st_writer_add_f32(w, k->name, k->ndim, k->shape, zeros);
    if (k && k->extra)
        st_writer_add_f32(w, k->extra, 1, (int64_t[]){8}, zeros);
    st_writer_save(w, path);
    st_writer_free(w);
}

static void detect_config(void *arg)
{
    safetensors *st = safetensors_open((const char *)arg);
    (void)vit_config_from_checkpoint(st, "", 0, 0); /* heads 0: from the width */
}

static void test_config_from_bad_shapes(void)
{
    const char *path = test_tmp_path("vit_shapes.safetensors");
    write_shapes(path, NULL);
    safetensors *st = safetensors_open(path);
    vit_config c = vit_config_from_checkpoint(st, "", 0, 2);
    CHECK(c.embed_dim == 8 && c.in_chans == 1 && c.patch == 4 && c.img_size == 8 && c.depth == 1 && c.heads == 2 &&
              c.mlp_ratio == 2.0f && c.ffn == VIT_FFN_MLP && c.num_register_tokens == 2 && c.num_classes == 3 &&
              !c.layerscale,
          "detected D %d C %d p %d S %d depth %d heads %d ratio %g ffn %d R %d K %d ls %d", c.embed_dim, c.in_chans,
          c.patch, c.img_size, c.depth, c.heads, c.mlp_ratio, (int)c.ffn, c.num_register_tokens, c.num_classes,
          (int)c.layerscale);
    c = vit_config_from_checkpoint(st, "", 16, 4);
    CHECK(c.img_size == 16 && c.heads == 4, "explicit size and heads: %d, %d", c.img_size, c.heads);
    safetensors_close(st);
    expect_die("width 8 without heads", detect_config, (void *)path,
               "no default head count for width 8 (known widths 192, 384, 768, 1024, 1536); pass it explicitly");
    for (size_t k = 0; k < sizeof vit_shape_cases / sizeof vit_shape_cases[0]; k++) {
        write_shapes(path, &vit_shape_cases[k]);
        expect_die(vit_shape_cases[k].message, detect_config, (void *)path, vit_shape_cases[k].message);
    }
}

/* The tiny ViT the load and misuse tests build: D 8, patch 4 over one
 * channel, one block, no head. */
static vit_config tiny_vit_config(int img_size)
{
    return (vit_config){.img_size = img_size, .patch = 4, .in_chans = 1, .embed_dim = 8, .depth = 1, .heads = 2,
                        .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
}

/* A tiny model's file with pos_embed replaced by `pos` (ndim, shape; NULL:
 * kept) and `extras` extra tensors. */
static void write_tiny_vit(const char *path, const vit *m, const float *w, int pos_ndim, const int64_t *pos_shape,
                           int extras)
{
    static float zeros[256];
    st_writer *wr = st_writer_new();
    char names[16][32];
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        if (pos_shape && e->offset == m->pos_embed)
            st_writer_add_f32(wr, e->name, pos_ndim, pos_shape, zeros);
        else
            st_writer_add_f32(wr, e->name, e->ndim, e->shape, w + e->offset);
    }
    for (int k = 0; k < extras; k++) {
        snprintf(names[k], sizeof names[k], "extra.%d", k);
        st_writer_add_f32(wr, names[k], 1, (int64_t[]){2}, zeros);
    }
    st_writer_save(wr, path);
    st_writer_free(wr);
}

typedef struct {
    const char *path;
    int img_size;
} tiny_load;

static void load_tiny(void *arg)
{
    const tiny_load *t = arg;
    vit_config c = tiny_vit_config(t->img_size);
    vit m;
    vit_build(&m, &c);
    float *w = param_alloc(&m.table);
    safetensors *st = safetensors_open(t->path);
    vit_load(&m, w, st, "", PARAM_ALLOW_EXTRA);
    safetensors_close(st);
    vit_free(&m);
    free(w);
}

/* Extra tensors in a lenient load: the first five named, then a count; a
 * pos_embed for another grid that is not [1, 1+G², D] with a square G is
 * refused in its words; resampling to the same grid copies. */
static void test_load_extras_and_pos_embed(void)
{
    vit_config c = tiny_vit_config(8);
    vit m;
    vit_build(&m, &c);
    float *w = param_alloc(&m.table);
    vit_init_weights(&m, w, 5);
    const char *path = test_tmp_path("tiny_vit.safetensors");
    char err[4096];
    tiny_load tl = {path, 8};
    for (int extras = 5; extras <= 7; extras += 2) {
        write_tiny_vit(path, &m, w, 0, NULL, extras);
        int rc = run_in_child(load_tiny, &tl, err, sizeof err);
        CHECK(rc == 0 && count_of(err, "ignoring extra tensor 'extra.") == 5, "%d extras: status %d, stderr '%s'",
              extras, rc, err);
        CHECK((extras > 5) == (strstr(err, "ignored 7 extra tensors in all") != NULL), "%d extras: the count line: '%s'",
              extras, err);
    }
    const struct {
        int ndim;
        int64_t shape[3];
        const char *shape_str;
    } bad[] = {{3, {2, 5, 8}, "[2, 5, 8]"}, {3, {1, 5, 9}, "[1, 5, 9]"}, {3, {1, 6, 8}, "[1, 6, 8]"},
               {2, {5, 8}, "[5, 8]"},       {3, {1, 1, 8}, "[1, 1, 8]"}};
    tl.img_size = 12; /* the model's grid is 3: every file's pos_embed must be resampled */
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_tiny_vit(path, &m, w, bad[k].ndim, bad[k].shape, 0);
        char want[256];
        snprintf(want, sizeof want, "'pos_embed' has shape %s; expected [1, 1+G², 8] with a square grid G (the model "
                 "wants [1, 10, 8])", bad[k].shape_str);
        expect_die(want, load_tiny, &tl, want);
    }
    /* same grid: prefix and grid copied as they are */
    float in[(1 + 9) * 8], out[(1 + 9) * 8], ws[2 * 9 * 8];
    for (int i = 0; i < 80; i++)
        in[i] = (float)i * 0.25f - 3.0f;
    vit_resample_pos_embed(out, in, 8, 1, 3, 3, ws);
    CHECK(memcmp(in, out, sizeof in) == 0, "resampling a 3x3 grid to 3x3 must copy it");
    vit_free(&m);
    free(w);
}

static void test_vit_g_preset_swiglu(void)
{
    vit_config c = vit_preset("dinov2-vit-g", 224);
    CHECK(c.embed_dim == 1536 && c.depth == 40 && c.heads == 24 && c.patch == 14 && c.ffn == VIT_FFN_SWIGLU &&
              c.mlp_ratio == 4.0f && c.num_register_tokens == 0,
          "dinov2-vit-g: 1536 wide, 40 blocks, 24 heads, patch 14, SwiGLU");
    /* SwiGLUFFNFused: (int(6144·2/3) + 7) // 8 · 8 = 4096. */
    CHECK(vit_ffn_hidden(&c) == 4096, "ViT-g FFN hidden %d, want 4096", vit_ffn_hidden(&c));
    /* The rounding rule where it matters: h = 64 -> int(42.67) = 42 -> 48;
     * h = 1536·4 = 6144 for the Mlp kind stays 6144; ffn_hidden overrides. */
    vit_config t = {.embed_dim = 16, .mlp_ratio = 4.0f, .ffn = VIT_FFN_SWIGLU};
    CHECK(vit_ffn_hidden(&t) == 48, "SwiGLU rule at D 16, ratio 4: %d, want 48", vit_ffn_hidden(&t));
    t.embed_dim = 40; /* h 160 -> int(106.67) = 106 -> 112 */
    CHECK(vit_ffn_hidden(&t) == 112, "SwiGLU rule at D 40, ratio 4: %d, want 112", vit_ffn_hidden(&t));
    c.ffn = VIT_FFN_MLP;
    CHECK(vit_ffn_hidden(&c) == 6144, "Mlp hidden at 1536·4: %d", vit_ffn_hidden(&c));
    c.ffn_hidden = 100;
    CHECK(vit_ffn_hidden(&c) == 100, "ffn_hidden must override the rule");
    c.ffn_hidden = 1;
    CHECK(vit_ffn_hidden(&c) == 1, "ffn_hidden 1 must override the rule too: %d", vit_ffn_hidden(&c));
    vit m;
    c = vit_preset("dinov2-vit-g", 224);
    vit_build(&m, &c);
    CHECK(m.hidden == 4096 && m.ffn1 == 8192, "ViT-g table: hidden %d, first FFN linear %d", m.hidden, m.ffn1);
    CHECK(!param_find(&m.table, "blocks.0.mlp.fc1.weight") && param_find(&m.table, "blocks.39.mlp.w3.bias"),
          "ViT-g has mlp.w12/w3, not mlp.fc1/fc2");
    vit_free(&m);
}

/* ------------------------------------------------------------ torch parity */

typedef struct parity_case {
    const char *fixture;
} parity_case;

static void check_parity(const char *name)
{
    safetensors *st = fixture_open(name);
    cJSON *cfgj = fixture_config(st);
    const int input = json_int(cfgj, "input_size"), B = json_int(cfgj, "batch");
    const int heads = json_int(cfgj, "num_heads"), R = json_int(cfgj, "num_register_tokens");
    const cJSON *ffn_layer = cJSON_GetObjectItemCaseSensitive(cfgj, "ffn_layer");
    const int swiglu = cJSON_IsString(ffn_layer) && strcmp(ffn_layer->valuestring, "swiglufused") == 0;

    /* Config detection from shapes (heads from the metadata: 48 is not a preset width). */
    vit m;
    float *mw = vit_from_checkpoint(&m, st, "", input, heads, PARAM_IGNORE_EXTRA);
    const vit_config *c = &m.cfg;
    CHECK(c->embed_dim == json_int(cfgj, "embed_dim") && c->depth == json_int(cfgj, "depth") &&
              c->patch == json_int(cfgj, "patch_size") && c->in_chans == json_int(cfgj, "in_chans") &&
              c->num_register_tokens == R && c->layerscale && c->mlp_ratio == 4.0f && c->num_classes == 0,
          "%s: detected config differs from the fixture's", name);
    /* The FFN kind from the keys (mlp.w12 -> SwiGLU) and H from w12's shape. */
    CHECK(c->ffn == (swiglu ? VIT_FFN_SWIGLU : VIT_FFN_MLP), "%s: detected FFN kind %d", name, (int)c->ffn);
    if (swiglu)
        CHECK(m.hidden == json_int(cfgj, "ffn_hidden") && m.ffn1 == 2 * m.hidden && c->ffn_hidden == m.hidden,
              "%s: SwiGLU hidden %d (first linear %d), torch %d", name, m.hidden, m.ffn1,
              json_int(cfgj, "ffn_hidden"));
    CHECK(m.grid == json_int(cfgj, "pos_grid"), "%s: grid %d", name, m.grid);
    vit_config c0 = vit_config_from_checkpoint(st, "", 0, heads);
    CHECK(c0.img_size == json_int(cfgj, "pos_grid_checkpoint") * c0.patch, "img_size 0 should give the checkpoint's");

    /* Load-time resample 6×6 -> 4×4 (torch: float32 antialiased bicubic; the
     * reference also checked it against the spec's window formula in float64
     * to 1e-5).  Each output is a normalised weighted sum of ≤ 36 float32
     * values of size O(1): a few ulp, so 2e-6 abs. */
    const param_entry *pe = param_find(&m.table, "pos_embed");
    fixture_check(st, "pos_embed_resampled", mw + pe->offset, pe->numel, 2e-6, 1e-5);

    /* Forward (train mode, so the same pass feeds the backward). */
    const int D = c->embed_dim, G2 = m.npatch;
    arena ar = arena_create(vit_plan_bytes(&m, B, true));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, true);
    size_t nx;
    float *x = fixture_f32(st, "x", &nx);
    float *patch = alloc_zeros((size_t)B * G2 * D), *cls = alloc_zeros((size_t)B * D);
    float *reg = alloc_zeros((size_t)B * (R ? R : 1) * D);
    vit_forward(&m, mw, &a, x, patch, cls, R ? reg : NULL, NULL);
    /* The reference is float64 (rounded once to float32); its own float32 run
     * deviates by ~3e-7 relative (metadata fp32_vs_fp64).  Two LayerNorms on
     * O(1) activations through 2 blocks: 1e-5 abs/rel leaves ~30× headroom over
     * float32 rounding while a wrong convention (eps, GELU form, token order)
     * is off by >1e-3. */
    fixture_check(st, "x_norm_patchtokens", patch, (size_t)B * G2 * D, 1e-5, 1e-5);
    fixture_check(st, "x_norm_clstoken", cls, (size_t)B * D, 1e-5, 1e-5);
    if (R)
        fixture_check(st, "x_norm_regtokens", reg, (size_t)B * R * D, 1e-5, 1e-5);
    fixture_check(st, "x_prenorm", a.x + (size_t)c->depth * B * m.ntok * D, (size_t)B * m.ntok * D, 2e-5, 1e-5);

    /* Backward: every parameter gradient by name from the table. */
    float *cot_p = fixture_f32(st, "cot.x_norm_patchtokens", NULL);
    float *cot_c = fixture_f32(st, "cot.x_norm_clstoken", NULL);
    float *cot_r = R ? fixture_f32(st, "cot.x_norm_regtokens", NULL) : NULL;
    float *grads = param_alloc(&m.table);
    float *dx = alloc_zeros(nx);
    vit_backward(&m, mw, &a, &ar, grads, dx, cot_p, cot_c, cot_r, NULL);
    /* Covering the peak is the arena's own check; the plan is also exactly the peak (the block
     * scratch and the patch embedding's buffers, given back in turn, count as the larger one). */
    CHECK(ar.capacity == ar.high_water, "arena plan %zu bytes for a peak of %zu", ar.capacity, ar.high_water);
    char key[PARAM_NAME_MAX + 16];
    int compared = 0;
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        snprintf(key, sizeof key, "grad.%s", strcmp(e->name, "pos_embed") == 0 ? "pos_embed_resampled" : e->name);
        CHECK(safetensors_find(st, key) != NULL, "fixture lacks '%s'", key);
        if (!safetensors_find(st, key))
            continue;
        /* Gradients: float64 reference; float32 rounding through 2 blocks of
         * backward (sums over 2·17 tokens and 48–192 features) stays ~1e-6
         * relative to the tensor's scale, so atol 2e-5·max|grad| + rtol 1e-4
         * (the usual 1e-4 for gradients, docs/testing.md). */
        size_t n;
        float *want = fixture_f32(st, key, &n);
        double gmax = 0;
        for (size_t k = 0; k < n; k++)
            gmax = fmax(gmax, fabs(want[k]));
        CHECK(n == e->numel, "%s: %zu elements, table %zu", key, n, e->numel);
        if (n == e->numel)
            check_close(key, grads + e->offset, want, n, 2e-5 * fmax(gmax, 1e-3), 1e-4);
        free(want);
        compared++;
    }
    CHECK(compared == m.table.n, "compared %d of %d gradients", compared, m.table.n);
    const param_entry *mt = param_find(&m.table, "mask_token");
    int mask_zero = 1;
    for (size_t k = 0; k < mt->numel; k++)
        mask_zero &= grads[mt->offset + k] == 0.0f;
    CHECK(mask_zero, "mask_token must get no gradient");
    {
        size_t n;
        float *want = fixture_f32(st, "grad.x", &n);
        double gmax = 0;
        for (size_t k = 0; k < n; k++)
            gmax = fmax(gmax, fabs(want[k]));
        check_close("grad.x", dx, want, n, 2e-5 * gmax, 1e-4);
        free(want);
    }

    /* Inference mode (in-place residual, shared scratch) computes the same
     * numbers with the same kernels in the same order. */
    vit_free(&m);
    free(mw);
    mw = vit_from_checkpoint(&m, st, "", input, heads, PARAM_IGNORE_EXTRA);
    arena ar2 = arena_create(vit_plan_bytes(&m, B, false));
    vit_acts ai;
    vit_acts_alloc(&ai, &m, &ar2, B, false);
    CHECK(ar2.used == vit_plan_bytes(&m, B, false), "inference plan %zu, carved %zu", vit_plan_bytes(&m, B, false),
          ar2.used);
    float *patch2 = alloc_zeros((size_t)B * G2 * D);
    vit_forward(&m, mw, &ai, x, patch2, NULL, NULL, NULL);
    check_close("inference == train forward", patch2, patch, (size_t)B * G2 * D, 1e-6, 0);
    fixture_check(st, "x_norm_patchtokens", patch2, (size_t)B * G2 * D, 1e-5, 1e-5);

    arena_free(&ar2);
    free(patch2);
    free(grads), free(dx), free(cot_p), free(cot_c), free(cot_r);
    free(x), free(patch), free(cls), free(reg);
    arena_free(&ar);
    vit_free(&m);
    free(mw);
    cJSON_Delete(cfgj);
    safetensors_close(st);
}

static void test_parity_vit_tiny(void) { check_parity("models/vit_tiny"); }
static void test_parity_vit_tiny_registers(void) { check_parity("models/vit_tiny_reg"); }
/* ViT-g's FFN on a 16-wide model: w12 [96,16] -> SiLU(u₁)·u₂ -> w3 [16,48]. */
static void test_parity_vit_tiny_swiglu(void) { check_parity("models/vit_tiny_swiglu"); }

/* --------------------------------------------------- finite differences */

typedef struct fd_ctx {
    vit *m;
    const float *w;
    vit_acts *a;
    float *img, *patch, *cls, *reg, *logits;
    const float *cot_p, *cot_c, *cot_r, *cot_l;
    size_t np, nc, nr, nl;
} fd_ctx;

static double fd_loss(void *p)
{
    fd_ctx *c = p;
    vit_forward(c->m, c->w, c->a, c->img, c->patch, c->cls, c->reg, c->logits);
    double L = dot_f64(c->patch, c->cot_p, c->np) + dot_f64(c->cls, c->cot_c, c->nc);
    if (c->nr)
        L += dot_f64(c->reg, c->cot_r, c->nr);
    if (c->nl)
        L += dot_f64(c->logits, c->cot_l, c->nl);
    return L;
}

static void fd_model(vit_config cfg, const char *tag)
{
    vit m;
    vit_build(&m, &cfg);
    float *mw = param_alloc(&m.table);
    vit_init_weights(&m, mw, 11);
    perturb(&m, mw, 0.3f, 12);
    const int B = 2, D = cfg.embed_dim, R = cfg.num_register_tokens, K = cfg.num_classes, S = cfg.img_size;
    const size_t nimg = (size_t)B * cfg.in_chans * S * S;
    arena ar = arena_create(vit_plan_bytes(&m, B, true));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, true);
    fd_ctx c = {.m = &m, .w = mw, .a = &a, .np = (size_t)B * m.npatch * D, .nc = (size_t)B * D, .nr = (size_t)B * R * D,
                .nl = (size_t)B * K};
    c.img = alloc_normal(nimg, 1.0f, 21);
    float *regbuf = alloc_zeros(c.nr + 1);
    c.patch = alloc_zeros(c.np), c.cls = alloc_zeros(c.nc), c.reg = R ? regbuf : NULL;
    c.logits = K ? alloc_zeros(c.nl) : NULL;
    float *cp = alloc_normal(c.np, 1.0f, 22), *cc = alloc_normal(c.nc, 1.0f, 23);
    float *cr = alloc_normal(c.nr + 1, 1.0f, 24), *cl = alloc_normal(c.nl + 1, 1.0f, 25);
    c.cot_p = cp, c.cot_c = cc, c.cot_r = cr, c.cot_l = cl;

    fd_loss(&c);
    float *grads = param_alloc(&m.table), *dimg = alloc_zeros(nimg);
    vit_backward(&m, mw, &a, &ar, grads, dimg, cp, cc, R ? cr : NULL, K ? cl : NULL);
    CHECK(ar.capacity == ar.high_water, "%s: arena plan %zu bytes for a peak of %zu", tag, ar.capacity, ar.high_water);

    char what[128];
    /* Directional checks: L is a sum of ~1e3 O(1) terms evaluated in float32,
     * so |L| rounding ~1e-4; with h = 1e-2 the quotient error is ~1e-2·|grad|
     * at worst from rounding, and the O(h²) truncation is smaller — rtol 2e-2
     * separates that from any real bug (which is O(1)). */
    snprintf(what, sizeof what, "%s d/dimg", tag);
    fd_check_direction(what, fd_loss, &c, c.img, dimg, nimg, 1e-2, 2e-2, 31);
    snprintf(what, sizeof what, "%s d/dparams (all)", tag);
    fd_check_direction(what, fd_loss, &c, mw, grads, m.table.total, 1e-2, 2e-2, 32);
    /* Element-wise on samples of single tensors (covers the token plumbing,
     * the gammas and the head one entry at a time).  Tolerance relative to the
     * tensor's largest gradient entry, as fd_check defines it. */
    static const char *names[] = {"cls_token", "pos_embed", "register_tokens", "patch_embed.proj.weight",
                                  "patch_embed.proj.bias", "blocks.0.attn.qkv.weight", "blocks.0.ls1.gamma",
                                  "blocks.1.ls2.gamma", "blocks.1.mlp.fc1.weight", "blocks.0.norm2.weight",
                                  "norm.bias", "head.weight", "head.bias",
                                  /* SwiGLU: both halves of w12 (u₁ through SiLU', u₂ linear), w3 */
                                  "blocks.0.mlp.w12.weight", "blocks.1.mlp.w12.bias", "blocks.0.mlp.w3.weight",
                                  "blocks.1.mlp.w3.bias"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const param_entry *e = param_find(&m.table, names[i]);
        if (!e)
            continue;
        snprintf(what, sizeof what, "%s %s", tag, names[i]);
        fd_check(what, fd_loss, &c, mw + e->offset, grads + e->offset, e->numel, 1e-2, 1e-3, 2e-2, 24);
    }
    free(grads), free(dimg), free(cp), free(cc), free(cr), free(cl);
    free(c.img), free(c.patch), free(c.cls), free(regbuf), free(c.logits);
    arena_free(&ar);
    vit_free(&m);
    free(mw);
}

static void test_fd_one_channel_registers_head(void)
{
    /* A small encoder of the kind we train on Fashion-MNIST: 1 channel,
     * 12×12 input with patch 4, 2 registers, 5-class head, layerscale. */
    vit_config c = {.img_size = 12, .patch = 4, .in_chans = 1, .embed_dim = 16, .depth = 2, .heads = 2,
                    .mlp_ratio = 2.0f, .num_register_tokens = 2, .layerscale = true, .layerscale_init = 0.7f,
                    .num_classes = 5, .ln_eps = 1e-6f};
    fd_model(c, "1ch+reg+head");
}

static void test_fd_swiglu(void)
{
    /* ViT-g's block kind: SwiGLU FFN, layerscale; 24 wide with ratio 4 ->
     * h 96 -> int(64) = 64 -> H 64 (w12 [128, 24], w3 [24, 64]); a register
     * and a head so every output path runs through the SwiGLU blocks. */
    vit_config c = {.img_size = 8, .patch = 4, .in_chans = 3, .embed_dim = 24, .depth = 2, .heads = 3,
                    .mlp_ratio = 4.0f, .ffn = VIT_FFN_SWIGLU, .num_register_tokens = 1, .layerscale = true,
                    .layerscale_init = 0.8f, .num_classes = 3, .ln_eps = 1e-6f};
    fd_model(c, "swiglu");
}

static void test_fd_no_layerscale(void)
{
    vit_config c = {.img_size = 8, .patch = 4, .in_chans = 3, .embed_dim = 12, .depth = 2, .heads = 3,
                    .mlp_ratio = 4.0f, .num_register_tokens = 0, .layerscale = false, .num_classes = 0,
                    .ln_eps = 1e-6f};
    fd_model(c, "no-ls");
}

/* ------------------------------------------------ accumulation and NULLs */

static void backward_accumulates_and_nulls(vit_ffn ffn)
{
    vit_config c = {.img_size = 8, .patch = 4, .in_chans = 2, .embed_dim = 12, .depth = 2, .heads = 2,
                    .mlp_ratio = 2.0f, .ffn = ffn, .num_register_tokens = 1, .layerscale = true,
                    .layerscale_init = 0.5f, .num_classes = 3, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &c);
    float *mw = param_alloc(&m.table);
    vit_init_weights(&m, mw, 5);
    perturb(&m, mw, 0.3f, 6);
    const int B = 3, D = c.embed_dim;
    const size_t nimg = (size_t)B * c.in_chans * 64, np = (size_t)B * m.npatch * D;
    arena ar = arena_create(vit_plan_bytes(&m, B, true));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, true);
    float *img = alloc_normal(nimg, 1.0f, 7), *patch = alloc_zeros(np);
    float *cp = alloc_normal(np, 1.0f, 8), *cc = alloc_normal((size_t)B * D, 1.0f, 9);
    float *cr = alloc_normal((size_t)B * D, 1.0f, 10), *cl = alloc_normal((size_t)B * 3, 1.0f, 11);
    float *logits = alloc_zeros((size_t)B * 3);
    vit_forward(&m, mw, &a, img, patch, NULL, NULL, logits);

    float *g1 = param_alloc(&m.table), *d1 = alloc_zeros(nimg);
    vit_backward(&m, mw, &a, &ar, g1, d1, cp, cc, cr, cl);
    /* += : a second backward into pre-filled buffers adds exactly the same
     * amount (same kernels, same order), so g2 = base + g1. */
    float *g2 = param_alloc(&m.table), *d2 = alloc_zeros(nimg);
    for (size_t i = 0; i < m.table.total; i++)
        g2[i] = 1.0f;
    for (size_t i = 0; i < nimg; i++)
        d2[i] = -2.0f;
    vit_backward(&m, mw, &a, &ar, g2, d2, cp, cc, cr, cl);
    float *w = xmalloc(m.table.total * sizeof(float));
    for (size_t i = 0; i < m.table.total; i++)
        w[i] = 1.0f + g1[i];
    check_close("grads accumulate", g2, w, m.table.total, 1e-6, 1e-6);
    float *wd = xmalloc(nimg * sizeof(float));
    for (size_t i = 0; i < nimg; i++)
        wd[i] = -2.0f + d1[i];
    check_close("d_img accumulates", d2, wd, nimg, 1e-6, 1e-6);

    /* Frozen model (grads NULL) still gives the input gradient. */
    float *d3 = alloc_zeros(nimg);
    vit_backward(&m, mw, &a, &ar, NULL, d3, cp, cc, cr, cl);
    check_close("d_img with frozen weights", d3, d1, nimg, 0, 0);
    /* No input gradient: weight grads unchanged. */
    float *g4 = param_alloc(&m.table);
    vit_backward(&m, mw, &a, &ar, g4, NULL, cp, cc, cr, cl);
    check_close("grads without d_img", g4, g1, m.table.total, 0, 0);
    /* Every cotangent NULL: nothing to propagate, grads stay zero. */
    float *g5 = param_alloc(&m.table);
    vit_backward(&m, mw, &a, &ar, g5, NULL, NULL, NULL, NULL, NULL);
    double s = 0;
    for (size_t i = 0; i < m.table.total; i++)
        s += fabs(g5[i]);
    CHECK(s == 0, "all-NULL cotangents must give zero gradients (sum |g| = %g)", s);
    /* Cotangents are linear: patch-only + rest = all. */
    float *g6 = param_alloc(&m.table);
    vit_backward(&m, mw, &a, &ar, g6, NULL, cp, NULL, NULL, NULL);
    vit_backward(&m, mw, &a, &ar, g6, NULL, NULL, cc, cr, cl);
    check_close("split cotangents add up", g6, g1, m.table.total, 1e-5, 1e-4);
    CHECK(ar.used == arena_mark(&ar), "backward must give its scratch back");

    free(g1), free(g2), free(g4), free(g5), free(g6), free(d1), free(d2), free(d3), free(w), free(wd), free(mw);
    free(img), free(patch), free(cp), free(cc), free(cr), free(cl), free(logits);
    arena_free(&ar);
    vit_free(&m);
}

static void test_backward_accumulates_and_nulls(void) { backward_accumulates_and_nulls(VIT_FFN_MLP); }
static void test_backward_accumulates_and_nulls_swiglu(void) { backward_accumulates_and_nulls(VIT_FFN_SWIGLU); }

/* ------------------------------------------------------- save / load */

static void test_save_load_roundtrip(void)
{
    vit_config c = {.img_size = 12, .patch = 4, .in_chans = 1, .embed_dim = 24, .depth = 3, .heads = 2,
                    .mlp_ratio = 3.0f, .num_register_tokens = 4, .layerscale = true, .layerscale_init = 1e-5f,
                    .num_classes = 10, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &c);
    float *mw = param_alloc(&m.table);
    vit_init_weights(&m, mw, 99);
    /* Init rules: LN 1/0, gammas = layerscale_init, mask 0, linear std ~0.02. */
    const param_entry *e = param_find(&m.table, "blocks.1.ls2.gamma");
    CHECK(mw[e->offset] == 1e-5f, "gamma init %g", mw[e->offset]);
    e = param_find(&m.table, "norm.weight");
    CHECK(mw[e->offset] == 1.0f, "LN weight init");
    e = param_find(&m.table, "blocks.2.mlp.fc1.weight");
    double ss = 0;
    for (size_t k = 0; k < e->numel; k++)
        ss += (double)mw[e->offset + k] * mw[e->offset + k];
    double sd = sqrt(ss / e->numel);
    CHECK(sd > 0.017 && sd < 0.023, "fc1 init std %g, want 0.02", sd);
    e = param_find(&m.table, "cls_token");
    CHECK(fabsf(mw[e->offset]) < 1e-4f, "cls_token init should be tiny (DINOv2: std 1e-6)");

    const char *path = "build/tests/test_vit_roundtrip.safetensors";
    st_writer *w = st_writer_new();
    vit_save(&m, mw, w, "enc.");
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors *st = safetensors_open(path);
    vit m2;
    float *m2w = vit_from_checkpoint(&m2, st, "enc.", 0, 2, PARAM_STRICT);
    CHECK(m2.cfg.embed_dim == 24 && m2.cfg.depth == 3 && m2.cfg.in_chans == 1 && m2.cfg.patch == 4 &&
              m2.cfg.num_register_tokens == 4 && m2.cfg.num_classes == 10 && m2.cfg.mlp_ratio == 3.0f &&
              m2.cfg.img_size == 12 && m2.table.total == m.table.total,
          "detected config differs from the saved model");
    CHECK(memcmp(mw, m2w, m.table.total * sizeof(float)) == 0, "round trip must be exact");
    /* Same grid: loading must copy pos_embed unchanged (no resampling). */
    vit_free(&m2);
    free(m2w);
    /* Resampling to a bigger grid keeps the cls entry exactly. */
    m2w = vit_from_checkpoint(&m2, st, "enc.", 20, 2, PARAM_STRICT);
    CHECK(m2.grid == 5, "grid %d", m2.grid);
    CHECK(memcmp(mw + m.pos_embed, m2w + m2.pos_embed, 24 * sizeof(float)) == 0,
          "cls position entry must be kept");
    vit_free(&m2);
    safetensors_close(st);
    vit_free(&m);
    free(m2w), free(mw);
    unlink(path);
}

typedef struct load_ctx {
    const char *path;
    const char *prefix;
    int strict;
} load_ctx;

static void load_into_wrong(void *p)
{
    load_ctx *c = p;
    safetensors *st = safetensors_open(c->path);
    vit_config cfg = vit_config_from_checkpoint(st, "", 0, 2);
    if (c->strict) {
        vit m;
        cfg.num_classes = 0; /* the file has head.*: strict load must refuse */
        vit_build(&m, &cfg);
        vit_load(&m, param_alloc(&m.table), st, "", PARAM_STRICT);
    } else {
        vit m;
        cfg.depth += 1; /* blocks.N missing */
        vit_build(&m, &cfg);
        vit_load(&m, param_alloc(&m.table), st, "", PARAM_ALLOW_EXTRA);
    }
}

static void test_load_errors(void)
{
    vit_config c = {.img_size = 8, .patch = 4, .in_chans = 1, .embed_dim = 8, .depth = 1, .heads = 2,
                    .mlp_ratio = 2.0f, .layerscale = true, .layerscale_init = 1.0f, .num_classes = 2, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &c);
    float *mw = param_alloc(&m.table);
    const char *path = "build/tests/test_vit_errors.safetensors";
    st_writer *w = st_writer_new();
    vit_save(&m, mw, w, "");
    st_writer_save(w, path);
    st_writer_free(w);
    load_ctx lc = {path, "", 1};
    expect_die("strict load names the extra key", load_into_wrong, &lc, "unexpected tensor 'head.");
    lc.strict = 0;
    expect_die("load names the missing key", load_into_wrong, &lc, "missing tensor 'blocks.1.");
    unlink(path);

    vit_free(&m);
    free(mw);
}

/* ------------------------------------------------- SwiGLU detection */

/* A minimal file with the keys detection reads; FFN keys as given. */
static void write_ffn_stub(const char *path, const char *k1, int64_t rows1, const char *k2)
{
    static float z[1024]; /* the largest stub tensor: w12 [96, 8] */
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "cls_token", 3, (int64_t[]){1, 1, 8}, z);
    st_writer_add_f32(w, "pos_embed", 3, (int64_t[]){1, 5, 8}, z);
    st_writer_add_f32(w, "patch_embed.proj.weight", 4, (int64_t[]){8, 1, 2, 2}, z);
    st_writer_add_f32(w, "blocks.0.norm1.weight", 1, (int64_t[]){8}, z);
    if (k1)
        st_writer_add_f32(w, k1, 2, (int64_t[]){rows1, 8}, z);
    if (k2)
        st_writer_add_f32(w, k2, 2, (int64_t[]){8, 8}, z);
    st_writer_save(w, path);
    st_writer_free(w);
}

static void detect_stub(void *p)
{
    safetensors *st = safetensors_open(((load_ctx *)p)->path);
    (void)vit_config_from_checkpoint(st, "", 0, 2);
}

static void test_swiglu_detection(void)
{
    /* A saved SwiGLU model (mlp.w12/w3 keys) comes back as SwiGLU with its
     * width, loads strictly and exactly; H = 40 is not what DINOv2's rule
     * gives at ratio 4 for D 16 (48), so the width must come from the shape. */
    vit_config c = {.img_size = 8, .patch = 4, .in_chans = 1, .embed_dim = 16, .depth = 2, .heads = 2,
                    .mlp_ratio = 4.0f, .ffn = VIT_FFN_SWIGLU, .ffn_hidden = 40, .layerscale = true,
                    .layerscale_init = 1.0f, .ln_eps = 1e-6f};
    vit m;
    vit_build(&m, &c);
    float *mw = param_alloc(&m.table);
    vit_init_weights(&m, mw, 3);
    const char *path = "build/tests/test_vit_swiglu.safetensors";
    st_writer *w = st_writer_new();
    vit_save(&m, mw, w, "enc.");
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors *st = safetensors_open(path);
    CHECK(safetensors_find(st, "enc.blocks.1.mlp.w12.weight") && !safetensors_find(st, "enc.blocks.0.mlp.fc1.weight"),
          "a SwiGLU model saves mlp.w12/w3");
    vit m2;
    float *m2w = vit_from_checkpoint(&m2, st, "enc.", 0, 2, PARAM_STRICT);
    CHECK(m2.cfg.ffn == VIT_FFN_SWIGLU && m2.hidden == 40 && m2.ffn1 == 80 && m2.cfg.ffn_hidden == 40 &&
              m2.cfg.depth == 2 && m2.table.total == m.table.total,
          "SwiGLU file detected as ffn %d, hidden %d", (int)m2.cfg.ffn, m2.hidden);
    CHECK(fabsf(m2.cfg.mlp_ratio - 3.75f) < 1e-6f, "informative mlp_ratio 1.5·40/16 = 3.75, got %g",
          (double)m2.cfg.mlp_ratio);
    CHECK(memcmp(mw, m2w, m.table.total * sizeof(float)) == 0, "SwiGLU round trip must be exact");
    vit_free(&m2);
    safetensors_close(st);
    vit_free(&m);
    free(m2w), free(mw);
    unlink(path);

    /* Hand-made files: w12 [2H, D] alone decides the kind and H; DINOv2's
     * width gives mlp_ratio 4 back; a GELU file stays Mlp. */
    write_ffn_stub(path, "blocks.0.mlp.w12.weight", 96, "blocks.0.mlp.w3.weight");
    st = safetensors_open(path);
    vit_config d = vit_config_from_checkpoint(st, "", 0, 2);
    vit_config d8 = {.embed_dim = 8, .mlp_ratio = 4.0f, .ffn = VIT_FFN_SWIGLU};
    CHECK(d.ffn == VIT_FFN_SWIGLU && d.ffn_hidden == 48 && vit_ffn_hidden(&d) == 48,
          "w12 [96, 8]: SwiGLU with H 48 (got ffn %d, H %d)", (int)d.ffn, vit_ffn_hidden(&d));
    CHECK(vit_ffn_hidden(&d8) == 24 && fabsf(d.mlp_ratio - 9.0f) < 1e-6f, "H 48 at D 8: ratio 1.5·48/8 = 9");
    safetensors_close(st);
    write_ffn_stub(path, "blocks.0.mlp.fc1.weight", 32, NULL);
    st = safetensors_open(path);
    d = vit_config_from_checkpoint(st, "", 0, 2);
    CHECK(d.ffn == VIT_FFN_MLP && d.ffn_hidden == 0 && vit_ffn_hidden(&d) == 32 && d.mlp_ratio == 4.0f,
          "fc1 [32, 8]: Mlp with H 32");
    safetensors_close(st);
    /* Broken SwiGLU files die naming w12. */
    load_ctx lc = {path, "", 0};
    write_ffn_stub(path, "blocks.0.mlp.w12.weight", 7, NULL);
    expect_die("odd w12 width", detect_stub, &lc, "expected [2H, 8]");
    write_ffn_stub(path, NULL, 0, "blocks.0.mlp.w3.weight");
    expect_die("w3 without w12", detect_stub, &lc, "blocks.0.mlp.w12.weight");
    unlink(path);
}

/* ---------------------------------------------------- preprocessing */

static uint8_t *fixture_u8(const safetensors *st, const char *name, int64_t *shape)
{
    int ndim;
    float *f = safetensors_get_f32(st, name, &ndim, shape);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    uint8_t *u = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        u[i] = (uint8_t)f[i];
    free(f);
    return u;
}

/* Runs one recipe and compares with the fixture tensor `name`. */
static void preprocess_case(const safetensors *st, const uint8_t *img, const int64_t *shape,
                            encoder_preprocess_kind kind, int S, const char *name, double tol)
{
    const int B = (int)shape[0], C = (int)shape[1], H = (int)shape[2], W = (int)shape[3];
    float *y = alloc_zeros((size_t)B * C * S * S);
    arena ar = arena_create(encoder_preprocess_workspace_bytes(kind, B, C, H, W, S));
    encoder_preprocess(y, img, kind, B, C, H, W, S, &ar);
    CHECK(ar.used == 0, "%s: preprocess must give its workspace back", name);
    CHECK(ar.high_water == ar.capacity, "%s: plan of %zu bytes for a peak of %zu", name, ar.capacity, ar.high_water);
    fixture_check(st, name, y, (size_t)B * C * S * S, tol, tol);
    free(y);
    arena_free(&ar);
}

static void test_preprocess_parity(void)
{
    safetensors *st = fixture_open("models/vit_preprocess");
    int64_t shape[8], shape_s[8];
    uint8_t *img = fixture_u8(st, "img", shape), *small = fixture_u8(st, "img_small", shape_s);
    /* torch evaluates the same float32 expressions: u/255, (x − m)/s, then a
     * 4×4-tap cubic sum (weights up to 1.1 in magnitude, inputs |x| ≤ 2.7).
     * torch's own float32 result is 2.8e-6 from the float64 one on this
     * fixture (ours is 4e-6 from torch's: a different summation order), so
     * 1e-5 abs/rel.  A wrong kernel constant (a = −0.5), coordinate offset,
     * clamping or H/W swap is off by >1e-2. */
    preprocess_case(st, img, shape, ENC_PRE_DINOV2, 14, "dinov2", 1e-5);
    preprocess_case(st, img, shape, ENC_PRE_CLIP, 14, "clip", 1e-5);
    /* Upsampling 9 -> 14 exercises the clamped border taps. */
    preprocess_case(st, small, shape_s, ENC_PRE_DINOV2, 14, "dinov2_up", 1e-5);
    free(img), free(small);

    /* No resize: elementwise, torch's exact float32 ops, so 1e-6. */
    size_t n = 2 * 3 * 20 * 18;
    img = fixture_u8(st, "img", shape);
    float *y = alloc_zeros(n);
    encoder_normalize_u8(y, img, 2, 3, 20 * 18, (const float[]){0.485f, 0.456f, 0.406f},
                         (const float[]){0.229f, 0.224f, 0.225f});
    fixture_check(st, "imagenet_noresize", y, n, 1e-6, 1e-6);
    free(y), free(img);

    /* The reference's size rule. */
    CHECK(encoder_input_size(ENC_PRE_DINOV2, 256) == 224, "dinov2 @256 -> 224");
    CHECK(encoder_input_size(ENC_PRE_DINOV2, 512) == 448, "dinov2 @512 -> 448");
    CHECK(encoder_input_size(ENC_PRE_CLIP, 256) == 224, "clip @256 -> 224");
    CHECK(encoder_input_size(ENC_PRE_IMAGENET, 256) == 256, "mocov3 @256 -> 256");
    CHECK(encoder_preprocess_kind_for("dinov2-vit-b") == ENC_PRE_DINOV2 &&
              encoder_preprocess_kind_for("jepa-vit-h") == ENC_PRE_DINOV2 &&
              encoder_preprocess_kind_for("clip-vit-L") == ENC_PRE_CLIP &&
              encoder_preprocess_kind_for("mocov3-vit-b") == ENC_PRE_IMAGENET &&
              encoder_preprocess_kind_for("mae-vit-l") == ENC_PRE_IMAGENET,
          "enc-type families");
    safetensors_close(st);
}

static void test_preprocess_noresize_path(void)
{
    /* IMAGENET kind at the native size is the plain normalisation; DINOV2 at
     * out_size == H == W skips the resize too. */
    uint8_t img[1 * 3 * 5 * 5];
    for (int i = 0; i < 75; i++)
        img[i] = (uint8_t)(i * 3 + 1);
    float a[75], b[75], c[75];
    encoder_normalize_u8(a, img, 1, 3, 25, (const float[]){0.485f, 0.456f, 0.406f},
                         (const float[]){0.229f, 0.224f, 0.225f});
    arena ar = arena_create(encoder_preprocess_workspace_bytes(ENC_PRE_IMAGENET, 1, 3, 5, 5, 5));
    encoder_preprocess(b, img, ENC_PRE_IMAGENET, 1, 3, 5, 5, 5, &ar);
    arena_free(&ar);
    ar = arena_create(encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, 1, 3, 5, 5, 5));
    encoder_preprocess(c, img, ENC_PRE_DINOV2, 1, 3, 5, 5, 5, &ar);
    arena_free(&ar);
    check_close("imagenet no-resize", b, a, 75, 0, 0);
    check_close("dinov2 at native size", c, a, 75, 0, 0);
    /* no resize, no workspace */
    CHECK(encoder_preprocess_workspace_bytes(ENC_PRE_IMAGENET, 1, 3, 5, 5, 5) == 0 &&
              encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, 1, 3, 5, 5, 5) == 0 &&
              encoder_preprocess_workspace_bytes(ENC_PRE_CLIP, 1, 3, 5, 5, 5) == 0,
          "the native size takes no workspace");
}

/* A 5×7 image to 5×5: one side already at the size is still a resize (the
 * normalised image, resized; the workspace holds it). */
static void test_preprocess_one_side_at_size(void)
{
    uint8_t img[3 * 5 * 7];
    for (int i = 0; i < 105; i++)
        img[i] = (uint8_t)(i * 2 + 3);
    float norm[105], want[75], got[75];
    encoder_normalize_u8(norm, img, 1, 3, 35, (const float[]){0.485f, 0.456f, 0.406f},
                         (const float[]){0.229f, 0.224f, 0.225f});
    bicubic_resize_forward(want, norm, 1, 3, 5, 7, 5, 5);
    size_t ws = encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, 1, 3, 5, 7, 5);
    CHECK(ws >= 105 * sizeof(float), "a resize needs the normalised image: %zu bytes", ws);
    arena ar = arena_create(ws);
    encoder_preprocess(got, img, ENC_PRE_DINOV2, 1, 3, 5, 7, 5, &ar);
    arena_free(&ar);
    check_close("5x7 -> 5x5", got, want, 75, 0, 0);
}

static void preprocess_to_size(void *arg)
{
    uint8_t img[3 * 4 * 4] = {0};
    float out[48];
    arena ar = arena_create(1 << 12);
    encoder_preprocess(out, img, ENC_PRE_DINOV2, 1, 3, 4, 4, *(const int *)arg, &ar);
}

/* The size the encoder runs at in training: 224/256 of the image for RGB
 * images and the DINOv2/CLIP families, unless that is under one 14-pixel
 * patch; the image's own size otherwise.  An output size of 0 is refused. */
static void test_encoder_train_input_size(void)
{
    CHECK(encoder_train_input_size(ENC_PRE_DINOV2, 3, 256) == 224, "256 -> 224");
    CHECK(encoder_train_input_size(ENC_PRE_CLIP, 3, 512) == 448, "512 -> 448");
    CHECK(encoder_train_input_size(ENC_PRE_DINOV2, 3, 32) == 28, "32 -> 28");
    CHECK(encoder_train_input_size(ENC_PRE_DINOV2, 3, 16) == 14, "16 -> 14 (one patch)");
    CHECK(encoder_train_input_size(ENC_PRE_DINOV2, 3, 15) == 15, "15: 13 is under a patch, keep 15");
    CHECK(encoder_train_input_size(ENC_PRE_DINOV2, 1, 64) == 64, "grey images keep their size");
    CHECK(encoder_train_input_size(ENC_PRE_IMAGENET, 3, 64) == 64, "ImageNet-family encoders keep the size");
    static const int zero = 0, negative = -3;
    expect_die("output size 0", preprocess_to_size, (void *)&zero, "encoder preprocessing: output size 0");
    expect_die("output size -3", preprocess_to_size, (void *)&negative, "encoder preprocessing: output size -3");
    static const int one = 1;
    CHECK(run_in_child(preprocess_to_size, (void *)&one, NULL, 0) == 0, "an output of 1x1 is a size like any other");
}

static void test_preprocess_one_channel(void)
{
    /* Fashion-MNIST-style 1-channel: /255 then (x − mean)/std with one channel. */
    uint8_t img[2 * 1 * 4 * 4];
    for (int i = 0; i < 32; i++)
        img[i] = (uint8_t)(i * 8);
    float y[32];
    encoder_normalize_u8(y, img, 2, 1, 16, (const float[]){0.5f}, (const float[]){0.25f});
    int ok = 1;
    for (int i = 0; i < 32; i++)
        ok &= fabsf(y[i] - ((float)(i * 8) / 255.0f - 0.5f) / 0.25f) < 1e-6f;
    CHECK(ok, "1-channel normalisation");
}

/* Calls the model cannot serve are refused as internal errors: logits from
 * a model without a head (forward, or their gradient in the backward), a
 * backward after an inference forward, and one block's backward on
 * inference activations. */
static void vit_misuse(void *arg)
{
    const int which = *(const int *)arg;
    vit_config c = tiny_vit_config(8);
    vit m;
    vit_build(&m, &c);
    float *w = param_alloc(&m.table), *g = param_alloc(&m.table), img[64] = {0}, logits[4], dl[4] = {0}, x[64];
    const bool train = which != 1 && which != 3;
    arena ar = arena_create(vit_plan_bytes(&m, 1, train));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, 1, train);
    vit_forward(&m, w, &a, img, NULL, NULL, NULL, which == 0 ? logits : NULL);
    if (which == 1 || which == 2)
        vit_backward(&m, w, &a, &ar, g, NULL, NULL, NULL, NULL, which == 2 ? dl : NULL);
    if (which == 3)
        vit_block_backward(&m, w, 0, &a.blocks[0], g, x, x, 1, &ar, a.attn_ws);
}

static void test_misuse_dies(void)
{
    static const int which[4] = {0, 1, 2, 3};
    expect_die("logits without a head", vit_misuse, (void *)&which[0],
               "internal: vit_forward asked for logits but the model has no classification head");
    expect_die("a backward after an inference forward", vit_misuse, (void *)&which[1],
               "internal: vit_backward needs a train-mode forward");
    expect_die("logit gradients without a head", vit_misuse, (void *)&which[2],
               "internal: vit_backward got d_logits but the model has no classification head");
    expect_die("a block backward on inference activations", vit_misuse, (void *)&which[3],
               "internal: vit_block_backward needs activations from a train-mode forward");
}

int main(void)
{
    RUN(test_head_counts);
    RUN(test_unsupported_presets_die_clearly);
    RUN(test_vit_g_preset_swiglu);
    RUN(test_config_check);
    RUN(test_config_from_bad_shapes);
    RUN(test_load_extras_and_pos_embed);
    RUN(test_misuse_dies);
    RUN(test_load_errors);
    RUN(test_preset_counts_and_keys);
    RUN(test_parity_vit_tiny);
    RUN(test_parity_vit_tiny_registers);
    RUN(test_parity_vit_tiny_swiglu);
    RUN(test_fd_one_channel_registers_head);
    RUN(test_fd_no_layerscale);
    RUN(test_fd_swiglu);
    RUN(test_backward_accumulates_and_nulls);
    RUN(test_backward_accumulates_and_nulls_swiglu);
    RUN(test_save_load_roundtrip);
    RUN(test_swiglu_detection);
    RUN(test_preprocess_parity);
    RUN(test_preprocess_noresize_path);
    RUN(test_preprocess_one_channel);
    RUN(test_preprocess_one_side_at_size);
    RUN(test_encoder_train_input_size);
    return test_summary();
}
