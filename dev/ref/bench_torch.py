"""PyTorch 1.13 timings for the shapes bench/bench_ops.c measures.

Prints "name milliseconds -1 others_percent spread_percent" lines (median
of the same number of runs as the C side, after one warm-up; -1: no
per-kernel peak RSS; others_percent: share of all cores' time used by
OTHER processes during the timed runs; spread_percent: (slowest - fastest)
/ median).  BENCH_REPS overrides the repetitions.  Run by `make bench` with
2 threads and OMP_WAIT_POLICY=PASSIVE, as the project compares on this
2-core machine.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


def _cpu_snap():
    """(wall s, busy ticks of all cores, this process's ticks) from /proc (None if unreadable)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        with open("/proc/self/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return time.perf_counter(), busy, int(rest[11]) + int(rest[12])  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


def _others_percent(a, b):
    """Share (%) of all cores' time between snapshots a and b used by OTHER processes, -1 if unknown."""
    if a is None or b is None or b[0] <= a[0]:
        return -1.0
    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_NPROCESSORS_ONLN")
    return max(0.0, 100.0 * ((b[1] - a[1]) - (b[2] - a[2])) / (hz * ncpu * (b[0] - a[0])))


OTHERS = [-1.0]
SPREAD = [-1.0]


def median_ms(fn, reps):
    r = os.environ.get("BENCH_REPS", "")
    reps = max(1, int(r)) if r else reps
    fn()
    ts = []
    c0 = _cpu_snap()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    OTHERS[0] = _others_percent(c0, _cpu_snap())
    ts.sort()
    SPREAD[0] = 100.0 * (ts[-1] - ts[0]) / ts[len(ts) // 2] if len(ts) > 1 else -1.0
    return ts[reps // 2]


def report(name, ms):
    print(f"{name} {ms:.4f} -1 {OTHERS[0]:.1f} {SPREAD[0]:.1f}", flush=True)


def bench_gemm(M, N, K):
    a, b = torch.randn(M, K), torch.randn(N, K)
    report(f"gemm_{M}x{N}x{K}", median_ms(lambda: torch.mm(a, b.t()), 9))


def bench_conv3x3(B, C, H):
    x = torch.randn(B, C, H, H, requires_grad=True)
    w = torch.randn(C, C, 3, 3, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    g = torch.randn(B, C, H, H)

    def run():
        y = F.conv2d(x, w, b, padding=1)
        y.backward(g)
        x.grad = w.grad = b.grad = None

    report(f"conv3x3_fwd_bwd_B{B}_C{C}_{H}", median_ms(run, 5))


def bench_conv4x4(B, Cin, Cout, H, stride):
    x = torch.randn(B, Cin, H, H, requires_grad=True)
    w = torch.randn(Cout, Cin, 4, 4, requires_grad=True)
    b = torch.randn(Cout, requires_grad=True)
    g = torch.randn(B, Cout, (H + 2 - 4) // stride + 1, (H + 2 - 4) // stride + 1)

    def run():
        y = F.conv2d(x, w, b, stride=stride, padding=1)
        y.backward(g)
        x.grad = w.grad = b.grad = None

    report(f"conv4x4s{stride}_fwd_bwd_B{B}_C{Cin}to{Cout}_{H}", median_ms(run, 7))


def bench_groupnorm_silu(B, C, H):
    x = torch.randn(B, C, H, H, requires_grad=True)
    w = torch.randn(C, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    g = torch.randn(B, C, H, H)

    def run():
        y = F.silu(F.group_norm(x, 32, w, b, 1e-6))
        y.backward(g)
        x.grad = w.grad = b.grad = None

    report(f"groupnorm_silu_fwd_bwd_B{B}_C{C}_{H}", median_ms(run, 9))


def bench_attention(B, T, NH, HD):
    D = NH * HD
    qkv = torch.randn(B, T, 3 * D, requires_grad=True)
    g = torch.randn(B, T, D)

    def run():
        q, k, v = qkv.reshape(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1)) * HD ** -0.5
        y = (a.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        y.backward(g)
        qkv.grad = None

    report(f"attention_fwd_bwd_B{B}_T{T}_D{D}_H{NH}", median_ms(run, 7))


bench_gemm(1024, 1024, 1024)
bench_gemm(1024, 3072, 768)
bench_conv3x3(4, 128, 64)
bench_conv3x3(32, 64, 32)
bench_conv3x3(32, 128, 8)
bench_conv4x4(32, 3, 64, 32, 2)  # the PatchGAN discriminator (ndf 64, n_layers 3)
bench_conv4x4(32, 64, 128, 16, 2)
bench_conv4x4(32, 128, 256, 8, 2)
bench_conv4x4(32, 256, 512, 4, 1)
bench_conv4x4(32, 512, 1, 3, 1)
bench_groupnorm_silu(4, 128, 64)
bench_attention(4, 256, 12, 64)
