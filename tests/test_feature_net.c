/* The ViT and CNN feature networks of `repae eval` (src/eval/feature_net.c)
 * against the same features built from their public parts: the documented
 * normalisation (u/255 − mean)/std, grey taken as the mean of the channels
 * or repeated into them, the bicubic resize to the network's size, the
 * final-norm cls token or the mean of the patch tokens; a 3-channel ViT
 * takes DINOv2's ImageNet normalisation instead.  The networks are
 * tiny ones that `repae train-encoder` writes; Inception's path is
 * test_release_files' and test_inception's. */
#include <math.h>

#include "core/arena.h"
#include "core/error.h"
#include "eval/feature_net.h"
#include "io/safetensors.h"
#include "models/cnn_classifier.h"
#include "models/vit.h"
#include "ops/resample.h"
#include "test.h"

static const char *tmp;
static char vit_path[512], vit3_path[512], cnn1_path[512], cnn3_path[512];

static const char *repae_bin(void)
{
    static char path[256];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/repae", b && *b ? b : "build");
    return path;
}

/* B images H×W in NHWC with C channels: every pixel and channel different;
 * with equal_channels the channels of a pixel hold one value. */
static uint8_t *images_nhwc(int B, int H, int W, int C, int equal_channels, int seed)
{
    uint8_t *im = xmalloc((size_t)B * H * W * C);
    for (int i = 0; i < B * H * W; i++)
        for (int c = 0; c < C; c++)
            im[(size_t)i * C + c] = (uint8_t)((i * 37 + seed * 11 + (equal_channels ? 0 : c * 85)) % 256);
    return im;
}

/* The grey (1-channel) NCHW input the documentation describes: the mean of
 * the channels, normalised. */
static float *grey_normalised(const uint8_t *im, int B, int HW, int C, float mean, float std)
{
    float *g = xmalloc((size_t)B * HW * sizeof(float));
    for (int i = 0; i < B * HW; i++) {
        float v = 0;
        for (int c = 0; c < C; c++)
            v += (float)im[(size_t)i * C + c];
        v = C == 1 ? v : v / (float)C;
        g[i] = (v / 255.0f - mean) / std;
    }
    return g;
}

/* The 3-channel NCHW input (u/255 − mean[c])/std[c], a grey image's value
 * in all three channels. */
static float *rgb_normalised(const uint8_t *im, int B, int HW, int C, const float mean[3], const float std[3])
{
    float *x = xmalloc((size_t)B * 3 * HW * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < HW; p++)
                x[((size_t)b * 3 + c) * HW + p] =
                    ((float)im[((size_t)b * HW + p) * C + (C == 1 ? 0 : c)] / 255.0f - mean[c]) / std[c];
    return x;
}

/* The ViT's features from its parts: the input (grey for a 1-channel ViT,
 * DINOv2's normalisation for a 3-channel one), resized to S when the images
 * are another size, then the cls token or the patch tokens' mean. */
static float *vit_reference(const char *path, const uint8_t *im, int B, int H, int W, int C,
                            feature_net_layer layer, float mean, float std)
{
    safetensors *st = safetensors_open(path);
    vit m;
    float *w = vit_from_checkpoint(&m, st, "", 0, 2, PARAM_ALLOW_EXTRA);
    safetensors_close(st);
    const int S = m.cfg.img_size, D = m.cfg.embed_dim, G2 = m.npatch, Cv = m.cfg.in_chans;
    /* a 3-channel ViT: DINOv2's ImageNet normalisation */
    const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    float *g = Cv == 1 ? grey_normalised(im, B, H * W, C, mean, std)
                       : rgb_normalised(im, B, H * W, C, imagenet_mean, imagenet_std),
          *in = g;
    if (H != S || W != S) {
        in = xmalloc((size_t)B * Cv * S * S * sizeof(float));
        bicubic_resize_forward(in, g, B, Cv, H, W, S, S);
    }
    arena ar = arena_create(vit_plan_bytes(&m, B, false));
    vit_acts a;
    vit_acts_alloc(&a, &m, &ar, B, false);
    float *pool = xmalloc((size_t)B * D * sizeof(float)), *patch = xmalloc((size_t)B * G2 * D * sizeof(float));
    vit_forward(&m, w, &a, in, patch, pool, NULL, NULL);
    if (layer == FNET_VIT_MEAN_PATCH) { /* token by token into double sums, then the mean */
        double *sum = calloc((size_t)B * D, sizeof(double));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < G2; t++)
                for (int d = 0; d < D; d++)
                    sum[(size_t)b * D + d] += patch[((size_t)b * G2 + t) * D + d];
        for (int i = 0; i < B * D; i++)
            pool[i] = (float)(sum[i] / G2);
        free(sum);
    }
    arena_free(&ar);
    if (in != g)
        free(in);
    free(g), free(patch), free(w);
    vit_free(&m);
    return pool;
}

static void test_vit_features_from_their_parts(void)
{
    const int B = 3;
    /* 1- and 3-channel ViTs (32 px) on images of their size or another,
     * square or not (the output goes to guarded memory: a write past the
     * last feature faults) */
    const struct {
        const char *path;
        int H, W, C, equal;
    } cases[] = {{vit_path, 32, 32, 1, 0},  {vit_path, 32, 32, 3, 1},  {vit_path, 40, 40, 1, 0},
                 {vit_path, 24, 24, 3, 0},  {vit_path, 32, 24, 1, 0},  {vit_path, 24, 32, 3, 0},
                 {vit3_path, 32, 32, 3, 0}, {vit3_path, 32, 32, 1, 0}, {vit3_path, 40, 24, 3, 0}};
    for (int layer = 0; layer < 2; layer++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const int H = cases[k].H, W = cases[k].W, C = cases[k].C;
            const bool three = cases[k].path == vit3_path;
            uint8_t *im = images_nhwc(B, H, W, C, cases[k].equal, (int)k);
            feature_net f;
            feature_net_open_vit(&f, cases[k].path, (feature_net_layer)layer, 0, NAN, NAN, 4);
            CHECK(f.dim == 24 && f.spatial_dim == 0 && f.n_logits == 0 && f.v.cfg.in_chans == (three ? 3 : 1),
                  "ViT feature net: dim %d, %d channels", f.dim, f.v.cfg.in_chans);
            const size_t bytes = (size_t)B * f.dim * sizeof(float);
            float *got = alloc_guarded(bytes);
            feature_net_features(&f, im, B, H, W, C, got, NULL, NULL);
            float *want = vit_reference(cases[k].path, im, B, H, W, C, (feature_net_layer)layer, 0.5f, 0.5f);
            char what[128];
            snprintf(what, sizeof what, "%d-channel ViT %s, %dx%d px, %d channels", three ? 3 : 1,
                     layer ? "mean patch" : "cls", H, W, C);
            check_close(what, got, want, (size_t)B * f.dim, 1e-6, 1e-6);
            free_guarded(got, bytes), free(want), free(im);
            feature_net_free(&f);
        }
    /* --enc-mean / --enc-std over the file's 0.5 / 0.5 */
    uint8_t *im = images_nhwc(B, 32, 32, 1, 0, 9);
    feature_net f;
    feature_net_open_vit(&f, vit_path, FNET_VIT_CLS, 2, 0.25f, 0.125f, 4);
    float got[3 * 24];
    feature_net_features(&f, im, B, 32, 32, 1, got, NULL, NULL);
    float *want = vit_reference(vit_path, im, B, 32, 32, 1, FNET_VIT_CLS, 0.25f, 0.125f);
    check_close("ViT with enc_mean 0.25, enc_std 0.125", got, want, (size_t)B * 24, 1e-6, 1e-6);
    free(want), free(im);
    feature_net_free(&f);
}

/* The CNN's features from its parts: its input channels from the images
 * (grey = the mean, or grey repeated), resized to the size it was trained
 * at. */
static float *cnn_reference(const char *path, const uint8_t *im, int B, int H, int W, int C)
{
    safetensors *st = safetensors_open(path);
    cnn_classifier m;
    float *w = cnn_from_checkpoint(&m, st, "", 0, PARAM_ALLOW_EXTRA);
    safetensors_close(st);
    const int Cm = m.cfg.in_chans, S = 32, HW = H * W;
    const float half[3] = {0.5f, 0.5f, 0.5f};
    float *x = Cm == 1 ? grey_normalised(im, B, HW, C, 0.5f, 0.5f) : rgb_normalised(im, B, HW, C, half, half);
    float *in = x;
    if (H != S || W != S) {
        in = xmalloc((size_t)B * Cm * S * S * sizeof(float));
        bicubic_resize_forward(in, x, B, Cm, H, W, S, S);
    }
    arena ar = arena_create(cnn_plan_bytes(&m, B, S, S, false));
    cnn_acts a;
    cnn_acts_alloc(&a, &m, &ar, B, S, S, false);
    float *pool = xmalloc((size_t)B * m.dim * sizeof(float));
    cnn_forward(&m, w, &a, in, pool, NULL);
    arena_free(&ar);
    if (in != x)
        free(in);
    free(x), free(w);
    cnn_free(&m);
    return pool;
}

static void test_cnn_features_from_their_parts(void)
{
    const int B = 2;
    const char *paths[2] = {cnn1_path, cnn3_path};
    const struct {
        int H, W, C;
    } cases[] = {{32, 32, 1}, {32, 32, 3}, {20, 20, 3}, {32, 20, 3}, {20, 32, 1}};
    for (int p = 0; p < 2; p++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const int H = cases[k].H, W = cases[k].W, C = cases[k].C;
            uint8_t *im = images_nhwc(B, H, W, C, 0, (int)k + 3);
            feature_net f;
            feature_net_open_cnn(&f, paths[p], NAN, NAN, 2);
            CHECK(f.cnn_size == 32 && f.dim == 16, "CNN feature net: trained at %d px, dim %d", f.cnn_size, f.dim);
            const size_t bytes = (size_t)B * f.dim * sizeof(float);
            float *got = alloc_guarded(bytes);
            feature_net_features(&f, im, B, H, W, C, got, NULL, NULL);
            float *want = cnn_reference(paths[p], im, B, H, W, C);
            char what[96];
            snprintf(what, sizeof what, "CNN of %d channels, %dx%d px images of %d channels", p ? 3 : 1, H, W, C);
            check_close(what, got, want, (size_t)B * f.dim, 1e-6, 1e-6);
            free_guarded(got, bytes), free(want), free(im);
            feature_net_free(&f);
        }
}

static void open_vit_child(void *ctx)
{
    feature_net f;
    feature_net_open_vit(&f, ctx, FNET_VIT_CLS, 0, NAN, NAN, 2);
}

/* A copy of `src` at `dst` whose metadata key `key` is `value` (NULL: the
 * key removed); the tensors are the same. */
static void copy_with_meta(const char *src, const char *dst, const char *key, const char *value)
{
    safetensors *st = safetensors_open(src);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, safetensors_tensor_bytes(st, t));
    }
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) != 0)
            st_writer_set_metadata(w, st->meta[i].key, st->meta[i].value);
    if (value)
        st_writer_set_metadata(w, key, value);
    st_writer_save(w, dst);
    st_writer_free(w);
    safetensors_close(st);
}

/* What the files' metadata sets: enc_mean / enc_std where the flags leave
 * them (NaN), 0.5 where the file has none, an unreadable one or a std that
 * is not positive; the CNN's training size from img_size, 0 (the images'
 * own size) outside 1..65536 or absent. */
static void test_metadata_read_and_defaults(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/meta.safetensors", tmp);
    const struct {
        const char *key, *value;
        float mean, std;
    } vit_cases[] = {{"enc_mean", "0.25", 0.25f, 0.5f}, {"enc_std", "0.125", 0.5f, 0.125f},
                     {"enc_mean", NULL, 0.5f, 0.5f},    {"enc_std", NULL, 0.5f, 0.5f},
                     {"enc_mean", "0.25x", 0.5f, 0.5f}, {"enc_mean", "", 0.5f, 0.5f},
                     {"enc_std", "0", 0.5f, 0.5f},      {"enc_std", "-1", 0.5f, 0.5f},
                     {"enc_mean", "0.75", 0.75f, 0.5f}};
    for (size_t k = 0; k < sizeof vit_cases / sizeof vit_cases[0]; k++)
        for (int cnn = 0; cnn < 2; cnn++) {
            copy_with_meta(cnn ? cnn1_path : vit_path, path, vit_cases[k].key, vit_cases[k].value);
            feature_net f;
            if (cnn)
                feature_net_open_cnn(&f, path, NAN, NAN, 2);
            else
                feature_net_open_vit(&f, path, FNET_VIT_CLS, 0, NAN, NAN, 2);
            CHECK(f.enc_mean == vit_cases[k].mean && f.enc_std == vit_cases[k].std,
                  "%s with %s = '%s': enc_mean %g, enc_std %g (want %g, %g)", cnn ? "CNN" : "ViT", vit_cases[k].key,
                  vit_cases[k].value ? vit_cases[k].value : "(none)", f.enc_mean, f.enc_std, vit_cases[k].mean,
                  vit_cases[k].std);
            feature_net_free(&f);
        }
    /* the heads: --enc-heads, else the config's "heads" or "num_heads", else
     * the DINOv2 preset of the width (none for 24: refused) */
    safetensors *st = safetensors_open(vit_path);
    char config[512];
    snprintf(config, sizeof config, "%s", safetensors_meta(st, "config"));
    safetensors_close(st);
    char *at = strstr(config, "\"heads\": 2");
    CHECK(at != NULL, "the ViT's config records no \"heads\": 2: %s", config);
    if (!at)
        return;
    const struct {
        const char *heads_entry;
        int flag, want;
    } head_cases[] = {{"\"heads\": 2", 1, 1}, {"\"heads\": 1", 0, 1}, {"\"num_heads\": 2", 0, 2},
                      {"\"heads\": 1", 3, 3}, {"\"heads\": 0", 0, 0}, {"\"heads\": 5", 0, 0}};
    for (size_t k = 0; k < sizeof head_cases / sizeof head_cases[0]; k++) {
        char changed[600];
        snprintf(changed, sizeof changed, "%.*s%s%s", (int)(at - config), config, head_cases[k].heads_entry,
                 at + strlen("\"heads\": 2"));
        copy_with_meta(vit_path, path, "config", changed);
        if (head_cases[k].want == 0) { /* 24 is no multiple of 5, and no preset's width */
            expect_die(changed, open_vit_child, path,
                       "matches no DINOv2 preset and the file does not record its heads");
            continue;
        }
        feature_net f;
        feature_net_open_vit(&f, path, FNET_VIT_CLS, head_cases[k].flag, NAN, NAN, 2);
        CHECK(f.v.cfg.heads == head_cases[k].want, "ViT with %s and --enc-heads %d: %d heads (want %d)",
              head_cases[k].heads_entry, head_cases[k].flag, f.v.cfg.heads, head_cases[k].want);
        feature_net_free(&f);
    }
    const struct {
        const char *value;
        int size;
    } size_cases[] = {{"32", 32}, {"1", 1}, {"65536", 65536}, {"65537", 0}, {"0", 0}, {"0.5", 0}, {NULL, 0}};
    for (size_t k = 0; k < sizeof size_cases / sizeof size_cases[0]; k++) {
        copy_with_meta(cnn1_path, path, "img_size", size_cases[k].value);
        feature_net f;
        feature_net_open_cnn(&f, path, NAN, NAN, 2);
        CHECK(f.cnn_size == size_cases[k].size, "CNN with img_size '%s': size %d (want %d)",
              size_cases[k].value ? size_cases[k].value : "(none)", f.cnn_size, size_cases[k].size);
        feature_net_free(&f);
    }
}

/* Misuse is refused in words: batches outside 1..max, 2-channel images,
 * outputs the network does not have, a file of the other kind. */
typedef struct {
    int B, C, want_spatial, want_logits;
    const char *path;
} misuse;

static void misuse_child(void *ctx)
{
    const misuse *m = ctx;
    feature_net f;
    if (m->path == vit_path)
        feature_net_open_vit(&f, m->path, FNET_VIT_CLS, 0, NAN, NAN, 2);
    else
        feature_net_open_cnn(&f, m->path, NAN, NAN, 2);
    uint8_t im[3 * 32 * 32 * 3] = {0};
    float pool[3 * 64], spatial[16], logits[16];
    feature_net_features(&f, im, m->B, 32, 32, m->C, pool, m->want_spatial ? spatial : NULL,
                         m->want_logits ? logits : NULL);
}

static void open_cnn_child(void *ctx)
{
    feature_net f;
    feature_net_open_cnn(&f, ctx, NAN, NAN, 2);
}

static void open_inception_child(void *ctx)
{
    feature_net f;
    feature_net_open_inception(&f, ctx, 2);
}

static void test_misuse_refused(void)
{
    misuse cases[] = {{0, 1, 0, 0, vit_path}, {3, 1, 0, 0, cnn1_path}, {1, 2, 0, 0, vit_path},
                      {1, 1, 1, 0, vit_path}, {1, 1, 0, 1, cnn1_path}};
    const char *want[] = {"feature network: batch of 0 images (1..2)", "feature network: batch of 3 images (1..2)",
                          "feature network: 2-channel images (1 or 3 are supported)",
                          "feature network vit-cls has no spatial output", "feature network cnn has no logits output"};
    for (int i = 0; i < 5; i++)
        expect_die(want[i], misuse_child, &cases[i], want[i]);
    expect_die("a CNN file as a ViT", open_vit_child, cnn1_path,
               "a CNN classifier (from `repae train-encoder --arch cnn`)");
    expect_die("a ViT file as a CNN", open_cnn_child, vit_path, "a ViT encoder, not a CNN classifier");
    /* a file of neither kind, and a cls_token of the wrong rank */
    char other[600], flat[600];
    snprintf(other, sizeof other, "%s/other.safetensors", tmp);
    snprintf(flat, sizeof flat, "%s/flat_cls.safetensors", tmp);
    const float zeros[24] = {0};
    const int64_t shape1[1] = {24}, shape2[2] = {1, 24};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "conv_in.weight", 1, shape1, zeros);
    st_writer_save(w, other);
    st_writer_free(w);
    w = st_writer_new();
    st_writer_add_f32(w, "cls_token", 2, shape2, zeros);
    st_writer_save(w, flat);
    st_writer_free(w);
    expect_die("a file of neither kind as a ViT", open_vit_child, other, "not a DINOv2-family ViT (no cls_token");
    expect_die("a [1, D] cls_token", open_vit_child, flat, "not a DINOv2-family ViT (no cls_token [1, 1, D])");
    expect_die("a file of neither kind as a CNN", open_cnn_child, other, "not a CNN classifier (no stages.0.conv1");
    /* Inception's first convolution: 32 filters, or 32 / 2, 4, 8, 16 */
    const int64_t filters24[4] = {24, 3, 3, 3}, rank3[3] = {16, 3, 9}, none[4] = {0, 3, 3, 3};
    float *w3 = calloc(24 * 27, sizeof(float));
    const struct {
        int ndim;
        const int64_t *shape;
        const char *want;
    } inc[] = {{4, filters24, "has 24 filters; Inception-v3 has 32"},
               {3, rank3, "has 16 filters; Inception-v3"},
               {4, none, "has 0 filters; Inception-v3"}};
    for (int i = 0; i < 3; i++) {
        w = st_writer_new();
        st_writer_add_f32(w, "Conv2d_1a_3x3.conv.weight", inc[i].ndim, inc[i].shape, w3);
        st_writer_save(w, other);
        st_writer_free(w);
        expect_die(inc[i].want, open_inception_child, other, inc[i].want);
    }
    free(w3);
}

static int make_networks(void)
{
    char cmd[2048], err[4096];
    const char *common = "--max-images 32 --max-eval-images 16 --batch-size 16 --eval-batch 16 --epochs 1";
    int rc = 0;
    for (int c = 1; c <= 3 && rc == 0; c += 2) {
        snprintf(cmd, sizeof cmd, "%s train-encoder %s --embed-dim 24 --heads 2 --depth 1 --patch 8 --channels %d "
                 "--output-dir %s --exp-name vit%d", repae_bin(), common, c, tmp, c);
        rc = run_command(cmd, NULL, 0, err, sizeof err);
    }
    for (int c = 1; c <= 3 && rc == 0; c += 2) {
        snprintf(cmd, sizeof cmd, "%s train-encoder %s --arch cnn --cnn-widths 8,16 --cnn-groups 4 --channels %d "
                 "--output-dir %s --exp-name cnn%d", repae_bin(), common, c, tmp, c);
        rc = run_command(cmd, NULL, 0, err, sizeof err);
    }
    if (rc != 0)
        fprintf(stderr, "train-encoder failed: %s\n", err);
    snprintf(vit_path, sizeof vit_path, "%s/vit1/encoder.safetensors", tmp);
    snprintf(vit3_path, sizeof vit3_path, "%s/vit3/encoder.safetensors", tmp);
    snprintf(cnn1_path, sizeof cnn1_path, "%s/cnn1/classifier.safetensors", tmp);
    snprintf(cnn3_path, sizeof cnn3_path, "%s/cnn3/classifier.safetensors", tmp);
    return rc;
}

int main(void)
{
    tmp = test_tmp_dir("feature_net");
    if (make_networks() != 0) {
        CHECK(0, "could not write the networks with `repae train-encoder`");
        return test_summary();
    }
    RUN(test_vit_features_from_their_parts);
    RUN(test_cnn_features_from_their_parts);
    RUN(test_metadata_read_and_defaults);
    RUN(test_misuse_refused);
    return test_summary();
}
