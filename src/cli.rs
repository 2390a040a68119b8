//! The command line: clap definitions and the dispatch of each subcommand.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::exit_codes;

/// Runs autonomous ML research loops: propose an edit, run it under a hard budget, keep it only
/// if the metric improves, repeat.
#[derive(Debug, Parser)]
#[command(name = "arun", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files: TOML syntax, the schema, and everything that can be checked before
    /// a run (regexes, durations, files, templates). Prints every problem as
    /// `file:line:col: key: message`.
    Validate {
        /// Pipeline files to check.
        #[arg(required = true, value_name = "PIPELINE")]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of pipeline files (or, with `--markdown`, the reference tables of
    /// README.md).
    Schema {
        /// Print the pipeline reference as Markdown tables instead.
        #[arg(long)]
        markdown: bool,
    },
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            crate::error::report(&err, &mut std::io::stderr());
            err.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Schema { markdown } => {
            let text = if markdown {
                crate::schema::reference_markdown()
            } else {
                crate::schema::pipeline_schema_text()
            };
            let mut out = std::io::stdout();
            out.write_all(text.as_bytes())
                .map_err(|err| Error::io("cannot write the schema to stdout", err))?;
            Ok(exit_codes::SUCCESS)
        }
    }
}

/// Validates every file, printing each problem on stderr; the exit code says whether all passed.
fn validate(files: &[PathBuf]) -> i32 {
    let mut stderr = std::io::stderr().lock();
    let mut invalid = 0;
    for file in files {
        match crate::config::load(file) {
            Ok(_) => {
                let _ = writeln!(stderr, "{}: ok", file.display());
            }
            Err(err) => {
                invalid += 1;
                for diagnostic in &err.diagnostics {
                    let _ = writeln!(stderr, "{diagnostic}");
                }
            }
        }
    }
    if invalid > 0 {
        let _ = writeln!(
            stderr,
            "{invalid} of {} pipeline file{} invalid",
            files.len(),
            if files.len() == 1 { " is" } else { "s are" }
        );
        exit_codes::INVALID_PIPELINE
    } else {
        exit_codes::SUCCESS
    }
}
