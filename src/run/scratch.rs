//! A throwaway copy of a repository's work tree, for the commands that try a pipeline without
//! touching the user's repository (`arun check`, `arun init`'s probe): no branch, no commit, no
//! file written there.
//!
//! Tracked and untracked files are copied as they are in the work tree. Ignored files and
//! directories (data, virtual environments, build outputs) are linked, not copied: they can be
//! large, and a training script reads its data from them. Git metadata is not copied.

use std::io;
use std::path::{Path, PathBuf};

/// The copy; removed when dropped.
pub struct Scratch {
    /// The temporary directory holding the copy.
    root: PathBuf,
    /// The copy of the work tree, inside `root`.
    tree: PathBuf,
}

impl Scratch {
    /// Copies the work tree of the git repository at `repo` into a new directory in `within`.
    pub fn of_repository(repo: &Path, within: &Path) -> io::Result<Scratch> {
        let entries = work_tree_entries(repo).map_err(|err| io::Error::other(err.to_string()))?;
        let scratch = Scratch::empty(repo, within)?;
        for (path, ignored) in entries {
            let from = repo.join(&path);
            let to = scratch.tree.join(&path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if ignored {
                std::os::unix::fs::symlink(&from, &to)?;
            } else if from.is_file() {
                std::fs::copy(&from, &to)?;
            }
        }
        Ok(scratch)
    }

    /// Copies a plain directory (a pipeline's template), every file, into a new directory in
    /// `within`.
    pub fn of_directory(dir: &Path, within: &Path) -> io::Result<Scratch> {
        let scratch = Scratch::empty(dir, within)?;
        copy_dir(dir, &scratch.tree)?;
        Ok(scratch)
    }

    fn empty(source: &Path, within: &Path) -> io::Result<Scratch> {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".to_string());
        let root = within.join(format!("arun-scratch-{}-{}", std::process::id(), unique()));
        let tree = root.join(name);
        std::fs::create_dir_all(&tree)?;
        Ok(Scratch { root, tree })
    }

    /// A directory beside the copy, for logs (not in the work tree, where a script could see
    /// them); gone with the copy.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The copy of the work tree, where commands run.
    pub fn path(&self) -> &Path {
        &self.tree
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Links are removed, never followed: the user's ignored files stay.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Every path of the work tree that is not git's own, with whether it is ignored. An ignored
/// directory is one entry (it is linked whole).
fn work_tree_entries(repo: &Path) -> Result<Vec<(String, bool)>, git2::Error> {
    let repository = git2::Repository::open(repo)?;
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .include_unmodified(true)
        .exclude_submodules(true);
    let statuses = repository.statuses(Some(&mut options))?;
    let mut entries = Vec::new();
    for entry in statuses.iter() {
        let Ok(path) = entry.path() else {
            continue;
        };
        if entry.status().contains(git2::Status::WT_DELETED) {
            continue;
        }
        let ignored = entry.status().contains(git2::Status::IGNORED);
        entries.push((path.trim_end_matches('/').to_string(), ignored));
    }
    Ok(entries)
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn the_copy_has_the_work_tree_with_ignored_files_linked_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        git(repo, &["init", "-q"]);
        std::fs::write(repo.join(".gitignore"), "data/\n").unwrap();
        std::fs::write(repo.join("train.py"), "print(1)\n").unwrap();
        git(repo, &["add", "."]);
        git(
            repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "x",
            ],
        );
        std::fs::write(repo.join("train.py"), "print(2)\n").unwrap();
        std::fs::create_dir_all(repo.join("data")).unwrap();
        std::fs::write(repo.join("data/big.bin"), "xyz").unwrap();
        std::fs::write(repo.join("notes.txt"), "n").unwrap();

        let scratch = Scratch::of_repository(repo, &std::env::temp_dir()).unwrap();
        let copy = scratch.path().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(copy.join("train.py")).unwrap(),
            "print(2)\n"
        );
        assert!(copy.join("notes.txt").is_file());
        assert!(copy.join("data").symlink_metadata().unwrap().is_symlink());
        assert_eq!(
            std::fs::read_to_string(copy.join("data/big.bin")).unwrap(),
            "xyz"
        );
        assert!(!copy.join(".git").exists());
        drop(scratch);
        assert!(!copy.exists());
        assert_eq!(
            std::fs::read_to_string(repo.join("data/big.bin")).unwrap(),
            "xyz"
        );
    }
}
