/* run_dir.h — the folder a training run writes into, and its one writer.
 *
 *   <output-dir>/<exp-name>/            args.json, metrics.jsonl, .lock
 *   <output-dir>/<exp-name>/checkpoints/NNNNNNN.safetensors
 *   <output-dir>/<exp-name>/samples/NNNNNNN.png
 *
 * Opening a run folder creates it, checks that it can be written before any
 * training starts, and takes an exclusive lock (flock on `.lock`, holding
 * the writer's pid): a second process on the same folder dies naming the
 * folder and the first process instead of interleaving checkpoints.  Holding
 * the lock also makes it safe to delete the `*.tmp` files an earlier crash
 * left behind (atomic writes go through `<path>.tmp`).
 *
 *   run_dir rd;
 *   run_dir_open(&rd, "train", o.output_dir, o.exp_name, true);
 *   char *ck = run_dir_checkpoint(&rd, step);      // malloc'd, free it
 *   run_dir_close(&rd);
 *
 * Paths are heap strings: no length limit but the file system's.  Over
 * several processes only rank 0 creates, locks and writes the folder; the
 * other ranks just know its paths (to read a checkpoint when resuming).
 */
#ifndef REPAE_RUN_DIR_H
#define REPAE_RUN_DIR_H

#include <stdbool.h>

typedef struct run_dir {
    char *dir;   /* <output-dir>/<exp-name> */
    char *ckdir; /* dir/checkpoints (NULL without checkpoints) */
    char *sdir;  /* dir/samples (NULL without checkpoints) */
    int lock_fd;
} run_dir;

/* Creates the folders (checkpoints/ and samples/ too when `checkpoints`),
 * checks they are writable, takes the lock and removes stale *.tmp files.
 * Dies naming `command`, the flag or the folder on any problem. */
void run_dir_open(run_dir *r, const char *command, const char *output_dir, const char *exp_name, bool checkpoints);
/* Releases the lock and frees the paths. */
void run_dir_close(run_dir *r);

/* malloc'd paths: <dir>/<name>, checkpoints/NNNNNNN.safetensors, samples/NNNNNNN.png. */
char *run_dir_file(const run_dir *r, const char *name);
char *run_dir_checkpoint(const run_dir *r, long long step);
char *run_dir_preview(const run_dir *r, long long step);

/* The checkpoint --resume-step names (step > 0: that one, -1: the latest),
 * malloc'd; *file_step is the step its file name says.  Dies naming
 * `command` if there is none. */
char *run_dir_resume_path(const run_dir *r, const char *command, long long step, long long *file_step);
/* The highest NNNNNNN.safetensors step in the checkpoints folder; 0 if none. */
long long run_dir_latest_step(const run_dir *r);

/* <dir>/args.json, written atomically. */
void run_dir_write_args(const run_dir *r, const char *args_json);
/* Keeps the lines of <dir>/metrics.jsonl up to `step` (a run resumed after a
 * crash repeats the steps after its checkpoint) and drops a torn last line;
 * rewritten atomically.  A missing file is fine. */
void run_dir_trim_metrics(const run_dir *r, long long step);

#endif
