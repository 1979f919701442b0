/* PyTorch .pt/.pth reader (src/io/zip_archive.c, pickle.c, torch_file.c).
 *
 *  - the fixtures of dev/ref/torch_file_ref.py (torch 1.13): every dtype,
 *    0-d, empty, transposed, sliced-with-offset and storage-sharing tensors,
 *    nested dicts and lists, in the zip and in the legacy format, equal the
 *    expected values bit for bit; non-tensor leaves are metadata;
 *  - a train_repae.py-style checkpoint equals its safetensors copy bit for
 *    bit, tensor by tensor and through the VAE and SiT loaders; its pickled
 *    argparse.Namespace is the "args" JSON;
 *  - malicious pickles (os.system, eval, torch.storage._load_from_bytes, a
 *    STACK_GLOBAL) are refused naming the global, and their side effect (a
 *    marker file) does not happen;
 *  - hostile archives and pickles built here (a tiny stored-ZIP writer and
 *    hand-written pickles): truncation, CRC, out-of-range and overlapping
 *    records, compressed members, storages smaller than the view, negative or
 *    overflowing sizes/strides, memo indices, deep and cyclic nesting, an
 *    exponential DAG, unknown opcodes, huge LONGs, truncated legacy storages,
 *    a FIFO; and a few hundred random corruptions: each a clean "repae: error:"
 *    naming the file (in a forked child), never a crash or a hang;
 *  - each limit at its boundary, both sides (the mutation runs of
 *    docs/testing.md): key and name lengths, nesting depth, dimensions, the
 *    bytes copied out for strided tensors, PK_MAX_BYTES; the byteorder record,
 *    the legacy magic, version and sys info.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/torch_file.h"
#include "io/weights_file.h"
#include "io/zip_archive.h"
#include "models/sit.h"
#include "models/vae.h"
#include "test.h"

#define FIX "tests/fixtures/io/"
#define MARKER "/tmp/repae_pt_pwned_marker"

/* ---- temp directory ---------------------------------------------------------- */

static const char *tmp_dir; /* test_tmp_dir(): removed at exit */
#define tmp_path test_tmp_path

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = xfopen(path, "wb");
    if (n)
        xfwrite(bytes, 1, n, f, path);
    xfclose(f, path);
}

static uint8_t *fixture_bytes(const char *path, size_t *n) { return (uint8_t *)read_file_all(path, n); }

/* ---- reading everything (the child of the death tests) ------------------------ */

static int is_float(st_dtype d) { return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16; }

/* Opens and reads every tensor; returns normally only if all of it worked. */
static void child_open_and_read(void *ctx)
{
    safetensors *st = torch_file_open((const char *)ctx);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (t->numel > (1 << 24))
            return;
        float *buf = xmalloc((size_t)t->numel * sizeof(double) + 8);
        if (is_float(t->dtype))
            safetensors_read_f32(st, t, buf);
        else
            safetensors_read_i64(st, t, (int64_t *)buf);
        free(buf);
    }
    safetensors_close(st);
}

/* The reader must exit 1 with one "repae: error:" line naming the file and the problem. */
static void expect_bad(const char *label, const char *path, const char *problem)
{
    char err[4096];
    int rc = run_in_child(child_open_and_read, (void *)path, err, sizeof err);
    if (rc != 1) {
        CHECK(0, "%s: the reader should exit 1, got %s %d; stderr \"%s\"", label,
              rc == 0 ? "a normal return, status" : rc > 128 ? "signal" : "status", rc > 128 ? rc - 128 : rc, err);
        return;
    }
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = 0;
    CHECK(strncmp(err, "repae: error: ", 14) == 0, "%s: message does not start with 'repae: error:': \"%s\"", label,
          err);
    CHECK(strstr(err, path) != NULL, "%s: message does not name the file %s: \"%s\"", label, path, err);
    CHECK(strstr(err, problem) != NULL, "%s: message lacks \"%s\": \"%s\"", label, problem, err);
}

/* ---- the fixtures --------------------------------------------------------------- */

static void compare_with_expected(const char *pt_path, int zip)
{
    safetensors *pt = torch_file_open(pt_path);
    safetensors *ex = safetensors_open(FIX "pt_tensors_expected.safetensors");
    cJSON *dtypes = cJSON_Parse(safetensors_meta(ex, "dtypes"));
    CHECK(dtypes != NULL, "expected fixture lacks its dtypes metadata");
    CHECK(pt->n_tensors == ex->n_tensors, "%s: %d tensors, expected %d", pt_path, pt->n_tensors, ex->n_tensors);
    CHECK(!strcmp(pt->format, zip ? "PyTorch zip" : "PyTorch legacy"), "%s: format %s", pt_path, pt->format);
    int bad = 0;
    for (int i = 0; i < ex->n_tensors; i++) {
        const st_tensor *e = &ex->tensors[i], *t = safetensors_find(pt, e->name);
        if (!t) {
            CHECK(0, "%s: tensor '%s' missing", pt_path, e->name);
            continue;
        }
        const cJSON *dj = cJSON_GetObjectItemCaseSensitive(dtypes, e->name);
        CHECK(cJSON_IsString(dj) && !strcmp(dj->valuestring, st_dtype_name(t->dtype)), "%s: '%s' has dtype %s, want %s",
              pt_path, e->name, st_dtype_name(t->dtype), cJSON_IsString(dj) ? dj->valuestring : "?");
        int same_shape = t->ndim == e->ndim;
        for (int d = 0; same_shape && d < t->ndim; d++)
            same_shape = t->shape[d] == e->shape[d];
        CHECK(same_shape, "%s: '%s' shape differs", pt_path, e->name);
        if (!same_shape)
            continue;
        size_t n = (size_t)e->numel;
        if (is_float(t->dtype)) {
            float *a = xmalloc(n * 4 + 4), *b = xmalloc(n * 4 + 4);
            safetensors_read_f32(pt, t, a);
            safetensors_read_f32(ex, e, b);
            if (memcmp(a, b, n * 4) && bad++ < 5)
                CHECK(0, "%s: '%s' values differ from torch's", pt_path, e->name);
            free(a), free(b);
        } else {
            int64_t *a = xmalloc(n * 8 + 8), *b = xmalloc(n * 8 + 8);
            safetensors_read_i64(pt, t, a);
            safetensors_read_i64(ex, e, b);
            if (memcmp(a, b, n * 8) && bad++ < 5)
                CHECK(0, "%s: '%s' values differ from torch's", pt_path, e->name);
            free(a), free(b);
        }
    }
    CHECK(bad == 0, "%s: %d tensors differ", pt_path, bad);
    /* Views of one storage share it (both contiguous: no copies); the
     * transposed one is a copy, outside the file's mapping. */
    const st_tensor *sa = safetensors_find(pt, "shared_a"), *sb = safetensors_find(pt, "shared_b");
    const st_tensor *tr = safetensors_find(pt, "transposed");
    CHECK(sa && sb && sb->bytes == sa->bytes + 4 * 4, "shared_b should point 4 floats after shared_a in one storage");
    const uint8_t *map = pt->data;
    CHECK(tr && !(tr->bytes >= map && tr->bytes < map + 1000000), "the transposed tensor should be a copy");
    const char *meta[][2] = {{"meta_int", "7"}, {"meta_str", "hello"}, {"meta_float", "0.25"}, {"meta_bool", "true"},
                             {"meta_list", "[1,2,3]"}};
    for (int i = 0; i < 5; i++) {
        const char *v = safetensors_meta(pt, meta[i][0]);
        CHECK(v && !strcmp(v, meta[i][1]), "%s: metadata %s = %s, want %s", pt_path, meta[i][0], v ? v : "(none)",
              meta[i][1]);
    }
    CHECK(pt->globals && strstr(pt->globals, "torch._utils._rebuild_tensor_v2") &&
              strstr(pt->globals, "torch.BFloat16Storage") && strstr(pt->globals, "collections.OrderedDict"),
          "globals list: %s", pt->globals ? pt->globals : "(null)");
    cJSON_Delete(dtypes);
    safetensors_close(pt);
    safetensors_close(ex);
}

static void test_zip_format_every_dtype_and_layout(void) { compare_with_expected(FIX "pt_tensors_zip.pt", 1); }
static void test_legacy_format_every_dtype_and_layout(void) { compare_with_expected(FIX "pt_tensors_legacy.pt", 0); }

/* torch.save(..., pickle_protocol=3/4/5): the same tensors (protocols 4 and
 * 5 frame every pickle, the legacy magic's included). */
static void test_pickle_protocols_3_to_5(void)
{
    compare_with_expected(FIX "pt_tensors_zip_p3.pt", 1);
    compare_with_expected(FIX "pt_tensors_zip_p4.pt", 1);
    compare_with_expected(FIX "pt_tensors_zip_p5.pt", 1);
    compare_with_expected(FIX "pt_tensors_legacy_p4.pt", 0);
}

/* ---- plain Python pickles (dev/ref/pickle_ref.py) --------------------------------- */

static const pk_value *dict_get(const pk_value *d, const char *key)
{
    for (int i = 0; d && d->kind == PK_DICT && i + 1 < d->n; i += 2)
        if (d->items[i]->kind == PK_STR && !strcmp(d->items[i]->s, key))
            return d->items[i + 1];
    return NULL;
}

static int is_int(const pk_value *v, int64_t want) { return v && v->kind == PK_INT && v->i == want; }

static int is_str(const pk_value *v, pk_kind kind, const char *want, size_t len)
{
    return v && v->kind == kind && v->len == len && memcmp(v->s, want, len) == 0 && v->s[len] == 0;
}

/* What pickle_load makes of pickle_ref.py's value, one protocol at a time. */
static void check_python_value(const char *path, const pk_value *v)
{
    CHECK(v->kind == PK_DICT && v->n == 2 * 15, "%s: a dict of 15 items expected (kind %s, %d entries)", path,
          pk_kind_name(v->kind), v->n);
    const pk_value *x = dict_get(v, "none");
    CHECK(x && x->kind == PK_NONE, "%s: none", path);
    x = dict_get(v, "true");
    CHECK(x && x->kind == PK_BOOL && x->i == 1, "%s: true", path);
    x = dict_get(v, "false");
    CHECK(x && x->kind == PK_BOOL && x->i == 0, "%s: false", path);
    static const int64_t ints[] = {0, 255, 256, 65535, 65536, -1, -129, INT32_MIN, INT32_MAX, (int64_t)1 << 31,
                                   -((int64_t)1 << 40), INT64_MAX, INT64_MIN};
    x = dict_get(v, "ints");
    CHECK(x && x->kind == PK_LIST && x->n == 13, "%s: ints list", path);
    for (int i = 0; x && x->kind == PK_LIST && i < x->n && i < 13; i++)
        CHECK(is_int(x->items[i], ints[i]), "%s: ints[%d] = %lld, want %lld", path, i, (long long)x->items[i]->i,
              (long long)ints[i]);
    x = dict_get(v, "float");
    CHECK(x && x->kind == PK_FLOAT && x->f == -1.5e300, "%s: float", path);
    CHECK(is_str(dict_get(v, "text"), PK_STR, "h\xc3\xa9llo \xe2\x9c\x93", 10), "%s: text", path);
    char xs[300];
    memset(xs, 'x', sizeof xs);
    CHECK(is_str(dict_get(v, "long_text"), PK_STR, xs, 300), "%s: long_text", path);
    CHECK(is_str(dict_get(v, "bytes"), PK_BYTES, "\x00\x7f\x80\xc3\xff", 5), "%s: bytes (latin1 in protocol 2)",
          path);
    CHECK(is_str(dict_get(v, "empty_bytes"), PK_BYTES, "", 0), "%s: empty bytes", path);
    char lb[512];
    for (int i = 0; i < 512; i++)
        lb[i] = (char)(i & 255);
    CHECK(is_str(dict_get(v, "long_bytes"), PK_BYTES, lb, 512), "%s: long_bytes", path);
    x = dict_get(v, "tuples");
    CHECK(x && x->kind == PK_TUPLE && x->n == 5, "%s: tuples", path);
    for (int k = 0; x && x->kind == PK_TUPLE && k < x->n; k++) {
        const pk_value *t = x->items[k];
        int ok = t->kind == PK_TUPLE && t->n == k;
        for (int j = 0; ok && j < k; j++)
            ok = is_int(t->items[j], j + 1);
        CHECK(ok, "%s: tuple of %d", path, k);
    }
    x = dict_get(v, "ordered");
    CHECK(x && x->kind == PK_DICT && x->n == 4 && is_str(x->items[0], PK_STR, "b", 1) && is_int(x->items[1], 2) &&
              is_str(x->items[2], PK_STR, "a", 1) && is_int(x->items[3], 1),
          "%s: OrderedDict, in its order", path);
    x = dict_get(v, "big_list");
    int ok = x && x->kind == PK_LIST && x->n == 1500;
    for (int i = 0; ok && i < 1500; i++)
        ok = is_int(x->items[i], i);
    CHECK(ok, "%s: a list of 1500 (two APPENDS)", path);
    x = dict_get(v, "big_dict");
    ok = x && x->kind == PK_DICT && x->n == 2400;
    for (int i = 0; ok && i < 1200; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        ok = is_str(x->items[2 * i], PK_STR, key, strlen(key)) && is_int(x->items[2 * i + 1], i);
    }
    CHECK(ok, "%s: a dict of 1200 (two SETITEMS)", path);
    x = dict_get(v, "shared");
    CHECK(x && x->kind == PK_LIST && x->n == 2 && x->items[0] == x->items[1] && x->items[0]->kind == PK_LIST &&
              x->items[0]->n == 2 && is_int(x->items[0]->items[0], 1) && is_int(x->items[0]->items[1], 2),
          "%s: one list stored twice should be one node (memo)", path);
}

static void test_python_pickles_every_protocol(void)
{
    for (int proto = 2; proto <= 5; proto++) {
        char path[128];
        snprintf(path, sizeof path, FIX "pickle_values_p%d.pkl", proto);
        size_t n, used = 0;
        uint8_t *d = fixture_bytes(path, &n);
        pk_arena *a = pk_arena_new();
        const pk_value *v = pickle_load(a, path, d, n, &used);
        CHECK(used == n, "%s: %zu of %zu bytes used", path, used, n);
        check_python_value(path, v);
        pk_arena_free(a);
        free(d);
    }
}

/* Opcodes that Python 3 does not write for these values (Python 2's
 * strings, DICT/LIST with a MARK, POP_MARK, DUP, the 8-byte lengths,
 * NEWOBJ_EX, OrderedDict from a list of pairs), one pickle each. */
static void test_handmade_pickle_opcodes(void)
{
#define LOAD(lit) pickle_load(a, "handmade", (const uint8_t *)(lit), sizeof(lit) - 1, NULL)
    pk_arena *a = pk_arena_new();
    CHECK(is_str(LOAD("\x80\x02U\x03" "abc."), PK_STR, "abc", 3), "SHORT_BINSTRING of UTF-8 is a str");
    CHECK(is_str(LOAD("\x80\x02U\x02\xff\xfe."), PK_BYTES, "\xff\xfe", 2), "SHORT_BINSTRING, not UTF-8, is bytes");
    CHECK(is_str(LOAD("\x80\x02T\x03\x00\x00\x00" "abc."), PK_STR, "abc", 3), "BINSTRING");
    CHECK(is_str(LOAD("\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00" "hi."), PK_STR, "hi", 2), "BINUNICODE8");
    CHECK(is_str(LOAD("\x80\x03" "B\x02\x00\x00\x00\x01\x02."), PK_BYTES, "\x01\x02", 2), "BINBYTES");
    CHECK(is_str(LOAD("\x80\x04\x8e\x01\x00\x00\x00\x00\x00\x00\x00\x09."), PK_BYTES, "\x09", 1), "BINBYTES8");
    CHECK(is_str(LOAD("\x80\x05\x96\x01\x00\x00\x00\x00\x00\x00\x00\x09."), PK_BYTES, "\x09", 1), "BYTEARRAY8");
    const pk_value *v = LOAD("\x80\x02(K\x01K\x02K\x03K\x04" "d.");
    CHECK(v->kind == PK_DICT && v->n == 4 && is_int(v->items[0], 1) && is_int(v->items[3], 4), "DICT");
    v = LOAD("\x80\x02(K\x05K\x06l.");
    CHECK(v->kind == PK_LIST && v->n == 2 && is_int(v->items[1], 6), "LIST");
    CHECK(is_int(LOAD("\x80\x02K\x01(K\x02K\x03" "1."), 1), "POP_MARK drops what is above the MARK");
    v = LOAD("\x80\x02K\x07" "2\x86.");
    CHECK(v->kind == PK_TUPLE && v->n == 2 && v->items[0] == v->items[1] && is_int(v->items[0], 7), "DUP");
    v = LOAD("\x80\x02\x8a\x05\x00\x00\x00\x00\xff.");
    CHECK(is_int(v, -((int64_t)1 << 32)), "LONG1 of 5 bytes is sign-extended: %lld", (long long)v->i);
    CHECK(is_int(LOAD("\x80\x02\x8a\x00."), 0), "LONG1 of 0 bytes is 0");
    v = LOAD("\x80\x02\x8b\x02\x00\x00\x00\x00\x80.");
    CHECK(is_int(v, -32768), "LONG4 of 2 bytes: %lld", (long long)v->i);
    CHECK(is_int(LOAD("\x80\x02M\xff\xff."), 65535), "BININT2 is unsigned");
    v = LOAD("\x80\x02" "ccollections\nOrderedDict\n]((K\x01K\x02t(K\x03K\x04te\x85R.");
    CHECK(v->kind == PK_DICT && v->n == 4 && is_int(v->items[0], 1) && is_int(v->items[1], 2) &&
              is_int(v->items[2], 3) && is_int(v->items[3], 4),
          "OrderedDict([(1, 2), (3, 4)])");
    v = LOAD("\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00" "cargparse\nNamespace\n)}\x92}b.");
    CHECK(v->kind == PK_OBJECT && pk_is_global(v->func, "argparse.Namespace") && v->state &&
              v->state->kind == PK_DICT,
          "NEWOBJ_EX of argparse.Namespace, then BUILD");
    v = LOAD("\x80\x02(K\x01\x94K\x02\x94h\x01h\x00t.");
    CHECK(v->kind == PK_TUPLE && v->n == 4 && is_int(v->items[2], 2) && is_int(v->items[3], 1),
          "MEMOIZE stores at the memo's length");
    pk_arena_free(a);
#undef LOAD
}

/* pickle_load refuses a pickle over its size limit before reading a byte. */
static void child_load_oversized(void *ctx)
{
    pk_arena *a = pk_arena_new();
    pickle_load(a, "huge.pkl", (const uint8_t *)ctx, (size_t)PK_MAX_BYTES + 1, NULL);
}

static void test_checkpoint_equals_safetensors_bit_for_bit(void)
{
    safetensors *pt = torch_file_open(FIX "pt_checkpoint.pt");
    safetensors *ref = safetensors_open(FIX "pt_checkpoint_ref.safetensors");
    int bad = 0, ema_differs = 0;
    for (int i = 0; i < ref->n_tensors; i++) {
        const st_tensor *r = &ref->tensors[i], *t = safetensors_find(pt, r->name);
        if (!t || t->dtype != r->dtype || t->numel != r->numel ||
            memcmp(safetensors_tensor_bytes(pt, t), r->bytes, (size_t)r->numel * st_dtype_size(r->dtype))) {
            if (bad++ < 5)
                CHECK(0, "checkpoint tensor '%s' differs from the safetensors copy", r->name);
            continue;
        }
        if (!strncmp(r->name, "ema.", 4) && r->dtype == ST_F32) {
            char other[300];
            snprintf(other, sizeof other, "model.%s", r->name + 4);
            const st_tensor *m = safetensors_find(pt, other);
            ema_differs |= m && memcmp(m->bytes, t->bytes, (size_t)t->numel * 4) != 0;
        }
    }
    CHECK(bad == 0, "%d checkpoint tensors differ", bad);
    CHECK(ema_differs, "ema.* should differ from model.* (two names, two tensors)");
    const char *steps = safetensors_meta(pt, "steps");
    CHECK(steps && !strcmp(steps, "400000"), "steps = %s", steps ? steps : "(none)");
    cJSON *args = cJSON_Parse(safetensors_meta(pt, "args") ? safetensors_meta(pt, "args") : "");
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(args, "sit_heads");
    const cJSON *betas = cJSON_GetObjectItemCaseSensitive(args, "betas");
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(args, "vae_ckpt");
    CHECK(cJSON_IsNumber(heads) && heads->valueint == 2 && cJSON_GetArraySize(betas) == 2 && cJSON_IsNull(ck),
          "args JSON: %s", safetensors_meta(pt, "args") ? safetensors_meta(pt, "args") : "(none)");
    cJSON_Delete(args);
    CHECK(safetensors_find(pt, "opt_vae.state.0.exp_avg_sq") && safetensors_find(pt, "opt_disc.state.0.step"),
          "AdamW states should be named opt_vae.state.0.exp_avg_sq, opt_disc.state.0.step");
    const char *lr = safetensors_meta(pt, "opt.param_groups.0.lr");
    CHECK(lr && !strcmp(lr, "0.001"), "opt.param_groups.0.lr = %s", lr ? lr : "(none)");

    /* Through the model loaders: the VAE and the EMA SiT from the .pt equal
     * the same from safetensors. */
    vae_config vc;
    CHECK(vae_config_detect(pt, "vae.", &vc) == 0, "no VAE under vae. in the checkpoint");
    vc.norm_groups = 2;
    vae a, b;
    vae_build(&a, &vc);
    vae_build(&b, &vc);
    float *aw = param_alloc(&a.table), *bw = param_alloc(&b.table);
    vae_load(&a, aw, pt, "vae.", PARAM_STRICT);
    vae_load(&b, bw, ref, "vae.", PARAM_STRICT);
    CHECK(memcmp(aw, bw, a.table.total * 4) == 0, "VAE from .pt != VAE from safetensors");
    vae_free(&a), vae_free(&b);
    free(aw), free(bw);
    sit_config sc = sit_config_default();
    sc.encoder_depth = 1;
    sit_config_from_weights(&sc, pt, "ema.", 2);
    sit s;
    sit_build(&s, &sc);
    float *pa = xcalloc(s.table.total, 4), *pb = xcalloc(s.table.total, 4);
    sit_load(&s, pa, pt, "ema.", PARAM_STRICT);
    sit_load(&s, pb, ref, "ema.", PARAM_STRICT);
    CHECK(memcmp(pa, pb, s.table.total * 4) == 0, "EMA SiT from .pt != from safetensors");
    free(pa), free(pb);
    sit_free(&s);
    safetensors_close(pt);
    safetensors_close(ref);
}

static void test_latents_stats_file(void)
{
    safetensors *st = torch_file_open(FIX "pt_latents_stats.pt");
    float scale[4], bias[4];
    safetensors_load_f32(st, "latents_scale", 4, (int64_t[]){1, 4, 1, 1}, scale);
    safetensors_load_f32(st, "latents_bias", 4, (int64_t[]){1, 4, 1, 1}, bias);
    for (int c = 0; c < 4; c++)
        CHECK(scale[c] >= 0.5f && scale[c] <= 1.5f && isfinite(bias[c]), "latents stats [%d]: %g %g", c, scale[c],
              bias[c]);
    safetensors_close(st);
}

/* ---- malicious pickles ------------------------------------------------------------- */

static void test_malicious_pickles_are_refused_and_nothing_runs(void)
{
    static const char *cases[][2] = {
        {FIX "evil_system.pt", "refusing to load global posix.system"},
        {FIX "evil_eval.pt", "refusing to load global __builtin__.eval"},
        {FIX "evil_load_from_bytes.pt", "refusing to load global torch.storage._load_from_bytes"},
        {FIX "evil_system_legacy.pt", "refusing to load global posix.system"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(MARKER);
        expect_bad(cases[i][0], cases[i][0], cases[i][1]);
        CHECK(access(MARKER, F_OK) != 0, "%s: the marker file exists: the pickle ran code!", cases[i][0]);
    }
}

/* ---- a tiny stored-ZIP writer and hand-written pickles ---------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (!n)
        return; /* an empty archive's directory: no bytes, maybe no buffer */
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(buf *b, uint16_t v) { put8(b, (uint8_t)v), put8(b, (uint8_t)(v >> 8)); }
static void put32(buf *b, uint32_t v) { put16(b, (uint16_t)v), put16(b, (uint16_t)(v >> 16)); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Writes a stored ZIP of n members to path.  zip64 1: every size and offset
 * goes through ZIP64 extra fields and the ZIP64 end records, as for a file
 * over 4 GB; the local headers carry a padding extra field the central
 * directory does not have (torch aligns data to 64 bytes that way).
 * zip64 2 (ZIP64_OFFSETS_ONLY): only the central offsets go through ZIP64
 * extra fields (8 bytes: the one field whose 32-bit value is 0xffffffff),
 * each after an unrelated extended-timestamp field.
 * zip64 3 (CENTRAL_REVERSED): a plain archive whose central directory lists
 * the members in the reverse of their order in the file (valid: the reader
 * sorts them by offset before its overlap check). */
#define ZIP64_OFFSETS_ONLY 2
#define CENTRAL_REVERSED 3
static const char *write_zip_ex(const char *name, int n, const char **names, const buf *datas, int mode)
{
    buf z = {0}, cd = {0};
    int zip64 = mode == 1, offsets_only = mode == ZIP64_OFFSETS_ONLY;
    size_t *entry_at = xcalloc((size_t)n + 1, sizeof *entry_at); /* where each central entry begins in cd */
    for (int i = 0; i < n; i++) {
        entry_at[i] = cd.n;
        uint32_t crc = (uint32_t)crc32(0, datas[i].p ? datas[i].p : (const Bytef *)"", (uInt)datas[i].n);
        uint64_t off = z.n, sz = datas[i].n;
        uint32_t sz32 = zip64 ? 0xffffffffu : (uint32_t)sz, off32 = zip64 || offsets_only ? 0xffffffffu : (uint32_t)off;
        uint16_t nl = (uint16_t)strlen(names[i]), pad = (uint16_t)(i * 5 + 3);
        put32(&z, 0x04034b50), put16(&z, zip64 ? 45 : 20), put16(&z, 0), put16(&z, 0), put16(&z, 0), put16(&z, 0);
        put32(&z, crc), put32(&z, sz32), put32(&z, sz32);
        put16(&z, nl), put16(&z, (uint16_t)((zip64 ? 20 : 0) + 4 + pad)), puts_(&z, names[i]);
        if (zip64)
            put16(&z, 1), put16(&z, 16), put32(&z, (uint32_t)sz), put32(&z, 0), put32(&z, (uint32_t)sz), put32(&z, 0);
        put16(&z, 0x4246), put16(&z, pad); /* "FB": padding, like torch's */
        for (int k = 0; k < pad; k++)
            put8(&z, 'Z');
        if (datas[i].n)
            put(&z, datas[i].p, datas[i].n);
        put32(&cd, 0x02014b50), put16(&cd, 45), put16(&cd, zip64 ? 45 : 20), put16(&cd, 0), put16(&cd, 0);
        put16(&cd, 0), put16(&cd, 0), put32(&cd, crc), put32(&cd, sz32), put32(&cd, sz32);
        put16(&cd, nl), put16(&cd, zip64 ? 28 : offsets_only ? 21 : 0), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0);
        put32(&cd, 0), put32(&cd, off32), puts_(&cd, names[i]);
        if (offsets_only) {
            put16(&cd, 0x5455), put16(&cd, 5), put8(&cd, 1), put32(&cd, 0); /* "UT": a modification time */
            put16(&cd, 1), put16(&cd, 8), put32(&cd, (uint32_t)off), put32(&cd, (uint32_t)(off >> 32));
        }
        if (zip64) {
            put16(&cd, 1), put16(&cd, 24);
            put32(&cd, (uint32_t)sz), put32(&cd, 0), put32(&cd, (uint32_t)sz), put32(&cd, 0);
            put32(&cd, (uint32_t)off), put32(&cd, (uint32_t)(off >> 32));
        }
    }
    entry_at[n] = cd.n;
    if (mode == CENTRAL_REVERSED) {
        buf reversed = {0};
        for (int i = n - 1; i >= 0; i--)
            put(&reversed, cd.p + entry_at[i], entry_at[i + 1] - entry_at[i]);
        free(cd.p);
        cd = reversed;
    }
    free(entry_at);
    uint64_t cd_off = z.n;
    put(&z, cd.p, cd.n);
    if (zip64) {
        uint64_t rec = z.n;
        put32(&z, 0x06064b50), put32(&z, 44), put32(&z, 0), put16(&z, 45), put16(&z, 45), put32(&z, 0), put32(&z, 0);
        put32(&z, (uint32_t)n), put32(&z, 0), put32(&z, (uint32_t)n), put32(&z, 0);
        put32(&z, (uint32_t)cd.n), put32(&z, 0), put32(&z, (uint32_t)cd_off), put32(&z, 0);
        put32(&z, 0x07064b50), put32(&z, 0), put32(&z, (uint32_t)rec), put32(&z, 0), put32(&z, 1);
    }
    put32(&z, 0x06054b50), put16(&z, 0), put16(&z, 0), put16(&z, zip64 ? 0xffff : (uint16_t)n);
    put16(&z, zip64 ? 0xffff : (uint16_t)n);
    put32(&z, zip64 ? 0xffffffffu : (uint32_t)cd.n), put32(&z, zip64 ? 0xffffffffu : (uint32_t)cd_off), put16(&z, 0);
    const char *path = tmp_path(name);
    write_bytes(path, z.p, z.n);
    free(z.p), free(cd.p);
    return path;
}

static const char *write_zip(const char *name, int n, const char **names, const buf *datas)
{
    return write_zip_ex(name, n, names, datas, 0);
}

/* A .pt whose data.pkl is `pkl` and whose storage "0" has `nbytes` bytes. */
static int pt_zip64;
static const char *write_pt(const char *name, const buf *pkl, size_t nbytes)
{
    buf data[3] = {*pkl, {0}, {0}};
    for (size_t i = 0; i < nbytes; i++)
        put8(&data[1], (uint8_t)(i * 7));
    puts_(&data[2], "3\n");
    const char *names[3] = {"arch/data.pkl", "arch/data/0", "arch/version"};
    const char *p = write_zip_ex(name, 3, names, data, pt_zip64);
    free(data[1].p), free(data[2].p);
    return p;
}

static void pk_str(buf *b, const char *s) { put8(b, 'X'), put32(b, (uint32_t)strlen(s)), puts_(b, s); }
static void pk_int(buf *b, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX)
        put8(b, 'J'), put32(b, (uint32_t)(int32_t)v);
    else {
        put8(b, 0x8a), put8(b, 8);
        for (int i = 0; i < 8; i++)
            put8(b, (uint8_t)((uint64_t)v >> (8 * i)));
    }
}

/* A persistent id ("storage", torch.<type>, key, "cpu", numel) as pickle opcodes. */
static buf storage_pid(const char *type, const char *key, int64_t numel)
{
    buf b = {0};
    put8(&b, '('), pk_str(&b, "storage"), puts_(&b, "ctorch\n"), puts_(&b, type), put8(&b, '\n');
    pk_str(&b, key), pk_str(&b, "cpu"), pk_int(&b, numel), put8(&b, 't');
    return b;
}

/* _rebuild_tensor_v2(BINPERSID(pid), offset, size, stride, False, OrderedDict()); the size as a list
 * instead of a tuple when sizes_as_list is set. */
static int sizes_as_list;
static void put_tensor_call(buf *b, const buf *pid, int64_t offset, int ndim, const int64_t *size,
                            const int64_t *stride)
{
    puts_(b, "ctorch._utils\n_rebuild_tensor_v2\n(");
    put(b, pid->p, pid->n), put8(b, 'Q');
    pk_int(b, offset);
    if (sizes_as_list)
        put8(b, ']');
    put8(b, '(');
    for (int d = 0; d < ndim; d++)
        pk_int(b, size[d]);
    put8(b, sizes_as_list ? 'e' : 't'), put8(b, '(');
    for (int d = 0; d < ndim; d++)
        pk_int(b, stride[d]);
    put8(b, 't'), put8(b, 0x89), puts_(b, "ccollections\nOrderedDict\n)R");
    put8(b, 't'), put8(b, 'R');
}

/* {"w": _rebuild_tensor_v2(storage("0", FloatStorage, numel), offset, size, stride, False, OrderedDict())},
 * wrapped `wraps` times in torch._utils._rebuild_parameter(..., False, OrderedDict()). */
static int param_wraps;
static buf tensor_pickle(int64_t numel, int64_t offset, int ndim, const int64_t *size, const int64_t *stride)
{
    buf b = {0}, pid = storage_pid("FloatStorage", "0", numel);
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '(');
    pk_str(&b, "w");
    for (int i = 0; i < param_wraps; i++)
        puts_(&b, "ctorch._utils\n_rebuild_parameter\n(");
    put_tensor_call(&b, &pid, offset, ndim, size, stride);
    for (int i = 0; i < param_wraps; i++)
        put8(&b, 0x89), puts_(&b, "ccollections\nOrderedDict\n)Rt"), put8(&b, 'R');
    put8(&b, 'u'), put8(&b, '.');
    free(pid.p);
    return b;
}

static void test_handmade_tensor_pickles(void)
{
    /* The good one first: a [2, 3] view with offset 2 and row stride 4 of 10
     * floats, in a plain archive, a ZIP64 one (padded local headers), one
     * with ZIP64 offsets only, after another extra field, and one whose
     * central directory lists the members last to first. */
    for (pt_zip64 = 0; pt_zip64 <= CENTRAL_REVERSED; pt_zip64++) {
        buf g = tensor_pickle(10, 2, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1});
        const char *file_names[] = {"good.pt", "good64.pt", "good64off.pt", "good_cd_reversed.pt"};
        const char *p = write_pt(file_names[pt_zip64], &g, 40);
        safetensors *st = torch_file_open(p);
        const st_tensor *t = safetensors_require(st, "w");
        CHECK(t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "hand-made tensor shape (zip64 %d)", pt_zip64);
        float got[6], all[10], want[6];
        safetensors_read_f32(st, t, got);
        uint8_t want_bytes[40];
        for (int i = 0; i < 40; i++)
            want_bytes[i] = (uint8_t)(i * 7);
        memcpy(all, want_bytes, 40);
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++)
                want[r * 3 + c] = all[2 + r * 4 + c];
        CHECK(memcmp(got, want, sizeof got) == 0, "hand-made strided view read wrongly (zip64 %d)", pt_zip64);
        safetensors_close(st);
        free(g.p);
    }
    pt_zip64 = 0;
    /* Members in any order (found by name, not by position). */
    {
        buf g = tensor_pickle(10, 2, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1});
        buf data[3] = {{0}, {0}, g};
        puts_(&data[0], "3\n");
        for (int i = 0; i < 40; i++)
            put8(&data[1], (uint8_t)(i * 7));
        const char *names[3] = {"arch/version", "arch/data/0", "arch/data.pkl"};
        safetensors *st = torch_file_open(write_zip("reversed.pt", 3, names, data));
        const st_tensor *t = safetensors_find(st, "w");
        float got[6] = {0}, all[10];
        if (t)
            safetensors_read_f32(st, t, got);
        memcpy(all, data[1].p, 40);
        CHECK(t && got[0] == all[2] && got[5] == all[8], "members in reverse name order read wrongly");
        safetensors_close(st);
        free(data[0].p), free(data[1].p), free(g.p);
    }
    /* An nn.Parameter (one wrap) loads; a chain of 60,000 wraps is refused
     * cleanly (it would have been a deep recursion). */
    param_wraps = 1;
    buf g = tensor_pickle(10, 0, 1, (int64_t[]){10}, (int64_t[]){1});
    safetensors *st = torch_file_open(write_pt("param.pt", &g, 40));
    CHECK(safetensors_find(st, "w") && safetensors_find(st, "w")->numel == 10, "a Parameter should load as its tensor");
    safetensors_close(st);
    free(g.p);
    param_wraps = 4; /* the most accepted */
    g = tensor_pickle(10, 0, 1, (int64_t[]){10}, (int64_t[]){1});
    st = torch_file_open(write_pt("param4.pt", &g, 40));
    CHECK(safetensors_find(st, "w") && safetensors_find(st, "w")->numel == 10, "4 nested Parameters should load");
    safetensors_close(st);
    free(g.p);
    param_wraps = 5;
    g = tensor_pickle(10, 0, 1, (int64_t[]){10}, (int64_t[]){1});
    expect_bad("5 nested Parameters", write_pt("param5.pt", &g, 40), "unexpected arguments");
    free(g.p);
    param_wraps = 60000;
    g = tensor_pickle(10, 0, 1, (int64_t[]){10}, (int64_t[]){1});
    expect_bad("60,000 nested Parameters", write_pt("params.pt", &g, 40), "unexpected arguments");
    free(g.p);
    param_wraps = 0;

    struct {
        const char *label;
        int64_t numel, offset;
        int ndim;
        int64_t size[3], stride[3];
        size_t bytes;
        const char *problem;
    } cases[] = {
        {"storage too small", 4, 0, 2, {2, 3}, {3, 1}, 16, "reaches past the end of its storage"},
        {"offset past the end", 10, 9, 1, {2}, {1}, 40, "reaches past the end of its storage"},
        {"strided past the end", 10, 0, 2, {2, 3}, {8, 1}, 40, "reaches past the end of its storage"},
        {"negative stride", 10, 0, 1, {2}, {-1}, 40, "a tensor stride must be an integer"},
        {"negative size", 10, 0, 1, {-2}, {1}, 40, "a tensor size must be an integer"},
        {"negative offset", 10, -1, 1, {2}, {1}, 40, "storage offset must be an integer"},
        {"huge size", 10, 0, 1, {(int64_t)1 << 50}, {1}, 40, "a tensor size must be an integer"},
        {"overflowing shape", 10, 0, 3, {1 << 20, 1 << 20, 1 << 20}, {0, 0, 0}, 40, "impossibly large"},
        {"last element one past the storage", 10, 0, 1, {2}, {10}, 40, "tensor 'w' (offset 0) reaches past the end"},
        {"overflowing stride span", 10, 0, 2, {1 << 20, 2}, {(int64_t)1 << 40, 1}, 40, "reaches past the end"},
        {"zero strides asking for terabytes", 10, 0, 2, {1 << 20, 1 << 20}, {0, 0}, 40, "copied out"},
        {"record size mismatch", 10, 0, 1, {2}, {1}, 36, "its record has 36 bytes"},
        {"negative numel", -5, 0, 1, {2}, {1}, 40, "element count must be an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = tensor_pickle(cases[i].numel, cases[i].offset, cases[i].ndim, cases[i].size, cases[i].stride);
        char name[64];
        snprintf(name, sizeof name, "bad_tensor_%zu.pt", i);
        expect_bad(cases[i].label, write_pt(name, &b, cases[i].bytes), cases[i].problem);
        free(b.p);
    }
}

/* A .pt whose pickle is {"w": tensor} with the persistent id given as raw opcodes. */
static const char *write_pid_pt(const char *name, const buf *pid, size_t storage_bytes)
{
    buf b = {0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '('), pk_str(&b, "w");
    put_tensor_call(&b, pid, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    put8(&b, 'u'), put8(&b, '.');
    const char *p = write_pt(name, &b, storage_bytes);
    free(b.p);
    return p;
}

/* expect_bad on a .pt made of `bytes`: the whole pickle, or (as_pid) the persistent id of the tensor
 * {"w": ...} (write_pid_pt); the file is <prefix>_<i>.pt. */
static void expect_bad_bytes(const char *label, const char *prefix, size_t i, const char *bytes, size_t n, int as_pid,
                             const char *problem)
{
    buf b = {0};
    put(&b, bytes, n);
    char name[64];
    snprintf(name, sizeof name, "%s_%zu.pt", prefix, i);
    expect_bad(label, as_pid ? write_pid_pt(name, &b, 40) : write_pt(name, &b, 40), problem);
    free(b.p);
}

/* The storage references of a tensor: persistent ids, their types, keys and sizes, one storage under two
 * types, and the shapes and strides around them. */
static void test_handmade_storage_references(void)
{
    static const struct {
        const char *label, *pid, *problem;
        size_t n;
    } pids[] = {
#define P(label, lit, problem) {label, lit, problem, sizeof lit - 1}
        P("a persistent id that is a string", "X\x07\x00\x00\x00storage", "unexpected persistent id"),
        P("a persistent id of another kind", "(X\x06\x00\x00\x00moduleX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x0aK\x0at",
          "unexpected persistent id"),
        P("a persistent id of 4 items", "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cput",
          "unexpected persistent id"),
        P("a persistent id of 7 items",
          "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x0aNNt",
          "unexpected persistent id"),
        P("a storage type that is a string", "(X\x07\x00\x00\x00storageX\x0c\x00\x00\x00" "FloatStorageX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x0at",
          "storage of unsupported type str"),
        P("a storage key that is bytes", "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nC\x01" "0X\x03\x00\x00\x00" "cpuK\x0at",
          "storage key is not a plain non-empty name"),
        P("a storage key with a slash", "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x03\x00\x00\x00" "0/0X\x03\x00\x00\x00" "cpuK\x0at",
          "storage key is not a plain non-empty name"),
        P("an element count that is a string", "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuX\x02\x00\x00\x00" "10t",
          "a storage's element count must be an integer in [0, "),
#undef P
    };
    for (size_t i = 0; i < sizeof pids / sizeof pids[0]; i++)
        expect_bad_bytes(pids[i].label, "bad_pid", i, pids[i].pid, pids[i].n, 1, pids[i].problem);

    /* Storage keys of 200 characters (the longest accepted) and 201. */
    for (int len = 200; len <= 201; len++) {
        char key[202], member[256];
        memset(key, 'k', (size_t)len);
        key[len] = 0;
        buf pid = storage_pid("FloatStorage", key, 2), data[3] = {{0}}, pkl = {0};
        put8(&pkl, 0x80), put8(&pkl, 2), put8(&pkl, '}'), put8(&pkl, '('), pk_str(&pkl, "w");
        put_tensor_call(&pkl, &pid, 0, 1, (int64_t[]){2}, (int64_t[]){1});
        put8(&pkl, 'u'), put8(&pkl, '.');
        data[0] = pkl;
        put(&data[1], "\x00\x00\x80\x3f\x00\x00\x00\x40", 8); /* 1.0f, 2.0f */
        puts_(&data[2], "3\n");
        snprintf(member, sizeof member, "arch/data/%s", key);
        const char *names[3] = {"arch/data.pkl", member, "arch/version"};
        const char *p = write_zip(len == 200 ? "key200.pt" : "key201.pt", 3, names, data);
        if (len == 200) {
            safetensors *st = torch_file_open(p);
            float got[2] = {0};
            safetensors_read_f32(st, safetensors_require(st, "w"), got);
            CHECK(got[0] == 1.0f && got[1] == 2.0f, "a storage key of 200 characters read %g %g", got[0], got[1]);
            safetensors_close(st);
        } else
            expect_bad("a storage key of 201 characters", p, "storage key is not a plain non-empty name");
        free(pid.p), free(pkl.p), free(data[1].p), free(data[2].p);
    }

    /* One storage used under two types, or two sizes, of the same byte count. */
    for (int k = 0; k < 2; k++) {
        buf a = storage_pid("FloatStorage", "0", 10);
        buf b = k == 0 ? storage_pid("IntStorage", "0", 10) : storage_pid("FloatStorage", "0", 5);
        buf pkl = {0};
        put8(&pkl, 0x80), put8(&pkl, 2), put8(&pkl, '}'), put8(&pkl, '(');
        pk_str(&pkl, "a"), put_tensor_call(&pkl, &a, 0, 1, (int64_t[]){2}, (int64_t[]){1});
        pk_str(&pkl, "b"), put_tensor_call(&pkl, &b, 0, 1, (int64_t[]){2}, (int64_t[]){1});
        put8(&pkl, 'u'), put8(&pkl, '.');
        expect_bad(k == 0 ? "one storage as floats and ints" : "one storage of two sizes",
                   write_pt(k == 0 ? "two_types.pt" : "two_sizes.pt", &pkl, 40),
                   "storage '0' is used with two different types or sizes");
        free(a.p), free(b.p), free(pkl.p);
    }

    /* The size as a list; a tensor of ST_MAX_DIMS dimensions; a stride span of exactly 2^64 (it wraps to 0
     * in 64 bits: size 2^24 + 1, stride 2^40). */
    sizes_as_list = 1;
    buf g = tensor_pickle(10, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    expect_bad("a size that is a list", write_pt("size_list.pt", &g, 40), "size and stride must be tuples");
    free(g.p);
    sizes_as_list = 0;
    int64_t size8[ST_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 2, 5}, stride8[ST_MAX_DIMS] = {10, 10, 10, 10, 10, 10, 5, 1};
    g = tensor_pickle(10, 0, ST_MAX_DIMS, size8, stride8);
    safetensors *st = torch_file_open(write_pt("dims8.pt", &g, 40));
    const st_tensor *t = safetensors_require(st, "w");
    CHECK(t->ndim == ST_MAX_DIMS && t->shape[6] == 2 && t->shape[7] == 5 && t->numel == 10,
          "a tensor of %d dimensions should load", ST_MAX_DIMS);
    safetensors_close(st);
    free(g.p);
    g = tensor_pickle(10, 0, 1, (int64_t[]){((int64_t)1 << 24) + 1}, (int64_t[]){(int64_t)1 << 40});
    expect_bad("a stride span of 2^64", write_pt("span64.pt", &g, 40), "reaches past the end of its storage");
    free(g.p);
}

static const char *write_variant(const char *name, const uint8_t *d, size_t n);

/* A .pt of the pickle `pkl` with storage "0" of 40 bytes and a byteorder record when `byteorder` is not NULL. */
static const char *write_pt_byteorder(const char *name, const buf *pkl, const char *byteorder)
{
    buf data[4] = {*pkl, {0}, {0}, {0}};
    for (int i = 0; i < 40; i++)
        put8(&data[1], (uint8_t)(i * 7));
    puts_(&data[2], "3\n");
    if (byteorder)
        puts_(&data[3], byteorder);
    const char *names[4] = {"arch/data.pkl", "arch/data/0", "arch/version", "arch/byteorder"};
    const char *p = write_zip(name, byteorder ? 4 : 3, names, data);
    free(data[1].p), free(data[2].p), free(data[3].p);
    return p;
}

/* What the walk makes of the containers around tensors: names, their limits, metadata, byte order, and
 * the copies of non-contiguous tensors. */
static void test_handmade_names_and_metadata(void)
{
    /* The byteorder record: "little" loads, anything else is refused. */
    buf g = tensor_pickle(10, 0, 1, (int64_t[]){10}, (int64_t[]){1});
    safetensors *st = torch_file_open(write_pt_byteorder("little.pt", &g, "little"));
    CHECK(safetensors_find(st, "w") != NULL, "a file with byteorder 'little' should load");
    safetensors_close(st);
    expect_bad("byteorder big", write_pt_byteorder("big.pt", &g, "big"), "storages are not little-endian");
    expect_bad("byteorder littl", write_pt_byteorder("littl.pt", &g, "littl"), "storages are not little-endian");
    free(g.p);

    /* Dict keys: empty, with a control character, and an error after a sibling's walk names the parent
     * only. */
    static const struct {
        const char *label, *bytes, *problem;
        size_t n;
    } keys[] = {
#define K(label, lit, problem) {label, lit, problem, sizeof lit - 1}
        K("an empty key", "\x80\x02}(X\x00\x00\x00\x00K\x01u.", "a dict key under '(top level)' is empty"),
        K("a key with a control character", "\x80\x02}(X\x03\x00\x00\x00" "a\x01" "bK\x01u.",
          "a dict key under '(top level)' is empty or has control characters"),
        K("an empty key after a sibling", "\x80\x02}(X\x01\x00\x00\x00" "a}(X\x01\x00\x00\x00" "bK\x01X\x00\x00\x00\x00K\x02uu.",
          "a dict key under 'a' is empty"),
#undef K
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        buf b = {0};
        put(&b, keys[i].bytes, keys[i].n);
        char name[64];
        snprintf(name, sizeof name, "bad_key_%zu.pt", i);
        expect_bad(keys[i].label, write_pt(name, &b, 40), keys[i].problem);
        free(b.p);
    }

    /* Keys 1 and "1" name two tensors "1": refused, not one of them dropped. */
    buf pid = storage_pid("FloatStorage", "0", 10), two = {0};
    put8(&two, 0x80), put8(&two, 2), put8(&two, '}'), put8(&two, '(');
    pk_str(&two, "1"), put_tensor_call(&two, &pid, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    put8(&two, 'K'), put8(&two, 1), put_tensor_call(&two, &pid, 2, 1, (int64_t[]){2}, (int64_t[]){1});
    put8(&two, 'u'), put8(&two, '.');
    expect_bad("two tensors named 1", write_pt("twice1.pt", &two, 40), "tensor '1' appears twice");
    free(pid.p), free(two.p);

    /* Names up to 4,095 bytes ({"a": {<4,093 x>: 1}}); one byte more is refused. */
    for (int klen = 4093; klen <= 4094; klen++) {
        buf b = {0};
        put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '('), pk_str(&b, "a"), put8(&b, '}'), put8(&b, '(');
        put8(&b, 'X'), put32(&b, (uint32_t)klen);
        for (int k = 0; k < klen; k++)
            put8(&b, 'x');
        put8(&b, 'K'), put8(&b, 1), put8(&b, 'u'), put8(&b, 'u'), put8(&b, '.');
        const char *p = write_pt(klen == 4093 ? "name4095.pt" : "name4096.pt", &b, 40);
        if (klen == 4093) {
            st = torch_file_open(p);
            CHECK(st->n_meta == 1 && strlen(st->meta[0].key) == 4095 && !strcmp(st->meta[0].value, "1"),
                  "a name of 4,095 bytes should load");
            safetensors_close(st);
        } else
            expect_bad("a name of 4,096 bytes", p, "a name under 'a' is longer than 4 KB");
        free(b.p);
    }

    /* Nesting: 200 tuples in one another load (the innermost is depth 200), 201 do not.  Inside an
     * argparse.Namespace its value starts at depth 2: 198 levels load, 199 do not. */
    for (int ns = 0; ns <= 1; ns++)
        for (int extra = 0; extra <= 1; extra++) {
            int levels = (ns ? 198 : 200) + extra;
            buf b = {0};
            put8(&b, 0x80), put8(&b, 2);
            if (ns)
                put8(&b, '}'), put8(&b, '('), pk_str(&b, "args"), puts_(&b, "cargparse\nNamespace\n)\x81}("),
                    pk_str(&b, "deep");
            put8(&b, ')');
            for (int i = 0; i < levels; i++)
                put8(&b, 0x85);
            if (ns)
                put8(&b, 'u'), put8(&b, 'b'), put8(&b, 'u');
            put8(&b, '.');
            char name[64];
            snprintf(name, sizeof name, "deep_%d_%d.pt", ns, levels);
            const char *p = write_pt(name, &b, 40);
            if (!extra) {
                st = torch_file_open(p);
                CHECK(st->n_meta == 1, "%d nested tuples%s should load", levels, ns ? " in a Namespace" : "");
                safetensors_close(st);
            } else
                expect_bad(name, p, "the pickle nests deeper than 200 levels");
            free(b.p);
        }

    /* A Namespace without state is {}; lists of None, bools and numbers are one JSON entry; an
     * exponential DAG inside a Namespace is refused like one outside it. */
    buf b = {0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '('), pk_str(&b, "args");
    puts_(&b, "cargparse\nNamespace\n)\x81"), pk_str(&b, "list"), put8(&b, ']'), put8(&b, '(');
    put8(&b, 'N'), put8(&b, 0x88), put8(&b, 0x89), put8(&b, 'K'), put8(&b, 3), put8(&b, 'e'), put8(&b, 'u'), put8(&b, '.');
    st = torch_file_open(write_pt("ns_empty.pt", &b, 40));
    const char *args = safetensors_meta(st, "args"), *list = safetensors_meta(st, "list");
    CHECK(args && !strcmp(args, "{}"), "a Namespace without state: %s", args ? args : "(none)");
    CHECK(list && !strcmp(list, "[null,true,false,3]") && st->n_meta == 2, "a list of scalars: %s",
          list ? list : "(none)");
    safetensors_close(st);
    free(b.p);
    b = (buf){0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '('), pk_str(&b, "args");
    puts_(&b, "cargparse\nNamespace\n)\x81}("), pk_str(&b, "dag"), put8(&b, ')');
    for (int i = 0; i < 40; i++)
        put8(&b, 'q'), put8(&b, 0), put8(&b, '0'), put8(&b, 'h'), put8(&b, 0), put8(&b, 'h'), put8(&b, 0), put8(&b, 0x86);
    put8(&b, 'u'), put8(&b, 'b'), put8(&b, 'u'), put8(&b, '.');
    expect_bad("an exponential DAG in a Namespace", write_pt("ns_dag.pt", &b, 40), "too large when expanded");
    free(b.p);

    /* A non-contiguous tensor is copied out at open, so its storage's CRC is checked then. */
    g = tensor_pickle(10, 0, 2, (int64_t[]){2, 3}, (int64_t[]){1, 2});
    const char *p = write_pt("strided_crc.pt", &g, 40);
    size_t n;
    uint8_t *d = fixture_bytes(p, &n);
    uint8_t storage[40];
    for (int i = 0; i < 40; i++)
        storage[i] = (uint8_t)(i * 7);
    uint8_t *at = memmem(d, n, storage, 40);
    CHECK(at != NULL, "storage bytes not found in %s", p);
    if (at) {
        at[7] ^= 1;
        expect_bad("a strided tensor of a corrupt storage", write_variant("strided_crc_bad.pt", d, n),
                   "fails its CRC-32 check");
    }
    free(d), free(g.p);
}

/* {"a": bytes[0] repeated n_a times, "b": ... n_b times (b absent when n_b is 0)}: stride-0 views of a
 * 40-byte ByteStorage, each copied out at open. */
static buf broadcast_pickle(int64_t n_a, int64_t n_b)
{
    buf b = {0}, pid = storage_pid("ByteStorage", "0", 40);
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '(');
    pk_str(&b, "a"), put_tensor_call(&b, &pid, 0, 1, &n_a, (int64_t[]){0});
    if (n_b)
        pk_str(&b, "b"), put_tensor_call(&b, &pid, 0, 1, &n_b, (int64_t[]){0});
    put8(&b, 'u'), put8(&b, '.');
    free(pid.p);
    return b;
}

/* The bytes that copies of non-contiguous tensors may take: twice the file's size plus
 * TORCH_MATERIALISE_SLACK, for all of a file's copies together. */
static void test_materialise_limit(void)
{
    /* Two copies of 40 MiB each: the second is refused. */
    buf g = broadcast_pickle((int64_t)40 << 20, (int64_t)40 << 20);
    expect_bad("two copies over the limit together", write_pt("copies2.pt", &g, 40), "would need 41943040 bytes copied out");
    free(g.p);
    /* One copy of exactly the limit loads; one byte more does not.  The file's size does not depend on
     * the count (a 4-byte integer either way), so a first file tells it. */
    g = broadcast_pickle(1, 0);
    const char *p = write_pt("copy_size.pt", &g, 40);
    free(g.p);
    struct stat sb;
    CHECK(stat(p, &sb) == 0, "stat %s", p);
    int64_t limit = 2 * (int64_t)sb.st_size + (int64_t)TORCH_MATERIALISE_SLACK;
    g = broadcast_pickle(limit, 0);
    p = write_pt("copy_limit.pt", &g, 40);
    free(g.p);
    CHECK(stat(p, &sb) == 0 && 2 * (int64_t)sb.st_size + (int64_t)TORCH_MATERIALISE_SLACK == limit,
          "the file's size changed with the count");
    safetensors *st = torch_file_open(p);
    const st_tensor *t = safetensors_require(st, "a");
    CHECK(t->numel == limit && t->bytes[0] == 0 && t->bytes[limit - 1] == 0, "a copy of exactly the limit");
    safetensors_close(st);
    g = broadcast_pickle(limit + 1, 0);
    expect_bad("a copy one byte over the limit", write_pt("copy_over.pt", &g, 40), "copied out");
    free(g.p);
}

static void test_handmade_hostile_pickles(void)
{
    static const struct {
        const char *label;
        const char *bytes;
        size_t n;
        const char *problem;
    } cases[] = {
#define C(label, lit, problem) {label, lit, sizeof lit - 1, problem}
        C("memo index out of range", "\x80\x02h\x05.", "memo index 5 was never stored"),
        /* the memo holds 64 slots after its first store: index 64 is one past its end (ASan sees a read there) */
        C("memo index one past the memo", "\x80\x02K\x01q\x00j\x40\x00\x00\x00.", "memo index 64 was never stored"),
        C("the error names the opcode's byte", "\x80\x02NN\xff.", "pickle byte 4: unsupported opcode 0xff"),
        C("long memo index", "\x80\x02j\xff\xff\xff\x7f.", "never stored"),
        C("memo put too large", "\x80\x02Nr\xff\xff\xff\x7f.", "memo index 2147483647 is too large"),
        C("unknown opcode", "\x80\x02\xff.", "unsupported opcode 0xff (not something torch.save writes)"),
        C("unknown printable opcode", "\x80\x02!.", "unsupported opcode 0x21 ('!') (not something"),
        C("unknown opcode DEL", "\x80\x02\x7f.", "unsupported opcode 0x7f (not something"),
        C("text INT opcode", "\x80\x02I12\n.", "unsupported opcode 0x49 ('I')"),
        C("huge LONG1", "\x80\x02\x8a\x10" "0123456789abcdef.", "integer of 16 bytes is too large"),
        C("huge LONG4", "\x80\x02\x8b\xff\xff\xff\xff.", "is too large"),
        C("truncated string", "\x80\x02X\xff\xff\x00\x00" "abc", "more bytes"),
        C("no STOP", "\x80\x02N", "more bytes"),
        C("stack underflow", "\x80\x02R.", "stack underflow"),
        C("TUPLE2 of one item", "\x80\x02K\x01\x86.", "stack underflow"),
        C("TUPLE2 reaching below a MARK", "\x80\x02K\x01(K\x02\x86.", "stack underflow"),
        C("SETITEM on a list", "\x80\x02]NNs.", "not a dict"),
        C("APPEND on a dict", "\x80\x02}Na.", "not a list"),
        C("SETITEM reaching below a MARK", "\x80\x02}(NNs.", "SETITEM needs a dict, a key and a value"),
        C("APPEND reaching below a MARK", "\x80\x02](Na.", "APPEND needs a list and a value"),
        C("protocol 1 header", "\x80\x01N.", "protocol 1 is not supported"),
        C("STACK_GLOBAL os.system", "\x80\x04\x8c\x05posix\x8c\x06system\x93.", "refusing to load global posix.system"),
        C("GLOBAL builtins.exec", "\x80\x02" "cbuiltins\nexec\n.", "refusing to load global builtins.exec"),
        C("GLOBAL with NUL", "\x80\x02" "ctorch\x00x\nSize\n.", "refusing to load global"),
        C("GLOBAL without newline", "\x80\x02" "ctorch", "without a newline"),
        C("call of a storage type", "\x80\x02" "ctorch\nFloatStorage\n)R.", "refusing to call torch.FloatStorage"),
        C("NEWOBJ of OrderedDict", "\x80\x02" "ccollections\nOrderedDict\n)\x81.", "refusing to instantiate"),
        C("invalid UTF-8", "\x80\x02X\x02\x00\x00\x00\xc3\x28.", "not valid UTF-8"),
        C("cyclic list", "\x80\x02]q\x00" "h\x00" "a.", "nests deeper than"),
        C("POP_MARK without a MARK", "\x80\x02" "1.", "no MARK on the stack"),
        C("DICT with an odd count", "\x80\x02(K\x01" "d.", "DICT with an odd number of items"),
        C("negative BINSTRING", "\x80\x02T\xff\xff\xff\xff.", "negative BINSTRING length"),
        C("BINSTRING of -2^31", "\x80\x02T\x00\x00\x00\x80.", "negative BINSTRING length"),
        C("BINSTRING past the end", "\x80\x02T\x10\x00\x00\x00" "ab.", "string runs past the end"),
        C("BINSTRING up to the end", "\x80\x02T\x02\x00\x00\x00" "ab", "more bytes"),
        C("FRAME one byte too long", "\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00N.", "FRAME longer than the rest"),
        C("FRAME past the end", "\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", "FRAME longer than the rest"),
        C("STACK_GLOBAL of ints", "\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL needs two strings"),
        C("STACK_GLOBAL of a string and an int", "\x80\x04\x8c\x05torchK\x02\x93.", "STACK_GLOBAL needs two strings"),
        C("STACK_GLOBAL of an int and a string", "\x80\x04K\x02\x8c\x04Size\x93.", "STACK_GLOBAL needs two strings"),
        C("NEWOBJ_EX with kwargs", "\x80\x04" "cargparse\nNamespace\n)}X\x01\x00\x00\x00" "aK\x01s\x92.",
          "NEWOBJ_EX with keyword arguments"),
        C("NEWOBJ with a list", "\x80\x02" "cargparse\nNamespace\n]\x81.", "NEWOBJ arguments are a list"),
        C("BUILD on a list", "\x80\x02]]b.", "BUILD on a list"),
        C("SETITEMS on nothing", "\x80\x02(K\x01K\x02u.", "SETITEMS without a dict below the MARK"),
        C("SETITEMS odd", "\x80\x02}(K\x01u.", "SETITEMS with an odd number of items"),
        C("APPENDS on nothing", "\x80\x02(K\x01" "e.", "APPENDS without a list below the MARK"),
        C("SETITEM short", "\x80\x02}K\x01s.", "SETITEM needs a dict, a key and a value"),
        C("APPEND short", "\x80\x02]a.", "APPEND needs a list and a value"),
        C("STOP on an empty stack", "\x80\x02.", "STOP with an empty stack"),
        C("POP on an empty stack", "\x80\x02" "0.", "stack underflow"),
        C("TUPLE2 of one", "\x80\x02N\x86.", "stack underflow"),
        C("REDUCE of an int", "\x80\x02K\x01)R.", "REDUCE of a int, not of a global"),
        C("REDUCE with a list", "\x80\x02" "ctorch\nSize\n]R.", "REDUCE of torch.Size with a list argument"),
        C("torch.Size()", "\x80\x02" "ctorch\nSize\n)R.", "torch.Size called with unexpected arguments"),
        C("OrderedDict(1)", "\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.",
          "OrderedDict called with unexpected arguments"),
        C("OrderedDict([1])", "\x80\x02" "ccollections\nOrderedDict\n]K\x01" "a\x85R.",
          "OrderedDict item 0 is not a (key, value) pair"),
        C("OrderedDict([(1,)])", "\x80\x02" "ccollections\nOrderedDict\n]K\x01\x85" "a\x85R.",
          "OrderedDict item 0 is not a (key, value) pair"),
        C("OrderedDict([(1, 2, 3)])", "\x80\x02" "ccollections\nOrderedDict\n]K\x01K\x02K\x03\x87" "a\x85R.",
          "OrderedDict item 0 is not a (key, value) pair"),
        C("encode with one argument", "\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00" "a\x85R.",
          "only accepted as encode(str, 'latin1')"),
        C("encode with three arguments",
          "\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x06\x00\x00\x00latin1X\x01\x00\x00\x00" "b\x87R.",
          "only accepted as encode(str, 'latin1')"),
        C("encode as utf8", "\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x04\x00\x00\x00utf8\x86R.",
          "only accepted as encode(str, 'latin1')"),
        C("encode above U+00FF", "\x80\x02" "c_codecs\nencode\nX\x03\x00\x00\x00\xe2\x9c\x93X\x06\x00\x00\x00latin1\x86R.",
          "character above U+00FF"),
        C("encode above U+00FF, then ASCII",
          "\x80\x02" "c_codecs\nencode\nX\x04\x00\x00\x00\xe2\x9c\x93" "aX\x06\x00\x00\x00latin1\x86R.",
          "character above U+00FF"),
        C("bytes(1)", "\x80\x02" "c__builtin__\nbytes\nK\x01\x85R.", "bytes() is only accepted without arguments"),
        C("bare storage", "\x80\x02(X\x07\x00\x00\x00" "storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ.",
          "bare storage"),
#undef C
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_bad_bytes(cases[i].label, "bad_pickle", i, cases[i].bytes, cases[i].n, 0, cases[i].problem);
    /* Deep nesting: a tuple in a tuple ... 300 deep. */
    buf b = {0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, ')');
    for (int i = 0; i < 300; i++)
        put8(&b, 0x85);
    put8(&b, '.');
    expect_bad("300-deep tuples", write_pt("deep.pt", &b, 40), "nests deeper than 200 levels");
    free(b.p);
    /* An exponential DAG: x = (x, x) forty times (2^40 leaves from 200 bytes). */
    b = (buf){0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, ')');
    for (int i = 0; i < 40; i++)
        put8(&b, 'q'), put8(&b, 0), put8(&b, '0'), put8(&b, 'h'), put8(&b, 0), put8(&b, 'h'), put8(&b, 0), put8(&b, 0x86);
    put8(&b, '.');
    expect_bad("exponential DAG", write_pt("dag.pt", &b, 40), "too large when expanded");
    free(b.p);
    /* Marks nested past the limit, and a stack past its limit. */
    b = (buf){0};
    put8(&b, 0x80), put8(&b, 2);
    for (int i = 0; i <= PK_MAX_MARKS; i++)
        put8(&b, '(');
    put8(&b, '.');
    expect_bad("too many MARKs", write_pt("marks.pt", &b, 40), "nested MARKs");
    free(b.p);
    b = (buf){0};
    put8(&b, 0x80), put8(&b, 2);
    for (int i = 0; i <= PK_MAX_STACK; i++)
        put8(&b, 'N');
    put8(&b, '.');
    expect_bad("stack too deep", write_pt("stack.pt", &b, 40), "stack deeper than");
    free(b.p);
    /* A GLOBAL whose module and name, each under the 256-byte line limit,
     * are too long together. */
    b = (buf){0};
    put8(&b, 0x80), put8(&b, 2), put8(&b, 'c');
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 200; k++)
            put8(&b, 'a');
        put8(&b, '\n');
    }
    put8(&b, '.');
    expect_bad("a 401-byte global name", write_pt("longglobal.pt", &b, 40), "global name too long");
    free(b.p);
    char err[4096];
    int rc = run_in_child(child_load_oversized, (void *)"", err, sizeof err);
    CHECK(rc == 1 && strstr(err, "huge.pkl") && strstr(err, "is too large"),
          "a pickle over PK_MAX_BYTES should be refused, got status %d: %s", rc, err);
    /* ... and one of exactly PK_MAX_BYTES is read: a mapping of that size
     * that holds a 4-byte pickle at its start.  Read-only but for its first
     * page, so that even strict overcommit charges one page, not 2 GiB. */
    uint8_t *limit = mmap(NULL, (size_t)PK_MAX_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(limit != MAP_FAILED, "could not reserve %llu bytes of address space", (unsigned long long)PK_MAX_BYTES);
    if (limit != MAP_FAILED) {
        CHECK(mprotect(limit, 4096, PROT_READ | PROT_WRITE) == 0, "mprotect of the first page");
        memcpy(limit, "\x80\x02N.", 4);
        pk_arena *a = pk_arena_new();
        size_t used = 0;
        const pk_value *v = pickle_load(a, "limit.pkl", limit, (size_t)PK_MAX_BYTES, &used);
        CHECK(v->kind == PK_NONE && used == 4, "a pickle buffer of exactly PK_MAX_BYTES should load");
        pk_arena_free(a);
        munmap(limit, (size_t)PK_MAX_BYTES);
    }
}

/* ---- hostile archives ------------------------------------------------------------------ */

static size_t find_sig(const uint8_t *d, size_t n, uint32_t sig, int from_end)
{
    uint8_t s[4] = {(uint8_t)sig, (uint8_t)(sig >> 8), (uint8_t)(sig >> 16), (uint8_t)(sig >> 24)};
    if (from_end) {
        for (size_t i = n - 4; i > 0; i--)
            if (!memcmp(d + i, s, 4))
                return i;
    } else
        for (size_t i = 0; i + 4 <= n; i++)
            if (!memcmp(d + i, s, 4))
                return i;
    return (size_t)-1;
}

static void patch32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static const char *write_variant(const char *name, const uint8_t *d, size_t n)
{
    const char *p = tmp_path(name);
    write_bytes(p, d, n);
    return p;
}

static void test_hostile_archives(void)
{
    size_t n;
    uint8_t *orig = fixture_bytes(FIX "pt_tensors_zip.pt", &n), *d = xmalloc(n);
    size_t eocd = find_sig(orig, n, 0x06054b50, 1), cd = find_sig(orig, n, 0x02014b50, 0);
    CHECK(eocd != (size_t)-1 && cd != (size_t)-1, "fixture has no EOCD / central directory");

    expect_bad("empty file", write_variant("empty.pt", orig, 0), "not a PyTorch file");
    expect_bad("truncated to 10 bytes", write_variant("t10.pt", orig, 10), "too short for a ZIP");
    expect_bad("truncated by one byte", write_variant("t1.pt", orig, n - 1), "end-of-central-directory");
    expect_bad("truncated in half", write_variant("thalf.pt", orig, n / 2), "end-of-central-directory");

    /* torch writes the ZIP64 records too, always: the directory's place is
     * in both end records, and they must agree. */
    size_t rec = find_sig(orig, n, 0x06064b50, 1);
    CHECK(rec != (size_t)-1 && le64(orig + rec + 48) == le32(orig + eocd + 16), "the fixture has no ZIP64 record");
    memcpy(d, orig, n);
    patch32(d + eocd + 16, (uint32_t)n);
    expect_bad("the end records disagree", write_variant("cdoff32.pt", d, n), "the end record and the ZIP64 end record disagree");
    memcpy(d, orig, n);
    patch32(d + eocd + 16, (uint32_t)n), patch32(d + rec + 48, (uint32_t)n); /* central directory offset past the end */
    expect_bad("central directory out of range", write_variant("cdoff.pt", d, n), "lies outside the archive");

    memcpy(d, orig, n);
    patch32(d + cd + 42, 0x7fffffff); /* first member's local header far away */
    expect_bad("local header out of range", write_variant("lhoff.pt", d, n), "outside the archive's data area");

    memcpy(d, orig, n);
    patch32(d + cd + 20, 0x7fffff00), patch32(d + cd + 24, 0x7fffff00); /* first member's size */
    expect_bad("record past the end", write_variant("size.pt", d, n), "runs past the end of the data area");

    memcpy(d, orig, n);
    d[cd + 10] = 8, d[le32(orig + cd + 42) + 8] = 8; /* deflate, in the central entry and the local header */
    expect_bad("compressed member", write_variant("deflate.pt", d, n), "is compressed");

    /* Two central entries pointing at the same local header. */
    memcpy(d, orig, n);
    size_t cd2 = find_sig(orig + cd + 4, n - cd - 4, 0x02014b50, 0) + cd + 4;
    memcpy(d + cd2 + 42, d + cd + 42, 4);
    expect_bad("overlapping members", write_variant("overlap.pt", d, n), "");

    /* CRC: data.pkl is checked at open; a storage record when read. */
    zip_archive *z = zip_archive_open("fixture", orig, n);
    const zip_member *pkl = NULL, *f32 = NULL;
    for (int i = 0; i < z->n; i++)
        if (strstr(z->members[i].name, "data.pkl"))
            pkl = &z->members[i];
    safetensors *st = torch_file_open(FIX "pt_tensors_zip.pt");
    const st_tensor *tf = safetensors_require(st, "f32");
    for (int i = 0; i < z->n; i++)
        if (tf->bytes == (const uint8_t *)st->data + z->members[i].data_offset)
            f32 = &z->members[i];
    CHECK(pkl && f32, "fixture members not found");
    if (pkl && f32) {
        memcpy(d, orig, n);
        d[pkl->data_offset + pkl->size / 2] ^= 0x40;
        expect_bad("data.pkl CRC", write_variant("crc_pkl.pt", d, n), "fails its CRC-32 check");
        memcpy(d, orig, n);
        d[f32->data_offset + 5] ^= 1;
        const char *p = write_variant("crc_f32.pt", d, n);
        safetensors *ok = torch_file_open(p); /* opening does not read tensor records */
        safetensors_close(ok);
        expect_bad("storage CRC when read", p, "fails its CRC-32 check");
    }
    safetensors_close(st);
    zip_archive_close(z);

    /* A ZIP without data.pkl, and an npz. */
    buf one = {0};
    puts_(&one, "hello");
    const char *nm[1] = {"readme.txt"};
    expect_bad("zip without data.pkl", write_zip("nopkl.pt", 1, nm, &one), "without <prefix>/data.pkl");
    const char *np[1] = {"arr_0.npy"};
    expect_bad("an npz", write_zip("arr.npz", 1, np, &one), "NumPy .npz");
    const char *np_named[1] = {"weights.npy"}; /* np.savez(weights=...) */
    expect_bad("an npz of named arrays", write_zip("named.npz", 1, np_named, &one), "NumPy .npz");
    free(one.p);
    free(orig), free(d);
}

static void patch16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

/* One bad field at a time in the ZIP records: each check of the reader is
 * reached and names what it found (the cases above reach a few of them;
 * later checks or the CRC would catch most of these too, with a message
 * that no longer says what is wrong). */
static void test_hostile_archive_records(void)
{
    size_t n;
    uint8_t *orig = fixture_bytes(FIX "pt_tensors_zip.pt", &n), *d = xmalloc(n + 65535);
    size_t eocd = find_sig(orig, n, 0x06054b50, 1), cd = find_sig(orig, n, 0x02014b50, 0);
    size_t cd2 = find_sig(orig + cd + 4, n - cd - 4, 0x02014b50, 0) + cd + 4;
    /* The second member's local header (the first one's signature is the
     * file's first bytes: changing it makes the file no ZIP at all). */
    size_t lh = le32(orig + cd2 + 42), nlen = le16(orig + cd2 + 28);
    CHECK(lh > 0 && le32(orig + lh) == 0x04034b50 && nlen > 2, "the fixture's second member has no local header");
#define FRESH memcpy(d, orig, n)
    FRESH, patch16(d + eocd + 4, 1);
    expect_bad("EOCD: disk number", write_variant("r_disk.pt", d, n), "multi-part ZIP archives are not supported");
    FRESH, patch16(d + eocd + 8, (uint16_t)(le16(orig + eocd + 10) - 1));
    expect_bad("EOCD: entries on this disk", write_variant("r_ndisk.pt", d, n), "multi-part ZIP archives");
    /* One entry more than the directory's bytes can hold at 46 bytes each. */
    uint16_t too_many = (uint16_t)(le32(orig + eocd + 12) / 46 + 1);
    char holds[64];
    snprintf(holds, sizeof holds, "cannot hold %u entries", too_many);
    size_t rec64 = find_sig(orig, n, 0x06064b50, 1);
    FRESH, patch16(d + eocd + 8, too_many), patch16(d + eocd + 10, too_many);
    patch32(d + rec64 + 24, too_many), patch32(d + rec64 + 32, too_many);
    expect_bad("EOCD: entry count", write_variant("r_count.pt", d, n), holds);
    FRESH, d[cd2] ^= 1;
    expect_bad("central: second signature", write_variant("r_sig2.pt", d, n),
               "central directory entry 1 is missing or corrupt");
    FRESH, patch16(d + cd + 28, 0xffff);
    expect_bad("central: name length", write_variant("r_nlen.pt", d, n),
               "central directory entry 0 runs past the directory");
    const char *bad_name = "has an empty, NUL-containing or non-UTF-8 name";
    FRESH, patch16(d + cd + 28, 0);
    expect_bad("central: empty name", write_variant("r_name0.pt", d, n), bad_name);
    FRESH, d[cd + 46 + 1] = 0;
    expect_bad("central: NUL in the name", write_variant("r_namenul.pt", d, n), bad_name);
    FRESH, d[cd + 46 + 1] = 0xff;
    expect_bad("central: non-UTF-8 name", write_variant("r_nameutf.pt", d, n), bad_name);
    FRESH, d[cd + 8] |= 1;
    expect_bad("central: encrypted", write_variant("r_enc.pt", d, n), "is encrypted");
    FRESH, patch16(d + cd + 34, 1);
    expect_bad("central: disk", write_variant("r_cdisk.pt", d, n), "is on disk 1 of a multi-part archive");
    FRESH, patch32(d + cd + 20, le32(orig + cd + 20) + 1);
    expect_bad("central: sizes differ", write_variant("r_sizes.pt", d, n), "has different sizes");
    FRESH, patch32(d + cd + 20, 0xffffffffu), patch32(d + cd + 24, 0xffffffffu);
    expect_bad("central: ZIP64 sizes without the extra field", write_variant("r_noextra.pt", d, n),
               "needs a ZIP64 extra field but has none");
    FRESH, d[lh] ^= 1;
    expect_bad("local: signature", write_variant("r_lsig.pt", d, n), "no local header at offset");
    FRESH, d[lh + 6] |= 1;
    expect_bad("local: encrypted", write_variant("r_lenc.pt", d, n), "is encrypted");
    FRESH, patch16(d + lh + 8, 8);
    expect_bad("local: compressed", write_variant("r_ldefl.pt", d, n), "its local header says compression method 8, the central directory 0");
    FRESH, patch16(d + lh + 28, 0xffff);
    expect_bad("local: extra field past the directory", write_variant("r_lxlen.pt", d, n),
               "local header runs past the central directory");
    FRESH, d[lh + 30 + nlen - 1] ^= 1;
    expect_bad("local: another name", write_variant("r_lname.pt", d, n), "its local header names another file");
    FRESH, patch16(d + lh + 26, (uint16_t)(nlen - 1));
    expect_bad("local: a shorter name", write_variant("r_lnlen.pt", d, n), "its local header names another file");
    /* The first member (its local header at 0) grows by 64 bytes in the
     * central directory, past its data descriptor into the next member. */
    FRESH, patch32(d + cd + 20, le32(orig + cd + 20) + 64), patch32(d + cd + 24, le32(orig + cd + 24) + 64);
    CHECK(le32(orig + cd + 42) == 0, "the fixture's first member is not the first in the file");
    expect_bad("members overlap", write_variant("r_overlap.pt", d, n), "overlap (corrupt or malicious archive)");

    /* The member last in the file grows past the data area's end. */
    size_t last = cd;
    for (size_t e = cd; e + 46 <= n && le32(orig + e) == 0x02014b50;
         e += 46u + le16(orig + e + 28) + le16(orig + e + 30) + le16(orig + e + 32))
        if (le32(orig + e + 42) > le32(orig + last + 42))
            last = e;
    FRESH, patch32(d + last + 20, le32(orig + last + 20) + 64), patch32(d + last + 24, le32(orig + last + 24) + 64);
    expect_bad("last member past the data area", write_variant("r_lastsize.pt", d, n),
               "runs past the end of the data area");
    /* The longest comment a ZIP can have: the EOCD is then the first byte of
     * the window searched; the archive opens. */
    FRESH, patch16(d + eocd + 20, 0xffff);
    memset(d + n, 'c', 65535);
    const char *p = write_variant("r_comment.pt", d, n + 65535);
    safetensors *st = torch_file_open(p);
    CHECK(st->n_tensors > 0, "the archive with a 65,535-byte comment has no tensors");
    safetensors_close(st);
#undef FRESH
    /* An empty archive is the 22-byte EOCD alone: a ZIP, without data.pkl. */
    expect_bad("an empty archive", write_zip("r_empty.pt", 0, NULL, NULL), "without <prefix>/data.pkl");

    /* ZIP64 records, in a hand-made ZIP64 archive. */
    buf one = {0};
    puts_(&one, "hello");
    const char *nm[1] = {"readme.txt"};
    uint8_t *z = fixture_bytes(write_zip_ex("r_z64_good.pt", 1, nm, &one, 1), &n);
    free(one.p);
    one = (buf){0};
    free(d);
    d = xmalloc(n);
    size_t zcd = find_sig(z, n, 0x02014b50, 0), rec = find_sig(z, n, 0x06064b50, 0);
    size_t loc = find_sig(z, n, 0x07064b50, 0);
    CHECK(zcd != (size_t)-1 && rec != (size_t)-1 && loc != (size_t)-1, "the ZIP64 archive lacks its records");
    memcpy(d, z, n), patch16(d + zcd + 46 + strlen(nm[0]) + 2, 16);
    expect_bad("ZIP64: short extra field", write_variant("r_z64short.pt", d, n),
               "short ZIP64 extra field (16 bytes, need 24)");
    memcpy(d, z, n), patch32(d + loc + 8, 0x7fffffff);
    expect_bad("ZIP64: locator out of range", write_variant("r_z64loc.pt", d, n),
               "ZIP64 end-of-central-directory record is missing or out of range");
    memcpy(d, z, n), d[rec] ^= 1;
    expect_bad("ZIP64: record signature", write_variant("r_z64rec.pt", d, n),
               "ZIP64 end-of-central-directory record is missing or out of range");
    memcpy(d, z, n), patch32(d + rec + 16, 1);
    expect_bad("ZIP64: record disk", write_variant("r_z64disk.pt", d, n), "multi-part ZIP archives are not supported");
    memcpy(d, z, n), d[loc] ^= 1;
    expect_bad("ZIP64: locator signature", write_variant("r_z64locsig.pt", d, n),
               "without a ZIP64 end-of-central-directory locator");
    free(z), free(d), free(orig);
    /* One name twice, another between them (sorted by name, they meet). */
    buf three[3] = {{0}, {0}, {0}};
    puts_(&three[0], "a"), puts_(&three[1], "b"), puts_(&three[2], "c");
    const char *twice[3] = {"x/data.pkl", "x/zz", "x/data.pkl"};
    expect_bad("a member twice", write_zip("r_twice.pt", 3, twice, three), "member 'x/data.pkl' appears twice");
    free(three[0].p), free(three[1].p), free(three[2].p);
    /* A plain archive whose EOCD says 0xffff entries: ZIP64 without its records. */
    puts_(&one, "hello");
    z = fixture_bytes(write_zip("r_plain.pt", 1, nm, &one), &n);
    free(one.p);
    size_t zeocd = find_sig(z, n, 0x06054b50, 1);
    patch16(z + zeocd + 8, 0xffff), patch16(z + zeocd + 10, 0xffff);
    expect_bad("EOCD: ZIP64 count without ZIP64 records", write_variant("r_z64none.pt", z, n),
               "without a ZIP64 end-of-central-directory locator");
    free(z);
}

static void test_hostile_legacy_files(void)
{
    size_t n;
    uint8_t *orig = fixture_bytes(FIX "pt_tensors_legacy.pt", &n);
    expect_bad("legacy truncated by 1", write_variant("l1.pt", orig, n - 1), "runs past the end of the file");
    expect_bad("legacy truncated by 100", write_variant("l100.pt", orig, n - 100), "");
    expect_bad("legacy magic only", write_variant("lmagic.pt", orig, 15), "more bytes");
    uint8_t *d = xmalloc(n + 3);
    memcpy(d, orig, n);
    memcpy(d + n, "abc", 3);
    expect_bad("legacy trailing bytes", write_variant("ltrail.pt", d, n + 3), "unexpected bytes after the last storage");
    free(d), free(orig);
}

/* An old-style legacy file, written by hand: torch._utils._rebuild_tensor (4
 * arguments, torch < 0.4) on a storage *view* (view_metadata = (key, offset,
 * size)), a stride-2 tensor with offset 1 inside the view. */
static int old_view_as_list, old_tensor_offset = 1, old_tensor_size = 3, old_data_floats = 10;
static const char *write_old_legacy(const char *name, int64_t count, int64_t view_off, int64_t view_size, size_t extra)
{
    buf b = {0};
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20,
                                    0x6a, 0xa8, 0x50, 0x19, '.'};
    put(&b, magic, sizeof magic);
    put(&b, "\x80\x02M\xe9\x03.", 6);                                  /* protocol 1001 */
    put(&b, "\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u.", 25); /* sys info */
    put8(&b, 0x80), put8(&b, 2), put8(&b, '}'), put8(&b, '('), pk_str(&b, "w");
    puts_(&b, "ctorch._utils\n_rebuild_tensor\n(");
    put8(&b, '('), pk_str(&b, "storage"), puts_(&b, "ctorch\nFloatStorage\n"), pk_str(&b, "k"), pk_str(&b, "cpu");
    pk_int(&b, count);
    if (old_view_as_list)
        put8(&b, ']');
    put8(&b, '('), pk_str(&b, "kv"), pk_int(&b, view_off), pk_int(&b, view_size), put8(&b, old_view_as_list ? 'e' : 't');
    put8(&b, 't'), put8(&b, 'Q');
    pk_int(&b, old_tensor_offset), put8(&b, '('), pk_int(&b, old_tensor_size), put8(&b, 't'), put8(&b, '(');
    pk_int(&b, 2), put8(&b, 't');
    put8(&b, 't'), put8(&b, 'R'), put8(&b, 'u'), put8(&b, '.');
    put8(&b, 0x80), put8(&b, 2), put8(&b, ']'), put8(&b, '('), pk_str(&b, "k"), put8(&b, 'e'), put8(&b, '.');
    for (int i = 0; i < 8; i++)
        put8(&b, (uint8_t)((uint64_t)count >> (8 * i)));
    for (int i = 0; i < old_data_floats; i++) {
        float v = (float)i + 0.5f;
        put(&b, &v, 4);
    }
    for (size_t i = 0; i < extra; i++)
        put8(&b, 0);
    const char *p = tmp_path(name);
    write_bytes(p, b.p, b.n);
    free(b.p);
    return p;
}

static void test_old_legacy_storage_views(void)
{
    safetensors *st = torch_file_open(write_old_legacy("old.pt", 10, 2, 6, 0));
    const st_tensor *t = safetensors_require(st, "w");
    float got[3];
    safetensors_read_f32(st, t, got);
    /* view starts at element 2; tensor offset 1, stride 2: elements 3, 5, 7 */
    CHECK(t->ndim == 1 && t->shape[0] == 3 && got[0] == 3.5f && got[1] == 5.5f && got[2] == 7.5f,
          "old legacy view read %g %g %g", got[0], got[1], got[2]);
    CHECK(st->globals && !strcmp(st->globals, "torch._utils._rebuild_tensor torch.FloatStorage"), "globals %s",
          st->globals);
    safetensors_close(st);
    expect_bad("view past its storage", write_old_legacy("oldv.pt", 10, 6, 6, 0), "storage view");
    expect_bad("tensor past its view", write_old_legacy("oldt.pt", 10, 2, 5, 0), "reaches past the end");
    expect_bad("count mismatch", write_old_legacy("oldc.pt", 9, 2, 6, 0), "");
    expect_bad("trailing bytes", write_old_legacy("oldx.pt", 10, 2, 6, 4), "4 unexpected bytes after the last storage");
    /* The view metadata as a list is refused; an empty view at the storage's end holds an empty tensor,
     * and an empty storage may end the file. */
    old_view_as_list = 1;
    expect_bad("view metadata as a list", write_old_legacy("oldvl.pt", 10, 2, 6, 0), "unexpected storage view metadata");
    old_view_as_list = 0;
    old_tensor_offset = 0, old_tensor_size = 0;
    st = torch_file_open(write_old_legacy("oldend.pt", 10, 10, 0, 0));
    CHECK(safetensors_require(st, "w")->numel == 0, "an empty view at the end of its storage");
    safetensors_close(st);
    old_data_floats = 0;
    st = torch_file_open(write_old_legacy("oldempty.pt", 0, 0, 0, 0));
    CHECK(safetensors_require(st, "w")->numel == 0, "an empty storage at the end of the file");
    safetensors_close(st);
    old_tensor_offset = 1, old_tensor_size = 3, old_data_floats = 10;
    /* The second pickle holds the format's version, 1001: 1000 is refused. */
    size_t n;
    uint8_t *d = fixture_bytes(write_old_legacy("oldp.pt", 10, 2, 6, 0), &n);
    CHECK(n > 20 && d[15] == 0x80 && d[17] == 'M' && d[18] == 0xe9 && d[19] == 0x03, "old legacy layout");
    d[18] = 0xe8;
    expect_bad("legacy protocol version 1000", write_variant("oldp1000.pt", d, n), "protocol version other than 1001");
    /* The third, the writer's sys info: little_endian False is refused. */
    d[18] = 0xe9;
    CHECK(!memcmp(d + 30, "little_endian", 13) && d[43] == 0x88, "old legacy sys info layout");
    d[43] = 0x89;
    expect_bad("legacy from a big-endian machine", write_variant("oldbig.pt", d, n), "written on a big-endian machine");
    d[43] = 0x88;
    /* Cut inside the object's pickle, inside the key list's, and inside a storage's element count. */
    static const char keys_pickle[] = "\x80\x02](X\x01\x00\x00\x00ke.";
    uint8_t *keys = memmem(d, n, keys_pickle, sizeof keys_pickle - 1);
    CHECK(keys != NULL, "old legacy key list not found");
    if (keys) {
        size_t at = (size_t)(keys - d), after = at + sizeof keys_pickle - 1;
        expect_bad("legacy cut inside the sys info", write_variant("oldcut0.pt", d, 31), "more bytes");
        expect_bad("legacy cut inside the object", write_variant("oldcut1.pt", d, at - 5), "more bytes");
        expect_bad("legacy cut inside the key list", write_variant("oldcut2.pt", d, at + 5), "more bytes");
        expect_bad("legacy cut inside a count", write_variant("oldcut3.pt", d, after + 4), "truncated before storage 'k'");
        /* An empty key list: the storage the tensor uses is not in the file. */
        uint8_t *e = xmalloc(n);
        memcpy(e, d, at);
        memcpy(e + at, "\x80\x02].", 4);
        memcpy(e + at + 4, d + after, n - after);
        expect_bad("legacy without its storage in the key list", write_variant("oldnokey.pt", e, at + 4 + n - after),
                   "storage 'k' is used but not in the file's storage list");
        free(e);
    }
    free(d);
}

/* torch_file_sniff on buffers of exactly their content's size (malloc'd, so
 * that ASan sees a read past the end): the legacy magic after PROTO 2 to 5,
 * after the FRAME that protocols 4 and 5 begin with, and near misses. */
static torch_kind sniff_bytes(const void *bytes, size_t n)
{
    uint8_t *d = xmalloc(n);
    memcpy(d, bytes, n);
    torch_kind k = torch_file_sniff(d, n);
    free(d);
    return k;
}

static void test_sniff_legacy_magic(void)
{
    static const uint8_t magic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    uint8_t d[64];
    for (int proto = 1; proto <= 6; proto++)
        for (int framed = 0; framed <= 1; framed++) {
            size_t n = 0;
            d[n++] = 0x80, d[n++] = (uint8_t)proto;
            if (framed) {
                d[n++] = 0x95;
                for (int i = 0; i < 8; i++)
                    d[n++] = i == 0 ? sizeof magic : 0;
            }
            memcpy(d + n, magic, sizeof magic); /* the buffer ends with the magic's STOP */
            n += sizeof magic;
            torch_kind want = proto >= 2 && proto <= 5 && (!framed || proto >= 4) ? TORCH_LEGACY : TORCH_NOT;
            CHECK(sniff_bytes(d, n) == want, "legacy magic after protocol %d%s: sniffed %d, want %d", proto,
                  framed ? " and a FRAME" : "", (int)sniff_bytes(d, n), (int)want);
            CHECK(sniff_bytes(d, n - 1) == TORCH_NOT, "legacy magic cut by one byte (protocol %d%s)", proto,
                  framed ? ", framed" : "");
        }
    /* The first byte must be PROTO. */
    memcpy(d, "\x00\x02", 2), memcpy(d + 2, magic, sizeof magic);
    CHECK(sniff_bytes(d, 2 + sizeof magic) == TORCH_NOT, "magic after a first byte that is not PROTO");
    /* A protocol-4 header and nothing else (no byte to look for a FRAME in). */
    CHECK(sniff_bytes("\x80\x04", 2) == TORCH_NOT && sniff_bytes("\x80", 1) == TORCH_NOT &&
              sniff_bytes("", 0) == TORCH_NOT,
          "a PROTO alone is not a PyTorch file");
    /* Any other pickle at least as long as the magic. */
    static const char plain[] = "\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.";
    CHECK(sniff_bytes(plain, sizeof plain - 1) == TORCH_NOT, "a plain pickle sniffed as a legacy PyTorch file");
    const char *p = tmp_path("plain.pkl");
    write_bytes(p, plain, sizeof plain - 1);
    expect_bad("a plain pickle", p, "not a PyTorch file");
}

static void test_fifo_and_directory_refused(void)
{
    const char *p = tmp_path("fifo.pt");
    if (mkfifo(p, 0600) != 0) {
        CHECK(0, "mkfifo failed");
        return;
    }
    expect_bad("a FIFO (would block)", p, "not a regular file (a FIFO)");
    expect_bad("a directory", tmp_dir, "not a regular file (a directory)");
}

static void weights_open_child(void *ctx)
{
    safetensors_close(weights_open(ctx));
}

/* weights_open's sniffing (every weights flag goes through it): a PyTorch
 * file, a safetensors file (its header length may reach the end of the
 * file exactly), a bare pickle of protocol 2 to 5, anything else of 10
 * bytes or more "not a weights file"; shorter files get safetensors' own
 * words.  The header length is all eight bytes, low byte first. */
static void test_weights_open_sniffing(void)
{
    st_writer *w = st_writer_new();
    const char *empty = tmp_path("no_tensors.safetensors");
    st_writer_save(w, empty); /* header only: its length is the file's size − 8 */
    st_writer_free(w);
    char err[512];
    CHECK(run_in_child(weights_open_child, (void *)empty, err, sizeof err) == 0,
          "a safetensors file whose header ends the file: %s", err);
    CHECK(run_in_child(weights_open_child, FIX "pt_tensors_zip.pt", err, sizeof err) == 0, "a .pt file: %s", err);
    const char *smallest = tmp_path("smallest.safetensors");
    write_bytes(smallest, "\x02\x00\x00\x00\x00\x00\x00\x00{}", 10);
    CHECK(run_in_child(weights_open_child, (void *)smallest, err, sizeof err) == 0,
          "the smallest safetensors file (10 bytes, no tensors): %s", err);
    const struct {
        const char *what;
        const char *bytes;
        size_t n;
        const char *message;
    } bad[] = {
        {"pickle protocol 2", "\x80\x02}q\x00.\x00\x00\x00\x00\x00", 11, "a bare Python pickle, not a weights file"},
        {"a pickle of 10 bytes", "\x80\x02}q\x00.\x00\x00\x00\x00", 10, "a bare Python pickle"},
        {"pickle protocol 5", "\x80\x05}q\x00.\x00\x00\x00\x00\x00", 11, "a bare Python pickle"},
        {"pickle protocol 6", "\x80\x06}q\x00.\x00\x00\x00\x00\x00", 11, "not a weights file: neither safetensors"},
        {"protocol 1 marker", "\x80\x01}q\x00.\x00\x00\x00\x00\x00", 11, "not a weights file: neither"},
        {"ten bytes of text", "not weight", 10, "not a weights file"},
        {"'{' but the length too long", "\x03\x00\x00\x00\x00\x00\x00\x00{}", 10, "not a weights file"},
        {"the length's low byte", "\x00\x01\x00\x00\x00\x00\x00\x00{}", 10, "not a weights file"},
        {"the length's high byte", "\x01\x00\x00\x00\x00\x00\x00\x01{}", 10, "not a weights file"},
        {"a length that fits, no '{'", "\x02\x00\x00\x00\x00\x00\x00\x00[]", 10, "not a weights file"},
        {"nine bytes", "not weigh", 9, "is past the end of the file (9 bytes): not a safetensors file"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char name[32];
        snprintf(name, sizeof name, "sniff%zu.bin", k);
        const char *p = tmp_path(name);
        write_bytes(p, bad[k].bytes, bad[k].n);
        expect_die(bad[k].what, weights_open_child, (void *)p, bad[k].message);
    }
}

/* Random corruptions of both fixtures: accepted, or a clean die. */
static void corrupt_loop(const char *fixture, int rounds, uint64_t seed, int *rejected_out)
{
    size_t n;
    uint8_t *orig = fixture_bytes(fixture, &n), *d = xmalloc(n);
    rng r = rng_new(seed, 3);
    int accepted = 0, rejected = 0, crashed = 0;
    const char *path = tmp_path("fuzz.pt");
    for (int k = 0; k < rounds; k++) {
        memcpy(d, orig, n);
        size_t len = n;
        int kind = (int)rng_below(&r, 4), edits = 1 + (int)rng_below(&r, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rng_below(&r, (uint32_t)n);
            if (kind == 0)
                d[at] = (uint8_t)rng_below(&r, 256);
            else if (kind == 1)
                d[at] ^= (uint8_t)(1u << rng_below(&r, 8));
            else if (kind == 2) /* the last 400 bytes: central directory and EOCD */
                d[n - 1 - rng_below(&r, n < 400 ? (uint32_t)n : 400)] = (uint8_t)rng_below(&r, 256);
        }
        if (kind == 3)
            len = rng_below(&r, (uint32_t)n);
        write_bytes(path, d, len);
        char err[4096];
        int rc = run_in_child(child_open_and_read, (void *)path, err, sizeof err);
        if (rc == 0)
            accepted++;
        else if (rc == 1 && !strncmp(err, "repae: error: ", 14) && !strstr(err, "Sanitizer") &&
                 !strstr(err, "runtime error"))
            rejected++;
        else if (crashed++ < 3) {
            char keep[600];
            snprintf(keep, sizeof keep, "/tmp/repae-pt-crash-%d.pt", k);
            write_bytes(keep, d, len);
            CHECK(0, "corrupted %s %d (kind %d, kept as %s): status %d, stderr \"%.600s\"", fixture, k, kind, keep, rc,
                  err);
        }
    }
    CHECK(crashed == 0, "%d of %d corruptions of %s crashed the reader", crashed, rounds, fixture);
    if (getenv("TEST_VERBOSE"))
        printf("       %s: %d accepted, %d rejected, %d crashed\n", fixture, accepted, rejected, crashed);
    *rejected_out = rejected;
    free(orig), free(d);
}

static void test_random_corruptions_never_crash(void)
{
    int rz, rl;
    corrupt_loop(FIX "pt_tensors_zip.pt", 250, 91, &rz);
    corrupt_loop(FIX "pt_tensors_legacy.pt", 150, 92, &rl);
    CHECK(rz > 150, "only %d of 250 zip corruptions rejected (CRC should catch most)", rz);
    CHECK(rl > 30, "only %d of 150 legacy corruptions rejected", rl);
}


/* ---- the command line: inspect, convert, a model loaded from a .pt ---------------- */

static char repae_bin[256];

static int have_repae(void)
{
    const char *b = getenv("BUILD");
    snprintf(repae_bin, sizeof repae_bin, "%s/repae", b && *b ? b : "build");
    if (access(repae_bin, X_OK) != 0) {
        CHECK(0, "%s not found: run the tests from the repository root after building it", repae_bin);
        return 0;
    }
    return 1;
}

static char out_buf[1 << 17], err_buf[8192];

static int run(const char *fmt, const char *a, const char *b, const char *c)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, repae_bin, a, b, c);
    return run_command(cmd, out_buf, sizeof out_buf, err_buf, sizeof err_buf);
}

static void test_cli_inspect_pt(void)
{
    if (!have_repae())
        return;
    int rc = run("'%s' inspect '%s'%s%s", FIX "pt_checkpoint.pt", "", "");
    CHECK(rc == 0, "inspect .pt exited %d: %s", rc, err_buf);
    const char *want[] = {"670 tensors", "format: PyTorch zip", "argparse.Namespace", "torch._utils._rebuild_tensor_v2",
                          "vae.encoder.conv_in.weight", "F32", "[8, 4, 3, 3]", "ema.pos_embed",
                          "opt.state.1.exp_avg_sq", "steps = 400000", "args = {\"model\":\"custom\"",
                          "VAE at 'vae.'", "SiT at 'ema.'", "discriminator at 'discriminator.'"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(out_buf, want[i]) != NULL, "inspect .pt output lacks \"%s\"", want[i]);
    rc = run("'%s' inspect '%s'%s%s", FIX "pt_tensors_legacy.pt", "", "");
    CHECK(rc == 0 && strstr(out_buf, "format: PyTorch legacy") && strstr(out_buf, "BF16") &&
              strstr(out_buf, "nested.inner.w"),
          "inspect of the legacy file: status %d\n%s", rc, out_buf);
    rc = run("'%s' inspect '%s'%s%s", FIX "evil_system.pt", "", "");
    CHECK(rc == 1 && strstr(err_buf, "refusing to load global posix.system"), "inspect of a malicious file: %d %s", rc,
          err_buf);
}

static void test_cli_convert_pt(void)
{
    if (!have_repae())
        return;
    const char *out = tmp_path("vae_converted.safetensors");
    int rc = run("'%s' convert '%s' '%s' --prefix %s", FIX "pt_checkpoint.pt", out, "vae");
    CHECK(rc == 0 && strstr(out_buf, "124 tensors"), "convert --prefix vae: status %d, %s %s", rc, out_buf, err_buf);
    safetensors *c = safetensors_open(out), *ref = safetensors_open(FIX "pt_checkpoint_ref.safetensors");
    CHECK(c->n_tensors == 124, "converted file has %d tensors", c->n_tensors);
    int bad = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        char key[300];
        snprintf(key, sizeof key, "vae.%s", c->tensors[i].name);
        const st_tensor *r = safetensors_find(ref, key), *t = &c->tensors[i];
        bad += !r || r->dtype != t->dtype || r->numel != t->numel ||
               memcmp(r->bytes, t->bytes, (size_t)t->numel * st_dtype_size(t->dtype));
    }
    CHECK(bad == 0, "%d converted tensors differ from the reference", bad);
    const char *args = safetensors_meta(c, "args");
    CHECK(args && strstr(args, "\"vae_norm_groups\":2"), "converted file keeps the args metadata");
    safetensors_close(c);
    safetensors_close(ref);
    /* Whole file, dtypes kept (F16 stays F16, BOOL stays BOOL). */
    out = tmp_path("all_converted.safetensors");
    rc = run("'%s' convert '%s' '%s'%s", FIX "pt_tensors_legacy.pt", out, "");
    c = safetensors_open(out);
    CHECK(rc == 0 && c->n_tensors == 19 && safetensors_find(c, "f16")->dtype == ST_F16 &&
              safetensors_find(c, "bool")->dtype == ST_BOOL && safetensors_find(c, "transposed")->shape[0] == 4,
          "convert of the legacy file");
    safetensors_close(c);
    rc = run("'%s' convert '%s' '%s' --prefix %s", FIX "pt_checkpoint.pt", out, "nope");
    CHECK(rc == 1 && strstr(err_buf, "prefixes there: model. ema. vae."), "convert with a wrong prefix: %s", err_buf);
}

static void test_cli_forward_vae_from_pt_equals_safetensors(void)
{
    if (!have_repae())
        return;
    float x[3 * 16 * 16];
    fill_uniform(x, 3 * 16 * 16, -1, 1, 5);
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 4, (int64_t[]){1, 3, 16, 16}, x);
    const char *in = tmp_path("fwd_in.safetensors");
    st_writer_save(w, in);
    st_writer_free(w);
    const char *o1 = tmp_path("fwd_pt.safetensors"), *o2 = tmp_path("fwd_st.safetensors");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "'%%s' forward --model vae --weights '%%s' --input '%s' --output '%%s'%%s", in);
    int rc1 = run(cmd, FIX "pt_checkpoint.pt", o1, "");
    CHECK(rc1 == 0, "forward --weights .pt: status %d, %s", rc1, err_buf);
    int rc2 = run(cmd, FIX "pt_checkpoint_ref.safetensors", o2, "");
    CHECK(rc2 == 0, "forward --weights .safetensors: status %d, %s", rc2, err_buf);
    if (rc1 || rc2)
        return;
    safetensors *a = safetensors_open(o1), *b = safetensors_open(o2);
    CHECK(a->n_tensors == b->n_tensors && a->n_tensors >= 3, "forward outputs: %d vs %d tensors", a->n_tensors,
          b->n_tensors);
    for (int i = 0; i < b->n_tensors; i++) {
        const st_tensor *tb = &b->tensors[i], *ta = safetensors_find(a, tb->name);
        CHECK(ta && ta->numel == tb->numel && !memcmp(ta->bytes, tb->bytes, (size_t)tb->numel * 4),
              "forward output '%s' from the .pt differs from the safetensors run", tb->name);
    }
    safetensors_close(a);
    safetensors_close(b);
    /* Files that are no weights at all. */
    const char *junk = tmp_path("junk.pt");
    write_bytes(junk, "this is a text file, not weights\n", 33);
    int rc = run(cmd, junk, o1, "");
    CHECK(rc == 1 && strstr(err_buf, "not a weights file") && strstr(err_buf, junk), "junk weights: %s", err_buf);
    const char *pkl = tmp_path("bare.pkl");
    write_bytes(pkl, "\x80\x02}q\x00.\x00\x00\x00\x00\x00", 11);
    rc = run(cmd, pkl, o1, "");
    CHECK(rc == 1 && strstr(err_buf, "a bare Python pickle"), "bare pickle as weights: %s", err_buf);
}

/* repae sample --ckpt CHECKPOINT.pt --latents-stats STATS.pt: the same images
 * as from the safetensors copy (EMA SiT, VAE and args all from the .pt). */
static void test_cli_sample_from_pt_equals_safetensors(void)
{
    if (!have_repae())
        return;
    const char *ck[2] = {FIX "pt_checkpoint.pt", FIX "pt_checkpoint_ref.safetensors"}, *names[2] = {"s_pt", "s_st"};
    char npz[2][600];
    for (int k = 0; k < 2; k++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "'%%s' sample --ckpt '%s' --latents-stats '%%s' --num-samples 3 --num-steps 3 --sample-dir '%%s' "
                 "--name %s --no-png%%s",
                 ck[k], names[k]);
        int rc = run(cmd, FIX "pt_latents_stats.pt", tmp_dir, "");
        CHECK(rc == 0, "sample --ckpt %s: status %d, %s", ck[k], rc, err_buf);
        snprintf(npz[k], sizeof npz[k], "%s/%s.npz", tmp_dir, names[k]);
    }
    size_t na = 0, nb = 0;
    char *a = access(npz[0], R_OK) == 0 ? read_file_all(npz[0], &na) : NULL;
    char *b = access(npz[1], R_OK) == 0 ? read_file_all(npz[1], &nb) : NULL;
    CHECK(a && b && na == nb && na > 100 && !memcmp(a, b, na), "samples from the .pt differ from the safetensors run");
    free(a), free(b);
    unlink(npz[0]), unlink(npz[1]);
    char lab[600];
    for (int k = 0; k < 2; k++) {
        snprintf(lab, sizeof lab, "%s/%s-labels.txt", tmp_dir, names[k]);
        unlink(lab);
    }
}

int main(void)
{
    tmp_dir = test_tmp_dir("pt");
    RUN(test_zip_format_every_dtype_and_layout);
    RUN(test_legacy_format_every_dtype_and_layout);
    RUN(test_sniff_legacy_magic);
    RUN(test_weights_open_sniffing);
    RUN(test_handmade_storage_references);
    RUN(test_handmade_names_and_metadata);
    RUN(test_materialise_limit);
    RUN(test_pickle_protocols_3_to_5);
    RUN(test_python_pickles_every_protocol);
    RUN(test_handmade_pickle_opcodes);
    RUN(test_checkpoint_equals_safetensors_bit_for_bit);
    RUN(test_latents_stats_file);
    RUN(test_malicious_pickles_are_refused_and_nothing_runs);
    RUN(test_handmade_tensor_pickles);
    RUN(test_handmade_hostile_pickles);
    RUN(test_hostile_archives);
    RUN(test_hostile_archive_records);
    RUN(test_hostile_legacy_files);
    RUN(test_old_legacy_storage_views);
    RUN(test_fifo_and_directory_refused);
    RUN(test_random_corruptions_never_crash);
    RUN(test_cli_inspect_pt);
    RUN(test_cli_convert_pt);
    RUN(test_cli_forward_vae_from_pt_equals_safetensors);
    RUN(test_cli_sample_from_pt_equals_safetensors);
    return test_summary();
}
