//! One event socket connection, sans-IO: the greeting, authentication, each command's
//! reply in FreeSWITCH's words, the event subscriptions and filters that decide which
//! events the connection gets, and what the driver must do for it (run an API command,
//! deliver a `sendevent`, close).

use std::collections::HashSet;

use super::event::{Event, Format};
use super::frame::Command;

/// What a connection's client reads before it is closed for good.
pub const DISCONNECT_NOTICE: &[u8] = b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

/// The greeting a client gets on connect.
pub const AUTH_REQUEST: &[u8] = b"Content-Type: auth/request\n\n";

/// What the driver does for a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to the client.
    Send(Vec<u8>),
    /// Run API command `command` with `args`; its output goes back with
    /// [`api_response`] (`job`: None), or as a BACKGROUND_JOB event (`job`: its uuid).
    Api { command: String, args: String, job: Option<String> },
    /// Outbound mode's `connect`: the channel's data goes back as the reply.
    Connect,
    /// Outbound mode's `getvar NAME`: the controlled channel's variable as the Reply-Text.
    GetVar(String),
    /// An event a client sent (`sendevent`), for every listener.
    Publish(Event),
    /// A message for channel `uuid` (`sendmsg`: `call-command: execute|hangup`, ...);
    /// the switch's answer (`+OK`, `-ERR ...`) goes back with [`reply`].
    SendMsg { uuid: String, headers: Vec<(String, String)> },
    /// Close the connection (after what was sent before).
    Close,
}

/// Which events a connection listens to.
#[derive(Debug, Default, Clone)]
struct Subscriptions {
    all: bool,
    names: HashSet<String>,
    /// CUSTOM subclasses (`sofia::register`).
    custom: HashSet<String>,
}

impl Subscriptions {
    fn is_empty(&self) -> bool {
        !self.all && self.names.is_empty() && self.custom.is_empty()
    }

    fn wants(&self, e: &Event) -> bool {
        if self.all {
            return true;
        }
        let name = e.name();
        if name == "CUSTOM" {
            return e.header("Event-Subclass").is_some_and(|s| self.custom.contains(s));
        }
        self.names.contains(name)
    }
}

/// A filter: events pass when one of them matches (none: every event passes).
#[derive(Debug, Clone)]
struct Filter {
    header: String,
    value: String,
    regex: Option<regex::Regex>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        let Some(v) = e.header(&self.header) else { return false };
        match &self.regex {
            Some(r) => r.is_match(v),
            None => v.eq_ignore_ascii_case(&self.value),
        }
    }
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    password: String,
    authed: bool,
    auth_failed: bool,
    format: Format,
    subs: Subscriptions,
    filters: Vec<Filter>,
    /// `log <level>`: the highest FreeSWITCH level of the log lines it wants.
    log: Option<u8>,
    closed: bool,
    /// Outbound mode: the channel this connection controls (the `socket` application's).
    controlled: Option<String>,
    /// `myevents`: every event of the controlled channel.
    my_events: bool,
    /// `linger [secs]`: events keep coming after the hangup, for this long (None: until
    /// the client leaves).
    linger: Option<Option<u64>>,
}

/// The event names FreeSWITCH knows that a listener may name (others are skipped, as
/// FreeSWITCH skips them).
const KNOWN: &[&str] = &[
    "CUSTOM",
    "CHANNEL_CREATE",
    "CHANNEL_DESTROY",
    "CHANNEL_STATE",
    "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_OUTGOING",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_DATA",
    "API",
    "BACKGROUND_JOB",
    "HEARTBEAT",
    "DTMF",
    "MESSAGE",
    "PRESENCE_IN",
    "RE_SCHEDULE",
    "SHUTDOWN",
    "RELOADXML",
    "LOG",
    "CALL_UPDATE",
    "RECORD_START",
    "RECORD_STOP",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "SESSION_HEARTBEAT",
];

/// A `command/reply` with `text` and extra headers.
pub fn reply(text: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("Content-Type: command/reply\nReply-Text: {text}\n");
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\n"));
    }
    out.push('\n');
    out.into_bytes()
}

/// An `api/response` carrying `body`.
pub fn api_response(body: &str) -> Vec<u8> {
    format!("Content-Type: api/response\nContent-Length: {}\n\n{body}", body.len()).into_bytes()
}

impl Session {
    /// A connection whose clients must give `password`; send it [`AUTH_REQUEST`] first.
    pub fn new(password: &str) -> Session {
        Session {
            password: password.to_string(),
            authed: false,
            auth_failed: false,
            format: Format::Plain,
            subs: Subscriptions::default(),
            filters: Vec::new(),
            log: None,
            closed: false,
            controlled: None,
            my_events: false,
            linger: None,
        }
    }

    /// An outbound connection (the `socket` application) controlling channel `uuid`:
    /// no authentication; it starts with `connect`.
    pub fn outbound(uuid: &str) -> Session {
        Session { authed: true, controlled: Some(uuid.to_string()), ..Session::new("") }
    }

    /// Whether the client asked to linger after the hangup, and for how long.
    pub fn linger(&self) -> Option<Option<u64>> {
        self.linger
    }

    pub fn is_authed(&self) -> bool {
        self.authed
    }

    /// Whether the client gave a wrong password (the connection is closing).
    pub fn auth_failed(&self) -> bool {
        self.auth_failed
    }

    /// The highest level of the `log/data` lines the connection wants (None: none).
    pub fn wants_log(&self) -> Option<u8> {
        self.log
    }

    /// One command from the client; `new_uuid` makes Job-UUIDs and Event-UUIDs.
    pub fn on_command(&mut self, cmd: &Command, mut new_uuid: impl FnMut() -> String) -> Vec<Output> {
        if self.closed {
            return Vec::new();
        }
        let line = cmd.line.as_str();
        let (word, rest) = line.split_once(' ').map_or((line, ""), |(w, r)| (w, r.trim()));
        let lower = word.to_ascii_lowercase();
        if lower == "exit" || line == "..." {
            self.closed = true;
            return vec![Output::Send(reply("+OK bye", &[])), Output::Send(DISCONNECT_NOTICE.to_vec()), Output::Close];
        }
        if !self.authed {
            return match lower.as_str() {
                "auth" => {
                    if super::door::same_password(rest, &self.password) {
                        self.authed = true;
                        vec![Output::Send(reply("+OK accepted", &[]))]
                    } else {
                        self.closed = true;
                        self.auth_failed = true;
                        vec![
                            Output::Send(reply("-ERR invalid", &[])),
                            Output::Send(DISCONNECT_NOTICE.to_vec()),
                            Output::Close,
                        ]
                    }
                }
                // No directory users with ESL passwords here: every userauth fails, as in
                // FreeSWITCH for an unknown user.
                "userauth" => {
                    self.closed = true;
                    self.auth_failed = true;
                    vec![
                        Output::Send(reply("-ERR invalid", &[])),
                        Output::Send(DISCONNECT_NOTICE.to_vec()),
                        Output::Close,
                    ]
                }
                _ => vec![Output::Send(reply("-ERR command not found", &[]))],
            };
        }
        let send = |text: &str| vec![Output::Send(reply(text, &[]))];
        match lower.as_str() {
            "api" => {
                let (command, args) = rest.split_once(' ').map_or((rest, ""), |(c, a)| (c, a.trim()));
                vec![Output::Api { command: command.to_string(), args: args.to_string(), job: None }]
            }
            "bgapi" => {
                let job = cmd.header("Job-UUID").map_or_else(&mut new_uuid, str::to_string);
                let (command, args) = rest.split_once(' ').map_or((rest, ""), |(c, a)| (c, a.trim()));
                vec![
                    Output::Send(reply(&format!("+OK Job-UUID: {job}"), &[("Job-UUID", &job)])),
                    Output::Api { command: command.to_string(), args: args.to_string(), job: Some(job) },
                ]
            }
            "event" => {
                let mut words = rest.split_whitespace().peekable();
                if let Some(f) = words.peek().and_then(|w| Format::parse(w)) {
                    self.format = f;
                    words.next();
                }
                let any = self.subscribe(words);
                if any {
                    send(&format!("+OK event listener enabled {}", self.format.as_str()))
                } else {
                    send("-ERR no keywords supplied")
                }
            }
            "nixevent" => {
                if self.unsubscribe(rest.split_whitespace()) {
                    send("+OK events nixed")
                } else {
                    send("-ERR no keywords supplied")
                }
            }
            "noevents" => {
                if self.subs.is_empty() {
                    send("-ERR not listening for events")
                } else {
                    self.subs = Subscriptions::default();
                    send("+OK no longer listening for events")
                }
            }
            "filter" => self.filter(rest),
            "sendevent" => {
                let name = rest.split_whitespace().next().unwrap_or("CUSTOM").to_ascii_uppercase();
                let mut e = Event::default();
                e.add("Event-Name", &name);
                for (n, v) in &cmd.headers {
                    if !n.eq_ignore_ascii_case("Content-Length") && !n.eq_ignore_ascii_case("Event-Name") {
                        e.add(n, v);
                    }
                }
                let id = new_uuid();
                e.add("Event-UUID", &id);
                e.body = cmd.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                vec![Output::Send(reply(&format!("+OK {id}"), &[])), Output::Publish(e)]
            }
            "sendmsg" => {
                let mut headers = cmd.headers.clone();
                if let Some(b) = &cmd.body {
                    headers.push(("_body".into(), String::from_utf8_lossy(b).into_owned()));
                }
                // Outbound mode: no uuid is the controlled channel.
                let uuid = match (rest, &self.controlled) {
                    ("", Some(c)) => c.clone(),
                    _ => rest.to_string(),
                };
                vec![Output::SendMsg { uuid, headers }]
            }
            "log" => {
                let level = if rest.is_empty() { 7 } else { log_level(rest).unwrap_or(u8::MAX) };
                if level == u8::MAX {
                    send("-ERR invalid log level")
                } else {
                    self.log = Some(level);
                    send(&format!("+OK log level {rest} [{level}]"))
                }
            }
            "nolog" => {
                if self.log.take().is_some() {
                    send("+OK no longer logging")
                } else {
                    send("-ERR not loging")
                }
            }
            "connect" if self.controlled.is_some() => vec![Output::Connect],
            "getvar" if self.controlled.is_some() => vec![Output::GetVar(rest.to_string())],
            "resume" if self.controlled.is_some() => send("+OK"),
            "myevents" => {
                if self.controlled.is_none() && rest.is_empty() {
                    return send("-ERR invalid uuid");
                }
                if self.my_events {
                    return send("-ERR aready enabled.");
                }
                if let Some(f) =
                    rest.split_whitespace().nth(usize::from(self.controlled.is_none())).and_then(Format::parse)
                {
                    self.format = f;
                }
                if self.controlled.is_none() {
                    self.controlled = rest.split_whitespace().next().map(str::to_string);
                }
                self.my_events = true;
                send("+OK Events Enabled")
            }
            "linger" if self.controlled.is_some() => match rest.parse::<u64>() {
                Ok(secs) => {
                    self.linger = Some(Some(secs));
                    send(&format!("+OK will linger {secs} seconds"))
                }
                Err(_) => {
                    self.linger = Some(None);
                    send("+OK will linger")
                }
            },
            "nolinger" if self.controlled.is_some() => {
                self.linger = None;
                send("+OK will not linger")
            }
            "linger" | "nolinger" => send("-ERR not controlling a session"),
            "divert_events" => match (rest, self.controlled.is_some()) {
                ("", _) => send("-ERR missing value."),
                (_, false) => send("-ERR not controlling a session."),
                ("on", true) => send("+OK events diverted"),
                (_, true) => send("+OK events not diverted"),
            },
            _ => send("-ERR command not found"),
        }
    }

    /// Adds the named events (true if any name was valid).
    fn subscribe<'a>(&mut self, words: impl Iterator<Item = &'a str>) -> bool {
        let mut any = false;
        let mut custom = false;
        for w in words {
            if custom {
                self.subs.custom.insert(w.to_string());
                any = true;
                continue;
            }
            let name = w.to_ascii_uppercase();
            let name = name.strip_prefix("SWITCH_EVENT_").unwrap_or(&name);
            if name == "ALL" {
                self.subs.all = true;
                any = true;
            } else if name == "CUSTOM" {
                custom = true;
                any = true;
            } else if KNOWN.contains(&name) {
                self.subs.names.insert(name.to_string());
                any = true;
            }
        }
        any
    }

    fn unsubscribe<'a>(&mut self, words: impl Iterator<Item = &'a str>) -> bool {
        let mut any = false;
        let mut custom = false;
        for w in words {
            if custom {
                any |= self.subs.custom.remove(w);
                continue;
            }
            let name = w.to_ascii_uppercase();
            if name == "ALL" {
                self.subs = Subscriptions::default();
                any = true;
            } else if name == "CUSTOM" {
                custom = true;
            } else if KNOWN.contains(&name.as_str()) {
                self.subs.all = false;
                self.subs.names.remove(&name);
                any = true;
            }
        }
        any
    }

    fn filter(&mut self, rest: &str) -> Vec<Output> {
        let send = |text: &str| vec![Output::Send(reply(text, &[]))];
        let mut words = rest.splitn(3, ' ');
        let first = words.next().unwrap_or_default();
        if first.eq_ignore_ascii_case("delete") {
            let header = words.next().unwrap_or_default();
            let value = words.next().unwrap_or_default().trim();
            if header.is_empty() {
                return send("-ERR invalid syntax");
            }
            if header.eq_ignore_ascii_case("all") {
                self.filters.clear();
                return send("+OK filter deleted. [all][]");
            }
            self.filters.retain(|f| !(f.header.eq_ignore_ascii_case(header) && (value.is_empty() || f.value == value)));
            return send(&format!("+OK filter deleted. [{header}][{value}]"));
        }
        let (header, value) = if first.eq_ignore_ascii_case("add") {
            (words.next().unwrap_or_default(), words.next().unwrap_or_default().trim())
        } else {
            let rest = rest.trim();
            rest.split_once(' ').map_or((rest, ""), |(h, v)| (h, v.trim()))
        };
        if header.is_empty() || value.is_empty() {
            return send("-ERR invalid syntax");
        }
        let regex = match value.strip_prefix('/') {
            Some(p) => match regex::Regex::new(p.strip_suffix('/').unwrap_or(p)) {
                Ok(r) => Some(r),
                Err(_) => return send("-ERR invalid syntax"),
            },
            None => None,
        };
        self.filters.push(Filter { header: header.to_string(), value: value.to_string(), regex });
        send(&format!("+OK filter added. [{header}]=[{value}]"))
    }

    /// The frame for `e` if this connection listens to it (subscribed, past the filters).
    pub fn event_frame(&self, e: &Event) -> Option<Vec<u8>> {
        if !self.authed || self.closed {
            return None;
        }
        let mine = self.my_events && self.controlled.as_deref().is_some_and(|u| e.header("Unique-ID") == Some(u));
        if !mine && !self.subs.wants(e) {
            return None;
        }
        if !self.filters.is_empty() && !self.filters.iter().any(|f| f.matches(e)) {
            return None;
        }
        Some(e.frame(self.format))
    }
}

/// FreeSWITCH's log level names and numbers.
fn log_level(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "console" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" | "error" => 3,
        "warning" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" => 7,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esl::frame::Decoder;

    fn commands(bytes: &[u8]) -> Vec<Command> {
        let mut d = Decoder::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_command().unwrap()).collect()
    }

    fn run(s: &mut Session, bytes: &[u8]) -> Vec<Output> {
        let mut n = 0;
        commands(bytes)
            .iter()
            .flat_map(|c| {
                s.on_command(c, || {
                    n += 1;
                    format!("uuid-{n}")
                })
            })
            .collect()
    }

    fn sent(out: &[Output]) -> String {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn commands_before_auth_are_not_found_and_a_wrong_password_disconnects() {
        let mut s = Session::new("ClueCon");
        assert_eq!(
            sent(&run(&mut s, b"api status\n\n")),
            "Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
        );
        let out = run(&mut s, b"auth nope\n\n");
        assert_eq!(
            sent(&out),
            "Content-Type: command/reply\nReply-Text: -ERR invalid\n\nContent-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
        );
        assert_eq!(out.last(), Some(&Output::Close));
    }

    #[test]
    fn auth_then_commands_get_freeswitchs_replies_one_by_one() {
        let mut s = Session::new("ClueCon");
        let out = run(&mut s, b"auth ClueCon\n\nevent json CHANNEL_CREATE CHANNEL_ANSWER\n\nnixevent CHANNEL_ANSWER\n\nnoevents\n\nnoevents\n\nbogus\n\nexit\n\n");
        let text = sent(&out);
        let replies: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("Reply-Text: ")).collect();
        assert_eq!(
            replies,
            [
                "+OK accepted",
                "+OK event listener enabled json",
                "+OK events nixed",
                "+OK no longer listening for events",
                "-ERR not listening for events",
                "-ERR command not found",
                "+OK bye"
            ]
        );
        assert!(text.ends_with("See you at ClueCon! http://www.cluecon.com/\n"));
    }

    #[test]
    fn bgapi_answers_with_the_job_uuid_the_client_chose() {
        let mut s = Session::new("ClueCon");
        run(&mut s, b"auth ClueCon\n\n");
        let out = run(&mut s, b"bgapi status\nJob-UUID: my-job\n\n");
        assert_eq!(sent(&out), "Content-Type: command/reply\nReply-Text: +OK Job-UUID: my-job\nJob-UUID: my-job\n\n");
        assert_eq!(out[1], Output::Api { command: "status".into(), args: "".into(), job: Some("my-job".into()) });
        let out = run(&mut s, b"bgapi show channels as json\n\n");
        assert_eq!(
            out[1],
            Output::Api { command: "show".into(), args: "channels as json".into(), job: Some("uuid-1".into()) }
        );
    }

    #[test]
    fn events_reach_a_listener_by_name_subclass_and_filter() {
        let mut s = Session::new("ClueCon");
        run(&mut s, b"auth ClueCon\n\nevent plain CHANNEL_ANSWER CUSTOM sofia::register\n\n");
        let ev = |name: &str, sub: Option<&str>, uuid: &str| {
            let mut e = Event::default();
            e.add("Event-Name", name);
            if let Some(sub) = sub {
                e.add("Event-Subclass", sub);
            }
            e.add("Unique-ID", uuid);
            e
        };
        assert!(s.event_frame(&ev("CHANNEL_ANSWER", None, "a")).is_some());
        assert!(s.event_frame(&ev("CHANNEL_CREATE", None, "a")).is_none());
        assert!(s.event_frame(&ev("CUSTOM", Some("sofia::register"), "a")).is_some());
        assert!(s.event_frame(&ev("CUSTOM", Some("sofia::unregister"), "a")).is_none());
        let out = run(&mut s, b"filter Unique-ID b\n\n");
        assert_eq!(sent(&out), "Content-Type: command/reply\nReply-Text: +OK filter added. [Unique-ID]=[b]\n\n");
        assert!(s.event_frame(&ev("CHANNEL_ANSWER", None, "a")).is_none());
        assert!(s.event_frame(&ev("CHANNEL_ANSWER", None, "b")).is_some());
        let out = run(&mut s, b"filter delete Unique-ID b\n\n");
        assert_eq!(sent(&out), "Content-Type: command/reply\nReply-Text: +OK filter deleted. [Unique-ID][b]\n\n");
        assert!(s.event_frame(&ev("CHANNEL_ANSWER", None, "a")).is_some());
        assert_eq!(
            sent(&run(&mut s, b"filter Unique-ID\n\n")),
            "Content-Type: command/reply\nReply-Text: -ERR invalid syntax\n\n"
        );
    }

    #[test]
    fn sendevent_publishes_the_clients_event_with_a_new_uuid() {
        let mut s = Session::new("ClueCon");
        run(&mut s, b"auth ClueCon\n\n");
        let out = run(&mut s, b"sendevent CUSTOM\nEvent-Subclass: my::thing\nContent-Length: 2\n\nhi");
        assert_eq!(sent(&out), "Content-Type: command/reply\nReply-Text: +OK uuid-1\n\n");
        let Output::Publish(e) = &out[1] else { panic!("{out:?}") };
        assert_eq!(e.header("Event-Subclass"), Some("my::thing"));
        assert_eq!(e.header("Event-UUID"), Some("uuid-1"));
        assert_eq!(e.body.as_deref(), Some("hi"));
    }
}
