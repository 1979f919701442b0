#!/bin/sh
# make bench: our kernels, models and training step next to PyTorch 1.13 on
# the same shapes, in the same run, ending with one table:
#   name, ours ms, torch ms, ratio (= torch / ours, > 1: we are faster),
#   our peak RSS MiB, torch peak RSS MiB, others%, spread%, note.
# PyTorch runs with 2 threads and OMP_WAIT_POLICY=PASSIVE, ours with the
# default OpenMP threads; OPENBLAS_* settings of the environment are left as
# they are for both.  Kernels: all torch first, then ours (one process each
# side).  Models and steps: one process per benchmark and side (so the peak
# RSS is that benchmark's), torch then ours, next to each other in time.
#
# Columns others% and spread% are "ours/torch": the share of all cores' time
# that OTHER processes used during the timed runs, and (slowest − fastest) /
# median of the timed runs.  See BENCHMARKS.md for the reading; the row
# host_steadiness_gemm_x60 (before and after the models) is a control whose
# work cannot vary, so its spread is the host's.
# Disturbance: a model or step benchmark where either exceeds BENCH_MAX_OTHERS percent is
# run again (both sides), up to BENCH_RETRIES times, each time after waiting
# (at most BENCH_WAIT seconds) for a 5-second window in which the machine
# is that quiet; the row then says which try it is.  Kernel rows are not
# retried.
#
# Environment:
#   BENCH_QUICK=1        skip the slowest (VAE f8d4 256², SiT-B/2 sampling)
#   BENCH_MAX_OTHERS=p   disturbance threshold in percent (default 15)
#   BENCH_RETRIES=n      reruns of a disturbed benchmark (default 2)
#   BENCH_WAIT=s         longest wait for a quiet machine before a rerun (default 120)
#   BENCH_ONLY="a b"     run only these model/step benchmarks (and no kernels)
#   BENCH_REPS=n         timed runs after the warm-up, for every benchmark
#   BENCH_SAMPLE_BATCH=n images per sampling run (default 1; CFG doubles it)
#   BENCH_PAPER=1        also the REPA-E step at the paper's scale (repae_step_sitb2_256_B2:
#                        ~7 min, torch ~70 s a step; `make bench-paper` runs it alone)
set -e
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT="$BUILD/bench"
mkdir -p "$OUT"
TORCH="$OUT/torch.txt"
OURS="$OUT/ours.txt"
TABLE="$OUT/table.txt"
ROW="$OUT/row.txt"
MAX_OTHERS=${BENCH_MAX_OTHERS:-15}
RETRIES=${BENCH_RETRIES:-2}
WAIT=${BENCH_WAIT:-120}
: > "$TORCH"
: > "$OURS"
: > "$TABLE"

echo "== machine"
uname -m
grep -m1 'model name' /proc/cpuinfo || true
echo "cores: $(nproc), memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
# Topology and caches: whether the two vCPUs are two cores or one core's two
# hyperthreads changes what two threads can gain (and our GEMM's blocking
# assumes L1d/L2 sizes; BENCHMARKS.md names the host they were tuned on).
lscpu 2>/dev/null | grep -E '^(Vendor ID|CPU family|Model|Thread\(s\) per core|Core\(s\) per socket|L1d cache|L2 cache|L3 cache):' |
    sed 's/  */ /g' | paste -sd';' - || true
echo "OpenMP threads (ours): ${OMP_NUM_THREADS:-default ($(nproc))}"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"

have_torch=0
if "$PYTHON" -c 'import torch' 2>/dev/null; then
    have_torch=1
    "$PYTHON" -c 'import torch; print("torch", torch.__version__)'
else
    echo "python3-torch not installed (scripts/setup.sh --dev): no ratios"
fi

torch_run() { # script name...
    [ $have_torch = 1 ] || return 0
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 "$PYTHON" "$@" 2 >> "$TORCH" ||
        echo "warning: torch benchmark $* failed" >&2
}

load() { cut -d' ' -f1 /proc/loadavg; }

if [ -z "$BENCH_ONLY" ]; then
    echo "== kernels (load $(load))"
    torch_run dev/ref/bench_torch.py
    BENCH_TABLE="$TABLE" BENCH_OURS="$OURS" "$OUT/bench_ops" "$TORCH"
fi

# others' CPU percent of the latest line for $2 in file $1 (-1 if none)
others_of() { awk -v n="$2" '$1 == n { o = $4 } END { print (o == "" ? -1 : o) }' "$1"; }

# busy percent of the whole machine over the next 5 seconds
busy5() {
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 5
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    echo "$a $b" | awk '{ d = $4 - $2; print (d > 0 ? int(100 * ($3 - $1) / d) : 0) }'
}

# waits (at most $WAIT s) until the machine is below MAX_OTHERS percent busy
wait_quiet() {
    waited=0
    while [ $waited -lt "$WAIT" ]; do
        p=$(busy5)
        waited=$((waited + 5))
        [ "$p" -lt "$MAX_OTHERS" ] && break
    done
    echo "   waited ${waited}s for a quiet machine (last 5 s: ${p}% busy)"
}

models=$("$OUT/bench_models" --list)
steps=$("$OUT/bench_step" --list)
if [ -n "$BENCH_PAPER" ] && [ "$BENCH_PAPER" != 0 ]; then
    steps="$steps $("$OUT/bench_step" --list-extra)"
fi
# The control row (host_steadiness_gemm_x60, first of bench_models' list:
# identical GEMMs whose spread is the host's own) once more at the end, so
# that the model and step rows are bracketed by two readings of the host.
for name in $models $steps host_steadiness_gemm_x60; do
    if [ -n "$BENCH_ONLY" ]; then
        case " $BENCH_ONLY " in *" $name "*) ;; *) continue ;; esac
    elif [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; then
        case $name in vae_f8d4_*|sample_*) echo "== $name: skipped (BENCH_QUICK)"; continue ;; esac
    fi
    case $name in repae_step_*) prog=bench_step ;; *) prog=bench_models ;; esac
    try=1
    while :; do
        echo "== $name (load $(load)$( [ $try -gt 1 ] && echo ", try $try"))"
        torch_run dev/ref/bench_torch_models.py "$name"
        : > "$ROW"
        BENCH_TABLE="$ROW" BENCH_OURS="$OURS" "$OUT/$prog" "$name" "$TORCH" || echo "warning: $prog $name failed" >&2
        o=$(others_of "$OURS" "$name")
        t=$(others_of "$TORCH" "$name")
        if [ $try -le "$RETRIES" ] && awk -v a="$o" -v b="$t" -v m="$MAX_OTHERS" 'BEGIN { exit !(a > m || b > m) }'; then
            echo "   disturbed: other processes used ${o}% (ours) / ${t}% (torch) of the CPU; rerunning"
            wait_quiet
            try=$((try + 1))
            continue
        fi
        break
    done
    if [ $try -gt 1 ]; then
        sed "s/\$/ [try $try]/" "$ROW" >> "$TABLE"
    else
        cat "$ROW" >> "$TABLE"
    fi
done

echo
echo "== repae vs PyTorch $( [ $have_torch = 1 ] && "$PYTHON" -c 'import torch; print(torch.__version__)' ) (ratio = torch time / our time; > 1: we are faster; RSS = peak resident MiB)"
printf '%-34s %11s %11s %7s %9s %9s %7s %7s  %s\n' name "ours ms" "torch ms" ratio "ours MiB" "torch MiB" others% spread% note
cat "$TABLE"

if [ -z "$BENCH_ONLY" ]; then
    echo
    echo "== data parallel (load $(load))"
    BUILD="$BUILD" sh bench/bench_mpi.sh
fi
