/* safetensors.h — read and write the safetensors format.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the raw little-endian tensor bytes (offsets are relative to the end of
 * the header).  Weights, test fixtures and our checkpoints all use it.
 *
 * Reading maps the file and validates the whole header up front (offsets in
 * range and non-overlapping, byte counts matching dtype × shape, known dtypes),
 * so later accessors can trust it.  Every problem dies with the file name.
 *
 *   safetensors *st = safetensors_open("w.safetensors");
 *   const st_tensor *t = safetensors_find(st, "pos_embed");   // NULL if absent
 *   safetensors_read_f32(st, t, dst);                          // F32/F16/BF16/F64 -> f32
 *   safetensors_close(st);
 *
 * Other weights formats (PyTorch .pt, io/torch_file.h) are presented through
 * the same struct: then `data` is unused, each tensor's `bytes` points at its
 * elements (into the file's mapping, or into a buffer the reader owns), and
 * `verify` checks a tensor's record lazily (CRC) before its first read.
 * Readers of tensor bytes go through safetensors_tensor_bytes.  Names are
 * looked up through a hash index: opening and finding are linear overall,
 * even for 100,000 tensors.
 *
 *   st_writer *w = st_writer_new();
 *   st_writer_add_f32(w, "x", 2, (int64_t[]){2, 3}, data);   // data must outlive save
 *   st_writer_set_metadata(w, "script", "ops_ref.py");
 *   st_writer_save(w, "out.safetensors");                     // atomic
 *   st_writer_free(w);
 */
#ifndef REPAE_SAFETENSORS_H
#define REPAE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range inside the data section (safetensors files) */
    const uint8_t *bytes; /* the numel elements, little-endian (every format) */
} st_tensor;

typedef struct st_meta_entry {
    char *key, *value;
} st_meta_entry;

typedef struct safetensors {
    char *path;
    int n_tensors;
    st_tensor *tensors;     /* in file order of their data offsets */
    int n_meta;
    st_meta_entry *meta;
    const uint8_t *data;    /* start of the data section */
    size_t data_size;
    void *map;              /* whole-file mapping */
    size_t map_size;
    const char *format;     /* "safetensors", "PyTorch zip" or "PyTorch legacy" */
    char *globals;          /* PyTorch files: the pickle's globals, space-separated; else NULL */
    int *index;             /* name hash: tensor index + 1 per slot, 0 = empty */
    size_t index_mask;
    void *ext;              /* another reader's state, freed by ext_free at close */
    void (*ext_free)(void *ext);
    void (*verify)(const struct safetensors *st, const st_tensor *t); /* or NULL */
} safetensors;

/* Opens a safetensors file (only that format: user-given weights go
 * through weights_open, io/weights_file.h, which also reads PyTorch files). */
safetensors *safetensors_open(const char *path);
/* For readers presenting another format: builds the name index after
 * st->tensors is filled; dies naming the file on a duplicated name. */
void safetensors_build_index(safetensors *st);
/* The tensor's bytes, verified first where the format checks lazily. */
const uint8_t *safetensors_tensor_bytes(const safetensors *st, const st_tensor *t);
void safetensors_close(safetensors *st);
const st_tensor *safetensors_find(const safetensors *st, const char *name);
/* Like find, but dies naming the file if the tensor is absent. */
const st_tensor *safetensors_require(const safetensors *st, const char *name);
const char *safetensors_meta(const safetensors *st, const char *key); /* NULL if absent */
/* Integer metadata; dies naming the file and key if it is absent or not an integer. */
long long safetensors_meta_ll(const safetensors *st, const char *key);
/* Float metadata, or `fallback` if absent. */
float safetensors_meta_f32(const safetensors *st, const char *key, float fallback);

/* Converts any float or integer dtype to float32 into dst (numel floats). */
void safetensors_read_f32(const safetensors *st, const st_tensor *t, float *dst);
/* Converts an integer dtype to int64 into dst. */
void safetensors_read_i64(const safetensors *st, const st_tensor *t, int64_t *dst);
/* Finds `name`, checks that its shape equals shape[0..ndim), reads it as f32:
 * the loader of weights.  A mismatch dies naming the tensor and both shapes;
 * so does an integer or BOOL tensor (a weight is F32/F16/BF16/F64: an I8 or
 * BOOL tensor under a weight's name is a wrong file, not something to cast;
 * only a BatchNorm num_batches_tracked may be I64/I32, as torch stores it). */
void safetensors_load_f32(const safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst);
/* Finds `name` and returns a malloc'd f32 copy (any dtype, as read_f32); shape/ndim are reported. */
float *safetensors_get_f32(const safetensors *st, const char *name, int *ndim, int64_t *shape);

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);
/* "[2, 3, 4]" into buf. */
const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t buf_size);

/* Writer: tensors are written in the order they were added. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data);
void st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data);
void st_writer_add_i64(st_writer *w, const char *name, int ndim, const int64_t *shape, const int64_t *data);
void st_writer_set_metadata(st_writer *w, const char *key, const char *value);
void st_writer_set_metadata_ll(st_writer *w, const char *key, long long value);
void st_writer_set_metadata_f32(st_writer *w, const char *key, float value); /* round-trips exactly */
void st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

/* Half-precision conversions (exposed for tests). */
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
