#!/usr/bin/env bash
# The Debian packages the broker's tests drive as real processes (they start them themselves on
# loopback ports and stop them by PID; nothing here starts a service). Idempotent and quiet: only
# what is missing is installed, so a machine that has everything does no network at all.
set -euo pipefail

missing=()
# need PACKAGE: queued for installation unless dpkg already has it installed.
need() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$1")
}

# Mosquitto 2.0 loading Fleetgate's plugin: broker/tests/mosquitto.rs.
need mosquitto
# RabbitMQ 3.10 (Erlang 25) clustered behind HAProxy 2.6: broker/tests/rabbitmq.rs.
need rabbitmq-server
need haproxy
# A small filesystem for the data dir (tmpfs via mount; a loop-mounted ext4 image if tmpfs is
# refused): broker/tests/diskfull.rs.
need mount
need e2fsprogs

[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo -n"
log="$(mktemp "${TMPDIR:-/tmp}/install-test-deps.XXXXXX.log")"
echo "installing ${missing[*]} with apt-get (log: $log)"
if ! { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y \
    --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "apt-get install failed (log: $log)" >&2
    exit 1
fi
rm -f "$log"
