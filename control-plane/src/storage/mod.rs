//! The switch's tables in SQLite: registrations, SIP dialogs, channels, calls and CDRs,
//! as FreeSWITCH keeps them, without ever making the SIP path wait.
//!
//! Data flows one way. The SIP path calls [`StorageHandle::write`], which puts a [`Write`]
//! on a bounded queue and returns at once (when the queue is full the write is dropped and
//! counted, never waited for). One writer thread owns the read-write connection: it takes
//! everything queued and commits it in one transaction per batch. Readers (the management
//! endpoint, tests) open their own read-only [`Reader`]; the database is in WAL mode, so
//! they see the last committed batch and never block the writer. At start-up
//! [`Storage::open`] migrates the schema and hands back what a restarting switch needs
//! ([`Loaded`]).

mod error;
mod reader;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tracing::warn;

pub use error::StorageError;
pub use reader::Reader;
pub use rows::{BindingRow, CallRow, CdrMedia, CdrRow, ChannelRow, DialogRow, Direction};

use writer::{Counters, Msg};

/// The database file's name inside the storage directory.
pub const DB_FILE: &str = "ferroswitch.db";

/// How many writes [`Storage::open`] lets wait for the writer before dropping.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

/// How long the writer gathers writes before it commits them in one transaction
/// (`storage.commit_interval_ms`): the tables lag the switch by at most about this much.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(20);

/// How long the writer waits for a lock another process holds (an operator's `sqlite3`
/// shell, say) before giving up on a batch.
const WRITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One change to the tables, queued by [`StorageHandle::write`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Inserts a binding, or replaces the one with the same AOR and contact.
    UpsertBinding(BindingRow),
    /// Removes one binding (a REGISTER with `Expires: 0` for that contact).
    DeleteBinding {
        /// The address of record.
        aor: String,
        /// The contact URI.
        contact: String,
    },
    /// Removes every binding of an AOR (`Contact: *` with `Expires: 0`).
    DeleteBindingsOf {
        /// The address of record.
        aor: String,
    },
    /// Removes the bindings whose `expires_at` is at or before `now_secs`.
    PurgeExpiredBindings {
        /// The current time, in unix seconds.
        now_secs: i64,
    },
    /// Inserts a dialog, or replaces the one with the same Call-ID and tags.
    UpsertDialog(DialogRow),
    /// Removes a dialog.
    DeleteDialog {
        /// The Call-ID.
        call_id: String,
        /// The switch's tag.
        local_tag: String,
        /// The peer's tag.
        remote_tag: String,
    },
    /// Inserts a channel, or replaces the one with the same uuid.
    UpsertChannel(ChannelRow),
    /// Sets the state of a channel (e.g. to `CS_EXECUTE`); nothing if it is not stored.
    SetChannelState {
        /// The channel.
        uuid: String,
        /// The new state name.
        state: String,
    },
    /// Sets when a channel was answered; nothing if it is not stored.
    SetChannelAnswered {
        /// The channel.
        uuid: String,
        /// When it was answered, in unix seconds.
        answered_at: i64,
    },
    /// Removes a channel (it reached CS_DESTROY).
    DeleteChannel {
        /// The channel.
        uuid: String,
    },
    /// Inserts a call, or replaces the one with the same uuid.
    UpsertCall(CallRow),
    /// Removes a call.
    DeleteCall {
        /// The call.
        uuid: String,
    },
    /// Adds a stream's media counters to a leg's CDR (a call with several streams gets
    /// one per stream); nothing if the CDR is not stored.
    AddCdrMedia {
        /// The leg.
        uuid: String,
        /// The stream's counters.
        media: CdrMedia,
    },
    /// Appends a call detail record; one whose uuid is already stored is rejected and
    /// counted in [`StorageHandle::failed`].
    InsertCdr(CdrRow),
}

impl Write {
    /// The variant's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Write::UpsertBinding(_) => "UpsertBinding",
            Write::DeleteBinding { .. } => "DeleteBinding",
            Write::DeleteBindingsOf { .. } => "DeleteBindingsOf",
            Write::PurgeExpiredBindings { .. } => "PurgeExpiredBindings",
            Write::UpsertDialog(_) => "UpsertDialog",
            Write::DeleteDialog { .. } => "DeleteDialog",
            Write::UpsertChannel(_) => "UpsertChannel",
            Write::SetChannelState { .. } => "SetChannelState",
            Write::SetChannelAnswered { .. } => "SetChannelAnswered",
            Write::DeleteChannel { .. } => "DeleteChannel",
            Write::UpsertCall(_) => "UpsertCall",
            Write::DeleteCall { .. } => "DeleteCall",
            Write::AddCdrMedia { .. } => "AddCdrMedia",
            Write::InsertCdr(_) => "InsertCdr",
        }
    }
}

/// What a restarting switch takes back from the database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Loaded {
    /// Every stored binding, by AOR then contact, expired ones included: the registrar
    /// compares `expires_at` with its own clock (and queues
    /// [`Write::PurgeExpiredBindings`]).
    pub bindings: Vec<BindingRow>,
    /// The channels that were live when the switch stopped, oldest first.
    pub live_channels: Vec<ChannelRow>,
    /// The calls that were bridged when the switch stopped, oldest first.
    pub calls: Vec<CallRow>,
    /// The SIP dialogs of those channels, by Call-ID then local tag.
    pub dialogs: Vec<DialogRow>,
}

/// Opens the switch's database. See the [module documentation](self).
pub struct Storage;

impl Storage {
    /// Creates `dir` if missing, opens `dir/ferroswitch.db` in WAL mode, migrates its
    /// schema, loads what a restarting switch needs and starts the writer thread, with a
    /// queue of [`DEFAULT_QUEUE_CAPACITY`] writes.
    pub fn open(dir: &Path) -> Result<(StorageHandle, Loaded), StorageError> {
        Storage::open_with(dir, DEFAULT_QUEUE_CAPACITY, DEFAULT_COMMIT_INTERVAL)
    }

    /// As [`Storage::open`], with a queue of `capacity` writes (at least 1) and a writer
    /// that commits at most once per `commit_interval` (zero: as soon as it has a write).
    pub fn open_with(
        dir: &Path,
        capacity: usize,
        commit_interval: Duration,
    ) -> Result<(StorageHandle, Loaded), StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { dir: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let mut conn = open_writer(&path)?;
        schema::migrate(&mut conn, &path, schema::MIGRATIONS)?;
        let read_err = |what| {
            let path = path.clone();
            move |source| StorageError::Read { path, what, source }
        };
        let loaded = Loaded {
            bindings: reader::select_bindings(&conn, None).map_err(read_err("registrations"))?,
            live_channels: reader::select_channels(&conn).map_err(read_err("channels"))?,
            calls: reader::select_calls(&conn).map_err(read_err("calls"))?,
            dialogs: reader::select_dialogs(&conn).map_err(read_err("sip_dialogs"))?,
        };
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let thread = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn({
                let counters = counters.clone();
                move || writer::run(conn, rx, counters, capacity, commit_interval)
            })
            .map_err(|source| StorageError::Spawn { path: path.clone(), source })?;
        let handle =
            StorageHandle { inner: Arc::new(Inner { tx, counters, capacity, path, thread: Mutex::new(Some(thread)) }) };
        Ok((handle, loaded))
    }
}

fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    let open_err = |step| {
        let path = path.to_path_buf();
        move |source| StorageError::Open { path, step, source }
    };
    let conn = Connection::open(path).map_err(open_err("open read-write"))?;
    conn.busy_timeout(WRITE_BUSY_TIMEOUT).map_err(open_err("set busy_timeout"))?;
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err("set journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::JournalMode { path: path.to_path_buf(), mode });
    }
    // In WAL mode NORMAL is safe against corruption; a power cut may lose the last
    // batches, which a switch that reloads registrations tolerates.
    conn.execute_batch("PRAGMA synchronous = NORMAL").map_err(open_err("set synchronous=NORMAL"))?;
    // 16 MiB of page cache: a batch's index pages stay in memory between commits.
    conn.execute_batch("PRAGMA cache_size = -16384").map_err(open_err("set cache_size"))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The SIP path's way to the database: cheap to clone, and [`StorageHandle::write`] never
/// waits. The writer stops when [`StorageHandle::close`] is called on any clone, or once
/// every clone is dropped (after committing what was queued).
#[derive(Clone)]
pub struct StorageHandle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    capacity: usize,
    path: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StorageHandle {
    /// Queues `w` for the writer and returns at once. When the queue is full (or the
    /// writer has stopped) `w` is dropped and counted in [`StorageHandle::dropped`]; a
    /// warning is logged at the 1st, 2nd, 4th, 8th... drop so a storm does not flood the
    /// log.
    pub fn write(&self, w: Write) {
        let c = &self.inner.counters;
        c.queued.fetch_add(1, Ordering::Relaxed);
        let kind = w.kind();
        let why = match self.inner.tx.try_send(Msg::Write(w)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "queue full",
            Err(TrySendError::Disconnected(_)) => "writer stopped",
        };
        c.queued.fetch_sub(1, Ordering::Relaxed);
        let dropped = c.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            warn!(write = kind, why, capacity = self.inner.capacity, dropped_total = dropped, "storage: write dropped");
        }
    }

    /// How many writes were dropped because the queue was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// How many queued writes were lost in the database: rejected by a constraint, or in
    /// a batch that failed to commit.
    pub fn failed(&self) -> u64 {
        self.inner.counters.failed.load(Ordering::Relaxed)
    }

    /// How many messages wait for the writer now (a gauge for operators).
    pub fn queued(&self) -> usize {
        self.inner.counters.queued.load(Ordering::Relaxed)
    }

    /// Blocks until every write queued before this call is committed. Not for the SIP
    /// path: it is for tests and orderly shutdown.
    pub fn sync(&self) -> Result<(), StorageError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.send_blocking(Msg::Sync(reply_tx))?;
        match reply_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StorageError::Commit { path: self.inner.path.clone(), message }),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Commits everything queued, stops the writer and waits for its thread. Writes made
    /// through other clones afterwards are dropped. A commit failure here is logged; call
    /// [`StorageHandle::sync`] first to get it as an error.
    pub fn close(self) {
        // A writer that already stopped has nothing left to commit.
        let _ = self.send_blocking(Msg::Close);
        let thread = self.inner.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                warn!(path = %self.inner.path.display(), "storage: the writer thread panicked");
            }
        }
    }

    /// The database file, for [`Reader::open`].
    pub fn db_path(&self) -> &Path {
        &self.inner.path
    }

    fn send_blocking(&self, msg: Msg) -> Result<(), StorageError> {
        let c = &self.inner.counters;
        c.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.tx.send(msg).map_err(|_| {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            self.stopped()
        })
    }

    fn stopped(&self) -> StorageError {
        StorageError::WriterStopped { path: self.inner.path.clone() }
    }
}
