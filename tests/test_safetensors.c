/* safetensors reader/writer (src/io/safetensors.c) and `repae inspect`.
 *
 *  - writer -> reader round trips (F32, I64, metadata with characters JSON
 *    must escape, zero-size tensors, scalars), 8-byte data alignment, atomic
 *    saves that leave no .tmp file;
 *  - hand-made F16 / BF16 / F64 / integer bytes read back exactly (subnormals,
 *    ±0, ±inf, NaN), and the half-precision converters over all 65536 bit
 *    patterns against the compiler's _Float16;
 *  - hand-made bad files, written into a mkdtemp directory: each must make
 *    the reader exit 1 with "repae: error:", the file name and the problem
 *    (checked in a forked child: tests/harness.c run_in_child);
 *  - `repae inspect` (the program the Makefile builds before the tests, at
 *    $BUILD/repae, default build/repae) on a good and on bad files.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file_map.h"
#include "io/safetensors.h"
#include "test.h"

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

/* u64 little-endian header length, the header, then `data_len` data bytes
 * (if data is NULL, a byte pattern). */
static const char *write_st(const char *name, const char *header, const void *data, size_t data_len)
{
    const char *path = tmp_path(name);
    size_t hl = strlen(header);
    uint8_t *buf = xmalloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = data ? ((const uint8_t *)data)[i] : (uint8_t)(i * 37 + 1);
    write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
    return path;
}

/* ---- round trips ------------------------------------------------------------- */

static void test_roundtrip_f32_i64_metadata_zero_size_scalar(void)
{
    float x[6] = {1.5f, -2.25f, 0.0f, -0.0f, 3.4028235e38f, 1.17549435e-38f / 8}; /* incl. a subnormal */
    x[2] = INFINITY;
    int64_t idx[4] = {0, -1, INT64_MAX, INT64_MIN};
    float scalar = 42.5f;
    float dummy = 7;
    const char *meta_val = "a \"quoted\" value\nwith newline, tab\t, backslash \\ and UTF-8 \xc3\xbc";

    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 2, (int64_t[]){2, 3}, x);
    st_writer_add_i64(w, "labels.idx", 1, (int64_t[]){4}, idx);
    st_writer_add_f32(w, "empty", 1, (int64_t[]){0}, &dummy);
    st_writer_add_f32(w, "empty2d", 2, (int64_t[]){3, 0}, &dummy);
    st_writer_add_f32(w, "s", 0, NULL, &scalar);
    st_writer_set_metadata(w, "script", "test_safetensors.c");
    st_writer_set_metadata(w, "note", meta_val);
    st_writer_set_metadata(w, "script", "overwritten");
    const char *path = tmp_path("roundtrip.safetensors");
    st_writer_save(w, path);
    st_writer_free(w);

    safetensors *st = safetensors_open(path);
    CHECK(st->n_tensors == 5, "expected 5 tensors, got %d", st->n_tensors);
    CHECK(((uintptr_t)(st->data - (const uint8_t *)st->map)) % 8 == 0, "data section not 8-byte aligned (at %td)",
          st->data - (const uint8_t *)st->map);

    const st_tensor *t = safetensors_find(st, "x");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6,
          "x has the wrong dtype/shape");
    if (t) {
        float got[6];
        safetensors_read_f32(st, t, got);
        CHECK(memcmp(got, x, sizeof x) == 0, "x differs after the round trip (bitwise)");
    }
    t = safetensors_find(st, "labels.idx");
    CHECK(t && t->dtype == ST_I64 && t->ndim == 1 && t->shape[0] == 4, "labels.idx has the wrong dtype/shape");
    if (t) {
        int64_t got[4];
        safetensors_read_i64(st, t, got);
        CHECK(memcmp(got, idx, sizeof idx) == 0, "labels.idx differs after the round trip");
    }
    t = safetensors_find(st, "empty");
    CHECK(t && t->ndim == 1 && t->shape[0] == 0 && t->numel == 0 && t->begin == t->end, "empty tensor wrong");
    if (t) {
        float sentinel = 123;
        safetensors_read_f32(st, t, &sentinel);
        CHECK(sentinel == 123, "reading a zero-size tensor wrote into dst");
    }
    t = safetensors_find(st, "empty2d");
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 0 && t->numel == 0, "empty2d wrong");
    t = safetensors_find(st, "s");
    CHECK(t && t->ndim == 0 && t->numel == 1, "scalar should have ndim 0 and one element");
    if (t) {
        float v = 0;
        safetensors_read_f32(st, t, &v);
        CHECK(v == 42.5f, "scalar value %g", v);
    }
    CHECK(safetensors_find(st, "nope") == NULL, "find of a missing name should be NULL");
    const char *m = safetensors_meta(st, "script");
    CHECK(m && !strcmp(m, "overwritten"), "metadata 'script' = %s", m ? m : "(null)");
    m = safetensors_meta(st, "note");
    CHECK(m && !strcmp(m, meta_val), "metadata with escapes did not survive: %s", m ? m : "(null)");
    CHECK(safetensors_meta(st, "absent") == NULL, "absent metadata should be NULL");

    /* get_f32 / load_f32 */
    int nd = -1;
    int64_t shape[ST_MAX_DIMS];
    float *g = safetensors_get_f32(st, "x", &nd, shape);
    CHECK(nd == 2 && shape[0] == 2 && shape[1] == 3 && memcmp(g, x, sizeof x) == 0, "get_f32 wrong");
    free(g);
    float l[6];
    safetensors_load_f32(st, "x", 2, (int64_t[]){2, 3}, l);
    CHECK(memcmp(l, x, sizeof x) == 0, "load_f32 wrong");
    safetensors_close(st);
}

static void test_empty_writer_and_empty_header(void)
{
    st_writer *w = st_writer_new();
    const char *path = tmp_path("nothing.safetensors");
    st_writer_save(w, path);
    st_writer_free(w);
    safetensors *st = safetensors_open(path);
    CHECK(st->n_tensors == 0 && st->n_meta == 0, "empty file should have no tensors and no metadata");
    safetensors_close(st);
    /* A header of exactly "{}" with nothing after it. */
    st = safetensors_open(write_st("braces.safetensors", "{}", NULL, 0));
    CHECK(st->n_tensors == 0, "'{}' should give no tensors");
    safetensors_close(st);
    /* Trailing spaces (the padding writers add) are fine. */
    st = safetensors_open(write_st("padded.safetensors", "{\"__metadata__\":{\"a\":\"b\"}}     ", NULL, 0));
    CHECK(st->n_meta == 1, "padded header should parse");
    safetensors_close(st);
}

static void test_atomic_save_leaves_no_tmp(void)
{
    const char *path = tmp_path("atomic.safetensors");
    float a[3] = {1, 2, 3}, b[2] = {9, 8};
    for (int round = 0; round < 2; round++) {
        st_writer *w = st_writer_new();
        if (round == 0)
            st_writer_add_f32(w, "a", 1, (int64_t[]){3}, a);
        else
            st_writer_add_f32(w, "b", 1, (int64_t[]){2}, b); /* overwrites the first file */
        st_writer_save(w, path);
        st_writer_free(w);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        CHECK(access(tmp, F_OK) != 0, "'%s' left behind after save", tmp);
    }
    safetensors *st = safetensors_open(path);
    CHECK(st->n_tensors == 1 && safetensors_find(st, "b") && !safetensors_find(st, "a"),
          "the second save should have replaced the first");
    safetensors_close(st);
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t L = strlen(e->d_name);
        CHECK(!(L > 4 && !strcmp(e->d_name + L - 4, ".tmp")), "stray temporary file '%s' in %s", e->d_name, tmp_dir);
    }
    if (d)
        closedir(d);
}

/* ---- half precision and other dtypes --------------------------------------- */

static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

static void test_f16_bf16_and_integer_dtypes_read_exactly(void)
{
    static const struct {
        uint16_t bits;
        double want;
    } f16[] = {
        {0x0000, 0.0},   {0x8000, -0.0},      {0x0001, 0x1p-24},    {0x8001, -0x1p-24},  {0x03ff, 1023 * 0x1p-24},
        {0x0400, 0x1p-14}, {0x3c00, 1.0},     {0xc000, -2.0},       {0x7bff, 65504.0},   {0x3555, 0.333251953125},
        {0x7c00, INFINITY}, {0xfc00, -INFINITY}, {0x7e00, NAN},
    };
    static const struct {
        uint16_t bits;
        double want;
    } bf16[] = {
        {0x3f80, 1.0}, {0x8000, -0.0}, {0x0001, 0x1p-133}, {0x007f, 127 * 0x1p-133}, {0x0080, 0x1p-126},
        {0x4049, 3.140625}, {0x7f7f, 0x1.fep127}, {0x7f80, INFINITY}, {0xff80, -INFINITY}, {0x7fc0, NAN},
    };
    enum { NH = sizeof f16 / sizeof f16[0], NB = sizeof bf16 / sizeof bf16[0] };
    uint8_t data[256];
    size_t off = 0;
    for (int i = 0; i < NH; i++, off += 2)
        data[off] = f16[i].bits & 0xff, data[off + 1] = f16[i].bits >> 8;
    size_t bf_off = off;
    for (int i = 0; i < NB; i++, off += 2)
        data[off] = bf16[i].bits & 0xff, data[off + 1] = bf16[i].bits >> 8;
    /* F64, I32, I16, I8, U8, BOOL right after (unaligned on purpose). */
    size_t f64_off = off;
    double d64[3] = {1.5, -1e300, 0x1p-140};
    memcpy(data + off, d64, sizeof d64), off += sizeof d64;
    size_t i32_off = off;
    int32_t d32[2] = {-7, INT32_MAX};
    memcpy(data + off, d32, sizeof d32), off += sizeof d32;
    size_t i16_off = off;
    int16_t d16[2] = {-32768, 12345};
    memcpy(data + off, d16, sizeof d16), off += sizeof d16;
    size_t i8_off = off;
    data[off++] = 0x80, data[off++] = 0x7f;
    size_t u8_off = off;
    data[off++] = 255, data[off++] = 3;
    size_t bool_off = off;
    data[off++] = 0, data[off++] = 1;
    size_t i64_off = off;
    int64_t d64i[3] = {-5, (int64_t)1 << 40, 7};
    memcpy(data + off, d64i, sizeof d64i), off += sizeof d64i;

    char header[1024];
    snprintf(header, sizeof header,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%zu]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]},"
             "\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[%zu,%zu]},"
             "\"i32\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
             "\"i16\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
             "\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
             "\"u8\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
             "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
             "\"i64\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[%zu,%zu]}}",
             NH, bf_off, NB, bf_off, f64_off, f64_off, i32_off, i32_off, i16_off, i16_off, i8_off, i8_off, u8_off,
             u8_off, bool_off, bool_off, i64_off, i64_off, off);
    safetensors *st = safetensors_open(write_st("dtypes.safetensors", header, data, off));
    float got[32];
    safetensors_read_f32(st, safetensors_require(st, "h"), got);
    for (int i = 0; i < NH; i++)
        CHECK(same_float(got[i], (float)f16[i].want), "F16 0x%04x read as %a, want %a", f16[i].bits, got[i],
              (float)f16[i].want);
    safetensors_read_f32(st, safetensors_require(st, "b"), got);
    for (int i = 0; i < NB; i++)
        CHECK(same_float(got[i], (float)bf16[i].want), "BF16 0x%04x read as %a, want %a", bf16[i].bits, got[i],
              (float)bf16[i].want);
    safetensors_read_f32(st, safetensors_require(st, "d"), got);
    CHECK(got[0] == 1.5f && got[1] == -INFINITY && got[2] == (float)0x1p-140, "F64 -> f32: %g %g %g", got[0], got[1],
          got[2]);
    safetensors_read_f32(st, safetensors_require(st, "i32"), got);
    CHECK(got[0] == -7 && got[1] == 2147483648.0f, "I32 -> f32: %g %g", got[0], got[1]);
    int64_t gi[2];
    safetensors_read_i64(st, safetensors_require(st, "i32"), gi);
    CHECK(gi[0] == -7 && gi[1] == INT32_MAX, "I32 -> i64");
    safetensors_read_i64(st, safetensors_require(st, "i16"), gi);
    CHECK(gi[0] == -32768 && gi[1] == 12345, "I16 -> i64");
    safetensors_read_i64(st, safetensors_require(st, "i8"), gi);
    CHECK(gi[0] == -128 && gi[1] == 127, "I8 -> i64: %lld %lld", (long long)gi[0], (long long)gi[1]);
    safetensors_read_i64(st, safetensors_require(st, "u8"), gi);
    CHECK(gi[0] == 255 && gi[1] == 3, "U8 -> i64");
    safetensors_read_f32(st, safetensors_require(st, "bool"), got);
    CHECK(got[0] == 0 && got[1] == 1, "BOOL -> f32");
    safetensors_read_f32(st, safetensors_require(st, "i64"), got);
    CHECK(got[0] == -5 && got[1] == 0x1p40f && got[2] == 7, "I64 -> f32: %g %g %g", got[0], got[1], got[2]);
    safetensors_close(st);
}

static void test_half_converters_all_bit_patterns(void)
{
    int bad16 = 0, badbf = 0, badrt = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        uint16_t h = (uint16_t)b;
        _Float16 hw;
        memcpy(&hw, &h, 2);
        float want = (float)hw, got = f16_to_f32(h);
        if (!same_float(got, want) && bad16++ < 3)
            CHECK(0, "f16_to_f32(0x%04x) = %a, hardware says %a", h, got, want);
        uint32_t fb = b << 16;
        float bw;
        memcpy(&bw, &fb, 4);
        if (!same_float(bf16_to_f32(h), bw) && badbf++ < 3)
            CHECK(0, "bf16_to_f32(0x%04x) = %a, want %a", h, bf16_to_f32(h), bw);
        if (!isnan(got) && f32_to_f16(got) != h && badrt++ < 3)
            CHECK(0, "f32_to_f16(f16_to_f32(0x%04x)) = 0x%04x", h, f32_to_f16(got));
    }
    CHECK(bad16 == 0 && badbf == 0 && badrt == 0, "%d f16, %d bf16, %d round-trip mismatches", bad16, badbf, badrt);
    /* Rounding to nearest even, overflow and underflow. */
    CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "1 + 2^-11 should round to even 1.0");
    CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "1 + 3*2^-11 should round up to even");
    CHECK(f32_to_f16(65520.0f) == 0x7c00, "65520 should overflow to inf");
    CHECK(f32_to_f16(0x1p-25f) == 0x0000, "2^-25 is a tie and rounds to 0");
    CHECK(f32_to_f16(0x1.000002p-25f) == 0x0001, "just above 2^-25 rounds to the smallest subnormal");
    CHECK(f32_to_f16(-0.0f) == 0x8000, "-0 keeps its sign");
    /* The integer conversion against the hardware on 4M random floats (every
     * exponent, so rounding, subnormals, overflow and ties are all hit). */
    rng r = rng_new(1234, 7);
    int badhw = 0;
    for (int k = 0; k < (1 << 22); k++) {
        uint32_t bits = (uint32_t)rng_below(&r, 1u << 31) << 1 | (uint32_t)rng_below(&r, 2);
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f))
            continue;
        _Float16 hw = (_Float16)f;
        uint16_t want;
        memcpy(&want, &hw, 2);
        if (f32_to_f16(f) != want && badhw++ < 3)
            CHECK(0, "f32_to_f16(%a) = 0x%04x, hardware 0x%04x", f, f32_to_f16(f), want);
    }
    CHECK(badhw == 0, "%d of 4M random floats convert differently from the hardware", badhw);
}

/* ---- accessors that die ------------------------------------------------------ */

static const char *good_path;

static void child_require_missing(void *ctx)
{
    safetensors *st = safetensors_open(good_path);
    safetensors_require(st, "no.such.tensor");
}

/* ctx: the expected shape, 2 dimensions (x is [2, 3]). */
static void child_load_wrong_shape(void *ctx)
{
    safetensors *st = safetensors_open(good_path);
    float buf[16];
    safetensors_load_f32(st, "x", 2, (const int64_t *)ctx, buf);
}

static void child_read_i64_of_float(void *ctx)
{
    safetensors *st = safetensors_open(good_path);
    int64_t buf[16];
    safetensors_read_i64(st, safetensors_require(st, "x"), buf);
}

static void child_writer_duplicate(void *ctx)
{
    float v = 1;
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "a", 0, NULL, &v);
    st_writer_add_f32(w, "a", 0, NULL, &v);
}

static void child_save_into_missing_dir(void *ctx)
{
    float v = 1;
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "a", 0, NULL, &v);
    st_writer_save(w, "/nonexistent-dir-for-repae-tests/out.safetensors");
}

static void test_accessor_errors_name_file_and_tensor(void)
{
    float x[6] = {0};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", 2, (int64_t[]){2, 3}, x);
    good_path = tmp_path("good.safetensors");
    st_writer_save(w, good_path);
    st_writer_free(w);
    char err[4096];
    int rc = run_in_child(child_require_missing, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, good_path) && strstr(err, "'no.such.tensor' is missing"),
          "require of a missing tensor: status %d, stderr \"%s\"", rc, err);
    rc = run_in_child(child_load_wrong_shape, (int64_t[]){3, 2}, err, sizeof err);
    CHECK(rc == 1 && strstr(err, good_path) && strstr(err, "has shape [2, 3], expected [3, 2]"),
          "load with the wrong shape: status %d, stderr \"%s\"", rc, err);
    /* Each dimension is compared, the first and the last alone. */
    expect_die("load with the first dimension wrong", child_load_wrong_shape, (int64_t[]){1, 3},
               "has shape [2, 3], expected [1, 3]");
    expect_die("load with the last dimension wrong", child_load_wrong_shape, (int64_t[]){2, 2},
               "has shape [2, 3], expected [2, 2]");
    rc = run_in_child(child_read_i64_of_float, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, good_path) && strstr(err, "integer tensor is expected"),
          "read_i64 of F32: status %d, stderr \"%s\"", rc, err);
    expect_die("writer: duplicate name", child_writer_duplicate, NULL, "'a' added twice");
    expect_die("save into a missing directory", child_save_into_missing_dir, NULL,
               "/nonexistent-dir-for-repae-tests/out.safetensors");
}

/* ---- bad files --------------------------------------------------------------- */

/* Opens the file and reads every tensor: a reader that accepts a bad file
 * returns normally (status 0) or crashes, and the test says so. */
static void child_open_and_read(void *ctx)
{
    safetensors *st = safetensors_open((const char *)ctx);
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (t->numel > (1 << 24))
            return; /* accepted an absurd tensor: exits 0, reported as a failure */
        float *buf = xmalloc((size_t)t->numel * sizeof(float) + 4);
        safetensors_read_f32(st, t, buf);
        free(buf);
    }
    safetensors_close(st);
}

static void expect_bad_file(const char *label, const char *path, const char *problem)
{
    char err[4096];
    int rc = run_in_child(child_open_and_read, (void *)path, err, sizeof err);
    if (rc != 1) {
        CHECK(0, "%s: the reader should exit 1, got %s %d; stderr \"%s\"", label,
              rc == 0 ? "a normal return, status" : rc > 128 ? "signal" : "status", rc > 128 ? rc - 128 : rc, err);
        return;
    }
    /* One line says it all (under ASan, LeakSanitizer may add "==pid==" notes
     * after it in a forked child: only the first line is checked). */
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = 0;
    CHECK(strncmp(err, "repae: error: ", 14) == 0, "%s: message does not start with 'repae: error:': \"%s\"", label,
          err);
    CHECK(strstr(err, path) != NULL, "%s: message does not name the file %s: \"%s\"", label, path, err);
    CHECK(strstr(err, problem) != NULL, "%s: message lacks \"%s\": \"%s\"", label, problem, err);
}

#define T1(body) "{\"t\":{" body "}}"

static const struct bad_case {
    const char *name, *header;
    size_t data_len;
    const char *problem;
} bad_cases[] = {
    {"not_json", "{\"t\": {\"dtype\": \"F32\",", 0, "not valid JSON"},
    {"garbage_json", "hello world", 0, "not valid JSON"},
    {"array_header", "[1, 2, 3]", 0, "must be a JSON object"},
    {"string_header", "\"abc\"", 0, "must be a JSON object"},
    {"trailing_garbage", "{}xyz", 0, "after the JSON header"},
    {"trailing_nul", "{} \0 ", 0, "after the JSON header"},
    {"entry_not_object", "{\"t\": 5}", 0, "entry 't' is not an object"},
    {"no_dtype", T1("\"shape\":[1],\"data_offsets\":[0,4]"), 4, "has no string 'dtype'"},
    {"dtype_number", T1("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"), 4, "has no string 'dtype'"},
    {"no_shape", T1("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, "has no 'shape' array"},
    {"shape_not_array", T1("\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]"), 4, "has no 'shape' array"},
    {"no_offsets", T1("\"dtype\":\"F32\",\"shape\":[1]"), 4, "data_offsets"},
    {"offsets_len1", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), 4, "data_offsets"},
    {"offsets_len3", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 8, "data_offsets"},
    {"offsets_fraction", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]"), 8, "non-integer data_offsets"},
    {"offsets_negative", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 8, "non-integer data_offsets"},
    {"offsets_string", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]"), 8, "non-integer data_offsets"},
    {"dtype_f8", T1("\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]"), 4, "unsupported dtype 'F8_E4M3'"},
    {"dtype_q4", T1("\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,2]"), 4, "unsupported dtype 'Q4'"},
    {"dtype_lowercase", T1("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, "unsupported dtype 'f32'"},
    {"begin_after_end", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"), 8, "begin after end"},
    {"end_past_data", T1("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), 12, "file truncated?"},
    {"end_past_empty_data", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 0, "file truncated?"},
    {"bytes_vs_shape", T1("\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"), 8,
     "(F32 [3]) should take 12 bytes but its data_offsets span 8"},
    {"bytes_vs_dtype", T1("\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]"), 16, "should take 8 bytes"},
    {"scalar_no_bytes", T1("\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]"), 4, "should take 4 bytes"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "'a' and 'b' overlap"},
    {"same_range",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, "overlap"},
    {"contained",
     "{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
     "\"in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     20, "overlap"},
    {"duplicate_name",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "'a' appears twice"},
    {"duplicate_metadata", "{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\",\"c\":\"3\",\"d\":\"4\"}}", 0,
     "__metadata__ appears twice"},
    {"shape_negative", T1("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 4,
     "invalid shape entry at dimension 0"},
    {"shape_fraction", T1("\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]"), 12,
     "invalid shape entry at dimension 1"},
    {"shape_string", T1("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8, "invalid shape entry"},
    {"shape_huge", T1("\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,8]"), 8, "invalid shape entry"},
    {"shape_9_dims", T1("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4,
     "9 dimensions"},
    /* numel * 4 = 2^64 wraps to 0 in 64 bits: must not pass as a 0-byte tensor. */
    {"shape_overflow_f32", T1("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]"), 0,
     "impossibly large"},
    {"shape_overflow_f64", T1("\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]"), 0,
     "impossibly large"},
    {"metadata_number", "{\"__metadata__\":{\"epoch\":3}}", 0, "__metadata__ entry 'epoch' is not a string"},
    {"metadata_null", "{\"__metadata__\":{\"x\":null}}", 0, "is not a string"},
    {"metadata_not_object", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__ must be an object"},
};

static void test_bad_headers_die_with_clear_messages(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        char name[128];
        snprintf(name, sizeof name, "bad_%s.safetensors", c->name);
        /* trailing_nul has an embedded NUL: write its 5 bytes explicitly. */
        const char *path;
        if (!strcmp(c->name, "trailing_nul")) {
            const char hdr[5] = {'{', '}', ' ', 0, ' '};
            uint8_t buf[13] = {5, 0, 0, 0, 0, 0, 0, 0};
            memcpy(buf + 8, hdr, 5);
            path = tmp_path(name);
            write_bytes(path, buf, sizeof buf);
        } else
            path = write_st(name, c->header, NULL, c->data_len);
        expect_bad_file(c->name, path, c->problem);
    }
}

/* What the limits allow must load: 8 dimensions (9 are refused above), and
 * an empty tensor at the offset where a non-empty one begins, listed before
 * or after it: sorted by begin and then end, the two do not overlap. */
static void test_limits_that_must_load(void)
{
    const char *p = write_st("dims8.safetensors",
                             "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", NULL, 8);
    safetensors *st = safetensors_open(p);
    const st_tensor *t = safetensors_find(st, "t");
    CHECK(t && t->ndim == 8 && t->shape[7] == 2 && t->numel == 2, "an 8-dimensional tensor did not load as such");
    safetensors_close(st);
    static const char *headers[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
        "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
        "{\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
    };
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "empty_shared_%d.safetensors", i);
        char err[1024];
        const char *path = write_st(name, headers[i], NULL, 16);
        int rc = run_in_child(child_open_and_read, (void *)path, err, sizeof err);
        CHECK(rc == 0, "an empty tensor where another begins (order %d) was refused: %s", i, err);
    }
}

static void child_writer_metadata_name(void *ctx)
{
    st_writer *w = st_writer_new();
    float x = 1;
    st_writer_add_f32(w, "__metadata__", 1, (int64_t[]){1}, &x);
}

static void child_meta_ll(void *ctx)
{
    safetensors *st = safetensors_open((const char *)ctx);
    safetensors_meta_ll(st, "n");
}

/* The writer: 8 dimensions round-trip, the header's own key is not a tensor
 * name; integer metadata (checkpoints' counters) parse whole or not at all. */
static void test_writer_limits_and_integer_metadata(void)
{
    st_writer *w = st_writer_new();
    float x[2] = {3, 4};
    st_writer_add_f32(w, "t", 8, (int64_t[]){1, 1, 1, 1, 1, 1, 2, 1}, x);
    st_writer_set_metadata(w, "n", "-42");
    const char *p = tmp_path("dims8_written.safetensors");
    st_writer_save(w, p);
    st_writer_free(w);
    safetensors *st = safetensors_open(p);
    const st_tensor *t = safetensors_find(st, "t");
    CHECK(t && t->ndim == 8 && t->shape[6] == 2 && t->shape[7] == 1, "the 8-dimensional tensor did not round-trip");
    CHECK(safetensors_meta_ll(st, "n") == -42, "metadata -42 read as %lld", safetensors_meta_ll(st, "n"));
    safetensors_close(st);
    expect_die("a tensor named __metadata__", child_writer_metadata_name, NULL,
               "'__metadata__' is not a valid tensor name");
    static const char *bad[] = {"12x", "", " ", "99999999999999999999", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char header[128], name[48];
        snprintf(header, sizeof header, "{\"__metadata__\":{\"n\":\"%s\"}}", bad[i]);
        snprintf(name, sizeof name, "meta_ll_%zu.safetensors", i);
        char what[64];
        snprintf(what, sizeof what, "metadata n = '%s'", bad[i]);
        expect_die(what, child_meta_ll, (void *)write_st(name, header, NULL, 0), "is not an integer");
    }
}

/* Metadata written from numbers reads back as the same numbers: counters
 * whole at both ends of the range, floats to the last bit (9 digits). */
static void test_number_metadata_round_trip(void)
{
    const float floats[4] = {1e-4f, 0.1f, -3.4028235e38f, 1.4e-45f};
    st_writer *w = st_writer_new();
    st_writer_set_metadata_ll(w, "min", LLONG_MIN);
    st_writer_set_metadata_ll(w, "max", LLONG_MAX);
    st_writer_set_metadata_ll(w, "step", 400000);
    for (int i = 0; i < 4; i++) {
        char key[8];
        snprintf(key, sizeof key, "f%d", i);
        st_writer_set_metadata_f32(w, key, floats[i]);
    }
    const char *p = tmp_path("number_metadata.safetensors");
    st_writer_save(w, p);
    st_writer_free(w);
    safetensors *st = safetensors_open(p);
    CHECK(safetensors_meta_ll(st, "min") == LLONG_MIN && safetensors_meta_ll(st, "max") == LLONG_MAX &&
              safetensors_meta_ll(st, "step") == 400000,
          "integer metadata: %lld %lld %lld", safetensors_meta_ll(st, "min"), safetensors_meta_ll(st, "max"),
          safetensors_meta_ll(st, "step"));
    for (int i = 0; i < 4; i++) {
        char key[8];
        snprintf(key, sizeof key, "f%d", i);
        float got = safetensors_meta_f32(st, key, 99);
        CHECK(memcmp(&got, &floats[i], sizeof got) == 0, "float metadata %s: %.9g written, %.9g read", key,
              floats[i], got);
    }
    CHECK(safetensors_meta_f32(st, "absent", 0.5f) == 0.5f, "an absent float key must give the fallback");
    safetensors_close(st);
}

/* A name added twice is caught however many names came between: the
 * writer's name index grows (64 slots, then doubling at half full) and
 * every earlier name must still be found in it. */
static void child_writer_duplicate_after_growth(void *ctx)
{
    int again = *(const int *)ctx;
    st_writer *w = st_writer_new();
    float x = 0;
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "blocks.%d.weight", i);
        st_writer_add_f32(w, name, 1, (int64_t[]){1}, &x);
    }
    snprintf(name, sizeof name, "blocks.%d.weight", again);
    st_writer_add_f32(w, name, 1, (int64_t[]){1}, &x);
}

static void test_writer_duplicates_found_after_growth(void)
{
    for (int k = 0; k < 300; k += 13) {
        char what[64], want[64];
        snprintf(what, sizeof what, "name %d of 300 added again", k);
        snprintf(want, sizeof want, "'blocks.%d.weight' added twice", k);
        expect_die(what, child_writer_duplicate_after_growth, &k, want);
    }
    int last = 299;
    expect_die("the last name added again", child_writer_duplicate_after_growth, &last,
               "'blocks.299.weight' added twice");
}

/* Shape strings (in error messages) are cut to the buffer, never past it. */
static void test_shape_string_fits_its_buffer(void)
{
    char area[64];
    int64_t shape[8] = {123456789, 2, 3, 4, 5, 6, 7, 8};
    CHECK(!strcmp(st_shape_str(2, shape + 1, area, sizeof area), "[2, 3]"), "shape string: \"%s\"", area);
    CHECK(!strcmp(st_shape_str(0, shape, area, sizeof area), "[]"), "scalar shape string: \"%s\"", area);
    for (size_t size = 1; size <= 32; size++) {
        memset(area, '#', sizeof area);
        char *buf = area + 16;
        st_shape_str(8, shape, buf, size);
        int intact = strnlen(buf, size) < size;
        for (size_t i = 0; i < sizeof area; i++)
            if ((i < 16 || i >= 16 + size) && area[i] != '#')
                intact = 0;
        CHECK(intact, "st_shape_str with a %zu-byte buffer wrote outside it or left no NUL", size);
        CHECK(!strncmp(buf, "[123456789, 2, 3, 4, 5, 6, 7, 8]", strlen(buf)), "cut shape string: \"%s\"", buf);
    }
}

static void test_bad_framing_dies_with_clear_messages(void)
{
    const char *p = tmp_path("bad_empty.safetensors");
    write_bytes(p, "", 0);
    expect_bad_file("empty file", p, "too short");
    p = tmp_path("bad_short.safetensors");
    write_bytes(p, "\x02\0\0\0\0", 5);
    expect_bad_file("5-byte file", p, "too short");
    p = tmp_path("bad_only_length.safetensors");
    write_bytes(p, "\x02\0\0\0\0\0\0\0", 8);
    expect_bad_file("length only", p, "past the end");
    p = tmp_path("bad_len_past_end.safetensors");
    write_bytes(p, "\xe8\x03\0\0\0\0\0\0{}", 10); /* says 1000 header bytes, has 2 */
    expect_bad_file("header length past the end", p, "header length 1000 is past the end");
    p = tmp_path("bad_len_huge.safetensors");
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_bad_file("header length 2^64-1", p, "past the end");
    p = tmp_path("bad_len_zero.safetensors");
    write_bytes(p, "\0\0\0\0\0\0\0\0{}", 10);
    expect_bad_file("header length 0", p, "header is empty");
    p = tmp_path("bad_text.safetensors");
    write_bytes(p, "this is not a safetensors file at all\n", 38);
    expect_bad_file("text file", p, "past the end");
    p = tmp_path("bad_dir.safetensors");
    mkdir(p, 0700);
    expect_bad_file("a directory", p, "not a regular file");
    p = tmp_path("does_not_exist.safetensors");
    expect_bad_file("missing file", p, "No such file");
}


/* Random corruptions of a valid file (header bytes, the length field,
 * truncation): the reader must either accept the file (and read every
 * tensor without a sanitizer report) or exit 1 with a "repae: error:"
 * message; never crash, hang or report anything else. */
static void test_corrupted_files_never_crash(void)
{
    float a[12], one = 1;
    int64_t b[5] = {1, 2, 3, 4, 5};
    uint16_t h[3] = {0x3c00, 0x0001, 0x7c00};
    for (int i = 0; i < 12; i++)
        a[i] = (float)i;
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "a", 2, (int64_t[]){3, 4}, a);
    st_writer_add_i64(w, "b", 1, (int64_t[]){5}, b);
    st_writer_add(w, "h", ST_F16, 1, (int64_t[]){3}, h);
    st_writer_add_f32(w, "s", 0, NULL, &one);
    st_writer_add_f32(w, "e", 1, (int64_t[]){0}, &one);
    st_writer_set_metadata(w, "k", "v");
    const char *base = tmp_path("fuzz_base.safetensors");
    st_writer_save(w, base);
    st_writer_free(w);
    size_t size;
    char *orig = read_file_all(base, &size);
    size_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | (uint8_t)orig[i];
    char *buf = xmalloc(size);
    static const char interesting[] = "0123456789-.e\"[]{},: \\x";
    rng r = rng_new(77, 1);
    int accepted = 0, rejected = 0, crashed = 0;
    const char *path = tmp_path("fuzz.safetensors");
    for (int k = 0; k < 300; k++) {
        memcpy(buf, orig, size);
        size_t len = size;
        int kind = (int)rng_below(&r, 4);
        int edits = 1 + (int)rng_below(&r, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = 8 + rng_below(&r, (uint32_t)hl);
            if (kind == 0)
                buf[at] = interesting[rng_below(&r, sizeof interesting - 1)];
            else if (kind == 1)
                buf[at] = (char)rng_below(&r, 256);
            else if (kind == 2)
                buf[rng_below(&r, 8)] = (char)rng_below(&r, 256);
        }
        if (kind == 3)
            len = rng_below(&r, (uint32_t)size);
        write_bytes(path, buf, len);
        char err[4096];
        int rc = run_in_child(child_open_and_read, (void *)path, err, sizeof err);
        if (rc == 0)
            accepted++;
        else if (rc == 1 && !strncmp(err, "repae: error: ", 14) && !strstr(err, "Sanitizer") &&
                 !strstr(err, "runtime error"))
            rejected++;
        else if (crashed++ < 3) {
            char keep[600];
            snprintf(keep, sizeof keep, "/tmp/repae-fuzz-crash-%d.safetensors", k);
            write_bytes(keep, buf, len);
            CHECK(0, "corrupted file %d (kind %d, kept as %s): status %d, stderr \"%.600s\"", k, kind, keep, rc, err);
        }
    }
    CHECK(crashed == 0, "%d of 300 corrupted files crashed the reader", crashed);
    CHECK(rejected > 100, "only %d of 300 corrupted files were rejected (%d accepted)", rejected, accepted);
    if (getenv("TEST_VERBOSE"))
        printf("       corrupted files: %d accepted, %d rejected, %d crashed\n", accepted, rejected, crashed);
    free(orig), free(buf);
}

/* ---- issue 12: many tensors, strict names, integer weights, FIFOs ------------- */

/* 80,000 tensors (a header of ~5 MB): the parse used to compare every name
 * with every earlier one (quadratic, 20 s); now duplicates go through a hash
 * index, so opening and finding are linear.  Not a timed test: it has to
 * finish, and TEST_VERBOSE prints the time. */
/* The longest run of occupied slots in the name index.  With linear probing
 * a hash that collapses the names (a constant, or one that divides where it
 * should multiply) still finds every name, only in quadratic time; this
 * shows it without a clock: a run of a few dozen slots here, N if collapsed. */
static size_t longest_occupied_run(const safetensors *st)
{
    size_t best = 0, run = 0;
    for (size_t h = 0; h <= st->index_mask; h++) {
        run = st->index[h] ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    return best;
}

static void test_many_tensors_open_in_linear_time(void)
{
    enum { N = 80000 };
    size_t cap = (size_t)N * 80 + 64, len = 0;
    char *h = xmalloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(h + len, cap - len, "%s\"layer.%05d.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i ? "," : "", N - 1 - i, 4 * i, 4 * i + 4);
    len += (size_t)snprintf(h + len, cap - len, "}");
    float *data = xmalloc((size_t)N * 4);
    for (int i = 0; i < N; i++)
        data[i] = (float)i;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    safetensors *st = safetensors_open(write_st("many.safetensors", h, data, (size_t)N * 4));
    int found = 0;
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer.%05d.w", i);
        const st_tensor *t = safetensors_find(st, name);
        float v = -1;
        if (t)
            safetensors_read_f32(st, t, &v);
        found += v == (float)(N - 1 - i);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(st->n_tensors == N && found == N, "%d tensors, %d found with the right value", st->n_tensors, found);
    size_t run = longest_occupied_run(st);
    CHECK(run < 1000, "the name index has a run of %zu occupied slots (of %zu): the hash does not spread names", run,
          st->index_mask + 1);
    safetensors_close(st);
    /* The writer's duplicate check is linear too. */
    st_writer *w = st_writer_new();
    char (*names)[32] = xmalloc((size_t)N * 32);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 32, "w%d", i);
        st_writer_add_f32(w, names[i], 1, (int64_t[]){1}, data + i);
    }
    const char *p = tmp_path("many_written.safetensors");
    st_writer_save(w, p);
    st_writer_free(w);
    st = safetensors_open(p);
    CHECK(st->n_tensors == N, "writer round trip of %d tensors: %d", N, st->n_tensors);
    safetensors_close(st);
    struct timespec t2;
    clock_gettime(CLOCK_MONOTONIC, &t2);
    if (getenv("TEST_VERBOSE"))
        printf("       80,000 tensors: open + 80,000 finds %.3f s, write + reopen %.3f s\n",
               (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
               (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec));
    free(names), free(data), free(h);
}

static void test_names_must_be_strict_utf8_without_controls(void)
{
    expect_bad_file("escaped control character in a name",
                    write_st("name_ctl.safetensors", "{\"a\\u0001b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "control characters");
    expect_bad_file("raw control character in a name",
                    write_st("name_raw.safetensors", "{\"a\x01" "b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "raw control character (0x01)");
    expect_bad_file("tab in a name", write_st("name_tab.safetensors", "{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "raw control character (0x09)");
    expect_bad_file("invalid UTF-8 in a name",
                    write_st("name_utf8.safetensors", "{\"a\xff" "b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "not valid UTF-8");
    expect_bad_file("overlong UTF-8", write_st("name_overlong.safetensors", "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "not valid UTF-8");
    expect_bad_file("NUL escape in a name (would truncate it)",
                    write_st("name_nul.safetensors", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "\\u0000 escape");
    expect_bad_file("DEL in a name", write_st("name_del.safetensors", "{\"a\\u007fb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "control characters");
    expect_bad_file("empty name", write_st("name_empty.safetensors", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4),
                    "empty or has control characters");
    /* Valid non-ASCII names and escaped newlines in metadata values stay fine. */
    safetensors *st = safetensors_open(write_st("name_ok.safetensors",
        "{\"__metadata__\":{\"note\":\"two\\nlines\"},\"gewicht_\xc3\xbc\\u00e9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        NULL, 4));
    CHECK(safetensors_find(st, "gewicht_\xc3\xbc\xc3\xa9") != NULL, "a UTF-8 name (raw and escaped) should be accepted");
    CHECK(!strcmp(safetensors_meta(st, "note"), "two\nlines"), "an escaped newline in metadata should be accepted");
    safetensors_close(st);
}

static const char *int_weights_path;

static void child_load_bool_weight(void *ctx)
{
    safetensors *st = safetensors_open(int_weights_path);
    float buf[4];
    safetensors_load_f32(st, (const char *)ctx, 1, (int64_t[]){4}, buf);
}

static void test_integer_tensors_are_not_float_weights(void)
{
    st_writer *w = st_writer_new();
    uint8_t b[4] = {1, 0, 1, 1};
    int8_t c[4] = {-1, 2, 3, 4};
    int64_t nbt = 7;
    float f[4] = {1, 2, 3, 4};
    st_writer_add(w, "mask", ST_BOOL, 1, (int64_t[]){4}, b);
    st_writer_add(w, "q", ST_I8, 1, (int64_t[]){4}, c);
    st_writer_add(w, "idx", ST_I64, 1, (int64_t[]){4}, (int64_t[]){1, 2, 3, 4});
    st_writer_add(w, "bn.num_batches_tracked", ST_I64, 0, NULL, &nbt);
    st_writer_add_f32(w, "f", 1, (int64_t[]){4}, f);
    int_weights_path = tmp_path("int_weights.safetensors");
    st_writer_save(w, int_weights_path);
    st_writer_free(w);
    expect_die("BOOL as a weight", child_load_bool_weight, "mask", "has dtype BOOL where a floating-point weight");
    expect_die("I8 as a weight", child_load_bool_weight, "q", "has dtype I8 where a floating-point weight");
    expect_die("I64 as a weight", child_load_bool_weight, "idx", "has dtype I64 where a floating-point weight");
    safetensors *st = safetensors_open(int_weights_path);
    float v = 0, g[4];
    safetensors_load_f32(st, "bn.num_batches_tracked", 0, NULL, &v);
    CHECK(v == 7, "num_batches_tracked (I64, as torch stores it) should load as a weight: %g", v);
    safetensors_load_f32(st, "f", 1, (int64_t[]){4}, g);
    CHECK(g[3] == 4, "F32 weight");
    safetensors_read_f32(st, safetensors_require(st, "mask"), g); /* an explicit conversion stays possible */
    CHECK(g[0] == 1 && g[1] == 0, "read_f32 of BOOL");
    safetensors_close(st);
}

static void test_fifo_is_refused_without_blocking(void)
{
    const char *p = tmp_path("fifo.safetensors");
    CHECK(mkfifo(p, 0600) == 0, "mkfifo");
    expect_bad_file("a FIFO", p, "not a regular file (a FIFO)");
    expect_bad_file("a device", "/dev/null", "'/dev/null' is not a regular file (a device)");
}

/* Entries of /proc/self/fd, or lines of /proc/self/maps. */
static int count_entries(const char *what) { return strcmp(what, "fd") ? count_mappings() : count_open_fds(); }

/* A file mapped and closed 300 times leaves no descriptor and no mapping
 * behind (an evaluation opens weights and statistics files again and
 * again); a closed map is empty, and an empty file has readable data. */
static void test_file_map_leaves_nothing_open(void)
{
    const char *p = tmp_path("map.bin");
    write_bytes(p, "0123456789", 10);
    file_map warm = file_map_open(p); /* whatever the first call sets up once */
    file_map_close(&warm);
    int fds = count_entries("fd"), maps = count_entries("maps");
    for (int i = 0; i < 300; i++) {
        file_map m = file_map_open(p);
        CHECK(m.size == 10 && m.map && m.data[9] == '9', "map %d: size %zu", i, m.size);
        file_map_close(&m);
        CHECK(!m.map && m.size == 0, "a closed map is empty");
    }
    CHECK(count_entries("fd") == fds && count_entries("maps") == maps, "descriptors %d → %d, mappings %d → %d",
          fds, count_entries("fd"), maps, count_entries("maps"));
    const char *e = tmp_path("empty.bin");
    write_bytes(e, "", 0);
    file_map m = file_map_open(e);
    CHECK(m.size == 0 && !m.map && m.data, "an empty file: size %zu, data %p", m.size, (const void *)m.data);
    file_map_close(&m);
}

/* ---- repae inspect ------------------------------------------------------------ */

static char repae_bin[256];

static int have_repae(void)
{
    const char *b = getenv("BUILD");
    snprintf(repae_bin, sizeof repae_bin, "%s/repae", b && *b ? b : "build");
    if (access(repae_bin, X_OK) != 0) {
        CHECK(0, "%s not found or not executable: run the tests from the repository root after building it "
                 "(`make test` builds it first; or `make %s`)",
              repae_bin, repae_bin);
        return 0;
    }
    return 1;
}

static void test_inspect_good_file(void)
{
    if (!have_repae())
        return;
    float w[6] = {1, 2, 3, 4, 5, 6}, s = 2, dummy = 0;
    int64_t idx[4] = {1, 2, 3, 4};
    st_writer *wr = st_writer_new();
    st_writer_add_f32(wr, "blocks.0.weight", 2, (int64_t[]){2, 3}, w);
    st_writer_add_i64(wr, "a_index", 1, (int64_t[]){4}, idx);
    st_writer_add_f32(wr, "scale", 0, NULL, &s);
    st_writer_add_f32(wr, "zz_empty", 2, (int64_t[]){0, 5}, &dummy);
    st_writer_set_metadata(wr, "script", "test_safetensors.c");
    const char *path = tmp_path("inspect_good.safetensors");
    st_writer_save(wr, path);
    st_writer_free(wr);

    char cmd[1024], out[8192], err[4096];
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", repae_bin, path);
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0, "`%s` exited %d; stderr \"%s\"", cmd, rc, err);
    const char *want[] = {"4 tensors", "blocks.0.weight", "[2, 3]", "a_index", "I64", "scale", "[]", "zz_empty",
                          "[0, 5]", "total: 11 elements", "metadata:", "script = test_safetensors.c"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(out, want[i]) != NULL, "inspect output lacks \"%s\":\n%s", want[i], out);
    const char *a = strstr(out, "a_index"), *b = strstr(out, "blocks.0.weight"), *z = strstr(out, "zz_empty");
    CHECK(a && b && z && a < b && b < z, "inspect should list tensors sorted by name:\n%s", out);
    CHECK(err[0] == 0, "inspect of a good file wrote to stderr: \"%s\"", err);

    snprintf(cmd, sizeof cmd, "'%s' inspect --help", repae_bin);
    rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 0 && strstr(out, "usage: repae inspect"), "inspect --help: status %d, output \"%s\"", rc, out);
}

static void test_inspect_bad_files_exit_1(void)
{
    if (!have_repae())
        return;
    char cmd[1024];
    const char *p = write_st("inspect_bad.safetensors", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"),
                             NULL, 8);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", repae_bin, p);
    expect_command_fails(cmd, "begin after end");
    expect_command_fails(cmd, p);
    p = write_st("inspect_trunc.safetensors", T1("\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]"), NULL,
                 40);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", repae_bin, p);
    expect_command_fails(cmd, "file truncated?");
    p = tmp_path("inspect_missing.safetensors");
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", repae_bin, p);
    expect_command_fails(cmd, "cannot open");
    snprintf(cmd, sizeof cmd, "'%s' inspect", repae_bin);
    expect_command_fails(cmd, "expected exactly one FILE argument");
    snprintf(cmd, sizeof cmd, "'%s' inspect --bogus", repae_bin);
    expect_command_fails(cmd, "got option --bogus");
    /* Nothing on stdout for a failing inspect (the error goes to stderr). */
    char out[1024], err[1024];
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", repae_bin, tmp_path("inspect_bad.safetensors"));
    int rc = run_command(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc == 1 && out[0] == 0, "failing inspect: status %d, stdout \"%s\"", rc, out);
}

/* ---- the harness helpers themselves ------------------------------------------ */

static void child_returns(void *ctx) { fputs("just a line\n", stderr); }
static void child_dies(void *ctx) { die("'%s': custom failure", (const char *)ctx); }
static void child_exits_2(void *ctx) { exit(2); }

static double omp_sum(int n, int parent)
{
    double s = 0;
    if (parent) {
        /* At least two threads, so that libgomp has a thread pool to lose. */
#pragma omp parallel for reduction(+ : s) num_threads(2)
        for (int i = 0; i < n; i++)
            s += i;
    } else {
#pragma omp parallel for reduction(+ : s)
        for (int i = 0; i < n; i++)
            s += i;
    }
    return s;
}

static void child_uses_openmp(void *ctx)
{
    if (omp_sum(100000, 0) != 4999950000.0)
        die("wrong OpenMP sum in the child");
    fputs("omp ok\n", stderr);
}

static void test_death_helpers_report_status_and_stderr(void)
{
    /* A child that runs OpenMP after the parent did must not hang (libgomp
     * is not fork-safe; the helper makes the child single-threaded). */
    CHECK(omp_sum(100000, 1) == 4999950000.0, "parent OpenMP sum");
    char omp_err[64];
    int omp_rc = run_in_child(child_uses_openmp, NULL, omp_err, sizeof omp_err);
    CHECK(omp_rc == 0 && !strcmp(omp_err, "omp ok\n"), "OpenMP in a forked child: status %d, stderr \"%s\"", omp_rc,
          omp_err);

    char err[256];
    CHECK(run_in_child(child_returns, NULL, err, sizeof err) == 0 && !strcmp(err, "just a line\n"),
          "run_in_child should return 0 and capture stderr, got \"%s\"", err);
    CHECK(run_in_child(child_dies, "f.bin", err, sizeof err) == 1 && strstr(err, "repae: error: 'f.bin': custom"),
          "run_in_child of die(): \"%s\"", err);
    CHECK(run_in_child(child_exits_2, NULL, NULL, 0) == 2, "exit status 2 not reported");
    char out[64];
    CHECK(run_command("echo out; echo err >&2; exit 3", out, sizeof out, err, sizeof err) == 3 &&
              !strcmp(out, "out\n") && !strcmp(err, "err\n"),
          "run_command: out \"%s\" err \"%s\"", out, err);
    CHECK(run_command("kill -9 $$", NULL, 0, NULL, 0) == 128 + 9, "a killed child should give 128 + 9");
    /* Small buffers truncate safely. */
    CHECK(run_command("echo 0123456789", out, 5, NULL, 0) == 0 && !strcmp(out, "0123"), "truncation: \"%s\"", out);
    /* The passing paths (the failing ones would count as failures here). */
    CHECK(expect_die("die", child_dies, "x", "custom failure"), "expect_die should pass");
    CHECK(expect_command_fails("echo 'boom here' >&2; exit 1", "boom"), "expect_command_fails should pass");
}

int main(void)
{
    tmp_dir = test_tmp_dir("st");
    RUN(test_death_helpers_report_status_and_stderr);
    RUN(test_roundtrip_f32_i64_metadata_zero_size_scalar);
    RUN(test_empty_writer_and_empty_header);
    RUN(test_atomic_save_leaves_no_tmp);
    RUN(test_f16_bf16_and_integer_dtypes_read_exactly);
    RUN(test_half_converters_all_bit_patterns);
    RUN(test_accessor_errors_name_file_and_tensor);
    RUN(test_bad_headers_die_with_clear_messages);
    RUN(test_bad_framing_dies_with_clear_messages);
    RUN(test_limits_that_must_load);
    RUN(test_shape_string_fits_its_buffer);
    RUN(test_writer_limits_and_integer_metadata);
    RUN(test_number_metadata_round_trip);
    RUN(test_writer_duplicates_found_after_growth);
    RUN(test_corrupted_files_never_crash);
    RUN(test_many_tensors_open_in_linear_time);
    RUN(test_names_must_be_strict_utf8_without_controls);
    RUN(test_integer_tensors_are_not_float_weights);
    RUN(test_fifo_is_refused_without_blocking);
    RUN(test_file_map_leaves_nothing_open);
    RUN(test_inspect_good_file);
    RUN(test_inspect_bad_files_exit_1);
    return test_summary();
}
