//! The pipeline file exactly as written: serde + schemars types that mirror the TOML.
//!
//! Nothing here fills defaults that depend on other fields or touches the file system; that is
//! `resolve`'s job. The `///` comments become the JSON Schema descriptions and docs/reference.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::metric::{Goal, MemoryUnit};

/// An arun pipeline: what to edit, how to run one experiment, how to read and judge its metric,
/// who proposes the edits, and when to stop. The file may be at most 1 MiB.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "arun pipeline")]
pub struct PipelineFile {
    /// Short name of the pipeline, shown in reports and usable in the run tag as `{name}`.
    /// Default: the file name without `.toml`.
    #[serde(default)]
    pub name: Option<String>,
    /// One or two sentences on what this pipeline optimises; shown to agents and in reports.
    /// At most 4 KiB.
    #[serde(default)]
    pub description: Option<String>,
    /// The git repository under experiment and which of its files may change.
    pub target: Target,
    /// Checks that must pass before anything runs (data present, tools installed).
    #[serde(default)]
    pub preflight: Vec<Preflight>,
    /// How to build and run one experiment, and its time budget.
    pub experiment: Experiment,
    /// The number an experiment is judged on, read from its output.
    pub metric: Metric,
    /// When an experiment is kept, discarded or counted as a crash.
    #[serde(default)]
    pub decision: Decision,
    /// Who proposes each edit: a coding agent, an HTTP model, or the built-in knob search.
    pub proposer: Proposer,
    /// Which experiment the next one builds on: autoresearch's greedy chain, or a tree search.
    #[serde(default)]
    pub search: Search,
    /// How many experiments run at once, each in its own git work tree on its own devices.
    #[serde(default)]
    pub workers: Workers,
    /// Where builds and runs happen: on this machine (the default) or as Slurm jobs.
    #[serde(default)]
    pub executor: Executor,
    /// Hyperparameters of the editable file that the knob search may change, one `[[knob]]` each.
    #[serde(default)]
    pub knob: Vec<Knob>,
    /// When to stop, how to name the run, where to write results.
    #[serde(default)]
    pub limits: Limits,
}

/// The target repository and the files of it that arun may change.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Target {
    /// Path of the target git repository, relative to the pipeline file.
    pub repo: String,
    /// A directory, relative to the pipeline file, copied into `repo` (and committed as its first
    /// commit) when `repo` does not exist yet.
    #[serde(default)]
    pub template: Option<String>,
    /// A git URL cloned into `repo` when `repo` does not exist yet, e.g.
    /// `https://github.com/karpathy/autoresearch`.
    #[serde(default)]
    pub clone: Option<String>,
    /// The only files an experiment may change, relative to `repo`.
    pub editable: Vec<String>,
    /// Files that must not change (data preparation, evaluation), relative to `repo`. They are
    /// hashed at start and re-checked before every run; agents are shown them.
    #[serde(default)]
    pub read_only: Vec<String>,
    /// Further files shown to agents (notes, docs), relative to `repo`. Not pinned.
    #[serde(default)]
    pub context: Vec<String>,
}

/// A command that must succeed before the run starts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Preflight {
    /// Shell command, run with `sh -c` in the target repository; exit status 0 means ready.
    pub run: String,
    /// What to tell the user when the command fails, e.g. "data missing: run `uv run prepare.py`".
    pub message: String,
    /// How long the check may take. Default: `1m`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// How one experiment is built and run.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Experiment {
    /// Optional build command (`sh -c`, in the repository). Its time does not count against the
    /// budget; its failure is a crash.
    #[serde(default)]
    pub build: Option<String>,
    /// How long the build may take. Default: `30m`.
    #[serde(default)]
    pub build_timeout: Option<HumanDuration>,
    /// The experiment command (`sh -c`, in the repository), e.g. `uv run train.py`.
    pub run: String,
    /// The time the experiment is meant to take; exported to it as `ARUN_BUDGET_SECONDS`.
    /// Default: `5m`.
    #[serde(default)]
    pub budget: Option<HumanDuration>,
    /// Wall-clock limit after which the run is stopped (SIGTERM to its process group, then
    /// SIGKILL after `grace`) and counted as a crash. Default: twice the budget.
    #[serde(default)]
    pub hard_limit: Option<HumanDuration>,
    /// Time between SIGTERM and SIGKILL when a process must stop. Default: `10s`.
    #[serde(default)]
    pub grace: Option<HumanDuration>,
    /// Environment variables set for the build and the run.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of environment variables that must never reach the build or the run (API keys).
    /// `*` matches any run of characters. Added to the defaults `*_API_KEY`, `*_API_TOKEN`,
    /// `*_SECRET_KEY` and `*_ACCESS_KEY`.
    #[serde(default)]
    pub scrub_env: Vec<String>,
}

/// The metric an experiment is judged on and other values read from its output.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Metric {
    /// Name of the metric; also the second column of `results.tsv`, e.g. `val_bpb`.
    pub name: String,
    /// Regular expression with exactly one capture group, matched against each output line;
    /// the last match wins. E.g. `^val_bpb:\s*([0-9.]+)`.
    pub regex: String,
    /// Whether lower or higher is better. Default: `minimize`.
    #[serde(default)]
    pub goal: Goal,
    /// Further values to capture, name = regex with one capture group, e.g.
    /// `peak_vram_mb = '^peak_vram_mb:\s*([0-9.]+)'`.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    /// Which `extra` value is the experiment's peak memory (for the `memory_gb` column and the
    /// memory guard) when no GPU reading is available.
    #[serde(default)]
    pub memory: Option<String>,
    /// Unit of the `memory` value. Default: `mb`.
    #[serde(default)]
    pub memory_unit: MemoryUnit,
}

/// Rules that turn a measured experiment into keep, discard or crash.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Decision {
    /// An experiment is kept only when it beats the best kept metric by at least this much (in
    /// the metric's units). Default: `0`, any strict improvement.
    #[serde(default)]
    pub min_improvement: Option<f64>,
    /// How many times the proposer may try to fix a crashed experiment before it is reverted.
    /// Default: `2`.
    #[serde(default)]
    pub fix_attempts: Option<u32>,
    /// Peak memory limits; an experiment over them is a crash.
    #[serde(default)]
    pub memory: MemoryGuard,
    /// Repeated runs, so that a keep means a real improvement and not noise.
    #[serde(default)]
    pub noise: Noise,
    /// Weighing an improvement against the lines it adds (autoresearch's simplicity criterion).
    #[serde(default)]
    pub simplicity: Simplicity,
    /// A second measurement on data the proposer never sees, taken on each new best.
    #[serde(default)]
    pub held_out: Option<HeldOut>,
}

/// The noise policy: how often code is measured, and how far above the noise a keep must be.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Noise {
    /// How many times the baseline runs; its spread is the first estimate of the run-to-run
    /// noise σ, refined by every later repeated measurement. `1` turns the noise policy off.
    /// Default: `3`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub baseline_runs: Option<u32>,
    /// How many more times a candidate that beats the best by more than the threshold runs;
    /// it is then judged on the mean of all its runs. Default: `1`.
    #[serde(default)]
    pub confirm_runs: Option<u32>,
    /// A keep must improve on the best by more than this many σ (and by `min-improvement`).
    /// Default: `2`.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub sigmas: Option<f64>,
    /// A known run-to-run standard deviation of the metric, used instead of the estimate.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub sigma: Option<f64>,
    /// Environment variable that gives each run of the same code its own seed: `0` for the
    /// first run of every experiment, `1`, `2`... for repeats. Empty: no seed is set.
    /// Default: `ARUN_SEED`.
    #[serde(default)]
    pub seed_env: Option<String>,
}

/// The simplicity rule, on (improvement, lines added minus removed in the editable files).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Simplicity {
    /// An improvement that adds more than this many lines (net) must be large to be kept.
    /// Default: `20`.
    #[serde(default)]
    pub max_added_lines: Option<u32>,
    /// What counts as a large improvement, in the metric's units. Default: twice the keep
    /// threshold (`sigmas` × σ, or `min-improvement`).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub large_improvement: Option<f64>,
    /// Keep a change that removes lines and leaves the metric within the noise (a
    /// simplification win). Default: `true`.
    #[serde(default)]
    pub keep_simpler: Option<bool>,
}

/// A held-out check: a command whose metric the proposer never sees, run on each new best so
/// that overfitting to the validation metric shows.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HeldOut {
    /// Shell command (`sh -c`, in the repository), e.g. `uv run eval.py --split test`.
    pub run: String,
    /// Name of the held-out metric, e.g. `test_bpb`.
    pub name: String,
    /// Regular expression with one capture group, matched against each output line.
    pub regex: String,
    /// How long the check may take. Default: the experiment's hard limit.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// Peak-memory limits for an experiment.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemoryGuard {
    /// Crash when peak memory exceeds this multiple of the baseline's. Default: `2.0`.
    #[serde(default)]
    #[schemars(range(min = 1.0))]
    pub max_ratio: Option<f64>,
    /// Crash when peak memory exceeds this many GiB. Default: no absolute cap.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub max_gb: Option<f64>,
}

/// Who proposes edits, with which prompts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Proposer {
    /// Which proposer runs; its settings are in the section of the same name. Sections of other
    /// kinds may stay in the file, so switching is a one-word change.
    pub kind: ProposerKind,
    /// The research instructions given to an agent (like autoresearch's program.md). At most
    /// 64 KiB.
    #[serde(default)]
    pub instructions: Option<String>,
    /// A file holding the instructions, relative to the pipeline file; instead of `instructions`.
    /// At most 64 KiB.
    #[serde(default)]
    pub instructions_file: Option<String>,
    /// How long one proposal may take before the proposer is stopped. Default: `20m`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// How many of the latest results rows the prompt shows. Default: `20`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub history: Option<u32>,
    /// After this many experiments without a keep, the prompt asks for bolder changes.
    /// Default: `8`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub stall: Option<u32>,
    /// Stop the run after this many failed proposals in a row (agent crashed or timed out,
    /// model unreachable, nothing changed). Default: `5`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_failures: Option<u32>,
    /// Wait after a failed proposal before the next try; doubled after each further failure.
    /// Default: `30s`.
    #[serde(default)]
    pub retry_wait: Option<HumanDuration>,
    /// Prompt templates (minijinja) overriding the built-in ones, relative to the pipeline file.
    #[serde(default)]
    pub templates: Templates,
    /// Settings of the `agent` kind.
    #[serde(default)]
    pub agent: Option<Agent>,
    /// Settings of the `http` kind.
    #[serde(default)]
    pub http: Option<Http>,
    /// Settings of the `knobs` kind.
    #[serde(default)]
    pub knobs: Option<KnobSearch>,
}

/// The kinds of proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProposerKind {
    /// A coding-agent command that edits the files itself (`[proposer.agent]`).
    Agent,
    /// An OpenAI-compatible chat-completions model that answers with edits (`[proposer.http]`).
    Http,
    /// arun's built-in search over the declared `[[knob]]`s; needs no LLM (`[proposer.knobs]`).
    Knobs,
}

/// Prompt template files; each is optional and replaces the built-in template of that name.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Templates {
    /// Template for proposing the next experiment.
    #[serde(default)]
    pub propose: Option<String>,
    /// Template for fixing a crashed experiment.
    #[serde(default)]
    pub fix_crash: Option<String>,
    /// Template asking for the next ideas, shown in the interrupt summary.
    #[serde(default)]
    pub summary: Option<String>,
}

/// A coding agent run as a command.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Agent {
    /// A known coding-agent CLI: arun knows its non-interactive command line and reads the
    /// description, cost and tokens from its output. `command` replaces the preset's command
    /// line (the output is still read the preset's way); `args` adds to it.
    #[serde(default)]
    pub preset: Option<AgentPreset>,
    /// Shell command (`sh -c`, in the target repository). The prompt is on its stdin and in the
    /// file named by `ARUN_PROMPT_FILE`. It edits the editable files itself and may print
    /// `DESCRIPTION: <one line>` to describe the change. Required without `preset`.
    #[serde(default)]
    pub command: Option<String>,
    /// Extra arguments appended to the command line (shell syntax), e.g.
    /// `args = "--model claude-sonnet-4-5"`.
    #[serde(default)]
    pub args: Option<String>,
    /// Environment variables set for the agent only (never for the experiment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// The coding-agent CLIs arun has presets for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentPreset {
    /// Claude Code: `claude -p` with JSON output (result, `total_cost_usd`, tokens).
    Claude,
    /// OpenAI Codex CLI: `codex exec` in a workspace-write sandbox with JSON events (tokens).
    Codex,
    /// Gemini CLI: `gemini -p` with JSON output (tokens).
    Gemini,
    /// aider: `aider --message-file` on the editable files, no commits (tokens and cost).
    Aider,
    /// opencode: `opencode run` with JSON events (tokens and cost).
    Opencode,
}

/// An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Http {
    /// Base URL up to `/v1`, e.g. `http://localhost:8000/v1`.
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Environment variable holding the API key; never logged, never passed to experiments.
    /// Default: no key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Sampling temperature. Default: the server's.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub temperature: Option<f64>,
    /// How many times the model may retry an edit that does not apply. Default: `2`.
    #[serde(default)]
    pub edit_retries: Option<u32>,
}

/// Settings of the built-in knob search.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KnobSearch {
    /// Seed of the search's random choices. Default: `0`.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A hyperparameter assignment in an editable file, e.g. `MATRIX_LR = 0.04` or
/// `const DEPTH: usize = 4;`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Knob {
    /// The name assigned in the file, e.g. `MATRIX_LR`.
    pub name: String,
    /// Which editable file holds it. Default: the only editable file.
    #[serde(default)]
    pub file: Option<String>,
    /// What values it takes.
    pub kind: KnobKind,
    /// Smallest value (`float`, `int`, `pow2`).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest value (`float`, `int`, `pow2`).
    #[serde(default)]
    pub max: Option<f64>,
    /// Whether a `float` is searched on a log or linear scale. Default: `log`.
    #[serde(default)]
    pub scale: Option<Scale>,
    /// The literals a `choice` knob may take, written as they appear in the file, e.g.
    /// `["\"relu2\"", "\"gelu\""]`.
    #[serde(default)]
    pub choices: Vec<String>,
}

/// The kinds of knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KnobKind {
    /// A real number between `min` and `max`.
    Float,
    /// An integer between `min` and `max`.
    Int,
    /// A power of two between `min` and `max`.
    Pow2,
    /// One of `choices`.
    Choice,
}

/// Scale on which a float knob is searched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Multiplicative steps (learning rates, weight decay).
    #[default]
    Log,
    /// Additive steps (ratios, fractions).
    Linear,
}

/// How the parent of each experiment is chosen.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Search {
    /// `greedy`: every experiment builds on the best kept one, as in autoresearch. `tree`:
    /// different approaches are drafted from the baseline, then the most promising node is
    /// expanded, a node whose children keep failing counts as a dead end and the search
    /// backtracks. How deep a crash's fixes may go is `[decision] fix-attempts`.
    /// Default: `greedy`.
    #[serde(default)]
    pub strategy: SearchStrategy,
    /// Tree only: how many different approaches are drafted from the baseline (asked for as
    /// such) before any of them is refined. Default: `7`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub drafts: Option<u32>,
    /// Tree only: how many children in a row a node may get without one improving on it
    /// before it counts as exhausted (a dead end) and the search backtracks. Most proposals
    /// fail even on a node with much left to give, so a small patience closes such nodes by
    /// chance. Default: `20`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub patience: Option<u32>,
    /// Tree only: weight of the exploration bonus, which lets a node a little worse than the
    /// best, with fewer children, be expanded too. `0` always expands the best open node.
    /// Default: `0.5`.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub exploration: Option<f64>,
}

/// The search strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SearchStrategy {
    /// Build on the best kept experiment (autoresearch's protocol).
    #[default]
    Greedy,
    /// Draft, expand the most promising node, backtrack from dead ends.
    Tree,
}

/// Parallel workers: several experiments at once, each in its own git work tree (under the run
/// directory) on its own GPUs or CPUs, with the next proposals prepared while they run.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workers {
    /// How many experiments run at the same time. Default: `1`.
    #[serde(default)]
    #[schemars(range(min = 1, max = 256))]
    pub count: Option<u32>,
    /// The GPUs of the workers: `"auto"` (every GPU the NVIDIA driver sees, shared out evenly),
    /// a list of indices (shared out evenly: one each for as many as there are workers), or one
    /// list per worker (multi-GPU experiments). Each worker's run gets `pin-env` set to its
    /// indices. Default: none (the environment is left as it is).
    #[serde(default)]
    pub gpus: Option<Gpus>,
    /// The environment variables that pin a worker to its GPUs, each set to its indices, comma
    /// separated. Default: `["CUDA_VISIBLE_DEVICES"]`; ROCm: `["HIP_VISIBLE_DEVICES"]`; a
    /// Burn/wgpu trainer can read its adapter index from a variable of its own.
    #[serde(default)]
    pub pin_env: Option<Vec<String>>,
    /// On a CPU-only machine: the CPUs each worker's runs may use, one list of CPU numbers per
    /// worker (set with `sched_setaffinity`).
    #[serde(default)]
    pub cpus: Option<Vec<Vec<u32>>>,
    /// Threads per worker, exported as `OMP_NUM_THREADS`, `MKL_NUM_THREADS`,
    /// `OPENBLAS_NUM_THREADS` and `RAYON_NUM_THREADS`. Default: unset.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub threads: Option<u32>,
    /// How many proposals may be prepared ahead of free workers, while the others train.
    /// Default: as many as there are workers with several workers; `0` with one (the proposer
    /// sees every result before it proposes, as in autoresearch) and with the knob search
    /// (it proposes in an instant, so waiting for a free worker costs nothing and lets each
    /// proposal see more results).
    #[serde(default)]
    pub ahead: Option<u32>,
    /// Paths of the work tree (ignored by git: data, a virtual environment) that each worker's
    /// work tree links to instead of having its own.
    #[serde(default)]
    pub share: Vec<String>,
}

/// Which GPUs the workers use: `"auto"`, a list of indices, or one list per worker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Gpus {
    /// `"auto"`: every GPU the driver sees (any other word is refused when resolving).
    Auto(String),
    /// Indices shared out evenly.
    List(Vec<u32>),
    /// One list of indices per worker.
    PerWorker(Vec<Vec<u32>>),
}

impl JsonSchema for Gpus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Gpus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`\"auto\"`, a list of GPU indices, or one list of indices per worker.",
            "anyOf": [
                { "const": "auto" },
                { "type": "array", "items": { "type": "integer", "minimum": 0 } },
                { "type": "array", "items": { "type": "array", "items": { "type": "integer", "minimum": 0 } } }
            ],
            "examples": ["auto", [0, 1, 2, 3], [[0, 1], [2, 3]]]
        })
    }
}

/// Where each experiment's run happens: on this machine, or as a job of a Slurm cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Executor {
    /// `"local"`: runs are processes of this machine. `"slurm"`: each run is a batch job
    /// submitted with `sbatch` (arun stays on the login node); `[workers] count` is then the
    /// number of jobs in flight. Default: `"local"`.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// The Slurm jobs' settings (with `kind = "slurm"`).
    #[serde(default)]
    pub slurm: Option<Slurm>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// Processes of this machine.
    #[default]
    Local,
    /// Batch jobs of a Slurm cluster.
    Slurm,
}

/// How each run is submitted to Slurm. The repository (with the run's work trees and logs
/// under `.git/arun`) must be on a file system the compute nodes share.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Slurm {
    /// `sbatch --partition`. Default: the cluster's default partition.
    #[serde(default)]
    pub partition: Option<String>,
    /// `sbatch --account`. Default: the user's default account.
    #[serde(default)]
    pub account: Option<String>,
    /// `sbatch --qos`. Default: the account's default.
    #[serde(default)]
    pub qos: Option<String>,
    /// `sbatch --gres`, the generic resources of each job, e.g. `"gpu:1"` or `"gpu:h100:2"`.
    /// Slurm sets `CUDA_VISIBLE_DEVICES` in the job. Default: none.
    #[serde(default)]
    pub gres: Option<String>,
    /// `sbatch --cpus-per-task`. Default: the cluster's (usually 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub cpus_per_task: Option<u32>,
    /// `sbatch --mem`, memory per node, e.g. `"64G"`. Default: the cluster's.
    #[serde(default)]
    pub mem: Option<String>,
    /// `sbatch --time`, rounded up to whole minutes. It must cover the experiment's hard limit
    /// (arun stops a run at its hard limit itself, from the moment the job starts). Default: the
    /// job's own limit (the hard limit for a run, the build timeout for a build) plus the grace
    /// plus 5 minutes.
    #[serde(default)]
    pub time_limit: Option<HumanDuration>,
    /// More `sbatch` arguments, e.g. `["--constraint=h100", "--exclusive"]`. arun sets the job
    /// name, comment, output, working directory and `--parsable` itself.
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Shell lines (bash) run in the job before the command, e.g. `"module load cuda/12.4"` or
    /// `"source .venv/bin/activate"`. A line that fails fails the job.
    #[serde(default)]
    pub setup: Vec<String>,
    /// How long a job may wait in the queue before arun gives up: it cancels the job and stops
    /// the run with Slurm's reason (a resume submits it again). Time in the queue is never
    /// charged to the experiment's budget. Default: `"1h"`.
    #[serde(default)]
    pub start_timeout: Option<HumanDuration>,
    /// Build in a job too (`true`), or on this machine (`false`, the default: a build usually
    /// needs no GPU, and the work tree is shared).
    #[serde(default)]
    pub build_in_job: Option<bool>,
}

/// When the run stops, how it is named, where results go.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Stop after this many experiments (the baseline included). Default: no limit.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_experiments: Option<u32>,
    /// Stop starting new experiments after this much wall time. Default: no limit.
    #[serde(default)]
    pub max_time: Option<HumanDuration>,
    /// Pattern of the run tag, which names the branch `autoresearch/<tag>`. Placeholders:
    /// `{month}` (`nov`), `{day}` (`22`), `{year}` (`2026`), `{name}` (the pipeline's name).
    /// Default: `{month}{day}`.
    #[serde(default)]
    pub tag: Option<String>,
    /// Results table, relative to the target repository. Default: `results.tsv`.
    #[serde(default)]
    pub results: Option<String>,
    /// Stop starting new experiments once the proposer has cost this many US dollars, as
    /// reported by the agent (Claude Code, aider and opencode report cost). Default: no limit.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Stop starting new experiments once the proposer has used this many tokens (input plus
    /// output), as reported by the agent or the HTTP model. Default: no limit.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u64>,
}
