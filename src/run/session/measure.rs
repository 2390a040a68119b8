//! Running a measured command (an experiment run or a held-out check) and watching it:
//! metric regexes on each line, the progress line, GPU memory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::run::decide::Measurement;
use crate::run::exec::{self, Environment, Executor, Spawn, Watch};
use crate::run::gpu::{GpuMonitor, Peak};
use crate::run::readings::Scanner;
use crate::view::progress::Line;

/// `3.log` for an experiment's first run, `3.r1.log`, `3.r2.log` for its repeats.
pub(super) fn log_file_name(n: u64, repeat: u32) -> String {
    match repeat {
        0 => format!("{n}.log"),
        r => format!("{n}.r{r}.log"),
    }
}

/// One measured command: an experiment run or a held-out check.
pub(super) struct Measure<'a> {
    pub(super) command: &'a str,
    pub(super) dir: &'a Path,
    pub(super) env: &'a Environment,
    pub(super) log: &'a Path,
    pub(super) limit: Duration,
    pub(super) grace: Duration,
    pub(super) metric: &'a crate::config::MetricSpec,
    /// The log as the user finds it, for messages.
    pub(super) log_name: &'a str,
    /// The worker's CPUs, when it has its own.
    pub(super) cpus: Option<&'a [u32]>,
    pub(super) executor: &'a Executor,
}

/// Runs a command to its end, reading its metric from the output as it streams; `None` when
/// the user interrupted it.
pub(super) fn measure(
    run: Measure,
    line: &Line,
    gpu: Option<&GpuMonitor>,
) -> std::io::Result<Option<Measurement>> {
    let mut scanner = Scanner::new(run.metric);
    let mut watch = RunWatch::new(&mut scanner, line, gpu);
    let finished = run.executor.run(
        &Spawn {
            command: run.command,
            dir: run.dir,
            env: run.env,
            stdin: None,
            log: run.log,
            limit: run.limit,
            grace: run.grace,
            cpus: run.cpus,
        },
        &mut watch,
    )?;
    let gpu_peak = watch.peak_gb();
    if finished.ending == exec::Ending::Interrupted {
        return Ok(None);
    }
    let readings = scanner.readings();
    let memory_gb = gpu_peak.or_else(|| scanner.memory_gb(&readings));
    let failure = match (&finished.ending, &readings.metric) {
        (ending, _) if !ending.success() => {
            let reason = ending.describe(run.limit);
            Some(if readings.out_of_memory {
                format!("out of memory ({reason})")
            } else {
                reason
            })
        }
        (_, None) => Some(format!(
            "metric `{}` never matched in the output; see {}",
            run.metric.name(),
            run.log_name
        )),
        (_, Some(Err(message))) => Some(message.clone()),
        // Said here: the journal cannot hold a NaN or an infinity (JSON writes them as null).
        (_, Some(Ok(value))) if !value.is_finite() => Some(format!("metric is {value}")),
        (_, Some(Ok(_))) => None,
    };
    Ok(Some(Measurement {
        failure,
        metric: readings.metric.and_then(Result::ok),
        values: readings.values,
        memory_gb,
        seconds: finished.elapsed.as_secs_f64(),
        fixable: true,
    }))
}

/// Watches an experiment (or `arun check`'s baseline): metric regexes on each line, progress,
/// GPU memory once a second.
pub struct RunWatch<'a, 's> {
    scanner: &'a mut Scanner<'s>,
    line: &'a Line,
    gpu: Option<&'a GpuMonitor>,
    peak: Peak,
    last_sample: Option<Instant>,
}

impl<'a, 's> RunWatch<'a, 's> {
    /// `gpu`: the monitor of this machine's GPUs, `None` where it cannot see the command's.
    pub fn new(scanner: &'a mut Scanner<'s>, line: &'a Line, gpu: Option<&'a GpuMonitor>) -> Self {
        RunWatch {
            scanner,
            line,
            gpu,
            peak: Peak::default(),
            last_sample: None,
        }
    }

    /// The command's peak GPU memory, when a GPU saw it.
    pub fn peak_gb(&self) -> Option<f64> {
        self.peak.gb()
    }
}

impl Watch for RunWatch<'_, '_> {
    fn line(&mut self, line: &str) {
        self.scanner.line(line);
        self.line.output(line);
    }

    fn tick(&mut self, elapsed: Duration, group: i32) {
        self.line.tick(elapsed);
        if let Some(gpu) = self.gpu
            && self
                .last_sample
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.peak.observe(gpu.group_memory(group));
            self.last_sample = Some(Instant::now());
        }
    }

    fn queued(&mut self, waited: Duration, reason: &str) {
        self.line.queued(waited, reason);
    }

    fn restart(&mut self) {
        self.scanner.restart();
        self.peak = Peak::default();
    }
}
