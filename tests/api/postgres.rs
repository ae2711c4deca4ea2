//! The ledger in PostgreSQL, with the real binary: the service's whole
//! flow on it, copies between stores with the same head hash, two
//! instances sharing one ledger with one reconciler at a time, a leader
//! killed or stopped mid-payment, and the database restarted under load.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{run_binary, ServeProcess};
use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::postgres::{fresh_database, OwnServer};
use crate::support::{eventually, json_of, post_signed_to, try_post_signed_to, InvitationFixture, SECRET};

/// Settings for an instance on the ledger at `url`, its projections in
/// `dir`, paying through `payments`.
pub(crate) fn instance(dir: &std::path::Path, payments: &FakePlatform) -> Vec<(&'static str, String)> {
    vec![
        ("PROJECTIONS_DIR", dir.display().to_string()),
        ("PAYOUT_URL", payments.url.clone()),
        ("RECONCILE_INTERVAL_MS", "200".to_owned()),
        ("RETRY_BASE_MS", "100".to_owned()),
        ("RETRY_MAX_MS", "500".to_owned()),
        ("REQUEST_TIMEOUT_MS", "5000".to_owned()),
    ]
}

/// Starts `serve` on the PostgreSQL ledger at `url` (`LEDGER_DB` is what
/// `ServeProcess` is given as its ledger).
async fn serve(url: &str, env: Vec<(&'static str, String)>) -> ServeProcess {
    ServeProcess::spawn(std::path::PathBuf::from(url), env).await
}

pub(crate) fn claim(id: &str) -> (InvitationFixture, String) {
    let mut inv = InvitationFixture::claimed(id);
    inv.incentives_status = "PENDING".into();
    let body = inv.webhook(&format!("evt-{id}"));
    (inv, body)
}

async fn projection(service: &ServeProcess, id: &str) -> Result<Value, String> {
    json_of(reqwest::Client::new().get(service.url(&format!("/v1/invitations/{}", id.replace(':', "%3A"))))).await
}

/// Waits until `id` reads as paid on `service`.
async fn paid(service: &ServeProcess, id: &str, within: Duration) {
    eventually(&format!("{id} to be paid"), within, || async {
        let v = projection(service, id).await?;
        if v["payout"]["state"] == "succeeded" {
            Ok(())
        } else {
            Err(v["payout"].to_string())
        }
    })
    .await;
}

async fn verify(url_or_path: &str) -> std::process::Output {
    run_binary(&["verify"], &[("LEDGER_DB", url_or_path), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await
}

async fn metric(service: &ServeProcess, name: &str) -> Option<i64> {
    let text = reqwest::get(service.url("/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(name) && !l.starts_with('#'))?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_postgresql_ledger_claims_are_stored_once_projected_paid_and_verified() {
    // Given the real service on a PostgreSQL ledger
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let payments = FakePlatform::start().await;
    let service = serve(&url, instance(dir.path(), &payments)).await;
    let client = reqwest::Client::new();

    // When claims arrive, each twice
    let ids: Vec<String> = (0..5).map(|n| format!("UmaInvitation:pg-{n}")).collect();
    for id in &ids {
        let body = claim(id).1;
        let first: Value =
            post_signed_to(&client, &service.url("/webhooks/lightspark"), body.clone()).await.json().await.unwrap();
        let again: Value =
            post_signed_to(&client, &service.url("/webhooks/lightspark"), body).await.json().await.unwrap();
        // Then the second is a duplicate of the first
        assert_eq!((first["status"].as_str(), again["status"].as_str()), (Some("accepted"), Some("duplicate")));
        assert_eq!(first["seq"], again["seq"]);
    }

    // And each is projected and paid once, through the leader
    for id in &ids {
        paid(&service, id, Duration::from_secs(20)).await;
    }
    assert!(
        payments.executed_by_invitation().values().all(|n| *n == 1) && payments.executed_by_invitation().len() == 5
    );
    assert_eq!(metric(&service, "invitation_ledger_reconciler_leader").await, Some(1));
    assert!(metric(&service, "invitation_ledger_reconciler_epoch").await.is_some_and(|e| e >= 1));
    let ready = client.get(service.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // And the ledger in the database verifies, with the head the service publishes
    let out = verify(&url).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head: Value = client.get(service.url("/v1/ledger/head")).send().await.unwrap().json().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(head["hash"].as_str().unwrap()), "{stdout} vs {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_postgresql_ledger_an_operator_resolves_audits_rebuilds_and_checks_an_anchor_from_the_cli() {
    // Given the service on a PostgreSQL ledger, and a payment the platform
    // keeps refusing with 503 until it is in doubt
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let payments = FakePlatform::start().await;
    payments.fail_next(10_000, Fault::Status(503));
    let mut env = instance(dir.path(), &payments);
    env.extend([
        ("RETRY_BASE_MS", "50".to_owned()),
        ("RETRY_MAX_MS", "100".to_owned()),
        ("REQUEST_TIMEOUT_MS", "300".to_owned()),
        ("IDEMPOTENCY_WINDOW", "1500ms".to_owned()),
    ]);
    let service = serve(&url, env).await;
    let client = reqwest::Client::new();
    let id = "UmaInvitation:pg-operator";
    assert_eq!(post_signed_to(&client, &service.url("/webhooks/lightspark"), claim(id).1).await.status(), 200);
    eventually("the payment to be in doubt", Duration::from_secs(30), || async {
        let v = projection(&service, id).await?;
        if v["payout"]["state"] == "in_doubt" {
            Ok(())
        } else {
            Err(v["payout"].to_string())
        }
    })
    .await;

    // When an operator, on another machine (projections of its own),
    // records it as paid by hand while the service runs
    let cli_dir = tempfile::tempdir().unwrap();
    let cli_projections = cli_dir.path().display().to_string();
    let cli = |extra: &[(&'static str, String)]| {
        let mut env = vec![("LEDGER_DB", url.clone()), ("PROJECTIONS_DIR", cli_projections.clone())];
        env.extend_from_slice(extra);
        env
    };
    let run = |args: &'static [&'static str], env: Vec<(&'static str, String)>| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run_binary(args, &env).await;
        let text =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{args:?}: {}{}", text.0, text.1);
        text.0
    };
    let out =
        run(&["resolve", "UmaInvitation:pg-operator", "invitee_payment", "--paid", "pay_by_hand"], cli(&[])).await;
    assert!(out.starts_with("recorded paid"), "{out}");

    // Then the service shows it, and pays nothing more
    eventually("the decision to show on the service", Duration::from_secs(10), || async {
        let v = projection(&service, id).await?;
        if v["payout"]["state"] == "succeeded" && v["payout"]["payment_id"] == "pay_by_hand" {
            Ok(())
        } else {
            Err(v["payout"].to_string())
        }
    })
    .await;
    assert!(payments.executed().is_empty());

    // And the audit, a rebuild check and an anchor check read the same ledger
    let audit = run(&["audit", "incentives", "--json"], cli(&[])).await;
    assert!(serde_json::from_str::<Value>(&audit).is_ok(), "{audit}");
    let rebuilt = run(&["rebuild", "--check"], cli(&[])).await;
    assert!(!rebuilt.is_empty());
    let head: Value = client.get(service.url("/v1/ledger/head")).send().await.unwrap().json().await.unwrap();
    let anchor = format!("{}:{}", head["seq"], head["hash"].as_str().unwrap());
    let env = cli(&[("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET.to_owned())]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let checked = run_binary(&["verify", "--expect", &anchor], &env).await;
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let forged = format!("{}:{}", head["seq"], "00".repeat(32));
    let refused = run_binary(&["verify", "--expect", &forged], &env).await;
    assert!(!refused.status.success(), "an anchor the ledger does not hold must fail verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_copied_between_stores_keeps_its_head_hash_and_a_foreign_target_is_refused() {
    // Given a SQLite ledger of claims
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("ledger.db");
    let service = ServeProcess::spawn(sqlite.clone(), vec![]).await;
    let client = reqwest::Client::new();
    for n in 0..4 {
        post_signed_to(&client, &service.url("/webhooks/lightspark"), claim(&format!("UmaInvitation:c-{n}")).1).await;
    }
    service.kill_async().await;
    let sqlite = sqlite.to_str().unwrap().to_owned();

    // When it is copied to PostgreSQL and back to a new file
    let pg = fresh_database().await;
    let back = dir.path().join("back.db").to_str().unwrap().to_owned();
    let to_pg = run_binary(&["copy", "--from", &sqlite, "--to", &pg], &[]).await;
    let to_file = run_binary(&["copy", "--from", &pg, "--to", &back], &[]).await;

    // Then all three hold the same head hash, and verify
    for out in [&to_pg, &to_file] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let head = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).split("head seq=").nth(1).unwrap().trim().to_owned()
    };
    assert_eq!(head(&to_pg), head(&to_file));
    for ledger in [&sqlite, &pg, &back] {
        let out = verify(ledger).await;
        assert!(out.status.success(), "{ledger}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(head(&to_pg).split("hash=").nth(1).unwrap()));
    }

    // And a copy continues a target holding a prefix (an interrupted copy)
    let service = ServeProcess::spawn(std::path::PathBuf::from(&sqlite), vec![]).await;
    post_signed_to(&client, &service.url("/webhooks/lightspark"), claim("UmaInvitation:c-later").1).await;
    service.kill_async().await;
    let again = run_binary(&["copy", "--from", &sqlite, "--to", &pg], &[]).await;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("copied 1 events"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // And a target holding another ledger is refused and left unchanged
    let other = dir.path().join("other.db");
    let service = ServeProcess::spawn(other.clone(), vec![]).await;
    post_signed_to(&client, &service.url("/webhooks/lightspark"), claim("UmaInvitation:someone-else").1).await;
    service.kill_async().await;
    let foreign = run_binary(&["copy", "--from", other.to_str().unwrap(), "--to", &pg], &[]).await;
    assert!(!foreign.status.success());
    let err = String::from_utf8_lossy(&foreign.stderr);
    assert!(err.contains("holds another ledger") && !err.contains("password"), "{err}");
    let unchanged = verify(&pg).await;
    assert!(
        String::from_utf8_lossy(&unchanged.stdout).contains("events=5"),
        "{}",
        String::from_utf8_lossy(&unchanged.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_ledger_and_exactly_one_reconciles() {
    // Given two instances on one PostgreSQL ledger, each with its own projections
    let url = fresh_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payments = FakePlatform::start().await;
    let a = serve(&url, instance(dir_a.path(), &payments)).await;
    let b = serve(&url, instance(dir_b.path(), &payments)).await;
    let client = reqwest::Client::new();

    // When claims arrive at either, alternately
    let ids: Vec<String> = (0..10).map(|n| format!("UmaInvitation:shared-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let to = if n % 2 == 0 { &a } else { &b };
        let resp = post_signed_to(&client, &to.url("/webhooks/lightspark"), claim(id).1).await;
        assert_eq!(resp.status(), 200);
    }

    // Then both read every one, each paid exactly once
    for id in &ids {
        paid(&a, id, Duration::from_secs(20)).await;
        paid(&b, id, Duration::from_secs(20)).await;
    }
    let paid_once = payments.executed_by_invitation();
    assert_eq!(paid_once.len(), 10);
    assert!(paid_once.values().all(|n| *n == 1), "{paid_once:?}");
    // And exactly one of them leads
    let leaders = metric(&a, "invitation_ledger_reconciler_leader").await.unwrap()
        + metric(&b, "invitation_ledger_reconciler_leader").await.unwrap();
    assert_eq!(leaders, 1);
    // And each status page says which, with the epoch and its projection lag
    let mut standings = Vec::new();
    for service in [&a, &b] {
        let page = client.get(service.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("lag <b>"), "{page}");
        let leads = metric(service, "invitation_ledger_reconciler_leader").await.unwrap() == 1;
        let epoch = metric(service, "invitation_ledger_reconciler_epoch").await.unwrap();
        if leads {
            assert!(page.contains(&format!("reconciler <b>leading</b> (epoch {epoch})")), "{page}");
        } else {
            assert!(page.contains("reconciler <b>standing by</b>"), "{page}");
        }
        standings.push(leads);
    }
    assert_eq!(standings.iter().filter(|l| **l).count(), 1);
}

/// Starts two instances on `url` and answers (leader, follower).
async fn leader_and_follower(
    url: &str,
    dirs: [&std::path::Path; 2],
    payments: &FakePlatform,
) -> (ServeProcess, ServeProcess) {
    let a = serve(url, instance(dirs[0], payments)).await;
    eventually("the first instance to lead", Duration::from_secs(10), || async {
        match metric(&a, "invitation_ledger_reconciler_leader").await {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let b = serve(url, instance(dirs[1], payments)).await;
    (a, b)
}

/// The kinds of the events the ledger at `url` holds, in order.
async fn kinds(url: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.query("SELECT kind FROM events ORDER BY seq", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Waits until the ledger at `url` holds a payment request.
async fn requested(url: &str) {
    eventually("the payment to be requested", Duration::from_secs(10), || async {
        if kinds(url).await.iter().any(|k| k == "payout.requested") {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
}

/// Waits until `service` says it leads the reconciler.
async fn leads(service: &ServeProcess, within: Duration) {
    eventually("the follower to lead", within, || async {
        match metric(service, "invitation_ledger_reconciler_leader").await {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_between_request_and_outcome_is_replaced_and_the_payment_made_once() {
    // Given a leader and a follower, and a platform that takes 3 s to pay
    let url = fresh_database().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payments = FakePlatform::start().await;
    payments.slow_executions(1.0, 7, Duration::from_secs(3));
    let (leader, follower) = leader_and_follower(&url, [da.path(), db.path()], &payments).await;

    // When a claim is requested of the platform, and the leader is SIGKILLed
    // before it can record the outcome
    let client = reqwest::Client::new();
    post_signed_to(&client, &follower.url("/webhooks/lightspark"), claim("UmaInvitation:failover").1).await;
    requested(&url).await;
    let killed_at = Instant::now();
    leader.kill_async().await;

    // Then the follower leads within 15 s, finishes the obligation, and the
    // platform executed it once
    leads(&follower, Duration::from_secs(15)).await;
    eprintln!("failover: the follower leads {:?} after the SIGKILL", killed_at.elapsed());
    paid(&follower, "UmaInvitation:failover", Duration::from_secs(30)).await;
    assert_eq!(payments.executed_by_invitation().get("UmaInvitation:failover"), Some(&1));
    let out = verify(&url).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn signal(process: &ServeProcess, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(process.child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_fenced_and_records_nothing_once_it_runs_again() {
    // Given a leader and a follower, and a platform that takes 2 s to pay
    let url = fresh_database().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payments = FakePlatform::start().await;
    payments.slow_executions(1.0, 9, Duration::from_secs(2));
    let (leader, follower) = leader_and_follower(&url, [da.path(), db.path()], &payments).await;

    // When the leader has requested a payment and is SIGSTOPped before its outcome
    let client = reqwest::Client::new();
    post_signed_to(&client, &follower.url("/webhooks/lightspark"), claim("UmaInvitation:stopped").1).await;
    requested(&url).await;
    signal(&leader, "STOP");
    let stopped_at = Instant::now();

    // Then the follower leads within 20 s and pays, once
    leads(&follower, Duration::from_secs(20)).await;
    eprintln!("fencing: the follower leads {:?} after the SIGSTOP", stopped_at.elapsed());
    paid(&follower, "UmaInvitation:stopped", Duration::from_secs(30)).await;
    let before: Vec<String> = kinds(&url).await;

    // And when the old leader runs again, it records nothing more
    signal(&leader, "CONT");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = kinds(&url).await;
    assert_eq!(after, before, "the fenced leader appended after it ran again");
    assert_eq!(payments.executed_by_invitation().get("UmaInvitation:stopped"), Some(&1));
    assert_eq!(metric(&leader, "invitation_ledger_reconciler_leader").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_under_load_keeps_every_acknowledged_webhook_exactly_once() {
    // Given a PostgreSQL of this test's own, and the service on it
    let server = OwnServer::start();
    let url = server.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let payments = FakePlatform::start().await;
    let service = serve(&url, instance(dir.path(), &payments)).await;

    // When webhooks keep coming while the database is restarted at once
    let poster = {
        let target = service.url("/webhooks/lightspark");
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
            let mut acknowledged = BTreeSet::new();
            for n in 0..400 {
                let id = format!("UmaInvitation:restart-{n}");
                if let Ok(resp) = try_post_signed_to(&client, &target, claim(&id).1).await {
                    if resp.status() == 200 {
                        acknowledged.insert(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart_immediate();
    let acknowledged = poster.await.unwrap();

    // Then every webhook answered 200 is in the ledger exactly once
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT stream, count(*) FROM events WHERE kind = 'webhook.received' GROUP BY stream", &[])
        .await
        .unwrap();
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    eprintln!("restart under load: {} acknowledged, {} stored", acknowledged.len(), stored.len());
    for id in &acknowledged {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
    assert!(acknowledged.len() > 100, "the service resumed after the restart: {}", acknowledged.len());
    let out = verify(&url).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(service);
}

/// `/readyz`'s status on `service`.
async fn ready(service: &ServeProcess) -> u16 {
    reqwest::get(service.url("/readyz")).await.map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_fails_readiness_and_everything_resumes_by_itself() {
    // Given the service on a PostgreSQL of this test's own, one claim paid
    let server = OwnServer::start();
    let dir = tempfile::tempdir().unwrap();
    let payments = FakePlatform::start().await;
    let service = serve(&server.url, instance(dir.path(), &payments)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let webhooks = service.url("/webhooks/lightspark");
    assert_eq!(post_signed_to(&client, &webhooks, claim("UmaInvitation:before").1).await.status(), 200);
    paid(&service, "UmaInvitation:before", Duration::from_secs(20)).await;

    // When the database goes away
    server.stop();

    // Then a webhook is answered 503, saying when to retry, and readiness fails
    let resp = post_signed_to(&client, &webhooks, claim("UmaInvitation:during").1).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"], "ledger_unavailable", "{answer}");
    eventually("/readyz to fail", Duration::from_secs(15), || async {
        match ready(&service).await {
            503 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;

    // When it comes back, with nothing done to the service
    server.start_again();

    // Then readiness returns, Lightspark's retry of the refused webhook is
    // stored (once: the 503 stored nothing) and paid, and nothing twice
    eventually("/readyz to pass again", Duration::from_secs(30), || async {
        match ready(&service).await {
            200 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let resp = post_signed_to(&client, &webhooks, claim("UmaInvitation:during").1).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "accepted");
    paid(&service, "UmaInvitation:during", Duration::from_secs(20)).await;
    let paid_once = payments.executed_by_invitation();
    assert_eq!(paid_once.get("UmaInvitation:before"), Some(&1));
    assert_eq!(paid_once.get("UmaInvitation:during"), Some(&1));
    assert_eq!(kinds(&server.url).await.iter().filter(|k| *k == "webhook.received").count(), 2);
}
