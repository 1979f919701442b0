#!/usr/bin/env bash
# The main job.  Until `repae train` lands (issue 4) this shows what exists:
# it builds repae and inspects a model fixture written by the PyTorch reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for f in tests/fixtures/models/sit_tiny*.safetensors tests/fixtures/ops/*.safetensors; do
    [ -f "$f" ] && { ./repae inspect "$f"; break; }
done
