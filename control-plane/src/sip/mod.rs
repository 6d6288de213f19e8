//! SIP: messages, transports and transactions (RFC 3261 §7, §17, §18, §25).

pub mod message;
pub mod transaction;
pub mod transport;
