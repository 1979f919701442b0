#include "io/image.h"

#include <stdio.h> /* before jpeglib.h, which needs FILE and size_t */
#include <jpeglib.h>
#include <jerror.h> /* the JWRN_* message codes */
#include <png.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- PNG ---- */

/* libpng's messages name no file: say which, and keep the error text. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    warn("'%s': PNG: %s", (const char *)png_get_error_ptr(png), msg);
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    char *last = png_get_error_ptr(png);
    snprintf(last + strlen(last) + 1, 256, "%s", msg); /* after the path, see read_png */
    png_longjmp(png, 1);
}

static image read_png(const char *path, FILE *f)
{
    /* error_ptr: the path, then a NUL, then room for libpng's message. */
    size_t plen = strlen(path);
    char *volatile ctx = xcalloc(plen + 258, 1);
    memcpy(ctx, path, plen);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info)
        die("'%s': cannot initialise libpng", path);
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        char msg[260];
        snprintf(msg, sizeof msg, "%s", ctx + plen + 1);
        png_destroy_read_struct(&png, &info, NULL);
        free(rgb), free(rows), free(ctx);
        die("'%s': corrupt or truncated PNG (%s)", path, msg);
    }
    png_init_io(png, f);
    /* As the reference's PIL: a chunk's CRC error is a warning, its data used
     * (zlib's own checksum still guards the pixels), and nothing after the
     * image data is read (PIL reads a file whose IEND is missing). */
    png_set_crc_action(png, PNG_CRC_WARN_USE, PNG_CRC_WARN_DISCARD);
    png_read_info(png, info);
    png_set_expand(png);       /* palette, low-bit grey, tRNS → 8-bit */
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_read_update_info(png, info);
    int W = (int)png_get_image_width(png, info), H = (int)png_get_image_height(png, info);
    int C = png_get_channels(png, info);
    if (W <= 0 || H <= 0 || W > 65536 || H > 65536 || (C != 1 && C != 3) || (size_t)W * H > IMAGE_MAX_PIXELS) {
        png_destroy_read_struct(&png, &info, NULL); /* libpng's own allocations: the fuzz build's die() returns */
        free(ctx);
        die("'%s': unsupported PNG (%dx%d, %d channels; at most %d megapixels)", path, W, H, C,
            (int)(IMAGE_MAX_PIXELS >> 20));
    }
    rgb = xmalloc((size_t)W * H * C);
    rows = xmalloc((size_t)H * sizeof(png_bytep));
    for (int y = 0; y < H; y++)
        rows[y] = rgb + (size_t)y * W * C;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(ctx);
    image im = {C, H, W, xmalloc((size_t)W * H * C)};
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < (size_t)W * H; i++)
            im.pixels[(size_t)c * W * H + i] = rgb[i * C + c];
    free(rgb);
    return im;
}

/* ---- JPEG ---- */

struct jpeg_error_ctx {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    const char *path;
};

static void jpeg_error_exit(j_common_ptr cinfo)
{
    struct jpeg_error_ctx *ctx = (struct jpeg_error_ctx *)cinfo->err;
    longjmp(ctx->jump, 1);
}

/* libjpeg reports a truncated file as a warning ("Premature end of JPEG
 * file"), fills the rest with grey and carries on, printing a message that
 * names no file.  Missing data is an error, as in PIL (which raises on a
 * truncated image); other warnings (extraneous bytes, …) decode fine there
 * and here, and are passed on with the file's name. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return; /* trace messages */
    struct jpeg_error_ctx *ctx = (struct jpeg_error_ctx *)cinfo->err;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC)
        longjmp(ctx->jump, 1);
    if (cinfo->err->num_warnings++ == 0) {
        char msg[JMSG_LENGTH_MAX];
        cinfo->err->format_message(cinfo, msg);
        warn("'%s': JPEG: %s", ctx->path, msg);
    }
}

/* PIL's reading of a CMYK JPEG, then convert("RGB"): it takes every such
 * file to be inverted, as Photoshop (Adobe) writes them, so ink is 255 - the
 * stored byte; then R = (255 - K) - C·(255 - K)/255 with Pillow's rounded
 * integer product, and likewise G from M, B from Y.  In terms of the
 * stored bytes s: R = sK - round((255 - sC)·sK / 255). */
static void cmyk_to_rgb(uint8_t *rgb, const uint8_t *stored)
{
    int nk = stored[3], c[3] = {255 - stored[0], 255 - stored[1], 255 - stored[2]};
    for (int k = 0; k < 3; k++) {
        int t = c[k] * nk + 128, v = nk - (((t >> 8) + t) >> 8); /* Pillow's MULDIV255 */
        rgb[k] = (uint8_t)(v < 0 ? 0 : v);
    }
}

static image read_jpeg(const char *path, FILE *f)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_ctx err;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_error_exit;
    err.mgr.emit_message = jpeg_on_message;
    err.path = path;
    uint8_t *volatile hwc = NULL;
    if (setjmp(err.jump)) {
        char msg[JMSG_LENGTH_MAX];
        err.mgr.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(hwc);
        die("'%s': corrupt or truncated JPEG: %s", path, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    /* Four components (CMYK, or YCCK which libjpeg turns into CMYK): libjpeg
     * makes no RGB of them; we convert as PIL does (below). */
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk)
        cinfo.out_color_space = JCS_CMYK;
    else if (cinfo.jpeg_color_space != JCS_GRAYSCALE)
        cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int W = (int)cinfo.output_width, H = (int)cinfo.output_height, C = cinfo.output_components;
    if ((C != 1 && C != 3 && !(cmyk && C == 4)) || (size_t)W * H > IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&cinfo);
        die("'%s': unsupported JPEG (%dx%d, %d components; at most %d megapixels)", path, W, H, C,
            (int)(IMAGE_MAX_PIXELS >> 20));
    }
    hwc = xmalloc((size_t)W * H * C);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = hwc + (size_t)cinfo.output_scanline * W * C;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (cmyk) /* RGB in place: the first 3 of every 4 bytes, read before written */
        for (size_t i = 0; i < (size_t)W * H; i++)
            cmyk_to_rgb(hwc + 3 * i, hwc + 4 * i);
    int Cout = cmyk ? 3 : C;
    image im = {Cout, H, W, xmalloc((size_t)W * H * Cout)};
    for (int c = 0; c < Cout; c++)
        for (size_t i = 0; i < (size_t)W * H; i++)
            im.pixels[(size_t)c * W * H + i] = hwc[i * Cout + c];
    free(hwc);
    return im;
}

image image_read(const char *path, int channels)
{
    FILE *f = xfopen(path, "rb");
    uint8_t sig[8] = {0};
    size_t got = fread(sig, 1, 8, f);
    rewind(f);
    image im;
    if (got == 8 && !png_sig_cmp(sig, 0, 8))
        im = read_png(path, f);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        im = read_jpeg(path, f);
    else
        die("'%s': not a PNG or JPEG file", path);
    fclose(f);
    if (channels && channels != im.channels) {
        size_t hw = (size_t)im.height * im.width;
        uint8_t *p = xmalloc(hw * channels);
        if (channels == 3) /* grey → RGB */
            for (int c = 0; c < 3; c++)
                memcpy(p + c * hw, im.pixels, hw);
        else /* RGB → grey with ITU-R 601 weights in 16-bit fixed point, as Pillow's convert("L") */
            for (size_t i = 0; i < hw; i++)
                p[i] = (uint8_t)((im.pixels[i] * 19595 + im.pixels[hw + i] * 38470 + im.pixels[2 * hw + i] * 7471 + 0x8000) >> 16);
        free(im.pixels);
        im.pixels = p;
        im.channels = channels;
    }
    return im;
}

void image_free(image *im)
{
    free(im->pixels);
    im->pixels = NULL;
}

void image_write_png(const char *path, const uint8_t *chw, int C, int H, int W)
{
    if (C != 1 && C != 3)
        die("internal: cannot write a %d-channel PNG to '%s'", C, path);
    atomic_file af = atomic_file_open(path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info)
        die("'%s': cannot initialise libpng", path);
    uint8_t *volatile row = xmalloc((size_t)W * C);
    if (setjmp(png_jmpbuf(png)))
        die("'%s': PNG write failed", path);
    png_init_io(png, af.fp);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, C == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t hw = (size_t)H * W;
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++)
                row[(size_t)x * C + c] = chw[c * hw + (size_t)y * W + x];
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    atomic_file_commit(&af);
}

void image_grid_png(const char *path, const uint8_t *nchw, int N, int C, int H, int W, int cols)
{
    if (cols < 1)
        cols = 1;
    int rows = (N + cols - 1) / cols, pad = 2;
    int GH = rows * (H + pad) + pad, GW = cols * (W + pad) + pad;
    uint8_t *grid = xcalloc((size_t)C * GH * GW, 1);
    for (int n = 0; n < N; n++) {
        int oy = pad + (n / cols) * (H + pad), ox = pad + (n % cols) * (W + pad);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                memcpy(grid + ((size_t)c * GH + oy + y) * GW + ox, nchw + (((size_t)n * C + c) * H + y) * W, (size_t)W);
    }
    image_write_png(path, grid, C, GH, GW);
    free(grid);
}

size_t image_from_model_range(uint8_t *dst, const float *src, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float v = 255.0f * (src[i] + 1.0f) / 2.0f;
        if (!isfinite(v)) { /* NaN → uint8 is undefined behaviour; the caller reports */
            dst[i] = 0;
            bad++;
            continue;
        }
        v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
        dst[i] = (uint8_t)v; /* truncation, as the reference's .to(uint8) */
    }
    return bad;
}
