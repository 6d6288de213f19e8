//! rtpengine's NG control protocol, so Kamailio, OpenSIPS or any rtpengine client can
//! drive ferroswitch's media plane: [`bencode`] (the encoding).

pub mod bencode;
