#!/usr/bin/env bash
# The test command of the README (and of .ci/run): set up, build, run every test.
# End-to-end tests trace and rebuild real processes, so they need root.
set -euo pipefail
# As root it just runs; a user who may use sudo is asked for it once, here; anyone else is told.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo bash "$0" "$@"
  fi
  echo "ferry tests need root (ptrace, PR_SET_MM_MAP, clone3 with set_tid); run this as root" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
bash scripts/build.sh
# Serial on purpose: some end-to-end tests measure how long a restored sleep takes.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
