//! `arun best`: a run's best result as files to take away. The best node's editable files as
//! they are at its commit (the whole solution, not a patch), `best.diff` (its change from the
//! baseline) and `SUMMARY.md` (the result against the baseline, what worked, what did not).
//! Only reads the run: the journal and git objects, without its lock, so it works beside the
//! arun driving it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use git2::Oid;

use crate::config::Pipeline;
use crate::config::resolve::SearchSpec;
use crate::error::Error;
use crate::run::decide::Status;
use crate::run::git::{self, Git};
use crate::run::journal::{Experiment, History};
use crate::run::search::Tree;
use crate::run::store::RunDir;
use crate::view::report::{self, Input, Located, Report, RunState};

/// The change from the baseline, beside the files.
pub const DIFF: &str = "best.diff";
/// What the files are and how the run got there.
pub const SUMMARY: &str = "SUMMARY.md";
/// The directory in the run's own directory that `arun best` writes to by default.
pub const DIR: &str = "best";

/// Directions (descriptions) of the experiments not kept that `SUMMARY.md` lists; the rest are
/// counted in one line.
const DIRECTIONS: usize = 20;

/// What `arun best` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub dir: PathBuf,
    /// What the user should know about the result, e.g. that nothing beat the baseline.
    pub note: Option<String>,
}

/// Reads the run the input names and writes its best result to `output` (default
/// `<run dir>/best/`).
pub fn write(input: &Input, output: Option<&Path>) -> Result<Written, Error> {
    let (repo, tag, run_dir, pipeline) = match report::locate(input)? {
        Located::Run {
            repo,
            tag,
            dir,
            pipeline,
        } => (repo, tag, dir, pipeline),
        Located::Table { path, .. } => return Err(table_without_journal(&path)),
    };
    let history = report::load::read_history(&run_dir)?;
    let Some(baseline) = history
        .baseline()
        .filter(|b| b.status() == Some(Status::Keep))
    else {
        return Err(Error::NoRun(format!(
            "the run `{tag}` has no kept baseline yet, so no result to write; `arun status` \
             shows where it stands"
        )));
    };
    let best = history.best().unwrap_or(baseline);
    let pipeline = pipeline
        .map(|p| *p)
        .or_else(|| report::load::remembered_pipeline(&history));
    let editable = editable_files(&history, pipeline.as_ref()).ok_or_else(|| {
        Error::NoRun(format!(
            "cannot tell the editable files of the run `{tag}`: the pipeline it was started with \
             does not load and its journal names none; name the pipeline file instead"
        ))
    })?;
    let dir = destination(output, &repo, &run_dir, &editable)?;

    let git = Git::open(&repo)?;
    let commit = |experiment: &Experiment| commit_of(&git, &repo, &tag, experiment);
    let (base_commit, best_commit) = (commit(baseline)?, commit(best)?);
    let mut files: Vec<(String, Option<String>)> = Vec::new();
    for path in &editable {
        files.push((path.clone(), git.file_at(best_commit, path)?));
    }
    let diff = git.diff_text(base_commit, best_commit, usize::MAX)?;
    let report = report::load::from_history(&history, &repo, run_dir.path(), pipeline.as_ref());
    let note = (best.n == baseline.n).then(|| {
        "no experiment improved on the baseline: the files are the baseline's".to_string()
    });
    let summary = summary_markdown(&Best {
        history: &history,
        report: &report,
        tag: &tag,
        best,
        baseline,
        commits: (base_commit, best_commit),
        files: &files,
        note: note.as_deref(),
    });

    let mut contents: Vec<(&str, &[u8])> = files
        .iter()
        .filter_map(|(path, text)| Some((path.as_str(), text.as_deref()?.as_bytes())))
        .collect();
    contents.push((DIFF, diff.as_bytes()));
    contents.push((SUMMARY, summary.as_bytes()));
    match output {
        Some(_) => write_into(&dir, &contents)?,
        None => replace_dir(&dir, &contents)?,
    }
    Ok(Written { dir, note })
}

/// Why a results table without a journal is no run `arun best` can read.
fn table_without_journal(path: &Path) -> Error {
    Error::NoRun(format!(
        "`{}` is a results table without a journal; `arun best` needs a run made by arun \
         (its `.git/arun/<tag>/journal.jsonl` and `refs/arun/<tag>/<n>`)",
        path.display()
    ))
}

/// Where the files go: `output` (never the work tree), else `<run dir>/best/`. An editable file
/// named like `best.diff` or `SUMMARY.md` would be overwritten, so it is refused.
fn destination(
    output: Option<&Path>,
    repo: &Path,
    run_dir: &RunDir,
    editable: &[String],
) -> Result<PathBuf, Error> {
    let dir = match output {
        Some(path) => {
            refuse_work_tree(path, repo)?;
            path.to_path_buf()
        }
        None => run_dir.path().join(DIR),
    };
    if let Some(clash) = editable.iter().find(|f| *f == DIFF || *f == SUMMARY) {
        return Err(Error::io(
            format!("cannot write the best result to `{}`", dir.display()),
            std::io::Error::other(format!(
                "the editable file `{clash}` has the name of the file `arun best` writes beside it"
            )),
        ));
    }
    Ok(dir)
}

/// The commit of an experiment: its ref, else the commit its journal entry names.
fn commit_of(git: &Git, repo: &Path, tag: &str, experiment: &Experiment) -> Result<Oid, Error> {
    let reference = format!("refs/arun/{tag}/{}", experiment.n);
    git.ref_target(&reference)?
        .or_else(|| experiment.commit.as_deref().and_then(git::parse_oid))
        .ok_or_else(|| {
            Error::NoRun(format!(
                "the commit of #{} is gone: no `{reference}` in `{}`",
                experiment.n,
                repo.display()
            ))
        })
}

/// The run's editable files: the pipeline's, else every file a proposal edited (a journal
/// records each proposal's files). `None` when neither says.
fn editable_files(history: &History, pipeline: Option<&Pipeline>) -> Option<Vec<String>> {
    let files: Vec<String> = match pipeline {
        Some(pipeline) => pipeline.target.editable.clone(),
        None => history
            .experiments
            .iter()
            .filter_map(|e| e.files.as_ref())
            .flat_map(|files| files.keys().cloned())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect(),
    };
    // Only plain relative paths: nothing written may land outside the output directory.
    let files: Vec<String> = files
        .into_iter()
        .filter(|f| {
            let path = Path::new(f);
            !f.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
        })
        .collect();
    (!files.is_empty()).then_some(files)
}

/// Refuses an output directory inside the run's work tree: an arun driving the run removes
/// files there that it did not make, and a resume moves them aside.
fn refuse_work_tree(output: &Path, repo: &Path) -> Result<(), Error> {
    let absolute = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    // The deepest part of the path that exists, resolved, and the rest as given.
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(parent) = existing.parent() else {
            break;
        };
        rest.push(existing.file_name().unwrap_or_default().to_os_string());
        existing = parent;
    }
    let mut resolved = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    resolved.extend(rest.iter().rev());
    let Ok(work_tree) = repo.canonicalize() else {
        return Ok(());
    };
    let git_dir = crate::run::store::root_of(repo)
        .and_then(|store| store.parent().map(Path::to_path_buf))
        .and_then(|dir| dir.canonicalize().ok());
    let in_git_dir = git_dir.is_some_and(|dir| resolved.starts_with(dir));
    if resolved.starts_with(&work_tree) && !in_git_dir {
        return Err(Error::NoRun(format!(
            "`{}` is inside the work tree of `{}`, where an arun driving the run removes files it \
             did not make (and a resume moves them aside); write it outside, or leave out `-o` \
             for `.git/arun/<tag>/best/`",
            output.display(),
            repo.display()
        )));
    }
    Ok(())
}

/// Writes `contents` into `dir`, creating it and the files' directories.
fn write_into(dir: &Path, contents: &[(&str, &[u8])]) -> Result<(), Error> {
    for (name, bytes) in contents {
        let path = dir.join(name);
        crate::run::store::write_atomic(&path, bytes)
            .map_err(|err| Error::io(format!("cannot write `{}`", path.display()), err))?;
    }
    Ok(())
}

/// Makes `dir` hold exactly `contents`: written aside, then put in the place of the old one,
/// so that files of an earlier best do not linger.
fn replace_dir(dir: &Path, contents: &[(&str, &[u8])]) -> Result<(), Error> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let staging = dir.with_file_name(name);
    let failed = |what: &str, path: &Path, err| {
        Error::io(format!("cannot {what} `{}`", path.display()), err)
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|err| failed("remove", &staging, err))?;
    }
    write_into(&staging, contents)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|err| failed("replace", dir, err))?;
    }
    std::fs::rename(&staging, dir).map_err(|err| failed("write", dir, err))
}

/// Everything `SUMMARY.md` tells.
struct Best<'a> {
    history: &'a History,
    report: &'a Report,
    tag: &'a str,
    best: &'a Experiment,
    baseline: &'a Experiment,
    /// The baseline's and the best's commits.
    commits: (Oid, Oid),
    /// The editable files and their text at the best (`None`: absent there).
    files: &'a [(String, Option<String>)],
    note: Option<&'a str>,
}

/// `SUMMARY.md`: the best against the baseline, the files, what worked (the best path), what
/// did not (branches off the best path, the directions discarded or crashed), the counts.
fn summary_markdown(facts: &Best) -> String {
    let mut out = String::new();
    best_against_baseline(&mut out, facts);
    files_and_run(&mut out, facts);
    let tree = Tree::of(facts.history);
    let path = tree.path_to(facts.best.n);
    what_worked(&mut out, facts, &path);
    let _ = writeln!(out, "## What did not\n");
    let on_path: BTreeSet<u64> = path.iter().map(|e| e.n).collect();
    branches_off_the_path(&mut out, facts, &tree, &on_path);
    directions_not_kept(&mut out, facts.history, &tree);
    out
}

/// An experiment's metric with six decimals, `–` when it has none.
fn metric_text(e: &Experiment) -> String {
    e.metric()
        .map_or_else(|| "–".to_string(), |m| format!("{m:.6}"))
}

/// The title, the note, the baseline and the best with their commits, and the change between
/// them.
fn best_against_baseline(out: &mut String, facts: &Best) {
    let Best {
        report,
        tag,
        best,
        baseline,
        commits,
        note,
        ..
    } = *facts;
    let metric = &report.metric;
    let goal = report.goal;
    let _ = writeln!(
        out,
        "# The best of run `{tag}`: {metric} {}\n",
        metric_text(best)
    );
    if let Some(note) = note {
        let _ = writeln!(out, "**Note:** {note}.\n");
    }
    let _ = writeln!(out, "| | # | {metric} | commit |\n|---|---|---|---|");
    let _ = writeln!(
        out,
        "| baseline | {} | {} | `{}` |",
        baseline.n,
        metric_text(baseline),
        git::short(commits.0)
    );
    let _ = writeln!(
        out,
        "| best | {} | {} | `{}` |\n",
        best.n,
        metric_text(best),
        git::short(commits.1)
    );
    if let (Some(b), Some(m)) = (baseline.metric(), best.metric())
        && best.n != baseline.n
    {
        let percent = if b != 0.0 {
            format!(
                ", {:.2}% {}",
                100.0 * goal.improvement(m, b).abs() / b.abs(),
                if goal.improvement(m, b) >= 0.0 {
                    "better"
                } else {
                    "worse"
                }
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:+.6} against the baseline{percent} ({} is better).\n",
            m - b,
            goal.better_word()
        );
    }
}

/// Which files are here and where they come from, whether the run is still going, the counts
/// and the search.
fn files_and_run(out: &mut String, facts: &Best) {
    let Best {
        history,
        report,
        tag,
        best,
        commits,
        files,
        ..
    } = *facts;
    let written: Vec<String> = files
        .iter()
        .filter(|(_, text)| text.is_some())
        .map(|(path, _)| format!("`{path}`"))
        .collect();
    let _ = writeln!(
        out,
        "The files here are the editable files as they are at #{} (`refs/arun/{tag}/{}`): {}. \
         `{DIFF}` is their change from the baseline (`git diff {} {}`).",
        best.n,
        best.n,
        if written.is_empty() {
            "none".to_string()
        } else {
            written.join(", ")
        },
        git::short(commits.0),
        git::short(commits.1),
    );
    for (path, _) in files.iter().filter(|(_, text)| text.is_none()) {
        let _ = writeln!(out, "`{path}` does not exist at #{}.", best.n);
    }
    out.push('\n');
    if let Some(run) = &report.run
        && matches!(run.state, RunState::Running { .. })
    {
        let _ = writeln!(
            out,
            "The run was still going when this was written: a later `arun best` may find a \
             better result.\n"
        );
    }
    let _ = writeln!(out, "{}.", report.summary().counts());
    match history.search() {
        SearchSpec::Greedy => {
            let _ = writeln!(out, "Search: greedy, each experiment on the best so far.\n");
        }
        SearchSpec::Tree {
            drafts, patience, ..
        } => {
            let _ = writeln!(
                out,
                "Search: tree (drafts {drafts}, patience {patience}): {}.\n",
                report.tree.as_ref().map_or_else(String::new, |t| t.shape())
            );
        }
    }
}

/// `## What worked`: the kept steps from the baseline to the best, each against the one it
/// built on.
fn what_worked(out: &mut String, facts: &Best, path: &[&Experiment]) {
    let history = facts.history;
    let metric = &facts.report.metric;
    let _ = writeln!(out, "## What worked\n");
    if path.len() <= 1 {
        let _ = writeln!(out, "No kept step: nothing improved on the baseline.\n");
        return;
    }
    let _ = writeln!(
        out,
        "The kept steps from the baseline to the best, each against the one it built on:\n"
    );
    let _ = writeln!(
        out,
        "| # | {metric} | change | description |\n|---|---|---|---|"
    );
    let mut previous: Option<f64> = None;
    for step in path {
        let change = match (previous, step.metric()) {
            (Some(p), Some(m)) => format!("{:+.6}", m - p),
            _ => String::new(),
        };
        previous = step.metric();
        // A kept fix says which idea it made work.
        let description = match step.fix_of.and_then(|n| history.experiment(n)) {
            Some(crash) => format!(
                "{} (fixing #{}: {})",
                step.description_text(),
                crash.n,
                crash.description_text()
            ),
            None => step.description_text(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {change} | {} |",
            step.n,
            metric_text(step),
            cell(&description)
        );
    }
    out.push('\n');
}

/// The kept steps that led off the best path, each with the best result below it and whether
/// the search closed it; nothing when there is none.
fn branches_off_the_path(out: &mut String, facts: &Best, tree: &Tree, on_path: &BTreeSet<u64>) {
    let branches = branches_off(facts.history, tree, on_path);
    if branches.is_empty() {
        return;
    }
    let dead: BTreeSet<u64> = facts
        .report
        .tree
        .as_ref()
        .map(|t| t.dead_ends.iter().copied().collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Branches off the best path: kept steps that led elsewhere, each with the best \
         result below it.\n"
    );
    for branch in &branches {
        let closed = branch.nodes.iter().all(|n| dead.contains(&n.n));
        let root = branch.nodes[0];
        let _ = writeln!(
            out,
            "- #{} {}, from #{}: best {} at #{}; {} node{}, {} tried below without \
             improving; {}",
            root.n,
            root.description_text(),
            root.parent.unwrap_or(0),
            metric_text(branch.best),
            branch.best.n,
            branch.nodes.len(),
            if branch.nodes.len() == 1 { "" } else { "s" },
            branch.failed,
            if closed { "a dead end" } else { "still open" }
        );
    }
    out.push('\n');
}

/// The experiments not kept, grouped by direction (their description), the most tried first.
fn directions_not_kept(out: &mut String, history: &History, tree: &Tree) {
    let directions = directions(history, tree);
    if directions.is_empty() {
        let _ = writeln!(out, "Every experiment after the baseline was kept.");
        return;
    }
    let _ = writeln!(
        out,
        "Experiments not kept, by direction (their description), the most tried first:\n"
    );
    let _ = writeln!(
        out,
        "| direction | tried | discarded | crashed | closest | change from its parent |\n\
         |---|---|---|---|---|---|"
    );
    for direction in directions.iter().take(DIRECTIONS) {
        let (closest, change) = match direction.closest {
            Some((n, m, change)) => (
                format!("{m:.6} (#{n})"),
                change.map_or_else(String::new, |c| format!("{c:+.6}")),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {closest} | {change} |",
            cell(&direction.description),
            direction.tried,
            direction.discarded,
            direction.crashed
        );
    }
    if directions.len() > DIRECTIONS {
        let rest = &directions[DIRECTIONS..];
        let _ = writeln!(
            out,
            "\nAnd {} more directions, tried {} times in all.",
            rest.len(),
            rest.iter().map(|d| d.tried).sum::<usize>()
        );
    }
}

/// A branch off the best path: a kept node whose parent is on the path, with every node below
/// it.
struct Branch<'h> {
    /// Its nodes, the root first.
    nodes: Vec<&'h Experiment>,
    /// Its best node.
    best: &'h Experiment,
    /// Proposals made on its nodes that did not improve.
    failed: usize,
}

fn branches_off<'h>(
    history: &'h History,
    tree: &Tree<'h>,
    on_path: &BTreeSet<u64>,
) -> Vec<Branch<'h>> {
    let goal = history.goal();
    let nodes: Vec<&Experiment> = tree.nodes().collect();
    let mut branches: Vec<Branch> = nodes
        .iter()
        .filter(|node| !on_path.contains(&node.n))
        .filter(|node| node.parent.is_some_and(|p| on_path.contains(&p)))
        .map(|root| {
            let mut members = vec![*root];
            let mut at = 0;
            while at < members.len() {
                let n = members[at].n;
                members.extend(nodes.iter().copied().filter(|e| e.parent == Some(n)));
                at += 1;
            }
            let best = members
                .iter()
                .copied()
                .filter(|e| e.metric().is_some())
                .fold(*root, |best, e| match (best.metric(), e.metric()) {
                    (Some(b), Some(m)) if goal.improvement(m, b) > 0.0 => e,
                    _ => best,
                });
            let failed = members
                .iter()
                .map(|node| tree.children(node.n).filter(|c| !tree.improved(c)).count())
                .sum();
            Branch {
                nodes: members,
                best,
                failed,
            }
        })
        .collect();
    branches.sort_by(|a, b| {
        let gain = |e: &Experiment| {
            e.metric()
                .map_or(f64::NEG_INFINITY, |m| goal.improvement(m, 0.0))
        };
        gain(b.best)
            .total_cmp(&gain(a.best))
            .then(a.nodes[0].n.cmp(&b.nodes[0].n))
    });
    branches
}

/// Proposals not kept that share a description.
struct Direction {
    description: String,
    tried: usize,
    discarded: usize,
    crashed: usize,
    /// The best result among them: (experiment, metric, change from its parent).
    closest: Option<(u64, f64, Option<f64>)>,
}

/// The proposals that did not improve (fixes counted with the proposal they fix), grouped by
/// description, the most tried first, then the closest to improving.
fn directions(history: &History, tree: &Tree) -> Vec<Direction> {
    let goal = history.goal();
    let mut groups: BTreeMap<String, (u64, Direction)> = BTreeMap::new();
    for child in tree.expansions().filter(|c| !tree.improved(c)) {
        let outcome = tree.outcome(child);
        let description = crate::text::one_line(&child.description_text());
        let entry = groups.entry(description.clone()).or_insert((
            child.n,
            Direction {
                description,
                tried: 0,
                discarded: 0,
                crashed: 0,
                closest: None,
            },
        ));
        let direction = &mut entry.1;
        direction.tried += 1;
        match outcome.status() {
            Some(Status::Crash) => direction.crashed += 1,
            _ => direction.discarded += 1,
        }
        if outcome.status() != Some(Status::Crash)
            && let Some(metric) = outcome.metric()
            && direction
                .closest
                .is_none_or(|(_, best, _)| goal.improvement(metric, best) > 0.0)
        {
            let parent = child
                .parent
                .and_then(|p| history.experiment(p))
                .and_then(Experiment::metric);
            direction.closest = Some((outcome.n, metric, parent.map(|p| metric - p)));
        }
    }
    let mut list: Vec<(u64, Direction)> = groups.into_values().collect();
    list.sort_by(|(a_first, a), (b_first, b)| {
        let gain = |d: &Direction| {
            d.closest
                .map_or(f64::NEG_INFINITY, |(_, m, _)| goal.improvement(m, 0.0))
        };
        b.tried
            .cmp(&a.tried)
            .then(gain(b).total_cmp(&gain(a)))
            .then(a_first.cmp(b_first))
    });
    list.into_iter().map(|(_, d)| d).collect()
}

/// Text for a Markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    crate::text::one_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written() {
        let mut history = History::default();
        history.experiments.push(Experiment {
            n: 1,
            files: Some(BTreeMap::from([
                ("train.py".to_string(), Some("b1".to_string())),
                ("../escape.py".to_string(), Some("b2".to_string())),
                ("/etc/passwd".to_string(), None),
                ("src/model.py".to_string(), Some("b3".to_string())),
            ])),
            ..Experiment::default()
        });
        assert_eq!(
            editable_files(&history, None),
            Some(vec!["src/model.py".to_string(), "train.py".to_string()])
        );
        assert_eq!(editable_files(&History::default(), None), None);
    }

    #[test]
    fn an_output_in_the_work_tree_is_refused_and_one_in_the_git_directory_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git2::Repository::init(&repo).unwrap();
        let err = refuse_work_tree(&repo.join("out/best"), &repo).unwrap_err();
        assert!(
            err.to_string().contains("is inside the work tree of"),
            "{err}"
        );
        assert!(refuse_work_tree(&repo.join(".git/arun/t/best"), &repo).is_ok());
        assert!(refuse_work_tree(&dir.path().join("elsewhere"), &repo).is_ok());
    }
}
