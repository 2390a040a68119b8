//! Edits a model writes as text, applied to the editable files all-or-nothing: SEARCH/REPLACE
//! blocks (the format aider made common) or a whole file in a fenced block after its path.
//!
//! A SEARCH section must match one place of its file: exactly, else line by line ignoring
//! trailing whitespace, else ignoring indentation (the replacement is then re-indented like the
//! file). When any block fails nothing is written, and the error quotes the nearest lines of the
//! file so that the model can correct itself.

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
    line.trim()
        .trim_start_matches('#')
        .trim()
        .trim_matches(|c| c == '`' || c == '*' || c == '"' || c == '\'')
        .trim_end_matches(':')
        .trim_matches(|c| c == '`' || c == '*')
        .trim()
        .to_string()
}

/// Which editable file a line names, if any.
fn editable_named<'e>(line: &str, editable: &'e [String]) -> Option<&'e String> {
    let name = named_path(line);
    let name = name.strip_prefix("./").unwrap_or(&name);
    editable.iter().find(|path| path.as_str() == name)
}

/// Reads the edits out of a model's answer. `editable` are the files it may change; a block
/// that names no file belongs to the only editable file when there is one.
pub fn parse(answer: &str, editable: &[String]) -> Result<Vec<Edit>, String> {
    let lines: Vec<&str> = answer
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut edits = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if is_search(lines[i]) {
            let number = edits.len() + 1;
            let path = block_path(&lines[..i], editable).ok_or_else(|| {
                format!(
                    "SEARCH/REPLACE block {number} does not say which file it edits: put the file's \
                     path ({}) on the line before `<<<<<<< SEARCH`",
                    list(editable)
                )
            })?;
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
            edits.push(Edit::Replace {
                path: path.clone(),
                search: join_lines(&search),
                replace: join_lines(&replace),
            });
            i = j + 1;
            continue;
        }
        if let Some(fence) = fence_of(lines[i])
            && let Some(path) = previous_line(&lines[..i]).and_then(|l| editable_named(l, editable))
        {
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.trim_end() == fence)
                .map(|p| p + i + 1);
            if let Some(end) = end
                && !lines[i + 1..end].iter().any(|l| is_search(l))
            {
                edits.push(Edit::WholeFile {
                    path: path.clone(),
                    content: join_lines(&lines[i + 1..end]),
                });
                i = end + 1;
                continue;
            }
        }
        i += 1;
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

/// The file a SEARCH block edits: named on one of the lines just before it (a fence opening line
/// may stand between), else the only editable file.
fn block_path<'e>(before: &[&str], editable: &'e [String]) -> Option<&'e String> {
    let candidates = before.iter().rev().filter(|l| !l.trim().is_empty()).take(2);
    for line in candidates {
        if let Some(path) = editable_named(line, editable) {
            return Some(path);
        }
        if fence_of(line).is_none() {
            break;
        }
    }
    match editable {
        [only] => Some(only),
        _ => None,
    }
}

/// Applies every edit or none: on success the changed files are written and their paths
/// returned; on failure nothing is written and the error explains every block that failed.
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
            Edit::WholeFile { content, .. } => *current = content.clone(),
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
                crate::prompt::fenced(&shown, "")
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

    fn block(path: &str, search: &str, replace: &str) -> String {
        format!("{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    }

    fn apply_to(text: &str, answer: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), text).unwrap();
        let edits = parse(answer, &editable())?;
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
        let err = apply(dir.path(), &parse(&answer, &editable()).unwrap()).unwrap_err();
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
        let answer = "DESCRIPTION: rewrite\n\ntrain.py\n```python\nLR = 0.5\nprint(LR)\n```\n";
        assert_eq!(apply_to(SOURCE, answer).unwrap(), "LR = 0.5\nprint(LR)\n");
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
        let edits = parse(&answer, &editable).unwrap();
        assert_eq!(edits[0].path(), "model.py");
        assert_eq!(edits[1].path(), "train.py");
        let nameless = "<<<<<<< SEARCH\nA = 1\n=======\nA = 2\n>>>>>>> REPLACE\n";
        let err = parse(nameless, &editable).unwrap_err();
        assert!(err.contains("`model.py`, `train.py`"), "{err}");
        assert_eq!(
            parse(nameless, &["x.py".to_string()]).unwrap()[0].path(),
            "x.py"
        );
    }
}
