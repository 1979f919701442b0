"""Writes the seed inputs of the fuzz corpus, fuzz/corpus/<target>/seed_*:
small well-formed files of every format the harnesses read (plus a few
near-misses), so each fuzzer starts from valid structure.  Deterministic.
JPEG seeds are not written here (no encoder in the standard library); they
were made once with libjpeg (see docs/testing.md) and are kept as they are.

    /usr/bin/python3 dev/ref/fuzz_seeds_ref.py      (make fixtures runs it)
"""
import gzip
import io
import json
import os
import struct
import zlib

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header, off, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(a):
    return np.asarray(a, dtype="<f4").tobytes()


def png(width, height, color_type, bit_depth, rows, extra_chunks=b""):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra_chunks + chunk(b"IDAT", zlib.compress(raw)) + \
        chunk(b"IEND", b"")


def main():
    rng = np.random.default_rng(12)
    # safetensors: every dtype the reader converts, metadata, an empty tensor.
    put("safetensors", "dtypes", safetensors([
        ("a.f32", "F32", (2, 3), f32(rng.standard_normal(6))),
        ("b.f16", "F16", (4,), np.asarray([1, -2, 0.5, 65504], "<f2").tobytes()),
        ("c.bf16", "BF16", (2,), struct.pack("<HH", 0x3F80, 0xC000)),
        ("d.f64", "F64", (2,), np.asarray([1e-3, 7], "<f8").tobytes()),
        ("e.i64", "I64", (3,), np.asarray([0, -1, 5], "<i8").tobytes()),
        ("empty", "F32", (0, 4), b""),
    ], {"format": "pt", "config": "{\"heads\": 2}"}))
    put("safetensors", "scalar", safetensors([("s", "F32", (), f32([3.5]))]))
    # latent cache: mean, std, labels and the format tag.
    n, c, h, w = 3, 2, 2, 2
    put("latent_cache", "cache", safetensors([
        ("mean", "F32", (n, c, h, w), f32(rng.standard_normal(n * c * h * w))),
        ("std", "F32", (n, c, h, w), f32(rng.uniform(0.1, 1, n * c * h * w))),
        ("labels", "I64", (n,), np.asarray([0, 2, 1], "<i8").tobytes()),
    ], {"format": "repae-latent-cache", "vae": "v.safetensors", "source": "s", "num_classes": "3"}))
    # npz: numpy's stored and deflated archives, several dtypes, a bare .npy.
    for name, saver in (("stored", np.savez), ("deflated", np.savez_compressed)):
        b = io.BytesIO()
        saver(b, arr_0=rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
              mu=rng.standard_normal(3), sigma=np.eye(3, dtype="<f4"), fortran=np.asfortranarray(np.ones((2, 2))))
        put("npz", name, b.getvalue())
    b = io.BytesIO()
    np.save(b, np.arange(6, dtype="<f8").reshape(2, 3))
    put("npz", "bare_npy", b.getvalue())
    # IDX: images and labels, plain and gzipped.
    imgs = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 3, 3) + bytes(range(18))
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 2) + bytes([1, 9])
    put("idx", "images", imgs)
    put("idx", "labels", labels)
    put("idx", "images_gz", gzip.compress(imgs, mtime=0))
    # shard: REPAESHD, version 1, N C H W classes, pixels, int32 labels.
    put("shard", "two", b"REPAESHD" + struct.pack("<6I", 1, 2, 1, 2, 3, 4) + bytes(range(12)) +
        struct.pack("<2i", 0, 3))
    # metrics.jsonl: numbers, null, "nan", a legacy bare nan, a blank line, eval-only keys.
    put("metrics", "run", b'{"step": 1, "loss": 0.5, "sit_loss": 0.25, "vae_loss": 1e-3}\n'
        b'{"step": 2, "loss": null, "sit_loss": "nan"}\n\n'
        b'{"step": 3, "loss": nan, "vae_loss": -inf, "psnr": 20.5}\n'
        b'{"step": 4, "loss": 0.125, "note": "a string: nan"}\n')
    put("metrics", "no_step", b'{"loss": 1}\n{"loss": 2}\n')
    # labels: a list file with commas, spaces and newlines.
    put("labels", "file", b"0,1, 2\n3 4\t5\r\n")
    put("labels", "floats", f32([0.0, -1.5, 3.25, 1e30]))
    # images: PNG grey, RGB, palette with tRNS, 16-bit, grey+alpha, interlaced-free.
    put("image", "grey.png", png(3, 2, 0, 8, [bytes([0, 128, 255]), bytes([1, 2, 3])]))
    put("image", "rgb.png", png(2, 2, 2, 8, [bytes(range(6)), bytes(range(6, 12))]))
    plte = struct.pack(">I", 6) + b"PLTE" + bytes([255, 0, 0, 0, 0, 255])
    plte += struct.pack(">I", zlib.crc32(b"PLTE" + bytes([255, 0, 0, 0, 0, 255])) & 0xFFFFFFFF)
    trns = struct.pack(">I", 1) + b"tRNS" + b"\x80" + struct.pack(">I", zlib.crc32(b"tRNS\x80") & 0xFFFFFFFF)
    put("image", "palette.png", png(2, 1, 3, 8, [bytes([0, 1])], plte + trns))
    put("image", "rgb16.png", png(1, 1, 2, 16, [bytes(6)]))
    put("image", "grey_alpha.png", png(2, 1, 4, 8, [bytes([10, 255, 20, 0])]))
    # options: argv split on NUL bytes.
    put("options", "all", b"--int\x007\x00--big=123\x00--real\x000.25\x00--name\x00x\x00--mode=sde\x00--flag\x00pos")
    put("options", "bad", b"--int\x00999999\x00--flag=maybe")


if __name__ == "__main__":
    main()
