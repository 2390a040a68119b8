//! Setup of a run: the target repository, its lock, the run tag, the preflight checks, and the
//! start of a new run or the checks before a resume. Nothing of a new run is created before
//! every check has passed, and every step after its journal exists is safe to redo, so a start
//! that is refused leaves nothing behind and a start that is killed resumes.

use std::path::Path;
use std::time::Duration;

use super::RunOptions;
use crate::config::Pipeline;
use crate::config::resolve::{ExperimentSpec, SearchSpec};
use crate::error::Error;
use crate::run::exec::{self, Environment, Spawn};
use crate::run::git::{self, Git, Head};
use crate::run::journal::{self, Event, History, Journal, RunSettings};
use crate::run::store::{self, RunDir};
use crate::view::progress::Progress;
use crate::view::results;

/// Opens the target repository, creating it from the template or by cloning when the pipeline
/// says how. A repository is created aside and renamed into place when it is complete, so that
/// a kill in the middle leaves no half-made repository to trip over, only a directory that the
/// next start removes.
pub(super) fn open_or_create_repo(pipeline: &Pipeline, progress: &Progress) -> Result<Git, Error> {
    let target = &pipeline.target;
    if target.repo.exists() {
        return Ok(Git::open(&target.repo)?);
    }
    let (Some(parent), Some(name)) = (target.repo.parent(), target.repo.file_name()) else {
        return Err(Error::Setup(format!(
            "target repository `{}` does not exist",
            target.repo.display()
        )));
    };
    let prefix = format!(".{}.arun-creating-", name.to_string_lossy());
    remove_abandoned_creations(parent, &prefix);
    let staging = parent.join(format!("{prefix}{}", std::process::id()));
    if let Some(template) = &target.template {
        progress.note(&format!(
            "arun: creating `{}` from the template `{}`",
            target.repo.display(),
            template.display()
        ));
        std::fs::create_dir_all(parent)
            .map_err(|err| Error::io(format!("cannot create `{}`", parent.display()), err))?;
        Git::init_from_template(&staging, template)?;
    } else if let Some(url) = &target.clone {
        progress.note(&format!(
            "arun: cloning {url} into `{}`",
            target.repo.display()
        ));
        std::fs::create_dir_all(parent)
            .map_err(|err| Error::io(format!("cannot create `{}`", parent.display()), err))?;
        Git::clone(url, &staging)?;
    } else {
        return Err(Error::Setup(format!(
            "target repository `{}` does not exist",
            target.repo.display()
        )));
    }
    match std::fs::rename(&staging, &target.repo) {
        Ok(()) => store::sync_dir(parent)
            .map_err(|err| Error::io(format!("cannot sync `{}`", parent.display()), err))?,
        // Another arun made it first: use theirs.
        Err(_) if target.repo.exists() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(err) => {
            return Err(Error::io(
                format!(
                    "cannot move the new repository to `{}`",
                    target.repo.display()
                ),
                err,
            ));
        }
    }
    Ok(Git::open(&target.repo)?)
}

/// Removes the directories of repository creations whose arun is gone (killed mid-way).
fn remove_abandoned_creations(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Puts the repository in order for the arun that now holds its lock: runs an older version
/// kept in `.arun/` moved into the store, processes a killed arun left running stopped, lock
/// files a killed git operation left removed.
pub(super) fn recover(
    git: &Git,
    root: &Path,
    grace: Duration,
    progress: &Progress,
) -> Result<(), Error> {
    let notes = store::migrate_legacy(git.workdir(), root).map_err(|err| {
        Error::io(
            format!(
                "cannot move the runs in `{}` into `{}`",
                git.workdir().join(store::LEGACY_DIR).display(),
                root.display()
            ),
            err,
        )
    })?;
    for note in notes {
        progress.note(&note);
    }
    for (_, run) in store::runs(git.workdir()) {
        let stopped = exec::orphans::stop_leftovers(&run.group_file(), git.workdir(), grace);
        if stopped > 0 {
            progress.note(&format!(
                "arun: stopped {stopped} process(es) left running by a killed arun"
            ));
        }
    }
    for lock in git.remove_stale_locks() {
        progress.note(&format!(
            "arun: removed `{}`, left by a git operation that was killed before it finished",
            lock.display()
        ));
    }
    Ok(())
}

/// The run tag: `--tag`, else with `--resume` the latest run, else the pipeline's pattern for
/// today.
pub(super) fn choose_tag(
    pipeline: &Pipeline,
    options: &RunOptions,
    repo: &Path,
) -> Result<String, Error> {
    let tag = match &options.tag {
        Some(tag) => tag.clone(),
        None if options.resume => {
            return store::latest_run(repo).ok_or_else(|| {
                Error::Setup(format!("there is no run to resume in `{}`", repo.display()))
            });
        }
        None => {
            let (year, month, day) = today();
            crate::config::resolve::expand_tag(
                &pipeline.limits.tag_pattern,
                &pipeline.name,
                year,
                month,
                day,
            )
            .map_err(Error::Setup)?
        }
    };
    let problem = crate::config::resolve::tag_problem(&tag).or_else(|| {
        store::RESERVED
            .contains(&tag.as_str())
            .then(|| "the run store uses that name; choose another".to_string())
    });
    match problem {
        Some(problem) => Err(Error::Setup(format!(
            "`{tag}` is not a valid tag: {problem}"
        ))),
        None => Ok(tag),
    }
}

/// Today's local date as (year, month 1-12, day).
pub(super) fn today() -> (i32, u32, u32) {
    // SAFETY: time(NULL) and localtime_r with valid pointers to locals.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        (tm.tm_year + 1900, (tm.tm_mon + 1) as u32, tm.tm_mday as u32)
    }
}

/// Runs the preflight checks; the first failure stops with its message. They get the
/// experiments' environment: arun's without its secrets.
pub fn run_preflight(pipeline: &Pipeline, repo: &Path, progress: &Progress) -> Result<(), Error> {
    let env = Environment::inherit_scrubbed(&pipeline.experiment.scrub_env);
    for check in &pipeline.preflight {
        let log = std::env::temp_dir().join(format!("arun-preflight-{}.log", std::process::id()));
        let finished = exec::run(
            &Spawn {
                command: &check.run,
                dir: repo,
                env: &env,
                stdin: None,
                log: &log,
                limit: check.timeout,
                grace: Duration::from_secs(2),
                cpus: None,
            },
            &mut exec::Ignore,
        )
        .map_err(|err| {
            Error::io(
                format!("cannot run the preflight check `{}`", check.run),
                err,
            )
        })?;
        let output = exec::tail::clean_tail(&log, 4096, 20).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        if finished.ending == exec::Ending::Interrupted {
            return Err(Error::Setup(
                "interrupted during the preflight checks".to_string(),
            ));
        }
        if !finished.ending.success() {
            return Err(Error::Preflight {
                message: check.message.clone(),
                command: check.run.clone(),
                detail: format!(
                    "{}{}",
                    finished.ending.describe(check.timeout),
                    if output.is_empty() {
                        String::new()
                    } else {
                        format!(":\n{output}")
                    }
                ),
            });
        }
    }
    if !pipeline.preflight.is_empty() {
        progress.note(&format!(
            "arun: {} preflight checks passed",
            pipeline.preflight.len()
        ));
    }
    Ok(())
}

/// The history of the run to resume, from its journal.
pub(super) fn read_for_resume(
    git: &Git,
    run: &RunDir,
    pipeline: &Pipeline,
) -> Result<History, Error> {
    let events = journal::read(&run.journal())
        .map_err(|err| Error::io(format!("cannot read `{}`", run.journal().display()), err))?;
    let mut history = History::replay(events);
    if history.branch.is_empty() {
        return Err(Error::Setup(format!(
            "`{}` does not start with a run-started event; it is not a journal arun wrote. Move \
             the directory `{}` away to start the run again",
            run.journal().display(),
            run.path().display()
        )));
    }
    if history.settings.is_none() {
        // A journal of an older version did not list the user's untracked files: the ones
        // there now are theirs, never to be moved or deleted.
        history.untracked = git
            .untracked()?
            .into_iter()
            .filter(|path| *path != pipeline.limits.results)
            .collect();
    }
    Ok(history)
}

/// The settings a new run fixes: the pipeline's, with `--budget` applied.
pub(super) fn settings_for(pipeline: &Pipeline, budget: Option<Duration>) -> RunSettings {
    let mut experiment = pipeline.experiment.clone();
    if let Some(budget) = budget {
        override_budget(&mut experiment, budget);
    }
    RunSettings {
        budget_seconds: experiment.budget.as_secs_f64(),
        hard_limit_seconds: experiment.hard_limit.as_secs_f64(),
        metric: pipeline.metric.name().to_string(),
        goal: pipeline.metric.goal,
        search: Some(pipeline.search),
    }
}

/// A budget given on the command line: the hard limit keeps the pipeline's allowance beyond the
/// budget for start-up and evaluation, and at least the budget again.
fn override_budget(experiment: &mut ExperimentSpec, budget: Duration) {
    let allowance = experiment.hard_limit.saturating_sub(experiment.budget);
    experiment.budget = budget;
    experiment.hard_limit = budget.saturating_add(allowance.max(budget));
}

/// Makes the pipeline run with the settings the run was started with. A resume that asks for
/// another budget, or a pipeline that now measures another metric, is refused: its results
/// would not compare with the run's.
pub(super) fn apply_settings(
    pipeline: &mut Pipeline,
    history: &History,
    options: &RunOptions,
    progress: &Progress,
) -> Result<(), Error> {
    let tag = &history.tag;
    let Some(settings) = &history.settings else {
        // A journal of an older version did not keep its settings.
        if let Some(budget) = options.budget {
            override_budget(&mut pipeline.experiment, budget);
        }
        return Ok(());
    };
    let budget = Duration::from_secs_f64(settings.budget_seconds);
    let hard_limit = Duration::from_secs_f64(settings.hard_limit_seconds);
    let show = |d: Duration| crate::config::HumanDuration(d).to_string();
    if let Some(asked) = options.budget
        && !same_duration(asked, budget)
    {
        return Err(Error::Setup(format!(
            "run `{tag}` runs its experiments with a budget of {}; resuming it with `--budget \
             {}` would judge new results against ones measured with another budget. Resume \
             without `--budget`, or start a new run with its own tag: `--tag <new-tag> --budget \
             {}`",
            show(budget),
            show(asked),
            show(asked)
        )));
    }
    let metric = &pipeline.metric;
    if metric.name() != settings.metric || metric.goal != settings.goal {
        return Err(Error::Setup(format!(
            "run `{tag}` measures `{}` ({}); the pipeline now measures `{}` ({}), so new results \
             would not compare with the run's. Start a new run with its own tag (`--tag`)",
            settings.metric,
            goal_word(settings.goal),
            metric.name(),
            goal_word(metric.goal)
        )));
    }
    let experiment = &pipeline.experiment;
    if !same_duration(experiment.budget, budget)
        || !same_duration(experiment.hard_limit, hard_limit)
    {
        progress.note(&format!(
            "arun: run `{tag}` keeps the budget it started with, {} (hard limit {}); the \
             pipeline now says {} ({})",
            show(budget),
            show(hard_limit),
            show(experiment.budget),
            show(experiment.hard_limit)
        ));
    }
    if let Some(search) = settings.search
        && search != pipeline.search
    {
        progress.note(&format!(
            "arun: run `{tag}` keeps the search it started with, {}; the pipeline now says {}",
            search_words(&search),
            search_words(&pipeline.search)
        ));
    }
    use_settings(pipeline, settings);
    Ok(())
}

fn search_words(search: &SearchSpec) -> String {
    match search {
        SearchSpec::Greedy => "greedy".to_string(),
        SearchSpec::Tree {
            drafts,
            patience,
            exploration,
        } => format!("tree (drafts {drafts}, patience {patience}, exploration {exploration})"),
    }
}

/// Runs the pipeline's experiments with the run's budget, hard limit and search.
pub(super) fn use_settings(pipeline: &mut Pipeline, settings: &RunSettings) {
    pipeline.experiment.budget = Duration::from_secs_f64(settings.budget_seconds);
    pipeline.experiment.hard_limit = Duration::from_secs_f64(settings.hard_limit_seconds);
    pipeline.search = settings.search.unwrap_or(SearchSpec::Greedy);
}

fn same_duration(a: Duration, b: Duration) -> bool {
    (a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-3
}

fn goal_word(goal: crate::config::Goal) -> &'static str {
    match goal {
        crate::config::Goal::Minimize => "lower is better",
        crate::config::Goal::Maximize => "higher is better",
    }
}

/// Checks that a new run can start, then creates it: the journal with its first event (from
/// here on the run exists and a restart resumes it), the branch, the results tables.
pub(super) fn begin_run(
    pipeline: &Pipeline,
    git: &Git,
    run: &RunDir,
    tag: &str,
    settings: RunSettings,
) -> Result<(History, Journal), Error> {
    let results = &pipeline.limits.results;
    let branch = format!("autoresearch/{tag}");
    if git.branch_tip(&branch)?.is_some() {
        return Err(Error::Setup(format!(
            "branch `{branch}` already exists and has no arun journal; choose another tag with \
             `--tag`, or delete the branch"
        )));
    }
    let dirty = git.dirty_tracked()?;
    if !dirty.is_empty() {
        return Err(Error::Setup(format!(
            "the target repository has uncommitted changes to tracked files: {}; commit or stash \
             them first",
            dirty.join(", ")
        )));
    }
    let mut read_only = std::collections::BTreeMap::new();
    for path in &pipeline.target.read_only {
        let hash = git::hash_file(&git.workdir().join(path)).ok_or_else(|| {
            Error::Setup(format!(
                "read-only file `{path}` does not exist in the target repository"
            ))
        })?;
        read_only.insert(path.clone(), hash);
    }
    for path in &pipeline.target.editable {
        if !git.workdir().join(path).is_file() {
            return Err(Error::Setup(format!(
                "editable file `{path}` does not exist in the target repository"
            )));
        }
    }
    let start = git.head_commit()?;
    let event = Event::RunStarted {
        time: journal::now(),
        tag: tag.to_string(),
        branch,
        start_commit: start.to_string(),
        pipeline: pipeline.file.display().to_string(),
        read_only,
        settings: Some(settings),
        // The results table is arun's, not the user's, even before it is excluded.
        untracked: git
            .untracked()?
            .into_iter()
            .filter(|path| path != results)
            .collect(),
    };
    let journal = Journal::create(&run.journal(), &event)
        .map_err(|err| Error::io(format!("cannot create `{}`", run.journal().display()), err))?;
    let history = History::replay(vec![event]);
    Ok((history, journal))
}

/// The steps of setup that follow the journal's creation, each safe to redo: the branch at its
/// tip (recreated when a kill came before it was made, or someone deleted it), HEAD on it.
pub(super) fn ensure_branch(
    git: &Git,
    history: &History,
    progress: &Progress,
) -> Result<(), Error> {
    let tip = git::parse_oid(history.branch_tip()).ok_or_else(|| {
        Error::RunFailed(format!("`{}` is not a commit id", history.branch_tip()))
    })?;
    if git.branch_tip(&history.branch)?.is_none() {
        if !history.experiments.is_empty() {
            progress.note(&format!(
                "arun: branch `{}` was missing; made it again at {}",
                history.branch,
                git::short(tip)
            ));
        }
        git.set_branch(&history.branch, tip, "arun: start run")?;
    }
    Ok(())
}

/// On a resume, uncommitted changes to tracked files are refused as for a new run, except
/// those the killed arun's unfinished step explains: the editable files (a proposal or a
/// checkout in progress) and, while an experiment was building or running, any file (a build
/// that updated a lock file). Those are discarded.
pub(super) fn check_tree_for_resume(
    git: &Git,
    history: &History,
    pipeline: &Pipeline,
    progress: &Progress,
) -> Result<(), Error> {
    let dirty = git.dirty_tracked()?;
    if dirty.is_empty() {
        return Ok(());
    }
    let stopped_cleanly = matches!(
        history.events.last(),
        Some(Event::Stopped { .. } | Event::Interrupted { .. })
    );
    let running = history.current().is_some_and(|e| e.commit.is_some());
    let explained =
        |path: &String| !stopped_cleanly && (pipeline.target.editable.contains(path) || running);
    let (ours, theirs): (Vec<String>, Vec<String>) = dirty.into_iter().partition(explained);
    if !theirs.is_empty() {
        return Err(Error::Setup(format!(
            "the target repository has uncommitted changes to tracked files: {}; resuming would \
             overwrite them. Save them elsewhere first (e.g. `git stash`), then resume",
            theirs.join(", ")
        )));
    }
    progress.note(&format!(
        "arun: discarding what the interrupted experiment left in {}",
        ours.join(", ")
    ));
    Ok(())
}

/// Moves untracked files that were not there when the run started out of the work tree, into
/// the run's `leftovers/` directory: what a killed experiment left (a checkpoint), or what
/// someone added since. Set aside rather than deleted.
pub(super) fn set_aside_leftovers(
    git: &Git,
    history: &History,
    run: &RunDir,
    progress: &Progress,
) -> Result<(), Error> {
    let aside = run
        .path()
        .join("leftovers")
        .join(format!("{}", journal::now() as u64));
    let moved = crate::run::scope::move_untracked_except(git, &history.untracked, &aside)?;
    if !moved.is_empty() {
        progress.note(&format!(
            "arun: moved {} untracked file(s) that were not there when the run started to `{}`: \
             {}",
            moved.len(),
            aside.display(),
            moved.join(", ")
        ));
    }
    Ok(())
}

/// Makes the work tree's results.tsv show `run`'s table. A table there that is not the copy of
/// another run's own table (autoresearch's, or one a person wrote) is moved into the run
/// directory first, never overwritten.
pub(super) fn show_table(
    root: &Path,
    run: &RunDir,
    view: &Path,
    metric: &str,
    history: &History,
    progress: &Progress,
) -> Result<(), Error> {
    let write_error =
        |path: &Path, err| Error::io(format!("cannot write `{}`", path.display()), err);
    results::rewrite(&run.results(), metric, history)
        .map_err(|e| write_error(&run.results(), e))?;
    if let Ok(current) = std::fs::read(view) {
        let active = store::active_tag(root);
        let ours = active.as_deref() == Some(history.tag.as_str());
        let copy_of_active = active
            .and_then(|tag| std::fs::read(RunDir::new(root, &tag).results()).ok())
            .is_some_and(|table| table == current);
        if !ours && !copy_of_active {
            let aside = free_name(&run.path().join("results.before.tsv"));
            std::fs::rename(view, &aside)
                .map_err(|err| Error::io("cannot move the previous results.tsv aside", err))?;
            progress.note(&format!(
                "arun: moved the previous `{}` to `{}`",
                view.display(),
                aside.display()
            ));
        }
    }
    store::set_active_tag(root, &history.tag).map_err(|e| write_error(root, e))?;
    results::rewrite(view, metric, history).map_err(|e| write_error(view, e))
}

/// `path`, or `path` with `.1`, `.2`... before its extension when it exists.
fn free_name(path: &Path) -> std::path::PathBuf {
    let mut candidate = path.to_path_buf();
    let mut i = 1;
    while candidate.exists() {
        candidate = path.with_extension(format!("{i}.tsv"));
        i += 1;
    }
    candidate
}

/// HEAD on the run branch at its tip, the work tree clean: where a run starts and stops.
pub(super) fn head_on_branch(history: &History) -> Result<(Head, git2::Oid), Error> {
    let tip = git::parse_oid(history.branch_tip()).ok_or_else(|| {
        Error::RunFailed(format!("`{}` is not a commit id", history.branch_tip()))
    })?;
    Ok((Head::Branch(history.branch.clone()), tip))
}
