/* weights_file.h — open any weights file a user hands us, by content.
 *
 * Every flag that takes weights (--ckpt, --weights, --vae-ckpt, --enc-ckpt,
 * --latents-stats, --lpips-ckpt, --disc-ckpt, evaluation networks) goes
 * through weights_open, which looks at the first bytes, not the extension:
 *   - "PK\3\4" (a ZIP archive): a PyTorch file of torch >= 1.6 (io/torch_file.h);
 *   - the legacy pickle magic: an older PyTorch file (io/torch_file.h);
 *   - otherwise a safetensors file (io/safetensors.h), whose own checks name
 *     the problem; a file that is clearly none of them says so.
 * All three give the same `safetensors` view: tensors by name, metadata.
 * Our own files that must be safetensors (checkpoints to resume from) keep
 * using safetensors_open.
 *
 *   safetensors *st = weights_open(o.vae_ckpt);   // .safetensors, .pt or .pth
 */
#ifndef REPAE_WEIGHTS_FILE_H
#define REPAE_WEIGHTS_FILE_H

#include "io/safetensors.h"

safetensors *weights_open(const char *path);

#endif
