#!/usr/bin/env bash
# Batch Jobs on "Device Connect" at fleet scale (issue 15; docs/benchmarks.md "Issue 15"), in one
# command: target/release/fleetgate with N registry devices and one DEVICE_CONNECT job (one
# configuration step) targeting them all, then `fleetgate-loadtest enroll --operational
# --kura-replies 1`: each simulated device enrolls over PROV-V1, reconnects with its new
# identity, behaves like Kura (subscribes to its $EDC tree, publishes a BIRTH) and answers the
# job's CONF-V1 PUT. Measured: the time from the first enrollment until every target is
# COMPLETED (polled on the job's target counts), and the enrollment + job rate.
# The reference in the same command, on a fresh server: the same enrollment and reconnect
# without a job (--operational only). Rounds alternate job / reference; prints medians and the
# ratio.
#
#   benches/jobs.sh [--devices N] [--concurrency C] [--rounds R] [--max-in-flight M] [--no-build]
set -euo pipefail

DEVICES=10000
CONCURRENCY=1000
ROUNDS=3
MAX_IN_FLIGHT=256
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --devices) DEVICES="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --max-in-flight) MAX_IN_FLIGHT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--devices N] [--concurrency C] [--rounds R] [--max-in-flight M] [--no-build]" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/fleetgate-jobs-bench.XXXXXX)"
echo "== work directory: $WORK"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'stop fleetgate "$FG_PID"' EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ $BUILD == 1 ]]; then
    cargo build --release -p fleetgate -p fleetgate-loadtest
fi
LOADTEST="$ROOT/target/release/fleetgate-loadtest"

# One run on a fresh server: $1 = job | reference, $2 = round.
run() {
    local kind="$1" round="$2" seed=7 run_id="r$2$1"
    local dir="$WORK/$kind-$round"
    mkdir -p "$dir"
    FLEETGATE_DEVICE_MANAGEMENT_MAX_IN_FLIGHT="$MAX_IN_FLIGHT" \
        start_fleetgate "$ROOT/target/release/fleetgate" "$dir/data" "$dir/fleetgate.log"
    api_post /api/v1/accounts '{"name":"bench"}' "$dir/account.json"
    local job_id=""
    if [[ $kind == job ]]; then
        # The loadtest names its devices lt-SEED-RUNID-I: the registry entries and the job's
        # targets are created first, as the seed's fleet manager does.
        job_id="$(python3 "$ROOT/benches/lib/jobs_setup.py" "$API" "$TOKEN" bench \
            "lt-$seed-$run_id-" "$DEVICES")"
    fi
    local start end
    start="$(date +%s.%N)"
    local extra=()
    [[ $kind == job ]] && extra=(--kura-replies 1)
    "$LOADTEST" enroll --api "$API" --token "$TOKEN" --account bench \
        --provisioning "mqtt://127.0.0.1:$PROV_PORT" \
        --operational-broker "mqtt://127.0.0.1:$OPER_PORT" \
        --devices "$DEVICES" --concurrency "$CONCURRENCY" --protocol 3.1.1 \
        --operational "${extra[@]}" --seed "$seed" --run-id "$run_id" --timeout 120 \
        --json "$dir/report.json" >"$dir/loadtest.out" 2>"$dir/loadtest.err" ||
        { tail -n 20 "$dir/loadtest.err" >&2; die "loadtest failed ($dir)"; }
    if [[ $kind == job ]]; then
        python3 "$ROOT/benches/lib/jobs_setup.py" "$API" "$TOKEN" bench --wait "$job_id" "$DEVICES" \
            >"$dir/job.json"
    fi
    end="$(date +%s.%N)"
    python3 - "$dir" "$kind" "$start" "$end" "$DEVICES" <<'PY' | tee -a "$WORK/results.jsonl"
import json, sys
d, kind, start, end, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
report = json.load(open(f"{d}/report.json"))
out = {"kind": kind, "devices": n, "completed": report["devices"]["completed"],
       "seconds": round(end - start, 2), "per_second": round(n / (end - start), 1),
       "enrollment_p99_ms": report["latency_ms"]["enrollment"]["p99"]}
if kind == "job":
    job = json.load(open(f"{d}/job.json"))
    out["job_completed"] = job["targetCounts"]["COMPLETED"]
    out["job_failed"] = job["targetCounts"]["FAILED"]
print(json.dumps(out))
PY
    stop fleetgate "$FG_PID"
    FG_PID=""
}

for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r"
    run job "$r"
    run reference "$r"
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for r in runs:
    if r["completed"] != r["devices"] or r.get("job_completed", r["devices"]) != r["devices"]:
        sys.exit(f"incomplete run: {r}")
med = {k: statistics.median(r["seconds"] for r in runs if r["kind"] == k) for k in ("job", "reference")}
n = runs[0]["devices"]
print(f"job:       all {n} COMPLETED in {med['job']:.1f} s (median), {n / med['job']:,.0f} enrollments + job steps/s")
print(f"reference: all {n} enrolled and reconnected in {med['reference']:.1f} s (median), {n / med['reference']:,.0f}/s")
print(f"ratio job/reference rate: {med['reference'] / med['job']:.2f}")
PY
