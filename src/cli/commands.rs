//! The one-shot commands. Each returns the text to print; `main.rs` prints it
//! and turns an error into a one-line reason and a non-zero exit.

use anyhow::Context;

use crate::config::{DbArgs, KeyArgs, LedgerLocation};
use crate::ledger::postgres::PgLedger;
use crate::ledger::{self, verify};

/// `verify`: the hash chain and, when a key is configured, every stored
/// webhook signature, in a SQLite file or a PostgreSQL database alike;
/// with `--expect`, the anchors too.
///
/// # Errors
/// Naming the first bad `seq` and why, or why the ledger could not be read.
pub fn verify(db: &DbArgs, key: &KeyArgs, expect: &[String]) -> anyhow::Result<String> {
    let anchors = expect.iter().map(|a| parse_anchor(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let keys = verify::WebhookKeys {
        lightspark: key.signing_key.as_ref().map(|_| key.keys()).transpose()?,
        grid: key.grid_keys()?,
    };
    let summary = match db.location()? {
        LedgerLocation::Sqlite(path) => {
            let conn = open_existing(&path)?;
            let summary = verify::verify(&conn, &keys)?;
            for (seq, hash) in &anchors {
                verify::expect(&conn, *seq, hash)?;
            }
            summary
        }
        LedgerLocation::Postgres(url) => tokio::runtime::Runtime::new()?.block_on(async {
            let pg = PgLedger::open_existing(&url).await?;
            let summary = pg.verify(&keys).await?;
            for (seq, hash) in &anchors {
                pg.expect(*seq, hash).await?;
            }
            anyhow::Ok(summary)
        })?,
    };
    let signatures: Vec<String> = summary
        .by_source
        .iter()
        .filter(|(_, stored, _)| *stored > 0)
        .map(|(source, stored, checked)| match checked {
            0 => format!("{}: {stored} not checked (no {})", source.as_str(), verify::WebhookKeys::setting(*source)),
            _ => format!("{}: {checked} verified with its {}", source.as_str(), verify::WebhookKeys::key_type(*source)),
        })
        .collect();
    let mut out = format!(
        "ledger intact: events={} webhooks={} head={} ({})",
        summary.events,
        summary.webhooks,
        hex::encode(summary.head),
        if signatures.is_empty() { "no webhooks".to_owned() } else { signatures.join("; ") }
    );
    for (seq, hash) in anchors {
        out.push_str(&format!("\nanchor seq {seq} matches hash {}", hex::encode(hash)));
    }
    Ok(out)
}

/// `SEQ:HASH` as `verify --expect` takes it (the hash as 64 hex digits).
fn parse_anchor(text: &str) -> anyhow::Result<(u64, ledger::Hash)> {
    let bad =
        || anyhow::anyhow!("--expect {text:?} is not SEQ:HASH (a seq and 64 hex digits, as GET /v1/ledger/head gives)");
    let (seq, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let seq = seq.parse().map_err(|_| bad())?;
    Ok((seq, ledger::Hash::from_hex(hash).map_err(|_| bad())?))
}

/// Opens a SQLite ledger read-only, refusing a path that does not exist
/// rather than creating an empty ledger there.
///
/// # Errors
/// When the file is missing or cannot be opened.
pub fn open_existing(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    anyhow::ensure!(path.exists(), "no ledger at {} (LEDGER_DB): nothing to read", path.display());
    ledger::open_read_only(path).with_context(|| format!("opening {}", path.display()))
}

/// Refuses a ledger that is not there: a read must not create one. With a
/// PostgreSQL ledger, it is this instance's replica that must be.
pub(super) fn ensure_ledger(db: &DbArgs) -> anyhow::Result<()> {
    let local = db.local();
    match db.location()? {
        LedgerLocation::Sqlite(_) => {
            anyhow::ensure!(local.exists(), "no ledger at {} (LEDGER_DB): nothing to read", local.display())
        }
        LedgerLocation::Postgres(_) => anyhow::ensure!(
            local.exists(),
            "no projections of {} in {} (PROJECTIONS_DIR): start the service with these settings (or run `rebuild`) to fold them",
            db.shown(),
            db.projections_dir.display()
        ),
    }
    Ok(())
}

/// Opens the projections of an existing ledger read-only, the ledger (or
/// its replica) attached.
///
/// # Errors
/// When the ledger is missing, or its projections are missing or of
/// another version.
pub fn open_projections(db: &DbArgs) -> anyhow::Result<rusqlite::Connection> {
    ensure_ledger(db)?;
    Ok(crate::projection::store::open_read_only(&db.local())?)
}

/// With a PostgreSQL ledger, brings this instance's replica up to the
/// database; nothing with a SQLite one.
///
/// # Errors
/// When the database or the replica cannot be read or written.
fn mirror(db: &DbArgs) -> anyhow::Result<()> {
    if let LedgerLocation::Postgres(url) = db.location()? {
        let runtime = tokio::runtime::Runtime::new()?;
        let pg = runtime.block_on(PgLedger::open_existing(&url))?;
        let replica = ledger::replica::Replica::new(pg, &db.local(), runtime.handle().clone());
        std::fs::create_dir_all(&db.projections_dir)
            .with_context(|| format!("creating PROJECTIONS_DIR {}", db.projections_dir.display()))?;
        replica.mirror(&mut None)?;
    }
    Ok(())
}

/// `rebuild`: drop the projections and replay the whole ledger (with a
/// PostgreSQL ledger: this instance's, from its replica brought up to the
/// database first). Refuses while a service holds them, since it would
/// rewrite the tables under the running projector.
///
/// # Errors
/// When a service runs, or SQLite fails (then nothing changed).
pub fn rebuild(db: &DbArgs) -> anyhow::Result<String> {
    let local = db.local();
    if let LedgerLocation::Sqlite(path) = db.location()? {
        anyhow::ensure!(path.exists(), "no ledger at {} (LEDGER_DB): nothing to rebuild", path.display());
    }
    let _lock = ledger::lock::InstanceLock::acquire(&local)?;
    mirror(db)?;
    let mut progress = Progress::new("rebuilding");
    let file = crate::projection::store::path(&local).display().to_string();
    let summary = crate::projection::rebuild::rebuild(&local, |done, total| progress.show(done, total))
        .map_err(|e| e.on_file(&file))?;
    progress.finish();
    Ok(summary.to_string())
}

/// `rebuild --check`: replay the ledger into a scratch database, up to the
/// live projections' checkpoint, and compare checksums. Only reads the
/// ledger, so it runs beside a live service.
///
/// # Errors
/// When the rebuilt projections differ from the live ones (naming both
/// checksums), or the ledger cannot be read.
pub fn rebuild_check(db: &DbArgs) -> anyhow::Result<String> {
    use crate::projection::{rebuild, store};
    let source = open_projections(db)?;
    // One read transaction: the checkpoint and the rows it covers are seen
    // together, even while the service keeps folding.
    source.execute_batch("BEGIN")?;
    let upto = store::checkpoint(&source)?;
    let live = rebuild::checksum(&source)?;
    source.execute_batch("COMMIT")?;
    let scratch_dir = tempfile::tempdir()?;
    let mut progress = Progress::new("checking");
    let scratch = scratch_dir.path().join("scratch.db");
    let summary = rebuild::rebuild_scratch(&db.local(), &scratch, upto, |done, total| progress.show(done, total))
        .map_err(|e| e.on_file(&scratch.display().to_string()))?;
    progress.finish();
    anyhow::ensure!(
        summary.checksum == live,
        "projections differ from a rebuild at seq {upto}: live checksum={} rebuilt checksum={}; run `rebuild` with the service stopped",
        hex::encode(live),
        hex::encode(summary.checksum)
    );
    Ok(format!("{summary} (matches the live projections)"))
}

/// `status <id or code>`: the same projection JSON as
/// `GET /v1/invitations/{id}`, or a short table.
///
/// # Errors
/// When the invitation is unknown or the ledger cannot be read.
pub fn status(
    db: &DbArgs,
    id_or_code: &str,
    json: bool,
    fetching: crate::projection::view::Fetching,
) -> anyhow::Result<String> {
    let conn = open_projections(db)?;
    let Some(v) = crate::projection::query::invitation(&conn, id_or_code, fetching)? else {
        anyhow::bail!("no invitation with id or code {id_or_code:?}");
    };
    if json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    // As the invitation's page shows it: amounts kept without decimals get
    // those the invitation's own bodies state.
    let decimals = crate::projection::trail::decimals(&conn, &v.invitation_id)?;
    Ok(status_text(&decimals.view(&v)))
}

/// The short table `status` prints: one invitation's facts, then one line
/// per obligation.
fn status_text(v: &crate::projection::view::InvitationView) -> String {
    let s = |x: Option<&str>| x.unwrap_or("-").to_owned();
    let mut out = format!(
        "invitation {}  code {}  status {}\ninviter {}  invitee {}\nincentives {}{}  amount {}\nclaimed_at {}  last_seq {}\n",
        v.invitation_id,
        s(v.code.as_deref()),
        s(v.status.as_deref()),
        s(v.inviter_uma.as_deref()),
        s(v.invitee_uma.as_deref()),
        s(v.incentives_status.as_deref()),
        v.incentives_ineligibility_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        v.payment_amount.as_ref().map_or("-".into(), ToString::to_string),
        s(v.claimed_at.as_deref()),
        v.last_seq,
    );
    for (label, o) in [
        ("payout", &v.payout),
        ("incentive", &v.incentive),
        ("notification", &v.notification),
        ("failure_notice", &v.failure_notice),
    ] {
        // What the platform was asked: an operator checks it against the
        // platform's record before resolving.
        let asked = o.requested.as_ref().map_or(String::new(), |r| {
            let amount = r.amount.as_ref().map(|m| format!("{m} ")).unwrap_or_default();
            format!("  asked {amount}to {}", s(r.receiver_uma.as_deref()))
        });
        out.push_str(&format!(
            "{label:<13} {:<16} attempts {}  key {}  payment {}{}{asked}\n",
            o.state.as_str(),
            o.attempts,
            o.idempotency_key.as_ref().map_or("-", |k| k.as_str()),
            s(o.payment_id.as_deref()),
            o.reason.as_deref().map(|r| format!("  reason {r}")).unwrap_or_default()
        ));
    }
    out.trim_end().to_owned()
}

/// A one-line progress indicator on stderr, shown only on a terminal.
struct Progress {
    label: &'static str,
    on_terminal: bool,
    last: std::time::Instant,
    shown: bool,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        use std::io::IsTerminal;
        Self { label, on_terminal: std::io::stderr().is_terminal(), last: std::time::Instant::now(), shown: false }
    }

    fn show(&mut self, done: u64, total: u64) {
        if !self.on_terminal || self.last.elapsed() < std::time::Duration::from_millis(250) {
            return;
        }
        self.last = std::time::Instant::now();
        self.shown = true;
        let pct = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
        eprint!("\r{}: {done}/{total} events ({pct:.0}%)", self.label);
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// `reconcile --once [--dry-run]`: one reconciler pass. Refused while a
/// service holds the database: only one reconciler may act at a time.
///
/// # Errors
/// When a service runs, the settings are invalid, or the pass fails.
pub async fn reconcile_once(db: &DbArgs, args: &crate::config::ReconcileArgs, dry_run: bool) -> anyhow::Result<String> {
    ensure_ledger(db)?;
    let config = args.validate()?;
    let _lock = ledger::lock::InstanceLock::acquire(&db.local())?;
    // As in the service, the writer folds what it appends into the
    // projections, so `status` and `audit` see this pass's outcome.
    let ledger = crate::service::LiveLedger::open_caught_up(db).await?;
    let outcome = async {
        // With a shared ledger, only the instance that leads reconciles:
        // this pass leads for its length, or is refused.
        let lead = match ledger.ledger.postgres() {
            Some(pg) => Some(pg.lead_once(&crate::service::instance_name()).await?),
            None => None,
        };
        let reconciler =
            crate::service::build_reconciler(&db.local(), ledger.ledger.clone(), config, Default::default())?
                .following(ledger.projected.clone(), ledger.health.clone())
                .leading(lead.as_ref().map(|l| l.epoch()));
        let outcome = reconciler.try_execute_once(dry_run).await;
        drop(lead);
        anyhow::Ok(outcome?)
    }
    .await;
    ledger.close().await?;
    let o = outcome?;
    let mut out = o.lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{}: sent={} succeeded={} failed={} retry_scheduled={} in_doubt={} fetched={} fetch_failed={} not_configured={}",
        if dry_run { "dry run" } else { "reconciled" },
        o.sent, o.succeeded, o.failed, o.retry_scheduled, o.in_doubt, o.fetched, o.fetch_failed, o.not_configured
    ));
    Ok(out)
}

/// `resolve <invitation> <kind> --paid ID | --retry | --failed [--note TEXT]`:
/// records an operator's decision on an in-doubt (or failed) obligation,
/// through [`crate::operator::resolve`] as the status page does.
///
/// # Errors
/// When the invitation or kind is unknown, the obligation is not in doubt
/// or failed, or the ledger cannot be written.
pub async fn resolve(
    db: &DbArgs,
    invitation: &str,
    kind: &str,
    decision: crate::projection::events::Decision,
    payment_id: Option<String>,
    note: Option<String>,
) -> anyhow::Result<String> {
    use crate::projection::events::{Channel, ObligationKind};
    // A SQLite ledger must exist (a typo must not create one); with a
    // PostgreSQL one, projections missing here (an operator's own machine)
    // are folded from the database as the decision is caught up.
    if let LedgerLocation::Sqlite(_) = db.location()? {
        ensure_ledger(db)?;
    } else {
        std::fs::create_dir_all(&db.projections_dir)
            .with_context(|| format!("creating PROJECTIONS_DIR {}", db.projections_dir.display()))?;
    }
    let kind = ObligationKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown obligation kind {kind:?}: use invitee_payment, inviter_incentive, inviter_notification or inviter_failure_notice"
        )
    })?;
    // The writer catches the projections up first and folds the decision in
    // after its commit, so `status` shows it at once.
    let ledger = crate::service::LiveLedger::open_caught_up(db).await?;
    let resolution = crate::operator::Resolution { kind, decision, payment_id, note, by: Channel::Cli, seen: None };
    let recorded = match crate::projection::store::open_read_only(&db.local()) {
        Ok(conn) => crate::operator::resolve(&ledger.ledger, &conn, invitation, resolution).await.map_err(Into::into),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    ledger.close().await?;
    Ok(recorded?.to_string())
}

/// `audit incentives [--inviter UMA] [--json]`, written to `out` as it is
/// read: a page of inviters at a time, so the memory used does not grow
/// with the ledger (only the anomalies are kept until the end). `--json`
/// prints the document `GET /v1/audit/incentives` pages through, whole.
///
/// # Errors
/// When the ledger cannot be read or `out` written.
pub fn audit_incentives(
    db: &DbArgs,
    inviter: Option<&str>,
    json: bool,
    horizon: std::time::Duration,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    use crate::projection::audit::{render_end, render_inviter};
    use crate::projection::audit_page;
    /// Invitations read at a time.
    const PAGE: usize = 500;
    let conn = open_projections(db)?;
    let now = chrono::Utc::now();
    if json {
        write!(out, "{{\"inviters\":[")?;
    }
    let mut first = true;
    let (totals, anomalies) = audit_page::for_each_page(&conn, inviter, PAGE, now, horizon, |inv| {
        if json {
            write!(out, "{}{}", if first { "" } else { "," }, serde_json::to_string(inv)?)?;
        } else {
            write!(out, "{}", render_inviter(inv))?;
        }
        first = false;
        Ok(())
    })?;
    if json {
        writeln!(
            out,
            "],\"totals\":{},\"anomalies\":{},\"next\":null}}",
            serde_json::to_string(&totals)?,
            serde_json::to_string(&anomalies)?
        )?;
    } else {
        writeln!(out, "{}", render_end(&totals, &anomalies))?;
    }
    Ok(())
}

/// `refetch <invitation>`: asks the invitation's source for it now,
/// whatever the schedule, and records the answer (always, marked as an
/// operator's, so the action is in the trail). Works beside a running
/// service, like `resolve`.
///
/// # Errors
/// When the invitation is unknown, its source cannot be fetched from (no
/// credentials), or the ledger cannot be written.
pub async fn refetch(
    db: &DbArgs,
    args: &crate::config::ReconcileArgs,
    invitation: &str,
    note: String,
) -> anyhow::Result<String> {
    ensure_ledger(db)?;
    let config = args.validate()?;
    let ledger = crate::service::LiveLedger::open_caught_up(db).await?;
    let fetched = async {
        let conn = crate::projection::store::open_read_only(&db.local())?;
        let state = crate::projection::query::find(&conn, invitation)?
            .ok_or_else(|| anyhow::anyhow!("no invitation with id or code {invitation:?}"))?;
        let reconciler =
            crate::service::build_reconciler(&db.local(), ledger.ledger.clone(), config, Default::default())?
                .following(ledger.projected.clone(), ledger.health.clone());
        reconciler.refetch(&state.invitation_id, note).await.map_err(anyhow::Error::msg)
    }
    .await;
    ledger.close().await?;
    fetched
}
