/* .npz writing and reading (src/io/npz.c): round trips, the zip structure
 * numpy and the ADM evaluator expect (checked byte by byte here), files
 * written by numpy.savez / savez_compressed (tests/fixtures/diffusion/,
 * from dev/ref/sampler_ref.py), ZIP64 records, and clear errors naming the
 * file for malformed input.
 *
 * `test_npz --write-samples DIR [--big]` only writes sample files for
 * dev/ref/npz_check.py, which loads them with numpy. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "io/npz.h"
#include "test.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* The arrays of dev/ref/sampler_ref.py's npz_arrays(). */
static void make_arr0(uint8_t *a) /* [5, 8, 8, 3] */
{
    for (int i = 0; i < 5 * 8 * 8 * 3; i++)
        a[i] = (uint8_t)((i * 7 + 3) % 256);
}
static void make_mu(double *mu)
{
    for (int i = 0; i < 4; i++)
        mu[i] = i / 3.0 - 0.5;
}
static void make_sigma(float *s)
{
    for (int i = 0; i < 6; i++)
        s[i] = (float)(i * 0.25 - 1);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = xfopen(path, "wb");
    xfwrite(data, 1, n, f, path);
    xfclose(f, path);
}

/* Writes the four sample arrays (arr_0, mu, sigma, scalar) into one file. */
static void write_four(const char *path, int force_zip64)
{
    uint8_t a[960];
    double mu[4], scalar = 3.5;
    float sigma[6];
    make_arr0(a);
    make_mu(mu);
    make_sigma(sigma);
    npz_writer *w = npz_writer_open(path);
    if (force_zip64)
        npz_writer_force_zip64(w);
    npz_writer_begin(w, "arr_0", NPZ_U8, 4, (int64_t[]){5, 8, 8, 3});
    npz_writer_data(w, a, sizeof a);
    npz_writer_end(w);
    npz_writer_begin(w, "mu", NPZ_F64, 1, (int64_t[]){4});
    npz_writer_data(w, mu, sizeof mu);
    npz_writer_end(w);
    npz_writer_begin(w, "sigma", NPZ_F32, 2, (int64_t[]){2, 3});
    npz_writer_data(w, sigma, sizeof sigma);
    npz_writer_end(w);
    npz_writer_begin(w, "scalar", NPZ_F64, 0, NULL);
    npz_writer_data(w, &scalar, sizeof scalar);
    npz_writer_end(w);
    npz_writer_close(w);
}

/* Checks that `path` holds the four arrays with the right types, shapes and values. */
static void check_four(const char *path)
{
    uint8_t a[960], got_a[960];
    double mu[4], got_mu[4], got_scalar;
    float sigma[6], got_sigma[6];
    make_arr0(a);
    make_mu(mu);
    make_sigma(sigma);
    npz_file *z = npz_open(path);
    CHECK(z->n_entries == 4, "%s: %d arrays, want 4", path, z->n_entries);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    CHECK(e->ndim == 4 && e->shape[0] == 5 && e->shape[1] == 8 && e->shape[2] == 8 && e->shape[3] == 3 &&
              e->nbytes == 960,
          "%s: arr_0 shape", path);
    npz_read(z, e, got_a);
    CHECK(memcmp(a, got_a, sizeof a) == 0, "%s: arr_0 values", path);
    e = npz_require(z, "mu", NPZ_F64);
    CHECK(e->ndim == 1 && e->shape[0] == 4, "%s: mu shape", path);
    npz_read(z, e, got_mu);
    CHECK(memcmp(mu, got_mu, sizeof mu) == 0, "%s: mu values", path);
    e = npz_require(z, "sigma", NPZ_F32);
    CHECK(e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 3, "%s: sigma shape", path);
    npz_read(z, e, got_sigma);
    CHECK(memcmp(sigma, got_sigma, sizeof sigma) == 0, "%s: sigma values", path);
    e = npz_require(z, "scalar", NPZ_F64);
    CHECK(e->ndim == 0 && e->numel == 1, "%s: scalar is 0-d", path);
    npz_read(z, e, &got_scalar);
    CHECK(got_scalar == 3.5, "%s: scalar %g", path, got_scalar);
    CHECK(npz_find(z, "nothing") == NULL, "npz_find of an absent name");
    npz_close(z);
}

static void test_round_trip_u8(void)
{
    const char *path = tmp_path("u8.npz");
    uint8_t a[960], b[960];
    make_arr0(a);
    npz_save(path, "arr_0", NPZ_U8, 4, (int64_t[]){5, 8, 8, 3}, a);
    CHECK(access(tmp_path("u8.npz.tmp"), F_OK) != 0, "temporary file left behind");
    npz_file *z = npz_open(path);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    npz_read(z, e, b);
    CHECK(memcmp(a, b, sizeof a) == 0, "uint8 [5,8,8,3] round trip");
    /* Rows 2..3 without reading the rest. */
    memset(b, 0, sizeof b);
    npz_read_rows(z, e, 2, 2, b);
    CHECK(memcmp(a + 2 * 192, b, 2 * 192) == 0, "rows 2..3");
    npz_read_rows(z, e, 5, 0, b);
    npz_close(z);

    /* The one-call loaders convert. */
    int ndim;
    int64_t shape[8];
    float *f = npz_load_f32(path, "arr_0", &ndim, shape);
    CHECK(ndim == 4 && shape[3] == 3 && f[1] == (float)a[1] && f[959] == (float)a[959], "npz_load_f32 of uint8");
    free(f);
}

static void test_round_trip_several_arrays(void)
{
    write_four(tmp_path("four.npz"), 0);
    check_four(tmp_path("four.npz"));
    double *s = npz_load_f64(tmp_path("four.npz"), "sigma", NULL, NULL);
    CHECK(s[5] == 0.25, "npz_load_f64 of float32: %g", s[5]);
    free(s);
}

/* Streaming in odd chunks gives the same file as one write. */
static void test_chunked_writes_identical(void)
{
    enum { N = 7, ROW = 13 * 5 * 3 };
    uint8_t data[N * ROW];
    for (int i = 0; i < N * ROW; i++)
        data[i] = (uint8_t)(i * 31 + 1);
    const int64_t shape[4] = {N, 13, 5, 3};
    npz_save(tmp_path("once.npz"), "arr_0", NPZ_U8, 4, shape, data);
    npz_writer *w = npz_writer_open(tmp_path("chunks.npz"));
    npz_writer_begin(w, "arr_0", NPZ_U8, 4, shape);
    size_t off = 0, step = 1;
    while (off < sizeof data) {
        size_t n = step < sizeof data - off ? step : sizeof data - off;
        npz_writer_data(w, data + off, n);
        off += n;
        step = step * 3 + 1;
    }
    npz_writer_end(w);
    npz_writer_close(w);
    size_t n1, n2;
    char *a = read_file_all(tmp_path("once.npz"), &n1), *b = read_file_all(tmp_path("chunks.npz"), &n2);
    CHECK(n1 == n2 && memcmp(a, b, n1) == 0, "chunked and one-shot files differ");
    free(a);
    free(b);
}

/* Byte-level structure of a written file: what numpy.savez produces
 * (a stored zip of arr_0.npy, .npy 1.0 header padded to 64 bytes),
 * with CRC and offsets consistent. */
static void test_zip_structure(void)
{
    const char *path = tmp_path("struct.npz");
    uint8_t a[960];
    make_arr0(a);
    npz_save(path, "arr_0", NPZ_U8, 4, (int64_t[]){5, 8, 8, 3}, a);
    size_t n;
    uint8_t *f = (uint8_t *)read_file_all(path, &n);
    const char *dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 8, 8, 3), }";

    /* local header */
    CHECK(le32(f) == 0x04034b50, "local header signature");
    CHECK(le16(f + 8) == 0, "stored (method 0), got %u", le16(f + 8));
    CHECK(le16(f + 6) == 0, "no flags (no data descriptor), got %u", le16(f + 6));
    uint32_t nlen = le16(f + 26), xlen = le16(f + 28);
    CHECK(nlen == 9 && memcmp(f + 30, "arr_0.npy", 9) == 0, "member name arr_0.npy");
    const uint8_t *npy = f + 30 + nlen + xlen;
    uint32_t usize = le32(f + 22), csize = le32(f + 18), crc = le32(f + 14);
    CHECK(usize == csize && usize == 128 + 960, "sizes %u/%u, want %u", usize, csize, 128 + 960);
    CHECK(crc == crc32(0, npy, usize), "local CRC-32 %08x != computed %08x", crc, (uint32_t)crc32(0, npy, usize));

    /* .npy 1.0 header */
    CHECK(memcmp(npy, "\x93NUMPY\x01\x00", 8) == 0, ".npy magic and version 1.0");
    uint32_t hlen = le16(npy + 8);
    CHECK((10 + hlen) % 64 == 0, "header not padded to 64 bytes (10 + %u)", hlen);
    CHECK(memcmp(npy + 10, dict, strlen(dict)) == 0, "header dict: %.*s", (int)strlen(dict), npy + 10);
    CHECK(npy[10 + hlen - 1] == '\n', "header must end with a newline");
    for (uint32_t i = (uint32_t)strlen(dict); i + 1 < hlen; i++)
        if (npy[10 + i] != ' ') {
            CHECK(0, "header padding has a non-space at %u", i);
            break;
        }
    CHECK(memcmp(npy + 10 + hlen, a, 960) == 0, "array data right after the header");

    /* end record and central directory */
    const uint8_t *end = f + n - 22;
    CHECK(le32(end) == 0x06054b50, "end of central directory record at the very end");
    uint32_t cd_size = le32(end + 12), cd_off = le32(end + 16);
    CHECK(le16(end + 8) == 1 && le16(end + 10) == 1, "one entry");
    CHECK(cd_off == 30 + nlen + xlen + usize && cd_off + cd_size == n - 22, "central directory at %u size %u",
          cd_off, cd_size);
    const uint8_t *c = f + cd_off;
    CHECK(le32(c) == 0x02014b50, "central header signature");
    CHECK(le32(c + 16) == crc && le32(c + 20) == csize && le32(c + 24) == usize && le32(c + 42) == 0,
          "central header CRC/sizes/offset agree with the local header");
    CHECK(le16(c + 28) == 9 && memcmp(c + 46, "arr_0.npy", 9) == 0, "central name");
    free(f);
}

static void test_forced_zip64_layout(void)
{
    const char *path = tmp_path("zip64.npz");
    write_four(path, 1);
    check_four(path);
    size_t n;
    uint8_t *f = (uint8_t *)read_file_all(path, &n);
    const uint8_t *end = f + n - 22, *loc = end - 20;
    CHECK(le32(end) == 0x06054b50 && le32(loc) == 0x07064b50, "ZIP64 locator before the end record");
    uint64_t e64 = le64(loc + 8);
    CHECK(e64 + 56 == (uint64_t)(loc - f) && le32(f + e64) == 0x06064b50, "ZIP64 end record right before the locator");
    uint64_t cd_off = le64(f + e64 + 48), cd_size = le64(f + e64 + 40);
    CHECK(le64(f + e64 + 32) == 4 && cd_off + cd_size == e64, "ZIP64 end record: 4 entries, directory before it");
    const uint8_t *c = f + cd_off;
    CHECK(le32(c + 20) == 0xFFFFFFFFu && le32(c + 42) == 0xFFFFFFFFu && le16(c + 30) == 28 && le16(c + 46 + 9) == 1,
          "central entry defers sizes and offset to a 28-byte ZIP64 extra");
    CHECK(le64(c + 46 + 9 + 4) == le64(c + 46 + 9 + 12) && le64(c + 46 + 9 + 20) == 0, "ZIP64 extra values");
    CHECK(le32(f + 18) == 0xFFFFFFFFu && le16(f + 28) == 20 && le16(f + 4) == 45, "local header ZIP64 extra");
    free(f);
}

static void test_reads_numpy_written_files(void)
{
    check_four("tests/fixtures/diffusion/numpy_written.npz");
    check_four("tests/fixtures/diffusion/numpy_compressed.npz");
    check_four("tests/fixtures/diffusion/numpy_npy_v2_v3.npz"); /* .npy format 2.0 and 3.0 members */
    /* np.savez_compressed deflates: row reads need stored members. */
    npz_file *z = npz_open("tests/fixtures/diffusion/numpy_compressed.npz");
    CHECK(npz_find(z, "arr_0")->method == 8, "savez_compressed member should be deflated");
    npz_close(z);
    /* Our header for the same array matches numpy's byte for byte, up to
     * the padding (numpy may add spare spaces). */
    z = npz_open("tests/fixtures/diffusion/numpy_written.npz");
    const npz_entry *e = npz_find(z, "arr_0");
    CHECK(e->method == 0 && strcmp(e->descr, "|u1") == 0, "numpy's arr_0: stored, '|u1', got %d '%s'", e->method,
          e->descr);
    npz_close(z);
}

/* ---- errors ---- */

typedef struct read_job {
    const char *path, *name;
    npz_dtype dtype;
    int rows;
} read_job;

static void do_read(void *ctx)
{
    read_job *j = ctx;
    npz_file *z = npz_open(j->path);
    const npz_entry *e = npz_require(z, j->name, j->dtype);
    void *buf = xmalloc(e->nbytes + 1);
    if (j->rows)
        npz_read_rows(z, e, 0, 1, buf);
    else
        npz_read(z, e, buf);
    free(buf);
    npz_close(z);
}

/* npz_read on an entry found with npz_find, without npz_require's checks. */
static void do_read_found(void *ctx)
{
    npz_file *z = npz_open(ctx);
    const npz_entry *e = npz_find(z, "arr_0");
    void *buf = xmalloc(e->nbytes + 1);
    npz_read(z, e, buf);
    free(buf);
    npz_close(z);
}

static void expect_read_dies(const char *what, const char *path, const char *name, npz_dtype dt, int rows,
                             const char *substring)
{
    read_job j = {path, name, dt, rows};
    char msg[600];
    /* Every message names the file... */
    snprintf(msg, sizeof msg, "'%s'", path);
    expect_die(what, do_read, &j, msg);
    /* ...and says what is wrong. */
    expect_die(what, do_read, &j, substring);
}

static void test_malformed_files_die_naming_the_file(void)
{
    uint8_t a[960];
    make_arr0(a);
    const char *good = tmp_path("good.npz");
    npz_save(good, "arr_0", NPZ_U8, 4, (int64_t[]){5, 8, 8, 3}, a);
    size_t n;
    uint8_t *f = (uint8_t *)read_file_all(good, &n);

    write_file(tmp_path("text.npz"), "hello, this is not a zip file\n", 30);
    expect_read_dies("not a zip", tmp_path("text.npz"), "arr_0", NPZ_U8, 0, "not an .npz file");
    write_file(tmp_path("empty.npz"), "", 0);
    expect_read_dies("empty file", tmp_path("empty.npz"), "arr_0", NPZ_U8, 0, "not an .npz file");
    write_file(tmp_path("half.npz"), f, n / 2);
    expect_read_dies("truncated", tmp_path("half.npz"), "arr_0", NPZ_U8, 0, "no zip end-of-central-directory");
    /* Truncated inside the central directory: the end record survives (we
     * copy it after a shortened body), the directory offset does not. */
    {
        uint8_t *g = xmalloc(n);
        size_t keep = 600;
        memcpy(g, f, keep);
        memcpy(g + keep, f + n - 22, 22);
        write_file(tmp_path("cut.npz"), g, keep + 22);
        free(g);
    }
    expect_read_dies("central directory cut", tmp_path("cut.npz"), "arr_0", NPZ_U8, 0, "truncated");
    /* Bad CRC: flip one data byte. */
    f[30 + 9 + 128 + 100] ^= 0x40;
    write_file(tmp_path("badcrc.npz"), f, n);
    f[30 + 9 + 128 + 100] ^= 0x40;
    expect_read_dies("bad CRC", tmp_path("badcrc.npz"), "arr_0", NPZ_U8, 0, "CRC-32 mismatch");
    /* A bare .npy is not an .npz. */
    write_file(tmp_path("bare.npz"), f + 30 + 9, 128 + 960);
    expect_read_dies("bare .npy", tmp_path("bare.npz"), "arr_0", NPZ_U8, 0, "bare .npy");

    /* Missing array, wrong dtype. */
    double mu[4];
    make_mu(mu);
    npz_save(tmp_path("mu.npz"), "mu", NPZ_F64, 1, (int64_t[]){4}, mu);
    expect_read_dies("missing arr_0", tmp_path("mu.npz"), "arr_0", NPZ_U8, 0, "no array 'arr_0' (arrays in the file: mu)");
    expect_read_dies("wrong dtype", tmp_path("mu.npz"), "mu", NPZ_U8, 0, "'mu' is float64, expected uint8");

    /* Unsupported dtype and Fortran order, by editing the header (same
     * length, so the zip stays consistent; the error comes before the CRC). */
    uint8_t *g = xmalloc(n);
    memcpy(g, f, n);
    uint8_t *hdr = g + 30 + 9 + 10;
    memcpy(hdr + 11, "<i4", 3);
    write_file(tmp_path("int.npz"), g, n);
    expect_read_dies("int32 array", tmp_path("int.npz"), "arr_0", NPZ_OTHER, 0, "dtype '<i4', which is unsupported");
    memcpy(g, f, n);
    char *fo = strstr((char *)hdr, "False");
    memcpy(fo, "True ", 5);
    write_file(tmp_path("fortran.npz"), g, n);
    expect_read_dies("Fortran order", tmp_path("fortran.npz"), "arr_0", NPZ_U8, 0, "Fortran (column-major) order");
    expect_die("Fortran order, read without npz_require", do_read_found, (void *)tmp_path("fortran.npz"),
               "Fortran (column-major) order");
    /* Shape that disagrees with the member size. */
    memcpy(g, f, n);
    char *sh = strstr((char *)hdr, "(5, 8");
    sh[1] = '6';
    write_file(tmp_path("shape.npz"), g, n);
    expect_read_dies("shape vs size", tmp_path("shape.npz"), "arr_0", NPZ_U8, 0, "need");
    /* Not an .npy inside. */
    memcpy(g, f, n);
    g[30 + 9 + 1] = 'X';
    write_file(tmp_path("magic.npz"), g, n);
    expect_read_dies("bad .npy magic", tmp_path("magic.npz"), "arr_0", NPZ_U8, 0, "bad magic");
    free(g);

    /* Row reads out of range, and on a deflated member. */
    expect_read_dies("compressed rows", "tests/fixtures/diffusion/numpy_compressed.npz", "arr_0", NPZ_U8, 1,
                     "compressed");
    free(f);
}

/* How npz_with_header lays its text out: left-aligned and padded with spaces and a '\n' as numpy does
 * (0), or RIGHT (spaces first, the text ending at the header's last byte); in an .npy format 1.0 header
 * (0) or FORMAT_2 (a 4-byte header length). */
enum header_layout { RIGHT = 1, FORMAT_2 = 2 };

/* An .npz of one u8 array "arr_0" of 4 bytes "abcd" whose .npy header text is `text`, laid out as
 * `layout` says.  The CRCs are recomputed, so only the header parser can object. */
static const char *npz_with_header(const char *name, const char *text, int layout)
{
    const char *good = tmp_path("header_base.npz");
    npz_save(good, "arr_0", NPZ_U8, 1, (int64_t[]){4}, "abcd");
    size_t n;
    uint8_t *f = (uint8_t *)read_file_all(good, &n);
    uint8_t *npy = f + 30 + 9;
    uint32_t hlen = le16(npy + 8), tlen = (uint32_t)strlen(text);
    CHECK(le32(f + 22) == 10 + hlen + 4 && tlen < hlen, "header base layout (header %u, text %u)", hlen, tlen);
    if (layout & FORMAT_2) { /* a 4-byte length, the text 2 bytes shorter, the same member size */
        npy[6] = 2, hlen -= 2;
        for (int i = 0; i < 4; i++)
            npy[8 + i] = (uint8_t)(hlen >> (8 * i));
        npy += 2;
    }
    if (tlen < hlen) {
        memset(npy + 10, ' ', hlen);
        if (layout & RIGHT)
            memcpy(npy + 10 + hlen - tlen, text, tlen);
        else
            memcpy(npy + 10, text, tlen), npy[10 + hlen - 1] = '\n';
        uint32_t crc = (uint32_t)crc32(0, f + 30 + 9, le32(f + 22));
        uint32_t cd = le32(f + n - 22 + 16);
        for (int i = 0; i < 4; i++)
            f[14 + i] = f[cd + 16 + i] = (uint8_t)(crc >> (8 * i));
    }
    const char *p = tmp_path(name);
    write_file(p, f, n);
    free(f);
    return p;
}

static void expect_header_loads(const char *label, const char *path)
{
    npz_file *z = npz_open(path);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    char got[5] = {0};
    if (e->nbytes == 4)
        npz_read(z, e, got);
    CHECK(e->numel == 4 && !strcmp(got, "abcd"), "%s: read %lld elements '%s'", label, (long long)e->numel, got);
    npz_close(z);
}

/* The .npy header parser, one field at a time, each limit from both sides. */
static void test_npy_header_parser(void)
{
    static const struct {
        const char *label, *text;
        int layout;
        const char *problem; /* NULL: loads "abcd" */
    } cases[] = {
        {"numpy's header", "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 0, NULL},
        {"format 2.0", "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", FORMAT_2, NULL},
        {"format 2.0, right-aligned", "{'descr': '|u1', 'fortran_order': False, 'shape': (4,)", FORMAT_2 | RIGHT, NULL},
        {"format 2.0, a bad header", "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", FORMAT_2, "need"},
        {"double quotes", "{\"descr\": \"<u1\", \"fortran_order\": False, \"shape\": (4,), }", 0, NULL},
        {"keys that appear as values first", "{'n': 'shape', 'm': 'descr' , 'descr': 'u1', 'fortran_order': False, 'shape': (4,)}", 0, NULL},
        {"spaces inside the shape", "{'descr': '|u1', 'fortran_order': False, 'shape': ( 4 , ), }", 0, NULL},
        {"a Python 2 long", "{'descr': '|u1', 'fortran_order': False, 'shape': (4L,), }", 0, NULL},
        {"8 dimensions", "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 4), }", 0, NULL},
        {"False ending the header", "{'descr': '|u1', 'shape': (4,), 'fortran_order': False", RIGHT, NULL},
        {"True ending the header", "{'descr': '|u1', 'shape': (4,), 'fortran_order': True", RIGHT, "Fortran"},
        {"no descr", "{'fortran_order': False, 'shape': (4,), }", 0, "no 'descr' string"},
        {"descr not a string", "{'descr': 5, 'fortran_order': False, 'shape': (4,), }", 0, "no 'descr' string"},
        {"descr unterminated", "{'fortran_order': False, 'shape': (4,), 'descr': '|u1", RIGHT, "malformed 'descr'"},
        {"descr of 15 characters", "{'descr': '<f4xxxxxxxxxxxx', 'fortran_order': False, 'shape': (4,), }", 0,
         "dtype '<f4xxxxxxxxxxxx', which is unsupported"},
        {"descr of 16 characters", "{'descr': '<f4xxxxxxxxxxxxx', 'fortran_order': False, 'shape': (4,), }", 0,
         "malformed 'descr'"},
        {"fortran_order 1", "{'descr': '|u1', 'fortran_order': 1, 'shape': (4,), }", 0, "no 'fortran_order' True/False"},
        {"no shape", "{'descr': '|u1', 'fortran_order': False, }", 0, "no 'shape' tuple"},
        {"shape a list", "{'descr': '|u1', 'fortran_order': False, 'shape': [4], }", 0, "no 'shape' tuple"},
        {"shape with a name", "{'descr': '|u1', 'fortran_order': False, 'shape': (4, x), }", 0, "malformed 'shape'"},
        {"9 dimensions", "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 4), }", 0,
         "more than 8 dimensions"},
        {"shape entry 2^63 - 1", "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 9223372036854775807), }", 0,
         "need"},
        {"shape entry 2^63", "{'descr': '|u1', 'fortran_order': False, 'shape': (9223372036854775808,), }", 0,
         "shape entry out of range"},
        {"a count of 2^64", "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 0,
         "element count overflows"},
        {"a count of 2^63 - 2", "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 3074457345618258602), }", 0,
         "need"},
        {"shape unterminated", "{'descr': '|u1', 'fortran_order': False, 'shape': (4,", RIGHT, "unterminated 'shape'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "header_%zu.npz", i);
        const char *p = npz_with_header(name, cases[i].text, cases[i].layout);
        if (!cases[i].problem)
            expect_header_loads(cases[i].label, p);
        else
            expect_read_dies(cases[i].label, p, "arr_0", NPZ_U8, 0, cases[i].problem);
    }
}

/* Every field the writer puts in a ZIP record, against the ZIP specification (APPNOTE 6.3): local
 * headers, central entries, the ZIP64 records and the end record, for 9 members (the member table
 * grows past its first size) with and without forced ZIP64. */
static void test_writer_every_zip_field(void)
{
    for (int zip64 = 0; zip64 <= 1; zip64++) {
        const char *path = tmp_path(zip64 ? "fields64.npz" : "fields.npz");
        npz_writer *w = npz_writer_open(path);
        if (zip64)
            npz_writer_force_zip64(w);
        enum { M = 9 };
        for (int i = 0; i < M; i++) {
            char name[16];
            snprintf(name, sizeof name, "a%d", i);
            uint8_t data[16];
            for (int k = 0; k <= i; k++)
                data[k] = (uint8_t)(i * 16 + k);
            npz_writer_begin(w, name, NPZ_U8, 1, (int64_t[]){i + 1});
            npz_writer_data(w, data, (size_t)i + 1);
            npz_writer_end(w);
        }
        npz_writer_close(w);
        size_t n;
        uint8_t *f = (uint8_t *)read_file_all(path, &n);
        const uint8_t *e = f + n - 22;
        CHECK(le32(e) == 0x06054b50 && le16(e + 4) == 0 && le16(e + 6) == 0 && le16(e + 8) == M && le16(e + 10) == M &&
                  le16(e + 20) == 0,
              "end record (zip64 %d)", zip64);
        uint32_t cd_size = le32(e + 12), cd_off = le32(e + 16);
        if (zip64) {
            const uint8_t *loc = e - 20, *e64 = loc - 56;
            CHECK(le32(loc) == 0x07064b50 && le32(loc + 4) == 0 && le64(loc + 8) == (uint64_t)(e64 - f) &&
                      le32(loc + 16) == 1,
                  "ZIP64 locator: signature, disk 0, the record's offset, 1 disk");
            CHECK(le32(e64) == 0x06064b50 && le64(e64 + 4) == 44 && le16(e64 + 12) == ((3 << 8) | 45) &&
                      le16(e64 + 14) == 45 && le32(e64 + 16) == 0 && le32(e64 + 20) == 0 && le64(e64 + 24) == M &&
                      le64(e64 + 32) == M && le64(e64 + 40) == cd_size && le64(e64 + 48) == cd_off,
                  "ZIP64 end record: signature, size 44, versions, disks, counts, directory size and offset");
            CHECK(cd_off + cd_size == (uint64_t)(e64 - f), "the directory ends where the ZIP64 record begins");
        } else
            CHECK(cd_off + cd_size == n - 22, "the directory ends where the end record begins");
        const uint8_t *c = f + cd_off;
        uint16_t version = zip64 ? 45 : 20;
        for (int i = 0; i < M && c < f + n - 46; i++) {
            char name[16];
            snprintf(name, sizeof name, "a%d.npy", i);
            size_t nlen = strlen(name);
            CHECK(le32(c) == 0x02014b50 && le16(c + 4) == ((3 << 8) | version) && le16(c + 6) == version &&
                      le16(c + 8) == 0 && le16(c + 10) == 0 && le16(c + 12) == 0 && le16(c + 14) == 0x21,
                  "member %d: central signature, versions, flags, method, time, date (zip64 %d)", i, zip64);
            CHECK(le16(c + 28) == nlen && le16(c + 30) == (zip64 ? 28 : 0) && le16(c + 32) == 0 && le16(c + 34) == 0 &&
                      le16(c + 36) == 0 && le32(c + 38) == 0100644u << 16 && !memcmp(c + 46, name, nlen),
                  "member %d: central name, extra length, comment, disk, attributes", i);
            uint64_t size = le32(c + 24), offset = le32(c + 42);
            uint32_t crc = le32(c + 16);
            if (zip64) {
                const uint8_t *x = c + 46 + nlen;
                CHECK(le32(c + 20) == 0xFFFFFFFFu && size == 0xFFFFFFFFu && offset == 0xFFFFFFFFu && le16(x) == 1 &&
                          le16(x + 2) == 24 && le64(x + 4) == le64(x + 12),
                      "member %d: central sizes and offset in a ZIP64 extra field", i);
                size = le64(x + 4), offset = le64(x + 20);
            } else
                CHECK(le32(c + 20) == size, "member %d: central sizes", i);
            const uint8_t *l = f + offset;
            CHECK(offset + 30 < n && le32(l) == 0x04034b50 && le16(l + 4) == version && le16(l + 6) == 0 &&
                      le16(l + 8) == 0 && le16(l + 10) == 0 && le16(l + 12) == 0x21 && le32(l + 14) == crc,
                  "member %d: local signature, version, flags, method, time, date, CRC (zip64 %d)", i, zip64);
            CHECK(le16(l + 26) == nlen && le16(l + 28) == (zip64 ? 20 : 0) && !memcmp(l + 30, name, nlen),
                  "member %d: local name and extra length", i);
            if (zip64) {
                const uint8_t *x = l + 30 + nlen;
                CHECK(le32(l + 18) == 0xFFFFFFFFu && le32(l + 22) == 0xFFFFFFFFu && le16(x) == 1 && le16(x + 2) == 16 &&
                          le64(x + 4) == size && le64(x + 12) == size,
                      "member %d: local sizes in a ZIP64 extra field", i);
            } else
                CHECK(le32(l + 18) == size && le32(l + 22) == size, "member %d: local sizes", i);
            const uint8_t *data = l + 30 + nlen + (zip64 ? 20 : 0);
            CHECK(size == 128 + (uint64_t)i + 1 && crc == (uint32_t)crc32(0, data, (uInt)size) && data[128] == i * 16,
                  "member %d: size %llu and CRC of its data", i, (unsigned long long)size);
            c += 46 + nlen + (zip64 ? 28 : 0);
        }
        CHECK(c == f + cd_off + cd_size, "the directory holds exactly the %d entries", M);
        free(f);
    }
}

/* Header lengths: whatever the dict's length, magic + length + dict + padding + '\n' is the smallest
 * multiple of 64 that holds them (numpy's rule), across shapes of every rank and width. */
static void test_header_padding_every_length(void)
{
    int checked = 0;
    for (int ndim = 1; ndim <= 8; ndim++)
        for (int64_t big = 1; big <= (int64_t)1e15; big *= 7) {
            int64_t shape[8];
            for (int d = 0; d < ndim; d++)
                shape[d] = d == 0 ? 0 : big + d;
            const char *p = tmp_path("pad.npz");
            npz_writer *w = npz_writer_open(p);
            npz_writer_begin(w, "arr_0", NPZ_U8, ndim, shape);
            npz_writer_end(w);
            npz_writer_close(w);
            size_t n;
            uint8_t *f = (uint8_t *)read_file_all(p, &n);
            const uint8_t *npy = f + 30 + 9;
            uint32_t hlen = le16(npy + 8);
            const uint8_t *close = memchr(npy + 10, '}', hlen);
            uint32_t used = close ? (uint32_t)(close - npy) + 1 : 0; /* through the dict's '}' */
            CHECK(close && (10 + hlen) % 64 == 0 && 10 + hlen - (used + 1) < 64 && npy[10 + hlen - 1] == '\n',
                  "rank %d, width %lld: header of %u bytes for a dict ending at %u", ndim, (long long)big, hlen, used);
            checked++;
            free(f);
        }
    CHECK(checked > 100, "only %d headers checked", checked);
}

static void write_too_little(void *ctx)
{
    npz_writer *w = npz_writer_open(ctx);
    npz_writer_begin(w, "arr_0", NPZ_U8, 1, (int64_t[]){10});
    npz_writer_data(w, "12345", 5);
    npz_writer_end(w);
}

static void write_too_much(void *ctx)
{
    npz_writer *w = npz_writer_open(ctx);
    npz_writer_begin(w, "arr_0", NPZ_U8, 1, (int64_t[]){4});
    npz_writer_data(w, "12345", 5);
}

static void write_bad_name(void *ctx)
{
    npz_writer *w = npz_writer_open(ctx);
    npz_writer_begin(w, "arr/0", NPZ_U8, 1, (int64_t[]){4});
}

/* A file like np.savez_compressed's: one u8 array "arr_0" of `n` pseudo-random bytes (incompressible, so
 * its deflate stream is longer than the reader's 64 KiB input buffer), its member deflated.  `how`:
 * 0 as written; 1 the stream encodes one byte less than the member's size; 2 the stream is cut short
 * (and the sizes say so); 3 the stream's first block header is invalid. */
static const char *deflated_npz(const char *name, size_t n, int how, uint8_t **data_out)
{
    uint8_t *data = xmalloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++)
        x = x * 1103515245u + 12345u, data[i] = (uint8_t)(x >> 23);
    const char *stored = tmp_path("deflate_src.npz");
    npz_save(stored, "arr_0", NPZ_U8, 1, (int64_t[]){(int64_t)n}, data);
    size_t fn;
    uint8_t *f = (uint8_t *)read_file_all(stored, &fn);
    uint32_t usize = le32(f + 22);
    const uint8_t *member = f + 30 + 9;
    z_stream zs = {0};
    CHECK(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    uLong cap = deflateBound(&zs, usize);
    uint8_t *z = xmalloc(cap);
    zs.next_in = (Bytef *)member, zs.avail_in = usize - (how == 1);
    zs.next_out = z, zs.avail_out = (uInt)cap;
    CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END, "deflate");
    uint32_t clen = (uint32_t)zs.total_out;
    deflateEnd(&zs);
    CHECK(clen > 70000, "the stream should outgrow one 64 KiB read (%u bytes)", clen);
    if (how == 2)
        clen -= 5000;
    if (how == 3)
        z[0] = 0x07; /* BFINAL 1, BTYPE 11: reserved */
    const uint8_t *cd = f + 30 + 9 + usize;
    uint8_t *g = xmalloc(fn + cap);
    size_t gn = 0;
    memcpy(g, f, 30 + 9), gn = 30 + 9;
    g[8] = 8, g[9] = 0; /* method: deflate */
    for (int i = 0; i < 4; i++)
        g[18 + i] = (uint8_t)(clen >> (8 * i));
    memcpy(g + gn, z, clen), gn += clen;
    size_t cd_at = gn;
    memcpy(g + gn, cd, 46 + 9), gn += 46 + 9;
    g[cd_at + 10] = 8, g[cd_at + 11] = 0;
    for (int i = 0; i < 4; i++)
        g[cd_at + 20 + i] = (uint8_t)(clen >> (8 * i));
    memcpy(g + gn, f + fn - 22, 22);
    for (int i = 0; i < 4; i++)
        g[gn + 16 + i] = (uint8_t)(cd_at >> (8 * i));
    gn += 22;
    const char *p = tmp_path(name);
    write_file(p, g, gn);
    free(f), free(z), free(g);
    if (data_out)
        *data_out = data;
    else
        free(data);
    return p;
}

static void test_deflated_members(void)
{
    enum { N = 200000 };
    uint8_t *want;
    const char *p = deflated_npz("deflated.npz", N, 0, &want);
    npz_file *z = npz_open(p);
    const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
    CHECK(e->method == 8 && e->numel == N, "a deflated member of %d bytes", N);
    uint8_t *got = xmalloc(N);
    npz_read(z, e, got);
    CHECK(memcmp(got, want, N) == 0, "a deflated member read over several 64 KiB inputs");
    npz_close(z);
    free(got), free(want);
    expect_read_dies("a deflate stream one byte short", deflated_npz("short.npz", N, 1, NULL), "arr_0", NPZ_U8, 0,
                     "ends early");
    expect_read_dies("a deflate stream cut", deflated_npz("cut.npz", N, 2, NULL), "arr_0", NPZ_U8, 0, "ends early");
    expect_read_dies("an invalid deflate block", deflated_npz("badblock.npz", N, 3, NULL), "arr_0", NPZ_U8, 0,
                     "corrupt deflate data");
}

/* Writes members `names` in turn (NULL-terminated), each a u8 array of `ndim` dimensions of size 1,
 * then closes the file. */
typedef struct write_job {
    const char *path, *names[4];
    int ndim;
} write_job;

static void write_members(void *ctx)
{
    const write_job *j = ctx;
    npz_writer *w = npz_writer_open(j->path);
    int64_t shape[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; j->names[i]; i++) {
        npz_writer_begin(w, j->names[i], NPZ_U8, j->ndim, shape);
        npz_writer_data(w, "x", 1);
        npz_writer_end(w);
    }
    npz_writer_close(w);
}

static void write_over_two_chunks(void *ctx)
{
    npz_writer *w = npz_writer_open(ctx);
    npz_writer_begin(w, "arr_0", NPZ_U8, 1, (int64_t[]){4});
    npz_writer_data(w, "123", 3);
    npz_writer_data(w, "456", 3);
}

/* Archives at the edges of what the reader accepts: no arrays at all (the end record is the whole file),
 * an empty array (its member is the header alone), and two members of one name, next to each other or
 * not in the directory. */
static void test_archive_edges(void)
{
    const char *p = tmp_path("no_arrays.npz");
    npz_writer_close(npz_writer_open(p));
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && sb.st_size == 22, "an archive without arrays is its end record alone");
    npz_file *z = npz_open(p);
    CHECK(z->n_entries == 0, "an archive without arrays opens with none");
    npz_close(z);

    p = tmp_path("empty_array.npz");
    npz_save(p, "e", NPZ_F32, 1, (int64_t[]){0}, NULL);
    z = npz_open(p);
    const npz_entry *e = npz_require(z, "e", NPZ_F32);
    CHECK(e->numel == 0 && e->nbytes == 0 && e->header_size == 128, "an empty array");
    npz_read(z, e, NULL);
    npz_close(z);

    for (int n = 2; n <= 3; n++) {
        p = tmp_path(n == 2 ? "twice2.npz" : "twice3.npz");
        write_members(&(write_job){p, {"a", "b", n == 3 ? "c" : NULL, NULL}, 1});
        size_t fn;
        uint8_t *f = (uint8_t *)read_file_all(p, &fn);
        char last = n == 3 ? 'c' : 'b';
        for (size_t i = 0; i + 5 <= fn; i++) /* the last member's name, local and central, becomes "a.npy" */
            if (f[i] == (uint8_t)last && !memcmp(f + i + 1, ".npy", 4))
                f[i] = 'a';
        write_file(p, f, fn);
        free(f);
        expect_read_dies(n == 2 ? "two members named a" : "two members named a, apart", p, "a", NPZ_U8, 0,
                         "member 'a.npy' appears twice");
    }
}

/* Row reads of a stored array: the first and last rows, a 1-D array, an empty range, and ranges
 * outside the array; and the list of arrays a failed lookup names. */
static void read_rows_job(void *ctx)
{
    const int64_t *range = ctx;
    npz_file *z = npz_open(tmp_path("rows.npz"));
    uint8_t buf[64];
    npz_read_rows(z, npz_require(z, "m", NPZ_U8), range[0], range[1], buf);
    npz_close(z);
}

static void test_row_reads(void)
{
    uint8_t m[5 * 3], v[6] = {9, 8, 7, 6, 5, 4};
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)(10 * (i / 3) + i % 3);
    const char *p = tmp_path("rows.npz");
    npz_writer *w = npz_writer_open(p);
    npz_writer_begin(w, "m", NPZ_U8, 2, (int64_t[]){5, 3});
    npz_writer_data(w, m, sizeof m);
    npz_writer_end(w);
    npz_writer_begin(w, "v", NPZ_U8, 1, (int64_t[]){6});
    npz_writer_data(w, v, sizeof v);
    npz_writer_end(w);
    npz_writer_begin(w, "s", NPZ_U8, 0, NULL);
    npz_writer_data(w, "s", 1);
    npz_writer_end(w);
    npz_writer_close(w);
    npz_file *z = npz_open(p);
    const npz_entry *e = npz_require(z, "m", NPZ_U8);
    uint8_t got[16] = {0};
    npz_read_rows(z, e, 0, 2, got);
    CHECK(!memcmp(got, m, 6), "rows 0-1");
    npz_read_rows(z, e, 3, 2, got);
    CHECK(!memcmp(got, m + 9, 6), "rows 3-4 (the last)");
    memset(got, 0xee, sizeof got);
    npz_read_rows(z, e, 5, 0, got);
    CHECK(got[0] == 0xee, "an empty range at the end reads nothing");
    npz_read_rows(z, npz_require(z, "v", NPZ_U8), 2, 3, got);
    CHECK(got[0] == 7 && got[1] == 6 && got[2] == 5, "elements 2-4 of a 1-D array");
    npz_close(z);
    static const int64_t bad[][2] = {{-1, 1}, {0, -1}, {6, 0}, {4, 2}, {0, 6}};
    for (int i = 0; i < 5; i++) {
        char label[64];
        snprintf(label, sizeof label, "rows [%lld, +%lld) of 5", (long long)bad[i][0], (long long)bad[i][1]);
        expect_die(label, read_rows_job, (void *)bad[i], "array 'm': rows [");
    }
    read_job j = {p, "s", NPZ_U8, 1};
    expect_die("rows of a 0-d array", do_read, &j, "array 's' is 0-dimensional: it has no rows");
    expect_read_dies("a missing array", p, "x", NPZ_U8, 0, "no array 'x' (arrays in the file: m, v, s)");
}

static void put16_at(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32_at(uint8_t *p, uint32_t v) { put16_at(p, v), put16_at(p + 2, v >> 16); }

/* The reader's side of the ZIP records: a ZIP64 file whose classic end record holds only the "see ZIP64"
 * markers (as a file past 4 GiB has), and one field of a record changed at a time, each refused with its
 * own message. */
static void test_hostile_directory(void)
{
    const char *p = tmp_path("dir64.npz");
    write_four(p, 1);
    size_t n;
    uint8_t *f = (uint8_t *)read_file_all(p, &n), *g = xmalloc(n);
    uint8_t *e = f + n - 22;
    uint32_t cd_off = le32(e + 16), cd_size = le32(e + 12);
    memcpy(g, f, n);
    put16_at(g + n - 22 + 8, 0xFFFF), put16_at(g + n - 22 + 10, 0xFFFF);
    put32_at(g + n - 22 + 12, 0xFFFFFFFFu), put32_at(g + n - 22 + 16, 0xFFFFFFFFu);
    write_file(tmp_path("dir64_markers.npz"), g, n);
    check_four(tmp_path("dir64_markers.npz"));
    memcpy(f, g, n); /* from here on, the ZIP64 record alone says where the directory is */

    struct {
        const char *label;
        size_t at; /* byte to change */
        int width;
        uint32_t value;
        const char *problem;
    } cases[] = {
        {"ZIP64 record offset past the end", n - 42 + 8, 4, (uint32_t)n + 100, "ZIP64 end-of-central-directory record is missing or out of range"},
        {"ZIP64 record signature", le32(f + n - 42 + 8), 4, 0x12345678u, "ZIP64 end-of-central-directory record is missing or out of range"},
        {"ZIP64 directory size one too many", le32(f + n - 42 + 8) + 40, 4, cd_size + 1, "lies outside the archive"},
        {"ZIP64 total count unlike this disk's", le32(f + n - 42 + 8) + 32, 4, 1000, "multi-part ZIP archives"},
        {"central signature", cd_off, 4, 0x02014b51u, "central directory entry 0 is missing or corrupt"},
        {"central disk 5", cd_off + 34, 2, 5, "is on disk 5 of a multi-part archive"},
        {"ZIP64 extra too short", cd_off + 46 + 9 + 2, 2, 8, "short ZIP64 extra field (8 bytes, need 24)"},
        {"local extra length past the directory", le32(f + cd_off + 46 + 9 + 4 + 16) + 28, 2, 60000,
         "local header runs past the central directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(g, f, n);
        if (cases[i].width == 4)
            put32_at(g + cases[i].at, cases[i].value);
        else
            put16_at(g + cases[i].at, cases[i].value);
        char name[64];
        snprintf(name, sizeof name, "dir_%zu.npz", i);
        write_file(tmp_path(name), g, n);
        expect_read_dies(cases[i].label, tmp_path(name), "arr_0", NPZ_U8, 0, cases[i].problem);
    }
    /* Disk 0xFFFF beside a ZIP64 extra field means "see the extra field": disk 0. */
    memcpy(g, f, n);
    put16_at(g + cd_off + 34, 0xFFFF);
    write_file(tmp_path("dir_disk_ffff.npz"), g, n);
    check_four(tmp_path("dir_disk_ffff.npz"));
    free(f), free(g);

    /* A member that is not an array (any name not ending in .npy) is skipped. */
    p = tmp_path("with_text.npz");
    write_members(&(write_job){p, {"a", "b", NULL}, 1});
    f = (uint8_t *)read_file_all(p, &n);
    for (size_t i = 0; i + 5 <= n; i++)
        if (!memcmp(f + i, "b.npy", 5))
            memcpy(f + i, "b.txt", 5);
    write_file(p, f, n);
    free(f);
    npz_file *z = npz_open(p);
    CHECK(z->n_entries == 1 && npz_find(z, "a") && !npz_find(z, "b"), "a member b.txt is not an array");
    npz_close(z);
}

static void test_writer_limits(void)
{
    const char *p = tmp_path("limits.npz");
    char n200[202], n201[202];
    memset(n200, 'n', 200), n200[200] = 0;
    memset(n201, 'n', 201), n201[201] = 0;
    /* What may be written: 8 dimensions, a name of 200 characters. */
    write_members(&(write_job){p, {"a", n200, NULL}, 8});
    npz_file *z = npz_open(p);
    const npz_entry *e = npz_require(z, n200, NPZ_U8);
    CHECK(e->ndim == 8 && e->numel == 1 && npz_require(z, "a", NPZ_U8)->ndim == 8, "8 dimensions and a 200-character name");
    npz_close(z);
    /* What may not. */
    expect_die("9 dimensions", write_members, &(write_job){p, {"a", NULL}, 9}, "array 'a': 9 dimensions (at most 8)");
    expect_die("-1 dimensions", write_members, &(write_job){p, {"a", NULL}, -1}, "array 'a': -1 dimensions");
    expect_die("a name of 201 characters", write_members, &(write_job){p, {n201, NULL}, 1}, "bad array name");
    expect_die("an empty name", write_members, &(write_job){p, {"", NULL}, 1}, "bad array name ''");
    expect_die("a bad first character", write_members, &(write_job){p, {"/a", NULL}, 1},
               "array name '/a' has a character other than");
    expect_die("the first name again", write_members, &(write_job){p, {"a", "b", "a", NULL}, 1}, "array 'a' written twice");
    /* A name that begins another is not the same name. */
    write_members(&(write_job){p, {"ab", "a", NULL}, 0});
    z = npz_open(p);
    CHECK(npz_require(z, "ab", NPZ_U8)->numel == 1 && npz_require(z, "a", NPZ_U8)->numel == 1, "arrays 'ab' and 'a'");
    char one = 0;
    npz_read(z, npz_require(z, "a", NPZ_U8), &one); /* a read of exactly one byte */
    CHECK(one == 'x', "a 1-byte array read '%c'", one);
    npz_close(z);
    expect_die("too much data in the second chunk", write_over_two_chunks, (void *)p, "more data than its shape holds");
}

static void test_writer_misuse_dies(void)
{
    const char *p = tmp_path("misuse.npz");
    expect_die("too little data", write_too_little, (void *)p, "5 data bytes written, its shape needs 10");
    expect_die("too much data", write_too_much, (void *)p, "more data than its shape holds");
    expect_die("bad name", write_bad_name, (void *)p, "array name 'arr/0'");
    CHECK(access(p, F_OK) != 0, "a failed write must not leave the final file");
}

/* ---- sample files for dev/ref/npz_check.py ---- */

static int write_samples(const char *dir, int big)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", dir);
    uint8_t a[960];
    make_arr0(a);
    npz_save(tmp_path("c_u8.npz"), "arr_0", NPZ_U8, 4, (int64_t[]){5, 8, 8, 3}, a);
    write_four(tmp_path("c_four.npz"), 0);
    write_four(tmp_path("c_four_zip64.npz"), 1);
    if (big) {
        /* 22,000 × 256 × 256 × 3 = 4.3 GB: sizes past 4 GiB. Byte k of the
         * array is k mod 251. */
        const int64_t N = 22000, row = 256 * 256 * 3;
        uint8_t *buf = xmalloc((size_t)row);
        npz_writer *w = npz_writer_open(tmp_path("c_big.npz"));
        npz_writer_begin(w, "arr_0", NPZ_U8, 4, (int64_t[]){N, 256, 256, 3});
        uint64_t k = 0;
        for (int64_t i = 0; i < N; i++) {
            for (int64_t j = 0; j < row; j++, k++)
                buf[j] = (uint8_t)(k % 251);
            npz_writer_data(w, buf, (size_t)row);
        }
        npz_writer_end(w);
        double mu[4];
        make_mu(mu);
        npz_writer_begin(w, "mu", NPZ_F64, 1, (int64_t[]){4});
        npz_writer_data(w, mu, sizeof mu);
        npz_writer_end(w);
        npz_writer_close(w);
        /* Read back a row near the end through our reader. */
        npz_file *z = npz_open(tmp_path("c_big.npz"));
        const npz_entry *e = npz_require(z, "arr_0", NPZ_U8);
        npz_read_rows(z, e, N - 1, 1, buf);
        int ok = 1;
        for (int64_t j = 0; j < row; j++)
            ok &= buf[j] == (uint8_t)(((uint64_t)(N - 1) * row + j) % 251);
        const npz_entry *m = npz_require(z, "mu", NPZ_F64);
        double got[4];
        npz_read(z, m, got);
        ok &= memcmp(got, mu, sizeof mu) == 0;
        npz_close(z);
        free(buf);
        if (!ok) {
            fprintf(stderr, "big file: read-back mismatch\n");
            return 1;
        }
    }
    printf("wrote sample npz files to %s\n", dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--write-samples") == 0)
        return write_samples(argv[2], argc >= 4 && strcmp(argv[3], "--big") == 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/repae_test_npz_XXXXXX");
    if (!mkdtemp(tmpdir))
        die("cannot create a temporary directory");
    RUN(test_round_trip_u8);
    RUN(test_round_trip_several_arrays);
    RUN(test_chunked_writes_identical);
    RUN(test_zip_structure);
    RUN(test_forced_zip64_layout);
    RUN(test_reads_numpy_written_files);
    RUN(test_malformed_files_die_naming_the_file);
    RUN(test_npy_header_parser);
    RUN(test_writer_every_zip_field);
    RUN(test_header_padding_every_length);
    RUN(test_writer_limits);
    RUN(test_deflated_members);
    RUN(test_archive_edges);
    RUN(test_row_reads);
    RUN(test_hostile_directory);
    RUN(test_writer_misuse_dies);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!getenv("KEEP_TMP") && system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return test_summary();
}
