//! The ferroswitch control plane.
//!
//! Data flows bottom-up: [`sip::transport`] turns datagrams and stream bytes into
//! parsed [`sip::message::Message`]s, the sans-IO [`sip::transaction`] layer matches
//! them to transactions and runs the RFC 3261 timers, and [`switch`] (the
//! transaction user: answers, challenges, later the B2BUA) decides what to send.
//! [`server`] is the tokio driver that moves bytes and time in and out of those cores.
//! [`config`] reads and validates the TOML configuration. [`netsim`] is the seeded,
//! simulated network that tests drive those cores over, with loss and reordering.

/// A hash map with foldhash's seeded "quality" hasher. Keys on the SIP path (branches,
/// Call-IDs, tags, user names) come from the network, so the hasher is seeded at random
/// per process; SipHash's extra cost bought nothing on top (it was 8% of the SIP thread).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

pub mod auth;
pub mod b2bua;
pub mod cli;
pub mod config;
pub mod dialplan;
pub mod esl;
pub mod ids;
pub mod management;
pub mod media;
pub mod nat;
pub mod netsim;
pub mod ng;
pub mod notify;
pub mod registrar;
pub mod sdp;
pub mod server;
pub mod sip;
pub mod storage;
pub mod switch;

/// The Server / User-Agent header value.
pub const SERVER_NAME: &str = concat!("ferroswitch/", env!("CARGO_PKG_VERSION"));
