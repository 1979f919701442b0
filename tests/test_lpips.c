/* LPIPS: parameter table vs the real VGG16 layout, forward distance and the
 * gradient w.r.t. the reconstruction against dev/ref/lpips_ref.py (random
 * weights, widths / 16), and finite differences. */
#include <math.h>

#include "models/lpips.h"
#include "test.h"

static void test_lpips_full_size_table(void)
{
    lpips l;
    lpips_build(&l, 1);
    /* VGG16 conv layers: 14,714,688 parameters; linear heads 64+128+256+512+512 = 1472. */
    CHECK(param_count_all(&l.table) == 14714688 + 1472, "LPIPS has %zu parameters, expected %d",
          param_count_all(&l.table), 14714688 + 1472);
    CHECK(param_find(&l.table, "net.slice5.28.weight") && param_find(&l.table, "lin4.model.1.weight"),
          "key names differ from the reference");
    lpips_free(&l);
}

typedef struct {
    lpips *l;
    float *params, *a, *b, *cot, *dist;
    arena *ar;
} lp_ctx;

static double lp_loss(void *p)
{
    lp_ctx *c = p;
    size_t mark = arena_mark(c->ar);
    lpips_acts s;
    lpips_forward(c->l, c->params, &s, c->dist, c->a, c->b, 2, 32, 32, c->ar);
    arena_reset(c->ar, mark);
    return dot_f64(c->dist, c->cot, 2);
}

static void test_lpips_matches_torch(void)
{
    safetensors *st = fixture_open("models/lpips_tiny");
    lpips l;
    lpips_build(&l, 16);
    float *params = param_alloc(&l.table);
    lpips_load(&l, params, st, "", PARAM_IGNORE_EXTRA);
    size_t n = 2 * 3 * 32 * 32;
    float *a = fixture_f32(st, "a", NULL), *b = fixture_f32(st, "b", NULL), *cot = fixture_f32(st, "cot", NULL);
    float dist[2], *db = alloc_zeros(n);
    arena ar = arena_create(2 * lpips_acts_bytes(&l, 2, 32, 32));
    lpips_acts s;
    lpips_forward(&l, params, &s, dist, a, b, 2, 32, 32, &ar);
    /* 13 fp32 conv layers and unit-normalised features: ~1e-6 relative. */
    fixture_check(st, "dist", dist, 2, 1e-6, 1e-4);
    lpips_backward(&l, params, &s, cot, db);
    fixture_check(st, "grad.b", db, n, 1e-7, 2e-3);
    /* The plan is the pass's peak to the byte (the a pass is released before the b pass). */
    CHECK(ar.high_water == lpips_acts_bytes(&l, 2, 32, 32), "LPIPS plan of %zu bytes for a peak of %zu",
          lpips_acts_bytes(&l, 2, 32, 32), ar.high_water);
    lp_ctx c = {&l, params, a, b, cot, dist, &ar};
    fd_check_direction("lpips d/db", lp_loss, &c, b, db, n, 1e-3, 2e-3, 3);
    /* Identical images: distance 0. */
    lpips_forward(&l, params, &s, dist, a, a, 2, 32, 32, &ar);
    CHECK(fabsf(dist[0]) < 1e-9f && fabsf(dist[1]) < 1e-9f, "LPIPS(a, a) = %g, %g", dist[0], dist[1]);
    arena_free(&ar);
    free(params), free(a), free(b), free(cot), free(db);
    lpips_free(&l);
    safetensors_close(st);
}

int main(void)
{
    RUN(test_lpips_full_size_table);
    RUN(test_lpips_matches_torch);
    return test_summary();
}
