//! The epoll backend's system calls, wrapped: an epoll instance, and batched UDP receive
//! (`recvmmsg`) into buffers allocated once per worker, and batched sends (`sendmmsg`).
//! The control plane's NG listener batches its datagrams with the same two.
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

/// All-zero bytes are a valid `T` for the C structs used here (sockaddr_storage, iovec,
/// mmsghdr: null pointers and zero lengths, set before every use).
fn zeroed<T>(n: usize) -> Box<[T]> {
    // SAFETY: only called for the C structs above.
    (0..n).map(|_| unsafe { MaybeUninit::<T>::zeroed().assume_init() }).collect()
}

/// Preallocated buffers and headers for one `recvmmsg`.
pub struct RecvBatch {
    /// `hdrs.len()` buffers of `buf` bytes each, one after the other.
    bufs: Box<[u8]>,
    buf: usize,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    n: usize,
}

// SAFETY: the headers' pointers lead into the batch's own heap buffers (which move with
// it) and are set again before every call; nothing is shared between threads.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Buffers for [`BATCH`] datagrams of [`BUF`] bytes (the media plane's).
    pub fn new() -> RecvBatch {
        RecvBatch::with_sizes(BATCH, BUF)
    }

    /// Buffers for `batch` datagrams of up to `buf` bytes (memory is touched as datagrams
    /// fill it).
    pub fn with_sizes(batch: usize, buf: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0; batch * buf].into_boxed_slice(),
            buf,
            addrs: zeroed(batch),
            iovs: zeroed(batch),
            hdrs: zeroed(batch),
            n: 0,
        }
    }

    /// Receives up to a batch of datagrams from non-blocking `fd`; returns how many (0
    /// when none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> usize {
        self.try_recv(fd).unwrap_or(0)
    }

    /// As [`RecvBatch::recv`], with the error (`WouldBlock` when nothing is waiting).
    pub fn try_recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            // SAFETY: i * buf + buf <= bufs.len().
            self.iovs[i] = libc::iovec { iov_base: unsafe { base.add(i * self.buf) }.cast(), iov_len: self.buf };
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
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.n = n.max(0) as usize;
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.n)
    }

    /// Datagrams per batch.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Datagram `i` of the last batch: its bytes (writable, for in-place rewriting), its
    /// source, and whether it was truncated.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr, bool)> {
        if i >= self.n {
            return None;
        }
        let len = (self.hdrs[i].msg_len as usize).min(self.buf);
        let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = from_storage(&self.addrs[i])?;
        Some((&mut self.bufs[i * self.buf..][..len], src, truncated))
    }
}

/// Headers for sending several datagrams, each to its own address, with one `sendmmsg`.
pub struct SendBatch {
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: the headers' pointers are set before every call and only read during it; between
// calls they are never followed.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Headers for up to `batch` datagrams per call.
    pub fn new(batch: usize) -> SendBatch {
        SendBatch { addrs: zeroed(batch), iovs: zeroed(batch), hdrs: zeroed(batch) }
    }

    /// Sends the first datagrams of `msgs` (as many as a batch holds) from non-blocking
    /// `fd`: how many went. An error means the first one did not (`WouldBlock`: the
    /// socket's buffer is full); a failure after the first ends the batch early, and the
    /// next call reports it.
    pub fn send<B: AsRef<[u8]>>(&mut self, fd: RawFd, msgs: &[(SocketAddr, B)]) -> io::Result<usize> {
        let n = msgs.len().min(self.hdrs.len());
        for (i, (to, bytes)) in msgs[..n].iter().enumerate() {
            let (storage, len) = sockaddr(*to);
            self.addrs[i] = storage;
            let bytes = bytes.as_ref();
            self.iovs[i] = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = len;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the headers point into self and into msgs, both borrowed for the call; the
        // kernel only reads the datagrams.
        let rc = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
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
    fn a_send_batch_sends_each_datagram_to_its_address_and_big_buffers_take_big_datagrams() {
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let big = vec![7u8; 9000];
        let msgs = [(aa, vec![1u8; 3]), (ba, vec![2u8; 4]), (aa, big.clone())];
        let mut s = SendBatch::new(2);
        assert_eq!(s.send(tx.as_raw_fd(), &msgs).unwrap(), 2, "a batch's worth");
        assert_eq!(s.send(tx.as_raw_fd(), &msgs[2..]).unwrap(), 1);
        let mut r = RecvBatch::with_sizes(4, 65536);
        assert_eq!(r.try_recv(a.as_raw_fd()).unwrap(), 2);
        let tx_addr = tx.local_addr().unwrap();
        assert_eq!(r.get(0).map(|(d, from, t)| (d.to_vec(), from, t)), Some((vec![1u8; 3], tx_addr, false)));
        assert_eq!(r.get(1).map(|(d, _, t)| (d.to_vec(), t)), Some((big, false)));
        assert_eq!(r.try_recv(a.as_raw_fd()).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut buf = [0u8; 16];
        assert_eq!(b.recv_from(&mut buf).unwrap(), (4, tx_addr));
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
