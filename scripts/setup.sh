#!/usr/bin/env bash
# Installs every Debian package ferry needs to build, test and run its demo.
# Idempotent: packages already present are skipped, so it is cheap to run before every build.
set -euo pipefail

packages=(
  build-essential g++-12 cmake ninja-build pkg-config git
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  libcli11-dev libspdlog-dev libfmt-dev libxxhash-dev libzstd-dev liblz4-dev libtomlplusplus-dev
  nlohmann-json3-dev libyaml-cpp-dev
  libssl-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 procps util-linux python3 bc gzip coreutils dash gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ferry setup: missing packages (${missing[*]}); run this script as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ferry setup: installed ${missing[*]}"
