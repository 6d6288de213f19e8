use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::http::{route, Resource, Response, Version, DEFAULT_CDR_LIMIT, MAX_HEAD};
use super::*;
use crate::storage::tests::{binding, cdr, channel, TempDir};
use crate::storage::{CallRow, Direction, Storage, Write};

fn head(text: &str) -> RequestHead {
    parse_request_head(text.as_bytes()).expect("a well-formed head")
}

#[test]
fn parses_request_line_query_and_headers() {
    let raw =
        "GET /cdr?limit=5 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent:  curl/8.5.0 \r\nAccept: */*\r\n\r\ntrailing";
    let h = parse_request_head(raw.as_bytes()).expect("parse");
    assert_eq!(
        h,
        RequestHead {
            method: "GET".into(),
            path: "/cdr".into(),
            query: Some("limit=5".into()),
            version: Version::Http11,
            headers: vec![
                ("Host".into(), "127.0.0.1:8080".into()),
                ("User-Agent".into(), "curl/8.5.0".into()),
                ("Accept".into(), "*/*".into()),
            ],
            len: raw.len() - "trailing".len(),
        }
    );
    assert_eq!(h.header("user-agent"), Some("curl/8.5.0"));
}

#[test]
fn http_1_0_needs_no_host() {
    let h = head("GET /calls HTTP/1.0\r\n\r\n");
    assert_eq!(h.version, Version::Http10);
    assert_eq!(h.headers, vec![]);
    assert_eq!(h.len, 23);
}

#[test]
fn a_head_without_its_blank_line_is_incomplete() {
    for partial in ["", "GET", "GET /calls HTTP/1.1\r\n", "GET /calls HTTP/1.1\r\nHost: a\r\n"] {
        assert_eq!(parse_request_head(partial.as_bytes()), Err(HttpError::Incomplete), "{partial:?}");
    }
}

#[test]
fn a_head_of_exactly_8_kib_is_accepted_and_one_byte_more_is_431() {
    let fixed = "GET /calls HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n".len();
    let at_limit = format!("GET /calls HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n", "p".repeat(MAX_HEAD - fixed));
    assert_eq!(at_limit.len(), MAX_HEAD);
    assert_eq!(head(&at_limit).len, MAX_HEAD);
    let over = format!("GET /calls HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n", "p".repeat(MAX_HEAD - fixed + 1));
    let err = parse_request_head(over.as_bytes()).expect_err("too large");
    assert_eq!(err, HttpError::TooLarge { limit: MAX_HEAD });
    assert_eq!(err.status(), 431);
    // Also when the client is still sending: 8 KiB without a blank line is enough.
    let endless = "GET /calls HTTP/1.1\r\nX-Pad: ".to_string() + &"p".repeat(MAX_HEAD);
    assert_eq!(parse_request_head(endless.as_bytes()), Err(HttpError::TooLarge { limit: MAX_HEAD }));
}

#[test]
fn malformed_request_lines_are_400() {
    for raw in [
        "GET  /calls HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /calls\r\nHost: a\r\n\r\n",
        "GET calls HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /calls HTTP/1.1 extra\r\nHost: a\r\n\r\n",
        "G(T /calls HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /calls HTTP/1.1\nHost: a\r\n\r\n",
        "GET /ca\u{7f}lls HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET /calls HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /calls http/1.1\r\nHost: a\r\n\r\n",
    ] {
        let err = parse_request_head(raw.as_bytes()).expect_err(raw);
        assert_eq!(err, HttpError::RequestLine, "{raw:?}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn malformed_headers_are_400_naming_the_line() {
    for (raw, line) in [
        ("GET /calls HTTP/1.1\r\nHost : a\r\n\r\n", 2),
        ("GET /calls HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 3),
        ("GET /calls HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 4),
        ("GET /calls HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n", 2),
        ("GET /calls HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 3),
        ("GET /calls HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 3),
    ] {
        let err = parse_request_head(raw.as_bytes()).expect_err(raw);
        assert_eq!(err, HttpError::Header { line }, "{raw:?}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn http_1_1_without_exactly_one_host_is_400() {
    for raw in ["GET /calls HTTP/1.1\r\n\r\n", "GET /calls HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"] {
        assert_eq!(parse_request_head(raw.as_bytes()), Err(HttpError::Host), "{raw:?}");
    }
}

#[test]
fn a_request_body_is_refused_but_content_length_0_is_fine() {
    for raw in [
        "GET /calls HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "GET /calls HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(parse_request_head(raw.as_bytes()), Err(HttpError::Body), "{raw:?}");
    }
    assert_eq!(head("GET /calls HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").path, "/calls");
}

#[test]
fn other_http_versions_are_505() {
    let err = parse_request_head(b"GET /calls HTTP/2.0\r\nHost: a\r\n\r\n").expect_err("2.0");
    assert_eq!(err, HttpError::Version("HTTP/2.0".into()));
    assert_eq!(err.status(), 505);
}

#[test]
fn routes_each_table_and_the_cdr_limit() {
    let get = |target: &str| route(&head(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")));
    assert_eq!(get("/registrations"), Ok(Resource::Registrations));
    assert_eq!(get("/dialogs"), Ok(Resource::Dialogs));
    assert_eq!(get("/channels"), Ok(Resource::Channels));
    assert_eq!(get("/calls"), Ok(Resource::Calls));
    assert_eq!(get("/cdr"), Ok(Resource::Cdr { limit: DEFAULT_CDR_LIMIT }));
    assert_eq!(get("/media/sessions"), Ok(Resource::MediaSessions));
    assert_eq!(get("/media/status"), Ok(Resource::MediaStatus));
    assert_eq!(get("/cdr?limit=7"), Ok(Resource::Cdr { limit: 7 }));
    assert_eq!(get("/cdr?limit=10000"), Ok(Resource::Cdr { limit: 10_000 }));
    for bad in [
        "/cdr?limit=0",
        "/cdr?limit=10001",
        "/cdr?limit=-1",
        "/cdr?limit=+5",
        "/cdr?limit=",
        "/cdr?limit=5&x=1",
        "/cdr?count=5",
        "/channels?limit=5",
    ] {
        assert_eq!(get(bad).map_err(|r| r.status), Err(400), "{bad}");
    }
    assert_eq!(get("/nope").map_err(|r| r.status), Err(404));
    assert_eq!(get("/channels/").map_err(|r| r.status), Err(404));
}

#[test]
fn another_method_on_a_known_path_is_405_with_allow_get() {
    for method in ["POST", "DELETE", "HEAD", "get"] {
        let refusal = route(&head(&format!("{method} /channels HTTP/1.1\r\nHost: a\r\n\r\n"))).expect_err(method);
        assert_eq!(refusal.status, 405, "{method}");
        assert_eq!(
            String::from_utf8(refusal.to_bytes()).expect("utf-8"),
            format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nAllow: GET\r\nConnection: close\r\n\r\n\
                 {{\"error\":\"{method} is not allowed here: use GET\"}}",
                41 + method.len()
            )
        );
    }
    let unknown = route(&head("POST /nope HTTP/1.1\r\nHost: a\r\n\r\n")).expect_err("404");
    assert_eq!(unknown.status, 404);
}

#[test]
fn a_response_encodes_status_length_and_close() {
    assert_eq!(
        Response::ok(b"[]".to_vec()).to_bytes(),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"
    );
}

/// Sends `request` on a fresh connection and returns everything the server sent back.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8(out).expect("utf-8 response")
}

fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn serves_each_table_as_exact_json_over_tcp() {
    let tmp = TempDir::new("management-serve");
    let (store, _) = Storage::open(tmp.path()).expect("open");
    // 4102444800 is 2100-01-01: unexpired whenever this runs. The second binding expired
    // in 1970 and must not be listed.
    store.write(Write::UpsertBinding(binding("sip:1000@example.com", "sip:1000@192.0.2.10:5062", 4_102_444_800)));
    store.write(Write::UpsertBinding(binding("sip:1001@example.com", "sip:1001@192.0.2.11", 1)));
    let mut a = channel("chan-a", 1_700_000_000);
    a.state = "CS_EXECUTE".into();
    a.answered_at = Some(1_700_000_003);
    a.call_uuid = Some("call-1".into());
    let mut b = channel("chan-b", 1_700_000_001);
    b.direction = Direction::Outbound;
    b.state = "CS_EXCHANGE_MEDIA".into();
    store.write(Write::UpsertChannel(a));
    store.write(Write::UpsertChannel(b));
    store.write(Write::UpsertCall(CallRow {
        uuid: "call-1".into(),
        a_leg_uuid: "chan-a".into(),
        b_leg_uuid: "chan-b".into(),
        created_at: 1_700_000_003,
        media_sessions: String::new(),
    }));
    store.write(Write::InsertCdr(cdr("leg-1", 1_700_000_100)));
    store.write(Write::InsertCdr(cdr("leg-2", 1_700_000_200)));
    store.sync().expect("sync");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(serve(
        listener,
        store.db_path().to_path_buf(),
        None,
        watch::channel(crate::switch::Stats::default()).1,
        stopped,
    ));

    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert_eq!(
        exchange(addr, get("/registrations").as_bytes()).await,
        ok_json(
            r#"[{"aor":"sip:1000@example.com","contact":"sip:1000@192.0.2.10:5062","expires_at":4102444800,"call_id":"reg-sip:1000@192.0.2.10:5062","cseq":7,"user_agent":"Linphone/5.2","received":"192.0.2.10:5062","transport":"udp","q":1.0,"instance_id":null}]"#
        )
    );
    assert_eq!(
        exchange(addr, get("/channels").as_bytes()).await,
        ok_json(concat!(
            r#"[{"uuid":"chan-a","direction":"inbound","state":"CS_EXECUTE","caller_id_name":"Alice","caller_id_number":"1000","destination_number":"1001","context":"default","created_at":1700000000,"answered_at":1700000003,"call_uuid":"call-1"},"#,
            r#"{"uuid":"chan-b","direction":"outbound","state":"CS_EXCHANGE_MEDIA","caller_id_name":"Alice","caller_id_number":"1000","destination_number":"1001","context":"default","created_at":1700000001,"answered_at":null,"call_uuid":null}]"#
        ))
    );
    assert_eq!(
        exchange(addr, get("/calls").as_bytes()).await,
        ok_json(
            r#"[{"uuid":"call-1","a_leg_uuid":"chan-a","b_leg_uuid":"chan-b","created_at":1700000003,"media_sessions":""}]"#
        )
    );
    assert_eq!(
        exchange(addr, get("/cdr?limit=1").as_bytes()).await,
        ok_json(
            r#"[{"uuid":"leg-2","call_uuid":"call-1","direction":"inbound","caller_id_name":"Alice","caller_id_number":"1000","destination_number":"1001","context":"default","start_at":1700000170,"answer_at":1700000175,"end_at":1700000200,"duration":30,"billsec":25,"hangup_cause":"NORMAL_CLEARING","q850_cause":16,"sip_status":200}]"#
        )
    );
    let all_cdr = exchange(addr, get("/cdr").as_bytes()).await;
    let body = all_cdr.split_once("\r\n\r\n").expect("head and body").1;
    let uuids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(body)
        .expect("JSON array")
        .iter()
        .map(|row| row["uuid"].as_str().expect("uuid").to_string())
        .collect();
    assert_eq!(uuids, vec!["leg-2", "leg-1"]);
    assert_eq!(exchange(addr, get("/dialogs").as_bytes()).await, ok_json("[]"));

    assert_eq!(
        exchange(addr, get("/nope").as_bytes()).await,
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 32\r\nConnection: close\r\n\r\n{\"error\":\"no resource at /nope\"}"
    );
    let post = exchange(addr, format!("POST /calls HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await;
    assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("\r\nAllow: GET\r\n"), "{post}");
    assert_eq!(
        exchange(addr, b"GET /calls HTTP/1.1\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 61\r\nConnection: close\r\n\r\n{\"error\":\"an HTTP/1.1 request needs exactly one Host header\"}"
    );
    let oversized = format!("GET /calls HTTP/1.1\r\nX-Pad: {}", "p".repeat(MAX_HEAD));
    let refused = exchange(addr, oversized.as_bytes()).await;
    assert!(refused.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{refused}");

    stop.send(true).expect("server listening for shutdown");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stopped in time").expect("server task");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener must be closed after shutdown");
    store.close();
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_gets_408() {
    let tmp = TempDir::new("management-timeout");
    let (store, _) = Storage::open(tmp.path()).expect("open");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        store.db_path().to_path_buf(),
        None,
        watch::channel(crate::switch::Stats::default()).1,
        stopped,
    ));
    let answer = exchange(addr, b"GET /calls HTTP/1.1\r\nHost: a\r\n").await;
    assert_eq!(
        answer,
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: 51\r\nConnection: close\r\n\r\n{\"error\":\"the request head did not arrive in time\"}"
    );
    store.close();
}
