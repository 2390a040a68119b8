//! Setup of a run: the target repository, the run tag, the lock, the preflight checks, and
//! the first journal event of a new run.

use std::path::Path;
use std::time::Duration;

use super::RunOptions;
use crate::config::Pipeline;
use crate::error::Error;
use crate::exec::{self, Environment, Spawn};
use crate::git::{self, Git, Head};
use crate::journal::{self, Event, History, Journal};
use crate::progress::Progress;
use crate::results;

/// Opens the target repository, creating it from the template or by cloning when the pipeline
/// says how.
pub(super) fn open_or_create_repo(pipeline: &Pipeline, progress: &Progress) -> Result<Git, Error> {
    let target = &pipeline.target;
    if target.repo.exists() {
        return Ok(Git::open(&target.repo)?);
    }
    if let Some(template) = &target.template {
        progress.note(&format!(
            "arun: creating `{}` from the template `{}`",
            target.repo.display(),
            template.display()
        ));
        return Ok(Git::init_from_template(&target.repo, template)?);
    }
    if let Some(url) = &target.clone {
        progress.note(&format!(
            "arun: cloning {url} into `{}`",
            target.repo.display()
        ));
        return Ok(Git::clone(url, &target.repo)?);
    }
    Err(Error::Setup(format!(
        "target repository `{}` does not exist",
        target.repo.display()
    )))
}

/// The run tag: `--tag`, else with `--resume` the latest run, else the pipeline's pattern for
/// today.
pub(super) fn choose_tag(
    pipeline: &Pipeline,
    options: &RunOptions,
    repo: &Path,
) -> Result<String, Error> {
    if let Some(tag) = &options.tag {
        if !crate::config::resolve::valid_tag(tag) {
            return Err(Error::Setup(format!(
                "`{tag}` is not a valid tag; use letters, digits, `-`, `_` and `.`"
            )));
        }
        return Ok(tag.clone());
    }
    if options.resume {
        return latest_run(repo).ok_or_else(|| {
            Error::Setup(format!(
                "there is no run to resume in `{}`",
                repo.join(".arun").display()
            ))
        });
    }
    let (year, month, day) = today();
    crate::config::resolve::expand_tag(
        &pipeline.limits.tag_pattern,
        &pipeline.name,
        year,
        month,
        day,
    )
    .map_err(Error::Setup)
}

/// Takes the run's lock file, so that two arun processes never drive the same run. The lock goes
/// with the process, however it ends.
pub(super) fn lock_run(dir: &Path, tag: &str) -> Result<std::fs::File, Error> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::create_dir_all(dir)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .map_err(|err| Error::io(format!("cannot create `{}`", path.display()), err))?;
    // SAFETY: flock on a file descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        return Err(Error::Setup(format!(
            "run `{tag}` is already being driven by another arun process"
        )));
    }
    Ok(file)
}

/// The tag of the run whose journal changed last.
pub(crate) fn latest_run(repo: &Path) -> Option<String> {
    std::fs::read_dir(repo.join(".arun"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let modified = entry
                .path()
                .join("journal.jsonl")
                .metadata()
                .ok()?
                .modified()
                .ok()?;
            Some((modified, entry.file_name().to_string_lossy().into_owned()))
        })
        .max()
        .map(|(_, tag)| tag)
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

/// Runs the preflight checks; the first failure stops with its message.
pub(super) fn run_preflight(
    pipeline: &Pipeline,
    repo: &Path,
    progress: &Progress,
) -> Result<(), Error> {
    for check in &pipeline.preflight {
        let log = std::env::temp_dir().join(format!("arun-preflight-{}.log", std::process::id()));
        let finished = exec::run(
            &Spawn {
                command: &check.run,
                dir: repo,
                env: &Environment::inherit(),
                stdin: None,
                log: &log,
                limit: check.timeout,
                grace: Duration::from_secs(2),
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

/// Setup of a new run: refuses a dirty tree or a taken branch, pins the read-only files,
/// creates the branch and results.tsv, journals the start.
pub(super) fn begin_run(
    pipeline: &Pipeline,
    git: &Git,
    tag: &str,
    results_path: &Path,
    dir: &Path,
    journal: &mut Journal,
) -> Result<History, Error> {
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
    git.set_branch(&branch, start, "arun: start run")?;
    git.reset_hard(&Head::Branch(branch.clone()), start)?;
    if results_path.exists() {
        let keep = dir.join("results.before.tsv");
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::rename(results_path, &keep))
            .map_err(|err| Error::io("cannot move the previous results.tsv aside", err))?;
    }
    results::create(results_path, pipeline.metric.name())
        .map_err(|err| Error::io(format!("cannot create `{}`", results_path.display()), err))?;
    let event = Event::RunStarted {
        time: journal::now(),
        tag: tag.to_string(),
        branch,
        start_commit: start.to_string(),
        pipeline: pipeline.file.display().to_string(),
        read_only,
    };
    journal
        .append(&event)
        .map_err(|err| Error::io("cannot write the journal", err))?;
    Ok(History::replay(vec![event]))
}
