//! What Lightspark posts, read two ways: at ingest just far enough to key
//! and route it ([`recognise`]), and in the fold for what it says about its
//! invitation ([`report`]). The raw bytes stay the record; these are views
//! of them. Any signed JSON object is kept, whatever its fields: a correctly
//! signed body is authentic data, and Lightspark retries a refused one for
//! days.

use std::borrow::Cow;

use serde::Deserialize;

use super::invitation::{Checked, Key, Text, WireSnapshot};
use crate::invitation::InvitationStatus;
use crate::source::{Delivery, Report};
use crate::vocab::{EventKey, StreamId};

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
    pub entity_id: Cow<'a, str>,
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

/// Recognises a verified body: its ledger key and the invitation it
/// concerns.
///
/// - Any object is keyed by its `event_id` when that is a non-empty string
///   ([`EventKey::lightspark_webhook`]), else by its bytes ([`body_key`]).
/// - An envelope (an object with `event_type`) concerns an invitation when
///   its type is an `UMA_INVITATION_*` one: the id inside `data`, else
///   `entity_id`.
/// - An object without `event_type` but with invitation fields (`id` or
///   `code`, and `status` or `inviter_uma`) is the invitation itself, as
///   Lightspark's documentation describes the body.
/// - Any other object is kept too, about no invitation.
///
/// # Errors
/// [`MalformedWebhook`] when the body is not JSON (including invalid UTF-8
/// or nesting beyond the parser's depth) or is JSON but not an object.
pub fn recognise(body: &[u8]) -> Result<Delivery, MalformedWebhook> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(MalformedWebhook("the body is not a JSON object".into()));
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|e| MalformedWebhook(e.to_string()))?;
    let (event_key, sibling_prefix) = match &probe.event_id {
        Some(id) => (EventKey::lightspark_webhook(id, body), Some(EventKey::lightspark_prefix(id))),
        None => (body_key(body), None),
    };
    let stream = match &probe.event_type {
        Some(event_type) if names_invitation(event_type) => probe.data_id.or(probe.entity_id),
        Some(_) => None,
        None => {
            let invitation =
                (probe.id.is_some() || probe.code.is_some()) && (probe.status.is_some() || probe.inviter_uma.is_some());
            if invitation {
                probe.id.or(probe.code)
            } else {
                None
            }
        }
    };
    let data_missing = probe.event_type.as_deref() == Some(UMA_INVITATION_CLAIMED) && !probe.data_is_object;
    let stream = stream.map(StreamId::new);
    Ok(Delivery { event_key, stream, sibling_prefix, event_type: probe.event_type, data_missing })
}

/// The top-level fields [`recognise`] reads; every other member is only
/// checked. A field given twice counts as its last value (as a parsed
/// `Value` keeps it): duplicate names are valid JSON and must not refuse a
/// signed body.
#[derive(Default)]
struct Probe {
    /// `None` when absent; `Some("")` never: an empty or non-string
    /// `event_type` still makes the body an envelope.
    event_type: Option<String>,
    event_id: Option<String>,
    entity_id: Option<String>,
    data_id: Option<String>,
    /// Whether `data` is an object (an invitation), not absent or null.
    data_is_object: bool,
    id: Option<String>,
    code: Option<String>,
    status: Option<String>,
    inviter_uma: Option<String>,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
                let mut p = Probe::default();
                while let Some(Key(key)) = map.next_key::<Key<'_>>()? {
                    let text = |t: Text| t.0;
                    match key.as_ref() {
                        "event_type" => p.event_type = Some(text(map.next_value()?).unwrap_or_default()),
                        "event_id" => p.event_id = text(map.next_value()?),
                        "entity_id" => p.entity_id = text(map.next_value()?),
                        "data" => {
                            let data = map.next_value::<DataId>()?;
                            p.data_id = data.id;
                            p.data_is_object = data.is_object;
                        }
                        "id" => p.id = text(map.next_value()?),
                        "code" => p.code = text(map.next_value()?),
                        "status" => p.status = text(map.next_value()?),
                        "inviter_uma" => p.inviter_uma = text(map.next_value()?),
                        _ => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                // Blank ids name nothing.
                for id in [&mut p.event_id, &mut p.entity_id, &mut p.data_id, &mut p.id, &mut p.code] {
                    if id.as_deref().is_some_and(|s| s.trim().is_empty()) {
                        *id = None;
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// The invitation id inside `data`, when `data` is an object that has one.
struct DataId {
    id: Option<String>,
    is_object: bool,
}

impl<'de> Deserialize<'de> for DataId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DataId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<DataId, A::Error> {
                // The first spelling holding a string, as the snapshot reads it.
                let mut found: [Option<String>; 4] = Default::default();
                while let Some(Key(key)) = map.next_key::<Key<'_>>()? {
                    match DATA_ID.iter().position(|k| *k == key.as_ref()) {
                        Some(i) => found[i] = map.next_value::<Text>()?.0,
                        None => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(DataId { id: found.into_iter().flatten().next(), is_object: true })
            }
            fn visit_str<E>(self, _: &str) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_bool<E>(self, _: bool) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_i64<E>(self, _: i64) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_u64<E>(self, _: u64) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_f64<E>(self, _: f64) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_unit<E>(self) -> Result<DataId, E> {
                Ok(DataId { id: None, is_object: false })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<DataId, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(DataId { id: None, is_object: false })
            }
        }
        d.deserialize_any(V)
    }
}

/// The spellings of the invitation id inside `data`, in the order tried.
const DATA_ID: [&str; 4] = ["id", "uma_invitation_id", "invitation_id", "invitationId"];

/// What a stored Lightspark body says about the invitation its stream
/// names: the snapshot it carries (a claim without a status is `CLAIMED`),
/// dated by its `updated_at` else the envelope's `timestamp`; or, for a
/// claim without data, that the invitation must be fetched.
///
/// Well-formed envelopes, nearly every event, are read in one pass
/// ([`WebhookFacts`]); anything else a signed body may be goes through a
/// `Value`, and whatever can be used is.
///
/// # Errors
/// When the body is not a JSON object.
pub fn report(body: &[u8]) -> Result<Report, MalformedWebhook> {
    if let Ok(facts) = WebhookFacts::parse(body) {
        let claim = facts.event_type == UMA_INVITATION_CLAIMED;
        let envelope_id = names_invitation(&facts.event_type).then(|| facts.entity_id.into_owned());
        let report = match facts.data {
            Some(WireSnapshot(snap)) => claimed(snap, claim, Some(facts.timestamp.into_owned())),
            None => Report {
                snapshot: crate::invitation::InvitationSnapshot {
                    status: claim.then_some(InvitationStatus::Claimed),
                    ..Default::default()
                },
                dated: Some(facts.timestamp.into_owned()),
                data_missing: claim,
                envelope_id: None,
            },
        };
        return Ok(Report { envelope_id: envelope_id.filter(|id| !id.trim().is_empty()), ..report });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| MalformedWebhook(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| MalformedWebhook("the body is not a JSON object".into()))?;
    let text = |k: &str| object.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(match object.get("event_type") {
        // A bare invitation: the documented body, a claim.
        None => claimed(super::invitation::parse(&value), true, None),
        Some(event_type) => {
            let claim = event_type.as_str() == Some(UMA_INVITATION_CLAIMED);
            let envelope_id = event_type
                .as_str()
                .is_some_and(names_invitation)
                .then(|| text("entity_id"))
                .flatten()
                .filter(|id| !id.trim().is_empty());
            let report = match object.get("data").filter(|d| d.is_object()) {
                Some(data) => claimed(super::invitation::parse(data), claim, text("timestamp")),
                None => Report {
                    snapshot: crate::invitation::InvitationSnapshot {
                        status: claim.then_some(InvitationStatus::Claimed),
                        ..Default::default()
                    },
                    dated: text("timestamp"),
                    data_missing: claim,
                    envelope_id: None,
                },
            };
            Report { envelope_id, ..report }
        }
    })
}

/// Whether an event of this type is about an invitation, whose id its
/// `entity_id` then is ([`recognise`] routes it to that stream when it
/// carries no invitation id of its own).
fn names_invitation(event_type: &str) -> bool {
    event_type.starts_with("UMA_INVITATION")
}

/// A snapshot a claim carried: `CLAIMED` when it says no status, dated by
/// its `updated_at`, else `fallback` (the envelope's timestamp).
fn claimed(mut snapshot: crate::invitation::InvitationSnapshot, claim: bool, fallback: Option<String>) -> Report {
    if snapshot.status.is_none() && claim {
        snapshot.status = Some(InvitationStatus::Claimed);
    }
    let dated = snapshot.updated_at.clone().or(fallback);
    Report { snapshot, dated, data_missing: false, envelope_id: None }
}

/// The ledger key of a body without a usable `event_id`: its bytes, whole.
pub fn body_key(body: &[u8]) -> EventKey {
    EventKey::lightspark_body(body)
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
        let key = |body: &[u8]| EventKey::lightspark_webhook("e1", body);
        assert_eq!(key(b"a"), key(b"a"));
        assert_ne!(key(b"a"), key(b"b"));
        assert!(key(b"a").as_str().starts_with(&EventKey::lightspark_prefix("e1")));
    }
}
