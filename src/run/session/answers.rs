//! Proposers' answers kept on disk from the moment a job has them until the journal names
//! them. With several workers the session may be busy elsewhere (another worker's checkout)
//! when an answer comes in; a kill then would lose an answer that was paid for, and the
//! resume would ask for it again. The job saves the answer first, and the resume journals a
//! saved answer instead of asking again.
//!
//! One file per experiment and attempt, `answers/<n>-<failures>.json`: after a journaled
//! failure the experiment is proposed again under the next name, so an answer saved for an
//! attempt whose failure was journaled is never taken for the next attempt's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::propose::{Proposal, ProposeError};
use crate::run::git::GitError;
use crate::run::scope::Inspection;
use crate::run::store::{self, RunDir};

/// The file of experiment `n`'s answer after `failures` journaled proposal failures.
pub(super) fn path(run: &RunDir, n: u64, failures: usize) -> PathBuf {
    run.answers().join(format!("{n}-{failures}.json"))
}

/// An answer as the job reported it: an edit, or one that cannot be used (a crash, unrun).
#[derive(Serialize, Deserialize)]
pub(super) struct Answer {
    pub(super) outcome: Result<Proposal, ProposeError>,
    pub(super) found: Inspection,
    pub(super) files: Option<BTreeMap<String, Option<String>>>,
}

/// Saves an answer the session will journal as a proposal (an edit, or a rejected one), whole
/// or not at all. Failures are not saved (the job undid them; so is an answer that changed
/// nothing, a failure too): a resume asks again. A save that fails (a full disk) leaves the
/// answer to the session as before: the journal's own write then fails too, and the run stops.
pub(super) fn save(
    path: &Path,
    outcome: &Result<Proposal, ProposeError>,
    found: &Result<Option<Inspection>, GitError>,
    files: &Result<Option<BTreeMap<String, Option<String>>>, GitError>,
) {
    let (Ok(Some(found)), Ok(files)) = (found, files) else {
        return;
    };
    let journaled = match outcome {
        Ok(_) => found.changed(),
        Err(error) => matches!(error, ProposeError::Rejected { .. }),
    };
    if !journaled {
        return;
    }
    let answer = Answer {
        outcome: outcome.clone(),
        found: found.clone(),
        files: files.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec(&answer) {
        let _ = store::write_atomic(path, &bytes);
    }
}

/// The answer saved at `path`, if there is a whole one.
pub(super) fn load(path: &Path) -> Option<Answer> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes every saved answer: once journaled (or superseded), an answer is not needed.
pub(super) fn forget_all(run: &RunDir) {
    let _ = std::fs::remove_dir_all(run.answers());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Inspection {
        Inspection {
            edited: vec!["train.py".to_string()],
            notes: vec!["created ignored `cache/x` (removed)".to_string()],
            ..Inspection::default()
        }
    }

    #[test]
    fn an_edit_comes_back_as_it_was_saved() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path(), "test");
        let file = path(&run, 3, 1);
        let proposal = Proposal {
            description: Some("lower the learning rate".to_string()),
            details: serde_json::json!({"LR": 0.02}),
            cost_usd: Some(0.05),
            tokens: None,
        };
        let files = BTreeMap::from([("train.py".to_string(), Some("ab".repeat(20)))]);
        save(
            &file,
            &Ok(proposal),
            &Ok(Some(found())),
            &Ok(Some(files.clone())),
        );
        assert!(file.ends_with("answers/3-1.json"), "{}", file.display());
        let answer = load(&file).unwrap();
        let proposal = answer.outcome.unwrap();
        assert_eq!(
            proposal.description.as_deref(),
            Some("lower the learning rate")
        );
        assert_eq!(proposal.details["LR"], 0.02);
        assert_eq!(proposal.cost_usd, Some(0.05));
        assert_eq!(answer.found, found());
        assert_eq!(answer.files, Some(files));
        forget_all(&run);
        assert!(load(&file).is_none());
    }

    #[test]
    fn a_rejected_answer_is_kept_and_failures_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path(), "test");
        let rejected = ProposeError::Rejected {
            description: "swap the optimizer".to_string(),
            reason: "the edit never applied".to_string(),
            cost_usd: Some(0.01),
            tokens: None,
        };
        save(
            &path(&run, 1, 0),
            &Err(rejected.clone()),
            &Ok(Some(found())),
            &Ok(None),
        );
        assert_eq!(
            load(&path(&run, 1, 0)).unwrap().outcome.unwrap_err(),
            rejected
        );
        // An edit that changed nothing is a failure: not saved.
        save(
            &path(&run, 3, 0),
            &Ok(Proposal::default()),
            &Ok(Some(Inspection::default())),
            &Ok(Some(BTreeMap::new())),
        );
        assert!(load(&path(&run, 3, 0)).is_none());
        let failed = ProposeError::Failed("agent exited with 1".to_string());
        save(&path(&run, 2, 0), &Err(failed), &Ok(None), &Ok(None));
        assert!(load(&path(&run, 2, 0)).is_none());
        // A file cut short (by a crash of an older version, or by hand) is not an answer.
        std::fs::write(path(&run, 4, 0), "{\"answered\":").unwrap();
        assert!(load(&path(&run, 4, 0)).is_none());
    }
}
