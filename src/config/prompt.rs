//! Prompt templates (minijinja): the built-in ones from `templates/`, per-pipeline overrides, the
//! context they are rendered with, and strict rendering (an unknown variable is an error).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The most of the pipeline's `description` a prompt shows; validation refuses longer ones.
pub const DESCRIPTION_MAX_BYTES: usize = 4 * 1024;
/// The most of the pipeline's instructions a prompt shows; validation refuses longer ones.
pub const INSTRUCTIONS_MAX_BYTES: usize = 64 * 1024;

/// Which prompt a template produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Propose,
    FixCrash,
    Summary,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 3] = [
        TemplateKind::Propose,
        TemplateKind::FixCrash,
        TemplateKind::Summary,
    ];

    /// The key under `[proposer.templates]` and the built-in file's stem.
    pub fn key(self) -> &'static str {
        match self {
            TemplateKind::Propose => "propose",
            TemplateKind::FixCrash => "fix-crash",
            TemplateKind::Summary => "summary",
        }
    }

    fn builtin(self) -> &'static str {
        match self {
            TemplateKind::Propose => include_str!("../../templates/propose.md.j2"),
            TemplateKind::FixCrash => include_str!("../../templates/fix-crash.md.j2"),
            TemplateKind::Summary => include_str!("../../templates/summary.md.j2"),
        }
    }
}

/// One template's text and where it came from.
#[derive(Debug, Clone)]
pub struct Template {
    pub kind: TemplateKind,
    /// The override file, or `None` for the built-in template.
    pub path: Option<PathBuf>,
    pub source: String,
}

impl Template {
    pub fn builtin(kind: TemplateKind) -> Template {
        Template {
            kind,
            path: None,
            source: kind.builtin().to_string(),
        }
    }

    pub fn from_file(kind: TemplateKind, path: &Path) -> std::io::Result<Template> {
        Ok(Template {
            kind,
            path: Some(path.to_path_buf()),
            source: std::fs::read_to_string(path)?,
        })
    }

    fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => format!("built-in {}", self.kind.key()),
        }
    }

    /// Renders with `context`; a syntax error or an unknown variable is an error that names the
    /// template and line.
    pub fn render(&self, context: &PromptContext) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("fence", fence);
        let name = self.name();
        let describe = |err: minijinja::Error| {
            let line = err.line().map(|l| format!(" line {l}")).unwrap_or_default();
            let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
            format!("template `{name}`{line}: {}{detail}", err.kind())
        };
        env.add_template(&name, &self.source).map_err(describe)?;
        let template = env.get_template(&name).map_err(describe)?;
        template
            .render(minijinja::value::Serde(bounded(context)))
            .map_err(describe)
    }
}

/// `context` with the text the user wrote cut to its limit. Validation already refuses longer
/// text; this keeps a pipeline resolved some other way from sending a prompt of any size.
fn bounded(context: &PromptContext) -> Cow<'_, PromptContext> {
    let over = context.pipeline.description.len() > DESCRIPTION_MAX_BYTES
        || context.instructions.len() > INSTRUCTIONS_MAX_BYTES;
    if !over {
        return Cow::Borrowed(context);
    }
    let mut context = context.clone();
    cut(&mut context.pipeline.description, DESCRIPTION_MAX_BYTES);
    cut(&mut context.instructions, INSTRUCTIONS_MAX_BYTES);
    Cow::Owned(context)
}

/// Cuts `text` to at most `limit` bytes, at a character boundary, saying that it was cut.
fn cut(text: &mut String, limit: usize) {
    const MARK: &str = "\n[cut: the rest is over the limit]";
    if text.len() <= limit {
        return;
    }
    let mut end = limit.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
}

/// The `fence` filter: `{{ text | fence }}`, or `{{ text | fence("diff") }}` with a language.
fn fence(text: String, language: Option<String>) -> String {
    fenced(&text, &language.unwrap_or_default())
}

/// `text` in a Markdown code block whose fence is longer than any run of backticks inside, so
/// that file contents or program output cannot close the block early and pass for prompt text.
pub fn fenced(text: &str, language: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let ticks = "`".repeat((longest + 1).max(3));
    let newline = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    format!("{ticks}{language}\n{text}{newline}{ticks}")
}

/// The prompt templates of a pipeline.
#[derive(Debug, Clone)]
pub struct PromptTemplates {
    pub propose: Template,
    pub fix_crash: Template,
    pub summary: Template,
}

impl PromptTemplates {
    pub fn get(&self, kind: TemplateKind) -> &Template {
        match kind {
            TemplateKind::Propose => &self.propose,
            TemplateKind::FixCrash => &self.fix_crash,
            TemplateKind::Summary => &self.summary,
        }
    }
}

/// Everything a template may use. The same shape serves all three templates; `crash` is set
/// only for fix-crash.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    pub pipeline: PipelineInfo,
    pub instructions: String,
    pub metric: MetricInfo,
    /// The experiment budget, e.g. `5m`.
    pub budget: String,
    /// Number of the experiment being proposed.
    pub experiment: u64,
    pub baseline: Option<f64>,
    pub best: Option<f64>,
    /// The latest results rows, oldest first, at most `proposer.history` of them.
    pub results: Vec<ResultRow>,
    /// How many experiments there are in all.
    pub results_total: u64,
    /// The latest kept experiments in order (the baseline first while it is among them).
    pub kept: Vec<KeptRow>,
    /// How many experiments were kept in all, the baseline included.
    pub kept_total: u64,
    /// Experiments since the last keep.
    pub since_keep: u64,
    /// Whether `since_keep` reached `proposer.stall`.
    pub stalled: bool,
    /// The pipeline's `proposer.stall`.
    pub stall: u32,
    pub files: Files,
    /// The target's `.git/arun/learnings.md` entries (one `- ` line per kept or crashed
    /// experiment of this and earlier runs), newest last; empty when there are none.
    pub learnings: String,
    /// Experiments other workers are running now (parallel workers), with what they try:
    /// their results are not in yet, and repeating them wastes a worker.
    pub running: Vec<RunningRow>,
    pub crash: Option<CrashInfo>,
    /// In a tree search: where this experiment sits in the tree. `None` in the greedy chain.
    pub tree: Option<TreeInfo>,
}

/// An experiment in flight on another worker.
#[derive(Debug, Clone, Serialize)]
pub struct RunningRow {
    pub n: u64,
    pub description: String,
}

/// Where an experiment of a tree search sits: the path to the node it builds on, what was
/// already tried from that node, and for a draft the other drafts.
#[derive(Debug, Clone, Serialize)]
pub struct TreeInfo {
    /// `improve` (refine the node), `draft` (a new approach from the baseline, different from
    /// the other drafts) or `broaden` (every branch is a dead end: a direction none took).
    pub expansion: String,
    /// The number of the node it builds on.
    pub parent: u64,
    /// The kept steps from the baseline down to the node, each with its change.
    pub path: Vec<TreeStep>,
    /// What was already tried from the node and how it ended, oldest first.
    pub tried: Vec<TreeTry>,
    /// For a draft or a broadening: the drafts and branches made from the baseline so far.
    pub drafts: Vec<TreeTry>,
    /// Kept nodes in the tree, and how many of them are dead ends.
    pub nodes: usize,
    pub dead_ends: usize,
}

/// One kept step on the path to the node.
#[derive(Debug, Clone, Serialize)]
pub struct TreeStep {
    pub n: u64,
    pub metric: String,
    /// Change against its parent, signed; empty for the baseline.
    pub delta: String,
    pub description: String,
}

/// One proposal made on a node and how it ended (its fixes counted).
#[derive(Debug, Clone, Serialize)]
pub struct TreeTry {
    pub n: u64,
    /// `keep`, `discard` or `crash`.
    pub status: String,
    /// Its metric, empty for a crash.
    pub metric: String,
    pub description: String,
    /// Why it was kept, discarded or counted as a crash.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineInfo {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricInfo {
    pub name: String,
    /// `minimize` or `maximize`.
    pub goal: String,
    /// `lower` or `higher`.
    pub better: String,
}

/// One results row as text, formatted as in `results.tsv`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub n: u64,
    pub commit: String,
    pub metric: String,
    pub memory_gb: String,
    pub status: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeptRow {
    pub commit: String,
    pub metric: String,
    /// Change against the previous keep, signed, e.g. `-0.004100`; empty for the baseline.
    pub delta: String,
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    pub editable: Vec<FileText>,
    pub read_only: Vec<FileText>,
    pub context: Vec<FileText>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileText {
    pub path: String,
    pub content: String,
    /// Whether `content` was cut to keep the prompt bounded.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrashInfo {
    /// Number of the experiment that crashed (the one being fixed).
    pub experiment: u64,
    pub reason: String,
    pub diff: String,
    pub log_tail: String,
    pub attempt: u32,
    pub attempts: u32,
}

impl PromptContext {
    /// A context with every field filled, for checking templates without a run.
    pub fn sample() -> PromptContext {
        let row = |n: u64, metric: &str, status: &str, description: &str| ResultRow {
            n,
            commit: format!("abc{n:04}"),
            metric: metric.to_string(),
            memory_gb: "44.0".to_string(),
            status: status.to_string(),
            description: description.to_string(),
        };
        PromptContext {
            pipeline: PipelineInfo {
                name: "sample".to_string(),
                description: "A sample pipeline.".to_string(),
            },
            instructions: "Lower val_bpb.".to_string(),
            metric: MetricInfo {
                name: "val_bpb".to_string(),
                goal: "minimize".to_string(),
                better: "lower".to_string(),
            },
            budget: "5m".to_string(),
            experiment: 3,
            baseline: Some(0.9979),
            best: Some(0.9932),
            results: vec![
                row(0, "0.997900", "keep", "baseline"),
                row(1, "0.993200", "keep", "increase LR to 0.04"),
                row(2, "0.000000", "crash", "double the width"),
            ],
            results_total: 3,
            kept: vec![
                KeptRow {
                    commit: "abc0000".to_string(),
                    metric: "0.997900".to_string(),
                    delta: String::new(),
                    description: "baseline".to_string(),
                },
                KeptRow {
                    commit: "abc0001".to_string(),
                    metric: "0.993200".to_string(),
                    delta: "-0.004700".to_string(),
                    description: "increase LR to 0.04".to_string(),
                },
            ],
            kept_total: 2,
            since_keep: 1,
            stalled: false,
            stall: 8,
            files: Files {
                editable: vec![FileText {
                    path: "train.py".to_string(),
                    content: "LR = 0.04\n".to_string(),
                    truncated: false,
                }],
                read_only: vec![FileText {
                    path: "prepare.py".to_string(),
                    content: "MAX_SEQ_LEN = 2048\n".to_string(),
                    truncated: false,
                }],
                context: Vec::new(),
            },
            learnings: "- nov21 #4 keep: increase LR to 0.04 (val_bpb 0.993200, -0.004700 \
                        against the best before)\n- nov21 #6 crash: double the width (crashed: \
                        out of memory (exit status 1))"
                .to_string(),
            running: vec![RunningRow {
                n: 6,
                description: "swap the MLP activation to SwiGLU".to_string(),
            }],
            crash: Some(CrashInfo {
                experiment: 2,
                reason: "exit status 1".to_string(),
                diff: "-LR = 0.04\n+LR = 0.4\n".to_string(),
                log_tail: "FAIL\n".to_string(),
                attempt: 1,
                attempts: 2,
            }),
            tree: Some(TreeInfo {
                expansion: "improve".to_string(),
                parent: 1,
                path: vec![
                    TreeStep {
                        n: 0,
                        metric: "0.997900".to_string(),
                        delta: String::new(),
                        description: "baseline".to_string(),
                    },
                    TreeStep {
                        n: 1,
                        metric: "0.993200".to_string(),
                        delta: "-0.004700".to_string(),
                        description: "increase LR to 0.04".to_string(),
                    },
                ],
                tried: vec![TreeTry {
                    n: 2,
                    status: "crash".to_string(),
                    metric: String::new(),
                    description: "double the width".to_string(),
                    reason: "out of memory".to_string(),
                }],
                drafts: Vec::new(),
                nodes: 2,
                dead_ends: 0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_render_the_sample() {
        let context = PromptContext::sample();
        for kind in TemplateKind::ALL {
            let text = Template::builtin(kind).render(&context).unwrap();
            assert!(text.contains("train.py"), "{}: {text}", kind.key());
        }
    }

    #[test]
    fn propose_shows_results_and_the_stall_instruction_only_when_stalled() {
        let mut context = PromptContext::sample();
        context.tree = None;
        let calm = Template::builtin(TemplateKind::Propose)
            .render(&context)
            .unwrap();
        assert!(calm.contains("| 1 | abc0001 | 0.993200 | 44.0 | keep | increase LR to 0.04 |"));
        assert!(!calm.contains("stalled"));
        context.stalled = true;
        context.since_keep = 9;
        let stalled = Template::builtin(TemplateKind::Propose)
            .render(&context)
            .unwrap();
        assert!(stalled.contains("9 experiments in a row did not improve"));
    }

    #[test]
    fn a_tree_expansion_shows_the_path_what_was_tried_and_the_other_drafts() {
        let mut context = PromptContext::sample();
        let improve = Template::builtin(TemplateKind::Propose)
            .render(&context)
            .unwrap();
        assert!(improve.contains("This experiment builds on #1, which is not necessarily"));
        assert!(improve.contains(
            "Path from the baseline to #1:\n- #0 val_bpb 0.997900: baseline\n\
             - #1 val_bpb 0.993200 (-0.004700): increase LR to 0.04\n"
        ));
        assert!(
            improve
                .contains("Already tried from #1:\n- #2 crash: double the width (out of memory)\n")
        );
        let tree = context.tree.as_mut().unwrap();
        tree.expansion = "draft".to_string();
        tree.parent = 0;
        tree.drafts = std::mem::take(&mut tree.tried);
        let draft = Template::builtin(TemplateKind::Propose)
            .render(&context)
            .unwrap();
        assert!(draft.contains("This is a draft: a new approach started from the baseline (#0)"));
        assert!(draft.contains("Drafts and branches from the baseline so far:\n- #2 crash"));
        context.tree.as_mut().unwrap().expansion = "broaden".to_string();
        let broaden = Template::builtin(TemplateKind::Propose)
            .render(&context)
            .unwrap();
        assert!(broaden.contains("Broaden: propose a direction that none of the branches"));
    }

    #[test]
    fn unknown_variables_are_errors_with_a_line() {
        let template = Template {
            kind: TemplateKind::Propose,
            path: Some(PathBuf::from("mine.j2")),
            source: "ok\n{{ resluts }}\n".to_string(),
        };
        let err = template.render(&PromptContext::sample()).unwrap_err();
        assert!(err.starts_with("template `mine.j2` line 2: "), "{err}");
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn fix_crash_names_the_experiment_that_crashed() {
        let context = PromptContext::sample();
        assert_eq!(context.experiment, 3, "the fix attempt's own number");
        let text = Template::builtin(TemplateKind::FixCrash)
            .render(&context)
            .unwrap();
        assert!(
            text.starts_with("Experiment 2 on `sample` crashed: exit status 1."),
            "{text}"
        );
    }

    #[test]
    fn user_text_is_bounded_in_every_prompt() {
        let mut context = PromptContext::sample();
        context.pipeline.description = "é".repeat(3 * DESCRIPTION_MAX_BYTES);
        context.instructions = "ü".repeat(3 * INSTRUCTIONS_MAX_BYTES);
        let user = Template {
            kind: TemplateKind::Propose,
            path: Some(PathBuf::from("mine.j2")),
            source: "{{ pipeline.description }}|{{ instructions }}".to_string(),
        };
        let text = user.render(&context).unwrap();
        let (description, instructions) = text.split_once('|').unwrap();
        assert!(
            description.len() <= DESCRIPTION_MAX_BYTES,
            "{}",
            description.len()
        );
        assert!(
            instructions.len() <= INSTRUCTIONS_MAX_BYTES,
            "{}",
            instructions.len()
        );
        assert!(description.ends_with("[cut: the rest is over the limit]"));
        for kind in TemplateKind::ALL {
            let text = Template::builtin(kind).render(&context).unwrap();
            assert!(
                text.len() < DESCRIPTION_MAX_BYTES + INSTRUCTIONS_MAX_BYTES + 16 * 1024,
                "{}: {} bytes",
                kind.key(),
                text.len()
            );
        }
    }
}
