//! The presets against the real coding-agent CLIs, when they are installed (`.ci/run` installs
//! them from npm and PyPI into `$ARUN_AGENT_TOOLS`; each test is skipped with its reason when
//! its tool is missing, except under `CI=true`, where a missing tool fails it).
//!
//! - Each preset's command line is accepted by the real tool: it fails for lack of credentials
//!   or network, never for an unknown option (and the same tool given an unknown option does
//!   print a usage error, so the check can fail).
//! - aider, Claude Code and Codex, pointed at the scripted model server of `tests/scripts`
//!   (`OPENAI_API_BASE`; `ANTHROPIC_BASE_URL`; a model provider given with `-c`), edit the real
//!   file inside a real arun loop.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arun::config::file::AgentPreset;
use common::{ChatServer, Run, Setup, Target, in_ci};
use serde_json::json;

/// What the tools print for an option they do not know (opencode prints only its usage, under
/// yargs' `Positionals:` heading).
const USAGE_ERRORS: [&str; 7] = [
    "unknown option",
    "unexpected argument",
    "Unknown argument",
    "unrecognized arguments",
    "Unknown arguments",
    "error: invalid value",
    "Positionals:",
];

/// Where the tool is: `$ARUN_AGENT_TOOLS/bin`, then PATH.
fn find(tool: &str) -> Option<PathBuf> {
    let installed = std::env::var_os("ARUN_AGENT_TOOLS").map(|d| PathBuf::from(d).join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    installed
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(tool))
        .find(|file| file.is_file())
}

/// The tool's path, or `None` after printing why the test is skipped. In CI, where `.ci/run`
/// installs every tool and fails when it cannot, a missing tool fails the test instead: a green
/// CI must mean the real CLIs were exercised.
fn installed(tool: &str) -> Option<PathBuf> {
    let found = find(tool);
    if found.is_none() {
        assert!(
            !in_ci(),
            "`{tool}` is not installed (neither in $ARUN_AGENT_TOOLS/bin nor on PATH); .ci/run \
             installs it, and in CI its absence is a failure, not a skip"
        );
        eprintln!(
            "skipping: `{tool}` is not installed (neither in $ARUN_AGENT_TOOLS/bin nor on PATH); \
             .ci/run installs it"
        );
    }
    found
}

/// PATH with the tool's directory first.
fn path_with(tool: &Path) -> String {
    format!(
        "{}:{}",
        tool.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A git repository with the scripted trainer, a prompt and a run directory, as arun gives an
/// agent.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    for file in ["train.py", "prepare.py", "README.md"] {
        std::fs::copy(
            format!("{}/tests/fixtures/scripted-trainer/{file}", common::ROOT),
            repo.join(file),
        )
        .unwrap();
    }
    let run_dir = repo.join(".arun/test");
    std::fs::create_dir_all(run_dir.join("prompts")).unwrap();
    std::fs::write(
        run_dir.join("prompts/1.md"),
        "Lower the learning rate in train.py. End with `DESCRIPTION: <what you changed>`.\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap();
        assert!(status.success());
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join(".git/info/exclude"), "/.arun/\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "start"]);
    dir
}

/// Runs `command` with `sh -c` in `dir` as arun runs an agent (prompt on stdin, arun's variables
/// set), stopped after `limit`; returns its output.
fn run_agent(command: &str, dir: &Path, env: &[(&str, String)], limit: Duration) -> String {
    let prompt = dir.join(".arun/test/prompts/1.md");
    let log = dir.join(".arun/test/agent.log");
    let mut child = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .stdin(std::fs::File::open(&prompt).unwrap())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .env("ARUN_PROMPT_FILE", &prompt)
        .env("ARUN_RUN_DIR", dir.join(".arun/test"))
        .env("ARUN_REPO", dir)
        .env("ARUN_EDITABLE", "train.py")
        .env("ARUN_TASK", "propose")
        .env("ARUN_EXPERIMENT", "1")
        .env("ARUN_TAG", "test")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            // SAFETY: killpg on the group we created.
            unsafe {
                libc::killpg(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut output = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    output
}

fn usage_error(output: &str) -> Option<&'static str> {
    USAGE_ERRORS.into_iter().find(|e| output.contains(e))
}

/// Runs the preset's command line (plus `extra`) against the real tool, then the same with an
/// unknown option.
fn check_accepted(
    tool: &str,
    preset: AgentPreset,
    extra: &str,
    env: impl Fn(&ChatServer, &Path) -> Vec<(&'static str, String)>,
    reaches_server: bool,
) {
    let Some(binary) = installed(tool) else {
        return;
    };
    let dir = workspace();
    let server = ChatServer::start(dir.path(), json!({"model": "test-model"}));
    let mut vars = env(&server, dir.path());
    vars.push(("PATH", path_with(&binary)));
    let command = format!(
        "{} {extra}",
        arun::config::presets::command(
            preset,
            &["train.py".to_string()],
            &["prepare.py".to_string()]
        )
    );
    // A tool that cannot reach a model here retries for a long time; a usage error would show
    // in its first second.
    let limit = Duration::from_secs(if reaches_server { 60 } else { 15 });
    let output = run_agent(&command, dir.path(), &vars, limit);
    assert_eq!(
        usage_error(&output),
        None,
        "`{command}` was refused by {tool}:\n{output}"
    );
    if reaches_server {
        assert!(
            !server.requests().is_empty(),
            "{tool} never reached the model server:\n{output}"
        );
    }
    let bad = format!("{command} --arun-no-such-option");
    let output = run_agent(&bad, dir.path(), &vars, limit);
    assert!(
        usage_error(&output).is_some(),
        "{tool} accepted an unknown option, so this check proves nothing:\n{output}"
    );
}

fn home(dir: &Path) -> String {
    let home = dir.join(".arun/home");
    std::fs::create_dir_all(&home).unwrap();
    home.display().to_string()
}

#[test]
fn claude_accepts_the_preset_command_line() {
    check_accepted(
        "claude",
        AgentPreset::Claude,
        "",
        |server, dir| {
            vec![
                ("HOME", home(dir)),
                ("ANTHROPIC_API_KEY", "sk-test".into()),
                (
                    "ANTHROPIC_BASE_URL",
                    format!("http://127.0.0.1:{}", server.port),
                ),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ]
        },
        true,
    );
}

/// Codex's `-c` options add a model provider at the scripted server.
fn codex_provider(server: &ChatServer) -> String {
    format!(
        "-m test-model -c model_provider=arun_test -c 'model_providers.arun_test={{name=\"arun \
         test\",base_url=\"{}\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}'",
        server.base_url()
    )
}

#[test]
fn codex_accepts_the_preset_command_line() {
    let Some(binary) = installed("codex") else {
        return;
    };
    // The provider options need the server's port, so this check builds its own command line.
    let dir = workspace();
    let server = ChatServer::start(dir.path(), json!({"model": "test-model"}));
    let codex_home = dir.path().join(".arun/codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let vars = vec![
        ("PATH", path_with(&binary)),
        ("HOME", home(dir.path())),
        ("CODEX_HOME", codex_home.display().to_string()),
        ("OPENAI_API_KEY", "sk-test".to_string()),
    ];
    let command = format!(
        "{} {}",
        arun::config::presets::command(AgentPreset::Codex, &[], &[]),
        codex_provider(&server)
    );
    let output = run_agent(&command, dir.path(), &vars, Duration::from_secs(30));
    assert_eq!(usage_error(&output), None, "`{command}`:\n{output}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r["path"] == "/v1/responses"),
        "codex never reached the model server:\n{output}"
    );
    let output = run_agent(
        &format!("{command} --arun-no-such-option"),
        dir.path(),
        &vars,
        Duration::from_secs(30),
    );
    assert!(usage_error(&output).is_some(), "{output}");
}

#[test]
fn gemini_accepts_the_preset_command_line() {
    check_accepted(
        "gemini",
        AgentPreset::Gemini,
        "",
        |server, dir| {
            vec![
                ("HOME", home(dir)),
                ("GEMINI_API_KEY", "test-key".into()),
                (
                    "GOOGLE_GEMINI_BASE_URL",
                    format!("http://127.0.0.1:{}", server.port),
                ),
            ]
        },
        false,
    );
}

#[test]
fn opencode_accepts_the_preset_command_line() {
    check_accepted(
        "opencode",
        AgentPreset::Opencode,
        "",
        |_, dir| vec![("HOME", home(dir)), ("OPENAI_API_KEY", "sk-test".into())],
        false,
    );
}

fn aider_env(server: &ChatServer, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home(dir)),
        ("OPENAI_API_BASE", server.base_url()),
        ("OPENAI_API_KEY", "sk-test".into()),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True".into()),
    ]
}

#[test]
fn aider_accepts_the_preset_command_line() {
    check_accepted(
        "aider",
        AgentPreset::Aider,
        "--model openai/test-model",
        aider_env,
        true,
    );
}

const DIFF_ANSWER: &str = "DESCRIPTION: lower LR to 0.05\n\ntrain.py\n```python\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.05\n>>>>>>> REPLACE\n```\n";

/// A pipeline over the scripted trainer whose proposer is `preset` with `args` and `env`.
fn loop_target(preset: &str, args: &str, env: &str) -> Target {
    let proposer = format!(
        r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 1
timeout = "3m"

[proposer.agent]
preset = "{preset}"
args = '''{args}'''
env = {{ {env} }}
"#
    );
    Target::new(Setup {
        proposer: Box::leak(proposer.into_boxed_str()),
        ..Setup::default()
    })
}

/// Runs the baseline and one proposal with the real tool first on PATH; every request it sent
/// must have passed the scripted server's checks.
fn run_two_experiments(target: &Target, server: &ChatServer, binary: &Path) -> Run {
    let run = target.arun_with_env(&["--max-experiments", "2"], &[("PATH", &path_with(binary))]);
    run.assert_code(0);
    for request in server.requests() {
        assert_eq!(request["problems"], json!([]), "{request}");
    }
    run
}

fn assert_first_experiment_kept(target: &Target, tool: &str, stderr: &str) {
    let results = target.results();
    let rows: Vec<&str> = results.lines().collect();
    assert_eq!(rows.len(), 3, "{tool}: {results}\n{stderr}");
    assert!(
        rows[2].ends_with("\tkeep\tlower LR to 0.05"),
        "{tool}: {results}\n{stderr}"
    );
    let kept = target.git(&["show", "autoresearch/test:train.py"]);
    assert!(kept.contains("\nLR = 0.05\n"), "{kept}");
    assert_eq!(target.status(), "", "{tool} left files in the work tree");
    let proposed: Vec<serde_json::Value> = target
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "proposed")
        .collect();
    assert!(
        proposed[0]["tokens"]["input"].as_u64().unwrap_or(0) > 0,
        "{tool} reported no tokens: {proposed:?}"
    );
}

#[test]
fn real_aider_edits_the_file_in_an_arun_loop() {
    let Some(binary) = installed("aider") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(
        dir.path(),
        json!({"model": "test-model", "api_key": "sk-test", "default": DIFF_ANSWER}),
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let target = loop_target(
        "aider",
        "--model openai/test-model --edit-format diff",
        &format!(
            "OPENAI_API_BASE = \"{}\", OPENAI_API_KEY = \"sk-test\", HOME = \"{}\", \
             LITELLM_LOCAL_MODEL_COST_MAP = \"True\"",
            server.base_url(),
            home.display()
        ),
    );
    let run = run_two_experiments(&target, &server, &binary);
    assert_first_experiment_kept(&target, "aider", &run.stderr());
}

#[test]
fn real_claude_code_edits_the_file_in_an_arun_loop() {
    let Some(binary) = installed("claude") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = loop_target("claude", "", "");
    // The repository exists once arun created it; the server needs the file's absolute path.
    let file = target.repo.join("train.py");
    let server = ChatServer::start(
        dir.path(),
        json!({"api_key": "sk-test", "claude": {
            "file": file.display().to_string(),
            "old": "LR = 0.1",
            "new": "LR = 0.05",
            "description": "lower LR to 0.05",
        }}),
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let pipeline = std::fs::read_to_string(&target.pipeline).unwrap().replace(
        "env = {  }",
        &format!(
            "env = {{ ANTHROPIC_BASE_URL = \"http://127.0.0.1:{}\", ANTHROPIC_API_KEY = \
             \"sk-test\", HOME = \"{}\", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\" }}",
            server.port,
            home.display()
        ),
    );
    std::fs::write(&target.pipeline, pipeline).unwrap();
    let run = run_two_experiments(&target, &server, &binary);
    // Claude Code prices the scripted usage itself.
    let cost = target
        .journal()
        .into_iter()
        .find(|e| e["event"] == "proposed")
        .and_then(|e| e["cost_usd"].as_f64());
    assert!(cost.is_some_and(|c| c > 0.0), "no cost journaled: {cost:?}");
    assert_first_experiment_kept(&target, "claude", &run.stderr());
}

#[test]
fn real_codex_edits_the_file_in_an_arun_loop() {
    let Some(binary) = installed("codex") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(
        dir.path(),
        json!({"model": "test-model", "api_key": "sk-test", "codex": {
            "command": "sed -i 's/^LR = 0.1$/LR = 0.05/' train.py",
            "description": "lower LR to 0.05",
        }}),
    );
    let home = dir.path().join("home");
    let codex_home = home.join("codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let target = loop_target(
        "codex",
        &codex_provider(&server),
        &format!(
            "OPENAI_API_KEY = \"sk-test\", HOME = \"{}\", CODEX_HOME = \"{}\"",
            home.display(),
            codex_home.display()
        ),
    );
    let run = run_two_experiments(&target, &server, &binary);
    assert_first_experiment_kept(&target, "codex", &run.stderr());
}
