# Shell helpers shared by the whole-process benchmark scripts (benches/*.sh): starting and
# stopping processes, free loopback ports, a Fleetgate server with its admin API, and one
# provisioned LOOSE device whose operational identity `cycle` clients can share.
# Sourced, not run. The caller sets WORK (a work directory) and ROOT (the repository) before
# using them.

# Stops process $2 (named $1): SIGTERM, then SIGKILL after 5 s.
stop() {
    local name="$1" pid="$2"
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "warning: $name (pid $pid) ignored SIGTERM for 5 s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

die() {
    echo "error: $*" >&2
    exit 1
}

# A free TCP port on 127.0.0.1 (the kernel picks it; a small race with other processes is
# possible, and the start-up checks would then fail loudly).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most ~10 s) until 127.0.0.1:$2 accepts TCP connections while process $3 lives.
wait_port() {
    local name="$1" port="$2" pid="$3" log="$4"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "$name exited during start-up (log: $log)"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$name does not listen on 127.0.0.1:$port after 10 s (log: $log)"
}

# Installs the Debian packages "$@" with apt-get (log in $WORK/apt.log).
apt_install() {
    echo "== installing $* with apt-get (log: $WORK/apt.log)"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo -n"
    { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y \
        --no-install-recommends "$@"; } >"$WORK/apt.log" 2>&1 ||
        { tail -n 20 "$WORK/apt.log" >&2; die "apt-get install failed (log: $WORK/apt.log)"; }
}

# Finds Mosquitto, installing mosquitto and mosquitto-clients with apt-get when it or
# mosquitto_rr is missing. Sets MOSQUITTO and MOSQ_VERSION.
find_mosquitto() {
    MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    if [[ ! -x "$MOSQUITTO" ]] || ! command -v mosquitto_rr >/dev/null; then
        apt_install mosquitto mosquitto-clients
        MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    fi
    [[ -x "$MOSQUITTO" ]] || die "mosquitto not found after installation"
    command -v mosquitto_rr >/dev/null || die "mosquitto_rr (package mosquitto-clients) not found"
    MOSQ_VERSION="$("$MOSQUITTO" -h 2>/dev/null | head -n 1 || true)"
}

# Starts a Mosquitto ($MOSQUITTO, see find_mosquitto) named $1 on a free loopback port: no
# persistence, unlimited connections, TCP_NODELAY like Fleetgate's listeners, and the extra
# configuration lines $2. Configuration and log in $WORK/$1.conf and $WORK/$1.log. Sets
# MOSQ_PORT and MOSQ_PID.
start_mosquitto() {
    local name="$1" extra="$2"
    MOSQ_PORT="$(free_port)"
    cat >"$WORK/$name.conf" <<CONF
listener $MOSQ_PORT 127.0.0.1
max_connections -1
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
$extra
CONF
    # A root mosquitto drops privileges to user `mosquitto` (unless the configuration says
    # `user root`); it only reads its configuration, and the shell writes the log.
    "$MOSQUITTO" -c "$WORK/$name.conf" >"$WORK/$name.log" 2>&1 &
    MOSQ_PID=$!
    wait_port "mosquitto ($name)" "$MOSQ_PORT" "$MOSQ_PID" "$WORK/$name.log"
}

# Starts Fleetgate binary $1 on free loopback ports with data dir $2 and log $3 (default
# durable storage and argon2). Sets FG_PID, PROV_PORT, OPER_PORT, API, TOKEN, HOOKS (the hook
# listener's URL; builds before it ignore the setting) and HOOKS_TOKEN.
start_fleetgate() {
    local bin="$1" data="$2" log="$3"
    PROV_PORT="$(free_port)"
    OPER_PORT="$(free_port)"
    local admin_port
    admin_port="$(free_port)"
    TOKEN="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    API="http://127.0.0.1:$admin_port"
    local hooks_port
    hooks_port="$(free_port)"
    HOOKS="http://127.0.0.1:$hooks_port"
    HOOKS_TOKEN="hooks-$TOKEN"
    FLEETGATE_HOOKS_LISTEN="127.0.0.1:$hooks_port" \
    FLEETGATE_HOOKS_TOKEN="$HOOKS_TOKEN" \
    FLEETGATE_PROVISIONING_LISTEN="127.0.0.1:$PROV_PORT" \
    FLEETGATE_OPERATIONAL_LISTEN="127.0.0.1:$OPER_PORT" \
    FLEETGATE_ADMIN_LISTEN="127.0.0.1:$admin_port" \
    FLEETGATE_ADMIN_TOKEN="$TOKEN" \
        "$bin" serve --data-dir "$data" >"$log" 2>&1 &
    FG_PID=$!
    wait_port "fleetgate admin API" "$admin_port" "$FG_PID" "$log"
    wait_port "fleetgate provisioning" "$PROV_PORT" "$FG_PID" "$log"
    wait_port "fleetgate operational" "$OPER_PORT" "$FG_PID" "$log"
}

# For the check scripts (scripts/*-check.sh), not for measurements: builds the debug
# binaries and starts target/debug/fleetgate with cheap argon2 and a short linger, data and log
# in $WORK, with account `acme` created. Sets what start_fleetgate sets.
start_checked_fleetgate() {
    (cd "$ROOT" && cargo build --quiet -p fleetgate -p fleetgate-loadtest)
    FLEETGATE_AUTH_ARGON2_M_COST=64 FLEETGATE_AUTH_ARGON2_T_COST=1 FLEETGATE_PROVISIONING_LINGER=0.2 \
        start_fleetgate "$ROOT/target/debug/fleetgate" "$WORK/data" "$WORK/fleetgate.log"
    api_post /api/v1/accounts '{"name":"acme"}' "$WORK/account.json"
}

# POSTs JSON $2 to the admin API path $1 (with $TOKEN), writing the answer to $3.
api_post() {
    local path="$1" body="$2" out="$3" code
    code="$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 -X POST \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "$body" "$API$path")" || die "POST $path: curl failed"
    [[ "$code" == 201 || "$code" == 200 ]] || die "POST $path: HTTP $code: $(cat "$out")"
}

# Creates account $1 and provisions its device `$1-device` (reserveUser false, LOOSE coupling)
# over PROV-V1 with mosquitto_rr (MQTT 5: subscribe to the reply topic, publish the request,
# PUBACK the reply). Under LOOSE coupling with a non-reserved user, every client ID of the
# account may connect as that user. Sets DEV_USER and DEV_PASS.
provision_loose_device() {
    local account="$1" cid="$1-device" user="$1-prov" pass creds
    pass="pw-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
    api_post /api/v1/accounts "{\"name\":\"$account\"}" "$WORK/account-$account.json"
    api_post "/api/v1/accounts/$account/provision-requests" "{
        \"clientId\": \"$cid\", \"provisionUsername\": \"$user\",
        \"provisionPassword\": \"$pass\", \"confirmProvisionPassword\": \"$pass\",
        \"brokerUrl\": \"mqtt://127.0.0.1:$OPER_PORT\",
        \"reserveUser\": false, \"connectionCoupling\": \"LOOSE\"}" "$WORK/request-$account.json"
    # Fleetgate ignores mosquitto_rr's Response Topic property and replies on REPLY/{request.id}.
    mosquitto_rr -h 127.0.0.1 -p "$PROV_PORT" -V 5 -q 1 -W 15 -i "$cid" -u "$user" -P "$pass" \
        -t "\$EDC/provision/$cid/PROV-V1/EXEC/provision" -e "\$EDC/provision/$cid/PROV-V1/REPLY/r-1" \
        -m '{"request.id":"r-1"}' >"$WORK/prov-reply-$account.json" 2>"$WORK/prov-reply-$account.err" ||
        die "PROV-V1 exchange failed: $(cat "$WORK/prov-reply-$account.err")"
    creds="$(python3 - "$WORK/prov-reply-$account.json" <<'EOF'
import json, sys
reply = json.load(open(sys.argv[1]))
if reply.get("response.code") != 200 or not reply.get("password"):
    sys.exit(f"unexpected PROV-V1 reply: {reply.get('response.code')} "
             f"{reply.get('response.exception.message', '')}")
print(reply["username"])
print(reply["password"])
EOF
)" || die "cannot read the PROV-V1 reply ($WORK/prov-reply-$account.json)"
    DEV_USER="$(sed -n 1p <<<"$creds")"
    DEV_PASS="$(sed -n 2p <<<"$creds")"
    [[ "$DEV_USER" == "$cid@$account" ]] || die "unexpected operational username $DEV_USER"
}
