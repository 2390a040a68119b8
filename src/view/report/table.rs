//! Reading the results tables people publish, as they are: columns found by their header names
//! wherever they stand, extra columns kept, statuses as written, non-numeric metrics as no
//! value, and rows that do not fit the header skipped with a warning that names their lines.
//! Reads bytes (CRLF, non-UTF-8, `#` comments, a half-written last line from a run appending
//! right now) in one pass, linear in the size of the file.

use std::ops::Range;

/// What was read from a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The metric column's name as written in the header.
    pub metric: String,
    /// The columns that are none of commit, status, metric, memory and description, in header
    /// order; each row's `extra` follows it.
    pub columns: Vec<String>,
    pub rows: Vec<TableRow>,
    /// What the reader skipped or replaced, each naming its lines.
    pub warnings: Vec<String>,
}

/// One row as the table wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// Its line in the file, from 1.
    pub line: usize,
    pub commit: String,
    /// The status cell, trimmed.
    pub status: String,
    /// The metric, when its cell is a finite number.
    pub metric: Option<f64>,
    pub memory_gb: Option<f64>,
    pub description: String,
    /// The cells of `Table::columns`.
    pub extra: Vec<String>,
}

/// Why a table could not be read at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable(pub String);

/// Where the known columns stand in one header.
#[derive(Debug, Clone)]
struct Layout {
    width: usize,
    commit: Option<usize>,
    status: Option<usize>,
    metric: Option<usize>,
    memory: Option<usize>,
    description: Option<usize>,
    /// Each extra column: its index here and in `Table::columns`.
    extra: Vec<(usize, usize)>,
}

const COMMIT: &[&str] = &[
    "commit",
    "git_commit",
    "commit_hash",
    "sha",
    "hash",
    "git_sha",
];
const STATUS: &[&str] = &["status", "decision", "verdict", "outcome"];
const DESCRIPTION: &[&str] = &[
    "description",
    "desc",
    "idea",
    "change",
    "summary",
    "notes",
    "note",
    "comment",
];
const MEMORY: &[&str] = &[
    "memory_gb",
    "mem_gb",
    "peak_gb",
    "vram_gb",
    "peak_vram_gb",
    "peak_memory_gb",
    "gpu_memory_gb",
    "memory",
];
/// Words of column names that count or time experiments rather than measure them: never the
/// metric unless `--metric` names them or no other column holds numbers.
const NOT_METRIC: &[&str] = &[
    "experiment",
    "exp",
    "iter",
    "iteration",
    "round",
    "step",
    "steps",
    "run",
    "id",
    "idx",
    "index",
    "n",
    "seed",
    "timestamp",
    "time",
    "date",
    "epoch",
    "elapsed",
    "duration",
    "seconds",
    "delta",
    "params",
    "batch",
    "num",
    "mfu",
    "mb",
    "gb",
];

/// How many malformed lines a warning names before it counts the rest.
const NAMED_LINES: usize = 8;

/// Reads a table's bytes. `metric` names the metric column (case-insensitive); without it the
/// first column of numbers that does not count or time experiments is the metric.
pub fn parse(bytes: &[u8], metric: Option<&str>) -> Result<Table, Unusable> {
    let text = String::from_utf8_lossy(bytes);
    let mut warnings = Vec::new();
    if matches!(text, std::borrow::Cow::Owned(_)) {
        warnings.push(
            "bytes that are not UTF-8 were replaced by `\u{fffd}` (the table is read as UTF-8)"
                .to_string(),
        );
    }
    let complete = text.ends_with('\n');
    let lines = cells(&text);
    let Some(((_, header), data)) = lines.split_first() else {
        return Err(Unusable("the table is empty".to_string()));
    };
    if data.is_empty() {
        return Err(Unusable("the table has a header and no rows".to_string()));
    }
    let mut columns = Vec::new();
    let first_block = data
        .iter()
        .position(|(_, fields)| is_header(fields))
        .map_or(data, |end| &data[..end]);
    let metric_name = choose_metric(header, first_block, metric)?;
    let mut layout = Layout::of(header, &metric_name, &mut columns);
    let last_line = lines.last().map_or(0, |(n, _)| *n);
    let mut rows = Vec::with_capacity(data.len());
    let (mut malformed, mut incomplete) = (Vec::new(), None);
    for (line, fields) in data {
        if is_header(fields) {
            layout = Layout::of(fields, &metric_name, &mut columns);
            continue;
        }
        match layout.row(*line, fields) {
            Some(row) => rows.push(row),
            None if *line == last_line && !complete => incomplete = Some(*line),
            None => malformed.push(*line),
        }
    }
    for row in &mut rows {
        row.extra.resize(columns.len(), String::new());
    }
    warnings.extend(skipped(&malformed, incomplete));
    if rows.is_empty() {
        return Err(Unusable(format!("no usable row: {}", warnings.join("; "))));
    }
    Ok(Table {
        metric: metric_name,
        columns,
        rows,
        warnings,
    })
}

/// Each line that is neither blank nor a `#` comment, numbered from 1, split into its cells
/// (a CRLF line end is not part of the last cell).
fn cells(text: &str) -> Vec<(usize, Vec<&str>)> {
    text.split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(number, line)| (number, line.split('\t').collect()))
        .collect()
}

/// The warnings for skipped lines: those that do not fit the header, and a last line cut short.
fn skipped(malformed: &[usize], incomplete: Option<usize>) -> Vec<String> {
    let mut warnings = Vec::new();
    if !malformed.is_empty() {
        warnings.push(format!(
            "skipped {} whose cells do not fit the header: {}",
            plural(malformed.len(), "row"),
            line_list(malformed)
        ));
    }
    if let Some(line) = incomplete {
        warnings.push(format!(
            "skipped line {line}: it is cut short (a run may be writing it now)"
        ));
    }
    warnings
}

/// `3 rows`, `1 row`.
fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

/// `lines 4, 9 and 12`, or the first few and how many more.
fn line_list(lines: &[usize]) -> String {
    let named: Vec<String> = lines
        .iter()
        .take(NAMED_LINES)
        .map(ToString::to_string)
        .collect();
    let word = if lines.len() == 1 { "line" } else { "lines" };
    match lines.len() {
        1 => format!("{word} {}", named[0]),
        n if n <= NAMED_LINES => {
            format!("{word} {} and {}", named[..n - 1].join(", "), named[n - 1])
        }
        n => format!("{word} {} and {} more", named.join(", "), n - NAMED_LINES),
    }
}

/// A header name as compared: trimmed, lowercase, spaces and dashes as underscores.
fn normal(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

fn named(name: &str, names: &[&str]) -> bool {
    names.contains(&normal(name).as_str())
}

/// A header line: it names a status column and a commit or description column. Tables that
/// change format mid-file repeat one.
fn is_header(fields: &[&str]) -> bool {
    fields.iter().any(|f| named(f, STATUS))
        && fields
            .iter()
            .any(|f| named(f, COMMIT) || named(f, DESCRIPTION))
}

/// The first column that names one of `names`, in the order `names` prefers them.
fn find(header: &[&str], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|name| header.iter().position(|h| normal(h) == *name))
}

/// A cell's number: finite values only (`NaN`, `inf`, `DIVERGED`, `-` and empty are none).
pub fn number(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The metric column's name: the one `wanted` names, else the first column of numbers that is
/// not commit, status, description or memory and does not count or time experiments, else the
/// first such column at all, else the first column whose name says a direction.
fn choose_metric(
    header: &[&str],
    data: &[(usize, Vec<&str>)],
    wanted: Option<&str>,
) -> Result<String, Unusable> {
    let shown = || header.join("\\t");
    if let Some(wanted) = wanted {
        return header
            .iter()
            .find(|h| normal(h) == normal(wanted))
            .map(|h| h.trim().to_string())
            .ok_or_else(|| {
                Unusable(format!(
                    "there is no column `{wanted}`; the header is `{}`",
                    shown()
                ))
            });
    }
    let known = [COMMIT, STATUS, DESCRIPTION, MEMORY];
    let candidates: Vec<usize> = (0..header.len())
        .filter(|&i| !known.iter().any(|names| named(header[i], names)))
        .collect();
    let numeric = |&i: &usize| {
        let cells = data.iter().filter_map(|(_, f)| f.get(i)).map(|c| c.trim());
        let (mut filled, mut numbers) = (0, 0);
        for cell in cells.filter(|c| !c.is_empty()) {
            filled += 1;
            numbers += usize::from(number(cell).is_some());
        }
        numbers > 0 && 2 * numbers >= filled
    };
    let counts = |&i: &usize| {
        normal(header[i])
            .split('_')
            .any(|word| NOT_METRIC.contains(&word))
    };
    let chosen = candidates
        .iter()
        .find(|i| numeric(i) && !counts(i))
        .or_else(|| candidates.iter().find(|i| numeric(i)))
        .or_else(|| {
            candidates
                .iter()
                .find(|&&i| super::direction::from_name(header[i]).is_some())
        });
    match chosen {
        Some(&i) => Ok(header[i].trim().to_string()),
        None => Err(Unusable(format!(
            "no column holds the metric's numbers; the header is `{}`: name the metric's \
             column with `--metric NAME`",
            shown()
        ))),
    }
}

impl Layout {
    /// The layout of `header`; extra columns not in `columns` yet are added to it.
    fn of(header: &[&str], metric: &str, columns: &mut Vec<String>) -> Layout {
        let metric = header.iter().position(|h| normal(h) == normal(metric));
        let mut layout = Layout {
            width: header.len(),
            commit: find(header, COMMIT),
            status: find(header, STATUS),
            metric,
            memory: find(header, MEMORY).filter(|&i| Some(i) != metric),
            description: find(header, DESCRIPTION),
            extra: Vec::new(),
        };
        let taken = [
            layout.commit,
            layout.status,
            layout.metric,
            layout.memory,
            layout.description,
        ];
        for (i, name) in header.iter().enumerate() {
            if taken.contains(&Some(i)) {
                continue;
            }
            let name = name.trim().to_string();
            let at = match columns.iter().position(|c| *c == name) {
                Some(at) => at,
                None => {
                    columns.push(name);
                    columns.len() - 1
                }
            };
            layout.extra.push((i, at));
        }
        layout
    }

    /// The row on `line`, or `None` when its cells do not fit this layout: fewer cells than
    /// the status and metric need, or more cells than the header where the status is not a
    /// word a results table uses (a row of another format).
    fn row(&self, line: usize, fields: &[&str]) -> Option<TableRow> {
        let needed = [self.status, self.metric]
            .into_iter()
            .flatten()
            .max()
            .map_or(1, |i| i + 1);
        if fields.len() < needed {
            return None;
        }
        let cell = |i: Option<usize>| i.and_then(|i| fields.get(i)).map_or("", |c| c.trim());
        let status = cell(self.status);
        let spill = self.spill(fields.len());
        if fields.len() > self.width && (spill.is_none() || !super::status_word_known(status)) {
            return None;
        }
        let mut description = cell(self.description).to_string();
        if let Some(range) = spill {
            // A description with tabs in it: the cells past the header are its own.
            description = fields[range].join(" ").trim().to_string();
        }
        Some(TableRow {
            line,
            commit: cell(self.commit).to_string(),
            status: status.to_string(),
            metric: number(cell(self.metric)),
            memory_gb: number(cell(self.memory)),
            description,
            extra: self.extras(fields),
        })
    }

    /// For a row of `len` cells, more than the header has, the cells that are the description
    /// when the description is the header's last column.
    fn spill(&self, len: usize) -> Option<Range<usize>> {
        let last = self.description.filter(|&d| d + 1 == self.width)?;
        (len > self.width).then_some(last..len)
    }

    fn extras(&self, fields: &[&str]) -> Vec<String> {
        let size = self.extra.iter().map(|&(_, at)| at + 1).max().unwrap_or(0);
        let mut extra = vec![String::new(); size];
        for &(i, at) in &self.extra {
            extra[at] = fields.get(i).map_or("", |c| c.trim()).to_string();
        }
        extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_wherever_they_stand() {
        let table = parse(
            b"timestamp\tcommit\tstatus\tval_acc\tpeak_gb\tkind\tdescription\n\
              2026-03-01\ta1\tkeep\t0.5\t3.0\tlr\tbaseline\n\
              2026-03-02\tb2\tBEST\t0.6\t3.1\tarch\twider\n",
            None,
        )
        .unwrap();
        assert_eq!(table.metric, "val_acc");
        assert_eq!(table.columns, ["timestamp", "kind"]);
        let row = &table.rows[1];
        assert_eq!(
            (
                row.commit.as_str(),
                row.status.as_str(),
                row.metric,
                row.memory_gb
            ),
            ("b2", "BEST", Some(0.6), Some(3.1))
        );
        assert_eq!(row.extra, ["2026-03-02", "arch"]);
        assert_eq!(row.description, "wider");
    }

    #[test]
    fn experiment_numbers_are_not_the_metric_and_metric_names_the_column() {
        let text = b"experiment\ttag\tdecode_tok_s\tlatency_ms\tstatus\tdescription\n\
                     1\ta\t107.2\t9\tKEEP\tx\n2\tb\tN/A\t8\tdiscard\ty\n";
        let table = parse(text, None).unwrap();
        assert_eq!(table.metric, "decode_tok_s");
        assert_eq!(table.rows[1].metric, None);
        let table = parse(text, Some("LATENCY_MS")).unwrap();
        assert_eq!(table.metric, "latency_ms");
        assert_eq!(table.rows[1].metric, Some(8.0));
        let err = parse(text, Some("val_bpb")).unwrap_err();
        assert!(err.0.starts_with("there is no column `val_bpb`"), "{err:?}");
    }

    #[test]
    fn crlf_comments_bad_bytes_and_a_half_written_last_line() {
        let mut bytes = b"# a comment\r\ncommit\tval_bpb\tmemory_gb\tstatus\tdescription\r\n\
                          a\t1.0\t44\tkeep\tbase\xffline\r\n\
                          # another\r\n\
                          b\tNaN\t44\tdiscard\tnan\r\n\
                          c\t0.9"
            .to_vec();
        let table = parse(&bytes, None).unwrap();
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[0].description, "base\u{fffd}line");
        assert_eq!(table.rows[1].line, 5);
        assert_eq!(table.rows[1].metric, None);
        assert!(
            table.warnings[0].contains("not UTF-8"),
            "{:?}",
            table.warnings
        );
        assert_eq!(
            table.warnings[1],
            "skipped line 6: it is cut short (a run may be writing it now)"
        );
        bytes.extend_from_slice(b"\tx\tkeep\tdone\n");
        let table = parse(&bytes, None).unwrap();
        assert_eq!(table.rows.len(), 3);
    }

    #[test]
    fn rows_that_do_not_fit_are_skipped_and_named() {
        let mut text = String::from("commit\tval_fid\tmemory_gb\tstatus\tdescription\n");
        text.push_str("a\t150\t1\tkeep\tbase\n");
        for i in 0..10 {
            text.push_str(&format!("r{i}\tspsa\tarch\tcurriculum\tcfg\t200.1\tnote\n"));
        }
        text.push_str("b\t140\t1\tkeep\ta\tdescription\twith tabs\n");
        text.push_str("c\n");
        let table = parse(text.as_bytes(), None).unwrap();
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[1].description, "a description with tabs");
        assert_eq!(
            table.warnings,
            [
                "skipped 11 rows whose cells do not fit the header: lines 3, 4, 5, 6, 7, 8, 9, 10 \
              and 3 more"
            ]
        );
    }

    #[test]
    fn a_second_header_changes_the_layout() {
        let table = parse(
            b"commit\tval_bpb\tmemory_gb\tstatus\tdescription\n\
              a\t1.0\t44\tkeep\tbase\n\
              commit\tval_bpb\tmfu\tstatus\tdescription\n\
              b\t0.9\t51\tkeep\twith mfu\n",
            None,
        )
        .unwrap();
        assert_eq!(table.columns, ["mfu"]);
        assert_eq!(table.rows[0].extra, [""]);
        assert_eq!(table.rows[1].extra, ["51"]);
        assert_eq!(table.rows[1].memory_gb, None);
        assert_eq!(table.rows[1].metric, Some(0.9));
    }

    #[test]
    fn only_an_unusable_table_is_refused() {
        for (text, expected) in [
            ("", "the table is empty"),
            (
                "commit\tval_bpb\tstatus\n",
                "the table has a header and no rows",
            ),
            ("a\tb\nx\ty\n", "no column holds the metric's numbers"),
            (
                "commit\tval_bpb\tmemory_gb\tstatus\tdescription\nx",
                "no usable row: skipped line 2",
            ),
        ] {
            let err = parse(text.as_bytes(), None).unwrap_err();
            assert!(err.0.starts_with(expected), "{text:?}: {err:?}");
        }
    }
}
