/* Class labels from the command line (src/io/labels.c): a list "3,1,4" or a
 * text file; every separator, the bounds of a label, a list past the
 * parser's first 1,024 slots, and each refusal with its message. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/labels.h"
#include "test.h"


static void expect_labels(const char *what, const char *arg, int n, const int *want)
{
    int got_n = -1;
    int *got = labels_parse(arg, "--labels", &got_n);
    CHECK(got_n == n && !memcmp(got, want, (size_t)n * sizeof *want), "%s: %d labels, want %d", what, got_n, n);
    free(got);
}

static void test_lists_and_files(void)
{
    expect_labels("a list", "3,1,4", 3, (int[]){3, 1, 4});
    expect_labels("one label", "0", 1, (int[]){0});
    expect_labels("spaces and doubled commas", " 7 ,, 8 9,", 3, (int[]){7, 8, 9});
    expect_labels("the largest label", "1073741823", 1, (int[]){(1 << 30) - 1});
    expect_labels("a file", test_write_tmp("l.txt", "5\n6\r\n\t7, 8\n", 11), 4, (int[]){5, 6, 7, 8});
    expect_labels("a sign", test_write_tmp("sign.txt", "1 +2\n", 5), 2, (int[]){1, 2});
    /* A name of digits only is a list, even where a file of that name exists. */
    char here[4096];
    CHECK(getcwd(here, sizeof here) != NULL, "getcwd");
    CHECK(chdir(test_tmp_dir("labels")) == 0, "chdir");
    test_write_tmp("12", "99\n", 3);
    expect_labels("digits are a list", "12", 1, (int[]){12});
    test_write_tmp("12.txt", "5\n", 2);
    expect_labels("a name with a letter is a file", "12.txt", 1, (int[]){5});
    CHECK(chdir(here) == 0, "chdir back");

    /* 3,000 labels: the table grows twice past its first 1,024 slots. */
    enum { N = 3000 };
    char *text = xmalloc(N * 6 + 1), *p = text;
    int *want = xmalloc(N * sizeof *want);
    for (int i = 0; i < N; i++) {
        want[i] = (i * 37) % 1000;
        p += sprintf(p, "%d\n", want[i]);
    }
    expect_labels("3,000 labels in a file", test_write_tmp("many.txt", text, (size_t)(p - text)), N, want);
    free(text), free(want);
}

static void parse_job(void *arg)
{
    int n;
    labels_parse(arg, "sample --labels", &n);
}

static void test_refusals(void)
{
    static const struct {
        const char *label, *arg, *problem;
    } cases[] = {
        {"2^30", "1073741824", "'1073741824' in '1073741824' is not a non-negative integer below 2^30"},
        {"past a long", "99999999999999999999", "is not a non-negative integer below 2^30"},
        {"an empty list", "", "'' is neither a comma-separated list of labels nor an existing file"},
        {"commas only", ",,", "sample --labels: no labels in ',,'"},
        {"a negative label", "-1", "'-1' is neither a comma-separated list"},
        {"a missing file", "/nonexistent/labels.txt", "'/nonexistent/labels.txt' is neither"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_die(cases[i].label, parse_job, (void *)cases[i].arg, cases[i].problem);

    expect_die("a fraction in a file", parse_job, (void *)test_write_tmp("frac.txt", "1 2.5\n", 6),
               "'.5\n' in '");
    expect_die("a word in a file", parse_job, (void *)test_write_tmp("word.txt", "1 cat 2\n", 8),
               "'cat 2\n' in '");
    expect_die("a minus in a file", parse_job, (void *)test_write_tmp("neg.txt", "-3\n", 3), "'-3\n' in '");
    expect_die("an empty file", parse_job, (void *)test_write_tmp("empty.txt", "", 0), "no labels in '");
    expect_die("white space only", parse_job, (void *)test_write_tmp("blank.txt", " \n\t\r\n", 5), "no labels in '");
    expect_die("a NUL byte", parse_job, (void *)test_write_tmp("nul.txt", "1 2\0 3\n", 7), "nul.txt' contains a NUL byte");
    expect_die("a directory", parse_job, (void *)test_tmp_dir("labels"), "is a directory, not a regular file");
    /* The message quotes at most 20 characters of the bad entry. */
    expect_die("a long bad entry", parse_job, (void *)test_write_tmp("long.txt", "x123456789012345678901234\n", 26),
               "'x1234567890123456789' in '");
}

int main(void)
{
    test_tmp_dir("labels");
    RUN(test_lists_and_files);
    RUN(test_refusals);
    return test_summary();
}
