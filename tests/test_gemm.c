/* gemm against the double-precision reference, all transpose cases, with
 * leading dimensions larger than the matrices and beta = 0 / 1. */
#include <dlfcn.h> /* RTLD_NEXT: the Makefile defines _GNU_SOURCE */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <math.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "ops/gemm.h"
#include "ops/gemm_kernels.h"
#include "ops/gemm_packed.h"
#include "test.h"

typedef void (*gemm_fn)(bool, bool, int, int, int, float, const float *, int, const float *, int, float, float *,
                        int);

static void check_case_with(gemm_fn fn, const char *name, bool ta, bool tb, int M, int N, int K, float alpha,
                            float beta)
{
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
    float *A = alloc_normal((size_t)(ta ? K : M) * lda, 1.0f, 1);
    float *B = alloc_normal((size_t)(tb ? N : K) * ldb, 1.0f, 2);
    float *C = alloc_normal((size_t)M * ldc, 1.0f, 3);
    float *C_ref = malloc((size_t)M * ldc * sizeof(float));
    for (size_t i = 0; i < (size_t)M * ldc; i++)
        C_ref[i] = C[i];
    fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C_ref, ldc);
    char what[128];
    snprintf(what, sizeof what, "%s ta=%d tb=%d %dx%dx%d alpha=%g beta=%g", name, ta, tb, M, N, K, alpha, beta);
    /* fp32 accumulation over K terms of unit-variance products: error ~ sqrt(K) * 6e-8 * |terms|. */
    check_close(what, C, C_ref, (size_t)M * ldc, 1e-4 * sqrt(K), 1e-5);
    free(A), free(B), free(C), free(C_ref);
}

static void check_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta)
{
    check_case_with(gemm, "gemm", ta, tb, M, N, K, alpha, beta);
}

static void test_gemm_all_transposes(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_case(ta, tb, 7, 5, 3, 1.0f, 0.0f);
            check_case(ta, tb, 33, 65, 129, 0.5f, 1.0f);
        }
}

static void test_gemm_beta_zero_ignores_nan(void)
{
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {NAN, NAN, NAN, NAN};
    gemm(false, false, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4, "beta=0 must overwrite C, got %g %g %g %g", C[0], C[1],
          C[2], C[3]);
}

/* K = 0: beta ≠ 0 scales every row of C's M × N block; the columns past N
 * (ldc = 4) keep their values; beta = 0 zeroes NaN on every row. */
static void check_empty_k(gemm_fn fn, const char *name)
{
    float C[2] = {5, 7};
    fn(false, false, 1, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f, C, 2);
    CHECK(C[0] == 0 && C[1] == 0, "%s: K=0 with beta=0 should zero C, got %g %g", name, C[0], C[1]);
    float D[12], want[12];
    for (int i = 0; i < 12; i++)
        D[i] = (float)(i + 1), want[i] = (i % 4) < 2 ? 0.5f * (float)(i + 1) : (float)(i + 1);
    fn(true, true, 3, 2, 0, 1.0f, NULL, 1, NULL, 1, 0.5f, D, 4);
    CHECK(memcmp(D, want, sizeof D) == 0, "%s: K=0 with beta=0.5 must halve C's 3x2 block, and only it", name);
    for (int i = 0; i < 12; i++)
        D[i] = NAN;
    fn(false, false, 3, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f, D, 4);
    for (int i = 0; i < 12; i++)
        CHECK((i % 4) < 2 ? D[i] == 0.0f : isnan(D[i]), "%s: K=0, beta=0, NaN C: element %d is %g", name, i, D[i]);
}

static void test_gemm_empty_k(void) { check_empty_k(gemm, "gemm"); }

/* One row, one column, one term, and all three at once. */
static void test_gemm_thin_shapes(void)
{
    const int shapes[5][3] = {{1, 5, 7}, {5, 1, 7}, {5, 7, 1}, {1, 1, 1}, {1, 40, 300}};
    for (int k = 0; k < 5; k++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                check_case(ta, tb, shapes[k][0], shapes[k][1], shapes[k][2], 0.5f, 1.0f);
}

/* Our own kernels (gemm_packed.h), each where the CPU runs it. */
typedef struct {
    const char *name;
    gemm_fn fn;
    bool (*supported)(void);
} own_kernel;
static const own_kernel own_kernels[] = {{"gemm_avx512", gemm_avx512, gemm_avx512_supported},
                                         {"gemm_avx2", gemm_avx2, gemm_avx2_supported}};
enum { OWN_KERNELS = sizeof own_kernels / sizeof own_kernels[0] };

/* Each of our kernels on its own (gemm() uses them only on some hosts):
 * every transpose case, edges of the tiles (12 × 32, 6 × 16), several KC
 * (384) inner blocks, more than one MC (144) row block and NC (3072) column
 * block, alpha and beta not 1. */
static void test_gemm_own_shapes(void)
{
    for (int o = 0; o < OWN_KERNELS; o++) {
        const own_kernel *k = &own_kernels[o];
        if (!k->supported()) {
            printf("  (%s: not on this CPU)\n", k->name);
            continue;
        }
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check_case_with(k->fn, k->name, ta, tb, 1, 1, 1, 1.0f, 0.0f);
                check_case_with(k->fn, k->name, ta, tb, 13, 33, 7, 1.0f, 1.0f);
                check_case_with(k->fn, k->name, ta, tb, 12, 32, 256, 0.5f, 0.0f);
                check_case_with(k->fn, k->name, ta, tb, 251, 47, 600, 1.0f, 0.25f);
                check_case_with(k->fn, k->name, ta, tb, 5, 17, 513, -2.0f, 1.0f);
                check_case_with(k->fn, k->name, ta, tb, 7, 9, 800, 1.0f, 1.0f);
            }
        check_case_with(k->fn, k->name, false, true, 3, 3100, 40, 1.0f, 0.0f);
        check_case_with(k->fn, k->name, true, false, 500, 70, 300, 1.0f, 1.0f);
    }
}

/* Operands of one bit-exactness case: A and B with leading dimensions
 * past the matrices, and two copies of one C. */
typedef struct {
    int lda, ldb, ldc;
    float *A, *B, *C1, *C2;
    size_t a_size, b_size, c_size; /* floats: the last row ends the matrix, without its padding */
} bits_operands;

/* Each operand ends with its last row's last element, at a page no access
 * is allowed to (alloc_guarded): a kernel that reads or writes past a
 * matrix (a whole vector at an edge, a row or a k one past) faults. */
static bits_operands bits_operands_draw(bool ta, bool tb, int M, int N, int K, uint64_t seed)
{
    bits_operands o = {.lda = (ta ? M : K) + 1, .ldb = (tb ? K : N) + 3, .ldc = N + 2};
    o.a_size = (size_t)((ta ? K : M) - 1) * o.lda + (ta ? M : K);
    o.b_size = (size_t)((tb ? N : K) - 1) * o.ldb + (tb ? K : N);
    o.c_size = (size_t)(M - 1) * o.ldc + N;
    o.A = alloc_normal_guarded(o.a_size, 1.0f, seed);
    o.B = alloc_normal_guarded(o.b_size, 1.0f, seed + 1);
    o.C1 = alloc_normal_guarded(o.c_size, 1.0f, seed + 2);
    o.C2 = alloc_normal_guarded(o.c_size, 1.0f, seed + 2);
    return o;
}

static void bits_operands_free(bits_operands *o)
{
    free_guarded(o->A, o->a_size * sizeof(float)), free_guarded(o->B, o->b_size * sizeof(float));
    free_guarded(o->C1, o->c_size * sizeof(float)), free_guarded(o->C2, o->c_size * sizeof(float));
}

/* The AVX2 kernels give the AVX-512 kernels' bits (gemm_kernels.h: the same
 * FMA chain per element), so results do not depend on which of the two a
 * host runs: every transpose case, tile edges of both, alpha/beta paths,
 * several KC blocks, and beta = 1 on C's earlier contents. */
static void test_gemm_avx2_matches_avx512_bits(void)
{
    if (!gemm_avx512_supported() || !gemm_avx2_supported())
        return;
    const int shapes[][3] = {{1, 1, 1}, {13, 33, 7}, {12, 32, 384}, {251, 47, 1000}, {6, 16, 5}, {150, 3100, 40}};
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, 0.0f}, {-2.0f, 0.25f}, {1.0f, 0.25f}};
    int differ = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t p = 0; p < sizeof ab / sizeof ab[0]; p++) {
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    bits_operands o = bits_operands_draw(ta, tb, M, N, K, 31);
                    gemm_avx512(ta, tb, M, N, K, ab[p][0], o.A, o.lda, o.B, o.ldb, ab[p][1], o.C1, o.ldc);
                    gemm_avx2(ta, tb, M, N, K, ab[p][0], o.A, o.lda, o.B, o.ldb, ab[p][1], o.C2, o.ldc);
                    differ += memcmp(o.C1, o.C2, o.c_size * sizeof(float)) != 0;
                    cases++;
                    bits_operands_free(&o);
                }
    CHECK(differ == 0, "gemm_avx2 and gemm_avx512 differ in %d of %d cases", differ, cases);
}

/* The contract of gemm_kernels.h, element by element in scalar code: the
 * sum over each block of GEMM_KC inner indices, one fmaf at a time from
 * zero, then alpha * sum, and C = that (first block, beta = 0), C + that
 * (a later block, or beta = 1) or fmaf(beta, C, that).  Volatile keeps the
 * compiler from fusing the multiply into the add. */
static float contract_element(bool ta, bool tb, int i, int j, int K, float alpha, const float *A, int lda,
                              const float *B, int ldb, float beta, float c)
{
    for (int p0 = 0; p0 < K; p0 += GEMM_KC) {
        float sum = 0.0f;
        for (int p = p0; p < K && p < p0 + GEMM_KC; p++)
            sum = fmaf(ta ? A[(long)p * lda + i] : A[(long)i * lda + p], tb ? B[(long)j * ldb + p] : B[(long)p * ldb + j],
                       sum);
        volatile float x = alpha != 1.0f ? alpha * sum : sum;
        if (p0 > 0 || beta == 1.0f)
            c = c + x;
        else if (beta != 0.0f)
            c = fmaf(beta, c, x);
        else
            c = x;
    }
    return c;
}

/* Our kernels give exactly the contract's bits, in every path of the tile
 * epilogue: full tiles and the masked edges of both sides, the short last
 * panel of M, alpha 1 or not, beta 0, 1 or neither, later KC blocks, both
 * thread splits (a thin C splits by rows). */
static void test_gemm_own_bits_follow_the_contract(void)
{
    /* K = 21: a k block past whole vectors of both sets (16 + 5, 8 + 8 + 5) */
    const int shapes[][3] = {{1, 1, 1},   {13, 33, 7}, {12, 32, 384}, {151, 47, 1000},
                             {6, 16, 5}, {40, 3, 390}, {29, 45, 21}};
    /* alpha and beta not powers of two too: their products round, so a
     * fused or reordered epilogue shows */
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.125f, 0.0f}, {-1.7f, 0.3f}, {1.0f, 0.3f}, {0.3f, 1.0f}};
    for (int o = 0; o < OWN_KERNELS; o++) {
        const own_kernel *k = &own_kernels[o];
        if (!k->supported())
            continue;
        int differ = 0, cases = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (size_t q = 0; q < sizeof ab / sizeof ab[0]; q++) {
                        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                        bits_operands o = bits_operands_draw(ta, tb, M, N, K, 51);
                        k->fn(ta, tb, M, N, K, ab[q][0], o.A, o.lda, o.B, o.ldb, ab[q][1], o.C1, o.ldc);
                        for (int i = 0; i < M; i++)
                            for (int j = 0; j < N; j++) {
                                float *r = &o.C2[(long)i * o.ldc + j];
                                *r = contract_element(ta, tb, i, j, K, ab[q][0], o.A, o.lda, o.B, o.ldb, ab[q][1], *r);
                            }
                        differ += memcmp(o.C1, o.C2, o.c_size * sizeof(float)) != 0;
                        cases++;
                        bits_operands_free(&o);
                    }
        CHECK(differ == 0, "%s differs from the contract's bits in %d of %d cases", k->name, differ, cases);
    }
}

/* B packed once (gemm_prepack_b) gives the bits of the same product on the
 * unpacked B, by the set this CPU runs: every transpose, N past whole
 * panels, several KC blocks, both thread splits (column stripes when N >= M,
 * row stripes else), scaled sums, and inside a parallel region (one
 * thread). */
static void test_gemm_prepacked_matches_unpacked_bits(void)
{
    const int width = gemm_prepacked_width();
    CHECK(width == (gemm_avx512_supported() ? 32 : gemm_avx2_supported() ? 16 : 0), "prepacked width %d", width);
    if (width == 0)
        return;
    void (*own)(bool, bool, int, int, int, float, const float *, int, const float *, int, float, float *, int) =
        gemm_avx512_supported() ? gemm_avx512 : gemm_avx2;
    const int shapes[][3] = {{1, 1, 1}, {13, 33, 7}, {300, 416, 400}, {251, 47, 1000}, {6, 16, 5}, {40, 3100, 40},
                             {700, 96, 390}, {2, 1056, 450}};
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-2.0f, 0.25f}};
    int differ = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        /* operands drawn once per shape, large enough for either layout */
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ldc = N + 2;
        float *A = alloc_normal((size_t)(M + 1) * (K + 1), 1.0f, 41), *B = alloc_normal((size_t)(N + 3) * (K + 3), 1.0f, 42);
        float *C0 = alloc_normal((size_t)M * ldc, 1.0f, 43);
        float *C1 = malloc((size_t)M * ldc * sizeof(float)), *C2 = malloc((size_t)M * ldc * sizeof(float));
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t p = 0; p < sizeof ab / sizeof ab[0]; p++)
                    for (int in_region = 0; in_region < 2; in_region++) {
                        int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 3;
                        memcpy(C1, C0, (size_t)M * ldc * sizeof(float));
                        memcpy(C2, C0, (size_t)M * ldc * sizeof(float));
                        float *Bp = aligned_alloc(64, (gemm_prepacked_floats(K, N) * sizeof(float) + 63) / 64 * 64);
                        gemm_prepack_b(tb, B, ldb, K, N, Bp);
                        if (in_region) {
#pragma omp parallel num_threads(2)
#pragma omp single
                            {
                                own(ta, tb, M, N, K, ab[p][0], A, lda, B, ldb, ab[p][1], C1, ldc);
                                gemm_prepacked(ta, M, N, K, ab[p][0], A, lda, Bp, ab[p][1], C2, ldc);
                            }
                        } else {
                            own(ta, tb, M, N, K, ab[p][0], A, lda, B, ldb, ab[p][1], C1, ldc);
                            gemm_prepacked(ta, M, N, K, ab[p][0], A, lda, Bp, ab[p][1], C2, ldc);
                        }
                        differ += memcmp(C1, C2, (size_t)M * ldc * sizeof(float)) != 0;
                        cases++;
                        free(Bp);
                    }
        free(A), free(B), free(C0), free(C1), free(C2);
    }
    CHECK(differ == 0, "gemm_prepacked differs from the unpacked product in %d of %d cases", differ, cases);
    /* and it is the product: one case against the double-precision reference */
    int M = 37, N = 45, K = 800;
    float *A = alloc_normal((size_t)M * K, 1.0f, 44), *B = alloc_normal((size_t)N * K, 1.0f, 45);
    float *C = malloc((size_t)M * N * sizeof(float)), *R = malloc((size_t)M * N * sizeof(float));
    float *Bp = aligned_alloc(64, (gemm_prepacked_floats(K, N) * sizeof(float) + 63) / 64 * 64);
    gemm_prepack_b(true, B, K, K, N, Bp);
    gemm_prepacked(false, M, N, K, 1.0f, A, K, Bp, 0.0f, C, N);
    gemm_ref(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, R, N);
    double err = 0;
    for (int i = 0; i < M * N; i++)
        err = fmax(err, fabs((double)C[i] - R[i]));
    CHECK(err < 1e-3, "gemm_prepacked vs reference: max error %g", err);
    free(A), free(B), free(C), free(R), free(Bp);
}

/* beta = 0 never reads C (NaN there must not leak), K = 0 scales C. */
static void test_gemm_own_beta_and_empty_k(void)
{
    for (int o = 0; o < OWN_KERNELS; o++) {
        const own_kernel *k = &own_kernels[o];
        if (!k->supported())
            continue;
        float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {NAN, NAN, NAN, NAN};
        k->fn(false, false, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
        CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4, "%s: beta=0 must overwrite C, got %g %g %g %g",
              k->name, C[0], C[1], C[2], C[3]);
        check_empty_k(k->fn, k->name);
    }
}

/* Each element is summed in k order whatever the thread split or the batch
 * it is in: a row computed alone, inside a batch, on one thread or inside a
 * parallel region must be bit-identical. */
static void test_gemm_own_row_independent_of_batch(void)
{
    for (int o = 0; o < OWN_KERNELS; o++) {
        const own_kernel *k = &own_kernels[o];
        if (!k->supported())
            continue;
        int M = 200, N = 300, K = 700;
        float *A = alloc_normal((size_t)M * K, 1.0f, 4), *B = alloc_normal((size_t)K * N, 1.0f, 5);
        float *C = malloc((size_t)M * N * sizeof(float)), *row = malloc((size_t)N * sizeof(float));
        float *P = malloc((size_t)M * N * sizeof(float));
        k->fn(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        int mismatch = 0;
        for (int i = 0; i < M; i += 37) {
            k->fn(false, false, 1, N, K, 1.0f, A + (long)i * K, K, B, N, 0.0f, row, N);
            mismatch += memcmp(row, C + (long)i * N, (size_t)N * sizeof(float)) != 0;
        }
        CHECK(mismatch == 0, "%s: %d rows differ between a batch of %d and a batch of 1", k->name, mismatch, M);
#pragma omp parallel
        {
#pragma omp single
            k->fn(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, P, N);
        }
        CHECK(memcmp(P, C, (size_t)M * N * sizeof(float)) == 0,
              "%s: inside a parallel region (one thread) != outside (%d)", k->name, omp_get_max_threads());
        free(A), free(B), free(C), free(row), free(P);
    }
}

/* gemm_strided_batch: every item against the reference, a shared operand
 * (stride 0) on either side, and batches smaller than the thread count (one
 * GEMM after the other, each threaded: the same bits as gemm() alone) and
 * at least as large (one item per thread). */
static void test_gemm_strided_batch(void)
{
    const int M = 37, N = 45, K = 29;
    const int sizes[] = {1, omp_get_max_threads(), omp_get_max_threads() + 3};
    for (int s = 0; s < 3; s++)
        for (int shared = 0; shared < 2; shared++) {
            const int items = sizes[s];
            const long sa = shared == 0 ? 0 : (long)M * K, sb = shared == 1 ? 0 : (long)K * N, sc = (long)M * N;
            float *A = alloc_normal((size_t)items * M * K, 1.0f, 11), *B = alloc_normal((size_t)items * K * N, 1.0f, 12);
            float *C = alloc_normal((size_t)items * M * N, 1.0f, 13), *R = malloc((size_t)items * M * N * sizeof(float));
            float *G = malloc((size_t)items * M * N * sizeof(float));
            memcpy(R, C, (size_t)items * M * N * sizeof(float));
            memcpy(G, C, (size_t)items * M * N * sizeof(float));
            gemm_strided_batch(items, false, true, M, N, K, 0.5f, A, sa, K, B, sb, K, 1.0f, C, sc, N);
            for (int i = 0; i < items; i++) {
                gemm_ref(false, true, M, N, K, 0.5f, A + i * sa, K, B + i * sb, K, 1.0f, R + i * sc, N);
                gemm(false, true, M, N, K, 0.5f, A + i * sa, K, B + i * sb, K, 1.0f, G + i * sc, N);
            }
            char what[96];
            snprintf(what, sizeof what, "batch of %d, %s operand shared", items, shared == 0 ? "A" : "B");
            check_close(what, C, R, (size_t)items * M * N, 1e-4 * sqrt(K), 1e-5);
            if (items < omp_get_max_threads() || items == 1)
                CHECK(memcmp(C, G, (size_t)items * M * N * sizeof(float)) == 0,
                      "%s: a batch run one GEMM after the other must equal gemm() per item", what);
            free(A), free(B), free(C), free(R), free(G);
        }
}

static long resident_kib(void)
{
    long pages = 0, resident = 0, page_kib = sysconf(_SC_PAGESIZE) / 1024;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * page_kib;
}

/* Inside a parallel region that is inactive (its `if` clause false) our
 * kernels must run on the calling thread: a fork there starts a nested team,
 * new threads on every call, and each new thread's packing buffers were
 * never freed (session 19: +75 MiB over two VAE training steps at 256²).
 * 40 such calls that each used a new thread would leave ~24 MiB resident. */
static void test_gemm_own_no_nested_team(void)
{
    if (omp_get_max_threads() < 2)
        return;
    for (int o = 0; o < OWN_KERNELS; o++) {
        const own_kernel *k = &own_kernels[o];
        if (!k->supported())
            continue;
        const int n = 512;
        float *A = alloc_normal((size_t)n * n, 1.0f, 21), *B = alloc_normal((size_t)n * n, 1.0f, 22);
        float *C = malloc((size_t)n * n * sizeof(float)), *D = malloc((size_t)n * n * sizeof(float));
        k->fn(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, D, n); /* the calling thread's buffers, grown */
        int flag = 0;
#pragma omp parallel if (flag)
        k->fn(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        long before = resident_kib();
        for (int i = 0; i < 40; i++) {
#pragma omp parallel if (flag)
            k->fn(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        }
        long grown = resident_kib() - before;
        CHECK(before > 0 && grown < 8 * 1024,
              "%s: 40 GEMMs inside an inactive parallel region grew the resident set by %ld KiB", k->name, grown);
        CHECK(memcmp(C, D, (size_t)n * n * sizeof(float)) == 0, "%s: inside an inactive region != outside", k->name);
        free(A), free(B), free(C), free(D);
    }
}

/* Counts the threads this process starts: the executable's symbols come
 * first in the dynamic linker's lookup, so libgomp starts its threads
 * through this definition, which passes them on to the next one (libc's,
 * or the sanitizer's that wraps it). */
static atomic_int threads_started;

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg)
{
    typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    static _Atomic(create_fn) next;
    create_fn f = atomic_load(&next);
    if (!f) {
        f = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
        atomic_store(&next, f);
    }
    atomic_fetch_add(&threads_started, 1);
    return f(thread, attr, start, arg);
}

/* Where gemm() runs OpenBLAS (every call on a CPU without AVX-512), a call
 * inside an inactive parallel region must not fork a nested team: OpenBLAS
 * would start new threads on every call (40 such calls started 53 threads,
 * session 20).  The thread count set for the call is this task's own and is
 * restored after it. */
static void test_gemm_openblas_no_nested_team(void)
{
    if (omp_get_max_threads() < 2)
        return;
    gemm_route_to_openblas(true);
    const int n = 256, threads = omp_get_max_threads();
    float *A = alloc_normal((size_t)n * n, 1.0f, 23), *B = alloc_normal((size_t)n * n, 1.0f, 24);
    float *C = malloc((size_t)n * n * sizeof(float)), *D = malloc((size_t)n * n * sizeof(float));
    gemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, D, n); /* outside: OpenBLAS's threads, started once */
    const int before = atomic_load(&threads_started);
    int flag = 0, restored = 1;
    for (int i = 0; i < 40; i++) {
#pragma omp parallel if (flag)
        {
            gemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
            restored &= omp_get_max_threads() == threads;
        }
        gemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, D, n); /* outside again, on every thread */
    }
    const int started = atomic_load(&threads_started) - before;
    gemm_route_to_openblas(false);
    CHECK(started == 0, "40 OpenBLAS GEMMs inside an inactive parallel region started %d threads", started);
    CHECK(restored, "the calling task's thread count was not restored after the call");
    /* One thread and two sum in different orders in OpenBLAS: close, not equal. */
    check_close("OpenBLAS inside an inactive region vs outside", C, D, (size_t)n * n, 1e-4 * sqrt(n), 1e-5);
    free(A), free(B), free(C), free(D);
}

static void test_blas_core_names(void)
{
    CHECK(blas_core_is_avx512("SkylakeX") && blas_core_is_avx512("cooperlake") &&
              blas_core_is_avx512("SapphireRapids"),
          "OpenBLAS's AVX-512 cores must be recognised");
    CHECK(!blas_core_is_avx512("Haswell") && !blas_core_is_avx512("Zen") && !blas_core_is_avx512(NULL),
          "AVX2 cores (and no name) are not AVX-512 ones");
    printf("  (OpenBLAS core %s; gemm() runs %s)\n", openblas_get_corename(),
           gemm_avx512_supported() ? (gemm_uses_own_kernel()
                                          ? "our AVX-512 kernel"
                                          : "our AVX-512 kernel outside parallel regions, OpenBLAS inside")
           : gemm_avx2_supported() ? "our AVX2 kernel"
                                   : "OpenBLAS");
}

/* Where gemm() runs our kernel for every call (gemm.h), it is the kernel
 * of the CPU's best instruction set, bit for bit, inside a parallel region
 * too. */
static void test_gemm_routes_every_call_to_own_kernel(void)
{
    CHECK(gemm_avx512_supported() || !gemm_avx2_supported() || gemm_uses_own_kernel(),
          "a CPU with AVX2 but not AVX-512 must run our AVX2 kernel for every call");
    if (!gemm_uses_own_kernel())
        return;
    const gemm_fn own = gemm_avx512_supported() ? gemm_avx512 : gemm_avx2;
    const int M = 100, N = 300, K = 500;
    float *A = alloc_normal((size_t)M * K, 1.0f, 41), *B = alloc_normal((size_t)N * K, 1.0f, 42);
    float *C = malloc((size_t)M * N * sizeof(float)), *D = malloc((size_t)M * N * sizeof(float));
    float *P = malloc((size_t)M * N * sizeof(float));
    gemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    own(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, D, N);
#pragma omp parallel
    {
#pragma omp single
        gemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, P, N);
    }
    CHECK(memcmp(C, D, (size_t)M * N * sizeof(float)) == 0, "gemm() is not our kernel's result");
    CHECK(memcmp(P, D, (size_t)M * N * sizeof(float)) == 0, "gemm() inside a parallel region is not our kernel's");
    free(A), free(B), free(C), free(D), free(P);
}

/* gemm_route_to_openblas(true) sends every call to OpenBLAS (gemm() then
 * gives cblas_sgemm's bits, and says it runs no kernel of ours);
 * gemm_route_to_openblas(false) decides again from the CPU. */
static void test_gemm_route_to_openblas(void)
{
    const bool own_before = gemm_uses_own_kernel(), outside_before = gemm_outside_regions_uses_own_kernel();
    const int M = 37, N = 53, K = 301;
    float *A = alloc_normal((size_t)M * K, 1.0f, 51), *B = alloc_normal((size_t)K * N, 1.0f, 52);
    float *C = malloc((size_t)M * N * sizeof(float)), *D = malloc((size_t)M * N * sizeof(float));
    gemm_route_to_openblas(true);
    CHECK(!gemm_uses_own_kernel() && !gemm_outside_regions_uses_own_kernel(), "routed to OpenBLAS, yet ours runs");
    gemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, D, N);
    CHECK(memcmp(C, D, (size_t)M * N * sizeof(float)) == 0, "routed to OpenBLAS, gemm() is not cblas_sgemm's result");
    gemm_route_to_openblas(false);
    CHECK(gemm_uses_own_kernel() == own_before && gemm_outside_regions_uses_own_kernel() == outside_before,
          "deciding again from the CPU did not restore the rule");
    free(A), free(B), free(C), free(D);
}

/* gemm.h's rule on an AVX-512 CPU follows the core OpenBLAS chose, which is
 * fixed when the library loads; so each core is tried in a fresh process of
 * this program (`--rule-child`, OPENBLAS_CORETYPE set, two threads), which
 * says whose bits gemm() gave outside and inside a parallel region. */
static int rule_child(void)
{
    const char *core = openblas_get_corename();
    const bool blas_avx512 = blas_core_is_avx512(core);
    printf("core %s\n", core);
    const int M = 100, N = 300, K = 500;
    float *A = alloc_normal((size_t)M * K, 1.0f, 61), *B = alloc_normal((size_t)N * K, 1.0f, 62);
    float *outside = malloc((size_t)M * N * sizeof(float)), *inside = malloc((size_t)M * N * sizeof(float));
    float *ours = malloc((size_t)M * N * sizeof(float)), *blas = malloc((size_t)M * N * sizeof(float));
    gemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, outside, N);
    gemm_avx512(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, ours, N);
#pragma omp parallel
    {
#pragma omp single
        {
            gemm(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, inside, N);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, blas, N);
        }
    }
    const size_t bytes = (size_t)M * N * sizeof(float);
    const bool outside_ours = !memcmp(outside, ours, bytes), inside_ours = !memcmp(inside, ours, bytes),
               inside_blas = !memcmp(inside, blas, bytes), distinct = memcmp(ours, blas, bytes) != 0;
    printf("threads %d, outside: ours %d; inside: ours %d, OpenBLAS %d; uses_own %d, outside_regions %d\n",
           omp_get_max_threads(), outside_ours, inside_ours, inside_blas, gemm_uses_own_kernel(),
           gemm_outside_regions_uses_own_kernel());
    const bool ok = omp_get_max_threads() == 2 && distinct && outside_ours &&
                    gemm_outside_regions_uses_own_kernel() &&
                    (blas_avx512 ? inside_blas && !gemm_uses_own_kernel() : inside_ours && gemm_uses_own_kernel());
    free(A), free(B), free(outside), free(inside), free(ours), free(blas);
    return ok ? 0 : 1;
}

static void test_gemm_rule_follows_openblas_core(void)
{
    if (!gemm_avx512_supported()) {
        printf("     (no AVX-512 on this CPU: our AVX2 kernel or OpenBLAS, whatever the core; nothing to test)\n");
        return;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        CHECK(0, "cannot find this program (/proc/self/exe)");
        return;
    }
    self[n] = 0;
    /* an AVX-512 core (an Intel host's own choice): ours outside regions
     * only; an AVX2 one (what an AMD host's environment may force): ours
     * always */
    const char *cores[] = {"SkylakeX", "Haswell"};
    for (int c = 0; c < 2; c++) {
        char cmd[4200], out[1024] = "";
        snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=%s OMP_NUM_THREADS=2 '%s' --rule-child 2>&1", cores[c], self);
        FILE *f = popen(cmd, "r");
        size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
        out[got] = 0;
        int status = f ? pclose(f) : -1;
        char want[64];
        snprintf(want, sizeof want, "core %s\n", cores[c]);
        CHECK(strstr(out, want) != NULL, "OPENBLAS_CORETYPE=%s: the child did not run on that core: %s", cores[c], out);
        CHECK(status == 0, "OPENBLAS_CORETYPE=%s: gemm() did not follow the rule: %s", cores[c], out);
    }
}

static void prepack_misaligned(void *arg)
{
    float *buf = arg;
    const float B[16] = {0};
    gemm_prepack_b(false, B, 16, 1, 16, buf + 1);
}

/* The packed buffer must be 64-byte aligned: the kernels load it so. */
static void test_gemm_prepack_refuses_misaligned(void)
{
    if (gemm_prepacked_width() == 0)
        return;
    float *buf = aligned_alloc(64, 64 * sizeof(float) * 4);
    expect_die("a packed buffer off 64 bytes", prepack_misaligned, buf,
               "gemm_prepack_b: the packed buffer must be 64-byte aligned");
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--rule-child"))
        return rule_child();
    RUN(test_gemm_all_transposes);
    RUN(test_gemm_beta_zero_ignores_nan);
    RUN(test_gemm_empty_k);
    RUN(test_gemm_thin_shapes);
    RUN(test_gemm_own_shapes);
    RUN(test_gemm_avx2_matches_avx512_bits);
    RUN(test_gemm_own_bits_follow_the_contract);
    RUN(test_gemm_prepacked_matches_unpacked_bits);
    RUN(test_gemm_own_beta_and_empty_k);
    RUN(test_gemm_own_row_independent_of_batch);
    RUN(test_gemm_strided_batch);
    RUN(test_gemm_own_no_nested_team);
    RUN(test_gemm_openblas_no_nested_team);
    RUN(test_blas_core_names);
    RUN(test_gemm_routes_every_call_to_own_kernel);
    RUN(test_gemm_route_to_openblas);
    RUN(test_gemm_rule_follows_openblas_core);
    RUN(test_gemm_prepack_refuses_misaligned);
    return test_summary();
}
