//! The storage rows a call writes: its `calls` row once bridged, each channel's row when
//! it starts, and each leg's CDR at CS_REPORTING.

use super::call::Call;
use super::channel::{Channel, Direction, HangupCause};
use super::media::CallMedia;
use crate::dialplan::Variables;
use crate::storage::{CallRow, CdrRow, ChannelRow, Direction as RowDirection};

/// The `calls` row of a bridged call: its legs, when they were bridged, its media sessions.
pub(super) fn call_row(call: &Call) -> Option<CallRow> {
    let b = call.forks.get(call.answered?)?;
    let media_sessions: Vec<String> = call.media.iter().flat_map(CallMedia::ids).map(|s| s.to_string()).collect();
    Some(CallRow {
        uuid: call.uuid.clone(),
        a_leg_uuid: call.a.channel.uuid.clone(),
        b_leg_uuid: b.channel.uuid.clone(),
        created_at: b.answered_unix.unwrap_or(call.created_unix) as i64,
        media_sessions: media_sessions.join(" "),
    })
}

/// The CDR of one leg at CS_REPORTING; `times` are start, answer and end (unix seconds).
pub(super) fn cdr_row(
    c: &Channel,
    call_uuid: &str,
    vars: &Variables,
    destination: &str,
    times: (u64, Option<u64>, u64),
    cause: HangupCause,
    sip_status: Option<u16>,
) -> CdrRow {
    let (start, answer, end) = times;
    CdrRow {
        uuid: c.uuid.clone(),
        call_uuid: Some(call_uuid.to_string()),
        direction: if c.direction == Direction::Inbound { RowDirection::Inbound } else { RowDirection::Outbound },
        caller_id_name: vars.get("caller_id_name").unwrap_or_default().to_string(),
        caller_id_number: vars.get("caller_id_number").unwrap_or_default().to_string(),
        destination_number: destination.to_string(),
        context: vars.get("context").unwrap_or_default().to_string(),
        start_at: start as i64,
        answer_at: answer.map(|t| t as i64),
        end_at: end as i64,
        duration: end.saturating_sub(start) as i64,
        billsec: answer.map_or(0, |t| end.saturating_sub(t) as i64),
        hangup_cause: cause.to_string(),
        q850_cause: cause.q850(),
        sip_status,
        media: None,
    }
}

pub(super) fn channel_row(c: &Channel, vars: &Variables, unix: u64, call_uuid: Option<String>) -> ChannelRow {
    ChannelRow {
        uuid: c.uuid.clone(),
        direction: if c.direction == Direction::Inbound { RowDirection::Inbound } else { RowDirection::Outbound },
        state: c.state().to_string(),
        caller_id_name: vars.get("caller_id_name").unwrap_or_default().to_string(),
        caller_id_number: vars.get("caller_id_number").unwrap_or_default().to_string(),
        destination_number: vars.get("destination_number").unwrap_or_default().to_string(),
        context: vars.get("context").unwrap_or("default").to_string(),
        created_at: unix as i64,
        answered_at: None,
        call_uuid,
    }
}
