//! Proposers: who edits the editable files for the next experiment. The session asks, the
//! proposer edits the work tree (or fails); git, budgets and decisions stay with the session.

pub mod agent;
pub mod edit;
pub mod http;
pub mod knobs;
pub mod transcripts;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::config::prompt::{PromptContext, TemplateKind};
use crate::config::resolve::ProposerSettings;
use crate::run::exec::Watch;
use crate::run::journal::History;
pub use crate::run::journal::Tokens;

/// The longest description, the `...` of a cut included; it is one line of a table.
pub const MAX_DESCRIPTION: usize = 200;

/// What a proposer wrote as one line of at most [`MAX_DESCRIPTION`] characters, with no secret
/// in it: a description, an idea, an error it reported.
pub fn clip(text: &str) -> String {
    let text = crate::text::one_line(&crate::run::secrets::redact(text));
    crate::text::cut(&text, MAX_DESCRIPTION, "...")
}

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
    /// The run's directory, `.arun/<tag>`: agents keep their own files (histories) there, out
    /// of the work tree's changes.
    pub run_dir: &'a Path,
}

/// What a proposer reports besides the edit itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proposal {
    /// One line saying what changed; when absent the session describes the diff.
    pub description: Option<String>,
    /// Facts the proposer wants journaled (e.g. knob values), read back from the history later.
    pub details: serde_json::Value,
    /// What the proposal cost, when the proposer knows.
    pub cost_usd: Option<f64>,
    /// Tokens the proposal used, when the proposer knows.
    pub tokens: Option<Tokens>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposeError {
    /// This attempt failed (agent crashed or timed out, model unreachable); try again later.
    Failed(String),
    /// Like `Failed`, after the proposer was paid (an agent that failed after using its model,
    /// a model that answered before the server failed): the cost counts all the same.
    PaidFailure {
        reason: String,
        cost_usd: Option<f64>,
        tokens: Option<Tokens>,
    },
    /// The user interrupted the run while the proposer worked.
    Interrupted,
    /// The proposer can never succeed (e.g. the search space is exhausted): stop the run.
    Exhausted(String),
    /// The proposer answered, but its edit cannot be used (a model's SEARCH block that never
    /// matched, after its retries): the experiment is recorded as a crash with this reason.
    Rejected {
        description: String,
        reason: String,
        cost_usd: Option<f64>,
        tokens: Option<Tokens>,
    },
}

pub trait Proposer: Send {
    /// Edits the editable files in the work tree for experiment `request.n`.
    fn propose(
        &mut self,
        request: &Request,
        watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError>;

    /// Whether several of its kind may propose at once (parallel workers): an agent or a model
    /// may; a search that must see every assignment in flight before choosing the next may not.
    fn concurrent(&self) -> bool {
        true
    }

    /// The most promising next experiments, for the summary printed when the run stops; empty
    /// when the proposer cannot say.
    fn next_ideas(&mut self, _request: &Request) -> Vec<String> {
        Vec::new()
    }
}

/// The proposer a pipeline asks for.
pub fn build(pipeline: &Pipeline) -> Result<Box<dyn Proposer>, String> {
    match &pipeline.proposer.kind {
        ProposerSettings::Agent {
            command,
            env,
            preset,
        } => Ok(Box::new(agent::CommandAgent::new(
            command.clone(),
            env.clone(),
            *preset,
        ))),
        ProposerSettings::Http {
            base_url,
            model,
            api_key_env,
            temperature,
            edit_retries,
        } => Ok(Box::new(http::HttpModel::new(http::Settings {
            base_url: base_url.clone(),
            model: model.clone(),
            api_key_env: api_key_env.clone(),
            temperature: *temperature,
            edit_retries: *edit_retries,
        })?)),
        ProposerSettings::Knobs { seed } => Ok(Box::new(knobs::KnobSearch::new(
            pipeline.knobs.clone(),
            *seed,
        ))),
    }
}
