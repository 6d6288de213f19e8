//! What the switch counts for `/metrics`, with bounded labels: requests by method (the
//! methods the parser knows, and "other"), responses sent by code (the codes SIP
//! switches send, and one bucket per class for the rest).

use crate::sip::message::Method;

/// The `method` label's values, in the counters' order.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// The response codes counted one by one; others count in their class (`1xx` ... `6xx`).
pub const CODES: [u16; 38] = [
    100, 180, 181, 182, 183, 200, 202, 400, 401, 403, 404, 405, 407, 408, 413, 415, 416, 420, 480, 481, 482, 483, 484,
    486, 487, 488, 489, 491, 500, 501, 502, 503, 504, 513, 600, 603, 604, 606,
];

/// Responses sent, by [`code_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByCode(pub [u64; CODES.len() + 6]);

impl Default for ByCode {
    fn default() -> Self {
        ByCode([0; CODES.len() + 6])
    }
}

pub fn method_index(m: Method) -> usize {
    match m {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Register => 4,
        Method::Options => 5,
        Method::Info => 6,
        Method::Update => 7,
        Method::Prack => 8,
        Method::Subscribe => 9,
        Method::Notify => 10,
        Method::Refer => 11,
        Method::Message => 12,
        Method::Publish => 13,
        Method::Extension => 14,
    }
}

/// Where code `code` counts: its own slot, or its class's after [`CODES`].
pub fn code_index(code: u16) -> usize {
    CODES.iter().position(|c| *c == code).unwrap_or_else(|| CODES.len() + usize::from((code / 100).clamp(1, 6) - 1))
}

/// The `code` label of slot `i`.
pub fn code_label(i: usize) -> String {
    match CODES.get(i) {
        Some(c) => c.to_string(),
        None => format!("{}xx", i - CODES.len() + 1),
    }
}

/// The status code of an outgoing response (`SIP/2.0 NNN ...`), or None for a request.
pub fn response_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().filter(|c| (100..700).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_count_in_their_slot_or_their_class() {
        assert_eq!(code_label(code_index(486)), "486");
        assert_eq!(code_label(code_index(299)), "2xx");
        assert_eq!(code_label(code_index(699)), "6xx");
        assert_eq!(response_code(b"SIP/2.0 407 Proxy Authentication Required\r\n"), Some(407));
        assert_eq!(response_code(b"INVITE sip:1@x SIP/2.0\r\n"), None);
        assert_eq!(response_code(b"SIP/2.0 99 x"), None);
    }
}
