//! The relay's per-packet logic, sans-IO: RTP/RTCP headers ([`rtp`]) and receive
//! statistics ([`stats`]). The worker's I/O backends (io_uring, epoll) feed packets in
//! and send what comes out.

pub mod rtp;
pub mod session;
pub mod stats;
