#!/bin/sh
# make bench: PyTorch first (2 threads, passive waiting, as the project
# compares on this 2-core machine), then ours with the torch numbers beside.
set -e
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p "$BUILD/bench"
uname -m; grep -m1 'model name' /proc/cpuinfo || true; echo "cores: $(nproc)"
if "$PYTHON" -c 'import torch' 2>/dev/null; then
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 "$PYTHON" dev/ref/bench_torch.py 2 > "$BUILD/bench/torch.txt"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__)'
else
    echo "python3-torch not installed (scripts/setup.sh --dev): no ratios" ; : > "$BUILD/bench/torch.txt"
fi
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] && "$b" "$BUILD/bench/torch.txt"
done
