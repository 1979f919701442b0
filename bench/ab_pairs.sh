#!/bin/sh
# Is B faster than A?  Alternating whole processes, on a noisy host.
#   sh bench/ab_pairs.sh REV_A REV_B [ROW] [PAIRS]
# REV_A, REV_B: git revisions (a commit, a branch, HEAD~1) or "." for the
# working tree as it is.  ROW: a bench_step or bench_models row (default
# repae_step_small_plain_B32).  PAIRS: how many pairs (default 6).
# A commit is built in its own git worktree, build-ab/src-<hash>/ (kept for
# the next call; `git worktree remove` when done), "." in build/;
# then A, B, B, A, A, B, ... (pairs alternate which side runs first), each
# run as its own process with BENCH_REPS timed runs (default 5); printed:
# the medians of the per-process times with their ratio A/B (> 1: B is
# faster), and the median of the pairs' own ratios.
#
# Why processes and not one process that switches code paths every step
# (session 12): alternating oneDNN and im2col inside one process gave the
# discriminator a 1.12x that whole processes did not show; the two paths
# disturb each other's caches and thread state.  Why pairs: on a shared
# 2-vCPU host the same binary's step time moved 556-793 ms within minutes,
# so A and B must see the same minutes.  Not part of `make bench`.
set -eu
[ $# -ge 2 ] || { echo "usage: sh bench/ab_pairs.sh REV_A REV_B [ROW] [PAIRS]" >&2; exit 2; }
A=$1
B=$2
ROW=${3:-repae_step_small_plain_B32}
PAIRS=${4:-6}
REPS=${BENCH_REPS:-5}
ROOT=$(pwd)
case $ROW in repae_step_*) PROG=bench_step ;; *) PROG=bench_models ;; esac

# build_rev REV: the benchmark program of REV, built; prints its path
build_rev() {
    rev=$1
    if [ "$rev" = . ]; then
        make -s "build/bench/$PROG" >&2
        echo "$ROOT/build/bench/$PROG"
        return
    fi
    src="$ROOT/build-ab/src-$(git rev-parse --short "$rev")"
    [ -d "$src" ] || git worktree add -q --detach "$src" "$rev" >&2
    (cd "$src" && make -s "build/bench/$PROG" >&2)
    echo "$src/build/bench/$PROG"
}

mkdir -p build-ab
PA=$(build_rev "$A")
PB=$(build_rev "$B")
{ "$PA" --list; [ $PROG = bench_step ] && "$PA" --list-extra; } | grep -qx "$ROW" || { echo "ab_pairs: no row '$ROW' in $PROG" >&2; exit 2; }

time_of() { BENCH_REPS=$REPS "$1" "$ROW" | awk -v r="$ROW" '$1 == r { print $2 }'; }
TA=""
TB=""
RATIOS=""
i=0
while [ $i -lt "$PAIRS" ]; do
    # A first in even pairs, B first in odd ones: whichever side a process
    # slot favours (the second of two runs in a row, say), both get it.
    if [ $((i % 2)) -eq 0 ]; then
        ta=$(time_of "$PA")
        tb=$(time_of "$PB")
    else
        tb=$(time_of "$PB")
        ta=$(time_of "$PA")
    fi
    TA="$TA $ta"
    TB="$TB $tb"
    RATIOS="$RATIOS $(echo "$ta $tb" | awk '{ printf "%.4f", $1 / $2 }')"
    i=$((i + 1))
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
MA=$(median $TA)
MB=$(median $TB)
echo "$ROW, $PAIRS pairs of processes, $REPS timed runs each (ms, per-process medians):"
echo "  A $A:$TA  -> median $MA"
echo "  B $B:$TB  -> median $MB"
echo "$MA $MB" | awk '{ printf "  A/B = %.3f (> 1: B is faster)\n", $1 / $2 }'
# Each pair's own ratio, then their median: a pair's two runs are minutes
# apart at most, so a host that drifts by a third over a session (session
# 15) moves both sides of a pair alike.
echo "  median of the pairs' A/B = $(median $RATIOS)"
