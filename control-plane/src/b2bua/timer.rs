//! Call timers: each call has at most one running, typed by what it is for ([`CallTimer`]);
//! the router keeps them in time order ([`Timers`]) and hands each due one to its call.

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::info;

use super::call::{Call, Cx, Phase};
use super::channel::HangupCause;
use super::CallId;

/// What a call's timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallTimer {
    /// `bridge`'s `call_timeout` (or an originate's timeout): nobody answered in time.
    NoAnswer,
    /// The `sleep` application ends.
    Sleep,
}

/// Every running call timer, in time order.
#[derive(Default)]
pub(super) struct Timers(BTreeSet<(Instant, CallId)>);

impl Timers {
    /// When the next one is due.
    pub fn next(&self) -> Option<Instant> {
        self.0.first().map(|(t, _)| *t)
    }

    /// The next timer due by `now`, taken out.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, CallId)> {
        let &(at, id) = self.0.first()?;
        (at <= now).then(|| {
            self.0.remove(&(at, id));
            (at, id)
        })
    }

    pub fn remove(&mut self, at: Instant, id: CallId) {
        self.0.remove(&(at, id));
    }

    fn insert(&mut self, at: Instant, id: CallId) {
        self.0.insert((at, id));
    }
}

impl Call {
    /// Starts the call's timer for `what` at `at`, in place of any other.
    pub fn arm(&mut self, cx: &mut Cx<'_, '_>, at: Instant, what: CallTimer) {
        self.disarm(cx);
        self.timer = Some((at, what));
        cx.routes.timers.insert(at, cx.id);
    }

    pub fn disarm(&mut self, cx: &mut Cx<'_, '_>) {
        if let Some((at, _)) = self.timer.take() {
            cx.routes.timers.remove(at, cx.id);
        }
    }

    /// The router's timer for this call at `at` is due (one that was replaced is ignored).
    pub fn on_timer(&mut self, cx: &mut Cx<'_, '_>, at: Instant) {
        let Some((_, what)) = self.timer.filter(|(t, _)| *t == at) else { return };
        self.timer = None;
        match (what, self.phase) {
            (CallTimer::NoAnswer, Phase::Bridging) => {
                // call_timeout: nobody answered. FreeSWITCH's NO_ANSWER; the caller gets
                // 408 as a request that timed out.
                info!(call = %self.uuid, "no answer before call_timeout");
                self.last_failure = Some((HangupCause::NO_USER_RESPONSE, None));
                self.cancel_forks(cx, HangupCause::NO_USER_RESPONSE);
                self.next_group_or_continue(cx);
            }
            (CallTimer::NoAnswer, Phase::Dialing) => {
                info!(call = %self.uuid, "the originated leg did not answer in time");
                self.hangup_a(cx, HangupCause::NO_ANSWER, None);
            }
            (CallTimer::Sleep, Phase::Sleeping) => {
                self.phase = Phase::Executing;
                self.run(cx);
            }
            _ => {}
        }
    }
}
