/* progress.h — progress reporting for long jobs.
 *
 * On a terminal: one line redrawn in place with step/total, rate, ETA and a
 * caller-supplied status (current losses).  Otherwise (a log file, CI):
 * a plain line every `log_every` steps, so logs stay readable.
 *
 *   progress p = progress_start("train", total_steps, "it");
 *   for (...) { ...; progress_update(&p, step, "loss %.4f", loss); }
 *   progress_finish(&p);
 */
#ifndef REPAE_PROGRESS_H
#define REPAE_PROGRESS_H

#include <stdbool.h>

typedef struct progress {
    const char *label;
    const char *unit;
    long long total;
    double t_start, t_last_draw;
    long long start_step;
    bool tty;
    long long log_every;
    bool quiet; /* a rank other than 0 under mpirun: prints nothing */
} progress;

progress progress_start(const char *label, long long total, const char *unit);
void progress_update(progress *p, long long done, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void progress_finish(progress *p);
double wall_seconds(void);

#endif
