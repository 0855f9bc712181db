#!/usr/bin/env bash
# Installs the Debian 12 packages Postern builds and tests with.
# Idempotent: only missing packages are installed, so a warm machine pays nothing.
set -euo pipefail

BUILD_PKGS=(
  bazel-bootstrap bazel-rules-java
  g++ liburing-dev android-libboringssl-dev android-boringssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libc-ares-dev libyaml-cpp-dev libsodium-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev libjemalloc-dev
)
TEST_PKGS=(
  swaks openssl prometheus python3 binutils curl clang libclang-rt-14-dev haproxy
  procps libnet-ssleay-perl libio-socket-ssl-perl testssl.sh
  postfix dnsmasq-base gnuplot-nox
)

want=("${BUILD_PKGS[@]}")
if [[ "${1:-}" != "--build-only" ]]; then
  want+=("${TEST_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Service packages (prometheus) must not start daemons on install.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# postfix (a private instance in tests/postfix_instance.py) must not ask its
# debconf question nor configure a system mailer.
if command -v debconf-set-selections >/dev/null; then
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
fi
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
