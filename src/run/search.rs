//! Which experiment the next one builds on.
//!
//! - **Greedy**, autoresearch's protocol: always the best kept experiment, so the run is a chain.
//! - **Tree**: the experiments form a tree whose nodes are the kept ones (a keep improved on
//!   its parent). First `drafts` different approaches are drafted from the baseline. Then the
//!   open node with the highest score is expanded: its improvement over the baseline, scaled so
//!   that the best node scores 1, plus an exploration bonus that grows with the number of
//!   expansions so far and shrinks with the node's own children (UCT, as in AIRA-dojo's MCTS
//!   policy, on measured values instead of rollouts). A node whose last `patience` children
//!   all failed to improve on it is a dead end, closed; when every node is closed the search
//!   broadens with a new draft from the baseline. Crashes are debugged by the session's fix
//!   attempts (AIDE's debug operator), `fix-attempts` deep.
//!
//! The choice is a pure function of the journal, so a resumed run makes the same choices.

use crate::config::Goal;
use crate::config::resolve::SearchSpec;
use crate::run::decide::Status;
use crate::run::journal::{Expansion, Experiment, History};

/// The next experiment's parent and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub parent: u64,
    pub expansion: Expansion,
}

/// Chooses the next experiment's parent; `None` before the baseline is recorded.
pub fn next(spec: &SearchSpec, history: &History) -> Option<Choice> {
    match *spec {
        SearchSpec::Greedy => history.best().map(|best| Choice {
            parent: best.n,
            expansion: Expansion::Improve,
        }),
        SearchSpec::Tree {
            drafts,
            patience,
            exploration,
        } => tree_choice(history, drafts, patience, exploration),
    }
}

fn tree_choice(history: &History, drafts: u32, patience: u32, exploration: f64) -> Option<Choice> {
    let baseline = history
        .baseline()
        .filter(|b| b.status() == Some(Status::Keep))?;
    let tree = Tree::of(history);
    // Proposals in flight (parallel workers) count as expansions already made, so that two
    // workers take the same branch only when there is nothing else.
    let drafted = tree
        .expansions()
        .chain(tree.pending())
        .filter(|e| e.expansion == Expansion::Draft)
        .count();
    if drafted < drafts as usize {
        return Some(Choice {
            parent: baseline.n,
            expansion: Expansion::Draft,
        });
    }
    let goal = history.goal();
    let base_value = baseline.metric()?;
    let open: Vec<&Experiment> = tree
        .nodes()
        .filter(|node| tree.failures_since_improving(node.n) < patience as usize)
        .collect();
    if open.is_empty() {
        return Some(Choice {
            parent: baseline.n,
            expansion: Expansion::Broaden,
        });
    }
    // Improvements over the baseline, the best one scaled to 1 (nodes worse than the baseline,
    // simplifications within the noise, count as 0).
    let gain = |node: &Experiment| {
        node.metric()
            .map_or(0.0, |m| goal.improvement(m, base_value).max(0.0))
    };
    let top = tree.nodes().map(gain).fold(0.0, f64::max);
    let total = (tree.expansions().count() + tree.pending().count()) as f64;
    let score = |node: &Experiment| {
        let value = if top > 0.0 { gain(node) / top } else { 0.0 };
        let pending = tree.pending().filter(|e| e.parent == Some(node.n)).count();
        let children = (tree.children(node.n).count() + pending) as f64;
        value + exploration * ((total + 1.0).ln() / (children + 1.0)).sqrt()
    };
    let chosen = open
        .into_iter()
        .fold(None, |best: Option<(&Experiment, f64)>, node| {
            let s = score(node);
            match best {
                // Ties go to the better metric, then the older node.
                Some((b, bs)) if bs > s || (bs == s && gain(b) >= gain(node)) => Some((b, bs)),
                _ => Some((node, s)),
            }
        })?;
    Some(Choice {
        parent: chosen.0.n,
        expansion: Expansion::Improve,
    })
}

/// The experiments of a run seen as a tree: nodes are kept experiments, each expansion is a
/// proposal made on a node (its fix attempts belong to it).
pub struct Tree<'h> {
    history: &'h History,
}

impl<'h> Tree<'h> {
    pub fn of(history: &'h History) -> Tree<'h> {
        Tree { history }
    }

    /// The kept experiments, the baseline first.
    pub fn nodes(&self) -> impl Iterator<Item = &'h Experiment> + '_ {
        self.history.kept()
    }

    /// Every recorded proposal made on a node (fix attempts are part of the proposal they fix).
    pub fn expansions(&self) -> impl Iterator<Item = &'h Experiment> + '_ {
        self.history
            .recorded()
            .filter(|e| !e.is_baseline() && e.fix_of.is_none())
    }

    /// Proposals in flight: started, not recorded yet (fix attempts left out).
    pub fn pending(&self) -> impl Iterator<Item = &'h Experiment> + '_ {
        self.history
            .in_flight()
            .filter(|e| !e.is_baseline() && e.fix_of.is_none())
    }

    /// The proposals made on node `n`, in order.
    pub fn children(&self, n: u64) -> impl Iterator<Item = &'h Experiment> + '_ {
        self.expansions().filter(move |e| e.parent == Some(n))
    }

    /// Whether a proposal (or one of its fixes) was kept.
    pub fn improved(&self, child: &Experiment) -> bool {
        child.status() == Some(Status::Keep)
            || self
                .history
                .recorded()
                .any(|e| e.fix_of == Some(child.n) && e.status() == Some(Status::Keep))
    }

    /// How the proposal ended, counting its fixes: the kept fix, else the last attempt.
    pub fn outcome(&self, child: &Experiment) -> &'h Experiment {
        let attempts: Vec<&Experiment> = self
            .history
            .recorded()
            .filter(|e| e.n == child.n || e.fix_of == Some(child.n))
            .collect();
        attempts
            .iter()
            .find(|e| e.status() == Some(Status::Keep))
            .or(attempts.last())
            .copied()
            .unwrap_or_else(|| self.history.experiment(child.n).expect("a recorded child"))
    }

    /// Children of `n` since the last one that improved on it.
    pub fn failures_since_improving(&self, n: u64) -> usize {
        self.children(n)
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .take_while(|child| !self.improved(child))
            .count()
    }

    /// Kept nodes whose branch is closed: `patience` failures in a row and no open child.
    pub fn dead_ends(&self, patience: u32) -> impl Iterator<Item = &'h Experiment> + '_ {
        self.nodes()
            .filter(move |node| self.failures_since_improving(node.n) >= patience as usize)
    }

    /// The kept experiments from the baseline down to `n`.
    pub fn path_to(&self, n: u64) -> Vec<&'h Experiment> {
        let mut path = Vec::new();
        let mut at = self.history.experiment(n);
        while let Some(node) = at {
            path.push(node);
            at = node.parent.and_then(|p| self.history.experiment(p));
        }
        path.reverse();
        path
    }

    /// The goal the tree is judged by.
    pub fn goal(&self) -> Goal {
        self.history.goal()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::run::decide::{Decision, Measurement};
    use crate::run::journal::{Event, RunSettings};

    const TREE: SearchSpec = SearchSpec::Tree {
        drafts: 2,
        patience: 2,
        exploration: 0.0,
    };

    /// One recorded experiment: (n, parent, kind, metric, status, fix_of).
    type Row = (u64, Option<u64>, Expansion, f64, Status, Option<u64>);

    /// A recorded run from `experiments`.
    fn history(search: SearchSpec, experiments: &[Row]) -> History {
        let mut events = vec![Event::RunStarted {
            time: 0.0,
            tag: "t".into(),
            branch: "autoresearch/t".into(),
            start_commit: "c".into(),
            pipeline: "p.toml".into(),
            read_only: BTreeMap::new(),
            settings: Some(RunSettings {
                budget_seconds: 1.0,
                hard_limit_seconds: 2.0,
                metric: "loss".into(),
                goal: Goal::Minimize,
                search: Some(search),
            }),
            untracked: Vec::new(),
        }];
        for &(n, parent, expansion, metric, status, fix_of) in experiments {
            events.push(Event::ExperimentStarted {
                time: n as f64,
                n,
                parent,
                base_commit: "c".into(),
                fix_of,
                attempt: u32::from(fix_of.is_some()),
                expansion,
            });
            events.push(Event::Measured {
                time: n as f64,
                n,
                repeat: 0,
                measurement: Measurement {
                    failure: (status == Status::Crash).then(|| "boom".to_string()),
                    metric: (status != Status::Crash).then_some(metric),
                    values: BTreeMap::new(),
                    memory_gb: None,
                    seconds: 1.0,
                    fixable: true,
                },
                worker: None,
            });
            events.push(Event::Decided {
                time: n as f64,
                n,
                decision: Decision {
                    status,
                    reason: String::new(),
                    sigma: None,
                    threshold: None,
                },
            });
            events.push(Event::Recorded { time: n as f64, n });
        }
        History::replay(events)
    }

    use Expansion::{Draft, Improve};
    use Status::{Crash, Discard, Keep};

    fn choice(parent: u64, expansion: Expansion) -> Option<Choice> {
        Some(Choice { parent, expansion })
    }

    /// `history` with experiment `n` started on `parent` and still in flight.
    fn with_pending(mut history: History, n: u64, parent: u64, expansion: Expansion) -> History {
        history.push(Event::ExperimentStarted {
            time: n as f64,
            n,
            parent: Some(parent),
            base_commit: "c".into(),
            fix_of: None,
            attempt: 0,
            expansion,
        });
        history
    }

    #[test]
    fn expansions_in_flight_count_as_visits_so_workers_spread_out() {
        let tree = SearchSpec::Tree {
            drafts: 2,
            patience: 3,
            exploration: 1.0,
        };
        let rows = [(0, None, Improve, 1.0, Keep, None)];
        // One draft in flight: the second worker drafts too, and a third expands the baseline
        // only once both drafts are taken.
        let h = with_pending(history(tree, &rows), 1, 0, Draft);
        assert_eq!(next(&tree, &h), choice(0, Draft));
        let h = with_pending(h, 2, 0, Draft);
        assert_eq!(next(&tree, &h), choice(0, Improve));
        // Two nodes of the same value: the one with an expansion in flight is left to it.
        let rows = [
            (0, None, Improve, 1.0, Keep, None),
            (1, Some(0), Draft, 0.9, Keep, None),
            (2, Some(0), Draft, 0.9, Keep, None),
        ];
        let h = history(tree, &rows);
        assert_eq!(
            next(&tree, &h),
            choice(1, Improve),
            "ties go to the older node"
        );
        let h = with_pending(h, 3, 1, Improve);
        assert_eq!(next(&tree, &h), choice(2, Improve));
    }

    #[test]
    fn greedy_builds_on_the_last_keep() {
        let h = history(
            SearchSpec::Greedy,
            &[
                (0, None, Improve, 1.0, Keep, None),
                (1, Some(0), Improve, 0.9, Keep, None),
                (2, Some(1), Improve, 0.95, Discard, None),
            ],
        );
        assert_eq!(next(&SearchSpec::Greedy, &h), choice(1, Improve));
        assert_eq!(
            next(&SearchSpec::Greedy, &history(SearchSpec::Greedy, &[])),
            None
        );
    }

    #[test]
    fn the_tree_drafts_first_then_expands_the_best_open_node() {
        let mut rows = vec![(0, None, Improve, 1.0, Keep, None)];
        let h = history(TREE, &rows);
        assert_eq!(next(&TREE, &h), choice(0, Draft));
        rows.push((1, Some(0), Draft, 0.9, Keep, None));
        assert_eq!(next(&TREE, &history(TREE, &rows)), choice(0, Draft));
        rows.push((2, Some(0), Draft, 0.95, Keep, None));
        // Two drafts made: the best node, #1, is expanded.
        let h = history(TREE, &rows);
        assert_eq!(next(&TREE, &h), choice(1, Improve));
        assert_eq!(
            h.best().unwrap().n,
            1,
            "the best of the tree, not the last keep"
        );
        // #1 fails twice in a row: a dead end, and the search backtracks to #2.
        rows.push((3, Some(1), Improve, 0.92, Discard, None));
        assert_eq!(next(&TREE, &history(TREE, &rows)), choice(1, Improve));
        rows.push((4, Some(1), Improve, 0.0, Crash, None));
        assert_eq!(next(&TREE, &history(TREE, &rows)), choice(2, Improve));
        // #2 fails twice too; the baseline has had two children that improved, so it is
        // still open and is expanded next; when it fails as well, the search broadens.
        rows.push((5, Some(2), Improve, 0.97, Discard, None));
        rows.push((6, Some(2), Improve, 0.98, Discard, None));
        assert_eq!(next(&TREE, &history(TREE, &rows)), choice(0, Improve));
        rows.push((7, Some(0), Improve, 1.1, Discard, None));
        rows.push((8, Some(0), Improve, 1.2, Discard, None));
        assert_eq!(
            next(&TREE, &history(TREE, &rows)),
            choice(0, Expansion::Broaden)
        );
    }

    #[test]
    fn a_fix_that_is_kept_counts_for_the_proposal_it_fixes() {
        let rows = [
            (0, None, Improve, 1.0, Keep, None),
            (1, Some(0), Draft, 0.9, Keep, None),
            (2, Some(0), Draft, 0.95, Keep, None),
            (3, Some(1), Improve, 0.0, Crash, None),
            (4, Some(1), Improve, 0.85, Keep, Some(3)),
            (5, Some(4), Improve, 0.86, Discard, None),
        ];
        let h = history(TREE, &rows);
        let tree = Tree::of(&h);
        assert_eq!(tree.children(1).map(|e| e.n).collect::<Vec<_>>(), [3]);
        assert_eq!(tree.failures_since_improving(1), 0);
        assert_eq!(tree.outcome(h.experiment(3).unwrap()).n, 4);
        assert_eq!(next(&TREE, &h), choice(4, Improve));
        assert_eq!(
            tree.path_to(4).iter().map(|e| e.n).collect::<Vec<_>>(),
            [0, 1, 4]
        );
    }

    #[test]
    fn exploration_tries_a_node_a_little_worse_with_fewer_children() {
        let explore = SearchSpec::Tree {
            drafts: 2,
            patience: 5,
            exploration: 1.0,
        };
        let rows = [
            (0, None, Improve, 1.0, Keep, None),
            (1, Some(0), Draft, 0.90, Keep, None),
            (2, Some(0), Draft, 0.91, Keep, None),
            (3, Some(1), Improve, 0.95, Discard, None),
            (4, Some(1), Improve, 0.95, Discard, None),
            (5, Some(1), Improve, 0.95, Discard, None),
        ];
        // Greedy on value: still #1, which is open; with exploration, #2 (value 0.9, no child).
        let greedy = SearchSpec::Tree {
            drafts: 2,
            patience: 5,
            exploration: 0.0,
        };
        assert_eq!(next(&greedy, &history(explore, &rows)), choice(1, Improve));
        assert_eq!(next(&explore, &history(explore, &rows)), choice(2, Improve));
    }
}
