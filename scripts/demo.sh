#!/usr/bin/env bash
# The main job of the README: set up, build, then show a running program being checkpointed,
# inspected, and restored, and that it went on exactly where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "the ferry demo needs root (it traces and rebuilds processes); run: sudo bash scripts/demo.sh" >&2
  exit 1
fi
bash scripts/build.sh >/dev/null
FERRY=build/bin/ferry
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/counter.py" <<'PY'
import time
state = {"total": 0}
for i in range(1, 31):
    state["total"] += i * i
    print(f"step {i:2d}  running total {state['total']}", flush=True)
    time.sleep(0.1)
print("finished", flush=True)
PY

echo "== a Python program that keeps a running total, one step every 0.1 s"
python3 "$work/counter.py" > "$work/out.txt" 2>&1 &
pid=$!
while [ "$(wc -l < "$work/out.txt")" -lt 10 ]; do sleep 0.05; done
echo "== checkpoint it (the process is frozen, written to $work/image, then stopped)"
$FERRY checkpoint "$pid" --images "$work/image"
{ wait "$pid"; } 2>/dev/null || true
pid=
echo "   its output so far ends with:"; tail -n 2 "$work/out.txt" | sed 's/^/     /'
echo "== what the image holds"
$FERRY image show "$work/image" | sed -n '1,6p;/^files/,/^signals/p' | sed 's/^/   /'
echo "== restore it: it goes on from step $(( $(wc -l < "$work/out.txt") + 1 ))"
$FERRY restore --images "$work/image" && echo "== ferry restore returned the program's exit status: $?"
echo "== the whole output, one uninterrupted sequence:"
sed 's/^/   /' "$work/out.txt"
