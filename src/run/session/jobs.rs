//! The blocking parts of an experiment, run on threads while the session goes on: a proposal,
//! a build, a run, a held-out check. Each job owns its inputs, works in its experiment's work
//! tree (opening its own handle on the repository), touches neither the journal nor the run
//! branch, and sends back what happened; the session journals it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use git2::Oid;

use super::measure::{Measure, measure};
use crate::config::Pipeline;
use crate::config::prompt::PromptContext;
use crate::propose::{Proposal, ProposeError, Proposer, Request, Task};
use crate::run::decide::Measurement;
use crate::run::exec::{self, Environment, Executor, Spawn};
use crate::run::git::{self, Git, GitError, Head};
use crate::run::gpu::GpuMonitor;
use crate::run::journal::History;
use crate::run::scope::{self, Baseline, Inspection, Snapshot};
use crate::view::progress::Line;

/// What a job reports, with the experiment it worked for.
pub(super) struct Done {
    pub(super) n: u64,
    pub(super) what: Outcome,
}

#[allow(
    clippy::large_enum_variant,
    reason = "one outcome per job, moved once through a channel"
)]
pub(super) enum Outcome {
    /// The proposer answered (or failed); the proposer comes back for the next proposal.
    Proposed {
        proposer: Box<dyn Proposer>,
        outcome: Result<Proposal, ProposeError>,
        /// What it did besides its edit, and how to undo it (not for a failed proposal, which
        /// the job undid entirely).
        found: Result<Option<Inspection>, GitError>,
        /// The editable files as blobs, for a proposal that edited them.
        files: Result<Option<BTreeMap<String, Option<String>>>, GitError>,
    },
    Built {
        finished: std::io::Result<exec::Finished>,
        /// Read-only files whose content changed.
        read_only_changed: Vec<String>,
    },
    Ran {
        repeat: u32,
        worker: usize,
        /// `None`: interrupted.
        measured: std::io::Result<Option<Measurement>>,
        read_only_changed: Vec<String>,
    },
    HeldOut {
        measured: std::io::Result<Option<Measurement>>,
    },
    /// The job panicked (a bug): the run stops, and a resume goes on from the journal.
    Panicked(String),
}

/// Runs `work` on a thread of its own. A job that panics still reports, as
/// `Outcome::Panicked`, so that the session never waits for it forever.
pub(super) fn spawn(n: u64, done: Sender<Done>, work: impl FnOnce(Sender<Done>) + Send + 'static) {
    std::thread::spawn(move || {
        let reply = done.clone();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || work(reply)));
        if let Err(panic) = ran {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            let _ = done.send(Done {
                n,
                what: Outcome::Panicked(message),
            });
        }
    });
}

/// A proposal for experiment `n`, in the work tree at `path`, HEAD at `head`/`base`.
pub(super) struct ProposeJob {
    pub(super) n: u64,
    pub(super) task: Task,
    pub(super) path: PathBuf,
    pub(super) head: Head,
    pub(super) base: Oid,
    pub(super) baseline: Baseline,
    pub(super) proposer: Box<dyn Proposer>,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) history: History,
    pub(super) context: PromptContext,
    pub(super) prompt_file: PathBuf,
    pub(super) transcript: PathBuf,
    pub(super) scratch: PathBuf,
    pub(super) line: Line,
    pub(super) label: String,
    /// Where the answer is saved until the session journals it (see `answers`).
    pub(super) answer: PathBuf,
}

impl ProposeJob {
    pub(super) fn run(mut self, done: Sender<Done>) {
        let n = self.n;
        let outcome = self.work();
        self.line.finish();
        let _ = done.send(Done { n, what: outcome });
    }

    fn work(&mut self) -> Outcome {
        let git = match Git::open(&self.path) {
            Ok(git) => git,
            Err(err) => return self.failed_to_start(err),
        };
        let before = match Snapshot::take(&git, &self.baseline) {
            Ok(before) => before,
            Err(err) => return self.failed_to_start(err),
        };
        self.line.phase(self.label.clone(), None);
        let request = Request {
            n: self.n,
            task: self.task,
            pipeline: &self.pipeline,
            history: &self.history,
            context: &self.context,
            repo: &self.path,
            prompt_file: self.prompt_file.clone(),
            transcript: self.transcript.clone(),
            run_dir: &self.scratch,
        };
        let mut watch = self.line.clone();
        let outcome = self.proposer.propose(&request, &mut watch);
        let editable = &self.pipeline.target.editable;
        let (found, files) = match &outcome {
            Ok(_) => (
                scope::inspect(&git, &self.head, self.base, &before, editable).map(Some),
                git.write_blobs(editable).map(Some),
            ),
            // An answer that could not be applied: nothing of it may stay, and the undo is
            // journaled with it.
            Err(ProposeError::Rejected { .. }) => (
                scope::inspect(&git, &self.head, self.base, &before, &[]).map(Some),
                Ok(None),
            ),
            // Nothing of a failed proposal may stay, its edits included.
            Err(_) => (
                scope::undo_all(&git, &self.head, self.base, &before).map(|_| None),
                Ok(None),
            ),
        };
        super::answers::save(&self.answer, &outcome, &found, &files);
        Outcome::Proposed {
            proposer: std::mem::replace(&mut self.proposer, Box::new(Gone)),
            outcome,
            found,
            files,
        }
    }

    fn failed_to_start(&mut self, err: GitError) -> Outcome {
        Outcome::Proposed {
            proposer: std::mem::replace(&mut self.proposer, Box::new(Gone)),
            outcome: Err(ProposeError::Failed(format!(
                "cannot prepare the proposal: {err}"
            ))),
            found: Ok(None),
            files: Ok(None),
        }
    }
}

/// The place of a proposer that went back to the session.
struct Gone;

impl Proposer for Gone {
    fn propose(
        &mut self,
        _request: &Request,
        _watch: &mut dyn exec::Watch,
    ) -> Result<Proposal, ProposeError> {
        Err(ProposeError::Failed("no proposer".to_string()))
    }
}

/// A build or a run in the work tree at `path`, placed at the experiment's commit.
pub(super) struct CommandJob {
    pub(super) n: u64,
    pub(super) path: PathBuf,
    pub(super) command: String,
    pub(super) env: Environment,
    pub(super) log: PathBuf,
    /// The log as messages show it.
    pub(super) log_name: String,
    pub(super) limit: Duration,
    pub(super) grace: Duration,
    pub(super) budget: Duration,
    pub(super) cpus: Option<Vec<u32>>,
    /// Here, or a Slurm job.
    pub(super) executor: Executor,
    /// Read-only files and their pinned hashes, checked after the command.
    pub(super) read_only: BTreeMap<String, String>,
    pub(super) line: Line,
    pub(super) label: String,
}

impl CommandJob {
    fn read_only_changed(&self) -> Vec<String> {
        self.read_only
            .iter()
            .filter(|(path, pinned)| {
                git::hash_file(&self.path.join(path)).as_deref() != Some(pinned.as_str())
            })
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Builds (outside the budget).
    pub(super) fn build(self, done: Sender<Done>) {
        self.line.phase(self.label.clone(), None);
        let mut watch = self.line.clone();
        let finished = self.executor.run(
            &Spawn {
                command: &self.command,
                dir: &self.path,
                env: &self.env,
                stdin: None,
                log: &self.log,
                limit: self.limit,
                grace: self.grace,
                cpus: self.cpus.as_deref(),
            },
            &mut watch,
        );
        let read_only_changed = self.read_only_changed();
        self.line.finish();
        let _ = done.send(Done {
            n: self.n,
            what: Outcome::Built {
                finished,
                read_only_changed,
            },
        });
    }

    /// Runs once more under the hard limit, reading `metric` as the output streams.
    pub(super) fn run(
        self,
        repeat: u32,
        worker: usize,
        metric: &crate::config::MetricSpec,
        gpu: Option<&GpuMonitor>,
        done: Sender<Done>,
    ) {
        let measured = self.measure(metric, gpu);
        let read_only_changed = self.read_only_changed();
        self.line.finish();
        let _ = done.send(Done {
            n: self.n,
            what: Outcome::Ran {
                repeat,
                worker,
                measured,
                read_only_changed,
            },
        });
    }

    /// Runs the held-out check.
    pub(super) fn held_out(self, metric: &crate::config::MetricSpec, done: Sender<Done>) {
        let measured = self.measure(metric, None);
        self.line.finish();
        let _ = done.send(Done {
            n: self.n,
            what: Outcome::HeldOut { measured },
        });
    }

    fn measure(
        &self,
        metric: &crate::config::MetricSpec,
        gpu: Option<&GpuMonitor>,
    ) -> std::io::Result<Option<Measurement>> {
        self.line.phase(self.label.clone(), Some(self.budget));
        measure(
            Measure {
                command: &self.command,
                dir: &self.path,
                env: &self.env,
                log: &self.log,
                limit: self.limit,
                grace: self.grace,
                metric,
                log_name: &self.log_name,
                cpus: self.cpus.as_deref(),
                executor: &self.executor,
            },
            &self.line,
            gpu,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_panics_still_reports() {
        let (done, finished) = std::sync::mpsc::channel();
        spawn(7, done, |_| panic!("boom"));
        let report = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the job reports");
        assert_eq!(report.n, 7);
        assert!(matches!(report.what, Outcome::Panicked(ref m) if m == "boom"));
    }
}
