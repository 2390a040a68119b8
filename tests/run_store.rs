//! The run store: one arun per repository, each run with its own table, nothing left by a
//! refused start, stale git locks cleared, proposals never asked for twice, a resume that
//! keeps the run's settings and refuses to overwrite someone's changes, and a journal that
//! nothing but arun may change. Each test is named after what it guards (issue 12).

mod common;

use common::{Setup, Target, signal, stand_in_path, wait_for_file};
use serde_json::json;

fn hanging() -> Target {
    Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "hang-once"}, "2": {"LR": 0.04, "MODE": "normal"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    })
}

fn rows(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').skip(1).collect::<Vec<_>>().join("\t"))
        .collect()
}

#[test]
fn a_second_run_on_the_same_repository_is_refused_whatever_its_tag_or_pipeline() {
    let target = hanging();
    let mut first = target.spawn(&["--max-experiments", "3"]);
    wait_for_file(&target.path("pids.hung"));

    // Another tag, then another pipeline file naming the same repository.
    let other_tag = target.arun_command(&[target.pipeline.to_str().unwrap(), "--tag", "other"]);
    let second_pipeline = target.path("second.toml");
    std::fs::copy(&target.pipeline, &second_pipeline).unwrap();
    let other_pipeline = target.arun_command(&[second_pipeline.to_str().unwrap()]);
    for refused in [&other_tag, &other_pipeline] {
        refused.assert_code(1);
        assert!(
            refused.stderr().contains(&format!(
                "is being driven by run `test` of `{}`, arun pid {}",
                target.pipeline.display(),
                first.id()
            )),
            "{}",
            refused.stderr()
        );
    }
    assert!(
        !target.store().join("other").exists(),
        "a refused run left a directory"
    );
    assert_eq!(
        target.git(&["branch", "--list", "autoresearch/other"]),
        "",
        "a refused run left a branch"
    );
    assert_eq!(
        rows(&target.repo.join("results.tsv")).len(),
        1,
        "only the baseline"
    );

    signal(first.id(), libc::SIGINT);
    assert_eq!(first.wait().unwrap().code(), Some(130));

    // Each run keeps its own table; the work tree's shows the run driven last.
    let other = target.arun_command(&[
        target.pipeline.to_str().unwrap(),
        "--tag",
        "other",
        "--max-experiments",
        "2",
    ]);
    other.assert_code(0);
    let others = rows(&target.store().join("other/results.tsv"));
    assert_eq!(others.len(), 2);
    assert_eq!(rows(&target.repo.join("results.tsv")), others);
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    let tests = rows(&target.run_dir().join("results.tsv"));
    assert_eq!(tests.len(), 3);
    assert_eq!(rows(&target.repo.join("results.tsv")), tests);
    assert_eq!(
        rows(&target.store().join("other/results.tsv")),
        others,
        "the other run's table is intact"
    );
}

#[test]
fn a_results_table_no_run_wrote_is_moved_aside_not_overwritten() {
    let target = Target::new(Setup::default());
    target.init_repo();
    let theirs = std::fs::read_to_string(format!(
        "{}/tests/fixtures/autoresearch-mar8.tsv",
        common::ROOT
    ))
    .unwrap();
    std::fs::write(target.repo.join("results.tsv"), &theirs).unwrap();
    let run = target.arun(&["--max-experiments", "1"]);
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(target.run_dir().join("results.before.tsv")).unwrap(),
        theirs
    );
    assert!(
        run.stderr().contains("moved the previous"),
        "{}",
        run.stderr()
    );
    assert_eq!(rows(&target.repo.join("results.tsv")).len(), 1);
}

#[test]
fn a_refused_start_leaves_nothing_behind() {
    let target = Target::new(Setup::default());
    target.init_repo();
    std::fs::write(target.repo.join("README.md"), "my own notes\n").unwrap();
    let refused = target.arun(&["--max-experiments", "1"]);
    refused.assert_code(1);
    assert!(
        refused
            .stderr()
            .contains("uncommitted changes to tracked files: README.md"),
        "{}",
        refused.stderr()
    );
    assert!(
        !target.run_dir().exists(),
        "a refused start left its run directory"
    );
    assert_eq!(target.git(&["branch", "--list", "autoresearch/*"]), "");
    let resume = target.arun(&["--resume"]);
    resume.assert_code(1);
    assert!(
        resume.stderr().contains("there is no run `test` to resume"),
        "{}",
        resume.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(target.repo.join("README.md")).unwrap(),
        "my own notes\n"
    );
    target.git(&["checkout", "README.md"]);
    target.arun(&["--max-experiments", "1"]).assert_code(0);
}

#[test]
fn a_stale_git_lock_left_by_a_kill_is_removed_and_a_live_one_is_respected() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04}}),
        ..Setup::default()
    });
    let killed = target.arun_with_env(
        &["--max-experiments", "3"],
        &[("ARUN_FAILPOINT", "committed:1")],
    );
    assert_eq!(killed.code(), None);
    let lock = target.repo.join(".git/index.lock");

    // A git command still running holds its lock open: arun waits for nobody's lock but
    // never takes one away.
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, time; f = open(sys.argv[1], 'w'); print('open', flush=True); time.sleep(60)",
            lock.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let blocked = target.arun(&["--max-experiments", "3"]);
    assert_ne!(blocked.code(), Some(0), "{}", blocked.stderr());
    assert!(lock.exists(), "a lock held by a live process was removed");
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Its holder gone, the lock is stale: removed with a note, and the run goes on.
    let resumed = target.arun(&["--max-experiments", "3"]);
    resumed.assert_code(0);
    assert!(
        resumed.stderr().contains(&format!(
            "arun: removed `{}`, left by a git operation that was killed",
            lock.canonicalize().unwrap_or(lock.clone()).display()
        )) || resumed
            .stderr()
            .contains("index.lock`, left by a git operation"),
        "{}",
        resumed.stderr()
    );
    assert_eq!(rows(&target.repo.join("results.tsv")).len(), 3);
    assert_eq!(target.status(), "");
}

fn claude_target(plan: serde_json::Value) -> Target {
    Target::new(Setup {
        plan,
        proposer: common::CLAUDE_STAND_IN,
        ..Setup::default()
    })
}

fn journaled_cost(target: &Target) -> f64 {
    target
        .journal()
        .iter()
        .filter_map(|e| e["cost_usd"].as_f64())
        .sum()
}

#[test]
fn a_proposal_journaled_before_a_kill_is_committed_not_asked_for_again() {
    let target = claude_target(json!({"1": {"LR": 0.05}, "2": {"LR": 0.5}, "3": {"LR": 0.03}}));
    let path = stand_in_path(&target);
    let killed = target.arun_with_env(
        &["--max-experiments", "4"],
        &[("PATH", &path), ("ARUN_FAILPOINT", "proposed:2")],
    );
    assert_eq!(killed.code(), None);
    // The edit was in the work tree when arun died; someone cleaning up changes nothing.
    target.git(&["checkout", "train.py"]);
    let resumed = target.arun_with_env(&["--max-experiments", "4"], &[("PATH", &path)]);
    resumed.assert_code(0);
    let calls = common::call_records(&target);
    assert_eq!(
        calls.iter().filter(|c| c["n"] == 2).count(),
        1,
        "experiment 2 was proposed (and paid for) twice"
    );
    assert!(
        target
            .results()
            .contains("\t1.220900\t0.5\tdiscard\tset LR 0.5\n"),
        "{}",
        target.results()
    );
    assert!((journaled_cost(&target) - 0.15).abs() < 1e-9);
    assert!(
        resumed.stdout().contains("proposer cost: $0.15"),
        "{}",
        resumed.stdout()
    );
}

#[test]
fn a_failed_proposal_still_counts_its_cost() {
    let target = claude_target(json!({"1": {"fail": "the model is overloaded", "cost": 0.5}}));
    let path = stand_in_path(&target);
    let run = target.arun_with_env(&["--max-experiments", "3"], &[("PATH", &path)]);
    run.assert_code(1);
    let failed: Vec<f64> = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "proposal-failed")
        .map(|e| e["cost_usd"].as_f64().unwrap())
        .collect();
    assert_eq!(failed, [0.5, 0.5]);
    assert!(
        run.stdout().contains("proposer cost: $1.00"),
        "{}",
        run.stdout()
    );
}

#[test]
fn a_resume_refuses_uncommitted_changes_it_did_not_make() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    std::fs::write(
        target.repo.join("README.md"),
        "edited while the run was stopped\n",
    )
    .unwrap();
    let refused = target.arun(&["--max-experiments", "3"]);
    refused.assert_code(1);
    assert!(
        refused.stderr().contains(
            "uncommitted changes to tracked files: README.md; resuming would overwrite them"
        ),
        "{}",
        refused.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(target.repo.join("README.md")).unwrap(),
        "edited while the run was stopped\n"
    );
    target.git(&["checkout", "README.md"]);
    target.arun(&["--max-experiments", "3"]).assert_code(0);
}

#[test]
fn a_resume_discards_what_a_killed_proposal_left_in_the_editable_files() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.5, "kill-arun-once": true}}),
        ..Setup::default()
    });
    let killed = target.arun(&["--max-experiments", "3"]);
    assert_eq!(killed.code(), None);
    // The agent finished its edit after arun died.
    std::thread::sleep(std::time::Duration::from_millis(800));
    let resumed = target.arun(&["--max-experiments", "3"]);
    resumed.assert_code(0);
    assert!(
        resumed
            .stderr()
            .contains("arun: discarding what the interrupted experiment left in train.py"),
        "{}",
        resumed.stderr()
    );
    assert_eq!(rows(&target.repo.join("results.tsv")).len(), 3);
}

#[test]
fn the_journal_is_out_of_the_work_tree_and_a_changed_journal_is_restored_and_counted() {
    let journal = ".git/arun/test/journal.jsonl";
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.5},
            "2": {"LR": 0.05, "run": [format!("sed -i 's/\"discard\"/\"keep\"/' {journal}")]},
            "3": {"LR": 0.04, "MODE": "tamper-journal"},
            "4": {"LR": 0.03, "MODE": "normal"},
        }),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "5"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(decisions[1].0, "discard", "#1 stays discarded");
    assert_eq!(decisions[2].0, "crash");
    assert!(
        decisions[2].1.contains("the run's journal"),
        "{}",
        decisions[2].1
    );
    assert_eq!(decisions[3].0, "crash");
    assert!(
        decisions[3].1.contains("the run changed the run's journal"),
        "{}",
        decisions[3].1
    );
    assert_eq!(decisions[4].0, "keep");
    // The run's files are in the git directory: the work tree holds only the results view.
    assert_eq!(
        target.git(&["status", "--porcelain", "--ignored"]),
        "!! results.tsv"
    );
}

#[test]
fn a_resume_keeps_the_budget_the_run_started_with() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04}}),
        experiment: "budget = \"5s\"\nhard-limit = \"10s\"\ngrace = \"1s\"\n\
                     build = \"echo $ARUN_BUDGET_SECONDS >> ../budgets\"",
        ..Setup::default()
    });
    target
        .arun(&["--max-experiments", "1", "--budget", "1s"])
        .assert_code(0);
    let resumed = target.arun(&["--max-experiments", "2"]);
    resumed.assert_code(0);
    assert!(
        resumed.stderr().contains(
            "run `test` keeps the budget it started with, 1s (hard limit 6s); the pipeline now \
             says 5s (10s)"
        ),
        "{}",
        resumed.stderr()
    );
    let budgets = std::fs::read_to_string(target.path("budgets")).unwrap();
    assert_eq!(budgets, "1\n1\n", "every build saw the run's budget");

    let refused = target.arun(&["--max-experiments", "3", "--budget", "2s"]);
    refused.assert_code(1);
    assert!(
        refused.stderr().contains(
            "run `test` runs its experiments with a budget of 1s; resuming it with `--budget 2s`"
        ) && refused.stderr().contains("--tag <new-tag> --budget 2s"),
        "{}",
        refused.stderr()
    );
    // The report shows the budget the run uses.
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    target
        .arun_command(&[
            "report",
            &pipeline,
            "-o",
            target.path("page.html").to_str().unwrap(),
        ])
        .assert_code(0);
    let page = std::fs::read_to_string(target.path("page.html")).unwrap();
    assert!(page.contains("1s budget per experiment"), "{page}");
}

#[test]
fn the_summary_and_status_count_alike() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.5}, "3": {"MODE": "crash"}}),
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "4"]);
    run.assert_code(0);
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let status = target.arun_command(&["status", &pipeline]).stdout();
    let counts =
        "3 experiments after the baseline: 1 kept, 1 discarded, 1 crashed (keep rate 33.3%)";
    assert!(
        run.stdout().contains(&format!("\n{counts}\n")),
        "{}",
        run.stdout()
    );
    assert!(
        status.contains(&format!("  counts  {counts}\n")),
        "{status}"
    );
}

#[test]
fn a_run_an_older_arun_kept_in_the_work_tree_moves_into_the_store_and_resumes() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.04}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    // What an older arun left: the run in `.arun/<tag>`, a journal without the fields this one
    // writes, `.arun/` excluded, and the user's own untracked file beside it.
    let legacy = target.repo.join(".arun/test");
    std::fs::create_dir_all(target.repo.join(".arun")).unwrap();
    std::fs::rename(target.run_dir(), &legacy).unwrap();
    let journal: Vec<String> = std::fs::read_to_string(legacy.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in ["settings", "untracked", "files", "undo", "undone"] {
                event.as_object_mut().unwrap().remove(field);
            }
            event.to_string()
        })
        .collect();
    std::fs::write(legacy.join("journal.jsonl"), journal.join("\n") + "\n").unwrap();
    let exclude = target.repo.join(".git/info/exclude");
    let text = std::fs::read_to_string(&exclude).unwrap();
    std::fs::write(&exclude, format!("{text}/.arun/\n")).unwrap();
    std::fs::write(target.repo.join("notes.md"), "mine\n").unwrap();

    let resumed = target.arun(&["--max-experiments", "3"]);
    resumed.assert_code(0);
    assert!(
        resumed.stderr().contains("arun: moved `"),
        "{}",
        resumed.stderr()
    );
    assert!(!target.repo.join(".arun/test").exists());
    assert!(target.run_dir().join("journal.jsonl").is_file());
    assert_eq!(rows(&target.repo.join("results.tsv")).len(), 3);
    assert_eq!(
        std::fs::read_to_string(target.repo.join("notes.md")).unwrap(),
        "mine\n",
        "the user's untracked file was moved or deleted"
    );
}
