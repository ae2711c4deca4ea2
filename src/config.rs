//! Settings from environment variables and flags, validated once at start-up.
//!
//! Every setting is both a flag and an environment variable (DESIGN.md,
//! "Interfaces"). Invalid values stop the program with one sentence naming
//! the setting and how to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::lightspark::signature::SigningKeys;

/// A secret that never prints: `Debug` and `Display` show a placeholder, so a
/// stray `{:?}` in a log line cannot leak it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it (HMAC key, auth).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration value that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the ledger lives. Shared by every command.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// SQLite ledger file; created with its folder when missing.
    #[arg(long = "db", env = "LEDGER_DB", default_value = "./data/ledger.db")]
    pub db: PathBuf,
}

/// The webhook signing secret(s), needed by `serve` and `verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Lightspark webhook signing secret; several comma-separated during key rotation.
    #[arg(long = "signing-key", env = "LIGHTSPARK_WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
}

impl KeyArgs {
    /// # Errors
    /// When the setting is absent or holds only blanks.
    pub fn keys(&self) -> Result<SigningKeys, ConfigError> {
        let raw = self.signing_key.as_deref().ok_or_else(|| {
            ConfigError(
                "LIGHTSPARK_WEBHOOK_SIGNING_KEY is not set: set it (or --signing-key) to the webhook signing secret from the Lightspark dashboard.".into(),
            )
        })?;
        SigningKeys::parse(raw).ok_or_else(|| {
            ConfigError("LIGHTSPARK_WEBHOOK_SIGNING_KEY holds no secret: give one, or several separated by commas.".into())
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
    /// Address the HTTP listener binds.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    pub listen_addr: String,
    /// Bearer token for the read API under /v1; required when LISTEN_ADDR is not loopback.
    #[arg(long = "read-api-token", env = "READ_API_TOKEN", hide_env_values = true)]
    pub read_api_token: Option<String>,
    /// Largest webhook body accepted, in bytes.
    #[arg(long = "max-body-bytes", env = "MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Commit each append alone. Only for measuring what group commit buys.
    #[arg(long = "unbatched-commits", hide = true)]
    pub unbatched_commits: bool,
}

/// Validated settings of the HTTP service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub db: PathBuf,
    pub listen_addr: SocketAddr,
    pub signing_keys: SigningKeys,
    /// `None` only when the listener is on loopback: then `/v1` is open to
    /// local callers, which is what a developer on a laptop expects.
    pub read_api_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// See [`ServeArgs::unbatched_commits`].
    pub group_commit: bool,
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
                return Err(ConfigError("READ_API_TOKEN is empty: unset it or give a token of at least 16 characters.".into()))
            }
            Some(t) if t.len() < 16 => {
                return Err(ConfigError("READ_API_TOKEN is shorter than 16 characters: use a long random token.".into()))
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
        Ok(ServiceConfig {
            db: self.db.db.clone(),
            listen_addr,
            signing_keys: self.key.keys()?,
            read_api_token,
            max_body_bytes: self.max_body_bytes,
            group_commit: !self.unbatched_commits,
        })
    }
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
mod tests {
    use super::*;

    #[test]
    fn durations_read_their_units() {
        assert_eq!(parse_duration("X", "24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("X", "1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("X", "30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("X", "soon").unwrap_err().0.starts_with("X "));
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "[redacted]");
    }
}
