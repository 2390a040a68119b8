//! `arun init`: a pipeline file for a training project, guessed from the repository and from
//! one short run of it (or a log of one), with every guess said in a comment. It asks in a
//! terminal (unless `--yes`), validates what it wrote, and never overwrites a file.

pub mod knobs;
pub mod project;
pub mod render;
pub mod values;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::config::HumanDuration;
use crate::error::Error;
use crate::run::exec::{self, Environment, Spawn};
use crate::run::scratch::Scratch;
use crate::view::progress::Progress;
use project::{Guess, Project};
use render::{MetricPlan, Plan};
use values::{MetricKind, Seen, Values};

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    pub repo: PathBuf,
    pub output: Option<PathBuf>,
    pub run: Option<String>,
    pub editable: Option<String>,
    pub metric: Option<String>,
    /// How long the probe run may take.
    pub probe: Duration,
    /// A log of a run to read instead of a probe run.
    pub log: Option<PathBuf>,
    pub knobs: bool,
    pub yes: bool,
}

/// Writes the pipeline and returns its path.
pub fn init(options: &Options) -> Result<PathBuf, Error> {
    let repo = options
        .repo
        .canonicalize()
        .map_err(|err| Error::io(format!("cannot open `{}`", options.repo.display()), err))?;
    let name = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".to_string());
    let output = options
        .output
        .clone()
        .unwrap_or_else(|| Path::new("pipelines").join(format!("{name}.toml")));
    if output.exists() {
        return Err(Error::Setup(format!(
            "`{}` exists; arun init never overwrites a file: choose another with `-o FILE`",
            output.display()
        )));
    }
    let files = tracked_files(&repo)?;
    let read = |path: &str| std::fs::read_to_string(repo.join(path)).ok();
    let given = project::Given {
        run: options.run.as_deref(),
        editable: options.editable.as_deref(),
        python: Some(if on_path("python") {
            "python"
        } else {
            "python3"
        }),
    };
    let project = project::inspect(&files, &read, &given).map_err(Error::Setup)?;
    let interactive = !options.yes && std::io::stdin().is_terminal();
    let probe = probe(&repo, &project, options)?;
    let (seen, kind) = choose_metric(&probe.values, options.metric.as_deref(), interactive)?;
    let editable_text = read(&project.editable.value).unwrap_or_default();
    let suggestions = knobs::suggest(&knobs::constants(&project.editable.value, &editable_text));
    if options.knobs
        && !suggestions
            .iter()
            .any(|s| matches!(s, knobs::Suggestion::Knob(_)))
    {
        return Err(Error::Setup(format!(
            "`--knobs`: `{}` has no UPPER_CASE constant with a number for a value to search",
            project.editable.value
        )));
    }
    let plan = plan(
        &repo,
        &output,
        name,
        &project,
        &probe,
        seen,
        kind,
        suggestions,
        options,
    )?;
    let text = render::render(&plan);
    if interactive && !confirm(&text, &output)? {
        return Err(Error::Setup("nothing written".to_string()));
    }
    write_validated(&output, &text)?;
    Ok(output)
}

/// The repository's tracked files.
fn tracked_files(repo: &Path) -> Result<Vec<String>, Error> {
    let repository = git2::Repository::open(repo).map_err(|_| {
        Error::Setup(format!(
            "`{}` is not a git repository: arun runs experiments as commits; `git init` and \
             commit the project first",
            repo.display()
        ))
    })?;
    let index = repository
        .index()
        .map_err(|err| Error::Setup(format!("cannot read the git index: {err}")))?;
    let files: Vec<String> = index
        .iter()
        .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
        .collect();
    if files.is_empty() {
        return Err(Error::Setup(format!(
            "`{}` has no tracked files: commit the project first",
            repo.display()
        )));
    }
    Ok(files)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The values one run printed, and how that run went.
struct Probe {
    values: Values,
    log: PathBuf,
    /// In words, for the comments: "a 60s probe run of `uv run train.py`".
    source: String,
    /// How long the run took when it finished by itself.
    finished_in: Option<Duration>,
    /// Keeps the probe's log while it is read.
    _scratch: Option<Scratch>,
}

/// The values the project prints: from the log given, else from a short run of a scratch copy
/// (built first when it has a build).
fn probe(repo: &Path, project: &Project, options: &Options) -> Result<Probe, Error> {
    if let Some(log) = &options.log {
        let values = values::read_log(log)
            .map_err(|err| Error::io(format!("cannot read `{}`", log.display()), err))?;
        return Ok(Probe {
            values,
            log: log.clone(),
            source: format!("the log `{}`", log.display()),
            finished_in: None,
            _scratch: None,
        });
    }
    let scratch = Scratch::of_repository(repo, &std::env::temp_dir())
        .map_err(|err| Error::io(format!("cannot copy `{}`", repo.display()), err))?;
    let env = probe_environment(project, options);
    let mut progress = Progress::new();
    if let Some(build) = &project.build {
        build_in(&scratch, build, &env, &mut progress)?;
    }
    let log = scratch.logs().join("probe.log");
    progress.phase(
        format!(
            "init: probing `{}` for up to {}",
            project.run.value,
            HumanDuration(options.probe)
        ),
        Some(options.probe),
    );
    let finished = run(
        &project.run.value,
        scratch.path(),
        &env,
        &log,
        options.probe,
        &mut progress,
    )?;
    progress.clear();
    let values = values::read_log(&log)
        .map_err(|err| Error::io(format!("cannot read `{}`", log.display()), err))?;
    let ending = finished.ending;
    if !ending.success() && ending != exec::Ending::TimedOut {
        return Err(Error::Setup(format!(
            "the probe run `{}` failed ({}); fix it or name the command with `--run`, or give a \
             log of a run with `--log FILE`:\n{}",
            project.run.value,
            ending.describe(options.probe),
            exec::tail::clean_tail(&log, 4096, 20).unwrap_or_default()
        )));
    }
    let source = probe_source(project, options, &finished);
    Ok(Probe {
        values,
        log,
        source,
        finished_in: ending.success().then_some(finished.elapsed),
        _scratch: Some(scratch),
    })
}

/// The environment of the build and the probe run: the project's variables, and the probe's
/// length as the budget.
fn probe_environment(project: &Project, options: &Options) -> Environment {
    let mut env = Environment::inherit_scrubbed(&[]);
    for (name, value, _) in &project.env {
        env.set(name.clone(), value.clone());
    }
    env.set("ARUN_BUDGET_SECONDS", options.probe.as_secs().to_string());
    env
}

/// Runs the project's build in the scratch copy; a failed build stops `arun init`.
fn build_in(
    scratch: &Scratch,
    build: &Guess,
    env: &Environment,
    progress: &mut Progress,
) -> Result<(), Error> {
    let log = scratch.logs().join("build.log");
    progress.phase(format!("init: building with `{}`", build.value), None);
    let finished = run(
        &build.value,
        scratch.path(),
        env,
        &log,
        Duration::from_secs(1800),
        progress,
    )?;
    progress.clear();
    if !finished.ending.success() {
        return Err(Error::Setup(format!(
            "the build `{}` failed ({}); fix it, or say the commands with `--run`:\n{}",
            build.value,
            finished.ending.describe(Duration::from_secs(1800)),
            exec::tail::clean_tail(&log, 4096, 20).unwrap_or_default()
        )));
    }
    Ok(())
}

/// The probe run in words, for the comments: stopped at the probe's length, or finished.
fn probe_source(project: &Project, options: &Options, finished: &exec::Finished) -> String {
    match finished.ending {
        exec::Ending::TimedOut => format!(
            "a probe run of `{}`, stopped after {} before it finished (only values printed \
             during training were seen; `--probe` longer, or `--log` of a whole run, for the \
             final ones)",
            project.run.value,
            HumanDuration(options.probe)
        ),
        _ => format!(
            "a probe run of `{}`, which finished in {:.1}s",
            project.run.value,
            finished.elapsed.as_secs_f64()
        ),
    }
}

fn run(
    command: &str,
    dir: &Path,
    env: &Environment,
    log: &Path,
    limit: Duration,
    progress: &mut Progress,
) -> Result<exec::Finished, Error> {
    exec::interrupt::install()
        .map_err(|err| Error::io("cannot install the Ctrl-C handler", err))?;
    let spawn = Spawn {
        command,
        dir,
        env,
        stdin: None,
        log,
        limit,
        grace: Duration::from_secs(5),
        cpus: None,
    };
    let finished = exec::run(&spawn, &mut progress.main_line())
        .map_err(|err| Error::io(format!("cannot run `{command}`"), err))?;
    if finished.ending == exec::Ending::Interrupted {
        return Err(Error::Setup("interrupted; nothing written".to_string()));
    }
    Ok(finished)
}

/// The target metric: the one named, or the likeliest (asked in a terminal).
fn choose_metric<'v>(
    values: &'v Values,
    named: Option<&str>,
    interactive: bool,
) -> Result<(&'v Seen, Option<MetricKind>), Error> {
    if let Some(name) = named {
        let seen = values.find(name).ok_or_else(|| {
            Error::Setup(format!(
                "`--metric {name}`: the output has no value of that name; it printed {}",
                printed(values)
            ))
        })?;
        return Ok((seen, values::metric_kind(&seen.key)));
    }
    let ranked = values::ranked_metrics(values);
    if ranked.is_empty() {
        return Err(Error::Setup(format!(
            "no value in the output looks like a metric (a loss, an accuracy, bits per byte...); \
             it printed {}; name one with `--metric NAME`",
            printed(values)
        )));
    }
    if !interactive || ranked.len() == 1 {
        let (seen, kind) = ranked[0];
        return Ok((seen, Some(kind)));
    }
    ask_metric(&ranked).map(|(seen, kind)| (seen, Some(kind)))
}

fn printed(values: &Values) -> String {
    if values.seen.is_empty() {
        return "no `name: number` value at all".to_string();
    }
    let names: Vec<String> = values
        .seen
        .iter()
        .take(20)
        .map(|s| format!("`{}`", s.key))
        .collect();
    names.join(", ")
}

fn describe(seen: &Seen, kind: Option<&MetricKind>) -> String {
    let printed = format!(
        "last printed as `{}`{}",
        seen.last_text,
        if seen.count > 1 {
            format!(", {} times", seen.count)
        } else {
            " once".to_string()
        }
    );
    match kind {
        Some(kind) => format!(
            "{}{}, {} is better; {printed}",
            kind.what,
            kind.split
                .map(|s| format!(" on the {s} split"))
                .unwrap_or_default(),
            kind.goal.better_word()
        ),
        None => format!("named with `--metric`; {printed}"),
    }
}

fn ask_metric<'v>(ranked: &[(&'v Seen, MetricKind)]) -> Result<(&'v Seen, MetricKind), Error> {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "Values that could be the metric, likeliest first:");
    for (i, (seen, kind)) in ranked.iter().enumerate().take(9) {
        let _ = writeln!(
            err,
            "  {}. {} ({})",
            i + 1,
            seen.key,
            describe(seen, Some(kind))
        );
    }
    let _ = write!(err, "Which is the metric? [1] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("cannot read the answer", e))?;
    let answer = answer.trim();
    let index = if answer.is_empty() {
        0
    } else {
        answer
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=ranked.len().min(9)).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| Error::Setup(format!("`{answer}` is not one of the numbers shown")))?
    };
    Ok(ranked[index])
}

#[expect(
    clippy::too_many_arguments,
    reason = "each is one decided part of the plan"
)]
fn plan<'p>(
    repo: &Path,
    output: &Path,
    name: String,
    project: &'p Project,
    probe: &Probe,
    seen: &Seen,
    kind: Option<MetricKind>,
    knobs: Vec<knobs::Suggestion>,
    options: &Options,
) -> Result<Plan<'p>, Error> {
    let values = &probe.values;
    let memory = values::memory(values);
    let mut wanted: Vec<&Seen> = vec![seen];
    let extras: Vec<&Seen> = values
        .seen
        .iter()
        .filter(|s| s.key != seen.key)
        .filter(|s| {
            (values::summary_like(s) && !values::setting_like(s))
                || memory.as_ref().is_some_and(|(m, _, _)| m.key == s.key)
        })
        .take(12)
        .collect();
    wanted.extend(&extras);
    let regexes = values::checked_regexes(&probe.log, &wanted)
        .map_err(|err| Error::io(format!("cannot read `{}`", probe.log.display()), err))?;
    let (regex, checked) = regexes[&seen.key].clone();
    let extra: Vec<(String, String)> = extras
        .iter()
        .filter_map(|s| match &regexes[&s.key] {
            (regex, true) => Some((s.key.clone(), regex.clone())),
            _ => None,
        })
        .collect();
    let memory = memory
        .filter(|(m, _, _)| extra.iter().any(|(k, _)| *k == m.key))
        .map(|(m, unit, why)| (m.key.clone(), unit, why));
    let alternatives = values::ranked_metrics(values)
        .into_iter()
        .filter(|(s, _)| s.key != seen.key)
        .take(4)
        .map(|(s, k)| (s.key.clone(), describe(s, Some(&k))))
        .collect();
    let pipeline_dir = absolute_parent(output)?;
    let instructions_file = project
        .instructions
        .as_ref()
        .map(|file| relative(&pipeline_dir, &repo.join(file)));
    Ok(Plan {
        name,
        repo: relative(&pipeline_dir, repo),
        project,
        instructions_file,
        budget: budget(probe.finished_in),
        metric: MetricPlan {
            key: seen.key.clone(),
            regex,
            goal: kind.map_or(crate::config::Goal::Minimize, |k| k.goal),
            why: describe(seen, kind.as_ref()),
            checked,
        },
        extra,
        memory,
        probe: probe.source.clone(),
        alternatives,
        knobs,
        use_knobs: options.knobs,
    })
}

/// The budget: the probe's own time when it finished by itself, rounded up; else 5 minutes.
fn budget(finished_in: Option<Duration>) -> Guess {
    match finished_in {
        Some(took) => {
            let took = took.as_secs_f64();
            let seconds = took.max(1.0);
            let value = if seconds <= 90.0 {
                format!("{}s", ((seconds / 10.0).ceil() * 10.0).max(10.0) as u64)
            } else {
                format!("{}m", (seconds / 60.0).ceil() as u64)
            };
            Guess {
                value,
                why: format!("The probe run finished by itself in {took:.1}s, rounded up"),
            }
        }
        None => Guess {
            value: "5m".to_string(),
            why: "A guess (autoresearch trains 5 minutes): set how long one experiment trains"
                .to_string(),
        },
    }
}

/// The absolute directory a file will be in (created if needed).
fn absolute_parent(file: &Path) -> Result<PathBuf, Error> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|err| Error::io(format!("cannot create `{}`", parent.display()), err))?;
    parent
        .canonicalize()
        .map_err(|err| Error::io(format!("cannot open `{}`", parent.display()), err))
}

/// `to` as a path relative to the directory `from`; both absolute and normalised.
pub fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

fn confirm(text: &str, output: &Path) -> Result<bool, Error> {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = write!(err, "Write this to `{}`? [Y/n] ", output.display());
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("cannot read the answer", e))?;
    Ok(matches!(answer.trim(), "" | "y" | "Y" | "yes"))
}

/// Writes the file beside its final name, validates it there (its relative paths are then the
/// final ones), and links it into place, which fails rather than overwrite a file that appeared
/// meanwhile.
fn write_validated(output: &Path, text: &str) -> Result<(), Error> {
    let file_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let draft = output.with_file_name(format!(".{file_name}.arun-init-{}", std::process::id()));
    std::fs::write(&draft, text)
        .map_err(|err| Error::io(format!("cannot write `{}`", draft.display()), err))?;
    let validated = crate::config::load(&draft);
    let linked = validated
        .as_ref()
        .ok()
        .map(|_| std::fs::hard_link(&draft, output));
    let _ = std::fs::remove_file(&draft);
    if let Err(invalid) = validated {
        return Err(Error::RunFailed(format!(
            "the pipeline arun init wrote does not validate (a bug of arun init; please report \
             it):\n{}",
            invalid
                .diagnostics
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    match linked {
        Some(Err(err)) => Err(Error::io(
            format!(
                "cannot write `{}` (it must not exist yet)",
                output.display()
            ),
            err,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/a/b/pipelines"), Path::new("/a/b")),
            ".."
        );
        assert_eq!(relative(Path::new("/a/b"), Path::new("/a/c/d")), "../c/d");
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), ".");
    }

    #[test]
    fn the_budget_is_the_probe_time_rounded_up() {
        assert_eq!(budget(Some(Duration::from_millis(300))).value, "10s");
        assert_eq!(budget(Some(Duration::from_secs(61))).value, "70s");
        assert_eq!(budget(Some(Duration::from_secs(301))).value, "6m");
        assert_eq!(budget(None).value, "5m");
    }
}
