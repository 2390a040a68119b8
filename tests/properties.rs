//! Property tests: the readers of user and model input never panic, whatever the input, and the
//! obvious round trips hold. Each property runs a fixed number of generated cases with a fixed
//! seed-free configuration and no failure files, so that the suite stays fast and CI leaves no
//! `proptest-regressions/` behind; a failure prints the minimal input to pin as a unit test.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use arun::config::HumanDuration;
use arun::config::duration::{DURATION_PATTERN, MAX_DURATION};
use arun::config::knob::{Domain, Value};
use arun::config::knob_site;
use arun::view::report::Located;
use proptest::prelude::*;
use proptest::test_runner::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Cases per property: enough to find the panics hand-picked inputs miss, few enough that the
/// whole file runs in a few seconds in a debug build. `ARUN_PROPTEST_CASES` overrides it for a
/// longer hunt by hand; CI never sets it.
fn cases(n: u32) -> Config {
    let n = std::env::var("ARUN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Lines a generated text is made of: the syntax the reader looks for, mixed with noise.
fn lines_from(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    let line = prop_oneof![
        3 => proptest::sample::select(vocabulary).prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[ -~]{0,20}",
    ];
    (
        proptest::collection::vec(line, 0..16),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, newline)| lines.join(newline))
}

// ---- pipeline files --------------------------------------------------------------------------

/// A shipped pipeline with its relative paths made absolute, so that a mutated copy in a temp
/// dir still finds its template.
fn seed_pipeline(name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("pipelines").join(name)).unwrap();
    let pipelines = Path::new(ROOT).join("pipelines");
    text.replace(
        "template = \"example\"",
        &format!("template = \"{}\"", pipelines.join("example").display()),
    )
    .replace(
        "template = \"../reference/nanochat\"",
        &format!(
            "template = \"{}\"",
            Path::new(ROOT).join("reference/nanochat").display()
        ),
    )
}

/// One edit of a text: delete a range, insert text, or overwrite a byte.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Overwrite(usize, u8),
    DuplicateLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let inserted = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::sample::select(
            &[
                "\n[target]\n",
                "\"",
                "'''",
                "[[knob]]\n",
                " = ",
                "99999999999999999999",
                "-1",
                "\"99999999999h\"",
                "\"0s\"",
                "1e400",
                "nan",
                "{",
                "]",
                "\u{0}",
                "é",
                "\"../..\"",
                "\"{month}..{day}\"",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), inserted).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(bytes.len());
                bytes.drain(start.min(end)..end);
            }
            Mutation::Insert(at, more) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Overwrite(at, byte) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = *byte;
                }
            }
            Mutation::DuplicateLine(at) => {
                let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
                if !lines.is_empty() {
                    let i = at % lines.len();
                    let mut out = Vec::new();
                    for (j, line) in lines.iter().enumerate() {
                        out.extend_from_slice(line);
                        if j == i {
                            out.extend_from_slice(line);
                        }
                    }
                    bytes = out;
                }
            }
        }
    }
    bytes
}

/// Loads `bytes` as a pipeline file; every problem must be located inside the file.
fn load_checked(dir: &Path, bytes: &[u8]) {
    let file = dir.join("p.toml");
    std::fs::write(&file, bytes).unwrap();
    if let Err(invalid) = arun::config::load(&file) {
        assert!(!invalid.diagnostics.is_empty(), "an error names a problem");
        let lines = bytes.split(|&b| b == b'\n').count();
        for diagnostic in &invalid.diagnostics {
            assert!(!diagnostic.message.is_empty());
            if let Some((line, col)) = diagnostic.position {
                assert!(line >= 1 && line <= lines && col >= 1, "{diagnostic}");
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn the_pipeline_reader_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = tempfile::tempdir().unwrap();
        load_checked(dir.path(), &bytes);
    }

    #[test]
    fn the_pipeline_reader_never_panics_on_mutated_pipelines(
        seed in proptest::sample::select(&["example.toml", "nanochat.toml", "autoresearch.toml"][..]),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        load_checked(dir.path(), &mutate(&seed_pipeline(seed), &mutations));
    }
}

#[test]
fn the_seed_pipelines_load_unmutated() {
    let dir = tempfile::tempdir().unwrap();
    for seed in ["example.toml", "nanochat.toml"] {
        let file = dir.path().join(seed);
        std::fs::write(&file, seed_pipeline(seed)).unwrap();
        if let Err(err) = arun::config::load(&file) {
            panic!("{seed}: {err}");
        }
    }
}

// ---- durations -------------------------------------------------------------------------------

/// Text shaped like a duration: numbers (some huge), units (some wrong), spaces.
fn duration_like() -> impl Strategy<Value = String> {
    let term = (
        prop_oneof![
            "[0-9]{1,3}",
            "[0-9]{1,30}",
            "[0-9]{1,4}\\.[0-9]{0,12}",
            "\\.?[0-9.]{0,4}"
        ],
        prop_oneof![Just(""), Just(" ")],
        proptest::sample::select(&["ms", "s", "m", "h", "d", "", "M", "us", "µs", "y"][..]),
        prop_oneof![Just(""), Just(" ")],
    )
        .prop_map(|(n, a, u, b)| format!("{n}{a}{u}{b}"));
    proptest::collection::vec(term, 0..4).prop_map(|terms| terms.concat())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn durations_never_panic_and_agree_with_the_schema_pattern(
        text in prop_oneof![duration_like(), any::<String>()],
    ) {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        match HumanDuration::from_str(&text) {
            Ok(duration) => {
                prop_assert!(pattern.is_match(&text), "{text:?} parsed but fails the pattern");
                prop_assert!(duration.0 <= MAX_DURATION);
                // What Display writes reads back to the same milliseconds.
                let shown = duration.to_string();
                let again = HumanDuration::from_str(&shown).unwrap();
                prop_assert_eq!(again.0.as_millis(), duration.0.as_millis(), "{}", shown);
            }
            Err(err) => prop_assert!(
                !pattern.is_match(&text) || err.is_too_long(),
                "{text:?} matches the pattern but was refused: {err}"
            ),
        }
    }

    #[test]
    fn a_whole_number_of_milliseconds_round_trips_exactly(
        millis in 0..=MAX_DURATION.as_millis() as u64,
    ) {
        let duration = HumanDuration(Duration::from_millis(millis));
        let shown = duration.to_string();
        prop_assert_eq!(HumanDuration::from_str(&shown), Ok(duration), "{}", shown);
    }
}

// ---- SEARCH/REPLACE edits ----------------------------------------------------------------------

const EDIT_LINES: &[&str] = &[
    "<<<<<<< SEARCH",
    "<<<<< SEARCH",
    "<<<<<<<<<< SEARCH",
    "=======",
    ">>>>>>> REPLACE",
    "train.py",
    "`train.py`",
    "### model.py",
    "./train.py:",
    "```",
    "```python",
    "````",
    "LR = 0.04",
    "    LR = 0.04",
    "LR = 0.4",
    "DEPTH = 8",
    "",
    "  ",
    "\t",
    "é",
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn search_replace_parsing_and_applying_never_panic(
        answer in lines_from(EDIT_LINES),
        file in lines_from(&["LR = 0.04", "    LR = 0.04", "DEPTH = 8", "", "é", "x"]),
        two_files in any::<bool>(),
        whole_files in any::<bool>(),
        train_shown_in_part in any::<bool>(),
    ) {
        let editable: Vec<String> = if two_files {
            vec!["train.py".to_string(), "model.py".to_string()]
        } else {
            vec!["train.py".to_string()]
        };
        let shown_in_part: Vec<String> = if train_shown_in_part {
            vec!["train.py".to_string()]
        } else {
            Vec::new()
        };
        let scope = arun::propose::edit::Scope {
            editable: &editable,
            whole_files,
            shown_in_part: &shown_in_part,
        };
        let Ok(edits) = arun::propose::edit::parse(&answer, &scope) else {
            return Ok(());
        };
        let dir = tempfile::tempdir().unwrap();
        for path in &editable {
            std::fs::write(dir.path().join(path), &file).unwrap();
        }
        let result = arun::propose::edit::apply(dir.path(), &edits);
        if result.is_err() {
            // All or nothing: a failed apply leaves every file as it was.
            for path in &editable {
                prop_assert_eq!(std::fs::read_to_string(dir.path().join(path)).unwrap(), file.clone());
            }
        }
    }
}

// ---- results tables --------------------------------------------------------------------------

const TABLE_LINES: &[&str] = &[
    "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
    "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline",
    "b2c3d4e\t0.993200\t44.2\tKEEP\tincrease LR",
    "c3d4e5f\t0.000000\t0.0\tcrash\tdouble the width",
    "d4e5f6a\t1.005000\t44.0\tdiscard\tswitch to GeLU\textra\tcolumns",
    "e5f6a7b\tnan\tinf\tdiscard\t",
    "f6a7b8c\t\t\tkeep",
    "g\t1e400\t-0\tdiscard\tx",
    "\t\t\t\t",
    "x",
    "",
    "# a comment",
    "commit\tval_acc\tstatus\tmfu\tdescription",
    "h8\t0.5\tBEST\t51\tnew best",
    "i9\tDIVERGED\tcontender\t\tz",
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn the_results_table_reader_never_panics(
        header in any::<bool>(),
        text in lines_from(TABLE_LINES),
        noise in proptest::collection::vec(any::<u8>(), 0..32),
        noise_at in any::<usize>(),
    ) {
        let mut bytes = Vec::new();
        if header {
            bytes.extend_from_slice(TABLE_LINES[0].as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(text.as_bytes());
        let at = noise_at % (bytes.len() + 1);
        bytes.splice(at..at, noise);
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("results.tsv");
        std::fs::write(&path, &bytes).unwrap();
        let located = Located::Table {
            path,
            pipeline: None,
            choice: Default::default(),
        };
        if let Ok(report) = arun::view::report::load::read(&located, true) {
            let lines = bytes.split(|&b| b == b'\n').count();
            prop_assert!(report.rows.len() < lines.max(1));
            for (i, row) in report.rows.iter().enumerate() {
                prop_assert_eq!(row.n, i as u64);
                prop_assert!(row.parent.is_none_or(|p| p < row.n));
            }
        }
    }
}

/// Metric names whose words say their direction: `true` when higher is better.
const NAMED_METRICS: &[(&str, bool)] = &[
    ("val_acc", true),
    ("roc_auc", true),
    ("aggregate_score", true),
    ("best_r2_score", true),
    ("val_bpb", false),
    ("val_loss", false),
    ("hf_wer", false),
    ("val_fid", false),
];
const STATUS_WORDS: &[&str] = &[
    "keep",
    "discard",
    "crash",
    "KEEP",
    "BEST",
    "new_best",
    "baseline",
    " keep ",
    "contender",
    "done",
    "",
];
const METRIC_CELLS: &[&str] = &["DIVERGED", "", "NaN", "-", "n/a", "inf"];

/// A table row: a value (or a cell that is none), a status word and an extra cell.
fn table_row() -> impl Strategy<Value = (Result<f64, &'static str>, &'static str, String)> {
    (
        prop_oneof![
            3 => (-1000.0f64..1000.0).prop_map(Ok),
            1 => proptest::sample::select(METRIC_CELLS).prop_map(Err),
        ],
        proptest::sample::select(STATUS_WORDS),
        "[a-z ]{0,12}",
    )
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever the order of the columns, the extra ones, the statuses, the cells that are no
    /// number and the junk lines, a table whose metric's name says its direction is read that
    /// way, and its best is the best of its keeps.
    #[test]
    fn a_named_metric_is_never_read_the_wrong_way(
        (metric, higher) in proptest::sample::select(NAMED_METRICS),
        order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
        rows in proptest::collection::vec(table_row(), 0..30),
        junk in proptest::collection::vec((any::<usize>(), "#?[ -~]{0,10}"), 0..4),
        crlf in any::<bool>(),
        finished in any::<bool>(),
    ) {
        let header = ["commit", metric, "status", "description", "mfu"];
        let mut lines: Vec<String> = vec![order.iter().map(|&i| header[i]).collect::<Vec<_>>().join("\t")];
        for (n, (value, status, extra)) in rows.iter().enumerate() {
            let value = value.map_or_else(str::to_string, |v| v.to_string());
            let cells = [format!("c{n}"), value, status.to_string(), format!("idea {n}"), extra.clone()];
            lines.push(order.iter().map(|&i| cells[i].as_str()).collect::<Vec<_>>().join("\t"));
        }
        for (at, line) in &junk {
            lines.insert(1 + at % lines.len(), line.clone());
        }
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(newline);
        if finished {
            text.push_str(newline);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.tsv");
        std::fs::write(&path, &text).unwrap();
        let read = arun::view::report::load::read_table(&path, None, &Default::default());
        let Ok(report) = read else {
            // Refused only when no row was usable: no generated row can be, then.
            prop_assert!(rows.is_empty() || (rows.len() == 1 && !finished), "{:?}", read.err());
            return Ok(());
        };
        prop_assert_eq!(report.goal == arun::config::Goal::Maximize, higher);
        prop_assert_eq!(&report.metric, metric);
        // The generated rows, as read (a last line without its newline may be cut short).
        let mut best: Option<f64> = None;
        for (value, status, _) in rows.iter().take(report.rows.len()) {
            let word = status.trim().to_lowercase();
            let keep = ["keep", "best", "new_best", "baseline"].contains(&word.as_str());
            if let (true, Ok(v)) = (keep, value)
                && best.is_none_or(|b| if higher { *v > b } else { *v < b })
            {
                best = Some(*v);
            }
        }
        prop_assert_eq!(report.best().and_then(|r| r.metric), best);
        prop_assert_eq!(&report.columns, &["mfu".to_string()]);
    }
}

// ---- knob literals ---------------------------------------------------------------------------

const KNOB_LINES: &[&str] = &[
    "LR = 0.04",
    "LR = 0.04  # aligned comment",
    "LR: float = 3e-4",
    "LR = 2**19 # tokens",
    "LR = 1 << 19",
    "LR = 524_288",
    "LR = \"relu2\"",
    "LR = 'a#b'  # quoted hash",
    "LR = \"unterminated",
    "LR = \"esc\\",
    "LR == 3",
    "LR =",
    "LR",
    "LR_SCALE = LR * 2",
    "const LR: f64 = 0.04; // comment",
    "pub const LR: usize = 8;",
    "pub(crate) static mut LR: u64 = 10_000;",
    "pub(crate const LR: u8 = 1;",
    "const LR: f32 = 0.5_f32;",
    "    LR = 8usize",
    "if LR == 8:",
    "é LR = 1",
];

/// Old literals of each style and a value of a domain that suits them.
fn knob_case() -> impl Strategy<Value = (Domain, &'static str, f64)> {
    prop_oneof![
        (
            proptest::sample::select(&["0.04", "3e-4", "1.5E2", "0.5_f32", "1.0"][..]),
            -1e6..1e6f64
        )
            .prop_map(|(literal, v)| (
                Domain::Float {
                    min: -1e6,
                    max: 1e6,
                    log: false
                },
                literal,
                v
            )),
        (
            proptest::sample::select(&["8", "524_288", "8usize", "10_000", "2**19", "1 << 19"][..]),
            -1_000_000..1_000_000i64
        )
            .prop_map(|(literal, v)| (
                Domain::Int {
                    min: -1_000_000,
                    max: 1_000_000
                },
                literal,
                v as f64
            )),
        (
            proptest::sample::select(&["2**19", "2 ** 19", "1 << 19", "1<<19", "64"][..]),
            0..40i32
        )
            .prop_map(|(literal, e)| (
                Domain::Pow2 { min: 0, max: 40 },
                literal,
                2f64.powi(e)
            )),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn locating_and_parsing_knob_literals_never_panic(
        text in lines_from(KNOB_LINES),
        name in proptest::sample::select(&["LR", "L", "", "é"][..]),
        literal in prop_oneof![any::<String>(), "[-+0-9._eE*<x ]{0,12}"],
        replacement in any::<String>(),
    ) {
        for domain in [
            Domain::Float { min: 0.0, max: 1.0, log: true },
            Domain::Int { min: 0, max: 10 },
            Domain::Pow2 { min: 0, max: 20 },
            Domain::Choice { choices: vec!["\"relu2\"".to_string(), literal.clone()] },
        ] {
            let _ = knob_site::parse(&domain, &literal);
        }
        if let Ok(site) = knob_site::locate(&text, name) {
            prop_assert_eq!(&text[site.span.clone()], site.literal.as_str());
            let _ = knob_site::rewrite(&text, &site, &replacement);
        }
    }

    #[test]
    fn a_formatted_value_reads_back_after_the_rewrite(
        (domain, old, value) in knob_case(),
        rust in any::<bool>(),
        comment in prop_oneof![Just(""), Just("  # c"), Just("      // aligned")],
    ) {
        let line = if rust {
            format!("const X: usize = {old};{}", comment.replace('#', "//"))
        } else {
            format!("X = {old}{comment}")
        };
        let text = format!("before = 1\n{line}\nafter = 2\n");
        let site = knob_site::locate(&text, "X").unwrap();
        let literal = knob_site::format(&domain, Value::Number(value), &site);
        let rewritten = knob_site::rewrite(&text, &site, &literal);
        let again = knob_site::locate(&rewritten, "X").unwrap();
        prop_assert_eq!(&again.literal, &literal, "{}", rewritten);
        prop_assert_eq!(knob_site::parse(&domain, &again.literal), Ok(Value::Number(value)), "{}", literal);
        prop_assert!(rewritten.starts_with("before = 1\n") && rewritten.ends_with("\nafter = 2\n"));
    }
}
