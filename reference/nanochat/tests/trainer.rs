//! End-to-end tests of the trainer: a tiny model learns, runs are reproducible, the model is
//! causal, and the binary prints the summary block arun reads.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use nanochat::prepare::{Backend, DataSource, Dataset, MAX_SEQ_LEN, RunSettings, VOCAB_SIZE};
use nanochat::train::{Gpt, Hyperparameters, train};
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

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[test]
fn a_tiny_model_learns_within_its_time_budget() {
    let data = Dataset::synthetic();
    let started = Instant::now();
    let outcome = train(&tiny(), &data, &settings(None, 42), started).unwrap();
    let summary = &outcome.summary;
    let losses = &outcome.losses;
    assert!(losses.len() >= 20, "only {} steps in 4 s", losses.len());
    // The budget counts training steps only and stops after the step that crosses it.
    assert!(summary.training_seconds >= 4.0 && summary.training_seconds < 6.0);
    assert!(summary.total_seconds >= summary.training_seconds);
    // Early losses are near ln(256) = 5.5 nats; the last ones must be clearly lower.
    let first = mean(&losses[..5]);
    let last = mean(&losses[losses.len() - 5..]);
    assert!(first > 4.5, "first losses {first}");
    assert!(last < first - 1.0, "loss went from {first} to {last}");
    // The metric is finite, better than a uniform guess (8 bits), and not below the floor.
    let floor = summary.entropy_floor_bpb.unwrap();
    assert!(summary.val_bpb.is_finite());
    assert!(summary.val_bpb < 7.0, "val_bpb {}", summary.val_bpb);
    assert!(
        summary.val_bpb > floor,
        "{} <= floor {floor}",
        summary.val_bpb
    );
    assert_eq!(summary.num_steps, losses.len() as u64);
    assert_eq!(
        summary.total_tokens,
        summary.num_steps * 4 * MAX_SEQ_LEN as u64
    );
}

#[test]
fn a_fixed_number_of_steps_is_reproducible_and_the_seed_matters() {
    let data = Dataset::synthetic();
    let run = |seed| train(&tiny(), &data, &settings(Some(8), seed), Instant::now()).unwrap();
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a.losses.len(), 8);
    assert_eq!(a.losses, b.losses);
    assert_eq!(a.summary.val_bpb, b.summary.val_bpb);
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
    let error = train(&absurd, &data, &settings(Some(50), 1), Instant::now())
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

#[test]
fn a_local_text_file_is_split_into_train_and_validation() {
    let dir = temp_dir("corpus");
    let text = "It was the best of times, it was the worst of times.\n".repeat(2000);
    std::fs::write(dir.join("book.txt"), &text).unwrap();
    let data = Dataset::load(&DataSource::Path(dir.join("book.txt"))).unwrap();
    assert_eq!(data.entropy_floor_bpb, None);
    assert_eq!(data.val.len(), text.len() / 10);
    assert!(text.ends_with(std::str::from_utf8(&data.val).unwrap()));
    let too_small = dir.join("small.txt");
    std::fs::write(&too_small, "tiny").unwrap();
    let error = Dataset::load(&DataSource::Path(too_small)).err().unwrap();
    assert!(error.to_string().contains("at least"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_prints_the_summary_block_arun_reads() {
    let dir = temp_dir("binary");
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(3000);
    std::fs::write(dir.join("fox.txt"), text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(["--steps", "3", "--seed", "5"])
        .arg("--data")
        .arg(format!("path:{}", dir.join("fox.txt").display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metric = |pattern: &str| -> f64 {
        let regex = Regex::new(pattern).unwrap();
        let captures = stdout
            .lines()
            .find_map(|line| regex.captures(line))
            .unwrap_or_else(|| panic!("`{pattern}` not found in:\n{stdout}"));
        captures[1].parse().unwrap()
    };
    let val_bpb = metric(r"^val_bpb:\s*([0-9.]+)");
    assert!(val_bpb > 0.0 && val_bpb < 9.0);
    assert!(metric(r"^peak_vram_mb:\s*([0-9.]+)") > 1.0);
    assert_eq!(metric(r"^num_steps:\s*([0-9]+)"), 3.0);
    assert_eq!(
        metric(r"^depth:\s*([0-9]+)"),
        Hyperparameters::DEFAULT.depth as f64
    );
    // A file has no known entropy floor, so that line is absent; the block starts with `---`.
    assert!(!stdout.contains("entropy_floor_bpb"));
    let block: Vec<&str> = stdout.lines().skip_while(|l| *l != "---").collect();
    assert_eq!(block.len(), 10, "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
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
