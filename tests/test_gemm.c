/* gemm against the double-precision reference, all transpose cases, with
 * leading dimensions larger than the matrices and beta = 0 / 1. */
#include <stdlib.h>
#include <math.h>

#include "ops/gemm.h"
#include "test.h"

static void check_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta)
{
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
    float *A = alloc_normal((size_t)(ta ? K : M) * lda, 1.0f, 1);
    float *B = alloc_normal((size_t)(tb ? N : K) * ldb, 1.0f, 2);
    float *C = alloc_normal((size_t)M * ldc, 1.0f, 3);
    float *C_ref = malloc((size_t)M * ldc * sizeof(float));
    for (size_t i = 0; i < (size_t)M * ldc; i++)
        C_ref[i] = C[i];
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C_ref, ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d beta=%g", ta, tb, M, N, K, beta);
    /* fp32 accumulation over K terms of unit-variance products: error ~ sqrt(K) * 6e-8 * |terms|. */
    check_close(what, C, C_ref, (size_t)M * ldc, 1e-4 * sqrt(K), 1e-5);
    free(A), free(B), free(C), free(C_ref);
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

static void test_gemm_empty_k(void)
{
    float C[2] = {5, 7};
    gemm(false, false, 1, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f, C, 2);
    CHECK(C[0] == 0 && C[1] == 0, "K=0 with beta=0 should zero C, got %g %g", C[0], C[1]);
}

int main(void)
{
    RUN(test_gemm_all_transposes);
    RUN(test_gemm_beta_zero_ignores_nan);
    RUN(test_gemm_empty_k);
    return test_summary();
}
