//! `originate`: a call whose first leg the switch dials itself (the event socket's API),
//! as FreeSWITCH's originate makes one: the leg is an outbound channel that is the call's
//! A-leg. It rings (CS_ROUTING, then CS_CONSUME_MEDIA while it waits), and once it answers
//! the API gets `+OK <uuid>` and the channel runs what it was given: inline applications
//! (`&echo`, `&bridge(user/1002)`, `app:args,app2:args inline`) or an extension hunted in
//! the dialplan (`9196 XML default`). With the media plane on, the switch offers its own
//! ports (one audio stream with its codecs) and the callee's answer points leg A there;
//! without it, the INVITE has no offer and the ACK answers the callee's with its own SDP
//! (its media comes straight back, as `echo` does without a media plane).

use std::time::Duration;

use tracing::{info, warn};

use super::bridge::{targets_of, Targets};
use super::call::{ALeg, Call, Cx, Phase, Setup, Side};
use super::channel::{Channel, ChannelState, Direction, HangupCause};
use super::dialog::Dialog;
use super::events::EventName;
use super::media::{self, Waiting};
use super::messages::{b_invite, send_ack, BInvite};
use super::timer::CallTimer;
use super::{text, B2bua, CallId, Io};
use crate::dialplan::{AppCall, Endpoint, Variables};
use crate::sdp::Sdp;
use crate::sip::message::Message;
use crate::sip::transaction::TxId;
use crate::storage::Direction as RowDirection;

/// The longest an originate waits for an answer (the API's own wait is a little longer).
pub const MAX_ORIGINATE_TIMEOUT: Duration = Duration::from_secs(110);

/// What the originated channel does once answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// These applications, in order (`&app(args)`, or an `inline` dialplan).
    Apps(Vec<AppCall>),
    /// This extension, hunted in this context's dialplan (`<exten> XML <context>`).
    Extension { dest: String, context: String },
}

/// An `originate` to start.
#[derive(Debug, Clone)]
pub struct OriginateRequest {
    /// Where the leg goes (the dial string's first endpoint).
    pub endpoint: Endpoint,
    /// The dial string's `{...}` and `[...]` variables, for the channel.
    pub vars: Variables,
    pub then: Then,
    /// The caller ID the callee sees (None: `origination_caller_id_*`, else FreeSWITCH's
    /// defaults).
    pub caller_id_name: Option<String>,
    pub caller_id_number: Option<String>,
    /// How long it rings before NO_ANSWER.
    pub timeout: Duration,
    /// Answered with the same job in [`Originated`].
    pub job: u64,
}

/// How an originate went: the channel's uuid once it answered, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originated {
    pub job: u64,
    pub result: Result<String, HangupCause>,
}

/// What an originated call remembers until its leg answers.
pub(super) struct Origin {
    /// The API waiting for the outcome (taken once answered).
    pub job: Option<u64>,
    pub then: Then,
    /// The request URI and the user it is for.
    pub ruri: String,
    pub dest: String,
    /// Dialled as `user/`: FreeSWITCH's user endpoint is an originate inside the
    /// originate, whose return says CHANNEL_OUTGOING once more on answer.
    pub via_user: bool,
}

/// Why an originate did not start (the API answers `-ERR <reason>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    /// The endpoint cannot be reached now (FreeSWITCH answers with the cause's name).
    #[error("{0}")]
    Cause(HangupCause),
    /// `origination_uuid` names a channel that exists.
    #[error("uuid {0} is in use")]
    UuidInUse(String),
}

impl B2bua {
    /// Starts an originate: the leg rings, and [`B2bua::poll_originated`] says how it went.
    /// Err: it could not even start (no such user, not registered, a host name: only
    /// `bridge` resolves them). Returns the new channel's uuid.
    pub fn originate(&mut self, io: &mut Io<'_>, req: OriginateRequest) -> Result<String, OriginateError> {
        let target = match targets_of(io, "originate", req.endpoint.clone()) {
            Targets::Found(found) => {
                found.into_iter().next().ok_or(OriginateError::Cause(HangupCause::USER_NOT_REGISTERED))?
            }
            // FreeSWITCH's user endpoint says SUBSCRIBER_ABSENT for a user it does not know.
            Targets::Failed(HangupCause::UNALLOCATED_NUMBER) if matches!(req.endpoint, Endpoint::User { .. }) => {
                return Err(OriginateError::Cause(HangupCause::SUBSCRIBER_ABSENT))
            }
            Targets::Failed(cause) => return Err(OriginateError::Cause(cause)),
            Targets::Resolve { host, .. } => {
                warn!(%host, "originate: sofia/ needs an IP address (only bridge resolves host names)");
                return Err(OriginateError::Cause(HangupCause::NO_ROUTE_DESTINATION));
            }
        };
        let (dest, ruri, peer) = target;
        let via_user = matches!(req.endpoint, Endpoint::User { .. });
        let uuid = match req.vars.get("origination_uuid") {
            Some(u) if self.exists(u) => return Err(OriginateError::UuidInUse(u.to_string())),
            Some(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => io.uuid(),
        };
        let id = CallId(self.next);
        self.next += 1;
        let mut channel = Channel::new(uuid.clone(), Direction::Outbound);
        // FreeSWITCH names it after the request URI, parameters cut off.
        channel.name = format!("sofia/internal/{}", ruri.split(';').next().unwrap_or_default());
        channel.times.created = io.unix_us;
        let mut vars = Variables::new();
        for (k, v) in req.vars.iter() {
            vars.set(k, v.to_string());
        }
        let pick = |given: Option<String>, var: &str, default: &str| {
            given.or_else(|| req.vars.get(var).map(str::to_string)).unwrap_or_else(|| default.to_string())
        };
        // FreeSWITCH's own defaults when nothing names the caller (an empty name).
        let name = pick(req.caller_id_name.clone(), "origination_caller_id_name", "");
        let number = pick(req.caller_id_number.clone(), "origination_caller_id_number", "0000000000");
        vars.set("uuid", uuid.clone());
        vars.set("destination_number", dest.clone());
        vars.set("caller_id_name", name);
        vars.set("caller_id_number", number);
        vars.set("network_addr", peer.remote.ip().to_string());
        if vars.get("context").is_none() {
            vars.set("context", "default".to_string());
        }
        let a = ALeg {
            channel,
            setup: None,
            dialed: None,
            peer,
            to_tag: String::new(),
            dialog: None,
            answered: false,
            final_sent: false,
            ringing_sent: false,
        };
        let mut call = Call::new(uuid.clone(), a, vars, io.unix);
        call.phase = Phase::Dialing;
        call.origin = Some(Origin { job: Some(req.job), then: req.then, ruri, dest, via_user });
        call.write_a_row(io);
        self.calls.insert(id, call);
        self.routes.channels_created += 1;
        self.routes.calls_started += 1;
        let timeout = req.timeout.min(MAX_ORIGINATE_TIMEOUT);
        self.with_call(io, id, |call, cx| {
            // FreeSWITCH's order for a channel it originates without a caller.
            call.emit(cx, EventName::ChannelOutgoing, Side::A, Vec::new(), Vec::new());
            call.leg_state(cx, Side::A, ChannelState::CS_INIT);
            call.emit(cx, EventName::ChannelCreate, Side::A, Vec::new(), Vec::new());
            call.emit(cx, EventName::ChannelOriginate, Side::A, Vec::new(), Vec::new());
            call.leg_state(cx, Side::A, ChannelState::CS_ROUTING);
            call.leg_state(cx, Side::A, ChannelState::CS_CONSUME_MEDIA);
            let at = cx.io.now + timeout;
            call.arm(cx, at, CallTimer::NoAnswer);
            if call.want_media(cx) {
                call.request_media(cx, Waiting::Dial);
            } else {
                call.dial(cx, Vec::new());
            }
        });
        Ok(uuid)
    }

    /// The next originate that answered or failed.
    pub fn poll_originated(&mut self) -> Option<Originated> {
        self.routes.originated.pop_front()
    }
}

impl Call {
    /// Sends the originated leg's INVITE, with `body` as its offer (none: late offer).
    pub(super) fn dial(&mut self, cx: &mut Cx<'_, '_>, body: Vec<u8>) {
        let Some(origin) = &self.origin else { return };
        let name = self.vars.get("caller_id_name").unwrap_or_default().replace('"', "");
        let number = self.vars.get("caller_id_number").unwrap_or_default().to_string();
        let b = BInvite {
            ruri: &origin.ruri,
            dest: &origin.dest,
            name: &name,
            number: &number,
            body: &body,
            content_type: None,
            max_forwards: 70,
        };
        let peer = self.a.peer;
        let sent = b_invite(cx.io, &b, peer).map_err(|e| e.to_string()).and_then(|invite| {
            cx.io.tx.request(cx.io.now, invite.clone(), peer).map(|tx| (invite, tx)).map_err(|e| e.to_string())
        });
        match sent {
            Ok((invite, tx)) => {
                info!(call = %self.uuid, dest = %origin.dest, ruri = %origin.ruri, to = %peer.remote, "originate");
                self.vars.set("sip_call_id", text(invite.call_id()));
                cx.routes.dialed.insert(tx, cx.id);
                self.a.dialed = Some(Setup { invite, tx });
            }
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "could not send the originate's INVITE");
                self.a.final_sent = true;
                self.hangup_a(cx, HangupCause::INTERWORKING, None);
            }
        }
    }

    /// A response to the originated leg's INVITE (on transaction `tx`).
    pub(super) fn on_dialed_response(&mut self, cx: &mut Cx<'_, '_>, tx: TxId, msg: &Message) {
        let Some(status) = msg.status() else { return };
        match status {
            100 => {}
            101..=199 => {
                if self.a.channel.is_up() && !self.a.answered {
                    self.leg_progress(cx, Side::A, !msg.body().is_empty());
                }
            }
            200..=299 => self.dialed_answered(cx, msg),
            _ => {
                cx.routes.dialed.remove(&tx);
                let cause = HangupCause::from_sip(status);
                info!(call = %self.uuid, status, %cause, "the originated leg failed");
                self.a.final_sent = true;
                self.hangup_a(cx, cause, Some(status));
            }
        }
    }

    /// Timer B on the originated leg's INVITE: nothing answered at all.
    pub(super) fn on_dialed_timeout(&mut self, cx: &mut Cx<'_, '_>) {
        if !self.a.answered {
            self.a.final_sent = true;
            self.hangup_a(cx, HangupCause::RECOVERY_ON_TIMER_EXPIRE, Some(408));
        }
    }

    fn dialed_answered(&mut self, cx: &mut Cx<'_, '_>, ok: &Message) {
        let peer = self.a.peer;
        let Some(Setup { invite, .. }) = &self.a.dialed else { return };
        let Some(mut dialog) = Dialog::uac(invite, ok, peer) else {
            warn!(call = %self.uuid, "2xx without To tag or Contact: no dialog");
            return;
        };
        // Without an offer of ours, the 2xx made one: the ACK answers it with itself.
        let reflected = invite.body().is_empty() && self.media.is_none();
        send_ack(cx.io, &dialog, ok.cseq(), if reflected { ok.body() } else { b"" });
        if self.a.answered || !self.a.channel.is_up() {
            if !self.a.answered {
                // It answered after the switch gave up on it: it goes at once.
                super::messages::send_bye(cx.io, &mut dialog);
            }
            return; // else a retransmitted 2xx
        }
        self.follow_dialed_answer(cx, ok);
        info!(call = %self.uuid, "the originated leg answered");
        self.a_answered(cx, dialog, RowDirection::Outbound);
        self.disarm(cx);
        self.leg_answered(cx, Side::A);
        if self.origin.as_ref().is_some_and(|o| o.via_user) {
            self.emit(cx, EventName::ChannelOutgoing, Side::A, Vec::new(), Vec::new());
        }
        let Some(origin) = self.origin.as_mut() else { return };
        if let Some(job) = origin.job.take() {
            cx.routes.originated.push_back(super::Originated { job, result: Ok(self.uuid.clone()) });
        }
        self.phase = Phase::Executing;
        match origin.then.clone() {
            Then::Apps(apps) => {
                self.apps = apps.into_iter().map(|a| (a, None)).collect();
                self.set_a_state(cx, ChannelState::CS_EXECUTE);
                self.run(cx);
            }
            Then::Extension { dest, context } => {
                self.vars.set("destination_number", dest);
                self.vars.set("context", context);
                self.route(cx);
            }
        }
    }

    /// The callee's answer to the switch's offer points leg A of the call's sessions at
    /// it; applications that answer or bridge then use what it chose.
    fn follow_dialed_answer(&mut self, cx: &mut Cx<'_, '_>, ok: &Message) {
        let Some(m) = self.media.as_mut() else { return };
        let answer = match Sdp::parse(ok.body()) {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "the originated leg's answer has no SDP that parses");
                return;
            }
        };
        if let Some(why) = media::refused_peer(&answer, &m.check(0)) {
            warn!(call = %self.uuid, error = %why, "the originated leg's SDP names a refused media address");
        }
        let pc = m.check(0);
        let updates = media::follow(&mut m.sessions, &answer, 0, m.timeout, &pc);
        cx.routes.media_out.extend(updates.into_iter().map(|(id, spec)| super::MediaRequest::Update { id, spec }));
        // A bridge from here offers B what this leg chose (at leg B's ports).
        m.outgoing = Some(answer);
    }

    /// The media plane has the originated call's sessions: the INVITE offers their ports.
    pub(super) fn dial_with_media(&mut self, cx: &mut Cx<'_, '_>) {
        let Some(m) = self.media.as_mut() else { return };
        let Some(offer) = m.outgoing.as_mut() else { return };
        media::point(offer, &m.sessions, 0, m.ip);
        let body = offer.write().into_bytes();
        // What `echo` or `answer` would answer with: the switch is already the answered side.
        m.local = Some(body.clone());
        self.dial(cx, body);
    }
}

/// Parses `originate`'s arguments: `<call_url> <exten>|&<app>[(<args>)] [<dialplan>]
/// [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]`. Err: the usage line.
pub fn parse_originate(args: &str, job: u64) -> Result<OriginateRequest, String> {
    const USAGE: &str = "<call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]";
    let words = split_args(args);
    let (Some(url), Some(target)) = (words.first(), words.get(1)) else { return Err(USAGE.into()) };
    let ds = crate::dialplan::DialString::parse(url).map_err(|e| format!("{e}"))?;
    let Some(leg) = ds.groups().first().and_then(|g| g.first()) else { return Err(USAGE.into()) };
    let mut vars = Variables::new();
    for (k, v) in ds.vars().iter().chain(leg.vars().iter()) {
        vars.set(k, v.to_string());
    }
    let word = |i: usize| words.get(i).filter(|w| !w.is_empty() && *w != "undef").cloned();
    let dialplan = word(2).unwrap_or_else(|| "XML".into());
    let context = word(3).unwrap_or_else(|| "default".into());
    let then = if let Some(app) = target.strip_prefix('&') {
        // FreeSWITCH cuts the arguments at the first `)`.
        let (name, data) = match app.split_once('(') {
            Some((name, rest)) => (name, rest.split(')').next().unwrap_or_default()),
            None => (app, ""),
        };
        Then::Apps(vec![AppCall { app: name.trim().to_string(), data: data.to_string() }])
    } else if dialplan.eq_ignore_ascii_case("inline") {
        // `app:args,app2:args`, FreeSWITCH's inline dialplan.
        Then::Apps(
            target
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| match s.split_once(':') {
                    Some((app, data)) => AppCall { app: app.trim().to_string(), data: data.to_string() },
                    None => AppCall { app: s.trim().to_string(), data: String::new() },
                })
                .collect(),
        )
    } else if dialplan.eq_ignore_ascii_case("XML") {
        Then::Extension { dest: target.clone(), context }
    } else {
        return Err(format!("dialplan {dialplan} is not supported (XML or inline)"));
    };
    let timeout = match word(6).map(|t| t.parse::<u64>()) {
        Some(Ok(t)) => Duration::from_secs(t),
        Some(Err(_)) => return Err(USAGE.into()),
        None => vars
            .get("originate_timeout")
            .and_then(|t| t.parse().ok())
            .map_or(super::DEFAULT_CALL_TIMEOUT, Duration::from_secs),
    };
    Ok(OriginateRequest {
        endpoint: leg.endpoint().clone(),
        vars,
        then,
        caller_id_name: word(4),
        caller_id_number: word(5),
        timeout,
        job,
    })
}

/// Splits on spaces, keeping `'quoted words'`, `{...}` and `(...)` whole.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted, mut word) = (0i32, false, false);
    for c in s.trim().chars() {
        match c {
            '\'' if depth == 0 => {
                quoted = !quoted;
                word = true; // '' is an empty word
            }
            '{' | '(' | '[' if !quoted => {
                depth += 1;
                cur.push(c);
            }
            '}' | ')' | ']' if !quoted => {
                depth -= 1;
                cur.push(c);
            }
            ' ' | '\t' if depth <= 0 && !quoted => {
                if !cur.is_empty() || word {
                    out.push(std::mem::take(&mut cur));
                }
                word = false;
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() || word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_application_with_arguments() {
        let r =
            parse_originate("{origination_caller_id_number=42,ignore_early_media=true}user/1001 &bridge(user/1002)", 7)
                .unwrap();
        assert_eq!(r.endpoint, Endpoint::User { id: "1001".into(), domain: None });
        assert_eq!(r.vars.get("origination_caller_id_number"), Some("42"));
        assert_eq!(r.then, Then::Apps(vec![AppCall { app: "bridge".into(), data: "user/1002".into() }]));
        assert_eq!(r.timeout, super::super::DEFAULT_CALL_TIMEOUT);
        assert_eq!(r.job, 7);
    }

    #[test]
    fn an_extension_with_context_caller_id_and_timeout() {
        let r = parse_originate("sofia/internal/1001@127.0.0.1:5070 9196 XML public Alice 555 20", 1).unwrap();
        assert_eq!(r.then, Then::Extension { dest: "9196".into(), context: "public".into() });
        assert_eq!((r.caller_id_name.as_deref(), r.caller_id_number.as_deref()), (Some("Alice"), Some("555")));
        assert_eq!(r.timeout, Duration::from_secs(20));
    }

    #[test]
    fn an_inline_dialplan_and_bare_applications() {
        let r = parse_originate("user/1001 'set:a=b c,echo' inline", 1).unwrap();
        assert_eq!(
            r.then,
            Then::Apps(vec![
                AppCall { app: "set".into(), data: "a=b c".into() },
                AppCall { app: "echo".into(), data: String::new() }
            ])
        );
        assert_eq!(
            parse_originate("user/1001 &echo", 1).unwrap().then,
            Then::Apps(vec![AppCall { app: "echo".into(), data: String::new() }])
        );
        assert_eq!(
            parse_originate("user/1001 &park()", 1).unwrap().then,
            Then::Apps(vec![AppCall { app: "park".into(), data: String::new() }])
        );
    }

    #[test]
    fn bad_arguments_answer_the_usage() {
        assert!(parse_originate("", 1).unwrap_err().starts_with("<call url>"));
        assert!(parse_originate("user/1001", 1).unwrap_err().starts_with("<call url>"));
        assert!(parse_originate("user/1001 9196 XML default a b soon", 1).unwrap_err().starts_with("<call url>"));
        assert_eq!(
            parse_originate("user/1001 9196 enum", 1).unwrap_err(),
            "dialplan enum is not supported (XML or inline)"
        );
    }
}
