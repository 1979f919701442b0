#!/usr/bin/env bash
# The test command: set up, build, run the unit tests, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
WERROR=-Werror bash scripts/setup.sh
make -j"$(nproc)" WERROR=-Werror test
echo "== the same tests under ASan/UBSan"
make -j"$(nproc)" WERROR=-Werror test-asan
