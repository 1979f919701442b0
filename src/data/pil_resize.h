/* pil_resize.h — Pillow's Image.resize for 8-bit images, value for value.
 *
 * The reference prepares its data with PIL (guided-diffusion's
 * center_crop_arr: BOX halvings, then a BICUBIC resize), so the dataset is
 * what Pillow's resampler makes: separable, a horizontal pass then a
 * vertical one, each pass's result rounded to 8 bits; per output sample, the
 * filter's weights over the input samples within its support, normalised to
 * sum to 1, then held as integers of 22 fractional bits; the sum starts at
 * one half and is clipped to 0..255.  BOX is 1 on (-0.5, 0.5]; BICUBIC is
 * Keys' cubic with a = -0.5 over (-2, 2); both stretched by the scale when
 * shrinking (antialiasing).  Checked against Pillow 9.4 in
 * tests/test_image.c (dev/ref/image_ref.py): every value equal.
 *
 *   pil_resize_u8(out, in, C, H, W, Ho, Wo, PIL_BICUBIC);   // [C,H,W] → [C,Ho,Wo]
 */
#ifndef REPAE_PIL_RESIZE_H
#define REPAE_PIL_RESIZE_H

#include <stdint.h>

typedef enum pil_filter { PIL_BOX, PIL_BICUBIC } pil_filter;

/* C planes of H×W into C planes of Ho×Wo (all sizes >= 1).  The same size
 * is a copy, as in Pillow. */
void pil_resize_u8(uint8_t *out, const uint8_t *in, int C, int H, int W, int Ho, int Wo, pil_filter filter);

#endif
