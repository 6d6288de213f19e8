//! UDP plumbing shared by the load generator and the bare forwarder: sockets with big
//! receive buffers and kernel receive timestamps, batched `recvmmsg` (with sources and
//! timestamps) and batched `sendmmsg` (each datagram to its own destination), clocks.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Largest datagram a batch buffer holds (anything longer is truncated).
pub const MAX_DATAGRAM: usize = 2048;

/// Nanoseconds on `clock` (CLOCK_MONOTONIC or CLOCK_REALTIME).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic nanoseconds (what the packets carry).
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Realtime minus monotonic, in ns, to put a kernel receive timestamp (realtime) on the
/// monotonic clock. Read twice around the realtime read; the tightest bracket wins.
pub fn realtime_offset_ns() -> i64 {
    let mut best = (u64::MAX, 0i64);
    for _ in 0..3 {
        let a = mono_ns();
        let r = clock_ns(libc::CLOCK_REALTIME);
        let b = mono_ns();
        if b - a < best.0 {
            best = (b - a, r as i64 - (a + (b - a) / 2) as i64);
        }
    }
    best.1
}

/// Sleeps until monotonic time `ns`.
pub fn sleep_until(ns: u64) {
    let ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as _ };
    // SAFETY: ts is valid; a null remainder is allowed with TIMER_ABSTIME.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}

/// Asks for 1 ns timer slack, so paced sleeps end when asked (the default is 50 µs).
pub fn tight_timers() {
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: v is a valid c_int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(fd, level, opt, (&v as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket bound to `addr` with a receive buffer of `rcvbuf` bytes (forced past
/// `net.core.rmem_max` when running as root) and, if `timestamps`, kernel receive
/// timestamps (`SO_TIMESTAMPNS`).
pub fn udp_socket(addr: SocketAddr, rcvbuf: usize, timestamps: bool) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    let fd = s.as_raw_fd();
    let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
    }
    if timestamps {
        set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    }
    Ok(s)
}

/// A socket address in the form the kernel takes.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// `addr` as a sockaddr.
    pub fn new(addr: SocketAddr) -> RawAddr {
        let (storage, len) = ferroswitch_media_plane::epoll::sockaddr(addr);
        RawAddr { storage, len }
    }
}

/// `n` all-zero values of a C struct.
///
/// # Safety
/// All-zero bytes must be a valid `T` (true of sockaddr_storage, iovec and mmsghdr:
/// null pointers and zero lengths, set before every use).
fn zeroed<T>(n: usize) -> Vec<T> {
    // SAFETY: only called for the C structs above.
    (0..n).map(|_| unsafe { MaybeUninit::<T>::zeroed().assume_init() }).collect()
}

// SAFETY (for the batches below): every header is re-pointed at buffers owned by the
// batch right before each system call, and the batch is not moved during the call.

/// Up to `cap` datagrams received with one `recvmmsg`: bytes, sources and, on sockets
/// with `SO_TIMESTAMPNS`, the kernel's receive time (realtime ns).
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; 8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl RecvBatch {
    /// Buffers for `cap` datagrams.
    pub fn new(cap: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![[0; MAX_DATAGRAM]; cap],
            names: zeroed(cap),
            ctrl: vec![[0; 8]; cap],
            iovs: zeroed(cap),
            hdrs: zeroed(cap),
            n: 0,
        }
    }

    /// Datagrams per batch.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Receives what is waiting on `fd` (never blocks); how many datagrams.
    pub fn recv(&mut self, fd: RawFd) -> usize {
        for i in 0..self.bufs.len() {
            self.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: MAX_DATAGRAM };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 8]>() as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: see above.
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
        self.n
    }

    /// Datagram `i` of the last receive.
    pub fn bytes(&self, i: usize) -> &[u8] {
        &self.bufs[i][..(self.hdrs[i].msg_len as usize).min(MAX_DATAGRAM)]
    }

    /// Where datagram `i` came from, as the kernel gave it.
    pub fn source(&self, i: usize) -> RawAddr {
        RawAddr { storage: self.names[i], len: self.hdrs[i].msg_hdr.msg_namelen }
    }

    /// The kernel's receive time of datagram `i` (realtime ns), if it gave one.
    pub fn kernel_time_ns(&self, i: usize) -> Option<u64> {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: h is the header the kernel filled; CMSG_* walk within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Sends datagrams `0..n` of the last receive, unchanged, from `fd` to `to` with one
    /// `sendmmsg` per call (the bare forwarder's whole job). How many went out.
    pub fn forward(&mut self, fd: RawFd, n: usize, to: &RawAddr) -> usize {
        let n = n.min(self.n);
        for i in 0..n {
            self.iovs[i].iov_len = self.hdrs[i].msg_len as usize;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&to.storage as *const libc::sockaddr_storage).cast_mut().cast();
            h.msg_namelen = to.len;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        send_all(fd, &mut self.hdrs[..n])
    }
}

/// `sendmmsg` until every header went or one fails; a datagram the kernel refuses is
/// skipped. How many were sent.
fn send_all(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> usize {
    let (mut at, mut sent) = (0, 0);
    while at < hdrs.len() {
        // SAFETY: see above.
        let rc = unsafe { libc::sendmmsg(fd, hdrs[at..].as_mut_ptr(), (hdrs.len() - at) as libc::c_uint, 0) };
        if rc > 0 {
            at += rc as usize;
            sent += rc as usize;
        } else if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            at += 1; // refused (no route, buffer): skip it
        }
    }
    sent
}

/// Up to `cap` datagrams of `LEN` bytes, each to its own destination, sent with one
/// `sendmmsg`.
pub struct SendBatch<const LEN: usize> {
    bufs: Vec<[u8; LEN]>,
    names: Vec<RawAddr>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl<const LEN: usize> SendBatch<LEN> {
    /// Room for `cap` datagrams.
    pub fn new(cap: usize) -> SendBatch<LEN> {
        SendBatch {
            bufs: vec![[0; LEN]; cap],
            names: vec![RawAddr::new(SocketAddr::from(([0, 0, 0, 0], 0))); cap],
            iovs: zeroed(cap),
            hdrs: zeroed(cap),
            n: 0,
        }
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Full: send before adding more.
    pub fn is_full(&self) -> bool {
        self.n == self.bufs.len()
    }

    /// The buffer of a new datagram to `to` (the batch must not be full).
    pub fn push(&mut self, to: &RawAddr) -> &mut [u8; LEN] {
        let i = self.n;
        self.names[i] = *to;
        self.n += 1;
        &mut self.bufs[i]
    }

    /// Sends everything waiting from `fd`; how many went out. The batch is empty after.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let n = std::mem::take(&mut self.n);
        for i in 0..n {
            self.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: LEN };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i].storage as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.names[i].len;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
        }
        send_all(fd, &mut self.hdrs[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_carry_datagrams_sources_and_kernel_times() {
        let ip: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let rx = udp_socket(ip, 1 << 20, true).unwrap();
        let fwd_in = udp_socket(ip, 1 << 20, false).unwrap();
        let tx = udp_socket(ip, 1 << 20, false).unwrap();
        let mut out = SendBatch::<3>::new(4);
        for i in 0..4u8 {
            *out.push(&RawAddr::new(fwd_in.local_addr().unwrap())) = [i; 3];
        }
        assert!(out.is_full());
        assert_eq!(out.flush(tx.as_raw_fd()), 4);
        assert!(out.is_empty());
        // Through a "forwarder": received in one batch, sent on in one.
        let mut b = RecvBatch::new(8);
        assert_eq!(b.recv(fwd_in.as_raw_fd()), 4);
        assert_eq!(b.bytes(2), &[2, 2, 2]);
        assert_eq!(b.kernel_time_ns(0), None);
        let back = b.source(0);
        assert_eq!(b.forward(fwd_in.as_raw_fd(), 4, &RawAddr::new(rx.local_addr().unwrap())), 4);
        let before = clock_ns(libc::CLOCK_REALTIME);
        let mut r = RecvBatch::new(2);
        assert_eq!(r.recv(rx.as_raw_fd()), 2);
        assert_eq!(r.recv(rx.as_raw_fd()), 2);
        assert_eq!(r.bytes(1), &[3, 3, 3]);
        let t = r.kernel_time_ns(1).expect("SO_TIMESTAMPNS");
        assert!(t <= clock_ns(libc::CLOCK_REALTIME) && t + 1_000_000_000 > before);
        assert_eq!(r.recv(rx.as_raw_fd()), 0);
        // The learnt source is an address we can send back to.
        let mut one = SendBatch::<1>::new(1);
        *one.push(&back) = [9];
        assert_eq!(one.flush(rx.as_raw_fd()), 1);
        assert_eq!(r.recv(tx.as_raw_fd()), 1);
        assert_eq!(r.bytes(0), &[9]);
    }
}
