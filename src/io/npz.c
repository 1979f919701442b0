#include "io/npz.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "io/zip_records.h"

/* Python's zipfile switches to ZIP64 past 2^31 − 1 (readers that use signed
 * 32-bit offsets exist); numpy.savez goes through zipfile, so we do the same. */
#define ZIP64_LIMIT 0x7FFFFFFFull
#define ZIP_FILECOUNT_LIMIT 0xFFFF
#define DOS_DATE_1980 0x21 /* 1980-01-01: a fixed date keeps our files reproducible */
#define NPY_ALIGN 64

const char *npz_dtype_name(npz_dtype d)
{
    switch (d) {
    case NPZ_U8: return "uint8";
    case NPZ_F32: return "float32";
    case NPZ_F64: return "float64";
    default: return "unsupported";
    }
}

size_t npz_dtype_size(npz_dtype d) { return d == NPZ_U8 ? 1 : d == NPZ_F32 ? 4 : d == NPZ_F64 ? 8 : 0; }

static const char *npz_descr(npz_dtype d) { return d == NPZ_U8 ? "|u1" : d == NPZ_F32 ? "<f4" : "<f8"; }

/* ---- little-endian fields ---- */

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p) { return get16(p) | get16(p + 2) << 16; }

static void xfseek(FILE *fp, uint64_t off, const char *path)
{
    if (fseeko(fp, (off_t)off, SEEK_SET) != 0)
        die("'%s': cannot seek to byte %" PRIu64 ": %s", path, off, strerror(errno));
}

static uint64_t xftell(FILE *fp, const char *path)
{
    off_t off = ftello(fp);
    if (off < 0)
        die("'%s': cannot get the file position: %s", path, strerror(errno));
    return (uint64_t)off;
}

static uint32_t crc_update(uint32_t crc, const void *p, size_t n)
{
    return n ? (uint32_t)crc32_z(crc, p, n) : crc; /* crc32_z(crc, NULL, 0) is 0, not crc: an empty array */
}

/* ---- .npy header ---- */

/* The header numpy writes for format 1.0: the dict literal, padded with
 * spaces and a final '\n' so that magic + length + header is a multiple of
 * 64 bytes.  Returns the total byte count written into buf. */
static size_t npy_header(uint8_t *buf, size_t cap, npz_dtype dtype, int ndim, const int64_t *shape)
{
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", npz_descr(dtype));
    for (int i = 0; i < ndim; i++)
        len += snprintf(dict + len, sizeof dict - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    len += snprintf(dict + len, sizeof dict - len, "%s), }", ndim == 1 ? "," : "");
    size_t total = 10 + (size_t)len + 1;
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > cap)
        die("npz: .npy header too long");
    size_t hlen = total - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    put16(buf + 8, (uint32_t)hlen);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', hlen - (size_t)len - 1);
    buf[total - 1] = '\n';
    return total;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

/* The value after key `key` (quoted with ' or ") and its ':'; NULL if absent. */
static const char *dict_value(const char *text, const char *end, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = text; p + klen + 2 <= end; p++) {
        if ((*p == '\'' || *p == '"') && p[klen + 1] == *p && memcmp(p + 1, key, klen) == 0) {
            const char *q = skip_ws(p + klen + 2, end);
            if (q < end && *q == ':')
                return skip_ws(q + 1, end);
        }
    }
    return NULL;
}

/* Parses the .npy header dict into e (descr, dtype, fortran order, shape). */
static void parse_npy_dict(const char *path, const char *member, const char *text, size_t n, npz_entry *e,
                           int *fortran)
{
    const char *end = text + n;
    const char *p = dict_value(text, end, "descr");
    if (!p || (*p != '\'' && *p != '"'))
        die("'%s': member '%s': .npy header has no 'descr' string (header: %.*s)", path, member, (int)n, text);
    const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
    if (!q || q - p - 1 >= (ptrdiff_t)sizeof e->descr)
        die("'%s': member '%s': malformed 'descr' in the .npy header", path, member);
    memcpy(e->descr, p + 1, (size_t)(q - p - 1));
    e->descr[q - p - 1] = 0;
    const char *d = e->descr;
    if (!strcmp(d, "|u1") || !strcmp(d, "<u1") || !strcmp(d, "=u1") || !strcmp(d, "u1"))
        e->dtype = NPZ_U8;
    else if (!strcmp(d, "<f4") || !strcmp(d, "=f4") || !strcmp(d, "f4"))
        e->dtype = NPZ_F32;
    else if (!strcmp(d, "<f8") || !strcmp(d, "=f8") || !strcmp(d, "f8"))
        e->dtype = NPZ_F64;
    else
        e->dtype = NPZ_OTHER;

    p = dict_value(text, end, "fortran_order");
    if (p && end - p >= 4 && !memcmp(p, "True", 4))
        *fortran = 1;
    else if (p && end - p >= 5 && !memcmp(p, "False", 5))
        *fortran = 0;
    else
        die("'%s': member '%s': .npy header has no 'fortran_order' True/False", path, member);

    p = dict_value(text, end, "shape");
    if (!p || *p != '(')
        die("'%s': member '%s': .npy header has no 'shape' tuple", path, member);
    p = skip_ws(p + 1, end);
    e->ndim = 0;
    e->numel = 1;
    while (p < end && *p != ')') {
        if (!isdigit((unsigned char)*p))
            die("'%s': member '%s': malformed 'shape' in the .npy header", path, member);
        if (e->ndim == NPZ_MAX_DIMS)
            die("'%s': member '%s': more than %d dimensions", path, member, NPZ_MAX_DIMS);
        errno = 0;
        char *after;
        unsigned long long v = strtoull(p, &after, 10);
        if (errno || v > (unsigned long long)INT64_MAX)
            die("'%s': member '%s': shape entry out of range", path, member);
        if (v && (uint64_t)e->numel > (uint64_t)INT64_MAX / v)
            die("'%s': member '%s': the shape's element count overflows", path, member);
        e->shape[e->ndim++] = (int64_t)v;
        e->numel *= (int64_t)v;
        p = after;
        if (p < end && *p == 'L') /* Python 2 longs */
            p++;
        p = skip_ws(p, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    if (p >= end)
        die("'%s': member '%s': unterminated 'shape' in the .npy header", path, member);
}

/* ---- writer ---- */

typedef struct zmember {
    char *fname; /* "<name>.npy" */
    uint32_t crc;
    uint64_t size, offset;
    int zip64; /* sizes in a ZIP64 extra field */
} zmember;

struct npz_writer {
    atomic_file af;
    int force_zip64;
    zmember *m;
    int n, cap;
    int in_member;
    uint64_t expected, written; /* data bytes of the open member */
};

npz_writer *npz_writer_open(const char *path)
{
    npz_writer *w = xcalloc(1, sizeof *w);
    w->af = atomic_file_open(path);
    return w;
}

void npz_writer_force_zip64(npz_writer *w) { w->force_zip64 = 1; }

static void wr(npz_writer *w, const void *p, size_t n) { xfwrite(p, 1, n, w->af.fp, w->af.tmp_path); }

void npz_writer_begin(npz_writer *w, const char *name, npz_dtype dtype, int ndim, const int64_t *shape)
{
    const char *path = w->af.path;
    if (w->in_member)
        die("'%s': npz_writer_begin('%s') while member '%s' is still open", path, name, w->m[w->n - 1].fname);
    if (dtype != NPZ_U8 && dtype != NPZ_F32 && dtype != NPZ_F64)
        die("'%s': array '%s': cannot write dtype %d", path, name, (int)dtype);
    if (ndim < 0 || ndim > NPZ_MAX_DIMS)
        die("'%s': array '%s': %d dimensions (at most %d)", path, name, ndim, NPZ_MAX_DIMS);
    size_t nlen = strlen(name);
    if (!nlen || nlen > 200)
        die("'%s': bad array name '%s'", path, name);
    for (size_t i = 0; i < nlen; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_-.", name[i]))
            die("'%s': array name '%s' has a character other than letters, digits, '_', '-', '.'", path, name);
    for (int i = 0; i < w->n; i++)
        if (strncmp(w->m[i].fname, name, nlen) == 0 && strcmp(w->m[i].fname + nlen, ".npy") == 0)
            die("'%s': array '%s' written twice", path, name);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            die("'%s': array '%s': negative dimension %" PRId64, path, name, shape[i]);
        numel *= (uint64_t)shape[i];
    }

    uint8_t header[1024];
    size_t hsize = npy_header(header, sizeof header, dtype, ndim, shape);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 4;
        w->m = xrealloc(w->m, (size_t)w->cap * sizeof *w->m);
    }
    zmember *m = &w->m[w->n++];
    m->fname = xmalloc(nlen + 5);
    sprintf(m->fname, "%s.npy", name);
    m->offset = xftell(w->af.fp, w->af.tmp_path);
    m->size = hsize + numel * npz_dtype_size(dtype);
    m->zip64 = w->force_zip64 || m->size > ZIP64_LIMIT;
    m->crc = crc_update(0, header, hsize);

    uint8_t lh[ZIP_LOCAL_SIZE + 20];
    uint16_t fnlen = (uint16_t)(nlen + 4);
    put32(lh, ZIP_SIG_LOCAL);
    put16(lh + 4, m->zip64 ? 45 : 20); /* version needed */
    put16(lh + 6, 0);                  /* flags */
    put16(lh + 8, 0);                  /* stored */
    put16(lh + 10, 0);                 /* time */
    put16(lh + 12, DOS_DATE_1980);
    put32(lh + 14, 0); /* CRC-32, patched by npz_writer_end */
    put32(lh + 18, m->zip64 ? 0xFFFFFFFFu : (uint32_t)m->size);
    put32(lh + 22, m->zip64 ? 0xFFFFFFFFu : (uint32_t)m->size);
    put16(lh + 26, fnlen);
    put16(lh + 28, m->zip64 ? 20 : 0);
    wr(w, lh, ZIP_LOCAL_SIZE);
    wr(w, m->fname, fnlen);
    if (m->zip64) {
        uint8_t ex[20];
        put16(ex, 1);
        put16(ex + 2, 16);
        put64(ex + 4, m->size);
        put64(ex + 12, m->size);
        wr(w, ex, 20);
    }
    wr(w, header, hsize);
    w->in_member = 1;
    w->expected = m->size - hsize;
    w->written = 0;
}

void npz_writer_data(npz_writer *w, const void *data, size_t bytes)
{
    if (!w->in_member)
        die("'%s': npz_writer_data outside a member", w->af.path);
    zmember *m = &w->m[w->n - 1];
    if (bytes > w->expected - w->written)
        die("'%s': array '%s': more data than its shape holds (%" PRIu64 " bytes)", w->af.path, m->fname,
            w->expected);
    wr(w, data, bytes);
    m->crc = crc_update(m->crc, data, bytes);
    w->written += bytes;
}

void npz_writer_end(npz_writer *w)
{
    if (!w->in_member)
        die("'%s': npz_writer_end without npz_writer_begin", w->af.path);
    zmember *m = &w->m[w->n - 1];
    if (w->written != w->expected)
        die("'%s': array '%s': %" PRIu64 " data bytes written, its shape needs %" PRIu64, w->af.path, m->fname,
            w->written, w->expected);
    uint64_t end = xftell(w->af.fp, w->af.tmp_path);
    uint8_t c[4];
    put32(c, m->crc);
    xfseek(w->af.fp, m->offset + 14, w->af.tmp_path);
    wr(w, c, 4);
    xfseek(w->af.fp, end, w->af.tmp_path);
    w->in_member = 0;
}

void npz_writer_close(npz_writer *w)
{
    if (w->in_member)
        die("'%s': npz_writer_close with member '%s' still open", w->af.path, w->m[w->n - 1].fname);
    uint64_t cd_offset = xftell(w->af.fp, w->af.tmp_path);
    for (int i = 0; i < w->n; i++) {
        zmember *m = &w->m[i];
        int big_size = w->force_zip64 || m->size > ZIP64_LIMIT;
        int big_off = w->force_zip64 || m->offset > ZIP64_LIMIT;
        int zip64 = big_size || big_off;
        uint16_t fnlen = (uint16_t)strlen(m->fname);
        uint16_t exlen = zip64 ? (uint16_t)(4 + 16 * big_size + 8 * big_off) : 0;
        uint8_t ch[ZIP_CENTRAL_SIZE], ex[28];
        put32(ch, ZIP_SIG_CENTRAL);
        put16(ch + 4, (3 << 8) | (zip64 ? 45 : 20)); /* made by: Unix */
        put16(ch + 6, zip64 ? 45 : 20);
        put16(ch + 8, 0);
        put16(ch + 10, 0);
        put16(ch + 12, 0);
        put16(ch + 14, DOS_DATE_1980);
        put32(ch + 16, m->crc);
        put32(ch + 20, big_size ? 0xFFFFFFFFu : (uint32_t)m->size);
        put32(ch + 24, big_size ? 0xFFFFFFFFu : (uint32_t)m->size);
        put16(ch + 28, fnlen);
        put16(ch + 30, exlen);
        put16(ch + 32, 0);              /* comment */
        put16(ch + 34, 0);              /* disk */
        put16(ch + 36, 0);              /* internal attributes */
        put32(ch + 38, 0100644u << 16); /* regular file, rw-r--r-- */
        put32(ch + 42, big_off ? 0xFFFFFFFFu : (uint32_t)m->offset);
        wr(w, ch, ZIP_CENTRAL_SIZE);
        wr(w, m->fname, fnlen);
        if (zip64) {
            size_t k = 4;
            put16(ex, 1);
            put16(ex + 2, (uint32_t)(exlen - 4));
            if (big_size) {
                put64(ex + k, m->size), k += 8;
                put64(ex + k, m->size), k += 8;
            }
            if (big_off)
                put64(ex + k, m->offset), k += 8;
            wr(w, ex, k);
        }
    }
    uint64_t end64_offset = xftell(w->af.fp, w->af.tmp_path);
    uint64_t cd_size = end64_offset - cd_offset;
    uint64_t count = (uint64_t)w->n;
    if (w->force_zip64 || count > ZIP_FILECOUNT_LIMIT || cd_offset > ZIP64_LIMIT || cd_size > ZIP64_LIMIT) {
        uint8_t e64[ZIP_END64_SIZE], loc[ZIP_LOCATOR64_SIZE];
        put32(e64, ZIP_SIG_END64);
        put64(e64 + 4, ZIP_END64_SIZE - 12);
        put16(e64 + 12, (3 << 8) | 45);
        put16(e64 + 14, 45);
        put32(e64 + 16, 0);
        put32(e64 + 20, 0);
        put64(e64 + 24, count);
        put64(e64 + 32, count);
        put64(e64 + 40, cd_size);
        put64(e64 + 48, cd_offset);
        wr(w, e64, ZIP_END64_SIZE);
        put32(loc, ZIP_SIG_LOCATOR64);
        put32(loc + 4, 0);
        put64(loc + 8, end64_offset);
        put32(loc + 16, 1);
        wr(w, loc, ZIP_LOCATOR64_SIZE);
    }
    uint8_t e[ZIP_END_SIZE];
    put32(e, ZIP_SIG_END);
    put16(e + 4, 0);
    put16(e + 6, 0);
    put16(e + 8, (uint32_t)(count > ZIP_FILECOUNT_LIMIT ? 0xFFFF : count));
    put16(e + 10, (uint32_t)(count > ZIP_FILECOUNT_LIMIT ? 0xFFFF : count));
    put32(e + 12, cd_size > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)cd_size);
    put32(e + 16, cd_offset > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)cd_offset);
    put16(e + 20, 0);
    wr(w, e, ZIP_END_SIZE);
    atomic_file_commit(&w->af);
    for (int i = 0; i < w->n; i++)
        free(w->m[i].fname);
    free(w->m);
    free(w);
}

void npz_save(const char *path, const char *name, npz_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    npz_writer *w = npz_writer_open(path);
    npz_writer_begin(w, name, dtype, ndim, shape);
    npz_writer_data(w, data, w->expected);
    npz_writer_end(w);
    npz_writer_close(w);
}

/* ---- reader: one member as a byte stream (stored or raw deflate) ---- */

typedef struct mreader {
    npz_file *z;
    const npz_entry *e;
    FILE *fp;
    uint64_t in_left; /* member bytes not yet read from the file */
    uint32_t crc;
    z_stream zs;
    int zinit;
    uint8_t inbuf[1 << 16];
} mreader;

/* zlib's state through our own malloc/free (what zlib would call anyway), so
 * that fuzz builds see it and can release it when a die() abandons a
 * stream (fuzz/common.c). */
static voidpf npz_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return calloc(items, size);
}

static void npz_zfree(voidpf opaque, voidpf p)
{
    (void)opaque;
    free(p);
}

static void mr_open(mreader *r, npz_file *z, const npz_entry *e)
{
    memset(r, 0, offsetof(mreader, inbuf));
    r->z = z;
    r->e = e;
    r->fp = z->fp;
    r->in_left = e->comp_size;
    xfseek(r->fp, e->data_offset, z->path);
    if (e->method == 8) {
        r->zs.zalloc = npz_zalloc;
        r->zs.zfree = npz_zfree;
        if (inflateInit2(&r->zs, -MAX_WBITS) != Z_OK)
            die("'%s': zlib inflateInit2 failed", z->path);
        r->zinit = 1;
    }
}

static void mr_close(mreader *r)
{
    if (r->zinit)
        inflateEnd(&r->zs);
}

static void mr_truncated(mreader *r)
{
    die("'%s': member '%s.npy' ends early: the file is truncated or corrupt", r->z->path, r->e->name);
}

static void mr_fill(mreader *r, uint8_t *dst, size_t n)
{
    if (n > r->in_left)
        mr_truncated(r);
    if (fread(dst, 1, n, r->fp) != n)
        die("'%s': member '%s.npy': read failed or file truncated", r->z->path, r->e->name);
    r->in_left -= n;
}

/* Exactly n uncompressed bytes into dst (or discarded if dst is NULL). */
static void mr_read(mreader *r, void *dst_, size_t n)
{
    uint8_t *dst = dst_;
    uint8_t scratch[4096];
    while (n > 0) {
        uint8_t *out = dst ? dst : scratch;
        size_t want = dst ? n : (n < sizeof scratch ? n : sizeof scratch);
        if (want > (1u << 30))
            want = 1u << 30;
        if (r->e->method == 0) {
            mr_fill(r, out, want);
        } else {
            r->zs.next_out = out;
            r->zs.avail_out = (uInt)want;
            while (r->zs.avail_out > 0) {
                if (r->zs.avail_in == 0) {
                    size_t chunk = r->in_left < sizeof r->inbuf ? (size_t)r->in_left : sizeof r->inbuf;
                    if (chunk == 0)
                        mr_truncated(r);
                    mr_fill(r, r->inbuf, chunk);
                    r->zs.next_in = r->inbuf;
                    r->zs.avail_in = (uInt)chunk;
                }
                int rc = inflate(&r->zs, Z_NO_FLUSH);
                if (rc == Z_STREAM_END && r->zs.avail_out > 0)
                    mr_truncated(r);
                if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && r->zs.avail_in == 0))
                    die("'%s': member '%s.npy': corrupt deflate data (%s)", r->z->path, r->e->name,
                        r->zs.msg ? r->zs.msg : "zlib error");
            }
        }
        r->crc = crc_update(r->crc, out, want);
        if (dst)
            dst += want;
        n -= want;
    }
}

/* ---- reader: zip structure ---- */

static void read_at(npz_file *z, uint64_t off, void *dst, size_t n, const char *what)
{
    if (off > z->file_size || n > z->file_size - off)
        die("'%s': %s at byte %" PRIu64 " lies past the end of the file (%" PRIu64 " bytes): truncated?", z->path,
            what, off, z->file_size);
    xfseek(z->fp, off, z->path);
    if (fread(dst, 1, n, z->fp) != n)
        die("'%s': cannot read the %s: %s", z->path, what, ferror(z->fp) ? strerror(errno) : "unexpected end");
}

static void read_npy_header(npz_file *z, npz_entry *e)
{
    mreader *r = xmalloc(sizeof *r);
    mr_open(r, z, e);
    uint8_t pre[12];
    if (e->size < 10)
        die("'%s': member '%s.npy' is too short to be an .npy file", z->path, e->name);
    mr_read(r, pre, 10);
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        die("'%s': member '%s.npy' is not an .npy file (bad magic)", z->path, e->name);
    int major = pre[6];
    uint64_t hlen, pre_len = 10;
    if (major == 1) {
        hlen = get16(pre + 8);
    } else if (major == 2 || major == 3) {
        mr_read(r, pre + 10, 2);
        hlen = get32(pre + 8);
        pre_len = 12;
    } else {
        die("'%s': member '%s.npy': unsupported .npy format version %d.%d", z->path, e->name, major, pre[7]);
    }
    /* numpy itself refuses headers over 10,000 bytes by default; a claimed
     * gigabyte header would otherwise be allocated before anything is read. */
    if (hlen > (1u << 20))
        die("'%s': member '%s.npy': implausible .npy header length %" PRIu64 " bytes", z->path, e->name, hlen);
    if (pre_len + hlen > e->size)
        die("'%s': member '%s.npy': header length %" PRIu64 " runs past the member (%" PRIu64 " bytes)", z->path,
            e->name, hlen, e->size);
    char *text = xmalloc(hlen + 1);
    mr_read(r, text, hlen);
    text[hlen] = 0;
    parse_npy_dict(z->path, e->name, text, hlen, e, &e->fortran_order);
    free(text);
    mr_close(r);
    free(r);
    e->header_size = pre_len + hlen;
    if (e->dtype != NPZ_OTHER) {
        /* Compare element counts, not byte counts: numel × size can wrap
         * (2^61 float64 elements "need" 0 bytes in 64 bits). */
        uint64_t avail = e->size - e->header_size, es = npz_dtype_size(e->dtype);
        if ((uint64_t)e->numel != avail / es || avail % es != 0)
            die("'%s': member '%s.npy' holds %" PRIu64 " data bytes, but its shape and dtype need %" PRId64
                " elements of %s (%" PRIu64 " bytes each): truncated or corrupt",
                z->path, e->name, avail, e->numel, npz_dtype_name(e->dtype), es);
        e->nbytes = (uint64_t)e->numel * es;
    }
}

npz_file *npz_open(const char *path)
{
    npz_file *z = xcalloc(1, sizeof *z);
    z->path = xstrdup(path);
    FILE *fp = xfopen(path, "rb");
    z->fp = fp;
    if (fseeko(fp, 0, SEEK_END) != 0)
        die("'%s': cannot seek: %s", path, strerror(errno));
    z->file_size = xftell(fp, path);

    zip_listing l;
    if (!zip_list_members(&(zip_source){.path = path, .size = z->file_size, .fp = fp}, &l)) {
        /* No end record: say what the file looks like instead. */
        uint8_t head[6] = {0};
        if (z->file_size >= 6)
            read_at(z, 0, head, 6, "file's first bytes");
        int npy = z->file_size >= 6 && memcmp(head, "\x93NUMPY", 6) == 0;
        int zip = z->file_size >= 4 && get32(head) == ZIP_SIG_LOCAL;
        die("'%s': not an .npz file: no zip end-of-central-directory record%s", path,
            npy ? " (this is a bare .npy file)" : zip || z->file_size > 65536 ? " (truncated?)" : "");
    }
    z->entries = xcalloc(l.n ? (size_t)l.n : 1, sizeof *z->entries);
    for (int i = 0; i < l.n; i++) {
        const zip_member *m = &l.members[i];
        size_t nlen = strlen(m->name);
        if (nlen < 5 || memcmp(m->name + nlen - 4, ".npy", 4) != 0)
            continue; /* not an array */
        if (m->method != 0 && m->method != 8)
            die("'%s': member '%s' uses compression method %u (only stored and deflate are supported)", path,
                m->name, m->method);
        npz_entry *en = &z->entries[z->n_entries++];
        en->name = xmalloc(nlen - 3);
        memcpy(en->name, m->name, nlen - 4);
        en->name[nlen - 4] = 0;
        en->method = m->method;
        en->crc = m->crc;
        en->comp_size = m->comp_size;
        en->size = m->size;
        en->data_offset = m->data_offset;
    }
    zip_listing_free(&l);
    for (int i = 0; i < z->n_entries; i++)
        read_npy_header(z, &z->entries[i]);
    return z;
}

void npz_close(npz_file *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n_entries; i++)
        free(z->entries[i].name);
    free(z->entries);
    if (z->fp)
        fclose(z->fp);
    free(z->path);
    free(z);
}

const npz_entry *npz_find(const npz_file *z, const char *name)
{
    for (int i = 0; i < z->n_entries; i++)
        if (strcmp(z->entries[i].name, name) == 0)
            return &z->entries[i];
    return NULL;
}

static void check_readable(const npz_file *z, const npz_entry *e)
{
    if (e->dtype == NPZ_OTHER)
        die("'%s': array '%s' has dtype '%s', which is unsupported (uint8, float32 or float64, little-endian)",
            z->path, e->name, e->descr);
    if (e->fortran_order)
        die("'%s': array '%s' is stored in Fortran (column-major) order, which is unsupported", z->path, e->name);
}

const npz_entry *npz_require(const npz_file *z, const char *name, npz_dtype dtype)
{
    const npz_entry *e = npz_find(z, name);
    if (!e) {
        char list[512] = "";
        size_t len = 0;
        for (int i = 0; i < z->n_entries && len < sizeof list - 64; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", z->entries[i].name);
        die("'%s': no array '%s' (arrays in the file: %s)", z->path, name, z->n_entries ? list : "none");
    }
    check_readable(z, e);
    if (dtype != NPZ_OTHER && e->dtype != dtype)
        die("'%s': array '%s' is %s, expected %s", z->path, name, npz_dtype_name(e->dtype), npz_dtype_name(dtype));
    return e;
}

void npz_read(npz_file *z, const npz_entry *e, void *dst)
{
    check_readable(z, e);
    mreader *r = xmalloc(sizeof *r);
    mr_open(r, z, e);
    mr_read(r, NULL, e->header_size);
    mr_read(r, dst, e->nbytes);
    uint32_t crc = r->crc;
    mr_close(r);
    free(r);
    if (crc != e->crc)
        die("'%s': CRC-32 mismatch in member '%s.npy' (directory %08x, data %08x): the file is corrupt", z->path,
            e->name, e->crc, crc);
}

void npz_read_rows(npz_file *z, const npz_entry *e, int64_t first, int64_t count, void *dst)
{
    check_readable(z, e);
    if (e->method != 0)
        die("'%s': array '%s' is compressed: read it whole with npz_read", z->path, e->name);
    if (e->ndim < 1)
        die("'%s': array '%s' is 0-dimensional: it has no rows", z->path, e->name);
    if (first < 0 || count < 0 || first > e->shape[0] || count > e->shape[0] - first)
        die("'%s': array '%s': rows [%" PRId64 ", %" PRId64 ") out of range (it has %" PRId64 ")", z->path, e->name,
            first, first + count, e->shape[0]);
    if (!count)
        return;
    uint64_t row = e->nbytes / (uint64_t)e->shape[0];
    xfseek(z->fp, e->data_offset + e->header_size + (uint64_t)first * row, z->path);
    xfread(dst, 1, (size_t)(row * (uint64_t)count), z->fp, z->path);
}

static void *load_any(const char *path, const char *name, int *ndim, int64_t *shape, int64_t *numel,
                      npz_dtype *dtype)
{
    npz_file *z = npz_open(path);
    const npz_entry *e = npz_require(z, name, NPZ_OTHER);
    void *raw = xmalloc(e->nbytes ? e->nbytes : 1);
    npz_read(z, e, raw);
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    *numel = e->numel;
    *dtype = e->dtype;
    npz_close(z);
    return raw;
}

float *npz_load_f32(const char *path, const char *name, int *ndim, int64_t *shape)
{
    int64_t numel;
    npz_dtype dt;
    void *raw = load_any(path, name, ndim, shape, &numel, &dt);
    if (dt == NPZ_F32)
        return raw;
    float *out = xmalloc(numel ? (size_t)numel * sizeof(float) : 1);
    for (int64_t i = 0; i < numel; i++)
        out[i] = dt == NPZ_U8 ? (float)((uint8_t *)raw)[i] : (float)((double *)raw)[i];
    free(raw);
    return out;
}

double *npz_load_f64(const char *path, const char *name, int *ndim, int64_t *shape)
{
    int64_t numel;
    npz_dtype dt;
    void *raw = load_any(path, name, ndim, shape, &numel, &dt);
    if (dt == NPZ_F64)
        return raw;
    double *out = xmalloc(numel ? (size_t)numel * sizeof(double) : 1);
    for (int64_t i = 0; i < numel; i++)
        out[i] = dt == NPZ_U8 ? (double)((uint8_t *)raw)[i] : (double)((float *)raw)[i];
    free(raw);
    return out;
}
