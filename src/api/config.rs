//! The HTTP surface's own settings, validated by the command line's
//! arguments (`config::ServeArgs`) and handed down.

use std::path::PathBuf;

use crate::lightspark::signature::SigningKeys;
use crate::reconcile::ReconcileConfig;
use crate::secret::Secret;

/// What the HTTP surface needs to know.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The ledger file (or, with a PostgreSQL ledger, this instance's
    /// replica of it) beside which the projections the reads use live.
    pub db: PathBuf,
    pub signing_keys: SigningKeys,
    /// Grid's webhook keys; `None`: `POST /webhooks/grid` answers 404.
    pub grid_keys: Option<crate::grid::signature::GridKeys>,
    /// `None` only when the listener is on loopback: then `/v1` is open to
    /// local callers, which is what a developer on a laptop expects.
    pub read_api_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// The reconciler's settings: which sources can be fetched, how long
    /// the platform keeps keys (the audit's horizon), what is owed.
    pub reconcile: ReconcileConfig,
}
