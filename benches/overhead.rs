//! Runner overhead: what arun adds per experiment over the protocol's bare steps.
//!
//! A repository of ~1000 files, a proposer that appends one line to `train.py`, a trainer that
//! only prints its metric. arun runs N experiments; a bash script does the seeds' steps for the
//! same N (edit, `git commit`, run, `grep`, `git reset`, append a row). A second part measures
//! arun's peak memory with a 1 KB and a 1 GB experiment log.
//!
//! Run with `cargo bench --bench overhead` (N defaults to 40: `ARUN_BENCH_N=100` for more).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("ARUN_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    make_repo_files(&template);

    let arun_time = time_arun(dir.path(), &template, n);
    let bash_time = time_bash(dir.path(), &template, n);
    println!("per-experiment overhead, {n} experiments, repository of 1000 files:");
    println!("  arun:        {:>7.1} ms", ms(arun_time) / n as f64);
    println!("  bash script: {:>7.1} ms", ms(bash_time) / n as f64);

    println!("arun peak memory (VmHWM) by experiment log size:");
    for (label, bytes) in [("1 KB", 1u64 << 10), ("1 GB", 1u64 << 30)] {
        let peak = peak_memory_with_log(dir.path(), &template, bytes);
        println!("  {label} log: {:>6.1} MB", peak as f64 / 1024.0);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn make_repo_files(template: &Path) {
    for i in 0..1000 {
        let sub = template.join(format!("src/module{}", i / 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("file{i}.txt")),
            format!("content {i}\n").repeat(20),
        )
        .unwrap();
    }
    std::fs::write(template.join("train.sh"), "echo 'val_loss: 1.000000'\n").unwrap();
}

fn pipeline(dir: &Path, template: &Path, name: &str, run: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r##"[target]
repo = "{name}-repo"
template = "{template}"
editable = ["train.sh"]

[experiment]
run = "{run}"
budget = "10m"

[metric]
name = "val_loss"
regex = '^val_loss:\s*([0-9.]+)'

[proposer]
kind = "agent"

[proposer.agent]
command = "echo \"# $ARUN_EXPERIMENT\" >> train.sh && echo 'DESCRIPTION: no-op'"
"##,
            template = template.display()
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

fn time_arun(dir: &Path, template: &Path, n: usize) -> Duration {
    let file = pipeline(dir, template, "timed", "sh train.sh");
    // The first call creates the repository and runs the baseline; time the experiments after.
    assert!(arun(&file, 1).status().unwrap().success());
    let start = Instant::now();
    assert!(arun(&file, n + 1).status().unwrap().success());
    start.elapsed()
}

fn time_bash(dir: &Path, template: &Path, n: usize) -> Duration {
    let repo = dir.join("bash-repo");
    copy(template, &repo);
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=b",
        "-c",
        "user.email=b@b",
        "commit",
        "-qm",
        "init",
    ]);
    let script = format!(
        r##"set -e
printf 'commit\tval_loss\tmemory_gb\tstatus\tdescription\n' > results.tsv
for i in $(seq 1 {n}); do
  echo "# $i" >> train.sh
  git -c user.name=b -c user.email=b@b commit -qam "experiment $i"
  sh train.sh > run.log 2>&1
  value=$(grep '^val_loss:' run.log | sed 's/val_loss: *//')
  commit=$(git rev-parse --short=7 HEAD)
  git reset -q --hard HEAD~1
  printf '%s\t%s\t0.0\tdiscard\tno-op\n' "$commit" "$value" >> results.tsv
done
"##
    );
    let start = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

/// arun's peak resident memory in KiB over a run whose experiment writes `bytes` of output.
fn peak_memory_with_log(dir: &Path, template: &Path, bytes: u64) -> u64 {
    let name = format!("log{bytes}");
    let run =
        format!("head -c {bytes} /dev/zero | tr '\\\\0' x | fold -w 100; echo; echo val_loss: 1.0");
    let file = pipeline(dir, template, &name, &run);
    let mut child = arun(&file, 2).spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = dir.join(format!("{name}-repo/.git/arun/bench/logs/1.log"));
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(
        size >= bytes,
        "the experiment log has {size} bytes, expected {bytes}"
    );
    peak
}

fn copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
