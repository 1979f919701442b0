#include "train/run_loop.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }
int run_loop_stop_signal(void) { return (int)stop_requested; }

/* JSON has no NaN or Infinity: a non-finite value is written as null (and
 * `repae plot` draws a gap there). */
static void write_value(FILE *f, const char *name, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.8g", name, v);
    else
        fprintf(f, ", \"%s\": null", name);
}

static bool due(long long step, long long every) { return every > 0 && step % every == 0; }

/* Restores the checkpoint and checks its counters against its file name and
 * the data loader before anything trains on them. */
static void resume(run_loop *rl, long long resume_step)
{
    long long file_step, epoch, position;
    char *path = run_dir_resume_path(rl->dir, rl->command, resume_step, &file_step);
    rl->load(rl->ctx, path, &epoch, &position);
    long long step = rl->current_step(rl->ctx);
    if (step != file_step)
        die("'%s': the checkpoint says step %lld but its file name says %lld; the file was renamed or damaged", path,
            step, file_step);
    int bpe = rl->data->batches_per_epoch;
    if (position > bpe)
        die("'%s': data position %lld is past the %d batches of an epoch: this checkpoint was written for other "
            "data or another --batch-size",
            path, position, bpe);
    if (epoch * bpe + position != step)
        die("'%s': step %lld does not match epoch %lld, batch %lld at %d batches per epoch: this checkpoint was "
            "written for other data or another --batch-size",
            path, step, epoch, position, bpe);
    loader_seek(rl->data, epoch, (int)position);
    run_dir_trim_metrics(rl->dir, step);
    fprintf(stderr, "resumed from '%s' at step %lld\n", path, step);
    free(path);
}

static void save(run_loop *rl, long long step)
{
    char *path = rl->save_path ? NULL : run_dir_checkpoint(rl->dir, step);
    rl->save(rl->ctx, path ? path : rl->save_path, rl->data->epoch, rl->data->position);
    free(path);
}

int run_loop_run(run_loop *rl, long long resume_step, const char *args_json)
{
    if (rl->n_logs > RUN_LOOP_MAX_LOGS || rl->n_extras > RUN_LOOP_MAX_LOGS)
        die("internal: %s logs more than %d values", rl->command, RUN_LOOP_MAX_LOGS);
    if (resume_step != 0) {
        if (!rl->load)
            die("%s: this command cannot resume (--resume-step)", rl->command);
        resume(rl, resume_step);
    } else {
        run_dir_write_args(rl->dir, args_json);
    }
    char *metrics_path = run_dir_file(rl->dir, "metrics.jsonl");
    FILE *metrics = xfopen(metrics_path, resume_step ? "a" : "w");
    stop_requested = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    long long step = rl->current_step(rl->ctx);
    progress pb = progress_start(rl->command, rl->max_steps, "it");
    double logs[RUN_LOOP_MAX_LOGS], extras[RUN_LOOP_MAX_LOGS];
    char status[512];
    int exit_code = 0;
    while (step < rl->max_steps) {
        step = rl->step(rl->ctx, logs);
        fprintf(metrics, "{\"step\": %lld, \"epoch\": %lld", step, rl->data->epoch);
        int bad = -1;
        for (int k = 0; k < rl->n_logs; k++) {
            write_value(metrics, rl->log_names[k], logs[k]);
            if (!isfinite(logs[k]) && bad < 0)
                bad = k;
        }
        bool last = step >= rl->max_steps;
        if (bad < 0 && rl->preview && ((rl->preview_first && step == 1) || due(step, rl->preview_every) || last)) {
            char *png = rl->dir->sdir ? run_dir_preview(rl->dir, step) : NULL;
            rl->preview(rl->ctx, step, png, extras);
            for (int k = 0; k < rl->n_extras; k++)
                write_value(metrics, rl->extra_names[k], extras[k]);
            free(png);
        }
        fputs("}\n", metrics);
        fflush(metrics);
        if (bad >= 0) {
            progress_finish(&pb);
            if (rl->nan_note)
                fprintf(stderr, "repae: error: %s is %g at step %lld: training stopped; %s\n", rl->log_names[bad],
                        logs[bad], step, rl->nan_note);
            else
                fprintf(stderr,
                        "repae: error: %s is %g at step %lld: training stopped; the last good checkpoint in '%s' is "
                        "intact (try a lower learning rate, or resume with --resume-step -1)\n",
                        rl->log_names[bad], logs[bad], step, rl->dir->ckdir);
            exit_code = 1;
            break;
        }
        rl->status(rl->ctx, logs, status, sizeof status);
        progress_update(&pb, step, "%s", status);
        if (rl->save && (due(step, rl->checkpoint_every) || last || stop_requested))
            save(rl, step);
        if (stop_requested) {
            progress_finish(&pb);
            fprintf(stderr, "repae: stopped by signal %d at step %lld; checkpoint saved in '%s'\n",
                    (int)stop_requested, step, rl->save_path ? rl->save_path : rl->dir->ckdir);
            break;
        }
    }
    if (!stop_requested && exit_code == 0)
        progress_finish(&pb);
    xfclose(metrics, metrics_path);
    free(metrics_path);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return exit_code;
}
