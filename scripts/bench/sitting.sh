#!/usr/bin/env bash
# One sitting of the benchmarks: every scenario ROUNDS times (default 3),
# interleaved (round 1 of each, then round 2 of each, ...), so that a slow
# stretch of the machine hits every scenario alike; then one 60 s wrk run
# with 5 s windows; then the median of every figure.
#
#   scripts/bench/sitting.sh [ROUNDS]          # all of it, ~15 minutes on a quiet machine
#   SCENARIOS="wrk ingest" scripts/bench/sitting.sh 3
#   MAX_OTHERS=0.3 RETRIES=2 scripts/bench/sitting.sh   # (the defaults) rerun busy runs
#   scripts/bench/sitting.sh --medians DIR     # medians of a sitting's logs again
#
# Each run's full output is kept in target/bench-logs/<date>/NAME.ROUND.txt.
# The 1,000,000-event rebuild ledger is generated once, into
# target/bench-tmp/rebuild-real-1m.db, and reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The median of every figure over a scenario's runs. Each line `key: value`
# is split into its comma-separated parts; a part is matched across runs by
# its text with the numbers taken out (so `projector 42.7` finds
# `projector 45.1` wherever the thread is in the list), and every number in
# it becomes its median, the first one followed by each run's value.
medians() {
    local dir=$1
    for first in "$dir"/*.1.txt; do
        local name
        name=$(basename "$first" .1.txt)
        echo "== $name (median of $(ls "$dir/$name".*.txt | wc -l) runs; each run in brackets)"
        awk '
            FNR == 1 { run++ }
            /^[a-zA-Z][^:]*: / {
                key = $0; sub(/: .*/, "", key)
                value = $0; sub(/^[^:]*: /, "", value)
                if (key == "scenario" || key == "load generator" || key == "note" || value !~ /[0-9]/) {
                    if (run == 1) { order[++n] = key; text[key] = value }
                    next
                }
                if (run == 1) { order[++n] = key; parts[key] = 0 }
                m = split(value, part, /, /)
                for (i = 1; i <= m; i++) {
                    words = split(part[i], w, " ")
                    label = ""; k = 0
                    for (j = 1; j <= words; j++) {
                        if (match(w[j], /^[(\[]?-?[0-9]+(\.[0-9]+)?([^0-9a-zA-Z.].*)?$/)) {
                            k++
                            match(w[j], /-?[0-9]+(\.[0-9]+)?/)
                            num[k] = substr(w[j], RSTART, RLENGTH)
                            w[j] = substr(w[j], 1, RSTART - 1) "#" substr(w[j], RSTART + RLENGTH)
                        }
                        label = label (j > 1 ? " " : "") w[j]
                    }
                    if (run == 1) { labels[key, ++parts[key]] = label }
                    for (j = 1; j <= k; j++) vals[key, label, j] = vals[key, label, j] (run > 1 ? " " : "") num[j]
                }
            }
            function median(list,    a, m, j, k, t) {
                m = split(list, a, " ")
                for (j = 1; j <= m; j++) for (k = j + 1; k <= m; k++) if (a[k] + 0 < a[j] + 0) { t = a[j]; a[j] = a[k]; a[k] = t }
                return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
            }
            END {
                for (o = 1; o <= n; o++) {
                    key = order[o]
                    if (key in text) { print key ": " text[key]; continue }
                    line = ""
                    for (i = 1; i <= parts[key]; i++) {
                        label = labels[key, i]; shown = label; j = 0
                        while (index(shown, "#")) {
                            j++
                            list = vals[key, label, j]
                            v = median(list)
                            if (j == 1 && list ~ / /) v = v " [" list "]"
                            sub(/#/, v, shown)
                        }
                        line = line (i > 1 ? ", " : "") shown
                    }
                    print key ": " line
                }
            }' "$dir/$name".*.txt
        echo
    done
}

if [ "${1:-}" = "--medians" ]; then
    medians "$2"
    exit 0
fi

rounds=${1:-3}
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bins >&2
bench="$target/release/bench"
scripts/bench/wrk.sh --help >/dev/null # installs wrk when missing
log="target/bench-logs/$(date -u +%Y-%m-%dT%H%M)"
mkdir -p "$log" target/bench-tmp
rebuild_ledger=target/bench-tmp/rebuild-real-1m.db

declare -A run=(
    [wrk]="$bench wrk"
    [wrk-envelope-only]="$bench wrk --envelope-only"
    [ingest]="$bench ingest"
    [ingest-half-rate]="$bench ingest --rate 6000"
    [read]="$bench read"
    [reconcile]="$bench reconcile"
    [rebuild]="$bench rebuild --ledger $rebuild_ledger"
)
order=${SCENARIOS:-"wrk wrk-envelope-only ingest ingest-half-rate read reconcile rebuild"}

if [[ " $order " == *" rebuild "* ]] && [ ! -e "$rebuild_ledger" ]; then
    echo "generating the rebuild ledger once (1,000,000 real-shaped events) ..." >&2
    $bench rebuild --ledger "$rebuild_ledger" >/dev/null
fi

# A run during which other processes took more than MAX_OTHERS cores (the
# `machine` line) is run again after a pause, up to RETRIES more times; the
# last attempt is kept, and the sitting's log says which runs stayed busy.
max_others=${MAX_OTHERS:-0.3}
retries=${RETRIES:-2}
measure() { # name file command...
    local name=$1 out=$2
    shift 2
    local attempt others
    for attempt in $(seq 0 "$retries"); do
        echo "[$(date -u +%H:%M:%S)] $name (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
        "$@" >"$out" 2>"${out%.txt}.err" || {
            echo "$name failed: see ${out%.txt}.err" >&2
            exit 1
        }
        others=$(sed -n 's/^machine: .*other processes and the kernel \([0-9.]*\);.*/\1/p' "$out")
        if [ -z "$others" ] || awk -v o="$others" -v m="$max_others" 'BEGIN { exit !(o <= m) }'; then
            return 0
        fi
        echo "    others took $others cores (> $max_others)$([ "$attempt" -lt "$retries" ] && echo ': again in 30 s')" >&2
        [ "$attempt" -lt "$retries" ] && sleep 30
    done
    echo "$out: others took $others cores" >>"$log/busy.txt"
}

echo "sitting: $rounds rounds of: $order; logs in $log" >&2
for round in $(seq 1 "$rounds"); do
    for name in $order; do
        measure "round $round: $name" "$log/$name.$round.txt" ${run[$name]}
        sleep 5
    done
done
if [ -z "${SCENARIOS:-}" ]; then
    measure "wrk 60 s with 5 s windows" "$log/wrk-60s-windows.1.txt" $bench wrk --duration 60s --windows 5s
fi
[ -e "$log/busy.txt" ] && { echo "runs with a busy machine:"; cat "$log/busy.txt"; } >&2
medians "$log" | tee "$log/medians.txt"
