#!/usr/bin/env bash
# Installs dependencies, builds geosync twice (Release with assertions, and
# common/ + unit tests under ASan+UBSan), and runs the whole suite with ctest.
# Exits non-zero on any failure. Usage: scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${GEOSYNC_JOBS:-$(nproc)}

scripts/install-deps.sh

echo "== build: Release with assertions (build/release)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build/release -j"$JOBS"

echo "== build: ASan+UBSan, common/ and unit tests (build/asan)"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGEOSYNC_SANITIZE=ON \
      -DGEOSYNC_UNIT_ONLY=ON >/dev/null
ninja -C build/asan -j"$JOBS"

status=0
echo "== unit tests under ASan+UBSan"
(cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest -L unit --no-tests=error --output-on-failure -j"$JOBS" "$@") || status=1

echo "== all tests (unit, integration, e2e) on the Release build"
(cd build/release && ctest --no-tests=error --output-on-failure -j"$JOBS" --timeout 900 "$@") || status=1

if [ "$status" -ne 0 ]; then
  echo "scripts/test.sh: FAILED" >&2
fi
exit "$status"
