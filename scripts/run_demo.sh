#!/usr/bin/env bash
# The main job: a short end-to-end REPA-E run on Fashion-MNIST, starting from
# the small VAE and REPA encoder shipped in weights/ (see weights/README.md),
# then the loss curves and a grid of samples from the trained SiT.
#   STEPS=600 bash scripts/run_demo.sh      (default 300 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads spin only briefly before they sleep (repae sets this
# itself when neither variable is set: src/core/omp_spin.h); long spinning
# made two-thread steps ~1.4x slower here, and up to 13x on a busy machine.
[ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
STEPS=${STEPS:-300}
OUT=${OUT:-out}
bash scripts/setup.sh
R=./build/repae
W=${WEIGHTS:-weights}
RUN="$OUT/demo"
rm -rf "$RUN"
$R train \
    --vae-ckpt $W/fmnist-vae.safetensors --latents-stats $W/fmnist-vae-latents-stats.safetensors \
    --enc-ckpt $W/fmnist-encoder.safetensors \
    --sit-depth 4 --sit-hidden 192 --sit-heads 3 --sit-patch 2 --encoder-depth 2 --projector-dim 512 \
    --disc-ndf 32 --disc-layers 2 --batch-size 32 --max-train-steps "$STEPS" --learning-rate 3e-4 \
    --checkpointing-steps 100 --sampling-steps 100 --ema-decay 0.99 \
    --output-dir "$OUT" --exp-name demo
$R plot "$RUN/metrics.jsonl" --keys sit_loss,denoising_loss,proj_loss,vae_loss --smooth 10 --out "$RUN/loss.png" >/dev/null
$R plot "$RUN/metrics.jsonl" --keys reconstruction_loss,vae_align_loss,d_loss,gan_loss --smooth 10 \
    --out "$RUN/vae-loss.png" >/dev/null
last=$(ls "$RUN"/checkpoints/*.safetensors | tail -n 1)
# The training weights, not the EMA: after 300 steps an EMA of decay 0.99
# still holds 0.99^300 = 5 % of the random initial weights (blurry blobs).
$R sample --ckpt "$last" --no-ema --mode sde --num-steps 100 --cfg-scale 2.0 --num-samples 100 --balanced --no-png \
    --grid 100 --sample-dir "$RUN" --name samples >/dev/null
echo
echo "demo done:"
echo "  samples (SDE 100 steps, CFG 2, 10 per class):      $RUN/samples-grid.png"
echo "  training previews (Euler ODE 50 steps, CFG 4):      $RUN/samples/"
echo "  loss curves:                                        $RUN/loss.png $RUN/vae-loss.png"
echo "  checkpoint:                                         $last"
