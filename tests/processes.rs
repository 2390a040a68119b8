//! Stopping an experiment: the whole process group gets its grace after SIGTERM (not only the
//! `sh -c` that leads it), and an ssh session that goes away (SIGHUP) stops the run as Ctrl-C
//! does instead of leaving the trainer running. Each test is named after what it guards
//! (issue 12, item 6).

mod common;

use common::{Setup, Target, alive, signal, wait_for_file};
use serde_json::json;

#[test]
fn the_trainer_gets_its_grace_after_sigterm_even_under_sh() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "save-on-term"}}),
        // `sh -c "python3 train.py"`: the shell dies of SIGTERM at once, the trainer saves for
        // a second first.
        run: "python3 train.py",
        experiment: "budget = \"1s\"\nhard-limit = \"2s\"\ngrace = \"5s\"",
        extra: "[decision]\nfix-attempts = 0",
        ..Setup::default()
    });
    target.arun(&["--max-experiments", "2"]).assert_code(0);
    assert!(
        target.path("pids.saved").exists(),
        "the trainer was killed before it finished saving"
    );
    let log = std::fs::read_to_string(target.run_dir().join("logs/1.log")).unwrap();
    assert!(log.contains("saved checkpoint after SIGTERM"), "{log}");
    let decision = &target.decisions()[1];
    assert_eq!(decision.0, "crash");
    assert!(decision.1.contains("timed out"), "{}", decision.1);
    for pid in target.forked_pids() {
        assert!(!alive(pid), "the trainer {pid} is still running");
    }
}

#[test]
fn sighup_stops_the_run_like_sigterm() {
    let target = Target::new(Setup {
        plan: json!({"1": {"LR": 0.05, "MODE": "save-on-term"}}),
        experiment: "budget = \"30s\"\nhard-limit = \"60s\"\ngrace = \"5s\"",
        ..Setup::default()
    });
    let child = target.spawn(&["--max-experiments", "3"]);
    wait_for_file(&target.path("pids"));
    signal(child.id(), libc::SIGHUP);
    let run = common::Run {
        output: child.wait_with_output().unwrap(),
    };
    run.assert_code(130);
    assert!(
        target.path("pids.saved").exists(),
        "the trainer did not get its grace"
    );
    for pid in target.forked_pids() {
        assert!(!alive(pid), "the trainer {pid} outlived the run");
    }
    assert_eq!(target.status(), "");
    assert_eq!(target.head_branch().as_deref(), Some("autoresearch/test"));
    let last = target.journal().pop().unwrap();
    assert_eq!(last["event"], "interrupted");
}
