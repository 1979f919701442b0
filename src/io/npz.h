/* npz.h — NumPy .npz archives: the ADM evaluation suite's sample batches
 * (`arr_0`: uint8 [N, H, W, 3]) and reference statistics (`mu`, `sigma`).
 *
 * An .npz is a zip archive with one member "<name>.npy" per array; each
 * member is an .npy file: "\x93NUMPY", version, header length, a Python
 * dict literal {'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W, 3), }
 * padded to 64 bytes, then the raw C-order little-endian data.
 *
 * Writing does what numpy.savez does: stored (uncompressed) members, .npy
 * format 1.0, CRC-32 of each member, central directory and end record, and
 * ZIP64 records once a size or offset passes 2^31 − 1 (Python's zipfile
 * limit; 50,000 × 256 × 256 × 3 = 9.8 GB needs them).  Data is streamed, so
 * 50,000 images never need to be in memory at once.  The file appears
 * atomically when the writer is closed.
 *
 *   npz_writer *w = npz_writer_open("samples.npz");
 *   npz_writer_begin(w, "arr_0", NPZ_U8, 4, (int64_t[]){N, H, W, 3});
 *   for (...) npz_writer_data(w, batch, bytes);     // any chunking
 *   npz_writer_end(w);                             // checks the byte count
 *   npz_writer_close(w);
 *   npz_save(path, "arr_0", NPZ_U8, 4, shape, data);   // the same in one call
 *
 * Reading accepts stored or deflated members (np.savez / np.savez_compressed),
 * ZIP64, .npy versions 1–3, dtypes uint8, float32 and float64 (C order,
 * little-endian).  Every malformed input dies with the file's name.
 *
 *   npz_file *z = npz_open("VIRTUAL_imagenet256_labeled.npz");
 *   const npz_entry *e = npz_require(z, "mu", NPZ_F64);   // dies if absent / other dtype
 *   double *mu = xmalloc(e->nbytes); npz_read(z, e, mu);  // whole array, CRC checked
 *   npz_read_rows(z, e, first, count, dst);   // rows of the first axis (stored members)
 *   npz_close(z);
 */
#ifndef REPAE_NPZ_H
#define REPAE_NPZ_H

#include <stddef.h>
#include <stdint.h>

#define NPZ_MAX_DIMS 8

typedef enum npz_dtype { NPZ_U8, NPZ_F32, NPZ_F64, NPZ_OTHER } npz_dtype;

const char *npz_dtype_name(npz_dtype d); /* "uint8", "float32", "float64", "unsupported" */
size_t npz_dtype_size(npz_dtype d);

/* ---- writing ---- */

typedef struct npz_writer npz_writer;
npz_writer *npz_writer_open(const char *path);
/* Writes ZIP64 records for every member even when small (numpy's
 * force_zip64): lets tests cover the large-file layout without 4 GB files. */
void npz_writer_force_zip64(npz_writer *w);
/* Starts member "<name>.npy" (name: letters, digits, '_', '-', '.'). */
void npz_writer_begin(npz_writer *w, const char *name, npz_dtype dtype, int ndim, const int64_t *shape);
void npz_writer_data(npz_writer *w, const void *data, size_t bytes);
void npz_writer_end(npz_writer *w);
/* Central directory and end record; renames the file into place; frees w. */
void npz_writer_close(npz_writer *w);
void npz_save(const char *path, const char *name, npz_dtype dtype, int ndim, const int64_t *shape, const void *data);

/* ---- reading ---- */

typedef struct npz_entry {
    char *name;               /* without ".npy" */
    npz_dtype dtype;
    char descr[16];           /* the header's descr, e.g. "<f4" */
    int fortran_order;        /* 1: column-major, which we do not read */
    int ndim;
    int64_t shape[NPZ_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;          /* numel × element size */
    /* where the member lives (internal) */
    int method;               /* 0 stored, 8 deflated */
    uint32_t crc;
    uint64_t comp_size, size; /* member sizes (.npy header included) */
    uint64_t data_offset;     /* file offset of the member's bytes */
    uint64_t header_size;     /* .npy header bytes before the array data */
} npz_entry;

typedef struct npz_file {
    char *path;
    void *fp;                 /* FILE * */
    uint64_t file_size;
    int n_entries;
    npz_entry *entries;       /* the .npy members, in directory order */
} npz_file;

npz_file *npz_open(const char *path);
void npz_close(npz_file *z);
const npz_entry *npz_find(const npz_file *z, const char *name); /* NULL if absent */
/* Dies naming the file (and the arrays it has) if `name` is absent, or if
 * its dtype is not `dtype` (NPZ_OTHER: any supported dtype). */
const npz_entry *npz_require(const npz_file *z, const char *name, npz_dtype dtype);
/* The whole array (e->nbytes bytes) into dst; verifies the member's CRC-32. */
void npz_read(npz_file *z, const npz_entry *e, void *dst);
/* Rows [first, first + count) of the first axis into dst, for stored
 * members (np.savez), without reading the rest; no CRC (it covers the
 * whole member).  Deflated members die with a hint to use npz_read. */
void npz_read_rows(npz_file *z, const npz_entry *e, int64_t first, int64_t count, void *dst);

/* One-call helpers: malloc'd copy converted to float32 / float64 from any
 * supported dtype; shape/ndim reported if non-NULL. */
float *npz_load_f32(const char *path, const char *name, int *ndim, int64_t *shape);
double *npz_load_f64(const char *path, const char *name, int *ndim, int64_t *shape);

#endif
