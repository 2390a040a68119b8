//! The target repository through git2: the run branch, experiment commits and their refs,
//! resets, what a proposer changed (scope checks) and undoing what it must not change.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use git2::{
    BranchType, DiffFormat, DiffOptions, ErrorCode, IndexAddOption, ObjectType, Oid, Repository,
    Signature, StatusOptions,
};

/// A git failure with what arun was doing at the time.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct GitError {
    pub context: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

pub type Result<T> = std::result::Result<T, GitError>;

trait Context<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError {
            context: context(),
            source: Box::new(source),
        })
    }
}

/// Where HEAD should be: on a branch, or detached at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Branch(String),
    Detached(Oid),
}

/// A path a proposer changed relative to the commit it started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// The path did not exist in the commit (a new, untracked file).
    pub added: bool,
}

pub struct Git {
    repo: Repository,
    workdir: PathBuf,
}

impl Git {
    pub fn open(path: &Path) -> Result<Git> {
        let repo = Repository::open(path)
            .context(|| format!("`{}` is not a git repository", path.display()))?;
        let workdir = repo
            .workdir()
            .map(|dir| dir.components().collect::<PathBuf>())
            .ok_or_else(|| GitError {
                context: format!(
                    "`{}` is a bare repository; arun needs a work tree",
                    path.display()
                ),
                source: "bare repository".into(),
            })?;
        Ok(Git { repo, workdir })
    }

    /// Creates `path` as a copy of `template` (without `.git` and `target/`) and commits it.
    pub fn init_from_template(path: &Path, template: &Path) -> Result<Git> {
        copy_tree(template, path).context(|| {
            format!(
                "cannot copy template `{}` to `{}`",
                template.display(),
                path.display()
            )
        })?;
        let repo =
            Repository::init(path).context(|| format!("cannot `git init` `{}`", path.display()))?;
        let mut index = repo
            .index()
            .context(|| "cannot open the index".to_string())?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .context(|| "cannot add the template's files".to_string())?;
        let tree_id = write_index(&mut index)?;
        let git = Git::open(path)?;
        {
            let tree = git
                .repo
                .find_tree(tree_id)
                .context(|| "cannot read the tree".to_string())?;
            let signature = git.signature()?;
            let message = format!("Initial commit from template {}", template.display());
            git.repo
                .commit(Some("HEAD"), &signature, &signature, &message, &tree, &[])
                .context(|| "cannot make the initial commit".to_string())?;
        }
        Ok(git)
    }

    /// `git clone URL PATH` with the git command line (it knows the user's credentials and proxies).
    pub fn clone(url: &str, path: &Path) -> Result<Git> {
        let output = duct::cmd!("git", "clone", "--quiet", url, path)
            .stderr_capture()
            .stdout_null()
            .unchecked()
            .run()
            .context(|| "cannot run `git clone`: is git installed?".to_string())?;
        if !output.status.success() {
            return Err(GitError {
                context: format!("`git clone {url}` failed"),
                source: String::from_utf8_lossy(&output.stderr)
                    .trim()
                    .to_string()
                    .into(),
            });
        }
        Git::open(path)
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The git directory shared by all work trees of the repository (`.git` of the main one).
    pub fn common_dir(&self) -> PathBuf {
        self.repo.commondir().components().collect()
    }

    /// The repository itself, for the scope checks that need more of git2 than this wraps.
    pub(crate) fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Removes git lock files that no process has open: left by a git operation (of arun's or a
    /// user's) that was killed before it could finish. Such a file makes every later operation
    /// fail with "the index is locked". Only call this with the repository lock held, so that
    /// no arun is in the middle of an operation; a live git command holds its lock file open
    /// and is left alone. Returns the files removed.
    pub fn remove_stale_locks(&self) -> Vec<PathBuf> {
        // The repository's own git directory, and each worktree's (workers check out there).
        let mut git_dirs = vec![
            self.repo.path().to_path_buf(),
            self.repo.commondir().to_path_buf(),
        ];
        if let Ok(entries) = fs::read_dir(self.repo.commondir().join("worktrees")) {
            git_dirs.extend(entries.flatten().map(|entry| entry.path()));
        }
        let mut candidates = Vec::new();
        for dir in &git_dirs {
            for name in [
                "index.lock",
                "HEAD.lock",
                "config.lock",
                "packed-refs.lock",
                "ORIG_HEAD.lock",
            ] {
                candidates.push(dir.join(name));
            }
            for sub in ["refs", "logs"] {
                collect_locks(&dir.join(sub), &mut candidates);
            }
        }
        candidates.sort();
        candidates.dedup();
        let open = files_open_by_processes();
        let mut removed = Vec::new();
        for lock in candidates {
            if lock.is_file() && !open.contains(&lock) && fs::remove_file(&lock).is_ok() {
                removed.push(lock);
            }
        }
        removed
    }

    fn signature(&self) -> Result<Signature<'static>> {
        match self.repo.signature() {
            Ok(signature) => Ok(signature.to_owned()),
            Err(_) => Signature::now("arun", "arun@localhost")
                .context(|| "cannot make a signature".to_string()),
        }
    }

    /// Tracked files with uncommitted changes (staged or not).
    pub fn dirty_tracked(&self) -> Result<Vec<String>> {
        let mut options = StatusOptions::new();
        options.include_untracked(false).include_ignored(false);
        let statuses = self
            .repo
            .statuses(Some(&mut options))
            .context(|| "cannot read git status".to_string())?;
        Ok(statuses
            .iter()
            .filter(|entry| !entry.status().is_empty())
            .filter_map(|entry| entry.path().ok().map(str::to_string))
            .collect())
    }

    /// Untracked files that are not ignored.
    pub fn untracked(&self) -> Result<Vec<String>> {
        let mut options = StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = self
            .repo
            .statuses(Some(&mut options))
            .context(|| "cannot read git status".to_string())?;
        Ok(statuses
            .iter()
            .filter(|entry| entry.status().is_wt_new())
            .filter_map(|entry| entry.path().ok().map(str::to_string))
            .collect())
    }

    pub fn head_commit(&self) -> Result<Oid> {
        let head = self
            .repo
            .head()
            .context(|| "the repository has no commit yet; commit something first".to_string())?;
        head.peel_to_commit()
            .map(|c| c.id())
            .context(|| "HEAD does not point at a commit".to_string())
    }

    pub fn head(&self) -> Result<Head> {
        let head = self
            .repo
            .head()
            .context(|| "cannot read HEAD".to_string())?;
        if self.repo.head_detached().unwrap_or(false) {
            Ok(Head::Detached(
                head.peel_to_commit()
                    .map(|c| c.id())
                    .context(|| "cannot read HEAD".to_string())?,
            ))
        } else {
            Ok(Head::Branch(
                head.shorthand().unwrap_or_default().to_string(),
            ))
        }
    }

    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>> {
        match self.repo.find_branch(branch, BranchType::Local) {
            Ok(found) => Ok(found.get().target()),
            Err(err) if err.code() == ErrorCode::NotFound => Ok(None),
            Err(err) => Err(err).context(|| format!("cannot read branch `{branch}`")),
        }
    }

    /// Points `branch` at `commit`, creating it if needed.
    pub fn set_branch(&self, branch: &str, commit: Oid, why: &str) -> Result<()> {
        self.repo
            .reference(&format!("refs/heads/{branch}"), commit, true, why)
            .map(|_| ())
            .context(|| format!("cannot move branch `{branch}`"))
    }

    pub fn set_ref(&self, name: &str, commit: Oid, why: &str) -> Result<()> {
        self.repo
            .reference(name, commit, true, why)
            .map(|_| ())
            .context(|| format!("cannot write ref `{name}`"))
    }

    pub fn ref_target(&self, name: &str) -> Result<Option<Oid>> {
        match self.repo.find_reference(name) {
            Ok(reference) => Ok(reference.target()),
            Err(err) if err.code() == ErrorCode::NotFound => Ok(None),
            Err(err) => Err(err).context(|| format!("cannot read ref `{name}`")),
        }
    }

    /// Puts HEAD where it should be and the work tree and index at `commit`, discarding changes to
    /// tracked files (untracked files are left alone). On a branch, the branch is moved to `commit`.
    ///
    /// The index is made from the tree first, then the files from the index: whatever state a
    /// kill left HEAD, the index and the work tree in (HEAD already moved, an index never
    /// written), they all end up at `commit`. A checkout of the tree against HEAD, as
    /// `git reset --hard` does, would see nothing to do when HEAD is already there.
    pub fn reset_hard(&self, head: &Head, commit: Oid) -> Result<()> {
        self.place_head(head, commit)?;
        let tree = self.tree_of(commit)?;
        let mut index = self
            .repo
            .index()
            .context(|| "cannot open the index".to_string())?;
        index
            .read_tree(&tree)
            .context(|| "cannot read a tree into the index".to_string())?;
        index
            .write()
            .context(|| "cannot write the index".to_string())?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force();
        self.repo
            .checkout_index(Some(&mut index), Some(&mut checkout))
            .context(|| format!("cannot check out {}", short(commit)))
    }

    /// Puts HEAD on `head` at `commit`, writing only what differs (every ref write takes a
    /// lock and adds a reflog line).
    fn place_head(&self, head: &Head, commit: Oid) -> Result<()> {
        let current = self.head().ok();
        match head {
            Head::Branch(branch) => {
                if self.branch_tip(branch)? != Some(commit) {
                    self.set_branch(branch, commit, "arun: reset")?;
                }
                if current.as_ref() != Some(head) {
                    self.repo
                        .set_head(&format!("refs/heads/{branch}"))
                        .context(|| format!("cannot check out `{branch}`"))?;
                }
                Ok(())
            }
            Head::Detached(_) if current == Some(Head::Detached(commit)) => Ok(()),
            Head::Detached(_) => self
                .repo
                .set_head_detached(commit)
                .context(|| format!("cannot check out {}", short(commit))),
        }
    }

    /// Every path whose content in the work tree differs from `base`, new untracked files included.
    pub fn changes_since(&self, base: Oid) -> Result<Vec<Change>> {
        let tree = self.tree_of(base)?;
        let mut options = DiffOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_typechange(true);
        let diff = self
            .repo
            .diff_tree_to_workdir(Some(&tree), Some(&mut options))
            .context(|| "cannot compare the work tree with the last commit".to_string())?;
        let mut changes = Vec::new();
        for delta in diff.deltas() {
            let file = delta.new_file().path().or(delta.old_file().path());
            if let Some(path) = file.and_then(Path::to_str) {
                changes.push(Change {
                    path: path.to_string(),
                    added: tree.get_path(Path::new(path)).is_err(),
                });
            }
        }
        Ok(changes)
    }

    /// Commits the work-tree content of `paths` on top of `parent`, without moving any branch;
    /// HEAD is left detached at the new commit.
    pub fn commit_paths(&self, parent: Oid, paths: &[String], message: &str) -> Result<Oid> {
        let files = self.write_blobs(paths)?;
        let commit = self.commit_files(parent, &files, message)?;
        self.repo
            .set_head_detached(commit)
            .context(|| "cannot check out the experiment commit".to_string())?;
        Ok(commit)
    }

    /// Writes the current content of `paths` into the object database and returns each one's
    /// blob id (`None` for a path that does not exist): the edit, kept whatever happens to the
    /// work tree afterwards.
    pub fn write_blobs(&self, paths: &[String]) -> Result<BTreeMap<String, Option<String>>> {
        let mut blobs = BTreeMap::new();
        for path in paths {
            let full = self.workdir.join(path);
            let blob = if full.is_file() {
                Some(
                    self.repo
                        .blob_path(&full)
                        .context(|| format!("cannot store `{path}` in the object database"))?
                        .to_string(),
                )
            } else {
                None
            };
            blobs.insert(path.clone(), blob);
        }
        Ok(blobs)
    }

    /// Commits `parent`'s tree with `files` replaced by the given blobs (`None`: removed),
    /// without touching HEAD, the index, the work tree or any branch.
    pub fn commit_files(
        &self,
        parent: Oid,
        files: &BTreeMap<String, Option<String>>,
        message: &str,
    ) -> Result<Oid> {
        let parent_commit = self
            .repo
            .find_commit(parent)
            .context(|| format!("cannot find commit {parent}"))?;
        let parent_tree = parent_commit
            .tree()
            .context(|| "cannot read a tree".to_string())?;
        let mut index =
            git2::Index::new().context(|| "cannot make an index in memory".to_string())?;
        index
            .read_tree(&parent_tree)
            .context(|| "cannot read the parent commit into an index".to_string())?;
        for (path, blob) in files {
            match blob.as_deref().map(Oid::from_str) {
                None => {
                    let _ = index.remove_path(Path::new(path));
                }
                Some(Err(err)) => {
                    return Err(err).context(|| format!("`{path}` has a malformed blob id"));
                }
                Some(Ok(blob)) => {
                    let size = self
                        .repo
                        .find_blob(blob)
                        .context(|| format!("the blob of `{path}` is missing"))?
                        .size();
                    let mode = parent_tree
                        .get_path(Path::new(path))
                        .map_or(0o100644, |entry| entry.filemode() as u32);
                    index
                        .add(&index_entry(path, blob, mode, size))
                        .context(|| format!("cannot stage `{path}`"))?;
                }
            }
        }
        let tree_id = index
            .write_tree_to(&self.repo)
            .context(|| "cannot write the experiment's tree".to_string())?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .context(|| "cannot read the new tree".to_string())?;
        let signature = self.signature()?;
        self.repo
            .commit(
                None,
                &signature,
                &signature,
                message,
                &tree,
                &[&parent_commit],
            )
            .context(|| "cannot commit the experiment".to_string())
    }

    /// Lines added and removed between two commits.
    pub fn diff_stat(&self, from: Oid, to: Oid) -> Result<(usize, usize)> {
        let diff = self.diff(from, to)?;
        let stats = diff
            .stats()
            .context(|| "cannot count changed lines".to_string())?;
        Ok((stats.insertions(), stats.deletions()))
    }

    /// The unified diff between two commits, cut at `max_bytes`.
    pub fn diff_text(&self, from: Oid, to: Oid, max_bytes: usize) -> Result<String> {
        let diff = self.diff(from, to)?;
        let mut text = String::new();
        diff.print(DiffFormat::Patch, |_, _, line| {
            if text.len() >= max_bytes {
                return false;
            }
            if matches!(line.origin(), '+' | '-' | ' ') {
                text.push(line.origin());
            }
            text.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .or_else(|err| {
            if err.code() == ErrorCode::User {
                Ok(())
            } else {
                Err(err)
            }
        })
        .context(|| "cannot print the diff".to_string())?;
        Ok(text)
    }

    fn diff(&self, from: Oid, to: Oid) -> Result<git2::Diff<'_>> {
        let old = self.tree_of(from)?;
        let new = self.tree_of(to)?;
        self.repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .context(|| format!("cannot diff {} and {}", short(from), short(to)))
    }

    fn tree_of(&self, commit: Oid) -> Result<git2::Tree<'_>> {
        self.repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .context(|| format!("cannot read commit {commit}"))
    }

    /// The text of `path` in `commit`; `None` when the commit has no such file.
    pub fn file_at(&self, commit: Oid, path: &str) -> Result<Option<String>> {
        let tree = self.tree_of(commit)?;
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        let blob = self
            .repo
            .find_blob(entry.id())
            .context(|| format!("cannot read `{path}` in commit {}", short(commit)))?;
        Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
    }

    /// Adds lines to `.git/info/exclude` (never to the user's .gitignore) unless already there.
    pub fn exclude(&self, patterns: &[String]) -> Result<()> {
        let path = self.repo.commondir().join("info/exclude");
        let existing = fs::read_to_string(&path).unwrap_or_default();
        let missing: Vec<&String> = patterns
            .iter()
            .filter(|p| !existing.lines().any(|line| line.trim() == p.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# added by arun: run files, never committed\n");
        for pattern in missing {
            text.push_str(pattern);
            text.push('\n');
        }
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|_| fs::write(&path, text))
            .context(|| format!("cannot write `{}`", path.display()))
    }
}

/// Asks libgit2 to fsync the objects, refs and index it writes (and their directories), so that
/// a commit arun journaled survives a power cut. Once per process, before any repository work.
pub fn enable_fsync() {
    // SAFETY: git_libgit2_opts with an int option and an int value, after libgit2's init.
    unsafe {
        libgit2_sys::init();
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as libc::c_int,
            1 as libc::c_int,
        );
    }
}

fn index_entry(path: &str, blob: Oid, mode: u32, size: usize) -> git2::IndexEntry {
    let zero = git2::IndexTime::new(0, 0);
    git2::IndexEntry {
        ctime: zero,
        mtime: zero,
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: size as u32,
        id: blob,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Every `*.lock` file under `dir`.
fn collect_locks(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => collect_locks(&path, out),
            Ok(kind) if kind.is_file() && path.extension().is_some_and(|e| e == "lock") => {
                out.push(path)
            }
            _ => {}
        }
    }
}

/// Every file some process of this user has open, from `/proc/*/fd`.
fn files_open_by_processes() -> std::collections::BTreeSet<PathBuf> {
    let mut open = std::collections::BTreeSet::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return open;
    };
    for process in processes.filter_map(std::result::Result::ok) {
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(std::result::Result::ok) {
            if let Ok(target) = fs::read_link(fd.path()) {
                open.insert(target);
            }
        }
    }
    open
}

/// The git blob hash of a file's current content, or `None` when it does not exist.
pub fn hash_file(path: &Path) -> Option<String> {
    Oid::hash_file(ObjectType::Blob, path)
        .ok()
        .map(|oid| oid.to_string())
}

/// The 7-character abbreviation used in results.tsv.
pub fn short(commit: Oid) -> String {
    crate::text::short_commit(&commit.to_string()).to_string()
}

pub fn parse_oid(text: &str) -> Option<Oid> {
    Oid::from_str(text).ok()
}

/// Writes the index to disk and as a tree object; returns the tree's id.
fn write_index(index: &mut git2::Index) -> Result<Oid> {
    index
        .write()
        .context(|| "cannot write the index".to_string())?;
    index
        .write_tree()
        .context(|| "cannot write the tree".to_string())
}

/// Copies a directory tree, leaving out `.git` and build output (`target/`).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || name == "target" {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_locks_in_a_workers_worktree_are_removed_too() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(&repo)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        fs::create_dir(&repo).unwrap();
        git(&["init", "-q"]);
        git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        git(&["worktree", "add", "-q", "--detach", "../worker-1"]);
        let worktree_dir = repo.join(".git/worktrees/worker-1");
        // Left by a checkout in the worker's tree that was killed.
        for name in ["HEAD.lock", "index.lock"] {
            fs::write(worktree_dir.join(name), "").unwrap();
        }
        let removed = Git::open(&repo).unwrap().remove_stale_locks();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!worktree_dir.join("HEAD.lock").exists());
        assert!(!worktree_dir.join("index.lock").exists());
        // The worktree works again.
        let out = std::process::Command::new("git")
            .args(["checkout", "-q", "--detach", "HEAD"])
            .current_dir(dir.path().join("worker-1"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}
