//! The event socket's API commands (`api`, `bgapi`), run on the switch as FreeSWITCH's
//! mod_commands answers them: the output text clients and exporters parse, byte for
//! byte where they depend on it.

use std::fmt::Write as _;
use std::time::Instant;

use super::Switch;
use crate::b2bua::channel::{Direction, HangupCause};
use crate::b2bua::control::Listing;
use crate::b2bua::Io;
use crate::esl::event::local_date;

/// The FreeSWITCH version ferroswitch answers as (clients check it).
pub const FREESWITCH_VERSION: &str = "1.10.12-release";

/// The columns of `show channels`, in FreeSWITCH's order.
const CHANNEL_COLUMNS: [&str; 38] = [
    "uuid",
    "direction",
    "created",
    "created_epoch",
    "name",
    "state",
    "cid_name",
    "cid_num",
    "ip_addr",
    "dest",
    "application",
    "application_data",
    "dialplan",
    "context",
    "read_codec",
    "read_rate",
    "read_bit_rate",
    "write_codec",
    "write_rate",
    "write_bit_rate",
    "secure",
    "hostname",
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "sent_callee_name",
    "sent_callee_num",
    "initial_cid_name",
    "initial_cid_num",
    "initial_ip_addr",
    "initial_dest",
    "initial_dialplan",
    "initial_context",
];

/// The columns of `show calls` (FreeSWITCH's `basic_calls`): the A-leg's, then the
/// bridged B-leg's.
const CALL_COLUMNS: [&str; 41] = [
    "uuid",
    "direction",
    "created",
    "created_epoch",
    "name",
    "state",
    "cid_name",
    "cid_num",
    "ip_addr",
    "dest",
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "hostname",
    "sent_callee_name",
    "sent_callee_num",
    "b_uuid",
    "b_direction",
    "b_created",
    "b_created_epoch",
    "b_name",
    "b_state",
    "b_cid_name",
    "b_cid_num",
    "b_ip_addr",
    "b_dest",
    "b_presence_id",
    "b_presence_data",
    "b_accountcode",
    "b_callstate",
    "b_callee_name",
    "b_callee_num",
    "b_callee_direction",
    "b_sent_callee_name",
    "b_sent_callee_num",
    "call_created_epoch",
];

/// The columns of `show registrations`, in FreeSWITCH's order.
const REGISTRATION_COLUMNS: [&str; 10] = [
    "reg_user",
    "realm",
    "token",
    "url",
    "expires",
    "network_ip",
    "network_port",
    "network_proto",
    "hostname",
    "metadata",
];

/// What `status` and `uptime` count, kept by the switch.
#[derive(Debug, Default, Clone)]
pub struct ApiState {
    pub started: Option<Instant>,
    pub peak: usize,
    pub hostname: String,
    /// `global_setvar`'s variables.
    pub globals: crate::dialplan::Variables,
    /// `fsctl pause`: new calls are refused (503) until `fsctl resume`.
    pub paused: bool,
    /// `reloadxml` asked for the directory and dialplan to be read again.
    pub reload_requested: bool,
    /// The last `originate` job handed out.
    pub jobs: u64,
    /// `fsctl shutdown`: the switch stops once no call is left.
    pub stop_when_idle: bool,
}

impl Switch {
    /// `originate <args>`: the leg rings; Ok(job): the API's answer comes from
    /// [`Switch::poll_originated`] once it answers or fails. Err: the answer now.
    pub fn start_originate(&mut self, now: Instant, args: &str) -> Result<u64, String> {
        if self.api_state.paused {
            return Err("-ERR the switch is paused (fsctl pause): no new calls\n".into());
        }
        self.api_state.jobs += 1;
        let job = self.api_state.jobs;
        let req = crate::b2bua::originate::parse_originate(args, job).map_err(|u| format!("-USAGE: {u}\n"))?;
        let unix = self.unix(now);
        let started = self.b2bua.originate(&mut io!(self, now, unix), req);
        self.drain(now);
        started.map(|_| job).map_err(|e| format!("-ERR {e}\n"))
    }

    /// The next originate that answered (`+OK <uuid>`) or failed (`-ERR <cause>`), with
    /// its job.
    pub fn poll_originated(&mut self) -> Option<(u64, String)> {
        self.b2bua.poll_originated().map(|o| {
            let text = match o.result {
                Ok(uuid) => format!("+OK {uuid}\n"),
                Err(cause) => format!("-ERR {cause}\n"),
            };
            (o.job, text)
        })
    }

    /// Runs API command `command` with `args`; its output, as `api` gives it.
    pub fn api(&mut self, now: Instant, command: &str, args: &str) -> String {
        let unix = self.unix(now);
        let live = self.b2bua.channels();
        self.api_state.peak = self.api_state.peak.max(live.len());
        match command.to_ascii_lowercase().as_str() {
            "status" => self.status(now, live.len()),
            "version" => {
                format!("FreeSWITCH Version {FREESWITCH_VERSION} (ferroswitch {})\n", env!("CARGO_PKG_VERSION"))
            }
            "uptime" => {
                let up = now.saturating_duration_since(self.api_state.started.unwrap_or(self.epoch));
                match args.trim() {
                    "us" => up.as_micros().to_string(),
                    "ms" => up.as_millis().to_string(),
                    "m" => (up.as_secs() / 60).to_string(),
                    "h" => (up.as_secs() / 3600).to_string(),
                    "d" => (up.as_secs() / 86_400).to_string(),
                    _ => up.as_secs().to_string(),
                }
            }
            "strepoch" => unix.to_string(),
            "hostname" => self.api_state.hostname.clone(),
            "eval" => args.to_string(),
            "module_exists" => {
                let known = ["mod_event_socket", "mod_sofia", "mod_commands", "mod_dptools", "mod_dialplan_xml"];
                (if known.contains(&args.trim()) { "true" } else { "false" }).to_string()
            }
            "show" => self.show(args, &live, unix),
            "uuid_dump" => {
                let mut words = args.split_whitespace();
                let uuid = words.next().unwrap_or_default();
                let Some(info) = self.b2bua.channel_info(uuid) else { return "-ERR No such channel!\n".into() };
                let dump = crate::esl::event::channel_dump(&info);
                match words.next() {
                    Some("json") => {
                        let map: serde_json::Map<String, serde_json::Value> = dump
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                            .collect();
                        serde_json::Value::Object(map).to_string()
                    }
                    _ => dump.headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(),
                }
            }
            "uuid_set_media_stats" => {
                if self.b2bua.exists(args.trim()) {
                    "+OK\n".into()
                } else {
                    "-ERR No such channel!\n".into()
                }
            }
            "json" => self.json_api(now, args, live.len()),
            "uuid_transfer" => {
                let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with('-')).collect();
                let (Some(uuid), Some(dest)) = (words.first(), words.get(1)) else {
                    return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n".into();
                };
                let unix = self.unix(now);
                match self.b2bua.transfer(&mut io!(self, now, unix), uuid, dest, words.get(3).copied()) {
                    Ok(()) => "+OK\n".into(),
                    Err(why) => format!("-ERR {why}\n"),
                }
            }
            "uuid_break" => {
                let unix = self.unix(now);
                let uuid = args.split_whitespace().next().unwrap_or_default();
                if self.b2bua.break_wait(&mut io!(self, now, unix), uuid) {
                    "+OK\n".into()
                } else {
                    "-ERR No such channel!\n".into()
                }
            }
            "global_getvar" => match args.trim() {
                "" => self.api_state.globals.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
                name => self.api_state.globals.get(name).unwrap_or_default().to_string(),
            },
            "global_setvar" => match args.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    self.api_state.globals.set(k.trim(), v.trim().to_string());
                    "+OK\n".into()
                }
                _ => "-USAGE: <var>=<value>\n".into(),
            },
            "fsctl" => match args.split_whitespace().next().unwrap_or_default() {
                // `fsctl shutdown [elegant|cancel|asap|now]`: FreeSWITCH's. Elegant: no new
                // calls, and the switch stops once the last one ends; otherwise every call
                // is hung up and it stops now. The media plane outlives it either way.
                "shutdown" => match args.split_whitespace().nth(1).unwrap_or_default() {
                    "elegant" | "graceful" => {
                        self.api_state.paused = true;
                        self.api_state.stop_when_idle = true;
                        "+OK\n".into()
                    }
                    "cancel" => {
                        self.api_state.paused = false;
                        self.api_state.stop_when_idle = false;
                        "+OK shutdown cancelled\n".into()
                    }
                    "" | "asap" | "now" => {
                        let unix = self.unix(now);
                        self.b2bua.hangup_all(&mut io!(self, now, unix), HangupCause::SYSTEM_SHUTDOWN);
                        self.api_state.paused = true;
                        self.api_state.stop_when_idle = true;
                        "+OK\n".into()
                    }
                    other => format!("-ERR fsctl shutdown {other} is not supported here\n"),
                },
                "pause" => {
                    self.api_state.paused = true;
                    "+OK\n".into()
                }
                "resume" => {
                    self.api_state.paused = false;
                    "+OK\n".into()
                }
                other => format!("-ERR fsctl {other} is not supported here\n"),
            },
            "reloadxml" => {
                self.api_state.reload_requested = true;
                "+OK [Success]\n".into()
            }
            "sofia" => self.sofia(args),
            "uuid_exists" => (if self.b2bua.exists(args.trim()) { "true" } else { "false" }).to_string(),
            "uuid_kill" => {
                let mut words = args.split_whitespace();
                let uuid = words.next().unwrap_or_default();
                let cause = words.next().and_then(HangupCause::from_name).unwrap_or(HangupCause::NORMAL_CLEARING);
                let unix = self.unix(now);
                if self.b2bua.kill(&mut io!(self, now, unix), uuid, cause) {
                    "+OK\n".into()
                } else {
                    "-ERR No such channel!\n".into()
                }
            }
            "hupall" => {
                let cause = args
                    .split_whitespace()
                    .next()
                    .and_then(HangupCause::from_name)
                    .unwrap_or(HangupCause::NORMAL_CLEARING);
                let unix = self.unix(now);
                self.b2bua.hangup_all(&mut io!(self, now, unix), cause);
                "+OK hangup all channels with cause ".to_string() + &cause.to_string() + "\n"
            }
            "uuid_getvar" => {
                let mut words = args.split_whitespace();
                let (uuid, name) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
                match self.b2bua.getvar(uuid, name) {
                    None => "-ERR No such channel!\n".into(),
                    Some(None) => "_undef_".into(),
                    Some(Some(v)) => v,
                }
            }
            "uuid_setvar" => {
                let mut words = args.splitn(3, ' ');
                let (uuid, name, value) =
                    (words.next().unwrap_or_default(), words.next().unwrap_or_default(), words.next());
                if name.is_empty() {
                    return "-USAGE: <uuid> <var> [value]\n".into();
                }
                if self.b2bua.setvar(uuid, name, value.filter(|v| !v.is_empty())) {
                    "+OK\n".into()
                } else {
                    "-ERR No such channel!\n".into()
                }
            }
            _ => format!("-ERR {command} Command not found!\n"),
        }
    }

    /// A `sendmsg` for channel `uuid`: `call-command: hangup` (with `hangup-cause`) or
    /// `execute` (`execute-app-name`, `execute-app-arg` or the body, `loops`, `Event-UUID`
    /// as the Application-UUID); the reply text.
    pub fn sendmsg(&mut self, now: Instant, uuid: &str, headers: &[(String, String)]) -> String {
        let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
        if !self.b2bua.exists(uuid) {
            return format!("-ERR invalid session id [{uuid}]");
        }
        let unix = self.unix(now);
        match get("call-command").map(str::to_ascii_lowercase).as_deref() {
            Some("hangup") => {
                let cause =
                    get("hangup-cause").and_then(HangupCause::from_name).unwrap_or(HangupCause::NORMAL_CLEARING);
                self.b2bua.kill(&mut io!(self, now, unix), uuid, cause);
                "+OK".into()
            }
            Some("execute") => {
                let Some(app) = get("execute-app-name") else { return "-ERR no execute-app-name".into() };
                let data = get("execute-app-arg").or(get("_body")).unwrap_or_default();
                let loops = get("loops").and_then(|l| l.parse().ok()).unwrap_or(1);
                let app_uuid = get("Event-UUID").map(str::to_string);
                self.b2bua.execute(&mut io!(self, now, unix), uuid, (app, data), loops, app_uuid);
                "+OK".into()
            }
            _ => "-ERR invalid command".into(),
        }
    }

    /// The `json` API: `{"command": "status", "data": ""}` answers FreeSWITCH's JSON
    /// status (what exporters read); other commands an error object.
    fn json_api(&self, now: Instant, args: &str, live: usize) -> String {
        let req: serde_json::Value = match serde_json::from_str(args) {
            Ok(v) => v,
            Err(_) => return serde_json::json!({"status": "error", "message": "Invalid JSON command"}).to_string(),
        };
        let command = req["command"].as_str().unwrap_or_default();
        if command != "status" {
            return serde_json::json!({"command": command, "status": "error", "message": "Invalid command"})
                .to_string();
        }
        let up = now.saturating_duration_since(self.api_state.started.unwrap_or(self.epoch));
        let s = up.as_secs();
        let response = serde_json::json!({
            "systemStatus": "ready",
            "uptime": {
                "years": s / (365 * 86_400), "days": s / 86_400 % 365, "hours": s / 3600 % 24,
                "minutes": s / 60 % 60, "seconds": s % 60,
                "milliseconds": up.subsec_millis(), "microseconds": up.subsec_micros() % 1000,
            },
            "version": format!("{FREESWITCH_VERSION} ferroswitch {}", env!("CARGO_PKG_VERSION")),
            "sessions": {
                "count": {
                    "total": self.b2bua.channels_created(), "active": live, "peak": self.api_state.peak,
                    "peak5Min": self.api_state.peak, "limit": self.max_calls,
                },
                "rate": {"current": 0, "max": 30, "peak": 0, "peak5Min": 0},
            },
            "idleCPU": {"used": 0, "allowed": 99},
            "stackSizeKB": {"current": 240, "max": 8192},
        });
        serde_json::json!({"command": "status", "data": req["data"], "status": "success", "response": response})
            .to_string()
    }

    /// `sofia status [profile internal [reg]]`: the one SIP profile, mod_sofia's table.
    fn sofia(&self, args: &str) -> String {
        let words: Vec<&str> = args.split_whitespace().collect();
        let local = self.locals.first().map_or_else(|| "127.0.0.1:5060".to_string(), |p| p.local.to_string());
        match words.as_slice() {
            ["status"] => {
                let rule = "=".repeat(97);
                format!(
                    "{:>25}\t{:>7}\t{:>42}\t{}\n{rule}\n{:>25}\t{:>7}\t{:>42}\tRUNNING ({})\n{rule}\n1 profile 0 aliases\n",
                    "Name", "Type", "Data", "State", "internal", "profile", format!("sip:mod_sofia@{local}"), self.b2bua.live_channels()
                )
            }
            ["status", "profile", "internal", rest @ ..] => {
                let mut out = format!(
                    "{rule}\nName             \tinternal\nDomain Name      \tN/A\nSIP-IP           \t{ip}\nURL              \tsip:mod_sofia@{local}\nCALLS-IN         \t{calls}\nREGISTRATIONS    \t{regs}\n{rule}\n",
                    rule = "=".repeat(97),
                    ip = local.rsplit_once(':').map_or(local.as_str(), |(ip, _)| ip),
                    calls = self.b2bua.len(),
                    regs = self.registrar.aor_count(),
                );
                if rest.first() == Some(&"reg") {
                    let unix = self.epoch_unix + self.epoch.elapsed().as_secs();
                    for row in self.registration_rows(unix) {
                        out.push_str(&format!(
                            "Call-ID:    \t{}\nUser:       \t{}@{}\nContact:    \t{}\n\n",
                            row[2], row[0], row[1], row[3]
                        ));
                    }
                }
                out
            }
            _ => "-ERR Usage: sofia status [profile internal [reg]]\n".into(),
        }
    }

    /// Whether `reloadxml` asked for a reload (the flag is cleared).
    pub fn take_reload_request(&mut self) -> bool {
        std::mem::take(&mut self.api_state.reload_requested)
    }

    /// Whether `fsctl shutdown` asked the switch to stop and no call is left.
    pub fn stop_due(&self) -> bool {
        self.api_state.stop_when_idle && self.b2bua.is_empty()
    }

    /// The next outbound connection to make: the application server, the channel's uuid,
    /// and its data for `connect` (a CHANNEL_DATA event's headers).
    pub fn poll_socket(&mut self) -> Option<(String, String, crate::esl::event::Event)> {
        let (target, uuid) = self.b2bua.poll_socket()?;
        let info = self.b2bua.channel_info(&uuid)?;
        let mut data = crate::esl::event::Event::default();
        data.add("Event-Name", "CHANNEL_DATA");
        data.headers.extend(crate::esl::event::channel_dump(&info).headers);
        // Its events go to the connection from now on.
        self.set_events(true);
        Some((target, uuid, data))
    }

    /// The outbound connection of channel `uuid` ended.
    pub fn socket_done(&mut self, now: Instant, uuid: &str) {
        let unix = self.unix(now);
        self.b2bua.socket_done(&mut io!(self, now, unix), uuid);
    }

    /// A HEARTBEAT event's headers, as FreeSWITCH sends them every event-heartbeat-interval.
    pub fn heartbeat(&mut self, now: Instant) -> Vec<(&'static str, String)> {
        let live = self.b2bua.live_channels();
        self.api_state.peak = self.api_state.peak.max(live);
        let up = now.saturating_duration_since(self.api_state.started.unwrap_or(self.epoch));
        let status = self.status(now, live);
        let up_time = status.lines().next().unwrap_or_default().trim_start_matches("UP ").to_string();
        vec![
            ("Event-Info", "System Ready".into()),
            ("Up-Time", up_time),
            ("FreeSWITCH-Version", FREESWITCH_VERSION.into()),
            ("Uptime-msec", up.as_millis().to_string()),
            ("Session-Count", live.to_string()),
            ("Max-Sessions", self.max_calls.to_string()),
            ("Session-Per-Sec", "30".into()),
            ("Session-Per-Sec-Last", "0".into()),
            ("Session-Per-Sec-Max", "0".into()),
            ("Session-Per-Sec-FiveMin", "0".into()),
            ("Session-Since-Startup", self.b2bua.channels_created().to_string()),
            ("Session-Peak-Max", self.api_state.peak.to_string()),
            ("Session-Peak-FiveMin", self.api_state.peak.to_string()),
            ("Idle-CPU", "99.000000".into()),
        ]
    }

    /// `status`, in FreeSWITCH's lines (the two session lines end with a space).
    fn status(&self, now: Instant, live: usize) -> String {
        let up = now.saturating_duration_since(self.api_state.started.unwrap_or(self.epoch));
        let secs = up.as_secs();
        let unit = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let mut out = format!(
            "UP {}, {}, {}, {}, {}, {}, {}\n",
            unit(secs / (365 * 86_400), "year"),
            unit(secs / 86_400 % 365, "day"),
            unit(secs / 3600 % 24, "hour"),
            unit(secs / 60 % 60, "minute"),
            unit(secs % 60, "second"),
            unit(u64::from(up.subsec_millis()), "millisecond"),
            unit(u64::from(up.subsec_micros() % 1000), "microsecond"),
        );
        let _ = writeln!(
            out,
            "FreeSWITCH (Version {FREESWITCH_VERSION} ferroswitch {} 64bit) is ready",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(out, "{} session(s) since startup", self.b2bua.channels_created());
        let _ = writeln!(out, "{live} session(s) - peak {}, last 5min {} ", self.api_state.peak, self.api_state.peak);
        let _ = writeln!(out, "0 session(s) per Sec out of max 30, peak 0, last 5min 0 ");
        let _ = writeln!(out, "{} session(s) max", self.max_calls);
        let _ = writeln!(out, "min idle cpu 0.00/99.00");
        out
    }

    /// `show channels|calls [count] [as json|delim]`.
    fn show(&self, args: &str, live: &[Listing], unix: u64) -> String {
        let words: Vec<&str> = args.split_whitespace().collect();
        let what = words.first().map(|w| w.to_ascii_lowercase()).unwrap_or_default();
        let format = match words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
            Some(i) => words.get(i + 1).map(|f| f.to_ascii_lowercase()).unwrap_or_default(),
            None => "delim".into(),
        };
        let (columns, rows): (&[&str], Vec<Vec<String>>) = match what.as_str() {
            "channels" => (
                &CHANNEL_COLUMNS,
                live.iter().map(|l| CHANNEL_COLUMNS.iter().map(|c| self.value(Some(l), c)).collect()).collect(),
            ),
            // One row per call: its A-leg, and the B-leg bridged to it.
            "calls" => (
                &CALL_COLUMNS,
                live.iter()
                    .filter(|l| l.info.direction == Direction::Inbound)
                    .map(|a| {
                        let b = live
                            .iter()
                            .find(|l| l.info.direction == Direction::Outbound && l.info.call_uuid == a.info.uuid);
                        CALL_COLUMNS
                            .iter()
                            .map(|c| match (c.strip_prefix("b_"), *c) {
                                (Some(col), _) => self.value(b, col),
                                (None, "call_created_epoch") => self.value(Some(a), "created_epoch"),
                                (None, col) => self.value(Some(a), col),
                            })
                            .collect()
                    })
                    .collect(),
            ),
            "registrations" => (&REGISTRATION_COLUMNS, self.registration_rows(unix)),
            _ => return "-USAGE: calls|channels|registrations [count] [as json|delim]\n".into(),
        };
        if words.get(1).is_some_and(|w| w.eq_ignore_ascii_case("count")) {
            return format!("\n{} total.\n", rows.len());
        }
        match format.as_str() {
            "json" => {
                if rows.is_empty() {
                    return "{\"row_count\": 0}\n".into();
                }
                let mut out = format!("{{\"row_count\":{},\"rows\":[", rows.len());
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('{');
                    for (j, (c, v)) in columns.iter().zip(r).enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}:{}", serde_json::Value::from(*c), serde_json::Value::from(v.as_str()));
                    }
                    out.push('}');
                }
                out.push_str("]}");
                out
            }
            "delim" | "" => {
                if rows.is_empty() {
                    return "\n0 total.\n".into();
                }
                let mut out = columns.join(",");
                out.push('\n');
                for r in &rows {
                    out.push_str(&r.join(","));
                    out.push('\n');
                }
                let _ = write!(out, "\n{} total.\n", rows.len());
                out
            }
            other => format!("-ERR Cannot find format {other}\n"),
        }
    }

    /// `show registrations`' rows, in [`REGISTRATION_COLUMNS`]' order, by user.
    fn registration_rows(&self, unix: u64) -> Vec<Vec<String>> {
        let mut all = self.registrar.all(unix);
        all.sort_by(|a, b| a.0.cmp(b.0).then(a.1.contact.cmp(&b.1.contact)));
        all.into_iter()
            .map(|(aor, b)| {
                let proto = if b.source.transport == crate::sip::transport::TransportKind::Tcp { "tcp" } else { "udp" };
                vec![
                    aor.to_string(),
                    self.realm.clone(),
                    b.call_id.clone(),
                    b.contact.clone(),
                    b.expires_at.to_string(),
                    b.source.remote.ip().to_string(),
                    b.source.remote.port().to_string(),
                    proto.to_string(),
                    self.api_state.hostname.clone(),
                    String::new(),
                ]
            })
            .collect()
    }

    /// Column `column` of `show channels` (and `show calls`) for channel `l` (None: empty).
    fn value(&self, l: Option<&Listing>, column: &str) -> String {
        let Some(l) = l else { return String::new() };
        let c = &l.info;
        let created = c.times.created / 1_000_000;
        let app = l.application.as_ref();
        match column {
            "uuid" => c.uuid.clone(),
            "direction" => (if c.direction == Direction::Inbound { "inbound" } else { "outbound" }).into(),
            "created" => local_date(created),
            "created_epoch" => created.to_string(),
            "name" => c.name.clone(),
            "state" => c.state.to_string(),
            "cid_name" | "initial_cid_name" => c.caller_id_name.clone(),
            "cid_num" | "initial_cid_num" => c.caller_id_number.clone(),
            "ip_addr" | "initial_ip_addr" => c.network_addr.clone(),
            "dest" | "initial_dest" => c.destination_number.clone(),
            "application" => app.map(|a| a.0.clone()).unwrap_or_default(),
            "application_data" => app.map(|a| a.1.clone()).unwrap_or_default(),
            "dialplan" | "initial_dialplan" => "XML".into(),
            "context" | "initial_context" => c.context.clone(),
            "hostname" => self.api_state.hostname.clone(),
            "callstate" => c.call_state.to_string(),
            "call_uuid" => c.call_uuid.clone(),
            _ => String::new(),
        }
    }
}
