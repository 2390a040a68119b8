//! The experiment loop end to end: the real binary, real git repositories, a scripted agent and
//! a scripted trainer that improve, worsen, crash, hang, flood and misbehave.

mod common;

use common::{Setup, Target, alive};
use serde_json::json;

#[test]
fn keeps_improvements_discards_the_rest_and_keeps_every_commit() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05},
            "2": {"LR": 0.5, "description": "much larger LR\twith a tab"},
            "3": {"LR": 0.03},
        }),
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "4"]);
    run.assert_code(0);
    assert_eq!(
        target.results_redacted(),
        "commit\tval_loss\tmemory_gb\tstatus\tdescription\n\
         #0\t1.004900\t0.5\tkeep\tbaseline\n\
         #1\t1.000400\t0.5\tkeep\tset LR 0.05\n\
         #2\t1.220900\t0.5\tdiscard\tmuch larger LR with a tab\n\
         #3\t1.000000\t0.5\tkeep\tset LR 0.03\n"
    );
    assert_eq!(
        run.exp_lines(),
        [
            "[EXP] test 0 | commit:#0 | val_loss:1.004900 | mem:0.5GB | status:keep | baseline",
            "[EXP] test 1 | commit:#1 | val_loss:1.000400 | mem:0.5GB | status:keep | set LR 0.05",
            "[EXP] test 2 | commit:#2 | val_loss:1.220900 | mem:0.5GB | status:discard | much larger LR with a tab",
            "[EXP] test 3 | commit:#3 | val_loss:1.000000 | mem:0.5GB | status:keep | set LR 0.03",
        ]
    );
    // The branch is on the last keep, the work tree clean, every experiment under its ref.
    assert_eq!(target.branch_tip(), target.ref_short(3));
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    assert_eq!(target.status(), "");
    assert_eq!(target.refs().len(), 4);
    assert!(target.train_py().contains("LR = 0.03"));
    // The discarded experiment is still there to diff, with its own commit message.
    let discarded = target.git(&["log", "-1", "--format=%s", "refs/arun/test/2"]);
    assert_eq!(discarded, "test: much larger LR with a tab");
    assert!(
        target
            .git(&["diff", "refs/arun/test/1", "refs/arun/test/2"])
            .contains("+LR = 0.5")
    );
    // results.tsv and the journal stay out of git, through .git/info/exclude only.
    let exclude = std::fs::read_to_string(target.repo.join(".git/info/exclude")).unwrap();
    assert!(
        exclude.contains("/results.tsv") && !exclude.contains("/.arun/"),
        "{exclude}"
    );
    assert!(target.run_dir().join("journal.jsonl").is_file());
    assert_eq!(
        std::fs::read_to_string(target.repo.join(".gitignore")).unwrap(),
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/scripted-trainer/.gitignore",
            common::ROOT
        ))
        .unwrap(),
        "arun leaves the user's .gitignore alone"
    );
    // The summary names the best and the trajectory.
    let stdout = run.stdout();
    assert!(
        stdout.contains(
            "== arun run `test`: reached the limit of 4 experiments ==\n\
             3 experiments after the baseline: 2 kept, 1 discarded, 0 crashed (keep rate 66.7%)\n\
             time: "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("best: ")
            && stdout.contains("val_loss 1.000000 (baseline 1.004900, -0.004900, -0.49%)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next ideas:\n  - try a smaller learning rate"),
        "{stdout}"
    );
    // The agent got the prompt on stdin with the file and the results so far.
    let calls = target.agent_calls();
    let (_, task, prompt) = &calls[2];
    assert_eq!(task, "propose");
    assert!(
        prompt.contains("LR = 0.05") && prompt.contains("| 1 | "),
        "{prompt}"
    );
}

#[test]
fn crashes_get_fix_attempts_with_the_log_tail_then_the_fix_is_kept() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"MODE": "crash", "LR": 0.05, "description": "bold change"},
            "2": {"MODE": "crash", "LR": 0.04, "description": "fix attempt that fails"},
            "3": {"MODE": "normal", "description": "fix: back to normal mode"},
        }),
        extra: "[decision]\nfix-attempts = 2",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "4"]).assert_code(0);
    assert_eq!(
        target.results_redacted(),
        "commit\tval_loss\tmemory_gb\tstatus\tdescription\n\
         #0\t1.004900\t0.5\tkeep\tbaseline\n\
         #1\t0.000000\t0.0\tcrash\tbold change\n\
         #2\t0.000000\t0.0\tcrash\tfix attempt that fails\n\
         #3\t1.000100\t0.5\tkeep\tfix: back to normal mode\n"
    );
    let calls = target.agent_calls();
    let tasks: Vec<&str> = calls.iter().map(|(_, task, _)| task.as_str()).collect();
    assert_eq!(&tasks[..3], ["propose", "fix-crash", "fix-crash"]);
    let fix_prompt = &calls[1].2;
    assert!(
        fix_prompt.contains("RuntimeError: boom: the model exploded"),
        "{fix_prompt}"
    );
    assert!(
        fix_prompt.contains("+MODE = \"crash\""),
        "the diff is shown: {fix_prompt}"
    );
    assert!(fix_prompt.contains("fix attempt 1 of 2"), "{fix_prompt}");
    // Each fix builds on the crashed commit; the kept fix carries the whole chain.
    assert_eq!(
        target.git(&["rev-parse", "refs/arun/test/2^"]),
        target.git(&["rev-parse", "refs/arun/test/1"])
    );
    assert_eq!(target.branch_tip(), target.ref_short(3));
}

#[test]
fn crashes_are_reverted_after_the_last_fix_attempt() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"MODE": "crash"},
            "2": {"MODE": "crash", "LR": 0.2},
            "3": {"LR": 0.05, "MODE": "normal"},
        }),
        extra: "[decision]\nfix-attempts = 1",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "4"]).assert_code(0);
    let results = target.results_redacted();
    assert!(results.ends_with("#1\t0.000000\t0.0\tcrash\tset MODE crash\n#2\t0.000000\t0.0\tcrash\tset LR 0.2, MODE crash\n#3\t1.000400\t0.5\tkeep\tset LR 0.05, MODE normal\n"), "{results}");
    // Experiment 3 is a fresh proposal on top of the baseline, not a third fix.
    assert_eq!(
        target.git(&["rev-parse", "refs/arun/test/3^"]),
        target.git(&["rev-parse", "refs/arun/test/0"])
    );
    assert_eq!(target.agent_calls()[2].1, "propose");
}

#[test]
fn nan_missing_metric_and_oom_are_crashes_with_their_reason() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"MODE": "nan"},
            "2": {"MODE": "no-metric"},
            "3": {"MODE": "oom"},
            "4": {"MODE": "normal", "MEM_MB": 2048.0},
        }),
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "5"]);
    run.assert_code(0);
    // The user sees why on the terminal, not only in the journal.
    assert!(
        run.stderr()
            .contains("arun: #4 crashed: peak memory 2.0 GB is over 2x the baseline's 0.5 GB"),
        "{}",
        run.stderr()
    );
    let reasons: Vec<String> = target
        .decisions()
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    assert_eq!(reasons[1], "metric is NaN");
    assert_eq!(
        reasons[2],
        "metric `val_loss` never matched in the output; see .git/arun/test/logs/2.log"
    );
    assert_eq!(reasons[3], "out of memory (exit status 1)");
    assert_eq!(
        reasons[4],
        "peak memory 2.0 GB is over 2x the baseline's 0.5 GB"
    );
    let statuses: Vec<String> = target
        .decisions()
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(statuses, ["keep", "crash", "crash", "crash", "crash"]);
    assert_eq!(target.branch_tip(), target.ref_short(0));
}

#[test]
fn a_hanging_run_is_stopped_at_the_hard_limit() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "hang"}}),
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let results = target.results_redacted();
    assert!(
        results.ends_with("#1\t0.000000\t0.0\tcrash\tset MODE hang\n"),
        "{results}"
    );
    assert_eq!(
        target.decisions().last().unwrap().1,
        "timed out: still running at the hard limit of 4s"
    );
}

#[test]
fn sigterm_ignored_and_stdout_held_by_a_grandchild_cannot_keep_arun_waiting() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "ignore-term"}}),
        // `exec` makes the trainer itself the group leader that ignores SIGTERM.
        run: "exec python3 train.py",
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(
        target
            .results()
            .ends_with("\tcrash\tset MODE ignore-term\n")
    );
    let pids = target.forked_pids();
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "the grandchild {} survived", pids[0]);
}

#[test]
fn processes_left_behind_by_a_finished_run_are_killed() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "fork", "LR": 0.05}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(
        target
            .results()
            .ends_with("\tkeep\tset LR 0.05, MODE fork\n")
    );
    let pids = target.forked_pids();
    assert_eq!(pids.len(), 1);
    assert!(
        !alive(pids[0]),
        "the background process {} survived",
        pids[0]
    );
}

#[test]
fn a_200_mb_log_streams_to_disk_and_the_metric_after_it_is_found() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "flood", "LR": 0.05}}),
        experiment: "budget = \"20s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(
        target
            .results()
            .ends_with("\t1.000400\t0.5\tkeep\tset LR 0.05, MODE flood\n")
    );
    let size = std::fs::metadata(target.run_dir().join("logs/1.log"))
        .unwrap()
        .len();
    assert!(size > 200 * 1024 * 1024, "log is {size} bytes");
}

#[test]
fn edits_to_read_only_files_are_reverted_and_the_experiment_is_a_crash() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "also": ["edit-read-only"]}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(
        target
            .results()
            .ends_with("\t0.000000\t0.0\tcrash\tset LR 0.05\n")
    );
    assert_eq!(
        target.decisions().last().unwrap().1,
        "changed files outside the edit target: prepare.py (reverted)"
    );
    assert_eq!(
        std::fs::read_to_string(target.repo.join("prepare.py")).unwrap(),
        "\"\"\"Read-only part of the test target.\"\"\"\n\nSEQ_LEN = 128\n"
    );
    // The committed experiment holds only the editable change; no fix is attempted.
    assert_eq!(
        target.git(&[
            "diff",
            "--name-only",
            "refs/arun/test/0",
            "refs/arun/test/1"
        ]),
        "train.py"
    );
    assert_eq!(
        target.agent_calls().len(),
        2,
        "one proposal and the summary"
    );
    assert_eq!(target.status(), "");
}

#[test]
fn files_changed_or_created_outside_the_target_are_reverted() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "also": ["edit-outside"]}, "2": {"LR": 0.04}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(
        decisions[1].1,
        "changed files outside the edit target: README.md, notes/idea.txt (reverted)"
    );
    assert_eq!(decisions[2].0, "keep");
    assert_eq!(
        std::fs::read_to_string(target.repo.join("README.md")).unwrap(),
        "# test target\n"
    );
    assert!(!target.repo.join("notes").exists());
    assert_eq!(target.status(), "");
}

#[test]
fn an_agent_that_commits_or_switches_branches_is_undone_and_its_edit_kept() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05, "also": ["git-commit"]},
            "2": {"LR": 0.04, "also": ["git-checkout"]},
        }),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    let results = target.results_redacted();
    assert!(
        results.ends_with(
            "#1\t1.000400\t0.5\tkeep\tset LR 0.05\n#2\t1.000100\t0.5\tkeep\tset LR 0.04\n"
        ),
        "{results}"
    );
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    assert_eq!(target.branch_tip(), target.ref_short(2));
    // The agent's own commit is not on the run branch: each experiment's parent is the last keep.
    assert_eq!(
        target.git(&["rev-parse", "refs/arun/test/1^"]),
        target.git(&["rev-parse", "refs/arun/test/0"])
    );
    assert_eq!(
        target.git(&["rev-parse", "refs/arun/test/2^"]),
        target.git(&["rev-parse", "refs/arun/test/1"])
    );
}

#[test]
fn an_agent_that_deletes_the_run_files_cannot_lose_the_run() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04, "also": ["delete-run-files"]}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    let results = target.results_redacted();
    assert_eq!(results.lines().count(), 4, "{results}");
    assert_eq!(target.recorded().len(), 3);
}

#[test]
fn a_failing_agent_is_retried_then_the_run_stops_with_its_reason() {
    let target = Target::new(Setup {
        plan: json!({"1": {"exit": 3}}),
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "5"]);
    run.assert_code(1);
    assert!(run.stderr().contains("error: the proposer failed 2 times in a row; the last time: the agent failed (exit status 3)"), "{}", run.stderr());
    assert_eq!(target.results().lines().count(), 2, "only the baseline row");
    assert_eq!(target.status(), "");
}

#[test]
fn an_agent_that_changes_nothing_is_a_failed_proposal() {
    let target = Target::new(Setup {
        plan: json!({"1": {"nothing": true}}),
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "5"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains("the proposer changed nothing"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_crashing_baseline_stops_the_run_with_its_output() {
    // The baseline crashes: the run command points at a missing script.
    let target = Target::new(Setup {
        run: "python3 missing.py",
        ..Setup::default()
    });

    let run = target.arun(&["--max-experiments", "3"]);
    run.assert_code(1);
    assert!(
        run.stderr()
            .contains("error: the baseline crashed (exit status 2)"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("missing.py"),
        "the log tail is shown: {}",
        run.stderr()
    );
    assert!(target.results().ends_with("\tcrash\tbaseline\n"));
}

#[test]
fn a_dirty_tree_and_a_taken_branch_are_refused() {
    let target = Target::new(Setup::default());
    target.arun(&["--max-experiments", "1"]).assert_code(0);
    // A new tag on a dirty tree.
    std::fs::write(target.repo.join("train.py"), "LR = 9\n").unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg(&target.pipeline)
        .args(["--tag", "other"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("error: the target repository has uncommitted changes to tracked files: train.py; commit or stash them first"), "{stderr}");
    target.git(&["checkout", "--", "train.py"]);
    // A branch that exists without a journal.
    target.git(&["branch", "autoresearch/taken"]);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg(&target.pipeline)
        .args(["--tag", "taken"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("branch `autoresearch/taken` already exists and has no arun journal")
    );
}

#[test]
fn a_failing_preflight_check_stops_before_anything_runs() {
    let target = Target::new(Setup {
        extra: "[[preflight]]\nrun = \"test -f data/shard.bin\"\nmessage = \"data missing: run `python3 prepare.py`\"",
        ..Setup::default()
    });
    let run = target.arun(&[]);
    run.assert_code(4);
    assert!(run.stderr().contains("error: data missing: run `python3 prepare.py`\n  check: `test -f data/shard.bin` (exit status 1)"), "{}", run.stderr());
    assert!(!target.repo.join("results.tsv").exists());
}

#[test]
fn the_budget_reaches_the_experiment_and_secrets_do_not() {
    let target = Target::new(Setup {
        experiment: "budget = \"7s\"\nbuild = \"env > ../build-env.txt\"",
        ..Setup::default()
    });
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg(&target.pipeline)
        .args(["--tag", "test", "--max-experiments", "1"])
        .env("OPENAI_API_KEY", "sk-secret")
        .env("HARMLESS", "yes")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let env = std::fs::read_to_string(target.path("build-env.txt")).unwrap();
    assert!(env.contains("ARUN_BUDGET_SECONDS=7\n"), "{env}");
    assert!(env.contains("HARMLESS=yes\n"));
    assert!(!env.contains("sk-secret"), "{env}");
}

#[test]
fn the_budget_flag_overrides_the_pipelines_budget_and_hard_limit() {
    let target = Target::new(Setup {
        plan: json!({"1": {"MODE": "hang"}}),
        experiment: "budget = \"2s\"\nhard-limit = \"4s\"\ngrace = \"1s\"\nbuild = \"env > ../build-env.txt\"",
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    target
        .arun(&["--max-experiments", "2", "--budget", "1s"])
        .assert_code(0);
    let env = std::fs::read_to_string(target.path("build-env.txt")).unwrap();
    assert!(env.contains("ARUN_BUDGET_SECONDS=1\n"), "{env}");
    assert_eq!(
        target.decisions().last().unwrap().1,
        // The pipeline's 2s beyond its budget are kept: 1s + 2s.
        "timed out: still running at the hard limit of 3s"
    );
}

#[test]
fn a_zero_budget_on_the_command_line_is_a_usage_error() {
    let target = Target::new(Setup::default());
    let run = target.arun(&["--budget", "0s"]);
    run.assert_code(2);
    assert!(
        run.stderr().contains("the budget must be longer than zero"),
        "{}",
        run.stderr()
    );
    assert!(!target.repo.join("results.tsv").exists(), "nothing may run");
}

#[test]
fn builds_show_their_output_and_their_times() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04}}),
        experiment: "budget = \"2s\"\nhard-limit = \"4s\"\ngrace = \"1s\"\n\
                     build = \"echo '   Compiling trainer v0.1.0'; sleep 0.3; echo '    Finished release'\"",
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "3"]);
    run.assert_code(0);
    let log = std::fs::read_to_string(target.run_dir().join("logs/1.build.log")).unwrap();
    assert!(
        log.contains("Compiling trainer") && log.contains("Finished release"),
        "{log}"
    );
    let built: Vec<f64> = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "built")
        .map(|e| e["seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(built.len(), 3, "one build per experiment");
    assert!(built.iter().all(|s| *s >= 0.3), "{built:?}");
    assert!(
        run.stderr().contains("arun: #1: built in 0."),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout().contains("builds: 3, ") && run.stdout().contains("(outside the budget)"),
        "{}",
        run.stdout()
    );
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    target.arun_command(&["report", &pipeline]).assert_code(0);
    let page = std::fs::read_to_string(target.run_dir().join("report.html")).unwrap();
    assert!(
        page.contains("3 builds, ") && page.contains(r#"<span class="build""#),
        "{page}"
    );
}

#[test]
fn the_shipped_nanochat_build_shows_cargo_s_progress() {
    let text =
        std::fs::read_to_string(format!("{}/pipelines/nanochat.toml", common::ROOT)).unwrap();
    let build = text
        .lines()
        .find(|l| l.starts_with("build = "))
        .expect("nanochat.toml builds the trainer");
    assert!(
        !build.contains("--quiet") && !build.contains(" -q"),
        "{build}"
    );
}
