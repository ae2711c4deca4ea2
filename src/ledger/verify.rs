//! `verify`: recompute the hash chain and re-check every stored signature.

use rusqlite::Connection;

use super::hash;
use super::{kinds, LedgerError};
use crate::lightspark::signature::SigningKeys;

/// What an intact ledger looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub events: u64,
    pub webhooks: u64,
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

/// Walks the ledger in order. `keys` re-verifies each stored webhook; `None`
/// checks the chain only.
///
/// # Errors
/// [`VerifyError::Broken`] naming the first bad `seq` and why.
pub fn verify(conn: &Connection, keys: Option<&SigningKeys>) -> Result<VerifySummary, VerifyError> {
    let mut expected_seq = 1u64;
    let mut prev = hash::GENESIS;
    let mut webhooks = 0u64;
    super::for_each_after(conn, 0, |e| {
        let broken = |reason: String| VerifyError::Broken { seq: e.seq, reason };
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
        if e.kind == kinds::WEBHOOK_RECEIVED {
            webhooks += 1;
            if let Some(keys) = keys {
                keys.verify(&e.body, e.signature.as_deref())
                    .map_err(|why| broken(format!("webhook signature no longer verifies: {why}")))?;
            }
        }
        prev = e.hash;
        expected_seq += 1;
        Ok(())
    })?;
    Ok(VerifySummary { events: expected_seq - 1, webhooks, head: prev })
}
