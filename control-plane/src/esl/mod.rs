//! FreeSWITCH's event socket (mod_event_socket, "ESL"), inbound mode: clients connect to
//! `esl.listen`, authenticate, run API commands and subscribe to events, and existing
//! ESL clients work unchanged.
//!
//! Sans-IO at its core: [`frame`] cuts a connection's bytes into commands, [`session`]
//! answers them, [`door`] keeps strangers from filling the socket or guessing its password.

pub mod door;
pub mod event;
pub mod frame;
pub mod log;
pub mod outbound;
pub mod server;
pub mod session;
