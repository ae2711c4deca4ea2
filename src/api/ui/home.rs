//! The home page (`GET /`): search, what needs an operator, recent
//! invitations, activity charts, obligations by state, the incentive audit.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::charts;
use super::forms::{obligation_of, what_is_owed};
use super::render::{
    badge, detail, id_link, invitation_href, key, ledger_facts, money, obligation_cell, opt, page, uma_cell, visible,
};
use super::show::{opt_when, since, when, with_times};
use super::SEARCH_CAP;
use crate::projection::audit::Totals;
use crate::projection::audit_page::AuditPage;
use crate::projection::events::ObligationKind;
use crate::projection::query::{Search, StatusPage};
use crate::projection::registration::CancellationPhase;
use crate::projection::trail::Hour;
use crate::projection::view::{self, InvitationView};

/// The home page's data: the status page's, and the ledger's last hours,
/// as of `now`.
pub(super) struct Home<'a> {
    pub data: &'a StatusPage,
    pub hours: &'a [Hour],
    pub q: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// Who reconciles, as this instance sees it (`None`: not open yet).
    pub reconciling: Option<crate::api::Reconciling>,
}

/// The reconciler's standing on this instance, for the facts line.
fn reconciling(r: Option<crate::api::Reconciling>) -> Markup {
    use crate::api::Reconciling;
    html! {
        @match r {
            Some(Reconciling::Alone) | None => {},
            Some(Reconciling::Leading(epoch)) => { " · reconciler " b { "leading" } " (epoch " (epoch) ")" },
            Some(Reconciling::StandingBy) => { " · reconciler " b { "standing by" } " (another instance leads)" },
        }
    }
}

fn invitation_table(items: &[InvitationView]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "Invitation" } th { "Code" } th { "Status" } th { "Inviter" } th { "Invitee" }
                th { "Amount" } th { "Payout" } th { "Incentive" } th { "Notification" }
                th { "Failure notice" } th { "Last seq" }
            } }
            tbody {
                @for v in items {
                    tr {
                        td.id { (id_link(&v.invitation_id)) }
                        td.mono { (v.code.as_deref().map_or_else(|| opt(None), short_text)) }
                        td.nowrap { (v.status.as_deref().map_or_else(|| opt(None), badge)) }
                        td.uma { (v.inviter_uma.as_deref().map_or_else(|| opt(None), uma_cell)) }
                        td.uma { (v.invitee_uma.as_deref().map_or_else(|| opt(None), uma_cell)) }
                        td.amount { (money(v.payment_amount.as_ref())) }
                        td.nowrap { (obligation_cell(&v.payout)) }
                        td.nowrap { (obligation_cell(&v.incentive)) }
                        td.nowrap { (obligation_cell(&v.notification)) }
                        td.nowrap { (obligation_cell(&v.failure_notice)) }
                        td.num { (v.last_seq) }
                    }
                }
            }
        } }
    }
}

/// A code or id cut short, whole on hover and when copied.
fn short_text(s: &str) -> Markup {
    super::show::short(s, html! { (s) })
}

/// The obligations of `items` in state `wanted`, with their invitation.
fn in_state(items: &[InvitationView], wanted: view::ObligationState) -> Vec<(&InvitationView, ObligationKind)> {
    let mut rows = Vec::new();
    for v in items {
        for kind in ObligationKind::ALL {
            if obligation_of(v, kind).state == wanted {
                rows.push((v, kind));
            }
        }
    }
    rows
}

/// One row per obligation an operator must decide on: what it is for
/// (amount and receiver, as asked of the platform, else as the invitation
/// says) and how long it has been stuck, so that triage needs no click.
fn attention_table(rows: &[(&InvitationView, ObligationKind)], now: DateTime<Utc>) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "None." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "Invitation" } th { "Obligation" } th { "Amount" } th { "Receiver" } th { "Since" }
                    th { "Attempts" } th { "Idempotency key" } th { "Last error" }
                } }
                tbody {
                    @for (v, kind) in rows {
                        @let o = obligation_of(v, *kind);
                        @let (amount, receiver) = what_is_owed(v, *kind);
                        tr {
                            td.id { (id_link(&v.invitation_id)) }
                            td.nowrap { (kind.as_str()) }
                            td.amount { (money(amount.as_ref())) }
                            td.uma { (receiver.as_deref().map_or_else(|| opt(None), uma_cell)) }
                            td.since { (since(o.updated_at.as_deref(), now)) }
                            td.num { (o.attempts) }
                            td.mono { (key(o.idempotency_key.as_ref())) }
                            td { (o.last_error.as_deref().map_or_else(|| opt(None), with_times)) }
                        }
                    }
                }
            } }
        }
    }
}

/// What was forwarded, per currency, in each currency's decimals.
fn forwarded(t: &Totals) -> Markup {
    if t.forwarded.is_empty() {
        return opt(None);
    }
    html! { (t.forwarded_shown().join(", ")) }
}

fn audit_section(page: &AuditPage) -> Markup {
    let a = &page.audit;
    let inviters = a.totals.inviters.unwrap_or(a.inviters.len() as u64);
    html! {
        section #audit {
            h2 { "Incentive audit" }
            ul.counts {
                li { "inviters " b { (inviters) } }
                li { "validated " b { (a.totals.validated) } }
                li { "ineligible " b { (a.totals.ineligible) } }
                li { "pending " b { (a.totals.pending) } }
                li { "forwarded " b { (forwarded(&a.totals)) } }
                li { "anomalies " b { (a.anomalies.len()) } (if page.next.is_some() { " among these inviters" } else { "" }) }
            }
            h3 { "Anomalies" }
            @if a.anomalies.is_empty() {
                p.empty { "None." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Kind" } th { "Invitation" } th { "Detail" } } }
                    tbody {
                        @for an in &a.anomalies {
                            tr {
                                td.anomaly.nowrap { (an.kind) }
                                td.id { (id_link(&an.invitation_id)) }
                                td { (with_times(&visible(&an.detail))) }
                            }
                        }
                    }
                } }
            }
            h3 { "Per inviter" }
            @if a.inviters.is_empty() {
                p.empty { "No inviter yet." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Inviter" } th { "Invitations" } th { "Validated" } th { "Ineligible" } th { "Pending" }
                        th { "Forwarded" }
                    } }
                    tbody {
                        @for inv in &a.inviters {
                            tr {
                                td.uma { (uma_cell(&inv.inviter_uma)) }
                                td.num { (inv.invitations.len()) }
                                td.num { (inv.totals.validated) }
                                td.num { (inv.totals.ineligible) }
                                td.num { (inv.totals.pending) }
                                td.amount { (forwarded(&inv.totals)) }
                            }
                        }
                    }
                } }
                @if page.next.is_some() {
                    p.hint {
                        (inviters.saturating_sub(a.inviters.len() as u64)) " more inviters, and their anomalies: see "
                        code { "GET /v1/audit/incentives?after=" } " or " code { "audit incentives" } "."
                    }
                }
            }
        }
    }
}

fn activity_section(hours: &[Hour]) -> Markup {
    let starts: Vec<_> = hours.iter().map(|h| h.start).collect();
    let webhooks = charts::hourly(
        &charts::Hourly {
            id: "chart-webhooks",
            title: "Webhooks received per hour, last 48 hours (UTC)",
            unit: "webhooks",
            hours: &starts,
            series: &[charts::Series {
                name: "webhooks",
                class: "c-webhooks",
                values: hours.iter().map(|h| h.webhooks).collect(),
            }],
        },
        "No webhook received in the last 48 hours.",
    );
    let payments = charts::hourly(
        &charts::Hourly {
            id: "chart-payments",
            title: "Payments made per hour, last 48 hours (UTC)",
            unit: "payments",
            hours: &starts,
            series: &[
                charts::Series {
                    name: "invitee payments",
                    class: "c-payouts",
                    values: hours.iter().map(|h| h.payouts).collect(),
                },
                charts::Series {
                    name: "inviter incentives",
                    class: "c-incentives",
                    values: hours.iter().map(|h| h.incentives).collect(),
                },
            ],
        },
        "No payment made in the last 48 hours.",
    );
    html! {
        section #activity { h2 { "Activity" } div.charts { (webhooks) (payments) } }
    }
}

fn obligations_section(counts: &[(&'static str, String, i64)]) -> Markup {
    html! {
        section #obligations {
            h2 { "Obligations by state" }
            (charts::obligations(counts))
            div.scroll { table { tbody {
                @for kind in ObligationKind::ALL.map(ObligationKind::as_str) {
                    @let items: Vec<_> = counts.iter().filter(|c| c.0 == kind).collect();
                    tr {
                        th { (kind) }
                        td { ul.counts {
                            @for c in &items { li { (badge(&c.1)) " " b { (c.2) } } }
                            @if items.is_empty() { li.empty { "none" } }
                        } }
                    }
                }
            } } }
        }
    }
}

/// A banner for every source whose invitations wait for their data while
/// it cannot be fetched from: nothing is paid for them, and the page says
/// so first, naming the settings to set.
fn unfetchable_banner(d: &StatusPage) -> Markup {
    html! {
        @for (source, waiting, configured) in &d.awaiting_data {
            @if *waiting > 0 && !configured {
                section.banner #not-configured role="alert" {
                    b { "Fetching from " (source.as_str()) " is not configured." } " "
                    (waiting) " invitation" (if *waiting == 1 { "" } else { "s" }) " arrived without "
                    (if *waiting == 1 { "its" } else { "their" }) " data and cannot be paid until it is fetched: set "
                    code { (source.fetch_settings()) } "."
                }
            }
        }
    }
}

fn search_section(q: &str, found: &Search) -> Markup {
    html! {
        section #search-results {
            h2 { "Search: " (q) }
            @match found {
                Search::Exact(v) => {
                    (detail(v))
                    p { a.more href=(invitation_href(&v.invitation_id)) { "Money trail, signatures and actions →" } }
                }
                Search::Matches { items, .. } if items.is_empty() => {
                    p.empty {
                        "No invitation has this id or code, and no invitation has this inviter or invitee UMA."
                    }
                }
                Search::Matches { items, truncated } => {
                    (invitation_table(items))
                    @if *truncated {
                        p.hint { "Only the first " (SEARCH_CAP) " are shown; the read API pages through all of them." }
                    }
                }
            }
        }
    }
}

/// Creations and cancellations asked through the service whose outcome is
/// not known: the source may have acted, so an operator checks there
/// before asking again.
fn unknown_outcomes_section(d: &StatusPage) -> Markup {
    html! {
        section #unknown-outcomes {
            h2 { "Outcome unknown" }
            @if d.outcome_unknown.is_empty() {
                p.empty { "None." }
            } @else {
                p.hint {
                    "Creations or cancellations asked of a source with no answer recorded: the source may have acted. "
                    "Check there (by inviter and time, or by code) before asking again."
                }
                div.scroll { table {
                    thead { tr { th { "Invitation or request" } th { "Asked" } th { "State" } th { "Inviter" } th { "Since" } th { "Error" } } }
                    tbody {
                        @for v in &d.outcome_unknown {
                            @let (what, state, since, error) = match (&v.registration, &v.cancellation) {
                                (_, Some(c)) if matches!(c.state, CancellationPhase::Requested | CancellationPhase::Unknown) =>
                                    ("cancel", format!("{:?}", c.state).to_lowercase(), c.requested_at.clone(), c.error.clone()),
                                (Some(r), _) => ("create", format!("{:?}", r.state).to_lowercase(), r.requested_at.clone(), r.error.clone()),
                                _ => ("-", String::new(), None, None),
                            };
                            tr {
                                td.id { (id_link(&v.invitation_id)) }
                                td { (what) " at " (v.source.as_str()) }
                                td.nowrap { (badge(&state)) }
                                td.uma { (v.registration.as_ref().and_then(|r| r.inviter_uma.as_deref()).or(v.inviter_uma.as_deref()).map_or_else(|| opt(None), uma_cell)) }
                                td.nowrap { (opt_when(since.as_deref())) }
                                td { (opt(error.as_deref())) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// Claims of invitations created through the service that the sweep found
/// before any webhook: each one a webhook that did not arrive.
fn sweep_section(d: &StatusPage) -> Markup {
    html! {
        section #found-by-sweep {
            h2 { "Found by the sweep" }
            @if d.found_by_sweep.is_empty() {
                p.empty { "None: every claim of a registered invitation came with its webhook." }
            } @else {
                p.hint {
                    "These claims were found by fetching the invitations, not by a webhook: their webhooks did not "
                    "arrive. They are paid as usual; check the webhook URL and signing key at the source."
                }
                (invitation_table(&d.found_by_sweep))
            }
        }
    }
}

fn attention_section(d: &StatusPage, now: DateTime<Utc>) -> Markup {
    let in_doubt = in_state(&d.attention, view::ObligationState::InDoubt);
    let failed = in_state(&d.attention, view::ObligationState::Failed);
    html! {
        section #attention {
            h2 { "Needs an operator" }
            h3 { "In doubt" }
            (attention_table(&in_doubt, now))
            @if !in_doubt.is_empty() {
                p.hint {
                    "Check the payment platform for the idempotency key, then resolve it on the invitation's page or with "
                    code { "resolve <invitation> <kind> --paid ID | --retry | --failed" } "."
                }
            }
            h3 { "Failed" }
            (attention_table(&failed, now))
        }
    }
}

pub(super) fn render(home: &Home<'_>) -> String {
    let (d, q) = (home.data, home.q);
    let in_doubt: i64 = d.counts.iter().filter(|c| c.1 == "in_doubt").map(|c| c.2).sum();
    let failed: i64 = d.counts.iter().filter(|c| c.1 == "failed").map(|c| c.2).sum();
    let facts = ledger_facts(
        d.head,
        d.checkpoint,
        html! { " · in doubt " b { (in_doubt) } " · failed " b { (failed) } (reconciling(home.reconciling)) },
    );
    let rendered = home.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = html! {
        (unfetchable_banner(d))
        section {
            form.search method="get" action="/" role="search" {
                input type="search" name="q" value=(q.unwrap_or(""))
                    placeholder="Invitation id or code, inviter or invitee UMA" aria-label="Search" autofocus;
                button type="submit" { "Search" }
            }
        }
        @if let (Some(q), Some(found)) = (q, &d.search) { (search_section(q, found)) }
        (attention_section(d, home.now))
        (unknown_outcomes_section(d))
        (sweep_section(d))
        (activity_section(home.hours))
        section #recent {
            h2 { "Recent invitations" }
            @if d.recent.is_empty() { p.empty { "No invitation yet." } } @else { (invitation_table(&d.recent)) }
        }
        (obligations_section(&d.counts))
        (audit_section(&d.audit))
        footer {
            "Rendered " (when(&rendered)) " · each invitation's page has its money trail and actions · JSON: "
            a href="/v1/invitations" { "/v1/invitations" } ", "
            a href="/v1/audit/incentives" { "/v1/audit/incentives" } ", "
            a href="/v1/openapi.json" { "/v1/openapi.json" }
        }
    };
    let title = q.map_or_else(|| "Status — invitation-ledger".to_owned(), |q| format!("{q} — invitation-ledger"));
    page(&title, facts, body)
}
