/* count_calls — an LD_PRELOAD library that counts, per call site, the
 * OpenMP parallel regions that really fork (more than one thread, not nested)
 * and the sgemm calls (with the time spent in them, summed over threads, so
 * that bench/profile.sh can tell convolution GEMMs from the others).  bench/count_calls.sh runs a benchmark under it twice
 * (different repetition counts) so that set-up cancels out and the counts
 * are per step.  A measuring aid, not part of repae. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_SITES 4096

typedef struct {
    void *site[MAX_SITES];
    long count[MAX_SITES];
    double seconds[MAX_SITES];
    int n;
} site_counts;

static site_counts forks, gemms, gemm_time;
static long gemm_calls, gemm_calls_outside;

static void count_site_time(site_counts *c, void *site, double seconds)
{
    for (int i = 0; i < c->n; i++)
        if (c->site[i] == site) {
            c->count[i]++;
            c->seconds[i] += seconds;
            return;
        }
    if (c->n < MAX_SITES) {
        c->site[c->n] = site;
        c->seconds[c->n] = seconds;
        c->count[c->n++] = 1;
    }
}

static void count_site(site_counts *c, void *site) { count_site_time(c, site, 0.0); }

typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
{
    static gomp_parallel_fn real;
    if (!real)
        real = (gomp_parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    /* num_threads 1 = an if() clause that was false: no fork. */
    if (num_threads != 1 && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp critical(count_calls)
        count_site(&forks, __builtin_return_address(0));
    }
    real(fn, data, num_threads, flags);
}

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc)
{
    static sgemm_fn real;
    if (!real)
        real = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    void *frames[3];
    void *caller = backtrace(frames, 3) > 2 ? frames[2] : NULL; /* the caller of gemm() */
    const int outside = !omp_in_parallel();
    double t0 = omp_get_wtime();
    real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double dt = omp_get_wtime() - t0;
#pragma omp critical(count_calls)
    {
        gemm_calls++;
        count_site_time(&gemm_time, caller, dt);
        if (outside) { /* OpenBLAS may fork for these */
            gemm_calls_outside++;
            count_site(&gemms, caller);
        }
    }
}

static void dump(FILE *f, const char *kind, const site_counts *c)
{
    for (int i = 0; i < c->n; i++) {
        Dl_info di = {0};
        dladdr(c->site[i], &di);
        fprintf(f, "%s %ld %s 0x%lx %.6f\n", kind, c->count[i], di.dli_fname ? di.dli_fname : "?",
                (unsigned long)((char *)c->site[i] - (char *)di.dli_fbase), c->seconds[i]);
    }
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("COUNT_CALLS_OUT");
    FILE *f = fopen(path ? path : "count_calls.txt", "w");
    if (!f)
        return;
    fprintf(f, "sgemm_total %ld\nsgemm_outside_parallel %ld\n", gemm_calls, gemm_calls_outside);
    dump(f, "fork", &forks);
    dump(f, "gemm_site", &gemms);
    dump(f, "gemm_time", &gemm_time);
    fclose(f);
}
