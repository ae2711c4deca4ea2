//! What the reconciler records: its calls by outcome, its fetches, its
//! passes.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::ledger::register;
use crate::source::Source;
use crate::vocab::ObligationKind;

/// The values of each counter's labels. Every combination is exposed from
/// the start, as 0, so a rule such as `increase(…[5m]) > 0` sees the first
/// event rather than a series appearing from nothing.
pub const CALL_OUTCOMES: [&str; 3] = ["succeeded", "failed", "transient"];
pub const FETCH_OUTCOMES: [&str; 8] = [
    "changed",
    "unchanged",
    "not_found",
    "not_found_again",
    "not_an_invitation",
    "identity_mismatch",
    "superseded",
    "error",
];

/// The reconciler's metrics, registered by whoever assembles the service's.
#[derive(Debug)]
pub struct ReconcileMetrics {
    /// Calls to the payment platform and the notification endpoint, by
    /// obligation kind and outcome (succeeded, failed, transient).
    pub obligation_calls: IntCounterVec,
    /// Invitation fetches by source and outcome (changed, unchanged,
    /// not_found, not_found_again, not_an_invitation, identity_mismatch,
    /// superseded: the invitation changed meanwhile and no longer wanted
    /// the answer, error).
    pub fetches: IntCounterVec,
    /// Claims of registered invitations first seen by the sweep, by
    /// source: each one a webhook that did not arrive.
    pub claims_found_by_sweep: IntCounterVec,
    pub passes: IntCounter,
    /// 1 while this instance leads the reconciler (always, with a SQLite
    /// ledger), 0 while another does or the database cannot be reached.
    pub leader: IntGauge,
    /// The epoch this instance last led under (fencing: each new leader's
    /// is greater).
    pub epoch: IntGauge,
    /// Unix seconds of the last finished reconciler pass (0: none yet).
    pub last_pass_unix: std::sync::atomic::AtomicI64,
}

impl ReconcileMetrics {
    /// The reconciler's metrics, registered in `r`, every series at 0.
    pub fn registered(r: &Registry) -> Self {
        let m = Self {
            obligation_calls: register(
                r,
                IntCounterVec::new(
                    Opts::new("obligation_calls_total", "Payment and notification calls, by kind and outcome"),
                    &["kind", "outcome"],
                )
                .unwrap(),
            ),
            fetches: register(
                r,
                IntCounterVec::new(
                    Opts::new("fetches_total", "Invitation fetches, by source and outcome"),
                    &["source", "outcome"],
                )
                .unwrap(),
            ),
            claims_found_by_sweep: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "claims_found_by_sweep_total",
                        "Claims of registered invitations first seen by the sweep, not a webhook, by source",
                    ),
                    &["source"],
                )
                .unwrap(),
            ),
            passes: register(r, IntCounter::new("reconciler_passes_total", "Reconciler passes").unwrap()),
            leader: register(
                r,
                IntGauge::new("reconciler_leader", "1 while this instance leads the reconciler, else 0").unwrap(),
            ),
            epoch: register(
                r,
                IntGauge::new("reconciler_epoch", "The leadership epoch this instance last led under").unwrap(),
            ),
            last_pass_unix: std::sync::atomic::AtomicI64::new(0),
        };
        for source in Source::ALL {
            m.claims_found_by_sweep.with_label_values(&[source.as_str()]);
            for outcome in FETCH_OUTCOMES {
                m.fetches.with_label_values(&[source.as_str(), outcome]);
            }
        }
        for kind in ObligationKind::ALL {
            for outcome in CALL_OUTCOMES {
                m.obligation_calls.with_label_values(&[kind.as_str(), outcome]);
            }
        }
        m
    }

    /// Counts one payment or notification call (outcome one of [`CALL_OUTCOMES`]).
    pub fn obligation_call(&self, kind: ObligationKind, outcome: &str) {
        debug_assert!(CALL_OUTCOMES.contains(&outcome), "unlisted call outcome {outcome}");
        self.obligation_calls.with_label_values(&[kind.as_str(), outcome]).inc();
    }

    /// Counts one fetch by source and outcome (one of [`FETCH_OUTCOMES`]).
    pub fn fetched(&self, source: Source, outcome: &str) {
        debug_assert!(FETCH_OUTCOMES.contains(&outcome), "unlisted fetch outcome {outcome}");
        self.fetches.with_label_values(&[source.as_str(), outcome]).inc();
    }
}

/// Metrics registered nowhere: for a reconciler whose counts nobody reads.
impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self::registered(&Registry::new())
    }
}
