//! The experiment loop. Every experiment goes through one state machine:
//!
//! ```text
//! Propose -> Commit -> Build -> Run -> Decide -> Record
//!                                ^------'  (one more run of the same code)
//! ```
//!
//! The session coordinates the experiments in flight: one at a time by default, as autoresearch
//! does, or several with `[workers]`, each in its own git work tree, with the next proposals
//! made while the others train. The steps that wait (a proposal, a build, a run, a held-out
//! check) run as jobs on threads (`jobs`); everything else, every journal write and every move
//! of the run branch, happens here, in one thread, in the order the jobs finish.
//!
//! Each step journals what it is about to do (or what it learned) before it takes effect, and
//! every step is safe to redo, so a run killed at any moment continues from its journal:
//! `resume_step` maps the last journaled event of each unfinished experiment to the step that
//! follows it, and every experiment that was in flight goes on from there.

mod answers;
mod context;
mod jobs;
mod measure;
mod setup;
mod steps;
mod workers;
mod workspace;

pub use measure::RunWatch;
pub use setup::run_preflight;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use git2::Oid;

use crate::config::Pipeline;
use crate::config::resolve::ExecutorSpec;
use crate::error::Error;
use crate::propose::{self, Proposer, Request, Task};
use crate::run::decide::{Measurement, Status};
use crate::run::due;
use crate::run::exec::{self, Environment};
use crate::run::git::{self, Git};
use crate::run::gpu::GpuMonitor;
use crate::run::journal::{self, Event, Experiment, History, Journal};
use crate::run::scope::{self, Baseline, Snapshot};
use crate::run::store::{self, RepoLock, RunDir};
use crate::view::progress::Progress;
use crate::view::results;
use jobs::Done;
use measure::log_file_name;
use workers::Worker;
use workspace::Workspace;

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

/// Where an experiment in flight is in its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Propose,
    Commit,
    Build,
    Run,
    Decide,
    Record,
}

/// An experiment in flight.
#[derive(Debug)]
struct Flight {
    step: Step,
    /// Its work tree, an index into `Session::spaces`, from its proposal to its record; `None`
    /// until one is free (a resume with more experiments in flight than work trees).
    space: Option<usize>,
    /// A job works for it now.
    busy: bool,
    /// A failed proposal is tried again after this.
    not_before: Option<Instant>,
    /// When its run started, while it runs.
    running_since: Option<Instant>,
}

/// A held-out check in progress.
struct Check {
    space: usize,
}

/// Why the run stops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Limit(String),
    Interrupted,
    Failed(String),
}

pub struct Session {
    /// Held while the run is in progress: a second arun on the same repository is refused.
    _lock: RepoLock,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
    /// The repository: objects, refs, the run branch.
    git: Git,
    journal: Journal,
    history: History,
    /// The proposers not working now; one that works comes back with its answer.
    proposers: Vec<Box<dyn Proposer>>,
    /// The run store, `.git/arun`.
    root: PathBuf,
    /// The run's directory in it.
    run: RunDir,
    /// The work tree's results.tsv: a copy of the run's own table.
    view: PathBuf,
    started: Instant,
    progress: Progress,
    gpu: Option<Arc<GpuMonitor>>,
    /// Work trees: the repository's own first; with parallel workers, the run's own after it.
    spaces: Vec<Workspace>,
    workers: Vec<Worker>,
    flights: BTreeMap<u64, Flight>,
    check: Option<Check>,
    /// The refs proposers must leave alone, shared by proposals that overlap.
    refs: Option<Baseline>,
    done: Sender<Done>,
    finished: Receiver<Done>,
    /// Jobs running now.
    jobs: usize,
    /// The wait of a free worker for another experiment's result that is due.
    wait: due::Wait,
    /// Why no new experiment starts: a limit, or the proposer has nothing left.
    limit: Option<String>,
    /// Why the run stops as soon as the jobs running have ended; nothing new starts.
    ending: Option<Stop>,
}

/// Registers the values of the environment variables the pipeline scrubs from experiments, so
/// that they are kept out of everything arun writes too.
fn register_scrubbed_values(pipeline: &Pipeline) {
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let scrubbed = pipeline
            .experiment
            .scrub_env
            .iter()
            .any(|pattern| crate::config::resolve::env_pattern_matches(pattern, &name));
        if scrubbed {
            crate::run::secrets::register(&value.to_string_lossy());
        }
    }
}

/// Writes into the repository's lock who holds it: this process, for this run of this pipeline.
fn claim_lock(lock: &mut RepoLock, pipeline: &Pipeline, tag: &str) -> Result<(), Error> {
    lock.claim(&store::Holder {
        pid: std::process::id(),
        tag: tag.to_string(),
        pipeline: pipeline.file.display().to_string(),
        since: journal::now(),
    })
    .map_err(|err| Error::io("cannot write the repository lock", err))
}

/// Resuming: reads the journal, takes the run's settings, checks the work tree, runs the
/// preflight checks, then opens the journal to append to it.
fn reopen_run(
    pipeline: &mut Pipeline,
    options: &RunOptions,
    git: &Git,
    run: &RunDir,
    progress: &Progress,
) -> Result<(History, Journal), Error> {
    let history = setup::read_for_resume(git, run, pipeline)?;
    setup::apply_settings(pipeline, &history, options, progress)?;
    setup::check_tree_for_resume(git, &history, pipeline, progress)?;
    setup::run_preflight(pipeline, git.workdir(), progress)?;
    let journal = Journal::open(&run.journal())
        .map_err(|err| Error::io(format!("cannot open `{}`", run.journal().display()), err))?;
    Ok((history, journal))
}

/// A new run: runs the preflight checks, fixes the run's settings, then creates its journal and
/// branch.
fn new_run(
    pipeline: &mut Pipeline,
    options: &RunOptions,
    git: &Git,
    run: &RunDir,
    tag: &str,
    progress: &Progress,
) -> Result<(History, Journal), Error> {
    setup::run_preflight(pipeline, git.workdir(), progress)?;
    let settings = setup::settings_for(pipeline, options.budget);
    setup::use_settings(pipeline, &settings);
    setup::begin_run(pipeline, git, run, tag, settings)
}

/// Runs the pipeline until a limit, an interruption or an error; prints the summary.
pub fn run(pipeline: Pipeline, options: RunOptions) -> Result<Ending, Error> {
    exec::interrupt::install()
        .map_err(|err| Error::io("cannot install the Ctrl-C handler", err))?;
    let mut session = Session::start(pipeline, options)?;
    match session.drive() {
        Ok(stop) => session.finish(stop),
        Err(err) => {
            session.abandon();
            Err(err)
        }
    }
}

impl Session {
    /// Setup: creates the repository if the pipeline says how, takes its lock, then starts a
    /// new run or resumes the one found in the journal.
    fn start(mut pipeline: Pipeline, options: RunOptions) -> Result<Session, Error> {
        let progress = Progress::new();
        git::enable_fsync();
        register_scrubbed_values(&pipeline);
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
        claim_lock(&mut lock, &pipeline, &tag)?;
        exec::orphans::record_groups_in(run.group_file());
        let view = git.workdir().join(&pipeline.limits.results);

        // Everything that can refuse the start comes before a new run's journal is created.
        let proposers = build_proposers(&pipeline)?;
        let gpu = GpuMonitor::connect().map(Arc::new);
        let workers = workers::plan(&pipeline.workers, gpu.as_deref())?;
        if let ExecutorSpec::Slurm(_) = &pipeline.executor {
            exec::slurm::check_tools().map_err(Error::Setup)?;
        }
        let (history, journal) = if resuming {
            reopen_run(&mut pipeline, &options, &git, &run, &progress)?
        } else {
            new_run(&mut pipeline, &options, &git, &run, &tag, &progress)?
        };
        git.exclude(&[format!("/{}", pipeline.limits.results)])?;
        setup::ensure_branch(&git, &history, &progress)?;
        let main = Workspace::main(Git::open(git.workdir())?, history.untracked.clone());
        let (done, finished) = mpsc::channel();

        let mut session = Session {
            _lock: lock,
            pipeline: Arc::new(pipeline),
            options,
            git,
            journal,
            history,
            proposers,
            root,
            run,
            view,
            started: Instant::now(),
            progress,
            gpu,
            spaces: vec![main],
            workers,
            flights: BTreeMap::new(),
            check: None,
            refs: None,
            done,
            finished,
            jobs: 0,
            wait: due::Wait::default(),
            limit: None,
            ending: None,
        };
        session.get_ready(&tag, resuming)?;
        Ok(session)
    }

    /// Resumes the run or announces the new one, readies the work trees and the experiments in
    /// flight, and shows the results so far.
    fn get_ready(&mut self, tag: &str, resuming: bool) -> Result<(), Error> {
        if resuming {
            self.resume(tag)?;
        } else {
            self.progress.note(&format!(
                "arun: run `{tag}` on branch `{}` in {}",
                self.history.branch,
                self.git.workdir().display()
            ));
        }
        self.prepare_work_trees()?;
        self.resume_flights();
        if resuming {
            self.take_saved_answers()?;
        }
        setup::show_table(
            &self.root,
            &self.run,
            &self.view,
            self.pipeline.metric.name(),
            &self.history,
            &self.progress,
        )
    }

    /// Resuming: sets aside what the stopped arun left in the work tree, journals the resumption
    /// and says where the run resumes.
    fn resume(&mut self, tag: &str) -> Result<(), Error> {
        setup::set_aside_leftovers(&self.git, &self.history, &self.run, &self.progress)?;
        let in_flight: Vec<u64> = self.history.in_flight().map(|e| e.n).collect();
        let at = match in_flight.as_slice() {
            [] => format!("after {} experiments", self.history.recorded().count()),
            [n] => format!("at experiment {n}"),
            many => format!(
                "with experiments {} in flight",
                many.iter()
                    .map(|n| format!("#{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.record_event(Event::Resumed {
            time: journal::now(),
        })?;
        self.progress
            .note(&format!("arun: resuming run `{tag}` {at}"));
        Ok(())
    }

    /// Puts the work tree at the branch's tip (unless an experiment in it is to be continued)
    /// and, for parallel runs, adds the workers' work trees.
    fn prepare_work_trees(&mut self) -> Result<(), Error> {
        let (head, tip) = setup::head_on_branch(&self.history)?;
        if self.history.current().is_none() || self.parallel() {
            self.spaces[0].clean(head, tip)?;
        }
        if self.parallel() {
            self.add_work_trees(tip)?;
        }
        Ok(())
    }

    /// A flight for each experiment the journal shows in progress, at the step it resumes from.
    /// A proposal journaled but not yet committed gets back the work tree its proposer worked
    /// in: its undo is carried out there, since what the proposer left (an ignored file it
    /// created, say) is in that work tree and nowhere else.
    fn resume_flights(&mut self) {
        let spaces = self.flight_spaces();
        let mut claimed = Vec::new();
        for experiment in self.history.in_flight() {
            let step = resume_step(experiment);
            let space = experiment
                .space
                .filter(|s| step == Step::Commit && spaces.contains(s) && !claimed.contains(s));
            claimed.extend(space);
            self.flights.insert(
                experiment.n,
                Flight {
                    step,
                    space,
                    busy: false,
                    not_before: None,
                    running_since: None,
                },
            );
        }
    }

    /// Journals the answers the stopped arun had been given but had not journaled, instead of
    /// asking for them again (they were paid for), and forgets every other saved answer.
    fn take_saved_answers(&mut self) -> Result<(), Error> {
        let waiting: Vec<u64> = self
            .flights
            .iter()
            .filter(|(_, flight)| flight.step == Step::Propose)
            .map(|(n, _)| *n)
            .collect();
        for n in waiting {
            let path = answers::path(&self.run, n, self.experiment(n)?.failures.len());
            let Some(answer) = answers::load(&path) else {
                continue;
            };
            self.progress.note(&format!(
                "arun: #{n}: journaling the answer the stopped arun was given, not asking again"
            ));
            self.proposed(n, answer.outcome, Ok(Some(answer.found)), Ok(answer.files))?;
        }
        answers::forget_all(&self.run);
        Ok(())
    }

    /// Whether experiments run in work trees of their own (several workers, or proposals made
    /// ahead); otherwise everything happens in the repository's work tree, as in autoresearch.
    fn parallel(&self) -> bool {
        self.pipeline.workers.count > 1 || self.pipeline.workers.ahead > 0
    }

    /// How many experiments may be in flight at once: one per worker and the proposals ahead.
    fn capacity(&self) -> usize {
        (self.pipeline.workers.count + self.pipeline.workers.ahead) as usize
    }

    /// The run's own work trees, one per experiment in flight and one for held-out checks.
    fn add_work_trees(&mut self, at: Oid) -> Result<(), Error> {
        let mut wanted = self.capacity();
        if self.pipeline.decision.held_out.is_some() {
            wanted += 1;
        }
        for i in 0..wanted {
            let space =
                Workspace::linked(&self.git, &self.run, i, &self.pipeline.workers.share, at)?;
            self.spaces.push(space);
        }
        Ok(())
    }

    /// The work trees experiments may use.
    fn flight_spaces(&self) -> std::ops::Range<usize> {
        if self.parallel() {
            1..self.spaces.len()
        } else {
            0..1
        }
    }

    /// A work tree no experiment and no check holds.
    fn free_space(&self) -> Option<usize> {
        self.flight_spaces().find(|&i| {
            self.flights.values().all(|f| f.space != Some(i))
                && self.check.as_ref().is_none_or(|c| c.space != i)
        })
    }

    fn free_worker(&self) -> Option<usize> {
        self.workers.iter().position(|w| w.busy.is_none())
    }

    /// Steps until a stop: starts whatever can start, then waits for a job to finish.
    fn drive(&mut self) -> Result<Stop, Error> {
        loop {
            if exec::interrupt::requested() && self.ending.is_none() {
                self.ending = Some(Stop::Interrupted);
            }
            self.advance()?;
            if self.jobs == 0 {
                if let Some(stop) = self.ending.clone() {
                    return Ok(stop);
                }
                if self.flights.is_empty() && self.check.is_none() {
                    return match self.limit.clone() {
                        Some(reason) => Ok(Stop::Limit(reason)),
                        None => Err(Error::RunFailed(
                            "the search found no experiment to build on".to_string(),
                        )),
                    };
                }
            }
            match self.finished.recv_timeout(Duration::from_millis(100)) {
                Ok(done) => {
                    self.jobs -= 1;
                    self.handle(done)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the session holds a sender"),
            }
        }
    }

    /// Takes every step that can be taken now: checks, experiments in flight, new ones.
    fn advance(&mut self) -> Result<(), Error> {
        loop {
            let mut moved = self.start_check()?;
            let waiting: Vec<u64> = self.flights.keys().copied().collect();
            for n in waiting {
                moved |= self.step(n)?;
            }
            moved |= self.begin()?;
            if !moved {
                return Ok(());
            }
        }
    }

    /// Stops the jobs running after an error, so that none outlives the session.
    fn abandon(&mut self) {
        exec::interrupt::request();
        while self.jobs > 0 {
            if self.finished.recv().is_err() {
                break;
            }
            self.jobs -= 1;
        }
        self.progress.clear();
    }

    /// Journals the stop, leaves the branch on the best, prints the summary.
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
        self.spaces[0].clean(head, tip)?;

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
        let report = crate::view::report::load::from_history(
            &self.history,
            self.git.workdir(),
            self.run.path(),
            Some(&self.pipeline),
        );
        let text = crate::view::summary::render(
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
        let repo = self.git.workdir().to_path_buf();
        let Ok(context) = self.prompt_context(&best, &repo) else {
            return Vec::new();
        };
        let Some(mut proposer) = self.proposers.pop() else {
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
            repo: &repo,
            prompt_file: self.run.prompts().join("summary.md"),
            transcript: self.run.agents().join("summary.log"),
            run_dir: &scratch,
        };
        let (Ok((head, tip)), Ok(baseline)) = (
            setup::head_on_branch(&self.history),
            Baseline::of(&self.git, self.own_refs()),
        ) else {
            return Vec::new();
        };
        let Ok(before) = Snapshot::take(&self.git, &baseline) else {
            return Vec::new();
        };
        let ideas = proposer.next_ideas(&request);
        self.proposers.push(proposer);
        // Whatever the proposer touched while thinking is not part of the run.
        let _ = self.restore_run_files();
        if let Err(err) = scope::undo_all(&self.git, &head, tip, &before) {
            self.progress.note(&format!(
                "arun: cannot undo what the proposer changed: {err}"
            ));
        }
        ideas
    }

    /// Refs that are arun's to move while proposals are in flight: the run branch and the
    /// experiments' commits.
    /// (With one experiment at a time nothing moves them during a proposal, and a proposer that
    /// moves them is caught like one that moves any other ref.)
    fn own_refs(&self) -> Vec<String> {
        if !self.parallel() {
            return Vec::new();
        }
        vec![
            format!("refs/heads/{}", self.history.branch),
            "refs/arun/".to_string(),
        ]
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
    /// the budget, and the worker's devices.
    fn experiment_env(&self, n: u64, worker: usize) -> Environment {
        let spec = &self.pipeline.experiment;
        let mut env = Environment::inherit_scrubbed(&spec.scrub_env);
        env.extend(&spec.env)
            .set("ARUN_BUDGET_SECONDS", spec.budget.as_secs().to_string())
            .set("ARUN_EXPERIMENT", n.to_string())
            .set("ARUN_TAG", &self.history.tag);
        self.workers[worker].pin(&mut env);
        env
    }

    /// Where a command of experiment `n` runs: here, or as the Slurm job
    /// `arun-<tag>-<n>-<what>` (`what`: the run's repeat, `build` or `check`).
    fn executor(&self, n: u64, what: &str) -> exec::Executor {
        let started = self.history.events.first().map_or(0.0, Event::time);
        exec::Executor::of(
            &self.pipeline.executor,
            &self.history.tag,
            n,
            what,
            self.run.path(),
            started,
        )
    }

    /// The GPU monitor for a run on this machine (NVML cannot see a Slurm job's node).
    fn local_gpu(&self) -> Option<Arc<GpuMonitor>> {
        match self.pipeline.executor {
            ExecutorSpec::Local => self.gpu.clone(),
            ExecutorSpec::Slurm(_) => None,
        }
    }
}

/// One proposer, or as many as experiments may be in flight when they can work side by side.
fn build_proposers(pipeline: &Pipeline) -> Result<Vec<Box<dyn Proposer>>, Error> {
    let first = propose::build(pipeline).map_err(Error::Setup)?;
    let wanted = if first.concurrent() {
        (pipeline.workers.count + pipeline.workers.ahead).max(1) as usize
    } else {
        1
    };
    let mut proposers = vec![first];
    while proposers.len() < wanted {
        proposers.push(propose::build(pipeline).map_err(Error::Setup)?);
    }
    Ok(proposers)
}

/// The step that follows the last journaled event of an unfinished experiment. A proposal
/// already journaled is committed, never asked for again (it was paid for); only a journal of
/// an older version, which did not keep the edit, proposes again.
fn resume_step(experiment: &Experiment) -> Step {
    if experiment.decision.is_some() {
        Step::Record
    } else if !experiment.runs.is_empty() {
        Step::Decide
    } else if experiment.commit.is_some() {
        Step::Build
    } else if experiment.files.is_some() || experiment.rejected.is_some() {
        Step::Commit
    } else {
        Step::Propose
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

/// Whether `experiment` is a crash the proposer gets to fix (`attempts` tries at most).
fn wants_fix(experiment: &Experiment, attempts: u32) -> bool {
    experiment.status() == Some(Status::Crash)
        && !experiment.is_baseline()
        && experiment.fixable()
        && experiment.attempt < attempts
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
