//! The environment a child gets: arun's own, minus scrubbed secrets, plus what the pipeline sets.

use std::collections::BTreeMap;

use crate::config::resolve::env_pattern_matches;

#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// arun's environment without the variables matching any of `scrub` (`*` wildcards).
    pub fn inherit_scrubbed(scrub: &[String]) -> Environment {
        let vars = std::env::vars()
            .filter(|(name, _)| !scrub.iter().any(|p| env_pattern_matches(p, name)))
            .collect();
        Environment { vars }
    }

    /// arun's environment as it is.
    pub fn inherit() -> Environment {
        Environment {
            vars: std::env::vars().collect(),
        }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn extend(&mut self, vars: &BTreeMap<String, String>) -> &mut Self {
        for (name, value) in vars {
            self.vars.insert(name.clone(), value.clone());
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }
}
