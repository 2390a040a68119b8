//! The summary printed when a run stops: totals, the best result, the trajectory of kept
//! improvements with their deltas (for a tree search: the best path, and the tree itself), and
//! the next ideas.

pub mod tree;

use std::fmt::Write;
use std::time::Duration;

use crate::config::Pipeline;
use crate::run::journal::{Experiment, History};
use crate::view::progress::clock;
use crate::view::report::{Report, seconds_text};

/// The summary. `report` is the run as `arun status` and `arun report` see it, so that every
/// output counts and times alike; `session` is how long this arun drove the run.
pub fn render(
    history: &History,
    pipeline: &Pipeline,
    report: &Report,
    why: &str,
    session: Duration,
    ideas: &[String],
) -> String {
    let summary = report.summary();
    let mut out = String::new();
    let _ = writeln!(out, "\n== arun run `{}`: {why} ==", history.tag);
    let _ = writeln!(out, "{}", summary.counts());
    time_and_builds(&mut out, report, session);
    proposer_cost(&mut out, history);
    best_result(&mut out, history, pipeline);
    trajectory(&mut out, history, report);
    if let Some(facts) = &report.tree {
        out.push_str(&tree::render(history, facts));
    }
    if !ideas.is_empty() {
        let _ = writeln!(out, "next ideas:");
        for idea in ideas {
            let _ = writeln!(out, "  - {idea}");
        }
    }
    let _ = write!(
        out,
        "branch `{}` is at {}; results in {}",
        history.branch,
        crate::text::short_commit(history.branch_tip()),
        pipeline.limits.results
    );
    out
}

/// How long arun drove the run (and this session's share) and the builds' times.
fn time_and_builds(out: &mut String, report: &Report, session: Duration) {
    let (driving, resumed) = report.run.as_ref().map_or((session, false), |run| {
        (
            Duration::from_secs_f64(run.active_seconds),
            run.sessions > 1,
        )
    });
    // Only a resumed run has time from other sessions; in one session the journal's clock
    // and this session's clock differ by a moment, which is no share worth printing.
    if resumed {
        let _ = writeln!(
            out,
            "time: {} driving the run, {} of it in this session",
            clock(driving),
            clock(session)
        );
    } else {
        let _ = writeln!(out, "time: {} driving the run", clock(driving));
    }
    let builds: Vec<f64> = report.rows.iter().filter_map(|r| r.build_seconds).collect();
    if let Some(longest) = builds.iter().copied().reduce(f64::max) {
        let _ = writeln!(
            out,
            "builds: {}, {} in all (outside the budget), the longest {}",
            builds.len(),
            seconds_text(builds.iter().sum()),
            seconds_text(longest)
        );
    }
}

/// The proposer's cost and tokens, when it reported any.
fn proposer_cost(out: &mut String, history: &History) {
    let cost = history.cost_usd();
    let tokens = history.tokens().total();
    match (cost > 0.0, tokens > 0) {
        (true, true) => {
            let _ = writeln!(out, "proposer cost: ${cost:.2}, {tokens} tokens");
        }
        (true, false) => {
            let _ = writeln!(out, "proposer cost: ${cost:.2}");
        }
        (false, true) => {
            let _ = writeln!(out, "proposer tokens: {tokens}");
        }
        (false, false) => {}
    }
}

/// The best against the baseline, its held-out metric, and the noise the keeps had to beat.
fn best_result(out: &mut String, history: &History, pipeline: &Pipeline) {
    let metric = pipeline.metric.name();
    match (
        history.baseline().and_then(Experiment::metric),
        history.best(),
    ) {
        (Some(baseline), Some(best)) => {
            let value = best.metric().unwrap_or(baseline);
            let change = value - baseline;
            let percent = if baseline != 0.0 {
                100.0 * change / baseline
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "best: {} {metric} {value:.6} (baseline {baseline:.6}, {change:+.6}, {percent:+.2}%)",
                best.short_commit()
            );
        }
        _ => {
            let _ = writeln!(out, "no result yet");
        }
    }
    if let (Some(check), Some(best)) = (&pipeline.decision.held_out, history.best())
        && let Some(Ok(value)) = &best.held_out
    {
        let baseline = match history.baseline().and_then(|b| b.held_out.clone()) {
            Some(Ok(b)) => format!(" (baseline {b:.6})"),
            _ => String::new(),
        };
        let _ = writeln!(out, "held-out {} {value:.6}{baseline}", check.capture.name);
    }
    if let Some(sigma) = pipeline.decision.noise.sigma.or_else(|| history.sigma()) {
        let _ = writeln!(
            out,
            "noise: σ = {sigma:.6}; keeps had to improve by more than {:.6}",
            (pipeline.decision.noise.sigmas * sigma).max(pipeline.decision.min_improvement)
        );
    }
}

/// The kept steps, each with its change from the step before. The greedy chain is every keep;
/// a tree's trajectory is its best path, each step against the node it improved on.
fn trajectory(out: &mut String, history: &History, report: &Report) {
    let (heading, trajectory): (&str, Vec<&Experiment>) = match (&report.tree, history.best()) {
        (Some(_), Some(best)) => (
            "best path",
            crate::run::search::Tree::of(history).path_to(best.n),
        ),
        (Some(_), None) => ("best path", Vec::new()),
        (None, _) => ("trajectory", history.kept().collect()),
    };
    if trajectory.is_empty() {
        return;
    }
    let _ = writeln!(out, "{heading}:");
    let mut previous: Option<f64> = None;
    for experiment in trajectory {
        let value = experiment.metric().unwrap_or(0.0);
        let delta = previous.map_or_else(|| " ".repeat(10), |p| format!("{:+.6}", value - p));
        previous = Some(value);
        let _ = writeln!(
            out,
            "  #{:<4} {} {value:.6} {delta:>10}  {}",
            experiment.n,
            experiment.short_commit(),
            experiment.description_text()
        );
    }
}
