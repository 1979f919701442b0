/* idx.h — the IDX format of MNIST and Fashion-MNIST (optionally gzipped).
 *
 * Header: two zero bytes, a type byte (0x08 = uint8), the number of
 * dimensions, then one big-endian u32 per dimension; then the data.
 * Debian's dataset-fashion-mnist ships them as
 * /usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
 */
#ifndef REPAE_IDX_H
#define REPAE_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct idx_array {
    int ndim;
    uint32_t dims[4];
    size_t count; /* product of dims */
    uint8_t *data;
} idx_array;

/* Reads a uint8 IDX file (plain or .gz).  Dies naming the file on a bad
 * magic, an unsupported type, absurd dimensions or truncated data. */
idx_array idx_read_u8(const char *path);
void idx_free(idx_array *a);

#endif
