//! Events as the event socket sends them: ordered `Name: value` headers and an optional
//! body, serialized as FreeSWITCH does for `text/event-plain` (values URL-encoded),
//! `text/event-json` and `text/event-xml`; the standard headers every event starts with;
//! and the B2BUA's channel events turned into FreeSWITCH's headers.

use std::fmt::Write as _;

use crate::b2bua::channel::Direction;
use crate::b2bua::events::{ChannelEvent, ChannelInfo};

/// What the standard headers say of this switch.
#[derive(Debug, Clone)]
pub struct Core {
    /// `Core-UUID`: one per process.
    pub uuid: String,
    pub hostname: String,
    pub ipv4: String,
    pub ipv6: String,
}

/// The event formats a listener can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
    Xml,
}

impl Format {
    pub fn parse(word: &str) -> Option<Format> {
        match word.to_ascii_lowercase().as_str() {
            "plain" => Some(Format::Plain),
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }
}

/// One event: headers in order (a name may repeat) and a body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Event {
    /// An event named `name` (with `subclass` for CUSTOM) with the standard headers, at
    /// `unix_us`, number `seq`.
    pub fn new(name: &str, subclass: Option<&str>, core: &Core, unix_us: u64, seq: u64) -> Event {
        let mut e = Event::default();
        let secs = unix_us / 1_000_000;
        e.add("Event-Name", name);
        e.add("Core-UUID", &core.uuid);
        e.add("FreeSWITCH-Hostname", &core.hostname);
        e.add("FreeSWITCH-Switchname", &core.hostname);
        e.add("FreeSWITCH-IPv4", &core.ipv4);
        e.add("FreeSWITCH-IPv6", &core.ipv6);
        e.add("Event-Date-Local", &local_date(secs));
        e.add("Event-Date-GMT", &gmt_date(secs));
        e.add("Event-Date-Timestamp", &unix_us.to_string());
        e.add("Event-Calling-File", "ferroswitch");
        e.add("Event-Calling-Function", name);
        e.add("Event-Calling-Line-Number", "0");
        e.add("Event-Sequence", &seq.to_string());
        if let Some(s) = subclass {
            e.add("Event-Subclass", s);
        }
        e
    }

    /// Adds a header (FreeSWITCH stores no empty value: an empty one is left out).
    pub fn add(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.headers.push((name.to_string(), value.to_string()));
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn name(&self) -> &str {
        self.header("Event-Name").unwrap_or_default()
    }

    /// A channel event of the B2BUA with FreeSWITCH's headers, in its order.
    pub fn from_channel(ce: &ChannelEvent, core: &Core, seq: u64) -> Event {
        let mut e = Event::new(ce.name.as_str(), None, core, ce.unix_us, seq);
        for (n, v) in &ce.before {
            e.add(n, v);
        }
        channel_headers(&mut e, &ce.channel);
        if let Some((kind, other)) = &ce.other {
            e.add("Other-Type", kind);
            profile_headers(&mut e, "Other-Leg", other);
        }
        if ce.name.carries_variables() {
            for (k, v) in &ce.channel.variables {
                e.add(&format!("variable_{k}"), v);
            }
        }
        for (n, v) in &ce.after {
            e.add(n, v);
        }
        e
    }

    /// `text/event-plain`'s serialization: `Name: url-encoded value` lines, then an empty
    /// line, or `Content-Length` and the body.
    pub fn plain(&self) -> String {
        let mut out = String::with_capacity(64 * self.headers.len());
        for (n, v) in &self.headers {
            let _ = writeln!(out, "{n}: {}", url_encode(v));
        }
        match &self.body {
            Some(b) if !b.is_empty() => {
                let _ = write!(out, "Content-Length: {}\n\n{b}", b.len());
            }
            _ => out.push('\n'),
        }
        out
    }

    /// `text/event-json`'s serialization: one compact object, every value a string,
    /// the body as `_body` after its `Content-Length`.
    pub fn json(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        let mut field = |out: &mut String, k: &str, v: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            json_string(out, k);
            out.push(':');
            json_string(out, v);
        };
        for (n, v) in &self.headers {
            field(&mut out, n, v);
        }
        if let Some(b) = self.body.as_deref().filter(|b| !b.is_empty()) {
            field(&mut out, "Content-Length", &b.len().to_string());
            field(&mut out, "_body", b);
        }
        out.push('}');
        out
    }

    /// `text/event-xml`'s serialization: `<event><headers>` with an element per header
    /// (values URL-encoded, then escaped), and the body.
    pub fn xml(&self) -> String {
        let mut out = String::from("<event>\n  <headers>\n");
        for (n, v) in &self.headers {
            let _ = writeln!(out, "    <{n}>{}</{n}>", xml_escape(&url_encode(v)));
        }
        out.push_str("  </headers>\n");
        if let Some(b) = self.body.as_deref().filter(|b| !b.is_empty()) {
            let _ = writeln!(out, "  <Content-Length>{}</Content-Length>\n  <body>{}</body>", b.len(), xml_escape(b));
        }
        out.push_str("</event>\n");
        out
    }

    /// The whole frame for a listener: `Content-Length`, `Content-Type: text/event-*`,
    /// an empty line, the serialized event.
    pub fn frame(&self, format: Format) -> Vec<u8> {
        let text = match format {
            Format::Plain => self.plain(),
            Format::Json => self.json(),
            Format::Xml => self.xml(),
        };
        let mut out = format!("Content-Length: {}\nContent-Type: text/event-{}\n\n", text.len(), format.as_str());
        out.push_str(&text);
        out.into_bytes()
    }
}

/// A channel's data as `uuid_dump` gives it: its channel headers and its variables.
pub fn channel_dump(c: &ChannelInfo) -> Event {
    let mut e = Event::default();
    channel_headers(&mut e, c);
    for (k, v) in &c.variables {
        e.add(&format!("variable_{k}"), v);
    }
    e
}

/// The channel data FreeSWITCH puts on a channel event, in its order.
fn channel_headers(e: &mut Event, c: &ChannelInfo) {
    e.add("Channel-State", &c.state.to_string());
    e.add("Channel-Call-State", &c.call_state.to_string());
    e.add("Channel-State-Number", &c.state_number.to_string());
    e.add("Channel-Name", &c.name);
    e.add("Unique-ID", &c.uuid);
    let direction = direction(c.direction);
    e.add("Call-Direction", direction);
    e.add("Presence-Call-Direction", direction);
    e.add("Channel-HIT-Dialplan", if c.direction == Direction::Inbound { "true" } else { "false" });
    e.add("Channel-Call-UUID", &c.call_uuid);
    e.add("Answer-State", c.answer_state);
    if let Some(cause) = c.hangup_cause {
        e.add("Hangup-Cause", &cause.to_string());
    }
    profile_headers(e, "Caller", c);
}

/// A caller profile's headers with `prefix` (`Caller`, `Other-Leg`).
fn profile_headers(e: &mut Event, prefix: &str, c: &ChannelInfo) {
    let mut add = |name: &str, value: &str| e.add(&format!("{prefix}-{name}"), value);
    let direction = direction(c.direction);
    add("Direction", direction);
    add("Logical-Direction", direction);
    add("Username", &c.username);
    add("Dialplan", "XML");
    add("Caller-ID-Name", &c.caller_id_name);
    add("Caller-ID-Number", &c.caller_id_number);
    add("Orig-Caller-ID-Name", &c.caller_id_name);
    add("Orig-Caller-ID-Number", &c.caller_id_number);
    add("Network-Addr", &c.network_addr);
    add("ANI", &c.caller_id_number);
    add("Destination-Number", &c.destination_number);
    add("Unique-ID", &c.uuid);
    add("Source", "mod_sofia");
    add("Context", &c.context);
    add("Channel-Name", &c.name);
    add("Profile-Index", "1");
    let t = c.times;
    for (name, at) in [
        ("Profile-Created-Time", t.created),
        ("Channel-Created-Time", t.created),
        ("Channel-Answered-Time", t.answered),
        ("Channel-Progress-Time", t.progress),
        ("Channel-Progress-Media-Time", t.progress_media),
        ("Channel-Hangup-Time", t.hangup),
        ("Channel-Transfer-Time", 0),
        ("Channel-Resurrect-Time", 0),
        ("Channel-Bridged-Time", t.bridged),
        ("Channel-Last-Hold", 0),
        ("Channel-Hold-Accum", 0),
    ] {
        add(name, &at.to_string());
    }
    add("Screen-Bit", "true");
    add("Privacy-Hide-Name", "false");
    add("Privacy-Hide-Number", "false");
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// FreeSWITCH's URL encoding of header values: `%XX` (upper-case hex) for control bytes,
/// bytes above `~`, and ` #%&+:;<=>?@[\]^`{|}"` and CR, LF; a `%` already followed by two
/// upper-case hex digits passes as it is.
pub fn url_encode(v: &str) -> String {
    const SPECIAL: &[u8] = b" #%&+:;<=>?@[\\]^`{|}\"";
    let b = v.as_bytes();
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        let hex2 = |j: usize| b.get(j).is_some_and(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(x));
        let escaped = c == b'%' && hex2(i + 1) && hex2(i + 2);
        if !escaped && (!(0x20..=0x7e).contains(&c) || SPECIAL.contains(&c)) {
            let _ = write!(out, "%{c:02X}");
        } else {
            out.push(c as char);
        }
    }
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if !c.is_ascii() => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `Event-Date-Local`: `YYYY-MM-DD HH:MM:SS` (the switch keeps UTC as its local time).
pub fn local_date(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `Event-Date-GMT`: `Ddd, DD Mmm YYYY HH:MM:SS GMT`.
pub fn gmt_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let (y, m, d) = civil(days as i64);
    let s = secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core { uuid: "core-1".into(), hostname: "sw".into(), ipv4: "127.0.0.1".into(), ipv6: "::1".into() }
    }

    #[test]
    fn url_encoding_is_freeswitchs() {
        assert_eq!(url_encode("2015-01-28 15:00:44"), "2015-01-28%2015%3A00%3A44");
        assert_eq!(url_encode("Wed, 28 Jan 2015 18:00:44 GMT"), "Wed,%2028%20Jan%202015%2018%3A00%3A44%20GMT");
        assert_eq!(url_encode("::1"), "%3A%3A1");
        assert_eq!(url_encode("sofia/internal/1001@10.0.0.1"), "sofia/internal/1001%4010.0.0.1");
        assert_eq!(url_encode("%(2000,4000)"), "%25(2000,4000)");
        assert_eq!(url_encode("a%20b"), "a%20b", "already encoded");
        assert_eq!(url_encode("é\n"), "%C3%A9%0A");
        assert_eq!(url_encode("!$'()*,-./_~"), "!$'()*,-./_~");
    }

    #[test]
    fn dates_are_freeswitchs() {
        // 2015-01-28 18:00:44 UTC, FreeSWITCH's own example.
        assert_eq!(gmt_date(1_422_468_044), "Wed, 28 Jan 2015 18:00:44 GMT");
        assert_eq!(local_date(1_422_468_044), "2015-01-28 18:00:44");
        assert_eq!(gmt_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(local_date(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn the_standard_headers_come_first_in_freeswitchs_order() {
        let e = Event::new("HEARTBEAT", None, &core(), 1_422_468_044_671_081, 7);
        let names: Vec<&str> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Event-Name",
                "Core-UUID",
                "FreeSWITCH-Hostname",
                "FreeSWITCH-Switchname",
                "FreeSWITCH-IPv4",
                "FreeSWITCH-IPv6",
                "Event-Date-Local",
                "Event-Date-GMT",
                "Event-Date-Timestamp",
                "Event-Calling-File",
                "Event-Calling-Function",
                "Event-Calling-Line-Number",
                "Event-Sequence"
            ]
        );
        assert_eq!(e.header("Event-Date-Timestamp"), Some("1422468044671081"));
    }

    #[test]
    fn plain_json_and_xml_frames_are_exact() {
        let mut e = Event::default();
        e.add("Event-Name", "BACKGROUND_JOB");
        e.add("Job-Command", "status now");
        e.body = Some("+OK \"x\"\n".into());
        assert_eq!(
            e.plain(),
            "Event-Name: BACKGROUND_JOB\nJob-Command: status%20now\nContent-Length: 8\n\n+OK \"x\"\n"
        );
        assert_eq!(
            e.json(),
            r#"{"Event-Name":"BACKGROUND_JOB","Job-Command":"status now","Content-Length":"8","_body":"+OK \"x\"\n"}"#
        );
        assert_eq!(
            e.xml(),
            "<event>\n  <headers>\n    <Event-Name>BACKGROUND_JOB</Event-Name>\n    <Job-Command>status%20now</Job-Command>\n  </headers>\n  <Content-Length>8</Content-Length>\n  <body>+OK \"x\"\n</body>\n</event>\n"
        );
        let plain = e.plain();
        assert_eq!(
            String::from_utf8(e.frame(Format::Plain)).unwrap(),
            format!("Content-Length: {}\nContent-Type: text/event-plain\n\n{plain}", plain.len())
        );
        let mut empty = Event::default();
        empty.add("Event-Name", "HEARTBEAT");
        empty.add("Empty", "");
        assert_eq!(empty.plain(), "Event-Name: HEARTBEAT\n\n", "no body: an empty line; empty values left out");
    }
}
