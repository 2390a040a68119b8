//! `arun status`: one screen of plain text on where a run stands (its state, the experiment in
//! progress and for how long, the best so far, the last rows), read from the journal without
//! taking the run's lock, so it works over ssh beside the arun that drives the run.

use std::fmt::Write;
use std::time::Duration;

use crate::error::Error;
use crate::run::exec::slurm::{self, JobNow};
use crate::view::progress::clock;
use crate::view::report::{self, Current, Input, Report, RunFacts, RunState, Summary};

/// What Slurm says about a running run's jobs; `None` for a run on this machine or one that is
/// not running.
pub type SlurmAnswer = Option<Result<Vec<JobNow>, String>>;

/// Reads the run the input names and renders its status for a terminal `width` columns wide.
pub fn status(input: &Input, rows: usize, width: usize) -> Result<String, Error> {
    let located = report::locate(input)?;
    let report = report::load::read(&located, false)?;
    let slurm = match (&report.run, &report.tag) {
        (Some(run), Some(tag)) if run.on_slurm && matches!(run.state, RunState::Running { .. }) => {
            Some(slurm::jobs_now(tag, run.started).map_err(|err| err.to_string()))
        }
        _ => None,
    };
    Ok(render(
        &report,
        rows,
        width,
        crate::run::journal::now(),
        &slurm,
    ))
}

/// The status screen; `now` is the Unix time elapsed times are counted to.
pub fn render(report: &Report, rows: usize, width: usize, now: f64, slurm: &SlurmAnswer) -> String {
    let summary = report.summary();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "arun status: {}{}",
        report.title,
        report
            .tag
            .as_ref()
            .map_or_else(String::new, |tag| format!(", run `{tag}`"))
    );
    run_state(&mut out, report, &summary, width, now);
    slurm_jobs(&mut out, slurm, width);
    figures(&mut out, report, &summary);
    last_rows(&mut out, report, rows);
    fit(&out, width)
}

/// The `state` line and, for a run with a journal, a line for each experiment in progress (or
/// in progress when its arun stopped).
fn run_state(out: &mut String, report: &Report, summary: &Summary, width: usize, now: f64) {
    let Some(run) = &report.run else {
        let _ = writeln!(
            out,
            "  state   a results table without a journal ({})",
            report.source
        );
        return;
    };
    let _ = writeln!(
        out,
        "  state   {}; started {}, {} driving{}",
        run.state.describe(),
        crate::text::local_time(run.started),
        clock(Duration::from_secs_f64(run.active_seconds)),
        summary
            .per_hour
            .map_or_else(String::new, |r| format!(", {r:.1} experiments/hour"))
    );
    for (i, current) in run.in_flight.iter().enumerate() {
        let heading = if i == 0 { "now" } else { "" };
        let line = in_flight_line(report, run, current, now);
        let _ = writeln!(
            out,
            "  {heading:<7} {}",
            cut(&line, width.saturating_sub(10))
        );
        if current.failures > 0 {
            let _ = writeln!(
                out,
                "          {} failed proposal(s) for this experiment so far",
                current.failures
            );
        }
        if let Some(output) = &current.last_output {
            let _ = writeln!(out, "          > {}", cut(output, width.saturating_sub(12)));
        }
    }
}

/// The run's jobs as Slurm holds them: queued (with Slurm's reason) or running (for how long,
/// where).
fn slurm_jobs(out: &mut String, slurm: &SlurmAnswer, width: usize) {
    let jobs = match slurm {
        None => return,
        Some(Err(err)) => {
            let line = format!("cannot ask Slurm about the run's jobs: {err}");
            let _ = writeln!(out, "  slurm   {}", cut(&line, width.saturating_sub(10)));
            return;
        }
        Some(Ok(jobs)) if jobs.is_empty() => {
            let _ = writeln!(out, "  slurm   no job of this run is queued or running");
            return;
        }
        Some(Ok(jobs)) => jobs,
    };
    for (i, job) in jobs.iter().enumerate() {
        let heading = if i == 0 { "slurm" } else { "" };
        let doing = match job.state.as_str() {
            "PENDING" if job.reason != "None" => format!("queued ({})", job.reason),
            "PENDING" => "queued".to_string(),
            "RUNNING" => format!("running {} on {}", job.time, job.nodes),
            other => format!("{} {}", other.to_lowercase(), job.time),
        };
        let line = format!("job {} {} (#{}): {doing}", job.id, job.name, job.n);
        let _ = writeln!(
            out,
            "  {heading:<7} {}",
            cut(&line, width.saturating_sub(10))
        );
    }
}

/// What an experiment in progress is doing and for how long; for a run that stopped, what it
/// was doing when its arun stopped.
fn in_flight_line(report: &Report, run: &RunFacts, current: &Current, now: f64) -> String {
    let since = |time: f64| clock(Duration::from_secs_f64((now - time).max(0.0)));
    let description = report
        .row(current.n)
        .map(|r| r.description.as_str())
        .filter(|d| !d.is_empty())
        .map_or_else(String::new, |d| format!(": {d}"));
    if matches!(run.state, RunState::Running { .. }) {
        let budget = match (current.phase, run.budget) {
            (report::Phase::Running, Some(budget)) => {
                format!(" of the {} budget", clock(budget))
            }
            _ => String::new(),
        };
        format!(
            "#{} {} for {}{budget} ({} since it began){description}",
            current.n,
            current.phase.word(),
            since(current.phase_started),
            since(current.started),
        )
    } else {
        format!(
            "#{} was {} when its arun stopped, at {}{description}",
            current.n,
            current.phase.word(),
            crate::text::local_time(run.last_event)
        )
    }
}

/// The best so far against the baseline, the goal, the counts, the table's own statuses, the
/// warnings and the cost.
fn figures(out: &mut String, report: &Report, summary: &Summary) {
    match (summary.baseline, summary.best) {
        (Some(baseline), Some((n, best))) => {
            let _ = writeln!(
                out,
                "  best    #{n} {} {best:.6} (baseline {baseline:.6}, {:+.6}, {})",
                report.metric,
                best - baseline,
                summary
                    .improvement_percent
                    .map_or_else(String::new, |p| format!("{p:.2}% better"))
            );
        }
        _ => {
            let _ = writeln!(out, "  best    no result yet");
        }
    }
    let _ = writeln!(
        out,
        "  goal    {} is better: {}",
        report.goal.better_word(),
        report.goal_reason
    );
    if !report.restarts.is_empty() {
        let _ = writeln!(
            out,
            "          {}",
            report::html::restarts_sentence(&report.restarts)
        );
    }
    let _ = writeln!(out, "  counts  {}", summary.counts());
    let others = report.other_statuses();
    if !others.is_empty() {
        let words: Vec<String> = others
            .iter()
            .map(|(word, count)| format!("{count} `{word}`"))
            .collect();
        let _ = writeln!(
            out,
            "  other   statuses of the table's own: {}",
            words.join(", ")
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "  warning {warning}");
    }
    if let Some(cost) = summary.cost_usd {
        let _ = writeln!(out, "  cost    ${cost:.2}");
    }
}

/// The last `rows` recorded rows as a table, nothing when there is none.
fn last_rows(out: &mut String, report: &Report, rows: usize) {
    let recorded: Vec<&report::Row> = report.recorded().collect();
    let shown = &recorded[recorded.len().saturating_sub(rows)..];
    if shown.is_empty() {
        return;
    }
    let metric_width = report.metric.chars().count().max(9);
    let _ = writeln!(
        out,
        "\nlast {} of {} rows:\n{:>5}  {:<8} {:>metric_width$} {:>10} {:>6} {:>7}  {:<7}  description",
        shown.len(),
        recorded.len(),
        "#",
        "commit",
        report.metric,
        "Δ parent",
        "mem GB",
        "time",
        "status",
    );
    for row in shown {
        let line = format!(
            "{:>5}  {:<8} {:>metric_width$} {:>10} {:>6} {:>7}  {:<7}  {}",
            row.n,
            row.commit,
            row.metric.map_or_else(String::new, |m| format!("{m:.6}")),
            report
                .delta(row)
                .map_or_else(String::new, |d| format!("{d:+.6}")),
            row.memory_gb
                .map_or_else(String::new, |m| format!("{m:.1}")),
            row.seconds.map_or_else(String::new, report::seconds_text),
            match (&row.label, row.status) {
                (Some(word), _) => cut(word, 7),
                (None, Some(status)) => status.to_string(),
                (None, None) => "running".to_string(),
            },
            row.description,
        );
        let _ = writeln!(out, "{line}");
    }
}

/// Every line of `text` cut to `width` characters.
fn fit(text: &str, width: usize) -> String {
    text.lines().fold(String::new(), |mut out, line| {
        out.push_str(&cut(line, width));
        out.push('\n');
        out
    })
}

/// `text` cut to `width` terminal columns (a CJK character takes two), the cut marked with `…`.
fn cut(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let columns = |c: char| c.width().unwrap_or(0);
    if text.chars().map(columns).sum::<usize>() <= width || width < 2 {
        return text.to_string();
    }
    let mut kept = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + columns(c) > width - 1 {
            break;
        }
        used += columns(c);
        kept.push(c);
    }
    kept.push('…');
    kept
}

/// The terminal's width from `COLUMNS`, else 100 (ssh sessions and pipes rarely say).
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c >= 40)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Goal;
    use crate::run::decide::Status;
    use crate::view::report::{Current, Phase, Row, RunFacts};

    fn row(n: u64, parent: Option<u64>, status: Option<Status>, metric: Option<f64>) -> Row {
        Row {
            n,
            parent,
            built_on: parent,
            fix_of: None,
            commit: format!("c{n:06}"),
            status,
            label: None,
            metric,
            memory_gb: metric.map(|_| 44.0),
            seconds: Some(301.0),
            build_seconds: None,
            runs: 1,
            held_out: None,
            description: format!("idea number {n} with a rather long description to cut"),
            extra: Vec::new(),
            reason: None,
            details: None,
        }
    }

    #[test]
    fn a_running_run_shows_the_experiment_in_progress_and_the_last_rows() {
        let report = Report {
            title: "autoresearch".into(),
            tag: Some("mar8".into()),
            source: "journal.jsonl".into(),
            metric: "val_bpb".into(),
            goal: Goal::Minimize,
            goal_reason: "as the run's settings say".into(),
            columns: Vec::new(),
            restarts: Vec::new(),
            warnings: Vec::new(),
            rows: vec![
                row(0, None, Some(Status::Keep), Some(1.0)),
                row(1, Some(0), Some(Status::Keep), Some(0.99)),
                row(2, Some(1), Some(Status::Discard), Some(0.995)),
                row(3, Some(1), None, None),
            ],
            noise: None,
            held_out: None,
            run: Some(RunFacts {
                branch: "autoresearch/mar8".into(),
                started: 1000.0,
                last_event: 2000.0,
                active_seconds: 3600.0,
                sessions: 1,
                cost_usd: Some(1.5),
                knob_search: false,
                state: RunState::Running { pid: Some(42) },
                budget: Some(Duration::from_secs(300)),
                on_slurm: false,
                in_flight: vec![
                    Current {
                        n: 3,
                        phase: Phase::Running,
                        started: 1900.0,
                        phase_started: 1990.0,
                        failures: 0,
                        last_output: Some("step 120 | loss 2.9".into()),
                    },
                    Current {
                        n: 4,
                        phase: Phase::Proposing,
                        started: 2000.0,
                        phase_started: 2000.0,
                        failures: 0,
                        last_output: None,
                    },
                ],
            }),
            tree: None,
        };
        let text = render(&report, 2, 100, 2062.0, &None);
        assert!(
            text.contains("state   running (arun pid 42); started "),
            "{text}"
        );
        assert!(text.contains("1h driving, 3.0 experiments/hour"), "{text}");
        assert!(
            text.contains("now     #3 running for 1m12s of the 5m budget (2m42s since it began): idea number 3"),
            "{text}"
        );
        assert!(text.contains("> step 120 | loss 2.9"), "{text}");
        assert!(
            text.contains("\n          #4 proposing for 1m2s (1m2s since it began)"),
            "a line for each experiment in flight: {text}"
        );
        assert!(
            text.contains(
                "best    #1 val_bpb 0.990000 (baseline 1.000000, -0.010000, 1.00% better)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "2 experiments after the baseline: 1 kept, 1 discarded, 0 crashed (keep rate 50.0%)"
            ),
            "{text}"
        );
        assert!(text.contains("cost    $1.50"), "{text}");
        assert!(text.contains("last 2 of 3 rows:"), "{text}");
        assert!(!text.contains("c000000"), "only the last rows: {text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 100, "too wide: {line}");
        }
        assert!(!text.contains("slurm"), "a local run asks no Slurm: {text}");

        // A run on Slurm: its jobs as squeue tells them, or why squeue could not.
        let job = |id: u64, n: u64, state: &str, reason: &str, time: &str, nodes: &str| JobNow {
            id,
            name: format!("arun-mar8-{n}-0"),
            n,
            state: state.into(),
            reason: reason.into(),
            time: time.into(),
            nodes: nodes.into(),
        };
        let jobs = vec![
            job(41, 3, "RUNNING", "None", "1:05", "gpu7"),
            job(42, 4, "PENDING", "Resources", "0:00", ""),
        ];
        let text = render(&report, 2, 100, 2062.0, &Some(Ok(jobs)));
        assert!(
            text.contains("\n  slurm   job 41 arun-mar8-3-0 (#3): running 1:05 on gpu7\n          job 42 arun-mar8-4-0 (#4): queued (Resources)\n"),
            "{text}"
        );
        let text = render(&report, 2, 100, 2062.0, &Some(Ok(Vec::new())));
        assert!(
            text.contains("\n  slurm   no job of this run is queued or running\n"),
            "{text}"
        );
        let failed = Some(Err(
            "`squeue` failed: Unable to contact slurm controller".into()
        ));
        let text = render(&report, 2, 100, 2062.0, &failed);
        assert!(
            text.contains("\n  slurm   cannot ask Slurm about the run's jobs: `squeue` failed: Unable to contact slurm controller\n"),
            "{text}"
        );
    }
}
