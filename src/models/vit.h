/* vit.h — the DINOv2-family Vision Transformer (spec §8): the frozen
 * representation encoder whose final-norm patch tokens are REPA's targets,
 * and the same network trained from scratch (small encoders, e.g. 1-channel
 * Fashion-MNIST), so it has a full backward.
 *
 *   image [B,C,S,S] -> patchify (p×p) -> linear (the conv weight viewed as
 *   [D, C·p·p]) -> prepend cls_token -> + pos_embed -> insert R register
 *   tokens after cls (they get no position) -> depth blocks -> LayerNorm
 *
 *   block:  x += ls1.gamma ⊙ proj(Attn(qkv(norm1(x))))
 *           x += ls2.gamma ⊙ FFN(norm2(x))
 *
 *   FFN, two kinds (DINOv2's ffn_layer):
 *     "mlp"          fc2(GELU_erf(fc1(y)))                 mlp.fc1 [H,D], mlp.fc2 [D,H]; H = (int)(D·mlp_ratio)
 *     "swiglufused"  w3(SiLU(u₁) ⊙ u₂), [u₁ | u₂] = w12(y)  mlp.w12 [2H,D], mlp.w3 [D,H] (ViT-g/14);
 *                    u₁ the first H features of w12's output, u₂ the last H (torch chunk(2, dim=-1));
 *                    H = (int(h·2/3) + 7) / 8 · 8 with h = (int)(D·mlp_ratio): 6144 -> 4096 for ViT-g
 *
 * Token order after the embedding: [cls, reg_0..reg_{R-1}, patch_0..patch_{G²-1}],
 * T = 1 + R + G², G = S / p, patches row-major.  Outputs (slices of the final
 * LayerNorm output): x_norm_clstoken [B,D], x_norm_regtokens [B,R,D],
 * x_norm_patchtokens [B,G²,D]; with num_classes > 0 also logits [B,K] =
 * head(x_norm_clstoken).
 *
 * Typical use (the frozen REPA target encoder):
 *
 *   safetensors *st = safetensors_open("dinov2_vitb14.safetensors");
 *   vit m;
 *   float *w = vit_from_checkpoint(&m, st, "", 224, 0, PARAM_STRICT); // detects the config, resamples pos_embed
 *   arena ar = arena_create(vit_plan_bytes(&m, B, false));            // 37² -> 16²; w is the caller's to free
 *   vit_acts a;
 *   vit_acts_alloc(&a, &m, &ar, B, false);       // inference: no saved activations
 *   vit_forward(&m, w, &a, img, patch_tokens, NULL, NULL, NULL);
 *
 * Training (vit_build, w = param_alloc(&m.table), vit_init_weights(&m, w,
 * seed)): plan with train = true, then vit_backward(&m, w, &a, &ar, grads,
 * d_img, d_patch, d_cls, d_reg, d_logits).  The model never owns weights
 * (models/params.h); `grads` is a buffer laid out like them
 * (param_alloc(&m.table)); NULL means frozen.  Backward ADDS (+=) into grads and d_img; every d_* may be
 * NULL.  mask_token is in the state dict (DINOv2 has it) but never used and
 * never gets a gradient (it is registered PARAM_FROZEN).
 *
 * Position embedding: the table's pos_embed is [1, 1+G², D] at the grid of
 * the configured img_size.  vit_load accepts a checkpoint pos_embed at any
 * square grid and resamples it once (PyTorch bicubic antialias=True, as
 * timm's resample_abs_pos_embed; the cls entry is kept).
 */
#ifndef REPAE_VIT_H
#define REPAE_VIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "io/safetensors.h"
#include "models/params.h"

typedef enum vit_ffn {
    VIT_FFN_MLP = 0, /* DINOv2 Mlp: fc1, exact GELU, fc2 (ViT-S/B/L) */
    VIT_FFN_SWIGLU,  /* DINOv2 SwiGLUFFNFused: w12, SiLU gate, w3 (ViT-g) */
} vit_ffn;

typedef struct vit_config {
    int img_size;            /* S: the input the model runs at (pos grid G = S / patch) */
    int patch;               /* p */
    int in_chans;            /* C (3 for RGB, 1 for Fashion-MNIST) */
    int embed_dim;           /* D */
    int depth;
    int heads;               /* NH; head dim D / NH */
    float mlp_ratio;         /* FFN width from D (see the FFN rule above and vit_ffn_hidden) */
    vit_ffn ffn;             /* VIT_FFN_MLP (0, the default) or VIT_FFN_SWIGLU */
    int ffn_hidden;          /* H if > 0 (a checkpoint's width, read off its shapes); 0: from mlp_ratio */
    int num_register_tokens; /* R (DINOv2 `_reg` models: 4) */
    bool layerscale;         /* ls1/ls2.gamma present */
    float layerscale_init;   /* init value of the gammas when training from scratch (DINOv2 hub: 1e-5) */
    int num_classes;         /* K > 0: a linear head on x_norm_clstoken (`head.{weight,bias}`) */
    float ln_eps;            /* 1e-6 */
} vit_config;

/* Offsets (in floats, into the parameter buffer) of one block's tensors.
 * ffn1/ffn2: the FFN's two linears, mlp.fc1/fc2 or mlp.w12/w3. */
typedef struct vit_block {
    size_t norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, ls1;
    size_t norm2_w, norm2_b, ffn1_w, ffn1_b, ffn2_w, ffn2_b, ls2;
} vit_block;

typedef struct vit {
    vit_config cfg;
    int grid;   /* G */
    int npatch; /* G² */
    int ntok;   /* T = 1 + R + G² */
    int hidden; /* H: FFN hidden width (the input of fc2 / w3) */
    int ffn1;   /* the first linear's width: H (Mlp) or 2H (SwiGLU: [u₁ | u₂]) */
    param_table table; /* the weights are a separate buffer laid out by it (models/params.h) */
    size_t cls_token, pos_embed, mask_token, register_tokens, patch_w, patch_b, norm_w, norm_b, head_w, head_b;
    vit_block *blocks; /* [depth] */
} vit;

/* What one block keeps for its backward (train mode), or shared scratch
 * (inference mode, where the residual stream is updated in place). */
typedef struct vit_block_acts {
    float *ln1;          /* [B,T,D] norm1 output */
    float *mean1, *rstd1; /* [B·T] */
    float *qkv;          /* [B,T,3D] ([3][heads][head_dim] per token) */
    float *probs;        /* [B,NH,T,T] softmax (NULL in inference) */
    float *att;          /* [B,T,D] attention output, heads concatenated */
    float *ao;           /* [B,T,D] proj output (the ls1 branch before the gamma) */
    float *xmid;         /* [B,T,D] residual after the attention branch */
    float *ln2;          /* [B,T,D] */
    float *mean2, *rstd2; /* [B·T] */
    float *h;            /* [B,T,ffn1] fc1 / w12 output before the activation */
    float *hg;           /* [B,T,H] GELU(h) or SiLU(u₁)⊙u₂ (train: scratch shared by all blocks and
                            recomputed in the backward; inference: Mlp == h, GELU in place; SwiGLU
                            its own buffer) */
    float *mo;           /* [B,T,D] fc2 / w3 output (the ls2 branch before the gamma) */
} vit_block_acts;

typedef struct vit_acts {
    int B;
    bool train;
    float *tok_in;      /* [B,G²,C·p·p] patchified image */
    float *x;           /* train: [depth+1][B,T,D] residual stream at each block input (x[depth] = pre-norm);
                           inference: one [B,T,D] updated in place */
    vit_block_acts *blocks; /* [depth] (inference: all alias the same scratch) */
    float *xn;          /* [B,T,D] final norm output */
    float *mean_f, *rstd_f; /* [B·T] */
    float *cls;         /* [B,D] contiguous copy of x_norm_clstoken (head input) */
    float *attn_ws;     /* attention workspace */
} vit_acts;

/* ---- configuration ---- */

/* dinov2-vit-s/b/l/g at patch 14 (img_size as given, e.g. 224 or 518);
 * "-reg" suffix (dinov2-vit-b-reg) gives 4 register tokens.  dinov2-vit-g is
 * 1536 wide, 40 blocks, 24 heads, SwiGLU FFN (H 4096): 1,136,480,768
 * parameters at 518 (the official ViT-g/14 backbone).  Unknown names die
 * listing the known. */
vit_config vit_preset(const char *name, int img_size);
/* The FFN hidden width H of a configuration: ffn_hidden if set, else from
 * mlp_ratio by the FFN kind's rule (Mlp (int)(D·mlp_ratio); SwiGLU DINOv2's
 * rounding of two thirds of it up to a multiple of 8). */
int vit_ffn_hidden(const vit_config *c);
/* Heads for a width from the DINOv2 table (192→3, 384→6, 768→12, 1024→16, 1536→24); 0 if unknown. */
int vit_heads_for_width(int embed_dim);
/* Detects the configuration from tensor shapes under `prefix`: embed_dim
 * (cls_token), patch and in_chans (patch_embed.proj.weight), depth (blocks.N),
 * registers (register_tokens), FFN kind and width (mlp.fc1: Mlp, mlp_ratio
 * H/D; mlp.w12 [2H, D]: SwiGLU, ffn_hidden H, mlp_ratio informative only:
 * 4 where DINOv2's rule gives H from it, else 1.5·H/D), layerscale
 * (ls1.gamma), head.  img_size 0 = the checkpoint's own grid · patch; heads
 * 0 = from the width table. */
vit_config vit_config_from_checkpoint(const safetensors *st, const char *prefix, int img_size, int heads);
/* Checks a configuration; dies naming the bad field. */
void vit_config_check(const vit_config *c);

/* ---- model ---- */

/* Builds the parameter table (exact DINOv2 state-dict keys, in state-dict
 * order); no weight memory (param_alloc(&m->table) gives a zeroed buffer). */
void vit_build(vit *m, const vit_config *cfg);
void vit_free(vit *m);
/* Initialisation for training from scratch (DINOv2 / timm): Linear weights
 * N(0, 0.02²) (timm's trunc_normal_(std=.02) truncates at ±2 absolute, i.e.
 * ±100σ, so it is a plain normal), biases 0, pos_embed N(0, 0.02²),
 * cls_token and register_tokens N(0, 1e-6²), mask_token 0, LayerNorm 1/0,
 * gammas = layerscale_init, patch-embed conv PyTorch's default (DINOv2's
 * init only touches nn.Linear). */
void vit_init_weights(const vit *m, float *params, uint64_t seed);
/* Loads by name under `prefix` (strict: missing keys and shape mismatches
 * die; mode says what to do with extra keys under the prefix).  pos_embed may
 * come at any square grid and is resampled to m->grid. */
void vit_load(const vit *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
/* vit_config_from_checkpoint + vit_build + vit_load into a new buffer,
 * which it returns (the caller frees it). */
float *vit_from_checkpoint(vit *m, const safetensors *st, const char *prefix, int img_size, int heads,
                           param_load_mode mode);
/* Adds every parameter (pos_embed at the model's grid) under prefix. */
void vit_save(const vit *m, const float *params, st_writer *w, const char *prefix);

/* Resamples a position table [n_prefix + g_in², D] to [n_prefix + g_out², D]:
 * the first n_prefix rows (cls) are copied, the grid is resized with
 * PyTorch bicubic antialias=True (align_corners=False).  workspace:
 * vit_pos_resample_workspace_floats(D, g_in, g_out). */
size_t vit_pos_resample_workspace_floats(int D, int g_in, int g_out);
void vit_resample_pos_embed(float *out, const float *in, int D, int n_prefix, int g_in, int g_out,
                            float *workspace);

/* ---- activations and passes ---- */

/* Arena bytes for vit_acts_alloc(m, B, train) plus, when train, the scratch
 * vit_backward takes from the same arena (returned to it afterwards). */
size_t vit_plan_bytes(const vit *m, int B, bool train);
void vit_acts_alloc(vit_acts *a, const vit *m, arena *ar, int B, bool train);

/* img [B,C,S,S].  Outputs (each may be NULL): patch [B,G²,D], cls [B,D],
 * reg [B,R,D], logits [B,K] (needs num_classes > 0). */
void vit_forward(const vit *m, const float *params, vit_acts *a, const float *img, float *patch, float *cls,
                 float *reg, float *logits);

/* Needs a train-mode forward in `a`.  Cotangents (each may be NULL):
 * d_patch [B,G²,D], d_cls [B,D], d_reg [B,R,D], d_logits [B,K].  ADDS into
 * grads (laid out like params; NULL = frozen) and d_img [B,C,S,S] (NULL =
 * not needed).  Scratch comes from `ar` and is released before returning. */
void vit_backward(const vit *m, const float *params, const vit_acts *a, arena *ar, float *grads, float *d_img,
                  const float *d_patch, const float *d_cls, const float *d_reg, const float *d_logits);

/* One block (exposed for tests and for callers that run blocks themselves).
 * Forward: x_out may equal x_in (inference).  Backward: dx holds d x_out on
 * entry and d x_in on exit (the residual passes straight through; the
 * branches add onto it); scratch from `ar`. */
void vit_block_forward(const vit *m, const float *params, int l, vit_block_acts *a, float *x_out, const float *x_in,
                       int B, float *attn_ws);
void vit_block_backward(const vit *m, const float *params, int l, const vit_block_acts *a, float *grads, float *dx,
                        const float *x_in, int B, arena *ar, float *attn_ws);

#endif
