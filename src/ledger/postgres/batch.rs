//! The PostgreSQL ledger's writer task: every waiting append sent as one
//! call of `ledger_append`, one round trip and one commit per batch, and
//! an interrupted commit answered from what the database then holds.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};

use super::{pg_error, pool_error};
use crate::ledger::contract::{Conflict, Expected};
use crate::ledger::hash::Hash;
use crate::ledger::writer::Appended;
use crate::ledger::{LedgerError, NewEvent};

/// Most events one call of `ledger_append` takes.
const MAX_BATCH: usize = 1024;

/// How long a batch whose commit was interrupted (the connection lost)
/// waits for the database to say whether its events are in the ledger.
const RECHECK: Duration = Duration::from_secs(10);

/// One caller's events, the version and epoch they were decided under, and
/// where its answer goes.
pub(super) struct Call {
    pub(super) events: Vec<NewEvent>,
    pub(super) expected: Option<Expected>,
    pub(super) epoch: Option<u64>,
    pub(super) reply: oneshot::Sender<Result<Vec<Appended>, LedgerError>>,
}

/// Moves the announced head forward (never back) to `seq`.
pub(super) fn advance(committed: &watch::Sender<u64>, seq: u64) {
    committed.send_if_modified(|v| {
        let newer = seq > *v;
        *v = (*v).max(seq);
        newer
    });
}

/// The writer task: group commits until every handle is gone.
pub(super) async fn write_loop(pool: Pool, mut rx: mpsc::Receiver<Call>, committed: Arc<watch::Sender<u64>>) {
    let mut failing_since: Option<(std::time::Instant, u64)> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut events = batch[0].events.len();
        while events < MAX_BATCH {
            match rx.try_recv() {
                Ok(call) => {
                    events += call.events.len();
                    batch.push(call);
                }
                Err(_) => break,
            }
        }
        match append_batch(&pool, &batch).await {
            Ok(answers) => {
                if let Some((since, refused)) = failing_since.take() {
                    tracing::warn!(
                        refused_batches = refused,
                        seconds = since.elapsed().as_secs(),
                        "the PostgreSQL ledger can be written again"
                    );
                }
                let last = answers.iter().flatten().flatten().map(|a| a.seq).max().unwrap_or(0);
                advance(&committed, last);
                for (call, answer) in batch.into_iter().zip(answers) {
                    let _ = call.reply.send(answer);
                }
            }
            Err(e) => {
                match failing_since.as_mut() {
                    Some((_, n)) => *n += 1,
                    None => {
                        tracing::error!(error = %e, "the PostgreSQL ledger cannot be written; webhooks are answered 503 until it can");
                        failing_since = Some((std::time::Instant::now(), 1));
                    }
                }
                for call in batch {
                    let _ = call.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One call of `ledger_append` for the whole batch; each call's answers,
/// or why it was refused. When the connection fails while the batch may
/// have committed, the answer follows the ledger: the batch's keys are
/// looked up once the database answers again (for up to [`RECHECK`]).
#[allow(clippy::type_complexity)]
async fn append_batch(pool: &Pool, batch: &[Call]) -> Result<Vec<Result<Vec<Appended>, LedgerError>>, LedgerError> {
    let mut keys = Vec::new();
    let mut kinds = Vec::new();
    let mut streams: Vec<Option<String>> = Vec::new();
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut signatures: Vec<Option<String>> = Vec::new();
    let mut prefixes: Vec<Option<String>> = Vec::new();
    let mut call_of = Vec::new();
    let mut call_streams: Vec<Option<String>> = Vec::new();
    let mut call_versions: Vec<Option<i64>> = Vec::new();
    let mut call_hashes: Vec<Option<Vec<u8>>> = Vec::new();
    let mut call_epochs: Vec<Option<i64>> = Vec::new();
    for (c, call) in batch.iter().enumerate() {
        for e in &call.events {
            keys.push(e.event_key.as_str().to_owned());
            kinds.push(e.kind.as_str().to_owned());
            streams.push(e.stream.as_ref().map(|s| s.as_str().to_owned()));
            bodies.push(&e.body);
            signatures.push(e.signature.clone());
            prefixes.push(e.sibling_prefix.clone());
            call_of.push(c as i32 + 1);
        }
        call_streams.push(call.expected.as_ref().map(|x| x.stream.as_str().to_owned()));
        call_versions.push(call.expected.as_ref().map(|x| x.last_seq as i64));
        call_hashes.push(call.expected.as_ref().and_then(|x| x.last_hash).map(|h| h.0.to_vec()));
        call_epochs.push(call.epoch.map(|e| e as i64));
    }
    let at = crate::time::now_rfc3339();
    let sent = async {
        // No connection: nothing was sent, so nothing can have committed.
        let client = pool.get().await.map_err(|e| (false, pool_error(e)))?;
        client
            .query(
                "SELECT ix, seq, duplicate, sibling, refused, actual, event_hash FROM ledger_append(
                    $1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                    $7::int[], $8::text[], $9::bigint[], $10::bytea[], $11::bigint[], $12::text)",
                &[
                    &keys,
                    &kinds,
                    &streams,
                    &bodies,
                    &signatures,
                    &prefixes,
                    &call_of,
                    &call_streams,
                    &call_versions,
                    &call_hashes,
                    &call_epochs,
                    &at,
                ],
            )
            .await
            .map_err(|e| (e.as_db_error().is_none(), pg_error("the ledger database refused the batch", &e)))
    };
    let rows = match sent.await {
        Ok(rows) => rows,
        Err((maybe_committed, e)) if maybe_committed => return recheck(pool, batch, &keys, e).await,
        Err((_, e)) => return Err(e),
    };
    let mut answers: Vec<Result<Vec<Appended>, LedgerError>> =
        batch.iter().map(|c| Ok(Vec::with_capacity(c.events.len()))).collect();
    for row in rows {
        let ix: i32 = row.get(0);
        let c = call_of[ix as usize - 1] as usize - 1;
        let refused: Option<String> = row.get(4);
        let answer = &mut answers[c];
        match (refused.as_deref(), answer.as_mut()) {
            (Some(why), Ok(_)) => {
                let actual: Option<i64> = row.get(5);
                let actual = actual.unwrap_or(0) as u64;
                *answer = Err(match why {
                    "fenced" => LedgerError::Fenced { held: batch[c].epoch.unwrap_or(0), current: actual },
                    _ => {
                        let x = batch[c].expected.as_ref().expect("a conflict has an expectation");
                        LedgerError::Conflict(Conflict { stream: x.stream.clone(), expected: x.last_seq, actual })
                    }
                });
            }
            (Some(_), Err(_)) | (None, Err(_)) => {}
            (None, Ok(list)) => list.push(Appended {
                seq: row.get::<_, i64>(1) as u64,
                hash: Hash::from_stored(row.get::<_, Option<&[u8]>>(6)),
                duplicate: row.get(2),
                sibling_exists: row.get(3),
            }),
        }
    }
    Ok(answers)
}

/// After a batch whose outcome is unknown (the connection failed during
/// it): the ledger says which of its calls are in. A call is answered with
/// the seqs holding its keys when all of them are there, else with `e`.
async fn recheck(
    pool: &Pool,
    batch: &[Call],
    keys: &[String],
    e: LedgerError,
) -> Result<Vec<Result<Vec<Appended>, LedgerError>>, LedgerError> {
    let deadline = tokio::time::Instant::now() + RECHECK;
    let found = loop {
        let looked = async {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .query("SELECT event_key, seq, hash FROM events WHERE event_key = ANY($1)", &[&keys])
                .await
                .map_err(|e| pg_error("cannot read the ledger", &e))
        };
        match looked.await {
            Ok(rows) => {
                break rows
                    .iter()
                    .map(|r| (r.get::<_, String>(0), (r.get::<_, i64>(1) as u64, Hash::from_stored(r.get(2)))))
                    .collect::<std::collections::HashMap<String, (u64, Hash)>>()
            }
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(_) => return Err(e),
        }
    };
    Ok(batch
        .iter()
        .map(|call| {
            call.events
                .iter()
                .map(|ev| {
                    found.get(ev.event_key.as_str()).map(|&(seq, hash)| Appended {
                        seq,
                        hash,
                        duplicate: false,
                        sibling_exists: false,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| e.clone())
        })
        .collect())
}
