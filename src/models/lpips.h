/* lpips.h — the LPIPS perceptual distance (VGG16 variant), spec §7.3.
 *
 *   LPIPS(a, b) = Σ_k mean_hw  Σ_c w_k[c] · (â_k − b̂_k)²[c]
 *
 * with â_k the channel-unit-normalised VGG16 relu{1_2,2_2,3_3,4_3,5_3}
 * features of the scaled input ((2a − 1 − shift) / scale: the reference maps
 * its [−1, 1] images through 2x − 1 once more, a quirk we keep).  Weights are
 * frozen: only the gradient w.r.t. b (the reconstruction) is computed; `a`
 * (the data) gets none.
 *
 * Keys: net.slice{1..5}.{i}.{weight,bias} with torchvision's feature indices
 * (0,2 | 5,7 | 10,12,14 | 17,19,21 | 24,26,28) and lin{0..4}.model.1.weight
 * [1, C_k, 1, 1] (lpips_load_files also maps torchvision's VGG16
 * features.<i> there, for the LPIPS vgg.pth + vgg16-397923af.pth pair).  `width_div` divides every VGG width (tests use tiny
 * networks; real weights need 1).  Inputs must have 3 channels.
 */
#ifndef REPAE_LPIPS_H
#define REPAE_LPIPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "models/params.h"
#include "ops/conv2d.h"

#define LPIPS_CONVS 13
#define LPIPS_TAPS 5

typedef struct lpips {
    param_table table;
    int width_div;
    int ch[LPIPS_CONVS];
    size_t weight[LPIPS_CONVS], bias[LPIPS_CONVS];
    size_t lin[LPIPS_TAPS];
} lpips;

typedef struct lpips_acts {
    int B, H, W;
    /* Per conv of the b pass: its input (after the pool, if any) and its
     * post-ReLU output. */
    float *conv_in[LPIPS_CONVS], *relu_out[LPIPS_CONVS];
    conv2d_shape shape[LPIPS_CONVS];
    /* Per tap: normalised features of a and b, and the norms of b's. */
    float *na[LPIPS_TAPS], *nb[LPIPS_TAPS], *norm_b[LPIPS_TAPS];
    float *workspace, *grad_a, *grad_b;
} lpips_acts;

/* The parameter table only; the (frozen) weights are a buffer laid out by it
 * that the caller owns (models/params.h).  LPIPS is never trained, so it has
 * no save. */
void lpips_build(lpips *l, int width_div);
void lpips_free(lpips *l);
/* The table's init rules (a random network: tests and benchmarks only). */
void lpips_init_weights(const lpips *l, float *params, uint64_t seed);
/* By state-dict name under prefix (net.slice*, lin*). */
void lpips_load(const lpips *l, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
/* Loads the weights (l built at the files' width) from
 *   - one file with net.slice* and lin* (ours, or a whole LPIPS state dict;
 *     other tensors such as scaling_layer.* ignored), vgg_path NULL; or
 *   - the LPIPS heads file (vgg.pth: lin0..4.model.1.weight only) plus
 *     torchvision's VGG16 (vgg16-397923af.pth) as vgg_path, whose
 *     features.<i>.{weight,bias} become net.slice<k>.<i> (classifier.* unused).
 * Any .pt/.pth/.safetensors (weights_open).  Dies naming the file. */
void lpips_load_files(const lpips *l, float *params, const char *path, const char *vgg_path);
size_t lpips_acts_bytes(const lpips *l, int B, int H, int W);
/* dist[n] = LPIPS(a_n, b_n); a, b: [B, 3, H, W] in the model's [−1, 1].
 * Fills `s` with what the backward needs, carved from the arena
 * (lpips_acts_bytes; valid until the caller resets it). */
void lpips_forward(const lpips *l, const float *params, lpips_acts *s, float *dist, const float *a, const float *b,
                   int B, int H, int W, arena *ar);
/* db += d(Σ_n ddist[n]·dist[n]) / db. */
void lpips_backward(const lpips *l, const float *params, const lpips_acts *s, const float *ddist, float *db);

#endif
