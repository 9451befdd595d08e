#!/usr/bin/env bash
# The operator's kit against real Prometheus tooling (Debian's `prometheus` package, installed
# with apt-get when missing):
#  1. promtool: the alert rules parse, their unit tests pass, the example config is valid;
#  2. a real Fleetgate (target/debug, temp data dir, loopback) enrolls 20 devices with
#     fleetgate-loadtest, and `promtool check metrics` accepts its /metrics;
#  3. a real Prometheus (loopback, temp dir) scrapes that Fleetgate, and its HTTP API answers
#     the enrollment counter and a process metric with the values Fleetgate exposes;
#  4. every query of the Grafana dashboard (deploy/grafana/fleetgate.json) is valid PromQL for
#     that Prometheus and names only metrics Fleetgate exposes.
# Everything it starts is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-prometheus.XXXXXX")"
# shellcheck source=../benches/lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
PROM_PID=""
trap 'status=$?; set +e; stop prometheus "$PROM_PID"; stop fleetgate "$FG_PID";
      [[ $status -eq 0 ]] && rm -rf "$WORK" || echo "logs kept in $WORK" >&2; exit $status' EXIT

command -v promtool >/dev/null && command -v prometheus >/dev/null || apt_install prometheus

echo "== promtool: rules, rule tests, example configuration"
(cd "$ROOT/deploy/prometheus" &&
    promtool check rules fleetgate-alerts.yml &&
    promtool test rules fleetgate-alerts.test.yml &&
    promtool check config prometheus.yml)

echo "== fleetgate with a short enrollment"
start_checked_fleetgate
"$ROOT/target/debug/fleetgate-loadtest" enroll --api "$API" --token "$TOKEN" --account acme \
    --provisioning "mqtt://127.0.0.1:$PROV_PORT" --devices 20 --concurrency 5 \
    --shared-credentials --run-id promcheck >"$WORK/enroll.out" 2>&1 ||
    { cat "$WORK/enroll.out" >&2; die "enrollment failed"; }
curl -sS --max-time 10 "$API/metrics" >"$WORK/metrics.txt"
echo "== promtool check metrics ($(grep -c '^# TYPE' "$WORK/metrics.txt") families)"
promtool check metrics <"$WORK/metrics.txt"
grep -q '^fleetgate_provisioning_outcomes_total{outcome="completed"} 20' "$WORK/metrics.txt" ||
    die "the exposition does not count 20 completed enrollments"

echo "== prometheus scraping fleetgate"
PROM_PORT="$(free_port)"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fleetgate
    static_configs:
      - targets: ["${API#http://}"]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
wait_port prometheus "$PROM_PORT" "$PROM_PID" "$WORK/prometheus.log"
# Prometheus answers `query` with the latest sample; poll until the first scrapes landed.
query() {
    curl -sS --max-time 5 -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
completed=""
for _ in $(seq 1 60); do
    completed="$(query 'fleetgate_provisioning_outcomes_total{job="fleetgate",outcome="completed"}')"
    [[ -n "$completed" ]] && break
    sleep 0.5
done
[[ "$completed" == 20 ]] || die "Prometheus reports '$completed' completed enrollments, not 20"
rss="$(query 'process_resident_memory_bytes{job="fleetgate"}')"
python3 -c "import sys; sys.exit(0 if float('${rss:-0}') > 1e6 else 1)" ||
    die "Prometheus reports process_resident_memory_bytes '$rss'"
echo "== Prometheus sees 20 completed enrollments and ${rss} bytes resident"

echo "== the Grafana dashboard's queries"
python3 - "$ROOT/deploy/grafana/fleetgate.json" "$WORK/metrics.txt" "http://127.0.0.1:$PROM_PORT" \
    "$ROOT/metrics/src" <<'EOF'
import json, pathlib, re, sys, urllib.parse, urllib.request
dashboard, exposition, prom, sources = sys.argv[1:]
# A family without samples yet (no ban, no ACL denial in this run) is not exposed: count what
# Fleetgate registers too (metrics/src: `register("name", ...)`, fleetgate_ unless process_).
exposed = {l.split()[2] for l in open(exposition) if l.startswith("# TYPE ")}
for source in pathlib.Path(sources).glob("*.rs"):
    for name in re.findall(r'register\(\s*"([a-z_]+)"', source.read_text()):
        exposed.add(name if name.startswith("process_") else "fleetgate_" + name)
def family(name):
    for suffix in ("_bucket", "_count", "_sum", "_total", "_info"):
        if name.endswith(suffix) and name[: -len(suffix)] in exposed:
            return name[: -len(suffix)]
    return name
bad = []
panels = json.load(open(dashboard))["panels"]
for panel in panels:
    for target in panel["targets"]:
        expr = target["expr"]
        for name in set(re.findall(r"\b(?:fleetgate|process)_[a-z_]+\b", expr)):
            if family(name) not in exposed:
                bad.append(f"{panel['title']}: {name} is not exposed")
        query = (expr.replace("$__rate_interval", "1m").replace("$job", "fleetgate")
                 .replace("$instance", ".*"))
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            answer = json.load(urllib.request.urlopen(url, timeout=5))
        except Exception as e:  # a 400 carries PromQL's own error message
            answer = {"status": "error", "error": str(e)}
        if answer.get("status") != "success":
            bad.append(f"{panel['title']}: {expr}: {answer.get('error')}")
if bad:
    sys.exit("dashboard problems:\n" + "\n".join(bad))
print(f"{sum(len(p['targets']) for p in panels)} queries valid")
EOF
