//! The tree search in real loops: a scripted research agent (`tests/scripts/idea_agent.py`)
//! adds one idea per experiment to a trainer whose metric has a local optimum
//! (`tests/fixtures/ideas-trainer`): idea `a` is the best first step but blocks `b`, and `c` pays
//! off only on top of `b`. Greedy takes `a` and stays there; the tree drafts `a` and `b`, finds
//! `a`'s children failing, backtracks to `b` and finds `b` + `c`.

mod common;

use common::{Setup, Target};
use serde_json::json;

const AGENT: &str = r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 2

[proposer.agent]
command = "python3 {root}/tests/scripts/idea_agent.py"
env = { PLAN = "{plan}" }
"#;

fn target(search: &'static str) -> Target {
    Target::new(Setup {
        template: "ideas-trainer",
        plan: json!({}),
        proposer: AGENT,
        extra: Box::leak(
            format!("[decision.noise]\nbaseline-runs = 1\n\n{search}").into_boxed_str(),
        ),
        ..Setup::default()
    })
}

const TREE: &str = "[search]\nstrategy = \"tree\"\ndrafts = 2\npatience = 2\nexploration = 0.3";

/// Results rows after the header: (metric, status, description).
fn rows(target: &Target) -> Vec<(String, String, String)> {
    target
        .results()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].to_string(), f[3].to_string(), f[4].to_string())
        })
        .collect()
}

fn parents(target: &Target) -> Vec<Option<u64>> {
    target
        .journal()
        .iter()
        .filter(|e| e["event"] == "experiment-started")
        .map(|e| e["parent"].as_u64())
        .collect()
}

#[test]
fn greedy_stays_on_the_local_optimum() {
    let target = target("");
    target.arun(&["--max-experiments", "8"]).assert_code(0);
    let best = rows(&target)
        .iter()
        .filter(|r| r.1 == "keep")
        .map(|r| r.0.parse::<f64>().unwrap())
        .fold(f64::MAX, f64::min);
    assert_eq!(best, 0.9, "{:#?}", rows(&target));
    assert!(
        target.train_py().contains("IDEAS = \"a\""),
        "{}",
        target.train_py()
    );
}

#[test]
fn the_tree_backtracks_from_the_dead_end_and_finds_the_better_branch() {
    let target = target(TREE);
    let run = target.arun(&["--max-experiments", "8"]);
    run.assert_code(0);
    let rows = rows(&target);
    let found: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(m, s, d)| (m.as_str(), s.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        found[..7],
        [
            ("1.000000", "keep", "baseline"),
            ("0.900000", "keep", "add idea a"),
            ("0.950000", "keep", "add idea b"),
            ("1.050000", "discard", "add idea b"),
            ("0.930000", "discard", "add idea c"),
            ("1.050000", "discard", "add idea a"),
            ("0.700000", "keep", "add idea c"),
        ],
        "{rows:#?}"
    );
    // Drafts from the baseline, #1 expanded until it is a dead end, then #2.
    assert_eq!(
        parents(&target)[..7],
        [None, Some(0), Some(0), Some(1), Some(1), Some(2), Some(2)]
    );
    // The branch holds the best node: b then c, whatever was tried after it.
    assert!(
        target
            .git(&["show", "autoresearch/test:train.py"])
            .contains("IDEAS = \"b,c\""),
        "{}",
        target.git(&["show", "autoresearch/test:train.py"])
    );
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    assert_eq!(target.status(), "");
    let decisions = target.decisions();
    assert!(
        decisions[6].1.contains("improves on its parent 0.950000")
            || decisions[6].1.starts_with("kept: -0.250000"),
        "{}",
        decisions[6].1
    );

    // What the agent was told: a draft knows the other drafts, an expansion its path and what
    // was already tried from its node.
    let calls = common::call_records(&target);
    let prompt = |n: u64| {
        calls
            .iter()
            .find(|c| c["n"] == n && c["task"] == "propose")
            .unwrap()["prompt"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let second_draft = prompt(2);
    assert!(second_draft.contains("This is a draft"), "{second_draft}");
    assert!(
        second_draft.contains("- #1 keep 0.900000: add idea a"),
        "{second_draft}"
    );
    let expansion = prompt(6);
    assert!(
        expansion.contains("This experiment builds on #2")
            && expansion.contains("- #2 val_loss 0.950000 (-0.050000): add idea b")
            && expansion.contains("Already tried from #2:\n- #5 discard 1.050000: add idea a"),
        "{expansion}"
    );
}

#[test]
fn a_resumed_tree_search_makes_the_same_choices() {
    let straight = target(TREE);
    straight.arun(&["--max-experiments", "8"]).assert_code(0);
    for point in [
        "experiment-started:3",
        "experiment-started:5",
        "proposed:5",
        "committed:6",
        "decided:6",
        "recorded:6",
    ] {
        let killed = target(TREE);
        let first = killed.arun_with_env(&["--max-experiments", "8"], &[("ARUN_FAILPOINT", point)]);
        assert_eq!(first.code(), None, "{point}");
        killed.arun(&["--max-experiments", "8"]).assert_code(0);
        assert_eq!(rows(&killed), rows(&straight), "{point}");
        assert_eq!(parents(&killed), parents(&straight), "{point}");
        assert_eq!(
            killed.git(&["rev-parse", "autoresearch/test:train.py"]),
            straight.git(&["rev-parse", "autoresearch/test:train.py"]),
            "{point}: the branch holds another node"
        );
    }
}

#[test]
fn search_settings_only_for_the_tree_are_refused_with_greedy() {
    let target = target("[search]\ndrafts = 4");
    let run = target.arun(&["--max-experiments", "1"]);
    run.assert_code(3);
    assert!(
        run.stderr()
            .contains("search.drafts: `drafts` applies to the tree search only"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_resumed_run_keeps_its_search_strategy() {
    let straight = target(TREE);
    straight.arun(&["--max-experiments", "8"]).assert_code(0);
    let resumed = target(TREE);
    resumed.arun(&["--max-experiments", "4"]).assert_code(0);
    let text = std::fs::read_to_string(&resumed.pipeline).unwrap();
    std::fs::write(&resumed.pipeline, text.replace(TREE, "")).unwrap();
    let run = resumed.arun(&["--max-experiments", "8"]);
    run.assert_code(0);
    assert!(
        run.stderr().contains(
            "run `test` keeps the search it started with, tree (drafts 2, patience 2, \
             exploration 0.3); the pipeline now says greedy"
        ),
        "{}",
        run.stderr()
    );
    assert_eq!(parents(&resumed), parents(&straight));
}
