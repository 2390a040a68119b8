//! A tree search's experiment tree as text, for the summary printed when a run stops: each node
//! (a kept experiment) indented under the node it improved on, with its metric, its change from
//! its parent and its description; the best path and the dead ends marked; under each node what
//! was tried from it and not kept, listed when few and summed up when many. However many
//! experiments a run made, the text stays a screen or two long.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::config::Goal;
use crate::run::decide::Status;
use crate::run::journal::Expansion;
use crate::run::journal::{Experiment, History};
use crate::run::search::Tree;
use crate::view::report::TreeFacts;

/// At most this many nodes are drawn: the best path, then the best of the others with the nodes
/// they hang from; the rest are counted under the node they hang from.
pub const MAX_NODES: usize = 30;

/// A best path longer than this is drawn with its first `PATH_HEAD` and last `PATH_TAIL` nodes
/// and a line counting the ones between, so that the text's indentation stays bounded.
const PATH_HEAD: usize = 2;
const PATH_TAIL: usize = 8;

/// Children of a node that were not kept are listed one per line up to this many; more are
/// summed up in one line.
pub const LISTED: usize = 2;

/// Descriptions are cut to this many characters.
const DESCRIPTION_CHARS: usize = 60;

/// The tree, one line per node or note, each line ending with a newline; the first line is the
/// tree's shape. Empty before the baseline is kept.
pub fn render(history: &History, facts: &TreeFacts) -> String {
    let Some(baseline) = history
        .baseline()
        .filter(|b| b.status() == Some(Status::Keep))
    else {
        return String::new();
    };
    let tree = Tree::of(history);
    let nodes: Vec<&Experiment> = tree.nodes().collect();
    let best = history.best().map_or(baseline.n, |b| b.n);
    let path: Vec<u64> = tree.path_to(best).iter().map(|e| e.n).collect();
    let skipped: BTreeSet<u64> = if path.len() > PATH_HEAD + PATH_TAIL {
        path[PATH_HEAD..path.len() - PATH_TAIL]
            .iter()
            .copied()
            .collect()
    } else {
        BTreeSet::new()
    };
    let shown = shown_nodes(&tree, &nodes, &path, &skipped, history.goal());
    let mut out = String::new();
    let _ = writeln!(out, "{} (* marks the best path)", facts.sentence());
    if shown.len() < nodes.len() {
        let _ = writeln!(
            out,
            "{} of the {} nodes are drawn: the best path and the best others",
            shown.len(),
            nodes.len()
        );
    }
    let mut view = View {
        history,
        tree,
        goal: history.goal(),
        nodes,
        best,
        path,
        skipped,
        dead: facts.dead_ends.iter().copied().collect(),
        shown,
        out,
    };
    view.node(baseline, "", "");
    view.out
}

/// The nodes drawn: all of them when they fit, else the best path (less `skipped`, the middle
/// of a long one), then the other nodes from the best metric down, each with the nodes it hangs
/// from, while they fit.
fn shown_nodes(
    tree: &Tree,
    nodes: &[&Experiment],
    path: &[u64],
    skipped: &BTreeSet<u64>,
    goal: Goal,
) -> BTreeSet<u64> {
    if nodes.len() <= MAX_NODES && skipped.is_empty() {
        return nodes.iter().map(|e| e.n).collect();
    }
    let mut shown: BTreeSet<u64> = path
        .iter()
        .filter(|n| !skipped.contains(n))
        .copied()
        .collect();
    let mut ranked: Vec<&Experiment> = nodes.to_vec();
    ranked.sort_by(|a, b| {
        let gain = |e: &Experiment| {
            e.metric()
                .map_or(f64::NEG_INFINITY, |m| goal.improvement(m, 0.0))
        };
        gain(b).total_cmp(&gain(a)).then(a.n.cmp(&b.n))
    });
    for node in ranked {
        if shown.len() >= MAX_NODES {
            break;
        }
        // It hangs from the best path at its last ancestor there, which must be drawn.
        let ancestors: Vec<u64> = tree.path_to(node.n).iter().map(|e| e.n).collect();
        let Some(fork) = ancestors.iter().rposition(|n| path.contains(n)) else {
            continue;
        };
        if skipped.contains(&ancestors[fork]) {
            continue;
        }
        let missing: Vec<u64> = ancestors[fork..]
            .iter()
            .copied()
            .filter(|n| !shown.contains(n))
            .collect();
        if shown.len() + missing.len() <= MAX_NODES {
            shown.extend(missing);
        }
    }
    shown
}

/// What is drawn, and the text so far.
struct View<'h> {
    history: &'h History,
    tree: Tree<'h>,
    goal: Goal,
    nodes: Vec<&'h Experiment>,
    best: u64,
    /// The best path, from the baseline down.
    path: Vec<u64>,
    /// The middle of a long best path, drawn as one line.
    skipped: BTreeSet<u64>,
    dead: BTreeSet<u64>,
    shown: BTreeSet<u64>,
    out: String,
}

/// One line under a node: a child node, a child not kept, a sum of them or of nodes left out,
/// or the start of the middle of the best path, left out.
enum Item<'h> {
    Node(&'h Experiment),
    Tried(&'h Experiment),
    Note(String),
    Gap(&'h Experiment),
}

impl<'h> View<'h> {
    /// Writes `node`'s line after `lead` (its connector), then what hangs from it, each line
    /// after `under`.
    fn node(&mut self, node: &'h Experiment, lead: &str, under: &str) {
        let mark = if self.path.contains(&node.n) {
            "* "
        } else {
            "  "
        };
        let parent = node.parent.and_then(|p| self.history.experiment(p));
        let mut tags: Vec<String> = Vec::new();
        match (node.fix_of, node.expansion) {
            (Some(crash), _) => tags.push(format!("fix of #{crash}")),
            (None, Expansion::Draft) => tags.push("draft".to_string()),
            (None, Expansion::Broaden) => tags.push("broaden".to_string()),
            (None, Expansion::Improve) => {}
        }
        if self.dead.contains(&node.n) {
            tags.push("dead end".to_string());
        }
        if node.n == self.best {
            tags.push("best".to_string());
        }
        let _ = writeln!(
            self.out,
            "{mark}{lead}{}{}",
            self.outcome_text(node, parent),
            if tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", tags.join(", "))
            }
        );
        let items = self.items(node);
        let count = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let last = i + 1 == count;
            let lead = format!("{under}{}", if last { "└─ " } else { "├─ " });
            let next = format!("{under}{}", if last { "   " } else { "│  " });
            match item {
                Item::Node(child) => self.node(child, &lead, &next),
                Item::Tried(child) => {
                    let outcome = self.tree.outcome(child);
                    let mut line = self.outcome_text_of(outcome, child, Some(node));
                    if outcome.n != child.n {
                        let _ = write!(line, " [fix of #{}]", child.n);
                    }
                    let _ = writeln!(self.out, "  {lead}{line}");
                }
                Item::Note(text) => {
                    let _ = writeln!(self.out, "  {lead}{text}");
                }
                Item::Gap(first) => self.gap(first, &lead, &next),
            }
        }
    }

    /// What hangs from `node`: the children not kept (or their sum), the nodes left out (their
    /// sum), then the child nodes.
    fn items(&self, node: &'h Experiment) -> Vec<Item<'h>> {
        let mut items = Vec::new();
        let failed: Vec<&Experiment> = self
            .tree
            .children(node.n)
            .filter(|child| !self.tree.improved(child))
            .collect();
        if failed.len() <= LISTED {
            items.extend(failed.iter().map(|child| Item::Tried(child)));
        } else {
            items.push(Item::Note(self.tried_sum(node, &failed)));
        }
        let children: Vec<&Experiment> = self
            .nodes
            .iter()
            .copied()
            .filter(|e| e.parent == Some(node.n))
            .collect();
        let hidden: Vec<&Experiment> = children
            .iter()
            .copied()
            .filter(|e| !self.shown.contains(&e.n) && !self.skipped.contains(&e.n))
            .flat_map(|e| self.subtree(e))
            .collect();
        if !hidden.is_empty() {
            items.push(Item::Note(self.hidden_sum(&hidden)));
        }
        items.extend(children.into_iter().filter_map(|e| {
            if self.shown.contains(&e.n) {
                Some(Item::Node(e))
            } else if self.skipped.contains(&e.n) {
                Some(Item::Gap(e))
            } else {
                None
            }
        }));
        items
    }

    /// The middle of a long best path, from `first` on, as one line, then the rest of the path
    /// under it.
    fn gap(&mut self, first: &'h Experiment, lead: &str, under: &str) {
        let start = self.path.iter().position(|&n| n == first.n).unwrap_or(0);
        let gap: Vec<u64> = self.path[start..]
            .iter()
            .copied()
            .take_while(|n| self.skipped.contains(n))
            .collect();
        let off_path: usize = gap
            .iter()
            .flat_map(|&n| self.nodes.iter().filter(move |e| e.parent == Some(n)))
            .filter(|e| !self.path.contains(&e.n))
            .map(|e| self.subtree(e).len())
            .sum();
        let _ = write!(
            self.out,
            "* {lead}{} nodes of the best path not drawn, #{} to #{}",
            gap.len(),
            gap.first().copied().unwrap_or(first.n),
            gap.last().copied().unwrap_or(first.n),
        );
        if off_path > 0 {
            let _ = write!(self.out, ", and {off_path} off it");
        }
        self.out.push('\n');
        let resume = self
            .path
            .get(start + gap.len())
            .and_then(|&n| self.nodes.iter().copied().find(|e| e.n == n));
        if let Some(resume) = resume {
            self.node(resume, &format!("{under}└─ "), &format!("{under}   "));
        }
    }

    /// `node` and every node below it.
    fn subtree(&self, node: &'h Experiment) -> Vec<&'h Experiment> {
        let mut found = vec![node];
        let mut at = 0;
        while at < found.len() {
            let n = found[at].n;
            found.extend(self.nodes.iter().copied().filter(|e| e.parent == Some(n)));
            at += 1;
        }
        found
    }

    /// `7 not kept: 5 discarded, 2 crashed; closest #14 discard 0.930000 +0.030000 ...`
    fn tried_sum(&self, node: &'h Experiment, failed: &[&'h Experiment]) -> String {
        let outcomes: Vec<&Experiment> = failed.iter().map(|c| self.tree.outcome(c)).collect();
        let count = |status| {
            outcomes
                .iter()
                .filter(|o| o.status() == Some(status))
                .count()
        };
        let counts: Vec<String> = [(Status::Discard, "discarded"), (Status::Crash, "crashed")]
            .into_iter()
            .map(|(status, word)| (count(status), word))
            .filter(|(count, _)| *count > 0)
            .map(|(count, word)| format!("{count} {word}"))
            .collect();
        let mut text = format!("{} not kept: {}", failed.len(), counts.join(", "));
        let closest = failed
            .iter()
            .zip(&outcomes)
            .filter_map(|(child, outcome)| Some((*child, *outcome, outcome.metric()?)))
            .filter(|(_, outcome, _)| outcome.status() != Some(Status::Crash))
            .fold(
                None,
                |best: Option<(&Experiment, &Experiment, f64)>, next| match best {
                    Some(b) if self.goal.improvement(next.2, b.2) <= 0.0 => Some(b),
                    _ => Some(next),
                },
            );
        if let Some((child, outcome, _)) = closest {
            let _ = write!(
                text,
                "; closest {}",
                self.outcome_text_of(outcome, child, Some(node))
            );
        }
        text
    }

    /// `4 more nodes below, not drawn; the best #12 0.920000`
    fn hidden_sum(&self, hidden: &[&'h Experiment]) -> String {
        let mut text = format!(
            "{} more node{} below, not drawn",
            hidden.len(),
            if hidden.len() == 1 { "" } else { "s" }
        );
        let best = hidden.iter().filter_map(|e| Some((*e, e.metric()?))).fold(
            None,
            |best: Option<(&Experiment, f64)>, next| match best {
                Some(b) if self.goal.improvement(next.1, b.1) <= 0.0 => Some(b),
                _ => Some(next),
            },
        );
        if let Some((node, metric)) = best {
            let _ = write!(text, "; the best #{} {metric:.6}", node.n);
        }
        text
    }

    /// `#6 keep 0.700000 -0.250000 add idea c` for a node, against its parent.
    fn outcome_text(&self, node: &Experiment, parent: Option<&Experiment>) -> String {
        self.outcome_text_of(node, node, parent)
    }

    /// The line of `outcome` (a proposal's last attempt or kept fix), with the description of
    /// the proposal `asked`, and its change from `parent`.
    fn outcome_text_of(
        &self,
        outcome: &Experiment,
        asked: &Experiment,
        parent: Option<&Experiment>,
    ) -> String {
        let status = outcome.status().map_or("running", |s| match s {
            Status::Keep => "keep",
            Status::Discard => "discard",
            Status::Crash => "crash",
        });
        let mut text = format!("#{} {status}", outcome.n);
        if outcome.status() != Some(Status::Crash)
            && let Some(value) = outcome.metric()
        {
            let _ = write!(text, " {value:.6}");
            if let Some(reference) = parent.and_then(Experiment::metric) {
                let _ = write!(text, " {:+.6}", value - reference);
            }
        }
        let description = crate::text::cut(
            &crate::text::one_line(&asked.description_text()),
            DESCRIPTION_CHARS,
            "...",
        );
        if !description.is_empty() {
            let _ = write!(text, " {description}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::resolve::SearchSpec;
    use crate::run::decide::{Decision, Measurement};
    use crate::run::journal::{Event, RunSettings};

    /// One recorded experiment: (n, parent, kind, metric, status, fix_of, description).
    type Row = (
        u64,
        Option<u64>,
        Expansion,
        f64,
        Status,
        Option<u64>,
        &'static str,
    );

    /// A recorded tree run of `rows`, patience 2.
    fn history(rows: &[Row]) -> History {
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
                search: Some(SearchSpec::Tree {
                    drafts: 2,
                    patience: 2,
                    exploration: 0.0,
                }),
            }),
            untracked: Vec::new(),
        }];
        for &(n, parent, expansion, metric, status, fix_of, description) in rows {
            let time = n as f64;
            events.push(Event::ExperimentStarted {
                time,
                n,
                parent,
                base_commit: "c".into(),
                fix_of,
                attempt: u32::from(fix_of.is_some()),
                expansion,
            });
            if parent.is_some() {
                events.push(Event::Proposed {
                    time,
                    n,
                    description: description.into(),
                    violations: Vec::new(),
                    details: serde_json::Value::Null,
                    cost_usd: None,
                    tokens: None,
                    rejected: None,
                    files: None,
                    undone: Vec::new(),
                    undo: None,
                    space: None,
                });
            }
            events.push(Event::Measured {
                time,
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
                time,
                n,
                decision: Decision {
                    status,
                    reason: String::new(),
                    sigma: None,
                    threshold: None,
                },
            });
            events.push(Event::Recorded { time, n });
        }
        History::replay(events)
    }

    fn text(rows: &[Row]) -> String {
        let history = history(rows);
        render(&history, &TreeFacts::of(&history).unwrap())
    }

    use Expansion::{Broaden, Draft, Improve};
    use Status::{Crash, Discard, Keep};

    /// The ideas landscape of `tests/tree_search.rs`: `a` first, a dead end; `b` then `c`.
    const IDEAS: &[Row] = &[
        (0, None, Improve, 1.0, Keep, None, ""),
        (1, Some(0), Draft, 0.9, Keep, None, "add idea a"),
        (2, Some(0), Draft, 0.95, Keep, None, "add idea b"),
        (3, Some(1), Improve, 1.05, Discard, None, "add idea b"),
        (4, Some(1), Improve, 0.93, Discard, None, "add idea c"),
        (5, Some(2), Improve, 1.05, Discard, None, "add idea a"),
        (6, Some(2), Improve, 0.7, Keep, None, "add idea c"),
        (7, Some(6), Improve, 1.1, Discard, None, "add idea a"),
    ];

    #[test]
    fn each_case_draws_what_a_reader_needs() {
        let cases: &[(&str, &[Row], &str)] = &[
            (
                "the baseline alone",
                &IDEAS[..1],
                "tree search: 1 node, 0 branches from the baseline, 0 dead ends, 0 drafts (* marks the best path)\n\
                 * #0 keep 1.000000 baseline [best]\n",
            ),
            (
                "the ideas landscape: the best path b, c; a's branch a dead end",
                IDEAS,
                "tree search: 4 nodes, 2 branches from the baseline, 1 dead end, 2 drafts (* marks the best path)\n\
                 * #0 keep 1.000000 baseline\n\
                 \x20 ├─ #1 keep 0.900000 -0.100000 add idea a [draft, dead end]\n\
                 \x20 │  ├─ #3 discard 1.050000 +0.150000 add idea b\n\
                 \x20 │  └─ #4 discard 0.930000 +0.030000 add idea c\n\
                 * └─ #2 keep 0.950000 -0.050000 add idea b [draft]\n\
                 \x20    ├─ #5 discard 1.050000 +0.100000 add idea a\n\
                 *    └─ #6 keep 0.700000 -0.250000 add idea c [best]\n\
                 \x20       └─ #7 discard 1.100000 +0.400000 add idea a\n",
            ),
            (
                "a crash fixed and kept is a node; a crash not fixed is tried; a broadening",
                &[
                    (0, None, Improve, 1.0, Keep, None, ""),
                    (1, Some(0), Draft, 0.9, Crash, None, "fast kernel"),
                    (2, Some(0), Improve, 0.8, Keep, Some(1), "fix the kernel"),
                    (3, Some(2), Improve, 0.0, Crash, None, "bigger batch"),
                    (
                        4,
                        Some(2),
                        Improve,
                        0.85,
                        Discard,
                        Some(3),
                        "halve the batch",
                    ),
                    (5, Some(0), Broaden, 0.95, Keep, None, "new optimiser"),
                ],
                "tree search: 3 nodes, 2 branches from the baseline, 0 dead ends, 1 draft, 1 broadening (* marks the best path)\n\
                 * #0 keep 1.000000 baseline\n\
                 * ├─ #2 keep 0.800000 -0.200000 fix the kernel [fix of #1, best]\n\
                 \x20 │  └─ #4 discard 0.850000 +0.050000 bigger batch [fix of #3]\n\
                 \x20 └─ #5 keep 0.950000 -0.050000 new optimiser [broaden]\n",
            ),
        ];
        for (case, rows, expected) in cases {
            assert_eq!(text(rows), *expected, "{case}");
        }
    }

    #[test]
    fn many_children_not_kept_are_summed_up_with_the_closest() {
        let mut rows: Vec<Row> = vec![(0, None, Improve, 1.0, Keep, None, "")];
        for n in 1..=6 {
            let status = if n == 4 { Crash } else { Discard };
            rows.push((
                n,
                Some(0),
                Improve,
                1.0 + n as f64 / 100.0,
                status,
                None,
                "try",
            ));
        }
        assert_eq!(
            text(&rows),
            "tree search: 1 node, 0 branches from the baseline, 1 dead end, 0 drafts (* marks the best path)\n\
             * #0 keep 1.000000 baseline [dead end, best]\n\
             \x20 └─ 6 not kept: 5 discarded, 1 crashed; closest #1 discard 1.010000 +0.010000 try\n"
        );
    }

    #[test]
    fn a_large_tree_stays_bounded_and_keeps_the_best_path() {
        // 701 experiments: a chain of 100 nodes from the baseline (the best path), each node
        // with three discarded children and three kept side nodes that the chain then beats.
        let mut rows: Vec<Row> = vec![(0, None, Improve, 1.0, Keep, None, "")];
        let (mut n, mut node, mut value) = (0, 0, 1.0);
        for _ in 0..100 {
            for _ in 0..3 {
                n += 1;
                rows.push((n, Some(node), Improve, 2.0, Discard, None, "worse"));
            }
            for side in 1..=3 {
                n += 1;
                let metric = value - 0.0001 * f64::from(side);
                rows.push((n, Some(node), Improve, metric, Keep, None, "side"));
            }
            n += 1;
            value -= 0.001;
            rows.push((n, Some(node), Improve, value, Keep, None, "better"));
            node = n;
        }
        let history = history(&rows);
        let text = render(&history, &TreeFacts::of(&history).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("401 nodes")
                && lines[1] == "30 of the 401 nodes are drawn: the best path and the best others",
            "{text}"
        );
        // Each drawn node takes its line and one for its children not kept, plus the gap.
        assert!(
            lines.len() <= 3 + 2 * MAX_NODES,
            "{} lines:\n{text}",
            lines.len()
        );
        let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 120, "{widest} columns:\n{text}");
        // The baseline, the best and the end of the path are drawn; the middle of the path is
        // one line that counts what it leaves out.
        assert!(
            lines[2].starts_with("* #0 keep 1.000000 baseline"),
            "{text}"
        );
        assert!(
            text.contains(&format!("#{node} keep 0.900000 -0.001000 better [best]")),
            "{text}"
        );
        assert!(
            text.contains("91 nodes of the best path not drawn, #14 to #644, and 273 off it"),
            "{text}"
        );
        assert!(text.contains("3 not kept: 3 discarded; closest"), "{text}");
    }
}
