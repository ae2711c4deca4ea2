//! The one-shot commands. Each returns the text to print; `main.rs` prints it
//! and turns an error into a one-line reason and a non-zero exit.

use anyhow::Context;

use crate::config::{DbArgs, KeyArgs};
use crate::ledger::{self, verify};

/// `verify`: the hash chain and, when a key is configured, every stored
/// webhook signature.
///
/// # Errors
/// Naming the first bad `seq` and why, or why the ledger could not be read.
pub fn verify(db: &DbArgs, key: &KeyArgs) -> anyhow::Result<String> {
    let keys = key.signing_key.as_ref().map(|_| key.keys()).transpose()?;
    let conn = open_existing(db)?;
    let summary = verify::verify(&conn, keys.as_ref())?;
    let signatures = if keys.is_some() { "signatures verified" } else { "signatures not checked (no LIGHTSPARK_WEBHOOK_SIGNING_KEY)" };
    Ok(format!(
        "ledger intact: events={} webhooks={} head={} ({signatures})",
        summary.events,
        summary.webhooks,
        hex::encode(summary.head)
    ))
}

/// Opens the ledger read-only, refusing a path that does not exist rather
/// than creating an empty ledger there.
///
/// # Errors
/// When the file is missing or cannot be opened.
pub fn open_existing(db: &DbArgs) -> anyhow::Result<rusqlite::Connection> {
    anyhow::ensure!(db.db.exists(), "no ledger at {} (LEDGER_DB): nothing to read", db.db.display());
    ledger::open_read_only(&db.db).with_context(|| format!("opening {}", db.db.display()))
}
