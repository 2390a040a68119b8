//! What a run leaves a person to take away, through the real binary: the tree printed in the
//! summary when a tree search stops, and `arun best` (the best experiment's files, its diff from
//! the baseline, `SUMMARY.md`) for a tree search, a greedy run, a run still being driven, and
//! inputs that hold no run.

mod common;

use std::path::{Path, PathBuf};

use common::{Setup, Target};
use serde_json::json;

/// The scripted research agent of `tests/tree_search.rs`, on the deceptive ideas landscape.
const IDEA_AGENT: &str = r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 2

[proposer.agent]
command = "python3 {root}/tests/scripts/idea_agent.py"
env = { PLAN = "{plan}" }
"#;

const TREE: &str = "[search]\nstrategy = \"tree\"\ndrafts = 2\npatience = 2";

fn ideas(search: &'static str) -> Target {
    Target::new(Setup {
        template: "ideas-trainer",
        plan: json!({}),
        proposer: IDEA_AGENT,
        extra: Box::leak(
            format!("[decision.noise]\nbaseline-runs = 1\n\n{search}").into_boxed_str(),
        ),
        ..Setup::default()
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// `arun best ARGS`, run in the test's directory; the directory it printed.
fn best(target: &Target, args: &[&str]) -> (common::Run, PathBuf) {
    let mut all = vec!["best"];
    all.extend_from_slice(args);
    let run = target.arun_command(&all);
    let dir = PathBuf::from(run.stdout().trim());
    (run, dir)
}

#[test]
fn a_tree_search_prints_its_tree_and_best_takes_away_b_then_c() {
    let target = ideas(TREE);
    let run = target.arun(&["--max-experiments", "8"]);
    run.assert_code(0);
    let stdout = run.stdout();
    let summary = &stdout[stdout.find("== arun run").expect("a summary")..];

    // The tree: `a` drafted first and a dead end after two failures, the best path through `b`
    // to `c` marked.
    for line in [
        "  ├─ #1 keep 0.900000 -0.100000 add idea a [draft, dead end]",
        "  │  ├─ #3 discard 1.050000 +0.150000 add idea b",
        "  │  └─ #4 discard 0.930000 +0.030000 add idea c",
        "* └─ #2 keep 0.950000 -0.050000 add idea b [draft]",
        "*    └─ #6 keep 0.700000 -0.250000 add idea c [best]",
    ] {
        assert!(
            summary.lines().any(|l| l == line),
            "no `{line}` in:\n{summary}"
        );
    }
    insta::with_settings!({filters => vec![
        (r"\b[0-9a-f]{7}\b", "[commit]"),
        (r"time: .* driving the run", "time: [time] driving the run"),
    ]}, {
        insta::assert_snapshot!(summary);
    });

    // `arun best` writes the best node's code, not the last keep's.
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let (written, dir) = best(&target, &[&pipeline]);
    written.assert_code(0);
    assert_eq!(dir, target.run_dir().join("best"));
    assert!(read(&dir.join("train.py")).contains("IDEAS = \"b,c\""));
    assert_eq!(
        read(&dir.join("train.py")),
        target.git(&["show", "refs/arun/test/6:train.py"]) + "\n"
    );
    let diff = read(&dir.join("best.diff"));
    assert!(
        diff.contains("-IDEAS = \"\"\n+IDEAS = \"b,c\"\n"),
        "the change from the baseline:\n{diff}"
    );
    let text = read(&dir.join("SUMMARY.md"));
    for expected in [
        "# The best of run `test`: val_loss 0.700000",
        "-0.300000 against the baseline, 30.00% better (lower is better).",
        "| 2 | 0.950000 | -0.050000 | add idea b |",
        "| 6 | 0.700000 | -0.250000 | add idea c |",
        "- #1 add idea a, from #0: best 0.900000 at #1; 1 node, 2 tried below without \
         improving; a dead end",
        "| add idea a | 2 | 2 | 0 | 1.050000 (#5) | +0.100000 |",
        "7 experiments after the baseline: 3 kept, 4 discarded, 0 crashed",
        "Search: tree (drafts 2, patience 2): 4 nodes, 2 branches from the baseline, 1 dead end, \
         2 drafts.",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
    // Reading the run changed nothing in it.
    assert_eq!(target.status(), "");
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));

    // The same from the run directory, into a directory of one's own; a second time replaces
    // the default directory's files.
    let elsewhere = target.path("solution");
    let run_dir = target.run_dir().to_str().unwrap().to_string();
    let (again, dir) = best(&target, &[&run_dir, "-o", elsewhere.to_str().unwrap()]);
    again.assert_code(0);
    assert_eq!(dir, elsewhere);
    assert!(read(&elsewhere.join("train.py")).contains("IDEAS = \"b,c\""));
    std::fs::write(target.run_dir().join("best/stale.txt"), "old").unwrap();
    best(&target, &[&pipeline]).0.assert_code(0);
    assert!(!target.run_dir().join("best/stale.txt").exists());

    // A directory in the work tree, where a run removes files it did not make, is refused.
    let inside = target.repo.join("solution");
    let (refused, _) = best(&target, &[&pipeline, "-o", inside.to_str().unwrap()]);
    refused.assert_code(1);
    assert!(
        refused.stderr().contains("is inside the work tree of"),
        "{}",
        refused.stderr()
    );
    assert!(!inside.exists());
}

#[test]
fn a_greedy_run_takes_away_the_last_keep_of_its_chain() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05},
            "2": {"LR": 0.5, "description": "much larger LR"},
            "3": {"MODE": "crash", "LR": 0.04, "description": "bold change"},
            "4": {"MODE": "normal", "description": "fix: back to normal mode"},
            "5": {"LR": 0.5, "description": "much larger LR"},
        }),
        extra: "[decision]\nfix-attempts = 1",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "6"]).assert_code(0);
    // Named by its repository: the latest run there.
    let repo = target.repo.to_str().unwrap().to_string();
    let (run, dir) = best(&target, &[&repo]);
    run.assert_code(0);
    assert_eq!(dir, target.run_dir().join("best"));

    // The chain's last keep is the fix of the crash: the code the branch holds.
    assert_eq!(
        read(&dir.join("train.py")),
        target.git(&["show", "autoresearch/test:train.py"]) + "\n"
    );
    let diff = read(&dir.join("best.diff"));
    assert!(
        diff.contains("-LR = 0.1\n+LR = 0.04\n"),
        "the change from the baseline, the discarded ones left out:\n{diff}"
    );
    assert!(!diff.contains("0.5"), "{diff}");
    let text = read(&dir.join("SUMMARY.md"));
    for expected in [
        "Search: greedy, each experiment on the best so far.",
        "| 1 | 1.000400 | -0.004500 | set LR 0.05 |",
        "| 4 | 1.000100 | -0.000300 | fix: back to normal mode (fixing #3: bold change) |",
        "| much larger LR | 2 | 2 | 0 | 1.220900 (#2) | +0.220500 |",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
    assert!(!text.contains("Branches off the best path"), "{text}");
}

#[test]
fn best_reads_a_run_while_another_arun_drives_it() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "hang-once", "description": "try a hanging change"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    let mut child = target.spawn(&["--max-experiments", "3"]);
    common::wait_for_file(&target.path("pids.hung"));
    let pipeline = target.pipeline.to_str().unwrap().to_string();

    let (run, dir) = best(&target, &[&pipeline]);
    run.assert_code(0);
    assert_eq!(
        run.stderr(),
        "note: no experiment improved on the baseline: the files are the baseline's\n"
    );
    // The baseline's code, while the work tree holds the experiment that runs.
    assert!(read(&dir.join("train.py")).contains("LR = 0.1\n"));
    assert!(read(&target.repo.join("train.py")).contains("LR = 0.05\n"));
    assert_eq!(read(&dir.join("best.diff")), "");
    let text = read(&dir.join("SUMMARY.md"));
    assert!(
        text.contains("The run was still going when this was written"),
        "{text}"
    );
    assert!(text.contains("No kept step: nothing improved on the baseline."));

    // The run goes on, its lock untouched, and stops as usual.
    assert!(common::alive(child.id() as i32));
    common::signal(child.id(), libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(target.status(), "");
}

#[test]
fn best_says_when_there_is_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let arun = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_arun"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        common::Run { output }
    };
    let run = arun(&["best"]);
    run.assert_code(1);
    assert!(
        run.stderr().starts_with("error: there is no run in `.`"),
        "{}",
        run.stderr()
    );
    std::fs::write(
        dir.path().join("results.tsv"),
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t1.0\t1.0\tkeep\tbaseline\n",
    )
    .unwrap();
    let run = arun(&["best", "results.tsv"]);
    run.assert_code(1);
    assert_eq!(
        run.stderr(),
        "error: `results.tsv` is a results table without a journal; `arun best` needs a run \
         made by arun (its `.git/arun/<tag>/journal.jsonl` and `refs/arun/<tag>/<n>`)\n"
    );
    let run = arun(&["best", "--tag", "nov22", "-o"]);
    run.assert_code(2);

    // A run whose baseline crashed has no result at all.
    let target = Target::new(Setup {
        run: "exit 3",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(1);
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let (run, _) = best(&target, &[&pipeline]);
    run.assert_code(1);
    assert_eq!(
        run.stderr(),
        "error: the run `test` has no kept baseline yet, so no result to write; `arun status` \
         shows where it stands\n"
    );
    let (run, _) = best(&target, &[&pipeline, "--tag", "other"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains("there is no run `other` in"),
        "{}",
        run.stderr()
    );
}
