//! What the coding-agent CLIs arun knows by name report in their transcripts: the final
//! message, cost and tokens. Their command lines are `config::presets`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::config::file::AgentPreset;
use crate::run::journal::Tokens;

/// What an agent reported in its transcript, besides the edit itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The agent's final message, for tools whose output is JSON.
    pub message: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens: Option<Tokens>,
    /// The tool reported that the task failed.
    pub error: Option<String>,
}

/// How much of a transcript's end is read for the report; JSON transcripts put the totals last.
const REPORT_BYTES: u64 = 8 * 1024 * 1024;

/// Reads `preset`'s report from the transcript file.
pub fn read_report(preset: AgentPreset, transcript: &Path) -> Report {
    let text = read_end(transcript, REPORT_BYTES).unwrap_or_default();
    parse_report(preset, &text)
}

fn read_end(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn parse_report(preset: AgentPreset, text: &str) -> Report {
    match preset {
        AgentPreset::Claude => claude(&json_values(text)),
        AgentPreset::Codex => codex(&json_values(text)),
        AgentPreset::Gemini => gemini(&json_values(text)),
        AgentPreset::Opencode => opencode(&json_values(text)),
        AgentPreset::Aider => aider(text),
    }
}

/// Every JSON object in `text` that starts at the beginning of a line, in order; other output
/// (warnings on stderr, progress) is skipped. An object may span lines (pretty-printed).
fn json_values(text: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let line_end = rest.find('\n').map_or(text.len(), |i| at + i + 1);
        if rest.starts_with('{') {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            if let Some(Ok(value)) = stream.next() {
                at += stream.byte_offset().max(1);
                values.push(value);
                continue;
            }
        }
        at = line_end;
    }
    values
}

fn number(value: &Value, path: &[&str]) -> Option<f64> {
    let mut value = value;
    for key in path {
        value = value.get(key)?;
    }
    value.as_f64()
}

fn count(value: &Value, path: &[&str]) -> u64 {
    number(value, path).map_or(0, |n| n.max(0.0) as u64)
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    let mut value = value;
    for key in path {
        value = value.get(key)?;
    }
    value.as_str().map(str::to_string)
}

/// `claude -p --output-format json`: one `{"type":"result", "result", "is_error",
/// "total_cost_usd", "usage": {...}}` object.
fn claude(values: &[Value]) -> Report {
    let Some(result) = values
        .iter()
        .rev()
        .find(|v| v.get("type").and_then(Value::as_str) == Some("result"))
    else {
        return Report::default();
    };
    let usage = |key: &str| count(result, &["usage", key]);
    let tokens = result.get("usage").map(|_| Tokens {
        input: usage("input_tokens")
            + usage("cache_creation_input_tokens")
            + usage("cache_read_input_tokens"),
        output: usage("output_tokens"),
    });
    let message = text(result, &["result"]);
    let failed = result.get("is_error").and_then(Value::as_bool) == Some(true);
    Report {
        error: failed.then(|| {
            message
                .clone()
                .or_else(|| text(result, &["subtype"]))
                .unwrap_or_else(|| "Claude Code reported an error".to_string())
        }),
        message,
        cost_usd: number(result, &["total_cost_usd"]),
        tokens,
    }
}

/// `codex exec --json`: JSONL events; `item.completed` agent messages, `turn.completed` usage,
/// `turn.failed` and `error` failures.
fn codex(values: &[Value]) -> Report {
    let mut report = Report::default();
    for value in values {
        match value.get("type").and_then(Value::as_str) {
            Some("item.completed")
                if text(value, &["item", "type"]).as_deref() == Some("agent_message") =>
            {
                report.message = text(value, &["item", "text"]);
            }
            Some("turn.completed") => {
                let used = Tokens {
                    input: count(value, &["usage", "input_tokens"]),
                    output: count(value, &["usage", "output_tokens"]),
                };
                report.tokens = Some(report.tokens.unwrap_or_default() + used);
            }
            Some("turn.failed") => report.error = text(value, &["error", "message"]),
            Some("error") => report.error = text(value, &["message"]),
            _ => {}
        }
    }
    report
}

/// `gemini --output-format json`: one `{"response", "stats": {"models": {NAME: {"tokens":
/// {"prompt", "candidates", ...}}}}, "error"}` object.
fn gemini(values: &[Value]) -> Report {
    let Some(output) = values
        .iter()
        .rev()
        .find(|v| v.get("response").is_some() || v.get("error").is_some())
    else {
        return Report::default();
    };
    let tokens = output
        .get("stats")
        .and_then(|s| s.get("models"))
        .and_then(Value::as_object)
        .map(|models| {
            models.values().fold(Tokens::default(), |sum, model| {
                sum + Tokens {
                    input: count(model, &["tokens", "prompt"]),
                    output: count(model, &["tokens", "candidates"]),
                }
            })
        });
    Report {
        message: text(output, &["response"]),
        cost_usd: None,
        tokens,
        error: output
            .get("error")
            .filter(|e| !e.is_null())
            .map(|e| text(e, &["message"]).unwrap_or_else(|| e.to_string())),
    }
}

/// `opencode run --format json`: JSONL events; `text` parts, `step_finish` parts with `cost`
/// and `tokens`, `error` events.
fn opencode(values: &[Value]) -> Report {
    let mut report = Report::default();
    let mut message = String::new();
    for value in values {
        match value.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = text(value, &["part", "text"]) {
                    message = text;
                }
            }
            Some("step_finish") => {
                if let Some(cost) = number(value, &["part", "cost"]) {
                    report.cost_usd = Some(report.cost_usd.unwrap_or(0.0) + cost);
                }
                let used = Tokens {
                    input: count(value, &["part", "tokens", "input"])
                        + count(value, &["part", "tokens", "cache", "read"])
                        + count(value, &["part", "tokens", "cache", "write"]),
                    output: count(value, &["part", "tokens", "output"])
                        + count(value, &["part", "tokens", "reasoning"]),
                };
                report.tokens = Some(report.tokens.unwrap_or_default() + used);
            }
            Some("error") => {
                report.error = text(value, &["error", "data", "message"])
                    .or_else(|| text(value, &["error", "message"]))
                    .or_else(|| Some(value.to_string()));
            }
            _ => {}
        }
    }
    report.message = (!message.is_empty()).then_some(message);
    report
}

/// aider prints one line per model call, e.g. `Tokens: 2.4k sent, 1.1k cache hit, 193
/// received. Cost: $0.0098 message, $0.0098 session.`
fn aider(text: &str) -> Report {
    static LINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^Tokens: ([0-9.]+[kM]?) sent, (?:.*? )?([0-9.]+[kM]?) received\.(?: Cost: \$([0-9.]+) message)?")
            .expect("valid regex")
    });
    let amount = |text: &str| -> u64 {
        let (digits, scale) = match text.strip_suffix('k') {
            Some(digits) => (digits, 1e3),
            None => match text.strip_suffix('M') {
                Some(digits) => (digits, 1e6),
                None => (text, 1.0),
            },
        };
        (digits.parse::<f64>().unwrap_or(0.0) * scale).round() as u64
    };
    let mut report = Report::default();
    for line in text.lines() {
        let line = crate::text::strip_ansi(line);
        let Some(captures) = LINE.captures(line.trim()) else {
            continue;
        };
        let used = Tokens {
            input: amount(&captures[1]),
            output: amount(&captures[2]),
        };
        report.tokens = Some(report.tokens.unwrap_or_default() + used);
        if let Some(cost) = captures.get(3).and_then(|c| c.as_str().parse::<f64>().ok()) {
            report.cost_usd = Some(report.cost_usd.unwrap_or(0.0) + cost);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_json_gives_result_cost_and_tokens() {
        let text = "warning: something on stderr\n{\"type\":\"result\",\"subtype\":\"success\",\
            \"is_error\":false,\"result\":\"Raised LR.\\nDESCRIPTION: raise LR to 0.04\",\
            \"total_cost_usd\":0.0123,\"usage\":{\"input_tokens\":10,\
            \"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\
            \"output_tokens\":50}}\n";
        let report = parse_report(AgentPreset::Claude, text);
        assert_eq!(
            report.message.as_deref(),
            Some("Raised LR.\nDESCRIPTION: raise LR to 0.04")
        );
        assert_eq!(report.cost_usd, Some(0.0123));
        assert_eq!(
            report.tokens,
            Some(Tokens {
                input: 1110,
                output: 50
            })
        );
        assert_eq!(report.error, None);
        let failed = parse_report(
            AgentPreset::Claude,
            "{\"type\":\"result\",\"subtype\":\"error_max_turns\",\"is_error\":true}\n",
        );
        assert_eq!(failed.error.as_deref(), Some("error_max_turns"));
    }

    #[test]
    fn codex_events_sum_usage_over_turns() {
        let text = [
            r#"{"type":"thread.started","thread_id":"t1"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.completed","item":{"id":"i0","type":"reasoning","text":"hmm"}}"#,
            r#"{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"DESCRIPTION: halve LR"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":1000,"output_tokens":80}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":0,"output_tokens":20}}"#,
        ]
        .join("\n");
        let report = parse_report(AgentPreset::Codex, &text);
        assert_eq!(report.message.as_deref(), Some("DESCRIPTION: halve LR"));
        assert_eq!(
            report.tokens,
            Some(Tokens {
                input: 1500,
                output: 100
            })
        );
        assert_eq!(report.cost_usd, None);
        let failed = parse_report(
            AgentPreset::Codex,
            r#"{"type":"turn.failed","error":{"message":"usage limit reached"}}"#,
        );
        assert_eq!(failed.error.as_deref(), Some("usage limit reached"));
    }

    #[test]
    fn gemini_pretty_json_after_other_output() {
        let text = "Loaded cached credentials.\n{\n  \"response\": \"DESCRIPTION: wider MLP\",\n  \
            \"stats\": {\n    \"models\": {\n      \"gemini-2.5-pro\": {\n        \"tokens\": \
            {\"prompt\": 900, \"candidates\": 40, \"total\": 960}\n      },\n      \
            \"gemini-2.5-flash\": {\"tokens\": {\"prompt\": 100, \"candidates\": 10}}\n    }\n  }\n}\n";
        let report = parse_report(AgentPreset::Gemini, text);
        assert_eq!(report.message.as_deref(), Some("DESCRIPTION: wider MLP"));
        assert_eq!(
            report.tokens,
            Some(Tokens {
                input: 1000,
                output: 50
            })
        );
    }

    #[test]
    fn opencode_events_give_text_cost_and_tokens() {
        let text = [
            r#"{"type":"step_start","part":{"type":"step-start"}}"#,
            r#"{"type":"text","part":{"type":"text","text":"DESCRIPTION: drop dropout"}}"#,
            r#"{"type":"step_finish","part":{"type":"step-finish","cost":0.002,"tokens":{"input":500,"output":30,"reasoning":5,"cache":{"read":100,"write":0}}}}"#,
            r#"{"type":"step_finish","part":{"type":"step-finish","cost":0.001,"tokens":{"input":50,"output":5,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
        ]
        .join("\n");
        let report = parse_report(AgentPreset::Opencode, &text);
        assert_eq!(report.message.as_deref(), Some("DESCRIPTION: drop dropout"));
        assert!((report.cost_usd.unwrap() - 0.003).abs() < 1e-12);
        assert_eq!(
            report.tokens,
            Some(Tokens {
                input: 650,
                output: 40
            })
        );
    }

    #[test]
    fn aider_token_lines_are_summed() {
        let text = "Applied edit to train.py\n\
            Tokens: 2.4k sent, 193 received. Cost: $0.0098 message, $0.0098 session.\n\
            Tokens: 3.3k sent, 2.0k cache write, 1.1k received. Cost: $0.02 message, $0.03 session.\n\
            Tokens: 120 sent, 7 received.\n";
        let report = parse_report(AgentPreset::Aider, text);
        assert_eq!(
            report.tokens,
            Some(Tokens {
                input: 5820,
                output: 1300
            })
        );
        assert!((report.cost_usd.unwrap() - 0.0298).abs() < 1e-12);
        assert_eq!(report.message, None);
    }
}
