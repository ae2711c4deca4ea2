//! The webhook envelope Lightspark posts, parsed just far enough to key and
//! route it. The raw bytes stay the record; this is a view of them.

use std::borrow::Cow;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::invitation::WireSnapshot;

/// The event type this service exists for.
pub const UMA_INVITATION_CLAIMED: &str = "UMA_INVITATION_CLAIMED";

/// A verified body that is not a Lightspark webhook object. Answered 400.
#[derive(Debug, thiserror::Error)]
#[error("the body is not a Lightspark webhook: {0}")]
pub struct MalformedWebhook(String);

/// The fields every Lightspark webhook carries. `data`, when present, is kept
/// as JSON and interpreted by the projection, not here.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEnvelope {
    pub event_type: String,
    pub event_id: String,
    /// ISO-8601 with offset as sent; kept as text because an unparsable
    /// timestamp on a signed event is still a fact worth storing.
    pub timestamp: String,
    pub entity_id: String,
    #[serde(default)]
    pub wallet_id: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

impl WebhookEnvelope {
    /// Parses the raw body.
    ///
    /// # Errors
    /// [`MalformedWebhook`] when the body is not UTF-8 JSON, not an object, or
    /// lacks one of `event_type`, `event_id`, `timestamp`, `entity_id` as a
    /// non-empty string.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedWebhook> {
        let envelope: WebhookEnvelope = serde_json::from_slice(body).map_err(|e| MalformedWebhook(e.to_string()))?;
        for (name, value) in
            [("event_type", &envelope.event_type), ("event_id", &envelope.event_id), ("entity_id", &envelope.entity_id)]
        {
            if value.trim().is_empty() {
                return Err(MalformedWebhook(format!("`{name}` is empty")));
            }
        }
        if let Some(data) = &envelope.data {
            if !(data.is_object() || data.is_null()) {
                return Err(MalformedWebhook("`data` is neither an object nor null".into()));
            }
        }
        Ok(envelope)
    }

    /// The invitation this event is about, when it is about one: the id inside
    /// `data` if it carries the invitation, else the envelope's `entity_id`.
    pub fn invitation_id(&self) -> Option<String> {
        if !self.event_type.starts_with("UMA_INVITATION") {
            return None;
        }
        let from_data = self.data.as_ref().and_then(|d| {
            ["id", "uma_invitation_id", "invitation_id", "invitationId"]
                .iter()
                .find_map(|k| d.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        });
        Some(from_data.unwrap_or_else(|| self.entity_id.clone()))
    }
}

/// A webhook as the fold reads it: the envelope borrowed from the body,
/// and `data` read straight into a snapshot ([`WireSnapshot`]) instead of
/// a `Value`. Accepts and refuses exactly the bodies
/// [`WebhookEnvelope::parse`] does, and its `data` is the snapshot
/// `crate::lightspark::invitation::parse` gives for that envelope's `data`.
#[derive(Debug, Deserialize)]
pub struct WebhookFacts<'a> {
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow)]
    entity_id: Cow<'a, str>,
    // Read (and type-checked) like the envelope's, never used.
    #[serde(default)]
    #[allow(dead_code)]
    wallet_id: Option<String>,
    /// The invitation, when `data` is an object; `None` when it is absent
    /// or null.
    #[serde(default)]
    pub data: Option<WireSnapshot>,
}

impl<'a> WebhookFacts<'a> {
    /// Parses the raw body, borrowing from it.
    ///
    /// # Errors
    /// As [`WebhookEnvelope::parse`].
    pub fn parse(body: &'a [u8]) -> Result<Self, MalformedWebhook> {
        let facts: WebhookFacts<'a> = serde_json::from_slice(body).map_err(|e| MalformedWebhook(e.to_string()))?;
        for (name, value) in
            [("event_type", &facts.event_type), ("event_id", &facts.event_id), ("entity_id", &facts.entity_id)]
        {
            if value.trim().is_empty() {
                return Err(MalformedWebhook(format!("`{name}` is empty")));
            }
        }
        Ok(facts)
    }
}

/// The ledger idempotency key of a webhook: the same event id with the same
/// bytes is one event; the same id with other bytes is kept as another.
pub fn event_key(event_id: &str, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("lightspark:{event_id}:{}", hex::encode(&digest[..8]))
}

/// The prefix every key of `event_id` starts with, for finding siblings.
pub fn event_key_prefix(event_id: &str) -> String {
    format!("lightspark:{event_id}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_envelope_parses() {
        let e = WebhookEnvelope::parse(
            br#"{"event_type":"NODE_STATUS","event_id":"e1","timestamp":"2023-05-17T23:56:47.874449+00:00","entity_id":"n1"}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, "NODE_STATUS");
        assert_eq!(e.invitation_id(), None);
    }

    #[test]
    fn claimed_events_name_their_invitation_from_data_or_entity() {
        let with_data = WebhookEnvelope::parse(
            br#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e1","timestamp":"t","entity_id":"Inv:1","data":{"id":"Inv:2"}}"#,
        )
        .unwrap();
        assert_eq!(with_data.invitation_id().as_deref(), Some("Inv:2"));
        let bare = WebhookEnvelope::parse(
            br#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e1","timestamp":"t","entity_id":"Inv:1"}"#,
        )
        .unwrap();
        assert_eq!(bare.invitation_id().as_deref(), Some("Inv:1"));
    }

    #[test]
    fn non_objects_and_missing_fields_are_malformed() {
        for body in [
            &b"[1,2,3]"[..],
            b"42",
            b"not json",
            b"{\"event_type\":\"X\"}",
            b"{\"event_type\":\"X\",\"event_id\":\"\",\"timestamp\":\"t\",\"entity_id\":\"e\"}",
            b"{\"event_type\":\"X\",\"event_id\":\"a\",\"timestamp\":\"t\",\"entity_id\":\"e\",\"data\":[1]}",
            b"\xff\xfe",
        ] {
            assert!(WebhookEnvelope::parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn same_event_id_with_other_bytes_gets_another_key() {
        assert_eq!(event_key("e1", b"a"), event_key("e1", b"a"));
        assert_ne!(event_key("e1", b"a"), event_key("e1", b"b"));
        assert!(event_key("e1", b"a").starts_with(&event_key_prefix("e1")));
    }
}
