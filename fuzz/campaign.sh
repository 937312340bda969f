#!/usr/bin/env bash
# Runs every target (or the ones named) for SECONDS each with fuzz/run.sh (NO_BUILD=1: the
# binaries of `cargo +nightly fuzz build`), minimises each corpus with libFuzzer's -merge=1
# into a fresh fuzz/cmin/TARGET, and prints one tab-separated line per target:
# target, executions, seconds, exec/s, corpus files at start (INITED) and end (DONE), files after
# the merge, crash/timeout/oom artifacts.
# Usage: SECONDS_PER_TARGET=90 fuzz/campaign.sh [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_TARGET:-90}
bin=fuzz/target/x86_64-unknown-linux-gnu/release
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^visualglm-fuzz$')
fi
printf 'target\texecutions\tseconds\texec_per_s\tcorpus_start\tcorpus_end\tcorpus_cmin\tartifacts\n'
for t in "${targets[@]}"; do
  NO_BUILD=1 fuzz/run.sh "$t" "$secs" 100000000 > /dev/null 2>&1
  log=fuzz/logs/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  start=$(grep -m1 'INITED' "$log" | sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p')
  end=$(grep 'DONE' "$log" | tail -1 | sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p')
  rm -rf "fuzz/cmin/$t"; mkdir -p "fuzz/cmin/$t"
  "$bin/$t" -merge=1 -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -max_len=1048576 \
    "fuzz/cmin/$t" "fuzz/corpus/$t" > "fuzz/logs/$t.cmin.log" 2>&1
  cmin=$(find "fuzz/cmin/$t" -type f | wc -l)
  arts=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "${took:-?}" "${eps:-?}" \
    "${start:-?}" "${end:-?}" "$cmin" "$arts"
done
