//! Scaling with parallel workers: experiments per hour and device duty.
//!
//! A trainer that sleeps through a 2 s budget and prints its metric, a proposer that thinks for
//! 1 s, and 1, 2, 4 and 8 workers on fake devices (`gpus` set, so each worker's runs get their
//! own `CUDA_VISIBLE_DEVICES`; nothing uses them). For each, after the baseline, arun runs
//! `ROUNDS` experiments per worker; the figures are
//!
//! - experiments per hour against the ideal `workers × 3600 / budget`;
//! - device duty: the time runs took over `workers ×` the wall time (1.0: no worker ever waits);
//!
//! both over the loop, from the resume to the last result (see `Figures`), and the process's
//! whole time beside them.
//!
//! One worker with nothing proposed ahead is today's sequential loop (duty about 2/3 with these
//! times); `ahead = 1` overlaps its proposals.
//!
//! Run with `cargo bench --bench workers` (`ARUN_BENCH_ROUNDS=30` for more rounds; the first proposals and the start of arun are a fixed cost that fewer rounds weigh more).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BUDGET_SECONDS: f64 = 2.0;

fn main() {
    let rounds: usize = std::env::var("ARUN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "parallel workers: {BUDGET_SECONDS} s runs, 1 s proposals, {rounds} experiments per worker"
    );
    println!(
        "  {:<20} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "workers", "exp/hour", "ideal", "of ideal", "duty", "process"
    );
    for (workers, ahead) in [(1, Some(0)), (1, Some(1)), (2, None), (4, None), (8, None)] {
        let figures = measure(dir.path(), workers, ahead, rounds);
        let ideal = workers as f64 * 3600.0 / BUDGET_SECONDS;
        let label = match ahead {
            Some(ahead) => format!("{workers} (ahead {ahead})"),
            None => format!("{workers}"),
        };
        println!(
            "  {label:<20} {:>10.0} {ideal:>10.0} {:>9.1}% {:>7.1}% {:>9.1}s",
            figures.per_hour,
            100.0 * figures.per_hour / ideal,
            100.0 * figures.duty,
            figures.process
        );
    }
}

/// Experiments per hour and device duty of a run with `workers` workers.
fn measure(dir: &Path, workers: usize, ahead: Option<usize>, rounds: usize) -> Figures {
    let name = format!("w{workers}a{}", ahead.map_or(-1, |a| a as i64));
    let file = pipeline(dir, &name, workers, ahead);
    // The first call creates the repository and runs the baseline; the experiments after are
    // timed.
    assert!(arun(&file, 1).status().unwrap().success());
    let experiments = rounds * workers;
    let start = Instant::now();
    assert!(arun(&file, experiments + 1).status().unwrap().success());
    let process = start.elapsed().as_secs_f64();
    let journal = dir.join(format!("{name}-repo/.git/arun/bench/journal.jsonl"));
    let text = std::fs::read_to_string(journal).unwrap();
    let mut running = 0.0;
    let mut resumed = None;
    let mut last_recorded = 0.0;
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = event["time"].as_f64().unwrap_or(0.0);
        match event["event"].as_str() {
            Some("resumed") => resumed = Some(time),
            Some("measured") if resumed.is_some() => {
                running += event["measurement"]["seconds"].as_f64().unwrap();
            }
            Some("recorded") => last_recorded = time,
            _ => {}
        }
    }
    let wall = last_recorded - resumed.expect("a resumed run");
    Figures {
        per_hour: experiments as f64 * 3600.0 / wall,
        duty: running / (workers as f64 * wall),
        process,
    }
}

/// A run's figures over its loop: from the resume to the last result (the first proposals, which
/// nothing overlaps, included; the start of arun and the summary at its stop left out, and shown
/// apart as the process's whole time).
struct Figures {
    per_hour: f64,
    duty: f64,
    process: f64,
}

fn pipeline(dir: &Path, name: &str, workers: usize, ahead: Option<usize>) -> std::path::PathBuf {
    let template = dir.join(format!("{name}-template"));
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(
        template.join("train.sh"),
        format!("sleep {BUDGET_SECONDS}\necho 'val_loss: 1.000000'\n"),
    )
    .unwrap();
    let gpus: Vec<String> = (0..workers).map(|i| i.to_string()).collect();
    let ahead = ahead.map_or_else(String::new, |a| format!("ahead = {a}\n"));
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

[proposer]
kind = "agent"

[proposer.agent]
command = "sleep 1 && echo \"# $ARUN_EXPERIMENT\" >> train.sh && echo 'DESCRIPTION: no-op'"

[workers]
count = {workers}
gpus = [{gpus}]
{ahead}"##,
            template = template.display(),
            gpus = gpus.join(", "),
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
