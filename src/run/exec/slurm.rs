//! A build or a run as a Slurm batch job. arun stays on the login node: it writes a batch
//! script next to the log, submits it with `sbatch --parsable`, tails the log the job writes
//! (on a file system the nodes share) as it does a local command's, and asks `scontrol` how
//! the job is doing. The budget counts from the moment the job starts running; time in the
//! queue is shown, not charged.
//!
//! Every job is named `arun-<tag>-<n>-<what>` and carries the run's identity as its comment,
//! so that a resumed arun finds the job it submitted before it was killed: one still queued or
//! running is followed again, one that finished is read, and only a job that never gave a
//! result (cancelled by arun, lost with its node, preempted) is submitted again.
//!
//! Files next to the log `3.log`: `3.sbatch` (the script), `3.exit` (written by the script:
//! the command's exit status and seconds, for when Slurm has forgotten the job) and `3.stop`
//! (written by arun before it stops a job itself: `timed out` or `interrupted`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::tail::LogTail;
use super::{Ending, Finished, Spawn, Watch, interrupt};
use crate::config::resolve::SlurmSpec;
use crate::text::shell_quote;

/// How often the log is read and Ctrl-C checked.
const POLL: Duration = Duration::from_millis(100);
/// How often `scontrol` is asked about the job (the end is seen sooner, by the exit file).
const STATE_POLL: Duration = Duration::from_secs(2);
/// How often a job lost with its node (or preempted) is submitted again before the run counts
/// as a crash.
const RESUBMITS: u32 = 3;
/// How long a job may take to end after arun's SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(60);

/// One job: its name and the run it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `arun-<tag>-<n>-<what>`.
    pub name: String,
    /// The run's identity (its directory and start time), the job's `--comment`.
    pub comment: String,
}

impl Job {
    /// The job that does `what` (a run's number, `build`) for experiment `n` of the run `tag`
    /// in `run_dir`, which started at Unix time `started`: another run, even of the same tag,
    /// never mistakes it for its own.
    pub fn new(tag: &str, n: u64, what: &str, run_dir: &Path, started: f64) -> Job {
        Job {
            name: format!("arun-{tag}-{n}-{what}"),
            comment: format!("arun {} {started:.3}", run_dir.display()),
        }
    }
}

/// One of a run's jobs as Slurm holds it now (queued or running), for `arun status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNow {
    pub id: u64,
    pub name: String,
    /// The experiment it is for.
    pub n: u64,
    /// Slurm's state (`PENDING`, `RUNNING`, ...) and reason (`Resources`, `Priority`, `None`).
    pub state: String,
    pub reason: String,
    /// The time it has run, as Slurm writes it (`1:05`), and its nodes.
    pub time: String,
    pub nodes: String,
}

/// The jobs of the run `tag` started at `started` that Slurm holds now: one `squeue` call.
pub fn jobs_now(tag: &str, started: f64) -> io::Result<Vec<JobNow>> {
    let out = slurm_command(
        "squeue",
        &["--noheader", "--me", "--format=%i|%j|%T|%r|%M|%N|%k"],
    )?;
    Ok(parse_jobs_now(&out, tag, started))
}

/// The lines of `squeue --format=%i|%j|%T|%r|%M|%N|%k` that are jobs of this run: named for its
/// tag, with its start time at the end of their comment (as `Job::new` writes it).
fn parse_jobs_now(out: &str, tag: &str, started: f64) -> Vec<JobNow> {
    let prefix = format!("arun-{tag}-");
    let stamp = format!(" {started:.3}");
    let mut jobs: Vec<JobNow> = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(7, '|').map(str::trim).collect();
            let [id, name, state, reason, time, nodes, comment] = fields[..] else {
                return None;
            };
            let (n, _what) = name.strip_prefix(&prefix)?.split_once('-')?;
            if !comment.ends_with(&stamp) {
                return None;
            }
            Some(JobNow {
                id: id.parse().ok()?,
                name: name.to_string(),
                n: n.parse().ok()?,
                state: state.to_string(),
                reason: reason.to_string(),
                time: time.to_string(),
                nodes: nodes.to_string(),
            })
        })
        .collect();
    jobs.sort_by_key(|job| job.id);
    jobs
}

/// How Slurm ended a job that did not end by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlurmEnd {
    /// Slurm's own time limit (`--time`), state TIMEOUT.
    TimeLimit,
    /// The job went past its memory (`--mem`), state OUT_OF_MEMORY.
    OutOfMemory,
    /// Someone other than arun cancelled it, state CANCELLED.
    Cancelled,
    /// Its node failed or it was preempted too many times in a row.
    NodeFailed,
    /// Another end: DEADLINE, or a state this version does not know.
    Other,
}

impl SlurmEnd {
    pub fn describe(self) -> &'static str {
        match self {
            SlurmEnd::TimeLimit => "Slurm ended the job at its time limit (TIMEOUT)",
            SlurmEnd::OutOfMemory => "out of memory: Slurm ended the job (OUT_OF_MEMORY)",
            SlurmEnd::Cancelled => "the Slurm job was cancelled outside arun (CANCELLED)",
            SlurmEnd::NodeFailed => "the Slurm job's node failed or it was preempted, 4 times",
            SlurmEnd::Other => "Slurm ended the job",
        }
    }
}

/// What `scontrol show job` says about a job.
#[derive(Debug, Clone, PartialEq)]
struct Status {
    state: String,
    /// Why it waits (`Resources`, `Priority`, `BeginTime`...).
    reason: String,
    /// `ExitCode=code:signal`.
    exit: (i32, i32),
    /// Seconds it has run.
    run_time: Option<u64>,
}

/// Where a job is in its life, from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    /// Ended with a result: it ran its command to an end, or Slurm ended it.
    Ended,
    /// Ended without a result (its node failed, it was preempted): run it again.
    Lost,
}

fn phase(state: &str) -> Phase {
    match state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" => Phase::Queued,
        "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
        | "RESIZING" => Phase::Running,
        "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" => Phase::Lost,
        _ => Phase::Ended,
    }
}

/// The sbatch script, exit file and stop marker of a job whose output goes to `log`.
struct Files {
    script: PathBuf,
    exit: PathBuf,
    stop: PathBuf,
}

impl Files {
    fn of(log: &Path) -> Files {
        Files {
            script: log.with_extension("sbatch"),
            exit: log.with_extension("exit"),
            stop: log.with_extension("stop"),
        }
    }

    /// `(status, seconds)` the script recorded when its command ended.
    fn exit(&self) -> Option<(i32, u64)> {
        let text = fs::read_to_string(&self.exit).ok()?;
        let mut words = text.split_whitespace();
        let status = words.next()?.parse().ok()?;
        let seconds = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        Some((status, seconds))
    }

    /// Why arun stopped the job itself, if it did.
    fn stopped(&self) -> Option<String> {
        fs::read_to_string(&self.stop)
            .ok()
            .map(|text| text.trim().to_string())
    }
}

/// Checks that the Slurm commands arun uses are on PATH.
pub fn check_tools() -> Result<(), String> {
    for tool in ["sbatch", "squeue", "scontrol", "scancel"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Err(format!(
                "`executor.kind = \"slurm\"` but `{tool}` cannot be run here; run arun on a \
                 machine that can submit jobs (a login node), with Slurm's commands on PATH"
            ));
        }
    }
    Ok(())
}

/// Runs `spawn` as the Slurm job `job` to its end, feeding the output to `watch`. A job of the
/// same name and run that is already queued, running or finished is followed instead of
/// submitting another.
pub fn run(
    spec: &SlurmSpec,
    job: &Job,
    spawn: &Spawn,
    watch: &mut dyn Watch,
) -> io::Result<Finished> {
    let files = Files::of(spawn.log);
    let mut lost = 0;
    loop {
        if interrupt::requested() {
            return Ok(Finished {
                ending: Ending::Interrupted,
                elapsed: Duration::ZERO,
            });
        }
        // Found again before every submission, so that an `sbatch` whose answer was lost
        // (the job was submitted) never submits the job twice.
        let (id, found) = patiently(
            || match find(job, &files)? {
                Some(id) => Ok((id, true)),
                None => Ok((submit(spec, job, spawn, &files)?, false)),
            },
            watch,
        )?;
        let what = if found {
            format!("following Slurm job {id}, submitted before")
        } else {
            format!("submitted as Slurm job {id}")
        };
        watch.note(&format!("arun: {}: {what}", job.name));
        match follow(spec, id, spawn, &files, watch)? {
            Some(finished) => return Ok(finished),
            None if lost < RESUBMITS => {
                lost += 1;
                watch.note(&format!(
                    "arun: {}: Slurm job {id} was lost with its node or preempted; submitting it \
                     again",
                    job.name
                ));
                watch.restart();
            }
            None => {
                return Ok(Finished {
                    ending: Ending::Slurm(SlurmEnd::NodeFailed),
                    elapsed: Duration::ZERO,
                });
            }
        }
    }
}

/// `ask` until the controller answers; an error other than the controller being away
/// (`ErrorKind::TimedOut`, see `controller_error`) is returned at once.
fn patiently<T>(mut ask: impl FnMut() -> io::Result<T>, watch: &mut dyn Watch) -> io::Result<T> {
    let mut patience = Patience::default();
    loop {
        match ask() {
            Err(err) if err.kind() != io::ErrorKind::TimedOut => return Err(err),
            answer => {
                if let Some(answer) = patience.wait_for(answer, watch)? {
                    return Ok(answer);
                }
            }
        }
        std::thread::sleep(STATE_POLL);
    }
}

/// The job of this name and run to follow: the newest one that is queued, running, or ended
/// with a result arun did not interrupt. `None`: submit a new one.
fn find(job: &Job, files: &Files) -> io::Result<Option<u64>> {
    let out = slurm_command(
        "squeue",
        &[
            "--noheader",
            "--me",
            "--states=all",
            "--name",
            &job.name,
            "--format=%i|%T|%k",
        ],
    )?;
    let newest = out
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '|');
            let id: u64 = fields.next()?.trim().parse().ok()?;
            let state = fields.next()?.trim().to_string();
            let comment = fields.next()?.trim();
            (comment == job.comment).then_some((id, state))
        })
        .max_by_key(|(id, _)| *id);
    let Some((id, state)) = newest else {
        return Ok(None);
    };
    let interrupted = files.stopped().as_deref() == Some(STOP_INTERRUPTED);
    Ok(match phase(&state) {
        Phase::Queued | Phase::Running => Some(id),
        Phase::Ended if !interrupted && state != "CANCELLED" => Some(id),
        Phase::Ended | Phase::Lost => None,
    })
}

const STOP_INTERRUPTED: &str = "interrupted";
const STOP_TIMED_OUT: &str = "timed out";

/// Writes the script and submits it; the log starts empty.
fn submit(spec: &SlurmSpec, job: &Job, spawn: &Spawn, files: &Files) -> io::Result<u64> {
    if let Some(dir) = spawn.log.parent() {
        fs::create_dir_all(dir)?;
    }
    for stale in [&files.exit, &files.stop] {
        match fs::remove_file(stale) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    fs::write(spawn.log, b"")?;
    fs::write(&files.script, script(spec, job, spawn, files))?;
    let time = spec.time_for(spawn.limit, spawn.grace);
    let mut args: Vec<String> = vec![
        "--parsable".into(),
        format!("--job-name={}", job.name),
        format!("--comment={}", job.comment),
        format!("--output={}", spawn.log.display()),
        "--open-mode=append".into(),
        // A job whose node fails is submitted again by arun, which counts the attempts and
        // starts the log afresh; Slurm's own requeue would do neither.
        "--no-requeue".into(),
        format!("--chdir={}", spawn.dir.display()),
        format!("--time={}", time.as_secs() / 60),
    ];
    let options = [
        ("--partition", &spec.partition),
        ("--account", &spec.account),
        ("--qos", &spec.qos),
        ("--gres", &spec.gres),
        ("--mem", &spec.mem),
    ];
    for (flag, value) in options {
        if let Some(value) = value {
            args.push(format!("{flag}={value}"));
        }
    }
    if let Some(cpus) = spec.cpus_per_task {
        args.push(format!("--cpus-per-task={cpus}"));
    }
    args.extend(spec.sbatch_args.iter().cloned());
    args.push(files.script.display().to_string());
    // The job gets the environment arun gives a local run (sbatch exports its own).
    let out = Command::new("sbatch")
        .args(&args)
        .current_dir(spawn.dir)
        .env_clear()
        .envs(spawn.env.vars())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot run sbatch: {err}")))?;
    if !out.status.success() {
        let error = String::from_utf8_lossy(&out.stderr);
        return Err(controller_error(
            &error,
            format!("sbatch refused the job {}: {}", job.name, error.trim()),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    text.trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| io::Error::other(format!("sbatch printed no job id: {text}")))
}

/// The batch script: the setup lines, then the command as a local run would run it, then its
/// exit status written where a resumed arun finds it.
fn script(spec: &SlurmSpec, job: &Job, spawn: &Spawn, files: &Files) -> String {
    let mut text = format!(
        "#!/bin/bash\n\
         # Written by arun for the job {name} ({comment}); a resubmission writes it again.\n\
         started=$(date +%s)\n\
         cd {dir} || exit 1\n",
        name = job.name,
        comment = job.comment,
        dir = shell_quote(&spawn.dir.display().to_string()),
    );
    for line in &spec.setup {
        // The line is printed as one quoted word: nothing in it is expanded twice.
        text.push_str(&format!(
            "{line} || {{ printf 'arun: this setup line failed: %s\\n' {shown} >&2; exit 1; }}\n",
            shown = shell_quote(line),
        ));
    }
    let exit = files.exit.display().to_string();
    text.push_str(&format!(
        "sh -c {command}\n\
         status=$?\n\
         echo \"$status $(( $(date +%s) - started ))\" > {tmp} && mv {tmp} {exit}\n\
         exit $status\n",
        command = shell_quote(spawn.command),
        tmp = shell_quote(&format!("{exit}.tmp")),
        exit = shell_quote(&exit),
    ));
    text
}

/// Follows job `id` to its end; `None` when it ended without a result (run it again).
fn follow(
    spec: &SlurmSpec,
    id: u64,
    spawn: &Spawn,
    files: &Files,
    watch: &mut dyn Watch,
) -> io::Result<Option<Finished>> {
    let mut tail = open_log(spawn.log)?;
    let queued_since = Instant::now();
    let mut started: Option<Instant> = None;
    let mut asked: Option<Instant> = None;
    let mut patience = Patience::default();
    let ending = loop {
        tail.poll(&mut |line| watch.line(line))?;
        if let Some(ending) = stop_if_due(id, spawn, files, started)? {
            break Some(ending);
        }
        let due = asked.is_none_or(|t| t.elapsed() >= STATE_POLL) || files.exit.exists();
        let answer = if due {
            asked = Some(Instant::now());
            patience.wait_for(show(id), watch)?
        } else {
            None
        };
        if let Some(answer) = answer {
            let Some(status) = answer else {
                // Slurm forgot the job: its exit file is all there is.
                break files.exit().map(|(code, _)| exit_ending(code, 0));
            };
            match phase(&status.state) {
                Phase::Queued => {
                    let waited = queued_since.elapsed();
                    watch.queued(waited, &status.reason);
                    if waited >= spec.start_timeout {
                        return Err(cancel_unstarted(spec, id, &status));
                    }
                }
                Phase::Running => {
                    if started.is_none() {
                        let ran = Duration::from_secs(status.run_time.unwrap_or(0));
                        started =
                            Some(Instant::now().checked_sub(ran).unwrap_or_else(Instant::now));
                    }
                }
                Phase::Lost => break None,
                Phase::Ended => break Some(ended(&status, files)),
            }
        }
        if let Some(at) = started {
            watch.tick(at.elapsed(), 0);
        }
        std::thread::sleep(POLL);
    };
    let Some(ending) = ending else {
        return Ok(None);
    };
    tail.poll(&mut |line| watch.line(line))?;
    tail.finish(&mut |line| watch.line(line));
    let elapsed = run_time(ending, started, files);
    Ok(Some(Finished { ending, elapsed }))
}

/// Stops job `id` on Ctrl-C, or once it has run (since `started`) for its time limit; the
/// ending, when it was stopped.
fn stop_if_due(
    id: u64,
    spawn: &Spawn,
    files: &Files,
    started: Option<Instant>,
) -> io::Result<Option<Ending>> {
    if interrupt::requested() {
        stop(id, spawn.grace, files, STOP_INTERRUPTED)?;
        return Ok(Some(Ending::Interrupted));
    }
    if let Some(at) = started
        && at.elapsed() >= spawn.limit
    {
        stop(id, spawn.grace, files, STOP_TIMED_OUT)?;
        return Ok(Some(Ending::TimedOut));
    }
    Ok(None)
}

/// Cancels job `id`, still queued after `executor.slurm.start-timeout`; the error says what to
/// check (or is the cancel's own, when that failed).
fn cancel_unstarted(spec: &SlurmSpec, id: u64, status: &Status) -> io::Error {
    if let Err(err) = cancel(id) {
        return err;
    }
    io::Error::other(format!(
        "Slurm job {id} did not start within {} (still {}, reason: {}); \
         it was cancelled. Check the partition and resources it asks for \
         (`squeue --me`, `sinfo`), or raise `executor.slurm.start-timeout`; \
         a resume submits it again",
        crate::config::HumanDuration(spec.start_timeout),
        status.state,
        status.reason
    ))
}

/// How long the job ran: as its exit file says when it ended by itself, else from when it was
/// seen running until now.
fn run_time(ending: Ending, started: Option<Instant>, files: &Files) -> Duration {
    match (started, files.exit()) {
        (_, Some((_, seconds))) if !matches!(ending, Ending::Interrupted | Ending::TimedOut) => {
            Duration::from_secs(seconds)
        }
        (Some(at), _) => at.elapsed(),
        (None, _) => Duration::ZERO,
    }
}

/// How long the controller may fail to answer (a restart, a failover) before the run stops.
const CONTROLLER_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Questions to the controller that may fail for a while: a failure is noted once and asked
/// again at the next poll, until `CONTROLLER_PATIENCE` has passed without an answer.
#[derive(Default)]
struct Patience {
    failing_since: Option<Instant>,
}

impl Patience {
    /// The answer; `None` to ask again later; an error once the controller has been away too
    /// long.
    fn wait_for<T>(
        &mut self,
        answer: io::Result<T>,
        watch: &mut dyn Watch,
    ) -> io::Result<Option<T>> {
        match answer {
            Ok(answer) => {
                if self.failing_since.take().is_some() {
                    watch.note("arun: Slurm answers again");
                }
                Ok(Some(answer))
            }
            Err(err) => {
                let since = *self.failing_since.get_or_insert_with(|| {
                    watch.note(&format!(
                        "arun: {err}; asking again (for up to {})",
                        crate::config::HumanDuration(CONTROLLER_PATIENCE)
                    ));
                    Instant::now()
                });
                if since.elapsed() >= CONTROLLER_PATIENCE {
                    return Err(err);
                }
                Ok(None)
            }
        }
    }
}

/// How a job that ended by itself (or by Slurm) ended. A stop arun made before it was killed
/// and resumed is read from its marker.
fn ended(status: &Status, files: &Files) -> Ending {
    match files.stopped().as_deref() {
        Some(STOP_TIMED_OUT) => return Ending::TimedOut,
        Some(STOP_INTERRUPTED) => return Ending::Interrupted,
        _ => {}
    }
    match status.state.as_str() {
        "COMPLETED" | "FAILED" => match files.exit() {
            Some((code, _)) => exit_ending(code, 0),
            None => exit_ending(status.exit.0, status.exit.1),
        },
        "TIMEOUT" => Ending::Slurm(SlurmEnd::TimeLimit),
        "OUT_OF_MEMORY" => Ending::Slurm(SlurmEnd::OutOfMemory),
        "CANCELLED" => Ending::Slurm(SlurmEnd::Cancelled),
        _ => Ending::Slurm(SlurmEnd::Other),
    }
}

/// The ending of a command that exited with `code` or was killed by `signal` (a shell's
/// status above 128 is a signal).
fn exit_ending(code: i32, signal: i32) -> Ending {
    match (code, signal) {
        (_, s) if s > 0 => Ending::Signaled(s),
        (c, _) if c > 128 && c < 160 => Ending::Signaled(c - 128),
        (c, _) => Ending::Exited(c),
    }
}

/// SIGTERM to the job's processes, `grace` for them to end, then SIGKILL; waits until Slurm
/// has the job ended. The reason is written first, so that a resume knows the job gave no
/// result of its own.
fn stop(id: u64, grace: Duration, files: &Files, why: &str) -> io::Result<()> {
    fs::write(&files.stop, why)?;
    let queued = show(id)?.is_none_or(|s| phase(&s.state) == Phase::Queued);
    if !queued {
        let _ = slurm_command("scancel", &["--signal=TERM", "--full", &id.to_string()]);
        if wait_ended(id, grace)? {
            return Ok(());
        }
        let _ = slurm_command("scancel", &["--signal=KILL", "--full", &id.to_string()]);
    }
    cancel(id)?;
    if !wait_ended(id, KILL_WAIT)? {
        return Err(io::Error::other(format!(
            "Slurm job {id} is still running {} after it was cancelled",
            crate::config::HumanDuration(KILL_WAIT)
        )));
    }
    Ok(())
}

fn cancel(id: u64) -> io::Result<()> {
    slurm_command("scancel", &[&id.to_string()]).map(drop)
}

/// Waits up to `limit` for the job to end; whether it did.
fn wait_ended(id: u64, limit: Duration) -> io::Result<bool> {
    let until = Instant::now() + limit;
    loop {
        let ended = show(id)?.is_none_or(|s| matches!(phase(&s.state), Phase::Ended | Phase::Lost));
        if ended {
            return Ok(true);
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `scontrol show job -o ID`; `None` when Slurm no longer knows the job.
fn show(id: u64) -> io::Result<Option<Status>> {
    match slurm_command("scontrol", &["show", "job", "-o", &id.to_string()]) {
        Ok(text) => Ok(parse_status(&text)),
        Err(err) if err.to_string().contains("Invalid job id") => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads `JobState`, `Reason`, `ExitCode` and `RunTime` from one `scontrol show job -o` line.
fn parse_status(line: &str) -> Option<Status> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
    };
    let state = field("JobState")?.to_string();
    let exit = field("ExitCode")
        .and_then(|text| {
            let (code, signal) = text.split_once(':')?;
            Some((code.parse().ok()?, signal.parse().ok()?))
        })
        .unwrap_or((0, 0));
    Some(Status {
        state,
        reason: field("Reason").unwrap_or("None").to_string(),
        exit,
        run_time: field("RunTime").and_then(parse_run_time),
    })
}

/// `[D-]HH:MM:SS` in seconds.
fn parse_run_time(text: &str) -> Option<u64> {
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (days.parse::<u64>().ok()?, clock),
        None => (0, text),
    };
    let mut seconds = 0;
    for part in clock.split(':') {
        seconds = seconds * 60 + part.parse::<u64>().ok()?;
    }
    Some(days * 86_400 + seconds)
}

/// Runs a Slurm command to its end; its stdout, or an error with its stderr.
fn slurm_command(tool: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot run {tool}: {err}")))?;
    if !out.status.success() {
        let error = String::from_utf8_lossy(&out.stderr);
        return Err(controller_error(
            &error,
            format!("`{tool} {}` failed: {}", args.join(" "), error.trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An error of a Slurm command, of kind `TimedOut` when its words say that the controller is
/// away or busy (worth asking again), `Other` when it refused.
fn controller_error(stderr: &str, message: String) -> io::Error {
    const AWAY: [&str; 4] = [
        "Unable to contact slurm controller",
        "Socket timed out",
        "temporarily unable",
        "Resource temporarily unavailable",
    ];
    let kind = if AWAY.iter().any(|words| stderr.contains(words)) {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, message)
}

/// The log a job writes to, created when missing (a job still queued has not opened it).
fn open_log(log: &Path) -> io::Result<LogTail> {
    if !log.exists() {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::OpenOptions::new().create(true).append(true).open(log)?;
    }
    LogTail::open(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jobs_of_a_run_are_told_by_their_name_and_comment() {
        let job = Job::new("night", 3, "0", Path::new("/runs/night"), 1764480000.5);
        assert_eq!(job.name, "arun-night-3-0");
        let out = format!(
            "41|{}|RUNNING|None|1:05|gpu7|{}\n\
             42|arun-night-4-build|PENDING|Resources|0:00||arun /runs/night 1764480000.500\n\
             43|arun-night-5-0|PENDING|Priority|0:00||arun /elsewhere 1764400000.000\n\
             44|arun-nightly-5-0|PENDING|Priority|0:00||arun /runs/night 1764480000.500\n\
             45|train|RUNNING|None|9:00|gpu1|\n",
            job.name, job.comment
        );
        let jobs = parse_jobs_now(&out, "night", 1764480000.5);
        assert_eq!(
            jobs,
            [
                JobNow {
                    id: 41,
                    name: "arun-night-3-0".into(),
                    n: 3,
                    state: "RUNNING".into(),
                    reason: "None".into(),
                    time: "1:05".into(),
                    nodes: "gpu7".into(),
                },
                JobNow {
                    id: 42,
                    name: "arun-night-4-build".into(),
                    n: 4,
                    state: "PENDING".into(),
                    reason: "Resources".into(),
                    time: "0:00".into(),
                    nodes: String::new(),
                },
            ]
        );
    }

    #[test]
    fn a_status_line_is_read() {
        let line = "JobId=12 JobName=arun-nov30-3-0 UserId=root(0) Priority=1 \
                    JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=1 Restarts=0 \
                    BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=1-00:01:17 TimeLimit=00:01:00 \
                    Comment=arun:/x:1";
        let status = parse_status(line).unwrap();
        assert_eq!(status.state, "TIMEOUT");
        assert_eq!(status.reason, "TimeLimit");
        assert_eq!(status.exit, (0, 15));
        assert_eq!(status.run_time, Some(86_400 + 77));
    }

    #[test]
    fn an_absent_controller_is_asked_again_and_a_refusal_is_not() {
        let away = controller_error(
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
            "x".into(),
        );
        assert_eq!(away.kind(), io::ErrorKind::TimedOut);
        let refused = controller_error(
            "sbatch: error: Batch job submission failed: Invalid account or account/partition \
             combination specified",
            "x".into(),
        );
        assert_eq!(refused.kind(), io::ErrorKind::Other);
    }

    #[test]
    fn states_map_to_phases() {
        assert_eq!(phase("PENDING"), Phase::Queued);
        assert_eq!(phase("RUNNING"), Phase::Running);
        assert_eq!(phase("COMPLETED"), Phase::Ended);
        assert_eq!(phase("OUT_OF_MEMORY"), Phase::Ended);
        assert_eq!(phase("NODE_FAIL"), Phase::Lost);
        assert_eq!(phase("PREEMPTED"), Phase::Lost);
    }

    #[test]
    fn shell_statuses_above_128_are_signals() {
        assert_eq!(exit_ending(0, 0), Ending::Exited(0));
        assert_eq!(exit_ending(3, 0), Ending::Exited(3));
        assert_eq!(exit_ending(137, 0), Ending::Signaled(9));
        assert_eq!(exit_ending(0, 15), Ending::Signaled(15));
    }

    #[test]
    fn the_time_limit_covers_the_hard_limit_in_whole_minutes() {
        let spec = SlurmSpec {
            partition: None,
            account: None,
            qos: None,
            gres: None,
            cpus_per_task: None,
            mem: None,
            time_limit: None,
            sbatch_args: Vec::new(),
            setup: Vec::new(),
            start_timeout: Duration::from_secs(3600),
            build_in_job: false,
        };
        let time = spec.time_for(Duration::from_secs(600), Duration::from_secs(30));
        assert_eq!(time, Duration::from_secs(16 * 60));
    }
}
