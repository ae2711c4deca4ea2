//! A stored webhook's signature, re-verified now against the keys this
//! process is configured with: which key verified it, or why none did.
//! The read side keeps the exact bytes and the header as received; only
//! the handler holds the keys. The checking itself is `verify`'s
//! ([`WebhookKeys::verify`]), so the page and the command cannot disagree;
//! this only words its answer for the page.

use crate::ledger::verify::WebhookKeys;
use crate::source::Source;

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

/// Checks `signature` (the header as stored) over the stored `body` with
/// `source`'s keys, each tried as at ingest.
pub(super) fn check(keys: &WebhookKeys, source: Source, body: &[u8], signature: Option<&str>) -> Verdict {
    let setting = WebhookKeys::setting(source);
    match keys.verify(source, body, signature) {
        Ok(Some(i)) => Verdict::Verified { setting, key: i + 1, of: keys.count(source) },
        Ok(None) => Verdict::NoKey { setting },
        Err(why) => Verdict::Refused { setting, why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lightspark::signature::SigningKeys;

    #[test]
    fn the_verdict_names_the_key_that_verified_or_why_none_did() {
        // given two Lightspark secrets and no Grid key
        let keys = WebhookKeys { lightspark: SigningKeys::parse("old-secret,new-secret"), grid: None };
        let body = br#"{"event_id":"e1"}"#;
        let signed = crate::lightspark::signature::sign(b"new-secret", body);
        // then the second key is named, altered bytes are refused, and Grid says it has no key
        assert_eq!(
            check(&keys, Source::Lightspark, body, Some(&signed)),
            Verdict::Verified { setting: "LIGHTSPARK_WEBHOOK_SIGNING_KEY", key: 2, of: 2 }
        );
        assert!(matches!(check(&keys, Source::Lightspark, b"{}", Some(&signed)), Verdict::Refused { .. }));
        assert_eq!(check(&keys, Source::Grid, body, Some("x")), Verdict::NoKey { setting: "GRID_WEBHOOK_PUBLIC_KEY" });
    }
}
