//! Which way a results table's metric goes when no run settings say: the user's `--goal`, else
//! the metric's name (`val_acc` rises, `val_bpb` falls), else the changes between consecutive
//! keeps; and where a table restarts (a new kept baseline much worse than the best before it).

use crate::config::Goal;

/// A keep worse than the running best by more than this fraction of it starts a new segment:
/// a greedy loop only keeps improvements, so such a keep is a fresh baseline (another machine,
/// another data split, an honest re-measurement), not progress.
pub const RESTART_FRACTION: f64 = 0.01;

/// The direction used and why, in words the page and `arun status` print.
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    pub goal: Goal,
    /// E.g. "`roc_auc` names a metric that rises (`auc`)".
    pub reason: String,
}

impl Direction {
    /// A direction someone stated: `--goal`, the run's settings, the pipeline.
    pub fn stated(goal: Goal, by: &str) -> Direction {
        Direction {
            goal,
            reason: by.to_string(),
        }
    }

    /// The direction of a table's metric from, in order, `--goal`, the metric's name and the
    /// changes between the kept values (in table order).
    pub fn of_table(flag: Option<Goal>, metric: &str, kept: &[f64]) -> Direction {
        if let Some(goal) = flag {
            return Direction::stated(goal, "as `--goal` says");
        }
        if let Some((goal, word)) = from_name(metric) {
            return Direction::stated(
                goal,
                &format!("`{metric}` names a metric that {} (`{word}`)", rises(goal)),
            );
        }
        match from_changes(kept) {
            Some((goal, agreeing, all)) => Direction::stated(
                goal,
                &format!(
                    "{agreeing} of {all} changes between consecutive keeps go {}",
                    if goal == Goal::Maximize { "up" } else { "down" }
                ),
            ),
            None => Direction::stated(
                Goal::Minimize,
                "nothing says otherwise (autoresearch's `val_bpb` falls); use `--goal` to say",
            ),
        }
    }
}

fn rises(goal: Goal) -> &'static str {
    match goal {
        Goal::Maximize => "rises",
        Goal::Minimize => "falls",
    }
}

const MAXIMIZED: &[&str] = &[
    "acc",
    "accuracy",
    "auc",
    "f1",
    "f05",
    "f2",
    "r2",
    "score",
    "reward",
    "return",
    "bleu",
    "rouge",
    "sharpe",
    "map",
    "ndcg",
    "precision",
    "recall",
    "throughput",
    "tflops",
    "win",
];
const MINIMIZED: &[&str] = &[
    "loss",
    "bpb",
    "ppl",
    "perplexity",
    "fid",
    "error",
    "err",
    "wer",
    "cer",
    "rmse",
    "mse",
    "mae",
    "nll",
    "latency",
    "regret",
    "drawdown",
];

/// The direction a metric's name says, and the word that says it: the name's words are read
/// from the last (`val_loss_acc` would be an accuracy), rates such as `tok_s` and
/// `tok_per_sec` rise.
pub fn from_name(metric: &str) -> Option<(Goal, &'static str)> {
    let lower = metric.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for word in words.iter().rev() {
        if let Some(known) = MAXIMIZED.iter().find(|k| *k == word) {
            return Some((Goal::Maximize, known));
        }
        if let Some(known) = MINIMIZED.iter().find(|k| *k == word) {
            return Some((Goal::Minimize, known));
        }
    }
    let rate = words.windows(2).any(|pair| {
        matches!(pair, [_, "s" | "sec" | "per"]) && matches!(pair[0], "tok" | "tokens" | "img")
    });
    rate.then_some((Goal::Maximize, "per second"))
}

/// The majority direction of the changes between consecutive kept values: `(goal, changes
/// that agree, all changes)`; `None` on a tie or without changes.
fn from_changes(kept: &[f64]) -> Option<(Goal, usize, usize)> {
    let (mut up, mut down) = (0, 0);
    for pair in kept.windows(2) {
        if pair[1] > pair[0] {
            up += 1;
        } else if pair[1] < pair[0] {
            down += 1;
        }
    }
    let all = up + down;
    match up.cmp(&down) {
        std::cmp::Ordering::Greater => Some((Goal::Maximize, up, all)),
        std::cmp::Ordering::Less => Some((Goal::Minimize, down, all)),
        std::cmp::Ordering::Equal => None,
    }
}

/// Whether a keep of `value` after a running best of `best` starts a new segment.
pub fn is_restart(goal: Goal, value: f64, best: f64) -> bool {
    goal.improvement(value, best) < -RESTART_FRACTION * best.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_the_direction() {
        let cases = [
            ("val_acc", Some(Goal::Maximize)),
            ("val_acc@1", Some(Goal::Maximize)),
            ("roc_auc", Some(Goal::Maximize)),
            ("oof_auc", Some(Goal::Maximize)),
            ("aggregate_score", Some(Goal::Maximize)),
            ("best_r2_score", Some(Goal::Maximize)),
            ("primary_f05", Some(Goal::Maximize)),
            ("decode_tok_s", Some(Goal::Maximize)),
            ("tok_per_sec", Some(Goal::Maximize)),
            ("val_bpb", Some(Goal::Minimize)),
            ("val_fid", Some(Goal::Minimize)),
            ("hf_wer", Some(Goal::Minimize)),
            ("val_loss", Some(Goal::Minimize)),
            ("ppl", Some(Goal::Minimize)),
            ("primary_rmse", Some(Goal::Minimize)),
            ("metric", None),
            ("accumulated", None),
            ("lossy", None),
        ];
        for (name, goal) in cases {
            assert_eq!(from_name(name).map(|(g, _)| g), goal, "{name}");
        }
    }

    #[test]
    fn the_flag_beats_the_name_and_the_name_beats_the_changes() {
        let rising = [1.0, 2.0, 3.0];
        let of = |flag, name| Direction::of_table(flag, name, &rising).goal;
        assert_eq!(of(Some(Goal::Minimize), "val_acc"), Goal::Minimize);
        assert_eq!(of(None, "val_loss"), Goal::Minimize);
        assert_eq!(of(None, "metric"), Goal::Maximize);
        let direction = Direction::of_table(None, "metric", &[3.0, 2.0, 2.5, 1.0]);
        assert_eq!(direction.goal, Goal::Minimize);
        assert_eq!(
            direction.reason,
            "2 of 3 changes between consecutive keeps go down"
        );
        let tie = Direction::of_table(None, "metric", &[1.0, 2.0, 1.0]);
        assert_eq!(tie.goal, Goal::Minimize);
        assert!(tie.reason.contains("--goal"), "{}", tie.reason);
    }

    #[test]
    fn a_much_worse_keep_is_a_restart() {
        assert!(is_restart(Goal::Maximize, 0.37, 1.16));
        assert!(!is_restart(Goal::Maximize, 1.155, 1.16));
        assert!(is_restart(Goal::Minimize, 1.2, 1.0));
        assert!(!is_restart(Goal::Minimize, 0.9, 1.0));
    }
}
