//! The ledger in PostgreSQL: the same contract ([`super::contract`]), for
//! operators who run several instances against one database.
//!
//! Appends go through one writer task per instance that takes every
//! waiting append and sends them as one call of `ledger_append`
//! (`schema/postgres/`): one round trip and one durable commit per batch
//! (`synchronous_commit` on), under an advisory lock that keeps two
//! instances' batches from interleaving. Keys are unique in the database;
//! the stream version and the fencing epoch of each conditional call are
//! checked in that same transaction. Reads take a pooled connection.
//!
//! The URL's password never leaves this module: [`redacted`] is what logs,
//! pages and errors show.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::NoTls;

mod batch;
mod leader;

use batch::{advance, write_loop, Call};

pub use leader::{Lead, Leadership};

use super::contract::{Expected, LedgerStore};
use super::hash::Hash;
use super::writer::Appended;
use super::{LedgerError, LedgerEvent, NewEvent};
use crate::vocab::StreamId;

/// Numbered migrations of the PostgreSQL ledger, applied in order.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../../schema/postgres/0001_ledger.sql"))];

/// The advisory lock migrations and appends take (`ledger_append` takes
/// the same number).
const WRITE_LOCK: i64 = 7_321_001;

/// Whether `text` names a PostgreSQL database rather than a file.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// `url` without its password, for logs, pages and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    // A password may also come as a query parameter.
    let tail = tail
        .split('&')
        .map(|p| if p.starts_with("password=") || p.contains("?password=") { redact_param(p) } else { p.to_owned() })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

fn redact_param(p: &str) -> String {
    match p.split_once("password=") {
        Some((before, _)) => format!("{before}password=***"),
        None => p.to_owned(),
    }
}

/// The connection settings of `url`, with keepalives that let a vanished
/// peer be noticed within seconds.
///
/// # Errors
/// [`LedgerError::Postgres`] when the URL cannot be read (the message
/// shows it without its password).
pub fn config(url: &str) -> Result<tokio_postgres::Config, LedgerError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        LedgerError::Postgres(format!("LEDGER_DB {} is not a PostgreSQL URL that can be used: {e}", redacted(url)))
    })?;
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .application_name("invitation-ledger");
    Ok(config)
}

/// A PostgreSQL error as a sentence that never holds the password (the
/// driver's messages hold none; the URL is always shown redacted).
fn pg_error(context: &str, e: &tokio_postgres::Error) -> LedgerError {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    LedgerError::Postgres(format!("{context}: {detail}"))
}

fn pool_error(e: deadpool_postgres::PoolError) -> LedgerError {
    LedgerError::Postgres(format!("no connection to the ledger database: {e}"))
}

/// The ledger in PostgreSQL, cheap to clone.
#[derive(Clone)]
pub struct PgLedger {
    pool: Pool,
    calls: mpsc::Sender<Call>,
    committed: Arc<watch::Sender<u64>>,
    /// The URL without its password.
    shown: Arc<String>,
    /// How to connect: the leader's session is a connection of its own.
    config: Arc<tokio_postgres::Config>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgLedger({})", self.shown)
    }
}

impl PgLedger {
    /// Connects to the database at `url`, brings its schema up to date and
    /// starts this instance's writer task (on the current tokio runtime).
    ///
    /// # Errors
    /// When the URL cannot be used, the database cannot be reached, or its
    /// schema cannot be brought up to date.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        Self::start(url, true).await
    }

    /// Connects to a ledger that must exist already, without changing its
    /// schema: what the commands that only read (`verify`, `copy --from`)
    /// open.
    ///
    /// # Errors
    /// When the database cannot be reached or holds no ledger.
    pub async fn open_existing(url: &str) -> Result<Self, LedgerError> {
        Self::start(url, false).await
    }

    async fn start(url: &str, migrating: bool) -> Result<Self, LedgerError> {
        let config = config(url)?;
        let config_for_lead = config.clone();
        let shown = Arc::new(redacted(url));
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| LedgerError::Postgres(format!("cannot build a pool for {shown}: {e}")))?;
        if migrating {
            migrate(&pool, &shown).await?;
        } else {
            let client = pool.get().await.map_err(pool_error)?;
            let found = client
                .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'events' AND schemaname = current_schema()", &[])
                .await
                .map_err(|e| pg_error(&format!("cannot read {shown}"), &e))?;
            if found.is_none() {
                return Err(LedgerError::Postgres(format!("no ledger in {shown}: nothing to read")));
            }
        }
        let head = head_of(&pool).await?.0;
        let committed = Arc::new(watch::Sender::new(head));
        let (calls, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(write_loop(pool.clone(), rx, committed.clone()));
        Ok(Self { pool, calls, committed, shown, config: Arc::new(config_for_lead) })
    }

    /// Leads the reconciler for as long as the answer lives, when no other
    /// instance does: what `reconcile --once` holds for its pass.
    ///
    /// # Errors
    /// When another instance leads, or the database cannot be reached.
    pub async fn lead_once(&self, instance: &str) -> Result<Lead, LedgerError> {
        leader::try_lead(&self.config, instance).await?.ok_or_else(|| {
            LedgerError::Postgres("another instance leads the reconciler: stop it first, or let it reconcile".into())
        })
    }

    /// Starts trying to lead the reconciler, as `instance`: what `serve`
    /// runs with a shared ledger.
    pub fn leadership(&self, instance: String) -> Leadership {
        Leadership::start((*self.config).clone(), instance)
    }

    /// The URL this ledger was opened with, without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The highest `seq` this instance knows is committed: its own appends,
    /// and others' once [`refresh`](Self::refresh) saw them.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    async fn submit(
        &self,
        events: Vec<NewEvent>,
        expected: Option<Expected>,
        epoch: Option<u64>,
    ) -> Result<Vec<Appended>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.calls.send(Call { events, expected, epoch, reply }).await.map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Appends `events` decided under leadership `epoch` (and, when given,
    /// on the stream version `expected`): refused once another leader holds
    /// a later epoch.
    ///
    /// # Errors
    /// [`LedgerError::Fenced`], [`LedgerError::Conflict`], or as
    /// [`LedgerStore::append_all`].
    pub async fn append_fenced(
        &self,
        epoch: u64,
        expected: Option<Expected>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LedgerError> {
        self.submit(events, expected, Some(epoch)).await
    }

    /// Commits a tiny write, to prove the database accepts a commit now.
    ///
    /// # Errors
    /// When it does not.
    pub async fn probe(&self, instance: &str) -> Result<(), LedgerError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO health_probe (instance, probed_at) VALUES ($1, now())
                 ON CONFLICT (instance) DO UPDATE SET probed_at = excluded.probed_at",
                &[&instance],
            )
            .await
            .map_err(|e| pg_error("the ledger database refused a commit", &e))?;
        Ok(())
    }

    /// Learns the head from the database (others' appends included) and
    /// announces it to whoever follows [`committed`](Self::committed).
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn refresh(&self) -> Result<u64, LedgerError> {
        let (seq, _) = head_of(&self.pool).await?;
        advance(&self.committed, seq);
        Ok(seq)
    }

    /// Appends events verbatim (their seqs, times and hashes), each
    /// chained to the one before and the first to the ledger's head: what
    /// `copy` writes.
    ///
    /// # Errors
    /// When the events do not follow the head, or the database fails.
    pub async fn import(&self, events: &[LedgerEvent]) -> Result<(), LedgerError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(|e| pg_error("cannot import", &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(|e| pg_error("cannot import", &e))?;
        let row = tx
            .query_opt("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(|e| pg_error("cannot import", &e))?;
        let (mut seq, mut prev) = match row {
            Some(r) => (r.get::<_, i64>(0) as u64, Hash::from_stored(Some(r.get::<_, &[u8]>(1)))),
            None => (0, super::hash::GENESIS),
        };
        let insert = tx
            .prepare(
                "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .map_err(|e| pg_error("cannot import", &e))?;
        for e in events {
            if e.seq != seq + 1 || e.prev_hash != prev || e.chain_hash(&prev) != e.hash {
                return Err(LedgerError::NotFollowing { seq: e.seq, head: seq });
            }
            tx.execute(
                &insert,
                &[
                    &(e.seq as i64),
                    &e.event_key,
                    &e.kind,
                    &e.stream,
                    &e.recorded_at,
                    &e.body,
                    &e.signature,
                    &&e.prev_hash.0[..],
                    &&e.hash.0[..],
                ],
            )
            .await
            .map_err(|e| pg_error("cannot import", &e))?;
            seq = e.seq;
            prev = e.hash;
        }
        tx.commit().await.map_err(|e| pg_error("cannot import", &e))?;
        Ok(())
    }
}

impl PgLedger {
    /// `verify` of a PostgreSQL ledger: the chain and signatures a batch
    /// at a time (memory independent of the ledger's size), then that no
    /// key is stored twice.
    ///
    /// # Errors
    /// [`super::verify::VerifyError::Broken`] naming the first bad `seq`.
    pub async fn verify(
        &self,
        keys: &super::verify::WebhookKeys,
    ) -> Result<super::verify::VerifySummary, super::verify::VerifyError> {
        let mut verifier = super::verify::Verifier::new(keys);
        let mut after = 0;
        loop {
            let batch = self.read_range(after, super::verify::BATCH).await?;
            let Some(last) = batch.last().map(|e| e.seq) else { break };
            // Hashing and signatures take the cores: off the async workers.
            verifier.feed(&batch)?;
            after = last;
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let repeat = client
            .query_opt(super::verify::REPEATED_KEY, &[])
            .await
            .map_err(|e| pg_error("cannot read the ledger", &e))?;
        if let Some(r) = repeat {
            return Err(super::verify::repeated(r.get(0), r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64));
        }
        Ok(verifier.finish())
    }

    /// Checks an anchor kept elsewhere, as [`super::verify::expect`] does
    /// for a SQLite ledger.
    ///
    /// # Errors
    /// [`super::verify::VerifyError::Broken`] at `seq`, saying why.
    pub async fn expect(&self, seq: u64, hash: &Hash) -> Result<(), super::verify::VerifyError> {
        use super::verify::VerifyError;
        let at = self.read_range(seq.saturating_sub(1), 1).await?;
        match at.first().filter(|e| e.seq == seq) {
            Some(e) if e.hash == *hash => Ok(()),
            Some(e) => Err(VerifyError::Broken {
                seq,
                reason: format!(
                    "the anchor says hash {hash} but the ledger holds {} (re-chained, replaced or restored from another copy)",
                    e.hash
                ),
            }),
            None => {
                let (head, _) = self.head().await?;
                Err(VerifyError::Broken {
                    seq,
                    reason: format!(
                        "the anchor names hash {hash} but the ledger ends at seq {head} (truncated, or restored from an older copy)"
                    ),
                })
            }
        }
    }
}

impl LedgerStore for PgLedger {
    async fn append_all(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        self.submit(events, None, None).await
    }

    async fn append_if(&self, expected: Expected, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        self.submit(events, Some(expected), None).await
    }

    async fn head(&self) -> Result<(u64, Hash), LedgerError> {
        head_of(&self.pool).await
    }

    async fn read_range(&self, after: u64, limit: usize) -> Result<Vec<LedgerEvent>, LedgerError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &format!("SELECT {} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2", LedgerEvent::COLUMNS),
                &[&(after as i64), &(limit as i64)],
            )
            .await
            .map_err(|e| pg_error("cannot read the ledger", &e))?;
        Ok(rows.iter().map(event_of).collect())
    }

    async fn read_stream(&self, stream: &StreamId, after: u64) -> Result<Vec<LedgerEvent>, LedgerError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &format!("SELECT {} FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq", LedgerEvent::COLUMNS),
                &[&stream.as_str(), &(after as i64)],
            )
            .await
            .map_err(|e| pg_error("cannot read the ledger", &e))?;
        Ok(rows.iter().map(event_of).collect())
    }
}

fn event_of(r: &tokio_postgres::Row) -> LedgerEvent {
    LedgerEvent {
        seq: r.get::<_, i64>(0) as u64,
        event_key: r.get(1),
        kind: r.get(2),
        stream: r.get(3),
        recorded_at: r.get(4),
        body: r.get(5),
        signature: r.get(6),
        prev_hash: Hash::from_stored(Some(r.get::<_, &[u8]>(7))),
        hash: Hash::from_stored(Some(r.get::<_, &[u8]>(8))),
    }
}

async fn head_of(pool: &Pool) -> Result<(u64, Hash), LedgerError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_opt("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[])
        .await
        .map_err(|e| pg_error("cannot read the ledger head", &e))?;
    Ok(match row {
        Some(r) => (r.get::<_, i64>(0) as u64, Hash::from_stored(Some(r.get::<_, &[u8]>(1)))),
        None => (0, super::hash::GENESIS),
    })
}

/// Brings the schema up to date, one instance at a time.
async fn migrate(pool: &Pool, shown: &str) -> Result<(), LedgerError> {
    let context = |what: &str| format!("cannot {what} the ledger database {shown}");
    let mut client = pool.get().await.map_err(|e| LedgerError::Postgres(format!("{}: {e}", context("reach"))))?;
    let tx = client.transaction().await.map_err(|e| pg_error(&context("migrate"), &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await
        .map_err(|e| pg_error(&context("migrate"), &e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS ledger_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await
        .map_err(|e| pg_error(&context("migrate"), &e))?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM ledger_schema", &[])
        .await
        .map_err(|e| pg_error(&context("migrate"), &e))?
        .get(0);
    let supported = MIGRATIONS[MIGRATIONS.len() - 1].0;
    if found > supported {
        return Err(LedgerError::SchemaTooNew { found: found as u32, supported: supported as u32 });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(|e| pg_error(&context("migrate"), &e))?;
        tx.execute("INSERT INTO ledger_schema (version) VALUES ($1)", &[version])
            .await
            .map_err(|e| pg_error(&context("migrate"), &e))?;
        tracing::info!(version, "applied PostgreSQL ledger schema migration");
    }
    tx.commit().await.map_err(|e| pg_error(&context("migrate"), &e))?;
    Ok(())
}
