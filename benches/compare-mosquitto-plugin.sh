#!/usr/bin/env bash
# The `cycle` rate of Mosquitto with Fleetgate's native plugin (HOOKS.md 3) against the same
# Mosquitto without it, same loadtest flags, alternating rounds (docs/benchmarks.md, "Issue 13").
#
#   benches/compare-mosquitto-plugin.sh [--clients N] [--concurrency C] [--rounds R]
#                                       [--protocol 5|3.1.1] [--profile release|debug]
#                                       [--plugin-profile release|debug] [--no-build]
#
# What it does:
#  1. cargo build (--release unless --profile debug) -p fleetgate -p fleetgate-loadtest, and the
#     plugin (-p fleetgate-mosquitto) with --plugin-profile (default: --profile), unless
#     --no-build. Fleetgate is not on the measured path (it serves the feed and the events);
#     the loadtest is the same for both brokers;
#  2. starts Fleetgate (free loopback ports, temp data dir, hook listener on) and provisions one
#     LOOSE device `cmp-device@cmp` (benches/lib/common.sh), whose identity every cycle client
#     ID of account `cmp` may use;
#  3. starts two Mosquittos on loopback (no persistence, unlimited connections, TCP_NODELAY):
#     `plain` (anonymous allowed, no plugin: it accepts any credentials) and `plugin`
#     (`allow_anonymous false`, the plugin following that Fleetgate's replica feed);
#  4. runs `fleetgate-loadtest cycle` R times against each with the same flags (the device's
#     username and password, topic `cmp/{client_id}/cycle`), alternating (P G, G P, ...), after a
#     short warm-up of each;
#  5. prints per-run figures, medians, and the ratio plugin/plain of cycles per second, and
#     writes them to summary.json.
# Everything listens on loopback and is stopped on exit; logs and reports stay in the work
# directory printed at the start.
set -euo pipefail

CLIENTS=2000
CONCURRENCY=100
ROUNDS=3
PROTOCOL=5
PROFILE=release
PLUGIN_PROFILE=""
BUILD=1

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --protocol) PROTOCOL="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --plugin-profile) PLUGIN_PROFILE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
PLUGIN_PROFILE="${PLUGIN_PROFILE:-$PROFILE}"
for p in "$PROFILE" "$PLUGIN_PROFILE"; do
    [[ "$p" == release || "$p" == debug ]] || { echo "error: profiles are release or debug" >&2; exit 2; }
done
PROFILE_FLAG=()
[[ "$PROFILE" == debug ]] || PROFILE_FLAG=(--release)
PLUGIN_PROFILE_FLAG=()
[[ "$PLUGIN_PROFILE" == debug ]] || PLUGIN_PROFILE_FLAG=(--release)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-mosquitto-plugin.XXXXXX")"
echo "== work directory (logs, reports, summary): $WORK"

# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"

FG_PID=""
PLAIN_PID=""
PLUGIN_PID=""
cleanup() {
    local status=$?
    set +e
    stop "mosquitto (plugin)" "$PLUGIN_PID"
    stop "mosquitto (plain)" "$PLAIN_PID"
    stop fleetgate "$FG_PID"
    rm -rf "$WORK/fleetgate-data"
    [[ $status -eq 0 ]] && echo "== done; logs and reports kept in $WORK" ||
        echo "== FAILED (exit $status); logs in $WORK" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$ROOT"
if [[ $BUILD -eq 1 ]]; then
    echo "== building ($PROFILE; log: $WORK/build.log)"
    { cargo build "${PROFILE_FLAG[@]}" -p fleetgate -p fleetgate-loadtest &&
        cargo build "${PLUGIN_PROFILE_FLAG[@]}" -p fleetgate-mosquitto; } >"$WORK/build.log" 2>&1 ||
        { tail -n 30 "$WORK/build.log" >&2; die "cargo build failed (log: $WORK/build.log)"; }
fi
BIN="$ROOT/target/$PROFILE"
FLEETGATE="$BIN/fleetgate"
LOADTEST="$BIN/fleetgate-loadtest"
PLUGIN="$ROOT/target/$PLUGIN_PROFILE/libfleetgate_mosquitto.so"
for f in "$FLEETGATE" "$LOADTEST" "$PLUGIN"; do [[ -e "$f" ]] || die "missing $f (build first)"; done
find_mosquitto

start_fleetgate "$FLEETGATE" "$WORK/fleetgate-data" "$WORK/fleetgate.log"
ACCOUNT=cmp
provision_loose_device "$ACCOUNT"
echo "== fleetgate pid $FG_PID (hooks $HOOKS); device user $DEV_USER"

# Both as root: the plugin's library is under root's directories.
start_mosquitto plain "user root
allow_anonymous true"
PLAIN_PORT=$MOSQ_PORT PLAIN_PID=$MOSQ_PID
start_mosquitto plugin "user root
allow_anonymous false
plugin $PLUGIN
plugin_opt_url $HOOKS
plugin_opt_token $HOOKS_TOKEN"
PLUGIN_PORT=$MOSQ_PORT PLUGIN_PID=$MOSQ_PID
echo "== mosquitto plain :$PLAIN_PORT (pid $PLAIN_PID), with plugin :$PLUGIN_PORT (pid $PLUGIN_PID)"

# One run against $1 (plain | plugin): run id $2, report $WORK/$3.json, $4 clients.
cycle() {
    local broker="$1" id="$2" name="$3" clients="$4" port
    [[ "$broker" == plain ]] && port=$PLAIN_PORT || port=$PLUGIN_PORT
    "$LOADTEST" cycle --clients "$clients" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL" \
        --broker "mqtt://127.0.0.1:$port" --username="$DEV_USER" --password="$DEV_PASS" \
        --topic "$ACCOUNT/{client_id}/cycle" --run-id "$id" --json "$WORK/$name.json" \
        >"$WORK/$name.out" 2>&1 ||
        { cat "$WORK/$name.out" >&2; die "cycle against $broker failed ($name)"; }
}

echo "== warm-up (${CONCURRENCY} clients each, not reported)"
for broker in plain plugin; do cycle "$broker" "${broker:0:2}w" "warmup-$broker" "$CONCURRENCY"; done
echo "== $ROUNDS round(s) of cycle --clients $CLIENTS --concurrency $CONCURRENCY --protocol $PROTOCOL"
for r in $(seq 1 "$ROUNDS"); do
    order=(plain plugin)
    ((r % 2 == 1)) || order=(plugin plain)
    for broker in "${order[@]}"; do
        echo "-- round $r: $broker"
        cycle "$broker" "${broker:0:2}$r" "$broker-$r" "$CLIENTS"
    done
done

python3 - "$WORK" "$ROUNDS" "$MOSQ_VERSION" "$PROFILE, plugin $PLUGIN_PROFILE" <<'PY'
import json, statistics, sys

work, rounds, version, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
brokers = ("plain", "plugin")
runs = {b: [json.load(open(f"{work}/{b}-{r}.json")) for r in range(1, rounds + 1)] for b in brokers}

def figures(rep):
    lat = rep["latency_ms"]
    return {"cycles_per_second": rep["cycles_per_second"], "connect_p50_ms": lat["connect"]["p50"],
            "connect_p99_ms": lat["connect"]["p99"], "total_p50_ms": lat["total"]["p50"],
            "total_p99_ms": lat["total"]["p99"], "failed": rep["clients"]["failed"]}

per_run = {b: [figures(rep) for rep in runs[b]] for b in brokers}
cols = ["cycles_per_second", "connect_p50_ms", "connect_p99_ms", "total_p50_ms", "total_p99_ms",
        "failed"]
median = {b: {c: statistics.median(f[c] for f in per_run[b]) for c in cols} for b in brokers}
ratio = median["plugin"]["cycles_per_second"] / median["plain"]["cycles_per_second"]
cfg = runs["plain"][0]["config"]
print()
print(f"cycle, {cfg['clients']} clients, concurrency {cfg['concurrency']}, MQTT {cfg['protocol']};"
      f" {version}; {profile} build; latencies in ms")
print(f"{'run':<16}" + "".join(f"{c:>18}" for c in cols))
for b in brokers:
    for r, f in enumerate(per_run[b], 1):
        print(f"{b + ' #' + str(r):<16}" + "".join(f"{f[c]:>18.1f}" for c in cols))
for b in brokers:
    print(f"{b + ' median':<16}" + "".join(f"{median[b][c]:>18.1f}" for c in cols))
print(f"\ncycles/s with the plugin / without: {ratio:.2f} (ratio of medians; goal >= 0.9)")
json.dump({"config": cfg, "mosquitto_version": version, "profile": profile, "runs": per_run,
           "median": median, "ratio_plugin_over_plain": ratio},
          open(f"{work}/summary.json", "w"), indent=2)
PY
