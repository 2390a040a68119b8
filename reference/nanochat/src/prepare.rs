//! The read-only half of the trainer: run settings, data, tokenizer, batches, the `val_bpb`
//! metric and the summary block. Experiments edit `train.rs` only; everything here stays fixed so
//! that every experiment is measured the same way.
//!
//! Tokens are bytes (vocabulary of 256), so bits per token are bits per byte and `val_bpb` is
//! comparable across models and data sources.

mod source;
pub mod synthetic;

use std::fmt;
use std::time::Duration;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

pub use source::{DataError, DataSource, cache_dir, download_cached};

/// Context length: training sequences and evaluation windows are this many tokens long.
pub const MAX_SEQ_LEN: usize = 256;
/// Vocabulary size: one token per byte value.
pub const VOCAB_SIZE: usize = 256;
/// Size of the validation split, in tokens (bytes). Every one of them is scored.
pub const EVAL_TOKENS: usize = 131_072;
/// Sequences per evaluation forward pass.
const EVAL_BATCH_SIZE: usize = 16;
/// Seed of the synthetic validation documents: fixed, so the metric never moves with the seed.
const VALIDATION_SEED: u64 = 0xda7a_0001;
/// Training budget when `ARUN_BUDGET_SECONDS` is not set.
const DEFAULT_BUDGET_SECONDS: f64 = 300.0;
/// Seed when `ARUN_SEED` is not set.
const DEFAULT_SEED: u64 = 42;

/// A small, fast, seedable random number generator (SplitMix64). Written out rather than taken
/// from a crate so that the data a seed produces never changes with a dependency update.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Which hardware runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn-flex on the CPU (always built).
    Cpu,
    /// burn-wgpu on a GPU through Vulkan, Metal or DX12 (built with `--features wgpu`).
    Wgpu,
}

/// Everything a run takes from its environment and command line.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Training time (only training steps count, not start-up or evaluation).
    pub budget: Duration,
    /// Train exactly this many steps instead, with the schedule following steps rather than
    /// time: a reproducible run, for tests and debugging.
    pub max_steps: Option<u64>,
    /// Seeds the weights, the batch order and the synthetic training documents.
    pub seed: u64,
    pub data: DataSource,
    pub backend: Backend,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Train(RunSettings),
    /// Load (download, generate) the data, describe it, and stop.
    Prepare(RunSettings),
    Help,
}

pub const USAGE: &str = "\
nanochat: a small GPT trainer, the reference target of arun

usage: nanochat [prepare] [--data SPEC] [--budget SECONDS] [--steps N] [--seed N] [--device D]

  prepare            load the data (download it if needed), print its size and entropy floor, stop
  --data SPEC        synthetic (default) | path:FILE_OR_DIR | url:https://...   [NANOCHAT_DATA]
  --budget SECONDS   training time, excluding start-up and evaluation (300) [ARUN_BUDGET_SECONDS]
  --steps N          train exactly N steps instead of for a time: reproducible   [NANOCHAT_STEPS]
  --seed N           seed for weights, batches and synthetic training data (42)    [ARUN_SEED]
  --device D         cpu, or wgpu when built with --features wgpu (wgpu if built) [NANOCHAT_DEVICE]

Flags override the environment variables named in brackets. Downloads are cached under
NANOCHAT_DATA_DIR (default ~/.cache/arun-nanochat).
";

impl Command {
    /// Reads the command line (without the program name) over the environment.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut budget = env("ARUN_BUDGET_SECONDS");
        let mut seed = env("ARUN_SEED");
        let mut steps = env("NANOCHAT_STEPS");
        let mut data = env("NANOCHAT_DATA");
        let mut device = env("NANOCHAT_DEVICE");
        let mut prepare_only = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or(format!("`{flag}` needs a value"));
            match arg.as_str() {
                "prepare" => prepare_only = true,
                "--budget" => budget = Some(value("--budget")?),
                "--seed" => seed = Some(value("--seed")?),
                "--steps" => steps = Some(value("--steps")?),
                "--data" => data = Some(value("--data")?),
                "--device" => device = Some(value("--device")?),
                "-h" | "--help" => return Ok(Command::Help),
                other => return Err(format!("unknown argument `{other}`; see `nanochat --help`")),
            }
        }
        let budget = match budget {
            None => DEFAULT_BUDGET_SECONDS,
            Some(text) => match text.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() && seconds > 0.0 => seconds,
                _ => {
                    return Err(format!(
                        "budget `{text}` is not a positive number of seconds"
                    ));
                }
            },
        };
        let seed = match seed {
            None => DEFAULT_SEED,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| format!("seed `{text}` is not a non-negative integer"))?,
        };
        let max_steps = match steps {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("steps `{text}` is not a positive integer")),
            },
        };
        let data = match data {
            None => DataSource::Synthetic,
            Some(spec) => DataSource::parse(&spec)?,
        };
        let backend = match device.as_deref() {
            None if cfg!(feature = "wgpu") => Backend::Wgpu,
            None | Some("cpu") => Backend::Cpu,
            Some("wgpu") if cfg!(feature = "wgpu") => Backend::Wgpu,
            Some("wgpu") => {
                return Err("device `wgpu` needs a build with `--features wgpu`".to_string());
            }
            Some(other) => return Err(format!("unknown device `{other}`; use `cpu` or `wgpu`")),
        };
        let settings = RunSettings {
            budget: Duration::from_secs_f64(budget),
            max_steps,
            seed,
            data,
            backend,
        };
        Ok(if prepare_only {
            Command::Prepare(settings)
        } else {
            Command::Train(settings)
        })
    }
}

impl RunSettings {
    /// The device to train on. Autodiff is added by the trainer.
    pub fn device(&self) -> Device {
        match self.backend {
            Backend::Cpu => Device::flex(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => unreachable!("Command::parse refuses wgpu without the feature"),
        }
    }
}

/// Where training batches come from.
enum TrainText {
    /// An endless stream of fresh synthetic documents.
    Synthetic(Box<synthetic::Grammar>),
    /// A fixed corpus, read at random offsets.
    Corpus(Vec<u8>),
}

/// The data of a run: the training text and the fixed validation split.
pub struct Dataset {
    /// Where it came from, for the log.
    pub description: String,
    train: TrainText,
    /// The validation bytes. The first byte is context only; every later byte is scored.
    pub val: Vec<u8>,
    /// The lowest `val_bpb` any model can reach, when the data's distribution is known.
    pub entropy_floor_bpb: Option<f64>,
}

impl Dataset {
    /// Loads (generates, reads, or downloads) the data a source names.
    pub fn load(source: &DataSource) -> Result<Dataset, DataError> {
        match source {
            DataSource::Synthetic => Ok(Dataset::synthetic()),
            DataSource::Path(path) => {
                let bytes = source::read_path(path)?;
                Dataset::from_corpus(format!("files under {}", path.display()), bytes)
            }
            DataSource::Url(url) => {
                let path = download_cached(url, &cache_dir(), 4, Duration::from_secs(1))?;
                let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
                Dataset::from_corpus(format!("{url} (cached at {})", path.display()), bytes)
            }
        }
    }

    /// Synthetic stories. The validation split is the first documents drawn from a fixed seed,
    /// whole documents only, so its entropy is the sum of their exact information contents.
    pub fn synthetic() -> Dataset {
        let grammar = synthetic::Grammar::standard();
        let mut rng = Rng::new(VALIDATION_SEED);
        // The stream starts as if a document had just ended; that `\n` is context, not scored.
        let mut val = b"\n".to_vec();
        let mut bits = 0.0;
        while val.len() < EVAL_TOKENS + 1 {
            let doc = grammar.sample_document(&mut rng);
            val.extend_from_slice(doc.text.as_bytes());
            bits += doc.bits;
        }
        let scored = (val.len() - 1) as f64;
        Dataset {
            description: "synthetic stories (a stochastic grammar with an exact entropy)"
                .to_string(),
            train: TrainText::Synthetic(Box::new(grammar)),
            val,
            entropy_floor_bpb: Some(bits / scored),
        }
    }

    /// A fixed corpus: the last tenth (at most `EVAL_TOKENS` bytes) is the validation split.
    pub fn from_corpus(description: String, mut bytes: Vec<u8>) -> Result<Dataset, DataError> {
        let minimum = 20 * (MAX_SEQ_LEN + 1);
        if bytes.len() < minimum {
            return Err(DataError::TooSmall {
                bytes: bytes.len(),
                minimum,
            });
        }
        let val_len = (bytes.len() / 10).min(EVAL_TOKENS + 1);
        let val = bytes.split_off(bytes.len() - val_len);
        Ok(Dataset {
            description,
            train: TrainText::Corpus(bytes),
            val,
            entropy_floor_bpb: None,
        })
    }

    /// Number of bytes `evaluate_bpb` scores.
    pub fn val_tokens(&self) -> usize {
        self.val.len() - 1
    }

    /// A stream of training batches, seeded.
    pub fn train_loader(&self, seed: u64) -> TrainLoader<'_> {
        TrainLoader {
            text: &self.train,
            rng: Rng::new(seed ^ 0x0010_ade7),
            buffer: Vec::new(),
            offset: 0,
        }
    }
}

/// One training batch: `targets` is `inputs` shifted left by one token.
pub struct Batch {
    /// Token ids, `[batch_size, seq_len]`.
    pub inputs: Tensor<2, Int>,
    /// The next token at every position, `[batch_size, seq_len]`.
    pub targets: Tensor<2, Int>,
}

/// Draws training batches: synthetic data as a stream of never-repeating documents, a corpus
/// as windows at uniformly random offsets.
pub struct TrainLoader<'d> {
    text: &'d TrainText,
    rng: Rng,
    /// Synthetic text generated but not yet used.
    buffer: Vec<u8>,
    offset: usize,
}

impl TrainLoader<'_> {
    pub fn next_batch(&mut self, batch_size: usize, seq_len: usize, device: &Device) -> Batch {
        assert!((1..=MAX_SEQ_LEN).contains(&seq_len));
        let mut inputs = Vec::with_capacity(batch_size * seq_len);
        let mut targets = Vec::with_capacity(batch_size * seq_len);
        for _ in 0..batch_size {
            let window = self.next_window(seq_len + 1);
            inputs.extend(window[..seq_len].iter().map(|&b| i32::from(b)));
            targets.extend(window[1..].iter().map(|&b| i32::from(b)));
        }
        let shape = [batch_size, seq_len];
        Batch {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
        }
    }

    fn next_window(&mut self, len: usize) -> Vec<u8> {
        match self.text {
            TrainText::Corpus(bytes) => {
                let start = self.rng.below(bytes.len() - len + 1);
                bytes[start..start + len].to_vec()
            }
            TrainText::Synthetic(grammar) => {
                while self.buffer.len() - self.offset < len {
                    self.buffer.drain(..self.offset);
                    self.offset = 0;
                    if self.buffer.is_empty() {
                        self.buffer.push(b'\n');
                    }
                    let doc = grammar.sample_document(&mut self.rng);
                    self.buffer.extend_from_slice(doc.text.as_bytes());
                }
                // Consecutive windows overlap by one byte, so every byte is a target once.
                let window = self.buffer[self.offset..self.offset + len].to_vec();
                self.offset += len - 1;
                window
            }
        }
    }
}

/// What `evaluate_bpb` needs from a model: next-token logits for a batch of token ids.
pub trait LanguageModel {
    /// `tokens` is `[batch, seq]`; returns unnormalised logits `[batch, seq, VOCAB_SIZE]`.
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3>;
}

/// The metric: bits per byte of the validation split, `-log2 q(byte | previous bytes)` averaged
/// over every byte after the first. Each byte sees up to `MAX_SEQ_LEN` bytes of context
/// (non-overlapping windows). The logits are normalised here, so a model cannot report a
/// better number than its predictions earn.
pub fn evaluate_bpb(model: &(impl LanguageModel + Sync), val: &[u8], device: &Device) -> f64 {
    let device = device.clone().without_autodiff();
    let scored = val.len() - 1;
    // Window starts; the last window may be shorter than MAX_SEQ_LEN.
    let starts: Vec<usize> = (0..scored).step_by(MAX_SEQ_LEN).collect();
    let full: Vec<usize> = starts
        .iter()
        .copied()
        .filter(|s| s + MAX_SEQ_LEN <= scored)
        .collect();
    // Batches are independent: evaluate them on all cores, then add up in order, so the result
    // does not depend on scheduling.
    let batch_nats: Vec<f64> = full
        .par_chunks(EVAL_BATCH_SIZE)
        .map(|chunk| window_nats(model, val, chunk, MAX_SEQ_LEN, &device))
        .collect();
    let mut total_nats: f64 = batch_nats.iter().sum();
    if let Some(&last) = starts.last()
        && last + MAX_SEQ_LEN > scored
    {
        total_nats += window_nats(model, val, &[last], scored - last, &device);
    }
    total_nats / std::f64::consts::LN_2 / scored as f64
}

/// Summed negative log-likelihood (nats) of the targets of windows `val[s..s+len+1]`.
fn window_nats(
    model: &impl LanguageModel,
    val: &[u8],
    starts: &[usize],
    len: usize,
    device: &Device,
) -> f64 {
    let mut inputs = Vec::with_capacity(starts.len() * len);
    let mut targets = Vec::with_capacity(starts.len() * len);
    for &start in starts {
        inputs.extend(val[start..start + len].iter().map(|&b| i32::from(b)));
        targets.extend(
            val[start + 1..start + len + 1]
                .iter()
                .map(|&b| i32::from(b)),
        );
    }
    let shape = [starts.len(), len];
    let inputs = Tensor::<2, Int>::from_data(TensorData::new(inputs, shape), device);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, shape), device);
    let log_probs = log_softmax(model.logits(inputs), 2);
    let picked = log_probs.gather(2, targets.unsqueeze_dim::<3>(2));
    -f64::from(picked.sum().into_scalar::<f32>())
}

/// Tracks peak memory: process peak RSS on the CPU, the device allocator's high-water mark
/// (sampled by `sample`) on a GPU.
#[derive(Default)]
pub struct MemoryMeter {
    device_peak_bytes: u64,
}

impl MemoryMeter {
    /// Samples the device's allocator; call after steps. A no-op on the CPU.
    pub fn sample(&mut self, device: &Device) {
        if let Some(usage) = device.memory_pool_usage() {
            self.device_peak_bytes = self.device_peak_bytes.max(usage.bytes_reserved);
        }
    }

    /// The peak in MiB: the GPU allocator's peak when there is one, else the process peak RSS.
    pub fn peak_mb(&self) -> f64 {
        if self.device_peak_bytes > 0 {
            self.device_peak_bytes as f64 / (1024.0 * 1024.0)
        } else {
            process_peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
        }
    }
}

/// The process's peak resident set size (`VmHWM` in /proc/self/status), on Linux.
pub fn process_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Nominal peak f32 FLOP/s of this CPU: cores x clock x 32 (two 8-wide FMA units), the figure
/// `mfu_percent` is relative to on the CPU. None where the clock is unknown.
pub fn cpu_peak_flops() -> Option<f64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    Some(cores * mhz * 1e6 * 32.0)
}

/// The block printed at the end of a run, in autoresearch's format (`key: value` per line).
#[derive(Clone, Debug)]
pub struct Summary {
    pub val_bpb: f64,
    pub training_seconds: f64,
    pub total_seconds: f64,
    /// Peak memory in MiB: process peak RSS on the CPU, allocator peak on a GPU.
    pub peak_vram_mb: f64,
    pub mfu_percent: f64,
    pub total_tokens: u64,
    pub num_steps: u64,
    pub num_params: usize,
    pub depth: usize,
    pub entropy_floor_bpb: Option<f64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "---")?;
        writeln!(f, "val_bpb:          {:.6}", self.val_bpb)?;
        writeln!(f, "training_seconds: {:.1}", self.training_seconds)?;
        writeln!(f, "total_seconds:    {:.1}", self.total_seconds)?;
        writeln!(f, "peak_vram_mb:     {:.1}", self.peak_vram_mb)?;
        writeln!(f, "mfu_percent:      {:.2}", self.mfu_percent)?;
        writeln!(f, "total_tokens_M:   {:.1}", self.total_tokens as f64 / 1e6)?;
        writeln!(f, "num_steps:        {}", self.num_steps)?;
        writeln!(f, "num_params_M:     {:.1}", self.num_params as f64 / 1e6)?;
        writeln!(f, "depth:            {}", self.depth)?;
        if let Some(floor) = self.entropy_floor_bpb {
            writeln!(f, "entropy_floor_bpb: {floor:.6}")?;
        }
        Ok(())
    }
}

/// `nanochat prepare`: loads the data and describes it.
pub fn describe_data(settings: &RunSettings) -> Result<(), DataError> {
    let data = Dataset::load(&settings.data)?;
    println!("data:              {}", data.description);
    match &data.train {
        TrainText::Synthetic(_) => println!("train_tokens:      unlimited (fresh documents)"),
        TrainText::Corpus(bytes) => println!("train_tokens:      {}", bytes.len()),
    }
    println!("val_tokens:        {}", data.val_tokens());
    if let Some(floor) = data.entropy_floor_bpb {
        println!("entropy_floor_bpb: {floor:.6}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line_flags_are_parsed() {
        let Command::Train(settings) = Command::parse(args(&[
            "--budget", "2.5", "--seed", "7", "--data", "path:/x",
        ]))
        .unwrap() else {
            panic!("expected a training command");
        };
        assert_eq!(settings.budget, Duration::from_millis(2500));
        assert_eq!(settings.seed, 7);
        assert_eq!(settings.data, DataSource::Path(PathBuf::from("/x")));
        assert!(matches!(
            Command::parse(args(&["prepare"])).unwrap(),
            Command::Prepare(_)
        ));
        assert!(Command::parse(args(&["--budget", "-1"])).is_err());
        assert!(Command::parse(args(&["--seed"])).is_err());
        assert!(Command::parse(args(&["--bogus"])).is_err());
    }

    #[test]
    fn synthetic_validation_split_is_fixed_and_has_a_floor() {
        let a = Dataset::synthetic();
        let b = Dataset::synthetic();
        assert_eq!(a.val, b.val);
        assert!(a.val_tokens() >= EVAL_TOKENS);
        let floor = a.entropy_floor_bpb.unwrap();
        assert!(floor > 0.2 && floor < 2.0, "floor {floor}");
    }

    #[test]
    fn synthetic_training_stream_depends_on_the_seed_only() {
        let data = Dataset::synthetic();
        let device = Device::flex();
        let batch = |seed| {
            let mut loader = data.train_loader(seed);
            loader.next_batch(2, 64, &device);
            let batch = loader.next_batch(2, 64, &device);
            batch.inputs.into_data().try_into_vec_as::<i64>().unwrap()
        };
        assert_eq!(batch(1), batch(1));
        assert_ne!(batch(1), batch(2));
    }

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let corpus: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let data = Dataset::from_corpus("test".into(), corpus).unwrap();
        let device = Device::flex();
        let batch = data.train_loader(3).next_batch(4, 32, &device);
        let inputs = batch.inputs.into_data().try_into_vec_as::<i64>().unwrap();
        let targets = batch.targets.into_data().try_into_vec_as::<i64>().unwrap();
        for row in 0..4 {
            for t in 0..31 {
                assert_eq!(inputs[row * 32 + t + 1], targets[row * 32 + t]);
            }
            assert_eq!((inputs[row * 32] + 1) % 251, targets[row * 32]);
        }
    }

    /// A model that predicts a uniform distribution scores exactly 8 bits per byte.
    struct Uniform;

    impl LanguageModel for Uniform {
        fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
            let [batch, seq] = tokens.dims();
            Tensor::zeros([batch, seq, VOCAB_SIZE], &tokens.device())
        }
    }

    #[test]
    fn a_uniform_model_scores_eight_bits_per_byte() {
        let device = Device::flex();
        // An odd length exercises the short last window.
        let val: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let bpb = evaluate_bpb(&Uniform, &val, &device);
        assert!((bpb - 8.0).abs() < 1e-4, "{bpb}");
    }

    #[test]
    fn summary_block_matches_autoresearch_regexes() {
        let summary = Summary {
            val_bpb: 1.5,
            training_seconds: 300.04,
            total_seconds: 310.0,
            peak_vram_mb: 123.45,
            mfu_percent: 1.0,
            total_tokens: 1_500_000,
            num_steps: 100,
            num_params: 800_000,
            depth: 4,
            entropy_floor_bpb: Some(0.9),
        };
        let text = summary.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "---");
        assert_eq!(lines[1], "val_bpb:          1.500000");
        assert!(lines.contains(&"peak_vram_mb:     123.5"));
        assert!(lines.contains(&"entropy_floor_bpb: 0.900000"));
    }
}
