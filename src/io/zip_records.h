/* zip_records.h — a ZIP archive's directory, read from hostile bytes
 * (PKWARE APPNOTE 6.3): the end record (and, for ZIP64, its locator and
 * record), every central directory entry with its ZIP64 extra field, and
 * every member's local header.
 *
 * Both of our ZIP readers list their members here: zip_archive.c (a mapped
 * PyTorch .pt) and npz.c (a NumPy .npz through a FILE *: sample batches
 * are many GB).  One set of rules, so one table of hostile records
 * (tests/test_zip_records.c) covers both.  What zip_list_members checks:
 *
 *   - the end record: the last one whose comment reaches the file's end
 *     exactly, within the last 64 KiB + 22 bytes; one disk only;
 *   - ZIP64: a locator right before the end record means the ZIP64 record
 *     holds the directory's place (Python's zipfile, hence numpy, reads it
 *     whenever it is there); an end record with a "see ZIP64" marker but no
 *     locator is refused;
 *   - the directory lies inside the file, before the end records, and its
 *     count of entries fills it exactly;
 *   - each entry: its signature, that it fits the directory, a name that is
 *     non-empty, NUL-free UTF-8, a well-formed extra area holding the ZIP64
 *     fields its 0xFFFFFFFF markers ask for, disk 0, not encrypted, and equal
 *     sizes if stored;
 *   - each local header: inside the data area, its signature, the same name,
 *     flags and method as the directory says; the data after it, before the
 *     directory;
 *   - no two members' bytes overlap, and no name appears twice.
 *
 * Compression methods are the caller's to accept or refuse.  Nothing is
 * read in one piece larger than an entry (at most 46 + 3 × 65,535 bytes),
 * whatever sizes the records claim.
 *
 *   zip_source src = {.path = p, .size = n, .map = bytes};   // or .fp = FILE *
 *   zip_listing L;
 *   if (!zip_list_members(&src, &L)) die("... not a ZIP archive ...");
 *   ... L.members[i].name, .method, .data_offset, .comp_size ...
 *   zip_listing_free(&L);
 */
#ifndef REPAE_ZIP_RECORDS_H
#define REPAE_ZIP_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_END 0x06054b50u
#define ZIP_SIG_END64 0x06064b50u
#define ZIP_SIG_LOCATOR64 0x07064b50u
#define ZIP_LOCAL_SIZE 30
#define ZIP_CENTRAL_SIZE 46
#define ZIP_END_SIZE 22
#define ZIP_END64_SIZE 56
#define ZIP_LOCATOR64_SIZE 20
#define ZIP_MAX_COMMENT 65535

/* The file being read: mapped whole (map), or read through fp. */
typedef struct zip_source {
    const char *path;   /* for messages */
    uint64_t size;      /* the file's bytes */
    const uint8_t *map; /* the whole file, or NULL */
    FILE *fp;           /* used when map is NULL */
} zip_source;

typedef struct zip_member {
    char *name;            /* NUL-terminated copy */
    uint16_t method;       /* 0 stored, 8 deflate; the caller decides what it reads */
    uint32_t crc;
    uint64_t comp_size;    /* bytes in the file */
    uint64_t size;         /* bytes once decompressed */
    uint64_t header_offset; /* its local header */
    uint64_t data_offset;  /* its first data byte */
    int crc_checked;       /* the caller's (zip_archive: CRC checked once) */
} zip_member;

typedef struct zip_listing {
    int n;
    zip_member *members; /* in directory order */
} zip_listing;

/* 0 if the file has no end record (not a ZIP, or cut short: the caller
 * says which, in its own words); dies naming the file on anything else
 * wrong; 1 with every member listed. */
int zip_list_members(const zip_source *src, zip_listing *out);
void zip_listing_free(zip_listing *l);

#endif
