//! `log/data`: the switch's own log lines to the event socket clients that asked for them
//! (`log <level>`, fs_cli's `/log`), as mod_event_socket sends FreeSWITCH's. A tracing
//! layer ([`EslLog`]) hands every line the switch logs to a bounded broadcast; nothing is
//! formatted while no connection listens, and a connection that falls behind loses lines,
//! never slows the switch.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines waiting for a slow connection, at most (older ones are lost to it).
const LOG_QUEUE: usize = 4096;

/// One log line, as `log/data` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// FreeSWITCH's level number (3 error, 4 warning, 6 info, 7 debug).
    pub level: u8,
    /// Where it was logged: the module path, file and line.
    pub target: String,
    pub file: String,
    pub line: u32,
    /// The line as fs_cli prints it: date, level, where, message and fields.
    pub text: String,
}

impl LogLine {
    /// The `log/data` frame: its headers, then the text as its body.
    pub fn frame(&self) -> Vec<u8> {
        let name = self.file.rsplit('/').next().unwrap_or_default();
        format!(
            "Content-Type: log/data\nContent-Length: {}\nLog-Level: {}\nText-Channel: 3\nLog-File: {name}\nLog-Func: {}\nLog-Line: {}\nUser-Data: \n\n{}",
            self.text.len(),
            self.level,
            self.target,
            self.line,
            self.text
        )
        .into_bytes()
    }
}

/// FreeSWITCH's number for a tracing level.
pub fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn level_name(n: u8) -> &'static str {
    match n {
        3 => "ERR",
        4 => "WARNING",
        6 => "INFO",
        _ => "DEBUG",
    }
}

/// Where the log lines go: made when the first connection asks for them.
static LINES: OnceLock<broadcast::Sender<Arc<LogLine>>> = OnceLock::new();

/// The log lines, for a connection that asked for them.
pub fn subscribe() -> broadcast::Receiver<Arc<LogLine>> {
    LINES.get_or_init(|| broadcast::channel(LOG_QUEUE).0).subscribe()
}

/// The tracing layer that feeds `log/data` (installed with the switch's own log output).
#[derive(Debug, Default, Clone, Copy)]
pub struct EslLog;

impl<S: Subscriber> Layer<S> for EslLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(tx) = LINES.get() else { return };
        if tx.receiver_count() == 0 {
            return; // nobody listens: nothing is formatted
        }
        let meta = event.metadata();
        let level = level_number(meta.level());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = log_date();
        let mut text = format!("{now} [{}] {} {}", level_name(level), meta.target(), fields.message);
        text.push_str(&fields.rest);
        text.push('\n');
        let _ = tx.send(Arc::new(LogLine {
            level,
            target: meta.target().to_string(),
            file: meta.file().unwrap_or_default().to_string(),
            line: meta.line().unwrap_or(0),
            text,
        }));
    }
}

/// A line's message and its other fields (` name=value` each).
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

/// Now as FreeSWITCH's log lines date themselves (`YYYY-MM-DD HH:MM:SS.µµµµµµ`, UTC).
fn log_date() -> String {
    let us = super::server::unix_us();
    format!("{}.{:06}", super::event::local_date(us / 1_000_000), us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_mod_event_sockets_log_data() {
        let l = LogLine {
            level: 4,
            target: "control_plane::esl::server".into(),
            file: "control-plane/src/esl/server.rs".into(),
            line: 180,
            text: "2026-12-02 19:00:00.000001 [WARNING] control_plane::esl::server refused\n".into(),
        };
        let f = String::from_utf8(l.frame()).unwrap();
        assert_eq!(
            f,
            "Content-Type: log/data\nContent-Length: 72\nLog-Level: 4\nText-Channel: 3\nLog-File: server.rs\n\
             Log-Func: control_plane::esl::server\nLog-Line: 180\nUser-Data: \n\n\
             2026-12-02 19:00:00.000001 [WARNING] control_plane::esl::server refused\n"
        );
    }
}
