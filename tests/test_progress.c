/* The progress report of long jobs (src/core/progress.c), read back from a
 * child's stderr: the plain lines of a log (every step under 100 steps,
 * every total/20 steps above, always step 1 and the last), the line's
 * fields (step/total, rate from the first step this process saw, ETA as
 * mm:ss, h:mm:ss or --:--, the caller's status), the terminal's redrawn bar
 * and its 0.2 s throttle, the closing "done in" line, and a quiet rank. */
#include <stdio.h>
#include <string.h>

#include "core/progress.h"
#include "test.h"

static char err[65536];

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

typedef struct plain_case {
    long long total, from;
} plain_case;

/* Steps from+1 .. total, as a resumed run reports them. */
static void plain_run(void *ctx)
{
    const plain_case *c = ctx;
    progress p = progress_start("job", c->total, "it");
    p.tty = false;
    for (long long s = c->from + 1; s <= c->total; s++)
        progress_update(&p, s, "loss %lld", s);
    progress_finish(&p);
}

static void test_plain_lines(void)
{
    /* under 100 steps: every step; 100 and more: every total/20 steps, and the first and last */
    const plain_case cases[4] = {{99, 0}, {100, 0}, {1010, 0}, {1000, 500}};
    const int want_lines[4] = {99 + 1, 20 + 1 + 1, 20 + 1 + 1 + 1, 10 + 1};
    for (int k = 0; k < 4; k++) {
        int rc = run_in_child(plain_run, (void *)&cases[k], err, sizeof err);
        CHECK(rc == 0 && count_lines(err) == want_lines[k], "%lld steps from %lld: %d lines, want %d:\n%.2000s",
              cases[k].total, cases[k].from, count_lines(err), want_lines[k], err);
    }
    /* the last case's lines: every 50th step (step 1 is not among its steps), the last */
    CHECK(strstr(err, "job 550/1000 ") && strstr(err, " it/s ETA ") && strstr(err, " loss 550\n") &&
              !strstr(err, "job 501/1000") && strstr(err, "job 1000/1000 ") && strstr(err, "job: done in "),
          "lines of a resumed job:\n%s", err);
    const plain_case odd = {1010, 0};
    run_in_child(plain_run, (void *)&odd, err, sizeof err);
    CHECK(strstr(err, "job 1/1010 ") && strstr(err, "job 50/1010 ") && strstr(err, "job 1000/1010 ") &&
              strstr(err, "job 1010/1010 ") && !strstr(err, "job 1005/1010"),
          "lines of 1010 steps:\n%s", err);
}

typedef struct eta_case {
    double elapsed; /* seconds since the start, with the first step at start_step */
    long long done, total;
} eta_case;

static void eta_run(void *ctx)
{
    const eta_case *c = ctx;
    progress p = progress_start("eta", c->total, "img");
    p.tty = false;
    p.start_step = 0;
    p.t_start -= c->elapsed;
    progress_update(&p, c->done, NULL);
}

static void test_rate_and_eta(void)
{
    /* 1 step in 10.25 s, 4 to go: 41 s; 1 in 3600.5 s, 4 to go: 4:00:02; a week and more: --:-- */
    const eta_case cases[4] = {{10.25, 1, 5}, {3600.5, 1, 5}, {3600.0, 1, 10000}, {1.0, 1, 1}};
    const char *want[4] = {"eta 1/5 0.10 img/s ETA 00:41 \n", "eta 1/5 0.00 img/s ETA 4:00:02 \n",
                           "eta 1/10000 0.00 img/s ETA --:-- \n", "eta 1/1 1.00 img/s ETA 00:00 \n"};
    for (int k = 0; k < 4; k++) {
        int rc = run_in_child(eta_run, (void *)&cases[k], err, sizeof err);
        CHECK(rc == 0 && !strcmp(err, want[k]), "ETA case %d: '%s', want '%s'", k, err, want[k]);
    }
}

/* The rate counts from the step before the first one this process reports:
 * a fresh job's steps 1 and 2, or a resumed job's step 510 (a multiple of
 * 600/20, so it is printed), 10.25 s after the start. */
static void rate_run(void *ctx)
{
    const long long first = *(const long long *)ctx;
    progress p = progress_start("rate", first == 1 ? 4 : 600, "it");
    p.tty = false;
    p.t_start -= 10.25;
    progress_update(&p, first, NULL);
    if (first == 1)
        progress_update(&p, 2, NULL);
}

static void test_rate_from_the_first_step_seen(void)
{
    long long fresh = 1, resumed = 510;
    int rc = run_in_child(rate_run, &fresh, err, sizeof err);
    /* step 2: 2 steps in 10.25 s, 2 to go: 10.25 s */
    CHECK(rc == 0 && !strcmp(err, "rate 1/4 0.10 it/s ETA 00:30 \nrate 2/4 0.20 it/s ETA 00:10 \n"),
          "a fresh job's rate: '%s'", err);
    rc = run_in_child(rate_run, &resumed, err, sizeof err);
    /* step 510 of 600: 1 step in 10.25 s, 90 to go: 922.5 s */
    CHECK(rc == 0 && !strcmp(err, "rate 510/600 0.10 it/s ETA 15:22 \n"), "a resumed job's rate: '%s'", err);
}

static void tty_run(void *ctx)
{
    (void)ctx;
    progress p = progress_start("bar", 4, "it");
    p.tty = true;
    progress_update(&p, 1, "a"); /* within 0.2 s of the start: not drawn */
    p.t_last_draw -= 1.0;
    progress_update(&p, 1, "b"); /* drawn */
    progress_update(&p, 2, "c"); /* within 0.2 s of the last draw: not drawn */
    progress_update(&p, 4, "d"); /* the last step: always drawn */
    progress_finish(&p);
}

static void quiet_run(void *ctx)
{
    (void)ctx;
    progress p = progress_start("quiet", 4, "it");
    p.quiet = true;
    p.t_last_draw -= 1.0;
    for (int s = 1; s <= 4; s++)
        progress_update(&p, s, "x");
    progress_finish(&p);
}

static void test_terminal_and_quiet(void)
{
    int rc = run_in_child(tty_run, NULL, err, sizeof err);
    CHECK(rc == 0 && !strncmp(err, "\rbar [######..................] 1/4 ", 35) && strstr(err, " b\033[K") &&
              strstr(err, "\rbar [########################] 4/4 ") && strstr(err, " d\033[K\nbar: done in ") &&
              !strstr(err, " a\033[K") && !strstr(err, " c\033[K"),
          "terminal bar: '%s'", err);
    rc = run_in_child(quiet_run, NULL, err, sizeof err);
    CHECK(rc == 0 && err[0] == 0, "a quiet rank printed '%s'", err);
}

int main(void)
{
    RUN(test_plain_lines);
    RUN(test_rate_and_eta);
    RUN(test_rate_from_the_first_step_seen);
    RUN(test_terminal_and_quiet);
    return test_summary();
}
