#!/usr/bin/env bash
# Runs the fuzz targets, two at a time (a 2-core machine), each for a given
# time, and prints per target its executions, coverage and any crash.
#
#   fuzz/run.sh                 the campaign of fuzz/README.md: frame_codec,
#                               segment, response_bodies, lexer 30 min each,
#                               every other target 10 min
#   fuzz/run.sh 60              every target 60 s
#   fuzz/run.sh 300 lexer node  those targets, 300 s each
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Corpora grow in fuzz/corpus/<target> (seeded by fuzz/seed.py), crashes
# land in fuzz/artifacts/<target>, logs in fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
jobs="${FUZZ_JOBS:-2}"
long=(frame_codec segment response_bodies lexer)
all=(frame_codec segment response_bodies lexer request_bodies classify node config)

seconds="${1:-}"   # empty: the campaign's times
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

python3 seed.py >/dev/null
cargo +nightly fuzz build --release >/dev/null
# The campaign runs copies, so a build during it cannot change what runs.
bin=target/campaign
mkdir -p logs "$bin"
for t in "${targets[@]}"; do
  cp "target/x86_64-unknown-linux-gnu/release/$t" "$bin/$t"
done

time_for() {
  if [ -n "$seconds" ]; then echo "$seconds"; return; fi
  for l in "${long[@]}"; do [ "$l" = "$1" ] && { echo 1800; return; }; done
  echo 600
}

run_one() {
  local t=$1 secs
  secs=$(time_for "$t")
  mkdir -p "corpus/$t" "artifacts/$t"
  # -rss_limit_mb: a reader that allocates from a wire count shows up here.
  "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || true
}

for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
  echo "fuzzing $t for $(time_for "$t") s"
  run_one "$t" &
done
wait

printf '\n%-16s %12s %8s %8s %s\n' target executions cov ft crashes
for t in "${targets[@]}"; do
  log="logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  crashes=$(find "artifacts/$t" -type f | wc -l)
  printf '%-16s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
done
