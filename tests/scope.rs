//! Scope, closed: whatever a proposer, a build or a run changes outside the editable files is
//! found and undone, or counted against the experiment, and the user's own files are never
//! touched. Each test is named after what it guards (issue 12, item 7).

mod common;

use common::{Setup, Target};
use serde_json::json;

fn proposed(target: &Target, n: u64) -> serde_json::Value {
    target
        .journal()
        .into_iter()
        .find(|e| e["event"] == "proposed" && e["n"] == n)
        .unwrap()
}

fn undone(target: &Target, n: u64) -> Vec<String> {
    proposed(target, n)["undone"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn files_a_proposer_writes_under_ignored_paths_are_removed() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "run": [
            "mkdir -p __pycache__ && echo cache > __pycache__/train.cpython-311.pyc"
        ]}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(!target.repo.join("__pycache__").exists());
    assert_eq!(
        undone(&target, 1),
        ["created ignored `__pycache__/train.cpython-311.pyc` (removed)"]
    );
    // A cache file is no reason to throw the edit away.
    assert_eq!(target.decisions()[1].0, "keep");
}

#[test]
fn a_file_hidden_by_a_pattern_the_proposer_adds_to_the_exclude_file_is_found() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "run": [
            "echo 'hidden/' >> .git/info/exclude",
            "mkdir -p hidden && echo 'SEQ_LEN = 1' > hidden/override.py"
        ]}}),
        ..Setup::default()
    });
    let exclude = target.path("exclude-before");
    target.arun(&["--max-experiments", "1"]).assert_code(0);
    std::fs::copy(target.repo.join(".git/info/exclude"), &exclude).unwrap();
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(decisions[1].0, "crash");
    assert_eq!(
        decisions[1].1,
        "changed files outside the edit target: hidden/override.py (reverted)"
    );
    assert!(!target.repo.join("hidden").exists());
    assert_eq!(
        std::fs::read_to_string(target.repo.join(".git/info/exclude")).unwrap(),
        std::fs::read_to_string(&exclude).unwrap(),
        "the exclude file is restored"
    );
}

#[test]
fn an_untracked_file_the_user_had_is_restored_if_the_proposer_changes_it() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "run": ["echo 'the agent was here' >> notes.md"]},
                     "2": {"LR": 0.04}}),
        ..Setup::default()
    });
    target.init_repo();
    std::fs::write(target.repo.join("notes.md"), "my notes\n").unwrap();
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(
        decisions[1],
        (
            "crash".to_string(),
            "changed files outside the edit target: notes.md (reverted)".to_string()
        )
    );
    assert_eq!(decisions[2].0, "keep");
    assert_eq!(
        std::fs::read_to_string(target.repo.join("notes.md")).unwrap(),
        "my notes\n"
    );
}

#[test]
fn files_left_by_a_failed_proposal_are_removed() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "exit": 3, "run": [
            "echo scratch > scratch.txt",
            "mkdir -p __pycache__ && echo cache > __pycache__/a.pyc"
        ]}}),
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "3"]);
    run.assert_code(1);
    assert!(!target.repo.join("scratch.txt").exists());
    assert!(!target.repo.join("__pycache__").exists());
    assert!(
        target.train_py().contains("LR = 0.1\n"),
        "the edit is undone too"
    );
    assert_eq!(target.status(), "");
}

#[test]
fn refs_a_proposer_creates_are_removed_and_recorded() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "run": ["git branch agent-idea", "git tag agent-tag"]}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert_eq!(target.git(&["branch", "--list", "agent-idea"]), "");
    assert_eq!(target.git(&["tag", "--list"]), "");
    let notes = undone(&target, 1);
    assert!(
        notes.contains(&"created `refs/heads/agent-idea` (deleted)".to_string())
            && notes.contains(&"created `refs/tags/agent-tag` (deleted)".to_string()),
        "{notes:?}"
    );
}

#[test]
fn a_trainer_that_changes_the_read_only_file_is_a_crash() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "cheat"}}),
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(
        decisions[1].0, "crash",
        "a better metric from a changed evaluation is kept"
    );
    assert!(
        decisions[1]
            .1
            .contains("the run changed read-only file `prepare.py`, which only arun may change"),
        "{}",
        decisions[1].1
    );
    assert_eq!(
        std::fs::read_to_string(target.repo.join("prepare.py")).unwrap(),
        "\"\"\"Read-only part of the test target.\"\"\"\n\nSEQ_LEN = 128\n"
    );
}

#[test]
fn untracked_files_the_trainer_writes_are_removed_and_ignored_ones_kept() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "write-files"}, "2": {"LR": 0.04, "MODE": "normal"}}),
        ..Setup::default()
    });
    target.init_repo();
    std::fs::write(target.repo.join("notes.md"), "my notes\n").unwrap();
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    assert_eq!(target.decisions()[1].0, "keep");
    assert!(
        !target.repo.join("ckpt.pt").exists(),
        "a checkpoint survived its experiment"
    );
    assert!(
        target.repo.join("checkpoints/last.pt").exists(),
        "an ignored file was removed"
    );
    assert_eq!(
        std::fs::read_to_string(target.repo.join("notes.md")).unwrap(),
        "my notes\n",
        "the user's file was touched"
    );
}
