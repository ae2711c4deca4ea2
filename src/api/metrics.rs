//! What the HTTP surface records (webhooks by result, answer times), the
//! gauges it reads from the database at each scrape, and the exposition of
//! every layer's metrics at `GET /metrics`.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::ledger::register;
use crate::reconcile::metrics::ReconcileMetrics;
use crate::source::Source;

/// The values of the webhook counter's result label, each exposed from the
/// start as 0.
pub const WEBHOOK_RESULTS: [&str; 7] =
    ["accepted", "duplicate", "bad_signature", "malformed", "too_large", "body_timeout", "unavailable"];

/// The HTTP surface's metrics, and what `/metrics` exposes.
pub struct ApiMetrics {
    /// Every registry `/metrics` renders, in order.
    exposed: Vec<Registry>,
    /// Webhooks by source and result: accepted, duplicate, bad_signature,
    /// malformed, too_large, body_timeout, unavailable.
    pub webhooks: IntCounterVec,
    /// HTTP answer time by route (its pattern, not the path) and status
    /// class (2xx, 4xx, 5xx).
    pub http_duration: HistogramVec,
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
    /// 1 while the projections catch up with the ledger since the start
    /// (reads answer 503, the reconciler waits), or cannot be written.
    pub projection_catching_up: IntGauge,
    /// Seconds since the reconciler last finished a pass.
    pub reconciler_last_pass_age_seconds: IntGauge,
    /// Seconds since the oldest obligation still being retried was first
    /// requested (0: none is): how long the platform has been failing it,
    /// refreshed at each scrape.
    pub oldest_retrying_age_seconds: IntGauge,
    /// The reconciler's own, for the age of its last pass.
    pub reconcile: Arc<ReconcileMetrics>,
    /// What the read side's queries cost SQLite.
    pub reads: ReadMeter,
}

/// What the reads of requests (pages, lists, the audit, scrapes) cost
/// SQLite, counted by the read pool after each one from SQLite's own
/// statement counters. None of them should grow with the ledger: a full
/// scan or a sort in `full_scan_steps` or `sorts` is a query that reads
/// every row, and the tests hold each page to a fixed number of
/// statements and steps whatever the ledger holds.
#[derive(Debug, Clone)]
pub struct ReadMeter {
    /// Statements run.
    pub statements: IntCounter,
    /// Steps of SQLite's virtual machine: the work done, rows visited.
    pub steps: IntCounter,
    /// Steps forward in a full scan of a table (no index used).
    pub full_scan_steps: IntCounter,
    /// Sorts of a result (an ORDER BY no index answers).
    pub sorts: IntCounter,
}

impl ReadMeter {
    fn registered(r: &Registry) -> Self {
        let counter = |name: &str, help: &str| register(r, IntCounter::new(name, help).unwrap());
        Self {
            statements: counter("read_statements_total", "SQL statements the read side ran"),
            steps: counter("read_steps_total", "Virtual machine steps of the read side's statements"),
            full_scan_steps: counter(
                "read_full_scan_steps_total",
                "Steps of the read side's statements through full table scans",
            ),
            sorts: counter("read_sorts_total", "Sorts the read side's statements did"),
        }
    }
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiMetrics")
    }
}

impl ApiMetrics {
    /// The HTTP surface's metrics, registered in `r`; `/metrics` renders
    /// `exposed` (which should hold `r`).
    pub fn registered(r: &Registry, exposed: Vec<Registry>, reconcile: Arc<ReconcileMetrics>) -> Self {
        let m = Self {
            exposed,
            http_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "Time to answer an HTTP request")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
                    &["route", "status_class"],
                )
                .unwrap(),
            ),
            webhooks: register(
                r,
                IntCounterVec::new(
                    Opts::new("webhooks_total", "Webhooks received, by source and result"),
                    &["source", "result"],
                )
                .unwrap(),
            ),
            obligations: register(
                r,
                IntGaugeVec::new(Opts::new("obligations", "Obligations by kind and state"), &["kind", "state"])
                    .unwrap(),
            ),
            awaiting_data: register(
                r,
                IntGauge::new(
                    "invitations_awaiting_data",
                    "Invitations waiting for their data (claim without it, not fetched yet)",
                )
                .unwrap(),
            ),
            in_doubt: register(
                r,
                IntGauge::new("obligations_in_doubt", "Obligations waiting for an operator's decision").unwrap(),
            ),
            ledger_head_seq: register(r, IntGauge::new("ledger_head_seq", "Highest committed ledger seq").unwrap()),
            projection_seq: register(
                r,
                IntGauge::new("projection_checkpoint_seq", "Last ledger seq folded into the projections").unwrap(),
            ),
            projection_lag_events: register(
                r,
                IntGauge::new("projection_lag_events", "Ledger events not yet projected").unwrap(),
            ),
            projection_catching_up: register(
                r,
                IntGauge::new(
                    "projection_catching_up",
                    "1 while the projections catch up with the ledger (reads answer 503 until they are current)",
                )
                .unwrap(),
            ),
            reconciler_last_pass_age_seconds: register(
                r,
                IntGauge::new("reconciler_last_pass_age_seconds", "Seconds since the last reconciler pass").unwrap(),
            ),
            oldest_retrying_age_seconds: register(
                r,
                IntGauge::new(
                    "oldest_retrying_obligation_age_seconds",
                    "Seconds since the oldest obligation still being retried was first requested (0: none)",
                )
                .unwrap(),
            ),
            reconcile,
            reads: ReadMeter::registered(r),
        };
        for source in Source::ALL {
            for result in WEBHOOK_RESULTS {
                m.webhooks.with_label_values(&[source.as_str(), result]);
            }
        }
        m
    }

    /// Counts one webhook by source and result (one of [`WEBHOOK_RESULTS`]).
    pub fn webhook(&self, source: Source, result: &str) {
        debug_assert!(WEBHOOK_RESULTS.contains(&result), "unlisted webhook result {result}");
        self.webhooks.with_label_values(&[source.as_str(), result]).inc();
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

    /// The Prometheus text exposition of every registry exposed.
    pub fn render(&self) -> String {
        let families: Vec<_> = self.exposed.iter().flat_map(Registry::gather).collect();
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&families, &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// Metrics registered nowhere but exposed, for a state built without the
/// service around it (tests).
impl Default for ApiMetrics {
    fn default() -> Self {
        let r = Registry::new_custom(Some("invitation_ledger".into()), None).expect("valid prefix");
        Self::registered(&r, vec![r.clone()], Arc::default())
    }
}
