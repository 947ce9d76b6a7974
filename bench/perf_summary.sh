#!/usr/bin/env bash
# Summarises the profiles bench_apply --perf DIR recorded: for each drain,
# the share of CPU samples per process kind (geosyncd, the PostgreSQL
# backends, the kernel) and the hottest symbols of geosyncd and of postgres.
# Usage: bench/perf_summary.sh DIR [TOP]
set -euo pipefail
dir=${1:?usage: perf_summary.sh DIR [TOP]}
top=${2:-12}
command -v perf >/dev/null || { echo "perf is missing (scripts/install-deps.sh)" >&2; exit 1; }
shopt -s nullglob
files=("$dir"/*.data)
[ ${#files[@]} -gt 0 ] || { echo "no *.data in $dir" >&2; exit 1; }
for f in "${files[@]}"; do
  echo "## $(basename "$f" .data)"
  echo
  echo "share of samples by command:"
  perf report -i "$f" --no-children --sort comm --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n 8 || true
  for comm in geosyncd postgres; do
    echo
    echo "$comm by library (share of all samples):"
    perf report -i "$f" --no-children --comms "$comm" --sort dso --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -n 5 || true
    echo "hottest symbols in $comm (share of all samples):"
    perf report -i "$f" --no-children --comms "$comm" --sort dso,sym --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -n "$top" || true
  done
  echo
done
