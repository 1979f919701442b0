/* vae.h — the AutoencoderKL tokenizer (spec §2): encoder, diagonal-Gaussian
 * posterior, decoder, forward and backward, load/save by PyTorch key names.
 *
 * Building a model registers every tensor in the parameter table
 * (models/params.h) in state-dict order, so names, shapes, offsets, loading,
 * saving and the parity tests all come from one list:
 *
 *   vae m;
 *   vae_config cfg;
 *   vae_preset("f8d4", &cfg);
 *   vae_build(&m, &cfg);                          // table and layer lists only
 *   float *w = param_alloc(&m.table);             // the weights: the caller's buffer
 *   vae_load(&m, w, st, "", PARAM_ALLOW_EXTRA);   // st = weights_open(path); or vae_init_weights(&m, w, seed)
 *
 * (models/params.h: a model never owns parameter memory; every function
 * that reads weights takes the buffer.)
 *
 * Inference (no activations kept; sized by vae_plan_memory):
 *
 *   vae_encode(&m, w, x, mean, logvar, std, B, H, W, &ar);   // cache-latents
 *   vae_decode(&m, w, z, recon, B, h, w, &ar);               // sampling
 *
 * Training (the REPA-E step, spec §6.2 steps 3 and 7):
 *
 *   vae_acts a;                                           // filled by the forward, pointers into the arena
 *   vae_plan p = vae_plan_memory(&m, VAE_PASS_TRAIN, B, H, W);  // arena >= p.saved + p.scratch
 *   size_t mark = arena_mark(&ar);
 *   vae_forward(&m, w, &a, x, NULL, &rng, B, H, W, &ar);  // a.mean a.logvar a.std a.eps a.z a.recon
 *   ... losses: d_recon (L1/LPIPS/GAN), d_z (REPA through the frozen SiT),
 *       d_mean/d_logvar (KL) ...
 *   vae_backward(&m, w, &a, d_recon, d_z, d_mean, d_logvar, grads, NULL, &ar);
 *   arena_reset(&ar, mark);                               // releases the saved activations
 *
 * Conventions (docs/architecture.md): backward ADDS into `grads` (a buffer
 * laid out by the parameter table, e.g. param_alloc(&m.table)) and into d_x;
 * a NULL gradient means "not needed" (grads NULL = frozen VAE).  The
 * gradients reaching z from the decoder path and from d_z simply add.
 * Nothing is malloc'd inside forward/backward: saved activations (and the
 * per-layer records that point to them), scratch and conv workspaces come
 * from the arena.  The forward leaves the saved
 * activations on the arena (they stay valid, and a.recon stays usable, until
 * the caller resets); the backward releases its own scratch on return.
 *
 * Memory: per ResnetBlock only the block output, the conv1 output and the
 * GroupNorm statistics are kept; GroupNorm/SiLU outputs are recomputed in the
 * backward, and an Upsample's nearest-×2 image is recomputed from its input.
 *
 * Shapes: x, recon [B, in/out channels, H, W]; latents (mean, logvar, std,
 * eps, z) [B, C, h, w] with C = z_channels and h = H / 2^(levels-1) (each
 * Downsample maps H to (H + 1 - 3) / 2 + 1, i.e. H/2 for even H).
 */
#ifndef REPAE_VAE_H
#define REPAE_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/params.h"

#define VAE_MAX_LEVELS 8
#define VAE_MAX_ATTN 8
/* vae_config_check's upper bounds (any level's width, latent and image
 * channels, res blocks per level, nominal resolution). */
#define VAE_MAX_WIDTH 65536
#define VAE_MAX_Z 4096
#define VAE_MAX_IMAGE_CHANNELS 64
#define VAE_MAX_RES_BLOCKS 64
#define VAE_MAX_RESOLUTION 65536
#define VAE_GN_EPS 1e-6f
#define VAE_LOGVAR_MIN -30.0f
#define VAE_LOGVAR_MAX 20.0f

typedef struct vae_config {
    int ch;                               /* base width (128) */
    int n_levels;                         /* len(ch_mult) */
    int ch_mult[VAE_MAX_LEVELS];
    int num_res_blocks;                   /* >= 1, encoder; the decoder has num_res_blocks + 1 per level */
    int z_channels;                       /* = embed_dim = C */
    int n_attn;
    int attn_resolutions[VAE_MAX_ATTN];   /* nominal resolutions with attention (16) */
    int resolution;                       /* nominal (256); only decides where attention sits */
    int in_channels, out_ch;              /* 3, 3 (1 for Fashion-MNIST) */
    int double_z;                         /* must be 1 (AutoencoderKL) */
    int norm_groups;                      /* GroupNorm groups (32) */
    /* The Flux / SD3.5 VAEs (z = 16; diffusers' use_quant_conv /
     * use_post_quant_conv = false) have no 1x1 quant_conv after the encoder
     * and no post_quant_conv before the decoder: the moments are the
     * encoder's conv_out and z goes straight into decoder.conv_in.  Zero (the
     * default of a zero-initialised config) keeps the CompVis convs. */
    int no_quant_conv, no_post_quant_conv;
} vae_config;

/* "f8d4" (SD-VAE) or "f16d32" (IN-VAE / VA-VAE).  Returns 0, or -1 for an
 * unknown name. */
int vae_preset(const char *name, vae_config *cfg);
/* Checks a configuration; dies naming the problem. */
void vae_config_check(const vae_config *cfg);
/* JSON in the fixtures' / reference's `config` format
 * ({"ch":..,"ch_mult":[..],"num_res_blocks":..,"z_channels":..,"attn_resolutions":[..],
 *   "resolution":..,"in_channels":..,"out_ch":..,"norm_groups":..,"double_z":true}).
 * Missing keys keep the f8d4 defaults.  Returns 0, or -1 on malformed JSON. */
int vae_config_from_json(const char *json, vae_config *cfg);
/* Writes the JSON into buf; returns buf. */
const char *vae_config_to_json(const vae_config *cfg, char *buf, size_t size);
/* Infers the configuration from the tensor shapes in a weights file (keys
 * under `prefix`): ch and in_channels from encoder.conv_in.weight, ch_mult
 * from the down.{l}.block.0.conv1 widths, num_res_blocks from block counts,
 * z_channels from quant_conv (else from encoder.conv_out: a VAE without
 * quant convs; post_quant_conv likewise by presence), attention from the presence of attn keys
 * (placed at nominal resolution `resolution` >> level, resolution = 256),
 * out_ch from decoder.conv_out.  norm_groups cannot be seen in shapes: 32,
 * unless the file's metadata has a `config` JSON, which then wins.
 * Returns 0, or -1 if the file holds no VAE under that prefix. */
int vae_config_detect(const safetensors *st, const char *prefix, vae_config *cfg);

/* ---- the model ---- */

typedef struct vae_conv {
    size_t w, b; /* offsets into the parameter buffer */
    int c_in, c_out, k;
} vae_conv;

typedef struct vae_norm {
    size_t w, b;
    int c;
} vae_norm;

/* ResnetBlock: conv1(swish(norm1(x))) -> conv2(swish(norm2(.))) + skip. */
typedef struct vae_resblock {
    int c_in, c_out, has_nin;
    vae_norm norm1, norm2;
    vae_conv conv1, conv2, nin_shortcut;
} vae_resblock;

/* AttnBlock: x + proj_out(softmax(q kᵀ / √C) v), single head over H·W. */
typedef struct vae_attnblock {
    int c;
    vae_norm norm;
    vae_conv q, k, v, proj_out;
} vae_attnblock;

typedef enum vae_layer_kind {
    VAE_LAYER_CONV, /* conv_in (3×3), quant_conv / post_quant_conv (1×1) */
    VAE_LAYER_RES,
    VAE_LAYER_ATTN,
    VAE_LAYER_DOWN, /* pad right/bottom 1, 3×3 stride 2 */
    VAE_LAYER_UP,   /* nearest ×2, 3×3 */
    VAE_LAYER_HEAD, /* norm_out, swish, conv_out */
} vae_layer_kind;

/* One step of the encoder or decoder, in execution order. */
typedef struct vae_layer {
    vae_layer_kind kind;
    int c_in, c_out;
    vae_resblock res;   /* RES */
    vae_attnblock attn; /* ATTN */
    vae_norm norm;      /* HEAD */
    vae_conv conv;      /* CONV, DOWN, UP, HEAD */
    char name[64];      /* state-dict prefix, e.g. "decoder.up.3.block.0" */
} vae_layer;

typedef struct vae {
    vae_config cfg;
    param_table table; /* the weights are a separate buffer laid out by it (models/params.h) */
    int n_enc, n_dec;
    vae_layer *enc; /* conv_in ... conv_out, quant_conv (unless cfg.no_quant_conv) */
    vae_layer *dec; /* post_quant_conv (unless cfg.no_post_quant_conv), conv_in ... conv_out */
} vae;

/* Builds the parameter table and the layer lists (no weight memory:
 * param_alloc(&m->table) gives a zero-filled buffer). */
void vae_build(vae *m, const vae_config *cfg);
void vae_free(vae *m);
/* The reference's from-scratch init: PyTorch default conv init (weights
 * U(±1/√fan_in), biases U(±1/√fan_in)), GroupNorm weight 1, bias 0. */
void vae_init_weights(const vae *m, float *params, uint64_t seed);
size_t vae_param_count(const vae *m);

/* Loads by name (keys prefixed by `prefix`), checking every shape.  The
 * reference loads non-strictly for training (PARAM_ALLOW_EXTRA) and strictly
 * for cache-latents. */
void vae_load(const vae *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
/* Detects the configuration from `path`, builds the model and loads it into
 * a new buffer, which it returns (the caller frees it).  A diffusers
 * AutoencoderKL folder (a directory with config.json; prefix "") is read by
 * vae_diffusers_load (models/vae_diffusers.h). */
float *vae_from_file(vae *m, const char *path, const char *prefix, param_load_mode mode);
/* Adds the tensors to a writer (with the config JSON as metadata `config`
 * when prefix is ""), or writes a file of its own. */
void vae_save(const vae *m, const float *params, st_writer *w, const char *prefix);
void vae_save_file(const vae *m, const float *params, const char *path, const char *prefix);

/* Dies, naming `who` and both channel counts, unless the VAE takes and
 * returns C-channel images (the trainers' guard on their data). */
void vae_check_data_channels(const vae *m, int C, const char *who);

/* Latent size of an H×W image; image size of an h×w latent. */
void vae_latent_size(const vae *m, int H, int W, int *h, int *w);
void vae_image_size(const vae *m, int h, int w, int *H, int *W);

/* ---- activations ---- */

typedef struct vae_resblock_saved {
    float *h1;                         /* [B, c_out, H, W] conv1 output */
    float *mean1, *rstd1, *mean2, *rstd2; /* [B·G] GroupNorm statistics */
} vae_resblock_saved;

typedef struct vae_attnblock_saved {
    float *mean, *rstd; /* [B·G] */
    float *qkv;         /* [B, L, 3C] q, k, v token-major (L = H·W) */
    float *probs;       /* [B, L, L] softmax */
    float *att;         /* [B, L, C] attention output before proj_out */
} vae_attnblock_saved;

typedef struct vae_layer_saved {
    int H, W;       /* input spatial size */
    const float *x; /* input (the previous layer's output, or the model input) */
    float *out;     /* [B, c_out, H', W'] output */
    vae_resblock_saved res;
    vae_attnblock_saved attn;
    float *mean, *rstd; /* HEAD GroupNorm statistics */
} vae_layer_saved;

typedef struct vae_acts {
    int B, H, W, h, w;
    int have_enc, have_dec;  /* which forward filled it */
    const float *x;          /* encoder input (caller's; keep it alive until backward) */
    float *moments;          /* [B, 2C, h, w] quant_conv (or encoder conv_out) output (raw logvar, for the clamp mask) */
    float *mean, *logvar, *std, *eps, *z; /* [B, C, h, w]; logvar clamped */
    const float *z_in;       /* decoder input (a->z, or the caller's z) */
    float *recon;            /* [B, out_ch, H, W] */
    vae_layer_saved *enc, *dec; /* per layer [m->n_enc], [m->n_dec], carved from the arena by the forward */
} vae_acts;

/* Encoder + posterior, keeping activations: mean, logvar (clamped to
 * [-30, 20]), std = exp(logvar/2), eps, z = mean + std·eps.  eps [B,C,h,w] is
 * copied if given, else drawn from r (N(0,1)). */
void vae_encoder_forward(const vae *m, const float *params, vae_acts *a, const float *x, const float *eps, rng *r,
                         int B, int H, int W, arena *ar);
/* Decoder from z [B,C,h,w] (kept by pointer), keeping activations; a->recon. */
void vae_decoder_forward(const vae *m, const float *params, vae_acts *a, const float *z, int B, int h, int w,
                         arena *ar);
/* Both: (posterior, z, recon) = vae(x), with z = a->z fed to the decoder. */
void vae_forward(const vae *m, const float *params, vae_acts *a, const float *x, const float *eps, rng *r, int B,
                 int H, int W, arena *ar);

/* d_z += (decoder path); grads += decoder and post_quant_conv gradients. */
void vae_decoder_backward(const vae *m, const float *params, const vae_acts *a, const float *d_recon, float *grads,
                          float *d_z, arena *ar);
/* From d_z (through the reparameterisation), d_mean, d_logvar (each may be
 * NULL; d_logvar is w.r.t. the clamped logvar, and the gradient to the raw
 * channel is zero where the clamp is active) into encoder/quant_conv grads and
 * d_x. */
void vae_encoder_backward(const vae *m, const float *params, const vae_acts *a, const float *d_z, const float *d_mean,
                          const float *d_logvar, float *grads, float *d_x, arena *ar);
/* The whole backward of vae_forward; d_z from outside (the REPA path) and the
 * decoder's gradient into z add. */
void vae_backward(const vae *m, const float *params, const vae_acts *a, const float *d_recon, const float *d_z,
                  const float *d_mean, const float *d_logvar, float *grads, float *d_x, arena *ar);

/* Inference without saved activations.  Any of mean/logvar/std may be NULL. */
void vae_encode(const vae *m, const float *params, const float *x, float *mean, float *logvar, float *std, int B,
                int H, int W, arena *ar);
void vae_decode(const vae *m, const float *params, const float *z, float *recon, int B, int h, int w, arena *ar);

/* ---- memory plan ---- */

typedef enum vae_pass {
    VAE_PASS_ENCODE,       /* vae_encode, image H×W */
    VAE_PASS_DECODE,       /* vae_decode, latent h×w */
    VAE_PASS_TRAIN,        /* vae_forward + vae_backward, image H×W */
    VAE_PASS_TRAIN_ENCODER, /* vae_encoder_forward + vae_encoder_backward, image H×W */
    VAE_PASS_TRAIN_DECODER, /* vae_decoder_forward + vae_decoder_backward, latent h×w */
} vae_pass;

typedef struct vae_plan {
    size_t saved;   /* bytes the forward leaves on the arena (activations kept for backward) */
    size_t scratch; /* further bytes needed at the peak of forward or backward */
} vae_plan;

/* Computed by running the passes on shapes only, so it cannot drift from
 * what the passes allocate.  Arena bytes needed: saved + scratch.  Plan under
 * the OpenMP thread count the passes will run with (the attention workspace
 * has one slice per thread). */
vae_plan vae_plan_memory(const vae *m, vae_pass pass, int B, int H, int W);

#endif
