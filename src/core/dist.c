#include "core/dist.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int rank_, world_ = 1;
static uint64_t bytes_sent;
static size_t chunk_ = (size_t)1 << 28; /* MPI counts are int: large buffers go in chunks */

void dist_set_chunk(size_t elements)
{
    if (elements < 1 || elements > (size_t)1 << 30)
        die("dist_set_chunk: %zu elements; between 1 and 2^30", elements);
    chunk_ = elements;
}

uint64_t dist_bytes_sent(void) { return bytes_sent; }
int dist_rank(void) { return rank_; }
int dist_world(void) { return world_; }

/* FNV-1a over the bits: ranks must hold the same bytes, not just close values. */
static uint64_t hash_bits(const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#ifdef REPAE_MPI
#include <mpi.h>

static int initialised;

/* mpirun (Open MPI, PMIx or a PMI launcher) leaves one of these behind. */
static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

/* die() and a NaN stop end a rank with exit(1): take the job down with it. */
static void abort_on_failure(int status, void *arg)
{
    (void)arg;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (status != 0 && !finalized)
        MPI_Abort(MPI_COMM_WORLD, status);
}

int dist_available(void) { return 1; }

void dist_init(int *argc, char ***argv)
{
    if (initialised || !launched_by_mpirun())
        return;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die("MPI_Init failed");
    initialised = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    on_exit(abort_on_failure, NULL);
    atexit(dist_finalize);
    /* One report, from rank 0; errors (stderr) still come from any rank. */
    if (rank_ != 0 && !freopen("/dev/null", "w", stdout))
        die("rank %d: cannot silence stdout", rank_);
}

/* Present only under -fsanitize=address (make test-asan). */
extern void __lsan_do_leak_check(void) __attribute__((weak));

void dist_finalize(void)
{
    int finalized = 0;
    if (!initialised)
        return;
    MPI_Finalized(&finalized);
    if (finalized)
        return;
    /* The leak check that would run at exit, run now: MPI_Finalize unloads
     * Open MPI's plugins, and their start-up allocations would then be
     * reported from "<unknown module>", where tests/lsan.supp cannot name
     * them.  (It runs once: the exit-time check is then skipped.) */
    if (__lsan_do_leak_check)
        __lsan_do_leak_check();
    MPI_Finalize();
}

/* In place over all ranks, chunk_ elements of `size` bytes at a time. */
static void allreduce_chunks(void *x, size_t n, size_t size, MPI_Datatype type, MPI_Op op)
{
    for (size_t i = 0; i < n; i += chunk_) {
        size_t m = n - i < chunk_ ? n - i : chunk_;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * size, (int)m, type, op, MPI_COMM_WORLD);
    }
    bytes_sent += n * size;
}

void dist_allreduce_sum(float *x, size_t n)
{
    if (world_ > 1)
        allreduce_chunks(x, n, sizeof(float), MPI_FLOAT, MPI_SUM);
}

void dist_allreduce_sum_f64(double *x, size_t n)
{
    if (world_ > 1)
        allreduce_chunks(x, n, sizeof(double), MPI_DOUBLE, MPI_SUM);
}

void dist_allreduce_max_f64(double *x, size_t n)
{
    if (world_ > 1)
        allreduce_chunks(x, n, sizeof(double), MPI_DOUBLE, MPI_MAX);
}

void dist_broadcast(void *buf, size_t bytes, int root)
{
    if (world_ == 1)
        return;
    for (size_t i = 0; i < bytes; i += chunk_) {
        size_t m = bytes - i < chunk_ ? bytes - i : chunk_;
        MPI_Bcast((char *)buf + i, (int)m, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    bytes_sent += bytes;
}

void dist_gather_bytes(const void *in, size_t bytes, void *out)
{
    if (world_ == 1) {
        memmove(out, in, bytes);
        return;
    }
    if (bytes > (size_t)1 << 30)
        die("dist_gather_bytes: %zu bytes per rank is more than one gather handles", bytes);
    int n = (int)bytes, *counts = NULL, *displs = NULL;
    if (rank_ == 0) {
        counts = xmalloc((size_t)world_ * sizeof(int));
        displs = xmalloc((size_t)world_ * sizeof(int));
    }
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank_ == 0) {
        size_t total = 0;
        for (int r = 0; r < world_; r++) {
            if (total > (size_t)1 << 30)
                die("dist_gather_bytes: more than 1 GiB in one gather");
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
    }
    MPI_Gatherv(in, n, MPI_BYTE, out, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
    bytes_sent += bytes;
    free(counts), free(displs);
}

void dist_allgather_bytes(const void *in, size_t bytes, void *out)
{
    if (world_ == 1) {
        memmove(out, in, bytes);
        return;
    }
    if (bytes > (size_t)1 << 30)
        die("dist_allgather_bytes: %zu bytes per rank is more than one gather handles", bytes);
    int n = (int)bytes, *counts = xmalloc((size_t)world_ * sizeof(int)), *displs = xmalloc((size_t)world_ * sizeof(int));
    MPI_Allgather(&n, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
    size_t total = 0;
    for (int r = 0; r < world_; r++) {
        if (total > (size_t)1 << 30)
            die("dist_allgather_bytes: more than 1 GiB in one gather");
        displs[r] = (int)total;
        total += (size_t)counts[r];
    }
    MPI_Allgatherv(in, n, MPI_BYTE, out, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
    bytes_sent += bytes * (size_t)(world_ - 1);
    free(counts), free(displs);
}

void dist_check_same(const float *x, size_t n, const char *what)
{
    if (world_ == 1)
        return;
    uint64_t h = hash_bits(x, n), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    int differs = h != h0, any = 0;
    MPI_Allreduce(&differs, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any)
        die("%s differ between the %d processes (rank %d: %s): the data-parallel run diverged; stopping", what,
            world_, rank_, differs ? "differs from rank 0" : "agrees with rank 0");
}

#else /* one process */

int dist_available(void) { return 0; }
void dist_init(int *argc, char ***argv) { (void)argc, (void)argv; }
void dist_finalize(void) {}
void dist_allreduce_sum(float *x, size_t n) { (void)x, (void)n; }
void dist_allreduce_sum_f64(double *x, size_t n) { (void)x, (void)n; }
void dist_allreduce_max_f64(double *x, size_t n) { (void)x, (void)n; }
void dist_broadcast(void *buf, size_t bytes, int root) { (void)buf, (void)bytes, (void)root; }
void dist_gather_bytes(const void *in, size_t bytes, void *out) { memmove(out, in, bytes); }
void dist_allgather_bytes(const void *in, size_t bytes, void *out) { memmove(out, in, bytes); }
void dist_check_same(const float *x, size_t n, const char *what) { (void)hash_bits, (void)x, (void)n, (void)what; }

#endif

void dist_allreduce_mean(float *x, size_t n)
{
    if (world_ == 1)
        return;
    dist_allreduce_sum(x, n);
    const float inv = 1.0f / (float)world_;
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

bool dist_own_row(int j, int *k)
{
    if (j < rank_ || (j - rank_) % world_ != 0)
        return false;
    *k = (j - rank_) / world_;
    return true;
}

void dist_normal_rows(rng *r, float *out, int B, size_t len)
{
    int k;
    for (int j = 0; j < B * world_; j++) {
        if (dist_own_row(j, &k))
            rng_normal_fill(r, out + (size_t)k * len, len);
        else
            for (size_t i = 0; i < len; i++) /* another rank's row: the same draws, discarded */
                (void)rng_normal(r);
    }
}

int dist_round_chunk(int64_t r0, int64_t n, int batch, int64_t *first)
{
    int64_t i0 = r0 + (int64_t)rank_ * batch;
    *first = i0;
    return i0 >= n ? 0 : (n - i0 < batch ? (int)(n - i0) : batch);
}
