//! Scope: a proposer may change the editable files and nothing else. A snapshot of the work
//! tree and the refs is taken before it works. Afterwards `inspect` finds, without changing
//! anything, what it did besides its edit and how to undo it; the session journals that with
//! the proposal (so a kill from here on loses neither the paid-for edit nor the undo), then
//! `carry_out` undoes it: tracked files restored, files it created deleted, untracked files it
//! changed restored from the copy the snapshot kept, refs it created, moved or deleted put
//! back, `.git/info/exclude` restored (so that it cannot hide a file from the check). Every
//! step of `carry_out` is safe to repeat after a restart.
//!
//! Ignored files are the user's data (datasets, caches, virtual environments, build output):
//! arun never restores them. Ignored files the proposer created are removed; changes to ignored
//! files that were there are noted, not undone.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Oid, StatusOptions};
use serde::{Deserialize, Serialize};

use crate::run::git::{Git, GitError, Head};

/// Untracked files up to this size are copied into the object database by the snapshot, so a
/// change to them can be undone; larger ones are only watched.
const KEEP_BYTES: u64 = 16 * 1024 * 1024;

/// What a file looked like: its size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::symlink_metadata(path).ok()?;
        Some(Stamp {
            len: metadata.len(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        })
    }
}

/// An untracked file as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Untracked {
    /// Its content, kept as a blob.
    Kept(Oid),
    /// Too large to keep: only its stamp.
    Large(Stamp),
}

/// A work tree before a proposer works, with the shared baseline it was taken against.
#[derive(Debug, Clone)]
pub struct Snapshot {
    untracked: BTreeMap<String, Untracked>,
    ignored: BTreeMap<String, Stamp>,
    baseline: Baseline,
}

/// How to undo what a proposer did outside its files, journaled with the proposal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    /// Files to delete: what the proposer created, untracked or ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Untracked files to write back, as the snapshot kept them: path and blob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restore: BTreeMap<String, String>,
    /// Refs to put back: name and commit (`None`: delete it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, Option<String>>,
    /// `.git/info/exclude` to put back: its blob, or `Some(None)` when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Option<String>>,
}

/// What `inspect` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    /// Files outside the edit target the proposer changed, created or deleted: the experiment
    /// is a crash.
    pub violations: Vec<String>,
    /// What else it did, undone or noted without making the experiment a crash: refs, HEAD,
    /// the exclude file, ignored files.
    pub notes: Vec<String>,
    /// Editable files it changed.
    pub edited: Vec<String>,
    pub undo: Undo,
}

impl Inspection {
    /// Whether the proposer edited anything or broke the scope: otherwise it changed nothing.
    pub fn changed(&self) -> bool {
        !self.edited.is_empty() || !self.violations.is_empty()
    }
}

/// What proposers must leave as it is in the shared parts of the repository: the refs (but
/// arun's own: the run branch and `refs/arun/`, which arun moves while proposals are in flight)
/// and `.git/info/exclude`. Taken by the session when no proposal is in flight, and shared by the
/// proposals that overlap, so that one proposer's stray branch is never taken for another's
/// baseline.
#[derive(Debug, Clone)]
pub struct Baseline {
    refs: BTreeMap<String, Oid>,
    exclude: Option<Oid>,
    /// Ref names (or prefixes ending in `/`) that are arun's, left out of the comparison.
    own: Vec<String>,
}

impl Baseline {
    /// The refs and exclude file now; `own` names arun's refs (exact names, or prefixes that
    /// end with `/`).
    pub fn of(git: &Git, own: Vec<String>) -> Result<Baseline, GitError> {
        let exclude = match std::fs::read(exclude_path(git)) {
            Ok(bytes) => Some(
                git.repository()
                    .blob(&bytes)
                    .map_err(|err| git_error("cannot keep a copy of the exclude file", err))?,
            ),
            Err(_) => None,
        };
        let mut baseline = Baseline {
            refs: BTreeMap::new(),
            exclude,
            own,
        };
        baseline.refs = baseline.refs_of(git)?;
        Ok(baseline)
    }

    /// The refs of the repository that proposers must leave alone.
    fn refs_of(&self, git: &Git) -> Result<BTreeMap<String, Oid>, GitError> {
        Ok(refs(git)?
            .into_iter()
            .filter(|(name, _)| !self.is_own(name))
            .collect())
    }

    fn is_own(&self, name: &str) -> bool {
        self.own.iter().any(|own| {
            if own.ends_with('/') {
                name.starts_with(own.as_str())
            } else {
                name == own
            }
        })
    }
}

impl Snapshot {
    /// Takes the snapshot of a work tree: untracked files (kept as blobs when small), ignored
    /// files' stamps, and the shared `baseline`. Writes only objects (no lock, no ref, no index).
    pub fn take(git: &Git, baseline: &Baseline) -> Result<Snapshot, GitError> {
        let repo = git.repository();
        let (untracked_paths, ignored_paths) = untracked_and_ignored(git)?;
        let mut untracked = BTreeMap::new();
        for path in untracked_paths {
            let full = git.workdir().join(&path);
            let Some(stamp) = Stamp::of(&full) else {
                continue;
            };
            let state = if stamp.len <= KEEP_BYTES && full.is_file() {
                match repo.blob_path(&full) {
                    Ok(blob) => Untracked::Kept(blob),
                    Err(_) => Untracked::Large(stamp),
                }
            } else {
                Untracked::Large(stamp)
            };
            untracked.insert(path, state);
        }
        let ignored = ignored_paths
            .into_iter()
            .filter_map(|path| Stamp::of(&git.workdir().join(&path)).map(|s| (path, s)))
            .collect();
        Ok(Snapshot {
            untracked,
            ignored,
            baseline: baseline.clone(),
        })
    }
}

/// Compares the repository with `before` after a proposer worked with HEAD at `head`/`base`:
/// what it edited, what it changed outside `editable`, and how to undo that. Changes nothing
/// but `.git/info/exclude`, which it puts back first (always safe), so that files hidden by a
/// pattern the proposer added are seen as what they are.
pub fn inspect(
    git: &Git,
    head: &Head,
    base: Oid,
    before: &Snapshot,
    editable: &[String],
) -> Result<Inspection, GitError> {
    let mut found = Inspection::default();
    if git.head().ok().as_ref() != Some(head) {
        found
            .notes
            .push("moved HEAD (put back; its files kept)".to_string());
    }
    inspect_refs(git, before, &mut found)?;
    inspect_exclude(git, before, &mut found)?;
    inspect_files(git, base, before, editable, &mut found)?;
    inspect_ignored(git, before, &mut found)?;
    found.violations.sort();
    found.violations.dedup();
    found.undo.remove.sort();
    found.undo.remove.dedup();
    Ok(found)
}

/// Puts back `.git/info/exclude` when the proposer changed it, noting that it did.
fn inspect_exclude(git: &Git, before: &Snapshot, found: &mut Inspection) -> Result<(), GitError> {
    let exclude = exclude_path(git);
    let exclude_now = std::fs::read(&exclude)
        .ok()
        .map(|bytes| Oid::hash_object(git2::ObjectType::Blob, &bytes))
        .transpose()
        .map_err(|err| git_error("cannot read the exclude file", err))?;
    if exclude_now != before.baseline.exclude {
        let undo = Undo {
            exclude: Some(before.baseline.exclude.map(|blob| blob.to_string())),
            ..Undo::default()
        };
        put_back_exclude(git, &undo)?;
        found.undo.exclude = undo.exclude;
        found
            .notes
            .push("changed `.git/info/exclude` (restored)".to_string());
    }
    Ok(())
}

/// Tracked changes and untracked files as git sees them with the user's own patterns: edits to
/// `editable` files, and everything else as a violation, with how to undo it.
fn inspect_files(
    git: &Git,
    base: Oid,
    before: &Snapshot,
    editable: &[String],
    found: &mut Inspection,
) -> Result<(), GitError> {
    for change in git.changes_since(base)? {
        let path = change.path;
        if editable.contains(&path) {
            found.edited.push(path);
        } else if !change.added {
            // A tracked file: the reset to the base commit restores it.
            found.violations.push(path);
        } else if let Some(state) = before.untracked.get(&path) {
            if untracked_changed(git, &path, state) {
                found.violations.push(path.clone());
                if let Untracked::Kept(blob) = state {
                    found.undo.restore.insert(path, blob.to_string());
                }
            }
        } else {
            found.violations.push(path.clone());
            found.undo.remove.push(path);
        }
    }
    for (path, state) in &before.untracked {
        if !git.workdir().join(path).exists() {
            found.violations.push(path.clone());
            if let Untracked::Kept(blob) = state {
                found.undo.restore.insert(path.clone(), blob.to_string());
            }
        }
    }
    Ok(())
}

/// Ignored files: new ones are removed, changed or deleted ones noted (they are the user's
/// data, and not kept).
fn inspect_ignored(git: &Git, before: &Snapshot, found: &mut Inspection) -> Result<(), GitError> {
    let (_, ignored_now) = untracked_and_ignored(git)?;
    let mut seen = BTreeSet::new();
    for path in ignored_now {
        let stamp = Stamp::of(&git.workdir().join(&path));
        match before.ignored.get(&path) {
            None => {
                found.undo.remove.push(path.clone());
                found
                    .notes
                    .push(format!("created ignored `{path}` (removed)"));
            }
            Some(old) if stamp.as_ref() != Some(old) => found.notes.push(format!(
                "changed ignored `{path}` (left as it is: ignored files are the user's data)"
            )),
            Some(_) => {}
        }
        seen.insert(path);
    }
    for path in before.ignored.keys() {
        if !seen.contains(path) && !git.workdir().join(path).exists() {
            found.notes.push(format!(
                "deleted ignored `{path}` (cannot be restored: ignored files are not kept)"
            ));
        }
    }
    Ok(())
}

/// Undoes what `inspect` found: HEAD, the index and tracked files back at `head`/`base`, then
/// refs, the exclude file, created files removed, changed untracked files written back. Every
/// step can be repeated.
pub fn carry_out(git: &Git, head: &Head, base: Oid, undo: &Undo) -> Result<(), GitError> {
    // HEAD first: it may be on a branch the proposer created, which is deleted next.
    git.reset_hard(head, base)?;
    for (name, target) in &undo.refs {
        match target.as_deref().map(Oid::from_str) {
            None => {
                if let Ok(mut reference) = git.repository().find_reference(name) {
                    reference
                        .delete()
                        .map_err(|err| git_error(&format!("cannot delete `{name}`"), err))?;
                }
            }
            Some(Ok(commit)) => git.set_ref(name, commit, "arun: undo a proposer's change")?,
            Some(Err(err)) => {
                return Err(git_error(&format!("`{name}` has a malformed target"), err));
            }
        }
    }
    put_back_exclude(git, undo)?;
    for path in &undo.remove {
        remove(git.workdir(), path);
    }
    for (path, blob) in &undo.restore {
        let full = git.workdir().join(path);
        let bytes = read_blob(git, blob)?;
        if full.is_dir() && !full.is_symlink() {
            let _ = std::fs::remove_dir_all(&full);
        }
        full.parent().map(std::fs::create_dir_all);
        std::fs::write(&full, bytes).map_err(|err| io_error(&full, err))?;
    }
    Ok(())
}

/// Everything the proposer did undone, its edits too (a proposal that failed).
pub fn undo_all(git: &Git, head: &Head, base: Oid, before: &Snapshot) -> Result<(), GitError> {
    let found = inspect(git, head, base, before, &[])?;
    carry_out(git, head, base, &found.undo)
}

/// Deletes the untracked files (not ignored) that are not in `keep`: what a build or a run
/// left in the work tree (checkpoints, outputs), so that the next experiment starts from its
/// commit alone. Ignored files (caches, build output) stay. Returns the paths removed.
pub fn remove_untracked_except(git: &Git, keep: &[String]) -> Result<Vec<String>, GitError> {
    let keep: BTreeSet<&String> = keep.iter().collect();
    let mut removed = Vec::new();
    for path in git.untracked()? {
        if !keep.contains(&path) {
            remove(git.workdir(), &path);
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Moves the untracked files (not ignored) that are not in `keep` into `aside`, keeping their
/// paths: what an arun killed mid-experiment left, or what a person added since, set apart
/// rather than deleted. Returns the paths moved.
pub fn move_untracked_except(
    git: &Git,
    keep: &[String],
    aside: &Path,
) -> Result<Vec<String>, GitError> {
    let keep: BTreeSet<&String> = keep.iter().collect();
    let mut moved = Vec::new();
    for path in git.untracked()? {
        if keep.contains(&path) {
            continue;
        }
        let from = git.workdir().join(&path);
        let to = aside.join(&path);
        let done = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::rename(&from, &to));
        match done {
            Ok(()) => remove_empty_parents(&from, git.workdir()),
            // Another filesystem: a copy is as good, then the original goes.
            Err(_) => {
                if std::fs::copy(&from, &to).is_ok() {
                    remove(git.workdir(), &path);
                }
            }
        }
        moved.push(path);
    }
    Ok(moved)
}

/// Untracked (not ignored) and ignored files of the work tree, each listed file by file.
fn untracked_and_ignored(git: &Git) -> Result<(Vec<String>, Vec<String>), GitError> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(true)
        .exclude_submodules(true);
    let statuses = git
        .repository()
        .statuses(Some(&mut options))
        .map_err(|err| git_error("cannot read git status", err))?;
    let mut untracked = Vec::new();
    let mut ignored = Vec::new();
    for entry in statuses.iter() {
        let Ok(path) = entry.path().map(str::to_string) else {
            continue;
        };
        if entry.status().is_ignored() {
            ignored.push(path);
        } else if entry.status().is_wt_new() {
            untracked.push(path);
        }
    }
    Ok((untracked, ignored))
}

fn refs(git: &Git) -> Result<BTreeMap<String, Oid>, GitError> {
    let mut out = BTreeMap::new();
    let references = git
        .repository()
        .references()
        .map_err(|err| git_error("cannot list refs", err))?;
    for reference in references.filter_map(Result::ok) {
        if let (Ok(name), Some(target)) = (reference.name(), reference.target()) {
            out.insert(name.to_string(), target);
        }
    }
    Ok(out)
}

fn exclude_path(git: &Git) -> std::path::PathBuf {
    git.common_dir().join("info").join("exclude")
}

/// Refs created since the baseline are deleted; moved and deleted ones put back.
fn inspect_refs(git: &Git, before: &Snapshot, found: &mut Inspection) -> Result<(), GitError> {
    let baseline = &before.baseline;
    let now = baseline.refs_of(git)?;
    for (name, target) in &now {
        match baseline.refs.get(name) {
            None => {
                found.undo.refs.insert(name.clone(), None);
                found.notes.push(format!("created `{name}` (deleted)"));
            }
            Some(old) if old != target => {
                found.undo.refs.insert(name.clone(), Some(old.to_string()));
                found.notes.push(format!("moved `{name}` (moved back)"));
            }
            Some(_) => {}
        }
    }
    for (name, old) in &baseline.refs {
        if !now.contains_key(name) {
            found.undo.refs.insert(name.clone(), Some(old.to_string()));
            found.notes.push(format!("deleted `{name}` (restored)"));
        }
    }
    Ok(())
}

/// Whether an untracked file differs from what the snapshot saw.
fn untracked_changed(git: &Git, path: &str, state: &Untracked) -> bool {
    let full = git.workdir().join(path);
    match state {
        Untracked::Kept(blob) => {
            crate::run::git::hash_file(&full).as_deref() != Some(blob.to_string().as_str())
        }
        Untracked::Large(stamp) => Stamp::of(&full) != Some(*stamp),
    }
}

/// Writes `.git/info/exclude` back as `undo` says, if it says.
fn put_back_exclude(git: &Git, undo: &Undo) -> Result<(), GitError> {
    let Some(exclude) = &undo.exclude else {
        return Ok(());
    };
    let path = exclude_path(git);
    match exclude.as_deref() {
        Some(blob) => {
            let bytes = read_blob(git, blob)?;
            std::fs::write(&path, bytes).map_err(|err| io_error(&path, err))
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(&path, err)),
        },
    }
}

fn read_blob(git: &Git, blob: &str) -> Result<Vec<u8>, GitError> {
    let oid = Oid::from_str(blob).map_err(|err| git_error("a malformed blob id", err))?;
    git.repository()
        .find_blob(oid)
        .map(|blob| blob.content().to_vec())
        .map_err(|err| git_error(&format!("cannot read the kept copy {blob}"), err))
}

fn io_error(path: &Path, err: std::io::Error) -> GitError {
    GitError {
        context: format!("cannot write `{}`", path.display()),
        source: Box::new(err),
    }
}

fn remove(root: &Path, path: &str) {
    let full = root.join(path);
    let removed = if full.is_dir() && !full.is_symlink() {
        std::fs::remove_dir_all(&full)
    } else {
        std::fs::remove_file(&full)
    };
    if removed.is_ok() {
        remove_empty_parents(&full, root);
    }
}

fn remove_empty_parents(file: &Path, root: &Path) {
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current == root || std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

fn git_error(context: &str, err: git2::Error) -> GitError {
    GitError {
        context: context.to_string(),
        source: Box::new(err),
    }
}
