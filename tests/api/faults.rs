//! Disk and database faults: while the ledger cannot be written the service
//! says it is not ready and answers webhooks 503 (so Lightspark retries),
//! stores nothing from those requests, and recovers by itself, without a
//! restart, once the database can be written again.
//!
//! Two real faults:
//! - a full disk: the ledger lives on a 4 MiB tmpfs mounted on its folder,
//!   which a filler file fills up; then the filler is deleted. Mounting needs
//!   root (CAP_SYS_ADMIN), which the project's machines and CI have: where
//!   mounting is refused the test fails and says so, it never tests
//!   something else instead;
//! - the write lock held by another connection (an operator's `sqlite3`
//!   shell in a transaction) for longer than the writer's busy timeout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::disk::{fill, Tmpfs};
use crate::support::{assert_verifies, eventually, json, ledger_rows, serve_args, InvitationFixture, TestApp};

/// The event key Lightspark's webhook `body` with `event_id` is stored under.
fn event_key(event_id: &str, body: &[u8]) -> String {
    invitation_ledger::vocab::EventKey::lightspark_webhook(event_id, body).to_string()
}

/// Claims `id` with an event id derived from it; answers status, JSON and
/// the event key the body would be stored under.
async fn post(app: &TestApp, id: &str) -> (u16, Value, String) {
    let body = InvitationFixture::claimed(id).webhook(&format!("evt-{id}"));
    let resp = app.post_signed(&body).await;
    let status = resp.status().as_u16();
    (status, json(resp).await, event_key(&format!("evt-{id}"), body.as_bytes()))
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.client.get(app.url("/readyz")).send().await.expect("readyz answers");
    let status = r.status().as_u16();
    (status, json(r).await)
}

fn webhook_keys(db: &Path) -> BTreeSet<String> {
    ledger_rows(db).into_iter().filter(|r| r.2 == "webhook.received").map(|r| r.1).collect()
}

/// How to break the database and mend it again.
enum Fault {
    /// The ledger's file system, and the filler that fills it.
    DiskFull { filler: PathBuf },
    /// Another connection, holding the write lock once broken.
    Lock { db: PathBuf, holder: Option<rusqlite::Connection> },
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::DiskFull { .. } => "full disk",
            Fault::Lock { .. } => "write lock held by another connection",
        }
    }

    /// How many new webhooks may still be stored once the fault is in
    /// place, before one must be refused. A held lock lets none through. A
    /// full disk may take a few: SQLite rewrites its WAL from the start
    /// after a checkpoint, in space the file already has, so a commit can
    /// succeed on a full disk until the WAL would have to grow; such a 200
    /// is honest, the event is durably stored.
    fn may_still_accept(&self) -> usize {
        match self {
            Fault::DiskFull { .. } => 200,
            Fault::Lock { .. } => 0,
        }
    }

    fn inject(&mut self) {
        match self {
            Fault::DiskFull { filler } => {
                let n = fill(filler);
                eprintln!("filled the tmpfs with {n} bytes");
            }
            Fault::Lock { db, holder } => {
                let conn = rusqlite::Connection::open(&*db).unwrap();
                conn.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");
                *holder = Some(conn);
            }
        }
    }

    fn heal(&mut self) {
        match self {
            Fault::DiskFull { filler } => std::fs::remove_file(filler).expect("remove the filler"),
            Fault::Lock { holder, .. } => {
                let conn = holder.take().expect("the lock is held");
                conn.execute_batch("ROLLBACK").unwrap();
            }
        }
    }
}

/// The scenario both faults run: accepted → broken (not ready; new
/// webhooks are refused with 503 once the fault bites, and exactly the
/// acknowledged ones are stored) → mended (200 and ready again, same
/// process) → exactly the acknowledged webhooks in a ledger that verifies.
async fn unready_while_broken_and_recovered_without_restart(app: TestApp, mut fault: Fault) -> tempfile::TempDir {
    let name = fault.name();
    let mut acknowledged = BTreeSet::new();
    let mut refused = BTreeSet::new();

    let (status, _, key) = post(&app, "Inv:before").await;
    assert_eq!(status, 200);
    acknowledged.insert(key);
    let ready = readyz(&app).await;
    assert_eq!(ready.0, 200, "{}", ready.1);

    fault.inject();

    // Not ready, and new webhooks are refused with the code Lightspark
    // retries on, once the fault bites (at once for the lock, within a few
    // commits for the disk); each one answered 200 meanwhile was stored.
    let ((ready_status, ready), first) = tokio::join!(readyz(&app), post(&app, "Inv:during-0"));
    eprintln!("{name}: /readyz -> {ready_status} {ready}");
    assert_eq!(ready_status, 503, "{name}: {ready}");
    assert_eq!(ready["error"], "not_ready");
    assert!(ready["message"].as_str().is_some_and(|m| !m.is_empty()));
    let mut answer = first;
    let mut n = 0;
    let (refused_id, refused_key) = loop {
        let id = format!("Inv:during-{n}");
        let (status, body, key) = answer;
        match status {
            200 => {
                assert!(
                    n < fault.may_still_accept(),
                    "{name}: {} new webhooks accepted while broken, none refused: {body}",
                    n + 1
                );
                assert_eq!(body["status"], "accepted", "{name}: {body}");
                acknowledged.insert(key);
            }
            503 => {
                eprintln!("{name}: webhook -> {status} {body}, after {n} accepted while broken");
                assert_eq!(body["error"], "ledger_unavailable");
                assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
                refused.insert(key.clone());
                break (id, key);
            }
            other => panic!("{name}: webhook {id} answered {other}: {body}"),
        }
        n += 1;
        answer = post(&app, &format!("Inv:during-{n}")).await;
    };
    if matches!(fault, Fault::DiskFull { .. }) {
        // Cheap to repeat while the disk is full: every answer is a 503 (not
        // stored) or a 200 (stored), and the service stays unready.
        for i in 0..3 {
            let (status, answer, key) = post(&app, &format!("Inv:again-{i}")).await;
            match status {
                200 => acknowledged.insert(key),
                503 => refused.insert(key),
                other => panic!("{name}: webhook answered {other}: {answer}"),
            };
        }
        assert_eq!(readyz(&app).await.0, 503);
    }
    // The health check is about the process, not the disk.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let stored = webhook_keys(&app.db);
    assert_eq!(stored, acknowledged, "{name}: the ledger must hold exactly the acknowledged webhooks while broken");
    assert!(stored.is_disjoint(&refused), "{name}: a refused webhook was stored");

    fault.heal();

    // Ready again, same process.
    eventually("/readyz to answer 200 again", Duration::from_secs(15), || async {
        match readyz(&app).await {
            (200, _) => Ok(()),
            (s, v) => Err(format!("{s} {v}")),
        }
    })
    .await;
    // Lightspark's retry of the refused webhook is accepted as new.
    let (status, answer, key) = post(&app, &refused_id).await;
    eprintln!("{name} mended: retried webhook -> {status} {answer}");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(key, refused_key);
    acknowledged.insert(key);
    let (status, _, key) = post(&app, "Inv:after").await;
    assert_eq!(status, 200);
    acknowledged.insert(key);
    // A webhook stored before the fault is still a duplicate.
    let (status, answer, _) = post(&app, "Inv:before").await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")));

    assert_eq!(webhook_keys(&app.db), acknowledged, "{name}: the ledger must hold exactly the acknowledged webhooks");
    // The projections caught up too, without a restart.
    app.invitation_when(&refused_id, Duration::from_secs(10), |v| v["status"] == "CLAIMED").await;
    assert_verifies(&app.db).await;
    // And it still shuts down cleanly.
    app.stop_promptly().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_service_unready_and_answer_503_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(dir.path(), "4m");
    let db = dir.path().join("ledger.db");
    let filler = dir.path().join("filler");
    let app = TestApp::spawn_with(dir, serve_args(&db)).await;
    let dir = unready_while_broken_and_recovered_without_restart(app, Fault::DiskFull { filler }).await;
    // Unmount before the folder is removed.
    drop(mount);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_connection_makes_the_service_unready_and_answer_503_until_released() {
    let app = TestApp::spawn().await;
    let fault = Fault::Lock { db: app.db.clone(), holder: None };
    unready_while_broken_and_recovered_without_restart(app, fault).await;
}
