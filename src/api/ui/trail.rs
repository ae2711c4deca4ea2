//! An invitation's money trail, as its page shows it: every ledger event
//! of its stream in `seq` order, each with its kind, time, hash linked to
//! its predecessor, what it says (requests, outcomes, decisions, amounts
//! with their currency's decimals), the body pretty-printed with the exact
//! bytes one click away (`GET /invitations/{id}/events/{seq}/body`), and
//! for webhooks the stored signature re-verified now.

use std::fmt::Write as _;

use maud::{html, Markup};

use super::render::{badge, invitation_href, money, opt, opt_uma, visible};
use super::show::{opt_when, when, with_times};
use super::verdict::Verdict;
use crate::invitation::hides_text;
use crate::ledger::Hash;
use crate::money::PaymentAmount;
use crate::projection::events::InternalEvent;
use crate::projection::trail::{Decimals, Said, Trail, TrailEvent, TRAIL_CAP};

fn hex(h: &Hash) -> String {
    hex::encode(h)
}

/// Valid JSON text re-indented, two spaces a level, keys in the order
/// sent and every value's characters as they are (re-serialising would
/// sort keys and could respell numbers), except that a character inside a
/// string that hides or reorders text ([`hides_text`]: a bidi override
/// in an address, say) is written as its `\uXXXX` escape: the same JSON
/// value, shown as what it is.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                // The same string, every character of it visible.
                c if !escaped && hides_text(c) => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                    continue;
                }
                c => out.push(c),
            }
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|n| n.is_ascii_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

/// The body for reading: JSON re-indented, anything else as (lossy) text.
fn body_text(body: &[u8]) -> (String, bool) {
    match std::str::from_utf8(body) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => (pretty_json(text), true),
        _ => (visible(&String::from_utf8_lossy(body)), false),
    }
}

fn verdict_html(v: &Verdict) -> Markup {
    html! {
        @match v {
            Verdict::Verified { setting, key, of } => {
                span.ok { "✓ verified now with key " (key) " of " (of) " in " code { (setting) } }
            }
            Verdict::Refused { setting, why } => {
                span.bad { "✗ does not verify now under " code { (setting) } ": " (why) }
            }
            Verdict::NoKey { setting } => {
                span.hint { "not re-verified: " code { (setting) } " is not configured here" }
            }
        }
    }
}

fn mono(s: Option<&str>) -> Markup {
    html! { span.mono { (opt(s)) } }
}

/// What an event says, as its row shows it.
struct Shown {
    /// A one-line summary.
    what: Markup,
    /// For the platform's answers: its HTTP status (or that none came),
    /// and its tone: `ok` (done), `bad` (failed for good) or none (to
    /// be retried).
    status: Option<(String, &'static str)>,
    /// Its facts, one row each.
    facts: Vec<(&'static str, Markup)>,
}

/// What an event says: a summary, and its facts as rows.
fn said(e: &TrailEvent, verdict: Option<&Verdict>, d: &Decimals) -> Shown {
    let mut f: Vec<(&'static str, Markup)> = Vec::new();
    let mut status = None;
    let text = |s: &str| html! { (s) };
    let what = match &e.said {
        Said::Webhook { source, envelope, report } => {
            f.push(("Source", text(source.as_str())));
            f.push(("Event type", opt(envelope.event_type.as_deref())));
            f.push(("Delivery id", mono(envelope.delivery_id.as_deref())));
            f.push(("Sent at", opt_when(envelope.timestamp.as_deref())));
            f.push(("Signature", verdict.map_or_else(|| html! {}, verdict_html)));
            let s = &report.snapshot;
            if report.data_missing {
                f.push(("Invitation", html! { span.hint { "not in the body: fetched from the source" } }));
            } else {
                f.push(("Status", s.status.as_ref().map_or_else(|| opt(None), |st| badge(st.as_str()))));
                f.push(("Invitee", opt_uma(s.invitee_uma.as_deref())));
                let amount = match &s.payment_amount {
                    Some(PaymentAmount::Valid(m)) => text(&d.apply(m).display()),
                    Some(PaymentAmount::Invalid { reason }) => html! { span.bad { "unusable: " (reason) } },
                    None => opt(None),
                };
                f.push(("Amount", amount));
                f.push(("Dated", opt_when(report.dated.as_deref())));
            }
            html! { (source.as_str()) " webhook " (envelope.event_type.as_deref().unwrap_or_default()) }
        }
        Said::Internal(InternalEvent::Requested(r)) => {
            f.push(("Receiver", opt_uma(r.receiver_uma.as_deref())));
            let asked = r.amount.as_ref().map(|m| d.apply(m));
            f.push(("Amount", money(asked.as_ref())));
            f.push(("Idempotency key", mono(Some(r.idempotency_key.as_str()))));
            f.push(("Attempt", text(&r.attempt.to_string())));
            f.push(("Requested at", when(&r.requested_at)));
            html! {
                "attempt " (r.attempt) ": "
                @if let Some(m) = &asked { (m.display()) " " }
                "to " (r.receiver_uma.as_deref().map_or_else(|| "-".to_owned(), visible))
            }
        }
        Said::Internal(InternalEvent::CreateRequested(c)) => {
            f.push(("Source", text(c.source.as_str())));
            f.push(("Inviter", opt_uma(Some(c.inviter_uma.as_str()))));
            let asked = c.amount.as_ref().map(|m| d.apply(m));
            f.push(("Amount", money(asked.as_ref())));
            f.push(("Expires at", opt_when(c.expires_at.as_deref())));
            f.push(("Request", mono(Some(c.request_id.as_str()))));
            f.push(("Requested at", when(&c.requested_at)));
            html! { "create requested of " (c.source.as_str()) }
        }
        Said::Internal(InternalEvent::Created(c)) => {
            f.push(("Invitation", mono(Some(c.created_id.as_str()))));
            f.push(("Request", mono(Some(c.request_id.as_str()))));
            f.push(("At", when(&c.created_at)));
            status = Some(("created".to_owned(), "ok"));
            html! { "created " (c.created_id) }
        }
        Said::Internal(InternalEvent::CreateFailed(c)) => {
            f.push(("Outcome", text(c.outcome.as_str())));
            f.push(("Error", with_times(&c.error)));
            f.push(("At", when(&c.failed_at)));
            status = Some((c.outcome.as_str().to_owned(), "bad"));
            html! { "creation " (c.outcome.as_str()) }
        }
        Said::Internal(InternalEvent::CancelRequested(c)) => {
            f.push(("Source", text(c.source.as_str())));
            f.push(("Code", mono(Some(c.code.as_str()))));
            f.push(("Requested at", when(&c.requested_at)));
            html! { "cancel requested of " (c.source.as_str()) }
        }
        Said::Internal(InternalEvent::Cancelled(c)) => {
            f.push(("At", when(&c.cancelled_at)));
            status = Some(("cancelled".to_owned(), "ok"));
            html! { "cancelled at " (c.source.as_str()) }
        }
        Said::Internal(InternalEvent::CancelFailed(c)) => {
            f.push(("Outcome", text(c.outcome.as_str())));
            f.push(("Error", with_times(&c.error)));
            f.push(("At", when(&c.failed_at)));
            status = Some((c.outcome.as_str().to_owned(), "bad"));
            html! { "cancellation " (c.outcome.as_str()) }
        }
        Said::Internal(InternalEvent::Succeeded(s)) => {
            f.push(("HTTP status", text(&s.http_status.to_string())));
            f.push(("Payment id", mono(s.payment_id.as_deref())));
            f.push(("Attempt", text(&s.attempt.to_string())));
            f.push(("At", when(&s.at)));
            status = Some((format!("HTTP {}", s.http_status), "ok"));
            html! {
                (s.obligation.as_str()) " done"
                @if let Some(p) = &s.payment_id { ", payment " (p) }
            }
        }
        Said::Internal(InternalEvent::Failed(x)) => {
            f.push(("HTTP status", text(&x.http_status.map_or_else(|| "no answer".to_owned(), |s| s.to_string()))));
            f.push(("Error", with_times(&x.error)));
            f.push((
                "Next attempt",
                if x.permanent { text("none: failed for good") } else { opt_when(x.next_attempt_at.as_deref()) },
            ));
            f.push(("Attempt", text(&x.attempt.to_string())));
            f.push(("At", when(&x.at)));
            status = Some((answered(x.http_status), if x.permanent { "bad" } else { "" }));
            html! {
                @if x.permanent {
                    (x.obligation.as_str()) " failed for good"
                } @else {
                    "retry at " (opt_when(x.next_attempt_at.as_deref()))
                }
            }
        }
        Said::Internal(InternalEvent::InDoubt(d)) => {
            f.push(("Reason", text(d.reason.as_str())));
            f.push(("First requested at", when(&d.first_requested_at)));
            f.push(("Idempotency key", mono(Some(d.idempotency_key.as_str()))));
            html! { (d.obligation.as_str()) " in doubt (" (d.reason.as_str()) "): an operator decides" }
        }
        Said::Internal(InternalEvent::Resolved(r)) => {
            f.push(("Decision", badge(r.decision.as_str())));
            f.push(("Payment id", mono(r.payment_id.as_deref())));
            f.push(("Note", r.note.as_deref().map_or_else(|| opt(None), |n| html! { span.note { (n) } })));
            f.push(("By", r.by.map_or_else(|| opt(None), |b| text(b.as_str()))));
            f.push((
                "Occurrence",
                html! { (with_times(&r.occurrence)) " " span.hint { "(attempts:last change when decided)" } },
            ));
            html! {
                "operator decided " (r.decision.as_str()) " on " (r.obligation.as_str())
                @if let Some(b) = r.by { " (from the " (b.as_str()) ")" }
            }
        }
        Said::Internal(InternalEvent::Fetched(x)) => {
            f.push(("Fetched at", when(&x.fetched_at)));
            f.push(("From", text(x.source.as_str())));
            if let Some(note) = &x.operator_note {
                f.push(("Operator's refetch", text(note)));
            }
            let known = x.entity.is_some();
            f.push(("Answer", text(if known { "the invitation" } else { "unknown to the source (entity null)" })));
            text(if known { "fetched the invitation from its source" } else { "fetched: the source does not know it" })
        }
        Said::Internal(InternalEvent::FetchFailed(x)) => {
            f.push(("Error", with_times(&x.error)));
            if let Some(attempt) = x.attempt {
                f.push(("Attempt", text(&attempt.to_string())));
            }
            html! { @if x.reason.is_empty() { "fetch failed" } @else { "fetch failed for good: " (x.reason) } }
        }
        Said::Undecodable(why) => {
            f.push(("Cannot be read", html! { span.bad { (why) } }));
            text("an event this build cannot read")
        }
    };
    Shown { what, status, facts: f }
}

/// The HTTP status an answer came with, or that none came.
fn answered(status: Option<u16>) -> String {
    status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"))
}

/// The chain at an event: its hash, its predecessor's (linked when it is
/// of the same invitation), and whether they link.
fn chain(e: &TrailEvent) -> Markup {
    let ev = &e.event;
    html! {
        div.chain {
            div { "hash " code { (hex(&ev.hash)) } }
            div {
                "prev "
                @match &e.predecessor {
                    None => { code { "0000…0000" } " (the first event)" }
                    Some(p) => {
                        @if p.same_stream {
                            a href={ "#seq-" (p.seq) } { code { (hex(&p.hash)) } }
                        } @else {
                            code { (hex(&p.hash)) }
                        }
                        " (seq " (p.seq) @if !p.same_stream { ", another invitation's" } ")"
                        @if ev.prev_hash != p.hash {
                            " — but this event stores " code { (hex(&ev.prev_hash)) }
                        }
                    }
                }
            }
            div {
                @if e.chain_intact {
                    span.ok { "✓ chain intact at this seq" }
                } @else {
                    span.bad { "✗ chain broken at this seq: altered after it was written" }
                }
            }
        }
    }
}

/// The body pretty-printed, unfolded on demand, with a link to its exact
/// bytes and the signature header as received.
fn body(t: &Trail, e: &TrailEvent) -> Markup {
    let ev = &e.event;
    let (text, json) = body_text(&ev.body);
    let href = format!("{}/events/{}/body", invitation_href(&t.invitation.invitation_id), ev.seq);
    html! {
        details {
            summary { "Body · " (ev.body.len()) " bytes" @if !json { " · not JSON" } }
            pre.body { (text) }
            p.hint {
                a href=(href) { "Exact bytes as stored" } " (application/octet-stream)"
                @if let Some(sig) = &ev.signature {
                    " · signature header as received: " code { (sig) }
                }
            }
        }
    }
}

/// What a row shows of an event on one line: its seq (a link to itself),
/// kind, time, the platform's status for an answer, and the summary.
fn headline(e: &TrailEvent, shown: &Shown) -> Markup {
    let ev = &e.event;
    html! {
        a.seq href={ "#seq-" (ev.seq) } { "#" (ev.seq) }
        span.kind { (ev.kind) }
        (when(&ev.recorded_at))
        @if let Some((status, tone)) = &shown.status {
            span.status.ok[*tone == "ok"].bad[*tone == "bad"] { (status) }
        }
        span.what { (shown.what) }
    }
}

fn facts(shown: &Shown) -> Markup {
    html! { dl.facts { @for (k, v) in &shown.facts { dt { (k) } dd { (v) } } } }
}

/// A whole card: a webhook, a fetch, a doubt, a decision.
fn event_card(t: &Trail, e: &TrailEvent, verdict: Option<&Verdict>) -> Markup {
    let shown = said(e, verdict, &t.decimals);
    html! {
        article.ev id={ "seq-" (e.event.seq) } {
            header { (headline(e, &shown)) }
            (facts(&shown))
            (chain(e))
            (body(t, e))
        }
    }
}

/// A call to the platform (a request, or its answer) as one line, its
/// facts, hashes and body unfolded on demand: an outage's many retries
/// keep the page short.
fn call_row(t: &Trail, e: &TrailEvent) -> Markup {
    let shown = said(e, None, &t.decimals);
    html! {
        article.ev.attempt id={ "seq-" (e.event.seq) } {
            details {
                summary { (headline(e, &shown)) }
                (facts(&shown))
                (chain(e))
                (body(t, e))
            }
        }
    }
}

/// A request, or the platform's answer to one.
fn is_call(e: &TrailEvent) -> bool {
    matches!(
        e.said,
        Said::Internal(InternalEvent::Requested(_) | InternalEvent::Succeeded(_) | InternalEvent::Failed(_))
    )
}

/// A call of an outage: a request, or an answer to be retried.
fn is_retry(e: &TrailEvent) -> bool {
    match &e.said {
        Said::Internal(InternalEvent::Requested(_)) => true,
        Said::Internal(InternalEvent::Failed(x)) => !x.permanent,
        _ => false,
    }
}

/// A run of retries longer than this is folded into one line, all but its
/// last [`KEPT`] calls.
const FOLD_OVER: usize = 6;
const KEPT: usize = 2;

/// Folded calls of an outage in one line: how many, from when to when,
/// and what the platform answered, each row on demand.
fn folded_run(t: &Trail, run: &[TrailEvent]) -> Markup {
    let requests = run.iter().filter(|e| matches!(e.said, Said::Internal(InternalEvent::Requested(_)))).count();
    let mut answers: Vec<(String, usize)> = Vec::new();
    for e in run {
        if let Said::Internal(InternalEvent::Failed(x)) = &e.said {
            let a = answered(x.http_status);
            match answers.iter_mut().find(|(s, _)| *s == a) {
                Some((_, n)) => *n += 1,
                None => answers.push((a, 1)),
            }
        }
    }
    let (first, last) = (&run[0].event, &run[run.len() - 1].event);
    html! {
        details.run {
            summary {
                (requests) " earlier requests, " (when(&first.recorded_at)) " to " (when(&last.recorded_at))
                @if !answers.is_empty() {
                    ": "
                    @for (i, (status, n)) in answers.iter().enumerate() {
                        @if i > 0 { ", " }
                        span.status { (status) " ×" (n) }
                    }
                }
            }
            @for e in run { (call_row(t, e)) }
        }
    }
}

/// The trail's events in order: cards, call rows, and long runs of
/// retries folded.
fn rows(t: &Trail, verdicts: &[Option<Verdict>]) -> Markup {
    let events = &t.events;
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let end = i + events[i..].iter().take_while(|e| is_retry(e)).count();
        if end - i > FOLD_OVER {
            out.push(folded_run(t, &events[i..end - KEPT]));
            i = end - KEPT;
        }
        let e = &events[i];
        out.push(if is_call(e) { call_row(t, e) } else { event_card(t, e, verdicts[i].as_ref()) });
        i += 1;
    }
    html! { @for row in out { (row) } }
}

pub(super) fn section(t: &Trail, verdicts: &[Option<Verdict>]) -> Markup {
    let broken = t.events.iter().filter(|e| !e.chain_intact).count();
    let webhooks = verdicts.iter().flatten().count();
    let verified = verdicts.iter().flatten().filter(|v| matches!(v, Verdict::Verified { .. })).count();
    html! {
        section #trail {
            h2 { "Money trail" }
            ul.counts {
                li { "events " b { (t.events.len() as u64 + t.more) } }
                li {
                    "chain "
                    @if broken == 0 { b.ok { "✓ intact" } } @else { b.bad { "✗ " (broken) " broken" } }
                }
                li { "webhook signatures verified now " b { (verified) "/" (webhooks) } }
            }
            @if t.events.is_empty() {
                p.empty { "The ledger has no event of this invitation." }
            }
            (rows(t, verdicts))
            @if t.more > 0 {
                p.hint {
                    "Only the first " (TRAIL_CAP) " events are shown; " (t.more) " more are in the ledger ("
                    code { "GET /v1/ledger/events" } ")."
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_reindented_in_the_order_sent_and_strings_are_left_alone() {
        // given compact JSON with nesting, empty containers and tricky strings
        let text = r#"{"b":1,"a":[1,{"x":"q\"{,}:"}],"e":{},"f":[ ],"n":1.50}"#;
        // when it is pretty-printed
        let out = pretty_json(text);
        // then keys keep their order, strings and numbers their spelling, and it is still the same JSON
        assert!(out.find("\"b\"").unwrap() < out.find("\"a\"").unwrap(), "{out}");
        assert!(
            out.contains(r#""q\"{,}:""#)
                && out.contains("1.50")
                && out.contains("\"e\": {}")
                && out.contains("\"f\": []"),
            "{out}"
        );
        assert!(out.contains("\n  \"a\": [\n    1,\n    {\n      \"x\""), "{out}");
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(a, b);
        assert!(!body_text(b"\xff{").1);
    }

    #[test]
    fn characters_that_hide_text_are_shown_escaped_in_a_body_and_the_json_is_the_same() {
        // given a body whose strings carry a bidi override and a zero-width
        // space, and a plain space
        let text = "{\"invitee_uma\":\"$bob\u{202E}elpmaxe@b\u{200B}.example\",\"name\":\"a b\"}";
        // when it is pretty-printed
        let out = pretty_json(text);
        // then they are written as escapes, the space as it is, and the value is the same
        assert!(!out.contains('\u{202E}') && !out.contains('\u{200B}'), "{out}");
        assert!(out.contains(r#""$bob\u202eelpmaxe@b\u200b.example""#) && out.contains("\"a b\""), "{out}");
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(a, b);
        // and a body that is not JSON shows them by their code points
        let (shown, json) = body_text("not json \u{202E}x".as_bytes());
        assert_eq!((shown.as_str(), json), ("not json [U+202E]x", false));
    }
}
