//! The built-in knob search as a proposer: no LLM, no network. Each proposal asks the strategy
//! (`strategy`) for the most promising untried assignment of the declared knobs, given
//! every recorded experiment, and writes it into the editable files, changing only the values.
//!
//! The assignment is journaled in the proposal's details (`{"knobs": {"LR": 0.06, ...}}`), so the
//! history the search learns from is the journal itself: a resumed run replays it and continues
//! the same search. Experiments without details (the baseline) are read from their commit.

pub mod gp;
pub mod random;
pub mod strategy;

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use super::{Proposal, ProposeError, Proposer, Request};
use crate::config::Goal;
use crate::config::knob::{Domain, Knob, Value};
use crate::config::knob_site;
use crate::run::decide::Status;
use crate::run::exec::Watch;
use crate::run::git::{self, Git};
use crate::run::journal::Experiment;
use strategy::{Outcome, Search, Trial};

/// How many next ideas the stop summary lists.
const IDEAS: usize = 5;

pub struct KnobSearch {
    knobs: Vec<Knob>,
    domains: Vec<Domain>,
    seed: u64,
}

impl KnobSearch {
    pub fn new(knobs: Vec<Knob>, seed: u64) -> KnobSearch {
        let domains = knobs.iter().map(|k| k.domain.clone()).collect();
        KnobSearch {
            knobs,
            domains,
            seed,
        }
    }

    /// Every recorded experiment as a trial of the search, in order, and the assignment of the
    /// best kept one (what the branch holds, which descriptions compare against).
    fn history(&self, request: &Request) -> Result<(Vec<Trial>, Vec<Value>), ProposeError> {
        let git = Git::open(request.repo).map_err(|err| ProposeError::Failed(err.to_string()))?;
        let goal = request.pipeline.metric.goal;
        let mut trials = Vec::new();
        for experiment in request.history.recorded() {
            let Some(values) = self.assignment(experiment, &git)? else {
                continue;
            };
            let outcome = match (experiment.status(), experiment.metric()) {
                (Some(Status::Crash) | None, _) | (_, None) => Outcome::Crash,
                (_, Some(metric)) => Outcome::Loss(match goal {
                    Goal::Minimize => metric,
                    Goal::Maximize => -metric,
                }),
            };
            trials.push(Trial { values, outcome });
        }
        // Assignments other workers are running now count as tried, their outcome pending, so
        // that concurrent proposals never repeat them or crowd them (`strategy::with_pending`).
        let mut pending = Vec::new();
        for experiment in request.history.in_flight() {
            if experiment.n == request.n || experiment.details.get("knobs").is_none() {
                continue;
            }
            if let Some(values) = self.assignment(experiment, &git)? {
                pending.push(values);
            }
        }
        let trials = strategy::with_pending(&trials, &pending);
        let best = match request.history.best() {
            Some(best) => self.assignment(best, &git)?,
            None => None,
        };
        let best = match best {
            Some(values) => values,
            None => self.read_work_tree(request)?,
        };
        Ok((trials, best))
    }

    /// The knob values of an experiment: from its journaled details, else from its commit.
    /// `None` when they cannot be known (a knob missing from an old commit).
    fn assignment(
        &self,
        experiment: &Experiment,
        git: &Git,
    ) -> Result<Option<Vec<Value>>, ProposeError> {
        if let Some(journaled) = experiment.details.get("knobs").and_then(Json::as_object) {
            return Ok(self
                .knobs
                .iter()
                .map(|knob| from_json(&knob.domain, journaled.get(&knob.name)?))
                .collect());
        }
        let Some(commit) = experiment.commit.as_deref().and_then(git::parse_oid) else {
            return Ok(None);
        };
        let mut files = BTreeMap::new();
        let mut values = Vec::new();
        for knob in &self.knobs {
            if !files.contains_key(&knob.file) {
                let text = git
                    .file_at(commit, &knob.file)
                    .map_err(|err| ProposeError::Failed(err.to_string()))?;
                files.insert(knob.file.clone(), text);
            }
            let Some(Some(text)) = files.get(&knob.file) else {
                return Ok(None);
            };
            let parsed = knob_site::locate(text, &knob.name)
                .ok()
                .and_then(|site| knob_site::parse(&knob.domain, &site.literal).ok());
            match parsed {
                Some(value) => values.push(value),
                None => return Ok(None),
            }
        }
        Ok(Some(values))
    }

    /// The knob's literal as the run's first experiment (the baseline) has it, whose style (digit
    /// groups) every value written keeps; `None` when it cannot be read.
    fn first_literal(&self, request: &Request, knob: &Knob) -> Option<String> {
        let first = request.history.recorded().next()?;
        let commit = first.commit.as_deref().and_then(git::parse_oid)?;
        let git = Git::open(request.repo).ok()?;
        let text = git.file_at(commit, &knob.file).ok()??;
        Some(knob_site::locate(&text, &knob.name).ok()?.literal)
    }

    /// The knob values in the work tree as it is.
    fn read_work_tree(&self, request: &Request) -> Result<Vec<Value>, ProposeError> {
        self.knobs
            .iter()
            .map(|knob| {
                let (_, site) = locate(request, knob)?;
                knob_site::parse(&knob.domain, &site.literal).map_err(|message| {
                    ProposeError::Failed(format!("`{}` in `{}`: {message}", knob.name, knob.file))
                })
            })
            .collect()
    }

    /// Writes `values` into the editable files; only the values' bytes change.
    fn write(&self, request: &Request, values: &[Value]) -> Result<(), ProposeError> {
        let mut files: BTreeMap<&str, String> = BTreeMap::new();
        for (knob, value) in self.knobs.iter().zip(values) {
            let text = match files.remove(knob.file.as_str()) {
                Some(text) => text,
                None => locate(request, knob)?.0,
            };
            let site = knob_site::locate(&text, &knob.name)
                .map_err(|err| ProposeError::Failed(err.describe(&knob.name, &knob.file)))?;
            let first = self.first_literal(request, knob);
            let literal = knob_site::format_like(
                &knob.domain,
                *value,
                &site,
                first.as_deref().unwrap_or(&site.literal),
            );
            files.insert(&knob.file, knob_site::rewrite(&text, &site, &literal));
        }
        for (file, text) in files {
            let path = request.repo.join(file);
            std::fs::write(&path, text).map_err(|err| {
                ProposeError::Failed(format!("cannot write `{}`: {err}", path.display()))
            })?;
        }
        Ok(())
    }

    /// The change from `from` to `to` in words, as the values would be written in the files:
    /// `MATRIX_LR 0.04 -> 0.06, DEPTH 8 -> 10`.
    fn describe(&self, request: &Request, from: &[Value], to: &[Value]) -> String {
        let mut parts = Vec::new();
        for ((knob, old), new) in self.knobs.iter().zip(from).zip(to) {
            if old == new {
                continue;
            }
            let shown = |value: Value| match locate(request, knob) {
                Ok((_, site)) => knob_site::format(&knob.domain, value, &site),
                Err(_) => knob.domain.show(value),
            };
            parts.push(format!("{} {} -> {}", knob.name, shown(*old), shown(*new)));
        }
        if parts.is_empty() {
            "the best assignment again".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl Proposer for KnobSearch {
    fn propose(
        &mut self,
        request: &Request,
        _watch: &mut dyn Watch,
    ) -> Result<Proposal, ProposeError> {
        // A fix attempt gets a new assignment too: the search already counts the crash against
        // the crashed values, and writing every knob makes the edit independent of the base.
        let (trials, best) = self.history(request)?;
        let search = Search::new(&self.domains, self.seed);
        let values = search.suggest(&trials).ok_or_else(|| {
            ProposeError::Exhausted(format!(
                "every assignment of the {} knobs has been tried",
                self.knobs.len()
            ))
        })?;
        self.write(request, &values)?;
        let description = self.describe(request, &best, &values);
        let knobs: Map<String, Json> = self
            .knobs
            .iter()
            .zip(&values)
            .map(|(knob, value)| (knob.name.clone(), to_json(&knob.domain, *value)))
            .collect();
        Ok(Proposal {
            description: Some(description),
            details: json!({ "knobs": knobs }),
            cost_usd: None,
            tokens: None,
        })
    }

    /// One proposal at a time: each sees the assignments proposed before it as in flight.
    fn concurrent(&self) -> bool {
        false
    }

    fn next_ideas(&mut self, request: &Request) -> Vec<String> {
        let Ok((trials, best)) = self.history(request) else {
            return Vec::new();
        };
        Search::new(&self.domains, self.seed)
            .ranked(&trials, IDEAS)
            .iter()
            .map(|values| self.describe(request, &best, values))
            .collect()
    }
}

/// The file holding `knob` in the work tree, and where the knob is in it.
fn locate(request: &Request, knob: &Knob) -> Result<(String, knob_site::Site), ProposeError> {
    let path = request.repo.join(&knob.file);
    let text = std::fs::read_to_string(&path)
        .map_err(|err| ProposeError::Failed(format!("cannot read `{}`: {err}", path.display())))?;
    let site = knob_site::locate(&text, &knob.name)
        .map_err(|err| ProposeError::Failed(err.describe(&knob.name, &knob.file)))?;
    Ok((text, site))
}

/// A value as the journal holds it: a number, or the choice's literal.
fn to_json(domain: &Domain, value: Value) -> Json {
    match (domain, value) {
        (Domain::Choice { choices }, Value::Choice(i)) => json!(choices[i]),
        (Domain::Int { .. } | Domain::Pow2 { .. }, Value::Number(v)) => json!(v as i64),
        (_, Value::Number(v)) => json!(v),
        (_, Value::Choice(i)) => json!(i),
    }
}

fn from_json(domain: &Domain, json: &Json) -> Option<Value> {
    match (domain, json) {
        (Domain::Choice { choices }, Json::String(literal)) => {
            choices.iter().position(|c| c == literal).map(Value::Choice)
        }
        (Domain::Choice { .. }, _) => None,
        (_, json) => json.as_f64().map(Value::Number),
    }
}
