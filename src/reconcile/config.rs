//! The reconciler's own settings, validated by the command line's
//! arguments (`config::ReconcileArgs`) and handed down.

use std::time::Duration;

use crate::money::Money;
use crate::secret::Secret;
use crate::source::Source;

/// Validated reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub payout_url: Option<String>,
    pub payout_signing_key: Option<Secret>,
    pub notify_url: Option<String>,
    pub inviter_incentive: Option<Money>,
    pub lightspark_api_url: String,
    /// Both set, or neither (then invitations without data stay unfetched).
    pub lightspark_credentials: Option<(String, Secret)>,
    /// How long after its first event an invitation is still fetched.
    pub fetch_horizon: Duration,
    pub grid_api_url: String,
    /// Both set, or neither (then Grid invitations are not fetched).
    pub grid_credentials: Option<(String, Secret)>,
    pub interval: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub idempotency_window: Duration,
    pub request_timeout: Duration,
    pub concurrency: usize,
}

impl ReconcileConfig {
    /// Whether invitations of `source` can be fetched (its API credentials
    /// are set): an invitation whose data is missing shows `not_configured`
    /// otherwise.
    pub fn fetch_configured(&self, source: Source) -> bool {
        match source {
            Source::Lightspark => self.lightspark_credentials.is_some(),
            Source::Grid => self.grid_credentials.is_some(),
        }
    }

    /// The settings that would let `source` be fetched from, for messages.
    pub fn fetch_settings(source: Source) -> &'static str {
        source.fetch_settings()
    }
}
