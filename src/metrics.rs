//! Prometheus metrics of one running service. Each stage gets the same
//! `Arc<Metrics>` and records what it does; `GET /metrics` renders them.
//! A value per service (not a global) so that tests running several
//! services in one process see their own counts.

use crate::projection::events::ObligationKind;
use crate::source::Source;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` families (memory, CPU, open files), without
    /// the service's prefix, as dashboards expect them.
    process: Registry,
    /// Webhooks by source and result: accepted, duplicate, bad_signature,
    /// malformed, too_large, body_timeout, unavailable.
    pub webhooks: IntCounterVec,
    /// HTTP answer time by route (its pattern, not the path) and status
    /// class (2xx, 4xx, 5xx).
    pub http_duration: HistogramVec,
    /// Events appended to the ledger (duplicates excluded).
    pub ledger_appends: IntCounter,
    /// Webhooks whose Lightspark event id was already stored with other bytes
    /// (both are kept).
    pub same_id_other_body: IntCounter,
    /// Appends per group commit.
    pub commit_batch_size: Histogram,
    /// Time from a batch's start to its commit, seconds.
    pub commit_seconds: Histogram,
    /// Calls to the payment platform and the notification endpoint, by
    /// obligation kind and outcome (succeeded, failed, transient).
    pub obligation_calls: IntCounterVec,
    /// Invitation fetches by source and outcome (changed, unchanged,
    /// not_found, not_found_again, not_an_invitation, identity_mismatch, superseded: the
    /// invitation changed meanwhile and no longer wanted the answer, error).
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
    /// Seconds since the oldest obligation still being retried was first
    /// requested (0: none is): how long the platform has been failing it,
    /// refreshed at each scrape.
    pub oldest_retrying_age_seconds: IntGauge,
    /// 1, labelled with the version this binary was built as: which build
    /// runs where, and when it changed.
    pub build_info: IntGaugeVec,
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
        let process = Registry::new();
        process
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("the process collector registers once");
        let m = Self {
            process,
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "Time to answer an HTTP request")
                        .buckets(buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0])),
                    &["route", "status_class"],
                )
                .unwrap(),
            ),
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
            obligation_calls: register(
                &r,
                IntCounterVec::new(
                    Opts::new("obligation_calls_total", "Payment and notification calls, by kind and outcome"),
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
            oldest_retrying_age_seconds: register(
                &r,
                IntGauge::new(
                    "oldest_retrying_obligation_age_seconds",
                    "Seconds since the oldest obligation still being retried was first requested (0: none)",
                )
                .unwrap(),
            ),
            build_info: register(
                &r,
                IntGaugeVec::new(Opts::new("build_info", "Always 1; the version of the running binary"), &["version"])
                    .unwrap(),
            ),
            last_pass_unix: std::sync::atomic::AtomicI64::new(0),
            registry: r,
        };
        m.zero_every_series();
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }
}

/// The values of each counter's labels. Every combination is exposed from
/// the start, as 0, so a rule such as `increase(…[5m]) > 0` sees the first
/// event rather than a series appearing from nothing.
pub const WEBHOOK_RESULTS: [&str; 7] =
    ["accepted", "duplicate", "bad_signature", "malformed", "too_large", "body_timeout", "unavailable"];
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

impl Metrics {
    fn zero_every_series(&self) {
        for source in Source::ALL {
            for result in WEBHOOK_RESULTS {
                self.webhooks.with_label_values(&[source.as_str(), result]);
            }
            for outcome in FETCH_OUTCOMES {
                self.fetches.with_label_values(&[source.as_str(), outcome]);
            }
        }
        for kind in ObligationKind::ALL {
            for outcome in CALL_OUTCOMES {
                self.obligation_calls.with_label_values(&[kind.as_str(), outcome]);
            }
        }
    }

    /// Counts one webhook by source and result (one of [`WEBHOOK_RESULTS`]).
    pub fn webhook(&self, source: Source, result: &str) {
        debug_assert!(WEBHOOK_RESULTS.contains(&result), "unlisted webhook result {result}");
        self.webhooks.with_label_values(&[source.as_str(), result]).inc();
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.process.gather();
        families.extend(self.registry.gather());
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// Records one HTTP answer: `route` is the route's pattern.
    pub fn http_answered(&self, route: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_duration.with_label_values(&[route, class]).observe(seconds);
    }
}
