/* libFuzzer harness for the PyTorch .pt/.pth reader (src/io/torch_file.c,
 * zip_archive.c, pickle.c) through weights_open, as every weights flag uses it.
 *
 * Build (the `make fuzz` target wires it; flags as the other harnesses):
 *   clang -DREPAE_FUZZ -fsanitize=fuzzer,address,undefined -Isrc \
 *         fuzz/fuzz_torch_file.c <the library sources> -lcjson -lz -lm
 * Run with -detect_leaks=0: die() longjmps out of the reader, abandoning what
 * it had allocated (the product exits instead).  Seed corpus:
 * the .pt files in tests/fixtures/io/ (both container formats, a checkpoint,
 * malicious pickles).  Mappings a longjmp abandons are released with
 * file_map_release_all (io/file_map.h, REPAE_FUZZ builds), or a million
 * inputs would exhaust the process's mapping count.
 *
 * Each input is written to a private temporary file (the reader maps files:
 * that is the path under test, including the regular-file check), opened,
 * and every tensor is read (F32 for float dtypes, I64 for the others), which
 * also runs the lazy CRC checks.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file_map.h"
#include "io/safetensors.h"
#include "io/torch_file.h"
#include "io/weights_file.h"

extern void (*die_fuzz_handler)(const char *message); /* src/core/error.c, REPAE_FUZZ builds */

static jmp_buf fuzz_jmp;
static char fuzz_path[64];

static void on_die(const char *message)
{
    (void)message;
    longjmp(fuzz_jmp, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_path[0]) /* die() prints nothing in fuzz builds: the handler runs first */
        snprintf(fuzz_path, sizeof fuzz_path, "/tmp/repae-fuzz-pt-%d.pt", (int)getpid());
    FILE *f = fopen(fuzz_path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    die_fuzz_handler = on_die;
    static safetensors *volatile st; /* survives the longjmp */
    static float *volatile buf;
    st = NULL;
    buf = NULL;
    if (setjmp(fuzz_jmp) == 0) {
        st = weights_open(fuzz_path);
        for (int i = 0; i < st->n_tensors; i++) {
            const st_tensor *t = &st->tensors[i];
            if (t->numel > (1 << 22))
                continue; /* accepted but too big to read here; sizes are validated at open */
            buf = xmalloc((size_t)t->numel * 8 + 8);
            if (t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 || t->dtype == ST_BF16)
                safetensors_read_f32(st, t, (float *)buf);
            else
                safetensors_read_i64(st, t, (int64_t *)buf);
            free(buf);
            buf = NULL;
        }
    }
    free(buf);
    if (st)
        safetensors_close(st);
    torch_file_fuzz_release(); /* what a die() inside the reader abandoned */
    file_map_release_all();
    die_fuzz_handler = NULL;
    return 0;
}
