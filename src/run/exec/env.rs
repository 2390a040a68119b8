//! The environment a child gets: arun's own, minus scrubbed secrets, plus what the pipeline sets.
//!
//! Names and values are kept as `OsString`: a variable that is not UTF-8 (a Latin-1 path in a
//! user's shell) passes through to the child unchanged instead of stopping the run.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use crate::config::resolve::env_pattern_matches;

#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// arun's environment without the variables matching any of `scrub` (`*` wildcards).
    ///
    /// A name that is not UTF-8 is matched in its lossy form (each invalid byte read as U+FFFD),
    /// so that `*_API_KEY` still scrubs `\xffOPENAI_API_KEY`: a pattern's `*` matches the
    /// invalid bytes, and its literal parts match the readable rest.
    pub fn inherit_scrubbed(scrub: &[String]) -> Environment {
        Environment::from_vars(std::env::vars_os(), scrub)
    }

    /// arun's environment as it is.
    pub fn inherit() -> Environment {
        Environment {
            vars: std::env::vars_os().collect(),
        }
    }

    /// `vars` without those matching any of `scrub`.
    fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>, scrub: &[String]) -> Self {
        let vars = vars
            .into_iter()
            .filter(|(name, _)| !scrubbed(scrub, name))
            .collect();
        Environment { vars }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars
            .insert(OsString::from(name.into()), OsString::from(value.into()));
        self
    }

    pub fn extend(&mut self, vars: &BTreeMap<String, String>) -> &mut Self {
        for (name, value) in vars {
            self.vars.insert(name.into(), value.into());
        }
        self
    }

    /// The value of `name`, when it is set and is UTF-8 (see `get_os` for any value).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_os(name).and_then(OsStr::to_str)
    }

    /// The value of `name` as the child gets it, UTF-8 or not.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// Every variable, for a child's environment (`duct`'s `full_env` takes these pairs).
    pub fn vars(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.vars.iter()
    }
}

fn scrubbed(scrub: &[String], name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    scrub
        .iter()
        .any(|pattern| env_pattern_matches(pattern, &name))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    fn bytes(raw: &[u8]) -> OsString {
        OsString::from_vec(raw.to_vec())
    }

    #[test]
    fn non_utf8_variables_pass_through_and_are_still_scrubbed() {
        let scrub = vec!["*_API_KEY".to_string(), "HF_TOKEN".to_string()];
        let env = Environment::from_vars(
            [
                (bytes(b"LATIN1_PATH"), bytes(b"/home/j\xf6rg")),
                (bytes(b"\xffOPENAI_API_KEY"), bytes(b"sk-secret")),
                (bytes(b"HF_TOKEN"), bytes(b"hf-secret")),
                (
                    bytes(b"HF_TOKEN\xff"),
                    bytes(b"kept: not the name scrubbed"),
                ),
                (bytes(b"PLAIN"), bytes(b"x")),
            ],
            &scrub,
        );
        let names: Vec<&OsString> = env.vars().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                &bytes(b"HF_TOKEN\xff"),
                &bytes(b"LATIN1_PATH"),
                &bytes(b"PLAIN")
            ]
        );
        assert_eq!(
            env.get_os("LATIN1_PATH"),
            Some(bytes(b"/home/j\xf6rg").as_os_str())
        );
        assert_eq!(env.get("LATIN1_PATH"), None, "not UTF-8");
        assert_eq!(env.get("PLAIN"), Some("x"));
    }

    #[test]
    fn the_pipeline_and_arun_variables_override_inherited_ones() {
        let mut env = Environment::from_vars([(bytes(b"A"), bytes(b"\xff"))], &[]);
        let pipeline = BTreeMap::from([("A".to_string(), "pipeline".to_string())]);
        let tag = "nov22".to_string();
        env.extend(&pipeline).set("B", &tag).set("C", 3.to_string());
        assert_eq!(env.get("A"), Some("pipeline"));
        assert_eq!(env.get("B"), Some("nov22"));
        assert_eq!(env.get("C"), Some("3"));
    }

    #[test]
    fn inherits_a_non_utf8_environment_without_panicking() {
        // `std::env::vars` panics on such a variable; run a child with one so this process's
        // environment stays as it is.
        // The test's name as the harness knows it: this module's path without the crate's name.
        let module = module_path!().trim_start_matches("arun::");
        let child = format!("{module}::child_inherits_the_environment");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &child, "--nocapture", "--ignored"])
            .env(bytes(b"ARUN_TEST_LATIN1"), bytes(b"j\xf6rg"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("inherited 6A F6 72 67"));
    }

    #[test]
    #[ignore = "run by inherits_a_non_utf8_environment_without_panicking in a child"]
    fn child_inherits_the_environment() {
        if std::env::var_os("ARUN_TEST_LATIN1").is_none() {
            return;
        }
        for env in [Environment::inherit(), Environment::inherit_scrubbed(&[])] {
            let value = env.get_os("ARUN_TEST_LATIN1").expect("inherited");
            let shown: Vec<String> = value
                .as_encoded_bytes()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            println!("inherited {}", shown.join(" "));
        }
    }
}
