#!/usr/bin/env bash
# Summarises the profiles bench_apply --perf DIR recorded: for each drain,
# the share of all CPU samples (both CPUs, idle included as "swapper") by
# command, by command and library (the kernel is [kernel.kallsyms]), and the
# hottest symbols of geosyncd and of the PostgreSQL processes.
# Usage: bench/perf_summary.sh DIR [TOP]
set -euo pipefail
dir=${1:?usage: perf_summary.sh DIR [TOP]}
top=${2:-12}
command -v perf >/dev/null || { echo "perf is missing (scripts/install-deps.sh)" >&2; exit 1; }
shopt -s nullglob
files=("$dir"/*.data)
[ ${#files[@]} -gt 0 ] || { echo "no *.data in $dir" >&2; exit 1; }
report() {  # file, sort keys, lines: the top lines, in percent of all samples
  perf report -i "$1" --no-children --percentage absolute --sort "$2" --stdio -g none \
    2>/dev/null | grep -E '^ +[0-9.]+%' | { [ -n "${4:-}" ] && grep -E "$4" || cat; } |
    head -n "$3" || true
}
for f in "${files[@]}"; do
  echo "## $(basename "$f" .data) (percent of all samples)"
  echo
  echo "by command:"
  report "$f" comm 6
  echo "by command and library:"
  report "$f" comm,dso 8 ' (geosyncd|postgres) '
  echo "hottest symbols:"
  report "$f" comm,dso,sym "$top" ' (geosyncd|postgres) '
  echo
done
