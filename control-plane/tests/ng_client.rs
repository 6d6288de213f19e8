//! rtpengine's own NG client (`rtpengine-ng-client`, Debian rtpengine-utils) driving the
//! switch's NG listener: every command it sends gets the answer rtpengine would give.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::SwitchProcess;

/// Runs `rtpengine-ng-client <args>` against `ng`; its output (stdout and stderr).
fn client(ng: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("rtpengine-ng-client")
        .arg(format!("--proxy-address={}", ng.ip()))
        .arg(format!("--proxy-port={}", ng.port()))
        .args(args)
        .output()
        .expect("rtpengine-ng-client (ci/install-deps.sh test installs rtpengine-utils)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The port of the first m= line of the "New SDP" the client prints.
fn new_sdp_port(out: &str) -> u16 {
    let sdp = out.split("New SDP:").nth(1).unwrap_or_else(|| panic!("no new SDP in {out}"));
    let m = sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap_or_else(|| panic!("no m= line in {out}"));
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn sdp(port: u16) -> String {
    format!("v=0\no=moo 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 8\n")
}

#[test]
fn rtpengine_ng_client_runs_every_command_against_the_switch() {
    common::ensure_tool("rtpengine-ng-client");
    let sw = SwitchProcess::start("");
    let ng = sw.ng.expect("NG listener");
    assert!(client(ng, &["ping"]).contains("result => 'pong'"));

    let offer =
        client(ng, &["offer", "--trust-address", "--from-tag=ft", "--call-id=cid-1", &format!("--sdp={}", sdp(3456))]);
    let to_b = new_sdp_port(&offer);
    assert_ne!(to_b, 3456, "the offer is rewritten to the media plane's port: {offer}");
    assert!(offer.contains("c=IN IP4 127.0.0.1"), "{offer}");

    let answer = client(
        ng,
        &[
            "answer",
            "--trust-address",
            "--from-tag=ft",
            "--to-tag=tt",
            "--call-id=cid-1",
            &format!("--sdp={}", sdp(3458)),
        ],
    );
    let to_a = new_sdp_port(&answer);
    assert!(to_a != 3458 && to_a != to_b, "{answer}");

    let query = client(ng, &["query", "--call-id=cid-1"]);
    assert!(query.contains("ft => {") && query.contains("tt => {") && query.contains("packets => '0'"), "{query}");
    let list = client(ng, &["list"]);
    assert!(list.contains("'cid-1'"), "{list}");
    let delete = client(ng, &["delete", "--call-id=cid-1", "--from-tag=ft"]);
    assert!(delete.contains("totals => {"), "{delete}");
    let gone = client(ng, &["delete", "--call-id=cid-1", "--from-tag=ft"]);
    assert!(gone.contains("Error reason: \"unknown call-id \"cid-1\"\""), "{gone}");
    sw.stop();
}

/// The "New SDP" the client printed.
fn new_sdp(out: &str) -> String {
    out.split("New SDP:").nth(1).unwrap_or_else(|| panic!("no new SDP in {out}")).to_string()
}

/// A packet with `payload`.
fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The strength of `hz` in `pcm` against its whole energy (1: nothing else there).
fn tone_share(pcm: &[i16], rate: f64, hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        (s2, s1) = (s1, s);
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f64 = pcm.iter().map(|&x| f64::from(x).powi(2)).sum();
    power * 2.0 / (pcm.len() as f64 * energy.max(1.0))
}

#[test]
fn rtpengine_ng_client_codec_flags_make_the_media_plane_transcode_pcmu_to_opus_and_back() {
    use ferroswitch_media_plane::codec::{opus, Kind};
    use std::time::Duration;
    common::ensure_tool("rtpengine-ng-client");
    let sw = SwitchProcess::start("");
    let ng = sw.ng.expect("NG listener");
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    }
    let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    // A offers PCMU only; B is to be offered Opus instead (PCMU masked).
    let a_sdp = format!("v=0\no=a 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {pa} RTP/AVP 0\n");
    let offer = client(
        ng,
        &[
            "offer",
            "--trust-address",
            "--from-tag=ft",
            "--call-id=cid-tc",
            "--codec-mask=PCMU",
            "--codec-transcode=opus",
            &format!("--sdp={a_sdp}"),
        ],
    );
    let to_b = new_sdp(&offer);
    assert!(to_b.contains("RTP/AVP 96") && to_b.contains("a=rtpmap:96 opus/48000/2"), "B is offered Opus: {to_b}");
    assert!(!to_b.contains("PCMU"), "PCMU is masked: {to_b}");
    assert!(to_b.contains("a=fmtp:96 useinbandfec=1"), "the media plane takes Opus FEC: {to_b}");
    let b_port = new_sdp_port(&offer);
    // B answers Opus; A is answered with its own PCMU.
    let b_sdp = format!(
        "v=0\no=b 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {pb} RTP/AVP 96\na=rtpmap:96 opus/48000/2\n"
    );
    let answer = client(
        ng,
        &["answer", "--trust-address", "--from-tag=ft", "--to-tag=tt", "--call-id=cid-tc", &format!("--sdp={b_sdp}")],
    );
    let to_a = new_sdp(&answer);
    assert!(to_a.contains("RTP/AVP 0") && !to_a.contains("opus"), "A gets PCMU: {to_a}");
    let a_port = new_sdp_port(&answer);
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    // A sends 1 kHz in PCMU, B sends 600 Hz in Opus; each hears the other's tone in its codec.
    let mut mu = Kind::Pcmu.encoder(8000, &opus::Params::default()).unwrap();
    let mut op = Kind::Opus.encoder(48000, &opus::Params::default()).unwrap();
    let (mut heard_b, mut heard_a) = (Vec::new(), Vec::new());
    let mut dec_b = Kind::Opus.decoder(48000).unwrap();
    let mut dec_a = Kind::Pcmu.decoder(8000).unwrap();
    let mut buf = [0u8; 2048];
    let mut pcm = vec![0i16; 5760];
    for i in 0..60u32 {
        let tone = |rate: u32, hz: f64, n: usize| -> Vec<i16> {
            (0..n)
                .map(|k| {
                    let t = (i as usize * n + k) as f64 / f64::from(rate);
                    ((2.0 * std::f64::consts::PI * hz * t).sin() * 8000.0) as i16
                })
                .collect()
        };
        let mut payload = [0u8; 1500];
        let n = mu.encode(&tone(8000, 1000.0, 160), &mut payload).unwrap();
        a.send_to(&rtp(0, i as u16, i * 160, &payload[..n]), at(a_port)).unwrap();
        let n = op.encode(&tone(48000, 600.0, 960), &mut payload).unwrap();
        b.send_to(&rtp(96, i as u16, i * 960, &payload[..n]), at(b_port)).unwrap();
        for (sock, dec, heard, pt) in [(&b, &mut dec_b, &mut heard_b, 96u8), (&a, &mut dec_a, &mut heard_a, 0u8)] {
            while let Ok(n) = {
                sock.set_nonblocking(true).unwrap();
                sock.recv(&mut buf)
            } {
                assert_eq!(buf[1] & 0x7f, pt, "each side gets its own codec's payload type");
                let m = dec.decode(&buf[12..n], &mut pcm).unwrap();
                heard.extend_from_slice(&pcm[..m]);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(heard_b.len() > 48000 / 2, "B heard {} samples", heard_b.len());
    assert!(heard_a.len() > 8000 / 2, "A heard {} samples", heard_a.len());
    let share_b = tone_share(&heard_b[9600..], 48000.0, 1000.0);
    let share_a = tone_share(&heard_a[1600..], 8000.0, 600.0);
    assert!(share_b > 0.8 && share_a > 0.8, "B hears 1 kHz ({share_b:.2}), A hears 600 Hz ({share_a:.2})");
    let delete = client(ng, &["delete", "--call-id=cid-tc", "--from-tag=ft"]);
    assert!(delete.contains("totals => {"), "{delete}");
    sw.stop();
}
