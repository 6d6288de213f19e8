//! Runs the real `ferroswitch` binary on free loopback ports for integration tests.

#![allow(dead_code)]

pub mod softphone;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No event socket (the default listens on 8021, which parallel tests would share); a
/// test that wants one passes its own `[esl]` section.
const NO_ESL: &str = "[esl]\nlisten = \"\"\n";

/// A switch process, killed when dropped.
pub struct SwitchProcess {
    pub child: Child,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    /// The NG listener, when the switch runs one.
    pub ng: Option<SocketAddr>,
    /// The event socket, when the switch runs one.
    pub esl: Option<SocketAddr>,
    pub dir: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("ferroswitch-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ferroswitch")
}

impl SwitchProcess {
    /// Starts the switch on ephemeral loopback ports, with `extra` TOML appended to [sip].
    pub fn start(extra_sip: &str) -> SwitchProcess {
        Self::start_in(TempDir::new("switch"), extra_sip)
    }

    /// Starts the switch with its database under `dir` (kept across restarts by reusing it).
    pub fn start_in(dir: TempDir, extra_sip: &str) -> SwitchProcess {
        Self::start_with(dir, extra_sip, "")
    }

    /// As [`SwitchProcess::start_in`], with `extra_media` TOML appended to [media]. Each
    /// switch of a test binary gets RTP ports of its own (the binary's tests run in
    /// parallel; the binaries one after another).
    pub fn start_with(dir: TempDir, extra_sip: &str, extra_media: &str) -> SwitchProcess {
        Self::start_with_ng(dir, extra_sip, extra_media, "")
    }

    /// As [`SwitchProcess::start_with`], with `extra_ng` TOML appended to [ng].
    pub fn start_with_ng(dir: TempDir, extra_sip: &str, extra_media: &str, extra_ng: &str) -> SwitchProcess {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let block = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 24;
        let (min, max) = (20000 + block * 500, 20000 + block * 500 + 499);
        let no_esl = if extra_ng.contains("[esl]") { "" } else { NO_ESL };
        let config = format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n{extra_sip}\n[storage]\ndir = \"{}\"\n[management]\nhttp_listen = \"127.0.0.1:0\"\n{no_esl}[log]\nlevel = \"warn\"\n[media]\norphan_exit_secs = 5\nrtp_port_min = {min}\nrtp_port_max = {max}\n{extra_media}\n[ng]\nlisten = \"127.0.0.1:0\"\n{extra_ng}\n",
            dir.0.join("var").display()
        );
        Self::launch(dir, &config, Stdio::null())
    }

    /// As [`SwitchProcess::start`], its log (`level`) written to `log`.
    pub fn start_logged(extra_sip: &str, level: &str, log: &std::path::Path) -> SwitchProcess {
        Self::start_logged_as(extra_sip, &format!("level = \"{level}\""), log)
    }

    /// As [`SwitchProcess::start_logged`], with `log_keys` as the [log] section.
    pub fn start_logged_as(extra_sip: &str, log_keys: &str, log: &std::path::Path) -> SwitchProcess {
        let dir = TempDir::new("switch");
        let config = format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n{extra_sip}\n[storage]\ndir = \"{}\"\n[management]\nhttp_listen = \"127.0.0.1:0\"\n{NO_ESL}[log]\n{log_keys}\n[media]\nmode = \"off\"\n",
            dir.0.join("var").display()
        );
        let file = std::fs::File::create(log).unwrap();
        Self::launch(dir, &config, Stdio::from(file))
    }

    /// Starts the switch with its database under `dir`, SIP over UDP on the fixed address
    /// `udp` (so a restart is reached where the last one was), no media plane, and its log
    /// (level info) appended to `dir/ferroswitch.log`.
    pub fn start_on(dir: TempDir, udp: SocketAddr) -> SwitchProcess {
        let config = format!(
            "[sip]\nudp = [\"{udp}\"]\ntcp = [\"127.0.0.1:0\"]\n[storage]\ndir = \"{}\"\n[management]\nhttp_listen = \"127.0.0.1:0\"\n{NO_ESL}[log]\nlevel = \"info\"\n[media]\nmode = \"off\"\n",
            dir.0.join("var").display()
        );
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.0.join("ferroswitch.log")).unwrap();
        Self::launch(dir, &config, Stdio::from(log))
    }

    fn launch(dir: TempDir, config: &str, stderr: Stdio) -> SwitchProcess {
        let path = dir.0.join("ferroswitch.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ferroswitch");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut udp, mut tcp, mut http, mut ng, mut esl) = (None, None, None, None, None);
        while udp.is_none() || tcp.is_none() || http.is_none() {
            let line = lines.next().expect("ferroswitch exited before listening").unwrap();
            if let Some(a) = line.strip_prefix("ferroswitch: listening ng ") {
                ng = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("ferroswitch: listening esl ") {
                esl = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("ferroswitch: listening sip/udp ") {
                udp = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("ferroswitch: listening sip/tcp ") {
                tcp = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("ferroswitch: listening http ") {
                http = Some(a.parse().unwrap());
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        SwitchProcess { child, udp: udp.unwrap(), tcp: tcp.unwrap(), http: http.unwrap(), ng, esl, dir }
    }

    /// Stops the process (SIGTERM, so it flushes its database) and hands back its directory.
    pub fn stop(self) -> TempDir {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.into_dir()
    }

    /// Kills the process at once (SIGKILL: nothing is flushed or closed) and hands back
    /// its directory.
    pub fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        self.into_dir()
    }

    /// Waits for the process to end and takes its directory (so dropping it keeps the files).
    fn into_dir(mut self) -> TempDir {
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, TempDir(std::path::PathBuf::new()))
    }

    /// GET `path` from the HTTP JSON endpoint; returns the status code and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for SwitchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one datagram from a fresh socket and collects every response until a final
/// one (>= 200) arrives or `wait` passes without a datagram.
pub fn udp_exchange(to: SocketAddr, data: &[u8], wait: Duration) -> Vec<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(data, to).unwrap();
    collect_responses(&s, wait)
}

pub fn collect_responses(s: &UdpSocket, wait: Duration) -> Vec<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let fin = status(&text) >= 200;
        out.push(text);
        if fin {
            break;
        }
    }
    out
}

/// The status code of a response text (0 if none).
pub fn status(text: &str) -> u16 {
    text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The values of a header in a response text (long name, case-insensitive).
pub fn header_values(text: &str, name: &str) -> Vec<String> {
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

pub fn options_request(transport: &str, local: SocketAddr, target: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:1000@{target} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:test@{local}>;tag=t{call_id}\r\nTo: <sip:1000@{target}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Reads from a TCP stream until `count` complete responses (by Content-Length) arrive.
pub fn tcp_read_responses(s: &mut TcpStream, count: usize, wait: Duration) -> Vec<String> {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + wait;
    let mut data = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while out.len() < count && Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end + 4]).into_owned();
            let cl: usize = header_values(&head, "Content-Length").first().and_then(|v| v.parse().ok()).unwrap_or(0);
            if data.len() < end + 4 + cl {
                break;
            }
            out.push(String::from_utf8_lossy(&data[..end + 4 + cl]).into_owned());
            data.drain(..end + 4 + cl);
        }
    }
    out
}

pub fn write_all(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
}

/// Makes sure a Debian tool is installed, through the project's own installer.
pub fn ensure_tool(binary: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {binary} >/dev/null"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-deps.sh");
        let ok = Command::new("bash").arg(script).arg("test").status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "ci/install-deps.sh test failed: cannot install {binary}");
    }
}

/// A free UDP+TCP port on 127.0.0.1 (for peers that need a fixed local port).
/// Waits (bounded: 15 s) until the switch lists a registration for each of `users`.
pub fn wait_registered(sw: &SwitchProcess, users: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, regs) = sw.http_get("/registrations");
        if users.iter().all(|u| regs.contains(&format!("\"aor\":\"{u}\""))) {
            return;
        }
        assert!(Instant::now() < deadline, "{users:?} did not register: {regs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// GET `path` from an HTTP JSON endpoint at `addr`; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Runs tools/sipp/run_call.sh: `calls` calls at `rate` calls/s from 1000 to `called`;
/// `callee` is a scenario in tools/sipp/ run as the registered 1001 (None: nobody
/// registers), with `callee_args` for its SIPp. SIPp works (and keeps its logs) in `logs`.
/// run_call.sh exits 0 only when the caller passed all its calls and (-S) the callee too.
pub fn run_call_in(
    logs: &TempDir,
    sw: &SwitchProcess,
    (calls, rate): (u32, u32),
    called: &str,
    caller: &str,
    callee: Option<&str>,
    callee_args: &[&str],
) -> Output {
    run_call_at(logs, sw.udp, (calls, rate), called, caller, callee, callee_args)
}

/// As [`run_call_in`], to a switch at `switch` (one this test did not start, such as a
/// container's).
pub fn run_call_at(
    logs: &TempDir,
    switch: SocketAddr,
    (calls, rate): (u32, u32),
    called: &str,
    caller: &str,
    callee: Option<&str>,
    callee_args: &[&str],
) -> Output {
    ensure_tool("sipp");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sipp/run_call.sh");
    // run_call.sh bounds itself (about calls/rate + 30 s + grace); the outer timeout is a backstop.
    let limit = (calls / rate + 120).to_string();
    Command::new("timeout")
        .args([limit.as_str(), "bash", script, "-S", "-t", "30"])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-s", called])
        .args(["-p", &free_port().to_string()])
        .args(callee_args.iter().flat_map(|a| ["-e", a]))
        .arg("-l")
        .arg(&logs.0)
        .arg(switch.to_string())
        .arg(caller)
        .arg(callee.unwrap_or("none"))
        .output()
        .expect("run tools/sipp/run_call.sh")
}

/// run_call.sh exits 0 only when the caller passed all its calls and (-S) the callee too.
pub fn assert_all_passed(what: &str, out: Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: SIPp calls failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One SIPp call as 1000 (digest auth) to `service` at `switch`, with `scenario` from
/// tools/sipp/ (e.g. uac_call_wait_bye.xml, which keeps the call until the switch hangs
/// up); SIPp works in `logs`. Its output once it ends.
pub fn sipp_caller(logs: &TempDir, switch: SocketAddr, service: &str, scenario: &str) -> Output {
    ensure_tool("sipp");
    let scenario = format!("{}/../tools/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    Command::new("sipp")
        .current_dir(&logs.0)
        .args(["-sf", &scenario, "-s", service, "-au", "1000", "-ap", "1234", "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-p", &free_port().to_string(), "-mp", &free_port().to_string(), "-timeout", "30s", "-timeout_error"])
        .arg(switch.to_string())
        .output()
        .expect("run sipp")
}
