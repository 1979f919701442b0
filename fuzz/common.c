/* The die() trap and resource tracking shared by the fuzz harnesses (see
 * common.h).  The __wrap_X functions replace X for every call from the code
 * linked into a fuzz binary (GNU ld / lld --wrap); __real_X is the original. */
#include "common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__real_aligned_alloc(size_t a, size_t n);
char *__real_strdup(const char *s);
FILE *__real_fopen(const char *path, const char *mode);
FILE *__real_fdopen(int fd, const char *mode);
int __real_fclose(FILE *fp);
int __real_open(const char *path, int flags, ...);
int __real_close(int fd);
gzFile __real_gzdopen(int fd, const char *mode);
gzFile __real_gzopen(const char *path, const char *mode);
int __real_gzclose(gzFile f);
DIR *__real_opendir(const char *path);
int __real_closedir(DIR *d);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
ssize_t __real_getline(char **line, size_t *n, FILE *fp);
ssize_t __real___getdelim(char **line, size_t *n, int delim, FILE *fp);
void __real_exit(int status) __attribute__((noreturn));

/* ---- the resource table: open addressing, cleared after every run ---- */

enum { R_MEM = 1, R_FILE, R_FD, R_GZ, R_DIR, R_MAP };

typedef struct res {
    uintptr_t key; /* pointer or descriptor */
    size_t len;    /* mapping length */
    int kind;      /* 0: empty, -1: deleted */
} res;

static res *table;
static size_t cap, used;  /* used counts live + deleted slots */
static size_t *touched;   /* slots used since the last release: release and clear visit only these */
static int tracking;

static size_t slot_of(uintptr_t key, int kind)
{
    uint64_t h = ((uint64_t)key ^ (uint64_t)kind << 59) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static void table_grow(void)
{
    size_t old_cap = cap;
    res *old = table;
    cap = cap ? 2 * cap : 4096;
    table = __real_calloc(cap, sizeof *table);
    if (!table)
        abort();
    used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].kind > 0) {
            size_t k = slot_of(old[i].key, old[i].kind);
            while (table[k].kind != 0)
                k = (k + 1) & (cap - 1);
            table[k] = old[i];
            used++;
        }
    __real_free(old);
    __real_free(touched);
    touched = __real_malloc(cap * sizeof *touched);
    if (!touched)
        abort();
    used = 0;
    for (size_t i = 0; i < cap; i++)
        if (table[i].kind > 0)
            touched[used++] = i;
}

static void track(uintptr_t key, int kind, size_t len)
{
    if (!tracking)
        return;
    if ((used + 1) * 2 > cap)
        table_grow();
    size_t k = slot_of(key, kind);
    while (table[k].kind > 0)
        k = (k + 1) & (cap - 1);
    if (table[k].kind == 0)
        touched[used++] = k;
    table[k] = (res){key, len, kind};
}

/* Removes the entry if present (it may come from outside a run: untracked). */
static void untrack(uintptr_t key, int kind)
{
    if (!cap)
        return;
    for (size_t k = slot_of(key, kind); table[k].kind != 0; k = (k + 1) & (cap - 1))
        if (table[k].kind == kind && table[k].key == key) {
            table[k].kind = -1;
            return;
        }
}

/* Releases everything still in the table, real functions only. */
static size_t release_all(void)
{
    size_t n = 0;
    int order[] = {R_GZ, R_FILE, R_DIR, R_MAP, R_FD, R_MEM};
    for (int o = 0; o < 6; o++)
        for (size_t t = 0; t < used; t++) {
            res *r = &table[touched[t]];
            if (r->kind != order[o])
                continue;
            n++;
            switch (r->kind) {
            case R_GZ: __real_gzclose((gzFile)r->key); break;
            case R_FILE: __real_fclose((FILE *)r->key); break;
            case R_DIR: __real_closedir((DIR *)r->key); break;
            case R_MAP: __real_munmap((void *)r->key, r->len); break;
            case R_FD: __real_close((int)r->key); break;
            case R_MEM: __real_free((void *)r->key); break;
            }
        }
    for (size_t t = 0; t < used; t++)
        table[touched[t]].kind = 0;
    used = 0;
    return n;
}

/* ---- wraps ---- */

void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    if (p)
        track((uintptr_t)p, R_MEM, 0);
    return p;
}

void *__wrap_calloc(size_t n, size_t s)
{
    void *p = __real_calloc(n, s);
    if (p)
        track((uintptr_t)p, R_MEM, 0);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    void *q = __real_realloc(p, n);
    if (q || n == 0) {
        if (p)
            untrack((uintptr_t)p, R_MEM);
        if (q)
            track((uintptr_t)q, R_MEM, 0);
    }
    return q;
}

void __wrap_free(void *p)
{
    if (p)
        untrack((uintptr_t)p, R_MEM);
    __real_free(p);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    void *p = __real_aligned_alloc(a, n);
    if (p)
        track((uintptr_t)p, R_MEM, 0);
    return p;
}

char *__wrap_strdup(const char *s)
{
    char *p = __real_strdup(s);
    if (p)
        track((uintptr_t)p, R_MEM, 0);
    return p;
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
    FILE *f = __real_fopen(path, mode);
    if (f)
        track((uintptr_t)f, R_FILE, 0);
    return f;
}

FILE *__wrap_fdopen(int fd, const char *mode)
{
    FILE *f = __real_fdopen(fd, mode);
    if (f) { /* the FILE owns the descriptor now */
        untrack((uintptr_t)fd, R_FD);
        track((uintptr_t)f, R_FILE, 0);
    }
    return f;
}

int __wrap_fclose(FILE *f)
{
    untrack((uintptr_t)f, R_FILE);
    return __real_fclose(f);
}

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    int fd = __real_open(path, flags, mode);
    if (fd >= 0)
        track((uintptr_t)fd, R_FD, 0);
    return fd;
}

int __wrap_close(int fd)
{
    untrack((uintptr_t)fd, R_FD);
    return __real_close(fd);
}

gzFile __wrap_gzdopen(int fd, const char *mode)
{
    gzFile g = __real_gzdopen(fd, mode);
    if (g) {
        untrack((uintptr_t)fd, R_FD);
        track((uintptr_t)g, R_GZ, 0);
    }
    return g;
}

gzFile __wrap_gzopen(const char *path, const char *mode)
{
    gzFile g = __real_gzopen(path, mode);
    if (g)
        track((uintptr_t)g, R_GZ, 0);
    return g;
}

int __wrap_gzclose(gzFile g)
{
    untrack((uintptr_t)g, R_GZ);
    return __real_gzclose(g);
}

DIR *__wrap_opendir(const char *path)
{
    DIR *d = __real_opendir(path);
    if (d)
        track((uintptr_t)d, R_DIR, 0);
    return d;
}

int __wrap_closedir(DIR *d)
{
    untrack((uintptr_t)d, R_DIR);
    return __real_closedir(d);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = __real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        track((uintptr_t)p, R_MAP, len);
    return p;
}

int __wrap_munmap(void *addr, size_t len)
{
    untrack((uintptr_t)addr, R_MAP);
    return __real_munmap(addr, len);
}

ssize_t __wrap_getline(char **line, size_t *n, FILE *fp)
{
    char *old = *line;
    ssize_t r = __real_getline(line, n, fp);
    if (*line != old) { /* libc (re)allocated it internally */
        if (old)
            untrack((uintptr_t)old, R_MEM);
        track((uintptr_t)*line, R_MEM, 0);
    }
    return r;
}

/* glibc's optimised stdio.h inlines getline as a call to __getdelim. */
ssize_t __wrap___getdelim(char **line, size_t *n, int delim, FILE *fp)
{
    char *old = *line;
    ssize_t r = __real___getdelim(line, n, delim, fp);
    if (*line != old) {
        if (old)
            untrack((uintptr_t)old, R_MEM);
        track((uintptr_t)*line, R_MEM, 0);
    }
    return r;
}

/* ---- the die() trap ---- */

static sigjmp_buf jump;
static int in_run, verbose = -1;

static void on_die(const char *message)
{
    if (verbose)
        fprintf(stderr, "fuzz: die: %s\n", message);
    siglongjmp(jump, 1);
}

void __wrap_exit(int status)
{
    if (in_run) { /* e.g. options_parse's --help */
        if (verbose)
            fprintf(stderr, "fuzz: exit(%d)\n", status);
        siglongjmp(jump, 1);
    }
    __real_exit(status);
}

static void fuzz_setup(void)
{
    if (verbose >= 0)
        return;
    const char *v = getenv("FUZZ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    die_fuzz_handler = on_die;
    /* cJSON allocates inside its shared library: route it through the wraps. */
    cJSON_Hooks hooks = {__wrap_malloc, __wrap_free};
    cJSON_InitHooks(&hooks);
    setenv("OMP_NUM_THREADS", "1", 0);
}

int fuzz_run(void (*fn)(void *ctx), void *ctx)
{
    fuzz_setup();
    volatile int died = 0;
    tracking = 1;
    in_run = 1;
    if (sigsetjmp(jump, 0) == 0)
        fn(ctx);
    else
        died = 1;
    in_run = 0;
    tracking = 0;
    size_t left = release_all();
    /* Without a die, the code under test must have released everything. */
    if (!died && left && getenv("FUZZ_STRICT_LEAKS")) {
        fprintf(stderr, "fuzz: %zu resources left after a successful run\n", left);
        abort();
    }
    return died;
}

const char *fuzz_write_input(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("repae-fuzz-input", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz input");
        abort();
    }
    return path;
}

const char *fuzz_scratch_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/repae_fuzz_XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    return dir;
}
