//! rtpengine's NG control protocol, so Kamailio, OpenSIPS or any rtpengine client can
//! drive ferroswitch's media plane: [`bencode`] (the encoding), [`command`] (requests and
//! answers, sans-IO), [`codecs`] (codec flags and transcoding decisions, sans-IO), [`core`] (the protocol's state: ordering, retransmissions, timeouts,
//! per-source limits, sans-IO), [`jobs`] (the requests run against the media plane) and
//! [`server`] (the UDP listener that drives them).

pub mod bencode;
pub mod codecs;
pub mod command;
pub mod core;
pub mod jobs;
pub mod server;
