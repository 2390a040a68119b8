//! The values a training program prints, found without knowing its format: `name: number`,
//! `name = number`, `name number` (nanoGPT's `val loss 1.4697`) and JSON or Python-dict fields
//! (`"eval_loss": 0.32`); which of them is likely the target metric and which peak memory,
//! guessed from their names; and the regex that reads a value back, checked against the same
//! output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use crate::config::{Capture, Goal, MemoryUnit};
use crate::run::exec::tail::LogTail;

/// How a name and its number are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Separator {
    Colon,
    Equals,
    Space,
}

/// One `name: number` found on a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The name as written, e.g. `val loss`, `val_bpb`, `eval_loss` (quotes removed).
    pub name: String,
    /// The quote around a JSON or dict key.
    pub quote: Option<char>,
    pub separator: Separator,
    /// The number as written.
    pub text: String,
    pub value: f64,
    /// Letters right after the number: `ms`, `s`, `%`, `M`, `MiB`.
    pub unit: String,
    /// Only whitespace comes before the name.
    pub line_start: bool,
    /// The name starts the line or follows punctuation (`step 3: loss 2.1`, `| loss: 2.1`), not
    /// another word (`train loss 2.1`).
    pub after_punctuation: bool,
}

static PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?P<q1>["']?)(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[ ./-][A-Za-z_][A-Za-z0-9_]*){0,3})(?P<q2>["']?)(?P<sep>\s*[:=]\s*|\s+)(?P<num>[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)(?P<unit>[A-Za-z%]*)"#,
    )
    .expect("a valid regex")
});

/// Words that end prose rather than name a value (`leading to 784`, `2 heads of 64`).
const STOP_WORDS: [&str; 16] = [
    "a", "an", "and", "at", "be", "by", "for", "from", "in", "is", "of", "on", "per", "the", "to",
    "with",
];

/// The values on one line, in order.
pub fn scan_line(line: &str) -> Vec<Found> {
    let mut found = Vec::new();
    for caps in PAIR.captures_iter(line) {
        let whole = caps.get(0).expect("the whole match");
        let (q1, q2) = (&caps["q1"], &caps["q2"]);
        if q1 != q2 {
            continue;
        }
        // A name that starts in the middle of a word (`x86 64`) or a number (`28x28`).
        let before = &line[..whole.start()];
        if before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            continue;
        }
        let after = &line[whole.end()..];
        let mut rest = after.chars();
        match (rest.next(), rest.next()) {
            // `8,192` and `1.2.3` are not the numbers they start with.
            (Some(',' | '.'), Some(d)) if d.is_ascii_digit() => continue,
            (Some(c), _) if c.is_alphanumeric() || c == '_' => continue,
            _ => {}
        }
        let separator = match caps["sep"].trim() {
            ":" => Separator::Colon,
            "=" => Separator::Equals,
            _ => Separator::Space,
        };
        let Some((skipped, name)) = clean_name(&caps["name"]) else {
            continue;
        };
        let text = caps["num"].to_string();
        let Ok(value) = text.parse::<f64>() else {
            continue;
        };
        let name_start = whole.start() + q1.len() + skipped;
        let prefix = &line[..name_start - q1.len()];
        let trimmed = prefix.trim_end();
        found.push(Found {
            name,
            quote: q1.chars().next(),
            separator,
            text,
            value,
            unit: caps["unit"].to_string(),
            line_start: trimmed.is_empty(),
            after_punctuation: trimmed.is_empty()
                || trimmed
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_alphanumeric() && c != '_'),
        });
    }
    found
}

/// A name without the prose around it, and how many bytes were cut from its start: leading
/// stop words go (`of the validation split` is `validation split`), a multi-word name whose last
/// word is an identifier is that identifier (`found vocab_size`), and a name that ends in a stop
/// word is prose, not a name.
fn clean_name(raw: &str) -> Option<(usize, String)> {
    let words: Vec<&str> = raw.split(' ').collect();
    let last = *words.last()?;
    if STOP_WORDS.contains(&last.to_ascii_lowercase().as_str()) {
        return None;
    }
    let mut first = 0;
    if words.len() > 1 && last.contains(|c: char| c == '_' || c.is_ascii_digit()) {
        first = words.len() - 1;
    }
    while first < words.len() - 1
        && STOP_WORDS.contains(&words[first].to_ascii_lowercase().as_str())
    {
        first += 1;
    }
    let skipped: usize = words[..first].iter().map(|w| w.len() + 1).sum();
    let name = words[first..].join(" ");
    (name.len() >= 2).then_some((skipped, name))
}

/// The name as a results column and TOML key: `val loss` is `val_loss`, `tok/sec` `tok_sec`;
/// a single identifier keeps its case (`num_params_M`).
pub fn key_of(name: &str) -> String {
    let single = !name.contains([' ', '/', '.', '-']);
    let key: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if single { key } else { key.to_lowercase() }
}

/// Everything known about one name after reading the whole output.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The TOML key and results column, e.g. `val_loss`.
    pub key: String,
    /// The name as printed, e.g. `val loss`.
    pub name: String,
    pub quote: Option<char>,
    pub separator: Separator,
    /// The last value and how it was written.
    pub last: f64,
    pub last_text: String,
    pub unit: String,
    pub count: usize,
    /// 0-based index of the line of the last value, for ties (later wins).
    pub last_line: usize,
    pub always_line_start: bool,
    pub always_after_punctuation: bool,
    /// A value was negative or had an exponent, so `[0-9.]+` would not read it.
    pub signed_or_exponent: bool,
}

/// All the values of an output, by key, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Values {
    pub seen: Vec<Seen>,
    pub lines: usize,
}

impl Values {
    pub fn add_line(&mut self, line: &str) {
        let index = self.lines;
        self.lines += 1;
        for found in scan_line(line) {
            self.add(found, index);
        }
    }

    fn add(&mut self, found: Found, line: usize) {
        let key = key_of(&found.name);
        let signed = found.text.starts_with(['-', '+']) || found.text.contains(['e', 'E']);
        match self.seen.iter_mut().find(|s| s.name == found.name) {
            Some(seen) => {
                seen.last = found.value;
                seen.last_text = found.text;
                seen.unit = found.unit;
                seen.count += 1;
                seen.last_line = line;
                seen.always_line_start &= found.line_start;
                seen.always_after_punctuation &= found.after_punctuation;
                seen.signed_or_exponent |= signed;
            }
            None => {
                // Two names that make the same key (`val loss` and `val_loss`) stay apart.
                let taken = |k: &str| self.seen.iter().any(|s| s.key == k);
                let key = match taken(&key) {
                    false => key,
                    true => (2..)
                        .map(|n| format!("{key}_{n}"))
                        .find(|k| !taken(k))
                        .expect("a free key"),
                };
                self.seen.push(Seen {
                    key,
                    name: found.name,
                    quote: found.quote,
                    separator: found.separator,
                    last: found.value,
                    last_text: found.text,
                    unit: found.unit,
                    count: 1,
                    last_line: line,
                    always_line_start: found.line_start,
                    always_after_punctuation: found.after_punctuation,
                    signed_or_exponent: signed,
                });
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Seen> {
        self.seen.iter().find(|s| s.key == key)
    }

    /// The value a user named: its key or its name as printed, in any case.
    pub fn find(&self, wanted: &str) -> Option<&Seen> {
        self.seen.iter().find(|s| {
            s.key.eq_ignore_ascii_case(wanted)
                || s.name.eq_ignore_ascii_case(wanted)
                || s.key.eq_ignore_ascii_case(&key_of(wanted))
        })
    }
}

/// Reads the values of a log file, line by line (both `\n` and `\r` end a line, as in a run).
pub fn read_log(path: &Path) -> std::io::Result<Values> {
    let mut values = Values::default();
    let mut tail = LogTail::open(path)?;
    tail.poll(&mut |line| values.add_line(line))?;
    tail.finish(&mut |line| values.add_line(line));
    Ok(values)
}

/// What a name says a value is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricKind {
    /// How strongly the name suggests a target metric.
    pub weight: f64,
    pub goal: Goal,
    /// In words, for the comment: "bits per byte", "an accuracy".
    pub what: &'static str,
    /// The split, when the name says: "validation", "test", "training".
    pub split: Option<&'static str>,
}

/// Words of a key, lowercase: `val_bpb` is `val`, `bpb`; `numParams` stays one word.
fn words(key: &str) -> Vec<String> {
    key.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether the key names something that could be the target metric, and which way is better.
pub fn metric_kind(key: &str) -> Option<MetricKind> {
    let words = words(key);
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    // Bounds and settings that carry a metric's word: `entropy_floor_bpb`, `min_lr`, `loss_scale`.
    if has(&[
        "floor", "lr", "learning", "scale", "weight", "weights", "coef", "ema",
    ]) {
        return None;
    }
    let (weight, goal, what) = if has(&["bpb", "bpc", "bpd"]) {
        (6.0, Goal::Minimize, "bits per byte")
    } else if has(&["perplexity", "ppl"]) {
        (5.0, Goal::Minimize, "a perplexity")
    } else if has(&["loss", "nll", "xent"]) {
        (5.0, Goal::Minimize, "a loss")
    } else if has(&["accuracy", "acc", "top1", "top5"]) {
        (5.0, Goal::Maximize, "an accuracy")
    } else if has(&[
        "rmse", "mse", "mae", "mape", "error", "err", "wer", "cer", "fid",
    ]) {
        (5.0, Goal::Minimize, "an error")
    } else if has(&[
        "f1",
        "auc",
        "auroc",
        "map",
        "ndcg",
        "mrr",
        "bleu",
        "rouge",
        "iou",
        "miou",
        "dice",
        "r2",
        "precision",
        "recall",
        "psnr",
        "ssim",
    ]) {
        (5.0, Goal::Maximize, "a score")
    } else if has(&["score"]) {
        (4.0, Goal::Maximize, "a score")
    } else if has(&["reward", "return"]) {
        (4.0, Goal::Maximize, "a reward")
    } else {
        return None;
    };
    let (bonus, split) = if has(&["val", "valid", "validation", "eval", "dev", "heldout"]) {
        (3.0, Some("validation"))
    } else if has(&["test"]) {
        (2.0, Some("test"))
    } else if has(&["train", "training"]) {
        (-3.0, Some("training"))
    } else {
        (0.0, None)
    };
    Some(MetricKind {
        weight: weight + bonus,
        goal,
        what,
        split,
    })
}

/// The values that could be the target metric, most likely first: the name's kind and split,
/// a value printed once or twice (a final report) over one printed at every step, then the value
/// printed last.
pub fn ranked_metrics(values: &Values) -> Vec<(&Seen, MetricKind)> {
    let mut ranked: Vec<(&Seen, MetricKind)> = values
        .seen
        .iter()
        .filter_map(|seen| metric_kind(&seen.key).map(|kind| (seen, kind)))
        .collect();
    let score =
        |seen: &Seen, kind: &MetricKind| kind.weight + if seen.count <= 2 { 1.0 } else { 0.0 };
    ranked.sort_by(|(a, ka), (b, kb)| {
        score(b, kb)
            .total_cmp(&score(a, ka))
            .then(b.last_line.cmp(&a.last_line))
    });
    ranked
}

/// The value that looks like peak memory, with its unit and why that unit.
pub fn memory(values: &Values) -> Option<(&Seen, MemoryUnit, String)> {
    let candidates = values.seen.iter().filter(|seen| {
        let words = words(&seen.key);
        words.iter().any(|w| {
            matches!(
                w.as_str(),
                "mem" | "memory" | "vram" | "rss" | "maxrss" | "allocated"
            )
        })
    });
    let peak = |seen: &Seen| {
        words(&seen.key)
            .iter()
            .any(|w| matches!(w.as_str(), "peak" | "max" | "maxrss"))
    };
    let best = candidates.max_by_key(|seen| (peak(seen), seen.last_line))?;
    let words = words(&best.key);
    let unit_word = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let printed = best.unit.to_ascii_lowercase();
    let (unit, why) = if unit_word(&["mb", "mib"]) {
        (MemoryUnit::Mb, "its name says MiB".to_string())
    } else if unit_word(&["gb", "gib"]) {
        (MemoryUnit::Gb, "its name says GiB".to_string())
    } else if unit_word(&["bytes", "b"]) {
        (MemoryUnit::Bytes, "its name says bytes".to_string())
    } else if matches!(printed.as_str(), "mb" | "mib" | "m") {
        (
            MemoryUnit::Mb,
            format!("printed as `{}{}`", best.last_text, best.unit),
        )
    } else if matches!(printed.as_str(), "gb" | "gib" | "g") {
        (
            MemoryUnit::Gb,
            format!("printed as `{}{}`", best.last_text, best.unit),
        )
    } else if best.last > 1e7 {
        (MemoryUnit::Bytes, "a guess from its size".to_string())
    } else if best.last > 256.0 {
        (MemoryUnit::Mb, "a guess from its size".to_string())
    } else {
        (MemoryUnit::Gb, "a guess from its size".to_string())
    };
    Some((best, unit, why))
}

/// Whether a value is a summary figure worth recording beside the metric (times, sizes,
/// throughput, other metrics), as opposed to settings echoed at start-up.
pub fn summary_like(seen: &Seen) -> bool {
    if metric_kind(&seen.key).is_some() {
        return true;
    }
    words(&seen.key).iter().any(|w| {
        matches!(
            w.as_str(),
            "seconds" | "time" | "secs" | "mfu" | "params" | "tokens" | "steps" | "throughput"
        )
    })
}

/// Whether a value is a setting echoed at start-up (`Time budget: 300s`, `Gradient
/// accumulation steps: 2`) rather than a result, though its name has a result's word.
pub fn setting_like(seen: &Seen) -> bool {
    words(&seen.key).iter().any(|w| {
        matches!(
            w.as_str(),
            "budget" | "accumulation" | "accum" | "warmup" | "max" | "config" | "estimated"
        )
    })
}

/// The regexes that could read `seen`, most specific first; each has one capture group.
pub fn regex_candidates(seen: &Seen) -> Vec<String> {
    let number = if seen.signed_or_exponent {
        r"([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)"
    } else {
        r"([0-9.]+)"
    };
    let name = regex::escape(&seen.name);
    let (key, separator) = match seen.quote {
        Some(q) => (format!("{q}{name}{q}"), r"\s*:\s*".to_string()),
        None => (
            name,
            match seen.separator {
                Separator::Colon => r":\s*".to_string(),
                Separator::Equals => r"\s*=\s*".to_string(),
                Separator::Space => r"\s+".to_string(),
            },
        ),
    };
    let boundary = if seen.quote.is_some() { "" } else { r"\b" };
    let mut candidates = Vec::new();
    if seen.always_line_start {
        candidates.push(format!("^{key}{separator}{number}"));
        candidates.push(format!(r"^\s*{key}{separator}{number}"));
    }
    candidates.push(format!("{boundary}{key}{separator}{number}"));
    if seen.always_after_punctuation {
        candidates.push(format!(r"(?:^|[^\w\s])\s*{key}{separator}{number}"));
    }
    candidates
}

/// Checks regexes against an output: a regex holds when, on every line, it captures exactly
/// what the scan found for its value (the first on the line, as a run's metric scan takes it),
/// and nothing on lines where the value is not. Reads the log once for all of them.
pub struct Verifier {
    checks: Vec<(String, Capture, bool)>,
}

impl Verifier {
    /// `wanted` pairs a name as printed with a candidate regex.
    pub fn new(wanted: &[(String, String)]) -> Verifier {
        Verifier {
            checks: wanted
                .iter()
                .filter_map(|(name, pattern)| {
                    Capture::new(name, pattern)
                        .ok()
                        .map(|capture| (name.clone(), capture, true))
                })
                .collect(),
        }
    }

    pub fn line(&mut self, line: &str) {
        let found = scan_line(line);
        for (name, capture, holds) in &mut self.checks {
            if !*holds {
                continue;
            }
            let expected = found
                .iter()
                .find(|f| f.name == *name)
                .map(|f| f.text.as_str());
            if capture.find(line) != expected {
                *holds = false;
            }
        }
    }

    /// Whether `pattern` held for `name` on every line.
    pub fn holds(&self, name: &str, pattern: &str) -> bool {
        self.checks
            .iter()
            .any(|(n, capture, holds)| n == name && capture.regex.as_str() == pattern && *holds)
    }

    /// Runs the checks over a log file.
    pub fn read_log(mut self, path: &Path) -> std::io::Result<Verifier> {
        let mut tail = LogTail::open(path)?;
        tail.poll(&mut |line| self.line(line))?;
        tail.finish(&mut |line| self.line(line));
        Ok(self)
    }
}

/// The first candidate regex of `seen` that reads exactly its values in the log, or the most
/// general one and `false` when none does.
pub fn checked_regexes(
    log: &Path,
    wanted: &[&Seen],
) -> std::io::Result<BTreeMap<String, (String, bool)>> {
    let pairs: Vec<(String, String)> = wanted
        .iter()
        .flat_map(|seen| {
            regex_candidates(seen)
                .into_iter()
                .map(|pattern| (seen.name.clone(), pattern))
        })
        .collect();
    let verifier = Verifier::new(&pairs).read_log(log)?;
    let mut chosen = BTreeMap::new();
    for seen in wanted {
        let candidates = regex_candidates(seen);
        let pick = candidates
            .iter()
            .find(|pattern| verifier.holds(&seen.name, pattern))
            .map(|pattern| (pattern.clone(), true))
            .unwrap_or_else(|| {
                let general = candidates
                    .iter()
                    .find(|p| !p.starts_with('^'))
                    .or(candidates.first())
                    .cloned()
                    .unwrap_or_default();
                (general, false)
            });
        chosen.insert(seen.key.clone(), pick);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, String)> {
        scan_line(line)
            .into_iter()
            .map(|f| (f.name, f.text))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn lines_of_real_trainers_give_their_values() {
        let table: [(&str, &[(&str, &str)]); 12] = [
            ("val_bpb:          0.997900", &[("val_bpb", "0.997900")]),
            (
                "step 00953 (100.0%) | loss: 3.012345 | lrm: 0.00 | dt: 312ms | tok/sec: 1,680,000 | mfu: 39.8% | epoch: 1 | remaining: 0s    ",
                &[
                    ("step", "00953"),
                    ("loss", "3.012345"),
                    ("lrm", "0.00"),
                    ("dt", "312"),
                    ("mfu", "39.8"),
                    ("epoch", "1"),
                    ("remaining", "0"),
                ],
            ),
            (
                "step 250: train loss 1.9823, val loss 2.0651",
                &[
                    ("step", "250"),
                    ("train loss", "1.9823"),
                    ("val loss", "2.0651"),
                ],
            ),
            (
                "iter 10: loss 3.1415, time 1234.56ms, mfu -100.00%",
                &[
                    ("iter", "10"),
                    ("loss", "3.1415"),
                    ("time", "1234.56"),
                    ("mfu", "-100.00"),
                ],
            ),
            (
                "Iteration 3, loss = 0.12345678",
                &[("Iteration", "3"), ("loss", "0.12345678")],
            ),
            (
                "Test set score: 0.970000",
                &[("Test set score", "0.970000")],
            ),
            (
                r#"{"epoch": 2, "eval_loss": 0.3125, "eval_accuracy": 0.91}"#,
                &[
                    ("epoch", "2"),
                    ("eval_loss", "0.3125"),
                    ("eval_accuracy", "0.91"),
                ],
            ),
            (
                "{'loss': 0.5, 'learning_rate': 5e-05}",
                &[("loss", "0.5"), ("learning_rate", "5e-05")],
            ),
            ("tokens per iteration will be: 16,384", &[]),
            (
                "found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)",
                &[("vocab_size", "65")],
            ),
            (
                "entropy floor of the validation split: 0.883098 bits per byte",
                &[("validation split", "0.883098")],
            ),
            ("to make 28x28 pixels, leading to 784", &[]),
        ];
        for (line, expected) in table {
            assert_eq!(names(line), pairs(expected), "{line}");
        }
    }

    fn read(lines: &[&str]) -> Values {
        let mut values = Values::default();
        for line in lines {
            values.add_line(line);
        }
        values
    }

    #[test]
    fn the_likely_metric_is_ranked_first_with_its_direction() {
        let table: [(&[&str], &str, Goal); 5] = [
            (
                &[
                    "step 00001 (1.0%) | loss: 9.0 | dt: 300ms",
                    "step 00002 (2.0%) | loss: 8.0 | dt: 300ms",
                    "---",
                    "val_bpb:          0.997900",
                    "peak_vram_mb:     45060.2",
                ],
                "val_bpb",
                Goal::Minimize,
            ),
            (
                &[
                    "step 0: train loss 4.2874, val loss 4.2823",
                    "iter 0: loss 4.2654, time 29617.33ms, mfu -100.00%",
                    "iter 10: loss 3.2, time 30.1ms, mfu 5.00%",
                    "step 250: train loss 1.9, val loss 2.0",
                    "iter 250: loss 1.9, time 30.1ms, mfu 5.00%",
                ],
                "val_loss",
                Goal::Minimize,
            ),
            (
                &[
                    "Iteration 1, loss = 0.32",
                    "Iteration 2, loss = 0.15",
                    "Training set score: 0.986800",
                    "Test set score: 0.970000",
                ],
                "test_set_score",
                Goal::Maximize,
            ),
            (
                &[
                    r#"{"loss": 0.7, "learning_rate": 5e-05, "epoch": 1.0}"#,
                    r#"{"eval_loss": 0.4, "eval_accuracy": 0.88, "epoch": 1.0}"#,
                ],
                "eval_loss",
                Goal::Minimize,
            ),
            (
                &["entropy_floor_bpb: 0.88", "val_bpb: 1.35", "min_lr: 0.001"],
                "val_bpb",
                Goal::Minimize,
            ),
        ];
        for (lines, key, goal) in table {
            let values = read(lines);
            let ranked = ranked_metrics(&values);
            assert_eq!(ranked[0].0.key, key, "{lines:?}");
            assert_eq!(ranked[0].1.goal, goal, "{lines:?}");
        }
    }

    #[test]
    fn memory_is_found_with_its_unit() {
        let values = read(&["peak_vram_mb: 45060.2", "mem 3.2GB"]);
        let (seen, unit, _) = memory(&values).unwrap();
        assert_eq!((seen.key.as_str(), unit), ("peak_vram_mb", MemoryUnit::Mb));
        let values = read(&["max memory allocated: 2.5 GiB"]);
        let (_, unit, why) = memory(&values).unwrap();
        assert_eq!(
            (unit, why.as_str()),
            (MemoryUnit::Gb, "a guess from its size")
        );
        let values = read(&["gpu_mem 3.2G"]);
        assert_eq!(memory(&values).unwrap().1, MemoryUnit::Gb);
        let values = read(&["maxrss: 123456789"]);
        assert_eq!(memory(&values).unwrap().1, MemoryUnit::Bytes);
    }

    #[test]
    fn the_chosen_regex_reads_exactly_the_values_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        std::fs::write(
            &log,
            "step 0: train loss 4.2874, val loss 4.2823\n\
             iter 0: loss 4.2654, time 29617.33ms, mfu -100.00%\n\
             step 250: train loss 1.9823, val loss 2.0651\n\
             iter 250: loss 1.9, time 30.1ms, mfu 5.00%\n\
             \rstep 00001 | x\n---\nval_bpb:          0.997900\n",
        )
        .unwrap();
        let values = read_log(&log).unwrap();
        let wanted: Vec<&Seen> = ["loss", "val_loss", "val_bpb", "mfu"]
            .iter()
            .map(|k| values.get(k).unwrap())
            .collect();
        let chosen = checked_regexes(&log, &wanted).unwrap();
        // `\bloss\s+` would also read `train loss 1.9823`: only the form after punctuation holds.
        assert_eq!(
            chosen["loss"],
            (r"(?:^|[^\w\s])\s*loss\s+([0-9.]+)".to_string(), true)
        );
        assert_eq!(
            chosen["val_loss"],
            (r"\bval loss\s+([0-9.]+)".to_string(), true)
        );
        assert_eq!(
            chosen["val_bpb"],
            (r"^val_bpb:\s*([0-9.]+)".to_string(), true)
        );
        assert_eq!(
            chosen["mfu"],
            (
                r"\bmfu\s+([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)".to_string(),
                true
            )
        );
    }

    #[test]
    fn settings_echoed_at_start_are_not_results() {
        let values = read(&[
            "Time budget: 300s",
            "Gradient accumulation steps: 2",
            "training_seconds: 300.1",
            "num_steps: 953",
        ]);
        let extras: Vec<&str> = values
            .seen
            .iter()
            .filter(|s| summary_like(s) && !setting_like(s))
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(extras, ["training_seconds", "num_steps"]);
    }

    #[test]
    fn keys_are_columns() {
        assert_eq!(key_of("val loss"), "val_loss");
        assert_eq!(key_of("Test set score"), "test_set_score");
        assert_eq!(key_of("num_params_M"), "num_params_M");
        assert_eq!(key_of("tok/sec"), "tok_sec");
    }
}
