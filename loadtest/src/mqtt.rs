//! A minimal, sequential MQTT client connection for one simulated device, on rumqttc's packet
//! codecs.
//!
//! Why not rumqttc's `AsyncClient`/`EventLoop`: rumqttc 0.25 opens its sockets itself
//! (`NetworkOptions` offers buffer sizes, nodelay and `SO_BINDTODEVICE`, but no local address,
//! and its `Network` type is private), so it cannot spread connections over several loopback
//! source addresses; and a device's exchange is a strict sequence (CONNECT, SUBSCRIBE,
//! PUBLISH, wait for one reply, DISCONNECT) that needs no background task. So each device owns
//! one `tokio::net::TcpStream` and encodes every outgoing packet with rumqttc's `mqttbytes`
//! (v4 for MQTT 3.1.1, v5 for MQTT 5.0) and decodes incoming PUBLISH packets with it too.
//! Acknowledgements (CONNACK, SUBACK, PUBACK, DISCONNECT) are read from their bytes here,
//! because rumqttc's v5 decoders refuse reason codes they do not know and a DISCONNECT without
//! reason code, and the report must carry the exact code the server sent.
//!
//! Resource discipline: a connection is a plain value. Dropping it (a timeout, the end of the
//! run) closes the socket at once; [`Conn::disconnect`] sends DISCONNECT and then lets the
//! server close first (bounded by [`LINGER`]) so TIME_WAIT lands on the server side, not on
//! the simulator's ephemeral ports. No task, channel or timer outlives the device.
//!
//! Keep alive is set well above any phase timeout, so a device never needs to ping.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::config::Protocol;
use crate::stats::{Failure, FailureKind};

/// Largest packet accepted from the server (a reply carries at most a few hundred KiB).
pub const MAX_PACKET: usize = 4 * 1024 * 1024;

/// How long a disconnecting client waits for the server to close the connection.
pub const LINGER: Duration = Duration::from_secs(2);

/// A packet received from the server, reduced to what a simulated client looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// CONNACK with its return code (3.1.1) or reason code (5.0).
    ConnAck {
        /// 0 on success.
        code: u8,
    },
    /// SUBACK with one code per filter.
    SubAck {
        /// Packet identifier.
        pkid: u16,
        /// Granted QoS (0..=2) or a failure code (>= 0x80).
        codes: Vec<u8>,
    },
    /// PUBACK; `reason` is always 0 in 3.1.1.
    PubAck {
        /// Packet identifier.
        pkid: u16,
        /// 5.0 reason code (>= 0x80 is a refusal).
        reason: u8,
    },
    /// An application message.
    Publish {
        /// Topic name.
        topic: String,
        /// Packet identifier (0 at QoS 0).
        pkid: u16,
        /// QoS of the delivery.
        qos: u8,
        /// Payload.
        payload: Bytes,
    },
    /// A server DISCONNECT (5.0) with its reason code.
    Disconnect {
        /// Reason code (0x00 when omitted).
        reason: u8,
    },
    /// PINGRESP.
    PingResp,
    /// Any other packet type (by number).
    Other(u8),
}

impl fmt::Display for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incoming::ConnAck { code } => write!(f, "CONNACK 0x{code:02x}"),
            Incoming::SubAck { codes, .. } => write!(f, "SUBACK {codes:02x?}"),
            Incoming::PubAck { pkid, reason } => write!(f, "PUBACK {pkid} 0x{reason:02x}"),
            Incoming::Publish { topic, .. } => write!(f, "PUBLISH to {topic}"),
            Incoming::Disconnect { reason } => write!(f, "DISCONNECT 0x{reason:02x}"),
            Incoming::PingResp => f.write_str("PINGRESP"),
            Incoming::Other(t) => write!(f, "packet type {t}"),
        }
    }
}

/// Why an MQTT operation failed.
#[derive(Debug)]
pub enum MqttError {
    /// Socket error (connect refused, reset, no local port, too many open files, ...).
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// CONNACK with a non-zero code.
    Refused(u8),
    /// The server sent DISCONNECT with this reason code.
    ServerDisconnect(u8),
    /// A subscription was refused with this SUBACK code.
    SubscribeRefused(u8),
    /// A QoS 1 publish was refused with this PUBACK reason code (5.0).
    PublishRefused(u8),
    /// Something that is not MQTT, or not what the exchange allows at this point.
    Protocol(String),
}

impl From<io::Error> for MqttError {
    fn from(e: io::Error) -> Self {
        MqttError::Io(e)
    }
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::Io(e) => write!(f, "socket error: {e}"),
            MqttError::Closed => f.write_str("connection closed by the server"),
            MqttError::Refused(code) => write!(f, "CONNACK refused with 0x{code:02x}"),
            MqttError::ServerDisconnect(code) => {
                write!(f, "server sent DISCONNECT 0x{code:02x}")
            }
            MqttError::SubscribeRefused(code) => {
                write!(f, "subscription refused with 0x{code:02x}")
            }
            MqttError::PublishRefused(code) => write!(f, "publish refused with 0x{code:02x}"),
            MqttError::Protocol(msg) => write!(f, "protocol error: {msg}"),
        }
    }
}

impl MqttError {
    /// The report reason for this error, with `context` (device and phase) in the detail.
    pub fn into_failure(self, context: &str) -> Failure {
        let kind = match &self {
            MqttError::Refused(code) => FailureKind::Connack(*code),
            MqttError::Io(_) | MqttError::Closed | MqttError::ServerDisconnect(_) => {
                FailureKind::Disconnected
            }
            MqttError::SubscribeRefused(_)
            | MqttError::PublishRefused(_)
            | MqttError::Protocol(_) => FailureKind::BadReply,
        };
        Failure::new(kind, format!("{context}: {self}"))
    }
}

/// Picks the local address of each outgoing connection.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    sources: Vec<IpAddr>,
}

impl Dialer {
    /// A dialer that lets the kernel choose (one source address).
    pub fn new() -> Dialer {
        Dialer::default()
    }

    /// A dialer spreading connections to IPv4 loopback targets over 127.0.0.1 ..= 127.0.0.n.
    /// Each address is checked by binding it once; the list stops at the first that fails
    /// (systems other than Linux route only 127.0.0.1), with a warning on stderr.
    pub fn loopback_spread(n: u8) -> Dialer {
        let mut sources = Vec::new();
        for i in 1..=n.max(1) {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
            let usable = TcpSocket::new_v4()
                .and_then(|s| s.bind(SocketAddr::new(ip, 0)))
                .is_ok();
            if !usable {
                eprintln!(
                    "warning: cannot bind source address {ip}; using {} loopback source address(es)",
                    sources.len().max(1)
                );
                break;
            }
            sources.push(ip);
        }
        if sources.len() <= 1 {
            sources.clear();
        }
        Dialer { sources }
    }

    /// Number of source addresses in use (1 when the kernel chooses).
    pub fn source_count(&self) -> usize {
        self.sources.len().max(1)
    }

    /// The source address for connection number `index` to `target`, if one must be bound.
    pub fn source_for(&self, index: usize, target: SocketAddr) -> Option<IpAddr> {
        if self.sources.is_empty() || !(target.is_ipv4() && target.ip().is_loopback()) {
            return None;
        }
        Some(self.sources[index % self.sources.len()])
    }

    /// Opens a TCP connection to `target`, bound to the source address of `index`.
    pub async fn tcp_connect(&self, index: usize, target: SocketAddr) -> io::Result<TcpStream> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = self.source_for(index, target) {
            // Loopback connections close fast; let bind(port 0) pick ports whose previous
            // connection is still in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// CONNECT parameters.
#[derive(Debug, Clone, Copy)]
pub struct ConnectParams<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// User name and password, if any.
    pub login: Option<(&'a str, &'a str)>,
    /// Keep alive in seconds (the client never pings, so keep it above every timeout).
    pub keep_alive: u16,
}

/// One client connection, driven by a single task.
pub struct Conn {
    stream: TcpStream,
    protocol: Protocol,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_pkid: u16,
    /// Packets read while waiting for something else (e.g. a PUBLISH before a SUBACK).
    pending: VecDeque<Incoming>,
}

impl Conn {
    /// Sends CONNECT on an open TCP stream and waits for CONNACK. A refusal is
    /// [`MqttError::Refused`] with the server's code.
    pub async fn handshake(
        stream: TcpStream,
        protocol: Protocol,
        params: ConnectParams<'_>,
    ) -> Result<Conn, MqttError> {
        let mut conn = Conn {
            stream,
            protocol,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(512),
            next_pkid: 1,
            pending: VecDeque::new(),
        };
        match protocol {
            Protocol::V311 => {
                let mut connect = v4::Connect::new(params.client_id);
                connect.keep_alive = params.keep_alive;
                connect.clean_session = true;
                if let Some((user, pass)) = params.login {
                    connect.set_login(user, pass);
                }
                conn.write_v4(v4::Packet::Connect(connect))?;
            }
            Protocol::V5 => {
                let connect = v5::Connect {
                    keep_alive: params.keep_alive,
                    client_id: params.client_id.to_string(),
                    clean_start: true,
                    properties: None,
                };
                let login = params.login.map(|(u, p)| v5::Login::new(u, p));
                conn.write_v5(v5::Packet::Connect(connect, None, login))?;
            }
        }
        conn.flush().await?;
        match conn.read_packet().await? {
            Incoming::ConnAck { code: 0 } => Ok(conn),
            Incoming::ConnAck { code } => Err(MqttError::Refused(code)),
            Incoming::Disconnect { reason } => Err(MqttError::ServerDisconnect(reason)),
            other => Err(MqttError::Protocol(format!(
                "expected CONNACK, got {other}"
            ))),
        }
    }

    fn take_pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pkid
    }

    /// Subscribes to one filter at QoS 1 and waits for its SUBACK. A failure code is
    /// [`MqttError::SubscribeRefused`]; anything else received meanwhile is kept for
    /// [`Conn::next`].
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        let pkid = self.take_pkid();
        match self.protocol {
            Protocol::V311 => {
                let mut sub = v4::Subscribe::new(filter, rumqttc::mqttbytes::QoS::AtLeastOnce);
                sub.pkid = pkid;
                self.write_v4(v4::Packet::Subscribe(sub))?;
            }
            Protocol::V5 => {
                let mut sub = v5::Subscribe::new(
                    v5::Filter::new(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce),
                    None,
                );
                sub.pkid = pkid;
                self.write_v5(v5::Packet::Subscribe(sub))?;
            }
        }
        self.flush().await?;
        loop {
            match self.read_packet().await? {
                Incoming::SubAck { pkid: id, codes } if id == pkid => {
                    return match codes.first() {
                        Some(&code) if code < 0x80 => Ok(()),
                        Some(&code) => Err(MqttError::SubscribeRefused(code)),
                        None => Err(MqttError::Protocol("SUBACK without codes".into())),
                    };
                }
                Incoming::Disconnect { reason } => {
                    return Err(MqttError::ServerDisconnect(reason));
                }
                other => self.pending.push_back(other),
            }
        }
    }

    /// Sends a QoS 1 PUBLISH and returns its packet identifier (the PUBACK arrives through
    /// [`Conn::next`]).
    pub async fn publish_qos1(&mut self, topic: &str, payload: Bytes) -> Result<u16, MqttError> {
        let pkid = self.take_pkid();
        match self.protocol {
            Protocol::V311 => {
                let mut p =
                    v4::Publish::from_bytes(topic, rumqttc::mqttbytes::QoS::AtLeastOnce, payload);
                p.pkid = pkid;
                self.write_v4(v4::Packet::Publish(p))?;
            }
            Protocol::V5 => {
                let mut p = v5::Publish::new(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    payload,
                    None,
                );
                p.pkid = pkid;
                self.write_v5(v5::Packet::Publish(p))?;
            }
        }
        self.flush().await?;
        Ok(pkid)
    }

    /// Acknowledges a QoS 1 PUBLISH from the server.
    pub async fn puback(&mut self, pkid: u16) -> Result<(), MqttError> {
        match self.protocol {
            Protocol::V311 => self.write_v4(v4::Packet::PubAck(v4::PubAck::new(pkid)))?,
            Protocol::V5 => self.write_v5(v5::Packet::PubAck(v5::PubAck::new(pkid, None)))?,
        }
        self.flush().await
    }

    /// The next packet from the server.
    pub async fn next(&mut self) -> Result<Incoming, MqttError> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(p);
        }
        self.read_packet().await
    }

    /// Sends DISCONNECT and releases the connection: the socket is handed to a short-lived
    /// task that waits (at most [`LINGER`]) for the server to close first, then drops it.
    pub async fn disconnect(mut self) {
        let written = match self.protocol {
            Protocol::V311 => self.write_v4(v4::Packet::Disconnect),
            Protocol::V5 => self.write_v5(v5::Packet::Disconnect(v5::Disconnect::new(
                v5::DisconnectReasonCode::NormalDisconnection,
            ))),
        };
        if written.is_err() || self.flush().await.is_err() {
            return;
        }
        let mut stream = self.stream;
        tokio::spawn(async move {
            let mut sink = [0u8; 512];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }

    fn write_v4(&mut self, packet: v4::Packet) -> Result<(), MqttError> {
        packet
            .write(&mut self.wbuf, MAX_PACKET)
            .map(|_| ())
            .map_err(|e| MqttError::Protocol(format!("cannot encode packet: {e:?}")))
    }

    fn write_v5(&mut self, packet: v5::Packet) -> Result<(), MqttError> {
        packet
            .write(&mut self.wbuf, Some(MAX_PACKET as u32))
            .map(|_| ())
            .map_err(|e| MqttError::Protocol(format!("cannot encode packet: {e:?}")))
    }

    async fn flush(&mut self) -> Result<(), MqttError> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    async fn read_packet(&mut self) -> Result<Incoming, MqttError> {
        loop {
            if let Some((frame, header_len)) = take_frame(&mut self.rbuf)? {
                return parse_frame(self.protocol, frame, header_len);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(MqttError::Closed);
            }
        }
    }
}

/// Splits one complete MQTT frame off the front of `buf`: `(frame, fixed header length)`, or
/// `None` when more bytes are needed.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<(BytesMut, usize)>, MqttError> {
    let Some((remaining, len_len)) = read_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let header_len = 1 + len_len;
    let total = header_len + remaining;
    if total > MAX_PACKET {
        return Err(MqttError::Protocol(format!(
            "packet of {total} bytes exceeds {MAX_PACKET}"
        )));
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some((buf.split_to(total), header_len)))
}

/// Reads an MQTT variable byte integer: `(value, bytes used)`, `None` if incomplete.
fn read_varint(bytes: &[u8]) -> Result<Option<(usize, usize)>, MqttError> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(MqttError::Protocol(
            "malformed variable byte integer".into(),
        ));
    }
    Ok(None)
}

/// Parses one complete frame (see [`take_frame`]).
pub fn parse_frame(
    protocol: Protocol,
    mut frame: BytesMut,
    header_len: usize,
) -> Result<Incoming, MqttError> {
    let packet_type = frame[0] >> 4;
    let body = &frame[header_len..];
    let malformed = |what: &str| MqttError::Protocol(format!("malformed {what}"));
    let pkid =
        |body: &[u8]| -> Option<u16> { Some(u16::from_be_bytes([*body.first()?, *body.get(1)?])) };
    match packet_type {
        2 => {
            let code = *body.get(1).ok_or_else(|| malformed("CONNACK"))?;
            Ok(Incoming::ConnAck { code })
        }
        3 => decode_publish(protocol, &mut frame),
        4 => {
            let id = pkid(body).ok_or_else(|| malformed("PUBACK"))?;
            let reason = match protocol {
                Protocol::V311 => 0,
                Protocol::V5 => body.get(2).copied().unwrap_or(0),
            };
            Ok(Incoming::PubAck { pkid: id, reason })
        }
        9 => {
            let id = pkid(body).ok_or_else(|| malformed("SUBACK"))?;
            let mut codes = &body[2..];
            if protocol == Protocol::V5 {
                let (props, used) = read_varint(codes)?.ok_or_else(|| malformed("SUBACK"))?;
                codes = codes
                    .get(used + props..)
                    .ok_or_else(|| malformed("SUBACK"))?;
            }
            Ok(Incoming::SubAck {
                pkid: id,
                codes: codes.to_vec(),
            })
        }
        13 => Ok(Incoming::PingResp),
        14 => Ok(Incoming::Disconnect {
            reason: body.first().copied().unwrap_or(0),
        }),
        other => Ok(Incoming::Other(other)),
    }
}

fn decode_publish(protocol: Protocol, frame: &mut BytesMut) -> Result<Incoming, MqttError> {
    let bad = |e: &dyn fmt::Debug| MqttError::Protocol(format!("undecodable PUBLISH: {e:?}"));
    match protocol {
        Protocol::V311 => match v4::Packet::read(frame, MAX_PACKET).map_err(|e| bad(&e))? {
            v4::Packet::Publish(p) => Ok(Incoming::Publish {
                topic: p.topic,
                pkid: p.pkid,
                qos: p.qos as u8,
                payload: p.payload,
            }),
            other => Err(bad(&other)),
        },
        Protocol::V5 => {
            match v5::Packet::read(frame, Some(MAX_PACKET as u32)).map_err(|e| bad(&e))? {
                v5::Packet::Publish(p) => Ok(Incoming::Publish {
                    topic: String::from_utf8(p.topic.to_vec())
                        .map_err(|_| MqttError::Protocol("PUBLISH topic is not UTF-8".into()))?,
                    pkid: p.pkid,
                    qos: p.qos as u8,
                    payload: p.payload,
                }),
                other => Err(bad(&other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(protocol: Protocol, bytes: &[u8]) -> Vec<Incoming> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some((frame, hl)) = take_frame(&mut buf).unwrap() {
            out.push(parse_frame(protocol, frame, hl).unwrap());
        }
        out
    }

    #[test]
    fn acks_keep_exact_codes() {
        // v3 CONNACK 0x04, v5 CONNACK 0x86 with empty properties, v5 CONNACK 0x8A.
        assert_eq!(
            frames(Protocol::V311, &[0x20, 2, 0, 4]),
            vec![Incoming::ConnAck { code: 4 }]
        );
        assert_eq!(
            frames(Protocol::V5, &[0x20, 3, 0, 0x86, 0, 0x20, 3, 0, 0x8a, 0]),
            vec![
                Incoming::ConnAck { code: 0x86 },
                Incoming::ConnAck { code: 0x8a }
            ]
        );
        // v5 SUBACK with a 2-byte property block, refused 0x87; v3 SUBACK 0x80.
        assert_eq!(
            frames(Protocol::V5, &[0x90, 6, 0, 1, 2, 0x1f, 0, 0x87]),
            vec![Incoming::SubAck {
                pkid: 1,
                codes: vec![0x87]
            }]
        );
        assert_eq!(
            frames(Protocol::V311, &[0x90, 3, 0, 7, 0x80]),
            vec![Incoming::SubAck {
                pkid: 7,
                codes: vec![0x80]
            }]
        );
        // v5 PUBACK short form and with reason; DISCONNECT with and without reason.
        assert_eq!(
            frames(
                Protocol::V5,
                &[0x40, 2, 0, 2, 0x40, 3, 0, 3, 0x87, 0xe0, 0, 0xe0, 1, 0x8e]
            ),
            vec![
                Incoming::PubAck { pkid: 2, reason: 0 },
                Incoming::PubAck {
                    pkid: 3,
                    reason: 0x87
                },
                Incoming::Disconnect { reason: 0 },
                Incoming::Disconnect { reason: 0x8e },
            ]
        );
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut buf = BytesMut::from(&[0x20u8][..]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[2, 0]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[0]);
        assert!(take_frame(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
        let mut bad = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(take_frame(&mut bad).is_err());
    }

    #[test]
    fn publishes_round_trip_through_rumqttc_codecs() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let mut buf = BytesMut::new();
            match protocol {
                Protocol::V311 => {
                    let mut p = v4::Publish::new(
                        "a/b",
                        rumqttc::mqttbytes::QoS::AtLeastOnce,
                        b"hi".to_vec(),
                    );
                    p.pkid = 9;
                    v4::Packet::Publish(p).write(&mut buf, MAX_PACKET).unwrap();
                }
                Protocol::V5 => {
                    let mut p = v5::Publish::new(
                        "a/b",
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        Bytes::from_static(b"hi"),
                        None,
                    );
                    p.pkid = 9;
                    v5::Packet::Publish(p).write(&mut buf, None).unwrap();
                }
            }
            let got = frames(protocol, &buf);
            assert_eq!(
                got,
                vec![Incoming::Publish {
                    topic: "a/b".into(),
                    pkid: 9,
                    qos: 1,
                    payload: Bytes::from_static(b"hi")
                }]
            );
        }
    }

    #[test]
    fn errors_map_to_report_reasons() {
        assert_eq!(
            MqttError::Refused(0x86).into_failure("x").kind,
            FailureKind::Connack(0x86)
        );
        assert_eq!(
            MqttError::Closed.into_failure("x").kind,
            FailureKind::Disconnected
        );
        assert_eq!(
            MqttError::ServerDisconnect(0x8e).into_failure("x").kind,
            FailureKind::Disconnected
        );
        assert_eq!(
            MqttError::SubscribeRefused(0x87).into_failure("x").kind,
            FailureKind::BadReply
        );
        assert_eq!(
            MqttError::Io(io::Error::from(io::ErrorKind::ConnectionRefused))
                .into_failure("x")
                .kind,
            FailureKind::Disconnected
        );
    }

    #[test]
    fn dialer_binds_only_for_loopback_v4() {
        let d = Dialer {
            sources: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        };
        let lo: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:1883".parse().unwrap();
        assert_eq!(d.source_for(0, lo), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(d.source_for(3, lo), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(d.source_for(3, remote), None);
        assert_eq!(Dialer::new().source_for(3, lo), None);
        assert_eq!(Dialer::new().source_count(), 1);
    }
}
