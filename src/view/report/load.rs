//! Finding the run the user named (a pipeline file, a run directory, a repository, a results
//! table) and reading it into a `Report`: from the journal, with each experiment's diff and log
//! tail, or from a bare autoresearch `results.tsv`. Everything here only reads: a run driven by
//! another arun at the same moment is neither locked nor changed.

use std::path::{Path, PathBuf};

use super::direction::Direction;
use super::{
    BandPoint, Current, Details, Excerpt, NoiseBand, Phase, Report, Row, RunFacts, RunState,
};
use crate::config::Goal;
use crate::config::Pipeline;
use crate::config::resolve::ExecutorSpec;
use crate::error::Error;
use crate::run::decide::Status;
use crate::run::git::{self, Git};
use crate::run::journal::{self, Event, Experiment, History};
use crate::run::store::{self, RunDir};

/// How much of each experiment's diff and log the report holds, and of all of them together,
/// so that a run of a thousand experiments still makes a page a browser opens at once.
pub const DIFF_BYTES: usize = 16 * 1024;
pub const LOG_BYTES: u64 = 8 * 1024;
pub const LOG_LINES: usize = 60;
pub const DETAIL_BUDGET: usize = 8 * 1024 * 1024;

/// What the command line named, resolved.
#[derive(Debug)]
pub enum Located {
    /// A run with a journal: its directory in `repo`'s run store.
    Run {
        repo: PathBuf,
        tag: String,
        dir: RunDir,
        /// The pipeline, when it was named or the journal's copy of its path still loads.
        pipeline: Option<Box<Pipeline>>,
    },
    /// A results table without a journal (autoresearch's own, or a run's without its `.arun/`).
    Table {
        path: PathBuf,
        pipeline: Option<Box<Pipeline>>,
        choice: Choice,
    },
}

/// The input of `arun report` and `arun status`.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// A pipeline file, a run directory `.arun/<tag>`, a repository, or a results table; the
    /// current directory when absent.
    pub path: Option<PathBuf>,
    /// Which run of the repository; the latest when absent.
    pub tag: Option<String>,
    /// For a results table: the metric column and its direction, when the user named them.
    pub choice: Choice,
}

impl Located {
    /// The run's directory, for a run with a journal.
    pub fn run_dir(&self) -> Option<&RunDir> {
        match self {
            Located::Run { dir, .. } => Some(dir),
            Located::Table { .. } => None,
        }
    }
}

/// Resolves what the user named.
pub fn locate(input: &Input) -> Result<Located, Error> {
    let path = input.path.clone().unwrap_or_else(|| PathBuf::from("."));
    if !path.exists() {
        return Err(Error::NoRun(format!("`{}` does not exist", path.display())));
    }
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "toml") {
            let pipeline = crate::config::load(&path)?;
            return locate_in_repo(&pipeline.target.repo.clone(), input, Some(pipeline));
        }
        return Ok(Located::Table {
            path,
            pipeline: None,
            choice: input.choice.clone(),
        });
    }
    if path.join("journal.jsonl").is_file() {
        let tag = dir_name(&path);
        if let Some(wanted) = &input.tag
            && *wanted != tag
        {
            return Err(Error::NoRun(format!(
                "`{}` is the run `{tag}`, not `{wanted}`",
                path.display()
            )));
        }
        let repo = path
            .canonicalize()
            .ok()
            .and_then(|dir| git2::Repository::discover(dir).ok())
            .and_then(|repository| repository.workdir().map(Path::to_path_buf))
            .ok_or_else(|| {
                Error::NoRun(format!("`{}` is not inside a repository", path.display()))
            })?;
        return Ok(Located::Run {
            repo,
            tag,
            dir: RunDir::at(path),
            pipeline: None,
        });
    }
    locate_in_repo(&path, input, None)
}

/// A run in a repository: the tagged one, else the latest; else its results table.
fn locate_in_repo(
    repo: &Path,
    input: &Input,
    pipeline: Option<Pipeline>,
) -> Result<Located, Error> {
    let tag = match &input.tag {
        Some(tag) => {
            if store::find_run(repo, tag).is_none() {
                return Err(Error::NoRun(format!(
                    "there is no run `{tag}` in `{}` (no `.git/arun/{tag}/journal.jsonl`)",
                    repo.display()
                )));
            }
            Some(tag.clone())
        }
        None => store::latest_run(repo),
    };
    if let Some(tag) = tag
        && let Some(dir) = store::find_run(repo, &tag)
    {
        return Ok(Located::Run {
            repo: repo.to_path_buf(),
            tag,
            dir,
            pipeline: pipeline.map(Box::new),
        });
    }
    let results = repo.join(
        pipeline
            .as_ref()
            .map_or("results.tsv", |p| p.limits.results.as_str()),
    );
    if results.is_file() {
        return Ok(Located::Table {
            path: results,
            pipeline: pipeline.map(Box::new),
            choice: input.choice.clone(),
        });
    }
    Err(Error::NoRun(format!(
        "there is no run in `{}`: no `.git/arun/<tag>/journal.jsonl` and no `{}`; start one \
         with `arun PIPELINE.toml`, or name a run directory or a results table",
        repo.display(),
        results
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    )))
}

/// Reads what `locate` found. `details` adds each experiment's diff and log tail (the report's
/// table); the status screen does without.
pub fn read(located: &Located, details: bool) -> Result<Report, Error> {
    match located {
        Located::Run {
            repo,
            tag,
            dir,
            pipeline,
        } => read_run(repo, tag, dir, pipeline.as_deref(), details),
        Located::Table {
            path,
            pipeline,
            choice,
        } => read_table(path, pipeline.as_deref(), choice),
    }
}

/// The run's history as its journal tells it now.
pub fn read_history(dir: &RunDir) -> Result<History, Error> {
    let path = dir.journal();
    let events = journal::read(&path)
        .map_err(|err| Error::io(format!("cannot read `{}`", path.display()), err))?;
    Ok(History::replay(events))
}

fn read_run(
    repo: &Path,
    tag: &str,
    run: &RunDir,
    pipeline: Option<&Pipeline>,
    details: bool,
) -> Result<Report, Error> {
    let dir = run.path();
    let history = read_history(run)?;
    // The pipeline's name titles the page. A journal of an older version does not say its
    // metric and budget either: then the pipeline it remembers does, if it still loads.
    let remembered = match pipeline {
        Some(_) => None,
        None => remembered_pipeline(&history),
    };
    let pipeline = pipeline.or(remembered.as_ref());
    let mut report = from_history(&history, repo, dir, pipeline);
    if details && let Ok(git) = Git::open(repo) {
        let mut budget = DETAIL_BUDGET;
        for (row, experiment) in report.rows.iter_mut().zip(&history.experiments) {
            row.details = Some(experiment_details(&git, dir, tag, experiment, &mut budget));
        }
    }
    Ok(report)
}

/// The pipeline file the run was started with, if it still loads.
pub fn remembered_pipeline(history: &History) -> Option<Pipeline> {
    history.events.iter().find_map(|event| match event {
        Event::RunStarted { pipeline, .. } => crate::config::load(Path::new(pipeline)).ok(),
        _ => None,
    })
}

/// The report of a run as its history tells it, without each experiment's diff and log: what
/// `arun status`, the report and the summary printed when a run stops all count from.
pub fn from_history(
    history: &History,
    repo: &Path,
    dir: &Path,
    pipeline: Option<&Pipeline>,
) -> Report {
    let settings = history.settings.as_ref();
    let metric = match (settings, pipeline) {
        (Some(settings), _) => settings.metric.clone(),
        (None, Some(p)) => p.metric.name().to_string(),
        (None, None) => {
            table_metric_name(&repo.join("results.tsv")).unwrap_or_else(|| "metric".to_string())
        }
    };
    let rows: Vec<Row> = history
        .experiments
        .iter()
        .map(|experiment| journal_row(history, experiment))
        .collect();
    let direction = match (settings, pipeline) {
        (Some(settings), _) => Direction::stated(settings.goal, "as the run's settings say"),
        (None, Some(p)) => Direction::stated(p.metric.goal, "as the pipeline says"),
        (None, None) => Direction::of_table(None, &metric, &kept_values(&rows)),
    };
    let mut facts = run_facts(history, repo, dir);
    // The budget the run uses: its own, which a resume keeps, over the pipeline's.
    facts.budget = match settings {
        Some(settings) => Some(std::time::Duration::from_secs_f64(settings.budget_seconds)),
        None => pipeline.map(|p| p.experiment.budget),
    };
    facts.on_slurm = pipeline.is_some_and(|p| matches!(p.executor, ExecutorSpec::Slurm(_)));
    let held_out = history.events.iter().find_map(|event| match event {
        crate::run::journal::Event::HeldOut { name, .. } => Some(name.clone()),
        _ => None,
    });
    Report {
        title: pipeline.map_or_else(|| dir_name(repo), |p| p.name.clone()),
        tag: Some(history.tag.clone()),
        source: dir.join("journal.jsonl").display().to_string(),
        metric,
        goal: direction.goal,
        goal_reason: direction.reason,
        rows,
        columns: Vec::new(),
        restarts: Vec::new(),
        warnings: Vec::new(),
        noise: noise_band(history),
        held_out,
        run: Some(facts),
        tree: super::TreeFacts::of(history),
    }
}

/// The band inside which a result was judged noise: from each decision on, the best it was
/// compared with (the last keep) ± the threshold that decision used. A tree search compares
/// each experiment with its own parent, and its last keep may be a node worse than the best:
/// there the band follows the best so far, where the plot draws the running best.
fn noise_band(history: &History) -> Option<NoiseBand> {
    let tree = matches!(
        history.search(),
        crate::config::resolve::SearchSpec::Tree { .. }
    );
    let goal = history.goal();
    let mut best: Option<f64> = None;
    let mut points: Vec<BandPoint> = Vec::new();
    for experiment in history.recorded() {
        let Some(decision) = &experiment.decision else {
            continue;
        };
        if let (Some(current), Some(threshold)) = (best, decision.threshold)
            && threshold > 0.0
        {
            let point = BandPoint {
                n: experiment.n,
                low: current - threshold,
                high: current + threshold,
            };
            if points
                .last()
                .is_none_or(|p| (p.low, p.high) != (point.low, point.high))
            {
                points.push(point);
            }
        }
        if decision.status == Status::Keep {
            let value = experiment.metric();
            let better = match (best, value) {
                (Some(b), Some(v)) => goal.improvement(v, b) > 0.0,
                _ => true,
            };
            if !tree || better {
                best = value;
            }
        }
    }
    (!points.is_empty()).then_some(NoiseBand { points })
}

fn journal_row(history: &History, experiment: &Experiment) -> Row {
    // A fix attempt is made on top of the crashed commit (or the previous attempt's).
    let built_on = match experiment.fix_of {
        Some(_) => history
            .experiments
            .iter()
            .filter(|e| e.n < experiment.n)
            .rfind(|e| e.commit.as_deref() == Some(experiment.base_commit.as_str()))
            .map(|e| e.n)
            .or(experiment.parent),
        None => experiment.parent,
    };
    let status = experiment.decision.as_ref().map(|d| d.status);
    let seconds: f64 = experiment.runs.iter().map(|r| r.seconds).sum();
    Row {
        n: experiment.n,
        parent: experiment.parent,
        built_on,
        fix_of: experiment.fix_of,
        commit: experiment.short_commit().to_string(),
        status,
        label: None,
        metric: match status {
            Some(Status::Crash) | None => None,
            _ => experiment.metric(),
        },
        memory_gb: experiment.memory_gb(),
        seconds: (seconds > 0.0).then_some(seconds),
        build_seconds: experiment.build_seconds,
        runs: experiment.runs.len(),
        held_out: match &experiment.held_out {
            Some(Ok(value)) => Some(*value),
            _ => None,
        },
        description: crate::text::one_line(&experiment.description_text()),
        extra: Vec::new(),
        reason: experiment.decision.as_ref().map(|d| d.reason.clone()),
        details: None,
    }
}

/// The diff against the commit it was built on and the end of its log, within `budget`.
fn experiment_details(
    git: &Git,
    dir: &Path,
    tag: &str,
    experiment: &Experiment,
    budget: &mut usize,
) -> Details {
    let n = experiment.n;
    let reference = format!("refs/arun/{tag}/{n}");
    let commit = git
        .ref_target(&reference)
        .ok()
        .flatten()
        .or_else(|| experiment.commit.as_deref().and_then(git::parse_oid));
    let base = git::parse_oid(&experiment.base_commit);
    let mut details = Details {
        diff_command: format!(
            "git diff {} {reference}",
            crate::text::short_commit(&experiment.base_commit)
        ),
        log_path: shown(&dir.join("logs").join(format!("{n}.log")), git.workdir()),
        ..Details::default()
    };
    if let (Some(base), Some(commit)) = (base, commit)
        && base != commit
    {
        if *budget == 0 {
            details.diff_left_out = true;
        } else if let Ok(text) = git.diff_text(base, commit, DIFF_BYTES.min(*budget)) {
            let truncated = text.len() >= DIFF_BYTES.min(*budget);
            *budget = budget.saturating_sub(text.len());
            details.diff = Some(Excerpt { text, truncated });
        }
    }
    let logs = dir.join("logs");
    let log = [format!("{n}.log"), format!("{n}.build.log")]
        .into_iter()
        .map(|name| logs.join(name))
        .find(|path| path.is_file());
    if let Some(log) = log {
        details.log_path = shown(&log, git.workdir());
        match crate::run::exec::tail::clean_tail(&log, LOG_BYTES, LOG_LINES) {
            Ok(text) if text.len() <= *budget => {
                *budget -= text.len();
                let size = std::fs::metadata(&log).map_or(0, |m| m.len());
                let truncated = size > text.len() as u64 + 1;
                details.log = Some(Excerpt { text, truncated });
            }
            Ok(_) => {
                *budget = 0;
                details.log_left_out = true;
            }
            Err(_) => {}
        }
    }
    details
}

/// A path as the report shows it: relative to the work tree when inside it.
fn shown(path: &Path, workdir: &Path) -> String {
    let workdir = workdir
        .canonicalize()
        .unwrap_or_else(|_| workdir.to_path_buf());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(&workdir)
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// Times, cost and state from the journal.
fn run_facts(history: &History, repo: &Path, dir: &Path) -> RunFacts {
    let events = &history.events;
    let started = events.first().map_or(0.0, Event::time);
    let last_event = events.last().map_or(started, Event::time);
    // Each stretch runs from a start or resume to the last event before the next resume.
    let mut active_seconds = 0.0;
    let mut stretch_start: Option<f64> = None;
    let mut previous = started;
    let mut sessions = 0;
    for event in events {
        if matches!(event, Event::RunStarted { .. } | Event::Resumed { .. }) {
            sessions += 1;
            if let Some(start) = stretch_start {
                active_seconds += previous - start;
            }
            stretch_start = Some(event.time());
        }
        previous = event.time();
    }
    // The arun holding the repository's lock drives this run if the lock names it.
    let driver = store::root_of(repo)
        .and_then(|root| store::holder(&root))
        .filter(|holder| holder.tag == history.tag)
        .map(|holder| holder.pid);
    let state = match (driver, events.last()) {
        (Some(pid), _) => RunState::Running { pid: Some(pid) },
        (None, Some(Event::Stopped { reason, .. })) => RunState::Stopped(reason.clone()),
        (None, Some(Event::Interrupted { .. })) => RunState::Interrupted,
        (None, _) => RunState::Abandoned,
    };
    // A run being driven now is driven until now, not only until its latest event.
    if matches!(state, RunState::Running { .. }) {
        previous = previous.max(journal::now());
    }
    if let Some(start) = stretch_start {
        active_seconds += previous - start;
    }
    let cost_usd = history
        .experiments
        .iter()
        .any(|e| e.cost_usd.is_some())
        .then(|| history.cost_usd());
    RunFacts {
        knob_search: history
            .experiments
            .iter()
            .any(|e| e.details.get("knobs").is_some()),
        branch: history.branch.clone(),
        started,
        last_event,
        active_seconds: active_seconds.max(0.0),
        sessions,
        cost_usd,
        state,
        budget: None,
        on_slurm: false,
        in_flight: history
            .in_flight()
            .map(|e| current(history, e, dir))
            .collect(),
    }
}

/// What the unfinished experiment is doing, from its last event and its log files.
fn current(history: &History, experiment: &Experiment, dir: &Path) -> Current {
    let n = experiment.n;
    let logs = dir.join("logs");
    let (run_log, build_log) = (
        logs.join(format!("{n}.log")),
        logs.join(format!("{n}.build.log")),
    );
    let phase = if experiment.decision.is_some() {
        Phase::Recording
    } else if !experiment.runs.is_empty() {
        Phase::Deciding
    } else if experiment.commit.is_some() {
        if run_log.is_file() {
            Phase::Running
        } else {
            Phase::Building
        }
    } else if experiment.description.is_some() {
        Phase::Committing
    } else if experiment.fix_of.is_some() {
        Phase::FixingCrash
    } else {
        Phase::Proposing
    };
    // The phase began with the experiment's latest event.
    let phase_started = history
        .events
        .iter()
        .rev()
        .find(|event| event.experiment() == Some(n))
        .map_or(experiment.started, Event::time);
    let log = match phase {
        Phase::Running => Some(run_log),
        Phase::Building => Some(build_log),
        _ => None,
    };
    let last_output = log
        .and_then(|log| crate::run::exec::tail::clean_tail(&log, 4096, 1).ok())
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty());
    Current {
        n,
        phase,
        started: experiment.started,
        phase_started,
        failures: experiment.failures.len(),
        last_output,
    }
}

/// Reads a results table with the tolerant reader (`super::table`). Each experiment builds on
/// the last kept one before it, as in autoresearch's greedy loop; a restart (a keep much worse
/// than the best before it) starts a new chain.
pub fn read_table(
    path: &Path,
    pipeline: Option<&Pipeline>,
    choice: &Choice,
) -> Result<Report, Error> {
    let unreadable = |detail: String| Error::NoRun(format!("`{}`: {detail}", path.display()));
    let bytes = std::fs::read(path).map_err(|err| unreadable(err.to_string()))?;
    let parse = |metric| super::table::parse(&bytes, metric);
    // `--metric` must name a column; the pipeline's metric is only the first guess.
    let table = match (choice.metric.as_deref(), pipeline) {
        (Some(metric), _) => parse(Some(metric)),
        (None, Some(p)) => parse(Some(p.metric.name())).or_else(|_| parse(None)),
        (None, None) => parse(None),
    }
    .map_err(|err| unreadable(err.0))?;
    let mut rows: Vec<Row> = table.rows.into_iter().enumerate().map(table_row).collect();
    let direction = match (choice.goal, pipeline) {
        (None, Some(p)) => Direction::stated(p.metric.goal, "as the pipeline says"),
        _ => Direction::of_table(choice.goal, &table.metric, &kept_values(&rows)),
    };
    let restarts = restarts(&rows, direction.goal);
    chain(&mut rows, &restarts);
    Ok(Report {
        title: pipeline.map_or_else(
            || {
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            },
            |p| p.name.clone(),
        ),
        tag: None,
        source: path.display().to_string(),
        metric: table.metric,
        goal: direction.goal,
        goal_reason: direction.reason,
        rows,
        columns: table.columns,
        restarts,
        warnings: table.warnings,
        noise: None,
        held_out: None,
        run: None,
        tree: None,
    })
}

/// The kept experiments' values, in order.
fn kept_values(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.status == Some(Status::Keep))
        .filter_map(|r| r.metric)
        .collect()
}

/// What the user chose for a table: its metric column and which way it goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub metric: Option<String>,
    pub goal: Option<Goal>,
}

/// The `index`th row of a table as the report's row, its parent not known yet.
fn table_row((index, row): (usize, super::table::TableRow)) -> Row {
    let (status, label) = super::read_status(&row.status);
    let crashed = status == Some(Status::Crash);
    Row {
        n: index as u64,
        parent: None,
        built_on: None,
        fix_of: None,
        commit: row.commit,
        status,
        label,
        metric: row.metric.filter(|_| !crashed),
        memory_gb: row.memory_gb.filter(|_| !crashed),
        seconds: None,
        build_seconds: None,
        runs: 1,
        held_out: None,
        description: row.description,
        extra: row.extra,
        reason: None,
        details: None,
    }
}

/// The kept experiments that restart a table: each much worse than the best before it.
pub fn restarts(rows: &[Row], goal: Goal) -> Vec<u64> {
    let mut best: Option<f64> = None;
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| r.status == Some(Status::Keep)) {
        let Some(value) = row.metric else { continue };
        match best {
            Some(b) if super::direction::is_restart(goal, value, b) => {
                out.push(row.n);
                best = Some(value);
            }
            Some(b) if goal.improvement(value, b) <= 0.0 => {}
            _ => best = Some(value),
        }
    }
    out
}

/// Links each row to the last keep before it; the first row and each restart start a chain.
fn chain(rows: &mut [Row], restarts: &[u64]) {
    let mut last_keep: Option<u64> = None;
    for row in rows.iter_mut() {
        let restart = restarts.binary_search(&row.n).is_ok();
        if row.n > 0 && !restart {
            row.parent = last_keep.or(Some(0));
            row.built_on = row.parent;
        }
        if row.status == Some(Status::Keep) {
            last_keep = Some(row.n);
        }
    }
}

/// The metric column's name in a results table's header.
fn table_metric_name(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    super::table::parse(&bytes, None).ok().map(|t| t.metric)
}

fn dir_name(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("results.tsv");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_table_builds_a_greedy_chain_and_infers_the_direction() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "commit\tacc\tmemory_gb\tstatus\tdescription\n\
             a\t0.50\t1.0\tkeep\tbaseline\n\
             b\t0.40\t1.0\tdiscard\tworse\n\
             c\t0.00\t0.0\tcrash\tboom\n\
             d\t0.60\t1.0\tKEEP\tbetter\n\
             e\t0.55\t1.0\tdiscard\tclose\n",
        );
        let report = read_table(&path, None, &Choice::default()).unwrap();
        assert_eq!(report.metric, "acc");
        assert_eq!(report.goal, Goal::Maximize);
        let parents: Vec<Option<u64>> = report.rows.iter().map(|r| r.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(0), Some(0), Some(3)]);
        assert_eq!(report.rows[2].metric, None);
        assert_eq!(report.rows[2].memory_gb, None);
        assert_eq!(report.best().unwrap().n, 3);
    }

    #[test]
    fn a_restart_starts_a_new_chain_and_unknown_statuses_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "commit\taggregate_score\tstatus\tdescription\n\
             a\t0.27\tkeep\tbaseline\n\
             b\t1.16\tkeep\tlucky\n\
             c\t0.50\tdiscard\tworse\n\
             d\t0.37\tkeep\thonest baseline\n\
             e\t0.40\tcontender\tclose\n\
             f\t0.45\tNEW_BEST\tbetter\n",
        );
        let report = read_table(&path, None, &Choice::default()).unwrap();
        assert_eq!(report.goal, Goal::Maximize);
        assert_eq!(report.restarts, [3]);
        let parents: Vec<Option<u64>> = report.rows.iter().map(|r| r.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(1), None, Some(3), Some(3)]);
        assert_eq!(report.best().unwrap().n, 1);
        assert_eq!(
            report.running_best_segments(),
            [
                vec![(0, 0.27), (1, 1.16), (2, 1.16)],
                vec![(3, 0.37), (4, 0.37), (5, 0.45)]
            ]
        );
        let (e, f) = (&report.rows[4], &report.rows[5]);
        assert_eq!((e.status, e.label.as_deref()), (None, Some("contender")));
        assert_eq!(
            (f.status, f.label.as_deref()),
            (Some(Status::Keep), Some("NEW_BEST"))
        );
        let summary = report.summary();
        assert_eq!(
            (
                summary.experiments,
                summary.kept,
                summary.discarded,
                summary.other
            ),
            (5, 3, 1, 1)
        );
        assert_eq!(report.other_statuses(), [("contender".to_string(), 1)]);
        assert_eq!(report.current(), None);

        let choice = Choice {
            metric: None,
            goal: Some(Goal::Minimize),
        };
        let report = read_table(&path, None, &choice).unwrap();
        assert_eq!((report.goal, report.best().unwrap().n), (Goal::Minimize, 0));
        assert_eq!(report.goal_reason, "as `--goal` says");
    }

    #[test]
    fn an_unusable_table_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a\tb\n");
        let err = read_table(&path, None, &Choice::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("results.tsv`: the table has a header and no rows"),
            "{err}"
        );
    }

    #[test]
    fn details_are_cut_to_their_limits_and_to_the_report_budget() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template");
        std::fs::create_dir_all(&template).unwrap();
        std::fs::write(template.join("train.py"), "LR = 0.1\n").unwrap();
        let repo = dir.path().join("repo");
        let git = Git::init_from_template(&repo, &template).unwrap();
        let base = git.head_commit().unwrap();
        let padding = "# a line of padding\n".repeat(5000);
        std::fs::write(repo.join("train.py"), format!("LR = 0.2\n{padding}")).unwrap();
        let commit = git
            .commit_paths(base, &["train.py".to_string()], "t: big change")
            .unwrap();
        let run_dir = repo.join(".arun/t");
        std::fs::create_dir_all(run_dir.join("logs")).unwrap();
        std::fs::write(run_dir.join("logs/1.log"), "step\n".repeat(10_000)).unwrap();
        let experiment = Experiment {
            n: 1,
            parent: Some(0),
            base_commit: base.to_string(),
            fix_of: None,
            attempt: 0,
            started: 0.0,
            description: Some("big change".into()),
            violations: Vec::new(),
            details: serde_json::Value::Null,
            cost_usd: None,
            tokens: None,
            rejected: None,
            commit: Some(commit.to_string()),
            lines: (5001, 1),
            runs: Vec::new(),
            decision: None,
            recorded: true,
            held_out: None,
            failures: Vec::new(),
            ..Experiment::default()
        };

        let mut budget = DETAIL_BUDGET;
        let details = experiment_details(&git, &run_dir, "t", &experiment, &mut budget);
        let diff = details.diff.unwrap();
        assert!(diff.truncated && diff.text.contains("+LR = 0.2"));
        assert!(diff.text.len() < DIFF_BYTES + 100, "{}", diff.text.len());
        let log = details.log.unwrap();
        assert!(log.truncated);
        assert_eq!(log.text.lines().count(), LOG_LINES);
        assert_eq!(
            details.diff_command,
            format!("git diff {} refs/arun/t/1", &base.to_string()[..7])
        );
        assert_eq!(budget, DETAIL_BUDGET - diff.text.len() - log.text.len());

        // Near the end of the budget the diff is cut to what is left and the log left out;
        // after that nothing more is embedded.
        let mut budget = 1000;
        let details = experiment_details(&git, &run_dir, "t", &experiment, &mut budget);
        assert!(details.diff.unwrap().text.len() < 1100);
        assert_eq!((details.log, details.log_left_out, budget), (None, true, 0));
        let details = experiment_details(&git, &run_dir, "t", &experiment, &mut budget);
        assert!(details.diff_left_out && details.log_left_out);
        assert!(details.diff.is_none() && details.log.is_none());
    }
}
