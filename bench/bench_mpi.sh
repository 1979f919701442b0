#!/bin/sh
# The data-parallel row of `make bench`: `repae train` (REPA-E, small models,
# 1-channel 32x32 Fashion-MNIST, global batch 32) for a fixed number of
# steps as 1 process x 2 OpenMP threads and as 2 MPI ranks x 1 thread, on
# this machine.  Prints steps/s of both and the bytes rank 0 sends per step.
#   BENCH_MPI_STEPS=n   steps per run (default 30)
set -e
BUILD=${BUILD:-build}
BIN="$BUILD/repae"
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not installed: no data-parallel row"; exit 0; }
STEPS=${BENCH_MPI_STEPS:-30}
OUT=$(mktemp -d /tmp/repae_bench_mpi_XXXXXX)
ARGS="--max-images 1024 --batch-size 32 --sit-depth 4 --sit-hidden 128 --sit-heads 4 --vae-ch 32 --projector-dim 256
      --encoder-depth 2 --sampling-steps 0 --checkpointing-steps 0 --max-train-steps $STEPS --output-dir $OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
t0=$(date +%s.%N)
OMP_NUM_THREADS=2 "$BIN" train $ARGS --exp-name one > "$OUT/one.log" 2>&1
t1=$(date +%s.%N)
OMP_NUM_THREADS=1 mpirun -np 2 -x OMP_NUM_THREADS "$BIN" train $ARGS --exp-name two > "$OUT/two.log" 2>&1
t2=$(date +%s.%N)
bytes=$(sed -n 's/.*processes, \([0-9]*\) bytes sent per step.*/\1/p' "$OUT/two.log")
# The training loop alone ("train: done in S s", from its first step to its
# last): without the launch (mpirun starts two processes and connects them),
# loading the data and building the models, which are fixed costs.
loop_one=$(sed -n 's/^train: done in \([0-9.]*\) s.*/\1/p' "$OUT/one.log")
loop_two=$(sed -n 's/^train: done in \([0-9.]*\) s.*/\1/p' "$OUT/two.log")
awk -v a="$t0" -v b="$t1" -v c="$t2" -v s="$STEPS" -v by="$bytes" -v l1="$loop_one" -v l2="$loop_two" 'BEGIN {
    one = s / (b - a); two = s / (c - b);
    printf "data parallel, repae train (small), %d steps incl. start-up:\n", s;
    printf "  1 process x 2 threads: %.2f steps/s\n  2 ranks x 1 thread:    %.2f steps/s (%.2fx)\n", one, two, two / one;
    if (l1 > 0 && l2 > 0)
        printf "  training loop alone:   %.2f vs %.2f steps/s (%.2fx)\n", s / l1, s / l2, l1 / l2;
    printf "  bytes sent per step by rank 0: %.1f MB\n", by / 1e6 }'
rm -rf "$OUT"
