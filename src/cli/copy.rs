//! `copy --from <path|URL> --to <path|URL>`: a ledger copied between
//! stores, byte for byte (the same seqs, times and hashes: the same head
//! hash), its chain verified as it goes. A target that already holds
//! another ledger is refused and left unchanged; one that holds a prefix of
//! this one (an interrupted copy) is continued.

use anyhow::Context;

use crate::config::{DbArgs, LedgerLocation};
use crate::ledger::postgres::PgLedger;
use crate::ledger::verify::{Verifier, WebhookKeys, BATCH};
use crate::ledger::{self, Hash, LedgerEvent, LedgerStore};

/// Where events are read from.
enum From {
    Sqlite(rusqlite::Connection),
    Postgres(PgLedger),
}

impl From {
    async fn open(location: LedgerLocation) -> anyhow::Result<Self> {
        Ok(match location {
            LedgerLocation::Sqlite(path) => From::Sqlite(super::commands::open_existing(&path)?),
            LedgerLocation::Postgres(url) => From::Postgres(PgLedger::open_existing(&url).await?),
        })
    }

    async fn read(&self, after: u64, limit: usize) -> anyhow::Result<Vec<LedgerEvent>> {
        Ok(match self {
            From::Sqlite(c) => ledger::read_after(c, after, limit)?,
            From::Postgres(pg) => pg.read_range(after, limit).await?,
        })
    }
}

/// Where events are written to, verbatim.
enum To {
    Sqlite(rusqlite::Connection),
    Postgres(PgLedger),
}

impl To {
    async fn open(location: LedgerLocation) -> anyhow::Result<Self> {
        Ok(match location {
            LedgerLocation::Sqlite(path) => {
                To::Sqlite(ledger::open(&path).with_context(|| format!("opening the target {}", path.display()))?)
            }
            LedgerLocation::Postgres(url) => To::Postgres(PgLedger::connect(&url).await?),
        })
    }

    async fn head(&self) -> anyhow::Result<(u64, Hash)> {
        Ok(match self {
            To::Sqlite(c) => ledger::head(c)?,
            To::Postgres(pg) => pg.head().await?,
        })
    }

    async fn import(&mut self, events: &[LedgerEvent]) -> anyhow::Result<()> {
        match self {
            To::Sqlite(c) => ledger::import(c, events)?,
            To::Postgres(pg) => pg.import(events).await?,
        }
        Ok(())
    }
}

/// Copies the ledger at `from` to `to`.
///
/// # Errors
/// When either cannot be opened, the target holds another ledger, or the
/// source's chain is broken (naming the seq).
pub async fn copy(from: &DbArgs, to: &DbArgs) -> anyhow::Result<String> {
    let (from_shown, to_shown) = (from.shown(), to.shown());
    let source = From::open(from.location()?).await?;
    let mut target = To::open(to.location()?).await?;
    let (start, target_hash) = target.head().await?;
    // The source is verified from its first event, so the part already in
    // the target is checked too (it is read, not written).
    let keys = WebhookKeys::default();
    let mut verifier = Verifier::new(&keys);
    let mut after = 0;
    let mut copied = 0u64;
    loop {
        let batch = source.read(after, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.seq) else { break };
        verifier.feed(&batch).with_context(|| format!("the source {from_shown} does not verify"))?;
        if after < start {
            if let Some(e) = batch.iter().find(|e| e.seq == start) {
                anyhow::ensure!(
                    e.hash == target_hash,
                    "the target {to_shown} holds another ledger (seq {start} has hash {target_hash}, the source's is {}): it was left unchanged",
                    e.hash
                );
            }
        }
        let new: Vec<LedgerEvent> = batch.into_iter().filter(|e| e.seq > start).collect();
        if !new.is_empty() {
            copied += new.len() as u64;
            target.import(&new).await?;
        }
        after = last;
    }
    let summary = verifier.finish();
    anyhow::ensure!(
        summary.events >= start,
        "the target {to_shown} holds more events (seq {start}) than the source {from_shown} (seq {}): it holds another ledger, and was left unchanged",
        summary.events
    );
    let (head, hash) = target.head().await?;
    anyhow::ensure!(
        (head, hash) == (summary.events, summary.head),
        "the target's head (seq {head}, {hash}) is not the source's (seq {}, {})",
        summary.events,
        summary.head
    );
    Ok(format!(
        "copied {copied} events from {from_shown} to {to_shown}{}; head seq={head} hash={hash}",
        if start > 0 { format!(" (continuing after seq {start})") } else { String::new() }
    ))
}
