#!/usr/bin/env bash
# The test command: set up, build, run the unit tests, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads spin only briefly before they sleep (repae sets this
# itself when neither variable is set: src/core/omp_spin.h); long spinning
# made two-thread steps ~1.4x slower here, and up to 13x on a busy machine.
[ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
WERROR=-Werror bash scripts/setup.sh --test
make -j"$(nproc)" WERROR=-Werror test
echo "== the committed fuzz corpus, replayed under ASan/UBSan (fuzz/corpus/)"
make -j"$(nproc)" WERROR=-Werror fuzz-replay
echo "== the same tests under ASan/UBSan"
make -j"$(nproc)" WERROR=-Werror test-asan
