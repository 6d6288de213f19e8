//! The switch in a container, as tools/deploy ships it: the runtime image built with
//! podman from tools/deploy/Dockerfile.prebuilt around this build's binary, on a Debian
//! 12 base made here by mmdebstrap from the apt sources (no registry to pull from), run
//! with host networking as its unprivileged user; a SIPp call goes through it. The
//! systemd units pass `systemd-analyze verify`. Root only (podman here runs as root).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// podman as this machine needs it: runc (crun refuses its hybrid cgroups), and
/// rlimits within the caller's own (the defaults raise them, which is refused).
fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc"]).args(args);
    c
}

const ULIMITS: [&str; 4] = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

/// The local base image (Debian 12 minbase with the codec libraries), made once.
fn base_image() -> &'static str {
    const NAME: &str = "localhost/ferroswitch-base:bookworm";
    if Command::new("podman").args(["image", "exists", NAME]).status().is_ok_and(|s| s.success()) {
        return NAME;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("container");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join("base.tar");
    if !tar.exists() {
        let part = dir.join("base.part.tar");
        run(Command::new("mmdebstrap")
            .args(["--variant=minbase", "--format=tar", "--include=libopus0,libbcg729-0", "bookworm"])
            .arg(&part));
        std::fs::rename(&part, &tar).unwrap();
    }
    run(Command::new("podman").arg("import").arg(&tar).arg(NAME));
    NAME
}

#[test]
fn the_container_image_runs_the_switch_and_a_call_goes_through_it() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: podman runs as root on this machine; the test needs root");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-deps.sh");
    run(Command::new("bash").arg(script).arg("container"));
    let base = base_image();
    // The build context: this build's binary and the embedded default config.
    let ctx = TempDir::new("container-ctx");
    std::fs::copy(binary(), ctx.0.join("ferroswitch")).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/ferroswitch.toml"), ctx.0.join("ferroswitch.toml"))
        .unwrap();
    let tag = format!("localhost/ferroswitch-test:{}", std::process::id());
    let dockerfile = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/deploy/Dockerfile.prebuilt");
    run(podman(&["build", "--network", "host", "--build-arg", &format!("BASE={base}")])
        .args(ULIMITS)
        .args(["-f", dockerfile, "-t", &tag])
        .arg(&ctx.0));
    // Its configuration: loopback ports of its own, the media plane spawned inside.
    let sip = free_port();
    let cfg_dir = TempDir::new("container-cfg");
    std::fs::write(
        cfg_dir.0.join("ferroswitch.toml"),
        format!(
            "[sip]\nudp = [\"127.0.0.1:{sip}\"]\ntcp = [\"127.0.0.1:{sip}\"]\n[storage]\ndir = \"/var/lib/ferroswitch/var\"\n\
             [management]\nhttp_listen = \"\"\n[esl]\nlisten = \"\"\n[ng]\nlisten = \"\"\n[log]\nlevel = \"info\"\n\
             [media]\nrtp_port_min = 31000\nrtp_port_max = 31499\nsocket = \"/var/lib/ferroswitch/var/media.sock\"\n"
        ),
    )
    .unwrap();
    let name = format!("ferroswitch-test-{}", std::process::id());
    let mount = format!("{}:/etc/ferroswitch/ferroswitch.toml:ro", cfg_dir.0.join("ferroswitch.toml").display());
    run(podman(&["run", "-d", "--rm", "--name", &name, "--network", "host", "-v", &mount]).args(ULIMITS).arg(&tag));
    struct Stop(String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = podman(&["rm", "-f", "-t", "2", &self.0]).output();
        }
    }
    let _stop = Stop(name.clone());
    // Up once it answers an OPTIONS.
    let to: std::net::SocketAddr = format!("127.0.0.1:{sip}").parse().unwrap();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        s.send_to(options_request("UDP", s.local_addr().unwrap(), to, "container-up").as_bytes(), to).unwrap();
        if collect_responses(&s, Duration::from_millis(500)).iter().any(|r| status(r) == 200) {
            break;
        }
        let logs = podman(&["logs", &name]).output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
        assert!(Instant::now() < deadline, "the container's switch never answered: {logs:?}");
    }
    let who = run(&mut podman(&["exec", &name, "id", "-u"]));
    assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), "10001", "runs as the ferroswitch user");
    let out = run_call_at(
        &TempDir::new("container-call"),
        to,
        (3, 3),
        "1001",
        "uac_call_auth.xml",
        Some("uas_answer.xml"),
        &[],
    );
    assert_all_passed("calls through the container", out);
    let _ = podman(&["rmi", "-f", &tag]).output();
}

#[test]
fn the_systemd_units_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/deploy/systemd");
    for unit in ["ferroswitch.service", "ferroswitch-media.service"] {
        let path = format!("{dir}/{unit}");
        let out = Command::new("systemd-analyze").args(["verify", "--man=no", &path]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        // The binary and the user exist only where the switch is installed.
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/ferroswitch") && !l.contains("User") && !l.trim().is_empty())
            .collect();
        assert!(problems.is_empty(), "{unit}: {text}");
    }
}

/// Under systemd's Type=notify: READY=1 once listening, then WATCHDOG=1 from the SIP
/// driver at half the manager's WATCHDOG_USEC.
#[test]
fn the_switch_tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    let dir = TempDir::new("sd-notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cfg = dir.0.join("ferroswitch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n[storage]\ndir = \"{}\"\n[management]\nhttp_listen = \"\"\n\
             [esl]\nlisten = \"\"\n[ng]\nlisten = \"\"\n[media]\nmode = \"off\"\n[log]\nlevel = \"warn\"\n",
            dir.0.join("var").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while got.iter().filter(|m: &&String| m.as_str() == "WATCHDOG=1").count() < 3 {
        let n = sock.recv(&mut buf).expect("a notification");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got[0], "READY=1\nSTATUS=listening", "{got:?}");
    assert!(got[1..].iter().all(|m| m == "WATCHDOG=1"), "{got:?}");
}
