//! The experiment loop as one state machine:
//!
//! ```text
//! Begin -> Propose -> Commit -> Build -> Run -> Decide -> Record -> Begin ... -> Stop
//! ```
//!
//! Each step journals what it is about to do (or what it learned) before it takes effect, and
//! every step is safe to redo, so a run killed at any moment continues from its journal:
//! `resume_state` maps the last journaled event of the unfinished experiment to the step that
//! follows it.

mod context;
mod measure;
mod setup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use git2::Oid;

use crate::config::Pipeline;
use crate::decide::{self, Candidate, Measurement, Reference, Status, Verdict};
use crate::error::Error;
use crate::exec::{self, Environment, Spawn};
use crate::git::{self, Git, Head};
use crate::gpu::GpuMonitor;
use crate::journal::{self, Event, Experiment, History, Journal};
use crate::progress::Progress;
use crate::propose::{self, ProposeError, Proposer, Request, Task};
use crate::results;
use crate::search::Strategy;
use measure::{Measure, ProgressWatch, log_file_name, measure};
pub(crate) use setup::latest_run;
use setup::{begin_run, choose_tag, lock_run, open_or_create_repo, run_preflight};

/// Limits and choices given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run tag; default from the pipeline's pattern and today's date.
    pub tag: Option<String>,
    /// Continue an earlier run (the latest one when no tag is given).
    pub resume: bool,
    pub max_experiments: Option<u32>,
    pub max_time: Option<Duration>,
}

/// How a run ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A limit was reached (`max-experiments`, `max-time`, or the proposer has nothing left).
    Finished(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The steps of the loop; `n` is the experiment number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Begin,
    Propose { n: u64 },
    Commit { n: u64 },
    Build { n: u64 },
    Run { n: u64 },
    Decide { n: u64 },
    Record { n: u64 },
    HeldOut { n: u64 },
    Stop(Stop),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Limit(String),
    Interrupted,
    Failed(String),
}

pub struct Session {
    /// Held while the run is in progress: a second arun on the same run is refused.
    _lock: std::fs::File,
    pipeline: Pipeline,
    options: RunOptions,
    git: Git,
    journal: Journal,
    history: History,
    proposer: Box<dyn Proposer>,
    strategy: Strategy,
    /// `.arun/<tag>` in the target repository.
    dir: PathBuf,
    results: PathBuf,
    started: Instant,
    progress: Progress,
    gpu: Option<GpuMonitor>,
    /// Where the work tree is known to be clean, to skip resets that would change nothing
    /// (each walks the whole tree). `None` after anything ran in it.
    clean_at: Option<(Head, Oid)>,
}

/// Runs the pipeline until a limit, an interruption or an error; prints the summary.
pub fn run(pipeline: Pipeline, options: RunOptions) -> Result<Ending, Error> {
    exec::interrupt::install()
        .map_err(|err| Error::io("cannot install the Ctrl-C handler", err))?;
    let mut session = Session::start(pipeline, options)?;
    let stop = session.drive()?;
    session.finish(stop)
}

impl Session {
    /// Setup: creates the repository if the pipeline says how, then starts a new run or resumes
    /// the one found in the journal.
    fn start(pipeline: Pipeline, options: RunOptions) -> Result<Session, Error> {
        let progress = Progress::new();
        let git = open_or_create_repo(&pipeline, &progress)?;
        let tag = choose_tag(&pipeline, &options, git.workdir())?;
        let dir = git.workdir().join(".arun").join(&tag);
        let journal_path = dir.join("journal.jsonl");
        let results = git.workdir().join(&pipeline.limits.results);
        let resuming = journal_path.exists();
        if options.resume && !resuming {
            return Err(Error::Setup(format!(
                "there is no run `{tag}` to resume (no `{}`)",
                journal_path.display()
            )));
        }
        let lock = lock_run(&dir, &tag)?;
        let group_file = dir.join("running-group");
        let stopped =
            exec::orphans::stop_leftovers(&group_file, git.workdir(), pipeline.experiment.grace);
        if stopped > 0 {
            progress.note(&format!(
                "arun: stopped {stopped} process(es) left running by the previous arun"
            ));
        }
        exec::orphans::record_groups_in(group_file);

        run_preflight(&pipeline, git.workdir(), &progress)?;
        let proposer = propose::build(&pipeline).map_err(Error::Setup)?;
        let mut journal = Journal::open(&journal_path)
            .map_err(|err| Error::io(format!("cannot open `{}`", journal_path.display()), err))?;
        let history = if resuming {
            let events = journal::read(&journal_path).map_err(|err| {
                Error::io(format!("cannot read `{}`", journal_path.display()), err)
            })?;
            let mut history = History::replay(events);
            if history.branch.is_empty() {
                return Err(Error::Setup(format!(
                    "`{}` has no run-started event; remove the directory `{}` to start over",
                    journal_path.display(),
                    dir.display()
                )));
            }
            if git.branch_tip(&history.branch)?.is_none() {
                return Err(Error::Setup(format!(
                    "run `{tag}` cannot resume: its branch `{}` no longer exists",
                    history.branch
                )));
            }
            let event = Event::Resumed {
                time: journal::now(),
            };
            journal
                .append(&event)
                .map_err(|err| Error::io("cannot write the journal", err))?;
            history.push(event);
            results::rewrite(&results, pipeline.metric.name(), &history)
                .map_err(|err| Error::io(format!("cannot write `{}`", results.display()), err))?;
            let at = match history.current() {
                Some(e) => format!("at experiment {}", e.n),
                None => format!("after {} experiments", history.recorded().count()),
            };
            progress.note(&format!("arun: resuming run `{tag}` {at}"));
            history
        } else {
            let history = begin_run(&pipeline, &git, &tag, &results, &dir, &mut journal)?;
            progress.note(&format!(
                "arun: run `{tag}` on branch `{}` in {}",
                history.branch,
                git.workdir().display()
            ));
            history
        };
        git.exclude(&[
            "/.arun/".to_string(),
            format!("/{}", pipeline.limits.results),
        ])?;

        Ok(Session {
            _lock: lock,
            options,
            git,
            journal,
            history,
            proposer,
            strategy: Strategy::default(),
            dir,
            results,
            started: Instant::now(),
            progress,
            gpu: GpuMonitor::connect(),
            clean_at: None,
            pipeline,
        })
    }

    /// Steps until a stop.
    fn drive(&mut self) -> Result<Stop, Error> {
        let mut state = State::Begin;
        loop {
            state = match state {
                State::Stop(stop) => return Ok(stop),
                state => self.step(state)?,
            };
        }
    }

    fn step(&mut self, state: State) -> Result<State, Error> {
        match state {
            State::Begin => self.begin(),
            State::Propose { n } => self.propose(n),
            State::Commit { n } => self.commit(n),
            State::Build { n } => self.build(n),
            State::Run { n } => self.run_experiment(n),
            State::Decide { n } => self.decide(n),
            State::Record { n } => self.record(n),
            State::HeldOut { n } => self.held_out(n),
            State::Stop(stop) => Ok(State::Stop(stop)),
        }
    }

    /// Picks up an unfinished experiment, or checks the limits and starts the next one: the
    /// baseline, a fix attempt for a crash, or a new proposal on top of the best.
    fn begin(&mut self) -> Result<State, Error> {
        if let Some(current) = self.history.current() {
            return Ok(resume_state(current));
        }
        if let Some(last) = self.history.recorded().last()
            && last.status() == Some(Status::Keep)
            && last.held_out.is_none()
            && self.pipeline.decision.held_out.is_some()
        {
            return Ok(State::HeldOut { n: last.n });
        }
        if exec::interrupt::requested() {
            return Ok(State::Stop(Stop::Interrupted));
        }
        let done = self.history.recorded().count() as u64;
        let max_experiments = self
            .options
            .max_experiments
            .or(self.pipeline.limits.max_experiments);
        if let Some(max) = max_experiments
            && done >= u64::from(max)
        {
            return Ok(State::Stop(Stop::Limit(format!(
                "reached the limit of {max} experiments"
            ))));
        }
        let max_time = self.options.max_time.or(self.pipeline.limits.max_time);
        if let Some(max) = max_time
            && self.started.elapsed() >= max
        {
            return Ok(State::Stop(Stop::Limit(format!(
                "reached the time limit of {}",
                crate::config::HumanDuration(max)
            ))));
        }

        let cost = self.history.cost_usd();
        if let Some(max) = self.pipeline.limits.max_cost_usd
            && cost >= max
        {
            return Ok(State::Stop(Stop::Limit(format!(
                "reached the cost limit of ${max:.2} (${cost:.2} spent)"
            ))));
        }
        let tokens = self.history.tokens().total();
        if let Some(max) = self.pipeline.limits.max_tokens
            && tokens >= max
        {
            return Ok(State::Stop(Stop::Limit(format!(
                "reached the limit of {max} tokens ({tokens} used)"
            ))));
        }

        let n = self.history.next_number();
        let event = match self.history.recorded().last() {
            None => Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: None,
                base_commit: self.history.start_commit.clone(),
                fix_of: None,
                attempt: 0,
            },
            Some(last) if self.wants_fix(last) => Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: last.parent,
                base_commit: last.commit.clone().unwrap_or_default(),
                fix_of: Some(last.fix_of.unwrap_or(last.n)),
                attempt: last.attempt + 1,
            },
            Some(_) => Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: self.strategy.parent(&self.history),
                base_commit: self.history.branch_tip().to_string(),
                fix_of: None,
                attempt: 0,
            },
        };
        self.record_event(event)?;
        Ok(State::Propose { n })
    }

    /// Whether a crashed experiment gets another try from the proposer.
    fn wants_fix(&self, last: &Experiment) -> bool {
        last.status() == Some(Status::Crash)
            && !last.is_baseline()
            && last.fixable()
            && last.attempt < self.pipeline.decision.fix_attempts
    }

    /// Where HEAD stands while the proposer works on `experiment`: on the run branch for a new
    /// proposal, detached at the crashed commit for a fix attempt.
    fn proposer_head(&self, experiment: &Experiment) -> Result<(Head, Oid), Error> {
        let base = oid(&experiment.base_commit)?;
        let head = if experiment.fix_of.is_some() {
            Head::Detached(base)
        } else {
            Head::Branch(self.history.branch.clone())
        };
        Ok((head, base))
    }

    fn propose(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        if experiment.is_baseline() {
            return Ok(State::Commit { n });
        }
        let (head, base) = self.proposer_head(&experiment)?;
        self.place(head.clone(), base)?;
        let untracked_before = self.git.untracked()?;
        let task = if experiment.fix_of.is_some() {
            Task::FixCrash
        } else {
            Task::Propose
        };
        let context = self.prompt_context(&experiment)?;
        let label = match task {
            Task::Propose => format!("{} #{n} proposing", self.history.tag),
            Task::FixCrash => format!(
                "{} #{n} fixing the crash (attempt {} of {})",
                self.history.tag, experiment.attempt, self.pipeline.decision.fix_attempts
            ),
        };
        self.progress.phase(label, None);
        let request = Request {
            n,
            task,
            pipeline: &self.pipeline,
            history: &self.history,
            context: &context,
            repo: self.git.workdir(),
            prompt_file: self.dir.join("prompts").join(format!("{n}.md")),
            transcript: self.dir.join("agents").join(format!("{n}.log")),
            run_dir: &self.dir,
        };
        self.clean_at = None;
        let mut watch = ProgressWatch(&mut self.progress);
        let outcome = self.proposer.propose(&request, &mut watch);
        self.repair_after_proposer(&head, base)?;

        let proposal = match outcome {
            Ok(proposal) => proposal,
            Err(ProposeError::Interrupted) => return Ok(State::Stop(Stop::Interrupted)),
            Err(ProposeError::Exhausted(reason)) => return Ok(State::Stop(Stop::Limit(reason))),
            Err(ProposeError::Failed(reason)) => return self.proposal_failed(n, reason),
            Err(ProposeError::Rejected {
                description,
                reason,
                cost_usd,
                tokens,
            }) => {
                // Nothing of the edit may stay: the experiment is recorded as a crash, unrun.
                self.git.reset_hard(&head, base)?;
                self.progress.note(&format!("arun: #{n}: {reason}"));
                self.record_event(Event::Proposed {
                    time: journal::now(),
                    n,
                    description,
                    violations: Vec::new(),
                    details: serde_json::Value::Null,
                    cost_usd,
                    tokens,
                    rejected: Some(reason),
                })?;
                return Ok(State::Commit { n });
            }
        };

        let editable = &self.pipeline.target.editable;
        let changes: Vec<git::Change> = self
            .git
            .changes_since(base)?
            .into_iter()
            .filter(|c| !(c.added && untracked_before.contains(&c.path)))
            .collect();
        let (in_scope, outside): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| editable.contains(&c.path));
        if !outside.is_empty() {
            self.git.restore(base, &outside)?;
        }
        if in_scope.is_empty() && outside.is_empty() {
            return self.proposal_failed(n, "the proposer changed nothing".to_string());
        }
        let description = proposal.description.unwrap_or_else(|| {
            let paths: Vec<&str> = in_scope.iter().map(|c| c.path.as_str()).collect();
            format!("edit {}", paths.join(", "))
        });
        self.record_event(Event::Proposed {
            time: journal::now(),
            n,
            description,
            violations: outside.into_iter().map(|c| c.path).collect(),
            details: proposal.details,
            cost_usd: proposal.cost_usd,
            tokens: proposal.tokens,
            rejected: None,
        })?;
        Ok(State::Commit { n })
    }

    /// Undoes what a proposer must not do to git (commits, checkouts, branch moves) while keeping
    /// its files, and brings back arun's own files if it deleted them.
    fn repair_after_proposer(&mut self, head: &Head, base: Oid) -> Result<(), Error> {
        let branch = &self.history.branch;
        let tip = oid(self.history.branch_tip())?;
        if self.git.branch_tip(branch)? != Some(tip) {
            self.git
                .set_branch(branch, tip, "arun: undo a proposer's branch change")?;
        }
        self.git.reset_keeping_files(head, base)?;
        if !self.journal.path().exists() {
            self.progress
                .note("arun: the proposer deleted the run's journal; writing it again from memory");
            self.journal
                .rewrite(&self.history.events)
                .map_err(|err| Error::io("cannot rewrite the journal", err))?;
        }
        if !self.results.exists() {
            results::rewrite(&self.results, self.pipeline.metric.name(), &self.history)
                .map_err(|err| Error::io("cannot rewrite results", err))?;
        }
        Ok(())
    }

    fn proposal_failed(&mut self, n: u64, reason: String) -> Result<State, Error> {
        self.progress.note(&format!("arun: #{n}: {reason}"));
        self.record_event(Event::ProposalFailed {
            time: journal::now(),
            n,
            reason: reason.clone(),
        })?;
        let failures = self.experiment(n)?.failures.len() as u32;
        let max = self.pipeline.proposer.max_failures;
        if failures >= max {
            return Ok(State::Stop(Stop::Failed(format!(
                "the proposer failed {failures} times in a row; the last time: {reason}"
            ))));
        }
        let wait = self.pipeline.proposer.retry_wait * 2u32.saturating_pow(failures - 1);
        self.progress.note(&format!(
            "arun: trying again in {} ({failures} of {max} failures)",
            crate::progress::clock(wait)
        ));
        if sleep_unless_interrupted(wait) {
            return Ok(State::Stop(Stop::Interrupted));
        }
        Ok(State::Propose { n })
    }

    fn commit(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        let (commit, lines) = if experiment.is_baseline() {
            (oid(&experiment.base_commit)?, (0, 0))
        } else {
            let base = oid(&experiment.base_commit)?;
            let message = format!(
                "{}: {}",
                self.history.tag,
                results::one_line(&experiment.description_text())
            );
            let commit = self
                .git
                .commit_paths(base, &self.pipeline.target.editable, &message)?;
            self.clean_at = Some((Head::Detached(commit), commit));
            let parent_commit = match experiment.parent.and_then(|p| self.history.experiment(p)) {
                Some(parent) => oid(parent.commit.as_deref().unwrap_or(&experiment.base_commit))?,
                None => base,
            };
            (commit, self.git.diff_stat(parent_commit, commit)?)
        };
        self.git.set_ref(
            &format!("refs/arun/{}/{n}", self.history.tag),
            commit,
            "arun: experiment",
        )?;
        self.record_event(Event::Committed {
            time: journal::now(),
            n,
            commit: commit.to_string(),
            lines_added: lines.0,
            lines_removed: lines.1,
        })?;
        Ok(State::Build { n })
    }

    /// Checks the tree it is about to run, then builds (outside the budget).
    fn build(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        if let Some(reason) = &experiment.rejected {
            return self.measured(n, 0, failure(reason.clone(), false));
        }
        if !experiment.violations.is_empty() {
            return self.measured(
                n,
                0,
                failure(
                    format!(
                        "changed files outside the edit target: {} (reverted)",
                        experiment.violations.join(", ")
                    ),
                    false,
                ),
            );
        }
        let commit = oid(experiment.commit.as_deref().unwrap_or_default())?;
        self.place(self.experiment_head(&experiment, commit), commit)?;
        for (path, pinned) in &self.history.read_only {
            let now = git::hash_file(&self.git.workdir().join(path));
            if now.as_deref() != Some(pinned.as_str()) {
                return Ok(State::Stop(Stop::Failed(format!(
                    "read-only file `{path}` changed since the run started and arun cannot \
                     restore it; restore it and resume, or start a new run"
                ))));
            }
        }
        let Some(command) = self.pipeline.experiment.build.clone() else {
            return Ok(State::Run { n });
        };
        self.clean_at = None;
        self.progress
            .phase(format!("{} #{n} building", self.history.tag), None);
        let log = self.log_path(n, "build.log");
        let env = self.experiment_env(n);
        let mut watch = ProgressWatch(&mut self.progress);
        let finished = exec::run(
            &Spawn {
                command: &command,
                dir: self.git.workdir(),
                env: &env,
                stdin: None,
                log: &log,
                limit: self.pipeline.experiment.build_timeout,
                grace: self.pipeline.experiment.grace,
            },
            &mut watch,
        )
        .map_err(|err| Error::io(format!("cannot run the build `{command}`"), err))?;
        match finished.ending {
            exec::Ending::Interrupted => Ok(State::Stop(Stop::Interrupted)),
            ending if ending.success() => Ok(State::Run { n }),
            ending => self.measured(
                n,
                0,
                failure(
                    format!(
                        "build failed ({})",
                        ending.describe(self.pipeline.experiment.build_timeout)
                    ),
                    true,
                ),
            ),
        }
    }

    /// Runs the experiment once more under its hard limit, reading the metric as the output
    /// streams. Repeats of the same code (baseline runs, confirmations) get their own seed.
    fn run_experiment(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        let repeat = experiment.runs.len() as u32;
        let commit = oid(experiment.commit.as_deref().unwrap_or_default())?;
        self.place(self.experiment_head(&experiment, commit), commit)?;
        let mut env = self.experiment_env(n);
        if let Some(name) = &self.pipeline.decision.noise.seed_env {
            env.set(name.clone(), repeat.to_string());
        }
        let label = match repeat {
            0 => format!("{} #{n} running", self.history.tag),
            r => format!("{} #{n} running again ({})", self.history.tag, r + 1),
        };
        let spec = &self.pipeline.experiment;
        self.clean_at = None;
        let log = self.run_log(n, repeat);
        let measured = measure(
            Measure {
                command: &spec.run,
                dir: self.git.workdir(),
                env: &env,
                log: &log,
                limit: spec.hard_limit,
                grace: spec.grace,
                budget: spec.budget,
                metric: &self.pipeline.metric,
                log_name: &format!(
                    ".arun/{}/logs/{}",
                    self.history.tag,
                    log_file_name(n, repeat)
                ),
            },
            label,
            &mut self.progress,
            self.gpu.as_ref(),
        )
        .map_err(|err| Error::io(format!("cannot run `{}`", spec.run), err))?;
        match measured {
            Some(measurement) => self.measured(n, repeat, measurement),
            None => Ok(State::Stop(Stop::Interrupted)),
        }
    }

    fn measured(&mut self, n: u64, repeat: u32, measurement: Measurement) -> Result<State, Error> {
        self.record_event(Event::Measured {
            time: journal::now(),
            n,
            repeat,
            measurement,
        })?;
        Ok(State::Decide { n })
    }

    /// Judges the runs so far: a decision, or one more run of the same code.
    fn decide(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?;
        let rules = &self.pipeline.decision;
        let reference = Reference {
            best: self.history.best().and_then(Experiment::metric),
            baseline_memory_gb: self.history.baseline().and_then(Experiment::memory_gb),
            sigma: rules.noise.sigma.or_else(|| self.history.sigma()),
        };
        let verdict = decide::judge(
            Candidate {
                runs: &experiment.runs,
                lines: experiment.lines,
            },
            reference,
            rules,
            self.pipeline.metric.goal,
        );
        let decision = match verdict {
            Verdict::RunAgain(why) => {
                self.progress.note(&format!("arun: #{n}: {why}"));
                return Ok(State::Run { n });
            }
            Verdict::Decided(decision) => decision,
        };
        if experiment.is_baseline()
            && decision.status == Status::Keep
            && let Some(sigma) = reference.sigma
        {
            let runs = experiment.runs.len();
            self.progress.note(&format!(
                "arun: noise σ = {sigma:.6} from {runs} baseline runs; a keep must improve by \
                 more than {:.6}",
                (rules.noise.sigmas * sigma).max(rules.min_improvement)
            ));
        }
        self.record_event(Event::Decided {
            time: journal::now(),
            n,
            decision,
        })?;
        Ok(State::Record { n })
    }

    /// Runs the held-out check on the new best `n`, whose code is on the branch.
    fn held_out(&mut self, n: u64) -> Result<State, Error> {
        let Some(check) = self.pipeline.decision.held_out.clone() else {
            return Ok(State::Begin);
        };
        let tip = oid(self.history.branch_tip())?;
        self.place(Head::Branch(self.history.branch.clone()), tip)?;
        let env = self.experiment_env(n);
        let spec = crate::metric::MetricSpec {
            primary: check.capture.clone(),
            goal: self.pipeline.metric.goal,
            extra: Vec::new(),
            memory: None,
        };
        let log = self.log_path(n, "held-out.log");
        self.clean_at = None;
        let limit = check.timeout.unwrap_or(self.pipeline.experiment.hard_limit);
        let measured = measure(
            Measure {
                command: &check.run,
                dir: self.git.workdir(),
                env: &env,
                log: &log,
                limit,
                grace: self.pipeline.experiment.grace,
                budget: limit,
                metric: &spec,
                log_name: &format!(".arun/{}/logs/{n}.held-out.log", self.history.tag),
            },
            format!("{} #{n} held-out check", self.history.tag),
            &mut self.progress,
            None,
        )
        .map_err(|err| Error::io(format!("cannot run `{}`", check.run), err))?;
        let Some(measurement) = measured else {
            return Ok(State::Stop(Stop::Interrupted));
        };
        let (value, failure) = match (measurement.failure, measurement.metric) {
            (None, Some(value)) if value.is_finite() => (Some(value), None),
            (None, Some(value)) => (None, Some(format!("held-out metric is {value}"))),
            (Some(failure), _) => (None, Some(failure)),
            (None, None) => (None, Some("no held-out metric in the output".to_string())),
        };
        match (&value, &failure) {
            (Some(v), _) => self.progress.note(&format!(
                "arun: #{n}: held-out {} = {v:.6}",
                check.capture.name
            )),
            (_, Some(f)) => self
                .progress
                .note(&format!("arun: #{n}: held-out check failed: {f}")),
            _ => {}
        }
        self.record_event(Event::HeldOut {
            time: journal::now(),
            n,
            name: check.capture.name.clone(),
            value,
            failure,
        })?;
        Ok(State::Begin)
    }

    /// Moves the branch as decided, writes the results row, prints the `[EXP]` line.
    fn record(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        let branch = Head::Branch(self.history.branch.clone());
        let status = experiment.status().unwrap_or(Status::Crash);
        let tip = match status {
            Status::Keep => oid(experiment.commit.as_deref().unwrap_or_default())?,
            Status::Discard | Status::Crash => oid(self.history.branch_tip())?,
        };
        self.git.reset_hard(&branch, tip)?;
        self.clean_at = Some((branch, tip));
        results::append(&self.results, self.pipeline.metric.name(), &experiment)
            .map_err(|err| Error::io(format!("cannot write `{}`", self.results.display()), err))?;
        self.learn(&experiment, status);
        if status == Status::Crash
            && let Some(decision) = &experiment.decision
        {
            self.progress
                .note(&format!("arun: #{n} crashed: {}", decision.reason));
        }
        self.record_event(Event::Recorded {
            time: journal::now(),
            n,
        })?;
        self.progress.data(&exp_line(
            &self.history.tag,
            &experiment,
            self.pipeline.metric.name(),
        ));
        if experiment.is_baseline() && status == Status::Crash {
            let reason = experiment.decision.map(|d| d.reason).unwrap_or_default();
            return Ok(State::Stop(Stop::Failed(format!(
                "the baseline crashed ({reason}); fix the target and start a new run. The end of \
                 its output:\n{}",
                self.log_tail(n)
            ))));
        }
        Ok(State::Begin)
    }

    /// Adds what a keep or a crash taught to the target's learnings file. Losing a line is not
    /// worth stopping the run for, so a write error is only reported.
    fn learn(&self, experiment: &Experiment, status: Status) {
        if experiment.is_baseline() || status == Status::Discard {
            return;
        }
        let metric = self.pipeline.metric.name();
        let description = results::one_line(&experiment.description_text());
        let text = match status {
            Status::Keep => {
                let value = experiment.metric().unwrap_or(0.0);
                let before = self.history.best().and_then(Experiment::metric);
                let delta = before
                    .map(|b| format!(", {:+.6} against the best before", value - b))
                    .unwrap_or_default();
                format!("{description} ({metric} {value:.6}{delta})")
            }
            _ => {
                let reason = experiment
                    .decision
                    .as_ref()
                    .map(|d| d.reason.clone())
                    .unwrap_or_default();
                format!("{description} (crashed: {reason})")
            }
        };
        // The commit tells apart a run that reuses the tag of an earlier, deleted one.
        let key = format!(
            "{} #{} {status} {}",
            self.history.tag,
            experiment.n,
            short_commit(experiment)
        );
        let file = crate::learnings::path(self.git.workdir());
        if let Err(err) = crate::learnings::append(&file, &key, &text) {
            self.progress
                .note(&format!("arun: cannot write `{}`: {err}", file.display()));
        }
    }

    /// Journals the stop, leaves the branch on the last keep, prints the summary.
    fn finish(&mut self, stop: Stop) -> Result<Ending, Error> {
        self.progress.clear();
        let event = match &stop {
            Stop::Interrupted => Event::Interrupted {
                time: journal::now(),
                n: self.history.current().map(|e| e.n),
            },
            Stop::Limit(reason) | Stop::Failed(reason) => Event::Stopped {
                time: journal::now(),
                reason: reason.clone(),
            },
        };
        self.record_event(event)?;
        let tip = oid(self.history.branch_tip())?;
        self.git
            .reset_hard(&Head::Branch(self.history.branch.clone()), tip)?;

        let why = match &stop {
            Stop::Interrupted => "interrupted".to_string(),
            Stop::Limit(reason) => reason.clone(),
            Stop::Failed(_) => "stopped by an error".to_string(),
        };
        let ideas = if matches!(stop, Stop::Failed(_)) {
            Vec::new()
        } else {
            self.next_ideas()
        };
        let text = crate::summary::render(
            &self.history,
            &self.pipeline,
            &why,
            self.started.elapsed(),
            &ideas,
        );
        self.progress.data(&text);
        match stop {
            Stop::Interrupted => Ok(Ending::Interrupted),
            Stop::Limit(reason) => Ok(Ending::Finished(reason)),
            Stop::Failed(reason) => Err(Error::RunFailed(reason)),
        }
    }

    fn next_ideas(&mut self) -> Vec<String> {
        let Some(best) = self.history.best().cloned() else {
            return Vec::new();
        };
        let Ok(context) = self.prompt_context(&best) else {
            return Vec::new();
        };
        let request = Request {
            n: self.history.next_number(),
            task: Task::Propose,
            pipeline: &self.pipeline,
            history: &self.history,
            context: &context,
            repo: self.git.workdir(),
            prompt_file: self.dir.join("prompts").join("summary.md"),
            transcript: self.dir.join("agents").join("summary.log"),
            run_dir: &self.dir,
        };
        let ideas = self.proposer.next_ideas(&request);
        // Whatever the proposer touched while thinking is not part of the run.
        if let Ok(tip) = oid(self.history.branch_tip()) {
            let _ = self
                .git
                .reset_hard(&Head::Branch(self.history.branch.clone()), tip);
        }
        ideas
    }

    /// Puts HEAD and the work tree at `commit`, unless they are known to be there already.
    fn place(&mut self, head: Head, commit: Oid) -> Result<(), Error> {
        if self.clean_at.as_ref() != Some(&(head.clone(), commit)) {
            self.git.reset_hard(&head, commit)?;
        }
        self.clean_at = Some((head, commit));
        Ok(())
    }

    fn record_event(&mut self, event: Event) -> Result<(), Error> {
        self.journal.append(&event).map_err(|err| {
            Error::io(
                format!("cannot write `{}`", self.journal.path().display()),
                err,
            )
        })?;
        self.history.push(event);
        Ok(())
    }

    fn experiment(&self, n: u64) -> Result<&Experiment, Error> {
        self.history
            .experiment(n)
            .ok_or_else(|| Error::RunFailed(format!("the journal has no experiment {n}")))
    }

    /// Where HEAD is while an experiment builds and runs: the baseline on the branch, every
    /// other experiment detached at its commit (the branch only ever points at keeps).
    fn experiment_head(&self, experiment: &Experiment, commit: Oid) -> Head {
        if experiment.is_baseline() {
            Head::Branch(self.history.branch.clone())
        } else {
            Head::Detached(commit)
        }
    }

    fn log_path(&self, n: u64, extension: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{n}.{extension}"))
    }

    fn run_log(&self, n: u64, repeat: u32) -> PathBuf {
        self.dir.join("logs").join(log_file_name(n, repeat))
    }

    /// The cleaned end of the output of the experiment's last run (or of its build, when it
    /// never ran).
    fn log_tail(&self, n: u64) -> String {
        let runs = self
            .history
            .experiment(n)
            .map_or(0, |e| e.runs.len() as u32);
        let run_log = self.run_log(n, runs.saturating_sub(1));
        let log = if run_log.exists() {
            run_log
        } else {
            self.log_path(n, "build.log")
        };
        exec::tail::clean_tail(&log, context::LOG_TAIL_BYTES, context::LOG_TAIL_LINES)
            .unwrap_or_default()
    }

    /// What builds and runs see: arun's environment without secrets, the pipeline's variables,
    /// and the budget.
    fn experiment_env(&self, n: u64) -> Environment {
        let spec = &self.pipeline.experiment;
        let mut env = Environment::inherit_scrubbed(&spec.scrub_env);
        env.extend(&spec.env)
            .set("ARUN_BUDGET_SECONDS", spec.budget.as_secs().to_string())
            .set("ARUN_EXPERIMENT", n.to_string())
            .set("ARUN_TAG", &self.history.tag);
        env
    }
}

/// The step that follows the last journaled event of an unfinished experiment.
fn resume_state(experiment: &Experiment) -> State {
    let n = experiment.n;
    if experiment.decision.is_some() {
        State::Record { n }
    } else if !experiment.runs.is_empty() {
        State::Decide { n }
    } else if experiment.commit.is_some() {
        State::Build { n }
    } else {
        State::Propose { n }
    }
}

fn failure(reason: String, fixable: bool) -> Measurement {
    Measurement {
        failure: Some(reason),
        metric: None,
        values: Default::default(),
        memory_gb: None,
        seconds: 0.0,
        fixable,
    }
}

fn oid(text: &str) -> Result<Oid, Error> {
    git::parse_oid(text).ok_or_else(|| Error::RunFailed(format!("`{text}` is not a commit id")))
}

fn short_commit(experiment: &Experiment) -> String {
    experiment
        .commit
        .as_deref()
        .map(|c| c[..c.len().min(7)].to_string())
        .unwrap_or_default()
}

/// `[EXP] <tag> <n> | commit:<hash> | <metric>:<value> | mem:<gb>GB | status:<status> | <description>`
pub fn exp_line(tag: &str, experiment: &Experiment, metric: &str) -> String {
    let row = results::row(experiment);
    let fields: Vec<&str> = row.trim_end_matches('\n').splitn(5, '\t').collect();
    format!(
        "[EXP] {tag} {} | commit:{} | {metric}:{} | mem:{}GB | status:{} | {}",
        experiment.n, fields[0], fields[1], fields[2], fields[3], fields[4]
    )
}

/// Sleeps, waking early on Ctrl-C; true when interrupted.
fn sleep_unless_interrupted(duration: Duration) -> bool {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if exec::interrupt::requested() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
    exec::interrupt::requested()
}
