//! eventfd doorbells: how a producer wakes a consumer that sleeps on an empty ring.
//!
//! A consumer with nothing to do calls [`crate::ring::Consumer::prepare_sleep`], then
//! [`Doorbell::wait`], then [`crate::ring::Consumer::woke`]; a producer that has pushed
//! calls [`crate::ring::Producer::consumer_sleeping`] and, only if it returns true,
//! [`Doorbell::ring`]. While both sides are busy no syscall is made. The eventfd counts
//! rings, so a ring that comes before the sleeper blocks is not lost: `wait` returns at
//! once.
//!
//! The fd is non-blocking and close-on-exec. It crosses to the other process with
//! [`crate::fdpass`] and can be registered with a poller (epoll, io_uring) instead of
//! calling `wait`; then call [`Doorbell::clear`] when it fires.
//!
//! Errors: ringing, clearing and waiting never fail loudly. A broken fd (closed, not an
//! eventfd) makes `ring` do nothing, `clear` return false and `wait` return false at once
//! (so a caller that loops on `wait` keeps running rather than hanging); there is nothing
//! better either side could do mid-loop, and the peer's liveness is watched elsewhere
//! (the segment's heartbeats).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// One eventfd.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> std::io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Doorbell { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Wraps a received eventfd, and makes it non-blocking (the flag is shared with the
    /// other process's copy, which wants it too), so [`Doorbell::clear`] never blocks.
    pub fn from_fd(fd: OwnedFd) -> Doorbell {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; failure (not a valid fd) leaves it as it is,
        // and the calls below then fail harmlessly.
        unsafe {
            let flags = libc::fcntl(raw, libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
                libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Doorbell { fd }
    }

    /// Wakes the sleeper (adds 1). A counter already at its maximum (EAGAIN) means it has
    /// been rung anyway.
    pub fn ring(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Clears pending rings without blocking; returns whether there were any.
    pub fn clear(&self) -> bool {
        let mut count: u64 = 0;
        loop {
            // SAFETY: reads at most 8 bytes into a live u64.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            if n == 8 {
                return count > 0;
            }
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// Sleeps until rung or `timeout` (None: forever); returns whether it was rung, and
    /// clears the rings it consumed. A signal does not cut the sleep short.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        loop {
            let left = match deadline {
                None => None,
                // A timeout too large for an Instant: forever.
                Some(None) => None,
                Some(Some(d)) => Some(d.saturating_duration_since(Instant::now())),
            };
            let ts = left.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: one live pollfd; `ts_ptr` is null or points at a live timespec; no
            // signal mask.
            let n = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
            if n > 0 {
                return pfd.revents & libc::POLLIN != 0 && self.clear();
            }
            if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// The fd (to pass to the other process or register with a poller).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::os::fd::FromRawFd;

    use super::*;

    #[test]
    fn a_ring_before_the_wait_is_not_lost() {
        let bell = Doorbell::new().unwrap();
        bell.ring();
        bell.ring();
        assert!(bell.wait(Some(Duration::from_secs(5))), "rung before waiting: returns at once");
        assert!(!bell.clear(), "the wait consumed both rings");
    }

    #[test]
    fn wait_times_out_unrung_and_clear_does_not_block() {
        let bell = Doorbell::new().unwrap();
        let t = Instant::now();
        assert!(!bell.wait(Some(Duration::from_millis(20))));
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert!(!bell.clear());
        assert!(!bell.wait(Some(Duration::ZERO)));
    }

    #[test]
    fn a_ring_from_another_thread_wakes_a_waiter() {
        let bell = std::sync::Arc::new(Doorbell::new().unwrap());
        let ringer = bell.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            ringer.ring();
        });
        assert!(bell.wait(Some(Duration::from_secs(10))));
        t.join().unwrap();
    }

    #[test]
    fn from_fd_makes_a_blocking_eventfd_non_blocking() {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh fd nothing else owns.
        let bell = Doorbell::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
        assert!(!bell.clear(), "would have blocked forever on a blocking eventfd");
        bell.ring();
        assert!(bell.clear());
    }

    #[test]
    fn a_doorbell_on_a_broken_fd_reports_nothing_and_does_not_hang() {
        // /dev/null: readable at once with 0 bytes, writes vanish. Not an eventfd.
        let bell = Doorbell::from_fd(std::fs::File::open("/dev/null").unwrap().into());
        bell.ring();
        assert!(!bell.clear());
        assert!(!bell.wait(Some(Duration::from_secs(5))));
        assert!(!bell.wait(None), "a forever wait on a broken fd returns too");
    }
}
