#!/usr/bin/env bash
# The `cycle` scenario of fleetgate-loadtest against Fleetgate and against Mosquitto, on the
# same machine, in one command, reported as Fleetgate/Mosquitto ratios (docs/benchmarks.md,
# "Fleetgate vs Mosquitto"), in three comparisons:
#   operational: Fleetgate's operational endpoint (a provisioned device's login) vs anonymous
#                Mosquitto;
#   sandbox:     Fleetgate's anonymous sandbox listener (PROTOCOL.md 6.1) vs anonymous
#                Mosquitto, both with `cycle --sandbox` and the default topic;
#   enrollment:  Fleetgate's shared-credential enrollment (`enroll --shared-credentials`, N
#                devices, PROV-V1) vs anonymous Mosquitto's `cycle` rate (issue 17).
#
#   benches/compare-mosquitto.sh [--clients N] [--concurrency C] [--rounds R]
#                                [--protocol 5|3.1.1] [--only operational|sandbox|enrollment]
#                                [--no-build]
#
# What it does:
#  1. cargo build --release -p fleetgate -p fleetgate-loadtest (unless --no-build);
#  2. installs mosquitto + mosquitto-clients with apt-get if missing, starts mosquitto on
#     127.0.0.1 (free port, anonymous, unlimited connections, no persistence, TCP_NODELAY like
#     Fleetgate's listeners);
#  3. starts target/release/fleetgate serve on 127.0.0.1 (free ports, temp data dir, default
#     durable storage; the sandbox listener on when the sandbox comparison runs);
#  4. creates account `cmp` and one provision request (client ID `cmp-device`, reserveUser false,
#     connectionCoupling LOOSE) through the admin API, and runs its PROV-V1 exchange with
#     mosquitto_rr (one connection: subscribe to the reply topic, publish the request, wait for
#     the reply, PUBACK it) to obtain the operational user `cmp-device@cmp` and its password.
#     Under LOOSE coupling with a non-reserved user, every cycle client ID of the account may
#     connect as that user;
#  5. operational: runs `fleetgate-loadtest cycle` R times against each broker with the same
#     flags, alternating (M F, F M, M F, ...); Fleetgate runs use `--topic cmp/{client_id}/cycle`,
#     the only topics the operational ACL lets a device use besides `$EDC/cmp/{client_id}/#`;
#     sandbox: the same, with `--sandbox` (anonymous clients) against both brokers;
#     enrollment: `fleetgate-loadtest enroll --shared-credentials --devices N` into account `enr`
#     (a run id per run, so every run enrolls new devices) against the sandbox comparison's
#     Mosquitto cycle, alternating the same way;
#  6. prints per-run figures, medians and the ratios Fleetgate/Mosquitto of each comparison,
#     and writes them to summary.json (`{"operational": {...}, "sandbox": {...}, ...}`).
# Everything listens on loopback only; everything it starts is stopped on exit. Logs, reports and
# the summary stay in the work directory printed at the start.
set -euo pipefail

CLIENTS=2000
CONCURRENCY=100
ROUNDS=3
PROTOCOL=5
BUILD=1
ONLY=""

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --protocol) PROTOCOL="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$ONLY" in
"") COMPARISONS=(operational sandbox enrollment) ;;
operational | sandbox | enrollment) COMPARISONS=("$ONLY") ;;
*) echo "error: --only must be operational, sandbox or enrollment" >&2; exit 2 ;;
esac
wants() { [[ " ${COMPARISONS[*]} " == *" $1 "* ]]; }
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
find_mosquitto
start_mosquitto mosquitto "allow_anonymous true"
MQ_PORT=$MOSQ_PORT
echo "== mosquitto pid $MOSQ_PID on 127.0.0.1:$MQ_PORT ($MOSQ_VERSION; log: $WORK/mosquitto.log)"

# ---------------------------------------------------------------- 3. fleetgate
SANDBOX_PORT=""
if wants sandbox; then
    SANDBOX_PORT="$(free_port)"
    FLEETGATE_OPERATIONAL_SANDBOX_LISTEN="127.0.0.1:$SANDBOX_PORT" \
        start_fleetgate "$FLEETGATE" "$WORK/fleetgate-data" "$WORK/fleetgate.log"
    wait_port "fleetgate sandbox" "$SANDBOX_PORT" "$FG_PID" "$WORK/fleetgate.log"
else
    start_fleetgate "$FLEETGATE" "$WORK/fleetgate-data" "$WORK/fleetgate.log"
fi
echo "== fleetgate pid $FG_PID: provisioning 127.0.0.1:$PROV_PORT, operational" \
    "127.0.0.1:$OPER_PORT${SANDBOX_PORT:+, sandbox 127.0.0.1:$SANDBOX_PORT}, API $API" \
    "(log: $WORK/fleetgate.log)"

# ---------------------------------------------------------------- 4. one LOOSE device
ACCOUNT=cmp
if wants operational; then
    provision_loose_device "$ACCOUNT"
    echo "== provisioned $ACCOUNT-device: operational user $DEV_USER (LOOSE, not reserved)"
fi
if wants enrollment; then
    api_post /api/v1/accounts '{"name":"enr"}' "$WORK/account-enr.json"
fi

# ---------------------------------------------------------------- 5. runs
COMMON=(cycle --clients "$CLIENTS" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL")

# One run of comparison $1 against broker $2 (mosquitto | fleetgate): run id $3, report
# $WORK/$4.json, $5 clients. Both brokers of a comparison get the same flags but where to
# connect and how to log in.
cycle() {
    local comparison="$1" broker="$2" id="$3" name="$4" clients="$5" flags
    case "$comparison/$broker" in
    operational/mosquitto) flags=(--broker "mqtt://127.0.0.1:$MQ_PORT") ;;
    operational/fleetgate)
        flags=(--broker "mqtt://127.0.0.1:$OPER_PORT" --username "$DEV_USER"
            --password "$DEV_PASS" --topic "$ACCOUNT/{client_id}/cycle" --api "$API") ;;
    sandbox/mosquitto | enrollment/mosquitto)
        flags=(--sandbox --broker "mqtt://127.0.0.1:$MQ_PORT") ;;
    sandbox/fleetgate) flags=(--sandbox --broker "mqtt://127.0.0.1:$SANDBOX_PORT" --api "$API") ;;
    enrollment/fleetgate)
        "$LOADTEST" enroll --api "$API" --token "$TOKEN" --account enr \
            --provisioning "mqtt://127.0.0.1:$PROV_PORT" --devices "$clients" \
            --concurrency "$CONCURRENCY" --protocol "$PROTOCOL" --shared-credentials \
            --run-id "$id" --json "$WORK/$name.json" >"$WORK/$name.out" 2>&1 ||
            { cat "$WORK/$name.out" >&2; die "enroll against fleetgate failed ($name)"; }
        return ;;
    esac
    "$LOADTEST" cycle --clients "$clients" --concurrency "$CONCURRENCY" --protocol "$PROTOCOL" \
        "${flags[@]}" --run-id "$id" --json "$WORK/$name.json" >"$WORK/$name.out" 2>&1 ||
        { cat "$WORK/$name.out" >&2; die "cycle against $broker failed ($name)"; }
}

for comparison in "${COMPARISONS[@]}"; do
    tag="${comparison:0:1}"
    # Report names: the operational comparison keeps the ones it always had (mosquitto-1.json).
    infix=""
    [[ "$comparison" == operational ]] || infix="-$comparison"
    # A short warm-up of each (not reported): first connections, page cache, allocator.
    echo "== $comparison: warm-up (${CONCURRENCY} clients each, not reported)"
    for broker in mosquitto fleetgate; do
        cycle "$comparison" "$broker" "${broker:0:1}${tag}w" "warmup-$broker$infix" "$CONCURRENCY"
    done
    echo "== $comparison: $ROUNDS round(s) of cycle --clients $CLIENTS --concurrency" \
        "$CONCURRENCY --protocol $PROTOCOL"
    for r in $(seq 1 "$ROUNDS"); do
        order=(mosquitto fleetgate)
        ((r % 2 == 1)) || order=(fleetgate mosquitto)
        for broker in "${order[@]}"; do
            echo "-- $comparison round $r: $broker"
            cycle "$comparison" "$broker" "${broker:0:1}${tag}$r" "$broker$infix-$r" "$CLIENTS"
        done
    done
done

# ---------------------------------------------------------------- 6. tables
python3 - "$WORK" "$ROUNDS" "$MOSQ_VERSION" "${COMPARISONS[@]}" <<'EOF'
import json, statistics, sys

work, rounds, mosq_version, comparisons = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                           sys.argv[4:])
brokers = ("mosquitto", "fleetgate")

def figures(rep):
    # An enroll report (the enrollment comparison) puts enrollments per second in the column
    # of cycles, its connect-to-reply in total and its request-to-reply in roundtrip: the
    # ratio the issue asks for.
    enroll = rep["scenario"] == "enroll"
    rate, total, roundtrip, count = (
        ("enrollments_per_second", "enrollment", "reply", "devices") if enroll
        else ("cycles_per_second", "total", "roundtrip", "clients"))
    lat = rep["latency_ms"]
    return {
        "cycles_per_second": rep[rate],
        "total_p50_ms": lat[total]["p50"],
        "total_p99_ms": lat[total]["p99"],
        "connect_p50_ms": lat["connect"]["p50"],
        "connect_p99_ms": lat["connect"]["p99"],
        "roundtrip_p50_ms": lat[roundtrip]["p50"],
        "roundtrip_p99_ms": lat[roundtrip]["p99"],
        "failed": rep[count]["failed"],
    }

cols = ["cycles_per_second", "total_p50_ms", "total_p99_ms", "connect_p50_ms",
        "connect_p99_ms", "roundtrip_p50_ms", "roundtrip_p99_ms"]
heads = ["cycles/s", "total p50", "total p99", "conn p50", "conn p99", "rt p50", "rt p99"]

def compare(comparison):
    # The operational comparison keeps its report names (mosquitto-1.json, ...).
    infix = "" if comparison == "operational" else f"-{comparison}"
    runs = {b: [json.load(open(f"{work}/{b}{infix}-{r}.json")) for r in range(1, rounds + 1)]
            for b in brokers}
    per_run = {b: [figures(rep) for rep in runs[b]] for b in brokers}
    median = {b: {c: statistics.median(f[c] for f in per_run[b]) for c in cols} for b in brokers}
    ratio = {c: median["fleetgate"][c] / median["mosquitto"][c] if median["mosquitto"][c]
             else None for c in cols}
    round_ratios = [f["cycles_per_second"] / m["cycles_per_second"]
                    for f, m in zip(per_run["fleetgate"], per_run["mosquitto"])]
    # Mosquitto always runs `cycle`; Fleetgate enrolls in the enrollment comparison (its
    # columns: enrollments/s, connect to reply, connect, request to reply).
    cfg = runs["mosquitto"][0]["config"]
    what = ("Fleetgate enroll --shared-credentials vs Mosquitto cycle"
            if comparison == "enrollment" else "cycle")
    print()
    print(f"{comparison}: {what}, {cfg['clients']} clients, concurrency {cfg['concurrency']},"
          f" MQTT {cfg['protocol']}; latencies in ms; {mosq_version}")
    print(f"{'run':<16}" + "".join(f"{h:>11}" for h in heads))
    for b in brokers:
        for r, f in enumerate(per_run[b], 1):
            print(f"{b + ' #' + str(r):<16}" + "".join(f"{f[c]:>11.1f}" for c in cols))
    for b in brokers:
        print(f"{b + ' median':<16}" + "".join(f"{median[b][c]:>11.1f}" for c in cols))
    print(f"{'ratio F/M':<16}" + "".join(
        f"{ratio[c]:>11.2f}" if ratio[c] is not None else f"{'-':>11}" for c in cols))
    print()
    print(f"{comparison}: cycles/s Fleetgate/Mosquitto: ratio of medians "
          f"{ratio['cycles_per_second']:.2f}, median of per-round ratios "
          f"{statistics.median(round_ratios):.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in round_ratios)})")
    return {"config": cfg, "mosquitto_version": mosq_version, "runs": per_run, "median": median,
            "ratio_fleetgate_over_mosquitto": ratio,
            "cycles_per_second_round_ratios": round_ratios}

json.dump({c: compare(c) for c in comparisons}, open(f"{work}/summary.json", "w"), indent=2)
print(f"summary: {work}/summary.json")
EOF
