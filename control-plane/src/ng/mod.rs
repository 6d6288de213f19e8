//! rtpengine's NG control protocol, so Kamailio, OpenSIPS or any rtpengine client can
//! drive ferroswitch's media plane: [`bencode`] (the encoding), [`command`] (requests and
//! answers, sans-IO) and [`server`] (the UDP listener, through the media supervisor).

pub mod bencode;
pub mod command;
pub mod server;
