//! `arun report` and `arun status` on real results tables that people committed to public
//! repositories (`tests/fixtures/tables/`, sources in its `SOURCES`): every page's figures are
//! checked against a computation made here from the table's bytes, with the metric column and
//! its direction read off by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ROOT;

/// Each fixture, the column that holds its metric and whether higher is better, as a person
/// reading the table says.
const FIXTURES: &[(&str, &str, bool)] = &[
    ("autokernel-sglang.tsv", "decode_tok_s", true),
    ("autoloop.tsv", "train_score", true),
    ("autoresearch-moe.tsv", "val_bpb", false),
    ("autoresearch-stt.tsv", "hf_wer", false),
    ("blitzo-autoresearch.tsv", "val_bpb", false),
    ("credit-risk-ml.tsv", "roc_auc", true),
    ("llamacpp-autotune.tsv", "tg_tok_s", true),
    ("mamba-auto-full.tsv", "val_bpb", false),
    ("nsd-decoding.tsv", "val_acc", true),
    ("train-rtx5070.tsv", "val_bpb", false),
    ("zero-order-diffusion.tsv", "val_fid", false),
];

fn fixtures() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/tables")
}

/// The figures a table should show, computed without arun's reader: rows are the lines with
/// as many cells as the header; `keep`, `best`, `new_best` and `baseline` are keeps in any
/// case, `revert` a discard; a metric cell is a value when it is a finite number.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    baseline: Option<f64>,
    best: Option<(usize, f64)>,
    experiments: usize,
    kept: usize,
    discarded: usize,
    crashed: usize,
}

fn expected(text: &str, metric: &str, higher: bool) -> Expected {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (metric_at, status_at) = (at(metric), at("status"));
    let rows: Vec<Vec<&str>> = lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|cells| cells.len() == header.len())
        .collect();
    let mut out = Expected {
        experiments: rows.len().saturating_sub(1),
        ..Expected::default()
    };
    for (n, cells) in rows.iter().enumerate() {
        let status = cells[status_at].trim().to_lowercase();
        let value = cells[metric_at]
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && status != "crash");
        if n == 0 {
            out.baseline = value;
        }
        let keep = ["keep", "best", "new_best", "baseline"].contains(&status.as_str());
        if n > 0 {
            out.kept += usize::from(keep);
            out.discarded += usize::from(status == "discard" || status == "revert");
            out.crashed += usize::from(status == "crash");
        }
        if keep && let Some(v) = value {
            let better = |b: f64| if higher { v > b } else { v < b };
            if out.best.is_none_or(|(_, b)| better(b)) {
                out.best = Some((n, v));
            }
        }
    }
    out
}

/// The value the page shows for the figure `key`.
fn figure(page: &str, key: &str) -> String {
    let start = format!(r#"data-figure="{key}"><span class="value">"#);
    let from = page
        .find(&start)
        .unwrap_or_else(|| panic!("no figure {key}"))
        + start.len();
    page[from..].split('<').next().unwrap().to_string()
}

fn arun(args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(args)
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        output.status.success(),
        "arun {args:?}: {}",
        text(&output.stderr)
    );
    (text(&output.stdout), text(&output.stderr))
}

#[test]
fn every_fixture_is_named_in_sources_with_a_commit() {
    let sources = std::fs::read_to_string(fixtures().join("SOURCES")).unwrap();
    let named: Vec<&str> = sources
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            assert_eq!(cells.len(), 4, "{l}");
            assert!(cells[1].contains('/') && cells[3].len() == 40, "{l}");
            cells[0]
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tsv"))
        .collect();
    files.sort();
    let mut listed: Vec<&str> = FIXTURES.iter().map(|f| f.0).collect();
    listed.sort();
    let mut named = named;
    named.sort();
    assert_eq!(files, named);
    assert_eq!(files, listed);
    assert!(files.len() >= 10);
}

#[test]
fn each_page_and_status_match_a_computation_from_the_table() {
    let out = tempfile::tempdir().unwrap();
    for &(file, metric, higher) in FIXTURES {
        let table = fixtures().join(file);
        let bytes = std::fs::read(&table).unwrap();
        let want = expected(&String::from_utf8_lossy(&bytes), metric, higher);
        let page_path = out.path().join(file.replace(".tsv", ".html"));
        let table_arg = table.to_str().unwrap();
        arun(&["report", table_arg, "-o", page_path.to_str().unwrap()]);
        let page = std::fs::read_to_string(&page_path).unwrap();
        let six = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.6}"));
        let got = (
            figure(&page, "baseline"),
            figure(&page, "best"),
            figure(&page, "experiments"),
            figure(&page, "kept"),
            figure(&page, "discarded"),
            figure(&page, "crashed"),
        );
        let wanted = (
            six(want.baseline),
            six(want.best.map(|b| b.1)),
            want.experiments.to_string(),
            want.kept.to_string(),
            want.discarded.to_string(),
            want.crashed.to_string(),
        );
        assert_eq!(got, wanted, "{file}");
        let improvement = match (want.baseline, want.best) {
            (Some(base), Some((_, best))) if base != 0.0 => {
                let gain = if higher { best - base } else { base - best };
                format!("{:.2}%", 100.0 * gain / base.abs())
            }
            _ => "–".to_string(),
        };
        assert_eq!(figure(&page, "improvement"), improvement, "{file}");
        let better = if higher { "higher" } else { "lower" };
        assert!(
            page.contains(&format!("{metric}, {better} is better</small>")),
            "{file}: not `{metric}, {better} is better`"
        );

        let (status, _) = arun(&["status", table_arg, "--rows", "5"]);
        let best_line = match want.best {
            Some((n, v)) => format!("  best    #{n} {metric} {v:.6} "),
            None => "  best    no result yet".to_string(),
        };
        assert!(status.contains(&best_line), "{file}: {status}");
        assert!(
            status.contains(&format!("  goal    {better} is better: ")),
            "{file}: {status}"
        );
        for line in status.lines() {
            assert!(
                unicode_columns(line) <= 120,
                "{file}: a line wider than COLUMNS: {line}"
            );
        }
    }
}

/// Columns a line takes in a terminal, counting East Asian wide characters as two.
fn unicode_columns(line: &str) -> usize {
    line.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF => 2,
            0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

#[test]
fn extra_columns_are_columns_of_the_page_and_skipped_rows_are_named() {
    let out = tempfile::tempdir().unwrap();
    let table = fixtures().join("train-rtx5070.tsv");
    let page_path = out.path().join("page.html");
    let (_, warnings) = arun(&[
        "report",
        table.to_str().unwrap(),
        "-o",
        page_path.to_str().unwrap(),
    ]);
    assert_eq!(warnings, "");
    let page = std::fs::read_to_string(&page_path).unwrap();
    for column in [
        "mfu",
        "tok_per_sec",
        "num_steps",
        "num_params_M",
        "batch_size",
        "final_loss",
    ] {
        assert!(
            page.contains(&format!(r#"<th class="extra">{column}</th>"#)),
            "{column}"
        );
    }
    assert!(page.contains(r#"<td class="extra">37700</td>"#));

    let table = fixtures().join("zero-order-diffusion.tsv");
    let (_, warnings) = arun(&[
        "report",
        table.to_str().unwrap(),
        "-o",
        page_path.to_str().unwrap(),
    ]);
    assert!(
        warnings.starts_with(
            "warning: skipped 78 rows whose cells do not fit the header: lines 860, 888, 889"
        ),
        "{warnings}"
    );
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.contains(r#"<span class="badge other">contender</span>"#));
    assert!(page.contains(r#"<span class="badge keep">NEW_BEST</span>"#));
}

#[test]
fn several_tables_make_one_comparison_page() {
    let out = tempfile::tempdir().unwrap();
    let page_path = out.path().join("comparison.html");
    let chosen = [FIXTURES[5], FIXTURES[7], FIXTURES[9]];
    let tables: Vec<String> = chosen
        .iter()
        .map(|f| fixtures().join(f.0).to_str().unwrap().to_string())
        .collect();
    let mut args = vec!["report"];
    args.extend(tables.iter().map(String::as_str));
    args.extend(["-o", page_path.to_str().unwrap()]);
    arun(&args);
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.contains("Comparison of 3 runs"));
    assert_eq!(page.matches(r#"<path class="run""#).count(), 3);
    let best_row = page.split(r#"<tr data-figure="best">"#).nth(1).unwrap();
    let best_row = best_row.split("</tr>").next().unwrap();
    for (file, metric, higher) in chosen {
        let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
        let (_, best) = expected(&text, metric, higher).best.unwrap();
        assert!(
            best_row.contains(&format!("<td>{best:.6}<")),
            "{file}: {best_row}"
        );
    }

    // The page never goes over one of the tables.
    let output = Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(["report", &tables[0], &tables[1], "-o", &tables[1]])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("would be written over the table"));
}
