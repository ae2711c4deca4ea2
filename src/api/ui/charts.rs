//! Charts as inline SVG drawn on the server: no script, no external asset,
//! nothing the Content-Security-Policy has to allow (an inline `<svg>` is
//! part of the HTML, styled by the page's own style sheet). Each chart has
//! a title and a description for screen readers, visible axis labels, a
//! tooltip (`<title>`) on every bar, and a note instead of bars when there
//! is nothing to draw.

use std::fmt::Write as _;

use chrono::{DateTime, Timelike, Utc};

use super::render::escape;

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

fn open_svg(id: &str, title: &str, desc: &str, height: f64) -> String {
    format!(
        "<svg class=\"chart-svg\" viewBox=\"0 0 {W} {height}\" width=\"{W}\" height=\"{height}\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(title),
        escape(desc)
    )
}

/// An hourly bar chart, the series stacked; `empty_note` is shown when
/// every value is zero.
pub(super) fn hourly(c: &Hourly<'_>, empty_note: &str) -> String {
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
    let mut s = format!("<figure class=\"chart\" id=\"{}\">", escape(c.id));
    s.push_str(&open_svg(c.id, c.title, &desc, H));
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let base = TOP + plot_h;
    // Y axis: grid lines and their values, and what is counted.
    for t in 0..=TICKS {
        let y = base - plot_h * t as f64 / TICKS as f64;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            top * t / TICKS
        );
    }
    let _ = write!(s, "<text class=\"axis-title\" x=\"{LEFT}\" y=\"14\">{} per hour</text>", escape(c.unit));
    // Bars, stacked in series order, only for hours with something.
    let slot = plot_w / n as f64;
    let bar_w = (slot * 0.72).max(1.0);
    for (i, hour) in c.hours.iter().enumerate() {
        if totals[i] == 0 {
            continue;
        }
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = base;
        let label = hour.format("%Y-%m-%d %H:00 UTC");
        let _ =
            write!(s, "<g class=\"bar\" data-hour=\"{}\" data-count=\"{}\">", hour.format("%Y-%m-%dT%H"), totals[i]);
        for series in c.series {
            let v = series.values[i];
            if v == 0 {
                continue;
            }
            let h = plot_h * v as f64 / top as f64;
            y -= h;
            let _ = write!(
                s,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\"><title>{label}: {v} {}</title></rect>",
                escape(series.class),
                escape(series.name)
            );
        }
        s.push_str("</g>");
    }
    // X axis: the baseline, a tick every six hours labelled with the hour,
    // and the date under midnight.
    let _ = write!(s, "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\"/>", W - RIGHT);
    for (i, hour) in c.hours.iter().enumerate() {
        if hour.hour() % 6 != 0 {
            continue;
        }
        let x = LEFT + slot * i as f64 + slot / 2.0;
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{base}\" y2=\"{}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            base + 4.0,
            base + 16.0,
            hour.format("%H:00")
        );
        if hour.hour() == 0 {
            let _ = write!(
                s,
                "<text class=\"tick date\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                base + 28.0,
                hour.format("%b %-d")
            );
        }
    }
    let _ = write!(
        s,
        "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"end\">hour (UTC)</text>",
        W - RIGHT,
        H - 4.0
    );
    if c.series.len() > 1 {
        let mut x = W - RIGHT;
        for series in c.series.iter().rev() {
            x -= 12.0 + 6.5 * series.name.chars().count() as f64;
            let _ = write!(
                s,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"6\" width=\"9\" height=\"9\"/><text class=\"tick\" x=\"{:.1}\" y=\"14\">{}</text>",
                escape(series.class),
                x + 13.0,
                escape(series.name)
            );
            x -= 10.0;
        }
    }
    if grand == 0 {
        let _ = write!(
            s,
            "<text class=\"empty-note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0,
            escape(empty_note)
        );
    }
    let _ = write!(s, "</svg><figcaption>{}</figcaption></figure>", escape(c.title));
    s
}

/// The order obligation states are stacked in: done, under way, waiting,
/// needing an operator, not owed.
const STATES: [&str; 9] =
    ["succeeded", "requested", "retry_scheduled", "pending", "in_doubt", "failed", "invalid", "ineligible", "not_due"];

/// States drawn in light colours (`style.css`), which need dark figures.
const LIGHT: [&str; 4] = ["retry_scheduled", "pending", "ineligible", "not_due"];

/// Obligations by state, one horizontal stacked bar per kind, scaled to
/// the largest kind's total; `counts` as `(kind, state, n)`.
pub(super) fn obligations(counts: &[(&'static str, String, i64)]) -> String {
    const KINDS: [&str; 3] = ["invitee_payment", "inviter_incentive", "inviter_notification"];
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
    let mut s = format!("<figure class=\"chart wide\" id=\"{id}\">");
    s.push_str(&open_svg(id, "Obligations by kind and state", &desc, height));
    let x0 = LABEL + 10.0;
    let axis_y = 12.0 + ROW * KINDS.len() as f64;
    for t in 0..=TICKS {
        let x = x0 + plot_w * t as f64 / TICKS as f64;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"6\" y2=\"{axis_y}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            axis_y + 14.0,
            top * t / TICKS
        );
    }
    let _ = write!(
        s,
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">obligations</text>",
        x0 + plot_w,
        axis_y + 30.0
    );
    for (row, kind) in KINDS.iter().enumerate() {
        let y = 12.0 + ROW * row as f64;
        let _ = write!(
            s,
            "<text class=\"label\" x=\"{LABEL}\" y=\"{:.1}\" text-anchor=\"end\">{kind}</text>",
            y + BAR / 2.0 + 4.0
        );
        let mut x = x0;
        for state in &states {
            let v = count(kind, state);
            if v == 0 {
                continue;
            }
            let w = plot_w * v as f64 / top as f64;
            let cls: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let _ = write!(
                s,
                "<rect class=\"seg c-{cls}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR}\"><title>{kind}: {v} {}</title></rect>",
                escape(state)
            );
            if w >= 22.0 {
                // Dark figures on the light colours, white on the others.
                let shade = if LIGHT.contains(state) { " dark" } else { "" };
                let _ = write!(
                    s,
                    "<text class=\"in-bar{shade}\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v}</text>",
                    x + w / 2.0,
                    y + BAR / 2.0 + 4.0
                );
            }
            x += w;
        }
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 6.0,
            y + BAR / 2.0 + 4.0,
            totals[row]
        );
    }
    // The legend: the states present, in stacking order.
    let mut x = x0;
    for state in states.iter().filter(|s| KINDS.iter().any(|k| count(k, s) > 0)) {
        let cls: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let _ = write!(
            s,
            "<rect class=\"c-{cls}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            axis_y + 40.0,
            x + 13.0,
            axis_y + 48.0,
            escape(state)
        );
        x += 22.0 + 6.5 * state.chars().count() as f64;
    }
    if max == 0 {
        let _ = write!(
            s,
            "<text class=\"empty-note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">No invitation yet: no obligation to show.</text>",
            x0 + plot_w / 2.0,
            12.0 + ROW * 1.5
        );
    }
    s.push_str("</svg><figcaption>Obligations by kind and state</figcaption></figure>");
    s
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
        let svg = obligations(&counts);
        assert_eq!(svg.matches("class=\"seg ").count(), 3, "{svg}");
        assert!(svg.contains("c-in_doubt") && svg.contains("c-something_new"), "{svg}");
        assert!(svg.contains("invitee_payment: 5 (3 succeeded, 1 in_doubt, 1 something_new)"), "{svg}");
        assert!(obligations(&[]).contains("No invitation yet"));
    }
}
