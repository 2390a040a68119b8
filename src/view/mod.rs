//! What people read, on the terminal and in files: the results table (`results`, in
//! autoresearch's format), progress lines (`progress`), the summary printed when a run stops
//! (`summary`), `arun status` (`status`), `arun report`'s page and plots (`report`) and
//! `arun best`'s files (`best`). Views read the run's journal; they never change a run.

pub mod best;
pub mod progress;
pub mod report;
pub mod results;
pub mod status;
pub mod summary;
