//! Small text helpers used across the crate: cutting a text to a length, quoting a shell word,
//! one line from many, a Unix time in local time.

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
}
