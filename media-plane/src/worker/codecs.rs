//! A worker's transcoders: ordered from the codec factory when a session's flags need
//! one (or made here without a factory), installed when they come back.

use tracing::warn;

use super::Core;
use crate::relay::session::Relay;
use crate::transcode::factory::Order;
use crate::transcode::TranscodeError;

impl Core {
    /// Applies a session's flags to its relay: with a factory, a transcoder the flags need
    /// is ordered from it (and an old one handed to it to destroy); without, made here.
    pub(super) fn set_flags(&mut self, id: u64, relay: &mut Relay, flags: u32) -> Result<(), TranscodeError> {
        let seed = self.seed(id);
        let Some(factory) = self.factory.as_ref() else {
            return relay.set_session_flags(flags, seed);
        };
        let r = relay.apply_flags(flags)?;
        if let Some(old) = r.old {
            factory.destroy(old);
        }
        if !r.order {
            return Ok(());
        }
        self.tickets += 1;
        let ticket = self.tickets;
        if factory.order(Order { ticket, legs: relay.specs(), params: self.policy.opus, seed }) {
            self.orders.insert(ticket, id);
            relay.set_pending(Some(ticket));
        } else {
            relay.set_session_flags(flags, seed)?;
        }
        Ok(())
    }

    /// Installs the transcoders the factory has made since the last turn (one no longer
    /// wanted goes back to it).
    pub(super) fn install_transcoders(&mut self) {
        let Some(factory) = self.factory.as_ref() else { return };
        while let Some(made) = factory.take() {
            let session = self.orders.remove(&made.ticket);
            let live = session.and_then(|id| self.by_id.get(&id)).and_then(|&slot| self.slots[slot].as_mut());
            match (made.result, live) {
                (Ok(t), Some(live)) => {
                    if let Err(t) = live.relay.install(made.ticket, t) {
                        factory.destroy(t);
                    }
                }
                (Ok(t), None) => factory.destroy(t),
                (Err(e), live) => {
                    warn!(core = self.core, session = ?session, "transcoder not made: {e}");
                    if let Some(live) = live.filter(|l| l.relay.pending() == Some(made.ticket)) {
                        live.relay.set_pending(None);
                    }
                }
            }
        }
    }
}
