//! The learnings file `<store>/learnings.md` of a target repository: one line per kept or crashed
//! experiment (what was tried, what it did), kept across runs and shown to the proposer so that
//! a new run does not repeat what an earlier one already learned. Bounded in size: the oldest
//! lines go first.

use std::io;
use std::path::{Path, PathBuf};

/// The file's size limit; past it the oldest entries are dropped.
pub const MAX_BYTES: usize = 16 * 1024;
/// Characters of one entry's text; a long crash reason is cut.
const MAX_ENTRY: usize = 400;

const HEADER: &str = "# What earlier experiments taught\n\n\
    arun adds one line per kept or crashed experiment, newest last, and drops the oldest past \
    16 KiB.\n\n";

/// `learnings.md` in the run store `store` (`.git/arun`).
pub fn path(store: &Path) -> PathBuf {
    store.join("learnings.md")
}

/// Appends `- <key>: <text>` unless an entry for `key` is there already (a step redone after a
/// restart), then drops the oldest entries while the file is over `MAX_BYTES`.
pub fn append(file: &Path, key: &str, text: &str) -> io::Result<()> {
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err),
    };
    let prefix = format!("- {key}: ");
    let mut entries: Vec<&str> = existing
        .lines()
        .filter(|line| line.starts_with("- "))
        .collect();
    if entries.iter().any(|line| line.starts_with(&prefix)) {
        return Ok(());
    }
    let mut text = crate::text::one_line(text);
    if let Some((at, _)) = text.char_indices().nth(MAX_ENTRY) {
        text.truncate(at);
        text.push_str("...");
    }
    let entry = format!("{prefix}{text}");
    entries.push(&entry);
    let size = |entries: &[&str]| HEADER.len() + entries.iter().map(|e| e.len() + 1).sum::<usize>();
    while entries.len() > 1 && size(&entries) > MAX_BYTES {
        entries.remove(0);
    }
    let mut out = String::from(HEADER);
    for line in entries {
        out.push_str(line);
        out.push('\n');
    }
    crate::run::store::write_atomic(file, out.as_bytes())
}

/// The entries for a prompt, at most `MAX_BYTES` of the newest; empty when there are none.
pub fn read(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let entries: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut size = 0;
    for line in entries.iter().rev() {
        size += line.len() + 1;
        if size > MAX_BYTES {
            break;
        }
        out.push(line);
    }
    out.reverse();
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_once_and_the_oldest_dropped_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(read(&file), "");
        append(&file, "nov22 #1 keep", "raise LR\tto 0.04").unwrap();
        append(&file, "nov22 #1 keep", "raise LR to 0.04").unwrap();
        append(&file, "nov22 #2 crash", "double the width: out of memory").unwrap();
        assert_eq!(
            read(&file),
            "- nov22 #1 keep: raise LR to 0.04\n- nov22 #2 crash: double the width: out of memory"
        );
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .starts_with("# What earlier")
        );

        let long = "x".repeat(1000);
        append(&file, "nov22 #3 crash", &long).unwrap();
        assert!(read(&file).ends_with(&format!(": {}...", "x".repeat(MAX_ENTRY))));
        for n in 4..80 {
            append(&file, &format!("nov22 #{n} keep"), &long).unwrap();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        assert!(!text.contains("#1 keep"));
        assert!(text.contains("- nov22 #79 keep: "));
    }
}
