#!/usr/bin/env bash
# Idle connections, one command: how much memory Fleetgate's operational endpoint holds per
# idle device connection, against Mosquitto holding the same connections (docs/benchmarks.md,
# "Issue 17: idle connections").
#
#   benches/idle.sh [--clients N] [--rate R] [--fleetgate BIN] [--loadtest BIN]
#
# Starts Mosquitto (anonymous, no persistence) and a release Fleetgate (free loopback ports,
# temp data dir) with one LOOSE device provisioned, then for each broker in turn runs
# `fleetgate-loadtest cycle --clients N --rate R --hold H --source-addresses 8`: every client
# connects (Fleetgate: as the device's user, on its own topic), does one QoS 1 round trip and
# stays connected, idle, for H = N/R + 15 s. A sampler reads the broker's VmRSS and its
# established connections every 0.5 s. The report gives RSS before and at the peak, the
# cost of one more connection (least squares over the ramp up), the projection to 100,000
# connections (peak + the rest at that cost), and the
# Fleetgate/Mosquitto ratio per connection. N defaults to 18,000: each process here may open
# at most 20,000 files (`ulimit -Hn`), which bounds one broker's connections.
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS=18000
RATE=2000
FLEETGATE="$ROOT/target/release/fleetgate"
LOADTEST="$ROOT/target/release/fleetgate-loadtest"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --fleetgate) FLEETGATE="$(realpath "$2")"; shift 2 ;;
    --loadtest) LOADTEST="$(realpath "$2")"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
WORK="$(mktemp -d /tmp/fleetgate-idle.XXXXXX)"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
[[ -x "$FLEETGATE" && -x "$LOADTEST" ]] ||
    die "build first: cargo build --release -p fleetgate -p fleetgate-loadtest"
ulimit -n "$(ulimit -Hn)"
(( CLIENTS + 500 <= $(ulimit -n) )) ||
    die "--clients $CLIENTS needs more open files than this process may have ($(ulimit -n))"
find_mosquitto
FG_PID="" MOSQ_PID=""
trap 'stop fleetgate "$FG_PID"; stop mosquitto "$MOSQ_PID"' EXIT
echo "== work directory: $WORK"

start_mosquitto mosquitto "allow_anonymous true"

mkdir -m 0700 "$WORK/data"
FLEETGATE_OPERATIONAL_MAX_CONNECTIONS=$((CLIENTS + 1000)) \
    start_fleetgate "$FLEETGATE" "$WORK/data" "$WORK/fleetgate.log"
provision_loose_device idle

HOLD=$(( CLIENTS / RATE + 15 ))

# Samples "rss_kib connections" of process $1 listening on port $2 into $3 until $4 exists.
sample() {
    local pid="$1" port="$2" out="$3" done="$4" rss conns
    while [[ ! -e "$done" ]]; do
        rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
        conns="$(ss -Htn state established "( sport = :$port )" | wc -l)"
        echo "$rss $conns" >>"$out"
        sleep 0.5
    done
}

# One run against broker $1 (process $2, port $3) with extra loadtest flags "${@:4}".
run() {
    local name="$1" pid="$2" port="$3"
    shift 3
    echo "== $name: $CLIENTS clients at $RATE/s, each held $HOLD s"
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" >"$WORK/$name-before.txt"
    sample "$pid" "$port" "$WORK/$name-samples.txt" "$WORK/$name-done" &
    local sampler=$!
    "$LOADTEST" cycle --broker "mqtt://127.0.0.1:$port" --clients "$CLIENTS" --rate "$RATE" \
        --hold "$HOLD" --source-addresses 8 --timeout 60 --json "$WORK/$name.json" "$@" \
        >"$WORK/$name.out" 2>&1 || die "$name: the loadtest failed ($WORK/$name.out)"
    touch "$WORK/$name-done"
    wait "$sampler"
}

run mosquitto "$MOSQ_PID" "$MOSQ_PORT" --sandbox
run fleetgate "$FG_PID" "$OPER_PORT" --username "$DEV_USER" --password "$DEV_PASS" \
    --topic 'idle/{client_id}/cycle'

python3 - "$WORK" "$CLIENTS" <<'PY'
import json, sys
work, clients = sys.argv[1], int(sys.argv[2])
per = {}
for name in ("mosquitto", "fleetgate"):
    before = int(open(f"{work}/{name}-before.txt").read())
    samples = [tuple(map(int, l.split())) for l in open(f"{work}/{name}-samples.txt")]
    peak_rss = max(r for r, _ in samples)
    peak_conns = max(c for _, c in samples)
    # The cost of one more connection: least squares of RSS on connections over the ramp up
    # (from a tenth of the peak to the peak), which leaves out start-up and caches warming.
    ramp = []
    for r, c in samples:
        if c >= peak_conns:
            break
        if c >= peak_conns / 10:
            ramp.append((c, r))
    n = len(ramp)
    mc, mr = sum(c for c, _ in ramp) / n, sum(r for _, r in ramp) / n
    slope = sum((c - mc) * (r - mr) for c, r in ramp) / sum((c - mc) ** 2 for c, _ in ramp)
    per[name] = slope
    projected = (peak_rss + (100_000 - peak_conns) * slope) / 1024
    done = json.load(open(f"{work}/{name}.json"))["clients"]["completed"]
    print(f"{name}: {done}/{clients} clients completed; RSS {before / 1024:.0f} MiB before, "
          f"{peak_rss / 1024:.0f} MiB at the peak of {peak_conns} connections; "
          f"{slope:.1f} KiB per connection (slope over {n} samples); "
          f"{projected:.0f} MiB projected for 100,000")
print(f"fleetgate/mosquitto per connection: {per['fleetgate'] / per['mosquitto']:.2f}")
PY
