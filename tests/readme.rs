//! The docs' pipelines stay true: the example pipelines validate and the reference matches the
//! types.

use std::path::Path;
use std::process::Command;

/// A page of the docs, by its path in the repository.
fn page(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("the page lacks {start}"))
        + start.len();
    let to = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("the page lacks {end}"))
        + from;
    &text[from..to]
}

#[test]
fn the_example_pipeline_validates() {
    let text = page("docs/reference.md");
    let block = between(
        &text,
        "<!-- example-pipeline:start -->",
        "<!-- example-pipeline:end -->",
    );
    let dir = tempfile::tempdir().unwrap();
    assert_validates(
        &dir.path().join("pipelines/example.toml"),
        between(block, "```toml\n", "```"),
    );
}

/// Writes `toml` to `file` and checks that `arun validate` accepts it.
fn assert_validates(file: &Path, toml: &str) {
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, toml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_arun"))
        .arg("validate")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_slurm_pipeline_validates() {
    let text = page("docs/slurm.md");
    let block = between(
        &text,
        "<!-- slurm-pipeline:start -->",
        "<!-- slurm-pipeline:end -->",
    );
    let dir = tempfile::tempdir().unwrap();
    // The example's repository, made here: a shared home is not.
    let repo = dir.path().join("nanogpt");
    std::fs::create_dir_all(&repo).unwrap();
    for file in ["train.py", "prepare.py"] {
        std::fs::write(repo.join(file), "").unwrap();
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "start"]);
    let toml = between(block, "```toml\n", "```")
        .replace("/shared/home/me/nanogpt", &repo.display().to_string());
    assert_validates(&dir.path().join("pipelines/nanogpt-slurm.toml"), &toml);
}

#[test]
fn the_reference_matches_the_schema() {
    let text = page("docs/reference.md");
    let documented = between(
        &text,
        "<!-- reference:start -->\n",
        "<!-- reference:end -->",
    );
    let generated = arun::config::schema::reference_markdown();
    assert!(
        documented == generated,
        "docs/reference.md's reference is out of date: run `.ci/update-generated`, which replaces \
         the section between the reference markers with the output of `cargo run -- schema --markdown`"
    );
}
