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
