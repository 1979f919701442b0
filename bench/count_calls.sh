#!/bin/sh
# Counts, per training step, the OpenMP parallel regions that fork and the
# sgemm calls of a bench_step row, by call site (bench/tools/count_calls.c).
#   sh bench/count_calls.sh [ROW] [TOP]     (default repae_step_small_plain_B32, 25 sites)
# Runs the row with 1 and with 3 timed repetitions and prints the difference
# / 2, so that set-up and the warm-up step cancel out.
# Where gemm() runs our own kernels (src/ops/gemm.h) there are no
# cblas_sgemm calls to count; its forks show as parallel regions of
# gemm_packed (src/ops/gemm_packed.c).
set -eu
ROW=${1:-repae_step_small_plain_B32}
TOP=${2:-25}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
make -s "$BUILD/bench/bench_step"
gcc -O2 -fopenmp -shared -fPIC bench/tools/count_calls.c -o "$BUILD/bench/libcount_calls.so" -ldl
for reps in 1 3; do
    COUNT_CALLS_OUT="$BUILD/bench/count_calls.$reps.txt" BENCH_REPS=$reps \
        LD_PRELOAD="$PWD/$BUILD/bench/libcount_calls.so" "$BUILD/bench/bench_step" "$ROW" >/dev/null
done
"$PYTHON" - "$BUILD/bench/count_calls.1.txt" "$BUILD/bench/count_calls.3.txt" "$TOP" <<'PY'
import collections, subprocess, sys
def load(path):
    totals, sites = {}, collections.Counter()
    for line in open(path):
        f = line.split()
        if len(f) == 2:
            totals[f[0]] = int(f[1])
        elif f[0] != "gemm_time":
            sites[(f[0], f[2], f[3])] += int(f[1])
    return totals, sites
(t1, s1), (t3, s3) = load(sys.argv[1]), load(sys.argv[2])
def where(lib, off):
    if "repae" in lib or "bench" in lib:
        out = subprocess.run(["addr2line", "-f", "-e", lib, hex(int(off, 16) - 1)], capture_output=True, text=True).stdout.split("\n")
        return "%s (%s)" % (out[0], out[1].split("/")[-1])
    return lib.split("/")[-1]
per = collections.Counter()
for (kind, lib, off), n in s3.items():
    d = (n - s1.get((kind, lib, off), 0)) / 2
    if d > 0:
        per[(kind, where(lib, off))] += d
forks = sum(n for (k, _), n in per.items() if k == "fork")
print("per step: %d forking parallel regions, %d sgemm calls (%d outside our parallel regions)" % (
    forks, (t3["sgemm_total"] - t1["sgemm_total"]) / 2, (t3["sgemm_outside_parallel"] - t1["sgemm_outside_parallel"]) / 2))
for kind, title in (("fork", "forks by site"), ("gemm_site", "sgemm calls outside parallel regions, by caller")):
    print("\n" + title + ":")
    rows = sorted(((n, name) for (k, name), n in per.items() if k == kind), reverse=True)
    for n, name in rows[:int(sys.argv[3])]:
        print("%8d  %s" % (n, name))
PY
