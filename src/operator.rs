//! What an operator does to the ledger, written once: the CLI's `resolve`
//! and the status page's forms both call these functions, so a decision
//! taken on the page is the same event, under the same event key, checked
//! the same way, as one typed at a shell. Only the `by` field tells them
//! apart.
//!
//! Deciding reads the projection (is the obligation in doubt or failed?)
//! and recording appends; they are two steps so that a caller holding a
//! pooled connection (the page) can read on it and let it go before it
//! awaits the writer. The append is conditional on the invitation's
//! version the decision was taken on (the one the operator saw, when the
//! page says so): of two operators deciding at once, one is recorded and
//! the other told what happened meanwhile.

use crate::ledger::{Expected, Hash, Ledger, LedgerError, LedgerStore};
use crate::projection::events::{
    summary, Channel, Decision, IdempotencyKey, InternalEvent, ObligationKind, ObligationResolved,
};
use crate::projection::view::{obligation, ObligationState};
use crate::projection::{query, ProjectionError};
use crate::vocab::StreamId;

/// Longest operator note kept, in characters: a sentence or a ticket
/// reference, not a document.
pub const NOTE_MAX_CHARS: usize = 1000;
/// Longest payment id accepted, in characters.
pub const PAYMENT_ID_MAX_CHARS: usize = 200;

/// Why an operator action was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no invitation with id or code {0:?}")]
    UnknownInvitation(String),
    #[error("{invitation_id} {kind} is {state}, not in_doubt or failed: nothing to resolve")]
    NotResolvable { invitation_id: String, kind: &'static str, state: &'static str },
    /// The invitation changed after the operator looked: the decision was
    /// taken on what it said before, and is not recorded.
    #[error("{invitation_id} changed meanwhile: {what}. Nothing was recorded: look at it again and decide on what it says now")]
    Changed { invitation_id: String, what: String },
    /// The request itself is unusable (a missing payment id, a note too long).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// An operator's decision on one obligation, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub kind: ObligationKind,
    pub decision: Decision,
    /// The platform's payment id; required with [`Decision::Paid`], refused
    /// with the others.
    pub payment_id: Option<String>,
    pub note: Option<String>,
    pub by: Channel,
    /// The invitation's version the operator saw when deciding, when the
    /// decision says so (the page's forms carry it); `None`: the version
    /// found when the decision is checked.
    pub seen: Option<Seen>,
}

/// A version of an invitation as someone saw it: its last event's `seq`,
/// and that event's hash when known. The `seq` alone could name another
/// event in a ledger restored from a backup and grown again since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub seq: u64,
    pub hash: Option<Hash>,
}

impl Seen {
    /// `SEQ` or `SEQ:HASH`, as [`Seen`]'s `Display` writes it (a form's
    /// hidden field); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.split_once(':') {
            None => Some(Seen { seq: text.parse().ok()?, hash: None }),
            Some((seq, hash)) => Some(Seen { seq: seq.parse().ok()?, hash: Some(Hash::from_hex(hash).ok()?) }),
        }
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hash {
            Some(hash) => write!(f, "{}:{hash}", self.seq),
            None => write!(f, "{}", self.seq),
        }
    }
}

/// A decision checked against the invitation, ready to record, with the
/// version it was taken on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub resolved: ObligationResolved,
    pub seen: Seen,
}

/// What was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub invitation_id: String,
    pub kind: ObligationKind,
    pub decision: Decision,
    pub seq: u64,
    /// The same decision on the same occurrence was already in the ledger;
    /// `seq` is that event's.
    pub duplicate: bool,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recorded {} for {} {} at seq {}{}",
            self.decision.as_str(),
            self.invitation_id,
            self.kind.as_str(),
            self.seq,
            if self.duplicate { " (already recorded)" } else { "" }
        )
    }
}

/// `text` trimmed, `None` when empty; refused when longer than `max`
/// characters or holding control characters other than newlines and tabs
/// (`multiline`) or any (not).
fn cleaned(text: Option<String>, what: &str, max: usize, multiline: bool) -> Result<Option<String>, OperatorError> {
    let Some(text) = text.map(|t| t.replace("\r\n", "\n").trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(OperatorError::Invalid(format!("the {what} is longer than {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) {
        return Err(OperatorError::Invalid(format!("the {what} holds control characters")));
    }
    Ok(Some(text))
}

/// The `obligation.resolved` event that `r` asks for, checked against the
/// invitation's projection as of now: the obligation must be in doubt or
/// failed. Appends nothing.
///
/// # Errors
/// [`OperatorError`] saying why the decision cannot be recorded.
pub fn decide(
    conn: &rusqlite::Connection,
    invitation: &str,
    r: Resolution,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Decided, OperatorError> {
    let payment_id = cleaned(r.payment_id.clone(), "payment id", PAYMENT_ID_MAX_CHARS, false)?;
    let note = cleaned(r.note.clone(), "note", NOTE_MAX_CHARS, true)?;
    match (r.decision, &payment_id) {
        (Decision::Paid, None) => {
            return Err(OperatorError::Invalid("recording a payment as paid needs the platform's payment id".into()))
        }
        (Decision::Retry | Decision::Failed, Some(_)) => {
            return Err(OperatorError::Invalid(format!(
                "a payment id is recorded only with paid, not with {}",
                r.decision.as_str()
            )))
        }
        _ => {}
    }
    let state =
        query::find(conn, invitation)?.ok_or_else(|| OperatorError::UnknownInvitation(invitation.to_owned()))?;
    let seen = match r.seen {
        Some(seen) => seen,
        None => Seen { seq: state.last_seq, hash: query::event_hash(conn, state.last_seq)? },
    };
    if seen.seq < state.last_seq {
        // What changed is told when recording, from the ledger; recording
        // on a version already past is refused there.
        return Ok(Decided { resolved: resolution(&state, &r, payment_id, note, now), seen });
    }
    let view = obligation(&state, r.kind);
    if !matches!(view.state, ObligationState::InDoubt | ObligationState::Failed) {
        return Err(OperatorError::NotResolvable {
            invitation_id: state.invitation_id,
            kind: r.kind.as_str(),
            state: view.state.as_str(),
        });
    }
    Ok(Decided { resolved: resolution(&state, &r, payment_id, note, now), seen })
}

/// The `obligation.resolved` event of `r` on `state`.
fn resolution(
    state: &crate::projection::state::InvitationState,
    r: &Resolution,
    payment_id: Option<String>,
    note: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> ObligationResolved {
    let view = obligation(state, r.kind);
    ObligationResolved {
        invitation_id: state.invitation_id.clone(),
        obligation: r.kind,
        idempotency_key: IdempotencyKey::of(&state.invitation_id, r.kind),
        decision: r.decision,
        payment_id,
        at: crate::time::rfc3339(now),
        occurrence: format!("{}:{}", view.attempts, view.updated_at.as_deref().unwrap_or("-")),
        note,
        by: Some(r.by),
    }
}

/// Appends a decision made by [`decide`], on the condition that the
/// invitation is still at the version it was decided on, and waits for
/// the commit.
///
/// # Errors
/// [`OperatorError::Changed`] saying what happened meanwhile when the
/// invitation moved on; [`OperatorError::Ledger`] when the ledger cannot
/// be written.
pub async fn record(writer: &Ledger, decided: Decided) -> Result<Recorded, OperatorError> {
    let Decided { resolved, seen } = decided;
    let (invitation_id, kind, decision) = (resolved.invitation_id.clone(), resolved.obligation, resolved.decision);
    let stream = StreamId::new(invitation_id.as_str());
    let event = InternalEvent::Resolved(resolved).to_new_event();
    match writer.append_as(None, Expected::new(stream.clone(), seen.seq).with_hash(seen.hash), event).await {
        Ok(appended) => {
            Ok(Recorded { invitation_id, kind, decision, seq: appended.seq, duplicate: appended.duplicate })
        }
        Err(LedgerError::Conflict(_)) => {
            let since = writer.read_stream(&stream, seen.seq).await?;
            let what = match since.as_slice() {
                [] => "its events changed".to_owned(),
                events => {
                    events.iter().map(|e| format!("seq {} {}", e.seq, summary(e.view()))).collect::<Vec<_>>().join("; ")
                }
            };
            Err(OperatorError::Changed { invitation_id, what })
        }
        Err(e) => Err(e.into()),
    }
}

/// [`decide`], then [`record`]: the whole of `resolve`.
///
/// # Errors
/// As [`decide`] and [`record`].
pub async fn resolve(
    writer: &Ledger,
    conn: &rusqlite::Connection,
    invitation: &str,
    r: Resolution,
) -> Result<Recorded, OperatorError> {
    let resolved = decide(conn, invitation, r, chrono::Utc::now())?;
    record(writer, resolved).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_payment_ids_are_trimmed_and_bounded() {
        // given texts as an operator might type them
        // then blanks are no value, lines keep their breaks, and too long or odd texts are refused
        assert_eq!(cleaned(Some("  ".into()), "note", 10, true).unwrap(), None);
        assert_eq!(cleaned(Some(" a\r\nb ".into()), "note", 10, true).unwrap().as_deref(), Some("a\nb"));
        assert!(cleaned(Some("x".repeat(11)), "note", 10, true).unwrap_err().to_string().contains("longer than 10"));
        assert!(cleaned(Some("pay\n1".into()), "payment id", 10, false).is_err());
        assert!(cleaned(Some("a\u{7}".into()), "note", 10, true).is_err());
        assert_eq!(cleaned(Some("é".repeat(10)), "note", 10, true).unwrap().map(|s| s.chars().count()), Some(10));
    }
}
