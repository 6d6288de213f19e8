//! A real softphone: baresip (Debian baresip-core) registers as 1001 through digest auth,
//! a SIPp caller reaches it through the B2BUA and it auto-answers; and baresip calls out,
//! answering the 407 itself, to a SIPp callee registered as 1000. Installed via ci/.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A headless baresip: a sine-wave source sent as PCMU, nothing played (baresip 1.0's
/// aufile module is a source only; tests/softphones.rs records what phones hear).
struct Baresip {
    child: Child,
    _dir: TempDir,
}

impl Baresip {
    /// `rtp_base`: the first of the 100 RTP ports the phone may use. Tests keep them out of
    /// the test switches' media ports (20000-31999, tests/common), of the default media
    /// range (16384-32767) a switch running on the machine may hold, and of the kernel's
    /// ephemeral range (32768 and up).
    fn start(switch: std::net::SocketAddr, user: &str, rtp_base: u16, commands: &[&str]) -> Baresip {
        ensure_tool("baresip");
        let dir = TempDir::new("baresip");
        let config = format!(
            "sip_listen\t127.0.0.1:{port}\nsip_trans_def\tudp\naudio_source\tausine,440\nausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t2\nauplay_channels\t2\nrtp_ports\t{rtp_base}-{rtp_end}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule\tausine.so\nmodule\taufile.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n",
            port = free_port(),
            rtp_end = rtp_base + 99,
        );
        std::fs::write(dir.0.join("config"), config).unwrap();
        std::fs::write(
            dir.0.join("accounts"),
            format!("<sip:{user}@{switch}>;auth_pass=1234;answermode=auto;regint=600;audio_codecs=PCMU\n"),
        )
        .unwrap();
        // baresip itself is the child, so dropping this kills the phone (a `timeout`
        // wrapper would leave it running); the test's own bounds end it.
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&dir.0);
        for c in commands {
            cmd.args(["-e", c]);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start baresip");
        Baresip { child, _dir: dir }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until the switch lists a registration whose JSON contains `needle`.
fn wait_registered(sw: &SwitchProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = sw.http_get("/registrations");
        if body.contains(needle) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sipp(args: &[&str], scenario: &str, target: Option<std::net::SocketAddr>) -> std::process::Output {
    ensure_tool("sipp");
    let path = format!("{}/../tools/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("sipp-bs");
    let mut cmd = Command::new("timeout");
    cmd.current_dir(&dir.0)
        .args(["40", "sipp", "-sf", &path, "-i", "127.0.0.1", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(args);
    if let Some(t) = target {
        cmd.arg(t.to_string());
    }
    cmd.output().expect("run sipp")
}

fn assert_ok(what: &str, out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn baresip_registers_as_1001_and_answers_calls_from_sipp_through_the_switch() {
    let sw = SwitchProcess::start("");
    let _phone = Baresip::start(sw.udp, "1001", 10000, &[]);
    let regs = wait_registered(&sw, "baresip");
    assert!(regs.contains("\"aor\":\"1001\""), "{regs}");
    let mp = free_port().to_string();
    let out = sipp(
        &["-s", "1001", "-au", "1000", "-ap", "1234", "-m", "3", "-r", "1", "-p", &free_port().to_string(), "-mp", &mp],
        "uac_call_auth.xml",
        Some(sw.udp),
    );
    assert_ok("SIPp calling baresip", &out);
}

#[test]
fn baresip_calls_a_sipp_callee_answering_the_407_itself() {
    let sw = SwitchProcess::start("");
    let port = free_port();
    let p = port.to_string();
    assert_ok(
        "register the SIPp callee as 1000",
        &sipp(&["-s", "1000", "-au", "1000", "-ap", "1234", "-m", "1", "-p", &p], "register.xml", Some(sw.udp)),
    );
    let mp = free_port().to_string();
    let callee = std::thread::spawn(move || sipp(&["-m", "1", "-p", &p, "-mp", &mp], "uas_answer_then_bye.xml", None));
    std::thread::sleep(Duration::from_millis(300));
    let dial = format!("/dial sip:1000@{}", sw.udp);
    let _phone = Baresip::start(sw.udp, "1001", 10100, &[&dial]);
    let out = callee.join().unwrap();
    assert_ok("the SIPp callee (answers, then hangs up)", &out);
}
