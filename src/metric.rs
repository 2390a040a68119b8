//! Metric specs: what number an experiment is judged on, which way is better, and the regexes
//! that read it and other values from the experiment's output.

use std::collections::BTreeMap;

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

/// Reads the metric and extra values from output lines as they stream by; the last match of
/// each regex wins. Holds only the matched text, never the output.
pub struct Scanner<'a> {
    spec: &'a MetricSpec,
    primary: Option<String>,
    values: BTreeMap<String, String>,
    out_of_memory: bool,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    /// The metric: its value, an error when the captured text is not a number, or `None` when
    /// the regex never matched.
    pub metric: Option<Result<f64, String>>,
    /// Extra values that matched and parsed.
    pub values: BTreeMap<String, f64>,
    /// Whether an out-of-memory message appeared (CUDA, HIP, wgpu, Python's MemoryError).
    pub out_of_memory: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(spec: &'a MetricSpec) -> Self {
        Scanner {
            spec,
            primary: None,
            values: BTreeMap::new(),
            out_of_memory: false,
        }
    }

    /// Forgets every line seen (the command starts over).
    pub fn restart(&mut self) {
        *self = Scanner::new(self.spec);
    }

    pub fn line(&mut self, line: &str) {
        if let Some(found) = self.spec.primary.find(line) {
            self.primary = Some(found.to_string());
        }
        for capture in &self.spec.extra {
            if let Some(found) = capture.find(line) {
                self.values.insert(capture.name.clone(), found.to_string());
            }
        }
        if !self.out_of_memory && is_out_of_memory(line) {
            self.out_of_memory = true;
        }
    }

    pub fn readings(&self) -> Readings {
        let name = self.spec.name();
        Readings {
            metric: self.primary.as_ref().map(|text| {
                text.trim().parse::<f64>().map_err(|_| {
                    format!("metric `{name}` captured `{text}`, which is not a number")
                })
            }),
            values: self
                .values
                .iter()
                .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.clone(), v)))
                .collect(),
            out_of_memory: self.out_of_memory,
        }
    }

    /// Peak memory in GiB from the script's own output, when the pipeline names that value.
    pub fn memory_gb(&self, readings: &Readings) -> Option<f64> {
        let (name, unit) = self.spec.memory.as_ref()?;
        readings.values.get(name).map(|v| unit.to_gb(*v))
    }
}

fn is_out_of_memory(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("out of memory")
        || lower.contains("outofmemory")
        || lower.contains("memoryerror")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MetricSpec {
        MetricSpec {
            primary: Capture::new("val_bpb", r"^val_bpb:\s*(\S+)").unwrap(),
            goal: Goal::Minimize,
            extra: vec![Capture::new("peak_vram_mb", r"^peak_vram_mb:\s*([0-9.]+)").unwrap()],
            memory: Some(("peak_vram_mb".to_string(), MemoryUnit::Mb)),
        }
    }

    #[test]
    fn scanner_keeps_the_last_match_and_converts_memory() {
        let spec = spec();
        let mut scanner = Scanner::new(&spec);
        for line in [
            "val_bpb: 2.5",
            "step 10",
            "---",
            "val_bpb:          0.997900",
            "peak_vram_mb:     45060.2",
        ] {
            scanner.line(line);
        }
        let readings = scanner.readings();
        assert_eq!(readings.metric, Some(Ok(0.9979)));
        assert_eq!(readings.values["peak_vram_mb"], 45060.2);
        assert_eq!(scanner.memory_gb(&readings), Some(45060.2 / 1024.0));
        assert!(!readings.out_of_memory);
    }

    #[test]
    fn scanner_reports_nan_garbage_and_oom() {
        let spec = spec();
        let mut scanner = Scanner::new(&spec);
        scanner.line("val_bpb: nan");
        assert!(scanner.readings().metric.unwrap().unwrap().is_nan());
        scanner.line("val_bpb: 1.2.3");
        assert_eq!(
            scanner.readings().metric,
            Some(Err(
                "metric `val_bpb` captured `1.2.3`, which is not a number".to_string()
            ))
        );
        scanner.line("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB");
        assert!(scanner.readings().out_of_memory);
        let empty = Scanner::new(&spec);
        assert_eq!(empty.readings().metric, None);
    }

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
