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
        let mut prev = invitation_ledger::ledger::hash::GENESIS;
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
            hash: invitation_ledger::ledger::hash::GENESIS,
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
                &prev.0[..],
                &h.0[..]
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

    // when the backup is restored
    restore(&backup, &db);
    let app = restart(dir, &db).await;
    // then another webhook takes seq 3, and e2, which this ledger no longer
    // holds, is new again, while what it holds is a duplicate
    assert_eq!(deliver(&app, "e7").await, accepted(3));
    assert_eq!(deliver(&app, "e2").await, accepted(4));
    assert_eq!(deliver(&app, "e7").await, duplicate(3));
    assert_eq!(deliver(&app, "e0").await, duplicate(1));
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
async fn verify_names_two_events_with_the_same_key() {
    // given a ledger where an event was added by hand under a key already
    // used, chained properly, by a forger who dropped the ledger's unique
    // index of keys first
    let (_dir, db) = ledger_with_events(2).await;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP INDEX events_by_key").unwrap();
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
                &copy.prev_hash.0[..],
                &copy.hash.0[..]
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
    // and the ledger keeps its keys unique and its streams indexed itself
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut indexes: Vec<(String, i64)> = conn
        .prepare("SELECT name, \"unique\" FROM pragma_index_list('events')")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    indexes.sort();
    assert_eq!(indexes, vec![("events_by_key".to_owned(), 1), ("events_by_stream".to_owned(), 0)]);
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0)).unwrap(), 5);
}

#[tokio::test]
async fn a_ledger_holding_a_key_twice_is_refused_at_start_naming_the_key_and_its_seqs() {
    // given a ledger of schema 4 (keys not unique in the ledger) to which
    // a version trusting a damaged index appended a webhook a second time
    let (_dir, db) = ledger_with_events(2).await;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP INDEX events_by_key; DROP INDEX events_by_stream; PRAGMA user_version = 4;").unwrap();
        let first = &invitation_ledger::ledger::read_after(&conn, 0, 10).unwrap()[..];
        let mut copy = first[0].clone();
        copy.seq = 3;
        copy.prev_hash = first[1].hash;
        copy.hash = copy.chain_hash(&copy.prev_hash);
        conn.execute(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (3, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                copy.event_key,
                copy.kind,
                copy.stream,
                copy.recorded_at,
                copy.body,
                copy.signature,
                &copy.prev_hash.0[..],
                &copy.hash.0[..]
            ],
        )
        .unwrap();
    }
    // when the service starts on it
    let out = run(&["serve"], &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]);
    // then it stops with one sentence naming the key and both seqs, and the
    // ledger is left as it was
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than once (seq 1, 3)") && err.contains("lightspark:e0:"), "{err}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0)).unwrap(), 4);
}

// ---------------------------------------------------------------------------
// A dedupe index file beside the ledger, as versions with schema 4 kept one
// (`<ledger>-index`): whatever it says, the ledger alone decides whether a
// key is held. Planted by hand, so these tests say the same of a file a
// crash, a restore or an older version left behind.

/// `<ledger>-index`, with the tables schema 4 kept there.
fn planted_index(db: &std::path::Path, keys: &[(String, u64)]) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-index");
    let file = std::path::PathBuf::from(name);
    let _ = std::fs::remove_file(&file);
    let ledger = rusqlite::Connection::open(db).unwrap();
    let (seq, hash): (i64, Vec<u8>) = ledger
        .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "CREATE TABLE index_meta (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL, last_hash BLOB, boot_id TEXT);
         CREATE TABLE event_keys (event_key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .unwrap();
    // It claims to cover the ledger as it is.
    conn.execute("INSERT INTO index_meta (id, last_seq, last_hash) VALUES (1, ?1, ?2)", rusqlite::params![seq, hash])
        .unwrap();
    for (key, seq) in keys {
        conn.execute("INSERT INTO event_keys (event_key, seq) VALUES (?1, ?2)", rusqlite::params![key, *seq as i64])
            .unwrap();
    }
    file
}

/// The event key Lightspark's webhook `body` is stored under.
fn key_of(body: &str) -> String {
    invitation_ledger::lightspark::webhook::recognise(body.as_bytes()).unwrap().event_key.to_string()
}

/// Posts `body` to the real service: status and JSON answer.
fn deliver_to(service: &ServeProcess, client: &reqwest::blocking::Client, body: String) -> (u16, serde_json::Value) {
    let resp = post_signed_blocking(client, &service.url("/webhooks/lightspark"), body);
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn an_index_claiming_a_key_the_ledger_does_not_hold_makes_no_webhook_a_duplicate() {
    // Given a ledger of one webhook, beside an index that also claims the
    // key of a webhook never delivered
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let client = reqwest::blocking::Client::new();
    let service = ServeProcess::start(&db, &[]);
    assert_eq!(deliver_to(&service, &client, claimed_body("e1", "Inv:1")).1["seq"], 1);
    service.kill();
    let never = claimed_body("e2", "Inv:2");
    planted_index(&db, &[(key_of(&claimed_body("e1", "Inv:1")), 1), (key_of(&never), 1)]);

    // When that webhook arrives
    let service = ServeProcess::start(&db, &[]);
    let (status, answer) = deliver_to(&service, &client, never);

    // Then it is stored, as new
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["seq"].as_u64()), (Some("accepted"), Some(2)), "{answer}");
    service.kill();
    assert_eq!(ledger_len(&db), 2);
    assert!(verify(&db).status.success(), "{}", String::from_utf8_lossy(&verify(&db).stdout));
}

#[test]
fn an_index_lacking_keys_stores_no_webhook_twice() {
    // Given a ledger of two webhooks, beside an index that covers its head
    // but holds none of their keys
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let client = reqwest::blocking::Client::new();
    let service = ServeProcess::start(&db, &[]);
    for n in 1..=2 {
        assert_eq!(deliver_to(&service, &client, claimed_body(&format!("e{n}"), "Inv:1")).1["seq"], n);
    }
    service.kill();
    planted_index(&db, &[]);

    // When both are delivered again
    let service = ServeProcess::start(&db, &[]);
    let again: Vec<_> =
        (1..=2).map(|n| deliver_to(&service, &client, claimed_body(&format!("e{n}"), "Inv:1"))).collect();

    // Then each is a duplicate of its first delivery, and the ledger still verifies
    for (n, (status, answer)) in (1..=2u64).zip(&again) {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!((answer["status"].as_str(), answer["seq"].as_u64()), (Some("duplicate"), Some(n)), "{answer}");
    }
    service.kill();
    assert_eq!(ledger_len(&db), 2);
    let out = verify(&db);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_index_with_a_zeroed_page_loses_nothing_and_the_service_stays_ready() {
    // Given a ledger of 300 webhooks, beside an index of their keys with
    // one page in its middle overwritten with zeros
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let client = reqwest::blocking::Client::new();
    let body = |n: u32| claimed_body(&format!("e{n}"), &format!("Inv:{n}"));
    let service = ServeProcess::start(&db, &[]);
    for n in 1..=300 {
        assert_eq!(deliver_to(&service, &client, body(n)).0, 200);
    }
    service.kill();
    let keys: Vec<(String, u64)> = (1..=300).map(|n| (key_of(&body(n)), u64::from(n))).collect();
    let index = planted_index(&db, &keys);
    let mut bytes = std::fs::read(&index).unwrap();
    assert!(bytes.len() >= 4 * 4096, "an index of several pages: {} bytes", bytes.len());
    bytes[2 * 4096..3 * 4096].fill(0);
    std::fs::write(&index, bytes).unwrap();

    // When every webhook is delivered again, and ten new ones
    let service = ServeProcess::start(&db, &[]);
    let again: Vec<_> = (1..=310).map(|n| deliver_to(&service, &client, body(n))).collect();

    // Then every one is answered 200, the old ones as duplicates of
    // themselves, the new ones stored once; the service says it is ready
    for (n, (status, answer)) in (1..=310u64).zip(&again) {
        assert_eq!(*status, 200, "webhook {n}: {answer}");
        let expected = if n <= 300 { "duplicate" } else { "accepted" };
        assert_eq!((answer["status"].as_str(), answer["seq"].as_u64()), (Some(expected), Some(n)), "{answer}");
    }
    assert_eq!(client.get(service.url("/readyz")).send().unwrap().status(), 200);
    service.kill();
    assert_eq!(ledger_len(&db), 310);
    let out = verify(&db);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
