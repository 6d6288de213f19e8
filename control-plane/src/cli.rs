//! `ferroswitch cli`: fs_cli's habits over the event socket. `-x CMD` runs API commands
//! and prints their output (for scripts); without it, an interactive session where a line
//! is an API command and `/`-commands drive the socket (`/log LEVEL`, `/event plain ALL`,
//! `/exit`), with events and log lines printed as they come.

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

/// The interactive session: lines in, frames printed by a reader thread.
fn interactive(o: &Options, mut r: BufReader<TcpStream>, mut w: TcpStream) -> ExitCode {
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
        let cmd = match line.strip_prefix('/') {
            Some("exit" | "quit" | "bye") => {
                let _ = w.write_all(b"exit\n\n");
                break;
            }
            Some("help") => {
                println!("{USAGE}");
                continue;
            }
            Some(socket_cmd) => socket_cmd.to_string(),
            None => format!("api {line}"),
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
