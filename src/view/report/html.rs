//! The report as one self-contained HTML page (`templates/report.html.j2`): inline CSS, SVG and
//! a little JavaScript, nothing fetched, so it opens from `file://` and can be mailed around.

use minijinja::Environment;
use serde::Serialize;

use super::{Figure, Report, Row, svg};
use crate::run::decide::Status;

const TEMPLATE: &str = include_str!("../../../templates/report.html.j2");

/// What the template sees.
#[derive(Debug, Serialize)]
struct Page {
    title: String,
    /// Lines under the title: the run, its state, where it came from.
    facts: Vec<String>,
    figures: Vec<Figure>,
    plot: String,
    tree: String,
    /// Whether the run is a tree search (the tree's caption explains its edges and rings).
    tree_search: bool,
    metric: String,
    better: &'static str,
    /// Why `better`: which way the metric goes and who said so.
    goal_reason: String,
    /// A table's columns beyond arun's own.
    columns: Vec<String>,
    /// Whether some rows have a status of the table's own (a filter button for them).
    other: bool,
    /// What reading the input skipped or replaced.
    warnings: Vec<String>,
    /// The held-out metric's name, when the run has one: a column beside the metric.
    held_out: Option<String>,
    rows: Vec<PageRow>,
    /// Whether rows open to a diff and log (a run with a journal).
    details: bool,
    source: String,
    generated: String,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct PageRow {
    n: u64,
    commit: String,
    /// `keep`, `discard`, `crash`, `other` or `running`: the row's class and filter.
    status: &'static str,
    /// The status as shown: the table's own word when it wrote one.
    label: String,
    /// The cells of the table's extra columns.
    extra: Vec<String>,
    metric: String,
    delta: String,
    /// `better`, `worse` or empty: the delta's colour.
    delta_class: &'static str,
    memory: String,
    time: String,
    /// Its build time (outside the budget), empty without a build.
    build: String,
    /// How many times the code ran (more than once: noise measurement, confirmation).
    runs: usize,
    held_out: String,
    description: String,
    reason: String,
    fix_of: Option<u64>,
    on_path: bool,
    details: Option<PageDetails>,
}

#[derive(Debug, Serialize)]
struct PageDetails {
    /// The diff's lines with their class (`add`, `del`, `hunk`, `file`, or empty).
    diff: Vec<(&'static str, String)>,
    diff_truncated: bool,
    diff_command: String,
    log: Option<String>,
    log_truncated: bool,
    log_path: String,
    /// Left out because the report's room for diffs and logs was used up.
    diff_left_out: bool,
    log_left_out: bool,
}

/// Renders the page; `generated` is the time stamp written in its footer.
pub fn render(report: &Report, generated: &str) -> Result<String, String> {
    let path: std::collections::BTreeSet<u64> = report.kept_path().into_iter().collect();
    let rows = report
        .rows
        .iter()
        .map(|row| page_row(report, row, path.contains(&row.n)))
        .collect();
    let page = Page {
        title: match &report.tag {
            Some(tag) => format!("{} · run {tag}", report.title),
            None => report.title.clone(),
        },
        facts: facts(report),
        figures: report.figures(),
        plot: svg::progress_plot(report),
        tree: svg::tree(report),
        tree_search: report.tree.is_some(),
        metric: report.metric.clone(),
        better: report.goal.better_word(),
        goal_reason: report.goal_reason.clone(),
        columns: report.columns.clone(),
        other: report.summary().other > 0,
        warnings: report.warnings.clone(),
        held_out: report.held_out.clone(),
        rows,
        details: report.run.is_some(),
        source: report.source.clone(),
        generated: generated.to_string(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("report.html.j2", TEMPLATE)
        .map_err(|err| format!("the report template: {err}"))?;
    let template = env
        .get_template("report.html.j2")
        .map_err(|err| format!("the report template: {err}"))?;
    template
        .render(minijinja::value::Serde(&page))
        .map_err(|err| format!("cannot render the report: {err}"))
}

/// The lines under the title.
fn facts(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(run) = &report.run else {
        lines.push(format!(
            "a results table without a journal: {} rows; times, costs, diffs and logs are \
             only known for runs made by arun",
            report.rows.len()
        ));
        if !report.restarts.is_empty() {
            lines.push(restarts_sentence(&report.restarts));
        }
        return lines;
    };
    let mut first = format!(
        "branch {}, started {}",
        run.branch,
        crate::text::local_time(run.started)
    );
    if let Some(budget) = run.budget {
        first.push_str(&format!(
            ", {} budget per experiment",
            crate::config::HumanDuration(budget)
        ));
    }
    lines.push(first);
    if let Some(tree) = &report.tree {
        lines.push(tree.sentence());
    }
    let builds: Vec<f64> = report.rows.iter().filter_map(|r| r.build_seconds).collect();
    if let Some(longest) = builds.iter().copied().reduce(f64::max) {
        lines.push(format!(
            "{} builds, {} in all (outside the budget), the longest {}",
            builds.len(),
            super::seconds_text(builds.iter().sum()),
            super::seconds_text(longest)
        ));
    }
    let mut state = run.state.describe();
    if !run.in_flight.is_empty() {
        let doing: Vec<String> = run
            .in_flight
            .iter()
            .map(|current| format!("#{} was {}", current.n, current.phase.word()))
            .collect();
        state.push_str(&format!(
            "; experiment {} at {}",
            doing.join(", "),
            crate::text::local_time(run.last_event)
        ));
    } else {
        state.push_str(&format!(
            "; last event {}",
            crate::text::local_time(run.last_event)
        ));
    }
    lines.push(state);
    lines
}

/// `the table restarts at #12, #40: ...`, naming the first few.
pub fn restarts_sentence(restarts: &[u64]) -> String {
    const NAMED: usize = 6;
    let mut numbers: Vec<String> = restarts
        .iter()
        .take(NAMED)
        .map(|n| format!("#{n}"))
        .collect();
    if restarts.len() > NAMED {
        numbers.push(format!("{} more", restarts.len() - NAMED));
    }
    format!(
        "the table restarts at {}: each a keep much worse than the best before it, which begins \
         a new segment of the running best",
        numbers.join(", ")
    )
}

fn page_row(report: &Report, row: &Row, on_path: bool) -> PageRow {
    let delta = report.delta(row);
    let delta_class = match delta {
        Some(d) if report.goal.improvement(d, 0.0) > 0.0 => "better",
        Some(d) if d != 0.0 => "worse",
        _ => "",
    };
    PageRow {
        n: row.n,
        commit: row.commit.clone(),
        status: match (row.status, &row.label) {
            (Some(Status::Keep), _) => "keep",
            (Some(Status::Discard), _) => "discard",
            (Some(Status::Crash), _) => "crash",
            (None, Some(_)) => "other",
            (None, None) => "running",
        },
        label: match (&row.label, row.status) {
            (Some(word), _) => word.clone(),
            (None, Some(status)) => status.to_string(),
            (None, None) => "running".to_string(),
        },
        extra: row.extra.clone(),
        metric: row.metric.map_or_else(String::new, |m| format!("{m:.6}")),
        delta: delta.map_or_else(String::new, |d| format!("{d:+.6}")),
        delta_class,
        memory: row
            .memory_gb
            .map_or_else(String::new, |m| format!("{m:.1}")),
        time: row.seconds.map_or_else(String::new, super::seconds_text),
        build: row
            .build_seconds
            .map_or_else(String::new, super::seconds_text),
        runs: row.runs,
        held_out: row.held_out.map_or_else(String::new, |v| format!("{v:.6}")),
        description: row.description.clone(),
        // The baseline's reason is its description again.
        reason: row
            .reason
            .clone()
            .filter(|reason| *reason != row.description)
            .unwrap_or_default(),
        fix_of: row.fix_of,
        on_path,
        details: row.details.as_ref().map(|details| PageDetails {
            diff: details
                .diff
                .as_ref()
                .map(|diff| diff.text.lines().map(diff_line).collect())
                .unwrap_or_default(),
            diff_truncated: details.diff.as_ref().is_some_and(|d| d.truncated),
            diff_command: details.diff_command.clone(),
            log: details.log.as_ref().map(|log| log.text.clone()),
            log_truncated: details.log.as_ref().is_some_and(|l| l.truncated),
            log_path: details.log_path.clone(),
            diff_left_out: details.diff_left_out,
            log_left_out: details.log_left_out,
        }),
    }
}

fn diff_line(line: &str) -> (&'static str, String) {
    let class = if ["diff --git", "index ", "+++", "---"]
        .iter()
        .any(|start| line.starts_with(start))
    {
        "file"
    } else if line.starts_with("@@") {
        "hunk"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else {
        ""
    };
    (class, line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Goal;
    use crate::view::report::tests::row;
    use crate::view::report::{Details, Excerpt, RunFacts, RunState};

    fn report(rows: Vec<Row>, run: Option<RunFacts>) -> Report {
        Report {
            title: "toy".into(),
            tag: Some("nov22".into()),
            source: "journal.jsonl".into(),
            metric: "val_loss".into(),
            goal: Goal::Minimize,
            goal_reason: String::new(),
            rows,
            columns: Vec::new(),
            restarts: Vec::new(),
            warnings: Vec::new(),
            noise: None,
            held_out: None,
            run,
            tree: None,
        }
    }

    #[test]
    fn a_run_without_experiments_renders() {
        let run = RunFacts {
            branch: "autoresearch/nov22".into(),
            started: 0.0,
            last_event: 0.0,
            active_seconds: 0.0,
            sessions: 1,
            cost_usd: None,
            knob_search: false,
            state: RunState::Abandoned,
            budget: None,
            on_slurm: false,
            in_flight: Vec::new(),
        };
        let page = render(&report(Vec::new(), Some(run)), "now").unwrap();
        assert!(page.contains("no measured experiment yet"));
        assert!(page.contains(r#"data-figure="experiments"><span class="value">0<"#));
        assert!(page.contains("not running"));
    }

    #[test]
    fn details_show_diff_lines_by_kind_and_say_what_was_cut() {
        let mut first = row(0, None, Status::Keep, 1.0);
        first.details = Some(Details {
            diff: None,
            diff_command: "git diff a refs/arun/nov22/0".into(),
            log: Some(Excerpt {
                text: "val_loss: 1.0".into(),
                truncated: true,
            }),
            log_path: ".arun/nov22/logs/0.log".into(),
            diff_left_out: false,
            log_left_out: false,
        });
        let mut second = row(1, Some(0), Status::Discard, 1.1);
        second.details = Some(Details {
            diff: Some(Excerpt {
                text: "@@ -1 +1 @@\n-LR = 0.1\n+LR = 0.2\n".into(),
                truncated: true,
            }),
            ..first.details.clone().unwrap()
        });
        let mut third = row(2, Some(0), Status::Discard, 1.2);
        third.details = Some(Details {
            diff_left_out: true,
            log_left_out: true,
            log: None,
            ..Details::default()
        });
        let page = render(&report(vec![first, second, third], None), "now").unwrap();
        assert!(page.contains(r#"<span class="hunk">@@ -1 +1 @@</span>"#));
        assert!(
            page.contains(
                r#"<span class="del">-LR = 0.1</span><span class="add">+LR = 0.2</span>"#
            )
        );
        assert!(page.contains("cut short; run the command above for the whole diff."));
        assert!(page.contains("only the end is shown"));
        assert!(page.contains("no change (the code as it was)."));
        assert!(page.contains("left out: the report's room for diffs and logs is used up"));
    }
}
