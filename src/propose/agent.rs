//! The command agent: any program that reads a prompt and edits files (a coding-agent CLI or a
//! script), run in the target repository under its own timeout, its output kept as a transcript.

use std::collections::BTreeMap;
use std::time::Duration;

use super::transcripts::{self, Report};
use super::{Proposal, ProposeError, Proposer, Request, clip};
use crate::config::file::AgentPreset;
use crate::config::presets;
use crate::config::prompt::TemplateKind;
use crate::run::exec::{self, Ending, Environment, Spawn, Watch};

/// How long the agent may take to list next ideas when the run stops.
const IDEAS_TIMEOUT: Duration = Duration::from_secs(120);

pub struct CommandAgent {
    command: String,
    env: BTreeMap<String, String>,
    /// The CLI whose output format the transcript is in; `None` for a plain command.
    preset: Option<AgentPreset>,
}

/// What one run of the agent produced, besides its edits.
struct Outcome {
    description: Option<String>,
    ideas: Vec<String>,
    report: Report,
}

impl CommandAgent {
    pub fn new(
        command: String,
        env: BTreeMap<String, String>,
        preset: Option<AgentPreset>,
    ) -> Self {
        CommandAgent {
            command,
            env,
            preset,
        }
    }

    /// Renders `template`, runs the command on it, and returns what it reported.
    fn run(
        &self,
        request: &Request,
        template: TemplateKind,
        limit: Duration,
        watch: &mut dyn Watch,
    ) -> Result<Outcome, ProposeError> {
        write_prompt(request, template)?;
        let env = self.environment(request, template);
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
                cpus: None,
            },
            &mut transcript,
        )
        .map_err(|err| {
            ProposeError::Failed(format!("cannot start the agent `{}`: {err}", self.command))
        })?;
        let report = match self.preset {
            Some(preset) => transcripts::read_report(preset, &request.transcript),
            None => Report::default(),
        };
        self.check_ending(request, finished.ending, &report, limit)?;
        let (description, ideas) = self.what_it_did(&report, transcript);
        Ok(Outcome {
            description,
            ideas,
            report,
        })
    }

    /// The agent's environment: arun's own and the pipeline's variables, and the `ARUN_*` ones
    /// that say where the prompt, the repository and the run are.
    fn environment(&self, request: &Request, template: TemplateKind) -> Environment {
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
            .set("ARUN_RUN_DIR", request.run_dir.display().to_string())
            .set("ARUN_EDITABLE", request.pipeline.target.editable.join(" "));
        env
    }

    /// An error when the agent was interrupted, failed, or reported an error; a failure that
    /// cost something says what it cost.
    fn check_ending(
        &self,
        request: &Request,
        ending: Ending,
        report: &Report,
        limit: Duration,
    ) -> Result<(), ProposeError> {
        let tool = self.preset.map_or("the agent", presets::name);
        let failure = match (ending, &report.error) {
            (Ending::Interrupted, _) => return Err(ProposeError::Interrupted),
            (ending, None) if ending.success() => None,
            (ending, Some(error)) if ending.success() => {
                Some(format!("reported an error: {}", clip(error)))
            }
            (ending, error) => Some(format!(
                "failed ({}){}",
                ending.describe(limit),
                error
                    .as_ref()
                    .map(|e| format!(": {}", clip(e)))
                    .unwrap_or_default()
            )),
        };
        let Some(failure) = failure else {
            return Ok(());
        };
        let reason = format!(
            "{tool} {failure}; its output is in {}",
            request.transcript.display()
        );
        Err(if report.cost_usd.is_some() || report.tokens.is_some() {
            ProposeError::PaidFailure {
                reason,
                cost_usd: report.cost_usd,
                tokens: report.tokens,
            }
        } else {
            ProposeError::Failed(reason)
        })
    }

    /// The description and the ideas the agent gave. A tool with JSON output says what it did
    /// in its final message; a plain command in its output lines.
    fn what_it_did(
        &self,
        report: &Report,
        transcript: Transcript,
    ) -> (Option<String>, Vec<String>) {
        match &report.message {
            Some(message) => {
                let mut ignore = exec::Ignore;
                let mut from_message = Transcript::new(&mut ignore);
                for line in message.lines() {
                    from_message.line(line);
                }
                (
                    from_message
                        .description
                        .or(transcript.description)
                        .or(from_message.first_line),
                    from_message.ideas,
                )
            }
            None if self.preset.is_some_and(|p| p != AgentPreset::Aider) => {
                (transcript.description, transcript.ideas)
            }
            None => (
                transcript.description.or(transcript.first_line),
                transcript.ideas,
            ),
        }
    }
}

/// Renders `template` for the request and writes it to the prompt file.
fn write_prompt(request: &Request, template: TemplateKind) -> Result<(), ProposeError> {
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
        .map_err(|err| ProposeError::Failed(format!("cannot write the prompt: {err}")))
}

impl Proposer for CommandAgent {
    fn propose(
        &mut self,
        request: &Request,
        watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError> {
        let outcome = self.run(
            request,
            request.task.template(),
            request.pipeline.proposer.timeout,
            watch,
        )?;
        Ok(Proposal {
            description: outcome.description,
            details: serde_json::Value::Null,
            cost_usd: outcome.report.cost_usd,
            tokens: outcome.report.tokens,
        })
    }

    fn next_ideas(&mut self, request: &Request) -> Vec<String> {
        let limit = request.pipeline.proposer.timeout.min(IDEAS_TIMEOUT);
        match self.run(request, TemplateKind::Summary, limit, &mut exec::Ignore) {
            Ok(outcome) => outcome.ideas,
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

impl Watch for Transcript<'_> {
    fn line(&mut self, line: &str) {
        let trimmed = crate::text::strip_ansi(line).trim().to_string();
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

    fn note(&mut self, message: &str) {
        self.watch.note(message);
    }
}
