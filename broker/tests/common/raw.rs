//! A raw MQTT 3.1.1 / 5.0 client for black-box tests of broker behaviour: packets are built and
//! read byte by byte, so a test can send what a client library would refuse or hide (a PUBREL
//! for an unknown packet id, a reused packet id, a topic alias, more QoS 1 messages than the
//! receive maximum) and see every property the broker sends back. Blocking I/O on a
//! `std::net::TcpStream`; it never sends PINGREQ on its own, so tests pick keep-alive values
//! that outlast them (or test keep-alive enforcement on purpose).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An MQTT 5.0 property (only those a broker test sends or looks at; others are kept by id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    PayloadFormat(u8),
    MessageExpiry(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Vec<u8>),
    SubscriptionId(u32),
    SessionExpiry(u32),
    AssignedClientId(String),
    ServerKeepAlive(u16),
    RequestProblemInfo(u8),
    WillDelay(u32),
    RequestResponseInfo(u8),
    ResponseInfo(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(u8),
    User(String, String),
    MaximumPacketSize(u32),
    WildcardAvailable(u8),
    SubscriptionIdAvailable(u8),
    SharedAvailable(u8),
}

/// A PUBLISH, sent or received (and a will message: its topic, payload, QoS, retain and
/// properties).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// Packet identifier (QoS 1 and 2 only).
    pub id: u16,
    pub props: Vec<Prop>,
}

impl Msg {
    pub fn new(topic: &str, payload: impl Into<Vec<u8>>) -> Msg {
        Msg {
            topic: topic.to_string(),
            payload: payload.into(),
            ..Msg::default()
        }
    }
    pub fn qos(mut self, qos: u8) -> Msg {
        self.qos = qos;
        self
    }
    pub fn retain(mut self) -> Msg {
        self.retain = true;
        self
    }
    pub fn dup(mut self) -> Msg {
        self.dup = true;
        self
    }
    pub fn id(mut self, id: u16) -> Msg {
        self.id = id;
        self
    }
    pub fn prop(mut self, p: Prop) -> Msg {
        self.props.push(p);
        self
    }
    /// The subscription identifiers the broker attached.
    pub fn subscription_ids(&self) -> Vec<u32> {
        self.props
            .iter()
            .filter_map(|p| match p {
                Prop::SubscriptionId(i) => Some(*i),
                _ => None,
            })
            .collect()
    }
}

/// A packet from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        session_present: bool,
        code: u8,
        props: Vec<Prop>,
    },
    Publish(Msg),
    PubAck {
        id: u16,
        code: u8,
    },
    PubRec {
        id: u16,
        code: u8,
    },
    PubRel {
        id: u16,
        code: u8,
    },
    PubComp {
        id: u16,
        code: u8,
    },
    SubAck {
        id: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        id: u16,
    },
    PingResp,
    Disconnect {
        code: u8,
        props: Vec<Prop>,
    },
    /// A packet type a broker never sends to a client (kept so that a test can fail on it).
    Other(u8),
}

/// CONNECT options.
#[derive(Clone, Debug)]
pub struct Options {
    pub v5: bool,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Msg>,
    pub props: Vec<Prop>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Options {
    /// MQTT 3.1.1, clean session, keep alive 120 s (longer than any test).
    pub fn v3(client_id: &str) -> Options {
        Options {
            v5: false,
            client_id: client_id.to_string(),
            clean: true,
            keep_alive: 120,
            will: None,
            props: Vec::new(),
            username: None,
            password: None,
        }
    }
    /// MQTT 5.0, clean start, keep alive 120 s, no session expiry.
    pub fn v5(client_id: &str) -> Options {
        Options {
            v5: true,
            ..Options::v3(client_id)
        }
    }
    pub fn version(v5: bool, client_id: &str) -> Options {
        if v5 {
            Options::v5(client_id)
        } else {
            Options::v3(client_id)
        }
    }
    /// 3.1.1 clean session 0 / 5.0 clean start 0.
    pub fn persistent(mut self) -> Options {
        self.clean = false;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Options {
        self.keep_alive = secs;
        self
    }
    pub fn will(mut self, will: Msg) -> Options {
        self.will = Some(will);
        self
    }
    pub fn prop(mut self, p: Prop) -> Options {
        self.props.push(p);
        self
    }
    pub fn login(mut self, username: &str, password: &str) -> Options {
        self.username = Some(username.to_string());
        self.password = Some(password.to_string());
        self
    }
}

/// Subscription options byte: QoS plus the 5.0 flags.
pub fn sub_opts(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(retain_as_published) << 3) | (retain_handling << 4)
}

/// A connected raw client. Packets read while waiting for another one are kept, in order, for
/// the next [`Client::recv`] or [`Client::expect`].
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<Packet>,
    pub v5: bool,
    next_id: u16,
    eof: bool,
    /// The CONNACK.
    pub session_present: bool,
    pub connack_code: u8,
    pub connack_props: Vec<Prop>,
}

/// How long a test waits for a packet it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to conclude that nothing comes.
pub const QUIET: Duration = Duration::from_millis(700);

impl Client {
    /// Connects and reads the CONNACK, whatever its code; `Err` when the TCP connection fails
    /// or closes before a CONNACK.
    pub fn try_connect(addr: SocketAddr, o: &Options) -> Result<Client, String> {
        let mut c = Client::tcp(addr, o.v5)?;
        c.send(&encode_connect(o));
        match c.recv(WAIT) {
            Some(Packet::ConnAck {
                session_present,
                code,
                props,
            }) => {
                c.session_present = session_present;
                c.connack_code = code;
                c.connack_props = props;
                Ok(c)
            }
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }

    /// A TCP connection that has sent nothing yet (no CONNECT): for tests of what a broker does
    /// with bytes a client library would never send first.
    pub fn open(addr: SocketAddr, v5: bool) -> Client {
        Client::tcp(addr, v5).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tcp(addr: SocketAddr, v5: bool) -> Result<Client, String> {
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true).unwrap();
        Ok(Client {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            v5,
            next_id: 0,
            eof: false,
            session_present: false,
            connack_code: 0xff,
            connack_props: Vec::new(),
        })
    }

    /// Half-closes the connection (EOF to the broker); reading goes on.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Connects and asserts CONNACK success.
    pub fn connect(addr: SocketAddr, o: &Options) -> Client {
        let c = Client::try_connect(addr, o).unwrap_or_else(|e| panic!("{}: {e}", o.client_id));
        assert_eq!(c.connack_code, 0, "CONNACK of {}", o.client_id);
        c
    }

    /// A CONNACK property, if the broker sent it.
    pub fn connack_prop(&self, f: impl Fn(&Prop) -> bool) -> Option<Prop> {
        self.connack_props.iter().find(|p| f(p)).cloned()
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        // A write to a connection the broker closed may fail; the test notices on read.
        let _ = self.stream.write_all(bytes);
    }

    /// A fresh packet identifier (1, 2, ...).
    pub fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Sends a PUBLISH as given (packet id included).
    pub fn send_publish(&mut self, m: &Msg) {
        let bytes = encode_publish(m, self.v5);
        self.send(&bytes);
    }

    /// Publishes with a fresh packet id and completes the QoS flow; returns 0 when the broker
    /// accepted it (QoS 0, or a PUBACK / PUBREC reason code below 0x80: 0x10 No matching
    /// subscribers is a success too), else the refusal's reason code.
    pub fn publish(&mut self, m: Msg) -> u8 {
        let code = self.publish_flow(m);
        if code < 0x80 { 0 } else { code }
    }

    fn publish_flow(&mut self, m: Msg) -> u8 {
        let mut m = m;
        if m.qos > 0 {
            m.id = self.next_id();
        }
        self.send_publish(&m);
        match m.qos {
            0 => 0,
            1 => match self.expect(
                WAIT,
                |p| matches!(p, Packet::PubAck { id, .. } if *id == m.id),
            ) {
                Packet::PubAck { code, .. } => code,
                _ => unreachable!(),
            },
            _ => {
                let code = match self.expect(
                    WAIT,
                    |p| matches!(p, Packet::PubRec { id, .. } if *id == m.id),
                ) {
                    Packet::PubRec { code, .. } => code,
                    _ => unreachable!(),
                };
                if code < 0x80 {
                    self.ack(6, m.id, 0);
                    self.expect(
                        WAIT,
                        |p| matches!(p, Packet::PubComp { id, .. } if *id == m.id),
                    );
                }
                code
            }
        }
    }

    /// Sends PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7).
    pub fn ack(&mut self, kind: u8, id: u16, code: u8) {
        let bytes = encode_ack(kind, id, code, self.v5);
        self.send(&bytes);
    }

    /// Acknowledges a received message as its QoS asks (QoS 2: PUBREC, then PUBCOMP on PUBREL).
    pub fn acknowledge(&mut self, m: &Msg) {
        match m.qos {
            1 => self.ack(4, m.id, 0),
            2 => {
                self.ack(5, m.id, 0);
                self.expect(
                    WAIT,
                    |p| matches!(p, Packet::PubRel { id, .. } if *id == m.id),
                );
                self.ack(7, m.id, 0);
            }
            _ => {}
        }
    }

    /// SUBSCRIBE with options bytes and properties; returns the SUBACK codes.
    pub fn subscribe_with(&mut self, filters: &[(&str, u8)], props: &[Prop]) -> Vec<u8> {
        let id = self.next_id();
        let mut body = id.to_be_bytes().to_vec();
        if self.v5 {
            put_props(&mut body, props);
        }
        for (f, o) in filters {
            put_str(&mut body, f);
            body.push(*o);
        }
        self.send(&frame(0x82, &body));
        match self.expect(
            WAIT,
            |p| matches!(p, Packet::SubAck { id: i, .. } if *i == id),
        ) {
            Packet::SubAck { codes, .. } => codes,
            _ => unreachable!(),
        }
    }

    /// SUBSCRIBE to one filter at `qos`; returns its SUBACK code.
    pub fn subscribe(&mut self, filter: &str, qos: u8) -> u8 {
        self.subscribe_with(&[(filter, qos)], &[])[0]
    }

    /// UNSUBSCRIBE one filter and wait for the UNSUBACK.
    pub fn unsubscribe(&mut self, filter: &str) {
        let id = self.next_id();
        let mut body = id.to_be_bytes().to_vec();
        if self.v5 {
            body.push(0);
        }
        put_str(&mut body, filter);
        self.send(&frame(0xA2, &body));
        self.expect(
            WAIT,
            |p| matches!(p, Packet::UnsubAck { id: i } if *i == id),
        );
    }

    /// A normal DISCONNECT (5.0: reason 0), then close.
    pub fn disconnect(mut self) {
        self.disconnect_with(0, &[]);
    }

    /// DISCONNECT with a 5.0 reason code and properties; the socket stays open until drop.
    pub fn disconnect_with(&mut self, code: u8, props: &[Prop]) {
        let mut body = Vec::new();
        if self.v5 {
            body.push(code);
            put_props(&mut body, props);
        }
        self.send(&frame(0xE0, &body));
        let _ = self.stream.flush();
        // Wait for the broker to close, so that what follows in the test sees the session gone.
        let _ = self.closed(Duration::from_secs(2));
    }

    /// Closes the socket without DISCONNECT (a lost connection).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// PINGREQ (the test decides when a client is alive).
    pub fn ping(&mut self) {
        self.send(&[0xC0, 0]);
    }

    /// The next packet, or `None` after `timeout` or when the broker closed the connection.
    pub fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.decode() {
                return Some(p);
            }
            if self.eof {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => self.eof = true,
            }
        }
    }

    /// The first packet matching `want` within `timeout`; others read meanwhile stay queued.
    /// Panics when none comes.
    pub fn expect(&mut self, timeout: Duration, want: impl Fn(&Packet) -> bool) -> Packet {
        self.try_expect(timeout, want)
            .unwrap_or_else(|| panic!("expected packet not received; queued: {:?}", self.pending))
    }

    /// Like [`Client::expect`], `None` when nothing matches in time.
    pub fn try_expect(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Packet) -> bool,
    ) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        let mut skipped = VecDeque::new();
        // Look at what is already queued first, then read on.
        let mut queued = std::mem::take(&mut self.pending);
        let mut found = None;
        while let Some(p) = queued.pop_front() {
            if found.is_none() && want(&p) {
                found = Some(p);
            } else {
                skipped.push_back(p);
            }
        }
        while found.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Some(p) if want(&p) => found = Some(p),
                Some(p) => skipped.push_back(p),
                None => break,
            }
        }
        skipped.extend(std::mem::take(&mut self.pending));
        self.pending = skipped;
        found
    }

    /// The next PUBLISH within `timeout` (other packets stay queued).
    pub fn message(&mut self, timeout: Duration) -> Option<Msg> {
        match self.try_expect(timeout, |p| matches!(p, Packet::Publish(_)))? {
            Packet::Publish(m) => Some(m),
            _ => unreachable!(),
        }
    }

    /// The next PUBLISH, acknowledged as its QoS asks; panics when none comes in [`WAIT`].
    pub fn receive(&mut self) -> Msg {
        let m = self.message(WAIT).expect("no PUBLISH received");
        self.acknowledge(&m);
        m
    }

    /// Every PUBLISH arriving within `quiet` of the previous one, acknowledged.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.message(quiet) {
            self.acknowledge(&m);
            out.push(m);
        }
        out
    }

    /// Waits until the broker closes the connection; `true` if it did within `timeout`.
    /// A DISCONNECT read on the way stays queued (see [`Client::disconnect_reason`]).
    pub fn closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Read from the socket only (queued packets stay first, in order).
        let mut queued = std::mem::take(&mut self.pending);
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left) {
                Some(p) => queued.push_back(p),
                None if !self.eof => break,
                None => {}
            }
        }
        self.pending = queued;
        self.eof
    }

    /// The reason code of a DISCONNECT the broker sent, if one is queued.
    pub fn disconnect_reason(&self) -> Option<u8> {
        self.pending.iter().find_map(|p| match p {
            Packet::Disconnect { code, .. } => Some(*code),
            _ => None,
        })
    }

    fn decode(&mut self) -> Option<Packet> {
        let (len, hdr) = remaining_length(&self.buf[1.min(self.buf.len())..])?;
        let total = 1 + hdr + len;
        if self.buf.len() < total {
            return None;
        }
        let first = self.buf[0];
        let body: Vec<u8> = self.buf[1 + hdr..total].to_vec();
        self.buf.drain(..total);
        Some(parse(first, &body, self.v5))
    }
}

// ---------------------------------------------------------------- encoding

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bin(out, s.as_bytes());
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_props(out: &mut Vec<u8>, props: &[Prop]) {
    let mut p = Vec::new();
    for prop in props {
        match prop {
            Prop::PayloadFormat(v) => p.extend([0x01, *v]),
            Prop::MessageExpiry(v) => {
                p.push(0x02);
                p.extend(v.to_be_bytes());
            }
            Prop::ContentType(s) => {
                p.push(0x03);
                put_str(&mut p, s);
            }
            Prop::ResponseTopic(s) => {
                p.push(0x08);
                put_str(&mut p, s);
            }
            Prop::CorrelationData(b) => {
                p.push(0x09);
                put_bin(&mut p, b);
            }
            Prop::SubscriptionId(v) => {
                p.push(0x0B);
                put_varint(&mut p, *v);
            }
            Prop::SessionExpiry(v) => {
                p.push(0x11);
                p.extend(v.to_be_bytes());
            }
            Prop::AssignedClientId(s) => {
                p.push(0x12);
                put_str(&mut p, s);
            }
            Prop::ServerKeepAlive(v) => {
                p.push(0x13);
                p.extend(v.to_be_bytes());
            }
            Prop::RequestProblemInfo(v) => p.extend([0x17, *v]),
            Prop::WillDelay(v) => {
                p.push(0x18);
                p.extend(v.to_be_bytes());
            }
            Prop::RequestResponseInfo(v) => p.extend([0x19, *v]),
            Prop::ResponseInfo(s) => {
                p.push(0x1A);
                put_str(&mut p, s);
            }
            Prop::ServerReference(s) => {
                p.push(0x1C);
                put_str(&mut p, s);
            }
            Prop::ReasonString(s) => {
                p.push(0x1F);
                put_str(&mut p, s);
            }
            Prop::ReceiveMaximum(v) => {
                p.push(0x21);
                p.extend(v.to_be_bytes());
            }
            Prop::TopicAliasMaximum(v) => {
                p.push(0x22);
                p.extend(v.to_be_bytes());
            }
            Prop::TopicAlias(v) => {
                p.push(0x23);
                p.extend(v.to_be_bytes());
            }
            Prop::MaximumQos(v) => p.extend([0x24, *v]),
            Prop::RetainAvailable(v) => p.extend([0x25, *v]),
            Prop::User(k, v) => {
                p.push(0x26);
                put_str(&mut p, k);
                put_str(&mut p, v);
            }
            Prop::MaximumPacketSize(v) => {
                p.push(0x27);
                p.extend(v.to_be_bytes());
            }
            Prop::WildcardAvailable(v) => p.extend([0x28, *v]),
            Prop::SubscriptionIdAvailable(v) => p.extend([0x29, *v]),
            Prop::SharedAvailable(v) => p.extend([0x2A, *v]),
        }
    }
    put_varint(out, p.len() as u32);
    out.extend(p);
}

/// A packet: first byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(&mut out, body.len() as u32);
    out.extend_from_slice(body);
    out
}

/// The bytes of a CONNECT.
pub fn encode_connect(o: &Options) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, "MQTT");
    body.push(if o.v5 { 5 } else { 4 });
    let mut flags = 0u8;
    if o.clean {
        flags |= 0x02;
    }
    if let Some(w) = &o.will {
        flags |= 0x04 | (w.qos << 3) | (u8::from(w.retain) << 5);
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    if o.username.is_some() {
        flags |= 0x80;
    }
    body.push(flags);
    body.extend(o.keep_alive.to_be_bytes());
    if o.v5 {
        put_props(&mut body, &o.props);
    }
    put_str(&mut body, &o.client_id);
    if let Some(w) = &o.will {
        if o.v5 {
            put_props(&mut body, &w.props);
        }
        put_str(&mut body, &w.topic);
        put_bin(&mut body, &w.payload);
    }
    if let Some(u) = &o.username {
        put_str(&mut body, u);
    }
    if let Some(p) = &o.password {
        put_str(&mut body, p);
    }
    frame(0x10, &body)
}

/// The bytes of a PUBLISH.
pub fn encode_publish(m: &Msg, v5: bool) -> Vec<u8> {
    let first = 0x30 | (u8::from(m.dup) << 3) | (m.qos << 1) | u8::from(m.retain);
    let mut body = Vec::new();
    put_str(&mut body, &m.topic);
    if m.qos > 0 {
        body.extend(m.id.to_be_bytes());
    }
    if v5 {
        put_props(&mut body, &m.props);
    }
    body.extend_from_slice(&m.payload);
    frame(first, &body)
}

/// The bytes of a PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7).
pub fn encode_ack(kind: u8, id: u16, code: u8, v5: bool) -> Vec<u8> {
    let first = (kind << 4) | if kind == 6 { 0x02 } else { 0 };
    let mut body = id.to_be_bytes().to_vec();
    if v5 && code != 0 {
        body.extend([code, 0]);
    }
    frame(first, &body)
}

// ---------------------------------------------------------------- decoding

/// (remaining length, bytes it took), or `None` if incomplete.
fn remaining_length(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        v += usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0[0];
        self.0 = &self.0[1..];
        v
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn varint(&mut self) -> u32 {
        let (v, n) = remaining_length(self.0).expect("bad variable byte integer");
        self.0 = &self.0[n..];
        v as u32
    }
    fn bin(&mut self) -> Vec<u8> {
        let n = usize::from(self.u16());
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        v
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bin()).expect("broker sent a string that is not UTF-8")
    }
    fn props(&mut self) -> Vec<Prop> {
        let n = self.varint() as usize;
        let mut r = Reader(&self.0[..n]);
        self.0 = &self.0[n..];
        let mut out = Vec::new();
        while !r.0.is_empty() {
            out.push(match r.u8() {
                0x01 => Prop::PayloadFormat(r.u8()),
                0x02 => Prop::MessageExpiry(r.u32()),
                0x03 => Prop::ContentType(r.string()),
                0x08 => Prop::ResponseTopic(r.string()),
                0x09 => Prop::CorrelationData(r.bin()),
                0x0B => Prop::SubscriptionId(r.varint()),
                0x11 => Prop::SessionExpiry(r.u32()),
                0x12 => Prop::AssignedClientId(r.string()),
                0x13 => Prop::ServerKeepAlive(r.u16()),
                0x17 => Prop::RequestProblemInfo(r.u8()),
                0x18 => Prop::WillDelay(r.u32()),
                0x19 => Prop::RequestResponseInfo(r.u8()),
                0x1A => Prop::ResponseInfo(r.string()),
                0x1C => Prop::ServerReference(r.string()),
                0x1F => Prop::ReasonString(r.string()),
                0x21 => Prop::ReceiveMaximum(r.u16()),
                0x22 => Prop::TopicAliasMaximum(r.u16()),
                0x23 => Prop::TopicAlias(r.u16()),
                0x24 => Prop::MaximumQos(r.u8()),
                0x25 => Prop::RetainAvailable(r.u8()),
                0x26 => Prop::User(r.string(), r.string()),
                0x27 => Prop::MaximumPacketSize(r.u32()),
                0x28 => Prop::WildcardAvailable(r.u8()),
                0x29 => Prop::SubscriptionIdAvailable(r.u8()),
                0x2A => Prop::SharedAvailable(r.u8()),
                other => panic!("broker sent unknown property 0x{other:02x}"),
            });
        }
        out
    }
}

fn parse(first: u8, body: &[u8], v5: bool) -> Packet {
    let mut r = Reader(body);
    let ack = |r: &mut Reader| {
        let id = r.u16();
        let code = if v5 && !r.0.is_empty() { r.u8() } else { 0 };
        (id, code)
    };
    match first >> 4 {
        2 => {
            let session_present = r.u8() & 1 == 1;
            let code = r.u8();
            let props = if v5 && !r.0.is_empty() {
                r.props()
            } else {
                Vec::new()
            };
            Packet::ConnAck {
                session_present,
                code,
                props,
            }
        }
        3 => {
            let qos = (first >> 1) & 3;
            let topic = r.string();
            let id = if qos > 0 { r.u16() } else { 0 };
            let props = if v5 { r.props() } else { Vec::new() };
            Packet::Publish(Msg {
                topic,
                payload: r.0.to_vec(),
                qos,
                retain: first & 1 == 1,
                dup: first & 8 == 8,
                id,
                props,
            })
        }
        4 => {
            let (id, code) = ack(&mut r);
            Packet::PubAck { id, code }
        }
        5 => {
            let (id, code) = ack(&mut r);
            Packet::PubRec { id, code }
        }
        6 => {
            let (id, code) = ack(&mut r);
            Packet::PubRel { id, code }
        }
        7 => {
            let (id, code) = ack(&mut r);
            Packet::PubComp { id, code }
        }
        9 => {
            let id = r.u16();
            if v5 {
                r.props();
            }
            Packet::SubAck {
                id,
                codes: r.0.to_vec(),
            }
        }
        11 => Packet::UnsubAck { id: r.u16() },
        13 => Packet::PingResp,
        14 => {
            let code = if v5 && !r.0.is_empty() { r.u8() } else { 0 };
            let props = if v5 && !r.0.is_empty() {
                r.props()
            } else {
                Vec::new()
            };
            Packet::Disconnect { code, props }
        }
        other => Packet::Other(other),
    }
}
