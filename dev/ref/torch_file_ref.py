"""PyTorch .pt/.pth fixtures for the native reader (src/io/torch_file.c), torch 1.13.

Writes tests/fixtures/io/:
  pt_tensors_zip.pt, pt_tensors_legacy.pt  the same dict in both container formats:
      f32 f64 f16 bf16 i64 i32 i16 i8 u8 bool tensors (f16/bf16 specials included),
      a 0-d scalar, an empty [0, 3], a transposed (non-contiguous) tensor, a strided
      slice with a storage offset, two overlapping views of one storage, nested
      dicts and a list, and non-tensor leaves (int, str, float, bool, list);
  pt_tensors_zip_p{3,4,5}.pt, pt_tensors_legacy_p4.pt  the same dict pickled with
      protocols 3 to 5 (torch.save's pickle_protocol; its default is 2);
  pt_tensors_expected.safetensors  every tensor of that dict made contiguous (floats
      as F32, integers as I64, U8 as U8), metadata "dtypes" = JSON {name: dtype};
  pt_checkpoint.pt  a dict saved the way train_repae.py saves it (spec §6.3):
      model, ema (differs from model), vae, discriminator, opt/opt_vae/opt_disc
      (real AdamW state dicts after one step), args (argparse.Namespace), steps;
  pt_checkpoint_ref.safetensors  model./ema./vae./discriminator. tensors of the same
      checkpoint (the C test checks the .pt equals it bit for bit), metadata args;
  pt_latents_stats.pt  {latents_scale, latents_bias} of shape [1, 4, 1, 1];
  evil_*.pt  pickles calling os.system / builtins.eval / torch.storage._load_from_bytes
      (zip and legacy); each would create /tmp/repae_pt_pwned_marker if executed.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR, write_safetensors  # noqa: E402
from repae_ref.sit import SiT  # noqa: E402
from repae_ref.vae import AutoencoderKL  # noqa: E402
from repae_ref.vae_loss import NLayerDiscriminator  # noqa: E402

SEED = 11
OUT = os.path.join(FIXTURE_DIR, "io")
MARKER = "/tmp/repae_pt_pwned_marker"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(SEED)


def path(name):
    return os.path.join(OUT, name)


# ---- every dtype and layout ----------------------------------------------------
big = torch.arange(40, dtype=torch.float32).reshape(5, 8) / 4 - 3
shared = torch.arange(10, dtype=torch.float32) * 0.5
d = OrderedDict()
d["f32"] = torch.randn(2, 3)
d["f64"] = torch.randn(3, dtype=torch.float64)
d["f16"] = torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -24, float("inf"), -0.0], dtype=torch.float16)
d["bf16"] = torch.tensor([1.0, -3.140625, 2.0 ** -126, 3.0e38, float("-inf")], dtype=torch.bfloat16)
d["i64"] = torch.tensor([-3, 0, 2 ** 40, -2 ** 62], dtype=torch.int64)
d["i32"] = torch.tensor([-2 ** 31, 7, 2 ** 31 - 1], dtype=torch.int32)
d["i16"] = torch.tensor([-32768, 1, 32767], dtype=torch.int16)
d["i8"] = torch.tensor([-128, -1, 127], dtype=torch.int8)
d["u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
d["bool"] = torch.tensor([True, False, True, True])
d["scalar"] = torch.tensor(3.5)
d["empty"] = torch.zeros(0, 3)
d["transposed"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
d["sliced"] = big[1:4, 2::3]            # storage offset 10, strides (8, 3)
d["shared_a"] = shared[:6].view(2, 3)  # two overlapping views of one storage
d["shared_b"] = shared[4:]
d["nested"] = {"inner": {"w": torch.tensor([[1.0, 2.0]])}, "list": [torch.tensor([5.0]), torch.tensor([6, 7])]}
d["meta_int"] = 7
d["meta_str"] = "hello"
d["meta_float"] = 0.25
d["meta_bool"] = True
d["meta_list"] = [1, 2, 3]
assert not d["transposed"].is_contiguous() and not d["sliced"].is_contiguous()
assert d["sliced"].storage_offset() == 10

torch.save(d, path("pt_tensors_zip.pt"))
torch.save(d, path("pt_tensors_legacy.pt"), _use_new_zipfile_serialization=False)
# torch.save's default pickle is protocol 2; other tools save with 3 to 5
# (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE): the same dict in each.
for proto in (3, 4, 5):
    torch.save(d, path(f"pt_tensors_zip_p{proto}.pt"), pickle_protocol=proto)
torch.save(d, path("pt_tensors_legacy_p4.pt"), _use_new_zipfile_serialization=False, pickle_protocol=4)


def flat(prefix, v, out):
    if isinstance(v, torch.Tensor):
        out[prefix] = v
    elif isinstance(v, dict):
        for k, x in v.items():
            flat(f"{prefix}.{k}" if prefix else str(k), x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            flat(f"{prefix}.{i}", x, out)


tensors = OrderedDict()
flat("", d, tensors)
names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
         torch.bool: "BOOL"}
dtypes = {k: names[t.dtype] for k, t in tensors.items()}
write_safetensors(path("pt_tensors_expected.safetensors"), tensors,
                  {"script": "torch_file_ref.py", "seed": SEED, "torch": torch.__version__,
                   "dtypes": json.dumps(dtypes)})

# ---- a train_repae.py-style checkpoint (tiny models) ---------------------------
VAE = dict(ch=4, ch_mult=[1, 2], num_res_blocks=1, z_channels=4, attn_resolutions=[], resolution=16,
           in_channels=3, out_ch=3, norm_groups=2)
SIT = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=1, num_heads=2, mlp_ratio=2.0,
           class_dropout_prob=0.1, num_classes=4, encoder_depth=1, projector_dim=16, z_dims=[8],
           qk_norm=False, bn_momentum=0.1)
vae = AutoencoderKL(**VAE)
sit = SiT(**SIT)
disc = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=1)
with torch.no_grad():
    sit.init_bn(torch.randn(4) * 0.3, torch.rand(4) + 0.5)
    # The zero-initialised final layer and adaLN would make the velocity 0, so samples would not depend on the
    # SiT at all: give them values (from their own generator, leaving the global stream as it was).
    g = torch.Generator().manual_seed(SEED + 100)
    for name, p in sit.named_parameters():
        if "final_layer" in name or "adaLN" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
ema = SiT(**SIT)
ema.load_state_dict(sit.state_dict())
opts = []
for m in (sit, vae, disc):
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    loss = sum((p.float() ** 2).sum() * (i + 1) for i, p in enumerate(m.parameters()) if p.requires_grad)
    loss.backward()
    opt.step()
    opts.append(opt)
with torch.no_grad():  # EMA after the step: differs from the model
    for pe, pm in zip(ema.parameters(), sit.parameters()):
        pe.mul_(0.5).add_(pm, alpha=0.5)

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="custom")
parser.add_argument("--sit-heads", type=int, default=2)
parser.add_argument("--vae", default="custom")
parser.add_argument("--vae-norm-groups", type=int, default=2)
parser.add_argument("--encoder-depth", type=int, default=1)
parser.add_argument("--cfg-prob", type=float, default=0.1)
parser.add_argument("--qk-norm", action="store_true")
parser.add_argument("--num-classes", type=int, default=4)
parser.add_argument("--resolution", type=int, default=16)
parser.add_argument("--enc-type", default="dinov2-vit-b")
parser.add_argument("--proj-coeff", type=float, default=0.5)
parser.add_argument("--bn-momentum", type=float, default=0.1)
parser.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.999])
parser.add_argument("--vae-ckpt", default=None)
args = parser.parse_args([])
ckpt = {
    "model": sit.state_dict(),
    "ema": ema.state_dict(),
    "vae": vae.state_dict(),
    "discriminator": disc.state_dict(),
    "opt": opts[0].state_dict(),
    "opt_vae": opts[1].state_dict(),
    "opt_disc": opts[2].state_dict(),
    "args": args,
    "steps": 400000,
}
torch.save(ckpt, path("pt_checkpoint.pt"))
ref = OrderedDict()
for prefix in ("model", "ema", "vae", "discriminator"):
    for k, v in ckpt[prefix].items():
        ref[f"{prefix}.{k}"] = v
first = sorted(ckpt["opt"]["state"])[0]  # pos_embed (frozen) has no state
for k, v in ckpt["opt"]["state"][first].items():
    ref[f"opt.state.{first}.{k}"] = v
write_safetensors(path("pt_checkpoint_ref.safetensors"), ref,
                  {"script": "torch_file_ref.py", "seed": SEED, "torch": torch.__version__,
                   "args": json.dumps(vars(args))})

torch.save({"latents_scale": (torch.rand(4) + 0.5).view(1, 4, 1, 1),
            "latents_bias": torch.randn(4).view(1, 4, 1, 1)}, path("pt_latents_stats.pt"))


# ---- malicious pickles ------------------------------------------------------------
class EvilSystem:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class EvilEval:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {MARKER}')",))


class EvilLoad:
    def __reduce__(self):
        import torch.storage
        return (torch.storage._load_from_bytes, (b"not a real pickle",))


torch.save({"w": torch.zeros(2), "x": EvilSystem()}, path("evil_system.pt"))
torch.save({"w": torch.zeros(2), "x": EvilEval()}, path("evil_eval.pt"))
torch.save({"w": torch.zeros(2), "x": EvilLoad()}, path("evil_load_from_bytes.pt"))
torch.save({"x": EvilSystem(), "w": torch.zeros(2)}, path("evil_system_legacy.pt"),
           _use_new_zipfile_serialization=False)
total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
print(f"wrote {len(os.listdir(OUT))} files to {OUT}, {total} bytes")
