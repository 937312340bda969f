#!/usr/bin/env bash
# Runs a command under GNU time and prints its wall time and peak resident set size.
# Usage: bench/load/peak.sh COMMAND [ARGS...]   (use with bench/record.sh to keep the result)
set -uo pipefail
log=$(mktemp)
/usr/bin/time -v -o "$log" "$@"
status=$?
echo "exit status: $status"
sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): /wall: /p; s/^\s*Maximum resident set size (kbytes): \(.*\)/peak RSS: \1 KiB/p' "$log"
awk '/Maximum resident set size/ {printf "peak RSS: %.0f MiB\n", $6 / 1024}' "$log"
rm -f "$log"
exit "$status"
