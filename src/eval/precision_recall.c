#include "eval/precision_recall.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/gemm.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

pr_opts pr_opts_adm(void) { return (pr_opts){.k = 3, .row_block = 10000, .col_block = 10000, .fp16 = 1}; }

float pr_f16_round(float x)
{
    float ax = fabsf(x);
    if (ax < 6.103515625e-05f) /* below 2^-14: fp16 subnormals, spacing 2^-24 */
        return copysignf((ax + 0.5f) - 0.5f, x);
    if (!(ax < 65520.0f)) /* 65520 is the tie between 65504 and 2^16: rounds up, to inf */
        return isnan(x) ? x : copysignf(INFINITY, x);
    uint32_t b;
    memcpy(&b, &x, 4);
    b += 0x0FFFu + ((b >> 13) & 1u); /* round the 13 dropped mantissa bits, ties to even */
    b &= ~0x1FFFu;
    memcpy(&x, &b, 4);
    return x;
}

/* A prepared set of vectors: fp16-rounded copy and both kinds of norms. */
typedef struct prep {
    float *x16; /* [n, D] fp16-rounded features (fp16 mode) */
    float *n16; /* [n] fp16(Σ fp16(x16²)) */
    float *n32; /* [n] fp32(Σ x²) */
} prep;

static void prep_alloc(prep *p, int64_t n, int D, int fp16)
{
    p->x16 = fp16 ? xmalloc((size_t)n * D * sizeof(float)) : NULL;
    p->n16 = xmalloc((size_t)n * sizeof(float));
    p->n32 = xmalloc((size_t)n * sizeof(float));
}

static void prep_free(prep *p)
{
    free(p->x16);
    free(p->n16);
    free(p->n32);
}

static void prep_fill(prep *p, const float *x, int64_t n, int D, int fp16)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        double s32 = 0;
        for (int j = 0; j < D; j++)
            s32 += (float)(xi[j] * xi[j]);
        p->n32[i] = (float)s32;
        if (fp16) {
            float *hi = p->x16 + (size_t)i * D;
            double s16 = 0;
            for (int j = 0; j < D; j++) {
                float h = pr_f16_round(xi[j]);
                hi[j] = h;
                s16 += pr_f16_round(h * h);
            }
            p->n16[i] = pr_f16_round((float)s16);
        }
    }
}

static inline float dist16(float nu, float mm, float nv)
{
    float a = pr_f16_round(2.0f * pr_f16_round(mm));
    float d = pr_f16_round(pr_f16_round(nu - a) + nv);
    return d < 0 ? 0.0f : d; /* tf.maximum(d, 0): −inf → 0, NaN stays NaN */
}

static inline float dist32(float nu, float mm, float nv)
{
    float d = (nu - 2.0f * mm) + nv;
    return d < 0 ? 0.0f : d;
}

/* What a block's distances are used for. */
enum { USE_RADII, USE_PR };

typedef struct consumer {
    int use;
    int kk;                  /* k + 1 smallest values kept per row */
    float *top;              /* USE_RADII: [R, kk] block-local, ascending */
    const float *row_radii;  /* USE_PR: [R] radii of the row set (reference) */
    const float *col_radii;  /* USE_PR: [C] radii of the column set (samples) */
    uint8_t *row_in;         /* USE_PR: [R] block-local */
    uint8_t *col_in;         /* USE_PR: [nthreads, C] block-local, per thread */
} consumer;

static void consumer_reset(consumer *c, int64_t R, int64_t C, int nthreads)
{
    if (c->use == USE_RADII) {
        for (int64_t i = 0; i < R * c->kk; i++)
            c->top[i] = INFINITY;
    } else {
        memset(c->row_in, 0, (size_t)R);
        memset(c->col_in, 0, (size_t)nthreads * C);
    }
}

/* Computes the distances of rows [r0, r0+R) of X against the prepared column
 * block (C columns) tile by tile and feeds them to the consumer (row indices
 * relative to r0).  Returns 0 as soon as an fp16 value is non-finite. */
static int run_block(consumer *cons, const float *X, int64_t r0, int64_t R, const float *V, const prep *pv,
                     int64_t C, int D, int fp16, int64_t tile_rows, prep *pt, float *G)
{
    for (int64_t t0 = 0; t0 < R; t0 += tile_rows) {
        int64_t TR = R - t0 < tile_rows ? R - t0 : tile_rows;
        const float *U = X + (size_t)(r0 + t0) * D;
        prep_fill(pt, U, TR, D, fp16);
        if (fp16)
            gemm(false, true, (int)TR, (int)C, D, 1.0f, pt->x16, D, pv->x16, D, 0.0f, G, (int)C);
        else
            gemm(false, true, (int)TR, (int)C, D, 1.0f, U, D, V, D, 0.0f, G, (int)C);
        int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
        for (int64_t i = 0; i < TR; i++) {
            float *g = G + (size_t)i * C;
            int64_t ri = t0 + i;
            if (fp16) {
                const float nu = pt->n16[i];
                for (int64_t j = 0; j < C; j++) {
                    g[j] = dist16(nu, g[j], pv->n16[j]);
                    bad |= !isfinite(g[j]);
                }
            } else {
                const float nu = pt->n32[i];
                for (int64_t j = 0; j < C; j++)
                    g[j] = dist32(nu, g[j], pv->n32[j]);
            }
            if (bad)
                continue;
            if (cons->use == USE_RADII) {
                const int kk = cons->kk;
                float *top = cons->top + (size_t)ri * kk;
                for (int64_t j = 0; j < C; j++) {
                    float d = g[j];
                    if (d < top[kk - 1]) {
                        int p = kk - 1;
                        while (p > 0 && top[p - 1] > d) {
                            top[p] = top[p - 1];
                            p--;
                        }
                        top[p] = d;
                    }
                }
            } else {
                const float rr = cons->row_radii[ri];
                const float *cr = cons->col_radii;
                uint8_t *ci = cons->col_in + (size_t)omp_get_thread_num() * C;
                uint8_t any = 0;
                for (int64_t j = 0; j < C; j++) {
                    any |= g[j] <= cr[j];
                    ci[j] |= g[j] <= rr;
                }
                cons->row_in[ri] |= any;
            }
        }
        if (bad)
            return 0;
    }
    return 1;
}

static int64_t auto_tile_rows(const pr_opts *o, int64_t C)
{
    int64_t t = o->tile_rows > 0 ? o->tile_rows : ((int64_t)1 << 23) / (C > 0 ? C : 1);
    if (t < 1)
        t = 1;
    if (t > o->row_block)
        t = o->row_block;
    return t;
}

static void check_opts(const pr_opts *o)
{
    if (o->k < 1 || o->row_block < 1 || o->col_block < 1 || o->tile_rows < 0)
        die("precision/recall: bad options k=%d row_block=%lld col_block=%lld tile_rows=%lld", o->k,
            (long long)o->row_block, (long long)o->col_block, (long long)o->tile_rows);
    if (o->col_block > INT32_MAX / 2)
        die("precision/recall: column block %lld is too large", (long long)o->col_block);
}

/* The ADM double loop over (row block, column block) of rows X against
 * columns Y.  Each block runs in fp16; if it is non-finite its block-local
 * results are discarded and it runs again in fp32.  begin() (may be NULL)
 * points the consumer at the block's data, merge() folds a finished block
 * into the caller's state. */
typedef void (*begin_fn)(void *ctx, consumer *c, int64_t r0, int64_t c0);
typedef void (*merge_fn)(void *ctx, const consumer *c, int64_t r0, int64_t R, int64_t c0, int64_t C, int nthreads);

static void block_loop(const float *X, int64_t NX, const float *Y, int64_t NY, int D, const pr_opts *o,
                       pr_counts *counts, consumer *cons, begin_fn begin, merge_fn merge, void *ctx)
{
    const int nthreads = omp_get_max_threads();
    const int64_t cb = o->col_block < NY ? o->col_block : NY;
    const int64_t tile = auto_tile_rows(o, cb);
    prep pv, pt;
    prep_alloc(&pv, cb, D, o->fp16);
    prep_alloc(&pt, tile, D, o->fp16);
    float *G = xmalloc((size_t)tile * cb * sizeof(float));
    for (int64_t r0 = 0; r0 < NX; r0 += o->row_block) {
        int64_t R = NX - r0 < o->row_block ? NX - r0 : o->row_block;
        for (int64_t c0 = 0; c0 < NY; c0 += o->col_block) {
            int64_t C = NY - c0 < o->col_block ? NY - c0 : o->col_block;
            const float *V = Y + (size_t)c0 * D;
            prep_fill(&pv, V, C, D, o->fp16);
            if (begin)
                begin(ctx, cons, r0, c0);
            consumer_reset(cons, R, C, nthreads);
            int ok = 0;
            if (o->fp16)
                ok = run_block(cons, X, r0, R, V, &pv, C, D, 1, tile, &pt, G);
            if (!ok) {
                consumer_reset(cons, R, C, nthreads);
                run_block(cons, X, r0, R, V, &pv, C, D, 0, tile, &pt, G);
                if (counts && o->fp16)
                    counts->fp32_blocks++;
            }
            if (counts)
                counts->blocks++;
            merge(ctx, cons, r0, R, c0, C, nthreads);
        }
    }
    free(G);
    prep_free(&pv);
    prep_free(&pt);
}

typedef struct radii_ctx {
    float *top; /* [N, kk] global, ascending */
} radii_ctx;

static void merge_radii(void *vctx, const consumer *c, int64_t r0, int64_t R, int64_t c0, int64_t C, int nthreads)
{
    radii_ctx *ctx = vctx;
    const int kk = c->kk;
#pragma omp parallel for schedule(static) if (R > 4096)
    for (int64_t i = 0; i < R; i++) {
        float *g = ctx->top + (size_t)(r0 + i) * kk;
        const float *b = c->top + (size_t)i * kk;
        float m[64];
        int p = 0, q = 0;
        for (int t = 0; t < kk; t++)
            m[t] = (q >= kk || (p < kk && g[p] <= b[q])) ? g[p++] : b[q++];
        memcpy(g, m, (size_t)kk * sizeof(float));
    }
}

void pr_manifold_radii(float *radii, const float *x, int64_t N, int D, const pr_opts *o, pr_counts *counts)
{
    check_opts(o);
    if (o->k > 63)
        die("precision/recall: k = %d is too large (at most 63)", o->k);
    if (N <= o->k)
        die("precision/recall: %lld points cannot have a %d-th nearest neighbour", (long long)N, o->k);
    const int kk = o->k + 1;
    radii_ctx ctx = {.top = xmalloc((size_t)N * kk * sizeof(float))};
    for (int64_t i = 0; i < N * kk; i++)
        ctx.top[i] = INFINITY;
    int64_t rb = o->row_block < N ? o->row_block : N;
    consumer cons = {.use = USE_RADII, .kk = kk, .top = xmalloc((size_t)rb * kk * sizeof(float))};
    block_loop(x, N, x, N, D, o, counts, &cons, NULL, merge_radii, &ctx);
    for (int64_t i = 0; i < N; i++)
        radii[i] = ctx.top[(size_t)i * kk + o->k];
    free(cons.top);
    free(ctx.top);
}

typedef struct pr_ctx {
    const float *ref_radii, *samp_radii;
    uint8_t *ref_in;  /* [n_ref] */
    uint8_t *samp_in; /* [n_samp] */
} pr_ctx;

static void begin_pr(void *vctx, consumer *c, int64_t r0, int64_t c0)
{
    pr_ctx *ctx = vctx;
    c->row_radii = ctx->ref_radii + r0;
    c->col_radii = ctx->samp_radii + c0;
}

static void merge_pr(void *vctx, const consumer *c, int64_t r0, int64_t R, int64_t c0, int64_t C, int nthreads)
{
    pr_ctx *ctx = vctx;
    for (int64_t i = 0; i < R; i++)
        ctx->ref_in[r0 + i] |= c->row_in[i];
    for (int t = 0; t < nthreads; t++)
        for (int64_t j = 0; j < C; j++)
            ctx->samp_in[c0 + j] |= c->col_in[(size_t)t * C + j];
}

void pr_evaluate(double *precision, double *recall, const float *ref, const float *ref_radii, int64_t n_ref,
                 const float *samp, const float *samp_radii, int64_t n_samp, int D, const pr_opts *o,
                 pr_counts *counts)
{
    check_opts(o);
    if (n_ref <= 0 || n_samp <= 0)
        die("precision/recall: %lld reference and %lld sample points", (long long)n_ref, (long long)n_samp);
    const int nthreads = omp_get_max_threads();
    pr_ctx ctx = {.ref_radii = ref_radii, .samp_radii = samp_radii, .ref_in = xcalloc((size_t)n_ref, 1),
                  .samp_in = xcalloc((size_t)n_samp, 1)};
    int64_t rb = o->row_block < n_ref ? o->row_block : n_ref;
    int64_t cb = o->col_block < n_samp ? o->col_block : n_samp;
    consumer cons = {.use = USE_PR, .row_in = xmalloc((size_t)rb), .col_in = xmalloc((size_t)nthreads * cb)};
    /* ADM: U = reference block (rows), V = sample block (columns). */
    block_loop(ref, n_ref, samp, n_samp, D, o, counts, &cons, begin_pr, merge_pr, &ctx);
    int64_t ns = 0, nr = 0;
    for (int64_t j = 0; j < n_samp; j++)
        ns += ctx.samp_in[j];
    for (int64_t i = 0; i < n_ref; i++)
        nr += ctx.ref_in[i];
    *precision = (double)ns / (double)n_samp;
    *recall = (double)nr / (double)n_ref;
    free(cons.row_in);
    free(cons.col_in);
    free(ctx.ref_in);
    free(ctx.samp_in);
}

void precision_recall(double *precision, double *recall, const float *ref, int64_t n_ref, const float *samp,
                      int64_t n_samp, int D, const pr_opts *o, pr_counts *counts)
{
    float *rr = xmalloc((size_t)n_ref * sizeof(float));
    float *rs = xmalloc((size_t)n_samp * sizeof(float));
    pr_manifold_radii(rr, ref, n_ref, D, o, counts);
    pr_manifold_radii(rs, samp, n_samp, D, o, counts);
    pr_evaluate(precision, recall, ref, rr, n_ref, samp, rs, n_samp, D, o, counts);
    free(rr);
    free(rs);
}

int pr_distance_block(float *out, const float *U, int64_t nu, const float *V, int64_t nv, int D, int fp16)
{
    prep pu, pv;
    prep_alloc(&pu, nu, D, 1);
    prep_alloc(&pv, nv, D, 1);
    prep_fill(&pu, U, nu, D, 1);
    prep_fill(&pv, V, nv, D, 1);
    int used16 = 0;
    if (fp16) {
        gemm(false, true, (int)nu, (int)nv, D, 1.0f, pu.x16, D, pv.x16, D, 0.0f, out, (int)nv);
        used16 = 1;
        for (int64_t i = 0; i < nu; i++)
            for (int64_t j = 0; j < nv; j++) {
                float *d = out + (size_t)i * nv + j;
                *d = dist16(pu.n16[i], *d, pv.n16[j]);
                if (!isfinite(*d))
                    used16 = 0;
            }
    }
    if (!used16) {
        gemm(false, true, (int)nu, (int)nv, D, 1.0f, U, D, V, D, 0.0f, out, (int)nv);
        for (int64_t i = 0; i < nu; i++)
            for (int64_t j = 0; j < nv; j++) {
                float *d = out + (size_t)i * nv + j;
                *d = dist32(pu.n32[i], *d, pv.n32[j]);
            }
    }
    prep_free(&pu);
    prep_free(&pv);
    return used16;
}
