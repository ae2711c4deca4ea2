//! A full disk, with the real binary on a real small file system: the
//! answer to a webhook is decided by the ledger commit alone (200: in the
//! ledger; 503: not in it), and once space returns everything acknowledged
//! becomes readable and every due payment goes out, with no new webhook
//! and no restart. A start on a full disk waits instead of exiting.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{run, ServeProcess};
use crate::support::disk::{fill_leaving, Tmpfs};
use crate::support::fake_platform::FakePlatform;
use crate::support::{ledger_rows, post_signed_to, InvitationFixture, SECRET};

/// Settings for a service that pays through `payments` promptly.
fn paying(payments: &FakePlatform) -> Vec<(&'static str, String)> {
    vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("RECONCILE_INTERVAL_MS", "200".to_owned()),
        ("RETRY_BASE_MS", "50".to_owned()),
        ("RETRY_MAX_MS", "500".to_owned()),
        ("REQUEST_TIMEOUT_MS", "2000".to_owned()),
    ]
}

/// A claimed invitation with an amount, and its webhook.
fn claim(id: &str) -> (InvitationFixture, String) {
    let mut inv = InvitationFixture::claimed(id);
    // Only the payment is owed (no incentive is configured anyway).
    inv.incentives_status = "PENDING".into();
    let body = inv.webhook(&format!("evt-{id}"));
    (inv, body)
}

/// Posts the claims of `ids` at once; each id's status and answer.
async fn post_all(service: &ServeProcess, ids: &[String]) -> Vec<(String, u16, Value, Option<String>)> {
    let mut posts = tokio::task::JoinSet::new();
    for id in ids {
        let url = service.url("/webhooks/lightspark");
        let id = id.clone();
        posts.spawn(async move {
            let client = reqwest::Client::new();
            let resp = post_signed_to(&client, &url, claim(&id).1).await;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (id, status, resp.json().await.unwrap_or(Value::Null), retry_after)
        });
    }
    posts.join_all().await
}

/// The invitations whose claim the ledger holds.
fn stored_claims(db: &Path) -> BTreeSet<String> {
    ledger_rows(db)
        .into_iter()
        .filter(|r| r.2 == "webhook.received")
        .map(|r| r.1.strip_prefix("lightspark:evt-").unwrap().rsplit_once(':').unwrap().0.to_owned())
        .collect()
}

/// Waits until every invitation of `ids` reads as paid, never reading 404
/// for one of them on the way; how long it took.
async fn all_readable_and_paid(
    service: &ServeProcess,
    folder: &Path,
    ids: &BTreeSet<String>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::new();
    let mut waiting: BTreeSet<String> = ids.clone();
    while !waiting.is_empty() {
        if started.elapsed() >= within {
            // What the service says of the first one left, and of itself.
            let first = waiting.iter().next().unwrap();
            let url = service.url(&format!("/v1/invitations/{}", first.replace(':', "%3A")));
            let resp = client.get(url).send().await.unwrap();
            let (status, body) = (resp.status(), resp.text().await.unwrap_or_default());
            let ready = client.get(service.url("/readyz")).send().await.unwrap();
            let (ready_status, ready_body) = (ready.status(), ready.text().await.unwrap_or_default());
            panic!(
                "still not readable and paid after {within:?}: {waiting:?}\n{first}: {status} {body}\n/readyz: {ready_status} {ready_body}\nthe ledger's folder: {}",
                space_taken(service, folder)
            );
        }
        for id in waiting.clone() {
            let url = service.url(&format!("/v1/invitations/{}", id.replace(':', "%3A")));
            let resp = client.get(url).send().await.unwrap();
            let status = resp.status().as_u16();
            assert_ne!(status, 404, "{id} was acknowledged and must never read as unknown");
            if status == 503 {
                assert!(resp.headers().contains_key("retry-after"), "a 503 says when to ask again");
                continue;
            }
            let v: Value = resp.json().await.unwrap();
            if status == 200 && v["payout"]["state"] == "succeeded" {
                waiting.remove(&id);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// What takes the space of `folder`: its files with their sizes, and any
/// deleted file the service still holds open.
fn space_taken(service: &ServeProcess, folder: &Path) -> String {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(format!("{} {len}", entry.file_name().to_string_lossy()));
    }
    let fds = format!("/proc/{}/fd", service.child.id());
    for entry in std::fs::read_dir(fds).into_iter().flatten().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if target.to_string_lossy().contains("(deleted)") {
                out.push(format!("open but deleted: {}", target.display()));
            }
        }
    }
    out.join(", ")
}

fn assert_ledger_checks(db: &Path) {
    let env = [("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)];
    for args in [&["verify"][..], &["rebuild", "--check"][..]] {
        let out = run(args, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_every_level_of_free_space_a_200_is_stored_a_503_is_not_and_all_is_paid_once_space_returns() {
    // Given the real service on a 24 MiB file system, paying claims
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "24m");
    let db = dir.path().join("ledger.db");
    let filler = dir.path().join("filler");
    let payments = FakePlatform::start().await;
    let service = ServeProcess::spawn(db.clone(), paying(&payments)).await;
    let mut acknowledged = BTreeSet::new();
    let warm: Vec<String> = (0..10).map(|n| format!("UmaInvitation:warm-{n}")).collect();
    for (id, status, answer, _) in post_all(&service, &warm).await {
        assert_eq!(status, 200, "{answer}");
        acknowledged.insert(id);
    }

    let mut refusals = 0;
    for leave in [0u64, 16 << 10, 64 << 10, 256 << 10, 1 << 20] {
        // When the disk is filled but for `leave` bytes and claims arrive at once
        fill_leaving(&filler, leave);
        // With little left, up to ten rounds of 40 until one is refused
        // (SQLite may still write a while, into space its log already has)
        let mut answers = Vec::new();
        for round in 0..if leave <= 64 << 10 { 10 } else { 1 } {
            let ids: Vec<String> = (0..40).map(|n| format!("UmaInvitation:left-{leave}-{round}-{n}")).collect();
            answers.extend(post_all(&service, &ids).await);
            if answers.iter().any(|(_, status, ..)| *status == 503) {
                break;
            }
        }
        let posted = answers.len();
        let mut refused = BTreeSet::new();
        let before = acknowledged.clone();
        for (id, status, answer, retry_after) in answers {
            match status {
                200 => {
                    assert_eq!(answer["status"], "accepted", "{answer}");
                    acknowledged.insert(id);
                }
                503 => {
                    assert_eq!(answer["error"], "ledger_unavailable", "{answer}");
                    assert!(retry_after.is_some(), "a 503 says when to retry");
                    refused.insert(id);
                }
                other => panic!("{id}: {other} {answer}"),
            }
        }
        // Then the ledger holds exactly what was acknowledged
        let stored = stored_claims(&db);
        assert_eq!(stored, acknowledged, "{leave} bytes left: stored and acknowledged differ");
        eprintln!("{leave} bytes left: {} answered 200, {} answered 503", posted - refused.len(), refused.len());
        refusals += refused.len();

        // When space returns, with no new webhook
        std::fs::remove_file(&filler).unwrap();
        // Then everything acknowledged becomes readable (never 404) and paid, once
        let new: BTreeSet<String> = acknowledged.difference(&before).cloned().collect();
        let took = all_readable_and_paid(&service, db.parent().unwrap(), &new, Duration::from_secs(30)).await;
        eprintln!("{leave} bytes left: the {} acknowledged readable and paid {took:?} after space returned", new.len());
        let paid = payments.executed_by_invitation();
        for id in &new {
            assert_eq!(paid.get(id), Some(&1), "{id} paid {:?} times", paid.get(id));
        }
        for id in &refused {
            assert_eq!(paid.get(id), None, "{id} was refused and must not be paid");
        }
        // And a refused webhook, sent again, is new; an acknowledged one a duplicate
        let again: Vec<String> = refused.iter().take(3).chain(acknowledged.iter().take(1)).cloned().collect();
        for (id, status, answer, _) in post_all(&service, &again).await {
            assert_eq!(status, 200, "{answer}");
            let expected = if refused.contains(&id) { "accepted" } else { "duplicate" };
            assert_eq!(answer["status"], expected, "{id}: {answer}");
            acknowledged.insert(id);
        }
    }
    // And in the end every acknowledged claim reads as paid, once
    all_readable_and_paid(&service, db.parent().unwrap(), &acknowledged, Duration::from_secs(60)).await;
    let paid = payments.executed_by_invitation();
    assert!(acknowledged.iter().all(|id| paid.get(id) == Some(&1)) && paid.len() == acknowledged.len(), "{paid:?}");
    service.kill_async().await;
    assert_eq!(stored_claims(&db), acknowledged);
    assert_ledger_checks(&db);
    // And the full disk did refuse some: the 503 path was taken
    assert!(refusals > 0, "no webhook was refused: the disk was never full enough");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_started_on_a_full_disk_waits_and_becomes_ready_by_itself_when_space_returns() {
    // Given a ledger of claims paid and then a stopped service, its derived
    // files gone, and its disk full
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "16m");
    let db = dir.path().join("ledger.db");
    let payments = FakePlatform::start().await;
    let service = ServeProcess::spawn(db.clone(), paying(&payments)).await;
    let ids: Vec<String> = (0..5).map(|n| format!("UmaInvitation:before-{n}")).collect();
    for (_, status, answer, _) in post_all(&service, &ids).await {
        assert_eq!(status, 200, "{answer}");
    }
    let acknowledged: BTreeSet<String> = ids.iter().cloned().collect();
    all_readable_and_paid(&service, db.parent().unwrap(), &acknowledged, Duration::from_secs(20)).await;
    service.kill_async().await;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        if f.to_string_lossy().contains("-projections") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let filler = dir.path().join("filler");
    fill_leaving(&filler, 0);

    // When the service starts on it
    let service = ServeProcess::spawn(db.clone(), paying(&payments)).await;
    let client = reqwest::Client::new();

    // Then it runs and waits: alive, not ready, and a webhook is either
    // refused with a retry time and not stored, or stored (SQLite may reuse
    // its log's space for a small commit) and acknowledged
    assert_eq!(client.get(service.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(service.url("/readyz")).send().await.unwrap().status(), 503);
    let mut acknowledged = acknowledged;
    let while_full: Vec<String> = (0..5).map(|n| format!("UmaInvitation:while-full-{n}")).collect();
    for (id, status, answer, retry_after) in post_all(&service, &while_full).await {
        match status {
            200 => assert!(acknowledged.insert(id)),
            503 => assert!(retry_after.is_some(), "{answer}"),
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(stored_claims(&db), acknowledged);
    eprintln!("while full at start: {} of 5 acknowledged", acknowledged.len() - 5);

    // When space returns
    std::fs::remove_file(&filler).unwrap();

    // Then it becomes ready by itself, what it held reads again, and new
    // claims are stored and paid
    let started = Instant::now();
    while client.get(service.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "not ready 20 s after space returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, status, answer, _) = post_all(&service, &["UmaInvitation:after".to_owned()]).await.pop().unwrap();
    assert_eq!(status, 200, "{answer}");
    let mut all = acknowledged.clone();
    all.insert("UmaInvitation:after".to_owned());
    all_readable_and_paid(&service, db.parent().unwrap(), &all, Duration::from_secs(20)).await;
    let paid = payments.executed_by_invitation();
    assert!(all.iter().all(|id| paid.get(id) == Some(&1)) && paid.len() == all.len(), "{paid:?}");
    service.kill_async().await;
    assert_ledger_checks(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_while_the_disk_is_full_loses_nothing_acknowledged_and_pays_each_claim_once() {
    // Given the real service on a small file system, filled but for a little
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "16m");
    let db = dir.path().join("ledger.db");
    let filler = dir.path().join("filler");
    let payments = FakePlatform::start().await;
    let service = ServeProcess::spawn(db.clone(), paying(&payments)).await;
    fill_leaving(&filler, 32 << 10);

    // When claims arrive, and the service is SIGKILLed while the disk is full
    let ids: Vec<String> = (0..40).map(|n| format!("UmaInvitation:killed-{n}")).collect();
    let answers = post_all(&service, &ids).await;
    service.kill_async().await;
    let acknowledged: BTreeSet<String> =
        answers.iter().filter(|(_, status, _, _)| *status == 200).map(|(id, ..)| id.clone()).collect();
    eprintln!("{} of 40 acknowledged before the kill", acknowledged.len());

    // Then, space back and the service started again, exactly what was
    // acknowledged is stored, and each of it is paid once
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(stored_claims(&db), acknowledged);
    let service = ServeProcess::spawn(db.clone(), paying(&payments)).await;
    all_readable_and_paid(&service, db.parent().unwrap(), &acknowledged, Duration::from_secs(30)).await;
    let paid = payments.executed_by_invitation();
    assert!(acknowledged.iter().all(|id| paid.get(id) == Some(&1)), "{paid:?}");
    assert_eq!(paid.len(), acknowledged.len(), "{paid:?}");
    service.kill_async().await;
    assert_ledger_checks(&db);
}

#[test]
fn a_command_that_fails_for_lack_of_space_names_the_full_disk_and_the_file() {
    // Given a ledger on a full disk, its projections gone
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "8m");
    let db = dir.path().join("ledger.db");
    let service = ServeProcess::start(&db, &[]);
    let client = reqwest::blocking::Client::new();
    for n in 0..3 {
        let body = claim(&format!("UmaInvitation:c-{n}")).1;
        assert_eq!(
            crate::support::post_signed_blocking(&client, &service.url("/webhooks/lightspark"), body).status(),
            200
        );
    }
    service.kill();
    // (A rebuild first: it folds the killed service's log into the ledger,
    // whose space the full disk would otherwise give back.)
    assert!(run(&["rebuild"], &[("LEDGER_DB", db.to_str().unwrap())]).status.success());
    std::fs::remove_file(dir.path().join("ledger.db-projections")).unwrap();
    fill_leaving(&dir.path().join("filler"), 0);

    // When a command that must write runs
    let out = run(&["rebuild"], &[("LEDGER_DB", db.to_str().unwrap())]);

    // Then it fails with one line naming the full disk and the file
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full") && err.contains(dir.path().to_str().unwrap()), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
