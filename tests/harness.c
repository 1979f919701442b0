#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int tests_passed, tests_failed;
int test_checks_failed_in_current;
static const char *current_test = "?";
/* Checks made outside any RUN (in main, or in a program's second mode such
 * as test_mpi's rank side) count too: test_summary fails on them. */
static int in_test, checks_failed_outside;

void check_at(const char *file, int line, int ok, const char *fmt, ...)
{
    if (ok)
        return;
    test_checks_failed_in_current++;
    if (!in_test)
        checks_failed_outside++;
    va_list ap;
    fprintf(stderr, "  FAIL %s (%s:%d): ", current_test, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void test_run(const char *name, void (*fn)(void))
{
    current_test = name;
    test_checks_failed_in_current = 0;
    in_test = 1;
    fn();
    in_test = 0;
    if (test_checks_failed_in_current) {
        tests_failed++;
        printf("FAIL %s\n", name);
    } else {
        tests_passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}

int test_summary(void)
{
    if (checks_failed_outside)
        printf("%d checks failed outside any test\n", checks_failed_outside);
    printf("%d passed, %d failed\n", tests_passed, tests_failed + (checks_failed_outside ? 1 : 0));
    return tests_failed || checks_failed_outside ? 1 : 0;
}

int check_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol)
{
    double max_abs = 0, max_rel = 0;
    size_t worst = 0, bad = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        double err = fabs(g - w);
        if (isnan(g) != isnan(w) || (isnan(g) && 0))
            err = INFINITY;
        double rel = err / (fabs(w) > 1e-30 ? fabs(w) : 1e-30);
        if (err > max_abs)
            max_abs = err;
        if (fabs(w) > atol && rel > max_rel)
            max_rel = rel;
        double excess = err - (atol + rtol * fabs(w));
        if (!(excess <= 0)) {
            bad++;
            if (!(excess <= worst_excess)) {
                worst_excess = excess;
                worst = i;
            }
        }
    }
    if (bad) {
        CHECK(0, "%s: %zu of %zu elements off (max abs err %.3g, max rel err %.3g; worst [%zu] got %.8g want %.8g; "
                 "atol %.1g rtol %.1g)",
              what, bad, n, max_abs, max_rel, worst, got[worst], want[worst], atol, rtol);
        return 0;
    }
    if (getenv("TEST_VERBOSE"))
        printf("       %-40s max abs %.3g  max rel %.3g  (n=%zu)\n", what, max_abs, max_rel, n);
    return 1;
}

void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed)
{
    rng r = rng_new(seed, 0x7e57);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform(&r);
}

void fill_normal(float *x, size_t n, float std, uint64_t seed)
{
    rng r = rng_new(seed, 0x7e58);
    for (size_t i = 0; i < n; i++)
        x[i] = std * rng_normal(&r);
}

float *alloc_uniform(size_t n, float lo, float hi, uint64_t seed)
{
    float *x = xmalloc(n * sizeof(float));
    fill_uniform(x, n, lo, hi, seed);
    return x;
}

float *alloc_normal(size_t n, float std, uint64_t seed)
{
    float *x = xmalloc(n * sizeof(float));
    fill_normal(x, n, std, seed);
    return x;
}

float *alloc_zeros(size_t n) { return xcalloc(n, sizeof(float)); }

static size_t guarded_data_bytes(size_t bytes, size_t page) { return (bytes + page - 1) / page * page; }

void *alloc_guarded(size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), data = guarded_data_bytes(bytes, page);
    char *map = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED || mprotect(map + data, page, PROT_NONE) != 0)
        die("alloc_guarded: %zu bytes: %s", bytes, strerror(errno));
    return map + data - bytes;
}

void free_guarded(void *p, size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), data = guarded_data_bytes(bytes, page);
    if (p)
        munmap((char *)p + bytes - data, data + page);
}

float *alloc_normal_guarded(size_t n, float std, uint64_t seed)
{
    float *x = alloc_guarded(n * sizeof(float));
    fill_normal(x, n, std, seed);
    return x;
}

safetensors *fixture_open(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    if (access(path, R_OK) != 0)
        die("fixture '%s' not found (run the tests from the repository root; `make fixtures` regenerates "
            "fixtures with python3-torch)", path);
    return safetensors_open(path);
}

float *fixture_f32(const safetensors *st, const char *name, size_t *numel)
{
    const st_tensor *t = safetensors_require(st, name);
    float *x = xmalloc((size_t)t->numel * sizeof(float));
    safetensors_read_f32(st, t, x);
    if (numel)
        *numel = (size_t)t->numel;
    return x;
}

int fixture_check(const safetensors *st, const char *name, const float *got, size_t n, double atol, double rtol)
{
    size_t m;
    float *want = fixture_f32(st, name, &m);
    int ok;
    if (m != n) {
        CHECK(0, "%s: fixture has %zu elements, computed %zu", name, m, n);
        ok = 0;
    } else {
        char what[256];
        snprintf(what, sizeof what, "%s vs torch", name);
        ok = check_close(what, got, want, n, atol, rtol);
    }
    free(want);
    return ok;
}

double dot_f64(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

int fd_check(const char *what, fd_loss_fn loss, void *ctx, float *x, const float *grad, size_t n, double h,
             double atol, double rtol, size_t max_elems)
{
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    size_t count = (max_elems && max_elems < n) ? max_elems : n;
    rng r = rng_new(0xfd, n);
    double worst = 0;
    size_t worst_i = 0;
    double worst_fd = 0;
    int ok = 1;
    for (size_t k = 0; k < count; k++) {
        size_t i = count == n ? k : rng_below(&r, (uint32_t)n);
        float saved = x[i];
        /* Step in the float grid, and use the step actually taken. */
        float xp = (float)(saved + h), xm = (float)(saved - h);
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = saved;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs(fd - grad[i]);
        double excess = err - (atol + rtol * gmax);
        if (excess > 0)
            ok = 0;
        if (err > worst) {
            worst = err;
            worst_i = i;
            worst_fd = fd;
        }
    }
    if (!ok)
        CHECK(0, "%s: finite differences disagree: worst [%zu] fd %.6g analytic %.6g (err %.3g, max|grad| %.3g)",
              what, worst_i, worst_fd, grad[worst_i], worst, gmax);
    else if (getenv("TEST_VERBOSE"))
        printf("       fd %-37s worst err %.3g of max|grad| %.3g (%zu elems)\n", what, worst, gmax, count);
    return ok;
}

int fd_check_direction(const char *what, fd_loss_fn loss, void *ctx, float *x, const float *grad, size_t n,
                       double h, double rtol, uint64_t seed)
{
    float *u = xmalloc(n * sizeof(float));
    float *saved = xmalloc(n * sizeof(float));
    memcpy(saved, x, n * sizeof(float));
    fill_normal(u, n, 1.0f, seed);
    double norm = sqrt(dot_f64(u, u, n));
    for (size_t i = 0; i < n; i++)
        u[i] = (float)(u[i] / norm);
    double analytic = dot_f64(grad, u, n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(saved[i] + h * u[i]);
    double lp = loss(ctx);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(saved[i] - h * u[i]);
    double lm = loss(ctx);
    memcpy(x, saved, n * sizeof(float));
    double fd = (lp - lm) / (2 * h);
    double gnorm = sqrt(dot_f64(grad, grad, n));
    double err = fabs(fd - analytic);
    int ok = err <= rtol * fmax(gnorm, 1e-12);
    CHECK(ok, "%s: directional derivative fd %.8g vs analytic %.8g (err %.3g, |grad| %.3g)", what, fd, analytic,
          err, gnorm);
    if (ok && getenv("TEST_VERBOSE"))
        printf("       fd-dir %-33s fd %.6g analytic %.6g (rel to |grad| %.3g)\n", what, fd, analytic,
               err / fmax(gnorm, 1e-12));
    free(u);
    free(saved);
    return ok;
}

/* ---- death tests ---- */

/* Present only under -fsanitize=address (LeakSanitizer): allocations made
 * after __lsan_disable() are never reported as leaks. */
extern void __lsan_disable(void) __attribute__((weak));
/* gcc's --coverage runtime (make coverage): a child that ends in _exit()
 * must write its counters itself, or the lines it ran count as never run. */
extern void __gcov_dump(void) __attribute__((weak));
/* OpenBLAS (OpenMP build) forces its own thread count on its regions. */
extern void openblas_set_num_threads(int) __attribute__((weak));

#define CHILD_TIMEOUT_S 30

static void read_back(FILE *f, char *buf, size_t size)
{
    if (!buf || !size)
        return;
    size_t n = 0;
    if (f && fseek(f, 0, SEEK_SET) == 0)
        n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
}

static int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Forks; in the child redirects stdout/stderr to the given files (NULL:
 * /dev/null) and runs fn(ctx) or the shell command. */
static int run_child(void (*fn)(void *), void *ctx, const char *cmd, FILE *outf, FILE *errf)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(outf ? fileno(outf) : devnull, 1);
        dup2(errf ? fileno(errf) : devnull, 2);
        alarm(CHILD_TIMEOUT_S);
        if (cmd) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        if (__lsan_disable)
            __lsan_disable();
#ifdef _OPENMP
        /* libgomp's thread pool does not survive fork(): a parallel region in
         * the child of a process that already ran one would hang.  A team of
         * one runs inline. */
        omp_set_num_threads(1);
#endif
        if (openblas_set_num_threads)
            openblas_set_num_threads(1);
        int failed_before = test_checks_failed_in_current;
        fn(ctx);
        fflush(stdout);
        fflush(stderr);
        if (__gcov_dump)
            __gcov_dump();
        /* A CHECK that failed in the child would be lost with its memory:
         * the exit status carries it to run_in_child. */
        _exit(test_checks_failed_in_current != failed_before ? CHILD_CHECKS_FAILED : 0);
    }
    return wait_status(pid);
}

int run_in_child(void (*fn)(void *), void *ctx, char *err, size_t err_size)
{
    FILE *errf = err ? tmpfile() : NULL;
    int rc = run_child(fn, ctx, NULL, NULL, errf);
    read_back(errf, err, err_size);
    if (errf)
        fclose(errf);
    if (rc == CHILD_CHECKS_FAILED)
        CHECK(0, "checks failed in a child process; its stderr: %s", err ? err : "(not captured)");
    return rc;
}

int run_command(const char *cmd, char *out, size_t out_size, char *err, size_t err_size)
{
    FILE *outf = out ? tmpfile() : NULL, *errf = err ? tmpfile() : NULL;
    int rc = run_child(NULL, NULL, cmd, outf, errf);
    read_back(outf, out, out_size);
    read_back(errf, err, err_size);
    if (outf)
        fclose(outf);
    if (errf)
        fclose(errf);
    return rc;
}

static int check_failure(const char *what, int rc, const char *err, const char *expected)
{
    if (rc != 1) {
        CHECK(0, "%s: expected exit status 1 with an error message, got %s %d; stderr: \"%s\"", what,
              rc == 0 ? "a normal exit, status" : rc > 128 ? "death by signal" : "status", rc > 128 ? rc - 128 : rc,
              err);
        return 0;
    }
    if (expected && !strstr(err, expected)) {
        CHECK(0, "%s: stderr lacks \"%s\"; it was: \"%s\"", what, expected, err);
        return 0;
    }
    return 1;
}

int expect_die(const char *what, void (*fn)(void *), void *ctx, const char *expected_substring)
{
    char err[4096];
    int rc = run_in_child(fn, ctx, err, sizeof err);
    return check_failure(what, rc, err, expected_substring);
}

int expect_command_fails(const char *cmd, const char *expected_substring)
{
    char err[4096];
    int rc = run_command(cmd, NULL, 0, err, sizeof err);
    return check_failure(cmd, rc, err, expected_substring);
}

static char tmp_dir_path[64];
static pid_t tmp_dir_owner;

/* Only the process that made it: death tests fork children that exit too. */
static void remove_tmp_dir(void)
{
    if (getpid() != tmp_dir_owner || getenv("KEEP_TMP")) /* KEEP_TMP=1: leave it for a look */
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir_path);
    if (tmp_dir_path[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir_path);
}

const char *test_tmp_dir(const char *tag)
{
    if (!tmp_dir_path[0]) {
        snprintf(tmp_dir_path, sizeof tmp_dir_path, "/tmp/repae_%.20s_XXXXXX", tag);
        if (!mkdtemp(tmp_dir_path)) {
            fprintf(stderr, "mkdtemp(%s) failed\n", tmp_dir_path);
            exit(1);
        }
        tmp_dir_owner = getpid();
        atexit(remove_tmp_dir);
    }
    return tmp_dir_path;
}

const char *test_tmp_path(const char *name)
{
    static char bufs[8][512];
    static int k;
    char *p = bufs[k++ % 8];
    snprintf(p, 512, "%s/%s", test_tmp_dir("test"), name);
    return p;
}

const char *test_write_tmp(const char *name, const void *data, size_t n)
{
    const char *p = test_tmp_path(name);
    FILE *f = xfopen(p, "wb");
    xfwrite(data, 1, n, f, p);
    xfclose(f, p);
    return p;
}

int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

int count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    int n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}
