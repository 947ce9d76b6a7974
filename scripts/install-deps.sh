#!/usr/bin/env bash
# Installs every build, test and demo dependency of geosync from Debian's
# archive. Idempotent: packages already present are left alone, and apt-get
# runs only when something is missing. Must run as root (or via sudo).
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake pkg-config ninja-build git
  libpq-dev postgresql-15 postgresql-client-15 postgresql-15-pglogical
  libboost1.81-dev libzstd-dev zstd nlohmann-json3-dev libssl-dev openssl
  libgtest-dev libgmock-dev googletest
  libcli11-dev libfmt-dev libspdlog-dev
  python3 python3-jsonschema prometheus
  iproute2 procps util-linux
  # tests/style: every C++ file follows .clang-format
  clang-format
  # the ASan+UBSan build and the libFuzzer harnesses of tests/fuzz
  clang libclang-rt-14-dev
  # packaging and deployment tests: cpack's dpkg-shlibdeps (dpkg-dev, file),
  # useradd --prefix in the postinst (passwd), systemd-analyze (systemd),
  # the runbook's /metrics and /readyz calls (curl)
  dpkg-dev file passwd systemd curl
  # the promotion lock's compare-and-swap tests run a throwaway etcd; the
  # drill report test renders the HTML page in headless Chromium
  etcd-server chromium
  # bench_apply --perf: the profile of each drain (bench/perf_summary.sh)
  linux-perf
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's postgresql package starts a default cluster; geosync's tests and
# demo make their own throwaway clusters, so the stock one is not needed.
echo "install-deps: done"
