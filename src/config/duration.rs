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

/// The longest duration arun accepts anywhere (budgets, limits, timeouts): a year. Longer ones
/// are typing mistakes, and unbounded ones overflow the clock arithmetic of a run.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
}

/// Why a duration string was rejected; the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}; {fix}")]
pub struct DurationError {
    text: String,
    reason: &'static str,
    fix: &'static str,
}

const WRITE_A_UNIT: &str = "write a number with a unit, e.g. `90s`, `5m`, `1h30m`";
const TOO_LONG: &str = "it is longer than `365d`, the longest duration arun accepts";
const SHORTEN: &str = "write a shorter one";

impl DurationError {
    /// Whether the text is well-formed but longer than `MAX_DURATION`.
    pub fn is_too_long(&self) -> bool {
        self.reason == TOO_LONG
    }
}

/// Nanoseconds per unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return None,
    })
}

/// `number` (digits, optionally a `.` and more digits) times `unit` nanoseconds, exactly, rounded
/// down to the nanosecond; `None` when it does not fit in a `u128`.
fn scaled(whole: &str, fraction: &str, unit: u128) -> Option<u128> {
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        nanos = nanos
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
    }
    nanos = nanos.checked_mul(unit)?;
    // Digits past the 18th weigh less than a nanosecond even in days; they are dropped so that
    // the arithmetic below stays within `u128`.
    let fraction = &fraction[..fraction.len().min(18)];
    let mut numerator: u128 = 0;
    for digit in fraction.bytes() {
        numerator = numerator * 10 + u128::from(digit - b'0');
    }
    let denominator = 10u128.pow(fraction.len() as u32);
    nanos.checked_add(numerator * unit / denominator)
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    /// Reads the strings `DURATION_PATTERN` matches, exactly (no floating point), up to
    /// `MAX_DURATION`.
    fn from_str(text: &str) -> Result<Self, DurationError> {
        let fail = |reason| DurationError {
            text: text.to_string(),
            reason,
            fix: WRITE_A_UNIT,
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: Option<u128> = Some(0);
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if number_len == 0 {
                return Err(fail("expected a number"));
            }
            let (whole, fraction) = match rest[..number_len].split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (&rest[..number_len], None),
            };
            let well_formed =
                !whole.is_empty() && fraction.is_none_or(|f| !f.is_empty() && !f.contains('.'));
            if !well_formed {
                return Err(fail("the number is malformed"));
            }
            rest = rest[number_len..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = match (&rest[..unit_len], unit_nanos(&rest[..unit_len])) {
                (_, Some(unit)) => unit,
                ("", None) => return Err(fail("a unit is missing")),
                (_, None) => return Err(fail("the unit is not one of ms, s, m, h, d")),
            };
            total = total.and_then(|t| t.checked_add(scaled(whole, fraction.unwrap_or(""), unit)?));
            rest = rest[unit_len..].trim_start();
        }
        match total {
            Some(nanos) if nanos <= MAX_DURATION.as_nanos() => {
                let secs = (nanos / 1_000_000_000) as u64;
                Ok(HumanDuration(Duration::new(
                    secs,
                    (nanos % 1_000_000_000) as u32,
                )))
            }
            _ => Err(DurationError {
                text: text.to_string(),
                reason: TOO_LONG,
                fix: SHORTEN,
            }),
        }
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
            "description": "A duration: a number with a unit (ms, s, m, h, d), e.g. `90s`, `5m`, `1h30m`; at most `365d`.",
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
            ("5.s", "the number is malformed"),
            (".5s", "the number is malformed"),
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
            "5.s",
            ".5s",
            "1.5.5s",
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

    #[test]
    fn durations_past_a_year_are_rejected_not_panicked() {
        for text in [
            "99999999999999999999h",
            "366d",
            "365d1ms",
            "8761h",
            &format!("{}s", "9".repeat(400)),
        ] {
            let err = text.parse::<HumanDuration>().unwrap_err();
            assert!(err.is_too_long(), "{text}: {err}");
            assert!(
                err.to_string().ends_with(
                    "it is longer than `365d`, the longest duration arun accepts; write a shorter \
                     one"
                ),
                "{err}"
            );
        }
        assert_eq!(
            "365d".parse::<HumanDuration>().unwrap().0,
            MAX_DURATION,
            "the limit itself is accepted"
        );
    }

    #[test]
    fn decimals_are_read_exactly() {
        let cases = [
            ("0.123s", Duration::from_millis(123)),
            ("0.1s", Duration::from_millis(100)),
            ("93784005ms", Duration::from_millis(93_784_005)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("0.0000000019s", Duration::from_nanos(1)),
            ("1.000000000000000000000001d", Duration::from_secs(86400)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<HumanDuration>().unwrap().0, expected, "{text}");
        }
    }
}
