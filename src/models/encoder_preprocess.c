/* encoder_preprocess.c — spec §1.3, see encoder_preprocess.h. */
#include "models/encoder_preprocess.h"

#include <string.h>

#include "core/error.h"
#include "ops/resample.h"

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f}, IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

encoder_preprocess_kind encoder_preprocess_kind_for(const char *enc_type)
{
    if (strncmp(enc_type, "dinov2-", 7) == 0 || strncmp(enc_type, "jepa-", 5) == 0)
        return ENC_PRE_DINOV2;
    if (strncmp(enc_type, "clip-", 5) == 0)
        return ENC_PRE_CLIP;
    if (strncmp(enc_type, "mocov3-", 7) == 0 || strncmp(enc_type, "mae-", 4) == 0)
        return ENC_PRE_IMAGENET;
    die("encoder '%s': unknown family for preprocessing (known: dinov2-*, jepa-*, clip-*, mocov3-*, mae-*)",
        enc_type);
}

int encoder_input_size(encoder_preprocess_kind kind, int resolution)
{
    if (kind == ENC_PRE_IMAGENET)
        return resolution;
    /* The reference: interpolate(x, 224 * (resolution // 256)). */
    if (resolution < 256)
        die("encoder preprocessing: resolution %d is below 256; the reference resizes to 224·(res // 256) = 0. "
            "Use an encoder trained at this resolution (no resize) instead",
            resolution);
    return 224 * (resolution / 256);
}

void encoder_normalize_u8(float *out, const uint8_t *img, int B, int C, int HW, const float *mean, const float *std)
{
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * C * HW >= (1L << 16))
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const size_t base = ((size_t)b * C + c) * HW;
            const float m = mean[c], s = std[c];
            for (int i = 0; i < HW; i++) {
                float x = (float)img[base + i] / 255.0f;
                out[base + i] = (x - m) / s;
            }
        }
}

static int needs_resize(int H, int W, int S) { return !(H == S && W == S); }

size_t encoder_preprocess_workspace_bytes(encoder_preprocess_kind kind, int B, int C, int H, int W, int out_size)
{
    if (kind == ENC_PRE_IMAGENET || !needs_resize(H, W, out_size))
        return 0;
    return arena_round((size_t)B * C * H * W * sizeof(float));
}

void encoder_preprocess(float *out, const uint8_t *img, encoder_preprocess_kind kind, int B, int C, int H, int W,
                        int out_size, arena *ar)
{
    if (C != 3)
        die("encoder preprocessing: %d-channel images given; the DINOv2/CLIP/ImageNet statistics are for RGB "
            "(use encoder_normalize_u8 with your own mean/std)",
            C);
    if (out_size <= 0)
        die("encoder preprocessing: output size %d", out_size);
    const int HW = H * W;
    if (!needs_resize(H, W, out_size)) {
        encoder_normalize_u8(out, img, B, C, HW, kind == ENC_PRE_CLIP ? CLIP_MEAN : IMAGENET_MEAN,
                             kind == ENC_PRE_CLIP ? CLIP_STD : IMAGENET_STD);
        return;
    }
    if (kind == ENC_PRE_IMAGENET)
        die("encoder preprocessing: this encoder family takes the %dx%d images without resizing, but %dx%d was "
            "asked for",
            H, W, out_size, out_size);
    size_t mark = arena_mark(ar);
    const size_t n = (size_t)B * C * HW;
    float *tmp = arena_floats(ar, n);
    if (kind == ENC_PRE_DINOV2) {
        encoder_normalize_u8(tmp, img, B, C, HW, IMAGENET_MEAN, IMAGENET_STD);
        bicubic_resize_forward(out, tmp, B, C, H, W, out_size, out_size);
    } else {
        /* CLIP: u8/255, resize, then normalise the resized image. */
        const float one[3] = {0.0f, 0.0f, 0.0f}, unit[3] = {1.0f, 1.0f, 1.0f};
        encoder_normalize_u8(tmp, img, B, C, HW, one, unit);
        bicubic_resize_forward(out, tmp, B, C, H, W, out_size, out_size);
        const size_t S2 = (size_t)out_size * out_size;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                float *o = out + ((size_t)b * C + c) * S2;
                for (size_t i = 0; i < S2; i++)
                    o[i] = (o[i] - CLIP_MEAN[c]) / CLIP_STD[c];
            }
    }
    arena_reset(ar, mark);
}

int encoder_train_input_size(encoder_preprocess_kind kind, int C, int H)
{
    int size = C == 3 && kind != ENC_PRE_IMAGENET ? 224 * H / 256 : H;
    return size < 14 ? H : size;
}
