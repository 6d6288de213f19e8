//! What can go wrong with the database, named with the file and the step that failed.

use std::path::PathBuf;

/// Why the storage could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The storage directory (`storage.dir`) could not be created.
    #[error("cannot create storage directory {dir} (storage.dir): {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database file could not be opened or configured (permissions, not a database,
    /// locked by another process).
    #[error("cannot open database {path} ({step}): {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The step that failed, e.g. "set journal_mode=WAL".
        step: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// SQLite refused to put the database in write-ahead-log mode (e.g. a network file
    /// system); readers would then block the writer.
    #[error(
        "database {path} stays in journal mode {mode:?}, WAL is required: keep storage.dir on a local file system"
    )]
    JournalMode {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// A schema migration failed; the database is left at the version before it.
    #[error("database {path}: schema migration {version} failed: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The migration that failed.
        version: u32,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer ferroswitch whose schema this build does not
    /// know.
    #[error("database {path} has schema version {found}, this ferroswitch knows up to {known}: run a newer build or point storage.dir elsewhere")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in `schema_version`.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// A query on the database failed.
    #[error("database {path}: cannot read {what}: {source}")]
    Read {
        /// The database file.
        path: PathBuf,
        /// What was being read, e.g. "registrations".
        what: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the storage writer thread for {path}: {source}")]
    Spawn {
        /// The database file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A batch of writes could not be committed; its writes are lost.
    #[error("database {path}: cannot commit queued writes: {message}")]
    Commit {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// The writer thread has stopped (closed, or it panicked), so nothing more is written.
    #[error("database {path}: the storage writer has stopped")]
    WriterStopped {
        /// The database file.
        path: PathBuf,
    },
}
