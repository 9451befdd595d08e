#!/usr/bin/env bash
# Refusal timing (issue 19): how long a refused CONNECT takes, for an unknown client ID, a known
# client ID with a wrong username, and a known one with the right username and a wrong password
# (the only class that costs an argon2 verification). Runs target/$PROFILE/fleetgate twice with
# the default argon2 cost: with `auth.refusal_time = 0` (answers at once: the wrong password is
# visibly slower) and with the default (every credential refusal answered at the same fixed
# time after the CONNECT), and prints the refusal-timing JSON of each.
#
#   benches/refusal-timing.sh [SAMPLES]     (default 200 per class; FLEETGATE_PROFILE=release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAMPLES="${1:-200}"
PROFILE="${FLEETGATE_PROFILE:-debug}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-refusal.XXXXXX")"
# shellcheck source=lib/common.sh
source "$ROOT/benches/lib/common.sh"
FG_PID=""
trap 'set +e; stop fleetgate "$FG_PID"; rm -rf "$WORK"' EXIT
if [[ "$PROFILE" == release ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p fleetgate -p fleetgate-benches --bin refusal-timing)
else
    (cd "$ROOT" && cargo build --quiet -p fleetgate -p fleetgate-benches --bin refusal-timing)
fi
for refusal_time in 0 default; do
    rm -rf "$WORK/data"
    # Failure limits out of reach: the bench makes thousands of credential failures.
    if [[ "$refusal_time" == default ]]; then unset FLEETGATE_AUTH_REFUSAL_TIME
    else export FLEETGATE_AUTH_REFUSAL_TIME="$refusal_time"; fi
    FLEETGATE_AUTH_MAX_FAILURES=100000000 FLEETGATE_AUTH_MAX_FAILURES_PER_ADDRESS=100000000 \
        start_fleetgate "$ROOT/target/$PROFILE/fleetgate" "$WORK/data" "$WORK/fleetgate.log"
    api_post /api/v1/accounts '{"name":"acme"}' "$WORK/account.json"
    api_post /api/v1/accounts/acme/provision-requests '{"clientId": "timing-dev",
        "provisionUsername": "timing-fleet", "provisionPassword": "right-password-1",
        "confirmProvisionPassword": "right-password-1", "brokerUrl": "mqtt://127.0.0.1:1884"}' \
        "$WORK/request.json"
    echo "== auth.refusal_time = $refusal_time ($PROFILE, argon2 default cost, $SAMPLES per class)"
    "$ROOT/target/$PROFILE/refusal-timing" "127.0.0.1:$PROV_PORT" timing-dev timing-fleet \
        --samples "$SAMPLES"
    stop fleetgate "$FG_PID"
    FG_PID=""
done
