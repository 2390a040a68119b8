//! The editable half of the trainer: hyperparameters, model, optimizer, schedule and training
//! loop. This is the one file an experiment changes; `prepare.rs` and its children (data,
//! evaluation, the summary block) stay fixed.
//!
//! The read-only harness calls `main` below with training batches and a clock, and scores the
//! model it returns through `LanguageModel::logits`. Change anything in this file, but keep
//! `main`'s signature.
//!
//! The model is a small GPT in the spirit of nanochat: token embedding, RMSNorm before every
//! block, causal self-attention with rotary position embeddings and QK-norm, a ReLU² MLP, an
//! untied output head and tanh soft-capped logits. It trains with AdamW in three parameter
//! groups (embedding, matrices, head), with a learning rate that warms up and down over the
//! time budget.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Embedding, Linear};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use crate::prepare::{
    Backend, Batch, Diverged, LanguageModel, MAX_SEQ_LEN, Rng, RunSettings, TrainLoader, Trained,
    TrainingClock, VOCAB_SIZE,
};

// ---------------------------------------------------------------------------------------------
// Hyperparameters. A knob search and LLM agents edit these lines: keep one constant per line,
// in the form `const NAME: type = value; // comment`.
// ---------------------------------------------------------------------------------------------

// Model architecture
const DEPTH: usize = 4; // number of transformer blocks
const MODEL_DIM: usize = 128; // width of the residual stream
const HEAD_DIM: usize = 64; // width of one attention head; MODEL_DIM / HEAD_DIM heads
const MLP_RATIO: usize = 4; // MLP hidden width as a multiple of MODEL_DIM
const SOFTCAP: f64 = 15.0; // logits are squashed into (-SOFTCAP, SOFTCAP) by tanh
const ROPE_BASE: f64 = 10000.0; // base of the rotary embedding frequencies

// Optimization
const BATCH_SIZE: usize = 8; // sequences of MAX_SEQ_LEN tokens per step
const EMBEDDING_LR: f64 = 0.3; // AdamW learning rate of the token embedding
const MATRIX_LR: f64 = 0.003; // AdamW learning rate of the attention and MLP matrices
const UNEMBEDDING_LR: f64 = 0.003; // AdamW learning rate of the output head
const WEIGHT_DECAY: f64 = 0.0; // decoupled weight decay of the matrices (not embedding or head)
const ADAM_BETA1: f64 = 0.9; // AdamW first-moment decay
const ADAM_BETA2: f64 = 0.95; // AdamW second-moment decay
const WARMUP_RATIO: f64 = 0.02; // fraction of the budget over which the learning rate ramps up
const WARMDOWN_RATIO: f64 = 0.25; // fraction of the budget at the end over which it ramps down
const FINAL_LR_FRAC: f64 = 0.0; // learning rate at the very end, as a fraction of the peak

// Logging (not a knob)
const PROGRESS_EVERY_SECONDS: f64 = 5.0; // print a progress line this often

/// The hyperparameters as one value, so that tests can train a tiny model.
#[derive(Clone, Debug)]
pub struct Hyperparameters {
    pub depth: usize,
    pub model_dim: usize,
    pub head_dim: usize,
    pub mlp_ratio: usize,
    pub softcap: f64,
    pub rope_base: f64,
    pub batch_size: usize,
    pub embedding_lr: f64,
    pub matrix_lr: f64,
    pub unembedding_lr: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub warmup_ratio: f64,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
}

impl Hyperparameters {
    /// The values of the constants above.
    pub const DEFAULT: Hyperparameters = Hyperparameters {
        depth: DEPTH,
        model_dim: MODEL_DIM,
        head_dim: HEAD_DIM,
        mlp_ratio: MLP_RATIO,
        softcap: SOFTCAP,
        rope_base: ROPE_BASE,
        batch_size: BATCH_SIZE,
        embedding_lr: EMBEDDING_LR,
        matrix_lr: MATRIX_LR,
        unembedding_lr: UNEMBEDDING_LR,
        weight_decay: WEIGHT_DECAY,
        adam_beta1: ADAM_BETA1,
        adam_beta2: ADAM_BETA2,
        warmup_ratio: WARMUP_RATIO,
        warmdown_ratio: WARMDOWN_RATIO,
        final_lr_frac: FINAL_LR_FRAC,
    };

    fn n_head(&self) -> usize {
        self.model_dim / self.head_dim
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// RMSNorm without a learned scale, over the last dimension.
fn rms_norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mean_square = x.clone().square().mean_dim(D - 1);
    x * mean_square.add_scalar(1e-6).sqrt().recip()
}

/// Rotary position embedding tables for one sequence length: `[1, 1, seq, head_dim / 2]`.
struct Rotary {
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// `[1, 1, seq, seq]`: 0 where a position may attend, -inf where it may not (the future).
    causal_bias: Tensor<4>,
}

impl Rotary {
    fn new(seq: usize, head_dim: usize, base: f64, device: &Device) -> Rotary {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for position in 0..seq {
            for i in 0..half {
                let frequency = base.powf(-((2 * i) as f64) / head_dim as f64);
                let angle = position as f64 * frequency;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let mut causal_bias = Vec::with_capacity(seq * seq);
        for query in 0..seq {
            for key in 0..seq {
                causal_bias.push(if key <= query {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
        let shape = [1, 1, seq, half];
        Rotary {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            causal_bias: Tensor::from_data(TensorData::new(causal_bias, [1, 1, seq, seq]), device),
        }
    }

    /// Rotates each pair (x[i], x[i + half]) of `x` `[batch, heads, seq, head_dim]` by its
    /// position's angle.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let y1 = x1.clone() * self.cos.clone() + x2.clone() * self.sin.clone();
        let y2 = x2 * self.cos.clone() - x1 * self.sin.clone();
        Tensor::cat(vec![y1, y2], 3)
    }
}

/// softmax(q kᵀ / sqrt(head_dim) + causal mask) v, for `[batch, heads, seq, head_dim]` inputs.
///
/// Written out rather than with burn's `attention` because under autodiff that falls back to
/// a longer chain of ops. The usual subtraction of the row maximum before `exp` is skipped:
/// q and k are RMS-normalised, so |q·k| / sqrt(head_dim) <= sqrt(head_dim) and `exp` cannot
/// overflow. Remove QK-norm and the maximum must come back.
fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, rotary: &Rotary) -> Tensor<4> {
    let head_dim = q.dims()[3];
    let q = q.mul_scalar(1.0 / (head_dim as f64).sqrt());
    let scores = q.matmul(k.swap_dims(2, 3)) + rotary.causal_bias.clone();
    let weights = scores.exp();
    let weights = weights.clone() / weights.sum_dim(3);
    weights.matmul(v)
}

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    /// Queries, keys and values in one matrix: one matmul instead of three.
    qkv: Linear,
    proj: Linear,
    #[module(skip)]
    n_head: usize,
}

impl CausalSelfAttention {
    fn forward(&self, x: Tensor<3>, rotary: &Rotary) -> Tensor<3> {
        let [batch, seq, dim] = x.dims();
        let head_dim = dim / self.n_head;
        let qkv = self.qkv.forward(x);
        // [batch, seq, dim] -> [batch, heads, seq, head_dim]
        let heads = |t: Tensor<3>| {
            t.reshape([batch, seq, self.n_head, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(qkv.clone().narrow(2, 0, dim));
        let k = heads(qkv.clone().narrow(2, dim, dim));
        let v = heads(qkv.narrow(2, 2 * dim, dim));
        // QK-norm after rotary, as in nanochat: keeps attention logits in a sane range.
        let q = rms_norm(rotary.apply(q));
        let k = rms_norm(rotary.apply(k));
        let y = causal_attention(q, k, v, rotary);
        let y = y.swap_dims(1, 2).reshape([batch, seq, dim]);
        self.proj.forward(y)
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    fc: Linear,
    proj: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // ReLU²: as cheap as ReLU and trains better (Primer; nanochat uses it too).
        self.proj.forward(relu(self.fc.forward(x)).square())
    }
}

#[derive(Module, Debug)]
pub struct Block {
    attn: CausalSelfAttention,
    mlp: Mlp,
}

impl Block {
    fn forward(&self, x: Tensor<3>, rotary: &Rotary) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(rms_norm(x), rotary);
        x.clone() + self.mlp.forward(rms_norm(x))
    }
}

#[derive(Module, Debug)]
pub struct Gpt {
    embedding: Embedding,
    blocks: Vec<Block>,
    head: Linear,
    #[module(skip)]
    head_dim: usize,
    #[module(skip)]
    rope_base: f64,
    #[module(skip)]
    softcap: f64,
}

/// Draws initial weights from the run's seed with our own generator, so that a seed gives the
/// same model on every backend and no matter what other threads draw.
struct Init {
    rng: Rng,
    device: Device,
}

impl Init {
    fn tensor(
        &mut self,
        shape: [usize; 2],
        mut draw: impl FnMut(&mut Rng) -> f64,
    ) -> Param<Tensor<2>> {
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| draw(&mut self.rng) as f32)
            .collect();
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    fn normal(&mut self, shape: [usize; 2], std: f64) -> Param<Tensor<2>> {
        // Box-Muller; 1 - uniform is in (0, 1], so the logarithm is finite.
        self.tensor(shape, |rng| {
            let radius = (-2.0 * (1.0 - rng.uniform()).ln()).sqrt();
            std * radius * (std::f64::consts::TAU * rng.uniform()).cos()
        })
    }

    fn uniform(&mut self, shape: [usize; 2], bound: f64) -> Param<Tensor<2>> {
        self.tensor(shape, |rng| bound * (2.0 * rng.uniform() - 1.0))
    }

    fn zeros(&mut self, shape: [usize; 2]) -> Param<Tensor<2>> {
        self.tensor(shape, |_| 0.0)
    }

    /// A bias-free linear layer `[d_in, d_out]` with the given weight.
    fn linear(weight: Param<Tensor<2>>) -> Linear {
        Linear { weight, bias: None }
    }
}

impl Gpt {
    pub fn new(hp: &Hyperparameters, seed: u64, device: &Device) -> Gpt {
        assert!(
            hp.model_dim.is_multiple_of(hp.head_dim) && hp.head_dim.is_multiple_of(2),
            "MODEL_DIM must be a multiple of HEAD_DIM, and HEAD_DIM even"
        );
        let dim = hp.model_dim;
        let hidden = hp.mlp_ratio * dim;
        let mut init = Init {
            rng: Rng::new(seed),
            device: device.clone(),
        };
        // Initialisation as in nanochat: unit-variance embedding, a near-zero head, uniform
        // input matrices and zero output projections, so each block starts as the identity.
        let bound = (3.0 / dim as f64).sqrt();
        let embedding = Embedding {
            weight: init.normal([VOCAB_SIZE, dim], 1.0),
        };
        let blocks = (0..hp.depth)
            .map(|_| Block {
                attn: CausalSelfAttention {
                    qkv: Init::linear(init.uniform([dim, 3 * dim], bound)),
                    proj: Init::linear(init.zeros([dim, dim])),
                    n_head: hp.n_head(),
                },
                mlp: Mlp {
                    fc: Init::linear(init.uniform([dim, hidden], bound)),
                    proj: Init::linear(init.zeros([hidden, dim])),
                },
            })
            .collect();
        Gpt {
            embedding,
            blocks,
            head: Init::linear(init.normal([dim, VOCAB_SIZE], 0.001)),
            head_dim: hp.head_dim,
            rope_base: hp.rope_base,
            softcap: hp.softcap,
        }
    }

    /// Logits `[batch, seq, VOCAB_SIZE]` for token ids `[batch, seq]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let seq = tokens.dims()[1];
        let rotary = Rotary::new(seq, self.head_dim, self.rope_base, &tokens.device());
        let mut x = rms_norm(self.embedding.forward(tokens));
        for block in &self.blocks {
            x = block.forward(x, &rotary);
        }
        let logits = self.head.forward(rms_norm(x));
        // Soft-capping, softcap * tanh(logits / softcap): smooth, bounded logits. Written as
        // 2 * softcap * sigmoid(2 * logits / softcap) - softcap, the same function, because the
        // CPU backend's sigmoid is several times faster than its tanh.
        let cap = self.softcap;
        sigmoid(logits.mul_scalar(2.0 / cap))
            .mul_scalar(2.0 * cap)
            .sub_scalar(cap)
    }

    /// Mean cross-entropy (nats per token) of predicting `targets` from `inputs`.
    pub fn loss(&self, inputs: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        let logits = self.forward(inputs);
        // -log softmax(logits)[target] = log(sum(exp(logits))) - logits[target]. Soft-capped
        // logits are bounded, so `exp` cannot overflow and no maximum needs subtracting first.
        let log_normaliser = logits.clone().exp().sum_dim(2).log();
        let target_logits = logits.gather(2, targets.unsqueeze_dim(2));
        (log_normaliser - target_logits).mean()
    }

    /// Training FLOPs per token: 6 per weight (forward and backward) plus attention.
    fn flops_per_token(&self, seq: usize) -> f64 {
        let weights = self.num_params() - self.embedding.num_params();
        let dim = self.head.weight.dims()[0];
        6.0 * weights as f64 + 12.0 * (self.blocks.len() * dim * seq) as f64
    }
}

impl LanguageModel for Gpt {
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward(tokens)
    }
}

// ---------------------------------------------------------------------------------------------
// Optimizer and schedule
// ---------------------------------------------------------------------------------------------

/// One AdamW per parameter group, each with its own learning rate.
struct Optimizers {
    embedding: ModuleOptimizer,
    matrices: ModuleOptimizer,
    head: ModuleOptimizer,
}

impl Optimizers {
    fn new(hp: &Hyperparameters) -> Optimizers {
        let adamw = |weight_decay: f64| {
            AdamWConfig::new()
                .with_beta_1(hp.adam_beta1 as f32)
                .with_beta_2(hp.adam_beta2 as f32)
                .with_epsilon(1e-8)
                .with_weight_decay(weight_decay as f32)
                .init()
        };
        Optimizers {
            embedding: adamw(0.0),
            matrices: adamw(hp.weight_decay),
            head: adamw(0.0),
        }
    }

    /// Applies one update; `lr_scale` multiplies every group's peak learning rate.
    fn step(
        &mut self,
        model: Gpt,
        mut grads: GradientsParams,
        hp: &Hyperparameters,
        lr_scale: f64,
    ) -> Gpt {
        let Gpt {
            embedding,
            blocks,
            head,
            head_dim,
            rope_base,
            softcap,
        } = model;
        let embedding_grads = move_gradients(&mut grads, &embedding, GradientsParams::new());
        let blocks_grads = move_gradients(&mut grads, &blocks, GradientsParams::new());
        let head_grads = move_gradients(&mut grads, &head, GradientsParams::new());
        Gpt {
            embedding: self
                .embedding
                .step(hp.embedding_lr * lr_scale, embedding, embedding_grads),
            blocks: self
                .matrices
                .step(hp.matrix_lr * lr_scale, blocks, blocks_grads),
            head: self
                .head
                .step(hp.unembedding_lr * lr_scale, head, head_grads),
            head_dim,
            rope_base,
            softcap,
        }
    }
}

/// Moves the gradients of `module`'s parameters out of `from` and adds them to `into`.
fn move_gradients(
    from: &mut GradientsParams,
    module: &impl Module,
    mut into: GradientsParams,
) -> GradientsParams {
    struct Mover<'a> {
        from: &'a mut GradientsParams,
        into: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Mover<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.from.remove::<D>(param.id) {
                let sum = match self.into.remove::<D>(param.id) {
                    Some(earlier) => earlier + grad,
                    None => grad,
                };
                self.into.register(param.id, sum);
            }
        }
    }
    module.visit(&mut Mover {
        from,
        into: &mut into,
    });
    into
}

/// Mean loss and its gradients for one batch.
///
/// The batch is split into `parts` micro-batches that run at the same time on the cores, each
/// through its own copy of the model (same weights, its own autodiff graph); their gradients
/// are added up. The CPU backend runs element-wise operations on one core only, so this is
/// what keeps every core busy. Each micro-batch's loss is weighted by its share of the batch,
/// so the sum equals the gradient of the whole batch.
fn loss_and_gradients(model: &Gpt, batch: Batch, parts: usize) -> (f32, GradientsParams) {
    let rows = batch.inputs.dims()[0];
    let parts = parts.clamp(1, rows);
    let micro_batches: Vec<_> = (0..parts)
        .map(|part| {
            let start = part * rows / parts;
            let len = (part + 1) * rows / parts - start;
            let inputs = batch.inputs.clone().narrow(0, start, len);
            let targets = batch.targets.clone().narrow(0, start, len);
            (inputs, targets, len as f64 / rows as f64)
        })
        .collect();
    let results: Vec<(f32, GradientsParams)> = micro_batches
        .into_par_iter()
        .map(|(inputs, targets, share)| {
            let replica = model.valid().train();
            let loss = replica.loss(inputs, targets).mul_scalar(share);
            let loss_value = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &replica);
            (loss_value, grads)
        })
        .collect();
    let mut total_loss = 0.0;
    let mut total_grads = GradientsParams::new();
    for (loss, mut grads) in results {
        total_loss += loss;
        total_grads = move_gradients(&mut grads, model, total_grads);
    }
    (total_loss, total_grads)
}

/// Learning-rate multiplier at `progress` (elapsed training time / budget, 0 to 1): linear
/// warmup, constant, then linear warmdown to FINAL_LR_FRAC.
fn lr_multiplier(progress: f64, hp: &Hyperparameters) -> f64 {
    if progress < hp.warmup_ratio {
        progress / hp.warmup_ratio
    } else if progress < 1.0 - hp.warmdown_ratio {
        1.0
    } else {
        let remaining = ((1.0 - progress) / hp.warmdown_ratio).clamp(0.0, 1.0);
        remaining + (1.0 - remaining) * hp.final_lr_frac
    }
}

// ---------------------------------------------------------------------------------------------
// Training loop
// ---------------------------------------------------------------------------------------------

/// What `train` returns: the trained model and its counts for the summary, and the training
/// loss of every step (for tests).
pub struct TrainOutcome {
    pub trained: Trained<Gpt>,
    /// The training loss of every step, in nats per token.
    pub losses: Vec<f32>,
}

/// Trains a model with hyperparameters `hp` on `batches` until `clock` says the budget is spent.
pub fn train(
    hp: &Hyperparameters,
    settings: &RunSettings,
    batches: &mut TrainLoader<'_>,
    clock: &TrainingClock,
) -> Result<TrainOutcome, Diverged> {
    let train_device = settings.device().autodiff();
    let mut model = Gpt::new(hp, settings.seed, &train_device);
    let mut optimizers = Optimizers::new(hp);
    let num_params = model.num_params();
    let flops_per_token = model.flops_per_token(MAX_SEQ_LEN);
    let tokens_per_step = (hp.batch_size * MAX_SEQ_LEN) as u64;
    // On the CPU, one micro-batch per core (see `loss_and_gradients`); a GPU wants one batch.
    let micro_batches = match settings.backend {
        Backend::Cpu => rayon::current_num_threads(),
        Backend::Wgpu => 1,
    };
    println!(
        "model: depth {}, dim {}, {} heads of {}, {:.3}M parameters, {:.1} MFLOP per token",
        hp.depth,
        hp.model_dim,
        hp.n_head(),
        hp.head_dim,
        num_params as f64 / 1e6,
        flops_per_token / 1e6
    );
    println!(
        "training: {} sequences of {} tokens per step, budget {:.1}s, seed {}",
        hp.batch_size,
        MAX_SEQ_LEN,
        clock.budget_seconds(),
        settings.seed
    );

    let mut step: u64 = 0;
    let mut losses = Vec::new();
    let mut last_report = (Instant::now(), 0.0, 0u64);
    while !clock.is_spent(step) {
        let lr_scale = lr_multiplier(clock.progress(step), hp);
        let batch = batches.next_batch(hp.batch_size, MAX_SEQ_LEN, &train_device);
        let (loss_value, grads) = loss_and_gradients(&model, batch, micro_batches);
        // Fail fast, as autoresearch does: a diverged run will not come back.
        if !loss_value.is_finite() || loss_value > 100.0 {
            return Err(Diverged {
                step,
                loss: loss_value,
            });
        }
        model = optimizers.step(model, grads, hp, lr_scale);
        step += 1;
        losses.push(loss_value);

        let since_report = last_report.0.elapsed().as_secs_f64();
        if since_report >= PROGRESS_EVERY_SECONDS || clock.is_spent(step) {
            let elapsed = clock.elapsed_seconds();
            let tokens = (step - last_report.2) * tokens_per_step;
            let tokens_per_second = tokens as f64 / (elapsed - last_report.1);
            println!(
                "step {step:05} | loss {loss_value:.4} | lr x{lr_scale:.2} | {tokens_per_second:.0} tok/s | {elapsed:.1}s"
            );
            last_report = (Instant::now(), elapsed, step);
        }
    }

    Ok(TrainOutcome {
        trained: Trained {
            model,
            num_steps: step,
            depth: hp.depth,
            flops_per_token,
        },
        losses,
    })
}

/// The entry point the read-only harness (`prepare::run`) calls: trains with the constants
/// above. The harness measures the time this takes and evaluates the model it returns.
pub fn main(
    settings: &RunSettings,
    batches: &mut TrainLoader<'_>,
    clock: &TrainingClock,
) -> Result<Trained<Gpt>, Diverged> {
    train(&Hyperparameters::DEFAULT, settings, batches, clock).map(|outcome| outcome.trained)
}
