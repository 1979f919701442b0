/* The ADM evaluator's Inception-v3 (src/models/inception.c, spec §10.1):
 *   - the full-width parameter table: 94 convs, key names and order, element
 *     count against the PyTorch reference (dev/ref/inception_ref.py);
 *   - PyTorch parity on tests/fixtures/eval/inception_random.safetensors (a
 *     width_div = 8 network with random weights and BN statistics): pool3,
 *     spatial (sFID) and logits (IS), and batch-size independence;
 *   - the TF-1 legacy bilinear resize against the formula on a 3×3 → 7×7
 *     case, against the reference's preprocessed images, and identity at 299;
 *   - the count_include_pad=False average pool at the borders;
 *   - conv2d with rectangular kernels (1×7, 7×1, 1×3, 3×1) against its naive
 *     reference, as the Inception C/D/E blocks use them;
 *   - clear errors: missing, misshaped and unexpected tensors, a bad width
 *     divisor, features before weights.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/error.h"
#include "io/weights_file.h"
#include "models/inception.h"
#include "models/params.h"
#include "ops/conv2d.h"
#include "test.h"

#define FIXTURE "eval/inception_random"

/* The C table at width 1: every state-dict float of pytorch-fid's
 * fid_inception_v3() (23,885,392, bn.num_batches_tracked aside) minus fc.bias. */
#define FULL_TABLE_FLOATS 23884384
/* nn.Parameters of fid_inception_v3(): fc.bias in, BN running statistics out. */
#define FULL_TORCH_PARAMS 23850960

static long meta_long(const safetensors *st, const char *key)
{
    const char *s = safetensors_meta(st, key);
    if (!s)
        die("fixture '%s' has no metadata '%s'", st->path, key);
    return strtol(s, NULL, 10);
}

static uint8_t *fixture_u8(const safetensors *st, const char *name, size_t *n)
{
    float *f = fixture_f32(st, name, n);
    uint8_t *u = xmalloc(*n);
    for (size_t i = 0; i < *n; i++)
        u[i] = (uint8_t)f[i];
    free(f);
    return u;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m)
            m = fabs(x[i]);
    return m;
}

/* |got − want| <= frac · max|want| elementwise (errors of a deep float32
 * network scale with its largest activations, not with each value). */
static void check_scaled(const safetensors *st, const char *name, const float *got, size_t n, double frac)
{
    size_t nw;
    float *want = fixture_f32(st, name, &nw);
    CHECK(nw == n, "%s: fixture has %zu values, want %zu", name, nw, n);
    if (nw == n) {
        double scale = max_abs(want, n);
        char what[96];
        snprintf(what, sizeof what, "%s (max|ref| %.3g)", name, scale);
        check_close(what, got, want, n, frac * scale, 0);
    }
    free(want);
}

/* ------------------------------------------------------------------ table */

static void test_full_width_table(void)
{
    inception m;
    inception_build(&m, 1);
    size_t n = param_count_all(&m.table), stats = 0;
    for (int i = 0; i < m.table.n; i++) {
        const char *name = m.table.entries[i].name;
        size_t len = strlen(name);
        if (len > 13 && (strcmp(name + len - 13, ".running_mean") == 0 || strcmp(name + len - 12, ".running_var") == 0))
            stats += m.table.entries[i].numel;
    }
    CHECK(n == FULL_TABLE_FLOATS, "full-width table has %zu floats, want %d", n, FULL_TABLE_FLOATS);
    /* The same network counted PyTorch's way: + fc.bias, − BN running stats. */
    CHECK(n + INCEPTION_CLASSES - stats == FULL_TORCH_PARAMS, "torch-style count %zu, want %d",
          n + INCEPTION_CLASSES - stats, FULL_TORCH_PARAMS);
    safetensors *st = fixture_open(FIXTURE);
    CHECK((long)n == meta_long(st, "params_full"), "table %zu floats, reference says %ld", n,
          meta_long(st, "params_full"));
    CHECK((long)(n + INCEPTION_CLASSES - stats) == meta_long(st, "torch_params_full"),
          "torch-style count disagrees with the reference's %ld", meta_long(st, "torch_params_full"));
    safetensors_close(st);

    CHECK(m.n_conv == 94, "%d convs", m.n_conv);
    CHECK(m.table.n == 94 * 5 + 1, "%d table entries", m.table.n);
    CHECK(m.dim == 2048, "pool3 width %d", m.dim);
    /* State-dict order and names at a few places. */
    const char *want[][2] = {
        {"0", "Conv2d_1a_3x3.conv.weight"},
        {"1", "Conv2d_1a_3x3.bn.weight"},
        {"4", "Conv2d_1a_3x3.bn.running_var"},
        {"25", "Mixed_5b.branch1x1.conv.weight"},
        {"35", "Mixed_5b.branch5x5_2.conv.weight"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = atoi(want[i][0]);
        CHECK(strcmp(m.table.entries[k].name, want[i][1]) == 0, "entry %d is '%s', want '%s'", k,
              m.table.entries[k].name, want[i][1]);
    }
    CHECK(strcmp(m.table.entries[m.table.n - 1].name, "fc.weight") == 0, "last entry '%s'",
          m.table.entries[m.table.n - 1].name);
    CHECK(strcmp(m.table.entries[m.table.n - 2].name, "Mixed_7c.branch_pool.bn.running_var") == 0,
          "second to last entry '%s'", m.table.entries[m.table.n - 2].name);
    /* The rectangular kernels, by name. */
    const struct {
        const char *name;
        int64_t shape[4];
    } shapes[] = {
        {"Mixed_6b.branch7x7_2.conv.weight", {128, 128, 1, 7}},
        {"Mixed_6b.branch7x7_3.conv.weight", {192, 128, 7, 1}},
        {"Mixed_6e.branch7x7dbl_5.conv.weight", {192, 192, 1, 7}},
        {"Mixed_7a.branch7x7x3_3.conv.weight", {192, 192, 7, 1}},
        {"Mixed_7a.branch3x3_2.conv.weight", {320, 192, 3, 3}},
        {"Mixed_7b.branch3x3_2a.conv.weight", {384, 384, 1, 3}},
        {"Mixed_7c.branch3x3dbl_3b.conv.weight", {384, 384, 3, 1}},
        {"Mixed_7c.branch3x3dbl_1.conv.weight", {448, 2048, 1, 1}},
        {"Mixed_5b.branch_pool.conv.weight", {32, 192, 1, 1}},
        {"Mixed_6a.branch3x3.conv.weight", {384, 288, 3, 3}},
        {"fc.weight", {1008, 2048, 0, 0}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const param_entry *e = param_find(&m.table, shapes[i].name);
        CHECK(e != NULL, "no '%s'", shapes[i].name);
        if (!e)
            continue;
        int nd = shapes[i].shape[2] ? 4 : 2, ok = e->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = e->shape[d] == shapes[i].shape[d];
        CHECK(ok, "'%s' has the wrong shape", shapes[i].name);
    }
    inception_free(&m);
}

/* The fixture's tensors are exactly the width-8 table plus the named test data. */
static void test_fixture_keys_match_table(void)
{
    safetensors *st = fixture_open(FIXTURE);
    inception m;
    inception_build(&m, (int)meta_long(st, "width_div"));
    static const char *data[] = {"images", "resized", "resized_mean", "pool3", "spatial", "logits"};
    int extra = 0, found = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        if (param_find(&m.table, name)) {
            found++;
            continue;
        }
        int known = 0;
        for (size_t k = 0; k < sizeof data / sizeof data[0]; k++)
            known |= strcmp(name, data[k]) == 0;
        if (!known) {
            extra++;
            fprintf(stderr, "  fixture tensor '%s' is not in the table\n", name);
        }
    }
    CHECK(extra == 0, "%d fixture tensors are not in the C table", extra);
    CHECK(found == m.table.n, "fixture has %d of the %d table tensors", found, m.table.n);
    inception_free(&m);
    safetensors_close(st);
}

/* ------------------------------------------------------------------ parity */

static void test_parity_with_reference(void)
{
    safetensors *st = fixture_open(FIXTURE);
    CHECK(meta_long(st, "spatial_post_relu") == 1, "the fixture was written with the other spatial tap");
    inception m;
    inception_build(&m, (int)meta_long(st, "width_div"));
    float *params = param_alloc(&m.table);
    param_load(&m.table, params, st, "", PARAM_IGNORE_EXTRA);
    float *folded = inception_fold(&m, params);

    size_t n;
    uint8_t *images = fixture_u8(st, "images", &n);
    const int B = 2, H = (int)meta_long(st, "height"), W = (int)meta_long(st, "width");
    CHECK(n == (size_t)B * H * W * 3, "images have %zu values", n);
    float *pool3 = alloc_zeros((size_t)B * m.dim), *spatial = alloc_zeros((size_t)B * INCEPTION_SPATIAL_DIM),
          *logits = alloc_zeros((size_t)B * INCEPTION_CLASSES);
    arena a = arena_create(inception_workspace_bytes(&m, B));
    inception_features(&m, folded, images, B, H, W, pool3, spatial, logits, &a);

    /* The reference is float64 from the same float32 weights, rounded once.
     * Torch's own float32 run of this network deviates from it by 2.3e-6
     * (pool3, logits) to 5.8e-6 (spatial) of the largest value (fixture
     * metadata fp32_vs_fp64): float32 rounding accumulated over up to 17
     * sequential convs with K up to 3456.  Ours differs from torch in
     * summation order and in folding BN into the weights (one more rounding
     * per weight); measured 4e-6 (pool3), 1e-5 (spatial), 3e-6 (logits) of
     * the largest value.  Allow 5e-5 of the largest value: ~5× the measured
     * error, while a wrong layer, pool, padding or order is O(max). */
    check_scaled(st, "pool3", pool3, (size_t)B * m.dim, 5e-5);
    check_scaled(st, "spatial", spatial, (size_t)B * INCEPTION_SPATIAL_DIM, 5e-5);
    check_scaled(st, "logits", logits, (size_t)B * INCEPTION_CLASSES, 5e-5);

    /* One image at a time gives the same rows.  conv2d batches images into
     * its gemm panels differently for B = 1 and B = 2, and a batch may run as
     * one chunk with threaded gemms or as one chunk per thread, so only the
     * rounding may change (measured < 1e-6 of the largest value). */
    float *p1 = alloc_zeros(m.dim), *s1 = alloc_zeros(INCEPTION_SPATIAL_DIM), *l1 = alloc_zeros(INCEPTION_CLASSES);
    for (int b = 0; b < B; b++) {
        inception_features(&m, folded, images + (size_t)b * H * W * 3, 1, H, W, p1, s1, l1, &a);
        check_close("pool3 B=1", p1, pool3 + (size_t)b * m.dim, m.dim, 1e-5 * max_abs(pool3, (size_t)B * m.dim), 0);
        check_close("spatial B=1", s1, spatial + (size_t)b * INCEPTION_SPATIAL_DIM, INCEPTION_SPATIAL_DIM,
                    1e-5 * max_abs(spatial, (size_t)B * INCEPTION_SPATIAL_DIM), 0);
        check_close("logits B=1", l1, logits + (size_t)b * INCEPTION_CLASSES, INCEPTION_CLASSES,
                    1e-5 * max_abs(logits, (size_t)B * INCEPTION_CLASSES), 0);
    }
    /* Whole images per thread (chunks) or one chunk with threaded gemms: the
     * same rows for 1, 2 and 3 threads on a batch of 3 (uneven chunks). */
    const int max_threads = omp_get_max_threads();
    uint8_t *three = xmalloc((size_t)3 * H * W * 3);
    memcpy(three, images, (size_t)2 * H * W * 3);
    memcpy(three + (size_t)2 * H * W * 3, images, (size_t)H * W * 3);
    float *p3 = alloc_zeros((size_t)3 * m.dim), *s3 = alloc_zeros((size_t)3 * INCEPTION_SPATIAL_DIM),
          *l3 = alloc_zeros((size_t)3 * INCEPTION_CLASSES);
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        arena a3 = arena_create(inception_workspace_bytes(&m, 3));
        inception_features(&m, folded, three, 3, H, W, p3, s3, l3, &a3);
        for (int b = 0; b < 3; b++) {
            int src = b % 2;
            char what[64];
            snprintf(what, sizeof what, "pool3 %d threads, image %d", t, b);
            check_close(what, p3 + (size_t)b * m.dim, pool3 + (size_t)src * m.dim, m.dim,
                        1e-5 * max_abs(pool3, (size_t)B * m.dim), 0);
            snprintf(what, sizeof what, "spatial %d threads, image %d", t, b);
            check_close(what, s3 + (size_t)b * INCEPTION_SPATIAL_DIM, spatial + (size_t)src * INCEPTION_SPATIAL_DIM,
                        INCEPTION_SPATIAL_DIM, 1e-5 * max_abs(spatial, (size_t)B * INCEPTION_SPATIAL_DIM), 0);
            snprintf(what, sizeof what, "logits %d threads, image %d", t, b);
            check_close(what, l3 + (size_t)b * INCEPTION_CLASSES, logits + (size_t)src * INCEPTION_CLASSES,
                        INCEPTION_CLASSES, 1e-5 * max_abs(logits, (size_t)B * INCEPTION_CLASSES), 0);
        }
        CHECK(a3.high_water == a3.capacity, "%d threads: plan of %zu bytes for a peak of %zu", t, a3.capacity,
              a3.high_water);
        arena_free(&a3);
    }
    omp_set_num_threads(max_threads);
    free(three), free(p3), free(s3), free(l3);

    /* spatial and logits are optional. */
    float *p2 = alloc_zeros((size_t)B * m.dim);
    inception_features(&m, folded, images, B, H, W, p2, NULL, NULL, &a);
    check_close("pool3 without spatial/logits", p2, pool3, (size_t)B * m.dim, 0, 0);
    CHECK(a.used == 0, "arena not released (%zu bytes in use)", a.used);

    free(p1), free(s1), free(l1), free(p2);
    free(pool3), free(spatial), free(logits), free(images), free(params), free(folded);
    arena_free(&a);
    inception_free(&m);
    safetensors_close(st);
}

/* Optional end-to-end check at full width: REPAE_INCEPTION_CHECK_DIR names a
 * directory written by `dev/ref/inception_ref.py --full-width-check DIR`
 * (95 MB, so not a committed fixture).  Its pytorch-fid style
 * pt_inception_random.pth (with num_batches_tracked and fc.bias, as the real
 * file) is loaded as it is, and, if present, its tools/convert_inception.py
 * copy DIR/inception.safetensors too; each runs the width-1 network against
 * the reference.  Skipped (passes) without the variable. */
static void full_width_check(const char *wpath, const char *epath)
{
    if (access(wpath, R_OK) != 0) {
        printf("     (no %s)\n", wpath);
        return;
    }
    safetensors *ws = weights_open(wpath), *ex = safetensors_open(epath);
    inception m;
    inception_build(&m, 1);
    float *params = param_alloc(&m.table);
    inception_load(&m, params, ws);
    float *folded = inception_fold(&m, params);
    free(params); /* the forward only needs the folded copy */
    size_t n;
    uint8_t *images = fixture_u8(ex, "images", &n);
    const st_tensor *t = safetensors_require(ex, "images");
    const int B = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
    float *pool3 = alloc_zeros((size_t)B * m.dim), *spatial = alloc_zeros((size_t)B * INCEPTION_SPATIAL_DIM),
          *logits = alloc_zeros((size_t)B * INCEPTION_CLASSES);
    arena a = arena_create(inception_workspace_bytes(&m, B));
    inception_features(&m, folded, images, B, H, W, pool3, spatial, logits, &a);
    /* Same tolerance argument as the width-8 parity test (wider layers: K up
     * to 3456 there as here, since the kernels do not shrink with the width). */
    check_scaled(ex, "pool3", pool3, (size_t)B * m.dim, 5e-5);
    check_scaled(ex, "spatial", spatial, (size_t)B * INCEPTION_SPATIAL_DIM, 5e-5);
    check_scaled(ex, "logits", logits, (size_t)B * INCEPTION_CLASSES, 5e-5);
    printf("     full width from %s: checked\n", wpath);
    free(pool3), free(spatial), free(logits), free(images), free(folded);
    arena_free(&a);
    inception_free(&m);
    safetensors_close(ws);
    safetensors_close(ex);
}

static void test_full_width_converted(void)
{
    const char *dir = getenv("REPAE_INCEPTION_CHECK_DIR");
    if (!dir) {
        printf("     (skipped: set REPAE_INCEPTION_CHECK_DIR for the full-width check)\n");
        return;
    }
    char wpath[512], epath[512];
    snprintf(epath, sizeof epath, "%s/expected.safetensors", dir);
    snprintf(wpath, sizeof wpath, "%s/pt_inception_random.pth", dir);
    full_width_check(wpath, epath);
    snprintf(wpath, sizeof wpath, "%s/inception.safetensors", dir);
    full_width_check(wpath, epath);
}

/* ------------------------------------------------------------------ resize */

static void test_resize_legacy_formula(void)
{
    /* 3×3 -> 7×7: scale 3/7, so output row/column i samples src = 3i/7:
     *   i    0   1     2     3      4      5      6
     *   src  0  .4286 .8571 1.2857 1.7143 2.1429 2.5714
     *   lo   0   0     0     1      1      2      2
     *   hi   0   1     1     2      2      2      2     (floor+1 clamped at 2)
     * and v = top + (bottom − top)·yl with top/bottom lerped along x. */
    const uint8_t img[9] = {0, 50, 100, 200, 250, 30, 7, 255, 128};
    float out[49];
    inception_resize_legacy(out, img, 1, 3, 3, 1, 7, 7, 0.0f, 1.0f);
    int bad = 0;
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 7; j++) {
            double py = 3.0 * i / 7.0, px = 3.0 * j / 7.0;
            int y0 = (int)py, x0 = (int)px, y1 = y0 + 1 > 2 ? 2 : y0 + 1, x1 = x0 + 1 > 2 ? 2 : x0 + 1;
            double yl = py - y0, xl = px - x0;
            double top = img[y0 * 3 + x0] + (img[y0 * 3 + x1] - img[y0 * 3 + x0]) * xl;
            double bot = img[y1 * 3 + x0] + (img[y1 * 3 + x1] - img[y1 * 3 + x0]) * xl;
            double want = top + (bot - top) * yl;
            /* float32 positions (3/7 rounded) move samples by ~1e-7·255. */
            if (fabs(out[i * 7 + j] - want) > 1e-4) {
                if (bad++ < 5)
                    fprintf(stderr, "  resize (%d,%d) = %.6f, want %.6f\n", i, j, out[i * 7 + j], want);
            }
        }
    CHECK(bad == 0, "%d resized values off the formula", bad);
    /* Two values by hand: (0,0) is the corner pixel; (6,6) is clamped to (2,2);
     * (1,1): src (3/7, 3/7): top = 0 + 50·3/7, bottom = 200 + 50·3/7,
     * v = top + 200·3/7 = 250·3/7 = 107.142857. */
    CHECK(out[0] == 0.0f && out[48] == 128.0f, "corners %g %g", out[0], out[48]);
    CHECK(fabs(out[8] - 107.142857) < 1e-4, "(1,1) = %.6f, want 107.142857", out[8]);
    /* Not the half-pixel (align_corners=False, PyTorch) resize: that would
     * sample (1,1) at src (i + 0.5)·3/7 − 0.5 = 1/7, giving 250/7. */
    CHECK(fabs(out[8] - 250.0 / 7.0) > 1.0, "looks like a half-pixel resize");

    /* The normalisation and the NCHW layout with 3 channels: identity at 299. */
    const int S = INCEPTION_SIZE;
    uint8_t *big = xmalloc((size_t)S * S * 3);
    for (size_t i = 0; i < (size_t)S * S * 3; i++)
        big[i] = (uint8_t)(i * 7 + i / 13);
    float *o = xmalloc((size_t)S * S * 3 * sizeof(float));
    inception_resize_legacy(o, big, 1, S, S, 3, S, S, 128.0f, 1.0f / 128.0f);
    int mism = 0;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < S * S; p++)
            mism += o[(size_t)c * S * S + p] != ((float)big[(size_t)p * 3 + c] - 128.0f) / 128.0f;
    CHECK(mism == 0, "299 -> 299 is not the identity (%d values differ)", mism);
    free(big);
    free(o);
}

static void test_resize_matches_reference(void)
{
    safetensors *st = fixture_open(FIXTURE);
    size_t n;
    uint8_t *images = fixture_u8(st, "images", &n);
    const int B = 2, H = (int)meta_long(st, "height"), W = (int)meta_long(st, "width"), S = INCEPTION_SIZE;
    float *x = xmalloc((size_t)B * 3 * S * S * sizeof(float));
    inception_resize_legacy(x, images, B, H, W, 3, S, S, 128.0f, 1.0f / 128.0f);
    float corner[2 * 3 * 8 * 8], mean[2 * 3];
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++) {
            const float *p = x + ((size_t)b * 3 + c) * S * S;
            double s = 0;
            for (int i = 0; i < S * S; i++)
                s += p[i];
            mean[b * 3 + c] = (float)(s / (S * S));
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++)
                    corner[((b * 3 + c) * 8 + i) * 8 + j] = p[i * S + j];
        }
    /* Values in [−1, 1]; float32 lerps of 0..255 are good to ~3e-5/128. */
    fixture_check(st, "resized", corner, sizeof corner / sizeof corner[0], 1e-6, 0);
    fixture_check(st, "resized_mean", mean, 6, 1e-6, 0);
    free(x);
    free(images);
    safetensors_close(st);
}

/* ------------------------------------------------------------------ pooling */

static void test_avgpool_excludes_padding(void)
{
    enum { B = 2, C = 3, H = 4, W = 5 };
    float *x = alloc_uniform(B * C * H * W, -2, 2, 7), out[B * C * H * W];
    inception_avgpool3x3(out, x, B, C, H, W);
    int bad = 0;
    for (int p = 0; p < B * C; p++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                double s = 0;
                int cnt = 0;
                for (int i = h - 1; i <= h + 1; i++)
                    for (int j = w - 1; j <= w + 1; j++)
                        if (i >= 0 && i < H && j >= 0 && j < W)
                            s += x[(p * H + i) * W + j], cnt++;
                if (fabs(out[(p * H + h) * W + w] - s / cnt) > 1e-6)
                    bad++;
            }
    CHECK(bad == 0, "%d average-pool values wrong", bad);
    /* Corner: mean of the 4 in-image values (not their sum / 9); an edge: 6. */
    const float *x0 = x;
    double corner = (x0[0] + x0[1] + x0[W] + x0[W + 1]) / 4.0;
    double edge = (x0[1] + x0[2] + x0[3] + x0[W + 1] + x0[W + 2] + x0[W + 3]) / 6.0;
    CHECK(fabs(out[0] - corner) < 1e-6, "corner %g, want %g", out[0], corner);
    CHECK(fabs(out[2] - edge) < 1e-6, "top edge %g, want %g", out[2], edge);
    CHECK(fabs(out[0] - corner * 4.0 / 9.0) > 1e-3, "corner counts the padding");
    free(x);
}

/* ------------------------------------------------------------------ rectangular convs */

static void test_conv2d_rectangular_kernels(void)
{
    static const struct {
        int B, C_in, H, W, C_out, kh, kw, stride, ph, pw;
    } cases[] = {
        {1, 5, 17, 17, 6, 1, 7, 1, 0, 3},  {4, 5, 17, 17, 6, 7, 1, 1, 3, 0}, {3, 4, 8, 8, 5, 1, 3, 1, 0, 1},
        {3, 4, 8, 8, 5, 3, 1, 1, 1, 0},    {2, 3, 9, 11, 4, 7, 1, 1, 3, 0},  {2, 3, 9, 11, 4, 1, 7, 1, 0, 3},
        {2, 6, 17, 17, 5, 3, 3, 2, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conv2d_shape s = {cases[i].B, cases[i].C_in, cases[i].H, cases[i].W, cases[i].C_out, cases[i].kh,
                          cases[i].kw, cases[i].stride, cases[i].ph, cases[i].pw, cases[i].ph, cases[i].pw};
        CHECK(conv2d_out_h(&s) == (cases[i].H + 2 * cases[i].ph - cases[i].kh) / cases[i].stride + 1 &&
                  conv2d_out_w(&s) == (cases[i].W + 2 * cases[i].pw - cases[i].kw) / cases[i].stride + 1,
              "case %zu: output size", i);
        float *x = alloc_normal(conv2d_x_numel(&s), 1, 100 + i), *w = alloc_normal(conv2d_weight_numel(&s), 0.3, 200 + i),
              *bias = alloc_normal(s.C_out, 1, 300 + i);
        float *got = alloc_zeros(conv2d_out_numel(&s)), *want = alloc_zeros(conv2d_out_numel(&s));
        float *ws = alloc_zeros(conv2d_workspace_floats(&s) + 1);
        conv2d_forward(got, x, w, bias, &s, ws);
        conv2d_forward_ref(want, x, w, bias, &s);
        char what[64];
        snprintf(what, sizeof what, "conv %dx%d case %zu", s.kh, s.kw, i);
        check_close(what, got, want, conv2d_out_numel(&s), 1e-5, 1e-5);
        free(x), free(w), free(bias), free(got), free(want), free(ws);
    }
}

/* ------------------------------------------------------------------ errors */

typedef struct err_ctx {
    const char *path;
    int width_div;
} err_ctx;

static void load_file(void *p)
{
    const err_ctx *c = p;
    inception m;
    inception_build(&m, c->width_div);
    float *params = param_alloc(&m.table);
    safetensors *st = safetensors_open(c->path);
    inception_load(&m, params, st);
}

static void build_bad(void *p)
{
    inception m;
    inception_build(&m, *(int *)p);
}

static void features_unloaded(void *p)
{
    (void)p;
    inception m;
    inception_build(&m, 16);
    arena a = arena_create(inception_workspace_bytes(&m, 1));
    uint8_t img[3 * 4 * 4] = {0};
    float pool3[128];
    inception_features(&m, NULL, img, 1, 4, 4, pool3, NULL, NULL, &a);
}

static void features_bad_batch(void *p)
{
    const int *bhw = p;
    inception m;
    inception_build(&m, 16);
    float *params = param_alloc(&m.table);
    param_init(&m.table, params, 1);
    float *folded = inception_fold(&m, params);
    arena a = arena_create(inception_workspace_bytes(&m, 1));
    uint8_t img[3 * 4 * 4] = {0};
    float pool3[128];
    inception_features(&m, folded, img, bhw[0], bhw[1], bhw[2], pool3, NULL, NULL, &a);
}

/* Writes the fixture's weights to `path`, dropping `skip`, reshaping
 * `reshape` to [n−1] (flattened) and adding `extra` [1008] as the file's
 * first tensor (the screen for extras must start there). */
static void write_variant(const char *path, const inception *m, const float *params, const char *skip,
                          const char *reshape, const char *extra, float *scratch)
{
    st_writer *w = st_writer_new();
    if (extra)
        st_writer_add_f32(w, extra, 1, (int64_t[]){INCEPTION_CLASSES}, scratch);
    for (int i = 0; i < m->table.n; i++) {
        const param_entry *e = &m->table.entries[i];
        if (skip && strcmp(e->name, skip) == 0)
            continue;
        if (reshape && strcmp(e->name, reshape) == 0)
            st_writer_add_f32(w, e->name, 1, (int64_t[]){(int64_t)e->numel - 1}, params + e->offset);
        else
            st_writer_add_f32(w, e->name, e->ndim, e->shape, params + e->offset);
    }
    st_writer_save(w, path);
    st_writer_free(w);
}

static void test_clear_errors(void)
{
    safetensors *st = fixture_open(FIXTURE);
    int d = (int)meta_long(st, "width_div");
    inception m;
    inception_build(&m, d);
    float *params = param_alloc(&m.table);
    param_load(&m.table, params, st, "", PARAM_IGNORE_EXTRA);
    safetensors_close(st);
    float *scratch = alloc_zeros(INCEPTION_CLASSES);

    char path[256];
    snprintf(path, sizeof path, "/tmp/repae_test_inception_%d.safetensors", (int)getpid());
    err_ctx c = {path, d};

    /* A clean file loads strictly (so the failures below are the edits). */
    write_variant(path, &m, params, NULL, NULL, NULL, scratch);
    CHECK(run_in_child(load_file, &c, NULL, 0) == 0, "a complete weight file does not load");

    write_variant(path, &m, params, "Mixed_6d.branch1x1.bn.running_var", NULL, NULL, scratch);
    expect_die("missing key", load_file, &c, "missing tensor 'Mixed_6d.branch1x1.bn.running_var'");

    write_variant(path, &m, params, NULL, "Mixed_7b.branch3x3_2a.conv.weight", NULL, scratch);
    expect_die("misshaped key", load_file, &c, "Mixed_7b.branch3x3_2a.conv.weight");

    /* fc.bias and *.bn.num_batches_tracked are pytorch-fid's and ignored
     * (test_release_files); any other extra tensor is not this network. */
    write_variant(path, &m, params, NULL, NULL, "AuxLogits.fc.bias", scratch);
    expect_die("unexpected AuxLogits", load_file, &c, "unexpected tensor 'AuxLogits.fc.bias'");
    write_variant(path, &m, params, NULL, NULL, "fc.bias", scratch);
    CHECK(run_in_child(load_file, &c, NULL, 0) == 0, "pytorch-fid's fc.bias is not ignored");
    write_variant(path, &m, params, NULL, NULL, "Mixed_5b.branch1x1.bn.num_batches_tracked", scratch);
    CHECK(run_in_child(load_file, &c, NULL, 0) == 0, "a BN's num_batches_tracked is not ignored");
    write_variant(path, &m, params, NULL, NULL, "Mixed_5b.branch1x1.bn.running_mean_copy", scratch);
    expect_die("a long name of no suffix", load_file, &c,
               "unexpected tensor 'Mixed_5b.branch1x1.bn.running_mean_copy'");
    write_variant(path, &m, params, NULL, NULL, ".bn.num_batches_tracked", scratch);
    expect_die("the suffix alone", load_file, &c, "unexpected tensor '.bn.num_batches_tracked'");

    /* Real weights into a width-8 table: the first tensor's shape is wrong. */
    err_ctx c1 = {path, 1};
    write_variant(path, &m, params, NULL, NULL, NULL, scratch);
    expect_die("wrong width", load_file, &c1, "Conv2d_1a_3x3.conv.weight");
    unlink(path);

    int bad = 3;
    expect_die("width divisor 3", build_bad, &bad, "width divisor 3");
    bad = 32;
    expect_die("width divisor 32", build_bad, &bad, "width divisor 32");
    expect_die("features before load", features_unloaded, NULL, "weights not loaded");
    expect_die("no images", features_bad_batch, (int[]){0, 4, 4}, "inception: bad batch 0 of 4x4 images");
    expect_die("no rows", features_bad_batch, (int[]){1, 0, 4}, "inception: bad batch 1 of 0x4 images");
    expect_die("no columns", features_bad_batch, (int[]){1, 4, 0}, "inception: bad batch 1 of 4x0 images");

    /* Random networks (benchmarks, tests) draw convs He-normal over the
     * kernel's fan-in and the fc at 1/sqrt(dim). */
    const param_entry *c3 = param_find(&m.table, "Conv2d_1a_3x3.conv.weight");
    const param_entry *c7 = param_find(&m.table, "Mixed_6b.branch7x7_2.conv.weight");
    const param_entry *fc = param_find(&m.table, "fc.weight");
    CHECK(c3 && c3->init_arg == sqrtf(2.0f / 27) && c7 && c7->shape[2] == 1 && c7->shape[3] == 7 &&
              c7->init_arg == sqrtf(2.0f / (float)(c7->shape[1] * 7)) && fc && fc->init_arg == 1.0f / sqrtf(m.dim),
          "init std: conv 3x3 %g, conv 1x7 %g, fc %g", c3 ? c3->init_arg : 0, c7 ? c7->init_arg : 0,
          fc ? fc->init_arg : 0);

    free(scratch);
    free(params);
    inception_free(&m);
}

int main(void)
{
    RUN(test_full_width_table);
    RUN(test_fixture_keys_match_table);
    RUN(test_resize_legacy_formula);
    RUN(test_resize_matches_reference);
    RUN(test_avgpool_excludes_padding);
    RUN(test_conv2d_rectangular_kernels);
    RUN(test_parity_with_reference);
    RUN(test_clear_errors);
    RUN(test_full_width_converted);
    return test_summary();
}
