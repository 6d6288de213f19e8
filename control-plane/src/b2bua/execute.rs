//! The A-leg's CS_ROUTING and CS_EXECUTE: the dialplan hunted, then its applications run
//! in order, each parsed into an [`App`] first, until one waits (bridge, sleep, echo, an
//! answer waiting for media) or they run out.

use std::time::Duration;

use tracing::{info, warn};

use super::call::{Call, Cx, Phase};
use super::channel::{ChannelState, HangupCause};
use super::media::Waiting;
use super::timer::CallTimer;
use super::LocalMedia;
use crate::dialplan::{apply_variable_app, log_app, AppCall, DialString, DialStringError};

/// How long `bridge` waits for an answer when the channel sets no `call_timeout`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A dialplan application the B2BUA runs, with its argument parsed.
#[derive(Debug)]
pub(super) enum App {
    /// `set`, `unset`, `export` (the dialplan engine's rules: [`apply_variable_app`]).
    Variable {
        app: String,
        data: String,
    },
    Log(String),
    RingReady,
    PreAnswer,
    Answer,
    Echo,
    /// `park`: the call waits, unanswered as it is, until it hangs up or is told what to
    /// do (`sendmsg`).
    Park,
    /// `sleep` for this long (unparsable: zero).
    Sleep(Duration),
    /// `hangup` with this cause (none or unknown: NORMAL_CLEARING).
    Hangup(HangupCause),
    /// `transfer <destination> [XML <context>]`.
    Transfer {
        dest: String,
        context: Option<String>,
    },
    Bridge(Result<DialString, DialStringError>),
    /// `socket <host:port> [async] [full]`: the call is handed to an ESL application
    /// server (outbound mode) until that connection ends.
    Socket(String),
    Unknown(String),
}

impl App {
    pub fn parse(call: &AppCall) -> App {
        let data = call.data.trim();
        match call.app.as_str() {
            "set" | "unset" | "export" => App::Variable { app: call.app.clone(), data: data.to_string() },
            "log" => App::Log(data.to_string()),
            "ring_ready" => App::RingReady,
            "pre_answer" => App::PreAnswer,
            "answer" => App::Answer,
            "echo" => App::Echo,
            "park" => App::Park,
            "sleep" => App::Sleep(Duration::from_millis(data.parse().unwrap_or(0))),
            "hangup" => App::Hangup(HangupCause::from_name(data).unwrap_or(HangupCause::NORMAL_CLEARING)),
            "transfer" => {
                let mut words = data.split_whitespace();
                let dest = words.next().unwrap_or_default().to_string();
                App::Transfer { dest, context: words.nth(1).map(str::to_string) }
            }
            "bridge" => App::Bridge(DialString::parse(data)),
            "socket" => App::Socket(data.split_whitespace().next().unwrap_or_default().to_string()),
            other => App::Unknown(other.to_string()),
        }
    }
}

impl Call {
    /// CS_ROUTING: hunt the dialplan, then CS_EXECUTE.
    pub fn route(&mut self, cx: &mut Cx<'_, '_>) {
        self.set_a_state(cx, ChannelState::CS_ROUTING);
        let context = self.vars.get("context").unwrap_or("default").to_string();
        match cx.io.dialplan.hunt(&context, &mut self.vars) {
            Ok(apps) if !apps.is_empty() => {
                info!(call = %self.uuid, %context, apps = apps.len(), "dialplan matched");
                self.apps = apps.into_iter().map(|a| (a, None)).collect();
                self.set_a_state(cx, ChannelState::CS_EXECUTE);
                self.run(cx);
            }
            Ok(_) => {
                info!(call = %self.uuid, %context, "no dialplan extension matched");
                self.hangup_a(cx, HangupCause::NO_ROUTE_DESTINATION, None);
            }
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "dialplan hunt failed");
                self.hangup_a(cx, HangupCause::NO_ROUTE_DESTINATION, None);
            }
        }
    }

    /// CS_EXECUTE: runs applications until one waits (bridge, sleep, echo) or they run out.
    pub fn run(&mut self, cx: &mut Cx<'_, '_>) {
        loop {
            if self.phase != Phase::Executing || !self.a.channel.is_up() {
                return;
            }
            if self.media.as_ref().is_some_and(|m| m.waiting.is_some()) {
                return; // on_media_answer goes on
            }
            let Some((call, app_uuid)) = self.apps.pop_front() else {
                // The applications ran out: hang up, with the bridge's failure if one failed.
                let (cause, status) = self.last_failure.unwrap_or((HangupCause::NORMAL_CLEARING, None));
                self.hangup_a(cx, cause, status);
                return;
            };
            info!(call = %self.uuid, app = %call.app, data = %call.data.trim(), "execute");
            self.start_application(cx, &call.app, call.data.trim(), app_uuid);
            match App::parse(&call) {
                App::Variable { app, data } => {
                    apply_variable_app(&app, &data, &mut self.vars);
                }
                App::Log(data) => tracing::info_span!("app", call = %self.uuid).in_scope(|| log_app(&data)),
                App::RingReady => self.provisional_a(cx, 180, None),
                App::PreAnswer => match self.local_media(cx, Waiting::Answer(183)) {
                    LocalMedia::Waiting => return,
                    LocalMedia::Done => {}
                    LocalMedia::Off => self.provisional_a(cx, 183, None),
                },
                App::Answer => match self.local_media(cx, Waiting::Answer(200)) {
                    LocalMedia::Waiting => return,
                    LocalMedia::Done => {}
                    LocalMedia::Off => self.answer_a(cx, None),
                },
                App::Echo => {
                    self.phase = Phase::Parked;
                    // The media plane loops the caller's RTP. Without it, the caller's own
                    // SDP is the answer, so its media comes straight back to it.
                    match self.local_media(cx, Waiting::Echo) {
                        LocalMedia::Waiting | LocalMedia::Done => {}
                        LocalMedia::Off => self.answer_a(cx, None),
                    }
                    if self.a.channel.is_up() {
                        self.phase = Phase::Parked;
                    }
                    return;
                }
                App::Park => {
                    self.phase = Phase::Parked;
                    return;
                }
                App::Sleep(d) => {
                    self.phase = Phase::Sleeping;
                    let at = cx.io.now + d;
                    self.arm(cx, at, CallTimer::Sleep);
                    return;
                }
                App::Hangup(cause) => {
                    self.hangup_a(cx, cause, None);
                    return;
                }
                App::Transfer { dest, context } => {
                    if let Some(ctx) = context {
                        self.vars.set("context", ctx);
                    }
                    self.vars.set("destination_number", dest);
                    self.apps.clear();
                    self.route(cx);
                    return;
                }
                App::Bridge(Ok(ds)) => {
                    self.bridge(cx, &ds);
                    return;
                }
                App::Bridge(Err(e)) => {
                    // The bridge fails at once (it used to leave the call waiting forever).
                    warn!(call = %self.uuid, error = %e, "bad dial string");
                    self.last_failure = Some((HangupCause::INVALID_NUMBER_FORMAT, None));
                    self.bridge_failed(cx);
                    return;
                }
                App::Socket(target) => {
                    self.phase = Phase::Parked;
                    cx.routes.socket_out.push_back((target, self.uuid.clone()));
                    return;
                }
                App::Unknown(name) => warn!(call = %self.uuid, app = %name, "unknown application"),
            }
            // It ran to its end here (the ones that wait returned above).
            self.complete_application(cx);
        }
    }
}
