//! Creating an invitation at its source and registering it in the ledger
//! (`POST /v1/invitations`, `invitation-ledger invite`): the request is
//! checked before anything is sent or stored, recorded before the call,
//! and its answer (or the lack of one) recorded after it. The events and
//! why the request has a stream of its own: `projection::registration`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::clock::{Clock, Jitter};
use super::endpoint::Endpoint;
use super::reconciler::Reconciler;
use crate::grid::client::GridFetchError;
use crate::invitation::is_uma_address;
use crate::ledger::LedgerStore;
use crate::lightspark::client::{FetchError, NewInvitation};
use crate::money::iso4217::minor_units;
use crate::money::Money;
use crate::projection::events::InternalEvent;
use crate::projection::registration::{CreateFailed, CreateOutcome, CreateRequested, Created, REQUEST_PREFIX};
use crate::projection::state::{fold_stream, InvitationState};
use crate::source::Source;
use crate::time::{parse_time, rfc3339};
use crate::vocab::StreamId;

/// Longest first name accepted, in characters.
const FIRST_NAME_MAX_CHARS: usize = 100;

/// A creation as asked, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInvitation {
    pub source: Source,
    pub inviter_uma: String,
    /// In the currency's smallest unit, with the currency's decimals.
    pub amount: Option<Money>,
    pub expires_at: Option<String>,
    pub first_name: Option<String>,
}

/// Reads and checks a creation request's JSON body at `now`; the error is
/// a sentence for whoever sent it. Nothing about the request is guessed:
/// an unknown field, currency or source is refused, not ignored.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse_create(body: &Value, now: DateTime<Utc>) -> Result<CreateInvitation, String> {
    let Some(fields) = body.as_object() else { return Err("the body must be a JSON object".into()) };
    if let Some(unknown) =
        fields.keys().find(|k| !["source", "inviter_uma", "amount", "expires_at", "first_name"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {unknown:?}: the fields are source, inviter_uma, amount, expires_at and first_name"
        ));
    }
    let source = match fields.get("source").and_then(Value::as_str) {
        Some("lightspark") => Source::Lightspark,
        Some("grid") => Source::Grid,
        _ => return Err("source must be \"lightspark\" or \"grid\"".into()),
    };
    let inviter_uma = match fields.get("inviter_uma").and_then(Value::as_str) {
        Some(uma) if is_uma_address(uma) => uma.to_owned(),
        Some(uma) => {
            return Err(format!(
                "inviter_uma {:?} is not a well-formed UMA address ($user@domain, at most 256 bytes)",
                crate::upstream::cut(uma)
            ))
        }
        None => {
            return Err("inviter_uma is required: the UMA address of the inviter, such as $alice@vasp.example".into())
        }
    };
    let amount = match fields.get("amount") {
        None | Some(Value::Null) => None,
        Some(a) => Some(parse_amount(a)?),
    };
    let expires_at = match fields.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match parse_time(text) {
            Some(t) if t > now => Some(rfc3339(t)),
            Some(_) => return Err(format!("expires_at {text:?} is in the past")),
            None => return Err(format!("expires_at {text:?} is not an RFC 3339 time, such as 2026-12-31T00:00:00Z")),
        },
        Some(_) => return Err("expires_at must be an RFC 3339 time as a string".into()),
    };
    let first_name = match fields.get("first_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.chars().count() <= FIRST_NAME_MAX_CHARS && !name.trim().is_empty() => {
            Some(name.clone())
        }
        Some(_) => {
            return Err(format!("first_name must be a non-empty string of at most {FIRST_NAME_MAX_CHARS} characters"))
        }
    };
    if source == Source::Lightspark && amount.is_some() && expires_at.is_none() {
        return Err(
            "expires_at is required with an amount: Lightspark's create_uma_invitation_with_payment asks for it".into(),
        );
    }
    Ok(CreateInvitation { source, inviter_uma, amount, expires_at, first_name })
}

/// `{"value", "currency"}`: a positive integer in the smallest unit of a
/// currency whose decimals are known (ISO 4217, BTC, SAT).
fn parse_amount(a: &Value) -> Result<Money, String> {
    let Some(fields) = a.as_object() else {
        return Err("amount must be an object {\"value\", \"currency\"}".into());
    };
    let currency = fields.get("currency").and_then(Value::as_str).unwrap_or_default();
    let Some(decimals) = minor_units(currency) else {
        return Err(format!(
            "amount.currency {:?} is not a currency code this service knows (ISO 4217, BTC or SAT)",
            crate::upstream::cut(currency)
        ));
    };
    let value = match fields.get("value") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v > 0 => v,
            Some(_) => return Err("amount.value must be positive: an invitation without an amount has none".into()),
            None => {
                return Err(format!(
                    "amount.value {n} is not an integer: amounts are counted in the currency's smallest unit (cents for USD)"
                ))
            }
        },
        _ => return Err("amount.value must be an integer in the currency's smallest unit".into()),
    };
    Money::new(value, currency).map(|m| m.with_decimals(Some(decimals)))
}

/// Why nothing was created, or what is not known about it.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The source's API is not configured: nothing was sent or stored.
    #[error("{0}")]
    NotConfigured(String),
    /// The source answered that it did not create it (recorded).
    #[error("{source_name} refused to create the invitation (request {request}): {error}")]
    Refused { source_name: &'static str, request: String, error: String },
    /// No answer came: the source may have created it (recorded as
    /// unknown; never asked again by itself).
    #[error("no answer from {source_name} (request {request}): {error}. It may have created the invitation: the request is recorded with an unknown outcome; check at {source_name} before creating it again")]
    Unknown { source_name: &'static str, request: String, error: String },
    /// The ledger could not record the request or its outcome.
    #[error("the ledger cannot record the creation: {0}")]
    Ledger(String),
}

/// Whether a failed call may have created the invitation anyway: no
/// whole answer came, or the server failed while answering. A refusal
/// (GraphQL errors, another 4xx, a client that cannot be built) did not.
pub(super) fn outcome_of(e: &FetchError) -> CreateOutcome {
    match e {
        FetchError::Transport(_) | FetchError::Malformed(_) => CreateOutcome::Unknown,
        FetchError::Status { status, .. } if *status >= 500 || matches!(status, 408 | 429) => CreateOutcome::Unknown,
        _ => CreateOutcome::Refused,
    }
}

/// A creation's call that gave no invitation: the text, and whether the
/// source may have made it anyway.
pub(super) struct CallFailed {
    pub outcome: CreateOutcome,
    pub error: String,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// [`outcome_of`] for Grid's errors: the same table.
pub(super) fn grid_outcome_of(e: &GridFetchError) -> CreateOutcome {
    match e {
        GridFetchError::Transport(_) | GridFetchError::Malformed(_) => CreateOutcome::Unknown,
        GridFetchError::Status { status, .. } if *status >= 500 || matches!(status, 408 | 429) => {
            CreateOutcome::Unknown
        }
        _ => CreateOutcome::Refused,
    }
}

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    /// Calls the source's creation: Lightspark's mutation, or Grid's
    /// `POST /invitations` (`amountToSend` in the smallest unit of the
    /// inviter's currency, which Grid knows: no currency is sent).
    async fn ask_to_create(&self, new: CreateInvitation) -> Result<Value, CallFailed> {
        match new.source {
            Source::Lightspark => {
                let client = self.fetchers().lightspark.clone().expect("checked configured");
                let asked =
                    NewInvitation { inviter_uma: new.inviter_uma, amount: new.amount, expires_at: new.expires_at };
                client
                    .create_invitation(&asked)
                    .await
                    .map_err(|e| CallFailed { outcome: outcome_of(&e), error: e.to_string() })
            }
            Source::Grid => {
                let client = self.fetchers().grid.clone().expect("checked configured");
                let mut body = serde_json::json!({ "inviterUma": new.inviter_uma });
                if let Some(m) = &new.amount {
                    body["amountToSend"] = m.value().into();
                }
                if let Some(t) = new.expires_at {
                    body["expiresAt"] = t.into();
                }
                if let Some(n) = new.first_name {
                    body["firstName"] = n.into();
                }
                client
                    .create_invitation(&body)
                    .await
                    .map_err(|e| CallFailed { outcome: grid_outcome_of(&e), error: e.to_string() })
            }
        }
    }

    /// Creates `new` at its source and records it: the request before the
    /// call, the answer (both streams, one append) or the failure after.
    /// Answers the new invitation's state.
    ///
    /// # Errors
    /// [`CreateError`] saying what was recorded.
    pub async fn create_invitation(&self, new: CreateInvitation) -> Result<InvitationState, CreateError> {
        let fetchers = self.fetchers();
        let configured = match new.source {
            Source::Lightspark => fetchers.lightspark.is_some(),
            Source::Grid => fetchers.grid.is_some(),
        };
        if !configured {
            return Err(CreateError::NotConfigured(format!(
                "invitations cannot be created at {}: set {}",
                new.source.as_str(),
                super::config::ReconcileConfig::fetch_settings(new.source)
            )));
        }
        let rng = crate::rng::SplitMix::from_entropy();
        let request_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let stream = format!("{REQUEST_PREFIX}{request_id}");
        let requested = CreateRequested {
            invitation_id: stream.clone(),
            request_id: request_id.clone(),
            source: new.source,
            inviter_uma: new.inviter_uma.clone(),
            amount: new.amount.clone(),
            expires_at: new.expires_at.clone(),
            first_name: new.first_name.clone(),
            requested_at: rfc3339(self.now()),
        };
        self.ledger()
            .append(InternalEvent::CreateRequested(requested).to_new_event())
            .await
            .map_err(|e| CreateError::Ledger(e.to_string()))?;
        let source_name = new.source.as_str();
        let answer = self.ask_to_create(new.clone()).await;
        let now = rfc3339(self.now());
        let entity = match answer {
            Ok(entity) => entity,
            Err(e) => {
                let outcome = e.outcome;
                let error = e.error;
                let failed = CreateFailed {
                    invitation_id: stream.clone(),
                    request_id,
                    source: new.source,
                    outcome,
                    error: error.clone(),
                    failed_at: now,
                };
                self.ledger()
                    .append(InternalEvent::CreateFailed(failed).to_new_event())
                    .await
                    .map_err(|e| CreateError::Ledger(e.to_string()))?;
                tracing::warn!(request = %stream, outcome = outcome.as_str(), %error, "creating an invitation failed");
                return Err(match outcome {
                    CreateOutcome::Refused => CreateError::Refused { source_name, request: stream, error },
                    CreateOutcome::Unknown => CreateError::Unknown { source_name, request: stream, error },
                });
            }
        };
        let created_id = match new.source {
            Source::Lightspark => entity["uma_invitation_id"].as_str().unwrap_or_default().to_owned(),
            Source::Grid => StreamId::grid(entity["code"].as_str().unwrap_or_default()).as_str().to_owned(),
        };
        let copy = |invitation_id: String| {
            InternalEvent::Created(Created {
                invitation_id,
                request_id: request_id.clone(),
                source: new.source,
                created_id: created_id.clone(),
                created_at: now.clone(),
                entity: entity.clone(),
            })
            .to_new_event()
        };
        self.ledger()
            .append_all(vec![copy(stream.clone()), copy(created_id.clone())])
            .await
            .map_err(|e| CreateError::Ledger(e.to_string()))?;
        let events = self
            .ledger()
            .read_stream(&StreamId::new(created_id.as_str()), 0)
            .await
            .map_err(|e| CreateError::Ledger(e.to_string()))?;
        fold_stream(&created_id, &events)
            .ok_or_else(|| CreateError::Ledger("the created invitation reads back empty".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-12-01T00:00:00Z").unwrap()
    }

    #[test]
    fn a_well_formed_request_reads_with_its_amount_in_the_smallest_unit_and_its_decimals() {
        let body = json!({"source": "lightspark", "inviter_uma": "$alice@a.example",
                          "amount": {"value": 500, "currency": "USD"}, "expires_at": "2026-12-31T00:00:00Z"});
        let c = parse_create(&body, now()).unwrap();
        assert_eq!(c.source, Source::Lightspark);
        let m = c.amount.unwrap();
        assert_eq!((m.value(), m.currency(), m.decimals()), (500, "USD", Some(2)));
        assert_eq!(c.expires_at.as_deref().and_then(parse_time), parse_time("2026-12-31T00:00:00Z"));
    }

    #[test]
    fn bad_requests_are_refused_with_a_sentence() {
        let base = json!({"source": "lightspark", "inviter_uma": "$alice@a.example"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (body, says) in [
            (json!([]), "JSON object"),
            (with("source", json!("stripe")), "source"),
            (with("inviter_uma", json!("alice@a.example")), "not a well-formed UMA"),
            (with("amount", json!({"value": 5, "currency": "XYZ"})), "not a currency code"),
            (with("amount", json!({"value": -5, "currency": "USD"})), "positive"),
            (with("amount", json!({"value": 5.5, "currency": "USD"})), "not an integer"),
            (with("expires_at", json!("2020-01-01T00:00:00Z")), "in the past"),
            (with("expires_at", json!("tomorrow")), "RFC 3339"),
            (with("amount", json!({"value": 5, "currency": "USD"})), "expires_at is required"),
            (with("colour", json!("red")), "unknown field"),
        ] {
            let e = parse_create(&body, now()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
