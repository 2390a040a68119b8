//! The error type of the library and the one place that renders errors for the user.

use std::io::Write;

use crate::config::InvalidPipeline;
use crate::exit_codes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidPipeline(#[from] InvalidPipeline),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The run cannot start as things are (dirty tree, taken branch, missing files).
    #[error("{0}")]
    Setup(String),
    /// A preflight check failed: its own message first, then what ran.
    #[error("{message}\n  check: `{command}` ({detail})")]
    Preflight {
        message: String,
        command: String,
        detail: String,
    },
    /// The run stopped on something it cannot go past (the baseline crashed, the proposer keeps
    /// failing, a read-only file changed).
    #[error("{0}")]
    RunFailed(String),
    /// What `arun report` or `arun status` was pointed at holds no run it can read (no journal,
    /// a malformed results table).
    #[error("{0}")]
    NoRun(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidPipeline(_) => exit_codes::INVALID_PIPELINE,
            Error::Preflight { .. } => exit_codes::PREFLIGHT_FAILED,
            Error::Io { .. }
            | Error::Git(_)
            | Error::Setup(_)
            | Error::RunFailed(_)
            | Error::NoRun(_) => exit_codes::FAILURE,
        }
    }
}

/// Prints `error: ...` then one `caused by: ...` line per source.
pub fn report(error: &Error, out: &mut impl Write) {
    let _ = match error {
        // Each problem already names its file and line; print them as they are.
        Error::InvalidPipeline(invalid) => {
            for diagnostic in &invalid.diagnostics {
                let _ = writeln!(out, "error: {diagnostic}");
            }
            Ok(())
        }
        _ => writeln!(out, "error: {error}"),
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = writeln!(out, "caused by: {cause}");
        source = cause.source();
    }
}
