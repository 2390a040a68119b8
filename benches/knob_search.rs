//! Knob-search efficiency: arun's strategy against Optuna's samplers (TPE, which Optuna 5 makes
//! multivariate by default, independent TPE, GP, random), on objectives that look like training
//! (`benches/knob_search/objectives.py`, shared by every method). The objectives come in two
//! sets, each with its own table: the tuning set the search's defaults were chosen on, and a
//! held-out set written before any retuning and never used to choose them.
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
//! of evaluations as the sequential search's. arun's workers do not wait for a whole batch: a
//! worker that is free gets the next proposal, made with the other workers' assignments pending,
//! unless another run's result is due (`arun::run::due`). That is measured too (`w=4`: four
//! workers on a simulated clock, clean runs of five minutes give or take 1%, crashes after 30 s,
//! with the simulated hours the 30 evaluations took; `ARUN_BENCH_WAIT=0` simulates workers that
//! never wait, as arun's did before they waited). A crash frees a worker early, so the workers
//! are also measured in the hours that batches of as many took (a batch lasts as long as its
//! longest run): their regret then, and the evaluations they made in that time.
//!
//! The medians of a few dozen seeds are themselves noisy, so each ratio in the tables comes with
//! a 90% bootstrap interval over seeds: the seeds resampled with replacement, the ratio of the
//! medians taken again each time.
//!
//! Run with `cargo bench --bench knob_search` (25 seeds, 60 trials; `ARUN_BENCH_SEEDS=5` for a
//! quick look; `ARUN_BENCH_OPTUNA_JSON=file` reuses a saved output of `optuna_baselines.py`;
//! `ARUN_BENCH_OPTUNA=0` leaves Optuna out; `ARUN_BENCH_BATCHES=0` leaves the batches out and
//! `ARUN_BENCH_BATCHES=4` runs only that size; `ARUN_BENCH_WORKERS=0` leaves the workers out;
//! `ARUN_BENCH_TRIALS=30` stops the sequential search at 30; `ARUN_BENCH_ONLY=branin,categorical`
//! runs only those objectives; `ARUN_BENCH_FIRST_SEED=200` runs seeds from 200 on, to check a
//! finding on seeds it was not made on).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use arun::config::file;
use arun::config::knob::{Domain, Value};
use arun::propose::knobs::random::Rng;
use arun::propose::knobs::strategy::{Outcome, Search, Trial, with_pending};
use arun::run::due;
use serde_json::{Value as Json, json};

const TRIALS: usize = 60;
const CHECKPOINTS: [usize; 3] = [15, 30, 60];
/// Batches run to this many evaluations (the goal's checkpoint).
const BATCH_TRIALS: usize = 30;
const BATCH_SIZES: [usize; 3] = [2, 4, 8];
/// Workers that each get a proposal as soon as they finish (`ARUN_BENCH_WORKERS`).
const WORKERS: usize = 4;
/// Optuna's samplers as `optuna_baselines.py` names them, and as the tables do.
const OPTUNA: [(&str, &str); 4] = [
    ("tpe", "TPE"),
    ("tpe_indep", "TPE indep"),
    ("gp", "GP"),
    ("random", "random"),
];
/// Resamples of the seeds for a bootstrap interval, and its coverage.
const RESAMPLES: usize = 2000;
const COVERAGE: f64 = 0.9;

struct Objective {
    name: String,
    names: Vec<String>,
    domains: Vec<Domain>,
    start: Vec<Value>,
    optimum: f64,
    /// `tuning` or `held-out`.
    set: String,
}

/// What to run, from the `ARUN_BENCH_*` variables.
struct Settings {
    seeds: u64,
    /// The first seed: the run covers `first_seed..first_seed + seeds`.
    first_seed: u64,
    /// Evaluations of the sequential search, and the checkpoints up to them.
    trials: usize,
    checkpoints: Vec<usize>,
    /// Batch sizes to run (empty: none).
    batch_sizes: Vec<usize>,
    /// Workers proposed for one at a time as each is free (0: not run).
    workers: usize,
    /// Whether the workers wait for results that are due, as arun does.
    wait: bool,
    optuna: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: usize| -> usize {
            std::env::var(name).ok().map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
            })
        };
        let trials = number("ARUN_BENCH_TRIALS", TRIALS);
        assert!(
            trials >= BATCH_TRIALS,
            "ARUN_BENCH_TRIALS must be at least {BATCH_TRIALS}"
        );
        let batch_sizes = match std::env::var("ARUN_BENCH_BATCHES").as_deref() {
            Err(_) | Ok("1") => BATCH_SIZES.to_vec(),
            Ok("0") => Vec::new(),
            Ok(list) => list
                .split(',')
                .map(|q| q.parse().expect("ARUN_BENCH_BATCHES: sizes such as 2,4"))
                .collect(),
        };
        Settings {
            seeds: number("ARUN_BENCH_SEEDS", 25) as u64,
            first_seed: number("ARUN_BENCH_FIRST_SEED", 0) as u64,
            trials,
            checkpoints: CHECKPOINTS.into_iter().filter(|&c| c <= trials).collect(),
            batch_sizes,
            workers: number("ARUN_BENCH_WORKERS", WORKERS),
            wait: std::env::var("ARUN_BENCH_WAIT").map_or(true, |v| v != "0"),
            optuna: std::env::var("ARUN_BENCH_OPTUNA").map_or(true, |v| v != "0"),
        }
    }
}

/// Per objective, per seed: regrets at each checkpoint of the sequential search, and at
/// `BATCH_TRIALS` for each batch size and for the workers.
struct Runs {
    sequential: Vec<Vec<Vec<f64>>>,
    batches: Vec<Vec<Vec<f64>>>,
    workers: Vec<Vec<f64>>,
    /// The workers' simulated hours to `BATCH_TRIALS` evaluations.
    worker_hours: Vec<Vec<f64>>,
    /// With batches as large as there are workers, at the simulated hours those batches took to
    /// their last full batch before `BATCH_TRIALS` evaluations: the batches' regret, and the
    /// workers' regret and evaluations (empty: not run).
    same_hours: Vec<Vec<SameHours>>,
}

/// Batches and workers compared in the same simulated hours.
struct SameHours {
    batches: f64,
    workers: f64,
    evaluations: usize,
}

fn main() {
    let settings = Settings::from_env();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/knob_search");
    let mut objectives = describe(&dir);
    if let Ok(only) = std::env::var("ARUN_BENCH_ONLY") {
        objectives.retain(|o| only.split(',').any(|name| name == o.name));
    }

    // Optuna runs in its own process while arun's strategy runs here: two cores, both busy.
    let optuna = start_optuna(&dir, &settings);
    let started = Instant::now();
    let runs = run_all(&dir, &objectives, &settings);
    let arun_seconds = started.elapsed().as_secs_f64();
    let optuna_json = optuna.finish();

    println!(
        "median regret over {} seeds{} (lower is better), 90% bootstrap intervals of the ratios in \
         brackets; arun's strategy took {:.1} ms per suggestion on average{}",
        settings.seeds,
        if settings.first_seed == 0 {
            String::new()
        } else {
            format!(
                " ({}–{})",
                settings.first_seed,
                settings.first_seed + settings.seeds - 1
            )
        },
        1000.0 * arun_seconds
            / (settings.seeds as f64 * objectives.len() as f64 * (settings.trials - 1) as f64),
        optuna_json
            .as_ref()
            .and_then(|j| j["optuna"].as_str())
            .map(|v| format!("; Optuna {v}"))
            .unwrap_or_default()
    );
    for set in ["tuning", "held-out"] {
        print_set(set, &objectives, &runs, optuna_json.as_ref(), &settings);
    }
    if !settings.batch_sizes.is_empty() || settings.workers > 0 {
        print_batches(&objectives, &runs, &settings);
    }
    print_suggestion_times();
}

fn start_optuna(dir: &Path, settings: &Settings) -> Optuna {
    if !settings.optuna {
        return Optuna::Missing("ARUN_BENCH_OPTUNA=0".to_string());
    }
    if let Ok(path) = std::env::var("ARUN_BENCH_OPTUNA_JSON") {
        assert!(
            settings.first_seed == 0,
            "a saved Optuna output holds seeds from 0: leave ARUN_BENCH_FIRST_SEED out with \
             ARUN_BENCH_OPTUNA_JSON"
        );
        return Optuna::Saved(PathBuf::from(path));
    }
    match venv_python(dir) {
        Ok(python) => Optuna::Running(
            Command::new(python)
                .arg(dir.join("optuna_baselines.py"))
                .args(["--seeds", &settings.seeds.to_string()])
                .args(["--first-seed", &settings.first_seed.to_string()])
                .args(["--trials", &settings.trials.to_string()])
                .arg("--checkpoints")
                .arg(
                    settings
                        .checkpoints
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .current_dir(dir)
                .stdout(Stdio::piped())
                .spawn()
                .expect("the venv's python runs"),
        ),
        Err(why) => Optuna::Missing(why),
    }
}

/// arun's search on every objective and seed: sequential, then in batches.
fn run_all(dir: &Path, objectives: &[Objective], settings: &Settings) -> Runs {
    let mut server = Server::start(dir);
    let seeds = settings.first_seed..settings.first_seed + settings.seeds;
    let mut sequential = Vec::new();
    for objective in objectives {
        sequential.push(
            seeds
                .clone()
                .map(|seed| {
                    run_arun(objective, seed, Mode::Batches(1), settings, &mut server).regrets
                })
                .collect(),
        );
        eprintln!("arun: {} done", objective.name);
    }
    let mut batches = Vec::new();
    // Batches as large as there are workers, per objective and seed: the hours and the regret at
    // their last full batch.
    let mut full_batches: Vec<Vec<(f64, f64)>> = Vec::new();
    for objective in objectives {
        let mut per_q: Vec<Vec<f64>> = Vec::new();
        for &q in &settings.batch_sizes {
            let tallies: Vec<Tally> = seeds
                .clone()
                .map(|seed| run_arun(objective, seed, Mode::Batches(q), settings, &mut server))
                .collect();
            per_q.push(tallies.iter().map(|t| *t.regrets.last().unwrap()).collect());
            if q == settings.workers {
                full_batches.push(tallies.iter().map(|t| t.full_batches).collect());
            }
        }
        if !per_q.is_empty() {
            eprintln!("arun: {} batches done", objective.name);
        }
        batches.push(per_q);
    }
    let (mut workers, mut worker_hours) = (Vec::new(), Vec::new());
    let mut same_hours = Vec::new();
    for (i, objective) in objectives.iter().enumerate() {
        let mode = Mode::Workers {
            count: settings.workers,
            wait: settings.wait,
            until: None,
        };
        let tallies: Vec<Tally> = match settings.workers {
            0 => Vec::new(),
            _ => seeds
                .clone()
                .map(|seed| run_arun(objective, seed, mode, settings, &mut server))
                .collect(),
        };
        workers.push(tallies.iter().map(|t| *t.regrets.last().unwrap()).collect());
        worker_hours.push(tallies.iter().map(|t| t.hours).collect());
        // The same workers given the time the batches took: a crash frees a worker early, so in
        // the same hours workers make more evaluations than batches do.
        let compared: Vec<SameHours> = match full_batches.get(i) {
            Some(full) if settings.workers > 0 => seeds
                .clone()
                .zip(full)
                .map(|(seed, &(hours, batches))| {
                    let mode = Mode::Workers {
                        count: settings.workers,
                        wait: settings.wait,
                        until: Some(hours * 3600.0),
                    };
                    let (workers, evaluations) =
                        run_arun(objective, seed, mode, settings, &mut server)
                            .at_until
                            .expect("the workers ran to the given second");
                    SameHours {
                        batches,
                        workers,
                        evaluations,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        same_hours.push(compared);
        if settings.workers > 0 {
            eprintln!("arun: {} workers done", objective.name);
        }
    }
    Runs {
        sequential,
        batches,
        workers,
        worker_hours,
        same_hours,
    }
}

/// The table of one set of objectives: arun's median regrets and Optuna's samplers'.
fn print_set(
    set: &str,
    objectives: &[Objective],
    runs: &Runs,
    optuna: Option<&Json>,
    settings: &Settings,
) {
    let at = |checkpoint: usize| settings.checkpoints.iter().position(|&c| c == checkpoint);
    let names: Vec<&str> = OPTUNA.iter().map(|(_, shown)| *shown).collect();
    println!();
    println!("{set} objectives:");
    println!();
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
    for (objective, arun) in objectives.iter().zip(&runs.sequential) {
        if objective.set != set {
            continue;
        }
        let ours = |checkpoint: usize| at(checkpoint).map(|k| column(arun, k));
        let theirs = |method: &str, checkpoint: usize| {
            optuna_at(optuna?, &objective.name, method, checkpoint, settings.seeds)
        };
        // The sampler with the lowest median at a checkpoint, and its regrets there.
        let best = |checkpoint: usize| -> Option<Vec<f64>> {
            OPTUNA
                .iter()
                .filter_map(|(method, _)| theirs(method, checkpoint))
                .min_by(|a, b| median(a).total_cmp(&median(b)))
        };
        let ratio = ours(30).zip(best(30)).map(|(a, b)| {
            let value = median(&a) / median(&b);
            if value.is_finite() && value > 0.0 {
                logs.push(value.ln());
            }
            format!("{value:.2} ({})", interval(&a, &b))
        });
        let cell = |v: Option<Vec<f64>>| v.map_or("n/a".to_string(), |v| format_regret(median(&v)));
        let sampler_cells: Vec<String> = OPTUNA
            .iter()
            .map(|(method, _)| cell(theirs(method, 30)))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            objective.name,
            cell(ours(15)),
            cell(best(15)),
            cell(ours(30)),
            sampler_cells.join(" | "),
            ratio.unwrap_or_else(|| "n/a".to_string()),
            cell(ours(60)),
            cell(best(60)),
        );
    }
    if !logs.is_empty() {
        println!();
        println!(
            "geometric mean of arun/best Optuna at 30 trials ({set}): {:.2}",
            (logs.iter().sum::<f64>() / logs.len() as f64).exp()
        );
    }
}

/// The batch table: median regret at `BATCH_TRIALS` evaluations for each batch size and for the
/// workers, beside the sequential search's, and batches of 4 and the workers against it.
fn print_batches(objectives: &[Objective], runs: &Runs, settings: &Settings) {
    let k = settings
        .checkpoints
        .iter()
        .position(|&c| c == BATCH_TRIALS)
        .expect("the sequential search reaches the batches' checkpoint");
    let sizes = &settings.batch_sizes;
    println!();
    let w = settings.workers;
    let mut what = Vec::new();
    if !sizes.is_empty() {
        what.push("batches of q proposals at once (earlier ones of a batch pending)".to_string());
    }
    if w > 0 {
        let waiting = if settings.wait {
            "none while another run's result is due"
        } else {
            "without waiting for results that are due"
        };
        what.push(format!(
            "w={w} workers on a simulated clock, each proposed for when it is free, {waiting}"
        ));
    }
    println!(
        "{}, median regret at {BATCH_TRIALS} evaluations:",
        what.join("; ")
    );
    println!();
    let four = sizes.iter().position(|&q| q == 4);
    let mut heads: Vec<String> = sizes.iter().map(|q| format!("q={q}")).collect();
    if four.is_some() {
        heads.push("q=4/q=1".to_string());
    }
    if w > 0 {
        heads.push(format!("w={w}"));
        heads.push(format!("w={w}/q=1"));
        heads.push(format!("w={w} hours"));
    }
    // Batches and workers in the same hours (`Runs::same_hours`).
    let same = sizes.contains(&w) && w > 0;
    if same {
        heads.push(format!("q={w}, full batches"));
        heads.push(format!("w={w}, same hours"));
        heads.push(format!("w={w} evaluations"));
        heads.push(format!("w={w}/q={w}, same hours"));
    }
    println!(
        "| objective | set | q=1 | {} |\n|---|---|---|{}",
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for (i, objective) in objectives.iter().enumerate() {
        let sequential = column(&runs.sequential[i], k);
        let per_q = &runs.batches[i];
        let against = |runs: &[f64]| {
            format!(
                "{:.2} ({})",
                median(runs) / median(&sequential),
                interval(runs, &sequential)
            )
        };
        let mut cells: Vec<String> = per_q
            .iter()
            .map(|runs| format_regret(median(runs)))
            .collect();
        if let Some(j) = four {
            cells.push(against(&per_q[j]));
        }
        if w > 0 {
            cells.push(format_regret(median(&runs.workers[i])));
            cells.push(against(&runs.workers[i]));
            cells.push(format!("{:.2}", median(&runs.worker_hours[i])));
        }
        if same {
            let compared = &runs.same_hours[i];
            let batches: Vec<f64> = compared.iter().map(|c| c.batches).collect();
            let workers: Vec<f64> = compared.iter().map(|c| c.workers).collect();
            let evaluations: Vec<f64> = compared.iter().map(|c| c.evaluations as f64).collect();
            cells.push(format_regret(median(&batches)));
            cells.push(format_regret(median(&workers)));
            cells.push(format!("{:.0}", median(&evaluations)));
            cells.push(format!(
                "{:.2} ({})",
                median(&workers) / median(&batches),
                interval(&workers, &batches)
            ));
        }
        println!(
            "| {} | {} | {} | {} |",
            objective.name,
            objective.set,
            format_regret(median(&sequential)),
            cells.join(" | ")
        );
    }
}

/// How long one suggestion takes as results pile up.
fn print_suggestion_times() {
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
        let mut rng = Rng::new(results as u64);
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

/// One sampler's regrets per seed at `checkpoint`, from `optuna_baselines.py`'s output (the first
/// `seeds` of a saved run with more); `None` where it has no such column.
fn optuna_at(
    json: &Json,
    objective: &str,
    method: &str,
    checkpoint: usize,
    seeds: u64,
) -> Option<Vec<f64>> {
    // Outputs written before the checkpoints were recorded have the default ones, cut short by
    // `--trials`.
    let k = match json["checkpoints"].as_array() {
        Some(list) => list
            .iter()
            .position(|c| c.as_u64() == Some(checkpoint as u64))?,
        None => CHECKPOINTS.iter().position(|&c| c == checkpoint)?,
    };
    let runs = json["results"][objective][method].as_array()?;
    runs.iter()
        .take(seeds as usize)
        .map(|run| run.get(k)?.as_f64())
        .collect()
}

/// The `k`-th checkpoint of each seed's run.
fn column(runs: &[Vec<f64>], k: usize) -> Vec<f64> {
    runs.iter().map(|run| run[k]).collect()
}

/// A 90% bootstrap interval of `median(a) / median(b)`, the seeds (the same for both: they
/// share a seed's noise) resampled with replacement.
fn interval(a: &[f64], b: &[f64]) -> String {
    let n = a.len().min(b.len());
    let mut rng = Rng::new(n as u64);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            let pick = |v: &[f64]| picks.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            median(&pick(a)) / median(&pick(b))
        })
        .filter(|r| !r.is_nan())
        .collect();
    ratios.sort_by(f64::total_cmp);
    if ratios.is_empty() {
        return "n/a".to_string();
    }
    let tail = (1.0 - COVERAGE) / 2.0;
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    format!("{:.2}–{:.2}", at(tail), at(1.0 - tail))
}

enum Optuna {
    Saved(PathBuf),
    Running(std::process::Child),
    Missing(String),
}

impl Optuna {
    /// Its output, once there.
    fn finish(self) -> Option<Json> {
        match self {
            // A saved output still being written (Optuna started beside this bench) is waited
            // for.
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
        }
    }
}

/// How proposals are made and evaluated.
#[derive(Clone, Copy)]
enum Mode {
    /// `q` at a time, each batch evaluated whole before the next is proposed.
    Batches(usize),
    /// `q` workers, each given a proposal as soon as it is free, on a simulated clock (see
    /// `run_workers`); `wait`: as arun does, no proposal while another run's result is due;
    /// `until`: run to this simulated second rather than to `BATCH_TRIALS` evaluations.
    Workers {
        count: usize,
        wait: bool,
        until: Option<f64>,
    },
}

/// The workers' simulated clock: a clean run takes five minutes (autoresearch's budget) give or
/// take up to 1%; a crash ends after a tenth of that (out of memory in the first steps).
const RUN_SECONDS: f64 = 300.0;
const RUN_JITTER: f64 = 0.01;
const CRASH_SECONDS: f64 = 30.0;

/// How long the `n`-th run of a seed takes on the simulated clock.
fn run_length(seed: u64, n: usize, crashed: bool) -> f64 {
    if crashed {
        return CRASH_SECONDS;
    }
    let mut rng = Rng::for_step(seed, n as u64);
    RUN_SECONDS * (1.0 + RUN_JITTER * (2.0 * rng.unit() - 1.0))
}

/// The regrets of one seed's search, kept as its trials come in.
struct Tally<'a> {
    objective: &'a Objective,
    checkpoints: &'a [usize],
    trials: Vec<Trial>,
    /// The best value observed, and its noise-free value.
    kept: Option<(f64, f64)>,
    regrets: Vec<f64>,
    /// The workers' simulated clock when the last evaluation came in, in hours.
    hours: f64,
    /// Batches: the hours when the last full batch came in, and the regret then (the last batch
    /// holds fewer than `q` when `q` does not divide the evaluations, and leaves GPUs idle).
    full_batches: (f64, f64),
    /// Workers run to a given second (`Mode::Workers::until`): the regret then, and the
    /// evaluations that had come in.
    at_until: Option<(f64, usize)>,
}

impl Tally<'_> {
    /// The noise-free regret of the trial kept so far.
    fn regret(&self) -> f64 {
        self.kept
            .map_or(f64::NAN, |(_, truth)| truth - self.objective.optimum)
    }

    /// An observation (`None`: a crash) of `values` comes in.
    fn add(&mut self, values: Vec<Value>, value: Option<f64>, true_value: Option<f64>) {
        let outcome = match value {
            Some(v) => {
                if self.kept.is_none_or(|(best, _)| v < best) {
                    self.kept = Some((v, true_value.unwrap()));
                }
                Outcome::Loss(v)
            }
            None => Outcome::Crash,
        };
        self.trials.push(Trial { values, outcome });
        if self.checkpoints.contains(&self.trials.len()) {
            self.regrets.push(self.regret());
        }
    }
}

/// Runs arun's search for one seed, for the settings' trials (sequential) or `BATCH_TRIALS`
/// (batches, workers): the regret at each checkpoint on the way, and (workers) the simulated
/// hours it took.
fn run_arun<'a>(
    objective: &'a Objective,
    seed: u64,
    mode: Mode,
    settings: &'a Settings,
    server: &mut Server,
) -> Tally<'a> {
    let mut tally = Tally {
        objective,
        checkpoints: &settings.checkpoints,
        trials: Vec::new(),
        kept: None,
        regrets: Vec::new(),
        hours: 0.0,
        full_batches: (0.0, f64::NAN),
        at_until: None,
    };
    let search = Search::new(&objective.domains, seed);
    match mode {
        Mode::Batches(q) => {
            let wanted = if q == 1 {
                settings.trials
            } else {
                BATCH_TRIALS
            };
            run_batches(&mut tally, &search, q, wanted, seed, server);
        }
        Mode::Workers { count, wait, until } => {
            run_workers(&mut tally, &search, count, wait, until, seed, server);
        }
    }
    tally
}

/// Batches of `q`: all proposed (each seeing the earlier ones as pending), then all evaluated,
/// taking as long as their longest run on the workers' clock; the baseline alone first.
fn run_batches(
    tally: &mut Tally,
    search: &Search,
    q: usize,
    wanted: usize,
    seed: u64,
    server: &mut Server,
) {
    let mut clock = 0.0;
    while tally.trials.len() < wanted {
        let mut batch: Vec<Vec<Value>> = Vec::new();
        if tally.trials.is_empty() {
            batch.push(tally.objective.start.clone());
        }
        while !tally.trials.is_empty()
            && batch.len() < q
            && tally.trials.len() + batch.len() < wanted
        {
            let values = search
                .suggest(&with_pending(&tally.trials, &batch))
                .expect("the benchmark spaces are never exhausted");
            batch.push(values);
        }
        let mut longest: f64 = 0.0;
        let full = batch.len() == q || tally.trials.is_empty();
        for values in batch {
            let n = tally.trials.len();
            let (value, true_value) = server.observe(tally.objective, seed, n, &values);
            longest = longest.max(run_length(seed, n, value.is_none()));
            tally.add(values, value, true_value);
        }
        clock += longest;
        if full {
            tally.full_batches = (clock / 3600.0, tally.regret());
        }
    }
}

/// A run on the workers' simulated clock; its outcome is drawn when it starts (its length
/// depends on it) and comes in when it ends.
struct Running {
    values: Vec<Value>,
    started: f64,
    ends: f64,
    value: Option<f64>,
    true_value: Option<f64>,
}

/// `count` workers to `BATCH_TRIALS` evaluations (or to the second `until`) on a simulated
/// clock: the baseline alone, then a proposal (seeing the runs in flight as pending) for each
/// free worker, the moment it is free; with `waits`, not while another run's result is due
/// (`arun::run::due`, the session's rule).
fn run_workers(
    tally: &mut Tally,
    search: &Search,
    count: usize,
    waits: bool,
    until: Option<f64>,
    seed: u64,
    server: &mut Server,
) {
    let mut clock = 0.0;
    let mut running: Vec<Running> = Vec::new();
    let mut lengths: Vec<f64> = Vec::new();
    let mut wait = due::Wait::default();
    let mut proposed = 0;
    let more = |proposed: usize, clock: f64| match until {
        Some(until) => clock < until,
        None => proposed < BATCH_TRIALS,
    };
    while match until {
        Some(_) => tally.at_until.is_none(),
        None => tally.trials.len() < BATCH_TRIALS,
    } {
        let usual = due::usual_length(lengths.iter().rev().copied()).filter(|_| waits);
        let elapsed = |running: &[Running]| -> Vec<f64> {
            running.iter().map(|r| clock - r.started).collect()
        };
        let room = if proposed == 0 { 1 } else { count };
        let baseline_done = !tally.trials.is_empty();
        while (proposed == 0 || baseline_done)
            && running.len() < room
            && more(proposed, clock)
            && !wait.holds(clock, usual, &elapsed(&running))
        {
            let values = if proposed == 0 {
                tally.objective.start.clone()
            } else {
                let pending: Vec<Vec<Value>> = running.iter().map(|r| r.values.clone()).collect();
                search
                    .suggest(&with_pending(&tally.trials, &pending))
                    .expect("the benchmark spaces are never exhausted")
            };
            let (value, true_value) = server.observe(tally.objective, seed, proposed, &values);
            let length = run_length(seed, proposed, value.is_none());
            running.push(Running {
                values,
                started: clock,
                ends: clock + length,
                value,
                true_value,
            });
            proposed += 1;
        }
        // On to the next run's end, or to the moment the wait ends: a due run leaves its window,
        // or the wait has lasted a window.
        let mut next = running.iter().map(|r| r.ends).fold(f64::INFINITY, f64::min);
        if let Some(usual) = usual
            && running.len() < count
            && more(proposed, clock)
        {
            for run in &running {
                if due::is_due(usual, clock - run.started) {
                    next = next.min(run.started + usual + due::window(usual) + 1e-6);
                }
            }
            if let Some(ends) = wait.ends(usual).filter(|&t| t > clock) {
                next = next.min(ends);
            }
        }
        if let Some(until) = until
            && next > until
        {
            tally.at_until = Some((tally.regret(), tally.trials.len()));
            break;
        }
        clock = next;
        while let Some(i) = running.iter().position(|r| r.ends <= clock) {
            let run = running.remove(i);
            if run.value.is_some() {
                lengths.push(run.ends - run.started);
            }
            tally.add(run.values, run.value, run.true_value);
        }
    }
    tally.hours = clock / 3600.0;
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

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
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
