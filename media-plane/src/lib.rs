//! The ferroswitch media plane: one pinned worker thread per configured core, each with
//! its own io_uring, sockets, port range and sessions, relaying RTP/RTCP between call
//! legs and transcoding audio when the legs' codecs differ. It is programmed by the
//! control plane through the rings of `ferroswitch-shared` (issues 4 and 5).

pub mod codec;
pub mod epoll;
pub mod handover;
pub mod nexthop;
pub mod pool;
pub mod relay;
pub mod server;
pub mod sessions;
pub mod transcode;
pub mod uring;
pub mod worker;
pub mod xdp;
pub mod xsk;

pub use server::{run, MediaError, MediaOptions, XdpOptions};
