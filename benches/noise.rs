//! False keeps and missed improvements: the plain greedy rule against arun's decision rule.
//!
//! Part 1 simulates many runs of the loop with arun's own `decide::judge`: each experiment's
//! true effect is drawn from a mix that looks like an agent's proposals (60% worse, 25% about
//! neutral, 15% real improvements of 1-8σ) and every measurement is its true value plus
//! Gaussian noise of σ = 1. A false keep is a keep whose true value is not better than the
//! best's; a missed improvement is a proposal better by more than 3σ that was not kept.
//!
//! Part 2 checks the same on the real binary: a scripted trainer whose `val_loss` is a known
//! function of its learning rate plus noise (it also prints the noise-free `true_loss`), and a
//! scripted agent that perturbs the learning rate at random.
//!
//! Run with `cargo bench --bench noise` (`ARUN_BENCH_RUNS` simulated runs, default 2000).

use std::path::Path;
use std::process::{Command, Stdio};

use arun::config::Goal;
use arun::config::resolve::{DecisionRules, NoisePolicy, SimplicityRule};
use arun::run::decide::{self, Candidate, Measurement, Reference, Status, Verdict};

fn main() {
    let runs: usize = std::env::var("ARUN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("simulated: {runs} runs of 100 experiments, σ = 1");
    println!(
        "| rule | false keeps (of keeps) | missed improvements > 3σ | keeps per run | runs per experiment |"
    );
    println!("|---|---|---|---|---|");
    for (name, rules) in [
        ("greedy (autoresearch)", rules(1, 0, 0.0)),
        (
            "arun default: 3 baseline runs, 2σ, 1 confirmation",
            rules(3, 1, 2.0),
        ),
        ("arun, 1.5σ", rules(3, 1, 1.5)),
        ("arun, 2σ, no confirmation", rules(3, 0, 2.0)),
    ] {
        let totals = (0..runs).fold(Totals::default(), |t, seed| {
            t.add(simulate(&rules, seed as u64, 100))
        });
        println!(
            "| {name} | {:.1}% | {:.1}% | {:.1} | {:.2} |",
            100.0 * totals.false_keeps as f64 / totals.keeps.max(1) as f64,
            100.0 * totals.missed as f64 / totals.big.max(1) as f64,
            totals.keeps as f64 / runs as f64,
            totals.measurements as f64 / (runs * 100) as f64,
        );
    }

    println!();
    println!("real loop: 4 runs of 30 experiments, scripted noisy trainer (σ = 0.002)");
    println!("| rule | false keeps (of keeps) | keeps |");
    println!("|---|---|---|");
    for (name, policy) in [
        (
            "greedy",
            "baseline-runs = 1\nconfirm-runs = 0\nsigmas = 0.0",
        ),
        ("arun default", ""),
    ] {
        let (false_keeps, keeps) = (0..4).fold((0, 0), |(f, k), seed| {
            let (a, b) = real_loop(policy, seed);
            (f + a, k + b)
        });
        println!(
            "| {name} | {:.1}% ({false_keeps} of {keeps}) | {keeps} |",
            100.0 * false_keeps as f64 / keeps.max(1) as f64
        );
    }
}

fn rules(baseline_runs: u32, confirm_runs: u32, sigmas: f64) -> DecisionRules {
    DecisionRules {
        min_improvement: 0.0,
        fix_attempts: 0,
        memory_max_ratio: 2.0,
        memory_max_gb: None,
        noise: NoisePolicy {
            baseline_runs,
            confirm_runs,
            sigmas,
            sigma: None,
            seed_env: None,
        },
        simplicity: SimplicityRule {
            max_added_lines: u32::MAX,
            large_improvement: None,
            keep_simpler: false,
        },
        held_out: None,
    }
}

#[derive(Default)]
struct Totals {
    keeps: usize,
    false_keeps: usize,
    big: usize,
    missed: usize,
    measurements: usize,
}

impl Totals {
    fn add(self, other: Totals) -> Totals {
        Totals {
            keeps: self.keeps + other.keeps,
            false_keeps: self.false_keeps + other.false_keeps,
            big: self.big + other.big,
            missed: self.missed + other.missed,
            measurements: self.measurements + other.measurements,
        }
    }
}

/// One simulated run of `experiments` experiments after the baseline, minimising.
fn simulate(rules: &DecisionRules, seed: u64, experiments: usize) -> Totals {
    let mut rng = Rng::new(seed);
    let mut totals = Totals::default();
    let mut groups: Vec<Vec<f64>> = Vec::new();

    // The baseline, repeated as the rules ask.
    let mut best_true = 0.0;
    let mut best_runs =
        measure_until_decided(rules, &mut rng, best_true, None, &groups, &mut totals).1;
    groups.push(best_runs.clone());
    for _ in 0..experiments {
        let gain = proposal(&mut rng);
        let candidate_true = best_true - gain;
        let best_mean = best_runs.iter().sum::<f64>() / best_runs.len() as f64;
        let (status, runs) = measure_until_decided(
            rules,
            &mut rng,
            candidate_true,
            Some(best_mean),
            &groups,
            &mut totals,
        );
        if runs.len() > 1 {
            groups.push(runs.clone());
        }
        if gain > 3.0 {
            totals.big += 1;
        }
        if status == Status::Keep {
            totals.keeps += 1;
            if candidate_true >= best_true {
                totals.false_keeps += 1;
            }
            best_true = candidate_true;
            best_runs = runs;
        } else if gain > 3.0 {
            totals.missed += 1;
        }
    }
    totals
}

/// Measures until `judge` decides, as the session does.
fn measure_until_decided(
    rules: &DecisionRules,
    rng: &mut Rng,
    true_value: f64,
    best: Option<f64>,
    groups: &[Vec<f64>],
    totals: &mut Totals,
) -> (Status, Vec<f64>) {
    let mut values = Vec::new();
    loop {
        values.push(true_value + rng.gauss());
        totals.measurements += 1;
        let runs: Vec<Measurement> = values.iter().map(|v| measurement(*v)).collect();
        let mut all: Vec<&[f64]> = groups.iter().map(Vec::as_slice).collect();
        all.push(&values);
        let reference = Reference {
            best,
            against: "the best",
            baseline_memory_gb: None,
            sigma: decide::pooled_sigma(all.into_iter()),
        };
        match decide::judge(
            Candidate {
                runs: &runs,
                lines: (1, 1),
            },
            reference,
            rules,
            Goal::Minimize,
        ) {
            Verdict::RunAgain(_) => continue,
            Verdict::Decided(decision) => return (decision.status, values),
        }
    }
}

fn measurement(value: f64) -> Measurement {
    Measurement {
        failure: None,
        metric: Some(value),
        values: Default::default(),
        memory_gb: None,
        seconds: 1.0,
        fixable: true,
    }
}

/// How much better than the best a proposal truly is (positive: better), in σ.
fn proposal(rng: &mut Rng) -> f64 {
    let u = rng.uniform();
    if u < 0.60 {
        -(2.0 * rng.gauss()).abs()
    } else if u < 0.85 {
        0.3 * rng.gauss()
    } else {
        1.0 + 7.0 * rng.uniform()
    }
}

/// xorshift64* with Box-Muller: enough for a simulation, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One real run of 30 experiments; returns (false keeps, keeps) from the trainer's true loss.
fn real_loop(policy: &str, seed: u64) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(
        template.join("train.py"),
        "import math, os, random\nLR = 0.003\n\
         true_loss = 1.0 + 0.05 * math.log10(LR / 0.03) ** 2\n\
         noise = random.SystemRandom().gauss(0.0, 0.002)\n\
         print(f'true_loss: {true_loss:.6f}')\nprint(f'val_loss: {true_loss + noise:.6f}')\n",
    )
    .unwrap();
    let agent = dir.path().join("agent.py");
    std::fs::write(
        &agent,
        format!(
            "import math, random, re\nrng = random.Random({seed} * 1000 + int(__import__('os').environ['ARUN_EXPERIMENT']))\n\
             src = open('train.py').read()\nlr = float(re.search(r'^LR = (.*)$', src, re.M).group(1))\n\
             new = lr * math.exp(rng.gauss(0.0, 0.4))\n\
             open('train.py', 'w').write(re.sub(r'^LR = .*$', f'LR = {{new:.6g}}', src, flags=re.M))\n\
             print(f'DESCRIPTION: LR {{lr:.6g}} -> {{new:.6g}}')\n"
        ),
    )
    .unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[target]\nrepo = \"repo\"\ntemplate = \"template\"\neditable = [\"train.py\"]\n\
             [experiment]\nrun = \"python3 train.py\"\nbudget = \"10s\"\n\
             [metric]\nname = \"val_loss\"\nregex = '^val_loss:\\s*([0-9.]+)'\n\
             [metric.extra]\ntrue_loss = '^true_loss:\\s*([0-9.]+)'\n\
             [decision]\nfix-attempts = 0\n[decision.noise]\n{policy}\n\
             [proposer]\nkind = \"agent\"\n[proposer.agent]\ncommand = \"python3 {}\"\n",
            agent.display()
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg(&pipeline)
        .args(["--tag", "bench", "--max-experiments", "31"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    count_false_keeps(&dir.path().join("repo/.git/arun/bench/journal.jsonl"))
}

/// Walks the journal: each keep's true loss against the previous keep's.
fn count_false_keeps(journal: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(journal).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let true_loss = |n: u64| {
        events
            .iter()
            .find(|e| e["event"] == "measured" && e["n"] == n)
            .and_then(|e| e["measurement"]["values"]["true_loss"].as_f64())
            .unwrap()
    };
    let mut best: Option<f64> = None;
    let (mut false_keeps, mut keeps) = (0, 0);
    for event in events
        .iter()
        .filter(|e| e["event"] == "decided" && e["decision"]["status"] == "keep")
    {
        let n = event["n"].as_u64().unwrap();
        let value = true_loss(n);
        if let Some(previous) = best {
            keeps += 1;
            if value >= previous {
                false_keeps += 1;
            }
        }
        best = Some(value);
    }
    (false_keeps, keeps)
}
