#!/usr/bin/env bash
# The test command: set up, build, run the unit tests, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a busy machine (or one
# shared with other jobs) spinning threads made training steps up to 4x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
WERROR=-Werror bash scripts/setup.sh
make -j"$(nproc)" WERROR=-Werror test
echo "== the same tests under ASan/UBSan"
make -j"$(nproc)" WERROR=-Werror test-asan
