use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::*;

/// A directory under the system temp dir, unique per test, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferroswitch-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover from a killed run of the same pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn binding(aor: &str, contact: &str, expires_at: i64) -> BindingRow {
    BindingRow {
        aor: aor.into(),
        contact: contact.into(),
        expires_at,
        call_id: format!("reg-{contact}"),
        cseq: 7,
        user_agent: Some("Linphone/5.2".into()),
        received: "192.0.2.10:5062".into(),
        transport: "udp".into(),
        q: 1.0,
        instance_id: None,
    }
}

pub(crate) fn channel(uuid: &str, created_at: i64) -> ChannelRow {
    ChannelRow {
        uuid: uuid.into(),
        direction: Direction::Inbound,
        state: "CS_INIT".into(),
        caller_id_name: "Alice".into(),
        caller_id_number: "1000".into(),
        destination_number: "1001".into(),
        context: "default".into(),
        created_at,
        answered_at: None,
        call_uuid: None,
    }
}

pub(crate) fn cdr(uuid: &str, end_at: i64) -> CdrRow {
    CdrRow {
        uuid: uuid.into(),
        call_uuid: Some("call-1".into()),
        direction: Direction::Inbound,
        caller_id_name: "Alice".into(),
        caller_id_number: "1000".into(),
        destination_number: "1001".into(),
        context: "default".into(),
        start_at: end_at - 30,
        answer_at: Some(end_at - 25),
        end_at,
        duration: 30,
        billsec: 25,
        hangup_cause: "NORMAL_CLEARING".into(),
        q850_cause: 16,
        sip_status: Some(200),
        media: None,
    }
}

/// A fresh directory with a database file opened directly (no migration yet).
fn bare_database(name: &str) -> (TempDir, PathBuf, Connection) {
    let tmp = TempDir::new(name);
    std::fs::create_dir_all(tmp.path()).expect("mkdir");
    let db = tmp.path().join(DB_FILE);
    let conn = Connection::open(&db).expect("open");
    (tmp, db, conn)
}

fn schema_versions(db: &Path) -> Vec<u32> {
    let conn = Connection::open(db).expect("open db");
    let mut stmt = conn.prepare("SELECT version FROM schema_version ORDER BY version").expect("prepare");
    let rows = stmt.query_map([], |r| r.get(0)).expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn open_creates_the_directory_and_a_wal_database() {
    let tmp = TempDir::new("open-creates");
    let dir = tmp.path().join("nested/var");
    let (h, loaded) = Storage::open(&dir).expect("open");
    assert_eq!(h.db_path(), dir.join("ferroswitch.db"));
    assert_eq!(loaded, Loaded::default());
    let mode: String = Connection::open(h.db_path())
        .expect("open db")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    h.close();
}

#[test]
fn migrations_run_once_across_reopen() {
    let tmp = TempDir::new("migrations-reopen");
    let (h, _) = Storage::open(tmp.path()).expect("first open");
    let db = h.db_path().to_path_buf();
    h.close();
    assert_eq!(schema_versions(&db), vec![1, 2, 3, 4, 5, 6]);
    let (h, loaded) = Storage::open(tmp.path()).expect("second open");
    h.close();
    assert_eq!(loaded, Loaded::default());
    assert_eq!(schema_versions(&db), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn migrate_applies_only_the_versions_not_yet_applied() {
    let (_tmp, db, mut conn) = bare_database("migrate-new-only");
    let v1 = "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);";
    let v2 = "INSERT INTO a VALUES (2);";
    assert_eq!(schema::migrate(&mut conn, &db, &[v1]).expect("v1"), 1);
    assert_eq!(schema::migrate(&mut conn, &db, &[v1, v2]).expect("v2"), 2);
    assert_eq!(schema::migrate(&mut conn, &db, &[v1, v2]).expect("again"), 2);
    let xs: Vec<i64> = conn
        .prepare("SELECT x FROM a ORDER BY x")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(xs, vec![1, 2]);
    assert_eq!(schema_versions(&db), vec![1, 2]);
}

#[test]
fn a_failed_migration_leaves_the_previous_version() {
    let (_tmp, db, mut conn) = bare_database("migrate-fails");
    let v1 = "CREATE TABLE a (x INTEGER);";
    let bad = "CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1);";
    schema::migrate(&mut conn, &db, &[v1]).expect("v1");
    let err = schema::migrate(&mut conn, &db, &[v1, bad]).expect_err("v2 must fail");
    assert!(matches!(err, StorageError::Migrate { version: 2, .. }), "{err}");
    assert_eq!(schema_versions(&db), vec![1]);
    let b_exists: i64 =
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'", [], |r| r.get(0)).expect("query");
    assert_eq!(b_exists, 0);
}

#[test]
fn a_schema_newer_than_the_build_is_refused() {
    let tmp = TempDir::new("schema-too-new");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let db = h.db_path().to_path_buf();
    h.close();
    Connection::open(&db)
        .expect("open")
        .execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .expect("insert");
    match Storage::open(tmp.path()) {
        Err(StorageError::SchemaTooNew { found, known, .. }) => {
            assert_eq!((found, known), (99, 6));
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("expected SchemaTooNew, got a handle"),
    }
}

#[test]
fn bindings_are_reloaded_by_the_next_open() {
    let tmp = TempDir::new("bindings-reload");
    let a = binding("sip:1000@example.com", "sip:1000@192.0.2.10:5062", 1_000);
    let mut b = binding("sip:1001@example.com", "sip:1001@192.0.2.11:5060", 2_000);
    b.instance_id = Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>".into());
    b.q = 0.5;
    b.user_agent = None;
    b.transport = "tcp".into();
    let (h, _) = Storage::open(tmp.path()).expect("open");
    h.write(Write::UpsertBinding(b.clone()));
    h.write(Write::UpsertBinding(a.clone()));
    h.write(Write::UpsertChannel(channel("chan-1", 500)));
    h.close();
    let (h, loaded) = Storage::open(tmp.path()).expect("reopen");
    h.close();
    assert_eq!(loaded.bindings, vec![a, b]);
    assert_eq!(loaded.live_channels, vec![channel("chan-1", 500)]);
}

#[test]
fn a_version_1_dialog_row_loads_after_migration_2_with_empty_recovery_columns() {
    let (tmp, db, mut conn) = bare_database("migrate-v1-dialog");
    schema::migrate(&mut conn, &db, &schema::MIGRATIONS[..1]).expect("v1");
    conn.execute(
        "INSERT INTO sip_dialogs (call_id, local_tag, remote_tag, channel_uuid, direction, state, \
         remote_target, route_set, local_cseq, remote_cseq) \
         VALUES ('c1', 'fs-1', 'ua-1', 'chan-a', 'outbound', 'confirmed', 'sip:1001@192.0.2.11', '', 1, 0)",
        [],
    )
    .expect("a version 1 row");
    drop(conn);
    let (h, loaded) = Storage::open(tmp.path()).expect("open migrates to the latest");
    h.close();
    assert_eq!(schema_versions(&db), vec![1, 2, 3, 4, 5, 6]);
    let mut old = dialog("c1", "ua-1", "confirmed", 1);
    old.local_uri.clear();
    old.remote_uri.clear();
    old.peer_transport.clear();
    old.peer_remote.clear();
    old.peer_local.clear();
    assert_eq!(loaded.dialogs, vec![old]);
}

#[test]
fn calls_dialogs_and_answer_times_are_reloaded_by_the_next_open() {
    let tmp = TempDir::new("calls-reload");
    let call = CallRow {
        uuid: "a-1".into(),
        a_leg_uuid: "a-1".into(),
        b_leg_uuid: "b-1".into(),
        created_at: 15,
        media_sessions: String::new(),
    };
    let (h, _) = Storage::open(tmp.path()).expect("open");
    h.write(Write::UpsertChannel(channel("a-1", 10)));
    h.write(Write::SetChannelAnswered { uuid: "a-1".into(), answered_at: 15 });
    h.write(Write::UpsertDialog(dialog("c1", "ua-1", "confirmed", 1)));
    h.write(Write::UpsertCall(call.clone()));
    h.close();
    let (h, loaded) = Storage::open(tmp.path()).expect("reopen");
    h.close();
    let mut a = channel("a-1", 10);
    a.answered_at = Some(15);
    assert_eq!(loaded.live_channels, vec![a]);
    assert_eq!(loaded.calls, vec![call]);
    assert_eq!(loaded.dialogs, vec![dialog("c1", "ua-1", "confirmed", 1)]);
}

#[test]
fn purge_removes_only_expired_bindings() {
    let tmp = TempDir::new("purge");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let expired = binding("sip:1000@example.com", "sip:a@192.0.2.1", 99);
    let at_now = binding("sip:1000@example.com", "sip:b@192.0.2.1", 100);
    let live = binding("sip:1000@example.com", "sip:c@192.0.2.1", 101);
    for b in [&expired, &at_now, &live] {
        h.write(Write::UpsertBinding(b.clone()));
    }
    h.write(Write::PurgeExpiredBindings { now_secs: 100 });
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_registrations(0).expect("list"), vec![live.clone()]);
    h.close();
}

#[test]
fn list_registrations_hides_expired_bindings_until_purged() {
    let tmp = TempDir::new("list-unexpired");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let old = binding("sip:1000@example.com", "sip:a@192.0.2.1", 100);
    let new = binding("sip:1000@example.com", "sip:b@192.0.2.1", 200);
    h.write(Write::UpsertBinding(old.clone()));
    h.write(Write::UpsertBinding(new.clone()));
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_registrations(99).expect("list"), vec![old, new.clone()]);
    assert_eq!(r.list_registrations(100).expect("list"), vec![new]);
    assert_eq!(r.list_registrations(200).expect("list"), vec![]);
    h.close();
}

#[test]
fn upsert_binding_replaces_the_same_aor_and_contact() {
    let tmp = TempDir::new("upsert-binding");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let first = binding("sip:1000@example.com", "sip:1000@192.0.2.10", 100);
    let mut refreshed = first.clone();
    refreshed.expires_at = 3_700;
    refreshed.cseq = 8;
    refreshed.received = "192.0.2.10:5099".into();
    let other = binding("sip:1000@example.com", "sip:1000@198.51.100.7", 100);
    h.write(Write::UpsertBinding(first));
    h.write(Write::UpsertBinding(other.clone()));
    h.write(Write::UpsertBinding(refreshed.clone()));
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_registrations(0).expect("list"), vec![refreshed, other]);
    h.close();
}

#[test]
fn delete_binding_and_delete_bindings_of_remove_what_they_name() {
    let tmp = TempDir::new("delete-bindings");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let a1 = binding("sip:1000@example.com", "sip:a1@192.0.2.1", 500);
    let a2 = binding("sip:1000@example.com", "sip:a2@192.0.2.1", 500);
    let b1 = binding("sip:1001@example.com", "sip:b1@192.0.2.1", 500);
    let b2 = binding("sip:1001@example.com", "sip:b2@192.0.2.1", 500);
    for b in [&a1, &a2, &b1, &b2] {
        h.write(Write::UpsertBinding(b.clone()));
    }
    h.write(Write::DeleteBinding { aor: "sip:1000@example.com".into(), contact: "sip:a2@192.0.2.1".into() });
    h.write(Write::DeleteBindingsOf { aor: "sip:1001@example.com".into() });
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_registrations(0).expect("list"), vec![a1]);
    h.close();
}

#[test]
fn set_channel_state_changes_only_the_state() {
    let tmp = TempDir::new("channel-state");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    h.write(Write::UpsertChannel(channel("chan-a", 10)));
    h.write(Write::UpsertChannel(channel("chan-b", 20)));
    h.write(Write::SetChannelState { uuid: "chan-a".into(), state: "CS_ROUTING".into() });
    h.write(Write::SetChannelState { uuid: "chan-a".into(), state: "CS_EXECUTE".into() });
    h.write(Write::SetChannelState { uuid: "no-such-channel".into(), state: "CS_EXECUTE".into() });
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    let mut a = channel("chan-a", 10);
    a.state = "CS_EXECUTE".into();
    assert_eq!(r.list_channels().expect("list"), vec![a, channel("chan-b", 20)]);
    h.write(Write::DeleteChannel { uuid: "chan-a".into() });
    h.sync().expect("sync");
    assert_eq!(r.list_channels().expect("list"), vec![channel("chan-b", 20)]);
    assert_eq!(h.failed(), 0);
    h.close();
}

#[test]
fn dialogs_and_calls_upsert_and_delete() {
    let tmp = TempDir::new("dialogs-calls");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let mut d = DialogRow {
        call_id: "c1@192.0.2.10".into(),
        local_tag: "fs-1".into(),
        remote_tag: "ua-1".into(),
        channel_uuid: "chan-a".into(),
        direction: Direction::Inbound,
        state: "early".into(),
        remote_target: "sip:1000@192.0.2.10:5062".into(),
        route_set: "<sip:proxy.example.com;lr>".into(),
        local_cseq: 0,
        remote_cseq: 1,
        local_uri: "<sip:1001@192.0.2.1>;tag=fs-1".into(),
        remote_uri: "\"Alice\" <sip:1000@192.0.2.1>;tag=ua-1".into(),
        peer_transport: "udp".into(),
        peer_remote: "192.0.2.10:5062".into(),
        peer_local: "192.0.2.1:5060".into(),
    };
    h.write(Write::UpsertDialog(d.clone()));
    d.state = "ready".into();
    d.local_cseq = 1;
    h.write(Write::UpsertDialog(d.clone()));
    let call = CallRow {
        uuid: "call-1".into(),
        a_leg_uuid: "chan-a".into(),
        b_leg_uuid: "chan-b".into(),
        created_at: 1_700_000_000,
        media_sessions: String::new(),
    };
    h.write(Write::UpsertCall(call.clone()));
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_dialogs().expect("dialogs"), vec![d]);
    assert_eq!(r.list_calls().expect("calls"), vec![call]);
    h.write(Write::DeleteDialog {
        call_id: "c1@192.0.2.10".into(),
        local_tag: "fs-1".into(),
        remote_tag: "ua-1".into(),
    });
    h.write(Write::DeleteCall { uuid: "call-1".into() });
    h.sync().expect("sync");
    assert_eq!(r.list_dialogs().expect("dialogs"), vec![]);
    assert_eq!(r.list_calls().expect("calls"), vec![]);
    h.close();
}

#[test]
fn cdr_list_is_most_recent_first_and_limited() {
    let tmp = TempDir::new("cdr");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let mut unanswered = cdr("leg-3", 300);
    unanswered.answer_at = None;
    unanswered.billsec = 0;
    unanswered.call_uuid = None;
    unanswered.hangup_cause = "NO_ANSWER".into();
    unanswered.q850_cause = 19;
    unanswered.sip_status = Some(480);
    h.write(Write::InsertCdr(cdr("leg-1", 100)));
    h.write(Write::InsertCdr(unanswered.clone()));
    h.write(Write::InsertCdr(cdr("leg-2", 200)));
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_cdr(10).expect("list"), vec![unanswered.clone(), cdr("leg-2", 200), cdr("leg-1", 100)]);
    assert_eq!(r.list_cdr(2).expect("list"), vec![unanswered, cdr("leg-2", 200)]);
    h.close();
}

#[test]
fn a_duplicate_cdr_is_rejected_and_counted_without_losing_its_batch() {
    let tmp = TempDir::new("cdr-duplicate");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    h.write(Write::InsertCdr(cdr("leg-1", 100)));
    h.write(Write::InsertCdr(cdr("leg-1", 999)));
    h.write(Write::InsertCdr(cdr("leg-2", 200)));
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    assert_eq!(r.list_cdr(10).expect("list"), vec![cdr("leg-2", 200), cdr("leg-1", 100)]);
    assert_eq!(h.failed(), 1);
    assert_eq!(h.dropped(), 0);
    h.close();
}

#[test]
fn a_full_queue_drops_and_counts_writes_instead_of_blocking() {
    let tmp = TempDir::new("queue-full");
    let (h, _) = Storage::open_with(tmp.path(), 2, Duration::ZERO).expect("open");
    // Another connection holds the write lock, so the writer, once it has taken the
    // first write, waits in BEGIN with the rest of the queue untouched.
    let mut blocker = Connection::open(h.db_path()).expect("open blocker");
    let lock = blocker.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).expect("lock");
    h.write(Write::UpsertChannel(channel("chan-0", 0)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.queued() != 0 {
        assert!(Instant::now() < deadline, "the writer never took the first write");
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    for i in 1..=5 {
        h.write(Write::UpsertChannel(channel(&format!("chan-{i}"), i)));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "write() waited {took:?}");
    assert_eq!(h.queued(), 2);
    assert_eq!(h.dropped(), 3);
    drop(lock);
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    let uuids: Vec<String> = r.list_channels().expect("list").into_iter().map(|c| c.uuid).collect();
    assert_eq!(uuids, vec!["chan-0", "chan-1", "chan-2"]);
    assert_eq!(h.dropped(), 3);
    h.close();
}

#[test]
fn sync_waits_for_every_write_queued_before_it_from_any_clone() {
    let tmp = TempDir::new("sync-order");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    h.write(Write::UpsertChannel(channel(&format!("p{p}-{i:03}"), i)));
                }
                h.write(Write::SetChannelState { uuid: format!("p{p}-000"), state: "CS_EXECUTE".into() });
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    h.sync().expect("sync");
    let r = Reader::open(h.db_path()).expect("reader");
    let channels = r.list_channels().expect("list");
    assert_eq!(channels.len(), 1000);
    let executing: Vec<&str> = channels.iter().filter(|c| c.state == "CS_EXECUTE").map(|c| c.uuid.as_str()).collect();
    assert_eq!(executing, vec!["p0-000", "p1-000", "p2-000", "p3-000"]);
    assert_eq!(h.dropped(), 0);
    h.close();
}

#[test]
fn sync_after_close_reports_the_writer_stopped() {
    let tmp = TempDir::new("sync-after-close");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let other = h.clone();
    h.close();
    assert!(matches!(other.sync(), Err(StorageError::WriterStopped { .. })), "sync after close must fail");
    other.write(Write::DeleteChannel { uuid: "x".into() });
    assert_eq!(other.dropped(), 1);
}

#[test]
fn a_reader_reads_while_the_writer_commits_batches() {
    let tmp = TempDir::new("concurrent-reader");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let db = h.db_path().to_path_buf();
    let reader = std::thread::spawn(move || {
        let r = Reader::open(&db).expect("reader");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "never saw every row: {seen:?}");
            let n = r.list_channels().expect("read during writes").len();
            seen.push(n);
            if n == 2000 {
                return seen;
            }
            std::thread::yield_now();
        }
    });
    for i in 0..2000 {
        h.write(Write::UpsertChannel(channel(&format!("chan-{i:04}"), i)));
        if i % 100 == 99 {
            h.sync().expect("sync");
        }
    }
    let seen = reader.join().expect("reader thread");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "a reader went back in time: {seen:?}");
    assert_eq!(seen.last(), Some(&2000));
    assert_eq!(h.dropped(), 0);
    h.close();
}

#[test]
fn a_reader_opens_a_database_whose_writer_has_closed() {
    let tmp = TempDir::new("reader-after-close");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    let db = h.db_path().to_path_buf();
    let call = CallRow {
        uuid: "call-1".into(),
        a_leg_uuid: "chan-a".into(),
        b_leg_uuid: "chan-b".into(),
        created_at: 5,
        media_sessions: String::new(),
    };
    h.write(Write::UpsertCall(call.clone()));
    h.close();
    let r = Reader::open(&db).expect("reader");
    assert_eq!(r.list_calls().expect("calls"), vec![call]);
}

fn dialog(call_id: &str, remote_tag: &str, state: &str, local_cseq: u32) -> DialogRow {
    DialogRow {
        call_id: call_id.into(),
        local_tag: "fs-1".into(),
        remote_tag: remote_tag.into(),
        channel_uuid: "chan-a".into(),
        direction: Direction::Outbound,
        state: state.into(),
        remote_target: "sip:1001@192.0.2.11".into(),
        route_set: String::new(),
        local_cseq,
        remote_cseq: 0,
        local_uri: "<sip:1000@192.0.2.1>;tag=fs-1".into(),
        remote_uri: format!("<sip:1001@192.0.2.1>;tag={remote_tag}"),
        peer_transport: "udp".into(),
        peer_remote: "192.0.2.11:5060".into(),
        peer_local: "192.0.2.1:5060".into(),
    }
}

/// The writes of two calls' lifetimes, interleaved: one call ends within the sequence,
/// the other stays up (and is answered); a channel stored before the sequence changes
/// state in it.
fn call_lifetimes() -> Vec<Write> {
    let mut a1 = channel("a-1", 10);
    a1.call_uuid = Some("call-1".into());
    let b1 = channel("b-1", 11);
    let a2 = channel("a-2", 12);
    let call1 = CallRow {
        uuid: "call-1".into(),
        a_leg_uuid: "a-1".into(),
        b_leg_uuid: "b-1".into(),
        created_at: 10,
        media_sessions: String::new(),
    };
    let call2 = CallRow {
        uuid: "call-2".into(),
        a_leg_uuid: "a-2".into(),
        b_leg_uuid: String::new(),
        created_at: 12,
        media_sessions: String::new(),
    };
    let state = |uuid: &str, s: &str| Write::SetChannelState { uuid: uuid.into(), state: s.into() };
    vec![
        Write::UpsertChannel(a1),
        state("a-1", "CS_ROUTING"),
        state("stored-before", "CS_EXCHANGE_MEDIA"),
        Write::UpsertChannel(a2.clone()),
        state("a-1", "CS_EXECUTE"),
        Write::UpsertChannel(b1),
        Write::UpsertDialog(dialog("c1", "ua-1", "early", 1)),
        state("a-2", "CS_ROUTING"),
        Write::UpsertCall(call1),
        Write::UpsertDialog(dialog("c1", "ua-1", "confirmed", 1)),
        Write::UpsertDialog(dialog("c2", "ua-2", "early", 1)),
        state("b-1", "CS_EXCHANGE_MEDIA"),
        Write::UpsertCall(call2),
        Write::InsertCdr(cdr("b-1", 20)),
        Write::DeleteChannel { uuid: "b-1".into() },
        Write::InsertCdr(cdr("a-1", 21)),
        Write::DeleteChannel { uuid: "a-1".into() },
        Write::DeleteCall { uuid: "call-1".into() },
        Write::DeleteDialog { call_id: "c1".into(), local_tag: "fs-1".into(), remote_tag: "ua-1".into() },
        state("a-1", "CS_DESTROY"),
        state("a-2", "CS_EXECUTE"),
        Write::SetChannelAnswered { uuid: "a-2".into(), answered_at: 13 },
        Write::UpsertDialog(dialog("c2", "ua-2", "confirmed", 2)),
    ]
}

/// Every table, as a reader sees it.
fn tables(h: &StorageHandle) -> (Vec<ChannelRow>, Vec<CallRow>, Vec<DialogRow>, Vec<CdrRow>) {
    let r = Reader::open(h.db_path()).expect("reader");
    (
        r.list_channels().expect("channels"),
        r.list_calls().expect("calls"),
        r.list_dialogs().expect("dialogs"),
        r.list_cdr(100).expect("cdr"),
    )
}

#[test]
fn coalesce_folds_state_changes_into_upserts_and_drops_rows_deleted_in_the_batch() {
    let mut batch: Vec<writer::Msg> = call_lifetimes().into_iter().map(writer::Msg::Write).collect();
    writer::coalesce(&mut batch);
    let kept: Vec<&Write> = batch
        .iter()
        .filter_map(|m| match m {
            writer::Msg::Write(w) => Some(w),
            _ => None,
        })
        .collect();
    let kinds: Vec<&str> = kept.iter().map(|w| w.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "SetChannelState", // stored-before: not upserted in this batch, so kept
            "UpsertChannel",   // a-2, with its last state and its answer time folded in
            "UpsertCall",      // call-2
            "InsertCdr",       // b-1
            "DeleteChannel",   // b-1 (its upsert and state change are gone)
            "InsertCdr",       // a-1
            "DeleteChannel",   // a-1
            "DeleteCall",      // call-1 (its upsert is gone)
            "DeleteDialog",    // c1 (both of its upserts are gone)
            "SetChannelState", // a-1 after its delete: a no-op, kept in order
            "UpsertDialog",    // c2, the later of its two upserts
        ]
    );
    let Write::UpsertChannel(a2) = kept[1] else { panic!("expected a-2's upsert, got {:?}", kept[1]) };
    assert_eq!((a2.uuid.as_str(), a2.state.as_str(), a2.answered_at), ("a-2", "CS_EXECUTE", Some(13)));
    let Write::UpsertDialog(c2) = kept[10] else { panic!("expected c2's upsert, got {:?}", kept[10]) };
    assert_eq!((c2.call_id.as_str(), c2.state.as_str(), c2.local_cseq), ("c2", "confirmed", 2));
}

#[test]
fn a_coalesced_batch_commits_the_same_tables_as_writes_applied_one_by_one() {
    let one_by_one = TempDir::new("coalesce-a");
    let batched = TempDir::new("coalesce-b");
    let (a, _) = Storage::open_with(one_by_one.path(), 64, Duration::ZERO).expect("open a");
    let (b, _) = Storage::open_with(batched.path(), 64, Duration::from_secs(1)).expect("open b");
    let mut before = channel("stored-before", 1);
    before.state = "CS_CONSUME_MEDIA".into();
    for h in [&a, &b] {
        h.write(Write::UpsertChannel(before.clone()));
        h.sync().expect("sync");
    }
    for w in call_lifetimes() {
        a.write(w);
        a.sync().expect("sync a");
    }
    // The writer lingers a second after the first write: the whole sequence is one batch.
    for w in call_lifetimes() {
        b.write(w);
    }
    b.sync().expect("sync b");
    let expected = tables(&a);
    assert_eq!(tables(&b), expected);
    let (channels, calls, dialogs, cdrs) = expected;
    let uuids: Vec<(&str, &str)> = channels.iter().map(|c| (c.uuid.as_str(), c.state.as_str())).collect();
    assert_eq!(uuids, vec![("stored-before", "CS_EXCHANGE_MEDIA"), ("a-2", "CS_EXECUTE")]);
    assert_eq!(calls.iter().map(|c| c.uuid.as_str()).collect::<Vec<_>>(), vec!["call-2"]);
    assert_eq!(dialogs, vec![dialog("c2", "ua-2", "confirmed", 2)]);
    assert_eq!(cdrs.iter().map(|c| c.uuid.as_str()).collect::<Vec<_>>(), vec!["a-1", "b-1"]);
    assert_eq!((a.failed(), b.failed(), a.dropped(), b.dropped()), (0, 0, 0, 0));
    a.close();
    b.close();
}

#[test]
fn media_counters_add_up_in_a_legs_cdr_one_stream_at_a_time() {
    let tmp = TempDir::new("cdr-media");
    let (h, _) = Storage::open(tmp.path()).expect("open");
    h.write(Write::InsertCdr(cdr("leg-a", 1000)));
    h.write(Write::InsertCdr(cdr("leg-b", 1000)));
    let audio = CdrMedia {
        media_in_packets: 100,
        media_in_bytes: 17200,
        media_out_packets: 98,
        media_out_bytes: 16856,
        media_lost: 1,
        media_dropped: 0,
        ..CdrMedia::default()
    };
    let video = CdrMedia {
        media_in_packets: 10,
        media_in_bytes: 9000,
        media_dropped: 3,
        media_dropped_no_peer: 1,
        media_dropped_strict_source: 2,
        ..CdrMedia::default()
    };
    h.write(Write::AddCdrMedia { uuid: "leg-a".into(), media: audio });
    h.write(Write::AddCdrMedia { uuid: "leg-a".into(), media: video });
    h.write(Write::AddCdrMedia { uuid: "no-such-leg".into(), media: audio });
    let db = h.db_path().to_path_buf();
    h.close();
    let rows = Reader::open(&db).expect("reader").list_cdr(10).expect("cdr");
    let a = rows.iter().find(|r| r.uuid == "leg-a").unwrap();
    let b = rows.iter().find(|r| r.uuid == "leg-b").unwrap();
    let sum = CdrMedia {
        media_in_packets: 110,
        media_in_bytes: 26200,
        media_out_packets: 98,
        media_out_bytes: 16856,
        media_lost: 1,
        media_dropped: 3,
        media_dropped_no_peer: 1,
        media_dropped_strict_source: 2,
        media_dropped_malformed: 0,
        media_dropped_loop: 0,
    };
    assert_eq!(a.media, Some(sum));
    assert_eq!(b.media, None, "no media through the media plane: NULL");
    assert_eq!(rows.len(), 2);
}

#[test]
fn live_rows_of_a_version_4_database_survive_migration_5() {
    let (tmp, db, mut conn) = bare_database("migrate-v4-live");
    schema::migrate(&mut conn, &db, &schema::MIGRATIONS[..4]).expect("v4");
    conn.execute_batch(
        "INSERT INTO channels (uuid, direction, state, caller_id_name, caller_id_number, destination_number, \
         context, created_at, answered_at, call_uuid) \
         VALUES ('chan-1', 'inbound', 'CS_INIT', 'Alice', '1000', '1001', 'default', 500, NULL, NULL); \
         INSERT INTO calls (uuid, a_leg_uuid, b_leg_uuid, created_at, media_sessions) \
         VALUES ('call-1', 'chan-1', 'chan-2', 501, '7 8');",
    )
    .expect("version 4 rows");
    drop(conn);
    let (h, loaded) = Storage::open(tmp.path()).expect("open migrates to the latest");
    h.close();
    assert_eq!(schema_versions(&db), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(loaded.live_channels, vec![channel("chan-1", 500)]);
    let call = CallRow {
        uuid: "call-1".into(),
        a_leg_uuid: "chan-1".into(),
        b_leg_uuid: "chan-2".into(),
        created_at: 501,
        media_sessions: "7 8".into(),
    };
    assert_eq!(loaded.calls, vec![call]);
    let without_rowid: i64 = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('channels', 'calls', 'sip_dialogs') \
             AND sql LIKE '%WITHOUT ROWID%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(without_rowid, 3);
}
