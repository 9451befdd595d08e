#!/usr/bin/env bash
# Unique-credential enrollment against the argon2 bound measured in place, one command
# (docs/benchmarks.md, "Unique credentials: where the time goes").
#
#   benches/unique-credentials.sh [--devices N] [--concurrency C] [--runs R] [--no-build]
#
# Per run: a fresh release Fleetgate (default argon2 parameters, free loopback ports, temp data
# dir) and account `uq`; `fleetgate-loadtest enroll --unique-credentials` of N devices. The CPU
# time of every server thread is read from /proc/PID/task/*/stat before and after. The bulk
# creation of the requests hashes each password on the same verification pool, so a run costs
# 2 argon2 operations per device. The CPU time per operation is the verify threads' CPU divided
# by 2N. The bound is cores / that time, and the ratio is the loadtest's enrollments/s
# over the bound. The report also splits the CPU by thread group, load generator included.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICES=600
CONCURRENCY=40
RUNS=3
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --devices) DEVICES="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
WORK="$(mktemp -d /tmp/fleetgate-unique.XXXXXX)"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -p fleetgate -p fleetgate-loadtest)
fi
BIN="$ROOT/target/release"
FG_PID=""
trap 'stop fleetgate "$FG_PID"' EXIT
echo "== work directory: $WORK"

# threads PID: "name utime+stime" per thread, in clock ticks.
threads() {
    local t
    for t in /proc/"$1"/task/*; do
        # The name is in parentheses and may hold spaces; the times follow it.
        sed -E 's/^[0-9]+ \((.*)\) [A-Z] (.*)$/\1|\2/' "$t/stat" |
            awk -F'|' '{ split($2, f, " "); print $1 "|" f[11] + f[12] }'
    done
}

# cpu_of FILE CMD...: runs CMD and writes its user and system CPU seconds to FILE.
cpu_of() {
    python3 -c '
import resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime} {r.ru_stime}\n")
sys.exit(rc)' "$@"
}

for r in $(seq 1 "$RUNS"); do
    dir="$WORK/run-$r"
    mkdir -p "$dir"
    mkdir -m 0700 "$dir/data"
    start_fleetgate "$BIN/fleetgate" "$dir/data" "$dir/fleetgate.log"
    api_post /api/v1/accounts '{"name":"uq"}' "$dir/account.json"
    threads "$FG_PID" >"$dir/before"
    cpu_of "$dir/loadtest.cpu" "$BIN/fleetgate-loadtest" enroll --api "$API" --token "$TOKEN" --account uq \
        --provisioning "mqtt://127.0.0.1:$PROV_PORT" --devices "$DEVICES" \
        --concurrency "$CONCURRENCY" --unique-credentials --timeout 120 \
        --json "$dir/report.json" >"$dir/loadtest.out" 2>"$dir/loadtest.err" ||
        { tail -n 20 "$dir/loadtest.err" >&2; die "loadtest failed ($dir)"; }
    threads "$FG_PID" >"$dir/after"
    stop fleetgate "$FG_PID"
    FG_PID=""
done

python3 - "$WORK" "$RUNS" "$DEVICES" "$(nproc)" "$(getconf CLK_TCK)" <<'PY' | tee "$WORK/summary.json"
import json, statistics, sys
work, runs, devices, cores, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def cpu(path):
    out = {}
    for line in open(path):
        name, ticks = line.rstrip("\n").rsplit("|", 1)
        group = ("verify" if name.startswith("fleetgate-verif") else
                 "writer" if name.startswith("fleetgate-write") else
                 "workers" if name.startswith("fleetgate:worke") else "other")
        out[group] = out.get(group, 0) + int(ticks) / tick
    return out

rows = []
for r in range(1, runs + 1):
    d = f"{work}/run-{r}"
    before, after = cpu(f"{d}/before"), cpu(f"{d}/after")
    used = {g: after.get(g, 0) - before.get(g, 0) for g in after}
    user, system = map(float, open(f"{d}/loadtest.cpu").read().split())
    report = json.load(open(f"{d}/report.json"))
    done = report["devices"]["completed"]
    if done != devices:
        sys.exit(f"run {r}: {done} of {devices} enrolled")
    rate = report["enrollments_per_second"]
    per_op = used["verify"] / (2 * devices)
    bound = cores / per_op
    rows.append({"enrollments_per_second": rate, "verify_cpu_ms_per_op": round(per_op * 1000, 2),
                 "bound_per_second": round(bound, 1), "ratio": round(rate / bound, 3),
                 "server_cpu_s": {g: round(v, 2) for g, v in used.items()},
                 "loadtest_cpu_s": round(user + system, 2)})
print(json.dumps({"devices": devices, "cores": cores, "runs": rows,
                  "median_ratio": statistics.median(r["ratio"] for r in rows)}, indent=1))
PY
