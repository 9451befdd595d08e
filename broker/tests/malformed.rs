//! A malformed-packet campaign against the real binary, in the style of Mosquitto's
//! packet-sequence tests (`test/broker/*.py`): every case is a byte sequence sent on a fresh
//! connection to the sandbox listener (anonymous), the operational listener (a provisioned
//! device's credentials) and the provisioning listener (a pending provision request's
//! credentials), in MQTT 3.1.1 and 5.0, either instead of a CONNECT or inside a session that a
//! valid CONNECT opened. Each case names the reaction the specifications ask for:
//!
//! - a malformed packet or protocol error closes the connection; a 5.0 server SHOULD send a
//!   DISCONNECT (or, for CONNECT, MAY send a CONNACK) first, and when it does its reason code
//!   must be one the specification allows for that error (MQTT 5.0 4.13, 3.1.1 4.8);
//! - where 5.0 says the receiver "uses DISCONNECT with Reason Code X" (topic alias 0x94, packet
//!   too large 0x95), that DISCONNECT is required;
//! - a few packets are answered rather than refused (PUBREL for an unknown id), and a few the
//!   specifications leave open (an acknowledgement for an unknown id) may close the connection
//!   or be ignored, but must not harm anything.
//!
//! After every case a normal client connects to the same listener and gets a PINGRESP; the
//! whole table then runs five times more while the process' RSS and open file descriptors are
//! sampled from /proc: both must stay bounded. `--nocapture` prints what the server did per case.

mod common;

use std::time::{Duration, Instant};

use common::binary::Broker;
use common::raw::{Client, Options, Packet, WAIT, frame};

/// Sandbox on, and failure limits out of reach: several cases send the operational listener a
/// CONNECT it cannot authenticate (no username), and a ban would fail the health checks after.
const CONFIG: &str = r#"
[operational.sandbox]
deny_subscribe = ["test/nosubscribe"]
[auth]
max_failures = 1000000
max_failures_per_address = 1000000
"#;

/// Where a case's bytes go.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// As the first bytes of a connection (instead of a valid CONNECT).
    Connect,
    /// After a valid CONNECT was accepted.
    Session,
}

/// Which protocol versions a case applies to.
#[derive(Clone, Copy, PartialEq)]
enum Versions {
    Both,
    V3,
    V5,
}

/// What the server must do.
#[derive(Clone, Copy)]
enum Expect {
    /// Close the connection. 5.0: a CONNACK or DISCONNECT sent before closing carries one of
    /// these reason codes. 3.1.1: a CONNACK before closing is a refusal (non-zero).
    Close(&'static [u8]),
    /// 5.0: DISCONNECT with this reason code, then close. 3.1.1: close.
    Disconnect(u8),
    /// Keep the session and answer with a packet that matches.
    Answer(fn(&Packet) -> bool),
    /// Refuse in the SUBACK (every code 0x80 or above) or close as [`Expect::Close`].
    Refuse(&'static [u8]),
    /// The specifications leave it open: close as [`Expect::Close`], or carry on (a PINGREQ
    /// sent after the case is answered).
    Either(&'static [u8]),
}

/// The connection a case runs on.
struct Ctx {
    v5: bool,
    client_id: String,
    login: Option<(String, String)>,
    /// A topic the session may publish to that starts nothing (see [`Kind::own_topic`]).
    topic: String,
}

struct Case {
    name: &'static str,
    phase: Phase,
    versions: Versions,
    /// The case's bytes.
    bytes: fn(&Ctx) -> Vec<u8>,
    /// Half-close after the bytes (a packet cut by EOF); otherwise a PINGREQ follows them.
    eof: bool,
    expect: Expect,
}

/// The client ID of the provision request whose credentials the provisioning cases use.
const PROVISIONING_CID: &str = "malformed-enrollee";

const MALFORMED: &[u8] = &[0x81];
const PROTOCOL: &[u8] = &[0x81, 0x82];

// ---------------------------------------------------------------- byte builders

/// A two-byte length and the bytes (an MQTT string or binary, valid UTF-8 or not).
fn s(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

fn varint(mut v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// A 5.0 property section: its length, then the properties.
fn props(p: &[u8]) -> Vec<u8> {
    let mut out = varint(p.len() as u32);
    out.extend_from_slice(p);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A CONNECT, valid unless a field says otherwise.
struct Conn {
    first: u8,
    name: &'static [u8],
    extra_flags: u8,
    /// 5.0 property section, length included.
    props: Vec<u8>,
    /// The client id field, its length included.
    client_id: Vec<u8>,
    /// Will topic and payload (the will flag is set when present).
    will: Option<(Vec<u8>, Vec<u8>)>,
    username: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    trailing: Vec<u8>,
}

impl Conn {
    fn new(c: &Ctx) -> Conn {
        Conn {
            first: 0x10,
            name: b"MQTT",
            extra_flags: 0,
            props: props(&[]),
            client_id: s(c.client_id.as_bytes()),
            will: None,
            username: c.login.as_ref().map(|l| l.0.as_bytes().to_vec()),
            password: c.login.as_ref().map(|l| l.1.as_bytes().to_vec()),
            trailing: Vec::new(),
        }
    }

    fn bytes(&self, c: &Ctx) -> Vec<u8> {
        let mut flags = 0x02 | self.extra_flags;
        if self.will.is_some() {
            flags |= 0x04;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        let mut body = s(self.name);
        body.push(if c.v5 { 5 } else { 4 });
        body.push(flags);
        body.extend(60u16.to_be_bytes());
        if c.v5 {
            body.extend(&self.props);
        }
        body.extend(&self.client_id);
        if let Some((topic, payload)) = &self.will {
            if c.v5 {
                body.push(0);
            }
            body.extend(s(topic));
            body.extend(s(payload));
        }
        for field in [&self.username, &self.password].into_iter().flatten() {
            body.extend(s(field));
        }
        body.extend(&self.trailing);
        frame(self.first, &body)
    }
}

/// A CONNECT changed by `f`.
fn conn(c: &Ctx, f: impl FnOnce(&mut Conn)) -> Vec<u8> {
    let mut k = Conn::new(c);
    f(&mut k);
    k.bytes(c)
}

/// The session's own topic (a device may publish only in its namespace).
fn own_topic(c: &Ctx) -> &str {
    &c.topic
}

/// A PUBLISH body: topic, packet id (QoS > 0), 5.0 property section, payload.
fn publish(c: &Ctx, first: u8, topic: &[u8], id: Option<u16>, p: &[u8]) -> Vec<u8> {
    let mut body = s(topic);
    if let Some(id) = id {
        body.extend(id.to_be_bytes());
    }
    if c.v5 {
        body.extend(props(p));
    }
    body.extend(b"payload");
    frame(first, &body)
}

/// A SUBSCRIBE with packet id `id`, 5.0 properties `p` and these (filter, options) entries.
fn subscribe(c: &Ctx, first: u8, id: u16, p: &[u8], filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if c.v5 {
        body.extend(props(p));
    }
    for (f, o) in filters {
        body.extend(s(f));
        body.push(*o);
    }
    frame(first, &body)
}

fn unsubscribe(c: &Ctx, first: u8, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = 7u16.to_be_bytes().to_vec();
    if c.v5 {
        body.push(0);
    }
    for f in filters {
        body.extend(s(f));
    }
    frame(first, &body)
}

// ---------------------------------------------------------------- the table

fn cases() -> Vec<Case> {
    use Expect::*;
    use Phase::*;
    use Versions::*;
    let case = |name, phase, versions, bytes: fn(&Ctx) -> Vec<u8>, expect| Case {
        name,
        phase,
        versions,
        bytes,
        eof: false,
        expect,
    };
    let cut = |name, phase, bytes: fn(&Ctx) -> Vec<u8>| Case {
        name,
        phase,
        versions: Both,
        bytes,
        eof: true,
        expect: Close(MALFORMED),
    };
    vec![
        // ---- CONNECT
        case(
            "CONNECT fixed-header flags 0001",
            Connect,
            Both,
            |c| conn(c, |k| k.first = 0x11),
            Close(MALFORMED),
        ),
        case(
            "CONNECT reserved flag bit 0",
            Connect,
            Both,
            |c| conn(c, |k| k.extra_flags = 0x01),
            Close(MALFORMED),
        ),
        case(
            "CONNECT will QoS 3",
            Connect,
            Both,
            |c| {
                conn(c, |k| {
                    k.will = Some((b"w/t".to_vec(), b"x".to_vec()));
                    k.extra_flags = 0x18;
                })
            },
            Close(PROTOCOL),
        ),
        case(
            "CONNECT will QoS 1 without will flag",
            Connect,
            Both,
            |c| conn(c, |k| k.extra_flags = 0x08),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT will retain without will flag",
            Connect,
            Both,
            |c| conn(c, |k| k.extra_flags = 0x20),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT password without username",
            Connect,
            V3,
            |c| {
                conn(c, |k| {
                    k.username = None;
                    k.password = Some(b"secret-secret".to_vec());
                })
            },
            Close(PROTOCOL),
        ),
        case(
            "CONNECT client id not UTF-8 (C3 28)",
            Connect,
            Both,
            |c| conn(c, |k| k.client_id = s(b"bad\xc3\x28")),
            Close(&[0x81, 0x85]),
        ),
        case(
            "CONNECT client id with U+0000",
            Connect,
            Both,
            |c| conn(c, |k| k.client_id = s(b"a\0b")),
            Close(&[0x81, 0x85]),
        ),
        case(
            "CONNECT client id with a UTF-16 surrogate (ED A0 80)",
            Connect,
            Both,
            |c| conn(c, |k| k.client_id = s(b"s\xed\xa0\x80")),
            Close(&[0x81, 0x85]),
        ),
        case(
            "CONNECT username not UTF-8",
            Connect,
            Both,
            |c| conn(c, |k| k.username = Some(b"\xff\xfe".to_vec())),
            Close(&[0x81, 0x86]),
        ),
        case(
            "CONNECT will topic with a wildcard",
            Connect,
            Both,
            |c| conn(c, |k| k.will = Some((b"w/#".to_vec(), b"x".to_vec()))),
            Close(&[0x81, 0x82, 0x87, 0x90]),
        ),
        case(
            "CONNECT will topic with U+0000",
            Connect,
            Both,
            |c| conn(c, |k| k.will = Some((b"w/\0".to_vec(), b"x".to_vec()))),
            Close(&[0x81, 0x90]),
        ),
        case(
            "CONNECT client id length past the packet end",
            Connect,
            Both,
            |c| conn(c, |k| k.client_id = vec![0, 200, b's']),
            Close(MALFORMED),
        ),
        case(
            "CONNECT with bytes after its payload",
            Connect,
            Both,
            |c| conn(c, |k| k.trailing = vec![0, 1, 2]),
            Close(MALFORMED),
        ),
        case(
            "CONNECT remaining length shorter than its header",
            Connect,
            Both,
            |_| vec![0x10, 0x04, 0, 4, b'M', b'Q'],
            Close(MALFORMED),
        ),
        case(
            "CONNECT 5-byte remaining length",
            Connect,
            Both,
            |_| vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x7f],
            Close(MALFORMED),
        ),
        case(
            "CONNECT remaining length over max_packet_size",
            Connect,
            Both,
            |c| {
                let mut b = vec![0x10];
                b.extend(varint(1_000_000));
                b.extend(s(b"MQTT"));
                b.push(if c.v5 { 5 } else { 4 });
                b
            },
            Close(&[0x81, 0x95]),
        ),
        case(
            "CONNECT protocol name 'mqtt'",
            Connect,
            Both,
            |c| conn(c, |k| k.name = b"mqtt"),
            Close(&[0x81, 0x84]),
        ),
        cut("CONNECT cut by EOF", Connect, |c| {
            let b = conn(c, |_| {});
            b[..b.len() / 2].to_vec()
        }),
        case(
            "CONNECT unknown property 0x7F",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&[0x7f, 0])),
            Close(MALFORMED),
        ),
        case(
            "CONNECT duplicate session expiry",
            Connect,
            V5,
            |c| {
                conn(c, |k| {
                    k.props = props(&[0x11, 0, 0, 0, 9, 0x11, 0, 0, 0, 9])
                })
            },
            Close(PROTOCOL),
        ),
        case(
            "CONNECT topic alias (not a CONNECT property)",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&[0x23, 0, 1])),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT receive maximum 0",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&[0x21, 0, 0])),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT maximum packet size 0",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&[0x27, 0, 0, 0, 0])),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT request problem information 2",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&[0x17, 2])),
            Close(PROTOCOL),
        ),
        case(
            "CONNECT property length past the packet end",
            Connect,
            V5,
            |c| conn(c, |k| k.props = vec![50, 0x11, 0, 0, 0, 9]),
            Close(MALFORMED),
        ),
        case(
            "CONNECT user property not UTF-8",
            Connect,
            V5,
            |c| {
                conn(c, |k| {
                    k.props = props(&cat(&[&[0x26], &s(b"k"), &s(b"\xff")]))
                })
            },
            Close(MALFORMED),
        ),
        case(
            "CONNECT authentication method nobody offers",
            Connect,
            V5,
            |c| conn(c, |k| k.props = props(&cat(&[&[0x15], &s(b"SCRAM-SHA-1")]))),
            Close(&[0x81, 0x82, 0x8c]),
        ),
        case(
            "AUTH before CONNECT",
            Connect,
            Both,
            |_| vec![0xf0, 0],
            Close(PROTOCOL),
        ),
        case(
            "PINGREQ before CONNECT",
            Connect,
            Both,
            |_| vec![0xc0, 0],
            Close(PROTOCOL),
        ),
        // ---- inside a session
        case(
            "second CONNECT",
            Session,
            Both,
            |c| conn(c, |_| {}),
            Close(PROTOCOL),
        ),
        case(
            "PUBLISH QoS 3",
            Session,
            Both,
            |c| publish(c, 0x36, own_topic(c).as_bytes(), Some(1), &[]),
            Close(MALFORMED),
        ),
        case(
            "PUBLISH QoS 1 packet id 0",
            Session,
            Both,
            |c| publish(c, 0x32, own_topic(c).as_bytes(), Some(0), &[]),
            Close(PROTOCOL),
        ),
        case(
            "PUBLISH topic with '+'",
            Session,
            Both,
            |c| publish(c, 0x30, format!("{}/+", own_topic(c)).as_bytes(), None, &[]),
            Close(&[0x81, 0x82, 0x90]),
        ),
        case(
            "PUBLISH topic with '#'",
            Session,
            Both,
            |c| {
                publish(
                    c,
                    0x32,
                    format!("{}/#", own_topic(c)).as_bytes(),
                    Some(1),
                    &[],
                )
            },
            Close(&[0x81, 0x82, 0x90]),
        ),
        case(
            "PUBLISH topic with U+0000",
            Session,
            Both,
            |c| {
                publish(
                    c,
                    0x30,
                    format!("{}/\0", own_topic(c)).as_bytes(),
                    None,
                    &[],
                )
            },
            Close(&[0x81, 0x90]),
        ),
        case(
            "PUBLISH topic not UTF-8",
            Session,
            Both,
            |c| {
                publish(
                    c,
                    0x30,
                    &cat(&[own_topic(c).as_bytes(), b"/\xc0\xaf"]),
                    None,
                    &[],
                )
            },
            Close(&[0x81, 0x90]),
        ),
        case(
            "PUBLISH empty topic (no alias)",
            Session,
            Both,
            |c| publish(c, 0x30, b"", None, &[]),
            Close(&[0x81, 0x82, 0x90]),
        ),
        case(
            "PUBLISH topic length past the packet end",
            Session,
            Both,
            |_| frame(0x30, &[0, 100, b'a', b'/', b'b']),
            Close(MALFORMED),
        ),
        case(
            "PUBLISH QoS 1 cut before its packet id",
            Session,
            Both,
            |c| frame(0x32, &s(own_topic(c).as_bytes())),
            Close(MALFORMED),
        ),
        case(
            "PUBLISH remaining length over max_packet_size",
            Session,
            Both,
            |c| {
                let mut b = vec![0x30];
                b.extend(varint(300_000));
                b.extend(s(own_topic(c).as_bytes()));
                b
            },
            Disconnect(0x95),
        ),
        case(
            "PUBLISH 5-byte remaining length",
            Session,
            Both,
            |_| vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
            Close(MALFORMED),
        ),
        cut("PUBLISH cut by EOF", Session, |c| {
            let b = publish(c, 0x30, own_topic(c).as_bytes(), None, &[]);
            b[..b.len() - 3].to_vec()
        }),
        case(
            "SUBSCRIBE flags 0000",
            Session,
            Both,
            |c| subscribe(c, 0x80, 1, &[], &[(b"a/b", 0)]),
            Close(MALFORMED),
        ),
        case(
            "SUBSCRIBE without a filter",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE packet id 0",
            Session,
            Both,
            |c| subscribe(c, 0x82, 0, &[], &[(b"a/b", 0)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE QoS 3",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/b", 3)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE reserved option bits",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/b", 0xc1)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE filter with U+0000",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/\0", 0)]),
            Close(&[0x81, 0x8f]),
        ),
        case(
            "SUBSCRIBE filter not UTF-8",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/\xff", 0)]),
            Close(&[0x81, 0x8f]),
        ),
        case(
            "SUBSCRIBE filter a/#/b",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/#/b", 0)]),
            Refuse(&[0x81, 0x82, 0x8f]),
        ),
        case(
            "SUBSCRIBE filter a+",
            Session,
            Both,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a+/b", 0)]),
            Refuse(&[0x81, 0x82, 0x8f]),
        ),
        case(
            "UNSUBSCRIBE flags 0000",
            Session,
            Both,
            |c| unsubscribe(c, 0xa0, &[b"a/b"]),
            Close(MALFORMED),
        ),
        case(
            "UNSUBSCRIBE without a filter",
            Session,
            Both,
            |c| unsubscribe(c, 0xa2, &[]),
            Close(PROTOCOL),
        ),
        case(
            "PUBREL flags 0000",
            Session,
            Both,
            |_| vec![0x60, 2, 0, 9],
            Close(MALFORMED),
        ),
        case(
            "PUBACK flags 0001",
            Session,
            Both,
            |_| vec![0x41, 2, 0, 9],
            Close(MALFORMED),
        ),
        case(
            "PINGREQ flags 0001",
            Session,
            Both,
            |_| vec![0xc1, 0],
            Close(MALFORMED),
        ),
        case(
            "PINGREQ with a body",
            Session,
            Both,
            |_| vec![0xc0, 1, 0],
            Close(MALFORMED),
        ),
        case(
            "DISCONNECT flags 0001",
            Session,
            Both,
            |_| vec![0xe1, 0],
            Close(MALFORMED),
        ),
        case(
            "DISCONNECT with a body",
            Session,
            V3,
            |_| vec![0xe0, 1, 0],
            Close(MALFORMED),
        ),
        case(
            "CONNACK from a client",
            Session,
            Both,
            |_| vec![0x20, 2, 0, 0],
            Close(PROTOCOL),
        ),
        case(
            "SUBACK from a client",
            Session,
            Both,
            |_| vec![0x90, 3, 0, 1, 0],
            Close(PROTOCOL),
        ),
        case(
            "UNSUBACK from a client",
            Session,
            Both,
            |_| vec![0xb0, 2, 0, 1],
            Close(PROTOCOL),
        ),
        case(
            "PINGRESP from a client",
            Session,
            Both,
            |_| vec![0xd0, 0],
            Close(PROTOCOL),
        ),
        case(
            "reserved packet type 0",
            Session,
            Both,
            |_| vec![0x00, 0],
            Close(PROTOCOL),
        ),
        case(
            "AUTH without an authentication method",
            Session,
            Both,
            |_| vec![0xf0, 0],
            Close(PROTOCOL),
        ),
        case(
            "PUBACK for an unknown packet id",
            Session,
            Both,
            |_| vec![0x40, 2, 0, 77],
            Either(PROTOCOL),
        ),
        case(
            "PUBREC for an unknown packet id",
            Session,
            Both,
            |_| vec![0x50, 2, 0, 77],
            Either(PROTOCOL),
        ),
        case(
            "PUBCOMP for an unknown packet id",
            Session,
            Both,
            |_| vec![0x70, 2, 0, 77],
            Either(PROTOCOL),
        ),
        case(
            "PUBREL for an unknown packet id",
            Session,
            Both,
            |_| vec![0x62, 2, 0, 77],
            Answer(|p| matches!(p, Packet::PubComp { id: 77, .. })),
        ),
        case(
            "PUBLISH topic alias 0",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x23, 0, 0]),
            Disconnect(0x94),
        ),
        case(
            "PUBLISH topic alias above the maximum",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x23, 0xff, 0xff]),
            Disconnect(0x94),
        ),
        case(
            "PUBLISH unknown topic alias, empty topic",
            Session,
            V5,
            |_| {
                publish(
                    &Ctx {
                        v5: true,
                        client_id: String::new(),
                        login: None,
                        topic: String::new(),
                    },
                    0x30,
                    b"",
                    None,
                    &[0x23, 0, 5],
                )
            },
            Close(&[0x81, 0x82, 0x94]),
        ),
        case(
            "PUBLISH duplicate payload format indicator",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x01, 0, 0x01, 0]),
            Close(PROTOCOL),
        ),
        case(
            "PUBLISH subscription identifier from a client",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x0b, 1]),
            Close(PROTOCOL),
        ),
        case(
            "PUBLISH payload format indicator 2",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x01, 2]),
            Close(PROTOCOL),
        ),
        case(
            "PUBLISH unknown property 0x7F",
            Session,
            V5,
            |c| publish(c, 0x30, own_topic(c).as_bytes(), None, &[0x7f, 0]),
            Close(MALFORMED),
        ),
        case(
            "PUBLISH property length past the packet end",
            Session,
            V5,
            |c| {
                let mut body = s(own_topic(c).as_bytes());
                body.extend([60, 0x01, 0]);
                frame(0x30, &body)
            },
            Close(MALFORMED),
        ),
        case(
            "PUBLISH user property not UTF-8",
            Session,
            V5,
            |c| {
                publish(
                    c,
                    0x30,
                    own_topic(c).as_bytes(),
                    None,
                    &cat(&[&[0x26], &s(b"k"), &s(b"\xc3\x28")]),
                )
            },
            Close(MALFORMED),
        ),
        case(
            "SUBSCRIBE subscription identifier 0",
            Session,
            V5,
            |c| subscribe(c, 0x82, 1, &[0x0b, 0], &[(b"a/b", 0)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE two subscription identifiers",
            Session,
            V5,
            |c| subscribe(c, 0x82, 1, &[0x0b, 1, 0x0b, 2], &[(b"a/b", 0)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE retain handling 3",
            Session,
            V5,
            |c| subscribe(c, 0x82, 1, &[], &[(b"a/b", 0x30)]),
            Close(PROTOCOL),
        ),
        case(
            "SUBSCRIBE shared subscription with no-local",
            Session,
            V5,
            |c| subscribe(c, 0x82, 1, &[], &[(b"$share/g/a/b", 0x04)]),
            Close(PROTOCOL),
        ),
        case(
            "DISCONNECT session expiry after CONNECT's 0",
            Session,
            V5,
            |_| vec![0xe0, 7, 0x00, 5, 0x11, 0, 0, 0, 9],
            Close(PROTOCOL),
        ),
    ]
}

// ---------------------------------------------------------------- running a case

/// What the server did: the packets it sent, and whether it closed.
struct Seen {
    packets: Vec<Packet>,
    closed: bool,
}

impl Seen {
    fn describe(&self) -> String {
        let mut out: Vec<String> = self
            .packets
            .iter()
            .map(|p| match p {
                Packet::ConnAck { code, .. } => format!("CONNACK 0x{code:02x}"),
                Packet::Disconnect { code, .. } => format!("DISCONNECT 0x{code:02x}"),
                Packet::SubAck { codes, .. } => format!("SUBACK {codes:02x?}"),
                Packet::PingResp => "PINGRESP".into(),
                other => format!("{other:?}"),
            })
            .collect();
        out.push(if self.closed { "closed" } else { "open" }.into());
        out.join(", ")
    }
}

/// Reads until the server closes, answers the probe PINGREQ, or [`WAIT`] passes.
fn observe(c: &mut Client) -> Seen {
    let mut packets = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv(left) {
            Some(p) => {
                let pong = p == Packet::PingResp;
                packets.push(p);
                if pong {
                    return Seen {
                        packets,
                        closed: false,
                    };
                }
            }
            None => {
                return Seen {
                    packets,
                    closed: c.closed(Duration::ZERO),
                };
            }
        }
    }
}

/// `None` when what the server did is what `expect` allows, else why not.
fn verdict(expect: Expect, v5: bool, phase: Phase, seen: &Seen) -> Option<String> {
    // A refusal packet (CONNACK / DISCONNECT) before the close, with a code `codes` allows.
    let refusals_ok = |codes: &[u8]| {
        seen.packets.iter().all(|p| match p {
            Packet::ConnAck { code, .. } if phase == Phase::Connect => {
                if v5 {
                    codes.contains(code)
                } else {
                    *code != 0
                }
            }
            Packet::Disconnect { code, .. } => v5 && codes.contains(code),
            _ => false,
        })
    };
    let ok = match expect {
        Expect::Close(codes) => seen.closed && refusals_ok(codes),
        Expect::Disconnect(code) => {
            seen.closed
                && if v5 {
                    matches!(seen.packets.as_slice(), [Packet::Disconnect { code: c, .. }] if *c == code)
                } else {
                    seen.packets.is_empty()
                }
        }
        Expect::Answer(want) => !seen.closed && seen.packets.iter().any(want),
        Expect::Refuse(codes) => {
            (seen.closed && refusals_ok(codes))
                || (!seen.closed
                    && seen.packets.iter().any(|p| {
                        matches!(p, Packet::SubAck { codes, .. } if codes.iter().all(|c| *c >= 0x80))
                    }))
        }
        Expect::Either(codes) => {
            (seen.closed && refusals_ok(codes))
                || (!seen.closed && seen.packets.iter().all(|p| !matches!(p, Packet::Disconnect { .. })))
        }
    };
    (!ok).then(|| seen.describe())
}

/// The kind of listener, which decides the session's own topic.
#[derive(Clone, Copy)]
enum Kind {
    /// Anonymous, any topic.
    Sandbox,
    /// A provisioned device: its `ACCOUNT/CID/#` namespace.
    Operational,
    /// A provisioning session: `$EDC/PA/CID/MQTT/#`, where only a BIRTH would start something
    /// (the request topic would start an exchange and settle the request).
    Provisioning,
}

impl Kind {
    fn own_topic(self, client_id: &str, username: Option<&str>) -> String {
        match self {
            Kind::Sandbox => format!("m/{client_id}"),
            Kind::Operational => {
                let account = username.and_then(|u| u.split('@').nth(1)).unwrap();
                format!("{account}/{client_id}/m")
            }
            Kind::Provisioning => format!("$EDC/provision/{client_id}/MQTT/m"),
        }
    }
}

/// A listener under test.
struct Target {
    name: &'static str,
    kind: Kind,
    addr: std::net::SocketAddr,
    /// The (client id, username, password) a session logs in with: the provisioned device's
    /// on the operational listener, a provision request's on the provisioning listener; `None`
    /// on the sandbox.
    device: Option<(String, String, String)>,
}

impl Target {
    fn ctx(&self, v5: bool, n: usize) -> Ctx {
        let (client_id, login) = match &self.device {
            Some((cid, user, pass)) => (cid.clone(), Some((user.clone(), pass.clone()))),
            None => (format!("malformed-{n}"), None),
        };
        let topic = self
            .kind
            .own_topic(&client_id, login.as_ref().map(|l| l.0.as_str()));
        Ctx {
            v5,
            client_id,
            login,
            topic,
        }
    }

    fn options(&self, c: &Ctx) -> Options {
        let o = Options::version(c.v5, &c.client_id);
        match &c.login {
            Some((u, p)) => o.login(u, p),
            None => o,
        }
    }

    /// A normal client connects and is answered.
    fn healthy(&self, v5: bool) -> Result<(), String> {
        let c = self.ctx(v5, 0);
        let mut client = Client::try_connect(self.addr, &self.options(&c))?;
        if client.connack_code != 0 {
            return Err(format!("CONNACK 0x{:02x}", client.connack_code));
        }
        client.ping();
        match client.recv(WAIT) {
            Some(Packet::PingResp) => {
                client.disconnect();
                Ok(())
            }
            other => Err(format!("PINGREQ answered with {other:?}")),
        }
    }

    /// Runs one case; `Err` with what happened when the reaction is wrong or the listener is
    /// not healthy after it.
    fn run(&self, case: &Case, v5: bool, n: usize) -> Result<String, String> {
        let ctx = self.ctx(v5, n);
        let mut c = match case.phase {
            Phase::Connect => Client::open(self.addr, v5),
            Phase::Session => Client::connect(self.addr, &self.options(&ctx)),
        };
        c.send(&(case.bytes)(&ctx));
        if case.eof {
            c.shutdown_write();
        } else {
            c.ping();
        }
        let seen = observe(&mut c);
        drop(c);
        if let Some(wrong) = verdict(case.expect, v5, case.phase, &seen) {
            return Err(format!("wrong reaction: {wrong}"));
        }
        self.healthy(v5)
            .map_err(|e| format!("listener unhealthy after the case: {e}"))?;
        Ok(seen.describe())
    }
}

/// Resident set size (KiB) and open descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// Every case on every target and version; the failures, and (on `report`) a line per case.
fn campaign(targets: &[Target], report: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut n = 0;
    for case in cases() {
        for t in targets {
            for v5 in [false, true] {
                let applies = match case.versions {
                    Versions::Both => true,
                    Versions::V3 => !v5,
                    Versions::V5 => v5,
                };
                if !applies {
                    continue;
                }
                n += 1;
                let label = format!(
                    "{} / {} / {}",
                    case.name,
                    t.name,
                    if v5 { "5.0" } else { "3.1.1" }
                );
                match t.run(&case, v5, n) {
                    Ok(seen) if report => eprintln!("ok   {label}: {seen}"),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("FAIL {label}: {e}");
                        failures.push(format!("{label}: {e}"));
                    }
                }
            }
        }
    }
    failures
}

#[test]
fn every_malformed_packet_gets_the_specified_reaction_and_costs_nothing() {
    let b = Broker::start(CONFIG);
    let (user, pass) = b.provision("acme", "malformed-device");
    // A provision request that stays CREATED (no case publishes on its request topic): its
    // credentials open a provisioning session for every case.
    let (status, body) = b.post(
        "/api/v1/accounts/acme/provision-requests",
        &serde_json::json!({
            "clientId": PROVISIONING_CID,
            "provisionUsername": "fleet-acme",
            "provisionPassword": "fleet-password-1",
            "confirmProvisionPassword": "fleet-password-1",
            "brokerUrl": "mqtt://127.0.0.1:1884",
        }),
    );
    assert_eq!(status, 201, "{body}");
    let request = format!(
        "/api/v1/accounts/acme/provision-requests/{}",
        body["id"].as_str().unwrap()
    );
    let targets = [
        Target {
            name: "sandbox",
            kind: Kind::Sandbox,
            addr: b.sandbox,
            device: None,
        },
        Target {
            name: "operational",
            kind: Kind::Operational,
            addr: b.operational,
            device: Some(("malformed-device".into(), user, pass)),
        },
        Target {
            name: "provisioning",
            kind: Kind::Provisioning,
            addr: b.provisioning,
            device: Some((
                PROVISIONING_CID.into(),
                "fleet-acme".into(),
                "fleet-password-1".into(),
            )),
        },
    ];
    // The device's identity is committed before it can log in; wait for it.
    b.operational_connect(&targets[1].options(&targets[1].ctx(false, 0)))
        .disconnect();

    let failures = campaign(&targets, true);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The provisioning cases opened sessions but started no exchange.
    let (status, body) = b.request("GET", &request, None);
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("CREATED")),
        "{body}"
    );

    // Bounded: five more rounds of the whole table; RSS and descriptors compared with the
    // state after the first round (allocator pools and lazily opened files have settled).
    let pid = b.pid();
    let before = footprint(pid);
    let rounds: usize = std::env::var("FLEETGATE_MALFORMED_ROUNDS").map_or(5, |v| {
        v.parse().expect("FLEETGATE_MALFORMED_ROUNDS: a number")
    });
    for round in 2..rounds + 2 {
        assert!(campaign(&targets, false).is_empty());
        let (rss, fds) = footprint(pid);
        eprintln!("after round {round}: RSS {rss} KiB, {fds} fds");
    }
    // Closed connections release their descriptors as the workers notice; wait for that.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = footprint(pid);
    while after.1 > before.1 + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = footprint(pid);
    }
    eprintln!(
        "footprint after round 1: RSS {} KiB, {} fds; after {rounds} more: RSS {} KiB, {} fds",
        before.0, before.1, after.0, after.1
    );
    assert!(
        after.1 <= before.1 + 4,
        "descriptors grew: {before:?} -> {after:?}"
    );
    assert!(
        after.0 <= before.0 + 4 * 1024,
        "RSS grew by more than 4 MiB (about 2 KiB per connection when each one leaked): {before:?} -> {after:?}"
    );
}
