//! arun: autonomous ML research loops run by a deterministic, resumable runner.
//!
//! The binary is `src/main.rs`; everything it does starts at [`cli::main`].

pub mod cli;
pub mod config;
pub mod error;
pub mod exit_codes;
pub mod metric;
pub mod prompt;
pub mod schema;

pub use error::Error;
