//! What a proposer is shown: the prompt context built from the journal and the work tree,
//! bounded so that its size does not grow with the number of experiments.

use std::path::Path;

use super::{Session, oid};
use crate::config::prompt::{self, PromptContext};
use crate::config::resolve::{SearchSpec, TargetSpec};
use crate::error::Error;
use crate::run::decide::Status;
use crate::run::journal::Expansion;
use crate::run::journal::Experiment;
use crate::run::search::Tree;

/// Bytes of an editable file shown in a prompt; of a read-only or context file.
const EDITABLE_BYTES: usize = 256 * 1024;
const CONTEXT_BYTES: usize = 32 * 1024;
/// Bytes of all read-only and context files together.
const CONTEXT_TOTAL_BYTES: usize = 96 * 1024;
/// Kept experiments listed in a prompt, the latest ones.
const KEPT_SHOWN: usize = 20;
/// How much of a crashed run's log and diff the fix prompt shows.
pub(super) const LOG_TAIL_BYTES: u64 = 8 * 1024;
pub(super) const LOG_TAIL_LINES: usize = 80;
const DIFF_BYTES: usize = 16 * 1024;

impl Session {
    /// The prompt context for proposing after `experiment`'s parent, or fixing it.
    /// `repo` is the work tree the proposer will see, placed where it starts.
    pub(super) fn prompt_context(
        &self,
        experiment: &Experiment,
        repo: &Path,
    ) -> Result<PromptContext, Error> {
        let pipeline = &self.pipeline;
        let results_rows = self.recent_results();
        let kept = self.kept_rows();
        let since_keep = self.history.since_keep();
        let crash = match experiment.fix_of {
            Some(_) => Some(self.crash_info(experiment)?),
            None => None,
        };
        Ok(PromptContext {
            pipeline: prompt::PipelineInfo {
                name: pipeline.name.clone(),
                description: pipeline.description.clone(),
            },
            instructions: pipeline.proposer.instructions.clone(),
            metric: prompt::MetricInfo {
                name: pipeline.metric.name().to_string(),
                goal: match pipeline.metric.goal {
                    crate::config::Goal::Minimize => "minimize".to_string(),
                    crate::config::Goal::Maximize => "maximize".to_string(),
                },
                better: pipeline.metric.goal.better_word().to_string(),
            },
            budget: crate::config::HumanDuration(pipeline.experiment.budget).to_string(),
            experiment: experiment.n,
            baseline: self.history.baseline().and_then(Experiment::metric),
            best: self.history.best().and_then(Experiment::metric),
            results: results_rows,
            results_total: self.history.recorded().count() as u64,
            kept_total: kept.len() as u64,
            kept: kept[kept.len().saturating_sub(KEPT_SHOWN)..].to_vec(),
            since_keep,
            stalled: since_keep >= u64::from(pipeline.proposer.stall),
            stall: pipeline.proposer.stall,
            files: prompt_files(&pipeline.target, repo),
            learnings: crate::run::learnings::read(&crate::run::learnings::path(&self.root)),
            running: self
                .history
                .in_flight()
                .filter(|e| e.n != experiment.n && e.description.is_some())
                .map(|e| prompt::RunningRow {
                    n: e.n,
                    description: crate::text::one_line(&e.description_text()),
                })
                .collect(),
            crash,
            tree: self.tree_info(experiment),
        })
    }

    /// The latest rows of the results table, as many as `[proposer] history` says.
    fn recent_results(&self) -> Vec<prompt::ResultRow> {
        let recorded: Vec<&Experiment> = self.history.recorded().collect();
        let shown = recorded
            .len()
            .saturating_sub(self.pipeline.proposer.history as usize);
        let metric_text = |e: &Experiment| match e.status() {
            Some(Status::Crash) | None => "0.000000".to_string(),
            _ => format!("{:.6}", e.metric().unwrap_or(0.0)),
        };
        recorded[shown..]
            .iter()
            .map(|e| prompt::ResultRow {
                n: e.n,
                commit: e.short_commit().to_string(),
                metric: metric_text(e),
                memory_gb: format!("{:.1}", e.memory_gb().unwrap_or(0.0)),
                status: e.status().map(|s| s.to_string()).unwrap_or_default(),
                description: crate::text::one_line(&e.description_text()),
            })
            .collect()
    }

    /// The kept steps that led to the best, each with its change from the step before: the
    /// chain, or in a tree the path to the best node.
    fn kept_rows(&self) -> Vec<prompt::KeptRow> {
        let steps: Vec<&Experiment> = match (self.history.search(), self.history.best()) {
            (SearchSpec::Tree { .. }, Some(best)) => Tree::of(&self.history).path_to(best.n),
            _ => self.history.kept().collect(),
        };
        let mut previous: Option<f64> = None;
        steps
            .into_iter()
            .map(|e| {
                let metric = e.metric().unwrap_or(0.0);
                let delta = previous
                    .map(|p| format!("{:+.6}", metric - p))
                    .unwrap_or_default();
                previous = Some(metric);
                prompt::KeptRow {
                    commit: e.short_commit().to_string(),
                    metric: format!("{metric:.6}"),
                    delta,
                    description: crate::text::one_line(&e.description_text()),
                }
            })
            .collect()
    }

    /// Where `experiment` sits in a tree search: the path to its parent, what was tried from
    /// the parent, and for a draft the other drafts; `None` in the greedy chain.
    fn tree_info(&self, experiment: &Experiment) -> Option<prompt::TreeInfo> {
        let SearchSpec::Tree { patience, .. } = self.history.search() else {
            return None;
        };
        let parent = experiment.parent?;
        let tree = Tree::of(&self.history);
        let metric = |e: &Experiment| e.metric().map_or(String::new(), |m| format!("{m:.6}"));
        let path = tree
            .path_to(parent)
            .into_iter()
            .map(|node| prompt::TreeStep {
                n: node.n,
                metric: metric(node),
                delta: match (
                    node.metric(),
                    node.parent
                        .and_then(|p| self.history.experiment(p))
                        .and_then(Experiment::metric),
                ) {
                    (Some(value), Some(before)) => format!("{:+.6}", value - before),
                    _ => String::new(),
                },
                description: crate::text::one_line(&node.description_text()),
            })
            .collect();
        let tried_of = |n: u64| -> Vec<prompt::TreeTry> {
            tree.children(n)
                .filter(|child| child.n != experiment.n)
                .map(|child| {
                    let outcome = tree.outcome(child);
                    let status = outcome.status();
                    prompt::TreeTry {
                        n: child.n,
                        status: status.map(|s| s.to_string()).unwrap_or_default(),
                        metric: match status {
                            Some(Status::Crash) | None => String::new(),
                            _ => metric(outcome),
                        },
                        description: crate::text::one_line(&child.description_text()),
                        reason: outcome
                            .decision
                            .as_ref()
                            .map(|d| crate::text::one_line(&d.reason))
                            .unwrap_or_default(),
                    }
                })
                .collect()
        };
        let baseline = self.history.baseline().map(|b| b.n);
        let drafts = match experiment.expansion {
            Expansion::Improve => Vec::new(),
            Expansion::Draft | Expansion::Broaden => baseline.map(tried_of).unwrap_or_default(),
        };
        Some(prompt::TreeInfo {
            expansion: match experiment.expansion {
                Expansion::Improve => "improve",
                Expansion::Draft => "draft",
                Expansion::Broaden => "broaden",
            }
            .to_string(),
            parent,
            path,
            tried: if experiment.expansion == Expansion::Improve {
                tried_of(parent)
            } else {
                Vec::new()
            },
            drafts,
            nodes: tree.nodes().count(),
            dead_ends: tree.dead_ends(patience).count(),
        })
    }

    /// What the fix prompt shows of the crash it repairs: the previous attempt's reason, diff
    /// and log tail.
    fn crash_info(&self, experiment: &Experiment) -> Result<prompt::CrashInfo, Error> {
        let crashed = self
            .history
            .recorded()
            .rfind(|e| e.commit.as_deref() == Some(experiment.base_commit.as_str()))
            .ok_or_else(|| {
                Error::RunFailed("the crashed experiment is not in the journal".to_string())
            })?;
        let parent_commit = crashed
            .parent
            .and_then(|p| self.history.experiment(p))
            .and_then(|p| p.commit.clone())
            .unwrap_or_else(|| self.history.start_commit.clone());
        let diff = self.git.diff_text(
            oid(&parent_commit)?,
            oid(&experiment.base_commit)?,
            DIFF_BYTES,
        )?;
        Ok(prompt::CrashInfo {
            experiment: crashed.n,
            reason: crashed
                .decision
                .as_ref()
                .map(|d| d.reason.clone())
                .unwrap_or_default(),
            diff,
            log_tail: self.log_tail(crashed.n),
            attempt: experiment.attempt,
            attempts: self.pipeline.decision.fix_attempts,
        })
    }
}

/// The target's files as the prompt shows them, read from `repo`: each editable file up to
/// `EDITABLE_BYTES`; the read-only and context files sharing one allowance, so that a long list
/// cannot swell the prompt.
fn prompt_files(target: &TargetSpec, repo: &Path) -> prompt::Files {
    let read = |paths: &[String], limit: usize| -> Vec<prompt::FileText> {
        paths
            .iter()
            .map(|path| read_bounded(repo, path, limit))
            .collect()
    };
    let mut allowance = CONTEXT_TOTAL_BYTES;
    let mut read_shared = |paths: &[String]| -> Vec<prompt::FileText> {
        paths
            .iter()
            .map(|path| {
                let file = read_bounded(repo, path, CONTEXT_BYTES.min(allowance));
                allowance -= file.content.len().min(allowance);
                file
            })
            .collect()
    };
    prompt::Files {
        editable: read(&target.editable, EDITABLE_BYTES),
        read_only: read_shared(&target.read_only),
        context: read_shared(&target.context),
    }
}

pub(super) fn read_bounded(repo: &Path, path: &str, limit: usize) -> prompt::FileText {
    let bytes = std::fs::read(repo.join(path)).unwrap_or_default();
    let truncated = bytes.len() > limit;
    let mut end = bytes.len().min(limit);
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    prompt::FileText {
        path: path.to_string(),
        content: String::from_utf8_lossy(&bytes[..end]).into_owned(),
        truncated,
    }
}
