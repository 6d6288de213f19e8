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
