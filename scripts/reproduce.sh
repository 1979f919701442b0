#!/usr/bin/env bash
# Re-runs the small-scale REPA-E comparison on Fashion-MNIST (issue 6):
#   1 vanilla   frozen VAE, SiT without REPA          (cache-latents + train-ldm --proj-coeff 0)
#   2 repa      frozen VAE, SiT with REPA             (train-ldm --enc-ckpt)
#   3 naive-e2e VAE + SiT jointly, diffusion loss into the VAE, no REPA (train --e2e-diffusion-loss)
#   4 repa-e    the end-to-end REPA-E step            (train)
#   5 e2e-vae   the VAE exported from run 4, frozen, SiT from scratch with REPA
# Same SiT, steps, batch and seed everywhere.  At each checkpoint: N samples
# (SDE, no guidance, balanced labels) and their Fréchet distance to the test
# split in the feature space of our evaluation classifier (a different network
# from the REPA encoder).  Results: $OUT/results.jsonl and a table on stdout.
#
#   STEPS=3000 EVALS=3 N_SAMPLES=5000 bash scripts/reproduce.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a busy machine (or one
# shared with other jobs) spinning threads made training steps up to 4x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
STEPS=${STEPS:-3000}
EVALS=${EVALS:-3}
N_SAMPLES=${N_SAMPLES:-5000}
SAMPLE_STEPS=${SAMPLE_STEPS:-100}
BATCH=${BATCH:-32}
SEED=${SEED:-0}
OUT=${OUT:-out/reproduce}
W=weights
bash scripts/setup.sh >/dev/null
R=./build/repae
EVERY=$((STEPS / EVALS))
SIT="--sit-depth 4 --sit-hidden 192 --sit-heads 3 --sit-patch 2 --encoder-depth 2 --projector-dim 512"
COMMON="$SIT --batch-size $BATCH --max-train-steps $STEPS --checkpointing-steps $EVERY --sampling-steps $EVERY \
        --preview-images 64 --seed $SEED --ema-decay 0.999 --output-dir $OUT"
E2E="--vae-ckpt $W/fmnist-vae.safetensors --latents-stats $W/fmnist-vae-latents-stats.safetensors \
     --disc-ndf 32 --disc-layers 2"
mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"

[ -f "$OUT/test.npz" ] || $R prepare --data fashion-mnist --data-split test --npz "$OUT/test.npz" >/dev/null
[ -f "$OUT/latents.safetensors" ] || $R cache-latents --vae-ckpt $W/fmnist-vae.safetensors --output "$OUT/latents.safetensors"

evaluate() { # run-name checkpoint-dir
    local run=$1 dir=$2 step ck
    for ck in "$dir"/checkpoints/*.safetensors; do
        step=$(basename "$ck" .safetensors)
        $R sample --ckpt "$ck" --mode sde --num-steps "$SAMPLE_STEPS" --cfg-scale 1 --num-samples "$N_SAMPLES" --balanced \
            --no-png --grid 100 --global-seed 1 --sample-dir "$OUT/samples" --name "${run}_$step" >/dev/null
        $R eval --samples "$OUT/samples/${run}_$step.npz" --ref "$OUT/test.npz" --feature-net vit \
            --weights $W/fmnist-evalnet.safetensors --pr-ref-images 5000 --json "$OUT/$run-$step.json" >/dev/null
        echo "{\"run\": \"$run\", \"step\": $((10#$step)), \"metrics\": $(cat "$OUT/$run-$step.json")}" >> "$RES"
        echo "$run step $((10#$step)): $(cat "$OUT/$run-$step.json")"
    done
}

$R train-ldm --latents "$OUT/latents.safetensors" --vae-ckpt $W/fmnist-vae.safetensors \
    --latents-stats $W/fmnist-vae-latents-stats.safetensors --proj-coeff 0 $COMMON --exp-name vanilla
evaluate vanilla "$OUT/vanilla"
$R train-ldm --latents "$OUT/latents.safetensors" --vae-ckpt $W/fmnist-vae.safetensors \
    --latents-stats $W/fmnist-vae-latents-stats.safetensors --enc-ckpt $W/fmnist-encoder.safetensors $COMMON \
    --exp-name repa
evaluate repa "$OUT/repa"
$R train $E2E --e2e-diffusion-loss --proj-coeff 0 --vae-align-proj-coeff 0 $COMMON --exp-name naive-e2e
evaluate naive-e2e "$OUT/naive-e2e"
$R train $E2E --enc-ckpt $W/fmnist-encoder.safetensors $COMMON --exp-name repa-e
evaluate repa-e "$OUT/repa-e"
last=$(ls "$OUT"/repa-e/checkpoints/*.safetensors | tail -n 1)
$R export-vae --checkpoint "$last" --output "$OUT/e2e-vae"
$R cache-latents --vae-ckpt "$OUT/e2e-vae.safetensors" --output "$OUT/latents-e2e.safetensors"
$R train-ldm --latents "$OUT/latents-e2e.safetensors" --vae-ckpt "$OUT/e2e-vae.safetensors" \
    --latents-stats "$OUT/e2e-vae-latents-stats.safetensors" --enc-ckpt $W/fmnist-encoder.safetensors $COMMON \
    --exp-name e2e-vae
evaluate e2e-vae "$OUT/e2e-vae"

# The VAEs before and after: reconstruction quality and latent statistics.
for v in $W/fmnist-vae "$OUT/e2e-vae"; do
    $R reconstruct --vae-ckpt "$v.safetensors" --data-split test --max-images 2000 --feature-net vit \
        --weights $W/fmnist-evalnet.safetensors --json "$OUT/reconstruct.jsonl" --out-grid "$v-recon.png" \
        | tee -a "$OUT/reconstruct.txt"
done
echo "results: $RES, $OUT/reconstruct.jsonl, sample grids in $OUT/samples"
