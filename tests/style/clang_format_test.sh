#!/usr/bin/env bash
# Every C++ source and header follows .clang-format. Usage:
# clang_format_test.sh SOURCE_DIR. A missing clang-format (Debian package
# clang-format, scripts/install-deps.sh) fails the test.
set -euo pipefail
cd "$1"
mapfile -d '' files < <(find agent common tests bench \( -name '*.cpp' -o -name '*.h' \) -print0 | sort -z)
[ "${#files[@]}" -gt 50 ] || { echo "found only ${#files[@]} sources under $1" >&2; exit 1; }
if ! /usr/bin/clang-format --dry-run --Werror "${files[@]}"; then
  echo "run: clang-format -i <the files above>" >&2
  exit 1
fi
echo "clang-format: ${#files[@]} files follow .clang-format"
