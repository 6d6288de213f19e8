//! One struct per table row, and how each maps to and from SQLite columns.
//!
//! The column lists here are the single place that ties a struct's fields to the order of
//! the columns in the `SELECT` and `INSERT` statements of [`super::reader`] and
//! [`super::writer`].

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;

/// Which way a leg, dialog or call detail record goes, as FreeSWITCH names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The switch received the INVITE (the A-leg).
    Inbound,
    /// The switch sent the INVITE (a B-leg).
    Outbound,
}

impl Direction {
    /// The stored name: `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl ToSql for Direction {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Direction {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            other => Err(FromSqlError::Other(format!("direction {other:?} is neither inbound nor outbound").into())),
        }
    }
}

/// A registrar binding: one contact of one address of record (`registrations`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindingRow {
    /// The address of record, e.g. `sip:1000@example.com`.
    pub aor: String,
    /// The contact URI the AOR is reachable at.
    pub contact: String,
    /// When the binding expires, in unix seconds.
    pub expires_at: i64,
    /// The Call-ID of the REGISTER that made or refreshed it.
    pub call_id: String,
    /// The CSeq number of that REGISTER.
    pub cseq: u32,
    /// The registering device's User-Agent, when it sent one.
    pub user_agent: Option<String>,
    /// The source address the REGISTER came from, `ip:port`.
    pub received: String,
    /// The transport it came over: `udp`, `tcp`, `tls`, `ws`.
    pub transport: String,
    /// The contact's q-value, 0.0 to 1.0 (1.0 when absent).
    pub q: f64,
    /// The `+sip.instance` of the contact (RFC 5626), when it has one.
    pub instance_id: Option<String>,
}

pub(crate) const BINDING_COLUMNS: &str =
    "aor, contact, expires_at, call_id, cseq, user_agent, received, transport, q, instance_id";

impl BindingRow {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BindingRow> {
        Ok(BindingRow {
            aor: r.get(0)?,
            contact: r.get(1)?,
            expires_at: r.get(2)?,
            call_id: r.get(3)?,
            cseq: r.get(4)?,
            user_agent: r.get(5)?,
            received: r.get(6)?,
            transport: r.get(7)?,
            q: r.get(8)?,
            instance_id: r.get(9)?,
        })
    }
}

/// A SIP dialog of one leg (`sip_dialogs`), keyed by Call-ID and both tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DialogRow {
    /// The Call-ID.
    pub call_id: String,
    /// The switch's tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
    /// The channel (leg) the dialog belongs to.
    pub channel_uuid: String,
    /// Whether the switch received or sent the INVITE.
    pub direction: Direction,
    /// The dialog state as sofia's NUA names it: `early`, `ready`, `terminating`, ...
    pub state: String,
    /// The remote target URI (the peer's Contact).
    pub remote_target: String,
    /// The route set as a Route header value (comma-separated), empty when none.
    pub route_set: String,
    /// The switch's last CSeq number in this dialog.
    pub local_cseq: u32,
    /// The peer's last CSeq number in this dialog.
    pub remote_cseq: u32,
    /// The local URI (RFC 3261 §12): the From value of the switch's requests in the
    /// dialog, display name and tag included. Empty in rows stored before schema 2.
    pub local_uri: String,
    /// The remote URI: the To value of the switch's requests, with the peer's tag.
    pub remote_uri: String,
    /// The transport the switch's requests go over: `udp` or `tcp`.
    pub peer_transport: String,
    /// Where they go, `ip:port` (the peer's source address, so NAT works).
    pub peer_remote: String,
    /// The switch's own listener they leave from, `ip:port`.
    pub peer_local: String,
}

pub(crate) const DIALOG_COLUMNS: &str = "call_id, local_tag, remote_tag, channel_uuid, direction, \
     state, remote_target, route_set, local_cseq, remote_cseq, local_uri, remote_uri, \
     peer_transport, peer_remote, peer_local";

impl DialogRow {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DialogRow> {
        Ok(DialogRow {
            call_id: r.get(0)?,
            local_tag: r.get(1)?,
            remote_tag: r.get(2)?,
            channel_uuid: r.get(3)?,
            direction: r.get(4)?,
            state: r.get(5)?,
            remote_target: r.get(6)?,
            route_set: r.get(7)?,
            local_cseq: r.get(8)?,
            remote_cseq: r.get(9)?,
            local_uri: r.get(10)?,
            remote_uri: r.get(11)?,
            peer_transport: r.get(12)?,
            peer_remote: r.get(13)?,
            peer_local: r.get(14)?,
        })
    }
}

/// A live channel, one per call leg (`channels`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRow {
    /// The channel's uuid.
    pub uuid: String,
    /// Inbound (A-leg) or outbound (B-leg).
    pub direction: Direction,
    /// The channel state as FreeSWITCH names it, e.g. `CS_EXECUTE`.
    pub state: String,
    /// The caller's display name.
    pub caller_id_name: String,
    /// The caller's number.
    pub caller_id_number: String,
    /// The dialled number.
    pub destination_number: String,
    /// The dialplan context the call is routed in.
    pub context: String,
    /// When the channel was created, in unix seconds.
    pub created_at: i64,
    /// When the channel was answered, in unix seconds, if it was.
    pub answered_at: Option<i64>,
    /// The call it is part of once bridged.
    pub call_uuid: Option<String>,
}

pub(crate) const CHANNEL_COLUMNS: &str = "uuid, direction, state, caller_id_name, caller_id_number, \
     destination_number, context, created_at, answered_at, call_uuid";

impl ChannelRow {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelRow> {
        Ok(ChannelRow {
            uuid: r.get(0)?,
            direction: r.get(1)?,
            state: r.get(2)?,
            caller_id_name: r.get(3)?,
            caller_id_number: r.get(4)?,
            destination_number: r.get(5)?,
            context: r.get(6)?,
            created_at: r.get(7)?,
            answered_at: r.get(8)?,
            call_uuid: r.get(9)?,
        })
    }
}

/// A bridged call: the two legs joined (`calls`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRow {
    /// The call's uuid.
    pub uuid: String,
    /// The A-leg channel (the caller).
    pub a_leg_uuid: String,
    /// The B-leg channel (the callee).
    pub b_leg_uuid: String,
    /// When the legs were bridged, in unix seconds.
    pub created_at: i64,
    /// The call's media sessions on the media plane, space-separated ids ("" for none):
    /// a switch restarted after a crash takes them back with the call.
    pub media_sessions: String,
}

pub(crate) const CALL_COLUMNS: &str = "uuid, a_leg_uuid, b_leg_uuid, created_at, media_sessions";

impl CallRow {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
        Ok(CallRow {
            uuid: r.get(0)?,
            a_leg_uuid: r.get(1)?,
            b_leg_uuid: r.get(2)?,
            created_at: r.get(3)?,
            media_sessions: r.get(4)?,
        })
    }
}

/// A call detail record, written once per leg when it hangs up (`cdr`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdrRow {
    /// The leg's channel uuid.
    pub uuid: String,
    /// The call the leg was part of, if it was bridged.
    pub call_uuid: Option<String>,
    /// Inbound (A-leg) or outbound (B-leg).
    pub direction: Direction,
    /// The caller's display name.
    pub caller_id_name: String,
    /// The caller's number.
    pub caller_id_number: String,
    /// The dialled number.
    pub destination_number: String,
    /// The dialplan context.
    pub context: String,
    /// When the leg started, in unix seconds.
    pub start_at: i64,
    /// When it was answered, in unix seconds, if it was.
    pub answer_at: Option<i64>,
    /// When it hung up, in unix seconds.
    pub end_at: i64,
    /// Seconds from start to end.
    pub duration: i64,
    /// Seconds from answer to end (0 when never answered).
    pub billsec: i64,
    /// The hangup cause as FreeSWITCH names it, e.g. `NORMAL_CLEARING`.
    pub hangup_cause: String,
    /// The Q.850 cause code, e.g. 16 for NORMAL_CLEARING.
    pub q850_cause: u16,
    /// The final SIP status of the leg, when it had one.
    pub sip_status: Option<u16>,
    /// The leg's media counters (None: its media did not cross the media plane).
    #[serde(flatten)]
    pub media: Option<CdrMedia>,
}

/// A leg's media counters in its CDR, summed over the call's streams: what the media
/// plane received from the leg's peer (in) and sent to it (out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CdrMedia {
    pub media_in_packets: i64,
    pub media_in_bytes: i64,
    pub media_out_packets: i64,
    pub media_out_bytes: i64,
    /// Packets from the peer lost on the way (sequence gaps).
    pub media_lost: i64,
    /// Datagrams from the peer the media plane did not relay, for every reason below.
    pub media_dropped: i64,
    /// Dropped: the other leg's peer was not known yet.
    pub media_dropped_no_peer: i64,
    /// Dropped: from a source other than the signalled or latched one.
    pub media_dropped_strict_source: i64,
    /// Dropped: not RTP/RTCP.
    pub media_dropped_malformed: i64,
    /// Dropped: from the media plane's own ports (a loop).
    pub media_dropped_loop: i64,
}

pub(crate) const CDR_COLUMNS: &str = "uuid, call_uuid, direction, caller_id_name, caller_id_number, \
     destination_number, context, start_at, answer_at, end_at, duration, billsec, hangup_cause, \
     q850_cause, sip_status, media_in_packets, media_in_bytes, media_out_packets, media_out_bytes, \
     media_lost, media_dropped, media_dropped_no_peer, media_dropped_strict_source, \
     media_dropped_malformed, media_dropped_loop";

impl CdrRow {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CdrRow> {
        Ok(CdrRow {
            uuid: r.get(0)?,
            call_uuid: r.get(1)?,
            direction: r.get(2)?,
            caller_id_name: r.get(3)?,
            caller_id_number: r.get(4)?,
            destination_number: r.get(5)?,
            context: r.get(6)?,
            start_at: r.get(7)?,
            answer_at: r.get(8)?,
            end_at: r.get(9)?,
            duration: r.get(10)?,
            billsec: r.get(11)?,
            hangup_cause: r.get(12)?,
            q850_cause: r.get(13)?,
            sip_status: r.get(14)?,
            media: match r.get::<_, Option<i64>>(15)? {
                None => None,
                Some(media_in_packets) => Some(CdrMedia {
                    media_in_packets,
                    media_in_bytes: r.get::<_, Option<i64>>(16)?.unwrap_or(0),
                    media_out_packets: r.get::<_, Option<i64>>(17)?.unwrap_or(0),
                    media_out_bytes: r.get::<_, Option<i64>>(18)?.unwrap_or(0),
                    media_lost: r.get::<_, Option<i64>>(19)?.unwrap_or(0),
                    media_dropped: r.get::<_, Option<i64>>(20)?.unwrap_or(0),
                    media_dropped_no_peer: r.get::<_, Option<i64>>(21)?.unwrap_or(0),
                    media_dropped_strict_source: r.get::<_, Option<i64>>(22)?.unwrap_or(0),
                    media_dropped_malformed: r.get::<_, Option<i64>>(23)?.unwrap_or(0),
                    media_dropped_loop: r.get::<_, Option<i64>>(24)?.unwrap_or(0),
                }),
            },
        })
    }
}
