//! The run store: where a run's files live, the lock that lets one arun drive a repository, and
//! the durable writes that a crash or a power cut never leaves half done.
//!
//! Everything arun keeps is under the repository's git directory, out of the work tree that
//! proposers edit and experiments run in:
//!
//! ```text
//! .git/arun/lock                  held by the arun driving this repository; names its run
//! .git/arun/active                the run whose table the work tree's results.tsv shows
//! .git/arun/learnings.md          what earlier runs taught, shown to proposers
//! .git/arun/<tag>/journal.jsonl   the run's journal, its source of truth
//! .git/arun/<tag>/results.tsv     the run's own results table
//! .git/arun/<tag>/logs/ prompts/ agents/ agent/    outputs, prompts, transcripts, agent scratch
//! ```
//!
//! Files that must survive a crash whole are written aside, synced and renamed into place, and
//! the directory holding them is synced too, so that the rename itself survives a power cut.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the store directory inside the git directory.
const STORE: &str = "arun";

/// Names in the store that are not runs, so never tags.
pub const RESERVED: [&str; 4] = ["lock", "active", "learnings.md", "reports"];

/// Where an older arun kept its runs: `.arun/` in the work tree, where proposers could reach
/// them. A run found there is moved into the store before it resumes.
pub const LEGACY_DIR: &str = ".arun";

/// `<git common dir>/arun` of the repository at `repo`, or `None` when it is not one.
pub fn root_of(repo: &Path) -> Option<PathBuf> {
    let repository = git2::Repository::open(repo).ok()?;
    Some(repository.commondir().join(STORE))
}

/// One run's directory: `<store>/<tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path, tag: &str) -> RunDir {
        RunDir {
            path: root.join(tag),
        }
    }

    /// A run directory found at `path` (a legacy `.arun/<tag>`, or one named by the user).
    pub fn at(path: PathBuf) -> RunDir {
        RunDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    /// The run's own results table; the work tree's `results.tsv` is a copy of the active run's.
    pub fn results(&self) -> PathBuf {
        self.path.join("results.tsv")
    }

    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    pub fn prompts(&self) -> PathBuf {
        self.path.join("prompts")
    }

    pub fn agents(&self) -> PathBuf {
        self.path.join("agents")
    }

    /// Proposers' answers not yet journaled (see `session::answers`).
    pub fn answers(&self) -> PathBuf {
        self.path.join("answers")
    }

    /// A directory for the agent's own files (aider's chat history), given as `ARUN_RUN_DIR`.
    pub fn agent_scratch(&self) -> PathBuf {
        self.path.join("agent")
    }

    /// The process group of the command running now, for the next arun to stop if this one dies.
    pub fn group_file(&self) -> PathBuf {
        self.path.join("running-group")
    }

    pub fn report(&self) -> PathBuf {
        self.path.join("report.html")
    }
}

/// The runs of a repository, newest journal last: `(tag, run directory)`. Runs an older arun
/// left in `.arun/` are listed too, unless the store has a run of the same tag.
pub fn runs(repo: &Path) -> Vec<(String, RunDir)> {
    let mut found: Vec<(std::time::SystemTime, String, RunDir)> = Vec::new();
    let mut roots: Vec<PathBuf> = root_of(repo).into_iter().collect();
    roots.push(repo.join(LEGACY_DIR));
    for root in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let tag = entry.file_name().to_string_lossy().into_owned();
            let dir = RunDir::at(entry.path());
            let Ok(modified) = dir.journal().metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if !found.iter().any(|(_, t, _)| *t == tag) {
                found.push((modified, tag, dir));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, tag, dir)| (tag, dir)).collect()
}

/// The run of `repo` tagged `tag`, wherever it is kept.
pub fn find_run(repo: &Path, tag: &str) -> Option<RunDir> {
    runs(repo)
        .into_iter()
        .find(|(t, _)| t == tag)
        .map(|(_, dir)| dir)
}

/// The tag of the run whose journal changed last.
pub fn latest_run(repo: &Path) -> Option<String> {
    runs(repo).pop().map(|(tag, _)| tag)
}

/// Moves runs and learnings an older arun kept in the work tree's `.arun/` into the store.
/// Returns a note for each thing moved. Called with the repository lock held.
pub fn migrate_legacy(repo: &Path, root: &Path) -> io::Result<Vec<String>> {
    let legacy = repo.join(LEGACY_DIR);
    let mut notes = Vec::new();
    let Ok(entries) = std::fs::read_dir(&legacy) else {
        return Ok(notes);
    };
    create_dir_all_synced(root)?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let target = root.join(&name);
        let is_run = entry.path().join("journal.jsonl").is_file();
        let is_learnings = name == "learnings.md";
        if !(is_run || is_learnings) || target.exists() {
            continue;
        }
        std::fs::rename(entry.path(), &target)?;
        notes.push(format!(
            "arun: moved `{}` to `{}` (runs now live in the git directory, out of the proposer's \
             reach)",
            entry.path().display(),
            target.display()
        ));
    }
    sync_dir(root)?;
    // Only an empty `.arun/` goes; anything else in it is someone's.
    let _ = std::fs::remove_dir(&legacy);
    Ok(notes)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, whole:
/// written aside, synced, renamed over, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    create_dir_all_synced(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = dir.join(name);
    {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)
}

/// Flushes a directory's entries (a file created or renamed in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all` that also syncs the parent of every directory it creates.
pub fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    create_dir_all_synced(parent(dir))?;
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Who drives a repository: written into the lock file by the arun that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub tag: String,
    pub pipeline: String,
    /// Unix time it took the lock.
    pub since: f64,
}

/// The repository lock `<store>/lock`: one arun drives a repository at a time, whatever its
/// tag or pipeline. An flock, so it goes with the process however that ends.
pub struct RepoLock {
    file: File,
}

impl RepoLock {
    /// Takes the lock, or says who holds it.
    pub fn acquire(root: &Path, repo: &Path) -> Result<RepoLock, LockError> {
        let path = root.join("lock");
        let file = create_dir_all_synced(root)
            .and_then(|_| {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
            })
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            return Err(LockError::Held {
                repo: repo.to_path_buf(),
                holder: read_holder(&path),
            });
        }
        Ok(RepoLock { file })
    }

    /// Writes who holds the lock, for `arun status` and for a second arun's message.
    pub fn claim(&mut self, holder: &Holder) -> io::Result<()> {
        let text = serde_json::to_string(holder).map_err(io::Error::other)?;
        self.file.set_len(0)?;
        std::os::unix::fs::FileExt::write_all_at(&self.file, format!("{text}\n").as_bytes(), 0)?;
        self.file.sync_data()
    }
}

/// Why the repository lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create the lock `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", held_message(repo, holder.as_ref()))]
    Held {
        repo: PathBuf,
        holder: Option<Holder>,
    },
}

fn held_message(repo: &Path, holder: Option<&Holder>) -> String {
    let who = match holder {
        Some(h) => format!(
            "run `{}` of `{}`, arun pid {}, since {}",
            h.tag,
            h.pipeline,
            h.pid,
            crate::text::local_time(h.since)
        ),
        None => "another arun process".to_string(),
    };
    format!(
        "`{}` is being driven by {who}; one arun drives a repository at a time (two would check \
         out branches under each other's experiments). Wait for it, stop it (Ctrl-C or `kill \
         -INT <pid>`), or give the other pipeline its own repository",
        repo.display()
    )
}

/// The arun holding the repository lock of the store at `root` now, if any. Looks without
/// taking the lock (a lock taken even for a moment could make a starting arun refuse).
pub fn holder(root: &Path) -> Option<Holder> {
    let path = root.join("lock");
    let pid = lock_holder_pid(&path)?;
    Some(read_holder(&path).unwrap_or(Holder {
        pid,
        tag: String::new(),
        pipeline: String::new(),
        since: 0.0,
    }))
}

fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// The process holding an flock on `lock`, read from `/proc/locks`.
pub fn lock_holder_pid(lock: &Path) -> Option<u32> {
    let metadata = std::fs::metadata(lock).ok()?;
    let (inode, dev) = (metadata.ino(), metadata.dev());
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 4079 fe:00:5308502 0 EOF`; waiters have `->` after the
        // number and hold nothing.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let file_major = u32::from_str_radix(id.next()?, 16).ok()?;
        let file_minor = u32::from_str_radix(id.next()?, 16).ok()?;
        let file_inode: u64 = id.next()?.parse().ok()?;
        (file_inode == inode && file_major == major && file_minor == minor)
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

/// The tag whose table the work tree's results.tsv shows.
pub fn active_tag(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("active")).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

pub fn set_active_tag(root: &Path, tag: &str) -> io::Result<()> {
    write_atomic(&root.join("active"), format!("{tag}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/results.tsv");
        write_atomic(&path, b"one\n").unwrap();
        write_atomic(&path, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["results.tsv"]);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let mut first = RepoLock::acquire(&root, dir.path()).unwrap();
        let holder = Holder {
            pid: std::process::id(),
            tag: "nov22".into(),
            pipeline: "p.toml".into(),
            since: 0.0,
        };
        first.claim(&holder).unwrap();
        // A second open file description conflicts with the first, even in one process.
        let err = RepoLock::acquire(&root, dir.path()).err().unwrap();
        let text = err.to_string();
        assert!(text.contains("run `nov22` of `p.toml`"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert_eq!(holder_tag(&root), Some("nov22".to_string()));
        drop(first);
        assert_eq!(super::holder(&root), None);
        RepoLock::acquire(&root, dir.path()).unwrap();
    }

    fn holder_tag(root: &Path) -> Option<String> {
        super::holder(root).map(|h| h.tag)
    }
}
