/* The ZIP records both readers share (src/io/zip_records.c), through both
 * readers: zip_archive_open (a mapped .pt) and npz_open (an .npz through a
 * FILE *).  One table of hostile records, each applied to archives of three
 * members in three layouts, and each refused by both readers with the same
 * message:
 *
 *   PLAIN    classic records only (numpy's small files);
 *   Z64      the ZIP64 records written beside real values in the end record
 *            (torch writes every archive so; our writer's force_zip64);
 *   MARKERS  the end record holding only "see ZIP64" markers (a file past
 *            4 GiB or 65,535 members).
 *
 * The same layouts unchanged, with disk 0xFFFF, a 65,535-byte comment and
 * no members at all are read alike by both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/npz.h"
#include "io/zip_archive.h"
#include "test.h"

enum { PLAIN = 1, Z64 = 2, MARKERS = 4, ALL = 7 };
#define N_MEMBERS 3

/* Where each record of an archive starts. */
typedef struct layout {
    size_t end, locator, record; /* locator, record: 0 if absent */
    size_t central[N_MEMBERS], local[N_MEMBERS];
    uint64_t directory, count, dir_size;
} layout;

static void patch(uint8_t *p, int width, uint64_t v)
{
    for (int i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> 8 * i);
}

static uint64_t get(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = width; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static layout layout_of(const uint8_t *f, size_t n)
{
    layout L = {.end = n - 22};
    if (n >= 42 && le32(f + n - 42) == 0x07064b50) {
        L.locator = n - 42;
        L.record = (size_t)le64(f + L.locator + 8);
        L.count = le64(f + L.record + 32), L.dir_size = le64(f + L.record + 40), L.directory = le64(f + L.record + 48);
    } else {
        L.count = le16(f + L.end + 10), L.dir_size = le32(f + L.end + 12), L.directory = le32(f + L.end + 16);
    }
    size_t at = (size_t)L.directory;
    for (uint64_t i = 0; i < L.count && i < N_MEMBERS; i++) {
        L.central[i] = at;
        uint32_t nlen = le16(f + at + 28), xlen = le16(f + at + 30);
        /* our writer's ZIP64 extra: id, length, size, compressed size, offset */
        L.local[i] = le32(f + at + 42) == 0xffffffffu ? (size_t)le64(f + at + 46 + nlen + 20) : le32(f + at + 42);
        at += 46u + nlen + xlen + le16(f + at + 32);
    }
    return L;
}

/* Three stored arrays a, b, c (2, 3 and 4 bytes) in the given layout. */
static uint8_t *base_archive(int variant, size_t *n)
{
    const char *p = test_tmp_path("base.npz");
    npz_writer *w = npz_writer_open(p);
    if (variant != PLAIN)
        npz_writer_force_zip64(w);
    const char *names[N_MEMBERS] = {"a", "b", "c"};
    for (int i = 0; i < N_MEMBERS; i++) {
        npz_writer_begin(w, names[i], NPZ_U8, 1, (int64_t[]){2 + i});
        npz_writer_data(w, "xyzw", (size_t)(2 + i));
        npz_writer_end(w);
    }
    npz_writer_close(w);
    uint8_t *f = (uint8_t *)read_file_all(p, n);
    if (variant == MARKERS) {
        size_t e = *n - 22;
        patch(f + e + 8, 2, 0xffff), patch(f + e + 10, 2, 0xffff);
        patch(f + e + 12, 4, 0xffffffffu), patch(f + e + 16, 4, 0xffffffffu);
    }
    return f;
}


static void open_as_pt(void *path)
{
    size_t n;
    uint8_t *d = (uint8_t *)read_file_all(path, &n);
    zip_archive_close(zip_archive_open(path, d, n));
    free(d);
}

static void open_as_npz(void *path) { npz_close(npz_open(path)); }

/* Both readers list the same members at the same places. */
static void expect_read_alike(const char *what, const char *path, int members)
{
    size_t n;
    uint8_t *d = (uint8_t *)read_file_all(path, &n);
    zip_archive *z = zip_archive_open(path, d, n);
    npz_file *npz = npz_open(path);
    CHECK(z->n == members && npz->n_entries == members, "%s: %d and %d members, want %d", what, z->n,
          npz->n_entries, members);
    for (int i = 0; i < npz->n_entries && i < z->n; i++) {
        const npz_entry *e = &npz->entries[i];
        char name[64];
        snprintf(name, sizeof name, "%s.npy", e->name);
        const zip_member *m = zip_find(z, name);
        CHECK(m && m->data_offset == e->data_offset && m->size == e->size && m->crc == e->crc && e->size == 128u + 2 + i,
              "%s: member %s read differently", what, name);
        if (m)
            CHECK(!memcmp(zip_member_data(z, m, 1) + 128, "xyzw", (size_t)(2 + i)), "%s: member %s's data", what, name);
    }
    npz_close(npz);
    zip_archive_close(z);
    free(d);
}

enum where { END, LOCATOR, RECORD, CENTRAL0, CENTRAL1, CENTRAL2, LOCAL0, LOCAL1, LOCAL2 };
enum op { SET, ADD, XOR };

typedef struct edit {
    enum where where;
    int offset, width; /* width 0: no edit */
    enum op op;
    uint64_t value;
} edit;

typedef struct hostile {
    const char *label;
    int variants;
    edit edits[3];
    const char *problem;
} hostile;

static size_t place(const layout *L, enum where w)
{
    switch (w) {
    case END: return L->end;
    case LOCATOR: return L->locator;
    case RECORD: return L->record;
    case CENTRAL0: case CENTRAL1: case CENTRAL2: return L->central[w - CENTRAL0];
    default: return L->local[w - LOCAL0];
    }
}

#define NAME 46 /* a central entry's name; +5 past it: the ZIP64 extra field of "x.npy" */
#define EXTRA 51

static const hostile cases[] = {
    /* the end record */
    {"end: its disk", ALL, {{END, 4, 2, SET, 1}}, "multi-part ZIP archives are not supported"},
    {"end: the directory's disk", ALL, {{END, 6, 2, SET, 1}}, "multi-part ZIP archives are not supported"},
    {"end: entries on this disk", PLAIN | Z64, {{END, 8, 2, ADD, 0xffff}}, "multi-part ZIP archives are not supported"},
    {"end: a count marker without a locator", PLAIN, {{END, 8, 2, SET, 0xffff}, {END, 10, 2, SET, 0xffff}},
     "ZIP64 archive without a ZIP64 end-of-central-directory locator"},
    {"end: a size marker without a locator", PLAIN, {{END, 12, 4, SET, 0xffffffff}},
     "ZIP64 archive without a ZIP64 end-of-central-directory locator"},
    {"end: an offset marker without a locator", PLAIN, {{END, 16, 4, SET, 0xffffffff}},
     "ZIP64 archive without a ZIP64 end-of-central-directory locator"},
    {"end: the directory past the file", PLAIN, {{END, 16, 4, ADD, 100000}}, "lies outside the archive"},
    {"end: the directory one byte long", PLAIN, {{END, 12, 4, ADD, 1}}, "lies outside the archive"},
    {"end: the directory 11 bytes short", PLAIN, {{END, 12, 4, ADD, 0xfffffff5u}},
     "central directory entry 2 is missing or corrupt"},
    {"end: the directory 5 bytes short", PLAIN, {{END, 12, 4, ADD, 0xfffffffbu}},
     "central directory entry 2 runs past the directory"},
    {"end: more entries than the directory holds", PLAIN, {{END, 8, 2, ADD, 100}, {END, 10, 2, ADD, 100}},
     "cannot hold 103 entries"},
    {"end: one entry fewer", PLAIN, {{END, 8, 2, ADD, 0xffff}, {END, 10, 2, ADD, 0xffff}},
     "the central directory holds 51 bytes after its 2 entries"},
    {"record: one entry fewer", MARKERS, {{RECORD, 24, 8, ADD, ~0ull}, {RECORD, 32, 8, ADD, ~0ull}},
     "the central directory holds 79 bytes after its 2 entries"},
    /* the ZIP64 locator and record */
    {"locator: its disk", Z64 | MARKERS, {{LOCATOR, 4, 4, SET, 1}}, "multi-part ZIP archives are not supported"},
    {"locator: the record past the file", Z64 | MARKERS, {{LOCATOR, 8, 8, ADD, 100000}},
     "ZIP64 end-of-central-directory record is missing or out of range"},
    {"locator: the record overlapping it", Z64 | MARKERS, {{LOCATOR, 8, 8, ADD, 1}},
     "ZIP64 end-of-central-directory record is missing or out of range"},
    {"locator: a record 40 bytes before it", Z64 | MARKERS, {{RECORD, 16, 4, SET, 0x06064b50}, {LOCATOR, 8, 8, ADD, 16}},
     "ZIP64 end-of-central-directory record is missing or out of range"},
    {"locator: lost", MARKERS, {{LOCATOR, 0, 1, XOR, 1}},
     "ZIP64 archive without a ZIP64 end-of-central-directory locator"},
    {"record: its signature", Z64 | MARKERS, {{RECORD, 0, 1, XOR, 1}},
     "ZIP64 end-of-central-directory record is missing or out of range"},
    {"record: its disk", Z64 | MARKERS, {{RECORD, 16, 4, SET, 1}}, "multi-part ZIP archives are not supported"},
    {"record: the directory's disk", Z64 | MARKERS, {{RECORD, 20, 4, SET, 1}}, "multi-part ZIP archives are not supported"},
    {"record: entries on this disk", Z64 | MARKERS, {{RECORD, 24, 8, ADD, 1}}, "multi-part ZIP archives are not supported"},
    {"record: its count unlike the end record's", Z64, {{RECORD, 24, 8, ADD, 1}, {RECORD, 32, 8, ADD, 1}},
     "the end record and the ZIP64 end record disagree"},
    {"record: its size unlike the end record's", Z64, {{RECORD, 40, 8, ADD, 1}},
     "the end record and the ZIP64 end record disagree"},
    {"record: its offset unlike the end record's", Z64, {{RECORD, 48, 8, ADD, 1}},
     "the end record and the ZIP64 end record disagree"},
    {"record: the directory past the file", MARKERS, {{RECORD, 48, 8, ADD, 1ull << 40}}, "lies outside the archive"},
    {"record: the directory into the record", MARKERS, {{RECORD, 40, 8, ADD, 1}}, "lies outside the archive"},
    {"record: more entries than the directory holds", MARKERS, {{RECORD, 24, 8, ADD, 100}, {RECORD, 32, 8, ADD, 100}},
     "cannot hold 103 entries"},
    {"record: 2^31 entries", MARKERS,
     {{RECORD, 24, 8, SET, 1ull << 31}, {RECORD, 32, 8, SET, 1ull << 31}}, "cannot hold 2147483648 entries"},
    /* central directory entries */
    {"central: a signature", ALL, {{CENTRAL1, 0, 1, XOR, 1}}, "central directory entry 1 is missing or corrupt"},
    {"central: the last name past the directory", ALL, {{CENTRAL2, 28, 2, SET, 0xffff}},
     "central directory entry 2 runs past the directory"},
    {"central: the last comment past the directory", ALL, {{CENTRAL2, 32, 2, SET, 1}},
     "central directory entry 2 runs past the directory"},
    {"central: an empty name", ALL, {{CENTRAL1, 28, 2, SET, 0}}, "entry 1 has an empty, NUL-containing or non-UTF-8 name"},
    {"central: a NUL in a name", ALL, {{CENTRAL1, NAME + 1, 1, SET, 0}},
     "entry 1 has an empty, NUL-containing or non-UTF-8 name"},
    {"central: a name not UTF-8", ALL, {{CENTRAL1, NAME, 1, SET, 0xc0}},
     "entry 1 has an empty, NUL-containing or non-UTF-8 name"},
    {"central: encrypted", ALL, {{CENTRAL1, 8, 2, SET, 1}}, "member 'b.npy' is encrypted"},
    {"central: on disk 1", ALL, {{CENTRAL1, 34, 2, SET, 1}}, "member 'b.npy' is on disk 1 of a multi-part archive"},
    {"central: stored, two sizes", PLAIN, {{CENTRAL1, 20, 4, ADD, 1}}, "stored member 'b.npy' has different sizes"},
    {"central: stored, two ZIP64 sizes", Z64 | MARKERS, {{CENTRAL1, EXTRA + 12, 8, ADD, 1}},
     "stored member 'b.npy' has different sizes"},
    {"central: ZIP64 markers without the field", PLAIN, {{CENTRAL1, 20, 4, SET, 0xffffffff}, {CENTRAL1, 24, 4, SET, 0xffffffff}},
     "member 'b.npy' needs a ZIP64 extra field but has none"},
    {"central: a size marker without the field", PLAIN, {{CENTRAL1, 24, 4, SET, 0xffffffff}},
     "member 'b.npy' needs a ZIP64 extra field but has none"},
    {"central: an offset marker without the field", PLAIN, {{CENTRAL1, 42, 4, SET, 0xffffffff}},
     "member 'b.npy' needs a ZIP64 extra field but has none"},
    {"central: the ZIP64 field under another id", Z64 | MARKERS, {{CENTRAL1, EXTRA, 2, SET, 0x5455}},
     "member 'b.npy' needs a ZIP64 extra field but has none"},
    {"central: a short ZIP64 field", Z64 | MARKERS, {{CENTRAL1, EXTRA + 2, 2, SET, 16}},
     "member 'b.npy' has a short ZIP64 extra field (16 bytes, need 24)"},
    {"central: an extra field past the area", Z64 | MARKERS, {{CENTRAL1, EXTRA + 2, 2, SET, 25}},
     "member 'b.npy' has a malformed extra field"},
    {"central: the ZIP64 field after another, empty", Z64 | MARKERS,
     {{CENTRAL1, EXTRA, 4, SET, 0x5455 | 20u << 16}, {CENTRAL1, EXTRA + 24, 4, SET, 1}},
     "member 'b.npy' has a short ZIP64 extra field (0 bytes, need 24)"},
    {"central: a second extra field past the area", Z64 | MARKERS,
     {{CENTRAL1, EXTRA, 4, SET, 0x5455}, {CENTRAL1, EXTRA + 4, 4, SET, 1 | 21u << 16}},
     "member 'b.npy' has a malformed extra field (a 21-byte field"},
    {"central: a local header past the directory", PLAIN, {{CENTRAL1, 42, 4, ADD, 100000}},
     "member 'b.npy' has its local header at"},
    {"central: a local header in the directory", Z64 | MARKERS, {{CENTRAL2, EXTRA + 20, 8, ADD, 160}},
     "member 'c.npy' has its local header at"},
    {"central: a local header 35 bytes before the directory", Z64 | MARKERS, {{CENTRAL2, EXTRA + 20, 8, ADD, 152}},
     "member 'c.npy': no local header at offset"},
    /* local headers */
    {"local: a signature", ALL, {{LOCAL1, 0, 1, XOR, 1}}, "member 'b.npy': no local header at offset"},
    {"local: encrypted", ALL, {{LOCAL1, 6, 2, SET, 1}}, "member 'b.npy' is encrypted"},
    {"local: another method", ALL, {{LOCAL1, 8, 2, SET, 8}},
     "its local header says compression method 8, the central directory 0"},
    {"local: another name", ALL, {{LOCAL1, 30, 1, SET, 'x'}}, "member 'b.npy': its local header names another file"},
    {"local: a shorter name", ALL, {{LOCAL1, 26, 2, SET, 4}}, "member 'b.npy': its local header names another file"},
    {"local: an extra field past the directory", ALL, {{LOCAL2, 28, 2, SET, 0xffff}},
     "member 'c.npy': local header runs past the central directory"},
    /* members' bytes */
    {"the first member grown into the second", PLAIN, {{CENTRAL0, 20, 4, ADD, 1}, {CENTRAL0, 24, 4, ADD, 1}},
     "members 'a.npy' and 'b.npy' overlap"},
    {"the last member grown into the directory", PLAIN, {{CENTRAL2, 20, 4, ADD, 1}, {CENTRAL2, 24, 4, ADD, 1}},
     "member 'c.npy' (133 bytes at offset"},
    {"the last member grown past 2^64", Z64 | MARKERS,
     {{CENTRAL2, EXTRA + 4, 8, SET, ~0ull}, {CENTRAL2, EXTRA + 12, 8, SET, ~0ull}}, "runs past the end of the data area"},
    {"the last member of 2^32 - 1 bytes", Z64 | MARKERS,
     {{CENTRAL2, EXTRA + 4, 8, SET, 0xffffffffu}, {CENTRAL2, EXTRA + 12, 8, SET, 0xffffffffu}},
     "member 'c.npy' (4294967295 bytes at offset"},
    {"one name twice", ALL, {{CENTRAL2, NAME, 1, SET, 'a'}, {LOCAL2, 30, 1, SET, 'a'}}, "member 'a.npy' appears twice"},
    {"two members at one place", PLAIN, {{CENTRAL1, 42, 4, SET, 0}, {CENTRAL1, NAME, 1, SET, 'a'}},
     "members 'a.npy' and 'a.npy' overlap"},
};

static void apply(uint8_t *d, const layout *L, const edit *e)
{
    if (!e->width)
        return;
    uint8_t *p = d + place(L, e->where) + e->offset;
    uint64_t v = get(p, e->width);
    patch(p, e->width, e->op == SET ? e->value : e->op == ADD ? v + e->value : v ^ e->value);
}

static void test_hostile_records_both_readers(void)
{
    static const char *variant_names[] = {NULL, "plain", "zip64", NULL, "markers"};
    int run = 0;
    for (int variant = PLAIN; variant <= MARKERS; variant <<= 1) {
        size_t n;
        uint8_t *base = base_archive(variant, &n), *d = xmalloc(n);
        layout L = layout_of(base, n);
        CHECK(L.count == N_MEMBERS && (variant == PLAIN) == (L.locator == 0), "%s: the base archive's layout",
              variant_names[variant]);
        expect_read_alike(variant_names[variant], test_write_tmp("base.zip", base, n), N_MEMBERS);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (!(cases[i].variants & variant))
                continue;
            memcpy(d, base, n);
            for (int k = 0; k < 3; k++)
                apply(d, &L, &cases[i].edits[k]);
            char file[64], what[160];
            snprintf(file, sizeof file, "case%zu_%d.zip", i, variant);
            const char *p = test_write_tmp(file, d, n);
            snprintf(what, sizeof what, "%s (%s, .pt reader)", cases[i].label, variant_names[variant]);
            expect_die(what, open_as_pt, (void *)p, cases[i].problem);
            snprintf(what, sizeof what, "%s (%s, .npz reader)", cases[i].label, variant_names[variant]);
            expect_die(what, open_as_npz, (void *)p, cases[i].problem);
            run++;
        }
        /* The last member emptied, its data starting where the directory does: a ZIP allows it; it is no
         * .npy file any more. */
        memcpy(d, base, n);
        size_t c_extra = variant == PLAIN ? 0 : 20; /* the local ZIP64 extra field */
        patch(d + L.local[2] + 28, 2, c_extra + 132);
        if (variant == PLAIN)
            patch(d + L.central[2] + 20, 4, 0), patch(d + L.central[2] + 24, 4, 0);
        else
            patch(d + L.central[2] + EXTRA + 4, 8, 0), patch(d + L.central[2] + EXTRA + 12, 8, 0);
        const char *emptied = test_write_tmp("emptied.zip", d, n);
        zip_archive *z = zip_archive_open(emptied, d, n);
        const zip_member *last = zip_find(z, "c.npy");
        CHECK(last && last->size == 0 && last->data_offset == L.directory, "%s: an empty last member at the directory's start",
              variant_names[variant]);
        zip_archive_close(z);
        expect_die("an empty last member (.npz reader)", open_as_npz, (void *)emptied,
                   "member 'c.npy' is too short to be an .npy file");
        /* Disk 0xFFFF means "see the ZIP64 extra field", which a one-part archive need not have. */
        memcpy(d, base, n);
        patch(d + L.central[1] + 34, 2, 0xffff);
        expect_read_alike("disk 0xFFFF", test_write_tmp("disk_ffff.zip", d, n), N_MEMBERS);
        /* The longest comment: the end record is the first byte searched. */
        uint8_t *c = xmalloc(n + 65535);
        memcpy(c, base, n);
        patch(c + L.end + 20, 2, 65535);
        memset(c + n, 'c', 65535);
        expect_read_alike("a 65,535-byte comment", test_write_tmp("comment.zip", c, n + 65535), N_MEMBERS);
        /* One byte more: the comment no longer reaches the end, and no end record is found. */
        c = xrealloc(c, n + 65536);
        c[n + 65535] = 'c';
        const char *p = test_write_tmp("comment_long.zip", c, n + 65536);
        expect_die("a comment one byte short of the file's end (.pt reader)", open_as_pt, (void *)p,
                   "no ZIP end-of-central-directory record");
        expect_die("a comment one byte short of the file's end (.npz reader)", open_as_npz, (void *)p,
                   "no zip end-of-central-directory record");
        free(c), free(d), free(base);
    }
    CHECK(run > 100, "only %d hostile archives", run);
    /* No members at all: the 22-byte end record alone. */
    uint8_t empty[22] = {0x50, 0x4b, 0x05, 0x06};
    expect_read_alike("an empty archive", test_write_tmp("empty.zip", empty, sizeof empty), 0);
    /* A locator and the end record alone: a locator at byte 0 has no room for its record. */
    uint8_t located[42] = {0x50, 0x4b, 0x06, 0x07};
    memcpy(located + 20, empty, sizeof empty);
    const char *p = test_write_tmp("located.zip", located, sizeof located);
    expect_die("a locator at byte 0 (.pt reader)", open_as_pt, (void *)p, "ZIP64 end-of-central-directory record is missing");
    expect_die("a locator at byte 0 (.npz reader)", open_as_npz, (void *)p, "ZIP64 end-of-central-directory record is missing");
    p = test_write_tmp("short.zip", empty, sizeof empty - 1);
    expect_die("21 bytes (.pt reader)", open_as_pt, (void *)p, "too short for a ZIP archive");
    expect_die("21 bytes (.npz reader)", open_as_npz, (void *)p, "no zip end-of-central-directory record");
}

int main(void)
{
    test_tmp_dir("zip_records");
    RUN(test_hostile_records_both_readers);
    return test_summary();
}
