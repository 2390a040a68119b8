//! `arun report` and `arun status` on large results tables: wall time, peak memory and page size
//! for tables of 1,000 to 50,000 rows, each run of the real binary as a user runs it.
//!
//! The tables are made here with autoresearch's five columns and a plausible mix (a keep about
//! one row in seven, a crash one in forty, descriptions of 40 to 120 characters).
//!
//! Run with `cargo bench --bench report` (sizes: `ARUN_BENCH_ROWS=1000,50000`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let sizes: Vec<usize> = std::env::var("ARUN_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 50_000]);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:>8}  {:>10} {:>10} {:>10}  {:>10} {:>10}",
        "rows", "report", "peak MB", "page MB", "status", "peak MB"
    );
    for rows in sizes {
        let table = dir.path().join(format!("results-{rows}.tsv"));
        std::fs::write(&table, make_table(rows)).unwrap();
        let page = dir.path().join(format!("results-{rows}.html"));
        let table_arg = table.to_str().unwrap();
        let (report_time, report_peak) = run(
            &["report", table_arg, "-o", page.to_str().unwrap()],
            dir.path(),
        );
        let page_mb = std::fs::metadata(&page).map_or(0, |m| m.len()) as f64 / 1e6;
        let (status_time, status_peak) = run(&["status", table_arg], dir.path());
        println!(
            "{rows:>8}  {:>9.3}s {report_peak:>10.1} {page_mb:>10.1}  {:>9.3}s {status_peak:>10.1}",
            report_time.as_secs_f64(),
            status_time.as_secs_f64(),
        );
    }
}

/// A results table of `rows` experiments after autoresearch's shape: `val_bpb` falls from
/// about 1.0 by small kept steps, discards scatter above the running best.
fn make_table(rows: usize) -> String {
    let mut text = String::from("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n");
    let mut best = 1.0f64;
    // A fixed linear congruential generator: the same table on every run, no dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for n in 0..rows {
        let roll = next();
        let (value, status) = if n == 0 {
            (best, "keep")
        } else if roll < 0.025 {
            (0.0, "crash")
        } else if roll < 0.165 {
            best -= 0.0005 * next();
            (best, "keep")
        } else {
            (best + 0.02 * next(), "discard")
        };
        let words = 6 + (next() * 14.0) as usize;
        let mut description = String::new();
        for w in 0..words {
            let _ = write!(
                description,
                "{}word{} ",
                if w == 0 { "try " } else { "" },
                w
            );
        }
        let _ = writeln!(
            text,
            "{:07x}\t{value:.6}\t{:.1}\t{status}\t{}",
            n * 2_654_435_761 % 0xfff_ffff,
            if status == "crash" { 0.0 } else { 44.0 },
            description.trim_end()
        );
    }
    text
}

/// Runs the binary with `args` in `dir`; its wall time and peak resident memory in MB.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also gives its peak memory"
)]
fn run(args: &[&str], dir: &Path) -> (Duration, f64) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 on our own child with pointers to locals.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        usage
    };
    let elapsed = start.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "arun {args:?} failed"
    );
    (elapsed, usage.ru_maxrss as f64 / 1024.0)
}
