//! A stored webhook's signature, re-verified now against the keys this
//! process is configured with: which key verified it, or why none did.
//! The read side keeps the exact bytes and the header as received; only
//! the handler holds the keys.

use crate::grid::signature::GridKeys;
use crate::lightspark::signature::SigningKeys;
use crate::source::Source;

/// The webhook keys of every source, as configured.
pub(super) struct Keys<'a> {
    pub lightspark: &'a SigningKeys,
    /// `None`: no Grid public key is configured here.
    pub grid: Option<&'a GridKeys>,
}

/// What re-verifying one stored signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `key` (from 1) of the `of` keys in `setting` verifies it.
    Verified { setting: &'static str, key: usize, of: usize },
    /// No configured key verifies it: the bytes or the header changed, or
    /// the key that signed it is no longer configured.
    Refused { setting: &'static str, why: String },
    /// The source's keys are not configured in this process.
    NoKey { setting: &'static str },
}

const LIGHTSPARK_SETTING: &str = "LIGHTSPARK_WEBHOOK_SIGNING_KEY";
const GRID_SETTING: &str = "GRID_WEBHOOK_PUBLIC_KEY";

impl Keys<'_> {
    /// Checks `signature` (the header as stored) over the stored `body`
    /// with `source`'s keys, each tried as at ingest.
    pub(super) fn check(&self, source: Source, body: &[u8], signature: Option<&str>) -> Verdict {
        match source {
            Source::Lightspark => match self.lightspark.verify_which(body, signature) {
                Ok(i) => Verdict::Verified { setting: LIGHTSPARK_SETTING, key: i + 1, of: self.lightspark.len() },
                Err(e) => Verdict::Refused { setting: LIGHTSPARK_SETTING, why: e.to_string() },
            },
            Source::Grid => match self.grid {
                None => Verdict::NoKey { setting: GRID_SETTING },
                Some(keys) => match keys.verify(body, signature) {
                    Ok(i) => Verdict::Verified { setting: GRID_SETTING, key: i + 1, of: keys.len() },
                    Err(e) => Verdict::Refused { setting: GRID_SETTING, why: e.to_string() },
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_names_the_key_that_verified_or_why_none_did() {
        // given two Lightspark secrets and no Grid key
        let lightspark = SigningKeys::parse("old-secret,new-secret").unwrap();
        let keys = Keys { lightspark: &lightspark, grid: None };
        let body = br#"{"event_id":"e1"}"#;
        let signed = crate::lightspark::signature::sign(b"new-secret", body);
        // then the second key is named, altered bytes are refused, and Grid says it has no key
        assert_eq!(
            keys.check(Source::Lightspark, body, Some(&signed)),
            Verdict::Verified { setting: LIGHTSPARK_SETTING, key: 2, of: 2 }
        );
        assert!(matches!(keys.check(Source::Lightspark, b"{}", Some(&signed)), Verdict::Refused { .. }));
        assert_eq!(keys.check(Source::Grid, body, Some("x")), Verdict::NoKey { setting: GRID_SETTING });
    }
}
