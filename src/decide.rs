//! Keep, discard or crash: what a measured experiment means, with the reason in words.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::resolve::DecisionRules;
use crate::metric::Goal;

/// The three outcomes of autoresearch's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Keep,
    Discard,
    Crash,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Keep => "keep",
            Status::Discard => "discard",
            Status::Crash => "crash",
        })
    }
}

/// What running an experiment produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Why the experiment failed before or while running (build failure, timeout, scope
    /// violation, no metric...); `None` when it ran to a clean end.
    pub failure: Option<String>,
    /// The metric's value, when it was found.
    pub metric: Option<f64>,
    /// The extra values found, by name.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// Peak memory in GiB, from NVML or the script's own figure.
    pub memory_gb: Option<f64>,
    /// Seconds the run took, wall clock.
    pub seconds: f64,
    /// Whether the failure can reasonably be fixed by the proposer (a crash of its code, not a
    /// scope violation).
    #[serde(default)]
    pub fixable: bool,
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub status: Status,
    pub reason: String,
}

/// What the decision compares against.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// The best kept metric so far; `None` for the baseline.
    pub best: Option<f64>,
    /// The baseline's peak memory, for the memory ratio guard.
    pub baseline_memory_gb: Option<f64>,
}

/// Decides an experiment. The baseline (no `best` yet) is kept whenever it produced a metric.
pub fn decide(
    measurement: &Measurement,
    reference: Reference,
    rules: &DecisionRules,
    goal: Goal,
) -> Decision {
    let crash = |reason: String| Decision {
        status: Status::Crash,
        reason,
    };
    if let Some(failure) = &measurement.failure {
        return crash(failure.clone());
    }
    let Some(value) = measurement.metric else {
        return crash("no metric in the output".to_string());
    };
    if !value.is_finite() {
        return crash(format!("metric is {value}"));
    }
    if let Some(memory) = measurement.memory_gb {
        if let Some(cap) = rules.memory_max_gb
            && memory > cap
        {
            return crash(format!(
                "peak memory {memory:.1} GB is over the cap of {cap:.1} GB"
            ));
        }
        if let Some(baseline) = reference.baseline_memory_gb
            && baseline > 0.0
            && memory > baseline * rules.memory_max_ratio
        {
            return crash(format!(
                "peak memory {memory:.1} GB is over {}x the baseline's {baseline:.1} GB",
                rules.memory_max_ratio
            ));
        }
    }
    let Some(best) = reference.best else {
        return Decision {
            status: Status::Keep,
            reason: "baseline".to_string(),
        };
    };
    let gain = goal.improvement(value, best);
    let delta = value - best;
    if gain > 0.0 && gain >= rules.min_improvement {
        Decision {
            status: Status::Keep,
            reason: format!("kept: {delta:+.6} improves on the best {best:.6}"),
        }
    } else if gain > 0.0 {
        Decision {
            status: Status::Discard,
            reason: format!(
                "discarded: {delta:+.6} is less than the minimum improvement {}",
                rules.min_improvement
            ),
        }
    } else {
        Decision {
            status: Status::Discard,
            reason: format!("discarded: {delta:+.6} does not improve on the best {best:.6}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> DecisionRules {
        DecisionRules {
            min_improvement: 0.001,
            fix_attempts: 2,
            memory_max_ratio: 2.0,
            memory_max_gb: Some(70.0),
        }
    }

    fn measured(metric: f64, memory: f64) -> Measurement {
        Measurement {
            failure: None,
            metric: Some(metric),
            values: BTreeMap::new(),
            memory_gb: Some(memory),
            seconds: 300.0,
            fixable: true,
        }
    }

    const REFERENCE: Reference = Reference {
        best: Some(1.0),
        baseline_memory_gb: Some(30.0),
    };

    #[test]
    fn table_of_decisions() {
        let cases = [
            (
                measured(0.99, 30.0),
                Status::Keep,
                "kept: -0.010000 improves on the best 1.000000",
            ),
            (
                measured(0.9995, 30.0),
                Status::Discard,
                "discarded: -0.000500 is less than the minimum improvement 0.001",
            ),
            (
                measured(1.0, 30.0),
                Status::Discard,
                "discarded: +0.000000 does not improve on the best 1.000000",
            ),
            (
                measured(1.2, 30.0),
                Status::Discard,
                "discarded: +0.200000 does not improve on the best 1.000000",
            ),
            (measured(f64::NAN, 30.0), Status::Crash, "metric is NaN"),
            (
                measured(f64::INFINITY, 30.0),
                Status::Crash,
                "metric is inf",
            ),
            (
                measured(0.9, 61.0),
                Status::Crash,
                "peak memory 61.0 GB is over 2x the baseline's 30.0 GB",
            ),
            (
                measured(0.9, 75.0),
                Status::Crash,
                "peak memory 75.0 GB is over the cap of 70.0 GB",
            ),
        ];
        for (measurement, status, reason) in cases {
            let decision = decide(&measurement, REFERENCE, &rules(), Goal::Minimize);
            assert_eq!(
                (decision.status, decision.reason.as_str()),
                (status, reason)
            );
        }
    }

    #[test]
    fn maximize_flips_the_direction() {
        let decision = decide(&measured(1.01, 30.0), REFERENCE, &rules(), Goal::Maximize);
        assert_eq!(decision.status, Status::Keep);
        let decision = decide(&measured(0.99, 30.0), REFERENCE, &rules(), Goal::Maximize);
        assert_eq!(decision.status, Status::Discard);
    }

    #[test]
    fn failures_and_missing_metrics_are_crashes() {
        let mut failed = measured(0.9, 30.0);
        failed.failure = Some("exit status 1".to_string());
        assert_eq!(
            decide(&failed, REFERENCE, &rules(), Goal::Minimize).reason,
            "exit status 1"
        );
        let mut silent = measured(0.9, 30.0);
        silent.metric = None;
        assert_eq!(
            decide(&silent, REFERENCE, &rules(), Goal::Minimize).reason,
            "no metric in the output"
        );
    }

    #[test]
    fn the_baseline_is_kept_when_it_measures() {
        let baseline = Reference {
            best: None,
            baseline_memory_gb: None,
        };
        let decision = decide(&measured(1.0, 30.0), baseline, &rules(), Goal::Minimize);
        assert_eq!(
            (decision.status, decision.reason.as_str()),
            (Status::Keep, "baseline")
        );
    }
}
