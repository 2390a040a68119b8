//! Proposers: who edits the editable files for the next experiment. The session asks, the
//! proposer edits the work tree (or fails); git, budgets and decisions stay with the session.

pub mod agent;

use std::path::{Path, PathBuf};

use crate::config::Pipeline;
use crate::config::resolve::ProposerSettings;
use crate::exec::Watch;
use crate::journal::History;
use crate::prompt::{PromptContext, TemplateKind};

/// What the proposer is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Propose the next experiment.
    Propose,
    /// Repair the experiment that just crashed (its files are in the work tree).
    FixCrash,
}

impl Task {
    pub fn template(self) -> TemplateKind {
        match self {
            Task::Propose => TemplateKind::Propose,
            Task::FixCrash => TemplateKind::FixCrash,
        }
    }
}

/// Everything a proposer may use.
pub struct Request<'a> {
    pub n: u64,
    pub task: Task,
    pub pipeline: &'a Pipeline,
    pub history: &'a History,
    pub context: &'a PromptContext,
    /// The target repository's work tree, where the edit goes.
    pub repo: &'a Path,
    /// Where the rendered prompt is written.
    pub prompt_file: PathBuf,
    /// Where the proposer's own output (an agent's transcript) goes.
    pub transcript: PathBuf,
}

/// What a proposer reports besides the edit itself.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    /// One line saying what changed; when absent the session describes the diff.
    pub description: Option<String>,
    /// Facts the proposer wants journaled (e.g. knob values), read back from the history later.
    pub details: serde_json::Value,
    /// What the proposal cost, when the proposer knows.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This attempt failed (agent crashed or timed out, model unreachable); try again later.
    Failed(String),
    /// The user interrupted the run while the proposer worked.
    Interrupted,
    /// The proposer can never succeed (e.g. the search space is exhausted): stop the run.
    Exhausted(String),
}

pub trait Proposer {
    /// Edits the editable files in the work tree for experiment `request.n`.
    fn propose(
        &mut self,
        request: &Request,
        watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError>;

    /// The most promising next experiments, for the summary printed when the run stops; empty
    /// when the proposer cannot say.
    fn next_ideas(&mut self, _request: &Request) -> Vec<String> {
        Vec::new()
    }
}

/// The proposer a pipeline asks for.
pub fn build(pipeline: &Pipeline) -> Result<Box<dyn Proposer>, String> {
    match &pipeline.proposer.kind {
        ProposerSettings::Agent { command, env } => Ok(Box::new(agent::CommandAgent::new(
            command.clone(),
            env.clone(),
        ))),
        ProposerSettings::Http { .. } => {
            Err("the `http` proposer is not available in this build".to_string())
        }
        ProposerSettings::Knobs { .. } => {
            Err("the `knobs` proposer is not available in this build".to_string())
        }
    }
}
