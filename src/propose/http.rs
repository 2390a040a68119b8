//! The HTTP proposer: an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's
//! server, Ollama) answers the prompt with SEARCH/REPLACE blocks, which arun applies itself
//! (`edit.rs`). An edit that does not apply goes back to the model with the error and the
//! nearest lines of the file, a bounded number of times; then the experiment is a crash.
//!
//! The API key is registered as a secret when the proposer is built, and everything this module
//! writes or returns (transcript, errors, descriptions) is redacted: a server may echo the key in
//! an error body.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Proposal, ProposeError, Proposer, Request, Tokens, clip};
use crate::config::prompt::TemplateKind;
use crate::propose::edit::Scope;
use crate::run::exec::{self, Watch};
use crate::run::secrets;

/// How long the model may take to list next ideas when the run stops.
const IDEAS_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer body read from the server.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Editable files up to this many lines in all may also be answered as whole files (those the
/// prompt showed whole).
const WHOLE_FILE_LINES: usize = 300;

pub struct Settings {
    /// Up to `/v1`, without a trailing slash.
    pub base_url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub edit_retries: u32,
}

pub struct HttpModel {
    settings: Settings,
    /// Read once from `api_key_env`; only ever sent in the Authorization header, and registered
    /// as a secret so that nothing arun writes shows it.
    api_key: Option<String>,
    /// Whether the run was told that the server reports no usage, so `max-tokens` cannot work.
    warned_no_usage: bool,
}

impl HttpModel {
    pub fn new(settings: Settings) -> Result<HttpModel, String> {
        let api_key = match &settings.api_key_env {
            None => None,
            Some(name) => match std::env::var(name) {
                Ok(key) if !key.trim().is_empty() => Some(key.trim().to_string()),
                _ => {
                    return Err(format!(
                        "`proposer.http.api-key-env` names `{name}`, which is not set; export \
                         `{name}` with the API key, or remove `api-key-env` for a server without one"
                    ));
                }
            },
        };
        if let Some(key) = &api_key {
            secrets::register(key);
        }
        Ok(HttpModel {
            settings,
            api_key,
            warned_no_usage: false,
        })
    }

    /// Says once per run that `[limits] max-tokens` is set but cannot trip: the server reports
    /// no usage, so every proposal counts as 0 tokens.
    fn warn_no_usage(&mut self, request: &Request, watch: &mut dyn Watch) {
        if self.warned_no_usage || request.pipeline.limits.max_tokens.is_none() {
            return;
        }
        self.warned_no_usage = true;
        watch.note(
            "arun: warning: the model server reports no token usage; [limits] max-tokens cannot \
             be enforced",
        );
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.settings.base_url)
    }

    /// One answer to the conversation so far, and the tokens it used; a failure goes to the
    /// transcript, and after answers that were paid for (`paid`) it says what they cost.
    fn answer(
        &mut self,
        messages: &[Value],
        request: &Request,
        paid: Option<Tokens>,
        transcript: &mut Transcript,
        watch: &mut dyn Watch,
    ) -> Result<(String, Option<Tokens>), ProposeError> {
        let (answer, used) = match self.complete(messages, request.pipeline.proposer.timeout, watch)
        {
            Ok(answer) => answer,
            Err(ProposeError::Failed(reason)) if paid.is_some() => {
                // The answers before this one were paid for.
                transcript.write("error", &reason);
                return Err(ProposeError::PaidFailure {
                    reason,
                    cost_usd: None,
                    tokens: paid,
                });
            }
            Err(err) => {
                if let ProposeError::Failed(reason) = &err {
                    transcript.write("error", reason);
                }
                return Err(err);
            }
        };
        if used.is_none() {
            self.warn_no_usage(request, watch);
        }
        Ok((answer, used))
    }

    /// One chat completion: the answer's text and the tokens it used. Waits in steps so that
    /// Ctrl-C is noticed while the model thinks.
    fn complete(
        &self,
        messages: &[Value],
        limit: Duration,
        watch: &mut dyn Watch,
    ) -> Result<(String, Option<Tokens>), ProposeError> {
        let mut body = json!({
            "model": self.settings.model,
            "messages": messages,
            "stream": false,
        });
        if let Some(temperature) = self.settings.temperature {
            body["temperature"] = json!(temperature);
        }
        let url = self.url();
        let key = self.api_key.clone();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(post(&url, key.as_deref(), &body, limit));
        });
        let started = Instant::now();
        let answer = loop {
            if exec::interrupt::requested() {
                return Err(ProposeError::Interrupted);
            }
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => break answer,
                Err(mpsc::RecvTimeoutError::Timeout) => watch.tick(started.elapsed(), 0),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(failed(
                        "the HTTP request ended without an answer".to_string(),
                    ));
                }
            }
        };
        let (status, text) = answer
            .map_err(|err| failed(format!("cannot reach the model at `{}`: {err}", self.url())))?;
        // The body may echo the key (some servers quote the header they refused).
        let text = secrets::redact(&text);
        if !(200..300).contains(&status) {
            return Err(failed(format!(
                "the model server at `{}` answered HTTP {status}: {}",
                self.url(),
                snippet(&text)
            )));
        }
        let value: Value = serde_json::from_str(&text).map_err(|err| {
            failed(format!(
                "the model server's answer is not JSON ({err}): {}",
                snippet(&text)
            ))
        })?;
        let content = value
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                failed(format!(
                    "the model server's answer has no `choices[0].message.content`: {}",
                    snippet(&text)
                ))
            })?;
        let tokens = usage_tokens(value.get("usage"));
        for line in content.lines() {
            watch.line(line);
        }
        Ok((content.to_string(), tokens))
    }
}

/// A failed proposal whose reason shows no secret.
fn failed(reason: String) -> ProposeError {
    ProposeError::Failed(secrets::redact(&reason).into_owned())
}

/// The tokens a completion's `usage` reports: `prompt_tokens` in, `completion_tokens` out. A
/// part that is missing is what `total_tokens` leaves of the other, so a server that reports only
/// the total has it all counted as input; `[limits] max-tokens` counts it either way. `None`
/// when the server reports none of the three.
fn usage_tokens(usage: Option<&Value>) -> Option<Tokens> {
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
    let (input, output) = (count("prompt_tokens"), count("completion_tokens"));
    match count("total_tokens") {
        None if input.is_none() && output.is_none() => None,
        None => Some(Tokens {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
        }),
        Some(total) => {
            let input = input.unwrap_or_else(|| total.saturating_sub(output.unwrap_or(0)));
            Some(Tokens {
                input,
                output: output.unwrap_or_else(|| total.saturating_sub(input)),
            })
        }
    }
}

/// POSTs `body` as JSON; the status and body text, whatever the status.
fn post(
    url: &str,
    key: Option<&str>,
    body: &Value,
    limit: Duration,
) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(limit))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(url);
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let mut response = request.send_json(body)?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()?;
    Ok((status, text))
}

/// The start of a server's answer for an error message.
fn snippet(text: &str) -> String {
    let text = crate::text::one_line(text);
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Whether whole files may be offered: the editable files as the prompt shows them have
/// [`WHOLE_FILE_LINES`] lines or fewer in all.
fn short_enough_for_whole_files(request: &Request) -> bool {
    let lines: usize = request
        .context
        .files
        .editable
        .iter()
        .map(|f| f.content.lines().count())
        .sum();
    lines <= WHOLE_FILE_LINES
}

/// The editable files the prompt showed only in part (cut to keep it bounded).
fn shown_in_part(request: &Request) -> Vec<String> {
    request
        .context
        .files
        .editable
        .iter()
        .filter(|f| f.truncated)
        .map(|f| f.path.clone())
        .collect()
}

fn list<'a>(paths: impl IntoIterator<Item = &'a String>) -> String {
    paths
        .into_iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the model is told about answering, besides the prompt itself.
fn system_prompt(request: &Request, scope: &Scope) -> String {
    let editable = &request.pipeline.target.editable;
    let files = list(editable);
    let example = editable.first().map(String::as_str).unwrap_or("train.py");
    let mut text = format!(
        "You propose code changes for an automated research loop. You cannot run commands; the \
         runner applies your edit, runs the experiment and reports the result in a later \
         request. The files you may change: {files}.\n\n\
         Answer with one line `DESCRIPTION: <what you changed, in a few words>`, then your edit \
         as one or more SEARCH/REPLACE blocks, each like this:\n\n\
         {example}\n\
         <<<<<<< SEARCH\n\
         lines copied exactly from the current file\n\
         =======\n\
         the lines that replace them\n\
         >>>>>>> REPLACE\n\n\
         The file's path goes on the line before `<<<<<<< SEARCH`. The SEARCH part must copy \
         whole lines of the file exactly, enough of them to match one place only; keep it \
         short, a few lines around the change. Use one block per place you change."
    );
    let whole: Vec<&String> = editable.iter().filter(|p| scope.may_be_whole(p)).collect();
    if !whole.is_empty() {
        text.push_str(
            "\n\nInstead of blocks you may give a whole new file: its path on a line of its own, \
             then its complete new content in one fenced code block, never a part of it.",
        );
        if whole.len() < editable.len() {
            text.push_str(&format!(
                " Only these files may be given whole: {}.",
                list(whole.iter().copied())
            ));
        }
    }
    text
}

fn write_prompt(path: &Path, prompt: &str) -> Result<(), ProposeError> {
    path.parent().map(std::fs::create_dir_all);
    std::fs::write(path, prompt)
        .map_err(|err| ProposeError::Failed(format!("cannot write the prompt: {err}")))
}

/// The transcript of one proposal: the model's answers and what arun said back.
struct Transcript(Option<std::fs::File>);

impl Transcript {
    fn create(path: &Path) -> Transcript {
        path.parent().map(std::fs::create_dir_all);
        Transcript(std::fs::File::create(path).ok())
    }

    /// Appends a section, with any secret redacted.
    fn write(&mut self, heading: &str, text: &str) {
        if let Some(file) = &mut self.0 {
            let _ = writeln!(file, "## {heading}\n\n{}\n", secrets::redact(text));
        }
    }
}

/// The `DESCRIPTION:` line of an answer outside its reasoning sections, the last one winning,
/// cut to [`super::MAX_DESCRIPTION`] characters.
fn description(answer: &str) -> Option<String> {
    crate::propose::edit::without_reasoning(answer)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DESCRIPTION:"))
        .map(clip)
        .rfind(|d| !d.is_empty())
}

/// Applies the edit an answer holds; the error, for the model, when it does not apply or
/// changes nothing.
fn apply_answer(answer: &str, scope: &Scope, repo: &Path) -> Result<(), String> {
    let applied = crate::propose::edit::parse(answer, scope)
        .and_then(|edits| crate::propose::edit::apply(repo, &edits));
    match applied {
        Ok(changed) if !changed.is_empty() => Ok(()),
        Ok(_) => Err("the edit changes nothing in the files".to_string()),
        Err(error) => Err(secrets::redact(&error).into_owned()),
    }
}

/// Adds the answer whose edit did not apply, and why, to the conversation, asking for another.
fn ask_again(messages: &mut Vec<Value>, answer: String, error: &str) {
    messages.push(json!({"role": "assistant", "content": answer}));
    messages.push(json!({
        "role": "user",
        "content": format!(
            "Your edit could not be applied:\n\n{error}\n\nAnswer again in the same \
             format, with the DESCRIPTION line and every block of your edit."
        ),
    }));
}

fn add(total: Option<Tokens>, more: Option<Tokens>) -> Option<Tokens> {
    match (total, more) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

impl Proposer for HttpModel {
    fn propose(
        &mut self,
        request: &Request,
        watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError> {
        let prompt = request
            .pipeline
            .proposer
            .templates
            .get(request.task.template())
            .render(request.context)
            .map_err(ProposeError::Failed)?;
        write_prompt(&request.prompt_file, &prompt)?;
        let mut transcript = Transcript::create(&request.transcript);
        transcript.write(
            "request",
            &format!(
                "model `{}` at {}; the prompt is {}",
                self.settings.model,
                self.url(),
                request.prompt_file.display()
            ),
        );
        let shown_in_part = shown_in_part(request);
        let scope = Scope {
            editable: &request.pipeline.target.editable,
            whole_files: short_enough_for_whole_files(request),
            shown_in_part: &shown_in_part,
        };
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(request, &scope)}),
            json!({"role": "user", "content": prompt}),
        ];
        let tries = self.settings.edit_retries + 1;
        let mut tokens = None;
        let mut last_description = None;
        let mut last_error = String::new();
        for attempt in 1..=tries {
            let (answer, used) = self.answer(&messages, request, tokens, &mut transcript, watch)?;
            tokens = add(tokens, used);
            transcript.write(&format!("answer {attempt}"), &answer);
            let description = description(&answer);
            last_description = description.clone().or(last_description);
            match apply_answer(&answer, &scope, request.repo) {
                Ok(()) => {
                    return Ok(Proposal {
                        description,
                        details: Value::Null,
                        cost_usd: None,
                        tokens,
                    });
                }
                Err(error) => last_error = error,
            }
            transcript.write(&format!("edit {attempt} did not apply"), &last_error);
            ask_again(&mut messages, answer, &last_error);
        }
        Err(ProposeError::Rejected {
            description: last_description.unwrap_or_else(|| "an edit that did not apply".into()),
            reason: format!("the model's edit did not apply in {tries} tries: {last_error}"),
            cost_usd: None,
            tokens,
        })
    }

    fn next_ideas(&mut self, request: &Request) -> Vec<String> {
        let Ok(prompt) = request
            .pipeline
            .proposer
            .templates
            .get(TemplateKind::Summary)
            .render(request.context)
        else {
            return Vec::new();
        };
        if write_prompt(&request.prompt_file, &prompt).is_err() {
            return Vec::new();
        }
        let messages = [json!({"role": "user", "content": prompt})];
        let limit = request.pipeline.proposer.timeout.min(IDEAS_TIMEOUT);
        match self.complete(&messages, limit, &mut exec::Ignore) {
            Ok((answer, _)) => {
                Transcript::create(&request.transcript).write("answer", &answer);
                answer
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("- "))
                    .map(clip)
                    .take(10)
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propose::MAX_DESCRIPTION;

    #[test]
    fn usage_counts_whatever_part_the_server_reports() {
        let cases = [
            (
                json!({"prompt_tokens": 10, "completion_tokens": 2}),
                Some((10, 2)),
            ),
            (
                json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}),
                Some((10, 2)),
            ),
            (json!({"total_tokens": 12}), Some((12, 0))),
            (
                json!({"prompt_tokens": 10, "total_tokens": 12}),
                Some((10, 2)),
            ),
            (
                json!({"completion_tokens": 2, "total_tokens": 12}),
                Some((10, 2)),
            ),
            (json!({"completion_tokens": 2}), Some((0, 2))),
            (json!({}), None),
            (json!(null), None),
        ];
        for (usage, expected) in cases {
            let expected = expected.map(|(input, output)| Tokens { input, output });
            assert_eq!(usage_tokens(Some(&usage)), expected, "{usage}");
        }
        assert_eq!(usage_tokens(None), None);
    }

    #[test]
    fn descriptions_skip_reasoning_and_are_clipped_to_one_table_cell() {
        let answer = "<think>\nDESCRIPTION: a draft\n</think>\nDESCRIPTION: lower LR\n";
        assert_eq!(description(answer).as_deref(), Some("lower LR"));
        assert_eq!(
            description("<think>\nDESCRIPTION: a draft\n</think>\n"),
            None
        );
        let long = format!("DESCRIPTION: {}", "word ".repeat(100));
        let clipped = description(&long).unwrap();
        assert_eq!(clipped.chars().count(), MAX_DESCRIPTION);
        assert!(clipped.ends_with("..."), "{clipped}");
    }
}
