/* The run folder and the checkpoint layout (src/train/run_dir.c,
 * src/train/checkpoint_file.c):
 *  - a checkpoint layout round-trips exactly, and loading is strict: a
 *    missing or unexpected tensor, a wrong format/kind/version, and counters
 *    that are not integers or out of range (step -5, position 2^32+1) each die
 *    naming the file and the key;
 *  - one writer per run folder: a second opener dies naming the folder and
 *    the first process's pid;
 *  - stale *.tmp files are removed when the folder is opened; an empty
 *    --output-dir or --exp-name is refused; paths longer than the old fixed
 *    1024-byte buffers work;
 *  - metrics.jsonl is trimmed to the resumed step, dropping a torn line.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/path.h"
#include "test.h"
#include "train/checkpoint_file.h"
#include "train/run_dir.h"

static const char *tmp;
#define tmp_path test_tmp_path

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* ---- checkpoint layout ---------------------------------------------------------- */

typedef struct tiny_state {
    param_table t;
    float *a, *b;
    long long step, epoch, position;
    float scalar;
} tiny_state;

static void tiny_init(tiny_state *s)
{
    memset(s, 0, sizeof *s);
    param_add(&s->t, "w", INIT_ZERO, 2, (int64_t[]){2, 3});
    param_add(&s->t, "b", INIT_ZERO, 1, (int64_t[]){3});
    s->a = param_alloc(&s->t);
    s->b = param_alloc(&s->t);
}

static ckpt_layout tiny_layout(tiny_state *s)
{
    ckpt_layout l = ckpt_layout_new("test-checkpoint", NULL, 3);
    ckpt_add_counter(&l, "step", &s->step, 0, CKPT_MAX_STEP);
    ckpt_add_counter(&l, "epoch", &s->epoch, 0, CKPT_MAX_STEP);
    ckpt_add_counter(&l, "position", &s->position, 0, INT32_MAX);
    ckpt_add_scalar(&l, "scalar", &s->scalar);
    ckpt_add_tensors(&l, "model.", &s->t, s->a);
    ckpt_add_tensors(&l, "opt.", &s->t, s->b);
    return l;
}

static void tiny_free(tiny_state *s)
{
    free(s->a), free(s->b);
    param_table_free(&s->t);
}

static void test_layout_round_trip(void)
{
    tiny_state s, r;
    tiny_init(&s), tiny_init(&r);
    for (int k = 0; k < s.t.n; k++)
        for (size_t i = 0; i < s.t.entries[k].numel; i++) {
            size_t j = s.t.entries[k].offset + i;
            s.a[j] = 0.25f * (float)j - 1, s.b[j] = 1e-3f * (float)j;
        }
    s.step = 1234, s.epoch = 5, s.position = 17, s.scalar = 0.1f;
    ckpt_layout l = tiny_layout(&s);
    ckpt_save(&l, tmp_path("ok.safetensors"), "{\"x\": 1}");
    ckpt_layout lr = tiny_layout(&r);
    ckpt_load(&lr, tmp_path("ok.safetensors"));
    CHECK(r.step == 1234 && r.epoch == 5 && r.position == 17 && r.scalar == 0.1f, "counters did not round-trip");
    CHECK(!memcmp(r.a, s.a, s.t.total * sizeof(float)) && !memcmp(r.b, s.b, s.t.total * sizeof(float)),
          "tensors did not round-trip");
    tiny_free(&s), tiny_free(&r);
}

/* Writes a file like tiny_layout's with one thing changed. */
typedef struct tamper {
    const char *format, *kind, *version, *step, *position, *scalar;
    bool extra_tensor, drop_tensor, extra_first;
} tamper;

static void write_tampered(const char *path, tamper t)
{
    float data[9] = {0};
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", t.format ? t.format : "test-checkpoint");
    if (t.kind)
        st_writer_set_metadata(w, "kind", t.kind);
    st_writer_set_metadata(w, "version", t.version ? t.version : "3");
    st_writer_set_metadata(w, "step", t.step ? t.step : "4");
    st_writer_set_metadata(w, "epoch", "0");
    st_writer_set_metadata(w, "position", t.position ? t.position : "4");
    if (t.scalar)
        st_writer_set_metadata(w, "scalar", t.scalar);
    if (t.extra_first) /* the file's first tensor */
        st_writer_add_f32(w, "a.extra", 1, (int64_t[]){3}, data);
    const char *names[] = {"model.w", "model.b", "opt.w", "opt.b"};
    for (int i = 0; i < 4; i++) {
        if (t.drop_tensor && i == 3)
            continue;
        if (i % 2 == 0)
            st_writer_add_f32(w, names[i], 2, (int64_t[]){2, 3}, data);
        else
            st_writer_add_f32(w, names[i], 1, (int64_t[]){3}, data);
    }
    if (t.extra_tensor)
        st_writer_add_f32(w, "model.w_misspelt", 1, (int64_t[]){3}, data);

    st_writer_save(w, path);
    st_writer_free(w);
}

static void load_tampered(void *ctx)
{
    tiny_state s;
    tiny_init(&s);
    ckpt_layout l = tiny_layout(&s);
    ckpt_load(&l, (const char *)ctx);
}

static void test_layout_load_is_strict(void)
{
    static const struct {
        const char *name;
        tamper t;
        const char *expect;
    } cases[] = {
        {"good", {0}, NULL},
        {"step_negative", {.step = "-5"}, "'step' = -5 is out of range"},
        {"position_2p32", {.position = "4294967297"}, "'position' = 4294967297 is out of range"},
        {"step_text", {.step = "12abc"}, "'step' = '12abc' is not an integer"},
        {"step_huge", {.step = "99999999999999999999999"}, "is not an integer"},
        {"version", {.version = "4"}, "version 4 is not supported"},
        {"format", {.format = "repae-vae-checkpoint"}, "not a test-checkpoint file"},
        {"kind", {.kind = "ldm"}, "a 'ldm' checkpoint"},
        {"extra", {.extra_tensor = true}, "unexpected tensor 'model.w_misspelt'"},
        {"missing", {.drop_tensor = true}, "missing tensor 'opt.b'"},
        {"scalar_nan", {.scalar = "nan"}, "'scalar' = 'nan' is not a finite number"},
        {"scalar_text", {.scalar = "0.5x"}, "'scalar' = '0.5x' is not a finite number"},
        {"extra_first", {.extra_first = true}, "unexpected tensor 'a.extra'"},
        {"position_max", {.position = "2147483647"}, NULL}, /* the range's ends are in it */
        {"step_zero", {.step = "0", .position = "0"}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = path_printf("%s/%s.safetensors", tmp, cases[i].name);
        write_tampered(path, cases[i].t);
        if (cases[i].expect)
            expect_die(cases[i].name, load_tampered, path, cases[i].expect);
        else {
            char err[2048];
            CHECK(run_in_child(load_tampered, path, err, sizeof err) == 0, "the untampered file failed: %s", err);
        }
        free(path);
    }
}

/* ---- run folder ------------------------------------------------------------------- */

static void open_run(void *ctx)
{
    run_dir r;
    run_dir_open(&r, "train", (const char *)ctx, "run", true);
    run_dir_close(&r);
}

static void open_run_named(void *name)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, (const char *)name, true);
}

static void check_file_text(const char *name, const char *want)
{
    size_t n;
    char *got = read_file_all(tmp_path(name), &n);
    CHECK(got && !strcmp(got, want), "%s:\n%s\nwant:\n%s", name, got ? got : "(missing)", want);
    free(got);
}

static void open_empty_output(void *ctx)
{
    run_dir r;
    run_dir_open(&r, "train", "", "run", true);
}

static void open_empty_name(void *ctx)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, "", true);
}

static void test_one_writer_per_folder(void)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, "run", true);
    char pid[64];
    snprintf(pid, sizeof pid, "in use by another repae process (pid %ld)", (long)getpid());
    expect_die("second writer", open_run, (void *)tmp, pid);
    run_dir_close(&r);
    char err[2048];
    CHECK(run_in_child(open_run, (void *)tmp, err, sizeof err) == 0, "after close the folder should open again: %s", err);
    expect_die("empty --output-dir", open_empty_output, NULL, "--output-dir: empty");
    expect_die("empty --exp-name", open_empty_name, NULL, "--exp-name: empty");
}

static void test_stale_tmp_removed(void)
{
    mkdir(tmp_path("stale"), 0755);
    mkdir(tmp_path("stale/checkpoints"), 0755);
    write_text(tmp_path("stale/checkpoints/0000004.safetensors.tmp"), "half a checkpoint");
    write_text(tmp_path("stale/args.json.tmp"), "{");
    write_text(tmp_path("stale/checkpoints/0000002.safetensors"), "kept");
    run_dir r;
    run_dir_open(&r, "train", tmp, "stale", true);
    CHECK(access(tmp_path("stale/checkpoints/0000004.safetensors.tmp"), F_OK) != 0, "stale checkpoint .tmp kept");
    CHECK(access(tmp_path("stale/args.json.tmp"), F_OK) != 0, "stale args.json.tmp kept");
    CHECK(access(tmp_path("stale/checkpoints/0000002.safetensors"), F_OK) == 0, "a real checkpoint was removed");
    CHECK(run_dir_latest_step(&r) == 2, "latest step %lld, want 2", run_dir_latest_step(&r));
    run_dir_close(&r);
}

static void test_long_paths(void)
{
    /* 6 components of 200 bytes: past the 1024-byte buffers run folders used to have. */
    char *dir = xstrdup(tmp);
    for (int i = 0; i < 6; i++) {
        char comp[201];
        memset(comp, 'a' + i, 200);
        comp[200] = 0;
        char *next = path_printf("%s/%s", dir, comp);
        free(dir);
        dir = next;
    }
    run_dir r;
    run_dir_open(&r, "train", dir, "run", true);
    char *ck = run_dir_checkpoint(&r, 7);
    CHECK(strlen(ck) > 1200 && strstr(ck, "/run/checkpoints/0000007.safetensors"), "checkpoint path '%s'", ck);
    write_text(ck, "x");
    CHECK(run_dir_latest_step(&r) == 7, "a checkpoint under a long path was not found");
    free(ck);
    run_dir_close(&r);
    free(dir);
}

static void test_trim_metrics(void)
{
    mkdir(tmp_path("trim"), 0755);
    write_text(tmp_path("trim/metrics.jsonl"), "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": null}\n"
                                               "{\"step\": 3, \"loss\": 3}\n{\"step\": 4, \"loss\": 4}\n"
                                               "{\"step\": 5, \"lo");
    run_dir r;
    run_dir_open(&r, "train", tmp, "trim", true);
    run_dir_trim_metrics(&r, 3);
    size_t n;
    char *m = read_file_all(tmp_path("trim/metrics.jsonl"), &n);
    CHECK(!strcmp(m, "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": null}\n{\"step\": 3, \"loss\": 3}\n"),
          "trimmed metrics:\n%s", m);
    free(m);
    run_dir_close(&r);
}

/* ---- the folder's edges ------------------------------------------------------------ */

static void open_and_close(void *name)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, (const char *)name, true);
    run_dir_close(&r);
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static void test_open_leaves_nothing_behind(void)
{
    /* A fresh folder: no message, and no write probe left in any of the three folders. */
    char err[4096];
    int rc = run_in_child(open_and_close, (void *)"clean", err, sizeof err);
    CHECK(rc == 0 && err[0] == 0, "opening a fresh run folder said: %s", err);
    const char *probes[3] = {"clean/.repae-write-test.tmp", "clean/checkpoints/.repae-write-test.tmp",
                             "clean/samples/.repae-write-test.tmp"};
    for (int i = 0; i < 3; i++)
        CHECK(!exists(tmp_path(probes[i])), "'%s' left behind", probes[i]);
    CHECK(exists(tmp_path("clean/.lock")), "no lock file");

    /* Stale files: only regular "<name>.tmp" files go, in every folder, each named in a warning; a
     * bare ".tmp", a folder and a link (and what it points to) stay. */
    mkdir(tmp_path("edge"), 0755);
    mkdir(tmp_path("edge/samples"), 0755);
    mkdir(tmp_path("edge/dir.tmp"), 0755);
    write_text(tmp_path("edge/.tmp"), "not ours");
    write_text(tmp_path("edge/samples/0000002.png.tmp"), "half a preview");
    write_text(tmp_path("target"), "kept");
    if (symlink(tmp_path("target"), tmp_path("edge/link.tmp")) != 0)
        CHECK(0, "symlink failed");
    rc = run_in_child(open_and_close, (void *)"edge", err, sizeof err);
    char want[1024];
    snprintf(want, sizeof want, "removed '%s', left by an interrupted write", tmp_path("edge/samples/0000002.png.tmp"));
    CHECK(rc == 0 && strstr(err, want) && !strstr(err, "edge/.tmp'") && !strstr(err, "link.tmp") &&
              !strstr(err, "dir.tmp"),
          "stale files: %s", err);
    CHECK(!exists(tmp_path("edge/samples/0000002.png.tmp")), "the stale preview was kept");
    CHECK(exists(tmp_path("edge/.tmp")) && exists(tmp_path("edge/dir.tmp")) && exists(tmp_path("edge/link.tmp")) &&
              exists(tmp_path("target")),
          "a bare .tmp, a folder or a link named *.tmp was removed");
    expect_die("--exp-name .", open_run_named, (void *)".", "train --exp-name '.': not a run name");
    expect_die("--exp-name ..", open_run_named, (void *)"..", "train --exp-name '..': not a run name");
}

static void resume_latest(void *ctx)
{
    run_dir *r = ctx;
    long long file_step;
    free(run_dir_resume_path(r, "train", -1, &file_step));
}

static void test_checkpoint_names_and_resume(void)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, "names", true);
    CHECK(run_dir_latest_step(&r) == 0, "an empty checkpoints folder: latest %lld", run_dir_latest_step(&r));
    char want[1024];
    snprintf(want, sizeof want, "train --resume-step -1: no checkpoint in '%s'", r.ckdir);
    expect_die("resume -1 with no checkpoint", resume_latest, &r, want);
    write_text(tmp_path("names/checkpoints/0000001.safetensors"), "x");
    long long file_step = 0;
    char *p = run_dir_resume_path(&r, "train", -1, &file_step);
    CHECK(file_step == 1 && strstr(p, "/0000001.safetensors"), "resume -1 with checkpoint 1 alone: %s (%lld)", p,
          file_step);
    free(p);
    write_text(tmp_path("names/checkpoints/0000003.safetensors"), "x");
    p = run_dir_resume_path(&r, "train", 1, &file_step);
    CHECK(file_step == 1 && strstr(p, "/0000001.safetensors"), "resume 1 with checkpoints 1 and 3: %s (%lld)", p,
          file_step);
    free(p);
    /* Names: digits only, at most 15 of them, then ".safetensors". */
    write_text(tmp_path("names/checkpoints/000000000000123.safetensors"), "x");    /* 15 digits */
    write_text(tmp_path("names/checkpoints/0000000000000004567.safetensors"), "x"); /* 19 digits */
    write_text(tmp_path("names/checkpoints/.safetensors"), "x");
    write_text(tmp_path("names/checkpoints/-900.safetensors"), "x");
    write_text(tmp_path("names/checkpoints/0000800.safetensors~"), "x");
    write_text(tmp_path("names/checkpoints/0000700.safetensor"), "x");
    CHECK(run_dir_latest_step(&r) == 123, "latest among odd names: %lld, want 123", run_dir_latest_step(&r));
    run_dir_close(&r);
    /* No checkpoints folder at all. */
    run_dir_open(&r, "train", tmp, "no-ck", false);
    r.ckdir = path_printf("%s/checkpoints", r.dir);
    CHECK(run_dir_latest_step(&r) == 0, "a missing checkpoints folder: latest %lld", run_dir_latest_step(&r));
    run_dir_close(&r);
}

static void trim_child(void *step)
{
    run_dir r;
    run_dir_open(&r, "train", tmp, "trim2", true);
    run_dir_trim_metrics(&r, *(const long long *)step);
    run_dir_close(&r);
}

static void test_trim_messages(void)
{
    mkdir(tmp_path("trim2"), 0755);
    write_text(tmp_path("trim2/metrics.jsonl"), "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 2}\n");
    char err[2048];
    long long two = 2, one = 1;
    int rc = run_in_child(trim_child, &two, err, sizeof err);
    CHECK(rc == 0 && err[0] == 0, "trimming nothing said: %s", err);
    check_file_text("trim2/metrics.jsonl", "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 2}\n");
    write_text(tmp_path("trim2/metrics.jsonl"), "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 2}\n{\"st");
    rc = run_in_child(trim_child, &one, err, sizeof err);
    CHECK(rc == 0 && strstr(err, "metrics.jsonl': dropped 2 line(s) after step 1, written before the run was "
                                 "interrupted"),
          "trimming a line and a torn one said: %s", err);
    check_file_text("trim2/metrics.jsonl", "{\"step\": 1, \"loss\": 1}\n");
}

/* ---- paths (src/core/path.c) ------------------------------------------------------ */

static void format_exact_fit(void *ctx)
{
    (void)ctx;
    char buf[8];
    path_format(buf, sizeof buf, "%s/%d", "abcd", 12); /* 7 bytes and the NUL */
    fprintf(stderr, "fit: %s|", buf);
    path_format(buf, sizeof buf, "%s/%d", "abcd", 123); /* 8 bytes: one too many */
}

static void dirs_of(void *ctx) { make_dirs((const char *)ctx); }

static void test_paths(void)
{
    /* path_printf: any length, exactly the formatted bytes. */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *p = path_printf("%s/%07lld.png", big, 42LL);
    CHECK(strlen(p) == 4999 + 12 && !strcmp(p + 4999, "/0000042.png"), "path_printf of a 5011-byte path");
    free(p);
    p = path_printf("%s", "");
    CHECK(p && !strcmp(p, ""), "path_printf of an empty string");
    free(p);
    /* path_format: a path that fits to the last byte is kept; one more dies naming the size and the start. */
    char err[1024];
    int rc = run_in_child(format_exact_fit, NULL, err, sizeof err);
    CHECK(!strncmp(err, "fit: abcd/12|", 13), "path_format of an exact fit: %s", err);
    CHECK(rc == 1 && strstr(err, "path too long (more than 7 bytes): 'abcd/12...'"), "path_format overflow: %d, %s",
          rc, err);
    char one[1] = {'x'};
    path_format(one, sizeof one, "%s", ""); /* an empty path fits in one byte */
    CHECK(one[0] == 0, "path_format of an empty path");

    /* make_dirs: nested, again (exists), with a trailing slash. */
    const char *deep = tmp_path("mk/a/b/c");
    make_dirs(deep);
    struct stat sb;
    CHECK(stat(deep, &sb) == 0 && S_ISDIR(sb.st_mode), "make_dirs did not create '%s'", deep);
    make_dirs(deep);
    char *slash = path_printf("%s/d/", deep);
    make_dirs(slash);
    free(slash);
    CHECK(stat(tmp_path("mk/a/b/c/d"), &sb) == 0 && S_ISDIR(sb.st_mode), "make_dirs with a trailing slash");
    /* a file where a folder should be: as the last component, and in the middle */
    write_text(tmp_path("mk/file"), "x");
    char want[1024];
    snprintf(want, sizeof want, "'%s' exists but is not a directory", tmp_path("mk/file"));
    expect_die("make_dirs onto a file", dirs_of, (void *)tmp_path("mk/file"), want);
    snprintf(want, sizeof want, "cannot create directory '%s': Not a directory", tmp_path("mk/file/sub"));
    expect_die("make_dirs through a file", dirs_of, (void *)tmp_path("mk/file/sub/deeper"), want);
    expect_die("make_dirs right under a file", dirs_of, (void *)tmp_path("mk/file/sub"), want);
    expect_die("make_dirs of an empty name", dirs_of, (void *)"", "cannot create a directory with an empty name");
}

int main(void)
{
    tmp = test_tmp_dir("run_dir");
    RUN(test_layout_round_trip);
    RUN(test_layout_load_is_strict);
    RUN(test_one_writer_per_folder);
    RUN(test_stale_tmp_removed);
    RUN(test_long_paths);
    RUN(test_trim_metrics);
    RUN(test_paths);
    RUN(test_open_leaves_nothing_behind);
    RUN(test_checkpoint_names_and_resume);
    RUN(test_trim_messages);
    return test_summary();
}
