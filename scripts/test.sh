#!/usr/bin/env bash
# Installs dependencies, builds geosync twice (Release with assertions, and
# common/ + unit tests + the libFuzzer harnesses under ASan+UBSan with clang),
# and runs the whole suite with ctest.
# Exits non-zero on any failure. Usage: scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${GEOSYNC_JOBS:-$(nproc)}

scripts/install-deps.sh

echo "== build: Release with assertions (build/release)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build/release -j"$JOBS"

echo "== build: ASan+UBSan with clang, common/, unit tests and fuzz harnesses (build/sanitize)"
CXX=clang++ cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGEOSYNC_SANITIZE=ON \
      -DGEOSYNC_UNIT_ONLY=ON -DGEOSYNC_FUZZ=ON >/dev/null
ninja -C build/sanitize -j"$JOBS"

status=0
echo "== unit tests and fuzz harnesses (tests/fuzz) under ASan+UBSan"
(cd build/sanitize && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest -L unit --no-tests=error --output-on-failure -j"$JOBS" "$@") || status=1

echo "== all tests (unit, integration, e2e) on the Release build"
(cd build/release && ctest --no-tests=error --output-on-failure -j"$JOBS" --timeout 900 "$@") || status=1

if [ "$status" -ne 0 ]; then
  echo "scripts/test.sh: FAILED" >&2
fi
exit "$status"
