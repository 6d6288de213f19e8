//! Cutting SIP messages out of a byte stream (RFC 3261 §18.3), sans-IO.
//!
//! Bytes read from a connection are pushed in; complete messages come out, each exactly
//! its headers plus Content-Length octets of body. Leading CRLFs are skipped; a
//! double-CRLF "ping" is reported so the connection can answer with a CRLF "pong"
//! (RFC 5626 §3.5.1). Limits on the header size and the whole message keep a slow or
//! hostile peer from growing the buffer without bound.

use bytes::{Buf, Bytes, BytesMut};

use crate::sip::message::grammar::{parse_digits, trim_lws};
use crate::sip::message::HeaderName;

/// What the framer found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message.
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping: answer with a single CRLF.
    Ping,
}

/// Why a stream must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// No end of headers within the configured header limit.
    #[error("headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    /// Content-Length would take the message past the configured limit.
    #[error("message exceeds {0} bytes")]
    MessageTooLarge(usize),
    /// Content-Length is missing, repeated or not a number (RFC 4475 §3.1.2.3, §3.3.9).
    #[error("Content-Length: {0}")]
    ContentLength(&'static str),
}

/// Accumulates stream bytes and yields whole messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_message: usize,
    /// Where to resume looking for CRLFCRLF (avoids rescanning on each read).
    scanned: usize,
    /// Header length and body length of the message being received, once known.
    pending: Option<(usize, usize)>,
}

impl StreamFramer {
    pub fn new(max_message: usize) -> Self {
        StreamFramer { buf: BytesMut::with_capacity(4096), max_message, scanned: 0, pending: None }
    }

    /// Bytes held but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The start of what is held (at most `max` bytes): after a framing error, the
    /// headers to answer it from (513 needs the request's Via, From, To, Call-ID, CSeq).
    pub fn head(&self, max: usize) -> Bytes {
        Bytes::copy_from_slice(&self.buf[..self.buf.len().min(max)])
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error after
    /// which the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.pending.is_none() {
            // Leading CRLFs: keep-alives. "\r\n\r\n" is a ping; a lone "\r\n" a pong.
            loop {
                if self.buf.starts_with(b"\r\n\r\n") {
                    self.buf.advance(4);
                    self.scanned = 0;
                    return Ok(Some(Frame::Ping));
                }
                if self.buf.starts_with(b"\r\n") && self.buf.len() >= 3 && self.buf[2] != b'\r' {
                    self.buf.advance(2);
                    self.scanned = 0;
                    continue;
                }
                break;
            }
            if self.buf.len() < 4 || self.buf.starts_with(b"\r\n") {
                return Ok(None);
            }
            let from = self.scanned.saturating_sub(3);
            let Some(end) = memchr::memmem::find(&self.buf[from..], b"\r\n\r\n").map(|p| from + p + 4) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_message {
                    return Err(FramingError::HeadersTooLarge(self.max_message));
                }
                return Ok(None);
            };
            let body = content_length(&self.buf[..end])?;
            if end + body > self.max_message {
                return Err(FramingError::MessageTooLarge(self.max_message));
            }
            self.pending = Some((end, body));
        }
        let (head, body) = self.pending.expect("set above");
        if self.buf.len() < head + body {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(head + body).freeze())))
    }
}

/// Reads Content-Length from a header block leniently enough to frame (the parser checks
/// the rest strictly): names in any case, compact `l`, folded lines.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found = None;
    let mut lines = head.split(|&c| c == b'\n').skip(1);
    let mut current: Option<&[u8]> = None;
    let mut check = |line: &[u8]| -> Result<(), FramingError> {
        if let Some(colon) = memchr::memchr(b':', line) {
            if HeaderName::from_bytes(trim_lws(&line[..colon])) == HeaderName::ContentLength {
                if found.is_some() {
                    return Err(FramingError::ContentLength("appears more than once"));
                }
                let v = trim_lws(&line[colon + 1..]);
                found =
                    Some(parse_digits(v, u32::MAX as u64).ok_or(FramingError::ContentLength("not a number"))? as usize);
            }
        }
        Ok(())
    };
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            // A fold: Content-Length values never fold in practice; keep the first line.
            continue;
        }
        if let Some(prev) = current.take() {
            check(prev)?;
        }
        if line.is_empty() {
            break;
        }
        current = Some(line);
    }
    if let Some(prev) = current {
        check(prev)?;
    }
    found.ok_or(FramingError::ContentLength("required on stream transports"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    fn frames(f: &mut StreamFramer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame().unwrap()).collect()
    }

    #[test]
    fn several_messages_in_one_read_rfc3261_18_3() {
        let mut f = StreamFramer::new(65535);
        let mut data = OPTIONS.to_vec();
        data.extend_from_slice(OPTIONS);
        f.push(&data);
        assert_eq!(
            frames(&mut f),
            vec![Frame::Message(Bytes::from_static(OPTIONS)), Frame::Message(Bytes::from_static(OPTIONS))]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_message_split_at_every_byte_is_reassembled() {
        for cut in 1..OPTIONS.len() {
            let mut f = StreamFramer::new(65535);
            f.push(&OPTIONS[..cut]);
            assert_eq!(f.next_frame().unwrap(), None, "cut at {cut}");
            f.push(&OPTIONS[cut..]);
            assert_eq!(f.next_frame().unwrap(), Some(Frame::Message(Bytes::from_static(OPTIONS))), "cut at {cut}");
        }
    }

    #[test]
    fn crlf_keepalives_rfc5626_3_5_1() {
        let mut f = StreamFramer::new(65535);
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        f.push(b"\r\n");
        f.push(OPTIONS);
        assert_eq!(frames(&mut f), vec![Frame::Message(Bytes::from_static(OPTIONS))]);
    }

    #[test]
    fn limits_and_bad_lengths_close_the_stream_rfc4475_3_1_2_3_and_3_3_9() {
        let mut f = StreamFramer::new(64);
        f.push(&[b'x'; 100]);
        assert_eq!(f.next_frame(), Err(FramingError::HeadersTooLarge(64)));
        let mut f = StreamFramer::new(200);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::MessageTooLarge(200)));
        let mut f = StreamFramer::new(200);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::ContentLength("not a number")));
        let mut f = StreamFramer::new(200);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::ContentLength("appears more than once")));
        let mut f = StreamFramer::new(200);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::ContentLength("required on stream transports")));
    }

    #[test]
    fn content_length_larger_than_sent_waits_for_more_rfc4475_3_1_2_2() {
        let mut f = StreamFramer::new(65535);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"defghij");
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
    }
}
