//! An invitation's own page, `GET /invitations/{id or code}`: its facts,
//! the forms to act on it, and its whole trail from the ledger in `seq`
//! order — each event's kind, time, hash linked to its predecessor, what it
//! says (requests, outcomes, decisions, amounts with their currency's
//! decimals), the body pretty-printed with the exact bytes one click away
//! (`GET /invitations/{id}/events/{seq}/body`), and for webhooks the stored
//! signature re-verified now.

use std::fmt::Write as _;
use std::sync::Arc;

use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::actions::{self, Actions};
use super::render::{
    badge, catching_up_page, detail, escape, invitation_href, ledger_facts, message_page, money, opt, page, uma,
    visible,
};
use super::verdict::{self, Verdict};
use super::{html, Admit, Ui};
use crate::api::error::reject;
use crate::api::read::percent_decode;
use crate::invitation::hides_text;
use crate::ledger::Hash;
use crate::money::PaymentAmount;
use crate::projection::events::InternalEvent;
use crate::projection::trail::{self, Decimals, Said, Trail, TrailEvent, TRAIL_CAP};

pub(super) fn routes(ui: Arc<Ui>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let page_ui = ui.clone();
    let page = warp::path!("invitations" / String).and(warp::get()).and(warp::header::headers_cloned()).and_then(
        move |raw: String, headers: HeaderMap| {
            let ui = page_ui.clone();
            async move {
                let id = percent_decode(&raw, false);
                let here = invitation_href(&id);
                let credential = match ui.admit(&headers, Some(&here))? {
                    Admit::Login(page) => return Ok::<_, Rejection>(page),
                    Admit::Open => None,
                    Admit::Session(c) => Some(c),
                };
                if let Err(e) = ui.state.fresh() {
                    return Ok(catching_up_page(&e.to_string()));
                }
                let lookup = id.clone();
                let found = ui.state.reads.run(move |c| Ok(trail::trail(c, &lookup)?)).await.map_err(reject)?;
                let Some(t) = found else {
                    return Ok(message_page(
                        StatusCode::NOT_FOUND,
                        "No such invitation",
                        &format!("No invitation has the id or code {id:?}."),
                        "/",
                    ));
                };
                // A source without keys here (Grid, unless its key is
                // set): its webhooks say so instead of a verdict.
                let verdicts: Vec<Option<Verdict>> = t
                    .events
                    .iter()
                    .map(|e| match &e.said {
                        Said::Webhook { source, .. } => {
                            Some(verdict::check(&ui.keys, *source, &e.event.body, e.event.signature.as_deref()))
                        }
                        _ => None,
                    })
                    .collect();
                let acts = Actions {
                    csrf: credential.map(|c| ui.csrf.token(&c)),
                    token_configured: !ui.gate.is_open(),
                    refetch: ui.state.live.get().is_some_and(|l| l.refetch.is_some()),
                };
                Ok(html(StatusCode::OK, render(&t, &verdicts, &acts)))
            }
        },
    );

    // The seq is read here rather than by the router, so that any path of
    // this shape gets this route's answers (a 404 page for a seq that is
    // not a number), as the OpenAPI check expects of a documented route.
    let body = warp::path!("invitations" / String / "events" / String / "body")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(move |raw: String, seq: String, headers: HeaderMap| {
            let ui = ui.clone();
            async move {
                let id = percent_decode(&raw, false);
                if let Admit::Login(page) = ui.admit(&headers, Some(&invitation_href(&id)))? {
                    return Ok::<_, Rejection>(page);
                }
                let lookup = id.clone();
                let number = seq.parse::<u64>().ok();
                let event = ui
                    .state
                    .reads
                    .lookup(move |c| {
                        let Some(seq) = number else { return Ok(None) };
                        let Some(state) = crate::projection::query::find(c, &lookup)? else { return Ok(None) };
                        Ok(trail::event_of_invitation(c, &state.invitation_id, seq)?)
                    })
                    .await
                    .map_err(reject)?;
                let Some(event) = event else {
                    return Ok(message_page(
                        StatusCode::NOT_FOUND,
                        "No such event",
                        &format!("The invitation {id:?} has no event at seq {seq}."),
                        &invitation_href(&id),
                    ));
                };
                let mut r = warp::reply::Response::new(event.body.into());
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
                h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
                h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
                h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("default-src 'none'"));
                if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"ledger-seq-{seq}.body\""))
                {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                Ok(r)
            }
        });

    page.or(body).unify()
}

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

fn verdict_html(v: &Verdict) -> String {
    match v {
        Verdict::Verified { setting, key, of } => {
            format!("<span class=\"ok\">✓ verified now with key {key} of {of} in <code>{setting}</code></span>")
        }
        Verdict::Refused { setting, why } => {
            format!("<span class=\"bad\">✗ does not verify now under <code>{setting}</code>: {}</span>", escape(why))
        }
        Verdict::NoKey { setting } => {
            format!("<span class=\"hint\">not re-verified: <code>{setting}</code> is not configured here</span>")
        }
    }
}

/// A one-line summary of what an event says, and its facts as rows.
fn said(e: &TrailEvent, verdict: Option<&Verdict>, d: &Decimals) -> (String, Vec<(&'static str, String)>) {
    let mut f: Vec<(&'static str, String)> = Vec::new();
    let summary = match &e.said {
        Said::Webhook { source, envelope, report } => {
            f.push(("Source", escape(source.as_str())));
            f.push(("Event type", opt(envelope.event_type.as_deref())));
            f.push(("Delivery id", format!("<span class=\"mono\">{}</span>", opt(envelope.delivery_id.as_deref()))));
            f.push(("Sent at", opt(envelope.timestamp.as_deref())));
            f.push(("Signature", verdict.map(verdict_html).unwrap_or_default()));
            let s = &report.snapshot;
            if report.data_missing {
                f.push(("Invitation", "<span class=\"hint\">not in the body: fetched from the source</span>".into()));
            } else {
                f.push(("Status", s.status.as_ref().map_or_else(|| opt(None), |st| badge(st.as_str()))));
                f.push(("Invitee", s.invitee_uma.as_deref().map_or_else(|| opt(None), uma)));
                let amount = match &s.payment_amount {
                    Some(PaymentAmount::Valid(m)) => escape(&d.apply(m).display()),
                    Some(PaymentAmount::Invalid { reason }) => {
                        format!("<span class=\"bad\">unusable: {}</span>", escape(reason))
                    }
                    None => opt(None),
                };
                f.push(("Amount", amount));
                f.push(("Dated", opt(report.dated.as_deref())));
            }
            format!(
                "{} webhook {}",
                escape(source.as_str()),
                envelope.event_type.as_deref().map_or_else(String::new, escape)
            )
        }
        Said::Internal(InternalEvent::Requested(r)) => {
            f.push(("Receiver", r.receiver_uma.as_deref().map_or_else(|| opt(None), uma)));
            let asked = r.amount.as_ref().map(|m| d.apply(m));
            f.push(("Amount", money(asked.as_ref())));
            f.push(("Idempotency key", format!("<span class=\"mono\">{}</span>", escape(r.idempotency_key.as_str()))));
            f.push(("Attempt", r.attempt.to_string()));
            f.push(("Requested at", escape(&r.requested_at)));
            let amount = asked.map(|m| format!("{} ", m.display())).unwrap_or_default();
            escape(&format!(
                "asked the platform for {} {amount}to {} (attempt {})",
                r.obligation.as_str(),
                r.receiver_uma.as_deref().map_or_else(|| "-".to_owned(), visible),
                r.attempt
            ))
        }
        Said::Internal(InternalEvent::Succeeded(s)) => {
            f.push(("HTTP status", s.http_status.to_string()));
            f.push(("Payment id", format!("<span class=\"mono\">{}</span>", opt(s.payment_id.as_deref()))));
            f.push(("Attempt", s.attempt.to_string()));
            f.push(("At", escape(&s.at)));
            escape(&format!(
                "the platform answered {}: {} done{}",
                s.http_status,
                s.obligation.as_str(),
                s.payment_id.as_deref().map(|p| format!(", payment {p}")).unwrap_or_default()
            ))
        }
        Said::Internal(InternalEvent::Failed(x)) => {
            f.push(("HTTP status", x.http_status.map_or_else(|| "no answer".to_owned(), |s| s.to_string())));
            f.push(("Error", escape(&x.error)));
            f.push((
                "Next attempt",
                if x.permanent { "none: failed for good".into() } else { opt(x.next_attempt_at.as_deref()) },
            ));
            f.push(("Attempt", x.attempt.to_string()));
            f.push(("At", escape(&x.at)));
            let status = x.http_status.map_or_else(|| "nothing".to_owned(), |s| s.to_string());
            escape(&format!(
                "the platform answered {status}: {}",
                if x.permanent {
                    "failed for good".to_owned()
                } else {
                    format!("retry at {}", x.next_attempt_at.as_deref().unwrap_or("-"))
                }
            ))
        }
        Said::Internal(InternalEvent::InDoubt(d)) => {
            f.push(("Reason", escape(d.reason.as_str())));
            f.push(("First requested at", escape(&d.first_requested_at)));
            f.push(("Idempotency key", format!("<span class=\"mono\">{}</span>", escape(d.idempotency_key.as_str()))));
            escape(&format!("{} in doubt ({}): an operator decides", d.obligation.as_str(), d.reason.as_str()))
        }
        Said::Internal(InternalEvent::Resolved(r)) => {
            f.push(("Decision", badge(r.decision.as_str())));
            f.push(("Payment id", format!("<span class=\"mono\">{}</span>", opt(r.payment_id.as_deref()))));
            f.push((
                "Note",
                r.note.as_deref().map_or_else(|| opt(None), |n| format!("<span class=\"note\">{}</span>", escape(n))),
            ));
            f.push(("By", r.by.map_or_else(|| opt(None), |b| escape(b.as_str()))));
            f.push((
                "Occurrence",
                format!("{} <span class=\"hint\">(attempts:last change when decided)</span>", escape(&r.occurrence)),
            ));
            escape(&format!(
                "operator decided {} on {}{}",
                r.decision.as_str(),
                r.obligation.as_str(),
                r.by.map(|b| format!(" (from the {})", b.as_str())).unwrap_or_default()
            ))
        }
        Said::Internal(InternalEvent::Fetched(x)) => {
            f.push(("Fetched at", escape(&x.fetched_at)));
            f.push(("From", escape(x.source.as_str())));
            if let Some(note) = &x.operator_note {
                f.push(("Operator's refetch", escape(note)));
            }
            let known = x.entity.is_some();
            f.push((
                "Answer",
                if known { "the invitation".into() } else { "unknown to the source (entity null)".into() },
            ));
            if known {
                "fetched the invitation from its source".into()
            } else {
                "fetched: the source does not know it".into()
            }
        }
        Said::Internal(InternalEvent::FetchFailed(x)) => {
            f.push(("Error", escape(&x.error)));
            if let Some(attempt) = x.attempt {
                f.push(("Attempt", attempt.to_string()));
            }
            if x.reason.is_empty() {
                "fetch failed".into()
            } else {
                escape(&format!("fetch failed for good: {}", x.reason))
            }
        }
        Said::Undecodable(why) => {
            f.push(("Cannot be read", format!("<span class=\"bad\">{}</span>", escape(why))));
            "an event this build cannot read".into()
        }
    };
    (summary, f)
}

fn event_card(t: &Trail, e: &TrailEvent, verdict: Option<&Verdict>) -> String {
    let ev = &e.event;
    let invitation_id = &t.invitation.invitation_id;
    let (summary, facts) = said(e, verdict, &t.decimals);
    let mut s = format!(
        "<article class=\"ev\" id=\"seq-{seq}\"><header><a class=\"seq\" href=\"#seq-{seq}\">#{seq}</a>\
         <span class=\"kind\">{kind}</span><span class=\"what\">{summary}</span><time>{at}</time></header>",
        seq = ev.seq,
        kind = escape(&ev.kind),
        at = escape(&ev.recorded_at)
    );
    s.push_str("<dl class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    }
    s.push_str("</dl>");
    // The chain: this hash, the predecessor's, and whether they link.
    let prev = match &e.predecessor {
        None => "<code>0000…0000</code> (the first event)".to_owned(),
        Some(p) => {
            let code = format!("<code>{}</code>", hex(&p.hash));
            let linked = if p.same_stream { format!("<a href=\"#seq-{}\">{code}</a>", p.seq) } else { code };
            let whose = if p.same_stream { "" } else { ", another invitation's" };
            let stored = if ev.prev_hash == p.hash {
                String::new()
            } else {
                format!(" — but this event stores <code>{}</code>", hex(&ev.prev_hash))
            };
            format!("{linked} (seq {}{whose}){stored}", p.seq)
        }
    };
    let verdict = if e.chain_intact {
        "<span class=\"ok\">✓ chain intact at this seq</span>"
    } else {
        "<span class=\"bad\">✗ chain broken at this seq: altered after it was written</span>"
    };
    let _ = write!(
        s,
        "<div class=\"chain\"><div>hash <code>{}</code></div><div>prev {prev}</div><div>{verdict}</div></div>",
        hex(&ev.hash)
    );
    let (text, json) = body_text(&ev.body);
    let href = format!("{}/events/{}/body", invitation_href(invitation_id), ev.seq);
    let _ = write!(
        s,
        "<details><summary>Body · {} bytes{}</summary><pre class=\"body\">{}</pre>\
         <p class=\"hint\"><a href=\"{}\">Exact bytes as stored</a> (application/octet-stream){}</p></details></article>",
        ev.body.len(),
        if json { "" } else { " · not JSON" },
        escape(&text),
        escape(&href),
        ev.signature
            .as_deref()
            .map(|sig| format!(" · signature header as received: <code>{}</code>", escape(sig)))
            .unwrap_or_default()
    );
    s
}

fn trail_section(t: &Trail, verdicts: &[Option<Verdict>]) -> String {
    let broken = t.events.iter().filter(|e| !e.chain_intact).count();
    let webhooks = verdicts.iter().flatten().count();
    let verified = verdicts.iter().flatten().filter(|v| matches!(v, Verdict::Verified { .. })).count();
    let mut s = format!(
        "<section id=\"trail\"><h2>Money trail</h2><ul class=\"counts\"><li>events <b>{}</b></li>\
         <li>chain {}</li><li>webhook signatures verified now <b>{verified}/{webhooks}</b></li></ul>",
        t.events.len() as u64 + t.more,
        if broken == 0 {
            "<b class=\"ok\">✓ intact</b>".to_owned()
        } else {
            format!("<b class=\"bad\">✗ {broken} broken</b>")
        },
    );
    if t.events.is_empty() {
        s.push_str("<p class=\"empty\">The ledger has no event of this invitation.</p>");
    }
    for (e, v) in t.events.iter().zip(verdicts) {
        s.push_str(&event_card(t, e, v.as_ref()));
    }
    if t.more > 0 {
        let _ = write!(
            s,
            "<p class=\"hint\">Only the first {TRAIL_CAP} events are shown; {} more are in the ledger (<code>GET /v1/ledger/events</code>).</p>",
            t.more
        );
    }
    s.push_str("</section>");
    s
}

pub(super) fn render(t: &Trail, verdicts: &[Option<Verdict>], acts: &Actions) -> String {
    let v = &t.decimals.view(&t.invitation);
    let mut b = format!(
        "<section id=\"invitation\"><h2>Invitation <span class=\"mono\">{}</span></h2>{}",
        escape(&v.invitation_id),
        detail(v)
    );
    if !v.anomalies.is_empty() {
        b.push_str("<h3>Anomalies</h3><ul>");
        for a in &v.anomalies {
            let detail = escape(&visible(&a.detail));
            let _ = write!(b, "<li><span class=\"anomaly\">{}</span> {detail}</li>", escape(a.kind));
        }
        b.push_str("</ul>");
    }
    b.push_str("</section>");
    b.push_str(&actions::forms(v, acts));
    b.push_str(&trail_section(t, verdicts));
    let facts = ledger_facts(t.head, t.checkpoint, " · <a href=\"/\">all invitations</a>");
    page(&format!("{} — invitation-ledger", v.code.as_deref().unwrap_or(&v.invitation_id)), &facts, &b)
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
