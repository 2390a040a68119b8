//! Progress on stderr: a live line (indicatif) when stderr is a terminal, plain lines otherwise.
//! stdout is left to data (`[EXP]` lines and the summary).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::HumanDuration;

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    budget: Option<Duration>,
    last_line: String,
}

impl Progress {
    /// A live display when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let live = std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_some_and(|t| t != "dumb");
        Progress {
            bar: live.then(|| {
                let bar =
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {wide_msg}").expect("a valid template"),
                );
                bar
            }),
            label: String::new(),
            budget: None,
            last_line: String::new(),
        }
    }

    /// A new phase, e.g. `nov22 #3 running`; `budget` is shown against the elapsed time.
    pub fn phase(&mut self, label: String, budget: Option<Duration>) {
        self.label = label;
        self.budget = budget;
        self.last_line.clear();
        match &self.bar {
            Some(bar) => {
                bar.reset_elapsed();
                bar.set_message(self.label.clone());
            }
            None => self.note(&format!("{}...", self.label)),
        }
    }

    /// Called every poll while a command runs.
    pub fn tick(&mut self, elapsed: Duration) {
        let Some(bar) = &self.bar else { return };
        let clock = match self.budget {
            Some(budget) => format!("{} / {}", clock(elapsed), clock(budget)),
            None => clock(elapsed),
        };
        let mut message = format!("{} {clock}", self.label);
        if !self.last_line.is_empty() {
            message.push_str(" | ");
            message.push_str(&self.last_line);
        }
        bar.set_message(message);
        bar.tick();
    }

    /// The latest non-empty output line, shown on the live line.
    pub fn line(&mut self, line: &str) {
        if self.bar.is_some() {
            let clean = crate::exec::tail::strip_ansi(line);
            let clean = clean.trim();
            if !clean.is_empty() {
                self.last_line = cut(clean, 200);
            }
        }
    }

    /// A message of its own on stderr, above the live line. Secrets are redacted; a stderr
    /// that is gone (the ssh session closed) is not an error.
    pub fn note(&self, message: &str) {
        let message = crate::secrets::redact(message);
        let print = || {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{message}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Prints a line on stdout without tearing the live line.
    pub fn data(&self, line: &str) {
        let line = crate::secrets::redact(line);
        let print = || {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// `1m05s`, `12s`.
pub fn clock(duration: Duration) -> String {
    HumanDuration(Duration::from_secs(duration.as_secs())).to_string()
}

fn cut(text: &str, width: usize) -> String {
    match text.char_indices().nth(width) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}
