#!/bin/bash
# Interleaved A/B runs of builds side by side: the figures of several
# commits, from the same stretch of a noisy machine.
#
# usage: scripts/bench/ab.sh ROUNDS DIR... -- SCENARIO [OPTIONS]
#   Each DIR holds a `bench` and the `invitation-ledger` it runs (copied from
#   target/release/ of one commit's `cargo build --release --locked --bins`).
#   Every round runs the scenario once per DIR, in order, 3 s apart, and
#   prints the headline lines; take the median per DIR.
# example: scripts/bench/ab.sh 3 /tmp/before /tmp/after -- wrk --duration 10s
set -euo pipefail
rounds=$1
shift
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  dirs+=("$1")
  shift
done
[ $# -gt 0 ] && shift
for r in $(seq 1 "$rounds"); do
  for d in "${dirs[@]}"; do
    echo "== $d round $r"
    "$d/bench" "$@" 2>&1 | grep -E "^throughput|^latency p99|^latency max|^bytes written per appended webhook|^CPU per appended|^service peak RSS|^windows|^machine" || true
    sleep 3
  done
done
