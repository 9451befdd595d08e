#!/usr/bin/env bash
# Two Fleetgate builds, the same load, one command: the shared-credential enrollment rate and the
# operational `cycle` rate of build A (the reference) and build B, on fresh servers, alternating
# (A B, B A, A B, ...), reported as medians and B/A ratios (docs/benchmarks.md, "Redesign:
# before and after").
#
#   benches/compare-builds.sh A_FLEETGATE B_FLEETGATE [--loadtest BIN] [--rounds R]
#                             [--devices N] [--clients N]
#
# Per round and build: start the build's `fleetgate serve` (free loopback ports, temp data dir,
# durable storage, default argon2), `fleetgate-loadtest enroll --devices N --concurrency 200
# --shared-credentials` into account `bench`, provision one LOOSE device of account `cmp` with
# mosquitto_rr, `fleetgate-loadtest cycle --clients N --concurrency 100 --protocol 5` as that
# device's user, stop the server. One loadtest binary drives both builds (default:
# target/release/fleetgate-loadtest). Logs and JSON reports stay in the work directory printed
# at the start; summary.json holds the figures.
set -euo pipefail

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

[[ $# -ge 2 ]] || { usage >&2; exit 2; }
A_BIN="$(realpath "$1")"
B_BIN="$(realpath "$2")"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOADTEST="$ROOT/target/release/fleetgate-loadtest"
ROUNDS=3
DEVICES=2000
CLIENTS=2000
while [[ $# -gt 0 ]]; do
    case "$1" in
    --loadtest) LOADTEST="$(realpath "$2")"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --devices) DEVICES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in ROUNDS DEVICES CLIENTS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "error: --${v,,} must be a positive integer" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-builds.XXXXXX")"
echo "== work directory (logs, reports, summary): $WORK"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'status=$?; set +e; stop fleetgate "$FG_PID"; rm -rf "$WORK"/data-*; exit $status' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for bin in "$A_BIN" "$B_BIN" "$LOADTEST"; do
    [[ -x "$bin" ]] || die "not an executable: $bin"
done
command -v mosquitto_rr >/dev/null || apt_install mosquitto-clients
ulimit -n 20000 2>/dev/null || true

# One measurement of build $1 (label $2) in round $3.
measure() {
    local bin="$1" label="$2" r="$3"
    echo "-- round $r: $label"
    start_fleetgate "$bin" "$WORK/data-$label-$r" "$WORK/server-$label-$r.log"
    api_post /api/v1/accounts '{"name":"bench"}' "$WORK/account-bench.json"
    "$LOADTEST" enroll --api "$API" --token "$TOKEN" --account bench \
        --provisioning "mqtt://127.0.0.1:$PROV_PORT" --devices "$DEVICES" --concurrency 200 \
        --shared-credentials --run-id "e${label,,}$r" --json "$WORK/enroll-$label-$r.json" \
        >"$WORK/enroll-$label-$r.out" 2>&1 ||
        { cat "$WORK/enroll-$label-$r.out" >&2; die "enroll against $label failed (round $r)"; }
    provision_loose_device cmp
    "$LOADTEST" cycle --clients "$CLIENTS" --concurrency 100 --protocol 5 \
        --broker "mqtt://127.0.0.1:$OPER_PORT" --username "$DEV_USER" --password "$DEV_PASS" \
        --topic "cmp/{client_id}/cycle" --run-id "c${label,,}$r" --json "$WORK/cycle-$label-$r.json" \
        >"$WORK/cycle-$label-$r.out" 2>&1 ||
        { cat "$WORK/cycle-$label-$r.out" >&2; die "cycle against $label failed (round $r)"; }
    stop fleetgate "$FG_PID"
    FG_PID=""
}

echo "== A = $A_BIN"
echo "== B = $B_BIN"
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2 == 1)); then
        measure "$A_BIN" A "$r"
        measure "$B_BIN" B "$r"
    else
        measure "$B_BIN" B "$r"
        measure "$A_BIN" A "$r"
    fi
done

python3 - "$WORK" "$ROUNDS" <<'EOF'
import json, statistics, sys

work, rounds = sys.argv[1], int(sys.argv[2])
def load(kind, label):
    return [json.load(open(f"{work}/{kind}-{label}-{r}.json")) for r in range(1, rounds + 1)]
rates = {
    ("enroll", b): [rep["enrollments_per_second"] for rep in load("enroll", b)]
    for b in "AB"
}
rates.update({("cycle", b): [rep["cycles_per_second"] for rep in load("cycle", b)] for b in "AB"})
summary = {}
for kind, unit in (("enroll", "enrollments/s (shared credentials)"), ("cycle", "cycles/s")):
    a, b = rates[(kind, "A")], rates[(kind, "B")]
    ma, mb = statistics.median(a), statistics.median(b)
    per_round = [y / x for x, y in zip(a, b)]
    summary[kind] = {"A": a, "B": b, "median_A": ma, "median_B": mb, "ratio_B_over_A": mb / ma,
                     "round_ratios": per_round}
    print(f"{unit}: A {', '.join(f'{x:.0f}' for x in a)} (median {ma:.0f}); "
          f"B {', '.join(f'{x:.0f}' for x in b)} (median {mb:.0f}); "
          f"B/A {mb / ma:.3f} (per round {', '.join(f'{x:.2f}' for x in per_round)})")
json.dump(summary, open(f"{work}/summary.json", "w"), indent=2)
print(f"summary: {work}/summary.json")
EOF
