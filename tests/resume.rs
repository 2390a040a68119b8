//! Crash consistency: arun killed with SIGKILL in every state, or stopped with Ctrl-C, continues
//! with nothing lost or repeated.

mod common;

use std::time::{Duration, Instant};

use common::{Setup, Target, alive};
use serde_json::json;

const EXPECTED: &str = "commit\tval_loss\tmemory_gb\tstatus\tdescription\n\
                        #0\t1.004900\t0.5\tkeep\tbaseline\n\
                        #1\t1.000400\t0.5\tkeep\tset LR 0.05\n\
                        #2\t1.220900\t0.5\tdiscard\tset LR 0.5\n\
                        #3\t1.000000\t0.5\tkeep\tset LR 0.03\n";

fn plan() -> serde_json::Value {
    json!({"1": {"LR": 0.05}, "2": {"LR": 0.5}, "3": {"LR": 0.03}})
}

/// Checks what a finished 4-experiment run must look like, however often it was killed.
fn assert_complete(target: &Target, runs: &[&common::Run]) {
    assert_eq!(target.results_redacted(), EXPECTED);
    assert_eq!(target.branch_tip(), target.ref_short(3));
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    assert_eq!(target.status(), "");
    assert_eq!(target.refs().len(), 4);
    let recorded = target.recorded();
    assert_eq!(
        recorded,
        [0, 1, 2, 3],
        "each experiment recorded exactly once"
    );
    // No [EXP] line is printed twice across the runs.
    let mut lines: Vec<String> = runs.iter().flat_map(|r| r.exp_lines()).collect();
    let total = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), total, "an [EXP] line was printed twice");
}

#[test]
fn uninterrupted_reference_run() {
    let target = Target::new(Setup {
        plan: plan(),
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "4"]);
    run.assert_code(0);
    assert_complete(&target, &[&run]);
}

#[test]
fn sigkill_after_each_journaled_step_then_resume_completes_the_same_run() {
    let points = [
        "run-started:",
        "experiment-started:0",
        "measured:0",
        "recorded:0",
        "experiment-started:2",
        "proposed:2",
        "committed:2",
        "measured:2",
        "decided:2",
        "recorded:2",
        "decided:3",
    ];
    for point in points {
        let target = Target::new(Setup {
            plan: plan(),
            ..Setup::default()
        });
        let killed =
            target.arun_with_env(&["--max-experiments", "4"], &[("ARUN_FAILPOINT", point)]);
        assert_eq!(
            killed.code(),
            None,
            "{point}: arun should die by SIGKILL: {}",
            killed.stderr()
        );
        let resumed = target.arun(&["--max-experiments", "4"]);
        resumed.assert_code(0);
        assert!(
            resumed.stderr().contains("arun: resuming run `test`"),
            "{point}: {}",
            resumed.stderr()
        );
        assert_complete(&target, &[&killed, &resumed]);
    }
}

#[test]
fn sigkill_while_the_agent_works_then_resume() {
    let mut plan = plan();
    plan["2"]["kill-arun-once"] = json!(true);
    let target = Target::new(Setup {
        plan,
        ..Setup::default()
    });
    let killed = target.arun(&["--max-experiments", "4"]);
    assert_eq!(killed.code(), None);
    let resumed = target.arun(&["--resume", "--max-experiments", "4"]);
    resumed.assert_code(0);
    assert_complete(&target, &[&killed, &resumed]);
}

#[test]
fn sigkill_while_the_experiment_runs_then_resume_reruns_it_without_a_new_proposal() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.5, "MODE": "kill-arun-once"}, "3": {"LR": 0.03, "MODE": "normal"}}),
        ..Setup::default()
    });
    let killed = target.arun(&["--max-experiments", "4"]);
    assert_eq!(killed.code(), None);
    let resumed = target.arun(&["--max-experiments", "4"]);
    resumed.assert_code(0);
    assert_eq!(
        target.results_redacted(),
        EXPECTED
            .replace("set LR 0.5\n", "set LR 0.5, MODE kill-arun-once\n")
            .replace("set LR 0.03\n", "set LR 0.03, MODE normal\n")
    );
    let proposals = target
        .agent_calls()
        .iter()
        .filter(|(n, task, _)| *n == 2 && task == "propose")
        .count();
    assert_eq!(
        proposals, 1,
        "the committed proposal is run again, not proposed again"
    );
}

#[test]
fn ctrl_c_stops_the_experiment_leaves_the_branch_on_the_last_keep_and_resume_continues() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "hang-once"}, "2": {"LR": 0.03, "MODE": "normal"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    let child = target.spawn(&["--max-experiments", "3"]);
    wait_for(&target.path("pids.hung"));
    send(child.id(), libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let run = common::Run { output };
    run.assert_code(130);
    assert!(
        run.stdout()
            .contains("== arun run `test`: interrupted ==\n0 experiments after the baseline"),
        "{}",
        run.stdout()
    );
    // One session: its time is the run's time, with no share to name.
    assert!(
        !run.stdout().contains("of it in this session"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        target.results().lines().count(),
        2,
        "only the baseline is recorded"
    );
    assert_eq!(target.branch_tip(), target.ref_short(0));
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    assert_eq!(target.status(), "");
    let last = target.journal().pop().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["n"].as_u64()),
        (Some("interrupted"), Some(1))
    );

    let resumed = target.arun(&["--max-experiments", "3"]);
    resumed.assert_code(0);
    // The resumed session names its share of the run's time.
    assert!(
        resumed.stdout().contains(" driving the run, ")
            && resumed.stdout().contains(" of it in this session\n"),
        "{}",
        resumed.stdout()
    );
    let results = target.results_redacted();
    assert!(results.ends_with("#1\t1.000400\t0.5\tkeep\tset LR 0.05, MODE hang-once\n#2\t1.000000\t0.5\tkeep\tset LR 0.03, MODE normal\n"), "{results}");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "hang-once"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    let child = target.spawn(&[]);
    wait_for(&target.path("pids.hung"));
    send(child.id(), libc::SIGTERM);
    let run = common::Run {
        output: child.wait_with_output().unwrap(),
    };
    run.assert_code(130);
    assert_eq!(target.status(), "");
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "ignore-term"}}),
        // `exec` makes the trainer itself the group leader that ignores SIGTERM.
        run: "exec python3 train.py",
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"50s\"",
        ..Setup::default()
    });
    let child = target.spawn(&[]);
    wait_for(&target.path("pids"));
    send(child.id(), libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    send(child.id(), libc::SIGINT);
    let run = common::Run {
        output: child.wait_with_output().unwrap(),
    };
    run.assert_code(130);
    assert!(
        !run.stdout().contains("== arun run"),
        "no summary after the second Ctrl-C"
    );
    let pids = target.forked_pids();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(pids[0]), "the experiment's group was killed");
}

#[test]
fn resume_without_a_tag_picks_the_latest_run() {
    let target = Target::new(Setup {
        plan: plan(),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg(&target.pipeline)
        .args(["--resume", "--max-experiments", "4"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(target.results_redacted(), EXPECTED);
}

#[test]
fn resume_of_a_run_that_does_not_exist_is_refused() {
    let target = Target::new(Setup::default());
    let run = target.arun(&["--resume"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains("there is no run `test` to resume"),
        "{}",
        run.stderr()
    );
}

fn wait_for(path: &std::path::Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
}

fn send(pid: u32, signal: i32) {
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

#[test]
fn a_second_arun_on_the_same_run_is_refused() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "hang-once"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    let mut first = target.spawn(&[]);
    wait_for(&target.path("pids.hung"));
    let second = target.arun(&[]);
    second.assert_code(1);
    assert!(
        second.stderr().contains(&format!(
            "is being driven by run `test` of `{}`, arun pid {}",
            target.pipeline.display(),
            first.id()
        )),
        "{}",
        second.stderr()
    );
    send(first.id(), libc::SIGINT);
    assert_eq!(first.wait().unwrap().code(), Some(130));
}

/// Every file named `name` under `dir`, the repository's `.git` (where the workers' work trees
/// are) included.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|f| f == name) {
            found.push(path.clone());
        }
        if path.is_dir() && !path.is_symlink() {
            found.extend(files_named(&path, name));
        }
    }
    found
}

#[test]
fn a_proposal_journaled_before_a_kill_is_undone_in_the_work_tree_it_was_made_in() {
    // Two workers: #1 runs in one work tree while the agent takes its time over #2 in the
    // other, creating an ignored file besides its edit; #3 is proposed meanwhile. arun is
    // killed right after #2's proposal is journaled, before the ignored file is removed.
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05},
            "2": {"LR": 0.04, "sleep": 5, "run": [
                "mkdir -p __pycache__ && echo stray > __pycache__/stray.pyc"
            ]},
            "3": {"LR": 0.03, "sleep": 1},
            "4": {"LR": 0.02},
        }),
        env: "NOISE_SD = \"0.0002\"",
        experiment: "budget = \"2s\"\nhard-limit = \"6s\"\ngrace = \"1s\"",
        extra: "[workers]\ncount = 2",
        ..Setup::default()
    });
    let args = ["--max-experiments", "5"];
    let killed = target.arun_with_env(&args, &[("ARUN_FAILPOINT", "proposed:2")]);
    assert_ne!(killed.code(), Some(0), "{}", killed.stderr());
    let left = files_named(&target.repo, "stray.pyc");
    assert_eq!(left.len(), 1, "the proposer's ignored file: {left:?}");
    target.arun(&args).assert_code(0);
    // The resumed arun undid the proposal where it was made, whichever work tree #2 ran in.
    let left = files_named(&target.repo, "stray.pyc");
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(target.recorded().len(), 5);
    let proposed = target
        .journal()
        .into_iter()
        .find(|e| e["event"] == "proposed" && e["n"] == 2)
        .unwrap();
    assert!(proposed["space"].as_u64().is_some(), "{proposed}");
}
