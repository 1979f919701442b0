#!/usr/bin/env bash
# The test command: set up, build, run the unit tests, the GEMM-dependent
# ones again as on a CPU without AVX-512, the fuzz corpus, then the unit
# tests under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads spin only briefly before they sleep (repae sets this
# itself when neither variable is set: src/core/omp_spin.h); long spinning
# made two-thread steps ~1.4x slower here, and up to 13x on a busy machine.
[ -n "${OMP_WAIT_POLICY:-}" ] || export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
WERROR=-Werror bash scripts/setup.sh --test
make -j"$(nproc)" WERROR=-Werror test
if grep -qw avx2 /proc/cpuinfo; then
    echo "== the GEMM-dependent tests built as for a CPU without AVX-512 (our AVX2 kernels)"
    make -j"$(nproc)" WERROR=-Werror test-no-avx512
fi
echo "== the committed fuzz corpus, replayed under ASan/UBSan (fuzz/corpus/)"
make -j"$(nproc)" WERROR=-Werror fuzz-replay
echo "== the same tests under ASan/UBSan"
make -j"$(nproc)" WERROR=-Werror test-asan
