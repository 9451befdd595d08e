#!/usr/bin/env bash
# The loadtest's HTML report in a real browser (issue 18): a real Fleetgate (target/debug,
# temp data dir, loopback) enrolls devices under a --ramp with fleetgate-loadtest --html
# --json; headless Chromium (Debian's `chromium`, installed with apt-get when missing) renders
# the page, and the rendered DOM must hold every chart with data points. `compare` then runs
# on the report against itself (no regression, exit 0).
#
#   scripts/loadtest-report-check.sh [--screenshot OUT.png] [--keep DIR]
#
# --screenshot also writes a screenshot of the rendered report; --keep copies the reports
# (HTML, JSON, comparison) to DIR. Everything it starts is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCREENSHOT=""
KEEP=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --screenshot) SCREENSHOT="$(realpath -m "$2")"; shift 2 ;;
        --keep) KEEP="$(realpath -m "$2")"; shift 2 ;;
        *) echo "usage: $0 [--screenshot OUT.png] [--keep DIR]" >&2; exit 2 ;;
    esac
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-loadtest-report.XXXXXX")"
# shellcheck source=../benches/lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'status=$?; set +e; stop fleetgate "$FG_PID";
      [[ $status -eq 0 ]] && rm -rf "$WORK" || echo "logs kept in $WORK" >&2; exit $status' EXIT

command -v chromium >/dev/null || apt_install chromium

echo "== fleetgate with a ramped enrollment (--html, --json)"
start_checked_fleetgate
"$ROOT/target/debug/fleetgate-loadtest" enroll --api "$API" --token "$TOKEN" --account acme \
    --provisioning "mqtt://127.0.0.1:$PROV_PORT" --operational-broker "mqtt://127.0.0.1:$OPER_PORT" \
    --devices 1500 --ramp "0:50,3:400,5:400" --operational --shared-credentials \
    --run-id reportcheck --json "$WORK/report.json" --html "$WORK/report.html" \
    >"$WORK/enroll.out" 2>&1 || { cat "$WORK/enroll.out" >&2; die "enrollment failed"; }

echo "== compare (the report against itself: no regression)"
"$ROOT/target/debug/fleetgate-loadtest" compare "$WORK/report.json" "$WORK/report.json" \
    --html "$WORK/compare.html" >"$WORK/compare.out" ||
    { cat "$WORK/compare.out" >&2; die "compare of a report with itself did not exit 0"; }

# Chromium without network, GPU, sync or a profile of its own.
chrome() {
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run \
        --user-data-dir="$(mktemp -d "$WORK/chrome.XXXXXX")" "$@" 2>>"$WORK/chromium.log"
}

echo "== rendering in headless chromium"
chrome --dump-dom "file://$WORK/report.html" >"$WORK/report.dom.html"
chrome --dump-dom "file://$WORK/compare.html" >"$WORK/compare.dom.html"
python3 - "$WORK/report.dom.html" "$WORK/compare.dom.html" <<'EOF'
import sys
from html.parser import HTMLParser

class Charts(HTMLParser):
    """Collects each <svg class="chart"> and the points of its polylines."""
    def __init__(self):
        super().__init__()
        self.charts, self.current, self.text = {}, None, []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.current = a.get("id")
            self.charts[self.current] = 0
        elif tag == "polyline" and self.current is not None:
            self.charts[self.current] += len((a.get("points") or "").split())
    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None
    def handle_data(self, data):
        self.text.append(data)

report = Charts()
report.feed(open(sys.argv[1]).read())
expected = ["completions", "latency-connect", "latency-reply", "latency-enrollment",
            "latency-operational", "failures", "histogram"]
missing = [c for c in expected if c not in report.charts]
empty = [c for c, n in report.charts.items() if n == 0]
if missing or empty:
    sys.exit(f"rendered report: missing charts {missing}, charts without data {empty}")
text = " ".join(report.text)
for needle in ["Headline figures", "ramp 0:50,3:400,5:400", "fleetgate_provisioning_outcomes_total"]:
    if needle not in text:
        sys.exit(f"rendered report lacks {needle!r}")
for chart, points in report.charts.items():
    print(f"   {chart}: {points} points")
compare = Charts()
compare.feed(open(sys.argv[2]).read())
if "no regression" not in " ".join(compare.text):
    sys.exit("rendered comparison lacks its verdict")
EOF

if [[ -n "$SCREENSHOT" ]]; then
    chrome --hide-scrollbars --window-size=1100,3300 --screenshot="$SCREENSHOT" \
        "file://$WORK/report.html" >/dev/null
    [[ -s "$SCREENSHOT" ]] || die "no screenshot written to $SCREENSHOT"
    echo "== screenshot: $SCREENSHOT"
fi
if [[ -n "$KEEP" ]]; then
    mkdir -p "$KEEP"
    cp "$WORK"/report.html "$WORK"/report.json "$WORK"/compare.html "$KEEP"/
    echo "== reports copied to $KEEP"
fi
echo "== the HTML report renders in chromium with data in every chart"
