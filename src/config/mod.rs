//! Pipeline files: read, check against the schema, deserialize (`file`), resolve (`resolve`).
//!
//! `load` is the one entry point; it reports every problem it can find, each located at
//! `file:line:col` with its key path.

pub mod diagnostic;
pub mod duration;
pub mod file;
pub mod resolve;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, InvalidPipeline, KeyPath, Problem};
pub use duration::HumanDuration;
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
    let text = std::fs::read_to_string(path).map_err(|err| {
        fail(vec![Diagnostic {
            file: path.to_path_buf(),
            position: None,
            key: KeyPath::root(),
            message: format!("cannot read the pipeline file: {err}"),
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
        let mut message = format!("invalid TOML: {}", err.message().trim_end());
        if let Some(at) = err
            .span()
            .map(|span| &text[span])
            .filter(|at| is_short_word(at))
        {
            message.push_str(&format!(", at `{at}`"));
        }
        fail(vec![map.locate_span(path, err.span(), message)])
    })?;
    // The schema finds every structural problem; when the file still deserializes (the schema is
    // stricter than the types, e.g. on ranges), resolving it finds the semantic ones too.
    let mut problems = crate::schema::check(&document);
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
        Problem::new(path, err.into_inner().message().trim_end().to_string())
    })
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    resolve::normalize(&joined)
}
