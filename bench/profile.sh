#!/bin/sh
# Where one iteration's time goes, ours beside PyTorch's, by op class.
#   sh bench/profile.sh [NAME] [REPS]     (default repae_step_small_plain_B32, 10 timed iterations)
# NAME: a bench_step row (repae_step_small_*) or a bench_models row
# (sit_b2_train_B4, vae_f8d4_train_256_B1, sample_*).
# Ours: `perf record` of the benchmark program (both threads), the samples'
# symbols put into op classes; ms = the class's share of our samples × our
# median iteration time (only the timed iterations are sampled).  Torch:
# dev/ref/bench_torch_models.py profile NAME, torch.profiler's self CPU time
# per op, summed by class (per iteration, mean of 3).  Needs perf and python3-torch; run it on an idle
# machine.  Not part of `make bench`.
set -eu
NAME=${1:-repae_step_small_plain_B32}
REPS=${2:-10}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
case "$NAME" in
    repae_step_*) PROG=bench_step ;;
    *) PROG=bench_models ;;
esac
make -s "$BUILD/bench/$PROG"
DATA="$BUILD/bench/profile-$NAME.data"
# perf starts with its events off; the benchmark switches them on for its
# timed runs only (perf_control in bench/bench_common.h): set-up and warm-up
# are not sampled.
FIFO_DIR=$(mktemp -d)
trap 'rm -rf "$FIFO_DIR"' EXIT
mkfifo "$FIFO_DIR/ctl" "$FIFO_DIR/ack"
OURS=$(BENCH_REPS=$REPS BENCH_PERF_CTL="$FIFO_DIR/ctl" BENCH_PERF_ACK="$FIFO_DIR/ack" \
       perf record -q -F 499 -D -1 --control="fifo:$FIFO_DIR/ctl,$FIFO_DIR/ack" -o "$DATA" \
       "$BUILD/bench/$PROG" "$NAME" 2>/dev/null | awk -v n="$NAME" '$1 == n { print $2 }')
perf report -i "$DATA" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' >"$DATA.txt"
# Which GEMMs are convolutions: the sgemm time by caller (bench/tools/count_calls.c).
gcc -O2 -fopenmp -shared -fPIC bench/tools/count_calls.c -o "$BUILD/bench/libcount_calls.so" -ldl
COUNT_CALLS_OUT="$DATA.gemm" BENCH_REPS=2 LD_PRELOAD="$PWD/$BUILD/bench/libcount_calls.so" \
    "$BUILD/bench/$PROG" "$NAME" >/dev/null 2>&1
CONV_GEMM=$(awk '$1 == "gemm_time" { print $3, $4, $5 }' "$DATA.gemm" | while read -r lib off sec; do
    fn=$(addr2line -f -e "$lib" "$(printf '0x%x' $((off - 1)))" | head -n 1)
    echo "$fn $sec"
done | awk '{ t += $2; if ($1 ~ /conv2d|winograd/) c += $2 } END { printf "%.4f", (t > 0 ? c / t : 0) }')
TORCH=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 "$PYTHON" dev/ref/bench_torch_models.py profile "$NAME" 2 | grep -v "^$NAME ")
"$PYTHON" - "$DATA.txt" "$OURS" "$NAME" "$TORCH" "$CONV_GEMM" <<'PY'
import re, sys
path, ours_ms, name, torch_txt = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
conv_gemm = float(sys.argv[5])  # share of our sgemm time spent in convolutions
# Our symbols -> the same classes as the torch side (dev/ref/bench_torch_models.py).
CLASSES = [
    ("convolution", r"transform_|add_input_gradient|add_weight_gradient|weight_tile|load_padded|segment_pieces|im2col|col2im|fill_bias|conv2d|^b6$|^bt6$|^a6$|^at6$|gather_|scatter_|load_blocks|store_blocks"),
    ("gemm (linear, matmul)", r"sgemm|cblas|^gemm|^micro_kernel|^pack_rows_k_major$|^pack_a_kmajor$|^pack_a_rows$|^pack_b$|^store_tile$|^tile$|^copy_panel$"),
    ("normalisation", r"group_norm|layer_norm|batch_norm|moments|ln_recompute|qk_norm"),
    ("activations", r"silu|gelu|relu|sigmoid"),
    ("attention softmax", r"softmax|attn_|attention"),
    ("optimizer + EMA", r"adamw|grad_global_norm|grad_clip|ema_update"),
    ("memory (copy, fill, cat)", r"memset|memcpy|memmove|clear_page|^zero"),
    ("OpenMP runtime (waiting)", r"libgomp|^GOMP|gomp_"),
]
share = {}
total = 0.0
for line in open(path):
    m = re.match(r"\s*([0-9.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)", line)
    if not m:
        continue
    pct, dso = float(m.group(1)), m.group(2)
    sym = re.sub(r"(\s+-)+\s*$", "", m.group(3)).strip()  # without perf's empty IPC columns ("-  -")
    total += pct
    cls = "other"
    if "libdnnl" in dso or dso.startswith("[JIT]"):  # oneDNN runs our 4x4 convolutions only
        cls = "convolution"
    else:
        for c, rx in CLASSES:
            if re.search(rx, sym) or (c.startswith("OpenMP") and "libgomp" in dso):
                cls = c
                break
    if cls.startswith("gemm"):  # the convolutions' GEMMs count as convolution, as in torch
        share["convolution"] = share.get("convolution", 0.0) + pct * conv_gemm
        pct *= 1.0 - conv_gemm
    share[cls] = share.get(cls, 0.0) + pct
if conv_gemm == 0 and any("micro_kernel" in l for l in open(path)):
    print("note: gemm() ran our own kernel (gemm.h), which count_calls' cblas_sgemm hook does not see: "
          "the convolutions' GEMMs are counted under gemm here, not under convolution as on the torch side")
torch = {}
for line in torch_txt.strip().split("\n"):
    if "\t" in line:
        k, v = line.rsplit("\t", 1)
        torch[k] = float(v)
print(f"{name}: ours {ours_ms:.0f} ms per iteration (median), torch {torch.get('wall (under the profiler)', 0):.0f} ms (under its profiler)")
print()
print("| op class | ours ms | ours % | torch ms | torch % |")
print("|---|---:|---:|---:|---:|")
tt = sum(v for k, v in torch.items() if not k.startswith("wall"))
keys = [c for c, _ in CLASSES] + ["other"]
for k in keys:
    o = share.get(k, 0.0) / total if total else 0
    t = torch.get(k, 0.0)
    print(f"| {k} | {o * ours_ms:.0f} | {100 * o:.0f} | {t:.0f} | {100 * t / tt if tt else 0:.0f} |")
PY
