#include "train/run_loop.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
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
    /* "the latest" is rank 0's answer, so every rank loads the same file */
    if (resume_step < 0 && dist_world() > 1) {
        long long latest = dist_rank() == 0 ? run_dir_latest_step(rl->dir) : 0;
        dist_broadcast(&latest, sizeof latest, 0);
        if (latest > 0)
            resume_step = latest;
    }
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
    if (dist_rank() == 0) {
        run_dir_trim_metrics(rl->dir, step);
        fprintf(stderr, "resumed from '%s' at step %lld\n", path, step);
    }
    free(path);
}

static void save(run_loop *rl, long long step)
{
    char *path = rl->save_path ? NULL : run_dir_checkpoint(rl->dir, step);
    rl->save(rl->ctx, path ? path : rl->save_path, rl->data->epoch, rl->data->position);
    free(path);
}

/* Over several processes: the logs become their mean over the ranks (every
 * logged value is a mean over the local batch, and local batches are equal)
 * and a stop requested on any rank stops all of them at the same step. */
static int sync_step(run_loop *rl, double *logs)
{
    if (dist_world() == 1)
        return (int)stop_requested;
    double v[RUN_LOOP_MAX_LOGS + 1];
    for (int k = 0; k < rl->n_logs; k++)
        v[k] = logs[k];
    dist_allreduce_sum_f64(v, (size_t)rl->n_logs);
    for (int k = 0; k < rl->n_logs; k++)
        logs[k] = v[k] / dist_world();
    double stop = stop_requested;
    dist_allreduce_max_f64(&stop, 1);
    return (int)stop;
}

/* Every this many steps (and at each checkpoint) the ranks compare their
 * parameters: data parallelism keeps them identical, bit for bit. */
#define RUN_LOOP_CHECK_EVERY 100

int run_loop_run(run_loop *rl, long long resume_step, const char *args_json)
{
    if (rl->n_logs > RUN_LOOP_MAX_LOGS || rl->n_extras > RUN_LOOP_MAX_LOGS)
        die("internal: %s logs more than %d values", rl->command, RUN_LOOP_MAX_LOGS);
    const bool writer = dist_rank() == 0;
    if (resume_step != 0) {
        if (!rl->load)
            die("%s: this command cannot resume (--resume-step)", rl->command);
        resume(rl, resume_step);
    } else if (writer) {
        run_dir_write_args(rl->dir, args_json);
    }
    char *metrics_path = run_dir_file(rl->dir, "metrics.jsonl");
    FILE *metrics = writer ? xfopen(metrics_path, resume_step ? "a" : "w") : NULL;
    stop_requested = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    long long step = rl->current_step(rl->ctx);
    progress pb = progress_start(rl->command, rl->max_steps, "it");
    double logs[RUN_LOOP_MAX_LOGS], extras[RUN_LOOP_MAX_LOGS];
    char status[512];
    int exit_code = 0, stop = 0;
    while (step < rl->max_steps) {
        step = rl->step(rl->ctx, logs);
        stop = sync_step(rl, logs);
        int bad = -1;
        for (int k = 0; k < rl->n_logs; k++)
            if (!isfinite(logs[k]) && bad < 0)
                bad = k;
        bool last = step >= rl->max_steps;
        bool preview = bad < 0 && rl->preview && ((rl->preview_first && step == 1) || due(step, rl->preview_every) || last);
        bool checkpoint = bad < 0 && rl->save && (due(step, rl->checkpoint_every) || last || stop);
        if (rl->check_same && (checkpoint || due(step, RUN_LOOP_CHECK_EVERY)))
            rl->check_same(rl->ctx);
        if (writer) {
            fprintf(metrics, "{\"step\": %lld, \"epoch\": %lld", step, rl->data->epoch);
            for (int k = 0; k < rl->n_logs; k++)
                write_value(metrics, rl->log_names[k], logs[k]);
            if (preview) {
                char *png = rl->dir->sdir ? run_dir_preview(rl->dir, step) : NULL;
                rl->preview(rl->ctx, step, png, extras);
                for (int k = 0; k < rl->n_extras; k++)
                    write_value(metrics, rl->extra_names[k], extras[k]);
                free(png);
            }
            fputs("}\n", metrics);
            fflush(metrics);
        }
        if (bad >= 0) {
            progress_finish(&pb);
            if (writer && rl->nan_note)
                fprintf(stderr, "repae: error: %s is %g at step %lld: training stopped; %s\n", rl->log_names[bad],
                        logs[bad], step, rl->nan_note);
            else if (writer)
                fprintf(stderr,
                        "repae: error: %s is %g at step %lld: training stopped; the last good checkpoint in '%s' is "
                        "intact (try a lower learning rate, or resume with --resume-step -1)\n",
                        rl->log_names[bad], logs[bad], step, rl->dir->ckdir);
            exit_code = 1;
            break;
        }
        if (writer) {
            rl->status(rl->ctx, logs, status, sizeof status);
            progress_update(&pb, step, "%s", status);
            if (checkpoint)
                save(rl, step);
        }
        if (stop) {
            progress_finish(&pb);
            if (writer)
                fprintf(stderr, "repae: stopped by signal %d at step %lld; checkpoint saved in '%s'\n", stop, step,
                        rl->save_path ? rl->save_path : rl->dir->ckdir);
            break;
        }
    }
    if (!stop && exit_code == 0)
        progress_finish(&pb);
    if (metrics)
        xfclose(metrics, metrics_path);
    free(metrics_path);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    stop_requested = stop;
    if (dist_world() > 1 && writer && step > 0)
        fprintf(stderr, "data parallel: %d processes, %.0f bytes sent per step by rank 0\n", dist_world(),
                (double)dist_bytes_sent() / (double)step);
    /* Rank 0 has written its files and messages before any rank may exit
     * (a non-zero exit aborts the whole job). */
    double sync = 0;
    dist_allreduce_max_f64(&sync, 1);
    return exit_code;
}
