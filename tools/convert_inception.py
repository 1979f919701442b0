#!/usr/bin/python3
"""Converts pytorch-fid's FID Inception weights to the safetensors file repae reads.

    /usr/bin/python3 tools/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors

Input: the state dict of pytorch-fid's fid_inception_v3() (torchvision's
Inception3 with num_classes=1008, aux_logits=False), as released at
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(a port of the TF graph classify_image_graph_def.pb of 2015-12-05, the network of
the ADM evaluator; spec §10.1).

Key mapping (docs/inception.md): every key keeps its pytorch-fid / torchvision name,
    <unit>.conv.weight                                   [C_out, C_in, kh, kw]
    <unit>.bn.{weight,bias,running_mean,running_var}     [C_out]
for the 94 BasicConv2d units (Conv2d_1a_3x3 ... Conv2d_4a_3x3, Mixed_5b ... Mixed_7c
branches), and
    fc.weight                                            [1008, 2048]
which is the transpose of the TF graph's softmax/logits/MatMul weight (2048 x 1008).
Dropped:
    *.bn.num_batches_tracked   (training counter, unused in eval mode)
    fc.bias                    (the ADM evaluator's IS logits are pool3 . W with NO bias)
Anything else (AuxLogits.*, a 1000-class fc: torchvision's ImageNet weights, which
are a different network) is an error.  Tensors are written as float32 in the order
of the C parameter table, so `repae` can load the file strictly by name.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import torch

NUM_CLASSES = 1008
EXPECTED_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries it


def basic(name, cin, cout, kh, kw):
    return [(f"{name}.conv.weight", (cout, cin, kh, kw))] + [
        (f"{name}.bn.{p}", (cout,)) for p in ("weight", "bias", "running_mean", "running_var")]


def expected_keys():
    """(name, shape) in the order of the C table (src/models/inception.c)."""
    k = []
    k += basic("Conv2d_1a_3x3", 3, 32, 3, 3)
    k += basic("Conv2d_2a_3x3", 32, 32, 3, 3)
    k += basic("Conv2d_2b_3x3", 32, 64, 3, 3)
    k += basic("Conv2d_3b_1x1", 64, 80, 1, 1)
    k += basic("Conv2d_4a_3x3", 80, 192, 3, 3)

    def a(n, cin, pf):
        return (basic(f"{n}.branch1x1", cin, 64, 1, 1) + basic(f"{n}.branch5x5_1", cin, 48, 1, 1)
                + basic(f"{n}.branch5x5_2", 48, 64, 5, 5) + basic(f"{n}.branch3x3dbl_1", cin, 64, 1, 1)
                + basic(f"{n}.branch3x3dbl_2", 64, 96, 3, 3) + basic(f"{n}.branch3x3dbl_3", 96, 96, 3, 3)
                + basic(f"{n}.branch_pool", cin, pf, 1, 1))

    def c(n, c7):
        return (basic(f"{n}.branch1x1", 768, 192, 1, 1) + basic(f"{n}.branch7x7_1", 768, c7, 1, 1)
                + basic(f"{n}.branch7x7_2", c7, c7, 1, 7) + basic(f"{n}.branch7x7_3", c7, 192, 7, 1)
                + basic(f"{n}.branch7x7dbl_1", 768, c7, 1, 1) + basic(f"{n}.branch7x7dbl_2", c7, c7, 7, 1)
                + basic(f"{n}.branch7x7dbl_3", c7, c7, 1, 7) + basic(f"{n}.branch7x7dbl_4", c7, c7, 7, 1)
                + basic(f"{n}.branch7x7dbl_5", c7, 192, 1, 7) + basic(f"{n}.branch_pool", 768, 192, 1, 1))

    def e(n, cin):
        return (basic(f"{n}.branch1x1", cin, 320, 1, 1) + basic(f"{n}.branch3x3_1", cin, 384, 1, 1)
                + basic(f"{n}.branch3x3_2a", 384, 384, 1, 3) + basic(f"{n}.branch3x3_2b", 384, 384, 3, 1)
                + basic(f"{n}.branch3x3dbl_1", cin, 448, 1, 1) + basic(f"{n}.branch3x3dbl_2", 448, 384, 3, 3)
                + basic(f"{n}.branch3x3dbl_3a", 384, 384, 1, 3) + basic(f"{n}.branch3x3dbl_3b", 384, 384, 3, 1)
                + basic(f"{n}.branch_pool", cin, 192, 1, 1))

    k += a("Mixed_5b", 192, 32) + a("Mixed_5c", 256, 64) + a("Mixed_5d", 288, 64)
    k += (basic("Mixed_6a.branch3x3", 288, 384, 3, 3) + basic("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1)
          + basic("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3) + basic("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3))
    k += c("Mixed_6b", 128) + c("Mixed_6c", 160) + c("Mixed_6d", 160) + c("Mixed_6e", 192)
    k += (basic("Mixed_7a.branch3x3_1", 768, 192, 1, 1) + basic("Mixed_7a.branch3x3_2", 192, 320, 3, 3)
          + basic("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1) + basic("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
          + basic("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1) + basic("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3))
    k += e("Mixed_7b", 1280) + e("Mixed_7c", 2048)
    k.append(("fc.weight", (NUM_CLASSES, 2048)))
    return k


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, t in tensors:
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="pytorch-fid state dict (pt_inception-2015-12-05-6726825d.pth)")
    ap.add_argument("output", help="safetensors file to write")
    args = ap.parse_args()

    with open(args.input, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if not sha.startswith(EXPECTED_SHA256_PREFIX):
        print(f"warning: sha256 {sha[:16]}... does not start with {EXPECTED_SHA256_PREFIX} "
              f"(pytorch-fid's release); converting anyway", file=sys.stderr)
    sd = torch.load(args.input, map_location="cpu")
    if isinstance(sd, torch.nn.Module):
        sd = sd.state_dict()
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]

    dropped = [k for k in sd if k.endswith(".num_batches_tracked") or k == "fc.bias"]
    rest = {k: v for k, v in sd.items() if k not in dropped}
    want = expected_keys()
    errors = []
    if "fc.weight" in rest and tuple(rest["fc.weight"].shape) != (NUM_CLASSES, 2048):
        errors.append(f"fc.weight has shape {list(rest['fc.weight'].shape)}, want [1008, 2048]: these are not "
                      "the FID Inception weights (torchvision's ImageNet Inception has 1000 classes and is a "
                      "different network)")
    for name, shape in want:
        if name not in rest:
            errors.append(f"missing tensor '{name}' (shape {list(shape)})")
        elif tuple(rest[name].shape) != shape:
            errors.append(f"tensor '{name}' has shape {list(rest[name].shape)}, want {list(shape)}")
    names = {n for n, _ in want}
    for k in rest:
        if k not in names:
            errors.append(f"unexpected tensor '{k}' (shape {list(rest[k].shape)})")
    if errors:
        for e in errors[:20]:
            print(f"error: {args.input}: {e}", file=sys.stderr)
        if len(errors) > 20:
            print(f"error: ... {len(errors) - 20} more", file=sys.stderr)
        sys.exit(1)

    tensors = [(n, rest[n]) for n, _ in want]
    meta = {"format": "repae inception v1", "source": os.path.basename(args.input), "source_sha256": sha,
            "dropped": ",".join(sorted({("*.bn.num_batches_tracked" if k.endswith("num_batches_tracked") else k)
                                        for k in dropped})),
            "logits": "pool3 @ fc.weight^T, no bias"}
    write_safetensors(args.output, tensors, meta)
    n = sum(t.numel() for _, t in tensors)
    print(f"{args.output}: {len(tensors)} tensors, {n} floats (dropped {len(dropped)} tensors: "
          f"num_batches_tracked and fc.bias)")


if __name__ == "__main__":
    main()
