//! Reading an experiment's metric and extra values from its output as the lines stream by, with
//! the regexes of the pipeline's metric spec (`config::metric`).

use std::collections::BTreeMap;

use crate::config::metric::MetricSpec;

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
    use crate::config::metric::{Capture, Goal, MemoryUnit};

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
}
