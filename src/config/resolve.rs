//! From the file as written to a resolved `Pipeline`: defaults filled, paths made absolute,
//! cross-field and file-system checks done. Every problem is collected, not only the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{Problem, size};
use super::duration::HumanDuration;
use super::file::{self, PipelineFile, ProposerKind};
use super::knob::{Domain, Knob};
use super::knob_site;
use super::metric::{Capture, MetricSpec};
use super::prompt::{
    DESCRIPTION_MAX_BYTES, INSTRUCTIONS_MAX_BYTES, PromptContext, PromptTemplates, Template,
    TemplateKind,
};

/// Environment variables never passed to experiments, whatever the pipeline says.
pub const DEFAULT_SCRUB_ENV: [&str; 4] =
    ["*_API_KEY", "*_API_TOKEN", "*_SECRET_KEY", "*_ACCESS_KEY"];

/// A pipeline ready to run: nothing after this re-reads the TOML.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline file, absolute.
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub target: TargetSpec,
    pub preflight: Vec<PreflightCheck>,
    pub experiment: ExperimentSpec,
    pub metric: MetricSpec,
    pub decision: DecisionRules,
    pub proposer: ProposerSpec,
    pub knobs: Vec<Knob>,
    pub search: SearchSpec,
    pub workers: WorkersSpec,
    pub executor: ExecutorSpec,
    pub limits: LimitsSpec,
}

/// Where builds and runs happen.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorSpec {
    Local,
    /// Shared with every job that is submitted.
    Slurm(std::sync::Arc<SlurmSpec>),
}

/// How runs are submitted to Slurm.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub gres: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    /// `--time`; `None`: each job's own limit plus the grace plus `TIME_MARGIN`.
    pub time_limit: Option<Duration>,
    pub sbatch_args: Vec<String>,
    pub setup: Vec<String>,
    pub start_timeout: Duration,
    pub build_in_job: bool,
}

impl SlurmSpec {
    /// Added to a job's own limit and grace for its default `--time`.
    pub const TIME_MARGIN: Duration = Duration::from_secs(5 * 60);

    /// The `--time` of a job that arun stops after `limit` and `grace`: whole minutes.
    pub fn time_for(&self, limit: Duration, grace: Duration) -> Duration {
        let time = self
            .time_limit
            .unwrap_or(limit + grace + SlurmSpec::TIME_MARGIN);
        Duration::from_secs(time.as_secs().div_ceil(60).max(1) * 60)
    }
}

/// The parallel workers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkersSpec {
    pub count: u32,
    pub gpus: GpuPlan,
    /// Variables set to a worker's GPU indices.
    pub pin_env: Vec<String>,
    /// Each worker's CPUs, one list per worker.
    pub cpus: Option<Vec<Vec<u32>>>,
    /// Threads per worker (the thread-count variables of common libraries).
    pub threads: Option<u32>,
    /// Proposals prepared ahead of free workers.
    pub ahead: u32,
    /// Ignored paths each worker's work tree links to, relative to the repository.
    pub share: Vec<String>,
}

/// Which GPUs each worker gets.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuPlan {
    /// The environment is left as it is.
    Unset,
    /// Every GPU the driver sees, shared out evenly when the run starts.
    Auto,
    /// One list of indices per worker.
    PerWorker(Vec<Vec<u32>>),
}

impl GpuPlan {
    /// `gpus` shared out between `count` workers: each gets the same number, in order.
    pub fn share(gpus: &[u32], count: u32) -> Result<Vec<Vec<u32>>, String> {
        let count = count as usize;
        if gpus.is_empty() || !gpus.len().is_multiple_of(count) {
            return Err(format!(
                "{} GPUs cannot be shared out evenly between {count} workers; give each worker \
                 the same number, or one list per worker",
                gpus.len()
            ));
        }
        Ok(gpus
            .chunks(gpus.len() / count)
            .map(<[u32]>::to_vec)
            .collect())
    }
}

/// How the parent of each experiment is chosen (`crate::run::search` does the choosing). Journaled
/// with the run's settings, so that a resume makes the same choices.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case")]
pub enum SearchSpec {
    /// Build on the best kept experiment.
    Greedy,
    /// Draft `drafts` approaches from the baseline, then expand the most promising open node; a
    /// node with `patience` children in a row that did not improve on it is a dead end.
    Tree {
        drafts: u32,
        patience: u32,
        exploration: f64,
    },
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The target repository, absolute.
    pub repo: PathBuf,
    /// The directory that initialises `repo` when it does not exist, absolute.
    pub template: Option<PathBuf>,
    /// The git URL cloned into `repo` when it does not exist.
    pub clone: Option<String>,
    /// Paths relative to `repo`, normalised (`./a/../b` is `b`).
    pub editable: Vec<String>,
    pub read_only: Vec<String>,
    pub context: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PreflightCheck {
    pub run: String,
    pub message: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    pub build: Option<String>,
    pub build_timeout: Duration,
    pub run: String,
    pub budget: Duration,
    pub hard_limit: Duration,
    pub grace: Duration,
    pub env: BTreeMap<String, String>,
    /// Name patterns (`*` wildcard) removed from the environment of builds and runs.
    pub scrub_env: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DecisionRules {
    pub min_improvement: f64,
    pub fix_attempts: u32,
    pub memory_max_ratio: f64,
    pub memory_max_gb: Option<f64>,
    pub noise: NoisePolicy,
    pub simplicity: SimplicityRule,
    pub held_out: Option<HeldOutCheck>,
}

#[derive(Debug, Clone)]
pub struct NoisePolicy {
    pub baseline_runs: u32,
    pub confirm_runs: u32,
    pub sigmas: f64,
    /// A known σ, used instead of the estimate.
    pub sigma: Option<f64>,
    /// The variable that carries each run's seed; `None` sets none.
    pub seed_env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimplicityRule {
    pub max_added_lines: u32,
    pub large_improvement: Option<f64>,
    pub keep_simpler: bool,
}

#[derive(Debug, Clone)]
pub struct HeldOutCheck {
    pub run: String,
    pub capture: Capture,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ProposerSpec {
    pub kind: ProposerSettings,
    pub instructions: String,
    pub timeout: Duration,
    pub history: u32,
    pub stall: u32,
    pub max_failures: u32,
    pub retry_wait: Duration,
    pub templates: PromptTemplates,
}

/// The settings of the proposer kind that runs.
#[derive(Debug, Clone)]
pub enum ProposerSettings {
    Agent {
        /// The full command line: the preset's or the pipeline's, with `args` appended.
        command: String,
        env: BTreeMap<String, String>,
        /// Which CLI's output format the transcript is read in; `None` for a plain command.
        preset: Option<file::AgentPreset>,
    },
    Http {
        base_url: String,
        model: String,
        api_key_env: Option<String>,
        temperature: Option<f64>,
        edit_retries: u32,
    },
    Knobs {
        seed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct LimitsSpec {
    pub max_experiments: Option<u32>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_time: Option<Duration>,
    pub tag_pattern: String,
    /// Relative to the target repository.
    pub results: String,
}

/// Resolves `raw`, read from `file` (absolute). Returns every problem found.
pub fn resolve(raw: PipelineFile, file: &Path) -> Result<Pipeline, Vec<Problem>> {
    let base = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut problems = Vec::new();
    let name = raw.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".to_string())
    });
    if let Some(description) = &raw.description
        && description.len() > DESCRIPTION_MAX_BYTES
    {
        problems.push(Problem::at(
            "description",
            format!(
                "{}; keep it to a sentence or two and put the detail in `proposer.instructions`",
                over_limit(description.len(), DESCRIPTION_MAX_BYTES)
            ),
        ));
    }
    let target = resolve_target(&raw.target, &base, &mut problems);
    let preflight = raw
        .preflight
        .iter()
        .map(|check| PreflightCheck {
            run: check.run.clone(),
            message: check.message.clone(),
            timeout: check.timeout.map_or(Duration::from_secs(60), |d| d.0),
        })
        .collect();
    let experiment = resolve_experiment(&raw, &mut problems);
    let metric = resolve_metric(&raw.metric, &mut problems);
    let decision = resolve_decision(&raw.decision, &mut problems);
    if decision.min_improvement < 0.0 {
        problems.push(Problem::at(
            "decision.min-improvement",
            "must not be negative; it is how much better a keep must be",
        ));
    }
    let proposer = resolve_proposer(&raw, &base, &mut problems);
    let knobs = resolve_knobs(&raw, &target, &mut problems);
    let search = resolve_search(&raw.search, &mut problems);
    let instant_proposals = raw.proposer.kind == file::ProposerKind::Knobs;
    let workers = resolve_workers(&raw.workers, instant_proposals, &mut problems);
    let executor = resolve_executor(&raw, &experiment, &mut problems);
    let limits = resolve_limits(&raw.limits, &name, &mut problems);

    match (metric, proposer) {
        (Some(metric), Some(proposer)) if problems.is_empty() => Ok(Pipeline {
            file: file.to_path_buf(),
            name,
            description: raw.description.unwrap_or_default(),
            target,
            preflight,
            experiment,
            metric,
            decision,
            proposer,
            knobs,
            search,
            workers,
            executor,
            limits,
        }),
        _ => Err(problems),
    }
}

/// The `[target]` section: the repository, how to create it, and the lists of files.
fn resolve_target(raw: &file::Target, base: &Path, problems: &mut Vec<Problem>) -> TargetSpec {
    let repo = normalize(&base.join(&raw.repo));
    let template = raw.template.as_ref().map(|t| normalize(&base.join(t)));
    let repo_exists = repo.exists();
    check_repo(raw, &repo, repo_exists, template.as_deref(), problems);
    // Files are looked for where the run will find them: the repo, or the template it starts from.
    let tree = if repo_exists {
        Some(repo.clone())
    } else {
        template.clone()
    };
    let editable = file_list("editable", &raw.editable, true, tree.as_deref(), problems);
    let read_only = file_list("read-only", &raw.read_only, true, tree.as_deref(), problems);
    let context = file_list("context", &raw.context, true, tree.as_deref(), problems);
    if raw.editable.is_empty() {
        problems.push(Problem::at(
            "target.editable",
            "list at least one file the experiments may change, e.g. `editable = [\"train.py\"]`",
        ));
    }
    for (i, path) in raw.read_only.iter().enumerate() {
        if relative_path(path).is_some_and(|clean| editable.contains(&clean)) {
            problems.push(Problem::at(
                &format!("target.read-only.{i}"),
                format!("`{path}` is also editable; a file is either editable or read-only"),
            ));
        }
    }
    TargetSpec {
        repo,
        template,
        clone: raw.clone.clone(),
        editable,
        read_only,
        context,
    }
}

/// The repository is a git repository with a commit, or does not exist yet and the section
/// says how to create it (a `template` or a `clone`, not both).
fn check_repo(
    raw: &file::Target,
    repo: &Path,
    repo_exists: bool,
    template: Option<&Path>,
    problems: &mut Vec<Problem>,
) {
    if repo_exists && !repo.join(".git").exists() {
        problems.push(Problem::at(
            "target.repo",
            format!(
                "`{}` is not a git repository; run `git init` there or point `repo` at one",
                repo.display()
            ),
        ));
    } else if repo_exists && let Some(why) = no_commit(repo) {
        problems.push(Problem::at("target.repo", why));
    }
    if template.is_some() && raw.clone.is_some() {
        problems.push(Problem::at(
            "target.clone",
            "set `template` or `clone`, not both: each creates the repository",
        ));
    }
    // The template only matters while the repository does not exist: once created from it,
    // the template may be gone (`arun status` and `arun report` then still read the run).
    match template {
        Some(dir) if !repo_exists && !dir.is_dir() => problems.push(Problem::at(
            "target.template",
            format!("template directory `{}` does not exist", dir.display()),
        )),
        None if !repo_exists && raw.clone.is_none() => problems.push(Problem::at(
            "target.repo",
            format!(
                "target repository `{}` does not exist; create it, or set `target.template` (a \
                 directory) or `target.clone` (a git URL) to create it on first use",
                repo.display()
            ),
        )),
        _ => {}
    }
}

/// One of the target's lists of files (`target.{key}`), each a path inside the repository,
/// listed once and, with `must_exist`, a file in `tree` when that exists.
fn file_list(
    key: &str,
    paths: &[String],
    must_exist: bool,
    tree: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let at = format!("target.{key}.{i}");
        let Some(clean) = relative_path(path) else {
            problems.push(Problem::at(
                &at,
                format!("`{path}` must be a path inside the repository, relative to it"),
            ));
            continue;
        };
        if !seen.insert(clean.clone()) {
            problems.push(Problem::at(&at, format!("`{path}` is listed twice")));
            continue;
        }
        if let Some(tree) = tree
            && must_exist
            && tree.exists()
            && !tree.join(&clean).is_file()
        {
            problems.push(Problem::at(
                &at,
                format!("`{clean}` is not a file in `{}`", tree.display()),
            ));
        }
        out.push(clean);
    }
    out
}

/// Why the existing repository at `repo` cannot be run on because it has no commit yet (the
/// run branches from HEAD), or `None`.
fn no_commit(repo: &Path) -> Option<String> {
    let opened = match git2::Repository::open(repo) {
        Ok(opened) => opened,
        Err(err) => {
            return Some(format!(
                "cannot open the git repository `{}`: {}",
                repo.display(),
                err.message()
            ));
        }
    };
    match opened.head() {
        Err(err) if err.code() == git2::ErrorCode::UnbornBranch => Some(format!(
            "the git repository `{}` has no commit yet; commit something first, e.g. `git -C \
             {} add -A && git -C {} commit -m start`",
            repo.display(),
            shell_word(&repo.display().to_string()),
            shell_word(&repo.display().to_string()),
        )),
        _ => None,
    }
}

/// `text` quoted for `sh` when it needs it.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn resolve_experiment(raw: &PipelineFile, problems: &mut Vec<Problem>) -> ExperimentSpec {
    let e = &raw.experiment;
    let budget = e.budget.map_or(Duration::from_secs(300), |d| d.0);
    let hard_limit = e.hard_limit.map_or(budget * 2, |d| d.0);
    if budget.is_zero() {
        problems.push(Problem::at("experiment.budget", "must be longer than zero"));
    }
    if e.hard_limit.is_some() && hard_limit <= budget {
        problems.push(Problem::at(
            "experiment.hard-limit",
            format!(
                "`{}` must be longer than the budget `{}`; the run is killed at the hard limit",
                crate::config::HumanDuration(hard_limit),
                crate::config::HumanDuration(budget)
            ),
        ));
    }
    if e.run.trim().is_empty() {
        problems.push(Problem::at("experiment.run", "the run command is empty"));
    }
    let env_key = |name: &str| super::KeyPath::parse("experiment.env").key(name);
    for name in e.env.keys() {
        if !valid_env_name(name) {
            problems.push(Problem::new(
                env_key(name),
                format!("`{name}` is not a valid environment variable name"),
            ));
        }
    }
    let mut scrub_env: Vec<String> = DEFAULT_SCRUB_ENV.iter().map(|s| s.to_string()).collect();
    scrub_env.extend(e.scrub_env.iter().cloned());
    if let Some(http) = &raw.proposer.http
        && let Some(key) = &http.api_key_env
    {
        scrub_env.push(key.clone());
    }
    for name in e.env.keys() {
        if scrub_env
            .iter()
            .any(|pattern| env_pattern_matches(pattern, name))
        {
            problems.push(Problem::new(
                env_key(name),
                format!("`{name}` is set here but also scrubbed by `scrub-env`; remove one"),
            ));
        }
    }
    ExperimentSpec {
        build: e.build.clone().filter(|b| !b.trim().is_empty()),
        build_timeout: e
            .build_timeout
            .map_or(Duration::from_secs(30 * 60), |d| d.0),
        run: e.run.clone(),
        budget,
        hard_limit,
        grace: e.grace.map_or(Duration::from_secs(10), |d| d.0),
        env: e.env.clone(),
        scrub_env,
    }
}

fn resolve_metric(raw: &file::Metric, problems: &mut Vec<Problem>) -> Option<MetricSpec> {
    let mut ok = true;
    if raw.name.is_empty() || raw.name.contains(char::is_whitespace) {
        problems.push(Problem::at(
            "metric.name",
            format!(
                "`{}` must be one word; it becomes a column of results.tsv",
                raw.name
            ),
        ));
        ok = false;
    }
    let primary = match Capture::new(&raw.name, &raw.regex) {
        Ok(capture) => Some(capture),
        Err(message) => {
            problems.push(Problem::at("metric.regex", message));
            None
        }
    };
    let mut extra = Vec::new();
    for (name, pattern) in &raw.extra {
        match Capture::new(name, pattern) {
            Ok(capture) => extra.push(capture),
            Err(message) => {
                problems.push(Problem::new(
                    super::KeyPath::parse("metric.extra").key(name),
                    message,
                ));
                ok = false;
            }
        }
    }
    if let Some(memory) = &raw.memory
        && !raw.extra.contains_key(memory)
    {
        problems.push(Problem::at(
            "metric.memory",
            format!(
                "`{memory}` is not a value of `[metric.extra]`; add \
                 `{memory} = '^{memory}:\\s*([0-9.]+)'` there"
            ),
        ));
        ok = false;
    }
    match primary {
        Some(primary) if ok => Some(MetricSpec {
            primary,
            goal: raw.goal,
            extra,
            memory: raw.memory.clone().map(|m| (m, raw.memory_unit)),
        }),
        _ => None,
    }
}

fn resolve_decision(raw: &file::Decision, problems: &mut Vec<Problem>) -> DecisionRules {
    let noise = &raw.noise;
    let seed_env = match noise.seed_env.as_deref() {
        None => Some("ARUN_SEED".to_string()),
        Some("") => None,
        Some(name) if valid_env_name(name) => Some(name.to_string()),
        Some(name) => {
            problems.push(Problem::at(
                "decision.noise.seed-env",
                format!("`{name}` is not a valid environment variable name"),
            ));
            None
        }
    };
    let held_out = raw
        .held_out
        .as_ref()
        .and_then(|h| match Capture::new(&h.name, &h.regex) {
            Ok(capture) => Some(HeldOutCheck {
                run: h.run.clone(),
                capture,
                timeout: h.timeout.map(|d| d.0),
            }),
            Err(message) => {
                problems.push(Problem::at("decision.held-out.regex", message));
                None
            }
        });
    DecisionRules {
        min_improvement: raw.min_improvement.unwrap_or(0.0),
        fix_attempts: raw.fix_attempts.unwrap_or(2),
        memory_max_ratio: raw.memory.max_ratio.unwrap_or(2.0),
        memory_max_gb: raw.memory.max_gb,
        noise: NoisePolicy {
            baseline_runs: noise.baseline_runs.unwrap_or(3),
            confirm_runs: noise.confirm_runs.unwrap_or(1),
            sigmas: noise.sigmas.unwrap_or(2.0),
            sigma: noise.sigma,
            seed_env,
        },
        simplicity: SimplicityRule {
            max_added_lines: raw.simplicity.max_added_lines.unwrap_or(20),
            large_improvement: raw.simplicity.large_improvement,
            keep_simpler: raw.simplicity.keep_simpler.unwrap_or(true),
        },
        held_out,
    }
}

/// The `[proposer]` section: its kind's settings, the instructions, the prompt templates and the
/// limits.
fn resolve_proposer(
    raw: &PipelineFile,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<ProposerSpec> {
    let p = &raw.proposer;
    let before = problems.len();
    let kind = proposer_settings(raw, problems);
    if let Some(http) = &p.http
        && !(http.base_url.starts_with("http://") || http.base_url.starts_with("https://"))
    {
        problems.push(Problem::at(
            "proposer.http.base-url",
            format!("`{}` must start with http:// or https://", http.base_url),
        ));
    }
    let instructions = proposer_instructions(p, base, problems);
    let templates = prompt_templates(p, base, problems);

    let spec = ProposerSpec {
        kind: kind?,
        instructions,
        timeout: p.timeout.map_or(Duration::from_secs(20 * 60), |d| d.0),
        history: p.history.unwrap_or(20),
        stall: p.stall.unwrap_or(8),
        max_failures: p.max_failures.unwrap_or(5),
        retry_wait: p.retry_wait.map_or(Duration::from_secs(30), |d| d.0),
        templates,
    };
    (problems.len() == before).then_some(spec)
}

/// The settings of the proposer's kind: the agent's command line, the HTTP model, or the knob
/// search's seed; `None` when the kind's section is missing.
fn proposer_settings(raw: &PipelineFile, problems: &mut Vec<Problem>) -> Option<ProposerSettings> {
    let p = &raw.proposer;
    match p.kind {
        ProposerKind::Agent => agent_settings(raw, problems),
        ProposerKind::Http => match &p.http {
            Some(http) => Some(ProposerSettings::Http {
                base_url: http.base_url.trim_end_matches('/').to_string(),
                model: http.model.clone(),
                api_key_env: http.api_key_env.clone(),
                temperature: http.temperature,
                edit_retries: http.edit_retries.unwrap_or(2),
            }),
            None => {
                problems.push(Problem::at(
                    "proposer.http",
                    "`kind = \"http\"` needs `[proposer.http]` with `base-url` and `model`",
                ));
                None
            }
        },
        ProposerKind::Knobs => {
            if raw.knob.is_empty() {
                problems.push(Problem::at(
                    "proposer.kind",
                    "`kind = \"knobs\"` needs at least one `[[knob]]` to search over",
                ));
            }
            Some(ProposerSettings::Knobs {
                seed: p.knobs.as_ref().and_then(|k| k.seed).unwrap_or(0),
            })
        }
    }
}

/// An agent's command line: its own `command`, else its preset's, with `args` after it.
fn agent_settings(raw: &PipelineFile, problems: &mut Vec<Problem>) -> Option<ProposerSettings> {
    let agent = raw.proposer.agent.clone().unwrap_or_default();
    let command = agent.command.filter(|c| !c.trim().is_empty());
    let base = match (agent.preset, command) {
        (_, Some(command)) => Some(command),
        (Some(preset), None) => Some(super::presets::command(
            preset,
            &raw.target.editable,
            &raw.target.read_only,
        )),
        (None, None) => {
            problems.push(Problem::at(
                "proposer.agent",
                "`kind = \"agent\"` needs `[proposer.agent]` with a `preset` (`claude`, \
                 `codex`, `gemini`, `aider` or `opencode`) or a `command`, e.g. \
                 `command = \"my-agent --prompt-file \\\"$ARUN_PROMPT_FILE\\\"\"`",
            ));
            None
        }
    };
    base.map(|base| ProposerSettings::Agent {
        command: match agent.args.as_deref().map(str::trim) {
            Some(args) if !args.is_empty() => format!("{base} {args}"),
            _ => base,
        },
        env: agent.env,
        preset: agent.preset,
    })
}

/// The instructions every prompt carries: written in the file or read from
/// `instructions-file`, at most `INSTRUCTIONS_MAX_BYTES`.
fn proposer_instructions(p: &file::Proposer, base: &Path, problems: &mut Vec<Problem>) -> String {
    match (&p.instructions, &p.instructions_file) {
        (Some(_), Some(_)) => {
            problems.push(Problem::at(
                "proposer.instructions-file",
                "set `instructions` or `instructions-file`, not both",
            ));
            String::new()
        }
        (Some(text), None) => {
            if text.len() > INSTRUCTIONS_MAX_BYTES {
                problems.push(Problem::at(
                    "proposer.instructions",
                    format!(
                        "{}; {SHORTEN_INSTRUCTIONS}",
                        over_limit(text.len(), INSTRUCTIONS_MAX_BYTES)
                    ),
                ));
            }
            text.clone()
        }
        (None, Some(path)) => {
            let full = normalize(&base.join(path));
            match read_bounded(&full, INSTRUCTIONS_MAX_BYTES) {
                Ok(Some(text)) => text,
                Ok(None) => {
                    problems.push(Problem::at(
                        "proposer.instructions-file",
                        format!(
                            "`{}` is larger than {}, the most instructions may be; \
                             {SHORTEN_INSTRUCTIONS}",
                            full.display(),
                            size(INSTRUCTIONS_MAX_BYTES)
                        ),
                    ));
                    String::new()
                }
                Err(err) => {
                    problems.push(Problem::at(
                        "proposer.instructions-file",
                        format!("cannot read `{}`: {err}", full.display()),
                    ));
                    String::new()
                }
            }
        }
        (None, None) => String::new(),
    }
}

/// The prompt templates: each the built-in one unless a file replaces it; a file that cannot be
/// read or rendered is a problem.
fn prompt_templates(
    p: &file::Proposer,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> PromptTemplates {
    let mut load = |kind: TemplateKind, path: &Option<String>| -> Template {
        let Some(path) = path else {
            return Template::builtin(kind);
        };
        let at = format!("proposer.templates.{}", kind.key());
        let full = normalize(&base.join(path));
        match Template::from_file(kind, &full) {
            Ok(template) => {
                if let Err(message) = template.render(&PromptContext::sample()) {
                    problems.push(Problem::at(&at, message));
                }
                template
            }
            Err(err) => {
                problems.push(Problem::at(
                    &at,
                    format!("cannot read template `{}`: {err}", full.display()),
                ));
                Template::builtin(kind)
            }
        }
    };
    PromptTemplates {
        propose: load(TemplateKind::Propose, &p.templates.propose),
        fix_crash: load(TemplateKind::FixCrash, &p.templates.fix_crash),
        summary: load(TemplateKind::Summary, &p.templates.summary),
    }
}

/// What to do with instructions over `INSTRUCTIONS_MAX_BYTES`.
const SHORTEN_INSTRUCTIONS: &str =
    "every prompt carries them, and the agent needs room for the files: shorten them";

/// "is 5000 bytes, over the limit of 4 KiB".
fn over_limit(len: usize, limit: usize) -> String {
    format!("is {len} bytes, over the limit of {}", size(limit))
}

/// The text of `path`, or `None` when it is longer than `limit` bytes (found without reading
/// more than that).
fn read_bounded(path: &Path, limit: usize) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Ok(None);
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not valid UTF-8; save it as UTF-8",
        )
    })
}

/// Checks the `[[knob]]`s and, where the repository (or its template) is there to look in, that
/// each is assigned exactly once in its file with a value inside its bounds.
/// The `[[knob]]`s: each with its file, its domain, and a value in the file that the domain
/// allows. A knob with a problem in its file or domain is left out.
fn resolve_knobs(
    raw: &PipelineFile,
    target: &TargetSpec,
    problems: &mut Vec<Problem>,
) -> Vec<Knob> {
    let tree = if target.repo.exists() {
        Some(target.repo.clone())
    } else {
        target.template.clone()
    };
    let mut names = BTreeSet::new();
    let mut knobs = Vec::new();
    for (i, knob) in raw.knob.iter().enumerate() {
        let at = |key: &str| format!("knob.{i}.{key}");
        if !names.insert(knob.name.as_str()) {
            problems.push(Problem::at(
                &at("name"),
                format!("knob `{}` is declared twice", knob.name),
            ));
        }
        let file = knob_file(i, knob, target, problems);
        let domain = match Domain::from_declaration(knob) {
            Ok(domain) => Some(domain),
            Err(found) => {
                for (key, message) in found {
                    problems.push(Problem::at(&at(key), message));
                }
                None
            }
        };
        let (Some(file), Some(domain)) = (file, domain) else {
            continue;
        };
        if let Some(text) = tree
            .as_ref()
            .and_then(|tree| std::fs::read_to_string(tree.join(&file)).ok())
        {
            check_knob_value(i, knob, &file, &domain, &text, problems);
        }
        knobs.push(Knob {
            name: knob.name.clone(),
            file,
            domain,
        });
    }
    knobs
}

/// The editable file the `i`th knob lives in: its `file`, or the only editable file.
fn knob_file(
    i: usize,
    knob: &file::Knob,
    target: &TargetSpec,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let at = |key: &str| format!("knob.{i}.{key}");
    match &knob.file {
        Some(file) => match relative_path(file).filter(|f| target.editable.contains(f)) {
            Some(clean) => Some(clean),
            None => {
                problems.push(Problem::at(
                    &at("file"),
                    format!("`{file}` is not one of the editable files"),
                ));
                None
            }
        },
        None if target.editable.len() > 1 => {
            problems.push(Problem::at(
                &at("file"),
                format!(
                    "knob `{}` needs `file`: there are {} editable files",
                    knob.name,
                    target.editable.len()
                ),
            ));
            None
        }
        None => target.editable.first().cloned(),
    }
}

/// The `i`th knob's assignment is found in `text` (the file `file`) and its value there is one
/// the knob's domain allows.
fn check_knob_value(
    i: usize,
    knob: &file::Knob,
    file: &str,
    domain: &Domain,
    text: &str,
    problems: &mut Vec<Problem>,
) {
    let at = |key: &str| format!("knob.{i}.{key}");
    let site = match knob_site::locate(text, &knob.name) {
        Err(err) => {
            problems.push(Problem::at(&at("name"), err.describe(&knob.name, file)));
            return;
        }
        Ok(site) => site,
    };
    let place = format!("`{}` in `{file}:{}`", knob.name, site.line);
    match knob_site::parse(domain, &site.literal) {
        Err(message) => {
            let key = if domain.is_choice() {
                "choices"
            } else {
                "name"
            };
            problems.push(Problem::at(&at(key), format!("{place}: {message}")));
        }
        Ok(value) => {
            if let Err((key, why)) = domain.check(value) {
                let fix = if key == "kind" {
                    "change the value in the file or the knob's `kind`"
                } else {
                    "change the bounds or the value in the file"
                };
                problems.push(Problem::at(
                    &at(key),
                    format!("{place} is `{}`, {why}; {fix}", site.literal),
                ));
            }
        }
    }
}

fn resolve_search(raw: &file::Search, problems: &mut Vec<Problem>) -> SearchSpec {
    match raw.strategy {
        file::SearchStrategy::Greedy => {
            for (key, set) in [
                ("drafts", raw.drafts.is_some()),
                ("patience", raw.patience.is_some()),
                ("exploration", raw.exploration.is_some()),
            ] {
                if set {
                    problems.push(Problem::at(
                        &format!("search.{key}"),
                        format!(
                            "`{key}` applies to the tree search only; set `strategy = \"tree\"` or \
                             remove it"
                        ),
                    ));
                }
            }
            SearchSpec::Greedy
        }
        file::SearchStrategy::Tree => SearchSpec::Tree {
            // Chosen by `cargo bench --bench tree` on its training seeds (docs/benchmarks.md,
            // "Tree-search benchmark"): with most proposals failing, a smaller patience closes
            // nodes that still had improvements to give.
            drafts: raw.drafts.unwrap_or(7),
            patience: raw.patience.unwrap_or(20),
            exploration: raw.exploration.unwrap_or(0.5),
        },
    }
}

fn resolve_workers(
    raw: &file::Workers,
    instant_proposals: bool,
    problems: &mut Vec<Problem>,
) -> WorkersSpec {
    let count = raw.count.unwrap_or(1).max(1);
    let gpus = resolve_gpus(raw.gpus.as_ref(), count, problems);
    if let Some(cpus) = &raw.cpus
        && (cpus.len() != count as usize || cpus.iter().any(Vec::is_empty))
    {
        problems.push(Problem::at(
            "workers.cpus",
            format!(
                "{} lists of CPUs for {count} workers: give one non-empty list per worker",
                cpus.len()
            ),
        ));
    }
    let pin_env = raw
        .pin_env
        .clone()
        .unwrap_or_else(|| vec!["CUDA_VISIBLE_DEVICES".to_string()]);
    for name in &pin_env {
        if !valid_env_name(name) {
            problems.push(Problem::at(
                "workers.pin-env",
                format!("`{name}` is not a valid environment variable name"),
            ));
        }
    }
    let share = resolve_share(&raw.share, problems);
    WorkersSpec {
        count,
        gpus,
        pin_env,
        cpus: raw.cpus.clone(),
        threads: raw.threads,
        ahead: raw.ahead.unwrap_or(if count > 1 && !instant_proposals {
            count
        } else {
            0
        }),
        share,
    }
}

/// `[workers] gpus`: `auto`, one list shared out among the workers, or one list per worker.
fn resolve_gpus(gpus: Option<&file::Gpus>, count: u32, problems: &mut Vec<Problem>) -> GpuPlan {
    match gpus {
        None => GpuPlan::Unset,
        Some(file::Gpus::Auto(word)) if word == "auto" => GpuPlan::Auto,
        Some(file::Gpus::Auto(word)) => {
            problems.push(Problem::at(
                "workers.gpus",
                format!("`{word}` is not `auto`, a list of indices or one list per worker"),
            ));
            GpuPlan::Unset
        }
        Some(file::Gpus::List(list)) => match GpuPlan::share(list, count) {
            Ok(shared) => GpuPlan::PerWorker(shared),
            Err(message) => {
                problems.push(Problem::at("workers.gpus", message));
                GpuPlan::Unset
            }
        },
        Some(file::Gpus::PerWorker(lists)) => {
            if lists.len() != count as usize || lists.iter().any(Vec::is_empty) {
                problems.push(Problem::at(
                    "workers.gpus",
                    format!(
                        "{} lists of GPUs for {count} workers: give one non-empty list per worker",
                        lists.len()
                    ),
                ));
            }
            GpuPlan::PerWorker(lists.clone())
        }
    }
}

/// `[workers] share`: paths inside the repository, relative to it, made clean.
fn resolve_share(share: &[String], problems: &mut Vec<Problem>) -> Vec<String> {
    let mut clean_paths = Vec::new();
    for (i, path) in share.iter().enumerate() {
        match relative_path(path) {
            Some(clean) => clean_paths.push(clean),
            None => problems.push(Problem::at(
                &format!("workers.share.{i}"),
                format!("`{path}` must be a path inside the repository, relative to it"),
            )),
        }
    }
    clean_paths
}

/// `sbatch` arguments arun sets itself, which `sbatch-args` may not set.
const SBATCH_OWN_ARGS: [&str; 12] = [
    "--job-name",
    "--open-mode",
    "--wrap",
    "-J",
    "--comment",
    "--output",
    "-o",
    "--error",
    "-e",
    "--chdir",
    "-D",
    "--parsable",
];

fn resolve_executor(
    raw: &PipelineFile,
    experiment: &ExperimentSpec,
    problems: &mut Vec<Problem>,
) -> ExecutorSpec {
    let slurm = match (raw.executor.kind, &raw.executor.slurm) {
        (file::ExecutorKind::Local, None) => return ExecutorSpec::Local,
        (file::ExecutorKind::Local, Some(_)) => {
            problems.push(Problem::at(
                "executor.slurm",
                "is set but `executor.kind` is `local`; set `kind = \"slurm\"` to run on the \
                 cluster, or remove `[executor.slurm]`",
            ));
            return ExecutorSpec::Local;
        }
        (file::ExecutorKind::Slurm, slurm) => slurm.clone().unwrap_or_default(),
    };
    if raw.workers.gpus.is_some() {
        problems.push(Problem::at(
            "workers.gpus",
            "Slurm hands out the GPUs of each job; ask for them with `executor.slurm.gres` \
             (e.g. \"gpu:1\") instead",
        ));
    }
    if raw.workers.cpus.is_some() {
        problems.push(Problem::at(
            "workers.cpus",
            "Slurm hands out the CPUs of each job; ask for them with \
             `executor.slurm.cpus-per-task` instead",
        ));
    }
    check_sbatch_args(&slurm.sbatch_args, problems);
    if let Some(mem) = &slurm.mem {
        let digits = mem.trim_end_matches(['K', 'M', 'G', 'T']);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(Problem::at(
                "executor.slurm.mem",
                format!("`{mem}` is not a memory size such as \"64G\" or \"16000M\""),
            ));
        }
    }
    let build_in_job = slurm.build_in_job.unwrap_or(false);
    if let Some(time) = slurm.time_limit {
        check_time_limit(time.0, experiment, build_in_job, problems);
    }
    ExecutorSpec::Slurm(std::sync::Arc::new(SlurmSpec {
        partition: slurm.partition,
        account: slurm.account,
        qos: slurm.qos,
        gres: slurm.gres,
        cpus_per_task: slurm.cpus_per_task,
        mem: slurm.mem,
        time_limit: slurm.time_limit.map(|d| d.0),
        sbatch_args: slurm.sbatch_args,
        setup: slurm.setup,
        start_timeout: slurm
            .start_timeout
            .map_or(Duration::from_secs(3600), |d| d.0),
        build_in_job,
    }))
}

/// `sbatch-args` may not set what arun sets itself (see [`SBATCH_OWN_ARGS`]).
fn check_sbatch_args(args: &[String], problems: &mut Vec<Problem>) {
    for (i, arg) in args.iter().enumerate() {
        let name = arg.split('=').next().unwrap_or(arg);
        let own = SBATCH_OWN_ARGS
            .iter()
            .any(|own| name == *own || (own.len() == 2 && name.starts_with(own)));
        if own {
            problems.push(Problem::at(
                &format!("executor.slurm.sbatch-args.{i}"),
                format!(
                    "`{arg}`: arun sets this itself (the job's name, comment, output file, \
                     working directory, `--parsable` and the batch script)"
                ),
            ));
        }
    }
}

/// A Slurm time limit must leave room for the longest a job may take: the experiment's hard
/// limit, or the build timeout when the build runs in the job.
fn check_time_limit(
    time: Duration,
    experiment: &ExperimentSpec,
    build_in_job: bool,
    problems: &mut Vec<Problem>,
) {
    let mut needed = experiment.hard_limit;
    if build_in_job && experiment.build.is_some() {
        needed = needed.max(experiment.build_timeout);
    }
    if time < needed {
        problems.push(Problem::at(
            "executor.slurm.time-limit",
            format!(
                "{} is shorter than the {} a job may need (the experiment's hard limit{}); \
                 Slurm would end the job before arun's own limit",
                HumanDuration(time),
                HumanDuration(needed),
                if build_in_job {
                    " or the build timeout"
                } else {
                    ""
                }
            ),
        ));
    }
}

fn resolve_limits(raw: &file::Limits, name: &str, problems: &mut Vec<Problem>) -> LimitsSpec {
    let tag_pattern = raw
        .tag
        .clone()
        .unwrap_or_else(|| "{month}{day}".to_string());
    match expand_tag(&tag_pattern, name, 2026, 11, 22) {
        Ok(tag) => {
            if let Some(why) = tag_problem(&tag) {
                problems.push(Problem::at(
                    "limits.tag",
                    format!("`{tag_pattern}` gives `{tag}`; {why}"),
                ));
            }
        }
        Err(message) => problems.push(Problem::at("limits.tag", message)),
    }
    let results = raw
        .results
        .clone()
        .unwrap_or_else(|| "results.tsv".to_string());
    let results = match relative_path(&results) {
        Some(clean) => clean,
        None => {
            problems.push(Problem::at(
                "limits.results",
                format!("`{results}` must be a path inside the target repository"),
            ));
            results
        }
    };
    LimitsSpec {
        max_experiments: raw.max_experiments,
        max_cost_usd: raw.max_cost_usd,
        max_tokens: raw.max_tokens,
        max_time: raw.max_time.map(|d| d.0),
        tag_pattern,
        results,
    }
}

/// Fills a tag pattern's placeholders; `month` is 1-based.
pub fn expand_tag(
    pattern: &str,
    name: &str,
    year: i32,
    month: u32,
    day: u32,
) -> Result<String, String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("`{pattern}` has a `{{` without a closing `}}`"));
        };
        let placeholder = &rest[open + 1..open + close];
        match placeholder {
            "month" => out.push_str(MONTHS[(month as usize).saturating_sub(1) % 12]),
            "day" => out.push_str(&day.to_string()),
            "year" => out.push_str(&year.to_string()),
            "name" => out.push_str(name),
            other => {
                return Err(format!(
                    "unknown placeholder `{{{other}}}`; use `{{month}}`, `{{day}}`, `{{year}}` or `{{name}}`"
                ));
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A tag becomes part of a branch and ref names, so it keeps to a safe alphabet.
pub fn valid_tag(tag: &str) -> bool {
    tag_problem(tag).is_none()
}

/// Why `tag` cannot name a run (its branch is `autoresearch/<tag>`), or `None` when it can.
pub fn tag_problem(tag: &str) -> Option<String> {
    const GIT: &str = "git does not allow it in a branch name";
    if tag.is_empty() {
        return Some("a tag must not be empty".to_string());
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let shown = match c {
            ' ' => "a space".to_string(),
            '`' => "a backtick".to_string(),
            c if c.is_control() || c.is_whitespace() => {
                format!("the character U+{:04X}", u32::from(c))
            }
            c => format!("`{c}`"),
        };
        return Some(format!(
            "{shown} is not allowed in a tag; use only letters, digits, `-`, `_` and `.`"
        ));
    }
    let rule = if tag.starts_with('.') {
        "must not start with `.`"
    } else if tag.contains("..") {
        "must not contain `..`"
    } else if tag.ends_with(".lock") {
        "must not end with `.lock`"
    } else if tag.ends_with('.') {
        "must not end with `.`"
    } else {
        return None;
    };
    Some(format!("a tag {rule}: {GIT}"))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn env_pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A relative path inside a repository, normalised; `None` when it is absolute or leaves it.
pub fn relative_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Removes `.` and `..` components without touching the file system (the path may not exist).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(relative_path("train.py").as_deref(), Some("train.py"));
        assert_eq!(
            relative_path("./src/../src/train.rs").as_deref(),
            Some("src/train.rs")
        );
        assert_eq!(relative_path("../train.py"), None);
        assert_eq!(relative_path("/etc/passwd"), None);
        assert_eq!(relative_path("."), None);
    }

    #[test]
    fn tags_expand_and_reject_unknown_placeholders() {
        assert_eq!(
            expand_tag("{month}{day}", "x", 2026, 11, 22).unwrap(),
            "nov22"
        );
        assert_eq!(
            expand_tag("{name}-{year}", "gpt", 2026, 1, 2).unwrap(),
            "gpt-2026"
        );
        assert!(
            expand_tag("{week}", "x", 2026, 1, 1)
                .unwrap_err()
                .contains("`{week}`")
        );
        assert!(expand_tag("{month", "x", 2026, 1, 1).is_err());
        assert!(valid_tag("nov22"));
        assert!(!valid_tag("nov 22"));
        assert!(!valid_tag("a..b"));
    }

    #[test]
    fn a_bad_tag_is_told_why() {
        let cases = [
            ("nov22", None),
            ("-a_b.c", None),
            ("", Some("a tag must not be empty")),
            (
                "bad..tag",
                Some("a tag must not contain `..`: git does not allow it in a branch name"),
            ),
            (
                ".hidden",
                Some("a tag must not start with `.`: git does not allow it in a branch name"),
            ),
            (
                "run.lock",
                Some("a tag must not end with `.lock`: git does not allow it in a branch name"),
            ),
            (
                "run.",
                Some("a tag must not end with `.`: git does not allow it in a branch name"),
            ),
            (
                "nov/22",
                Some("`/` is not allowed in a tag; use only letters, digits, `-`, `_` and `.`"),
            ),
            (
                "nov 22",
                Some("a space is not allowed in a tag; use only letters, digits, `-`, `_` and `.`"),
            ),
            (
                "a\tb",
                Some(
                    "the character U+0009 is not allowed in a tag; use only letters, digits, \
                     `-`, `_` and `.`",
                ),
            ),
        ];
        for (tag, expected) in cases {
            assert_eq!(tag_problem(tag).as_deref(), expected, "{tag:?}");
            assert_eq!(valid_tag(tag), expected.is_none(), "{tag:?}");
        }
    }

    #[test]
    fn env_patterns() {
        let cases = [
            ("*_API_KEY", "OPENAI_API_KEY", true),
            ("*_API_KEY", "OPENAI_API_KEYS", false),
            ("AWS_*", "AWS_SECRET", true),
            ("*SECRET*", "MY_SECRET_THING", true),
            ("HF_TOKEN", "HF_TOKEN", true),
            ("HF_TOKEN", "HF_TOKENS", false),
            ("A*B*C", "AXBYC", true),
            ("A*B*C", "AC", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                env_pattern_matches(pattern, name),
                expected,
                "{pattern} {name}"
            );
        }
    }
}
