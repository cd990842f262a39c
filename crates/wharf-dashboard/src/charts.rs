//! Server-rendered SVG line charts: no script, readable at any width (the SVG scales), with a
//! text summary for screen readers.

use maud::{Markup, html};

const W: f64 = 600.0;
const H: f64 = 120.0;
const PAD: f64 = 4.0;
/// The x axis always spans this many seconds up to now, so a young series sits at the right.
const WINDOW: f64 = 1800.0;

/// A chart of `points` (time in Unix seconds, oldest first; `None` leaves a gap) over the half
/// hour up to `now`, titled `title`, in `unit`.
pub(crate) fn line(title: &str, unit: &str, points: &[(i64, Option<f64>)], now: i64) -> Markup {
    let max = points.iter().filter_map(|p| p.1).fold(0.0_f64, f64::max);
    let top = nice(max);
    let latest = points.iter().rev().find_map(|p| p.1);
    let xy = |at: i64, v: f64| {
        let age = ((now - at) as f64).clamp(0.0, WINDOW);
        let x = PAD + (W - 2.0 * PAD) * (1.0 - age / WINDOW);
        let y = H - PAD - (H - 2.0 * PAD) * (v / top);
        (x, y)
    };
    let last_dot = points
        .iter()
        .rev()
        .find_map(|(at, v)| v.map(|v| xy(*at, v)));
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    for (at, v) in points {
        match v {
            Some(v) => {
                let (x, y) = xy(*at, *v);
                current.push_str(&format!("{x:.1},{y:.1} "));
            }
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    let fmt = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    let summary = match latest {
        Some(v) => format!("{title}: now {} {unit}, peak {} {unit}", fmt(v), fmt(max)),
        None => format!("{title}: no data yet"),
    };
    html! {
        figure.chart {
            figcaption {
                strong { (title) } " "
                span.muted { @if let Some(v) = latest { (fmt(v)) " " (unit) " now" } @else { "no data yet" } }
            }
            svg viewBox={"0 0 " (W) " " (H)} preserveAspectRatio="none" role="img" aria-label=(summary) {
                line x1="0" y1=(H - PAD) x2=(W) y2=(H - PAD) class="axis" {}
                line x1="0" y1=(PAD) x2=(W) y2=(PAD) class="grid" {}
                @for s in &segments { polyline points=(s) class="series" {} }
                @if let Some((x, y)) = last_dot {
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" class="dot" {}
                }
            }
            div.chart-scale { span { "30 min ago" } span { "max " (fmt(top)) " " (unit) } span { "now" } }
        }
    }
}

/// A round upper bound for the axis (1, 2, 5 × 10^n), at least 1.
fn nice(max: f64) -> f64 {
    if max <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bounds_are_round() {
        for (max, want) in [
            (0.0, 1.0),
            (0.4, 1.0),
            (1.5, 2.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (42.0, 50.0),
            (180.0, 200.0),
        ] {
            assert_eq!(nice(max), want, "{max}");
        }
    }

    #[test]
    fn gaps_split_the_line_and_the_summary_reads_well() {
        let pts = [
            (100, Some(1.0)),
            (105, None),
            (110, Some(2.0)),
            (115, Some(4.0)),
        ];
        let html = line("Requests", "req/s", &pts, 115).into_string();
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(
            html.contains("Requests: now 4.00 req/s, peak 4.00 req/s"),
            "{html}"
        );
    }
}
