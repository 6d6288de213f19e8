//! rtpengine's NG control protocol, client side: `<cookie> <bencoded dictionary>` over
//! UDP, answered by `<cookie> <bencoded dictionary>` with `result` = `ok` (or `error` and
//! an `error-reason`). A session is an `offer` carrying the caller's SDP (the reply's SDP
//! is what the callee sees: where the callee sends), an `answer` carrying the callee's
//! SDP (the reply's SDP is what the caller sees: where the caller sends), and a `delete`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use control_plane::ng::bencode::Value;

/// A minimal SDP offering PCMU on `addr` (RTP port; RTCP on the port above).
pub fn sdp_for(addr: SocketAddr, version: u64) -> String {
    let (family, ip) = match addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    format!(
        "v=0\r\no=- {version} {version} IN {family} {ip}\r\ns=rtpload\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        port = addr.port()
    )
}

/// The first audio stream's RTP address in an SDP: its `m=audio` port and the
/// connection address in force for it (media-level `c=` over session-level).
pub fn sdp_media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut session_c: Option<IpAddr> = None;
    let mut media: Option<(u16, Option<IpAddr>)> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if media.is_some() {
                break; // only the first audio stream
            }
            let mut words = m.split_whitespace();
            if words.next() == Some("audio") {
                media = Some((words.next()?.split('/').next()?.parse().ok()?, None));
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip = c.split_whitespace().nth(2)?.split('/').next()?.parse().ok()?;
            match media.as_mut() {
                Some((_, mc)) => *mc = Some(ip),
                None => session_c = Some(ip),
            }
        }
    }
    let (port, mc) = media?;
    Some(SocketAddr::new(mc.or(session_c)?, port))
}

/// A client for one NG listener.
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    cookies: u64,
    tries: u32,
}

impl NgClient {
    /// A client talking to `server` from an ephemeral port, waiting `timeout` per try.
    pub fn new(server: SocketAddr, timeout: Duration) -> std::io::Result<NgClient> {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(timeout))?;
        Ok(NgClient { sock, server, cookies: 0, tries: 3 })
    }

    /// Sends `request` and returns the reply dictionary (retrying on silence with the same
    /// cookie, as rtpengine expects of retransmissions). An `error` result is an `Err`.
    pub fn call(&mut self, request: &Value) -> Result<Value, String> {
        self.cookies += 1;
        // Unique per client socket too: several clients of one process must not share
        // cookies (a server answers a repeated cookie from its cache without redoing it).
        let port = self.sock.local_addr().map_or(0, |a| a.port());
        let cookie = format!("{}_{port}_{}", std::process::id(), self.cookies);
        let msg = frame(&cookie, request);
        let mut buf = vec![0u8; 65536];
        for _ in 0..self.tries {
            self.sock.send_to(&msg, self.server).map_err(|e| format!("ng send to {}: {e}", self.server))?;
            loop {
                let n = match self.sock.recv_from(&mut buf) {
                    Ok((n, from)) if from == self.server => n,
                    Ok(_) => continue,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        break
                    }
                    Err(e) => return Err(format!("ng receive: {e}")),
                };
                match split_reply(&buf[..n]) {
                    Some((c, body)) if c == cookie.as_bytes() => return check_reply(request, body),
                    _ => continue, // a late answer to an earlier try
                }
            }
        }
        Err(format!("ng: no answer from {} after {} tries", self.server, self.tries))
    }

    /// `offer` from `caller`: the address the callee must send to.
    pub fn offer(&mut self, call_id: &str, from_tag: &str, caller: SocketAddr) -> Result<SocketAddr, String> {
        reply_addr(&self.call(&offer_request(call_id, from_tag, caller))?)
    }

    /// `answer` from `callee`: the address the caller must send to.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        callee: SocketAddr,
    ) -> Result<SocketAddr, String> {
        reply_addr(&self.call(&answer_request(call_id, from_tag, to_tag, callee))?)
    }

    /// `delete` of the whole call.
    pub fn delete(&mut self, call_id: &str, from_tag: &str) -> Result<(), String> {
        self.call(&delete_request(call_id, from_tag)).map(|_| ())
    }
}

/// An `offer` from `caller` (its SDP offers PCMU there).
pub fn offer_request(call_id: &str, from_tag: &str, caller: SocketAddr) -> Value {
    Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str(from_tag)),
        ("sdp", Value::str(&sdp_for(caller, 1))),
    ])
}

/// An `answer` from `callee`.
pub fn answer_request(call_id: &str, from_tag: &str, to_tag: &str, callee: SocketAddr) -> Value {
    Value::dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str(from_tag)),
        ("to-tag", Value::str(to_tag)),
        ("sdp", Value::str(&sdp_for(callee, 1))),
    ])
}

/// A `delete` of the whole call.
pub fn delete_request(call_id: &str, from_tag: &str) -> Value {
    Value::dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str(from_tag)),
    ])
}

/// The datagram for `request` under `cookie`.
pub fn frame(cookie: &str, request: &Value) -> Vec<u8> {
    let mut msg = format!("{cookie} ").into_bytes();
    request.encode_canonical_into(&mut msg);
    msg
}

/// A reply datagram's cookie and bencoded body.
pub fn split_reply(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = datagram.iter().position(|&c| c == b' ')?;
    Some((&datagram[..space], &datagram[space + 1..]))
}

/// The reply dictionary to `request` in `body`; an `error` result (or none) is an `Err`.
pub fn check_reply(request: &Value, body: &[u8]) -> Result<Value, String> {
    let reply = Value::decode(body).map_err(|e| format!("ng reply: {e}"))?;
    match reply.get("result").and_then(Value::as_str) {
        Some("ok") => Ok(reply),
        other => Err(format!(
            "ng {}: {} ({})",
            request.get("command").and_then(Value::as_str).unwrap_or_default(),
            other.unwrap_or("no result"),
            reply.get("error-reason").and_then(Value::as_str).unwrap_or_default()
        )),
    }
}

/// The first audio stream's address in a reply's SDP.
pub fn reply_addr(reply: &Value) -> Result<SocketAddr, String> {
    let sdp = reply.get("sdp").and_then(Value::as_str).ok_or("ng reply without an sdp")?;
    sdp_media_addr(sdp).ok_or_else(|| format!("no audio address in the reply's SDP: {sdp:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdp_names_its_address_and_reads_back() {
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let sdp = sdp_for(a, 7);
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n") && sdp.contains("m=audio 40000 RTP/AVP 0\r\n"), "{sdp}");
        assert_eq!(sdp_media_addr(&sdp), Some(a));
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(sdp_media_addr(&sdp_for(v6, 1)), Some(v6));
    }

    #[test]
    fn media_level_connection_wins_and_only_the_first_audio_stream_counts() {
        let sdp = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\
                   m=video 5000 RTP/AVP 96\nc=IN IP4 192.0.2.9\n\
                   m=audio 30000/2 RTP/AVP 0\nc=IN IP4 127.0.0.1/127\na=rtcp:30001\n\
                   m=audio 31000 RTP/AVP 0\nc=IN IP4 192.0.2.7\n";
        assert_eq!(sdp_media_addr(sdp), Some("127.0.0.1:30000".parse().unwrap()));
        let session_level = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(sdp_media_addr(session_level), Some("192.0.2.1:4000".parse().unwrap()));
        assert_eq!(sdp_media_addr("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), None);
        assert_eq!(sdp_media_addr("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio x RTP/AVP 0\r\n"), None);
    }

    #[test]
    fn a_call_takes_its_answer_by_cookie_and_reports_errors() {
        // A fake NG server: ignores the first try, then answers a stale cookie and the
        // right one.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (_, _) = server.recv_from(&mut buf).unwrap(); // first try: silence
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (cookie, body) = text.split_once(' ').unwrap();
            assert!(body.starts_with("d7:call-id2:c17:command5:offer"), "{body}");
            let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\n";
            server.send_to(b"stale d6:result2:oke", from).unwrap();
            server.send_to(format!("{cookie} d3:sdp{}:{sdp}6:result2:oke", sdp.len()).as_bytes(), from).unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (cookie, _) = text.split_once(' ').unwrap();
            server.send_to(format!("{cookie} d12:error-reason7:no call6:result5:errore").as_bytes(), from).unwrap();
        });
        let mut c = NgClient::new(addr, Duration::from_millis(200)).unwrap();
        assert_eq!(c.offer("c1", "f1", "127.0.0.1:9000".parse().unwrap()), Ok("127.0.0.1:30000".parse().unwrap()));
        assert_eq!(c.delete("c1", "f1"), Err("ng delete: error (no call)".to_string()));
        t.join().unwrap();
    }
}
