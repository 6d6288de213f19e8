//! The router's indexes and queues: how an input finds its call (by transaction, dialog,
//! media token or session, resolver token, timer), and what the calls ask of the driver
//! (media requests, names to resolve). Calls add to them as they go; [`Routes::forget`]
//! takes a finished call out of every one.

use std::collections::VecDeque;

use crate::FastMap as HashMap;

use super::call::{Call, Side};
use super::dialog::Dialog;
use super::events::ChannelEvent;
use super::media::{MediaRequest, MediaSettings};
use super::timer::Timers;
use super::{CallId, Io, ResolveRequest};
use crate::management::histogram::{Histogram, ANSWER_SECONDS};
use crate::sip::message::Message;
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;
use crate::storage::{Direction as RowDirection, Write};

/// An in-dialog request relayed to the other leg, waiting for its answer.
#[derive(Clone)]
pub(super) struct Relay {
    pub call: CallId,
    /// The leg the request came from, its server transaction and the request.
    pub from: Side,
    pub server_tx: TxId,
    pub request: Message,
    pub peer: Peer,
}

/// (Call-ID, our tag) → the call, the leg, and the remote tag (for the storage row).
pub(super) type Dialogs = HashMap<(String, String), (CallId, Side, String)>;

#[derive(Default)]
pub(super) struct Routes {
    pub a_invites: HashMap<TxId, CallId>,
    pub b_invites: HashMap<TxId, (CallId, usize)>,
    /// INVITEs of legs the switch dialled itself (`originate`).
    pub dialed: HashMap<TxId, CallId>,
    /// Originates that answered or failed, for the API waiting on them.
    pub originated: VecDeque<super::Originated>,
    pub dialogs: Dialogs,
    /// Relayed in-dialog requests, by the client transaction that carries them on.
    pub relays: HashMap<TxId, Relay>,
    pub timers: Timers,
    pub media: MediaSettings,
    /// Requests for the media plane, in order.
    pub media_out: VecDeque<MediaRequest>,
    /// Creations waiting for the media plane, by token.
    pub media_tokens: HashMap<u64, CallId>,
    /// Media session → its call (RTP timeouts).
    pub media_calls: HashMap<u64, CallId>,
    /// Host names to resolve for `sofia/` endpoints, in order.
    pub resolve_out: VecDeque<ResolveRequest>,
    /// Resolutions under way, by token: the call, its group, the user and the URI.
    pub resolving: HashMap<u64, (CallId, u32, String, String)>,
    /// Calls taken back after a restart, with the media sessions their rows name, until
    /// the media plane says what it holds ([`super::B2bua::adopt_media`]).
    pub unadopted: HashMap<CallId, Vec<u64>>,
    /// The ACK the switch owes a leg whose 2xx to an offerless re-INVITE made an offer:
    /// that leg and the 2xx's CSeq, by call. The answer comes in the other leg's ACK.
    pub pending_acks: HashMap<CallId, (Side, u32)>,
    /// Channel events, in order, while someone listens ([`Routes::events_on`]).
    pub events: VecDeque<ChannelEvent>,
    pub events_on: bool,
    /// Outbound connections to make (`socket`): the application server and the channel.
    pub socket_out: VecDeque<(String, String)>,
    /// Channels made since start (`status`'s sessions since startup).
    pub channels_created: u64,
    /// Calls started since start (inbound INVITEs and originates), and how long the
    /// answered ones took from their first leg appearing to the answer.
    pub calls_started: u64,
    pub answer_seconds: Histogram<{ ANSWER_SECONDS.len() }>,
    next_token: u64,
}

impl Routes {
    /// A token for a media creation or a resolution.
    pub fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// Indexes an established dialog and writes its `sip_dialogs` row.
    pub fn track_dialog(
        &mut self,
        io: &mut Io<'_>,
        d: &Dialog,
        id: CallId,
        side: Side,
        uuid: &str,
        direction: RowDirection,
    ) {
        self.dialogs.insert(d.key(), (id, side, d.remote_tag.clone()));
        io.writes.push_back(Write::UpsertDialog(d.row(uuid, direction)));
    }

    /// Forgets a dialog and deletes its row.
    pub fn untrack_dialog(&mut self, io: &mut Io<'_>, key: &(String, String)) {
        if let Some((_, _, remote_tag)) = self.dialogs.remove(key) {
            io.writes.push_back(Write::DeleteDialog { call_id: key.0.clone(), local_tag: key.1.clone(), remote_tag });
        }
    }

    /// A finished call leaves every index: its timer, its media sessions (destroyed, with
    /// the legs' uuids for their CDRs), its transactions, relays and dialogs (their rows
    /// deleted). Forks still cancelling keep their transactions; nothing more is expected
    /// of them.
    pub fn forget(&mut self, io: &mut Io<'_>, id: CallId, call: &Call) {
        if let Some((at, _)) = call.timer {
            self.timers.remove(at, id);
        }
        let b_leg = call.answered.map(|i| call.forks[i].channel.uuid.clone());
        for (session, _) in call.media.iter().flat_map(|m| m.sessions.iter().flatten()) {
            self.media_calls.remove(session);
            self.media_out.push_back(MediaRequest::Destroy {
                id: *session,
                cdr: [Some(call.a.channel.uuid.clone()), b_leg.clone()],
            });
        }
        if let Some(setup) = &call.a.setup {
            self.a_invites.remove(&setup.tx);
        }
        if let Some(setup) = &call.a.dialed {
            self.dialed.remove(&setup.tx);
        }
        self.relays.retain(|_, r| r.call != id);
        self.pending_acks.remove(&id);
        if let Some(d) = &call.a.dialog {
            self.untrack_dialog(io, &d.key());
        }
        for f in &call.forks {
            if let Some(setup) = &f.setup {
                self.b_invites.remove(&setup.tx);
            }
            if let Some(d) = &f.dialog {
                self.untrack_dialog(io, &d.key());
            }
        }
    }
}
