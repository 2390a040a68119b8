//! Knob-search efficiency: arun's strategy against Optuna's TPE and random search, on objectives
//! that look like training (`benches/knob_search/objectives.py`, shared by every method).
//!
//! For each objective and seed, each method gets the starting assignment (the baseline) as its
//! first trial, then chooses the rest; the regret after N trials is the noise-free value of the
//! trial with the best observed value, minus the optimum. The table shows the median over seeds.
//! arun's side is `arun::knobs::strategy::Search`, the code the `knobs` proposer runs; the
//! objectives are evaluated by `objectives.py serve`. Optuna runs in benches/.venv, which
//! `benches/knob_search/setup-venv.sh` creates (pip install optuna).
//!
//! Run with `cargo bench --bench knob_search` (25 seeds, 60 trials; `ARUN_BENCH_SEEDS=5` for a
//! quick look; `ARUN_BENCH_OPTUNA_JSON=file` reuses a saved output of `optuna_baselines.py`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use arun::config::file;
use arun::knobs::strategy::{Outcome, Search, Trial};
use arun::knobs::{Domain, Value};
use serde_json::{Value as Json, json};

const TRIALS: usize = 60;
const CHECKPOINTS: [usize; 3] = [15, 30, 60];

struct Objective {
    name: String,
    names: Vec<String>,
    domains: Vec<Domain>,
    start: Vec<Value>,
    optimum: f64,
}

fn main() {
    let seeds: u64 = std::env::var("ARUN_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/knob_search");
    let objectives = describe(&dir);

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
            .map(|seed| run_arun(objective, seed, &mut server))
            .collect();
        eprintln!("arun: {} done", objective.name);
        arun_results.push(runs);
    }
    let arun_seconds = started.elapsed().as_secs_f64();

    let optuna_json: Option<Json> = match optuna {
        Optuna::Saved(path) => Some(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()),
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
    println!();
    let header: Vec<String> = CHECKPOINTS
        .iter()
        .flat_map(|c| {
            ["arun", "TPE", "random"]
                .iter()
                .map(move |m| format!("{m} @{c}"))
        })
        .collect();
    println!(
        "| objective | {} | arun/TPE @30 | arun/random @30 |",
        header.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(header.len()));
    let mut log_ratios = (Vec::new(), Vec::new());
    for (objective, arun) in objectives.iter().zip(&arun_results) {
        let other = |method: &str| -> Option<Vec<Vec<f64>>> {
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
        let tpe = other("tpe");
        let random = other("random");
        let mut cells = Vec::new();
        let mut at30 = [f64::NAN; 3];
        for (k, checkpoint) in CHECKPOINTS.iter().enumerate() {
            for (m, runs) in [Some(arun.clone()), tpe.clone(), random.clone()]
                .iter()
                .enumerate()
            {
                let cell = runs.as_ref().map(|r| median(r.iter().map(|run| run[k])));
                if *checkpoint == 30 {
                    at30[m] = cell.unwrap_or(f64::NAN);
                }
                cells.push(cell.map_or("n/a".to_string(), format_regret));
            }
        }
        let ratio = |other: f64| {
            if other.is_nan() {
                "n/a".to_string()
            } else {
                format!("{:.2}", at30[0] / other)
            }
        };
        if at30[1].is_finite() && at30[1] > 0.0 && at30[0] > 0.0 {
            log_ratios.0.push((at30[0] / at30[1]).ln());
        }
        if at30[2].is_finite() && at30[2] > 0.0 && at30[0] > 0.0 {
            log_ratios.1.push((at30[0] / at30[2]).ln());
        }
        println!(
            "| {} | {} | {} | {} |",
            objective.name,
            cells.join(" | "),
            ratio(at30[1]),
            ratio(at30[2])
        );
    }
    let geometric = |logs: &[f64]| (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp();
    println!();
    println!(
        "geometric mean of the regret ratios at 30 trials: arun/TPE {:.2}, arun/random {:.2}",
        geometric(&log_ratios.0),
        geometric(&log_ratios.1)
    );
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
        let mut rng = arun::knobs::random::Rng::new(results as u64);
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

/// Runs arun's search for one seed; the regret at each checkpoint.
fn run_arun(objective: &Objective, seed: u64, server: &mut Server) -> Vec<f64> {
    let search = Search::new(&objective.domains, seed);
    let mut trials: Vec<Trial> = Vec::new();
    let mut kept: Option<(f64, f64)> = None;
    let mut regrets = Vec::new();
    for t in 0..TRIALS {
        let values = if t == 0 {
            objective.start.clone()
        } else {
            search
                .suggest(&trials)
                .expect("the benchmark spaces are never exhausted")
        };
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
                    Json::String(literal) => arun::knobs::edit::parse(d, literal).unwrap(),
                    number => Value::Number(number.as_f64().unwrap()),
                })
                .collect();
            Objective {
                name: o["name"].as_str().unwrap().to_string(),
                names: knobs.iter().map(|k| k.name.clone()).collect(),
                domains,
                start,
                optimum: o["optimum"].as_f64().unwrap(),
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
