#include "io/pickle.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

/* ---- arena: every node of every pickle loaded through it ------------------ */

#define BLOCK_NODES 256 /* small: most pickles besides data.pkl are tiny */

struct pk_arena {
    pk_value **blocks;
    int n_blocks, cap_blocks, used_in_last;
    long long total;
    char **globals;
    int n_globals;
};

pk_arena *pk_arena_new(void) { return xcalloc(1, sizeof(pk_arena)); }

void pk_arena_free(pk_arena *a)
{
    if (!a)
        return;
    for (int b = 0; b < a->n_blocks; b++) {
        int used = b == a->n_blocks - 1 ? a->used_in_last : BLOCK_NODES;
        for (int i = 0; i < used; i++) {
            free(a->blocks[b][i].s);
            free(a->blocks[b][i].items);
        }
        free(a->blocks[b]);
    }
    for (int i = 0; i < a->n_globals; i++)
        free(a->globals[i]);
    free(a->globals);
    free(a->blocks);
    free(a);
}

long long pk_arena_count(const pk_arena *a) { return a->total; }
pk_value *pk_arena_node(const pk_arena *a, long long i) { return &a->blocks[i / BLOCK_NODES][i % BLOCK_NODES]; }

int pk_arena_n_globals(const pk_arena *a) { return a->n_globals; }
const char *pk_arena_global(const pk_arena *a, int i) { return a->globals[i]; }

static const char *const kind_names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                         "dict", "global", "call", "object", "persistent id"};
const char *pk_kind_name(pk_kind k) { return kind_names[k]; }

int pk_is_global(const pk_value *v, const char *name)
{
    return v && v->kind == PK_GLOBAL && strcmp(v->s, name) == 0;
}

/* ---- the machine ----------------------------------------------------------- */

typedef struct unpickler {
    pk_arena *a;
    const char *what;
    const uint8_t *buf;
    size_t len, pos, op_pos;
    pk_value **stack;
    int sp, stack_cap;
    int *marks;
    int n_marks, marks_cap;
    pk_value **memo;
    size_t memo_len;   /* slots allocated */
    size_t memo_count; /* slots filled: MEMOIZE's index, as Python's len(memo) */
} unpickler;

#define FAIL(u, ...) pk_fail(u, __VA_ARGS__)
static void pk_fail(const unpickler *u, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void pk_fail(const unpickler *u, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die("'%s': pickle byte %zu: %s", u->what, u->op_pos, msg);
}

static pk_value *node(unpickler *u, pk_kind k)
{
    pk_arena *a = u->a;
    if (a->total >= PK_MAX_NODES)
        FAIL(u, "more than %d objects (not a weights file, or a malicious one)", PK_MAX_NODES);
    if (a->n_blocks == 0 || a->used_in_last == BLOCK_NODES) {
        if (a->n_blocks == a->cap_blocks) {
            a->cap_blocks = a->cap_blocks ? 2 * a->cap_blocks : 16;
            a->blocks = xrealloc(a->blocks, (size_t)a->cap_blocks * sizeof *a->blocks);
        }
        a->blocks[a->n_blocks++] = xcalloc(BLOCK_NODES, sizeof(pk_value));
        a->used_in_last = 0;
    }
    pk_value *v = &a->blocks[a->n_blocks - 1][a->used_in_last++];
    a->total++;
    v->kind = k;
    return v;
}

static void push(unpickler *u, pk_value *v)
{
    if (u->sp == u->stack_cap) {
        if (u->stack_cap >= PK_MAX_STACK)
            FAIL(u, "stack deeper than %d entries", PK_MAX_STACK);
        u->stack_cap = u->stack_cap ? 2 * u->stack_cap : 64;
        u->stack = xrealloc(u->stack, (size_t)u->stack_cap * sizeof *u->stack);
    }
    u->stack[u->sp++] = v;
}

static int stack_floor(const unpickler *u) { return u->n_marks ? u->marks[u->n_marks - 1] : 0; }

static pk_value *pop(unpickler *u)
{
    if (u->sp <= stack_floor(u))
        FAIL(u, "stack underflow (corrupt pickle)");
    return u->stack[--u->sp];
}

static pk_value *top(unpickler *u)
{
    if (u->sp <= stack_floor(u))
        FAIL(u, "stack underflow (corrupt pickle)");
    return u->stack[u->sp - 1];
}

/* Pops back to the last MARK; returns the index of the first item above it. */
static int pop_mark(unpickler *u)
{
    if (u->n_marks == 0)
        FAIL(u, "no MARK on the stack (corrupt pickle)");
    return u->marks[--u->n_marks];
}

static const uint8_t *take(unpickler *u, uint64_t n)
{
    if (n > u->len - u->pos)
        FAIL(u, "needs %" PRIu64 " more bytes but only %zu are left (truncated pickle?)", n, u->len - u->pos);
    const uint8_t *p = u->buf + u->pos;
    u->pos += (size_t)n;
    return p;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void append_item(unpickler *u, pk_value *c, pk_value *item)
{
    if (c->n == c->cap) {
        if (c->cap > (1 << 28))
            FAIL(u, "container too large");
        c->cap = c->cap ? 2 * c->cap : 4;
        c->items = xrealloc(c->items, (size_t)c->cap * sizeof *c->items);
    }
    c->items[c->n++] = item;
}

static pk_value *make_seq(unpickler *u, pk_kind k, int from)
{
    pk_value *t = node(u, k);
    for (int i = from; i < u->sp; i++)
        append_item(u, t, u->stack[i]);
    u->sp = from;
    return t;
}

static pk_value *make_string(unpickler *u, uint64_t n, int is_bytes)
{
    const uint8_t *p = take(u, n);
    pk_value *v = node(u, is_bytes ? PK_BYTES : PK_STR);
    if (!is_bytes && !utf8_valid((const char *)p, (size_t)n))
        FAIL(u, "string of %" PRIu64 " bytes is not valid UTF-8", n);
    v->s = xmalloc((size_t)n + 1);
    memcpy(v->s, p, (size_t)n);
    v->s[n] = 0;
    v->len = (size_t)n;
    return v;
}

/* ---- globals: the whitelist ------------------------------------------------ */

static const char *const whitelist[] = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.FloatStorage", "torch.DoubleStorage", "torch.HalfStorage", "torch.BFloat16Storage",
    "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
    "torch.ByteStorage", "torch.BoolStorage",
    "argparse.Namespace",
    "_codecs.encode",
    "__builtin__.bytes", "builtins.bytes", /* bytes() only: protocol 2's b"" */
};

static pk_value *make_global(unpickler *u, const char *module, size_t mlen, const char *name, size_t nlen)
{
    char full[300];
    if (mlen + nlen + 2 > sizeof full)
        FAIL(u, "global name too long");
    memcpy(full, module, mlen);
    full[mlen] = '.';
    memcpy(full + mlen + 1, name, nlen);
    full[mlen + 1 + nlen] = 0;
    int ok = 0;
    for (size_t i = 0; i < sizeof whitelist / sizeof whitelist[0]; i++)
        ok |= strcmp(full, whitelist[i]) == 0;
    if (!ok || memchr(module, 0, mlen) || memchr(name, 0, nlen)) {
        /* Only printable characters in the message. */
        for (char *c = full; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = '?';
        die("'%s': refusing to load global %s: a weights file may only use tensors, storages, containers and "
            "argparse.Namespace (nothing from a file is ever executed)", u->what, full);
    }
    int seen = 0;
    for (int i = 0; i < u->a->n_globals && !seen; i++)
        seen = strcmp(u->a->globals[i], full) == 0;
    if (!seen) {
        u->a->globals = xrealloc(u->a->globals, (size_t)(u->a->n_globals + 1) * sizeof(char *));
        u->a->globals[u->a->n_globals++] = xstrdup(full);
    }
    pk_value *g = node(u, PK_GLOBAL);
    g->s = xstrdup(full);
    g->len = strlen(full);
    return g;
}

/* GLOBAL's text argument: "module\nname\n", each at most 255 bytes. */
static const char *read_line(unpickler *u, size_t *n)
{
    size_t start = u->pos, lim = u->len - start < 256 ? u->len - start : 256;
    const uint8_t *nl = memchr(u->buf + start, '\n', lim);
    if (!nl)
        FAIL(u, "GLOBAL name without a newline within 256 bytes");
    *n = (size_t)(nl - (u->buf + start));
    u->pos = start + *n + 1;
    return (const char *)u->buf + start;
}

/* "Calls" a whitelisted global: builds a value, runs nothing. */
static pk_value *reduce(unpickler *u, pk_value *f, pk_value *args)
{
    if (f->kind != PK_GLOBAL)
        FAIL(u, "REDUCE of a %s, not of a global", pk_kind_name(f->kind));
    if (args->kind != PK_TUPLE)
        FAIL(u, "REDUCE of %s with a %s argument, not a tuple", f->s, pk_kind_name(args->kind));
    if (pk_is_global(f, "collections.OrderedDict")) {
        pk_value *d = node(u, PK_DICT);
        if (args->n == 0)
            return d;
        /* OrderedDict([(k, v), ...]) */
        pk_value *l = args->items[0];
        if (args->n != 1 || (l->kind != PK_LIST && l->kind != PK_TUPLE))
            FAIL(u, "OrderedDict called with unexpected arguments");
        for (int i = 0; i < l->n; i++) {
            pk_value *p = l->items[i];
            if ((p->kind != PK_TUPLE && p->kind != PK_LIST) || p->n != 2)
                FAIL(u, "OrderedDict item %d is not a (key, value) pair", i);
            append_item(u, d, p->items[0]);
            append_item(u, d, p->items[1]);
        }
        return d;
    }
    if (pk_is_global(f, "torch.Size")) {
        if (args->n != 1 || args->items[0]->kind != PK_TUPLE)
            FAIL(u, "torch.Size called with unexpected arguments");
        return args->items[0];
    }
    if (pk_is_global(f, "_codecs.encode")) {
        /* Protocol 2's way of writing bytes: encode(str, "latin1"). */
        if (args->n != 2 || args->items[0]->kind != PK_STR || args->items[1]->kind != PK_STR ||
            (strcmp(args->items[1]->s, "latin1") && strcmp(args->items[1]->s, "latin-1")))
            FAIL(u, "_codecs.encode is only accepted as encode(str, 'latin1')");
        const pk_value *s = args->items[0];
        pk_value *b = node(u, PK_BYTES);
        b->s = xmalloc(s->len + 1);
        size_t n = 0;
        for (size_t i = 0; i < s->len; i++) {
            uint8_t c = (uint8_t)s->s[i];
            if (c < 0x80)
                b->s[n++] = (char)c;
            else if ((c == 0xc2 || c == 0xc3) && i + 1 < s->len)
                b->s[n++] = (char)(((c & 3) << 6) | ((uint8_t)s->s[++i] & 0x3f));
            else
                FAIL(u, "_codecs.encode: character above U+00FF in a latin1 string");
        }
        b->s[n] = 0;
        b->len = n;
        return b;
    }
    if (pk_is_global(f, "__builtin__.bytes") || pk_is_global(f, "builtins.bytes")) {
        /* Protocol 2 writes b"" as bytes(); with an argument bytes() would
         * convert it, which a weights file never needs. */
        if (args->n != 0)
            FAIL(u, "bytes() is only accepted without arguments (protocol 2's empty bytes)");
        pk_value *b = node(u, PK_BYTES);
        b->s = xstrdup("");
        return b;
    }
    if (strncmp(f->s, "torch._utils.", 13) == 0 || pk_is_global(f, "argparse.Namespace")) {
        pk_value *c = node(u, PK_CALL);
        c->func = f;
        c->args = args;
        return c;
    }
    die("'%s': refusing to call %s (only tensor rebuilds and containers may be called)", u->what, f->s);
}

static pk_value *newobj(unpickler *u, pk_value *cls, pk_value *args)
{
    if (!pk_is_global(cls, "argparse.Namespace"))
        die("'%s': refusing to instantiate %s (only argparse.Namespace objects are accepted)", u->what,
            cls->kind == PK_GLOBAL ? cls->s : pk_kind_name(cls->kind));
    if (args->kind != PK_TUPLE)
        FAIL(u, "NEWOBJ arguments are a %s, not a tuple", pk_kind_name(args->kind));
    pk_value *o = node(u, PK_OBJECT);
    o->func = cls;
    o->args = args;
    return o;
}

static void build(unpickler *u, pk_value *obj, pk_value *state)
{
    switch (obj->kind) {
    case PK_DICT: break; /* an OrderedDict's __dict__ (state dicts' _metadata): not needed */
    case PK_CALL:
    case PK_OBJECT: obj->state = state; break;
    default: FAIL(u, "BUILD on a %s", pk_kind_name(obj->kind));
    }
}

static void memo_put(unpickler *u, uint64_t idx)
{
    if (idx >= PK_MAX_MEMO)
        FAIL(u, "memo index %" PRIu64 " is too large (limit %d)", idx, PK_MAX_MEMO);
    if (idx >= u->memo_len) {
        size_t n = u->memo_len ? u->memo_len : 64;
        while (n <= idx)
            n *= 2;
        u->memo = xrealloc(u->memo, n * sizeof *u->memo);
        memset(u->memo + u->memo_len, 0, (n - u->memo_len) * sizeof *u->memo);
        u->memo_len = n;
    }
    if (!u->memo[idx])
        u->memo_count++;
    u->memo[idx] = top(u);
}

static pk_value *memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_len || !u->memo[idx])
        FAIL(u, "memo index %" PRIu64 " was never stored (corrupt pickle)", idx);
    return u->memo[idx];
}

static pk_value *make_int(unpickler *u, int64_t v)
{
    pk_value *x = node(u, PK_INT);
    x->i = v;
    return x;
}

static pk_value *make_long(unpickler *u, uint64_t n)
{
    if (n > 8)
        FAIL(u, "integer of %" PRIu64 " bytes is too large (at most 8 supported)", n);
    const uint8_t *p = take(u, n);
    uint64_t v = le(p, (int)n);
    if (n > 0 && n < 8 && (p[n - 1] & 0x80))
        v |= ~0ull << (8 * n); /* sign-extend */
    int64_t s;
    memcpy(&s, &v, 8);
    return make_int(u, s);
}

static void setitems(unpickler *u, int from)
{
    if ((u->sp - from) % 2)
        FAIL(u, "SETITEMS with an odd number of items");
    if (from == 0)
        FAIL(u, "SETITEMS without a dict below the MARK");
    pk_value *d = u->stack[from - 1];
    if (d->kind != PK_DICT)
        FAIL(u, "SETITEM(S) on a %s, not a dict", pk_kind_name(d->kind));
    for (int i = from; i < u->sp; i++)
        append_item(u, d, u->stack[i]);
    u->sp = from;
}

static void appends(unpickler *u, int from)
{
    if (from == 0)
        FAIL(u, "APPENDS without a list below the MARK");
    pk_value *l = u->stack[from - 1];
    if (l->kind != PK_LIST)
        FAIL(u, "APPEND(S) on a %s, not a list", pk_kind_name(l->kind));
    for (int i = from; i < u->sp; i++)
        append_item(u, l, u->stack[i]);
    u->sp = from;
}

/* One opcode; returns 0 at STOP. */
static int step(unpickler *u)
{
    u->op_pos = u->pos;
    uint8_t op = *take(u, 1);
    pk_value *v, *w;
    switch (op) {
    case 0x80: /* PROTO */ {
        uint8_t p = *take(u, 1);
        if (p < 2 || p > 5)
            FAIL(u, "pickle protocol %u is not supported (2 to 5 are)", p);
        break;
    }
    case 0x95: /* FRAME: a hint only */
        if (le(take(u, 8), 8) > u->len - u->pos)
            FAIL(u, "FRAME longer than the rest of the pickle (truncated?)");
        break;
    case '.': /* STOP */ return 0;
    case '(': /* MARK */
        if (u->n_marks == u->marks_cap) {
            if (u->marks_cap >= PK_MAX_MARKS)
                FAIL(u, "more than %d nested MARKs", PK_MAX_MARKS);
            u->marks_cap = u->marks_cap ? 2 * u->marks_cap : 16;
            u->marks = xrealloc(u->marks, (size_t)u->marks_cap * sizeof *u->marks);
        }
        u->marks[u->n_marks++] = u->sp;
        break;
    case '0': /* POP */ pop(u); break;
    case '1': /* POP_MARK */ u->sp = pop_mark(u); break;
    case '2': /* DUP */ push(u, top(u)); break;
    case '}': push(u, node(u, PK_DICT)); break;
    case ']': push(u, node(u, PK_LIST)); break;
    case ')': push(u, node(u, PK_TUPLE)); break;
    case 't': push(u, make_seq(u, PK_TUPLE, pop_mark(u))); break;
    case 'l': push(u, make_seq(u, PK_LIST, pop_mark(u))); break;
    case 'd': /* DICT */ {
        int from = pop_mark(u);
        if ((u->sp - from) % 2)
            FAIL(u, "DICT with an odd number of items");
        push(u, make_seq(u, PK_DICT, from));
        break;
    }
    case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */ {
        int k = op - 0x84;
        if (u->sp - stack_floor(u) < k)
            FAIL(u, "stack underflow (corrupt pickle)");
        push(u, make_seq(u, PK_TUPLE, u->sp - k));
        break;
    }
    case 'X': push(u, make_string(u, le(take(u, 4), 4), 0)); break;
    case 0x8c: push(u, make_string(u, *take(u, 1), 0)); break;
    case 0x8d: push(u, make_string(u, le(take(u, 8), 8), 0)); break;
    case 'B': push(u, make_string(u, le(take(u, 4), 4), 1)); break;
    case 'C': push(u, make_string(u, *take(u, 1), 1)); break;
    case 0x8e: case 0x96: push(u, make_string(u, le(take(u, 8), 8), 1)); break;
    case 'T': case 'U': /* BINSTRING / SHORT_BINSTRING (Python 2 str): a str if UTF-8, else bytes */ {
        uint64_t n = op == 'T' ? le(take(u, 4), 4) : *take(u, 1);
        if (op == 'T' && n >= 0x80000000u)
            FAIL(u, "negative BINSTRING length");
        if (n > u->len - u->pos)
            FAIL(u, "string runs past the end of the pickle (truncated?)");
        push(u, make_string(u, n, !utf8_valid((const char *)u->buf + u->pos, (size_t)n)));
        break;
    }
    case 'J': push(u, make_int(u, (int32_t)(uint32_t)le(take(u, 4), 4))); break;
    case 'K': push(u, make_int(u, *take(u, 1))); break;
    case 'M': push(u, make_int(u, (int64_t)le(take(u, 2), 2))); break;
    case 0x8a: push(u, make_long(u, *take(u, 1))); break;
    case 0x8b: /* LONG4 */ {
        uint64_t n = le(take(u, 4), 4);
        push(u, make_long(u, n)); /* n >= 2^31 (negative) is "too large" too */
        break;
    }
    case 'G': /* BINFLOAT, big-endian */ {
        const uint8_t *p = take(u, 8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | p[i];
        v = node(u, PK_FLOAT);
        memcpy(&v->f, &bits, 8);
        push(u, v);
        break;
    }
    case 0x88: case 0x89: v = node(u, PK_BOOL); v->i = op == 0x88; push(u, v); break;
    case 'N': push(u, node(u, PK_NONE)); break;
    case 'c': /* GLOBAL */ {
        size_t ml, nl;
        const char *m = read_line(u, &ml);
        const char *n = read_line(u, &nl);
        push(u, make_global(u, m, ml, n, nl));
        break;
    }
    case 0x93: /* STACK_GLOBAL */ {
        w = pop(u);
        v = pop(u);
        if (v->kind != PK_STR || w->kind != PK_STR)
            FAIL(u, "STACK_GLOBAL needs two strings");
        push(u, make_global(u, v->s, v->len, w->s, w->len));
        break;
    }
    case 'R': w = pop(u); v = pop(u); push(u, reduce(u, v, w)); break;
    case 0x81: w = pop(u); v = pop(u); push(u, newobj(u, v, w)); break;
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */ {
        pk_value *kw = pop(u);
        w = pop(u);
        v = pop(u);
        if (kw->kind != PK_DICT || kw->n != 0)
            FAIL(u, "NEWOBJ_EX with keyword arguments");
        push(u, newobj(u, v, w));
        break;
    }
    case 'b': w = pop(u); build(u, top(u), w); break;
    case 'q': memo_put(u, *take(u, 1)); break;
    case 'r': memo_put(u, le(take(u, 4), 4)); break;
    case 0x94: memo_put(u, u->memo_count); break;
    case 'h': push(u, memo_get(u, *take(u, 1))); break;
    case 'j': push(u, memo_get(u, le(take(u, 4), 4))); break;
    case 's': /* SETITEM */
        if (u->sp - stack_floor(u) < 3)
            FAIL(u, "SETITEM needs a dict, a key and a value");
        setitems(u, u->sp - 2);
        break;
    case 'u': setitems(u, pop_mark(u)); break;
    case 'a':
        if (u->sp - stack_floor(u) < 2)
            FAIL(u, "APPEND needs a list and a value");
        appends(u, u->sp - 1);
        break;
    case 'e': appends(u, pop_mark(u)); break;
    case 'Q': /* BINPERSID */
        w = pop(u);
        v = node(u, PK_PERSID);
        v->args = w;
        push(u, v);
        break;
    default: {
        int printable = op >= 0x21 && op < 0x7f; /* shown as the character too */
        FAIL(u, "unsupported opcode 0x%02x%s%.*s%s (not something torch.save writes)", op, printable ? " ('" : "",
             printable, (const char *)&op, printable ? "')" : "");
    }
    }
    return 1;
}

pk_value *pickle_load(pk_arena *a, const char *what, const uint8_t *buf, size_t len, size_t *used)
{
    if (len > PK_MAX_BYTES)
        die("'%s': pickle of %zu bytes is too large", what, len);
    unpickler u = {.a = a, .what = what, .buf = buf, .len = len};
    while (step(&u))
        ;
    if (u.sp < 1)
        FAIL(&u, "STOP with an empty stack");
    pk_value *result = u.stack[u.sp - 1];
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (used)
        *used = u.pos;
    return result;
}
