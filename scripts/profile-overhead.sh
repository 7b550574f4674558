#!/usr/bin/env bash
# Profiles the proxy under the overhead bench: runs `cargo bench --bench
# overhead -- --quick`, attaches `perf record` (Debian's linux-perf) to the
# passthrough and the dual-write proxy processes for the whole run, and
# writes, per proxy, the top self-time entries and a flamegraph
# (`inferno`, `cargo install inferno`) to target/profile/.
# Usage: scripts/profile-overhead.sh [BENCH_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/profile
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
bench=${1:-}
if [ -z "$bench" ]; then
  bench=$(cargo bench --bench overhead --no-run 2>&1 | sed -n 's/.*Executable benches\/overhead.rs (\(.*\))/\1/p')
fi
"$bench" --quick > "$out/bench.txt" 2>&1 &
runner=$!
pids=""
for _ in $(seq 1 200); do
  pids=$(sed -n 's/^proxy pids: passthrough \([0-9]*\), dual-write \([0-9]*\)$/\1 \2/p' "$out/bench.txt")
  [ -n "$pids" ] && break
  sleep 0.1
done
[ -n "$pids" ] || { echo "the bench never printed its proxy pids" >&2; kill $runner; exit 1; }
set -- $pids
perf record -q -F 1999 --call-graph dwarf,16384 -p "$1" -o "$out/passthrough.data" 2>/dev/null &
p1=$!
perf record -q -F 1999 --call-graph dwarf,16384 -p "$2" -o "$out/dual-write.data" 2>/dev/null &
p2=$!
wait $runner || true
wait $p1 $p2 2>/dev/null || true
for name in passthrough dual-write; do
  perf report -i "$out/$name.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 > "$out/$name-top.txt" || true
  if command -v inferno-flamegraph >/dev/null; then
    perf script -i "$out/$name.data" 2>/dev/null | inferno-collapse-perf > "$out/$name.folded"
    inferno-flamegraph --title "cutover $name under the overhead bench" < "$out/$name.folded" > "$out/$name.svg"
  fi
done
echo "bench output: $out/bench.txt; profiles: $out/{passthrough,dual-write}-top.txt and .svg"
