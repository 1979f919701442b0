/* sit.h — SiT, the latent diffusion transformer of REPA-E (spec §3, §4),
 * with its latent BatchNorm and REPA projectors, forward and backward.
 *
 * A model is a configuration plus a parameter table (models/params.h); the
 * weights live in a separate contiguous float buffer laid out by that table,
 * so the training copy, the EMA copy, the gradients and the AdamW moments
 * are all plain buffers of m->table.total floats addressed by the same
 * offsets:
 *
 *   sit_config cfg = sit_config_default();
 *   sit_config_preset(&cfg, "SiT-XL/2");
 *   sit m;  sit_build(&m, &cfg);
 *   float *w = param_alloc(&m.table);  sit_init_weights(&m, w, seed);
 *
 * The model is the network of spec §4.2 plus the latent BatchNorm of §3:
 *
 *   sit_latent_norm_forward   z -> BN(z)  (train: batch statistics and the
 *                             running-stat update; eval: running statistics)
 *   sit_net_forward           (x_t, t, y) -> v̂ = model_output, and the
 *                             projector outputs zs_tilde after block
 *                             encoder_depth; label dropout in train mode
 *   sit_velocity              the same network for sampling, nothing kept
 *                             (on weights packed once for our GEMM where
 *                             sit_pack_for_sampling did so)
 *
 * The training objective around them (time, noise, x_t, the velocity target,
 * the denoising and REPA losses, spec §5) is diffusion/denoising_objective.h.
 * Activations are carved from an arena sized by sit_net_plan_bytes():
 *
 *   arena ar = arena_create(sit_net_plan_bytes(&m, N, &o));
 *   sit_acts a;
 *   sit_net_forward(&a, &m, w, &ar, &o, &in, N);
 *   sit_net_backward(&m, w, &a, &ar, d_out, d_zs_tilde, grads, dx_t);
 *   arena_reset(&ar, 0);
 *
 * The REPA-E alignment pass runs the network with o = {.align_only = true}
 * and sit_net_backward(..., NULL, d_zs_tilde, NULL, dx_t): no parameter
 * gradient is computed at all (dparams == NULL is the frozen fast path) and
 * the projector gradient flows through blocks 1..encoder_depth and the patch
 * embed into dx_t.
 *
 * Conventions (docs/architecture.md): backward ADDS into dparams and dx_t; a
 * NULL gradient means "not needed".  Only PARAM_TRAINABLE entries receive
 * gradients (pos_embed and the BN buffers never do).
 *
 * Shapes: N batch, C latent channels, H = W = input_size, p patch, G = H/p,
 * T = G² tokens, D hidden, NH heads, HD = D/NH, E encoders.
 */
#ifndef REPAE_SIT_H
#define REPAE_SIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/params.h"

#define SIT_MAX_ENCODERS 4
#define SIT_FREQ_DIM 256 /* timestep frequency embedding size */
#define SIT_LN_EPS 1e-6f
#define SIT_QK_NORM_EPS 1e-5f

/* The REPA projector.  MLP: REPA's Linear-SiLU-Linear-SiLU-Linear on each
 * token (keys projectors.<e>.{0,2,4}.*, the REPA / REPA-E layout).  CONV:
 * iREPA's single nn.Conv2d(hidden, z_dim, k, stride 1, padding k//2) over the
 * G×G token grid (tokens [N,T,D] -> [N,D,G,G] -> conv -> [N,z,G,G] -> tokens),
 * keys projectors.<e>.projection_layer.{weight,bias} as iREPA's ProjectionLayer
 * names them (End2End-Diffusion/iREPA, ldm/models/sit.py). */
typedef enum sit_projector_type { SIT_PROJECTOR_MLP = 0, SIT_PROJECTOR_CONV = 1 } sit_projector_type;

typedef struct sit_config {
    int depth, hidden, heads, patch;
    int in_channels;        /* C */
    int input_size;         /* latent H = W */
    int num_classes;        /* the null class is index num_classes */
    float class_dropout_prob;
    int encoder_depth;      /* projectors read the output of this block (1-based) */
    int projector_dim;      /* MLP projector width (unused by the conv projector) */
    sit_projector_type projector_type;
    int projector_kernel;   /* conv projector: odd kernel size k (padding k/2) */
    int n_encoders;         /* E (0 = no projectors) */
    int z_dims[SIT_MAX_ENCODERS];
    bool qk_norm;
    float mlp_ratio;
    float bn_momentum, bn_eps;
} sit_config;

/* Spec defaults: C 4, input 32, 1000 classes, dropout 0.1, encoder_depth 8,
 * MLP projector 2048 (conv kernel 3 when switched to conv), z_dims {768}, no qk-norm, mlp_ratio 4, BN momentum 0.1 and
 * eps 1e-4; the size fields are those of SiT-XL/2. */
sit_config sit_config_default(void);
/* Sets depth/hidden/heads/patch from a preset name "SiT-{S,B,L,XL}/{1,2,4,8}"
 * (SiT-S = depth 12, hidden 384, 6 heads: the release's S preset is broken).
 * Returns 0, or -1 for an unknown name (cfg untouched). */
int sit_config_preset(sit_config *cfg, const char *name);
/* Heads of the preset with this hidden size (384→6, 768→12, 1024→16,
 * 1152→16), or 0 if there is none. */
int sit_heads_for_hidden(int hidden);
/* Dies with a message if the configuration is inconsistent. */
void sit_config_check(const sit_config *cfg);
/* Infers the configuration from the tensor shapes under `prefix` in a
 * weights file: depth (block count), hidden (pos_embed), patch and C
 * (x_embedder.proj.weight), input_size, num_classes, mlp_ratio, qk_norm,
 * projectors.  Heads cannot be read from shapes: `heads` > 0 is used as
 * given, else the preset for the hidden size.  encoder_depth cannot be read
 * either: it is kept from *cfg (initialise it with sit_config_default()).
 * Dies naming the missing key when the file is not a SiT. */
void sit_config_from_weights(sit_config *cfg, const safetensors *st, const char *prefix, int heads);
/* One line, e.g. "depth 28 hidden 1152 heads 16 patch 2 C 4 input 32 ...". */
const char *sit_config_str(const sit_config *cfg, char *buf, size_t n);

/* Parameter offsets of one SiTBlock. */
typedef struct sit_block_offsets {
    size_t qkv_w, qkv_b, q_norm_w, q_norm_b, k_norm_w, k_norm_b, proj_w, proj_b;
    size_t fc1_w, fc1_b, fc2_w, fc2_b, ada_w, ada_b;
} sit_block_offsets;

typedef struct sit_projector_offsets {
    size_t w0, b0, w2, b2, w4, b4; /* MLP */
    size_t conv_w, conv_b;         /* conv: [z, D, k, k], [z] */
} sit_projector_offsets;

typedef struct sit {
    sit_config cfg;
    param_table table;
    /* derived sizes */
    int D, NH, HD, H4, G, T, p, C, H, PC; /* PC = C·p·p (patch vector) */
    /* offsets into the parameter buffer (see spec §4.4 for the names) */
    size_t pos_embed, x_w, x_b, t0_w, t0_b, t2_w, t2_b, y_table;
    sit_block_offsets *blocks;
    sit_projector_offsets proj[SIT_MAX_ENCODERS];
    size_t final_w, final_b, final_ada_w, final_ada_b;
    size_t bn_mean, bn_var, bn_count;
} sit;

void sit_build(sit *m, const sit_config *cfg);
void sit_free(sit *m);

/* Spec §4.3 initialisation; BN running mean 0 / var 1 / count 0 (set the
 * latent statistics afterwards with sit_set_latent_stats). */
void sit_init_weights(const sit *m, float *params, uint64_t seed);
/* init_bn: running_mean = bias, running_var = 1/scale² (both [C]). */
void sit_set_latent_stats(const sit *m, float *params, const float *bias, const float *scale);
/* extract_latents_stats: scale = running_var^(−1/2) (no eps), bias = running_mean. */
void sit_get_latent_stats(const sit *m, const float *params, float *bias, float *scale);

/* torch's parameters() count: trainable + frozen (pos_embed), no buffers;
 * with or without the projectors. */
size_t sit_param_count(const sit *m, bool with_projectors);
size_t sit_projector_param_count(const sit *m);

/* Load/save by state-dict name under a key prefix ("", "model.", "ema.").
 * num_batches_tracked is saved as a 0-dim F32 (torch's load_state_dict copies
 * it into its int64 buffer); I64 files load too. */
void sit_load(const sit *m, float *params, const safetensors *st, const char *prefix, param_load_mode mode);
void sit_save(const sit *m, const float *params, st_writer *w, const char *prefix);
/* Convenience: a standalone weights file with the config in the metadata. */
void sit_save_file(const sit *m, const float *params, const char *path);

/* ---- the latent BatchNorm (spec §3) ---- */

/* xn = BN(z), z and xn [N,C,H,W].  train: batch statistics (the global
 * batch's under data parallelism, the reference's SyncBatchNorm), saved in
 * batch_mean / batch_rstd [C] for the backward, and the running-stat update
 * and num_batches_tracked += 1 written into params; eval: the running
 * statistics (params untouched, batch_mean / batch_rstd unused). */
void sit_latent_norm_forward(const sit *m, float *params, float *xn, float *batch_mean, float *batch_rstd,
                             const float *z, int N, bool train);
/* Adds the gradient through the same BN (train: batch statistics, saved by
 * the forward) into dz [N,C,H,W], given dxn, the gradient w.r.t. xn. */
void sit_latent_norm_backward(const sit *m, const float *params, float *dz, const float *dxn, const float *z,
                              const float *batch_mean, const float *batch_rstd, int N, bool train);

/* ---- the network with a backward (spec §4.2) ---- */

typedef struct sit_net_opts {
    bool train;      /* the LabelEmbedder in train mode: label dropout */
    bool align_only; /* stop after block encoder_depth: projector outputs only, no final layer */
} sit_net_opts;

typedef struct sit_net_inputs {
    const float *x_t;      /* [N,C,H,W] the network's input, in normalised latent space */
    const float *t;        /* [N] time */
    const int *y;          /* [N] labels in [0, num_classes]; num_classes is the null class */
    const int *force_drop; /* [N] train mode: 1 = replace the label by the null class, instead of the
                              draw (the reference's drop_mask); ignored in eval mode */
    rng *rng;              /* the label dropout draws (train mode without force_drop) */
} sit_net_inputs;

/* Saved activations of one block (pointers into the arena). */
typedef struct sit_block_acts {
    float *x_in;                 /* [N,T,D] (the previous block's x_out) */
    float *c6;                   /* [N,6D] adaLN output: shift/scale/gate msa, shift/scale/gate mlp */
    float *ln1_mean, *ln1_rstd;  /* [N·T] */
    float *mod1;                 /* [N,T,D] modulate(norm1(x)) */
    float *qkv;                  /* [N,T,3D] */
    float *qkv_n;                /* [N,T,3D] with q,k normalised (qk_norm), else == qkv */
    float *q_mean, *q_rstd, *k_mean, *k_rstd; /* [N·T·NH] (qk_norm) */
    float *probs;                /* [N,NH,T,T] (NULL in inference) */
    float *attn;                 /* [N,T,D] heads concatenated */
    float *attn_proj;            /* [N,T,D] */
    float *x_mid;                /* [N,T,D] after the attention residual */
    float *ln2_mean, *ln2_rstd;
    float *mod2;                 /* [N,T,D] */
    float *fc1;                  /* [N,T,H4] pre-GELU */
    float *act;                  /* [N,T,H4] GELU output */
    float *fc2;                  /* [N,T,D] */
    float *x_out;                /* [N,T,D] */
} sit_block_acts;

typedef struct sit_projector_acts {
    float *h0, *s0, *h2, *s2; /* MLP: [N,T,projector_dim] pre/post SiLU */
    float *grid;              /* conv: the block output as a grid [N,D,G,G] */
    float *out;               /* zs_tilde [N,T,z_dim] */
} sit_projector_acts;

typedef struct sit_acts {
    int N, n_blocks; /* blocks run (encoder_depth in align-only mode) */
    sit_net_opts opts;
    /* outputs */
    int *labels;            /* [N] labels after dropout */
    float *model_output;    /* [N,C,H,W] v̂ (NULL in align-only mode) */
    float *zs_tilde[SIT_MAX_ENCODERS]; /* [N,T,z_dims[e]] projector outputs (n_encoders of them) */
    /* saved for backward */
    float *patches;             /* [N,T,C·p·p] patchified x_t */
    float *x0;                  /* [N,T,D] */
    float *t_freq;              /* [N,256] */
    float *t_h, *t_hs;          /* [N,D] mlp.0 output, SiLU of it */
    float *c, *silu_c;          /* [N,D] conditioning, SiLU(c) */
    sit_block_acts *blocks;     /* [n_blocks] */
    sit_projector_acts proj[SIT_MAX_ENCODERS];
    float *c2;                  /* [N,2D] final adaLN */
    float *lnf_mean, *lnf_rstd; /* [N·T] */
    float *modf;                /* [N,T,D] */
    float *out_tokens;          /* [N,T,p²C] */
    float *attn_ws;             /* attention workspace */
    float *conv_ws;             /* conv projector: conv2d workspace (scratch) */
    float *conv_out;            /* conv projector: output grid [N,z,G,G] before the token transpose (scratch) */
} sit_acts;

/* Bytes of arena that one sit_net_forward + sit_net_backward needs
 * (computed under the current OpenMP thread count, like the attention
 * workspace). */
size_t sit_net_plan_bytes(const sit *m, int N, const sit_net_opts *opts);

/* Runs the network with the activations carved from `ar` (they stay there
 * until the caller resets the arena).  model_output equals sit_velocity's bit
 * for bit (eval mode).  Dies on a label outside [0, num_classes] (the null
 * class only when the model has one). */
void sit_net_forward(sit_acts *a, const sit *m, const float *params, arena *ar, const sit_net_opts *opts,
                     const sit_net_inputs *in, int N);

/* Adds the gradient of Σ d_out ⊙ model_output + Σ_e Σ d_zs_tilde[e] ⊙ zs_tilde[e]
 * into dparams (table layout, trainable entries only; NULL = frozen model: no
 * parameter gradient is computed) and dx_t [N,C,H,W] (NULL = not needed).
 * d_out NULL: no gradient through the final layer (it must be NULL in
 * align-only mode); d_zs_tilde NULL: none through the projectors, else one
 * [N,T,z_dims[e]] cotangent per encoder.  Scratch comes from `ar` above the
 * activations and is released before returning. */
void sit_net_backward(const sit *m, const float *params, const sit_acts *a, arena *ar, const float *d_out,
                      const float *const *d_zs_tilde, float *dparams, float *dx_t);

/* ---- sampling ---- */

/* Arena bytes for sit_velocity at batch N (activations are not kept). */
size_t sit_velocity_plan_bytes(const sit *m, int N);
/* v [N,C,H,W] = SiT(x_t, t, y) in eval mode: x_t already normalised (no BN),
 * labels as given (pass num_classes for the unconditional branch).  Uses
 * the arena as scratch and resets it to its entry mark before returning.
 * packed: params as sit_pack_for_sampling left them (true only where it
 * returned true). */
void sit_velocity(const sit *m, const float *params, bool packed, arena *ar, float *v, const float *x_t,
                  const float *t, const int *y, int N);

/* Rearranges in place, into our GEMM kernels' packed layout
 * (ops/gemm_packed.h), the weights that sit_velocity multiplies, so that no
 * call packs them again (sampling SiT-B/2 spent ~9 % of its time packing
 * them).  Afterwards `params` serve sit_velocity(packed = true) only: not
 * training, saving, EMA or sit_net_forward; the buffer keeps its size (no
 * second copy of the weights).  The samples keep their bits.  Returns false,
 * params untouched, where gemm() does not run our kernels for these calls
 * (then pass packed = false). */
bool sit_pack_for_sampling(const sit *m, float *params);

#endif
