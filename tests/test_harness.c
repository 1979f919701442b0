/* The test harness itself (tests/harness.c): a failed CHECK may not be
 * lost, wherever it happens — in a forked child (run_in_child, whose memory
 * goes with it) or outside any RUN (a program's second mode, such as
 * test_mpi's rank side, which once printed "0 passed, 0 failed" and exited 0
 * over failing checks). */
#include <fcntl.h>
#include <unistd.h>

#include "test.h"

static void child_with_failing_check(void *ctx)
{
    (void)ctx;
    CHECK(0, "a deliberate failure in the child");
}

static void child_with_passing_check(void *ctx)
{
    (void)ctx;
    CHECK(1, "never printed");
}

/* The parent's report of the deliberate failure goes to /dev/null: the log
 * of a passing run shows no FAIL line. */
static int quiet_stderr(void)
{
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    close(devnull);
    return saved;
}

static void restore_stderr(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

static void test_child_check_reaches_the_parent(void)
{
    char err[2048];
    int before = test_checks_failed_in_current, saved = quiet_stderr();
    int rc = run_in_child(child_with_failing_check, NULL, err, sizeof err);
    restore_stderr(saved);
    int counted = test_checks_failed_in_current - before;
    test_checks_failed_in_current = before; /* the deliberate failure is not this test's */
    CHECK(rc == CHILD_CHECKS_FAILED, "child with a failed CHECK: status %d, want %d", rc, CHILD_CHECKS_FAILED);
    CHECK(counted == 1, "the parent counted %d failures for the child's failed CHECK, want 1", counted);
    CHECK(strstr(err, "a deliberate failure in the child") != NULL, "the child's message: %s", err);
    rc = run_in_child(child_with_passing_check, NULL, err, sizeof err);
    CHECK(rc == 0 && test_checks_failed_in_current == before, "a child whose checks pass: status %d", rc);
}

static void passing_test(void) { CHECK(1, "never printed"); }

/* In a child: one passing RUN, then a failing CHECK in no test; the
 * summary must fail the program. */
static void program_with_check_outside_tests(void *ctx)
{
    (void)ctx;
    test_run("passing_test", passing_test);
    CHECK(0, "a deliberate failure outside any test");
    fflush(stdout);
    _exit(test_summary());
}

static void test_check_outside_a_test_fails_the_program(void)
{
    char err[2048];
    int before = test_checks_failed_in_current;
    int rc = run_in_child(program_with_check_outside_tests, NULL, err, sizeof err);
    test_checks_failed_in_current = before;
    CHECK(rc == 1, "a program with a failed CHECK outside its tests: status %d, want 1", rc);
    CHECK(strstr(err, "a deliberate failure outside any test") != NULL, "its message: %s", err);
}

int main(void)
{
    RUN(test_child_check_reaches_the_parent);
    RUN(test_check_outside_a_test_fails_the_program);
    return test_summary();
}
