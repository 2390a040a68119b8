//! `arun init`: a pipeline file for a training project, guessed from the repository and from
//! one short run of it, with every guess said in a comment.

pub mod knobs;
pub mod values;
