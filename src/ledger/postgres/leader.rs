//! Which instance reconciles, when several share one PostgreSQL ledger:
//! the one holding a session advisory lock on a connection of its own (not
//! one a transaction pooler could hand to another client), under an epoch
//! greater than every earlier leader's. Every reconciler append carries its
//! epoch and the database refuses it once a later one exists (fencing), so
//! a leader that was paused or cut off records nothing after a successor
//! took over.
//!
//! How fast a vanished leader is replaced: a killed process's connection
//! is closed by its kernel, and the lock goes with it at once; a stuck one
//! (stopped, paused) cannot answer, so its session is opened with
//! `idle_session_timeout`, and the database ends it when it has sent
//! nothing for [`IDLE_LIMIT`] (its heartbeat, every [`HEARTBEAT`], keeps
//! a live leader's session busy). Followers try every [`TRY_EVERY`].

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

use super::{pg_error, LedgerError};

/// The advisory lock the leader holds (distinct from the appends' lock).
const LEADER_LOCK: i64 = 7_321_002;
/// How often a follower tries to lead.
pub const TRY_EVERY: Duration = Duration::from_secs(1);
/// How often a leader shows it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long the database waits for a silent leader before ending its
/// session (and so its lock).
pub const IDLE_LIMIT: Duration = Duration::from_secs(8);

/// Held leadership: the epoch, while the session holding the lock lives.
/// Dropping it ends the session, and the lock with it.
pub struct Lead {
    _client: Client,
    connection: tokio::task::JoinHandle<()>,
    epoch: u64,
}

impl Lead {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Connects the leader's own session.
async fn session(config: &tokio_postgres::Config) -> Result<(Client, tokio::task::JoinHandle<()>), LedgerError> {
    let (client, connection) =
        config.connect(NoTls).await.map_err(|e| pg_error("cannot reach the ledger database", &e))?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!("SET idle_session_timeout = '{}s'", IDLE_LIMIT.as_secs()))
        .await
        .map_err(|e| pg_error("cannot set up the leader's session", &e))?;
    Ok((client, connection))
}

/// Tries once to lead: the lock, then a new epoch. `Ok(None)`: another
/// instance leads.
pub(super) async fn try_lead(config: &tokio_postgres::Config, instance: &str) -> Result<Option<Lead>, LedgerError> {
    let (client, connection) = session(config).await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
        .await
        .map_err(|e| pg_error("cannot ask for the reconciler's lock", &e))?
        .get(0);
    if !locked {
        connection.abort();
        return Ok(None);
    }
    let epoch: i64 = client
        .query_one("SELECT ledger_new_epoch($1)", &[&instance])
        .await
        .map_err(|e| pg_error("cannot take a new epoch", &e))?
        .get(0);
    Ok(Some(Lead { _client: client, connection, epoch: epoch as u64 }))
}

/// Shows the database that `lead` is alive; `false` once it no longer
/// leads (its session ended, or a later epoch exists).
async fn heartbeat(lead: &Lead) -> bool {
    let epoch = lead.epoch as i64;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&epoch];
    let beat = lead
        ._client
        .execute("UPDATE reconciler_leadership SET renewed_at = now() WHERE id = 1 AND epoch = $1", &params);
    matches!(tokio::time::timeout(HEARTBEAT * 2, beat).await, Ok(Ok(1)))
}

/// The service's leadership: a task that leads when it can, and says under
/// which epoch (`None` while it does not lead, or cannot reach the
/// database).
pub struct Leadership {
    pub epoch: watch::Receiver<Option<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts trying to lead, as `instance`.
    pub fn start(config: tokio_postgres::Config, instance: String) -> Self {
        let (tx, epoch) = watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                match try_lead(&config, &instance).await {
                    Ok(Some(lead)) => {
                        tracing::info!(epoch = lead.epoch(), "this instance leads the reconciler");
                        tx.send_replace(Some(lead.epoch()));
                        while heartbeat(&lead).await {
                            tokio::time::sleep(HEARTBEAT).await;
                        }
                        tx.send_replace(None);
                        tracing::warn!(epoch = lead.epoch(), "this instance no longer leads the reconciler");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tx.send_replace(None);
                        tracing::debug!(error = %e, "cannot try to lead the reconciler");
                    }
                }
                tokio::time::sleep(TRY_EVERY).await;
            }
        });
        Self { epoch, task }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}
