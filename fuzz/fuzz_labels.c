/* --labels files and lists (sample), and --noise-style float data: the
 * finite check every loader runs on what it reads. */
#include "common.h"
#include "core/finite_check.h"
#include "io/labels.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t *in;
static size_t in_size;

static void parse_file(void *path)
{
    int n;
    free(labels_parse(path, "fuzz --labels", &n));
}

/* The input as a command-line list (up to its first NUL). */
static void parse_list(void *unused)
{
    (void)unused;
    char *arg = malloc(in_size + 1);
    memcpy(arg, in, in_size);
    arg[in_size] = 0;
    int n;
    if (arg[0] && strspn(arg, "0123456789, ") == strlen(arg)) /* a list, not a file name */
        free(labels_parse(arg, "fuzz --labels", &n));
    free(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = data, in_size = size;
    fuzz_run(parse_file, (void *)fuzz_write_input(data, size));
    fuzz_run(parse_list, NULL);
    size_t nf = size / sizeof(float);
    float *f = malloc((nf ? nf : 1) * sizeof(float));
    memcpy(f, data, nf * sizeof(float));
    size_t bad = finite_check_f32(f, nf);
    for (size_t i = 0; i < nf; i++) /* the reference answer */
        if (!(f[i] - f[i] == 0)) {
            if (bad != i)
                abort();
            break;
        }
    free(f);
    return 0;
}
