//! File descriptors over a Unix socket (SCM_RIGHTS): how the control plane hands the
//! segment's memfd and the doorbells' eventfds to the media plane.
//!
//! The fds travel with the first byte of `data` (the kernel attaches ancillary data to a
//! byte, so at least one byte must go). Received fds are close-on-exec
//! (`MSG_CMSG_CLOEXEC`), so a later `exec` in the receiver does not leak them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// The most fds one message may carry (the kernel's SCM_MAX_FD).
pub const MAX_FDS: usize = 253;

/// A control-message buffer of `CMSG_SPACE(n fds)` bytes, aligned for `cmsghdr`.
fn cmsg_buffer(fds: usize) -> Vec<u64> {
    // SAFETY: CMSG_SPACE only computes a size.
    let bytes = unsafe { libc::CMSG_SPACE((fds * size_of::<RawFd>()) as u32) } as usize;
    vec![0u64; bytes.div_ceil(size_of::<u64>())]
}

fn retry<T: PartialOrd + Default>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let n = f();
        if n >= T::default() {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `data` (at least one byte) with `fds` attached (at most [`MAX_FDS`]).
///
/// The whole of `data` is sent (blocking as the socket does); the fds go with its first
/// bytes.
pub fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if data.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "fds must travel with at least one byte of data"));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("at most {MAX_FDS} fds per message")));
    }
    let mut control = cmsg_buffer(fds.len());
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = (control.len() * size_of::<u64>()) as _;
        // SAFETY: the buffer holds CMSG_SPACE(fds) bytes, aligned for cmsghdr, so the first
        // header and its data (CMSG_LEN(fds) bytes) fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((fds.len() * size_of::<RawFd>()) as u32) as _;
            let dst = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                dst.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` points at live buffers (data, iov, control) for the call.
    let sent = retry(|| unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })? as usize;
    if sent < data.len() {
        // A stream socket may take part of the data; the fds went with the first part.
        let mut rest: &UnixStream = sock;
        io::Write::write_all(&mut rest, &data[sent..])?;
    }
    Ok(())
}

/// Receives one message into `buf` with up to `max_fds` fds; returns the bytes read (0 at
/// end of stream) and the fds (close-on-exec).
///
/// If the sender attached more than `max_fds` fds, the kernel drops (closes) the rest;
/// that is an error (`InvalidData`), and the fds that did arrive are closed too.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8], max_fds: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut control = cmsg_buffer(max_fds);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if max_fds > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = (control.len() * size_of::<u64>()) as _;
    }
    // SAFETY: `msg` points at live buffers (buf, iov, control) for the call.
    let n = retry(|| unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })? as usize;
    let mut fds = Vec::new();
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // `control`; CMSG_FIRSTHDR/NXTHDR stay within them, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / 4 fds that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..payload / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer sent more than {max_fds} fds; the kernel dropped the rest"),
        ));
    }
    Ok((n, fds))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    use super::*;
    use crate::doorbell::Doorbell;

    #[test]
    fn an_eventfd_and_a_memfd_work_on_the_other_side() {
        let (a, b) = UnixStream::pair().unwrap();
        let bell = Doorbell::new().unwrap();
        let mut file = std::fs::File::from(crate::segment::memfd(c"fdpass-test", 0).unwrap());
        file.write_all(b"shared bytes").unwrap();
        send_with_fds(&a, b"hello", &[bell.fd().as_fd(), file.as_fd()]).unwrap();

        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            // SAFETY: fcntl on a live fd.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "received fds are close-on-exec");
        }
        let mut fds = fds.into_iter();
        let their_bell = Doorbell::from_fd(fds.next().unwrap());
        their_bell.ring();
        assert!(bell.wait(Some(std::time::Duration::from_secs(5))), "one eventfd, two fds");

        let mut their_file = std::fs::File::from(fds.next().unwrap());
        let mut s = String::new();
        their_file.rewind().unwrap();
        their_file.read_to_string(&mut s).unwrap();
        assert_eq!(s, "shared bytes");
    }

    #[test]
    fn data_without_fds_and_end_of_stream() {
        let (a, b) = UnixStream::pair().unwrap();
        send_with_fds(&a, b"x", &[]).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv_with_fds(&b, &mut buf, 2).unwrap().0, 1);
        drop(a);
        let (n, fds) = recv_with_fds(&b, &mut buf, 2).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn empty_data_and_too_many_fds_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let bell = Doorbell::new().unwrap();
        let err = send_with_fds(&a, b"", &[bell.fd().as_fd()]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let many = vec![bell.fd().as_fd(); MAX_FDS + 1];
        assert_eq!(send_with_fds(&a, b"x", &many).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn more_fds_than_asked_for_is_an_error_not_a_leak() {
        let (a, b) = UnixStream::pair().unwrap();
        let bell = Doorbell::new().unwrap();
        send_with_fds(&a, b"x", &[bell.fd().as_fd(), bell.fd().as_fd(), bell.fd().as_fd()]).unwrap();
        let mut buf = [0u8; 4];
        let err = recv_with_fds(&b, &mut buf, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
