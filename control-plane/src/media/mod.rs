//! The control plane's door to the media plane: the ring protocol's control side
//! ([`link`], sans-IO) and the driver that supervises the media-plane process and moves
//! messages between the link and the shared-memory rings ([`supervisor`]).

pub mod ctl;
pub mod link;
pub mod negotiate;
pub mod rewrite;
pub mod supervisor;

pub use link::{Desired, HeldSession, LinkEvent, LinkStats, MediaLink};
pub use supervisor::{MediaHandle, MediaNotice, MediaState, SpawnSpec, SupervisorOptions};
