/* torch_file.h — PyTorch .pt/.pth files (torch.save) as read-only weights.
 *
 * Two container formats (spec §12.2):
 *  - zip (torch >= 1.6): <prefix>/data.pkl, the object pickle, and one stored
 *    member <prefix>/data/<key> per storage (io/zip_archive.h; ZIP64 for
 *    files over 4 GB); <prefix> is whatever precedes /data.pkl;
 *  - legacy: concatenated pickles — the magic number 0x1950a86a20f9469cfc6c,
 *    the protocol version, a sys-info dict, the object, the sorted list of
 *    storage keys — then each storage as an 8-byte little-endian element
 *    count and its raw bytes.
 * The object pickle is read by the restricted unpickler (io/pickle.h): no
 * code runs, and any global outside its whitelist is refused by name.
 *
 * The result is a `safetensors` view (io/safetensors.h), so every loader
 * works unchanged:
 *  - tensors (torch._utils._rebuild_tensor_v2 / _rebuild_parameter, dtypes
 *    F32 F64 F16 BF16 I64 I32 I16 I8 U8 BOOL) are named by their dotted path
 *    through nested dicts and lists: a train_repae.py checkpoint gives
 *    model.*, ema.*, vae.*, discriminator.*, opt.state.0.exp_avg, ...;
 *  - offsets, sizes and strides are checked against the storage (no
 *    overflow, nothing outside it); contiguous tensors point into the file's
 *    mapping, non-contiguous views (a transposed weight, a strided slice) are
 *    copied out once, in row-major order; several tensors may share a storage;
 *  - every non-tensor leaf becomes metadata under its dotted path: numbers
 *    and strings as text ("steps" = "400000"), lists of scalars and pickled
 *    argparse.Namespace objects as JSON ("args" = {"model": "SiT-XL/2", ...},
 *    which model_files.c reads like our own checkpoints' `args`);
 *  - st->globals lists the globals the pickle used (for `repae inspect`).
 *
 * CRC-32: data.pkl is checked at open, like the records of tensors that must
 * be copied (non-contiguous); the record behind any other tensor is checked
 * the first time one of its tensors is read (st->verify), so that taking the
 * EMA out of an 11 GB checkpoint neither reads nor pages in its optimiser
 * states, while no byte is ever used unchecked.
 *
 *   safetensors *st = torch_file_open("sdvae-f8d4.pt");   // or weights_open
 *   safetensors_read_f32(st, safetensors_require(st, "encoder.conv_in.weight"), dst);
 *   safetensors_close(st);
 */
#ifndef REPAE_TORCH_FILE_H
#define REPAE_TORCH_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "io/file_map.h"
#include "io/safetensors.h"

typedef enum torch_kind { TORCH_NOT = 0, TORCH_ZIP, TORCH_LEGACY } torch_kind;

/* What the first bytes say: a ZIP archive, the legacy magic, or neither. */
torch_kind torch_file_sniff(const uint8_t *data, size_t size);

safetensors *torch_file_open(const char *path);
/* Same, on a mapping the caller made (ownership passes to the result). */
safetensors *torch_file_open_map(const char *path, file_map fm);

#ifdef REPAE_FUZZ
/* Fuzz builds only: frees what an open abandoned when die() longjmped out. */
void torch_file_fuzz_release(void);
#endif

/* Limit on the bytes copied out for non-contiguous tensors: twice the file
 * plus 64 MiB (views with zero strides could otherwise ask for terabytes). */
#define TORCH_MATERIALISE_SLACK (64ull << 20)

#endif
