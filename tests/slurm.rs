//! The Slurm executor end to end, against a real one-node Slurm cluster
//! (`tests/scripts/slurm-cluster.sh start`, which `.ci/run` runs): runs as jobs side by side,
//! the hard limit and Slurm's own time limit, Ctrl-C, arun killed and resumed while its jobs
//! run, a job that never starts and one sbatch refuses.
//!
//! Outside CI the tests are skipped when no cluster answers; under `CI=true` that fails them.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use common::{Setup, Target};

/// Notes each run's experiment, Slurm job and GPUs, then trains.
const NOTED_RUN: &str = "echo job $ARUN_EXPERIMENT ${SLURM_JOB_ID:-none} \
${CUDA_VISIBLE_DEVICES:-none} $(date +%s.%N) >> $PIDFILE.jobs; python3 train.py; sleep 1; \
echo end $ARUN_EXPERIMENT $(date +%s.%N) >> $PIDFILE.jobs";

/// Tests share the cluster; the one that takes its node down has it to itself.
static CLUSTER: RwLock<()> = RwLock::new(());

/// The cluster, shared with the other tests; `None` after saying why the test is skipped.
fn shared_cluster() -> Option<RwLockReadGuard<'static, ()>> {
    cluster_up().then(|| CLUSTER.read().unwrap_or_else(|e| e.into_inner()))
}

/// Whether a cluster answers; `false` after saying why the test is skipped (outside CI only).
fn cluster_up() -> bool {
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("is UP"));
    if !up {
        assert!(
            !common::in_ci(),
            "no Slurm cluster answers `scontrol ping`; .ci/run starts one with \
             tests/scripts/slurm-cluster.sh start"
        );
        eprintln!("skipped: no Slurm cluster (run tests/scripts/slurm-cluster.sh start as root)");
    }
    up
}

/// A pipeline whose runs are Slurm jobs; `slurm` goes in `[executor.slurm]` (and may open
/// further tables).
fn slurm_target(plan: serde_json::Value, experiment: &str, slurm: &str) -> Target {
    slurm_target_running(NOTED_RUN, plan, experiment, slurm)
}

fn slurm_target_running(
    run: &str,
    plan: serde_json::Value,
    experiment: &str,
    slurm: &str,
) -> Target {
    Target::new(Setup {
        plan,
        run,
        experiment,
        extra: &format!("[executor]\nkind = \"slurm\"\n\n[executor.slurm]\n{slurm}"),
        ..Setup::default()
    })
}

/// The baseline runs once (its repeats are tested by the first test).
const ONE_BASELINE_RUN: &str = "\n[decision.noise]\nbaseline-runs = 1\n";

/// A job of the test's run as Slurm knows it.
#[derive(Debug, Clone)]
struct SlurmJob {
    id: u64,
    name: String,
    state: String,
}

/// Every job of this target's run, queued, running or ended, oldest first.
fn jobs_of(target: &Target) -> Vec<SlurmJob> {
    let out = Command::new("squeue")
        .args(["--noheader", "--me", "--states=all", "--format=%i|%j|%T|%k"])
        .output()
        .unwrap();
    let run_dir = target.run_dir().display().to_string();
    let mut jobs: Vec<SlurmJob> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(4, '|').collect();
            (fields.len() == 4 && fields[3].contains(&run_dir)).then(|| SlurmJob {
                id: fields[0].trim().parse().unwrap(),
                name: fields[1].to_string(),
                state: fields[2].to_string(),
            })
        })
        .collect();
    jobs.sort_by_key(|job| job.id);
    jobs
}

fn active(jobs: &[SlurmJob]) -> Vec<SlurmJob> {
    jobs.iter()
        .filter(|job| matches!(job.state.as_str(), "PENDING" | "RUNNING" | "COMPLETING"))
        .cloned()
        .collect()
}

/// The runs the jobs noted: experiment -> (Slurm job id, GPUs, start, end).
fn noted(target: &Target) -> BTreeMap<u64, (String, String, f64, Option<f64>)> {
    let text = std::fs::read_to_string(target.path("pids.jobs")).unwrap_or_default();
    let mut runs = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let n: u64 = fields[1].parse().unwrap();
        if fields[0] == "job" {
            runs.insert(
                n,
                (
                    fields[2].to_string(),
                    fields[3].to_string(),
                    fields[4].parse().unwrap(),
                    None,
                ),
            );
        } else if let Some(run) = runs.get_mut(&n) {
            run.3 = Some(fields[2].parse().unwrap());
        }
    }
    runs
}

/// arun started by a test, killed if the test fails before it ends.
struct Spawned(std::process::Child);

/// How a spawned arun ended.
struct Ended {
    status: std::process::ExitStatus,
    stderr: String,
}

impl Spawned {
    /// Waits for arun's end; its stdout is not read (it is short).
    fn wait(mut self) -> Ended {
        let status = self.0.wait().unwrap();
        let mut stderr = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Ended { status, stderr }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The experiments whose first run hung (see the Ctrl-C test).
fn hung(target: &Target) -> Vec<u64> {
    (1..10)
        .filter(|n| target.path(&format!("pids.hung{n}")).exists())
        .collect()
}

fn wait_until(target: &Target, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; jobs: {:?}; noted: {:?}",
            jobs_of(target),
            std::fs::read_to_string(target.path("pids.jobs"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runs_are_slurm_jobs_side_by_side_on_the_gpus_slurm_hands_out() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let target = slurm_target(
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        "gres = \"gpu:1\"\n\n[workers]\ncount = 2",
    );
    let run = target.arun(&["--max-experiments", "5"]);
    run.assert_code(0);
    assert_eq!(run.exp_lines().len(), 5, "{}", run.stdout());

    // Every run was a Slurm job of its own, named after the run and the experiment, and saw
    // the one GPU Slurm gave it.
    let runs = noted(&target);
    assert_eq!(runs.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let jobs = jobs_of(&target);
    let names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
    for n in 0..5 {
        let (job_id, gpus, _, _) = &runs[&n];
        let job = jobs
            .iter()
            .find(|job| job.id.to_string() == *job_id)
            .unwrap_or_else(|| panic!("#{n} ran in job {job_id}, not one of the run's: {jobs:?}"));
        assert!(job.name.starts_with(&format!("arun-test-{n}-")), "{job:?}");
        assert_eq!(job.state, "COMPLETED");
        assert!(gpus == "0" || gpus == "1", "#{n} saw GPUs {gpus}");
    }
    // One job per run (the baseline's repeats included), each named after its run.
    let mut expected: Vec<String> = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "measured")
        .map(|e| format!("arun-test-{}-{}", e["n"], e["repeat"]))
        .collect();
    expected.sort();
    let mut names: Vec<&str> = names;
    names.sort();
    assert_eq!(names, expected);
    // Two jobs ran at the same time.
    let overlapping = runs.iter().any(|(a, x)| {
        runs.iter()
            .any(|(b, y)| a < b && x.2 < y.3.unwrap() && y.2 < x.3.unwrap())
    });
    assert!(overlapping, "no two jobs overlapped: {runs:?}");
    // The metric was read from the job's log, as for a local run.
    let results = target.results();
    assert!(results.contains("\tkeep\tbaseline\n"), "{results}");
    assert!(
        run.stderr().contains("submitted as Slurm job"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_job_past_its_hard_limit_is_cancelled_and_counted_as_a_crash() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let target = slurm_target(
        serde_json::json!({"1": {"MODE": "hang"}}),
        "budget = \"3s\"\nhard-limit = \"5s\"\ngrace = \"1s\"",
        ONE_BASELINE_RUN,
    );
    let run = target.arun(&["--max-experiments", "2"]);
    run.assert_code(0);
    let results = target.results();
    assert!(
        results.ends_with("\tcrash\tset MODE hang\n"),
        "{results}\n{}",
        run.stderr()
    );
    let decided = target
        .journal()
        .into_iter()
        .find(|e| e["event"] == "measured" && e["n"] == 1)
        .unwrap();
    assert_eq!(
        decided["measurement"]["failure"],
        "timed out: still running at the hard limit of 5s"
    );
    // The job is gone: cancelled by arun, nothing of it still running.
    let jobs = jobs_of(&target);
    assert!(active(&jobs).is_empty(), "{jobs:?}");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
}

#[test]
fn slurms_own_time_limit_is_a_crash_with_that_reason() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    // The hard limit is longer than the job's `--time` of one minute: Slurm ends it first.
    let target = slurm_target(
        serde_json::json!({"1": {"MODE": "hang"}}),
        "budget = \"10s\"\nhard-limit = \"5m\"\ngrace = \"1s\"",
        "",
    );
    // A time limit shorter than the hard limit is refused...
    std::fs::write(
        &target.pipeline,
        std::fs::read_to_string(&target.pipeline).unwrap().replace(
            "[executor.slurm]\n",
            "[executor.slurm]\ntime-limit = \"1m\"\n",
        ),
    )
    .unwrap();
    let refused = target.arun(&["--max-experiments", "2"]);
    refused.assert_code(3);
    assert!(
        refused
            .stderr()
            .contains("1m is shorter than the 5m a job may need"),
        "{}",
        refused.stderr()
    );
    // ...so this test gives the job its minute through sbatch's own arguments.
    let text = std::fs::read_to_string(&target.pipeline)
        .unwrap()
        .replace("time-limit = \"1m\"\n", "sbatch-args = [\"--time=1\"]\n");
    std::fs::write(&target.pipeline, text).unwrap();
    let run = target.arun(&["--max-experiments", "2"]);
    run.assert_code(0);
    let measured = target
        .journal()
        .into_iter()
        .find(|e| e["event"] == "measured" && e["n"] == 1)
        .unwrap();
    assert_eq!(
        measured["measurement"]["failure"],
        "Slurm ended the job at its time limit (TIMEOUT)",
        "{}",
        run.stderr()
    );
    let jobs = jobs_of(&target);
    assert_eq!(jobs.last().unwrap().state, "TIMEOUT", "{jobs:?}");
}

#[test]
fn ctrl_c_cancels_the_jobs_in_flight_and_a_resume_runs_them_again() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    // Every experiment after the baseline hangs the first time it runs, until the resume.
    let run = format!(
        "if [ $ARUN_EXPERIMENT -gt 0 ] && [ ! -e $PIDFILE.hung$ARUN_EXPERIMENT ] && \
         [ ! -e $PIDFILE.resumed ]; then \
         touch $PIDFILE.hung$ARUN_EXPERIMENT; echo job $ARUN_EXPERIMENT $SLURM_JOB_ID none \
         $(date +%s.%N) >> $PIDFILE.jobs; sleep 3600; fi; {NOTED_RUN}"
    );
    let target = slurm_target_running(
        &run,
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"60s\"\ngrace = \"2s\"",
        &format!("\n[workers]\ncount = 2\n{ONE_BASELINE_RUN}"),
    );
    let child = Spawned(target.spawn(&["--max-experiments", "4"]));
    // Both hanging experiments run as jobs.
    wait_until(&target, "two running jobs", Duration::from_secs(60), || {
        active(&jobs_of(&target))
            .iter()
            .filter(|job| job.state == "RUNNING")
            .count()
            == 2
            && hung(&target).len() == 2
    });
    // `arun status` shows them as Slurm holds them.
    let status = run_status(&target);
    for n in hung(&target) {
        let job = jobs_of(&target)
            .into_iter()
            .find(|job| job.name == format!("arun-test-{n}-0") && job.state == "RUNNING")
            .unwrap();
        let line = format!(" job {} arun-test-{n}-0 (#{n}): running ", job.id);
        assert!(status.contains(&line), "no `{line}` in:\n{status}");
    }
    common::signal(child.0.id(), libc::SIGINT);
    let out = child.wait();
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    // Nothing of the run is left on the cluster.
    let jobs = jobs_of(&target);
    assert!(active(&jobs).is_empty(), "{jobs:?}");

    // A resume submits the interrupted runs again (they gave no result) and finishes the run.
    std::fs::write(target.path("pids.resumed"), "").unwrap();
    let run = target.arun(&["--resume", "--max-experiments", "4"]);
    run.assert_code(0);
    let results = target.results();
    assert_eq!(results.lines().count(), 5, "{results}");
    let failures: Vec<serde_json::Value> = target
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "measured" && !e["measurement"]["failure"].is_null())
        .collect();
    assert!(
        failures.is_empty(),
        "{results}\n{failures:?}\n{}\nhung: {:?}\n{:?}\n{:?}",
        run.stderr(),
        hung(&target),
        std::fs::read_to_string(target.path("pids.jobs")),
        jobs_of(&target)
    );
    let interrupted = hung(&target);
    assert_eq!(interrupted.len(), 2, "{interrupted:?}");
    for n in interrupted {
        let again: Vec<SlurmJob> = jobs_of(&target)
            .into_iter()
            .filter(|job| job.name == format!("arun-test-{n}-0"))
            .collect();
        assert_eq!(again.len(), 2, "{again:?}");
        assert_eq!(again[1].state, "COMPLETED", "{again:?}");
    }
}

#[test]
fn arun_killed_while_its_jobs_run_follows_them_again_and_runs_nothing_twice() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    // Each run takes a few seconds, so arun is killed with jobs queued or running.
    let target = slurm_target(
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        &format!("\n[workers]\ncount = 2\n{ONE_BASELINE_RUN}"),
    );
    std::fs::write(
        &target.pipeline,
        std::fs::read_to_string(&target.pipeline)
            .unwrap()
            .replace("python3 train.py; sleep 1", "python3 train.py; sleep 4"),
    )
    .unwrap();
    let mut child = Spawned(target.spawn(&["--max-experiments", "5"]));
    wait_until(
        &target,
        "two jobs after the baseline",
        Duration::from_secs(60),
        || {
            active(&jobs_of(&target))
                .iter()
                .filter(|job| job.name != "arun-test-0-0")
                .count()
                == 2
        },
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let in_flight = active(&jobs_of(&target));
    assert_eq!(
        in_flight.len(),
        2,
        "the jobs go on without arun: {in_flight:?}"
    );

    let run = target.arun(&["--resume", "--max-experiments", "5"]);
    run.assert_code(0);
    assert!(
        run.stderr().contains("following Slurm job"),
        "{}",
        run.stderr()
    );
    let results = target.results();
    assert_eq!(results.lines().count(), 6, "{results}");
    // One job per run, the ones in flight at the kill included.
    let jobs = jobs_of(&target);
    let mut names: Vec<&str> = jobs.iter().map(|job| job.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        jobs.len(),
        "a run was submitted twice: {jobs:?}"
    );
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    for job in &in_flight {
        assert!(
            jobs.iter()
                .any(|j| j.id == job.id && j.state == "COMPLETED")
        );
    }
}

/// A run with `slurm` in `[executor.slurm]` that must stop with an error: its target and stderr.
fn stopped_run(slurm: &str) -> (Target, String) {
    let target = slurm_target(
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        slurm,
    );
    let run = target.arun(&["--max-experiments", "2"]);
    assert_ne!(run.code(), Some(0), "{}", run.stderr());
    let stderr = run.stderr();
    (target, stderr)
}

#[test]
fn a_job_that_never_starts_stops_the_run_with_slurms_reason() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let (target, stderr) =
        stopped_run("sbatch-args = [\"--begin=now+1hour\"]\nstart-timeout = \"3s\"");
    assert!(stderr.contains("did not start within 3s"), "{stderr}");
    assert!(stderr.contains("BeginTime"), "{stderr}");
    let jobs = jobs_of(&target);
    assert!(active(&jobs).is_empty(), "{jobs:?}");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(noted(&target).is_empty(), "nothing ran");
}

/// `arun status` of the target's run, while its arun drives it.
fn run_status(target: &Target) -> String {
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let status = target.arun_command(&["status", &pipeline, "--tag", "test"]);
    status.assert_code(0);
    status.stdout()
}

#[test]
fn arun_status_shows_a_queued_job_with_slurms_reason() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let target = slurm_target(
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        "sbatch-args = [\"--begin=now+1hour\"]\nstart-timeout = \"10m\"",
    );
    let child = Spawned(target.spawn(&["--max-experiments", "2"]));
    wait_until(
        &target,
        "the baseline's job",
        Duration::from_secs(60),
        || !active(&jobs_of(&target)).is_empty(),
    );
    let job = active(&jobs_of(&target)).remove(0);
    let line = format!(
        "  slurm   job {} arun-test-0-0 (#0): queued (BeginTime)\n",
        job.id
    );
    let mut status = String::new();
    // Slurm may take a moment to name its reason.
    wait_until(
        &target,
        "the queued job in `arun status`",
        Duration::from_secs(30),
        || {
            status = run_status(&target);
            status.contains(&line)
        },
    );
    common::signal(child.0.id(), libc::SIGINT);
    let out = child.wait();
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    let jobs = jobs_of(&target);
    assert!(active(&jobs).is_empty(), "{jobs:?}");
    // A run that is not running asks Slurm nothing.
    assert!(
        !run_status(&target).contains("slurm "),
        "{}",
        run_status(&target)
    );
}

#[test]
fn arun_check_runs_the_baseline_as_a_slurm_job_in_a_copy_the_nodes_see() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let (target, pipeline) = check_target("gres = \"gpu:1\"");
    let check = target.arun_command(&["check", &pipeline]);
    check.assert_code(0);
    let stdout = check.stdout();
    assert!(stdout.ends_with("ready\n"), "{stdout}");
    // The repository is made from a template at the first run: the copy is made where it will
    // be, which the nodes see.
    let within = target.repo.parent().unwrap();
    let copy = format!("\ncopy       {}/arun-scratch-", within.display());
    assert!(stdout.contains(&copy), "{stdout}");

    // The baseline ran as a job of its own, with a GPU Slurm gave it, in the copy.
    let runs = noted(&target);
    let (job_id, gpus, _, end) = &runs[&0];
    assert!(gpus == "0" || gpus == "1", "the job saw GPUs {gpus}");
    assert!(end.is_some(), "{runs:?}");
    let out = Command::new("squeue")
        .args(["--noheader", "--me", "--states=all", "--jobs", job_id])
        .arg("--format=%j|%T|%k")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let scratch = format!("arun {}/arun-scratch-", within.display());
    assert!(
        line.starts_with("arun-check-0-baseline|COMPLETED|") && line.contains(&scratch),
        "job {job_id}: {line}"
    );
    // The copy is gone.
    assert!(scratch_copies(within).is_empty());

    // Once the repository exists, the copy is made in its run store.
    target.arun(&["--max-experiments", "1"]).assert_code(0);
    let check = target.arun_command(&["check", &pipeline]);
    check.assert_code(0);
    let store = target.repo.join(".git/arun");
    let copy = format!("\ncopy       {}/arun-scratch-", store.display());
    assert!(check.stdout().contains(&copy), "{}", check.stdout());
    assert!(scratch_copies(&store).is_empty());
}

#[test]
fn arun_check_says_why_sbatch_refused_its_job_and_leaves_no_copy() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let (target, pipeline) = check_target("gres = \"gpu:64\"");
    let check = target.arun_command(&["check", &pipeline]);
    assert_ne!(check.code(), Some(0), "{}", check.stdout());
    let stderr = check.stderr();
    assert!(
        stderr.contains("sbatch refused the job arun-check-0-baseline"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Requested node configuration is not available"),
        "{stderr}"
    );
    let left = scratch_copies(target.repo.parent().unwrap());
    assert!(left.is_empty(), "{left:?}");
}

/// A Slurm pipeline for `arun check` (a 3 s budget) with these `[executor.slurm]` lines, and its
/// path.
fn check_target(slurm: &str) -> (Target, String) {
    let target = slurm_target(
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        slurm,
    );
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    (target, pipeline)
}

/// The scratch copies `arun check` left in `dir`.
fn scratch_copies(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("arun-scratch-"))
        .collect()
}

#[test]
fn a_job_sbatch_refuses_stops_the_run_with_sbatchs_words() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let (_target, stderr) = stopped_run("gres = \"gpu:64\"");
    assert!(
        stderr.contains("sbatch refused the job arun-test-0-0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Requested node configuration is not available"),
        "{stderr}"
    );
}

/// arun started on a run of two experiments whose first job of experiment 1 sleeps `seconds`
/// before it trains; returned once that job runs.
fn slow_first_job(seconds: u32) -> (Target, Spawned) {
    let run = format!(
        "if [ $ARUN_EXPERIMENT -eq 1 ] && [ ! -e $PIDFILE.slow ]; then touch $PIDFILE.slow; \
         sleep {seconds}; fi; {NOTED_RUN}"
    );
    let target = slurm_target_running(
        &run,
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ONE_BASELINE_RUN,
    );
    let child = Spawned(target.spawn(&["--max-experiments", "2"]));
    wait_until(
        &target,
        "experiment 1's job",
        Duration::from_secs(60),
        || target.path("pids.slow").exists(),
    );
    (target, child)
}

#[test]
fn a_job_lost_with_its_node_is_submitted_again_without_counting_as_a_crash() {
    if !cluster_up() {
        return;
    }
    let _alone = CLUSTER.write().unwrap_or_else(|e| e.into_inner());
    // Experiment 1's first job waits long enough for the node to fail under it.
    let (target, child) = slow_first_job(30);
    let node =
        String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout).unwrap();
    let node = node.trim();
    let down = Command::new("scontrol")
        .args([
            "update",
            &format!("nodename={node}"),
            "state=down",
            "reason=arun-test",
        ])
        .output()
        .unwrap();
    assert!(down.status.success(), "{down:?}");
    // The node comes back by itself when slurmd next registers (ReturnToService=2); a resume
    // asks for it sooner, and is refused when it is back already.
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("scontrol")
        .args(["update", &format!("nodename={node}"), "state=resume"])
        .output();
    let out = child.wait();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("was lost with its node or preempted; submitting it again"),
        "{}",
        out.stderr
    );
    let results = target.results();
    assert_eq!(results.lines().count(), 3, "{results}");
    assert!(!results.contains("crash"), "{results}");
    let attempts: Vec<SlurmJob> = jobs_of(&target)
        .into_iter()
        .filter(|job| job.name == "arun-test-1-0")
        .collect();
    let states: Vec<&str> = attempts.iter().map(|job| job.state.as_str()).collect();
    assert_eq!(states, ["NODE_FAIL", "COMPLETED"]);
}

/// Starts the controller again when dropped (after a test stopped it), and waits until it
/// answers, so that a failing test leaves the cluster running.
struct ControllerDown;

impl ControllerDown {
    fn now() -> ControllerDown {
        let status = Command::new("pkill")
            .args(["-TERM", "-x", "slurmctld"])
            .status()
            .unwrap();
        assert!(status.success(), "no slurmctld to stop");
        wait_for_ping(false);
        ControllerDown
    }
}

impl Drop for ControllerDown {
    fn drop(&mut self) {
        // Started as tests/scripts/slurm-cluster.sh starts it: detached, no inherited output.
        let _ = Command::new("setsid")
            .args(["slurmctld", "-D"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        wait_for_ping(true);
    }
}

/// Waits until `scontrol ping` says the controller is up (or down).
fn wait_for_ping(up: bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let answer = Command::new("scontrol").arg("ping").output().unwrap();
        if String::from_utf8_lossy(&answer.stdout).contains("is UP") == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the controller is not {} after 30 s",
        if up { "up" } else { "down" }
    );
}

#[test]
fn a_controller_away_for_a_while_does_not_stop_the_run() {
    if !cluster_up() {
        return;
    }
    let _alone = CLUSTER.write().unwrap_or_else(|e| e.into_inner());
    let (target, child) = slow_first_job(4);
    // The controller goes away (a restart, a failover) while the job runs on and ends; longer
    // than the 18 s Slurm's commands keep trying to reach it.
    let down = ControllerDown::now();
    std::thread::sleep(Duration::from_secs(25));
    drop(down);
    let out = child.wait();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("asking again"), "{}", out.stderr);
    assert!(out.stderr.contains("Slurm answers again"), "{}", out.stderr);
    let results = target.results();
    assert_eq!(results.lines().count(), 3, "{results}");
    assert!(!results.contains("crash"), "{results}");
}

#[test]
fn setup_lines_run_in_the_job_before_the_command_and_one_that_fails_fails_the_job() {
    let Some(_cluster) = shared_cluster() else {
        return;
    };
    let target = slurm_target_running(
        "echo setup says $SETUP_SAYS >> $PIDFILE.setup; python3 train.py",
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        &format!("setup = [\"export SETUP_SAYS='hello there'\"]\n{ONE_BASELINE_RUN}"),
    );
    target.arun(&["--max-experiments", "1"]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(target.path("pids.setup")).unwrap(),
        "setup says hello there\n"
    );

    let failing = slurm_target_running(
        "python3 train.py",
        serde_json::json!({}),
        "budget = \"3s\"\nhard-limit = \"20s\"\ngrace = \"1s\"",
        &format!("setup = [\"test -n \\\"$NOT_SET\\\"\"]\n{ONE_BASELINE_RUN}"),
    );
    let run = failing.arun(&["--max-experiments", "1"]);
    assert_ne!(run.code(), Some(0), "{}", run.stderr());
    let log = std::fs::read_to_string(failing.run_dir().join("logs/0.log")).unwrap();
    assert!(
        // Printed as written, not expanded.
        log.contains("arun: this setup line failed: test -n \"$NOT_SET\"\n"),
        "{log}"
    );
    let measured = failing
        .journal()
        .into_iter()
        .find(|e| e["event"] == "measured")
        .unwrap();
    assert_eq!(measured["measurement"]["failure"], "exit status 1");
}
