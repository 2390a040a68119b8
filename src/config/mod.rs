//! Pipeline files: read, check against the JSON Schema (`schema`), deserialize (`file`), resolve
//! (`resolve`) into the plain types the rest of arun uses: the metric spec (`metric`), the knobs
//! and their assignments in the editable files (`knob`, `knob_site`), the prompt templates
//! (`prompt`) and the agents' command lines (`presets`).
//!
//! `config` is the leaf of the crate: it imports nothing from the other layers (only the text
//! helpers of `crate::text`), so anything may use it. `load` is the one entry point; it reports
//! every problem it can find, each located at `file:line:col` with its key path.

pub mod diagnostic;
pub mod duration;
pub mod file;
pub mod knob;
pub mod knob_site;
pub mod metric;
pub mod presets;
pub mod prompt;
pub mod resolve;
pub mod schema;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, InvalidPipeline, KeyPath, Problem};
pub use duration::HumanDuration;
pub use metric::{Capture, Goal, MemoryUnit, MetricSpec};
pub use resolve::Pipeline;

use diagnostic::SourceMap;
use file::PipelineFile;

/// Reads, checks and resolves the pipeline at `path`.
pub fn load(path: &Path) -> Result<Pipeline, InvalidPipeline> {
    let absolute = absolute(path);
    let fail = |diagnostics| InvalidPipeline {
        file: path.to_path_buf(),
        diagnostics,
    };
    let text = read(path).map_err(|(position, message)| {
        fail(vec![Diagnostic {
            file: path.to_path_buf(),
            position,
            key: KeyPath::root(),
            message,
        }])
    })?;
    let map = SourceMap::new(&text);
    let locate_all = |problems: Vec<Problem>| {
        let mut diagnostics: Vec<Diagnostic> =
            problems.into_iter().map(|p| map.locate(path, p)).collect();
        diagnostics.sort_by_key(|d| d.position);
        fail(diagnostics)
    };

    let document: serde_json::Value = toml::from_str(&text).map_err(|err| {
        let at = err.span().and_then(|span| text.get(span));
        let mut diagnostic = match at.filter(|at| is_integer(at)) {
            // The one error of a document that parses: an integer beyond 64 bits.
            Some(number) => map.locate_span(
                path,
                err.span(),
                format!(
                    "the integer `{number}` does not fit in 64 bits: TOML integers go from {} \
                     to {}",
                    i64::MIN,
                    i64::MAX
                ),
            ),
            None => {
                let mut message = format!("invalid TOML: {}", err.message().trim_end());
                if let Some(at) = at.filter(|at| is_short_word(at)) {
                    message.push_str(&format!(", at `{at}`"));
                }
                map.locate_span(path, err.span(), message)
            }
        };
        if let Some(key) = err.span().and_then(|span| map.key_at(span.start)) {
            diagnostic.key = key;
        }
        fail(vec![diagnostic])
    })?;
    // The schema finds every structural problem; when the file still deserializes (the schema is
    // stricter than the types, e.g. on ranges), resolving it finds the semantic ones too.
    let mut problems = schema::check(&document);
    let raw = match deserialize(&text) {
        Ok(raw) => raw,
        Err(problem) if problems.is_empty() => return Err(locate_all(vec![problem])),
        Err(_) => return Err(locate_all(problems)),
    };
    match resolve::resolve(raw, &absolute) {
        Ok(pipeline) if problems.is_empty() => Ok(pipeline),
        Ok(_) => Err(locate_all(problems)),
        Err(more) => {
            let reported: Vec<KeyPath> = problems.iter().map(|p| p.key.clone()).collect();
            problems.extend(more.into_iter().filter(|p| !reported.contains(&p.key)));
            Err(locate_all(problems))
        }
    }
}

/// The most a pipeline file may hold. Real ones are a few KiB; long instructions belong in
/// `proposer.instructions-file`, which has its own limit.
pub const MAX_PIPELINE_BYTES: u64 = 1024 * 1024;

/// The file's text, read only up to `MAX_PIPELINE_BYTES` (a huge file or `/dev/zero` is refused
/// before it is parsed), or why not, with the line and column of the first byte that is not
/// UTF-8.
fn read(path: &Path) -> Result<String, (Option<(usize, usize)>, String)> {
    use std::io::Read;
    let cannot = |err: std::io::Error| (None, format!("cannot read the pipeline file: {err}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_PIPELINE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PIPELINE_BYTES {
        return Err((
            None,
            format!(
                "the pipeline file is larger than {}, the most a pipeline may be; keep long \
                 instructions in a file named by `proposer.instructions-file`",
                diagnostic::size(MAX_PIPELINE_BYTES as usize)
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let bytes = err.as_bytes();
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        (
            Some(diagnostic::line_col(before, valid)),
            format!(
                "the file is not valid UTF-8 (byte `0x{:02X}`); save it as UTF-8",
                bytes[valid]
            ),
        )
    })
}

/// Whether `text` is a TOML integer literal: decimal with an optional sign, or `0x`, `0o`, `0b`.
fn is_integer(text: &str) -> bool {
    let (digits, radix) = match text.get(..2) {
        Some("0x") => (&text[2..], 16),
        Some("0o") => (&text[2..], 8),
        Some("0b") => (&text[2..], 2),
        _ => (text.strip_prefix(['+', '-']).unwrap_or(text), 10),
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix) || c == '_')
}

fn is_short_word(text: &str) -> bool {
    !text.is_empty() && text.len() <= 40 && !text.contains('\n')
}

/// Deserializes a document the schema accepted; what the schema cannot express (a number too
/// large for its type) still fails here, with its key path.
fn deserialize(text: &str) -> Result<PipelineFile, Problem> {
    let deserializer = toml::Deserializer::parse(text).map_err(|err| {
        Problem::new(
            KeyPath::root(),
            format!("invalid TOML: {}", err.message().trim_end()),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = KeyPath::parse(&err.path().to_string().replace('[', ".").replace(']', ""));
        Problem::new(path, in_toml_terms(err.into_inner().message().trim_end()))
    })
}

/// serde's message for a number its Rust type cannot hold (`invalid value: integer `N`,
/// expected u32`), said with the limit instead; other messages as they are.
fn in_toml_terms(message: &str) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid value: integer `")
        .or_else(|| message.strip_prefix("invalid type: floating point `"))
        .and_then(|rest| rest.split_once("`, expected "))
    else {
        return message.to_string();
    };
    let (min, max): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return message.to_string(),
    };
    if message.starts_with("invalid type") {
        return format!("expected an integer, found the float `{found}`");
    }
    match found.parse::<i128>() {
        Ok(n) if n < min => format!("must be at least {min}, found the integer `{found}`"),
        Ok(n) if n > max => format!("must be at most {max}, found the integer `{found}`"),
        _ => message.to_string(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    resolve::normalize(&joined)
}
