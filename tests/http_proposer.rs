//! The HTTP proposer in full loops against `tests/scripts/chat_server.py`, a real local server
//! speaking the chat-completions protocol that checks each request's shape and answers from a
//! script: edits applied, a bad edit corrected after the error went back, an edit that never
//! applies recorded as a crash, the API key kept out of everything but the request header.

mod common;

use common::{ChatServer, Setup, Target};
use serde_json::json;

const KEY: &str = "sk-test-secret-4711";

fn block(search: &str, replace: &str) -> String {
    format!("train.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n")
}

fn http_target(server: &ChatServer, dir_setup: impl FnOnce(&str) -> String) -> Target {
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
    let run = dir_setup("");
    Target::new(Setup {
        run: Box::leak(run.into_boxed_str()),
        proposer: Box::leak(proposer.into_boxed_str()),
        ..Setup::default()
    })
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
    let target = http_target(&server, |_| {
        format!("env >> {}; python3 train.py", env_dump.display())
    });
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
    let target = http_target(&server, |_| "python3 train.py".to_string());
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
    let target = http_target(&server, |_| "python3 train.py".to_string());
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
