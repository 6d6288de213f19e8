//! The load itself: N sessions, each two streams (caller → relay → callee and back),
//! sent from a few loopback socket pairs of the tool's own and received on them.
//!
//! One thread does everything, so it can be pinned to one core: it sends every packet
//! that is due (batched per socket with `sendmmsg`), drains every socket (`recvmmsg`),
//! and sleeps until the next packet is due, at most once per tick. Latency is measured
//! from the send time in the payload to the kernel's receive timestamp, so it does not
//! depend on when the tool gets around to reading.
//!
//! Stream `2s` is session `s`'s caller → callee direction: sent from the caller socket
//! to the relay's leg-A address, expected on the callee socket. Stream `2s + 1` is the
//! reverse. Session `s` uses socket pair `s % pairs`.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::net::{self, RawAddr, RecvBatch, SendBatch};
use crate::packet::{self, PRIMING};
use crate::stats::{Arrival, Histogram, StreamRx};

/// Receive buffer of each tool socket.
const TOOL_RCVBUF: usize = 64 << 20;

/// The tool's sockets: `pairs[p] = [caller, callee]`.
pub struct ToolSockets {
    pairs: Vec<[UdpSocket; 2]>,
}

impl ToolSockets {
    /// `pairs` caller/callee socket pairs on ephemeral ports of `ip`.
    pub fn bind(ip: std::net::IpAddr, pairs: usize) -> std::io::Result<ToolSockets> {
        let addr = SocketAddr::new(ip, 0);
        let pairs = (0..pairs.max(1))
            .map(|_| Ok([net::udp_socket(addr, TOOL_RCVBUF, true)?, net::udp_socket(addr, TOOL_RCVBUF, true)?]))
            .collect::<std::io::Result<_>>()?;
        Ok(ToolSockets { pairs })
    }

    /// Socket pairs.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Session `s`'s caller (leg 0) or callee (leg 1) address.
    pub fn addr(&self, s: usize, leg: usize) -> SocketAddr {
        self.pairs[s % self.pairs.len()][leg].local_addr().expect("bound socket")
    }

    /// Pair `p`'s caller (leg 0) or callee (leg 1) socket.
    pub fn socket(&self, p: usize, leg: usize) -> &UdpSocket {
        &self.pairs[p % self.pairs.len()][leg & 1]
    }

    /// Every local port, for drop counters.
    pub fn ports(&self) -> Vec<u16> {
        self.pairs.iter().flatten().filter_map(|s| s.local_addr().ok()).map(|a| a.port()).collect()
    }
}

/// Where a session's packets go: the relay's address for the caller (leg A) and for the
/// callee (leg B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPorts {
    /// The caller sends here.
    pub a: SocketAddr,
    /// The callee sends here.
    pub b: SocketAddr,
}

/// How hard to push.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Packets per second per stream (ignored when flat out).
    pub pps_per_stream: f64,
    /// Send as fast as the tool can, round-robin over the streams.
    pub flat_out: bool,
    /// How long to send.
    pub duration: Duration,
    /// Paced sending wakes at most once per tick.
    pub tick: Duration,
    /// Datagrams per `sendmmsg`.
    pub batch: usize,
    /// After the last send, how long to wait for stragglers.
    pub drain: Duration,
    /// A packet that takes longer than this counts as late (a jitter buffer would have
    /// discarded it): it is received, but it is not delivered on time.
    pub late: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pps_per_stream: 50.0,
            flat_out: false,
            duration: Duration::from_secs(5),
            tick: Duration::from_micros(100),
            batch: 16,
            drain: Duration::from_millis(500),
            late: Duration::from_millis(100),
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Packets sent per stream (measured packets, priming excluded).
    pub sent: Vec<u64>,
    /// Receive accounting per stream.
    pub rx: Vec<StreamRx>,
    /// One-way latency of every first arrival.
    pub latency: Histogram,
    /// Seconds from the first measured send to the last.
    pub send_secs: f64,
    /// Seconds from the first measured send to the last arrival.
    pub rx_secs: f64,
    /// First arrivals later than [`LoadOptions::late`].
    pub late: u64,
    /// Priming packets that came back.
    pub priming_received: u64,
    /// Datagrams that were not test packets, or arrived on the wrong socket.
    pub foreign: u64,
    /// Latencies below zero (clock trouble), counted as 0.
    pub negative_latency: u64,
    /// Arrivals without a kernel timestamp (read time used).
    pub untimed: u64,
}

impl Outcome {
    /// Measured packets sent.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Distinct measured packets received.
    pub fn received(&self) -> u64 {
        self.rx.iter().map(|r| r.unique).sum()
    }

    /// Packets sent and never received.
    pub fn lost(&self) -> u64 {
        self.sent.iter().zip(&self.rx).map(|(s, r)| s.saturating_sub(r.unique)).sum()
    }

    /// Sum of a per-stream counter.
    pub fn total(&self, f: impl Fn(&StreamRx) -> u64) -> u64 {
        self.rx.iter().map(f).sum()
    }
}

/// The generator and checker for one set of sessions.
pub struct Engine<'a> {
    socks: &'a ToolSockets,
    /// Per stream: (source socket, destination) in send order.
    routes: Vec<(usize, RawAddr)>,
    out: Vec<SendBatch<{ packet::LEN }>>,
    inb: RecvBatch,
    next_index: Vec<u64>,
    outcome: Outcome,
    late_ns: u64,
    last_rx_ns: u64,
}

impl<'a> Engine<'a> {
    /// An engine sending session `s`'s streams to `sessions[s]`.
    pub fn new(socks: &'a ToolSockets, sessions: &[SessionPorts], batch: usize) -> Engine<'a> {
        let k = socks.pairs();
        let mut routes = Vec::with_capacity(sessions.len() * 2);
        for (s, p) in sessions.iter().enumerate() {
            routes.push(((s % k) * 2, RawAddr::new(p.a)));
            routes.push(((s % k) * 2 + 1, RawAddr::new(p.b)));
        }
        let streams = routes.len();
        Engine {
            socks,
            routes,
            out: (0..2 * k).map(|_| SendBatch::new(batch.max(1))).collect(),
            inb: RecvBatch::new(64),
            next_index: vec![0; streams],
            late_ns: u64::MAX,
            last_rx_ns: 0,
            outcome: Outcome { sent: vec![0; streams], rx: vec![StreamRx::default(); streams], ..Outcome::default() },
        }
    }

    fn fd(&self, sock: usize) -> i32 {
        self.socks.pairs[sock / 2][sock % 2].as_raw_fd()
    }

    /// Queues the next packet of `stream`, sending the socket's batch when it fills.
    fn queue(&mut self, stream: usize, now: u64) {
        let (sock, to) = self.routes[stream];
        if self.out[sock].is_full() {
            self.flush(sock);
        }
        let index = self.next_index[stream];
        self.next_index[stream] += 1;
        packet::write(self.out[sock].push(&to), stream as u32, index, now);
        if index >= PRIMING {
            self.outcome.sent[stream] += 1;
        }
    }

    fn flush(&mut self, sock: usize) {
        let fd = self.fd(sock);
        self.out[sock].flush(fd);
    }

    fn flush_all(&mut self) {
        for sock in 0..self.out.len() {
            if !self.out[sock].is_empty() {
                self.flush(sock);
            }
        }
    }

    /// Reads everything waiting on every socket.
    fn drain(&mut self) {
        let offset = net::realtime_offset_ns();
        for sock in 0..self.out.len() {
            let fd = self.fd(sock);
            loop {
                let n = self.inb.recv(fd);
                let read_ns = net::mono_ns();
                for i in 0..n {
                    let at = match self.inb.kernel_time_ns(i) {
                        Some(t) => (t as i64 - offset) as u64,
                        None => {
                            self.outcome.untimed += 1;
                            read_ns
                        }
                    };
                    self.account(sock, i, at);
                }
                if n < self.inb.capacity() {
                    break;
                }
            }
        }
    }

    fn account(&mut self, sock: usize, i: usize, at_ns: u64) {
        let o = &mut self.outcome;
        let Some(p) = packet::read(self.inb.bytes(i)) else {
            o.foreign += 1;
            return;
        };
        let stream = p.stream as usize;
        // Stream 2s+d leaves from socket (pair*2 + d) and arrives on its partner.
        if stream >= self.routes.len() || self.routes[stream].0 ^ 1 != sock {
            o.foreign += 1;
            return;
        }
        if p.priming {
            o.priming_received += 1;
            return;
        }
        let rx = &mut o.rx[stream];
        if !p.header_ok {
            rx.header_errors += 1;
        }
        let arrival = rx.on_packet(p.index - PRIMING);
        if arrival == Arrival::Duplicate {
            return;
        }
        let transit = at_ns as i64 - p.sent_ns as i64;
        rx.on_transit(transit);
        if transit < 0 {
            o.negative_latency += 1;
        }
        if transit.max(0) as u64 > self.late_ns {
            o.late += 1;
        }
        self.last_rx_ns = self.last_rx_ns.max(at_ns);
        o.latency.add(transit.max(0) as u64);
    }

    /// Sends the priming packets (every stream, [`PRIMING`] rounds `gap` apart) so that
    /// relays learn every address, then drains for `settle`. Priming packets that came
    /// back.
    pub fn prime(&mut self, gap: Duration, settle: Duration) -> u64 {
        for _ in 0..PRIMING {
            let now = net::mono_ns();
            for stream in 0..self.routes.len() {
                self.queue(stream, now);
            }
            self.flush_all();
            self.drain();
            net::sleep_until(net::mono_ns() + gap.as_nanos() as u64);
        }
        let end = net::mono_ns() + settle.as_nanos() as u64;
        while net::mono_ns() < end {
            self.drain();
            net::sleep_until(net::mono_ns() + 1_000_000);
        }
        self.drain();
        self.outcome.priming_received
    }

    /// Runs the measured load and returns what was seen.
    pub fn run(mut self, opts: &LoadOptions) -> Outcome {
        let streams = self.routes.len();
        if streams == 0 {
            return self.outcome;
        }
        self.late_ns = opts.late.as_nanos() as u64;
        let start = net::mono_ns() + 1_000_000;
        net::sleep_until(start);
        let dur_ns = opts.duration.as_nanos() as u64;
        let mut last_send = start;
        if opts.flat_out {
            let chunk = (opts.batch * self.out.len()).max(64);
            let mut g = 0usize;
            while net::mono_ns() < start + dur_ns {
                let now = net::mono_ns();
                for _ in 0..chunk {
                    self.queue(g % streams, now);
                    g += 1;
                }
                self.flush_all();
                self.drain();
            }
            last_send = net::mono_ns();
        } else {
            // Whole rounds: every stream sends the same count, evenly spread.
            let per_stream = (opts.pps_per_stream * opts.duration.as_secs_f64()).round() as u64;
            let total = per_stream * streams as u64;
            let gap_ns = 1e9 / (opts.pps_per_stream * streams as f64);
            let tick = opts.tick.as_nanos() as u64;
            let due = |g: u64| start + (g as f64 * gap_ns) as u64;
            let mut g = 0u64;
            while g < total {
                let now = net::mono_ns();
                while g < total && due(g) <= now {
                    self.queue((g % streams as u64) as usize, now);
                    g += 1;
                }
                self.flush_all();
                last_send = now;
                self.drain();
                if g < total {
                    net::sleep_until(due(g).max(now + tick));
                }
            }
        }
        self.outcome.send_secs = (last_send.saturating_sub(start)) as f64 / 1e9;
        // Stragglers: until everything is in or the drain time is up.
        let end = net::mono_ns() + opts.drain.as_nanos() as u64;
        loop {
            self.drain();
            let o = &self.outcome;
            if o.received() >= o.sent_total() || net::mono_ns() >= end {
                break;
            }
            net::sleep_until(net::mono_ns() + 1_000_000);
        }
        self.outcome.rx_secs = self.last_rx_ns.saturating_sub(start) as f64 / 1e9;
        self.outcome
    }
}
