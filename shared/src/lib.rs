//! The contract between ferroswitch's two processes.
//!
//! The control plane programs each media core, and hears back from it, through
//! single-producer/single-consumer rings in shared memory carrying fixed-layout
//! messages. This crate holds that contract so both binaries compile against one
//! definition; the rings themselves arrive with the planes' contract work (issue 4).
#![forbid(unsafe_op_in_unsafe_fn)]
