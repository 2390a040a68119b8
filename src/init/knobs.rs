//! Knob suggestions: the UPPER_CASE constants of an editable file with a number (or a boolean)
//! for a value, each with a kind and bounds guessed from its name and value: learning rates on a
//! log scale around the current value, batch sizes and widths as powers of two, depths and layer
//! counts as integers, ratios and fractions on a linear scale. Constants that are not
//! hyperparameters (seeds, logging intervals, paths, hardware figures) are set aside with the
//! reason.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::knob::Domain;
use crate::config::knob_site;

/// One constant of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// The value as written.
    pub literal: String,
    /// The comment on its line, without `#` or `//`.
    pub comment: Option<String>,
    /// The declared Rust type, e.g. `usize`, `f64`.
    pub rust_type: Option<String>,
}

/// What to do with a constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Suggestion {
    Knob(Knob),
    /// Not proposed, and why (for a comment).
    Skipped {
        name: String,
        why: String,
    },
}

/// A `[[knob]]` to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Knob {
    pub name: String,
    /// The current value as written in the file.
    pub literal: String,
    pub kind: Kind,
    /// Why this kind and these bounds, for the comment.
    pub why: String,
    /// The comment on the constant's line in the file.
    pub comment: Option<String>,
}

/// A knob's kind with its bounds, as written in the pipeline (`min` and `max` as TOML numbers).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Float { min: String, max: String, log: bool },
    Int { min: i64, max: i64 },
    Pow2 { min: u64, max: u64 },
    Choice { choices: Vec<String> },
}

static PYTHON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Z][A-Z0-9_]+)\s*(?::\s*[A-Za-z_][\w\[\], .]*)?=\s*([^=].*)$").expect("regex")
});
static RUST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:pub(?:\([a-z]+\))?\s+)?(?:const|static)\s+([A-Z][A-Z0-9_]+)\s*:\s*([^=]+?)\s*=\s*(.+)$",
    )
    .expect("regex")
});

/// The top-level UPPER_CASE constants of a Python or Rust file (by its extension), each
/// assigned exactly once (as a knob must be).
pub fn constants(path: &str, text: &str) -> Vec<Constant> {
    let rust = path.ends_with(".rs");
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let (name, rust_type) = if rust {
            match RUST.captures(line) {
                Some(caps) => (caps[1].to_string(), Some(caps[2].trim().to_string())),
                None => continue,
            }
        } else {
            match PYTHON.captures(line) {
                Some(caps) => (caps[1].to_string(), None),
                None => continue,
            }
        };
        let Ok(site) = knob_site::locate(text, &name) else {
            continue;
        };
        if site.line != index + 1 || found.iter().any(|c: &Constant| c.name == name) {
            continue;
        }
        let after = &line[line.len().min(site.column - 1 + site.literal.len())..];
        let comment = after
            .find("//")
            .map(|i| &after[i + 2..])
            .or_else(|| after.find('#').map(|i| &after[i + 1..]))
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        found.push(Constant {
            name,
            line: index + 1,
            literal: site.literal,
            comment,
            rust_type,
        });
    }
    found
}

/// A suggestion for each constant.
pub fn suggest(constants: &[Constant]) -> Vec<Suggestion> {
    constants.iter().map(suggest_one).collect()
}

/// Name fragments of constants that are not hyperparameters, with the reason.
const NOT_KNOBS: [(&str, &str); 19] = [
    ("SEED", "a seed (arun sets `ARUN_SEED` for each run)"),
    ("EVERY", "how often to log or save"),
    ("INTERVAL", "how often to log or save"),
    ("LOG", "logging"),
    ("PRINT", "logging"),
    ("VERBOSE", "logging"),
    ("SECOND", "a time (the budget is arun's)"),
    ("MINUTE", "a time (the budget is arun's)"),
    ("TIMEOUT", "a time (the budget is arun's)"),
    ("BUDGET", "a time (the budget is arun's)"),
    ("PATH", "a path"),
    ("DIR", "a path"),
    ("FILE", "a path"),
    ("URL", "an address"),
    ("VERSION", "a version"),
    ("FLOPS", "a hardware figure"),
    ("PEAK", "a hardware figure"),
    ("PORT", "a network setting"),
    ("WORKERS", "a machine setting"),
];

fn suggest_one(constant: &Constant) -> Suggestion {
    let name = &constant.name;
    let words: Vec<&str> = name.split('_').collect();
    let has = |w: &str| words.contains(&w);
    let skip = |why: &str| Suggestion::Skipped {
        name: name.clone(),
        why: why.to_string(),
    };
    if let Some((_, why)) = NOT_KNOBS.iter().find(|(part, _)| {
        words
            .iter()
            .any(|w| w.starts_with(part) || (part.len() > 3 && w.contains(part)))
    }) {
        return skip(why);
    }
    let literal = constant.literal.trim();
    let knob = |kind: Kind, why: String| {
        Suggestion::Knob(Knob {
            name: name.clone(),
            literal: literal.to_string(),
            kind,
            why,
            comment: constant.comment.clone(),
        })
    };
    if matches!(literal, "True" | "False" | "true" | "false") {
        let (yes, no) = if literal.starts_with(char::is_uppercase) {
            ("True", "False")
        } else {
            ("true", "false")
        };
        let mut choices = vec![literal.to_string()];
        choices.push(if literal == yes { no } else { yes }.to_string());
        return knob(Kind::Choice { choices }, "a switch".to_string());
    }
    let any_number = Domain::Float {
        min: f64::MIN,
        max: f64::MAX,
        log: false,
    };
    let value = match knob_site::parse(&any_number, literal) {
        Ok(crate::config::knob::Value::Number(v)) => v,
        _ => {
            let what = if literal.starts_with(['"', '\'']) {
                "a string"
            } else {
                "not a plain number"
            };
            return skip(what);
        }
    };
    let float = match constant.rust_type.as_deref() {
        Some(t) => t.starts_with('f'),
        None => {
            literal.contains('.')
                || (literal.contains(['e', 'E']) && !literal.starts_with("0x"))
                || literal.contains("**-")
        }
    };
    if float {
        float_knob(name, &words, value).map_or_else(|why| skip(&why), |(k, why)| knob(k, why))
    } else {
        int_knob(&words, value, has("BATCH")).map_or_else(|why| skip(&why), |(k, why)| knob(k, why))
    }
}

fn float_knob(name: &str, words: &[&str], v: f64) -> Result<(Kind, String), String> {
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let ratio = has(&[
        "RATIO", "FRAC", "FRACTION", "DROPOUT", "PROB", "PCT", "PERCENT", "P",
    ]);
    if ratio && (0.0..=1.0).contains(&v) {
        let max = if v <= 0.25 {
            0.5
        } else if v <= 0.5 {
            (2.0 * v * 10.0).ceil() / 10.0
        } else {
            1.0
        };
        let max = max.clamp(0.5, 1.0);
        return Ok((
            Kind::Float {
                min: "0.0".to_string(),
                max: float_text(max),
                log: false,
            },
            format!("a fraction: linear from 0 to {}", float_text(max)),
        ));
    }
    if has(&["BETA", "BETA1", "BETA2", "MOMENTUM"]) && v > 0.0 && v < 1.0 {
        let gap = 1.0 - v;
        let min = round_to(1.0 - 2.0 * gap, 3).max(0.0);
        let max = round_to(1.0 - gap / 2.0, 4);
        return Ok((
            Kind::Float {
                min: float_text(min),
                max: float_text(max),
                log: false,
            },
            "a decay rate near 1: linear, its distance to 1 halved or doubled".to_string(),
        ));
    }
    let learning_rate = has(&["LR"]) || name.contains("LEARNING_RATE");
    if learning_rate && v > 0.0 {
        return Ok(log_range(v, 10.0, "a learning rate"));
    }
    if v > 0.0 {
        let what = if has(&["DECAY", "WD", "EPS", "EPSILON", "L2", "REG"]) {
            return Ok(log_range(v, 10.0, "a regularisation strength"));
        } else {
            "a positive number"
        };
        return Ok(log_range(v, 4.0, what));
    }
    if v == 0.0 {
        let max = if has(&["DECAY", "WD", "L2", "REG"]) {
            0.1
        } else {
            1.0
        };
        return Ok((
            Kind::Float {
                min: "0.0".to_string(),
                max: float_text(max),
                log: false,
            },
            format!("zero now: linear from 0 to {}", float_text(max)),
        ));
    }
    Err("a negative number".to_string())
}

/// A log-scale range from `v / factor` to `v * factor`, each rounded outwards to one
/// significant digit.
fn log_range(v: f64, factor: f64, what: &str) -> (Kind, String) {
    let min = round_significant_down(v / factor);
    let max = round_significant_up(v * factor);
    let words = if factor == 10.0 {
        "from a tenth to ten times its value".to_string()
    } else {
        format!("from 1/{factor} to {factor} times its value")
    };
    (
        Kind::Float {
            min: float_text(min),
            max: float_text(max),
            log: true,
        },
        format!("{what}: log scale {words}"),
    )
}

fn int_knob(words: &[&str], v: f64, batch: bool) -> Result<(Kind, String), String> {
    if v < 0.0 || v.fract() != 0.0 {
        return Err("a negative number".to_string());
    }
    let n = v as u64;
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let power_of_two = n >= 2 && n.is_power_of_two();
    let wide = has(&[
        "DIM", "WIDTH", "EMBD", "EMBED", "HIDDEN", "CHANNELS", "SIZE", "FEATURES", "UNITS",
    ]);
    let count = has(&[
        "DEPTH", "LAYER", "LAYERS", "BLOCKS", "HEADS", "HEAD", "RATIO", "STEPS", "EPOCHS",
    ]);
    if power_of_two && (batch || wide || (!count && n >= 16)) {
        let min = (n / 4).max(1);
        let max = n * 4;
        let what = if batch {
            "a batch size"
        } else if wide {
            "a width"
        } else {
            "a power of two"
        };
        return Ok((
            Kind::Pow2 { min, max },
            format!("{what}: powers of two from a quarter to four times its value"),
        ));
    }
    if n == 0 {
        return Ok((
            Kind::Int { min: 0, max: 10 },
            "zero now: 0 to 10".to_string(),
        ));
    }
    let min = (n / 2).max(1) as i64;
    let max = (2 * n).max(2) as i64;
    let what = if has(&["DEPTH", "LAYER", "LAYERS", "BLOCKS"]) {
        "a depth"
    } else if batch {
        "a batch size"
    } else {
        "a count"
    };
    Ok((
        Kind::Int { min, max },
        format!("{what}: integers from half to twice its value"),
    ))
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

/// `v` rounded down to one significant digit (0.06 for 0.064).
fn round_significant_down(v: f64) -> f64 {
    let (digit, power) = leading(v);
    exact(digit.floor().max(1.0), power)
}

/// `v` rounded up to one significant digit (0.07 for 0.064).
fn round_significant_up(v: f64) -> f64 {
    let (digit, power) = leading(v);
    exact(digit.ceil(), power)
}

/// `v` as `digit × 10^power` with `digit` in [1, 10).
fn leading(v: f64) -> (f64, i32) {
    let power = v.log10().floor() as i32;
    // A product like 0.6 / 10 lands a hair off 0.06: round it before taking the digit.
    let digit = round_to(v / 10f64.powi(power), 9);
    (digit, power)
}

/// `digit × 10^power` as the double nearest to the decimal (never multiplied by 0.1).
fn exact(digit: f64, power: i32) -> f64 {
    if power >= 0 {
        digit * 10f64.powi(power)
    } else {
        digit / 10f64.powi(-power)
    }
}

/// A TOML float: always with a decimal point or an exponent.
pub fn float_text(v: f64) -> String {
    let text = format!("{v}");
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTORESEARCH: &str = r#"
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # sliding window pattern: L=full, S=half context
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
WEIGHT_DECAY = 0.2      # cautious weight decay for Muon
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
FINAL_LR_FRAC = 0.0     # final LR as fraction of initial
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128  # per-device batch size (reduce if OOM)
def f():
    DEPTH_INSIDE = 3
H100_BF16_PEAK_FLOPS = 989.5e12
"#;

    fn by_name(suggestions: &[Suggestion], name: &str) -> Suggestion {
        suggestions
            .iter()
            .find(|s| match s {
                Suggestion::Knob(k) => k.name == name,
                Suggestion::Skipped { name: n, .. } => n == name,
            })
            .cloned()
            .unwrap_or_else(|| panic!("{name} not found"))
    }

    fn kind(suggestions: &[Suggestion], name: &str) -> Kind {
        match by_name(suggestions, name) {
            Suggestion::Knob(knob) => knob.kind,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn python_constants_get_kinds_and_bounds_by_name() {
        let constants = constants("train.py", AUTORESEARCH);
        assert_eq!(constants.len(), 14, "{constants:?}");
        assert_eq!(
            constants[0].comment.as_deref(),
            Some("model_dim = depth * ASPECT_RATIO")
        );
        let s = suggest(&constants);
        let float = |min: &str, max: &str, log| Kind::Float {
            min: min.into(),
            max: max.into(),
            log,
        };
        assert_eq!(kind(&s, "MATRIX_LR"), float("0.004", "0.4", true));
        assert_eq!(kind(&s, "EMBEDDING_LR"), float("0.06", "6.0", true));
        assert_eq!(kind(&s, "WEIGHT_DECAY"), float("0.02", "2.0", true));
        assert_eq!(kind(&s, "WARMUP_RATIO"), float("0.0", "0.5", false));
        assert_eq!(kind(&s, "WARMDOWN_RATIO"), float("0.0", "1.0", false));
        assert_eq!(kind(&s, "FINAL_LR_FRAC"), float("0.0", "0.5", false));
        assert_eq!(
            kind(&s, "TOTAL_BATCH_SIZE"),
            Kind::Pow2 {
                min: 1 << 17,
                max: 1 << 21
            }
        );
        assert_eq!(
            kind(&s, "DEVICE_BATCH_SIZE"),
            Kind::Pow2 { min: 32, max: 512 }
        );
        assert_eq!(kind(&s, "HEAD_DIM"), Kind::Pow2 { min: 32, max: 512 });
        assert_eq!(kind(&s, "DEPTH"), Kind::Int { min: 4, max: 16 });
        assert_eq!(kind(&s, "ASPECT_RATIO"), Kind::Int { min: 32, max: 128 });
        for (name, why) in [
            ("WINDOW_PATTERN", "a string"),
            ("ADAM_BETAS", "not a plain number"),
            ("H100_BF16_PEAK_FLOPS", "a hardware figure"),
        ] {
            assert_eq!(
                by_name(&s, name),
                Suggestion::Skipped {
                    name: name.into(),
                    why: why.into()
                }
            );
        }
    }

    #[test]
    fn rust_constants_of_the_reference_trainer() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("reference/nanochat/src/train.rs"),
        )
        .unwrap();
        let s = suggest(&constants("src/train.rs", &text));
        assert_eq!(kind(&s, "BATCH_SIZE"), Kind::Pow2 { min: 2, max: 32 });
        assert_eq!(kind(&s, "DEPTH"), Kind::Int { min: 2, max: 8 });
        assert_eq!(kind(&s, "MLP_RATIO"), Kind::Int { min: 2, max: 8 });
        assert_eq!(kind(&s, "MODEL_DIM"), Kind::Pow2 { min: 32, max: 512 });
        assert_eq!(
            kind(&s, "MATRIX_LR"),
            Kind::Float {
                min: "0.0003".into(),
                max: "0.03".into(),
                log: true
            }
        );
        assert_eq!(
            kind(&s, "ADAM_BETA2"),
            Kind::Float {
                min: "0.9".into(),
                max: "0.975".into(),
                log: false
            }
        );
        assert_eq!(
            kind(&s, "WEIGHT_DECAY"),
            Kind::Float {
                min: "0.0".into(),
                max: "0.1".into(),
                log: false
            }
        );
        assert!(matches!(
            by_name(&s, "PROGRESS_EVERY_SECONDS"),
            Suggestion::Skipped { .. }
        ));
    }

    #[test]
    fn one_digit_rounding_goes_outwards() {
        assert_eq!(round_significant_down(0.064), 0.06);
        assert_eq!(round_significant_up(0.064), 0.07);
        assert_eq!(round_significant_down(0.6 / 10.0), 0.06);
        assert_eq!(round_significant_up(0.04 * 10.0), 0.4);
        assert_eq!(float_text(6.0), "6.0");
        assert_eq!(float_text(0.0003), "0.0003");
    }
}
