//! When a running experiment's result is due. Runs of one pipeline take about as long as each
//! other, so workers that start together finish within milliseconds of each other; a proposal
//! made as the first of them finishes would do without the others' results. The session starts
//! no experiment while another one's result is due (for one window at most), and
//! `benches/knob_search.rs` simulates the same rule.

/// The window around a run's usual length in which its result is due, as a fraction of that
/// length, and at least this many seconds. Wide enough that workers put out of step by a crash
/// (an experiment that ended early, so its successor started early) fall back into step; chosen
/// on the knob-search bench's tuning objectives (docs/benchmarks.md).
pub const WINDOW: f64 = 0.15;
pub const MIN_WINDOW_SECONDS: f64 = 1.0;

/// The runs the usual length is taken from: the latest ones.
const LATEST: usize = 20;

/// How long runs usually take, in seconds: the median of the latest 20 of `newest_first` (the
/// lengths of runs that ended cleanly, the latest first; no more are read); `None` before the
/// first.
pub fn usual_length(newest_first: impl Iterator<Item = f64>) -> Option<f64> {
    let mut latest: Vec<f64> = newest_first.take(LATEST).collect();
    latest.sort_by(f64::total_cmp);
    latest.get(latest.len() / 2).copied()
}

/// The window around a usual length `usual` (seconds).
pub fn window(usual: f64) -> f64 {
    (usual * WINDOW).max(MIN_WINDOW_SECONDS)
}

/// Whether the result of a run that has run for `elapsed` seconds is due, when runs usually
/// take `usual`: it is within the window of the usual length. Past the window it is no longer
/// waited for, so a run that hangs holds nothing up for longer.
pub fn is_due(usual: f64, elapsed: f64) -> bool {
    (elapsed - usual).abs() <= window(usual)
}

/// A free worker's wait for due results, on the caller's clock (seconds): it waits while another
/// run's result is due, and for at most one window from when the wait began, so that runs out of
/// step (one always due) cannot hold workers up in turn. The wait is over once nothing is due.
#[derive(Debug, Default)]
pub struct Wait {
    since: Option<f64>,
}

impl Wait {
    /// Whether the next experiment waits at `now`, given how long each running run has run
    /// (`elapsed`) and how long runs usually take (`usual`; `None` before the first: no wait).
    pub fn holds(&mut self, now: f64, usual: Option<f64>, elapsed: &[f64]) -> bool {
        let Some(usual) = usual.filter(|&u| elapsed.iter().any(|&e| is_due(u, e))) else {
            self.since = None;
            return false;
        };
        let since = *self.since.get_or_insert(now);
        now - since < window(usual)
    }

    /// When the wait under way ends at the latest, when runs usually take `usual`.
    pub fn ends(&self, usual: f64) -> Option<f64> {
        self.since.map(|since| since + window(usual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_length_is_the_median_of_the_latest_twenty() {
        assert_eq!(usual_length([].into_iter()), None);
        assert_eq!(usual_length([3.0].into_iter()), Some(3.0));
        assert_eq!(usual_length([1.0, 9.0, 2.0].into_iter()), Some(2.0));
        // Thirty runs of 100 s, then twenty of 300 s (a change made every run longer).
        let mut seconds = vec![100.0; 30];
        seconds.extend([300.0; 20]);
        assert_eq!(usual_length(seconds.into_iter().rev()), Some(300.0));
    }

    #[test]
    fn a_result_is_due_within_fifteen_percent_of_the_usual_length_and_at_least_a_second() {
        // Five-minute runs: due from 255 s to 345 s.
        assert!(!is_due(300.0, 254.0));
        assert!(is_due(300.0, 255.0));
        assert!(is_due(300.0, 345.0));
        assert!(!is_due(300.0, 346.0));
        // Two-second runs: from 1 s to 3 s.
        assert!(!is_due(2.0, 0.9));
        assert!(is_due(2.0, 1.0));
        assert!(is_due(2.0, 3.0));
        assert!(!is_due(2.0, 3.1));
    }

    #[test]
    fn a_wait_lasts_while_a_result_is_due_and_one_window_at_most() {
        let mut wait = Wait::default();
        // Nothing known yet, or nothing due: no wait.
        assert!(!wait.holds(0.0, None, &[290.0]));
        assert!(!wait.holds(0.0, Some(300.0), &[100.0, 200.0]));
        // A run at 290 s of a usual 300 s: wait, for 45 s at most.
        assert!(wait.holds(1000.0, Some(300.0), &[290.0]));
        assert_eq!(wait.ends(300.0), Some(1045.0));
        // Runs out of step, one always due: still no more than the window.
        assert!(wait.holds(1030.0, Some(300.0), &[280.0]));
        assert!(!wait.holds(1045.0, Some(300.0), &[260.0]));
        // Once nothing is due the wait is over, and the next one starts afresh.
        assert!(!wait.holds(1100.0, Some(300.0), &[10.0]));
        assert!(wait.holds(1400.0, Some(300.0), &[300.0]));
        assert_eq!(wait.ends(300.0), Some(1445.0));
    }
}
