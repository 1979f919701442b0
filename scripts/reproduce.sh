#!/usr/bin/env bash
# Re-runs the small-scale REPA-E comparison on Fashion-MNIST (issues 6, 15):
#   vanilla       frozen VAE, SiT without REPA           (cache-latents + train-ldm --proj-coeff 0)
#   repa          frozen VAE, SiT with REPA              (train-ldm --enc-ckpt)
#   repa-irepa    repa with iREPA's conv projector and spatial z-score (optional, not in the default RUNS)
#   naive-e2e     VAE + SiT jointly, diffusion loss into the VAE, no REPA (train --e2e-diffusion-loss)
#   repa-e        the end-to-end REPA-E step             (train)
#   repa-e-irepa  repa-e with iREPA's options            (train --projection-layer-type conv --spnorm-method zscore)
#   e2e-vae       the VAE exported from repa-e (first seed), frozen, SiT from scratch with REPA
# Same SiT, steps and batch everywhere; every run once per seed in SEEDS
# (naive-e2e and e2e-vae: the first seed only), in $OUT/<run>-s<seed>.
# Every EVAL_EVERY steps a checkpoint; at each: N samples (SDE, no guidance,
# balanced labels, --global-seed 1 at every checkpoint and in every run: the
# same labels and noise) and their Fréchet distance to the test split in the
# feature space of our evaluation CNN (a different network from the REPA
# encoder).  At the final checkpoint a second, independent sample set
# (--global-seed $NOISE_SEED) measures the FD's sampling noise.  Then
# `repae speedup` (steps each run needs to reach vanilla's FD at 50/75/100 %
# of the horizon, ratios, final FD against the noise), the FD-vs-steps plot
# with a min-max band over seeds per run, the VAEs before and after
# (reconstruction PSNR, SSIM, rFD, latent statistics) and the runtime of
# every part.
#
#   bash scripts/reproduce.sh                  # the full comparison (hours of CPU)
#   STEPS=40 EVAL_EVERY=20 N_SAMPLES=200 SAMPLE_STEPS=10 SEEDS="0 1" RUNS="vanilla repa repa-e" \
#       OUT=/tmp/repro-smoke bash scripts/reproduce.sh      # a smoke test of the machinery
#
# Environment (defaults below): STEPS EVAL_EVERY SEEDS N_SAMPLES SAMPLE_STEPS BATCH OUT;
#   RUNS="vanilla repa ..."  train only these runs (repa-irepa only when named);
#   EVAL_ONLY=1              train nothing: re-evaluate the checkpoints in $OUT of the
#                            runs and seeds named (samples already drawn are reused) and
#                            write the report (otherwise evaluations already made are kept);
#   REPORT_ONLY=1            train and evaluate nothing: the report from the evaluations
#                            in $OUT so far (while runs are still going, say);
#   JOBS                     tasks (one run and seed: train, then evaluate) side by side,
#                            each with cores/JOBS threads (default: one per core);
#   NOISE_SEED               --global-seed of the second sample set (default 2);
#   RATIOS                   step-count ratios for the speed-up table (A/B pairs);
#   FEATURE_NET, EVAL_WEIGHTS  the evaluation network (default: our CNN);
#   SAMPLE_WEIGHTS           --no-ema (default) or --use-ema.
#   PUBLISH=DIR              at the end, copy the report (raw JSONL, tables, plots,
#                            reconstruction and final sample grids) into DIR, e.g.
#                            docs/img/reproduction.
# A run whose final checkpoint exists is not trained again; one with earlier
# checkpoints resumes from the latest (--resume-step -1).
# Killed, it picks up where it stopped: run it again with the same settings.
# Outputs in $OUT: results.jsonl (one line per run, seed, step and sample
# set), fd.jsonl (mean/min/max over seeds per step), fd.png, speedup.md and
# speedup.json, reconstruct.txt/.jsonl, passes.jsonl (commit and host of
# every pass), times.jsonl (seconds of every
# training, sampling+evaluation and reconstruction), samples/ (grids, .npz),
# logs/RUN-sSEED.log (each task's output), evals/ (each sample set's metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads spin only briefly before they sleep (repae sets this
# itself when neither variable is set: src/core/omp_spin.h); long spinning
# made two-thread steps ~1.4x slower here, and up to 13x on a busy machine.
[ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
STEPS=${STEPS:-4800}
if [ -z "${EVAL_EVERY:-}" ] && [ -n "${EVALS:-}" ]; then EVAL_EVERY=$((STEPS / EVALS)); fi # the old knob
EVAL_EVERY=${EVAL_EVERY:-400}
if [ -z "${SEEDS:-}" ] && [ -n "${SEED:-}" ]; then SEEDS=$SEED; fi # the old knob
SEEDS=${SEEDS:-0 1 2}
N_SAMPLES=${N_SAMPLES:-2000}
SAMPLE_STEPS=${SAMPLE_STEPS:-50}
BATCH=${BATCH:-32}
OUT=${OUT:-out/reproduce}
ALL_RUNS="vanilla repa repa-irepa naive-e2e repa-e repa-e-irepa e2e-vae"
RUNS=${RUNS:-vanilla repa naive-e2e repa-e repa-e-irepa e2e-vae}
SINGLE_SEED_RUNS="naive-e2e e2e-vae"
NOISE_SEED=${NOISE_SEED:-2}
RATIOS=${RATIOS:-vanilla/repa-e,repa/repa-e,repa-e/repa-e-irepa,repa/repa-irepa}
EVAL_ONLY=${EVAL_ONLY:-0}
REPORT_ONLY=${REPORT_ONLY:-0}
PUBLISH=${PUBLISH:-}
CORES=$(nproc)
JOBS=${JOBS:-$CORES}
case $JOBS in '' | *[!0-9]* | 0) echo "reproduce.sh: JOBS must be a positive integer, not '$JOBS'" >&2; exit 1 ;; esac
# Threads per task: the cores shared out, unless OMP_NUM_THREADS is set (JOBS=1: all of them).
LANE_THREADS=""
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    LANE_THREADS=$((CORES / JOBS))
    [ "$LANE_THREADS" -ge 1 ] || LANE_THREADS=1
fi
W=weights
FEATURE_NET=${FEATURE_NET:-cnn}
EVAL_WEIGHTS=${EVAL_WEIGHTS:-$W/fmnist-evalnet-cnn.safetensors}
for r in $RUNS; do
    case " $ALL_RUNS " in *" $r "*) ;; *) echo "reproduce.sh: unknown run '$r' in RUNS (known: $ALL_RUNS)" >&2; exit 1 ;; esac
done
for s in $SEEDS; do
    case $s in '' | *[!0-9]*) echo "reproduce.sh: SEEDS must be non-negative integers, not '$s'" >&2; exit 1 ;; esac
done
[ "$NOISE_SEED" != 1 ] || { echo "reproduce.sh: NOISE_SEED must differ from 1 (the main sample set's seed)" >&2; exit 1; }
FIRST_SEED=${SEEDS%% *}
bash scripts/setup.sh >/dev/null
make -s -j2 >/dev/null
R=./build/repae
SIT="--sit-depth 4 --sit-hidden 192 --sit-heads 3 --sit-patch 2 --encoder-depth 2 --projector-dim 512"
COMMON="$SIT --batch-size $BATCH --max-train-steps $STEPS --checkpointing-steps $EVAL_EVERY \
        --sampling-steps $EVAL_EVERY --preview-images 64 --ema-decay 0.999 --output-dir $OUT"
FROZEN="--vae-ckpt $W/fmnist-vae.safetensors --latents-stats $W/fmnist-vae-latents-stats.safetensors"
E2E="--vae-ckpt $W/fmnist-vae.safetensors --latents-stats $W/fmnist-vae-latents-stats.safetensors \
     --disc-ndf 32 --disc-layers 2"
ENC="--enc-ckpt $W/fmnist-encoder.safetensors"
IREPA="--projection-layer-type conv --spnorm-method zscore"
EVAL="--feature-net $FEATURE_NET --weights $EVAL_WEIGHTS"
# Samples come from the training weights (model.*), not the EMA: after 2,400
# steps an EMA of decay 0.999 still holds 0.999^2400 = 9 % of the random
# initial weights, and its samples are formless blobs (FD ~17 vs ~6; see
# docs/reproduction.md).  SAMPLE_WEIGHTS=--use-ema samples the EMA.
SAMPLE_WEIGHTS=${SAMPLE_WEIGHTS:---no-ema}
mkdir -p "$OUT/samples" "$OUT/evals"
RES="$OUT/results.jsonl"
TIMES="$OUT/times.jsonl"
touch "$TIMES"
# passes.jsonl: one line per pass that trains or evaluates, saying which
# source tree and which host made what follows (a run can span passes).
if [ "$REPORT_ONLY" = 0 ]; then
    commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    modified=false
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || modified=true
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1 | tr -d '"\\')
    printf '{"started": "%s", "commit": "%s", "modified": %s, "cpu": "%s", "cores": %s, "jobs": %s, "runs": "%s", "seeds": "%s", "eval_only": %s}\n' \
        "$(date -u '+%F %H:%M:%S')" "$commit" "$modified" "${cpu:-unknown}" "$(nproc)" "$JOBS" "$RUNS" "$SEEDS" \
        "$([ "$EVAL_ONLY" = 0 ] && echo false || echo true)" >> "$OUT/passes.jsonl"
fi

# timed PART RUN SEED STEP SET -- COMMAND...: runs COMMAND and appends its wall time to times.jsonl.
timed() {
    local part=$1 run=$2 seed=$3 step=$4 set=$5 t0 t1
    shift 6
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    printf '{"part": "%s", "run": "%s", "seed": %s, "step": %s, "set": %s, "seconds": %s}\n' "$part" "$run" \
        "$seed" "$step" "$set" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >> "$TIMES"
}

[ -f "$OUT/test.npz" ] || $R prepare --data fashion-mnist --data-split test --npz "$OUT/test.npz" >/dev/null
if [ "$EVAL_ONLY" = 0 ] && [ "$REPORT_ONLY" = 0 ] && [ ! -f "$OUT/latents.safetensors" ]; then
    timed cache-latents all null null null -- $R cache-latents --vae-ckpt $W/fmnist-vae.safetensors --output "$OUT/latents.safetensors"
fi

wanted() { [ "$EVAL_ONLY" = 0 ] && [ "$REPORT_ONLY" = 0 ] && case " $RUNS " in *" $1 "*) true ;; *) false ;; esac; }
seeds_of() { case " $SINGLE_SEED_RUNS " in *" $1 "*) echo "$FIRST_SEED" ;; *) echo "$SEEDS" ;; esac; }
# (empty, and status 0, when there is none: under pipefail a failed ls would end the script)
last_checkpoint() { ls "$1"/checkpoints/*.safetensors 2>/dev/null | tail -n 1 || true; }

# The E2E-VAE of the first repa-e seed, and the latents it gives.
prepare_e2e_vae() {
    local last
    last="$OUT/repa-e-s$FIRST_SEED/checkpoints/$(printf %07d "$STEPS").safetensors"
    [ -f "$last" ] || { echo "reproduce.sh: e2e-vae needs repa-e-s$FIRST_SEED trained to step $STEPS first (RUNS)" >&2; exit 1; }
    $R export-vae --checkpoint "$last" --output "$OUT/e2e-vae" >/dev/null
    $R cache-latents --vae-ckpt "$OUT/e2e-vae.safetensors" --output "$OUT/latents-e2e.safetensors"
}

# train_run RUN SEED: one training run into $OUT/RUN-sSEED.
train_run() {
    local run=$1 seed=$2 name="$1-s$2" resume=""
    if [ -f "$OUT/$name/checkpoints/$(printf %07d "$STEPS").safetensors" ]; then
        echo "reproduce.sh: $name is trained already (step $STEPS); skipped"
        return
    fi
    [ -z "$(last_checkpoint "$OUT/$name")" ] || resume="--resume-step -1"
    local args="$COMMON --seed $seed --exp-name $name $resume"
    case $run in
    vanilla) timed train "$run" "$seed" null null -- $R train-ldm --latents "$OUT/latents.safetensors" $FROZEN --proj-coeff 0 $args ;;
    repa) timed train "$run" "$seed" null null -- $R train-ldm --latents "$OUT/latents.safetensors" $FROZEN $ENC $args ;;
    repa-irepa) timed train "$run" "$seed" null null -- $R train-ldm --latents "$OUT/latents.safetensors" $FROZEN $ENC $IREPA $args ;;
    naive-e2e) timed train "$run" "$seed" null null -- $R train $E2E --e2e-diffusion-loss --proj-coeff 0 --vae-align-proj-coeff 0 $args ;;
    repa-e) timed train "$run" "$seed" null null -- $R train $E2E $ENC $args ;;
    repa-e-irepa) timed train "$run" "$seed" null null -- $R train $E2E $ENC $IREPA $args ;;
    e2e-vae)
        timed export-cache "$run" "$seed" null null -- prepare_e2e_vae
        timed train "$run" "$seed" null null -- $R train-ldm --latents "$OUT/latents-e2e.safetensors" \
            --vae-ckpt "$OUT/e2e-vae.safetensors" --latents-stats "$OUT/e2e-vae-latents-stats.safetensors" $ENC $args ;;
    esac
}

# ---- evaluation of one run's checkpoints ----
# eval_one RUN SEED STEP SET GLOBAL_SEED CHECKPOINT: one sample set and its metrics in
# evals/NAME.json (kept: a later pass reuses it unless EVAL_ONLY=1 asks for a re-evaluation).
eval_one() {
    local run=$1 seed=$2 step=$3 set=$4 gseed=$5 ck=$6 name npz json
    name="$run-s${seed}_${step}_set$set"
    npz="$OUT/samples/$name.npz"
    json="$OUT/evals/$name.json"
    if [ ! -f "$npz" ]; then
        $R sample --ckpt "$ck" $SAMPLE_WEIGHTS --mode sde --num-steps "$SAMPLE_STEPS" --cfg-scale 1 \
            --num-samples "$N_SAMPLES" --balanced --no-png --grid 100 --global-seed "$gseed" \
            --sample-dir "$OUT/samples" --name "$name" >/dev/null
    fi
    rm -f "$json.tmp" # eval --json appends; the rename makes a killed evaluation leave no half file
    $R eval --samples "$npz" --ref "$OUT/test.npz" $EVAL --pr-ref-images 5000 --json "$json.tmp" >/dev/null
    mv "$json.tmp" "$json"
}

# eval_set RUN SEED STEP SET GLOBAL_SEED CHECKPOINT: eval_one, timed, unless its metrics exist (EVAL_ONLY=1: redone).
eval_set() {
    [ "$EVAL_ONLY" = 1 ] || [ ! -f "$OUT/evals/$1-s${2}_${3}_set$4.json" ] || return 0
    timed eval "$1" "$2" "$((10#$3))" "$4" -- eval_one "$@"
}

# eval_run RUN SEED: every checkpoint of $OUT/RUN-sSEED, and the second sample set at its last.
eval_run() {
    local run=$1 seed=$2 dir="$OUT/$1-s$2" last ck step
    last=$(last_checkpoint "$dir")
    [ -n "$last" ] || return 0
    for ck in "$dir"/checkpoints/*.safetensors; do
        step=$(basename "$ck" .safetensors)
        eval_set "$run" "$seed" "$step" 0 1 "$ck"
        [ "$ck" != "$last" ] || eval_set "$run" "$seed" "$step" 1 "$NOISE_SEED" "$ck"
    done
}

# ---- the runs, JOBS at a time ----
# Each task trains one run and seed, then evaluates its checkpoints; its output
# is appended to logs/RUN-sSEED.log.  The commands used here give the same bits at
# any thread count (a smoke run with JOBS=1 and JOBS=2 wrote byte-identical
# checkpoints and samples; the FDs agreed to 1e-14), so the lanes share the
# cores: two one-thread runs side by side did 18 % more work per hour than one
# two-thread run on a 2-core machine.  The longest (end-to-end) runs go first;
# e2e-vae waits for the repa-e run whose VAE it takes.
if [ "$EVAL_ONLY" = 1 ]; then # this pass's evaluation times replace the last pass's
    grep -v '"part": "eval"' "$TIMES" > "$TIMES.tmp" || true
    mv "$TIMES.tmp" "$TIMES"
fi
mkdir -p "$OUT/logs"
declare -A PID_OF=() NAME_OF=() DONE=()
running=0
failed=""
# reap: wait for one task to end; note it if it failed.
reap() {
    local pid status=0
    wait -n -p pid || status=$?
    running=$((running - 1))
    DONE[${NAME_OF[$pid]}]=1
    if [ "$status" = "$HELD_ELSEWHERE" ]; then
        echo "reproduce.sh: ${NAME_OF[$pid]} skipped: another pass of this script is training or evaluating it" \
            "(its lock: $OUT/logs/${NAME_OF[$pid]}.lock)" >&2
    elif [ "$status" != 0 ]; then
        failed="$failed ${NAME_OF[$pid]}"
        echo "reproduce.sh: ${NAME_OF[$pid]} failed (exit $status); see $OUT/logs/${NAME_OF[$pid]}.log" >&2
    fi
}
# One writer per run: a task holds an flock on logs/RUN-sSEED.lock while it
# trains and evaluates, so that two passes over the same $OUT (say, a second
# one started for other RUNS or SEEDS, which still evaluates every run folder
# it finds) never write the same checkpoints, sample sets or evals/ files.  A
# task whose lock is held exits with HELD_ELSEWHERE and is skipped, not failed.  (Not the run
# folder's own .lock: `repae train` takes that one itself, for training only.)
HELD_ELSEWHERE=75
# launch RUN SEED: start its task when a lane is free.
launch() {
    local run=$1 seed=$2 name="$1-s$2"
    while [ "$running" -ge "$JOBS" ]; do reap; done
    if [ "$run" = e2e-vae ]; then
        while [ -n "${PID_OF[repa-e-s$FIRST_SEED]:-}" ] && [ -z "${DONE[repa-e-s$FIRST_SEED]:-}" ]; do reap; done
    fi
    echo "reproduce.sh: $name started $(date -u +%H:%M:%S)"
    (
        exec 9>> "$OUT/logs/$name.lock"
        flock -n 9 || exit "$HELD_ELSEWHERE"
        echo "reproduce.sh: pass started $(date -u '+%F %H:%M:%S')"
        [ -z "$LANE_THREADS" ] || export OMP_NUM_THREADS=$LANE_THREADS
        if wanted "$run"; then train_run "$run" "$seed"; fi
        eval_run "$run" "$seed"
    ) >> "$OUT/logs/$name.log" 2>&1 & # appended: a resumed pass keeps the earlier passes' output
    PID_OF[$name]=$!
    NAME_OF[$!]=$name
    running=$((running + 1))
}
# Task order: the first repa-e seed, then the frozen-VAE runs beside it (so
# that a first comparison exists early), the other end-to-end runs, and the
# short LDM runs last (no lane idles long at the end).
tasks="repa-e:$FIRST_SEED"
for run in vanilla repa repa-e repa-e-irepa naive-e2e e2e-vae repa-irepa; do
    for seed in $(seeds_of "$run"); do
        [ "$run:$seed" = "repa-e:$FIRST_SEED" ] || tasks="$tasks $run:$seed"
    done
done
if [ "$REPORT_ONLY" = 0 ]; then
    for task in $tasks; do
        run=${task%:*} seed=${task#*:}
        if wanted "$run" || [ -d "$OUT/$run-s$seed" ]; then launch "$run" "$seed"; fi
    done
fi
while [ "$running" -gt 0 ]; do reap; done
[ -z "$failed" ] || { echo "reproduce.sh: failed:$failed" >&2; exit 1; }

# ---- results.jsonl: one line per run, seed, checkpoint and sample set, in a fixed order ----
: > "$RES"
present=""
for run in $ALL_RUNS; do
    found=0
    for dir in "$OUT/$run"-s*; do
        seed=${dir##*-s}
        case $seed in '' | *[!0-9]*) continue ;; esac
        for json in "$OUT/evals/$run-s${seed}"_*_set*.json; do
            [ -f "$json" ] || continue
            found=1
            name=$(basename "$json" .json)
            step=${name#"$run-s${seed}_"}
            set=${step##*_set}
            step=${step%_set*}
            echo "{\"run\": \"$run\", \"seed\": $seed, \"step\": $((10#$step)), \"set\": $set, \"metrics\": $(cat "$json")}" >> "$RES"
        done
    done
    [ "$found" = 0 ] || present="$present,$run"
done
present=${present#,}

# ---- the speed-up table, the banded FD plot ----
if grep -q '"run": "vanilla"' "$RES"; then
    $R speedup "$RES" --baseline vanilla --reference repa-e --ratios "$RATIOS" --json "$OUT/speedup.json" \
        --curves "$OUT/fd.jsonl" --by-step 800 | tee "$OUT/speedup.md"
    for m in precision recall; do
        $R speedup "$RES" --metric $m --final-only --baseline vanilla --reference repa-e --by-step 1600 | tee -a "$OUT/speedup.md"
    done
    $R plot "$OUT/fd.jsonl" --keys "$present" --bands --y-label FD --out "$OUT/fd.png" >/dev/null
else
    echo "reproduce.sh: no vanilla run in $OUT: no speed-up table (its thresholds come from vanilla)"
fi

# publish: with PUBLISH=DIR, copy what docs/reproduction.md shows into DIR
# (docs/img/reproduction): the raw JSONL beside the tables and plots, the
# reconstruction grids and each run's final sample grid (first seed, set 0).
publish() {
    [ -n "$PUBLISH" ] || return 0
    mkdir -p "$PUBLISH"
    local f v run grid
    for f in results.jsonl fd.jsonl fd.png speedup.md speedup.json passes.jsonl times.jsonl reconstruct.txt \
        reconstruct.jsonl; do
        [ ! -f "$OUT/$f" ] || cp "$OUT/$f" "$PUBLISH/$f"
    done
    for v in fmnist-vae:pretrained e2e-vae:e2e-vae naive-e2e-vae:naive-e2e-vae repa-e-irepa-vae:repa-e-irepa-vae; do
        [ ! -f "$OUT/${v%%:*}-recon.png" ] || cp "$OUT/${v%%:*}-recon.png" "$PUBLISH/recon-${v#*:}.png"
    done
    for run in $ALL_RUNS; do
        grid="$OUT/samples/$run-s${FIRST_SEED}_$(printf %07d "$STEPS")_set0-grid.png"
        [ ! -f "$grid" ] || cp "$grid" "$PUBLISH/samples-$run.png"
    done
    echo "reproduce.sh: published to $PUBLISH"
}

# ---- the VAEs before and after: reconstruction quality and latent statistics ----
if [ "$REPORT_ONLY" != 0 ]; then # (the end-to-end VAEs are not final yet)
    publish
    exit 0
fi
grep -v '"part": "reconstruct"' "$TIMES" > "$TIMES.tmp" || true # this pass's reconstructions replace the last's
mv "$TIMES.tmp" "$TIMES"
: > "$OUT/reconstruct.jsonl"
: > "$OUT/reconstruct.txt"
for v in $W/fmnist-vae "$OUT/e2e-vae" "$OUT/naive-e2e-vae" "$OUT/repa-e-irepa-vae"; do
    case $v in
    "$OUT/naive-e2e-vae" | "$OUT/repa-e-irepa-vae")
        src=${v%-vae}-s$FIRST_SEED
        src=$(last_checkpoint "$src")
        [ -z "$src" ] || $R export-vae --checkpoint "$src" --output "$v" >/dev/null ;;
    esac
    [ -f "$v.safetensors" ] || continue
    timed reconstruct "$(basename "$v")" null null null -- $R reconstruct --vae-ckpt "$v.safetensors" --data-split test \
        --max-images 2000 $EVAL --json "$OUT/reconstruct.jsonl" --out-grid "$OUT/$(basename "$v")-recon.png" |
        tee -a "$OUT/reconstruct.txt"
done

# ---- runtime: seconds per part and run (times.jsonl has every entry) ----
echo
echo "runtime (s)    part           run"
sed -n 's/.*"part": "\([^"]*\)", "run": "\([^"]*\)".*"seconds": \([0-9.]*\).*/\1 \2 \3/p' "$TIMES" |
    awk '{ s[$1 " " $2] += $3 } END { for (k in s) { split(k, p, " "); printf "%10.1f    %-14s %s\n", s[k], p[1], p[2] } }' |
    sort -k2,2 -k3,3
echo "results: $RES, $OUT/speedup.md, $OUT/fd.png, $OUT/fd.jsonl, $OUT/times.jsonl, $OUT/reconstruct.txt, sample grids in $OUT/samples"
publish

