#include "io/zip_records.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

typedef struct scratch {
    uint8_t *p;
    size_t cap;
} scratch;

/* Bytes [offset, offset + n) of the file: inside the mapping, or read into
 * s (grown as needed).  Every caller has checked that they lie inside. */
static const uint8_t *bytes_at(const zip_source *src, uint64_t offset, size_t n, scratch *s)
{
    if (src->map)
        return src->map + offset;
    if (s->cap < n) {
        s->p = xrealloc(s->p, n);
        s->cap = n;
    }
    if (fseeko(src->fp, (off_t)offset, SEEK_SET) != 0 || fread(s->p, 1, n, src->fp) != n)
        die("'%s': cannot read %zu bytes at byte %" PRIu64 ": %s", src->path, n, offset,
            ferror(src->fp) ? strerror(errno) : "the file ended early (did it shrink while open?)");
    return s->p;
}

typedef struct directory {
    uint64_t offset, size, count;
} directory;

/* The end record's place, or -1: the last signature whose comment length
 * reaches exactly the end of the file. */
static int64_t find_end_record(const uint8_t *tail, size_t tail_len)
{
    for (size_t at = tail_len - ZIP_END_SIZE + 1; at-- > 0;)
        if (rd32(tail + at) == ZIP_SIG_END && at + ZIP_END_SIZE + rd16(tail + at + 20) == tail_len)
            return (int64_t)at;
    return -1;
}

static int find_directory(const zip_source *src, scratch *s, directory *dir)
{
    const char *path = src->path;
    if (src->size < ZIP_END_SIZE)
        return 0;
    size_t tail_len = src->size < ZIP_END_SIZE + ZIP_MAX_COMMENT ? (size_t)src->size : ZIP_END_SIZE + ZIP_MAX_COMMENT;
    uint64_t tail_at = src->size - tail_len;
    const uint8_t *tail = bytes_at(src, tail_at, tail_len, s);
    int64_t found = find_end_record(tail, tail_len);
    if (found < 0)
        return 0;
    const uint8_t *e = tail + found;
    uint64_t end_at = tail_at + (uint64_t)found;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
        die("'%s': multi-part ZIP archives are not supported", path);
    uint64_t count = rd16(e + 10), size = rd32(e + 12), offset = rd32(e + 16);
    int markers = count == 0xFFFF || size == 0xFFFFFFFFu || offset == 0xFFFFFFFFu;

    uint64_t limit = end_at; /* the directory ends before the end records */
    const uint8_t *loc = end_at >= ZIP_LOCATOR64_SIZE
                             ? bytes_at(src, end_at - ZIP_LOCATOR64_SIZE, ZIP_LOCATOR64_SIZE, s)
                             : NULL;
    if (loc && rd32(loc) == ZIP_SIG_LOCATOR64) {
        uint64_t loc_at = end_at - ZIP_LOCATOR64_SIZE, rec = rd64(loc + 8);
        if (rd32(loc + 4) != 0)
            die("'%s': multi-part ZIP archives are not supported", path);
        if (rec > loc_at || loc_at - rec < ZIP_END64_SIZE)
            die("'%s': the ZIP64 end-of-central-directory record is missing or out of range", path);
        const uint8_t *r = bytes_at(src, rec, ZIP_END64_SIZE, s);
        if (rd32(r) != ZIP_SIG_END64)
            die("'%s': the ZIP64 end-of-central-directory record is missing or out of range", path);
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
            die("'%s': multi-part ZIP archives are not supported", path);
        /* The end record's fields that are not "see ZIP64" markers hold the
         * same values (torch writes both records, always, with real values
         * in each): two records that disagree are two answers. */
        if ((count != 0xFFFF && count != rd64(r + 32)) || (size != 0xFFFFFFFFu && size != rd64(r + 40)) ||
            (offset != 0xFFFFFFFFu && offset != rd64(r + 48)))
            die("'%s': the end record and the ZIP64 end record disagree on the central directory "
                "(corrupt archive)", path);
        count = rd64(r + 32);
        size = rd64(r + 40);
        offset = rd64(r + 48);
        limit = rec;
    } else if (markers) {
        die("'%s': ZIP64 archive without a ZIP64 end-of-central-directory locator (corrupt?)", path);
    }
    if (offset > limit || size > limit - offset)
        die("'%s': the central directory (%" PRIu64 " bytes at %" PRIu64 ") lies outside the archive "
            "(truncated file?)", path, size, offset);
    if (size / ZIP_CENTRAL_SIZE < count)
        die("'%s': the central directory (%" PRIu64 " bytes) cannot hold %" PRIu64 " entries", path, size, count);
    /* Each entry takes 46 bytes of the file at least, so the member table
     * (56 bytes an entry) stays within 1.3 × the file's size. */
    if (count > INT32_MAX)
        die("'%s': %" PRIu64 " members: more than this reader takes", path, count);
    *dir = (directory){offset, size, count};
    return 1;
}

/* The ZIP64 extra field (id 1) of an entry holds, in this order, exactly
 * the values whose 32-bit field is 0xFFFFFFFF.  The extra area is a list of
 * (id, length, bytes); one that runs past its end is corrupt. */
static void read_extra(const char *path, const char *name, const uint8_t *x, size_t len, uint64_t *size,
                       uint64_t *comp_size, uint64_t *offset)
{
    uint64_t *wanted[3] = {size, comp_size, offset};
    int found = 0;
    size_t at = 0;
    while (len - at >= 4) {
        uint16_t id = rd16(x + at), flen = rd16(x + at + 2);
        if (flen > len - at - 4)
            die("'%s': member '%s' has a malformed extra field (a %u-byte field past the entry's end)", path, name,
                flen);
        if (id == 1 && !found) {
            found = 1;
            size_t k = 0, need = 0;
            for (int f = 0; f < 3; f++)
                need += *wanted[f] == 0xFFFFFFFFu ? 8 : 0;
            if (flen < need)
                die("'%s': member '%s' has a short ZIP64 extra field (%u bytes, need %zu)", path, name, flen, need);
            for (int f = 0; f < 3; f++)
                if (*wanted[f] == 0xFFFFFFFFu)
                    *wanted[f] = rd64(x + at + 4 + 8 * k++);
        }
        at += 4u + flen;
    }
    if (!found && (*size == 0xFFFFFFFFu || *comp_size == 0xFFFFFFFFu || *offset == 0xFFFFFFFFu))
        die("'%s': member '%s' needs a ZIP64 extra field but has none", path, name);
}

/* Entry `index` at `at`, the directory ending at `end`; returns where the
 * next one starts. */
static uint64_t read_entry(const zip_source *src, scratch *s, uint64_t at, uint64_t end, uint64_t index,
                           zip_member *m)
{
    const char *path = src->path;
    const uint8_t *p = end - at >= ZIP_CENTRAL_SIZE ? bytes_at(src, at, ZIP_CENTRAL_SIZE, s) : NULL;
    if (!p || rd32(p) != ZIP_SIG_CENTRAL)
        die("'%s': central directory entry %" PRIu64 " is missing or corrupt", path, index);
    uint16_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    size_t len = (size_t)ZIP_CENTRAL_SIZE + nlen + xlen + clen;
    if (end - at < len)
        die("'%s': central directory entry %" PRIu64 " runs past the directory", path, index);
    p = bytes_at(src, at, len, s);
    const char *name = (const char *)p + ZIP_CENTRAL_SIZE;
    if (nlen == 0 || memchr(name, 0, nlen) || !utf8_valid(name, nlen))
        die("'%s': central directory entry %" PRIu64 " has an empty, NUL-containing or non-UTF-8 name", path, index);
    m->name = xmalloc((size_t)nlen + 1);
    memcpy(m->name, name, nlen);
    m->name[nlen] = 0;
    uint16_t flags = rd16(p + 8), disk = rd16(p + 34);
    m->method = rd16(p + 10);
    m->crc = rd32(p + 16);
    m->comp_size = rd32(p + 20);
    m->size = rd32(p + 24);
    m->header_offset = rd32(p + 42);
    read_extra(path, m->name, p + ZIP_CENTRAL_SIZE + nlen, xlen, &m->size, &m->comp_size, &m->header_offset);
    if (flags & 1)
        die("'%s': member '%s' is encrypted", path, m->name);
    /* 0xFFFF: "see the ZIP64 extra field", which we do not read: the disk of
     * a one-part archive's members is 0 (numpy and torch write 0). */
    if (disk != 0 && disk != 0xFFFF)
        die("'%s': member '%s' is on disk %u of a multi-part archive", path, m->name, disk);
    if (m->method == 0 && m->comp_size != m->size)
        die("'%s': stored member '%s' has different sizes (%" PRIu64 " and %" PRIu64 ")", path, m->name,
            m->comp_size, m->size);
    return at + len;
}

/* m's local header: inside the data area [0, end), the same name and
 * method, and where the data start (its own name and extra lengths decide:
 * torch pads its records to 64 bytes through the extra field). */
static void read_local_header(const zip_source *src, scratch *s, zip_member *m, uint64_t end)
{
    const char *path = src->path;
    size_t nlen = strlen(m->name);
    if (m->header_offset > end || end - m->header_offset < ZIP_LOCAL_SIZE + nlen)
        die("'%s': member '%s' has its local header at %" PRIu64 ", outside the archive's data area", path, m->name,
            m->header_offset);
    const uint8_t *h = bytes_at(src, m->header_offset, ZIP_LOCAL_SIZE + nlen, s);
    if (rd32(h) != ZIP_SIG_LOCAL)
        die("'%s': member '%s': no local header at offset %" PRIu64 " (corrupt archive)", path, m->name,
            m->header_offset);
    if (rd16(h + 6) & 1)
        die("'%s': member '%s' is encrypted", path, m->name);
    if (rd16(h + 8) != m->method)
        die("'%s': member '%s': its local header says compression method %u, the central directory %u "
            "(corrupt archive)", path, m->name, rd16(h + 8), m->method);
    if (rd16(h + 26) != nlen || memcmp(h + ZIP_LOCAL_SIZE, m->name, nlen) != 0)
        die("'%s': member '%s': its local header names another file (corrupt archive)", path, m->name);
    uint64_t data = m->header_offset + ZIP_LOCAL_SIZE + nlen + rd16(h + 28);
    if (data > end)
        die("'%s': member '%s': local header runs past the central directory", path, m->name);
    if (m->comp_size > end - data)
        die("'%s': member '%s' (%" PRIu64 " bytes at offset %" PRIu64 ") runs past the end of the data area "
            "(truncated or corrupt archive)", path, m->name, m->comp_size, data);
    m->data_offset = data;
}

static int by_offset(const void *a, const void *b)
{
    const zip_member *x = *(const zip_member *const *)a, *y = *(const zip_member *const *)b;
    return x->header_offset < y->header_offset ? -1 : x->header_offset > y->header_offset;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const zip_member *const *)a)->name, (*(const zip_member *const *)b)->name);
}

/* Overlapping members would let one byte count twice (a "zip bomb" of
 * stored data, or a member hidden inside another); two members of one name
 * would make a lookup's answer arbitrary.  Sorted, so n log n. */
static void check_overlaps_and_names(const char *path, const zip_listing *l)
{
    if (l->n < 2)
        return;
    const zip_member **order = xmalloc((size_t)l->n * sizeof *order);
    for (int i = 0; i < l->n; i++)
        order[i] = &l->members[i];
    qsort(order, (size_t)l->n, sizeof *order, by_offset);
    for (int i = 1; i < l->n; i++)
        if (order[i]->header_offset < order[i - 1]->data_offset + order[i - 1]->comp_size)
            die("'%s': members '%s' and '%s' overlap (corrupt or malicious archive)", path, order[i - 1]->name,
                order[i]->name);
    qsort(order, (size_t)l->n, sizeof *order, by_name);
    for (int i = 1; i < l->n; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0)
            die("'%s': member '%s' appears twice", path, order[i]->name);
    free(order);
}

int zip_list_members(const zip_source *src, zip_listing *out)
{
    scratch s = {0};
    directory dir;
    memset(out, 0, sizeof *out);
    if (!find_directory(src, &s, &dir)) {
        free(s.p);
        return 0;
    }
    out->members = xcalloc(dir.count ? dir.count : 1, sizeof *out->members);
    uint64_t at = dir.offset, end = dir.offset + dir.size;
    for (uint64_t i = 0; i < dir.count; i++) {
        at = read_entry(src, &s, at, end, i, &out->members[i]);
        out->n++;
    }
    /* Python's zipfile reads entries until the directory's bytes run out,
     * whatever the count says: bytes left over would be members that it
     * sees and we would not. */
    if (at != end)
        die("'%s': the central directory holds %" PRIu64 " bytes after its %" PRIu64 " entries (corrupt archive)",
            src->path, end - at, dir.count);
    for (int i = 0; i < out->n; i++)
        read_local_header(src, &s, &out->members[i], dir.offset);
    free(s.p);
    check_overlaps_and_names(src->path, out);
    return 1;
}

void zip_listing_free(zip_listing *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->members[i].name);
    free(l->members);
    memset(l, 0, sizeof *l);
}
