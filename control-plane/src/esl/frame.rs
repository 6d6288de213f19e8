//! The event socket's framing, client to switch (sans-IO): a command is a block of lines
//! ended by an empty line; its first line is the command (`auth ClueCon`, `api status`,
//! `sendmsg <uuid>`), the others `Name: value` headers; a `Content-Length` header means
//! that many bytes of body follow the empty line. Lines end in LF; a CR before it is
//! dropped, as mod_event_socket does. Several commands may come in one read, and one
//! command over several.

/// The longest command head (the lines up to the empty line) taken.
pub const MAX_HEAD: usize = 64 * 1024;
/// The longest body taken (`sendevent` and `sendmsg` carry one).
pub const MAX_BODY: usize = 1024 * 1024;

/// One command from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The first line, e.g. `api show channels`.
    pub line: String,
    /// The `Name: value` lines after it, in order.
    pub headers: Vec<(String, String)>,
    /// The body, when a `Content-Length` header announced one.
    pub body: Option<Vec<u8>>,
}

impl Command {
    /// The first header named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a connection's bytes cannot be taken as commands (the connection is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a command head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("Content-Length {0:?} is not a number")]
    BadLength(String),
    #[error("a body of {0} bytes, more than {MAX_BODY}")]
    BodyTooLong(usize),
    #[error("a command that is not UTF-8")]
    NotText,
}

/// Cuts a connection's bytes into [`Command`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// How far the buffer was searched for the end of the head, so a slow sender's head
    /// is not searched again from the start on every read.
    searched: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole command, if one has arrived. Blank lines between commands are
    /// skipped. After an error the decoder is of no further use.
    pub fn next_command(&mut self) -> Result<Option<Command>, FrameError> {
        // Empty lines before a command (a client's extra newline) are nothing.
        let lead = self.buf.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
        if lead > 0 {
            self.buf.drain(..lead);
            self.searched = 0;
        }
        let Some(head_end) = self.head_end() else {
            if self.buf.len() > MAX_HEAD {
                return Err(FrameError::HeadTooLong);
            }
            return Ok(None);
        };
        if head_end.0 > MAX_HEAD {
            return Err(FrameError::HeadTooLong);
        }
        let head = std::str::from_utf8(&self.buf[..head_end.0]).map_err(|_| FrameError::NotText)?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let line = lines.next().unwrap_or_default().trim().to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.trim().to_string(), v.trim_start().to_string()),
                None => (l.trim().to_string(), String::new()),
            })
            .collect();
        let length = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("Content-Length")).map(|(_, v)| v);
        let body_len = match length {
            None => 0,
            Some(v) => v.trim().parse::<usize>().map_err(|_| FrameError::BadLength(v.clone()))?,
        };
        if body_len > MAX_BODY {
            return Err(FrameError::BodyTooLong(body_len));
        }
        let start = head_end.1;
        if self.buf.len() < start + body_len {
            return Ok(None);
        }
        let body = length.map(|_| self.buf[start..start + body_len].to_vec());
        self.buf.drain(..start + body_len);
        self.searched = 0;
        Ok(Some(Command { line, headers, body }))
    }

    /// Where the head ends: (its length, where the body starts), at the first empty line.
    fn head_end(&mut self) -> Option<(usize, usize)> {
        let from = self.searched.saturating_sub(3);
        let found = (from..self.buf.len()).find_map(|i| {
            if self.buf[i] != b'\n' {
                return None;
            }
            match self.buf.get(i + 1..) {
                Some([b'\n', ..]) => Some((i, i + 2)),
                Some([b'\r', b'\n', ..]) => Some((i, i + 3)),
                _ => None,
            }
        });
        if found.is_none() {
            self.searched = self.buf.len();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(bytes: &[u8]) -> Vec<Command> {
        let mut d = Decoder::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_command().unwrap()).collect()
    }

    #[test]
    fn several_commands_in_one_read_come_out_in_order() {
        let got = all(b"auth ClueCon\n\napi status\n\nevent plain ALL\n\n");
        let lines: Vec<&str> = got.iter().map(|c| c.line.as_str()).collect();
        assert_eq!(lines, ["auth ClueCon", "api status", "event plain ALL"]);
    }

    #[test]
    fn headers_and_a_body_of_content_length_bytes() {
        let got = all(b"sendmsg abc\ncall-command: execute\nContent-Length: 5\n\nhello\n\nexit\n\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, "sendmsg abc");
        assert_eq!(got[0].header("Call-Command"), Some("execute"));
        assert_eq!(got[0].body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(got[1].line, "exit");
    }

    #[test]
    fn crlf_lines_are_taken_as_lf_lines() {
        let got = all(b"bgapi status\r\nJob-UUID: 123\r\n\r\n");
        assert_eq!(got[0].line, "bgapi status");
        assert_eq!(got[0].header("job-uuid"), Some("123"));
    }

    #[test]
    fn a_command_split_over_reads_waits_for_its_end() {
        let mut d = Decoder::new();
        d.push(b"api sta");
        assert_eq!(d.next_command().unwrap(), None);
        d.push(b"tus\n");
        assert_eq!(d.next_command().unwrap(), None);
        d.push(b"\n");
        assert_eq!(d.next_command().unwrap().unwrap().line, "api status");
    }

    #[test]
    fn a_head_without_end_beyond_the_limit_is_an_error() {
        let mut d = Decoder::new();
        d.push(&vec![b'a'; MAX_HEAD + 1]);
        assert_eq!(d.next_command(), Err(FrameError::HeadTooLong));
    }

    #[test]
    fn a_bad_or_huge_content_length_is_an_error() {
        let mut d = Decoder::new();
        d.push(b"sendevent CUSTOM\nContent-Length: x\n\n");
        assert_eq!(d.next_command(), Err(FrameError::BadLength("x".into())));
        let mut d = Decoder::new();
        d.push(b"sendevent CUSTOM\nContent-Length: 99999999\n\n");
        assert_eq!(d.next_command(), Err(FrameError::BodyTooLong(99_999_999)));
    }

    proptest! {
        /// However the bytes are cut into reads, the same commands come out.
        #[test]
        fn the_commands_do_not_depend_on_how_the_bytes_arrive(cuts in proptest::collection::vec(1usize..20, 0..30)) {
            let bytes: &[u8] = b"auth ClueCon\n\nsendmsg u\nContent-Length: 3\n\nabc\n\napi show channels as json\r\n\r\n";
            let whole = all(bytes);
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.iter().chain(std::iter::repeat(&7)) {
                if at >= bytes.len() { break; }
                let end = (at + c).min(bytes.len());
                d.push(&bytes[at..end]);
                at = end;
                while let Some(cmd) = d.next_command().unwrap() { got.push(cmd); }
            }
            prop_assert_eq!(got, whole);
        }

        /// Any bytes give commands or an error, never a panic.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = Decoder::new();
            d.push(&bytes);
            for _ in 0..50 {
                match d.next_command() { Ok(Some(_)) => {}, _ => break }
            }
        }
    }
}
