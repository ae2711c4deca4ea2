//! Where webhooks come from, as a concept of its own: Lightspark (signed
//! with HMAC-SHA256, `lightspark/`) and Lightspark Grid (ECDSA P-256,
//! `grid/`). Each source is a module that verifies its signature,
//! recognises a delivery (its event key and the invitation it concerns) and
//! reads what a stored body says about that invitation. This leaf names the
//! sources and the shapes they answer in; the stages that need a source
//! (ingest, the fold, verify, fetching) pick it by [`Source`].

use serde::{Deserialize, Serialize};

use crate::invitation::InvitationSnapshot;

/// A source of webhooks and invitations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Lightspark,
    Grid,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Lightspark, Source::Grid];

    /// The name used in metrics labels, the projection and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Lightspark => "lightspark",
            Source::Grid => "grid",
        }
    }

    /// The settings that would let invitations of this source be fetched
    /// from it, for messages that say what to set.
    pub fn fetch_settings(self) -> &'static str {
        match self {
            Source::Lightspark => "LIGHTSPARK_API_CLIENT_ID and LIGHTSPARK_API_CLIENT_SECRET",
            Source::Grid => "GRID_API_TOKEN_ID and GRID_API_CLIENT_SECRET",
        }
    }

    /// The source of a stored event, by the prefix of its event key (every
    /// key a source writes starts with its name).
    pub fn of_event_key(key: &str) -> Option<Source> {
        let prefix = key.split(':').next()?;
        Source::ALL
            .into_iter()
            .find(|s| prefix == s.as_str() || prefix.strip_prefix(s.as_str()).is_some_and(|r| r.starts_with('-')))
    }
}

/// A verified body, recognised by its source: what the ledger stores with
/// it besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The ledger idempotency key: the same delivery twice is one event.
    pub event_key: crate::vocab::EventKey,
    /// The invitation it concerns, when it names one.
    pub stream: Option<crate::vocab::StreamId>,
    /// Keys of other bodies under the same delivery id start with this: the
    /// same id arriving with other bytes is kept, and counted.
    pub sibling_prefix: Option<String>,
    /// The event type as sent, for logs and metrics.
    pub event_type: Option<String>,
    /// A claim that came without its invitation: only a fetch can tell
    /// what is owed.
    pub data_missing: bool,
}

/// What one stored webhook says about the invitation its stream names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub snapshot: InvitationSnapshot,
    /// The text dating the snapshot: its `updated_at`, else its claim time
    /// or the envelope's `timestamp`.
    pub dated: Option<String>,
    /// A claim that carried no invitation: it must be fetched.
    pub data_missing: bool,
    /// The invitation the envelope itself names, apart from the
    /// invitation it carries (Lightspark's `entity_id`): the fold checks
    /// both against the stream, since a body naming two invitations says
    /// nothing reliable about either.
    pub envelope_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_a_source_writes_names_it() {
        for (key, source) in [
            ("lightspark:e1:0011223344556677", Some(Source::Lightspark)),
            ("lightspark-body:ab", Some(Source::Lightspark)),
            ("lightspark-fetch:UmaInvitation:1:ab", Some(Source::Lightspark)),
            ("grid:Webhook:1:ab", Some(Source::Grid)),
            ("grid-fetch:CODE:ab", Some(Source::Grid)),
            ("il1-00:requested:1", None),
            ("lightsparkx:e1", None),
        ] {
            assert_eq!(Source::of_event_key(key), source, "{key}");
        }
    }
}
