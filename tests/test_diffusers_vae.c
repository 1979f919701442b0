/* diffusers AutoencoderKL folders (models/vae_diffusers.h) and the VAE
 * without quant convs:
 *
 *  - the CompVis -> diffusers name map on hand-picked names (reversed
 *    up_blocks, conv_shortcut, conv_norm_out, both attention namings);
 *  - each fixture folder of dev/ref/diffusers_vae_ref.py (names built there
 *    from diffusers' module layout, independently of the C map): current
 *    attention names; the older query/key/value/proj_attn with attention at
 *    one level; z = 16 without quant_conv / post_quant_conv) loads, its
 *    encoder mean / logvar and decoder output match the float64 reference,
 *    its parameters equal the CompVis-named copy bit for bit, and its latent
 *    statistics are what diffusers' formulas mean;
 *  - export -> load gives identical parameters, the written names equal the
 *    fixture's, the statistics come back from the sidecar exactly and from
 *    latents_mean/std to float rounding, and the pooled scalars are right;
 *  - a folder holding only the fp16 variant loads as the weights rounded to half;
 *  - a VAE without quant convs computes what one with identity quant convs
 *    does, forward and backward (training a Flux-style VAE);
 *  - bad folders die naming the file and the field or tensor;
 *  - the CLI: `repae export-vae --format diffusers` then `repae reconstruct`
 *    and `repae cache-latents` on the folder give the numbers of the CompVis
 *    file; back to CompVis;
 *    `repae inspect FOLDER`, `repae forward --model vae --weights FOLDER`.
 *
 * Tolerances: the references are float64 answers for float32 inputs; our
 * float32 VAE passes differ by rounding, measured <= 2e-6 of each tensor's
 * max in test_vae; we allow 1e-5 of the max as test_vae does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/arena.h"
#include "core/error.h"
#include "models/sit.h"
#include "models/vae.h"
#include "models/vae_diffusers.h"
#include "test.h"
#include "tiny_vae.h"

#define FX "tests/fixtures/io/"
#define TOL_OUT 1e-5

static const struct {
    const char *name;
    int old_attn;
} CASES[] = {
    {"diffusers_vae_tiny", 0},
    {"diffusers_vae_tiny_oldattn", 1},
    {"diffusers_vae_tiny_z16", 0},
};
#define N_CASES 3

static const char *tmp_dir; /* test_tmp_dir(): removed at exit */
#define tmp_path test_tmp_path

static const char *folder(int i)
{
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, FX "%s", CASES[i].name);
    return p;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double worst_rel;

static void check_rel(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double s = max_abs(want, n), e = 0;
    for (size_t i = 0; i < n; i++)
        e = fmax(e, fabs((double)got[i] - want[i]));
    if (s > 0)
        worst_rel = fmax(worst_rel, e / s);
    check_close(what, got, want, n, fmax(tol * s, 1e-7), 0.0);
}

static int same_params(const vae *a, const float *aw, const vae *b, const float *bw)
{
    if (a->table.n != b->table.n || a->table.total != b->table.total)
        return 0;
    for (int i = 0; i < a->table.n; i++)
        if (strcmp(a->table.entries[i].name, b->table.entries[i].name) ||
            a->table.entries[i].offset != b->table.entries[i].offset)
            return 0;
    return memcmp(aw, bw, a->table.total * sizeof(float)) == 0;
}

/* ---- the name map ---- */

static void test_name_map(void)
{
    vae_config c;
    vae_preset("f8d4", &c); /* 4 levels: up.3 runs first = up_blocks.0 */
    static const struct {
        const char *ours, *now, *old;
        int linear;
    } T[] = {
        {"decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight", NULL, 0},
        {"decoder.up.1.upsample.conv.bias", "decoder.up_blocks.2.upsamplers.0.conv.bias", NULL, 0},
        {"decoder.up.0.block.0.nin_shortcut.weight", "decoder.up_blocks.3.resnets.0.conv_shortcut.weight", NULL, 0},
        {"decoder.up.2.block.2.norm2.bias", "decoder.up_blocks.1.resnets.2.norm2.bias", NULL, 0},
        {"encoder.down.1.block.0.nin_shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias", NULL, 0},
        {"encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight", NULL, 0},
        {"encoder.down.0.attn.1.k.bias", "encoder.down_blocks.0.attentions.1.to_k.bias",
         "encoder.down_blocks.0.attentions.1.key.bias", 0},
        {"encoder.down.0.downsample.conv.bias", "encoder.down_blocks.0.downsamplers.0.conv.bias", NULL, 0},
        {"decoder.up.0.attn.2.q.weight", "decoder.up_blocks.3.attentions.2.to_q.weight",
         "decoder.up_blocks.3.attentions.2.query.weight", 1},
        {"decoder.up.3.block.0.conv1.bias", "decoder.up_blocks.0.resnets.0.conv1.bias", NULL, 0},
        {"encoder.down.0.block.1.conv2.weight", "encoder.down_blocks.0.resnets.1.conv2.weight", NULL, 0},
        {"encoder.mid.block_1.conv1.weight", "encoder.mid_block.resnets.0.conv1.weight", NULL, 0},
        {"decoder.mid.block_2.norm1.weight", "decoder.mid_block.resnets.1.norm1.weight", NULL, 0},
        {"encoder.mid.attn_1.norm.weight", "encoder.mid_block.attentions.0.group_norm.weight",
         "encoder.mid_block.attentions.0.group_norm.weight", 0},
        {"encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight",
         "encoder.mid_block.attentions.0.query.weight", 1},
        {"decoder.mid.attn_1.v.bias", "decoder.mid_block.attentions.0.to_v.bias",
         "decoder.mid_block.attentions.0.value.bias", 0},
        {"decoder.mid.attn_1.proj_out.weight", "decoder.mid_block.attentions.0.to_out.0.weight",
         "decoder.mid_block.attentions.0.proj_attn.weight", 1},
        {"encoder.norm_out.weight", "encoder.conv_norm_out.weight", NULL, 0},
        {"decoder.norm_out.bias", "decoder.conv_norm_out.bias", NULL, 0},
        {"encoder.conv_in.weight", "encoder.conv_in.weight", NULL, 0},
        {"decoder.conv_out.bias", "decoder.conv_out.bias", NULL, 0},
        {"quant_conv.weight", "quant_conv.weight", NULL, 0},
        {"post_quant_conv.bias", "post_quant_conv.bias", NULL, 0},
    };
    char out[256];
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        int lin = -1;
        int rc = vae_diffusers_name(&c, T[i].ours, 0, out, sizeof out, &lin);
        CHECK(rc == 0 && !strcmp(out, T[i].now) && lin == T[i].linear, "%s -> '%s' (rc %d, linear %d), want %s",
              T[i].ours, rc ? "" : out, rc, lin, T[i].now);
        if (T[i].old) {
            rc = vae_diffusers_name(&c, T[i].ours, 1, out, sizeof out, &lin);
            CHECK(rc == 0 && !strcmp(out, T[i].old), "%s (old naming) -> '%s', want %s", T[i].ours, out, T[i].old);
        }
        /* The name and its NUL fit exactly; one byte less is refused, never cut. */
        for (int old = 0; old < 2; old++) {
            const char *want = old && T[i].old ? T[i].old : T[i].now;
            size_t len = strlen(want);
            rc = vae_diffusers_name(&c, T[i].ours, old, out, len + 1, NULL);
            CHECK(rc == 0 && !strcmp(out, want), "%s in exactly %zu bytes: rc %d", T[i].ours, len + 1, rc);
            CHECK(vae_diffusers_name(&c, T[i].ours, old, out, len, NULL) == -1, "%s in %zu bytes must be refused",
                  T[i].ours, len);
        }
    }
    const char *bad[] = {"decoder.up.4.block.0.conv1.weight", "encoder.up.0.block.0.conv1.weight", "mid.attn_1.q.weight",
                         "encoder.mid.attn_1.qq.weight", "encoder.down.0.block.0.norm3.weight", "x",
                         /* level 4 of 4, and -1 */
                         "encoder.down.4.block.0.conv1.weight", "encoder.down.4.attn.0.q.weight",
                         "encoder.down.4.downsample.conv.weight", "decoder.up.4.attn.0.q.weight",
                         "decoder.up.4.upsample.conv.weight", "encoder.down.-1.block.0.conv1.weight",
                         "decoder.up.-1.upsample.conv.weight"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(vae_diffusers_name(&c, bad[i], 0, out, sizeof out, NULL) != 0, "'%s' should not map (got %s)", bad[i],
              out);
    /* Every parameter of the preset maps, and to distinct names. */
    vae m;
    vae_build(&m, &c);
    char(*names)[160] = xmalloc((size_t)m.table.n * sizeof *names);
    int ok = 1;
    for (int i = 0; i < m.table.n; i++)
        ok &= vae_diffusers_name(&c, m.table.entries[i].name, 0, names[i], sizeof names[i], NULL) == 0;
    for (int i = 0; ok && i < m.table.n; i++)
        for (int j = i + 1; j < m.table.n; j++)
            ok &= strcmp(names[i], names[j]) != 0;
    CHECK(ok, "f8d4: every parameter should map to a distinct diffusers name");
    free(names);
    vae_free(&m);
}

/* ---- the fixture folders ---- */

static void test_folders_match_reference(void)
{
    for (int i = 0; i < N_CASES; i++) {
        char ref_name[128], what[160];
        snprintf(ref_name, sizeof ref_name, "io/%s_ref", CASES[i].name);
        safetensors *ref = fixture_open(ref_name);
        vae m;
        float *mw = vae_diffusers_load(&m, folder(i));
        const st_tensor *tx = safetensors_require(ref, "x"), *tz = safetensors_require(ref, "zin");
        int B = (int)tx->shape[0], H = (int)tx->shape[2], W = (int)tx->shape[3], h, w;
        vae_latent_size(&m, H, W, &h, &w);
        CHECK(tx->shape[1] == m.cfg.in_channels && tz->shape[1] == m.cfg.z_channels && tz->shape[2] == h,
              "%s: fixture shapes do not fit the loaded VAE", CASES[i].name);
        size_t nz = (size_t)B * m.cfg.z_channels * h * w, nr = (size_t)B * m.cfg.out_ch * H * W, n;
        float *x = fixture_f32(ref, "x", &n), *zin = fixture_f32(ref, "zin", &n);
        float *mean = xmalloc(nz * sizeof(float)), *logvar = xmalloc(nz * sizeof(float)),
              *recon = xmalloc(nr * sizeof(float));
        vae_plan pe = vae_plan_memory(&m, VAE_PASS_ENCODE, B, H, W), pd = vae_plan_memory(&m, VAE_PASS_DECODE, B, h, w);
        arena ar = arena_create((pe.saved + pe.scratch > pd.saved + pd.scratch ? pe.saved + pe.scratch : pd.saved + pd.scratch) +
                            (1 << 16));
        vae_encode(&m, mw, x, mean, logvar, NULL, B, H, W, &ar);
        vae_decode(&m, mw, zin, recon, B, h, w, &ar);
        float *want = fixture_f32(ref, "mean", &n);
        snprintf(what, sizeof what, "%s mean", CASES[i].name);
        check_rel(what, mean, want, nz, TOL_OUT);
        free(want);
        want = fixture_f32(ref, "logvar", &n);
        snprintf(what, sizeof what, "%s logvar", CASES[i].name);
        check_rel(what, logvar, want, nz, TOL_OUT);
        free(want);
        want = fixture_f32(ref, "recon", &n);
        snprintf(what, sizeof what, "%s decode(zin)", CASES[i].name);
        check_rel(what, recon, want, nr, TOL_OUT);
        free(want);
        if (i == 2)
            CHECK(m.cfg.no_quant_conv && m.cfg.no_post_quant_conv && m.cfg.z_channels == 16 &&
                      !param_find(&m.table, "quant_conv.weight") && !param_find(&m.table, "post_quant_conv.bias"),
                  "z16 folder: expected z = 16 without quant convs");
        else
            CHECK(!m.cfg.no_quant_conv && !m.cfg.no_post_quant_conv, "%s: should have quant convs", CASES[i].name);
        arena_free(&ar);
        free(x), free(zin), free(mean), free(logvar), free(recon), free(mw);
        vae_free(&m);
        safetensors_close(ref);
    }
    printf("  worst |ours - float64 reference| / max: %.2e (tolerance %.0e)\n", worst_rel, TOL_OUT);
}

static void test_folder_equals_compvis_file(void)
{
    for (int i = 0; i < N_CASES; i++) {
        char ref_name[128];
        snprintf(ref_name, sizeof ref_name, "io/%s_ref", CASES[i].name);
        safetensors *ref = fixture_open(ref_name);
        vae a, b;
        float *aw = vae_diffusers_load(&a, folder(i));
        vae_config c;
        CHECK(vae_config_detect(ref, "", &c) == 0, "%s: CompVis copy not detected", CASES[i].name);
        vae_build(&b, &c);
        float *bw = param_alloc(&b.table);
        vae_load(&b, bw, ref, "", PARAM_IGNORE_EXTRA);
        CHECK(same_params(&a, aw, &b, bw), "%s: the folder's parameters differ from the CompVis copy's", CASES[i].name);
        CHECK(a.cfg.ch == b.cfg.ch && a.cfg.n_levels == b.cfg.n_levels && a.cfg.z_channels == b.cfg.z_channels &&
                  a.cfg.norm_groups == b.cfg.norm_groups && a.cfg.num_res_blocks == b.cfg.num_res_blocks &&
                  a.cfg.no_quant_conv == b.cfg.no_quant_conv && a.n_enc == b.n_enc && a.n_dec == b.n_dec,
              "%s: configurations differ", CASES[i].name);

        /* The same weights without any config metadata: shapes alone must
         * find the missing quant convs. */
        st_writer *w = st_writer_new();
        param_save(&b.table, bw, w, "");
        st_writer_save(w, tmp_path("plain.safetensors"));
        st_writer_free(w);
        safetensors *plain = safetensors_open(tmp_path("plain.safetensors"));
        vae_config d;
        CHECK(vae_config_detect(plain, "", &d) == 0 && d.no_quant_conv == c.no_quant_conv &&
                  d.no_post_quant_conv == c.no_post_quant_conv && d.z_channels == c.z_channels,
              "%s: detection from shapes: no_quant_conv %d (want %d), z %d (want %d)", CASES[i].name,
              d.no_quant_conv, c.no_quant_conv, d.z_channels, c.z_channels);
        safetensors_close(plain);
        vae_free(&a);
        vae_free(&b);
        free(aw), free(bw);
        safetensors_close(ref);
    }
}

static void test_folder_latents_stats(void)
{
    for (int i = 0; i < N_CASES; i++) {
        char ref_name[128];
        snprintf(ref_name, sizeof ref_name, "io/%s_ref", CASES[i].name);
        safetensors *ref = fixture_open(ref_name);
        size_t C;
        float *wb = fixture_f32(ref, "latents_bias", &C), *ws = fixture_f32(ref, "latents_scale", &C);
        float *bias = xmalloc(C * sizeof(float)), *scale = xmalloc(C * sizeof(float));
        const char *src = NULL;
        vae_diffusers_latents_stats(folder(i), (int)C, bias, scale, &src);
        CHECK(!memcmp(bias, wb, C * sizeof(float)) && !memcmp(scale, ws, C * sizeof(float)),
              "%s: latent statistics (from %s): bias[0] %g (want %g), scale[0] %g (want %g)", CASES[i].name, src,
              bias[0], wb[0], scale[0], ws[0]);
        free(wb), free(ws), free(bias), free(scale);
        safetensors_close(ref);
    }
}

/* ---- export ---- */

static cJSON *read_json(const char *path)
{
    size_t n;
    char *t = read_file_all(path, &n);
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

/* Names and shapes of two safetensors files are the same sets. */
static int same_keys(const char *a_path, const char *b_path)
{
    safetensors *a = safetensors_open(a_path), *b = safetensors_open(b_path);
    int ok = a->n_tensors == b->n_tensors;
    for (int i = 0; ok && i < a->n_tensors; i++) {
        const st_tensor *t = &a->tensors[i], *u = safetensors_find(b, t->name);
        ok = u && u->ndim == t->ndim && !memcmp(u->shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
        if (!ok)
            printf("  '%s' of %s not in %s with its shape\n", t->name, a_path, b_path);
    }
    safetensors_close(a);
    safetensors_close(b);
    return ok;
}

static void test_export_roundtrip(void)
{
    char out[512], path[600];
    for (int i = 0; i < N_CASES; i++) {
        vae a, b;
        float *aw = vae_diffusers_load(&a, folder(i));
        int C = a.cfg.z_channels;
        float *bias = alloc_normal((size_t)C, 0.5f, 11 + i), *scale = alloc_uniform((size_t)C, 0.2f, 2.0f, 21 + i);
        float *rb = xmalloc((size_t)C * sizeof(float)), *rs = xmalloc((size_t)C * sizeof(float));
        snprintf(out, sizeof out, "%s", tmp_path(CASES[i].name));
        vae_diffusers_save(&a, aw, out, bias, scale);
        CHECK(vae_diffusers_is_folder(out), "%s: the export is not recognised as a folder", out);
        float *bw = vae_diffusers_load(&b, out);
        CHECK(same_params(&a, aw, &b, bw), "%s: export -> load changed the parameters", CASES[i].name);
        CHECK(a.cfg.no_quant_conv == b.cfg.no_quant_conv && a.cfg.no_post_quant_conv == b.cfg.no_post_quant_conv &&
                  a.cfg.n_attn == b.cfg.n_attn && a.cfg.attn_resolutions[0] == b.cfg.attn_resolutions[0],
              "%s: export -> load changed the configuration", CASES[i].name);
        /* The written names are the ones the fixture script built from diffusers' layout. */
        if (!CASES[i].old_attn) {
            char fx[600];
            snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_WEIGHTS, out);
            snprintf(fx, sizeof fx, "%s/" VAE_DIFFUSERS_WEIGHTS, folder(i));
            CHECK(same_keys(path, fx) && same_keys(fx, path), "%s: exported names/shapes differ from the fixture's",
                  CASES[i].name);
        }
        /* Statistics: the sidecar exactly ... */
        const char *src;
        vae_diffusers_latents_stats(out, C, rb, rs, &src);
        CHECK(!memcmp(rb, bias, (size_t)C * 4) && !memcmp(rs, scale, (size_t)C * 4) && strstr(src, "latents_stats"),
              "%s: statistics from the sidecar should be exact (source %s)", CASES[i].name, src);
        /* ... latents_mean / latents_std to rounding ... */
        snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, out);
        unlink(path);
        vae_diffusers_latents_stats(out, C, rb, rs, &src);
        CHECK(strstr(src, "latents_mean") != NULL, "source %s", src);
        check_close("bias from latents_mean", rb, bias, (size_t)C, 1e-7, 1e-6);
        check_close("scale from scaling_factor / latents_std", rs, scale, (size_t)C, 0, 1e-6);
        /* ... and the pooled scalars. */
        snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, out);
        cJSON *j = read_json(path);
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++)
            mu += bias[c] / (double)C;
        for (int c = 0; c < C; c++)
            var += (1.0 / ((double)scale[c] * scale[c]) + (bias[c] - mu) * (bias[c] - mu)) / C;
        const cJSON *sf = cJSON_GetObjectItemCaseSensitive(j, "scaling_factor"),
                    *sh = cJSON_GetObjectItemCaseSensitive(j, "shift_factor"),
                    *cl = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
        CHECK(cJSON_IsNumber(sf) && fabs(sf->valuedouble * sqrt(var) - 1) < 1e-12 && cJSON_IsNumber(sh) &&
                  fabs(sh->valuedouble - mu) < 1e-12 && cJSON_IsString(cl) && !strcmp(cl->valuestring, "AutoencoderKL"),
              "%s: config.json scalars: scaling_factor %g (want %g), shift_factor %g (want %g)", CASES[i].name,
              cJSON_IsNumber(sf) ? sf->valuedouble : -1, 1 / sqrt(var), cJSON_IsNumber(sh) ? sh->valuedouble : -1, mu);
        cJSON_Delete(j);
        /* Without statistics: diffusers' default scale, no shift, no sidecar. */
        vae_diffusers_save(&a, aw, out, NULL, NULL);
        CHECK(access(path, F_OK) == 0, "config.json missing after a second export");
        snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, out);
        CHECK(access(path, F_OK) != 0, "a stale sidecar should be removed");
        vae_diffusers_latents_stats(out, C, rb, rs, &src);
        CHECK(rb[0] == 0 && rs[0] == (float)VAE_DIFFUSERS_DEFAULT_SCALING && rs[C - 1] == rs[0],
              "no statistics: bias %g scale %g", rb[0], rs[0]);
        free(bias), free(scale), free(rb), free(rs), free(aw), free(bw);
        vae_free(&a);
        vae_free(&b);
    }
}

/* ---- a VAE without quant convs = one with identity quant convs ---- */

static void identity_conv(const vae *m, float *params, const char *name, int c)
{
    char key[64];
    snprintf(key, sizeof key, "%s.weight", name);
    const param_entry *w = param_find(&m->table, key);
    snprintf(key, sizeof key, "%s.bias", name);
    const param_entry *b = param_find(&m->table, key);
    memset(params + w->offset, 0, w->numel * sizeof(float));
    memset(params + b->offset, 0, b->numel * sizeof(float));
    for (int k = 0; k < c; k++)
        params[w->offset + (size_t)k * c + k] = 1.0f;
}

static void test_no_quant_conv_is_identity(void)
{
    vae_config c = {.ch = 8, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4, .n_attn = 0,
                    .resolution = 16, .in_channels = 3, .out_ch = 3, .double_z = 1, .norm_groups = 4};
    vae q, n;
    vae_build(&q, &c);
    float *qw = param_alloc(&q.table);
    vae_init_weights(&q, qw, 7);
    identity_conv(&q, qw, "quant_conv", 8);
    identity_conv(&q, qw, "post_quant_conv", 4);
    c.no_quant_conv = c.no_post_quant_conv = 1;
    vae_build(&n, &c);
    float *nw = param_alloc(&n.table);
    CHECK(vae_param_count(&n) + 8 * 8 + 8 + 4 * 4 + 4 == vae_param_count(&q) && n.n_enc == q.n_enc - 1 &&
              n.n_dec == q.n_dec - 1,
          "no-quant-conv table: %zu parameters (with: %zu), %d/%d layers (with: %d/%d)", vae_param_count(&n),
          vae_param_count(&q), n.n_enc, n.n_dec, q.n_enc, q.n_dec);
    for (int i = 0; i < n.table.n; i++) {
        const param_entry *e = &n.table.entries[i], *f = param_find(&q.table, e->name);
        memcpy(nw + e->offset, qw + f->offset, e->numel * sizeof(float));
    }
    const int B = 2, H = 16, W = 16;
    size_t nx = (size_t)B * 3 * H * W, nz = (size_t)B * 4 * 8 * 8;
    float *x = alloc_uniform(nx, -1, 1, 3), *eps = alloc_normal(nz, 1, 4), *d_recon = alloc_normal(nx, 1, 5),
          *d_z = alloc_normal(nz, 1, 6), *d_mean = alloc_normal(nz, 1, 7), *d_lv = alloc_normal(nz, 1, 8);
    float *gq = param_alloc(&q.table), *gn = param_alloc(&n.table), *dxq = alloc_zeros(nx), *dxn = alloc_zeros(nx);
    vae_plan p = vae_plan_memory(&q, VAE_PASS_TRAIN, B, H, W), pn = vae_plan_memory(&n, VAE_PASS_TRAIN, B, H, W);
    CHECK(pn.saved + pn.scratch <= p.saved + p.scratch && pn.saved > 0, "plan without quant convs: %zu + %zu",
          pn.saved, pn.scratch);
    arena ar = arena_create(2 * (p.saved + p.scratch) + (1 << 16));
    vae_acts aq = {0}, an = {0};
    vae_forward(&q, qw, &aq, x, eps, NULL, B, H, W, &ar);
    vae_forward(&n, nw, &an, x, eps, NULL, B, H, W, &ar);
    check_close("mean", an.mean, aq.mean, nz, 1e-6, 1e-6);
    check_close("logvar", an.logvar, aq.logvar, nz, 1e-6, 1e-6);
    check_close("recon", an.recon, aq.recon, nx, 1e-6, 1e-6);
    vae_backward(&q, qw, &aq, d_recon, d_z, d_mean, d_lv, gq, dxq, &ar);
    vae_backward(&n, nw, &an, d_recon, d_z, d_mean, d_lv, gn, dxn, &ar);
    check_close("d_x", dxn, dxq, nx, 1e-5 * max_abs(dxq, nx), 1e-5);
    int ok = 1;
    for (int i = 0; i < n.table.n; i++) {
        const param_entry *e = &n.table.entries[i], *f = param_find(&q.table, e->name);
        double s = max_abs(gq + f->offset, f->numel);
        int bad = 0;
        for (size_t k = 0; k < e->numel; k++)
            /* absolute floor: attention k.bias gradients are zero in math, ~1e-7 in float32 */
            bad |= !(fabs((double)gn[e->offset + k] - gq[f->offset + k]) <= 1e-5 * s + 1e-6);
        if (bad)
            printf("  gradient of %s differs (max %g)\n", e->name, s);
        ok &= !bad;
    }
    CHECK(ok, "parameter gradients without quant convs should equal those with identity quant convs");
    arena_free(&ar);
    free(x), free(eps), free(d_recon), free(d_z), free(d_mean), free(d_lv), free(gq), free(gn), free(dxq), free(dxn);
    vae_free(&q);
    vae_free(&n);
    free(qw), free(nw);
}

static void test_init_from_file_takes_folders(void)
{
    vae a, b;
    float *aw = vae_from_file(&a, folder(2), "", PARAM_STRICT);
    float *bw = vae_diffusers_load(&b, folder(2));
    CHECK(same_params(&a, aw, &b, bw) && a.cfg.no_quant_conv, "vae_from_file(folder) should read the diffusers folder");
    vae_free(&a);
    vae_free(&b);
    free(aw), free(bw);
}

/* Only the fp16 variant in a folder: read and widened exactly. */
static void test_fp16_variant(void)
{
    const char *dir = tmp_path("fp16");
    char path[600], src[300];
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/" VAE_DIFFUSERS_CONFIG, folder(1));
    size_t n;
    char *cfg = read_file_all(src, &n);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, dir);
    FILE *fp = xfopen(path, "wb");
    xfwrite(cfg, 1, n, fp, path);
    xfclose(fp, path);
    free(cfg);
    snprintf(src, sizeof src, "%s/" VAE_DIFFUSERS_WEIGHTS, folder(1));
    safetensors *st = safetensors_open(src);
    st_writer *w = st_writer_new();
    uint16_t **h = xcalloc((size_t)st->n_tensors, sizeof *h);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        float *f = xmalloc((size_t)t->numel * sizeof(float));
        safetensors_read_f32(st, t, f);
        h[i] = xmalloc((size_t)t->numel * sizeof(uint16_t));
        for (int64_t k = 0; k < t->numel; k++)
            h[i][k] = f32_to_f16(f[k]);
        free(f);
        st_writer_add(w, t->name, ST_F16, t->ndim, t->shape, h[i]);
    }
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_WEIGHTS_FP16, dir);
    st_writer_save(w, path);
    st_writer_free(w);
    for (int i = 0; i < st->n_tensors; i++)
        free(h[i]);
    free(h);
    safetensors_close(st);
    vae a, b;
    float *aw = vae_diffusers_load(&a, folder(1));
    float *bw = vae_diffusers_load(&b, dir);
    int ok = a.table.total == b.table.total;
    for (size_t k = 0; ok && k < a.table.total; k++)
        ok = bw[k] == f16_to_f32(f32_to_f16(aw[k]));
    CHECK(ok, "the fp16 variant should load as the fp32 weights rounded to half");
    vae_free(&a);
    vae_free(&b);
    free(aw), free(bw);
}

/* ---- bad folders ---- */

static char *slurp(const char *path)
{
    size_t n;
    return read_file_all(path, &n);
}

/* Writes tmp/<name>/: config.json = the tiny fixture's with `from` replaced
 * by `to` (NULL: unchanged, or no config.json at all if to == ""), weights =
 * the fixture's minus `drop`, plus `add` (a copy of the first tensor, put
 * first), with `reshape` given 4 dims. */
static const char *bad_folder(const char *name, const char *from, const char *to, const char *drop, const char *add,
                              const char *reshape)
{
    const char *dir = tmp_path(name);
    char path[600], src[300];
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/" VAE_DIFFUSERS_CONFIG, folder(0));
    char *cfg = slurp(src);
    if (!(from && to && !*to)) {
        char *text = cfg;
        if (from) {
            char *p = strstr(cfg, from);
            CHECK(p != NULL, "'%s' not in the fixture config", from);
            if (!p)
                p = cfg;
            text = xmalloc(strlen(cfg) + strlen(to) + 1);
            sprintf(text, "%.*s%s%s", (int)(p - cfg), cfg, to, p + strlen(from));
        }
        snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, dir);
        FILE *fp = xfopen(path, "wb");
        xfwrite(text, 1, strlen(text), fp, path);
        xfclose(fp, path);
        if (text != cfg)
            free(text);
    }
    free(cfg);
    snprintf(src, sizeof src, "%s/" VAE_DIFFUSERS_WEIGHTS, folder(0));
    safetensors *st = safetensors_open(src);
    st_writer *w = st_writer_new();
    float **bufs = xcalloc((size_t)st->n_tensors, sizeof *bufs);
    for (int i = 0; i < st->n_tensors; i++) {
        bufs[i] = xmalloc((size_t)st->tensors[i].numel * sizeof(float));
        safetensors_read_f32(st, &st->tensors[i], bufs[i]);
    }
    if (add) /* first in the file: every tensor must be looked at, the first too */
        st_writer_add_f32(w, add, st->tensors[0].ndim, st->tensors[0].shape, bufs[0]);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (drop && !strcmp(t->name, drop))
            continue;
        if (reshape && !strcmp(t->name, reshape))
            st_writer_add_f32(w, t->name, 4, (int64_t[]){t->shape[0], t->shape[1], 1, 1}, bufs[i]);
        else
            st_writer_add_f32(w, t->name, t->ndim, t->shape, bufs[i]);
    }
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_WEIGHTS, dir);
    st_writer_save(w, path);
    st_writer_free(w);
    if (add) {
        safetensors *check = safetensors_open(path);
        CHECK(!strcmp(check->tensors[0].name, add), "'%s' first in the file (found '%s')", add,
              check->tensors[0].name);
        safetensors_close(check);
    }
    for (int i = 0; i < st->n_tensors; i++)
        free(bufs[i]);
    free(bufs);
    safetensors_close(st);
    return dir;
}

static void load_child(void *ctx)
{
    vae m;
    (void)vae_diffusers_load(&m, ctx);
}

static void expect_load_dies(const char *what, const char *dir, const char *msg)
{
    char d[600];
    snprintf(d, sizeof d, "%s", dir);
    expect_die(what, load_child, d, msg);
}

static void test_bad_folders(void)
{
    const char *d = bad_folder("noconfig", "", "", NULL, NULL, NULL);
    CHECK(!vae_diffusers_is_folder(d), "a folder without config.json is not a diffusers folder");
    expect_load_dies("no config.json", d, "no config.json");
    d = bad_folder("missing", NULL, NULL, "decoder.up_blocks.0.upsamplers.0.conv.bias", NULL, NULL);
    expect_load_dies("missing tensor", d, "missing tensor 'decoder.up_blocks.0.upsamplers.0.conv.bias' (our "
                                          "decoder.up.1.upsample.conv.bias)");
    d = bad_folder("extra", NULL, NULL, NULL, "decoder.up_blocks.0.resnets.7.conv1.weight", NULL);
    expect_load_dies("extra tensor", d, "unexpected tensor 'decoder.up_blocks.0.resnets.7.conv1.weight'");
    d = bad_folder("shape", NULL, NULL, NULL, NULL, "encoder.mid_block.attentions.0.to_q.weight");
    expect_load_dies("conv-shaped attention weight", d,
                     "'encoder.mid_block.attentions.0.to_q.weight' (our encoder.mid.attn_1.q.weight) has shape "
                     "[16, 16, 1, 1]; config.json needs [16, 16]");
    d = bad_folder("noquant", "\"use_quant_conv\": true", "\"use_quant_conv\": false", NULL, NULL, NULL);
    expect_load_dies("quant_conv against use_quant_conv false", d, "unexpected tensor 'quant_conv.");
    d = bad_folder("mixed", NULL, NULL, NULL, "decoder.mid_block.attentions.0.query.weight", NULL);
    expect_load_dies("mixed attention names", d, "mixes diffusers' attention names");

    static const struct {
        const char *from, *to, *msg;
    } J[] = {
        {"\"silu\"", "\"gelu\"", "field \"act_fn\" is \"gelu\""},
        {"\"DownEncoderBlock2D\",\n    \"DownEncoderBlock2D\"", "\"DownEncoderBlock2D\", \"CrossAttnDownBlock2D\"",
         "field \"down_block_types\"[1] is \"CrossAttnDownBlock2D\""},
        {"\"layers_per_block\": 1", "\"layers_per_block\": \"1\"", "field \"layers_per_block\" must be an integer"},
        {"\"layers_per_block\": 1", "\"layers_per_block\": 1.5", "field \"layers_per_block\" must be an integer"},
        {"\"_class_name\": \"AutoencoderKL\"", "\"_class_name\": \"AutoencoderTiny\"", "field \"_class_name\""},
        {"\"scaling_factor\": 0.18215", "\"scaling_factor\": -1", "field \"scaling_factor\" = -1 must be positive"},
        {"\"latents_mean\": null", "\"latents_mean\": [1, 2]", "field \"latents_mean\" must be null or a list of"},
        {"\"latents_std\": null", "\"latents_std\": [1, 2, 3, 4]", "field \"latents_std\" is given without"},
        {"\"mid_block_add_attention\": true", "\"mid_block_add_attention\": false", "\"mid_block_add_attention\""},
        {"\"use_quant_conv\": true", "\"use_quant_conv\": 1", "field \"use_quant_conv\" must be true or false"},
        {"    16\n  ]", "    12\n  ]", "\"block_out_channels\"[1] = 12 is not a multiple"},
        {"\"norm_num_groups\": 4", "\"norm_num_groups\": 16", "not divisible by norm_num_groups = 16"},
        {"\"UpDecoderBlock2D\",\n    \"UpDecoderBlock2D\"", "\"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\"",
         "attention at the same levels"},
        {"\"up_block_types\": [", "\"up_block_types\": [\"UpDecoderBlock2D\",", "must have the same length"},
        {"{", "[", "not a JSON object"},
        {"    16\n  ]", "    65536\n  ]", "describes an AutoencoderKL of"},
        {"\"layers_per_block\": 1", "\"layers_per_block\": 64", "missing tensor 'encoder.down_blocks.0.resnets.1.norm1.weight'"},
        {"\"act_fn\"", "\"act_fn\" \"", "not a JSON object"},
        {"\"out_channels\": 3", "\"out_channels\": 4",
         "tensor 'decoder.conv_out.weight' (our decoder.conv_out.weight) has shape [3, 8, 3, 3]; config.json needs "
         "[4, 8, 3, 3]"},
        {"\"scaling_factor\": 0.18215", "\"scaling_factor\": \"0.5\"",
         "field \"scaling_factor\" must be a finite number (it is a string)"},
        {"\"shift_factor\": null", "\"shift_factor\": \"0\"",
         "field \"shift_factor\" must be a finite number or null (it is a string)"},
        {"\"latents_mean\": null", "\"latents_mean\": [1, 2, 4e38, 3]",
         "field \"latents_mean\"[2] must be a finite number"},
        {"\"latents_mean\": null", "\"latents_mean\": [1, 2, 3, \"4\"]",
         "field \"latents_mean\"[3] must be a finite number"},
        {"\"latents_std\": null", "\"latents_std\": [1, 0, 3, 4]",
         "field \"latents_std\"[1] must be a finite positive"},
        {"\"latents_std\": null", "\"latents_std\": [1, -1, 3, 4]",
         "field \"latents_std\"[1] must be a finite positive"},
        {"\"down_block_types\": [", "\"down_block_types\": [], \"x\": [",
         "field \"down_block_types\" must be a list of 1 to 8 block type names (it is a list)"},
        {"\"down_block_types\": [", "\"down_block_types\": \"DownEncoderBlock2D\", \"x\": [",
         "field \"down_block_types\" must be a list of 1 to 8 block type names (it is a string)"},
        {"\"down_block_types\": [", "\"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"x\": [",
         "field \"down_block_types\" must be a list of 1 to 8 block type names"},
        {"\"down_block_types\": [", "\"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"x\": [",
         "must have the same length"}, /* 8 types are a list the parser takes */
    };
    for (size_t i = 0; i < sizeof J / sizeof J[0]; i++) {
        char name[32], what[128];
        snprintf(name, sizeof name, "json%zu", i);
        snprintf(what, sizeof what, "config.json: %s", J[i].msg);
        d = bad_folder(name, J[i].from, J[i].to, NULL, NULL, NULL);
        expect_load_dies(what, d, J[i].msg);
    }
}

/* ---- the CLI ---- */

static int have_repae(char *bin, size_t size)
{
    const char *b = getenv("BUILD");
    snprintf(bin, size, "%s/repae", b && *b ? b : "build");
    if (access(bin, X_OK) != 0) {
        CHECK(0, "%s not found: run the tests from the repository root after `make %s`", bin, bin);
        return 0;
    }
    return 1;
}

/* A VAE of more than 2^20 parameters (the size guard's slack) round-trips:
 * the guard counts every tensor of the file. */
static void test_export_roundtrip_large(void)
{
    vae_config c = tiny_vae_config();
    c.ch = 64;
    vae a, b;
    vae_build(&a, &c);
    CHECK(vae_param_count(&a) > (1u << 21), "%zu parameters: more than 2^21 wanted", vae_param_count(&a));
    float *aw = param_alloc(&a.table);
    vae_init_weights(&a, aw, 5);
    const char *out = tmp_path("large");
    vae_diffusers_save(&a, aw, out, NULL, NULL);
    float *bw = vae_diffusers_load(&b, out);
    CHECK(same_params(&a, aw, &b, bw), "a VAE of %zu parameters: export -> load changed them", vae_param_count(&a));
    /* Its config.json widened to 65536 channels at level 1: refused before
     * the (terabyte) buffer is allocated, whatever the file's size. */
    char path[600];
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, out);
    char *text = slurp(path), *p = strstr(text, "\"block_out_channels\"");
    p = p ? strstr(p, "128") : NULL;
    CHECK(p != NULL, "block_out_channels 128 in %s", path);
    if (p) {
        FILE *fp = xfopen(path, "wb");
        fprintf(fp, "%.*s65536%s", (int)(p - text), text, p + 3);
        xfclose(fp, path);
        expect_load_dies("a 2M-parameter file under a config of 65536 channels", out,
                         "config.json describes an AutoencoderKL of");
    }
    free(text);
    vae_free(&a), vae_free(&b);
    free(aw), free(bw);
}

/* ---- config.json alone (vae_diffusers_read_config, latents statistics) ---- */

/* A folder holding only config.json with this text (n bytes; -1: strlen). */
static const char *config_folder(const char *name, const char *text, long n)
{
    const char *dir = tmp_path(name);
    char path[600];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, dir);
    FILE *fp = xfopen(path, "wb");
    xfwrite(text, 1, n < 0 ? strlen(text) : (size_t)n, fp, path);
    xfclose(fp, path);
    return dir;
}

static void read_config_child(void *ctx)
{
    vae_config c;
    vae_diffusers_read_config(ctx, &c);
}

static void latents_stats_child(void *ctx)
{
    float bias[4], scale[4];
    vae_diffusers_latents_stats(ctx, 4, bias, scale, NULL);
}

#define LEVELS8 "[\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", " \
                "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\""
#define UP8 "[\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", " \
            "\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\""

/* diffusers' defaults for absent fields; attention placed by level as
 * vae_config_detect places it; the fields' edges; each refusal in words
 * that name the field; unknown fields are named in one warning each. */
static void test_config_json_alone(void)
{
    vae_config c;
    const char *d = config_folder("defaults", "{}", -1);
    vae_diffusers_read_config(d, &c);
    CHECK(c.in_channels == 3 && c.out_ch == 3 && c.num_res_blocks == 1 && c.z_channels == 4 && c.norm_groups == 32 &&
              c.n_levels == 1 && c.ch == 64 && c.ch_mult[0] == 1 && c.n_attn == 1 && c.attn_resolutions[0] == 128 &&
              c.resolution == 256 && c.double_z == 1 && !c.no_quant_conv && !c.no_post_quant_conv,
          "{}: diffusers' defaults (in %d, out %d, %d blocks, z %d, %d groups, %d levels of %d, attention at %d)",
          c.in_channels, c.out_ch, c.num_res_blocks, c.z_channels, c.norm_groups, c.n_levels, c.ch,
          c.attn_resolutions[0]);
    float bias[4], scale[4];
    const char *from = NULL;
    vae_diffusers_latents_stats(d, 4, bias, scale, &from);
    CHECK(bias[0] == 0.0f && bias[3] == 0.0f && scale[0] == 0.18215f && scale[3] == 0.18215f &&
              strstr(from, "scaling_factor / shift_factor"),
          "{}: SD's scaling 0.18215, no shift (%g, %g, %s)", bias[0], scale[0], from);

    d = config_folder("attn", "{\"block_out_channels\": [8, 16, 16], \"norm_num_groups\": 8, \"down_block_types\": "
                              "[\"AttnDownEncoderBlock2D\", \"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"], "
                              "\"up_block_types\": [\"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\", "
                              "\"AttnUpDecoderBlock2D\"], \"_name_or_path\": \"x\", \"shift_factor\": 0.5, "
                              "\"scaling_factor\": 2.0}",
                      -1);
    vae_diffusers_read_config(d, &c);
    CHECK(c.n_levels == 3 && c.ch == 8 && c.ch_mult[1] == 2 && c.ch_mult[2] == 2 && c.n_attn == 2 &&
              c.attn_resolutions[0] == 256 && c.attn_resolutions[1] == 64,
          "attention at levels 0 and 2: %d levels, %d resolutions (%d, %d)", c.n_levels, c.n_attn,
          c.attn_resolutions[0], c.attn_resolutions[1]);
    vae_diffusers_latents_stats(d, 4, bias, scale, NULL);
    CHECK(bias[2] == 0.5f && scale[2] == 2.0f, "shift 0.5 and scaling 2: %g, %g", bias[2], scale[2]);

    d = config_folder("one", "{\"block_out_channels\": [32], \"down_block_types\": [\"DownEncoderBlock2D\"], "
                             "\"up_block_types\": [\"UpDecoderBlock2D\"]}",
                      -1);
    vae_diffusers_read_config(d, &c);
    CHECK(c.n_levels == 1 && c.ch == 32, "one level named: %d levels", c.n_levels);
    char eight[1024];
    snprintf(eight, sizeof eight,
             "{\"block_out_channels\": [32, 32, 32, 32, 32, 32, 32, 32], \"down_block_types\": %s], "
             "\"up_block_types\": %s]}",
             LEVELS8, UP8);
    vae_diffusers_read_config(config_folder("eight", eight, -1), &c);
    CHECK(c.n_levels == 8 && c.ch == 32 && c.ch_mult[7] == 1, "eight levels: %d", c.n_levels);

    /* config.json may be 1 MiB, not a byte more. */
    const size_t MiB = 1u << 20;
    char *big = xmalloc(MiB + 2);
    memset(big, ' ', MiB + 1);
    memcpy(big, "{}", 2);
    vae_diffusers_read_config(config_folder("mib", big, (long)MiB), &c);
    CHECK(c.ch == 64, "a config.json of exactly 1 MiB");
    expect_die("config.json of 1 MiB + 1", read_config_child, (void *)config_folder("mib1", big, (long)MiB + 1),
               "config.json': not a regular file of at most 1048576 bytes");
    free(big);

    char err[4096];
    d = config_folder("unknown", "{\"in_channels\": 3, \"_diffusers_version\": \"0.31.0\", \"_x\": 1, \"sample_size\": [256, 256], "
                                 "\"tile_size\": 3, \"force_upcast\": false}",
                      -1);
    int status = run_in_child(read_config_child, (void *)d, err, sizeof err);
    CHECK(status == 0 && count_of(err, "repae: warning:") == 1 &&
              strstr(err, "ignoring field \"tile_size\" (not an AutoencoderKL option)"),
          "one warning, for tile_size only (status %d): %s", status, err);

    static const struct {
        const char *text;
        long n;
        const char *msg;
    } bad[] = {
        {"{\"in_channels\": 3}\0 ", 20, "config.json': contains a NUL byte"},
        {"[1, 2]", -1, "config.json': not a JSON object"},
        {"\"AutoencoderKL\"", -1, "config.json': not a JSON object"},
        {"{\"block_out_channels\": []}", -1, "field \"block_out_channels\" must be a list of 1 to 8 widths"},
        {"{\"block_out_channels\": {\"a\": 8}}", -1, "field \"block_out_channels\" must be a list of 1 to 8 widths"},
        {"{\"block_out_channels\": [8, 8, 8, 8, 8, 8, 8, 8, 8]}", -1,
         "field \"block_out_channels\" must be a list of 1 to 8 widths"},
        {"{\"block_out_channels\": [0]}", -1, "field \"block_out_channels\"[0] must be an integer in [1, 65536]"},
        {"{\"block_out_channels\": [64, 65600]}", -1, "field \"block_out_channels\"[1] must be an integer"},
        {"{\"block_out_channels\": [64, \"128\"]}", -1, "field \"block_out_channels\"[1] must be an integer"},
        {"{\"scaling_factor\": 0}", -1, "field \"scaling_factor\" = 0 must be positive"},
        {"{\"scaling_factor\": null}", -1, "field \"scaling_factor\" must be a finite number (it is null)"},
        {"{\"latents_mean\": [0, 0, 0, 0]}", -1, "field \"latents_mean\" is given without \"latents_std\""},
        {"{\"in_channels\": 65}", -1, "field \"in_channels\" must be an integer in [1, 64] (it is a number out of"},
        {"{\"latent_channels\": 0}", -1, "field \"latent_channels\" must be an integer in [1, 4096]"},
        {"{\"norm_num_groups\": 4097}", -1, "field \"norm_num_groups\" must be an integer in [1, 4096]"},
        {"{\"layers_per_block\": true}", -1, "field \"layers_per_block\" must be an integer in [1, 64] (it is a bool"},
        {"{\"use_post_quant_conv\": \"no\"}", -1, "field \"use_post_quant_conv\" must be true or false"},
        {"{\"force_upcast\": 1}", -1, "field \"force_upcast\" must be true or false"},
        {"{\"act_fn\": 1}", -1, "field \"act_fn\" is a number; the AutoencoderKL here uses \"silu\""},
        {"{\"sample_size\": \"256\"}", -1, "field \"sample_size\" must be a number or a list (it is a string)"},
        {"{\"_class_name\": 5}", -1, "field \"_class_name\" is a number; only \"AutoencoderKL\""},
        {"{\"block_out_channels\": [8, 16], \"norm_num_groups\": 8, \"down_block_types\": [\"AttnDownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\"], \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}",
         -1,
         "field \"up_block_types\"[1] has no attention but \"down_block_types\"[0] has: repae's AutoencoderKL has "
         "attention at the same levels"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        expect_die(bad[i].msg, read_config_child, (void *)config_folder(name, bad[i].text, bad[i].n), bad[i].msg);
    }
    expect_die("latents statistics of 4 channels from a VAE of 16", latents_stats_child,
               (void *)config_folder("z16", "{\"latent_channels\": 16}", -1), "latent_channels is 16, wanted 4");
}
#undef LEVELS8
#undef UP8

/* config.json as we write it is the one diffusers wrote for the same VAE:
 * the same keys in the same (sorted) order and the same values. */
static void test_export_config_is_diffusers(void)
{
    for (int i = 0; i < N_CASES; i++) {
        vae a;
        float *aw = vae_diffusers_load(&a, folder(i));
        const char *out = tmp_path(CASES[i].name);
        vae_diffusers_save(&a, aw, out, NULL, NULL);
        char ours[600], theirs[600];
        snprintf(ours, sizeof ours, "%s/" VAE_DIFFUSERS_CONFIG, out);
        snprintf(theirs, sizeof theirs, "%s/" VAE_DIFFUSERS_CONFIG, folder(i));
        cJSON *jo = read_json(ours), *jt = read_json(theirs);
        int same = cJSON_GetArraySize(jo) == cJSON_GetArraySize(jt);
        const cJSON *eo = jo ? jo->child : NULL, *et = jt ? jt->child : NULL;
        /* sample_size is informational (ours: the nominal resolution); the
         * statistics' fields follow the statistics, here only the fixture's. */
        const int stats = !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(jt, "latents_mean")) ||
                          !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(jt, "shift_factor"));
        for (; same && eo && et; eo = eo->next, et = et->next) {
            if (!strcmp(eo->string, et->string) &&
                (!strcmp(eo->string, "sample_size") ||
                 (stats && (strstr(eo->string, "latents_") || strstr(eo->string, "_factor")))))
                continue;
            if (strcmp(eo->string, et->string) || !cJSON_Compare(eo, et, 1)) {
                char *po = cJSON_PrintUnformatted(eo), *pt = cJSON_PrintUnformatted(et);
                CHECK(0, "%s: our \"%s\": %s, diffusers' \"%s\": %s", CASES[i].name, eo->string, po, et->string, pt);
                free(po), free(pt);
                same = 0;
            }
        }
        CHECK(same, "%s: config.json as diffusers writes it (%d keys, theirs %d)", CASES[i].name,
              cJSON_GetArraySize(jo), cJSON_GetArraySize(jt));
        cJSON_Delete(jo), cJSON_Delete(jt);
        vae_free(&a);
        free(aw);
    }
}

/* Exports the tiny VAE (zero weights) to dir. */
static void save_tiny(const char *dir, const float *bias, const float *scale)
{
    vae_config c = tiny_vae_config();
    vae m;
    vae_build(&m, &c);
    float *w = param_alloc(&m.table);
    vae_diffusers_save(&m, w, dir, bias, scale);
    vae_free(&m);
    free(w);
}

static void save_child(void *ctx) { save_tiny(ctx, NULL, NULL); }

/* Statistics from each source, exactly as documented; each bad one refused
 * naming the file and the channel; an export without statistics removes an
 * old sidecar; the folder cannot be made where a file is. */
static void test_latents_stats_sources(void)
{
    float bias[4], scale[4];
    const char *from;
    const char *d = config_folder("pair", "{\"latents_mean\": [0.5, -1, 2, 0.25], \"latents_std\": [2, 4, 0.5, 8], "
                                          "\"scaling_factor\": 1.5, \"shift_factor\": 7}",
                                  -1);
    vae_diffusers_latents_stats(d, 4, bias, scale, &from);
    CHECK(bias[0] == 0.5f && bias[1] == -1.0f && bias[3] == 0.25f && scale[0] == 0.75f && scale[1] == 0.375f &&
              scale[2] == 3.0f && scale[3] == 0.1875f &&
              !strcmp(from, "config.json latents_mean / latents_std with scaling_factor"),
          "latents_mean / latents_std: bias = mean, scale = scaling / std (%g %g, %s)", bias[1], scale[1], from);
    d = config_folder("scalars", "{\"scaling_factor\": 1.5, \"shift_factor\": -0.125}", -1);
    vae_diffusers_latents_stats(d, 4, bias, scale, &from);
    CHECK(bias[0] == -0.125f && bias[3] == -0.125f && scale[0] == 1.5f && scale[3] == 1.5f &&
              !strcmp(from, "config.json scaling_factor / shift_factor"),
          "scalars: %g %g, %s", bias[3], scale[3], from);

    static const struct {
        const char *config, *msg;
    } bad_config[] = {
        {"{\"latents_mean\": [0, 0, 0, 0], \"latents_std\": [1, 1e-30, 1, 1], \"scaling_factor\": 1e30}",
         "config.json: channel 1: scale inf"},
        {"{\"scaling_factor\": 1e39}", "config.json: channel 0: scale inf"},
    };
    for (size_t i = 0; i < sizeof bad_config / sizeof *bad_config; i++) {
        char name[32];
        snprintf(name, sizeof name, "badstats%zu", i);
        expect_die(bad_config[i].msg, latents_stats_child, (void *)config_folder(name, bad_config[i].config, -1),
                   bad_config[i].msg);
    }

    /* The sidecar: each bad channel named (the first channel too), missing
     * or short tensors refused. */
    const struct {
        const char *what;
        float scale0, scale1, bias1;
        int drop_bias, short_scale;
        const char *msg;
    } sidecar[] = {
        {"scale 0 in channel 0", 0.0f, 1.0f, 0.0f, 0, 0, ": channel 0: scale 0, bias"},
        {"scale -1 in channel 1", 1.0f, -1.0f, 0.0f, 0, 0, ": channel 1: scale -1, bias"},
        {"scale NaN in channel 1", 1.0f, NAN, 0.0f, 0, 0, ": channel 1: scale nan"},
        {"bias inf in channel 1", 1.0f, 1.0f, INFINITY, 0, 0, ": channel 1: scale 1, bias inf"},
        {"no latents_bias", 1.0f, 1.0f, 0.0f, 1, 0, "no tensor 'latents_bias' (want 4 values, shape [1, 4, 1, 1])"},
        {"3 scales", 1.0f, 1.0f, 0.0f, 0, 1, "wrong size of 'latents_scale' (want 4 values"},
    };
    for (size_t i = 0; i < sizeof sidecar / sizeof *sidecar; i++) {
        char name[32], path[600];
        snprintf(name, sizeof name, "sidecar%zu", i);
        d = config_folder(name, "{}", -1);
        float s[4] = {sidecar[i].scale0, sidecar[i].scale1, 1, 1}, b[4] = {0, sidecar[i].bias1, 0, 0};
        st_writer *w = st_writer_new();
        st_writer_add_f32(w, "latents_scale", 4, (int64_t[]){1, sidecar[i].short_scale ? 3 : 4, 1, 1}, s);
        if (!sidecar[i].drop_bias)
            st_writer_add_f32(w, "latents_bias", 4, (int64_t[]){1, 4, 1, 1}, b);
        snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, d);
        st_writer_save(w, path);
        st_writer_free(w);
        expect_die(sidecar[i].what, latents_stats_child, (void *)d, sidecar[i].msg);
    }

    /* Exporting without statistics removes the sidecar of an earlier export. */
    const char *out = tmp_path("resaved");
    float b3[3] = {0.5f, 0, 0}, s3[3] = {2, 2, 2};
    save_tiny(out, b3, s3);
    char path[600];
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, out);
    CHECK(access(path, F_OK) == 0, "the sidecar is written with statistics");
    save_tiny(out, NULL, NULL);
    CHECK(access(path, F_OK) != 0, "an export without statistics removes the old sidecar");
    float rb[3], rs[3];
    vae_diffusers_latents_stats(out, 3, rb, rs, &from);
    CHECK(rb[0] == 0.0f && rs[0] == 0.18215f && strstr(from, "scaling_factor / shift_factor"),
          "after it, SD's scalars again (%g, %g, %s)", rb[0], rs[0], from);

    const char *file = test_write_tmp("a_file", "x", 1);
    expect_die("an export over a file", save_child, (void *)file, "exists and is not a directory");
    expect_die("an export under a missing folder", save_child, (void *)tmp_path("absent/dir"),
               "cannot create directory '");
}

static void save_bad_stats_child(void *ctx)
{
    const float bias[3] = {0, 0, 0}, scale[3] = {1, 0, 1};
    save_tiny(ctx, bias, scale);
}

/* A folder at path with something in it: unlink() cannot remove it. */
static void make_busy_dir(const char *path)
{
    char sub[700];
    mkdir(path, 0755);
    snprintf(sub, sizeof sub, "%s/x", path);
    mkdir(sub, 0755);
}

/* What an export writes besides the tensors (the files' format tags,
 * config.json's closing newline), and how it fails: bad statistics before
 * anything is written, an old config.json removed before the weights are
 * (a folder with config.json is complete), paths it cannot replace named. */
static void test_export_files_and_failures(void)
{
    vae_config c = tiny_vae_config();
    vae m;
    vae_build(&m, &c);
    float *w = param_alloc(&m.table);
    const char *out = tmp_path("tags");
    const float bias[3] = {0.5f, 0, 0}, scale[3] = {2, 2, 2};
    vae_diffusers_save(&m, w, out, bias, scale);
    char path[600];
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_WEIGHTS, out);
    safetensors *st = safetensors_open(path);
    const char *f = safetensors_meta(st, "format");
    CHECK(f && !strcmp(f, "pt"), "the weights' format tag is save_pretrained's \"pt\" (%s)", f ? f : "none");
    safetensors_close(st);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, out);
    st = safetensors_open(path);
    f = safetensors_meta(st, "format");
    CHECK(f && !strcmp(f, "repae-latents-stats"), "the sidecar's format tag (%s)", f ? f : "none");
    safetensors_close(st);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, out);
    char *text = slurp(path);
    size_t n = strlen(text);
    CHECK(n > 2 && text[n - 2] == '}' && text[n - 1] == '\n', "config.json ends with \"}\\n\"");
    free(text);

    expect_die("statistics with a zero scale", save_bad_stats_child, (void *)tmp_path("badstats_out"),
               "vae_diffusers_save: channel 1: scale 0");
    CHECK(access(tmp_path("badstats_out"), F_OK) != 0, "bad statistics: nothing written");

    /* The weights cannot be written (a folder in their place): the old config.json is already gone. */
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_WEIGHTS, out);
    unlink(path);
    make_busy_dir(path);
    expect_die("weights over a folder", save_child, (void *)out, VAE_DIFFUSERS_WEIGHTS);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, out);
    CHECK(access(path, F_OK) != 0, "a failed export leaves no config.json (the folder is not taken for complete)");
    CHECK(!vae_diffusers_is_folder(out), "a failed export is not a diffusers folder");

    /* config.json or the old sidecar a folder that cannot be removed: named. */
    const char *d = tmp_path("cfg_is_dir");
    mkdir(d, 0755);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, d);
    make_busy_dir(path);
    expect_die("config.json a folder", save_child, (void *)d, "config.json': ");
    d = tmp_path("stats_is_dir");
    mkdir(d, 0755);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_STATS, d);
    make_busy_dir(path);
    expect_die("the old sidecar a folder", save_child, (void *)d, "cannot remove the old '");
    vae_free(&m);
    free(w);
}

/* A path padded with "/." up to exactly `len` characters that names `dir`
 * (a doubled "/" after dir makes up an odd count; it never ends in '/'). */
static char *padded_path(const char *dir, size_t len)
{
    size_t n = strlen(dir);
    char *p = xmalloc(len + 1);
    memcpy(p, dir, n);
    if ((len - n) % 2)
        p[n++] = '/';
    while (n + 2 <= len) {
        memcpy(p + n, "/.", 2);
        n += 2;
    }
    p[n] = '\0';
    return p;
}

/* The folder's files are found whether or not its path ends in '/', and
 * named without a doubled '/'; the longest paths: is_folder's limit to the
 * character (a longer path is not a folder, never a cut one), loading
 * refuses a path it cannot join. */
static void test_folder_paths(void)
{
    const char *d = tmp_path("cfgdir");
    char path[600], slash[600];
    mkdir(d, 0755);
    snprintf(path, sizeof path, "%s/" VAE_DIFFUSERS_CONFIG, d);
    mkdir(path, 0755); /* config.json a folder: the message names the joined path */
    char want[700];
    snprintf(want, sizeof want, "'%s': not a regular file", path);
    expect_load_dies("config.json a folder", d, want);
    snprintf(slash, sizeof slash, "%s/", d);
    expect_load_dies("config.json a folder, the path ending in '/'", slash, want);

    const char *good = folder(0);
    char real[4096];
    CHECK(realpath(good, real) != NULL, "realpath %s", good);
    /* strlen + the "/config.json" + 2 must fit 4096: 4082 characters pass, 4083 do not. */
    /* (the messages quote the path: more than expect_die keeps) */
    static char err_long[8192];
    char *at = padded_path(real, 4082), *over = padded_path(real, 4083);
    CHECK(vae_diffusers_is_folder(at) == 1, "a folder path of 4082 characters");
    CHECK(vae_diffusers_is_folder(over) == 0, "a folder path of 4083 characters is over the limit");
    free(at), free(over);
    /* Joined with "/config.json" (12 characters), 4083 fill 4095 bytes and read; 4084 need 4097. */
    char *fits = padded_path(real, 4083), *over_by_one = padded_path(real, 4084);
    vae_config c;
    vae_diffusers_read_config(fits, &c);
    CHECK(c.z_channels == 4, "the config read through a path of 4083 characters");
    int st = run_in_child(read_config_child, over_by_one, err_long, sizeof err_long);
    CHECK(st == 1 && strstr(err_long, "': path too long"), "a folder path of 4084 characters: status %d", st);
    free(fits), free(over_by_one);
    char *long_path = padded_path(real, 4090);
    int status = run_in_child(load_child, long_path, err_long, sizeof err_long);
    CHECK(status == 1 && strstr(err_long, long_path) && strstr(err_long, "': path too long"),
          "a folder path of 4090 characters: status %d, %.80s", status,
          err_long + (strlen(err_long) > 80 ? strlen(err_long) - 80 : 0));
    free(long_path);
}

static void test_cli_export_then_reconstruct(void)
{
    char bin[256], cmd[4096], out[16384], err[8192];
    if (!have_repae(bin, sizeof bin))
        return;
    const char *omp = getenv("OMP_NUM_THREADS") ? "" : "OMP_NUM_THREADS=1 ";
    /* A 1-channel CompVis VAE file (Fashion-MNIST) and its statistics. */
    vae m;
    float *mw = vae_diffusers_load(&m, folder(1));
    vae_save_file(&m, mw, tmp_path("cv.safetensors"), "");
    float bias[8], scale[8];
    for (int c = 0; c < 8; c++)
        bias[c] = 0.1f * c - 0.3f, scale[c] = 0.5f + 0.25f * c;
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "latents_scale", 4, (int64_t[]){1, 8, 1, 1}, scale);
    st_writer_add_f32(w, "latents_bias", 4, (int64_t[]){1, 8, 1, 1}, bias);
    st_writer_save(w, tmp_path("cv-latents-stats.safetensors"));
    st_writer_free(w);

    snprintf(cmd, sizeof cmd, "%s'%s' export-vae --vae-ckpt '%s' --latents-stats '%s' --format diffusers --output '%s'",
             omp, bin, tmp_path("cv.safetensors"), tmp_path("cv-latents-stats.safetensors"), tmp_path("cli_dir"));
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "diffusers AutoencoderKL folder"), "`%s` exited %d:\n%s%s", cmd, rc, out, err);
    vae b;
    float *bw = vae_diffusers_load(&b, tmp_path("cli_dir"));
    CHECK(same_params(&m, mw, &b, bw), "the CLI's folder should hold the VAE bit for bit");
    float rb[8], rs[8];
    vae_diffusers_latents_stats(tmp_path("cli_dir"), 8, rb, rs, NULL);
    CHECK(!memcmp(rb, bias, sizeof bias) && !memcmp(rs, scale, sizeof scale), "the CLI's folder statistics");
    vae_free(&b);
    free(bw);

    /* reconstruct on the folder = reconstruct on the CompVis file. */
    char json_a[700], json_b[700];
    snprintf(json_a, sizeof json_a, "%s", tmp_path("a.json"));
    snprintf(json_b, sizeof json_b, "%s", tmp_path("b.json"));
    const char *srcs[2] = {tmp_path("cv.safetensors"), tmp_path("cli_dir")};
    const char *jsons[2] = {json_a, json_b};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s'%s' reconstruct --vae-ckpt '%s' --max-images 8 --batch-size 4 --json '%s'", omp,
                 bin, srcs[k], jsons[k]);
        rc = run_command(cmd, out, sizeof out, err, sizeof err);
        CHECK(rc == 0, "`%s` exited %d:\n%s", cmd, rc, err);
    }
    cJSON *ja = read_json(json_a), *jb = read_json(json_b);
    const char *keys[] = {"psnr", "ssim"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(ja, keys[k]), *c = cJSON_GetObjectItemCaseSensitive(jb, keys[k]);
        CHECK(cJSON_IsNumber(a) && cJSON_IsNumber(c) && a->valuedouble == c->valuedouble,
              "reconstruct %s: CompVis file %g, diffusers folder %g", keys[k], cJSON_IsNumber(a) ? a->valuedouble : -1,
              cJSON_IsNumber(c) ? c->valuedouble : -1);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);

    /* cache-latents on the folder = on the CompVis file (same posterior tensors). */
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s'%s' cache-latents --vae-ckpt '%s' --output '%s' --max-images 8 --batch-size 4",
                 omp, bin, srcs[k], tmp_path(k ? "lat_b.safetensors" : "lat_a.safetensors"));
        rc = run_command(cmd, out, sizeof out, err, sizeof err);
        CHECK(rc == 0, "`%s` exited %d:\n%s", cmd, rc, err);
    }
    if (rc == 0) {
        safetensors *la = safetensors_open(tmp_path("lat_a.safetensors")),
                    *lb = safetensors_open(tmp_path("lat_b.safetensors"));
        int same = la->n_tensors == lb->n_tensors && la->n_tensors > 0;
        for (int t = 0; same && t < la->n_tensors; t++) {
            const st_tensor *u = safetensors_find(lb, la->tensors[t].name);
            same = u && u->end - u->begin == la->tensors[t].end - la->tensors[t].begin &&
                   !memcmp(la->data + la->tensors[t].begin, lb->data + u->begin, u->end - u->begin);
        }
        CHECK(same, "cache-latents: the folder's latent cache should equal the CompVis file's tensor for tensor");
        safetensors_close(la);
        safetensors_close(lb);
    }

    /* Back to CompVis from the folder (statistics from the folder). */
    snprintf(cmd, sizeof cmd, "%s'%s' export-vae --vae-ckpt '%s' --output '%s'", omp, bin, tmp_path("cli_dir"),
             tmp_path("back"));
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "`%s` exited %d:\n%s", cmd, rc, err);
    bw = vae_from_file(&b, tmp_path("back.safetensors"), "", PARAM_STRICT);
    CHECK(same_params(&m, mw, &b, bw), "folder -> CompVis file changed the VAE");
    vae_free(&b);
    free(bw);
    safetensors *st = safetensors_open(tmp_path("back-latents-stats.safetensors"));
    safetensors_load_f32(st, "latents_scale", 4, (int64_t[]){1, 8, 1, 1}, rs);
    CHECK(!memcmp(rs, scale, sizeof scale), "folder -> CompVis statistics");
    safetensors_close(st);

    /* sample: a SiT weights file + the folder as --vae-ckpt; the latent
     * statistics then come from the folder (its sidecar). */
    sit_config sc = sit_config_default();
    sc.depth = 1, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 8, sc.input_size = 4;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.n_encoders = 0;
    sit s;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_init_weights(&s, sp, 5);
    sit_save_file(&s, sp, tmp_path("sit.safetensors"));
    free(sp);
    sit_free(&s);
    snprintf(cmd, sizeof cmd,
             "%s'%s' sample --ckpt '%s' --vae-ckpt '%s' --heads 2 --num-samples 2 --num-steps 2 --cfg-scale 1 "
             "--mode ode --sample-dir '%s' --no-png",
             omp, bin, tmp_path("sit.safetensors"), tmp_path("cli_dir"), tmp_dir);
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    char want_line[700];
    snprintf(want_line, sizeof want_line, "latent statistics: %s\n", tmp_path("cli_dir"));
    CHECK(rc == 0 && strstr(out, want_line), "`%s` exited %d (want '%s'):\n%s%s", cmd, rc, want_line, out, err);

    /* inspect and forward take a folder too (the z = 16 one: no quant convs). */
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", bin, folder(2));
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "diffusers AutoencoderKL folder") && strstr(out, "\"use_quant_conv\": false") &&
              strstr(out, "(0.1159, 0.3611)"),
          "`%s` exited %d:\n%s%s", cmd, rc, out, err);
    snprintf(cmd, sizeof cmd, "%s'%s' forward --model vae --weights '%s' --input '" FX "%s_ref.safetensors' --output '%s'",
             omp, bin, folder(2), CASES[2].name, tmp_path("fwd.safetensors"));
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "`%s` exited %d:\n%s", cmd, rc, err);
    if (rc == 0) {
        safetensors *fo = safetensors_open(tmp_path("fwd.safetensors"));
        safetensors *ref = safetensors_open(FX "diffusers_vae_tiny_z16_ref.safetensors");
        size_t n1, n2;
        float *got = fixture_f32(fo, "mean", &n1), *want = fixture_f32(ref, "mean", &n2);
        CHECK(n1 == n2, "forward mean: %zu values, want %zu", n1, n2);
        if (n1 == n2)
            check_rel("repae forward --weights FOLDER: mean", got, want, n1, TOL_OUT);
        free(got), free(want);
        safetensors_close(fo);
        safetensors_close(ref);
    }

    /* Bad flags. */
    snprintf(cmd, sizeof cmd, "'%s' export-vae --vae-ckpt '%s' --output x --format onnx", bin, srcs[0]);
    expect_command_fails(cmd, "--format");
    mkdir(tmp_path("empty"), 0755);
    snprintf(cmd, sizeof cmd, "'%s' reconstruct --vae-ckpt '%s'", bin, tmp_path("empty"));
    expect_command_fails(cmd, "empty' is not a diffusers AutoencoderKL folder: no config.json in it");
    vae_free(&m);
    free(mw);
}

int main(void)
{
    tmp_dir = test_tmp_dir("diffusers");
    RUN(test_name_map);
    RUN(test_folders_match_reference);
    RUN(test_folder_equals_compvis_file);
    RUN(test_folder_latents_stats);
    RUN(test_export_roundtrip);
    RUN(test_export_roundtrip_large);
    RUN(test_no_quant_conv_is_identity);
    RUN(test_init_from_file_takes_folders);
    RUN(test_fp16_variant);
    RUN(test_bad_folders);
    RUN(test_folder_paths);
    RUN(test_config_json_alone);
    RUN(test_export_config_is_diffusers);
    RUN(test_latents_stats_sources);
    RUN(test_export_files_and_failures);
    RUN(test_cli_export_then_reconstruct);
    return test_summary();
}
