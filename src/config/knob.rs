//! What values each knob may take: its domain as declared (`float` on a log or linear scale,
//! `int`, `pow2`, `choice`), the grid values are rounded to, and the map to the unit interval the
//! search works in.

use super::file::{self, KnobKind, Scale};

/// A declared knob, resolved: where it is and what it may be.
#[derive(Debug, Clone, PartialEq)]
pub struct Knob {
    /// The name assigned in the file, e.g. `MATRIX_LR`.
    pub name: String,
    /// The editable file that assigns it, relative to the repository.
    pub file: String,
    pub domain: Domain,
}

/// The values a knob may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A real number in `[min, max]`; searched on a log scale when `log`.
    Float { min: f64, max: f64, log: bool },
    /// A whole number in `[min, max]`.
    Int { min: i64, max: i64 },
    /// `2^e` for `e` in `[min, max]` (exponents).
    Pow2 { min: i32, max: i32 },
    /// One of these literals, written as they appear in the file.
    Choice { choices: Vec<String> },
}

/// One knob's value: a number for `float`, `int` and `pow2`, an index into the choices for
/// `choice`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Number(f64),
    Choice(usize),
}

/// Significant digits a log-scale float keeps (`0.0424`), and digits below the range's order of
/// magnitude a linear one keeps (a range of 0.5 gives steps of 0.0001): fine enough that rounding
/// costs nothing measurable, coarse enough that values read well in a diff.
const LOG_DIGITS: i32 = 3;
const LINEAR_DIGITS: i32 = 3;

impl Domain {
    /// Checks a `[[knob]]` declaration; problems come as (key, message).
    pub fn from_declaration(knob: &file::Knob) -> Result<Domain, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let domain = match knob.kind {
            KnobKind::Choice => choice_domain(knob, &mut problems),
            KnobKind::Float => float_domain(knob, &mut problems),
            KnobKind::Int => int_domain(knob, &mut problems),
            KnobKind::Pow2 => pow2_domain(knob, &mut problems),
        };
        misplaced_keys(knob, &mut problems);
        if problems.is_empty() {
            Ok(domain)
        } else {
            Err(problems)
        }
    }

    pub fn is_choice(&self) -> bool {
        matches!(self, Domain::Choice { .. })
    }

    /// How many values the knob can take; `None` for floats (too many to enumerate).
    pub fn levels(&self) -> Option<u64> {
        match self {
            Domain::Float { .. } => None,
            Domain::Int { min, max } => Some((max - min) as u64 + 1),
            Domain::Pow2 { min, max } => Some((max - min) as u64 + 1),
            Domain::Choice { choices } => Some(choices.len() as u64),
        }
    }

    /// Why `value` is not a value of this knob, if it is not (the bounds are inclusive), with the
    /// declaration key it contradicts (`min`, `max`, `kind`).
    pub fn check(&self, value: Value) -> Result<(), (&'static str, String)> {
        let bounds = |v: f64, min: f64, max: f64, min_text: String, max_text: String| {
            if v < min {
                Err(("min", format!("below `min` {min_text}")))
            } else if v > max {
                Err(("max", format!("above `max` {max_text}")))
            } else {
                Ok(())
            }
        };
        match (self, value) {
            (Domain::Float { min, max, .. }, Value::Number(v)) => {
                bounds(v, *min, *max, format_number(*min), format_number(*max))
            }
            (Domain::Int { min, max }, Value::Number(v)) => {
                if v.fract() != 0.0 {
                    return Err(("kind", "not a whole number".to_string()));
                }
                bounds(
                    v,
                    *min as f64,
                    *max as f64,
                    min.to_string(),
                    max.to_string(),
                )
            }
            (Domain::Pow2 { min, max }, Value::Number(v)) => {
                if !(v > 0.0 && v.log2().fract() == 0.0) {
                    return Err(("kind", "not a power of two".to_string()));
                }
                let (low, high) = (2f64.powi(*min), 2f64.powi(*max));
                bounds(v, low, high, format_number(low), format_number(high))
            }
            (Domain::Choice { choices }, Value::Choice(i)) if i < choices.len() => Ok(()),
            _ => Err(("kind", "not a value of this kind of knob".to_string())),
        }
    }

    /// The value on the knob's grid nearest to `value`, inside the bounds.
    pub fn quantize(&self, value: Value) -> Value {
        match (self, value) {
            (Domain::Float { min, max, log }, Value::Number(v)) => {
                let rounded = if *log {
                    round_significant(v, LOG_DIGITS)
                } else {
                    let magnitude = (max - min).log10().floor() as i32;
                    round_to_power(v, magnitude - LINEAR_DIGITS)
                };
                Value::Number(rounded.clamp(*min, *max))
            }
            (Domain::Int { min, max }, Value::Number(v)) => {
                Value::Number(v.round().clamp(*min as f64, *max as f64))
            }
            (Domain::Pow2 { min, max }, Value::Number(v)) => {
                let exponent = v.max(f64::MIN_POSITIVE).log2().round() as i32;
                Value::Number(2f64.powi(exponent.clamp(*min, *max)))
            }
            (Domain::Choice { choices }, Value::Choice(i)) => {
                Value::Choice(i.min(choices.len() - 1))
            }
            (_, value) => value,
        }
    }

    /// Where a numeric value sits between the bounds on the search scale, in `[0, 1]`.
    pub fn to_unit(&self, value: Value) -> f64 {
        let Value::Number(v) = value else {
            return 0.0;
        };
        let unit = match self {
            Domain::Float {
                min,
                max,
                log: true,
            } => (v.max(*min).ln() - min.ln()) / (max.ln() - min.ln()),
            Domain::Float { min, max, .. } => (v - min) / (max - min),
            Domain::Int { min, max } => (v - *min as f64) / (max - min) as f64,
            Domain::Pow2 { min, max } => {
                (v.max(f64::MIN_POSITIVE).log2() - f64::from(*min)) / f64::from(max - min)
            }
            Domain::Choice { .. } => 0.0,
        };
        unit.clamp(0.0, 1.0)
    }

    /// The grid value at position `unit` in `[0, 1]` on the search scale (numeric knobs).
    pub fn from_unit(&self, unit: f64) -> Value {
        let u = unit.clamp(0.0, 1.0);
        let raw = match self {
            Domain::Float {
                min,
                max,
                log: true,
            } => (min.ln() + u * (max.ln() - min.ln())).exp(),
            Domain::Float { min, max, .. } => min + u * (max - min),
            Domain::Int { min, max } => *min as f64 + u * (max - min) as f64,
            Domain::Pow2 { min, max } => 2f64.powf(f64::from(*min) + u * f64::from(max - min)),
            Domain::Choice { .. } => return Value::Choice(0),
        };
        self.quantize(Value::Number(raw))
    }

    /// The value as a short text for messages (`0.04`, `8`, `"gelu"`).
    pub fn show(&self, value: Value) -> String {
        match (self, value) {
            (Domain::Choice { choices }, Value::Choice(i)) => {
                choices.get(i).cloned().unwrap_or_default()
            }
            (_, Value::Number(v)) => format_number(v),
            (_, Value::Choice(i)) => format!("choice {i}"),
        }
    }
}

/// The choices of a `choice` knob, trimmed: at least two, each a literal on one line, none twice.
fn choice_domain(knob: &file::Knob, problems: &mut Vec<(&'static str, String)>) -> Domain {
    if knob.choices.len() < 2 {
        problems.push((
            "choices",
            "a `choice` knob needs at least two `choices`".to_string(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for choice in &knob.choices {
        if choice.trim().is_empty() || choice.contains('\n') {
            problems.push((
                "choices",
                format!("`{choice}` must be a literal on one line"),
            ));
        } else if !seen.insert(choice.trim()) {
            problems.push(("choices", format!("`{choice}` is listed twice")));
        }
    }
    Domain::Choice {
        choices: knob.choices.iter().map(|c| c.trim().to_string()).collect(),
    }
}

/// A numeric knob's `min` and `max`, when both are given, finite and in order.
fn numeric_range(
    knob: &file::Knob,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<(f64, f64)> {
    match (knob.min, knob.max) {
        (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min < max => {
            Some((min, max))
        }
        (Some(_), Some(_)) => {
            problems.push(("max", "`max` must be greater than `min`".to_string()));
            None
        }
        _ => {
            problems.push((
                "kind",
                "a numeric knob needs both `min` and `max`".to_string(),
            ));
            None
        }
    }
}

/// A `float` knob's range; a log scale needs it above zero. A range with problems becomes a
/// placeholder, since the declaration is rejected anyway.
fn float_domain(knob: &file::Knob, problems: &mut Vec<(&'static str, String)>) -> Domain {
    let log = knob.scale.unwrap_or_default() == Scale::Log;
    match numeric_range(knob, problems) {
        Some((min, _)) if log && min <= 0.0 => {
            problems.push((
                "min",
                "must be above zero on a log scale; use `scale = \"linear\"`".to_string(),
            ));
            Domain::Float {
                min: 1.0,
                max: 2.0,
                log,
            }
        }
        Some((min, max)) => Domain::Float { min, max, log },
        None => Domain::Float {
            min: 1.0,
            max: 2.0,
            log,
        },
    }
}

/// An `int` knob's range, which must be whole numbers.
fn int_domain(knob: &file::Knob, problems: &mut Vec<(&'static str, String)>) -> Domain {
    match numeric_range(knob, problems) {
        Some((min, max)) if min.fract() != 0.0 || max.fract() != 0.0 => {
            problems.push((
                "min",
                "an `int` knob needs whole numbers for `min` and `max`".to_string(),
            ));
            Domain::Int { min: 0, max: 1 }
        }
        Some((min, max)) => Domain::Int {
            min: min as i64,
            max: max as i64,
        },
        None => Domain::Int { min: 0, max: 1 },
    }
}

/// A `pow2` knob's range as exponents: the powers of two between `min` and `max`, at least two.
fn pow2_domain(knob: &file::Knob, problems: &mut Vec<(&'static str, String)>) -> Domain {
    match numeric_range(knob, problems) {
        Some((min, _)) if min < 1.0 => {
            problems.push((
                "min",
                "a `pow2` knob starts at 1 or above (2^0)".to_string(),
            ));
            Domain::Pow2 { min: 0, max: 1 }
        }
        Some((min, max)) => {
            let low = min.log2().ceil() as i32;
            let high = max.log2().floor() as i32;
            if high <= low {
                problems.push((
                    "max",
                    format!(
                        "there must be at least two powers of two between `min` {min} \
                         and `max` {max}"
                    ),
                ));
            }
            Domain::Pow2 {
                min: low,
                max: high.max(low + 1),
            }
        }
        None => Domain::Pow2 { min: 0, max: 1 },
    }
}

/// Keys that belong to another kind of knob: `choices` on a numeric knob, `min` and `max` on a
/// `choice`, `scale` on anything but a `float`.
fn misplaced_keys(knob: &file::Knob, problems: &mut Vec<(&'static str, String)>) {
    if knob.kind != KnobKind::Choice && !knob.choices.is_empty() {
        problems.push((
            "choices",
            "only a `choice` knob has `choices`; remove them or use `kind = \"choice\"`"
                .to_string(),
        ));
    }
    if knob.kind == KnobKind::Choice && (knob.min.is_some() || knob.max.is_some()) {
        problems.push((
            "kind",
            "a `choice` knob has `choices`, not `min` and `max`".to_string(),
        ));
    }
    if knob.kind != KnobKind::Float && knob.scale.is_some() {
        problems.push((
            "scale",
            "only a `float` knob has a `scale`; `int` is linear, `pow2` is logarithmic".to_string(),
        ));
    }
}

/// `v` rounded to `digits` significant digits.
pub fn round_significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let magnitude = v.abs().log10().floor() as i32;
    round_to_power(v, magnitude - digits + 1)
}

/// `v` rounded to a multiple of `10^power`. Dividing or multiplying by an exact power of ten
/// (never by `0.1`) gives the double nearest to the decimal, so `0.0424` prints as `0.0424`.
fn round_to_power(v: f64, power: i32) -> f64 {
    if power >= 0 {
        let scale = 10f64.powi(power);
        (v / scale).round() * scale
    } else {
        let scale = 10f64.powi(-power);
        (v * scale).round() / scale
    }
}

/// The shortest decimal text of a number (`0.04`, `8`, `1e-7` stays `0.0000001`).
pub fn format_number(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knob(kind: KnobKind, min: Option<f64>, max: Option<f64>) -> file::Knob {
        file::Knob {
            name: "X".into(),
            file: None,
            kind,
            min,
            max,
            scale: None,
            choices: Vec::new(),
        }
    }

    #[test]
    fn declarations_resolve_or_say_what_is_wrong() {
        let pow2 = Domain::from_declaration(&knob(KnobKind::Pow2, Some(64.0), Some(4096.0)));
        assert_eq!(pow2, Ok(Domain::Pow2 { min: 6, max: 12 }));
        let int = Domain::from_declaration(&knob(KnobKind::Int, Some(1.5), Some(4.0)));
        assert_eq!(int.unwrap_err()[0].0, "min");
        let narrow = Domain::from_declaration(&knob(KnobKind::Pow2, Some(65.0), Some(127.0)));
        assert!(narrow.unwrap_err()[0].1.contains("two powers of two"));
        let log = Domain::from_declaration(&knob(KnobKind::Float, Some(0.0), Some(1.0)));
        assert_eq!(log.unwrap_err()[0].0, "min");
    }

    #[test]
    fn values_are_rounded_to_a_readable_grid_inside_the_bounds() {
        let lr = Domain::Float {
            min: 1e-4,
            max: 1.0,
            log: true,
        };
        assert_eq!(lr.quantize(Value::Number(0.042_371)), Value::Number(0.0424));
        assert_eq!(format_number(0.0424), "0.0424");
        assert_eq!(lr.quantize(Value::Number(3.0)), Value::Number(1.0));
        let ratio = Domain::Float {
            min: 0.0,
            max: 0.5,
            log: false,
        };
        assert_eq!(
            ratio.quantize(Value::Number(0.123_456)),
            Value::Number(0.1235)
        );
        let width = Domain::Pow2 { min: 6, max: 12 };
        assert_eq!(width.quantize(Value::Number(700.0)), Value::Number(512.0));
        assert_eq!(width.from_unit(1.0), Value::Number(4096.0));
        assert_eq!(width.to_unit(Value::Number(512.0)), 0.5);
        let depth = Domain::Int { min: 2, max: 12 };
        assert_eq!(depth.from_unit(0.55), Value::Number(8.0));
    }

    #[test]
    fn checks_name_the_bound_that_is_crossed() {
        let depth = Domain::Int { min: 2, max: 12 };
        assert_eq!(
            depth.check(Value::Number(16.0)),
            Err(("max", "above `max` 12".to_string()))
        );
        assert_eq!(depth.check(Value::Number(2.5)).unwrap_err().0, "kind");
        let width = Domain::Pow2 { min: 6, max: 12 };
        assert_eq!(
            width.check(Value::Number(100.0)),
            Err(("kind", "not a power of two".to_string()))
        );
        assert_eq!(
            width.check(Value::Number(32.0)),
            Err(("min", "below `min` 64".to_string()))
        );
        assert!(width.check(Value::Number(64.0)).is_ok());
    }
}
