//! Recovery, as FreeSWITCH calls it: a switch restarted on the same database and SIP
//! address takes back the calls that were bridged when the previous process died, from
//! the rows the B2BUA wrote while they were up. A later BYE from either party then ends
//! the call as usual: 200 to it, BYE to the other party on the stored dialog, both CDRs,
//! the rows deleted.
//!
//! A call is taken back when its `calls` row, both channels (the A-leg in CS_EXECUTE, the
//! B-leg in CS_EXCHANGE_MEDIA) and both legs' dialogs, with what in-dialog requests need
//! (schema 2: From/To values and the peer), are stored, and the dialogs leave from one of
//! the switch's listeners now. Everything else died with the process — a leg still
//! ringing, one running an application, a call stored half-way: each of those channels
//! gets a CDR with the cause CRASH and its rows are deleted, so no ghost stays in
//! `/channels`. A stored dialog of such a leg gets a BYE, so its far end does not keep a
//! call nobody serves.
//!
//! Nothing of the old transactions survives: a recovered leg has no `Setup` (the INVITE
//! and its transaction), so no code path can answer, reject or CANCEL on a dead
//! transaction; a recovered leg only ever takes part in new ones (BYE, relayed requests).

use std::collections::{HashMap, HashSet};

use tracing::{info, warn};

use super::call::{ALeg, BLeg, Call, Fork, Phase, Side};
use super::channel::{Channel, ChannelState, Direction, HangupCause};
use super::dialog::{Dialog, DialogRowError};
use super::messages::send_bye;
use super::{B2bua, CallId, Io};
use crate::dialplan::Variables;
use crate::sip::transport::Peer;
use crate::storage::{CallRow, CdrRow, ChannelRow, DialogRow, Direction as RowDirection, Write};

/// What [`B2bua::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The calls taken back, by uuid.
    pub recovered: Vec<String>,
    /// The channels that could not be taken back and were ended with CRASH, by uuid.
    pub cleared: Vec<String>,
}

/// Why a stored call cannot be taken back (logged; its channels are cleared).
#[derive(Debug, thiserror::Error)]
enum Unrecoverable {
    /// A leg's channel row is missing.
    #[error("channel {0} is not stored")]
    NoChannel(String),
    /// A leg's channel is not where a bridged leg is.
    #[error("channel {uuid} is {direction} in {state}, not a bridged {leg}")]
    NotBridged { uuid: String, direction: &'static str, state: String, leg: &'static str },
    /// A leg's channel belongs to a call already taken back.
    #[error("channel {0} is already part of a recovered call")]
    InUse(String),
    /// A leg has no stored dialog.
    #[error("no dialog of channel {0} is stored")]
    NoDialog(String),
    /// A leg's dialog row lacks something in-dialog requests need.
    #[error("the dialog of channel {uuid}: {source}")]
    Dialog { uuid: String, source: DialogRowError },
    /// A leg's dialog leaves from an address the switch does not listen on now.
    #[error("the dialog of channel {uuid} goes out from {local}, not one of the switch's listeners now")]
    Listener { uuid: String, local: std::net::SocketAddr },
}

/// One leg found in the rows: its channel row and state, and its dialog.
struct StoredLeg<'r> {
    channel: &'r ChannelRow,
    state: ChannelState,
    dialog: Dialog,
}

impl B2bua {
    /// Takes back the bridged calls among the stored rows (the [module docs](self) say
    /// which), and ends every other stored channel with CRASH: a CDR, and its channel,
    /// dialog and call rows deleted through `io.writes`. Call it once, at start, before any
    /// message is handled.
    pub fn recover(
        &mut self,
        io: &mut Io<'_>,
        calls: &[CallRow],
        channels: &[ChannelRow],
        dialogs: &[DialogRow],
    ) -> RecoveryReport {
        let by_uuid: HashMap<&str, &ChannelRow> = channels.iter().map(|c| (c.uuid.as_str(), c)).collect();
        let locals = io.locals;
        let mut taken: HashSet<&str> = HashSet::new();
        let mut report = RecoveryReport::default();
        for row in calls {
            let leg = |uuid: &str, direction| stored_leg(uuid, direction, &by_uuid, dialogs, locals, &taken);
            let legs = leg(&row.a_leg_uuid, Direction::Inbound)
                .and_then(|a| Ok((a, leg(&row.b_leg_uuid, Direction::Outbound)?)));
            match legs {
                Ok((a, b)) => {
                    taken.extend([a.channel.uuid.as_str(), b.channel.uuid.as_str()]);
                    self.take_back(row, a, b);
                    report.recovered.push(row.uuid.clone());
                }
                Err(why) => {
                    warn!(call = %row.uuid, %why, "call not recoverable");
                    io.writes.push_back(Write::DeleteCall { uuid: row.uuid.clone() });
                }
            }
        }
        for c in channels.iter().filter(|c| !taken.contains(c.uuid.as_str())) {
            let call_uuid = calls
                .iter()
                .find(|r| r.a_leg_uuid == c.uuid || r.b_leg_uuid == c.uuid)
                .map(|r| r.uuid.clone())
                .or_else(|| c.call_uuid.clone())
                // The switch names a call after its A-leg.
                .or_else(|| (c.direction == RowDirection::Inbound).then(|| c.uuid.clone()));
            info!(uuid = %c.uuid, state = %c.state, cause = %HangupCause::CRASH, "channel not recoverable: cleared");
            io.writes.push_back(Write::InsertCdr(crash_cdr(c, call_uuid, io.unix as i64)));
            io.writes.push_back(Write::DeleteChannel { uuid: c.uuid.clone() });
            report.cleared.push(c.uuid.clone());
        }
        for d in dialogs.iter().filter(|d| !taken.contains(d.channel_uuid.as_str())) {
            io.writes.push_back(Write::DeleteDialog {
                call_id: d.call_id.clone(),
                local_tag: d.local_tag.clone(),
                remote_tag: d.remote_tag.clone(),
            });
            if let Ok(mut dialog) = Dialog::from_row(d) {
                if listens(locals, &dialog) {
                    info!(uuid = %d.channel_uuid, call_id = %d.call_id, "ending the dialog of a cleared channel");
                    send_bye(io, &mut dialog);
                }
            }
        }
        info!(
            recovered = report.recovered.len(),
            cleared = report.cleared.len(),
            "recovered {} calls, cleared {} channels",
            report.recovered.len(),
            report.cleared.len()
        );
        report
    }

    /// Rebuilds one bridged call from its legs: phase Bridged, the caller answered, its
    /// one B-leg answered, both dialogs indexed for in-dialog requests.
    fn take_back(&mut self, row: &CallRow, a: StoredLeg<'_>, b: StoredLeg<'_>) {
        let id = CallId(self.next);
        self.next += 1;
        let unix = |t: i64| u64::try_from(t).unwrap_or(0);
        // A channel row without an answer time (stored before they were kept) takes the
        // calls row's time: the bridge, since answer times are kept.
        let answered = |c: &ChannelRow| unix(c.answered_at.unwrap_or(row.created_at));
        let mut vars = Variables::new();
        vars.set("uuid", row.uuid.clone());
        vars.set("destination_number", a.channel.destination_number.clone());
        vars.set("caller_id_name", a.channel.caller_id_name.clone());
        vars.set("caller_id_number", a.channel.caller_id_number.clone());
        vars.set("context", a.channel.context.clone());
        vars.set("sip_call_id", a.dialog.call_id.clone());
        vars.set("network_addr", a.dialog.peer.remote.ip().to_string());
        let (a_created, a_answered) = (a.channel.created_at, answered(a.channel));
        let mut b_vars = Variables::new();
        b_vars.set("destination_number", b.channel.destination_number.clone());
        b_vars.set("caller_id_name", b.channel.caller_id_name.clone());
        b_vars.set("caller_id_number", b.channel.caller_id_number.clone());
        b_vars.set("context", b.channel.context.clone());
        let a_channel =
            Channel::recovered(a.channel.uuid.clone(), Direction::Inbound, a.state).expect("checked by stored_leg");
        let b_channel =
            Channel::recovered(b.channel.uuid.clone(), Direction::Outbound, b.state).expect("checked by stored_leg");
        for (d, side) in [(&a.dialog, Side::A), (&b.dialog, Side::B(0))] {
            self.routes.dialogs.insert(d.key(), (id, side, d.remote_tag.clone()));
        }
        info!(call = %row.uuid, a_leg = %a.channel.uuid, b_leg = %b.channel.uuid, "recovered call");
        let a = ALeg {
            channel: a_channel,
            setup: None,
            dialed: None,
            peer: a.dialog.peer,
            to_tag: a.dialog.local_tag.clone(),
            dialog: Some(a.dialog),
            answered: true,
            final_sent: true,
            ringing_sent: true,
        };
        let mut call = Call::new(row.uuid.clone(), a, vars, unix(a_created));
        call.forks.push(BLeg {
            channel: b_channel,
            setup: None,
            peer: b.dialog.peer,
            dialog: Some(b.dialog),
            state: Fork::Answered,
            cancel_cause: None,
            status: None,
            started_unix: unix(b.channel.created_at),
            answered_unix: Some(answered(b.channel)),
            destination: b.channel.destination_number.clone(),
            vars: b_vars,
        });
        call.answered = Some(0);
        call.phase = Phase::Bridged;
        call.answered_unix = Some(a_answered);
        // The rows already say all this: nothing to write until the call ends.
        self.calls.insert(id, call);
        let sessions: Vec<u64> = row.media_sessions.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        if !sessions.is_empty() {
            self.routes.unadopted.insert(id, sessions);
        }
    }
}

/// The stored leg `uuid`, if it is a bridged leg of `direction` that can be taken back.
fn stored_leg<'r>(
    uuid: &str,
    direction: Direction,
    by_uuid: &HashMap<&str, &'r ChannelRow>,
    dialogs: &[DialogRow],
    locals: &[Peer],
    taken: &HashSet<&str>,
) -> Result<StoredLeg<'r>, Unrecoverable> {
    let channel = *by_uuid.get(uuid).ok_or_else(|| Unrecoverable::NoChannel(uuid.to_string()))?;
    let (row_direction, leg, expected) = match direction {
        Direction::Inbound => (RowDirection::Inbound, "A-leg", ChannelState::CS_EXECUTE),
        Direction::Outbound => (RowDirection::Outbound, "B-leg", ChannelState::CS_EXCHANGE_MEDIA),
    };
    if channel.direction != row_direction || channel.state != expected.to_string() {
        return Err(Unrecoverable::NotBridged {
            uuid: uuid.to_string(),
            direction: channel.direction.as_str(),
            state: channel.state.clone(),
            leg,
        });
    }
    if taken.contains(uuid) {
        return Err(Unrecoverable::InUse(uuid.to_string()));
    }
    let dialog = dialogs
        .iter()
        .find(|d| d.channel_uuid == uuid && d.direction == row_direction)
        .ok_or_else(|| Unrecoverable::NoDialog(uuid.to_string()))?;
    let dialog = Dialog::from_row(dialog).map_err(|source| Unrecoverable::Dialog { uuid: uuid.to_string(), source })?;
    if !listens(locals, &dialog) {
        return Err(Unrecoverable::Listener { uuid: uuid.to_string(), local: dialog.peer.local });
    }
    Ok(StoredLeg { channel, state: expected, dialog })
}

/// Whether the switch listens, now, where the dialog's requests leave from.
fn listens(locals: &[Peer], d: &Dialog) -> bool {
    locals.iter().any(|l| l.transport == d.peer.transport && l.local == d.peer.local)
}

/// The CDR of a channel that died with the previous process. It ends when the switch
/// took stock (the crash itself left no time behind).
fn crash_cdr(c: &ChannelRow, call_uuid: Option<String>, now: i64) -> CdrRow {
    let cause = HangupCause::CRASH;
    let end = now.max(c.created_at);
    CdrRow {
        uuid: c.uuid.clone(),
        call_uuid,
        direction: c.direction,
        caller_id_name: c.caller_id_name.clone(),
        caller_id_number: c.caller_id_number.clone(),
        destination_number: c.destination_number.clone(),
        context: c.context.clone(),
        start_at: c.created_at,
        answer_at: c.answered_at,
        end_at: end,
        duration: end - c.created_at,
        billsec: c.answered_at.map_or(0, |t| end - t.min(end)),
        hangup_cause: cause.to_string(),
        q850_cause: cause.q850(),
        sip_status: None,
        media: None,
    }
}
