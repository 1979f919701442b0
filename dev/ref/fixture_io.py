"""Writes test fixtures as safetensors files, without the safetensors package.

Every reference script in dev/ref/ uses this so that all fixtures follow one
convention (see docs/testing.md):
  * module parameters under their PyTorch state-dict keys,
  * inputs and outputs under plain names (x, t, y, out, ...),
  * gradients as grad.<name> (grad.x, grad.weight, ...), the output cotangent
    as cot (or cot.<output name>),
  * __metadata__ with the script name, its seed and the torch version.
Tensors are stored as float32 (int64 for integer tensors).
"""
import json
import os
import struct

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures")


def _as_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype in (torch.float64, torch.float16, torch.bfloat16):
        t = t.float()
    if t.dtype in (torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool) and t.dtype != torch.uint8:
        t = t.long()
    dtype = {torch.float32: "F32", torch.int64: "I64", torch.uint8: "U8"}[t.dtype]
    return dtype, list(t.shape), t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor, written in insertion order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        dtype, shape, data = _as_bytes(t)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        dt = {"F32": torch.float32, "I64": torch.int64, "U8": torch.uint8}[e["dtype"]]
        out[name] = torch.frombuffer(bytearray(data[b:en]), dtype=dt).reshape(e["shape"]).clone()
    return out


def save_fixture(name, tensors, script, seed, **extra_meta):
    """Writes tests/fixtures/<name>.safetensors with the standard metadata."""
    os.makedirs(os.path.dirname(os.path.join(FIXTURE_DIR, name)), exist_ok=True)
    meta = {"script": os.path.basename(script), "seed": seed, "torch": torch.__version__}
    meta.update(extra_meta)
    path = os.path.join(FIXTURE_DIR, name + ".safetensors")
    write_safetensors(path, tensors, meta)
    return path
