#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/path.h"

/* A folder must take a new file: access() alone would trust permission bits
 * that a read-only mount ignores, so try to create one. */
static void check_writable(const char *command, const char *dir)
{
    char *probe = path_printf("%s/.repae-write-test.tmp", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("%s: cannot write into '%s': %s (choose another --output-dir or fix its permissions)", command, dir,
            strerror(errno));
    close(fd);
    unlink(probe);
    free(probe);
}

/* Stale "<name>.tmp" files are half-written atomic files of a crashed run;
 * only the lock holder may remove them. */
static void remove_stale_tmp(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && !strcmp(e->d_name + n - 4, ".tmp")) {
            char *p = path_printf("%s/%s", dir, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(p) == 0)
                warn("removed '%s', left by an interrupted write", p);
            free(p);
        }
    }
    closedir(dp);
}

static void take_lock(run_dir *r, const char *command)
{
    char *path = path_printf("%s/.lock", r->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        die("%s: cannot create the lock file '%s': %s", command, path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        die("%s: '%s' is in use by another repae process (pid %s): one run folder has one writer; wait for it, "
            "or choose another --exp-name or --output-dir",
            command, r->dir, *pid ? pid : "unknown");
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
        die("%s: cannot write the lock file '%s': %s", command, path, strerror(errno));
    r->lock_fd = fd;
    free(path);
}

void run_dir_open(run_dir *r, const char *command, const char *output_dir, const char *exp_name, bool checkpoints)
{
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    if (!*output_dir)
        die("%s --output-dir: empty (give a folder, e.g. --output-dir exps)", command);
    if (!*exp_name)
        die("%s --exp-name: empty (give the run a name)", command);
    if (!strcmp(exp_name, ".") || !strcmp(exp_name, ".."))
        die("%s --exp-name '%s': not a run name", command, exp_name);
    r->dir = path_printf("%s/%s", output_dir, exp_name);
    if (dist_rank() != 0) { /* rank 0 alone writes the run folder */
        if (checkpoints) {
            r->ckdir = path_printf("%s/checkpoints", r->dir);
            r->sdir = path_printf("%s/samples", r->dir);
        }
        return;
    }
    make_dirs(r->dir);
    check_writable(command, r->dir);
    take_lock(r, command);
    remove_stale_tmp(r->dir);
    if (checkpoints) {
        r->ckdir = path_printf("%s/checkpoints", r->dir);
        r->sdir = path_printf("%s/samples", r->dir);
        make_dirs(r->ckdir);
        make_dirs(r->sdir);
        check_writable(command, r->ckdir);
        check_writable(command, r->sdir);
        remove_stale_tmp(r->ckdir);
        remove_stale_tmp(r->sdir);
    }
}

void run_dir_close(run_dir *r)
{
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the flock; the file stays (removing it would race a new writer) */
    free(r->dir), free(r->ckdir), free(r->sdir);
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
}

char *run_dir_file(const run_dir *r, const char *name) { return path_printf("%s/%s", r->dir, name); }
char *run_dir_checkpoint(const run_dir *r, long long step) { return path_printf("%s/%07lld.safetensors", r->ckdir, step); }
char *run_dir_preview(const run_dir *r, long long step) { return path_printf("%s/%07lld.png", r->sdir, step); }

/* "0001234.safetensors" → 1234; -1 for anything else (no sign, digits only). */
static long long checkpoint_file_step(const char *name)
{
    size_t n = strspn(name, "0123456789");
    if (n == 0 || n > 15 || strcmp(name + n, ".safetensors") != 0)
        return -1;
    return strtoll(name, NULL, 10);
}

long long run_dir_latest_step(const run_dir *r)
{
    DIR *dp = opendir(r->ckdir);
    if (!dp)
        return 0;
    long long best = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        long long s = checkpoint_file_step(e->d_name);
        if (s > best)
            best = s;
    }
    closedir(dp);
    return best;
}

char *run_dir_resume_path(const run_dir *r, const char *command, long long step, long long *file_step)
{
    if (step <= 0) {
        step = run_dir_latest_step(r);
        if (step <= 0)
            die("%s --resume-step -1: no checkpoint in '%s'", command, r->ckdir);
    }
    *file_step = step;
    return run_dir_checkpoint(r, step);
}

void run_dir_write_args(const run_dir *r, const char *args_json)
{
    char *path = run_dir_file(r, "args.json");
    atomic_file af = atomic_file_open(path);
    fputs(args_json, af.fp);
    fputc('\n', af.fp);
    atomic_file_commit(&af);
    free(path);
}

void run_dir_trim_metrics(const run_dir *r, long long step)
{
    char *path = run_dir_file(r, "metrics.jsonl");
    struct stat sb;
    if (stat(path, &sb) != 0) {
        free(path);
        return;
    }
    size_t size;
    char *text = read_file_all(path, &size);
    atomic_file af = atomic_file_open(path);
    long long dropped = 0;
    for (char *line = text; line < text + size;) {
        char *nl = memchr(line, '\n', (size_t)(text + size - line));
        if (!nl) { /* a line torn by a crash */
            dropped++;
            break;
        }
        long long s;
        if (sscanf(line, "{\"step\": %lld", &s) == 1 && s <= step)
            xfwrite(line, 1, (size_t)(nl + 1 - line), af.fp, path);
        else
            dropped++;
        line = nl + 1;
    }
    atomic_file_commit(&af);
    if (dropped)
        warn("'%s': dropped %lld line(s) after step %lld, written before the run was interrupted", path, dropped,
             step);
    free(text);
    free(path);
}
