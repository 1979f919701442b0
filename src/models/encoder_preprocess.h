/* encoder_preprocess.h — uint8 images to representation-encoder inputs (spec §1.3).
 *
 * The REPA-E reference (preprocess_raw_image) does, under no-grad:
 *
 *   x = u8 / 255
 *   dinov2-*, jepa-*:   ImageNet mean/std, THEN bicubic resize to 224·(res // 256)
 *   clip-*:             bicubic resize to 224·(res // 256), THEN CLIP mean/std
 *   mocov3-*, mae-*:    ImageNet mean/std, no resize
 *
 * The resize is torch interpolate(mode="bicubic", align_corners=False,
 * antialias=False): a = −0.75, 4 clamped taps, no output clamp
 * (ops/resample.h bicubic_resize_forward).  Images are NCHW uint8 [B,C,H,W];
 * the output is float [B,C,S,S] with S = out_size (S = H = W: no resize).
 *
 *   int S = encoder_input_size(ENC_PRE_DINOV2, 256);              // 224
 *   arena ar = arena_create(encoder_preprocess_workspace_bytes(ENC_PRE_DINOV2, B, 3, 256, 256, S));
 *   encoder_preprocess(x, u8, ENC_PRE_DINOV2, B, 3, 256, 256, S, &ar);
 *
 * Our own small encoders (e.g. 1-channel Fashion-MNIST) use
 * encoder_normalize_u8 with their own mean/std.
 */
#ifndef REPAE_ENCODER_PREPROCESS_H
#define REPAE_ENCODER_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

typedef enum encoder_preprocess_kind {
    ENC_PRE_DINOV2,   /* ImageNet mean/std, then resize (also jepa-*) */
    ENC_PRE_CLIP,     /* resize, then CLIP mean/std */
    ENC_PRE_IMAGENET, /* ImageNet mean/std, no resize (mocov3-*, mae-*) */
} encoder_preprocess_kind;

/* From an --enc-type name ("dinov2-vit-b", "clip-vit-L", "mocov3-vit-b", ...);
 * dies on an unknown family. */
encoder_preprocess_kind encoder_preprocess_kind_for(const char *enc_type);
/* The reference's input size: 224·(resolution / 256) (integer division; dies
 * below 256, where the reference would ask for a 0×0 image) for DINOV2 and
 * CLIP, the resolution itself for IMAGENET. */
int encoder_input_size(encoder_preprocess_kind kind, int resolution);

size_t encoder_preprocess_workspace_bytes(encoder_preprocess_kind kind, int B, int C, int H, int W, int out_size);
/* out [B,C,out_size,out_size].  3 channels for DINOV2/CLIP/IMAGENET (their
 * mean/std are per RGB channel).  IMAGENET needs out_size == H == W; the
 * others skip the resize when out_size == H == W.  Scratch comes from `ar`
 * and is returned before the call ends. */
void encoder_preprocess(float *out, const uint8_t *img, encoder_preprocess_kind kind, int B, int C, int H, int W,
                        int out_size, arena *ar);

/* out[b,c,i] = (img[b,c,i] / 255 − mean[c]) / std[c]   (float32, as torchvision's Normalize). */
void encoder_normalize_u8(float *out, const uint8_t *img, int B, int C, int HW, const float *mean, const float *std);

/* The size the REPA encoder runs at during training for C-channel H×H
 * images: RGB images are resized to 224·H/256 for the DINOv2 and CLIP
 * families — the reference's rule above where H is a multiple of 256,
 * extended to the small images we train on — unless that falls below one
 * 14-pixel patch; ImageNet-family encoders and grey images run at the images'
 * own size (grey images are normalised, never resized). */
int encoder_train_input_size(encoder_preprocess_kind kind, int C, int H);

#endif
