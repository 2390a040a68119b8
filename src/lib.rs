//! arun: autonomous ML research loops run by a deterministic, resumable runner.
//!
//! The binary is `src/main.rs`; everything it does starts at [`cli::main`]. The modules are
//! grouped by layer (`src/README.md` says the rule):
//!
//! - [`config`]: the pipeline file, read, checked and resolved into plain types. The leaf: it
//!   uses nothing from the other layers.
//! - [`run`]: the experiment loop and what it stands on: the session's state machine, the
//!   journal, decisions, git, processes, the run store.
//! - [`propose`]: who writes the next experiment: coding agents, HTTP models, the knob search.
//! - [`view`]: what people read: the results table, progress lines, the summary, `arun status`,
//!   `arun report`, `arun best`.
//! - [`init`]: `arun init`, a pipeline file written for a new project.

pub mod cli;
pub mod config;
pub mod error;
pub mod exit_codes;
pub mod init;
pub mod propose;
pub mod run;
pub mod text;
pub mod view;

pub use error::Error;
