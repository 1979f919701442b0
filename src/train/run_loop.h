/* run_loop.h — the one training loop every trainer runs.
 *
 * A trainer (REPA-E, LDM, VAE pre-training, encoder/classifier) supplies a
 * step function and the names of the scalars it logs; the loop does the
 * rest, the same way for every command:
 *   - resume: the checkpoint --resume-step names (its counters checked
 *     against its file name and the data loader), or a fresh args.json;
 *   - metrics.jsonl: one JSON object per step ({"step", "epoch", logs...,
 *     extras on preview steps}); a non-finite value is written as null;
 *   - the NaN stop: any non-finite logged value ends the run with status 1,
 *     before a checkpoint could be overwritten with it;
 *   - cadence: a checkpoint every `checkpoint_every` steps, at the last step
 *     and on a stop; a preview every `preview_every` steps (and at step 1
 *     when `preview_first`) and at the last step;
 *   - SIGINT/SIGTERM: the current step finishes, a checkpoint is written,
 *     the run exits 0;
 *   - the progress bar;
 *   - over several processes (mpirun): rank 0 alone writes files and
 *     messages, the logs are averaged over the ranks, a signal on any rank
 *     stops all at the same step, and the ranks' parameters are compared
 *     every 100 steps and at each checkpoint.
 *
 *   run_loop rl = {.command = "train", .dir = &rd, .data = &ld, .max_steps = N, ...,
 *                  .ctx = &trainer, .step = my_step, .save = my_save, .load = my_load};
 *   int status = run_loop_run(&rl, o.resume_step, args_json);
 */
#ifndef REPAE_RUN_LOOP_H
#define REPAE_RUN_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include "data/loader.h"
#include "train/run_dir.h"

#define RUN_LOOP_MAX_LOGS 32

typedef struct run_loop {
    const char *command; /* "train", ... for messages */
    run_dir *dir;
    loader *data;
    long long max_steps, checkpoint_every, preview_every; /* 0: never (except the last step) */
    bool preview_first;                                   /* also preview at step 1 */

    int n_logs; /* logged scalars, in metrics order (at most RUN_LOOP_MAX_LOGS) */
    const char *const *log_names;
    int n_extras; /* values a preview adds to its step's metrics line */
    const char *const *extra_names;

    void *ctx;
    /* Runs one step, fills logs[n_logs], returns the step count after it. */
    long long (*step)(void *ctx, double *logs);
    /* The progress bar's status text for the latest logs. */
    void (*status)(void *ctx, const double *logs, char *buf, size_t size);
    /* Writes a checkpoint (NULL: none).  path is checkpoints/NNNNNNN.safetensors,
     * or save_path when set (a network file rewritten in place). */
    void (*save)(void *ctx, const char *path, long long epoch, long long position);
    const char *save_path;
    /* Restores a checkpoint written by save and returns its loader position
     * (NULL: the command cannot resume). */
    void (*load)(void *ctx, const char *path, long long *epoch, long long *position);
    /* Returns the current step count (after load). */
    long long (*current_step)(void *ctx);
    /* Writes a preview (png: samples/NNNNNNN.png) and fills extras[n_extras]
     * (NULL: no previews). */
    void (*preview)(void *ctx, long long step, const char *png, double *extras);
    /* Over several processes: dies if the ranks' parameters differ
     * (dist_check_same), called every 100 steps and at each checkpoint
     * (NULL: no check). */
    void (*check_same)(void *ctx);

    /* What is on disk after a NaN stop (NULL: "the last good checkpoint in
     * <checkpoints> is intact"). */
    const char *nan_note;
} run_loop;

/* Resumes (resume_step > 0: that checkpoint, -1: the latest, 0: a fresh run
 * that writes args.json), then trains to max_steps.  Returns the exit status:
 * 0 when finished or stopped by a signal, 1 after a NaN stop. */
int run_loop_run(run_loop *rl, long long resume_step, const char *args_json);

/* Whether a stop was requested by SIGINT/SIGTERM (the signal number, else 0). */
int run_loop_stop_signal(void);

#endif
