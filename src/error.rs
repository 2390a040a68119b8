//! The error type of the library and the one place that renders errors for the user.

use std::io::Write;

use crate::config::InvalidPipeline;
use crate::exit_codes;
use crate::run::secrets::redact;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transparent: the problems are the whole message, and have no cause of their own to add.
    #[error(transparent)]
    InvalidPipeline(#[from] InvalidPipeline),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] crate::run::git::GitError),
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

/// Prints `error: ...` then one `caused by: ...` line per source, leaving out a cause whose text
/// is already printed (an error that quotes its source).
pub fn report(error: &Error, out: &mut impl Write) {
    let mut printed = match error {
        // Each problem already names its file and line; print them as they are.
        Error::InvalidPipeline(invalid) => {
            for diagnostic in &invalid.diagnostics {
                let _ = writeln!(out, "error: {}", redact(&diagnostic.to_string()));
            }
            error.to_string()
        }
        _ => {
            let text = error.to_string();
            let _ = writeln!(out, "error: {}", redact(&text));
            text
        }
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !printed.contains(&text) {
            let _ = writeln!(out, "caused by: {}", redact(&text));
            printed.push('\n');
            printed.push_str(&text);
        }
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Diagnostic, KeyPath};

    fn reported(error: &Error) -> String {
        let mut out = Vec::new();
        report(error, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_invalid_pipeline_prints_each_problem_once() {
        let diagnostic = |line, message: &str| Diagnostic {
            file: PathBuf::from("p.toml"),
            position: Some((line, 1)),
            key: KeyPath::parse("experiment.budget"),
            message: message.to_string(),
        };
        let error = Error::from(InvalidPipeline {
            file: PathBuf::from("p.toml"),
            diagnostics: vec![diagnostic(3, "first"), diagnostic(9, "second")],
        });
        assert_eq!(
            reported(&error),
            "error: p.toml:3:1: experiment.budget: first\n\
             error: p.toml:9:1: experiment.budget: second\n"
        );
    }

    #[test]
    fn a_cause_is_printed_unless_the_error_already_says_it() {
        let denied = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = Error::io("cannot write `results.tsv`", denied());
        assert_eq!(
            reported(&error),
            "error: cannot write `results.tsv`\ncaused by: denied\n"
        );
        let error = Error::io("cannot write `results.tsv`: denied", denied());
        assert_eq!(
            reported(&error),
            "error: cannot write `results.tsv`: denied\n"
        );
    }
}
