//! results.tsv in exactly autoresearch's format:
//! `commit<TAB><metric><TAB>memory_gb<TAB>status<TAB>description`, one row per experiment,
//! written and flushed the moment it is decided. Each run keeps its own table in its run
//! directory; the work tree's `results.tsv` is a copy of the active run's, for the people and
//! tools that expect autoresearch's file there.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use crate::run::decide::Status;
use crate::run::journal::{Experiment, History};
use crate::text::one_line;

/// The header line for a metric called `metric`.
pub fn header(metric: &str) -> String {
    format!("commit\t{metric}\tmemory_gb\tstatus\tdescription\n")
}

/// One row: 7-character commit, metric with 6 decimals, memory in GB with 1 decimal (zeros for
/// crashes), the status, the description without tabs or newlines.
pub fn row(experiment: &Experiment) -> String {
    let status = experiment.status().unwrap_or(Status::Crash);
    let commit = experiment.commit.as_deref().unwrap_or("0000000");
    let commit = &commit[..commit.len().min(7)];
    let (metric, memory) = match status {
        Status::Crash => (0.0, 0.0),
        _ => (
            experiment.metric().unwrap_or(0.0),
            experiment.memory_gb().unwrap_or(0.0),
        ),
    };
    format!(
        "{commit}\t{metric:.6}\t{memory:.1}\t{status}\t{}\n",
        one_line(&experiment.description_text())
    )
}

/// Creates the file with its header unless it exists.
pub fn create(path: &Path, metric: &str) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    rewrite(path, metric, &History::default())
}

/// Appends one row and syncs it to disk.
pub fn append(path: &Path, metric: &str, experiment: &Experiment) -> io::Result<()> {
    create(path, metric)?;
    let mut file = OpenOptions::new().append(true).open(path)?;
    file.write_all(row(experiment).as_bytes())?;
    file.sync_data()
}

/// Writes the whole table from the journal's recorded experiments (on resume, so a row written
/// just before a crash is neither lost nor doubled), atomically.
pub fn rewrite(path: &Path, metric: &str, history: &History) -> io::Result<()> {
    crate::run::store::write_atomic(path, text(metric, history).as_bytes())
}

/// The whole table of the journal's recorded experiments.
pub fn text(metric: &str, history: &History) -> String {
    let mut text = header(metric);
    for experiment in history.recorded() {
        text.push_str(&row(experiment));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::decide::{Decision, Measurement};
    use std::collections::BTreeMap;

    fn experiment(status: Status, metric: f64, description: &str) -> Experiment {
        Experiment {
            n: 1,
            parent: Some(0),
            base_commit: String::new(),
            fix_of: None,
            attempt: 0,
            expansion: Default::default(),
            started: 0.0,
            description: Some(description.to_string()),
            violations: Vec::new(),
            details: serde_json::Value::Null,
            cost_usd: None,
            tokens: None,
            rejected: None,
            files: None,
            undo: None,
            space: None,
            worker: None,
            commit: Some("a1b2c3d4e5f6".to_string()),
            lines: (0, 0),
            build_seconds: None,
            runs: vec![Measurement {
                failure: None,
                metric: Some(metric),
                values: BTreeMap::new(),
                memory_gb: Some(44.04),
                seconds: 300.0,
                fixable: true,
            }],
            decision: Some(Decision {
                status,
                reason: String::new(),
                sigma: None,
                threshold: None,
            }),
            recorded: true,
            held_out: None,
            failures: Vec::new(),
        }
    }

    #[test]
    fn rows_match_autoresearch() {
        assert_eq!(
            header("val_bpb"),
            "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        );
        assert_eq!(
            row(&experiment(Status::Keep, 0.9932, "increase LR to 0.04")),
            "a1b2c3d\t0.993200\t44.0\tkeep\tincrease LR to 0.04\n"
        );
        assert_eq!(
            row(&experiment(
                Status::Crash,
                0.9,
                "double model width\t(OOM)\nreally"
            )),
            "a1b2c3d\t0.000000\t0.0\tcrash\tdouble model width (OOM) really\n"
        );
    }
}
