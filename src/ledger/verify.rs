//! `verify`: recompute the hash chain and re-check every stored signature.

use rusqlite::{Connection, OptionalExtension};

use super::hash;
use super::LedgerError;
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

/// Walks the ledger in order, and re-verifies each stored webhook with its
/// source's keys (those of a source without keys are counted only).
///
/// # Errors
/// [`VerifyError::Broken`] naming the first bad `seq` and why.
pub fn verify(conn: &Connection, keys: &WebhookKeys) -> Result<VerifySummary, VerifyError> {
    let mut expected_seq = 1u64;
    let mut prev = hash::GENESIS;
    let mut webhooks = 0u64;
    let mut by_source: Vec<(Source, u64, u64)> = Source::ALL.iter().map(|s| (*s, 0, 0)).collect();
    // The writer stores every body as a BLOB: a body of another type was
    // rewritten by hand, even where its bytes still hash right.
    let retyped: Option<(i64, String)> = conn
        .query_row("SELECT seq, typeof(body) FROM events WHERE typeof(body) <> 'blob' ORDER BY seq LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(LedgerError::from)?;
    let mut keys_seen = KeysSeen::default();
    super::for_each_after(conn, 0, |e| {
        let broken = |reason: String| VerifyError::Broken { seq: e.seq, reason };
        if let Some((seq, sql_type)) = &retyped {
            if *seq as u64 == e.seq {
                return Err(broken(format!(
                    "the body is stored as {} where the ledger writes a BLOB (rewritten after it was written)",
                    sql_type.to_uppercase()
                )));
            }
        }
        if e.seq != expected_seq {
            return Err(VerifyError::Broken {
                seq: expected_seq,
                reason: format!("missing; the next stored seq is {}", e.seq),
            });
        }
        if e.prev_hash != prev {
            return Err(broken("prev_hash does not match the hash of the event before it".into()));
        }
        if e.chain_hash(&prev) != e.hash {
            return Err(broken("stored hash does not match its contents (altered after it was written)".into()));
        }
        if let Some(first) = keys_seen.first_with(conn, &e.event_key, e.seq)? {
            return Err(broken(format!("its key {:?} is already the key of seq {first}", e.event_key)));
        }
        if e.kind() == Some(EventKind::WebhookReceived) {
            webhooks += 1;
            let source = Source::of_event_key(&e.event_key)
                .ok_or_else(|| broken(format!("a webhook whose key {:?} names no known source", e.event_key)))?;
            let verified = keys
                .verify(source, &e.body, e.signature.as_deref())
                .map_err(|why| broken(format!("{} webhook signature no longer verifies: {why}", source.as_str())))?;
            let counts = by_source.iter_mut().find(|(s, _, _)| *s == source).expect("every source is counted");
            counts.1 += 1;
            counts.2 += u64::from(verified.is_some());
        }
        prev = e.hash;
        expected_seq += 1;
        Ok(())
    })?;
    Ok(VerifySummary { events: expected_seq - 1, webhooks, by_source, head: prev })
}

/// The keys met so far, to find one stored twice: the writer looks each
/// key up before appending, but the ledger itself no longer refuses a
/// repeated key (its index moved to the index file), so a row added by
/// hand could repeat one. Kept as 16 bytes of each key's SHA-256 with its
/// `seq`, about 40 bytes per event; a match is confirmed on the keys.
#[derive(Default)]
struct KeysSeen(std::collections::HashMap<[u8; 16], u64>);

impl KeysSeen {
    /// The `seq` that already holds `key`, if one does; else remembers it.
    fn first_with(&mut self, conn: &Connection, key: &str, seq: u64) -> Result<Option<u64>, LedgerError> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 16] = Sha256::digest(key.as_bytes())[..16].try_into().expect("16 of 32 bytes");
        let Some(&earlier) = self.0.get(&digest) else {
            self.0.insert(digest, seq);
            return Ok(None);
        };
        let earlier_key: String =
            conn.query_row("SELECT event_key FROM events WHERE seq = ?1", [earlier as i64], |r| r.get(0))?;
        Ok((earlier_key == key).then_some(earlier))
    }
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
