//! File descriptors over a Unix socket (SCM_RIGHTS). STUB.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Sends `data` (at least one byte) with `fds` attached.
pub fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let _ = (sock, data, fds);
    unimplemented!()
}

/// Receives one message into `buf` with up to `max_fds` fds; returns the bytes read (0 at
/// end of stream) and the fds (close-on-exec).
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8], max_fds: usize) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let _ = (sock, buf, max_fds);
    unimplemented!()
}
