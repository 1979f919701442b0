/* test.h — the tiny test harness (tests/harness.c) every tests/test_*.c uses.
 *
 * Each test file is its own program:
 *
 *   static void test_gemm_matches_reference(void) {
 *       ...
 *       CHECK(x == 3, "x should be 3, got %d", x);
 *       check_close("gemm C", got, want, n, 1e-5, 1e-5);
 *   }
 *   int main(void) {
 *       RUN(test_gemm_matches_reference);
 *       return test_summary();      // prints "N passed, N failed", exit code
 *   }
 *
 * A check counts once; a test function passes if all its checks passed.
 * Fixtures are safetensors files under tests/fixtures/ written by the
 * PyTorch scripts in dev/ref/ (see docs/testing.md for the naming rules).
 */
#ifndef REPAE_TEST_H
#define REPAE_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/safetensors.h"

extern int test_checks_failed_in_current;

#define CHECK(cond, ...) check_at(__FILE__, __LINE__, (cond) ? 1 : 0, __VA_ARGS__)
void check_at(const char *file, int line, int ok, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define RUN(fn) test_run(#fn, fn)
/* The exit status of a run_in_child child whose CHECKs failed (the parent
 * then fails the current test with the child's stderr). */
#define CHILD_CHECKS_FAILED 86
void test_run(const char *name, void (*fn)(void));
int test_summary(void);

/* Elementwise |got - want| <= atol + rtol * |want|; prints max abs and max
 * relative error and the worst index.  Returns 1 if close. */
int check_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol);

/* Random inputs for tests (deterministic per seed). */
void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
void fill_normal(float *x, size_t n, float std, uint64_t seed);
float *alloc_uniform(size_t n, float lo, float hi, uint64_t seed);
float *alloc_normal(size_t n, float std, uint64_t seed);
float *alloc_zeros(size_t n);
/* Memory that ends where a page no access is allowed to begins: a read or
 * write one byte past it (a whole vector where a masked one is due, a loop
 * one past the end) faults, where past a heap block it would pass unseen
 * outside ASan.  Free with free_guarded and the same size. */
void *alloc_guarded(size_t bytes);
void free_guarded(void *p, size_t bytes);
/* n normal values (std, seed: fill_normal) in guarded memory */
float *alloc_normal_guarded(size_t n, float std, uint64_t seed);

/* Little-endian fields of the binary formats that tests build or patch. */
static inline uint32_t le16(const uint8_t *p) { return p[0] | p[1] << 8; }
static inline uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }
static inline uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- fixtures ---- */
/* Opens tests/fixtures/<name>.safetensors (dies with a hint to run `make fixtures`). */
safetensors *fixture_open(const char *name);
/* malloc'd f32 copy of a fixture tensor; *numel gets the element count. */
float *fixture_f32(const safetensors *st, const char *name, size_t *numel);
/* Checks that `got` matches the fixture tensor `name`. */
int fixture_check(const safetensors *st, const char *name, const float *got, size_t n, double atol, double rtol);

/* ---- finite differences ----
 * loss(ctx) runs the forward and returns a scalar (usually sum(out * cot),
 * accumulated in double).  fd_check perturbs each x[i] by ±h, estimates
 * dL/dx[i] and compares with grad[i]:  |fd - grad| <= atol + rtol * max|grad|.
 * For big tensors pass max_elems > 0 to test a random subset of elements.
 * fd_check_direction tests one random unit direction u instead:
 * (L(x+hu) - L(x-hu)) / 2h against <grad, u> (kann's cheap check). */
typedef double (*fd_loss_fn)(void *ctx);
int fd_check(const char *what, fd_loss_fn loss, void *ctx, float *x, const float *grad, size_t n, double h,
             double atol, double rtol, size_t max_elems);
int fd_check_direction(const char *what, fd_loss_fn loss, void *ctx, float *x, const float *grad, size_t n,
                       double h, double rtol, uint64_t seed);

/* sum(out * cot) in double: the usual scalar for a gradient check. */
double dot_f64(const float *a, const float *b, size_t n);

/* Entries of /proc/self/fd, and lines of /proc/self/maps: what a file left
 * open or mapped would add to (-1 when /proc cannot be read). */
int count_open_fds(void);
int count_mappings(void);

/* How many times `needle` occurs in `text`, without overlaps (counting messages in captured stderr). */
int count_of(const char *text, const char *needle);

/* ---- death tests ----
 * run_in_child runs fn(ctx) in a forked child (stdout discarded, stderr
 * captured into err, NUL-terminated and truncated to err_size; err may be
 * NULL) and returns the child's exit status: 0 if fn returned, 128 + signal
 * if it was killed (a child still running after 30 s gets SIGALRM), -1 if
 * the fork failed.  Under LeakSanitizer the child's allocations are not
 * reported (die() exits with live allocations by design), and OpenMP runs
 * single-threaded (libgomp's thread pool does not survive fork(): a region
 * with an explicit num_threads(k > 1) clause would still hang in the child
 * until the 30 s alarm).
 * run_command runs `/bin/sh -c cmd` the same way, capturing stdout into out
 * and stderr into err (either may be NULL).
 * expect_die passes if fn(ctx) exits with status 1 and its stderr contains
 * expected_substring (NULL: any message); otherwise a CHECK fails naming
 * `what`, the status and the child's stderr.  expect_command_fails does the
 * same for a shell command.  Both return 1 on pass. */
int run_in_child(void (*fn)(void *), void *ctx, char *err, size_t err_size);
int run_command(const char *cmd, char *out, size_t out_size, char *err, size_t err_size);
int expect_die(const char *what, void (*fn)(void *), void *ctx, const char *expected_substring);
int expect_command_fails(const char *cmd, const char *expected_substring);

/* A scratch folder /tmp/repae_<tag>_XXXXXX, made on the first call and
 * removed (with everything in it) when the test program exits (unless
 * KEEP_TMP is set); test_tmp_path
 * returns "<folder>/<name>" in one of 8 rotating buffers. */
const char *test_tmp_dir(const char *tag);
const char *test_tmp_path(const char *name);
/* Writes n bytes to test_tmp_path(name) and returns that path. */
const char *test_write_tmp(const char *name, const void *data, size_t n);

#endif
