//! The service's Prometheus metrics, assembled: each layer registers its
//! own (`ledger::LedgerMetrics`, `reconcile::metrics::ReconcileMetrics`,
//! `api::metrics::ApiMetrics`) in one registry under the
//! `invitation_ledger_` prefix, beside the standard `process_*` families;
//! `GET /metrics` renders them all. A value per service (not a global) so
//! that tests running several services in one process see their own.

use std::sync::Arc;

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::api::metrics::ApiMetrics;
use crate::ledger::{register, LedgerMetrics};
use crate::reconcile::metrics::ReconcileMetrics;

/// Every layer's metrics of one service.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub ledger: Arc<LedgerMetrics>,
    pub reconcile: Arc<ReconcileMetrics>,
    pub api: Arc<ApiMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new_custom(Some("invitation_ledger".into()), None).expect("valid prefix");
        // Without the service's prefix, as dashboards expect them.
        let process = Registry::new();
        process
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("the process collector registers once");
        // 1, labelled with the version this binary was built as: which
        // build runs where, and when it changed.
        let build_info = register(
            &registry,
            IntGaugeVec::new(Opts::new("build_info", "Always 1; the version of the running binary"), &["version"])
                .unwrap(),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let ledger = Arc::new(LedgerMetrics::registered(&registry));
        let reconcile = Arc::new(ReconcileMetrics::registered(&registry));
        let api = Arc::new(ApiMetrics::registered(&registry, vec![process, registry.clone()], reconcile.clone()));
        Self { ledger, reconcile, api }
    }
}
