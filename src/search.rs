//! Which experiment the next one builds on.

use crate::journal::History;

/// How the parent of the next experiment is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// autoresearch's greedy chain: always build on the last kept experiment.
    #[default]
    Greedy,
}

impl Strategy {
    /// The parent of the next experiment: a kept experiment, whose commit the proposer starts
    /// from. `None` before the baseline.
    pub fn parent(self, history: &History) -> Option<u64> {
        match self {
            Strategy::Greedy => history.best().map(|e| e.n),
        }
    }
}
