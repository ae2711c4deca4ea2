//! What a pass did, and why a step of it could not be done.

use chrono::{DateTime, Utc};

use crate::ledger::LedgerError;
use crate::projection::store::ProjectionError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("recording in the ledger failed: {0}")]
    Ledger(#[from] LedgerError),
    #[error("reconciler task failed: {0}")]
    Task(String),
}

/// What one pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub sent: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub retry_scheduled: u32,
    pub in_doubt: u32,
    pub fetched: u32,
    pub fetch_failed: u32,
    /// Owed but not configured (no endpoint or incentive): left `pending`.
    pub not_configured: u32,
    /// The earliest scheduled retry not yet due.
    pub next_due: Option<DateTime<Utc>>,
    /// One line per action, for `reconcile --once` and `--dry-run`.
    pub lines: Vec<String>,
}

impl Outcome {
    pub fn did_something(&self) -> bool {
        self.sent + self.in_doubt + self.fetched + self.fetch_failed > 0
    }

    /// Adds another step's outcome to this pass's.
    pub(super) fn absorb(&mut self, other: Outcome) {
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.retry_scheduled += other.retry_scheduled;
        self.in_doubt += other.in_doubt;
        self.fetched += other.fetched;
        self.fetch_failed += other.fetch_failed;
        self.lines.extend(other.lines);
    }

    /// Notes a time at which something falls due, keeping the earliest.
    pub(super) fn due_at(&mut self, at: DateTime<Utc>) {
        self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
    }

    /// One line of what was done.
    pub(super) fn line(mut self, line: String) -> Self {
        self.lines.push(line);
        self
    }
}
