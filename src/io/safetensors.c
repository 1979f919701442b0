#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/utf8.h"
#include "io/file_map.h"

/* A header larger than this is not a real safetensors file (the largest
 * real headers are a few MB for thousands of tensors). */
#define ST_MAX_HEADER (256u << 20)

static const struct {
    const char *name;
    st_dtype dtype;
    size_t size;
} dtype_table[] = {
    {"F64", ST_F64, 8}, {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2},
    {"I64", ST_I64, 8}, {"I32", ST_I32, 4}, {"I16", ST_I16, 2}, {"I8", ST_I8, 1},
    {"U8", ST_U8, 1},   {"BOOL", ST_BOOL, 1},
};
#define N_DTYPES (sizeof dtype_table / sizeof dtype_table[0])

const char *st_dtype_name(st_dtype d) { return dtype_table[d].name; }
size_t st_dtype_size(st_dtype d) { return dtype_table[d].size; }

static int dtype_from_name(const char *s, st_dtype *out)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = dtype_table[i].dtype;
            return 1;
        }
    return 0;
}

const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t buf_size)
{
    size_t pos = 0;
    pos += snprintf(buf + pos, buf_size - pos, "[");
    for (int i = 0; i < ndim && pos < buf_size; i++)
        pos += snprintf(buf + pos, buf_size - pos, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (pos < buf_size)
        snprintf(buf + pos, buf_size - pos, "]");
    return buf;
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0)
            bits = sign;
        else { /* subnormal: value = mant * 2^-24 */
            float v = (float)mant * (1.0f / 16777216.0f);
            return sign ? -v : v;
        }
    } else if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f)
{
    /* Round to nearest even, in integers: the same bits as the hardware
     * conversion (tested over every half value), without _Float16, which
     * Debian's clang 14 (the fuzz builds) lacks on x86. */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) /* inf, or NaN kept quiet with its top payload bits */
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal half (or zero) */
        if (e < -10)
            return sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++; /* a carry into the exponent is right, up to inf */
    return (uint16_t)(sign | r);
}

static int cmp_by_begin(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* Parses a JSON number that must be a non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

/* What cJSON lets through but strict JSON (and the reference Rust parser)
 * does not: invalid UTF-8, raw control characters inside strings, and a
 * \u0000 escape (it would cut a C string short: a name that silently
 * differs from the file's).  One pass over the header. */
static void check_strict_json_text(const char *path, const char *json, size_t n)
{
    if (!utf8_valid(json, n))
        die("'%s': the safetensors header is not valid UTF-8", path);
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)json[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"')
            in_str = 0;
        else if (c < 0x20)
            die("'%s': the safetensors header has a raw control character (0x%02x) inside a string at byte %zu "
                "(not strict JSON)", path, c, i);
        else if (c == '\\' && i + 1 < n) {
            if (json[i + 1] == 'u' && i + 5 < n && !strncmp(json + i + 2, "000", 3) && json[i + 5] == '0')
                die("'%s': the safetensors header has a \\u0000 escape at byte %zu", path, i);
            i++; /* skip the escaped character (\" does not end the string) */
        }
    }
}

static void parse_header(safetensors *st, const char *json, size_t json_len)
{
    const char *path = st->path;
    const char *parse_end = NULL;
    check_strict_json_text(path, json, json_len);
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &parse_end, 0);
    if (!root)
        die("'%s': safetensors header is not valid JSON (near byte %td of the header)", path,
            cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : (ptrdiff_t)0);
    if (!cJSON_IsObject(root))
        die("'%s': safetensors header must be a JSON object", path);
    /* Only whitespace (writers pad with spaces) may follow the object: cJSON
     * stops at the end of the first value and would accept trailing junk. */
    for (const char *p = parse_end; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            die("'%s': unexpected bytes after the JSON header (byte %td of %zu): not a safetensors file, or "
                "a corrupt header", path, p - json, json_len);

    int n = 0;
    for (cJSON *e = root->child; e; e = e->next)
        n++;
    st->tensors = xcalloc(n, sizeof(st_tensor));
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (st->meta)
                die("'%s': __metadata__ appears twice in the header", path);
            if (!cJSON_IsObject(e))
                die("'%s': __metadata__ must be an object of strings", path);
            int m = 0;
            for (cJSON *kv = e->child; kv; kv = kv->next)
                m++;
            st->meta = xcalloc(m, sizeof(st_meta_entry));
            for (cJSON *kv = e->child; kv; kv = kv->next) {
                if (!cJSON_IsString(kv))
                    die("'%s': __metadata__ entry '%s' is not a string", path, kv->string);
                st->meta[st->n_meta].key = xstrdup(kv->string);
                st->meta[st->n_meta].value = xstrdup(kv->valuestring);
                st->n_meta++;
            }
            continue;
        }
        const char *name = e->string;
        /* Duplicates are found by the name index below (linear, not a scan per name). */
        if (!*name || !utf8_name_ok(name, strlen(name)))
            die("'%s': a tensor name is empty or has control characters (entry %d of the header)", path,
                st->n_tensors + 1);
        if (!cJSON_IsObject(e))
            die("'%s': entry '%s' is not an object", path, name);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt))
            die("'%s': tensor '%s' has no string 'dtype'", path, name);
        if (!cJSON_IsArray(sh))
            die("'%s': tensor '%s' has no 'shape' array", path, name);
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
            die("'%s': tensor '%s' needs 'data_offsets' as [begin, end]", path, name);

        st_tensor *t = &st->tensors[st->n_tensors];
        t->name = xstrdup(name);
        if (!dtype_from_name(dt->valuestring, &t->dtype))
            die("'%s': tensor '%s' has unsupported dtype '%s' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                path, name, dt->valuestring);
        t->ndim = cJSON_GetArraySize(sh);
        if (t->ndim > ST_MAX_DIMS)
            die("'%s': tensor '%s' has %d dimensions (at most %d supported)", path, name, t->ndim, ST_MAX_DIMS);
        t->numel = 1;
        int d = 0;
        for (const cJSON *s = sh->child; s; s = s->next, d++) {
            uint64_t v;
            if (!json_uint(s, &v) || v > (1ull << 40))
                die("'%s': tensor '%s' has an invalid shape entry at dimension %d", path, name, d);
            t->shape[d] = (int64_t)v;
            if (v && (uint64_t)t->numel > (1ull << 62) / v)
                die("'%s': tensor '%s' has an impossibly large shape", path, name);
            t->numel *= (int64_t)v;
        }
        /* numel <= 2^62 here, but numel * 8 bytes could still wrap around 2^64
         * (and then match a 0-byte data_offsets range). */
        if ((uint64_t)t->numel > UINT64_MAX / st_dtype_size(t->dtype))
            die("'%s': tensor '%s' has an impossibly large shape", path, name);
        uint64_t b, en;
        if (!json_uint(cJSON_GetArrayItem(off, 0), &b) || !json_uint(cJSON_GetArrayItem(off, 1), &en))
            die("'%s': tensor '%s' has non-integer data_offsets", path, name);
        if (b > en)
            die("'%s': tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] with begin after end", path, name, b, en);
        if (en > st->data_size)
            die("'%s': tensor '%s' ends at byte %" PRIu64 " but the data section has only %zu bytes "
                "(file truncated?)", path, name, en, st->data_size);
        uint64_t want = (uint64_t)t->numel * st_dtype_size(t->dtype);
        if (en - b != want) {
            char sbuf[128];
            die("'%s': tensor '%s' (%s %s) should take %" PRIu64 " bytes but its data_offsets span %" PRIu64,
                path, name, dt->valuestring, st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf), want, en - b);
        }
        t->begin = b;
        t->end = en;
        t->bytes = st->data + b;
        st->n_tensors++;
    }
    cJSON_Delete(root);

    qsort(st->tensors, st->n_tensors, sizeof(st_tensor), cmp_by_begin);
    safetensors_build_index(st);
    for (int i = 1; i < st->n_tensors; i++)
        if (st->tensors[i].begin < st->tensors[i - 1].end)
            die("'%s': tensors '%s' and '%s' overlap in the data section", path, st->tensors[i - 1].name,
                st->tensors[i].name);
}

/* FNV-1a: names are short, this is plenty. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

void safetensors_build_index(safetensors *st)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)st->n_tensors)
        cap *= 2;
    free(st->index);
    st->index = xcalloc(cap, sizeof(int));
    st->index_mask = cap - 1;
    for (int i = 0; i < st->n_tensors; i++) {
        size_t h = (size_t)name_hash(st->tensors[i].name) & st->index_mask;
        while (st->index[h]) {
            if (strcmp(st->tensors[st->index[h] - 1].name, st->tensors[i].name) == 0)
                die("'%s': tensor '%s' appears twice in the header", st->path, st->tensors[i].name);
            h = (h + 1) & st->index_mask;
        }
        st->index[h] = i + 1;
    }
}

safetensors *safetensors_open(const char *path)
{
    file_map fm = file_map_open(path); /* refuses FIFOs, directories, devices */
    size_t size = fm.size;
    if (size < 8)
        die("'%s': too short to be a safetensors file (%zu bytes; the 8-byte header length is missing)", path, size);

    safetensors *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    st->format = "safetensors";
    st->map = fm.map;
    st->map_size = size;

    const uint8_t *bytes = fm.data;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | bytes[i];
    if (header_len > size - 8)
        die("'%s': header length %" PRIu64 " is past the end of the file (%zu bytes): not a safetensors file, "
            "or truncated", path, header_len, size);
    if (header_len > ST_MAX_HEADER)
        die("'%s': header length %" PRIu64 " is implausibly large", path, header_len);
    if (header_len < 2)
        die("'%s': header is empty (expected at least '{}')", path);
    st->data = bytes + 8 + header_len;
    st->data_size = size - 8 - header_len;
    parse_header(st, (const char *)bytes + 8, (size_t)header_len);
    return st;
}

void safetensors_close(safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
    free(st->index);
    free(st->globals);
    if (st->ext_free)
        st->ext_free(st->ext);
    file_map fm = {st->map, st->map_size, st->map};
    file_map_close(&fm);
    free(st->path);
    free(st);
}

const st_tensor *safetensors_find(const safetensors *st, const char *name)
{
    if (!st->index) /* a struct filled by hand (tests): plain scan */
        for (int i = 0; i < st->n_tensors; i++)
            if (strcmp(st->tensors[i].name, name) == 0)
                return &st->tensors[i];
    if (!st->index)
        return NULL;
    for (size_t h = (size_t)name_hash(name) & st->index_mask; st->index[h]; h = (h + 1) & st->index_mask)
        if (strcmp(st->tensors[st->index[h] - 1].name, name) == 0)
            return &st->tensors[st->index[h] - 1];
    return NULL;
}

const uint8_t *safetensors_tensor_bytes(const safetensors *st, const st_tensor *t)
{
    if (st->verify)
        st->verify(st, t);
    return t->bytes;
}

const st_tensor *safetensors_require(const safetensors *st, const char *name)
{
    const st_tensor *t = safetensors_find(st, name);
    if (!t)
        die("'%s': tensor '%s' is missing", st->path, name);
    return t;
}

const char *safetensors_meta(const safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0)
            return st->meta[i].value;
    return NULL;
}

/* Unaligned little-endian loads (the data section has no alignment promise). */
static inline double load_f64(const uint8_t *p) { double v; memcpy(&v, p, 8); return v; }
static inline int64_t load_i64(const uint8_t *p) { int64_t v; memcpy(&v, p, 8); return v; }
static inline int32_t load_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline int16_t load_i16(const uint8_t *p) { int16_t v; memcpy(&v, p, 2); return v; }
static inline uint16_t load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

void safetensors_read_f32(const safetensors *st, const st_tensor *t, float *dst)
{
    const uint8_t *src = safetensors_tensor_bytes(st, t);
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, src, (size_t)n * 4); break;
    case ST_F64: for (int64_t i = 0; i < n; i++) dst[i] = (float)load_f64(src + 8 * i); break;
    case ST_F16: for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_u16(src + 2 * i)); break;
    case ST_BF16: for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(load_u16(src + 2 * i)); break;
    case ST_I64: for (int64_t i = 0; i < n; i++) dst[i] = (float)load_i64(src + 8 * i); break;
    case ST_I32: for (int64_t i = 0; i < n; i++) dst[i] = (float)load_i32(src + 4 * i); break;
    case ST_I16: for (int64_t i = 0; i < n; i++) dst[i] = (float)load_i16(src + 2 * i); break;
    case ST_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)src[i]; break;
    case ST_U8: case ST_BOOL: for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i]; break;
    }
}

void safetensors_read_i64(const safetensors *st, const st_tensor *t, int64_t *dst)
{
    const uint8_t *src = safetensors_tensor_bytes(st, t);
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_I64: memcpy(dst, src, (size_t)n * 8); break;
    case ST_I32: for (int64_t i = 0; i < n; i++) dst[i] = load_i32(src + 4 * i); break;
    case ST_I16: for (int64_t i = 0; i < n; i++) dst[i] = load_i16(src + 2 * i); break;
    case ST_I8: for (int64_t i = 0; i < n; i++) dst[i] = (int8_t)src[i]; break;
    case ST_U8: case ST_BOOL: for (int64_t i = 0; i < n; i++) dst[i] = src[i]; break;
    default:
        die("'%s': tensor '%s' has dtype %s where an integer tensor is expected", st->path, t->name,
            st_dtype_name(t->dtype));
    }
}

/* Weights are floating point: an integer or BOOL tensor where a weight is
 * expected is a wrong file (e.g. a mask or an index under the weight's name),
 * never a value to cast silently.  The one integer a state dict holds among
 * its weights is BatchNorm's counter, which torch stores as int64: a
 * "num_batches_tracked" may be I64 or I32. */
static void require_float(const safetensors *st, const st_tensor *t)
{
    if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64)
        return;
    size_t n = strlen(t->name), k = strlen("num_batches_tracked");
    if ((t->dtype == ST_I64 || t->dtype == ST_I32) && n >= k && !strcmp(t->name + n - k, "num_batches_tracked"))
        return;
    die("'%s': tensor '%s' has dtype %s where a floating-point weight (F32, F16, BF16 or F64) is expected",
        st->path, t->name, st_dtype_name(t->dtype));
}

void safetensors_load_f32(const safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst)
{
    const st_tensor *t = safetensors_require(st, name);
    require_float(st, t);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char a[160], b[160];
        die("'%s': tensor '%s' has shape %s, expected %s", st->path, name, st_shape_str(t->ndim, t->shape, a, sizeof a),
            st_shape_str(ndim, shape, b, sizeof b));
    }
    safetensors_read_f32(st, t, dst);
}

float *safetensors_get_f32(const safetensors *st, const char *name, int *ndim, int64_t *shape)
{
    const st_tensor *t = safetensors_require(st, name);
    float *dst = xmalloc((size_t)t->numel * sizeof(float));
    safetensors_read_f32(st, t, dst);
    if (ndim)
        *ndim = t->ndim;
    if (shape)
        memcpy(shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
    return dst;
}

/* ---- writer ---------------------------------------------------------- */

typedef struct st_pending {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t bytes;
    const void *data;
} st_pending;

struct st_writer {
    int n, cap;
    st_pending *items;
    int *index; /* name hash over items (index + 1), for a linear duplicate check */
    size_t index_mask;
    int n_meta;
    st_meta_entry *meta;
};

st_writer *st_writer_new(void) { return xcalloc(1, sizeof(st_writer)); }

void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    if (ndim > ST_MAX_DIMS)
        die("internal: tensor '%s' has %d dimensions (at most %d)", name, ndim, ST_MAX_DIMS);
    if (strcmp(name, "__metadata__") == 0)
        die("internal: '__metadata__' is not a valid tensor name");
    if ((size_t)(w->n + 1) * 2 > (w->index ? w->index_mask + 1 : 0)) { /* grow and rehash */
        size_t cap = w->index ? 2 * (w->index_mask + 1) : 64;
        free(w->index);
        w->index = xcalloc(cap, sizeof(int));
        w->index_mask = cap - 1;
        for (int i = 0; i < w->n; i++) {
            size_t h = (size_t)name_hash(w->items[i].name) & w->index_mask;
            while (w->index[h])
                h = (h + 1) & w->index_mask;
            w->index[h] = i + 1;
        }
    }
    size_t h = (size_t)name_hash(name) & w->index_mask;
    for (; w->index[h]; h = (h + 1) & w->index_mask)
        if (strcmp(w->items[w->index[h] - 1].name, name) == 0)
            die("internal: tensor '%s' added twice to a safetensors writer", name);
    w->index[h] = w->n + 1;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->items = xrealloc(w->items, (size_t)w->cap * sizeof(st_pending));
    }
    st_pending *p = &w->items[w->n++];
    p->name = xstrdup(name);
    p->dtype = dtype;
    p->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    p->bytes = numel * st_dtype_size(dtype);
    p->data = data;
}

void st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data)
{
    st_writer_add(w, name, ST_F32, ndim, shape, data);
}

void st_writer_add_i64(st_writer *w, const char *name, int ndim, const int64_t *shape, const int64_t *data)
{
    st_writer_add(w, name, ST_I64, ndim, shape, data);
}

void st_writer_set_metadata(st_writer *w, const char *key, const char *value)
{
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = xstrdup(value);
            return;
        }
    w->meta = xrealloc(w->meta, (size_t)(w->n_meta + 1) * sizeof(st_meta_entry));
    w->meta[w->n_meta].key = xstrdup(key);
    w->meta[w->n_meta].value = xstrdup(value);
    w->n_meta++;
}

void st_writer_save(st_writer *w, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++)
            cJSON_AddStringToObject(m, w->meta[i].key, w->meta[i].value);
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        st_pending *p = &w->items[i];
        cJSON *e = cJSON_AddObjectToObject(root, p->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(p->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < p->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + p->bytes)));
        offset += p->bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        die("internal: cannot format the safetensors header for '%s'", path);
    /* Pad the header with spaces so the data section starts 8-byte aligned
     * (what the reference writer does; readers may then map tensors directly). */
    size_t json_len = strlen(json);
    size_t padded = (json_len + 7) / 8 * 8;
    uint8_t len_bytes[8];
    for (int i = 0; i < 8; i++)
        len_bytes[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    atomic_file af = atomic_file_open(path);
    xfwrite(len_bytes, 1, 8, af.fp, path);
    xfwrite(json, 1, json_len, af.fp, path);
    for (size_t i = json_len; i < padded; i++)
        xfwrite(" ", 1, 1, af.fp, path);
    for (int i = 0; i < w->n; i++)
        if (w->items[i].bytes)
            xfwrite(w->items[i].data, 1, w->items[i].bytes, af.fp, path);
    atomic_file_commit(&af);
    free(json);
}

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->items[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->items);
    free(w->meta);
    free(w->index);
    free(w);
}

long long safetensors_meta_ll(const safetensors *st, const char *key)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        die("'%s': metadata '%s' is missing (not a file of the expected kind?)", st->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        die("'%s': metadata '%s' = '%s' is not an integer", st->path, key, v);
    return x;
}

float safetensors_meta_f32(const safetensors *st, const char *key, float fallback)
{
    const char *v = safetensors_meta(st, key);
    return v ? strtof(v, NULL) : fallback;
}

void st_writer_set_metadata_ll(st_writer *w, const char *key, long long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", value);
    st_writer_set_metadata(w, key, buf);
}

void st_writer_set_metadata_f32(st_writer *w, const char *key, float value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", value); /* 9 significant digits: exact for a float */
    st_writer_set_metadata(w, key, buf);
}
