//! Secret values the process holds (API keys), and their removal from text before it is written
//! anywhere: the journal, transcripts, progress notes, error messages.
//!
//! Whoever reads a secret registers it once ([`register`]); whoever writes text that may hold
//! one (a server's error body can echo the key it was sent) passes the text through [`redact`]
//! first. The registry is process-wide because the writers (journal, progress, error
//! rendering) do not know which proposer or setting a secret came from.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not registered: replacing a short string everywhere would
/// mangle ordinary text, and a key that short protects nothing anyway.
pub const MIN_SECRET_CHARS: usize = 8;

/// The registered secrets, longest first so that a secret containing another is replaced whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` (trimmed) as a secret for every later [`redact`]. Empty values and values
/// shorter than [`MIN_SECRET_CHARS`] are ignored; registering the same value again is harmless.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`]; borrowed unchanged when it holds
/// none (the common case costs one search per secret and no allocation).
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if text.contains(secret.as_str()) {
            text = Cow::Owned(text.replace(secret.as_str(), REDACTED));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is process-wide and tests run in parallel: each test uses its own values.

    #[test]
    fn registered_secrets_are_replaced_everywhere_in_the_text() {
        register("sk-unit-test-key-1234");
        let text = "HTTP 401: bad key `sk-unit-test-key-1234` (Bearer sk-unit-test-key-1234)";
        assert_eq!(
            redact(text),
            "HTTP 401: bad key `[redacted]` (Bearer [redacted])"
        );
    }

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        register("sk-unit-test-absent-5678");
        let text = "nothing to hide here";
        assert!(matches!(redact(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn short_and_empty_values_are_not_secrets() {
        register("");
        register("   ");
        register("abc");
        register(" 1234567 ");
        assert_eq!(redact("abc 1234567"), "abc 1234567");
    }

    #[test]
    fn values_are_trimmed_and_a_longer_secret_is_replaced_whole() {
        register("  sk-unit-nested  ");
        register("sk-unit-nested-and-longer");
        assert_eq!(
            redact("a sk-unit-nested-and-longer b sk-unit-nested c"),
            "a [redacted] b [redacted] c"
        );
    }
}
