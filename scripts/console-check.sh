#!/usr/bin/env bash
# The web console (issue 14, CONSOLE.md) in a real browser: a real Fleetgate (target/debug,
# temp data dir, loopback, cheap argon2) and headless Chromium (Debian's `chromium`, installed
# with apt-get when missing) driven by playwright-core (console/tests/browser, pinned in its
# package-lock.json and installed with `npm ci`). The tests go through every flow by visible
# labels and texts, run a PROV-V1 exchange with a real MQTT client, and fail on any page
# error, CSP violation or console error.
#
#   scripts/console-check.sh [--screenshots DIR]
#
# --screenshots writes the tests' screenshots of the main views to DIR (docs/console holds the
# published ones). Everything it starts is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCREENSHOTS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --screenshots) SCREENSHOTS="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
        *) echo "usage: $0 [--screenshots DIR]" >&2; exit 2 ;;
    esac
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-console.XXXXXX")"
# shellcheck source=../benches/lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'status=$?; set +e; stop fleetgate "$FG_PID";
      [[ $status -eq 0 ]] && rm -rf "$WORK" || echo "logs kept in $WORK" >&2; exit $status' EXIT

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
# playwright-core 1.61 (pinned) runs on Node.js 18 (Debian 12's) and newer.
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "Node.js 18 or newer is needed, found $(node --version)"

echo "== npm ci (playwright-core, mqtt; log: $WORK/npm.log)"
(cd "$ROOT/console/tests/browser" && npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1) ||
    { tail -n 20 "$WORK/npm.log" >&2; die "npm ci failed"; }

echo "== fleetgate"
(cd "$ROOT" && cargo build --quiet -p fleetgate)
FLEETGATE_AUTH_ARGON2_M_COST=64 FLEETGATE_AUTH_ARGON2_T_COST=1 FLEETGATE_PROVISIONING_LINGER=0.2 \
    start_fleetgate "$ROOT/target/debug/fleetgate" "$WORK/data" "$WORK/fleetgate.log"

echo "== the console in headless chromium"
(cd "$ROOT/console/tests/browser" &&
    CONSOLE_API="$API" CONSOLE_TOKEN="$TOKEN" CONSOLE_MQTT_PORT="$PROV_PORT" CONSOLE_OPERATIONAL_PORT="$OPER_PORT" \
    CONSOLE_SCREENSHOTS="${SCREENSHOTS:-$WORK/screenshots}" CHROMIUM="$(command -v chromium)" \
    node --test console.test.mjs) || die "console browser tests failed"
echo "== every console flow passed in chromium"
