//! The contract between ferroswitch's two processes.
//!
//! The control plane programs each media core, and hears back from it, through
//! single-producer/single-consumer rings in shared memory carrying fixed-layout
//! messages. Data flows:
//!
//! ```text
//!  control plane ──Command──▶ ring (per core) ──▶ media core
//!  control plane ◀──Event─── ring (per core) ◀── media core
//! ```
//!
//! - [`msg`]: the 256-byte messages (`#[repr(C)]`, `bytemuck::Pod`).
//! - [`layout`]: the version and layout hash both sides check before attaching.
//! - [`ring`]: the lock-free SPSC ring over a region of shared memory.
//! - [`doorbell`]: eventfd wake-ups, rung only when the other side sleeps.
//! - [`segment`]: the shared mapping (a memfd) holding the header (magic, layout,
//!   heartbeats) and every core's two rings.
//! - [`fdpass`]: handing the memfd and eventfds to the other process over a Unix socket.
#![deny(unsafe_op_in_unsafe_fn)]

/// The traits ring messages implement (re-exported so users of the generic ring need not
/// depend on bytemuck themselves).
pub use bytemuck::{Pod, Zeroable};

pub mod doorbell;
pub mod fdpass;
pub mod layout;
pub mod msg;
pub mod ring;
pub mod segment;
mod sync;
