//! Prometheus metrics of one running service. Each stage gets the same
//! `Arc<Metrics>` and records what it does; `GET /metrics` renders them.
//! A value per service (not a global) so that tests running several
//! services in one process see their own counts.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Webhooks by result: accepted, duplicate, bad_signature, malformed, too_large, unavailable.
    pub webhooks: IntCounterVec,
    /// Events appended to the ledger (duplicates excluded).
    pub ledger_appends: IntCounter,
    /// Webhooks whose Lightspark event id was already stored with other bytes
    /// (both are kept).
    pub same_id_other_body: IntCounter,
    /// Appends per group commit.
    pub commit_batch_size: Histogram,
    /// Time from a batch's start to its commit, seconds.
    pub commit_seconds: Histogram,
    /// Endpoint calls by obligation kind and outcome (succeeded, failed, transient).
    pub endpoint_calls: IntCounterVec,
    /// Invitation fetches by source and outcome (changed, unchanged,
    /// not_found, not_found_again, not_an_invitation, error).
    pub fetches: IntCounterVec,
    /// Obligations by kind and state, refreshed at each scrape.
    pub obligations: IntGaugeVec,
    pub in_doubt: IntGauge,
    /// Invitations whose claim came without data and no fetch has given
    /// it: nothing is paid for them until one does.
    pub awaiting_data: IntGauge,
    pub ledger_head_seq: IntGauge,
    pub projection_seq: IntGauge,
    /// Ledger events not yet folded into the projections.
    pub projection_lag_events: IntGauge,
    /// Seconds since the reconciler last finished a pass.
    pub reconciler_last_pass_age_seconds: IntGauge,
    pub reconciler_passes: IntCounter,
    /// Unix seconds of the last finished reconciler pass (0: none yet).
    pub last_pass_unix: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new_custom(Some("invitation_ledger".into()), None).expect("valid prefix");
        let buckets = |v: &[f64]| v.to_vec();
        Self {
            webhooks: register(
                &r,
                IntCounterVec::new(
                    Opts::new("webhooks_total", "Webhooks received, by source and result"),
                    &["source", "result"],
                )
                .unwrap(),
            ),
            ledger_appends: register(
                &r,
                IntCounter::new("ledger_appends_total", "Events appended to the ledger").unwrap(),
            ),
            same_id_other_body: register(
                &r,
                IntCounter::new(
                    "webhooks_same_id_other_body_total",
                    "Webhooks whose event id was stored before with a different body",
                )
                .unwrap(),
            ),
            commit_batch_size: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("ledger_commit_batch_size", "Appends committed together in one transaction")
                        .buckets(buckets(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0])),
                )
                .unwrap(),
            ),
            commit_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("ledger_commit_seconds", "Time to write and commit one batch")
                        .buckets(buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0])),
                )
                .unwrap(),
            ),
            endpoint_calls: register(
                &r,
                IntCounterVec::new(
                    Opts::new("endpoint_calls_total", "Payment and notification calls, by kind and outcome"),
                    &["kind", "outcome"],
                )
                .unwrap(),
            ),
            fetches: register(
                &r,
                IntCounterVec::new(
                    Opts::new("fetches_total", "Invitation fetches, by source and outcome"),
                    &["source", "outcome"],
                )
                .unwrap(),
            ),
            obligations: register(
                &r,
                IntGaugeVec::new(Opts::new("obligations", "Obligations by kind and state"), &["kind", "state"])
                    .unwrap(),
            ),
            awaiting_data: register(
                &r,
                IntGauge::new(
                    "invitations_awaiting_data",
                    "Invitations waiting for their data (claim without it, not fetched yet)",
                )
                .unwrap(),
            ),
            in_doubt: register(
                &r,
                IntGauge::new("obligations_in_doubt", "Obligations waiting for an operator's decision").unwrap(),
            ),
            ledger_head_seq: register(&r, IntGauge::new("ledger_head_seq", "Highest committed ledger seq").unwrap()),
            projection_seq: register(
                &r,
                IntGauge::new("projection_checkpoint_seq", "Last ledger seq folded into the projections").unwrap(),
            ),
            projection_lag_events: register(
                &r,
                IntGauge::new("projection_lag_events", "Ledger events not yet projected").unwrap(),
            ),
            reconciler_last_pass_age_seconds: register(
                &r,
                IntGauge::new("reconciler_last_pass_age_seconds", "Seconds since the last reconciler pass").unwrap(),
            ),
            reconciler_passes: register(&r, IntCounter::new("reconciler_passes_total", "Reconciler passes").unwrap()),
            last_pass_unix: std::sync::atomic::AtomicI64::new(0),
            registry: r,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
