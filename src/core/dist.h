/* dist.h — data parallelism over MPI processes (ranks).
 *
 * repae builds with MPI when the Makefile finds OpenMPI (`mpicc`; `make
 * MPI=0` builds without it) and runs as one process otherwise: every call
 * below then acts on a world of one and does nothing.  MPI is only
 * initialised when the program was started by mpirun (its environment says
 * so), so a plain `repae ...` never pays for it.
 *
 *   dist_init(&argc, &argv);                  // main(): once
 *   if (dist_rank() == 0) write_checkpoint();  // rank 0 writes files
 *   dist_allreduce_mean(grads, n);             // data-parallel gradients
 *
 * A rank that exits with a non-zero status (die(), a NaN stop) aborts the
 * whole job (MPI_Abort), so the others never hang waiting for it.
 */
#ifndef REPAE_DIST_H
#define REPAE_DIST_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"

void dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_world(void);
/* True when this build can run over MPI (compiled with it). */
int dist_available(void);

/* In place over all ranks: sum, mean (sum / world), max. */
void dist_allreduce_sum(float *x, size_t n);
void dist_allreduce_mean(float *x, size_t n);
void dist_allreduce_sum_f64(double *x, size_t n);
void dist_allreduce_max_f64(double *x, size_t n);
/* Rank root's bytes to every rank. */
void dist_broadcast(void *buf, size_t bytes, int root);
/* Concatenates each rank's `bytes` (may differ per rank) on rank 0 into out
 * (rank order); out is only written on rank 0. */
void dist_gather_bytes(const void *in, size_t bytes, void *out);
/* The same, with the concatenation on every rank. */
void dist_allgather_bytes(const void *in, size_t bytes, void *out);
/* Dies on every rank, naming `what`, if x differs between ranks (compares a
 * 64-bit hash of its bits). */
void dist_check_same(const float *x, size_t n, const char *what);
/* Random draws under data parallelism: every rank draws the global batch's
 * values (world × B rows, in row order, from the run's streams) and keeps
 * its own rows, so a step does not depend on the world size.  Rank r's local
 * row k is global row j = r + world·k, as the data loader splits batches.
 * dist_own_row says whether global row j is this rank's (and its k);
 * dist_normal_rows draws world·B rows of len normals from r and stores this
 * rank's B rows in out [B, len] (one process: exactly rng_normal_fill). */
bool dist_own_row(int j, int *k);
/* Work split in rounds (sample, cache-latents, eval, reconstruct): the round
 * starting at item r0 holds world × batch items of n, in contiguous chunks of
 * batch, one per rank in rank order.  Returns the size of this rank's chunk
 * (0 past the end) and its first item in *first. */
int dist_round_chunk(int64_t r0, int64_t n, int batch, int64_t *first);
void dist_normal_rows(rng *r, float *out, int B, size_t len);
/* The collectives above go in chunks of this many elements (bytes for
 * dist_broadcast): MPI counts are int.  2^28 by default; a smaller chunk is
 * for tests of the chunking, which real buffers only reach past 1 GiB. */
void dist_set_chunk(size_t elements);
/* Bytes this process has sent through the calls above (for the benchmark). */
uint64_t dist_bytes_sent(void);

#endif
