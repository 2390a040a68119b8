//! The steps of an experiment (see the state machine in `session`), and the start of the next
//! one. A step that waits is started here as a job and finished in `handle` when the job reports;
//! every other step is taken at once.

use std::sync::Arc;
use std::time::Instant;

use git2::Oid;

use super::jobs::{CommandJob, Done, Outcome, ProposeJob};
use super::{Check, Flight, Session, Step, Stop, failure, oid, wants_fix};
use crate::error::Error;
use crate::propose::{self, Proposal, ProposeError, Task};
use crate::run::decide::{self, Candidate, Measurement, Status, Verdict};
use crate::run::due;
use crate::run::exec;
use crate::run::git::{self, GitError, Head};
use crate::run::journal::Expansion;
use crate::run::journal::{self, Event, Experiment};
use crate::run::scope::{Baseline, Inspection};
use crate::run::search;
use crate::view::results;

impl Session {
    /// Starts the next experiment when there is room for one, no limit says otherwise and no
    /// other experiment's result is about to come in: a fix attempt for a crash, the baseline, or
    /// a proposal on the parent the search chooses.
    pub(super) fn begin(&mut self) -> Result<bool, Error> {
        if self.ending.is_some() || self.limit.is_some() || self.flights.len() >= self.capacity() {
            return Ok(false);
        }
        // One experiment at a time: a new best's held-out check comes first, as it always did.
        if !self.parallel() && self.check_wanted() {
            return Ok(false);
        }
        let Some(space) = self.free_space() else {
            return Ok(false);
        };
        if let Some(reason) = self.limit_reached() {
            self.limit = Some(reason);
            return Ok(true);
        }
        if self.result_due() {
            return Ok(false);
        }
        let n = self.history.next_number();
        let Some(event) = self.next_experiment(n)? else {
            return Ok(false);
        };
        self.record_event(event)?;
        self.flights.insert(
            n,
            Flight {
                step: Step::Propose,
                space: Some(space),
                busy: false,
                not_before: None,
                running_since: None,
            },
        );
        Ok(true)
    }

    /// Whether the next experiment waits for another one's result that is due (`due`): a
    /// proposal made now would miss it. At most a window from when the wait began.
    fn result_due(&mut self) -> bool {
        let experiments = self.history.experiments.iter().rev();
        let clean_runs = experiments
            .flat_map(|e| e.runs.iter().rev())
            .filter(|run| run.failure.is_none())
            .map(|run| run.seconds);
        let elapsed: Vec<f64> = self
            .flights
            .values()
            .filter_map(|flight| flight.running_since)
            .map(|since| since.elapsed().as_secs_f64())
            .collect();
        let now = self.started.elapsed().as_secs_f64();
        self.wait
            .holds(now, due::usual_length(clean_runs), &elapsed)
    }

    /// Why no new experiment may start, counting those in flight.
    fn limit_reached(&self) -> Option<String> {
        let started = (self.history.recorded().count() + self.flights.len()) as u64;
        let max_experiments = self
            .options
            .max_experiments
            .or(self.pipeline.limits.max_experiments);
        if let Some(max) = max_experiments
            && started >= u64::from(max)
        {
            return Some(format!("reached the limit of {max} experiments"));
        }
        let max_time = self.options.max_time.or(self.pipeline.limits.max_time);
        if let Some(max) = max_time
            && self.started.elapsed() >= max
        {
            return Some(format!(
                "reached the time limit of {}",
                crate::config::HumanDuration(max)
            ));
        }
        let cost = self.history.cost_usd();
        if let Some(max) = self.pipeline.limits.max_cost_usd
            && cost >= max
        {
            return Some(format!(
                "reached the cost limit of ${max:.2} (${cost:.2} spent)"
            ));
        }
        let tokens = self.history.tokens().total();
        if let Some(max) = self.pipeline.limits.max_tokens
            && tokens >= max
        {
            return Some(format!("reached the limit of {max} tokens ({tokens} used)"));
        }
        None
    }

    /// The start of experiment `n`; `None` while the baseline is still in flight.
    fn next_experiment(&self, n: u64) -> Result<Option<Event>, Error> {
        if let Some(crashed) = self.crash_to_fix() {
            return Ok(Some(Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: crashed.parent,
                base_commit: crashed.commit.clone().unwrap_or_default(),
                fix_of: Some(crashed.fix_of.unwrap_or(crashed.n)),
                attempt: crashed.attempt + 1,
                expansion: crashed.expansion,
            }));
        }
        if self.history.experiments.is_empty() {
            return Ok(Some(Event::ExperimentStarted {
                time: journal::now(),
                n,
                parent: None,
                base_commit: self.history.start_commit.clone(),
                fix_of: None,
                attempt: 0,
                expansion: Expansion::Improve,
            }));
        }
        if self.history.baseline().is_none() {
            return Ok(None);
        }
        let Some(choice) = search::next(&self.history.search(), &self.history) else {
            return Ok(None);
        };
        let parent = self.experiment(choice.parent)?;
        Ok(Some(Event::ExperimentStarted {
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
        }))
    }

    /// A crash among the latest results that the proposer gets to fix and whose fix has not
    /// started. One at a time, the latest result only, as autoresearch does.
    fn crash_to_fix(&self) -> Option<&Experiment> {
        let attempts = self.pipeline.decision.fix_attempts;
        self.history
            .recorded()
            .rev()
            .take(self.capacity())
            .find(|crashed| {
                let root = crashed.fix_of.unwrap_or(crashed.n);
                wants_fix(crashed, attempts)
                    && !self
                        .history
                        .experiments
                        .iter()
                        .any(|e| e.fix_of == Some(root) && e.attempt > crashed.attempt)
            })
    }

    /// Takes experiment `n`'s next step, unless it waits for a job, a worker or its retry time.
    pub(super) fn step(&mut self, n: u64) -> Result<bool, Error> {
        if matches!(self.ending, Some(Stop::Interrupted | Stop::Failed(_))) {
            return Ok(false);
        }
        let free = self.free_space();
        let Some(flight) = self.flights.get_mut(&n) else {
            return Ok(false);
        };
        if flight.busy || flight.not_before.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        if flight.space.is_none() {
            match free {
                Some(space) => flight.space = Some(space),
                None => return Ok(false),
            }
        }
        flight.not_before = None;
        match flight.step {
            Step::Propose => self.propose(n),
            Step::Commit => self.commit(n).map(|()| true),
            Step::Build => self.build(n),
            Step::Run => self.run_once(n),
            Step::Decide => self.decide(n).map(|()| true),
            Step::Record => self.record(n).map(|()| true),
        }
    }

    fn set_step(&mut self, n: u64, step: Step) {
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.step = step;
        }
    }

    /// The work tree of experiment `n`.
    fn space_of(&self, n: u64) -> usize {
        self.flights.get(&n).and_then(|f| f.space).unwrap_or(0)
    }

    /// Where HEAD stands while the proposer works on `experiment` in work tree `space`: on the
    /// run branch when it builds on the branch's tip in the repository's own work tree, else
    /// detached at the commit it builds on (a fix attempt at the crashed commit, a tree
    /// expansion of a node that is not the best, any experiment in a worker's work tree).
    fn proposer_head(&self, experiment: &Experiment, space: usize) -> Result<(Head, Oid), Error> {
        let base = oid(&experiment.base_commit)?;
        let on_tip =
            experiment.fix_of.is_none() && experiment.base_commit == self.history.branch_tip();
        let head = if on_tip {
            Head::Branch(self.history.branch.clone())
        } else {
            Head::Detached(base)
        };
        Ok((self.spaces[space].head(head, base), base))
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

    /// Starts a proposal for `n` in its work tree, when a proposer is free.
    fn propose(&mut self, n: u64) -> Result<bool, Error> {
        let experiment = self.experiment(n)?.clone();
        if experiment.is_baseline() {
            self.set_step(n, Step::Commit);
            return Ok(true);
        }
        if self.proposers.is_empty() {
            return Ok(false);
        }
        let space = self.space_of(n);
        let (head, base) = self.proposer_head(&experiment, space)?;
        self.spaces[space].place(head.clone(), base)?;
        let proposing = self
            .flights
            .values()
            .any(|f| f.busy && f.step == Step::Propose);
        let baseline = match (&self.refs, proposing) {
            (Some(refs), true) => refs.clone(),
            _ => Baseline::of(&self.git, self.own_refs())?,
        };
        self.refs = Some(baseline.clone());
        let task = if experiment.fix_of.is_some() {
            Task::FixCrash
        } else {
            Task::Propose
        };
        let path = self.spaces[space].path.clone();
        let context = self.prompt_context(&experiment, &path)?;
        let label = match task {
            Task::Propose => format!("{} #{n} proposing", self.history.tag),
            Task::FixCrash => format!(
                "{} #{n} fixing the crash (attempt {} of {})",
                self.history.tag, experiment.attempt, self.pipeline.decision.fix_attempts
            ),
        };
        let scratch = self.run.agent_scratch();
        std::fs::create_dir_all(&scratch)
            .map_err(|err| Error::io(format!("cannot create `{}`", scratch.display()), err))?;
        self.spaces[space].touched();
        let job = ProposeJob {
            n,
            task,
            path,
            head,
            base,
            baseline,
            proposer: self.proposers.pop().expect("a free proposer"),
            pipeline: Arc::clone(&self.pipeline),
            history: self.history.clone(),
            context,
            prompt_file: self.run.prompts().join(format!("{n}.md")),
            transcript: self.run.agents().join(format!("{n}.log")),
            scratch,
            line: self.progress.line(),
            label,
            answer: super::answers::path(&self.run, n, experiment.failures.len()),
        };
        self.started_job(n, None);
        super::jobs::spawn(n, self.done.clone(), move |done| job.run(done));
        Ok(true)
    }

    /// Notes that a job works for `n` (on `worker`, when it needs one).
    fn started_job(&mut self, n: u64, worker: Option<usize>) {
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.busy = true;
        }
        if let Some(worker) = worker {
            self.workers[worker].busy = Some(n);
        }
        self.jobs += 1;
    }

    /// What a job reported: journaled, and the experiment moves on.
    pub(super) fn handle(&mut self, done: Done) -> Result<(), Error> {
        let n = done.n;
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.busy = false;
        }
        match done.what {
            Outcome::Proposed {
                proposer,
                outcome,
                found,
                files,
            } => {
                self.proposers.push(proposer);
                let saved = super::answers::path(&self.run, n, self.experiment(n)?.failures.len());
                self.proposed(n, outcome, found, files)?;
                // Journaled (or failed, and undone): the saved answer is not needed any more.
                let _ = std::fs::remove_file(saved);
                Ok(())
            }
            Outcome::Built {
                finished,
                read_only_changed,
            } => {
                self.release(n);
                self.built(n, finished, read_only_changed)
            }
            Outcome::Ran {
                repeat,
                worker,
                measured,
                read_only_changed,
            } => {
                self.release(n);
                self.ran(n, repeat, worker, measured, read_only_changed)
            }
            Outcome::Panicked(message) => {
                self.release(n);
                Err(Error::RunFailed(format!(
                    "arun's job for experiment {n} failed: {message}. This is a bug in arun; \
                     `--resume` goes on from the journal"
                )))
            }
            Outcome::HeldOut { measured, .. } => {
                self.release(n);
                if let Some(check) = self.check.take() {
                    self.spaces[check.space].touched();
                }
                self.checked(n, measured)
            }
        }
    }

    /// Frees the worker that worked for `n`, and marks its work tree as changed.
    fn release(&mut self, n: u64) {
        for worker in &mut self.workers {
            if worker.busy == Some(n) {
                worker.busy = None;
            }
        }
        let space = self.space_of(n);
        self.spaces[space].touched();
    }

    /// Journals what the proposer did (or why it failed).
    pub(super) fn proposed(
        &mut self,
        n: u64,
        outcome: Result<Proposal, ProposeError>,
        found: Result<Option<Inspection>, GitError>,
        files: Result<Option<std::collections::BTreeMap<String, Option<String>>>, GitError>,
    ) -> Result<(), Error> {
        // The answer is paid for. The job saved it (see `answers`), and until it is journaled
        // nothing here changes the work tree or takes a git lock: a kill before the journal
        // line leaves the saved answer for the resume to journal.
        let tampered = self.restore_run_files()?;
        let found = found?;
        let files = files?;
        let proposal = match outcome {
            Ok(proposal) => proposal,
            Err(error) => return self.proposal_unusable(n, error, tampered, found),
        };
        let (Some(found), Some(files)) = (found, files) else {
            return self.proposal_failed(
                n,
                "the proposal could not be inspected".to_string(),
                proposal.cost_usd,
                proposal.tokens,
            );
        };
        if !found.changed() && tampered.is_empty() {
            let experiment = self.experiment(n)?.clone();
            let space = self.space_of(n);
            let (head, base) = self.proposer_head(&experiment, space)?;
            crate::run::scope::carry_out(&self.spaces[space].git, &head, base, &found.undo)?;
            return self.proposal_failed(
                n,
                "the proposer changed nothing".to_string(),
                proposal.cost_usd,
                proposal.tokens,
            );
        }
        let mut violations = found.violations;
        violations.extend(tampered);
        if !found.notes.is_empty() {
            self.progress.note(&format!(
                "arun: #{n}: undoing what the proposer did besides its edit: {}",
                found.notes.join("; ")
            ));
        }
        let description = proposal
            .description
            .unwrap_or_else(|| format!("edit {}", found.edited.join(", ")));
        // The edit went into the object database (objects only: no lock) before the journal
        // names it: from here on a restart commits it instead of asking for it again.
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
            space: Some(self.space_of(n)),
        })?;
        self.set_step(n, Step::Commit);
        Ok(())
    }

    /// Journals an answer that brought no edit to commit: a rejected one (a crash, unrun), or a
    /// failure; an interruption or a spent budget ends the session instead.
    fn proposal_unusable(
        &mut self,
        n: u64,
        error: ProposeError,
        tampered: Vec<String>,
        found: Option<Inspection>,
    ) -> Result<(), Error> {
        match error {
            ProposeError::Rejected {
                description,
                reason,
                cost_usd,
                tokens,
            } => {
                // An answer that could not be used: recorded as a crash, unrun.
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
                    space: found.as_ref().map(|_| self.space_of(n)),
                    undo: found.map(|found| found.undo),
                })?;
                self.set_step(n, Step::Commit);
                Ok(())
            }
            // The job undid everything the proposer did.
            ProposeError::Interrupted => {
                self.ending.get_or_insert(Stop::Interrupted);
                Ok(())
            }
            ProposeError::Exhausted(reason) => {
                self.flights.remove(&n);
                self.limit.get_or_insert(reason);
                Ok(())
            }
            ProposeError::Failed(reason) => self.proposal_failed(n, reason, None, None),
            ProposeError::PaidFailure {
                reason,
                cost_usd,
                tokens,
            } => self.proposal_failed(n, reason, cost_usd, tokens),
        }
    }

    fn proposal_failed(
        &mut self,
        n: u64,
        reason: String,
        cost_usd: Option<f64>,
        tokens: Option<propose::Tokens>,
    ) -> Result<(), Error> {
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
            self.ending.get_or_insert(Stop::Failed(format!(
                "the proposer failed {failures} times in a row; the last time: {reason}"
            )));
            return Ok(());
        }
        let wait = self.pipeline.proposer.retry_wait * 2u32.saturating_pow(failures - 1);
        self.progress.note(&format!(
            "arun: trying again in {} ({failures} of {max} failures)",
            crate::view::progress::clock(wait)
        ));
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.not_before = Some(Instant::now() + wait);
        }
        Ok(())
    }

    /// Commits the proposal (from the blobs journaled with it, whatever the work tree holds
    /// now) and keeps the commit under `refs/arun/<tag>/<n>`.
    fn commit(&mut self, n: u64) -> Result<(), Error> {
        let experiment = self.experiment(n)?.clone();
        let (commit, lines) = if experiment.is_baseline() {
            (oid(&experiment.base_commit)?, (0, 0))
        } else {
            let space = self.space_of(n);
            let (head, base) = self.proposer_head(&experiment, space)?;
            if let Some(undo) = &experiment.undo {
                crate::run::scope::carry_out(&self.spaces[space].git, &head, base, undo)?;
                self.spaces[space].touched();
            }
            let message = format!(
                "{}: {}",
                self.history.tag,
                crate::text::one_line(&experiment.description_text())
            );
            let commit = match (&experiment.files, &experiment.rejected) {
                (Some(files), _) => self.git.commit_files(base, files, &message)?,
                // An answer that never applied: its commit changes nothing.
                (None, Some(_)) => self.git.commit_files(base, &Default::default(), &message)?,
                // A journal of an older version: the edit is in the work tree.
                (None, None) => self.spaces[space].git.commit_paths(
                    base,
                    &self.pipeline.target.editable,
                    &message,
                )?,
            };
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
        self.set_step(n, Step::Build);
        Ok(())
    }

    /// Checks the tree it is about to run, then starts the build (outside the budget) on a
    /// free worker.
    fn build(&mut self, n: u64) -> Result<bool, Error> {
        let experiment = self.experiment(n)?.clone();
        if let Some(reason) = &experiment.rejected {
            self.measured(n, 0, failure(reason.clone(), false), None)?;
            return Ok(true);
        }
        if !experiment.violations.is_empty() {
            let reason = format!(
                "changed files outside the edit target: {} (reverted)",
                experiment.violations.join(", ")
            );
            self.measured(n, 0, failure(reason, false), None)?;
            return Ok(true);
        }
        let command = self.pipeline.experiment.build.clone();
        let worker = self.free_worker();
        if command.is_some() && worker.is_none() {
            return Ok(false);
        }
        let space = self.space_of(n);
        let commit = oid(experiment.commit.as_deref().unwrap_or_default())?;
        let head = self.experiment_head(&experiment, commit);
        self.spaces[space].place(head, commit)?;
        for (path, pinned) in &self.history.read_only {
            let now = git::hash_file(&self.spaces[space].path.join(path));
            if now.as_deref() != Some(pinned.as_str()) {
                self.ending.get_or_insert(Stop::Failed(format!(
                    "read-only file `{path}` changed since the run started and arun cannot \
                     restore it; restore it and resume, or start a new run"
                )));
                return Ok(true);
            }
        }
        let (Some(command), Some(worker)) = (command, worker) else {
            self.set_step(n, Step::Run);
            return Ok(true);
        };
        let log = self.log_path(n, "build.log");
        let job = CommandJob {
            n,
            path: self.spaces[space].path.clone(),
            command,
            env: self.experiment_env(n, worker),
            log_name: self.shown(&log),
            log,
            limit: self.pipeline.experiment.build_timeout,
            grace: self.pipeline.experiment.grace,
            budget: self.pipeline.experiment.build_timeout,
            cpus: self.workers[worker].cpus.clone(),
            executor: self.executor(n, "build"),
            read_only: self.history.read_only.clone(),
            line: self.progress.line(),
            label: self.label(n, "building", worker),
        };
        self.started_job(n, Some(worker));
        super::jobs::spawn(n, self.done.clone(), move |done| job.build(done));
        Ok(true)
    }

    /// `nov22 #3 running`, and the worker when there are several.
    fn label(&self, n: u64, doing: &str, worker: usize) -> String {
        let mut label = format!("{} #{n} {doing}", self.history.tag);
        if self.workers.len() > 1 {
            label.push_str(&format!(" on {}", self.workers[worker].describe(worker)));
        }
        label
    }

    fn built(
        &mut self,
        n: u64,
        finished: std::io::Result<exec::Finished>,
        read_only_changed: Vec<String>,
    ) -> Result<(), Error> {
        let command = self.pipeline.experiment.build.clone().unwrap_or_default();
        let finished =
            finished.map_err(|err| Error::io(format!("cannot run the build `{command}`"), err))?;
        if finished.ending == exec::Ending::Interrupted {
            self.ending.get_or_insert(Stop::Interrupted);
            return Ok(());
        }
        let seconds = finished.elapsed.as_secs_f64();
        self.progress.note(&format!(
            "arun: #{n}: built in {}",
            crate::view::report::seconds_text(seconds)
        ));
        self.record_event(Event::Built {
            time: journal::now(),
            n,
            seconds,
        })?;
        let problem = if finished.ending.success() {
            self.changed_by("the build", read_only_changed)?
        } else {
            Some(format!(
                "build failed ({})",
                finished
                    .ending
                    .describe(self.pipeline.experiment.build_timeout)
            ))
        };
        match problem {
            None => self.set_step(n, Step::Run),
            Some(reason) => self.measured(n, 0, failure(reason, true), None)?,
        }
        Ok(())
    }

    /// What a build or a run changed that it must not: a read-only file (its content decides
    /// the metric), arun's journal. Both are put back (the read-only files by the reset before
    /// the next use of the work tree); the experiment is a crash with the reason returned.
    fn changed_by(
        &mut self,
        who: &str,
        read_only_changed: Vec<String>,
    ) -> Result<Option<String>, Error> {
        let mut changed: Vec<String> = read_only_changed
            .iter()
            .map(|path| format!("read-only file `{path}`"))
            .collect();
        changed.extend(self.restore_run_files()?);
        if changed.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{who} changed {}, which only arun may change",
            changed.join(", ")
        )))
    }

    /// Starts one more run of the experiment on a free worker, under its hard limit. Repeats of
    /// the same code (baseline runs, confirmations) get their own seed.
    fn run_once(&mut self, n: u64) -> Result<bool, Error> {
        let Some(worker) = self.free_worker() else {
            return Ok(false);
        };
        let experiment = self.experiment(n)?.clone();
        let repeat = experiment.runs.len() as u32;
        let commit = oid(experiment.commit.as_deref().unwrap_or_default())?;
        let space = self.space_of(n);
        let head = self.experiment_head(&experiment, commit);
        self.spaces[space].place(head, commit)?;
        let mut env = self.experiment_env(n, worker);
        if let Some(name) = &self.pipeline.decision.noise.seed_env {
            env.set(name.clone(), repeat.to_string());
        }
        let doing = match repeat {
            0 => "running".to_string(),
            r => format!("running again ({})", r + 1),
        };
        let spec = &self.pipeline.experiment;
        let log = self.run_log(n, repeat);
        let job = CommandJob {
            n,
            path: self.spaces[space].path.clone(),
            command: spec.run.clone(),
            env,
            log_name: self.shown(&log),
            log,
            limit: spec.hard_limit,
            grace: spec.grace,
            budget: spec.budget,
            cpus: self.workers[worker].cpus.clone(),
            executor: self.executor(n, &repeat.to_string()),
            read_only: self.history.read_only.clone(),
            line: self.progress.line(),
            label: self.label(n, &doing, worker),
        };
        self.started_job(n, Some(worker));
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.running_since = Some(Instant::now());
        }
        let pipeline = Arc::clone(&self.pipeline);
        let gpu = self.local_gpu();
        super::jobs::spawn(n, self.done.clone(), move |done| {
            job.run(repeat, worker, &pipeline.metric, gpu.as_deref(), done);
        });
        Ok(true)
    }

    fn ran(
        &mut self,
        n: u64,
        repeat: u32,
        worker: usize,
        measured: std::io::Result<Option<Measurement>>,
        read_only_changed: Vec<String>,
    ) -> Result<(), Error> {
        let command = &self.pipeline.experiment.run;
        let measured = measured.map_err(|err| Error::io(format!("cannot run `{command}`"), err))?;
        let Some(mut measurement) = measured else {
            self.ending.get_or_insert(Stop::Interrupted);
            return Ok(());
        };
        if let Some(reason) = self.changed_by("the run", read_only_changed)? {
            measurement.failure = Some(reason);
            measurement.metric = None;
        }
        let worker = (self.workers.len() > 1).then_some(worker as u32);
        self.measured(n, repeat, measurement, worker)
    }

    fn measured(
        &mut self,
        n: u64,
        repeat: u32,
        measurement: Measurement,
        worker: Option<u32>,
    ) -> Result<(), Error> {
        self.record_event(Event::Measured {
            time: journal::now(),
            n,
            repeat,
            measurement,
            worker,
        })?;
        if let Some(flight) = self.flights.get_mut(&n) {
            flight.running_since = None;
        }
        self.set_step(n, Step::Decide);
        Ok(())
    }

    /// Judges the runs so far against the best known now: a decision, or one more run of the
    /// same code (on the next free worker).
    fn decide(&mut self, n: u64) -> Result<(), Error> {
        let experiment = self.experiment(n)?;
        let rules = &self.pipeline.decision;
        let reference = self.history.reference(experiment, rules);
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
                self.set_step(n, Step::Run);
                return Ok(());
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
        self.set_step(n, Step::Record);
        Ok(())
    }

    /// Moves the branch as decided, writes the results row, prints the `[EXP]` line. The only
    /// place the run branch moves.
    fn record(&mut self, n: u64) -> Result<(), Error> {
        let experiment = self.experiment(n)?.clone();
        let branch = Head::Branch(self.history.branch.clone());
        let status = experiment.status().unwrap_or(Status::Crash);
        // The branch points at the best: a keep of the greedy chain, the best node of a tree.
        let best = self.history.best_with(Some(n));
        let tip = oid(best
            .and_then(|b| b.commit.as_deref())
            .unwrap_or(&self.history.start_commit))?;
        self.spaces[0].clean(branch, tip)?;
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
        self.flights.remove(&n);
        self.progress.data(&super::exp_line(
            &self.history.tag,
            &experiment,
            self.pipeline.metric.name(),
        ));
        if experiment.is_baseline() && status == Status::Crash {
            let reason = experiment.decision.map(|d| d.reason).unwrap_or_default();
            self.ending.get_or_insert(Stop::Failed(format!(
                "the baseline crashed ({reason}); fix the target and start a new run. The end of \
                 its output:\n{}",
                self.log_tail(n)
            )));
        }
        Ok(())
    }

    /// Adds what a keep or a crash taught to the target's learnings file. Losing a line is not
    /// worth stopping the run for, so a write error is only reported.
    fn learn(&self, experiment: &Experiment, status: Status) {
        if experiment.is_baseline() || status == Status::Discard {
            return;
        }
        let metric = self.pipeline.metric.name();
        let description = crate::text::one_line(&experiment.description_text());
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
            experiment.short_commit()
        );
        let file = crate::run::learnings::path(&self.root);
        if let Err(err) = crate::run::learnings::append(&file, &key, &text) {
            self.progress
                .note(&format!("arun: cannot write `{}`: {err}", file.display()));
        }
    }

    /// Whether the best has no held-out check yet and the pipeline asks for one.
    fn check_wanted(&self) -> bool {
        self.check.is_none()
            && self.pipeline.decision.held_out.is_some()
            && self
                .history
                .best()
                .is_some_and(|best| best.held_out.is_none())
    }

    /// Starts the held-out check of a new best that has none, on a free work tree and worker.
    pub(super) fn start_check(&mut self) -> Result<bool, Error> {
        if self.check.is_some() || matches!(self.ending, Some(Stop::Interrupted | Stop::Failed(_)))
        {
            return Ok(false);
        }
        if !self.check_wanted() {
            return Ok(false);
        }
        let (Some(check), Some(best)) =
            (self.pipeline.decision.held_out.clone(), self.history.best())
        else {
            return Ok(false);
        };
        let n = best.n;
        let (Some(space), Some(worker)) = (self.free_space(), self.free_worker()) else {
            return Ok(false);
        };
        let tip = oid(self.history.branch_tip())?;
        self.spaces[space].place(Head::Branch(self.history.branch.clone()), tip)?;
        let log = self.log_path(n, "held-out.log");
        let limit = check.timeout.unwrap_or(self.pipeline.experiment.hard_limit);
        let job = CommandJob {
            n,
            path: self.spaces[space].path.clone(),
            command: check.run.clone(),
            env: self.experiment_env(n, worker),
            log_name: self.shown(&log),
            log,
            limit,
            grace: self.pipeline.experiment.grace,
            budget: limit,
            cpus: self.workers[worker].cpus.clone(),
            executor: self.executor(n, "check"),
            read_only: Default::default(),
            line: self.progress.line(),
            label: self.label(n, "held-out check", worker),
        };
        let spec = crate::config::MetricSpec {
            primary: check.capture,
            goal: self.pipeline.metric.goal,
            extra: Vec::new(),
            memory: None,
        };
        self.check = Some(Check { space });
        self.started_job(n, Some(worker));
        super::jobs::spawn(n, self.done.clone(), move |done| job.held_out(&spec, done));
        Ok(true)
    }

    fn checked(
        &mut self,
        n: u64,
        measured: std::io::Result<Option<Measurement>>,
    ) -> Result<(), Error> {
        let Some(check) = self.pipeline.decision.held_out.clone() else {
            return Ok(());
        };
        let measured =
            measured.map_err(|err| Error::io(format!("cannot run `{}`", check.run), err))?;
        let Some(measurement) = measured else {
            self.ending.get_or_insert(Stop::Interrupted);
            return Ok(());
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
        })
    }
}
