//! Server transactions: INVITE (RFC 3261 §17.2.1 with RFC 6026 §8.7) and non-INVITE
//! (§17.2.2). Pure state machines like the client side: input and `now` in, [`Action`]s out.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::linger;
use super::timers::{after, Deadlines, Slot, TimerConfig};
use super::{Action, State, TransactionError, TxId};

/// What became of an ACK that matched an INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// The ACK for a non-2xx (or a duplicate of it): the transaction keeps it.
    Absorbed,
    /// The ACK for a 2xx: it belongs to the TU.
    PassUp,
}

/// One server transaction.
#[derive(Debug)]
pub(super) struct ServerTx {
    pub(super) state: State,
    pub(super) timers: Deadlines,
    pub(super) invite: bool,
    reliable: bool,
    /// The last response sent, re-sent for retransmitted requests and by Timer G.
    last: Option<Bytes>,
    /// The current Timer G or 2xx retransmission interval.
    interval: Duration,
    /// Accepted: the ACK for the 2xx has arrived.
    acked: bool,
    /// The To tag of the final response, which an RFC 2543 ACK must carry (§17.2.3).
    pub(super) response_to_tag: Option<Vec<u8>>,
}

impl ServerTx {
    /// Whether any response was sent.
    pub(super) fn answered(&self) -> bool {
        self.last.is_some()
    }

    /// A transaction for a new request: INVITE starts in Proceeding (the layer sends the
    /// 100 through [`ServerTx::respond`]), non-INVITE in Trying.
    pub(super) fn new(invite: bool, reliable: bool, cfg: &TimerConfig) -> ServerTx {
        ServerTx {
            state: if invite { State::Proceeding } else { State::Trying },
            timers: Deadlines::default(),
            invite,
            reliable,
            last: None,
            interval: cfg.first_retransmit(),
            acked: false,
            response_to_tag: None,
        }
    }

    /// The request was retransmitted: re-send the last provisional or final response
    /// (§17.2.1, §17.2.2); Trying, Confirmed and Accepted absorb it.
    pub(super) fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if matches!(self.state, State::Proceeding | State::Completed) {
            if let Some(last) = &self.last {
                out.push(Action::Transmit(last.clone()));
            }
        }
    }

    /// In RFC 6026's Accepted state (a 2xx sent).
    pub(super) fn is_accepted(&self) -> bool {
        self.state == State::Accepted
    }

    /// An ACK matched this INVITE transaction.
    pub(super) fn on_ack(&mut self, now: Instant, cfg: &TimerConfig, out: &mut Vec<Action>) -> AckOutcome {
        match self.state {
            State::Completed => {
                // §17.2.1: stop G and H; Timer I absorbs further ACKs.
                self.state = State::Confirmed;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                // Nothing is re-sent from here on: the response's memory goes now.
                self.last = None;
                let i = if self.reliable { Duration::ZERO } else { cfg.t4 };
                linger(now, i, &mut self.timers, out);
                AckOutcome::Absorbed
            }
            State::Accepted => {
                // RFC 6026 §8.7: the 2xx is acknowledged; stop retransmitting it. The
                // transaction stays until Timer L to absorb retransmitted INVITEs.
                self.acked = true;
                self.timers.clear(Slot::Retransmit);
                // Nothing is re-sent from here on (Timer L only absorbs): drop the 2xx.
                self.last = None;
                AckOutcome::PassUp
            }
            _ => AckOutcome::Absorbed,
        }
    }

    /// The TU (or the layer itself, for 100 and 482) sends a response.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        tx: TxId,
        code: u16,
        bytes: Bytes,
        cfg: &TimerConfig,
        out: &mut Vec<Action>,
    ) -> Result<(), TransactionError> {
        let open = matches!(self.state, State::Trying | State::Proceeding);
        match code {
            100..=199 if open => {
                self.state = State::Proceeding;
            }
            200..=299 if self.invite && (open || self.state == State::Accepted) => {
                if open {
                    // RFC 6026 §8.7: Accepted; retransmit the 2xx until its ACK, Timer L.
                    self.state = State::Accepted;
                    self.interval = cfg.first_retransmit();
                    self.timers.set(Slot::Retransmit, after(now, self.interval));
                    self.timers.set(Slot::Timeout, after(now, cfg.transaction_timeout()));
                }
                // In Accepted a further 2xx replaces the one being retransmitted.
            }
            200..=699 if open && self.invite => {
                // §17.2.1: Completed; Timer G on unreliable transports, Timer H always.
                self.state = State::Completed;
                self.interval = cfg.first_retransmit();
                if !self.reliable {
                    self.timers.set(Slot::Retransmit, after(now, self.interval));
                }
                self.timers.set(Slot::Timeout, after(now, cfg.transaction_timeout()));
            }
            200..=699 if open => {
                // §17.2.2: Completed; Timer J.
                self.state = State::Completed;
                out.push(Action::Transmit(bytes.clone()));
                self.last = Some(bytes);
                let j = if self.reliable { Duration::ZERO } else { cfg.transaction_timeout() };
                linger(now, j, &mut self.timers, out);
                return Ok(());
            }
            _ => return Err(TransactionError::FinalAlreadySent { tx, state: self.state }),
        }
        out.push(Action::Transmit(bytes.clone()));
        self.last = Some(bytes);
        Ok(())
    }

    /// The timer in `slot` fired (the layer has already cleared it).
    pub(super) fn on_timer(&mut self, now: Instant, slot: Slot, cfg: &TimerConfig, out: &mut Vec<Action>) {
        match slot {
            Slot::Retransmit => {
                // Timer G in Completed, the 2xx retransmission in Accepted until the ACK.
                let due = self.state == State::Completed || (self.state == State::Accepted && !self.acked);
                if !due {
                    return;
                }
                if let Some(last) = &self.last {
                    out.push(Action::Transmit(last.clone()));
                }
                self.interval = cfg.doubled_capped(self.interval);
                self.timers.set(Slot::Retransmit, after(now, self.interval));
            }
            Slot::Timeout => match self.state {
                // Timer H: no ACK for the non-2xx.
                State::Completed => {
                    out.push(Action::Timeout);
                    out.push(Action::Terminate);
                }
                // Timer L: a timeout only if the 2xx was never acknowledged.
                State::Accepted => {
                    if !self.acked {
                        out.push(Action::Timeout);
                    }
                    out.push(Action::Terminate);
                }
                _ => {}
            },
            // Timer I or J.
            Slot::Terminate => out.push(Action::Terminate),
        }
    }
}
