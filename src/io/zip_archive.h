/* zip_archive.h — a read-only ZIP reader over a mapped file (PyTorch .pt).
 *
 * torch.save (>= 1.6) writes a ZIP archive of *stored* (uncompressed)
 * members: <prefix>/data.pkl, <prefix>/data/<key> (one raw storage each),
 * <prefix>/version, ...  Record data is padded to 64 bytes through the local
 * header's extra field, and a big checkpoint (> 4 GB) uses ZIP64.
 *
 * zip_archive_open validates the whole layout up front against the mapped
 * size, by the rules of zip_records.h (the end records, every central
 * entry and local header, no overlaps, unique NUL-free UTF-8 names), and
 * refuses compressed (deflate) members: torch never writes them.
 *
 * CRC-32: zip_member_data(.., check_crc=1) checks a member's CRC the first
 * time it is asked for (then remembers it); the caller decides when.  The
 * torch reader checks data.pkl and small records at once and big tensor
 * records lazily, the first time a tensor of theirs is read, so that opening
 * an 11 GB checkpoint to take its EMA does not read the optimiser states.
 *
 *   zip_archive *z = zip_archive_open("w.pt", map, size);
 *   const zip_member *m = zip_find(z, "archive/data.pkl");
 *   const uint8_t *p = zip_member_data(z, m, 1);   // dies on a CRC mismatch
 *   zip_archive_close(z);                           // the map stays the caller's
 */
#ifndef REPAE_ZIP_ARCHIVE_H
#define REPAE_ZIP_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "io/zip_records.h"

typedef struct zip_archive {
    const char *path;    /* for messages; not owned */
    const uint8_t *data; /* the mapped file; not owned */
    int n;
    zip_member *members; /* sorted by name */
} zip_archive;

/* 1 if the bytes start like a ZIP archive (a local header, or an empty archive). */
int zip_archive_sniff(const uint8_t *data, size_t size);
zip_archive *zip_archive_open(const char *path, const uint8_t *data, size_t size);
void zip_archive_close(zip_archive *z);
/* NULL if absent (binary search). */
const zip_member *zip_find(const zip_archive *z, const char *name);
/* Pointer to the member's bytes (m->size of them); with check_crc, verifies
 * its CRC-32 once (dies naming the file and member on a mismatch). */
const uint8_t *zip_member_data(const zip_archive *z, const zip_member *m, int check_crc);

#endif
