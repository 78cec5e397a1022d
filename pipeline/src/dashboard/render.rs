//! The page: HTML with inline styles and inline SVG charts, each chart followed by a table of
//! its numbers. Colours come from CSS variables, so the page follows the reader's dark or light
//! mode and prints in black on white.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{DayData, day_error, escape, exact, grouped, money};
use crate::day::DayState;

/// Customers in the bar chart.
const TOP: usize = 15;
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
/// Room for the axis labels.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;

const STYLE: &str = r#"
:root { --bg:#ffffff; --fg:#1d2330; --muted:#667085; --line:#d0d5dd; --accent:#2f6fde; --accent2:#0f9d74;
        --bad:#d92d20; --warn:#dc6803; --card:#f6f8fb; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#12161f; --fg:#e6e9ef; --muted:#98a2b3; --line:#344054; --accent:#6ea8fe; --accent2:#3ccf9f;
          --bad:#f97066; --warn:#fdb022; --card:#1b2130; }
}
@media print {
  :root { --bg:#ffffff; --fg:#000000; --muted:#444444; --line:#999999; --accent:#1f4fa8; --accent2:#0b6b50;
          --bad:#a8071a; --warn:#8a4b00; --card:#ffffff; }
  details { display:block; } details > summary { display:none; } section { break-inside: avoid-page; }
}
* { box-sizing: border-box; }
body { margin:0 auto; max-width:1240px; padding:24px; background:var(--bg); color:var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:28px 0 10px; } h3 { font-size:15px; margin:16px 0 6px; }
p.meta { color:var(--muted); margin:0; }
.figures { display:grid; grid-template-columns:repeat(auto-fill, minmax(180px, 1fr)); gap:10px; margin:12px 0; }
.figures div { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.figures dt { color:var(--muted); font-size:12px; } .figures dd { margin:2px 0 0; font-size:20px; font-weight:600; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(560px, 1fr)); gap:20px; }
svg { width:100%; height:auto; max-width:680px; display:block; }
svg text { fill:var(--fg); font-size:11px; } svg .muted { fill:var(--muted); }
svg .axis { stroke:var(--line); } svg .bar { fill:var(--accent); } svg .dot { fill:var(--accent); fill-opacity:.55; }
svg .line { fill:none; stroke:var(--accent); stroke-width:2; } svg .pt { fill:var(--accent); }
svg .bad { fill:var(--bad); } svg .warn { fill:var(--warn); }
table { border-collapse:collapse; margin:6px 0 4px; font-variant-numeric:tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:3px 10px 3px 0; text-align:left; vertical-align:top; }
td.n, th.n { text-align:right; }
details summary { cursor:pointer; color:var(--muted); }
.badge { display:inline-block; border-radius:10px; padding:1px 9px; font-size:12px; font-weight:600; color:#fff; vertical-align:middle; }
.complete { background:var(--accent2); } .failed, .mixed, .damaged, .held { background:var(--bad); } .running { background:var(--warn); }
ul.checks { margin:4px 0 10px; padding-left:18px; } ul.checks .error { color:var(--bad); } ul.checks .warn { color:var(--warn); }
.note { color:var(--bad); }
td.err { max-width:520px; color:var(--bad); word-break:break-word; }
"#;

/// The whole page.
pub(super) fn page(lake: &str, days: &[DayData], now: DateTime<Utc>) -> String {
    let mut html = String::with_capacity(256 * 1024);
    let first = days.first().map_or("", |d| d.date());
    let latest = days.last();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>user_behavior_metric — {}</title><style>{STYLE}</style></head><body>\
         <header><h1>user_behavior_metric</h1><p class=\"meta\">Lake <code>{}</code> · {} dates from {first} to {} · made {}</p></header>",
        escape(lake),
        escape(lake),
        days.len(),
        latest.map_or("", |d| d.date()),
        now.format("%Y-%m-%d %H:%M UTC"),
    );
    if let Some(day) = latest {
        latest_day(&mut html, day);
    }
    trends(&mut html, days);
    quality(&mut html, days);
    history(&mut html, days);
    html.push_str("</body></html>\n");
    html
}

fn badge(state: DayState) -> String {
    format!("<span class=\"badge {state}\" data-state=\"{state}\">{state}</span>")
}

/// The checks the day's last run failed (`crate::audit`), with their numbers, and who accepted
/// them if the day was published by hand.
fn failed_checks(html: &mut String, day: &DayData) {
    let Some(report) = &day.status.report else { return };
    let failed: Vec<_> = report.failed_checks().collect();
    if failed.is_empty() {
        return;
    }
    html.push_str("<ul class=\"checks\">");
    for check in failed {
        let _ = write!(
            html,
            "<li class=\"{sev}\" data-check=\"{name}\" data-severity=\"{sev}\">check {name} failed ({sev}): {detail}</li>",
            sev = check.severity,
            name = escape(&check.name),
            detail = escape(&check.detail)
        );
    }
    if let Some(accepted) = &report.accepted {
        let _ = write!(
            html,
            "<li data-accepted-by=\"{by}\">published by {by}, accepting {}</li>",
            escape(&accepted.checks.join(", ")),
            by = escape(&accepted.by)
        );
    }
    html.push_str("</ul>");
}

fn figure(html: &mut String, name: &str, label: &str, value: &str, shown: &str) {
    let _ = write!(html, "<div><dt>{label}</dt><dd data-figure=\"{name}\" data-value=\"{}\">{}</dd></div>", escape(value), escape(shown));
}

/// The latest date: its key figures and its customers' charts.
fn latest_day(html: &mut String, day: &DayData) {
    let _ = write!(html, "<section id=\"latest\"><h2>{} {}</h2>", day.date(), badge(day.status.state));
    if day.is_unhealthy() {
        let _ = write!(html, "<p class=\"note\">{}</p>", escape(&day_error(day).unwrap_or_else(|| day.status.note.clone())));
    }
    failed_checks(html, day);
    html.push_str("<dl class=\"figures\">");
    let none = || ("".to_string(), "–".to_string());
    let (v, s) = day.customers().map_or_else(none, |n| (n.to_string(), grouped(n.into())));
    figure(html, "customers", "Customers", &v, &s);
    let (v, s) = day.total_spent().map_or_else(none, |t| (exact(t), money(t)));
    figure(html, "total_spent", "Total spent", &v, &s);
    let (v, s) = day.positive_share().map_or_else(none, |p| (format!("{p:.6}"), format!("{:.1} %", p * 100.0)));
    figure(html, "positive_share", "Positive reviews", &v, &s);
    if let Some(c) = day.metric_report().map(|r| &r.counts) {
        for (name, label, n) in [
            ("reviews_read", "Reviews read", c.review_records_read),
            ("reviews_classified", "Classified", c.reviews_classified),
            ("reviews_rejected", "Rejected", c.reviews_rejected),
            ("null_reviews", "Null reviews", c.null_reviews),
            ("purchase_rows", "Purchase rows", c.purchase_rows_extracted),
        ] {
            figure(html, name, label, &n.to_string(), &grouped(n.into()));
        }
    }
    if let Some(report) = &day.status.report {
        figure(html, "run_status", "Run", &report.status.to_string(), &report.status.to_string());
        let seconds = report.duration_ms as f64 / 1000.0;
        figure(html, "duration", "Duration", &format!("{seconds:.3}"), &format!("{seconds:.2} s"));
    }
    html.push_str("</dl>");
    let Some(rows) = &day.metric else {
        html.push_str("<p>No committed metric partition for this date.</p></section>");
        return;
    };
    html.push_str("<div class=\"grid\">");
    // Top customers.
    let top: Vec<(String, f64)> = rows.iter().take(TOP).filter_map(|r| Some((r.customer_id.to_string(), r.amount? as f64 / 1e5))).collect();
    let _ = write!(html, "<div><h3>Top {} customers by amount spent</h3>{}", top.len(), bars(&top, "amount spent"));
    html.push_str("<details open><summary>Numbers</summary><table id=\"top-customers\"><tr><th>customerid</th><th class=\"n\">amount_spent</th><th class=\"n\">review_score</th><th class=\"n\">review_count</th></tr>");
    for r in rows.iter().take(TOP) {
        let _ = write!(
            html,
            "<tr data-customer=\"{}\" data-amount=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            r.customer_id,
            r.amount.map(exact).unwrap_or_default(),
            r.customer_id,
            r.amount.map_or_else(|| "NULL".to_string(), money),
            r.review_score,
            r.review_count
        );
    }
    html.push_str("</table></details></div>");
    // Amount against score.
    let points: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r.amount? as f64 / 1e5, f64::from(r.review_score)))).collect();
    let _ = write!(html, "<div><h3>Amount spent against review score</h3>{}", scatter(&points));
    html.push_str("<details><summary>Numbers (every customer)</summary><table><tr><th>customerid</th><th class=\"n\">amount_spent</th><th class=\"n\">review_score</th></tr>");
    for r in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            r.customer_id,
            r.amount.map_or_else(|| "NULL".to_string(), exact),
            r.review_score
        );
    }
    html.push_str("</table></details></div>");
    // Distribution of scores.
    let mut histogram = std::collections::BTreeMap::<i32, u64>::new();
    for r in rows {
        *histogram.entry(r.review_score).or_default() += 1;
    }
    let buckets: Vec<(String, f64)> = histogram.iter().map(|(score, n)| (score.to_string(), *n as f64)).collect();
    let _ = write!(html, "<div><h3>Customers by review score</h3>{}", columns(&buckets, "review score", "customers"));
    html.push_str("<details><summary>Numbers</summary><table><tr><th class=\"n\">review_score</th><th class=\"n\">customers</th></tr>");
    for (score, n) in &histogram {
        let _ = write!(html, "<tr><td class=\"n\">{score}</td><td class=\"n\">{n}</td></tr>");
    }
    html.push_str("</table></details></div></div></section>");
}

/// One series of a trend chart: a value per date, or none.
struct Series<'a> {
    name: &'a str,
    values: Vec<Option<f64>>,
}

/// The figures over all dates, and the durations of each task.
fn trends(html: &mut String, days: &[DayData]) {
    html.push_str("<section id=\"trends\"><h2>Over the dates</h2><div class=\"grid\">");
    let dates: Vec<&str> = days.iter().map(|d| d.date()).collect();
    let states: Vec<DayState> = days.iter().map(|d| d.status.state).collect();
    let per_day = |f: &dyn Fn(&DayData) -> Option<f64>| days.iter().map(f).collect::<Vec<_>>();
    let charts: [(&str, Vec<Option<f64>>); 4] = [
        ("Customers", per_day(&|d| d.customers().map(|n| n as f64))),
        ("Amount spent", per_day(&|d| d.total_spent().map(|t| t as f64 / 1e5))),
        ("Positive reviews (share)", per_day(&|d| d.positive_share())),
        ("Rejected records", per_day(&|d| d.rejected().map(|n| n as f64))),
    ];
    for (title, values) in charts {
        let _ = write!(html, "<div><h3>{title}</h3>{}</div>", lines(&[Series { name: title, values }], &dates, &states));
    }
    let task_names = ["ingest", "extract", "classify", "metric", "load"];
    let durations: Vec<Series> = task_names
        .iter()
        .map(|name| Series {
            name,
            values: days
                .iter()
                .map(|d| {
                    let task = d.status.report.as_ref()?.tasks.iter().find(|t| t.name == *name)?;
                    (task.attempts > 0).then(|| task.duration_ms as f64 / 1000.0)
                })
                .collect(),
        })
        .collect();
    let _ = write!(html, "<div><h3>Task durations (s)</h3>{}</div></div>", lines(&durations, &dates, &states));
    html.push_str(
        "<details open><summary>Numbers</summary><table id=\"trend-table\"><tr><th>date</th><th>state</th>\
         <th class=\"n\">customers</th><th class=\"n\">amount spent</th><th class=\"n\">positive share</th><th class=\"n\">rejected</th>",
    );
    for name in task_names {
        let _ = write!(html, "<th class=\"n\">{name} s</th>");
    }
    html.push_str("</tr>");
    for (i, day) in days.iter().enumerate() {
        let customers = day.customers().map(|n| n.to_string()).unwrap_or_default();
        let spent = day.total_spent().map(exact).unwrap_or_default();
        let share = day.positive_share().map(|p| format!("{p:.6}")).unwrap_or_default();
        let rejected = day.rejected().map(|n| n.to_string()).unwrap_or_default();
        let _ = write!(
            html,
            "<tr data-date=\"{}\" data-state=\"{}\" data-customers=\"{customers}\" data-spent=\"{spent}\" data-positive-share=\"{share}\" data-rejected=\"{rejected}\">\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            day.date(),
            day.status.state,
            day.date(),
            badge(day.status.state),
            day.customers().map(|n| grouped(n.into())).unwrap_or_else(|| "–".into()),
            day.total_spent().map(money).unwrap_or_else(|| "–".into()),
            day.positive_share().map(|p| format!("{:.1} %", p * 100.0)).unwrap_or_else(|| "–".into()),
            day.rejected().map(|n| grouped(n.into())).unwrap_or_else(|| "–".into()),
        );
        for series in &durations {
            let _ = write!(html, "<td class=\"n\">{}</td>", series.values[i].map(|s| format!("{s:.3}")).unwrap_or_else(|| "–".into()));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></details></section>");
}

/// Reject reasons of every date, latest first.
fn quality(html: &mut String, days: &[DayData]) {
    html.push_str("<section id=\"quality\"><h2>Data quality: rejected records</h2>");
    let with_rejects: Vec<&DayData> = days.iter().rev().filter(|d| !d.rejects.is_empty()).collect();
    if with_rejects.is_empty() {
        html.push_str("<p>No record was rejected on any date.</p></section>");
        return;
    }
    html.push_str("<table id=\"rejects\"><tr><th>date</th><th>reason</th><th class=\"n\">records</th><th>first lines</th></tr>");
    for day in with_rejects {
        for group in &day.rejects {
            let lines: Vec<String> = group.first_lines.iter().map(u64::to_string).collect();
            let _ = write!(
                html,
                "<tr data-date=\"{}\" data-count=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                day.date(),
                group.count,
                day.date(),
                escape(&group.reason),
                grouped(group.count.into()),
                lines.join(", ")
            );
        }
    }
    html.push_str("</table></section>");
}

/// Every run, latest first.
fn history(html: &mut String, days: &[DayData]) {
    html.push_str(
        "<section id=\"history\"><h2>Run history</h2><table id=\"runs\"><tr><th>date</th><th>state</th><th>run</th>\
         <th class=\"n\">attempts</th><th>tasks (s)</th><th class=\"n\">total s</th><th>error</th></tr>",
    );
    for day in days.iter().rev() {
        let Some(report) = &day.status.report else {
            let _ = write!(html, "<tr><td>{}</td><td>{}</td><td colspan=\"5\">no run report</td></tr>", day.date(), badge(day.status.state));
            continue;
        };
        let attempts: u32 = report.tasks.iter().map(|t| t.attempts).sum();
        let tasks: Vec<String> = report
            .tasks
            .iter()
            .map(|t| match t.attempts {
                0 => format!("{} –", escape(&t.name)),
                _ => format!("{} {:.2}", escape(&t.name), t.duration_ms as f64 / 1000.0),
            })
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{attempts}</td><td>{}</td><td class=\"n\">{:.2}</td><td class=\"err\">{}</td></tr>",
            day.date(),
            badge(day.status.state),
            escape(report.run_id.get(..8).unwrap_or(&report.run_id)),
            tasks.join(" · "),
            report.duration_ms as f64 / 1000.0,
            escape(&day_error(day).unwrap_or_default()),
        );
    }
    html.push_str("</table></section>");
}

/// A round upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_max(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|m| *m >= value).unwrap_or(10.0 * power)
}

/// A number as an axis label: short.
fn short(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else if abs >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn svg_open(html: &mut String, label: &str) {
    let _ = write!(html, "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">", escape(label));
}

/// Horizontal axis and left axis with a few labelled ticks from 0 to `max`.
fn y_axis(html: &mut String, max: f64) {
    let plot = HEIGHT - BOTTOM - 10.0;
    for i in 0..=4 {
        let y = 10.0 + plot * (1.0 - f64::from(i) / 4.0);
        let _ = write!(
            html,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{WIDTH}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            short(max * f64::from(i) / 4.0)
        );
    }
}

/// Vertical bars, one per item, labelled below (the top customers, with their ids).
fn bars(items: &[(String, f64)], what: &str) -> String {
    let mut svg = String::new();
    svg_open(&mut svg, &format!("bar chart of {what}"));
    let max = nice_max(items.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    y_axis(&mut svg, max);
    let plot = HEIGHT - BOTTOM - 10.0;
    let step = (WIDTH - LEFT) / items.len().max(1) as f64;
    for (i, (label, value)) in items.iter().enumerate() {
        let h = (value.max(0.0) / max) * plot;
        let x = LEFT + step * i as f64 + step * 0.15;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {value:.2}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"muted\">{}</text>",
            10.0 + plot - h,
            step * 0.7,
            escape(label),
            x + step * 0.35,
            HEIGHT - 10.0,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Columns with labels (the distribution of review scores).
fn columns(items: &[(String, f64)], x_label: &str, y_label: &str) -> String {
    let mut svg = bars(items, &format!("{y_label} by {x_label}"));
    svg.truncate(svg.len() - "</svg>".len());
    let _ = write!(svg, "<text class=\"muted\" x=\"{WIDTH}\" y=\"{HEIGHT}\" text-anchor=\"end\">{}</text></svg>", escape(x_label));
    svg
}

/// Amount spent (log scale: a few customers spend a hundred times the median) against review
/// score. Customers who spent nothing or less (returns) sit on the left edge.
fn scatter(points: &[(f64, f64)]) -> String {
    let mut svg = String::new();
    svg_open(&mut svg, "scatter plot of amount spent against review score");
    let y_max = nice_max(points.iter().map(|p| p.1).fold(0.0, f64::max));
    y_axis(&mut svg, y_max);
    let positive: Vec<f64> = points.iter().map(|p| p.0).filter(|x| *x > 0.0).collect();
    let low = positive.iter().copied().fold(f64::MAX, f64::min).max(0.01).log10().floor();
    let high = positive.iter().copied().fold(0.0, f64::max).max(1.0).log10().ceil().max(low + 1.0);
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - 10.0;
    let mut decade = low;
    while decade <= high {
        let x = LEFT + plot_w * (decade - low) / (high - low);
        let anchor = if decade >= high { "end" } else { "middle" };
        let _ = write!(
            svg,
            "<text class=\"muted\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            HEIGHT - 14.0,
            short(10f64.powf(decade))
        );
        decade += 1.0;
    }
    for (amount, score) in points {
        let x = if *amount > 0.0 { LEFT + plot_w * (amount.log10().clamp(low, high) - low) / (high - low) } else { LEFT };
        let y = 10.0 + plot_h * (1.0 - score / y_max);
        let _ = write!(svg, "<circle class=\"dot\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"/>");
    }
    let _ = write!(svg, "<text class=\"muted\" x=\"{WIDTH}\" y=\"{HEIGHT}\" text-anchor=\"end\">amount spent (log scale)</text></svg>");
    svg
}

/// Lines over the dates; a date that is not complete gets a red (failed, mixed) or orange
/// (running) mark on the axis, so no failed run is silently skipped.
fn lines(series: &[Series], dates: &[&str], states: &[DayState]) -> String {
    let mut svg = String::new();
    svg_open(&mut svg, &format!("line chart of {}", series.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")));
    let max = nice_max(series.iter().flat_map(|s| s.values.iter().flatten()).copied().fold(0.0, f64::max));
    y_axis(&mut svg, max);
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - 10.0;
    let x_of = |i: usize| LEFT + if dates.len() > 1 { plot_w * i as f64 / (dates.len() - 1) as f64 } else { plot_w / 2.0 };
    let shades = ["var(--accent)", "var(--accent2)", "var(--warn)", "var(--muted)", "var(--fg)"];
    for (k, s) in series.iter().enumerate() {
        let shade = shades[k % shades.len()];
        let mut path = String::new();
        for (i, value) in s.values.iter().enumerate() {
            if let Some(v) = value {
                let command = if path.is_empty() || s.values[i - 1].is_none() { 'M' } else { 'L' };
                let _ = write!(path, "{command}{:.1},{:.1} ", x_of(i), 10.0 + plot_h * (1.0 - v / max));
            }
        }
        let _ = write!(svg, "<path class=\"line\" style=\"stroke:{shade}\" d=\"{path}\"/>");
        for (i, value) in s.values.iter().enumerate() {
            if let Some(v) = value {
                let _ = write!(
                    svg,
                    "<circle class=\"pt\" style=\"fill:{shade}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{} {}: {v:.3}</title></circle>",
                    x_of(i),
                    10.0 + plot_h * (1.0 - v / max),
                    dates[i],
                    escape(s.name)
                );
            }
        }
        if series.len() > 1 {
            let _ = write!(svg, "<text x=\"{:.1}\" y=\"12\" style=\"fill:{shade}\">{}</text>", LEFT + 8.0 + 70.0 * k as f64, escape(s.name));
        }
    }
    for (i, state) in states.iter().enumerate().filter(|(_, s)| **s != DayState::Complete) {
        let class = if *state == DayState::Running { "warn" } else { "bad" };
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\"><title>{} {state}</title></rect>",
            x_of(i) - 3.0,
            HEIGHT - BOTTOM - 3.0,
            dates[i]
        );
    }
    if let (Some(first), Some(last)) = (dates.first(), dates.last()) {
        let _ = write!(
            svg,
            "<text class=\"muted\" x=\"{LEFT}\" y=\"{HEIGHT}\">{first}</text><text class=\"muted\" x=\"{WIDTH}\" y=\"{HEIGHT}\" text-anchor=\"end\">{last}</text>"
        );
    }
    svg.push_str("</svg>");
    svg
}
