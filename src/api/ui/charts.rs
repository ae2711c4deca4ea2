//! Charts as inline SVG drawn on the server: no script, no external asset,
//! nothing the Content-Security-Policy has to allow (an inline `<svg>` is
//! part of the HTML, styled by the page's own style sheet). Each chart has
//! a title and a description for screen readers, visible axis labels, a
//! tooltip (`<title>`) on every bar, and a note instead of bars when there
//! is nothing to draw. Written as `maud` templates like the pages, so every
//! label is escaped and nothing is spliced in unescaped.

use chrono::{DateTime, Timelike, Utc};
use maud::{html, Markup};

/// One stacked series of an hourly chart.
pub(super) struct Series<'a> {
    pub name: &'a str,
    /// CSS class giving its colour (`style.css`).
    pub class: &'a str,
    /// One value per hour, in the order of [`Hourly::hours`].
    pub values: Vec<u64>,
}

/// A bar chart of counts per hour.
pub(super) struct Hourly<'a> {
    /// The figure's element id, also the prefix of its title's id.
    pub id: &'a str,
    pub title: &'a str,
    /// What is counted, for the axis and the tooltips ("webhooks").
    pub unit: &'a str,
    /// The start of each hour, oldest first.
    pub hours: &'a [DateTime<Utc>],
    pub series: &'a [Series<'a>],
}

const W: f64 = 640.0;
const H: f64 = 230.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;
/// Horizontal grid lines above the baseline.
const TICKS: u64 = 4;

/// The smallest "round" top of the y axis (a multiple of [`TICKS`] steps of
/// 1, 2 or 5 × 10ⁿ) at or above `max`.
fn nice_top(max: u64) -> u64 {
    let raw = max.div_ceil(TICKS).max(1);
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude *= 10;
    }
    let step = [1, 2, 5, 10].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    step * TICKS
}

/// A coordinate as SVG takes it, to a tenth.
fn at(v: f64) -> String {
    format!("{v:.1}")
}

/// The `<svg>` element of a chart, with its title and description for
/// screen readers, around `content`.
fn svg(id: &str, title: &str, desc: &str, height: f64, content: Markup) -> Markup {
    html! {
        svg.chart-svg viewBox={ "0 0 " (W) " " (height) } width=(W) height=(height) role="img"
            aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (desc) }
            (content)
        }
    }
}

/// An hourly bar chart, the series stacked; `empty_note` is shown when
/// every value is zero.
pub(super) fn hourly(c: &Hourly<'_>, empty_note: &str) -> Markup {
    let n = c.hours.len().max(1);
    let totals: Vec<u64> = (0..c.hours.len()).map(|i| c.series.iter().map(|s| s.values[i]).sum()).collect();
    let grand: u64 = totals.iter().sum();
    let max = totals.iter().copied().max().unwrap_or(0);
    let top = nice_top(max);
    let busiest = totals.iter().enumerate().max_by_key(|(i, t)| (**t, *i)).filter(|(_, t)| **t > 0);
    let desc = match busiest {
        Some((i, t)) => format!(
            "{grand} {} in all; the busiest hour began {} UTC with {t}.",
            c.unit,
            c.hours[i].format("%Y-%m-%d %H:00")
        ),
        None => empty_note.to_owned(),
    };
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let base = TOP + plot_h;
    let slot = plot_w / n as f64;
    let bar_w = (slot * 0.72).max(1.0);
    let content = html! {
        // Y axis: grid lines and their values, and what is counted.
        @for t in 0..=TICKS {
            @let y = base - plot_h * t as f64 / TICKS as f64;
            line.grid x1=(LEFT) x2=(W - RIGHT) y1=(at(y)) y2=(at(y)) {}
            text.tick x=(LEFT - 6.0) y=(at(y + 4.0)) text-anchor="end" { (top * t / TICKS) }
        }
        text.axis-title x=(LEFT) y="14" { (c.unit) " per hour" }
        // Bars, stacked in series order, only for hours with something.
        @for (i, hour) in c.hours.iter().enumerate().filter(|(i, _)| totals[*i] > 0) {
            @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            @let label = hour.format("%Y-%m-%d %H:00 UTC").to_string();
            g.bar data-hour=(hour.format("%Y-%m-%dT%H")) data-count=(totals[i]) {
                @for (series, y, h) in stacked(c.series, i, base, plot_h, top) {
                    rect class=(series.class) x=(at(x)) y=(at(y)) width=(at(bar_w)) height=(at(h)) {
                        title { (label) ": " (series.values[i]) " " (series.name) }
                    }
                }
            }
        }
        // X axis: the baseline, a tick every six hours labelled with the
        // hour, and the date under midnight.
        line.axis x1=(LEFT) x2=(W - RIGHT) y1=(base) y2=(base) {}
        @for (i, hour) in c.hours.iter().enumerate().filter(|(_, h)| h.hour() % 6 == 0) {
            @let x = at(LEFT + slot * i as f64 + slot / 2.0);
            line.axis x1=(x) x2=(x) y1=(base) y2=(base + 4.0) {}
            text.tick x=(x) y=(base + 16.0) text-anchor="middle" { (hour.format("%H:00")) }
            @if hour.hour() == 0 {
                text.tick.date x=(x) y=(base + 28.0) text-anchor="middle" { (hour.format("%b %-d")) }
            }
        }
        text.axis-title x=(W - RIGHT) y=(H - 4.0) text-anchor="end" { "hour (UTC)" }
        @if c.series.len() > 1 { (legend(c.series)) }
        @if grand == 0 {
            text.empty-note x=(at(LEFT + plot_w / 2.0)) y=(at(TOP + plot_h / 2.0)) text-anchor="middle" { (empty_note) }
        }
    };
    html! {
        figure.chart id=(c.id) {
            (svg(c.id, c.title, &desc, H, content))
            figcaption { (c.title) }
        }
    }
}

/// The non-zero values of hour `i`, stacked up from `base`: each series
/// with its segment's top and height.
fn stacked<'a>(
    series: &'a [Series<'a>],
    i: usize,
    base: f64,
    plot_h: f64,
    top: u64,
) -> Vec<(&'a Series<'a>, f64, f64)> {
    let mut y = base;
    let mut out = Vec::new();
    for s in series.iter().filter(|s| s.values[i] > 0) {
        let h = plot_h * s.values[i] as f64 / top as f64;
        y -= h;
        out.push((s, y, h));
    }
    out
}

/// The series' names and colours, right-aligned above the plot.
fn legend(series: &[Series<'_>]) -> Markup {
    let mut x = W - RIGHT;
    let mut placed = Vec::new();
    for s in series.iter().rev() {
        x -= 12.0 + 6.5 * s.name.chars().count() as f64;
        placed.push((s, x));
        x -= 10.0;
    }
    html! {
        @for (s, x) in placed {
            rect class=(s.class) x=(at(x)) y="6" width="9" height="9" {}
            text.tick x=(at(x + 13.0)) y="14" { (s.name) }
        }
    }
}

/// The order obligation states are stacked in: done, under way, waiting,
/// needing an operator, not owed.
const STATES: [&str; 9] =
    ["succeeded", "requested", "retry_scheduled", "pending", "in_doubt", "failed", "invalid", "ineligible", "not_due"];

/// States drawn in light colours (`style.css`), which need dark figures.
const LIGHT: [&str; 4] = ["retry_scheduled", "pending", "ineligible", "not_due"];

const KINDS: [&str; 4] = ["invitee_payment", "inviter_incentive", "inviter_notification", "inviter_failure_notice"];

/// A state as a class name: its letters, digits and `_` only.
fn class_of(state: &str) -> String {
    state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// Obligations by state, one horizontal stacked bar per kind, scaled to
/// the largest kind's total; `counts` as `(kind, state, n)`.
pub(super) fn obligations(counts: &[(&'static str, String, i64)]) -> Markup {
    const LABEL: f64 = 150.0;
    const ROW: f64 = 34.0;
    const BAR: f64 = 22.0;
    let id = "chart-obligations";
    let count = |kind: &str, state: &str| -> u64 {
        counts.iter().filter(|c| c.0 == kind && c.1 == state).map(|c| c.2.max(0) as u64).sum()
    };
    // States this build does not name still count, after the known ones.
    let mut states: Vec<&str> = STATES.to_vec();
    for c in counts {
        if !states.contains(&c.1.as_str()) {
            states.push(c.1.as_str());
        }
    }
    let totals: Vec<u64> = KINDS.iter().map(|k| states.iter().map(|s| count(k, s)).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let top = nice_top(max);
    let height = 12.0 + ROW * KINDS.len() as f64 + 62.0;
    let plot_w = W - LABEL - 10.0 - RIGHT - 36.0;
    let desc = if max == 0 {
        "No invitation yet: no obligation to show.".to_owned()
    } else {
        KINDS
            .iter()
            .zip(&totals)
            .map(|(k, t)| {
                let parts: Vec<String> =
                    states.iter().filter(|s| count(k, s) > 0).map(|s| format!("{} {s}", count(k, s))).collect();
                format!("{k}: {t} ({})", if parts.is_empty() { "none".to_owned() } else { parts.join(", ") })
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let x0 = LABEL + 10.0;
    let axis_y = 12.0 + ROW * KINDS.len() as f64;
    // Each kind's segments: state, value, left edge and width.
    let rows: Vec<Vec<(&str, u64, f64, f64)>> = KINDS
        .iter()
        .map(|kind| {
            let mut x = x0;
            let mut segments = Vec::new();
            for state in states.iter().filter(|s| count(kind, s) > 0) {
                let v = count(kind, state);
                let w = plot_w * v as f64 / top as f64;
                segments.push((*state, v, x, w));
                x += w;
            }
            segments
        })
        .collect();
    // The legend: the states present, in stacking order.
    let mut legend = Vec::new();
    let mut x = x0;
    for state in states.iter().filter(|s| KINDS.iter().any(|k| count(k, s) > 0)) {
        legend.push((*state, x));
        x += 22.0 + 6.5 * state.chars().count() as f64;
    }
    let content = html! {
        @for t in 0..=TICKS {
            @let x = at(x0 + plot_w * t as f64 / TICKS as f64);
            line.grid x1=(x) x2=(x) y1="6" y2=(axis_y) {}
            text.tick x=(x) y=(axis_y + 14.0) text-anchor="middle" { (top * t / TICKS) }
        }
        text.axis-title x=(at(x0 + plot_w)) y=(axis_y + 30.0) text-anchor="end" { "obligations" }
        @for (row, kind) in KINDS.iter().enumerate() {
            @let y = 12.0 + ROW * row as f64;
            @let mid = at(y + BAR / 2.0 + 4.0);
            text.label x=(LABEL) y=(mid) text-anchor="end" { (kind) }
            @for (state, v, x, w) in &rows[row] {
                rect class={ "seg c-" (class_of(state)) } x=(at(*x)) y=(at(y)) width=(at(*w)) height=(BAR) {
                    title { (kind) ": " (v) " " (state) }
                }
                @if *w >= 22.0 {
                    // Dark figures on the light colours, white on the others.
                    text.in-bar.dark[LIGHT.contains(state)] x=(at(x + w / 2.0)) y=(mid) text-anchor="middle" { (v) }
                }
            }
            @let end = rows[row].last().map_or(x0, |(_, _, x, w)| x + w);
            text.tick x=(at(end + 6.0)) y=(mid) { (totals[row]) }
        }
        @for (state, x) in legend {
            rect class={ "c-" (class_of(state)) } x=(at(x)) y=(at(axis_y + 40.0)) width="9" height="9" {}
            text.tick x=(at(x + 13.0)) y=(at(axis_y + 48.0)) { (state) }
        }
        @if max == 0 {
            text.empty-note x=(at(x0 + plot_w / 2.0)) y=(at(12.0 + ROW * 1.5)) text-anchor="middle" {
                "No invitation yet: no obligation to show."
            }
        }
    };
    html! {
        figure.chart.wide id=(id) {
            (svg(id, "Obligations by kind and state", &desc, height, content))
            figcaption { "Obligations by kind and state" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_on_a_round_number_at_or_above_the_largest_bar() {
        // given largest bars of various sizes, then the top is a round multiple of four steps
        for (max, top) in [(0, 4), (1, 4), (4, 4), (5, 8), (9, 20), (37, 40), (101, 200), (12_345, 20_000)] {
            assert_eq!(nice_top(max), top, "{max}");
        }
    }

    #[test]
    fn an_hourly_chart_draws_one_bar_per_busy_hour_and_a_note_when_idle() {
        // given three hours of which the second had two webhooks
        let start = DateTime::parse_from_rfc3339("2026-11-30T23:00:00Z").unwrap().with_timezone(&Utc);
        let hours: Vec<_> = (0..3).map(|i| start + chrono::Duration::hours(i)).collect();
        let chart = |values: Vec<u64>| {
            hourly(
                &Hourly {
                    id: "c",
                    title: "T <x>",
                    unit: "webhooks",
                    hours: &hours,
                    series: &[Series { name: "webhooks", class: "c-webhooks", values }],
                },
                "nothing",
            )
            .into_string()
        };
        // when it is drawn, then there is one bar, at that hour, titled and labelled
        let busy = chart(vec![0, 2, 0]);
        assert_eq!(busy.matches("<g class=\"bar\"").count(), 1, "{busy}");
        assert!(busy.contains("data-hour=\"2026-12-01T00\" data-count=\"2\""), "{busy}");
        assert!(busy.contains("<title id=\"c-title\">T &lt;x&gt;</title>") && busy.contains("00:00"), "{busy}");
        assert!(!busy.contains("nothing"));
        // and with nothing at all, no bar and the note
        let idle = chart(vec![0, 0, 0]);
        assert!(!idle.contains("class=\"bar\"") && idle.contains(">nothing</text>"), "{idle}");
    }

    #[test]
    fn the_obligations_chart_stacks_each_kinds_states_and_names_them() {
        // given payments in three states and no incentive or notification
        let counts = vec![
            ("invitee_payment", "succeeded".to_owned(), 3),
            ("invitee_payment", "in_doubt".to_owned(), 1),
            ("invitee_payment", "something_new".to_owned(), 1),
        ];
        // then each state is a segment, and the description says it in words
        let svg = obligations(&counts).into_string();
        assert_eq!(svg.matches("class=\"seg ").count(), 3, "{svg}");
        assert!(svg.contains("c-in_doubt") && svg.contains("c-something_new"), "{svg}");
        assert!(svg.contains("invitee_payment: 5 (3 succeeded, 1 in_doubt, 1 something_new)"), "{svg}");
        assert!(obligations(&[]).into_string().contains("No invitation yet"));
    }
}
