//! How values read on the pages: times in one format and one offset, how
//! long ago something happened, and long ids cut short on screen but whole
//! on hover and when copied.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::render::opt;
use crate::time::parse_time;

/// The one format times are shown in: UTC, to the second.
const SHOWN: &str = "%Y-%m-%d %H:%M:%S UTC";

/// `t` as the pages show times: `2026-12-07 19:22:05 UTC`.
pub(super) fn utc(t: DateTime<Utc>) -> String {
    t.format(SHOWN).to_string()
}

/// A recorded time for people: [`utc`] in a `<time>` whose `datetime` is
/// the instant in UTC and whose title (on hover) is the value exactly as
/// recorded, whatever its offset and precision. Text that is no RFC 3339
/// time is shown as it is.
pub(super) fn when(at: &str) -> Markup {
    match parse_time(at) {
        Some(t) => html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) title=(at) { (utc(t)) }
        },
        None => html! { (at) },
    }
}

/// [`when`], or a dash.
pub(super) fn opt_when(at: Option<&str>) -> Markup {
    at.map_or_else(|| opt(None), when)
}

/// A sentence with every RFC 3339 time in it (an audit's detail, say)
/// shown as [`when`] does, the rest as it is.
pub(super) fn with_times(text: &str) -> Markup {
    let mut parts: Vec<(&str, bool)> = Vec::new();
    let mut rest = text;
    while let Some((start, end)) = next_time(rest) {
        parts.push((&rest[..start], false));
        parts.push((&rest[start..end], true));
        rest = &rest[end..];
    }
    parts.push((rest, false));
    html! { @for (part, time) in parts { @if time { (when(part)) } @else { (part) } } }
}

/// Where the first RFC 3339 time in `s` is: `2026-12-07T19:22:05…`, up to
/// the first character no such time has.
fn next_time(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let digits = |at: usize, n: usize| b.get(at..at + n).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let mut from = 0;
    while let Some(i) = s[from..].find('T').map(|i| from + i) {
        from = i + 1;
        if i < 10
            || !digits(i - 10, 4)
            || b[i - 6] != b'-'
            || !digits(i - 5, 2)
            || b[i - 3] != b'-'
            || !digits(i - 2, 2)
        {
            continue;
        }
        let start = i - 10;
        let len = s[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')))
            .unwrap_or(s.len() - start);
        let end = start + len;
        if parse_time(&s[start..end]).is_some() {
            return Some((start, end));
        }
    }
    None
}

/// How long `secs` seconds are, in the two largest units that matter:
/// `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub(super) fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long something has been in its state since `at`, as of `now`,
/// then the time itself: `12 min since 2026-12-07 19:22:05 UTC`.
pub(super) fn since(at: Option<&str>, now: DateTime<Utc>) -> Markup {
    let Some(at) = at else { return opt(None) };
    html! {
        @if let Some(t) = parse_time(at) {
            span.ago { (duration((now - t).num_seconds())) } " "
        }
        span.hint { "since " (when(at)) }
    }
}

/// A long id in a table: cut short on screen with an ellipsis (by the
/// style sheet: the text itself is whole, so copying it copies all of it),
/// the whole value in its title.
pub(super) fn short(id: &str, content: Markup) -> Markup {
    html! { span.short title=(id) { (content) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_any_offset_are_shown_in_utc_with_the_recorded_value_on_hover() {
        // given a time recorded with microseconds in UTC, one of a source in
        // another offset, and text that is no time
        let ledger = when("2026-12-07T19:22:05.123456Z").into_string();
        let source = when("2026-12-07T21:22:05+02:00").into_string();
        // then both read the same, in UTC, the exact value in the title
        assert_eq!(
            ledger,
            "<time datetime=\"2026-12-07T19:22:05.123Z\" title=\"2026-12-07T19:22:05.123456Z\">2026-12-07 19:22:05 UTC</time>"
        );
        assert!(
            source.contains(">2026-12-07 19:22:05 UTC</time>")
                && source.contains("title=\"2026-12-07T21:22:05+02:00\"")
        );
        assert_eq!(when("soon <b>").into_string(), "soon &lt;b&gt;");
    }

    #[test]
    fn times_inside_a_sentence_read_as_the_others_do() {
        let shown = with_times("validated, claimed at 2026-11-01T12:00:00.000000+00:00, incentive <b> still failed")
            .into_string();
        assert!(shown.starts_with("validated, claimed at <time datetime=\"2026-11-01T12:00:00.000Z\""), "{shown}");
        assert!(shown.ends_with(">2026-11-01 12:00:00 UTC</time>, incentive &lt;b&gt; still failed"), "{shown}");
        assert_eq!(
            with_times("no time T here, 2026-13-01T00:00:00Z").into_string(),
            "no time T here, 2026-13-01T00:00:00Z"
        );
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        for (secs, shown) in
            [(-3, "0 s"), (45, "45 s"), (60, "1 min"), (3599, "59 min"), (3660, "1 h 1 min"), (200_000, "2 d 7 h")]
        {
            assert_eq!(duration(secs), shown, "{secs}");
        }
    }
}
