//! `verify`: recompute the hash chain and re-check every stored signature.

use rusqlite::{Connection, OptionalExtension};

use super::hash;
use super::{LedgerError, LedgerEvent};
use crate::grid::signature::GridKeys;
use crate::lightspark::signature::SigningKeys;
use crate::source::Source;
use crate::vocab::EventKind;

/// The keys stored webhooks are re-verified with, one set per source; a
/// source without keys has its webhooks counted, not checked.
#[derive(Debug, Clone, Default)]
pub struct WebhookKeys {
    /// Lightspark's HMAC-SHA256 signing secrets.
    pub lightspark: Option<SigningKeys>,
    /// Grid's ECDSA P-256 public keys.
    pub grid: Option<GridKeys>,
}

impl WebhookKeys {
    /// Re-verifies one stored webhook of `source`: `Ok(None)` when that
    /// source has no keys here, `Ok(Some(i))` with the index of the key
    /// that verified it.
    ///
    /// # Errors
    /// A sentence saying why the signature does not verify.
    pub fn verify(&self, source: Source, body: &[u8], signature: Option<&str>) -> Result<Option<usize>, String> {
        match source {
            Source::Lightspark => match &self.lightspark {
                Some(keys) => keys.verify_which(body, signature).map(Some).map_err(|e| e.to_string()),
                None => Ok(None),
            },
            Source::Grid => match &self.grid {
                Some(keys) => keys.verify(body, signature).map(Some).map_err(|e| e.to_string()),
                None => Ok(None),
            },
        }
    }

    /// How many keys `source` has here (0 when it has none), so that the
    /// index [`WebhookKeys::verify`] gives can be told as "key i of n".
    pub fn count(&self, source: Source) -> usize {
        match source {
            Source::Lightspark => self.lightspark.as_ref().map_or(0, SigningKeys::len),
            Source::Grid => self.grid.as_ref().map_or(0, GridKeys::len),
        }
    }

    /// The kind of key a source is verified with, for people.
    pub fn key_type(source: Source) -> &'static str {
        match source {
            Source::Lightspark => "HMAC-SHA256 secret",
            Source::Grid => "ECDSA P-256 public key",
        }
    }

    /// The setting that holds a source's webhook keys, for the operator who
    /// has to add or change one.
    pub fn setting(source: Source) -> &'static str {
        match source {
            Source::Lightspark => "LIGHTSPARK_WEBHOOK_SIGNING_KEY",
            Source::Grid => "GRID_WEBHOOK_PUBLIC_KEY",
        }
    }
}

/// What an intact ledger looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub events: u64,
    pub webhooks: u64,
    /// Per source: webhooks stored, and how many of them were re-verified.
    pub by_source: Vec<(Source, u64, u64)>,
    pub head: hash::Hash,
}

/// The first thing found wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("seq {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// How many events are checked at a time: the memory `verify` holds,
/// whatever the ledger's size.
pub const BATCH: usize = 4_096;

/// The chain and signature check of a ledger read in order, a batch at a
/// time: the same for every store. Within a batch, the hashes and the
/// signatures are recomputed on every core (each event's hash depends only
/// on its own contents and its stored `prev_hash`, which is compared with
/// the event before).
pub struct Verifier<'k> {
    keys: &'k WebhookKeys,
    expected_seq: u64,
    prev: hash::Hash,
    webhooks: u64,
    by_source: Vec<(Source, u64, u64)>,
}

impl<'k> Verifier<'k> {
    pub fn new(keys: &'k WebhookKeys) -> Self {
        Self {
            keys,
            expected_seq: 1,
            prev: hash::GENESIS,
            webhooks: 0,
            by_source: Source::ALL.iter().map(|s| (*s, 0, 0)).collect(),
        }
    }

    /// Checks the next events, in order.
    ///
    /// # Errors
    /// [`VerifyError::Broken`] naming the first bad `seq` and why.
    pub fn feed(&mut self, batch: &[LedgerEvent]) -> Result<(), VerifyError> {
        // In order: gapless, each chained to the one before.
        for e in batch {
            if e.seq != self.expected_seq {
                return Err(VerifyError::Broken {
                    seq: self.expected_seq,
                    reason: format!("missing; the next stored seq is {}", e.seq),
                });
            }
            if e.prev_hash != self.prev {
                return Err(broken(e, "prev_hash does not match the hash of the event before it".into()));
            }
            self.prev = e.hash;
            self.expected_seq += 1;
        }
        // On every core: each hash, and each webhook's signature.
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let chunk = batch.len().div_ceil(threads).max(1);
        let keys = self.keys;
        let checked: Vec<Result<Vec<(Source, bool)>, VerifyError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch.chunks(chunk).map(|part| scope.spawn(move || check_each(part, keys))).collect();
            handles.into_iter().map(|h| h.join().expect("a verify thread panicked")).collect()
        });
        for part in checked {
            for (source, verified) in part? {
                self.webhooks += 1;
                let counts = self.by_source.iter_mut().find(|(s, _, _)| *s == source).expect("every source is counted");
                counts.1 += 1;
                counts.2 += u64::from(verified);
            }
        }
        Ok(())
    }

    /// What the events fed so far add up to.
    pub fn finish(self) -> VerifySummary {
        VerifySummary {
            events: self.expected_seq - 1,
            webhooks: self.webhooks,
            by_source: self.by_source,
            head: self.prev,
        }
    }
}

fn broken(e: &LedgerEvent, reason: String) -> VerifyError {
    VerifyError::Broken { seq: e.seq, reason }
}

/// Each event's hash against its contents, and each webhook's signature:
/// the source and whether a key verified it, per webhook, in order.
fn check_each(events: &[LedgerEvent], keys: &WebhookKeys) -> Result<Vec<(Source, bool)>, VerifyError> {
    let mut out = Vec::new();
    for e in events {
        if e.chain_hash(&e.prev_hash) != e.hash {
            return Err(broken(e, "stored hash does not match its contents (altered after it was written)".into()));
        }
        if e.kind() == Some(EventKind::WebhookReceived) {
            let source = Source::of_event_key(&e.event_key)
                .ok_or_else(|| broken(e, format!("a webhook whose key {:?} names no known source", e.event_key)))?;
            let verified = keys
                .verify(source, &e.body, e.signature.as_deref())
                .map_err(|why| broken(e, format!("{} webhook signature no longer verifies: {why}", source.as_str())))?;
            out.push((source, verified.is_some()));
        }
    }
    Ok(out)
}

/// The first key stored twice, as (key, first seq, the seq repeating it):
/// the store refuses a repeat, so only a hand-made row (with the unique
/// index dropped) can be one.
pub const REPEATED_KEY: &str = "SELECT event_key, min(seq), max(seq) FROM events GROUP BY event_key \
     HAVING count(*) > 1 ORDER BY min(seq) LIMIT 1";

/// A key stored twice, as found by [`REPEATED_KEY`].
pub fn repeated(key: String, first: u64, again: u64) -> VerifyError {
    VerifyError::Broken { seq: again, reason: format!("its key {key:?} is already the key of seq {first}") }
}

/// Walks a SQLite ledger in order, a batch at a time, and re-verifies each
/// stored webhook with its source's keys (those of a source without keys
/// are counted only); then checks that no key is stored twice.
///
/// # Errors
/// [`VerifyError::Broken`] naming the first bad `seq` and why.
pub fn verify(conn: &Connection, keys: &WebhookKeys) -> Result<VerifySummary, VerifyError> {
    // The writer stores every body as a BLOB: a body of another type was
    // rewritten by hand, even where its bytes still hash right.
    let retyped: Option<(i64, String)> = conn
        .query_row("SELECT seq, typeof(body) FROM events WHERE typeof(body) <> 'blob' ORDER BY seq LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(LedgerError::from)?;
    if let Some((seq, sql_type)) = retyped {
        return Err(VerifyError::Broken {
            seq: seq as u64,
            reason: format!(
                "the body is stored as {} where the ledger writes a BLOB (rewritten after it was written)",
                sql_type.to_uppercase()
            ),
        });
    }
    // Reading is one thread's work and checking is every core's: the next
    // batch is read while the one before is checked, two at most in hand.
    let verifier = std::thread::scope(|scope| -> Result<Verifier<'_>, VerifyError> {
        let (batches, checked) = std::sync::mpsc::sync_channel::<Vec<LedgerEvent>>(1);
        let checker = scope.spawn(move || -> Result<Verifier<'_>, VerifyError> {
            let mut verifier = Verifier::new(keys);
            for batch in checked {
                verifier.feed(&batch)?;
            }
            Ok(verifier)
        });
        let mut after = 0;
        let read = loop {
            let batch = match super::read_after(conn, after, BATCH) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            let Some(last) = batch.last().map(|e| e.seq) else { break Ok(()) };
            // A checker that stopped found the chain broken: it says where.
            if batches.send(batch).is_err() {
                break Ok(());
            }
            after = last;
        };
        drop(batches);
        let verifier = checker.join().expect("the verify thread panicked")?;
        read?;
        Ok(verifier)
    })?;
    let repeat: Option<(String, i64, i64)> = conn
        .query_row(REPEATED_KEY, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(LedgerError::from)?;
    if let Some((key, first, again)) = repeat {
        return Err(repeated(key, first as u64, again as u64));
    }
    Ok(verifier.finish())
}

/// Checks an anchor kept elsewhere: the ledger must hold exactly `hash` at
/// `seq`. The chain alone proves order, not completeness: a ledger whose
/// last rows were cut off, or one re-chained after an edit, still chains.
///
/// # Errors
/// [`VerifyError::Broken`] at `seq`, saying whether the ledger ends before
/// it (truncated) or holds another hash there (re-chained or replaced).
pub fn expect(conn: &Connection, seq: u64, hash: &hash::Hash) -> Result<(), VerifyError> {
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT hash FROM events WHERE seq = ?1", [seq as i64], |r| r.get(0))
        .optional()
        .map_err(LedgerError::from)?;
    match stored {
        Some(h) if h == hash.0[..] => Ok(()),
        Some(h) => Err(VerifyError::Broken {
            seq,
            reason: format!(
                "the anchor says hash {} but the ledger holds {} (re-chained, replaced or restored from another copy)",
                hex::encode(hash),
                hex::encode(h)
            ),
        }),
        None => {
            let (head, _) = super::head(conn)?;
            Err(VerifyError::Broken {
                seq,
                reason: format!(
                    "the anchor names hash {} but the ledger ends at seq {head} (truncated, or restored from an older copy)",
                    hex::encode(hash)
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerWriter, NewEvent};

    fn event(n: u32) -> NewEvent {
        NewEvent::test_webhook(n, None, format!("{{\"n\":{n}}}"))
    }

    #[tokio::test]
    async fn a_body_rewritten_as_text_is_named_by_its_seq() {
        // given a ledger of three events whose second body someone
        // rewrote as TEXT (same characters) with the triggers dropped
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (writer, thread) = LedgerWriter::start(&db).unwrap();
        writer.append_all((1..=3).map(event).collect()).await.unwrap();
        drop(writer);
        thread.join().unwrap();
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("DROP TRIGGER events_no_update; UPDATE events SET body = CAST(body AS TEXT) WHERE seq = 2;")
            .unwrap();
        // when the ledger is verified
        let e = verify(&conn, &WebhookKeys::default()).unwrap_err();
        // then the answer names the seq and says what is wrong
        match e {
            VerifyError::Broken { seq, reason } => {
                assert_eq!(seq, 2);
                assert!(reason.contains("TEXT"), "{reason}");
            }
            other => panic!("expected seq 2 named, got {other}"),
        }
    }
}
