#!/usr/bin/env bash
# The million-device store (issue 17; docs/benchmarks.md "Issue 17: the million-device store"),
# in one command:
#   1. builds the release binaries (fleetgate, fleetgate-loadtest, store-sizes);
#   2. builds a store of N enrolled devices on target/release/fleetgate (default durable
#      storage, cache --cache-mib): `fleetgate-loadtest enroll --shared-credentials` in chunks
#      of at most 100,000 devices, through the real provisioning exchange; prints how long it
#      took and each chunk's rate;
#   3. enrollment rate on the big store against an empty one: R rounds, each a P-device enroll
#      on a fresh server (empty store) then the same on the big store; medians and their ratio;
#   4. the big server's RSS (VmRSS, VmHWM) against the configured cache;
#   5. the admin API's list and paging routes on the big store (benches/lib/scale_api.py):
#      p50 / p99 / max per route;
#   6. stops the server: disk per enrolled device (data dir, database file), and the record
#      sizes per table (store-sizes); then compacts the file (redb's compaction, which no
#      server path runs: it frees what redb's growth left inside the file) and gives the disk
#      per device again, and how long compaction took.
# Client IDs are `lt-1-fK-I` (13 to 16 characters; the loadtest's --seed 1 --run-id fK).
#
#   benches/scale.sh [--devices N] [--probe P] [--rounds R] [--concurrency C] [--cache-mib M]
#                    [--pages G] [--no-build]
# Everything listens on loopback only; everything it starts is stopped on exit. The work
# directory (printed first) keeps the logs, reports and summary.json; the stores are deleted
# at the end unless --keep.
set -euo pipefail

DEVICES=1000000
PROBE=20000
ROUNDS=3
CONCURRENCY=200
CACHE_MIB=64
PAGES=300
BUILD=1
KEEP=0
CHUNK=100000

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --devices) DEVICES="$2"; shift 2 ;;
    --probe) PROBE="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --cache-mib) CACHE_MIB="$2"; shift 2 ;;
    --pages) PAGES="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in DEVICES PROBE ROUNDS CONCURRENCY CACHE_MIB PAGES; do
    if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --${v,,} must be a positive integer" >&2
        exit 2
    fi
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-scale.XXXXXX")"
echo "== work directory (logs, reports, summary): $WORK"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
BIG_PID=""
cleanup() {
    stop fleetgate "$FG_PID"
    stop "fleetgate (big store)" "$BIG_PID"
    [[ $KEEP == 1 ]] || rm -rf "$WORK/big" "$WORK"/empty-*/data
}
trap cleanup EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -p fleetgate -p fleetgate-loadtest &&
        cargo build --release -p fleetgate-benches --bin store-sizes)
fi
BIN="$ROOT/target/release"
export FLEETGATE_STORAGE_CACHE_SIZE=$((CACHE_MIB * 1024 * 1024))

# enroll DIR RUN_ID DEVICES: one loadtest run against the server of API/PROV_PORT/OPER_PORT;
# prints its enrollments/s.
enroll() {
    local dir="$1" run_id="$2" n="$3"
    "$BIN/fleetgate-loadtest" enroll --api "$API" --token "$TOKEN" --account scale \
        --provisioning "mqtt://127.0.0.1:$PROV_PORT" \
        --operational-broker "mqtt://127.0.0.1:$OPER_PORT" \
        --devices "$n" --concurrency "$CONCURRENCY" --shared-credentials \
        --seed 1 --run-id "$run_id" --timeout 120 --allow-failures \
        --json "$dir/$run_id.json" >"$dir/$run_id.out" 2>"$dir/$run_id.err" ||
        { tail -n 20 "$dir/$run_id.err" >&2; die "loadtest $run_id failed ($dir)"; }
    python3 - "$dir/$run_id.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
done = r["devices"]["completed"]
if done != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: {done} of {sys.argv[2]} enrolled: {r['failures']}")
print(r["enrollments_per_second"])
PY
}

echo "== building a store of $DEVICES enrolled devices (chunks of at most $CHUNK)"
mkdir -p "$WORK/big"
start_fleetgate "$BIN/fleetgate" "$WORK/big/data" "$WORK/big/fleetgate.log"
BIG_PID="$FG_PID"
FG_PID=""
BIG_API="$API" BIG_TOKEN="$TOKEN" BIG_PROV="$PROV_PORT" BIG_OPER="$OPER_PORT"
api_post /api/v1/accounts '{"name":"scale"}' "$WORK/big/account.json"
fill_start="$(date +%s.%N)"
left="$DEVICES"
k=0
while [[ $left -gt 0 ]]; do
    n=$((left < CHUNK ? left : CHUNK))
    chunk_start="$(date +%s.%N)"
    rate="$(enroll "$WORK/big" "f$k" "$n")"
    chunk_end="$(date +%s.%N)"
    left=$((left - n))
    k=$((k + 1))
    printf '%s\n' "{\"chunk\": $k, \"devices\": $n, \"enrolled\": $((DEVICES - left)), \"enrollments_per_second\": $rate, \"wall_s\": $(python3 -c "print(round($chunk_end - $chunk_start, 1))")}" |
        tee -a "$WORK/fill.jsonl"
done
fill_end="$(date +%s.%N)"
FILL_S="$(python3 -c "print(round($fill_end - $fill_start, 1))")"
echo "== store built: $DEVICES devices in $FILL_S s (bulk request creation included)"

echo "== enrollment rate: $ROUNDS rounds of $PROBE devices, empty store then big store"
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$WORK/empty-$r"
    start_fleetgate "$BIN/fleetgate" "$WORK/empty-$r/data" "$WORK/empty-$r/fleetgate.log"
    api_post /api/v1/accounts '{"name":"scale"}' "$WORK/empty-$r/account.json"
    rate="$(enroll "$WORK/empty-$r" "e$r" "$PROBE")"
    echo "{\"round\": $r, \"store\": \"empty\", \"enrollments_per_second\": $rate}" | tee -a "$WORK/probes.jsonl"
    stop fleetgate "$FG_PID"
    FG_PID=""
    rm -rf "$WORK/empty-$r/data"
    API="$BIG_API" TOKEN="$BIG_TOKEN" PROV_PORT="$BIG_PROV" OPER_PORT="$BIG_OPER"
    rate="$(enroll "$WORK/big" "p$r" "$PROBE")"
    echo "{\"round\": $r, \"store\": \"big\", \"enrollments_per_second\": $rate}" | tee -a "$WORK/probes.jsonl"
done
ENROLLED=$((DEVICES + ROUNDS * PROBE))

echo "== admin API list and paging latency on the big store"
python3 "$ROOT/benches/lib/scale_api.py" "$BIG_API" "$BIG_TOKEN" scale "lt-1-f0-" \
    "$((DEVICES < CHUNK ? DEVICES : CHUNK))" --pages "$PAGES" | tee "$WORK/api.json"
grep -E '^Vm(RSS|HWM)' "/proc/$BIG_PID/status" | tee "$WORK/rss.txt"

stop "fleetgate (big store)" "$BIG_PID"
BIG_PID=""
du -sb "$WORK/big/data" | tee "$WORK/du.txt"
"$BIN/store-sizes" "$WORK/big/data/fleetgate.redb" --devices "$ENROLLED" --compact |
    tee "$WORK/sizes.md"
du -sb "$WORK/big/data" | tee "$WORK/du-compacted.txt"

python3 - "$WORK" "$DEVICES" "$ENROLLED" "$FILL_S" "$CACHE_MIB" <<'PY' | tee "$WORK/summary.json"
import json, statistics, sys
work, devices, enrolled, fill_s, cache_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
probes = [json.loads(l) for l in open(f"{work}/probes.jsonl")]
med = {k: statistics.median(p["enrollments_per_second"] for p in probes if p["store"] == k) for k in ("empty", "big")}
rss = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in open(f"{work}/rss.txt")}
data_bytes = int(open(f"{work}/du.txt").read().split()[0])
compacted_bytes = int(open(f"{work}/du-compacted.txt").read().split()[0])
api = json.load(open(f"{work}/api.json"))
worst = max(v["p99"] for v in api.values())
print(json.dumps({
    "devices_built": devices, "build_s": fill_s, "build_per_second": round(devices / fill_s),
    "enrolled": enrolled,
    "empty_store_enrollments_per_second": med["empty"], "big_store_enrollments_per_second": med["big"],
    "rate_ratio": round(med["big"] / med["empty"], 3), "rate_target_met": med["big"] >= 0.9 * med["empty"],
    "data_dir_bytes": data_bytes, "bytes_per_device": round(data_bytes / enrolled),
    "disk_target_met": data_bytes / enrolled <= 2048,
    "compacted_data_dir_bytes": compacted_bytes, "compacted_bytes_per_device": round(compacted_bytes / enrolled),
    "compacted_disk_target_met": compacted_bytes / enrolled <= 2048,
    "rss_mib": rss["VmRSS"], "rss_peak_mib": rss["VmHWM"], "cache_mib": cache_mib,
    "rss_target_met": rss["VmRSS"] <= cache_mib + 150,
    "api_worst_p99_ms": worst, "api_target_met": worst < 50,
}, indent=1))
PY
