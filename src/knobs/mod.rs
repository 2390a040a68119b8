//! Knobs: the hyperparameters a pipeline declares with `[[knob]]`, what values each may take
//! (`space`), where each is assigned in its editable file and how it is rewritten (`edit`), and
//! the search over them that needs no LLM (`strategy`, on top of the Gaussian process of `gp`).

pub mod edit;
pub mod gp;
pub mod random;
pub mod space;
pub mod strategy;

pub use space::{Domain, Knob, Value};
