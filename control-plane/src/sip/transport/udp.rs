//! UDP transport: one receive task per socket; each datagram is one message.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use super::{Inbound, Peer, TransportKind};
use crate::sip::message::{Framing, Message, Via};

/// Binds a UDP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Bursts of requests must not be dropped by a small default buffer.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(Arc::new(UdpSocket::from_std(socket.into())?))
}

/// Receives datagrams until the channel closes, parsing each one.
pub async fn receive_loop(socket: Arc<UdpSocket>, max_message: usize, to_core: mpsc::Sender<Inbound>) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "UDP socket has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, remote) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface as receive errors on some systems: not fatal.
            Err(e) => {
                warn!(%local, error = %e, "UDP receive error");
                continue;
            }
        };
        let data = &buf[..n];
        // CRLF keep-alives (RFC 5626 §4.4.1 uses STUN on UDP, but CRLF is common).
        if data.iter().all(|&c| c == b'\r' || c == b'\n' || c == 0) {
            continue;
        }
        let bytes = Bytes::copy_from_slice(data);
        let peer = Peer { transport: TransportKind::Udp, remote, local };
        let parsed = Message::parse_with_limit(bytes.clone(), Framing::Datagram, max_message);
        let item = match parsed {
            Ok(msg) => Inbound::Message { peer, msg },
            Err(error) => Inbound::Malformed { peer, bytes, error },
        };
        if to_core.send(item).await.is_err() {
            return;
        }
    }
}

/// Where a UDP response goes (RFC 3261 §18.2.2 with RFC 3581): with `symmetric`, back
/// to the source of the request; otherwise maddr, then received (+rport or the sent-by
/// port), then sent-by.
pub fn response_destination(bytes: &[u8], source: SocketAddr, symmetric: bool) -> Option<SocketAddr> {
    if symmetric {
        return Some(source);
    }
    let msg = Message::parse(Bytes::copy_from_slice(bytes), Framing::Datagram).ok()?;
    let via: Via<'_> = msg.top_via();
    let port = via.port.unwrap_or(5060);
    if let Some(maddr) = via.maddr() {
        let ip = std::str::from_utf8(maddr).ok()?.parse().ok()?;
        return Some(SocketAddr::new(ip, port));
    }
    if let Some(rport) = via.rport() {
        let ip = via.received().and_then(|r| std::str::from_utf8(r).ok()?.parse().ok()).unwrap_or(source.ip());
        return Some(SocketAddr::new(ip, rport.unwrap_or(source.port())));
    }
    if let Some(received) = via.received() {
        let ip = std::str::from_utf8(received).ok()?.parse().ok()?;
        return Some(SocketAddr::new(ip, port));
    }
    let host = crate::sip::message::uri::strip_brackets(via.host);
    match std::str::from_utf8(host).ok()?.parse() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        // A sent-by host name would need DNS (RFC 3263); fall back to the source address.
        Err(_) => Some(SocketAddr::new(source.ip(), port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(via: &str) -> Vec<u8> {
        format!("SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    #[test]
    fn responses_route_by_via_rfc3261_18_2_2_and_rfc3581() {
        let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let d = |via: &str| response_destination(&resp(via), src, false).unwrap().to_string();
        assert_eq!(d("SIP/2.0/UDP h.example.com;branch=z9hG4bK1;received=192.0.2.1"), "192.0.2.1:5060");
        assert_eq!(d("SIP/2.0/UDP h.example.com:5070;branch=z9hG4bK1;received=192.0.2.1"), "192.0.2.1:5070");
        assert_eq!(d("SIP/2.0/UDP h.example.com;branch=z9hG4bK1;rport=40000;received=192.0.2.1"), "192.0.2.1:40000");
        assert_eq!(d("SIP/2.0/UDP 198.51.100.7:5080;branch=z9hG4bK1"), "198.51.100.7:5080");
        assert_eq!(d("SIP/2.0/UDP h;branch=z9hG4bK1;maddr=203.0.113.5"), "203.0.113.5:5060");
        assert_eq!(response_destination(&resp("SIP/2.0/UDP h;branch=z9hG4bK1"), src, true), Some(src));
    }
}
