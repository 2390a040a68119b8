//! The fault suite: arun killed with SIGKILL right after every event it journals, right after it
//! creates each git lock file (while libgit2 holds it), right after it saves each answer, and at
//! random moments, then started again with the same command. Every time, the run must end
//! exactly as the same run did without a fault: the same rows, each proposal asked for (and
//! paid) once, the same cost, the branch on the last keep, a clean work tree, no process left
//! behind. With two workers, a kill at each lock in the workers' own work trees must resume and
//! finish the run without asking again for an answer arun had saved.
//!
//! The scenario covers every state of an experiment: setup, a baseline run twice, a build, a
//! keep with a confirmation run, a discard, a crash and its fix, held-out checks. The agent is
//! the scripted stand-in of Claude Code (tests/scripts/agent_cli.py), which reports a cost.
//! Kills at lock files come from tests/scripts/failpoints.c, loaded with LD_PRELOAD.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Run, Setup, Target, failpoints_shim, processes_in, stand_in_path};
use serde_json::json;

const MAX_EXPERIMENTS: &str = "5";

/// What the agent proposes: #1 and #4 improve, #2 does worse, #3 crashes (and in the sequential
/// scenario #4 is its fix).
fn plan() -> serde_json::Value {
    json!({
        "1": {"LR": 0.05},
        "2": {"LR": 0.5},
        "3": {"LR": 0.04, "MODE": "crash"},
        "4": {"LR": 0.03, "MODE": "normal"},
    })
}

fn scenario() -> Target {
    Target::new(Setup {
        plan: plan(),
        env: "NOISE_SD = \"0.0002\"",
        experiment: "budget = \"2s\"\nhard-limit = \"6s\"\ngrace = \"1s\"\nbuild = \"echo building\"",
        proposer: common::CLAUDE_STAND_IN,
        extra: "[decision.noise]\nbaseline-runs = 2\n\n\
                [decision.held-out]\nrun = \"HELD_OUT=1 python3 train.py\"\nname = \"test_loss\"\n\
                regex = '^test_loss:\\s*([0-9.]+)'",
        ..Setup::default()
    })
}

/// What a finished run looks like, to compare runs by.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: String,
    /// Proposals asked for, by experiment (the stop summary's call left out).
    calls: Vec<(u64, String)>,
    /// Journaled proposer cost, in cents.
    cost_cents: i64,
    branch_tip_is_last_keep: bool,
    head_on_branch: bool,
    work_tree: String,
    held_out: Vec<u64>,
}

fn outcome(target: &Target) -> Outcome {
    let journal = target.journal();
    let cost: f64 = journal
        .iter()
        .filter(|e| e["event"] == "proposed" || e["event"] == "proposal-failed")
        .filter_map(|e| e["cost_usd"].as_f64())
        .sum();
    let last_keep = journal
        .iter()
        .filter(|e| e["event"] == "decided" && e["decision"]["status"] == "keep")
        .filter_map(|e| e["n"].as_u64())
        .next_back()
        .unwrap();
    let mut calls: Vec<(u64, String)> = common::call_records(target)
        .iter()
        .filter(|c| c["task"] != "summary")
        .map(|c| {
            (
                c["n"].as_u64().unwrap(),
                c["task"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    calls.sort();
    let mut held_out: Vec<u64> = journal
        .iter()
        .filter(|e| e["event"] == "held-out")
        .map(|e| e["n"].as_u64().unwrap())
        .collect();
    held_out.dedup();
    Outcome {
        results: target.results_redacted(),
        calls,
        cost_cents: (cost * 100.0).round() as i64,
        branch_tip_is_last_keep: target.branch_tip() == target.ref_short(last_keep),
        head_on_branch: target.head_branch().as_deref() == Some("autoresearch/test"),
        work_tree: target.status(),
        held_out,
    }
}

/// The uninterrupted run every faulted one is compared with, and how long it took.
fn reference() -> (Outcome, Duration) {
    let target = scenario();
    let path = stand_in_path(&target);
    let started = Instant::now();
    let run = target.arun_with_env(&["--max-experiments", MAX_EXPERIMENTS], &[("PATH", &path)]);
    let took = started.elapsed();
    run.assert_code(0);
    let outcome = outcome(&target);
    // The scenario is what this suite claims it is.
    assert_eq!(
        outcome
            .results
            .lines()
            .map(|l| l.split('\t').nth(3).unwrap())
            .collect::<Vec<_>>(),
        ["status", "keep", "keep", "discard", "crash", "keep"],
        "{}",
        outcome.results
    );
    assert_eq!(
        outcome.calls,
        [
            (1, "propose"),
            (2, "propose"),
            (3, "propose"),
            (4, "fix-crash")
        ]
        .map(|(n, t)| (n, t.to_string()))
    );
    assert_eq!(outcome.cost_cents, 20, "four proposals at $0.05");
    assert!(outcome.branch_tip_is_last_keep && outcome.head_on_branch);
    assert_eq!(outcome.work_tree, "");
    (outcome, took)
}

/// Runs the scenario with `fault` (extra environment for the first arun), expects that arun to
/// die by SIGKILL, resumes until it finishes, and compares with `expected`. Returns whether
/// the fault killed arun (a fault point may lie past the end of a run).
fn killed_then_resumed(expected: &Outcome, what: &str, fault: &[(&str, String)]) -> bool {
    let target = scenario();
    let path = stand_in_path(&target);
    let mut env: Vec<(&str, String)> = vec![("PATH", path.clone())];
    env.extend(fault.iter().cloned());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let killed = target.arun_with_env(&["--max-experiments", MAX_EXPERIMENTS], &env_refs);
    let was_killed = killed.code().is_none();
    if !was_killed {
        // The fault point lies past the end of this run (a lock taken only sometimes).
        killed.assert_code(0);
    }
    let resumed = target.arun_with_env(&["--max-experiments", MAX_EXPERIMENTS], &[("PATH", &path)]);
    assert_resumed(what, &killed, &resumed);
    assert_finished_like(&target, expected, what, &[&killed, &resumed]);
    was_killed
}

fn assert_resumed(what: &str, killed: &Run, resumed: &Run) {
    assert_eq!(
        resumed.code(),
        Some(0),
        "{what}: the resume failed\nkilled run:\n{}\nresume:\n{}",
        killed.stderr(),
        resumed.stderr()
    );
}

fn assert_finished_like(target: &Target, expected: &Outcome, what: &str, runs: &[&Run]) {
    let found = outcome(target);
    assert_ended_like(target, &found, expected, what, runs);
}

/// Everything but the agent calls and their cost, which a kill while the agent works repeats.
fn assert_ended_like(
    target: &Target,
    found: &Outcome,
    expected: &Outcome,
    what: &str,
    runs: &[&Run],
) {
    assert_eq!(
        found,
        expected,
        "{what}: the run ended differently from the uninterrupted one\n{}",
        runs.iter()
            .map(|r| r.stderr())
            .collect::<Vec<_>>()
            .join("\n-- next arun --\n")
    );
    let recorded = target.recorded();
    assert_eq!(
        recorded,
        [0, 1, 2, 3, 4],
        "{what}: each experiment recorded once"
    );
    let mut lines: Vec<String> = runs.iter().flat_map(|r| r.exp_lines()).collect();
    let total = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(
        lines.len(),
        total,
        "{what}: an [EXP] line was printed twice"
    );
    assert_no_process_left(&target.repo, what);
}

fn assert_no_process_left(repo: &Path, what: &str) {
    // A process killed a moment ago may take a little while to be reaped.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_in(repo);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: processes left running in the repository: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every journaled event of the reference run, as failpoints `@1`, `@2`...
fn journal_events_of_reference() -> usize {
    let target = scenario();
    let path = stand_in_path(&target);
    target
        .arun_with_env(&["--max-experiments", MAX_EXPERIMENTS], &[("PATH", &path)])
        .assert_code(0);
    target.journal().len()
}

#[test]
fn a_kill_after_any_journaled_event_resumes_to_the_same_run() {
    let (expected, _) = reference();
    let events = journal_events_of_reference();
    assert!(events > 40, "the scenario journals {events} events");
    for k in 1..=events {
        killed_then_resumed(
            &expected,
            &format!("killed after journal event {k} of {events}"),
            &[("ARUN_FAILPOINT", format!("@{k}"))],
        );
    }
    eprintln!("faults: {events} journal events, each killed and resumed: all passed");
}

/// The lock files the reference run creates, in order.
fn locks_of_reference(shim: &Path) -> Vec<String> {
    let target = scenario();
    let path = stand_in_path(&target);
    let log = target.path("shim.log");
    target
        .arun_with_env(
            &["--max-experiments", MAX_EXPERIMENTS],
            &[
                ("PATH", &path),
                ("LD_PRELOAD", shim.to_str().unwrap()),
                ("ARUN_SHIM_LOG", log.to_str().unwrap()),
            ],
        )
        .assert_code(0);
    let repo = target.repo.canonicalize().unwrap();
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("lock "))
        .map(|p| {
            Path::new(p)
                .strip_prefix(&repo)
                .map_or(p.to_string(), |r| r.display().to_string())
        })
        .collect()
}

/// Kills at the lock files whose position `k` (from 1) satisfies `part`.
fn kill_at_locks(part: impl Fn(usize) -> bool, name: &str) {
    let Some(shim) = failpoints_shim() else {
        return;
    };
    let (expected, _) = reference();
    let locks = locks_of_reference(&shim);
    assert!(
        locks.len() > 20,
        "the scenario creates {} locks",
        locks.len()
    );
    let mut tried = 0;
    for (i, lock) in locks.iter().enumerate() {
        let k = i + 1;
        if !part(k) {
            continue;
        }
        killed_then_resumed(
            &expected,
            &format!("killed holding lock {k} of {} (`{lock}`)", locks.len()),
            &[
                ("LD_PRELOAD", shim.display().to_string()),
                ("ARUN_KILL_AT_LOCK", k.to_string()),
            ],
        );
        tried += 1;
    }
    eprintln!(
        "faults ({name}): killed at {tried} of {} lock files and resumed: all passed",
        locks.len()
    );
}

#[test]
fn a_kill_holding_a_git_lock_resumes_to_the_same_run_odd_locks() {
    kill_at_locks(|k| k % 2 == 1, "odd locks");
}

#[test]
fn a_kill_holding_a_git_lock_resumes_to_the_same_run_even_locks() {
    kill_at_locks(|k| k % 2 == 0, "even locks");
}

/// A kill right after arun saved an answer (`answers/<n>-<k>.json`), before the journal names
/// it: the resume journals the saved answer, so the run ends as the uninterrupted one did, each
/// proposal asked for and paid once.
#[test]
fn a_kill_between_an_answer_and_its_journal_line_resumes_to_the_same_run() {
    let Some(shim) = failpoints_shim() else {
        return;
    };
    let (expected, _) = reference();
    // The scenario's four answers: three proposals and a crash's fix.
    for k in 1..=4 {
        let what = format!("killed after saving answer {k} of 4");
        let killed = killed_then_resumed(
            &expected,
            &what,
            &[
                ("LD_PRELOAD", shim.display().to_string()),
                ("ARUN_KILL_AT_RENAME", k.to_string()),
                ("ARUN_KILL_RENAMES_TO", "/answers/".to_string()),
            ],
        );
        assert!(killed, "{what}: arun saved fewer than {k} answers");
    }
}

#[test]
fn random_kills_resume_to_the_same_run() {
    let (expected, took) = reference();
    // A small linear congruential generator: the same kill times on every machine and run.
    let mut state: u64 = 0x5eed_f00d;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    const TRIALS: usize = 8;
    const KILLS_PER_TRIAL: usize = 3;
    for trial in 0..TRIALS {
        let target = scenario();
        let path = stand_in_path(&target);
        let args = ["--max-experiments", MAX_EXPERIMENTS];
        let mut kills = Vec::new();
        for _ in 0..KILLS_PER_TRIAL {
            let after = took.mul_f64(next());
            let mut child = {
                let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_arun"));
                command
                    .arg(&target.pipeline)
                    .args(["--tag", "test"])
                    .args(args)
                    .current_dir(target.dir.path())
                    .env("PATH", &path)
                    .env("NO_COLOR", "1")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                command.spawn().unwrap()
            };
            std::thread::sleep(after);
            let _ = child.kill();
            let _ = child.wait();
            kills.push(after);
        }
        let resumed = target.arun_with_env(&args, &[("PATH", &path)]);
        resumed.assert_code(0);
        // A kill while the agent works loses its answer: that one proposal is asked for again
        // (and its cost, never reported, is not counted). Nothing else may differ.
        let mut found = outcome(&target);
        let repeated = found.calls.len() - expected.calls.len();
        assert!(
            repeated <= KILLS_PER_TRIAL,
            "trial {trial}: {repeated} repeated calls for {KILLS_PER_TRIAL} kills: {:?}",
            found.calls
        );
        found.calls.dedup();
        found.cost_cents = expected.cost_cents;
        // The killed runs' [EXP] lines are not kept; the journal and the table are compared.
        assert_ended_like(
            &target,
            &found,
            &expected,
            &format!("trial {trial}: killed after {kills:?}"),
            &[&resumed],
        );
    }
    eprintln!(
        "faults: {TRIALS} trials of {KILLS_PER_TRIAL} random kills each (within the {:.1}s an \
         uninterrupted run takes) then a resume: all passed",
        took.as_secs_f64()
    );
}

#[test]
fn a_run_syncs_what_it_writes_before_it_moves_on() {
    let Some(shim) = failpoints_shim() else {
        return;
    };
    let target = scenario();
    let path = stand_in_path(&target);
    let log = target.path("shim.log");
    target
        .arun_with_env(
            &["--max-experiments", "2"],
            &[
                ("PATH", &path),
                ("LD_PRELOAD", shim.to_str().unwrap()),
                ("ARUN_SHIM_LOG", log.to_str().unwrap()),
            ],
        )
        .assert_code(0);
    let repo = target.repo.canonicalize().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.replace(&format!("{}/", repo.display()), ""))
        .collect();
    let position = |line: &str| {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no `{line}` in:\n{}", lines.join("\n")))
    };
    // The journal is born whole: written aside, synced, renamed, and its directory synced.
    let temporary = position("fsync .git/arun/test/journal.jsonl.tmp");
    let renamed = position(
        &lines
            .iter()
            .find(|l| l.starts_with("rename .git/arun/test/journal.jsonl.tmp"))
            .cloned()
            .unwrap(),
    );
    let directory = lines[renamed..]
        .iter()
        .position(|l| l == "fsync .git/arun/test")
        .map(|p| p + renamed);
    assert!(
        temporary < renamed && directory.is_some(),
        "{}",
        lines.join("\n")
    );
    // Every later event is synced in place.
    assert!(
        lines
            .iter()
            .any(|l| l == "fsync .git/arun/test/journal.jsonl")
    );
    // libgit2 syncs the objects and refs of the experiments' commits.
    assert!(
        lines.iter().any(|l| l.starts_with("fsync .git/objects/")),
        "objects are not synced"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fsync .git/refs/arun/test")),
        "the experiment refs are not synced:\n{}",
        lines.join("\n")
    );
}

/// The scenario with two workers: experiments run side by side, each in a work tree of its
/// own whose git directory (`.git/worktrees/<name>/`) has its own HEAD and index locks.
fn workers_scenario() -> Target {
    Target::new(Setup {
        plan: plan(),
        env: "NOISE_SD = \"0.0002\"",
        experiment: "budget = \"2s\"\nhard-limit = \"6s\"\ngrace = \"1s\"",
        extra: "[workers]\ncount = 2",
        ..Setup::default()
    })
}

/// What a kill of the workers' scenario cost, as `workers_killed_then_resumed` found it.
#[derive(Default)]
struct Lost {
    /// Whether the resume journaled an answer the killed arun had saved.
    taken: bool,
    /// Answers given before the kill, in the moment before arun saved them, asked for again.
    unsaved: usize,
}

/// Runs the workers' scenario with `fault` (extra environment for the first arun), resumes it
/// and checks that the run finished whole: each experiment recorded once, every row there, a
/// clean work tree on the branch, no process left, and no saved answer asked for again.
fn workers_killed_then_resumed(what: &str, rows: usize, fault: &[(&str, &str)]) -> Lost {
    let args = ["--max-experiments", MAX_EXPERIMENTS];
    let target = workers_scenario();
    // The agent notes its answers here (tests/scripts/agent.py), arun's shim its file
    // operations and the kill: one file, so that their order is known.
    let events = target.path("plan.json.answered");
    let mut env = fault.to_vec();
    env.push(("ARUN_KILL_NOTE", events.to_str().unwrap()));
    env.push(("ARUN_SHIM_LOG", events.to_str().unwrap()));
    let killed = target.arun_with_env(&args, &env);
    if killed.code().is_some() {
        // Timing made this run shorter than the one the fault points were counted in.
        killed.assert_code(0);
    }
    // A kill by arun's own failpoint is not noted by the shim: it is over by now.
    let log = std::fs::read_to_string(&events).unwrap_or_default();
    if !log.lines().any(|l| l == "killed") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events)
            .unwrap();
        writeln!(file, "killed").unwrap();
    }
    let resumed = target.arun(&args);
    assert_resumed(what, &killed, &resumed);
    let recorded = target.recorded();
    let mut once = recorded.clone();
    once.sort();
    once.dedup();
    assert_eq!(once, [0, 1, 2, 3, 4], "{what}: {recorded:?}");
    assert_eq!(recorded.len(), 5, "{what}: recorded twice: {recorded:?}");
    assert_eq!(target.results().lines().count(), rows, "{what}");
    // What happened before the kill: agents' answers, and arun's saves of them.
    let log = std::fs::read_to_string(&events).unwrap();
    let before_kill: Vec<&str> = log.lines().take_while(|l| *l != "killed").collect();
    let answered = |n: u64| before_kill.contains(&format!("answered {n}").as_str());
    let saved = |n: u64| {
        before_kill
            .iter()
            .any(|l| l.starts_with("rename ") && l.ends_with(&format!("/answers/{n}-0.json")))
    };
    let calls = target.agent_calls();
    let mut lost = Lost::default();
    for n in 1..=4 {
        let asked = calls
            .iter()
            .filter(|(m, task, _)| *m == n && task != "summary")
            .count();
        // An answer arun had saved is never asked for again (it was paid for); one killed
        // while its agent worked, or in the moment before arun saved it, is.
        let most = if saved(n) { 1 } else { 2 };
        assert!(
            (1..=most).contains(&asked),
            "{what}: #{n} was asked for {asked} times (saved before the kill: {})\n\
             {log}\nkilled run:\n{}\nresume:\n{}",
            saved(n),
            killed.stderr(),
            resumed.stderr()
        );
        if answered(n) && asked == 2 {
            lost.unsaved += 1;
        }
    }
    lost.taken = resumed
        .stderr()
        .contains("journaling the answer the stopped arun was given");
    assert_eq!(target.status(), "", "{what}: the work tree is not clean");
    assert_eq!(
        target.head_branch().as_deref(),
        Some("autoresearch/test"),
        "{what}"
    );
    assert_no_process_left(&target.repo, what);
    lost
}

/// The workers' scenario run whole with the shim logging, and its log.
fn workers_reference(shim: &Path) -> (usize, String, usize) {
    let reference = workers_scenario();
    let log = reference.path("shim.log");
    reference
        .arun_with_env(
            &["--max-experiments", MAX_EXPERIMENTS],
            &[
                ("LD_PRELOAD", shim.to_str().unwrap()),
                ("ARUN_SHIM_LOG", log.to_str().unwrap()),
            ],
        )
        .assert_code(0);
    (
        reference.results().lines().count(),
        std::fs::read_to_string(&log).unwrap(),
        reference.journal().len(),
    )
}

#[test]
fn a_kill_holding_a_lock_in_a_workers_work_tree_resumes_the_run() {
    let Some(shim) = failpoints_shim() else {
        return;
    };
    const UNDER: &str = "/.git/worktrees/";
    let (rows, log, _) = workers_reference(&shim);
    let locks = log
        .lines()
        .filter(|l| l.starts_with("lock ") && l.contains(UNDER))
        .count();
    assert!(locks >= 8, "the workers' checkouts take {locks} locks");
    let (mut taken, mut unsaved) = (0, 0);
    for k in 1..=locks {
        let lost = workers_killed_then_resumed(
            &format!("killed holding lock {k} of {locks} in a worker's work tree"),
            rows,
            &[
                ("LD_PRELOAD", shim.to_str().unwrap()),
                ("ARUN_KILL_AT_LOCK", k.to_string().as_str()),
                ("ARUN_KILL_LOCKS_UNDER", UNDER),
            ],
        );
        taken += usize::from(lost.taken);
        unsaved += lost.unsaved;
    }
    eprintln!(
        "faults (workers): killed at each of {locks} locks in the workers' work trees and \
         resumed: all passed; {taken} resumes took saved answers; {unsaved} answers came in \
         the moment before arun saved them and were asked for again"
    );
    // The kills land while answers wait to be journaled: the resume takes them.
    assert!(taken > 0, "no resume took a saved answer");
}

#[test]
fn a_kill_after_any_journaled_event_of_two_workers_resumes_the_run() {
    let Some(shim) = failpoints_shim() else {
        return;
    };
    let (rows, _, events) = workers_reference(&shim);
    assert!(
        events > 30,
        "the workers' scenario journals {events} events"
    );
    for k in 1..=events {
        workers_killed_then_resumed(
            &format!("two workers, killed after journal event {k} of {events}"),
            rows,
            &[
                ("LD_PRELOAD", shim.to_str().unwrap()),
                ("ARUN_FAILPOINT", format!("@{k}").as_str()),
            ],
        );
    }
    eprintln!("faults (workers): {events} journal events, each killed and resumed: all passed");
}
