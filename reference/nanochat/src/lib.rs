//! nanochat: a small GPT trainer written with Burn, the reference target of arun.
//!
//! `prepare` is the fixed half (data, tokenizer, training batches, the clock, and in its child
//! `evaluate` the run, the `val_bpb` metric and the summary block); `train` is the half
//! experiments edit (hyperparameters, model, optimizer, loop), which gets training batches only
//! and returns a model.

pub mod prepare;
pub mod train;
