//! Test harness: a target repository made from `tests/fixtures/scripted-trainer` in a temp dir, the
//! scripted agent of `tests/scripts/agent.py` driven by a JSON plan, and the real `arun` binary.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct Target {
    pub dir: tempfile::TempDir,
    pub pipeline: PathBuf,
    pub repo: PathBuf,
}

/// A pipeline over the scripted target; `extra` is appended (further tables such as
/// `[decision]`), `experiment` replaces keys of the `[experiment]` table.
pub struct Setup<'a> {
    /// The fixture directory under `tests/fixtures` the target is made from.
    pub template: &'a str,
    pub plan: serde_json::Value,
    /// The experiment's run command.
    pub run: &'a str,
    /// More entries of the experiment's `env` table, e.g. `NOISE_SD = "0.001"`.
    pub env: &'a str,
    pub experiment: &'a str,
    /// The `[proposer]` tables; by default the scripted agent of `tests/scripts/agent.py`.
    /// `{root}` and `{plan}` are replaced by the repository root and the plan file.
    pub proposer: &'a str,
    pub extra: &'a str,
}

/// The default proposer: the scripted agent command.
pub const SCRIPTED_AGENT: &str = r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 2

[proposer.agent]
command = "python3 {root}/tests/scripts/agent.py"
env = { PLAN = "{plan}" }
"#;

/// The Claude Code preset, for the scripted stand-in on PATH (`stand_in_path`), which reports
/// what each proposal cost.
pub const CLAUDE_STAND_IN: &str = r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 2

[proposer.agent]
preset = "claude"
env = { PLAN = "{plan}" }
"#;

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            template: "scripted-trainer",
            plan: serde_json::json!({}),
            run: "python3 train.py",
            env: "",
            experiment: "budget = \"2s\"\nhard-limit = \"4s\"\ngrace = \"1s\"",
            proposer: SCRIPTED_AGENT,
            extra: "",
        }
    }
}

impl Target {
    pub fn new(setup: Setup) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.json");
        std::fs::write(&plan, serde_json::to_string_pretty(&setup.plan).unwrap()).unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        let text = format!(
            r#"[target]
repo = "repo"
template = "{root}/tests/fixtures/{template}"
editable = ["train.py"]
read-only = ["prepare.py"]
context = ["README.md"]

[experiment]
run = "{run}"
env = {{ PIDFILE = "{dir}/pids"{env} }}
{experiment}

[metric]
name = "val_loss"
regex = '^val_loss:\s*(\S+)'
memory = "peak_mem_mb"

[metric.extra]
peak_mem_mb = '^peak_mem_mb:\s*([0-9.]+)'

{proposer}

{extra}
"#,
            root = ROOT,
            template = setup.template,
            dir = dir.path().display(),
            run = setup.run,
            env = if setup.env.is_empty() {
                String::new()
            } else {
                format!(", {}", setup.env)
            },
            experiment = setup.experiment,
            proposer = setup
                .proposer
                .replace("{root}", ROOT)
                .replace("{plan}", &plan.display().to_string()),
            extra = setup.extra,
        );
        std::fs::write(&pipeline, text).unwrap();
        let repo = dir.path().join("repo");
        Target {
            dir,
            pipeline,
            repo,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes the target repository from the template with the git command line, as a user's
    /// own repository would be, before any arun touches it.
    pub fn init_repo(&self) {
        std::fs::create_dir_all(&self.repo).unwrap();
        let template = format!("{ROOT}/tests/fixtures/scripted-trainer");
        for entry in std::fs::read_dir(&template).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), self.repo.join(entry.file_name())).unwrap();
        }
        for args in [
            &["init", "-q"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-qm",
                "start",
            ],
        ] {
            self.git(args);
        }
    }

    /// `arun PIPELINE --tag test ARGS...`, to its end.
    pub fn arun(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run { output }
    }

    /// `arun` with extra environment variables.
    pub fn arun_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        Run {
            output: command.output().unwrap(),
        }
    }

    /// `arun ARGS` as given (a subcommand such as `report`), in the test's directory.
    pub fn arun_command(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_arun"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ARUN_FAILPOINT")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        Run { output }
    }

    /// The same command, started and left running.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arun"));
        command
            .arg(&self.pipeline)
            .args(["--tag", "test"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ARUN_FAILPOINT")
            .env("NO_COLOR", "1");
        command
    }

    pub fn results(&self) -> String {
        std::fs::read_to_string(self.repo.join("results.tsv")).unwrap()
    }

    /// results.tsv with each commit checked against `refs/arun/test/<n>` and replaced by `#<n>`.
    pub fn results_redacted(&self) -> String {
        let text = self.results();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for (n, line) in lines.enumerate() {
            let (commit, rest) = line.split_once('\t').unwrap();
            assert_eq!(
                commit,
                self.ref_short(n as u64),
                "row {n} names the wrong commit: {line}"
            );
            out.push_str(&format!("#{n}\t{rest}\n"));
        }
        out
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(&self.repo)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub fn ref_short(&self, n: u64) -> String {
        self.git(&["rev-parse", "--short=7", &format!("refs/arun/test/{n}")])
    }

    pub fn refs(&self) -> Vec<String> {
        let text = self.git(&["for-each-ref", "--format=%(refname)", "refs/arun/test/"]);
        let mut refs: Vec<String> = text.lines().map(str::to_string).collect();
        refs.sort_by_key(|r| r.rsplit('/').next().unwrap().parse::<u64>().unwrap());
        refs
    }

    pub fn branch_tip(&self) -> String {
        self.git(&["rev-parse", "--short=7", "autoresearch/test"])
    }

    /// The branch HEAD is on, or `None` when detached.
    pub fn head_branch(&self) -> Option<String> {
        let out = Command::new("git")
            .args(["symbolic-ref", "--short", "-q", "HEAD"])
            .current_dir(&self.repo)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    /// `git status --porcelain` without untracked files that arun or the trainer made.
    pub fn status(&self) -> String {
        self.git(&["status", "--porcelain"])
    }

    pub fn train_py(&self) -> String {
        std::fs::read_to_string(self.repo.join("train.py")).unwrap()
    }

    /// The run store of the target, `.git/arun`.
    pub fn store(&self) -> PathBuf {
        self.repo.join(".git/arun")
    }

    /// The directory of the run tagged `test`.
    pub fn run_dir(&self) -> PathBuf {
        self.store().join("test")
    }

    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.run_dir().join("journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The experiments recorded, in the order the journal recorded them.
    pub fn recorded(&self) -> Vec<u64> {
        self.journal()
            .iter()
            .filter(|e| e["event"] == "recorded")
            .map(|e| e["n"].as_u64().unwrap())
            .collect()
    }

    /// Each decision in order: (status, reason).
    pub fn decisions(&self) -> Vec<(String, String)> {
        self.journal()
            .iter()
            .filter(|e| e["event"] == "decided")
            .map(|e| {
                (
                    e["decision"]["status"].as_str().unwrap().to_string(),
                    e["decision"]["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every run measured, in order: (experiment, repeat, metric).
    pub fn measured(&self) -> Vec<(u64, u64, Option<f64>)> {
        self.journal()
            .iter()
            .filter(|e| e["event"] == "measured")
            .map(|e| {
                (
                    e["n"].as_u64().unwrap(),
                    e["repeat"].as_u64().unwrap(),
                    e["measurement"]["metric"].as_f64(),
                )
            })
            .collect()
    }

    /// The agent's calls: (experiment, task, prompt).
    pub fn agent_calls(&self) -> Vec<(u64, String, String)> {
        let path = self.path("plan.json.calls");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["n"].as_u64().unwrap(),
                    v["task"].as_str().unwrap().to_string(),
                    v["prompt"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// PIDs the trainer wrote for the processes it forked.
    pub fn forked_pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path("pids"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The `[EXP]` lines with commits replaced by `#<n>`.
    pub fn exp_lines(&self) -> Vec<String> {
        self.stdout()
            .lines()
            .filter(|l| l.starts_with("[EXP]"))
            .map(|l| {
                let n = l.split_whitespace().nth(2).unwrap();
                let start = l.find("commit:").unwrap() + "commit:".len();
                format!("{}#{n}{}", &l[..start], &l[start + 7..])
            })
            .collect()
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Live processes working in `dir` (their current directory is inside it): what a run must not
/// leave behind.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect()
}

/// Whether `CI` asks for every tool to be there (a missing one fails instead of skipping).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `tests/scripts/failpoints.c` built as a shared library for LD_PRELOAD (once per test
/// binary), or `None` after saying why the test is skipped (outside CI only).
pub fn failpoints_shim() -> Option<PathBuf> {
    static SHIM: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libarun_failpoints.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(format!("{ROOT}/tests/scripts/failpoints.c"))
            .arg("-ldl")
            .output();
        match built {
            Ok(output) if output.status.success() => Some(out),
            other => {
                let why = format!("cannot build tests/scripts/failpoints.c with cc: {other:?}");
                assert!(!in_ci(), "{why}; .ci/run installs gcc");
                eprintln!("skipping: {why}");
                None
            }
        }
    })
    .clone()
}

/// Whether a process is still alive (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The agent's calls as logged by `tests/scripts/agent.py`: `n`, `task`, `prompt`, `tool`, `argv`.
pub fn call_records(target: &Target) -> Vec<serde_json::Value> {
    std::fs::read_to_string(target.path("plan.json.calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A directory with the scripted stand-ins of the agent CLIs (`tests/scripts/agent_cli.py`
/// linked as `claude`, `codex`, `gemini`, `aider`, `opencode`), and a PATH that finds them first.
pub fn stand_in_path(target: &Target) -> String {
    let bin = target.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["claude", "codex", "gemini", "aider", "opencode"] {
        let link = bin.join(tool);
        if !link.exists() {
            std::os::unix::fs::symlink(format!("{ROOT}/tests/scripts/agent_cli.py"), &link)
                .unwrap();
        }
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `tests/scripts/chat_server.py` running on a free port with a script; stopped when dropped.
pub struct ChatServer {
    child: std::process::Child,
    pub port: u16,
    script: PathBuf,
}

impl ChatServer {
    pub fn start(dir: &Path, script: serde_json::Value) -> ChatServer {
        use std::io::BufRead;
        let path = dir.join("chat-script.json");
        std::fs::write(&path, serde_json::to_string_pretty(&script).unwrap()).unwrap();
        let mut child = Command::new("python3")
            .arg(format!("{ROOT}/tests/scripts/chat_server.py"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .unwrap_or_else(|| panic!("the chat server said {line:?}"))
            .parse()
            .unwrap();
        ChatServer {
            child,
            port,
            script: path,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every request it received: `path`, `headers`, `body`, `problems`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let mut path = self.script.clone().into_os_string();
        path.push(".requests");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` exists (at most a minute), then a moment more for its writer to go on.
pub fn wait_for_file(path: &Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// Sends `signal` to the process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill only sends a signal to a process of the test.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
