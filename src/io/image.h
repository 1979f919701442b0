/* image.h — PNG/JPEG files and image grids.
 *
 * Images in memory are uint8 CHW (C = 1 or 3), the layout datasets use.
 * Reading gives what the reference's PIL gives (Image.open(f).convert("RGB")
 * or convert("L"); tests/test_image.c checks every value): grey, grey+alpha,
 * palette and RGBA PNGs are converted (alpha dropped), 16-bit PNGs keep
 * their high byte, CMYK and YCCK JPEGs become RGB as PIL converts them.
 * As in PIL, a PNG chunk's CRC error is only a warning (zlib's checksum
 * still guards the pixels) and nothing after the image data is read (a
 * missing IEND is fine); data cut short or failing zlib's check is an error.
 * One deviation: PIL 9.4 reads a 16-bit *grey* PNG as 32-bit integers and
 * clips them to 255 (a white image); we keep the high byte, as for colour.
 *
 *   image im = image_read("cat.jpg", 3);     // force 3 channels
 *   image_write_png("out.png", pixels, C, H, W);
 *   image_grid_png("grid.png", batch, N, C, H, W, cols);   // N images in a grid
 */
#ifndef REPAE_IMAGE_H
#define REPAE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct image {
    int channels, height, width;
    uint8_t *pixels; /* [C, H, W] */
} image;

/* Larger images are refused before decoding: 256 megapixels (16384²) is far
 * beyond any dataset image, and a crafted header must not ask for 12 GB. */
#ifndef IMAGE_MAX_PIXELS /* fuzz builds set a smaller limit, to keep each input cheap */
#define IMAGE_MAX_PIXELS ((size_t)1 << 28)
#endif

/* channels: 1 or 3 to convert, 0 to keep the file's (grey → 1, colour → 3).
 * Dies naming the file on anything malformed, including a truncated JPEG
 * (libjpeg alone would pad it with grey and only print a warning). */
image image_read(const char *path, int channels);
void image_free(image *im);
void image_write_png(const char *path, const uint8_t *chw, int C, int H, int W);
/* Tiles N images [N, C, H, W] into rows of `cols` with a 2-pixel border. */
void image_grid_png(const char *path, const uint8_t *nchw, int N, int C, int H, int W, int cols);
/* The reference's float → uint8: clamp(255·(x+1)/2, 0, 255), truncated.
 * Returns how many inputs were NaN or ±Inf (written as 0): a model that
 * produced them is broken, and the caller must say so rather than write
 * black squares. */
size_t image_from_model_range(uint8_t *dst, const float *src, size_t n);

#endif
