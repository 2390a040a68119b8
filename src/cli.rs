//! The command line: clap definitions and the dispatch of each subcommand.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::exit_codes;

/// The line at the end of a command's help that names the page documenting it, in arun's source
/// tree (a test checks that every command has one and that the page exists).
macro_rules! doc_page {
    ($page:literal) => {
        concat!("Documented in docs/", $page, " in arun's source tree.")
    };
}

/// Runs autonomous ML research loops: propose an edit, run it under a hard budget, keep it only
/// if the metric improves, repeat.
///
/// `arun PIPELINE.toml` runs the loop until a limit or Ctrl-C; the same command after a crash or
/// a stop continues the run.
#[derive(Debug, Parser)]
#[command(
    name = "arun",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    override_usage = "arun [OPTIONS] PIPELINE.toml\n       arun <COMMAND>",
    after_help = concat!(
        doc_page!("running.md"),
        " The other pages are listed in README.md's map."
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The pipeline to run.
    #[arg(value_name = "PIPELINE.toml")]
    pub pipeline: Option<PathBuf>,
    /// Run tag, naming the branch `autoresearch/<tag>` (default: the pipeline's pattern, e.g.
    /// today's date `nov22`). An existing run with this tag is resumed.
    #[arg(long, value_parser = parse_tag)]
    pub tag: Option<String>,
    /// Continue the latest run (or the one named by `--tag`) where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many experiments, the baseline included (overrides the pipeline).
    #[arg(long, value_name = "N")]
    pub max_experiments: Option<u32>,
    /// Stop starting experiments after this long, e.g. `8h` (overrides the pipeline).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_time: Option<crate::config::HumanDuration>,
    /// Time budget of each experiment of a new run, e.g. `1m` (overrides the pipeline). The hard
    /// limit keeps the pipeline's allowance beyond the budget for start-up and evaluation, at
    /// least the budget again. A run keeps the budget it started with: a resume needs no
    /// `--budget`, and refuses a different one (results at different budgets do not compare).
    #[arg(long, value_name = "DURATION", value_parser = parse_budget)]
    pub budget: Option<crate::config::HumanDuration>,
}

fn parse_duration(text: &str) -> Result<crate::config::HumanDuration, String> {
    text.parse()
        .map_err(|err: crate::config::duration::DurationError| err.to_string())
}

fn parse_budget(text: &str) -> Result<crate::config::HumanDuration, String> {
    let budget = parse_duration(text)?;
    if budget.0.is_zero() {
        return Err("the budget must be longer than zero".to_string());
    }
    Ok(budget)
}

/// A tag names the branch `autoresearch/<tag>`: refused here, with the rule it breaks, rather
/// than when the run starts.
/// How to read a bare results table (a run's journal says both itself).
#[derive(Debug, Clone, clap::Args)]
pub struct TableArgs {
    /// The metric's column in a results table (default: the first column of numbers that does
    /// not count or time experiments).
    #[arg(long, value_name = "NAME")]
    metric: Option<String>,
    /// Which way the table's metric improves (default: from the metric's name, else from the
    /// changes between keeps).
    #[arg(long, value_name = "minimize|maximize", value_parser = parse_goal)]
    goal: Option<crate::config::Goal>,
}

impl TableArgs {
    fn input(self, path: Option<PathBuf>, tag: Option<String>) -> crate::view::report::Input {
        crate::view::report::Input {
            path,
            tag,
            choice: crate::view::report::load::Choice {
                metric: self.metric,
                goal: self.goal,
            },
        }
    }
}

fn parse_goal(text: &str) -> Result<crate::config::Goal, String> {
    match text {
        "minimize" | "min" => Ok(crate::config::Goal::Minimize),
        "maximize" | "max" => Ok(crate::config::Goal::Maximize),
        _ => Err("expected `minimize` or `maximize`".to_string()),
    }
}

fn parse_tag(text: &str) -> Result<String, String> {
    match crate::config::resolve::tag_problem(text) {
        Some(why) => Err(why),
        None => Ok(text.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (the same as `arun PIPELINE.toml`).
    #[command(after_help = doc_page!("running.md"))]
    Run(RunArgs),
    /// Check pipeline files: TOML syntax, the schema, and everything that can be checked before
    /// a run (regexes, durations, files, templates). Prints every problem as
    /// `file:line:col: key: message`.
    #[command(after_help = doc_page!("reference.md"))]
    Validate {
        /// Pipeline files to check.
        #[arg(required = true, value_name = "PIPELINE")]
        files: Vec<PathBuf>,
    },
    /// Write a pipeline file for a training project, each guess explained in a comment.
    ///
    /// Guesses the run and build commands, the editable and read-only files, the metric (from
    /// one short probe run in a throwaway copy, or from a log) and the knobs. Asks in a terminal
    /// unless `--yes`; never overwrites a file. Prints the file's path.
    #[command(after_help = doc_page!("your-project.md"))]
    Init {
        /// The project's git repository.
        #[arg(value_name = "REPO", default_value = ".")]
        repo: PathBuf,
        /// Where to write the pipeline (default: `pipelines/<repository name>.toml`).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The command that runs one experiment, e.g. `python train.py config/small.py`.
        #[arg(long, value_name = "CMD")]
        run: Option<String>,
        /// The file experiments may change (the training script), relative to the repository.
        #[arg(long, value_name = "FILE")]
        editable: Option<String>,
        /// The metric, by the name the program prints, e.g. `val_loss`.
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        /// How long the probe run may take; the values it prints by then are the candidates.
        #[arg(long, value_name = "DURATION", value_parser = parse_budget, default_value = "60s")]
        probe: crate::config::HumanDuration,
        /// Read the values from this log of a run instead of probing.
        #[arg(long, value_name = "FILE", conflicts_with = "probe")]
        log: Option<PathBuf>,
        /// Propose with the knob search over the script's constants (written uncommented).
        #[arg(long)]
        knobs: bool,
        /// Ask nothing: take the likeliest metric and write the file.
        #[arg(long)]
        yes: bool,
    },
    /// Try a pipeline once without starting a run; ends with `ready` or the first thing to fix.
    ///
    /// Runs the preflight checks, the build and one run of the baseline under the budget in a
    /// throwaway copy of the target repository (no branch, no commit, nothing written there),
    /// and shows the metric and extra values it printed, its peak memory and time, and the
    /// knobs' current values. The exit status is 0 only when ready.
    #[command(after_help = doc_page!("your-project.md"))]
    Check {
        /// The pipeline to check.
        #[arg(value_name = "PIPELINE.toml")]
        pipeline: PathBuf,
    },
    /// Write a run's report: one self-contained HTML file with the progress plot, the experiment
    /// tree, the summary figures and every experiment with its diff and log tail. Prints the
    /// file's path.
    #[command(after_help = doc_page!("reports.md"))]
    Report {
        /// A pipeline file, a run directory `.arun/<tag>`, a target repository, or a bare
        /// autoresearch results table (default: the current directory). Two or more make one
        /// page comparing the runs side by side (default: `comparison.html`).
        #[arg(value_name = "PIPELINE.toml | RUN_DIR | results.tsv")]
        inputs: Vec<PathBuf>,
        /// Which run of the repository (default: the latest).
        #[arg(long, value_parser = parse_tag)]
        tag: Option<String>,
        /// Where to write the report (default: `.arun/<tag>/report.html`, or beside a results
        /// table with the extension `.html`).
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Show where a run stands, on one screen: its state, the experiment in progress and for how
    /// long, the best so far, the last rows. Only reads: safe beside the arun driving the run.
    #[command(after_help = doc_page!("reports.md"))]
    Status {
        /// A pipeline file, a run directory `.arun/<tag>`, a target repository, or a results
        /// table (default: the current directory).
        #[arg(value_name = "PIPELINE.toml | RUN_DIR | results.tsv")]
        input: Option<PathBuf>,
        /// Which run of the repository (default: the latest).
        #[arg(long, value_parser = parse_tag)]
        tag: Option<String>,
        /// How many of the last rows to show.
        #[arg(long, value_name = "N", default_value_t = 10)]
        rows: usize,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Write a run's best result where it can be taken away: the best experiment's editable files
    /// as they are at its commit, `best.diff` (its change from the baseline) and `SUMMARY.md`
    /// (the result against the baseline, what worked, what did not). Prints the directory. Only
    /// reads: safe beside the arun driving the run.
    #[command(after_help = doc_page!("reports.md"))]
    Best {
        /// A pipeline file, a run directory `.git/arun/<tag>`, or a target repository (default:
        /// the current directory).
        #[arg(value_name = "PIPELINE.toml | RUN_DIR | REPO")]
        input: Option<PathBuf>,
        /// Which run of the repository (default: the latest).
        #[arg(long, value_parser = parse_tag)]
        tag: Option<String>,
        /// Where to write (default: `.git/arun/<tag>/best/`, out of the work tree a run may be
        /// driving; a directory inside that work tree is refused).
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of pipeline files (or, with `--markdown`, the reference tables of
    /// docs/reference.md).
    #[command(after_help = doc_page!("reference.md"))]
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

/// Runs the command the command line names; returns the exit code.
fn run(cli: Cli) -> Result<i32, Error> {
    let command = match cli.command {
        Some(command) => command,
        None => Command::Run(cli.run),
    };
    match command {
        Command::Run(args) => run_pipeline(args),
        Command::Validate { files } => Ok(validate(&files)),
        Command::Check { pipeline } => check(&pipeline),
        Command::Init {
            repo,
            output,
            run,
            editable,
            metric,
            probe,
            log,
            knobs,
            yes,
        } => init_pipeline(&crate::init::Options {
            repo,
            output,
            run,
            editable,
            metric,
            probe: probe.0,
            log,
            knobs,
            yes,
        }),
        Command::Report {
            inputs,
            tag,
            output,
            table,
        } => write_report(inputs, tag, output, table),
        Command::Status {
            input,
            tag,
            rows,
            table,
        } => print_status(input, tag, rows, table),
        Command::Best { input, tag, output } => write_best(input, tag, output),
        Command::Schema { markdown } => print_schema(markdown),
    }
}

/// `arun init`: writes the pipeline file and prints its path.
fn init_pipeline(options: &crate::init::Options) -> Result<i32, Error> {
    let path = crate::init::init(options)?;
    eprintln!(
        "arun: wrote {}; try it with `arun check {}`",
        path.display(),
        path.display()
    );
    println!("{}", path.display());
    Ok(exit_codes::SUCCESS)
}

/// `arun report`: writes one run's report, or a comparison of several, and prints its path.
fn write_report(
    inputs: Vec<PathBuf>,
    tag: Option<String>,
    output: Option<PathBuf>,
    table: TableArgs,
) -> Result<i32, Error> {
    let (path, warnings) = if inputs.len() > 1 {
        let inputs: Vec<crate::view::report::Input> = inputs
            .into_iter()
            .map(|path| table.clone().input(Some(path), tag.clone()))
            .collect();
        crate::view::report::compare::write(&inputs, output.as_deref())?
    } else {
        let input = table.input(inputs.into_iter().next(), tag);
        crate::view::report::write(&input, output.as_deref())?
    };
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}", path.display());
    Ok(exit_codes::SUCCESS)
}

/// `arun status`: prints the run's status screen.
fn print_status(
    input: Option<PathBuf>,
    tag: Option<String>,
    rows: usize,
    table: TableArgs,
) -> Result<i32, Error> {
    let input = table.input(input, tag);
    let text = crate::view::status::status(&input, rows, crate::view::status::terminal_width())?;
    let mut out = std::io::stdout();
    out.write_all(text.as_bytes())
        .map_err(|err| Error::io("cannot write the status to stdout", err))?;
    Ok(exit_codes::SUCCESS)
}

/// `arun best`: writes the best result's directory and prints its path.
fn write_best(
    input: Option<PathBuf>,
    tag: Option<String>,
    output: Option<PathBuf>,
) -> Result<i32, Error> {
    let input = crate::view::report::Input {
        path: input,
        tag,
        ..Default::default()
    };
    let written = crate::view::best::write(&input, output.as_deref())?;
    if let Some(note) = &written.note {
        eprintln!("note: {note}");
    }
    println!("{}", written.dir.display());
    Ok(exit_codes::SUCCESS)
}

/// `arun schema`: prints the JSON Schema, or with `--markdown` the reference tables.
fn print_schema(markdown: bool) -> Result<i32, Error> {
    let text = if markdown {
        crate::config::schema::reference_markdown()
    } else {
        crate::config::schema::pipeline_schema_text()
    };
    let mut out = std::io::stdout();
    out.write_all(text.as_bytes())
        .map_err(|err| Error::io("cannot write the schema to stdout", err))?;
    Ok(exit_codes::SUCCESS)
}

fn run_pipeline(args: RunArgs) -> Result<i32, Error> {
    let Some(file) = &args.pipeline else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return Ok(exit_codes::USAGE);
    };
    let pipeline = crate::config::load(file)?;
    let options = crate::run::session::RunOptions {
        tag: args.tag,
        resume: args.resume,
        max_experiments: args.max_experiments,
        max_time: args.max_time.map(|d| d.0),
        budget: args.budget.map(|d| d.0),
    };
    match crate::run::session::run(pipeline, options)? {
        crate::run::session::Ending::Finished(_) => Ok(exit_codes::SUCCESS),
        crate::run::session::Ending::Interrupted => Ok(exit_codes::INTERRUPTED),
    }
}

/// Checks a pipeline and prints the report on stdout; the exit code says whether it is ready.
fn check(pipeline: &std::path::Path) -> Result<i32, Error> {
    let report = crate::run::check::check(pipeline)?;
    let mut out = std::io::stdout();
    out.write_all(report.render().as_bytes())
        .map_err(|err| Error::io("cannot write the check to stdout", err))?;
    Ok(report.exit_code())
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
