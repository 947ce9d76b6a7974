#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz long, under ASan+UBSan, and
# prints how many inputs each ran. scripts/test.sh runs the same harnesses
# for a short, fixed number of inputs; this is the long run whose counts
# docs/benchmarks.md quotes.
#   scripts/fuzz.sh [RUNS]         RUNS inputs per harness (default 1000000)
#   scripts/fuzz.sh --corpus       regenerate tests/fuzz/corpus from a fresh
#                                  capture of real pgoutput (capture_pgoutput.sh)
# A crash leaves crash-<sha1> in build/fuzz/artifacts: turn it into a unit
# test under tests/unit/common before fixing the decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${GEOSYNC_JOBS:-$(nproc)}
BUILD=$ROOT/build/fuzz

scripts/install-deps.sh >/dev/null
CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGEOSYNC_SANITIZE=ON \
  -DGEOSYNC_UNIT_ONLY=ON -DGEOSYNC_FUZZ=ON >/dev/null
ninja -C "$BUILD" -j"$JOBS" $(cd tests/fuzz && ls *_fuzz.cpp | sed 's/\.cpp$//') make_corpus

if [ "${1:-}" = "--corpus" ]; then
  capture=$ROOT/tests/fuzz/corpus/pgoutput_capture.txt
  tests/fuzz/capture_pgoutput.sh "$capture"
  for d in tests/fuzz/corpus/*/; do rm -rf "$d"; done
  "$BUILD/tests/fuzz/make_corpus" "$capture" "$ROOT/tests/fuzz/corpus"
  exit 0
fi

RUNS=${1:-1000000}
mkdir -p "$BUILD/artifacts"
cd "$BUILD/artifacts"
status=0
for src in "$ROOT"/tests/fuzz/*_fuzz.cpp; do
  name=$(basename "$src" .cpp)
  log=$BUILD/artifacts/$name.log
  start=$(date +%s)
  if /bin/bash "$ROOT/tests/fuzz/run_harness.sh" "$BUILD/tests/fuzz/$name" \
      "$ROOT/tests/fuzz/corpus/$name" "$RUNS" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  printf '%-22s %-6s %10s inputs  %5ss  %s  (log %s)\n' "$name" "$result" "$done_runs" \
    "$(($(date +%s) - start))" "$cov" "$log"
done
exit "$status"
