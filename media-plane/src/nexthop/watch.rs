//! The kernel's tables, kept current: a NETLINK_ROUTE socket that dumps links, routes and
//! neighbours, then listens to their notifications on a thread of its own and hands each
//! changed [`Table`] to `publish` (the media plane sends every worker its own copy; no
//! worker reads shared state on its packet path). Lost notifications (ENOBUFS, a flood
//! of neighbour changes) make it dump everything again.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::rtnetlink::{self, Part, GROUPS, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE};
use super::Table;

/// How often the thread looks up from its socket to see whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// Bytes one read takes (a dump's datagrams are at most 32 KiB).
const READ: usize = 64 * 1024;

/// The listening thread; stopped and joined when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket creation; owned below.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl is valid; filled in below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = GROUPS;
        // SAFETY: `sa` is a live sockaddr_nl of the size given.
        if unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_nl).cast(), size_of::<libc::sockaddr_nl>() as u32) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        let timeout = libc::timeval { tv_sec: 0, tv_usec: POLL.as_micros() as libc::suseconds_t };
        let big: libc::c_int = 4 << 20;
        // SAFETY: live values of the sizes given. A refused buffer size only means that
        // floods of notifications overrun sooner (and are dumped again).
        unsafe {
            let set = |name, v: *const libc::c_void, len| libc::setsockopt(raw, libc::SOL_SOCKET, name, v, len);
            set(libc::SO_RCVTIMEO, (&timeout as *const libc::timeval).cast(), size_of::<libc::timeval>() as u32);
            if set(libc::SO_RCVBUFFORCE, (&big as *const libc::c_int).cast(), 4) != 0 {
                set(libc::SO_RCVBUF, (&big as *const libc::c_int).cast(), 4);
            }
        }
        Ok(Socket { fd, seq: 0, buf: vec![0; READ] })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// One datagram into the buffer: its length, None on timeout or nothing waiting.
    fn read(&mut self, flags: libc::c_int) -> io::Result<Option<usize>> {
        // SAFETY: reads into our live buffer, at most its length.
        let n = unsafe { libc::recv(self.raw(), self.buf.as_mut_ptr().cast(), self.buf.len(), flags) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        }
    }

    /// A fresh table from full dumps of links, routes and neighbours (notifications that
    /// come meanwhile are applied too).
    fn dump(&mut self, ifindex: u32) -> io::Result<Table> {
        let mut table = Table::new(ifindex);
        // Links first: routes and neighbours on VLANs are recognised by them.
        for kind in [RTM_GETLINK, RTM_GETROUTE, RTM_GETNEIGH] {
            self.seq = self.seq.wrapping_add(1);
            let req = rtnetlink::dump_request(kind, self.seq);
            // SAFETY: sends our live request buffer to the kernel (address 0 by default).
            if unsafe { libc::send(self.raw(), req.as_ptr().cast(), req.len(), 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut done = false;
            let mut failed = 0;
            let mut quiet = 0;
            while !done {
                let Some(n) = self.read(0)? else {
                    quiet += 1;
                    if quiet > 25 {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer to an rtnetlink dump"));
                    }
                    continue;
                };
                rtnetlink::parse(&self.buf[..n], |p| match p {
                    Part::Message(m) => {
                        table.apply(&m);
                    }
                    Part::Done => done = true,
                    Part::Error(e) if e < 0 => failed = e,
                    _ => {}
                });
                if failed != 0 {
                    return Err(io::Error::from_raw_os_error(-failed));
                }
            }
        }
        Ok(table)
    }
}

/// Dumps the kernel's tables for the XDP interface `ifindex`, hands the table to
/// `publish`, then keeps doing so on a thread at each change.
pub fn start(ifindex: u32, mut publish: impl FnMut(&Table) + Send + 'static) -> io::Result<Watcher> {
    let mut sock = Socket::open()?;
    let mut table = sock.dump(ifindex)?;
    publish(&table);
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new().name("media-nexthops".into()).spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            let mut changed = false;
            let mut lost = false;
            let mut flags = 0;
            // Waits for one datagram, then takes every one waiting before publishing.
            loop {
                match sock.read(flags) {
                    Ok(Some(n)) => rtnetlink::parse(&sock.buf[..n], |p| match p {
                        Part::Message(m) => changed |= table.apply(&m),
                        Part::Overrun => lost = true,
                        _ => {}
                    }),
                    Ok(None) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                    Err(e) => {
                        warn!(error = %e, "rtnetlink: the next-hop listener stopped (frames keep going through the kernel's sockets where a next hop changes)");
                        return;
                    }
                }
                flags = libc::MSG_DONTWAIT;
            }
            if lost {
                match sock.dump(ifindex) {
                    Ok(t) => {
                        changed = t != table;
                        table = t;
                    }
                    Err(e) => warn!(error = %e, "rtnetlink: dumping the tables again failed"),
                }
            }
            if changed {
                publish(&table);
            }
        }
    })?;
    Ok(Watcher { stop, thread: Some(thread) })
}
