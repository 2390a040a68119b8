//! The exit codes of `arun`, one constant each, documented in docs/running.md.

/// Everything went as asked.
pub const SUCCESS: i32 = 0;
/// The run failed for a reason other than those below (git, I/O, a proposer that cannot start).
pub const FAILURE: i32 = 1;
/// The command line was wrong (clap's own code).
pub const USAGE: i32 = 2;
/// A pipeline file is invalid (`arun validate` found problems, or the run refused to start).
pub const INVALID_PIPELINE: i32 = 3;
/// A preflight check failed; its message says what to do.
pub const PREFLIGHT_FAILED: i32 = 4;
/// The run was stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;
