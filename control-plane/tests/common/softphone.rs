//! A headless baresip softphone (Debian baresip-core 1.0.0) as a test peer: it registers
//! with the switch, sends its own tone (the `aufile` source, a WAV this module writes) and
//! records what it hears, and the test drives it over its `ctrl_tcp` socket (dial, hold,
//! resume, hangup; events such as CALL_ESTABLISHED).
//!
//! Recording: baresip 1.0.0's `sndfile` filter stops recording at the first hold, and its
//! `aufile` module is no player. So the `alsa` player writes into an ALSA `file` PCM
//! (slave `null`) whose file is a FIFO, and a thread here drains the FIFO at exactly 48 kHz
//! mono s16: the pipe's back-pressure paces baresip's player to real time, and each 20 ms
//! chunk is kept with the instant it arrived, so a test asks for what the phone played
//! between two instants ([`Phone::heard`]). Levels are measured with a Goertzel filter.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{ensure_tool, free_port, TempDir};

/// The player's rate and channels.
pub const RATE: u32 = 48_000;

/// A codec both phones are limited to, as baresip's `audio_codecs` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec(pub &'static str);

pub const PCMU: Codec = Codec("PCMU");
pub const PCMA: Codec = Codec("PCMA");
pub const G722: Codec = Codec("G722/16000");
pub const OPUS: Codec = Codec("opus/48000/2");

/// What a phone played, in 20 ms chunks with the instant each arrived.
type Recording = Arc<Mutex<Vec<(Instant, Vec<i16>)>>>;

/// What a phone's ctrl_tcp socket said: responses and events, in order.
#[derive(Default)]
struct Inbox {
    messages: Vec<serde_json::Value>,
    closed: bool,
}

/// What a phone heard over a span ([`Phone::hears`]).
#[derive(Debug, Clone, Copy)]
pub struct Hearing {
    pub secs: f64,
    pub tone: f64,
    pub own: f64,
    pub rms: f64,
}

impl Hearing {
    /// Over half a second of it, the tone loud (above -20 dBFS) and, unless it is the
    /// phone's own tone coming back, its own faint (below -45).
    pub fn clear(&self, own_allowed: bool) -> bool {
        self.secs > 0.5 && self.tone > -20.0 && (own_allowed || self.own < -45.0)
    }
}

/// One phone, killed when dropped.
pub struct Phone {
    child: Child,
    pub user: String,
    pub tone_hz: f64,
    ctrl: TcpStream,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    heard: Recording,
    dir: TempDir,
    token: u64,
}

impl Phone {
    /// Starts a phone registered as `user` (password 1234) with the switch at `switch`,
    /// speaking only `codec`, sending a `tone_hz` sine at -10 dBFS, its RTP on
    /// `rtp_base`..`rtp_base`+99. Waits until baresip's control socket answers.
    pub fn start(switch: SocketAddr, user: &str, codec: Codec, tone_hz: f64, rtp_base: u16) -> Phone {
        ensure_tool("baresip");
        let dir = TempDir::new(&format!("phone-{user}"));
        let tone = dir.0.join("tone.wav");
        write_tone(&tone, tone_hz, 60.0, -10.0);
        let fifo = dir.0.join("play.fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let heard = Arc::new(Mutex::new(Vec::new()));
        start_recorder(&fifo, heard.clone());
        let ctrl_port = free_port();
        let config = format!(
            "poll_method\tepoll\nsip_listen\t127.0.0.1:{sip}\nnet_interface\t127.0.0.1\ncall_local_timeout\t120\n\
             audio_buffer\t20-160\naudio_source\taufile,{tone}\naudio_player\talsa,rec\naudio_alert\tnone,none\n\
             ausrc_srate\t48000\nausrc_channels\t1\nauplay_srate\t48000\nauplay_channels\t1\naudio_level\tno\n\
             rtp_ports\t{rtp_base}-{rtp_end}\nrtcp_mux\tno\njitter_buffer_delay\t5-10\nrtp_stats\tno\n\
             module_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule\tg722.so\nmodule\topus.so\n\
             module\taufile.so\nmodule\talsa.so\nmodule_tmp\taccount.so\nmodule_app\tmenu.so\n\
             module_app\tctrl_tcp.so\nctrl_tcp_listen\t127.0.0.1:{ctrl_port}\nstatmode_default\toff\n\
             ringback_disabled\tyes\nopus_bitrate\t64000\n",
            sip = free_port(),
            tone = tone.display(),
            rtp_end = rtp_base + 99,
        );
        std::fs::write(dir.0.join("config"), config).unwrap();
        std::fs::write(
            dir.0.join("accounts"),
            format!("<sip:{user}@{switch}>;auth_pass=1234;regint=600;answermode=auto;audio_codecs={}\n", codec.0),
        )
        .unwrap();
        std::fs::write(
            dir.0.join(".asoundrc"),
            format!(
                "pcm.rec {{\n\ttype file\n\tslave.pcm \"null\"\n\tformat \"raw\"\n\tfile \"{}\"\n}}\n",
                fifo.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.0.join("baresip.log")).unwrap();
        // baresip itself is the child (HOME points ALSA at the phone's .asoundrc), so
        // dropping the phone kills it.
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir.0)
            .env("HOME", &dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start baresip");
        let ctrl = connect(ctrl_port, Duration::from_secs(10));
        let inbox = Arc::new((Mutex::new(Inbox::default()), Condvar::new()));
        start_reader(ctrl.try_clone().unwrap(), inbox.clone());
        Phone { child, user: user.into(), tone_hz, ctrl, inbox, heard, dir, token: 0 }
    }

    /// Sends a ctrl_tcp command and returns its response's `ok`.
    pub fn cmd(&mut self, command: &str, params: &str) -> bool {
        self.token += 1;
        let token = format!("t{}", self.token);
        let body = serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
        self.ctrl.write_all(format!("{}:{body},", body.len()).as_bytes()).unwrap();
        let response = self.wait(Duration::from_secs(10), |all| {
            all.iter().find(|m| m["response"] == true && m["token"] == token.as_str()).cloned()
        });
        response.unwrap_or_else(|| panic!("{}: no response to {command}:\n{}", self.user, self.log()))["ok"] == true
    }

    /// How many events of `kind` (CALL_ESTABLISHED, CALL_CLOSED...) have come so far.
    pub fn events(&self, kind: &str) -> usize {
        let (inbox, _) = &*self.inbox;
        inbox.lock().unwrap().messages.iter().filter(|m| m["event"] == true && m["type"] == kind).count()
    }

    /// Waits (bounded) until `count` events of `kind` have come; the last one's `param`.
    pub fn wait_events(&self, kind: &str, count: usize, within: Duration) -> String {
        let got = self
            .wait(within, |all| all.iter().filter(|m| m["event"] == true && m["type"] == kind).nth(count - 1).cloned());
        let Some(event) = got else {
            panic!("{}: {} {kind} events, wanted {count}:\n{}", self.user, self.events(kind), self.log())
        };
        event["param"].as_str().unwrap_or_default().to_string()
    }

    /// What `pick` finds among the messages so far, waiting for more up to `within`.
    fn wait(
        &self,
        within: Duration,
        pick: impl Fn(&[serde_json::Value]) -> Option<serde_json::Value>,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + within;
        let (inbox, ready) = &*self.inbox;
        let mut inbox = inbox.lock().unwrap();
        loop {
            if let Some(m) = pick(&inbox.messages) {
                return Some(m);
            }
            let now = Instant::now();
            if now >= deadline || inbox.closed {
                return None;
            }
            inbox = ready.wait_timeout(inbox, deadline - now).unwrap().0;
        }
    }

    /// What the phone played (heard from the far end) between `from` and `to`.
    pub fn heard(&self, from: Instant, to: Instant) -> Vec<i16> {
        let heard = self.heard.lock().unwrap();
        heard.iter().filter(|(t, _)| *t >= from && *t < to).flat_map(|(_, s)| s.iter().copied()).collect()
    }

    /// What the phone heard between `from` and `to`: how long (s), the `hz` tone's level
    /// and its own tone's (dBFS), and the RMS level.
    pub fn hears(&self, hz: f64, from: Instant, to: Instant) -> Hearing {
        let heard = self.heard(from, to);
        Hearing {
            secs: heard.len() as f64 / f64::from(RATE),
            tone: tone_dbfs(&heard, hz),
            own: tone_dbfs(&heard, self.tone_hz),
            rms: rms_dbfs(&heard),
        }
    }

    /// baresip's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.0.join("baresip.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(port: u16, within: Duration) -> TcpStream {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("baresip's ctrl_tcp on {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reads netstring-framed JSON (`len:{...},`) from the control socket into the inbox.
fn start_reader(s: TcpStream, inbox: Arc<(Mutex<Inbox>, Condvar)>) {
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(s);
        loop {
            let mut len = Vec::new();
            if r.read_until(b':', &mut len).unwrap_or(0) == 0 {
                break;
            }
            let Ok(n) = std::str::from_utf8(&len[..len.len() - 1]).unwrap_or_default().trim().parse::<usize>() else {
                break;
            };
            let mut body = vec![0u8; n + 1];
            if r.read_exact(&mut body).is_err() {
                break;
            }
            let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&body[..n]) else { continue };
            let (m, ready) = &*inbox;
            m.lock().unwrap().messages.push(msg);
            ready.notify_all();
        }
        let (m, ready) = &*inbox;
        m.lock().unwrap().closed = true;
        ready.notify_all();
    });
}

/// Drains the player's FIFO at real time (48 kHz mono s16), keeping each 20 ms chunk with
/// the instant it arrived.
fn start_recorder(fifo: &std::path::Path, heard: Recording) {
    // Read and write: the FIFO never reports end-of-file between calls, when baresip
    // closes its end.
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(fifo).expect("open the player FIFO");
    // A small pipe (one page, about 40 ms): what the phone plays reaches the recording
    // at once, instead of after the default 64 KiB (0.7 s) of buffering.
    // SAFETY: F_SETPIPE_SZ on a FIFO this function owns; an error leaves the size as it was.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETPIPE_SZ, 4096) };
    std::thread::spawn(move || {
        let bytes_per_sec = f64::from(RATE) * 2.0;
        let mut buf = [0u8; 1920];
        let (mut segment, mut pos, mut last) = (Instant::now(), 0usize, Instant::now());
        let mut odd: Option<u8> = None;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            if now.duration_since(last) > Duration::from_millis(100) {
                // The player started again: a new segment at real time from here.
                (segment, pos) = (now, 0);
            }
            let mut bytes: Vec<u8> = odd.take().into_iter().chain(buf[..n].iter().copied()).collect();
            if bytes.len() % 2 == 1 {
                odd = bytes.pop();
            }
            let samples = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            heard.lock().unwrap().push((now, samples));
            pos += n;
            let due = segment + Duration::from_secs_f64(pos as f64 / bytes_per_sec);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
            last = Instant::now();
        }
    });
}

/// Writes a 48 kHz mono 16-bit WAV: a `hz` sine at `dbfs` (peak) for `secs`.
pub fn write_tone(path: &std::path::Path, hz: f64, secs: f64, dbfs: f64) {
    let n = (secs * f64::from(RATE)) as u32;
    let amp = 32767.0 * 10f64.powf(dbfs / 20.0);
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    w.extend(b"RIFF");
    w.extend((36 + 2 * n).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(RATE.to_le_bytes());
    w.extend((RATE * 2).to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend((2 * n).to_le_bytes());
    for i in 0..n {
        let v = amp * (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(RATE)).sin();
        w.extend((v.round() as i16).to_le_bytes());
    }
    std::fs::write(path, w).unwrap();
}

/// The level of the `hz` component of `samples` (48 kHz) as a sine's peak in dBFS (a
/// full-scale sine is 0), by a Goertzel filter over a Hann window; -200 for silence.
pub fn tone_dbfs(samples: &[i16], hz: f64) -> f64 {
    let n = samples.len();
    if n < 64 {
        return -200.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        wsum += hann;
        let s = f64::from(x) / 32768.0 * hann + coeff * s1 - s2;
        (s2, s1) = (s1, s);
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.max(0.0).sqrt() / wsum;
    if amplitude <= 1e-10 {
        -200.0
    } else {
        20.0 * amplitude.log10()
    }
}

/// The RMS level of `samples` in dBFS (-200 for silence).
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let sum: f64 = samples.iter().map(|&x| (f64::from(x) / 32768.0).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    if rms <= 1e-10 {
        -200.0
    } else {
        20.0 * rms.log10()
    }
}
