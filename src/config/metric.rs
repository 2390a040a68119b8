//! Metric specs: what number an experiment is judged on, which way is better, and the regexes
//! that read it and other values from the experiment's output (`crate::run::readings` reads them).

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Direction of improvement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Lower is better (loss, bits per byte, seconds).
    #[default]
    Minimize,
    /// Higher is better (accuracy, reward, throughput).
    Maximize,
}

impl Goal {
    /// How much better `candidate` is than `reference`: positive when it improves.
    pub fn improvement(self, candidate: f64, reference: f64) -> f64 {
        match self {
            Goal::Minimize => reference - candidate,
            Goal::Maximize => candidate - reference,
        }
    }

    /// "lower" or "higher", for prompts and summaries.
    pub fn better_word(self) -> &'static str {
        match self {
            Goal::Minimize => "lower",
            Goal::Maximize => "higher",
        }
    }
}

/// Unit of a memory reading in the experiment's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryUnit {
    /// Bytes.
    Bytes,
    /// Mebibytes (what autoresearch's `peak_vram_mb` prints).
    #[default]
    Mb,
    /// Gibibytes.
    Gb,
}

impl MemoryUnit {
    pub fn to_gb(self, value: f64) -> f64 {
        match self {
            MemoryUnit::Bytes => value / (1024.0 * 1024.0 * 1024.0),
            MemoryUnit::Mb => value / 1024.0,
            MemoryUnit::Gb => value,
        }
    }
}

/// A named value read from output lines by a regex with one capture group.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub regex: Regex,
}

impl Capture {
    /// Compiles `pattern`, which must have exactly one capture group.
    pub fn new(name: &str, pattern: &str) -> Result<Capture, String> {
        let regex = Regex::new(pattern).map_err(|err| {
            let detail = err.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            format!("regex `{pattern}` does not compile: {last}")
        })?;
        let groups = regex.captures_len() - 1;
        if groups != 1 {
            return Err(format!(
                "regex `{pattern}` has {groups} capture groups, it needs exactly one around the \
                 number, e.g. `^{name}:\\s*([0-9.]+)`; use `(?:...)` for groups that capture nothing"
            ));
        }
        Ok(Capture {
            name: name.to_string(),
            regex,
        })
    }

    /// The captured text when `line` matches.
    pub fn find<'l>(&self, line: &'l str) -> Option<&'l str> {
        self.regex
            .captures(line)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str())
    }
}

/// The resolved metric of a pipeline.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    /// The metric itself, e.g. `val_bpb`.
    pub primary: Capture,
    pub goal: Goal,
    /// Further values, in the order they were declared.
    pub extra: Vec<Capture>,
    /// Which extra value is peak memory, and its unit.
    pub memory: Option<(String, MemoryUnit)>,
}

impl MetricSpec {
    pub fn name(&self) -> &str {
        &self.primary.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvement_follows_the_goal() {
        assert_eq!(Goal::Minimize.improvement(0.9, 1.0), 1.0 - 0.9);
        assert!(Goal::Minimize.improvement(1.1, 1.0) < 0.0);
        assert!(Goal::Maximize.improvement(0.9, 1.0) < 0.0);
    }

    #[test]
    fn capture_needs_exactly_one_group() {
        let ok = Capture::new("val_bpb", r"^val_bpb:\s*([0-9.]+)").unwrap();
        assert_eq!(ok.find("val_bpb:   0.997900"), Some("0.997900"));
        assert_eq!(ok.find("x val_bpb: 1.0"), None);
        let none = Capture::new("val_bpb", r"^val_bpb:\s*[0-9.]+").unwrap_err();
        assert!(none.contains("has 0 capture groups"), "{none}");
        let two = Capture::new("val_bpb", r"^(val_bpb):\s*([0-9.]+)").unwrap_err();
        assert!(two.contains("has 2 capture groups"), "{two}");
        let bad = Capture::new("val_bpb", r"^val_bpb:\s*([0-9.]+").unwrap_err();
        assert!(bad.contains("does not compile"), "{bad}");
    }

    #[test]
    fn memory_units_convert_to_gb() {
        assert_eq!(MemoryUnit::Mb.to_gb(45060.2), 45060.2 / 1024.0);
        assert_eq!(MemoryUnit::Gb.to_gb(3.5), 3.5);
        assert_eq!(MemoryUnit::Bytes.to_gb(2.0 * 1024.0 * 1024.0 * 1024.0), 2.0);
    }
}
