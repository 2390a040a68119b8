//! Small text helpers used across the crate: cutting a text to a length, quoting a shell word,
//! one line from many, a Unix time in local time, a short commit id, a line without
//! terminal escapes.

/// `text` cut to at most `max_chars` characters; a text that was cut ends with `mark` (`"…"`,
/// `"..."` or nothing), which counts in the length.
pub fn cut(text: &str, max_chars: usize, mark: &str) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text
        .chars()
        .take(max_chars.saturating_sub(mark.chars().count()))
        .collect();
    format!("{kept}{mark}")
}

/// `text` as one shell word: as it is when it holds nothing the shell reads specially, else in
/// single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `text` on one line: tabs and line breaks become spaces, runs of spaces one space (a table
/// row, a progress line, a log line).
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A Unix time as local `YYYY-MM-DD HH:MM`.
pub fn local_time(time: f64) -> String {
    // SAFETY: localtime_r with valid pointers to locals.
    let tm = unsafe {
        let seconds = time as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&seconds, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

/// A commit id's 7-character abbreviation, as results.tsv and git's short form write it (a
/// shorter text is returned whole).
pub fn short_commit(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// Removes ANSI escape sequences (colours, cursor moves).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: ESC [ parameters, ended by a letter or @..~
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: ESC ] ... BEL or ESC \
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.peek() == Some(&'\\')) {
                        chars.next_if_eq(&'\\');
                        break;
                    }
                }
            }
            _ => {
                chars.next();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_text_keeps_its_mark_within_the_length() {
        assert_eq!(cut("abcdef", 6, "..."), "abcdef");
        assert_eq!(cut("abcdefg", 6, "..."), "abc...");
        assert_eq!(cut("ééééé", 3, "…"), "éé…");
        assert_eq!(cut("abcdef", 4, ""), "abcd");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("train.py"), "train.py");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn escapes_are_removed_and_the_text_kept() {
        assert_eq!(strip_ansi("\x1b[1;32mok\x1b[0m done"), "ok done");
        assert_eq!(strip_ansi("\x1b]0;title\x07step 3"), "step 3");
        assert_eq!(
            strip_ansi("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(strip_ansi("plain: 1.5 é"), "plain: 1.5 é");
    }

    #[test]
    fn short_commits_and_one_lines() {
        assert_eq!(short_commit("0123456789abcdef"), "0123456");
        assert_eq!(short_commit("abc"), "abc");
        assert_eq!(one_line("a\tb\n\n  c "), "a b c");
    }
}
