#include "train/adamw.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/thread_share.h"

adamw adamw_create(const param_table *t, float lr)
{
    adamw o = {0};
    o.lr = lr;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8f;
    o.weight_decay = 0.0f;
    o.table = t;
    o.m = param_alloc(t);
    o.v = param_alloc(t);
    return o;
}

void adamw_free(adamw *o)
{
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

/* The update of elements [k0, k1) of one tensor. */
static inline void adamw_update(float *p, float *m, float *v, const float *g, long k0, long k1, float b1, float b2,
                                float c1, float c2, float bc2_sqrt, float eps, float decay, float step_size)
{
#pragma omp simd
    for (long k = k0; k < k1; k++) {
        m[k] = b1 * m[k] + c1 * g[k];
        v[k] = b2 * v[k] + c2 * g[k] * g[k];
        float denom = sqrtf(v[k]) / bc2_sqrt + eps;
        p[k] = p[k] * decay - step_size * m[k] / denom;
    }
}

void adamw_step(adamw *o, float *params, const float *grads)
{
    o->step++;
    /* Bias corrections in double, as torch computes them in Python floats. */
    double bc1 = 1.0 - pow(o->beta1, (double)o->step);
    double bc2 = 1.0 - pow(o->beta2, (double)o->step);
    float step_size = (float)(o->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    /* torch passes 1-β as a Python double, rounded to float once. */
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = o->eps;
    float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    float decay = 1.0f - o->lr * o->weight_decay;
    const param_table *t = o->table;
    /* One parallel region for the whole table (not one per tensor): every
     * thread takes its share of each large tensor and moves on without
     * waiting (nowait: the tensors are independent); small ones run on one
     * thread as before. */
#pragma omp parallel
    for (int i = 0; i < t->n; i++) {
        const param_entry *e = &t->entries[i];
        if (e->kind != PARAM_TRAINABLE)
            continue;
        float *p = params + e->offset, *m = o->m + e->offset, *v = o->v + e->offset;
        const float *g = grads + e->offset;
        long n = (long)e->numel;
        if (n <= 65536) {
            if (omp_get_thread_num() == i % omp_get_num_threads())
                adamw_update(p, m, v, g, 0, n, b1, b2, c1, c2, bc2_sqrt, eps, decay, step_size);
            continue;
        }
        long k0, k1;
        thread_share(n, &k0, &k1);
        adamw_update(p, m, v, g, k0, k1, b1, b2, c1, c2, bc2_sqrt, eps, decay, step_size);
    }
}

/* Σ g² per tensor in double, then over the tensors in table order.  A large
 * tensor's sum is the threads' partial sums over their static shares added
 * in thread order; a small one is summed by one thread.  One parallel region
 * for the whole table.  Each share is summed in SIMD lanes (a fixed order for
 * a given thread count): one scalar chain of dependent adds was 1.2 % of the
 * full small step. */
double grad_global_norm(const param_table *t, const float *grads)
{
    double *tensor_sum = xcalloc((size_t)t->n, sizeof(double));
    double *partial = xcalloc((size_t)omp_get_max_threads() * (size_t)t->n, sizeof(double));
    int team = 1;
#pragma omp parallel
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
        team = nt;
        for (int i = 0; i < t->n; i++) {
            const param_entry *e = &t->entries[i];
            if (e->kind != PARAM_TRAINABLE)
                continue;
            const float *g = grads + e->offset;
            long n = (long)e->numel;
            double s = 0.0;
            if (n <= 65536) {
                if (tid == i % nt) {
#pragma omp simd reduction(+ : s)
                    for (long k = 0; k < n; k++)
                        s += (double)g[k] * g[k];
                    tensor_sum[i] = s;
                }
                continue;
            }
            long k0, k1;
            thread_share(n, &k0, &k1);
#pragma omp simd reduction(+ : s)
            for (long k = k0; k < k1; k++)
                s += (double)g[k] * g[k];
            partial[(size_t)i * nt + tid] = s;
        }
    }
    double sum = 0.0;
    for (int i = 0; i < t->n; i++) {
        if (t->entries[i].kind != PARAM_TRAINABLE)
            continue;
        if ((long)t->entries[i].numel > 65536) {
            double s = 0.0;
            for (int k = 0; k < team; k++)
                s += partial[(size_t)i * team + k];
            tensor_sum[i] = s;
        }
        sum += tensor_sum[i];
    }
    free(tensor_sum);
    free(partial);
    return sqrt(sum);
}

double grad_clip(const param_table *t, float *grads, double max_norm)
{
    double norm = grad_global_norm(t, grads);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float c = (float)coef;
#pragma omp parallel
        for (int i = 0; i < t->n; i++) {
            const param_entry *e = &t->entries[i];
            if (e->kind != PARAM_TRAINABLE)
                continue;
            float *g = grads + e->offset;
            long k0, k1;
            thread_share((long)e->numel, &k0, &k1);
#pragma omp simd
            for (long k = k0; k < k1; k++)
                g[k] *= c;
        }
    }
    return norm;
}

void grad_zero(const param_table *t, float *grads) { memset(grads, 0, t->total * sizeof(float)); }
