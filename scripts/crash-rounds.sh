#!/usr/bin/env bash
# Crash rounds under mixed load (issue 19): ROUNDS (default 25) SIGKILLs of the real binary
# during concurrent enrollment, API writes, retained publishes, QoS 1 traffic for a persistent
# session and job steps (Kura-like devices answering the steps of jobs created during the
# round), each followed by a restart on the same data dir and the checks of
# broker/tests/crash.rs (nothing acknowledged missing, no request and no job execution left
# RUNNING, COMPLETED executions kept, a step failed by the kill retried to completion). CI runs
# the same test with 3 rounds (`cargo nextest run -p fleetgate -E 'binary(crash)'`).
#
#   scripts/crash-rounds.sh [ROUNDS] [--release] [--seed N]
#
# --release drives target/release (built here; the test binary is then built in release too).
# The seed of the kill delays defaults to the time; it is printed, so a failure can be replayed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=25
SEED="$(date +%s)"
PROFILE=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --release) PROFILE=(--release); shift ;;
        --seed) SEED="$2"; shift 2 ;;
        [0-9]*) ROUNDS="$1"; shift ;;
        *) echo "usage: $0 [ROUNDS] [--release] [--seed N]" >&2; exit 2 ;;
    esac
done
echo "crash rounds: $ROUNDS, seed $SEED ${PROFILE[*]:-(debug)}"
cd "$ROOT"
FLEETGATE_CRASH_ROUNDS="$ROUNDS" FLEETGATE_CRASH_SEED="$SEED" \
    cargo test "${PROFILE[@]}" -p fleetgate --test crash -- --nocapture
