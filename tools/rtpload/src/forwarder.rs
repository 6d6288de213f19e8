//! The bare forwarder: the least a relay can do, as the machine's ceiling. N fixed port
//! pairs (A ↔ B); each side learns its peer from the datagrams it receives; one
//! thread, one epoll instance, `recvmmsg` a batch from a ready socket and `sendmmsg` it
//! unchanged from the partner socket to the partner's peer. No parsing, no per-packet
//! state, no timers.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use ferroswitch_media_plane::epoll::Epoll;

use crate::net::{self, RawAddr, RecvBatch};

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 64;
/// Receive buffer per socket (the kernel's default on Debian, as a relay would have).
const RCVBUF: usize = 212_992;

/// Bound port pairs and what each side learnt.
pub struct Forwarder {
    socks: Vec<UdpSocket>,
    peers: Vec<Option<RawAddr>>,
    forwarded: u64,
}

impl Forwarder {
    /// Binds `pairs` pairs: pair `i` is `ip:base+2i` ↔ `ip:base+2i+1`. With `base` 0 every
    /// socket takes an ephemeral port (tests): see [`Forwarder::pairs`].
    pub fn bind(ip: std::net::IpAddr, base: u16, pairs: usize) -> std::io::Result<Forwarder> {
        let mut socks = Vec::with_capacity(2 * pairs);
        for i in 0..2 * pairs {
            let port = if base == 0 {
                0
            } else {
                u16::try_from(usize::from(base) + i).map_err(|_| std::io::Error::other("port range past 65535"))?
            };
            let s = net::udp_socket(SocketAddr::new(ip, port), RCVBUF, false)?;
            s.set_nonblocking(true)?;
            socks.push(s);
        }
        Ok(Forwarder { peers: vec![None; socks.len()], socks, forwarded: 0 })
    }

    /// Each pair's (A, B) address.
    pub fn pairs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let addr = |s: &UdpSocket| s.local_addr().expect("bound socket");
        self.socks.chunks(2).map(|p| (addr(&p[0]), addr(&p[1]))).collect()
    }

    /// Datagrams forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    /// Forwards until `stop` is set (checked at least every 100 ms).
    pub fn run(&mut self, stop: &AtomicBool) -> std::io::Result<()> {
        let ep = Epoll::new()?;
        for (i, s) in self.socks.iter().enumerate() {
            ep.add(s.as_raw_fd(), i as u64)?;
        }
        let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut batch = RecvBatch::new(BATCH);
        while !stop.load(Ordering::Relaxed) {
            let n = ep.wait(&mut ready, 100);
            for ev in &ready[..n] {
                let i = ev.u64 as usize;
                let fd = self.socks[i].as_raw_fd();
                let out = self.socks[i ^ 1].as_raw_fd();
                loop {
                    let got = batch.recv(fd);
                    if got == 0 {
                        break;
                    }
                    // Follows the latest source (one copy per batch): a peer that moves, or
                    // the next run's sockets, take over at once.
                    self.peers[i] = Some(batch.source(got - 1));
                    if let Some(to) = &self.peers[i ^ 1] {
                        self.forwarded += batch.forward(out, got, to) as u64;
                    }
                    if got < BATCH {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}
