#include "io/torch_file.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"
#include "io/pickle.h"
#include "io/zip_archive.h"

/* The legacy format's first pickle: PROTO, LONG1 of 10 bytes = the magic
 * number 0x1950a86a20f9469cfc6c, STOP.  Compared as bytes (the magic does not
 * fit the unpickler's 64-bit integers). */
static const uint8_t legacy_magic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};

/* Where the magic's LONG1 starts in a legacy file: after PROTO, and with
 * protocols 4 and 5 (torch.save's pickle_protocol) after the FRAME opcode
 * that begins every pickle; 0 if the file does not start with the magic. */
static size_t legacy_magic_at(const uint8_t *d, size_t n)
{
    if (n < 2 || d[0] != 0x80 || d[1] < 2 || d[1] > 5)
        return 0;
    size_t at = 2;
    if (d[1] >= 4 && n > at && d[at] == 0x95)
        at += 9; /* FRAME and its 8-byte length, a hint */
    return n >= at + sizeof legacy_magic && memcmp(d + at, legacy_magic, sizeof legacy_magic) == 0 ? at : 0;
}

torch_kind torch_file_sniff(const uint8_t *d, size_t n)
{
    if (zip_archive_sniff(d, n))
        return TORCH_ZIP;
    if (legacy_magic_at(d, n))
        return TORCH_LEGACY;
    return TORCH_NOT;
}

/* ---- storages ----------------------------------------------------------- */

typedef struct storage {
    char *key;
    st_dtype dtype;
    uint64_t numel;
    const uint8_t *bytes; /* NULL until located (legacy: after the pickles) */
    int member;           /* zip member index for the CRC, or -1 */
} storage;

/* Reader state kept with the safetensors view (st->ext). */
typedef struct pt_state {
    file_map fm;
    zip_archive *zip;
    int *tensor_member; /* per tensor (parallel to st->tensors): zip member to verify, -1 none */
    uint8_t **buffers;  /* copies of non-contiguous tensors */
    int n_buffers;
} pt_state;

typedef struct loader {
    const char *path;
    safetensors *st;
    pt_state *ps;
    pk_arena *arena;
    const char *prefix; /* zip: "<prefix>/" */
    storage *storages;
    int n_storages, cap_storages;
    int *hash; /* open addressing over storages: index + 1 */
    size_t hash_mask;
    int cap_tensors, cap_meta;
    long long visits, max_visits;
    uint64_t materialised, materialise_limit;
    char *name; /* the walk's dotted-name buffer */
} loader;

static const struct {
    const char *global;
    st_dtype dtype;
} storage_types[] = {
    {"torch.FloatStorage", ST_F32}, {"torch.DoubleStorage", ST_F64}, {"torch.HalfStorage", ST_F16},
    {"torch.BFloat16Storage", ST_BF16}, {"torch.LongStorage", ST_I64}, {"torch.IntStorage", ST_I32},
    {"torch.ShortStorage", ST_I16}, {"torch.CharStorage", ST_I8}, {"torch.ByteStorage", ST_U8},
    {"torch.BoolStorage", ST_BOOL},
};

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static storage *storage_find(loader *L, const char *key)
{
    if (!L->hash)
        return NULL;
    for (size_t h = str_hash(key) & L->hash_mask; L->hash[h]; h = (h + 1) & L->hash_mask)
        if (strcmp(L->storages[L->hash[h] - 1].key, key) == 0)
            return &L->storages[L->hash[h] - 1];
    return NULL;
}

static storage *storage_add(loader *L, const char *key)
{
    if (L->n_storages == L->cap_storages) {
        L->cap_storages = L->cap_storages ? 2 * L->cap_storages : 16;
        L->storages = xrealloc(L->storages, (size_t)L->cap_storages * sizeof(storage));
        /* rehash at twice the capacity */
        size_t cap = 4 * (size_t)L->cap_storages;
        free(L->hash);
        L->hash = xcalloc(cap, sizeof(int));
        L->hash_mask = cap - 1;
        for (int i = 0; i < L->n_storages; i++) {
            size_t h = str_hash(L->storages[i].key) & L->hash_mask;
            while (L->hash[h])
                h = (h + 1) & L->hash_mask;
            L->hash[h] = i + 1;
        }
    }
    storage *s = &L->storages[L->n_storages];
    memset(s, 0, sizeof *s);
    s->key = xstrdup(key);
    s->member = -1;
    size_t h = str_hash(key) & L->hash_mask;
    while (L->hash[h])
        h = (h + 1) & L->hash_mask;
    L->hash[h] = ++L->n_storages;
    return s;
}

static int64_t need_int(loader *L, const pk_value *v, const char *what, int64_t lo, int64_t hi)
{
    if (!v || v->kind != PK_INT || v->i < lo || v->i > hi)
        die("'%s': %s must be an integer in [%" PRId64 ", %" PRId64 "], got %s%s", L->path, what, lo, hi,
            v ? pk_kind_name(v->kind) : "nothing", v && v->kind == PK_INT ? " out of range" : "");
    return v->i;
}

/* A persistent id ("storage", torch.XStorage, key, location, numel[, view])
 * -> its storage, located (zip) or registered for the legacy pass. */
static storage *resolve_pid(loader *L, const pk_value *pid, uint64_t *view_offset, uint64_t *view_numel)
{
    if (pid->kind != PK_TUPLE || pid->n < 5 || pid->n > 6 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        die("'%s': unexpected persistent id (not a ('storage', type, key, location, numel) tuple)", L->path);
    const pk_value *type = pid->items[1], *key = pid->items[2];
    st_dtype dt = ST_F32;
    int found = 0;
    for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0] && !found; i++)
        if (pk_is_global(type, storage_types[i].global))
            dt = storage_types[i].dtype, found = 1;
    if (!found)
        die("'%s': storage of unsupported type %s", L->path, type->kind == PK_GLOBAL ? type->s : pk_kind_name(type->kind));
    if (key->kind != PK_STR || key->len == 0 || key->len > 200 || !utf8_name_ok(key->s, key->len) ||
        strchr(key->s, '/'))
        die("'%s': storage key is not a plain non-empty name", L->path);
    uint64_t numel = (uint64_t)need_int(L, pid->items[4], "a storage's element count", 0, INT64_MAX / 8);
    *view_offset = 0;
    *view_numel = numel;
    if (pid->n == 6 && pid->items[5]->kind != PK_NONE) {
        /* legacy storage view: (view_key, offset, view_size) */
        const pk_value *vm = pid->items[5];
        if (vm->kind != PK_TUPLE || vm->n != 3)
            die("'%s': unexpected storage view metadata", L->path);
        *view_offset = (uint64_t)need_int(L, vm->items[1], "a storage view's offset", 0, INT64_MAX / 8);
        *view_numel = (uint64_t)need_int(L, vm->items[2], "a storage view's size", 0, INT64_MAX / 8);
        if (*view_offset > numel || *view_numel > numel - *view_offset)
            die("'%s': storage view [%" PRIu64 ", +%" PRIu64 ") lies outside its storage of %" PRIu64 " elements",
                L->path, *view_offset, *view_numel, numel);
    }
    storage *s = storage_find(L, key->s);
    if (s) {
        if (s->dtype != dt || s->numel != numel)
            die("'%s': storage '%s' is used with two different types or sizes", L->path, key->s);
        return s;
    }
    s = storage_add(L, key->s);
    s->dtype = dt;
    s->numel = numel;
    if (L->ps->zip) {
        char name[512];
        snprintf(name, sizeof name, "%sdata/%s", L->prefix, key->s);
        const zip_member *m = zip_find(L->ps->zip, name);
        if (!m)
            die("'%s': the pickle refers to storage '%s' but the archive has no member '%s'", L->path, key->s, name);
        if (m->size != numel * st_dtype_size(dt))
            die("'%s': storage '%s' should hold %" PRIu64 " elements of %s (%" PRIu64 " bytes) but its record has "
                "%" PRIu64 " bytes", L->path, key->s, numel, st_dtype_name(dt), numel * st_dtype_size(dt), m->size);
        s->member = (int)(m - L->ps->zip->members);
        s->bytes = zip_member_data(L->ps->zip, m, 0);
    }
    return s;
}

/* ---- the walk: dotted names ------------------------------------------- */

static void add_meta(loader *L, const char *key, const char *value)
{
    safetensors *st = L->st;
    if (st->n_meta == L->cap_meta) {
        L->cap_meta = L->cap_meta ? 2 * L->cap_meta : 16;
        st->meta = xrealloc(st->meta, (size_t)L->cap_meta * sizeof(st_meta_entry));
    }
    st->meta[st->n_meta].key = xstrdup(key);
    st->meta[st->n_meta].value = xstrdup(value);
    st->n_meta++;
}

static int is_scalar(const pk_value *v)
{
    return v->kind == PK_NONE || v->kind == PK_BOOL || v->kind == PK_INT || v->kind == PK_FLOAT ||
           v->kind == PK_STR;
}

static cJSON *to_json(loader *L, const pk_value *v, int depth);

static cJSON *namespace_json(loader *L, const pk_value *ns, int depth)
{
    /* NEWOBJ(Namespace) + BUILD(dict), or Namespace(**kw) never happens in a pickle. */
    cJSON *o = cJSON_CreateObject();
    const pk_value *d = ns->state;
    if (d && d->kind == PK_DICT)
        for (int i = 0; i + 1 < d->n; i += 2)
            if (d->items[i]->kind == PK_STR) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, d->items[i]->s); /* the last value wins, as in Python */
                cJSON_AddItemToObject(o, d->items[i]->s, to_json(L, d->items[i + 1], depth + 1));
            }
    return o;
}

static cJSON *to_json(loader *L, const pk_value *v, int depth)
{
    if (depth > PK_MAX_DEPTH)
        die("'%s': the pickle nests deeper than %d levels", L->path, PK_MAX_DEPTH);
    if (++L->visits > L->max_visits)
        die("'%s': the pickle's object graph is too large when expanded (shared or cyclic containers?)", L->path);
    switch (v->kind) {
    case PK_NONE: return cJSON_CreateNull();
    case PK_BOOL: return cJSON_CreateBool((int)v->i);
    case PK_INT: return cJSON_CreateNumber((double)v->i);
    case PK_FLOAT: return isfinite(v->f) ? cJSON_CreateNumber(v->f) : cJSON_CreateString(isnan(v->f) ? "nan" : v->f > 0 ? "inf" : "-inf");
    case PK_STR: return cJSON_CreateString(v->s);
    case PK_TUPLE:
    case PK_LIST: {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < v->n; i++)
            cJSON_AddItemToArray(a, to_json(L, v->items[i], depth + 1));
        return a;
    }
    case PK_DICT: {
        cJSON *o = cJSON_CreateObject();
        for (int i = 0; i + 1 < v->n; i += 2) {
            char kb[32];
            const char *k = v->items[i]->kind == PK_STR ? v->items[i]->s : NULL;
            if (!k && v->items[i]->kind == PK_INT) {
                snprintf(kb, sizeof kb, "%" PRId64, v->items[i]->i);
                k = kb;
            }
            if (k)
                cJSON_AddItemToObject(o, k, to_json(L, v->items[i + 1], depth + 1));
        }
        return o;
    }
    case PK_OBJECT:
    case PK_CALL:
        if (pk_is_global(v->func, "argparse.Namespace"))
            return namespace_json(L, v, depth);
        return cJSON_CreateString(v->func->s);
    case PK_GLOBAL: return cJSON_CreateString(v->s);
    default: return cJSON_CreateString(pk_kind_name(v->kind));
    }
}

static void scalar_text(const pk_value *v, char *buf, size_t n)
{
    switch (v->kind) {
    case PK_NONE: snprintf(buf, n, "null"); break;
    case PK_BOOL: snprintf(buf, n, "%s", v->i ? "true" : "false"); break;
    case PK_INT: snprintf(buf, n, "%" PRId64, v->i); break;
    case PK_FLOAT: snprintf(buf, n, "%.17g", v->f); break;
    default: buf[0] = 0;
    }
}

static void add_json_meta(loader *L, const char *name, const pk_value *v, int depth)
{
    cJSON *j = to_json(L, v, depth);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        die("'%s': cannot format metadata '%s'", L->path, name);
    add_meta(L, name, s);
    free(s);
}

static st_tensor *new_tensor(loader *L, const char *name)
{
    safetensors *st = L->st;
    if (st->n_tensors == L->cap_tensors) {
        L->cap_tensors = L->cap_tensors ? 2 * L->cap_tensors : 64;
        st->tensors = xrealloc(st->tensors, (size_t)L->cap_tensors * sizeof(st_tensor));
        L->ps->tensor_member = xrealloc(L->ps->tensor_member, (size_t)L->cap_tensors * sizeof(int));
    }
    st_tensor *t = &st->tensors[st->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    L->ps->tensor_member[st->n_tensors] = -1;
    st->n_tensors++;
    return t;
}

/* Copies a strided view out in row-major order. */
static uint8_t *materialise(loader *L, const char *name, const uint8_t *base, size_t el, int ndim,
                            const int64_t *size, const int64_t *stride, int64_t numel)
{
    uint64_t bytes = (uint64_t)numel * el;
    if (bytes > L->materialise_limit - L->materialised)
        die("'%s': non-contiguous tensor '%s' would need %" PRIu64 " bytes copied out, more than this file can "
            "justify (zero strides?)", L->path, name, bytes);
    L->materialised += bytes;
    uint8_t *out = xmalloc(bytes ? (size_t)bytes : 1);
    int64_t idx[ST_MAX_DIMS] = {0};
    int64_t off = 0; /* element offset of idx */
    for (int64_t k = 0; k < numel; k++) {
        memcpy(out + (size_t)k * el, base + (size_t)off * el, el);
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < size[d]) {
                off += stride[d];
                break;
            }
            off -= stride[d] * (idx[d] - 1);
            idx[d] = 0;
        }
    }
    pt_state *ps = L->ps;
    ps->buffers = xrealloc(ps->buffers, (size_t)(ps->n_buffers + 1) * sizeof(uint8_t *));
    ps->buffers[ps->n_buffers++] = out;
    return out;
}

static void make_tensor(loader *L, const char *name, const pk_value *call)
{
    const pk_value *args = call->args;
    const char *fn = call->func->s;
    /* A Parameter wraps its tensor (once; a loop, not a recursion: a hostile
     * file could chain a million of them). */
    for (int wraps = 0; !strcmp(fn, "torch._utils._rebuild_parameter") ||
                        !strcmp(fn, "torch._utils._rebuild_parameter_with_state");
         wraps++) {
        if (wraps == 4 || args->n < 3 || args->items[0]->kind != PK_CALL)
            die("'%s': '%s': unexpected arguments to %s", L->path, name, fn);
        call = args->items[0];
        args = call->args;
        fn = call->func->s;
    }
    int v2 = !strcmp(fn, "torch._utils._rebuild_tensor_v2");
    if (!(v2 || !strcmp(fn, "torch._utils._rebuild_tensor")) || args->n < 4 || (!v2 && args->n != 4))
        die("'%s': '%s': unexpected call of %s with %d arguments", L->path, name, fn, args->n);
    if (args->items[0]->kind != PK_PERSID)
        die("'%s': tensor '%s' has no storage reference", L->path, name);
    uint64_t voff, vnumel;
    storage *s = resolve_pid(L, args->items[0]->args, &voff, &vnumel);
    const pk_value *sz = args->items[2], *sd = args->items[3];
    if (sz->kind != PK_TUPLE || sd->kind != PK_TUPLE || sz->n != sd->n)
        die("'%s': tensor '%s': size and stride must be tuples of the same length", L->path, name);
    if (sz->n > ST_MAX_DIMS)
        die("'%s': tensor '%s' has %d dimensions (at most %d supported)", L->path, name, sz->n, ST_MAX_DIMS);
    int64_t offset = need_int(L, args->items[1], "a tensor's storage offset", 0, INT64_MAX / 8);
    int64_t size[ST_MAX_DIMS], stride[ST_MAX_DIMS];
    uint64_t numel = 1, last = (uint64_t)offset; /* index of the last element */
    for (int d = 0; d < sz->n; d++) {
        size[d] = need_int(L, sz->items[d], "a tensor size", 0, (int64_t)1 << 40);
        stride[d] = need_int(L, sd->items[d], "a tensor stride", 0, (int64_t)1 << 40);
        if (size[d] && numel > (1ull << 40) / (uint64_t)size[d])
            die("'%s': tensor '%s' has an impossibly large shape", L->path, name);
        numel *= (uint64_t)size[d];
    }
    if (numel) /* all products < 2^80 would overflow: sizes and strides < 2^40 each, so check in 128 bits */
        for (int d = 0; d < sz->n; d++) {
            unsigned __int128 span = (unsigned __int128)(uint64_t)(size[d] - 1) * (uint64_t)stride[d];
            if (span > (unsigned __int128)vnumel || last + (uint64_t)span < last)
                die("'%s': tensor '%s' reaches past the end of its storage ('%s', %" PRIu64 " elements)", L->path,
                    name, s->key, vnumel);
            last += (uint64_t)span;
        }
    if ((numel && last >= vnumel) || (uint64_t)offset > vnumel)
        die("'%s': tensor '%s' (offset %" PRId64 ") reaches past the end of its storage ('%s', %" PRIu64
            " elements)", L->path, name, offset, s->key, vnumel);
    st_tensor *t = new_tensor(L, name);
    t->dtype = s->dtype;
    t->ndim = sz->n;
    t->numel = (int64_t)numel;
    memcpy(t->shape, size, (size_t)t->ndim * sizeof(int64_t));
    size_t el = st_dtype_size(s->dtype);
    int contiguous = 1;
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (size[d] != 1 && stride[d] != want)
            contiguous = 0;
        want *= size[d];
    }
    const uint8_t *base = s->bytes + (voff + (uint64_t)offset) * el;
    if (contiguous || numel == 0) {
        t->bytes = base;
        L->ps->tensor_member[L->st->n_tensors - 1] = s->member;
    } else {
        if (s->member >= 0) /* copying reads it now: check it now */
            zip_member_data(L->ps->zip, &L->ps->zip->members[s->member], 1);
        t->bytes = materialise(L, name, base, el, t->ndim, size, stride, (int64_t)numel);
    }
}

static int is_tensor_call(const pk_value *v)
{
    return v->kind == PK_CALL && !strncmp(v->func->s, "torch._utils._rebuild_", 22);
}

/* Does the container hold anything but scalars (then it is walked, not
 * turned into one JSON metadata entry)? */
static int has_structure(const pk_value *v)
{
    for (int i = 0; i < v->n; i++)
        if (!is_scalar(v->items[i]))
            return 1;
    return 0;
}

static void walk(loader *L, const pk_value *v, char *name, size_t len, int depth);

static void walk_child(loader *L, const pk_value *v, char *name, size_t len, const char *key, size_t klen, int depth)
{
    if (klen == 0 || !utf8_name_ok(key, klen))
        die("'%s': a dict key under '%s' is empty or has control characters", L->path, len ? name : "(top level)");
    if (len + 1 + klen >= 4096)
        die("'%s': a name under '%s' is longer than 4 KB", L->path, name);
    size_t n = len;
    if (n)
        name[n++] = '.';
    memcpy(name + n, key, klen);
    name[n + klen] = 0;
    walk(L, v, name, n + klen, depth + 1);
    name[len] = 0;
}

static void walk(loader *L, const pk_value *v, char *name, size_t len, int depth)
{
    if (depth > PK_MAX_DEPTH)
        die("'%s': the pickle nests deeper than %d levels", L->path, PK_MAX_DEPTH);
    if (++L->visits > L->max_visits)
        die("'%s': the pickle's object graph is too large when expanded (shared or cyclic containers?)", L->path);
    const char *here = len ? name : "tensor"; /* torch.save(tensor): one unnamed tensor */
    char buf[64];
    switch (v->kind) {
    case PK_DICT:
        for (int i = 0; i + 1 < v->n; i += 2) {
            const pk_value *k = v->items[i];
            if (k->kind == PK_STR)
                walk_child(L, v->items[i + 1], name, len, k->s, k->len, depth);
            else if (k->kind == PK_INT || k->kind == PK_BOOL || k->kind == PK_NONE) {
                scalar_text(k, buf, sizeof buf);
                walk_child(L, v->items[i + 1], name, len, buf, strlen(buf), depth);
            } else
                die("'%s': a dict under '%s' has a %s key", L->path, len ? name : "(top level)", pk_kind_name(k->kind));
        }
        break;
    case PK_LIST:
    case PK_TUPLE:
        if (!has_structure(v)) {
            add_json_meta(L, len ? name : "value", v, depth);
            break;
        }
        for (int i = 0; i < v->n; i++) {
            snprintf(buf, sizeof buf, "%d", i);
            walk_child(L, v->items[i], name, len, buf, strlen(buf), depth);
        }
        break;
    case PK_CALL:
        if (is_tensor_call(v)) {
            make_tensor(L, here, v);
            break;
        }
        __attribute__((fallthrough)); /* argparse.Namespace(...) */
    case PK_OBJECT:
        add_json_meta(L, len ? name : "value", v, depth);
        break;
    case PK_STR: add_meta(L, len ? name : "value", v->s); break;
    case PK_NONE: case PK_BOOL: case PK_INT: case PK_FLOAT:
        scalar_text(v, buf, sizeof buf);
        add_meta(L, len ? name : "value", buf);
        break;
    case PK_GLOBAL: add_meta(L, len ? name : "value", v->s); break;
    case PK_BYTES:
        snprintf(buf, sizeof buf, "<%zu bytes>", v->len);
        add_meta(L, len ? name : "value", buf);
        break;
    case PK_PERSID:
        die("'%s': a bare storage at '%s' (only tensors are supported)", L->path, here);
    }
}

/* ---- the two containers ------------------------------------------------ */

static void verify_tensor(const safetensors *st, const st_tensor *t)
{
    pt_state *ps = st->ext;
    int m = ps->tensor_member[t - st->tensors];
    if (m >= 0 && !ps->zip->members[m].crc_checked)
        zip_member_data(ps->zip, &ps->zip->members[m], 1);
}

static void free_state(void *p)
{
    pt_state *ps = p;
    zip_archive_close(ps->zip);
    for (int i = 0; i < ps->n_buffers; i++)
        free(ps->buffers[i]);
    free(ps->buffers);
    free(ps->tensor_member);
    file_map_close(&ps->fm);
    free(ps);
}

static const pk_value *open_zip(loader *L, char *what, size_t what_size)
{
    pt_state *ps = L->ps;
    ps->zip = zip_archive_open(L->path, ps->fm.data, ps->fm.size);
    const zip_member *pkl = NULL;
    for (int i = 0; i < ps->zip->n; i++) {
        const char *nm = ps->zip->members[i].name, *slash = strchr(nm, '/');
        if (slash && !strcmp(slash, "/data.pkl")) {
            if (pkl)
                die("'%s': two pickles ('%s' and '%s') in one archive", L->path, pkl->name, nm);
            pkl = &ps->zip->members[i];
        }
    }
    if (!pkl) {
        if (zip_find(ps->zip, "arr_0.npy") || (ps->zip->n && strstr(ps->zip->members[0].name, ".npy")))
            die("'%s': a NumPy .npz archive, not weights (no <prefix>/data.pkl)", L->path);
        die("'%s': a ZIP archive without <prefix>/data.pkl: not a PyTorch file", L->path);
    }
    size_t plen = (size_t)(strchr(pkl->name, '/') - pkl->name) + 1;
    char *prefix = xmalloc(plen + 1);
    memcpy(prefix, pkl->name, plen);
    prefix[plen] = 0;
    L->prefix = prefix;
    char bo[600];
    snprintf(bo, sizeof bo, "%sbyteorder", prefix);
    const zip_member *b = zip_find(ps->zip, bo);
    if (b) {
        const uint8_t *p = zip_member_data(ps->zip, b, 1);
        if (!(b->size == 6 && !memcmp(p, "little", 6)))
            die("'%s': storages are not little-endian (byteorder record)", L->path);
    }
    const uint8_t *p = zip_member_data(ps->zip, pkl, 1);
    snprintf(what, what_size, "%s: %s", L->path, pkl->name);
    return pickle_load(L->arena, what, p, pkl->size, NULL);
}

static const pk_value *open_legacy(loader *L, char *what, size_t what_size)
{
    const uint8_t *d = L->ps->fm.data;
    size_t n = L->ps->fm.size, pos = legacy_magic_at(d, n) + sizeof legacy_magic, used;
    snprintf(what, what_size, "%s", L->path);
    const pk_value *proto = pickle_load(L->arena, what, d + pos, n - pos, &used);
    pos += used;
    if (proto->kind != PK_INT || proto->i != 1001)
        die("'%s': legacy PyTorch file with protocol version %s (1001 is supported)", L->path,
            proto->kind == PK_INT ? "other than 1001" : "missing");
    const pk_value *info = pickle_load(L->arena, what, d + pos, n - pos, &used);
    pos += used;
    if (info->kind == PK_DICT)
        for (int i = 0; i + 1 < info->n; i += 2)
            if (info->items[i]->kind == PK_STR && !strcmp(info->items[i]->s, "little_endian") &&
                !(info->items[i + 1]->kind == PK_BOOL && info->items[i + 1]->i))
                die("'%s': written on a big-endian machine (not supported)", L->path);
    const pk_value *obj = pickle_load(L->arena, what, d + pos, n - pos, &used);
    pos += used;
    long long first_after_obj = pk_arena_count(L->arena);
    const pk_value *keys = pickle_load(L->arena, what, d + pos, n - pos, &used);
    pos += used;
    if (keys->kind != PK_LIST)
        die("'%s': legacy PyTorch file without its storage key list", L->path);
    /* Every storage the object refers to, with its type and size. */
    uint64_t vo, vn;
    for (long long i = 0; i < first_after_obj; i++) {
        pk_value *v = pk_arena_node(L->arena, i);
        if (v->kind == PK_PERSID)
            resolve_pid(L, v->args, &vo, &vn);
    }
    for (int k = 0; k < keys->n; k++) {
        const pk_value *key = keys->items[k];
        if (key->kind != PK_STR)
            die("'%s': storage key %d is not a string", L->path, k);
        storage *s = storage_find(L, key->s);
        if (!s)
            die("'%s': storage '%s' is listed but no tensor uses it (type unknown)", L->path, key->s);
        if (s->bytes)
            die("'%s': storage '%s' is listed twice", L->path, key->s);
        if (n - pos < 8)
            die("'%s': truncated before storage '%s'", L->path, key->s);
        uint64_t count = 0;
        for (int i = 7; i >= 0; i--)
            count = count << 8 | d[pos + (size_t)i];
        pos += 8;
        if (count != s->numel)
            die("'%s': storage '%s' has %" PRIu64 " elements in the file but %" PRIu64 " in the pickle", L->path,
                key->s, count, s->numel);
        uint64_t bytes = count * st_dtype_size(s->dtype);
        if (bytes > n - pos)
            die("'%s': storage '%s' (%" PRIu64 " bytes) runs past the end of the file (truncated?)", L->path, key->s,
                bytes);
        s->bytes = d + pos;
        pos += (size_t)bytes;
    }
    for (int i = 0; i < L->n_storages; i++)
        if (!L->storages[i].bytes)
            die("'%s': storage '%s' is used but not in the file's storage list", L->path, L->storages[i].key);
    if (pos != n)
        die("'%s': %zu unexpected bytes after the last storage", L->path, n - pos);
    return obj;
}

static void loader_free(loader *L)
{
    pk_arena_free(L->arena);
    for (int i = 0; i < L->n_storages; i++)
        free(L->storages[i].key);
    free(L->storages);
    free(L->hash);
    if (L->prefix && L->prefix[0])
        free((char *)L->prefix);
    free(L->name);
    free(L);
}

#ifdef REPAE_FUZZ
/* Fuzz builds: what an open abandoned when die() longjmped out of it. */
static loader *fuzz_loader;

void torch_file_fuzz_release(void)
{
    if (!fuzz_loader)
        return;
    safetensors_close(fuzz_loader->st); /* the partial view: its tensors, metadata, mapping */
    loader_free(fuzz_loader);
    fuzz_loader = NULL;
}
#define FUZZ_TRACK(L) (fuzz_loader = (L))
#else
#define FUZZ_TRACK(L) ((void)0)
#endif

safetensors *torch_file_open_map(const char *path, file_map fm)
{
    torch_kind kind = torch_file_sniff(fm.data, fm.size);
    if (kind == TORCH_NOT)
        die("'%s': not a PyTorch file (neither a ZIP archive nor the legacy magic number)", path);
    safetensors *st = xcalloc(1, sizeof *st);
    pt_state *ps = xcalloc(1, sizeof *ps);
    ps->fm = fm;
    st->path = xstrdup(path);
    st->format = kind == TORCH_ZIP ? "PyTorch zip" : "PyTorch legacy";
    st->ext = ps;
    st->ext_free = free_state;
    st->verify = kind == TORCH_ZIP ? verify_tensor : NULL;
    st->data = fm.data;
    loader *L = xcalloc(1, sizeof *L); /* on the heap: a fuzz build frees it after a die() */
    *L = (loader){.path = st->path, .st = st, .ps = ps, .arena = pk_arena_new(), .prefix = ""};
    FUZZ_TRACK(L);
    L->materialise_limit = 2 * (uint64_t)fm.size + TORCH_MATERIALISE_SLACK;
    char what[1200];
    const pk_value *root = kind == TORCH_ZIP ? open_zip(L, what, sizeof what) : open_legacy(L, what, sizeof what);
    L->max_visits = 4 * pk_arena_count(L->arena) + 1000;
    L->name = xcalloc(4096, 1);
    walk(L, root, L->name, 0, 0);
    safetensors_build_index(st);
    /* The globals, for inspect. */
    size_t glen = 1;
    for (int i = 0; i < pk_arena_n_globals(L->arena); i++)
        glen += strlen(pk_arena_global(L->arena, i)) + 1;
    st->globals = xcalloc(glen, 1);
    for (int i = 0; i < pk_arena_n_globals(L->arena); i++) {
        if (i)
            strcat(st->globals, " ");
        strcat(st->globals, pk_arena_global(L->arena, i));
    }
    FUZZ_TRACK(NULL);
    loader_free(L);
    return st;
}

safetensors *torch_file_open(const char *path)
{
    return torch_file_open_map(path, file_map_open(path));
}
