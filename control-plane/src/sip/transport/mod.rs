//! SIP transports (RFC 3261 §18): UDP and TCP listeners on tokio, IPv4 and IPv6.
//!
//! Bytes come in from sockets, are framed ([`framing`] for streams; one datagram is one
//! message) and parsed, then handed up with the [`Peer`] they came from. Nothing above
//! this module touches a socket: upper layers emit `(Peer, bytes)` and the transport
//! sends them on the matching socket or connection.

use std::net::SocketAddr;

/// The transport protocol of a listener or connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    /// Reliable transports carry their own retransmissions, so the transaction timers
    /// that retransmit or linger (A, E, G, D, I, J, K) are not used on them.
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp)
    }

    /// The transport as written in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }

    /// The transport a name means, in any case: `UDP` as in a Via header, `udp` as the
    /// tables store it.
    pub fn from_name(name: &str) -> Option<TransportKind> {
        [TransportKind::Udp, TransportKind::Tcp].into_iter().find(|t| t.via_name().eq_ignore_ascii_case(name))
    }
}

/// The far end of a message, and the local socket it came in on or goes out from. For
/// TCP, `(local, remote)` names the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

pub mod framing;
pub mod tcp;
pub mod udp;

/// What the transports hand to the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A parsed message.
    Message { peer: Peer, msg: crate::sip::message::Message },
    /// Bytes that did not parse, with the reason.
    Malformed { peer: Peer, bytes: bytes::Bytes, error: crate::sip::message::ParseError },
    /// A TCP connection opened; responses and requests for `peer` go to `writer`.
    Opened { peer: Peer, writer: tcp::ConnWriter },
    /// A TCP connection closed.
    Closed { peer: Peer },
}
