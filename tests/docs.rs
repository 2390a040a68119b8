//! The docs hold together: every relative link in README.md and docs/*.md reaches a file, every
//! `#anchor` a heading, and every command's `--help` names the page that documents it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// The text with fenced code blocks blanked (lines kept, so line numbers still count).
fn without_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<String> = None;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let run: String = trimmed
                .chars()
                .take_while(|&c| c == '`' || c == '~')
                .collect();
            match &fence {
                None if run.len() >= 3 => {
                    fence = Some(run);
                    ""
                }
                Some(open)
                    if trimmed.starts_with(open.as_str())
                        && trimmed
                            .trim_end()
                            .chars()
                            .all(|c| c == open.as_bytes()[0] as char) =>
                {
                    fence = None;
                    ""
                }
                Some(_) => "",
                None => line,
            }
        })
        .collect()
}

/// The text with inline code spans removed: a run of n backticks up to the next run of exactly n.
fn without_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let next = text[i..].find('`').map_or(text.len(), |at| i + at);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let ticks = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        let mut j = i + ticks;
        let mut closed = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let run = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if run == ticks {
                    closed = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                // Keep the line count: a span may cross a line end.
                out.extend(text[i..end].chars().filter(|&c| c == '\n'));
                i = end;
            }
            None => {
                out.push_str(&text[i..i + ticks]);
                i += ticks;
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: its text lowercased, punctuation other than `-` and `_` removed,
/// spaces made hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`... as on GitHub.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in without_fences(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        // Links in a heading count by their text.
        let text = line[hashes..].replace("](", "]\u{0}(");
        let text: String = text
            .split('\u{0}')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part.to_string()
                } else {
                    part.split_once(')')
                        .map_or(part, |(_, rest)| rest)
                        .to_string()
                }
            })
            .collect();
        let base = anchor(&text);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The targets of a page's links and images, with the line each is on, outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let prose = without_code_spans(&without_fences(text).join("\n"));
    let pattern = regex::Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).unwrap();
    pattern
        .captures_iter(&prose)
        .map(|capture| {
            let at = capture.get(0).unwrap().start();
            let line = prose[..at].matches('\n').count() + 1;
            (line, capture[1].to_string())
        })
        .collect()
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    for (heading, expected) in [
        (
            "Knob search: no LLM needed (`kind = \"knobs\"`)",
            "knob-search-no-llm-needed-kind--knobs",
        ),
        (
            "The reference trainer (`reference/nanochat`)",
            "the-reference-trainer-referencenanochat",
        ),
        ("`[decision.held-out]`", "decisionheld-out"),
        ("What a fresh machine needs", "what-a-fresh-machine-needs"),
        ("max_tokens and Σ", "max_tokens-and-σ"),
    ] {
        assert_eq!(anchor(heading), expected, "{heading}");
    }
    let page = "# Title\n\n```toml\n# not a heading\n```\n\n## Same\n\n### Same\n\n## [A link](x.md) here\n";
    let found = anchors(page);
    for expected in ["title", "same", "same-1", "a-link-here"] {
        assert!(
            found.contains(expected),
            "{expected} missing from {found:?}"
        );
    }
    assert!(!found.contains("not-a-heading"));
}

#[test]
fn links_outside_code_are_found() {
    let page =
        "See [a](a.md#x) and `[b](b.md)`.\n\n```\n[c](c.md)\n```\n\n![d\nacross lines](d.png)\n";
    let found: Vec<String> = links(page).into_iter().map(|(_, target)| target).collect();
    assert_eq!(found, ["a.md#x", "d.png"]);
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let pages = pages();
    assert!(
        pages.len() > 5,
        "expected README.md and the docs/ pages, found {pages:?}"
    );
    let mut anchors_of: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        anchors_of.insert(page.canonicalize().unwrap(), anchors(&text));
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let Ok(file) = file.canonicalize() else {
                broken.push(format!("{name}:{line}: `{target}`: no file `{path}`"));
                continue;
            };
            if !file.starts_with(root().canonicalize().unwrap()) {
                broken.push(format!("{name}:{line}: `{target}` leaves the repository"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            match anchors_of.get(&file) {
                Some(anchors) if anchors.contains(fragment) => {}
                Some(_) => broken.push(format!(
                    "{name}:{line}: `{target}`: no heading makes the anchor `#{fragment}`"
                )),
                None => broken.push(format!(
                    "{name}:{line}: `{target}`: an anchor into a file that is not a checked page"
                )),
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_command_help_names_its_page() {
    let cli = arun::cli::Cli::command();
    let mut commands: Vec<Vec<String>> = vec![vec![]];
    commands.extend(
        cli.get_subcommands()
            .map(|sub| vec![sub.get_name().to_string()])
            .filter(|args| args[0] != "help"),
    );
    assert!(commands.len() > 5, "{commands:?}");
    let page = regex::Regex::new(r"docs/[a-z-]+\.md").unwrap();
    for args in commands {
        let output = Command::new(env!("CARGO_BIN_EXE_arun"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "arun {args:?} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        let named = page
            .find(&help)
            .unwrap_or_else(|| panic!("`arun {} --help` names no docs/ page", args.join(" ")));
        assert!(
            root().join(named.as_str()).is_file(),
            "`arun {} --help` names {}, which does not exist",
            args.join(" "),
            named.as_str()
        );
    }
}
