//! Matching messages to transactions (RFC 3261 §17.1.3, §17.2.3, §9.2, §8.2.2.2).
//!
//! Keys own copies of the few bytes they compare, so a transaction can be found from any
//! later message without keeping the first one's buffer borrowed.

use crate::sip::message::{Message, Method};

/// The RFC 3261 magic cookie that marks a branch as globally unique (§8.1.1.7).
const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// True if `branch` is an RFC 3261 branch: the magic cookie followed by more characters.
pub(super) fn is_rfc3261_branch(branch: Option<&[u8]>) -> bool {
    branch.is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
}

/// The method a request's transaction is filed under: an ACK belongs to its INVITE.
fn transaction_method(msg: &Message) -> &[u8] {
    match msg.method() {
        Method::Ack => b"INVITE",
        _ => msg.method_bytes(),
    }
}

/// A client transaction: top Via branch and CSeq method (§17.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    branch: Vec<u8>,
    method: Vec<u8>,
}

impl ClientKey {
    /// The key of a request the TU sends; `None` without an RFC 3261 branch.
    pub(super) fn for_request(msg: &Message) -> Option<ClientKey> {
        Self::of(msg)
    }

    /// The key a response is matched with; `None` without an RFC 3261 branch (no client
    /// transaction of ours can have one).
    pub(super) fn for_response(msg: &Message) -> Option<ClientKey> {
        Self::of(msg)
    }

    fn of(msg: &Message) -> Option<ClientKey> {
        let branch = msg.branch().filter(|b| is_rfc3261_branch(Some(b)))?;
        Some(ClientKey {
            branch: branch.to_vec(),
            // For a response this is the CSeq method, for a request the request method.
            method: msg.method_bytes().to_vec(),
        })
    }
}

/// A server transaction (§17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ServerKey {
    /// RFC 3261: branch, sent-by of the top Via, and method (ACK filed as INVITE).
    Branch { branch: Vec<u8>, host: Vec<u8>, port: u16, method: Vec<u8> },
    /// RFC 2543 (no magic cookie): Request-URI, To tag, From tag, Call-ID, CSeq number
    /// and method, and the whole top Via.
    Legacy {
        request_uri: Vec<u8>,
        to_tag: Option<Vec<u8>>,
        from_tag: Option<Vec<u8>>,
        call_id: Vec<u8>,
        cseq: u32,
        top_via: Vec<u8>,
        method: Vec<u8>,
    },
}

impl ServerKey {
    /// The key of request `msg` (ACK filed under INVITE).
    pub(super) fn for_request(msg: &Message) -> ServerKey {
        Self::with(msg, transaction_method(msg), msg.to_tag())
    }

    /// The key `msg` would have if its method were `method` and its To tag `to_tag`: how
    /// an ACK or CANCEL looks up the INVITE it refers to (§9.2, §17.2.3).
    pub(super) fn with(msg: &Message, method: &[u8], to_tag: Option<&[u8]>) -> ServerKey {
        if is_rfc3261_branch(msg.branch()) {
            let via = msg.top_via();
            let default_port = if via.transport.eq_ignore_ascii_case(b"TLS") { 5061 } else { 5060 };
            ServerKey::Branch {
                branch: msg.branch().unwrap_or_default().to_vec(),
                host: via.host.to_ascii_lowercase(),
                port: via.port.unwrap_or(default_port),
                method: method.to_vec(),
            }
        } else {
            ServerKey::Legacy {
                request_uri: msg.request_uri_bytes().to_vec(),
                to_tag: to_tag.map(<[u8]>::to_vec),
                from_tag: msg.from_tag().map(<[u8]>::to_vec),
                call_id: msg.call_id().to_vec(),
                cseq: msg.cseq(),
                top_via: msg.top_via_bytes().to_vec(),
                method: method.to_vec(),
            }
        }
    }

    /// True for an RFC 2543 key.
    pub(super) fn is_legacy(&self) -> bool {
        matches!(self, ServerKey::Legacy { .. })
    }
}

/// What §8.2.2.2 compares to detect a merged request: From tag, Call-ID and CSeq.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct MergeKey {
    from_tag: Option<Vec<u8>>,
    call_id: Vec<u8>,
    cseq: u32,
    method: Vec<u8>,
}

impl MergeKey {
    pub(super) fn new(msg: &Message) -> MergeKey {
        MergeKey {
            from_tag: msg.from_tag().map(<[u8]>::to_vec),
            call_id: msg.call_id().to_vec(),
            cseq: msg.cseq(),
            method: msg.method_bytes().to_vec(),
        }
    }
}

/// How an ACK for a 2xx finds the INVITE server transaction retransmitting that 2xx: the
/// ACK has a branch of its own, so Call-ID, CSeq number and the 2xx's To tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct AckKey {
    call_id: Vec<u8>,
    cseq: u32,
    to_tag: Option<Vec<u8>>,
}

impl AckKey {
    /// The key of an ACK, or of the 2xx it acknowledges (both carry the same three values).
    pub(super) fn new(msg: &Message) -> AckKey {
        AckKey { call_id: msg.call_id().to_vec(), cseq: msg.cseq(), to_tag: msg.to_tag().map(<[u8]>::to_vec) }
    }

    /// The key of a 2xx read with [`crate::sip::message::scan_dialog_ids`].
    pub(super) fn from_ids(ids: &crate::sip::message::DialogIds<'_>) -> AckKey {
        AckKey { call_id: ids.call_id.to_vec(), cseq: ids.cseq, to_tag: ids.to_tag.map(<[u8]>::to_vec) }
    }
}
