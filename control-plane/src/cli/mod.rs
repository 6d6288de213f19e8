//! `ferroswitch cli`: fs_cli's habits over the event socket. `-x CMD` runs API commands
//! and prints their output (for scripts); without it, an interactive session where a line
//! is an API command and `/`-commands drive the socket (`/log LEVEL`, `/event plain ALL`,
//! `/exit`), with events and log lines printed as they come.

mod edit;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

const USAGE: &str = "usage: ferroswitch cli [-H HOST] [-P PORT] [-p PASSWORD] [-x COMMAND]... [-T TIMEOUT_MS]
  -H HOST        the event socket's host (127.0.0.1)
  -P PORT        its port (8021)
  -p PASSWORD    its password (ClueCon)
  -x COMMAND     run the API command, print its output and exit (repeatable)
  -T TIMEOUT_MS  how long to wait for each answer (10000)
Interactively, a line is an API command; /log LEVEL, /nolog, /event plain ALL,
/noevents, /filter ..., /help and /exit (or /quit, /bye) drive the socket itself.";

/// One frame from the switch: its head lines and its body.
struct Frame {
    head: Vec<(String, String)>,
    body: String,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one frame; None when the connection is closed.
fn read_frame(r: &mut impl BufRead) -> Option<Frame> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if head.is_empty() {
                continue;
            }
            break;
        }
        let (n, v) = line.split_once(':').map_or((line, ""), |(n, v)| (n, v.trim_start()));
        head.push((n.to_string(), v.to_string()));
    }
    let len = head.iter().find(|(n, _)| n.eq_ignore_ascii_case("Content-Length")).and_then(|(_, v)| v.parse().ok());
    let mut body = vec![0u8; len.unwrap_or(0)];
    r.read_exact(&mut body).ok()?;
    Some(Frame { head, body: String::from_utf8_lossy(&body).into_owned() })
}

struct Options {
    host: String,
    port: u16,
    password: String,
    execute: Vec<String>,
    timeout: Duration,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port: 8021,
        password: "ClueCon".into(),
        execute: Vec::new(),
        timeout: Duration::from_secs(10),
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "-H" | "--host" => o.host = value("-H")?,
            "-P" | "--port" => o.port = value("-P")?.parse().map_err(|_| "-P needs a port number".to_string())?,
            "-p" | "--password" => o.password = value("-p")?,
            "-x" | "--execute" => o.execute.push(value("-x")?),
            "-T" | "--timeout" => {
                let ms: u64 = value("-T")?.parse().map_err(|_| "-T needs milliseconds".to_string())?;
                o.timeout = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Runs `ferroswitch cli` with the arguments after `cli`.
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ferroswitch cli: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stream = match TcpStream::connect((o.host.as_str(), o.port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferroswitch cli: cannot connect to {}:{}: {e}", o.host, o.port);
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(o.timeout));
    let Ok(mut w) = stream.try_clone() else { return ExitCode::FAILURE };
    let mut r = BufReader::new(stream);
    match read_frame(&mut r) {
        Some(f) if f.header("Content-Type") == Some("auth/request") => {}
        _ => {
            eprintln!("ferroswitch cli: {}:{} is not an event socket", o.host, o.port);
            return ExitCode::FAILURE;
        }
    }
    let _ = write!(w, "auth {}\n\n", o.password);
    match read_frame(&mut r) {
        Some(f) if f.header("Reply-Text") == Some("+OK accepted") => {}
        Some(f) => {
            eprintln!("ferroswitch cli: authentication failed: {}", f.header("Reply-Text").unwrap_or("no reply"));
            return ExitCode::FAILURE;
        }
        None => {
            eprintln!("ferroswitch cli: the switch closed the connection");
            return ExitCode::FAILURE;
        }
    }
    if !o.execute.is_empty() {
        for cmd in &o.execute {
            let _ = write!(w, "api {cmd}\n\n");
            loop {
                match read_frame(&mut r) {
                    Some(f) if f.header("Content-Type") == Some("api/response") => {
                        print!("{}", f.body);
                        if !f.body.ends_with('\n') {
                            println!();
                        }
                        break;
                    }
                    Some(_) => continue,
                    None => {
                        eprintln!("ferroswitch cli: no answer to {cmd:?} in {:?}", o.timeout);
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    interactive(&o, r, w)
}

/// The interactive session: in a terminal, with line editing, history and completion;
/// otherwise plain lines.
fn interactive(o: &Options, r: BufReader<TcpStream>, w: TcpStream) -> ExitCode {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return terminal::run(o, r, w);
    }
    lines(o, r, w)
}

/// What a typed line sends: `/`-commands drive the socket, anything else is an API
/// command; None for /exit (and /help, answered here).
fn command_of(line: &str) -> Option<String> {
    match line.strip_prefix('/') {
        Some("exit" | "quit" | "bye") => None,
        Some(socket_cmd) => Some(socket_cmd.to_string()),
        None => Some(format!("api {line}")),
    }
}

/// Plain lines from a pipe, frames printed by a reader thread.
fn lines(o: &Options, mut r: BufReader<TcpStream>, mut w: TcpStream) -> ExitCode {
    let _ = r.get_ref().set_read_timeout(None);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut out = std::io::stdout();
        while let Some(f) = read_frame(&mut r) {
            match f.header("Content-Type").unwrap_or_default() {
                "api/response" | "log/data" => {
                    let _ = write!(out, "{}", f.body);
                    if !f.body.ends_with('\n') {
                        let _ = writeln!(out);
                    }
                }
                "command/reply" => {
                    let _ = writeln!(out, "{}", f.header("Reply-Text").unwrap_or_default());
                }
                "text/disconnect-notice" => break,
                _ => {
                    let _ = write!(out, "{}", f.body);
                }
            }
            let _ = out.flush();
            let _ = done_tx.send(());
        }
    });
    let prompt = format!("ferroswitch@{}> ", o.host);
    println!("ferroswitch cli: connected to {}:{}; /help for help, /exit to leave", o.host, o.port);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let Some(Ok(line)) = lines.next() else {
            let _ = w.write_all(b"exit\n\n");
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/help" {
            println!("{USAGE}");
            continue;
        }
        let Some(cmd) = command_of(line) else {
            let _ = w.write_all(b"exit\n\n");
            break;
        };
        if w.write_all(format!("{cmd}\n\n").as_bytes()).is_err() {
            eprintln!("ferroswitch cli: the switch closed the connection");
            return ExitCode::FAILURE;
        }
        // Wait for the answer before the next prompt (events may come meanwhile).
        let _ = done_rx.recv_timeout(o.timeout);
    }
    let _ = reader.join();
    ExitCode::SUCCESS
}

/// The CLI in a terminal: raw mode, the [`edit::Editor`], frames printed above the prompt.
mod terminal {
    use std::io::{BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::ExitCode;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::edit::{keys, Action, Editor, Key};
    use super::{command_of, read_frame, Frame, Options, USAGE};

    /// What Tab completes a line's first word to.
    const COMMANDS: &[&str] = &[
        "status",
        "version",
        "uptime",
        "show",
        "originate",
        "uuid_kill",
        "uuid_transfer",
        "uuid_break",
        "global_getvar",
        "global_setvar",
        "fsctl",
        "reloadxml",
        "sofia",
        "uuid_dump",
        "uuid_exists",
        "uuid_getvar",
        "uuid_setvar",
        "uuid_set_media_stats",
        "hupall",
        "strepoch",
        "eval",
        "module_exists",
        "hostname",
        "json",
        "/log",
        "/nolog",
        "/event",
        "/noevents",
        "/filter",
        "/exit",
        "/quit",
        "/help",
    ];

    /// The terminal in raw mode (no echo, no line buffering, no signals from keys) until
    /// dropped.
    struct Raw(libc::termios);

    impl Raw {
        fn on() -> Option<Raw> {
            // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: stdin's fd and a valid termios.
            if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
            t.c_iflag &= !(libc::IXON | libc::ICRNL);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            // SAFETY: as above.
            (unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } == 0).then_some(Raw(saved))
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: restores what tcgetattr gave.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
        }
    }

    /// Whether stdin has bytes within `wait`.
    fn readable(wait: Duration) -> bool {
        let mut p = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) > 0 }
    }

    fn print_frame(out: &mut impl Write, f: &Frame) {
        let text = match f.header("Content-Type").unwrap_or_default() {
            "command/reply" => format!("{}\n", f.header("Reply-Text").unwrap_or_default()),
            _ => f.body.clone(),
        };
        let _ = write!(out, "\r\x1b[K{}", text.replace('\n', "\r\n"));
        if !text.ends_with('\n') {
            let _ = write!(out, "\r\n");
        }
    }

    fn redraw(out: &mut impl Write, prompt: &str, e: &Editor) {
        let line = e.line();
        let back = line.chars().count() - e.cursor();
        let _ = write!(out, "\r\x1b[K{prompt}{line}");
        if back > 0 {
            let _ = write!(out, "\x1b[{back}D");
        }
        let _ = out.flush();
    }

    /// The uuids of the live channels, asked of the switch (frames that come meanwhile
    /// are printed).
    fn uuids(w: &mut TcpStream, frames: &mpsc::Receiver<Frame>, out: &mut impl Write) -> Vec<String> {
        if w.write_all(b"api show channels as json\n\n").is_err() {
            return Vec::new();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(f) = frames.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if f.header("Content-Type") == Some("api/response") {
                let v: serde_json::Value = serde_json::from_str(&f.body).unwrap_or_default();
                return v["rows"]
                    .as_array()
                    .map(|rows| rows.iter().filter_map(|r| r["uuid"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
            }
            print_frame(out, &f);
        }
        Vec::new()
    }

    pub(super) fn run(o: &Options, mut r: BufReader<TcpStream>, mut w: TcpStream) -> ExitCode {
        let _ = r.get_ref().set_read_timeout(None);
        let (tx, frames) = mpsc::channel::<Frame>();
        let reader = std::thread::spawn(move || {
            while let Some(f) = read_frame(&mut r) {
                let end = f.header("Content-Type") == Some("text/disconnect-notice");
                if tx.send(f).is_err() || end {
                    break;
                }
            }
        });
        let Some(raw) = Raw::on() else { return super::lines(o, BufReader::new(w.try_clone().unwrap()), w) };
        let mut out = std::io::stdout();
        let prompt = format!("ferroswitch@{}> ", o.host);
        let _ = write!(out, "ferroswitch cli: connected to {}:{}; /help for help, /exit to leave\r\n", o.host, o.port);
        let mut e = Editor::new();
        redraw(&mut out, &prompt, &e);
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        'session: loop {
            let mut printed = false;
            while let Ok(f) = frames.try_recv() {
                if f.header("Content-Type") == Some("text/disconnect-notice") {
                    break 'session;
                }
                print_frame(&mut out, &f);
                printed = true;
            }
            if printed {
                redraw(&mut out, &prompt, &e);
            }
            if !readable(Duration::from_millis(50)) {
                continue;
            }
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for key in keys(&buf[..n]) {
                let candidates = if key == Key::Tab {
                    let before: String = e.line().chars().take(e.cursor()).collect();
                    let mut words = before.split(' ');
                    let first = words.next().unwrap_or_default().to_string();
                    if words.next().is_none() {
                        COMMANDS.iter().map(|c| c.to_string()).collect()
                    } else if first.starts_with("uuid_") {
                        uuids(&mut w, &frames, &mut out)
                    } else if first == "show" {
                        ["channels", "calls", "registrations"].iter().map(|c| c.to_string()).collect()
                    } else {
                        Vec::new()
                    }
                } else {
                    Vec::new()
                };
                match e.key(key, |_| candidates) {
                    Action::Redraw => {}
                    Action::Candidates(list) => {
                        let _ = write!(out, "\r\n{}\r\n", list.join("  "));
                    }
                    Action::End => break 'session,
                    Action::Submit(line) => {
                        let _ = write!(out, "\r\n");
                        let line = line.trim();
                        if line.is_empty() {
                        } else if line == "/help" {
                            let _ = write!(out, "{}\r\n", USAGE.replace('\n', "\r\n"));
                        } else {
                            match command_of(line) {
                                None => break 'session,
                                Some(cmd) => {
                                    if w.write_all(format!("{cmd}\n\n").as_bytes()).is_err() {
                                        break 'session;
                                    }
                                    // The answer before the next prompt, when it comes soon.
                                    if let Ok(f) = frames.recv_timeout(o.timeout) {
                                        print_frame(&mut out, &f);
                                    }
                                }
                            }
                        }
                    }
                }
                redraw(&mut out, &prompt, &e);
            }
        }
        let _ = w.write_all(b"exit\n\n");
        drop(raw);
        let _ = write!(out, "\r\n");
        let _ = reader.join();
        ExitCode::SUCCESS
    }
}
