//! Progress on stderr: live lines (indicatif) when stderr is a terminal, one per command running
//! (a proposal, a build, a run on each worker), plain lines otherwise. stdout is left to data
//! (`[EXP]` lines and the summary).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::HumanDuration;

pub struct Progress {
    multi: Option<MultiProgress>,
    /// The coordinator's own line, for what it runs itself.
    main: Line,
}

/// One live line: what one command is doing. Cheap to clone and safe to send to the thread that
/// runs the command.
#[derive(Clone)]
pub struct Line {
    bar: Option<ProgressBar>,
    state: Arc<Mutex<LineState>>,
}

#[derive(Default)]
struct LineState {
    label: String,
    budget: Option<Duration>,
    last_output: String,
}

impl Progress {
    /// Live lines when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let live = std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_some_and(|t| t != "dumb");
        let multi =
            live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        let main = Line::new(multi.as_ref());
        Progress { multi, main }
    }

    /// A new line for a command that runs beside others; it goes when the last clone is dropped
    /// or `finish` is called.
    pub fn line(&self) -> Line {
        Line::new(self.multi.as_ref())
    }

    /// A new phase of the coordinator's own line, e.g. `nov22 #3 running`.
    pub fn phase(&mut self, label: String, budget: Option<Duration>) {
        self.main.phase(label, budget);
    }

    /// The coordinator's own line, to watch a command it runs itself (`exec::Watch`).
    pub fn main_line(&self) -> Line {
        self.main.clone()
    }

    /// A message of its own on stderr, above the live lines. Secrets are redacted; a stderr
    /// that is gone (the ssh session closed) is not an error.
    pub fn note(&self, message: &str) {
        note(self.multi.as_ref(), message);
    }

    /// Prints a line on stdout without tearing the live lines.
    pub fn data(&self, line: &str) {
        let line = crate::run::secrets::redact(line);
        let print = || {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        };
        match &self.multi {
            Some(multi) => multi.suspend(print),
            None => print(),
        }
    }

    pub fn clear(&self) {
        if let Some(bar) = &self.main.bar {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

fn note(multi: Option<&MultiProgress>, message: &str) {
    let message = crate::run::secrets::redact(message);
    let print = || {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{message}");
    };
    match multi {
        Some(multi) => multi.suspend(print),
        None => print(),
    }
}

impl Line {
    fn new(multi: Option<&MultiProgress>) -> Line {
        let bar = multi.map(|multi| {
            let bar = multi.add(ProgressBar::hidden());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {wide_msg}").expect("a valid template"),
            );
            bar
        });
        Line {
            bar,
            state: Arc::new(Mutex::new(LineState::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new phase, e.g. `nov22 #3 running`; `budget` is shown against the elapsed time. Without
    /// a terminal it is printed as `nov22 #3 running...`.
    pub fn phase(&self, label: String, budget: Option<Duration>) {
        {
            let mut state = self.state();
            state.label = label.clone();
            state.budget = budget;
            state.last_output.clear();
        }
        match &self.bar {
            Some(bar) => {
                bar.reset_elapsed();
                bar.set_message(label);
                bar.tick();
            }
            None => note(None, &format!("{label}...")),
        }
    }

    /// Called every poll while the command runs.
    pub fn tick(&self, elapsed: Duration) {
        let Some(bar) = &self.bar else { return };
        let state = self.state();
        let clock = match state.budget {
            Some(budget) => format!("{} / {}", clock(elapsed), clock(budget)),
            None => clock(elapsed),
        };
        let mut message = format!("{} {clock}", state.label);
        if !state.last_output.is_empty() {
            message.push_str(" | ");
            message.push_str(&state.last_output);
        }
        bar.set_message(message);
        bar.tick();
    }

    /// Waiting in a scheduler's queue: `nov22 #3 running: queued 1m05s (Resources)`.
    pub fn queued(&self, waited: Duration, reason: &str) {
        let Some(bar) = &self.bar else { return };
        let state = self.state();
        bar.set_message(format!(
            "{}: queued {} ({reason})",
            state.label,
            clock(waited)
        ));
        bar.tick();
    }

    /// The latest non-empty output line, shown on the live line.
    pub fn output(&self, line: &str) {
        if self.bar.is_some() {
            let clean = crate::text::strip_ansi(line);
            let clean = clean.trim();
            if !clean.is_empty() {
                self.state().last_output = crate::text::cut(clean, 200, "");
            }
        }
    }

    /// Removes the line from the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1m05s`, `12s`.
pub fn clock(duration: Duration) -> String {
    HumanDuration(Duration::from_secs(duration.as_secs())).to_string()
}

/// A command's output and ticks shown on its line.
impl crate::run::exec::Watch for Line {
    fn line(&mut self, line: &str) {
        self.output(line);
    }
    fn tick(&mut self, elapsed: Duration, _group: i32) {
        Line::tick(self, elapsed);
    }
    fn queued(&mut self, waited: Duration, reason: &str) {
        Line::queued(self, waited, reason);
    }
}
