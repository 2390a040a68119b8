//! Durations as pipeline files write them: `"90s"`, `"5m"`, `"1h30m"`, `"1.5h"`, `"250ms"`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JSON Schema pattern for a duration; `parse` accepts exactly the strings it matches.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d)\s*)+$";

/// A span of time written with units, e.g. `"5m"` or `"1h30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
}

/// Why a duration string was rejected; the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{text}`: {reason}; write a number with a unit, e.g. `90s`, `5m`, `1h30m`"
)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, DurationError> {
        let fail = |reason| DurationError {
            text: text.to_string(),
            reason,
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total = 0.0_f64;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if number_len == 0 {
                return Err(fail("expected a number"));
            }
            let number: f64 = rest[..number_len]
                .parse()
                .map_err(|_| fail("the number is malformed"))?;
            rest = rest[number_len..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_len] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                "" => return Err(fail("a unit is missing")),
                _ => return Err(fail("the unit is not one of ms, s, m, h, d")),
            };
            total += number * seconds_per_unit;
            rest = rest[unit_len..].trim_start();
        }
        Ok(HumanDuration(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for HumanDuration {
    /// Writes the shortest form that `parse` reads back: `5m`, `1h30m`, `90s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return write!(f, "0s");
        }
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let mut secs = millis / 1000;
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number with a unit (ms, s, m, h, d), e.g. `90s`, `5m`, `1h30m`.",
            "examples": ["90s", "5m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_pipelines_use() {
        let cases = [
            ("90s", 90.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1h 30m", 5400.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("2d", 172800.0),
            (" 10s ", 10.0),
        ];
        for (text, secs) in cases {
            let parsed: HumanDuration = text.parse().unwrap();
            assert_eq!(parsed.0.as_secs_f64(), secs, "{text}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("", "it is empty"),
            ("300", "a unit is missing"),
            ("5 minutes", "the unit is not one of ms, s, m, h, d"),
            ("m", "expected a number"),
            ("1..5s", "the number is malformed"),
        ];
        for (text, reason) in cases {
            let err = text.parse::<HumanDuration>().unwrap_err();
            assert_eq!(err.reason, reason, "{text}");
        }
    }

    #[test]
    fn pattern_and_parser_agree() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "90s",
            "1h30m",
            "1.5h",
            "250ms",
            "300",
            "5 minutes",
            "",
            "1..5s",
            "5M",
        ] {
            assert_eq!(
                pattern.is_match(text),
                text.parse::<HumanDuration>().is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["5m", "1h30m", "90s", "250ms", "1d2h3m4s", "0s"] {
            let parsed: HumanDuration = text.parse().unwrap();
            let shown = parsed.to_string();
            let expected = if text == "90s" { "1m30s" } else { text };
            assert_eq!(shown, expected);
            assert_eq!(shown.parse::<HumanDuration>().unwrap(), parsed);
        }
    }
}
