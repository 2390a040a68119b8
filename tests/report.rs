//! `arun report` and `arun status` through the real binary: on a real overnight autoresearch
//! results table, on runs made here by arun against real git repositories (finished, and still
//! running beside the status command), and the page opened in headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ROOT, Setup, Target};
use serde_json::json;

/// The real results table of an overnight autoresearch run (karpathy/autoresearch, March 8).
const FIXTURE: &str = "tests/fixtures/autoresearch-mar8.tsv";

/// The page, with the slashes minijinja escapes as `&#x2f;` put back for easier matching.
fn read_page(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .replace("&#x2f;", "/")
}

/// The value of the summary figure `key` on the page.
fn figure(html: &str, key: &str) -> String {
    let start = format!(r#"data-figure="{key}"><span class="value">"#);
    let from = html
        .find(&start)
        .unwrap_or_else(|| panic!("no figure `{key}` in the page"))
        + start.len();
    html[from..from + html[from..].find('<').unwrap()].to_string()
}

/// A copy of the fixture in a temporary directory, and the binary run there.
fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("autoresearch-mar8.tsv");
    std::fs::copy(Path::new(ROOT).join(FIXTURE), &table).unwrap();
    (dir, table)
}

fn arun(dir: &Path, args: &[&str]) -> common::Run {
    let output = Command::new(env!("CARGO_BIN_EXE_arun"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    common::Run { output }
}

#[test]
fn the_report_of_an_autoresearch_table_shows_its_figures() {
    let (dir, table) = fixture_dir();
    let run = arun(dir.path(), &["report", table.to_str().unwrap()]);
    run.assert_code(0);
    let page_path = dir.path().join("autoresearch-mar8.html");
    assert_eq!(run.stdout().trim(), page_path.to_str().unwrap());
    let html = read_page(&page_path);

    // The overnight run: the baseline, then 125 experiments: 22 kept, 102 discarded, 1 crash.
    assert_eq!(figure(&html, "experiments"), "125");
    assert_eq!(figure(&html, "kept"), "22");
    assert_eq!(figure(&html, "discarded"), "102");
    assert_eq!(figure(&html, "crashed"), "1");
    assert_eq!(figure(&html, "baseline"), "0.997900");
    assert_eq!(figure(&html, "best"), "0.969686");
    assert_eq!(figure(&html, "improvement"), "2.83%");
    assert_eq!(figure(&html, "keep-rate"), "17.6%");
    // A bare table has no times or costs; the page says so instead of making them up.
    assert_eq!(figure(&html, "per-hour"), "–");
    assert_eq!(figure(&html, "cost"), "–");
    assert!(html.contains("no journal"));

    // The plot: every experiment once, by kind; the table: every row.
    assert!(html.contains("Progress: 125 experiments, 22 kept improvements"));
    assert_eq!(html.matches(r#"class="mark keep""#).count(), 23);
    assert_eq!(html.matches(r#"class="mark discard""#).count(), 102);
    assert_eq!(html.matches(r#"class="mark crash""#).count(), 1);
    assert_eq!(html.matches(r#"<tr class="row "#).count(), 126);
    assert!(
        html.contains("warmdown 0.7 to 0.75"),
        "the best is labelled"
    );
    // The one discard far above the baseline (3.2) is drawn at the edge, not lost.
    assert!(html.contains("Discarded, off the scale"));
    assert_self_contained(&html);

    // -o writes elsewhere.
    let elsewhere = dir.path().join("elsewhere.html");
    arun(
        dir.path(),
        &[
            "report",
            table.to_str().unwrap(),
            "-o",
            elsewhere.to_str().unwrap(),
        ],
    )
    .assert_code(0);
    assert!(elsewhere.is_file());

    // The status screen of the same table.
    let status = arun(
        dir.path(),
        &["status", table.to_str().unwrap(), "--rows", "3"],
    );
    status.assert_code(0);
    let text = status.stdout();
    assert!(
        text.contains("best    #118 val_bpb 0.969686 (baseline 0.997900, -0.028214, 2.83% better)"),
        "{text}"
    );
    assert!(
        text.contains(
            "125 experiments after the baseline: 22 kept, 102 discarded, 1 crashed (keep rate 17.6%)"
        ),
        "{text}"
    );
    assert!(text.contains("last 3 of 126 rows:"), "{text}");
    assert!(
        text.contains("muon momentum warmup 200 to 150 steps"),
        "{text}"
    );
}

/// Nothing on the page is fetched: every link is an anchor within it, no stylesheet or script
/// comes from elsewhere.
fn assert_self_contained(html: &str) {
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(
                value.starts_with('#'),
                "external reference: {}",
                &value[..value.len().min(60)]
            );
        }
    }
    assert!(!html.contains("<link") && !html.contains("@import") && !html.contains("url(http"));
}

fn finished_run() -> Target {
    let target = Target::new(Setup {
        plan: json!({
            "1": {"LR": 0.05},
            "2": {"LR": 0.5, "description": "much larger LR <b>bold</b>"},
            "3": {"MODE": "crash", "LR": 0.04, "description": "bold change"},
            "4": {"MODE": "normal", "description": "fix: back to normal mode"},
        }),
        extra: "[decision]\nfix-attempts = 1",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "5"]).assert_code(0);
    target
}

#[test]
fn the_report_of_a_run_shows_figures_diffs_and_logs() {
    let target = finished_run();
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let run = target.arun_command(&["report", &pipeline, "--tag", "test"]);
    run.assert_code(0);
    let page_path = target.run_dir().join("report.html");
    assert_eq!(run.stdout().trim(), page_path.to_str().unwrap());
    let html = read_page(&page_path);

    assert_eq!(figure(&html, "baseline"), "1.004900");
    assert_eq!(figure(&html, "best"), "1.000100");
    assert_eq!(figure(&html, "experiments"), "4");
    assert_eq!(figure(&html, "kept"), "2");
    assert_eq!(figure(&html, "discarded"), "1");
    assert_eq!(figure(&html, "crashed"), "1");
    assert_eq!(figure(&html, "keep-rate"), "50.0%");
    let per_hour: f64 = figure(&html, "per-hour").parse().unwrap();
    assert!(per_hour > 0.0);
    assert!(html.contains("not reported by the proposer"));
    assert!(html.contains("finished: reached the limit of 5 experiments"));

    // Each experiment's diff against the commit it was made on, and the end of its log.
    assert!(html.contains(r#"<span class="add">+LR = 0.05</span>"#));
    assert!(html.contains(r#"<span class="del">-LR = 0.1</span>"#));
    assert!(html.contains("git diff "));
    assert!(html.contains("refs/arun/test/2"));
    assert!(
        html.contains("val_loss: 1.220900"),
        "the discarded run's log"
    );
    assert!(
        html.contains("RuntimeError: boom: the model exploded"),
        "the crash's log tail"
    );
    // The fix is shown as a fix of the crash, with only its own change in its diff.
    assert!(html.contains("(fix of #3)"));
    assert!(html.contains(r#"<span class="add">+MODE = &quot;normal&quot;</span>"#));
    // Decision reasons, and text from the proposer escaped.
    assert!(html.contains("discarded: +0.220500 does not improve on the best 1.000400"));
    assert!(html.contains("much larger LR &lt;b&gt;bold&lt;/b&gt;"));
    assert!(!html.contains("<b>bold</b>"));
    assert_self_contained(&html);

    // The same run found from its run directory and from the repository.
    for input in [".git/arun/test", "."] {
        let page = target.path("page.html");
        let output = Command::new(env!("CARGO_BIN_EXE_arun"))
            .args(["report", input, "-o", page.to_str().unwrap()])
            .current_dir(&target.repo)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let again = read_page(&page);
        assert_eq!(figure(&again, "experiments"), "4", "from `{input}`");
        assert!(again.contains("RuntimeError: boom"), "from `{input}`");
    }

    // Nothing the report did changed the repository.
    assert_eq!(target.status(), "");
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
}

#[test]
fn the_report_of_a_tree_search_shows_its_shape_backtracking_and_dead_ends() {
    // The deceptive landscape of `tests/tree_search.rs`: drafts `a` (#1) and `b` (#2); #1's
    // children #3 and #4 fail and it is a dead end; the search backtracks to #2, whose child #6
    // (`b` then `c`) is the best.
    let target = Target::new(Setup {
        template: "ideas-trainer",
        proposer: r#"[proposer]
kind = "agent"
retry-wait = "0s"
max-failures = 2

[proposer.agent]
command = "python3 {root}/tests/scripts/idea_agent.py"
env = { PLAN = "{plan}" }
"#,
        extra: "[decision.noise]\nbaseline-runs = 1\n\n[search]\nstrategy = \"tree\"\ndrafts = 2\npatience = 2",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "8"]).assert_code(0);
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    target.arun_command(&["report", &pipeline]).assert_code(0);
    let html = read_page(&target.run_dir().join("report.html"));

    assert!(
        html.contains(
            "<p>tree search: 4 nodes, 2 branches from the baseline, 1 dead end, 2 drafts</p>"
        ),
        "the facts line"
    );
    assert_eq!(figure(&html, "best"), "0.700000");
    // The best path 0 -> 2 -> 6 is thick; #1, the dead end, has its ring.
    assert_eq!(html.matches(r#"class="kept-path""#).count(), 2);
    assert_eq!(html.matches(r#"class="dead-end""#).count(), 1);
    assert!(html.contains("add idea a (dead end)</title>"));
    for n in [0, 2, 6] {
        assert!(
            html.contains(&format!(
                r#"<tr class="row keep on-path clickable" id="e{n}""#
            )),
            "#{n} is on the path"
        );
    }
    assert!(html.contains(r#"<tr class="row keep clickable" id="e1""#));
    // The table compares each experiment with the node it was made on: #5 with #2.
    let row5 = &html[html.find(r#"id="e5""#).unwrap()..];
    let row5 = &row5[..row5.find("</tr>").unwrap()];
    assert!(row5.contains(">+0.100000<"), "{row5}");
}

#[test]
fn report_and_status_say_when_there_is_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = arun(dir.path(), &["report", "missing.tsv"]);
    run.assert_code(1);
    assert_eq!(run.stderr(), "error: `missing.tsv` does not exist\n");

    let run = arun(dir.path(), &["status"]);
    run.assert_code(1);
    assert!(
        run.stderr().starts_with("error: there is no run in `.`"),
        "{}",
        run.stderr()
    );

    // A table with nothing usable is refused, naming why; one with a row is not.
    let table = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t1.0\n";
    std::fs::write(dir.path().join("results.tsv"), table).unwrap();
    let run = arun(dir.path(), &["report", "results.tsv"]);
    run.assert_code(1);
    assert_eq!(
        run.stderr(),
        "error: `results.tsv`: no usable row: skipped 1 row whose cells do not fit the header: \
         line 2\n"
    );
    let table = format!("{table}abd\t0.9\t1.0\tkept\tx\n");
    std::fs::write(dir.path().join("results.tsv"), &table).unwrap();
    let run = arun(dir.path(), &["report", "results.tsv"]);
    run.assert_code(0);
    assert_eq!(
        run.stderr(),
        "warning: skipped 1 row whose cells do not fit the header: line 2\n"
    );

    // The page never goes over the table: not with `-o`, not for a table called `*.html`.
    let run = arun(
        dir.path(),
        &["report", "results.tsv", "-o", "./results.tsv"],
    );
    run.assert_code(1);
    assert!(
        run.stderr().contains("would be written over the table"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("results.tsv")).unwrap(),
        table
    );
    std::fs::write(dir.path().join("results.html"), &table).unwrap();
    let run = arun(dir.path(), &["report", "results.html"]);
    run.assert_code(0);
    assert_eq!(run.stdout().trim(), "results.report.html");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("results.html")).unwrap(),
        table
    );

    let target = finished_run();
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    let run = target.arun_command(&["status", &pipeline, "--tag", "other"]);
    run.assert_code(1);
    assert!(
        run.stderr().contains("there is no run `other` in"),
        "{}",
        run.stderr()
    );
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_and_report_of_a_run_in_progress() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "hang-once", "description": "try a hanging change"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"1s\"",
        ..Setup::default()
    });
    let mut child = target.spawn(&["--max-experiments", "3"]);
    wait_for(&target.path("pids.hung"));
    let pipeline = target.pipeline.to_str().unwrap().to_string();

    // While arun drives the run and holds its lock, status reads it.
    let run = target.arun_command(&["status", &pipeline]);
    run.assert_code(0);
    let text = run.stdout();
    assert!(
        text.contains(&format!("state   running (arun pid {})", child.id())),
        "{text}"
    );
    assert!(
        text.contains("now     #1 running for ")
            && text.contains("of the 30s budget")
            && text.contains(": try a hanging change"),
        "{text}"
    );
    assert!(text.contains("          > step 0 | loss 3.000"), "{text}");
    assert!(
        text.contains("best    #0 val_loss 1.004900") || text.contains("best    no result"),
        "{text}"
    );
    assert!(text.contains("last 1 of 1 rows:"), "{text}");

    // The report of a run in progress shows the experiment that runs.
    let run = target.arun_command(&["report", &pipeline]);
    run.assert_code(0);
    let html = read_page(&target.run_dir().join("report.html"));
    assert!(html.contains(r#"<span class="badge running">running</span>"#));
    assert!(html.contains("experiment #1 was running"));

    // The page of the live run's results table goes out of its work tree: a new file there
    // would count against the experiment that runs.
    let table = target.repo.join("results.tsv");
    let run = target.arun_command(&["report", table.to_str().unwrap()]);
    run.assert_code(0);
    let written = std::path::PathBuf::from(run.stdout().trim());
    assert_eq!(
        written,
        target
            .repo
            .canonicalize()
            .unwrap()
            .join(".git/arun/reports/results.html")
    );
    assert!(written.is_file());
    assert!(!target.repo.join("results.html").exists());

    // Stopped with Ctrl-C, the status says so.
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let text = target.arun_command(&["status", &pipeline]).stdout();
    assert!(text.contains("state   interrupted; started "), "{text}");
    assert!(
        text.contains("now     #1 was running when its arun stopped"),
        "{text}"
    );
}

/// Chromium as Debian packages it, or `ARUN_CHROMIUM`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ARUN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `page` (`#fragment` included) with `args`, killed after a minute;
/// (stdout, stderr).
fn run_chromium(chromium: &Path, page: &str, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (profile.path().join("stdout"), profile.path().join("stderr"));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{page}"))
        // Files, not pipes: a page dumped into a pipe nobody reads yet would block it.
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    (read(&stdout), read(&stderr))
}

#[test]
fn the_page_renders_in_chromium_without_errors_and_the_plot_is_drawn() {
    let Some(chromium) = chromium() else {
        // CI installs Chromium (.ci/run); there its absence is a failure, not a skip.
        assert!(
            !common::in_ci(),
            "chromium is not installed; .ci/run installs the Debian package `chromium`"
        );
        eprintln!(
            "skipped: chromium is not installed (apt-get install chromium); the page was not \
             opened in a browser"
        );
        return;
    };
    let (dir, table) = fixture_dir();
    arun(dir.path(), &["report", table.to_str().unwrap()]).assert_code(0);
    let page = dir.path().join("autoresearch-mar8.html");
    let page = page.to_str().unwrap();

    // The script ran to its end without an error, and says where the plot is.
    let (dom, log) = run_chromium(
        &chromium,
        page,
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let body_at = dom.find("<body").expect("a body");
    let body = &dom[body_at..body_at + dom[body_at..].find('>').unwrap()];
    assert!(
        body.contains(r#"data-js="ok""#),
        "the script did not finish: {body}"
    );
    assert!(!body.contains("data-js-error"), "a script error: {body}");
    let rect_at = body.find(r#"data-plot=""#).expect("the plot's position") + 11;
    let rect: Vec<u32> = body[rect_at..rect_at + body[rect_at..].find('"').unwrap()]
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let (left, top, width, height) = (rect[0], rect[1], rect[2], rect[3]);
    assert!(
        width > 600 && height > 300 && top + height < 2000,
        "{rect:?}"
    );

    // The screenshot: the plot area holds the kept points' green and the discards' grey.
    let shot = dir.path().join("shot.png");
    run_chromium(
        &chromium,
        page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let pixel = |x: u32, y: u32| {
        let at = (y as usize * info.width as usize + x as usize) * channels;
        (pixels[at], pixels[at + 1], pixels[at + 2])
    };
    let near = |(r, g, b): (u8, u8, u8), (tr, tg, tb): (u8, u8, u8)| {
        r.abs_diff(tr) < 40 && g.abs_diff(tg) < 40 && b.abs_diff(tb) < 40
    };
    let (mut green, mut grey, mut ink) = (0, 0, 0);
    for y in top..top + height {
        for x in left..left + width {
            let p = pixel(x, y);
            if near(p, (0x2e, 0xcc, 0x71)) {
                green += 1;
            }
            if near(p, (0xcc, 0xcc, 0xcc)) && p.0.abs_diff(p.2) < 8 {
                grey += 1;
            }
            if p.0 < 200 || p.1 < 200 || p.2 < 200 {
                ink += 1;
            }
        }
    }
    let area = width * height;
    assert!(green > 2000, "kept points: {green} green pixels");
    assert!(grey > 1000, "discarded points: {grey} grey pixels");
    assert!(
        ink > area / 50,
        "the plot is nearly empty: {ink} of {area} pixels"
    );

    // A run's page opened at `#e3` (a click on point 3) shows experiment 3's diff and log.
    let target = finished_run();
    let pipeline = target.pipeline.to_str().unwrap().to_string();
    target.arun_command(&["report", &pipeline]).assert_code(0);
    let page = target.run_dir().join("report.html");
    let (dom, log) = run_chromium(
        &chromium,
        &format!("{}#e3", page.display()),
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains(r#"<tr class="row crash on-path clickable open flash" id="e3""#),
        "row 3 is open and flashes"
    );
    assert!(
        dom.contains(r#"<tr class="detail" id="d3" data-status="crash"><td"#),
        "its details show"
    );
    assert!(
        dom.contains(r#"<tr class="detail" id="d2" data-status="discard" hidden="">"#),
        "the others stay shut"
    );
}
