//! What the ledger's writers record: appends, group commits, and the
//! tampering signal of one event id with other bytes.

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

use super::register;

/// The ledger's metrics, registered by whoever assembles the service's.
#[derive(Debug, Clone)]
pub struct LedgerMetrics {
    /// Events appended to the ledger (duplicates excluded).
    pub appends: IntCounter,
    /// Webhooks whose Lightspark event id was already stored with other
    /// bytes (both are kept).
    pub same_id_other_body: IntCounter,
    /// Appends per group commit.
    pub commit_batch_size: Histogram,
    /// Time from a batch's start to its commit, seconds.
    pub commit_seconds: Histogram,
}

impl LedgerMetrics {
    /// The ledger's metrics, registered in `r`.
    pub fn registered(r: &Registry) -> Self {
        let buckets = |v: &[f64]| v.to_vec();
        Self {
            appends: register(r, IntCounter::new("ledger_appends_total", "Events appended to the ledger").unwrap()),
            same_id_other_body: register(
                r,
                IntCounter::new(
                    "webhooks_same_id_other_body_total",
                    "Webhooks whose event id was stored before with a different body",
                )
                .unwrap(),
            ),
            commit_batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("ledger_commit_batch_size", "Appends committed together in one transaction")
                        .buckets(buckets(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0])),
                )
                .unwrap(),
            ),
            commit_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("ledger_commit_seconds", "Time to write and commit one batch")
                        .buckets(buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0])),
                )
                .unwrap(),
            ),
        }
    }
}

/// Metrics registered nowhere: for a writer whose counts nobody reads (a
/// command, a test).
impl Default for LedgerMetrics {
    fn default() -> Self {
        Self::registered(&Registry::new())
    }
}
