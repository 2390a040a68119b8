//! The append-only journal `<store>/<tag>/journal.jsonl`: one JSON event per line, synced before
//! the step it announces takes effect. It is the source of truth: `History` is rebuilt from it on
//! resume, and the results tables can always be rewritten from it.
//!
//! A journal comes into existence whole, with its `run-started` event (written aside, synced,
//! renamed), so that a crash during setup never leaves a journal that can neither resume nor
//! be started again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Goal;
use crate::config::resolve::{DecisionRules, SearchSpec};
use crate::run::decide::{Decision, Measurement, Reference, Status};

/// What kind of expansion an experiment is; the prompt asks for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expansion {
    /// Improve on the parent (the greedy chain's only kind).
    #[default]
    Improve,
    /// A new approach from the baseline, different from the other drafts.
    Draft,
    /// Every node was a dead end: a new approach from the baseline, different from every branch.
    Broaden,
}

impl Expansion {
    pub fn is_improve(&self) -> bool {
        *self == Expansion::Improve
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A new run: its branch, where it started, and what setup pinned. Always the journal's
    /// first line: the journal is created with it.
    RunStarted {
        time: f64,
        tag: String,
        branch: String,
        start_commit: String,
        pipeline: String,
        /// Read-only files and their git blob hashes.
        read_only: BTreeMap<String, String>,
        /// The settings results depend on (the effective budget after `--budget`); a resume
        /// keeps them. Absent in journals of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<RunSettings>,
        /// Untracked files (not ignored) in the work tree when the run started: the user's.
        /// Any other untracked file is removed when an experiment ends.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        untracked: Vec<String>,
    },
    /// The run was started again after a stop or a crash.
    Resumed { time: f64 },
    /// Experiment `n` begins from `base_commit`.
    ExperimentStarted {
        time: f64,
        n: u64,
        /// The experiment this one builds on (`None` for the baseline).
        parent: Option<u64>,
        base_commit: String,
        /// For a fix attempt: the crashed experiment it repairs, and which attempt this is.
        fix_of: Option<u64>,
        #[serde(default)]
        attempt: u32,
        /// What the proposer is asked for: an improvement, a draft, a new direction.
        #[serde(default, skip_serializing_if = "Expansion::is_improve")]
        expansion: Expansion,
    },
    /// The proposer finished; what it changed outside the edit target was undone.
    Proposed {
        time: f64,
        n: u64,
        description: String,
        /// What it changed outside the edit target (undone; the experiment is a crash).
        #[serde(default)]
        violations: Vec<String>,
        /// Proposer-specific facts (e.g. the knob values), for proposers that learn from history.
        #[serde(default)]
        details: serde_json::Value,
        /// What the proposal cost, when the proposer reports it.
        #[serde(default)]
        cost_usd: Option<f64>,
        /// Tokens the proposal used, when the proposer reports them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<Tokens>,
        /// Why the proposal cannot run (an edit that never applied): the experiment is
        /// recorded as a crash with this reason, without running.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rejected: Option<String>,
        /// The edit itself: each editable file's git blob after the proposal (`None`: deleted),
        /// written to the object database before this event. The commit is made from these,
        /// so a restart commits the proposal instead of asking for it again. Absent in journals
        /// of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<BTreeMap<String, Option<String>>>,
        /// What else the proposer did that arun undid or noted without making the experiment
        /// a crash: refs it created or moved, HEAD, ignored files it created (removed) or
        /// changed (left: ignored files are the user's).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        undone: Vec<String>,
        /// How to undo what the proposer did outside the editable files, carried out after
        /// this event (again after a restart). Absent in journals of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<crate::run::scope::Undo>,
        /// The work tree the proposer worked in (the session's numbering: 0 is the
        /// repository's own, `i` the run's `work/<i - 1>`), where the undo is carried out, after
        /// a restart too. Absent in journals of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        space: Option<usize>,
    },
    /// The proposer failed to produce an edit; the experiment number is tried again.
    ProposalFailed {
        time: f64,
        n: u64,
        reason: String,
        /// What the failed attempt cost, when the proposer reports it: paid all the same.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<Tokens>,
    },
    /// The experiment's commit, kept under `refs/arun/<tag>/<n>`.
    Committed {
        time: f64,
        n: u64,
        commit: String,
        lines_added: usize,
        lines_removed: usize,
    },
    /// The build finished successfully after `seconds` (a failed build is a `measured` crash).
    Built { time: f64, n: u64, seconds: f64 },
    /// One run of the experiment ended (or could not start) and this is what it produced.
    /// `repeat` counts runs of the same code: 0 first, then baseline repeats and confirmations.
    Measured {
        time: f64,
        n: u64,
        #[serde(default)]
        repeat: u32,
        measurement: Measurement,
        /// Which worker ran it, when the run has several (`[workers] count`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<u32>,
    },
    /// Keep, discard or crash, before the branch moves.
    Decided {
        time: f64,
        n: u64,
        decision: Decision,
    },
    /// The results row is written and the branch is where the decision puts it.
    Recorded { time: f64, n: u64 },
    /// The held-out check of a new best: its value, or why there is none.
    HeldOut {
        time: f64,
        n: u64,
        /// The held-out metric's name, e.g. `test_bpb`.
        name: String,
        value: Option<f64>,
        failure: Option<String>,
    },
    /// The user stopped the run during experiment `n`.
    Interrupted { time: f64, n: Option<u64> },
    /// The run stopped by itself (a limit was reached, or an error).
    Stopped { time: f64, reason: String },
}

/// What a run's results depend on besides the code, fixed when the run starts: a resume runs
/// with these whatever the pipeline says now, and refuses an override that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The training budget of each experiment, in seconds.
    pub budget_seconds: f64,
    /// When an experiment is stopped, in seconds.
    pub hard_limit_seconds: f64,
    /// The metric's name and which way is better.
    pub metric: String,
    pub goal: crate::config::Goal,
    /// How each experiment's parent is chosen. Absent (greedy) in journals of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::config::resolve::SearchSpec>,
}

impl Event {
    /// The experiment an event belongs to.
    pub fn experiment(&self) -> Option<u64> {
        match self {
            Event::ExperimentStarted { n, .. }
            | Event::Proposed { n, .. }
            | Event::ProposalFailed { n, .. }
            | Event::Committed { n, .. }
            | Event::Built { n, .. }
            | Event::Measured { n, .. }
            | Event::Decided { n, .. }
            | Event::Recorded { n, .. }
            | Event::HeldOut { n, .. } => Some(*n),
            _ => None,
        }
    }

    /// When it happened, in seconds since the Unix epoch.
    pub fn time(&self) -> f64 {
        match self {
            Event::RunStarted { time, .. }
            | Event::Resumed { time }
            | Event::ExperimentStarted { time, .. }
            | Event::Proposed { time, .. }
            | Event::ProposalFailed { time, .. }
            | Event::Committed { time, .. }
            | Event::Built { time, .. }
            | Event::Measured { time, .. }
            | Event::Decided { time, .. }
            | Event::Recorded { time, .. }
            | Event::HeldOut { time, .. }
            | Event::Interrupted { time, .. }
            | Event::Stopped { time, .. } => *time,
        }
    }

    /// A short name for failpoints and messages, e.g. `committed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run-started",
            Event::Resumed { .. } => "resumed",
            Event::ExperimentStarted { .. } => "experiment-started",
            Event::Proposed { .. } => "proposed",
            Event::ProposalFailed { .. } => "proposal-failed",
            Event::Committed { .. } => "committed",
            Event::Built { .. } => "built",
            Event::Measured { .. } => "measured",
            Event::Decided { .. } => "decided",
            Event::Recorded { .. } => "recorded",
            Event::HeldOut { .. } => "held-out",
            Event::Interrupted { .. } => "interrupted",
            Event::Stopped { .. } => "stopped",
        }
    }
}

/// Tokens a proposer used, as the agent or model reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens, cached ones included.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
}

impl Tokens {
    pub fn total(self) -> u64 {
        self.input + self.output
    }
}

impl std::ops::Add for Tokens {
    type Output = Tokens;

    fn add(self, other: Tokens) -> Tokens {
        Tokens {
            input: self.input + other.input,
            output: self.output + other.output,
        }
    }
}

/// Seconds since the Unix epoch, for event times.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The journal file, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates the journal of a new run holding its first event. Refuses when one exists.
    pub fn create(path: &Path, first: &Event) -> io::Result<Journal> {
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("`{}` exists already", path.display()),
            ));
        }
        crate::run::store::write_atomic(path, line(first)?.as_bytes())?;
        failpoint(first);
        Journal::open(path)
    }

    /// Opens an existing journal for appending. A last line torn by a crash mid-write is cut
    /// off first, so the next event starts on a line of its own.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let bytes = std::fs::read(path)?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and syncs it to disk before returning. Returns the event as a
    /// reader of the journal will see it (a NaN becomes `null`, secrets are redacted), which is
    /// what the caller should remember, so that a run and its resume agree.
    pub fn append(&mut self, event: &Event) -> io::Result<Event> {
        let line = line(event)?;
        let stored = serde_json::from_str(&line).map_err(io::Error::other)?;
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        failpoint(event);
        Ok(stored)
    }

    /// Whether the file holds exactly `events`, as this process wrote them: anything else
    /// (a proposer or a trainer that rewrote or deleted it) is tampering.
    pub fn holds(&self, events: &[Event]) -> bool {
        read(&self.path).is_ok_and(|found| found == events)
    }

    /// Writes the whole journal again from `events` (when something else changed the file).
    pub fn rewrite(&mut self, events: &[Event]) -> io::Result<()> {
        let mut text = String::new();
        for event in events {
            text.push_str(&line(event)?);
        }
        crate::run::store::write_atomic(&self.path, text.as_bytes())?;
        *self = Journal::open(&self.path)?;
        Ok(())
    }
}

/// One event as its journal line, newline included, with every secret arun knows redacted.
fn line(event: &Event) -> io::Result<String> {
    let json = serde_json::to_string(event).map_err(io::Error::other)?;
    let mut line = crate::run::secrets::redact(&json).into_owned();
    line.push('\n');
    Ok(line)
}

/// Reads every event of a journal. A last line cut short by a crash mid-write is ignored; any
/// other unreadable line is an error naming its line number.
pub fn read(path: &Path) -> io::Result<Vec<Event>> {
    let file = File::open(path)?;
    let lines: Vec<String> = BufReader::new(file).lines().collect::<io::Result<_>>()?;
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(event) => events.push(event),
            Err(_) if i + 1 == lines.len() => break,
            Err(err) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: unreadable journal line: {err}",
                        path.display(),
                        i + 1
                    ),
                ));
            }
        }
    }
    Ok(events)
}

/// Tests kill arun right after a chosen event with `ARUN_FAILPOINT=<event>:<n>` (e.g.
/// `committed:2`), or after the k-th event this process writes with `ARUN_FAILPOINT=@<k>`, to
/// prove that a restart loses and repeats nothing.
fn failpoint(event: &Event) {
    static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let written = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let Ok(spec) = std::env::var("ARUN_FAILPOINT") else {
        return;
    };
    let hit = match spec.strip_prefix('@') {
        Some(k) => k.parse::<u64>().is_ok_and(|k| k == written),
        None => {
            let (name, n) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
            let n_matches =
                n.is_empty() || event.experiment().map(|e| e.to_string()).as_deref() == Some(n);
            event.name() == name && n_matches
        }
    };
    if hit {
        // SAFETY: raise only sends a signal to this process.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// One experiment as the journal tells it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Experiment {
    pub n: u64,
    pub parent: Option<u64>,
    pub base_commit: String,
    pub fix_of: Option<u64>,
    pub attempt: u32,
    /// What the proposer was asked for (see `Event::ExperimentStarted`).
    pub expansion: Expansion,
    pub started: f64,
    pub description: Option<String>,
    pub violations: Vec<String>,
    pub details: serde_json::Value,
    /// What every proposal for this number cost together, failed ones included.
    pub cost_usd: Option<f64>,
    pub tokens: Option<Tokens>,
    /// Why the proposal was rejected without running (see `Event::Proposed`).
    pub rejected: Option<String>,
    /// The proposed edit as blobs (see `Event::Proposed`); `None` before the proposal, and in
    /// journals of older versions.
    pub files: Option<BTreeMap<String, Option<String>>>,
    /// How to undo what the proposer did besides its edit (see `Event::Proposed`).
    pub undo: Option<crate::run::scope::Undo>,
    /// The work tree the proposer worked in (see `Event::Proposed`).
    pub space: Option<usize>,
    pub commit: Option<String>,
    pub lines: (usize, usize),
    /// How long its last successful build took.
    pub build_seconds: Option<f64>,
    /// Every run of this code, in order.
    pub runs: Vec<Measurement>,
    pub decision: Option<Decision>,
    pub recorded: bool,
    /// The held-out check's value (for a new best), or its failure.
    pub held_out: Option<Result<f64, String>>,
    /// Proposal failures since this number was first started.
    pub failures: Vec<String>,
    /// The worker of its last run, when the run has several.
    pub worker: Option<u32>,
}

impl Experiment {
    /// Takes in an event about this experiment's proposal, commit, build, runs or decision; the
    /// events that start, record or leave it are the history's (see `History::apply`).
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Proposed {
                description,
                violations,
                details,
                cost_usd,
                tokens,
                rejected,
                files,
                undo,
                space,
                ..
            } => {
                self.description = Some(description.clone());
                self.violations = violations.clone();
                self.details = details.clone();
                self.add_cost(*cost_usd, *tokens);
                self.rejected = rejected.clone();
                self.files = files.clone();
                self.undo = undo.clone();
                self.space = *space;
            }
            Event::ProposalFailed {
                reason,
                cost_usd,
                tokens,
                ..
            } => {
                self.failures.push(reason.clone());
                self.add_cost(*cost_usd, *tokens);
            }
            Event::Committed {
                commit,
                lines_added,
                lines_removed,
                ..
            } => {
                self.commit = Some(commit.clone());
                self.lines = (*lines_added, *lines_removed);
            }
            Event::Built { seconds, .. } => self.build_seconds = Some(*seconds),
            Event::Measured {
                repeat,
                measurement,
                worker,
                ..
            } => {
                self.worker = *worker;
                // A repeat journaled again after a restart replaces the one before.
                self.runs.truncate(*repeat as usize);
                self.runs.push(measurement.clone());
            }
            Event::Decided { decision, .. } => self.decision = Some(decision.clone()),
            Event::HeldOut { value, failure, .. } => {
                self.held_out = Some(match (value, failure) {
                    (Some(v), _) => Ok(*v),
                    (None, f) => Err(f.clone().unwrap_or_default()),
                });
            }
            // Named rather than `_`, so that a new event has to be placed in one match or the
            // other.
            Event::RunStarted { .. }
            | Event::ExperimentStarted { .. }
            | Event::Recorded { .. }
            | Event::Resumed { .. }
            | Event::Interrupted { .. }
            | Event::Stopped { .. } => {}
        }
    }

    pub fn status(&self) -> Option<Status> {
        self.decision.as_ref().map(|d| d.status)
    }

    /// Its commit's 7-character id, empty before it is committed.
    pub fn short_commit(&self) -> &str {
        crate::text::short_commit(self.commit.as_deref().unwrap_or(""))
    }

    /// The metric: the mean over its runs.
    pub fn metric(&self) -> Option<f64> {
        crate::run::decide::mean_metric(&self.runs)
    }

    /// Peak memory over its runs, in GiB.
    pub fn memory_gb(&self) -> Option<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.memory_gb)
            .fold(None, |peak, m| Some(peak.map_or(m, |p: f64| p.max(m))))
    }

    /// Adds what one proposal (or failed attempt) cost.
    fn add_cost(&mut self, cost_usd: Option<f64>, tokens: Option<Tokens>) {
        if let Some(cost) = cost_usd {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + cost);
        }
        if let Some(tokens) = tokens {
            self.tokens = Some(self.tokens.unwrap_or_default() + tokens);
        }
    }

    /// Whether a crash can be handed back to the proposer to fix.
    pub fn fixable(&self) -> bool {
        self.runs.last().is_some_and(|r| r.fixable)
    }

    pub fn is_baseline(&self) -> bool {
        self.parent.is_none()
    }

    /// The description shown in results: the proposer's words, or `baseline`.
    pub fn description_text(&self) -> String {
        match &self.description {
            Some(text) => text.clone(),
            None if self.is_baseline() => "baseline".to_string(),
            None => String::new(),
        }
    }
}

/// The run as replayed from its journal.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<Event>,
    pub tag: String,
    pub branch: String,
    pub start_commit: String,
    pub read_only: BTreeMap<String, String>,
    /// The run's settings; `None` for a journal of an older version.
    pub settings: Option<RunSettings>,
    /// Untracked files that were in the work tree when the run started (the user's).
    pub untracked: Vec<String>,
    /// Every experiment started, in the order of their numbers.
    pub experiments: Vec<Experiment>,
    /// Indices into `experiments` in the order their rows were written: with parallel workers,
    /// the order experiments finished.
    record_order: Vec<usize>,
}

impl History {
    pub fn replay(events: Vec<Event>) -> History {
        let mut history = History::default();
        for event in &events {
            history.apply(event);
        }
        history.events = events;
        history
    }

    /// Adds an event that was just appended to the journal.
    pub fn push(&mut self, event: Event) {
        self.apply(&event);
        self.events.push(event);
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                tag,
                branch,
                start_commit,
                read_only,
                settings,
                untracked,
                ..
            } => {
                self.tag = tag.clone();
                self.branch = branch.clone();
                self.start_commit = start_commit.clone();
                self.read_only = read_only.clone();
                self.settings = settings.clone();
                self.untracked = untracked.clone();
            }
            Event::ExperimentStarted {
                time,
                n,
                parent,
                base_commit,
                fix_of,
                attempt,
                expansion,
            } => self.start_experiment(Experiment {
                n: *n,
                parent: *parent,
                base_commit: base_commit.clone(),
                fix_of: *fix_of,
                attempt: *attempt,
                expansion: *expansion,
                started: *time,
                ..Experiment::default()
            }),
            Event::Proposed { n, .. }
            | Event::ProposalFailed { n, .. }
            | Event::Committed { n, .. }
            | Event::Built { n, .. }
            | Event::Measured { n, .. }
            | Event::Decided { n, .. }
            | Event::HeldOut { n, .. } => {
                if let Some(e) = self.experiment_mut(*n) {
                    e.apply(event);
                }
            }
            Event::Recorded { n, .. } => {
                if let Some(i) = self.experiments.iter().rposition(|e| e.n == *n)
                    && !self.experiments[i].recorded
                {
                    self.experiments[i].recorded = true;
                    self.record_order.push(i);
                }
            }
            Event::Resumed { .. } | Event::Interrupted { .. } | Event::Stopped { .. } => {}
        }
    }

    /// Adds an experiment just started, or replaces the entry of a number started again.
    fn start_experiment(&mut self, mut started: Experiment) {
        // A number started again after failed proposals keeps their count and cost.
        let again = self.experiments.iter().position(|e| e.n == started.n);
        if let Some(e) = again.map(|i| &self.experiments[i])
            && !e.recorded
        {
            started.failures = e.failures.clone();
            started.cost_usd = e.cost_usd;
            started.tokens = e.tokens;
        }
        match again {
            Some(i) => {
                self.record_order.retain(|&r| r != i);
                self.experiments[i] = started;
            }
            None => self.experiments.push(started),
        }
    }

    fn experiment_mut(&mut self, n: u64) -> Option<&mut Experiment> {
        self.experiments.iter_mut().rev().find(|e| e.n == n)
    }

    pub fn experiment(&self, n: u64) -> Option<&Experiment> {
        self.experiments.iter().rev().find(|e| e.n == n)
    }

    /// Experiments whose row is written, in the order the rows were written.
    pub fn recorded(&self) -> impl DoubleEndedIterator<Item = &Experiment> + Clone {
        self.record_order.iter().map(|&i| &self.experiments[i])
    }

    /// The experiment in progress: the latest started and not recorded.
    pub fn current(&self) -> Option<&Experiment> {
        self.in_flight().next_back()
    }

    /// Every experiment in progress (started, not recorded), in the order of their numbers.
    pub fn in_flight(&self) -> impl DoubleEndedIterator<Item = &Experiment> {
        self.experiments.iter().filter(|e| !e.recorded)
    }

    /// Kept experiments in order, the baseline first.
    pub fn kept(&self) -> impl Iterator<Item = &Experiment> {
        self.recorded().filter(|e| e.status() == Some(Status::Keep))
    }

    /// The kept experiment the branch points at: the last keep of the greedy chain, or the
    /// best keep of the whole tree.
    pub fn best(&self) -> Option<&Experiment> {
        self.best_with(None)
    }

    /// The best once experiment `n` (decided, maybe not recorded yet) is counted too: where
    /// recording it moves the branch.
    pub fn best_with(&self, n: Option<u64>) -> Option<&Experiment> {
        // In the order of the decisions: the greedy chain's last keep is the latest decided.
        let deciding = n.and_then(|n| self.experiment(n)).filter(|e| !e.recorded);
        let mut kept = self
            .recorded()
            .chain(deciding)
            .filter(|e| e.status() == Some(Status::Keep));
        match self.search() {
            SearchSpec::Greedy => kept.next_back(),
            SearchSpec::Tree { .. } => {
                let goal = self.goal();
                kept.filter_map(|e| e.metric().map(|m| (e, m)))
                    .fold(
                        None,
                        |best: Option<(&Experiment, f64)>, (e, m)| match best {
                            Some((_, b)) if goal.improvement(m, b) <= 0.0 => best,
                            _ => Some((e, m)),
                        },
                    )
                    .map(|(e, _)| e)
            }
        }
    }

    /// How the run chooses parents: from its settings, greedy for journals of older versions.
    pub fn search(&self) -> SearchSpec {
        self.settings
            .as_ref()
            .and_then(|s| s.search)
            .unwrap_or(SearchSpec::Greedy)
    }

    /// Which way the metric is better (minimize for journals that did not say).
    pub fn goal(&self) -> Goal {
        self.settings.as_ref().map(|s| s.goal).unwrap_or_default()
    }

    pub fn baseline(&self) -> Option<&Experiment> {
        self.experiments
            .first()
            .filter(|e| e.is_baseline() && e.recorded)
    }

    /// The commit the run branch points at: the last keep's, or where the run started.
    pub fn branch_tip(&self) -> &str {
        self.best()
            .and_then(|e| e.commit.as_deref())
            .unwrap_or(&self.start_commit)
    }

    /// The number the next experiment gets.
    pub fn next_number(&self) -> u64 {
        self.experiments.last().map_or(0, |e| e.n + 1)
    }

    /// Recorded experiments since the last keep.
    pub fn since_keep(&self) -> u64 {
        self.recorded()
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .take_while(|e| e.status() != Some(Status::Keep))
            .count() as u64
    }

    /// What `experiment` is judged against: the best kept result in the greedy chain, its parent
    /// in a tree (a node is kept when it improves on the node it was made from).
    pub fn reference(&self, experiment: &Experiment, rules: &DecisionRules) -> Reference {
        let (best, against) = match self.search() {
            SearchSpec::Greedy => (self.best(), "the best"),
            SearchSpec::Tree { .. } => (
                experiment.parent.and_then(|p| self.experiment(p)),
                "its parent",
            ),
        };
        Reference {
            best: if experiment.is_baseline() {
                None
            } else {
                best.and_then(Experiment::metric)
            },
            against,
            baseline_memory_gb: self.baseline().and_then(Experiment::memory_gb),
            sigma: rules.noise.sigma.or_else(|| self.sigma()),
        }
    }

    /// The run-to-run noise: pooled standard deviation of every experiment measured more than
    /// once (crashed runs left out).
    pub fn sigma(&self) -> Option<f64> {
        let groups: Vec<Vec<f64>> = self
            .experiments
            .iter()
            .filter(|e| e.runs.iter().all(|r| r.failure.is_none()))
            .map(|e| {
                e.runs
                    .iter()
                    .filter_map(|r| r.metric)
                    .filter(|v| v.is_finite())
                    .collect()
            })
            .collect();
        crate::run::decide::pooled_sigma(groups.iter().map(Vec::as_slice))
    }

    /// Total reported proposal cost in USD.
    pub fn cost_usd(&self) -> f64 {
        self.experiments.iter().filter_map(|e| e.cost_usd).sum()
    }

    /// Total reported proposal tokens.
    pub fn tokens(&self) -> Tokens {
        self.experiments
            .iter()
            .filter_map(|e| e.tokens)
            .fold(Tokens::default(), |sum, t| sum + t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(metric: f64) -> Measurement {
        Measurement {
            failure: None,
            metric: Some(metric),
            values: BTreeMap::new(),
            memory_gb: Some(1.0),
            seconds: 1.0,
            fixable: true,
        }
    }

    fn run_started() -> Event {
        Event::RunStarted {
            time: 0.0,
            tag: "t".into(),
            branch: "autoresearch/t".into(),
            start_commit: "c0".into(),
            pipeline: "p.toml".into(),
            read_only: BTreeMap::new(),
            settings: None,
            untracked: Vec::new(),
        }
    }

    fn experiment_events(
        n: u64,
        parent: Option<u64>,
        commit: &str,
        metric: f64,
        status: Status,
    ) -> Vec<Event> {
        vec![
            Event::ExperimentStarted {
                time: 1.0,
                n,
                parent,
                base_commit: "base".into(),
                fix_of: None,
                attempt: 0,
                expansion: Expansion::Improve,
            },
            Event::Committed {
                time: 1.0,
                n,
                commit: commit.into(),
                lines_added: 1,
                lines_removed: 1,
            },
            Event::Measured {
                time: 1.0,
                n,
                repeat: 0,
                measurement: measured(metric),
                worker: None,
            },
            Event::Decided {
                time: 1.0,
                n,
                decision: Decision {
                    status,
                    reason: String::new(),
                    sigma: None,
                    threshold: None,
                },
            },
            Event::Recorded { time: 1.0, n },
        ]
    }

    #[test]
    fn replay_tracks_best_tip_and_streaks() {
        let mut events = vec![run_started()];
        events.extend(experiment_events(0, None, "c0", 1.0, Status::Keep));
        events.extend(experiment_events(1, Some(0), "c1", 0.9, Status::Keep));
        events.extend(experiment_events(2, Some(1), "c2", 0.95, Status::Discard));
        events.extend(experiment_events(3, Some(1), "c3", 0.97, Status::Discard));
        let history = History::replay(events);
        assert_eq!(history.best().unwrap().n, 1);
        assert_eq!(history.branch_tip(), "c1");
        assert_eq!(history.since_keep(), 2);
        assert_eq!(history.next_number(), 4);
        assert!(history.current().is_none());
        assert_eq!(history.baseline().unwrap().description_text(), "baseline");
    }

    #[test]
    fn rows_follow_the_order_experiments_finished_and_the_branch_the_last_keep_decided() {
        let mut events = vec![run_started()];
        events.extend(experiment_events(0, None, "c0", 1.0, Status::Keep));
        // #1 and #2 in flight together; #2 finishes first, then #1 beats it.
        let one = experiment_events(1, Some(0), "c1", 0.8, Status::Keep);
        let two = experiment_events(2, Some(0), "c2", 0.9, Status::Keep);
        events.push(one[0].clone());
        events.extend(two);
        let history = History::replay(events.clone());
        assert_eq!(
            history.in_flight().map(|e| e.n).collect::<Vec<_>>(),
            [1],
            "#1 is still in flight"
        );
        assert_eq!(history.branch_tip(), "c2");
        events.extend(one[1..].iter().cloned());
        let history = History::replay(events);
        let rows: Vec<u64> = history.recorded().map(|e| e.n).collect();
        assert_eq!(rows, [0, 2, 1]);
        assert_eq!(history.best().unwrap().n, 1);
        assert_eq!(history.branch_tip(), "c1");
        assert_eq!(history.next_number(), 3);
    }

    #[test]
    fn a_restarted_number_replaces_the_unfinished_one() {
        let mut events = experiment_events(0, None, "c0", 1.0, Status::Keep);
        events.push(Event::ExperimentStarted {
            time: 2.0,
            n: 1,
            parent: Some(0),
            base_commit: "c0".into(),
            fix_of: None,
            attempt: 0,
            expansion: Expansion::Improve,
        });
        events.push(Event::ProposalFailed {
            time: 2.0,
            n: 1,
            reason: "agent exited with 1".into(),
            cost_usd: Some(0.25),
            tokens: Some(Tokens {
                input: 10,
                output: 1,
            }),
        });
        events.push(Event::ExperimentStarted {
            time: 3.0,
            n: 1,
            parent: Some(0),
            base_commit: "c0".into(),
            fix_of: None,
            attempt: 0,
            expansion: Expansion::Improve,
        });
        events.push(proposed(1, Some(0.5)));
        let history = History::replay(events);
        assert_eq!(history.experiments.len(), 2);
        assert_eq!(history.current().unwrap().failures.len(), 1);
        // The failed attempt was paid for too.
        assert_eq!(history.current().unwrap().cost_usd, Some(0.75));
        assert_eq!(history.tokens().total(), 11);
    }

    fn proposed(n: u64, cost_usd: Option<f64>) -> Event {
        Event::Proposed {
            time: 3.0,
            n,
            description: "set LR".into(),
            violations: Vec::new(),
            details: serde_json::Value::Null,
            cost_usd,
            tokens: None,
            rejected: None,
            files: None,
            undone: Vec::new(),
            undo: None,
            space: None,
        }
    }

    #[test]
    fn a_journal_is_created_whole_with_its_first_event_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/journal.jsonl");
        let mut journal = Journal::create(&path, &Event::Resumed { time: 1.0 }).unwrap();
        journal.append(&Event::Resumed { time: 2.0 }).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        let err = Journal::create(&path, &Event::Resumed { time: 3.0 })
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(read(&path).unwrap().len(), 2);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["journal.jsonl"], "no temporary file is left");
    }

    #[test]
    fn a_journal_changed_behind_its_writer_is_noticed_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let events = vec![Event::Resumed { time: 1.0 }, proposed(1, Some(0.5))];
        let mut journal = Journal::create(&path, &events[0]).unwrap();
        journal.append(&events[1]).unwrap();
        assert!(journal.holds(&events));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("0.5", "0.0")).unwrap();
        assert!(!journal.holds(&events));
        journal.rewrite(&events).unwrap();
        assert!(journal.holds(&events));
        std::fs::remove_file(&path).unwrap();
        assert!(!journal.holds(&events));
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_torn_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::create(&path, &Event::Resumed { time: 1.0 }).unwrap();
        journal.append(&Event::Resumed { time: 2.0 }).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"event\":\"resu");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        let mut reopened = Journal::open(&path).unwrap();
        reopened.append(&Event::Resumed { time: 3.0 }).unwrap();
        assert_eq!(read(&path).unwrap().len(), 3);
        std::fs::write(&path, format!("{{oops\n{text}")).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("journal.jsonl:1: unreadable journal line"),
            "{err}"
        );
    }
}
