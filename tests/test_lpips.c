/* LPIPS: parameter table vs the real VGG16 layout, forward distance and the
 * gradient w.r.t. the reconstruction against dev/ref/lpips_ref.py (random
 * weights, widths / 16) at 32x32 and at 40x24 (tap maps that end in a
 * partial block of the channel loops), and finite differences; the width
 * divisors and image sizes refused, and the init rules. */
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
    int H, W;
} lp_ctx;

static double lp_loss(void *p)
{
    lp_ctx *c = p;
    size_t mark = arena_mark(c->ar);
    lpips_acts s;
    lpips_forward(c->l, c->params, &s, c->dist, c->a, c->b, 2, c->H, c->W, c->ar);
    arena_reset(c->ar, mark);
    return dot_f64(c->dist, c->cot, 2);
}

/* grad_atol: the gradient's float32 rounding, about 1e-4 of its largest
 * element (0.0047 at 32x32, 0.0033 at 40x24; a few elements of 40x24 are
 * off by 2.7e-7 where the sums of a normalisation's backward cancel). */
static void check_lpips_fixture(const char *fixture, int H, int W, double grad_atol)
{
    safetensors *st = fixture_open(fixture), *weights = fixture_open("models/lpips_tiny"); /* both cases' network */
    lpips l;
    lpips_build(&l, 16);
    float *params = param_alloc(&l.table);
    lpips_load(&l, params, weights, "", PARAM_IGNORE_EXTRA);
    safetensors_close(weights);
    size_t n = (size_t)2 * 3 * H * W;
    float *a = fixture_f32(st, "a", NULL), *b = fixture_f32(st, "b", NULL), *cot = fixture_f32(st, "cot", NULL);
    float dist[2], *db = alloc_zeros(n);
    arena ar = arena_create(2 * lpips_acts_bytes(&l, 2, H, W));
    lpips_acts s;
    lpips_forward(&l, params, &s, dist, a, b, 2, H, W, &ar);
    /* 13 fp32 conv layers and unit-normalised features: ~1e-6 relative. */
    fixture_check(st, "dist", dist, 2, 1e-6, 1e-4);
    lpips_backward(&l, params, &s, cot, db);
    fixture_check(st, "grad.b", db, n, grad_atol, 2e-3);
    /* The plan is the pass's peak to the byte (the a pass is released before the b pass). */
    CHECK(ar.high_water == lpips_acts_bytes(&l, 2, H, W), "LPIPS plan of %zu bytes for a peak of %zu",
          lpips_acts_bytes(&l, 2, H, W), ar.high_water);
    lp_ctx c = {&l, params, a, b, cot, dist, &ar, H, W};
    fd_check_direction("lpips d/db", lp_loss, &c, b, db, n, 1e-3, 2e-3, 3);
    /* Identical images: distance 0. */
    lpips_forward(&l, params, &s, dist, a, a, 2, H, W, &ar);
    CHECK(fabsf(dist[0]) < 1e-9f && fabsf(dist[1]) < 1e-9f, "LPIPS(a, a) = %g, %g", dist[0], dist[1]);
    arena_free(&ar);
    free(params), free(a), free(b), free(cot), free(db);
    lpips_free(&l);
    safetensors_close(st);
}

static void test_lpips_matches_torch(void)
{
    check_lpips_fixture("models/lpips_tiny", 32, 32, 1e-7);
    check_lpips_fixture("models/lpips_tiny_40x24", 40, 24, 4e-7);
}

static void build_with_div(void *ctx)
{
    lpips l;
    lpips_build(&l, *(const int *)ctx);
}

static void plan_of_size(void *ctx)
{
    const int *hw = ctx;
    lpips l;
    lpips_build(&l, 64);
    lpips_acts_bytes(&l, 1, hw[0], hw[1]);
}

/* Width divisors must divide 64; images need 16 pixels each way for the
 * four poolings; the init rules are torch's defaults (bias bound from
 * 9·C_in) and linear heads of 1/C (the mean over channels). */
static void test_lpips_refusals_and_init(void)
{
    const int bad[] = {0, -1, 3, 48, 128};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char what[64];
        snprintf(what, sizeof what, "width divisor %d", bad[k]);
        expect_die(what, build_with_div, (void *)&bad[k], "must divide 64");
    }
    char err[512];
    CHECK(run_in_child(build_with_div, (int[]){64}, err, sizeof err) == 0, "divisor 64: %s", err);
    CHECK(run_in_child(plan_of_size, (int[]){16, 16}, err, sizeof err) == 0, "16x16 images: %s", err);
    expect_die("15x16 images", plan_of_size, (int[]){15, 16}, "too small for VGG16's four 2×2 poolings");
    expect_die("16x15 images", plan_of_size, (int[]){16, 15}, "too small for VGG16's four 2×2 poolings");

    lpips l;
    lpips_build(&l, 16);
    CHECK(l.width_div == 16 && l.ch[0] == 4 && l.ch[12] == 32, "divisor %d, widths %d .. %d", l.width_div, l.ch[0],
          l.ch[12]);
    float *p = param_alloc(&l.table);
    lpips_init_weights(&l, p, 1);
    const param_entry *b0 = param_find(&l.table, "net.slice1.0.bias"), *b5 = param_find(&l.table, "net.slice2.5.bias");
    CHECK(b0 && b0->init == INIT_TORCH_BIAS && b0->init_arg == 27 && b5 && b5->init_arg == 4 * 9,
          "bias fan-ins %g and %g, want 27 and 36", b0 ? b0->init_arg : 0, b5 ? b5->init_arg : 0);
    const int widths[LPIPS_TAPS] = {4, 8, 16, 32, 32};
    for (int k = 0; k < LPIPS_TAPS; k++) {
        char name[64];
        snprintf(name, sizeof name, "lin%d.model.1.weight", k);
        const param_entry *e = param_find(&l.table, name);
        int ok = e && e->numel == (size_t)widths[k];
        for (size_t i = 0; ok && i < e->numel; i++)
            ok = p[e->offset + i] == 1.0f / widths[k];
        CHECK(ok, "%s: %d values of 1/%d", name, widths[k], widths[k]);
    }
    free(p);
    lpips_free(&l);
}

/* ---- lpips_load_files: one whole file, or the heads plus torchvision's VGG16 ---- */

typedef struct split_files {
    const char *heads, *vgg;
    int skip_head;   /* a head left out of the heads file (-1: none) */
    int conv0_width; /* features.0.weight's output channels in the VGG file */
} split_files;

/* Writes the LPIPS vgg.pth-style heads (lin<k>.model.1.weight) and a
 * torchvision-style VGG16 (features.<i>.weight/bias) from `params`. */
static void write_split_files(const lpips *l, const float *params, split_files f)
{
    static const int index[LPIPS_CONVS] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
    static const float zeros[64];
    char name[64];
    st_writer *h = st_writer_new(), *v = st_writer_new();
    for (int k = 0; k < LPIPS_TAPS; k++)
        if (k != f.skip_head) {
            snprintf(name, sizeof name, "lin%d.model.1.weight", k);
            const param_entry *e = param_find(&l->table, name);
            st_writer_add_f32(h, name, e->ndim, e->shape, params + e->offset);
        }
    for (int i = 0; i < LPIPS_CONVS; i++) {
        const param_entry *w = &l->table.entries[2 * i], *b = &l->table.entries[2 * i + 1];
        snprintf(name, sizeof name, "features.%d.weight", index[i]);
        if (i == 0 && f.conv0_width != w->shape[0])
            st_writer_add_f32(v, name, 4, (int64_t[]){f.conv0_width, 3, 3, 3}, zeros);
        else
            st_writer_add_f32(v, name, w->ndim, w->shape, params + w->offset);
        snprintf(name, sizeof name, "features.%d.bias", index[i]);
        st_writer_add_f32(v, name, b->ndim, b->shape, params + b->offset);
    }
    st_writer_save(h, f.heads);
    st_writer_save(v, f.vgg);
    st_writer_free(h);
    st_writer_free(v);
}

static void load_files_64(void *ctx)
{
    const split_files *f = ctx;
    lpips l;
    lpips_build(&l, 64);
    float *p = param_alloc(&l.table);
    lpips_load_files(&l, p, f->heads, f->vgg);
}

static void test_lpips_load_files(void)
{
    test_tmp_dir("lpips");
    lpips l;
    lpips_build(&l, 64);
    float *p = param_alloc(&l.table), *q = param_alloc(&l.table);
    lpips_init_weights(&l, p, 3);
    /* One whole state dict (ours, lpips', taming's): loaded as is. */
    const char *whole = test_tmp_path("whole.safetensors");
    st_writer *w = st_writer_new();
    param_save(&l.table, p, w, "");
    st_writer_save(w, whole);
    st_writer_free(w);
    lpips_load_files(&l, q, whole, NULL);
    CHECK(!memcmp(p, q, l.table.total * sizeof(float)), "a whole LPIPS file loads as saved");
    expect_die("a whole file and a VGG", load_files_64, &(split_files){whole, whole, -1, 1},
               "already holds LPIPS's VGG16 (net.slice*); --lpips-vgg");
    /* The heads and a torchvision VGG16. */
    split_files f = {test_tmp_path("heads.safetensors"), test_tmp_path("vgg.safetensors"), -1, 1};
    write_split_files(&l, p, f);
    memset(q, 0, l.table.total * sizeof(float));
    lpips_load_files(&l, q, f.heads, f.vgg);
    CHECK(!memcmp(p, q, l.table.total * sizeof(float)), "heads + VGG16 load every tensor in its place");
    f.skip_head = 3;
    write_split_files(&l, p, f);
    expect_die("a head missing", load_files_64, &f, "no tensor 'lin3.model.1.weight' (an LPIPS linear head)");
    f.skip_head = -1, f.conv0_width = 2;
    write_split_files(&l, p, f);
    expect_die("a VGG of another width", load_files_64, &f,
               "'features.0.weight' has shape [2, 3, 3, 3], LPIPS's VGG16 needs [1, 3, 3, 3]");
    free(p), free(q);
    lpips_free(&l);
}

int main(void)
{
    RUN(test_lpips_full_size_table);
    RUN(test_lpips_matches_torch);
    RUN(test_lpips_refusals_and_init);
    RUN(test_lpips_load_files);
    return test_summary();
}
