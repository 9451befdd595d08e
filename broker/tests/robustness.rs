//! Robustness of the provisioning endpoint over real sockets (docs/robustness.md):
//! failed-attempt limiting (PROTOCOL.md 2.1), MQTT-level garbage, connection limits (connect
//! timeout, slowloris, half-open connections, `max_connections`) and the admin body limit.
//! Garbage is hand-encoded on raw TCP; legitimate devices are real rumqttc clients.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use fleetgate_kura::{Encoding, ProvReply, ProvRequest};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PA: &str = "provision";
const PASSWORD: &str = "fleet-password-1";
const WRONG: &str = "not-the-password";

// ---------------------------------------------------------------------------------------------
// A tiny MQTT encoder and raw-socket helpers.

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn mqtt_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet: fixed-header byte, remaining length, body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT with protocol `level` (4 = 3.1.1, 5 = 5.0 with empty properties; any other value
/// is encoded like 3.1.1), clean session, keep-alive 30 s.
fn connect_packet(level: u8, cid: &str, user: Option<&str>, pw: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(b"MQTT", &mut body);
    body.push(level);
    let mut flags = 0x02;
    if user.is_some() {
        flags |= 0x80;
    }
    if pw.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    mqtt_str(cid.as_bytes(), &mut body);
    if let Some(u) = user {
        mqtt_str(u.as_bytes(), &mut body);
    }
    if let Some(p) = pw {
        mqtt_str(p.as_bytes(), &mut body);
    }
    packet(0x10, &body)
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect")
}

/// Reads (and discards) until the peer closes; the time it took, or `None` if still open
/// after `limit`. A reset counts as closed.
async fn closed_within(r: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one packet: (fixed-header byte, body), within 5 s.
async fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let first = s.read_u8().await.unwrap();
        let mut len = 0usize;
        let mut mul = 1usize;
        loop {
            let b = s.read_u8().await.unwrap();
            len += usize::from(b & 0x7f) * mul;
            mul *= 128;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        (first, body)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a packet in time")
}

/// Reads one CONNACK; its return / reason code.
async fn read_connack(s: &mut TcpStream) -> u8 {
    let (first, body) = read_packet(s).await;
    assert_eq!(first, 0x20, "expected CONNACK, got {first:#x}");
    body[1]
}

/// Sends `bytes` (a write error means the server already closed) and asserts the server
/// closes the connection within 3 s: well under the default 5 s connect timeout, so the
/// close comes from the garbage, not from the timeout.
async fn assert_garbage_closes(addr: SocketAddr, what: &str, bytes: &[u8]) -> Duration {
    let mut s = tcp(addr).await;
    let _ = s.write_all(bytes).await;
    let took = closed_within(&mut s, Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("{what}: the server did not close the connection in 3 s"));
    eprintln!("{what}: closed after {took:?}");
    took
}

// ---------------------------------------------------------------------------------------------
// Legitimate devices.

fn reply_filter(cid: &str) -> String {
    format!("$EDC/{PA}/{cid}/PROV-V1/REPLY/#")
}

fn exec_topic(cid: &str) -> String {
    format!("$EDC/{PA}/{cid}/PROV-V1/EXEC/provision")
}

async fn connect(
    s: &TestServer,
    v: Version,
    cid: &str,
    user: &str,
    pw: &str,
) -> Result<Device, u8> {
    let c = Device::connect(Connect {
        version: v,
        addr: s.provisioning_addr(),
        client_id: cid,
        username: user,
        password: pw,
        manual_acks: false,
    });
    tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("CONNACK within 10 s")
}

fn request(s: &TestServer, cid: &str, user: &str) -> String {
    let _ = post(s, "/api/v1/accounts", &json!({"name": "acme"}));
    let r = create_request(s, "acme", request_body(cid, user, PASSWORD));
    r["id"].as_str().unwrap().to_string()
}

/// A full enrollment; panics unless it succeeds.
async fn enroll(s: &TestServer, v: Version, cid: &str) {
    let mut d = connect(s, v, cid, "fleet", PASSWORD)
        .await
        .expect("CONNECT accepted");
    d.subscribe(&reply_filter(cid), 1).await;
    assert_eq!(d.suback().await, vec![1]);
    d.publish(
        &exec_topic(cid),
        1,
        ProvRequest::new("r-1").encode(Encoding::Json),
    )
    .await;
    let (_, payload) = d
        .publish_received(Duration::from_secs(10))
        .await
        .expect("a reply");
    let (_, reply) = fleetgate_kura::decode_reply(&payload).unwrap();
    assert!(matches!(reply, ProvReply::Success(_)), "{reply:?}");
    d.disconnect().await;
}

fn healthz(s: &TestServer) -> u16 {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    agent
        .get(&format!("{}/healthz", s.admin_url()))
        .call()
        .map_or(0, |r| r.status().as_u16())
}

fn metrics(s: &TestServer) -> String {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    agent
        .get(&format!("{}/metrics", s.admin_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The value of one sample line of `/metrics` (0 when absent).
fn metric(s: &TestServer, sample: &str) -> f64 {
    metrics(s)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn verified(s: &TestServer) -> u64 {
    s.app()
        .hooks
        .pool()
        .stats()
        .verified
        .load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// 1. Failed-attempt limiting (PROTOCOL.md 2.1).

#[tokio::test(flavor = "multi_thread")]
async fn client_id_ban_refuses_even_the_right_password_without_verifying() {
    let s = TestServer::start_with(&[
        ("FLEETGATE_AUTH_MAX_FAILURES", "3"),
        ("FLEETGATE_AUTH_FAILURE_WINDOW", "60"),
        ("FLEETGATE_AUTH_BAN", "120"),
    ]);
    request(&s, "victim", "fleet");
    request(&s, "neighbour", "fleet");
    request(&s, "other", "fleet-two");

    // Three wrong passwords for "victim": each is a plain credential failure.
    for i in 0..3 {
        let v = if i % 2 == 0 { Version::V5 } else { Version::V3 };
        let want = if v == Version::V5 { 0x86 } else { 0x04 };
        assert_eq!(
            connect(&s, v, "victim", "fleet", WRONG).await.err(),
            Some(want),
            "attempt {i}"
        );
    }
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"client_id\"}"),
        1.0
    );

    // Banned now: even the right password (never verified before, so not cached) is refused
    // as Banned, and no argon2 verification runs for it.
    let before = verified(&s);
    let t = Instant::now();
    assert_eq!(
        connect(&s, Version::V5, "victim", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x8A)
    );
    assert_eq!(
        connect(&s, Version::V3, "victim", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x05)
    );
    assert_eq!(
        connect(&s, Version::V5, "victim", "fleet", WRONG)
            .await
            .err(),
        Some(0x8A)
    );
    eprintln!("3 banned attempts answered in {:?}", t.elapsed());
    assert_eq!(
        verified(&s),
        before,
        "a banned attempt ran an argon2 verify"
    );
    assert_eq!(
        metric(
            &s,
            "fleetgate_connect_results_total{endpoint=\"provisioning\",result=\"banned\"}"
        ),
        3.0
    );
    // Banned attempts do not extend or re-count the ban.
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"client_id\"}"),
        1.0
    );

    // The fleet is not locked out by a stranger: another client ID sharing the provision
    // username connects, and so does a device of another provision user.
    connect(&s, Version::V5, "neighbour", "fleet", PASSWORD)
        .await
        .expect("neighbour accepted")
        .disconnect()
        .await;
    connect(&s, Version::V3, "other", "fleet-two", PASSWORD)
        .await
        .expect("other accepted")
        .disconnect()
        .await;
    // Still banned just before the end of the ban...
    s.clock().advance(chrono::Duration::seconds(119));
    assert_eq!(
        connect(&s, Version::V5, "victim", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x8A)
    );
    // ... and the right password works again once it is over.
    s.clock().advance(chrono::Duration::seconds(2));
    connect(&s, Version::V5, "victim", "fleet", PASSWORD)
        .await
        .expect("accepted after the ban")
        .disconnect()
        .await;
    assert_eq!(healthz(&s), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_outside_the_window_do_not_ban_and_other_refusals_do_not_count() {
    let s = TestServer::start_with(&[
        ("FLEETGATE_AUTH_MAX_FAILURES", "3"),
        ("FLEETGATE_AUTH_FAILURE_WINDOW", "10"),
        ("FLEETGATE_AUTH_BAN", "120"),
    ]);
    request(&s, "slow-guess", "fleet");
    // Two failures, then the window passes, then two more: never three within 10 s.
    for round in 0..2 {
        for _ in 0..2 {
            assert_eq!(
                connect(&s, Version::V5, "slow-guess", "fleet", WRONG)
                    .await
                    .err(),
                Some(0x86),
                "round {round}"
            );
        }
        s.clock().advance(chrono::Duration::seconds(11));
    }
    // Invalid client IDs (0x85) are not credential failures either.
    for _ in 0..5 {
        assert_eq!(
            connect(&s, Version::V5, "bad/id", "fleet", WRONG)
                .await
                .err(),
            Some(0x85)
        );
    }
    connect(&s, Version::V5, "slow-guess", "fleet", PASSWORD)
        .await
        .expect("never banned")
        .disconnect()
        .await;
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"client_id\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_spraying_client_ids_is_banned() {
    // Its own server: every test connects from 127.0.0.1.
    let s = TestServer::start_with(&[
        ("FLEETGATE_AUTH_MAX_FAILURES", "50"),
        ("FLEETGATE_AUTH_MAX_FAILURES_PER_ADDRESS", "6"),
        ("FLEETGATE_AUTH_BAN", "60"),
    ]);
    request(&s, "real-device", "fleet");
    // Six wrong guesses, each on a different client ID (most without any request).
    for i in 0..6 {
        let cid = format!("spray-{i}");
        assert_eq!(
            connect(&s, Version::V5, &cid, "fleet", WRONG).await.err(),
            Some(0x86),
            "guess {i}"
        );
    }
    assert_eq!(metric(&s, "fleetgate_bans_total{result=\"address\"}"), 1.0);
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"client_id\"}"),
        0.0
    );
    // The address is banned: any client ID, right password or not, v5 0x8A / v3 0x05,
    // without a verification.
    let before = verified(&s);
    assert_eq!(
        connect(&s, Version::V5, "real-device", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x8A)
    );
    assert_eq!(
        connect(&s, Version::V3, "spray-99", "fleet", WRONG)
            .await
            .err(),
        Some(0x05)
    );
    assert_eq!(verified(&s), before);
    // The ban ends.
    s.clock().advance(chrono::Duration::seconds(61));
    connect(&s, Version::V3, "real-device", "fleet", PASSWORD)
        .await
        .expect("accepted after the address ban")
        .disconnect()
        .await;
    assert_eq!(healthz(&s), 200);
}

// ---------------------------------------------------------------------------------------------
// 2. MQTT-level garbage: each closes its connection, the server stays healthy.

async fn still_healthy(s: &TestServer, n: usize) {
    assert_eq!(healthz(s), 200, "healthz after case {n}");
    let v = if n.is_multiple_of(2) {
        Version::V5
    } else {
        Version::V3
    };
    connect(s, v, "healthy-dev", "fleet", PASSWORD)
        .await
        .unwrap_or_else(|c| panic!("a real device refused ({c:#x}) after case {n}"))
        .disconnect()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_closes_the_connection_and_nothing_else() {
    let s = TestServer::start();
    request(&s, "healthy-dev", "fleet");
    request(&s, "raw-dev", "fleet");
    request(&s, "final-dev", "fleet");
    let addr = s.provisioning_addr();

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Random bytes (4 KiB each), the first byte steered away from CONNECT (0x1_).
    for seed in [1u64, 42, 0xdead_beef, 7_777_777] {
        let mut b = noise(seed, 4096);
        if b[0] >> 4 == 1 {
            b[0] ^= 0x80;
        }
        cases.push((format!("4 KiB of random bytes (seed {seed})"), b));
    }
    // A complete CONNECT packet whose 200-byte body is random.
    cases.push((
        "CONNECT with a random body".into(),
        packet(0x10, &noise(9, 200)),
    ));
    // A truncated CONNECT: the remaining length covers the bytes, but the client ID string
    // claims more bytes than the packet has.
    let full = connect_packet(4, "raw-dev", Some("fleet"), Some(PASSWORD));
    let mut body = full[2..].to_vec();
    body.truncate(14); // "MQTT", level, flags, keep-alive, half the client ID
    cases.push(("CONNECT truncated inside".into(), packet(0x10, &body)));
    // A CONNECT cut short, then the client half-closes (EOF mid-packet).
    cases.push(("CONNECT cut short then EOF".into(), full[..10].to_vec()));
    // Invalid protocol levels.
    for level in [9u8, 0, 3] {
        cases.push((
            format!("CONNECT with protocol level {level}"),
            connect_packet(level, "raw-dev", Some("fleet"), Some(PASSWORD)),
        ));
    }
    // An invalid protocol name.
    let mut bad_name = connect_packet(4, "raw-dev", Some("fleet"), Some(PASSWORD));
    bad_name[4..8].copy_from_slice(b"MQTX");
    cases.push(("CONNECT with protocol name MQTX".into(), bad_name));
    // Remaining length: five continuation bytes (malformed variable byte integer).
    cases.push((
        "remaining length FF FF FF FF 7F".into(),
        vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
    ));
    // The largest legal remaining length (256 MiB), far over the 64 KiB limit, followed by
    // the start of a 3.1.1 / 5.0 variable header (the server needs the protocol level to pick
    // its decoder, whose size check then refuses the packet at once).
    for level in [4u8, 5] {
        let mut b = vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0, 4];
        b.extend_from_slice(b"MQTT");
        b.extend_from_slice(&[level, 0x02, 0, 30]);
        cases.push((format!("CONNECT (level {level}) announcing 256 MiB"), b));
    }
    // A CONNECT of 100 KiB (a huge client ID) before any session.
    cases.push((
        "CONNECT of 100 KiB".into(),
        connect_packet(4, &"x".repeat(60_000), Some(&"u".repeat(40_000)), None),
    ));
    // SUBSCRIBE before CONNECT.
    let mut sub = vec![0, 1];
    mqtt_str(b"$EDC/provision/raw-dev/PROV-V1/REPLY/#", &mut sub);
    sub.push(1);
    cases.push(("SUBSCRIBE before CONNECT".into(), packet(0x82, &sub)));
    // PUBLISH before CONNECT.
    let mut publ = Vec::new();
    mqtt_str(exec_topic("raw-dev").as_bytes(), &mut publ);
    publ.extend_from_slice(b"{\"request.id\":\"r-1\"}");
    cases.push(("PUBLISH before CONNECT".into(), packet(0x30, &publ)));

    let mut n = 0;
    for (what, bytes) in &cases {
        if what.ends_with("then EOF") {
            let mut st = tcp(addr).await;
            st.write_all(bytes).await.unwrap();
            st.shutdown().await.unwrap();
            closed_within(&mut st, Duration::from_secs(3))
                .await
                .unwrap_or_else(|| panic!("{what}: not closed in 3 s"));
        } else {
            assert_garbage_closes(addr, what, bytes).await;
        }
        still_healthy(&s, n).await;
        n += 1;
    }

    // Over the 64 KiB provisioning packet limit after a valid CONNECT, both versions.
    for level in [4u8, 5] {
        let mut st = tcp(addr).await;
        st.write_all(&connect_packet(
            level,
            "raw-dev",
            Some("fleet"),
            Some(PASSWORD),
        ))
        .await
        .unwrap();
        assert_eq!(read_connack(&mut st).await, 0, "level {level}");
        let mut body = Vec::new();
        mqtt_str(exec_topic("raw-dev").as_bytes(), &mut body);
        if level == 5 {
            body.push(0); // no properties
        }
        body.extend(vec![b'{'; 70_000]);
        let _ = st.write_all(&packet(0x30, &body)).await;
        let took = closed_within(&mut st, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("70 KB PUBLISH (level {level}) not closed in 3 s"));
        eprintln!("70 KB PUBLISH after CONNECT (level {level}): closed after {took:?}");
        still_healthy(&s, n).await;
        n += 1;
    }
    // A second CONNECT on an open session. MQTT says the server must close the connection
    // [MQTT-3.1.0-2] (vendor/ntex-mqtt patch 10; 5.0 with DISCONNECT 0x82 first). It never
    // re-authenticates the session as another device and gets no CONNACK; the SUBACK branch
    // below is the reaction of an unpatched ntex-mqtt 8, which ignored the packet: the ACL
    // still confined the session to its own client ID.
    for level in [4u8, 5] {
        let mut st = tcp(addr).await;
        st.write_all(&connect_packet(
            level,
            "raw-dev",
            Some("fleet"),
            Some(PASSWORD),
        ))
        .await
        .unwrap();
        assert_eq!(read_connack(&mut st).await, 0, "level {level}");
        st.write_all(&connect_packet(
            level,
            "healthy-dev",
            Some("fleet"),
            Some(PASSWORD),
        ))
        .await
        .unwrap();
        let mut sub = vec![0, 7];
        if level == 5 {
            sub.push(0); // no properties
        }
        mqtt_str(reply_filter("healthy-dev").as_bytes(), &mut sub);
        sub.push(1);
        let _ = st.write_all(&packet(0x82, &sub)).await;
        // Either the server closed the connection (the MQTT-conformant reaction; 5.0: after a
        // DISCONNECT 0x82 Protocol Error) or the next packet is the SUBACK refusing the other
        // device's filter.
        let mut first = [0u8; 1];
        let mut closed = matches!(
            tokio::time::timeout(Duration::from_secs(5), st.peek(&mut first)).await,
            Ok(Ok(0) | Err(_))
        );
        if !closed && level == 5 && first[0] == 0xe0 {
            let (_, body) = read_packet(&mut st).await;
            assert_eq!(
                body.first(),
                Some(&0x82),
                "level {level}: DISCONNECT {body:?}"
            );
            closed = closed_within(&mut st, Duration::from_secs(3))
                .await
                .is_some();
            assert!(
                closed,
                "level {level}: DISCONNECT 0x82 but the connection stays open"
            );
        }
        if closed {
            eprintln!("second CONNECT (level {level}): connection closed");
        } else {
            let (kind, body) = read_packet(&mut st).await;
            assert_eq!(kind, 0x90, "level {level}: expected SUBACK, got {kind:#x}");
            let refused = if level == 5 { 0x87 } else { 0x80 };
            assert_eq!(body.last(), Some(&refused), "level {level}: {body:?}");
            eprintln!("second CONNECT (level {level}): ignored, identity unchanged");
        }
        still_healthy(&s, n).await;
        n += 1;
    }
    // The request was never started by any of it; a real device still enrolls.
    enroll(&s, Version::V5, "final-dev").await;
    enroll(&s, Version::V3, "raw-dev").await;
    assert_eq!(healthz(&s), 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Limits.

#[tokio::test(flavor = "multi_thread")]
async fn connect_must_arrive_within_the_connect_timeout() {
    let s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_CONNECT_TIMEOUT", "1")]);
    request(&s, "after-dev", "fleet");
    let addr = s.provisioning_addr();

    // Silent TCP connection.
    let mut idle = tcp(addr).await;
    let took = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle connection is closed");
    eprintln!("idle connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(3500),
        "closed too late: {took:?}"
    );

    // Slowloris: a valid CONNECT, one byte every 500 ms (~20 s for the whole packet).
    let bytes = connect_packet(4, "after-dev", Some("fleet"), Some(PASSWORD));
    let (mut rd, mut wr) = tcp(addr).await.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent
    });
    let took = closed_within(&mut rd, Duration::from_secs(6)).await;
    writer.abort();
    let took = took.expect("a slowloris CONNECT is closed");
    eprintln!("slowloris closed after {took:?}");
    assert!(
        took <= Duration::from_millis(3500),
        "closed too late: {took:?}"
    );

    // A normal device is unaffected.
    enroll(&s, Version::V5, "after-dev").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_enrolls_while_200_half_open_connections_are_held() {
    // Default connect timeout (5 s): the idle connections are still held during enrollment.
    let s = TestServer::start();
    request(&s, "busy-road", "fleet");
    let addr = s.provisioning_addr();
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tcp(addr).await);
    }
    // Half of them even sent a partial CONNECT.
    let partial = connect_packet(5, "busy-road", Some("fleet"), Some(PASSWORD));
    for st in idle.iter_mut().step_by(2) {
        st.write_all(&partial[..7]).await.unwrap();
    }
    let started = opened.elapsed();
    let t = Instant::now();
    enroll(&s, Version::V3, "busy-road").await;
    eprintln!(
        "200 idle connections opened in {started:?}; enrollment took {:?}",
        t.elapsed()
    );
    assert!(
        opened.elapsed() < Duration::from_secs(5),
        "the idle connections may have timed out before the enrollment ended"
    );
    assert_eq!(healthz(&s), 200);
    // All 200 are then reclaimed by the connect timeout.
    let reclaim = futures::future::join_all(
        idle.iter_mut()
            .map(|st| closed_within(st, Duration::from_secs(10))),
    )
    .await;
    let open = reclaim.iter().filter(|r| r.is_none()).count();
    assert_eq!(open, 0, "{open} idle connections still open after 10 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_refuses_the_next_session_as_busy() {
    let s = TestServer::start_with(&[("FLEETGATE_PROVISIONING_MAX_CONNECTIONS", "5")]);
    for i in 0..7 {
        request(&s, &format!("mc-{i}"), "fleet");
    }
    let mut held = Vec::new();
    for i in 0..5 {
        let v = if i % 2 == 0 { Version::V5 } else { Version::V3 };
        held.push(
            connect(&s, v, &format!("mc-{i}"), "fleet", PASSWORD)
                .await
                .unwrap_or_else(|c| panic!("session {i} refused {c:#x}")),
        );
    }
    assert_eq!(
        connect(&s, Version::V5, "mc-5", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x89)
    );
    assert_eq!(
        connect(&s, Version::V3, "mc-6", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x03)
    );
    // Busy refusals are not credential failures: no ban.
    assert_eq!(
        metric(&s, "fleetgate_bans_total{result=\"client_id\"}"),
        0.0
    );
    // One leaves; the next is accepted (once the server has seen the disconnect).
    held.pop().unwrap().disconnect().await;
    let mut accepted = None;
    for _ in 0..50 {
        match connect(&s, Version::V5, "mc-5", "fleet", PASSWORD).await {
            Ok(d) => {
                accepted = Some(d);
                break;
            }
            Err(0x89) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(c) => panic!("unexpected refusal {c:#x}"),
        }
    }
    let d = accepted.expect("accepted again after a disconnect");
    // Full again.
    assert_eq!(
        connect(&s, Version::V3, "mc-6", "fleet", PASSWORD)
            .await
            .err(),
        Some(0x03)
    );
    d.disconnect().await;
    for d in held {
        d.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_holds_under_a_burst() {
    // The default argon2 cost: the verification takes long enough for the CONNECTs to be
    // decided concurrently.
    let s = TestServer::start_with(&[
        ("FLEETGATE_PROVISIONING_MAX_CONNECTIONS", "5"),
        ("FLEETGATE_AUTH_ARGON2_M_COST", "19456"),
        ("FLEETGATE_AUTH_ARGON2_T_COST", "2"),
    ]);
    // One provision user per device, so that no credential is in the verification cache
    // (creating a request that reuses a username verifies, and caches, its password).
    for i in 0..12 {
        request(&s, &format!("burst-{i}"), &format!("fleet-{i}"));
    }
    // Twelve CONNECTs at once.
    let ids: Vec<(String, String)> = (0..12)
        .map(|i| (format!("burst-{i}"), format!("fleet-{i}")))
        .collect();
    let results = futures::future::join_all(
        ids.iter()
            .map(|(c, u)| connect(&s, Version::V5, c, u, PASSWORD)),
    )
    .await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for r in results {
        match r {
            Ok(d) => accepted.push(d),
            Err(c) => refused.push(c),
        }
    }
    let n = accepted.len();
    eprintln!("burst of 12: {n} accepted, refused {refused:x?}");
    for d in accepted {
        d.disconnect().await;
    }
    assert!(refused.iter().all(|c| *c == 0x89), "{refused:?}");
    assert!(n <= 5, "{n} sessions accepted with max_connections = 5");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_body_over_the_limit_is_413_and_changes_nothing() {
    let s = TestServer::start();
    create_account(&s, "acme");
    let limit = s.app().config.admin.body_limit;
    assert_eq!(limit, 1 << 20);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let url = |p: &str| format!("{}{p}", s.admin_url());
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let reqs = "/api/v1/accounts/acme/provision-requests";

    // Valid JSON padded just over 1 MiB, with a Content-Length.
    let mut big = request_body("too-big", "fleet", PASSWORD);
    big["pad"] = json!("x".repeat(limit));
    let bytes = big.to_string().into_bytes();
    let r = agent
        .post(&url(reqs))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .send(&bytes[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = agent
        .post(&url("/api/v1/accounts"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .send(
            json!({"name": "big", "pad": "x".repeat(limit)})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // The same, chunked (no Content-Length): 2 MiB.
    let mut chunked = request_body("too-big-chunked", "fleet", PASSWORD);
    chunked["pad"] = json!("y".repeat(2 * limit));
    let chunked = chunked.to_string().into_bytes();
    let mut reader = &chunked[..];
    let r = agent
        .post(&url(reqs))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .send(ureq::SendBody::from_reader(&mut reader));
    // The server may answer 413 and close before reading it all; both are refusals.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Nothing was created.
    let (status, list) = get(&s, reqs);
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(get(&s, "/api/v1/accounts/big").0, 404);
    // A normal request still works.
    create_request(&s, "acme", request_body("normal", "fleet", PASSWORD));
    assert_eq!(healthz(&s), 200);
}

/// PROTOCOL.md 2: an empty client ID is refused as identifier rejected (3.1.1 0x02) /
/// Client Identifier not valid (5.0 0x85), not assigned one by the server.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_client_id_is_refused() {
    let s = TestServer::start();
    for (level, code) in [(4u8, 0x02u8), (5, 0x85)] {
        let mut c = tcp(s.provisioning_addr()).await;
        c.write_all(&connect_packet(
            level,
            "",
            Some("fleet"),
            Some("password-1"),
        ))
        .await
        .unwrap();
        assert_eq!(read_connack(&mut c).await, code, "protocol level {level}");
    }
}
