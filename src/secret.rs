//! Secrets (signing keys, API credentials, the read token) as a type that
//! cannot end up in a log line. A leaf module: configuration, the sources'
//! clients and the API all hold secrets, and none should import another for
//! the type.

/// A secret that never prints: it has no `Display`, and `Debug` shows a
/// placeholder, so a stray `{:?}` in a log line cannot leak it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "[redacted]");
    }
}
