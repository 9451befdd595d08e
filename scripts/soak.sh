#!/usr/bin/env bash
# Soak: MINUTES (default 30) of mixed load on one real Fleetgate, sampling its RSS, open file
# descriptors and the p99 latencies of the load every 10 s into a CSV (issue 19).
#
#   scripts/soak.sh [MINUTES] [--out DIR]
#
# Load, all on loopback, all the time:
# - enrollment: `fleetgate-loadtest enroll` of 200 devices (bulk API create, PROV-V1 over MQTT,
#   operational reconnect), again and again (API writes and group commits included);
# - sandbox cycles: `fleetgate-loadtest cycle --sandbox` of 500 clients (connect, subscribe,
#   publish, receive, disconnect), again and again;
# - a retained publisher: mosquitto_pub, QoS 1 retained, on 100 rotating sandbox topics;
# - a persistent session: mosquitto_sub with clean session 0, QoS 1, connecting for 5 s and
#   away for 5 s, so that messages queue for it while it is away.
#
# Samples (every 10 s) go to DIR/soak.csv: seconds, RSS (KiB), open fds, threads, and the p99
# (ms) of the last finished enrollment run and cycle run. At the end a summary (first and last
# quarter averages, so "flat or not" is a number) is printed and written to DIR/summary.txt.
# FLEETGATE_PROFILE=release uses target/release (built here); default debug.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES=30
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="$(realpath -m "$2")"; shift 2 ;;
        [0-9]*) MINUTES="$1"; shift ;;
        *) echo "usage: $0 [MINUTES] [--out DIR]" >&2; exit 2 ;;
    esac
done
PROFILE="${FLEETGATE_PROFILE:-debug}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-soak.XXXXXX")"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
# shellcheck source=../benches/lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
LOADERS=()
trap 'set +e; for p in "${LOADERS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null;
      stop fleetgate "$FG_PID"; echo "logs in $WORK, results in $OUT" >&2' EXIT

command -v mosquitto_pub >/dev/null || apt_install mosquitto-clients

if [[ "$PROFILE" == release ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p fleetgate -p fleetgate-loadtest)
else
    (cd "$ROOT" && cargo build --quiet -p fleetgate -p fleetgate-loadtest)
fi
BIN="$ROOT/target/$PROFILE"
SANDBOX_PORT="$(free_port)"
FLEETGATE_OPERATIONAL_SANDBOX_LISTEN="127.0.0.1:$SANDBOX_PORT" \
FLEETGATE_AUTH_ARGON2_M_COST=64 FLEETGATE_AUTH_ARGON2_T_COST=1 FLEETGATE_PROVISIONING_LINGER=0.2 \
    start_fleetgate "$BIN/fleetgate" "$WORK/data" "$WORK/fleetgate.log"
wait_port "fleetgate sandbox" "$SANDBOX_PORT" "$FG_PID" "$WORK/fleetgate.log"
api_post /api/v1/accounts '{"name":"acme"}' "$WORK/account.json"
END=$(( $(date +%s) + MINUTES * 60 ))

# Each loader runs until END; a failed run is counted (in the CSV's failure columns via its
# report), not fatal.
enroll_loop() {
    local i=0
    while (( $(date +%s) < END )); do
        i=$((i + 1))
        "$BIN/fleetgate-loadtest" enroll --api "$API" --token "$TOKEN" --account acme \
            --provisioning "mqtt://127.0.0.1:$PROV_PORT" \
            --operational-broker "mqtt://127.0.0.1:$OPER_PORT" --operational \
            --devices 200 --concurrency 20 --run-id "soak$i" --allow-failures \
            --json "$WORK/enroll.tmp.json" >>"$WORK/enroll.out" 2>&1 &&
            mv "$WORK/enroll.tmp.json" "$WORK/enroll.json" && echo run >>"$WORK/enroll.runs"
    done
}
cycle_loop() {
    local i=0
    while (( $(date +%s) < END )); do
        i=$((i + 1))
        "$BIN/fleetgate-loadtest" cycle --sandbox --broker "mqtt://127.0.0.1:$SANDBOX_PORT" \
            --clients 500 --concurrency 50 --run-id "cyc$i" --allow-failures \
            --json "$WORK/cycle.tmp.json" >>"$WORK/cycle.out" 2>&1 &&
            mv "$WORK/cycle.tmp.json" "$WORK/cycle.json" && echo run >>"$WORK/cycle.runs"
    done
}
retained_loop() {
    local i=0
    while (( $(date +%s) < END )); do
        i=$((i + 1))
        mosquitto_pub -h 127.0.0.1 -p "$SANDBOX_PORT" -q 1 -r -i soak-retained \
            -t "soak/retained/$((i % 100))" -m "retained $i" >>"$WORK/retained.out" 2>&1 || true
        sleep 0.05
    done
}
session_loop() {
    while (( $(date +%s) < END )); do
        # Present 5 s (takes what queued), away 5 s (messages queue for it).
        timeout 5 mosquitto_sub -h 127.0.0.1 -p "$SANDBOX_PORT" -q 1 -c -i soak-session \
            -t 'soak/session/#' >>"$WORK/session.out" 2>&1 || true
        sleep 5
    done
}
session_publisher() {
    local i=0
    while (( $(date +%s) < END )); do
        i=$((i + 1))
        mosquitto_pub -h 127.0.0.1 -p "$SANDBOX_PORT" -q 1 -i soak-session-pub \
            -t "soak/session/$i" -m "queued $i" >>"$WORK/session-pub.out" 2>&1 || true
        sleep 0.1
    done
}
enroll_loop & LOADERS+=($!)
cycle_loop & LOADERS+=($!)
retained_loop & LOADERS+=($!)
session_loop & LOADERS+=($!)
session_publisher & LOADERS+=($!)

# p99 (ms) of a loadtest JSON report: the largest p99 over its phases (empty if none yet).
p99() {
    [[ -f "$1" ]] || { echo ""; return; }
    python3 - "$1" <<'EOF'
import json, sys
def walk(v):
    if isinstance(v, dict):
        if "p99" in v and isinstance(v["p99"], (int, float)):
            yield v["p99"]
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)
try:
    found = list(walk(json.load(open(sys.argv[1]))))
    print(f"{max(found):.3f}" if found else "")
except Exception:
    print("")
EOF
}

CSV="$OUT/soak.csv"
echo "seconds,rss_kib,fds,threads,enroll_p99_ms,cycle_p99_ms" >"$CSV"
START=$(date +%s)
while (( $(date +%s) < END )); do
    kill -0 "$FG_PID" 2>/dev/null || die "fleetgate died (log: $WORK/fleetgate.log)"
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$FG_PID/status")"
    threads="$(awk '/^Threads:/ {print $2}' "/proc/$FG_PID/status")"
    fds="$(find "/proc/$FG_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    echo "$(( $(date +%s) - START )),$rss,$fds,$threads,$(p99 "$WORK/enroll.json"),$(p99 "$WORK/cycle.json")" >>"$CSV"
    sleep 10
done
for p in "${LOADERS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADERS=()

python3 - "$CSV" "$WORK" <<'EOF' | tee "$OUT/summary.txt"
import csv, sys, re, glob
rows = list(csv.DictReader(open(sys.argv[1])))
def col(name, part):
    vals = [float(r[name]) for r in part if r[name]]
    return sum(vals) / len(vals) if vals else float("nan")
q = max(1, len(rows) // 4)
first, last = rows[:q], rows[-q:]
print(f"samples: {len(rows)} over {rows[-1]['seconds']} s")
for name in ["rss_kib", "fds", "threads", "enroll_p99_ms", "cycle_p99_ms"]:
    a, b = col(name, first), col(name, last)
    vals = [float(r[name]) for r in rows if r[name]]
    print(f"{name:14} first quarter {a:10.1f}  last quarter {b:10.1f}  "
          f"min {min(vals) if vals else float('nan'):10.1f}  max {max(vals) if vals else float('nan'):10.1f}")
work = sys.argv[2]
def runs(name):
    path = f"{work}/{name}.runs"
    return len(open(path).read().split()) if glob.glob(path) else 0
print(f"enroll runs: {runs('enroll')} (200 devices each), cycle runs: {runs('cycle')} (500 clients each)")
EOF
