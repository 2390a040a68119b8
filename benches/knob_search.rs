//! Knob-search efficiency: arun's strategy against Optuna's samplers (TPE, which Optuna 5 makes
//! multivariate by default, independent TPE, GP, random), on objectives that look like training (`benches/knob_search/objectives.py`, shared by
//! every method). The objectives come in two sets, each with its own table: the tuning set the
//! search's defaults were chosen on, and a held-out set written before any retuning and never
//! used to choose them.
//!
//! For each objective and seed, each method gets the starting assignment (the baseline) as its
//! first trial, then chooses the rest; the regret after N trials is the noise-free value of the
//! trial with the best observed value, minus the optimum. The table shows the median over seeds.
//! arun's side is `arun::propose::knobs::strategy::Search`, the code the `knobs` proposer runs; the
//! objectives are evaluated by `objectives.py serve`. Optuna runs in benches/.venv, which
//! `benches/knob_search/setup-venv.sh` creates (pip install optuna).
//!
//! Batches for parallel workers: with `q` workers, `q` proposals are made at once, each seeing the
//! earlier ones of its batch as pending (`strategy::with_pending`, as the `knobs` proposer sees
//! experiments in flight), then evaluated together; their regret is reported at the same number
//! of evaluations as the sequential search's.
//!
//! Run with `cargo bench --bench knob_search` (25 seeds, 60 trials; `ARUN_BENCH_SEEDS=5` for a
//! quick look; `ARUN_BENCH_OPTUNA_JSON=file` reuses a saved output of `optuna_baselines.py`;
//! `ARUN_BENCH_BATCHES=0` leaves the batches out; `ARUN_BENCH_ONLY=branin,categorical` runs only
//! those objectives).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use arun::config::file;
use arun::config::knob::{Domain, Value};
use arun::propose::knobs::strategy::{Outcome, Search, Trial, with_pending};
use serde_json::{Value as Json, json};

const TRIALS: usize = 60;
const CHECKPOINTS: [usize; 3] = [15, 30, 60];
/// Batches run to this many evaluations (the goal's checkpoint).
const BATCH_TRIALS: usize = 30;
const BATCH_SIZES: [usize; 3] = [2, 4, 8];
/// Optuna's samplers as `optuna_baselines.py` names them, and as the tables do.
const OPTUNA: [(&str, &str); 4] = [
    ("tpe", "TPE"),
    ("tpe_indep", "TPE indep"),
    ("gp", "GP"),
    ("random", "random"),
];

struct Objective {
    name: String,
    names: Vec<String>,
    domains: Vec<Domain>,
    start: Vec<Value>,
    optimum: f64,
    /// `tuning` or `held-out`.
    set: String,
}

fn main() {
    let seeds: u64 = std::env::var("ARUN_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/knob_search");
    let mut objectives = describe(&dir);
    if let Ok(only) = std::env::var("ARUN_BENCH_ONLY") {
        objectives.retain(|o| only.split(',').any(|name| name == o.name));
    }

    // Optuna runs in its own process while arun's strategy runs here: two cores, both busy.
    let optuna = match std::env::var("ARUN_BENCH_OPTUNA_JSON") {
        Ok(path) => Optuna::Saved(PathBuf::from(path)),
        Err(_) => match venv_python(&dir) {
            Ok(python) => Optuna::Running(
                Command::new(python)
                    .arg(dir.join("optuna_baselines.py"))
                    .args(["--seeds", &seeds.to_string()])
                    .args(["--trials", &TRIALS.to_string()])
                    .arg("--checkpoints")
                    .arg(CHECKPOINTS.map(|c| c.to_string()).join(","))
                    .current_dir(&dir)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("the venv's python runs"),
            ),
            Err(why) => Optuna::Missing(why),
        },
    };

    let started = Instant::now();
    let mut server = Server::start(&dir);
    let mut arun_results = Vec::new();
    for objective in &objectives {
        let runs: Vec<Vec<f64>> = (0..seeds)
            .map(|seed| run_arun(objective, seed, 1, TRIALS, &mut server))
            .collect();
        eprintln!("arun: {} done", objective.name);
        arun_results.push(runs);
    }
    let arun_seconds = started.elapsed().as_secs_f64();
    let batches = std::env::var("ARUN_BENCH_BATCHES").map_or(true, |v| v != "0");
    let mut batch_results: Vec<Vec<Vec<Vec<f64>>>> = Vec::new();
    if batches {
        for objective in &objectives {
            let per_q = BATCH_SIZES
                .iter()
                .map(|&q| {
                    (0..seeds)
                        .map(|seed| run_arun(objective, seed, q, BATCH_TRIALS, &mut server))
                        .collect()
                })
                .collect();
            eprintln!("arun: {} batches done", objective.name);
            batch_results.push(per_q);
        }
    }

    let optuna_json: Option<Json> = match optuna {
        // A saved output still being written (Optuna started beside this bench) is waited for.
        Optuna::Saved(path) => loop {
            let text = std::fs::read(&path).unwrap_or_default();
            if let Ok(json) = serde_json::from_slice(&text) {
                break Some(json);
            }
            std::thread::sleep(std::time::Duration::from_secs(10));
        },
        Optuna::Running(child) => {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "optuna_baselines.py failed");
            Some(serde_json::from_slice(&output.stdout).unwrap())
        }
        Optuna::Missing(why) => {
            eprintln!("knob_search: Optuna is not available ({why}); its columns are empty");
            None
        }
    };

    println!(
        "median regret over {seeds} seeds (lower is better); arun's strategy took {:.1} ms per \
         suggestion on average{}",
        1000.0 * arun_seconds / (seeds as f64 * objectives.len() as f64 * (TRIALS - 1) as f64),
        optuna_json
            .as_ref()
            .and_then(|j| j["optuna"].as_str())
            .map(|v| format!("; Optuna {v}"))
            .unwrap_or_default()
    );
    let other = |objective: &Objective, method: &str| -> Option<Vec<Vec<f64>>> {
        let runs = optuna_json.as_ref()?["results"][&objective.name][method].as_array()?;
        Some(
            runs.iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect()
                })
                .collect(),
        )
    };
    let cell = |v: Option<f64>| v.map_or("n/a".to_string(), format_regret);
    for set in ["tuning", "held-out"] {
        println!();
        println!("{set} objectives:");
        println!();
        let names: Vec<&str> = OPTUNA.iter().map(|(_, shown)| *shown).collect();
        println!(
            "| objective | arun @15 | best Optuna @15 | arun @30 | {} | arun/best @30 | arun @60 | \
             best Optuna @60 |",
            names
                .iter()
                .map(|n| format!("{n} @30"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!(
            "|---|---|---|---|{}---|---|---|",
            "---|".repeat(names.len())
        );
        let mut logs = Vec::new();
        for (objective, arun) in objectives.iter().zip(&arun_results) {
            if objective.set != set {
                continue;
            }
            let medians = |runs: &[Vec<f64>]| -> Vec<f64> {
                (0..CHECKPOINTS.len())
                    .map(|k| median(runs.iter().map(|run| run[k])))
                    .collect()
            };
            let ours = medians(arun);
            // A saved Optuna output may stop before the last checkpoint (`--trials 30`).
            let theirs: Vec<Option<Vec<f64>>> = OPTUNA
                .iter()
                .map(|(method, _)| {
                    other(objective, method).map(|runs| {
                        (0..runs[0].len())
                            .map(|k| median(runs.iter().map(|run| run[k])))
                            .collect()
                    })
                })
                .collect();
            let best = |k: usize| -> Option<f64> {
                theirs
                    .iter()
                    .flatten()
                    .filter_map(|m| m.get(k).copied())
                    .min_by(f64::total_cmp)
            };
            let ratio = best(1).map(|b| ours[1] / b);
            if let Some(r) = ratio.filter(|r| r.is_finite() && *r > 0.0) {
                logs.push(r.ln());
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                objective.name,
                format_regret(ours[0]),
                cell(best(0)),
                format_regret(ours[1]),
                theirs
                    .iter()
                    .map(|m| cell(m.as_ref().and_then(|m| m.get(1).copied())))
                    .collect::<Vec<_>>()
                    .join(" | "),
                ratio.map_or("n/a".to_string(), |r| format!("{r:.2}")),
                format_regret(ours[2]),
                cell(best(2)),
            );
        }
        println!();
        println!(
            "geometric mean of arun/best Optuna at 30 trials ({set}): {:.2}",
            (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp()
        );
    }
    if batches {
        println!();
        println!(
            "batches of q proposals at once (earlier ones of a batch pending), median regret at \
             {BATCH_TRIALS} evaluations:"
        );
        println!();
        println!(
            "| objective | set | q=1 | q=2 | q=4 | q=8 | q=4/q=1 |\n|---|---|---|---|---|---|---|"
        );
        for ((objective, arun), per_q) in objectives.iter().zip(&arun_results).zip(&batch_results) {
            let k = CHECKPOINTS.iter().position(|&c| c == BATCH_TRIALS).unwrap();
            let sequential = median(arun.iter().map(|run| run[k]));
            let batched: Vec<f64> = per_q
                .iter()
                .map(|runs: &Vec<Vec<f64>>| median(runs.iter().map(|run| *run.last().unwrap())))
                .collect();
            println!(
                "| {} | {} | {} | {} | {:.2} |",
                objective.name,
                objective.set,
                format_regret(sequential),
                batched
                    .iter()
                    .map(|v| format_regret(*v))
                    .collect::<Vec<_>>()
                    .join(" | "),
                batched[1] / sequential
            );
        }
    }
    println!();
    println!("time of one suggestion by number of results (6 float knobs):");
    let domains = vec![
        Domain::Float {
            min: 0.0,
            max: 1.0,
            log: false,
        };
        6
    ];
    for results in [50, 100, 200, 400] {
        let search = Search::new(&domains, 0);
        let mut rng = arun::propose::knobs::random::Rng::new(results as u64);
        let trials: Vec<Trial> = (0..results)
            .map(|_| {
                let values: Vec<Value> = (0..6).map(|_| Value::Number(rng.unit())).collect();
                let loss = values
                    .iter()
                    .map(|v| match v {
                        Value::Number(x) => (x - 0.3) * (x - 0.3),
                        Value::Choice(_) => 0.0,
                    })
                    .sum::<f64>()
                    + 0.01 * rng.normal();
                Trial {
                    values,
                    outcome: Outcome::Loss(loss),
                }
            })
            .collect();
        let started = Instant::now();
        search.suggest(&trials).unwrap();
        println!(
            "  {results:>4} results: {:>7.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

enum Optuna {
    Saved(PathBuf),
    Running(std::process::Child),
    Missing(String),
}

/// Runs arun's search for one seed, `q` proposals at a time, for `trials` evaluations; the regret
/// at each checkpoint up to `trials`.
fn run_arun(
    objective: &Objective,
    seed: u64,
    q: usize,
    trials_wanted: usize,
    server: &mut Server,
) -> Vec<f64> {
    let search = Search::new(&objective.domains, seed);
    let mut trials: Vec<Trial> = Vec::new();
    let mut kept: Option<(f64, f64)> = None;
    let mut regrets = Vec::new();
    while trials.len() < trials_wanted {
        // The baseline alone, then batches of q (the last one cut to the evaluations left).
        let size = if trials.is_empty() {
            1
        } else {
            q.min(trials_wanted - trials.len())
        };
        let mut batch: Vec<Vec<Value>> = Vec::new();
        for _ in 0..size {
            let values = if trials.is_empty() {
                objective.start.clone()
            } else {
                search
                    .suggest(&with_pending(&trials, &batch))
                    .expect("the benchmark spaces are never exhausted")
            };
            batch.push(values);
        }
        for values in batch {
            let t = trials.len();
            let (value, true_value) = server.observe(objective, seed, t, &values);
            let outcome = match value {
                Some(v) => {
                    if kept.is_none_or(|(best, _)| v < best) {
                        kept = Some((v, true_value.unwrap()));
                    }
                    Outcome::Loss(v)
                }
                None => Outcome::Crash,
            };
            trials.push(Trial { values, outcome });
            if CHECKPOINTS.contains(&(t + 1)) {
                regrets.push(kept.map_or(f64::NAN, |(_, truth)| truth - objective.optimum));
            }
        }
    }
    regrets
}

/// `objectives.py serve`: one JSON request and answer per line.
struct Server {
    child: std::process::Child,
    reader: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new("python3")
            .arg(dir.join("objectives.py"))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs objectives.py");
        let reader = BufReader::new(child.stdout.take().unwrap());
        Server { child, reader }
    }

    fn observe(
        &mut self,
        objective: &Objective,
        seed: u64,
        trial: usize,
        values: &[Value],
    ) -> (Option<f64>, Option<f64>) {
        let params: serde_json::Map<String, Json> = objective
            .names
            .iter()
            .zip(&objective.domains)
            .zip(values)
            .map(|((name, domain), value)| {
                let json = match (domain, value) {
                    (Domain::Choice { choices }, Value::Choice(i)) => json!(choices[*i]),
                    (Domain::Int { .. } | Domain::Pow2 { .. }, Value::Number(v)) => {
                        json!(*v as i64)
                    }
                    (_, Value::Number(v)) => json!(v),
                    (_, Value::Choice(i)) => json!(i),
                };
                (name.clone(), json)
            })
            .collect();
        let request = json!({
            "objective": objective.name, "seed": seed, "trial": trial, "params": params,
        });
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let answer: Json = serde_json::from_str(&line).unwrap();
        (answer["value"].as_f64(), answer["true"].as_f64())
    }
}

/// The objectives as `objectives.py` declares them, knobs resolved as a pipeline's are.
fn describe(dir: &Path) -> Vec<Objective> {
    let output = Command::new("python3")
        .arg(dir.join("objectives.py"))
        .arg("describe")
        .output()
        .expect("python3 runs objectives.py");
    assert!(output.status.success());
    let list: Vec<Json> = serde_json::from_slice(&output.stdout).unwrap();
    list.into_iter()
        .map(|o| {
            let knobs: Vec<file::Knob> = serde_json::from_value(o["knobs"].clone()).unwrap();
            let domains: Vec<Domain> = knobs
                .iter()
                .map(|k| Domain::from_declaration(k).unwrap())
                .collect();
            let start = knobs
                .iter()
                .zip(&domains)
                .map(|(k, d)| match &o["start"][&k.name] {
                    Json::String(literal) => arun::config::knob_site::parse(d, literal).unwrap(),
                    number => Value::Number(number.as_f64().unwrap()),
                })
                .collect();
            Objective {
                name: o["name"].as_str().unwrap().to_string(),
                names: knobs.iter().map(|k| k.name.clone()).collect(),
                domains,
                start,
                optimum: o["optimum"].as_f64().unwrap(),
                set: o["set"].as_str().unwrap_or("tuning").to_string(),
            }
        })
        .collect()
}

/// The Python of benches/.venv with Optuna, made by setup-venv.sh when missing.
fn venv_python(dir: &Path) -> Result<PathBuf, String> {
    let output = Command::new("bash")
        .arg(dir.join("setup-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("cannot run setup-venv.sh: {err}"))?;
    if !output.status.success() {
        return Err("setup-venv.sh failed".to_string());
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    ))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn format_regret(value: f64) -> String {
    if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
