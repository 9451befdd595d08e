//! `refusal-timing`: measures how long a refused MQTT 3.1.1 CONNECT takes to be answered, for
//! three classes that must not be told apart (issue 19): an unknown client ID, a known client
//! ID with a wrong username, and a known client ID with the right username and a wrong
//! password. Used by `benches/refusal-timing.sh`.
//!
//! refusal-timing ADDR CLIENT_ID USERNAME [--samples N]
//!
//! `CLIENT_ID` / `USERNAME` are a provision request's; the classes are sent round robin, one
//! CONNECT at a time on a fresh connection, N of each (default 200). The time is from the
//! CONNECT's last byte written to the CONNACK read. Prints one JSON object: per class the
//! CONNACK codes seen and the median, p90, p99 and max in milliseconds. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: refusal-timing ADDR CLIENT_ID USERNAME [--samples N]");
    std::process::exit(2)
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A 3.1.1 CONNECT, clean session, with username and password.
fn connect(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.extend_from_slice(&[4, 0xC2, 0, 60]);
    string(&mut body, client_id);
    string(&mut body, username);
    string(&mut body, password);
    let mut out = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = u8::try_from(len % 128).unwrap_or(0);
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// (CONNACK return code, time from the CONNECT written to the CONNACK read).
fn one(addr: SocketAddr, packet: &[u8]) -> std::io::Result<(u8, Duration)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(packet)?;
    let sent = Instant::now();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack)?;
    Ok((ack[3], sent.elapsed()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let mut it = std::env::args().skip(1);
    let addr: SocketAddr = it
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    if !addr.ip().is_loopback() {
        eprintln!("refusal-timing: loopback addresses only");
        std::process::exit(2);
    }
    let client_id = it.next().unwrap_or_else(|| usage());
    let username = it.next().unwrap_or_else(|| usage());
    let mut samples = 200usize;
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--samples", Some(n)) => samples = n.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let classes = [
        (
            "unknown_client_id",
            connect(
                &format!("{client_id}-unknown"),
                &username,
                "wrong-password-1",
            ),
        ),
        (
            "wrong_username",
            connect(&client_id, &format!("{username}-x"), "wrong-password-1"),
        ),
        (
            "wrong_password",
            connect(&client_id, &username, "wrong-password-1"),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    let mut codes: Vec<std::collections::BTreeMap<u8, usize>> = vec![Default::default(); 3];
    let mut errors = 0usize;
    for _ in 0..samples {
        for (i, (_, packet)) in classes.iter().enumerate() {
            match one(addr, packet) {
                Ok((code, t)) => {
                    *codes[i].entry(code).or_default() += 1;
                    times[i].push(t.as_secs_f64() * 1000.0);
                }
                Err(_) => errors += 1,
            }
        }
    }
    let mut parts = Vec::new();
    for (i, (name, _)) in classes.iter().enumerate() {
        let t = &mut times[i];
        t.sort_by(f64::total_cmp);
        let codes: Vec<String> = codes[i]
            .iter()
            .map(|(c, n)| format!("\"0x{c:02x}\": {n}"))
            .collect();
        parts.push(format!(
            "\"{name}\": {{\"samples\": {}, \"connack\": {{{}}}, \"median_ms\": {:.3}, \
             \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
            t.len(),
            codes.join(", "),
            percentile(t, 50.0),
            percentile(t, 90.0),
            percentile(t, 99.0),
            t.last().copied().unwrap_or(f64::NAN),
        ));
    }
    println!("{{{}, \"errors\": {errors}}}", parts.join(", "));
}
