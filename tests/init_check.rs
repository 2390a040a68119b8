//! `arun init` and `arun check` on copies of real projects (karpathy/autoresearch, nanoGPT, a
//! scikit-learn example, arun's reference trainer; see each `SOURCE`), with stand-ins on PATH
//! for their heavy tools (`tests/fixtures/projects/stand-in`): each becomes a git repository in a
//! temp dir, `arun init --yes` writes a pipeline that validates and names the right metric, and
//! `arun check` runs it once, reads the metric and says `ready`, leaving the repository as it
//! was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn projects() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/projects")
}

/// A git repository holding the fixture project `name` (its SOURCE note left out), committed.
/// The reference trainer is this repository's own `reference/nanochat`, as a user would clone
/// it (its Cargo.toml, .gitignore and sources).
fn repository(dir: &Path, name: &str) -> PathBuf {
    let repo = dir.join(name);
    if name == "nanochat" {
        let reference = Path::new(ROOT).join("reference/nanochat");
        copy_dir(&reference.join("src"), &repo.join("src"));
        for file in ["Cargo.toml", ".gitignore"] {
            std::fs::copy(reference.join(file), repo.join(file)).unwrap();
        }
    } else {
        copy_dir(&projects().join(name), &repo);
        std::fs::remove_file(repo.join("SOURCE")).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the project"]);
    repo
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `arun ARGS` in `dir`, with the stand-ins first on PATH.
fn arun(dir: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        projects().join("stand-in/bin").display(),
        std::env::var("PATH").unwrap()
    );
    Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a fixture project's pipeline must say and its check must read.
struct Expect<'a> {
    project: &'a str,
    init_args: &'a [&'a str],
    /// Lines the pipeline holds.
    pipeline: &'a [&'a str],
    /// Lines the check prints.
    check: &'a [&'a str],
}

fn init_then_check(expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path(), expect.project);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let file = format!("pipelines/{}.toml", expect.project);
    let mut args = vec!["init", expect.project, "-o", &file, "--yes"];
    args.extend(expect.init_args);
    let init = arun(dir.path(), &args);
    assert!(init.status.success(), "init: {}", text(&init.stderr));
    assert_eq!(text(&init.stdout).trim(), file);
    let pipeline = std::fs::read_to_string(dir.path().join(&file)).unwrap();
    for line in expect.pipeline {
        assert!(
            pipeline.lines().any(|l| l.starts_with(line)),
            "{} lacks `{line}`:\n{pipeline}",
            expect.project
        );
    }
    let validate = arun(dir.path(), &["validate", &file]);
    assert!(validate.status.success(), "{}", text(&validate.stderr));

    let check = arun(dir.path(), &["check", &file]);
    let report = text(&check.stdout);
    assert!(check.status.success(), "{report}\n{}", text(&check.stderr));
    for line in expect.check {
        assert!(
            report.lines().any(|l| l.starts_with(line)),
            "the check of {} lacks `{line}`:\n{report}",
            expect.project
        );
    }
    assert_eq!(report.lines().last(), Some("ready"), "{report}");
    // Neither command touched the repository: no branch, no commit, no file.
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        git(&repo, &["branch", "--format=%(refname:short)"]),
        "main\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain", "--ignored"]), "");
}

#[test]
fn autoresearch() {
    init_then_check(Expect {
        project: "autoresearch",
        init_args: &[],
        pipeline: &[
            r#"editable = ["train.py"]"#,
            r#"read-only = ["prepare.py", "pyproject.toml"]"#,
            r#"build = "uv sync""#,
            r#"run = "uv run train.py""#,
            r#"name = "val_bpb""#,
            r"regex = '^val_bpb:\s*([0-9.]+)'",
            r#"goal = "minimize""#,
            r#"memory = "peak_vram_mb""#,
            r#"memory-unit = "mb""#,
            r#"instructions-file = "../autoresearch/program.md""#,
            "# [[knob]]",
            r#"# name = "MATRIX_LR""#,
        ],
        check: &[
            "metric     val_bpb = 0.9979 (lower is better)",
            "extra      training_seconds = 300.1",
            "memory     44.00 GiB peak, from `peak_vram_mb`",
        ],
    });
}

#[test]
fn nanogpt_with_its_config_named_in_the_command() {
    init_then_check(Expect {
        project: "nanogpt",
        init_args: &["--run", "python train.py config/train_shakespeare_char.py"],
        pipeline: &[
            r#"editable = ["train.py"]"#,
            r#"read-only = ["model.py", "configurator.py", "config/train_shakespeare_char.py"]"#,
            r#"name = "val_loss""#,
            r"regex = '\bval loss\s+([0-9.]+)'",
            r#"goal = "minimize""#,
        ],
        check: &["metric     val_loss = 1.4965 (lower is better)"],
    });
}

#[test]
fn a_scikit_learn_example_maximises_its_test_score() {
    init_then_check(Expect {
        project: "sklearn-mnist",
        init_args: &[],
        pipeline: &[
            r#"editable = ["plot_mnist_filters.py"]"#,
            r#"run = "python plot_mnist_filters.py""#,
            r#"name = "test_set_score""#,
            r"regex = '^Test set score:\s*([0-9.]+)'",
            r#"goal = "maximize""#,
            "# No UPPER_CASE constant",
        ],
        check: &["metric     test_set_score = 0.97 (higher is better)"],
    });
}

#[test]
fn the_reference_trainer_with_the_knob_search() {
    init_then_check(Expect {
        project: "nanochat",
        init_args: &["--knobs"],
        pipeline: &[
            r#"editable = ["src/train.rs"]"#,
            r#"build = "cargo build --release""#,
            r#"run = "target/release/nanochat""#,
            r#"CARGO_TARGET_DIR = "target""#,
            r#"name = "val_bpb""#,
            r#"kind = "knobs""#,
            "[[knob]]",
            r#"name = "MATRIX_LR""#,
        ],
        check: &[
            "build      `cargo build --release`: ok",
            "metric     val_bpb = 1.35201 (lower is better)",
            "knob       DEPTH = 4 (src/train.rs:",
        ],
    });
}

#[test]
fn check_names_the_first_thing_to_fix_and_init_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path(), "autoresearch");
    let file = "pipelines/autoresearch.toml";
    let init = arun(dir.path(), &["init", "autoresearch", "-o", file, "--yes"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let written = std::fs::read_to_string(dir.path().join(file)).unwrap();

    let again = arun(dir.path(), &["init", "autoresearch", "-o", file, "--yes"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("never overwrites"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(file)).unwrap(),
        written
    );

    let wrong = written.replace(r"'^val_bpb:\s*([0-9.]+)'", r"'^val_bpc:\s*([0-9.]+)'");
    std::fs::write(dir.path().join(file), wrong).unwrap();
    let check = arun(dir.path(), &["check", file]);
    assert_eq!(check.status.code(), Some(1));
    let report = text(&check.stdout);
    assert_eq!(
        report.lines().last(),
        Some(
            r"not ready: metric regex `^val_bpc:\s*([0-9.]+)` never matched in the baseline's output:"
        ),
        "{report}"
    );
    assert!(
        report.contains("num_params_M:     50.3"),
        "the log's tail is shown: {report}"
    );
}

#[test]
fn init_refuses_a_metric_the_program_does_not_print() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path(), "sklearn-mnist");
    let init = arun(
        dir.path(),
        &["init", "sklearn-mnist", "--yes", "--metric", "val_accuracy"],
    );
    assert_eq!(init.status.code(), Some(1));
    let stderr = text(&init.stderr);
    assert!(
        stderr.contains("`--metric val_accuracy`: the output has no value of that name"),
        "{stderr}"
    );
    assert!(stderr.contains("`test_set_score`"), "{stderr}");
    assert!(!dir.path().join("pipelines/sklearn-mnist.toml").exists());
}

#[test]
fn init_reads_a_log_instead_of_probing() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path(), "nanogpt");
    let log = projects().join("stand-in/output/nanogpt.txt");
    let init = arun(
        dir.path(),
        &[
            "init",
            "nanogpt",
            "-o",
            "nanogpt.toml",
            "--yes",
            "--log",
            log.to_str().unwrap(),
            "--metric",
            "train loss",
        ],
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    let pipeline = std::fs::read_to_string(dir.path().join("nanogpt.toml")).unwrap();
    assert!(pipeline.contains(r#"name = "train_loss""#), "{pipeline}");
    assert!(pipeline.contains("# From the log `"), "{pipeline}");
    assert!(pipeline.contains(r#"budget = "5m""#), "{pipeline}");
}

/// A repository with `train.sh` and a pipeline over it with `experiment` as its `[experiment]`
/// table and `extra` appended.
fn scripted(dir: &Path, script: &str, experiment: &str, extra: &str) -> String {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("train.sh"), script).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the project"]);
    let pipeline = format!(
        "[target]\nrepo = \"repo\"\neditable = [\"train.sh\"]\n\n[experiment]\n{experiment}\n\n\
         [metric]\nname = \"loss\"\nregex = '^loss: ([0-9.]+)'\n\n[proposer]\nkind = \"agent\"\n\n\
         [proposer.agent]\ncommand = \"true\"\n{extra}"
    );
    std::fs::write(dir.join("p.toml"), pipeline).unwrap();
    "p.toml".to_string()
}

#[test]
fn check_stops_a_baseline_at_the_hard_limit_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = scripted(
        dir.path(),
        "echo 'loss: 1.5'\nsleep 30\n",
        "run = \"sh train.sh\"\nbudget = \"1s\"\nhard-limit = \"2s\"\ngrace = \"1s\"",
        "",
    );
    let check = arun(dir.path(), &["check", &file]);
    assert_eq!(check.status.code(), Some(1));
    let report = text(&check.stdout);
    assert!(
        report.lines().last().unwrap().starts_with(
            "not ready: the baseline was still running at the hard limit 2s: the script must \
             stop by itself"
        ),
        "{report}"
    );
}

#[test]
fn a_failing_preflight_check_is_the_first_thing_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = scripted(
        dir.path(),
        "echo 'loss: 1.5'\n",
        "run = \"sh train.sh\"",
        "\n[[preflight]]\nrun = \"test -f data.bin\"\nmessage = \"data missing: run `make data`\"\n",
    );
    let check = arun(dir.path(), &["check", &file]);
    assert_eq!(check.status.code(), Some(4));
    let report = text(&check.stdout);
    assert_eq!(
        report.lines().last(),
        Some("not ready: data missing: run `make data`"),
        "{report}"
    );
}

#[test]
fn a_probe_that_runs_past_its_time_is_stopped_and_its_values_still_count() {
    let dir = tempfile::tempdir().unwrap();
    scripted(
        dir.path(),
        "echo 'step 1 | val_loss: 1.25'\nsleep 30\n",
        "run = \"true\"",
        "",
    );
    let init = arun(
        dir.path(),
        &[
            "init",
            "repo",
            "-o",
            "init.toml",
            "--yes",
            "--run",
            "sh train.sh",
            "--editable",
            "train.sh",
            "--probe",
            "2s",
        ],
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    let pipeline = std::fs::read_to_string(dir.path().join("init.toml")).unwrap();
    assert!(pipeline.contains(r#"name = "val_loss""#), "{pipeline}");
    assert!(
        pipeline
            .contains("# From a probe run of `sh train.sh`, stopped after 2s before it finished"),
        "{pipeline}"
    );
    assert!(pipeline.contains(r#"budget = "5m""#), "{pipeline}");
}
