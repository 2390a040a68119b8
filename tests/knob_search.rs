//! The built-in knob search end to end: the real binary edits knobs in a Python file and a Rust
//! file of a real git repository, runs a scripted trainer whose loss is a known function of them,
//! converges towards the optimum, and continues the same search after being killed.

mod common;

use std::path::Path;

use common::{ROOT, Target};

/// The scripted trainer of `tests/fixtures/knobs`: loss 1.0 at the optimum, 1.47 at the start.
const OPTIMUM: f64 = 1.0;
const BASELINE: f64 = 1.47;

/// Every knob of the fixture, two in train.py and three in config.rs.
const ALL_KNOBS: &str = r#"
[[knob]]
name = "LR"
file = "train.py"
kind = "float"
min = 0.0001
max = 1.0

[[knob]]
name = "WARMUP"
file = "train.py"
kind = "float"
scale = "linear"
min = 0.0
max = 0.5

[[knob]]
name = "DEPTH"
file = "config.rs"
kind = "int"
min = 2
max = 16

[[knob]]
name = "BATCH_SIZE"
file = "config.rs"
kind = "pow2"
min = 8
max = 512

[[knob]]
name = "ACTIVATION"
file = "config.rs"
kind = "choice"
choices = ['"relu"', '"gelu"', '"silu"']
"#;

fn knob_target() -> Target {
    target_with(ALL_KNOBS)
}

/// The fixture's repository with these `[[knob]]` declarations.
fn target_with(knobs: &str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[target]
repo = "repo"
template = "{ROOT}/tests/fixtures/knobs"
editable = ["train.py", "config.rs"]

[experiment]
run = "python3 train.py"
budget = "5s"
grace = "1s"

[metric]
name = "val_loss"
regex = '^val_loss:\s*([0-9.]+)'

[decision]
fix-attempts = 0

[proposer]
kind = "knobs"
{knobs}"#
        ),
    )
    .unwrap();
    let repo = dir.path().join("repo");
    Target {
        dir,
        pipeline,
        repo,
    }
}

/// Each recorded experiment's (status, metric, description) from results.tsv.
fn rows(target: &Target) -> Vec<(String, f64, String)> {
    target
        .results()
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (
                fields[3].to_string(),
                fields[1].parse().unwrap(),
                fields[4].to_string(),
            )
        })
        .collect()
}

/// `text` with the value of each knob assignment replaced by `<v>`: what must never change.
fn skeleton(text: &str) -> String {
    let value = regex::Regex::new(
        r"(?m)^((?:pub )?(?:const )?(?:LR|WARMUP|DEPTH|BATCH_SIZE|ACTIVATION)(?:: [^=]+)? = )([^;#\n]+?)(;|  #|$)",
    )
    .unwrap();
    value.replace_all(text, "${1}<v>${3}").into_owned()
}

#[test]
fn edits_only_the_values_in_python_and_rust_files_and_converges() {
    let target = knob_target();
    let run = target.arun(&["--max-experiments", "30"]);
    run.assert_code(0);
    let rows = rows(&target);
    assert_eq!(rows.len(), 30);
    assert_eq!(rows[0].2, "baseline");
    assert!((rows[0].1 - BASELINE).abs() < 1e-6, "{rows:?}");

    // Descriptions are the edits in words, against the best kept assignment, each value as the
    // file writes it.
    let change = regex::Regex::new(
        r#"^(LR|WARMUP) [0-9.]+ -> [0-9.]+$|^DEPTH \d+ -> \d+$|^BATCH_SIZE 1 << \d+ -> 1 << \d+$|^ACTIVATION "\w+" -> "\w+"$"#,
    )
    .unwrap();
    for (_, _, text) in &rows[1..] {
        assert!(text.split(", ").all(|part| change.is_match(part)), "{text}");
    }
    // DEPTH above 12 runs out of memory: those are crashes, and the search learns from them.
    let crashes = rows.iter().filter(|r| r.0 == "crash").count();
    assert!(crashes < 10, "{rows:#?}");

    // Converged: within 0.02 of the optimum, from 0.47 above it.
    let best = rows
        .iter()
        .filter(|r| r.0 == "keep")
        .map(|r| r.1)
        .fold(f64::INFINITY, f64::min);
    assert!(
        best - OPTIMUM < 0.02,
        "best {best} after 30 experiments: {rows:#?}"
    );

    // Every commit changed the values and nothing else, in both files: comments, alignment and
    // the rest of each file are byte for byte the template's.
    let template = Path::new(ROOT).join("tests/fixtures/knobs");
    for file in ["train.py", "config.rs"] {
        let original = std::fs::read_to_string(template.join(file)).unwrap();
        for n in 0..30 {
            let text = target.git(&["show", &format!("refs/arun/test/{n}:{file}")]);
            assert_eq!(
                skeleton(&format!("{text}\n")),
                skeleton(&original),
                "{file} at #{n}"
            );
        }
    }
    let config = std::fs::read_to_string(target.repo.join("config.rs")).unwrap();
    assert!(
        regex::Regex::new(r"(?m)^pub const BATCH_SIZE: usize = 1 << \d+;$")
            .unwrap()
            .is_match(&config),
        "{config}"
    );
    assert!(
        regex::Regex::new(r#"(?m)^const ACTIVATION: &str = "(relu|gelu|silu)"; // "gelu" and"#)
            .unwrap()
            .is_match(&config),
        "{config}"
    );

    // The journal holds each assignment; the summary's next ideas come from the search.
    let proposed: Vec<serde_json::Value> = target
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "proposed")
        .collect();
    assert_eq!(proposed.len(), 29);
    assert!(proposed[0]["details"]["knobs"]["DEPTH"].is_u64());
    let stdout = run.stdout();
    let ideas = stdout.split("next ideas:\n").nth(1).unwrap_or_default();
    assert!(ideas.starts_with("  - "), "{stdout}");
}

#[test]
fn a_resumed_search_proposes_exactly_what_an_uninterrupted_one_would() {
    let straight = knob_target();
    straight.arun(&["--max-experiments", "14"]).assert_code(0);

    let killed = knob_target();
    // Killed after proposing (the proposal is made again), then after measuring.
    for failpoint in ["proposed:6", "measured:10"] {
        let run = killed.arun_with_env(
            &["--max-experiments", "14"],
            &[("ARUN_FAILPOINT", failpoint)],
        );
        assert_eq!(run.code(), None, "killed by SIGKILL: {}", run.stderr());
    }
    killed.arun(&["--max-experiments", "14"]).assert_code(0);

    let descriptions = |t: &Target| -> Vec<String> { rows(t).into_iter().map(|r| r.2).collect() };
    assert_eq!(descriptions(&killed), descriptions(&straight));
    assert_eq!(rows(&killed).len(), 14);
}

#[test]
fn the_example_pipeline_runs_offline_and_converges() {
    // A copy, so that the run's repository lands in a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(pipelines.join("example")).unwrap();
    let shipped = Path::new(ROOT).join("pipelines");
    std::fs::copy(shipped.join("example.toml"), pipelines.join("example.toml")).unwrap();
    for file in ["train.py", "prepare.py"] {
        std::fs::copy(
            shipped.join("example").join(file),
            pipelines.join("example").join(file),
        )
        .unwrap();
    }
    let target = Target {
        pipeline: pipelines.join("example.toml"),
        repo: dir.path().join("runs/example"),
        dir,
    };
    let run = target.arun(&[]);
    run.assert_code(0);
    let rows = rows(&target);
    assert_eq!(rows.len(), 20, "the pipeline's limit");
    let best = rows
        .iter()
        .filter(|r| r.0 == "keep")
        .map(|r| r.1)
        .fold(f64::INFINITY, f64::min);
    // The optimum is 1.0 (LEARNING_RATE 0.03, DEPTH 6, WARMUP_RATIO 0.1); the baseline 2.27.
    assert!(best < 1.02, "best {best}: {rows:#?}");
}

#[test]
fn the_run_stops_when_every_assignment_has_been_tried() {
    let target = target_with(
        r#"
[[knob]]
name = "DEPTH"
file = "config.rs"
kind = "int"
min = 3
max = 4

[[knob]]
name = "ACTIVATION"
file = "config.rs"
kind = "choice"
choices = ['"relu"', '"gelu"']
"#,
    );
    let run = target.arun(&[]);
    run.assert_code(0);
    let rows = rows(&target);
    assert_eq!(
        rows.len(),
        4,
        "the baseline and the three other assignments"
    );
    let mut seen: Vec<String> = rows[1..].iter().map(|r| r.2.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "{rows:#?}");
    assert!(
        run.stdout()
            .contains("every assignment of the 2 knobs has been tried ==\n3 experiments after"),
        "{}",
        run.stdout()
    );
}
