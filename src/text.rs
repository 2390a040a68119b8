//! Small text helpers used across the crate: cutting a text to a length, quoting a shell word.

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
