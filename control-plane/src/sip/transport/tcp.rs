//! TCP transport: accepted connections framed by [`super::framing`], limits on
//! connections (total and per source), idle time, the time a message may take to arrive
//! (a slowloris client trickling bytes is closed), and bytes queued for sending. A
//! message over the size limit is answered with 513 before the connection closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::framing::{Frame, FramingError, StreamFramer};
use super::{Inbound, Peer, TransportKind};
use crate::sip::message::{Framing, Message};

/// Limits that keep a slow or hostile peer from exhausting memory.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_message: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_source: usize,
    pub max_pending_bytes: usize,
    /// A message must be complete (header and body) this long after its first byte.
    pub message_timeout: Duration,
}

/// The sending half of a connection, held by the driver.
#[derive(Debug, Clone)]
pub struct ConnWriter {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

impl ConnWriter {
    /// Queues bytes; false if the connection is gone or too far behind (it is then closed).
    pub fn send(&self, bytes: Bytes) -> bool {
        let len = bytes.len();
        if self.pending.load(Ordering::Relaxed) + len > self.max_pending {
            return false;
        }
        self.pending.fetch_add(len, Ordering::Relaxed);
        self.tx.send(bytes).is_ok()
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until the core goes away.
pub async fn accept_loop(listener: TcpListener, limits: TcpLimits, to_core: mpsc::Sender<Inbound>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(%local, error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        {
            let mut c = counts.lock().expect("connection counts lock is never poisoned: no panics while held");
            let from_source = c.per_source.get(&remote.ip()).copied().unwrap_or(0);
            if c.total >= limits.max_connections || from_source >= limits.max_per_source {
                warn!(%remote, total = c.total, from_source, "TCP connection refused: limit reached");
                continue;
            }
            c.total += 1;
            *c.per_source.entry(remote.ip()).or_default() += 1;
        }
        if to_core.is_closed() {
            return;
        }
        let peer = Peer { transport: TransportKind::Tcp, remote, local };
        let counts = counts.clone();
        let to_core = to_core.clone();
        tokio::spawn(async move {
            serve(stream, peer, limits, to_core).await;
            let mut c = counts.lock().expect("connection counts lock is never poisoned: no panics while held");
            c.total -= 1;
            if let Some(n) = c.per_source.get_mut(&peer.remote.ip()) {
                *n -= 1;
                if *n == 0 {
                    c.per_source.remove(&peer.remote.ip());
                }
            }
        });
    }
}

async fn serve(stream: TcpStream, peer: Peer, limits: TcpLimits, to_core: mpsc::Sender<Inbound>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let pending = Arc::new(AtomicUsize::new(0));
    let conn = ConnWriter { tx, pending: pending.clone(), max_pending: limits.max_pending_bytes };
    if to_core.send(Inbound::Opened { peer, writer: conn.clone() }).await.is_err() {
        return;
    }
    debug!(remote = %peer.remote, "TCP connection open");
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
            pending.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = StreamFramer::new(limits.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    // When the first byte of the message being received arrived (None: between messages).
    let mut started: Option<tokio::time::Instant> = None;
    'conn: loop {
        let wait = match started {
            Some(t) => limits.message_timeout.saturating_sub(t.elapsed()).min(limits.idle_timeout),
            None => limits.idle_timeout,
        };
        let n = match tokio::time::timeout(wait, reader.read(&mut buf)).await {
            Err(_) if started.is_some() => {
                info!(
                    remote = %peer.remote,
                    buffered = framer.buffered(),
                    "TCP message not complete within sip.tcp_message_timeout_ms: closing"
                );
                break;
            }
            Err(_) => {
                debug!(remote = %peer.remote, "TCP connection idle: closing");
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        let mut completed = false;
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                    let _ = conn.send(Bytes::from_static(b"\r\n"));
                }
                Ok(Some(Frame::Message(bytes))) => {
                    completed = true;
                    let item = match Message::parse_with_limit(bytes.clone(), Framing::Stream, limits.max_message) {
                        Ok(msg) => Inbound::Message { peer, msg },
                        Err(error) => Inbound::Malformed { peer, bytes, error },
                    };
                    if to_core.send(item).await.is_err() {
                        break 'conn;
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronised: close it (RFC 4475 §3.1.2.3), a
                    // request too large answered with 513 first (RFC 3261 §21.5.14).
                    info!(remote = %peer.remote, error = %e, "closing TCP connection");
                    if matches!(e, FramingError::HeadersTooLarge(_) | FramingError::MessageTooLarge(_)) {
                        let error = crate::sip::message::ParseError::TooLarge(limits.max_message);
                        let _ = to_core.send(Inbound::Malformed { peer, bytes: framer.head(8192), error }).await;
                    }
                    break 'conn;
                }
            }
        }
        // A partial message keeps its start time; one begun in this read starts the
        // clock now.
        started = match (framer.buffered(), started) {
            (0, _) => None,
            (_, Some(t)) if !completed => Some(t),
            _ => Some(tokio::time::Instant::now()),
        };
    }
    let _ = to_core.send(Inbound::Closed { peer }).await;
    drop(conn);
    let _ = write_task.await;
}
