//! Client transactions: INVITE (RFC 3261 §17.1.1 with RFC 6026 §8.4) and non-INVITE
//! (§17.1.2). Pure state machines: they take `now` and a message or a fired timer, and
//! push [`Action`]s for the layer to carry out.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timers::{after, Deadlines, Slot, TimerConfig, TIMER_D_UNRELIABLE};
use super::{Action, State};
use crate::sip::message::write::Writer;
use crate::sip::message::{HeaderName, Message, Method};

/// One client transaction.
#[derive(Debug)]
pub(super) struct ClientTx {
    pub(super) state: State,
    pub(super) timers: Deadlines,
    invite: bool,
    reliable: bool,
    /// The request and its bytes as sent, for retransmissions and the ACK of a non-2xx;
    /// dropped once a final response arrives (the transaction may linger for 32 s more,
    /// and the request is most of its memory).
    sent: Option<(Message, Bytes)>,
    /// The current Timer A or E interval.
    interval: Duration,
    /// The ACK for a non-2xx final response, re-sent for each retransmission of it.
    ack: Option<Bytes>,
}

impl ClientTx {
    /// Sends `request` and arms Timer A or E (unreliable transports only) and B or F.
    pub(super) fn start(
        now: Instant,
        request: Message,
        reliable: bool,
        cfg: &TimerConfig,
        out: &mut Vec<Action>,
    ) -> ClientTx {
        let invite = request.method() == Method::Invite;
        let bytes = request.buffer().slice(..request.as_bytes().len());
        let mut tx = ClientTx {
            state: if invite { State::Calling } else { State::Trying },
            timers: Deadlines::default(),
            invite,
            reliable,
            sent: Some((request, bytes.clone())),
            interval: cfg.first_retransmit(),
            ack: None,
        };
        out.push(Action::Transmit(bytes));
        if !reliable {
            tx.timers.set(Slot::Retransmit, after(now, tx.interval));
        }
        tx.timers.set(Slot::Timeout, after(now, cfg.transaction_timeout()));
        tx
    }

    /// A response matched this transaction.
    pub(super) fn on_response(&mut self, now: Instant, msg: Message, cfg: &TimerConfig, out: &mut Vec<Action>) {
        let Some(code) = msg.status() else { return };
        if self.invite {
            self.on_invite_response(now, code, msg, cfg, out);
        } else {
            self.on_non_invite_response(now, code, msg, cfg, out);
        }
    }

    fn on_invite_response(&mut self, now: Instant, code: u16, msg: Message, cfg: &TimerConfig, out: &mut Vec<Action>) {
        let open = matches!(self.state, State::Calling | State::Proceeding);
        match code {
            100..=199 if open => {
                // §17.1.1.2: no more retransmissions, and Timer B only guards Calling.
                self.state = State::Proceeding;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                out.push(Action::Response(msg));
            }
            200..=299 if open || self.state == State::Accepted => {
                if open {
                    // RFC 6026 §8.4: Accepted absorbs nothing; Timer M bounds it.
                    self.state = State::Accepted;
                    self.timers.clear(Slot::Retransmit);
                    self.timers.clear(Slot::Timeout);
                    self.timers.set(Slot::Terminate, after(now, cfg.transaction_timeout()));
                    self.sent = None;
                }
                out.push(Action::Response(msg));
            }
            300..=699 if open => {
                self.state = State::Completed;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                if let Some((request, _)) = self.sent.take() {
                    let ack = build_ack(&request, &msg);
                    out.push(Action::Transmit(ack.clone()));
                    self.ack = Some(ack);
                }
                out.push(Action::Response(msg));
                let d = if self.reliable { Duration::ZERO } else { TIMER_D_UNRELIABLE };
                linger(now, d, &mut self.timers, out);
            }
            300..=699 if self.state == State::Completed => {
                // A retransmission of the final response: ACK it again, do not pass it up.
                if let Some(ack) = &self.ack {
                    out.push(Action::Transmit(ack.clone()));
                }
            }
            // Late provisionals, a 2xx after a non-2xx, or a non-2xx after a 2xx.
            _ => {}
        }
    }

    fn on_non_invite_response(
        &mut self,
        now: Instant,
        code: u16,
        msg: Message,
        cfg: &TimerConfig,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            // Completed: retransmitted responses are absorbed (§17.1.2.2).
            return;
        }
        match code {
            100..=199 => {
                // Timer E keeps its deadline; when it fires in Proceeding it uses T2.
                self.state = State::Proceeding;
                out.push(Action::Response(msg));
            }
            200..=699 => {
                self.state = State::Completed;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                self.sent = None;
                out.push(Action::Response(msg));
                let k = if self.reliable { Duration::ZERO } else { cfg.t4 };
                linger(now, k, &mut self.timers, out);
            }
            _ => {}
        }
    }

    /// The timer in `slot` fired (the layer has already cleared it).
    pub(super) fn on_timer(&mut self, now: Instant, slot: Slot, cfg: &TimerConfig, out: &mut Vec<Action>) {
        match slot {
            Slot::Retransmit => {
                let next = match self.state {
                    // Timer A: doubles without a cap (§17.1.1.2).
                    State::Calling => cfg.doubled(self.interval),
                    // Timer E: doubles up to T2 (§17.1.2.2).
                    State::Trying => cfg.doubled_capped(self.interval),
                    // Timer E in Proceeding: every T2.
                    State::Proceeding if !self.invite => cfg.proceeding_retransmit(),
                    _ => return,
                };
                let Some((_, bytes)) = &self.sent else { return };
                out.push(Action::Transmit(bytes.clone()));
                self.interval = next;
                self.timers.set(Slot::Retransmit, after(now, next));
            }
            Slot::Timeout => {
                // Timer B (Calling) or F (Trying, Proceeding).
                if matches!(self.state, State::Calling | State::Trying | State::Proceeding) {
                    out.push(Action::Timeout);
                    out.push(Action::Terminate);
                }
            }
            // Timer D, K or M.
            Slot::Terminate => out.push(Action::Terminate),
        }
    }
}

/// Arms the Terminate slot for `d`, or terminates at once when `d` is zero (the reliable
/// transport case of Timers D, I, J and K).
pub(super) fn linger(now: Instant, d: Duration, timers: &mut Deadlines, out: &mut Vec<Action>) {
    if d.is_zero() {
        out.push(Action::Terminate);
    } else {
        timers.set(Slot::Terminate, after(now, d));
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): the request's Request-URI, top Via,
/// Route set, From, Call-ID and CSeq number; the response's To; Max-Forwards 70; no body.
fn build_ack(request: &Message, response: &Message) -> Bytes {
    let mut out = Vec::with_capacity(request.as_bytes().len().min(1024));
    let mut w = Writer::request(&mut out, b"ACK", request.request_uri_bytes());
    w.header("Via", request.top_via_bytes());
    w.header("Max-Forwards", "70");
    for route in request.values(HeaderName::Route) {
        w.header("Route", route);
    }
    w.header("From", request.header(HeaderName::From).unwrap_or_default());
    w.header("To", response.header(HeaderName::To).unwrap_or_default());
    w.header("Call-ID", request.call_id());
    w.header_fmt("CSeq", format_args!("{} ACK", request.cseq()));
    w.finish(b"");
    Bytes::from(out)
}
