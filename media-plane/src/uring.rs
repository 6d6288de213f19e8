//! The io_uring backend: one ring per worker, a multishot `RECVMSG` per socket into a
//! provided buffer ring, sends queued as `SENDMSG`s straight from the receive buffer
//! (no copy) and submitted together once per loop turn, and the worker's eventfds
//! watched with multishot polls in the same ring.
//!
//! A receive buffer goes back to the buffer ring when its packet is dropped, or when the
//! send that carries it completes. Each buffer has its own send header, so the number of
//! packets in flight is bounded by the buffer count.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, IoUring};

/// Buffers in the provided ring (a power of two).
const BUFFERS: u16 = 4096;
/// Bytes per buffer: the recvmsg-out header, the source address, then the datagram.
const BUF_SIZE: usize = 2048;
/// The buffer group id.
const GROUP: u16 = 7;
/// Submission queue entries.
const ENTRIES: u32 = 4096;

/// `user_data` tags: the top byte says what completed.
const TAG_RECV: u64 = 1 << 56;
const TAG_POLL: u64 = 2 << 56;
const TAG_SEND: u64 = 3 << 56;
const TAG_CANCEL: u64 = 4 << 56;
const TAG_MASK: u64 = 0xff << 56;

/// What a turn of the ring produced, for the worker to act on.
pub enum Completion<'a> {
    /// A datagram on the socket watched with `token`; the buffer is returned or sent by
    /// [`Uring::forward`] / [`Uring::release`] before the next turn.
    Packet {
        /// The socket's token.
        token: u64,
        /// The datagram, writable in place.
        bytes: &'a mut [u8],
        /// Its source.
        src: SocketAddr,
        /// The buffer id (pass it back).
        bid: u16,
        /// Where `bytes` start in the buffer (for [`Uring::forward`]).
        offset: usize,
    },
    /// An eventfd watched with `token` became readable.
    Ready(u64),
}

/// Per-buffer send header, kept alive until the send completes.
struct SendSlot {
    msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

/// One worker's ring.
pub struct Uring {
    ring: IoUring,
    /// The provided-buffer ring entries (page aligned, mmapped).
    entries: *mut BufRingEntry,
    entries_len: usize,
    /// The buffers, `BUFFERS × BUF_SIZE`.
    bufs: Box<[u8]>,
    tail: u16,
    /// The msghdr template for multishot receives (only the lengths matter).
    recv_msg: Box<libc::msghdr>,
    sends: Box<[SendSlot]>,
    /// Completions taken from the queue but not yet handed out.
    ready: Vec<(u64, i32, u32)>,
}

// SAFETY: the raw pointers point into memory this value owns; it is used by one thread.
unsafe impl Send for Uring {}

impl Drop for Uring {
    fn drop(&mut self) {
        // SAFETY: entries/entries_len are the mapping made in new().
        unsafe { libc::munmap(self.entries.cast(), self.entries_len) };
    }
}

/// Whether this kernel and process can run the backend (io_uring allowed, multishot
/// recvmsg and buffer rings available); the reason if not.
pub fn probe() -> Result<(), String> {
    Uring::new().map(|_| ()).map_err(|e| e.to_string())
}

impl Uring {
    /// A ring with its buffer ring registered.
    pub fn new() -> io::Result<Uring> {
        Uring::with_sqpoll(None)
    }

    /// A ring whose submissions a kernel thread polls (SQPOLL), idling after `idle`
    /// without work; None: submissions go through `io_uring_enter`.
    pub fn with_sqpoll(idle: Option<Duration>) -> io::Result<Uring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(ENTRIES * 4);
        b.setup_single_issuer();
        match idle {
            Some(idle) => {
                b.setup_sqpoll(idle.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
            }
            // Completion work runs when the worker enters the ring rather than from
            // interrupts (Linux 6.1+; not with SQPOLL): fewer wake-ups, no task-work IPIs.
            None => {
                b.setup_defer_taskrun();
            }
        }
        let ring = b.build(ENTRIES)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [opcode::RecvMsgMulti::CODE, opcode::SendMsg::CODE, opcode::PollAdd::CODE] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(io::ErrorKind::Unsupported, format!("io_uring opcode {code} unsupported")));
            }
        }
        let entries_len = usize::from(BUFFERS) * size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let entries = entries.cast::<BufRingEntry>();
        let bufs = vec![0u8; usize::from(BUFFERS) * BUF_SIZE].into_boxed_slice();
        // SAFETY: all-zero msghdr/iovec/sockaddr_storage are valid values.
        let zero_slot = || SendSlot {
            msg: unsafe { std::mem::zeroed() },
            iov: unsafe { std::mem::zeroed() },
            addr: unsafe { std::mem::zeroed() },
        };
        // SAFETY: as above.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let mut u = Uring {
            ring,
            entries,
            entries_len,
            bufs,
            tail: 0,
            recv_msg,
            sends: (0..BUFFERS).map(|_| zero_slot()).collect(),
            ready: Vec::with_capacity(1024),
        };
        // SAFETY: the entries mapping is page aligned, BUFFERS long, and lives as long as
        // the ring (unregistered when the ring is dropped).
        unsafe { u.ring.submitter().register_buf_ring_with_flags(u.entries as u64, BUFFERS, GROUP, 0)? };
        for bid in 0..BUFFERS {
            u.push_buffer(bid);
        }
        u.publish();
        Ok(u)
    }

    fn push_buffer(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: idx < BUFFERS; the entry is ours to write until the tail is published.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.bufs[usize::from(bid) * BUF_SIZE..].as_ptr() as u64);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: the tail field lives in the first entry of our mapping; the kernel reads
        // it with acquire semantics.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn push(&mut self, e: io_uring::squeue::Entry) {
        // SAFETY: every entry points at memory that outlives its completion (the msghdr
        // template and buffers owned by self, or send slots released on completion).
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            let _ = self.ring.submit();
        }
    }

    /// Starts a multishot receive on `fd`, completions tagged `token` (< 2^56).
    pub fn watch_socket(&mut self, fd: RawFd, token: u64) {
        let e = opcode::RecvMsgMulti::new(Fd(fd), &*self.recv_msg, GROUP).build().user_data(TAG_RECV | token);
        self.push(e);
    }

    /// Watches eventfd `fd` for input (multishot poll), completions tagged `token`.
    pub fn watch_eventfd(&mut self, fd: RawFd, token: u64) {
        let e = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32).multi(true).build().user_data(TAG_POLL | token);
        self.push(e);
    }

    /// Cancels what watches `token` (a socket about to close, or an eventfd).
    pub fn unwatch(&mut self, token: u64, eventfd: bool) {
        let tag = if eventfd { TAG_POLL } else { TAG_RECV };
        let e = opcode::AsyncCancel::new(tag | token).build().user_data(TAG_CANCEL);
        self.push(e);
    }

    /// Returns buffer `bid` to the kernel (its packet was dropped or answered).
    pub fn release(&mut self, bid: u16) {
        self.push_buffer(bid);
    }

    /// Sends buffer `bid`'s datagram (`len` bytes at `offset`) from `fd` to `to`; the buffer
    /// goes back when the send completes.
    pub fn forward(&mut self, bid: u16, offset: usize, len: usize, fd: RawFd, to: SocketAddr) {
        let base = usize::from(bid) * BUF_SIZE + offset;
        let ptr = self.bufs[base..base + len].as_mut_ptr();
        let slot = &mut self.sends[usize::from(bid)];
        slot.iov = libc::iovec { iov_base: ptr.cast(), iov_len: len };
        let (addr, alen) = crate::epoll::sockaddr(to);
        slot.addr = addr;
        slot.msg.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
        slot.msg.msg_namelen = alen;
        slot.msg.msg_iov = &mut slot.iov;
        slot.msg.msg_iovlen = 1;
        let e = opcode::SendMsg::new(Fd(fd), &slot.msg).build().user_data(TAG_SEND | u64::from(bid));
        self.push(e);
    }

    /// Submits everything queued, waits up to `timeout` for a completion (None: do not
    /// wait), and collects the completions. Re-arms multishot operations that ended
    /// (`rearm` gets the token of a socket whose receive stopped and must say whether the
    /// socket still exists and its fd).
    pub fn turn(&mut self, timeout: Option<Duration>, mut rearm: impl FnMut(u64) -> Option<RawFd>) {
        self.publish();
        match timeout {
            Some(t) if self.ring.completion().is_empty() => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                let _ = self.ring.submitter().submit_with_args(1, &args);
            }
            _ => {
                let _ = self.ring.submit();
            }
        }
        let mut all = std::mem::take(&mut self.ready);
        all.clear();
        all.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        let mut rearm_list = Vec::new();
        let mut ready = Vec::with_capacity(all.len());
        for &(ud, res, flags) in &all {
            match ud & TAG_MASK {
                TAG_RECV => {
                    if !cqueue::more(flags) && res != -libc::ECANCELED {
                        rearm_list.push(ud & !TAG_MASK);
                    }
                    ready.push((ud, res, flags));
                }
                TAG_POLL => {
                    if !cqueue::more(flags) && res != -libc::ECANCELED {
                        rearm_list.push(TAG_POLL | (ud & !TAG_MASK));
                    }
                    ready.push((ud, res, flags));
                }
                TAG_SEND => {
                    let bid = (ud & 0xffff) as u16;
                    self.push_buffer(bid);
                }
                _ => {}
            }
        }
        self.ready = ready;
        for tok in rearm_list {
            if tok & TAG_MASK == TAG_POLL {
                // An eventfd poll that stopped: the worker re-adds it through `rearm`.
                if let Some(fd) = rearm(tok) {
                    self.watch_eventfd(fd, tok & !TAG_MASK);
                }
            } else if let Some(fd) = rearm(tok) {
                self.watch_socket(fd, tok);
            }
        }
    }

    /// The completions of the last [`Uring::turn`], one at a time (a buffer id travels
    /// with each packet and must come back through [`Uring::forward`] or
    /// [`Uring::release`]).
    pub fn next(&mut self, i: usize) -> Option<Completion<'_>> {
        let &(ud, res, flags) = self.ready.get(i)?;
        let token = ud & !TAG_MASK;
        if ud & TAG_MASK == TAG_POLL {
            return Some(Completion::Ready(token));
        }
        // A receive: an error (ENOBUFS when every buffer is in flight) carries no buffer;
        // its multishot ended and `turn` re-arms it. Iteration goes on past it.
        let Some(bid) = cqueue::buffer_select(flags) else {
            return Some(Completion::Ready(u64::MAX));
        };
        if res <= 0 {
            self.release(bid);
            return Some(Completion::Ready(u64::MAX)); // nothing to do
        }
        let start = usize::from(bid) * BUF_SIZE;
        let len = (res as usize).min(BUF_SIZE);
        let (payload_at, payload_len, src) = {
            let buf = &self.bufs[start..start + len];
            let Ok(out) = RecvMsgOut::parse(buf, &self.recv_msg) else {
                self.release(bid);
                return Some(Completion::Ready(u64::MAX));
            };
            let truncated = out.is_payload_truncated();
            let src = crate::epoll::sockaddr_from_bytes(out.name_data());
            let payload = out.payload_data();
            let at = payload.as_ptr() as usize - buf.as_ptr() as usize;
            (at, if truncated { 0 } else { payload.len() }, src)
        };
        let Some(src) = src.filter(|_| payload_len > 0) else {
            self.release(bid);
            return Some(Completion::Ready(u64::MAX));
        };
        let bytes = &mut self.bufs[start + payload_at..start + payload_at + payload_len];
        Some(Completion::Packet { token, bytes, src, bid, offset: payload_at })
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn sockaddrs_round_trip() {
        for a in ["127.0.0.1:4000", "[::1]:5000"] {
            let a: SocketAddr = a.parse().unwrap();
            let (s, n) = crate::epoll::sockaddr(a);
            let n = n as usize;
            // SAFETY: s is n bytes of initialised memory.
            let bytes = unsafe { std::slice::from_raw_parts((&s as *const libc::sockaddr_storage).cast::<u8>(), n) };
            assert_eq!(crate::epoll::sockaddr_from_bytes(bytes), Some(a));
        }
        assert_eq!(crate::epoll::sockaddr_from_bytes(&[0]), None);
    }

    #[test]
    fn a_multishot_receive_delivers_every_datagram_and_forwards_from_the_buffer() {
        // The machines this runs on have io_uring (Linux 6.x, not disabled); a kernel
        // without it fails here on purpose rather than skipping.
        let mut u = Uring::new().expect("io_uring with multishot recvmsg and buffer rings");
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.watch_socket(rx.as_raw_fd(), 5);
        u.turn(None, |_| None);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..100u8 {
            tx.send_to(&[i; 20], rx.local_addr().unwrap()).unwrap();
        }
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < 100 && std::time::Instant::now() < deadline {
            u.turn(Some(Duration::from_millis(50)), |t| (t == 5).then(|| rx.as_raw_fd()));
            let mut i = 0;
            while let Some(c) = u.next(i) {
                i += 1;
                if let Completion::Packet { token, bytes, src, bid, offset } = c {
                    assert_eq!((token, src), (5, tx.local_addr().unwrap()));
                    got.push(bytes[0]);
                    let len = bytes.len();
                    u.forward(bid, offset, len, out.as_raw_fd(), sink.local_addr().unwrap());
                }
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
        u.turn(None, |_| None);
        for i in 0..100u8 {
            let mut b = [0u8; 64];
            let (n, from) = sink.recv_from(&mut b).unwrap();
            assert_eq!((&b[..n], from), (&[i; 20][..], out.local_addr().unwrap()));
        }
    }
}
