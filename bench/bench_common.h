/* bench_common.h — shared pieces of the programs under bench/ (header only:
 * the Makefile turns every .c file there into its own program).
 *
 * Timing: one warm-up run, then the median of `reps` timed runs.
 * Disturbance: during the timed runs we also measure the share of the
 * machine's CPU time (all cores) that OTHER processes used, from /proc/stat
 * minus our own /proc/self/stat; the table shows it for both sides so that
 * a number taken while someone else was compiling is visible as such.
 * Spread: (slowest − fastest) / median of the timed runs, both sides, also
 * in the table: the machine is a shared VM, and noise from the host is not
 * visible to the others' CPU measure.
 * PyTorch results: a file of lines "name milliseconds [peak_rss_kib
 * [others_percent [spread_percent]]]" that dev/ref/bench_torch*.py wrote
 * earlier in the same `make bench` run.
 * Table: every result is printed as one row of the final table (fixed
 * columns, see BENCH_ROW_FMT) on stdout and, if BENCH_TABLE names a file,
 * appended there too; run_bench.sh prints that file at the end.
 * This is a benchmark, not a test: it never fails on speed.
 */
#ifndef REPAE_BENCH_COMMON_H
#define REPAE_BENCH_COMMON_H

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/rng.h"
#include "ops/gemm.h"

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline float *bench_randn(size_t n, uint64_t seed)
{
    float *x = xmalloc(n * sizeof(float));
    rng r = rng_new(seed, 0);
    rng_normal_fill(&r, x, n);
    return x;
}

/* ---- CPU time of other processes ---- */
typedef struct cpu_snap {
    double wall_s, busy_ticks, self_ticks;
} cpu_snap;

static inline cpu_snap cpu_snap_now(void)
{
    cpu_snap c = {now_ms() / 1e3, -1, -1};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[8] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) == 8) /* user nice system idle iowait irq softirq steal */
            c.busy_ticks = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
        fclose(f);
    }
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        char *p = strrchr(buf, ')'); /* fields after "(comm)": state is field 3, utime 14, stime 15 */
        unsigned long long ut, st;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            c.self_ticks = (double)(ut + st);
        fclose(f);
    }
    return c;
}

/* Share (0..1) of all cores' time between a and b used by other processes; NAN if unknown. */
static inline double cpu_others_frac(cpu_snap a, cpu_snap b)
{
    if (a.busy_ticks < 0 || a.self_ticks < 0 || b.busy_ticks < 0 || b.self_ticks < 0 || b.wall_s <= a.wall_s)
        return NAN;
    double hz = (double)sysconf(_SC_CLK_TCK), ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    double f = ((b.busy_ticks - a.busy_ticks) - (b.self_ticks - a.self_ticks)) / (hz * ncpu * (b.wall_s - a.wall_s));
    return f < 0 ? 0 : f;
}

/* Profiling the timed runs only: bench/profile.sh starts `perf record` with
 * its events off (-D -1, --control=fifo:CTL,ACK) and names the two FIFOs in
 * BENCH_PERF_CTL / BENCH_PERF_ACK; perf_control("enable") before the timed
 * runs and ("disable") after them, so that set-up (building models, first
 * touches of fresh memory) and the warm-up run are not in the samples.
 * Without the variables it does nothing. */
static inline void perf_control(const char *cmd)
{
    static FILE *ctl, *ack;
    const char *ctl_path = getenv("BENCH_PERF_CTL"), *ack_path = getenv("BENCH_PERF_ACK");
    if (!ctl_path || !*ctl_path)
        return;
    if (!ctl && !(ctl = fopen(ctl_path, "w")))
        die("BENCH_PERF_CTL=%s: cannot open the perf control FIFO", ctl_path);
    if (ack_path && *ack_path && !ack && !(ack = fopen(ack_path, "r")))
        die("BENCH_PERF_ACK=%s: cannot open the perf acknowledgement FIFO", ack_path);
    fprintf(ctl, "%s\n", cmd);
    fflush(ctl);
    char reply[16];
    if (ack && !fgets(reply, sizeof reply, ack)) /* perf answers "ack" once the events are switched */
        die("BENCH_PERF_ACK=%s: no acknowledgement from perf", ack_path);
}

/* ---- the control workload: the host's own steadiness ----
 * CONTROL_GEMMS identical GEMMs 1024×768 · (3072×768)ᵀ (SiT-B/2's fc1
 * forward), ~0.8 s on the benchmark host.  The work cannot vary (no
 * allocation, no data-dependent branch), so the spread of its timings is
 * the host's: bench_models' row host_steadiness_gemm_x60, and with
 * BENCH_CONTROL=1 one block after every timed run of any row (below). */
enum { CONTROL_M = 1024, CONTROL_N = 3072, CONTROL_K = 768, CONTROL_GEMMS = 60 };

typedef struct control_work {
    float *a, *b, *c;
} control_work;

static inline control_work control_work_new(void)
{
    control_work w = {bench_randn((size_t)CONTROL_M * CONTROL_K, 21), bench_randn((size_t)CONTROL_N * CONTROL_K, 22),
                      xmalloc((size_t)CONTROL_M * CONTROL_N * sizeof(float))};
    return w;
}

static inline void control_work_run(void *p)
{
    control_work *w = p;
    for (int i = 0; i < CONTROL_GEMMS; i++)
        gemm(false, true, CONTROL_M, CONTROL_N, CONTROL_K, 1.0f, w->a, CONTROL_K, w->b, CONTROL_K, 0.0f, w->c,
             CONTROL_N);
}

static inline void control_work_free(control_work *w)
{
    free(w->a), free(w->b), free(w->c);
}

/* Of the latest time_median (or a caller's own loop): see cpu_others_frac. */
static double bench_others = NAN;
/* Of the latest median_of: (slowest − fastest) / median of the timed runs, NAN for one run. */
static double bench_spread = NAN;

/* Sorts t[0..n) and returns the median (and sets bench_spread). */
static inline double median_of(double *t, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    bench_spread = n > 1 ? (t[n - 1] - t[0]) / t[n / 2] : NAN;
    return t[n / 2];
}

/* Median of `reps` timed runs after one warm-up (reps <= 64). */
static inline double time_median(void (*fn)(void *), void *ctx, int reps)
{
    double t[64];
    if (reps < 1)
        reps = 1;
    if (reps > 64)
        reps = 64;
    /* BENCH_CONTROL=1 (a diagnostic, not for `make bench`): one block of the
     * control workload after every timed run, untimed by the row, each pair
     * traced with the ratio row/control: when the row's times move with the
     * control's, the ratio's spread is what is left of the row's own. */
    const char *control_env = getenv("BENCH_CONTROL");
    bool control = control_env && *control_env && strcmp(control_env, "0") != 0;
    control_work cw = {0};
    double ratio[64], ctl[64];
    if (control)
        cw = control_work_new();
    fn(ctx);
    perf_control("enable");
    cpu_snap c0 = cpu_snap_now();
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        fn(ctx);
        t[i] = now_ms() - t0;
        if (control) {
            double c_start = now_ms();
            control_work_run(&cw);
            double ct = now_ms() - c_start;
            ctl[i] = ct;
            ratio[i] = t[i] / ct;
            fprintf(stderr, "run %d: %.1f ms, control %.1f ms, ratio %.4f\n", i + 1, t[i], ct, ratio[i]);
        } else if (getenv("BENCH_TRACE")) /* every timed run, to see what makes the spread */
            fprintf(stderr, "run %d: %.1f ms\n", i + 1, t[i]);
    }
    bench_others = cpu_others_frac(c0, cpu_snap_now());
    perf_control("disable");
    if (control) {
        median_of(ctl, reps);
        double spread_ctl = bench_spread;
        median_of(ratio, reps);
        fprintf(stderr, "spread of the control: %.1f %%, of row/control: %.1f %%\n", spread_ctl * 100,
                bench_spread * 100);
        control_work_free(&cw);
    }
    return median_of(t, reps);
}

/* Peak resident set size of this process so far (VmHWM), in KiB; -1 if unknown. */
static inline double peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kib = atof(line + 6);
            break;
        }
    fclose(f);
    return kib;
}

/* ---- PyTorch results ---- */
#define BENCH_MAX_RESULTS 128
static char bench_torch_names[BENCH_MAX_RESULTS][80];
static double bench_torch_ms[BENCH_MAX_RESULTS], bench_torch_rss[BENCH_MAX_RESULTS],
    bench_torch_others[BENCH_MAX_RESULTS], bench_torch_spread[BENCH_MAX_RESULTS];
static int bench_n_torch;

static inline void load_torch(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        warn("no PyTorch results at '%s': ratios are left out", path);
        return;
    }
    char line[512];
    while (bench_n_torch < BENCH_MAX_RESULTS && fgets(line, sizeof line, f)) {
        char name[80];
        double ms, rss = -1, others = NAN, spread = NAN;
        int k = sscanf(line, "%79s %lf %lf %lf %lf", name, &ms, &rss, &others, &spread);
        if (k < 2)
            continue;
        int i = bench_n_torch++;
        snprintf(bench_torch_names[i], sizeof bench_torch_names[i], "%s", name);
        bench_torch_ms[i] = ms;
        bench_torch_rss[i] = k >= 3 ? rss : -1;
        bench_torch_others[i] = k >= 4 && others >= 0 ? others / 100 : NAN;
        bench_torch_spread[i] = k >= 5 && spread >= 0 ? spread / 100 : NAN;
    }
    fclose(f);
}

/* Torch milliseconds (NAN if absent); *rss_kib = its peak RSS or -1,
 * *others = its others' CPU share or NAN, *spread = its spread or NAN
 * (any pointer may be NULL). */
static inline double torch_lookup4(const char *name, double *rss_kib, double *others, double *spread)
{
    if (rss_kib)
        *rss_kib = -1;
    if (others)
        *others = NAN;
    if (spread)
        *spread = NAN;
    for (int i = bench_n_torch - 1; i >= 0; i--) /* the latest line wins (reruns append) */
        if (!strcmp(bench_torch_names[i], name)) {
            if (rss_kib)
                *rss_kib = bench_torch_rss[i];
            if (others)
                *others = bench_torch_others[i];
            if (spread)
                *spread = bench_torch_spread[i];
            return bench_torch_ms[i];
        }
    return NAN;
}

static inline double torch_lookup(const char *name, double *rss_kib)
{
    return torch_lookup4(name, rss_kib, NULL, NULL);
}

/* ---- the table ---- */
/* name, ours ms, torch ms, ratio, ours MiB, torch MiB, others' CPU % (ours/torch),
 * spread % (ours/torch), note */
#define BENCH_ROW_FMT "%-34s %11s %11s %7s %9s %9s %7s %7s  %s\n"

static inline void fmt_num(char *buf, size_t n, double v, int prec)
{
    if (isnan(v) || v < 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.*f", prec, v);
}

/* One row: ratio = torch / ours (> 1: we are faster).  our_rss_kib < 0:
 * not measured per benchmark.  note: free text (may be NULL).  The others'
 * CPU share is that of the latest time_median (bench_others).
 * BENCH_OURS, if set, names a file that gets "name ms rss_kib others%". */
static inline void bench_row(const char *name, double ours_ms, double our_rss_kib, const char *note)
{
    double trss, toth, tspr;
    double tms = torch_lookup4(name, &trss, &toth, &tspr);
    char o[32], t[32], r[32], orss[32], tr[32];
    fmt_num(o, sizeof o, ours_ms, ours_ms < 100 ? 2 : 0);
    fmt_num(t, sizeof t, tms, tms < 100 ? 2 : 0);
    if (isnan(tms))
        snprintf(r, sizeof r, "-");
    else
        snprintf(r, sizeof r, "%.2fx", tms / ours_ms);
    fmt_num(orss, sizeof orss, our_rss_kib < 0 ? -1 : our_rss_kib / 1024, 0);
    fmt_num(tr, sizeof tr, trss < 0 ? -1 : trss / 1024, 0);
    char oth[32], oo[16], ot[16];
    fmt_num(oo, sizeof oo, bench_others * 100, 0);
    fmt_num(ot, sizeof ot, toth * 100, 0);
    snprintf(oth, sizeof oth, "%s/%s", oo, ot);
    char spr[32];
    fmt_num(oo, sizeof oo, bench_spread * 100, 0);
    fmt_num(ot, sizeof ot, tspr * 100, 0);
    snprintf(spr, sizeof spr, "%s/%s", oo, ot);
    char row[512];
    snprintf(row, sizeof row, BENCH_ROW_FMT, name, o, t, r, orss, tr, oth, spr, note ? note : "");
    fputs(row, stdout);
    fflush(stdout);
    const char *table = getenv("BENCH_TABLE");
    if (table && *table) {
        FILE *f = fopen(table, "a");
        if (f) {
            fputs(row, f);
            fclose(f);
        }
    }
    const char *ours = getenv("BENCH_OURS");
    if (ours && *ours) {
        FILE *f = fopen(ours, "a");
        if (f) {
            fprintf(f, "%s %.4f %.0f %.1f\n", name, ours_ms, our_rss_kib, isnan(bench_others) ? -1 : bench_others * 100);
            fclose(f);
        }
    }
}

/* Torch milliseconds of `name` or NAN, for notes that need them. */
static inline double torch_ms_of(const char *name) { return torch_lookup(name, NULL); }

/* Repetitions from the environment (BENCH_REPS overrides every default). */
static inline int bench_reps(int dflt)
{
    const char *s = getenv("BENCH_REPS");
    int r = s && *s ? atoi(s) : dflt;
    return r < 1 ? 1 : r;
}

#endif
