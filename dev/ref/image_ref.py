"""PIL (Pillow) reference for reading images and the ADM centre crop.

The reference preprocesses ImageNet with PIL: `Image.open(f).convert("RGB")`
then guided-diffusion's `center_crop_arr` (BOX halvings, a BICUBIC resize, a
centre crop).  This script writes small image files of the kinds an image
folder holds (RGB and greyscale JPEGs, a CMYK JPEG as Photoshop writes them,
PNGs in every colour type) into tests/fixtures/io/images/, and what PIL makes
of them into tests/fixtures/io/image_pil.safetensors:

  rgb.<file>   convert("RGB"), [H, W, 3] uint8
  l.<file>     convert("L"),   [H, W] uint8
  crop<R>.<file>  center_crop_arr(convert("RGB"), R), [R, R, 3] uint8
  crop_src.<i> / crop_out.<i>   larger images and their centre crops
  resize_src.<i> / resize_<box|bicubic>.<i>   Image.resize alone

Needs Debian's python3-pil (scripts/setup.sh --dev).  The JPEGs are decoded
by the same libjpeg-turbo the C code links, so every value must match.
"""
import os

import numpy as np
import torch
from PIL import Image

from fixture_io import FIXTURE_DIR, save_fixture

SEED = 20261206
IMAGE_DIR = os.path.join(FIXTURE_DIR, "io", "images")


def center_crop_arr(pil_image, image_size):
    """guided-diffusion/improved_diffusion image_datasets.py, as ADM and REPA-E's preprocessing use it."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y:crop_y + image_size, crop_x:crop_x + image_size]


def smooth_image(rng, h, w, c):
    """Gradients, a few discs and noise: edges for the filters to ring on, flat parts to stay flat."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, c))
    for k in range(c):
        img[..., k] = 128 + 90 * np.sin(x / (7 + 3 * k) + k) * np.cos(y / (11 + k))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, max(4, min(h, w) / 3))
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, c)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(IMAGE_DIR, exist_ok=True)
    files = []

    def save(name, im, **kw):
        im.save(os.path.join(IMAGE_DIR, name), **kw)
        files.append(name)

    # JPEGs: 4:2:0 (PIL's default, as most photos), 4:4:4, greyscale, CMYK (Adobe, inverted: PIL assumes so).
    save("rgb420.jpg", Image.fromarray(smooth_image(rng, 75, 101, 3), "RGB"), quality=90)
    save("rgb444.jpg", Image.fromarray(smooth_image(rng, 64, 48, 3), "RGB"), quality=95, subsampling=0)
    save("grey.jpg", Image.fromarray(smooth_image(rng, 70, 90, 1)[..., 0], "L"), quality=90)
    save("cmyk.jpg", Image.fromarray(smooth_image(rng, 40, 52, 4), "CMYK"), quality=92)
    # PNGs: RGB, RGBA, grey, grey + alpha, palette with transparency, 16-bit RGB.
    save("rgb.png", Image.fromarray(smooth_image(rng, 131, 97, 3), "RGB"))
    save("rgba.png", Image.fromarray(smooth_image(rng, 33, 47, 4), "RGBA"))
    save("grey.png", Image.fromarray(smooth_image(rng, 41, 29, 1)[..., 0], "L"))
    save("la.png", Image.fromarray(smooth_image(rng, 20, 30, 2), "LA"))
    pal = Image.fromarray(smooth_image(rng, 36, 36, 3), "RGB").quantize(colors=13)
    pal.info["transparency"] = 3
    save("palette.png", pal, transparency=3)
    rgb16 = (smooth_image(rng, 24, 18, 3).astype(np.uint16) * 257 + rng.integers(0, 257, (24, 18, 3))).astype(">u2")
    with open(os.path.join(IMAGE_DIR, "rgb16.png"), "wb") as f:
        f.write(png16(rgb16))
    files.append("rgb16.png")

    tensors = {}
    for name in files:
        im = Image.open(os.path.join(IMAGE_DIR, name))
        rgb = im.convert("RGB")
        tensors["rgb." + name] = torch.from_numpy(np.array(rgb))
        tensors["l." + name] = torch.from_numpy(np.array(im.convert("L")))
        for r in (16, 32):
            if min(rgb.size) >= r:
                tensors["crop%d.%s" % (r, name)] = torch.from_numpy(np.ascontiguousarray(center_crop_arr(rgb, r)))
    # The crop alone on larger images: several halvings, odd sizes, tall and wide.
    for i, (h, w, r) in enumerate([(301, 229, 64), (300, 200, 64), (70, 350, 16), (257, 256, 128), (96, 96, 64)]):
        src = smooth_image(rng, h, w, 3)
        tensors["crop_src.%d" % i] = torch.from_numpy(src)
        tensors["crop_out.%d" % i] = torch.from_numpy(np.ascontiguousarray(center_crop_arr(Image.fromarray(src), r)))
    # Pillow's resize itself, one direction at a time, up and down, and the
    # BOX filter on the exact edge of its window (2 → 3: a centre at 1.0).
    resizes = [(20, 30, 20, 17, "bicubic"), (20, 30, 11, 30, "box"), (7, 5, 13, 9, "bicubic"), (2, 2, 3, 3, "box"),
               (9, 9, 4, 4, "box"), (33, 40, 12, 50, "bicubic"), (1, 6, 1, 2, "bicubic"), (5, 1, 14, 3, "box")]
    for i, (h, w, ho, wo, f) in enumerate(resizes):
        src = smooth_image(rng, h, w, 3)
        out = Image.fromarray(src).resize((wo, ho), resample=Image.BOX if f == "box" else Image.BICUBIC)
        tensors["resize_src.%d" % i] = torch.from_numpy(src)
        tensors["resize_%s.%d" % (f, i)] = torch.from_numpy(np.ascontiguousarray(np.array(out)))
    import PIL
    save_fixture("io/image_pil", tensors, __file__, SEED, pillow=PIL.__version__)


def png16(arr):
    """A 16-bit RGB PNG written by hand (zlib + CRCs): PIL writes no 16-bit RGB."""
    import struct
    import zlib
    h, w, _ = arr.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
