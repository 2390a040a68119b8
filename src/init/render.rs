//! The pipeline file `arun init` writes: TOML with a comment on every guess, the alternatives
//! commented out beside it.

use std::fmt::Write as _;

use super::knobs::{Kind, Suggestion};
use super::project::{Guess, Project};
use crate::config::{Goal, MemoryUnit};

/// Everything the file says, decided.
pub struct Plan<'a> {
    pub name: String,
    /// `[target] repo`, relative to the pipeline file.
    pub repo: String,
    pub project: &'a Project,
    /// `[proposer] instructions-file`, relative to the pipeline file.
    pub instructions_file: Option<String>,
    pub budget: Guess,
    pub metric: MetricPlan,
    pub extra: Vec<(String, String)>,
    pub memory: Option<(String, MemoryUnit, String)>,
    /// Where the values came from, e.g. "a 60s probe run of `uv run train.py`".
    pub probe: String,
    /// Other values that could be the metric: key, words.
    pub alternatives: Vec<(String, String)>,
    pub knobs: Vec<Suggestion>,
    /// Knob search as the proposer (the knobs then uncommented).
    pub use_knobs: bool,
}

pub struct MetricPlan {
    pub key: String,
    pub regex: String,
    pub goal: Goal,
    /// Why this value, in words.
    pub why: String,
    /// Whether the regex read exactly the values the probe printed.
    pub checked: bool,
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A regex as a TOML literal string when it can be one (no escaping to read through).
fn regex_literal(regex: &str) -> String {
    if regex.contains('\'') || regex.contains('\n') {
        quoted(regex)
    } else {
        format!("'{regex}'")
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    header(&mut out, plan);
    target(&mut out, plan);
    experiment(&mut out, plan);
    metric(&mut out, plan);
    proposer(&mut out, plan);
    knobs(&mut out, plan);
    out
}

fn header(out: &mut String, plan: &Plan) {
    let metric = &plan.metric;
    let _ = writeln!(
        out,
        "# Written by `arun init`: each guess says why in a comment. Try it once, without starting\n\
         # a run, with `arun check <this file>`; see `arun schema` for every key.\n"
    );
    let _ = writeln!(out, "name = {}", quoted(&plan.name));
    let description = format!(
        "Improve `{}` of `{}` ({} is better).",
        metric.key,
        plan.project.editable.value,
        metric.goal.better_word()
    );
    let _ = writeln!(out, "description = {}\n", quoted(&description));
}

fn target(out: &mut String, plan: &Plan) {
    let project = plan.project;
    let _ = writeln!(out, "[target]");
    let _ = writeln!(out, "repo = {}", quoted(&plan.repo));
    let _ = writeln!(
        out,
        "# {}: {}",
        project.editable.value, project.editable.why
    );
    let _ = writeln!(
        out,
        "editable = {}",
        list(std::slice::from_ref(&project.editable.value))
    );
    for file in &project.read_only {
        let _ = writeln!(out, "# {}: {}", file.value, file.why);
    }
    let read_only: Vec<String> = project.read_only.iter().map(|g| g.value.clone()).collect();
    let _ = writeln!(out, "read-only = {}", list(&read_only));
    if !project.context.is_empty() {
        let _ = writeln!(
            out,
            "context = {}            # shown to agents, not pinned",
            list(&project.context)
        );
    }
    out.push('\n');
}

fn experiment(out: &mut String, plan: &Plan) {
    let project = plan.project;
    let _ = writeln!(out, "[experiment]");
    if let Some(build) = &project.build {
        let _ = writeln!(out, "# {}; not counted in the budget", build.why);
        let _ = writeln!(out, "build = {}", quoted(&build.value));
    }
    let _ = writeln!(out, "# {}", project.run.why);
    let _ = writeln!(out, "run = {}", quoted(&project.run.value));
    let _ = writeln!(
        out,
        "# {}. The script gets it in ARUN_BUDGET_SECONDS.",
        plan.budget.why
    );
    let _ = writeln!(out, "budget = {}", quoted(&plan.budget.value));
    let _ = writeln!(
        out,
        "# hard-limit = \"...\"                # default: twice the budget, then SIGTERM, grace, SIGKILL"
    );
    if !project.env.is_empty() {
        let _ = writeln!(out, "\n[experiment.env]");
        for (name, value, why) in &project.env {
            let _ = writeln!(out, "# {why}");
            let _ = writeln!(out, "{name} = {}", quoted(value));
        }
    }
    out.push('\n');
}

fn metric(out: &mut String, plan: &Plan) {
    let metric = &plan.metric;
    let _ = writeln!(out, "[metric]");
    let _ = writeln!(out, "# From {}.", plan.probe);
    let _ = writeln!(out, "# {}: {}.", metric.key, metric.why);
    if !plan.alternatives.is_empty() {
        let _ = writeln!(
            out,
            "# Other candidates (`arun init --metric NAME` to choose one):"
        );
        for (key, words) in &plan.alternatives {
            let _ = writeln!(out, "#   {key}: {words}");
        }
    }
    let _ = writeln!(out, "name = {}", quoted(&metric.key));
    let check = if metric.checked {
        "reads exactly the values the probe printed"
    } else {
        "CHECK: did not read exactly the values the probe printed"
    };
    let _ = writeln!(out, "regex = {}   # {check}", regex_literal(&metric.regex));
    let goal = match metric.goal {
        Goal::Minimize => "minimize",
        Goal::Maximize => "maximize",
    };
    let _ = writeln!(out, "goal = {}", quoted(goal));
    if let Some((key, unit, why)) = &plan.memory {
        let unit_name = match unit {
            MemoryUnit::Bytes => "bytes",
            MemoryUnit::Mb => "mb",
            MemoryUnit::Gb => "gb",
        };
        let _ = writeln!(
            out,
            "memory = {}   # peak memory, when no GPU reading is available",
            quoted(key)
        );
        let _ = writeln!(out, "memory-unit = {}   # {why}", quoted(unit_name));
    }
    if !plan.extra.is_empty() {
        let _ = writeln!(
            out,
            "\n[metric.extra]                         # more values for results and reports"
        );
        for (key, regex) in &plan.extra {
            let _ = writeln!(out, "{key} = {}", regex_literal(regex));
        }
    }
    out.push('\n');
}

const PRESETS: [&str; 4] = ["codex", "gemini", "aider", "opencode"];

fn proposer(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "[proposer]");
    if plan.use_knobs {
        let _ = writeln!(
            out,
            "kind = \"knobs\"                         # the built-in search over the [[knob]]s below; no LLM\n\
             # kind = \"agent\"                       # or a coding agent (below)"
        );
    } else {
        let _ = writeln!(
            out,
            "kind = \"agent\"                         # \"agent\", \"http\" or \"knobs\" (each set up below)"
        );
    }
    match &plan.instructions_file {
        Some(path) => {
            let _ = writeln!(
                out,
                "instructions-file = {}   # the repository's research instructions",
                quoted(path)
            );
        }
        None => {
            let text = format!(
                "Improve {} ({} is better) within the time budget. Only {} may change; the \
                 read-only files are the fixed ground truth. Simpler is better.",
                plan.metric.key,
                plan.metric.goal.better_word(),
                plan.project.editable.value
            );
            let _ = writeln!(out, "instructions = {}", quoted(&text));
        }
    }
    let _ = writeln!(out, "\n[proposer.agent]");
    let _ = writeln!(
        out,
        "preset = \"claude\"                       # Claude Code; log in once with `claude`"
    );
    for preset in PRESETS {
        let _ = writeln!(out, "# preset = {}", quoted(preset));
    }
    let _ = writeln!(
        out,
        "\n# [proposer.http]                      # kind = \"http\": any OpenAI-compatible server\n\
         # base-url = \"http://localhost:8000/v1\"\n\
         # model = \"qwen2.5-coder-32b\"\n\
         # api-key-env = \"OPENAI_API_KEY\"\n"
    );
    let _ = writeln!(
        out,
        "[proposer.knobs]                       # kind = \"knobs\": searches the [[knob]]s"
    );
    let _ = writeln!(out, "seed = 0\n");
}

fn knobs(out: &mut String, plan: &Plan) {
    let file = &plan.project.editable.value;
    let found = plan
        .knobs
        .iter()
        .filter(|s| matches!(s, Suggestion::Knob(_)))
        .count();
    if found == 0 {
        let _ = writeln!(
            out,
            "# No UPPER_CASE constant with a number for a value in `{file}`: no knobs."
        );
        return;
    }
    let prefix = if plan.use_knobs { "" } else { "# " };
    if !plan.use_knobs {
        let _ = writeln!(
            out,
            "# Knobs: the constants of `{file}` the knob search may change (`kind = \"knobs\"`).\n\
             # Uncomment those to search; `arun init --knobs` writes them uncommented."
        );
    }
    for suggestion in &plan.knobs {
        match suggestion {
            Suggestion::Knob(knob) => {
                let _ = writeln!(out);
                let now = match &knob.comment {
                    Some(comment) => format!("now {} ({comment})", knob.literal),
                    None => format!("now {}", knob.literal),
                };
                let _ = writeln!(out, "# {}: {now}; {}", knob.name, knob.why);
                let _ = writeln!(out, "{prefix}[[knob]]");
                let _ = writeln!(out, "{prefix}name = {}", quoted(&knob.name));
                for line in kind_lines(&knob.kind) {
                    let _ = writeln!(out, "{prefix}{line}");
                }
            }
            Suggestion::Skipped { name, why } => {
                let _ = writeln!(out, "\n# {name}: not a knob, {why}");
            }
        }
    }
}

fn kind_lines(kind: &Kind) -> Vec<String> {
    match kind {
        Kind::Float { min, max, log } => vec![
            "kind = \"float\"".to_string(),
            format!("scale = \"{}\"", if *log { "log" } else { "linear" }),
            format!("min = {min}"),
            format!("max = {max}"),
        ],
        Kind::Int { min, max } => vec![
            "kind = \"int\"".to_string(),
            format!("min = {min}"),
            format!("max = {max}"),
        ],
        Kind::Pow2 { min, max } => vec![
            "kind = \"pow2\"".to_string(),
            format!("min = {min}"),
            format!("max = {max}"),
        ],
        Kind::Choice { choices } => {
            let literals: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
            vec![
                "kind = \"choice\"".to_string(),
                format!("choices = [{}]", literals.join(", ")),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_literal_strings_and_read_back_unchanged() {
        assert_eq!(
            regex_literal(r"^val_bpb:\s*([0-9.]+)"),
            r"'^val_bpb:\s*([0-9.]+)'"
        );
        for regex in [
            r"^val_bpb:\s*([0-9.]+)",
            r"'loss':\s*([0-9.]+)",
            r#""acc":\s*(\S+)"#,
        ] {
            let table: toml::Table = format!("r = {}", regex_literal(regex)).parse().unwrap();
            assert_eq!(table["r"].as_str(), Some(regex));
        }
    }
}
