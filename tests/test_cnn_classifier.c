/* CNN classifier (the evaluation network): parameter table against the
 * PyTorch module, forward (features, logits, loss) and the full backward
 * (every parameter gradient by state-dict key, the input gradient) against
 * dev/ref/cnn_ref.py, finite differences, inference mode = train mode, the
 * configuration read back from a file, and clear errors for bad ones. */
#include <math.h>

#include "models/cnn_classifier.h"
#include "ops/cross_entropy.h"
#include "param_check.h"
#include "test.h"

static void test_cnn_table(void)
{
    safetensors *st = fixture_open("models/cnn_tiny");
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 3, .widths = {32, 64, 128}, .groups = 8,
                                      .num_classes = 10, .gn_eps = 1e-5f});
    long long want = safetensors_meta_ll(st, "param_count_32_64_128");
    CHECK((long long)param_count(&m.table, PARAM_TRAINABLE) == want, "parameters %zu, torch counts %lld",
          param_count(&m.table, PARAM_TRAINABLE), want);
    CHECK(m.dim == 128 && param_find(&m.table, "stages.2.norm2.bias") && param_find(&m.table, "head.bias") &&
              !param_find(&m.table, "stages.0.conv1.bias"),
          "key names differ from the reference");
    cnn_free(&m);
    /* Without a head: features only. */
    cnn_build(&m, &(cnn_config){.in_chans = 3, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f});
    CHECK(!param_find(&m.table, "head.weight") && param_count(&m.table, PARAM_TRAINABLE) == 4 * 27 + 4 * 36 + 16,
          "headless table: %zu parameters", param_count(&m.table, PARAM_TRAINABLE));
    cnn_free(&m);
    CHECK(m.table.n == 0 && !m.table.entries && m.dim == 0, "cnn_free empties the model");
    /* One class still has a head. */
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .num_classes = 1,
                                .gn_eps = 1e-5f});
    CHECK(param_find(&m.table, "head.weight") && param_find(&m.table, "head.bias"), "one class has a head");
    cnn_free(&m);
    safetensors_close(st);
}

typedef struct {
    cnn_classifier *m;
    const float *w;
    cnn_acts *a;
    float *x, *cot, *features, *logits, *probs;
    int *labels;
    int B, K;
} cnn_ctx;

/* The fixture's scalar: cross-entropy(logits) + Σ features·cot. */
static double cnn_loss(void *p)
{
    cnn_ctx *c = p;
    cnn_forward(c->m, c->w, c->a, c->x, c->features, c->logits);
    double l = cross_entropy_forward(c->probs, c->logits, c->labels, c->B, c->K);
    return l + dot_f64(c->features, c->cot, (size_t)c->B * c->m->dim);
}

static void test_cnn_matches_torch(void)
{
    safetensors *st = fixture_open("models/cnn_tiny");
    cnn_classifier m;
    float *mw = cnn_from_checkpoint(&m, st, "", 0, PARAM_IGNORE_EXTRA);
    CHECK(m.cfg.in_chans == 1 && m.cfg.n_stages == 2 && m.cfg.widths[0] == 8 && m.cfg.widths[1] == 16 &&
              m.cfg.groups == 4 && m.cfg.num_classes == 5 && m.dim == 16,
          "configuration from the fixture: in %d stages %d widths %d,%d groups %d classes %d", m.cfg.in_chans,
          m.cfg.n_stages, m.cfg.widths[0], m.cfg.widths[1], m.cfg.groups, m.cfg.num_classes);
    const int B = 3, K = 5, D = 16, S = 16;
    const size_t nx = (size_t)B * S * S;
    float *x = fixture_f32(st, "x", NULL), *cot = fixture_f32(st, "cot.features", NULL);
    float *lab = fixture_f32(st, "labels", NULL), *want_loss = fixture_f32(st, "loss", NULL);
    int labels[3] = {(int)lab[0], (int)lab[1], (int)lab[2]};
    float *features = alloc_zeros((size_t)B * D), *logits = alloc_zeros((size_t)B * K), *probs = alloc_zeros(B * K);
    float *dlogits = alloc_zeros((size_t)B * K), *grads = param_alloc(&m.table), *dx = alloc_zeros(nx);
    arena ar = arena_create(cnn_plan_bytes(&m, B, S, S, true));
    cnn_acts a;
    cnn_acts_alloc(&a, &m, &ar, B, S, S, true);
    CHECK(ar.used <= ar.capacity && ar.used == cnn_plan_bytes(&m, B, S, S, true), "plan %zu bytes, carved %zu",
          cnn_plan_bytes(&m, B, S, S, true), ar.used);
    cnn_forward(&m, mw, &a, x, features, logits);
    /* Four 3×3 convs of ≤ 144 terms and two GroupNorms in float32: ~1e-6 relative. */
    fixture_check(st, "features", features, (size_t)B * D, 1e-5, 1e-4);
    fixture_check(st, "logits", logits, (size_t)B * K, 1e-5, 1e-4);
    float loss = cross_entropy_forward(probs, logits, labels, B, K);
    CHECK(fabsf(loss - want_loss[0]) <= 1e-5f * (1 + fabsf(want_loss[0])), "loss %.8g, torch %.8g", loss,
          want_loss[0]);
    cross_entropy_backward(dlogits, 1.0f, probs, labels, B, K);
    cnn_backward(&m, mw, &a, grads, dx, cot, dlogits);
    /* Gradients through two GroupNorm backwards each stage: ~1e-5 relative. */
    check_params_against_fixture(st, &m.table, grads, "grad.", PARAM_TRAINABLE, 1e-5, 1e-3);
    fixture_check(st, "grad.x", dx, nx, 1e-6, 1e-3);

    /* Inference mode (shared scratch) gives the same features and logits, bit for bit. */
    arena ai = arena_create(cnn_plan_bytes(&m, B, S, S, false));
    cnn_acts a2;
    cnn_acts_alloc(&a2, &m, &ai, B, S, S, false);
    CHECK(cnn_plan_bytes(&m, B, S, S, false) < cnn_plan_bytes(&m, B, S, S, true), "inference plan not smaller");
    float *f2 = alloc_zeros((size_t)B * D), *l2 = alloc_zeros((size_t)B * K);
    cnn_forward(&m, mw, &a2, x, f2, l2);
    CHECK(!memcmp(f2, features, (size_t)B * D * sizeof(float)) && !memcmp(l2, logits, (size_t)B * K * sizeof(float)),
          "inference-mode outputs differ from train-mode ones");

    /* Backward adds: a second backward onto the same buffers doubles them;
     * a frozen model (grads NULL) still gives the input gradient. */
    float *dx2 = alloc_zeros(nx), *grads2 = param_alloc(&m.table);
    memcpy(grads2, grads, m.table.total * sizeof(float));
    memcpy(dx2, dx, nx * sizeof(float));
    cnn_backward(&m, mw, &a, grads2, dx2, cot, dlogits);
    for (size_t i = 0; i < m.table.total; i++)
        grads2[i] -= 2 * grads[i];
    for (size_t i = 0; i < nx; i++)
        dx2[i] -= 2 * dx[i];
    float *zeros = alloc_zeros(m.table.total > nx ? m.table.total : nx);
    check_close("grads accumulate", grads2, zeros, m.table.total, 1e-6, 0);
    check_close("dx accumulates", dx2, zeros, nx, 1e-6, 0);
    memset(dx2, 0, nx * sizeof(float));
    cnn_backward(&m, mw, &a, NULL, dx2, cot, dlogits);
    check_close("frozen model: dx", dx2, dx, nx, 0, 0);

    /* Finite differences of the same scalar (float32 forward, double sum). */
    cnn_ctx c = {&m, mw, &a, x, cot, features, logits, probs, labels, B, K};
    fd_check_direction("cnn d/dx", cnn_loss, &c, x, dx, nx, 1e-2, 2e-3, 5);
    size_t w = param_find(&m.table, "stages.1.conv2.weight")->offset;
    /* Small steps: a ReLU or max-pool switch within ±h would bias the quotient;
     * float32 rounding of the O(1) scalar then limits the quotient to ~1e-3. */
    fd_check("cnn d/d stages.1.conv2.weight", cnn_loss, &c, mw + w, grads + w, 16 * 16 * 9, 2e-4, 1e-4, 5e-3,
             40);
    size_t g = param_find(&m.table, "stages.0.norm1.weight")->offset;
    fd_check("cnn d/d stages.0.norm1.weight", cnn_loss, &c, mw + g, grads + g, 8, 2e-4, 1e-4, 5e-3, 0);
    size_t h = param_find(&m.table, "head.weight")->offset;
    fd_check("cnn d/d head.weight", cnn_loss, &c, mw + h, grads + h, (size_t)K * D, 1e-3, 1e-4, 5e-3, 0);

    arena_free(&ar), arena_free(&ai);
    free(x), free(cot), free(lab), free(want_loss), free(features), free(logits), free(probs), free(dlogits);
    free(grads), free(dx), free(f2), free(l2), free(dx2), free(grads2), free(zeros), free(mw);
    cnn_free(&m);
    safetensors_close(st);
}

static void build_bad_groups(void *ctx)
{
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 2, .widths = {8, 12}, .groups = 8, .gn_eps = 1e-5f});
}

static void acts_too_small(void *ctx)
{
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 3, .widths = {4, 4, 4}, .groups = 2, .gn_eps = 1e-5f});
    cnn_plan_bytes(&m, 2, 4, 4, false);
}

static void load_no_groups(void *ctx)
{
    /* A CNN state dict without the metadata that records the groups. */
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f});
    st_writer *w = st_writer_new();
    param_save(&m.table, param_alloc(&m.table), w, "");
    st_writer_save(w, ctx);
    st_writer_free(w);
    safetensors *st = safetensors_open(ctx);
    cnn_config_from_checkpoint(st, "", 0);
}

static void load_not_cnn(void *ctx)
{
    safetensors *st = fixture_open("models/disc_tiny");
    cnn_config_from_checkpoint(st, "", 0);
}

static void test_cnn_bad_configurations(void)
{
    expect_die("widths not divisible by groups", build_bad_groups, NULL, "stage 1 width 12 is not divisible by the 8");
    expect_die("images too small", acts_too_small, NULL, "need images of at least 8x8");
    char path[] = "/tmp/repae-cnn-nogroups.safetensors";
    expect_die("no groups recorded", load_no_groups, path, "GroupNorm group count is not recorded");
    remove(path);
    expect_die("not a CNN", load_not_cnn, NULL, "not a CNN classifier");
}

/* ---- configuration: its checks, its JSON, and reading it off a file ---- */

static const struct {
    const char *what;
    cnn_config c;
    const char *message;
} bad_configs[] = {
    {"in_chans 0", {.in_chans = 0, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f},
     "in_chans 0 (1 .. 4096)"},
    {"in_chans 4097", {.in_chans = 4097, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 1e-5f}, "in_chans 4097"},
    {"no stages", {.in_chans = 1, .n_stages = 0, .groups = 2, .gn_eps = 1e-5f}, "0 stages (1 .. 6 widths)"},
    {"7 stages", {.in_chans = 1, .n_stages = 7, .widths = {4, 4, 4, 4, 4, 4}, .groups = 2, .gn_eps = 1e-5f},
     "7 stages (1 .. 6 widths)"},
    {"no groups", {.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 0, .gn_eps = 1e-5f}, "0 GroupNorm groups"},
    {"width 0", {.in_chans = 1, .n_stages = 2, .widths = {4, 0}, .groups = 2, .gn_eps = 1e-5f},
     "stage 1 width 0 (1 .. 65536)"},
    {"width 65538", {.in_chans = 1, .n_stages = 1, .widths = {65538}, .groups = 2, .gn_eps = 1e-5f},
     "stage 0 width 65538 (1 .. 65536)"},
    {"width 6, 4 groups", {.in_chans = 1, .n_stages = 2, .widths = {4, 6}, .groups = 4, .gn_eps = 1e-5f},
     "stage 1 width 6 is not divisible by the 4 GroupNorm groups"},
    {"-1 classes", {.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .num_classes = -1, .gn_eps = 1e-5f},
     "-1 classes"},
    {"eps 0", {.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = 0}, "GroupNorm eps 0 (must be > 0)"},
    {"eps -1", {.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = -1}, "GroupNorm eps -1"},
    {"eps NaN", {.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2, .gn_eps = NAN}, "GroupNorm eps nan"},
};

static void check_bad_config(void *ctx)
{
    cnn_config_check(ctx);
}

static void build_bad_config(void *ctx)
{
    cnn_classifier m;
    cnn_build(&m, ctx);
}

/* Every refusal of cnn_config_check in its words; cnn_build checks too;
 * the edges of each range pass. */
static void test_cnn_config_checks(void)
{
    for (size_t k = 0; k < sizeof bad_configs / sizeof *bad_configs; k++)
        expect_die(bad_configs[k].what, check_bad_config, (void *)&bad_configs[k].c, bad_configs[k].message);
    expect_die("cnn_build checks", build_bad_config, (void *)&bad_configs[5].c, bad_configs[5].message);
    const cnn_config edges[] = {
        {.in_chans = 4096, .n_stages = 6, .widths = {1, 1, 1, 1, 1, 65536}, .groups = 1, .gn_eps = 1e-30f},
        {.in_chans = 1, .n_stages = 1, .widths = {65536}, .groups = 65536, .num_classes = 0, .gn_eps = 1e-5f},
    };
    for (size_t k = 0; k < sizeof edges / sizeof *edges; k++)
        cnn_config_check(&edges[k]);
}

static void test_cnn_config_json(void)
{
    const cnn_config c = {.in_chans = 3, .n_stages = 3, .widths = {8, 16, 32}, .groups = 4, .num_classes = 10,
                          .gn_eps = 1e-5f};
    char buf[256];
    const char *want = "{\"arch\": \"cnn\", \"in_chans\": 3, \"widths\": [8, 16, 32], \"groups\": 4, \"num_classes\": "
                       "10, \"gn_eps\": 1e-05}";
    CHECK(!strcmp(cnn_config_to_json(&c, buf, sizeof buf), want), "json '%s'", buf);
    /* A short buffer is cut, NUL-terminated, never overrun. */
    for (size_t size = 1; size < strlen(want) + 1; size += 7) {
        memset(buf, '#', sizeof buf);
        cnn_config_to_json(&c, buf, size);
        CHECK(strlen(buf) == size - 1 && !strncmp(buf, want, size - 1) && buf[size] == '#',
              "buffer of %zu: '%s'", size, buf);
    }
}

typedef struct tensor_spec {
    const char *key;
    int ndim;
    int64_t shape[5];
} tensor_spec;

/* Writes tensors of zeros with the given shapes and a "config" metadata
 * entry (when not NULL) to a scratch file; returns its path. */
static const char *write_cnn_file(const char *name, const tensor_spec *t, int n, const char *config)
{
    static float zeros[4096];
    st_writer *w = st_writer_new();
    for (int i = 0; i < n; i++)
        st_writer_add_f32(w, t[i].key, t[i].ndim, t[i].shape, zeros);
    if (config)
        st_writer_set_metadata(w, "config", config);
    const char *path = test_tmp_path(name);
    st_writer_save(w, path);
    st_writer_free(w);
    return path;
}

typedef struct read_case {
    const char *what;
    tensor_spec t[8];
    const char *config;
    const char *message;
} read_case;

static void read_config(void *ctx)
{
    const read_case *k = ctx;
    int n = 0;
    while (n < 8 && k->t[n].key)
        n++;
    safetensors *st = safetensors_open(write_cnn_file("bad.safetensors", k->t, n, k->config));
    cnn_config_from_checkpoint(st, "", 0);
}

#define G4 "{\"groups\": 4}"
static const read_case bad_files[] = {
    {"conv1 of 3 dims", {{"stages.0.conv1.weight", 3, {8, 1, 3}}}, G4,
     "'stages.0.conv1.weight' has shape [8, 1, 3]; a CNN stage's conv1 is [width, in_chans, 3, 3]"},
    {"a 5x5 conv1", {{"stages.0.conv1.weight", 4, {8, 1, 5, 5}}}, G4, "has shape [8, 1, 5, 5]"},
 {"conv1 of 5 dims at stage 1",
     {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}, {"stages.1.conv1.weight", 5, {16, 8, 3, 3, 1}}}, G4,
     "'stages.1.conv1.weight' has shape [16, 8, 3, 3, 1]"},
    {"a 3x5 conv1", {{"stages.0.conv1.weight", 4, {8, 1, 3, 5}}}, G4, "has shape [8, 1, 3, 5]"},
    {"width 0", {{"stages.0.conv1.weight", 4, {0, 1, 3, 3}}}, G4, "has shape [0, 1, 3, 3]"},
    {"stage 1 not fed by stage 0",
     {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}, {"stages.1.conv1.weight", 4, {16, 4, 3, 3}}}, G4,
     "'stages.1.conv1.weight' has shape [16, 4, 3, 3]; a CNN stage's conv1 is [width, previous width, 3, 3]"},
    {"7 stages",
     {{"stages.0.conv1.weight", 4, {4, 1, 3, 3}}, {"stages.1.conv1.weight", 4, {4, 4, 3, 3}},
      {"stages.2.conv1.weight", 4, {4, 4, 3, 3}}, {"stages.3.conv1.weight", 4, {4, 4, 3, 3}},
      {"stages.4.conv1.weight", 4, {4, 4, 3, 3}}, {"stages.5.conv1.weight", 4, {4, 4, 3, 3}},
      {"stages.6.conv1.weight", 4, {4, 4, 3, 3}}},
     G4, "more than 6 CNN stages (stages.6.conv1.weight)"},
    {"a head of 1 dim", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}, {"head.weight", 1, {8}}}, G4,
     "'head.weight' has shape [8]; the head is [classes, 8]"},
    {"a head for another width", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}, {"head.weight", 2, {5, 7}}}, G4,
     "'head.weight' has shape [5, 7]; the head is [classes, 8]"},
    {"no stage 0", {{"stages.1.conv1.weight", 4, {8, 8, 3, 3}}}, G4,
     "not a CNN classifier (no stages.0.conv1.weight)"},
    {"no metadata", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}}, NULL, "group count is not recorded"},
    {"metadata not JSON", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}}, "groups 4", "group count is not recorded"},
    {"groups as text", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}}, "{\"groups\": \"4\"}",
     "group count is not recorded"},
    {"groups 0", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}}, "{\"groups\": 0}", "group count is not recorded"},
    {"groups 3 for width 8", {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}}, "{\"groups\": 3}",
     "stage 0 width 8 is not divisible by the 3 GroupNorm groups"},
};

/* A file's configuration: the stages from conv1's shapes, the classes
 * from the head (none without one), the groups from the caller or else
 * the metadata, gn_eps from the metadata when positive; each bad file
 * refused in words that name the tensor. */
static void test_cnn_config_from_files(void)
{
    test_tmp_dir("cnn");
    for (size_t k = 0; k < sizeof bad_files / sizeof *bad_files; k++)
        expect_die(bad_files[k].what, read_config, (void *)&bad_files[k], bad_files[k].message);

    const tensor_spec two[] = {{"ema.stages.0.conv1.weight", 4, {8, 3, 3, 3}},
                               {"ema.stages.1.conv1.weight", 4, {16, 8, 3, 3}},
                               {"ema.head.weight", 2, {7, 16}},
                               {"stages.0.conv1.weight", 4, {4, 1, 3, 3}},
                               {"stages.2.conv1.weight", 4, {4, 4, 3, 3}}};
    safetensors *st = safetensors_open(write_cnn_file("two.safetensors", two, 5, "{\"groups\": 4, \"gn_eps\": 0.001}"));
    cnn_config c = cnn_config_from_checkpoint(st, "ema.", 0);
    CHECK(c.in_chans == 3 && c.n_stages == 2 && c.widths[0] == 8 && c.widths[1] == 16 && c.num_classes == 7 &&
              c.groups == 4 && c.gn_eps == 0.001f,
          "under 'ema.': in %d stages %d widths %d %d classes %d groups %d eps %g", c.in_chans, c.n_stages,
          c.widths[0], c.widths[1], c.num_classes, c.groups, c.gn_eps);
    c = cnn_config_from_checkpoint(st, "ema.", 8);
    CHECK(c.groups == 8, "the caller's groups win over the metadata's: %d", c.groups);
    c = cnn_config_from_checkpoint(st, "", 2);
    CHECK(c.in_chans == 1 && c.n_stages == 1 && c.widths[0] == 4 && c.num_classes == 0 && c.groups == 2,
          "without the prefix: stages stop at the first gap, no head: in %d stages %d classes %d groups %d",
          c.in_chans, c.n_stages, c.num_classes, c.groups);
    CHECK(cnn_in_file(st, "ema.") && cnn_in_file(st, "") && !cnn_in_file(st, "model."), "cnn_in_file by prefix");
    safetensors_close(st);

    const tensor_spec one[] = {{"stages.0.conv1.weight", 4, {8, 1, 3, 3}}};
    for (int k = 0; k < 2; k++) {
        st = safetensors_open(write_cnn_file("eps.safetensors", one, 1, k ? "{\"groups\": 2, \"gn_eps\": -1}"
                                                                           : "{\"groups\": 2, \"gn_eps\": 0}"));
        c = cnn_config_from_checkpoint(st, "", 0);
        CHECK(c.gn_eps == 1e-5f && c.groups == 2, "eps %s keeps the default: %g", k ? "-1" : "0", c.gn_eps);
        safetensors_close(st);
    }
    /* The smallest CNN: one stage one wide, one group, under a long prefix. */
    char prefix[80], key[160];
    memset(prefix, 'p', 70);
    strcpy(prefix + 70, ".");
    snprintf(key, sizeof key, "%sstages.0.conv1.weight", prefix);
    const tensor_spec tiny[] = {{key, 4, {1, 1, 3, 3}}};
    st = safetensors_open(write_cnn_file("tiny.safetensors", tiny, 1, "{\"groups\": 1}"));
    CHECK(cnn_in_file(st, prefix), "cnn_in_file under a %zu-character prefix", strlen(prefix));
    c = cnn_config_from_checkpoint(st, prefix, 0);
    CHECK(c.n_stages == 1 && c.widths[0] == 1 && c.groups == 1, "width 1, groups 1: stages %d width %d groups %d",
          c.n_stages, c.widths[0], c.groups);
    safetensors_close(st);

    /* The JSON a trained model records reads back to the same config. */
    const cnn_config want = {.in_chans = 2, .n_stages = 2, .widths = {6, 12}, .groups = 3, .num_classes = 4,
                             .gn_eps = 1e-6f};
    cnn_classifier m;
    cnn_build(&m, &want);
    float *p = param_alloc(&m.table);
    st_writer *w = st_writer_new();
    param_save(&m.table, p, w, "");
    char json[256];
    st_writer_set_metadata(w, "config", cnn_config_to_json(&want, json, sizeof json));
    st_writer_save(w, test_tmp_path("round.safetensors"));
    st_writer_free(w);
    st = safetensors_open(test_tmp_path("round.safetensors"));
    c = cnn_config_from_checkpoint(st, "", 0);
    CHECK(!memcmp(&c, &want, sizeof c), "the JSON reads back: %s", json);
    safetensors_close(st);
    free(p);
    cnn_free(&m);
}

/* Misuse of the passes is refused: logits or logit gradients of a model
 * without a head, a backward after an inference-mode forward. */
typedef struct misuse {
    int has_head, train, ask_logits, give_dlogits;
} misuse;

static void run_misuse(void *ctx)
{
    const misuse *u = ctx;
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 1, .widths = {4}, .groups = 2,
                                      .num_classes = u->has_head ? 1 : 0, .gn_eps = 1e-5f});
    arena ar = arena_create(cnn_plan_bytes(&m, 1, 4, 4, u->train));
    cnn_acts a;
    cnn_acts_alloc(&a, &m, &ar, 1, 4, 4, u->train);
    float *p = param_alloc(&m.table), x[16] = {0}, logits[1], dlogits[1] = {1};
    cnn_forward(&m, p, &a, x, NULL, u->ask_logits ? logits : NULL);
    cnn_backward(&m, p, &a, NULL, NULL, NULL, u->give_dlogits ? dlogits : NULL);
}

static void test_cnn_misuse(void)
{
    expect_die("logits without a head", run_misuse, &(misuse){0, 1, 1, 0},
               "logits asked of a model without a head (num_classes 0)");
    expect_die("logit gradients without a head", run_misuse, &(misuse){0, 1, 0, 1},
               "cnn_backward: logit gradients for a model without a head");
    expect_die("backward after inference", run_misuse, &(misuse){1, 0, 1, 1},
               "the forward ran in inference mode (nothing saved)");
    char err[512];
    CHECK(run_in_child(run_misuse, &(misuse){1, 1, 1, 1}, err, sizeof err) == 0, "one class, used right: %s", err);
}

/* ---- the activation plan ---- */

typedef struct span {
    const char *what;
    const float *p;
    size_t n;
} span;

static int by_address(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* Every span has room for its n floats: sorted by address, each ends at or
 * before the next begins, the last inside the arena; the plan is exactly
 * the sum of the spans (each rounded as the arena rounds). */
static void check_spans(const char *what, span *s, int n, const arena *ar, size_t plan)
{
    qsort(s, (size_t)n, sizeof *s, by_address);
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += arena_round((s[i].n ? s[i].n : 1) * sizeof(float));
        const char *end = (const char *)(s[i].p + s[i].n);
        CHECK(i + 1 == n ? end <= ar->base + ar->capacity : end <= (const char *)s[i + 1].p,
              "%s: %s (%zu floats) runs into %s", what, s[i].what, s[i].n, i + 1 < n ? s[i + 1].what : "the end");
    }
    CHECK(sum == plan, "%s: the plan is %zu bytes, its buffers %zu", what, plan, sum);
}

static void acts_of_size(void *ctx)
{
    const int *hw = ctx;
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 1, .n_stages = 2, .widths = {4, 4}, .groups = 2, .gn_eps = 1e-5f});
    cnn_plan_bytes(&m, 1, hw[0], hw[1], true);
}

static void test_cnn_plan(void)
{
    /* Stage 0's conv1 (32 → 8 channels) has the largest workspace; B·G = 24
     * and B·D = 48 floats are more than one 64-byte arena block. */
    const int B = 3, H = 8, W = 4, G = 8, D = 16;
    cnn_classifier m;
    cnn_build(&m, &(cnn_config){.in_chans = 32, .n_stages = 2, .widths = {8, D}, .groups = G, .num_classes = 2,
                                .gn_eps = 1e-5f});
    size_t plan = cnn_plan_bytes(&m, B, H, W, true);
    arena ar = arena_create(plan);
    cnn_acts a;
    cnn_acts_alloc(&a, &m, &ar, B, H, W, true);
    size_t ws = 0, max_act = 0, max_pool = 0;
    span s[32];
    int n = 0;
    for (int k = 0; k < 2; k++) {
        const cnn_stage_acts *t = &a.st[k];
        size_t w1 = conv2d_workspace_floats(&t->conv1), w2 = conv2d_workspace_floats(&t->conv2);
        if (k == 0)
            CHECK(w1 > w2, "test premise: stage 0's conv1 workspace %zu > conv2's %zu", w1, w2);
        ws = w1 > ws ? w1 : ws, ws = w2 > ws ? w2 : ws;
        size_t act = (size_t)B * m.stages[k].cout * t->H * t->W, pool = act / 4, g = (size_t)B * G;
        max_act = act > max_act ? act : max_act, max_pool = pool > max_pool ? pool : max_pool;
        s[n++] = (span){"c1", t->c1, act}, s[n++] = (span){"r1", t->r1, act};
        s[n++] = (span){"c2", t->c2, act}, s[n++] = (span){"r2", t->r2, act};
        s[n++] = (span){"mean1", t->mean1, g}, s[n++] = (span){"rstd1", t->rstd1, g};
        s[n++] = (span){"mean2", t->mean2, g}, s[n++] = (span){"rstd2", t->rstd2, g};
        s[n++] = (span){"pool", t->pool, pool};
    }
    s[n++] = (span){"workspace", a.workspace, ws}, s[n++] = (span){"features", a.features, (size_t)B * D};
    s[n++] = (span){"grad_a", a.grad_a, max_act}, s[n++] = (span){"grad_b", a.grad_b, max_act};
    s[n++] = (span){"grad_p", a.grad_p, max_pool}, s[n++] = (span){"dfeat", a.dfeat, (size_t)B * D};
    check_spans("train", s, n, &ar, plan);
    arena_free(&ar);

    /* Inference: two conv/activation buffers, two pool buffers taking turns. */
    plan = cnn_plan_bytes(&m, B, H, W, false);
    ar = arena_create(plan);
    memset(&a, 0xff, sizeof a);
    cnn_acts_alloc(&a, &m, &ar, B, H, W, false);
    CHECK(!a.train && !a.grad_a && !a.grad_b && !a.grad_p && !a.dfeat && !a.st[0].mean1 && !a.st[1].rstd2,
          "inference keeps no backward scratch");
    CHECK(a.st[0].c1 == a.st[1].c2 && a.st[0].r1 == a.st[1].r2 && a.st[0].c1 != a.st[0].r1 &&
              a.st[0].pool != a.st[1].pool,
          "inference shares its buffers");
    span si[] = {{"workspace", a.workspace, ws},      {"features", a.features, (size_t)B * D},
                 {"conv", a.st[0].c1, max_act},        {"act", a.st[0].r1, max_act},
                 {"pool 0", a.st[0].pool, max_pool},   {"pool 1", a.st[1].pool, max_pool}};
    check_spans("inference", si, 6, &ar, plan);
    arena_free(&ar);
    cnn_free(&m);

    /* Two stages: 4 pixels each way at least, each direction on its own. */
    char err[512];
    CHECK(run_in_child(acts_of_size, (int[]){4, 4}, err, sizeof err) == 0, "4x4 is enough for two stages: %s", err);
    expect_die("4x2 for two stages", acts_of_size, (int[]){4, 2},
               "need images of at least 4x4 pixels (stage 1 gets 2x1)");
    expect_die("2x4 for two stages", acts_of_size, (int[]){2, 4},
               "need images of at least 4x4 pixels (stage 1 gets 1x2)");
}

int main(void)
{
    RUN(test_cnn_table);
    RUN(test_cnn_matches_torch);
    RUN(test_cnn_bad_configurations);
    RUN(test_cnn_config_checks);
    RUN(test_cnn_config_json);
    RUN(test_cnn_config_from_files);
    RUN(test_cnn_misuse);
    RUN(test_cnn_plan);
    return test_summary();
}
