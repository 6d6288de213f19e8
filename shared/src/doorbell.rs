//! eventfd doorbells. STUB.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// One eventfd.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new non-blocking eventfd.
    pub fn new() -> std::io::Result<Doorbell> {
        unimplemented!()
    }
    /// Wraps a received eventfd.
    pub fn from_fd(fd: OwnedFd) -> Doorbell {
        Doorbell { fd }
    }
    /// Wakes the sleeper (adds 1).
    pub fn ring(&self) {
        unimplemented!()
    }
    /// Clears pending rings without blocking; returns whether there were any.
    pub fn clear(&self) -> bool {
        unimplemented!()
    }
    /// Sleeps until rung or `timeout` (None: forever); returns whether it was rung.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let _ = timeout;
        unimplemented!()
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
