//! The incentive audit: per inviter, every invitation's incentive decision,
//! what was forwarded (when, under which key, with which payment id, at
//! which ledger seq), totals per currency, and the anomalies a healthy
//! ledger never shows. A pure function of the projection and the time.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::events::{IdempotencyKey, ObligationKind, IDENTITY_MISMATCH};
use super::state::{InvitationState, ObligationPhase};
use super::view::{obligation, ObligationState};
use crate::invitation::IncentivesStatus;
use crate::money::Money;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IncentiveFacts {
    pub state: ObligationState,
    pub attempts: u32,
    pub idempotency_key: Option<IdempotencyKey>,
    pub payment_id: Option<String>,
    pub amount: Option<Money>,
    pub requested_seq: Option<u64>,
    pub succeeded_seq: Option<u64>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditedInvitation {
    pub invitation_id: String,
    pub code: Option<String>,
    pub claim_seq: Option<u64>,
    pub claimed_at: Option<String>,
    pub incentives_status: Option<String>,
    pub incentives_ineligibility_reason: Option<String>,
    pub incentive: IncentiveFacts,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Sum of forwarded incentives per currency, in the smallest unit.
    pub forwarded: BTreeMap<String, i64>,
    /// Each forwarded currency's decimals, as its requests stated them: to
    /// show the sums ([`Totals::forwarded_shown`]); the JSON keeps the
    /// integers alone, as it always did.
    #[serde(skip)]
    pub forwarded_decimals: BTreeMap<String, u32>,
    pub validated: u64,
    pub ineligible: u64,
    pub pending: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inviters: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InviterAudit {
    pub inviter_uma: String,
    pub invitations: Vec<AuditedInvitation>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Anomaly {
    /// `forwarded_twice`, `forwarded_not_validated`, `validated_not_forwarded`,
    /// `changed_after_request`, `status_conflict`, `incentives_conflict` or
    /// `identity_mismatch`.
    pub kind: &'static str,
    pub invitation_id: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IncentiveAudit {
    pub inviters: Vec<InviterAudit>,
    pub totals: Totals,
    pub anomalies: Vec<Anomaly>,
}

impl Totals {
    /// The forwarded sums for people, one per currency in code order, each
    /// in its currency's decimals: `4.00 USD`.
    pub fn forwarded_shown(&self) -> Vec<String> {
        self.forwarded
            .iter()
            .map(|(c, v)| match Money::new(*v, c.as_str()) {
                Ok(m) => m.with_decimals(self.forwarded_decimals.get(c).copied()).to_string(),
                // A sum past i64 wrapped negative: say so rather than hide it.
                Err(_) => format!("{v} {c} (minor units)"),
            })
            .collect()
    }

    fn count(&mut self, inv: &AuditedInvitation) {
        match inv.incentives_status.as_deref() {
            Some("VALIDATED") => self.validated += 1,
            Some("INELIGIBLE") => self.ineligible += 1,
            _ => self.pending += 1,
        }
        if inv.incentive.state == ObligationState::Succeeded {
            if let Some(m) = &inv.incentive.amount {
                *self.forwarded.entry(m.currency().to_owned()).or_default() += m.value();
                if let Some(d) = m.decimals() {
                    self.forwarded_decimals.entry(m.currency().to_owned()).or_insert(d);
                }
            }
        }
    }

    fn add(&mut self, other: &Totals) {
        for (c, v) in &other.forwarded {
            *self.forwarded.entry(c.clone()).or_default() += v;
        }
        for (c, d) in &other.forwarded_decimals {
            self.forwarded_decimals.entry(c.clone()).or_insert(*d);
        }
        self.validated += other.validated;
        self.ineligible += other.ineligible;
        self.pending += other.pending;
    }
}

/// The inviter an invitation's incentive is audited under: the receiver
/// its first request named, else the inviter the invitation names now.
pub fn audit_inviter(s: &InvitationState) -> Option<String> {
    let rec = s.obligation(ObligationKind::InviterIncentive);
    rec.receiver_uma.clone().or_else(|| s.inviter_uma.as_ref().map(|v| v.value.clone()))
}

/// Builds the audit. `horizon` is how long a validated incentive may stay
/// unforwarded after the claim before it counts as an anomaly.
pub fn audit(states: &[InvitationState], now: DateTime<Utc>, horizon: Duration) -> IncentiveAudit {
    let mut by_inviter: BTreeMap<String, Vec<AuditedInvitation>> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for s in states {
        let rec = s.obligation(ObligationKind::InviterIncentive);
        // Credited to whom the platform was actually asked to pay, not to
        // whoever a later snapshot names.
        let inviter = audit_inviter(s);
        for a in super::view::anomalies(s) {
            let reported = match a.kind {
                "undecodable_event" => false,
                // An answer refused for naming another invitation may be
                // all there is of this one: reported whoever the inviter.
                IDENTITY_MISMATCH => true,
                "changed_after_request" => inviter.is_some() && a.detail.starts_with("inviter_incentive"),
                _ => inviter.is_some(),
            };
            if reported {
                anomalies.push(Anomaly { kind: a.kind, invitation_id: s.invitation_id.clone(), detail: a.detail });
            }
        }
        let Some(inviter) = inviter else { continue };
        let view = obligation(s, ObligationKind::InviterIncentive);
        let validated = matches!(s.incentives_status(), Some(IncentivesStatus::Validated));
        let forwarded = rec.phase == ObligationPhase::Succeeded;
        if rec.successes > 1 {
            anomalies.push(Anomaly {
                kind: "forwarded_twice",
                invitation_id: s.invitation_id.clone(),
                detail: format!("{} successful forwards recorded for one incentive", rec.successes),
            });
        }
        if (forwarded || rec.attempts > 0) && !(validated && s.is_claimed()) {
            anomalies.push(Anomaly {
                kind: "forwarded_not_validated",
                invitation_id: s.invitation_id.clone(),
                detail: format!(
                    "incentive {} while status is {} and incentives_status is {}",
                    if forwarded { "forwarded" } else { "requested" },
                    s.status().map_or("unknown", |x| x.as_str()),
                    s.incentives_status().map_or("unknown", |x| x.as_str())
                ),
            });
        }
        if validated && s.is_claimed() && !forwarded {
            let claimed = s.claimed_at.as_ref().and_then(|c| crate::time::instant(&c.value));
            if let Some(claimed_us) = claimed {
                let age_us = now.timestamp_micros().saturating_sub(claimed_us);
                if age_us > 0 && age_us as u128 > horizon.as_micros() {
                    anomalies.push(Anomaly {
                        kind: "validated_not_forwarded",
                        invitation_id: s.invitation_id.clone(),
                        detail: format!("validated, claimed at {}, incentive still {}", c_text(s), view.state.as_str()),
                    });
                }
            }
        }
        by_inviter.entry(inviter).or_default().push(AuditedInvitation {
            invitation_id: s.invitation_id.clone(),
            code: s.code.as_ref().map(|v| v.value.clone()),
            claim_seq: s.claim_seq,
            claimed_at: s.claimed_at.as_ref().map(|v| v.value.clone()),
            incentives_status: s.incentives_status().map(|x| x.as_str().to_owned()),
            incentives_ineligibility_reason: s.incentives_ineligibility_reason.as_ref().map(|v| v.value.clone()),
            incentive: IncentiveFacts {
                state: view.state,
                attempts: view.attempts,
                idempotency_key: view.idempotency_key,
                payment_id: view.payment_id,
                amount: rec.amount.clone(),
                requested_seq: rec.requested_seq,
                succeeded_seq: rec.succeeded_seq,
                updated_at: view.updated_at,
            },
        });
    }
    let mut totals = Totals::default();
    let inviters: Vec<InviterAudit> = by_inviter
        .into_iter()
        .map(|(inviter_uma, invitations)| {
            let mut t = Totals::default();
            invitations.iter().for_each(|i| t.count(i));
            totals.add(&t);
            InviterAudit { inviter_uma, invitations, totals: t }
        })
        .collect();
    totals.inviters = Some(inviters.len() as u64);
    IncentiveAudit { inviters, totals, anomalies }
}

fn c_text(s: &InvitationState) -> &str {
    s.claimed_at.as_ref().map_or("?", |c| c.value.as_str())
}

/// A short human table of the audit, for the CLI.
pub fn render(a: &IncentiveAudit) -> String {
    let mut out: String = a.inviters.iter().map(render_inviter).collect();
    out.push_str(&render_end(&a.totals, &a.anomalies));
    out
}

/// One inviter's lines of [`render`]: what the CLI prints as it reads.
pub fn render_inviter(inv: &InviterAudit) -> String {
    let mut out = format!("{}\n", inv.inviter_uma);
    for i in &inv.invitations {
        out.push_str(&format!(
            "  {:<40} {:<11} {:<16} {:<10} {}\n",
            i.invitation_id,
            i.incentives_status.as_deref().unwrap_or("-"),
            i.incentive.state.as_str(),
            i.incentive.amount.as_ref().map_or("-".into(), ToString::to_string),
            i.incentive.payment_id.as_deref().or(i.incentives_ineligibility_reason.as_deref()).unwrap_or("-"),
        ));
    }
    out
}

/// The totals and anomalies that end [`render`].
pub fn render_end(totals: &Totals, anomalies: &[Anomaly]) -> String {
    let mut out = String::new();
    let fwd = totals.forwarded_shown();
    out.push_str(&format!(
        "totals: inviters={} validated={} ineligible={} pending={} forwarded={}\n",
        totals.inviters.unwrap_or(0),
        totals.validated,
        totals.ineligible,
        totals.pending,
        if fwd.is_empty() { "none".into() } else { fwd.join(", ") }
    ));
    if anomalies.is_empty() {
        out.push_str("anomalies: none");
    } else {
        for an in anomalies {
            out.push_str(&format!("ANOMALY {} {}: {}\n", an.kind, an.invitation_id, an.detail));
        }
    }
    out.trim_end().to_owned()
}
