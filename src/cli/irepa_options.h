/* irepa_options.h — iREPA's two options (arXiv 2512.10794, code
 * End2End-Diffusion/iREPA) as flags shared by `train`, `train-ldm` and
 * `forward --model sit`, under iREPA's own names (ldm/train.py):
 *
 *   --projection-layer-type mlp|conv   REPA's MLP projector, or one Conv2d on
 *                                      the token grid (iREPA; default mlp)
 *   --proj-kwargs-kernel-size K        the conv's kernel, padding K/2 (1|3|5|7;
 *                                      default 3 as iREPA's README and SiT
 *                                      constructor — its ldm/train.py argparse
 *                                      default is 1, its jit trainer's 3)
 *   --spnorm-method none|zscore        spatial z-score of the encoder's patch
 *                                      tokens before the REPA loss (default none)
 *   --zscore-alpha A                   the mean-subtraction scale (default 0.6,
 *                                      iREPA's LDM trainer; its JiT trainer 0.8)
 *
 *   irepa_options io;
 *   option_spec opts[] = { ..., IREPA_OPTION_SPECS(io), ... };
 *   irepa_apply_sit(&io, &sit_cfg);            // projector type + kernel
 *   cfg.spatial_norm = irepa_spatial_norm(&io), cfg.zscore_alpha = io.zscore_alpha;
 *
 * With the defaults nothing changes: the MLP projector and raw targets. */
#ifndef REPAE_IREPA_OPTIONS_H
#define REPAE_IREPA_OPTIONS_H

#include <stdbool.h>

#include "core/options.h"
#include "models/sit.h"

typedef struct irepa_options {
    const char *projection_layer_type, *spnorm_method;
    int kernel_size;
    float zscore_alpha;
} irepa_options;

#define IREPA_N_OPTS 4
#define IREPA_OPTION_SPECS(io)                                                                            \
    {"--projection-layer-type", OPT_CHOICE, &(io).projection_layer_type, "mlp",                          \
     "REPA projector: mlp (REPA's 3-layer MLP) or conv (iREPA: one Conv2d on the token grid)",           \
     .choices = "mlp|conv"},                                                                              \
    {"--proj-kwargs-kernel-size", OPT_INT, &(io).kernel_size, "3",                                        \
     "iREPA conv projector kernel (odd: 1, 3, 5 or 7; padding k/2)", .min = 1, .max = 7},                \
    {"--spnorm-method", OPT_CHOICE, &(io).spnorm_method, "none",                                          \
     "REPA targets: none, or zscore = iREPA's spatial normalisation (x - a*mean) / (std + 1e-6) over "    \
     "the patch tokens, per image and channel",                                                           \
     .choices = "none|zscore"},                                                                           \
    {"--zscore-alpha", OPT_FLOAT, &(io).zscore_alpha, "0.6",                                              \
     "iREPA spatial normalisation: the mean-subtraction scale a", .min = 0, .max = 10}

/* Writes the four specs at opts[0..3]; returns IREPA_N_OPTS. */
int irepa_options_table(irepa_options *io, option_spec *opts);
/* Sets the projector type and kernel of a SiT configuration (dies naming the
 * flag for an even kernel). */
void irepa_apply_sit(const irepa_options *io, sit_config *sc);
bool irepa_spatial_norm(const irepa_options *io);
/* Warns (once, naming the command) when an iREPA option is set but there is
 * no REPA alignment for it to act on. */
void irepa_warn_unused(const irepa_options *io, const char *command, bool have_repa);

#endif
