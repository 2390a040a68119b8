//! `arun check PIPELINE.toml`: everything a run needs, tried once in a throwaway copy of the
//! target repository (no branch, no commit, nothing written in the repository): the preflight
//! checks, the build, one run of the baseline under the budget, the metric and extra values it
//! printed, its peak memory and time, and the knobs with their current values. It ends with
//! `ready` or the first thing to fix, so that nobody learns at experiment 1 that the metric regex
//! never matched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::resolve::{ExecutorSpec, ExperimentSpec};
use crate::config::{HumanDuration, Pipeline};
use crate::error::Error;
use crate::exit_codes;
use crate::run::exec::{self, Environment, Spawn, Watch};
use crate::run::gpu::GpuMonitor;
use crate::run::readings::{Readings, Scanner};
use crate::run::scratch::Scratch;
use crate::run::session::RunWatch;
use crate::view::progress::Progress;

/// What the check found: one line per fact, the problems in the order a run would meet them.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(&'static str, String)>,
    problems: Vec<(String, i32)>,
}

impl Report {
    fn say(&mut self, label: &'static str, text: impl Into<String>) {
        self.lines.push((label, text.into()));
    }

    /// A problem that stops a run (its exit code when it is the first one).
    fn problem(&mut self, text: impl Into<String>, code: i32) {
        let text = text.into();
        self.lines.push(("problem", text.clone()));
        self.problems.push((text, code));
    }

    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }

    /// 0 when ready, else the code of the first problem.
    pub fn exit_code(&self) -> i32 {
        self.problems
            .first()
            .map_or(exit_codes::SUCCESS, |(_, code)| *code)
    }

    /// The report as printed: aligned labels, then `ready` or `not ready: <first problem>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (label, text) in &self.lines {
            let mut rows = text.lines();
            let _ = writeln!(out, "{label:<10} {}", rows.next().unwrap_or(""));
            for row in rows {
                let _ = writeln!(out, "{:<10} {row}", "");
            }
        }
        match self.problems.first() {
            None => out.push_str("ready\n"),
            Some((first, _)) => {
                let first_line = first.lines().next().unwrap_or("");
                let _ = writeln!(out, "not ready: {first_line}");
            }
        }
        out
    }
}

/// Checks the pipeline in `file`. An invalid pipeline is an error (its diagnostics); anything
/// else that would stop a run is a problem of the report.
pub fn check(file: &Path) -> Result<Report, Error> {
    let pipeline = crate::config::load(file)?;
    exec::interrupt::install()
        .map_err(|err| Error::io("cannot install the Ctrl-C handler", err))?;
    if let ExecutorSpec::Slurm(_) = pipeline.executor {
        exec::slurm::check_tools().map_err(Error::Setup)?;
    }
    let mut report = Report::default();
    report.say("pipeline", format!("{} is valid", file.display()));
    let Some(scratch) = copy_target(&pipeline, &mut report)? else {
        return Ok(report);
    };
    let dir = scratch.path();
    if !files_present(&pipeline, dir, &mut report) {
        return Ok(report);
    }
    let mut progress = Progress::new();
    if let Err(err) = crate::run::session::run_preflight(&pipeline, dir, &progress) {
        match err {
            Error::Preflight { .. } => {
                report.problem(err.to_string(), exit_codes::PREFLIGHT_FAILED);
                return Ok(report);
            }
            other => return Err(other),
        }
    }
    if !pipeline.preflight.is_empty() {
        report.say(
            "preflight",
            format!("{} checks passed", pipeline.preflight.len()),
        );
    }
    let env = experiment_env(&pipeline);
    let logs = scratch.logs();
    if let Some(build) = &pipeline.experiment.build
        && !build_ok(
            &pipeline,
            build,
            dir,
            &env,
            &logs.join("build.log"),
            &mut report,
            &mut progress,
        )?
    {
        return Ok(report);
    }
    run_baseline(
        &pipeline,
        dir,
        &env,
        &logs.join("run.log"),
        &mut report,
        &mut progress,
    )?;
    show_knobs(&pipeline, dir, &mut report);
    Ok(report)
}

/// The throwaway copy of the target, or `None` (with the problem said) when there is nothing to
/// copy yet.
fn copy_target(pipeline: &Pipeline, report: &mut Report) -> Result<Option<Scratch>, Error> {
    let target = &pipeline.target;
    let repo = &target.repo;
    if repo.exists() {
        let git = crate::run::git::Git::open(repo)?;
        let dirty = git.dirty_tracked()?;
        let scratch = Scratch::of_repository(repo, &scratch_parent(pipeline))
            .map_err(|err| Error::io(format!("cannot copy `{}`", repo.display()), err))?;
        report.say(
            "target",
            format!(
                "{} (tried in a copy; the repository is not touched)",
                repo.display()
            ),
        );
        say_where(pipeline, &scratch, report);
        if !dirty.is_empty() {
            report.problem(
                format!(
                    "the target repository has uncommitted changes to tracked files: {}; a run \
                     starts only from a clean tree: commit or stash them (this check tried them \
                     as they are)",
                    dirty.join(", ")
                ),
                exit_codes::FAILURE,
            );
        }
        return Ok(Some(scratch));
    }
    if let Some(template) = &target.template {
        let scratch = Scratch::of_directory(template, &scratch_parent(pipeline))
            .map_err(|err| Error::io(format!("cannot copy `{}`", template.display()), err))?;
        report.say(
            "target",
            format!(
                "{} does not exist yet; tried a copy of its template {}",
                repo.display(),
                template.display()
            ),
        );
        say_where(pipeline, &scratch, report);
        return Ok(Some(scratch));
    }
    let fix = match &target.clone {
        Some(url) => format!("clone it first: `git clone {url} {}`", repo.display()),
        None => "set `[target] repo` to an existing git repository".to_string(),
    };
    report.problem(
        format!(
            "target repository `{}` does not exist; {fix}",
            repo.display()
        ),
        exit_codes::FAILURE,
    );
    Ok(None)
}

/// Where the copy is made: the system's temporary directory, or for Slurm jobs a directory the
/// nodes see as well: the repository's run store (`.git/arun`), or the directory the repository
/// will be created in.
fn scratch_parent(pipeline: &Pipeline) -> PathBuf {
    let repo = &pipeline.target.repo;
    match pipeline.executor {
        ExecutorSpec::Local => std::env::temp_dir(),
        ExecutorSpec::Slurm(_) => crate::run::store::root_of(repo)
            .or_else(|| repo.parent().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir),
    }
}

/// For a Slurm job, where the copy is: the job runs there, so the nodes must see it.
fn say_where(pipeline: &Pipeline, scratch: &Scratch, report: &mut Report) {
    if let ExecutorSpec::Slurm(_) = pipeline.executor {
        report.say(
            "copy",
            format!(
                "{} (the Slurm job runs there; the nodes must see it)",
                scratch.path().display()
            ),
        );
    }
}

/// Where a command of the check runs: here, or as a Slurm job as a run's would, named
/// `arun-check-0-<what>` with the copy's path as its comment.
fn executor(pipeline: &Pipeline, dir: &Path, what: &str) -> exec::Executor {
    let now = crate::run::journal::now();
    exec::Executor::of(&pipeline.executor, "check", 0, what, dir, now)
}

/// Whether the editable and read-only files exist in the copy.
fn files_present(pipeline: &Pipeline, dir: &Path, report: &mut Report) -> bool {
    let target = &pipeline.target;
    let mut present = true;
    for (what, list) in [
        ("editable", &target.editable),
        ("read-only", &target.read_only),
    ] {
        for path in list {
            if !dir.join(path).is_file() {
                report.problem(
                    format!("{what} file `{path}` does not exist in the target repository"),
                    exit_codes::FAILURE,
                );
                present = false;
            }
        }
    }
    if present {
        report.say(
            "files",
            format!(
                "editable {}{}",
                target.editable.join(", "),
                if target.read_only.is_empty() {
                    String::new()
                } else {
                    format!("; read-only {}", target.read_only.join(", "))
                }
            ),
        );
    }
    present
}

/// What the baseline of a run sees: arun's environment without secrets, the pipeline's
/// variables, the budget, experiment 0 of a run tagged `check`, seed 0.
fn experiment_env(pipeline: &Pipeline) -> Environment {
    let spec = &pipeline.experiment;
    let mut env = Environment::inherit_scrubbed(&spec.scrub_env);
    env.extend(&spec.env)
        .set("ARUN_BUDGET_SECONDS", spec.budget.as_secs().to_string())
        .set("ARUN_EXPERIMENT", "0")
        .set("ARUN_TAG", "check");
    if let Some(name) = &pipeline.decision.noise.seed_env {
        env.set(name.clone(), "0");
    }
    env
}

fn build_ok(
    pipeline: &Pipeline,
    build: &str,
    dir: &Path,
    env: &Environment,
    log: &Path,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<bool, Error> {
    let spec = &pipeline.experiment;
    progress.phase(format!("check: building with `{build}`"), None);
    let finished = run_command(
        &executor(pipeline, dir, "build"),
        &spawn(build, dir, env, log, spec.build_timeout, spec.grace),
        &mut progress.main_line(),
    )?;
    progress.clear();
    if finished.ending.success() {
        report.say(
            "build",
            format!("`{build}`: ok in {}", seconds(finished.elapsed)),
        );
        return Ok(true);
    }
    report.problem(
        format!(
            "the build `{build}` failed ({}){}",
            finished.ending.describe(spec.build_timeout),
            tail_of(log)
        ),
        exit_codes::FAILURE,
    );
    Ok(false)
}

/// Runs `spawn` where `executor` says; Ctrl-C ends the check.
fn run_command(
    executor: &exec::Executor,
    spawn: &Spawn,
    watch: &mut dyn Watch,
) -> Result<exec::Finished, Error> {
    let finished = executor
        .run(spawn, watch)
        .map_err(|err| Error::io(format!("cannot run `{}`", spawn.command), err))?;
    if finished.ending == exec::Ending::Interrupted {
        return Err(Error::Setup("interrupted during the check".to_string()));
    }
    Ok(finished)
}

/// A command of the check: in the copy, with the experiment's environment, on any CPU.
fn spawn<'a>(
    command: &'a str,
    dir: &'a Path,
    env: &'a Environment,
    log: &'a Path,
    limit: Duration,
    grace: Duration,
) -> Spawn<'a> {
    Spawn {
        command,
        dir,
        env,
        stdin: None,
        log,
        limit,
        grace,
        cpus: None,
    }
}

fn run_baseline(
    pipeline: &Pipeline,
    dir: &Path,
    env: &Environment,
    log: &Path,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<(), Error> {
    let spec = &pipeline.experiment;
    progress.phase(
        format!("check: running the baseline `{}`", spec.run),
        Some(spec.budget),
    );
    let executor = executor(pipeline, dir, "baseline");
    // NVML sees this machine's GPUs, not a Slurm job's node's.
    let gpu = match executor {
        exec::Executor::Local => GpuMonitor::connect(),
        exec::Executor::Slurm { .. } => None,
    };
    let line = progress.main_line();
    let mut scanner = Scanner::new(&pipeline.metric);
    let mut watch = RunWatch::new(&mut scanner, &line, gpu.as_ref());
    let finished = run_command(
        &executor,
        &spawn(&spec.run, dir, env, log, spec.hard_limit, spec.grace),
        &mut watch,
    )?;
    let gpu_memory = watch.peak_gb();
    progress.clear();
    let readings = scanner.readings();
    let script_memory = scanner.memory_gb(&readings);
    show_ending(spec, &finished, &readings, log, report);
    show_readings(pipeline, &readings, log, report);
    show_memory(pipeline, gpu_memory, script_memory, report);
    Ok(())
}

/// How the baseline ended: a timeout or a failure is a problem, overrunning the budget a note.
fn show_ending(
    spec: &ExperimentSpec,
    finished: &exec::Finished,
    readings: &Readings,
    log: &Path,
    report: &mut Report,
) {
    report.say(
        "run",
        format!(
            "`{}`: {} after {} (budget {}, hard limit {})",
            spec.run,
            finished.ending.describe(spec.hard_limit),
            seconds(finished.elapsed),
            HumanDuration(spec.budget),
            HumanDuration(spec.hard_limit)
        ),
    );
    match finished.ending {
        exec::Ending::TimedOut => report.problem(
            format!(
                "the baseline was still running at the hard limit {}: the script must stop by \
                 itself (it gets its budget in `ARUN_BUDGET_SECONDS`), or raise `[experiment] \
                 hard-limit`{}",
                HumanDuration(spec.hard_limit),
                tail_of(log)
            ),
            exit_codes::FAILURE,
        ),
        ending if !ending.success() => report.problem(
            format!(
                "the baseline failed ({}){}{}",
                ending.describe(spec.hard_limit),
                if readings.out_of_memory {
                    ", out of memory"
                } else {
                    ""
                },
                tail_of(log)
            ),
            exit_codes::FAILURE,
        ),
        _ if finished.elapsed > spec.budget => report.say(
            "time",
            format!(
                "the run took {}, more than the budget {}: allowed up to the hard limit {}, but \
                 the budget is what the script is meant to use",
                seconds(finished.elapsed),
                HumanDuration(spec.budget),
                HumanDuration(spec.hard_limit)
            ),
        ),
        _ => {}
    }
}

/// The peak memory: the GPU's, else the script's `[metric] memory` value, else that the guard
/// is off.
fn show_memory(
    pipeline: &Pipeline,
    gpu_memory: Option<f64>,
    script_memory: Option<f64>,
    report: &mut Report,
) {
    match (gpu_memory, script_memory, &pipeline.metric.memory) {
        (Some(gb), _, _) => report.say("memory", format!("{gb:.2} GiB peak on the GPU")),
        (None, Some(gb), Some((name, _))) => {
            report.say("memory", format!("{gb:.2} GiB peak, from `{name}`"))
        }
        (None, None, _) => report.say(
            "memory",
            "not measured: no GPU reading and no `[metric] memory` value; the memory guard is off",
        ),
        (None, Some(_), None) => {}
    }
}

/// The metric and each extra value, or what did not match.
fn show_readings(pipeline: &Pipeline, readings: &Readings, log: &Path, report: &mut Report) {
    let metric = &pipeline.metric;
    let name = metric.name();
    match &readings.metric {
        Some(Ok(value)) if value.is_finite() => report.say(
            "metric",
            format!("{name} = {value} ({} is better)", metric.goal.better_word()),
        ),
        Some(Ok(value)) => report.problem(
            format!("metric `{name}` is {value}: a run would count the baseline as a crash"),
            exit_codes::FAILURE,
        ),
        Some(Err(message)) => report.problem(message.clone(), exit_codes::FAILURE),
        None => report.problem(
            format!(
                "metric regex `{}` never matched in the baseline's output{}",
                metric.primary.regex.as_str(),
                tail_of(log)
            ),
            exit_codes::FAILURE,
        ),
    }
    for extra in &metric.extra {
        match readings.values.get(&extra.name) {
            Some(value) => report.say("extra", format!("{} = {value}", extra.name)),
            None => report.problem(
                format!(
                    "extra value `{}`: regex `{}` never matched in the baseline's output",
                    extra.name,
                    extra.regex.as_str()
                ),
                exit_codes::FAILURE,
            ),
        }
    }
}

/// Each knob's current value in the copy (`arun validate` has checked it lies in its bounds).
fn show_knobs(pipeline: &Pipeline, dir: &Path, report: &mut Report) {
    for knob in &pipeline.knobs {
        let text = std::fs::read_to_string(dir.join(&knob.file)).unwrap_or_default();
        match crate::config::knob_site::locate(&text, &knob.name) {
            Ok(site) => report.say(
                "knob",
                format!(
                    "{} = {} ({}:{}; {})",
                    knob.name,
                    site.literal,
                    knob.file,
                    site.line,
                    domain_words(&knob.domain)
                ),
            ),
            Err(err) => report.problem(err.describe(&knob.name, &knob.file), exit_codes::FAILURE),
        }
    }
}

fn domain_words(domain: &crate::config::knob::Domain) -> String {
    use crate::config::knob::Domain;
    match domain {
        Domain::Float { min, max, log } => {
            format!(
                "float {min}..{max}{}",
                if *log { ", log scale" } else { "" }
            )
        }
        Domain::Int { min, max } => format!("int {min}..{max}"),
        Domain::Pow2 { min, max } => format!("pow2 {}..{}", 1u64 << min, 1u64 << max),
        Domain::Choice { choices } => format!("one of {}", choices.join(", ")),
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The last lines of a log, indented, after a colon; empty when there are none.
fn tail_of(log: &Path) -> String {
    let tail = exec::tail::clean_tail(log, 4096, 20).unwrap_or_default();
    if tail.trim().is_empty() {
        return String::new();
    }
    let mut out = String::from(":");
    for line in tail.lines() {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}
