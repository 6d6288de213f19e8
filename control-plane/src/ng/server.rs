//! The NG listener: one UDP socket, its requests answered concurrently through the media
//! supervisor. Offers create a media session per active m-line and return the SDP
//! rewritten to the media plane's address and ports; answers complete it; `delete`,
//! `query`, `list`, `ping` as rtpengine has them. The protocol's state is the sans-IO
//! [`super::core::Ng`]; this driver moves datagrams, finished jobs, the media plane's
//! timeouts and the clock into it, and its answers out.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use ferroswitch_media_plane::epoll::{RecvBatch, SendBatch};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::core::{Ng, Output, Settings};
use crate::media::{MediaHandle, MediaNotice};

/// Datagrams read with one `recvmmsg`.
const RECV_BATCH: usize = 16;
/// `recvmmsg` calls in one go before the finished jobs get their turn.
const RECV_ROUNDS: usize = 4;
/// Answers sent with one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// The largest datagram (an IPv4 UDP payload is at most 65,507 bytes).
const MAX_DATAGRAM: usize = 65536;

/// Serves NG requests on `socket` until `shutdown` turns true. Datagrams come in with
/// `recvmmsg` and answers go out with `sendmmsg`, a burst of each per system call.
pub async fn serve(socket: UdpSocket, media: MediaHandle, settings: Settings, mut shutdown: watch::Receiver<bool>) {
    let mut ng = Ng::new(settings);
    let mut notices = media.subscribe();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let fd = socket.as_raw_fd();
    let mut inbox = RecvBatch::with_sizes(RECV_BATCH, MAX_DATAGRAM);
    let mut outbox = SendBatch::new(SEND_BATCH);
    let mut answers: Vec<(SocketAddr, Arc<[u8]>)> = Vec::new();
    loop {
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    warn!(error = %e, "NG socket failed");
                    return;
                }
                for _ in 0..RECV_ROUNDS {
                    match socket.try_io(Interest::READABLE, || inbox.try_recv(fd)) {
                        Ok(n) => {
                            let now = Instant::now();
                            for i in 0..n {
                                if let Some((datagram, from, _)) = inbox.get(i) {
                                    ng.handle_datagram(now, from, datagram);
                                }
                            }
                            if n < RECV_BATCH {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warn!(error = %e, "NG receive error");
                            break;
                        }
                    }
                }
            }
            Some(done) = done_rx.recv() => {
                ng.handle_done(Instant::now(), done);
                while let Ok(done) = done_rx.try_recv() {
                    ng.handle_done(Instant::now(), done);
                }
            }
            Some(MediaNotice::RtpTimeout { id }) = notices.recv() => ng.handle_media_timeout(Instant::now(), id),
            () = wait_until(ng.poll_timeout()) => ng.handle_timeout(Instant::now()),
            _ = shutdown.changed() => return,
        }
        while let Some(out) = ng.poll_output() {
            match out {
                Output::Send(to, answer) => answers.push((to, answer)),
                Output::Run(job) => {
                    let (media, done_tx) = (media.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let _ = done_tx.send(job.run(&media).await);
                    });
                }
            }
        }
        send_all(&socket, &mut outbox, &answers).await;
        answers.clear();
    }
}

/// Until `at` (never for None).
async fn wait_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends every answer, a batch per `sendmmsg`, waiting while the socket's buffer is full;
/// an answer the kernel refuses is logged and skipped.
async fn send_all(socket: &UdpSocket, outbox: &mut SendBatch, answers: &[(SocketAddr, Arc<[u8]>)]) {
    let fd = socket.as_raw_fd();
    let mut at = 0;
    while at < answers.len() {
        match socket.try_io(Interest::WRITABLE, || outbox.send(fd, &answers[at..])) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(to = %answers[at].0, error = %e, "NG answer not sent");
                at += 1;
            }
        }
    }
}
