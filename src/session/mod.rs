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

pub use setup::run_preflight;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use git2::Oid;

use crate::config::Pipeline;
use crate::decide::{self, Candidate, Measurement, Status, Verdict};
use crate::error::Error;
use crate::exec::{self, Environment, Spawn};
use crate::git::{self, Git, Head};
use crate::gpu::GpuMonitor;
use crate::journal::{self, Event, Experiment, History, Journal};
use crate::progress::Progress;
use crate::propose::{self, ProposeError, Proposer, Request, Task};
use crate::results;
use crate::scope::{self, Snapshot};
use crate::search::{self, Expansion};
use crate::store::{self, RepoLock, RunDir};
use measure::{Measure, ProgressWatch, log_file_name, measure};

/// Limits and choices given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run tag; default from the pipeline's pattern and today's date.
    pub tag: Option<String>,
    /// Continue an earlier run (the latest one when no tag is given).
    pub resume: bool,
    pub max_experiments: Option<u32>,
    pub max_time: Option<Duration>,
    /// The experiment budget, instead of the pipeline's (a new run only: a run keeps the
    /// budget it started with).
    pub budget: Option<Duration>,
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
    /// Held while the run is in progress: a second arun on the same repository is refused.
    _lock: RepoLock,
    pipeline: Pipeline,
    options: RunOptions,
    git: Git,
    journal: Journal,
    history: History,
    proposer: Box<dyn Proposer>,
    /// The run store, `.git/arun`.
    root: PathBuf,
    /// The run's directory in it.
    run: RunDir,
    /// The work tree's results.tsv: a copy of the run's own table.
    view: PathBuf,
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
    /// Setup: creates the repository if the pipeline says how, takes its lock, then starts a
    /// new run or resumes the one found in the journal.
    fn start(mut pipeline: Pipeline, options: RunOptions) -> Result<Session, Error> {
        let progress = Progress::new();
        git::enable_fsync();
        // Keys arun keeps from experiments are kept out of everything it writes too.
        for (name, value) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let scrubbed = pipeline
                .experiment
                .scrub_env
                .iter()
                .any(|pattern| crate::config::resolve::env_pattern_matches(pattern, &name));
            if scrubbed {
                crate::secrets::register(&value.to_string_lossy());
            }
        }
        let git = setup::open_or_create_repo(&pipeline, &progress)?;
        let root = git.common_dir().join("arun");
        let mut lock =
            RepoLock::acquire(&root, git.workdir()).map_err(|err| Error::Setup(err.to_string()))?;
        setup::recover(&git, &root, pipeline.experiment.grace, &progress)?;
        let tag = setup::choose_tag(&pipeline, &options, git.workdir())?;
        let run = RunDir::new(&root, &tag);
        let resuming = run.journal().exists();
        if options.resume && !resuming {
            return Err(Error::Setup(format!(
                "there is no run `{tag}` to resume (no `{}`)",
                run.journal().display()
            )));
        }
        lock.claim(&store::Holder {
            pid: std::process::id(),
            tag: tag.clone(),
            pipeline: pipeline.file.display().to_string(),
            since: journal::now(),
        })
        .map_err(|err| Error::io("cannot write the repository lock", err))?;
        exec::orphans::record_groups_in(run.group_file());
        let view = git.workdir().join(&pipeline.limits.results);

        // Everything that can refuse the start comes before a new run's journal is created.
        let proposer = propose::build(&pipeline).map_err(Error::Setup)?;
        let (history, journal) = if resuming {
            let history = setup::read_for_resume(&git, &run, &pipeline)?;
            setup::apply_settings(&mut pipeline, &history, &options, &progress)?;
            setup::check_tree_for_resume(&git, &history, &pipeline, &progress)?;
            setup::run_preflight(&pipeline, git.workdir(), &progress)?;
            let journal = Journal::open(&run.journal()).map_err(|err| {
                Error::io(format!("cannot open `{}`", run.journal().display()), err)
            })?;
            (history, journal)
        } else {
            setup::run_preflight(&pipeline, git.workdir(), &progress)?;
            let settings = setup::settings_for(&pipeline, options.budget);
            setup::use_settings(&mut pipeline, &settings);
            setup::begin_run(&pipeline, &git, &run, &tag, settings)?
        };
        git.exclude(&[format!("/{}", pipeline.limits.results)])?;
        setup::ensure_branch(&git, &history, &progress)?;

        let mut session = Session {
            _lock: lock,
            options,
            git,
            journal,
            history,
            proposer,
            root,
            run,
            view,
            started: Instant::now(),
            progress,
            gpu: GpuMonitor::connect(),
            clean_at: None,
            pipeline,
        };
        if resuming {
            setup::set_aside_leftovers(
                &session.git,
                &session.history,
                &session.run,
                &session.progress,
            )?;
            let at = match session.history.current() {
                Some(e) => format!("at experiment {}", e.n),
                None => format!("after {} experiments", session.history.recorded().count()),
            };
            session.record_event(Event::Resumed {
                time: journal::now(),
            })?;
            session
                .progress
                .note(&format!("arun: resuming run `{tag}` {at}"));
        } else {
            session.progress.note(&format!(
                "arun: run `{tag}` on branch `{}` in {}",
                session.history.branch,
                session.git.workdir().display()
            ));
        }
        let (head, tip) = setup::head_on_branch(&session.history)?;
        if session.history.current().is_none() {
            session.clean(head, tip)?;
        }
        setup::show_table(
            &session.root,
            &session.run,
            &session.view,
            session.pipeline.metric.name(),
            &session.history,
            &session.progress,
        )?;
        Ok(session)
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
            && self.history.best().is_some_and(|best| best.n == last.n)
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
                expansion: Expansion::Improve,
            },
            Some(last) if self.wants_fix(last) => Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: last.parent,
                base_commit: last.commit.clone().unwrap_or_default(),
                fix_of: Some(last.fix_of.unwrap_or(last.n)),
                attempt: last.attempt + 1,
                expansion: last.expansion,
            },
            Some(_) => {
                let choice =
                    search::next(&self.history.search(), &self.history).ok_or_else(|| {
                        Error::RunFailed("the search found no experiment to build on".to_string())
                    })?;
                let parent = self.experiment(choice.parent)?;
                Event::ExperimentStarted {
                    time: journal::now(),
                    n,
                    parent: Some(parent.n),
                    base_commit: parent
                        .commit
                        .clone()
                        .unwrap_or_else(|| self.history.start_commit.clone()),
                    fix_of: None,
                    attempt: 0,
                    expansion: choice.expansion,
                }
            }
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

    /// Where HEAD stands while the proposer works on `experiment`: on the run branch when it
    /// builds on the branch's tip, else detached at the commit it builds on (a fix attempt at
    /// the crashed commit, a tree expansion of a node that is not the best).
    fn proposer_head(&self, experiment: &Experiment) -> Result<(Head, Oid), Error> {
        let base = oid(&experiment.base_commit)?;
        let on_tip =
            experiment.fix_of.is_none() && experiment.base_commit == self.history.branch_tip();
        let head = if on_tip {
            Head::Branch(self.history.branch.clone())
        } else {
            Head::Detached(base)
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
        let before = Snapshot::take(&self.git)?;
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
        let scratch = self.run.agent_scratch();
        std::fs::create_dir_all(&scratch)
            .map_err(|err| Error::io(format!("cannot create `{}`", scratch.display()), err))?;
        let request = Request {
            n,
            task,
            pipeline: &self.pipeline,
            history: &self.history,
            context: &context,
            repo: self.git.workdir(),
            prompt_file: self.run.prompts().join(format!("{n}.md")),
            transcript: self.run.agents().join(format!("{n}.log")),
            run_dir: &scratch,
        };
        self.clean_at = None;
        let mut watch = ProgressWatch(&mut self.progress);
        let outcome = self.proposer.propose(&request, &mut watch);
        // The answer is paid for. Until it is journaled nothing here takes a git lock or
        // changes the work tree, so a kill loses at most this one call, never a proposal that
        // was already journaled.
        let tampered = self.restore_run_files()?;
        let proposal = match outcome {
            Ok(proposal) => proposal,
            Err(ProposeError::Rejected {
                description,
                reason,
                cost_usd,
                tokens,
            }) => {
                // An answer that could not be used: recorded as a crash, unrun.
                let found = scope::inspect(&self.git, &head, base, &before, &[])?;
                self.progress.note(&format!("arun: #{n}: {reason}"));
                self.record_event(Event::Proposed {
                    time: journal::now(),
                    n,
                    description,
                    violations: tampered,
                    details: serde_json::Value::Null,
                    cost_usd,
                    tokens,
                    rejected: Some(reason),
                    files: None,
                    undone: Vec::new(),
                    undo: Some(found.undo),
                })?;
                return Ok(State::Commit { n });
            }
            Err(err) => {
                // Nothing of a proposal that failed may stay, its edits included.
                scope::undo_all(&self.git, &head, base, &before)?;
                return match err {
                    ProposeError::Interrupted => Ok(State::Stop(Stop::Interrupted)),
                    ProposeError::Exhausted(reason) => Ok(State::Stop(Stop::Limit(reason))),
                    ProposeError::Failed(reason) => self.proposal_failed(n, reason, None, None),
                    ProposeError::PaidFailure {
                        reason,
                        cost_usd,
                        tokens,
                    } => self.proposal_failed(n, reason, cost_usd, tokens),
                    ProposeError::Rejected { .. } => unreachable!("handled above"),
                };
            }
        };

        let editable = &self.pipeline.target.editable;
        let found = scope::inspect(&self.git, &head, base, &before, editable)?;
        let mut violations = found.violations;
        violations.extend(tampered);
        if found.edited.is_empty() && violations.is_empty() {
            scope::carry_out(&self.git, &head, base, &found.undo)?;
            return self.proposal_failed(
                n,
                "the proposer changed nothing".to_string(),
                proposal.cost_usd,
                proposal.tokens,
            );
        }
        if !found.notes.is_empty() {
            self.progress.note(&format!(
                "arun: #{n}: undoing what the proposer did besides its edit: {}",
                found.notes.join("; ")
            ));
        }
        // The edit goes into the object database (objects only: no lock) before the journal
        // names it: from here on a restart commits it instead of asking for it again.
        let files = self.git.write_blobs(editable)?;
        let description = proposal
            .description
            .unwrap_or_else(|| format!("edit {}", found.edited.join(", ")));
        self.record_event(Event::Proposed {
            time: journal::now(),
            n,
            description,
            violations,
            details: proposal.details,
            cost_usd: proposal.cost_usd,
            tokens: proposal.tokens,
            rejected: None,
            files: Some(files),
            undone: found.notes,
            undo: Some(found.undo),
        })?;
        Ok(State::Commit { n })
    }

    /// Puts arun's own files back when something changed them (a proposer, a build or a run):
    /// the journal from memory, the results tables from the journal. Returns the changes that
    /// count against the experiment: the journal's (a results table is only a view).
    fn restore_run_files(&mut self) -> Result<Vec<String>, Error> {
        let mut tampered = Vec::new();
        if !self.journal.holds(&self.history.events) {
            self.progress.note(&format!(
                "arun: `{}` was changed behind arun's back; writing it again from memory",
                self.journal.path().display()
            ));
            self.journal
                .rewrite(&self.history.events)
                .map_err(|err| Error::io("cannot rewrite the journal", err))?;
            tampered.push("the run's journal".to_string());
        }
        let text = results::text(self.pipeline.metric.name(), &self.history);
        for path in [self.run.results(), self.view.clone()] {
            if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                results::rewrite(&path, self.pipeline.metric.name(), &self.history).map_err(
                    |err| Error::io(format!("cannot rewrite `{}`", path.display()), err),
                )?;
            }
        }
        Ok(tampered)
    }

    fn proposal_failed(
        &mut self,
        n: u64,
        reason: String,
        cost_usd: Option<f64>,
        tokens: Option<propose::Tokens>,
    ) -> Result<State, Error> {
        self.progress.note(&format!("arun: #{n}: {reason}"));
        self.record_event(Event::ProposalFailed {
            time: journal::now(),
            n,
            reason: reason.clone(),
            cost_usd,
            tokens,
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

    /// Commits the proposal (from the blobs journaled with it, whatever the work tree holds
    /// now) and keeps the commit under `refs/arun/<tag>/<n>`.
    fn commit(&mut self, n: u64) -> Result<State, Error> {
        let experiment = self.experiment(n)?.clone();
        let (commit, lines) = if experiment.is_baseline() {
            (oid(&experiment.base_commit)?, (0, 0))
        } else {
            let (head, base) = self.proposer_head(&experiment)?;
            if let Some(undo) = &experiment.undo {
                scope::carry_out(&self.git, &head, base, undo)?;
                self.clean_at = None;
            }
            let message = format!(
                "{}: {}",
                self.history.tag,
                results::one_line(&experiment.description_text())
            );
            let commit = match (&experiment.files, &experiment.rejected) {
                (Some(files), _) => self.git.commit_files(base, files, &message)?,
                // An answer that never applied: its commit changes nothing.
                (None, Some(_)) => self.git.commit_files(base, &Default::default(), &message)?,
                // A journal of an older version: the edit is in the work tree.
                (None, None) => {
                    self.git
                        .commit_paths(base, &self.pipeline.target.editable, &message)?
                }
            };
            self.clean_at = None;
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
        if finished.ending == exec::Ending::Interrupted {
            return Ok(State::Stop(Stop::Interrupted));
        }
        let seconds = finished.elapsed.as_secs_f64();
        self.progress.note(&format!(
            "arun: #{n}: built in {}",
            crate::report::seconds_text(seconds)
        ));
        self.record_event(Event::Built {
            time: journal::now(),
            n,
            seconds,
        })?;
        let problem = if finished.ending.success() {
            self.changed_by("the build")?
        } else {
            Some(format!(
                "build failed ({})",
                finished
                    .ending
                    .describe(self.pipeline.experiment.build_timeout)
            ))
        };
        match problem {
            None => Ok(State::Run { n }),
            Some(reason) => self.measured(n, 0, failure(reason, true)),
        }
    }

    /// What a build or a run changed that it must not: a read-only file (its content decides
    /// the metric), arun's journal. Both are put back; the experiment is a crash with the
    /// reason returned.
    fn changed_by(&mut self, who: &str) -> Result<Option<String>, Error> {
        let mut changed: Vec<String> = self
            .history
            .read_only
            .iter()
            .filter(|(path, pinned)| {
                git::hash_file(&self.git.workdir().join(path)).as_deref() != Some(pinned.as_str())
            })
            .map(|(path, _)| format!("read-only file `{path}`"))
            .collect();
        changed.extend(self.restore_run_files()?);
        if changed.is_empty() {
            return Ok(None);
        }
        // The reset at the end of the experiment restores tracked files.
        self.clean_at = None;
        Ok(Some(format!(
            "{who} changed {}, which only arun may change",
            changed.join(", ")
        )))
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
                log_name: &self.shown(&log),
            },
            label,
            &mut self.progress,
            self.gpu.as_ref(),
        )
        .map_err(|err| Error::io(format!("cannot run `{}`", spec.run), err))?;
        let Some(mut measurement) = measured else {
            return Ok(State::Stop(Stop::Interrupted));
        };
        if let Some(reason) = self.changed_by("the run")? {
            measurement.failure = Some(reason);
            measurement.metric = None;
        }
        self.measured(n, repeat, measurement)
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
        let reference = decide::reference(&self.history, experiment, rules);
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
                log_name: &self.shown(&log),
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
        // The branch points at the best: a keep of the greedy chain, the best node of a tree.
        let best = self.history.best_with(Some(n));
        let tip = oid(best
            .and_then(|b| b.commit.as_deref())
            .unwrap_or(&self.history.start_commit))?;
        self.clean(branch, tip)?;
        for table in [self.run.results(), self.view.clone()] {
            results::append(&table, self.pipeline.metric.name(), &experiment)
                .map_err(|err| Error::io(format!("cannot write `{}`", table.display()), err))?;
        }
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
        let file = crate::learnings::path(&self.root);
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
        let (head, tip) = setup::head_on_branch(&self.history)?;
        self.clean(head, tip)?;

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
        let report = crate::report::load::from_history(
            &self.history,
            self.git.workdir(),
            self.run.path(),
            Some(&self.pipeline),
        );
        let text = crate::summary::render(
            &self.history,
            &self.pipeline,
            &report,
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
        let scratch = self.run.agent_scratch();
        let _ = std::fs::create_dir_all(&scratch);
        let request = Request {
            n: self.history.next_number(),
            task: Task::Propose,
            pipeline: &self.pipeline,
            history: &self.history,
            context: &context,
            repo: self.git.workdir(),
            prompt_file: self.run.prompts().join("summary.md"),
            transcript: self.run.agents().join("summary.log"),
            run_dir: &scratch,
        };
        let Ok((head, tip)) = setup::head_on_branch(&self.history) else {
            return Vec::new();
        };
        let Ok(before) = Snapshot::take(&self.git) else {
            return Vec::new();
        };
        let ideas = self.proposer.next_ideas(&request);
        // Whatever the proposer touched while thinking is not part of the run.
        let _ = self.restore_run_files();
        if let Err(err) = scope::undo_all(&self.git, &head, tip, &before) {
            self.progress.note(&format!(
                "arun: cannot undo what the proposer changed: {err}"
            ));
        }
        ideas
    }

    /// Puts HEAD and the work tree at `commit`, unless they are known to be there already.
    fn place(&mut self, head: Head, commit: Oid) -> Result<(), Error> {
        if self.clean_at.as_ref() != Some(&(head.clone(), commit)) {
            self.clean(head, commit)?;
        }
        Ok(())
    }

    /// Puts HEAD and the work tree at `commit`: tracked files as committed, untracked files
    /// that were not there when the run started removed (what a build or a run left). Ignored
    /// files stay: caches, build output, data.
    fn clean(&mut self, head: Head, commit: Oid) -> Result<(), Error> {
        self.git.reset_hard(&head, commit)?;
        scope::remove_untracked_except(&self.git, &self.history.untracked)?;
        self.clean_at = Some((head, commit));
        Ok(())
    }

    fn record_event(&mut self, event: Event) -> Result<(), Error> {
        let stored = self.journal.append(&event).map_err(|err| {
            Error::io(
                format!("cannot write `{}`", self.journal.path().display()),
                err,
            )
        })?;
        self.history.push(stored);
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
        self.run.logs().join(format!("{n}.{extension}"))
    }

    fn run_log(&self, n: u64, repeat: u32) -> PathBuf {
        self.run.logs().join(log_file_name(n, repeat))
    }

    /// A path as messages show it: relative to the work tree when inside it.
    fn shown(&self, path: &std::path::Path) -> String {
        path.strip_prefix(self.git.workdir())
            .unwrap_or(path)
            .display()
            .to_string()
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

/// The step that follows the last journaled event of an unfinished experiment. A proposal
/// already journaled is committed, never asked for again (it was paid for); only a journal of
/// an older version, which did not keep the edit, proposes again.
fn resume_state(experiment: &Experiment) -> State {
    let n = experiment.n;
    if experiment.decision.is_some() {
        State::Record { n }
    } else if !experiment.runs.is_empty() {
        State::Decide { n }
    } else if experiment.commit.is_some() {
        State::Build { n }
    } else if experiment.files.is_some() || experiment.rejected.is_some() {
        State::Commit { n }
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
