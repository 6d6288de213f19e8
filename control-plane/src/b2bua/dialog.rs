//! Dialogs (RFC 3261 §12): the state both ends of a call leg share (Call-ID, tags,
//! CSeq, remote target, route set), the in-dialog requests built from it, and its
//! `sip_dialogs` row (written while the call is up, read back by recovery).

use std::net::SocketAddr;

use crate::sip::message::write::Writer;
use crate::sip::message::{split_list, HeaderName, Message};
use crate::sip::transport::{Peer, TransportKind};
use crate::storage::{DialogRow, Direction};

/// One side of a dialog, as this switch holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The From value of our requests (URI and our tag).
    pub local: String,
    /// The To value of our requests (URI and the remote tag).
    pub remote: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route headers for in-dialog requests (RFC 3261 §12.1).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    /// The CSeq number of the peer's last request in the dialog (0 before any).
    pub remote_cseq: u32,
    /// Where our requests are sent (the peer's source address, so NAT works).
    pub peer: Peer,
}

/// Why a stored `sip_dialogs` row cannot become a [`Dialog`] again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogRowError {
    /// A column the dialog needs is empty: the row was stored before schema 2.
    #[error("column {0} is empty (a row stored before schema version 2)")]
    Missing(&'static str),
    /// `peer_transport` is neither `udp` nor `tcp`.
    #[error("peer_transport {0:?} is neither udp nor tcp")]
    Transport(String),
    /// `peer_remote` or `peer_local` is not an `ip:port`.
    #[error("{column} {value:?} is not an ip:port")]
    Address {
        /// The column.
        column: &'static str,
        /// What it holds.
        value: String,
    },
}

fn contact_uri(msg: &Message) -> Option<String> {
    msg.contacts().next().map(|c| String::from_utf8_lossy(c.uri.raw).into_owned())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Dialog {
    /// The UAS side, from an INVITE we answer with `local_tag` (RFC 3261 §12.1.1).
    pub fn uas(invite: &Message, local_tag: &str, peer: Peer) -> Dialog {
        let to = text(invite.header(HeaderName::To).unwrap_or_default());
        let local = if invite.to_tag().is_some() { to } else { format!("{to};tag={local_tag}") };
        Dialog {
            call_id: text(invite.call_id()),
            local_tag: local_tag.to_string(),
            remote_tag: invite.from_tag().map(text).unwrap_or_default(),
            local,
            remote: text(invite.header(HeaderName::From).unwrap_or_default()),
            remote_target: contact_uri(invite).unwrap_or_else(|| text(invite.from().uri.raw)),
            route_set: invite.values(HeaderName::RecordRoute).map(text).collect(),
            local_cseq: 0,
            remote_cseq: invite.cseq(),
            peer,
        }
    }

    /// The UAC side, from the INVITE we sent and a 2xx to it (RFC 3261 §12.1.2).
    pub fn uac(invite: &Message, ok: &Message, peer: Peer) -> Option<Dialog> {
        Some(Dialog {
            call_id: text(invite.call_id()),
            local_tag: text(invite.from_tag()?),
            remote_tag: text(ok.to_tag()?),
            local: text(invite.header(HeaderName::From)?),
            remote: text(ok.header(HeaderName::To)?),
            remote_target: contact_uri(ok)?,
            route_set: {
                let mut r: Vec<String> = ok.values(HeaderName::RecordRoute).map(text).collect();
                r.reverse();
                r
            },
            local_cseq: invite.cseq(),
            remote_cseq: 0,
            peer,
        })
    }

    /// The `sip_dialogs` row of the leg `channel_uuid`, confirmed.
    pub fn row(&self, channel_uuid: &str, direction: Direction) -> DialogRow {
        DialogRow {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
            channel_uuid: channel_uuid.to_string(),
            direction,
            state: "confirmed".into(),
            remote_target: self.remote_target.clone(),
            route_set: self.route_set.join(", "),
            local_cseq: self.local_cseq,
            remote_cseq: self.remote_cseq,
            local_uri: self.local.clone(),
            remote_uri: self.remote.clone(),
            peer_transport: self.peer.transport.via_name().to_ascii_lowercase(),
            peer_remote: self.peer.remote.to_string(),
            peer_local: self.peer.local.to_string(),
        }
    }

    /// The dialog a stored row describes (recovery after a restart).
    pub fn from_row(row: &DialogRow) -> Result<Dialog, DialogRowError> {
        let needed = |column: &'static str, value: &str| {
            if value.is_empty() {
                Err(DialogRowError::Missing(column))
            } else {
                Ok(value.to_string())
            }
        };
        let address = |column: &'static str, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| DialogRowError::Address { column, value: value.to_string() })
        };
        let transport = TransportKind::from_name(&needed("peer_transport", &row.peer_transport)?)
            .ok_or_else(|| DialogRowError::Transport(row.peer_transport.clone()))?;
        Ok(Dialog {
            call_id: needed("call_id", &row.call_id)?,
            local_tag: needed("local_tag", &row.local_tag)?,
            remote_tag: row.remote_tag.clone(),
            local: needed("local_uri", &row.local_uri)?,
            remote: needed("remote_uri", &row.remote_uri)?,
            remote_target: needed("remote_target", &row.remote_target)?,
            route_set: split_list(row.route_set.as_bytes()).map(text).collect(),
            local_cseq: row.local_cseq,
            remote_cseq: row.remote_cseq,
            peer: Peer {
                transport,
                remote: address("peer_remote", &needed("peer_remote", &row.peer_remote)?)?,
                local: address("peer_local", &needed("peer_local", &row.peer_local)?)?,
            },
        })
    }

    /// The key in-dialog requests are found by: Call-ID and our tag.
    pub fn key(&self) -> (String, String) {
        (self.call_id.clone(), self.local_tag.clone())
    }

    fn start(&self, w: &mut Writer<'_>, branch: &str, cseq: u32, method: &str) {
        w.header_fmt(
            "Via",
            format_args!("SIP/2.0/{} {};branch={branch};rport", self.peer.transport.via_name(), self.peer.local),
        );
        w.header("Max-Forwards", "70");
        w.header("From", &self.local);
        w.header("To", &self.remote);
        w.header("Call-ID", &self.call_id);
        w.header_fmt("CSeq", format_args!("{cseq} {method}"));
        for r in &self.route_set {
            w.header("Route", r);
        }
    }

    /// A new in-dialog request (BYE, INFO, re-INVITE, …) with the next CSeq.
    pub fn request<'a>(&mut self, method: &str, branch: &str, out: &'a mut Vec<u8>) -> Writer<'a> {
        self.local_cseq += 1;
        let mut w = Writer::request(out, method.as_bytes(), self.remote_target.as_bytes());
        self.start(&mut w, branch, self.local_cseq, method);
        w
    }

    /// The ACK for the 2xx to the INVITE with CSeq `cseq` (RFC 3261 §13.2.2.4).
    pub fn ack<'a>(&self, cseq: u32, branch: &str, out: &'a mut Vec<u8>) -> Writer<'a> {
        let mut w = Writer::request(out, b"ACK", self.remote_target.as_bytes());
        self.start(&mut w, branch, cseq, "ACK");
        w
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::message::Framing;
    use crate::sip::transport::TransportKind;

    fn parse(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n")), Framing::Datagram).unwrap()
    }

    fn peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            remote: "192.0.2.1:5062".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
        }
    }

    #[test]
    fn uas_dialog_from_invite_rfc3261_12_1_1() {
        let inv = parse("INVITE sip:1001@sw SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1\nFrom: \"A\" <sip:1000@sw>;tag=a1\nTo: <sip:1001@sw>\nCall-ID: c1\nCSeq: 2 INVITE\nContact: <sip:1000@192.0.2.1:5062>\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nContent-Length: 0\n\n");
        let mut d = Dialog::uas(&inv, "s1", peer());
        assert_eq!((d.call_id.as_str(), d.local_tag.as_str(), d.remote_tag.as_str()), ("c1", "s1", "a1"));
        assert_eq!(d.remote_target, "sip:1000@192.0.2.1:5062");
        assert_eq!(d.route_set, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        let mut out = Vec::new();
        d.request("BYE", "z9hG4bKbye", &mut out).finish(b"");
        let bye = Message::parse(Bytes::from(out), Framing::Datagram).unwrap();
        assert_eq!(bye.request_uri_bytes(), b"sip:1000@192.0.2.1:5062");
        assert_eq!(bye.header(HeaderName::From), Some(&b"<sip:1001@sw>;tag=s1"[..]));
        assert_eq!(bye.header(HeaderName::To), Some(&b"\"A\" <sip:1000@sw>;tag=a1"[..]));
        assert_eq!((bye.cseq(), bye.call_id()), (1, &b"c1"[..]));
        assert_eq!(bye.values(HeaderName::Route).collect::<Vec<_>>(), [&b"<sip:p1;lr>"[..], b"<sip:p2;lr>"]);
    }

    #[test]
    fn uac_dialog_from_2xx_reverses_the_route_set_rfc3261_12_1_2() {
        let inv = parse("INVITE sip:1001@192.0.2.9 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\nFrom: <sip:1000@sw>;tag=f1\nTo: <sip:1001@sw>\nCall-ID: b1\nCSeq: 10 INVITE\nContent-Length: 0\n\n");
        let ok = parse("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\nFrom: <sip:1000@sw>;tag=f1\nTo: <sip:1001@sw>;tag=t9\nCall-ID: b1\nCSeq: 10 INVITE\nContact: <sip:1001@192.0.2.9:5070>\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nContent-Length: 0\n\n");
        let d = Dialog::uac(&inv, &ok, peer()).unwrap();
        assert_eq!((d.local_tag.as_str(), d.remote_tag.as_str(), d.local_cseq), ("f1", "t9", 10));
        assert_eq!(d.route_set, ["<sip:p2;lr>", "<sip:p1;lr>"]);
        let mut out = Vec::new();
        d.ack(10, "z9hG4bKack", &mut out).finish(b"");
        let ack = Message::parse(Bytes::from(out), Framing::Datagram).unwrap();
        assert_eq!((ack.request_uri_bytes(), ack.cseq()), (&b"sip:1001@192.0.2.9:5070"[..], 10));
        assert_eq!(ack.to_tag(), Some(&b"t9"[..]));
        assert!(Dialog::uac(&inv, &parse("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\nFrom: <sip:a@b>;tag=f1\nTo: <sip:c@d>\nCall-ID: b1\nCSeq: 10 INVITE\nContent-Length: 0\n\n"), peer()).is_none(), "a 2xx without To tag or Contact makes no dialog");
    }

    #[test]
    fn a_dialog_survives_its_sip_dialogs_row() {
        let inv = parse("INVITE sip:1001@sw SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1\nFrom: \"A, B\" <sip:1000@sw>;tag=a1\nTo: <sip:1001@sw>\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:1000@192.0.2.1:5062>\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nContent-Length: 0\n\n");
        let mut d = Dialog::uas(&inv, "s1", peer());
        d.local_cseq = 3;
        let row = d.row("chan-a", Direction::Inbound);
        assert_eq!((row.remote_cseq, row.local_cseq, row.peer_transport.as_str()), (7, 3, "udp"));
        assert_eq!(Dialog::from_row(&row), Ok(d));
    }

    #[test]
    fn a_row_without_the_recovery_columns_makes_no_dialog() {
        let d = Dialog::uas(&parse("INVITE sip:1001@sw SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1\nFrom: <sip:1000@sw>;tag=a1\nTo: <sip:1001@sw>\nCall-ID: c1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"), "s1", peer());
        let mut old = d.row("chan-a", Direction::Inbound);
        old.local_uri.clear();
        assert_eq!(Dialog::from_row(&old), Err(DialogRowError::Missing("local_uri")));
        let mut bad = d.row("chan-a", Direction::Inbound);
        bad.peer_transport = "sctp".into();
        assert_eq!(Dialog::from_row(&bad), Err(DialogRowError::Transport("sctp".into())));
        let mut bad = d.row("chan-a", Direction::Inbound);
        bad.peer_local = "nowhere".into();
        assert!(matches!(Dialog::from_row(&bad), Err(DialogRowError::Address { column: "peer_local", .. })));
    }
}
