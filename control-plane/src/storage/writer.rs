//! The writer thread: the only owner of the read-write connection. It takes the first
//! queued message, opens a transaction, drains whatever else is queued into it, applies
//! it all and commits once, then answers the [`Msg::Sync`]s of that batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use tracing::warn;

use super::rows::{BINDING_COLUMNS, CALL_COLUMNS, CDR_COLUMNS, CHANNEL_COLUMNS, DIALOG_COLUMNS};
use super::Write;

/// What the handles send the writer.
#[allow(
    clippy::large_enum_variant,
    reason = "writes are nearly every message; boxing them would allocate on the SIP path \
              to shrink the rare Sync and Close"
)]
pub(crate) enum Msg {
    /// A change to apply.
    Write(Write),
    /// Answer once every message before this one is committed: `Err` carries why the
    /// commit failed.
    Sync(SyncSender<Result<(), String>>),
    /// Commit what is queued and stop.
    Close,
    /// A write that [`coalesce`] folded into another one of its batch.
    Folded,
}

/// Counters shared between the handles and the writer (never the sender: the writer
/// must see the channel close when the last handle goes).
#[derive(Default)]
pub(crate) struct Counters {
    /// Messages sent and not yet taken by the writer.
    pub(crate) queued: AtomicUsize,
    /// Writes dropped because the queue was full or the writer had stopped.
    pub(crate) dropped: AtomicU64,
    /// Writes the database rejected or whose batch failed to commit.
    pub(crate) failed: AtomicU64,
}

/// Runs until [`Msg::Close`] or until every sender is gone, committing batches of at most
/// `max_batch` messages.
/// After the first message of a batch the writer waits `linger` (unless that message is a
/// `Sync` or `Close`) so that one commit carries everything the SIP path queued meanwhile:
/// while it waits it is not parked on the queue, so queueing costs the SIP path no
/// wake-up.
pub(crate) fn run(
    mut conn: Connection,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    max_batch: usize,
    linger: Duration,
) {
    lower_priority();
    let mut batch: Vec<Msg> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        let wait = matches!(first, Msg::Write(_)) && !linger.is_zero();
        batch.push(first);
        if wait {
            std::thread::sleep(linger);
        }
        // The transaction is opened before draining, so that while it waits for a lock
        // held by another process the rest stays queued (and the queue bound holds).
        let mut rejected = 0u64;
        let outcome = conn.transaction_with_behavior(TransactionBehavior::Immediate).and_then(|tx| {
            while batch.len() < max_batch {
                let Ok(msg) = rx.try_recv() else { break };
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(msg);
            }
            coalesce(&mut batch);
            rejected = apply_writes(&tx, &batch);
            tx.commit()
        });
        let mut close = false;
        let mut writes = 0u64;
        let mut waiters = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Write(_) | Msg::Folded => writes += 1,
                Msg::Sync(w) => waiters.push(w),
                Msg::Close => close = true,
            }
        }
        let reply = match outcome {
            Ok(()) => {
                counters.failed.fetch_add(rejected, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                counters.failed.fetch_add(writes, Ordering::Relaxed);
                warn!(error = %e, lost = writes, "storage: batch not committed, its writes are lost");
                Err(e.to_string())
            }
        };
        for w in waiters {
            // A waiter that gave up has nothing to be told.
            let _ = w.send(reply.clone());
        }
        if close {
            break;
        }
    }
}

/// How much lower than the SIP path the writer runs (a nice value): when the cores are
/// busy the scheduler serves SIP first and the writer catches up in larger batches,
/// which cost it less per write.
const WRITER_NICE: libc::c_int = 10;

/// Lowers this thread's scheduling priority by [`WRITER_NICE`] (Linux sets nice per
/// thread). Failing to is harmless and only logged.
fn lower_priority() {
    // SAFETY: gettid and setpriority take no pointers; the call affects this thread only.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WRITER_NICE)
    };
    if rc != 0 {
        warn!(error = %std::io::Error::last_os_error(), "storage: could not lower the writer's priority");
    }
}

/// Folds the writes of one batch that touch the same channel, call or dialog row, so
/// that the batch commits each row's last state once:
/// - a channel's state or answer time change after its upsert in the batch goes into
///   that upsert;
/// - an upsert followed in the batch by another upsert or by the delete of the same row
///   is dropped (the later write decides the row).
///
/// Writes to other rows and tables keep their order; the committed tables are the same as
/// if every write had been applied one by one.
pub(crate) fn coalesce(batch: &mut [Msg]) {
    let mut channels: HashMap<String, usize> = HashMap::new();
    let mut calls: HashMap<String, usize> = HashMap::new();
    let mut dialogs: HashMap<(String, String, String), usize> = HashMap::new();
    for i in 0..batch.len() {
        let Msg::Write(w) = &batch[i] else { continue };
        let (fold_into, drop_earlier) = match w {
            Write::UpsertChannel(c) => (None, channels.insert(c.uuid.clone(), i)),
            Write::SetChannelState { uuid, .. } | Write::SetChannelAnswered { uuid, .. } => {
                (channels.get(uuid).copied(), None)
            }
            Write::DeleteChannel { uuid } => (None, channels.remove(uuid)),
            Write::UpsertCall(c) => (None, calls.insert(c.uuid.clone(), i)),
            Write::DeleteCall { uuid } => (None, calls.remove(uuid)),
            Write::UpsertDialog(d) => {
                (None, dialogs.insert((d.call_id.clone(), d.local_tag.clone(), d.remote_tag.clone()), i))
            }
            Write::DeleteDialog { call_id, local_tag, remote_tag } => {
                (None, dialogs.remove(&(call_id.clone(), local_tag.clone(), remote_tag.clone())))
            }
            _ => (None, None),
        };
        if let Some(j) = drop_earlier {
            batch[j] = Msg::Folded;
        }
        if let Some(j) = fold_into {
            let change = std::mem::replace(&mut batch[i], Msg::Folded);
            if let Msg::Write(Write::UpsertChannel(row)) = &mut batch[j] {
                match change {
                    Msg::Write(Write::SetChannelState { state, .. }) => row.state = state,
                    Msg::Write(Write::SetChannelAnswered { answered_at, .. }) => row.answered_at = Some(answered_at),
                    _ => unreachable!("fold_into is only set for a state or answer change"),
                }
            }
        }
    }
}

/// Applies every write of `batch` in `tx`, and returns how many the database rejected.
/// A rejected statement (a constraint, say) undoes only itself: the rest still commits.
fn apply_writes(tx: &Transaction<'_>, batch: &[Msg]) -> u64 {
    let sql = Sql::get();
    let mut rejected = 0;
    for msg in batch {
        if let Msg::Write(w) = msg {
            if let Err(e) = apply(tx, sql, w) {
                rejected += 1;
                warn!(error = %e, write = w.kind(), "storage: write rejected by the database");
            }
        }
    }
    rejected
}

/// The upserts' SQL, built once from the column lists (statements are cached by text).
struct Sql {
    upsert_binding: String,
    upsert_dialog: String,
    upsert_channel: String,
    upsert_call: String,
    insert_cdr: String,
}

impl Sql {
    fn get() -> &'static Sql {
        static SQL: std::sync::OnceLock<Sql> = std::sync::OnceLock::new();
        SQL.get_or_init(|| Sql {
            upsert_binding: format!(
                "INSERT INTO registrations ({BINDING_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (aor, contact) DO UPDATE SET \
                 expires_at = excluded.expires_at, call_id = excluded.call_id, \
                 cseq = excluded.cseq, user_agent = excluded.user_agent, \
                 received = excluded.received, transport = excluded.transport, \
                 q = excluded.q, instance_id = excluded.instance_id"
            ),
            upsert_dialog: format!(
                "INSERT INTO sip_dialogs ({DIALOG_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT (call_id, local_tag, remote_tag) DO UPDATE SET \
                 channel_uuid = excluded.channel_uuid, direction = excluded.direction, \
                 state = excluded.state, remote_target = excluded.remote_target, \
                 route_set = excluded.route_set, local_cseq = excluded.local_cseq, \
                 remote_cseq = excluded.remote_cseq, local_uri = excluded.local_uri, \
                 remote_uri = excluded.remote_uri, peer_transport = excluded.peer_transport, \
                 peer_remote = excluded.peer_remote, peer_local = excluded.peer_local"
            ),
            upsert_channel: format!(
                "INSERT INTO channels ({CHANNEL_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (uuid) DO UPDATE SET \
                 direction = excluded.direction, state = excluded.state, \
                 caller_id_name = excluded.caller_id_name, \
                 caller_id_number = excluded.caller_id_number, \
                 destination_number = excluded.destination_number, \
                 context = excluded.context, created_at = excluded.created_at, \
                 answered_at = excluded.answered_at, call_uuid = excluded.call_uuid"
            ),
            upsert_call: format!(
                "INSERT INTO calls ({CALL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (uuid) DO UPDATE SET a_leg_uuid = excluded.a_leg_uuid, \
                 b_leg_uuid = excluded.b_leg_uuid, created_at = excluded.created_at, \
                 media_sessions = excluded.media_sessions"
            ),
            insert_cdr: format!(
                "INSERT INTO cdr ({CDR_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
            ),
        })
    }
}

fn apply(tx: &Transaction<'_>, sql: &Sql, w: &Write) -> rusqlite::Result<usize> {
    match w {
        Write::UpsertBinding(b) => tx.prepare_cached(&sql.upsert_binding)?.execute(params![
            b.aor,
            b.contact,
            b.expires_at,
            b.call_id,
            b.cseq,
            b.user_agent,
            b.received,
            b.transport,
            b.q,
            b.instance_id
        ]),
        Write::DeleteBinding { aor, contact } => tx
            .prepare_cached("DELETE FROM registrations WHERE aor = ?1 AND contact = ?2")?
            .execute(params![aor, contact]),
        Write::DeleteBindingsOf { aor } => {
            tx.prepare_cached("DELETE FROM registrations WHERE aor = ?1")?.execute(params![aor])
        }
        Write::PurgeExpiredBindings { now_secs } => {
            tx.prepare_cached("DELETE FROM registrations WHERE expires_at <= ?1")?.execute(params![now_secs])
        }
        Write::UpsertDialog(d) => tx.prepare_cached(&sql.upsert_dialog)?.execute(params![
            d.call_id,
            d.local_tag,
            d.remote_tag,
            d.channel_uuid,
            d.direction,
            d.state,
            d.remote_target,
            d.route_set,
            d.local_cseq,
            d.remote_cseq,
            d.local_uri,
            d.remote_uri,
            d.peer_transport,
            d.peer_remote,
            d.peer_local
        ]),
        Write::DeleteDialog { call_id, local_tag, remote_tag } => tx
            .prepare_cached("DELETE FROM sip_dialogs WHERE call_id = ?1 AND local_tag = ?2 AND remote_tag = ?3")?
            .execute(params![call_id, local_tag, remote_tag]),
        Write::UpsertChannel(c) => tx.prepare_cached(&sql.upsert_channel)?.execute(params![
            c.uuid,
            c.direction,
            c.state,
            c.caller_id_name,
            c.caller_id_number,
            c.destination_number,
            c.context,
            c.created_at,
            c.answered_at,
            c.call_uuid
        ]),
        Write::SetChannelState { uuid, state } => {
            tx.prepare_cached("UPDATE channels SET state = ?2 WHERE uuid = ?1")?.execute(params![uuid, state])
        }
        Write::SetChannelAnswered { uuid, answered_at } => tx
            .prepare_cached("UPDATE channels SET answered_at = ?2 WHERE uuid = ?1")?
            .execute(params![uuid, answered_at]),
        Write::DeleteChannel { uuid } => {
            tx.prepare_cached("DELETE FROM channels WHERE uuid = ?1")?.execute(params![uuid])
        }
        Write::UpsertCall(c) => tx.prepare_cached(&sql.upsert_call)?.execute(params![
            c.uuid,
            c.a_leg_uuid,
            c.b_leg_uuid,
            c.created_at,
            c.media_sessions
        ]),
        Write::DeleteCall { uuid } => tx.prepare_cached("DELETE FROM calls WHERE uuid = ?1")?.execute(params![uuid]),
        Write::AddCdrMedia { uuid, media: m } => tx
            .prepare_cached(
                "UPDATE cdr SET media_in_packets = COALESCE(media_in_packets, 0) + ?2, \
                 media_in_bytes = COALESCE(media_in_bytes, 0) + ?3, \
                 media_out_packets = COALESCE(media_out_packets, 0) + ?4, \
                 media_out_bytes = COALESCE(media_out_bytes, 0) + ?5, \
                 media_lost = COALESCE(media_lost, 0) + ?6, \
                 media_dropped = COALESCE(media_dropped, 0) + ?7, \
                 media_dropped_no_peer = COALESCE(media_dropped_no_peer, 0) + ?8, \
                 media_dropped_strict_source = COALESCE(media_dropped_strict_source, 0) + ?9, \
                 media_dropped_malformed = COALESCE(media_dropped_malformed, 0) + ?10, \
                 media_dropped_loop = COALESCE(media_dropped_loop, 0) + ?11 WHERE uuid = ?1",
            )?
            .execute(params![
                uuid,
                m.media_in_packets,
                m.media_in_bytes,
                m.media_out_packets,
                m.media_out_bytes,
                m.media_lost,
                m.media_dropped,
                m.media_dropped_no_peer,
                m.media_dropped_strict_source,
                m.media_dropped_malformed,
                m.media_dropped_loop
            ]),
        Write::InsertCdr(c) => tx.prepare_cached(&sql.insert_cdr)?.execute(params![
            c.uuid,
            c.call_uuid,
            c.direction,
            c.caller_id_name,
            c.caller_id_number,
            c.destination_number,
            c.context,
            c.start_at,
            c.answer_at,
            c.end_at,
            c.duration,
            c.billsec,
            c.hangup_cause,
            c.q850_cause,
            c.sip_status,
            c.media.map(|m| m.media_in_packets),
            c.media.map(|m| m.media_in_bytes),
            c.media.map(|m| m.media_out_packets),
            c.media.map(|m| m.media_out_bytes),
            c.media.map(|m| m.media_lost),
            c.media.map(|m| m.media_dropped),
            c.media.map(|m| m.media_dropped_no_peer),
            c.media.map(|m| m.media_dropped_strict_source),
            c.media.map(|m| m.media_dropped_malformed),
            c.media.map(|m| m.media_dropped_loop)
        ]),
    }
}
