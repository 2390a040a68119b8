//! The command agent: any program that reads a prompt and edits files (a coding-agent CLI or a
//! script), run in the target repository under its own timeout, its output kept as a transcript.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Proposal, ProposeError, Proposer, Request};
use crate::exec::{self, Ending, Environment, Spawn, Watch};
use crate::prompt::TemplateKind;

/// How long the agent may take to list next ideas when the run stops.
const IDEAS_TIMEOUT: Duration = Duration::from_secs(120);

pub struct CommandAgent {
    command: String,
    env: BTreeMap<String, String>,
}

impl CommandAgent {
    pub fn new(command: String, env: BTreeMap<String, String>) -> Self {
        CommandAgent { command, env }
    }

    /// Renders `template`, runs the command on it, and returns what it printed of interest.
    fn run<'w>(
        &self,
        request: &Request,
        template: TemplateKind,
        limit: Duration,
        watch: &'w mut dyn Watch,
    ) -> Result<Transcript<'w>, ProposeError> {
        let prompt = request
            .pipeline
            .proposer
            .templates
            .get(template)
            .render(request.context)
            .map_err(ProposeError::Failed)?;
        let write = |path: &std::path::Path, text: &str| {
            path.parent().map(std::fs::create_dir_all);
            std::fs::write(path, text)
        };
        write(&request.prompt_file, &prompt)
            .map_err(|err| ProposeError::Failed(format!("cannot write the prompt: {err}")))?;

        let mut env = Environment::inherit();
        env.extend(&self.env)
            .set(
                "ARUN_PROMPT_FILE",
                request.prompt_file.display().to_string(),
            )
            .set("ARUN_TASK", template.key())
            .set("ARUN_EXPERIMENT", request.n.to_string())
            .set("ARUN_TAG", &request.history.tag)
            .set("ARUN_REPO", request.repo.display().to_string())
            .set("ARUN_EDITABLE", request.pipeline.target.editable.join(" "));
        let mut transcript = Transcript::new(watch);
        let finished = exec::run(
            &Spawn {
                command: &self.command,
                dir: request.repo,
                env: &env,
                stdin: Some(&request.prompt_file),
                log: &request.transcript,
                limit,
                grace: request.pipeline.experiment.grace,
            },
            &mut transcript,
        )
        .map_err(|err| {
            ProposeError::Failed(format!("cannot start the agent `{}`: {err}", self.command))
        })?;
        match finished.ending {
            Ending::Interrupted => Err(ProposeError::Interrupted),
            ending if ending.success() => Ok(transcript),
            ending => Err(ProposeError::Failed(format!(
                "the agent failed ({}); its output is in {}",
                ending.describe(limit),
                request.transcript.display()
            ))),
        }
    }
}

impl Proposer for CommandAgent {
    fn propose(
        &mut self,
        request: &Request,
        watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError> {
        let transcript = self.run(
            request,
            request.task.template(),
            request.pipeline.proposer.timeout,
            watch,
        )?;
        Ok(Proposal {
            description: transcript.description.or(transcript.first_line),
            details: serde_json::Value::Null,
            cost_usd: None,
        })
    }

    fn next_ideas(&mut self, request: &Request) -> Vec<String> {
        let limit = request.pipeline.proposer.timeout.min(IDEAS_TIMEOUT);
        match self.run(request, TemplateKind::Summary, limit, &mut exec::Ignore) {
            Ok(transcript) => transcript.ideas,
            Err(_) => Vec::new(),
        }
    }
}

/// What is read from an agent's output as it streams: the `DESCRIPTION:` line (the last one
/// wins), the first line as a fallback, and `- ` bullet lines as ideas.
struct Transcript<'w> {
    watch: &'w mut dyn Watch,
    description: Option<String>,
    first_line: Option<String>,
    ideas: Vec<String>,
}

impl<'w> Transcript<'w> {
    fn new(watch: &'w mut dyn Watch) -> Self {
        Transcript {
            watch,
            description: None,
            first_line: None,
            ideas: Vec::new(),
        }
    }
}

/// Descriptions longer than this are cut; they are one line of a table.
const MAX_DESCRIPTION: usize = 200;

fn clip(text: &str) -> String {
    let text = crate::results::one_line(text);
    match text.char_indices().nth(MAX_DESCRIPTION) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

impl Watch for Transcript<'_> {
    fn line(&mut self, line: &str) {
        let trimmed = crate::exec::tail::strip_ansi(line).trim().to_string();
        if let Some(rest) = trimmed.strip_prefix("DESCRIPTION:") {
            let text = clip(rest);
            if !text.is_empty() {
                self.description = Some(text);
            }
        } else if self.first_line.is_none() && !trimmed.is_empty() {
            self.first_line = Some(clip(&trimmed));
        }
        if let Some(idea) = trimmed.strip_prefix("- ")
            && self.ideas.len() < 10
        {
            self.ideas.push(clip(idea));
        }
        self.watch.line(line);
    }

    fn tick(&mut self, elapsed: Duration, group: i32) {
        self.watch.tick(elapsed, group);
    }
}
