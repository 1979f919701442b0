/* The parameter table (src/models/params.c) on its own: registration and
 * its refusals, offsets and alignment, counting, every init rule's
 * distribution (bounds, mean, spread, fan-in and fan-out as torch counts
 * them), one random stream per tensor, and loading by name: prefixes, the
 * three extra-tensor modes, missing tensors, non-finite weights and negative
 * BatchNorm variances.  The models' own tests see this code only through
 * their tables; a wrong bound or a skipped check would pass there. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "models/params.h"
#include "test.h"

/* ---- registration ---- */

static void test_offsets_are_16_float_aligned(void)
{
    param_table t = {0};
    size_t a = param_add(&t, "a", INIT_ZERO, 2, (int64_t[]){3, 5});
    size_t b = param_add(&t, "b", INIT_ZERO, 1, (int64_t[]){16});
    size_t c = param_add(&t, "c", INIT_ZERO, 0, NULL);
    size_t d = param_add(&t, "d", INIT_ZERO, 1, (int64_t[]){0});
    size_t e = param_add(&t, "e", INIT_ZERO, 4, (int64_t[]){2, 3, 1, 3});
    CHECK(a == 0 && b == 16 && c == 32 && d == 48 && e == 48, "offsets %zu %zu %zu %zu %zu, want 0 16 32 48 48", a, b,
          c, d, e);
    CHECK(t.total == 48 + 32, "total %zu, want 80", t.total);
    const param_entry *pe = param_find(&t, "e"), *pc = param_find(&t, "c"), *pd = param_find(&t, "d");
    CHECK(pe && pe->numel == 18 && pe->ndim == 4 && pe->shape[0] == 2 && pe->shape[3] == 3, "e's entry");
    CHECK(pc && pc->numel == 1 && pc->ndim == 0, "a scalar has one element");
    CHECK(pd && pd->numel == 0, "an empty tensor has none");
    const param_entry *pa = param_find(&t, "a");
    CHECK(pa && pa->shape[2] == 0 && pa->shape[3] == 0 && pc->shape[0] == 0, "unused dimensions are 0");
    CHECK(param_count_all(&t) == 15 + 16 + 1 + 0 + 18, "count_all %zu", param_count_all(&t));
    param_table_free(&t);
    CHECK(t.n == 0 && t.cap == 0 && !t.entries && t.total == 0, "a freed table is empty");
}

static void test_add_defaults_and_kinds(void)
{
    param_table t = {0};
    param_add(&t, "w", INIT_NORMAL, 1, (int64_t[]){4});
    param_add(&t, "x", INIT_XAVIER_UNIFORM, 2, (int64_t[]){4, 4});
    param_add_ex(&t, "pos", INIT_EXTERNAL, 0, PARAM_FROZEN, 1, (int64_t[]){7});
    param_add_ex(&t, "bn.running_mean", INIT_ZERO, 0, PARAM_BUFFER, 1, (int64_t[]){3});
    param_add_ex(&t, "bn.weight", INIT_NORMAL_ONE, 0.25f, PARAM_TRAINABLE, 1, (int64_t[]){3});
    const param_entry *w = param_find(&t, "w"), *x = param_find(&t, "x"), *bnw = param_find(&t, "bn.weight");
    CHECK(w && w->init_arg == 0.02f && w->kind == PARAM_TRAINABLE, "param_add gives INIT_NORMAL std 0.02");
    CHECK(x && x->init_arg == 0.0f && x->kind == PARAM_TRAINABLE, "param_add gives other rules no argument");
    CHECK(bnw && bnw->init_arg == 0.25f && bnw->init == INIT_NORMAL_ONE, "param_add_ex keeps its argument");
    CHECK(param_count(&t, PARAM_TRAINABLE) == 4 + 16 + 3, "trainable %zu", param_count(&t, PARAM_TRAINABLE));
    CHECK(param_count(&t, PARAM_FROZEN) == 7, "frozen %zu", param_count(&t, PARAM_FROZEN));
    CHECK(param_count(&t, PARAM_BUFFER) == 3, "buffers %zu", param_count(&t, PARAM_BUFFER));
    CHECK(!param_find(&t, "bn") && !param_find(&t, "bn.weightx") && !param_find(&t, ""), "only exact names are found");
    param_table_free(&t);
}

/* The table grows past its first 64 entries, keeping every earlier one. */
static void test_many_entries(void)
{
    param_table t = {0};
    char name[PARAM_NAME_MAX];
    for (int i = 0; i < 300; i++) {
        size_t before = t.total;
        CHECK(param_add(&t, param_name(name, "blocks.%d.w", i), INIT_ZERO, 1, (int64_t[]){i + 1}) == before,
              "entry %d's offset", i);
    }
    size_t want = 0;
    for (int i = 0; i < 300; i++) {
        const param_entry *e = param_find(&t, param_name(name, "blocks.%d.w", i));
        CHECK(e && e->offset == want && e->numel == (size_t)i + 1, "entry %d after growth", i);
        want += ((size_t)i + 1 + 15) / 16 * 16;
    }
    CHECK(t.n == 300 && t.total == want, "n %d total %zu", t.n, t.total);
    param_table_free(&t);
}

static void test_param_name(void)
{
    char buf[PARAM_NAME_MAX];
    CHECK(!strcmp(param_name(buf, "blocks.%d.attn.%s", 11, "qkv.weight"), "blocks.11.attn.qkv.weight"), "'%s'", buf);
    char long_part[300];
    memset(long_part, 'x', sizeof long_part - 1);
    long_part[sizeof long_part - 1] = 0;
    param_name(buf, "a.%s", long_part);
    CHECK(strlen(buf) == PARAM_NAME_MAX - 1 && !strncmp(buf, "a.xxx", 5),
          "a long name is cut to %d characters, got %zu", PARAM_NAME_MAX - 1, strlen(buf));
}

typedef struct bad_add {
    const char *name;
    int ndim;
} bad_add;

static void add_bad(void *ctx)
{
    const bad_add *b = ctx;
    param_table t = {0};
    param_add(&t, "taken", INIT_ZERO, 1, (int64_t[]){2});
    param_add(&t, b->name, INIT_ZERO, b->ndim, (int64_t[]){1, 1, 1, 1, 1, 1});
}

static void test_add_refusals(void)
{
    char at_limit[PARAM_NAME_MAX + 1], over[PARAM_NAME_MAX + 1];
    memset(at_limit, 'n', PARAM_NAME_MAX - 1);
    at_limit[PARAM_NAME_MAX - 1] = 0;
    memset(over, 'n', PARAM_NAME_MAX);
    over[PARAM_NAME_MAX] = 0;
    expect_die("5 dimensions", add_bad, &(bad_add){"w", 5}, "internal: parameter 'w' has 5 dimensions");
    expect_die("-1 dimensions", add_bad, &(bad_add){"w", -1}, "internal: parameter 'w' has -1 dimensions");
    expect_die("a name twice", add_bad, &(bad_add){"taken", 1}, "internal: parameter 'taken' registered twice");
    expect_die("a name of 128 characters", add_bad, &(bad_add){over, 1}, "is too long");
    char err[512];
    CHECK(run_in_child(add_bad, &(bad_add){at_limit, 4}, err, sizeof err) == 0,
          "4 dimensions and a name of 127 characters are allowed: %s", err);
}

/* ---- allocation and initialisation ---- */

static void alloc_huge(void *ctx)
{
    (void)ctx;
    param_table t = {0};
    param_add(&t, "huge", INIT_ZERO, 2, (int64_t[]){1 << 20, 1 << 20});
    param_alloc(&t);
}

static void test_alloc(void)
{
    /* 2^40 floats: refused by malloc, not by the kernel later (ASan's
     * allocator aborts instead of returning NULL). */
    if (!getenv("ASAN_OPTIONS"))
        expect_die("4 TiB of parameters", alloc_huge, NULL, "out of memory allocating 4194304.0 MiB of parameters");

    param_table t = {0};
    float *p = param_alloc(&t);
    CHECK(p && (uintptr_t)p % ARENA_ALIGN == 0, "an empty table still gets an aligned buffer");
    free(p);
    param_add(&t, "w", INIT_ZERO, 1, (int64_t[]){1000});
    p = param_alloc(&t);
    int zero = 1;
    for (size_t i = 0; i < t.total; i++)
        zero &= p[i] == 0.0f;
    CHECK((uintptr_t)p % ARENA_ALIGN == 0 && zero, "aligned and zero-filled");
    free(p);
    param_table_free(&t);
}

typedef struct stats {
    double mean, std, max_abs;
} stats;

static stats stats_of(const float *p, size_t n)
{
    double s = 0, s2 = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        s += p[i];
        m = fmax(m, fabs(p[i]));
    }
    for (size_t i = 0; i < n; i++)
        s2 += (p[i] - s / n) * (p[i] - s / n);
    return (stats){s / n, sqrt(s2 / n), m};
}

/* A uniform U(±bound) sample: inside the bound, reaching close to it, mean
 * near 0 and spread near bound/√3 (n ≥ 4096, so 5 % on the spread is about
 * 6 standard errors). */
static void check_uniform(const char *what, const float *p, size_t n, double bound)
{
    stats s = stats_of(p, n);
    CHECK(s.max_abs <= bound && s.max_abs > 0.99 * bound, "%s: max |w| %.6g, want just below %.6g", what, s.max_abs,
          bound);
    CHECK(fabs(s.mean) < 0.05 * bound, "%s: mean %.4g", what, s.mean);
    CHECK(fabs(s.std / (bound / sqrt(3.0)) - 1) < 0.05, "%s: std %.5g, want %.5g", what, s.std, bound / sqrt(3.0));
}

static void check_normal(const char *what, const float *p, size_t n, double mean, double std)
{
    stats s = stats_of(p, n);
    CHECK(fabs(s.mean - mean) < 0.05 * std, "%s: mean %.5g, want %.5g", what, s.mean, mean);
    CHECK(fabs(s.std / std - 1) < 0.05, "%s: std %.5g, want %.5g", what, s.std, std);
}

static void test_init_rules(void)
{
    param_table t = {0};
    /* A conv weight [out, in, kh, kw]: torch's fan_in = in·kh·kw = 288 and
     * fan_out = out·kh·kw = 576. */
    size_t conv = param_add(&t, "conv.weight", INIT_XAVIER_UNIFORM, 4, (int64_t[]){64, 32, 3, 3});
    size_t lin = param_add(&t, "linear.weight", INIT_XAVIER_UNIFORM, 2, (int64_t[]){96, 160});
    size_t vec = param_add(&t, "vector", INIT_XAVIER_UNIFORM, 1, (int64_t[]){5000});
    size_t tdef = param_add(&t, "tdef.weight", INIT_TORCH_DEFAULT, 4, (int64_t[]){43, 7, 3, 3});
    size_t tbias = param_add_ex(&t, "tdef.bias", INIT_TORCH_BIAS, 128, PARAM_TRAINABLE, 1, (int64_t[]){8190});
    size_t nobias = param_add_ex(&t, "nofan.bias", INIT_TORCH_BIAS, 0, PARAM_TRAINABLE, 1, (int64_t[]){15});
    size_t normal = param_add_ex(&t, "normal", INIT_NORMAL, 0.5f, PARAM_TRAINABLE, 1, (int64_t[]){8191});
    size_t normal1 = param_add_ex(&t, "bn.weight", INIT_NORMAL_ONE, 0.02f, PARAM_TRAINABLE, 1, (int64_t[]){8193});
    size_t zero = param_add(&t, "zero", INIT_ZERO, 1, (int64_t[]){20});
    size_t one = param_add(&t, "one", INIT_ONE, 1, (int64_t[]){20});
    size_t cst = param_add_ex(&t, "constant", INIT_CONSTANT, -2.5f, PARAM_TRAINABLE, 1, (int64_t[]){20});
    size_t ext = param_add(&t, "external", INIT_EXTERNAL, 1, (int64_t[]){20});
    float *p = param_alloc(&t);
    for (size_t i = 0; i < t.total; i++)
        p[i] = 7.0f; /* what each rule must overwrite, or leave */
    param_init(&t, p, 123);

    check_uniform("xavier conv", p + conv, 64 * 32 * 9, sqrt(6.0 / (288 + 576)));
    check_uniform("xavier linear", p + lin, 96 * 160, sqrt(6.0 / (160 + 96)));
    check_uniform("xavier 1-d (fan_in 1, fan_out 5000)", p + vec, 5000, sqrt(6.0 / 5001));
    check_uniform("torch default conv", p + tdef, 43 * 7 * 9, 1 / sqrt(63.0));
    check_uniform("torch bias, fan_in 128", p + tbias, 8190, 1 / sqrt(128.0));
    check_normal("normal std 0.5", p + normal, 8191, 0, 0.5);
    check_normal("normal around one", p + normal1, 8193, 1, 0.02);
    int ok_zero = 1, ok_one = 1, ok_cst = 1, ok_ext = 1, ok_nobias = 1;
    for (int i = 0; i < 20; i++) {
        ok_zero &= p[zero + i] == 0.0f;
        ok_one &= p[one + i] == 1.0f;
        ok_cst &= p[cst + i] == -2.5f;
        ok_ext &= p[ext + i] == 7.0f;
    }
    for (int i = 0; i < 15; i++)
        ok_nobias &= p[nobias + i] == 0.0f;
    CHECK(ok_zero && ok_one && ok_cst, "zero, one and constant rules");
    CHECK(ok_ext, "INIT_EXTERNAL leaves the buffer alone");
    CHECK(ok_nobias, "a torch bias without a fan-in is zero");
    /* Every rule writes each of its elements and nothing past them: the
     * padding up to the next 16-float boundary keeps its 7s. */
    for (int i = 0; i < t.n; i++) {
        const param_entry *e = &t.entries[i];
        size_t kept = 0, padding = 0;
        for (size_t k = 0; k < e->numel; k++)
            kept += p[e->offset + k] == 7.0f;
        for (size_t k = e->offset + e->numel; k < (e->offset + e->numel + 15) / 16 * 16; k++)
            padding += p[k] != 7.0f;
        CHECK(padding == 0 && (e->init == INIT_EXTERNAL ? kept == e->numel : kept == 0),
              "%s: %zu of %zu elements left as they were, %zu padding values written", e->name, kept, e->numel,
              padding);
    }
    free(p);
    param_table_free(&t);
}

/* One stream per tensor: a tensor appended later changes nothing before
 * it; two tensors of the same shape and rule differ; the seed decides. */
static void test_init_streams(void)
{
    param_table small = {0}, big = {0};
    for (param_table *t = &small; t; t = t == &small ? &big : NULL) {
        param_add(t, "a", INIT_NORMAL, 1, (int64_t[]){33});
        param_add(t, "b", INIT_NORMAL, 1, (int64_t[]){33});
    }
    param_add(&big, "c", INIT_TORCH_DEFAULT, 2, (int64_t[]){4, 4});
    float *p1 = param_alloc(&small), *p2 = param_alloc(&big), *p3 = param_alloc(&small), *p4 = param_alloc(&small);
    param_init(&small, p1, 5);
    param_init(&big, p2, 5);
    param_init(&small, p3, 5);
    param_init(&small, p4, 6);
    CHECK(!memcmp(p1, p2, small.total * sizeof(float)), "appending a tensor keeps the others' values");
    CHECK(!memcmp(p1, p3, small.total * sizeof(float)), "the same seed gives the same values");
    CHECK(memcmp(p1, p4, 33 * sizeof(float)) && memcmp(p1 + 48, p4 + 48, 33 * sizeof(float)),
          "another seed gives other values");
    CHECK(memcmp(p1, p1 + 48, 33 * sizeof(float)), "two tensors get their own streams");
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    param_table_free(&small);
    param_table_free(&big);
}

/* The first two values of each random rule for seed 5, pinned: a run
 * started from scratch must start from the same weights in every version
 * (a changed stream number or a flipped sign keeps every statistic). */
static void test_init_golden_values(void)
{
    param_table t = {0};
    param_add(&t, "a", INIT_NORMAL, 1, (int64_t[]){33});
    param_add(&t, "b", INIT_NORMAL, 1, (int64_t[]){33});
    param_add_ex(&t, "c", INIT_NORMAL_ONE, 0.5f, PARAM_TRAINABLE, 1, (int64_t[]){3});
    param_add(&t, "d", INIT_XAVIER_UNIFORM, 2, (int64_t[]){4, 4});
    param_add(&t, "e", INIT_TORCH_DEFAULT, 2, (int64_t[]){4, 4});
    param_add_ex(&t, "f", INIT_TORCH_BIAS, 4, PARAM_TRAINABLE, 1, (int64_t[]){3});
    float *p = param_alloc(&t);
    param_init(&t, p, 5);
    const float want[6][2] = {{-0.00516907079f, 0.00202607433f}, {-0.00880578812f, -0.0213657636f},
                              {1.6767261f, 1.07136667f},         {-0.685458064f, 0.690452099f},
                              {-0.123141229f, -0.3388713f},      {0.425689816f, -0.121453285f}};
    for (int i = 0; i < t.n; i++)
        for (int k = 0; k < 2; k++) {
            float got = p[t.entries[i].offset + k];
            CHECK(fabsf(got - want[i][k]) <= 1e-6f * fabsf(want[i][k]), "%s[%d] = %.9g, pinned %.9g",
                  t.entries[i].name, k, got, want[i][k]);
        }
    free(p);
    param_table_free(&t);
}

/* ---- loading and saving ---- */

/* The table the load tests use: a weight, a BatchNorm's running variance
 * and a name that only ends in "running_var". */
static void load_table(param_table *t)
{
    param_add(t, "a.weight", INIT_NORMAL, 2, (int64_t[]){2, 3});
    param_add_ex(t, "bn.running_var", INIT_ONE, 0, PARAM_BUFFER, 1, (int64_t[]){4});
    param_add(t, "x.not_running_var", INIT_ZERO, 1, (int64_t[]){2});
}

static const float WEIGHT[6] = {1, -2, 3, -4, 5, -6}, VAR[4] = {0.5f, 0, 2, 1e-6f}, NOT_VAR[2] = {-1, -3};

/* Writes `path` with the table's three tensors under `prefix`, the
 * running variance's element `var_index` set to `var_value` (when ≥ 0),
 * the weight's element 4 set to `weight4`, and `extras` more tensors. */
typedef struct file_spec {
    const char *prefix;
    int var_index;
    float var_value, weight4;
    int extras;
    int drop_var; /* leave the running variance out */
} file_spec;

static const char *write_weights(const char *name, file_spec f)
{
    float w[6], v[4], extra[2] = {9, 9};
    memcpy(w, WEIGHT, sizeof w);
    memcpy(v, VAR, sizeof v);
    w[4] = f.weight4;
    if (f.var_index >= 0)
        v[f.var_index] = f.var_value;
    char key[PARAM_NAME_MAX + 64];
    st_writer *wr = st_writer_new();
    for (int i = 0; i < f.extras; i++) { /* first in the file: the scan for extras starts there */
        snprintf(key, sizeof key, "%sextra.%d", f.prefix, i);
        st_writer_add_f32(wr, key, 1, (int64_t[]){2}, extra);
    }
    snprintf(key, sizeof key, "%sa.weight", f.prefix);
    st_writer_add_f32(wr, key, 2, (int64_t[]){2, 3}, w);
    if (!f.drop_var) {
        snprintf(key, sizeof key, "%sbn.running_var", f.prefix);
        st_writer_add_f32(wr, key, 1, (int64_t[]){4}, v);
    }
    snprintf(key, sizeof key, "%sx.not_running_var", f.prefix);
    st_writer_add_f32(wr, key, 1, (int64_t[]){2}, NOT_VAR);
    if (f.prefix[0]) /* a tensor outside the prefix */
        st_writer_add_f32(wr, "other.model.weight", 1, (int64_t[]){2}, extra);
    const char *path = test_tmp_path(name);
    st_writer_save(wr, path);
    st_writer_free(wr);
    return path;
}

typedef struct load_case {
    const char *path, *prefix;
    param_load_mode mode;
} load_case;

static void load_into_table(void *ctx)
{
    const load_case *c = ctx;
    param_table t = {0};
    load_table(&t);
    float *p = param_alloc(&t);
    safetensors *st = safetensors_open(c->path);
    param_load(&t, p, st, c->prefix, c->mode);
    safetensors_close(st);
    free(p);
    param_table_free(&t);
}

static file_spec plain(const char *prefix)
{
    return (file_spec){.prefix = prefix, .var_index = -1, .weight4 = 5};
}

static void test_load_values_and_prefix(void)
{
    test_tmp_dir("params");
    param_table t = {0};
    load_table(&t);
    float *p = param_alloc(&t);
    const char *path = write_weights("ema.safetensors", plain("ema."));
    safetensors *st = safetensors_open(path);
    param_load(&t, p, st, "ema.", PARAM_STRICT);
    safetensors_close(st);
    CHECK(!memcmp(p + param_find(&t, "a.weight")->offset, WEIGHT, sizeof WEIGHT) &&
              !memcmp(p + param_find(&t, "bn.running_var")->offset, VAR, sizeof VAR) &&
              !memcmp(p + param_find(&t, "x.not_running_var")->offset, NOT_VAR, sizeof NOT_VAR),
          "the values under 'ema.' are loaded (a zero variance and a negative value elsewhere are allowed)");

    /* Saved under another prefix and read back: the same bytes. */
    st_writer *w = st_writer_new();
    param_save(&t, p, w, "model.");
    const char *saved = test_tmp_path("saved.safetensors");
    st_writer_save(w, saved);
    st_writer_free(w);
    st = safetensors_open(saved);
    CHECK(st->n_tensors == 3 && safetensors_find(st, "model.a.weight") && safetensors_find(st, "model.bn.running_var"),
          "param_save writes every entry under its prefix");
    float *q = param_alloc(&t);
    param_load(&t, q, st, "model.", PARAM_STRICT);
    CHECK(!memcmp(p, q, t.total * sizeof(float)), "a saved table loads back exactly");
    safetensors_close(st);
    free(q);
    free(p);
    param_table_free(&t);
}

static void test_load_extras(void)
{
    test_tmp_dir("params");
    char err[4096];
    /* Tensors outside the prefix never count, even in a strict load. */
    const char *none = write_weights("none.safetensors", plain("ema."));
    CHECK(run_in_child(load_into_table, &(load_case){none, "ema.", PARAM_STRICT}, err, sizeof err) == 0 && !err[0],
          "a strict load ignores other prefixes: '%s'", err);

    const char *one = write_weights("one.safetensors", (file_spec){.prefix = "", .var_index = -1, .weight4 = 5,
                                                                   .extras = 1});
    expect_die("strict, one extra", load_into_table, &(load_case){one, "", PARAM_STRICT},
               "unexpected tensor 'extra.0' (shape [2]) that this model does not have");
    CHECK(run_in_child(load_into_table, &(load_case){one, "", PARAM_IGNORE_EXTRA}, err, sizeof err) == 0 && !err[0],
          "ignore-extra is silent: '%s'", err);

    for (int extras = 5; extras <= 7; extras++) {
        char name[64];
        snprintf(name, sizeof name, "extras%d.safetensors", extras);
        const char *path = write_weights(name, (file_spec){.prefix = "ema.", .var_index = -1, .weight4 = 5,
                                                           .extras = extras});
        int rc = run_in_child(load_into_table, &(load_case){path, "ema.", PARAM_ALLOW_EXTRA}, err, sizeof err);
        char total[64];
        snprintf(total, sizeof total, "ignored %d extra tensors in all", extras);
        CHECK(rc == 0 && count_of(err, "ignoring extra tensor 'ema.extra.") == 5 &&
                  strstr(err, "ignoring extra tensor 'ema.extra.4'") && !strstr(err, "other.model") &&
                  (extras > 5) == (strstr(err, total) != NULL) && count_of(err, "in all") == (extras > 5),
              "%d extras: status %d, stderr '%s'", extras, rc, err);
    }
    /* The strict message names the first extra with its prefix. */
    const char *pre = write_weights("pre.safetensors", (file_spec){.prefix = "ema.", .var_index = -1, .weight4 = 5,
                                                                   .extras = 2});
    expect_die("strict, with a prefix", load_into_table, &(load_case){pre, "ema.", PARAM_STRICT},
               "unexpected tensor 'ema.extra.0'");
}

static void test_load_refusals(void)
{
    test_tmp_dir("params");
    const char *missing = write_weights("missing.safetensors", (file_spec){.prefix = "", .var_index = -1, .weight4 = 5,
                                                                           .drop_var = 1});
    expect_die("a missing tensor", load_into_table, &(load_case){missing, "", PARAM_ALLOW_EXTRA},
               "missing tensor 'bn.running_var' (expected shape [4]); is this the right model/configuration?");
    const char *wrong_prefix = write_weights("prefix.safetensors", plain(""));
    expect_die("the wrong prefix", load_into_table, &(load_case){wrong_prefix, "ema.", PARAM_IGNORE_EXTRA},
               "missing tensor 'ema.a.weight' (expected shape [2, 3])");

    const char *nan = write_weights("nan.safetensors", (file_spec){.prefix = "", .var_index = -1, .weight4 = NAN});
    expect_die("a NaN weight", load_into_table, &(load_case){nan, "", PARAM_STRICT},
               "tensor 'a.weight' holds nan at index 4: the weights are not finite");
    const char *inf = write_weights("inf.safetensors", (file_spec){.prefix = "", .var_index = 3, .var_value = -INFINITY,
                                                                   .weight4 = 5});
    expect_die("an infinite variance", load_into_table, &(load_case){inf, "", PARAM_STRICT},
               "tensor 'bn.running_var' holds -inf at index 3: the weights are not finite");
    for (int i = 0; i < 4; i += 3) {
        const char *neg = write_weights("neg.safetensors", (file_spec){.prefix = "m.", .var_index = i,
                                                                       .var_value = -1e-30f, .weight4 = 5});
        char want[128];
        snprintf(want, sizeof want, "tensor 'm.bn.running_var' holds -1e-30 at index %d: a BatchNorm running", i);
        expect_die("a negative variance", load_into_table, &(load_case){neg, "m.", PARAM_STRICT}, want);
    }
}

/* Names at the length limit save and load under a prefix (the key holds
 * both); a reload into used memory checks the variance's own elements,
 * not the stale values of the tensor after it. */
static void test_long_names_and_reload(void)
{
    test_tmp_dir("params");
    char long_name[PARAM_NAME_MAX];
    memset(long_name, 'w', PARAM_NAME_MAX - 1);
    long_name[PARAM_NAME_MAX - 1] = 0;
    param_table t = {0};
    size_t var = param_add_ex(&t, "bn.running_var", INIT_ONE, 0, PARAM_BUFFER, 1, (int64_t[]){16});
    size_t lw = param_add(&t, long_name, INIT_ZERO, 1, (int64_t[]){2});
    float *p = param_alloc(&t);
    param_init(&t, p, 1);
    p[lw] = -1, p[lw + 1] = 2;
    st_writer *w = st_writer_new();
    param_save(&t, p, w, "ema_model.");
    const char *path = test_tmp_path("long.safetensors");
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors *st = safetensors_open(path);
    char key[PARAM_NAME_MAX + 16];
    snprintf(key, sizeof key, "ema_model.%s", long_name);
    CHECK(safetensors_find(st, key) != NULL, "the long name is saved whole under its prefix");
    float *q = param_alloc(&t);
    for (size_t i = 0; i < t.total; i++)
        q[i] = -5.0f; /* what an earlier load left */
    param_load(&t, q, st, "ema_model.", PARAM_STRICT);
    CHECK(!memcmp(q + var, p + var, 16 * sizeof(float)) && q[lw] == -1 && q[lw + 1] == 2, "reloaded values");
    safetensors_close(st);
    free(p);
    free(q);
    param_table_free(&t);
}

/* Which names are BatchNorm variances: "running_var" alone or after a dot. */
static void load_one_negative(void *ctx)
{
    const char *name = ctx;
    param_table t = {0};
    param_add(&t, name, INIT_ONE, 1, (int64_t[]){3});
    float v[3] = {1, -1, 1};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, name, 1, (int64_t[]){3}, v);
    const char *path = test_tmp_path("one.safetensors");
    st_writer_save(w, path);
    st_writer_free(w);
    float *p = param_alloc(&t);
    safetensors *st = safetensors_open(path);
    param_load(&t, p, st, "", PARAM_STRICT);
    safetensors_close(st);
    free(p);
    param_table_free(&t);
}

static void test_running_var_names(void)
{
    test_tmp_dir("params");
    const char *checked[] = {"running_var", "bn.running_var", "a.b.running_var"};
    const char *unchecked[] = {"bn_running_var", "running_var.x", "bn.running_varx", "unning_var", "xrunning_var"};
    for (size_t i = 0; i < sizeof checked / sizeof *checked; i++)
        expect_die(checked[i], load_one_negative, (void *)checked[i],
                   "a BatchNorm running variance cannot be negative");
    char err[1024];
    for (size_t i = 0; i < sizeof unchecked / sizeof *unchecked; i++)
        CHECK(run_in_child(load_one_negative, (void *)unchecked[i], err, sizeof err) == 0,
              "'%s' is not a BatchNorm variance: %s", unchecked[i], err);
}

int main(void)
{
    RUN(test_offsets_are_16_float_aligned);
    RUN(test_add_defaults_and_kinds);
    RUN(test_many_entries);
    RUN(test_param_name);
    RUN(test_add_refusals);
    RUN(test_alloc);
    RUN(test_init_rules);
    RUN(test_init_streams);
    RUN(test_init_golden_values);
    RUN(test_load_values_and_prefix);
    RUN(test_load_extras);
    RUN(test_load_refusals);
    RUN(test_long_names_and_reload);
    RUN(test_running_var_names);
    return test_summary();
}
