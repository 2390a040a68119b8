//! `arun report a.tsv b.tsv ...`: one page comparing runs side by side (agents, models, prompts,
//! or several runs of one repository): the running best of each on one plot against the
//! experiment number and, where the runs' times are known, against hours of experiment time;
//! and the summary figures of each as columns of one table.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::svg::{decimals, escape, ticks};
use super::{Input, Report, load};
use crate::error::Error;

/// One colour per run, told apart also in grey print (Tableau 10).
const COLOURS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Reads each input and writes the comparison page; returns where, and every input's warnings
/// prefixed with its name.
pub fn write(inputs: &[Input], output: Option<&Path>) -> Result<(PathBuf, Vec<String>), Error> {
    let mut reports = Vec::with_capacity(inputs.len());
    let mut sources = Vec::with_capacity(inputs.len());
    for input in inputs {
        let located = load::locate(input)?;
        if let load::Located::Table { path, .. } = &located {
            sources.push(path.clone());
        }
        reports.push(load::read(&located, false)?);
    }
    let path = output.map_or_else(|| PathBuf::from("comparison.html"), Path::to_path_buf);
    if let Some(table) = sources.iter().find(|t| super::same_file(t, &path)) {
        return Err(Error::NoRun(format!(
            "the page would be written over the table `{}`; name another file with `-o`",
            table.display()
        )));
    }
    let page = render(
        &reports,
        &crate::text::local_time(crate::run::journal::now()),
    );
    crate::run::store::write_atomic(&path, page.as_bytes())
        .map_err(|err| Error::io(format!("cannot write `{}`", path.display()), err))?;
    let warnings = reports
        .iter()
        .flat_map(|r| r.warnings.iter().map(move |w| format!("{}: {w}", name(r))))
        .collect();
    Ok((path, warnings))
}

/// A run's name on the page: its title and tag.
fn name(report: &Report) -> String {
    match &report.tag {
        Some(tag) => format!("{} · {tag}", report.title),
        None => report.title.clone(),
    }
}

/// The comparison page; `generated` is the time stamp in its footer.
pub fn render(reports: &[Report], generated: &str) -> String {
    let mut page = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>arun: comparison</title><style>
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #1f2328; }
table { border-collapse: collapse; font-size: 14px; table-layout: fixed; width: 100%; }
th:first-child { width: 11em; }
th, td { border-bottom: 1px solid #eaeef2; padding: 5px 10px; text-align: right; vertical-align: top; overflow-wrap: anywhere; }
th:first-child, td:first-child { text-align: left; }
td .note { display: block; color: #6a737d; font-size: 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
svg { width: 100%; height: auto; }
footer { color: #6a737d; font-size: 12px; margin-top: 24px; }
</style></head><body>"#,
    );
    let _ = write!(
        page,
        "<h1>Comparison of {} runs</h1><ul class=\"runs\">",
        reports.len()
    );
    for (i, report) in reports.iter().enumerate() {
        let _ = write!(
            page,
            r#"<li><span class="swatch" style="background:{}"></span><b>{}</b>: {}, {} is better ({}); from <code>{}</code></li>"#,
            COLOURS[i % COLOURS.len()],
            escape(&name(report)),
            escape(&report.metric),
            report.goal.better_word(),
            escape(&report.goal_reason),
            escape(&report.source),
        );
    }
    page.push_str("</ul>");
    let metrics: std::collections::BTreeSet<&str> =
        reports.iter().map(|r| r.metric.as_str()).collect();
    if metrics.len() > 1 {
        let _ = write!(
            page,
            "<p>The runs measure different metrics ({}): their curves share the plot's axis, not a unit.</p>",
            escape(&metrics.iter().copied().collect::<Vec<_>>().join(", "))
        );
    }
    let y_label = metrics.iter().copied().collect::<Vec<_>>().join(" / ");
    page.push_str("<h2>Running best by experiment</h2>");
    page.push_str(&plot(reports, ("Experiment #", &y_label), by_number));
    if reports.iter().any(|r| by_hours(r).is_some()) {
        page.push_str("<h2>Running best by hours of experiment time</h2>");
        page.push_str(&plot(
            reports,
            ("Hours of experiment time", &y_label),
            by_hours,
        ));
    }
    page.push_str("<h2>Summary figures</h2>");
    page.push_str(&figures_table(reports));
    let _ = write!(
        page,
        "<footer>Made by arun {} on {}. One file: no network needed.</footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        escape(generated)
    );
    page
}

/// Each run's figures as a column, one row per figure.
fn figures_table(reports: &[Report]) -> String {
    let all: Vec<Vec<super::Figure>> = reports.iter().map(Report::figures).collect();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for figure in all.iter().flatten() {
        if !keys.iter().any(|(key, _)| *key == figure.key) {
            keys.push((figure.key, figure.label));
        }
    }
    let mut table = String::from("<table><thead><tr><th></th>");
    for (i, report) in reports.iter().enumerate() {
        let _ = write!(
            table,
            r#"<th><span class="swatch" style="background:{}"></span>{}</th>"#,
            COLOURS[i % COLOURS.len()],
            escape(&name(report))
        );
    }
    table.push_str("</tr></thead><tbody>");
    for (key, label) in keys {
        let _ = write!(table, r#"<tr data-figure="{key}"><td>{label}</td>"#);
        for figures in &all {
            match figures.iter().find(|f| f.key == key) {
                Some(figure) => {
                    let _ = write!(
                        table,
                        r#"<td>{}<span class="note">{}</span></td>"#,
                        escape(&figure.value),
                        escape(&crate::text::cut(&figure.note, NOTE_CHARS, "…"))
                    );
                }
                None => table.push_str("<td>–</td>"),
            }
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    table
}

/// How much of a figure's note (the best's description) a column shows, the `…` of a cut
/// included.
const NOTE_CHARS: usize = 81;

/// A run's running best as steps: `(x, best)` at each recorded experiment, a `None` between
/// segments.
type Curve = Vec<Option<(f64, f64)>>;

fn by_number(report: &Report) -> Option<Curve> {
    Some(segmented(report, |n| Some(n as f64)))
}

/// Against the hours its experiments ran, when every recorded experiment says how long.
fn by_hours(report: &Report) -> Option<Curve> {
    let mut hours = std::collections::HashMap::new();
    let mut total = 0.0;
    for row in report.recorded() {
        total += row.seconds? / 3600.0;
        hours.insert(row.n, total);
    }
    (!hours.is_empty()).then(|| segmented(report, |n| hours.get(&n).copied()))
}

fn segmented(report: &Report, x: impl Fn(u64) -> Option<f64>) -> Curve {
    let mut curve = Vec::new();
    for segment in report.running_best_segments() {
        if !curve.is_empty() {
            curve.push(None);
        }
        curve.extend(
            segment
                .into_iter()
                .filter_map(|(n, best)| Some(Some((x(n)?, best)))),
        );
    }
    curve
}

/// One plot of every run's running best against `x`; `labels` name the x and y axes.
fn plot(reports: &[Report], labels: (&str, &str), curve: fn(&Report) -> Option<Curve>) -> String {
    let (x_label, y_label) = labels;
    const WIDTH: f64 = 1200.0;
    let (left, right, top, bottom) = (86.0, WIDTH - 20.0, 20.0, 440.0);
    let curves: Vec<Option<Curve>> = reports.iter().map(curve).collect();
    let points = || curves.iter().flatten().flatten().flatten();
    let (Some((x0, x1)), Some((y0, y1))) = (
        span(points().map(|p| p.0).collect()),
        span(points().map(|p| p.1).collect()),
    ) else {
        return "<p>No run has a measured keep yet.</p>".to_string();
    };
    let x0 = x0.max(0.0);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (right - left);
    let py = |y: f64| bottom - (y - y0) / (y1 - y0) * (bottom - top);
    let mut svg = format!(
        r#"<svg viewBox="0 0 {WIDTH} 500" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg" font-size="12">"#,
        escape(x_label)
    );
    let y_ticks = ticks(y0, y1, 8);
    let digits = decimals(&y_ticks);
    for y in &y_ticks {
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{0:.1}" y2="{0:.1}" stroke="#000" stroke-opacity="0.08"/><text x="{1}" y="{2:.1}" text-anchor="end" fill="#333">{y:.digits$}</text>"##,
            py(*y),
            left - 8.0,
            py(*y) + 4.0
        );
    }
    let x_ticks = ticks(x0, x1, 10);
    let x_digits = decimals(&x_ticks);
    for x in x_ticks {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#333">{x:.x_digits$}</text>"##,
            px(x),
            bottom + 18.0
        );
    }
    for (i, curve) in curves.iter().enumerate() {
        let Some(curve) = curve else { continue };
        let d = steps(curve, px, py);
        let _ = write!(
            svg,
            r#"<path class="run" data-run="{i}" d="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
            d.trim_end(),
            COLOURS[i % COLOURS.len()]
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#333"/><text x="{}" y="{}" text-anchor="middle" font-size="14">{}</text><text transform="translate(22 {}) rotate(-90)" text-anchor="middle" font-size="14">{}</text></svg>"##,
        right - left,
        bottom - top,
        (left + right) / 2.0,
        bottom + 44.0,
        escape(x_label),
        (top + bottom) / 2.0,
        escape(y_label)
    );
    svg
}

/// The range of the finite values, padded a little so that no point sits on the frame.
fn span(values: Vec<f64>) -> Option<(f64, f64)> {
    let finite = |v: &f64| v.is_finite();
    let low = values.iter().copied().filter(finite).reduce(f64::min)?;
    let high = values.iter().copied().filter(finite).reduce(f64::max)?;
    let pad = ((high - low) * 0.05).max(high.abs() * 1e-3).max(1e-9);
    Some((low - pad, high + pad))
}

/// A curve as an SVG path of steps (across, then up or down to each new best), with `px` and
/// `py` turning values into the plot's coordinates; a gap between segments starts a new line.
fn steps(curve: &Curve, px: impl Fn(f64) -> f64, py: impl Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let mut previous: Option<f64> = None;
    for point in curve {
        match (point, previous) {
            (Some((x, y)), None) => {
                let _ = write!(d, "M{:.1} {:.1}", px(*x), py(*y));
                previous = Some(*y);
            }
            (Some((x, y)), Some(_)) => {
                let _ = write!(d, " H{:.1} V{:.1}", px(*x), py(*y));
                previous = Some(*y);
            }
            (None, _) => {
                d.push(' ');
                previous = None;
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Goal;
    use crate::run::decide::Status;
    use crate::view::report::tests::row;

    fn run(title: &str, goal: Goal, values: &[(Status, f64)], seconds: Option<f64>) -> Report {
        let rows = values
            .iter()
            .enumerate()
            .map(|(n, &(status, value))| {
                let mut row = row(n as u64, (n > 0).then_some(0), status, value);
                row.seconds = seconds;
                row
            })
            .collect();
        Report {
            title: title.into(),
            tag: None,
            source: format!("{title}.tsv"),
            metric: "val_bpb".into(),
            goal,
            goal_reason: "as `--goal` says".into(),
            rows,
            columns: Vec::new(),
            restarts: Vec::new(),
            warnings: Vec::new(),
            noise: None,
            held_out: None,
            run: None,
            tree: None,
        }
    }

    #[test]
    fn runs_are_curves_of_one_plot_and_columns_of_one_table() {
        use Status::{Discard, Keep};
        let a = run(
            "claude",
            Goal::Minimize,
            &[(Keep, 1.0), (Keep, 0.9), (Discard, 0.95)],
            Some(300.0),
        );
        let b = run(
            "codex",
            Goal::Minimize,
            &[(Keep, 1.0), (Discard, 1.1), (Keep, 0.8), (Keep, 0.7)],
            None,
        );
        let page = render(&[a, b], "now");
        assert!(page.contains("Comparison of 2 runs"));
        assert_eq!(
            page.matches(r#"<path class="run""#).count(),
            3,
            "two by number, one by time"
        );
        assert!(page.contains("Running best by hours of experiment time"));
        let best = page.split(r#"<tr data-figure="best">"#).nth(1).unwrap();
        let best = best.split("</tr>").next().unwrap();
        let values: Vec<&str> = best
            .split("<td>")
            .skip(2)
            .map(|cell| cell.split('<').next().unwrap())
            .collect();
        assert_eq!(values, ["0.900000", "0.700000"]);
        let kept = page.split(r#"<tr data-figure="kept">"#).nth(1).unwrap();
        assert!(kept.starts_with("<td>Kept</td><td>1<"), "{kept}");
        assert!(!page.contains("NaN"));
    }
}
