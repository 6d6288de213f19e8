//! The versioned schema: migration N is `MIGRATIONS[N - 1]`, applied once, in its own
//! transaction together with the `schema_version` row that records it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StorageError;

/// The migrations, oldest first. Never edit one that has shipped: append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the switch's tables, in the spirit of FreeSWITCH's core and sofia tables.
    "
CREATE TABLE registrations (
    aor         TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    call_id     TEXT    NOT NULL,
    cseq        INTEGER NOT NULL,
    user_agent  TEXT,
    received    TEXT    NOT NULL,
    transport   TEXT    NOT NULL,
    q           REAL    NOT NULL DEFAULT 1.0,
    instance_id TEXT,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX registrations_expires_at ON registrations (expires_at);

CREATE TABLE sip_dialogs (
    call_id       TEXT    NOT NULL,
    local_tag     TEXT    NOT NULL,
    remote_tag    TEXT    NOT NULL,
    channel_uuid  TEXT    NOT NULL,
    direction     TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    state         TEXT    NOT NULL,
    remote_target TEXT    NOT NULL,
    route_set     TEXT    NOT NULL,
    local_cseq    INTEGER NOT NULL,
    remote_cseq   INTEGER NOT NULL,
    PRIMARY KEY (call_id, local_tag, remote_tag)
);
CREATE INDEX sip_dialogs_channel_uuid ON sip_dialogs (channel_uuid);

CREATE TABLE channels (
    uuid               TEXT    NOT NULL PRIMARY KEY,
    direction          TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    state              TEXT    NOT NULL,
    caller_id_name     TEXT    NOT NULL,
    caller_id_number   TEXT    NOT NULL,
    destination_number TEXT    NOT NULL,
    context            TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    answered_at        INTEGER,
    call_uuid          TEXT
);
CREATE INDEX channels_call_uuid ON channels (call_uuid);

CREATE TABLE calls (
    uuid       TEXT    NOT NULL PRIMARY KEY,
    a_leg_uuid TEXT    NOT NULL,
    b_leg_uuid TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE cdr (
    uuid               TEXT    NOT NULL PRIMARY KEY,
    call_uuid          TEXT,
    direction          TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    caller_id_name     TEXT    NOT NULL,
    caller_id_number   TEXT    NOT NULL,
    destination_number TEXT    NOT NULL,
    context            TEXT    NOT NULL,
    start_at           INTEGER NOT NULL,
    answer_at          INTEGER,
    end_at             INTEGER NOT NULL,
    duration           INTEGER NOT NULL,
    billsec            INTEGER NOT NULL,
    hangup_cause       TEXT    NOT NULL,
    q850_cause         INTEGER NOT NULL,
    sip_status         INTEGER
);
CREATE INDEX cdr_end_at ON cdr (end_at);
CREATE INDEX cdr_call_uuid ON cdr (call_uuid);
",
    // 2: what a restarted switch needs to take a bridged call back (recovery): the From
    // and To values the switch sends in the dialog, and the transport and addresses its
    // requests go over. Rows written before have them empty and are not recovered.
    "
ALTER TABLE sip_dialogs ADD COLUMN local_uri      TEXT NOT NULL DEFAULT '';
ALTER TABLE sip_dialogs ADD COLUMN remote_uri     TEXT NOT NULL DEFAULT '';
ALTER TABLE sip_dialogs ADD COLUMN peer_transport TEXT NOT NULL DEFAULT '';
ALTER TABLE sip_dialogs ADD COLUMN peer_remote    TEXT NOT NULL DEFAULT '';
ALTER TABLE sip_dialogs ADD COLUMN peer_local     TEXT NOT NULL DEFAULT '';
",
    // 3: each leg's media counters in its CDR, summed over its streams (FreeSWITCH's
    // rtp_audio_in_* variables); NULL when the call's media did not cross the media plane.
    "
ALTER TABLE cdr ADD COLUMN media_in_packets  INTEGER;
ALTER TABLE cdr ADD COLUMN media_in_bytes    INTEGER;
ALTER TABLE cdr ADD COLUMN media_out_packets INTEGER;
ALTER TABLE cdr ADD COLUMN media_out_bytes   INTEGER;
ALTER TABLE cdr ADD COLUMN media_lost        INTEGER;
ALTER TABLE cdr ADD COLUMN media_dropped     INTEGER;
",
    // 4: a bridged call's media sessions, so a restarted switch takes them back with it.
    "
ALTER TABLE calls ADD COLUMN media_sessions TEXT NOT NULL DEFAULT '';
",
    // 5: the live tables (a row per leg, dialog or call, inserted at set-up and deleted at
    // hangup) become WITHOUT ROWID tables keyed by their primary key, without the
    // secondary indexes nothing queries: one B-tree per row instead of three, so the
    // writer does half the B-tree work per call.
    "
CREATE TABLE channels_v5 (
    uuid               TEXT    NOT NULL PRIMARY KEY,
    direction          TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    state              TEXT    NOT NULL,
    caller_id_name     TEXT    NOT NULL,
    caller_id_number   TEXT    NOT NULL,
    destination_number TEXT    NOT NULL,
    context            TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    answered_at        INTEGER,
    call_uuid          TEXT
) WITHOUT ROWID;
INSERT INTO channels_v5 SELECT uuid, direction, state, caller_id_name, caller_id_number, destination_number,
    context, created_at, answered_at, call_uuid FROM channels;
DROP TABLE channels;
ALTER TABLE channels_v5 RENAME TO channels;

CREATE TABLE sip_dialogs_v5 (
    call_id        TEXT    NOT NULL,
    local_tag      TEXT    NOT NULL,
    remote_tag     TEXT    NOT NULL,
    channel_uuid   TEXT    NOT NULL,
    direction      TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    state          TEXT    NOT NULL,
    remote_target  TEXT    NOT NULL,
    route_set      TEXT    NOT NULL,
    local_cseq     INTEGER NOT NULL,
    remote_cseq    INTEGER NOT NULL,
    local_uri      TEXT    NOT NULL DEFAULT '',
    remote_uri     TEXT    NOT NULL DEFAULT '',
    peer_transport TEXT    NOT NULL DEFAULT '',
    peer_remote    TEXT    NOT NULL DEFAULT '',
    peer_local     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (call_id, local_tag, remote_tag)
) WITHOUT ROWID;
INSERT INTO sip_dialogs_v5 SELECT call_id, local_tag, remote_tag, channel_uuid, direction, state, remote_target,
    route_set, local_cseq, remote_cseq, local_uri, remote_uri, peer_transport, peer_remote, peer_local
    FROM sip_dialogs;
DROP TABLE sip_dialogs;
ALTER TABLE sip_dialogs_v5 RENAME TO sip_dialogs;

CREATE TABLE calls_v5 (
    uuid           TEXT    NOT NULL PRIMARY KEY,
    a_leg_uuid     TEXT    NOT NULL,
    b_leg_uuid     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    media_sessions TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
INSERT INTO calls_v5 SELECT uuid, a_leg_uuid, b_leg_uuid, created_at, media_sessions FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v5 RENAME TO calls;
",
    // 6: a leg's dropped media by reason (issue 11): from nobody known yet, from a source
    // other than the signalled or latched one, malformed, from the media plane's own ports.
    "
ALTER TABLE cdr ADD COLUMN media_dropped_no_peer       INTEGER;
ALTER TABLE cdr ADD COLUMN media_dropped_strict_source INTEGER;
ALTER TABLE cdr ADD COLUMN media_dropped_malformed     INTEGER;
ALTER TABLE cdr ADD COLUMN media_dropped_loop          INTEGER;
",
];

/// Brings the database at `path` up to `migrations.len()`, running each missing migration
/// once, and returns the version it is at.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<u32, StorageError> {
    let known = u32::try_from(migrations.len()).expect("fewer than 2^32 migrations");
    let at_step = |version: u32| {
        move |source: rusqlite::Error| StorageError::Migrate { path: path.to_path_buf(), version, source }
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER NOT NULL PRIMARY KEY,
            applied_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
        )",
    )
    .map_err(at_step(0))?;
    let current: u32 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get::<_, Option<u32>>(0))
        .optional()
        .map_err(at_step(0))?
        .flatten()
        .unwrap_or(0);
    if current > known {
        return Err(StorageError::SchemaTooNew { path: path.to_path_buf(), found: current, known });
    }
    for (version, sql) in (current + 1..).zip(&migrations[current as usize..]) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(at_step(version))?;
        tx.execute_batch(sql).map_err(at_step(version))?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version]).map_err(at_step(version))?;
        tx.commit().map_err(at_step(version))?;
    }
    Ok(known)
}
