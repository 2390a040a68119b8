//! End-to-end tests of the trainer: a tiny model learns, runs are reproducible, the model is
//! causal, the binary prints the summary block arun reads, and the editable `src/train.rs`
//! cannot reach the validation split or replace the read-only measurement.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use nanochat::prepare::{
    Backend, DataSource, Dataset, Diverged, MAX_SEQ_LEN, RunSettings, TrainingClock, VOCAB_SIZE,
};
use nanochat::train::{Gpt, Hyperparameters, TrainOutcome, train};
use regex::Regex;

/// A model small enough to train a few hundred steps in seconds on two cores.
fn tiny() -> Hyperparameters {
    Hyperparameters {
        depth: 1,
        model_dim: 32,
        head_dim: 16,
        batch_size: 4,
        embedding_lr: 0.02,
        matrix_lr: 0.01,
        unembedding_lr: 0.01,
        warmup_ratio: 0.0,
        ..Hyperparameters::DEFAULT
    }
}

fn settings(max_steps: Option<u64>, seed: u64) -> RunSettings {
    RunSettings {
        budget: Duration::from_secs(4),
        max_steps,
        seed,
        data: DataSource::Synthetic,
        backend: Backend::Cpu,
    }
}

/// Trains as the harness does (batches and clock from the read-only half), and returns the
/// outcome, the seconds the clock counted and the tokens the loader handed out.
fn train_on(
    data: &Dataset,
    hp: &Hyperparameters,
    settings: &RunSettings,
) -> (Result<TrainOutcome, Diverged>, f64, u64) {
    let mut batches = data.train_loader(settings.seed);
    let clock = TrainingClock::start(settings);
    let outcome = train(hp, settings, &mut batches, &clock);
    (outcome, clock.elapsed_seconds(), batches.tokens_drawn())
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[test]
fn a_tiny_model_learns_within_its_time_budget() {
    let data = Dataset::synthetic();
    let (outcome, seconds, tokens) = train_on(&data, &tiny(), &settings(None, 42));
    let TrainOutcome { trained, losses } = outcome.unwrap();
    assert!(losses.len() >= 20, "only {} steps in 4 s", losses.len());
    // The budget counts training only and stops after the step that crosses it.
    assert!((4.0..6.0).contains(&seconds), "{seconds} s");
    // Early losses are near ln(256) = 5.5 nats; the last ones must be clearly lower.
    let first = mean(&losses[..5]);
    let last = mean(&losses[losses.len() - 5..]);
    assert!(first > 4.5, "first losses {first}");
    assert!(last < first - 1.0, "loss went from {first} to {last}");
    assert_eq!(trained.num_steps, losses.len() as u64);
    assert_eq!(tokens, trained.num_steps * 4 * MAX_SEQ_LEN as u64);
}

/// The trained model's logits for a fixed input.
fn logits_of(model: &Gpt) -> Vec<f32> {
    let device = Device::flex();
    let tokens: Vec<i64> = (0..64).map(|i| (i * 31 % 256) as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, 64]), &device);
    model
        .valid()
        .forward(input)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

#[test]
fn a_fixed_number_of_steps_is_reproducible_and_the_seed_matters() {
    let data = Dataset::synthetic();
    let run = |seed| {
        train_on(&data, &tiny(), &settings(Some(8), seed))
            .0
            .unwrap()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a.losses.len(), 8);
    assert_eq!(a.losses, b.losses);
    assert_eq!(logits_of(&a.trained.model), logits_of(&b.trained.model));
    assert_ne!(a.losses, c.losses);
}

#[test]
fn a_diverging_run_is_reported() {
    let data = Dataset::synthetic();
    let absurd = Hyperparameters {
        embedding_lr: 1e30,
        matrix_lr: 1e30,
        unembedding_lr: 1e30,
        ..tiny()
    };
    let error = train_on(&data, &absurd, &settings(Some(50), 1))
        .0
        .err()
        .expect("learning rates of 1e30 must diverge");
    assert!(!error.loss.is_finite() || error.loss > 100.0);
}

#[test]
fn the_model_is_causal() {
    let device = Device::flex();
    // The output projections start at zero, which would hide attention entirely: perturb
    // every weight so that information can flow between positions.
    struct Perturb;
    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.clone() + t.random_like(Distribution::Normal(0.0, 0.2)))
        }
    }
    device.seed(3);
    let model = Gpt::new(&tiny(), 3, &device).map(&mut Perturb);
    let tokens: Vec<i64> = (0..32).map(|i| (i * 37 % 256) as i64).collect();
    let mut changed = tokens.clone();
    changed[20] = 0;
    let logits = |tokens: Vec<i64>| {
        let input = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, 32]), &device);
        model
            .forward(input)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    let (before, after) = (logits(tokens), logits(changed));
    let at = |position: usize| position * VOCAB_SIZE..(position + 1) * VOCAB_SIZE;
    // Positions before the change see the same logits; the changed position and later differ.
    let max_difference = |range: std::ops::Range<usize>| {
        before[range.clone()]
            .iter()
            .zip(&after[range])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(max_difference(at(0).start..at(19).end) < 1e-6);
    assert!(max_difference(at(20)) > 1e-4);
    assert!(max_difference(at(31)) > 1e-4);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nanochat-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small text file to train and evaluate on quickly (its last tenth is the validation split).
fn fox_text(dir: &Path) -> PathBuf {
    let path = dir.join("fox.txt");
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(3000);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a `nanochat` binary; panics with its output unless it succeeds.
fn run_ok(binary: &Path, args: &[&str]) -> String {
    let output = Command::new(binary).args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of the last line that matches `pattern`, as arun reads it (the last match wins).
fn metric(stdout: &str, pattern: &str) -> f64 {
    let regex = Regex::new(pattern).unwrap();
    let captures = stdout
        .lines()
        .rev()
        .find_map(|line| regex.captures(line))
        .unwrap_or_else(|| panic!("`{pattern}` not found in:\n{stdout}"));
    captures[1].parse().unwrap()
}

/// The summary block: the lines from the last `---` on.
fn summary_block(stdout: &str) -> Vec<&str> {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| *l == "---")
        .unwrap_or_else(|| panic!("no `---` in:\n{stdout}"));
    lines[start..].to_vec()
}

/// The regexes of `pipelines/nanochat.toml`'s `[metric]` and `[metric.extra]`.
const VAL_BPB: &str = r"^val_bpb:\s*([0-9.]+)";
const PEAK_VRAM_MB: &str = r"^peak_vram_mb:\s*([0-9.]+)";
const TRAINING_SECONDS: &str = r"^training_seconds:\s*([0-9.]+)";
const NUM_STEPS: &str = r"^num_steps:\s*([0-9]+)";
const NUM_PARAMS_M: &str = r"^num_params_M:\s*([0-9.]+)";
const ENTROPY_FLOOR_BPB: &str = r"^entropy_floor_bpb:\s*([0-9.]+)";

#[test]
fn the_binary_prints_the_summary_block_arun_reads() {
    let dir = temp_dir("binary");
    let data = format!("path:{}", fox_text(&dir).display());
    let binary = Path::new(env!("CARGO_BIN_EXE_nanochat"));
    let run = |seed: &str| run_ok(binary, &["--steps", "3", "--seed", seed, "--data", &data]);
    let stdout = run("5");
    let val_bpb = metric(&stdout, VAL_BPB);
    assert!(val_bpb > 0.0 && val_bpb < 9.0);
    assert!(metric(&stdout, PEAK_VRAM_MB) > 1.0);
    assert!(metric(&stdout, TRAINING_SECONDS) > 0.0);
    assert_eq!(metric(&stdout, NUM_STEPS), 3.0);
    assert_eq!(metric(&stdout, NUM_PARAMS_M), 0.9);
    assert_eq!(
        metric(&stdout, r"^depth:\s*([0-9]+)"),
        Hyperparameters::DEFAULT.depth as f64
    );
    // A file has no known entropy floor, so that line is absent; the block starts with `---`.
    assert!(!stdout.contains("entropy_floor_bpb"));
    assert_eq!(summary_block(&stdout).len(), 10, "{stdout}");
    // A fixed number of steps reproduces the metric; another seed changes it.
    assert_eq!(metric(&run("5"), VAL_BPB), val_bpb);
    assert_ne!(metric(&run("6"), VAL_BPB), val_bpb);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_learns_within_its_budget_and_stays_above_the_entropy_floor() {
    let binary = Path::new(env!("CARGO_BIN_EXE_nanochat"));
    let stdout = run_ok(binary, &["--budget", "3", "--seed", "1"]);
    let floor = metric(&stdout, ENTROPY_FLOOR_BPB);
    let val_bpb = metric(&stdout, VAL_BPB);
    // Better than a uniform guess (8 bits per byte), and no better than the floor.
    assert!(
        val_bpb > floor && val_bpb < 7.0,
        "val_bpb {val_bpb}, floor {floor}"
    );
    let seconds = metric(&stdout, TRAINING_SECONDS);
    assert!(seconds >= 3.0, "training_seconds {seconds}");
    assert!(metric(&stdout, NUM_STEPS) >= 1.0);
}

#[test]
fn bad_arguments_exit_with_status_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(["--data", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown data source `nowhere`"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// The editable file cannot reach validation data or the measurement
// ---------------------------------------------------------------------------------------------

/// Words that name the validation split, the evaluation or the summary block: `train.rs` must
/// use none of them.
const FORBIDDEN_WORDS: &str = r"(?i)\b(val|val_\w+|\w*validation\w*|\w*evaluat\w*|eval_\w+|dataset|summary|entropy_floor\w*|peak_vram\w*|mfu_percent|total_tokens\w*|num_params_m|training_seconds|total_seconds|describe_data|run)\b";
/// A string literal that starts a summary line (`---` or `key:`): printing the metric.
const SUMMARY_LITERAL: &str = r#""(---|(val_bpb|training_seconds|total_seconds|peak_vram_mb|mfu_percent|total_tokens_M|num_steps|num_params_M|depth|entropy_floor_bpb)\s*:)"#;

/// The places in Rust `source` (comments dropped) that name the validation data or evaluation,
/// or print a line of the summary block, as `line: text`.
fn reaches_for_the_measurement(source: &str) -> Vec<String> {
    let words = Regex::new(FORBIDDEN_WORDS).unwrap();
    let literal = Regex::new(SUMMARY_LITERAL).unwrap();
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap();
        for hit in words.find_iter(code).chain(literal.find_iter(code)) {
            found.push(format!("{}: {}", number + 1, hit.as_str()));
        }
    }
    found
}

#[test]
fn train_rs_names_no_validation_or_evaluation_item() {
    // The check catches what train.rs did before the harness took over the measurement.
    let old = r#"
        let val_bpb = evaluate_bpb(&model.valid(), &data.val, &device);
        let data = Dataset::load(&settings.data);
        print!("{}", outcome.summary);
        println!("val_bpb:          {:.6}", bpb);
        println!("---");
    "#;
    for line in old.lines().filter(|l| !l.trim().is_empty()) {
        assert!(!reaches_for_the_measurement(line).is_empty(), "{line}");
    }
    // Burn's `valid` (autodiff off) and the counters train.rs reports are fine.
    assert!(reaches_for_the_measurement("let r = model.valid(); num_steps: step,").is_empty());

    let train_rs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/train.rs")).unwrap();
    assert_eq!(reaches_for_the_measurement(&train_rs), Vec::<String>::new());
}

/// Copies this crate's manifest and sources into `dir` with `train_rs` as `src/train.rs`,
/// writing only what changed (so that cargo rebuilds only what it must), and builds it with
/// cargo in this build's target directory, where Burn is already built. The copy's binary is
/// named `nanochat-stand-in`, so that it never replaces this crate's `nanochat`.
fn build_with_train_rs(dir: &Path, train_rs: &str) -> (Output, PathBuf) {
    fn write_if_changed(path: &Path, contents: &[u8]) {
        if std::fs::read(path).ok().as_deref() != Some(contents) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
    }
    fn copy_tree(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                write_if_changed(&target, &std::fs::read(&path).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&root.join("src"), &dir.join("src"));
    write_if_changed(&dir.join("src/train.rs"), train_rs.as_bytes());
    write_if_changed(
        &dir.join("Cargo.lock"),
        &std::fs::read(root.join("Cargo.lock")).unwrap(),
    );
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap()
        + "\n[[bin]]\nname = \"nanochat-stand-in\"\npath = \"src/main.rs\"\n";
    write_if_changed(&dir.join("Cargo.toml"), manifest.as_bytes());

    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let release = !cfg!(debug_assertions);
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    cargo
        .current_dir(dir)
        .args(["build", "--locked", "--bin", "nanochat-stand-in"])
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        cargo.arg("--release");
    }
    let output = cargo.output().unwrap();
    let profile = if release { "release" } else { "debug" };
    let binary = target_dir.join(profile).join("nanochat-stand-in");
    (output, binary)
}

const STAND_IN: &str = include_str!("fixtures/stand_in_train.rs");

#[test]
fn a_stand_in_train_rs_gets_the_read_only_summary_and_cannot_reach_validation_data() {
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nanochat-stand-in");

    // A train.rs that reaches for the validation split, the evaluation or the synthetic
    // grammar (which could regenerate the split) does not compile.
    let reaching = format!(
        "{STAND_IN}
pub fn validation_bytes(data: &crate::prepare::Dataset) -> usize {{
    data.val.len()
}}
pub use crate::prepare::evaluate::run as evaluate;
pub use crate::prepare::synthetic::Grammar;
"
    );
    let (output, _) = build_with_train_rs(&copy, &reaching);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for error in [
        "module `evaluate` is private",
        "module `synthetic` is private",
        "field `val` of struct `Dataset` is private",
    ] {
        assert!(stderr.contains(error), "`{error}` not in:\n{stderr}");
    }

    // The stand-in builds; its run ends with the harness's summary block, measured by the
    // read-only half: the uniform model's true 8 bits per byte, not the stand-in's own line.
    let (output, binary) = build_with_train_rs(&copy, STAND_IN);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = temp_dir("stand-in");
    let data = format!("path:{}", fox_text(&dir).display());
    let stdout = run_ok(&binary, &["--budget", "1", "--data", &data]);
    assert!(
        stdout.contains("\nval_bpb:          0.000001\n"),
        "{stdout}"
    );
    let block = summary_block(&stdout);
    assert_eq!(block.len(), 10, "{stdout}");
    let val_bpb = metric(&block.join("\n"), VAL_BPB);
    assert!((val_bpb - 8.0).abs() < 1e-4, "{stdout}");
    assert_eq!(metric(&stdout, VAL_BPB), val_bpb);
    let steps = metric(&stdout, r"^stand-in: ([0-9]+) steps");
    assert_eq!(metric(&stdout, NUM_STEPS), steps);
    assert!(metric(&stdout, TRAINING_SECONDS) >= 1.0, "{stdout}");
    assert_eq!(metric(&stdout, NUM_PARAMS_M), 0.0);
    assert!(metric(&stdout, PEAK_VRAM_MB) > 1.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
