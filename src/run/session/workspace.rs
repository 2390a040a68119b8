//! Where experiments are proposed, built and run. One experiment at a time uses the repository's
//! own work tree, as autoresearch does. Several in flight (parallel workers, or proposals made
//! ahead) each get a git work tree of their own under the run directory,
//! `.git/arun/<tag>/work/<i>`, on the same filesystem: their own files and build outputs, the
//! same objects and refs. The repository's work tree then stays on the run branch at the best
//! result throughout.

use std::path::{Path, PathBuf};

use git2::Oid;

use crate::error::Error;
use crate::run::git::{Git, GitError, Head};
use crate::run::store::RunDir;

pub(super) struct Workspace {
    pub(super) path: PathBuf,
    pub(super) git: Git,
    /// Untracked files that are not arun's to remove: the user's in the repository's work tree,
    /// the links to shared paths in a worker's.
    keep: Vec<String>,
    /// A linked work tree: HEAD is always detached there (a branch may be checked out in one
    /// work tree only, and the run branch is the repository's).
    linked: bool,
    /// Where it is known to be clean, to skip resets that would change nothing (each walks the
    /// whole tree). `None` after anything ran in it.
    clean_at: Option<(Head, Oid)>,
}

impl Workspace {
    /// The repository's own work tree.
    pub(super) fn main(git: Git, keep: Vec<String>) -> Workspace {
        Workspace {
            path: git.workdir().to_path_buf(),
            git,
            keep,
            linked: false,
            clean_at: None,
        }
    }

    /// Work tree `i` of the run, made (with `git worktree add --detach`) unless it is there
    /// already from an earlier arun; `share` are ignored paths of the repository's work tree it
    /// links to.
    pub(super) fn linked(
        repo: &Git,
        run: &RunDir,
        i: usize,
        share: &[String],
        at: Oid,
    ) -> Result<Workspace, Error> {
        let path = run.path().join("work").join(i.to_string());
        let usable = path.join(".git").is_file() && Git::open(&path).is_ok();
        if !usable {
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .map_err(|err| Error::io(format!("cannot remove `{}`", path.display()), err))?;
            }
            git_command(repo.workdir(), &["worktree", "prune"])?;
            let parent = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent)
                .map_err(|err| Error::io(format!("cannot create `{}`", parent.display()), err))?;
            git_command(
                repo.workdir(),
                &[
                    "worktree",
                    "add",
                    "--detach",
                    "--force",
                    &path.display().to_string(),
                    &at.to_string(),
                ],
            )?;
        }
        for shared in share {
            let link = path.join(shared);
            let target = repo.workdir().join(shared);
            if link.symlink_metadata().is_err() {
                if let Some(dir) = link.parent() {
                    std::fs::create_dir_all(dir).map_err(|err| {
                        Error::io(format!("cannot create `{}`", dir.display()), err)
                    })?;
                }
                std::os::unix::fs::symlink(&target, &link)
                    .map_err(|err| Error::io(format!("cannot link `{}`", link.display()), err))?;
            }
        }
        Ok(Workspace {
            git: Git::open(&path)?,
            path,
            keep: share.to_vec(),
            linked: true,
            clean_at: None,
        })
    }

    /// Where HEAD goes for `head`: a branch only in the repository's own work tree.
    pub(super) fn head(&self, head: Head, commit: Oid) -> Head {
        match head {
            Head::Branch(_) if self.linked => Head::Detached(commit),
            head => head,
        }
    }

    /// Puts HEAD and the files at `commit`, unless they are known to be there already.
    pub(super) fn place(&mut self, head: Head, commit: Oid) -> Result<(), Error> {
        let head = self.head(head, commit);
        if self.clean_at.as_ref() != Some(&(head.clone(), commit)) {
            self.clean(head, commit)?;
        }
        Ok(())
    }

    /// Puts HEAD and the files at `commit`: tracked files as committed, untracked files that are
    /// not to be kept removed (what a build or a run left). Ignored files stay: caches, build
    /// output, data.
    pub(super) fn clean(&mut self, head: Head, commit: Oid) -> Result<(), Error> {
        let head = self.head(head, commit);
        self.git.reset_hard(&head, commit)?;
        crate::run::scope::remove_untracked_except(&self.git, &self.keep)?;
        self.clean_at = Some((head, commit));
        Ok(())
    }

    /// Something ran in it: its state is no longer known.
    pub(super) fn touched(&mut self) {
        self.clean_at = None;
    }
}

/// Runs `git ARGS` in `dir`; an error carries git's own message.
fn git_command(dir: &Path, args: &[&str]) -> Result<(), Error> {
    let output = duct::cmd("git", args)
        .dir(dir)
        .stderr_capture()
        .stdout_null()
        .unchecked()
        .run()
        .map_err(|err| Error::io("cannot run git: is it installed?", err))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Git(GitError {
            context: format!("`git {}` failed", args.join(" ")),
            source: String::from_utf8_lossy(&output.stderr)
                .trim()
                .to_string()
                .into(),
        }))
    }
}
