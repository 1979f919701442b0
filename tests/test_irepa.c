/* iREPA's options (arXiv 2512.10794, End2End-Diffusion/iREPA): the conv
 * projector of the SiT (parameter table, init, detection from a file,
 * finite differences of the REPA-E SiT pass and of the frozen alignment
 * pass, PyTorch parity against tests/fixtures/models/sit_tiny_irepa) and the
 * spatial normalisation of the targets (PyTorch parity against
 * tests/fixtures/ops/spatial_norm, its invariants, bad input).  Fixtures:
 * dev/ref/irepa_ref.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "diffusion/denoising_objective.h"
#include "models/sit.h"
#include "ops/spatial_norm.h"
#include "param_check.h"
#include "sit_problem.h"
#include "test.h"
#include "train/ldm_step.h"
#include "train/repae_step.h"

/* ------------------------------------------------------------ helpers */

static sit_config conv_config(int kernel, int n_encoders)
{
    sit_config c = sit_config_default();
    c.depth = 3, c.hidden = 32, c.heads = 2, c.patch = 2;
    c.in_channels = 3, c.input_size = 8;
    c.num_classes = 10, c.encoder_depth = 2, c.projector_dim = 40;
    c.n_encoders = n_encoders, c.z_dims[0] = 24, c.z_dims[1] = 12;
    c.projector_type = SIT_PROJECTOR_CONV, c.projector_kernel = kernel;
    return c;
}

/* ------------------------------------------------------------ table, init, detection */

static void test_conv_projector_table(void)
{
    sit_config c = conv_config(3, 2);
    sit m;
    sit_build(&m, &c);
    const param_entry *w = param_find(&m.table, "projectors.0.projection_layer.weight");
    const param_entry *b = param_find(&m.table, "projectors.1.projection_layer.bias");
    CHECK(w && w->ndim == 4 && w->shape[0] == 24 && w->shape[1] == 32 && w->shape[2] == 3 && w->shape[3] == 3,
          "conv projector weight [z, D, k, k]");
    CHECK(b && b->ndim == 1 && b->shape[0] == 12, "conv projector bias [z]");
    CHECK(!param_find(&m.table, "projectors.0.0.weight"), "no MLP keys with the conv projector");
    CHECK(sit_projector_param_count(&m) == (size_t)(24 + 12) * (32 * 9 + 1), "projector parameter count %zu",
          sit_projector_param_count(&m));
    /* torch's Conv2d default init: U(±1/sqrt(fan_in)), fan_in = D·k·k, for weight and bias */
    float *p = param_alloc(&m.table);
    sit_init_weights(&m, p, 5);
    double bound = 1.0 / sqrt(32.0 * 9), wmax = 0, bmax = 0;
    for (size_t k = 0; k < w->numel; k++)
        wmax = fmax(wmax, fabs(p[w->offset + k]));
    for (size_t k = 0; k < b->numel; k++)
        bmax = fmax(bmax, fabs(p[b->offset + k]));
    CHECK(wmax <= bound && wmax > 0.95 * bound, "conv weight init within ±%g, max %g", bound, wmax);
    CHECK(bmax <= bound && bmax > 0.5 * bound, "conv bias init within ±%g, max %g", bound, bmax);
    char buf[512];
    CHECK(strstr(sit_config_str(&c, buf, sizeof buf), "projector conv kernel 3 z_dims 24,12") != NULL,
          "config string names the conv projector: %s", buf);
    sit_config mlp = c;
    mlp.projector_type = SIT_PROJECTOR_MLP;
    CHECK(strstr(sit_config_str(&mlp, buf, sizeof buf), "projector 40 z_dims 24,12") != NULL,
          "the MLP configuration string is unchanged: %s", buf);
    free(p);
    sit_free(&m);
}

static void test_conv_detect_and_roundtrip(void)
{
    sit_config c = conv_config(5, 1);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_test_randomize(&m, w, 7, false);
    char path[] = "/tmp/repae_test_irepa_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    sit_save_file(&m, w, path);
    safetensors *st = safetensors_open(path);
    sit_config d = sit_config_default();
    d.encoder_depth = 2;
    sit_config_from_weights(&d, st, "", 2);
    CHECK(d.projector_type == SIT_PROJECTOR_CONV && d.projector_kernel == 5 && d.n_encoders == 1 &&
              d.z_dims[0] == 24,
          "detected conv projector k %d, %d encoders, z %d", d.projector_kernel, d.n_encoders, d.z_dims[0]);
    sit m2;
    sit_build(&m2, &d);
    float *w2 = param_alloc(&m2.table);
    sit_load(&m2, w2, st, "", PARAM_STRICT);
    CHECK(m2.table.total == m.table.total && memcmp(w, w2, m.table.total * sizeof(float)) == 0,
          "save/load round trip bit for bit");
    safetensors_close(st);
    unlink(path);
    free(w), free(w2);
    sit_free(&m), sit_free(&m2);
}

/* A file whose conv projector has an even kernel is refused with its name. */
static void bad_kernel_file(void *ctx)
{
    const char *path = ctx;
    safetensors *st = safetensors_open(path);
    sit_config d = sit_config_default();
    sit_config_from_weights(&d, st, "", 2);
}

static void even_kernel_config(void *ctx)
{
    (void)ctx;
    sit_config c = conv_config(4, 1);
    sit m;
    sit_build(&m, &c);
}

static void test_bad_conv_projector(void)
{
    sit_config c = conv_config(3, 1);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    sit_init_weights(&m, w, 1);
    st_writer *wr = st_writer_new();
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        if (!strcmp(e->name, "projectors.0.projection_layer.weight"))
            st_writer_add_f32(wr, e->name, 4, (const int64_t[]){24, 32, 2, 2}, w + e->offset);
        else
            st_writer_add_f32(wr, e->name, e->ndim, e->shape, w + e->offset);
    }
    char path[] = "/tmp/repae_test_irepa_bad_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    st_writer_save(wr, path);
    st_writer_free(wr);
    expect_die("even conv kernel in a file", bad_kernel_file, path, "projectors.0.projection_layer.weight");
    expect_die("even conv kernel in a config", even_kernel_config, NULL, "must be odd");
    unlink(path);
    free(w);
    sit_free(&m);
}

/* ------------------------------------------------------------ finite differences */

/* The REPA-E SiT pass (train BN, full depth) with conv projectors for two
 * encoders: the latent gradient and every trainable tensor. */
static void fd_conv_train(int kernel)
{
    sit_config c = conv_config(kernel, 2);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table), *g = param_alloc(&m.table);
    sit_test_randomize(&m, w, 31 + kernel, false);
    int N = 3;
    sit_problem p = sit_problem_make(&m, N, 200, 0.0f, 0.6f);
    denoising_opts o = {.train = true, .path = PATH_LINEAR};
    arena ar = arena_create(2 * denoising_objective_plan_bytes(&m, N, &o));
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *dz = alloc_zeros(N * CHW);
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, g, dz);
    sit_fd_ctx ctx = {&m, w, &ar, o, in, N, 1.0f, 0.5f};
    char what[200];
    snprintf(what, sizeof what, "conv k%d train d/dz", kernel);
    fd_check_direction(what, sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 3);
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        if (e->kind != PARAM_TRAINABLE)
            continue;
        bool proj = strncmp(e->name, "projectors.", 11) == 0;
        if (!proj && strncmp(e->name, "blocks.1.", 9) != 0)
            continue; /* the rest is test_sit's; here: the projectors and the block they read */
        snprintf(what, sizeof what, "conv k%d d/d %s", kernel, e->name);
        fd_check(what, sit_fd_loss, &ctx, w + e->offset, g + e->offset, e->numel, 1e-2, 1e-4, 1e-2, proj ? 24 : 4);
        if (e->numel >= 64) {
            snprintf(what, sizeof what, "conv k%d dir d/d %s", kernel, e->name);
            fd_check_direction(what, sit_fd_loss, &ctx, w + e->offset, g + e->offset, e->numel, 1e-2, 1e-3, 40 + i);
        }
    }
    arena_free(&ar);
    free(dz), free(w), free(g);
    sit_problem_free(&p);
    sit_free(&m);
}

static void test_fd_conv_train_k3(void) { fd_conv_train(3); }
static void test_fd_conv_train_k1(void) { fd_conv_train(1); }

/* The VAE-alignment pass: frozen SiT (dparams NULL), eval BN, align-only, the
 * gradient of 1.5·proj_loss through the conv projector into the latent; and
 * the frozen fast path gives the same dz as a pass that also computes the
 * parameter gradient. */
static void test_fd_conv_align_dz(void)
{
    sit_config c = conv_config(3, 1);
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table), *g = param_alloc(&m.table);
    sit_test_randomize(&m, w, 21, false);
    int N = 3;
    sit_problem p = sit_problem_make(&m, N, 100, 0.0f, 0.6f);
    denoising_opts o = {.train = false, .align_only = true, .path = PATH_COSINE};
    arena ar = arena_create(2 * denoising_objective_plan_bytes(&m, N, &o));
    size_t CHW = (size_t)m.C * m.H * m.H;
    float *dz = alloc_zeros(N * CHW), *dz2 = alloc_zeros(N * CHW);
    denoising_pass a;
    denoising_inputs in = sit_problem_inputs(&p, &m);
    in.force_drop = NULL;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    CHECK(a.model_output == NULL && a.net.n_blocks == 2, "align-only stops at encoder_depth");
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, NULL, dz);
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 1.5f, g, dz2);
    CHECK(memcmp(dz, dz2, N * CHW * sizeof(float)) == 0, "frozen and full passes give the same dz");
    sit_fd_ctx ctx = {&m, w, &ar, o, in, N, 0.0f, 1.5f};
    fd_check_direction("conv align d/dz", sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 1);
    fd_check_direction("conv align d/dz (2)", sit_fd_loss, &ctx, p.z, dz, N * CHW, 1e-2, 1e-3, 2);
    arena_free(&ar);
    free(dz), free(dz2), free(w), free(g);
    sit_problem_free(&p);
    sit_free(&m);
}

/* ------------------------------------------------------------ PyTorch parity */

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

/* max |got − want| <= rel · max|want| + floor, per tensor (the fixtures'
 * float64 answers of float32 inputs; torch's own float32 run is within
 * 1.1e-6 of them). */
static void check_rel(const safetensors *st, const char *name, const float *got, size_t n, double rel)
{
    size_t m;
    float *want = fixture_f32(st, name, &m);
    CHECK(m == n, "%s: %zu elements, computed %zu", name, m, n);
    double err = 0, scale = 0;
    for (size_t i = 0; i < n && i < m; i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    CHECK(err <= rel * scale + 1e-7, "%s: max err %.3g vs max|want| %.3g (rel %.2g)", name, err, scale,
          scale > 0 ? err / scale : err);
    if (getenv("TEST_VERBOSE"))
        printf("       %-44s rel %.2g\n", name, scale > 0 ? err / scale : err);
    free(want);
}

static int *fixture_ints(const safetensors *st, const char *name)
{
    size_t n;
    float *f = fixture_f32(st, name, &n);
    int *r = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        r[i] = (int)f[i];
    free(f);
    return r;
}

static void load_fixture(sit *m, float **w, const safetensors *st)
{
    sit_config c = sit_config_default();
    c.encoder_depth = meta_int(st, "encoder_depth");
    sit_config_from_weights(&c, st, "", meta_int(st, "num_heads"));
    CHECK(c.projector_type == SIT_PROJECTOR_CONV && c.projector_kernel == meta_int(st, "proj_kwargs_kernel_size"),
          "fixture: conv projector detected from its keys");
    sit_build(m, &c);
    *w = param_alloc(&m->table);
    sit_load(m, *w, st, "", PARAM_IGNORE_EXTRA);
}

#define FWD_REL 5e-6
#define GRAD_REL 2e-5

static void test_torch_conv_train_pass(void)
{
    safetensors *st = fixture_open("models/sit_tiny_irepa");
    sit m;
    float *w;
    load_fixture(&m, &w, st);
    size_t nx;
    float *x = fixture_f32(st, "train.x", &nx), *t = fixture_f32(st, "train.time_input", NULL);
    float *eps = fixture_f32(st, "train.noises", NULL), *zs = fixture_f32(st, "train.zs.0", NULL);
    int *y = fixture_ints(st, "train.y"), *drop = fixture_ints(st, "train.drop_mask");
    int N = 4, Z = m.cfg.z_dims[0];
    denoising_opts o = {.train = true, .path = PATH_LINEAR};
    denoising_inputs in = {.z = x, .y = y, .zs = {zs}, .time_input = t, .noise = eps, .force_drop = drop};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
    denoising_pass a;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    size_t CHW = (size_t)m.C * m.H * m.H;
    check_rel(st, "train.zs_tilde.0", a.zs_tilde[0], (size_t)N * m.T * Z, FWD_REL);
    check_rel(st, "train.proj_loss", &a.proj_loss, 1, FWD_REL);
    check_rel(st, "train.model_output", a.model_output, N * CHW, FWD_REL);
    check_rel(st, "train.denoising_loss", a.denoising_loss, N, FWD_REL);
    float *g = param_alloc(&m.table), *dz = alloc_zeros(nx);
    denoising_objective_backward(&m, w, &a, &ar, 1.0f, 0.5f, g, dz);
    char key[256];
    for (int i = 0; i < m.table.n; i++) {
        const param_entry *e = &m.table.entries[i];
        if (e->kind != PARAM_TRAINABLE)
            continue;
        snprintf(key, sizeof key, "train.grad.%s", e->name);
        check_rel(st, key, g + e->offset, e->numel, GRAD_REL);
    }
    check_rel(st, "train.grad.x", dz, nx, GRAD_REL);
    arena_free(&ar);
    free(x), free(t), free(eps), free(zs), free(y), free(drop), free(g), free(dz), free(w);
    sit_free(&m);
    safetensors_close(st);
}

static void test_torch_conv_alignment_pass(void)
{
    safetensors *st = fixture_open("models/sit_tiny_irepa");
    sit m;
    float *w;
    load_fixture(&m, &w, st);
    size_t nx;
    float *x = fixture_f32(st, "align.x", &nx), *t = fixture_f32(st, "align.time_input", NULL);
    float *eps = fixture_f32(st, "align.noises", NULL), *zs = fixture_f32(st, "align.zs.0", NULL);
    int *y = fixture_ints(st, "align.y");
    int N = 4;
    denoising_opts o = {.train = false, .align_only = true, .path = PATH_COSINE};
    denoising_inputs in = {.z = x, .y = y, .zs = {zs}, .time_input = t, .noise = eps};
    arena ar = arena_create(denoising_objective_plan_bytes(&m, N, &o));
    denoising_pass a;
    denoising_objective_forward(&a, &m, w, &ar, &o, &in, N);
    check_rel(st, "align.zs_tilde.0", a.zs_tilde[0], (size_t)N * m.T * m.cfg.z_dims[0], FWD_REL);
    check_rel(st, "align.proj_loss", &a.proj_loss, 1, FWD_REL);
    float *dz = alloc_zeros(nx);
    denoising_objective_backward(&m, w, &a, &ar, 0.0f, 1.0f, NULL, dz);
    check_rel(st, "align.grad.x", dz, nx, GRAD_REL);
    arena_free(&ar);
    free(x), free(t), free(eps), free(zs), free(y), free(dz), free(w);
    sit_free(&m);
    safetensors_close(st);
}

/* ------------------------------------------------------------ golden LDM steps */

/* dev/ref/ldm_step_ref.py's two train-ldm steps with iREPA on: the conv
 * projector and the spatially normalised targets inside ldm_step (logged
 * losses, clipped first-step gradients, final parameters and EMA), the same
 * tolerances as test_ldm_step. */
static void test_ldm_steps_irepa_match_torch(void)
{
    enum { B = 4 };
    safetensors *st = fixture_open("train/ldm_steps_irepa");
    sit_config sc = sit_config_default();
    sc.depth = 2, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.projector_dim = 32, sc.n_encoders = 1, sc.z_dims[0] = 24;
    sc.projector_type = SIT_PROJECTOR_CONV, sc.projector_kernel = 3;
    sit s;
    sit_build(&s, &sc);
    float *sp = param_alloc(&s.table);
    sit_load(&s, sp, st, "init.sit.", PARAM_IGNORE_EXTRA);
    vit e;
    vit_config ec = {.img_size = 16, .patch = 4, .in_chans = 1, .embed_dim = 24, .depth = 1, .heads = 2,
                     .mlp_ratio = 4.0f, .layerscale = true, .layerscale_init = 1.0f, .ln_eps = 1e-6f};
    vit_build(&e, &ec);
    float *ew = param_alloc(&e.table);
    vit_load(&e, ew, st, "enc.", PARAM_IGNORE_EXTRA);
    ldm_config cfg = ldm_config_default();
    cfg.batch = B;
    cfg.ema_decay = 0.9f;
    cfg.spatial_norm = true, cfg.zscore_alpha = 0.6f;
    ldm_trainer t;
    ldm_trainer_init(&t, &cfg, &s, sp, &e, ew, 1, 16, 16);
    for (int step = 0; step < 2; step++) {
        float *imf = golden_step_tensor(st, step, "images"), *lab = golden_step_tensor(st, step, "labels");
        float *drop = golden_step_tensor(st, step, "drop_mask");
        uint8_t images[B * 16 * 16];
        for (int i = 0; i < B * 256; i++)
            images[i] = (uint8_t)imf[i];
        int labels[B], drops[B];
        for (int i = 0; i < B; i++)
            labels[i] = (int)lab[i], drops[i] = (int)drop[i];
        float *mean = golden_step_tensor(st, step, "mean"), *stdv = golden_step_tensor(st, step, "std");
        float *eps = golden_step_tensor(st, step, "eps_z"), *time = golden_step_tensor(st, step, "time");
        float *noise = golden_step_tensor(st, step, "noise");
        ldm_step_random given = {eps, time, noise, drops};
        ldm_logs logs;
        ldm_step(&t, images, mean, stdv, labels, &given, &logs);
        const char *names[4] = {"loss", "denoising_loss", "proj_loss", "grad_norm"};
        double got[4] = {logs.loss, logs.denoising_loss, logs.proj_loss, logs.grad_norm};
        for (int k = 0; k < 4; k++) {
            float *want = golden_step_tensor(st, step, names[k]);
            CHECK(fabs(got[k] - want[0]) <= 1e-6 + 1e-4 * fabs(want[0]), "step%d.%s: %.8g vs torch %.8g", step,
                  names[k], got[k], want[0]);
            free(want);
        }
        if (step == 0)
            check_params_against_fixture(st, &s.table, t.grads, "step0.grad.", PARAM_TRAINABLE, 2e-7, 2e-3);
        free(imf), free(lab), free(drop), free(mean), free(stdv), free(eps), free(time), free(noise);
    }
    check_params_against_fixture(st, &s.table, sp, "final.sit.", -1, 2e-5, 1e-4);
    check_params_against_fixture(st, &s.table, t.ema_params, "final.ema.", -1, 2e-5, 1e-4);
    ldm_trainer_free(&t);
    free(sp), free(ew);
    sit_free(&s);
    vit_free(&e);
    safetensors_close(st);
}

/* dev/ref/repae_step_ref.py's three REPA-E steps with iREPA on: the conv
 * projector carries the VAE's alignment gradient (frozen SiT) and the SiT's
 * REPA term, both on the spatially normalised targets.  Everything but the
 * SiT (VAE, encoder, discriminator, LPIPS, step data) comes from
 * train/repae_steps, the SiT and the expected values from
 * train/repae_steps_irepa; tolerances as test_repae_step. */
static void test_repae_steps_irepa_match_torch(void)
{
    enum { B = 4, STEPS = 3 };
    safetensors *base = fixture_open("train/repae_steps"), *st = fixture_open("train/repae_steps_irepa");
    vae v;
    vae_config vc = {.ch = 16, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4,
                     .n_attn = 0, .resolution = 16, .in_channels = 3, .out_ch = 3, .double_z = 1, .norm_groups = 8};
    vae_build(&v, &vc);
    sit_config sc = sit_config_default();
    sc.depth = 2, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.projector_dim = 32, sc.n_encoders = 1, sc.z_dims[0] = 24;
    sc.projector_type = SIT_PROJECTOR_CONV, sc.projector_kernel = 3;
    sit s;
    sit_build(&s, &sc);
    vit e;
    vit_config ec = {.img_size = 16, .patch = 4, .in_chans = 3, .embed_dim = 24, .depth = 1, .heads = 2,
                     .mlp_ratio = 4.0f, .layerscale = true, .layerscale_init = 1.0f, .ln_eps = 1e-6f};
    vit_build(&e, &ec);
    discriminator d;
    disc_build(&d, &(disc_config){3, 8, 2});
    lpips l;
    lpips_build(&l, 16);
    float *vp = param_alloc(&v.table), *sp = param_alloc(&s.table), *dp = param_alloc(&d.table),
          *lp = param_alloc(&l.table);
    vae_load(&v, vp, base, "init.vae.", PARAM_IGNORE_EXTRA);
    sit_load(&s, sp, st, "init.sit.", PARAM_IGNORE_EXTRA);
    float *ew = param_alloc(&e.table);
    vit_load(&e, ew, base, "enc.", PARAM_IGNORE_EXTRA);
    disc_load(&d, dp, base, "init.disc.", PARAM_IGNORE_EXTRA);
    lpips_load(&l, lp, base, "lpips.", PARAM_IGNORE_EXTRA);
    repae_config cfg = repae_config_default();
    cfg.batch = B;
    cfg.learning_rate = cfg.vae_learning_rate = cfg.disc_learning_rate = 1e-4f;
    cfg.ema_decay = 0.9f;
    cfg.spatial_norm = true, cfg.zscore_alpha = 0.6f;
    repae_trainer t;
    repae_trainer_init(&t, &cfg, &v, vp, &s, sp, &e, ew, &d, dp, &l, lp, 16, 16, 3);
    int compared = 0;
    for (int step = 0; step < STEPS; step++) {
        char name[64];
        uint8_t images[B * 3 * 16 * 16];
        float *imf = golden_step_tensor(base, step, "images");
        for (size_t i = 0; i < sizeof images; i++)
            images[i] = (uint8_t)imf[i];
        float *lab = golden_step_tensor(base, step, "labels"), *drop = golden_step_tensor(base, step, "drop_mask");
        int labels[B], drops[B];
        for (int i = 0; i < B; i++)
            labels[i] = (int)lab[i], drops[i] = (int)drop[i];
        float *eps = golden_step_tensor(base, step, "eps"), *time = golden_step_tensor(base, step, "time");
        float *noise = golden_step_tensor(base, step, "noise");
        repae_step_random given = {eps, time, noise, drops};
        repae_logs logs;
        repae_step(&t, images, labels, &given, &logs);
        double values[REPAE_N_LOGS];
        repae_logs_values(&logs, values);
        for (int k = 0; k < REPAE_N_LOGS; k++) {
            snprintf(name, sizeof name, "step%d.%s", step, repae_log_names[k]);
            if (!safetensors_find(st, name))
                continue;
            compared++;
            float want;
            safetensors_load_f32(st, name, 1, (int64_t[]){1}, &want);
            bool norm = strstr(repae_log_names[k], "grad_norm") != NULL;
            double rtol = norm && step > 0 ? 1e-2 : 1e-4;
            CHECK(fabs(values[k] - want) <= 2e-5 + rtol * fabs(want), "%s: %.8g vs torch %.8g", name, values[k],
                  want);
        }
        if (step == 0)
            check_params_against_fixture(st, &s.table, t.sit_grads, "step0.grad.sit.", PARAM_TRAINABLE, 2e-7, 2e-3);
        free(imf), free(lab), free(drop), free(eps), free(time), free(noise);
    }
    CHECK(compared == STEPS * (REPAE_N_LOGS - 3),
          "%d logged values compared with torch's, want every one but the three constants in each of %d steps",
          compared, STEPS);
    check_params_after_adam(st, &s.table, sp, "final.sit.", 1e-4, 6e-3);
    check_params_after_adam(st, &s.table, t.ema_params, "final.ema.", 1e-4, 6e-3);
    repae_trainer_free(&t);
    free(vp), free(sp), free(dp), free(lp), free(ew);
    vae_free(&v);
    sit_free(&s);
    vit_free(&e);
    disc_free(&d);
    lpips_free(&l);
    safetensors_close(st), safetensors_close(base);
}

/* ------------------------------------------------------------ spatial normalisation */

static void test_spatial_norm_torch(void)
{
    safetensors *st = fixture_open("ops/spatial_norm");
    size_t n;
    float *x = fixture_f32(st, "x", &n);
    int N = 3, T = 16, D = 8;
    CHECK(n == (size_t)N * T * D, "fixture shape");
    float *out = alloc_zeros(n);
    spatial_norm_forward(out, x, N, T, D, 0.6f, SPATIAL_NORM_EPS);
    check_rel(st, "out_a06", out, n, 1e-6);
    spatial_norm_forward(out, x, N, T, D, 1.0f, SPATIAL_NORM_EPS);
    check_rel(st, "out_a10", out, n, 1e-6);
    /* in place gives the same bits */
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    spatial_norm_forward(y, y, N, T, D, 1.0f, SPATIAL_NORM_EPS);
    CHECK(memcmp(y, out, n * sizeof(float)) == 0, "in place == out of place");
    /* alpha 1: every (image, channel) has mean 0 and unbiased std 1 over the tokens */
    double worst_mean = 0, worst_std = 0;
    for (int b = 0; b < N; b++)
        for (int d = 0; d < D; d++) {
            double s = 0, ss = 0;
            for (int t = 0; t < T; t++)
                s += out[((size_t)b * T + t) * D + d];
            for (int t = 0; t < T; t++) {
                double c = out[((size_t)b * T + t) * D + d] - s / T;
                ss += c * c;
            }
            worst_mean = fmax(worst_mean, fabs(s / T));
            worst_std = fmax(worst_std, fabs(sqrt(ss / (T - 1)) - 1));
        }
    CHECK(worst_mean < 1e-6 && worst_std < 1e-5, "alpha 1: mean %.2g, std-1 %.2g", worst_mean, worst_std);
    /* an image shifted by a per-channel constant (global information) is unchanged by alpha 1 */
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] + 3.0f * (float)(i % D) - 2.0f;
    spatial_norm_forward(y, y, N, T, D, 1.0f, SPATIAL_NORM_EPS);
    double dmax = 0;
    for (size_t i = 0; i < n; i++)
        dmax = fmax(dmax, fabs((double)y[i] - out[i]));
    CHECK(dmax < 1e-4, "per-channel shifts vanish with alpha 1 (max diff %.2g)", dmax);
    free(x), free(out), free(y);
    safetensors_close(st);
}

static void one_token(void *ctx)
{
    (void)ctx;
    float x[4] = {1, 2, 3, 4};
    spatial_norm_forward(x, x, 1, 1, 4, 0.6f, SPATIAL_NORM_EPS);
}

static void test_spatial_norm_bad_input(void)
{
    expect_die("spatial norm of one token", one_token, NULL, "at least 2");
    /* two tokens are enough: per channel the values a, b have mean (a + b)/2
     * and unbiased std |a − b|/√2 */
    float x[4] = {1, -2, 3, 6}, want[4]; /* [T = 2][D = 2] */
    for (int t = 0; t < 2; t++)
        for (int d = 0; d < 2; d++) {
            double a = x[d], b = x[2 + d], mean = (a + b) / 2, sd = fabs(a - b) / sqrt(2.0);
            want[t * 2 + d] = (float)((x[t * 2 + d] - 0.6 * mean) / (sd + SPATIAL_NORM_EPS));
        }
    spatial_norm_forward(x, x, 1, 2, 2, 0.6f, SPATIAL_NORM_EPS);
    check_close("spatial norm of two tokens", x, want, 4, 1e-6, 1e-6);
}

int main(void)
{
    RUN(test_conv_projector_table);
    RUN(test_conv_detect_and_roundtrip);
    RUN(test_bad_conv_projector);
    RUN(test_fd_conv_train_k3);
    RUN(test_fd_conv_train_k1);
    RUN(test_fd_conv_align_dz);
    RUN(test_torch_conv_train_pass);
    RUN(test_torch_conv_alignment_pass);
    RUN(test_ldm_steps_irepa_match_torch);
    RUN(test_repae_steps_irepa_match_torch);
    RUN(test_spatial_norm_torch);
    RUN(test_spatial_norm_bad_input);
    return test_summary();
}
