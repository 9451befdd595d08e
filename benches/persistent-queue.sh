#!/usr/bin/env bash
# Two Fleetgate builds, one load, one command: QoS 1 messages published to the sandbox for a
# persistent session that is away, then drained by it when it comes back. Build A is the
# reference (e.g. a build from before persistent-session queues were written to the store),
# build B the candidate; rounds alternate (A B, B A, ...) and the report gives medians and B/A
# ratios (docs/benchmarks.md, "Durable persistent-session queues").
#
#   benches/persistent-queue.sh A_FLEETGATE B_FLEETGATE [--rounds R] [--messages N]
#                               [--publishers P]
#
# Per round and build: start `fleetgate serve` with the sandbox on (free loopback ports, temp
# data dir, durable storage); mosquitto_sub makes persistent session `away` (3.1.1, clean
# session 0, QoS 1 on bench/#, operational.max_queue set to N) and leaves; P mosquitto_pub processes publish N/P QoS 1
# messages each (`-l`: pipelined, 20 in flight), timed until the last PUBACK; then `away`
# comes back and takes all N, timed; the server stops. Needs mosquitto-clients.
set -euo pipefail

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

[[ $# -ge 2 ]] || { usage >&2; exit 2; }
A_BIN="$(realpath "$1")"
B_BIN="$(realpath "$2")"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3
MESSAGES=20000
PUBLISHERS=4
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --messages) MESSAGES="$2"; shift 2 ;;
    --publishers) PUBLISHERS="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
(( MESSAGES % PUBLISHERS == 0 )) || { echo "error: --messages must be a multiple of --publishers" >&2; exit 2; }
command -v mosquitto_pub >/dev/null || { echo "error: mosquitto_pub not found (apt-get install mosquitto-clients)" >&2; exit 1; }
WORK="$(mktemp -d /tmp/fleetgate-persistent-queue.XXXXXX)"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'stop fleetgate "$FG_PID"' EXIT
echo "== work directory: $WORK"

now() { date +%s.%N; }

# One round of build $1 labelled $2; appends "label publish_rate drain_rate" to results.txt.
round() {
    local bin="$1" label="$2" n="$3" data="$WORK/data-$2-$3" port t0 t1 t2 got
    port="$(free_port)"
    mkdir -m 0700 "$data"
    # The queue must hold every message (operational.max_queue, default 1,000).
    FLEETGATE_OPERATIONAL_MAX_QUEUE="$MESSAGES" FLEETGATE_OPERATIONAL_SANDBOX_LISTEN="127.0.0.1:$port" \
        start_fleetgate "$bin" "$data" "$WORK/fleetgate-$label-$n.log"
    wait_port "fleetgate sandbox" "$port" "$FG_PID" "$WORK/fleetgate-$label-$n.log"
    mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv311 -c -i away -q 1 -t 'bench/#' -E
    local per=$((MESSAGES / PUBLISHERS)) pids=()
    t0="$(now)"
    for p in $(seq 1 "$PUBLISHERS"); do
        seq 1 "$per" | mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -q 1 -i "pub-$p" \
            -t "bench/$p" -l &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "a publisher failed ($label round $n)"; done
    t1="$(now)"
    got="$(mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv311 -c -i away -q 1 -t 'bench/#' \
        -C "$MESSAGES" -W 120 | wc -l)"
    t2="$(now)"
    [[ "$got" -eq "$MESSAGES" ]] || die "$label round $n: away received $got of $MESSAGES"
    stop fleetgate "$FG_PID"
    FG_PID=""
    python3 - "$label" "$t0" "$t1" "$t2" "$MESSAGES" >>"$WORK/results.txt" <<'PY'
import sys
label, t0, t1, t2, n = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
print(label, round(n / (t1 - t0)), round(n / (t2 - t1)))
PY
    tail -n 1 "$WORK/results.txt"
}

for n in $(seq 1 "$ROUNDS"); do
    if (( n % 2 )); then round "$A_BIN" A "$n"; round "$B_BIN" B "$n"
    else round "$B_BIN" B "$n"; round "$A_BIN" A "$n"; fi
done

python3 - "$WORK/results.txt" "$MESSAGES" "$PUBLISHERS" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for label in "AB":
    pub = [int(r[1]) for r in rows if r[0] == label]
    drain = [int(r[2]) for r in rows if r[0] == label]
    med[label] = (statistics.median(pub), statistics.median(drain))
    print(f"build {label}: publish {pub} msg/s (median {med[label][0]:.0f}), "
          f"drain {drain} msg/s (median {med[label][1]:.0f})")
print(f"B/A: publish {med['B'][0] / med['A'][0]:.2f}, drain {med['B'][1] / med['A'][1]:.2f} "
      f"({sys.argv[2]} messages, {sys.argv[3]} publishers)")
PY
