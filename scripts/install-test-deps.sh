#!/usr/bin/env bash
# What the test suites need from the system, installed from Debian's packages when missing
# (with benches/lib/common.sh's apt_install). Idempotent and quiet: a machine that has
# everything installs nothing. Extend `needs` with "COMMAND PACKAGE" pairs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-test-deps.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=../benches/lib/common.sh
source "$ROOT/benches/lib/common.sh"

needs=(
    "/usr/sbin/mosquitto mosquitto" # broker/tests/mosquitto.rs
)

missing=()
for pair in "${needs[@]}"; do
    read -r cmd pkg <<<"$pair"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
