//! Decisions users can trust, end to end: noise measured from repeated runs with their own
//! seeds, confirmation runs, the simplicity rule and the held-out check.

mod common;

use common::{Setup, Target};
use serde_json::json;

#[test]
fn the_baseline_repeats_with_seeds_and_keeps_need_more_than_the_noise() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05, "description": "clear improvement"},
            "2": {"LR": 0.045, "description": "tiny improvement"},
        }),
        env: "NOISE_SD = \"0.001\"",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "3"]).assert_code(0);
    // Three baseline runs with seeds 0, 1, 2; the candidate that beats the noise is confirmed
    // by a second run; the tiny one is judged on its first run.
    let runs: Vec<(u64, u64)> = target.measured().iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(runs, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]);
    let seeds: Vec<String> = ["0.log", "0.r1.log", "0.r2.log"]
        .iter()
        .map(|log| {
            let text = std::fs::read_to_string(target.run_dir().join("logs").join(log)).unwrap();
            text.lines()
                .find(|l| l.starts_with("seed:"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(seeds, ["seed: 0", "seed: 1", "seed: 2"]);

    let decisions = target.decisions();
    assert!(
        decisions[1].1.starts_with("kept: -0.00"),
        "{:?}",
        decisions[1]
    );
    assert!(
        decisions[1].1.contains("(mean of 2 runs) > 2σ=0.00"),
        "{:?}",
        decisions[1]
    );
    // -0.000175 truly, -0.000348 measured against the best's mean: inside the noise.
    assert_eq!(
        decisions[2].1,
        "discarded: -0.000348 within noise 2σ=0.001220"
    );
    // results.tsv shows each experiment's mean.
    let measured = target.measured();
    let mean = |n| {
        let values: Vec<f64> = measured
            .iter()
            .filter(|m| m.0 == n)
            .filter_map(|m| m.2)
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let rows: Vec<String> = target
        .results()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        rows,
        [
            format!("{:.6}", mean(0)),
            format!("{:.6}", mean(1)),
            format!("{:.6}", mean(2))
        ]
    );
}

#[test]
fn deterministic_code_needs_no_confirmation() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}}),
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let runs: Vec<(u64, u64)> = target.measured().iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(runs, [(0, 0), (0, 1), (0, 2), (1, 0)]);
    assert_eq!(
        target.decisions()[1].1,
        "kept: -0.004500 improves on the best 1.004900"
    );
}

#[test]
fn the_simplicity_rule_weighs_lines_against_the_gain() {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05, "also": ["add-lines"], "description": "small gain, 30 more lines"},
            "2": {"also": ["remove-padding"], "description": "remove the padding"},
            "3": {"LR": 0.03, "also": ["add-lines"], "description": "large gain, 30 more lines"},
        }),
        extra: "[decision.simplicity]\nmax-added-lines = 20\nlarge-improvement = 0.0045",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "4"]).assert_code(0);
    let decisions = target.decisions();
    assert_eq!(
        decisions[1],
        (
            "discard".to_string(),
            "discarded: +30 lines for -0.004500".to_string()
        )
    );
    assert_eq!(
        decisions[2],
        (
            "keep".to_string(),
            "kept: simpler (-5 lines) at +0.000000, within the minimum improvement 0".to_string()
        )
    );
    assert_eq!(
        decisions[3],
        (
            "keep".to_string(),
            "kept: -0.004900 improves on the best 1.004900".to_string()
        )
    );
}

#[test]
fn the_held_out_check_runs_on_every_new_best_and_the_proposer_never_sees_it() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}, "2": {"LR": 0.5}}),
        extra: "[decision.held-out]\nrun = \"HELD_OUT=1 python3 train.py\"\nname = \"test_loss\"\nregex = '^test_loss:\\s*([0-9.]+)'",
        ..Setup::default()
    });
    let run = target.arun(&["--max-experiments", "3"]);
    run.assert_code(0);
    let held_out: Vec<(u64, f64)> = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "held-out")
        .map(|e| (e["n"].as_u64().unwrap(), e["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(held_out, [(0, 1.0149), (1, 1.0104)]);
    assert!(
        run.stdout().contains("held-out test_loss 1.010400"),
        "{}",
        run.stdout()
    );
    for (_, _, prompt) in target.agent_calls() {
        assert!(
            !prompt.contains("1.014900") && !prompt.contains("1.010400"),
            "a held-out value leaked into a prompt"
        );
    }
}

#[test]
fn a_run_killed_between_repeats_resumes_with_the_next_repeat() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05}}),
        env: "NOISE_SD = \"0.001\"",
        ..Setup::default()
    });
    let killed = target.arun_with_env(
        &["--max-experiments", "2"],
        &[("ARUN_FAILPOINT", "measured:0")],
    );
    assert_eq!(killed.code(), None);
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    let runs: Vec<(u64, u64)> = target.measured().iter().map(|(n, r, _)| (*n, *r)).collect();
    assert_eq!(runs, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]);
}
