#include "io/zip_archive.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

int zip_archive_sniff(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t sig = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    return sig == ZIP_SIG_LOCAL || sig == ZIP_SIG_END;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const zip_member *)a)->name, ((const zip_member *)b)->name);
}

zip_archive *zip_archive_open(const char *path, const uint8_t *d, size_t size)
{
    zip_listing l;
    if (!zip_list_members(&(zip_source){.path = path, .size = size, .map = d}, &l)) {
        if (size < ZIP_END_SIZE)
            die("'%s': too short for a ZIP archive (%zu bytes; truncated?)", path, size);
        die("'%s': no ZIP end-of-central-directory record in the last 64 KiB (truncated archive?)", path);
    }
    for (int i = 0; i < l.n; i++)
        if (l.members[i].method != 0)
            die("'%s': member '%s' is compressed (method %u); PyTorch files store members uncompressed", path,
                l.members[i].name, l.members[i].method);
    zip_archive *z = xcalloc(1, sizeof *z);
    z->path = path;
    z->data = d;
    z->n = l.n;
    z->members = l.members;
    qsort(z->members, (size_t)z->n, sizeof(zip_member), cmp_name);
    return z;
}

void zip_archive_close(zip_archive *z)
{
    if (!z)
        return;
    zip_listing_free(&(zip_listing){.n = z->n, .members = z->members});
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
