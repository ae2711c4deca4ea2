#!/usr/bin/env bash
# Ingest under wrk with real-shaped, pre-signed webhooks.
#
#   scripts/bench/wrk.sh [bench wrk options]
#   scripts/bench/wrk.sh --duration 60s --windows 5s     # no collapse over 60 s
#   scripts/bench/wrk.sh --envelope-only                  # bodies without data
#   scripts/bench/wrk.sh --rate 6000                      # paced: the bench's own client
#
# Installs wrk from Debian when it is missing (sudo only when not root),
# builds the release binaries, and runs `bench wrk`: it generates the
# bodies (`bench wrk-bodies`), starts `target/release/invitation-ledger
# serve` on a fresh ledger in target/bench-tmp (the repository's disk, not
# a tmpfs; BENCH_DIR overrides), runs
#   WEBHOOK_BODIES=BODIES WEBHOOK_THREADS=2 WEBHOOK_GATE=GATE \
#     wrk -t2 -c64 -d10s --latency -s scripts/bench/webhooks.lua http://127.0.0.1:PORT
# and prints one line per figure. docs/benchmarks.md explains each figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "wrk is missing: installing it from Debian" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null ||
        { $sudo apt-get update >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null; }
fi

cargo build --release --locked --bins >&2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench" wrk "$@"
