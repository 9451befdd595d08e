//! The refusal-timing mechanism (issue 19): a credential refusal (5.0 0x86 / 3.1.1 0x04) is
//! answered `auth.refusal_time` after the CONNECT arrived, whichever of an unknown client ID, a
//! known client ID with a wrong username, or the right username with a wrong password it was;
//! and only the last costs an argon2 verification, so strangers cannot make the server verify.
//! On the operational listener the same holds for an unknown user and a wrong password (an
//! account user's password is an argon2 hash; a device's generated one a fast keyed hash, so
//! neither of its classes verifies).
//!
//! What is checked is the mechanism, not a distribution: each refusal arrives no earlier than
//! the configured time (a lower bound that a timer guarantees, not a measurement) and the
//! verification counter moves only for the wrong password. The distributions themselves are
//! measured by `benches/refusal-timing.sh` (figures in docs/robustness.md).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::raw::{Client, Options};
use common::{TestServer, create_account, create_request, enroll, post, request_body};

const REFUSAL_TIME: Duration = Duration::from_millis(600);

fn verified(s: &TestServer) -> u64 {
    s.app()
        .hooks
        .pool()
        .stats()
        .verified
        .load(Ordering::Relaxed)
}

/// CONNACK code and the time from before the TCP connect to the CONNACK.
fn refused(addr: std::net::SocketAddr, o: &Options) -> (u8, Duration) {
    let started = Instant::now();
    let c = Client::try_connect(addr, o).unwrap();
    (c.connack_code, started.elapsed())
}

#[test]
fn every_credential_refusal_waits_the_same_time_and_only_a_known_pair_is_verified() {
    let s = TestServer::start_with(&[
        ("FLEETGATE_AUTH_REFUSAL_TIME", "0.6"),
        ("FLEETGATE_AUTH_MAX_FAILURES", "1000"),
        ("FLEETGATE_AUTH_MAX_FAILURES_PER_ADDRESS", "1000"),
    ]);
    create_account(&s, "acme");
    create_request(
        &s,
        "acme",
        request_body("known", "fleet", "right-password-1"),
    );
    let device_password = enroll(&s, "acme", "device");
    let (status, body) = post(
        &s,
        "/api/v1/accounts/acme/users",
        &serde_json::json!({
            "name": "dashboard",
            "password": "dashboard-password-1",
            "permissions": ["broker:connect", "data:read"],
        }),
    );
    assert_eq!(status, 201, "{body}");

    let prov = s.provisioning_addr();
    let op = s.operational_addr();
    for v5 in [false, true] {
        let bad = if v5 { 0x86 } else { 0x04 };
        let classes = [
            (
                "provisioning: unknown client ID",
                prov,
                Options::version(v5, "stranger").login("fleet", "wrong-password-1"),
                false,
            ),
            (
                "provisioning: wrong username",
                prov,
                Options::version(v5, "known").login("other", "wrong-password-1"),
                false,
            ),
            (
                "provisioning: wrong password",
                prov,
                Options::version(v5, "known").login("fleet", "wrong-password-1"),
                true,
            ),
            (
                "operational: unknown user",
                op,
                Options::version(v5, "device").login("nobody@acme", "wrong-password-1"),
                false,
            ),
            (
                "operational: wrong device password",
                op,
                Options::version(v5, "device").login("device@acme", "wrong-password-1"),
                false,
            ),
            (
                "operational: wrong account-user password",
                op,
                Options::version(v5, "app-1").login("dashboard@acme", "wrong-password-1"),
                true,
            ),
        ];
        for (name, addr, o, verifies) in classes {
            let before = verified(&s);
            let (code, took) = refused(addr, &o);
            assert_eq!(code, bad, "{name}");
            assert!(
                took >= REFUSAL_TIME,
                "{name}: refused after {took:?}, before auth.refusal_time ({REFUSAL_TIME:?})"
            );
            let verifications = verified(&s) - before;
            assert_eq!(
                verifications,
                u64::from(verifies),
                "{name}: {verifications} argon2 verifications"
            );
            eprintln!(
                "{name} (v5 {v5}): 0x{code:02x} after {took:?}, {verifications} verifications"
            );
        }
    }
    // The right credentials are not held back.
    let c = Client::connect(
        op,
        &Options::v5("device").login("device@acme", &device_password),
    );
    c.disconnect();
}
