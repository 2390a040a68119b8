//! Problems found in a pipeline file, located by key path and rendered as `file:line:col: ...`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the document, e.g. `metric.regex` or `knob[1].name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// Parses the dotted form used in code: `"metric.extra.peak_vram_mb"`, `"knob.1.name"`.
    /// Numeric parts are indices.
    pub fn parse(dotted: &str) -> Self {
        if dotted.is_empty() {
            return KeyPath::root();
        }
        KeyPath(
            dotted
                .split('.')
                .map(|part| match part.parse() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key(part.to_string()),
                })
                .collect(),
        )
    }

    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem before it is located in the file: which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: KeyPath,
    /// Point at the key itself rather than its value (for unknown keys).
    pub at_key: bool,
    pub message: String,
}

impl Problem {
    pub fn new(key: KeyPath, message: impl Into<String>) -> Self {
        Problem {
            key,
            at_key: false,
            message: message.into(),
        }
    }

    /// A problem at the key given in dotted form, e.g. `"metric.regex"`.
    pub fn at(dotted: &str, message: impl Into<String>) -> Self {
        Problem::new(KeyPath::parse(dotted), message)
    }
}

/// A problem located in its file, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column, when the problem could be placed.
    pub position: Option<(usize, usize)>,
    pub key: KeyPath,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.key.is_root() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct InvalidPipeline {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    lines.join("\n")
}

/// The parsed document with its spans, used to turn key paths into lines and columns.
pub struct SourceMap<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> SourceMap<'a> {
    /// A map of `text`; when the text is not valid TOML nothing can be located but byte spans.
    pub fn new(text: &'a str) -> Self {
        SourceMap {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    pub fn locate(&self, file: &Path, problem: Problem) -> Diagnostic {
        let span = self.span(&problem.key, problem.at_key);
        Diagnostic {
            file: file.to_path_buf(),
            position: span.map(|span| self.line_col(span.start)),
            key: problem.key,
            message: problem.message,
        }
    }

    /// Locates a problem whose byte span is already known (TOML syntax errors).
    pub fn locate_span(
        &self,
        file: &Path,
        span: Option<Range<usize>>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            position: span.map(|span| self.line_col(span.start)),
            key: KeyPath::root(),
            message,
        }
    }

    /// The key path of the innermost value whose text holds byte `offset`, when the document
    /// parsed that far (an integer too large for TOML still parses: it is read lazily).
    pub fn key_at(&self, offset: usize) -> Option<KeyPath> {
        fn search(value: &Spanned<DeValue>, offset: usize, path: KeyPath) -> Option<KeyPath> {
            match value.get_ref() {
                DeValue::Table(table) => table
                    .iter()
                    .find_map(|(key, value)| search(value, offset, path.key(key.get_ref()))),
                DeValue::Array(array) => array
                    .iter()
                    .enumerate()
                    .find_map(|(i, value)| search(value, offset, path.index(i))),
                _ => value.span().contains(&offset).then_some(path),
            }
        }
        let root = self.root.as_ref()?;
        root.get_ref()
            .iter()
            .find_map(|(key, value)| search(value, offset, KeyPath::root().key(key.get_ref())))
    }

    /// The span of the deepest part of `path` present in the document: a missing key is reported
    /// at the table that should hold it, a missing top-level key at the start of the file.
    fn span(&self, path: &KeyPath, at_key: bool) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: Option<&DeTable> = Some(root.get_ref());
        let mut value: Option<&Spanned<DeValue>> = None;
        let mut best = Some(0..0);
        for (i, segment) in path.0.iter().enumerate() {
            let last = i + 1 == path.0.len();
            let next = match (segment, table, value) {
                (Segment::Key(key), Some(table), _) => {
                    let Some((spanned_key, found)) = table.get_key_value(key.as_str()) else {
                        return best;
                    };
                    if last && at_key {
                        return Some(spanned_key.span());
                    }
                    found
                }
                (Segment::Index(index), _, Some(current)) => match current.get_ref() {
                    DeValue::Array(array) => match array.get(*index) {
                        Some(element) => element,
                        None => return best,
                    },
                    _ => return best,
                },
                _ => return best,
            };
            best = Some(next.span());
            value = Some(next);
            table = match next.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`; an offset past the
/// end is the end, one inside a character is that character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A byte count as limits are written in messages: `1 MiB`, `64 KiB`, `300 bytes`.
pub fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"x\"\n\n[metric]\nregex = 'a'\n\n[[knob]]\nname = \"A\"\n\n[[knob]]\nname = \"B\"\n";

    fn position(dotted: &str, at_key: bool) -> Option<(usize, usize)> {
        let map = SourceMap::new(TEXT);
        let mut problem = Problem::at(dotted, "x");
        problem.at_key = at_key;
        map.locate(Path::new("p.toml"), problem).position
    }

    #[test]
    fn locates_values_keys_and_array_elements() {
        assert_eq!(position("name", false), Some((1, 8)));
        assert_eq!(position("name", true), Some((1, 1)));
        assert_eq!(position("metric.regex", false), Some((4, 9)));
        assert_eq!(position("knob.1.name", false), Some((10, 8)));
    }

    #[test]
    fn missing_keys_point_at_their_table() {
        assert_eq!(position("metric.goal", false), Some((3, 1)));
        assert_eq!(position("knob.0", false), Some((6, 1)));
    }

    #[test]
    fn renders_file_line_col_key_and_message() {
        let map = SourceMap::new(TEXT);
        let shown = map
            .locate(Path::new("p.toml"), Problem::at("metric.regex", "bad"))
            .to_string();
        assert_eq!(shown, "p.toml:4:9: metric.regex: bad");
        assert_eq!(KeyPath::parse("knob.1.name").to_string(), "knob[1].name");
    }
}
