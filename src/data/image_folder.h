/* image_folder.h — an ImageNet-style folder of images as a dataset, with
 * the reference's preprocessing (spec §1.1).
 *
 * Files: every PNG or JPEG below the root, recursively (.png .apng .jpg
 * .jpeg .jpe .jfif .mpo, any case; decoded by content), sorted by relative
 * path (byte order = Python's string order for UTF-8).  The reference takes
 * every file PIL recognises: one of another kind (.gif, .webp, .tif, …) is
 * refused, since skipping it would shift every index after it.
 * Labels: from dataset.json at the root when there is one
 * ({"labels": [["<relative path>", label], ...]}, every image listed; null:
 * one class), else the index of the top-level folder name among the sorted
 * distinct top-level folders, when there is more than one (ImageNet synsets
 * → 0…999); otherwise every image gets label 0.  Without dataset.json,
 * images directly in the root next to class folders are an error (they
 * would silently be class 0), and so is a folder reached twice (a symlink
 * loop, two links to one folder).
 *
 * ADM centre crop to R×R (guided-diffusion's center_crop_arr): while
 * min(W,H) >= 2R halve both sides (floor) with a box filter; then resize so
 * the short side is R (bicubic, the new size rounded half to even as
 * Python's round); then crop the centre.  Both resizes are Pillow's own
 * 8-bit fixed-point arithmetic (data/pil_resize.h): the same values as the
 * reference's PIL, checked in tests/test_image.c.
 */
#ifndef REPAE_IMAGE_FOLDER_H
#define REPAE_IMAGE_FOLDER_H

#include <stdint.h>

#include "data/dataset.h"

/* Loads and preprocesses every image (channels: 1 or 3); max_images > 0
 * decodes only the first ones (in path order). */
dataset dataset_image_folder(const char *root, int resolution, int channels, int max_images);
/* The ADM centre crop of one image [C, H, W] into out [C, R, R]. */
void adm_center_crop(uint8_t *out, const uint8_t *img, int C, int H, int W, int R);

#endif
