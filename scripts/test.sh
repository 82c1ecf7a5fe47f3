#!/usr/bin/env bash
# The test command of the README (and of .ci/run): set up, build, run every test.
# End-to-end tests trace and rebuild real processes, so they need root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "ferry tests need root (ptrace, PR_SET_MM_MAP, clone3 with set_tid); run: sudo bash scripts/test.sh" >&2
  exit 1
fi
bash scripts/build.sh
# Serial on purpose: some end-to-end tests measure how long a restored sleep takes.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
