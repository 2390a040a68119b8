//! The HTTP proposer in full loops against `tests/scripts/chat_server.py`, a real local server
//! speaking the chat-completions protocol that checks each request's shape and answers from a
//! script: edits applied, a bad edit corrected after the error went back, an edit that never
//! applies recorded as a crash, the API key kept out of everything but the request header (even
//! when the server echoes it), and the edits a model must not make refused with a reason it can
//! act on: a whole file it saw only in part, a snippet given as a whole file, a block for a file
//! that may not change, drafts in its reasoning. Token counts hold when usage is partial.

mod common;

use common::{ChatServer, Setup, Target};
use serde_json::json;

const KEY: &str = "sk-test-secret-4711";

fn block(search: &str, replace: &str) -> String {
    format!("train.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n")
}

/// A target proposed for by the HTTP proposer against `server`; `run` is the experiment's
/// command, `extra` more pipeline tables (e.g. `[limits]`).
fn http_target(server: &ChatServer, run: &str, extra: &str) -> Target {
    let proposer = format!(
        r#"[proposer]
kind = "http"
retry-wait = "0s"
max-failures = 2

[proposer.http]
base-url = "{}"
model = "test-model"
api-key-env = "ARUN_TEST_MODEL_KEY"
temperature = 0.2
edit-retries = 2
"#,
        server.base_url()
    );
    Target::new(Setup {
        run: Box::leak(run.to_string().into_boxed_str()),
        proposer: Box::leak(proposer.into_boxed_str()),
        extra: Box::leak(extra.to_string().into_boxed_str()),
        ..Setup::default()
    })
}

/// `arun --max-experiments MAX` with the key set.
fn arun(target: &Target, max: u32) -> common::Run {
    target.arun_with_env(
        &["--max-experiments", &max.to_string()],
        &[("ARUN_TEST_MODEL_KEY", KEY)],
    )
}

/// What arun said back to the model before request `index`: the last message's text.
fn feedback(requests: &[serde_json::Value], index: usize) -> String {
    let messages = requests[index]["body"]["messages"].as_array().unwrap();
    assert_eq!(messages[messages.len() - 2]["role"], "assistant");
    messages[messages.len() - 1]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Each results row after the header: (status, description).
fn rows(target: &Target) -> Vec<(String, String)> {
    target
        .results_redacted()
        .lines()
        .skip(1)
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            (fields[3].to_string(), fields[4].to_string())
        })
        .collect()
}

fn row(status: &str, description: &str) -> (String, String) {
    (status.to_string(), description.to_string())
}

#[test]
fn a_model_edits_through_search_replace_blocks_retries_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = block("LR = 0.2", "LR = 0.3");
    let answers = json!([
        // 1: applies at once.
        format!(
            "DESCRIPTION: lower LR to 0.05\n\n```python\n{}```\n",
            block("LR = 0.1", "LR = 0.05")
        ),
        // 2: misses, then applies with trailing whitespace the file does not have.
        format!("DESCRIPTION: lower LR to 0.03\n\n{wrong}"),
        format!(
            "DESCRIPTION: lower LR to 0.03\n\n{}",
            block("LR = 0.05   ", "LR = 0.03")
        ),
        // 3: never applies: three tries, then a crash row.
        format!("DESCRIPTION: raise LR to 0.2\n\n{wrong}"),
        format!("DESCRIPTION: raise LR to 0.2\n\n{wrong}"),
        "I think the learning rate should be higher.",
    ]);
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": answers,
            "default": "- try a warmup of 100 steps\n- try cosine decay",
        }),
    );
    let env_dump = dir.path().join("experiment-env.txt");
    let target = http_target(
        &server,
        &format!("env >> {}; python3 train.py", env_dump.display()),
        "",
    );
    let run = target.arun_with_env(&["--max-experiments", "4"], &[("ARUN_TEST_MODEL_KEY", KEY)]);
    run.assert_code(0);

    // Every request had the right shape (the server answers 400 otherwise).
    let requests = server.requests();
    for request in &requests {
        assert_eq!(request["problems"], json!([]), "{request}");
        assert_eq!(request["body"]["temperature"], json!(0.2));
        assert_eq!(request["body"]["stream"], json!(false));
    }
    assert_eq!(requests.len(), 7, "1 + 2 + 3 edits and the summary");
    let first = &requests[0]["body"]["messages"];
    assert_eq!(first[0]["role"], "system");
    assert!(
        first[0]["content"]
            .as_str()
            .unwrap()
            .contains("<<<<<<< SEARCH")
    );
    assert!(
        first[1]["content"]
            .as_str()
            .unwrap()
            .contains("You are running experiment 1")
    );
    // The retry carries the model's answer and the error with the nearest lines.
    let retry = requests[2]["body"]["messages"].as_array().unwrap();
    assert_eq!(retry.len(), 4);
    assert_eq!(retry[2]["role"], "assistant");
    let error = retry[3]["content"].as_str().unwrap();
    assert!(
        error.contains(
            "does not match the file; the nearest lines (lines 10 to 10) are:\n```\nLR = 0.05\n```"
        ),
        "{error}"
    );

    let results = target.results_redacted();
    let rows: Vec<Vec<&str>> = results
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let summary: Vec<(&str, &str)> = rows.iter().map(|r| (r[3], r[4])).collect();
    assert_eq!(
        summary,
        [
            ("keep", "baseline"),
            ("keep", "lower LR to 0.05"),
            ("keep", "lower LR to 0.03"),
            ("crash", "raise LR to 0.2"),
        ]
    );
    assert!(target.train_py().contains("\nLR = 0.03\n"));
    let decisions = target.decisions();
    assert!(
        decisions[3].1.starts_with(
            "the model's edit did not apply in 3 tries: the answer has no SEARCH/REPLACE block"
        ),
        "{decisions:?}"
    );
    // Tokens are journaled per experiment: the scripted server counts 1000 + i in, 100 out.
    let tokens: Vec<u64> = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "proposed")
        .map(|e| e["tokens"]["input"].as_u64().unwrap() + e["tokens"]["output"].as_u64().unwrap())
        .collect();
    assert_eq!(tokens, [1100, 2203, 3312]);
    assert!(
        run.stdout().contains("try a warmup of 100 steps"),
        "{}",
        run.stdout()
    );

    // The key went only into the Authorization header.
    let authorization = requests[0]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.clone());
    assert_eq!(authorization, Some(json!(format!("Bearer {KEY}"))));
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("ARUN_BUDGET_SECONDS="), "{env}");
    assert!(!env.contains(KEY), "the experiment saw the API key");
    for entry in walk(&target.store()) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(KEY), "{} holds the API key", entry.display());
    }
    assert!(!run.stdout().contains(KEY) && !run.stderr().contains(KEY));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_unset_key_variable_stops_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(dir.path(), json!({"model": "test-model"}));
    let target = http_target(&server, "python3 train.py", "");
    let run = target.arun_with_env(&["--max-experiments", "2"], &[("ARUN_TEST_MODEL_KEY", "")]);
    run.assert_code(1);
    assert!(
        run.stderr()
            .contains("`proposer.http.api-key-env` names `ARUN_TEST_MODEL_KEY`, which is not set"),
        "{}",
        run.stderr()
    );
    assert!(server.requests().is_empty());
}

#[test]
fn an_unreachable_or_failing_server_is_a_failed_proposal() {
    let dir = tempfile::tempdir().unwrap();
    // A server without answers fails every request with HTTP 500.
    let server = ChatServer::start(dir.path(), json!({"model": "test-model"}));
    let target = http_target(&server, "python3 train.py", "");
    let run = target.arun_with_env(&["--max-experiments", "3"], &[("ARUN_TEST_MODEL_KEY", KEY)]);
    run.assert_code(1);
    assert!(
        run.stderr().contains(&format!(
            "the proposer failed 2 times in a row; the last time: the model server at `{}/chat/completions` answered HTTP 500",
            server.base_url()
        )),
        "{}",
        run.stderr()
    );
    assert_eq!(server.requests().len(), 2);

    drop(server);
    let run = target.arun_with_env(&["--max-experiments", "3"], &[("ARUN_TEST_MODEL_KEY", KEY)]);
    run.assert_code(1);
    assert!(
        run.stderr()
            .contains("cannot reach the model at `http://127.0.0.1:"),
        "{}",
        run.stderr()
    );
}

const FIXTURE: &str = "tests/fixtures/scripted-trainer";

/// The target's pipeline made from a copy of the scripted trainer whose `train.py` is `train`.
fn with_train_py(target: &Target, train: &str) {
    let template = target.path("template");
    std::fs::create_dir_all(&template).unwrap();
    for name in ["README.md", "prepare.py"] {
        std::fs::copy(
            format!("{}/{FIXTURE}/{name}", common::ROOT),
            template.join(name),
        )
        .unwrap();
    }
    std::fs::write(template.join("train.py"), train).unwrap();
    let pipeline = std::fs::read_to_string(&target.pipeline).unwrap();
    let original = format!("{}/{FIXTURE}", common::ROOT);
    assert!(pipeline.contains(&original));
    std::fs::write(
        &target.pipeline,
        pipeline.replace(&original, &template.display().to_string()),
    )
    .unwrap();
}

fn fixture_train_py() -> String {
    std::fs::read_to_string(format!("{}/{FIXTURE}/train.py", common::ROOT)).unwrap()
}

#[test]
fn a_whole_file_answer_is_refused_for_a_file_the_prompt_showed_in_part() {
    let dir = tempfile::tempdir().unwrap();
    // Over the prompt's 256 KiB for an editable file, in fewer than 300 lines: the prompt shows
    // the start only, though the file is short enough in lines to be offered whole otherwise.
    let mut train = fixture_train_py();
    for i in 0..150 {
        train.push_str(&format!("# tail {i:03} {}\n", "x".repeat(2000)));
    }
    assert!(train.len() > 256 * 1024 && train.lines().count() < 300);
    // The model gives back what it saw, whole, with its change.
    let seen = &train[..=train[..256 * 1024].rfind('\n').unwrap()];
    let whole = format!(
        "DESCRIPTION: lower LR to 0.05\n\ntrain.py\n```python\n{}```\n",
        seen.replace("\nLR = 0.1\n", "\nLR = 0.05\n")
    );
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": [
                whole,
                format!("DESCRIPTION: lower LR to 0.05\n\n{}", block("LR = 0.1", "LR = 0.05")),
            ],
            "default": "- try a warmup",
        }),
    );
    let target = http_target(&server, "python3 train.py", "");
    with_train_py(&target, &train);
    arun(&target, 2).assert_code(0);

    let requests = server.requests();
    assert_eq!(requests.len(), 3, "a whole file, a block, the summary");
    let system = requests[0]["body"]["messages"][0]["content"]
        .as_str()
        .unwrap();
    assert!(!system.contains("whole new file"), "{system}");
    let said = feedback(&requests, 1);
    assert!(
        said.contains(
            "`train.py` was shown only in part (the prompt cuts long files), so it cannot be \
             given whole"
        ),
        "{said}"
    );
    assert_eq!(
        rows(&target),
        [row("keep", "baseline"), row("keep", "lower LR to 0.05")]
    );
    assert_eq!(
        target.train_py(),
        train.replace("\nLR = 0.1\n", "\nLR = 0.05\n")
    );
}

#[test]
fn a_snippet_under_a_file_name_does_not_replace_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let snippet = "train.py\n```python\nLR = 0.05\n```\n";
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": [
                // 1: a snippet alone, refused; then blocks.
                format!("DESCRIPTION: lower LR to 0.05\n\n{snippet}"),
                format!("DESCRIPTION: lower LR to 0.05\n\n{}", block("LR = 0.1", "LR = 0.05")),
                // 2: a snippet shown beside the blocks that make the change: only blocks count.
                format!(
                    "DESCRIPTION: lower LR to 0.04\n\nThe line becomes:\n\n{}\n{}",
                    snippet.replace("0.05", "0.04"),
                    block("LR = 0.05", "LR = 0.04")
                ),
            ],
            "default": "- try a warmup",
        }),
    );
    let target = http_target(&server, "python3 train.py", "");
    arun(&target, 3).assert_code(0);

    let requests = server.requests();
    assert_eq!(
        requests.len(),
        4,
        "a snippet, a block, snippet and block, the summary"
    );
    let said = feedback(&requests, 1);
    assert!(
        said.contains("the whole file given for `train.py` has 1 line where the file has"),
        "{said}"
    );
    assert!(
        said.contains("change it with SEARCH/REPLACE blocks, or give its complete new content"),
        "{said}"
    );
    assert_eq!(
        rows(&target),
        [
            row("keep", "baseline"),
            row("keep", "lower LR to 0.05"),
            row("keep", "lower LR to 0.04"),
        ]
    );
    assert_eq!(
        target.train_py(),
        fixture_train_py().replace("\nLR = 0.1\n", "\nLR = 0.04\n")
    );
}

#[test]
fn blocks_for_files_that_may_not_change_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let headed = |path: &str| {
        format!(
            "DESCRIPTION: lower LR to 0.05\n\n{}",
            block("LR = 0.1", "LR = 0.05").replacen("train.py", path, 1)
        )
    };
    let outside = dir.path().join("train.py").display().to_string();
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": [headed("prepare.py"), headed("../train.py"), headed(&outside)],
            "default": "- try a warmup",
        }),
    );
    let target = http_target(&server, "python3 train.py", "");
    arun(&target, 2).assert_code(0);

    let requests = server.requests();
    assert_eq!(requests.len(), 4, "three tries and the summary");
    let said = feedback(&requests, 1);
    assert!(
        said.contains(
            "block 1 edits `prepare.py`, which may not change; the files you may change: \
             `train.py`"
        ),
        "{said}"
    );
    let said = feedback(&requests, 2);
    assert!(
        said.contains("block 1 edits `../train.py`, which may not change"),
        "{said}"
    );
    let decisions = target.decisions();
    assert_eq!(decisions[1].0, "crash");
    assert!(
        decisions[1].1.starts_with(&format!(
            "the model's edit did not apply in 3 tries: SEARCH/REPLACE block 1 edits `{outside}`, \
             which may not change"
        )),
        "{decisions:?}"
    );
    assert_eq!(target.train_py(), fixture_train_py());
    assert_eq!(target.status(), "");
    assert!(!std::path::Path::new(&outside).exists());
}

#[test]
fn reasoning_sections_are_neither_edits_nor_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let draft = format!(
        "DESCRIPTION: raise LR to 0.9\n{}",
        block("LR = 0.1", "LR = 0.9")
    );
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": [
                // A reasoning model thinks in drafts before it answers.
                format!(
                    "<think>\nA draft:\n{draft}</think>\n\nDESCRIPTION: lower LR to 0.05\n\n{}",
                    block("LR = 0.1", "LR = 0.05")
                ),
                // The only description is in the reasoning: the change is described by its file.
                format!(
                    "<thinking>\n{draft}</thinking>\n{}",
                    block("LR = 0.05", "LR = 0.04")
                ),
            ],
            "default": "- try a warmup",
        }),
    );
    let target = http_target(&server, "python3 train.py", "");
    arun(&target, 3).assert_code(0);

    assert_eq!(server.requests().len(), 3, "two answers, the summary");
    assert_eq!(
        rows(&target),
        [
            row("keep", "baseline"),
            row("keep", "lower LR to 0.05"),
            row("keep", "edit train.py"),
        ]
    );
    assert!(target.train_py().contains("\nLR = 0.04\n"));
}

#[test]
fn an_api_key_echoed_by_the_server_is_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let refused = json!({"status": 401, "error": "invalid key", "echo_authorization": true});
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            // 1: fails once, then applies; 2: fails twice, which stops the run.
            "answers": [
                refused,
                format!("DESCRIPTION: lower LR to 0.05\n\n{}", block("LR = 0.1", "LR = 0.05")),
                refused,
                refused,
            ],
        }),
    );
    let target = http_target(&server, "python3 train.py", "");
    let run = arun(&target, 3);
    run.assert_code(1);

    // The server did echo the key: what arun kept of its answers shows where it was.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    let journal = serde_json::Value::from(target.journal()).to_string();
    assert!(
        journal.contains("invalid key (Authorization: Bearer [redacted])"),
        "{journal}"
    );
    assert!(
        run.stderr()
            .contains("answered HTTP 401: {\"error\": {\"message\": \"invalid key (Authorization: Bearer [redacted])\"}}"),
        "{}",
        run.stderr()
    );
    let mut files = walk(&target.store());
    files.push(target.repo.join("results.tsv"));
    for path in files {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(!text.contains(KEY), "{} holds the API key", path.display());
    }
    assert!(!run.stdout().contains(KEY), "{}", run.stdout());
    assert!(!run.stderr().contains(KEY), "{}", run.stderr());
}

/// Answers that each lower LR a step further, so that every experiment applies and is kept.
fn lowering_answers() -> Vec<String> {
    let steps = ["0.1", "0.05", "0.04", "0.035", "0.032"];
    steps
        .windows(2)
        .map(|w| {
            format!(
                "DESCRIPTION: lower LR to {}\n\n{}",
                w[1],
                block(&format!("LR = {}", w[0]), &format!("LR = {}", w[1]))
            )
        })
        .collect()
}

#[test]
fn a_server_reporting_only_total_tokens_counts_toward_max_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": lowering_answers(),
            "usage": {"total_tokens": 5000},
        }),
    );
    let target = http_target(&server, "python3 train.py", "[limits]\nmax-tokens = 8000\n");
    let run = arun(&target, 5);
    run.assert_code(0);
    assert!(
        run.stdout()
            .contains("reached the limit of 8000 tokens (10000 used)"),
        "{}",
        run.stdout()
    );
    assert_eq!(rows(&target).len(), 3, "the baseline and two experiments");
    let tokens: Vec<serde_json::Value> = target
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "proposed")
        .map(|e| e["tokens"].clone())
        .collect();
    let counted = json!({"input": 5000, "output": 0});
    assert_eq!(tokens, [counted.clone(), counted]);
}

#[test]
fn a_server_reporting_no_usage_warns_once_that_max_tokens_cannot_be_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(
        dir.path(),
        json!({
            "model": "test-model",
            "api_key": KEY,
            "answers": lowering_answers(),
            "usage": null,
        }),
    );
    let target = http_target(&server, "python3 train.py", "[limits]\nmax-tokens = 8000\n");
    let run = arun(&target, 4);
    run.assert_code(0);
    assert_eq!(rows(&target).len(), 4, "nothing stopped the run");
    let warning = "arun: warning: the model server reports no token usage; [limits] max-tokens \
                   cannot be enforced";
    assert_eq!(run.stderr().matches(warning).count(), 1, "{}", run.stderr());
}

#[test]
fn the_api_key_does_not_reach_preflight_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChatServer::start(dir.path(), json!({"model": "test-model", "api_key": KEY}));
    let dump = dir.path().join("preflight-env.txt");
    let target = http_target(
        &server,
        "python3 train.py",
        &format!(
            "[[preflight]]\nrun = \"env > {}\"\nmessage = \"cannot list the environment\"",
            dump.display()
        ),
    );
    arun(&target, 1).assert_code(0);
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains(KEY), "a preflight check saw the API key");
}

#[test]
fn with_two_workers_the_model_gets_two_requests_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Each answer waits until both requests are at the server (or 10 s): two proposals made
    // side by side meet there; made one after the other, each waits alone.
    let answers = json!([
        {"text": format!("DESCRIPTION: lower LR to 0.05\n\n{}", block("LR = 0.1", "LR = 0.05")), "together": 2},
        {"text": format!("DESCRIPTION: lower LR to 0.04\n\n{}", block("LR = 0.1", "LR = 0.04")), "together": 2},
    ]);
    let server = ChatServer::start(
        dir.path(),
        json!({"model": "test-model", "api_key": KEY, "answers": answers, "default": "- ideas"}),
    );
    let target = http_target(&server, "python3 train.py", "[workers]\ncount = 2\n");
    arun(&target, 3).assert_code(0);
    let together = std::fs::read_to_string(dir.path().join("chat-script.json.together")).unwrap();
    assert_eq!(together, "met\nmet\n");
    let decided = target
        .journal()
        .iter()
        .filter(|e| e["event"] == "decided")
        .count();
    assert_eq!(decided, 3);
}
