//! Child processes: every command runs with `sh -c` in its own process group, its output goes
//! straight to a log file (never into memory), and it is stopped at its time limit with SIGTERM
//! to the whole group, a grace period, then SIGKILL.
//!
//! Because output goes to a file and not a pipe, a grandchild that keeps the output open cannot
//! keep arun waiting: arun waits for the group leader only, then stops what is left of the group.

pub mod env;
pub mod interrupt;
pub mod orphans;
pub mod slurm;
pub mod tail;

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use env::Environment;
use tail::LogTail;

/// How often the wait loop reads new output, samples the GPU and checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

/// One command to run.
pub struct Spawn<'a> {
    /// Shell command, run as `sh -c COMMAND`.
    pub command: &'a str,
    pub dir: &'a Path,
    pub env: &'a Environment,
    /// A file given to the command as stdin; without one stdin is empty.
    pub stdin: Option<&'a Path>,
    /// Where stdout and stderr go, together, in order; the file is truncated first.
    pub log: &'a Path,
    /// Wall-clock limit, after which the group is stopped.
    pub limit: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The CPUs the command may run on (a worker's CPU set); `None`: any.
    pub cpus: Option<&'a [u32]>,
}

/// Sees a running command: each output line as it is written, and a tick every poll; and
/// passes on what the code watching it has to say.
pub trait Watch {
    fn line(&mut self, _line: &str) {}
    fn tick(&mut self, _elapsed: Duration, _group: i32) {}
    /// The command waits in a scheduler's queue (not charged to its budget), and why.
    fn queued(&mut self, _waited: Duration, _reason: &str) {}
    /// The command starts over (a Slurm job lost with its node): forget its output so far.
    fn restart(&mut self) {}
    /// A message for the person watching the run (a warning).
    fn note(&mut self, message: &str) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            crate::run::secrets::redact(message)
        );
    }
}

/// A watcher that ignores everything.
pub struct Ignore;
impl Watch for Ignore {}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself with this status.
    Exited(i32),
    /// It was killed by this signal, not by arun.
    Signaled(i32),
    /// arun stopped it at its time limit.
    TimedOut,
    /// arun stopped it because the user interrupted the run.
    Interrupted,
    /// The Slurm scheduler ended it.
    Slurm(slurm::SlurmEnd),
}

impl Ending {
    pub fn success(self) -> bool {
        self == Ending::Exited(0)
    }

    /// The exit code a shell would report: the status, or 128 + the signal.
    pub fn code(self) -> Option<i32> {
        match self {
            Ending::Exited(code) => Some(code),
            Ending::Signaled(signal) => Some(128 + signal),
            Ending::TimedOut | Ending::Interrupted | Ending::Slurm(_) => None,
        }
    }

    /// Words for results and prompts, e.g. "exit status 1", "killed by signal 9 (SIGKILL)".
    pub fn describe(self, limit: Duration) -> String {
        match self {
            Ending::Exited(code) => format!("exit status {code}"),
            Ending::Signaled(signal) => {
                format!("killed by signal {signal} ({})", signal_name(signal))
            }
            Ending::TimedOut => format!(
                "timed out: still running at the hard limit of {}",
                crate::config::HumanDuration(limit)
            ),
            Ending::Interrupted => "interrupted".to_string(),
            Ending::Slurm(end) => end.describe().to_string(),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub ending: Ending,
    pub elapsed: Duration,
}

/// Where a build or a run happens: a process group here, or a Slurm job.
#[derive(Debug, Clone)]
pub enum Executor {
    Local,
    Slurm {
        spec: Arc<crate::config::resolve::SlurmSpec>,
        job: slurm::Job,
    },
}

impl Executor {
    /// Where the pipeline's `executor` runs what job `what` (a run's number, `build`, `check`,
    /// `baseline`) does for experiment `n` of the run `tag` in `run_dir` started at `started`:
    /// here, or as a Slurm job (a build only with `build-in-job`).
    pub fn of(
        executor: &crate::config::resolve::ExecutorSpec,
        tag: &str,
        n: u64,
        what: &str,
        run_dir: &std::path::Path,
        started: f64,
    ) -> Executor {
        let crate::config::resolve::ExecutorSpec::Slurm(spec) = executor else {
            return Executor::Local;
        };
        if what == "build" && !spec.build_in_job {
            return Executor::Local;
        }
        Executor::Slurm {
            spec: Arc::clone(spec),
            job: slurm::Job::new(tag, n, what, run_dir, started),
        }
    }

    /// Runs `spawn` to its end where this executor runs things.
    pub fn run(&self, spawn: &Spawn, watch: &mut dyn Watch) -> io::Result<Finished> {
        match self {
            Executor::Local => run(spawn, watch),
            Executor::Slurm { spec, job } => slurm::run(spec, job, spawn, watch),
        }
    }
}

/// Runs `spawn` to its end, feeding its output lines to `watch`.
pub fn run(spawn: &Spawn, watch: &mut dyn Watch) -> io::Result<Finished> {
    if let Some(dir) = spawn.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let cpus: Option<Vec<u32>> = spawn.cpus.map(<[u32]>::to_vec);
    let expression = duct::cmd("sh", ["-c", spawn.command])
        .dir(spawn.dir)
        .full_env(spawn.env.vars())
        // duct applies the outermost redirection first: join stderr to stdout, then send
        // that stdout to the log.
        .stderr_to_stdout()
        .stdout_path(spawn.log)
        .unchecked()
        .before_spawn(move |command| {
            command.process_group(0);
            if let Some(cpus) = cpus.clone() {
                // SAFETY: the closure runs in the child between fork and exec and only calls
                // sched_setaffinity on a set built before the fork.
                unsafe {
                    command.pre_exec(move || pin_to(&cpus));
                }
            }
            Ok(())
        });
    let expression = match spawn.stdin {
        Some(path) => expression.stdin_path(path),
        None => expression.stdin_null(),
    };
    let started = Instant::now();
    let handle = expression.start()?;
    // The leader's pid is the group id (process_group(0)). From here on the guard stops the
    // group on every way out, an I/O error included.
    let group = Group::started(handle.pids()[0] as i32);
    let mut tail = LogTail::open(spawn.log)?;
    let deadline = started + spawn.limit;

    let ending = loop {
        if let Some(output) = handle.wait_timeout(POLL)? {
            break exit_ending(output.status);
        }
        tail.poll(&mut |line| watch.line(line))?;
        watch.tick(started.elapsed(), group.id);
        if interrupt::requested() {
            stop_group(group.id, spawn.grace, &handle)?;
            break Ending::Interrupted;
        }
        if Instant::now() >= deadline {
            stop_group(group.id, spawn.grace, &handle)?;
            break Ending::TimedOut;
        }
    };
    let elapsed = started.elapsed();
    // Whatever the leader left behind in its group (background workers) goes too, and is gone
    // before the next command starts (a GPU is free only when its last process has exited).
    signal_group(group.id, libc::SIGKILL);
    wait_until_gone(group.id, KILL_WAIT);
    drop(group);
    tail.poll(&mut |line| watch.line(line))?;
    tail.finish(&mut |line| watch.line(line));
    Ok(Finished { ending, elapsed })
}

/// How long processes may take to disappear after SIGKILL (a process in uninterruptible sleep,
/// e.g. in a GPU driver, exits only when the call returns).
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The running command's process group, stopped with SIGKILL if it is dropped early (an error
/// on the way out of `run`), and known to interrupts and the leftovers file while it lives.
struct Group {
    id: i32,
}

impl Group {
    fn started(id: i32) -> Group {
        interrupt::add_running_group(id);
        orphans::started(id);
        Group { id }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        signal_group(self.id, libc::SIGKILL);
        interrupt::remove_running_group(self.id);
        orphans::finished(self.id);
    }
}

/// Restricts the calling process (a child before exec) to `cpus`.
fn pin_to(cpus: &[u32]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it for numbers below
    // CPU_SETSIZE, and sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if (cpu as usize) < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu as usize, &mut set);
            }
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn exit_ending(status: std::process::ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signaled(signal),
        (None, None) => Ending::Exited(-1),
    }
}

/// SIGTERM to the group; up to `grace` for every process of it to exit (not only the leader:
/// with `sh -c python3 train.py` the shell dies at once and the trainer is still saving its
/// checkpoint); then SIGKILL to what is left, and wait until it is gone.
fn stop_group(group: i32, grace: Duration, handle: &duct::Handle) -> io::Result<()> {
    signal_group(group, libc::SIGTERM);
    let until = Instant::now() + grace;
    loop {
        // Reaping the leader as soon as it exits keeps it from counting as alive.
        handle.try_wait()?;
        if !group_alive(group) || Instant::now() >= until {
            break;
        }
        std::thread::sleep(GROUP_POLL);
    }
    signal_group(group, libc::SIGKILL);
    handle.wait()?;
    wait_until_gone(group, KILL_WAIT);
    Ok(())
}

const GROUP_POLL: Duration = Duration::from_millis(20);

/// Waits until no live process is left in `group`, at most `limit`; false when some are.
pub fn wait_until_gone(group: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while group_alive(group) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(GROUP_POLL);
    }
    true
}

/// Whether any process of `group` is still alive. Zombies do not count: they hold nothing, and
/// a reaper that never reaps (some containers' init) would otherwise keep a group alive forever.
pub fn group_alive(group: i32) -> bool {
    if group <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the group exists.
    if unsafe { libc::killpg(group, 0) } != 0 {
        return false;
    }
    !orphans::members(group).is_empty()
}

/// Sends `signal` to every process of the group; a group that is gone already is fine.
pub fn signal_group(group: i32, signal: i32) {
    if group > 0 {
        // SAFETY: killpg only sends a signal; a stale or empty group yields ESRCH, ignored.
        unsafe {
            libc::killpg(group, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_left_on_an_error_path_is_killed() {
        use std::os::unix::process::CommandExt as _;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60"])
            .process_group(0)
            .spawn()
            .unwrap();
        let id = child.id() as i32;
        assert!(!wait_until_gone(id, Duration::from_millis(300)), "it runs");
        {
            // What `run` holds while the command runs; an early return drops it like this.
            let _group = Group::started(id);
        }
        child.wait().unwrap();
        assert!(
            wait_until_gone(id, Duration::from_secs(5)),
            "the group survived"
        );
    }

    #[test]
    fn endings_describe_themselves() {
        let limit = Duration::from_secs(600);
        assert_eq!(Ending::Exited(1).describe(limit), "exit status 1");
        assert_eq!(Ending::Signaled(9).code(), Some(137));
        assert_eq!(
            Ending::Signaled(9).describe(limit),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            Ending::TimedOut.describe(limit),
            "timed out: still running at the hard limit of 10m"
        );
    }
}
