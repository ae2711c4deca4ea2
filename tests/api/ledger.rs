//! The ledger survives restarts, refuses changes, and `verify` catches
//! tampering — checked with the real binary where the command matters.

use crate::support::binary::{run, ServeProcess};
use crate::support::{claimed_body, json, ledger_len, post_signed_blocking, serve_args, signature_of, TestApp, SECRET};

async fn ledger_with_events(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let app = TestApp::spawn().await;
    for i in 0..n {
        let resp = app.post_signed(&claimed_body(&format!("e{i}"), &format!("Inv:{i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    let db = app.db.clone();
    (app.stop().await, db)
}

fn verify(db: &std::path::Path) -> std::process::Output {
    run(&["verify"], &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)])
}

#[tokio::test]
async fn restarting_on_the_same_file_keeps_every_event_and_verify_passes() {
    let (dir, db) = ledger_with_events(20).await;
    let mut args = serve_args(&db);
    args.listen_addr = "127.0.0.1:0".into();
    let app = TestApp::spawn_with(dir, args).await;
    assert_eq!(ledger_len(&app.db), 20);
    let resp = app.post_signed(&claimed_body("after-restart", "Inv:x")).await;
    assert_eq!(json(resp).await["seq"], 21);
    let dir = app.stop().await;
    let out = verify(&db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ledger intact: events=21 webhooks=21"), "{stdout}");
    drop(dir);
}

#[tokio::test]
async fn update_and_delete_through_sql_fail() {
    let (_dir, db) = ledger_with_events(2).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let upd = conn.execute("UPDATE events SET kind = 'x' WHERE seq = 1", []);
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = conn.execute("DELETE FROM events WHERE seq = 2", []);
    assert!(del.unwrap_err().to_string().contains("append-only"));
    assert_eq!(ledger_len(&db), 2);
}

#[tokio::test]
async fn an_altered_byte_makes_verify_fail_naming_its_seq() {
    let (_dir, db) = ledger_with_events(5).await;
    assert!(verify(&db).status.success());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
        let body: Vec<u8> = conn.query_row("SELECT body FROM events WHERE seq = 3", [], |r| r.get(0)).unwrap();
        let mut altered = body.clone();
        let at = altered.iter().position(|b| *b == b'I').unwrap();
        altered[at] = b'J';
        conn.execute("UPDATE events SET body = ?1 WHERE seq = 3", [altered]).unwrap();
    }
    let out = verify(&db);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 3"), "{err}");
}

#[tokio::test]
async fn a_rewritten_chain_still_fails_on_the_webhook_signature() {
    let (_dir, db) = ledger_with_events(3).await;
    // Forge event 2's body *and* recompute every hash after it: only the
    // stored signature can tell.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
    let forged = claimed_body("e1", "Inv:attacker");
    conn.execute("UPDATE events SET body = ?1 WHERE seq = 2", [forged.as_bytes()]).unwrap();
    crate::support::rechain(&conn);
    let out = verify(&db);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 2") && err.contains("signature"), "{err}");
}

#[tokio::test]
async fn a_second_service_on_the_same_database_is_refused() {
    let app = TestApp::spawn().await;
    let config = serve_args(&app.db).validate().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = invitation_ledger::serve(listener, config, async {}).await.unwrap_err();
    assert!(format!("{err:#}").contains("holds the database"), "{err:#}");
}

#[test]
fn verify_on_a_missing_ledger_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(&dir.path().join("absent.db"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no ledger"));
}

#[test]
fn serve_without_a_signing_key_stops_with_a_sentence_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let out = run(&["serve"], &[("LEDGER_DB", db.to_str().unwrap()), ("LISTEN_ADDR", "127.0.0.1:0")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LIGHTSPARK_WEBHOOK_SIGNING_KEY"), "{err}");
}

#[test]
fn serve_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let out = run(
        &["serve"],
        &[
            ("LEDGER_DB", db.to_str().unwrap()),
            ("LISTEN_ADDR", "0.0.0.0:0"),
            ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("READ_API_TOKEN"));
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 999).unwrap();
    let err = invitation_ledger::ledger::open(&db).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn migrations_run_once_and_re_running_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    drop(invitation_ledger::ledger::open(&db).unwrap());
    let conn = invitation_ledger::ledger::open(&db).unwrap();
    let v: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, invitation_ledger::ledger::SCHEMA_VERSION);
}

#[test]
fn serve_creates_the_ledger_folder_on_a_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("nested").join("ledger.db");
    let server = ServeProcess::start(&db, &[]);
    let body = claimed_body("first-run", "Inv:first");
    let resp = post_signed_blocking(&reqwest::blocking::Client::new(), &server.url("/webhooks/lightspark"), body);
    assert_eq!(resp.status(), 200);
    server.kill();
    assert_eq!(ledger_len(&db), 1);
}

/// `.cargo/config.toml` builds the bundled SQLite without
/// SQLITE_ENABLE_MEMORY_MANAGEMENT, whose global page-cache mutex every
/// connection would otherwise queue on; this fails if that setting stops
/// reaching the build.
#[test]
fn the_bundled_sqlite_has_no_global_page_cache_mutex() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(options.iter().any(|o| o.starts_with("THREADSAFE=1")), "{options:?}");
    assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
}

/// A consistent copy of the ledger, its WAL included (a file copy of
/// `ledger.db` alone may miss the last commits).
fn copy_ledger(from: &std::path::Path, to: &std::path::Path) {
    let conn = rusqlite::Connection::open(from).unwrap();
    conn.execute("VACUUM INTO ?1", [to.to_str().unwrap()]).unwrap();
}

/// The head a running service publishes, for an operator to keep elsewhere.
async fn published_head(app: &TestApp) -> (u64, String) {
    let (status, head) = app.get_json("/v1/ledger/head").await;
    assert_eq!(status, 200, "{head}");
    assert!(head["recorded_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{head}");
    (head["seq"].as_u64().unwrap(), head["hash"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_anchor_kept_elsewhere_catches_a_truncated_or_re_chained_ledger() {
    // given a ledger of five webhooks and two internal events, and the head
    // the service published (an operator's anchor)
    let app = TestApp::spawn().await;
    for i in 0..5 {
        assert_eq!(app.post_signed(&claimed_body(&format!("e{i}"), &format!("Inv:{i}"))).await.status(), 200);
    }
    let (seq, hash) = published_head(&app).await;
    assert_eq!(seq, 5);
    let db = app.db.clone();
    let dir = app.stop().await;
    let expect = format!("{seq}:{hash}");
    let verify_expecting = |db: &std::path::Path, expect: &str| {
        run(
            &["verify", "--expect", expect],
            &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)],
        )
    };
    // the intact ledger holds the anchor
    let out = verify_expecting(&db, &expect);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("anchor seq {seq} matches")));

    // when the last rows are cut off, the chain still verifies...
    let truncated = dir.path().join("truncated.db");
    copy_ledger(&db, &truncated);
    {
        let conn = rusqlite::Connection::open(&truncated).unwrap();
        conn.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq > 3;").unwrap();
    }
    assert!(verify(&truncated).status.success(), "a truncated chain is still a chain");
    // ...but not the anchor
    let out = verify_expecting(&truncated, &expect);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 5") && err.contains("truncated"), "{err}");

    // when an event is rewritten and the chain recomputed after it
    let rechained = dir.path().join("rechained.db");
    copy_ledger(&db, &rechained);
    {
        let conn = rusqlite::Connection::open(&rechained).unwrap();
        conn.execute_batch(
            "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq > 4",
        )
        .unwrap();
        // one more event, chained properly, where the fifth was
        let mut prev = [0u8; 32];
        for e in invitation_ledger::ledger::read_after(&conn, 0, 100).unwrap() {
            prev = e.hash;
        }
        let body = claimed_body("e4", "Inv:other");
        let signature = signature_of(body.as_bytes());
        let replacement = invitation_ledger::ledger::LedgerEvent {
            seq: 5,
            event_key: "lightspark:e4:replaced".into(),
            kind: "webhook.received".into(),
            stream: Some("Inv:other".into()),
            recorded_at: "2026-11-30T00:00:00.000000Z".into(),
            body: body.into_bytes(),
            signature: Some(signature),
            prev_hash: prev,
            hash: [0; 32],
        };
        let h = replacement.chain_hash(&prev);
        conn.execute(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (5, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                replacement.event_key,
                replacement.kind,
                replacement.stream,
                replacement.recorded_at,
                replacement.body,
                replacement.signature,
                &prev[..],
                &h[..]
            ],
        )
        .unwrap();
    }
    // then the chain and the signatures verify, and only the anchor tells
    assert!(verify(&rechained).status.success(), "{}", String::from_utf8_lossy(&verify(&rechained).stderr));
    let out = verify_expecting(&rechained, &expect);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 5") && err.contains(&hash), "{err}");
}

/// The writer's dedupe index, a file beside the ledger derived from it.
use invitation_ledger::ledger::index::path as index_file;

/// The service again, on the ledger in `dir`.
async fn restart(dir: tempfile::TempDir, db: &std::path::Path) -> TestApp {
    TestApp::spawn_with(dir, serve_args(db)).await
}

/// Posts webhook `event_id` of invitation `Inv:{event_id}` and returns
/// the answer's `status` and `seq`.
async fn deliver(app: &TestApp, event_id: &str) -> (String, u64) {
    let resp = app.post_signed(&claimed_body(event_id, &format!("Inv:{event_id}"))).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    (v["status"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap())
}

fn accepted(seq: u64) -> (String, u64) {
    ("accepted".into(), seq)
}

fn duplicate(seq: u64) -> (String, u64) {
    ("duplicate".into(), seq)
}

#[tokio::test]
async fn a_duplicate_is_recognised_when_the_dedupe_index_is_behind_missing_or_unreadable() {
    // given a ledger of two webhooks, and a copy of its index then
    let app = TestApp::spawn().await;
    let db = app.db.clone();
    assert_eq!(deliver(&app, "e0").await, accepted(1));
    assert_eq!(deliver(&app, "e1").await, accepted(2));
    let dir = app.stop().await;
    let older = dir.path().join("older-index");
    std::fs::copy(index_file(&db), &older).expect("the writer keeps its index beside the ledger");
    let app = restart(dir, &db).await;
    assert_eq!(deliver(&app, "e2").await, accepted(3));
    let dir = app.stop().await;

    // when the index is an older copy, missing the last webhook
    std::fs::copy(&older, index_file(&db)).unwrap();
    let app = restart(dir, &db).await;
    // then the webhooks it lacks are still duplicates
    assert_eq!(deliver(&app, "e2").await, duplicate(3));
    assert_eq!(deliver(&app, "e0").await, duplicate(1));
    let dir = app.stop().await;

    // when the index is gone
    std::fs::remove_file(index_file(&db)).unwrap();
    let app = restart(dir, &db).await;
    assert_eq!(deliver(&app, "e1").await, duplicate(2));
    let dir = app.stop().await;

    // when the index is not a database at all
    std::fs::write(index_file(&db), vec![0x5a; 8192]).unwrap();
    let app = restart(dir, &db).await;
    assert_eq!(deliver(&app, "e2").await, duplicate(3));
    assert_eq!(deliver(&app, "e3").await, accepted(4));
    let _dir = app.stop().await;
    assert_eq!(ledger_len(&db), 4);
    assert!(verify(&db).status.success());
}

#[tokio::test]
async fn a_restored_ledger_is_not_deduplicated_against_events_it_no_longer_holds() {
    // given a backup of a ledger of two webhooks, and a third webhook after it
    let app = TestApp::spawn().await;
    let db = app.db.clone();
    assert_eq!(deliver(&app, "e0").await, accepted(1));
    assert_eq!(deliver(&app, "e1").await, accepted(2));
    let backup = db.with_file_name("backup.db");
    copy_ledger(&db, &backup);
    assert_eq!(deliver(&app, "e2").await, accepted(3));
    let dir = app.stop().await;
    let index_with_e2 = dir.path().join("index-with-e2");
    std::fs::copy(index_file(&db), &index_with_e2).unwrap();

    // when the backup is restored beside the newer index
    restore(&backup, &db);
    let app = restart(dir, &db).await;
    // then another webhook takes seq 3, the index's e2 notwithstanding
    assert_eq!(deliver(&app, "e7").await, accepted(3));
    let dir = app.stop().await;

    // when an index of the same length but another history comes back
    std::fs::copy(&index_with_e2, index_file(&db)).unwrap();
    let app = restart(dir, &db).await;
    // then e2, which this ledger never held, is new, and e7 is not
    assert_eq!(deliver(&app, "e2").await, accepted(4));
    assert_eq!(deliver(&app, "e7").await, duplicate(3));
    let _dir = app.stop().await;
    assert_eq!(ledger_len(&db), 4);
    assert!(verify(&db).status.success());
}

/// Puts `backup` in place of the ledger `db`, as an operator restores one.
fn restore(backup: &std::path::Path, db: &std::path::Path) {
    for suffix in ["-wal", "-shm"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(s));
    }
    std::fs::copy(backup, db).unwrap();
}

#[tokio::test]
async fn an_index_last_written_under_another_boot_is_rebuilt() {
    // given a ledger whose index was written without syncs before a machine
    // crash: it says another boot, and the writes of that boot are lost
    let app = TestApp::spawn().await;
    let db = app.db.clone();
    assert_eq!(deliver(&app, "e0").await, accepted(1));
    assert_eq!(deliver(&app, "e1").await, accepted(2));
    let dir = app.stop().await;
    {
        let conn = rusqlite::Connection::open(index_file(&db)).unwrap();
        let changed = conn
            .execute_batch(
                "UPDATE index_meta SET boot_id = 'a boot before the crash'; DELETE FROM event_keys WHERE seq = 2;",
            )
            .and_then(|()| conn.query_row("SELECT COUNT(*) FROM event_keys", [], |r| r.get::<_, i64>(0)));
        assert_eq!(changed.unwrap(), 1);
    }
    // when the service starts under this boot
    let app = restart(dir, &db).await;
    // then the index is folded again from the ledger
    assert_eq!(deliver(&app, "e1").await, duplicate(2));
    assert_eq!(deliver(&app, "e2").await, accepted(3));
    app.stop().await;
}

#[tokio::test]
async fn verify_names_two_events_with_the_same_key() {
    // given a ledger where an event was added by hand under a key already
    // used, chained properly
    let (_dir, db) = ledger_with_events(2).await;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let first = &invitation_ledger::ledger::read_after(&conn, 0, 10).unwrap()[..];
        let mut copy = first[0].clone();
        copy.seq = 3;
        copy.prev_hash = first[1].hash;
        copy.hash = copy.chain_hash(&copy.prev_hash);
        conn.execute(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                3,
                copy.event_key,
                copy.kind,
                copy.stream,
                copy.recorded_at,
                copy.body,
                copy.signature,
                &copy.prev_hash[..],
                &copy.hash[..]
            ],
        )
        .unwrap();
    }
    // when it is verified, then it fails naming both seqs
    let out = verify(&db);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 3") && err.contains("seq 1") && err.contains("key"), "{err}");
}

#[tokio::test]
async fn a_ledger_of_schema_3_is_migrated_keeping_every_event() {
    // given a ledger written by a binary of schema version 3
    let (dir, written) = ledger_with_events(3).await;
    let db = dir.path().join("v3.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        for sql in [
            include_str!("../../schema/0001_events.sql"),
            include_str!("../../schema/0002_projections.sql"),
            include_str!("../../schema/0003_projections_own_file.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute("ATTACH DATABASE ?1 AS written", [written.to_str().unwrap()]).unwrap();
        conn.execute_batch("INSERT INTO events SELECT * FROM written.events ORDER BY seq").unwrap();
    }
    // when the service starts on it
    let app = restart(dir, &db).await;
    // then its events are kept and still deduplicate, new ones follow
    assert_eq!(deliver(&app, "e4").await, accepted(4));
    let resp = app.post_signed(&claimed_body("e1", "Inv:1")).await;
    assert_eq!(json(resp).await["status"], "duplicate");
    let _dir = app.stop().await;
    assert!(verify(&db).status.success());
    // and the ledger no longer keeps the indexes the dedupe index replaced
    let conn = rusqlite::Connection::open(&db).unwrap();
    let indexes: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexes, 0);
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0)).unwrap(), 4);
}
