#include "io/zip_archive.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "core/utf8.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define EOCD_SIZE 22
#define LOC64_SIZE 20
#define EOCD64_SIZE 56
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

int zip_archive_sniff(const uint8_t *data, size_t size)
{
    return size >= 4 && (rd32(data) == SIG_LOCAL || rd32(data) == SIG_EOCD);
}

/* The EOCD record: the last signature whose comment length reaches exactly
 * the end of the file, within the last 64 KiB + 22 bytes. */
static size_t find_eocd(const char *path, const uint8_t *d, size_t size)
{
    if (size < EOCD_SIZE)
        die("'%s': too short for a ZIP archive (%zu bytes; truncated?)", path, size);
    size_t lowest = size > EOCD_SIZE + 65535 ? size - EOCD_SIZE - 65535 : 0;
    for (size_t at = size - EOCD_SIZE + 1; at-- > lowest;)
        if (rd32(d + at) == SIG_EOCD && at + EOCD_SIZE + rd16(d + at + 20) == size)
            return at;
    die("'%s': no ZIP end-of-central-directory record in the last 64 KiB (truncated archive?)", path);
}

/* Reads the ZIP64 extra field (id 1) of a central entry: the fields present
 * are exactly those whose 32-bit value is 0xffffffff, in a fixed order. */
static void read_zip64_extra(const char *path, const char *name, const uint8_t *extra, size_t extra_len,
                             uint64_t *usize, uint64_t *csize, uint64_t *offset)
{
    int need_u = *usize == 0xffffffffu, need_c = *csize == 0xffffffffu, need_o = *offset == 0xffffffffu;
    if (!need_u && !need_c && !need_o)
        return;
    size_t at = 0;
    while (at + 4 <= extra_len) {
        uint16_t id = rd16(extra + at), len = rd16(extra + at + 2);
        if (at + 4 + len > extra_len)
            break;
        if (id == 1) {
            const uint8_t *f = extra + at + 4;
            size_t want = 8u * (size_t)(need_u + need_c + need_o), k = 0;
            if (len < want)
                die("'%s': member '%s' has a short ZIP64 extra field (%u bytes, need %zu)", path, name, len, want);
            if (need_u)
                *usize = rd64(f + 8 * k++);
            if (need_c)
                *csize = rd64(f + 8 * k++);
            if (need_o)
                *offset = rd64(f + 8 * k++);
            return;
        }
        at += 4u + len;
    }
    die("'%s': member '%s' needs a ZIP64 extra field but has none", path, name);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const zip_member *)a)->name, ((const zip_member *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const zip_member *x = *(const zip_member *const *)a, *y = *(const zip_member *const *)b;
    return x->header_offset < y->header_offset ? -1 : x->header_offset > y->header_offset;
}

/* Checks the local header of m: signature, same name, and where the data
 * start (its own name and extra lengths: torch pads through the extra). */
static void read_local_header(const zip_archive *z, zip_member *m, uint64_t cd_offset)
{
    const char *path = z->path;
    if (m->header_offset > cd_offset || cd_offset - m->header_offset < LOCAL_SIZE)
        die("'%s': member '%s' has its local header at %" PRIu64 ", outside the archive's data area", path, m->name,
            m->header_offset);
    const uint8_t *h = z->data + m->header_offset;
    if (rd32(h) != SIG_LOCAL)
        die("'%s': member '%s': no local header at offset %" PRIu64 " (corrupt archive)", path, m->name,
            m->header_offset);
    uint16_t flags = rd16(h + 6), method = rd16(h + 8), nlen = rd16(h + 26), xlen = rd16(h + 28);
    if (flags & 1)
        die("'%s': member '%s' is encrypted", path, m->name);
    if (method != 0)
        die("'%s': member '%s' is compressed (method %u); PyTorch files store members uncompressed", path, m->name,
            method);
    uint64_t data = m->header_offset + LOCAL_SIZE + nlen + xlen;
    if (data > cd_offset)
        die("'%s': member '%s': local header runs past the central directory", path, m->name);
    if (nlen != strlen(m->name) || memcmp(h + LOCAL_SIZE, m->name, nlen) != 0)
        die("'%s': member '%s': its local header names another file (corrupt archive)", path, m->name);
    if (m->size > cd_offset - data)
        die("'%s': member '%s' (%" PRIu64 " bytes at offset %" PRIu64 ") runs past the end of the data area "
            "(truncated or corrupt archive)", path, m->name, m->size, data);
    m->data_offset = data;
}

static void read_central_directory(zip_archive *z, uint64_t cd_offset, uint64_t cd_size, uint64_t count)
{
    const char *path = z->path;
    if (cd_size / CENTRAL_SIZE < count)
        die("'%s': the central directory (%" PRIu64 " bytes) cannot hold %" PRIu64 " entries", path, cd_size, count);
    z->members = xcalloc(count ? count : 1, sizeof(zip_member));
    const uint8_t *p = z->data + cd_offset, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < CENTRAL_SIZE || rd32(p) != SIG_CENTRAL)
            die("'%s': central directory entry %" PRIu64 " is missing or corrupt", path, i);
        uint16_t flags = rd16(p + 8), method = rd16(p + 10);
        uint32_t crc = rd32(p + 16);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), offset = rd32(p + 42);
        uint16_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32), disk = rd16(p + 34);
        if ((size_t)(end - p) - CENTRAL_SIZE < (size_t)nlen + xlen + clen)
            die("'%s': central directory entry %" PRIu64 " runs past the directory", path, i);
        const char *nm = (const char *)p + CENTRAL_SIZE;
        if (nlen == 0 || memchr(nm, 0, nlen) || !utf8_valid(nm, nlen))
            die("'%s': central directory entry %" PRIu64 " has an empty, NUL-containing or non-UTF-8 name", path, i);
        zip_member *m = &z->members[z->n++];
        m->name = xmalloc((size_t)nlen + 1);
        memcpy(m->name, nm, nlen);
        m->name[nlen] = 0;
        read_zip64_extra(path, m->name, p + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &offset);
        if (flags & 1)
            die("'%s': member '%s' is encrypted", path, m->name);
        if (method != 0)
            die("'%s': member '%s' is compressed (method %u); PyTorch files store members uncompressed", path,
                m->name, method);
        if (disk != 0 && disk != 0xffff)
            die("'%s': member '%s' is on disk %u of a multi-part archive", path, m->name, disk);
        if (csize != usize)
            die("'%s': stored member '%s' has different sizes (%" PRIu64 " and %" PRIu64 ")", path, m->name, csize,
                usize);
        m->size = usize;
        m->crc = crc;
        m->header_offset = offset;
        p += CENTRAL_SIZE + nlen + xlen + clen;
    }
}

zip_archive *zip_archive_open(const char *path, const uint8_t *d, size_t size)
{
    size_t eocd = find_eocd(path, d, size);
    uint64_t count = rd16(d + eocd + 10), cd_size = rd32(d + eocd + 12), cd_offset = rd32(d + eocd + 16);
    if (rd16(d + eocd + 4) != 0 || rd16(d + eocd + 6) != 0 || rd16(d + eocd + 8) != rd16(d + eocd + 10))
        die("'%s': multi-part ZIP archives are not supported", path);
    uint64_t cd_limit = eocd; /* the central directory ends before the EOCD (or the ZIP64 record) */
    if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
        if (eocd < LOC64_SIZE || rd32(d + eocd - LOC64_SIZE) != SIG_LOC64)
            die("'%s': ZIP64 archive without a ZIP64 end-of-central-directory locator (corrupt?)", path);
        uint64_t rec = rd64(d + eocd - LOC64_SIZE + 8);
        if (rec > eocd - LOC64_SIZE || eocd - LOC64_SIZE - rec < EOCD64_SIZE || rd32(d + rec) != SIG_EOCD64)
            die("'%s': the ZIP64 end-of-central-directory record is missing or out of range", path);
        if (rd32(d + rec + 16) != 0 || rd32(d + rec + 20) != 0 || rd64(d + rec + 24) != rd64(d + rec + 32))
            die("'%s': multi-part ZIP archives are not supported", path);
        count = rd64(d + rec + 32);
        cd_size = rd64(d + rec + 40);
        cd_offset = rd64(d + rec + 48);
        cd_limit = rec;
    }
    if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
        die("'%s': the central directory (%" PRIu64 " bytes at %" PRIu64 ") lies outside the archive "
            "(truncated file?)", path, cd_size, cd_offset);
    zip_archive *z = xcalloc(1, sizeof *z);
    z->path = path;
    z->data = d;
    read_central_directory(z, cd_offset, cd_size, count);

    /* Local headers, then: members in offset order may not overlap. */
    zip_member **by_off = xmalloc((size_t)(z->n ? z->n : 1) * sizeof *by_off);
    for (int i = 0; i < z->n; i++) {
        read_local_header(z, &z->members[i], cd_offset);
        by_off[i] = &z->members[i];
    }
    qsort(by_off, (size_t)z->n, sizeof *by_off, cmp_offset);
    for (int i = 1; i < z->n; i++)
        if (by_off[i]->header_offset < by_off[i - 1]->data_offset + by_off[i - 1]->size)
            die("'%s': members '%s' and '%s' overlap (corrupt or malicious archive)", path, by_off[i - 1]->name,
                by_off[i]->name);
    free(by_off);
    qsort(z->members, (size_t)z->n, sizeof(zip_member), cmp_name);
    for (int i = 1; i < z->n; i++)
        if (strcmp(z->members[i].name, z->members[i - 1].name) == 0)
            die("'%s': member '%s' appears twice", path, z->members[i].name);
    return z;
}

void zip_archive_close(zip_archive *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n; i++)
        free(z->members[i].name);
    free(z->members);
    free(z);
}

const zip_member *zip_find(const zip_archive *z, const char *name)
{
    zip_member key = {.name = (char *)name};
    return z->n ? bsearch(&key, z->members, (size_t)z->n, sizeof(zip_member), cmp_name) : NULL;
}

const uint8_t *zip_member_data(const zip_archive *z, const zip_member *m, int check_crc)
{
    const uint8_t *p = z->data + m->data_offset;
    if (check_crc && !m->crc_checked) {
        uLong crc = crc32_z(0L, Z_NULL, 0);
        crc = crc32_z(crc, p, (z_size_t)m->size);
        if ((uint32_t)crc != m->crc)
            die("'%s': member '%s' fails its CRC-32 check (stored %08x, computed %08x): the file is corrupt", z->path,
                m->name, m->crc, (unsigned)crc);
        ((zip_member *)m)->crc_checked = 1; /* a cache, not a change of the archive */
    }
    return p;
}
