/* The REPA-E and LDM checkpoints (src/train/checkpoint.c): every piece of a
 * trainer's state goes through save and load, bit for bit — the SiT, its
 * EMA, the VAE, the discriminator, the six AdamW moments, the three
 * optimisers' step counts, the LeCam EMAs, the run's step and the loader's
 * epoch and position — and `args` is kept in the file.  Each array is
 * filled with its own random values first, so a piece that is dropped,
 * swapped with another or loaded into the wrong place shows.  A checkpoint
 * with a discriminator is refused by a run without one, and the other way
 * round, each naming the file.  (The layout's strictness itself, keys,
 * shapes and counter ranges, is test_run_dir's.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "test.h"
#include "train/checkpoint.h"

static const char *tmp;

typedef struct models {
    vae v;
    sit s;
    discriminator d;
    float *vp, *sp, *dp;
} models;

static void models_build(models *m, bool with_disc)
{
    vae_config vc = {.ch = 16, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1, .z_channels = 4,
                     .n_attn = 0, .resolution = 16, .in_channels = 3, .out_ch = 3, .double_z = 1, .norm_groups = 8};
    vae_build(&m->v, &vc);
    sit_config sc = sit_config_default();
    sc.depth = 2, sc.hidden = 32, sc.heads = 2, sc.patch = 2, sc.in_channels = 4, sc.input_size = 8;
    sc.num_classes = 10, sc.encoder_depth = 1, sc.projector_dim = 32, sc.n_encoders = 1, sc.z_dims[0] = 24;
    sit_build(&m->s, &sc);
    m->vp = param_alloc(&m->v.table);
    m->sp = param_alloc(&m->s.table);
    m->dp = NULL;
    if (with_disc) {
        disc_build(&m->d, &(disc_config){3, 8, 2});
        m->dp = param_alloc(&m->d.table);
    }
}

static void models_free(models *m)
{
    vae_free(&m->v);
    sit_free(&m->s);
    if (m->dp)
        disc_free(&m->d);
    free(m->vp), free(m->sp), free(m->dp);
}

static void trainer_init(repae_trainer *t, models *m)
{
    repae_config cfg = repae_config_default();
    cfg.batch = 2;
    cfg.proj_coeff = cfg.vae_align_proj_coeff = 0; /* no encoder */
    repae_trainer_init(t, &cfg, &m->v, m->vp, &m->s, m->sp, NULL, NULL, m->dp ? &m->d : NULL, m->dp, NULL, NULL,
                       16, 16, 3);
}

/* Every array of a trainer's state, in one list (the counters are checked apart). */
typedef struct state_view {
    int n;
    const char *name[16];
    float *data[16];
    const param_table *table[16]; /* its tensors (the floats between them are alignment padding) */
} state_view;

static void view_add(state_view *v, const char *name, float *data, const param_table *table)
{
    v->name[v->n] = name, v->data[v->n] = data, v->table[v->n] = table;
    v->n++;
}

static state_view repae_state(repae_trainer *t)
{
    state_view v = {0};
    const param_table *ts = &t->sit->table, *tv = &t->vae->table;
    view_add(&v, "model", t->sit_params, ts);
    view_add(&v, "ema", t->ema_params, ts);
    view_add(&v, "vae", t->vae_params, tv);
    view_add(&v, "opt.m.model", t->opt_sit.m, ts);
    view_add(&v, "opt.v.model", t->opt_sit.v, ts);
    view_add(&v, "opt.m.vae", t->opt_vae.m, tv);
    view_add(&v, "opt.v.vae", t->opt_vae.v, tv);
    if (t->disc) {
        view_add(&v, "disc", t->disc_params, &t->disc->table);
        view_add(&v, "opt.m.disc", t->opt_disc.m, &t->disc->table);
        view_add(&v, "opt.v.disc", t->opt_disc.v, &t->disc->table);
    }
    return v;
}

/* Positive: BatchNorm running variances and second moments are checked at load. */
static void fill_state(state_view *v, uint64_t seed)
{
    for (int k = 0; k < v->n; k++)
        fill_uniform(v->data[k], v->table[k]->total, 0.001f, 1.0f, seed + (uint64_t)k);
}

static void zero_state(state_view *v)
{
    for (int k = 0; k < v->n; k++)
        memset(v->data[k], 0, v->table[k]->total * sizeof(float));
}

static void check_same_state(const char *what, const state_view *a, const state_view *b)
{
    CHECK(a->n == b->n, "%s: %d arrays vs %d", what, a->n, b->n);
    for (int k = 0; k < a->n && k < b->n; k++) {
        const param_table *t = a->table[k];
        int bad = -1;
        for (int i = 0; i < t->n && bad < 0; i++) {
            const param_entry *e = &t->entries[i];
            if (memcmp(a->data[k] + e->offset, b->data[k] + e->offset, e->numel * sizeof(float)) != 0)
                bad = i;
        }
        CHECK(bad < 0, "%s: '%s.%s' did not come back bit for bit", what, a->name[k],
              bad < 0 ? "" : t->entries[bad].name);
    }
}

static void check_args_kept(const char *path, const char *args)
{
    safetensors *st = safetensors_open(path);
    const char *got = safetensors_meta(st, "args");
    CHECK(got && !strcmp(got, args), "'%s': args '%s', want '%s'", path, got ? got : "(none)", args);
    safetensors_close(st);
}

static void test_repae_round_trip(bool with_disc)
{
    models ma, mb;
    models_build(&ma, with_disc);
    models_build(&mb, with_disc);
    repae_trainer a, b;
    trainer_init(&a, &ma);
    trainer_init(&b, &mb);
    state_view sa = repae_state(&a), sb = repae_state(&b);
    fill_state(&sa, 100);
    /* Without a discriminator the optimisers' counts sit at the bottom of their range. */
    const long long sit_steps = with_disc ? 6 : 0, vae_steps = with_disc ? 5 : 0;
    a.step = 7, a.opt_sit.step = sit_steps, a.opt_vae.step = vae_steps, a.opt_disc.step = with_disc ? 4 : 0;
    a.lecam_ema_real = 0.25f, a.lecam_ema_fake = -0.375f;
    fill_state(&sb, 200); /* b starts elsewhere: load must overwrite all of it */
    b.step = 1, b.opt_sit.step = b.opt_vae.step = b.opt_disc.step = 1, b.lecam_ema_real = b.lecam_ema_fake = 9;
    const char *path = test_tmp_path(with_disc ? "repae-disc.safetensors" : "repae.safetensors");
    const char *args = "{\"exp_name\": \"round-trip\", \"batch_size\": 2}";
    checkpoint_save(&a, path, 2, 1, args);
    long long epoch = -1, position = -1;
    checkpoint_load(&b, path, &epoch, &position);
    const char *what = with_disc ? "REPA-E checkpoint with a discriminator" : "REPA-E checkpoint";
    check_same_state(what, &sa, &sb);
    CHECK(b.step == 7 && b.opt_sit.step == sit_steps && b.opt_vae.step == vae_steps &&
              b.opt_disc.step == (with_disc ? 4 : 1) &&
              epoch == 2 && position == 1,
          "%s: counters step %lld, opt %lld/%lld/%lld, epoch %lld, position %lld", what, b.step, b.opt_sit.step,
          b.opt_vae.step, b.opt_disc.step, epoch, position);
    CHECK(b.lecam_ema_real == 0.25f && b.lecam_ema_fake == -0.375f, "%s: LeCam EMAs %g, %g", what,
          (double)b.lecam_ema_real, (double)b.lecam_ema_fake);
    check_args_kept(path, args);
    safetensors *st = safetensors_open(path);
    const char *disc_steps = safetensors_meta(st, "opt_disc_step");
    CHECK(disc_steps && !strcmp(disc_steps, with_disc ? "4" : "0"), "%s: opt_disc_step '%s'", what,
          disc_steps ? disc_steps : "(none)");
    safetensors_close(st);
    repae_trainer_free(&a), repae_trainer_free(&b);
    models_free(&ma), models_free(&mb);
}

static void test_repae_checkpoint_round_trip(void)
{
    test_repae_round_trip(true);
    test_repae_round_trip(false);
}

/* A run without a discriminator loading a checkpoint that has one, and the
 * other way round. */
static void load_into(void *ctx)
{
    const bool with_disc = *(const bool *)ctx;
    models m;
    models_build(&m, with_disc);
    repae_trainer t;
    trainer_init(&t, &m);
    long long epoch, position;
    checkpoint_load(&t, test_tmp_path(with_disc ? "repae.safetensors" : "repae-disc.safetensors"), &epoch, &position);
}

static void test_discriminator_mismatch_refused(void)
{
    bool with = true, without = false;
    char want[1024];
    snprintf(want, sizeof want, "'%s': the checkpoint has a discriminator but this run has none",
             test_tmp_path("repae-disc.safetensors"));
    expect_die("a checkpoint with a discriminator, a run without", load_into, &without, want);
    snprintf(want, sizeof want, "'%s': the checkpoint has no discriminator but this run has one (add --no-disc)",
             test_tmp_path("repae.safetensors"));
    expect_die("a checkpoint without a discriminator, a run with one", load_into, &with, want);
}

static void test_ldm_checkpoint_round_trip(void)
{
    models ma, mb;
    models_build(&ma, false);
    models_build(&mb, false);
    ldm_config cfg = ldm_config_default();
    cfg.batch = 2;
    cfg.proj_coeff = 0; /* no encoder */
    ldm_trainer a, b;
    ldm_trainer_init(&a, &cfg, &ma.s, ma.sp, NULL, NULL, 3, 16, 16);
    ldm_trainer_init(&b, &cfg, &mb.s, mb.sp, NULL, NULL, 3, 16, 16);
    const param_table *n = &ma.s.table;
    state_view sa = {0}, sb = {0};
    view_add(&sa, "model", a.sit_params, n), view_add(&sb, "model", b.sit_params, n);
    view_add(&sa, "ema", a.ema_params, n), view_add(&sb, "ema", b.ema_params, n);
    view_add(&sa, "opt.m.model", a.opt.m, n), view_add(&sb, "opt.m.model", b.opt.m, n);
    view_add(&sa, "opt.v.model", a.opt.v, n), view_add(&sb, "opt.v.model", b.opt.v, n);
    fill_state(&sa, 300);
    zero_state(&sb);
    b.step = 1, b.opt.step = 5; /* load must overwrite them */
    a.step = 11, a.opt.step = 0;
    const char *path = test_tmp_path("ldm.safetensors");
    const char *args = "{\"exp_name\": \"ldm\"}";
    ldm_checkpoint_save(&a, path, 3, 2, args);
    long long epoch = -1, position = -1;
    ldm_checkpoint_load(&b, path, &epoch, &position);
    check_same_state("LDM checkpoint", &sa, &sb);
    CHECK(b.step == 11 && b.opt.step == 0 && epoch == 3 && position == 2,
          "LDM checkpoint: step %lld, opt %lld, epoch %lld, position %lld", b.step, b.opt.step, epoch, position);
    check_args_kept(path, args);
    /* One format cannot be loaded as the other. */
    safetensors *st = safetensors_open(path);
    CHECK(safetensors_find(st, "model.x_embedder.proj.weight") && !safetensors_find(st, "vae.encoder.conv_in.weight"),
          "the LDM checkpoint's keys");
    safetensors_close(st);
    ldm_trainer_free(&a), ldm_trainer_free(&b);
    models_free(&ma), models_free(&mb);
}

int main(void)
{
    tmp = test_tmp_dir("checkpoint");
    (void)tmp;
    RUN(test_repae_checkpoint_round_trip);
    RUN(test_discriminator_mismatch_refused);
    RUN(test_ldm_checkpoint_round_trip);
    return test_summary();
}
