#!/usr/bin/env bash
# The main job of the README: set up, build, start a local 3-node cluster, run a workload on it,
# migrate it from node to node while it runs (once with each of the five strategies), and show
# that it kept running: its output is one unbroken sequence, its state intact. Then a job: a
# three-stage pipeline across the nodes whose stages all move while data flows, and which ends
# with the hash of the same pipeline run locally. Then a bank of four branches snapshotted while
# money moves (once by two initiators at once, once while a branch migrates), one snapshot
# restored on other nodes: both banks conserve the total. Then the Starter: an imbalanced load on nodes of half a CPU each spreads
# by itself (load sharing), and a node is drained. Also checkpoints and restores a process on
# one machine.
set -euo pipefail
# As root it just runs; a user who may use sudo is asked for it once, here; anyone else is told.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo bash "$0" "$@"
  fi
  echo "the ferry demo needs root (it makes network namespaces and moves processes); run this as root" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
FERRY=$PWD/build/bin/ferry
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
cleanup() {
  $FERRY cluster down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
$FERRY cluster down >/dev/null 2>&1 || true   # a demo cluster left from an earlier run

echo "== a local cluster: 3 nodes, each in its own network, PID and mount namespace"
$FERRY cluster up --nodes 3 --label node3:ssd=1
$FERRY nodes

cat > "$work/workload.py" <<'PY'
# A stateful computation: a running sum of squares and a table of partial results.
import time
state = {"sum": 0, "table": {}}
for step in range(1, 81):
    state["sum"] += step * step
    state["table"][step] = state["sum"] % 9973
    print(f"step {step:2d}  sum {state['sum']:6d}  check {sum(state['table'].values()) % 9973:4d}", flush=True)
    time.sleep(0.1)
print("workload done", flush=True)
PY

echo
echo "== run the workload on node1"
task=$($FERRY run --on node1 --name workload -- python3 "$work/workload.py")
echo "task id: $task"
sleep 1
$FERRY ps

# One migration with each way of moving the address space (docs/protocol.md, "The five
# strategies").
for move in node2:eager-all node3:pre-copy node1:copy-on-reference node2:eager-dirty node3:flushing; do
  to=${move%%:*}
  strategy=${move#*:}
  sleep 0.6
  echo
  echo "== migrate $task to $to while it runs ($strategy)"
  $FERRY migrate "$task" --to "$to" --strategy "$strategy"
  $FERRY ps | sed -n "1p;/^$task /p"
done

echo
echo "== wait for it to finish, wherever it is"
$FERRY wait "$task" || true
echo
echo "== its output, collected by its home node across 5 migrations: one unbroken sequence"
$FERRY logs "$task" | tee "$work/log.txt" | sed 's/^/   /'
expected=80
got=$(grep -c '^step' "$work/log.txt")
if [ "$got" = "$expected" ] && grep -q 'workload done' "$work/log.txt"; then
  echo "== all $got steps present, in order, each once: the workload kept running across the migrations"
else
  echo "== UNEXPECTED: $got of $expected steps" >&2
  exit 1
fi

echo
echo "== a job: generator (node1) -> gzip (node2) -> sha256sum (node3), joined by channels"
cat > "$work/gen.py" <<'PY'
# 6000 numbered lines of hashes (text that does not compress much, so that gzip writes as it
# goes), a little at a time (about 6 s).
import hashlib, sys, time
for i in range(1, 6001):
    h = hashlib.sha256(str(i).encode()).hexdigest()
    sys.stdout.write(f"{i:5d} {h} {hashlib.md5(h.encode()).hexdigest()}\n")
    if i % 100 == 0:
        sys.stdout.flush()
        time.sleep(0.1)
PY
cat > "$work/pipeline.yaml" <<YAML
tasks:
  - name: gen
    node: node1
    command: [python3, $work/gen.py]
  - name: zip
    node: node2
    command: [gzip, "-1"]
  - name: sum
    node: node3
    command: [sha256sum]
channels:
  - from: gen:1
    to: zip:0
  - from: zip:1
    to: sum:0
YAML
job=$($FERRY job run "$work/pipeline.yaml")
echo "job id: $job"
for move in zip:node3:pre-copy gen:node2:eager-all sum:node1:copy-on-reference; do
  IFS=: read -r stage to strategy <<< "$move"
  sleep 1
  echo "== migrate pipeline/$stage to $to while data flows ($strategy)"
  $FERRY migrate "pipeline/$stage" --to "$to" --strategy "$strategy"
done
$FERRY job show pipeline
$FERRY job wait pipeline
$FERRY job show pipeline | sed -n '/^CHANNEL/,$p'
got=$($FERRY logs pipeline/sum | cut -c1-64)
want=$(python3 "$work/gen.py" | gzip -1 | sha256sum | cut -c1-64)
echo "   hash through the moving pipeline: $got"
echo "   hash of the same pipeline, local:  $want"
if [ "$got" != "$want" ]; then
  echo "== UNEXPECTED: the hashes differ" >&2
  exit 1
fi
echo "== the same bytes, in the same order, while every stage moved"

echo
echo "== a bank: four branches across the nodes move money over a full mesh of channels"
bank_target=$PWD/build/tests/targets/t_bank
{
  echo "tasks:"
  for i in 0 1 2 3; do
    echo "  - name: b$i"
    echo "    node: node$((i % 3 + 1))"
    echo "    command: [$bank_target, \"$i\", \"4\", \"1000000\", \"3000\", \"2000\"]"
  done
  echo "channels:"
  for i in 0 1 2 3; do
    for j in 0 1 2 3; do
      [ "$i" = "$j" ] && continue
      out=$(( j < i ? j : j - 1 )); in=$(( i < j ? i : i - 1 ))
      printf '  - from: b%s:%s\n    to: b%s:%s\n    mode: message\n' "$i" $((10 + out)) "$j" $((20 + in))
    done
  done
} > "$work/bank.yaml"
$FERRY job run "$work/bank.yaml" >/dev/null
sleep 1
echo "== a snapshot while the money moves"
first=$($FERRY snapshot bank --from b0)
$FERRY snapshot show "$first"
echo "== two snapshots started at once, by b1 and b2"
$FERRY snapshot bank --from b1 > "$work/s1" &
$FERRY snapshot bank --from b2 > "$work/s2"
wait
for s in "$work/s1" "$work/s2"; do $FERRY snapshot show "$(tail -n1 "$s")" | head -n1; done
echo "== a snapshot while branch b3 migrates to node2"
$FERRY migrate bank/b3 --to node2 --strategy pre-copy > "$work/m3" &
moving=$!
during=$($FERRY snapshot bank --from b1)
wait "$moving"
head -n1 "$work/m3"
$FERRY snapshot show "$during" | head -n1
echo "== the first snapshot restored as a new job, on other nodes, while the bank runs on"
$FERRY snapshot restore "$first" --name bank-again --on b0=node2,b1=node3,b2=node1,b3=node2
$FERRY job show bank-again | sed -n '1,6p'
$FERRY job wait bank
$FERRY job wait bank-again
for job in bank bank-again; do
  total=0
  for i in 0 1 2 3; do
    total=$(( total + $($FERRY logs "$job/b$i" | awk '{print $3}') ))
  done
  echo "   $job: the branches end with $total in all (they started with 4000000)"
  if [ "$total" != 4000000 ]; then
    echo "== UNEXPECTED: money was made or lost" >&2
    exit 1
  fi
done
echo "== every snapshot added up, and the restored bank conserved the total, as the original did"

echo
echo "== the Starter: 3 nodes of half a CPU each (control groups), six CPU-bound tasks on node1"
$FERRY cluster down >/dev/null
$FERRY cluster up --nodes 3 --cpus 0.5 >/dev/null
t_cpu=$PWD/build/tests/targets/t_cpu
units_of_10ms=$(( $($t_cpu calibrate | awk '{print $1}') * 10 ))
$FERRY policy set load-sharing on >/dev/null
started=$(date +%s.%N)
tasks=()
for i in 1 2 3 4 5 6; do tasks+=("$($FERRY run --node node1 --name cpu$i -- "$t_cpu" 200 "$units_of_10ms" 4)"); done
sleep 3
$FERRY nodes
for t in "${tasks[@]}"; do $FERRY wait "$t" >/dev/null; done
ended=$(date +%s.%N)
echo "   2 s of CPU each, 12 s of work over 1.5 CPUs: ideal 8 s; all done in $(echo "$ended - $started" | bc | cut -c1-4) s (one node alone: 24 s)"
$FERRY ps | awk 'NR == 1 || /cpu/'
echo "== what the Starters decided (ferry events)"
$FERRY events | grep -E " (moved|refuses|accepts) " | head -n 12 | sed 's/^/   /'
echo "== drain node2 before its maintenance: its tasks go elsewhere, it takes none until undrained"
for i in 1 2; do $FERRY run --node node2 --name long$i -- "$t_cpu" 100000 "$units_of_10ms" 4 >/dev/null; done
$FERRY policy set load-sharing off >/dev/null
$FERRY drain node2 --deadline 30
$FERRY ps | awk 'NR == 1 || /long/'
$FERRY undrain node2

echo
echo "== on one machine: checkpoint a process, look at its image, restore it"
# started from a subshell, so that this shell does not report its end as a job of its own
( python3 -c '
import time
for i in range(1, 31):
    print("count", i, flush=True)
    time.sleep(0.05)' > "$work/count.txt" & echo $! > "$work/pid" )
pid=$(cat "$work/pid")
# (The file appears only once the background shell has opened it: until then it has 0 lines.)
for _ in $(seq 200); do
  [ "$(cat "$work/count.txt" 2>/dev/null | wc -l)" -ge 8 ] && break
  sleep 0.05
done
$FERRY checkpoint "$pid" --images "$work/image"
$FERRY image show "$work/image" | sed -n '1,2p;/^memory/p;/^files/p' | sed 's/^/   /'
$FERRY restore --images "$work/image" < /dev/null
echo "   restored process finished; its output has $(grep -c count "$work/count.txt") of 30 lines, in order: $(awk '{print $2}' "$work/count.txt" | tr '\n' ' ' | cut -c1-60)..."

echo
echo "== cluster down"
$FERRY cluster down
