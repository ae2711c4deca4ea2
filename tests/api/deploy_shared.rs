//! The shared-ledger deployment of `deploy/`, run for real: two instances
//! on one PostgreSQL behind HAProxy with `deploy/haproxy/haproxy.cfg`
//! (one instance killed mid-stream), and the backup and restore that
//! `deploy/README.md` prescribes (a base backup plus the WAL archived under
//! `deploy/postgresql/invitation-ledger.conf`), checked against an anchor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::binary::{run_binary, ServeProcess};
use crate::support::fake_platform::FakePlatform;
use crate::support::postgres::{fresh_database, OwnServer};
use crate::support::{eventually, try_post_signed_to, SECRET};

use super::postgres::{claim, instance};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `haproxy`, which must be installed (`scripts/test` installs it).
fn haproxy() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`haproxy` not found: install the Debian package `haproxy`, or run `scripts/test`, which does")
        })
}

/// A free loopback port (bound, then released for HAProxy to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `deploy/haproxy/haproxy.cfg` with its frontend on `port` and its two
/// servers at `a` and `b`: the file as shipped, addresses aside.
fn haproxy_config(port: u16, a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    let shipped = std::fs::read_to_string(repo("deploy/haproxy/haproxy.cfg")).unwrap();
    assert!(shipped.contains("bind 127.0.0.1:8080") && shipped.contains("10.0.0.11:3000"), "{shipped}");
    shipped
        .replace("bind 127.0.0.1:8080", &format!("bind 127.0.0.1:{port}"))
        .replace("10.0.0.11:3000", &a.to_string())
        .replace("10.0.0.12:3000", &b.to_string())
}

/// HAProxy in the foreground on `config`; killed when dropped.
struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_accepts_the_shipped_load_balancer_config() {
    let out = Command::new(haproxy()).args(["-c", "-f"]).arg(repo("deploy/haproxy/haproxy.cfg")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Posts `body` through `url` as Lightspark does: again after any answer
/// but 200, until one comes (at most `within`).
async fn deliver(client: &reqwest::Client, url: &str, body: String, within: Duration) -> Value {
    let started = std::time::Instant::now();
    loop {
        if let Ok(resp) = try_post_signed_to(client, url, body.clone()).await {
            if resp.status() == 200 {
                return resp.json().await.unwrap();
            }
        }
        assert!(started.elapsed() < within, "no 200 within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_haproxy_two_instances_take_every_webhook_while_one_is_killed() {
    // Given two instances on one PostgreSQL ledger behind HAProxy, as
    // deploy/haproxy/haproxy.cfg sets it up
    let url = fresh_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payments = FakePlatform::start().await;
    let a = ServeProcess::spawn(PathBuf::from(&url), instance(dir_a.path(), &payments)).await;
    let b = ServeProcess::spawn(PathBuf::from(&url), instance(dir_b.path(), &payments)).await;
    let port = free_port();
    let config = dir_a.path().join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(port, a.addr, b.addr)).unwrap();
    let _balancer = Balancer(
        Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let front = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    eventually("HAProxy to answer", Duration::from_secs(10), || async {
        client.get(format!("{front}/readyz")).send().await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;

    // When claims arrive through it, and one instance is killed halfway
    let ids: Vec<String> = (0..60).map(|n| format!("UmaInvitation:balanced-{n}")).collect();
    let mut a = Some(a);
    let mut answers = BTreeMap::new();
    for (n, id) in ids.iter().enumerate() {
        if n == 30 {
            a.take().unwrap().kill_async().await;
        }
        let answer =
            deliver(&client, &format!("{front}/webhooks/lightspark"), claim(id).1, Duration::from_secs(30)).await;
        answers.insert(id.clone(), answer);
    }

    // Then every one was acknowledged, is stored once and paid once, by
    // the instance left (which took over the reconciler if it had to)
    assert!(answers.values().all(|v| v["status"] == "accepted" || v["status"] == "duplicate"), "{answers:?}");
    let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = pg
        .query("SELECT stream, count(*) FROM events WHERE kind = 'webhook.received' GROUP BY stream", &[])
        .await
        .unwrap();
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for id in &ids {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
    eventually("every claim to be paid", Duration::from_secs(40), || async {
        let paid = payments.executed_by_invitation();
        if ids.iter().all(|id| paid.get(id) == Some(&1)) {
            Ok(())
        } else {
            Err(format!("{} of {} paid", paid.len(), ids.len()))
        }
    })
    .await;
    let paid = payments.executed_by_invitation();
    assert!(paid.values().all(|n| *n == 1), "{paid:?}");
    drop(b);
}

/// The ledger head `service` publishes, as an anchor `SEQ:HASH`.
async fn anchor(service: &ServeProcess) -> String {
    let head: Value = reqwest::get(service.url("/v1/ledger/head")).await.unwrap().json().await.unwrap();
    format!("{}:{}", head["seq"], head["hash"].as_str().unwrap())
}

async fn verify_expect(url: &str, anchor: &str) -> std::process::Output {
    run_binary(&["verify", "--expect", anchor], &[("LEDGER_DB", url), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await
}

/// Runs `cmd` and fails the test with its output when it fails.
fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_and_the_archived_wal_restore_the_ledger_up_to_its_last_anchor() {
    // Given PostgreSQL with the shipped settings (its WAL archived to a
    // folder), and the service on it
    let server = OwnServer::start();
    let dir = server.dir().to_owned();
    let archive = format!("{dir}/wal-archive");
    std::fs::create_dir(&archive).unwrap();
    server.give_to_owner(&archive);
    let shipped = std::fs::read_to_string(repo("deploy/postgresql/invitation-ledger.conf")).unwrap();
    assert!(shipped.contains("/var/lib/postgresql/wal-archive"), "{shipped}");
    server.configure(&shipped.replace("/var/lib/postgresql/wal-archive", &archive));
    let projections = tempfile::tempdir().unwrap();
    let payments = FakePlatform::start().await;
    let service = ServeProcess::spawn(PathBuf::from(&server.url), instance(projections.path(), &payments)).await;
    let client = reqwest::Client::new();
    let webhooks = service.url("/webhooks/lightspark");
    for n in 0..20 {
        deliver(&client, &webhooks, claim(&format!("UmaInvitation:before-backup-{n}")).1, Duration::from_secs(10))
            .await;
    }

    // When a base backup is taken as deploy/README.md says, more claims
    // are stored after it, and an anchor of the last one is kept
    let backup = format!("{dir}/base");
    must(server.as_owner("pg_basebackup").args(["-d", &server.url, "-D", &backup, "-X", "stream", "-c", "fast"]));
    for n in 0..20 {
        deliver(&client, &webhooks, claim(&format!("UmaInvitation:after-backup-{n}")).1, Duration::from_secs(10)).await;
    }
    let last = anchor(&service).await;
    drop(service);
    // (archive_timeout bounds what the archive lacks; the test does not wait for it)
    let (pg, connection) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let segment: String = pg.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).await.unwrap().get(0);
    eventually("the last WAL segment to be archived", Duration::from_secs(20), || async {
        let archived: Option<String> =
            pg.query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[]).await.unwrap().get(0);
        match archived {
            Some(a) if a >= segment => Ok(()),
            other => Err(format!("{other:?} < {segment}")),
        }
    })
    .await;
    // and the database is lost
    server.stop();
    std::fs::rename(format!("{dir}/data"), format!("{dir}/data.lost")).unwrap();

    // And it is restored from the base backup and the archive
    must(Command::new("cp").args(["-a", &backup, &format!("{dir}/data")]));
    std::fs::write(format!("{dir}/data/recovery.signal"), "").unwrap();
    let mut auto = std::fs::read_to_string(format!("{dir}/data/postgresql.auto.conf")).unwrap_or_default();
    auto.push_str(&format!("restore_command = 'cp {archive}/%f %p'\n"));
    std::fs::write(format!("{dir}/data/postgresql.auto.conf"), auto).unwrap();
    server.give_to_owner(&format!("{dir}/data"));
    server.start_again();
    let (pg, connection) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    eventually("recovery to end", Duration::from_secs(30), || async {
        let recovering: bool = pg.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
        if recovering {
            Err("still in recovery".to_owned())
        } else {
            Ok(())
        }
    })
    .await;

    // Then the restored ledger holds the anchor (nothing acknowledged was
    // lost) and verifies; an anchor it does not hold is refused
    let out = verify_expect(&server.url, &last).await;
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (seq, _) = last.split_once(':').unwrap();
    let forged = format!("{seq}:{}", "00".repeat(32));
    assert!(!verify_expect(&server.url, &forged).await.status.success());
    let stored: i64 =
        pg.query_one("SELECT count(*) FROM events WHERE kind = 'webhook.received'", &[]).await.unwrap().get(0);
    assert_eq!(stored, 40);
}
