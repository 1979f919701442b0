#include "io/idx.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"

/* zlib's message names the stream "<fd:N>" (it was opened with gzdopen);
 * the path is in ours already.  Corrupt compressed data is said as such:
 * zlib decodes ahead, so the damage may lie past the part being read. */
static void die_read_error(gzFile f, const char *path, const char *what) __attribute__((noreturn));
static void die_read_error(gzFile f, const char *path, const char *what)
{
    int err;
    const char *msg = gzerror(f, &err);
    const char *sep = strstr(msg, ": ");
    if (strncmp(msg, "<fd:", 4) == 0 && sep)
        msg = sep + 2;
    die("'%s': cannot read %s: %s%s", path, what, err == Z_DATA_ERROR ? "corrupt gzip data: " : "", msg);
}

static void read_exact(gzFile f, void *buf, size_t n, const char *path, const char *what)
{
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
        int got = gzread(f, (char *)buf + done, chunk);
        if (got < 0)
            die_read_error(f, path, what);
        if (got == 0)
            die("'%s': file is truncated while reading %s (%zu of %zu bytes)", path, what, done, n);
        done += (size_t)got;
    }
}

idx_array idx_read_u8(const char *path)
{
    if (access(path, F_OK) != 0)
        die("cannot open '%s': no such file (Fashion-MNIST comes with Debian's dataset-fashion-mnist package)",
            path);
    int fd = xopen_read(path);
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        die("cannot open '%s': out of memory for the zlib stream", path);
    }
    uint8_t magic[4];
    read_exact(f, magic, 4, path, "the IDX header");
    if (magic[0] != 0 || magic[1] != 0)
        die("'%s': not an IDX file (bad magic %02x %02x)", path, magic[0], magic[1]);
    if (magic[2] != 0x08)
        die("'%s': IDX element type 0x%02x is not supported (only uint8, 0x08)", path, magic[2]);
    idx_array a = {0};
    a.ndim = magic[3];
    if (a.ndim < 1 || a.ndim > 4)
        die("'%s': IDX file has %d dimensions (1 to 4 supported)", path, a.ndim);
    a.count = 1;
    for (int i = 0; i < a.ndim; i++) {
        uint8_t b[4];
        read_exact(f, b, 4, path, "the IDX dimensions");
        a.dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (a.dims[i] == 0 || a.dims[i] > (1u << 28))
            die("'%s': implausible IDX dimension %u", path, a.dims[i]);
        a.count *= a.dims[i];
        if (a.count > ((size_t)1 << 34))
            die("'%s': IDX data would be larger than 16 GiB", path);
    }
    /* The header's size is a claim: grow the buffer with the data actually
     * read (doubling from 1 MiB), so a 16-byte file declaring gigabytes
     * fails as truncated instead of allocating them first. */
    size_t have = 0, cap = a.count < ((size_t)1 << 20) ? a.count : (size_t)1 << 20;
    a.data = xmalloc(cap);
    while (have < a.count) {
        if (have == cap) {
            cap = cap * 2 < a.count ? cap * 2 : a.count;
            a.data = xrealloc(a.data, cap);
        }
        read_exact(f, a.data + have, cap - have, path, "the IDX data");
        have = cap;
    }
    /* The header fixes the size: more bytes mean a wrong header or two files
     * concatenated, not data to ignore. */
    char extra;
    int got = gzread(f, &extra, 1);
    if (got < 0)
        die_read_error(f, path, "past the IDX data");
    if (got > 0)
        die("'%s': unexpected bytes after the %zu bytes of IDX data the header declares (corrupt or wrong header?)",
            path, a.count);
    gzclose(f);
    return a;
}

void idx_free(idx_array *a)
{
    free(a->data);
    a->data = NULL;
}
