#!/usr/bin/env bash
# Runs one libFuzzer harness for a fixed number of inputs, starting from its
# seed corpus (read only: new inputs go to a scratch directory). A crash or a
# broken invariant leaves the input as ./crash-<sha1> (or leak-, timeout-,
# oom-) in the working directory and fails. Replay one with
#   <harness> crash-<sha1>
# Usage: run_harness.sh HARNESS CORPUS_DIR RUNS [libFuzzer flags...]
set -euo pipefail
harness=$1 corpus=$2 runs=$3
shift 3
if [ ! -x "$harness" ]; then echo "run_harness.sh: no harness at $harness" >&2; exit 1; fi
if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
  echo "run_harness.sh: the seed corpus $corpus is missing or empty" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
seed=${GEOSYNC_FUZZ_SEED:-1}
echo "$(basename "$harness"): $runs inputs, seed $seed, corpus $corpus"
# -rss_limit_mb: a decoder must stay bounded (the largest legal frame
# expands to 64 MiB). -timeout: one input may take at most 10 s.
"$harness" -runs="$runs" -seed="$seed" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$PWD/" "$@" "$scratch" "$corpus"
