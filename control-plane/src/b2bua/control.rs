//! The calls driven from outside (the event socket's API): listing the channels, killing
//! a channel's call, reading and setting a channel's variables.

use super::call::Side;
use super::channel::HangupCause;
use super::events::ChannelInfo;
use super::{B2bua, CallId, Io};

/// A live channel as `show channels` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub info: ChannelInfo,
    /// The application running on it, with its data.
    pub application: Option<(String, String)>,
}

impl B2bua {
    /// Every live channel (each call's A-leg, then its B-legs), oldest call first.
    pub fn channels(&self) -> Vec<Listing> {
        let mut ids: Vec<&CallId> = self.calls.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let call = &self.calls[id];
            let app = call.executing.as_ref().map(|(a, d, _)| (a.clone(), d.clone()));
            if call.a.channel.is_up() {
                out.push(Listing { info: call.info(Side::A), application: app });
            }
            for (i, f) in call.forks.iter().enumerate() {
                if f.channel.is_up() {
                    out.push(Listing { info: call.info(Side::B(i)), application: None });
                }
            }
        }
        out
    }

    /// The call one of whose legs is `uuid`, and which leg.
    fn find(&self, uuid: &str) -> Option<(CallId, Side)> {
        self.calls.iter().find_map(|(id, c)| {
            if c.a.channel.uuid == uuid {
                return Some((*id, Side::A));
            }
            c.forks.iter().position(|f| f.channel.uuid == uuid).map(|i| (*id, Side::B(i)))
        })
    }

    /// Live channels (each call's legs still up).
    pub fn live_channels(&self) -> usize {
        self.calls
            .values()
            .map(|c| usize::from(c.a.channel.is_up()) + c.forks.iter().filter(|f| f.channel.is_up()).count())
            .sum()
    }

    /// The next outbound connection to make (`socket`): (the application server, the channel).
    pub fn poll_socket(&mut self) -> Option<(String, String)> {
        self.routes.socket_out.pop_front()
    }

    /// The `socket` application's connection for channel `uuid` ended: the call goes on
    /// with its next application (if it is still up and parked in it).
    pub fn socket_done(&mut self, io: &mut Io<'_>, uuid: &str) {
        let Some((id, _)) = self.find(uuid) else { return };
        self.with_call(io, id, |call, cx| {
            if call.phase == super::call::Phase::Parked && call.a.channel.is_up() {
                call.phase = super::call::Phase::Executing;
                call.run(cx);
            }
        });
    }

    /// `uuid_transfer`: the caller's leg of `uuid`'s call is sent to `dest` in `context`
    /// (its current one when None) and the dialplan hunted again; a bridged callee is hung
    /// up first. Err: no such channel, or a B-leg.
    pub fn transfer(&mut self, io: &mut Io<'_>, uuid: &str, dest: &str, context: Option<&str>) -> Result<(), String> {
        let (id, side) = self.find(uuid).ok_or("No such channel!")?;
        if side != Side::A {
            return Err("only the caller's leg can be transferred".into());
        }
        self.with_call(io, id, |call, cx| {
            if let Some(i) = call.answered.filter(|&i| call.forks[i].channel.is_up()) {
                if let Some(d) = call.forks[i].dialog.as_mut() {
                    super::messages::send_bye(cx.io, d);
                }
                call.end_fork(cx, i, HangupCause::NORMAL_CLEARING);
                call.answered = None;
            }
            call.disarm(cx);
            call.vars.set("destination_number", dest.to_string());
            if let Some(c) = context {
                call.vars.set("context", c.to_string());
            }
            call.apps.clear();
            call.phase = super::call::Phase::Executing;
            call.route(cx);
        });
        Ok(())
    }

    /// `uuid_break`: what the caller's leg waits in (`sleep`, `park`, `echo`) ends, and
    /// the dialplan goes on. False: no such channel.
    pub fn break_wait(&mut self, io: &mut Io<'_>, uuid: &str) -> bool {
        let Some((id, _)) = self.find(uuid) else { return false };
        self.with_call(io, id, |call, cx| {
            use super::call::Phase;
            if matches!(call.phase, Phase::Sleeping | Phase::Parked) && call.a.channel.is_up() {
                call.disarm(cx);
                call.phase = Phase::Executing;
                call.run(cx);
            }
        });
        true
    }

    /// Channels made since start.
    pub fn channels_created(&self) -> u64 {
        self.routes.channels_created
    }

    /// Channel `uuid` as events show it.
    pub fn channel_info(&self, uuid: &str) -> Option<ChannelInfo> {
        let (id, side) = self.find(uuid)?;
        Some(self.calls[&id].info(side))
    }

    /// Whether a live channel is `uuid`.
    pub fn exists(&self, uuid: &str) -> bool {
        self.find(uuid).is_some()
    }

    /// Hangs up the call channel `uuid` belongs to, with `cause` (false: no such channel).
    pub fn kill(&mut self, io: &mut Io<'_>, uuid: &str, cause: HangupCause) -> bool {
        let Some((id, _)) = self.find(uuid) else { return false };
        self.with_call(io, id, |call, cx| call.hangup_a(cx, cause, None));
        true
    }

    /// Hangs up every call with `cause`; how many.
    pub fn hangup_all(&mut self, io: &mut Io<'_>, cause: HangupCause) -> usize {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for &id in &ids {
            self.with_call(io, id, |call, cx| call.hangup_a(cx, cause, None));
        }
        ids.len()
    }

    /// Queues application `app` with `data` (`loops` times) on the A-leg of `uuid`'s
    /// call, its events carrying `app_uuid` (a `sendmsg` execute): a parked call runs it
    /// at once and parks again after; otherwise it runs after what runs now. False: no
    /// such channel.
    pub fn execute(
        &mut self,
        io: &mut Io<'_>,
        uuid: &str,
        (app, data): (&str, &str),
        loops: usize,
        app_uuid: Option<String>,
    ) -> bool {
        let Some((id, _)) = self.find(uuid) else { return false };
        self.with_call(io, id, |call, cx| {
            let parked = call.phase == super::call::Phase::Parked;
            let mut queued: Vec<_> =
                (0..loops.max(1)).map(|_| (crate::dialplan::AppCall::new(app, data), app_uuid.clone())).collect();
            if parked {
                queued.push((crate::dialplan::AppCall::new("park", ""), None));
                for q in queued.into_iter().rev() {
                    call.apps.push_front(q);
                }
                call.phase = super::call::Phase::Executing;
                call.run(cx);
            } else {
                call.apps.extend(queued);
            }
        });
        true
    }

    /// Channel `uuid`'s variable `name` (None: no such channel; Some(None): not set).
    pub fn getvar(&self, uuid: &str, name: &str) -> Option<Option<String>> {
        let (id, side) = self.find(uuid)?;
        let call = &self.calls[&id];
        let vars = match side {
            Side::A => &call.vars,
            Side::B(i) => &call.forks[i].vars,
        };
        Some(vars.get(name).map(str::to_string))
    }

    /// Sets (or with None unsets) channel `uuid`'s variable `name`; false: no such channel.
    pub fn setvar(&mut self, uuid: &str, name: &str, value: Option<&str>) -> bool {
        let Some((id, side)) = self.find(uuid) else { return false };
        let call = self.calls.get_mut(&id).expect("found above");
        let vars = match side {
            Side::A => &mut call.vars,
            Side::B(i) => &mut call.forks[i].vars,
        };
        match value {
            Some(v) => vars.set(name, v),
            None => vars.unset(name),
        }
        true
    }
}
