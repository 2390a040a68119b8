//! arun: autonomous ML research loops run by a deterministic, resumable runner.
//!
//! The binary is `src/main.rs`; everything it does starts at [`cli::main`].

pub mod best;
pub mod check;
pub mod cli;
pub mod config;
pub mod decide;
pub mod edit;
pub mod error;
pub mod exec;
pub mod exit_codes;
pub mod git;
pub mod gpu;
pub mod init;
pub mod journal;

pub mod learnings;
pub mod metric;
pub mod progress;

pub mod propose;
pub mod report;
pub mod results;

pub mod scope;
pub mod scratch;
pub mod search;
pub mod secrets;
pub mod session;
pub mod status;
pub mod store;
pub mod summary;
pub mod text;

pub use error::Error;
