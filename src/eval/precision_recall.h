/* precision_recall.h — improved precision and recall (Kynkäänniemi et al.
 * 2019) exactly as the ADM evaluator's ManifoldEstimator / DistanceBlock.
 *
 * Distances.  Squared Euclidean  D[i,j] = max((‖u_i‖² − 2·u_i·v_j) + ‖v_j‖², 0)
 * for a block of rows U (≤ row_block) against a block of columns V
 * (≤ col_block), first in float16: inputs cast to fp16, ‖u‖² = Σ fp16(u²)
 * rounded to fp16, u·v accumulated in fp32 and rounded to fp16, every
 * elementwise op rounded to fp16 (2·mm, the subtraction, the addition).  If
 * any value of that block is non-finite the *whole block* is recomputed in
 * float32 from the original features (TF's tf.cond in DistanceBlock).  The
 * fp16 values are then used as float32 — radii and comparisons included.
 * Things the spec does not spell out, taken from evaluator.py:
 *  * the order of the terms and rounding steps above, and that the fp16
 *    check is made after the max(·, 0): an fp16 product 2·u·v that overflows
 *    to +inf yields −inf → max → 0, a *finite* zero distance, no fallback
 *    (we reproduce this; it needs ‖u‖ ≈ ‖v‖ ≳ 128, far above pool_3 norms);
 *  * D is computed as U = row set, V = column set: for the radii U and V are
 *    row and column blocks of the same set, for P/R U = reference block and
 *    V = sample block (the rounding is not symmetric in U and V);
 *  * the radius of a point is the value at index k of np.partition of its
 *    distance row (the (k+1)-th smallest value, ties counted with
 *    multiplicity, the point itself included: in fp16 its self-distance is
 *    not always exactly 0);
 *  * a point is inside when d ≤ radius (ties count as inside);
 *  * blocks: rows and columns both start at multiples of 10,000.
 * Emulation limits: TF's GPU kernels accumulate u·v and Σu² in fp32 in an
 * order we cannot reproduce (we use OpenBLAS sgemm and a double sum); the
 * fp16 result can therefore differ by one fp16 ulp when the fp32 value lies
 * within a few fp32 ulps of an fp16 rounding boundary.  That TF sums fp16
 * squares in fp32 (GPU reduction of half) is an assumption.
 *
 * Memory: one column block in fp16-rounded form (col_block × D floats) plus
 * one tile of tile_rows × col_block distances — about 80 + 32 MB at the ADM
 * sizes with D = 2048 — never an N × N matrix.  The block-level fallback is
 * honoured without holding a whole block: each block's results are gathered
 * in block-local state and merged only when the block turned out finite.
 *
 *   float *rr = malloc(n_ref * 4), *rs = malloc(n_samp * 4);
 *   pr_opts o = pr_opts_adm();
 *   pr_manifold_radii(rr, ref, n_ref, 2048, &o, NULL);
 *   pr_manifold_radii(rs, samp, n_samp, 2048, &o, NULL);
 *   double prec, rec;
 *   pr_evaluate(&prec, &rec, ref, rr, n_ref, samp, rs, n_samp, 2048, &o, NULL);
 *   // or precision_recall(&prec, &rec, ref, n_ref, samp, n_samp, 2048, &o, NULL);
 */
#ifndef REPAE_PRECISION_RECALL_H
#define REPAE_PRECISION_RECALL_H

#include <stdint.h>

typedef struct pr_opts {
    int k;             /* neighbourhood size (ADM: 3) */
    int64_t row_block; /* ADM: 10000 */
    int64_t col_block; /* ADM: 10000 */
    int fp16;          /* 1: fp16 first, fp32 per block if non-finite (ADM); 0: fp32 only */
    int64_t tile_rows; /* rows per internal tile (memory); 0: automatic.  Does not change results. */
} pr_opts;

typedef struct pr_counts {
    int64_t blocks;      /* distance blocks computed */
    int64_t fp32_blocks; /* of which recomputed in fp32 because fp16 overflowed */
} pr_counts;

pr_opts pr_opts_adm(void);

/* radii[N]: the k-th neighbour radius (squared distance) of each point of
 * x [N, D] within x.  N must exceed k.  counts (may be NULL) is added to. */
void pr_manifold_radii(float *radii, const float *x, int64_t N, int D, const pr_opts *o, pr_counts *counts);

/* precision = fraction of samples within the radius of some reference point,
 * recall = fraction of reference points within the radius of some sample. */
void pr_evaluate(double *precision, double *recall, const float *ref, const float *ref_radii, int64_t n_ref,
                 const float *samp, const float *samp_radii, int64_t n_samp, int D, const pr_opts *o,
                 pr_counts *counts);

/* Radii of both sets, then pr_evaluate. */
void precision_recall(double *precision, double *recall, const float *ref, int64_t n_ref, const float *samp,
                      int64_t n_samp, int D, const pr_opts *o, pr_counts *counts);

/* One ADM DistanceBlock: out [nu, nv] (row-major) for U [nu, D], V [nv, D].
 * Returns 1 if the fp16 values were used, 0 if the block fell back to fp32
 * (or fp16 = 0).  For tests; the functions above never materialise blocks. */
int pr_distance_block(float *out, const float *U, int64_t nu, const float *V, int64_t nv, int D, int fp16);

/* x rounded to the nearest float16 value (ties to even, ±inf beyond 65504,
 * subnormals kept), returned as float: the cast TF does. */
float pr_f16_round(float x);

#endif
