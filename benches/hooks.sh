#!/usr/bin/env bash
# HTTP hook decisions per second (HOOKS.md 2; docs/benchmarks.md "Issue 13"), in one command:
# target/release/fleetgate with one provisioned device, and `hook-load` (benches/src/bin) driving
# keep-alive connections for S seconds per run, alternating in each round:
#   healthz:  GET /healthz on the admin listener (the same ntex HTTP stack, no decision): the
#             reference;
#   authz:    EMQX authorization of the device's publish (a store snapshot, the identity rules,
#             the ACL);
#   authn:    EMQX authentication of the device (plus the keyed fast hash, the rules list and a
#             group-committed lastAuthenticatedOn write).
# Prints each run and the medians, with each decision's ratio to the reference.
#
#   benches/hooks.sh [--connections N] [--seconds S] [--rounds R] [--no-build]
set -euo pipefail

CONNECTIONS=32
SECONDS_PER_RUN=5
ROUNDS=3
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--connections N] [--seconds S] [--rounds R] [--no-build]" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/fleetgate-hooks-bench.XXXXXX)"
echo "== work directory: $WORK"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'stop fleetgate "$FG_PID"' EXIT INT TERM

if [[ $BUILD == 1 ]]; then
    cargo build --release -p fleetgate -p fleetgate-benches --bin fleetgate --bin hook-load
fi
command -v mosquitto_rr >/dev/null || apt_install mosquitto-clients
start_fleetgate "$ROOT/target/release/fleetgate" "$WORK/data" "$WORK/fleetgate.log"
provision_loose_device bench
LOAD="$ROOT/target/release/hook-load"
HOOKS_ADDR="${HOOKS#http://}"
ADMIN_ADDR="${API#http://}"
AUTH="Authorization: Bearer $HOOKS_TOKEN"
AUTHZ="{\"clientid\":\"bench-device\",\"username\":\"$DEV_USER\",\"action\":\"publish\",\"topic\":\"bench/bench-device/t\",\"qos\":1,\"retain\":false}"
AUTHN="{\"clientid\":\"bench-device\",\"username\":\"$DEV_USER\",\"password\":\"$DEV_PASS\",\"peerhost\":\"127.0.0.1\"}"

run() {
    local name="$1"; shift
    "$LOAD" "$@" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" | tee -a "$WORK/$name.jsonl"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r"
    run healthz "$ADMIN_ADDR" /healthz
    run authz "$HOOKS_ADDR" /hooks/emqx/authz --header "$AUTH" --body "$AUTHZ" --expect '"allow"'
    run authn "$HOOKS_ADDR" /hooks/emqx/authn --header "$AUTH" --body "$AUTHN" --expect '"allow"'
done

python3 - "$WORK" <<'PY'
import json, statistics, sys
work = sys.argv[1]
med = {}
for name in ("healthz", "authz", "authn"):
    runs = [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
    bad = sum(r["unexpected"] + r["failed_connections"] for r in runs)
    if bad:
        sys.exit(f"{name}: {bad} unexpected answers or failed connections")
    med[name] = statistics.median(r["per_second"] for r in runs)
for name in ("healthz", "authz", "authn"):
    print(f"{name:8} median {med[name]:>9,.0f}/s   ratio to healthz {med[name] / med['healthz']:.2f}")
PY
