//! Edits a model writes as text, applied to the editable files all-or-nothing: SEARCH/REPLACE
//! blocks (the format aider made common) or a whole file in a fenced block after its path.
//!
//! What may be edited is checked before anything is applied: a block headed by a path that is
//! not an editable file is refused (never redirected to another file), a whole file is accepted
//! only for a file the prompt showed whole and only when it is not a snippet (see [`parse`] and
//! [`apply`]), and reasoning sections (`<think>`) are not read at all.
//!
//! A SEARCH section must match one place of its file: exactly, else line by line ignoring
//! trailing whitespace, else ignoring indentation (the replacement is then re-indented like the
//! file). When any block fails nothing is written, and the error quotes the nearest lines of the
//! file so that the model can correct itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

/// One edit of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the lines matching `search` with `replace`.
    Replace {
        path: String,
        search: String,
        replace: String,
    },
    /// Replace the whole file.
    WholeFile { path: String, content: String },
}

impl Edit {
    pub fn path(&self) -> &str {
        match self {
            Edit::Replace { path, .. } | Edit::WholeFile { path, .. } => path,
        }
    }
}

fn is_marker(line: &str, character: char, word: &str) -> bool {
    let line = line.trim_end();
    let count = line.chars().take_while(|&c| c == character).count();
    (5..=9).contains(&count) && line[count..].trim() == word
}

fn is_search(line: &str) -> bool {
    is_marker(line, '<', "SEARCH")
}

fn is_divider(line: &str) -> bool {
    is_marker(line, '=', "")
}

fn is_replace(line: &str) -> bool {
    is_marker(line, '>', "REPLACE")
}

/// The backticks of a fence opening line (```` ```python ````), if it is one.
fn fence_of(line: &str) -> Option<&str> {
    let line = line.trim_end();
    let ticks = line.len() - line.trim_start_matches('`').len();
    (ticks >= 3 && !line[ticks..].contains('`')).then(|| &line[..ticks])
}

/// A line naming a file, with the decoration models add removed: `` `train.py` ``, `**train.py**`,
/// `### train.py`, `train.py:`.
fn named_path(line: &str) -> String {
    let name = line
        .trim()
        .trim_start_matches('#')
        .trim()
        .trim_matches(|c| c == '`' || c == '*' || c == '"' || c == '\'')
        .trim_end_matches(':')
        .trim_matches(|c| c == '`' || c == '*')
        .trim();
    name.strip_prefix("./").unwrap_or(name).to_string()
}

/// The file a header line names, if it names one: one word (decoration removed) that has a `/`
/// in it or ends with an extension: `prepare.py`, `../x.py`, `/etc/hosts`. A line of prose
/// ("Here is the change:", "Done.") or a number (`0.05`) names no file.
fn header_file(line: &str) -> Option<String> {
    let name = named_path(line);
    let one_word = !name.is_empty() && !name.contains(char::is_whitespace);
    let has_extension = name.rsplit_once('.').is_some_and(|(stem, extension)| {
        !stem.is_empty() && extension.starts_with(|c: char| c.is_ascii_alphabetic())
    });
    let pathlike =
        one_word && !name.ends_with('.') && (name.contains(['/', '\\']) || has_extension);
    pathlike.then_some(name)
}

/// What an answer may change, and how.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The files it may change (paths relative to the repository).
    pub editable: &'a [String],
    /// Whether whole files are accepted at all: the prompt offered them (the editable files are
    /// short enough to be written out whole).
    pub whole_files: bool,
    /// Editable files the prompt showed only in part: never accepted whole, since a whole file
    /// written from the part would delete the rest.
    pub shown_in_part: &'a [String],
}

impl<'a> Scope<'a> {
    /// Whether `path` may be given as a whole new file.
    pub fn may_be_whole(&self, path: &str) -> bool {
        self.whole_files
            && self.editable.iter().any(|p| p == path)
            && !self.shown_in_part.iter().any(|p| p == path)
    }

    /// The file a header line names: `Ok` with an editable file, `Err` with any other path;
    /// `None` when the line names no file.
    fn named_file(&self, line: &str) -> Option<Result<&'a String, String>> {
        let name = named_path(line);
        match self.editable.iter().find(|path| **path == name) {
            Some(path) => Some(Ok(path)),
            None => header_file(line).map(Err),
        }
    }

    /// Why an edit of a file that is not editable is refused; `what` says what edits which file.
    fn may_not_change(&self, what: &str) -> String {
        format!(
            "{what}, which may not change; the files you may change: {}",
            list(self.editable)
        )
    }

    /// Why a whole file for the editable file `path` is refused, if it is.
    fn whole_refused(&self, path: &str) -> Option<String> {
        if self.shown_in_part.iter().any(|p| p == path) {
            Some(format!(
                "`{path}` was shown only in part (the prompt cuts long files), so it cannot be \
                 given whole: change it with SEARCH/REPLACE blocks"
            ))
        } else if !self.whole_files {
            Some(format!(
                "the editable files are too long to be given whole: change `{path}` with \
                 SEARCH/REPLACE blocks"
            ))
        } else {
            None
        }
    }
}

/// Reads the edits out of a model's answer, reasoning sections left out ([`without_reasoning`]).
///
/// - SEARCH/REPLACE blocks name their file on the line before `<<<<<<< SEARCH` (a fence opening
///   may stand between). A block whose header names no file at all belongs to the only editable
///   file when there is one; a header naming any other path (a read-only file, `../x.py`, an
///   absolute path) is refused with that reason, so that the model can correct it.
/// - When the answer has no SEARCH/REPLACE block, a fenced block right after a line naming a
///   file is a whole new file; only for the files [`Scope::may_be_whole`] allows. When it has
///   blocks, fenced code elsewhere is commentary and ignored.
pub fn parse(answer: &str, scope: &Scope) -> Result<Vec<Edit>, String> {
    let answer = without_reasoning(answer);
    let lines: Vec<&str> = answer
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (edits, refused) = if lines.iter().any(|l| is_search(l)) {
        parse_blocks(&lines, scope)?
    } else {
        parse_whole_files(&lines, scope)
    };
    if !refused.is_empty() {
        return Err(format!(
            "{}\nNothing was applied; answer again with all of your edit, corrected.",
            refused.join("\n")
        ));
    }
    if edits.is_empty() {
        return Err(
            "the answer has no SEARCH/REPLACE block and no whole file: answer with at least one \
             block in the format described"
                .to_string(),
        );
    }
    Ok(edits)
}

/// The SEARCH/REPLACE blocks, and why blocks were refused. A malformed block is an error at once:
/// what follows it cannot be read reliably.
fn parse_blocks(lines: &[&str], scope: &Scope) -> Result<(Vec<Edit>, Vec<String>), String> {
    let mut edits = Vec::new();
    let mut refused = Vec::new();
    let mut number = 0;
    let mut i = 0;
    while i < lines.len() {
        if !is_search(lines[i]) {
            i += 1;
            continue;
        }
        number += 1;
        let path = block_path(&lines[..i], scope, number);
        let mut j = i + 1;
        let mut search = Vec::new();
        while j < lines.len() && !is_divider(lines[j]) {
            if is_search(lines[j]) || is_replace(lines[j]) {
                break;
            }
            search.push(lines[j]);
            j += 1;
        }
        if j >= lines.len() || !is_divider(lines[j]) {
            return Err(format!(
                "SEARCH/REPLACE block {number} has no `=======` line between its SEARCH and \
                 REPLACE parts"
            ));
        }
        j += 1;
        let mut replace = Vec::new();
        while j < lines.len() && !is_replace(lines[j]) {
            if is_search(lines[j]) || is_divider(lines[j]) {
                break;
            }
            replace.push(lines[j]);
            j += 1;
        }
        if j >= lines.len() || !is_replace(lines[j]) {
            return Err(format!(
                "SEARCH/REPLACE block {number} does not end with a `>>>>>>> REPLACE` line"
            ));
        }
        match path {
            Ok(path) => edits.push(Edit::Replace {
                path: path.clone(),
                search: join_lines(&search),
                replace: join_lines(&replace),
            }),
            Err(reason) => refused.push(reason),
        }
        i = j + 1;
    }
    Ok((edits, refused))
}

/// The whole files of an answer without blocks: a fenced block right after a line naming a file.
/// A whole file for a file that may not change, or may not be given whole, is refused.
fn parse_whole_files(lines: &[&str], scope: &Scope) -> (Vec<Edit>, Vec<String>) {
    let mut edits = Vec::new();
    let mut refused = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(fence) = fence_of(lines[i]) else {
            i += 1;
            continue;
        };
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.trim_end() == fence)
            .map_or(lines.len(), |p| p + i + 1);
        if let Some(named) = previous_line(&lines[..i]).and_then(|l| scope.named_file(l))
            && end < lines.len()
        {
            match named {
                Err(name) => refused
                    .push(scope.may_not_change(&format!("a whole file is given for `{name}`"))),
                Ok(path) => match scope.whole_refused(path) {
                    Some(reason) => refused.push(reason),
                    None => edits.push(Edit::WholeFile {
                        path: path.clone(),
                        content: join_lines(&lines[i + 1..end]),
                    }),
                },
            }
        }
        i = end + 1;
    }
    (edits, refused)
}

fn list(editable: &[String]) -> String {
    editable
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines joined with `\n`, each ending with one (the SEARCH and REPLACE parts are whole lines).
fn join_lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The last non-blank line.
fn previous_line<'a>(lines: &[&'a str]) -> Option<&'a str> {
    lines.iter().rev().find(|l| !l.trim().is_empty()).copied()
}

/// The file SEARCH/REPLACE block `number` edits: the file its header names (the last non-blank
/// line before it, or the one before a fence opening), else the only editable file. A header
/// naming a file that is not editable is refused, never taken for the only editable file.
fn block_path<'e>(before: &[&str], scope: &Scope<'e>, number: usize) -> Result<&'e String, String> {
    let candidates = before.iter().rev().filter(|l| !l.trim().is_empty()).take(2);
    for line in candidates {
        match scope.named_file(line) {
            Some(Ok(path)) => return Ok(path),
            Some(Err(name)) => {
                return Err(
                    scope.may_not_change(&format!("SEARCH/REPLACE block {number} edits `{name}`"))
                );
            }
            None => {}
        }
        if fence_of(line).is_none() {
            break;
        }
    }
    match scope.editable {
        [only] => Ok(only),
        _ => Err(format!(
            "SEARCH/REPLACE block {number} does not say which file it edits: put the file's path \
             ({}) on the line before `<<<<<<< SEARCH`",
            list(scope.editable)
        )),
    }
}

/// The tags that open a reasoning section and the tags that close them, lowercase.
const REASONING_TAGS: [(&str, &str); 2] = [("<think>", "</think>"), ("<thinking>", "</thinking>")];

/// The closing tag of the reasoning section `line` opens (the tag begins the line), and what
/// follows the opening tag.
fn opens_reasoning(line: &str) -> Option<(&'static str, &str)> {
    let line = line.trim_start();
    REASONING_TAGS.iter().find_map(|(open, close)| {
        let head = line.get(..open.len())?;
        head.eq_ignore_ascii_case(open)
            .then(|| (*close, &line[open.len()..]))
    })
}

/// Where `tag` (lowercase ASCII) occurs in `text`, ignoring case, and the text after it.
fn after_tag<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let at = text.to_ascii_lowercase().find(tag)?;
    Some(&text[at + tag.len()..])
}

/// The answer without the reasoning of reasoning models: `<think>...</think>` and
/// `<thinking>...</thinking>` sections (tags in any case), whose drafts are neither edits nor the
/// description. A section opens with its tag at the start of a line outside a SEARCH/REPLACE
/// block and ends at its closing tag, or with the answer when it is never closed. A closing tag
/// with no opening one before it (the chat template sent the opening tag) ends a section that
/// began with the answer, unless a SEARCH/REPLACE block comes first.
pub fn without_reasoning(answer: &str) -> Cow<'_, str> {
    let lines: Vec<&str> = answer.split_inclusive('\n').collect();
    let mut closing: Option<&str> = None;
    for line in &lines {
        if opens_reasoning(line).is_some() || is_search(line) {
            break;
        }
        if let Some((_, close)) = REASONING_TAGS
            .iter()
            .find(|(_, close)| after_tag(line, close).is_some())
        {
            closing = Some(close);
            break;
        }
    }
    if closing.is_none() && !lines.iter().any(|l| opens_reasoning(l).is_some()) {
        return Cow::Borrowed(answer);
    }
    let mut out = String::with_capacity(answer.len());
    let mut in_block = false;
    for line in lines {
        // What follows a tag on its line stays (`</think>DESCRIPTION: ...`) unless blank.
        let rest = match closing {
            Some(close) => match after_tag(line, close) {
                Some(rest) => {
                    closing = None;
                    rest
                }
                None => continue,
            },
            None if !in_block => match opens_reasoning(line) {
                Some((close, rest)) => match after_tag(rest, close) {
                    Some(rest) => rest,
                    None => {
                        closing = Some(close);
                        continue;
                    }
                },
                None => {
                    in_block = is_search(line);
                    out.push_str(line);
                    continue;
                }
            },
            None => {
                in_block = !is_replace(line);
                out.push_str(line);
                continue;
            }
        };
        if !rest.trim().is_empty() {
            in_block = is_search(rest);
            out.push_str(rest);
        }
    }
    Cow::Owned(out)
}

/// Applies every edit or none: on success the changed files are written and their paths
/// returned; on failure nothing is written and the error explains every block that failed. A
/// whole file with fewer than half the non-blank lines of the file it replaces is refused as a
/// snippet.
pub fn apply(repo: &Path, edits: &[Edit]) -> Result<Vec<String>, String> {
    let mut originals: BTreeMap<String, String> = BTreeMap::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, edit) in edits.iter().enumerate() {
        let path = edit.path().to_string();
        if !files.contains_key(&path) {
            let text = std::fs::read_to_string(repo.join(&path))
                .map_err(|err| format!("cannot read `{path}`: {err}"))?;
            originals.insert(path.clone(), text.clone());
            files.insert(path.clone(), text);
        }
        let current = files.get_mut(&path).expect("loaded above");
        match edit {
            Edit::WholeFile { content, .. } => match snippet_of(current, content) {
                None => *current = content.clone(),
                Some((given, had)) => errors.push(format!(
                    "the whole file given for `{path}` has {} where the file has {had} (not \
                     counting blank lines); it looks like a snippet, not the complete file: \
                     change it with SEARCH/REPLACE blocks, or give its complete new content",
                    count(given, "line")
                )),
            },
            Edit::Replace {
                search, replace, ..
            } => match replace_once(current, search, replace) {
                Ok(text) => *current = text,
                Err(problem) => errors.push(format!(
                    "SEARCH/REPLACE block {} for `{path}`: {problem}",
                    index + 1
                )),
            },
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{}\nNo block was applied; answer again with all blocks, corrected.",
            errors.join("\n\n")
        ));
    }
    let mut changed = Vec::new();
    for (path, text) in &files {
        if originals.get(path) == Some(text) {
            continue;
        }
        let full = repo.join(path);
        let temporary = full.with_extension("arun-edit");
        std::fs::write(&temporary, text)
            .and_then(|_| std::fs::rename(&temporary, &full))
            .map_err(|err| format!("cannot write `{path}`: {err}"))?;
        changed.push(path.clone());
    }
    Ok(changed)
}

/// The non-blank lines of a "whole file" `given` and of the `current` file when `given` is too
/// short to be the whole new file: fewer than half as many non-blank lines. A model that means
/// to show one changed line under the file's name writes such a snippet, and taking it for the
/// file would delete the rest; a real rewrite keeps at least half the file's length.
fn snippet_of(current: &str, given: &str) -> Option<(usize, usize)> {
    let non_blank = |text: &str| text.lines().filter(|l| !l.trim().is_empty()).count();
    let (given, had) = (non_blank(given), non_blank(current));
    (given * 2 < had).then_some((given, had))
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// How strictly lines are compared, from exact to tolerant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tolerance {
    Exact,
    TrailingWhitespace,
    Indentation,
}

impl Tolerance {
    fn same(self, file: &str, search: &str) -> bool {
        match self {
            Tolerance::Exact => file == search,
            Tolerance::TrailingWhitespace => file.trim_end() == search.trim_end(),
            Tolerance::Indentation => file.trim() == search.trim(),
        }
    }
}

/// A line without its line ending.
fn content(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn leading_whitespace(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// `text` with the one place matching `search` replaced by `replace`.
fn replace_once(text: &str, search: &str, replace: &str) -> Result<String, String> {
    let file: Vec<&str> = text.split_inclusive('\n').collect();
    let search_lines: Vec<&str> = search.lines().collect();
    let replace_lines: Vec<&str> = replace.lines().collect();
    if search_lines.iter().all(|l| l.trim().is_empty()) {
        if text.trim().is_empty() {
            return Ok(replace.to_string());
        }
        return Err(
            "its SEARCH part is empty; copy the lines to replace from the file into it".to_string(),
        );
    }
    // Blank lines a model adds around the SEARCH part are tried without, too.
    let first = search_lines.iter().position(|l| !l.trim().is_empty());
    let last = search_lines.iter().rposition(|l| !l.trim().is_empty());
    let trimmed = &search_lines[first.unwrap_or(0)..=last.unwrap_or(0)];
    let variants: &[&[&str]] = if trimmed.len() == search_lines.len() {
        &[&search_lines]
    } else {
        &[&search_lines, trimmed]
    };
    for tolerance in [
        Tolerance::Exact,
        Tolerance::TrailingWhitespace,
        Tolerance::Indentation,
    ] {
        for lines in variants {
            let starts: Vec<usize> = (0..=file.len().saturating_sub(lines.len()))
                .filter(|&i| {
                    i + lines.len() <= file.len()
                        && lines
                            .iter()
                            .enumerate()
                            .all(|(j, s)| tolerance.same(content(file[i + j]), s))
                })
                .collect();
            match starts.as_slice() {
                [] => continue,
                [start] => {
                    let matched = &file[*start..*start + lines.len()];
                    let new = replacement(matched, lines, &replace_lines, tolerance);
                    let mut out: String = file[..*start].concat();
                    out.push_str(&new);
                    out.push_str(&file[*start + lines.len()..].concat());
                    return Ok(out);
                }
                many => {
                    let places: Vec<String> = many.iter().map(|s| (s + 1).to_string()).collect();
                    return Err(format!(
                        "its SEARCH part matches {} places (starting at lines {}); include more \
                         lines around the change so that it matches one place only",
                        many.len(),
                        places.join(", ")
                    ));
                }
            }
        }
    }
    Err(nearest(&file, &search_lines))
}

/// The lines that replace `matched`, with the file's line ending, re-indented like the file when
/// the match ignored indentation, and without a final newline where the file had none.
fn replacement(
    matched: &[&str],
    search: &[&str],
    replace: &[&str],
    tolerance: Tolerance,
) -> String {
    let ending = if matched[0].ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let (from, to) = match tolerance {
        Tolerance::Indentation => search
            .iter()
            .zip(matched)
            .find(|(s, _)| !s.trim().is_empty())
            .map(|(s, m)| (leading_whitespace(s), leading_whitespace(content(m))))
            .unwrap_or(("", "")),
        _ => ("", ""),
    };
    let mut out = String::new();
    for line in replace {
        match line.strip_prefix(from) {
            Some(rest) if !line.trim().is_empty() => {
                out.push_str(to);
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push_str(ending);
    }
    let last = matched[matched.len() - 1];
    if !last.ends_with('\n') && !out.is_empty() {
        out.truncate(out.len() - ending.len());
    }
    out
}

/// How alike two lines are, from 0 to 1: their common start and end, ignoring indentation, over
/// the longer one's length. Enough to find `LR = 0.05` for a SEARCH line `LR = 0.2`.
fn similarity(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.trim().chars().collect(), b.trim().chars().collect());
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix + suffix) as f64 / longest as f64
}

/// The error for a SEARCH part found nowhere: the lines of the file that resemble it most.
fn nearest(file: &[&str], search: &[&str]) -> String {
    let window = search.len().max(1);
    let compared: Vec<(usize, &str)> = search
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.trim().is_empty())
        .map(|(j, s)| (j, *s))
        .collect();
    let score = |start: usize| -> f64 {
        let total: f64 = compared
            .iter()
            .map(|(j, s)| {
                file.get(start + j)
                    .map_or(0.0, |f| similarity(content(f), s))
            })
            .sum();
        total / compared.len().max(1) as f64
    };
    let mut best: Option<(f64, usize)> = None;
    for start in 0..file.len() {
        let value = score(start);
        if best.is_none_or(|(b, _)| value > b) {
            best = Some((value, start));
        }
    }
    match best {
        Some((value, start)) if value >= 0.5 => {
            let end = (start + window).min(file.len());
            let shown: String = file[start..end]
                .iter()
                .map(|l| format!("{}\n", content(l)))
                .collect();
            format!(
                "its SEARCH part does not match the file; the nearest lines (lines {} to {}) \
                 are:\n{}\nCopy the SEARCH lines exactly from the file as it is now.",
                start + 1,
                end,
                crate::config::prompt::fenced(&shown, "")
            )
        }
        _ => "no line of its SEARCH part occurs in the file; copy the SEARCH lines exactly from \
              the file as it is now"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editable() -> Vec<String> {
        vec!["train.py".to_string()]
    }

    /// Every editable file may be given whole.
    fn scope(editable: &[String]) -> Scope<'_> {
        Scope {
            editable,
            whole_files: true,
            shown_in_part: &[],
        }
    }

    fn block(path: &str, search: &str, replace: &str) -> String {
        format!("{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    }

    fn apply_to(text: &str, answer: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), text).unwrap();
        let edits = parse(answer, &scope(&editable()))?;
        apply(dir.path(), &edits)?;
        Ok(std::fs::read_to_string(dir.path().join("train.py")).unwrap())
    }

    const SOURCE: &str = "import math\n\nLR = 0.01\nSTEPS = 100\n\ndef train():\n    for step in range(STEPS):\n        loss = step * LR  \n    return loss\n";

    #[test]
    fn exact_blocks_replace_exact_bytes() {
        let answer = format!(
            "DESCRIPTION: raise LR\n\n```python\n{}```\n",
            block("train.py", "LR = 0.01\n", "LR = 0.04\n")
        );
        assert_eq!(
            apply_to(SOURCE, &answer).unwrap(),
            SOURCE.replace("LR = 0.01\n", "LR = 0.04\n")
        );
    }

    #[test]
    fn trailing_whitespace_is_tolerated() {
        let answer = block(
            "train.py",
            "        loss = step * LR\n",
            "        loss = step * LR * 2\n",
        );
        assert_eq!(
            apply_to(SOURCE, &answer).unwrap(),
            SOURCE.replace("loss = step * LR  \n", "loss = step * LR * 2\n")
        );
    }

    #[test]
    fn indentation_differences_are_tolerated_and_the_replacement_reindented() {
        let answer = block(
            "train.py",
            "for step in range(STEPS):\n    loss = step * LR\n",
            "for step in range(2 * STEPS):\n    loss = step * LR / 2\n",
        );
        assert_eq!(
            apply_to(SOURCE, &answer).unwrap(),
            SOURCE.replace(
                "    for step in range(STEPS):\n        loss = step * LR  \n",
                "    for step in range(2 * STEPS):\n        loss = step * LR / 2\n"
            )
        );
    }

    #[test]
    fn blocks_apply_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), SOURCE).unwrap();
        let answer = format!(
            "{}{}",
            block("train.py", "LR = 0.01\n", "LR = 0.04\n"),
            block(
                "train.py",
                "STEPS = 1000\n\ndef train():\n",
                "STEPS = 200\n\ndef train():\n"
            )
        );
        let err = apply(dir.path(), &parse(&answer, &scope(&editable())).unwrap()).unwrap_err();
        assert!(
            err.contains("SEARCH/REPLACE block 2 for `train.py`"),
            "{err}"
        );
        assert!(err.contains("(lines 4 to 6)"), "{err}");
        assert!(
            err.contains("```\nSTEPS = 100\n\ndef train():\n```"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("train.py")).unwrap(),
            SOURCE
        );
    }

    #[test]
    fn ambiguous_and_missing_matches_are_errors() {
        let text = "x = 1\ny = 2\nx = 1\n";
        let err = apply_to(text, &block("train.py", "x = 1\n", "x = 3\n")).unwrap_err();
        assert!(
            err.contains("matches 2 places (starting at lines 1, 3)"),
            "{err}"
        );
        let err = apply_to(text, &block("train.py", "z = 9\n", "z = 3\n")).unwrap_err();
        assert!(err.contains("no line of its SEARCH part occurs"), "{err}");
        let err = apply_to(text, "I would raise the learning rate.").unwrap_err();
        assert!(err.contains("no SEARCH/REPLACE block"), "{err}");
    }

    #[test]
    fn a_near_miss_quotes_the_line_it_resembles() {
        let err = apply_to(SOURCE, &block("train.py", "LR = 0.2\n", "LR = 0.3\n")).unwrap_err();
        assert!(
            err.contains("(lines 3 to 3) are:\n```\nLR = 0.01\n```"),
            "{err}"
        );
    }

    #[test]
    fn whole_files_and_files_without_a_final_newline() {
        let rewrite = "import math\n\nLR = 0.5\n\ndef train():\n    return math.sqrt(LR)\n";
        let answer = format!("DESCRIPTION: rewrite\n\ntrain.py\n```python\n{rewrite}```\n");
        assert_eq!(apply_to(SOURCE, &answer).unwrap(), rewrite);
        let answer = block("train.py", "b = 2\n", "b = 3\nc = 4\n");
        assert_eq!(
            apply_to("a = 1\nb = 2", &answer).unwrap(),
            "a = 1\nb = 3\nc = 4"
        );
        let crlf = "a = 1\r\nb = 2\r\n";
        assert_eq!(
            apply_to(crlf, &block("train.py", "a = 1\n", "a = 5\n")).unwrap(),
            "a = 5\r\nb = 2\r\n"
        );
    }

    #[test]
    fn the_file_is_found_by_name_among_several() {
        let editable = vec!["model.py".to_string(), "train.py".to_string()];
        let answer = format!(
            "`model.py`\n```python\n<<<<<<< SEARCH\nA = 1\n=======\nA = 2\n>>>>>>> REPLACE\n```\n{}",
            block("**train.py**", "B = 1\n", "B = 2\n")
        );
        let edits = parse(&answer, &scope(&editable)).unwrap();
        assert_eq!(edits[0].path(), "model.py");
        assert_eq!(edits[1].path(), "train.py");
        let nameless = "<<<<<<< SEARCH\nA = 1\n=======\nA = 2\n>>>>>>> REPLACE\n";
        let err = parse(nameless, &scope(&editable)).unwrap_err();
        assert!(err.contains("`model.py`, `train.py`"), "{err}");
        assert_eq!(
            parse(nameless, &scope(&["x.py".to_string()])).unwrap()[0].path(),
            "x.py"
        );
    }

    #[test]
    fn a_header_naming_a_file_that_may_not_change_is_refused_with_the_reason() {
        for header in [
            "prepare.py",
            "`prepare.py`",
            "### ../train.py",
            "/home/user/repo/train.py",
            "src/train.py:",
        ] {
            let err = parse(&block(header, "A = 1\n", "A = 2\n"), &scope(&editable())).unwrap_err();
            let name = named_path(header);
            assert!(
                err.starts_with(&format!(
                    "SEARCH/REPLACE block 1 edits `{name}`, which may not change; the files you \
                     may change: `train.py`\n"
                )),
                "{header}: {err}"
            );
        }
        // Every refused block is named, the good ones are not.
        let answer = format!(
            "{}{}{}",
            block("train.py", "A = 1\n", "A = 2\n"),
            block("prepare.py", "B = 1\n", "B = 2\n"),
            block("../x.py", "C = 1\n", "C = 2\n"),
        );
        let err = parse(&answer, &scope(&editable())).unwrap_err();
        assert!(!err.contains("block 1"), "{err}");
        assert!(err.contains("block 2 edits `prepare.py`"), "{err}");
        assert!(err.contains("block 3 edits `../x.py`"), "{err}");
    }

    #[test]
    fn a_header_naming_no_file_leaves_the_block_to_the_only_editable_file() {
        for header in [
            "",
            "Here is the change:",
            "```python",
            "Done.",
            "0.05",
            "./train.py",
        ] {
            let edits = parse(&block(header, "A = 1\n", "A = 2\n"), &scope(&editable())).unwrap();
            assert_eq!(edits[0].path(), "train.py", "{header:?}");
        }
        let editable = vec!["Makefile".to_string()];
        let edits = parse(&block("Makefile", "A = 1\n", "A = 2\n"), &scope(&editable)).unwrap();
        assert_eq!(edits[0].path(), "Makefile");
    }

    #[test]
    fn reasoning_sections_are_left_out() {
        let cases = [
            (
                "<think>\nplan\n</think>\nDESCRIPTION: x\n",
                "DESCRIPTION: x\n",
            ),
            ("  <THINKING>plan</THINKING>\nanswer\n", "answer\n"),
            ("<think>\nplan</think>DESCRIPTION: y\n", "DESCRIPTION: y\n"),
            // The chat template sent the opening tag.
            ("plan\nmore plan\n</think>\n\nanswer\n", "\nanswer\n"),
            ("<think>\nnever closed\n", ""),
            (
                "answer\n<thinking>\nafterthought\n</thinking>\n",
                "answer\n",
            ),
        ];
        for (answer, visible) in cases {
            assert_eq!(without_reasoning(answer), visible, "{answer:?}");
        }
        // Tags inside a block, or mentioned mid-line, are the file's text.
        for answer in [
            block("train.py", "END = \"</think>\"\n", "END = \"</answer>\"\n"),
            block("train.py", "<think>\n", "<thinking>\n"),
            "I would not use <think> tags here.\n".to_string(),
        ] {
            assert_eq!(without_reasoning(&answer), answer);
        }
        let drafted = format!(
            "<think>\n{}</think>\n{}",
            block("train.py", "A = 1\n", "A = 9\n"),
            block("train.py", "A = 1\n", "A = 2\n")
        );
        let edits = parse(&drafted, &scope(&editable())).unwrap();
        assert_eq!(
            edits,
            [Edit::Replace {
                path: "train.py".to_string(),
                search: "A = 1\n".to_string(),
                replace: "A = 2\n".to_string(),
            }]
        );
        let err = parse("<think>\ntrain.py\n```\nA = 2\n```\n", &scope(&editable())).unwrap_err();
        assert!(err.contains("no SEARCH/REPLACE block"), "{err}");
    }

    #[test]
    fn fenced_code_is_commentary_when_the_answer_has_blocks() {
        let answer = format!(
            "The line becomes:\n\ntrain.py\n```python\nLR = 0.04\n```\n\n{}",
            block("train.py", "LR = 0.01\n", "LR = 0.04\n")
        );
        assert_eq!(
            apply_to(SOURCE, &answer).unwrap(),
            SOURCE.replace("LR = 0.01\n", "LR = 0.04\n")
        );
    }

    #[test]
    fn a_whole_file_that_drops_most_of_the_file_is_a_snippet() {
        let answer = "train.py\n```python\nLR = 0.04\n```\n";
        let err = apply_to(SOURCE, answer).unwrap_err();
        assert!(
            err.starts_with(
                "the whole file given for `train.py` has 1 line where the file has 7 (not \
                 counting blank lines); it looks like a snippet"
            ),
            "{err}"
        );
        assert!(
            err.contains("change it with SEARCH/REPLACE blocks, or give its complete new content"),
            "{err}"
        );
        // Half the lines is a rewrite; an empty file may be written from nothing.
        let half = "train.py\n```python\na = 1\n\nb = 2\nc = 3\nd = 4\n```\n";
        assert_eq!(
            apply_to(SOURCE, half).unwrap(),
            "a = 1\n\nb = 2\nc = 3\nd = 4\n"
        );
        assert_eq!(apply_to("", answer).unwrap(), "LR = 0.04\n");
    }

    #[test]
    fn whole_files_only_for_files_shown_whole_when_offered() {
        let editable = vec!["model.py".to_string(), "train.py".to_string()];
        let whole = |path: &str| format!("{path}\n```python\nA = 2\n```\n");
        let cut = vec!["model.py".to_string()];
        let scope = Scope {
            editable: &editable,
            whole_files: true,
            shown_in_part: &cut,
        };
        assert!(scope.may_be_whole("train.py") && !scope.may_be_whole("model.py"));
        assert_eq!(
            parse(&whole("train.py"), &scope).unwrap()[0].path(),
            "train.py"
        );
        let err = parse(&whole("model.py"), &scope).unwrap_err();
        assert!(
            err.starts_with(
                "`model.py` was shown only in part (the prompt cuts long files), so it cannot be \
                 given whole: change it with SEARCH/REPLACE blocks\n"
            ),
            "{err}"
        );
        let err = parse(&whole("prepare.py"), &scope).unwrap_err();
        assert!(
            err.starts_with("a whole file is given for `prepare.py`, which may not change"),
            "{err}"
        );
        let not_offered = Scope {
            whole_files: false,
            shown_in_part: &[],
            ..scope
        };
        assert!(!not_offered.may_be_whole("train.py"));
        let err = parse(&whole("train.py"), &not_offered).unwrap_err();
        assert!(
            err.starts_with(
                "the editable files are too long to be given whole: change `train.py` with \
                 SEARCH/REPLACE blocks"
            ),
            "{err}"
        );
    }
}
