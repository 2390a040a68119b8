//! The read-only half of the trainer: run settings, data, tokenizer, training batches, the
//! interface `train.rs` implements, and (in the child module `evaluate`) the run itself, the
//! `val_bpb` metric and the summary block. Experiments edit `train.rs` only; everything here stays
//! fixed so that every experiment is measured the same way.
//!
//! `train.rs` never sees validation data. The validation split is a private field of `Dataset`,
//! so only this module and its children can read it; the data sources and the synthetic grammar
//! are private too. The training code gets a `TrainLoader`, which yields training batches and
//! nothing else, and a `TrainingClock`; it returns a `Trained` model, which `evaluate::run`
//! scores through the `LanguageModel` trait and reports.
//!
//! Tokens are bytes (vocabulary of 256), so bits per token are bits per byte and `val_bpb` is
//! comparable across models and data sources.

mod evaluate;
mod source;
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the parser that checks the grammar's exact probabilities runs in tests only"
    )
)]
mod synthetic;

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use evaluate::MemoryMeter;
use source::{cache_dir, download_cached};

pub use evaluate::run;
pub use source::{DataError, DataSource};

/// Context length: training sequences and evaluation windows are this many tokens long.
pub const MAX_SEQ_LEN: usize = 256;
/// Vocabulary size: one token per byte value.
pub const VOCAB_SIZE: usize = 256;
/// Size of the validation split, in tokens (bytes). Every one of them is scored.
const EVAL_TOKENS: usize = 131_072;
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

/// The data of a run: the training text and the fixed validation split. Outside this module
/// (and so in `train.rs`) it gives out training batches only.
pub struct Dataset {
    /// Where it came from, for the log.
    description: String,
    train: TrainText,
    /// The validation bytes. The first byte is context only; every later byte is scored.
    val: Vec<u8>,
    /// The lowest `val_bpb` any model can reach, when the data's distribution is known.
    entropy_floor_bpb: Option<f64>,
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
    fn val_tokens(&self) -> usize {
        self.val.len() - 1
    }

    /// A stream of training batches, seeded.
    pub fn train_loader(&self, seed: u64) -> TrainLoader<'_> {
        TrainLoader {
            text: &self.train,
            rng: Rng::new(seed ^ 0x0010_ade7),
            buffer: Vec::new(),
            offset: 0,
            tokens_drawn: 0,
            memory: MemoryMeter::default(),
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
/// as windows at uniformly random offsets. It is all the data `train.rs` gets.
///
/// It is also the harness's eye on training: it counts the tokens it hands out (the summary's
/// `total_tokens_M`) and samples the device's memory at every batch (`peak_vram_mb` on a GPU).
pub struct TrainLoader<'d> {
    text: &'d TrainText,
    rng: Rng,
    /// Synthetic text generated but not yet used.
    buffer: Vec<u8>,
    offset: usize,
    tokens_drawn: u64,
    memory: MemoryMeter,
}

impl TrainLoader<'_> {
    /// The next `batch_size` windows of `seq_len + 1` training bytes, on `device`.
    pub fn next_batch(&mut self, batch_size: usize, seq_len: usize, device: &Device) -> Batch {
        assert!((1..=MAX_SEQ_LEN).contains(&seq_len));
        // Sampled before the batch is made, so this sees what the previous step left allocated.
        self.memory.sample(&device.clone().without_autodiff());
        self.tokens_drawn += (batch_size * seq_len) as u64;
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

    /// Input tokens handed out so far (targets not counted twice).
    pub fn tokens_drawn(&self) -> u64 {
        self.tokens_drawn
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

/// What the read-only half needs from `train.rs`'s model: next-token logits for a batch of
/// token ids. Evaluation calls `Module::valid` first, so the model may come back on the autodiff
/// device it trained on.
pub trait LanguageModel: Module + Sync {
    /// `tokens` is `[batch, seq]`; returns unnormalised logits `[batch, seq, VOCAB_SIZE]`.
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3>;
}

/// What `train.rs` hands back: the trained model and the counts of the summary block that only
/// the training code knows. Time, tokens, parameters, memory and `val_bpb` are measured here.
pub struct Trained<M> {
    pub model: M,
    /// Optimizer steps taken (`num_steps`).
    pub num_steps: u64,
    /// Number of transformer blocks (`depth`).
    pub depth: usize,
    /// Training FLOPs per token, forward and backward (for `mfu_percent`; 0 when unknown).
    pub flops_per_token: f64,
}

/// A run that diverged: its loss became NaN or exploded. The run prints `FAIL` and exits 1.
#[derive(Debug)]
pub struct Diverged {
    pub step: u64,
    pub loss: f32,
}

/// The training budget and the clock that spends it. The harness starts it when it hands over
/// to `train.rs` and reads it when that returns: the time in between is `training_seconds`
/// (start-up and evaluation are not counted). The training code asks it how far it has got, to
/// schedule its learning rate and to stop.
#[derive(Clone, Debug)]
pub struct TrainingClock {
    started: Instant,
    budget: Duration,
    max_steps: Option<u64>,
}

impl TrainingClock {
    /// Starts the clock on `settings`' budget (or fixed number of steps).
    pub fn start(settings: &RunSettings) -> TrainingClock {
        TrainingClock {
            started: Instant::now(),
            budget: settings.budget,
            max_steps: settings.max_steps,
        }
    }

    /// Seconds since the clock started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The training budget in seconds (`ARUN_BUDGET_SECONDS`, `--budget`).
    pub fn budget_seconds(&self) -> f64 {
        self.budget.as_secs_f64()
    }

    /// How far training has got after `steps` steps, 0 at the start and 1 when the budget is
    /// spent: elapsed time over the budget, or steps over `--steps` when a fixed number of steps
    /// is asked for (then the run is reproducible).
    pub fn progress(&self, steps: u64) -> f64 {
        match self.max_steps {
            Some(max_steps) => steps as f64 / max_steps as f64,
            None => self.elapsed_seconds() / self.budget_seconds(),
        }
    }

    /// Whether the budget is spent after `steps` steps: training should stop.
    pub fn is_spent(&self, steps: u64) -> bool {
        self.progress(steps) >= 1.0
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

    #[test]
    fn a_local_text_file_is_split_into_train_and_validation() {
        let dir = std::env::temp_dir().join(format!("nanochat-unit-{}-corpus", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "It was the best of times, it was the worst of times.\n".repeat(2000);
        std::fs::write(dir.join("book.txt"), &text).unwrap();
        let data = Dataset::load(&DataSource::Path(dir.join("book.txt"))).unwrap();
        assert_eq!(data.entropy_floor_bpb, None);
        assert_eq!(data.val.len(), text.len() / 10);
        assert!(text.ends_with(std::str::from_utf8(&data.val).unwrap()));
        let TrainText::Corpus(train) = &data.train else {
            panic!("a file is a corpus");
        };
        assert_eq!(train.len() + data.val.len(), text.len());
        let too_small = dir.join("small.txt");
        std::fs::write(&too_small, "tiny").unwrap();
        let error = Dataset::load(&DataSource::Path(too_small)).err().unwrap();
        assert!(error.to_string().contains("at least"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_loader_counts_the_tokens_it_hands_out() {
        let data = Dataset::synthetic();
        let mut loader = data.train_loader(1);
        let device = Device::flex();
        loader.next_batch(3, 16, &device);
        loader.next_batch(2, 8, &device);
        assert_eq!(loader.tokens_drawn(), 3 * 16 + 2 * 8);
    }

    #[test]
    fn a_fixed_number_of_steps_is_spent_by_steps_not_time() {
        let Command::Train(settings) = Command::parse(args(&["--steps", "4"])).unwrap() else {
            panic!("expected a training command");
        };
        let clock = TrainingClock::start(&settings);
        assert_eq!(clock.progress(1), 0.25);
        assert!(!clock.is_spent(3));
        assert!(clock.is_spent(4));
        let timed = RunSettings {
            budget: Duration::from_millis(500),
            max_steps: None,
            ..settings
        };
        let clock = TrainingClock::start(&timed);
        assert!(!clock.is_spent(1_000_000));
        std::thread::sleep(Duration::from_millis(600));
        assert!(clock.is_spent(0));
        assert!(clock.elapsed_seconds() >= 0.5);
    }
}
