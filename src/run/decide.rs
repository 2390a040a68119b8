//! Keep, discard or crash: what an experiment's runs mean, with the reason in words.
//!
//! A keep must be a real improvement: better than the best kept result by more than the noise
//! (`sigmas` × σ, σ estimated from every repeated measurement of the same code) and by
//! `min-improvement`, confirmed by further runs, and worth the lines it adds.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Goal;
use crate::config::resolve::DecisionRules;

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

/// What one run of an experiment produced.
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

/// A decision, why, and the noise it was judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub status: Status,
    pub reason: String,
    /// The run-to-run standard deviation used, when known.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// How much better than the best a keep had to be (the larger of `sigmas` × σ and
    /// `min-improvement`); `None` for the baseline.
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// What an experiment needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Decided(Decision),
    /// Run the same code once more (baseline repeats, confirmation of a candidate).
    RunAgain(String),
}

/// The experiment being judged.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub runs: &'a [Measurement],
    /// Lines added and removed in the editable files against the experiment it builds on.
    pub lines: (usize, usize),
}

/// What the decision compares against.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// The result to improve on: the best kept one (greedy), or the experiment's parent (tree
    /// search); `None` for the baseline.
    pub best: Option<f64>,
    /// How reasons name it: `the best` or `its parent`.
    pub against: &'static str,
    /// The baseline's peak memory, for the memory ratio guard.
    pub baseline_memory_gb: Option<f64>,
    /// The run-to-run standard deviation of the metric, when known.
    pub sigma: Option<f64>,
}

/// The mean metric of successful runs.
pub fn mean_metric(runs: &[Measurement]) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(|r| r.metric).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Pooled standard deviation over groups of repeated measurements of the same code; `None`
/// without a single repeat.
pub fn pooled_sigma<'a>(groups: impl Iterator<Item = &'a [f64]>) -> Option<f64> {
    let mut squares = 0.0;
    let mut freedom = 0usize;
    for group in groups {
        if group.len() < 2 {
            continue;
        }
        let mean = group.iter().sum::<f64>() / group.len() as f64;
        squares += group.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        freedom += group.len() - 1;
    }
    (freedom > 0).then(|| (squares / freedom as f64).sqrt())
}

/// Judges an experiment from its runs so far.
pub fn judge(
    candidate: Candidate,
    reference: Reference,
    rules: &DecisionRules,
    goal: Goal,
) -> Verdict {
    let noise = &rules.noise;
    let sigma = reference.sigma.unwrap_or(0.0);
    let noise_floor = noise.sigmas * sigma;
    let threshold = rules.min_improvement.max(noise_floor);
    let decided = |status, reason: String| {
        Verdict::Decided(Decision {
            status,
            reason,
            sigma: reference.sigma,
            threshold: reference.best.map(|_| threshold),
        })
    };
    let runs = candidate.runs;
    let repeats = runs.len();
    if let Some(crash) = crash_reason(runs, reference, rules) {
        return decided(Status::Crash, crash);
    }
    let value = mean_metric(runs).unwrap_or(f64::NAN);
    let over = if repeats > 1 {
        format!(" (mean of {repeats} runs)")
    } else {
        String::new()
    };

    let Some(best) = reference.best else {
        let wanted = noise.baseline_runs as usize;
        if repeats < wanted {
            return Verdict::RunAgain(format!("baseline run {} of {wanted}", repeats + 1));
        }
        return decided(Status::Keep, "baseline".to_string());
    };

    let threshold_text = if noise_floor > 0.0 && noise_floor >= rules.min_improvement {
        format!("{}σ={noise_floor:.6}", noise.sigmas)
    } else {
        format!("the minimum improvement {}", rules.min_improvement)
    };
    let gain = goal.improvement(value, best);
    let delta = value - best;
    let net_lines = candidate.lines.0 as i64 - candidate.lines.1 as i64;
    // Confirmation only makes sense when runs of the same code differ.
    let confirm = sigma > 0.0 && repeats < 1 + noise.confirm_runs as usize;

    if gain > noise_floor && gain > 0.0 && gain >= rules.min_improvement {
        if confirm {
            return Verdict::RunAgain(format!(
                "confirming {delta:+.6}: run {} of {}",
                repeats + 1,
                1 + noise.confirm_runs
            ));
        }
        let large = rules
            .simplicity
            .large_improvement
            .unwrap_or(2.0 * threshold);
        if net_lines > i64::from(rules.simplicity.max_added_lines) && gain < large {
            return decided(
                Status::Discard,
                format!("discarded: {net_lines:+} lines for {delta:+.6}{over}"),
            );
        }
        let reason = if threshold > 0.0 {
            format!("kept: {delta:+.6}{over} > {threshold_text}")
        } else {
            format!(
                "kept: {delta:+.6}{over} improves on {} {best:.6}",
                reference.against
            )
        };
        return decided(Status::Keep, reason);
    }
    if rules.simplicity.keep_simpler && net_lines < 0 && gain >= -threshold {
        if confirm {
            return Verdict::RunAgain(format!(
                "confirming a simplification ({net_lines:+} lines): run {} of {}",
                repeats + 1,
                1 + noise.confirm_runs
            ));
        }
        return decided(
            Status::Keep,
            format!(
                "kept: simpler ({net_lines:+} lines) at {delta:+.6}{over}, within {threshold_text}"
            ),
        );
    }
    let reason = if gain > 0.0 {
        format!("discarded: {delta:+.6}{over} within noise {threshold_text}")
    } else {
        format!(
            "discarded: {delta:+.6}{over} does not improve on {} {best:.6}",
            reference.against
        )
    };
    decided(Status::Discard, reason)
}

/// The crash reason, when any run failed, found no metric, or broke a memory limit.
fn crash_reason(
    runs: &[Measurement],
    reference: Reference,
    rules: &DecisionRules,
) -> Option<String> {
    let count = runs.len();
    for (i, run) in runs.iter().enumerate() {
        let which = if count > 1 {
            format!("run {} of {count}: ", i + 1)
        } else {
            String::new()
        };
        let problem = match (&run.failure, run.metric) {
            (Some(failure), _) => Some(failure.clone()),
            (None, None) => Some("no metric in the output".to_string()),
            (None, Some(value)) if !value.is_finite() => Some(format!("metric is {value}")),
            _ => None,
        };
        if let Some(problem) = problem {
            return Some(format!("{which}{problem}"));
        }
    }
    let memory = runs
        .iter()
        .filter_map(|r| r.memory_gb)
        .fold(None, |peak: Option<f64>, m| {
            Some(peak.map_or(m, |p| p.max(m)))
        })?;
    if let Some(cap) = rules.memory_max_gb
        && memory > cap
    {
        return Some(format!(
            "peak memory {memory:.1} GB is over the cap of {cap:.1} GB"
        ));
    }
    if let Some(baseline) = reference.baseline_memory_gb
        && baseline > 0.0
        && memory > baseline * rules.memory_max_ratio
    {
        return Some(format!(
            "peak memory {memory:.1} GB is over {}x the baseline's {baseline:.1} GB",
            rules.memory_max_ratio
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::{NoisePolicy, SimplicityRule};

    fn rules() -> DecisionRules {
        DecisionRules {
            min_improvement: 0.0,
            fix_attempts: 2,
            memory_max_ratio: 2.0,
            memory_max_gb: Some(70.0),
            noise: NoisePolicy {
                baseline_runs: 3,
                confirm_runs: 1,
                sigmas: 2.0,
                sigma: None,
                seed_env: None,
            },
            simplicity: SimplicityRule {
                max_added_lines: 20,
                large_improvement: None,
                keep_simpler: true,
            },
            held_out: None,
        }
    }

    fn run(metric: f64) -> Measurement {
        Measurement {
            failure: None,
            metric: Some(metric),
            values: BTreeMap::new(),
            memory_gb: Some(30.0),
            seconds: 300.0,
            fixable: true,
        }
    }

    fn judge_runs(values: &[f64], lines: (usize, usize), sigma: Option<f64>) -> Verdict {
        let runs: Vec<Measurement> = values.iter().map(|v| run(*v)).collect();
        judge(
            Candidate { runs: &runs, lines },
            Reference {
                best: Some(1.0),
                against: "the best",
                baseline_memory_gb: Some(30.0),
                sigma,
            },
            &rules(),
            Goal::Minimize,
        )
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Decided(d) => format!("{}: {}", d.status, d.reason),
            Verdict::RunAgain(why) => format!("again: {why}"),
        }
    }

    #[test]
    fn table_of_decisions_under_noise() {
        let sigma = Some(0.0005);
        let cases: [(&[f64], (usize, usize), &str); 9] = [
            (&[0.9950], (1, 1), "again: confirming -0.005000: run 2 of 2"),
            (
                &[0.9950, 0.9960],
                (1, 1),
                "keep: kept: -0.004500 (mean of 2 runs) > 2σ=0.001000",
            ),
            (
                &[0.9950, 1.0040],
                (1, 1),
                "discard: discarded: -0.000500 (mean of 2 runs) within noise 2σ=0.001000",
            ),
            (
                &[0.9998],
                (1, 1),
                "discard: discarded: -0.000200 within noise 2σ=0.001000",
            ),
            (
                &[1.0030],
                (1, 1),
                "discard: discarded: +0.003000 does not improve on the best 1.000000",
            ),
            (
                &[0.9985, 0.9985],
                (31, 0),
                "discard: discarded: +31 lines for -0.001500 (mean of 2 runs)",
            ),
            (
                &[0.9900, 0.9900],
                (31, 0),
                "keep: kept: -0.010000 (mean of 2 runs) > 2σ=0.001000",
            ),
            (
                &[1.0004],
                (0, 12),
                "again: confirming a simplification (-12 lines): run 2 of 2",
            ),
            (
                &[1.0004, 1.0002],
                (0, 12),
                "keep: kept: simpler (-12 lines) at +0.000300 (mean of 2 runs), within 2σ=0.001000",
            ),
        ];
        for (values, lines, expected) in cases {
            assert_eq!(
                reason(judge_runs(values, lines, sigma)),
                expected,
                "{values:?}"
            );
        }
    }

    #[test]
    fn without_noise_any_strict_improvement_is_kept_at_once() {
        assert_eq!(
            reason(judge_runs(&[0.999], (1, 1), Some(0.0))),
            "keep: kept: -0.001000 improves on the best 1.000000"
        );
        assert_eq!(
            reason(judge_runs(&[1.0], (1, 1), None)),
            "discard: discarded: +0.000000 does not improve on the best 1.000000"
        );
    }

    #[test]
    fn the_baseline_repeats_then_is_kept() {
        let once = [run(1.0)];
        let thrice = [run(1.0), run(1.01), run(0.99)];
        let reference = Reference {
            best: None,
            against: "the best",
            baseline_memory_gb: None,
            sigma: None,
        };
        let candidate = |runs| Candidate {
            runs,
            lines: (0, 0),
        };
        assert_eq!(
            reason(judge(candidate(&once), reference, &rules(), Goal::Minimize)),
            "again: baseline run 2 of 3"
        );
        assert_eq!(
            reason(judge(
                candidate(&thrice),
                reference,
                &rules(),
                Goal::Minimize
            )),
            "keep: baseline"
        );
    }

    #[test]
    fn failures_nan_and_memory_are_crashes() {
        let mut failed = run(0.9);
        failed.failure = Some("exit status 1".to_string());
        let mut nan = run(0.9);
        nan.metric = Some(f64::NAN);
        let mut silent = run(0.9);
        silent.metric = None;
        let mut big = run(0.9);
        big.memory_gb = Some(61.0);
        let mut huge = run(0.9);
        huge.memory_gb = Some(75.0);
        let cases = [
            (vec![failed.clone()], "crash: exit status 1"),
            (vec![run(0.9), failed], "crash: run 2 of 2: exit status 1"),
            (vec![nan], "crash: metric is NaN"),
            (vec![silent], "crash: no metric in the output"),
            (
                vec![big],
                "crash: peak memory 61.0 GB is over 2x the baseline's 30.0 GB",
            ),
            (
                vec![huge],
                "crash: peak memory 75.0 GB is over the cap of 70.0 GB",
            ),
        ];
        for (runs, expected) in cases {
            let verdict = judge(
                Candidate {
                    runs: &runs,
                    lines: (1, 1),
                },
                Reference {
                    best: Some(1.0),
                    against: "the best",
                    baseline_memory_gb: Some(30.0),
                    sigma: None,
                },
                &rules(),
                Goal::Minimize,
            );
            assert_eq!(reason(verdict), expected);
        }
    }

    #[test]
    fn maximize_flips_the_direction() {
        let runs = [run(1.01)];
        let verdict = judge(
            Candidate {
                runs: &runs,
                lines: (1, 1),
            },
            Reference {
                best: Some(1.0),
                against: "the best",
                baseline_memory_gb: None,
                sigma: None,
            },
            &rules(),
            Goal::Maximize,
        );
        assert_eq!(
            reason(verdict),
            "keep: kept: +0.010000 improves on the best 1.000000"
        );
    }

    #[test]
    fn pooled_sigma_weights_groups_by_their_repeats() {
        assert_eq!(pooled_sigma([[1.0].as_slice()].into_iter()), None);
        let groups: [&[f64]; 2] = [&[1.0, 3.0], &[5.0, 5.0, 8.0]];
        // squares: 2 + 6 = 8 over 1 + 2 degrees of freedom.
        let sigma = pooled_sigma(groups.into_iter()).unwrap();
        assert!((sigma - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
