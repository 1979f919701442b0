/* src/cli/model_files.c on its own: what a weights file's metadata and
 * shapes say about its models (the options JSON, the SiT's heads, its
 * configuration from weights, the VAE's GroupNorm groups, a run's
 * args.json beside its checkpoints).  The CLI tests run these through
 * `repae sample/forward/inspect`; here each rule is checked alone. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/model_files.h"
#include "core/error.h"
#include "models/params.h"
#include "train/checkpoint.h"
#include "test.h"

static cJSON *json(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j)
        die("test: bad JSON %s", text);
    return j;
}

/* A safetensors file with one small tensor per name and the given metadata
 * (pairs of key, value; NULL-terminated). */
static const char *write_file(const char *name, const char *const *tensors, const char *const *meta)
{
    st_writer *w = st_writer_new();
    static const float one[1] = {1};
    for (int i = 0; tensors && tensors[i]; i++)
        st_writer_add_f32(w, tensors[i], 1, (int64_t[]){1}, one);
    for (int i = 0; meta && meta[i]; i += 2)
        st_writer_set_metadata(w, meta[i], meta[i + 1]);
    const char *path = test_tmp_path(name);
    st_writer_save(w, path);
    st_writer_free(w);
    return path;
}

static void test_json_numbers_and_strings(void)
{
    cJSON *j = json("{\"a\": 2, \"t\": true, \"f\": false, \"half\": 2.5, \"huge\": 1e300, \"neg\": -3,"
                    " \"s\": \"text\", \"n\": null}");
    CHECK(mf_json_num(j, "a", 7) == 2 && mf_json_num(j, "t", 7) == 1 && mf_json_num(j, "f", 7) == 0,
          "numbers and booleans: %g %g %g", mf_json_num(j, "a", 7), mf_json_num(j, "t", 7), mf_json_num(j, "f", 7));
    CHECK(mf_json_num(j, "s", 7) == 7 && mf_json_num(j, "n", 7) == 7 && mf_json_num(j, "missing", 7) == 7 &&
              mf_json_num(NULL, "a", 7) == 7,
          "a string, null, a missing key or no JSON must give the default");
    CHECK(mf_json_int(j, "a", 9) == 2 && mf_json_int(j, "neg", 9) == -3 && mf_json_int(j, "t", 9) == 1,
          "whole numbers: %d %d %d", mf_json_int(j, "a", 9), mf_json_int(j, "neg", 9), mf_json_int(j, "t", 9));
    CHECK(mf_json_int(j, "half", 9) == 9 && mf_json_int(j, "huge", 9) == 9,
          "2.5 and 1e300 are no counts: %d %d", mf_json_int(j, "half", 9), mf_json_int(j, "huge", 9));
    CHECK(!strcmp(mf_json_str(j, "s", "def"), "text") && !strcmp(mf_json_str(j, "a", "def"), "def") &&
              !strcmp(mf_json_str(NULL, "s", "def"), "def") && mf_json_str(j, "missing", NULL) == NULL,
          "strings");
    cJSON_Delete(j);
}

/* `args` (a checkpoint's run options) first, then `config`; either must be
 * a JSON object. */
static void test_metadata_json_order(void)
{
    static const char *const t[] = {"x", NULL};
    const struct {
        const char *name, *args, *config, *want_key; /* want_key NULL: no JSON */
    } cases[] = {
        {"both.safetensors", "{\"from_args\": 1}", "{\"from_config\": 1}", "from_args"},
        {"config_only.safetensors", NULL, "{\"from_config\": 1}", "from_config"},
        {"args_array.safetensors", "[1, 2]", "{\"from_config\": 1}", "from_config"},
        {"args_broken.safetensors", "{\"unclosed\": ", "{\"from_config\": 1}", "from_config"},
        {"args_only.safetensors", "{\"from_args\": 1}", NULL, "from_args"},
        {"neither_object.safetensors", "3", "\"text\"", NULL},
        {"none.safetensors", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *meta[5] = {0};
        int k = 0;
        if (cases[i].args)
            meta[k++] = "args", meta[k++] = cases[i].args;
        if (cases[i].config)
            meta[k++] = "config", meta[k++] = cases[i].config;
        safetensors *st = safetensors_open(write_file(cases[i].name, t, meta));
        cJSON *j = mf_metadata_json(st);
        if (cases[i].want_key)
            CHECK(j && cJSON_GetObjectItemCaseSensitive(j, cases[i].want_key), "%s: want the object with '%s'",
                  cases[i].name, cases[i].want_key);
        else
            CHECK(j == NULL, "%s: want no JSON", cases[i].name);
        cJSON_Delete(j);
        safetensors_close(st);
    }
}

static void test_prefix_and_checkpoint_kind(void)
{
    static const char *const t[] = {"vae.encoder.conv_in.weight", "model.pos_embed", NULL};
    static const char *const ckpt[] = {"format", CHECKPOINT_FORMAT, NULL};
    static const char *const other[] = {"format", "pt", NULL};
    static const char *const pre[] = {"", "vae.", "model.", NULL};
    safetensors *st = safetensors_open(write_file("prefixes.safetensors", t, ckpt));
    const char *p = mf_find_prefix(st, "encoder.conv_in.weight", pre);
    CHECK(p && !strcmp(p, "vae."), "the VAE's prefix: %s", p ? p : "(none)");
    p = mf_find_prefix(st, "pos_embed", pre);
    CHECK(p && !strcmp(p, "model."), "the SiT's prefix: %s", p ? p : "(none)");
    CHECK(mf_find_prefix(st, "cls_token", pre) == NULL, "no ViT in the file");
    CHECK(mf_is_checkpoint(st), "format %s is a checkpoint", CHECKPOINT_FORMAT);
    safetensors_close(st);
    st = safetensors_open(write_file("not_ckpt.safetensors", t, other));
    CHECK(!mf_is_checkpoint(st), "format 'pt' is no checkpoint");
    safetensors_close(st);
    st = safetensors_open(write_file("no_format.safetensors", t, NULL));
    CHECK(!mf_is_checkpoint(st), "no format: no checkpoint");
    safetensors_close(st);
}

/* heads > 0 wins; a custom model's sit_heads, then num_heads, each only if
 * it divides the width; then the preset for the width (0 if none). */
static void test_sit_heads_rules(void)
{
    const struct {
        const char *json;
        int hidden, heads, want;
    } cases[] = {
        {"{\"num_heads\": 4}", 64, 1, 1},
        {"{\"num_heads\": 4}", 64, 0, 4},
        {"{\"num_heads\": 5}", 64, 0, 0},
        {"{\"num_heads\": 0}", 64, 0, 0},
        {"{\"model\": \"custom\", \"sit_heads\": 8}", 64, 0, 8},
        {"{\"model\": \"custom\", \"sit_heads\": 8, \"num_heads\": 4}", 64, 0, 8},
        {"{\"model\": \"custom\", \"num_heads\": 4}", 64, 0, 4},
        {"{\"model\": \"custom\", \"sit_heads\": 5, \"num_heads\": 4}", 64, 0, 4},
        {"{\"model\": \"custom\", \"sit_heads\": 5}", 768, 0, 12},
        {"{\"model\": \"SiT-B/2\"}", 768, 0, 12},
        {"{\"model\": \"SiT-B/2\", \"num_heads\": 4}", 64, 0, 4},
        {"{\"model\": \"SiT-Q/2\", \"num_heads\": 4}", 64, 0, 4},
        {"{}", 1152, 0, 16},
        {"{}", 96, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = json(cases[i].json);
        int got = mf_sit_heads(j, cases[i].hidden, cases[i].heads);
        CHECK(got == cases[i].want, "%s, width %d, --heads %d: %d heads, want %d", cases[i].json, cases[i].hidden,
              cases[i].heads, got, cases[i].want);
        cJSON_Delete(j);
    }
    CHECK(mf_sit_heads(NULL, 384, 0) == 6, "no JSON, width 384: the S preset's 6 heads");
}

/* A small SiT saved under "ema.", read back by mf_sit_config. */
static const char *write_sit(const char *name, int hidden, int heads)
{
    sit_config c = sit_config_default();
    c.depth = 3;
    c.hidden = hidden;
    c.heads = heads;
    c.patch = 2;
    c.input_size = 4;
    c.in_channels = 4;
    c.num_classes = 10;
    c.encoder_depth = 1;
    c.projector_dim = 32;
    c.z_dims[0] = 16;
    sit m;
    sit_build(&m, &c);
    float *w = param_alloc(&m.table);
    param_init(&m.table, w, 1);
    st_writer *wr = st_writer_new();
    param_save(&m.table, w, wr, "ema.");
    const char *path = test_tmp_path(name);
    st_writer_save(wr, path);
    st_writer_free(wr);
    free(w);
    sit_free(&m);
    return path;
}

typedef struct sit_case {
    const char *path, *json;
    int guess, heads;
} sit_case;

static void sit_config_child(void *ctx)
{
    const sit_case *c = ctx;
    safetensors *st = safetensors_open(c->path);
    cJSON *j = json(c->json);
    sit_config cfg;
    mf_sit_config(&cfg, st, "ema.", j, c->heads, c->guess);
}

static void test_sit_config_from_file(void)
{
    const char *path = write_sit("sit_w96.safetensors", 96, 4);
    safetensors *st = safetensors_open(path);
    cJSON *j = json("{\"num_heads\": 4, \"encoder_depth\": 2, \"cfg_prob\": 0.25, \"bn_momentum\": 0.05}");
    sit_config cfg;
    int guessed = mf_sit_config(&cfg, st, "ema.", j, 0, 0);
    CHECK(!guessed && cfg.hidden == 96 && cfg.heads == 4 && cfg.depth == 3 && cfg.patch == 2 &&
              cfg.encoder_depth == 2 && cfg.class_dropout_prob == 0.25f && cfg.bn_momentum == 0.05f,
          "hidden %d heads %d depth %d patch %d encoder_depth %d dropout %g bn_momentum %g (guessed %d)", cfg.hidden,
          cfg.heads, cfg.depth, cfg.patch, cfg.encoder_depth, cfg.class_dropout_prob, cfg.bn_momentum, guessed);
    cJSON_Delete(j);
    /* The label dropout's older name; an encoder depth past the model's
     * depth (or none) gives the depth, at most 8. */
    j = json("{\"num_heads\": 4, \"class_dropout_prob\": 0.3, \"encoder_depth\": 4}");
    mf_sit_config(&cfg, st, "ema.", j, 0, 0);
    CHECK(cfg.class_dropout_prob == 0.3f && cfg.encoder_depth == 3, "dropout %g, encoder depth %d (want 0.3, 3)",
          cfg.class_dropout_prob, cfg.encoder_depth);
    cJSON_Delete(j);
    j = json("{\"num_heads\": 4, \"encoder_depth\": 0}");
    mf_sit_config(&cfg, st, "ema.", j, 0, 0);
    CHECK(cfg.class_dropout_prob == 0.1f && cfg.encoder_depth == 3, "defaults: dropout %g, encoder depth %d",
          cfg.class_dropout_prob, cfg.encoder_depth);
    cJSON_Delete(j);
    /* An encoder depth of 1 is taken as it is. */
    j = json("{\"num_heads\": 4, \"encoder_depth\": 1}");
    mf_sit_config(&cfg, st, "ema.", j, 0, 0);
    CHECK(cfg.encoder_depth == 1, "encoder_depth 1 gave %d", cfg.encoder_depth);
    cJSON_Delete(j);
    /* One head, recorded, is no guess. */
    j = json("{\"num_heads\": 1}");
    guessed = mf_sit_config(&cfg, st, "ema.", j, 0, 0);
    CHECK(!guessed && cfg.heads == 1, "num_heads 1: %d heads (guessed %d)", cfg.heads, guessed);
    cJSON_Delete(j);
    /* Explicit heads override the file. */
    j = json("{\"num_heads\": 4}");
    mf_sit_config(&cfg, st, "ema.", j, 2, 0);
    CHECK(cfg.heads == 2, "--heads 2 gave %d heads", cfg.heads);
    cJSON_Delete(j);
    /* No heads anywhere: refused, or guessed from the width (96 / 64 → 1
     * head; 192 / 64 → 3). */
    sit_case none = {path, "{}", 0};
    expect_die("a SiT of width 96 without heads", sit_config_child, &none,
               "the SiT's width 96 matches no preset and the file does not record its attention heads; pass --heads");
    j = json("{}");
    guessed = mf_sit_config(&cfg, st, "ema.", j, 0, 1);
    CHECK(guessed && cfg.heads == 1, "width 96 guessed: %d heads (guessed %d)", cfg.heads, guessed);
    safetensors_close(st);
    st = safetensors_open(write_sit("sit_w192.safetensors", 192, 4));
    guessed = mf_sit_config(&cfg, st, "ema.", j, 0, 1);
    CHECK(guessed && cfg.heads == 3, "width 192 guessed: %d heads (guessed %d)", cfg.heads, guessed);
    safetensors_close(st);
    cJSON_Delete(j);
    /* --heads that do not divide the width. */
    sit_case five = {path, "{}", 0, 5};
    expect_die("--heads 5 for a width of 96", sit_config_child, &five, "96");
    /* Numbers the file gets wrong: the configuration's own checks. */
    sit_case dropout = {path, "{\"num_heads\": 4, \"cfg_prob\": 1.5}", 0, 0};
    expect_die("cfg_prob 1.5 in the file", sit_config_child, &dropout,
               "class dropout probability 1.5 is outside [0, 1)");
    sit_case momentum = {path, "{\"num_heads\": 4, \"bn_momentum\": 2}", 0, 0};
    expect_die("bn_momentum 2 in the file", sit_config_child, &momentum, "momentum 2 in [0, 1]");
    sit_case wrong_prefix = {path, "{}", 1};
    static const char *const t[] = {"ema.pos_embed", NULL};
    wrong_prefix.path = write_file("flat_pos_embed.safetensors", t, NULL);
    expect_die("a pos_embed that is not [1, T, D]", sit_config_child, &wrong_prefix,
               "no SiT under prefix 'ema.' (no ema.pos_embed [1, T, D])");
}

/* The VAE's GroupNorm groups: --vae-norm-groups, else a custom-VAE run's
 * vae_norm_groups (unless it named a VAE file), else a converted file's
 * norm_groups; else what the shapes say. */
static void test_vae_norm_groups(void)
{
    safetensors *st = fixture_open("models/vae_tiny_f8");
    vae_config base;
    mf_vae_config(&base, st, "", NULL, 0);
    const struct {
        const char *json;
        int flag, want; /* want 0: the shapes' default */
    } cases[] = {
        {"{\"vae\": \"custom\", \"vae_norm_groups\": 4}", 0, 4},
        {"{\"vae\": \"custom\", \"vae_norm_groups\": 4}", 2, 2},
        {"{\"vae\": \"custom\", \"vae_norm_groups\": 4, \"vae_ckpt\": \"sd-vae.safetensors\"}", 0, 0},
        {"{\"vae\": \"custom\", \"vae_norm_groups\": 4, \"vae_ckpt\": null}", 0, 4},
        {"{\"vae\": \"f8d4\", \"vae_norm_groups\": 4, \"norm_groups\": 2}", 0, 0},
        {"{\"norm_groups\": 2}", 0, 2},
        {"{\"norm_groups\": 0}", 0, 0},
        {"{\"vae\": \"custom\"}", 0, 0},
        {"{}", 1, 1},
        {"{\"norm_groups\": 1}", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = json(cases[i].json);
        vae_config cfg;
        mf_vae_config(&cfg, st, "", j, cases[i].flag);
        int want = cases[i].want ? cases[i].want : base.norm_groups;
        CHECK(cfg.norm_groups == want && cfg.z_channels == base.z_channels, "%s, flag %d: %d groups, want %d",
              cases[i].json, cases[i].flag, cfg.norm_groups, want);
        cJSON_Delete(j);
    }
    CHECK(base.norm_groups != 4 && base.norm_groups != 2 && base.norm_groups != 1,
          "the fixture's own groups (%d) must differ from the cases'",
          base.norm_groups);
    safetensors_close(st);
}

static void vae_groups_child(void *ctx)
{
    safetensors *st = fixture_open("models/vae_tiny_f8");
    vae_config cfg;
    mf_vae_config(&cfg, st, "", NULL, *(const int *)ctx);
}

typedef struct open_vae_case {
    const char *path;
    int groups;
} open_vae_case;

static void open_vae_child(void *ctx)
{
    const open_vae_case *c = ctx;
    vae v;
    mf_open_vae(&v, c->path, c->groups, PARAM_STRICT, NULL);
}

/* Groups that do not divide the widths are refused; a diffusers folder's
 * config.json and --vae-norm-groups must agree; a weights file holds the
 * VAE at the top level or under vae. */
static void test_vae_groups_refused_and_files_opened(void)
{
    const int three = 3;
    expect_die("3 GroupNorm groups", vae_groups_child, (void *)&three, "is not divisible by 3 GroupNorm groups");
    open_vae_case folder = {"tests/fixtures/io/diffusers_vae_tiny", 2};
    expect_die("--vae-norm-groups 2 against config.json's 4", open_vae_child, &folder,
               "config.json says norm_num_groups 4, which --vae-norm-groups 2 contradicts");
    const int agree[2] = {0, 4};
    for (int i = 0; i < 2; i++) {
        vae v;
        const char *prefix = NULL;
        float *w = mf_open_vae(&v, folder.path, agree[i], PARAM_STRICT, &prefix);
        CHECK(v.cfg.norm_groups == 4 && prefix && !strcmp(prefix, ""), "diffusers folder, groups %d: %d groups",
              agree[i], v.cfg.norm_groups);
        free(w);
        vae_free(&v);
    }
    /* Under "vae.": the fixture's tensors saved again with that prefix (its
     * metadata left behind: the groups come from the flag). */
    safetensors *st = fixture_open("models/vae_tiny_f8");
    vae_config base;
    mf_vae_config(&base, st, "", NULL, 0);
    st_writer *wr = st_writer_new();
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        char name[300];
        snprintf(name, sizeof name, "vae.%s", t->name);
        st_writer_add(wr, name, t->dtype, t->ndim, t->shape, safetensors_tensor_bytes(st, t));
    }
    const char *under = test_tmp_path("under_vae.safetensors");
    st_writer_save(wr, under);
    st_writer_free(wr);
    safetensors_close(st);
    vae v;
    const char *prefix = NULL;
    float *w = mf_open_vae(&v, under, base.norm_groups, PARAM_STRICT, &prefix);
    CHECK(prefix && !strcmp(prefix, "vae.") && v.cfg.ch == base.ch, "the VAE's prefix: %s",
          prefix ? prefix : "(none)");
    free(w);
    vae_free(&v);
    static const char *const t[] = {"x", NULL};
    open_vae_case none = {write_file("no_vae.safetensors", t, NULL), 0};
    expect_die("a file without a VAE", open_vae_child, &none, "no VAE encoder in this file");
}

/* The ViT's heads: --heads, else the file's num_heads if it divides the
 * width, else the DINOv2 preset for the width (none for the fixture's 48),
 * else (with guess) one from the width, else refused. */
typedef struct vit_case {
    const char *path, *json;
    int heads, guess;
} vit_case;

static void vit_config_child(void *ctx)
{
    const vit_case *c = ctx;
    safetensors *st = safetensors_open(c->path);
    cJSON *j = c->json ? json(c->json) : NULL;
    mf_vit_config(st, "", j, 0, c->heads, c->guess);
}

static void test_vit_heads_and_refusals(void)
{
    const char *path = "tests/fixtures/models/vit_tiny.safetensors";
    safetensors *st = safetensors_open(path);
    const struct {
        const char *json;
        int heads, guess, want;
    } cases[] = {
        {NULL, 2, 0, 2}, {NULL, 2, 1, 2}, {NULL, 1, 0, 1}, {"{\"num_heads\": 4}", 0, 0, 4}, {"{\"num_heads\": 4}", 2, 0, 2},
        {"{\"num_heads\": 5}", 0, 1, 1}, {"{\"num_heads\": 0}", 0, 1, 1}, {"{}", 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = cases[i].json ? json(cases[i].json) : NULL;
        vit_config c = mf_vit_config(st, "", j, 0, cases[i].heads, cases[i].guess);
        CHECK(c.embed_dim == 48 && c.heads == cases[i].want, "%s, --heads %d, guess %d: width %d, %d heads, want %d",
              cases[i].json ? cases[i].json : "no JSON", cases[i].heads, cases[i].guess, c.embed_dim, c.heads,
              cases[i].want);
        cJSON_Delete(j);
    }
    safetensors_close(st);
    vit_case unknown = {path, "{\"num_heads\": 5}", 0, 0};
    expect_die("width 48, no usable head count", vit_config_child, &unknown, "no default head count for width 48");
    unknown.json = "{}";
    expect_die("width 48, no head count", vit_config_child, &unknown, "no default head count for width 48");
    static const char *const t[] = {"x", NULL};
    vit_case none = {write_file("no_vit.safetensors", t, NULL), NULL, 0, 1};
    expect_die("a file without a ViT", vit_config_child, &none,
               "no DINOv2 ViT under prefix '' (no cls_token [1, 1, D])");
    static const char *const flat[] = {"cls_token", NULL};
    vit_case flat_cls = {write_file("flat_cls.safetensors", flat, NULL), NULL, 0, 1};
    expect_die("a cls_token of one dimension", vit_config_child, &flat_cls, "no DINOv2 ViT under prefix ''");
}

static void run_args_child(void *ctx)
{
    const char *ckpt = ctx;
    char from[1300];
    safetensors *st = safetensors_open(ckpt);
    mf_run_args(st, ckpt, from, sizeof from);
}

/* A checkpoint in <run>/checkpoints/ that is not our own (a converted
 * release file) takes the run's options from <run>/args.json. */
static void test_run_args_beside_checkpoints(void)
{
    static const char *const t[] = {"x", NULL};
    static const char *const meta[] = {"args", "{\"from_metadata\": 1}", NULL};
    char dir[600], ckpt[700], args[700];
    snprintf(dir, sizeof dir, "%s", test_tmp_path("run"));
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints", dir);
    mkdir(dir, 0755);
    mkdir(ckpt, 0755);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/0400000.safetensors", dir);
    snprintf(args, sizeof args, "%s/args.json", dir);
    /* Written where write_file puts its files, then moved into the run. */
    rename(write_file("release.safetensors", t, meta), ckpt);
    FILE *f = fopen(args, "w");
    fputs("{\"from_args_json\": 1}", f);
    fclose(f);
    char from[1300];
    safetensors *st = safetensors_open(ckpt);
    cJSON *j = mf_run_args(st, ckpt, from, sizeof from);
    CHECK(j && cJSON_GetObjectItemCaseSensitive(j, "from_args_json") && !strcmp(from, args),
          "the run's args.json, read from '%s'", from);
    cJSON_Delete(j);
    safetensors_close(st);
    /* An args.json that is not an object, or not JSON, is refused. */
    const char *bad[2] = {"[1, 2]", "{\"unclosed\": "};
    for (int i = 0; i < 2; i++) {
        f = fopen(args, "w");
        fputs(bad[i], f);
        fclose(f);
        expect_die(bad[i], run_args_child, ckpt, "(the options of the run of '");
    }
    f = fopen(args, "w");
    fputs("{\"from_args_json\": 1}", f);
    fclose(f);
    /* Elsewhere, the file's own metadata. */
    const char *loose = write_file("loose.safetensors", t, meta);
    st = safetensors_open(loose);
    j = mf_run_args(st, loose, from, sizeof from);
    CHECK(j && cJSON_GetObjectItemCaseSensitive(j, "from_metadata") &&
              !strcmp(from, "the file's own options (metadata args/config)"),
          "a loose file's metadata, read from '%s'", from);
    cJSON_Delete(j);
    safetensors_close(st);
    /* Our own checkpoint carries its options: args.json is not read. */
    static const char *const own[] = {"format", CHECKPOINT_FORMAT, "args", "{\"from_metadata\": 1}", NULL};
    rename(write_file("own.safetensors", t, own), ckpt);
    st = safetensors_open(ckpt);
    j = mf_run_args(st, ckpt, from, sizeof from);
    CHECK(j && cJSON_GetObjectItemCaseSensitive(j, "from_metadata"), "our checkpoint's own options, not '%s'", from);
    cJSON_Delete(j);
    safetensors_close(st);
}

int main(void)
{
    test_tmp_dir("model_files");
    RUN(test_json_numbers_and_strings);
    RUN(test_metadata_json_order);
    RUN(test_prefix_and_checkpoint_kind);
    RUN(test_sit_heads_rules);
    RUN(test_sit_config_from_file);
    RUN(test_vae_norm_groups);
    RUN(test_vae_groups_refused_and_files_opened);
    RUN(test_vit_heads_and_refusals);
    RUN(test_run_args_beside_checkpoints);
    return test_summary();
}
