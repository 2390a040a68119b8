//! nanochat: a small GPT trainer written with Burn, the reference target of arun.
//!
//! `prepare` is the fixed half (data, tokenizer, batches, the `val_bpb` metric, the summary
//! block); `train` is the half experiments edit (hyperparameters, model, optimizer, loop).

pub mod prepare;
pub mod train;
