//! The read side: a read-only connection of its own, for the management endpoint, tests
//! and start-up. With the database in WAL mode a reader sees the last committed batch and
//! never waits for the writer, nor makes it wait.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Params, Row};

use super::rows::{BINDING_COLUMNS, CALL_COLUMNS, CDR_COLUMNS, CHANNEL_COLUMNS, DIALOG_COLUMNS};
use super::{BindingRow, CallRow, CdrRow, ChannelRow, DialogRow, StorageError};

/// How long a read waits for a lock (only a checkpoint or recovery can hold one in WAL).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// A read-only connection to the switch's database. Not for the SIP path: each call runs
/// a query on the calling thread (use `tokio::task::spawn_blocking` from async code).
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    /// Opens `db_path` (as given by [`super::StorageHandle::db_path`]) read-only. The
    /// database must exist: [`super::Storage::open`] creates it.
    pub fn open(db_path: &Path) -> Result<Reader, StorageError> {
        let path = db_path.to_path_buf();
        let open_err = |step| {
            let path = path.clone();
            move |source| StorageError::Open { path, step, source }
        };
        let conn =
            Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(open_err("open read-only"))?;
        conn.busy_timeout(READ_BUSY_TIMEOUT).map_err(open_err("set busy_timeout"))?;
        Ok(Reader { conn, path })
    }

    /// The bindings that have not expired at `now_secs` (unix seconds), by AOR then
    /// contact.
    pub fn list_registrations(&self, now_secs: i64) -> Result<Vec<BindingRow>, StorageError> {
        select_bindings(&self.conn, Some(now_secs)).map_err(self.read_err("registrations"))
    }

    /// Every SIP dialog, by Call-ID then local tag.
    pub fn list_dialogs(&self) -> Result<Vec<DialogRow>, StorageError> {
        select_dialogs(&self.conn).map_err(self.read_err("sip_dialogs"))
    }

    /// Every live channel, oldest first.
    pub fn list_channels(&self) -> Result<Vec<ChannelRow>, StorageError> {
        select_channels(&self.conn).map_err(self.read_err("channels"))
    }

    /// Every bridged call, oldest first.
    pub fn list_calls(&self) -> Result<Vec<CallRow>, StorageError> {
        select_calls(&self.conn).map_err(self.read_err("calls"))
    }

    /// The `limit` most recent call detail records, the last to end first.
    pub fn list_cdr(&self, limit: u32) -> Result<Vec<CdrRow>, StorageError> {
        select_all(
            &self.conn,
            &format!("SELECT {CDR_COLUMNS} FROM cdr ORDER BY end_at DESC, rowid DESC LIMIT ?1"),
            [limit],
            CdrRow::from_row,
        )
        .map_err(self.read_err("cdr"))
    }

    fn read_err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
        move |source| StorageError::Read { path: self.path.clone(), what, source }
    }
}

/// The bindings, only those unexpired at `now_secs` when given.
pub(crate) fn select_bindings(conn: &Connection, now_secs: Option<i64>) -> rusqlite::Result<Vec<BindingRow>> {
    select_all(
        conn,
        &format!(
            "SELECT {BINDING_COLUMNS} FROM registrations \
             WHERE ?1 IS NULL OR expires_at > ?1 ORDER BY aor, contact"
        ),
        [now_secs],
        BindingRow::from_row,
    )
}

/// Every dialog.
pub(crate) fn select_dialogs(conn: &Connection) -> rusqlite::Result<Vec<DialogRow>> {
    select_all(
        conn,
        &format!("SELECT {DIALOG_COLUMNS} FROM sip_dialogs ORDER BY call_id, local_tag, remote_tag"),
        [],
        DialogRow::from_row,
    )
}

/// Every call.
pub(crate) fn select_calls(conn: &Connection) -> rusqlite::Result<Vec<CallRow>> {
    select_all(conn, &format!("SELECT {CALL_COLUMNS} FROM calls ORDER BY created_at, uuid"), [], CallRow::from_row)
}

/// Every channel.
pub(crate) fn select_channels(conn: &Connection) -> rusqlite::Result<Vec<ChannelRow>> {
    select_all(
        conn,
        &format!("SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY created_at, uuid"),
        [],
        ChannelRow::from_row,
    )
}

fn select_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    rows.collect()
}
