//! What a run looks like afterwards: the report's data model, built from a run's journal or from a
//! bare autoresearch `results.tsv`, and the summary figures both `arun report` and `arun status`
//! show. Rendering lives in `html` (the page) and `svg` (the progress plot and the tree).

pub mod compare;
pub mod direction;
pub mod html;
pub mod load;
pub mod svg;
pub mod table;

use std::path::{Path, PathBuf};

use crate::config::Goal;
use crate::error::Error;
use crate::run::decide::Status;

pub use load::{Input, Located, locate};

/// `arun report`: reads the run the input names and writes its page; returns where, and what
/// reading skipped or replaced.
pub fn write(input: &Input, output: Option<&Path>) -> Result<(PathBuf, Vec<String>), Error> {
    let located = locate(input)?;
    let report = load::read(&located, true)?;
    let page = html::render(
        &report,
        &crate::text::local_time(crate::run::journal::now()),
    )
    .map_err(|message| Error::io("cannot write the report", std::io::Error::other(message)))?;
    let path = match (output, &located) {
        (Some(path), _) => path.to_path_buf(),
        (None, Located::Run { dir, .. }) => dir.report(),
        (None, Located::Table { path, .. }) => table_report_path(path),
    };
    if let Located::Table { path: table, .. } = &located
        && same_file(table, &path)
    {
        return Err(Error::NoRun(format!(
            "the page would be written over the table `{}`; name another file with `-o`",
            table.display()
        )));
    }
    // Written aside and renamed, so that a browser reloading the page never sees half of it.
    crate::run::store::write_atomic(&path, page.as_bytes())
        .map_err(|err| Error::io(format!("cannot write `{}`", path.display()), err))?;
    Ok((path, report.warnings))
}

/// Where the page of a bare results table goes: beside it, unless the table is in a git work
/// tree (a run may be driving it: a new file there would count against its experiment), then
/// in that repository's run store, `.git/arun/reports/`.
fn table_report_path(table: &Path) -> PathBuf {
    // A table called `*.html` keeps its own name: its page is `*.report.html`.
    let beside = match table.extension() {
        Some(ext) if ext.eq_ignore_ascii_case("html") => table.with_extension("report.html"),
        _ => table.with_extension("html"),
    };
    let name = beside.file_name().unwrap_or_default();
    let absolute = table.canonicalize().unwrap_or_else(|_| table.to_path_buf());
    let in_work_tree = absolute
        .parent()
        .and_then(|dir| git2::Repository::discover(dir).ok())
        .filter(|repo| {
            repo.workdir()
                .and_then(|w| w.canonicalize().ok())
                .is_some_and(|w| absolute.starts_with(w))
        });
    match in_work_tree {
        Some(repo) => repo.commondir().join("arun").join("reports").join(name),
        None => beside,
    }
}

/// Whether two paths name one file (the second may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let full = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            Some(dir.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    matches!((full(a), full(b)), (Some(a), Some(b)) if a == b)
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The pipeline's name, or the table's file name.
    pub title: String,
    /// The run tag, for a run with a journal.
    pub tag: Option<String>,
    /// What the report was made from (a journal or a results table), for the page's footer.
    pub source: String,
    /// The metric's name, e.g. `val_bpb`.
    pub metric: String,
    pub goal: Goal,
    /// Why `goal`: `as the run's settings say`, `` `val_acc` names a metric that rises ``.
    pub goal_reason: String,
    /// Every experiment in order, the baseline first.
    pub rows: Vec<Row>,
    /// A table's columns beyond arun's own, in its order; each row's `extra` follows them.
    pub columns: Vec<String>,
    /// Kept experiments that start a new segment of the running best: a table that restarts
    /// with a new baseline much worse than the best before it.
    pub restarts: Vec<u64>,
    /// What reading the input skipped or replaced, for the page and `arun status`.
    pub warnings: Vec<String>,
    /// The band within which a change of the metric is noise, when the run measured one.
    pub noise: Option<NoiseBand>,
    /// The held-out metric's name, when the run has a held-out check.
    pub held_out: Option<String>,
    /// Facts only a journal has (times, cost, whether it is still running).
    pub run: Option<RunFacts>,
    /// The shape of the tree, for a run with `[search] strategy = "tree"`.
    pub tree: Option<TreeFacts>,
}

/// The shape of a tree search's experiment tree. Its nodes are the kept experiments, the
/// baseline included, each under the node it improved on (see `crate::run::search`).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeFacts {
    /// Kept experiments, the baseline included.
    pub nodes: usize,
    /// Nodes made on the baseline: the approaches that worked at all.
    pub branches: usize,
    /// Nodes closed after `patience` children in a row failed to improve on them.
    pub dead_ends: Vec<u64>,
    /// Proposals asked for as new approaches from the baseline, at the start (drafts) and when
    /// every node was closed (broadenings).
    pub drafts: usize,
    pub broadenings: usize,
    /// How many failing children in a row close a node.
    pub patience: u32,
}

impl TreeFacts {
    /// The tree's shape of a run's history; `None` for a greedy run.
    pub fn of(history: &crate::run::journal::History) -> Option<TreeFacts> {
        use crate::run::journal::Expansion;
        use crate::run::search::Tree;
        let crate::config::resolve::SearchSpec::Tree { patience, .. } = history.search() else {
            return None;
        };
        let tree = Tree::of(history);
        let baseline = history.baseline().map(|b| b.n);
        let kind = |kind| tree.expansions().filter(|e| e.expansion == kind).count();
        Some(TreeFacts {
            nodes: tree.nodes().count(),
            branches: tree
                .nodes()
                .filter(|node| node.parent.is_some() && node.parent == baseline)
                .count(),
            dead_ends: tree.dead_ends(patience).map(|node| node.n).collect(),
            drafts: kind(Expansion::Draft),
            broadenings: kind(Expansion::Broaden),
            patience,
        })
    }

    /// The shape in one line: `tree search: 4 nodes, 2 branches from the baseline, 1 dead end,
    /// 2 drafts`, with broadenings when there were any.
    pub fn sentence(&self) -> String {
        format!("tree search: {}", self.shape())
    }

    /// The shape: `4 nodes, 2 branches from the baseline, 1 dead end, 2 drafts`.
    pub fn shape(&self) -> String {
        let plural = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        let mut text = format!(
            "{}, {} from the baseline, {}, {}",
            plural(self.nodes, "node", "nodes"),
            plural(self.branches, "branch", "branches"),
            plural(self.dead_ends.len(), "dead end", "dead ends"),
            plural(self.drafts, "draft", "drafts"),
        );
        if self.broadenings > 0 {
            text.push_str(&format!(
                ", {}",
                plural(self.broadenings, "broadening", "broadenings")
            ));
        }
        text
    }
}

/// One experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub n: u64,
    /// The kept experiment it builds on, whose metric it is compared with; `None` for the baseline.
    pub parent: Option<u64>,
    /// The experiment whose commit this one was made on top of: its parent, or for a fix attempt
    /// the crash it repairs. The tree's edges.
    pub built_on: Option<u64>,
    /// For a fix attempt: the crashed experiment it repairs.
    pub fix_of: Option<u64>,
    /// The commit, abbreviated to 7 characters (`baseline` in some autoresearch tables).
    pub commit: String,
    /// `None` while the experiment is still in progress, or when a table wrote a status arun
    /// does not know (then `label` holds it).
    pub status: Option<Status>,
    /// The status as a table wrote it, when it is not arun's own word: `BEST` and `baseline`
    /// (read as keep), `contender`, `done`.
    pub label: Option<String>,
    /// `None` for a crash or an experiment in progress.
    pub metric: Option<f64>,
    pub memory_gb: Option<f64>,
    /// Wall-clock seconds of its runs together, when the journal has them.
    pub seconds: Option<f64>,
    /// How long its build took (outside the budget), when it had one.
    pub build_seconds: Option<f64>,
    /// How many times it ran (repeats measure the noise and confirm keeps); 1 for a bare table.
    pub runs: usize,
    /// The held-out check's value, for a new best of a run that has one.
    pub held_out: Option<f64>,
    pub description: String,
    /// The cells of the report's `columns`.
    pub extra: Vec<String>,
    /// Why it was kept, discarded or counted as a crash, when the journal says.
    pub reason: Option<String>,
    /// Its diff and the end of its log, when the run's files are there.
    pub details: Option<Details>,
}

/// Words tables write for a kept experiment besides `keep`: the baseline and new bests.
const KEEP_WORDS: &[&str] = &[
    "keep", "kept", "best", "baseline", "improved", "accept", "accepted",
];
const DISCARD_WORDS: &[&str] = &[
    "discard",
    "discarded",
    "revert",
    "reverted",
    "reject",
    "rejected",
];
const CRASH_WORDS: &[&str] = &["crash", "crashed"];

/// A status as a table writes it, read: arun's own three words in any case, `best`, `NEW_BEST`,
/// `baseline` and the like as keep, `revert` as discard; any other word is kept as written
/// (`label`) with no status. The label is `None` for arun's own words.
pub fn read_status(word: &str) -> (Option<Status>, Option<String>) {
    let lower = word.trim().to_lowercase();
    let own = match lower.as_str() {
        "keep" => Some(Status::Keep),
        "discard" => Some(Status::Discard),
        "crash" => Some(Status::Crash),
        _ => None,
    };
    if own.is_some() {
        return (own, None);
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let says = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let status = if says(CRASH_WORDS) {
        Some(Status::Crash)
    } else if says(DISCARD_WORDS) {
        Some(Status::Discard)
    } else if says(KEEP_WORDS) {
        Some(Status::Keep)
    } else {
        None
    };
    (status, Some(word.trim().to_string()))
}

/// Whether a table's status cell is a word `read_status` maps to keep, discard or crash.
pub fn status_word_known(word: &str) -> bool {
    read_status(word).0.is_some()
}

/// What a click on a table row shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    /// The diff against the commit it was built on.
    pub diff: Option<Excerpt>,
    /// The git command that shows the whole diff.
    pub diff_command: String,
    /// The end of its log, cleaned of colours and progress redraws.
    pub log: Option<Excerpt>,
    /// Where the whole log is, relative to the repository.
    pub log_path: String,
    /// The diff or the log was left out: the report's room for them was used up.
    pub diff_left_out: bool,
    pub log_left_out: bool,
}

/// A bounded piece of a longer text.
#[derive(Debug, Clone, PartialEq)]
pub struct Excerpt {
    pub text: String,
    /// Whether the text was cut to fit the report.
    pub truncated: bool,
}

/// The noise band of the metric: from experiment `n` on, results within `low..=high` are
/// indistinguishable from the best. Drawn as a shaded step band behind the running best.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseBand {
    pub points: Vec<BandPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub n: u64,
    pub low: f64,
    pub high: f64,
}

/// What the journal tells beyond the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub branch: String,
    /// Unix time of the run's start and of its latest event.
    pub started: f64,
    pub last_event: f64,
    /// Seconds an arun was driving the run (the gaps between a stop and a resume left out).
    pub active_seconds: f64,
    /// How many times an arun started or resumed the run.
    pub sessions: usize,
    /// Total proposer cost; `None` when no proposal reported one.
    pub cost_usd: Option<f64>,
    /// The proposals came from the built-in knob search, which costs nothing.
    pub knob_search: bool,
    pub state: RunState,
    /// The experiment budget, when the pipeline could be read.
    pub budget: Option<std::time::Duration>,
    /// Its runs are Slurm jobs (`[executor] kind = "slurm"`), as far as the pipeline says.
    pub on_slurm: bool,
    /// The experiments started but not recorded yet: one, or one per worker with parallel
    /// workers.
    pub in_flight: Vec<Current>,
}

/// The experiment in progress (or in progress when the run stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub n: u64,
    pub phase: Phase,
    /// Unix time the experiment started and the time its current phase started.
    pub started: f64,
    pub phase_started: f64,
    /// Failed proposals for this experiment so far.
    pub failures: usize,
    /// The last line of its log, cleaned, while it builds or runs.
    pub last_output: Option<String>,
}

/// The step an unfinished experiment is at, from its last journaled event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Proposing,
    FixingCrash,
    Committing,
    Building,
    Running,
    Deciding,
    Recording,
}

impl Phase {
    pub fn word(self) -> &'static str {
        match self {
            Phase::Proposing => "proposing",
            Phase::FixingCrash => "fixing a crash",
            Phase::Committing => "committing",
            Phase::Building => "building",
            Phase::Running => "running",
            Phase::Deciding => "deciding",
            Phase::Recording => "recording",
        }
    }
}

/// A run's duration: `2.4s` under a minute, `5m03s` above.
pub fn seconds_text(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        crate::view::progress::clock(std::time::Duration::from_secs_f64(seconds))
    }
}

/// Where the run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// An arun process holds the run's lock.
    Running { pid: Option<u32> },
    /// It stopped by itself, for this reason.
    Stopped(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Nothing drives it and it did not say why it stopped (its arun was killed).
    Abandoned,
}

impl RunState {
    pub fn describe(&self) -> String {
        match self {
            RunState::Running { pid: Some(pid) } => format!("running (arun pid {pid})"),
            RunState::Running { pid: None } => "running".to_string(),
            RunState::Stopped(reason) => format!("finished: {reason}"),
            RunState::Interrupted => "interrupted".to_string(),
            RunState::Abandoned => {
                "not running; its arun stopped without a word (killed?)".to_string()
            }
        }
    }
}

/// The headline numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub baseline: Option<f64>,
    /// The best kept experiment and its metric.
    pub best: Option<(u64, f64)>,
    /// How much better the best is than the baseline, in percent of the baseline (positive is
    /// better, whichever way the metric goes).
    pub improvement_percent: Option<f64>,
    /// Experiments after the baseline, recorded ones only.
    pub experiments: usize,
    /// Kept experiments after the baseline: the improvements.
    pub kept: usize,
    pub discarded: usize,
    pub crashed: usize,
    /// Experiments a table gave a status of its own (`contender`, `done`): neither kept,
    /// discarded nor crashed.
    pub other: usize,
    /// Recorded experiments (the baseline included) per hour of driving time.
    pub per_hour: Option<f64>,
    pub cost_usd: Option<f64>,
}

impl Summary {
    /// Kept improvements per experiment after the baseline.
    pub fn keep_rate(&self) -> Option<f64> {
        (self.experiments > 0).then(|| self.kept as f64 / self.experiments as f64)
    }

    /// The counts as one sentence, the same wherever a run is summed up:
    /// `12 experiments after the baseline: 3 kept, 8 discarded, 1 crashed (keep rate 25.0%)`.
    pub fn counts(&self) -> String {
        format!(
            "{} experiment{} after the baseline: {} kept, {} discarded, {} crashed{}{}",
            self.experiments,
            if self.experiments == 1 { "" } else { "s" },
            self.kept,
            self.discarded,
            self.crashed,
            if self.other > 0 {
                format!(", {} other", self.other)
            } else {
                String::new()
            },
            self.keep_rate()
                .map_or_else(String::new, |r| format!(" (keep rate {:.1}%)", 100.0 * r))
        )
    }
}

/// One figure as the page and the status screen show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    /// A stable key, e.g. `kept` (the page's `data-figure` attribute).
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
    /// A line of context under the value, e.g. `22 of 125`.
    pub note: String,
    /// `good`, `bad` or empty: how the page colours the value.
    pub tone: &'static str,
}

impl Report {
    /// The experiment numbered `n` (rows are in order of their numbers).
    pub fn row(&self, n: u64) -> Option<&Row> {
        let at = self.rows.binary_search_by_key(&n, |r| r.n).ok()?;
        self.rows.get(at)
    }

    /// Rows with a decision or a status word of their own, in order.
    pub fn recorded(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.status.is_some() || r.label.is_some())
    }

    pub fn baseline(&self) -> Option<&Row> {
        self.rows.first().filter(|r| r.parent.is_none())
    }

    /// The best kept experiment.
    pub fn best(&self) -> Option<&Row> {
        let goal = self.goal;
        self.recorded()
            .filter(|r| r.status == Some(Status::Keep))
            .filter_map(|r| r.metric.map(|m| (r, m)))
            .fold(
                None,
                |best: Option<(&Row, f64)>, (row, metric)| match best {
                    Some((_, b)) if goal.improvement(metric, b) <= 0.0 => best,
                    _ => Some((row, metric)),
                },
            )
            .map(|(row, _)| row)
    }

    /// The metric this row is compared with: its parent's.
    pub fn delta(&self, row: &Row) -> Option<f64> {
        let parent = self.row(row.parent?)?;
        Some(row.metric? - parent.metric?)
    }

    /// The kept experiments from the baseline to the best, following the tree upwards.
    pub fn kept_path(&self) -> Vec<u64> {
        let mut path = Vec::new();
        let mut at = self.best();
        while let Some(row) = at {
            path.push(row.n);
            at = row.built_on.and_then(|n| self.row(n));
        }
        path.reverse();
        path
    }

    /// The running best after each recorded experiment: `(n, best so far)`, from the baseline on.
    pub fn running_best(&self) -> Vec<(u64, f64)> {
        self.running_best_segments().concat()
    }

    /// The running best in segments: a restart (see `restarts`) ends one and starts the next
    /// from its own value.
    pub fn running_best_segments(&self) -> Vec<Vec<(u64, f64)>> {
        let mut best: Option<f64> = None;
        let mut segments: Vec<Vec<(u64, f64)>> = vec![Vec::new()];
        let mut restarts = self.restarts.iter().peekable();
        for row in self.recorded() {
            if restarts.next_if(|&&n| n == row.n).is_some() {
                best = row.metric;
                segments.push(Vec::new());
            } else if row.status == Some(Status::Keep)
                && let Some(metric) = row.metric
                && best.is_none_or(|b| self.goal.improvement(metric, b) > 0.0)
            {
                best = Some(metric);
            }
            if let (Some(best), Some(segment)) = (best, segments.last_mut()) {
                segment.push((row.n, best));
            }
        }
        segments.retain(|s| !s.is_empty());
        segments
    }

    /// The experiment in progress, if any.
    pub fn current(&self) -> Option<&Row> {
        self.rows
            .last()
            .filter(|r| r.status.is_none() && r.label.is_none())
    }

    /// Rows whose status a table wrote in a word of its own, by word, most frequent first:
    /// `[("contender", 17), ("done", 14)]`.
    pub fn other_statuses(&self) -> Vec<(String, usize)> {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for row in self.recorded().filter(|r| r.status.is_none()) {
            *counts
                .entry(row.label.as_deref().unwrap_or_default())
                .or_default() += 1;
        }
        let mut counts: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(word, count)| (word.to_string(), count))
            .collect();
        counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        counts
    }

    pub fn summary(&self) -> Summary {
        let baseline_n = self.baseline().map(|r| r.n);
        let after_baseline = || self.recorded().filter(move |r| Some(r.n) != baseline_n);
        let count = |status| {
            after_baseline()
                .filter(|r| r.status == Some(status))
                .count()
        };
        let baseline = self.baseline().and_then(|r| r.metric);
        let best = self.best().and_then(|r| r.metric.map(|m| (r.n, m)));
        let improvement_percent = match (baseline, best) {
            (Some(baseline), Some((_, best))) if baseline != 0.0 => {
                Some(100.0 * self.goal.improvement(best, baseline) / baseline.abs())
            }
            _ => None,
        };
        let recorded = self.recorded().count();
        let per_hour = self
            .run
            .as_ref()
            .filter(|run| run.active_seconds > 0.0 && recorded > 0)
            .map(|run| recorded as f64 * 3600.0 / run.active_seconds);
        Summary {
            baseline,
            best,
            improvement_percent,
            experiments: after_baseline().count(),
            kept: count(Status::Keep),
            discarded: count(Status::Discard),
            crashed: count(Status::Crash),
            other: after_baseline().filter(|r| r.status.is_none()).count(),
            per_hour,
            cost_usd: self.run.as_ref().and_then(|run| run.cost_usd),
        }
    }

    /// The summary as labelled figures, in the order the page shows them.
    pub fn figures(&self) -> Vec<Figure> {
        let summary = self.summary();
        let mut figures = self.result_figures(&summary);
        figures.extend(count_figures(&summary));
        figures.extend(self.run_figures(&summary));
        if summary.other > 0 {
            let at = figures
                .iter()
                .position(|f| f.key == "crashed")
                .map_or(0, |i| i + 1);
            figures.insert(at, self.other_statuses_figure(&summary));
        }
        figures
    }

    /// The baseline, the best and the improvement between them.
    fn result_figures(&self, summary: &Summary) -> Vec<Figure> {
        let metric = |value: f64| format!("{value:.6}");
        let best_row = summary.best.and_then(|(n, _)| self.row(n));
        vec![
            Figure {
                key: "baseline",
                label: "Baseline",
                value: summary.baseline.map_or_else(missing, metric),
                note: self.metric.clone(),
                tone: "",
            },
            Figure {
                key: "best",
                label: "Best",
                value: summary.best.map_or_else(missing, |(_, m)| metric(m)),
                note: best_row
                    .map_or_else(String::new, |row| format!("#{} {}", row.n, row.description)),
                tone: "",
            },
            Figure {
                key: "improvement",
                label: "Improvement",
                value: summary
                    .improvement_percent
                    .map_or_else(missing, |p| format!("{p:.2}%")),
                note: match (summary.baseline, summary.best) {
                    (Some(baseline), Some((_, best))) => {
                        format!("{:+.6} {}", best - baseline, self.metric)
                    }
                    _ => String::new(),
                },
                tone: if summary.improvement_percent.is_some_and(|p| p > 0.0) {
                    "good"
                } else {
                    ""
                },
            },
        ]
    }

    /// The pace and the proposer's cost, which only a journal knows.
    fn run_figures(&self, summary: &Summary) -> Vec<Figure> {
        let no_journal = "no journal";
        vec![
            Figure {
                key: "per-hour",
                label: "Experiments / hour",
                value: summary.per_hour.map_or_else(missing, |r| format!("{r:.1}")),
                note: match &self.run {
                    Some(run) => format!(
                        "{} driving",
                        crate::view::progress::clock(std::time::Duration::from_secs_f64(
                            run.active_seconds.max(0.0)
                        ))
                    ),
                    None => no_journal.to_string(),
                },
                tone: "",
            },
            Figure {
                key: "cost",
                label: "Proposer cost",
                value: match (summary.cost_usd, &self.run) {
                    (Some(cost), _) => format!("${cost:.2}"),
                    (None, Some(run)) if run.knob_search => "$0".to_string(),
                    (None, _) => missing(),
                },
                note: match (&self.run, summary.cost_usd) {
                    (None, _) => no_journal.to_string(),
                    (Some(run), None) if run.knob_search => "knob search: no LLM".to_string(),
                    (Some(_), None) => "not reported by the proposer".to_string(),
                    (Some(_), Some(_)) => String::new(),
                },
                tone: "",
            },
        ]
    }

    /// The rows with a status word of the table's own, counted by word.
    fn other_statuses_figure(&self, summary: &Summary) -> Figure {
        let words: Vec<String> = self
            .other_statuses()
            .iter()
            .map(|(word, count)| format!("{count} {word}"))
            .collect();
        Figure {
            key: "other",
            label: "Other statuses",
            value: summary.other.to_string(),
            note: words.join(", "),
            tone: "",
        }
    }
}

/// A figure's value when there is none.
fn missing() -> String {
    "–".to_string()
}

/// The experiments after the baseline, kept, discarded and crashed, and the keep rate.
fn count_figures(summary: &Summary) -> Vec<Figure> {
    vec![
        Figure {
            key: "experiments",
            label: "Experiments",
            value: summary.experiments.to_string(),
            note: "after the baseline".to_string(),
            tone: "",
        },
        Figure {
            key: "kept",
            label: "Kept",
            value: summary.kept.to_string(),
            note: if summary.kept == 1 {
                "improvement"
            } else {
                "improvements"
            }
            .to_string(),
            tone: "",
        },
        Figure {
            key: "discarded",
            label: "Discarded",
            value: summary.discarded.to_string(),
            note: String::new(),
            tone: "",
        },
        Figure {
            key: "crashed",
            label: "Crashes",
            value: summary.crashed.to_string(),
            note: String::new(),
            tone: if summary.crashed > 0 { "bad" } else { "" },
        },
        Figure {
            key: "keep-rate",
            label: "Keep rate",
            value: summary
                .keep_rate()
                .map_or_else(missing, |rate| format!("{:.1}%", 100.0 * rate)),
            note: format!("{} of {}", summary.kept, summary.experiments),
            tone: "",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(n: u64, parent: Option<u64>, status: Status, metric: f64) -> Row {
        Row {
            n,
            parent,
            built_on: parent,
            fix_of: None,
            commit: format!("c{n:06}"),
            status: Some(status),
            label: None,
            metric: (status != Status::Crash).then_some(metric),
            memory_gb: Some(1.0),
            seconds: None,
            build_seconds: None,
            runs: 1,
            held_out: None,
            description: format!("experiment {n}"),
            extra: Vec::new(),
            reason: None,
            details: None,
        }
    }

    fn report(goal: Goal, rows: Vec<Row>) -> Report {
        Report {
            title: "t".into(),
            tag: None,
            source: "results.tsv".into(),
            metric: "loss".into(),
            goal,
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

    #[test]
    fn summary_counts_experiments_after_the_baseline() {
        let report = report(
            Goal::Minimize,
            vec![
                row(0, None, Status::Keep, 1.0),
                row(1, Some(0), Status::Keep, 0.9),
                row(2, Some(1), Status::Discard, 0.95),
                row(3, Some(1), Status::Crash, 0.0),
                row(4, Some(1), Status::Keep, 0.8),
            ],
        );
        let summary = report.summary();
        assert_eq!(
            (
                summary.experiments,
                summary.kept,
                summary.discarded,
                summary.crashed
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(summary.best, Some((4, 0.8)));
        assert!((summary.improvement_percent.unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(summary.keep_rate(), Some(0.5));
        assert_eq!(summary.per_hour, None);
        assert_eq!(report.kept_path(), [0, 1, 4]);
        assert_eq!(report.delta(report.row(2).unwrap()), Some(0.95 - 0.9));
        assert_eq!(
            report.running_best(),
            [(0, 1.0), (1, 0.9), (2, 0.9), (3, 0.9), (4, 0.8)]
        );
    }

    #[test]
    fn a_knob_search_costs_nothing_and_one_keep_is_one_improvement() {
        let mut report = report(
            Goal::Minimize,
            vec![
                row(0, None, Status::Keep, 1.0),
                row(1, Some(0), Status::Keep, 0.9),
            ],
        );
        let run = RunFacts {
            branch: "b".into(),
            started: 0.0,
            last_event: 0.0,
            active_seconds: 0.0,
            sessions: 1,
            cost_usd: None,
            knob_search: true,
            state: RunState::Abandoned,
            budget: None,
            on_slurm: false,
            in_flight: Vec::new(),
        };
        report.run = Some(run.clone());
        let figure = |report: &Report, key: &str| {
            let figures = report.figures();
            let figure = figures.into_iter().find(|f| f.key == key).unwrap();
            (figure.value, figure.note)
        };
        assert_eq!(
            figure(&report, "cost"),
            ("$0".to_string(), "knob search: no LLM".to_string())
        );
        assert_eq!(
            figure(&report, "kept"),
            ("1".to_string(), "improvement".to_string())
        );
        report.run = Some(RunFacts {
            knob_search: false,
            ..run
        });
        assert_eq!(
            figure(&report, "cost"),
            ("–".to_string(), "not reported by the proposer".to_string())
        );
    }

    #[test]
    fn maximize_makes_the_highest_keep_the_best() {
        let report = report(
            Goal::Maximize,
            vec![
                row(0, None, Status::Keep, 0.5),
                row(1, Some(0), Status::Keep, 0.6),
                row(2, Some(1), Status::Discard, 0.55),
            ],
        );
        let summary = report.summary();
        assert_eq!(summary.best, Some((1, 0.6)));
        assert!((summary.improvement_percent.unwrap() - 20.0).abs() < 1e-9);
    }
}
