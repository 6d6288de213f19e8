//! Sockets bound ahead of need (issue 6): a worker keeps the RTP and RTCP sockets of the
//! ports its [`SessionTable`] hands out next already bound, so a create takes them instead
//! of calling `socket()` and `bind()` four times before it can confirm.
//!
//! The table still chooses every port (the pool only follows its cursor), so a session
//! gets the ports it would have got without the pool, a replay still claims its own, and
//! nothing is bound outside the core's range. The worker refills the pool after a turn's
//! events are out, off the create-to-confirm path. Sockets that waited in the pool are
//! emptied ([`empty`]) before the session watches them: what reached a port before its
//! session existed is dropped, as it was when nothing was bound there (a stranger spraying
//! the range ahead must not be the first source a new session latches).
//!
//! The pool also holds the sockets of closed sessions (the quarantine), by address, instead
//! of closing them: the table hands a freed port out again after it cooled down
//! ([`crate::sessions::PORT_REUSE_DELAY`]), and the session that gets it takes the socket
//! still bound there, emptied like the others, so what the previous call's peers sent in
//! between is dropped. The quarantine holds at most its cap of sockets; one freed when it
//! is full is closed (the oldest stay: they are the ones the table hands out first).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, RawFd};

use crate::sessions::SessionTable;

/// RTP ports bound ahead (each with its RTCP port unless sessions use rtcp-mux): two legs
/// for each of a full command batch's creates.
pub const AHEAD: usize = 128;

/// Legs opened on another address, one after the other, before the pool moves to it (so
/// sessions alternating between two addresses, the NG listener's and the switch's RTP
/// address say, leave it where it is instead of rebinding it each time).
const MOVE_AFTER: u32 = 16;

/// The sockets of upcoming ports, on the local address sessions use.
pub struct Pool {
    /// The address sessions bind (the control plane's media address); None until the
    /// first session says it.
    ip: Option<IpAddr>,
    /// Legs opened on another address since the last one on `ip`.
    elsewhere: u32,
    /// Whether the last leg opened had an RTCP port (no rtcp-mux).
    rtcp: bool,
    /// Per upcoming RTP port: its RTP and RTCP sockets (None: taken, or the bind failed,
    /// and the create binds it itself).
    ports: HashMap<u16, [Option<UdpSocket>; 2]>,
    /// Closed sessions' sockets, by local address.
    quarantine: HashMap<SocketAddr, UdpSocket>,
    /// At most this many sockets in the quarantine.
    cap: usize,
}

/// The quarantine's cap per worker unless the server sets one ([`Pool::with_cap`]).
pub const QUARANTINE_CAP: usize = 1024;

impl Default for Pool {
    fn default() -> Pool {
        Pool::with_cap(QUARANTINE_CAP)
    }
}

impl Pool {
    /// An empty pool whose quarantine holds at most `cap` sockets.
    pub fn with_cap(cap: usize) -> Pool {
        Pool { ip: None, elsewhere: 0, rtcp: false, ports: HashMap::new(), quarantine: HashMap::new(), cap }
    }

    /// The pool's socket for `addr` (bound ahead, or left by a closed session), if it
    /// holds one. What arrived on it meanwhile is still there: [`empty`] it before use.
    pub fn take(&mut self, addr: SocketAddr) -> Option<UdpSocket> {
        if self.ip == Some(addr.ip()) {
            let port = addr.port();
            if let Some(s) = self.ports.get_mut(&(port & !1)).and_then(|p| p[usize::from(port & 1)].take()) {
                return Some(s);
            }
        }
        self.quarantine.remove(&addr)
    }

    /// Keeps a closed session's socket bound on `addr` for the port's next session; gives
    /// it back (to be closed) when the quarantine is full.
    pub fn put(&mut self, addr: SocketAddr, s: UdpSocket) -> Option<UdpSocket> {
        if self.quarantine.len() >= self.cap || self.quarantine.contains_key(&addr) {
            return Some(s);
        }
        self.quarantine.insert(addr, s);
        None
    }

    /// Sockets in the quarantine.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// A session opened a leg on `ip`, with an RTCP port or not: the pool binds the same
    /// (it moves to another address once [`MOVE_AFTER`] legs in a row were opened there).
    pub fn note(&mut self, ip: IpAddr, rtcp: bool) {
        if self.ip == Some(ip) {
            self.elsewhere = 0;
        } else {
            self.elsewhere += 1;
            if self.ip.is_some() && self.elsewhere < MOVE_AFTER {
                return;
            }
            self.ports.clear();
            (self.ip, self.elsewhere) = (Some(ip), 0);
        }
        self.rtcp = rtcp;
    }

    /// Closes the sockets of ports the table no longer hands out next (taken, or passed)
    /// and binds those it does; a port that cannot be bound is left to the create.
    pub fn refill(&mut self, table: &SessionTable) {
        let Some(ip) = self.ip else { return };
        let want: Vec<u16> = table.upcoming_ports(AHEAD).collect();
        let mut sorted = want.clone();
        sorted.sort_unstable();
        // Sockets of ports no longer upcoming go back to the quarantine (or are closed).
        let passed: Vec<u16> = self.ports.keys().copied().filter(|p| sorted.binary_search(p).is_err()).collect();
        for port in passed {
            let pair = self.ports.remove(&port).unwrap_or_default();
            for (i, s) in pair.into_iter().enumerate() {
                if let Some(s) = s {
                    drop(self.put(SocketAddr::new(ip, port + i as u16), s));
                }
            }
        }
        for port in want {
            let (rtcp, quarantine) = (self.rtcp, &mut self.quarantine);
            self.ports.entry(port).or_insert_with(|| {
                // A port's socket left by a closed session is used, never a second one.
                let mut open = |addr: SocketAddr| quarantine.remove(&addr).or_else(|| bind_media_socket(addr).ok());
                let rtp = open(SocketAddr::new(ip, port));
                let rtcp = rtp.as_ref().filter(|_| rtcp).and_then(|_| open(SocketAddr::new(ip, port + 1)));
                [rtp, rtcp]
            });
        }
    }

    /// Sockets bound ahead (the quarantine's not counted).
    pub fn len(&self) -> usize {
        self.ports.values().flatten().flatten().count()
    }

    /// Whether no socket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A non-blocking UDP socket on `addr`, with SO_REUSEADDR: a media plane replaying its
/// sessions after a restart binds the same ports while the killed one's io_uring may still
/// hold its sockets for a moment. Created non-blocking and close-on-exec in one call.
pub fn bind_media_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: a plain socket(2) call; the descriptor is owned by the Socket at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let s = unsafe { socket2::Socket::from_raw_fd(fd) };
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Reads and drops whatever waits on the non-blocking sockets `fds` (at most four: a
/// session's): one `poll` for all of them, and receives only on those with data.
pub fn empty(fds: &[RawFd]) {
    let mut polled = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 4];
    for (p, &fd) in polled.iter_mut().zip(fds) {
        p.fd = fd;
    }
    let n = fds.len().min(polled.len());
    // SAFETY: polled is a valid array of n pollfds; a zero timeout never blocks.
    if n == 0 || unsafe { libc::poll(polled.as_mut_ptr(), n as libc::nfds_t, 0) } <= 0 {
        return;
    }
    let mut byte = [0u8; 1];
    for p in polled[..n].iter().filter(|p| p.revents & libc::POLLIN != 0) {
        // SAFETY: a recv into a valid one-byte buffer; longer datagrams are truncated and
        // dropped all the same.
        while unsafe { libc::recv(p.fd, byte.as_mut_ptr().cast(), 1, libc::MSG_DONTWAIT | libc::MSG_TRUNC) } >= 0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroswitch_shared::msg::{Command, CommandKind, Endpoint, LegSpec, SessionSpec};
    use std::os::fd::AsRawFd;

    #[test]
    fn the_pool_binds_the_tables_next_ports_and_hands_them_out_emptied() {
        // Ports no other test of this binary uses, below the kernel's ephemeral range
        // (32768 and up), where a client socket could take one at any moment.
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Lowest first, to name the ports.
        let mut table = SessionTable::with_order(
            0,
            31000,
            31009,
            crate::sessions::PORT_REUSE_DELAY,
            crate::sessions::PortOrder::Sequential,
        );
        let mut pool = Pool::default();
        pool.refill(&table);
        assert!(pool.is_empty(), "nothing bound before a session says which address");
        pool.note(ip, true);
        pool.refill(&table);
        assert_eq!(pool.len(), 10, "five RTP ports and their RTCP ports");
        for p in 31000..=31009 {
            assert!(UdpSocket::bind((ip, p)).is_err(), "port {p} is held by the pool");
        }
        let stranger = UdpSocket::bind((ip, 0)).unwrap();
        stranger.send_to(b"early", (ip, 31000)).unwrap();
        let leg = LegSpec { local: Endpoint::from_addr(SocketAddr::new(ip, 0)), ..LegSpec::default() };
        let spec = SessionSpec { legs: [leg, leg], rtp_timeout_secs: 0, flags: 0 };
        table.apply(&Command::new(CommandKind::Create as u16, 0, 1, 1).with_body(&spec), |_| {});
        let s = pool.take(SocketAddr::new(ip, 31000)).expect("the create's first port is pooled");
        assert_eq!(s.local_addr().unwrap().port(), 31000);
        let t = pool.take(SocketAddr::new(ip, 31001)).expect("and its RTCP port");
        stranger.send_to(b"early rtcp", (ip, 31001)).unwrap();
        stranger.send_to(b"early rtcp", (ip, 31001)).unwrap();
        empty(&[s.as_raw_fd(), t.as_raw_fd()]);
        let mut buf = [0u8; 16];
        assert!(s.recv(&mut buf).is_err() && t.recv(&mut buf).is_err(), "what came before the session is dropped");
        stranger.send_to(b"now", (ip, 31000)).unwrap();
        assert_eq!(s.recv(&mut buf).unwrap(), 3, "what comes after is kept");
        drop(t);
        assert!(pool.take(SocketAddr::new(ip, 31000)).is_none(), "taken once");
        assert!(pool.take(SocketAddr::new("127.0.0.2".parse().unwrap(), 31002)).is_none(), "another address");
        drop(s);
        // The table took 31000 and 31002: the sockets bound ahead for 31002 wait in the
        // quarantine, the rest stays.
        pool.refill(&table);
        assert_eq!((pool.len(), pool.quarantined()), (6, 2));
        assert!(UdpSocket::bind((ip, 31003)).is_err(), "a passed port's socket stays bound");
        pool.note(ip, false);
        table.apply(&Command::new(CommandKind::Destroy as u16, 0, 1, 1), |_| {});
        pool.refill(&table);
        // Freed ports come back (after the fresh ones: they cool), without RTCP once
        // sessions use rtcp-mux: 31002's socket leaves the quarantine, 31003's stays.
        assert_eq!((pool.len(), pool.quarantined()), (8, 1));
        // Legs on another address now and then leave the pool where it is; a run of them
        // moves it.
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            pool.note(other, false);
            pool.note(ip, false);
        }
        assert_eq!(pool.len(), 8);
        for _ in 0..MOVE_AFTER {
            pool.note(other, false);
        }
        assert!(pool.is_empty());
        pool.refill(&table);
        assert!(pool.take(SocketAddr::new(other, 31004)).is_some(), "bound on the new address");
    }

    #[test]
    fn the_quarantine_gives_a_closed_sessions_socket_back_once_and_closes_what_it_has_no_room_for() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut pool = Pool::with_cap(2);
        let addrs: Vec<SocketAddr> = (31020..31023).map(|p| SocketAddr::new(ip, p)).collect();
        let socks: Vec<UdpSocket> = addrs.iter().map(|&a| bind_media_socket(a).unwrap()).collect();
        let mut socks = socks.into_iter();
        assert!(pool.put(addrs[0], socks.next().unwrap()).is_none());
        assert!(pool.put(addrs[1], socks.next().unwrap()).is_none());
        assert!(pool.put(addrs[2], socks.next().unwrap()).is_some(), "full: the caller closes it");
        assert_eq!(pool.quarantined(), 2);
        assert!(UdpSocket::bind(addrs[0]).is_err(), "a quarantined port stays bound");
        let s = pool.take(addrs[0]).expect("the same socket, for the port's next session");
        assert_eq!(s.local_addr().unwrap(), addrs[0]);
        assert!(pool.take(addrs[0]).is_none(), "taken once");
        assert!(pool.take(SocketAddr::new("127.0.0.2".parse().unwrap(), 31021)).is_none(), "by address");
    }
}
