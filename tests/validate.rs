//! `arun validate` and `arun schema` driven through the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn arun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("arun runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_fixtures_fail_with_pinned_messages() {
    let root = env!("CARGO_MANIFEST_DIR");
    insta::glob!("fixtures/bad/*.toml", |path| {
        let relative = path.strip_prefix(root).unwrap().to_str().unwrap();
        let output = arun(&["validate", relative]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{relative}: {}",
            stderr(&output)
        );
        insta::with_settings!({ filters => vec![(root, "[ROOT]")] }, {
            insta::assert_snapshot!(stderr(&output));
        });
    });
}

#[test]
fn every_shipped_pipeline_validates() {
    let mut files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .map(|path| format!("pipelines/{}", path.file_name().unwrap().to_str().unwrap()))
            .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let output = arun(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in &files {
        assert!(
            stderr(&output).contains(&format!("{file}: ok")),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn every_file_is_checked_and_the_exit_code_says_whether_all_passed() {
    let output = arun(&[
        "validate",
        "tests/fixtures/bad/wrong-type.toml",
        "pipelines/example.toml",
        "tests/fixtures/bad/bad-enum.toml",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let text = stderr(&output);
    assert!(
        text.contains("wrong-type.toml:9:10: experiment.budget:"),
        "{text}"
    );
    assert!(text.contains("pipelines/example.toml: ok"), "{text}");
    assert!(text.contains("bad-enum.toml:14:8: metric.goal:"), "{text}");
    assert!(
        text.ends_with("2 of 3 pipeline files are invalid\n"),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_reported_not_panicked() {
    let output = arun(&["validate", "pipelines/nope.toml"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).starts_with("pipelines/nope.toml: cannot read the pipeline file: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn committed_schema_matches_the_types() {
    let output = arun(&["schema"]);
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/pipeline.schema.json");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        generated == committed,
        "schemas/pipeline.schema.json is out of date; regenerate it with \
         `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn shipped_pipelines_point_editors_at_the_schema() {
    for name in ["autoresearch.toml", "example.toml"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(name),
        )
        .unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/pipeline.schema.json\n"),
            "{name} must start with the #:schema line"
        );
    }
}

#[test]
fn help_lists_the_commands() {
    let output = arun(&["--help"]);
    assert!(output.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}

/// A pipeline over the fixture tree, in a temp dir: `[target]` keys replaced by `target`, and
/// `extra` appended (top-level keys go first with `top`).
fn temp_pipeline(top: &str, target: &str, extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tree");
    let target = if target.is_empty() {
        format!(
            "repo = \"never-created\"\ntemplate = \"{}\"",
            tree.display()
        )
    } else {
        target.to_string()
    };
    let text = format!(
        "{top}\n[target]\n{target}\neditable = [\"train.py\"]\n\n[experiment]\nrun = \"python3 \
         train.py\"\n\n[metric]\nname = \"val_loss\"\nregex = '^val_loss:\\s*([0-9.]+)'\n\n\
         [proposer]\nkind = \"agent\"\n{extra}\n\n[proposer.agent]\ncommand = \"true\"\n"
    );
    let file = dir.path().join("p.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file.to_str().unwrap().to_string())
}

fn redacted(dir: &tempfile::TempDir, text: &str) -> String {
    text.replace(dir.path().to_str().unwrap(), "[TMP]")
}

#[test]
fn a_bad_pipeline_given_to_run_prints_each_problem_once() {
    let output = arun(&["tests/fixtures/bad/bad-tag.toml"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: tests/fixtures/bad/bad-tag.toml:22:7: limits.tag: unknown placeholder `{week}`; \
         use `{month}`, `{day}`, `{year}` or `{name}`\n\
         error: tests/fixtures/bad/bad-tag.toml:23:11: limits.results: `../results.tsv` must be a \
         path inside the target repository\n"
    );
}

#[test]
fn durations_past_a_year_on_the_command_line_are_usage_errors_not_panics() {
    for option in ["--budget", "--max-time"] {
        for value in ["99999999999999999999h", "366d"] {
            let output = arun(&[option, value, "pipelines/example.toml"]);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{option} {value}: {text}");
            assert!(!text.contains("panicked"), "{text}");
            assert!(
                text.contains(&format!(
                    "invalid duration `{value}`: it is longer than `365d`, the longest duration \
                     arun accepts; write a shorter one"
                )),
                "{text}"
            );
        }
    }
}

#[test]
fn a_tag_that_git_refuses_is_a_usage_error_that_says_which_rule() {
    let cases = [
        ("bad..tag", "a tag must not contain `..`"),
        (".tag", "a tag must not start with `.`"),
        ("tag.lock", "a tag must not end with `.lock`"),
        ("nov/22", "`/` is not allowed in a tag"),
    ];
    for (tag, reason) in cases {
        for args in [
            vec!["--tag", tag, "pipelines/example.toml"],
            vec!["status", "--tag", tag],
            vec!["report", "--tag", tag],
        ] {
            let output = arun(&args);
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
            assert!(
                text.contains(&format!(
                    "invalid value '{tag}' for '--tag <TAG>': {reason}"
                )),
                "{args:?}: {text}"
            );
        }
    }
}

#[test]
fn a_pipeline_file_over_a_mebibyte_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.toml");
    let mut text = String::from("description = \"");
    text.push_str(&"x".repeat(2 * 1024 * 1024));
    text.push_str("\"\n");
    std::fs::write(&file, text).unwrap();
    let output = arun(&["validate", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        redacted(&dir, &stderr(&output)),
        "[TMP]/huge.toml: the pipeline file is larger than 1 MiB, the most a pipeline may be; \
         keep long instructions in a file named by `proposer.instructions-file`\n\
         1 of 1 pipeline file is invalid\n"
    );
}

#[test]
fn long_descriptions_and_instructions_are_refused_with_their_limit() {
    let description = format!("description = \"{}\"", "d".repeat(5000));
    let instructions = format!("instructions = \"{}\"", "i".repeat(70_000));
    let (dir, file) = temp_pipeline(&description, "", &instructions);
    let output = arun(&["validate", &file]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        redacted(&dir, &stderr(&output)),
        "[TMP]/p.toml:1:15: description: is 5000 bytes, over the limit of 4 KiB; keep it to a \
         sentence or two and put the detail in `proposer.instructions`\n\
         [TMP]/p.toml:16:16: proposer.instructions: is 70000 bytes, over the limit of 64 KiB; \
         every prompt carries them, and the agent needs room for the files: shorten them\n\
         1 of 1 pipeline file is invalid\n"
    );

    let (dir, file) = temp_pipeline("", "", "instructions-file = \"program.md\"");
    std::fs::write(dir.path().join("program.md"), "i".repeat(20 * 1024 * 1024)).unwrap();
    let output = arun(&["validate", &file]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        redacted(&dir, &stderr(&output)),
        "[TMP]/p.toml:16:21: proposer.instructions-file: `[TMP]/program.md` is larger than 64 \
         KiB, the most instructions may be; every prompt carries them, and the agent needs room \
         for the files: shorten them\n\
         1 of 1 pipeline file is invalid\n"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn a_target_repository_without_a_commit_is_reported_with_the_fix() {
    let (dir, file) = temp_pipeline("", "repo = \"repo\"", "");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("train.py"), "LR = 0.04\n").unwrap();
    let output = arun(&["validate", &file]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        redacted(&dir, &stderr(&output)),
        "[TMP]/p.toml:3:8: target.repo: the git repository `[TMP]/repo` has no commit yet; \
         commit something first, e.g. `git -C [TMP]/repo add -A && git -C [TMP]/repo commit -m \
         start`\n\
         1 of 1 pipeline file is invalid\n"
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    let output = arun(&["validate", &file]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_missing_template_matters_only_while_the_repository_does_not_exist() {
    let (dir, file) = temp_pipeline("", "repo = \"repo\"\ntemplate = \"gone\"", "");
    let output = arun(&["validate", &file]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        redacted(&dir, &stderr(&output))
            .contains("target.template: template directory `[TMP]/gone` does not exist"),
        "{}",
        stderr(&output)
    );
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("train.py"), "LR = 0.04\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);
    let output = arun(&["validate", &file]);
    assert!(output.status.success(), "{}", stderr(&output));
    // `arun status` reads the run of the existing repository instead of refusing the pipeline.
    let output = arun(&["status", &file]);
    assert!(
        stderr(&output).starts_with("error: there is no run in "),
        "{}",
        stderr(&output)
    );
}
