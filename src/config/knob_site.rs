//! Finding a knob's assignment in a source file and rewriting only its value.
//!
//! Two forms are recognised, one per line, possibly indented:
//!
//! ```text
//! MATRIX_LR = 0.04  # comment                 Python (an annotation `NAME: float = ...` too)
//! TOTAL_BATCH_SIZE = 2**19
//! const MATRIX_LR: f64 = 0.04; // comment     Rust (also `pub`, `pub(crate)`, `static`)
//! pub const DEPTH: usize = 8;
//! ```
//!
//! The value is the text up to the comment (`#`, `//`) or the `;`. A rewrite replaces those bytes
//! only, keeps a numeric literal's style (`2**19`, `1 << 19`, `3e-4`, `524_288`, `8usize`, a
//! decimal point where the type is a float) and moves the spaces before a trailing comment so
//! that aligned comments stay aligned.

use std::ops::Range;

use super::knob::{Domain, Value, format_number};

/// Where a knob's value sits in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// 1-based line and column of the value.
    pub line: usize,
    pub column: usize,
    /// Byte range of the value in the file's text.
    pub span: Range<usize>,
    /// The value as written.
    pub literal: String,
    /// The declared type of a Rust constant (`f64`, `usize`), when there is one.
    pub declared_type: Option<String>,
}

/// Why a knob cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocateError {
    Missing,
    /// Assigned on each of these lines (1-based).
    Ambiguous(Vec<usize>),
}

impl LocateError {
    /// The message for `name` in `file`, with the fix.
    pub fn describe(&self, name: &str, file: &str) -> String {
        match self {
            LocateError::Missing => format!(
                "`{name}` is not assigned in `{file}`; a knob needs one line like \
                 `{name} = 0.04` or `const {name}: f64 = 0.04;`"
            ),
            LocateError::Ambiguous(lines) => format!(
                "`{name}` is assigned {} times in `{file}` (lines {}); a knob must be assigned \
                 exactly once",
                lines.len(),
                lines
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Finds the one assignment of `name` in `text`.
pub fn locate(text: &str, name: &str) -> Result<Site, LocateError> {
    let mut sites = Vec::new();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        if let Some(site) = assignment(content, name, index + 1, offset) {
            sites.push(site);
        }
        offset += line.len();
    }
    match sites.len() {
        0 => Err(LocateError::Missing),
        1 => Ok(sites.remove(0)),
        _ => Err(LocateError::Ambiguous(
            sites.iter().map(|s| s.line).collect(),
        )),
    }
}

/// The assignment of `name` on this line, if the line is one.
fn assignment(line: &str, name: &str, number: usize, offset: usize) -> Option<Site> {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let (rust, after_keyword) = match strip_rust_keywords(rest) {
        Some(after) => (true, after),
        None => (false, rest),
    };
    let after_name = after_keyword.strip_prefix(name)?;
    if after_name.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let trimmed = after_name.trim_start();
    let (declared_type, after_type) = match trimmed.strip_prefix(':') {
        Some(annotated) => {
            let equals = annotated.find('=')?;
            (
                Some(annotated[..equals].trim().to_string()),
                &annotated[equals..],
            )
        }
        None => (None, trimmed),
    };
    let after_equals = after_type.strip_prefix('=')?;
    if after_equals.starts_with('=') {
        return None;
    }
    let value_text = after_equals.trim_start();
    let start = line.len() - value_text.len();
    let end = start + value_end(value_text, rust);
    let literal = line[start..end].trim_end();
    if literal.is_empty() {
        return None;
    }
    Some(Site {
        line: number,
        column: line[..start].chars().count() + 1,
        span: offset + start..offset + start + literal.len(),
        literal: literal.to_string(),
        declared_type: declared_type.filter(|_| rust),
    })
}

/// `pub const `, `pub(crate) static mut `, `const `... stripped; `None` when the line is not a
/// Rust item of that kind.
fn strip_rust_keywords(text: &str) -> Option<&str> {
    let mut rest = text;
    if let Some(after) = rest.strip_prefix("pub") {
        let after = match after.strip_prefix('(') {
            Some(inner) => &inner[inner.find(')')? + 1..],
            None => after,
        };
        if !after.starts_with([' ', '\t']) {
            return None;
        }
        rest = after.trim_start();
    }
    let after = rest
        .strip_prefix("const")
        .or_else(|| rest.strip_prefix("static"))?;
    if !after.starts_with([' ', '\t']) {
        return None;
    }
    let after = after.trim_start();
    Some(match after.strip_prefix("mut") {
        Some(more) if more.starts_with([' ', '\t']) => more.trim_start(),
        _ => after,
    })
}

/// Where the value ends: at a comment or (Rust) the `;`, outside string literals.
fn value_end(text: &str, rust: bool) -> usize {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'#' if !rust => return i,
                b';' if rust => return i,
                b'/' if bytes.get(i + 1) == Some(&b'/') => return i,
                _ => {}
            },
        }
        i += 1;
    }
    bytes.len()
}

/// `text` with the value at `site` replaced by `literal`. When a comment follows after more than
/// two spaces (comments aligned in a column), those spaces absorb the change in length so the
/// comment keeps its column, as long as two spaces remain; otherwise the spaces stay as they are.
pub fn rewrite(text: &str, site: &Site, literal: &str) -> String {
    let line_end = text[site.span.end..]
        .find('\n')
        .map_or(text.len(), |i| site.span.end + i);
    let tail = &text[site.span.end..line_end];
    let terminator = if tail.starts_with(';') { 1 } else { 0 };
    let after_terminator = &tail[terminator..];
    let gap = after_terminator.len() - after_terminator.trim_start_matches([' ']).len();
    let has_comment = {
        let rest = &after_terminator[gap..];
        gap > 0 && (rest.starts_with('#') || rest.starts_with("//"))
    };
    let mut out = String::with_capacity(text.len() + literal.len());
    out.push_str(&text[..site.span.start]);
    out.push_str(literal);
    if has_comment && gap > 2 {
        let old_width = site.literal.chars().count() as isize;
        let new_width = literal.chars().count() as isize;
        let keep_column = gap as isize + old_width - new_width;
        out.push_str(&tail[..terminator]);
        out.push_str(&" ".repeat(keep_column.max(2) as usize));
        out.push_str(&after_terminator[gap..]);
        out.push_str(&text[line_end..]);
    } else {
        out.push_str(&text[site.span.end..]);
    }
    out
}

/// Reads a literal as a value of `domain`: numbers as Python and Rust write them (`0.04`,
/// `3e-4`, `524_288`, `2**19`, `1 << 19`, `8usize`), choices as one of the declared literals.
pub fn parse(domain: &Domain, literal: &str) -> Result<Value, String> {
    let literal = literal.trim();
    if let Domain::Choice { choices } = domain {
        return choices
            .iter()
            .position(|c| c == literal)
            .map(Value::Choice)
            .ok_or_else(|| {
                format!(
                    "`{literal}` is not one of the choices {}",
                    choices
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
    }
    parse_number(literal)
        .map(Value::Number)
        .ok_or_else(|| format!("cannot read `{literal}` as a number; write it as a literal"))
}

fn parse_number(literal: &str) -> Option<f64> {
    let (body, _) = split_suffix(literal);
    let plain = body.replace('_', "");
    let plain = plain.trim();
    if let Some((base, exponent)) = plain.split_once("**") {
        let base: f64 = base.trim().parse().ok()?;
        let exponent: f64 = exponent.trim().parse().ok()?;
        return Some(base.powf(exponent)).filter(|v| v.is_finite());
    }
    if let Some((one, shift)) = plain.split_once("<<") {
        let one: u64 = one.trim().parse().ok()?;
        let shift: u32 = shift.trim().parse().ok()?;
        return one.checked_shl(shift).map(|v| v as f64);
    }
    if plain.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.' || c == '+') {
        return plain.parse::<f64>().ok().filter(|v| v.is_finite());
    }
    None
}

/// A Rust type suffix (`8usize`, `0.5_f32`) split off the number.
fn split_suffix(literal: &str) -> (&str, &str) {
    const SUFFIXES: [&str; 14] = [
        "usize", "isize", "u128", "i128", "f32", "f64", "u64", "i64", "u32", "i32", "u16", "i16",
        "u8", "i8",
    ];
    for suffix in SUFFIXES {
        if let Some(body) = literal.strip_suffix(suffix)
            && body.ends_with(|c: char| c.is_ascii_digit() || c == '_' || c == '.')
            && !literal.contains(['x', 'X'])
        {
            return (body, &literal[body.len()..]);
        }
    }
    (literal, "")
}

/// Writes `value` in the style of the literal it replaces, and of `first`, the knob's literal
/// before the search changed it: digits grouped with underscores there (`1_000`) stay grouped
/// even after a value too small to group (`425`) has been written in between.
pub fn format_like(domain: &Domain, value: Value, old: &Site, first: &str) -> String {
    let (first_body, _) = split_suffix(first);
    let (body, _) = split_suffix(&old.literal);
    if first_body.trim_end_matches('_').contains('_') && !body.trim_end_matches('_').contains('_') {
        let text = format(domain, value, old);
        let (digits, rest) = split_suffix(&text);
        let plain = digits.trim_end_matches('_');
        let is_integer = !plain.is_empty()
            && plain
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit());
        if is_integer {
            let tail = &digits[plain.len()..];
            return format!("{}{tail}{rest}", group_thousands(plain));
        }
        return text;
    }
    format(domain, value, old)
}

/// Writes `value` in the style of the literal it replaces.
pub fn format(domain: &Domain, value: Value, old: &Site) -> String {
    let number = match (domain, value) {
        (Domain::Choice { choices }, Value::Choice(i)) => return choices[i].clone(),
        (_, Value::Number(v)) => v,
        (_, Value::Choice(_)) => return old.literal.clone(),
    };
    let (body, suffix) = split_suffix(&old.literal);
    let suffix_sep = if body.ends_with('_') { "_" } else { "" };
    let body = body.trim_end_matches('_');
    let float_typed = matches!(old.declared_type.as_deref(), Some("f64" | "f32"))
        || matches!(suffix, "f64" | "f32")
        || (old.declared_type.is_none()
            && suffix.is_empty()
            && !body.contains("**")
            && (body.contains('.') || body.contains(['e', 'E'])));
    let whole = number.fract() == 0.0 && number.abs() < 1e15;

    let text = if matches!(domain, Domain::Pow2 { .. }) && body.contains("**") {
        let (base, _) = body.split_once("**").unwrap_or_default();
        let spaced = body.contains(" ** ");
        let base = base.trim();
        let exponent = number.log2().round() as i64;
        if spaced {
            format!("{base} ** {exponent}")
        } else {
            format!("{base}**{exponent}")
        }
    } else if matches!(domain, Domain::Pow2 { .. }) && body.contains("<<") {
        let (one, _) = body.split_once("<<").unwrap_or_default();
        let spaced = body.contains(" << ");
        let exponent = number.log2().round() as i64;
        if spaced {
            format!("{} << {exponent}", one.trim())
        } else {
            format!("{}<<{exponent}", one.trim())
        }
    } else if whole && !float_typed {
        let digits = format!("{}", number as i64);
        if body.contains('_') {
            group_thousands(&digits)
        } else {
            digits
        }
    } else if body.contains(['e', 'E']) {
        // `3e-4` is a float literal in Rust and Python alike: no decimal point needed.
        let text = format!("{number:e}");
        if body.contains('E') {
            text.replace('e', "E")
        } else {
            text
        }
    } else {
        let text = format_number(number);
        if float_typed && !text.contains(['.', 'e', 'E']) {
            format!("{text}.0")
        } else {
            text
        }
    };
    format!("{text}{suffix_sep}{suffix}")
}

fn group_thousands(digits: &str) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", digits),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = "\
# Hyperparameters
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
WINDOW_PATTERN = \"SSSL\" # sliding window pattern
WARMUP_RATIO: float = 0.0
DEPTH = 8
MATRIX_LR_SCALE = MATRIX_LR * 2
if DEPTH == 8:
    pass
";

    const RUST: &str = "\
/// Hyperparameters.
const MATRIX_LR: f64 = 0.04; // learning rate for matrix parameters
pub const DEPTH: usize = 8;
pub(crate) const BATCH_SIZE: usize = 1 << 5;
const WEIGHT_DECAY: f32 = 1e-2;   // decoupled
const USE_QK_NORM: bool = true;
static ACTIVATION: &str = \"relu2\"; // \"gelu\" is slower
const STEPS: u64 = 10_000;
";

    fn edit(text: &str, name: &str, domain: &Domain, value: Value) -> String {
        let site = locate(text, name).unwrap();
        let literal = format(domain, value, &site);
        rewrite(text, &site, &literal)
    }

    const LR: Domain = Domain::Float {
        min: 1e-4,
        max: 1.0,
        log: true,
    };

    #[test]
    fn finds_python_assignments_and_their_values() {
        let site = locate(PYTHON, "MATRIX_LR").unwrap();
        assert_eq!((site.line, site.column), (4, 13));
        assert_eq!(&PYTHON[site.span.clone()], "0.04");
        assert_eq!(locate(PYTHON, "TOTAL_BATCH_SIZE").unwrap().literal, "2**19");
        assert_eq!(
            locate(PYTHON, "WINDOW_PATTERN").unwrap().literal,
            "\"SSSL\""
        );
        assert_eq!(locate(PYTHON, "WARMUP_RATIO").unwrap().literal, "0.0");
        // `DEPTH == 8` is a comparison, `MATRIX_LR_SCALE` another name.
        assert_eq!(locate(PYTHON, "DEPTH").unwrap().line, 7);
        assert_eq!(locate(PYTHON, "LR"), Err(LocateError::Missing));
        let twice = format!("{PYTHON}DEPTH = 12\n");
        assert_eq!(
            locate(&twice, "DEPTH"),
            Err(LocateError::Ambiguous(vec![7, 11]))
        );
    }

    #[test]
    fn finds_rust_constants_and_their_types() {
        let site = locate(RUST, "MATRIX_LR").unwrap();
        assert_eq!(site.literal, "0.04");
        assert_eq!(site.declared_type.as_deref(), Some("f64"));
        assert_eq!(locate(RUST, "DEPTH").unwrap().literal, "8");
        assert_eq!(locate(RUST, "BATCH_SIZE").unwrap().literal, "1 << 5");
        assert_eq!(locate(RUST, "ACTIVATION").unwrap().literal, "\"relu2\"");
        assert_eq!(locate(RUST, "USE_QK_NORM").unwrap().literal, "true");
    }

    #[test]
    fn python_edits_change_exactly_the_value_and_keep_comments_aligned() {
        let out = edit(PYTHON, "MATRIX_LR", &LR, Value::Number(0.06));
        assert_eq!(
            out,
            PYTHON.replace(
                "MATRIX_LR = 0.04        # learning",
                "MATRIX_LR = 0.06        # learning"
            )
        );
        let out = edit(PYTHON, "MATRIX_LR", &LR, Value::Number(0.0425));
        assert_eq!(
            out,
            PYTHON.replace(
                "MATRIX_LR = 0.04        # learning",
                "MATRIX_LR = 0.0425      # learning"
            )
        );
        // Longer than the room before the comment: the comment moves, keeping its spaces.
        let out = edit(PYTHON, "ASPECT_RATIO", &LR, Value::Number(0.000123456));
        assert!(
            out.contains("\nASPECT_RATIO = 0.000123456  # model_dim"),
            "{out}"
        );
        let pow2 = Domain::Pow2 { min: 10, max: 22 };
        let out = edit(
            PYTHON,
            "TOTAL_BATCH_SIZE",
            &pow2,
            Value::Number(2f64.powi(18)),
        );
        assert_eq!(out, PYTHON.replace("= 2**19 # ~524K", "= 2**18 # ~524K"));
        let ratio = Domain::Float {
            min: 0.0,
            max: 0.5,
            log: false,
        };
        let out = edit(PYTHON, "WARMUP_RATIO", &ratio, Value::Number(0.1));
        assert_eq!(
            out,
            PYTHON.replace("WARMUP_RATIO: float = 0.0\n", "WARMUP_RATIO: float = 0.1\n")
        );
        let out = edit(PYTHON, "WARMUP_RATIO", &ratio, Value::Number(0.0));
        assert_eq!(out, PYTHON);
        let pattern = Domain::Choice {
            choices: vec!["\"SSSL\"".into(), "\"LLLL\"".into()],
        };
        let out = edit(PYTHON, "WINDOW_PATTERN", &pattern, Value::Choice(1));
        assert_eq!(
            out,
            PYTHON.replace("= \"SSSL\" # sliding", "= \"LLLL\" # sliding")
        );
        let depth = Domain::Int { min: 2, max: 32 };
        let out = edit(PYTHON, "DEPTH", &depth, Value::Number(12.0));
        assert_eq!(out, PYTHON.replace("DEPTH = 8\n", "DEPTH = 12\n"));
    }

    #[test]
    fn rust_edits_keep_the_literal_valid_for_its_type() {
        let out = edit(RUST, "MATRIX_LR", &LR, Value::Number(1.0));
        assert_eq!(
            out,
            RUST.replace(
                "const MATRIX_LR: f64 = 0.04; // learning",
                "const MATRIX_LR: f64 = 1.0; // learning"
            )
        );
        let depth = Domain::Int { min: 2, max: 32 };
        let out = edit(RUST, "DEPTH", &depth, Value::Number(12.0));
        assert_eq!(
            out,
            RUST.replace(
                "pub const DEPTH: usize = 8;",
                "pub const DEPTH: usize = 12;"
            )
        );
        let batch = Domain::Pow2 { min: 0, max: 10 };
        let out = edit(RUST, "BATCH_SIZE", &batch, Value::Number(128.0));
        assert_eq!(out, RUST.replace("= 1 << 5;", "= 1 << 7;"));
        let decay = Domain::Float {
            min: 1e-4,
            max: 1.0,
            log: true,
        };
        let out = edit(RUST, "WEIGHT_DECAY", &decay, Value::Number(0.0031));
        assert_eq!(
            out,
            RUST.replace(
                "const WEIGHT_DECAY: f32 = 1e-2;   // decoupled",
                "const WEIGHT_DECAY: f32 = 3.1e-3;  // decoupled"
            )
        );
        let flag = Domain::Choice {
            choices: vec!["true".into(), "false".into()],
        };
        let out = edit(RUST, "USE_QK_NORM", &flag, Value::Choice(1));
        assert_eq!(
            out,
            RUST.replace("USE_QK_NORM: bool = true;", "USE_QK_NORM: bool = false;")
        );
        let activation = Domain::Choice {
            choices: vec!["\"relu2\"".into(), "\"gelu\"".into()],
        };
        let out = edit(RUST, "ACTIVATION", &activation, Value::Choice(1));
        assert_eq!(
            out,
            RUST.replace(
                "static ACTIVATION: &str = \"relu2\"; // \"gelu\"",
                "static ACTIVATION: &str = \"gelu\"; // \"gelu\""
            )
        );
        let steps = Domain::Int {
            min: 1000,
            max: 100_000,
        };
        let out = edit(RUST, "STEPS", &steps, Value::Number(25_000.0));
        assert_eq!(out, RUST.replace("10_000;", "25_000;"));
    }

    #[test]
    fn the_reference_trainers_constants_stay_valid_rust() {
        // The form of reference/nanochat's src/train.rs block of constants.
        let text = "\
const DEPTH: usize = 4; // number of transformer blocks
const ROPE_BASE: f64 = 10000.0; // base of the rotary embedding frequencies
const WEIGHT_DECAY: f64 = 0.0; // decoupled weight decay of the matrices
";
        let base = Domain::Float {
            min: 1000.0,
            max: 100_000.0,
            log: true,
        };
        let out = edit(text, "ROPE_BASE", &base, Value::Number(20000.0));
        assert!(
            out.contains("const ROPE_BASE: f64 = 20000.0; // base"),
            "{out}"
        );
        let decay = Domain::Float {
            min: 0.0,
            max: 0.3,
            log: false,
        };
        let out = edit(text, "WEIGHT_DECAY", &decay, Value::Number(0.1));
        assert!(
            out.contains("const WEIGHT_DECAY: f64 = 0.1; // decoupled"),
            "{out}"
        );
        let depth = Domain::Int { min: 2, max: 12 };
        let out = edit(text, "DEPTH", &depth, Value::Number(6.0));
        assert_eq!(out, text.replace("usize = 4;", "usize = 6;"));
    }

    #[test]
    fn literals_read_as_python_and_rust_write_them() {
        let number = |text: &str| parse(&LR, text).ok();
        assert_eq!(number("0.04"), Some(Value::Number(0.04)));
        assert_eq!(number("3e-4"), Some(Value::Number(3e-4)));
        assert_eq!(number("2**19"), Some(Value::Number(524_288.0)));
        assert_eq!(number("2 ** 19"), Some(Value::Number(524_288.0)));
        assert_eq!(number("1 << 19"), Some(Value::Number(524_288.0)));
        assert_eq!(number("524_288"), Some(Value::Number(524_288.0)));
        assert_eq!(number("8usize"), Some(Value::Number(8.0)));
        assert_eq!(number("0.5_f32"), Some(Value::Number(0.5)));
        assert_eq!(number("-1"), Some(Value::Number(-1.0)));
        assert_eq!(number("LR * 2"), None);
        assert_eq!(number("float('nan')"), None);
        let flag = Domain::Choice {
            choices: vec!["True".into(), "False".into()],
        };
        assert_eq!(parse(&flag, "False"), Ok(Value::Choice(1)));
        assert_eq!(
            parse(&flag, "None").unwrap_err(),
            "`None` is not one of the choices `True`, `False`"
        );
    }

    #[test]
    fn digit_groups_survive_a_value_too_small_to_group() {
        let domain = Domain::Int { min: 0, max: 5000 };
        let first = "WARMUP_STEPS = 1_000\n";
        let site = locate(first, "WARMUP_STEPS").unwrap();
        let small = format_like(&domain, Value::Number(425.0), &site, &site.literal);
        assert_eq!(small, "425");
        let text = rewrite(first, &site, &small);
        let now = locate(&text, "WARMUP_STEPS").unwrap();
        assert_eq!(
            format_like(&domain, Value::Number(1500.0), &now, "1_000"),
            "1_500"
        );
        let rust = "const WARMUP_STEPS: usize = 425_usize;\n";
        let site = locate(rust, "WARMUP_STEPS").unwrap();
        assert_eq!(
            format_like(&domain, Value::Number(12000.0), &site, "1_000_usize"),
            "12_000_usize"
        );
    }
}
