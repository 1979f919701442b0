/* common.h — what every fuzz/fuzz_<target>.c harness shares.
 *
 * Our readers die() on bad input, which exits the process; a fuzzer must
 * run millions of inputs in one process.  Fuzz builds (-DREPAE_FUZZ) route
 * die() to a handler that longjmps back here, and every resource the code
 * under test acquires between fuzz_begin and the end of fuzz_run — memory,
 * FILEs, descriptors, gzFiles, DIRs, mappings — is tracked through linker
 * wraps (-Wl,--wrap=malloc,...; see the Makefile's FUZZ_WRAPS) and released
 * after a die, so rejected inputs leak nothing.  The product is built
 * without any of this.
 *
 *   static void parse(void *ctx) { const char *path = ctx; ... reader(path) ...; }
 *   int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
 *       const char *path = fuzz_write_input(data, size);   // a memfd, as a path
 *       fuzz_run(parse, (void *)path);
 *       return 0;
 *   }
 *
 * FUZZ_VERBOSE=1 prints each die() message (useful when replaying a corpus).
 */
#ifndef REPAE_FUZZ_COMMON_H
#define REPAE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Runs fn(ctx) under the die() trap; returns 0 if it returned, 1 if it died.
 * Either way everything it left allocated or open is released. */
int fuzz_run(void (*fn)(void *ctx), void *ctx);

/* Writes the input to a per-process memfd and returns a path that opens it
 * ("/proc/self/fd/N"): a regular file, as readers require. */
const char *fuzz_write_input(const uint8_t *data, size_t size);

/* A writable scratch directory for outputs (created once per process). */
const char *fuzz_scratch_dir(void);

#endif
