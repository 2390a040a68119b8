//! The run and its measurement: `run` loads the data, hands training batches and the clock to
//! `train.rs`, then scores the model it gets back on the validation split (`evaluate_bpb`) and
//! prints the summary block arun reads. A child of `prepare`, so that it can read the validation
//! split that `train.rs` cannot; nothing here is reachable from `train.rs` except `run`.

use std::fmt;
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{
    Backend, Dataset, Diverged, LanguageModel, MAX_SEQ_LEN, RunSettings, TrainLoader, Trained,
    TrainingClock,
};

/// Sequences per evaluation forward pass.
const EVAL_BATCH_SIZE: usize = 16;

/// `nanochat` (training): loads the data, starts the clock, hands the training batches to
/// `train` (the binary passes `train::main`), then evaluates the model it returns and prints the
/// summary block, or `FAIL` when training diverged.
pub fn run<M, F>(settings: &RunSettings, train: F) -> ExitCode
where
    M: LanguageModel,
    F: FnOnce(&RunSettings, &mut TrainLoader<'_>, &TrainingClock) -> Result<Trained<M>, Diverged>,
{
    let started = Instant::now();
    let data = match Dataset::load(&settings.data) {
        Ok(data) => data,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("data: {}", data.description);
    if let Some(floor) = data.entropy_floor_bpb {
        println!("entropy floor of the validation split: {floor:.6} bits per byte");
    }
    let device = settings.device();
    let mut loader = data.train_loader(settings.seed);
    let clock = TrainingClock::start(settings);
    let outcome = train(settings, &mut loader, &clock);
    let training_seconds = clock.elapsed_seconds();
    let trained = match outcome {
        Ok(trained) => trained,
        Err(diverged) => {
            eprintln!(
                "training diverged at step {}: loss {}",
                diverged.step, diverged.loss
            );
            println!("FAIL");
            return ExitCode::FAILURE;
        }
    };
    loader.memory.sample(&device);

    let model = trained.model.valid();
    let val_bpb = evaluate_bpb(&model, &data.val, &device);
    let total_tokens = loader.tokens_drawn();
    let mfu_percent = match (settings.backend, cpu_peak_flops()) {
        (Backend::Cpu, Some(peak)) if training_seconds > 0.0 => {
            100.0 * trained.flops_per_token * total_tokens as f64 / training_seconds / peak
        }
        _ => 0.0,
    };
    let summary = Summary {
        val_bpb,
        training_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        peak_vram_mb: loader.memory.peak_mb(),
        mfu_percent,
        total_tokens,
        num_steps: trained.num_steps,
        num_params: model.num_params(),
        depth: trained.depth,
        entropy_floor_bpb: data.entropy_floor_bpb,
    };
    print!("{summary}");
    ExitCode::SUCCESS
}

/// The metric: bits per byte of the validation split, `-log2 q(byte | previous bytes)` averaged
/// over every byte after the first. Each byte sees up to `MAX_SEQ_LEN` bytes of context
/// (non-overlapping windows). The logits are normalised here, so a model cannot report a
/// better number than its predictions earn.
fn evaluate_bpb(model: &impl LanguageModel, val: &[u8], device: &Device) -> f64 {
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
pub(super) struct MemoryMeter {
    device_peak_bytes: u64,
}

impl MemoryMeter {
    /// Samples the device's allocator; a no-op on the CPU.
    pub(super) fn sample(&mut self, device: &Device) {
        if let Some(usage) = device.memory_pool_usage() {
            self.device_peak_bytes = self.device_peak_bytes.max(usage.bytes_reserved);
        }
    }

    /// The peak in MiB: the GPU allocator's peak when there is one, else the process peak RSS.
    fn peak_mb(&self) -> f64 {
        if self.device_peak_bytes > 0 {
            self.device_peak_bytes as f64 / (1024.0 * 1024.0)
        } else {
            process_peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
        }
    }
}

/// The process's peak resident set size (`VmHWM` in /proc/self/status), on Linux.
fn process_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Nominal peak f32 FLOP/s of this CPU: cores x clock x 32 (two 8-wide FMA units), the figure
/// `mfu_percent` is relative to on the CPU. None where the clock is unknown.
fn cpu_peak_flops() -> Option<f64> {
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
struct Summary {
    val_bpb: f64,
    training_seconds: f64,
    total_seconds: f64,
    /// Peak memory in MiB: process peak RSS on the CPU, allocator peak on a GPU.
    peak_vram_mb: f64,
    mfu_percent: f64,
    total_tokens: u64,
    num_steps: u64,
    num_params: usize,
    depth: usize,
    entropy_floor_bpb: Option<f64>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::VOCAB_SIZE;
    use burn::module::Module;

    /// A model that predicts a uniform distribution scores exactly 8 bits per byte.
    #[derive(Module, Debug)]
    struct Uniform {
        #[module(skip)]
        vocab_size: usize,
    }

    impl LanguageModel for Uniform {
        fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
            let [batch, seq] = tokens.dims();
            Tensor::zeros([batch, seq, self.vocab_size], &tokens.device())
        }
    }

    #[test]
    fn a_uniform_model_scores_eight_bits_per_byte() {
        let device = Device::flex();
        let uniform = Uniform {
            vocab_size: VOCAB_SIZE,
        };
        // An odd length exercises the short last window.
        let val: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let bpb = evaluate_bpb(&uniform, &val, &device);
        assert!((bpb - 8.0).abs() < 1e-4, "{bpb}");
    }

    /// Logits that put almost all mass on the byte after the current one: `val_bpb` near 0 on
    /// text that counts up, near 8 + on text that does not. Checks the targets line up.
    #[derive(Module, Debug)]
    struct CountsUp {
        #[module(skip)]
        vocab_size: usize,
    }

    impl LanguageModel for CountsUp {
        fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
            let next = tokens
                .add_scalar(1)
                .remainder_scalar(self.vocab_size as i64);
            next.one_hot::<3>(self.vocab_size).float().mul_scalar(30.0)
        }
    }

    #[test]
    fn each_byte_is_scored_given_the_bytes_before_it() {
        let device = Device::flex();
        let model = CountsUp {
            vocab_size: VOCAB_SIZE,
        };
        let counting: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        let bpb = evaluate_bpb(&model, &counting, &device);
        assert!(bpb < 1e-3, "{bpb}");
        let constant = vec![b'a'; 700];
        let bpb = evaluate_bpb(&model, &constant, &device);
        assert!(bpb > 8.0, "{bpb}");
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
