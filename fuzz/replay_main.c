/* A main() for the fuzz harnesses without libFuzzer: feeds every file named
 * on the command line (or found in a named directory) to
 * LLVMFuzzerTestOneInput once.  `make fuzz-replay` builds the harnesses with
 * gcc + ASan/UBSan and this driver to replay fuzz/corpus/<target>/ as a
 * regression test, so CI needs no clang. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open '%s'\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "replay: cannot read '%s'\n", path);
        return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)(n > 0 ? n : 0));
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such file or folder '%s'\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad |= run_file(argv[i]), files++;
            continue;
        }
        struct dirent **list;
        int n = scandir(argv[i], &list, NULL, NULL);
        if (n < 0)
            return 1;
        char **names = malloc(((size_t)n + 1) * sizeof *names);
        int k = 0;
        for (int j = 0; j < n; j++) {
            if (list[j]->d_name[0] != '.') {
                names[k] = malloc(strlen(argv[i]) + strlen(list[j]->d_name) + 2);
                sprintf(names[k++], "%s/%s", argv[i], list[j]->d_name);
            }
            free(list[j]);
        }
        free(list);
        qsort(names, (size_t)k, sizeof *names, cmp);
        for (int j = 0; j < k; j++) {
            bad |= run_file(names[j]), files++;
            free(names[j]);
        }
        free(names);
    }
    printf("replayed %d inputs\n", files);
    return bad;
}
