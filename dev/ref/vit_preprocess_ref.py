#!/usr/bin/python3
"""Writes tests/fixtures/models/vit_preprocess.safetensors: the representation-encoder
input preprocessing of spec §1.3 (REPA-E preprocess_raw_image), computed with torch in
float32 exactly as the reference does, on small uint8 images.

  img            U8 [2,3,20,18]  (non-square, so an H/W swap shows)
  dinov2         x/255 -> Normalize(ImageNet) -> interpolate(size=14, bicubic)   (downsample)
  clip           x/255 -> interpolate(size=14, bicubic) -> Normalize(CLIP)
  imagenet_noresize  x/255 -> Normalize(ImageNet)                               (mocov3/mae)
  img_small      U8 [1,3,9,9];  dinov2_up: the dinov2 recipe to size 14            (upsample)

interpolate is F.interpolate(mode="bicubic", align_corners=False, antialias=False).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import save_fixture  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(x, mean, std):  # torchvision.transforms.Normalize on a tensor
    mean = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return x.sub(mean).div(std)


def main():
    seed = 4242
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (2, 3, 20, 18), generator=g, dtype=torch.uint8)
    # make sure the extremes appear
    img[0, 0, 0, 0], img[1, 2, 19, 17] = 0, 255
    small = torch.randint(0, 256, (1, 3, 9, 9), generator=g, dtype=torch.uint8)
    x = img.float() / 255.
    xs = small.float() / 255.
    t = {
        "img": img,
        "dinov2": F.interpolate(normalize(x, IMAGENET_MEAN, IMAGENET_STD), 14, mode="bicubic"),
        "clip": normalize(F.interpolate(x, 14, mode="bicubic"), CLIP_MEAN, CLIP_STD),
        "imagenet_noresize": normalize(x, IMAGENET_MEAN, IMAGENET_STD),
        "img_small": small,
        "dinov2_up": F.interpolate(normalize(xs, IMAGENET_MEAN, IMAGENET_STD), 14, mode="bicubic"),
    }
    path = save_fixture("models/vit_preprocess", t, __file__, seed,
                        description="encoder preprocessing (spec 1.3) on small uint8 images; out size 14")
    print("  wrote %s" % os.path.relpath(path))


if __name__ == "__main__":
    main()
