//! The HTTP proposer: an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's
//! server, Ollama) answers the prompt with SEARCH/REPLACE blocks, which arun applies itself
//! (`edit.rs`). An edit that does not apply goes back to the model with the error and the
//! nearest lines of the file, a bounded number of times; then the experiment is a crash.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Proposal, ProposeError, Proposer, Request, Tokens};
use crate::exec::{self, Watch};
use crate::prompt::TemplateKind;

/// How long the model may take to list next ideas when the run stops.
const IDEAS_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer body read from the server.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Editable files up to this many lines in all may also be answered as whole files.
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
    /// Read once from `api_key_env`; only ever sent in the Authorization header.
    api_key: Option<String>,
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
        Ok(HttpModel { settings, api_key })
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.settings.base_url)
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
                    return Err(ProposeError::Failed(
                        "the HTTP request ended without an answer".to_string(),
                    ));
                }
            }
        };
        let (status, text) = answer.map_err(|err| {
            ProposeError::Failed(format!("cannot reach the model at `{}`: {err}", self.url()))
        })?;
        if !(200..300).contains(&status) {
            return Err(ProposeError::Failed(format!(
                "the model server at `{}` answered HTTP {status}: {}",
                self.url(),
                snippet(&text)
            )));
        }
        let value: Value = serde_json::from_str(&text).map_err(|err| {
            ProposeError::Failed(format!(
                "the model server's answer is not JSON ({err}): {}",
                snippet(&text)
            ))
        })?;
        let content = value
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProposeError::Failed(format!(
                    "the model server's answer has no `choices[0].message.content`: {}",
                    snippet(&text)
                ))
            })?;
        let tokens = value.get("usage").map(|usage| Tokens {
            input: usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        });
        for line in content.lines() {
            watch.line(line);
        }
        Ok((content.to_string(), tokens))
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
    let text = crate::results::one_line(text);
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// What the model is told about answering, besides the prompt itself.
fn system_prompt(request: &Request) -> String {
    let editable = &request.pipeline.target.editable;
    let files = editable
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let lines: usize = request
        .context
        .files
        .editable
        .iter()
        .map(|f| f.content.lines().count())
        .sum();
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
    if lines <= WHOLE_FILE_LINES {
        text.push_str(
            "\n\nInstead of blocks you may give a whole new file: its path on a line of its own, \
             then its complete new content in one fenced code block.",
        );
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

    fn write(&mut self, heading: &str, text: &str) {
        if let Some(file) = &mut self.0 {
            let _ = writeln!(file, "## {heading}\n\n{text}\n");
        }
    }
}

/// The `DESCRIPTION:` line of an answer, the last one winning.
fn description(answer: &str) -> Option<String> {
    answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DESCRIPTION:"))
        .map(crate::results::one_line)
        .rfind(|d| !d.is_empty())
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
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(request)}),
            json!({"role": "user", "content": prompt}),
        ];
        let editable = &request.pipeline.target.editable;
        let tries = self.settings.edit_retries + 1;
        let mut tokens = None;
        let mut last_description = None;
        let mut last_error = String::new();
        for attempt in 1..=tries {
            let (answer, used) =
                match self.complete(&messages, request.pipeline.proposer.timeout, watch) {
                    Ok(answer) => answer,
                    Err(err) => {
                        if let ProposeError::Failed(reason) = &err {
                            transcript.write("error", reason);
                        }
                        return Err(err);
                    }
                };
            tokens = add(tokens, used);
            transcript.write(&format!("answer {attempt}"), &answer);
            let description = description(&answer);
            last_description = description.clone().or(last_description);
            let applied = crate::edit::parse(&answer, editable)
                .and_then(|edits| crate::edit::apply(request.repo, &edits));
            match applied {
                Ok(changed) if !changed.is_empty() => {
                    return Ok(Proposal {
                        description,
                        details: Value::Null,
                        cost_usd: None,
                        tokens,
                    });
                }
                Ok(_) => last_error = "the edit changes nothing in the files".to_string(),
                Err(error) => last_error = error,
            }
            transcript.write(&format!("edit {attempt} did not apply"), &last_error);
            messages.push(json!({"role": "assistant", "content": answer}));
            messages.push(json!({
                "role": "user",
                "content": format!(
                    "Your edit could not be applied:\n\n{last_error}\n\nAnswer again in the same \
                     format, with the DESCRIPTION line and every block of your edit."
                ),
            }));
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
                    .map(crate::results::one_line)
                    .take(10)
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }
}
