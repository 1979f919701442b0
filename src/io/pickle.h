/* pickle.h — a restricted unpickler: Python pickles (protocols 2-5, and the
 * protocol-1 opcodes they use) into a small value tree, executing nothing.
 *
 * torch.save writes a pickle whose tensors are calls to
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
 * whose storages are persistent ids ("storage", torch.FloatStorage, key,
 * location, numel).  Python's pickle would *call* whatever global a file
 * names (os.system included); this reader calls nothing.  A GLOBAL opcode is
 * accepted only if the name is on a fixed whitelist (collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter /
 * _rebuild_parameter_with_state, torch.Size, the typed storages
 * torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage,
 * argparse.Namespace, _codecs.encode, and bytes() without arguments, which
 * is how protocol 2 writes b""); anything else dies at once with
 * "refusing to load global <module>.<name>", naming the file.  "Calling" a
 * whitelisted global only records a PK_CALL node (function + arguments) for
 * the caller to interpret; OrderedDict() becomes a dict, torch.Size(t) its
 * tuple, _codecs.encode(s, "latin1") bytes, bytes() empty bytes.  Persistent
 * ids become PK_PERSID nodes holding the pid value.
 *
 * Limits (each checked, each a clear error): pickle size, stack depth, mark
 * depth, memo size and indices, total nodes, string lengths (within the
 * buffer), integers (LONG1/LONG4 up to 8 bytes), and nesting depth is
 * bounded where the tree is walked (pk_depth_ok).  Time is linear in the
 * pickle's size.  The tree may share nodes (memo) and even contain cycles
 * (a list appended to itself): walkers must bound their depth.
 *
 *   pk_arena *a = pk_arena_new();
 *   size_t used;
 *   pk_value *v = pickle_load(a, "w.pt: data.pkl", buf, len, &used);
 *   ... v->kind == PK_DICT: v->items[2k] key, v->items[2k+1] value ...
 *   pk_arena_free(a);   // frees every node
 */
#ifndef REPAE_PICKLE_H
#define REPAE_PICKLE_H

#include <stddef.h>
#include <stdint.h>

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_BYTES,
    PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL,  /* a whitelisted global, s = "module.name" */
    PK_CALL,    /* func(args) of a whitelisted function; state from BUILD (or NULL) */
    PK_OBJECT,  /* cls.__new__(cls, *args) via NEWOBJ (argparse.Namespace); state from BUILD */
    PK_PERSID   /* persistent id: args = the pid value */
} pk_kind;

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    int64_t i;            /* PK_INT, PK_BOOL */
    double f;             /* PK_FLOAT */
    char *s;              /* PK_STR (UTF-8, NUL-terminated), PK_BYTES, PK_GLOBAL */
    size_t len;           /* byte length of s */
    pk_value **items;     /* PK_TUPLE / PK_LIST: n items; PK_DICT: n/2 pairs, key at 2k, value at 2k+1 */
    int n, cap;
    pk_value *func;       /* PK_CALL / PK_OBJECT: the global */
    pk_value *args;       /* PK_CALL / PK_OBJECT: the argument tuple; PK_PERSID: the pid */
    pk_value *state;      /* BUILD's argument */
};

/* Upper bounds (exposed for tests). */
#define PK_MAX_BYTES (1ull << 31)  /* a pickle larger than 2 GB is not a weights file's */
#define PK_MAX_STACK (1 << 20)
#define PK_MAX_MARKS (1 << 16)
#define PK_MAX_MEMO (1 << 22)
#define PK_MAX_NODES (1 << 24)
#define PK_MAX_DEPTH 200           /* nesting a walker accepts */

typedef struct pk_arena pk_arena;
pk_arena *pk_arena_new(void);
void pk_arena_free(pk_arena *a);

/* Unpickles one pickle from buf[0..len) (it must end with STOP); *used gets
 * the bytes consumed (the legacy .pt format concatenates pickles).  `what`
 * names the file (and member) in every error.  Globals used are recorded in
 * the arena (pk_arena_globals). */
pk_value *pickle_load(pk_arena *a, const char *what, const uint8_t *buf, size_t len, size_t *used);

/* The distinct globals the pickles loaded through this arena used, in first-use order. */
int pk_arena_n_globals(const pk_arena *a);
const char *pk_arena_global(const pk_arena *a, int i);

/* Every node made so far, in creation order (a flat, recursion-free walk). */
long long pk_arena_count(const pk_arena *a);
pk_value *pk_arena_node(const pk_arena *a, long long i);

/* Convenience for interpreters. */
int pk_is_global(const pk_value *v, const char *name); /* PK_GLOBAL with this name */
const char *pk_kind_name(pk_kind k);

#endif
