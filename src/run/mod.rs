//! The experiment loop and what it stands on. `session` is the one state machine every
//! experiment goes through; the rest are the parts it drives:
//!
//! - `journal`: the append-only record a run is rebuilt from, `store`: where a run's files live
//!   and the lock, `decide`: keep, discard or crash, `search`: which experiment the next builds on,
//!   `due`: when a running experiment's result is about to come in.
//! - `git` and `scope`: the target repository, and what a proposer may change in it.
//! - `exec`: child processes (local, or Slurm jobs), `readings`: the metric read from their
//!   output, `gpu`: their peak memory.
//! - `learnings`: what earlier runs learned, `secrets`: keys kept out of every file.
//! - `check` (`arun check`) tries a pipeline once in a `scratch` copy of the repository.

pub mod check;
pub mod decide;
pub mod due;
pub mod exec;
pub mod git;
pub mod gpu;
pub mod journal;
pub mod learnings;
pub mod readings;
pub mod scope;
pub mod scratch;
pub mod search;
pub mod secrets;
pub mod session;
pub mod store;
