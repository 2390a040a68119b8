//! Greedy chain against tree search on simulated research landscapes.
//!
//! Each seed makes a landscape of 5 to 10 families of 6 ideas. A code is the set of ideas
//! applied to the baseline; its true value is a function of the set, in units of the noise σ
//! (higher is better; the metric is a loss, `10 - value` plus Gaussian noise of σ = 1):
//!
//! - most ideas are plain: 60% harmful, 30% about neutral, 10% good by 1-3σ; good ideas of the
//!   same family overlap (the second counts half, the third a quarter...);
//! - one or two *traps*, each the first idea of its own family: good alone (+4σ);
//! - one *enabler*, the first idea of another family (+2.5σ alone: the default rule keeps it
//!   about half the time), and three to five *followers* in its family, worth +4σ each once
//!   the enabler is applied.
//!
//! **Deceptive**: the followers are slightly harmful without the enabler (-0.5σ) and a trap
//! blocks the combination: with a trap applied, the enabler and each follower cost 2σ. Ideas
//! are only ever added, so a run that kept a trap can no longer reach the optimum: the enabler,
//! its followers and the good plain ideas, without the traps. **Smooth**: nothing blocks
//! anything and followers are worth +4σ on their own; the optimum is every good idea, reached
//! by improving one idea at a time.
//!
//! A run *reaches the optimum's basin* when its final best code holds the enabler and at least
//! one follower, and (deceptive) no trap: from there each remaining follower is a +4σ step.
//!
//! The proposer, given a node, applies an idea the node does not hold and that was not tried
//! on it yet (any idea it does not hold once all were tried); half of the time it keeps to the
//! families the node already holds (it refines its approach). A draft (`Draft`, `Broaden`) is
//! the first idea of a family no other draft used: a new approach. 8% of proposals crash, and
//! 40% of fix attempts. Everything else is arun's own code, driven as the session drives it:
//! `search::next` chooses the parent, `decide::reference` and `decide::judge` decide (running
//! again when asked), fix attempts follow crashes, with the default `[decision]` rules.
//!
//! Training seeds are 0..N, held-out seeds 1_000_000..1_000_000+N; the tree's defaults were
//! chosen on training seeds only, with `ARUN_BENCH_TUNE=1` (the grid comes from
//! `ARUN_BENCH_DRAFTS`, `ARUN_BENCH_PATIENCE`, `ARUN_BENCH_EXPLORATION`, comma-separated).
//! `ARUN_BENCH_TREE=drafts,patience,exploration` compares other settings than the defaults.
//!
//! Run with `cargo bench --bench tree` (`ARUN_BENCH_SEEDS` landscapes per set, default 500).

use std::time::Instant;

use arun::config::Goal;
use arun::config::resolve::{DecisionRules, SearchSpec};
use arun::run::decide::{self, Candidate, Measurement, Status, Verdict};
use arun::run::journal::Expansion;
use arun::run::journal::{Event, History, RunSettings};
use arun::run::search;

const PER_FAMILY: usize = 6;
const BUDGETS: [usize; 3] = [50, 100, 200];
/// How far below greedy (mean true gain, in σ) the tree may be on the smooth landscape: one
/// run-to-run σ, a difference a single measurement cannot show.
const SMOOTH_TOLERANCE: f64 = 1.0;
const HELD_OUT: u64 = 1_000_000;

const PLAIN_GOOD: f64 = 0.10;
const PLAIN_HARMFUL: f64 = 0.60;
const TRAP: f64 = 4.0;
const ENABLER: f64 = 2.5;
const FOLLOWER: f64 = 4.0;
const FOLLOWER_ALONE_DECEPTIVE: f64 = -0.5;
const BLOCKED: f64 = 2.0;
const FOCUS: f64 = 0.5;
const CRASH: f64 = 0.08;
const FIX_CRASH: f64 = 0.4;

fn main() {
    let seeds: u64 = env_or("ARUN_BENCH_SEEDS", 500);
    let (rules, mut tree_spec) = defaults();
    if let Ok(value) = std::env::var("ARUN_BENCH_TREE") {
        let fields: Vec<&str> = value.split(',').map(str::trim).collect();
        let [drafts, patience, exploration] = fields[..] else {
            panic!("ARUN_BENCH_TREE is drafts,patience,exploration, e.g. 3,3,0.3");
        };
        tree_spec = SearchSpec::Tree {
            drafts: drafts.parse().expect("drafts"),
            patience: patience.parse().expect("patience"),
            exploration: exploration.parse().expect("exploration"),
        };
    }
    if std::env::var_os("ARUN_BENCH_TUNE").is_some() {
        tune(&rules, seeds);
        return;
    }
    let started = Instant::now();
    let SearchSpec::Tree {
        drafts,
        patience,
        exploration,
    } = tree_spec
    else {
        unreachable!("resolved from `strategy = \"tree\"`")
    };
    let tree_name = format!("tree ({drafts}, {patience}, {exploration})");
    println!(
        "{seeds} landscapes per set, σ = 1; gain: the true improvement of the final best over \
         the baseline, in σ (median); basin: share of runs whose final best reached the \
         optimum's basin; tree (drafts, patience, exploration)"
    );
    for (set, first) in [("training", 0), ("held-out", HELD_OUT)] {
        println!();
        println!("{set} seeds {first}..{}", first + seeds);
        print!("| landscape | search |");
        for b in BUDGETS {
            print!(" gain @{b} | basin @{b} |");
        }
        println!(" runs per experiment |");
        println!("|---|---|{}---|", "---|---|".repeat(BUDGETS.len()));
        for deceptive in [true, false] {
            let kind = if deceptive { "deceptive" } else { "smooth" };
            let landscapes: Vec<Landscape> = (first..first + seeds)
                .map(|s| Landscape::new(s, deceptive))
                .collect();
            let greedy = run_all(&landscapes, SearchSpec::Greedy, &rules);
            let tree = run_all(&landscapes, tree_spec, &rules);
            for (name, results) in [("greedy", &greedy), (tree_name.as_str(), &tree)] {
                print!("| {kind} | {name} |");
                for i in 0..BUDGETS.len() {
                    let gains: Vec<f64> = results.iter().map(|r| r.at[i].gain).collect();
                    let basin = results.iter().filter(|r| r.at[i].basin).count();
                    print!(
                        " {:.1} | {:.0}% |",
                        median(gains),
                        100.0 * basin as f64 / results.len() as f64
                    );
                }
                let runs: usize = results.iter().map(|r| r.runs).sum();
                println!(
                    " {:.2} |",
                    runs as f64 / (results.len() * BUDGETS[BUDGETS.len() - 1]) as f64
                );
            }
            print!("| {kind} | tree - greedy, mean (95% CI) |");
            for i in 0..BUDGETS.len() {
                let diffs: Vec<f64> = tree
                    .iter()
                    .zip(&greedy)
                    .map(|(t, g)| t.at[i].gain - g.at[i].gain)
                    .collect();
                let (mean, half) = mean_ci(&diffs);
                print!(" {mean:+.2} ± {half:.2} | |");
            }
            println!(" |");
            let optimum = median(landscapes.iter().map(Landscape::optimum).collect());
            println!(
                "| {kind} | optimum |{} |",
                format!(" {optimum:.1} | 100% |").repeat(BUDGETS.len())
            );
        }
    }
    println!();
    println!("benchmark: {:.0} s", started.elapsed().as_secs_f64());
    println!();
    time_next(&rules, tree_spec);
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default decision rules and tree settings, resolved from a pipeline that sets nothing.
fn defaults() -> (DecisionRules, SearchSpec) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("template")).unwrap();
    std::fs::write(dir.path().join("template/train.py"), "").unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[target]\nrepo = \"repo\"\ntemplate = \"template\"\neditable = [\"train.py\"]\n\
         [experiment]\nrun = \"true\"\nbudget = \"10s\"\n\
         [metric]\nname = \"loss\"\nregex = '^loss:\\s*([0-9.]+)'\n\
         [proposer]\nkind = \"agent\"\n[proposer.agent]\ncommand = \"true\"\n\
         [search]\nstrategy = \"tree\"\n",
    )
    .unwrap();
    let pipeline = arun::config::load(&file).unwrap_or_else(|e| panic!("{e:?}"));
    (pipeline.decision, pipeline.search)
}

/// What an idea does; see the file's comment.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain(f64),
    Trap,
    Enabler,
    Follower,
}

struct Landscape {
    seed: u64,
    deceptive: bool,
    /// Idea `i` belongs to family `i / PER_FAMILY`; a family's first idea is its entry (what a
    /// draft of that family proposes).
    ideas: Vec<Kind>,
}

impl Landscape {
    fn new(seed: u64, deceptive: bool) -> Landscape {
        let mut rng = Rng::new(seed ^ 0x5EED_1A4D_5CA9_E000);
        let families = 5 + rng.below(6);
        let ideas = (0..families * PER_FAMILY)
            .map(|_| {
                let u = rng.uniform();
                Kind::Plain(if u < PLAIN_HARMFUL {
                    -(0.5 + (1.5 * rng.gauss()).abs())
                } else if u < 1.0 - PLAIN_GOOD {
                    0.3 * rng.gauss()
                } else {
                    1.0 + 2.0 * rng.uniform()
                })
            })
            .collect();
        let mut land = Landscape {
            seed,
            deceptive,
            ideas,
        };
        // The combination's family, whose entry is the enabler, then one family per trap,
        // whose entry is the trap.
        let mut order: Vec<usize> = (0..families).collect();
        rng.shuffle(&mut order);
        let entry = |family: usize| family * PER_FAMILY;
        land.ideas[entry(order[0])] = Kind::Enabler;
        let mut others: Vec<usize> = (1..PER_FAMILY).collect();
        rng.shuffle(&mut others);
        let followers = 3 + rng.below(3);
        for &i in &others[..followers] {
            land.ideas[entry(order[0]) + i] = Kind::Follower;
        }
        let traps = 1 + rng.below(2);
        for &family in &order[1..=traps] {
            land.ideas[entry(family)] = Kind::Trap;
        }
        land
    }

    fn families(&self) -> usize {
        self.ideas.len() / PER_FAMILY
    }

    /// The true value of a code (a set of ideas), in σ above the baseline.
    fn value(&self, code: u64) -> f64 {
        let applied = |i: usize| code & (1 << i) != 0;
        let mut total = 0.0;
        let (mut traps, mut enabler, mut followers) = (0, false, 0);
        for family in 0..self.families() {
            let mut good = Vec::new();
            for i in family * PER_FAMILY..(family + 1) * PER_FAMILY {
                if !applied(i) {
                    continue;
                }
                match self.ideas[i] {
                    Kind::Plain(e) if e > 0.0 => good.push(e),
                    Kind::Plain(e) => total += e,
                    Kind::Trap => traps += 1,
                    Kind::Enabler => enabler = true,
                    Kind::Follower => followers += 1,
                }
            }
            good.sort_by(|a, b| b.total_cmp(a));
            total += good
                .iter()
                .enumerate()
                .map(|(k, e)| e / f64::from(1 << k))
                .sum::<f64>();
        }
        total += TRAP * traps as f64;
        let combination = usize::from(enabler) + followers;
        if self.deceptive && traps > 0 {
            total - BLOCKED * combination as f64
        } else if enabler {
            total + ENABLER + FOLLOWER * followers as f64
        } else if self.deceptive {
            total + FOLLOWER_ALONE_DECEPTIVE * followers as f64
        } else {
            total + FOLLOWER * followers as f64
        }
    }

    /// The best value of any code: every good plain idea, and the combination (deceptive: the
    /// combination or the traps, whichever is worth more; it is always the combination).
    fn optimum(&self) -> f64 {
        let best = (0..self.ideas.len())
            .filter(|&i| match self.ideas[i] {
                Kind::Plain(e) => e > 0.0,
                Kind::Trap => !self.deceptive,
                Kind::Enabler | Kind::Follower => true,
            })
            .fold(0u64, |code, i| code | 1 << i);
        let traps = (0..self.ideas.len())
            .filter(|&i| match self.ideas[i] {
                Kind::Plain(e) => e > 0.0,
                Kind::Trap => true,
                Kind::Enabler | Kind::Follower => false,
            })
            .fold(0u64, |code, i| code | 1 << i);
        self.value(best).max(self.value(traps))
    }

    fn in_basin(&self, code: u64) -> bool {
        let has = |kind: Kind| {
            (0..self.ideas.len()).any(|i| self.ideas[i] == kind && code & (1 << i) != 0)
        };
        has(Kind::Enabler) && has(Kind::Follower) && !(self.deceptive && has(Kind::Trap))
    }
}

/// Where a run stood after a number of experiments.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    gain: f64,
    basin: bool,
}

struct Outcome {
    at: [Snapshot; BUDGETS.len()],
    /// Measurements made (runs of the trainer), repeats included, over the longest budget.
    runs: usize,
}

/// Every landscape under one search, on all cores.
fn run_all(landscapes: &[Landscape], spec: SearchSpec, rules: &DecisionRules) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = landscapes.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = landscapes
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|land| Simulation::new(land, spec, rules).run().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// One run of the loop on a landscape, as `session` drives it.
struct Simulation<'a> {
    land: &'a Landscape,
    rules: &'a DecisionRules,
    history: History,
    /// The idea each experiment applied (`None`: the baseline, or nothing left to apply).
    ideas: Vec<Option<usize>>,
    /// Each experiment's code.
    codes: Vec<u64>,
    rng: Rng,
    runs: usize,
}

impl<'a> Simulation<'a> {
    fn new(land: &'a Landscape, spec: SearchSpec, rules: &'a DecisionRules) -> Simulation<'a> {
        let history = History::replay(vec![Event::RunStarted {
            time: 0.0,
            tag: "bench".into(),
            branch: "autoresearch/bench".into(),
            start_commit: "start".into(),
            pipeline: "bench.toml".into(),
            read_only: Default::default(),
            settings: Some(RunSettings {
                budget_seconds: 300.0,
                hard_limit_seconds: 600.0,
                metric: "loss".into(),
                goal: Goal::Minimize,
                search: Some(spec),
            }),
            untracked: Vec::new(),
        }]);
        Simulation {
            land,
            rules,
            history,
            ideas: Vec::new(),
            codes: Vec::new(),
            rng: Rng::new(land.seed.wrapping_add(0xA5A5)),
            runs: 0,
        }
    }

    /// Runs the longest budget; returns the snapshots and the history.
    fn run(mut self) -> (Outcome, History) {
        let mut at = [Snapshot::default(); BUDGETS.len()];
        let mut runs = 0;
        for (i, &budget) in BUDGETS.iter().enumerate() {
            while self.history.recorded().count() < budget {
                self.experiment();
            }
            let best = self.history.best().expect("the baseline is kept");
            let code = self.codes[best.n as usize];
            at[i] = Snapshot {
                gain: self.land.value(code),
                basin: self.land.in_basin(code),
            };
            runs = self.runs;
        }
        (Outcome { at, runs }, self.history)
    }

    fn push(&mut self, event: Event) {
        self.history.push(event);
    }

    /// One experiment: `begin`, propose, commit, run and `decide` until decided, `record`.
    fn experiment(&mut self) {
        let n = self.history.next_number();
        let (parent, fix_of, attempt, expansion) = match self.history.recorded().last() {
            None => (None, None, 0, Expansion::Improve),
            Some(last)
                if last.status() == Some(Status::Crash)
                    && !last.is_baseline()
                    && last.fixable()
                    && last.attempt < self.rules.fix_attempts =>
            {
                (
                    last.parent,
                    Some(last.fix_of.unwrap_or(last.n)),
                    last.attempt + 1,
                    last.expansion,
                )
            }
            Some(_) => {
                let choice = search::next(&self.history.search(), &self.history)
                    .expect("the baseline is kept");
                (Some(choice.parent), None, 0, choice.expansion)
            }
        };
        self.push(Event::ExperimentStarted {
            time: n as f64,
            n,
            parent,
            base_commit: "base".into(),
            fix_of,
            attempt,
            expansion,
        });
        let idea = match (parent, fix_of) {
            (None, _) => None,
            (Some(_), Some(fixed)) => self.ideas[fixed as usize],
            (Some(p), None) => self.propose(p, expansion),
        };
        let code = parent.map_or(0, |p| self.codes[p as usize]) | idea.map_or(0, |i| 1 << i);
        self.ideas.push(idea);
        self.codes.push(code);
        self.push(Event::Committed {
            time: n as f64,
            n,
            commit: format!("c{n}"),
            lines_added: 3,
            lines_removed: 1,
        });
        let crash_chance = match (parent, fix_of) {
            (None, _) => 0.0,
            (_, None) => CRASH,
            (_, Some(_)) => FIX_CRASH,
        };
        let crashed = self.rng.uniform() < crash_chance;
        loop {
            let experiment = self.history.experiment(n).expect("started");
            let repeat = experiment.runs.len() as u32;
            let measurement = Measurement {
                failure: crashed.then(|| "RuntimeError".to_string()),
                metric: (!crashed).then(|| 10.0 - self.land.value(code) + self.rng.gauss()),
                values: Default::default(),
                memory_gb: None,
                seconds: 300.0,
                fixable: true,
            };
            self.runs += 1;
            self.push(Event::Measured {
                time: n as f64,
                n,
                repeat,
                measurement,
                worker: None,
            });
            let experiment = self.history.experiment(n).expect("started");
            let reference = self.history.reference(experiment, self.rules);
            let verdict = decide::judge(
                Candidate {
                    runs: &experiment.runs,
                    lines: experiment.lines,
                },
                reference,
                self.rules,
                Goal::Minimize,
            );
            if let Verdict::Decided(decision) = verdict {
                self.push(Event::Decided {
                    time: n as f64,
                    n,
                    decision,
                });
                break;
            }
        }
        self.push(Event::Recorded { time: n as f64, n });
    }

    /// The proposer: an idea the parent does not hold and was not tried on it; a draft's from a
    /// family no other draft used.
    fn propose(&mut self, parent: u64, expansion: Expansion) -> Option<usize> {
        let code = self.codes[parent as usize];
        let mut tried = 0u64;
        let mut drafted = 0u64;
        for e in self.history.recorded() {
            if e.parent != Some(parent) || e.fix_of.is_some() {
                continue;
            }
            if let Some(i) = self.ideas[e.n as usize] {
                tried |= 1 << i;
                if e.expansion != Expansion::Improve {
                    drafted |= 1 << (i / PER_FAMILY);
                }
            }
        }
        let open = |i: &usize| code & (1 << i) == 0;
        let untried: Vec<usize> = (0..self.land.ideas.len())
            .filter(open)
            .filter(|i| tried & (1 << i) == 0)
            .collect();
        let pool = if untried.is_empty() {
            (0..self.land.ideas.len()).filter(open).collect()
        } else {
            untried
        };
        let family = |i: &usize| i / PER_FAMILY;
        let pool: Vec<usize> = if expansion != Expansion::Improve {
            // A new approach: the first idea of a family no other draft used, else any idea
            // of such a family.
            let fresh: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|i| drafted & (1 << family(i)) == 0)
                .collect();
            let firsts: Vec<usize> = fresh
                .iter()
                .copied()
                .filter(|i| i % PER_FAMILY == 0)
                .collect();
            [firsts, fresh, pool]
                .into_iter()
                .find(|p| !p.is_empty())
                .unwrap_or_default()
        } else if self.rng.uniform() < FOCUS {
            // Refining the approaches the node holds: an idea of one of its families.
            let own: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|i| {
                    (0..self.land.ideas.len())
                        .any(|a| code & (1 << a) != 0 && family(&a) == family(i))
                })
                .collect();
            if own.is_empty() { pool } else { own }
        } else {
            pool
        };
        (!pool.is_empty()).then(|| pool[self.rng.below(pool.len())])
    }
}

/// Times `search::next` on the histories of 200-experiment runs (the first 20 held-out
/// deceptive landscapes), each call on the whole history as the session makes it.
fn time_next(rules: &DecisionRules, tree: SearchSpec) {
    for (name, spec) in [("greedy", SearchSpec::Greedy), ("tree", tree)] {
        let (mut total, mut slowest, mut calls, mut most_kept) = (0.0, 0.0f64, 0, 0);
        for seed in HELD_OUT..HELD_OUT + 20 {
            let land = Landscape::new(seed, true);
            let (_, history) = Simulation::new(&land, spec, rules).run();
            let repeat = 500;
            let started = Instant::now();
            for _ in 0..repeat {
                std::hint::black_box(search::next(&spec, std::hint::black_box(&history)));
            }
            let seconds = started.elapsed().as_secs_f64();
            total += seconds;
            calls += repeat;
            slowest = slowest.max(seconds / repeat as f64);
            most_kept = most_kept.max(history.kept().count());
        }
        println!(
            "search::next, {name}, on a history of {} experiments (20 runs, up to {most_kept} \
             kept): {:.1} µs per call on average, {:.1} µs in the slowest run",
            BUDGETS[BUDGETS.len() - 1],
            1e6 * total / calls as f64,
            1e6 * slowest
        );
    }
}

/// `ARUN_BENCH_TUNE=1`: the grid of tree settings on the training seeds only, and the one the
/// rule chooses: the largest mean advantage over greedy on the deceptive landscape (the three
/// budgets averaged) among settings within `SMOOTH_TOLERANCE` of greedy on the smooth one at
/// every budget.
fn tune(rules: &DecisionRules, seeds: u64) {
    let deceptive: Vec<Landscape> = (0..seeds).map(|s| Landscape::new(s, true)).collect();
    let smooth: Vec<Landscape> = (0..seeds).map(|s| Landscape::new(s, false)).collect();
    let mean_gains = |results: &[Outcome]| -> Vec<f64> {
        (0..BUDGETS.len())
            .map(|i| results.iter().map(|r| r.at[i].gain).sum::<f64>() / results.len() as f64)
            .collect()
    };
    let greedy_d = mean_gains(&run_all(&deceptive, SearchSpec::Greedy, rules));
    let greedy_s = mean_gains(&run_all(&smooth, SearchSpec::Greedy, rules));
    println!("training seeds 0..{seeds}: mean true gain of the tree minus greedy's, in σ");
    println!("greedy: deceptive {greedy_d:.2?}, smooth {greedy_s:.2?}");
    print!("| drafts | patience | exploration |");
    for b in BUDGETS {
        print!(" deceptive @{b} |");
    }
    for b in BUDGETS {
        print!(" smooth @{b} |");
    }
    println!(" deceptive mean | smooth worst |");
    println!("|---|---|---|{}---|---|", "---|".repeat(2 * BUDGETS.len()));
    let drafts_grid: Vec<u32> = env_list("ARUN_BENCH_DRAFTS", &[2, 3, 4, 5, 6, 7, 8]);
    let patience_grid: Vec<u32> = env_list("ARUN_BENCH_PATIENCE", &[3, 5, 8, 12, 20, 30, 50]);
    let exploration_grid: Vec<f64> = env_list("ARUN_BENCH_EXPLORATION", &[0.0, 0.3, 0.5, 1.0, 1.5]);
    let mut chosen: Option<(f64, String)> = None;
    for &drafts in &drafts_grid {
        for &patience in &patience_grid {
            for &exploration in &exploration_grid {
                let spec = SearchSpec::Tree {
                    drafts,
                    patience,
                    exploration,
                };
                let d = mean_gains(&run_all(&deceptive, spec, rules));
                let s = mean_gains(&run_all(&smooth, spec, rules));
                let d: Vec<f64> = d.iter().zip(&greedy_d).map(|(t, g)| t - g).collect();
                let s: Vec<f64> = s.iter().zip(&greedy_s).map(|(t, g)| t - g).collect();
                let row = format!("| {drafts} | {patience} | {exploration} |");
                print!("{row}");
                for x in d.iter().chain(&s) {
                    print!(" {x:+.2} |");
                }
                let mean = d.iter().sum::<f64>() / d.len() as f64;
                let worst = s.iter().copied().fold(f64::INFINITY, f64::min);
                println!(" {mean:+.2} | {worst:+.2} |");
                if worst >= -SMOOTH_TOLERANCE && chosen.as_ref().is_none_or(|(m, _)| mean > *m) {
                    chosen = Some((mean, row));
                }
            }
        }
    }
    match chosen {
        Some((_, row)) => println!("chosen (drafts, patience, exploration): {row}"),
        None => {
            println!("no setting is within {SMOOTH_TOLERANCE}σ of greedy on the smooth landscape")
        }
    }
}

fn env_list<T: std::str::FromStr + Copy>(name: &str, default: &[T]) -> Vec<T> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.split(',').map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The mean and the half-width of its 95% confidence interval.
fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// xorshift64* with Box-Muller: enough for a simulation, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
