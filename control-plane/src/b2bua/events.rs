//! Channel events, as FreeSWITCH names them, produced by the call state machine as it
//! moves each leg (state changes, call states, answer, bridge, applications, hangup):
//! the event socket formats them ([`crate::esl`]). Each carries a snapshot of the leg
//! (and of the other leg, once there is one), so a consumer needs nothing else.
//!
//! They are only made while someone listens ([`super::B2bua::set_events`]): without an
//! event socket the SIP path pays nothing for them.

use super::call::{Call, Cx, Side};
use super::channel::{CallState, Channel, ChannelState, Direction, HangupCause};
use crate::dialplan::Variables;

/// The channel events the B2BUA produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventName {
    ChannelCreate,
    ChannelState,
    ChannelCallstate,
    ChannelOutgoing,
    ChannelOriginate,
    ChannelProgress,
    ChannelProgressMedia,
    ChannelAnswer,
    ChannelBridge,
    ChannelUnbridge,
    ChannelExecute,
    ChannelExecuteComplete,
    ChannelHangup,
    ChannelHangupComplete,
    ChannelDestroy,
    Dtmf,
}

impl EventName {
    pub const ALL: [EventName; 16] = [
        EventName::ChannelCreate,
        EventName::ChannelState,
        EventName::ChannelCallstate,
        EventName::ChannelOutgoing,
        EventName::ChannelOriginate,
        EventName::ChannelProgress,
        EventName::ChannelProgressMedia,
        EventName::ChannelAnswer,
        EventName::ChannelBridge,
        EventName::ChannelUnbridge,
        EventName::ChannelExecute,
        EventName::ChannelExecuteComplete,
        EventName::ChannelHangup,
        EventName::ChannelHangupComplete,
        EventName::ChannelDestroy,
        EventName::Dtmf,
    ];

    /// FreeSWITCH's name (`Event-Name`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::ChannelCreate => "CHANNEL_CREATE",
            EventName::ChannelState => "CHANNEL_STATE",
            EventName::ChannelCallstate => "CHANNEL_CALLSTATE",
            EventName::ChannelOutgoing => "CHANNEL_OUTGOING",
            EventName::ChannelOriginate => "CHANNEL_ORIGINATE",
            EventName::ChannelProgress => "CHANNEL_PROGRESS",
            EventName::ChannelProgressMedia => "CHANNEL_PROGRESS_MEDIA",
            EventName::ChannelAnswer => "CHANNEL_ANSWER",
            EventName::ChannelBridge => "CHANNEL_BRIDGE",
            EventName::ChannelUnbridge => "CHANNEL_UNBRIDGE",
            EventName::ChannelExecute => "CHANNEL_EXECUTE",
            EventName::ChannelExecuteComplete => "CHANNEL_EXECUTE_COMPLETE",
            EventName::ChannelHangup => "CHANNEL_HANGUP",
            EventName::ChannelHangupComplete => "CHANNEL_HANGUP_COMPLETE",
            EventName::ChannelDestroy => "CHANNEL_DESTROY",
            EventName::Dtmf => "DTMF",
        }
    }

    /// Whether the event carries the channel's variables (`variable_*`): FreeSWITCH leaves
    /// them off CHANNEL_STATE, CHANNEL_CALLSTATE and CHANNEL_OUTGOING.
    pub fn carries_variables(self) -> bool {
        !matches!(self, EventName::ChannelState | EventName::ChannelCallstate | EventName::ChannelOutgoing)
    }
}

/// One leg as an event shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    pub uuid: String,
    pub name: String,
    pub direction: Direction,
    pub state: ChannelState,
    /// `Channel-State-Number`: FreeSWITCH gives the state the channel is going to, which
    /// can be ahead of `state` (CS_INIT with 2 on CHANNEL_CREATE, 10 on CHANNEL_HANGUP).
    pub state_number: u8,
    pub call_state: CallState,
    pub answer_state: &'static str,
    pub hangup_cause: Option<HangupCause>,
    /// `Channel-Call-UUID`: the A-leg's uuid (the call's).
    pub call_uuid: String,
    pub username: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub network_addr: String,
    pub destination_number: String,
    pub context: String,
    pub times: super::channel::Times,
    /// The channel's variables, in the order they were set.
    pub variables: Vec<(String, String)>,
}

/// A channel event: its leg, the other leg (with `Other-Type`), and the headers of its
/// own that go before and after the channel's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEvent {
    pub name: EventName,
    /// When, in µs since the Unix epoch.
    pub unix_us: u64,
    pub before: Vec<(&'static str, String)>,
    pub channel: ChannelInfo,
    /// `originator` (on a B-leg: the A-leg) or `originatee` (on a bridged A-leg: the B-leg).
    pub other: Option<(&'static str, ChannelInfo)>,
    pub after: Vec<(&'static str, String)>,
}

impl Call {
    fn channel(&self, side: Side) -> &Channel {
        match side {
            Side::A => &self.a.channel,
            Side::B(i) => &self.forks[i].channel,
        }
    }

    pub(super) fn channel_mut(&mut self, side: Side) -> &mut Channel {
        match side {
            Side::A => &mut self.a.channel,
            Side::B(i) => &mut self.forks[i].channel,
        }
    }

    /// Leg `side` as an event shows it now.
    pub(super) fn info(&self, side: Side) -> ChannelInfo {
        self.snapshot(side, true)
    }

    /// Leg `side` now, its variables copied only when `variables` (an event's other leg,
    /// and the events FreeSWITCH sends without them, need none).
    fn snapshot(&self, side: Side, variables: bool) -> ChannelInfo {
        let c = self.channel(side);
        let vars: &Variables = match side {
            Side::A => &self.vars,
            Side::B(i) => &self.forks[i].vars,
        };
        let var = |n: &str| vars.get(n).unwrap_or_default().to_string();
        ChannelInfo {
            uuid: c.uuid.clone(),
            name: c.name.clone(),
            direction: c.direction,
            state: c.state(),
            state_number: c.state().number(),
            call_state: c.call_state,
            answer_state: c.answer_state(),
            hangup_cause: c.cause,
            call_uuid: self.uuid.clone(),
            username: var("user_name"),
            caller_id_name: var("caller_id_name"),
            caller_id_number: var("caller_id_number"),
            network_addr: var("network_addr"),
            destination_number: var("destination_number"),
            context: var("context"),
            times: c.times,
            variables: if variables {
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Emits `name` for leg `side`, with headers of its own before and after the
    /// channel's. Nothing is built while nobody listens.
    pub(super) fn emit(
        &self,
        cx: &mut Cx<'_, '_>,
        name: EventName,
        side: Side,
        before: Vec<(&'static str, String)>,
        after: Vec<(&'static str, String)>,
    ) {
        if let Some(e) = self.event(cx, name, side, before, after) {
            cx.routes.events.push_back(e);
        }
    }

    fn event(
        &self,
        cx: &Cx<'_, '_>,
        name: EventName,
        side: Side,
        before: Vec<(&'static str, String)>,
        after: Vec<(&'static str, String)>,
    ) -> Option<ChannelEvent> {
        if !cx.routes.events_on {
            return None;
        }
        let mut channel = self.snapshot(side, name.carries_variables());
        if name == EventName::ChannelCreate || name == EventName::ChannelOriginate {
            // The routing state is already queued when FreeSWITCH fires these.
            channel.state_number = ChannelState::CS_ROUTING.number();
        }
        let other = match side {
            Side::B(_) => Some(("originator", self.snapshot(Side::A, false))),
            Side::A => self.answered.map(|i| ("originatee", self.snapshot(Side::B(i), false))),
        };
        Some(ChannelEvent { name, unix_us: cx.io.unix_us, before, channel, other, after })
    }

    /// Moves leg `side` to `state` and emits CHANNEL_STATE (an inbound leg entering
    /// CS_ROUTING rings first: CHANNEL_CALLSTATE to RINGING before it).
    pub(super) fn leg_state(&mut self, cx: &mut Cx<'_, '_>, side: Side, state: ChannelState) {
        if !self.channel_mut(side).set_state(state) {
            return;
        }
        if state == ChannelState::CS_ROUTING && side == Side::A && self.a.channel.direction == Direction::Inbound {
            self.leg_call_state(cx, side, CallState::RINGING);
        }
        self.emit(cx, EventName::ChannelState, side, Vec::new(), Vec::new());
    }

    /// Leg `side`'s call state becomes `to`, with CHANNEL_CALLSTATE (never again once
    /// HANGUP; nothing if it is already `to`).
    pub(super) fn leg_call_state(&mut self, cx: &mut Cx<'_, '_>, side: Side, to: CallState) {
        let c = self.channel_mut(side);
        let from = c.call_state;
        if from == to || from == CallState::HANGUP {
            return;
        }
        c.call_state = to;
        let before = vec![
            ("Original-Channel-Call-State", from.to_string()),
            ("Channel-Call-State-Number", to.number().to_string()),
        ];
        self.emit(cx, EventName::ChannelCallstate, side, before, Vec::new());
    }

    /// Leg `side` rang (180) or sent early media (183): CHANNEL_PROGRESS(_MEDIA), then
    /// its call state.
    pub(super) fn leg_progress(&mut self, cx: &mut Cx<'_, '_>, side: Side, media: bool) {
        let now = cx.io.unix_us;
        let c = self.channel_mut(side);
        if media {
            if c.early {
                return;
            }
            c.early = true;
            c.times.progress_media = now;
        } else {
            if c.times.progress != 0 {
                return;
            }
            c.times.progress = now;
        }
        let name = if media { EventName::ChannelProgressMedia } else { EventName::ChannelProgress };
        self.emit(cx, name, side, Vec::new(), Vec::new());
        self.leg_call_state(cx, side, if media { CallState::EARLY } else { CallState::RINGING });
    }

    /// Leg `side` is answered: CHANNEL_ANSWER, then its call state ACTIVE.
    pub(super) fn leg_answered(&mut self, cx: &mut Cx<'_, '_>, side: Side) {
        let now = cx.io.unix_us;
        let c = self.channel_mut(side);
        if c.answered {
            return;
        }
        c.answered = true;
        c.times.answered = now;
        self.emit(cx, EventName::ChannelAnswer, side, Vec::new(), Vec::new());
        self.leg_call_state(cx, side, CallState::ACTIVE);
    }

    /// Leg `side` hangs up with `cause`: CS_HANGUP and CHANNEL_HANGUP, and the caller's
    /// application completes unless it is a bridge still up (that completes when the
    /// bridge ends). False if the leg was down already.
    pub(super) fn leg_hangup(&mut self, cx: &mut Cx<'_, '_>, side: Side, cause: HangupCause) -> bool {
        let now = cx.io.unix_us;
        let c = self.channel_mut(side);
        if !c.is_up() {
            return false;
        }
        c.times.hangup = now;
        let running = c.state();
        c.hangup(cause);
        // FreeSWITCH fires it while the state it left still runs, CS_HANGUP pending.
        if let Some(mut e) = self.event(cx, EventName::ChannelHangup, side, Vec::new(), Vec::new()) {
            e.channel.state = running;
            cx.routes.events.push_back(e);
        }
        let bridged = self.answered.is_some_and(|i| self.forks[i].channel.is_up());
        if side == Side::A && !bridged {
            self.complete_application(cx);
        }
        true
    }

    /// Leg `side`, hung up, reports and is destroyed: CHANNEL_STATE CS_HANGUP, its call
    /// state HANGUP, CS_REPORTING, CHANNEL_HANGUP_COMPLETE, CHANNEL_DESTROY, CS_DESTROY.
    pub(super) fn leg_finish(&mut self, cx: &mut Cx<'_, '_>, side: Side) {
        if self.channel(side).state() != ChannelState::CS_HANGUP {
            return;
        }
        self.emit(cx, EventName::ChannelState, side, Vec::new(), Vec::new());
        self.leg_call_state(cx, side, CallState::HANGUP);
        let c = self.channel_mut(side);
        c.set_state(ChannelState::CS_REPORTING);
        let cause = c.cause.unwrap_or(HangupCause::NORMAL_CLEARING).to_string();
        self.emit(cx, EventName::ChannelState, side, Vec::new(), Vec::new());
        self.emit(cx, EventName::ChannelHangupComplete, side, vec![("Hangup-Cause", cause)], Vec::new());
        self.emit(cx, EventName::ChannelDestroy, side, Vec::new(), Vec::new());
        if self.channel_mut(side).set_state(ChannelState::CS_DESTROY) {
            self.emit(cx, EventName::ChannelState, side, Vec::new(), Vec::new());
        }
    }

    /// The A-leg starts application `app` with `data`: CHANNEL_EXECUTE; it completes with
    /// [`Call::complete_application`].
    pub(super) fn start_application(&mut self, cx: &mut Cx<'_, '_>, app: &str, data: &str, app_uuid: Option<String>) {
        self.complete_application(cx);
        let app_uuid = app_uuid.unwrap_or_else(|| cx.io.uuid());
        // FreeSWITCH's variables for it (ESL clients wait on them in EXECUTE_COMPLETE).
        self.vars.set("current_application", app.to_string());
        self.vars.set("current_application_data", data.to_string());
        let after = application_headers(app, data, &app_uuid, None);
        self.executing = Some((app.to_string(), data.to_string(), app_uuid));
        self.emit(cx, EventName::ChannelExecute, Side::A, Vec::new(), after);
    }

    /// The application running on the A-leg, if any, is done: CHANNEL_EXECUTE_COMPLETE.
    pub(super) fn complete_application(&mut self, cx: &mut Cx<'_, '_>) {
        let Some((app, data, app_uuid)) = self.executing.take() else { return };
        let after = application_headers(&app, &data, &app_uuid, Some("_none_"));
        self.emit(cx, EventName::ChannelExecuteComplete, Side::A, Vec::new(), after);
    }

    /// A telephone-event ended on media leg `leg` (0: A, 1: the bridged B-leg): DTMF on
    /// that channel, with FreeSWITCH's DTMF-Digit, DTMF-Duration (timestamp units) and
    /// DTMF-Source.
    pub(super) fn dtmf(&mut self, cx: &mut Cx<'_, '_>, leg: u8, digit: char, duration: u32) {
        let side = match (leg, self.answered) {
            (0, _) => Side::A,
            (_, Some(i)) => Side::B(i),
            _ => return,
        };
        tracing::info!(%digit, duration, ?side, "DTMF");
        let after = vec![
            ("DTMF-Digit", digit.to_string()),
            ("DTMF-Duration", duration.to_string()),
            ("DTMF-Source", "RTP".to_string()),
        ];
        self.emit(cx, EventName::Dtmf, side, Vec::new(), after);
    }

    /// B-leg `i` is bridged to the caller: CHANNEL_BRIDGE on the A-leg.
    pub(super) fn bridged(&mut self, cx: &mut Cx<'_, '_>, i: usize) {
        let now = cx.io.unix_us;
        self.a.channel.times.bridged = now;
        self.forks[i].channel.times.bridged = now;
        let before = self.bridge_headers(i);
        self.emit(cx, EventName::ChannelBridge, Side::A, before, Vec::new());
    }

    /// The bridge with B-leg `i` ends: CHANNEL_UNBRIDGE on the A-leg.
    pub(super) fn unbridged(&mut self, cx: &mut Cx<'_, '_>, i: usize) {
        let before = self.bridge_headers(i);
        self.emit(cx, EventName::ChannelUnbridge, Side::A, before, Vec::new());
    }

    fn bridge_headers(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![
            ("Bridge-A-Unique-ID", self.a.channel.uuid.clone()),
            ("Bridge-B-Unique-ID", self.forks[i].channel.uuid.clone()),
        ]
    }
}

fn application_headers(app: &str, data: &str, app_uuid: &str, response: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = vec![("Application", app.to_string())];
    if !data.is_empty() {
        h.push(("Application-Data", data.to_string()));
    }
    if let Some(r) = response {
        h.push(("Application-Response", r.to_string()));
    }
    h.push(("Application-UUID", app_uuid.to_string()));
    h
}
