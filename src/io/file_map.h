/* file_map.h — map a whole regular file read-only, refusing anything else.
 *
 * Weights files are read through a mapping: a reader validates offsets
 * against the mapped size and hands out pointers into it, so a multi-GB
 * checkpoint is paged in only where tensors are actually read.
 *
 * The file is opened with O_NONBLOCK and checked with fstat before any read:
 * a FIFO, a socket, a device or a directory is refused with a clear message
 * (a plain open() of a FIFO would block forever waiting for a writer).
 *
 *   file_map m = file_map_open("w.pt");      // dies naming the file
 *   ... m.data[0 .. m.size) ...
 *   file_map_close(&m);
 */
#ifndef REPAE_FILE_MAP_H
#define REPAE_FILE_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct file_map {
    const uint8_t *data; /* never NULL, even for an empty file */
    size_t size;
    void *map;           /* the mmap (NULL for an empty file) */
} file_map;

file_map file_map_open(const char *path);
void file_map_close(file_map *m);

#ifdef REPAE_FUZZ
/* Fuzz builds only: unmaps every mapping still open (die() longjmps out of a
 * reader there instead of exiting, abandoning its mapping). */
void file_map_release_all(void);
#endif

#endif
