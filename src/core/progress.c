#include "core/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/dist.h"

double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

progress progress_start(const char *label, long long total, const char *unit)
{
    progress p = {0};
    p.label = label;
    p.unit = unit;
    p.total = total;
    p.t_start = p.t_last_draw = wall_seconds();
    p.tty = isatty(STDERR_FILENO);
    p.log_every = total >= 100 ? total / 20 : 1;
    p.start_step = -1;
    p.quiet = dist_rank() != 0; /* under mpirun rank 0 alone reports */
    return p;
}

static void format_eta(char *buf, size_t n, double seconds)
{
    if (seconds < 0 || seconds > 1e7)
        snprintf(buf, n, "--:--");
    else if (seconds >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)seconds / 3600, ((int)seconds / 60) % 60, (int)seconds % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)seconds / 60, (int)seconds % 60);
}

void progress_update(progress *p, long long done, const char *fmt, ...)
{
    if (p->quiet)
        return;
    double now = wall_seconds();
    if (p->start_step < 0)
        p->start_step = done - 1;
    bool last = done >= p->total;
    if (p->tty ? (now - p->t_last_draw < 0.2 && !last) : (done % p->log_every != 0 && !last && done != 1))
        return;
    p->t_last_draw = now;
    double elapsed = now - p->t_start;
    double rate = elapsed > 0 ? (done - p->start_step) / elapsed : 0;
    char eta[32], status[256] = "";
    format_eta(eta, sizeof eta, rate > 0 ? (p->total - done) / rate : -1);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(status, sizeof status, fmt, ap);
        va_end(ap);
    }
    int width = 24, filled = p->total > 0 ? (int)(width * (double)done / p->total) : 0;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    if (p->tty)
        fprintf(stderr, "\r%s [%s] %lld/%lld %.2f %s/s ETA %s %s\033[K", p->label, bar, done, p->total, rate, p->unit,
                eta, status);
    else
        fprintf(stderr, "%s %lld/%lld %.2f %s/s ETA %s %s\n", p->label, done, p->total, rate, p->unit, eta, status);
    fflush(stderr);
}

void progress_finish(progress *p)
{
    if (p->quiet)
        return;
    if (p->tty)
        fputc('\n', stderr);
    fprintf(stderr, "%s: done in %.1f s\n", p->label, wall_seconds() - p->t_start);
}
