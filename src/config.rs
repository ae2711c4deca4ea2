//! Settings from environment variables and flags, validated once at start-up.
//!
//! Every setting is both a flag and an environment variable (the README
//! lists them). Invalid values stop the program with one sentence naming
//! the setting and how to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::api::ApiConfig;
use crate::lightspark::signature::SigningKeys;
use crate::money::Money;
pub use crate::reconcile::ReconcileConfig;
use crate::secret::Secret;

/// A configuration value that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the ledger lives. Shared by every command.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// The ledger: a SQLite file (created with its folder when missing), or a postgres:// or postgresql:// URL.
    #[arg(
        long = "db",
        env = "LEDGER_DB",
        default_value = "./data/ledger.db",
        hide_env_values = true,
        help_heading = "Ledger"
    )]
    pub db: String,
    /// With a PostgreSQL ledger: the folder where this instance keeps its projections and its replica of the ledger.
    #[arg(long = "projections-dir", env = "PROJECTIONS_DIR", default_value = "./data", help_heading = "Ledger")]
    pub projections_dir: PathBuf,
}

/// Where the ledger lives, read from `LEDGER_DB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (the URL; never shown with its password).
    Postgres(String),
}

impl DbArgs {
    /// A ledger in the SQLite file `path`.
    pub fn file(path: &std::path::Path) -> Self {
        Self { db: path.display().to_string(), projections_dir: PathBuf::from("./data") }
    }

    /// Where the ledger lives.
    ///
    /// # Errors
    /// [`ConfigError`] naming `LEDGER_DB` when it is a URL of another kind:
    /// a URL is never taken for a file name.
    pub fn location(&self) -> Result<LedgerLocation, ConfigError> {
        let raw = self.db.trim();
        if crate::ledger::postgres::is_url(raw) {
            return Ok(LedgerLocation::Postgres(raw.to_owned()));
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Err(ConfigError(format!(
                "LEDGER_DB names a {scheme}:// URL: give a SQLite file path, or a postgres:// or postgresql:// URL."
            )));
        }
        if raw.is_empty() {
            return Err(ConfigError("LEDGER_DB is empty: give a SQLite file path or a postgres:// URL.".into()));
        }
        Ok(LedgerLocation::Sqlite(PathBuf::from(raw)))
    }

    /// The SQLite file beside which this process keeps its projections:
    /// the ledger itself, or the replica of a PostgreSQL ledger in
    /// `PROJECTIONS_DIR`.
    pub fn local(&self) -> PathBuf {
        match self.location() {
            Ok(LedgerLocation::Postgres(_)) => self.projections_dir.join("ledger-replica.db"),
            _ => PathBuf::from(self.db.trim()),
        }
    }

    /// `LEDGER_DB` as messages show it: a URL without its password.
    pub fn shown(&self) -> String {
        crate::ledger::postgres::redacted(self.db.trim())
    }
}

/// The webhook signing secret(s) and Grid's public key(s), needed by
/// `serve` and `verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Lightspark webhook signing secret; several comma-separated during key rotation.
    #[arg(
        long = "signing-key",
        env = "LIGHTSPARK_WEBHOOK_SIGNING_KEY",
        hide_env_values = true,
        help_heading = "Webhooks"
    )]
    pub signing_key: Option<String>,
    /// Lightspark Grid's webhook public key(s), P-256 SPKI PEM (several PEM blocks during rotation); enables POST /webhooks/grid.
    #[arg(long = "grid-webhook-public-key", env = "GRID_WEBHOOK_PUBLIC_KEY", help_heading = "Webhooks")]
    pub grid_webhook_public_key: Option<String>,
}

impl KeyArgs {
    /// Grid's webhook keys, when configured.
    ///
    /// # Errors
    /// When the setting holds no usable P-256 public key.
    pub fn grid_keys(&self) -> Result<Option<crate::grid::signature::GridKeys>, ConfigError> {
        let Some(raw) = self.grid_webhook_public_key.as_deref().filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        crate::grid::signature::GridKeys::parse(raw)
            .map(Some)
            .map_err(|e| ConfigError(format!("GRID_WEBHOOK_PUBLIC_KEY cannot be used: {e}.")))
    }

    /// # Errors
    /// When the setting is absent or holds only blanks.
    pub fn keys(&self) -> Result<SigningKeys, ConfigError> {
        let raw = self.signing_key.as_deref().ok_or_else(|| {
            ConfigError(
                "LIGHTSPARK_WEBHOOK_SIGNING_KEY is not set: set it (or --signing-key) to the webhook signing secret from the Lightspark dashboard.".into(),
            )
        })?;
        SigningKeys::parse(raw).ok_or_else(|| {
            ConfigError(
                "LIGHTSPARK_WEBHOOK_SIGNING_KEY holds no secret: give one, or several separated by commas.".into(),
            )
        })
    }
}

/// Whether each source's API credentials are set, for the commands that
/// show invitations (`status`): an invitation waiting for its data shows
/// `not_configured` when they are not, as the service shows it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FetchPresenceArgs {
    /// Lightspark API client id (only whether it is set matters here).
    #[arg(long = "lightspark-api-client-id", env = "LIGHTSPARK_API_CLIENT_ID", hide_env_values = true)]
    pub lightspark_api_client_id: Option<String>,
    /// Grid API token id (only whether it is set matters here).
    #[arg(long = "grid-api-token-id", env = "GRID_API_TOKEN_ID", hide_env_values = true)]
    pub grid_api_token_id: Option<String>,
}

impl FetchPresenceArgs {
    pub fn fetching(&self) -> crate::projection::view::Fetching {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        crate::projection::view::Fetching::new(|s| match s {
            crate::source::Source::Lightspark => set(&self.lightspark_api_client_id),
            crate::source::Source::Grid => set(&self.grid_api_token_id),
        })
    }
}

/// The payment platform, notification endpoint, incentive and pacing: what
/// the reconciler needs. Shared by `serve` and `reconcile --once`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// Payment platform endpoint (POST); unset: payments and incentives stay pending.
    #[arg(long = "payout-url", env = "PAYOUT_URL", help_heading = "Payment platform")]
    pub payout_url: Option<String>,
    /// Key for the ledger-signature header (hex HMAC-SHA256 of each request body).
    #[arg(
        long = "payout-signing-key",
        env = "PAYOUT_SIGNING_KEY",
        hide_env_values = true,
        help_heading = "Payment platform"
    )]
    pub payout_signing_key: Option<String>,
    /// Inviter notification endpoint (POST); unset: notifications stay pending.
    #[arg(long = "notify-url", env = "NOTIFY_URL", help_heading = "Payment platform")]
    pub notify_url: Option<String>,
    /// Incentive forwarded to the inviter: AMOUNT:CURRENCY in the currency's smallest unit (100:USD is 1.00 USD), its decimals from ISO 4217, or AMOUNT:CURRENCY:DECIMALS for another code (100:XYZ:2); unset: audited, not forwarded.
    #[arg(long = "inviter-incentive", env = "INVITER_INCENTIVE", help_heading = "Payment platform")]
    pub inviter_incentive: Option<String>,
    /// Lightspark GraphQL endpoint used to fetch invitations a webhook named without data.
    #[arg(
        long = "lightspark-api-url",
        env = "LIGHTSPARK_API_URL",
        default_value = "https://api.lightspark.com/graphql/server/2023-09-13",
        help_heading = "Lightspark API"
    )]
    pub lightspark_api_url: String,
    /// Lightspark API client id.
    #[arg(long = "lightspark-api-client-id", env = "LIGHTSPARK_API_CLIENT_ID", help_heading = "Lightspark API")]
    pub lightspark_api_client_id: Option<String>,
    /// Lightspark API client secret.
    #[arg(
        long = "lightspark-api-client-secret",
        env = "LIGHTSPARK_API_CLIENT_SECRET",
        hide_env_values = true,
        help_heading = "Lightspark API"
    )]
    pub lightspark_api_client_secret: Option<String>,
    /// How long after its first event an invitation is still fetched again
    /// while it can change what is owed (e.g. 7d).
    #[arg(long = "fetch-horizon", env = "FETCH_HORIZON", default_value = "7d", help_heading = "Lightspark API")]
    pub fetch_horizon: String,
    /// Lightspark Grid API, used to fetch Grid invitations by code.
    #[arg(
        long = "grid-api-url",
        env = "GRID_API_URL",
        default_value = crate::grid::client::DEFAULT_GRID_API_URL,
        help_heading = "Grid API"
    )]
    pub grid_api_url: String,
    /// Grid API token id (HTTP Basic user).
    #[arg(long = "grid-api-token-id", env = "GRID_API_TOKEN_ID", help_heading = "Grid API")]
    pub grid_api_token_id: Option<String>,
    /// Grid API client secret (HTTP Basic password).
    #[arg(
        long = "grid-api-client-secret",
        env = "GRID_API_CLIENT_SECRET",
        hide_env_values = true,
        help_heading = "Grid API"
    )]
    pub grid_api_client_secret: Option<String>,
    /// Pause between reconciler passes when nothing wakes it, in milliseconds.
    #[arg(
        long = "reconcile-interval-ms",
        env = "RECONCILE_INTERVAL_MS",
        default_value_t = 2000,
        help_heading = "Reconciler"
    )]
    pub reconcile_interval_ms: u64,
    /// First retry delay after a transient failure, in milliseconds.
    #[arg(long = "retry-base-ms", env = "RETRY_BASE_MS", default_value_t = 1000, help_heading = "Reconciler")]
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long = "retry-max-ms", env = "RETRY_MAX_MS", default_value_t = 3_600_000, help_heading = "Reconciler")]
    pub retry_max_ms: u64,
    /// How long the payment platform remembers an idempotency key (e.g. 24h); older requests become in_doubt.
    #[arg(long = "idempotency-window", env = "IDEMPOTENCY_WINDOW", default_value = "24h", help_heading = "Reconciler")]
    pub idempotency_window: String,
    /// Bound on each outgoing HTTP request, in milliseconds.
    #[arg(
        long = "request-timeout-ms",
        env = "REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        help_heading = "Reconciler"
    )]
    pub request_timeout_ms: u64,
    /// Most obligations the reconciler works on at once.
    #[arg(
        long = "reconcile-concurrency",
        env = "RECONCILE_CONCURRENCY",
        default_value_t = 8,
        help_heading = "Reconciler"
    )]
    pub reconcile_concurrency: usize,
}

fn http_url(setting: &str, raw: &Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    let ok = raw.parse::<reqwest::Url>().is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        return Err(ConfigError(format!(
            "{setting} {raw:?} is not an http(s) URL: give one such as https://payments.example/v1/payouts."
        )));
    }
    Ok(Some(raw.to_owned()))
}

impl ReconcileArgs {
    /// The defaults, without endpoints: what the tests start from, the unit
    /// tests as they are and the black-box ones with faster pacing. Public
    /// (but hidden) only so that `tests/support` does not list every field
    /// again.
    #[doc(hidden)]
    pub fn for_tests() -> Self {
        ReconcileArgs {
            payout_url: None,
            payout_signing_key: None,
            notify_url: None,
            inviter_incentive: None,
            lightspark_api_url: "http://127.0.0.1:9/unused".into(),
            lightspark_api_client_id: None,
            lightspark_api_client_secret: None,
            fetch_horizon: "7d".into(),
            grid_api_url: crate::grid::client::DEFAULT_GRID_API_URL.into(),
            grid_api_token_id: None,
            grid_api_client_secret: None,
            reconcile_interval_ms: 2000,
            retry_base_ms: 1000,
            retry_max_ms: 3_600_000,
            idempotency_window: "24h".into(),
            request_timeout_ms: 10_000,
            reconcile_concurrency: 8,
        }
    }

    /// # Errors
    /// [`ConfigError`] naming the first setting that cannot be used.
    pub fn validate(&self) -> Result<ReconcileConfig, ConfigError> {
        let inviter_incentive = match self.inviter_incentive.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(parse_incentive(raw)?),
        };
        let lightspark_credentials = match (&self.lightspark_api_client_id, &self.lightspark_api_client_secret) {
            (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                Some((id.trim().to_owned(), Secret::new(secret.clone())))
            }
            (None, None) => None,
            _ => return Err(ConfigError(
                "LIGHTSPARK_API_CLIENT_ID and LIGHTSPARK_API_CLIENT_SECRET must be set together: set both, or neither."
                    .into(),
            )),
        };
        let grid_credentials = match (&self.grid_api_token_id, &self.grid_api_client_secret) {
            (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                Some((id.trim().to_owned(), Secret::new(secret.clone())))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "GRID_API_TOKEN_ID and GRID_API_CLIENT_SECRET must be set together: set both, or neither.".into(),
                ))
            }
        };
        let fetch_horizon = parse_duration("FETCH_HORIZON", &self.fetch_horizon)?;
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(ConfigError(
                "RETRY_BASE_MS must be at least 1 and RETRY_MAX_MS at least RETRY_BASE_MS.".into(),
            ));
        }
        if self.reconcile_interval_ms == 0 {
            return Err(ConfigError("RECONCILE_INTERVAL_MS must be at least 1.".into()));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError("REQUEST_TIMEOUT_MS must be at least 1.".into()));
        }
        if self.reconcile_concurrency == 0 {
            return Err(ConfigError("RECONCILE_CONCURRENCY must be at least 1.".into()));
        }
        let idempotency_window = parse_duration("IDEMPOTENCY_WINDOW", &self.idempotency_window)?;
        if idempotency_window.is_zero() {
            return Err(ConfigError("IDEMPOTENCY_WINDOW must be longer than zero, such as 24h.".into()));
        }
        // A window no longer than one request, or than one retry gap, would
        // send an obligation to in_doubt after a single transient failure.
        let timeout = Duration::from_millis(self.request_timeout_ms);
        if idempotency_window <= timeout {
            return Err(ConfigError(format!(
                "IDEMPOTENCY_WINDOW ({}) must be longer than REQUEST_TIMEOUT_MS ({} ms): a request may reach the platform that late.",
                self.idempotency_window.trim(),
                self.request_timeout_ms
            )));
        }
        if idempotency_window <= Duration::from_millis(self.retry_max_ms) {
            return Err(ConfigError(format!(
                "IDEMPOTENCY_WINDOW ({}) must be longer than RETRY_MAX_MS ({} ms): a retry may wait that long.",
                self.idempotency_window.trim(),
                self.retry_max_ms
            )));
        }
        Ok(ReconcileConfig {
            payout_url: http_url("PAYOUT_URL", &self.payout_url)?,
            payout_signing_key: self.payout_signing_key.clone().filter(|k| !k.is_empty()).map(Secret::new),
            notify_url: http_url("NOTIFY_URL", &self.notify_url)?,
            inviter_incentive,
            lightspark_api_url: http_url("LIGHTSPARK_API_URL", &Some(self.lightspark_api_url.clone()))?.ok_or_else(
                || ConfigError("LIGHTSPARK_API_URL is empty: give the Lightspark GraphQL endpoint.".into()),
            )?,
            lightspark_credentials,
            fetch_horizon,
            grid_api_url: http_url("GRID_API_URL", &Some(self.grid_api_url.clone()))?
                .ok_or_else(|| ConfigError("GRID_API_URL is empty: give the Grid API base URL.".into()))?,
            grid_credentials,
            interval: Duration::from_millis(self.reconcile_interval_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            idempotency_window,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            concurrency: self.reconcile_concurrency,
        })
    }
}

/// Everything `serve` can be told.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
    /// Address the HTTP listener binds.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", default_value = "127.0.0.1:3000", help_heading = "HTTP")]
    pub listen_addr: String,
    /// Bearer token for the read API under /v1; required when LISTEN_ADDR is not loopback.
    #[arg(long = "read-api-token", env = "READ_API_TOKEN", hide_env_values = true, help_heading = "HTTP")]
    pub read_api_token: Option<String>,
    /// Largest webhook body accepted, in bytes.
    #[arg(long = "max-body-bytes", env = "MAX_BODY_BYTES", default_value_t = 256 * 1024, help_heading = "Webhooks")]
    pub max_body_bytes: usize,
    /// How often the ledger head is logged (`ledger head seq=… hash=…`), for
    /// log shipping to keep anchors elsewhere; also logged at start and stop.
    #[arg(long = "anchor-interval", env = "ANCHOR_INTERVAL", default_value = "1h", help_heading = "Ledger")]
    pub anchor_interval: String,
    /// Commit each append alone. Only for measuring what group commit buys.
    #[arg(long = "unbatched-commits", hide = true)]
    pub unbatched_commits: bool,
}

/// Validated settings of `serve`: the HTTP API's own, and the service's
/// wiring around it.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// What the HTTP surface needs (and the reconciler's settings in it).
    pub api: ApiConfig,
    /// Where the ledger lives (`api.db` is the SQLite file beside which
    /// this process keeps its projections).
    pub ledger: LedgerLocation,
    /// `LEDGER_DB` as messages show it: a URL without its password.
    pub ledger_shown: String,
    pub listen_addr: SocketAddr,
    /// See [`ServeArgs::anchor_interval`].
    pub anchor_interval: Duration,
    /// See [`ServeArgs::unbatched_commits`].
    pub group_commit: bool,
}

impl std::ops::Deref for ServiceConfig {
    type Target = ApiConfig;
    fn deref(&self) -> &ApiConfig {
        &self.api
    }
}

impl ServeArgs {
    /// # Errors
    /// [`ConfigError`] naming the first setting that cannot be used.
    pub fn validate(&self) -> Result<ServiceConfig, ConfigError> {
        let listen_addr: SocketAddr = self.listen_addr.parse().map_err(|_| {
            ConfigError(format!(
                "LISTEN_ADDR {:?} is not an address: use IP:PORT such as 127.0.0.1:3000.",
                self.listen_addr
            ))
        })?;
        let read_api_token = match self.read_api_token.as_deref().map(str::trim) {
            Some("") => {
                return Err(ConfigError(
                    "READ_API_TOKEN is empty: unset it or give a token of at least 16 characters.".into(),
                ))
            }
            Some(t) if t.len() < 16 => {
                return Err(ConfigError(
                    "READ_API_TOKEN is shorter than 16 characters: use a long random token.".into(),
                ))
            }
            Some(t) => Some(Secret::new(t.to_owned())),
            None => None,
        };
        if read_api_token.is_none() && !listen_addr.ip().is_loopback() {
            return Err(ConfigError(format!(
                "READ_API_TOKEN is required because LISTEN_ADDR {listen_addr} is not loopback: set a token or listen on 127.0.0.1."
            )));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError("MAX_BODY_BYTES is below 1024: webhooks need at least a kibibyte.".into()));
        }
        let anchor_interval = parse_duration("ANCHOR_INTERVAL", &self.anchor_interval)?;
        if anchor_interval.is_zero() {
            return Err(ConfigError("ANCHOR_INTERVAL must be longer than zero, such as 1h.".into()));
        }
        Ok(ServiceConfig {
            api: ApiConfig {
                db: self.db.local(),
                signing_keys: self.key.keys()?,
                grid_keys: self.key.grid_keys()?,
                read_api_token,
                max_body_bytes: self.max_body_bytes,
                reconcile: self.reconcile.validate()?,
            },
            ledger: self.db.location()?,
            ledger_shown: self.db.shown(),
            anchor_interval,
            listen_addr,
            group_commit: !self.unbatched_commits,
        })
    }
}

/// `INVITER_INCENTIVE`: `AMOUNT:CURRENCY` or `AMOUNT:CURRENCY:DECIMALS`,
/// the amount in the currency's smallest unit. The decimals travel with
/// the amount to the platform (`amount.decimals`) and to every page, so
/// they must be known: from ISO 4217 (or bitcoin's BTC and SAT), else
/// stated. Stated decimals that contradict the standard are refused rather
/// than chosen between: 100:USD:3 is either a typo or an amount a
/// thousand-fold off what the platform will read.
///
/// # Errors
/// One sentence naming `INVITER_INCENTIVE` and what to write instead.
pub fn parse_incentive(raw: &str) -> Result<Money, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "INVITER_INCENTIVE {raw:?} is not AMOUNT:CURRENCY[:DECIMALS]: give a non-negative integer in the currency's smallest unit and its code, such as 100:USD for 1.00 USD, or 100:XYZ:2 with the decimals of a code outside ISO 4217."
        ))
    };
    let mut parts = raw.split(':').map(str::trim);
    let (Some(amount), Some(currency)) = (parts.next(), parts.next()) else { return Err(bad()) };
    let stated = parts.next();
    if parts.next().is_some() {
        return Err(bad());
    }
    let amount: i64 = amount.parse().map_err(|_| bad())?;
    let money = Money::new(amount, currency).map_err(|_| bad())?;
    let standard = crate::money::iso4217::minor_units(currency);
    let decimals = match stated {
        None => standard.ok_or_else(|| {
            ConfigError(format!(
                "INVITER_INCENTIVE {raw:?} names {currency}, whose decimals ISO 4217 does not give: state them, such as {amount}:{currency}:2, or use its ISO code."
            ))
        })?,
        Some(d) => {
            let d: u32 = d.parse().ok().filter(|d| *d <= crate::money::MAX_DECIMALS).ok_or_else(|| {
                ConfigError(format!(
                    "INVITER_INCENTIVE {raw:?} states decimals {d:?}: give a whole number from 0 to 18, such as {amount}:{currency}:2."
                ))
            })?;
            if let Some(iso) = standard.filter(|iso| *iso != d) {
                return Err(ConfigError(format!(
                    "INVITER_INCENTIVE {raw:?} states {d} decimals for {currency}, which has {iso}: write {amount}:{currency} (or {amount}:{currency}:{iso})."
                )));
            }
            d
        }
    };
    Ok(money.with_decimals(Some(decimals)))
}

/// Parses durations such as `24h`, `90m`, `30s`, `1500ms` or a bare number of
/// seconds.
///
/// # Errors
/// A message naming `setting` when `raw` is not such a duration.
pub fn parse_duration(setting: &str, raw: &str) -> Result<Duration, ConfigError> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        ConfigError(format!("{setting} {raw:?} is not a duration: use a number with ms, s, m, h or d, such as 24h."))
    })?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(|| {
        ConfigError(format!("{setting} {raw:?} is not a duration: use a number with ms, s, m, h or d, such as 24h."))
    })?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
