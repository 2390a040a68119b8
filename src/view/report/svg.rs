//! The report's two pictures as inline SVG: the progress plot drawn the way autoresearch's
//! `analysis.ipynb` draws it (metric against experiment number, discards grey, keeps green and
//! labelled, the running best as a step line, crashes marked), and the experiment tree.

use std::fmt::Write;

use super::{Report, Row};
use crate::config::Goal;
use crate::run::decide::Status;

/// The notebook's colours.
const DISCARD: &str = "#cccccc";
const KEEP: &str = "#2ecc71";
const RUNNING_BEST: &str = "#27ae60";
const LABEL: &str = "#1a7a3a";
const CRASH: &str = "#e74c3c";

/// Descriptions longer than this are cut on the plot, as in the notebook.
const LABEL_CHARS: usize = 45;

const WIDTH: f64 = 1200.0;

/// A linear map from data to pixels.
#[derive(Debug, Clone, Copy)]
struct Scale {
    from: (f64, f64),
    to: (f64, f64),
}

impl Scale {
    fn at(&self, value: f64) -> f64 {
        let (d0, d1) = self.from;
        let (r0, r1) = self.to;
        if d1 == d0 {
            return (r0 + r1) / 2.0;
        }
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// The metric range the plot shows, as the notebook chooses it: from just past the best to just
/// past the baseline, 15% of their distance either side. Without an improvement, the range of
/// all measured values.
pub fn metric_range(report: &Report) -> Option<(f64, f64)> {
    let summary = report.summary();
    if !report.restarts.is_empty() {
        return kept_range(report);
    }
    if let (Some(baseline), Some((_, best))) = (summary.baseline, summary.best)
        && best != baseline
    {
        let margin = (baseline - best).abs() * 0.15;
        let range = (baseline.min(best) - margin, baseline.max(best) + margin);
        if range.0.is_finite() && range.1.is_finite() {
            return Some(range);
        }
    }
    let values: Vec<f64> = report
        .recorded()
        .filter_map(|r| r.metric)
        .filter(|v| v.is_finite())
        .collect();
    let low = values.iter().copied().reduce(f64::min)?;
    let high = values.iter().copied().reduce(f64::max)?;
    let pad = if high - low > 0.0 {
        (high - low) * 0.1
    } else {
        (high.abs() * 0.01).max(1e-6)
    };
    Some((low - pad, high + pad)).filter(|(l, h)| l.is_finite() && h.is_finite())
}

/// For a table that restarts: every segment's keeps, 10% of their spread either side, so each
/// segment's running best is drawn inside the frame.
fn kept_range(report: &Report) -> Option<(f64, f64)> {
    let kept = report
        .recorded()
        .filter(|r| r.status == Some(Status::Keep))
        .filter_map(|r| r.metric)
        .filter(|v| v.is_finite());
    let (low, high) = kept.fold(None, |range: Option<(f64, f64)>, v| {
        Some(range.map_or((v, v), |(l, h)| (l.min(v), h.max(v))))
    })?;
    let pad = ((high - low) * 0.1).max(high.abs() * 0.01).max(1e-6);
    Some((low - pad, high + pad)).filter(|(l, h)| l.is_finite() && h.is_finite())
}

/// Round tick values covering `low..=high`, about `count` of them.
pub(super) fn ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    if high <= low || !low.is_finite() || !high.is_finite() {
        return vec![low];
    }
    let rough = (high - low) / count.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Decimals that tell ticks `step` apart.
pub(super) fn decimals(ticks: &[f64]) -> usize {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => return 3,
    };
    // The fewest decimals that write the step exactly.
    (0..12)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12)
}

/// Text for SVG and HTML: `&`, `<`, `>` and quotes escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The tooltip of an experiment's mark.
fn tooltip(report: &Report, row: &Row) -> String {
    let status = row.status.map_or("running".to_string(), |s| s.to_string());
    let value = row
        .metric
        .map_or_else(String::new, |m| format!(" {} {m:.6}", report.metric));
    escape(&format!("#{} {status}{value}: {}", row.n, row.description))
}

/// The x scale of both pictures: experiment numbers with a little room at both ends.
fn x_scale(report: &Report, left: f64, right: f64) -> Scale {
    let last = report.rows.last().map_or(1, |r| r.n.max(1)) as f64;
    let pad = last * 0.02 + 0.5;
    Scale {
        from: (-pad, last + pad),
        to: (left, right),
    }
}

/// Where the progress plot draws: the frame's edges, the metric range it shows and the scales
/// from data to pixels.
struct PlotArea {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    low: f64,
    high: f64,
    x: Scale,
    y: Scale,
}

impl PlotArea {
    /// A value's height with values off the scale moved to the frame's edge.
    fn clamp_y(&self, value: f64) -> f64 {
        self.y.at(value.clamp(self.low, self.high))
    }

    /// A value's height and, for a value off the scale, whether it lies above the range (it is
    /// then drawn just inside the frame's edge).
    fn place(&self, value: f64) -> (f64, Option<bool>) {
        if !value.is_finite() {
            (f64::NAN, None)
        } else if value > self.high {
            (self.top + 6.0, Some(true))
        } else if value < self.low {
            (self.bottom - 6.0, Some(false))
        } else {
            (self.y.at(value), None)
        }
    }
}

/// A kept experiment on the plot: its row, its position and, when off the scale, whether above.
type KeptPoint<'a> = (&'a Row, f64, f64, Option<bool>);

/// The progress plot.
pub fn progress_plot(report: &Report) -> String {
    let (height, left, right, top, bottom) = (600.0, 86.0, WIDTH - 20.0, 48.0, 600.0 - 56.0);
    let mut svg = plot_title(report, height, left, right);
    let Some((low, high)) = metric_range(report) else {
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#333"/><text x="{}" y="{}" text-anchor="middle" font-size="16" fill="#777">no measured experiment yet</text></svg>"##,
            right - left,
            bottom - top,
            (left + right) / 2.0,
            (top + bottom) / 2.0
        );
        return svg;
    };
    let plot = PlotArea {
        left,
        right,
        top,
        bottom,
        low,
        high,
        x: x_scale(report, left, right),
        y: Scale {
            from: (low, high),
            to: (bottom, top),
        },
    };
    axes(&mut svg, report, &plot);
    let last_n = report.rows.last().map_or(0, |r| r.n) as f64;
    noise_band(&mut svg, report, &plot, last_n);
    let segments = report.running_best_segments();
    running_best(&mut svg, &plot, &segments, last_n);
    let crashes = crash_marks(&mut svg, report, &plot);
    let discards_off_scale = discard_marks(&mut svg, report, &plot);
    let keeps = kept_points(report, &plot);
    let keeps_off_scale = keeps.iter().any(|k| k.3.is_some());
    let legend = legend_entries(report, crashes, discards_off_scale, keeps_off_scale);
    let frame = Rect {
        x: left,
        y: top,
        width: right - left,
        height: bottom - top,
    };
    let occupied = occupied_points(report, &plot, &segments);
    let legend_box = legend_corner(report.goal, frame, legend.len(), &occupied);
    let labels = keep_labels(report, &plot, &keeps, legend_box);
    keep_marks(&mut svg, report, &keeps, labels);
    frame_and_legend(&mut svg, &plot, legend_box, &legend);
    svg
}

/// The plot's opening `<svg>` tag and its title.
fn plot_title(report: &Report, height: f64, left: f64, right: f64) -> String {
    let summary = report.summary();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="plot" id="progress-plot" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="progress plot" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">"#
    );
    let _ = write!(
        svg,
        r##"<text x="{}" y="28" text-anchor="middle" font-size="18" fill="#222">Progress: {}, {}</text>"##,
        (left + right) / 2.0,
        plural(summary.experiments, "experiment", "experiments"),
        plural(summary.kept, "kept improvement", "kept improvements"),
    );
    svg
}

/// The grid, the ticks and their labels, and the axes' titles.
fn axes(svg: &mut String, report: &Report, plot: &PlotArea) {
    let PlotArea {
        left,
        right,
        top,
        bottom,
        low,
        high,
        x,
        y,
    } = plot;
    let y_ticks = ticks(*low, *high, 8);
    let digits = decimals(&y_ticks);
    for value in &y_ticks {
        let py = y.at(*value);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{py:.1}" y2="{py:.1}" stroke="#000" stroke-opacity="0.08"/><text x="{}" y="{:.1}" text-anchor="end" font-size="12" fill="#333">{value:.digits$}</text>"##,
            left - 8.0,
            py + 4.0
        );
    }
    let (x0, x1) = x.from;
    // Experiment numbers are whole: a run of three has no tick at 1.5.
    for value in ticks(x0.max(0.0), x1, 10)
        .into_iter()
        .filter(|v| v.fract() == 0.0)
    {
        let px = x.at(value);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="#000" stroke-opacity="0.08"/><text x="{px:.1}" y="{}" text-anchor="middle" font-size="12" fill="#333">{value}</text>"##,
            bottom + 18.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="14" fill="#222">Experiment #</text><text transform="translate(22 {}) rotate(-90)" text-anchor="middle" font-size="14" fill="#222">{} ({} is better)</text>"##,
        (left + right) / 2.0,
        bottom + 44.0,
        (top + bottom) / 2.0,
        escape(&report.metric),
        report.goal.better_word()
    );
}

/// The noise band, drawn behind everything else; each of its points holds until the next one.
fn noise_band(svg: &mut String, report: &Report, plot: &PlotArea, last_n: f64) {
    let Some(band) = &report.noise else {
        return;
    };
    let (x, y, low, high) = (plot.x, plot.y, plot.low, plot.high);
    for (i, point) in band.points.iter().enumerate() {
        let until = band.points.get(i + 1).map_or(last_n, |p| p.n as f64);
        let (from_x, to_x) = (x.at(point.n as f64), x.at(until));
        let (y_high, y_low) = (
            y.at(point.high.min(high).max(low)),
            y.at(point.low.min(high).max(low)),
        );
        let _ = write!(
            svg,
            r#"<rect class="noise-band" x="{from_x:.1}" y="{y_high:.1}" width="{:.1}" height="{:.1}" fill="{RUNNING_BEST}" fill-opacity="0.14"/>"#,
            (to_x - from_x).max(1.0),
            (y_low - y_high).max(0.5)
        );
    }
}

/// The running best, a step that changes where a keep improves; a restart begins a new
/// segment where it starts. Values off the scale run along the frame's edge.
fn running_best(svg: &mut String, plot: &PlotArea, segments: &[Vec<(u64, f64)>], last_n: f64) {
    let path = steps_path(
        segments,
        |n| plot.x.at(n as f64),
        |value| plot.clamp_y(value),
        plot.x.at(last_n),
    );
    if !path.is_empty() {
        let _ = write!(
            svg,
            r#"<path class="running-best" d="{path}" fill="none" stroke="{RUNNING_BEST}" stroke-width="2.5" stroke-opacity="0.75"/>"#
        );
    }
}

/// Crashes: a faint line at their number and a cross under the plot's floor. Returns whether
/// there was any.
fn crash_marks(svg: &mut String, report: &Report, plot: &PlotArea) -> bool {
    let PlotArea { top, bottom, x, .. } = plot;
    let crashes: Vec<&Row> = report
        .recorded()
        .filter(|r| r.status == Some(Status::Crash))
        .collect();
    for row in &crashes {
        let px = x.at(row.n as f64);
        let py = bottom - 9.0;
        let _ = write!(
            svg,
            r##"<a href="#e{n}" class="mark crash"><title>{tip}</title><line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="{CRASH}" stroke-opacity="0.25" stroke-dasharray="3 3"/><path d="M{a:.1} {b:.1} L{c:.1} {d:.1} M{a:.1} {d:.1} L{c:.1} {b:.1}" stroke="{CRASH}" stroke-width="2.5"/></a>"##,
            n = row.n,
            tip = tooltip(report, row),
            a = px - 5.0,
            b = py - 5.0,
            c = px + 5.0,
            d = py + 5.0,
        );
    }
    !crashes.is_empty()
}

/// Discards, faint and behind the keeps. Returns whether any lay off the scale.
fn discard_marks(svg: &mut String, report: &Report, plot: &PlotArea) -> bool {
    let mut off_scale = false;
    for row in report
        .recorded()
        .filter(|r| r.status == Some(Status::Discard))
    {
        let Some(value) = row.metric.filter(|v| v.is_finite()) else {
            continue;
        };
        let px = plot.x.at(row.n as f64);
        let (py, outside) = plot.place(value);
        let mark = match outside {
            None => format!(
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{DISCARD}" fill-opacity="0.8"/>"#
            ),
            Some(above) => {
                off_scale = true;
                edge_marker(px, py, above, "#aaaaaa")
            }
        };
        let _ = write!(
            svg,
            r##"<a href="#e{}" class="mark discard"><title>{}</title>{mark}</a>"##,
            row.n,
            tooltip(report, row)
        );
    }
    off_scale
}

/// The kept experiments with a measured value, where the plot puts them.
fn kept_points<'a>(report: &'a Report, plot: &PlotArea) -> Vec<KeptPoint<'a>> {
    report
        .recorded()
        .filter(|r| r.status == Some(Status::Keep))
        .filter_map(|row| {
            let (py, outside) = plot.place(row.metric.filter(|v| v.is_finite())?);
            Some((row, plot.x.at(row.n as f64), py, outside))
        })
        .collect()
}

/// Where the plot already draws something: every measured point and every step of the running
/// best. The legend goes where there are fewest.
fn occupied_points(
    report: &Report,
    plot: &PlotArea,
    segments: &[Vec<(u64, f64)>],
) -> Vec<(f64, f64)> {
    let mut occupied: Vec<(f64, f64)> = report
        .recorded()
        .filter_map(|row| Some((plot.x.at(row.n as f64), plot.place(row.metric?).0)))
        .collect();
    occupied.extend(
        segments
            .iter()
            .flatten()
            .map(|&(n, best)| (plot.x.at(n as f64), plot.clamp_y(best))),
    );
    occupied
}

/// The keeps' labels, placed inside the frame and off the legend; the best and the baseline
/// choose first, then the larger improvements.
fn keep_labels(
    report: &Report,
    plot: &PlotArea,
    keeps: &[KeptPoint],
    legend_box: Rect,
) -> Vec<Option<Label>> {
    let best = report.best().map(|r| r.n);
    let priority = |row: &Row| {
        if Some(row.n) == best {
            f64::INFINITY
        } else if row.parent.is_none() {
            f64::MAX
        } else {
            report.delta(row).map_or(0.0, f64::abs)
        }
    };
    let PlotArea {
        left,
        right,
        top,
        bottom,
        ..
    } = plot;
    place_labels(
        &keeps
            .iter()
            .map(|(row, px, py, _)| (*px, *py, row.description.trim().to_string(), priority(row)))
            .collect::<Vec<_>>(),
        // Inside the frame: never over the tick labels or past the plot's edge.
        Rect {
            x: left + 2.0,
            y: top + 2.0,
            width: right - left - 4.0,
            height: bottom - top - 4.0,
        },
        legend_box,
    )
}

/// The keeps, each a green point (or an edge marker) with its label when it has one.
fn keep_marks(svg: &mut String, report: &Report, keeps: &[KeptPoint], labels: Vec<Option<Label>>) {
    for ((row, px, py, outside), label) in keeps.iter().zip(labels) {
        let label = label.map_or_else(String::new, |label| {
            format!(
                r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate({angle} {lx:.1} {ly:.1})"{anchor} font-size="11" fill="{LABEL}" fill-opacity="0.9">{text}</text>"#,
                lx = label.x,
                ly = label.y,
                angle = label.angle,
                anchor = if label.end { r#" text-anchor="end""# } else { "" },
                text = escape(&label.text),
            )
        });
        let shape = match outside {
            None => format!(
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="6" fill="{KEEP}" stroke="#000" stroke-width="0.6"/>"##
            ),
            Some(above) => edge_marker(*px, *py, *above, KEEP),
        };
        let _ = write!(
            svg,
            r##"<a href="#e{}" class="mark keep"><title>{}</title>{shape}{label}</a>"##,
            row.n,
            tooltip(report, row)
        );
    }
}

/// The frame, then the legend on top, and the end of the plot.
fn frame_and_legend(
    svg: &mut String,
    plot: &PlotArea,
    legend_box: Rect,
    legend: &[(String, &str)],
) {
    let PlotArea {
        left,
        right,
        top,
        bottom,
        ..
    } = plot;
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        right - left,
        bottom - top
    );
    let _ = write!(
        svg,
        r##"<g class="legend" transform="translate({} {})" font-size="12" fill="#222"><rect x="0" y="0" width="{}" height="{}" rx="4" fill="#fff" fill-opacity="0.9" stroke="#ccc"/>"##,
        legend_box.x, legend_box.y, legend_box.width, legend_box.height
    );
    for (i, (shape, label)) in legend.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<g transform="translate(12 {})">{shape}<text x="30" y="4">{label}</text></g>"#,
            i as f64 * 20.0 + 15.0
        );
    }
    svg.push_str("</g></svg>");
}

const LEGEND_WIDTH: f64 = 192.0;

/// The SVG path of step segments `(n, value)`: each runs on to where the next begins, the last
/// to `end_x`.
fn steps_path(
    segments: &[Vec<(u64, f64)>],
    x: impl Fn(u64) -> f64,
    y: impl Fn(f64) -> f64,
    end_x: f64,
) -> String {
    let mut path = String::new();
    for (i, steps) in segments.iter().enumerate() {
        let Some(&(first_n, first_value)) = steps.first() else {
            continue;
        };
        let _ = write!(path, "M{:.1} {:.1}", x(first_n), y(first_value));
        let mut previous = first_value;
        for &(n, value) in &steps[1..] {
            if value != previous {
                let _ = write!(path, " H{:.1} V{:.1}", x(n), y(value));
                previous = value;
            }
        }
        let end = segments
            .get(i + 1)
            .and_then(|next| next.first())
            .map_or(end_x, |&(n, _)| x(n));
        let _ = write!(path, " H{end:.1} ");
    }
    path.trim_end().to_string()
}

/// `1 experiment`, `3 experiments`.
fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A triangle at the frame's edge pointing the way a value off the scale lies.
fn edge_marker(px: f64, py: f64, above: bool, fill: &str) -> String {
    let tip = if above { py - 5.0 } else { py + 5.0 };
    let base = if above { py + 3.0 } else { py - 3.0 };
    format!(
        r##"<path d="M{px:.1} {tip:.1} L{:.1} {base:.1} L{:.1} {base:.1} Z" fill="{fill}" stroke="#000" stroke-width="0.4"/>"##,
        px - 4.5,
        px + 4.5
    )
}

/// The legend's box: the corner of the frame with the fewest points and running-best steps
/// under it; on a tie the corner the progress usually leaves empty (bottom left when the
/// metric falls, top left when it rises).
fn legend_corner(goal: Goal, frame: Rect, entries: usize, occupied: &[(f64, f64)]) -> Rect {
    let (width, height) = (LEGEND_WIDTH, entries as f64 * 20.0 + 10.0);
    let (left, right) = (frame.x + 10.0, frame.x + frame.width - width - 10.0);
    let (top, bottom) = (frame.y + 10.0, frame.y + frame.height - height - 10.0);
    let corners = match goal {
        Goal::Minimize => [(left, bottom), (right, top), (left, top), (right, bottom)],
        Goal::Maximize => [(left, top), (right, bottom), (left, bottom), (right, top)],
    };
    let boxes = corners.map(|(x, y)| Rect {
        x,
        y,
        width,
        height,
    });
    let covered = |rect: &Rect| {
        let margin = Rect {
            x: rect.x - 8.0,
            y: rect.y - 8.0,
            width: rect.width + 16.0,
            height: rect.height + 16.0,
        };
        occupied.iter().filter(|&&p| margin.contains(p)).count()
    };
    boxes
        .into_iter()
        .enumerate()
        .min_by_key(|(i, rect)| (covered(rect), *i))
        .map_or(boxes[0], |(_, rect)| rect)
}

/// The legend's entries: a shape drawn around (10, 0) and its label.
fn legend_entries(
    report: &Report,
    crashes: bool,
    off_scale: bool,
    keeps_off_scale: bool,
) -> Vec<(String, &'static str)> {
    let mut entries = vec![
        (
            format!(r#"<circle cx="10" cy="0" r="3.5" fill="{DISCARD}"/>"#),
            "Discarded",
        ),
        (
            format!(
                r##"<circle cx="10" cy="0" r="6" fill="{KEEP}" stroke="#000" stroke-width="0.6"/>"##
            ),
            "Kept",
        ),
        (
            format!(
                r#"<line x1="0" x2="20" y1="0" y2="0" stroke="{RUNNING_BEST}" stroke-width="2.5" stroke-opacity="0.75"/>"#
            ),
            "Running best",
        ),
    ];
    if crashes {
        entries.push((
            format!(r#"<path d="M5 -5 L15 5 M5 5 L15 -5" stroke="{CRASH}" stroke-width="2.5"/>"#),
            "Crash",
        ));
    }
    if off_scale {
        entries.push((
            r##"<path d="M10 -5 L5.5 3 L14.5 3 Z" fill="#aaaaaa"/>"##.to_string(),
            "Discarded, off the scale",
        ));
    }
    if keeps_off_scale {
        entries.push((
            format!(r##"<path d="M10 -5 L5.5 3 L14.5 3 Z" fill="{KEEP}" stroke="#000" stroke-width="0.4"/>"##),
            "Kept, off the scale",
        ));
    }
    if report.noise.is_some() {
        entries.push((
            format!(
                r#"<rect x="0" y="-6" width="20" height="12" fill="{RUNNING_BEST}" fill-opacity="0.14"/>"#
            ),
            "Noise band",
        ));
    }
    entries
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

impl Rect {
    fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.x && x <= self.x + self.width && y >= self.y && y <= self.y + self.height
    }
}

/// A label's anchor, rotation in degrees (clockwise), whether the anchor is its end, its text.
#[derive(Debug, Clone, PartialEq)]
struct Label {
    x: f64,
    y: f64,
    angle: f64,
    end: bool,
    text: String,
}

/// Approximate width of a character of the 11px label font.
const CHAR_WIDTH: f64 = 6.0;
/// Labels closer than this (in cells of this size) count as overlapping.
const CELL: f64 = 7.0;

impl Label {
    /// Points along the middle of the label's text, every few pixels.
    fn samples(&self) -> Vec<(f64, f64)> {
        let length = self.text.chars().count() as f64 * CHAR_WIDTH;
        let radians = self.angle.to_radians();
        let (dx, dy) = (radians.cos(), radians.sin());
        // Glyphs rise from the baseline at right angles to it.
        let (ux, uy) = (dy, -dx);
        let sign = if self.end { -1.0 } else { 1.0 };
        let steps = (length / 4.0).ceil() as usize;
        (0..=steps)
            .map(|i| {
                let t = sign * (i as f64 * 4.0).min(length);
                (self.x + t * dx + 4.0 * ux, self.y + t * dy + 4.0 * uy)
            })
            .collect()
    }
}

/// Places the kept points' labels as the notebook does (rotated 30 degrees, up and to the right),
/// but where that would overlap another label, a kept point, the legend or leave `bounds`, tries
/// the three other diagonals, then a shorter text; a label that fits nowhere is left out (the
/// point's tooltip still says it).
fn place_labels(
    points: &[(f64, f64, String, f64)],
    bounds: Rect,
    legend: Rect,
) -> Vec<Option<Label>> {
    let mut taken: std::collections::HashSet<(i64, i64)> = Default::default();
    let near = Grid::of(points.iter().map(|(x, y, _, _)| (*x, *y)), POINT_ROOM);
    let cell = |(x, y): (f64, f64)| ((x / CELL).floor() as i64, (y / CELL).floor() as i64);
    let mut placed = vec![None; points.len()];
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[b].3.total_cmp(&points[a].3).then(a.cmp(&b)));
    for i in order {
        let (px, py, description, _) = &points[i];
        let fits = |label: &Label| {
            label.samples().into_iter().all(|point| {
                let (cx, cy) = cell(point);
                bounds.contains(point)
                    && !legend.contains(point)
                    && !(-1..=1).any(|ox| (-1..=1).any(|oy| taken.contains(&(cx + ox, cy + oy))))
                    && !near.any_within(point, POINT_ROOM, i)
            })
        };
        let texts = [
            crate::text::cut(description, LABEL_CHARS, "..."),
            crate::text::cut(description, 24, "..."),
        ];
        let candidates = texts.iter().flat_map(|text| {
            [
                (7.0, -7.0, -30.0, false),
                (8.0, 9.0, 30.0, false),
                (-7.0, -7.0, 30.0, true),
                (-8.0, 9.0, -30.0, true),
            ]
            .map(|(ox, oy, angle, end)| Label {
                x: px + ox,
                y: py + oy,
                angle,
                end,
                text: text.clone(),
            })
        });
        let chosen = candidates.into_iter().find(|label| fits(label));
        if let Some(label) = &chosen {
            for point in label.samples() {
                taken.insert(cell(point));
            }
        }
        placed[i] = chosen;
    }
    placed
}

/// How close (in pixels) a label may come to a kept point's centre.
const POINT_ROOM: f64 = 9.0;

/// Points filed by square cells, so that "is any point within `r` of here" looks at the nine
/// cells around it instead of every point: label placement stays linear in the number of keeps.
struct Grid {
    size: f64,
    cells: std::collections::HashMap<(i64, i64), Vec<Filed>>,
}

/// A point's index and position.
type Filed = (usize, (f64, f64));

impl Grid {
    fn of(points: impl Iterator<Item = (f64, f64)>, size: f64) -> Grid {
        let mut cells: std::collections::HashMap<_, Vec<_>> = Default::default();
        for (i, point) in points.enumerate() {
            cells
                .entry(Grid::key(point, size))
                .or_default()
                .push((i, point));
        }
        Grid { size, cells }
    }

    fn key((x, y): (f64, f64), size: f64) -> (i64, i64) {
        ((x / size).floor() as i64, (y / size).floor() as i64)
    }

    /// Whether a point other than the `skip`th lies within `r` (at most the cell size) of `at`.
    fn any_within(&self, at: (f64, f64), r: f64, skip: usize) -> bool {
        let (cx, cy) = Grid::key(at, self.size);
        (-1..=1).any(|ox| {
            (-1..=1).any(|oy| {
                self.cells.get(&(cx + ox, cy + oy)).is_some_and(|points| {
                    points.iter().any(|&(j, (x, y))| {
                        j != skip && (at.0 - x).powi(2) + (at.1 - y).powi(2) <= r * r
                    })
                })
            })
        })
    }
}

/// Viridis, from its dark end (worst) to its bright end (best), as five stops.
const VIRIDIS: [(f64, f64, f64); 5] = [
    (68.0, 1.0, 84.0),
    (59.0, 82.0, 139.0),
    (33.0, 145.0, 140.0),
    (94.0, 201.0, 98.0),
    (253.0, 231.0, 37.0),
];

fn viridis(t: f64) -> String {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Colours by rank: each measured value's place among all of them, from the worst (0) to the
/// best (1). A run's late experiments differ by far less than its first improvements, and a
/// scale by value would paint them all alike.
struct Ranks {
    /// Measured values from the worst to the best.
    sorted: Vec<f64>,
}

impl Ranks {
    fn new(report: &Report) -> Ranks {
        let goal = report.goal;
        let mut sorted: Vec<f64> = report.recorded().filter_map(|r| r.metric).collect();
        sorted.sort_by(|a, b| {
            goal.improvement(*a, 0.0)
                .total_cmp(&goal.improvement(*b, 0.0))
        });
        Ranks { sorted }
    }

    fn of(&self, goal: Goal, value: f64) -> f64 {
        if self.sorted.len() < 2 {
            return 1.0;
        }
        let below = self
            .sorted
            .partition_point(|v| goal.improvement(*v, 0.0) < goal.improvement(value, 0.0));
        below as f64 / (self.sorted.len() - 1) as f64
    }
}

/// Past this many experiments the tree draws only the kept ones (the path to the best and the
/// keeps beside it): the page stays one a browser opens, however long the run.
pub const TREE_ALL_ROWS: usize = 2000;

/// Where the tree draws each experiment: at its number (left to right) and its generation (top
/// to bottom), and which experiments it draws at all.
struct TreeLayout {
    x: Scale,
    top: f64,
    row_height: f64,
    /// Each experiment's generation: how many experiments it builds on.
    depth: std::collections::BTreeMap<u64, usize>,
    /// Whether edges run straight from their parent (a tree search) or share elbows (greedy).
    straight: bool,
    /// Whether every experiment is drawn, or only the kept ones.
    everything: bool,
}

impl TreeLayout {
    fn y(&self, n: u64) -> f64 {
        self.top + self.depth.get(&n).copied().unwrap_or(0) as f64 * self.row_height
    }

    fn drawn(&self, row: &Row) -> bool {
        self.everything || row.status == Some(Status::Keep)
    }
}

/// The experiment tree: each experiment at its number (left to right) and its generation (how
/// many experiments it builds on, top to bottom), an edge from the experiment whose commit it was
/// made on, nodes coloured by metric, the path from the baseline to the best drawn thick.
///
/// A greedy run's experiments of one generation all hang from the same keep, so their edges
/// share one elbow line. A tree search backtracks: experiments of one generation hang from
/// different nodes, and shared elbows would run into each other, so each edge is a straight line
/// from its own parent; dead ends get a dashed ring.
pub fn tree(report: &Report) -> String {
    let everything = report.rows.len() <= TREE_ALL_ROWS;
    let (left, right, top) = (86.0, WIDTH - 20.0, 24.0);
    let depth = generations(report);
    let deepest = depth.values().copied().max().unwrap_or(0);
    // A tree's straight edges need room between generations to show their slopes.
    let tallest = if report.tree.is_some() { 56.0 } else { 26.0 };
    // A huge run's tree is squeezed into a screen's height rather than grown past it.
    let shortest = if everything { 12.0 } else { 0.0 };
    let row_height = (520.0 / (deepest + 1) as f64).clamp(shortest, tallest);
    let bottom = top + deepest as f64 * row_height;
    let height = bottom + 64.0;
    let layout = TreeLayout {
        x: x_scale(report, left, right),
        top,
        row_height,
        depth,
        straight: report.tree.is_some(),
        everything,
    };
    let path: std::collections::BTreeSet<u64> = report.kept_path().into_iter().collect();
    let ranks = Ranks::new(report);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="tree" id="experiment-tree" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="experiment tree" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">"#
    );
    generation_labels(&mut svg, deepest, left, top, row_height);
    tree_edges(&mut svg, report, &layout, &path);
    tree_nodes(&mut svg, report, &layout, &path, &ranks);
    colour_key(&mut svg, report, &ranks, everything, left, right, bottom);
    svg.push_str("</svg>");
    svg
}

/// Each experiment's generation: one more than the experiment it was built on, 0 for a
/// baseline.
fn generations(report: &Report) -> std::collections::BTreeMap<u64, usize> {
    let mut depth: std::collections::BTreeMap<u64, usize> = Default::default();
    for row in &report.rows {
        let d = row
            .built_on
            .and_then(|p| depth.get(&p))
            .map_or(0, |d| d + 1);
        depth.insert(row.n, d);
    }
    depth
}

/// The generations' names on the left: `baseline`, `+1`, `+2`, ..., at most about a dozen.
fn generation_labels(svg: &mut String, deepest: usize, left: f64, top: f64, row_height: f64) {
    let every = (deepest / 12).max(1);
    for d in (0..=deepest).step_by(every) {
        let py = top + d as f64 * row_height;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#777">{}</text>"##,
            left - 10.0,
            py + 4.0,
            if d == 0 {
                "baseline".to_string()
            } else {
                format!("+{d}")
            }
        );
    }
}

/// The SVG path of the edge from `parent` to `row`: straight, or an elbow shared with its
/// siblings.
fn edge_path(layout: &TreeLayout, row: &Row, parent: u64) -> String {
    let (px, py) = (layout.x.at(parent as f64), layout.y(parent));
    let (cx, cy) = (layout.x.at(row.n as f64), layout.y(row.n));
    if layout.straight {
        return format!("M{px:.1} {py:.1} L{cx:.1} {cy:.1}");
    }
    let mid = cy - layout.row_height / 2.0;
    format!("M{px:.1} {py:.1} V{mid:.1} H{cx:.1} V{cy:.1}")
}

/// The edges, thin and grey, then the kept path's thick ones on top.
fn tree_edges(
    svg: &mut String,
    report: &Report,
    layout: &TreeLayout,
    path: &std::collections::BTreeSet<u64>,
) {
    for row in report.rows.iter().filter(|row| layout.drawn(row)) {
        if let Some(parent) = row.built_on
            && !(path.contains(&row.n) && path.contains(&parent))
        {
            let _ = write!(
                svg,
                r##"<path d="{}" fill="none" stroke="#bbb" stroke-width="1"/>"##,
                edge_path(layout, row, parent)
            );
        }
    }
    for row in &report.rows {
        if let Some(parent) = row.built_on
            && path.contains(&row.n)
            && path.contains(&parent)
        {
            let _ = write!(
                svg,
                r#"<path class="kept-path" d="{}" fill="none" stroke="{RUNNING_BEST}" stroke-width="3.5" stroke-linejoin="round"/>"#,
                edge_path(layout, row, parent)
            );
        }
    }
}

/// The nodes, each with its tooltip, a ring when it is a dead end, and its number when it lies
/// on the kept path.
fn tree_nodes(
    svg: &mut String,
    report: &Report,
    layout: &TreeLayout,
    path: &std::collections::BTreeSet<u64>,
    ranks: &Ranks,
) {
    let dead_ends: std::collections::BTreeSet<u64> = report
        .tree
        .as_ref()
        .map(|t| t.dead_ends.iter().copied().collect())
        .unwrap_or_default();
    let mut last_label: Option<(f64, f64)> = None;
    for row in report.rows.iter().filter(|row| layout.drawn(row)) {
        let (px, py) = (layout.x.at(row.n as f64), layout.y(row.n));
        let on_path = path.contains(&row.n);
        let shape = node_shape(report, ranks, row, (px, py), on_path);
        // Numbers on the kept path, below and left of the node where the staircase leaves room,
        // unless the previous one is too close.
        let label = if on_path
            && last_label.is_none_or(|(lx, ly)| px - lx >= 26.0 || py - ly >= 24.0)
        {
            last_label = Some((px, py));
            format!(
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#444" text-anchor="end">#{}</text>"##,
                px - 9.0,
                py + 12.0,
                row.n
            )
        } else {
            String::new()
        };
        let (ring, tip) = if dead_ends.contains(&row.n) {
            (
                format!(
                    r##"<circle class="dead-end" cx="{px:.1}" cy="{py:.1}" r="{}" fill="none" stroke="#555" stroke-width="1.2" stroke-dasharray="2 2"/>"##,
                    if on_path { 10.5 } else { 9.0 }
                ),
                format!("{} (dead end)", tooltip(report, row)),
            )
        } else {
            (String::new(), tooltip(report, row))
        };
        let _ = write!(
            svg,
            r##"<a href="#e{}" class="node"><title>{tip}</title>{ring}{shape}{label}</a>"##,
            row.n,
        );
    }
}

/// A node's mark: a cross for a crash, a dashed circle for a running experiment, else a circle
/// coloured by rank and sized by what it is (on the kept path, a keep, a discard).
fn node_shape(
    report: &Report,
    ranks: &Ranks,
    row: &Row,
    (px, py): (f64, f64),
    on_path: bool,
) -> String {
    match (row.status, row.metric) {
        (Some(Status::Crash), _) => format!(
            r#"<path d="M{a:.1} {b:.1} L{c:.1} {d:.1} M{a:.1} {d:.1} L{c:.1} {b:.1}" stroke="{CRASH}" stroke-width="2.5"/>"#,
            a = px - 4.5,
            b = py - 4.5,
            c = px + 4.5,
            d = py + 4.5,
        ),
        (None, _) => format!(
            r##"<circle cx="{px:.1}" cy="{py:.1}" r="5" fill="#fff" stroke="#555" stroke-width="1.5" stroke-dasharray="2 2"/>"##
        ),
        (Some(status), Some(value)) => {
            let (radius, stroke) = if on_path {
                (7.0, r##" stroke="#000" stroke-width="1.5""##)
            } else if status == Status::Keep {
                (5.5, r##" stroke="#000" stroke-width="0.8""##)
            } else {
                (4.0, r##" stroke="#fff" stroke-width="0.6""##)
            };
            format!(
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="{radius}" fill="{}"{stroke}/>"#,
                viridis(ranks.of(report.goal, value))
            )
        }
        (Some(_), None) => {
            format!(r##"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="#ccc"/>"##)
        }
    }
}

/// Under the tree: a note when only the kept experiments are drawn, and the colour key.
fn colour_key(
    svg: &mut String,
    report: &Report,
    ranks: &Ranks,
    everything: bool,
    left: f64,
    right: f64,
    bottom: f64,
) {
    let key_x = right - 260.0;
    let key_y = bottom + 34.0;
    if !everything {
        let _ = write!(
            svg,
            r##"<text class="left-out" x="{left}" y="{:.1}" font-size="11" fill="#777">{} experiments: only the kept ones are drawn</text>"##,
            key_y + 9.0,
            report.rows.len(),
        );
    }
    let _ = write!(
        svg,
        r#"<defs><linearGradient id="viridis">{}</linearGradient></defs>"#,
        (0..VIRIDIS.len())
            .map(|i| {
                let t = i as f64 / (VIRIDIS.len() - 1) as f64;
                format!(r#"<stop offset="{t}" stop-color="{}"/>"#, viridis(t))
            })
            .collect::<String>()
    );
    if let (Some(worst), Some(best)) = (ranks.sorted.first(), ranks.sorted.last()) {
        let _ = write!(
            svg,
            r##"<g font-size="11" fill="#333"><text x="{}" y="{:.1}" text-anchor="end">colour: rank of {}, worst {worst:.6}</text><rect x="{key_x}" y="{:.1}" width="160" height="10" fill="url(#viridis)"/><text x="{}" y="{:.1}">best {best:.6}</text></g>"##,
            key_x - 6.0,
            key_y + 9.0,
            escape(&report.metric),
            key_y,
            key_x + 166.0,
            key_y + 9.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::report::tests::row;
    use crate::view::report::{BandPoint, NoiseBand};

    fn report(rows: Vec<Row>) -> Report {
        Report {
            title: "t".into(),
            tag: None,
            source: "results.tsv".into(),
            metric: "val_bpb".into(),
            goal: Goal::Minimize,
            goal_reason: String::new(),
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

    fn sample() -> Report {
        report(vec![
            row(0, None, Status::Keep, 1.0),
            row(1, Some(0), Status::Keep, 0.9),
            row(2, Some(1), Status::Discard, 0.95),
            row(3, Some(1), Status::Crash, 0.0),
            row(4, Some(1), Status::Discard, 3.0),
            row(5, Some(1), Status::Keep, 0.8),
        ])
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.9663, 1.0013, 8);
        assert!(t.len() >= 5 && t.len() <= 10, "{t:?}");
        assert!(t.first().unwrap() >= &0.9663 && t.last().unwrap() <= &1.0013);
        assert_eq!(decimals(&[0.965, 0.97]), 3);
        assert_eq!(decimals(&[0.0, 20.0]), 0);
        assert_eq!(decimals(&[0.9675, 0.97]), 4);
        assert_eq!(decimals(&[0.0, 2.5]), 1);
    }

    #[test]
    fn the_plot_marks_each_kind_of_experiment() {
        let svg = progress_plot(&sample());
        assert!(svg.contains("Progress: 5 experiments, 2 kept improvements"));
        assert_eq!(svg.matches(r#"class="mark keep""#).count(), 3);
        assert_eq!(svg.matches(r#"class="mark discard""#).count(), 2);
        assert_eq!(svg.matches(r#"class="mark crash""#).count(), 1);
        // The discard at 3.0 lies far above the range: drawn at the edge, named in the legend.
        assert!(svg.contains("Discarded, off the scale"));
        assert!(svg.contains("experiment 5</text>"), "keeps are labelled");
        assert!(svg.contains(r#"class="running-best""#));
        assert!(!svg.contains("noise-band"));
        // The range is the notebook's: 15% of the improvement past the baseline and the best.
        assert_eq!(metric_range(&sample()), Some((0.8 - 0.03, 1.0 + 0.03)));
    }

    #[test]
    fn a_noise_band_is_drawn_when_the_report_has_one() {
        let mut report = sample();
        report.noise = Some(NoiseBand {
            points: vec![
                BandPoint {
                    n: 0,
                    low: 0.99,
                    high: 1.01,
                },
                BandPoint {
                    n: 5,
                    low: 0.79,
                    high: 0.81,
                },
            ],
        });
        let svg = progress_plot(&report);
        assert_eq!(svg.matches(r#"class="noise-band""#).count(), 2);
        assert!(svg.contains("Noise band"));
    }

    #[test]
    fn the_tree_highlights_the_path_to_the_best() {
        let svg = tree(&sample());
        // Edges 0->1 and 1->5 are the kept path; the others are thin.
        assert_eq!(svg.matches(r#"class="kept-path""#).count(), 2);
        assert_eq!(svg.matches(r#"class="node""#).count(), 6);
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
    }

    #[test]
    fn a_tree_search_draws_each_edge_from_its_own_parent_and_rings_dead_ends() {
        // #1 and #2 are drafts from the baseline; #3 and #4 fail on #1 (a dead end); the search
        // backtracks to #2, whose child #5 is the best.
        let mut report = report(vec![
            row(0, None, Status::Keep, 1.0),
            row(1, Some(0), Status::Keep, 0.9),
            row(2, Some(0), Status::Keep, 0.95),
            row(3, Some(1), Status::Discard, 1.05),
            row(4, Some(1), Status::Discard, 0.93),
            row(5, Some(2), Status::Keep, 0.7),
        ]);
        let greedy = tree(&report);
        assert!(!greedy.contains("dead-end"));
        report.tree = Some(crate::view::report::TreeFacts {
            nodes: 4,
            branches: 2,
            dead_ends: vec![1],
            drafts: 2,
            broadenings: 0,
            patience: 2,
        });
        let svg = tree(&report);
        // Straight edges: each one starts at its own parent's node; no elbows shared between
        // #1's children and #2's.
        let edges: Vec<&str> = svg
            .match_indices(r#"<path d="M"#)
            .chain(svg.match_indices(r#"<path class="kept-path" d="M"#))
            .map(|(at, _)| &svg[at..at + svg[at..].find("/>").unwrap()])
            .collect();
        assert_eq!(edges.len(), 5, "{svg}");
        assert!(
            edges.iter().all(|e| e.contains(" L") && !e.contains(" H")),
            "{edges:?}"
        );
        let x = x_scale(&report, 86.0, WIDTH - 20.0);
        for child in [3, 4] {
            let from = format!("M{:.1} ", x.at(1.0));
            let to = format!(" L{:.1} ", x.at(child as f64));
            assert!(
                edges.iter().any(|e| e.contains(&from) && e.contains(&to)),
                "no edge #1 -> #{child}: {edges:?}"
            );
        }
        // The kept path is 0 -> 2 -> 5, and #1 is ringed as a dead end.
        assert_eq!(svg.matches(r#"class="kept-path""#).count(), 2);
        assert_eq!(svg.matches(r#"class="dead-end""#).count(), 1);
        assert!(
            svg.contains("#1 keep val_bpb 0.900000: experiment 1 (dead end)"),
            "{svg}"
        );
    }

    #[test]
    fn text_is_escaped() {
        let mut report = sample();
        report.rows[1].description = "<script>alert('x')</script> & more".into();
        let svg = progress_plot(&report);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn a_restart_breaks_the_running_best_and_widens_the_range() {
        // Maximized; the run restarts at #3 from a baseline far below the first one.
        let mut restarted = report(vec![
            row(0, None, Status::Keep, 0.5),
            row(1, Some(0), Status::Keep, 1.0),
            row(2, Some(1), Status::Discard, 0.9),
            row(3, None, Status::Keep, 0.1),
            row(4, Some(3), Status::Keep, 0.2),
        ]);
        restarted.goal = Goal::Maximize;
        restarted.restarts = vec![3];
        let svg = progress_plot(&restarted);
        let path = svg.split(r#"class="running-best" d=""#).nth(1).unwrap();
        let path = path.split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        // Every segment's keeps lie inside the frame.
        let (low, high) = metric_range(&restarted).unwrap();
        assert!(low < 0.1 && high > 1.0, "{low} {high}");
        assert!(!svg.contains("Kept, off the scale"));
        assert!(svg.contains("Progress: 4 experiments, 3 kept improvements"));
    }

    #[test]
    fn a_keep_off_the_scale_is_an_edge_marker() {
        // A keep a little worse than the baseline (no restart) lies above the range.
        let svg = progress_plot(&report(vec![
            row(0, None, Status::Keep, 1.0),
            row(1, Some(0), Status::Keep, 0.99),
            row(2, Some(1), Status::Keep, 1.005),
        ]));
        assert!(svg.contains("Kept, off the scale"));
        let keeps: Vec<&str> = svg
            .split(r#"class="mark keep""#)
            .skip(1)
            .map(|k| k.split("</a>").next().unwrap())
            .collect();
        assert_eq!(keeps.len(), 3);
        assert!(keeps[..2].iter().all(|k| k.contains("<circle")));
        assert!(!keeps[2].contains("<circle") && keeps[2].contains("<path"));
    }

    #[test]
    fn ticks_labels_and_legend_keep_their_places() {
        let mut small = report(vec![
            row(0, None, Status::Keep, 1.0),
            row(1, Some(0), Status::Keep, 0.9),
            row(2, Some(1), Status::Discard, f64::NAN),
        ]);
        small.rows[1].description = "x".repeat(200);
        let svg = progress_plot(&small);
        assert!(svg.contains("Progress: 2 experiments, 1 kept improvement<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Only whole experiment numbers on the x axis.
        let x_labels: Vec<&str> = svg
            .split(r##"text-anchor="middle" font-size="12" fill="#333">"##)
            .skip(1)
            .map(|t| t.split('<').next().unwrap())
            .collect();
        assert_eq!(x_labels, ["0", "1", "2"]);
        // Labels start inside the frame (x at least its left edge, 86).
        for label in svg.split("<text x=\"").skip(1) {
            if label.contains("transform=\"rotate(") {
                let x: f64 = label.split('"').next().unwrap().parse().unwrap();
                assert!(x >= 86.0, "{label}");
            }
        }
        // The metric falls: the legend takes the empty bottom-left corner.
        let legend = svg
            .split(r#"class="legend" transform="translate("#)
            .nth(1)
            .unwrap();
        let (lx, ly) = legend.split(')').next().unwrap().split_once(' ').unwrap();
        let (lx, ly): (f64, f64) = (lx.parse().unwrap(), ly.parse().unwrap());
        assert!(lx < 200.0 && ly > 300.0, "legend at {lx} {ly}");
    }

    #[test]
    fn an_empty_report_says_so() {
        let svg = progress_plot(&report(Vec::new()));
        assert!(svg.contains("no measured experiment yet"));
        assert!(tree(&report(Vec::new())).starts_with("<svg"));
    }
}
