/* The one training loop (src/train/run_loop.c), driven by a fake trainer
 * whose steps cost nothing, so every rule of run_loop.h is checked exactly:
 *  - cadence: which steps write a checkpoint, a preview, a parity check
 *    (every 100 steps and at each checkpoint), with the loader's position;
 *  - metrics.jsonl, byte for byte: logs and preview extras, a non-finite
 *    value written as null; args.json on a fresh run only;
 *  - the NaN stop: the first non-finite log ends the run with status 1,
 *    before that step's checkpoint or preview, naming the log, the step and
 *    what is on disk;
 *  - SIGINT/SIGTERM: the step finishes, a checkpoint is written (to the
 *    network file when save_path is set), status 0, the handlers restored;
 *  - resume: the latest or a named checkpoint, the metrics trimmed to it and
 *    continued to the same lines as a straight run; a checkpoint whose
 *    counters disagree with its name or the loader is refused, naming it.
 * Each run goes in a child (its progress lines and messages captured); the
 * fake trainer logs every call it gets to calls.txt in the run folder.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/path.h"
#include "test.h"
#include "train/run_loop.h"

static const char *tmp;

/* ---- the fake trainer ------------------------------------------------------------ */

/* What the fake trainer does besides its plain steps (steps count from 1,
 * so a step of 0 means never). */
typedef struct fake_script {
    long long bad_step; /* at this step logs[bad_log] = bad_value (and logs[0] too when both_bad) */
    int bad_log;
    double bad_value;
    bool both_bad;
    long long nan_extra_step; /* the preview's extra is NaN at this step */
    long long signal_step;    /* the step raises `sig` */
    int sig;
    bool report_disk;         /* each step logs how many metrics lines are on disk */
    long long load_step;      /* load reports this step instead of the file's (0: the file's) */
    bool load_counters;       /* load reports load_epoch and load_position instead of the file's */
    long long load_epoch, load_position;
} fake_script;

typedef struct fake {
    run_dir rd;
    dataset ds;
    loader ld;
    long long step;
    int n_logs;
    FILE *calls;
    fake_script script;
} fake;

static const char *const log_names[RUN_LOOP_MAX_LOGS] = {
    "a",   "b",   "l2",  "l3",  "l4",  "l5",  "l6",  "l7",  "l8",  "l9",  "l10", "l11", "l12", "l13", "l14", "l15",
    "l16", "l17", "l18", "l19", "l20", "l21", "l22", "l23", "l24", "l25", "l26", "l27", "l28", "l29", "l30", "l31"};
static const char *const extra_names[] = {"p"};

static long long fake_step(void *ctx, double *logs)
{
    fake *f = ctx;
    uint8_t img[2 * 4];
    int32_t lab[2];
    loader_next(&f->ld, img, lab);
    const fake_script *sc = &f->script;
    if (sc->report_disk) {
        char *path = run_dir_file(&f->rd, "metrics.jsonl");
        FILE *m = fopen(path, "r");
        int lines = 0;
        for (int c; m && (c = fgetc(m)) != EOF;)
            lines += c == '\n';
        if (m)
            fclose(m);
        fprintf(f->calls, "on disk %d\n", lines);
        free(path);
    }
    f->step++;
    logs[0] = 0.25 * (double)f->step;
    logs[1] = -(double)f->step - 0.125;
    for (int k = 2; k < f->n_logs; k++)
        logs[k] = k;
    if (f->step == sc->bad_step) {
        logs[sc->bad_log] = sc->bad_value;
        if (sc->both_bad)
            logs[0] = sc->bad_value;
    }
    if (f->step == sc->signal_step)
        raise(sc->sig);
    return f->step;
}

static void fake_status(void *ctx, const double *logs, char *buf, size_t size)
{
    (void)ctx;
    snprintf(buf, size, "a %.3g", logs[0]);
}

static void fake_save(void *ctx, const char *path, long long epoch, long long position)
{
    fake *f = ctx;
    fprintf(f->calls, "save %lld %lld %lld %s\n", f->step, epoch, position, path);
    FILE *c = xfopen(path, "w");
    fprintf(c, "%lld %lld %lld\n", f->step, epoch, position);
    xfclose(c, path);
}

static void fake_load(void *ctx, const char *path, long long *epoch, long long *position)
{
    fake *f = ctx;
    fprintf(f->calls, "load %s\n", path);
    FILE *c = xfopen(path, "r");
    if (fscanf(c, "%lld %lld %lld", &f->step, epoch, position) != 3)
        die("'%s': not a fake checkpoint", path);
    fclose(c);
    if (f->script.load_step)
        f->step = f->script.load_step;
    if (f->script.load_counters)
        *epoch = f->script.load_epoch, *position = f->script.load_position;
}

static long long fake_current_step(void *ctx) { return ((fake *)ctx)->step; }

static void fake_preview(void *ctx, long long step, const char *png, double *extras)
{
    fake *f = ctx;
    fprintf(f->calls, "preview %lld %s\n", step, png ? png : "(none)");
    extras[0] = step == f->script.nan_extra_step ? (double)NAN : (double)step + 0.5;
}

static void fake_check_same(void *ctx)
{
    fake *f = ctx;
    fprintf(f->calls, "check %lld\n", f->step);
}

/* 8 images in batches of 2: 4 batches per epoch. */
static void fake_open(fake *f, const char *name, bool checkpoints)
{
    memset(f, 0, sizeof *f);
    f->ds = (dataset){.n = 8, .channels = 1, .height = 2, .width = 2, .num_classes = 1};
    f->ds.images = xcalloc(8 * 4, 1);
    f->ds.labels = xcalloc(8, sizeof(int32_t));
    f->ds.source = xstrdup("fake images");
    f->ld = loader_create(&f->ds, 2, 1, 0, 1);
    run_dir_open(&f->rd, "train", tmp, name, checkpoints);
    char *calls = run_dir_file(&f->rd, "calls.txt");
    f->calls = xfopen(calls, "a");
    setvbuf(f->calls, NULL, _IOLBF, 0);
    free(calls);
}

static void fake_close(fake *f)
{
    fclose(f->calls);
    run_dir_close(&f->rd);
    loader_free(&f->ld);
    dataset_free(&f->ds);
}

static run_loop fake_loop(fake *f, long long max_steps, long long checkpoint_every, long long preview_every)
{
    return (run_loop){.command = "fake", .dir = &f->rd, .data = &f->ld, .max_steps = max_steps,
                      .checkpoint_every = checkpoint_every, .preview_every = preview_every, .preview_first = true,
                      .n_logs = 2, .log_names = log_names, .n_extras = 1, .extra_names = extra_names, .ctx = f,
                      .step = fake_step, .status = fake_status, .save = fake_save, .load = fake_load,
                      .current_step = fake_current_step, .preview = fake_preview, .check_same = fake_check_same};
}

/* One run in a child: what a test sets up, then run_loop_run; the child's
 * exit status is the loop's (or 3 when a signal handler was left set). */
typedef struct scenario {
    const char *name;
    bool checkpoints;
    long long max_steps, checkpoint_every, preview_every, resume_step;
    bool no_preview_first, no_load;
    int n_logs, n_extras; /* 0: the fake's 2 and 1 */
    const char *save_path, *nan_note, *args_json;
    fake_script script;
    long long second_run_steps; /* after the run, a second loop in the same process to this step */
} scenario;

extern void __gcov_dump(void) __attribute__((weak));

static void run_scenario_child(void *ctx)
{
    const scenario *s = ctx;
    fake f;
    fake_open(&f, s->name, s->checkpoints);
    f.script = s->script;
    run_loop rl = fake_loop(&f, s->max_steps, s->checkpoint_every, s->preview_every);
    rl.preview_first = !s->no_preview_first;
    if (s->no_load)
        rl.load = NULL;
    if (s->n_logs)
        rl.n_logs = f.n_logs = s->n_logs;
    if (s->n_extras)
        rl.n_extras = s->n_extras;
    rl.save_path = s->save_path;
    rl.nan_note = s->nan_note;
    int rc = run_loop_run(&rl, s->resume_step, s->args_json ? s->args_json : "{\"fake\": true}");
    if (s->second_run_steps) {
        fprintf(f.calls, "second run\n");
        f.script.signal_step = 0;
        rl.max_steps = s->second_run_steps;
        rc = run_loop_run(&rl, -1, NULL);
    }
    fprintf(f.calls, "end %lld epoch %lld position %d signal %d\n", f.step, f.ld.epoch, f.ld.position,
            run_loop_stop_signal());
    struct sigaction term, intr;
    sigaction(SIGTERM, NULL, &term);
    sigaction(SIGINT, NULL, &intr);
    if (term.sa_handler != SIG_DFL || intr.sa_handler != SIG_DFL)
        rc = 3;
    fake_close(&f);
    fflush(stderr);
    if (__gcov_dump) /* _exit skips it, and the harness's own call */
        __gcov_dump();
    _exit(rc);
}

static char err[16384];

static int run_scenario(const scenario *s) { return run_in_child(run_scenario_child, (void *)s, err, sizeof err); }

static char *run_text(const char *name, const char *file)
{
    char *path = path_printf("%s/%s/%s", tmp, name, file);
    size_t n;
    char *text = read_file_all(path, &n);
    free(path);
    return text;
}

static void check_text(const char *name, const char *file, const char *want)
{
    char *got = run_text(name, file);
    CHECK(got && !strcmp(got, want), "%s/%s:\n%s\nwant:\n%s", name, file, got ? got : "(missing)", want);
    free(got);
}

/* The progress bar closed once ("done in"), before the message `then` when given. */
static void check_progress_closed_once(const char *what, const char *then)
{
    const char *done = strstr(err, "fake: done in ");
    CHECK(count_of(err, "fake: done in ") == 1 && (!then || (strstr(err, then) && done < strstr(err, then))),
          "%s: the progress bar should close once%s%s; stderr:\n%s", what, then ? " before " : "", then ? then : "",
          err);
}

/* The metrics line of step s in a plain run (with the preview's extra when `extra`). */
static void metrics_line(char *buf, size_t size, long long s, long long epoch, bool extra)
{
    int n = snprintf(buf, size, "{\"step\": %lld, \"epoch\": %lld, \"a\": %.8g, \"b\": %.8g", s, epoch,
                     0.25 * (double)s, -(double)s - 0.125);
    if (extra)
        n += snprintf(buf + n, size - (size_t)n, ", \"p\": %.8g", (double)s + 0.5);
    snprintf(buf + n, size - (size_t)n, "}\n");
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_cadence_and_files(void)
{
    /* 7 steps: checkpoints every 3 and at the last, previews at 1, every 2 and the last. */
    scenario s = {.name = "cadence", .checkpoints = true, .max_steps = 7, .checkpoint_every = 3, .preview_every = 2,
                  .args_json = "{\"run\": \"cadence\"}"};
    int rc = run_scenario(&s);
    CHECK(rc == 0, "cadence run: status %d, stderr:\n%s", rc, err);
    char *ck = path_printf("%s/cadence/checkpoints", tmp), *sd = path_printf("%s/cadence/samples", tmp);
    char want[4096];
    snprintf(want, sizeof want,
             "preview 1 %s/0000001.png\n"
             "preview 2 %s/0000002.png\n"
             "check 3\nsave 3 0 3 %s/0000003.safetensors\n"
             "preview 4 %s/0000004.png\n"
             "check 6\npreview 6 %s/0000006.png\nsave 6 1 2 %s/0000006.safetensors\n"
             "check 7\npreview 7 %s/0000007.png\nsave 7 1 3 %s/0000007.safetensors\n"
             "end 7 epoch 1 position 3 signal 0\n",
             sd, sd, ck, sd, sd, ck, sd, ck);
    check_text("cadence", "calls.txt", want);
    char metrics[4096] = "", line[256];
    for (int st = 1; st <= 7; st++) {
        metrics_line(line, sizeof line, st, st > 4 ? 1 : 0, st == 1 || st % 2 == 0 || st == 7);
        strcat(metrics, line);
    }
    check_text("cadence", "metrics.jsonl", metrics);
    check_text("cadence", "args.json", "{\"run\": \"cadence\"}\n");
    /* Not a terminal: the progress bar writes a line per step (under 100 steps) with the status. */
    CHECK(strstr(err, "fake 1/7 ") && strstr(err, " a 0.25\n") && strstr(err, "fake 7/7 ") && strstr(err, " a 1.75\n"),
          "progress lines:\n%s", err);
    check_progress_closed_once("cadence", NULL);
    CHECK(!strstr(err, "data parallel"), "one process reports data parallelism:\n%s", err);
    free(ck), free(sd);

    /* Neither cadence set, no preview at step 1: the last step alone saves and previews. */
    scenario last = {.name = "last-only", .checkpoints = true, .max_steps = 3, .no_preview_first = true};
    rc = run_scenario(&last);
    CHECK(rc == 0, "last-only run: status %d", rc);
    char *ck3 = path_printf("%s/last-only/checkpoints/0000003.safetensors", tmp);
    char *png3 = path_printf("%s/last-only/samples/0000003.png", tmp);
    snprintf(want, sizeof want, "check 3\npreview 3 %s\nsave 3 0 3 %s\nend 3 epoch 0 position 3 signal 0\n", png3,
             ck3);
    check_text("last-only", "calls.txt", want);
    free(ck3), free(png3);

    /* A folder without checkpoints/ and samples/: previews get no file, and
     * save goes to the network file named by save_path. */
    char *net = path_printf("%s/net.safetensors", tmp);
    scenario nosamples = {.name = "no-samples", .max_steps = 2, .save_path = net};
    rc = run_scenario(&nosamples);
    CHECK(rc == 0, "no-samples run: status %d", rc);
    snprintf(want, sizeof want, "preview 1 (none)\ncheck 2\npreview 2 (none)\nsave 2 0 2 %s\n"
             "end 2 epoch 0 position 2 signal 0\n", net);
    check_text("no-samples", "calls.txt", want);
    free(net);
}

/* Each step's metrics line reaches the file before the next step starts. */
static void test_metrics_on_disk_each_step(void)
{
    scenario s = {.name = "on-disk", .checkpoints = true, .max_steps = 3, .no_preview_first = true,
                  .script = {.report_disk = true}};
    CHECK(run_scenario(&s) == 0, "on-disk run failed:\n%s", err);
    char *calls = run_text("on-disk", "calls.txt");
    CHECK(calls && !strncmp(calls, "on disk 0\non disk 1\non disk 2\n", 30), "calls:\n%s", calls);
    free(calls);
}

static void test_parity_checks_every_100_steps(void)
{
    scenario s = {.name = "hundreds", .checkpoints = true, .max_steps = 205, .no_preview_first = true};
    int rc = run_scenario(&s);
    CHECK(rc == 0, "205-step run: status %d", rc);
    char *calls = run_text("hundreds", "calls.txt");
    char *ck = path_printf("%s/hundreds/checkpoints/0000205.safetensors", tmp);
    char *png = path_printf("%s/hundreds/samples/0000205.png", tmp);
    char want[2048];
    /* 205 steps of 4 batches: epoch 51, position 1 */
    snprintf(want, sizeof want, "check 100\ncheck 200\ncheck 205\npreview 205 %s\nsave 205 51 1 %s\n"
             "end 205 epoch 51 position 1 signal 0\n", png, ck);
    CHECK(calls && !strcmp(calls, want), "calls:\n%s\nwant:\n%s", calls, want);
    char *metrics = run_text("hundreds", "metrics.jsonl");
    int lines = 0;
    for (const char *p = metrics; p && *p; p++)
        lines += *p == '\n';
    CHECK(lines == 205, "%d metrics lines, want 205", lines);
    free(calls), free(ck), free(png), free(metrics);
}

static void test_nan_stop(void)
{
    /* b is NaN at step 5: checkpoints 2 and 4 stay, step 5 has no preview
     * (due: every 5) and no checkpoint, and its metrics line says null. */
    scenario s = {.name = "nan", .checkpoints = true, .max_steps = 8, .checkpoint_every = 2, .preview_every = 5,
                  .no_preview_first = true, .script = {.bad_step = 5, .bad_log = 1, .bad_value = NAN}};
    int rc = run_scenario(&s);
    char *ck = path_printf("%s/nan/checkpoints", tmp);
    char want[4096];
    snprintf(want, sizeof want, "b is nan at step 5: training stopped; the last good checkpoint in '%s' is intact", ck);
    CHECK(rc == 1 && strstr(err, want), "NaN at step 5: status %d, stderr:\n%s\nwant: %s", rc, err, want);
    snprintf(want, sizeof want,
             "check 2\nsave 2 0 2 %s/0000002.safetensors\ncheck 4\nsave 4 0 4 %s/0000004.safetensors\n"
             "end 5 epoch 1 position 1 signal 0\n",
             ck, ck);
    check_text("nan", "calls.txt", want);
    char metrics[2048] = "", line[256];
    for (int st = 1; st <= 4; st++) {
        metrics_line(line, sizeof line, st, 0, false);
        strcat(metrics, line);
    }
    strcat(metrics, "{\"step\": 5, \"epoch\": 1, \"a\": 1.25, \"b\": null}\n");
    check_text("nan", "metrics.jsonl", metrics);
    check_progress_closed_once("NaN stop", "repae: error: b is nan");
    free(ck);

    /* +Inf in the first log, and the trainer's own note on what is on disk;
     * the last step would have saved and previewed. */
    scenario inf = {.name = "inf", .checkpoints = true, .max_steps = 3, .no_preview_first = true,
                    .script = {.bad_step = 3, .bad_log = 0, .bad_value = INFINITY},
                    .nan_note = "the VAE file is untouched"};
    rc = run_scenario(&inf);
    CHECK(rc == 1 && strstr(err, "repae: error: a is inf at step 3: training stopped; the VAE file is untouched\n"),
          "Inf at step 3: status %d, stderr:\n%s", rc, err);
    check_text("inf", "calls.txt", "end 3 epoch 0 position 3 signal 0\n");

    /* Both logs bad: the first one is named; -Inf is as bad as NaN. */
    scenario both = {.name = "both", .checkpoints = true, .max_steps = 4,
                     .script = {.bad_step = 2, .bad_log = 1, .bad_value = -INFINITY, .both_bad = true}};
    rc = run_scenario(&both);
    CHECK(rc == 1 && strstr(err, "a is -inf at step 2"), "two bad logs: status %d, stderr:\n%s", rc, err);

    /* A non-finite preview extra is written as null but stops nothing. */
    scenario extra = {.name = "nan-extra", .checkpoints = true, .max_steps = 2, .script = {.nan_extra_step = 1}};
    rc = run_scenario(&extra);
    CHECK(rc == 0, "a NaN preview extra stopped the run: status %d, stderr:\n%s", rc, err);
    char *m = run_text("nan-extra", "metrics.jsonl");
    CHECK(m && strstr(m, "{\"step\": 1, \"epoch\": 0, \"a\": 0.25, \"b\": -1.125, \"p\": null}\n") &&
              strstr(m, "\"p\": 2.5}\n"),
          "metrics with a NaN extra:\n%s", m);
    free(m);
}

static void test_signal_stop(void)
{
    const int sigs[2] = {SIGTERM, SIGINT};
    const char *names[2] = {"sigterm", "sigint"};
    for (int i = 0; i < 2; i++) {
        scenario s = {.name = names[i], .checkpoints = true, .max_steps = 100, .no_preview_first = true,
                      .script = {.signal_step = 3, .sig = sigs[i]}};
        int rc = run_scenario(&s);
        char *ck = path_printf("%s/%s/checkpoints", tmp, names[i]);
        char want[2048];
        snprintf(want, sizeof want, "repae: stopped by signal %d at step 3; checkpoint saved in '%s'\n", sigs[i], ck);
        CHECK(rc == 0 && strstr(err, want), "%s: status %d (3: a handler left set), stderr:\n%s\nwant: %s",
              names[i], rc, err, want);
        snprintf(want, sizeof want, "check 3\nsave 3 0 3 %s/0000003.safetensors\nend 3 epoch 0 position 3 signal %d\n",
                 ck, sigs[i]);
        check_text(names[i], "calls.txt", want);
        check_progress_closed_once(names[i], "repae: stopped by signal");
        free(ck);
    }
    /* The next loop in the same process starts without the old stop: it
     * resumes from the checkpoint the signal left and runs to its end. */
    scenario again = {.name = "sig-again", .checkpoints = true, .max_steps = 100, .no_preview_first = true,
                      .script = {.signal_step = 2, .sig = SIGTERM}, .second_run_steps = 4};
    int rc2 = run_scenario(&again);
    char *ck = path_printf("%s/sig-again/checkpoints", tmp), want2[2048];
    snprintf(want2, sizeof want2,
             "check 2\nsave 2 0 2 %s/0000002.safetensors\nsecond run\nload %s/0000002.safetensors\n"
             "check 4\npreview 4 %s/sig-again/samples/0000004.png\nsave 4 0 4 %s/0000004.safetensors\n"
             "end 4 epoch 0 position 4 signal 0\n",
             ck, ck, tmp, ck);
    CHECK(rc2 == 0, "a loop after a signal stop: status %d, stderr:\n%s", rc2, err);
    check_text("sig-again", "calls.txt", want2);
    free(ck);
    /* With a network file, the message names it. */
    char *net = path_printf("%s/sig-net.safetensors", tmp);
    scenario s = {.name = "sig-net", .max_steps = 100, .no_preview_first = true,
                  .script = {.signal_step = 2, .sig = SIGTERM}, .save_path = net};
    int rc = run_scenario(&s);
    char want[2048];
    snprintf(want, sizeof want, "checkpoint saved in '%s'\n", net);
    CHECK(rc == 0 && strstr(err, want), "signal with save_path: status %d, stderr:\n%s", rc, err);
    free(net);
}

static void test_resume_continues_the_run(void)
{
    scenario straight = {.name = "straight", .checkpoints = true, .max_steps = 6, .checkpoint_every = 2,
                         .preview_every = 3};
    CHECK(run_scenario(&straight) == 0, "straight run failed:\n%s", err);
    char *want = run_text("straight", "metrics.jsonl");

    /* A crash after step 5: checkpoints 2 and 4 on disk, 5 lines of metrics
     * and a torn sixth. */
    scenario first = {.name = "resumed", .checkpoints = true, .max_steps = 5, .checkpoint_every = 2,
                      .preview_every = 3, .args_json = "{\"first\": 1}"};
    CHECK(run_scenario(&first) == 0, "first part failed:\n%s", err);
    char *ck5 = path_printf("%s/resumed/checkpoints/0000005.safetensors", tmp);
    unlink(ck5); /* the last step's checkpoint, as if the crash had come before it */
    char *mpath = path_printf("%s/resumed/metrics.jsonl", tmp);
    FILE *m = fopen(mpath, "a");
    fputs("{\"step\": 6, \"ep", m);
    fclose(m);
    char *calls = path_printf("%s/resumed/calls.txt", tmp);
    unlink(calls);

    scenario latest = {.name = "resumed", .checkpoints = true, .max_steps = 6, .checkpoint_every = 2,
                       .preview_every = 3, .resume_step = -1, .args_json = "{\"second\": 2}"};
    int rc = run_scenario(&latest);
    char *ck = path_printf("%s/resumed/checkpoints", tmp);
    char expect[2048];
    snprintf(expect, sizeof expect, "resumed from '%s/0000004.safetensors' at step 4", ck);
    CHECK(rc == 0 && strstr(err, expect), "resume -1: status %d, stderr:\n%s", rc, err);
    snprintf(expect, sizeof expect,
             "load %s/0000004.safetensors\ncheck 6\npreview 6 %s/resumed/samples/0000006.png\n"
             "save 6 1 2 %s/0000006.safetensors\nend 6 epoch 1 position 2 signal 0\n",
             ck, tmp, ck);
    check_text("resumed", "calls.txt", expect);
    check_text("resumed", "metrics.jsonl", want);
    check_text("resumed", "args.json", "{\"first\": 1}\n");

    /* A named older checkpoint: the metrics go back to its step and on again. */
    unlink(calls);
    scenario named = {.name = "resumed", .checkpoints = true, .max_steps = 6, .checkpoint_every = 2,
                      .preview_every = 3, .resume_step = 2};
    rc = run_scenario(&named);
    CHECK(rc == 0 && strstr(err, "0000002.safetensors' at step 2"), "resume 2: status %d, stderr:\n%s", rc, err);
    check_text("resumed", "metrics.jsonl", want);
    char *got = run_text("resumed", "calls.txt");
    CHECK(got && !strncmp(got, "load ", 5) && strstr(got, "0000002.safetensors\npreview 3 ") &&
              strstr(got, "end 6 epoch 1 position 2 signal 0\n"),
          "calls after resuming at 2:\n%s", got);
    free(got);

    /* From a checkpoint in the second epoch (step 6: epoch 1, batch 2). */
    unlink(calls);
    scenario later = {.name = "resumed", .checkpoints = true, .max_steps = 7, .checkpoint_every = 2,
                      .preview_every = 3, .resume_step = 6};
    rc = run_scenario(&later);
    CHECK(rc == 0 && strstr(err, "0000006.safetensors' at step 6"), "resume 6: status %d, stderr:\n%s", rc, err);
    snprintf(expect, sizeof expect,
             "load %s/0000006.safetensors\ncheck 7\npreview 7 %s/resumed/samples/0000007.png\n"
             "save 7 1 3 %s/0000007.safetensors\nend 7 epoch 1 position 3 signal 0\n",
             ck, tmp, ck);
    check_text("resumed", "calls.txt", expect);
    free(want), free(ck5), free(mpath), free(calls), free(ck);
}

static void test_resume_refusals(void)
{
    scenario base = {.name = "refuse", .checkpoints = true, .max_steps = 4, .checkpoint_every = 2};
    CHECK(run_scenario(&base) == 0, "run to refuse failed:\n%s", err);
    char *ck4 = path_printf("%s/refuse/checkpoints/0000004.safetensors", tmp);
    char want[2048];

    scenario renamed = base;
    renamed.max_steps = 6, renamed.resume_step = 4, renamed.script.load_step = 3;
    snprintf(want, sizeof want, "'%s': the checkpoint says step 3 but its file name says 4", ck4);
    int rc = run_scenario(&renamed);
    CHECK(rc == 1 && strstr(err, want), "renamed checkpoint: status %d, stderr:\n%s", rc, err);

    scenario past = base;
    past.max_steps = 6, past.resume_step = 4;
    past.script = (fake_script){.load_counters = true, .load_epoch = 0, .load_position = 5};
    snprintf(want, sizeof want, "'%s': data position 5 is past the 4 batches of an epoch", ck4);
    rc = run_scenario(&past);
    CHECK(rc == 1 && strstr(err, want), "position past the epoch: status %d, stderr:\n%s", rc, err);

    scenario other = base;
    other.max_steps = 6, other.resume_step = -1;
    other.script = (fake_script){.load_counters = true, .load_epoch = 0, .load_position = 3};
    snprintf(want, sizeof want, "'%s': step 4 does not match epoch 0, batch 3 at 4 batches per epoch", ck4);
    rc = run_scenario(&other);
    CHECK(rc == 1 && strstr(err, want), "counters of other data: status %d, stderr:\n%s", rc, err);

    /* At the end of an epoch (position = batches per epoch) is fine. */
    scenario edge = base;
    edge.max_steps = 5, edge.resume_step = 4;
    edge.script = (fake_script){.load_counters = true, .load_epoch = 0, .load_position = 4};
    rc = run_scenario(&edge);
    CHECK(rc == 0, "resume at the end of an epoch: status %d, stderr:\n%s", rc, err);

    scenario cannot = base;
    cannot.resume_step = 2, cannot.no_load = true;
    rc = run_scenario(&cannot);
    CHECK(rc == 1 && strstr(err, "fake: this command cannot resume (--resume-step)"),
          "resume without load: status %d, stderr:\n%s", rc, err);

    scenario missing = base;
    missing.resume_step = 9;
    rc = run_scenario(&missing);
    CHECK(rc == 1 && strstr(err, "0000009.safetensors"), "a missing checkpoint: status %d, stderr:\n%s", rc, err);

    /* As many logs as a run may have: all of them written. */
    scenario full = {.name = "full-logs", .checkpoints = true, .max_steps = 1, .n_logs = RUN_LOOP_MAX_LOGS};
    rc = run_scenario(&full);
    char *m = run_text("full-logs", "metrics.jsonl");
    CHECK(rc == 0 && m && strstr(m, "\"b\": -1.125, \"l2\": 2, ") && strstr(m, ", \"l31\": 31, \"p\": 1.5}\n"),
          "32 logs: status %d, metrics:\n%s", rc, m);
    free(m);

    scenario logs = {.name = "too-many", .max_steps = 1, .n_logs = RUN_LOOP_MAX_LOGS + 1};
    rc = run_scenario(&logs);
    CHECK(rc == 1 && strstr(err, "internal: fake logs more than 32 values"), "33 logs: status %d, stderr:\n%s", rc,
          err);
    scenario extras = {.name = "too-many", .max_steps = 1, .n_extras = RUN_LOOP_MAX_LOGS + 1};
    rc = run_scenario(&extras);
    CHECK(rc == 1 && strstr(err, "internal: fake logs more than 32 values"), "33 extras: status %d, stderr:\n%s",
          rc, err);
    free(ck4);
}

int main(void)
{
    tmp = test_tmp_dir("run_loop");
    RUN(test_cadence_and_files);
    RUN(test_metrics_on_disk_each_step);
    RUN(test_parity_checks_every_100_steps);
    RUN(test_nan_stop);
    RUN(test_signal_stop);
    RUN(test_resume_continues_the_run);
    RUN(test_resume_refusals);
    return test_summary();
}
