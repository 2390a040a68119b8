//! Scope: a proposer may change the editable files and nothing else. A snapshot of the work
//! tree and the refs is taken before it works; afterwards everything else it changed is undone:
//! tracked files restored, files it created deleted, untracked files it changed restored from
//! the copy the snapshot kept, refs it created, moved or deleted put back, `.git/info/exclude`
//! restored (so that it cannot hide a file from the check).
//!
//! Ignored files are the user's data (datasets, caches, virtual environments, build output):
//! arun never restores them. Ignored files the proposer created are removed; changes to ignored
//! files that were there are noted, not undone.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Oid, StatusOptions};

use crate::git::{Git, GitError, Head};

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

/// The work tree and refs before a proposer works.
#[derive(Debug, Clone)]
pub struct Snapshot {
    untracked: BTreeMap<String, Untracked>,
    ignored: BTreeMap<String, Stamp>,
    refs: BTreeMap<String, Oid>,
    exclude: Option<Vec<u8>>,
}

/// What the check found and undid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Files outside the edit target the proposer changed, created or deleted: undone where
    /// arun can, and the experiment is a crash.
    pub violations: Vec<String>,
    /// What else it did that arun undid or noted without making the experiment a crash: refs,
    /// HEAD, the exclude file, ignored files.
    pub undone: Vec<String>,
    /// Editable files it changed.
    pub edited: Vec<String>,
}

impl Snapshot {
    /// Takes the snapshot: untracked files (kept as blobs when small), ignored files' stamps,
    /// every ref, the exclude file.
    pub fn take(git: &Git) -> Result<Snapshot, GitError> {
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
            refs: refs(git)?,
            exclude: std::fs::read(exclude_path(git)).ok(),
        })
    }

    /// The untracked files (not ignored) it saw.
    pub fn untracked_paths(&self) -> Vec<String> {
        self.untracked.keys().cloned().collect()
    }
}

/// After a proposal: puts HEAD at `head`/`base` and undoes everything outside `editable`,
/// keeping the proposer's edits of the editable files.
pub fn undo_outside(
    git: &Git,
    head: &Head,
    base: Oid,
    before: &Snapshot,
    editable: &[String],
) -> Result<Checked, GitError> {
    let mut checked = Checked::default();
    // HEAD first: it may be on a branch the proposer created, which is deleted next.
    if git.head().ok().as_ref() != Some(head) {
        checked
            .undone
            .push("moved HEAD (put back; its files kept)".to_string());
    }
    if let Head::Branch(branch) = head
        && git.branch_tip(branch)? != Some(base)
    {
        checked.undone.push(format!(
            "moved branch `{branch}` (put back; its files kept)"
        ));
    }
    git.reset_keeping_files(head, base)?;
    restore_refs(git, before, &mut checked.undone)?;
    restore_exclude(git, before, &mut checked.undone);

    let mut tracked = Vec::new();
    for change in git.changes_since(base)? {
        if editable.contains(&change.path) {
            checked.edited.push(change.path);
        } else if !change.added {
            checked.violations.push(change.path.clone());
            tracked.push(change);
        } else if let Some(state) = before.untracked.get(&change.path) {
            if restore_untracked(git, &change.path, state)? {
                checked.violations.push(change.path);
            }
        } else {
            remove(git.workdir(), &change.path);
            checked.violations.push(change.path);
        }
    }
    git.restore(base, &tracked)?;
    // Untracked files it deleted come back from their copies.
    for (path, state) in &before.untracked {
        if !git.workdir().join(path).exists() && restore_untracked(git, path, state)? {
            checked.violations.push(path.clone());
        }
    }
    check_ignored(git, before, &mut checked.undone)?;
    checked.violations.sort();
    checked.violations.dedup();
    Ok(checked)
}

/// After a failed proposal: undoes everything it did, its edits of the editable files too.
pub fn undo_all(git: &Git, head: &Head, base: Oid, before: &Snapshot) -> Result<(), GitError> {
    let mut notes = Vec::new();
    git.reset_hard(head, base)?;
    restore_refs(git, before, &mut notes)?;
    restore_exclude(git, before, &mut notes);
    remove_untracked_except(git, &before.untracked_paths())?;
    for (path, state) in &before.untracked {
        restore_untracked(git, path, state)?;
    }
    check_ignored(git, before, &mut notes)?;
    Ok(())
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

/// Deletes refs created since the snapshot, puts back moved and deleted ones.
fn restore_refs(git: &Git, before: &Snapshot, notes: &mut Vec<String>) -> Result<(), GitError> {
    let now = refs(git)?;
    let repo = git.repository();
    for (name, target) in &now {
        match before.refs.get(name) {
            None => {
                if let Ok(mut reference) = repo.find_reference(name) {
                    reference
                        .delete()
                        .map_err(|err| git_error(&format!("cannot delete `{name}`"), err))?;
                }
                notes.push(format!("created `{name}` (deleted)"));
            }
            Some(old) if old != target => {
                git.set_ref(name, *old, "arun: undo a proposer's change")?;
                notes.push(format!("moved `{name}` (moved back)"));
            }
            Some(_) => {}
        }
    }
    for (name, old) in &before.refs {
        if !now.contains_key(name) {
            git.set_ref(name, *old, "arun: undo a proposer's change")?;
            notes.push(format!("deleted `{name}` (restored)"));
        }
    }
    Ok(())
}

fn exclude_path(git: &Git) -> std::path::PathBuf {
    git.common_dir().join("info").join("exclude")
}

fn restore_exclude(git: &Git, before: &Snapshot, notes: &mut Vec<String>) {
    let path = exclude_path(git);
    let now = std::fs::read(&path).ok();
    if now == before.exclude {
        return;
    }
    let _ = match &before.exclude {
        Some(bytes) => std::fs::write(&path, bytes),
        None => std::fs::remove_file(&path),
    };
    notes.push("changed `.git/info/exclude` (restored)".to_string());
}

/// Puts an untracked file back as the snapshot saw it; true when it had changed.
fn restore_untracked(git: &Git, path: &str, state: &Untracked) -> Result<bool, GitError> {
    let full = git.workdir().join(path);
    match state {
        Untracked::Kept(blob) => {
            let now = crate::git::hash_file(&full);
            if now.as_deref() == Some(blob.to_string().as_str()) {
                return Ok(false);
            }
            let content = git
                .repository()
                .find_blob(*blob)
                .map_err(|err| git_error(&format!("cannot read the copy of `{path}`"), err))?
                .content()
                .to_vec();
            if full.is_dir() {
                let _ = std::fs::remove_dir_all(&full);
            }
            full.parent().map(std::fs::create_dir_all);
            std::fs::write(&full, content).map_err(|err| GitError {
                context: format!("cannot restore `{path}`"),
                source: Box::new(err),
            })?;
            Ok(true)
        }
        Untracked::Large(stamp) => Ok(Stamp::of(&full) != Some(*stamp)),
    }
}

/// Removes ignored files created since the snapshot; notes changed and deleted ones.
fn check_ignored(git: &Git, before: &Snapshot, notes: &mut Vec<String>) -> Result<(), GitError> {
    let (_, now) = untracked_and_ignored(git)?;
    let mut seen = BTreeSet::new();
    for path in now {
        let stamp = Stamp::of(&git.workdir().join(&path));
        match before.ignored.get(&path) {
            None if !before.untracked.contains_key(&path) => {
                remove(git.workdir(), &path);
                notes.push(format!("created ignored `{path}` (removed)"));
            }
            Some(old) if stamp.as_ref() != Some(old) => notes.push(format!(
                "changed ignored `{path}` (left as it is: ignored files are the user's data)"
            )),
            _ => {}
        }
        seen.insert(path);
    }
    for path in before.ignored.keys() {
        if !seen.contains(path) && !git.workdir().join(path).exists() {
            notes.push(format!(
                "deleted ignored `{path}` (cannot be restored: ignored files are not kept)"
            ));
        }
    }
    Ok(())
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
