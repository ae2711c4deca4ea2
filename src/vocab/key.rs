//! Keys: of an event (its idempotency in the ledger), of an obligation (its
//! idempotency at the payment platform), and of a stream (the invitation).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ObligationKind;
use crate::source::Source;

/// The idempotency key of one obligation: a function of (invitation id,
/// kind) only, so every retry and every restart after a crash sends the same
/// key and the platform can deduplicate. Stored and sent as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn of(invitation_id: &str, kind: ObligationKind) -> Self {
        let mut h = Sha256::new();
        h.update(b"invitation-ledger/v1\0");
        h.update(invitation_id.as_bytes());
        h.update(b"\0");
        h.update(kind.as_str().as_bytes());
        Self(format!("il1-{}", hex::encode(&h.finalize()[..16])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ledger's idempotency key of an event: appending a key the ledger
/// holds stores nothing and answers the `seq` that holds it. Each family
/// of events has one constructor, and every key format is written here
/// and nowhere else; [`EventKey::stored`] takes back a key read from the
/// ledger, whatever wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(String);

impl EventKey {
    /// A Lightspark webhook with an `event_id`: the same id with the same
    /// bytes is one event; the same id with other bytes is another.
    pub fn lightspark_webhook(event_id: &str, body: &[u8]) -> Self {
        Self(format!("{}{}", Self::lightspark_prefix(event_id), hex::encode(&Sha256::digest(body)[..8])))
    }

    /// The start of every key [`lightspark_webhook`](Self::lightspark_webhook)
    /// gives `event_id`: how the ledger finds the same id with other bytes.
    pub fn lightspark_prefix(event_id: &str) -> String {
        format!("lightspark:{event_id}:")
    }

    /// A signed Lightspark body without an `event_id`: its bytes are its
    /// identity.
    pub fn lightspark_body(body: &[u8]) -> Self {
        Self(format!("lightspark-body:{}", hex::encode(Sha256::digest(body))))
    }

    /// A Grid webhook with a delivery id, as for Lightspark.
    pub fn grid_webhook(id: &str, body: &[u8]) -> Self {
        Self(format!("{}{}", Self::grid_prefix(id), hex::encode(&Sha256::digest(body)[..8])))
    }

    /// The start of every key [`grid_webhook`](Self::grid_webhook) gives `id`.
    pub fn grid_prefix(id: &str) -> String {
        format!("grid:{id}:")
    }

    /// A signed Grid body without a delivery id.
    pub fn grid_body(body: &[u8]) -> Self {
        Self(format!("grid-body:{}", hex::encode(Sha256::digest(body))))
    }

    /// An answer of `source` about `invitation`, by its digest: the same
    /// answer twice is one event.
    pub fn fetched(source: Source, invitation: &str, digest: &str) -> Self {
        Self(format!("{}-fetch:{invitation}:{digest}", source.as_str()))
    }

    /// An operator's refetch: in the trail whatever it found, so the time
    /// it was made is part of the key.
    pub fn refetched(source: Source, invitation: &str, digest: &str, fetched_at: &str) -> Self {
        Self(format!("{}-fetch:{invitation}:{digest}:refetch:{fetched_at}", source.as_str()))
    }

    /// A fetch that failed for `reason`, once per reason (and, when given,
    /// per digest of the refused answer: each distinct one is kept).
    pub fn fetch_failed(source: Source, invitation: &str, reason: &str, digest: Option<&str>) -> Self {
        match digest {
            None => Self(format!("{}-fetch:{invitation}:{reason}", source.as_str())),
            Some(d) => Self(format!("{}-fetch:{invitation}:{reason}:{d}", source.as_str())),
        }
    }

    /// A failed fetch as ledgers written before recorded every one.
    pub fn fetch_failed_attempt(source: Source, invitation: &str, attempt: u32) -> Self {
        Self(format!("{}-fetch:{invitation}:failed:{attempt}", source.as_str()))
    }

    /// A creation's step (`requested`, `failed`, or `created:<stream>` for
    /// each of the answer's two copies): once per request.
    pub fn creation(request_id: &str, step: &str) -> Self {
        Self(format!("create:{request_id}:{step}"))
    }

    /// A cancellation's step (`requested`, `cancelled`, `failed`): once per
    /// attempt.
    pub fn cancellation(attempt_id: &str, step: &str) -> Self {
        Self(format!("cancel:{attempt_id}:{step}"))
    }

    /// The `attempt`-th request of an obligation.
    pub fn requested(key: &IdempotencyKey, attempt: u32) -> Self {
        Self(format!("{key}:requested:{attempt}"))
    }

    /// An obligation's success: one per obligation.
    pub fn succeeded(key: &IdempotencyKey) -> Self {
        Self(format!("{key}:succeeded"))
    }

    /// The failure of the `attempt`-th request.
    pub fn failed(key: &IdempotencyKey, attempt: u32) -> Self {
        Self(format!("{key}:failed:{attempt}"))
    }

    /// An obligation in doubt since the window that began at `first_requested_at`.
    pub fn in_doubt(key: &IdempotencyKey, first_requested_at: &str) -> Self {
        Self(format!("{key}:in_doubt:{first_requested_at}"))
    }

    /// An operator's `decision` on one occurrence of an obligation: the same
    /// decision on the same occurrence is one event.
    pub fn resolved(key: &IdempotencyKey, occurrence: &str, decision: &str) -> Self {
        Self(format!("{key}:resolved:{occurrence}:{decision}"))
    }

    /// A key as the ledger holds it.
    pub fn stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The source whose key this is: every key a source writes starts with
    /// its name.
    pub fn source(&self) -> Option<Source> {
        Source::of_event_key(&self.0)
    }
}

impl std::fmt::Display for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stream of one invitation: every event about it carries its id (a
/// Lightspark `UmaInvitation:…` id, or `GridInvitation:<code>`), and a
/// conditional append names the stream whose version it saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// The prefix of Grid invitations' streams, keeping them apart from
    /// Lightspark's.
    pub const GRID_PREFIX: &'static str = "GridInvitation:";

    /// The stream of the invitation with this id.
    pub fn new(invitation_id: impl Into<String>) -> Self {
        Self(invitation_id.into())
    }

    /// The stream of the Grid invitation with this `code`: Grid invitations
    /// have no id and are known by their code.
    pub fn grid(code: &str) -> Self {
        Self(format!("{}{code}", Self::GRID_PREFIX))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for StreamId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdempotencyKey {
        IdempotencyKey::of("Inv:1", ObligationKind::InviteePayment)
    }

    #[test]
    fn the_idempotency_key_depends_only_on_invitation_and_kind() {
        let a = key();
        assert_eq!(a, IdempotencyKey::of("Inv:1", ObligationKind::InviteePayment));
        assert_ne!(a, IdempotencyKey::of("Inv:1", ObligationKind::InviterIncentive));
        assert_ne!(a, IdempotencyKey::of("Inv:2", ObligationKind::InviteePayment));
        assert!(a.as_str().starts_with("il1-") && a.as_str().len() == 4 + 32);
        assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::Value::String(a.to_string()));
    }

    #[test]
    fn every_event_key_family_has_its_format_and_names_its_source() {
        let k = key();
        let body = b"{}";
        let cases = [
            (EventKey::lightspark_webhook("e1", body), "lightspark:e1:44136fa355b3678a", Some(Source::Lightspark)),
            (
                EventKey::lightspark_body(body),
                "lightspark-body:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                Some(Source::Lightspark),
            ),
            (EventKey::grid_webhook("Webhook:1", body), "grid:Webhook:1:44136fa355b3678a", Some(Source::Grid)),
            (
                EventKey::fetched(Source::Grid, "GridInvitation:C", "ab"),
                "grid-fetch:GridInvitation:C:ab",
                Some(Source::Grid),
            ),
            (
                EventKey::fetch_failed(Source::Lightspark, "Inv:1", "identity_mismatch", Some("cd")),
                "lightspark-fetch:Inv:1:identity_mismatch:cd",
                Some(Source::Lightspark),
            ),
            (EventKey::requested(&k, 2), &format!("{k}:requested:2"), None),
            (EventKey::resolved(&k, "2:t", "retry"), &format!("{k}:resolved:2:t:retry"), None),
        ];
        for (key, text, source) in cases {
            assert_eq!((key.as_str(), key.source()), (text, source));
        }
        assert!(EventKey::lightspark_webhook("e1", body).as_str().starts_with(&EventKey::lightspark_prefix("e1")));
    }

    #[test]
    fn grid_streams_are_kept_apart_by_their_prefix() {
        assert_eq!(StreamId::grid("ABC").as_str(), "GridInvitation:ABC");
        assert_eq!(StreamId::new("UmaInvitation:1").to_string(), "UmaInvitation:1");
    }
}
