//! The epoll backend's system calls, wrapped: an epoll instance, and batched UDP receive
//! (`recvmmsg`) into buffers allocated once per worker.
//!
//! This is the backend for kernels or sandboxes without io_uring; the worker's loop is
//! the same either way (readiness in, packets through the relay, sends out).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watches `fd` for input, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (closing it does too; this is for fds that stay open).
    pub fn delete(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout_ms` (-1: forever) and fills `tokens` with the ready ones;
    /// returns how many.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: events is a valid writable array of events.len() entries.
        let n = unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), events.len() as libc::c_int, timeout_ms)
        };
        n.max(0) as usize
    }
}

/// Datagrams per `recvmmsg`.
pub const BATCH: usize = 32;
/// Bytes per datagram buffer (anything longer is truncated and dropped as malformed).
pub const BUF: usize = 2048;

/// Preallocated buffers and headers for one `recvmmsg` of up to [`BATCH`] datagrams.
pub struct RecvBatch {
    bufs: Box<[[u8; BUF]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    n: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Buffers for one batch.
    pub fn new() -> RecvBatch {
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr (null pointers,
        // zero lengths); the pointers are set in recv before use.
        let zeroed = |_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() };
        RecvBatch {
            bufs: Box::new([[0; BUF]; BATCH]),
            // SAFETY: as above.
            addrs: Box::new(unsafe { MaybeUninit::zeroed().assume_init() }),
            // SAFETY: as above.
            iovs: Box::new(unsafe { MaybeUninit::zeroed().assume_init() }),
            hdrs: Box::new(std::array::from_fn(zeroed)),
            n: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams from non-blocking `fd`; returns how many (0
    /// when none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> usize {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: BUF };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        self.n = n.max(0) as usize;
        self.n
    }

    /// Datagram `i` of the last batch: its bytes (writable, for in-place rewriting), its
    /// source, and whether it was truncated.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr, bool)> {
        if i >= self.n {
            return None;
        }
        let len = (self.hdrs[i].msg_len as usize).min(BUF);
        let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = from_storage(&self.addrs[i])?;
        Some((&mut self.bufs[i][..len], src, truncated))
    }
}

/// `a` as a sockaddr_storage and its used length.
pub fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

/// The address in `b`, the raw bytes of a sockaddr as the kernel wrote them (a
/// `recvmmsg` name, or io_uring's multishot receive), read in place.
pub fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET && b.len() >= size_of::<libc::sockaddr_in>() {
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        return Some(SocketAddr::V4(SocketAddrV4::new(ip, port)));
    }
    if family == libc::AF_INET6 && b.len() >= size_of::<libc::sockaddr_in6>() {
        let flowinfo = u32::from_ne_bytes(b[4..8].try_into().ok()?);
        let octets: [u8; 16] = b[8..24].try_into().ok()?;
        let scope_id = u32::from_ne_bytes(b[24..28].try_into().ok()?);
        return Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, flowinfo, scope_id)));
    }
    None
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: a sockaddr_storage is plain bytes, valid for its whole size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (s as *const libc::sockaddr_storage).cast::<u8>(),
            size_of::<libc::sockaddr_storage>(),
        )
    };
    sockaddr_from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn a_batch_receives_every_waiting_datagram_with_its_source() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..40u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = RecvBatch::new();
        assert_eq!(b.recv(rx.as_raw_fd()), 32);
        let (bytes, src, truncated) = b.get(5).unwrap();
        assert_eq!((bytes.to_vec(), src, truncated), (vec![5u8; 10], tx.local_addr().unwrap(), false));
        assert!(b.get(32).is_none());
        assert_eq!(b.recv(rx.as_raw_fd()), 8);
        assert_eq!(b.get(7).unwrap().0, &[39u8; 10]);
        assert_eq!(b.recv(rx.as_raw_fd()), 0);
    }

    #[test]
    fn epoll_reports_the_token_of_a_readable_socket() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(rx.as_raw_fd(), 42).unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(ep.wait(&mut evs, 0), 0);
        UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"x", rx.local_addr().unwrap()).unwrap();
        assert_eq!(ep.wait(&mut evs, 1000), 1);
        let token = evs[0].u64;
        assert_eq!(token, 42);
    }
}
