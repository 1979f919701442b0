/* linear.c — y = x Wᵀ + b on row-major buffers, gradients by gemm.
 *
 *   out   [N,OUT] = inp [N,IN] · weight[OUT,IN]ᵀ + bias
 *   dinp  [N,IN]  += dout [N,OUT] · weight [OUT,IN]
 *   dweight[OUT,IN] += doutᵀ · inp
 *   dbias [OUT]   += Σ_n dout[n, :]
 */
#include "ops/linear.h"

#include <stdint.h>
#include <string.h>

#include <stddef.h>
#include <sys/mman.h>

#include "core/error.h"
#include "ops/gemm.h"
#include "ops/gemm_packed.h"

/* Seeds every row of out with the bias, so that the product adds onto it
 * (beta = 1): one pass over `out` instead of a second one after the
 * product.  Returns the beta for the product. */
static float seed_bias(float *out, const float *bias, int N, int OUT)
{
    if (!bias)
        return 0.0f;
    for (int n = 0; n < N; n++) /* (memcpy: the -O2 loop was scalar, 3 % of a 1-thread step) */
        memcpy(out + (size_t)n * OUT, bias, (size_t)OUT * sizeof(float));
    return 1.0f;
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IN, int OUT)
{
    if (N <= 0 || OUT <= 0)
        return;
    float beta = seed_bias(out, bias, N, OUT);
    gemm(false, true, N, OUT, IN, 1.0f, inp, IN, weight, IN, beta, out, OUT);
}

bool linear_weight_prepackable(int IN, int OUT)
{
    const int width = gemm_prepacked_width();
    /* a whole number of panels: the packed weight has exactly OUT × IN floats */
    return width > 0 && IN > 0 && OUT > 0 && OUT % width == 0;
}

void linear_prepack_weight(float *weight, int IN, int OUT)
{
    if (!linear_weight_prepackable(IN, OUT))
        die("linear_prepack_weight: a [%d, %d] weight cannot be packed on this CPU", OUT, IN);
    if ((uintptr_t)weight % 64)
        die("linear_prepack_weight: the weight must be 64-byte aligned (every tensor of a parameter table is)");
    const size_t bytes = (size_t)OUT * IN * sizeof(float);
    /* mmap, not malloc: a large block freed through malloc raises glibc's
     * mmap threshold, and later large buffers then come from the heap and
     * stay there (sampling SiT-B/2: peak RSS 533 -> 612 MiB). */
    float *packed = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (packed == MAP_FAILED)
        die("out of memory: %zu bytes to pack a [%d, %d] weight", bytes, OUT, IN);
    gemm_prepack_b(true, weight, IN, IN, OUT, packed);
    memcpy(weight, packed, bytes);
    munmap(packed, bytes);
}

void linear_forward_prepacked(float *out, const float *inp, const float *packed_weight, const float *bias, int N,
                              int IN, int OUT)
{
    if (N <= 0 || OUT <= 0)
        return;
    float beta = seed_bias(out, bias, N, OUT);
    gemm_prepacked(false, N, OUT, IN, 1.0f, inp, IN, packed_weight, beta, out, OUT);
}

/* dbias[o] += Σ_n dout[n, o].  Rows of dout are contiguous, so each thread
 * takes a block of columns and walks all rows, keeping double sums on the
 * stack: no scratch buffer, no race between threads, the same summation
 * order on every run, and N (up to B·T = 65536 tokens) float additions do
 * not lose the small terms. */
enum { BIAS_COLS = 64 };

static void bias_grad(float *dbias, const float *dout, int N, int OUT)
{
    int nblocks = (OUT + BIAS_COLS - 1) / BIAS_COLS;
#pragma omp parallel for schedule(static) if ((long)N * OUT >= (1L << 16))
    for (int blk = 0; blk < nblocks; blk++) {
        int o0 = blk * BIAS_COLS;
        int cols = OUT - o0 < BIAS_COLS ? OUT - o0 : BIAS_COLS;
        double acc[BIAS_COLS] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = dout + (size_t)n * OUT + o0;
#pragma omp simd /* across columns: each sum keeps its order (-O2 had left this loop scalar) */
            for (int j = 0; j < cols; j++)
                acc[j] += row[j];
        }
        for (int j = 0; j < cols; j++)
            dbias[o0 + j] += (float)acc[j];
    }
}

void linear_backward(float *dinp, bool accumulate, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int IN, int OUT)
{
    if (N <= 0 || IN <= 0)
        return;
    if (dinp && (OUT > 0 || !accumulate)) /* OUT = 0: gemm stores the zeros a store asks for */
        gemm(false, false, N, IN, OUT, 1.0f, dout, OUT, weight, IN, accumulate ? 1.0f : 0.0f, dinp, IN);
    if (OUT <= 0)
        return;
    if (dweight)
        gemm(true, false, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 1.0f, dweight, IN);
    if (dbias)
        bias_grad(dbias, dout, N, OUT);
}
