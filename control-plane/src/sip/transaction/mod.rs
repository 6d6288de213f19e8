//! The RFC 3261 §17 transaction layer (with RFC 6026), sans-IO.
//!
//! No sockets, no clock, no tasks: every entry point takes `now`, and everything the
//! layer wants done comes out of [`TransactionLayer::poll_output`] as an [`Output`]
//! (bytes to transmit to a [`Peer`], or an [`Event`] for the transaction user) and out of
//! [`TransactionLayer::poll_timeout`] as the next instant it needs to be woken.
//!
//! Data flow: the transport parses a datagram or stream frame into a [`Message`] and
//! calls [`TransactionLayer::handle_message`]. Requests are matched to server
//! transactions (`key.rs`: branch, sent-by and method, or the RFC 2543 rules without a
//! magic-cookie branch); a retransmission is answered from the transaction, a new request
//! creates one and goes up as [`Event::Request`]. Responses are matched to client
//! transactions and go up as [`Event::Response`], unless the state machine absorbs them.
//! The TU answers with [`TransactionLayer::respond`] and starts client transactions with
//! [`TransactionLayer::request`].
//!
//! A driver polls in this order, after any input and whenever the deadline passes:
//!
//! 1. feed input: `handle_message` for each received message, `handle_timeout(now)` when
//!    `now` has reached [`TransactionLayer::poll_timeout`];
//! 2. drain [`TransactionLayer::poll_output`] until `None`, transmitting bytes and handing
//!    events to the TU (which may call `respond`, `request` or `send_stateless`, whose
//!    outputs join the same queue);
//! 3. sleep until `poll_timeout()` or the next input, whichever is first.

mod client;
mod key;
mod server;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::FastMap as HashMap;
use std::time::Instant;

use bytes::Bytes;

use self::client::ClientTx;
use self::key::{AckKey, ClientKey, MergeKey, ServerKey};
use self::server::{AckOutcome, ServerTx};
use self::timers::{Deadlines, Entry, TimerHeap};
use crate::sip::message::write::{default_reason, response_to};
use crate::sip::message::{scan_dialog_ids, Framing, Message, Method, ParseError};
use crate::sip::transport::Peer;

pub use self::timers::{TimerConfig, TIMER_D_UNRELIABLE};

/// Identifies one transaction for as long as it lives; never reused by a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Where a transaction is in its state machine (RFC 3261 Figures 5-8, RFC 6026 Figures 5
/// and 7). A transaction that reached Terminated is gone from the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// INVITE client: request sent, no response yet.
    Calling,
    /// Non-INVITE client: request sent, no response yet. Non-INVITE server: request
    /// received, no response sent yet.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response (non-2xx for INVITE) was received or sent.
    Completed,
    /// INVITE server: the ACK for the non-2xx final response arrived.
    Confirmed,
    /// INVITE: a 2xx was received (client) or sent (server), RFC 6026.
    Accepted,
}

/// Something the layer wants done.
#[derive(Clone, Debug)]
pub enum Output {
    /// Send `bytes` to `peer`.
    Transmit {
        /// The destination, and the local socket or connection to send from.
        peer: Peer,
        /// One complete serialized message.
        bytes: Bytes,
    },
    /// Hand an event to the transaction user.
    Event(Event),
}

/// What the transaction user is told.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new request for the TU. `tx` is None for an ACK (ACK for a 2xx, or an ACK
    /// matching no transaction). For a CANCEL, `cancels` is the INVITE server transaction
    /// it matches (§9.2), if any.
    Request {
        /// The server transaction created for the request; `None` for an ACK.
        tx: Option<TxId>,
        /// The request.
        msg: Message,
        /// Where it came from; responses go back there.
        peer: Peer,
        /// For a CANCEL: the INVITE server transaction it cancels.
        cancels: Option<TxId>,
    },
    /// A response on client transaction `tx` (provisional, final, and in the Accepted
    /// state the retransmitted 2xx, RFC 6026).
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        msg: Message,
    },
    /// Timer B or F (client: no final response), Timer H (INVITE server: no ACK for a
    /// non-2xx), or Timer L expiry without an ACK for a 2xx.
    Timeout {
        /// The transaction that timed out; [`Event::Terminated`] follows.
        tx: TxId,
    },
    /// The transaction is gone (Terminated state reached).
    Terminated {
        /// The transaction.
        tx: TxId,
    },
}

/// Why the TU's command was refused. Nothing was sent and no state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// No live server transaction has this id: it terminated (Timer H, J or L, or an
    /// ACK), or the id is a client transaction's.
    #[error("no live server transaction {0:?}: it has terminated, or is a client transaction")]
    NoSuchTransaction(TxId),
    /// The status code is outside 100-699 (RFC 3261 §7.2, §21).
    #[error("status code {0} is outside 100-699")]
    InvalidStatus(u16),
    /// The transaction already sent its final response; after a 2xx to an INVITE only
    /// further 2xx may follow (RFC 6026 §8.7).
    #[error("transaction {tx:?} already sent its final response (state {state:?})")]
    FinalAlreadySent {
        /// The transaction.
        tx: TxId,
        /// Its state.
        state: State,
    },
    /// A final response to an INVITE does not parse, so the To tag its ACK will carry is
    /// unknown. Build responses with `write::response_to`.
    #[error("final response to an INVITE does not parse: {0}")]
    MalformedResponse(ParseError),
    /// [`TransactionLayer::request`] was given a response.
    #[error("a client transaction needs a request, not a response")]
    NotARequest,
    /// An ACK never starts a client transaction: send the ACK for a 2xx with
    /// [`TransactionLayer::send_stateless`] (§13.2.2.4); the layer ACKs non-2xx itself.
    #[error("ACK is not sent in a client transaction; use send_stateless for the ACK of a 2xx")]
    AckIsNotATransaction,
    /// The top Via has no RFC 3261 branch (`z9hG4bK` followed by more characters); the
    /// TU must generate one for every request it sends (§8.1.1.7).
    #[error("the top Via needs a branch starting with z9hG4bK (RFC 3261 §8.1.1.7)")]
    MissingBranch,
    /// A live client transaction already has this branch and method (§17.1.3).
    #[error("branch already used by live client transaction {0:?}")]
    DuplicateBranch(TxId),
}

/// What a state machine asks the layer to do, in order.
#[derive(Debug)]
enum Action {
    /// Send these bytes to the transaction's peer.
    Transmit(Bytes),
    /// Pass a response up (client transactions).
    Response(Message),
    /// Report a timeout to the TU.
    Timeout,
    /// Remove the transaction.
    Terminate,
}

#[derive(Debug)]
enum Role {
    Client(ClientTx),
    Server(ServerTx),
}

/// One live transaction and the index entries that point at it.
#[derive(Debug)]
struct Transaction {
    role: Role,
    peer: Peer,
    /// False for the layer's own 482 transactions: the TU hears nothing about them.
    visible: bool,
    client_key: Option<ClientKey>,
    server_key: Option<ServerKey>,
    merge_key: Option<MergeKey>,
    ack_key: Option<AckKey>,
}

impl Transaction {
    fn deadlines(&self) -> Deadlines {
        match &self.role {
            Role::Client(c) => c.timers,
            Role::Server(s) => s.timers,
        }
    }

    fn deadlines_mut(&mut self) -> &mut Deadlines {
        match &mut self.role {
            Role::Client(c) => &mut c.timers,
            Role::Server(s) => &mut s.timers,
        }
    }

    fn state(&self) -> State {
        match &self.role {
            Role::Client(c) => c.state,
            Role::Server(s) => s.state,
        }
    }
}

/// The transaction layer: every live client and server transaction, their timers, and
/// the indexes that match messages to them.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    next_id: u64,
    txs: HashMap<TxId, Transaction>,
    client_keys: HashMap<ClientKey, TxId>,
    server_keys: HashMap<ServerKey, TxId>,
    /// Server transactions created by requests without a To tag (§8.2.2.2).
    merge_keys: HashMap<MergeKey, TxId>,
    /// INVITE server transactions in Accepted, by the ACK their 2xx expects.
    ack_keys: HashMap<AckKey, TxId>,
    timers: TimerHeap,
    outputs: VecDeque<Output>,
    /// Reused buffer for the actions of one state machine step.
    scratch: Vec<Action>,
    /// Past this many live transactions a new out-of-dialog request is refused with a
    /// stateless 503 (in-dialog requests and CANCEL get up to twice as many, so calls
    /// can still end).
    max_transactions: usize,
    /// Requests refused so.
    overloaded: u64,
    /// INVITEs whose 100 waits for the TU to have seen them (and not answered).
    pending_trying: Vec<(TxId, Instant, Bytes)>,
}

/// Seconds a request refused for overload is told to wait (Retry-After).
pub const OVERLOAD_RETRY_AFTER_SECS: u32 = 5;

impl TransactionLayer {
    /// An empty layer with the given timer values.
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config,
            next_id: 0,
            txs: HashMap::default(),
            client_keys: HashMap::default(),
            server_keys: HashMap::default(),
            merge_keys: HashMap::default(),
            ack_keys: HashMap::default(),
            timers: TimerHeap::default(),
            outputs: VecDeque::new(),
            scratch: Vec::new(),
            max_transactions: usize::MAX,
            overloaded: 0,
            pending_trying: Vec::new(),
        }
    }

    /// Caps the live transactions (see [`TransactionLayer`]'s `max_transactions`).
    pub fn set_max_transactions(&mut self, max: usize) {
        self.max_transactions = max.max(1);
    }

    /// Requests refused with 503 because too many transactions were live.
    pub fn overloaded(&self) -> u64 {
        self.overloaded
    }

    /// The timer values this layer runs with.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// A parsed message arrived from `peer` (requests and responses).
    pub fn handle_message(&mut self, now: Instant, msg: Message, peer: Peer) {
        if msg.is_request() {
            self.on_request(now, msg, peer);
        } else {
            self.on_response(now, msg);
        }
        self.prune_timers();
    }

    /// The TU answers server transaction `tx` with a final non-2xx response and keeps
    /// no state for it, as stateless servers send digest challenges: the response goes
    /// out once and the transaction ends at once, so a flood of unauthenticated requests
    /// holds no memory and draws no Timer G retransmissions. A retransmitted request
    /// starts a new transaction and gets a new answer (RFC 3261 §8.2.6.1: a stateless
    /// UAS answers each copy); the ACK to the response then matches nothing and goes
    /// to the TU as a stray ACK.
    pub fn respond_and_forget(&mut self, tx: TxId, code: u16, bytes: Bytes) -> Result<(), TransactionError> {
        if !(300..=699).contains(&code) {
            return Err(TransactionError::InvalidStatus(code));
        }
        let peer = match self.txs.get(&tx) {
            Some(Transaction { role: Role::Server(_), peer, .. }) => *peer,
            _ => return Err(TransactionError::NoSuchTransaction(tx)),
        };
        self.outputs.push_back(Output::Transmit { peer, bytes });
        self.terminate(tx);
        Ok(())
    }

    /// The TU answers server transaction `tx`. `bytes` is the complete serialized
    /// response, `code` its status.
    pub fn respond(&mut self, now: Instant, tx: TxId, code: u16, bytes: Bytes) -> Result<(), TransactionError> {
        if !(100..=699).contains(&code) {
            return Err(TransactionError::InvalidStatus(code));
        }
        let invite = match self.txs.get(&tx).map(|t| &t.role) {
            Some(Role::Server(s)) => s.invite,
            _ => return Err(TransactionError::NoSuchTransaction(tx)),
        };
        // The To tag of a final response to an INVITE: the ACK must carry it. The TU's own
        // responses are scanned for it; anything unusual gets the full parse.
        let parsed = if invite && code >= 200 {
            Some(match scan_dialog_ids(&bytes) {
                Some(ids) => (ids.to_tag.map(<[u8]>::to_vec), AckKey::from_ids(&ids)),
                None => {
                    let m = Message::parse(bytes.clone(), Framing::Datagram)
                        .map_err(TransactionError::MalformedResponse)?;
                    (m.to_tag().map(<[u8]>::to_vec), AckKey::new(&m))
                }
            })
        } else {
            None
        };
        let result = self
            .step(tx, |role, cfg, out| match role {
                Role::Server(s) => s.respond(now, tx, code, bytes, cfg, out),
                Role::Client(_) => Err(TransactionError::NoSuchTransaction(tx)),
            })
            .unwrap_or(Err(TransactionError::NoSuchTransaction(tx)));
        if result.is_ok() {
            if let Some((to_tag, ack_key)) = parsed {
                self.note_final_response(tx, code, to_tag, ack_key);
            }
        }
        self.prune_timers();
        result
    }

    /// Starts a client transaction for `msg` (a request the TU serialized with its own
    /// top Via and branch), sent to `peer`.
    pub fn request(&mut self, now: Instant, msg: Message, peer: Peer) -> Result<TxId, TransactionError> {
        if !msg.is_request() {
            return Err(TransactionError::NotARequest);
        }
        if msg.method() == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let key = ClientKey::for_request(&msg).ok_or(TransactionError::MissingBranch)?;
        if let Some(&other) = self.client_keys.get(&key) {
            return Err(TransactionError::DuplicateBranch(other));
        }
        let id = self.allocate_id();
        let mut out = std::mem::take(&mut self.scratch);
        let client = ClientTx::start(now, msg, peer.transport.is_reliable(), &self.config, &mut out);
        self.client_keys.insert(key.clone(), id);
        self.txs.insert(
            id,
            Transaction {
                role: Role::Client(client),
                peer,
                visible: true,
                client_key: Some(key),
                server_key: None,
                merge_key: None,
                ack_key: None,
            },
        );
        self.apply(id, Deadlines::default(), out);
        self.prune_timers();
        Ok(id)
    }

    /// Sends bytes outside any transaction (ACK for a 2xx, stateless responses).
    pub fn send_stateless(&mut self, peer: Peer, bytes: Bytes) {
        self.outputs.push_back(Output::Transmit { peer, bytes });
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.peek() {
            if entry.at > now {
                break;
            }
            self.timers.pop();
            if !is_live(&self.txs, &entry) {
                continue;
            }
            let slot = entry.slot;
            self.step(entry.tx, |role, cfg, out| match role {
                Role::Client(c) => {
                    c.timers.clear(slot);
                    c.on_timer(now, slot, cfg, out);
                }
                Role::Server(s) => {
                    s.timers.clear(slot);
                    s.on_timer(now, slot, cfg, out);
                }
            });
        }
        self.prune_timers();
        self.shrink_after_flood();
    }

    /// After a burst (a flood) the tables keep the capacity it needed; once they are
    /// mostly empty again that memory is given back.
    fn shrink_after_flood(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 4096 && m.capacity() > 8 * m.len() {
                m.shrink_to(2 * m.len());
            }
        }
        shrink(&mut self.txs);
        shrink(&mut self.client_keys);
        shrink(&mut self.server_keys);
        shrink(&mut self.merge_keys);
        shrink(&mut self.ack_keys);
        if self.outputs.capacity() > 4096 && self.outputs.capacity() > 8 * self.outputs.len() {
            self.outputs.shrink_to(2 * self.outputs.len());
        }
    }

    /// The earliest instant a timer is due; `None` when no timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // prune_timers runs after every call that changes timers, so the top is live.
        self.timers.peek().map(|e| e.at)
    }

    /// The next thing to do, in the order it arose; `None` when there is nothing.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && !self.pending_trying.is_empty() {
            self.send_pending_trying();
        }
        self.outputs.pop_front()
    }

    /// Number of live transactions (for metrics and tests).
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of live transaction `tx`; `None` once it has terminated.
    pub fn state(&self, tx: TxId) -> Option<State> {
        self.txs.get(&tx).map(Transaction::state)
    }

    fn allocate_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    fn on_response(&mut self, now: Instant, msg: Message) {
        // §17.1.3: branch and CSeq method; anything else is a stray and is dropped.
        let Some(key) = ClientKey::for_response(&msg) else {
            return;
        };
        let Some(&id) = self.client_keys.get(&key) else {
            return;
        };
        self.step(id, |role, cfg, out| {
            if let Role::Client(c) = role {
                c.on_response(now, msg, cfg, out);
            }
        });
    }

    fn on_request(&mut self, now: Instant, msg: Message, peer: Peer) {
        if msg.method() == Method::Ack {
            self.on_ack(now, msg, peer);
            return;
        }
        let key = ServerKey::for_request(&msg);
        if let Some(&id) = self.server_keys.get(&key) {
            self.step(id, |role, _, out| {
                if let Role::Server(s) = role {
                    s.on_retransmission(out);
                }
            });
            return;
        }
        let merge_key = msg.to_tag().is_none().then(|| MergeKey::new(&msg));
        if let Some(mk) = &merge_key {
            if self.merge_keys.contains_key(mk) {
                self.reject_merged(now, msg, peer, key);
                return;
            }
        }
        let ends_something = msg.to_tag().is_some() || msg.method() == Method::Cancel;
        let cap = if ends_something { self.max_transactions.saturating_mul(2) } else { self.max_transactions };
        if self.txs.len() >= cap {
            self.refuse_overloaded(msg, peer);
            return;
        }
        let cancels = match msg.method() {
            Method::Cancel => self.cancelled_invite(&msg),
            _ => None,
        };
        let invite = msg.method() == Method::Invite;
        let id = self.allocate_id();
        let server = ServerTx::new(invite, peer.transport.is_reliable(), &self.config);
        self.server_keys.insert(key.clone(), id);
        if let Some(mk) = &merge_key {
            self.merge_keys.insert(mk.clone(), id);
        }
        self.txs.insert(
            id,
            Transaction {
                role: Role::Server(server),
                peer,
                visible: true,
                client_key: None,
                server_key: Some(key),
                merge_key,
                ack_key: None,
            },
        );
        if invite {
            // §17.2.1: a 100 unless the TU answers within 200 ms. It goes out once the TU
            // has seen the request ([`TransactionLayer::poll_output`]), and only if the TU
            // has not answered meanwhile: a challenge sent and forgotten goes without one,
            // so a client that loses it retransmits its INVITE instead of waiting in
            // Proceeding. No To tag on a 100; received and rport come from the source.
            let mut buf = Vec::with_capacity(msg.as_bytes().len().min(1024));
            response_to(&msg, 100, default_reason(100), None, Some(peer.remote), &mut buf).finish(b"");
            self.pending_trying.push((id, now, Bytes::from(buf)));
        }
        self.outputs.push_back(Output::Event(Event::Request { tx: Some(id), msg, peer, cancels }));
    }

    /// Sends the 100 of every INVITE the TU has seen and not answered yet.
    fn send_pending_trying(&mut self) {
        for (id, now, trying) in std::mem::take(&mut self.pending_trying) {
            // A transaction still in Proceeding without a response always accepts a 100.
            let _ = self.step(id, |role, cfg, out| match role {
                Role::Server(s) if !s.answered() => s.respond(now, id, 100, trying, cfg, out),
                _ => Ok(()),
            });
        }
    }

    /// §9.2: the INVITE server transaction a CANCEL matches, by the §17.2.3 rules with
    /// the method taken as INVITE.
    fn cancelled_invite(&self, cancel: &Message) -> Option<TxId> {
        let key = ServerKey::with(cancel, b"INVITE", cancel.to_tag());
        let id = *self.server_keys.get(&key)?;
        match &self.txs.get(&id)?.role {
            Role::Server(s) if s.invite => Some(id),
            _ => None,
        }
    }

    /// The TU learned that the 2xx of INVITE server transaction `tx` reached the client
    /// without seeing its ACK: a request arrived in the dialog that 2xx created (RFC 3261
    /// §13.3.1.4 retransmits the 2xx only until the client is known to have it). Stops the
    /// 2xx retransmissions as the ACK would have; anything else is left as it is.
    pub fn acknowledged(&mut self, now: Instant, tx: TxId) {
        self.step(tx, |role, cfg, out| {
            if let Role::Server(s) = role {
                if s.is_accepted() {
                    s.on_ack(now, cfg, out);
                }
            }
        });
    }

    fn on_ack(&mut self, now: Instant, msg: Message, peer: Peer) {
        if let Some(id) = self.invite_for_ack(&msg) {
            let outcome = self.step(id, |role, cfg, out| match role {
                Role::Server(s) => s.on_ack(now, cfg, out),
                Role::Client(_) => AckOutcome::Absorbed,
            });
            if outcome != Some(AckOutcome::PassUp) {
                return;
            }
        } else if let Some(&id) = self.ack_keys.get(&AckKey::new(&msg)) {
            // The ACK for a 2xx has a branch of its own (§17.1.1.3 does not apply to it).
            self.step(id, |role, cfg, out| {
                if let Role::Server(s) = role {
                    s.on_ack(now, cfg, out);
                }
            });
        }
        self.outputs.push_back(Output::Event(Event::Request { tx: None, msg, peer, cancels: None }));
    }

    /// The INVITE server transaction an ACK matches by §17.2.3: the branch rules, or for
    /// RFC 2543 the INVITE's fields with the To tag compared to the response's.
    fn invite_for_ack(&self, ack: &Message) -> Option<TxId> {
        let key = ServerKey::with(ack, b"INVITE", ack.to_tag());
        if !key.is_legacy() {
            return self.server_keys.get(&key).copied();
        }
        let tag_matches = |id: &TxId| match self.txs.get(id).map(|t| &t.role) {
            Some(Role::Server(s)) => s.response_to_tag.as_deref() == ack.to_tag(),
            _ => false,
        };
        // The INVITE had the ACK's To tag (a re-INVITE) or none (an initial INVITE).
        self.server_keys.get(&key).copied().filter(tag_matches).or_else(|| {
            let initial = ServerKey::with(ack, b"INVITE", None);
            self.server_keys.get(&initial).copied().filter(tag_matches)
        })
    }

    /// §8.2.2.2: a merged request is answered 482 from a transaction of its own (so its
    /// retransmissions are absorbed) that the TU never hears about.
    /// A stateless 503 with Retry-After: no transaction is kept for the request (a
    /// retransmission gets another 503), so a flood cannot grow the table.
    fn refuse_overloaded(&mut self, msg: Message, peer: Peer) {
        self.overloaded += 1;
        let mut buf = Vec::with_capacity(msg.as_bytes().len().min(1024));
        let mut w = response_to(&msg, 503, default_reason(503), None, Some(peer.remote), &mut buf);
        w.header_fmt("Retry-After", format_args!("{OVERLOAD_RETRY_AFTER_SECS}"));
        w.finish(b"");
        self.outputs.push_back(Output::Transmit { peer, bytes: Bytes::from(buf) });
    }

    fn reject_merged(&mut self, now: Instant, msg: Message, peer: Peer, key: ServerKey) {
        let id = self.allocate_id();
        let tag = merged_tag(&msg, id);
        let mut buf = Vec::with_capacity(msg.as_bytes().len().min(1024));
        response_to(&msg, 482, default_reason(482), Some(tag.as_bytes()), Some(peer.remote), &mut buf).finish(b"");
        let invite = msg.method() == Method::Invite;
        let mut server = ServerTx::new(invite, peer.transport.is_reliable(), &self.config);
        server.response_to_tag = Some(tag.into_bytes());
        self.server_keys.insert(key.clone(), id);
        self.txs.insert(
            id,
            Transaction {
                role: Role::Server(server),
                peer,
                visible: false,
                client_key: None,
                server_key: Some(key),
                merge_key: None,
                ack_key: None,
            },
        );
        let loop_detected = Bytes::from(buf);
        // A fresh transaction always accepts its first final response.
        let _ = self.step(id, |role, cfg, out| match role {
            Role::Server(s) => s.respond(now, id, 482, loop_detected, cfg, out),
            Role::Client(_) => Ok(()),
        });
    }

    /// Records what later ACKs are matched with, once a final response to an INVITE
    /// was accepted by its transaction.
    fn note_final_response(&mut self, id: TxId, code: u16, to_tag: Option<Vec<u8>>, ack_key: AckKey) {
        let Some(t) = self.txs.get_mut(&id) else {
            return;
        };
        if let Role::Server(s) = &mut t.role {
            s.response_to_tag = to_tag;
        }
        if (200..300).contains(&code) {
            if let Some(old) = t.ack_key.replace(ack_key.clone()) {
                self.ack_keys.remove(&old);
            }
            self.ack_keys.insert(ack_key, id);
        }
    }

    /// Runs one state machine step on transaction `id` and carries out its actions.
    /// `None` if the transaction does not exist.
    fn step<R>(&mut self, id: TxId, f: impl FnOnce(&mut Role, &TimerConfig, &mut Vec<Action>) -> R) -> Option<R> {
        let t = self.txs.get_mut(&id)?;
        let before = t.deadlines();
        let mut out = std::mem::take(&mut self.scratch);
        let r = f(&mut t.role, &self.config, &mut out);
        self.apply(id, before, out);
        Some(r)
    }

    /// Pushes heap entries for newly armed timers and turns actions into outputs.
    fn apply(&mut self, id: TxId, before: Deadlines, mut out: Vec<Action>) {
        let Some(t) = self.txs.get_mut(&id) else {
            out.clear();
            self.scratch = out;
            return;
        };
        for (slot, at) in t.deadlines().armed_since(before) {
            self.timers.push(id, slot, at);
        }
        let (peer, visible) = (t.peer, t.visible);
        let mut terminate = false;
        for action in out.drain(..) {
            match action {
                Action::Transmit(bytes) => {
                    self.outputs.push_back(Output::Transmit { peer, bytes });
                }
                Action::Response(msg) => {
                    self.outputs.push_back(Output::Event(Event::Response { tx: id, msg }));
                }
                Action::Timeout if visible => {
                    self.outputs.push_back(Output::Event(Event::Timeout { tx: id }));
                }
                Action::Timeout => {}
                Action::Terminate => terminate = true,
            }
        }
        self.scratch = out;
        if terminate {
            self.terminate(id);
        }
    }

    /// Removes transaction `id` and every index entry that points at it. Its heap
    /// entries go stale and are dropped lazily.
    fn terminate(&mut self, id: TxId) {
        let Some(mut t) = self.txs.remove(&id) else {
            return;
        };
        *t.deadlines_mut() = Deadlines::default();
        fn unlink<K: std::hash::Hash + Eq>(map: &mut HashMap<K, TxId>, key: Option<K>, id: TxId) {
            if let Some(k) = key {
                if map.get(&k) == Some(&id) {
                    map.remove(&k);
                }
            }
        }
        unlink(&mut self.client_keys, t.client_key.take(), id);
        unlink(&mut self.server_keys, t.server_key.take(), id);
        unlink(&mut self.merge_keys, t.merge_key.take(), id);
        unlink(&mut self.ack_keys, t.ack_key.take(), id);
        if t.visible {
            self.outputs.push_back(Output::Event(Event::Terminated { tx: id }));
        }
    }

    /// Keeps the heap top live so [`TransactionLayer::poll_timeout`] can be `&self`.
    fn prune_timers(&mut self) {
        let txs = &self.txs;
        self.timers.prune(3 * txs.len(), |e| is_live(txs, e));
    }

    /// Heap entries currently held, live or stale (for tests of the lazy invalidation).
    #[cfg(test)]
    fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

/// True if the transaction still exists and still has this deadline in this slot.
fn is_live(txs: &HashMap<TxId, Transaction>, e: &Entry) -> bool {
    txs.get(&e.tx).is_some_and(|t| t.deadlines().get(e.slot) == Some(e.at))
}

/// A To tag for the layer's own 482: FNV-1a over Call-ID, From tag and CSeq, mixed with
/// the transaction id. Deterministic, and distinct per merged request.
fn merged_tag(msg: &Message, id: TxId) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(msg.call_id());
    eat(msg.from_tag().unwrap_or_default());
    eat(&msg.cseq().to_be_bytes());
    eat(&id.0.to_be_bytes());
    format!("fs{h:016x}")
}
