//! One call: its A-leg and B-legs, its phase, and the steps every part of it ends with:
//! answering the caller, provisional responses, hanging up a leg, and the last step, when
//! every leg is down (the A-leg's CDR, the call marked finished for the router to forget).
//!
//! A call's methods take the call itself and a [`Cx`]: the clock and the switch's parts
//! ([`Io`]) and the router's indexes ([`Routes`]), so the call is looked up once per input,
//! by the router.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{info, warn};

use super::channel::{Channel, ChannelState, HangupCause};
use super::dialog::Dialog;
use super::media::CallMedia;
use super::messages::{build_to_a, cancel_of, send_bye};
use super::originate::{Origin, Originated};
use super::routes::{Relay, Routes};
use super::rows::{cdr_row, channel_row};
use super::timer::CallTimer;
use super::{CallId, Io};
use crate::dialplan::{AppCall, Endpoint, Variables};
use crate::sip::message::Message;
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;
use crate::storage::{Direction as RowDirection, Write};

/// What a call's methods work with besides the call: the input's clock and the switch's
/// parts, the router's indexes and queues, and the call's own id in them.
pub(super) struct Cx<'c, 'io> {
    pub io: &'c mut Io<'io>,
    pub routes: &'c mut Routes,
    pub id: CallId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    A,
    B(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fork {
    Trying,
    Ringing,
    Answered,
    Failed,
    Cancelled,
}

/// The INVITE that set a leg up, and its transaction. Everything that uses them belongs
/// to call set-up: answering or rejecting the caller, the B-leg's offer, CANCEL, the
/// dialog made from a callee's 2xx. A leg recovered after a restart ([`super::recovery`])
/// has none: it is past set-up, and its transaction died with the old process (the old
/// `TxId` could even name an unrelated transaction of the new one).
pub(super) struct Setup {
    pub invite: Message,
    pub tx: TxId,
}

pub(super) struct ALeg {
    pub channel: Channel,
    /// The caller's INVITE (None: recovered, or dialled by the switch).
    pub setup: Option<Setup>,
    /// The INVITE the switch sent when it dialled this leg itself (`originate`).
    pub dialed: Option<Setup>,
    pub peer: Peer,
    pub to_tag: String,
    pub dialog: Option<Dialog>,
    pub answered: bool,
    pub final_sent: bool,
    pub ringing_sent: bool,
}

pub(super) struct BLeg {
    pub channel: Channel,
    pub setup: Option<Setup>,
    /// Where the INVITE went: the callee's registration source, so NAT works.
    pub peer: Peer,
    pub dialog: Option<Dialog>,
    pub state: Fork,
    /// Why the switch cancelled it, if it did.
    pub cancel_cause: Option<HangupCause>,
    pub status: Option<u16>,
    pub started_unix: u64,
    pub answered_unix: Option<u64>,
    pub destination: String,
    /// The leg's own variables (its caller ID, destination and context).
    pub vars: Variables,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Running applications.
    Executing,
    /// `bridge` is ringing B-legs.
    Bridging,
    /// A B-leg answered; media flows between the legs.
    Bridged,
    /// `sleep` until the timer.
    Sleeping,
    /// Answered and parked in an application (echo) until someone hangs up.
    Parked,
    /// The switch dials the first leg itself (`originate`) and waits for its answer.
    Dialing,
    /// Tearing down.
    Ending,
}

pub(super) struct Call {
    pub uuid: String,
    pub a: ALeg,
    pub forks: Vec<BLeg>,
    pub answered: Option<usize>,
    /// The applications still to run, each with the Application-UUID its events carry
    /// when one was given (a `sendmsg`'s Event-UUID).
    pub apps: VecDeque<(AppCall, Option<String>)>,
    pub vars: Variables,
    pub phase: Phase,
    /// The one timer the call has running, and what it is for.
    pub timer: Option<(Instant, CallTimer)>,
    pub groups: VecDeque<Vec<Endpoint>>,
    pub last_failure: Option<(HangupCause, Option<u16>)>,
    pub created_unix: u64,
    pub answered_unix: Option<u64>,
    /// The call's media sessions (None: no media plane, `bypass_media`, or not yet asked).
    pub media: Option<CallMedia>,
    /// Which `bridge` group is ringing (counts up), and its host names still resolving.
    pub group: u32,
    pub pending_resolutions: u32,
    /// A re-offer waiting for sessions for the streams it adds.
    pub reoffer: Option<Relay>,
    /// The application running on the A-leg (name, data, Application-UUID), until its
    /// CHANNEL_EXECUTE_COMPLETE.
    pub executing: Option<(String, String, String)>,
    /// Every leg is down and the rows are written: the router forgets the call.
    pub finished: bool,
    /// A call the switch originated: what its first leg does once answered, and the API
    /// waiting for it.
    pub origin: Option<Origin>,
}

impl Call {
    /// A call whose A-leg is `a`, with nothing else yet.
    pub fn new(uuid: String, a: ALeg, vars: Variables, created_unix: u64) -> Call {
        Call {
            uuid,
            a,
            forks: Vec::new(),
            answered: None,
            apps: VecDeque::new(),
            vars,
            phase: Phase::Executing,
            timer: None,
            groups: VecDeque::new(),
            last_failure: None,
            created_unix,
            answered_unix: None,
            media: None,
            group: 0,
            pending_resolutions: 0,
            reoffer: None,
            executing: None,
            finished: false,
            origin: None,
        }
    }

    /// The dialog of leg `side`, with its channel uuid and direction (for its row).
    pub fn leg_dialog(&mut self, side: Side) -> Option<(&mut Dialog, &str, RowDirection)> {
        match side {
            Side::A => self.a.dialog.as_mut().map(|d| (d, self.a.channel.uuid.as_str(), RowDirection::Inbound)),
            Side::B(i) => {
                let fork = self.forks.get_mut(i)?;
                fork.dialog.as_mut().map(|d| (d, fork.channel.uuid.as_str(), RowDirection::Outbound))
            }
        }
    }

    /// The bridged leg on the other side of `side`, if the call is bridged.
    pub fn other_side(&self, side: Side) -> Option<Side> {
        match (side, self.answered) {
            (Side::A, Some(i)) => Some(Side::B(i)),
            (Side::B(_), Some(_)) => Some(Side::A),
            _ => None,
        }
    }

    /// A new A-leg's first row.
    pub fn write_a_row(&self, io: &mut Io<'_>) {
        io.writes.push_back(Write::UpsertChannel(channel_row(&self.a.channel, &self.vars, io.unix, None)));
    }

    /// Moves the A-leg to `state`, and its row.
    pub fn set_a_state(&mut self, cx: &mut Cx<'_, '_>, state: ChannelState) {
        self.leg_state(cx, Side::A, state);
        cx.io.writes.push_back(Write::SetChannelState { uuid: self.uuid.clone(), state: state.to_string() });
    }

    /// A provisional response to the caller (once per code).
    pub fn provisional_a(&mut self, cx: &mut Cx<'_, '_>, code: u16, sdp: Option<Vec<u8>>) {
        let a = &mut self.a;
        if a.final_sent || (code == 180 && a.ringing_sent && sdp.is_none()) {
            return;
        }
        let Some(setup) = &a.setup else { return };
        a.ringing_sent = true;
        let bytes = build_to_a(&setup.invite, code, &a.to_tag, a.peer, sdp.as_deref());
        if let Err(e) = cx.io.tx.respond(cx.io.now, setup.tx, code, bytes) {
            warn!(call = %self.uuid, error = %e, "could not send provisional response");
            return;
        }
        self.leg_progress(cx, Side::A, sdp.is_some());
    }

    /// Answers the caller: 200 with `sdp`, or the caller's own offer when none is given.
    pub fn answer_a(&mut self, cx: &mut Cx<'_, '_>, sdp: Option<Vec<u8>>) {
        let a = &mut self.a;
        if a.answered || a.final_sent {
            return;
        }
        let Some(setup) = &a.setup else { return };
        let sdp = sdp.unwrap_or_else(|| setup.invite.body().to_vec());
        let bytes = build_to_a(&setup.invite, 200, &a.to_tag, a.peer, Some(&sdp));
        if let Err(e) = cx.io.tx.respond(cx.io.now, setup.tx, 200, bytes) {
            warn!(call = %self.uuid, error = %e, "could not answer");
            return;
        }
        let dialog = Dialog::uas(&setup.invite, &a.to_tag, a.peer);
        info!(call = %self.uuid, "answered");
        self.a_answered(cx, dialog, RowDirection::Inbound);
        self.leg_answered(cx, Side::A);
    }

    /// The A-leg is answered over `dialog` (the caller's, or the one the switch dialled):
    /// its row, its dialog indexed, and the answer time observed.
    pub fn a_answered(&mut self, cx: &mut Cx<'_, '_>, dialog: Dialog, direction: RowDirection) {
        let a = &mut self.a;
        a.answered = true;
        a.final_sent = true;
        self.answered_unix = Some(cx.io.unix);
        cx.io
            .writes
            .push_back(Write::SetChannelAnswered { uuid: a.channel.uuid.clone(), answered_at: cx.io.unix as i64 });
        cx.routes.track_dialog(cx.io, &dialog, cx.id, Side::A, &a.channel.uuid, direction);
        a.dialog = Some(dialog);
        self.observe_answer(cx);
    }

    /// The call's answer, for `ferroswitch_call_answer_seconds`.
    fn observe_answer(&self, cx: &mut Cx<'_, '_>) {
        let secs = cx.io.unix_us.saturating_sub(self.a.channel.times.created) as f64 / 1e6;
        cx.routes.answer_seconds.observe(&crate::management::histogram::ANSWER_SECONDS, secs);
    }

    /// Ends the A-leg with `cause`: a final response if unanswered, else a BYE; then the
    /// bridged B-leg too, and the call.
    pub fn hangup_a(&mut self, cx: &mut Cx<'_, '_>, cause: HangupCause, status: Option<u16>) {
        if !self.a.channel.is_up() {
            return;
        }
        self.phase = Phase::Ending;
        if let Some(job) = self.origin.as_mut().and_then(|o| o.job.take()) {
            cx.routes.originated.push_back(Originated { job, result: Err(cause) });
        }
        if !self.a.final_sent {
            if let Some(setup) = &self.a.setup {
                let code = status.filter(|s| *s >= 300).unwrap_or_else(|| cause.to_sip());
                let bytes = build_to_a(&setup.invite, code, &self.a.to_tag, self.a.peer, None);
                if let Err(e) = cx.io.tx.respond(cx.io.now, setup.tx, code, bytes) {
                    warn!(call = %self.uuid, error = %e, "could not send the final response");
                }
            }
            // The switch gives up on a leg it dialled that is still ringing.
            if let Some(cancel) = self.a.dialed.as_ref().and_then(|s| cancel_of(&s.invite)) {
                if let Err(e) = cx.io.tx.request(cx.io.now, cancel, self.a.peer) {
                    warn!(call = %self.uuid, error = %e, "could not send CANCEL");
                }
            }
            self.a.final_sent = true;
        } else if let Some(d) = self.a.dialog.as_mut() {
            send_bye(cx.io, d);
        }
        self.leg_hangup(cx, Side::A, cause);
        self.cancel_forks(cx, cause);
        if let Some(i) = self.answered {
            if self.forks[i].channel.is_up() {
                if let Some(d) = self.forks[i].dialog.as_mut() {
                    send_bye(cx.io, d);
                }
                self.end_fork(cx, i, cause);
            }
        }
        self.maybe_finish(cx);
    }

    /// The caller is gone (its BYE was answered): end the other leg and the call.
    pub fn hangup_a_quietly(&mut self, cx: &mut Cx<'_, '_>, cause: HangupCause) {
        self.a.final_sent = true;
        self.a.dialog = None;
        self.hangup_a(cx, cause, None);
    }

    /// A B-leg reaches CS_HANGUP → CS_REPORTING (CDR) → CS_DESTROY.
    pub fn end_fork(&mut self, cx: &mut Cx<'_, '_>, i: usize, cause: HangupCause) {
        if !self.leg_hangup(cx, Side::B(i), cause) {
            return;
        }
        self.leg_finish(cx, Side::B(i));
        if self.answered == Some(i) {
            self.unbridged(cx, i);
            self.complete_application(cx);
        }
        let fork = &mut self.forks[i];
        if let Some(d) = &fork.dialog {
            cx.routes.untrack_dialog(cx.io, &d.key());
        }
        let cdr = cdr_row(
            &fork.channel,
            &self.uuid,
            &self.vars,
            &fork.destination,
            (fork.started_unix, fork.answered_unix, cx.io.unix),
            fork.channel.cause.unwrap_or(cause),
            fork.status,
        );
        cx.io.writes.push_back(Write::InsertCdr(cdr));
        cx.io.writes.push_back(Write::DeleteChannel { uuid: fork.channel.uuid.clone() });
    }

    /// When the A-leg and every B-leg are down, the A-leg reports and is destroyed, and
    /// the call is finished (the router then forgets it: [`Routes::forget`]).
    fn maybe_finish(&mut self, cx: &mut Cx<'_, '_>) {
        if self.a.channel.is_up() || self.forks.iter().any(|f| f.channel.is_up() && f.state != Fork::Cancelled) {
            return;
        }
        // B-legs still waiting for their 487 end now, with the reason they were cancelled.
        let cancelled: Vec<(usize, HangupCause)> = self
            .forks
            .iter()
            .enumerate()
            .filter(|(_, f)| f.channel.is_up())
            .map(|(i, f)| (i, f.cancel_cause.unwrap_or(HangupCause::ORIGINATOR_CANCEL)))
            .collect();
        for (i, cause) in cancelled {
            self.end_fork(cx, i, cause);
        }
        self.complete_application(cx);
        self.leg_finish(cx, Side::A);
        let cause = self.a.channel.cause.unwrap_or(HangupCause::NORMAL_CLEARING);
        let destination = self.vars.get("destination_number").unwrap_or_default().to_string();
        let cdr = cdr_row(
            &self.a.channel,
            &self.uuid,
            &self.vars,
            &destination,
            (self.created_unix, self.answered_unix, cx.io.unix),
            cause,
            None,
        );
        cx.io.writes.push_back(Write::InsertCdr(cdr));
        cx.io.writes.push_back(Write::DeleteChannel { uuid: self.a.channel.uuid.clone() });
        cx.io.writes.push_back(Write::DeleteCall { uuid: self.uuid.clone() });
        info!(call = %self.uuid, %cause, "call ended");
        self.finished = true;
    }
}
