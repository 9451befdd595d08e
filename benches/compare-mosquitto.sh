#!/usr/bin/env bash
# The `cycle` scenario of fleetgate-loadtest against Fleetgate's operational endpoint and
# against Mosquitto, on the same machine, in one command, reported as Fleetgate/Mosquitto ratios
# (docs/benchmarks.md, "Fleetgate vs Mosquitto").
#
#   benches/compare-mosquitto.sh [--clients N] [--concurrency C] [--rounds R]
#                                [--protocol 5|3.1.1] [--no-build]
#
# What it does:
#  1. cargo build --release -p fleetgate -p fleetgate-loadtest (unless --no-build);
#  2. installs mosquitto + mosquitto-clients with apt-get if missing, starts mosquitto on
#     127.0.0.1 (free port, anonymous, unlimited connections, no persistence, TCP_NODELAY like
#     Fleetgate's listeners);
#  3. starts target/release/fleetgate serve on 127.0.0.1 (free ports, temp data dir, default
#     durable storage);
#  4. creates account `cmp` and one provision request (client ID `cmp-device`, reserveUser false,
#     connectionCoupling LOOSE) through the admin API, and runs its PROV-V1 exchange with
#     mosquitto_rr (one connection: subscribe to the reply topic, publish the request, wait for
#     the reply, PUBACK it) to obtain the operational user `cmp-device@cmp` and its password.
#     Under LOOSE coupling with a non-reserved user, every cycle client ID of the account may
#     connect as that user;
#  5. runs `fleetgate-loadtest cycle` R times against each broker with the same flags,
#     alternating (M F, F M, M F, ...); Fleetgate runs use `--topic cmp/{client_id}/cycle`, the
#     only topics the operational ACL lets a device use besides `$EDC/cmp/{client_id}/#`;
#  6. prints per-run figures, medians and the ratios Fleetgate/Mosquitto, and writes them to
#     summary.json.
# Everything listens on loopback only; everything it starts is stopped on exit. Logs, reports and
# the summary stay in the work directory printed at the start.
set -euo pipefail

CLIENTS=2000
CONCURRENCY=100
ROUNDS=3
PROTOCOL=5
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
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in CLIENTS CONCURRENCY ROUNDS; do
    if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --${v,,} must be a positive integer" >&2
        exit 2
    fi
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-vs-mosquitto.XXXXXX")"
echo "== work directory (logs, reports, summary): $WORK"

# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"

MOSQ_PID=""
FG_PID=""

cleanup() {
    local status=$?
    set +e
    stop fleetgate "$FG_PID"
    stop mosquitto "$MOSQ_PID"
    rm -rf "$WORK/fleetgate-data"
    if [[ $status -ne 0 ]]; then
        echo "== FAILED (exit $status). Logs: $WORK/mosquitto.log, $WORK/fleetgate.log," \
            "loadtest output: $WORK/*.out" >&2
    else
        echo "== done; logs and reports kept in $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. build
cd "$ROOT"
if [[ $BUILD -eq 1 ]]; then
    echo "== building release binaries (log: $WORK/build.log)"
    cargo build --release -p fleetgate -p fleetgate-loadtest >"$WORK/build.log" 2>&1 ||
        { tail -n 30 "$WORK/build.log" >&2; die "cargo build failed (log: $WORK/build.log)"; }
fi
FLEETGATE="$ROOT/target/release/fleetgate"
LOADTEST="$ROOT/target/release/fleetgate-loadtest"
[[ -x "$FLEETGATE" && -x "$LOADTEST" ]] || die "missing $FLEETGATE or $LOADTEST (build first)"

# ---------------------------------------------------------------- 2. mosquitto
MOSQUITTO="$(command -v mosquitto || true)"
[[ -n "$MOSQUITTO" || ! -x /usr/sbin/mosquitto ]] || MOSQUITTO=/usr/sbin/mosquitto
if [[ -z "$MOSQUITTO" ]] || ! command -v mosquitto_rr >/dev/null; then
    apt_install mosquitto mosquitto-clients
    MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
fi
[[ -x "$MOSQUITTO" ]] || die "mosquitto not found after installation"
command -v mosquitto_rr >/dev/null || die "mosquitto_rr (package mosquitto-clients) not found"

MQ_PORT="$(free_port)"
cat >"$WORK/mosquitto.conf" <<EOF
# Written by benches/compare-mosquitto.sh
listener $MQ_PORT 127.0.0.1
allow_anonymous true
max_connections -1
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF
# A root mosquitto drops privileges to user `mosquitto`; it only reads its config, and the shell
# writes the log.
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
MOSQ_PID=$!
wait_port mosquitto "$MQ_PORT" "$MOSQ_PID" "$WORK/mosquitto.log"
MOSQ_VERSION="$("$MOSQUITTO" -h 2>/dev/null | head -n 1 || true)"
echo "== mosquitto pid $MOSQ_PID on 127.0.0.1:$MQ_PORT ($MOSQ_VERSION; log: $WORK/mosquitto.log)"

# ---------------------------------------------------------------- 3. fleetgate
start_fleetgate "$FLEETGATE" "$WORK/fleetgate-data" "$WORK/fleetgate.log"
echo "== fleetgate pid $FG_PID: provisioning 127.0.0.1:$PROV_PORT, operational" \
    "127.0.0.1:$OPER_PORT, API $API (log: $WORK/fleetgate.log)"

# ---------------------------------------------------------------- 4. one LOOSE device
ACCOUNT=cmp
provision_loose_device "$ACCOUNT"
echo "== provisioned $ACCOUNT-device: operational user $DEV_USER (LOOSE, not reserved)"

# ---------------------------------------------------------------- 5. runs
COMMON=(cycle --clients "$CLIENTS" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL")
FG_TOPIC="$ACCOUNT/{client_id}/cycle"

run_mosquitto() {
    local r="$1"
    echo "-- round $r: mosquitto"
    "$LOADTEST" "${COMMON[@]}" --broker "mqtt://127.0.0.1:$MQ_PORT" --run-id "m$r" \
        --json "$WORK/mosquitto-$r.json" >"$WORK/mosquitto-$r.out" 2>&1 ||
        { cat "$WORK/mosquitto-$r.out" >&2; die "cycle against mosquitto failed (round $r)"; }
}
run_fleetgate() {
    local r="$1"
    echo "-- round $r: fleetgate"
    "$LOADTEST" "${COMMON[@]}" --broker "mqtt://127.0.0.1:$OPER_PORT" --run-id "f$r" \
        --username "$DEV_USER" --password "$DEV_PASS" --topic "$FG_TOPIC" --api "$API" \
        --json "$WORK/fleetgate-$r.json" >"$WORK/fleetgate-$r.out" 2>&1 ||
        { cat "$WORK/fleetgate-$r.out" >&2; die "cycle against fleetgate failed (round $r)"; }
}

# A short warm-up of each (not reported): first connections, page cache, allocator.
echo "== warm-up (${CONCURRENCY} clients each, not reported)"
"$LOADTEST" cycle --clients "$CONCURRENCY" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL" \
    --broker "mqtt://127.0.0.1:$MQ_PORT" --run-id mw --json "$WORK/warmup-mosquitto.json" \
    >"$WORK/warmup-mosquitto.out" 2>&1 || { cat "$WORK/warmup-mosquitto.out" >&2; die "warm-up against mosquitto failed"; }
"$LOADTEST" cycle --clients "$CONCURRENCY" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL" \
    --broker "mqtt://127.0.0.1:$OPER_PORT" --run-id fw --username "$DEV_USER" \
    --password "$DEV_PASS" --topic "$FG_TOPIC" --json "$WORK/warmup-fleetgate.json" \
    >"$WORK/warmup-fleetgate.out" 2>&1 || { cat "$WORK/warmup-fleetgate.out" >&2; die "warm-up against fleetgate failed"; }

echo "== $ROUNDS round(s) of cycle --clients $CLIENTS --concurrency $CONCURRENCY --protocol $PROTOCOL"
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2 == 1)); then
        run_mosquitto "$r"
        run_fleetgate "$r"
    else
        run_fleetgate "$r"
        run_mosquitto "$r"
    fi
done

# ---------------------------------------------------------------- 6. table
python3 - "$WORK" "$ROUNDS" "$MOSQ_VERSION" <<'EOF'
import json, statistics, sys

work, rounds, mosq_version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
brokers = ("mosquitto", "fleetgate")
runs = {b: [json.load(open(f"{work}/{b}-{r}.json")) for r in range(1, rounds + 1)] for b in brokers}

def figures(rep):
    lat = rep["latency_ms"]
    return {
        "cycles_per_second": rep["cycles_per_second"],
        "total_p50_ms": lat["total"]["p50"],
        "total_p99_ms": lat["total"]["p99"],
        "connect_p50_ms": lat["connect"]["p50"],
        "connect_p99_ms": lat["connect"]["p99"],
        "roundtrip_p50_ms": lat["roundtrip"]["p50"],
        "roundtrip_p99_ms": lat["roundtrip"]["p99"],
        "failed": rep["clients"]["failed"],
    }

cols = ["cycles_per_second", "total_p50_ms", "total_p99_ms", "connect_p50_ms",
        "connect_p99_ms", "roundtrip_p50_ms", "roundtrip_p99_ms"]
heads = ["cycles/s", "total p50", "total p99", "conn p50", "conn p99", "rt p50", "rt p99"]
per_run = {b: [figures(rep) for rep in runs[b]] for b in brokers}
median = {b: {c: statistics.median(f[c] for f in per_run[b]) for c in cols} for b in brokers}
ratio = {c: median["fleetgate"][c] / median["mosquitto"][c] if median["mosquitto"][c] else None
         for c in cols}
round_ratios = [f["cycles_per_second"] / m["cycles_per_second"]
                for f, m in zip(per_run["fleetgate"], per_run["mosquitto"])]

cfg = runs["fleetgate"][0]["config"]
print()
print(f"cycle: {cfg['clients']} clients, concurrency {cfg['concurrency']}, MQTT {cfg['protocol']};"
      f" latencies in ms; {mosq_version}")
print(f"{'run':<16}" + "".join(f"{h:>11}" for h in heads))
for b in brokers:
    for r, f in enumerate(per_run[b], 1):
        print(f"{b + ' #' + str(r):<16}" + "".join(f"{f[c]:>11.1f}" for c in cols))
for b in brokers:
    print(f"{b + ' median':<16}" + "".join(f"{median[b][c]:>11.1f}" for c in cols))
print(f"{'ratio F/M':<16}" + "".join(
    f"{ratio[c]:>11.2f}" if ratio[c] is not None else f"{'-':>11}" for c in cols))
print()
print(f"cycles/s Fleetgate/Mosquitto: ratio of medians {ratio['cycles_per_second']:.2f}, "
      f"median of per-round ratios {statistics.median(round_ratios):.2f} "
      f"(rounds: {', '.join(f'{x:.2f}' for x in round_ratios)})")
json.dump({"config": cfg, "mosquitto_version": mosq_version, "runs": per_run, "median": median,
           "ratio_fleetgate_over_mosquitto": ratio,
           "cycles_per_second_round_ratios": round_ratios},
          open(f"{work}/summary.json", "w"), indent=2)
print(f"summary: {work}/summary.json")
EOF
