//! The Slurm executor against the local one on the same machine: what a job costs.
//!
//! A trainer that prints the time it starts, sleeps through a 2 s budget and prints its metric;
//! a proposer that answers at once; 1, 2 and 4 workers (jobs in flight), each executor. For each,
//! after the baseline, arun runs `ROUNDS` experiments per worker; the figures are
//!
//! - start: seconds from the moment arun hands the run to the executor to the trainer's first
//!   line (for Slurm: the batch script, `sbatch`, the scheduler, the job's start on the node),
//!   median; measured with one worker, where the run follows its commit at once;
//! - end: seconds from the trainer's last line to arun's record of the run, median;
//! - per experiment: the loop's wall time per experiment and worker, and its overhead over the
//!   2 s budget.
//!
//! Needs a Slurm cluster that answers (`tests/scripts/slurm-cluster.sh start`, as root).
//! Run with `cargo bench --bench slurm` (`ARUN_BENCH_ROUNDS=10` for more rounds).

use std::path::Path;
use std::process::{Command, Stdio};

const BUDGET_SECONDS: f64 = 2.0;

fn main() {
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("is UP"));
    if !up {
        eprintln!(
            "no Slurm cluster answers `scontrol ping`; start one with tests/scripts/slurm-cluster.sh start"
        );
        std::process::exit(1);
    }
    let rounds: usize = std::env::var("ARUN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "executors: {BUDGET_SECONDS} s runs, instant proposals, {rounds} experiments per worker"
    );
    println!(
        "  {:<8} {:>8} {:>8} {:>8} {:>16} {:>10}",
        "executor", "workers", "start", "end", "per experiment", "overhead"
    );
    for workers in [1, 2, 4] {
        for executor in ["local", "slurm"] {
            let figures = measure(dir.path(), executor, workers, rounds);
            let start = match workers {
                1 => format!("{:.2}s", figures.start),
                _ => "-".to_string(),
            };
            println!(
                "  {executor:<8} {workers:>8} {start:>8} {:>7.2}s {:>15.2}s {:>9.2}s",
                figures.end, figures.per_experiment, figures.overhead
            );
        }
    }
}

struct Figures {
    start: f64,
    end: f64,
    per_experiment: f64,
    overhead: f64,
}

fn measure(dir: &Path, executor: &str, workers: usize, rounds: usize) -> Figures {
    let name = format!("{executor}{workers}");
    let file = pipeline(dir, &name, executor, workers);
    assert!(
        arun(&file, 1).status().unwrap().success(),
        "{name}: baseline"
    );
    let experiments = rounds * workers;
    assert!(
        arun(&file, experiments + 1).status().unwrap().success(),
        "{name}: experiments"
    );
    let run = dir.join(format!("{name}-repo/.git/arun/bench"));
    let text = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    let mut resumed = None;
    let mut last_recorded = 0.0;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let stamp = |n: u64, what: &str| -> f64 {
        let log = std::fs::read_to_string(run.join(format!("logs/{n}.log"))).unwrap();
        log.lines()
            .find_map(|line| line.strip_prefix(what))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` line in #{n}'s log: {log}"))
    };
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = event["time"].as_f64().unwrap_or(0.0);
        match event["event"].as_str() {
            Some("resumed") => resumed = Some(time),
            Some("committed") if resumed.is_some() => {
                starts.push(stamp(event["n"].as_u64().unwrap(), "started: ") - time);
            }
            Some("measured") if resumed.is_some() => {
                ends.push(time - stamp(event["n"].as_u64().unwrap(), "ended: "));
            }
            Some("recorded") => last_recorded = time,
            _ => {}
        }
    }
    let wall = last_recorded - resumed.expect("a resumed run");
    let per_experiment = wall * workers as f64 / experiments as f64;
    Figures {
        start: median(starts),
        end: median(ends),
        per_experiment,
        overhead: per_experiment - BUDGET_SECONDS,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn pipeline(dir: &Path, name: &str, executor: &str, workers: usize) -> std::path::PathBuf {
    let template = dir.join(format!("{name}-template"));
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(
        template.join("train.sh"),
        format!("echo \"started: $(date +%s.%N)\"\nsleep {BUDGET_SECONDS}\necho 'val_loss: 1.000000'\necho \"ended: $(date +%s.%N)\"\n"),
    )
    .unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r##"[target]
repo = "{name}-repo"
template = "{template}"
editable = ["train.sh"]

[experiment]
run = "sh train.sh"
budget = "{BUDGET_SECONDS}s"

[metric]
name = "val_loss"
regex = '^val_loss:\s*([0-9.]+)'

[decision.noise]
baseline-runs = 1

[proposer]
kind = "agent"

[proposer.agent]
command = "echo \"# $ARUN_EXPERIMENT\" >> train.sh && echo 'DESCRIPTION: no-op'"

[workers]
count = {workers}

[executor]
kind = "{executor}"
"##,
            template = template.display(),
        ),
    )
    .unwrap();
    path
}

fn arun(pipeline: &Path, max: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arun"));
    command
        .arg(pipeline)
        .args(["--tag", "bench", "--max-experiments", &max.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
