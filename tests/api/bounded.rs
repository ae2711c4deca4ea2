//! Every page, list, audit page and scrape reads a bounded part of the
//! projections, whatever the ledger holds: the same statements, no full
//! scan, no sort, and (nearly) the same work on a ledger of 100 invitations
//! as on one of 1,000. Measured by SQLite's own statement counters, which
//! the service exposes at `/metrics` (`invitation_ledger_read_*`), not by a
//! clock.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::support::fake_platform::FakePlatform;
use crate::support::poll::eventually;
use crate::support::{InvitationFixture, TestApp};

/// What a request cost the read side, from the `/metrics` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Work {
    statements: u64,
    steps: u64,
    full_scan_steps: u64,
    sorts: u64,
}

impl std::ops::Sub for Work {
    type Output = Work;
    fn sub(self, o: Work) -> Work {
        Work {
            statements: self.statements - o.statements,
            steps: self.steps - o.steps,
            full_scan_steps: self.full_scan_steps - o.full_scan_steps,
            sorts: self.sorts - o.sorts,
        }
    }
}

async fn metrics_text(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// The read counters after a scrape (which counts its own reads first).
async fn counted(app: &TestApp) -> Work {
    let text = metrics_text(app).await;
    Work {
        statements: metric(&text, "invitation_ledger_read_statements_total"),
        steps: metric(&text, "invitation_ledger_read_steps_total"),
        full_scan_steps: metric(&text, "invitation_ledger_read_full_scan_steps_total"),
        sorts: metric(&text, "invitation_ledger_read_sorts_total"),
    }
}

/// The paths measured: the status page, a search, the audit and its pages,
/// filtered lists that match much and little.
const PATHS: &[&str] = &[
    "/",
    "/?q=%24inviter-7%40sending.example",
    "/v1/audit/incentives",
    "/v1/audit/incentives?inviter_uma=%24inviter-7%40sending.example",
    "/v1/invitations",
    "/v1/invitations?status=CLAIMED&limit=20",
    "/v1/invitations?payout_state=failed",
    "/v1/invitations?inviter_uma=%24inviter-7%40sending.example",
];

/// What each path, and one scrape of `/metrics`, costs on a service whose
/// ledger holds `n` paid invitations of `n / 2` inviters.
async fn work_per_path(n: usize) -> BTreeMap<&'static str, Work> {
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("500:USD".into());
    })
    .await;
    let invitations: Vec<InvitationFixture> = (0..n)
        .map(|i| {
            let mut f = InvitationFixture::claimed(&format!("UmaInvitation:bounded-{i:05}"));
            f.inviter_uma = format!("$inviter-{}@sending.example", i % (n / 2));
            f
        })
        .collect();
    futures_util::stream::iter(&invitations)
        .for_each_concurrent(8, |f| {
            let app = &app;
            async move { app.claim(f, &format!("evt-{}", f.id)).await }
        })
        .await;
    let app_ref = &app;
    eventually("every invitee and inviter paid", Duration::from_secs(120), || async move {
        let text = metrics_text(app_ref).await;
        let paid = |kind: &str| {
            let name = format!("invitation_ledger_obligations{{kind=\"{kind}\",state=\"succeeded\"}}");
            metric(&text, &name)
        };
        let lag = metric(&text, "invitation_ledger_projection_lag_events");
        let catching_up = metric(&text, "invitation_ledger_projection_catching_up");
        let (payouts, incentives) = (paid("invitee_payment"), paid("inviter_incentive"));
        if payouts == n as u64 && incentives == n as u64 && lag == 0 && catching_up == 0 {
            Ok(())
        } else {
            Err(format!("{payouts} payouts, {incentives} incentives, lag {lag}"))
        }
    })
    .await;
    let mut out = BTreeMap::new();
    let before = counted(&app).await;
    let scrape = counted(&app).await - before;
    out.insert("/metrics", scrape);
    for path in PATHS {
        let before = counted(&app).await;
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        drop(r.bytes().await.unwrap());
        out.insert(*path, counted(&app).await - before - scrape);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_list_audit_and_scrape_reads_as_much_of_a_large_ledger_as_of_a_small_one() {
    // Given two services, one with 100 paid invitations and one with 1,000
    let small = work_per_path(100).await;
    let large = work_per_path(1000).await;
    // When each page, list, audit page and scrape is asked for, then each
    // runs the same statements on both, walks as many rows in order (a
    // page's worth, never the table), sorts nothing, and the work on the
    // large ledger is within a few percent of the small one's (a read
    // proportional to the ledger would do ten times as much)
    let mut failures = Vec::new();
    for (path, s) in &small {
        let l = large[path];
        eprintln!("{path}: 100 invitations {s:?}, 1,000 invitations {l:?}");
        if l.statements != s.statements || l.full_scan_steps != s.full_scan_steps || l.sorts != 0 {
            failures.push(format!("{path}: {l:?} on 1,000 vs {s:?} on 100"));
        } else if l.steps * 10 > s.steps * 12 {
            failures.push(format!("{path}: {} steps on 1,000 vs {} on 100", l.steps, s.steps));
        }
    }
    assert!(failures.is_empty(), "reads that grow with the ledger:\n{}", failures.join("\n"));
}
