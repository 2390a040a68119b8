//! Processes a killed arun left behind. arun notes the process group of each command it runs in
//! a file of the run, one per line; when the run starts again, a group still alive there (an
//! agent still editing, a trainer still holding the GPU) is stopped before anything else happens.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static GROUP_FILE: OnceLock<PathBuf> = OnceLock::new();
/// The groups running now, as the file lists them.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Sets the file that records the running commands' groups (once per process).
pub fn record_groups_in(path: PathBuf) {
    let _ = GROUP_FILE.set(path);
}

pub(super) fn started(group: i32) {
    let mut groups = GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    groups.insert(group);
    write(&groups);
}

pub(super) fn finished(group: i32) {
    let mut groups = GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    groups.remove(&group);
    write(&groups);
}

fn write(groups: &BTreeSet<i32>) {
    let Some(path) = GROUP_FILE.get() else {
        return;
    };
    if groups.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        let text: String = groups.iter().map(|g| format!("{g}\n")).collect();
        let _ = std::fs::write(path, text);
    }
}

/// Stops what is left of the groups recorded in `file`, if their processes still work in
/// `repo` (the check guards against recycled process group ids). Returns how many were stopped.
pub fn stop_leftovers(file: &Path, repo: &Path, grace: Duration) -> usize {
    let groups: Vec<i32> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    let mut stopped = 0;
    for group in groups {
        let members = members_in(group, repo);
        if !members.is_empty() {
            super::signal_group(group, libc::SIGTERM);
            let until = Instant::now() + grace;
            while Instant::now() < until && !members_in(group, repo).is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
            super::signal_group(group, libc::SIGKILL);
            super::wait_until_gone(group, Duration::from_secs(30));
        }
        stopped += members.len();
    }
    let _ = std::fs::remove_file(file);
    stopped
}

/// Live processes of `group` whose working directory is inside `repo`.
fn members_in(group: i32, repo: &Path) -> Vec<i32> {
    members(group)
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(repo))
        })
        .collect()
}

/// Live (not zombie) processes of `group`, from `/proc`.
pub fn members(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let live = fields
                .first()
                .is_some_and(|state| *state != "Z" && *state != "X");
            live && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(group)
        })
        .collect()
}
