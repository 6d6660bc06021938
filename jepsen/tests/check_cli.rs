//! The `conclave-jepsen check` command: exit status, text report, and the
//! HTML timeline written next to the history.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_conclave-jepsen");

const STALE_READ: &str = r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"ok","f":"write"}
{"process":1,"type":"invoke","f":"write","value":2}
{"process":1,"type":"ok","f":"write"}
{"process":2,"type":"invoke","f":"read"}
{"process":2,"type":"ok","f":"read","value":1}
"#;

#[test]
fn a_violation_exits_1_and_writes_a_timeline_with_the_failing_operation() {
    let directory = tempfile::tempdir().unwrap();
    let history = directory.path().join("history.jsonl");
    std::fs::write(&history, STALE_READ).unwrap();
    let output = Command::new(BINARY)
        .args(["check", history.to_str().unwrap(), "--model", "register"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: not linearizable"), "{stdout}");
    assert!(
        stdout.contains("longest linearizable prefix: 2 of 3"),
        "{stdout}"
    );
    assert!(stdout.contains("#2 process 2 [4, 5] read => 1"), "{stdout}");
    let html = std::fs::read_to_string(directory.path().join("history.jsonl.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network access"
    );
    assert!(
        html.contains("class=\"bar failing\""),
        "the failing read is marked"
    );
    assert!(html.contains("read =&gt; 1"), "the failing read is drawn");
    assert!(html.contains("state after: 2"), "hovering shows the state");
    assert_eq!(
        html.matches("class=\"row\"").count(),
        3,
        "one row per process"
    );
}

#[test]
fn a_linearizable_history_exits_0() {
    let directory = tempfile::tempdir().unwrap();
    let history = directory.path().join("ok.jsonl");
    let fresh_read = STALE_READ.replace(r#""f":"read","value":1"#, r#""f":"read","value":2"#);
    assert_ne!(fresh_read, STALE_READ);
    std::fs::write(&history, fresh_read).unwrap();
    let timeline = directory.path().join("timeline.html");
    let output = Command::new(BINARY)
        .args([
            "check",
            history.to_str().unwrap(),
            "--model",
            "register",
            "--html",
        ])
        .arg(&timeline)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(timeline.is_file());
}

#[test]
fn bad_input_exits_3_with_a_message() {
    let directory = tempfile::tempdir().unwrap();
    let history = directory.path().join("bad.jsonl");
    std::fs::write(&history, "{\"process\":0,\"type\":\"ok\",\"f\":\"read\"}\n").unwrap();
    let output = Command::new(BINARY)
        .args(["check", history.to_str().unwrap(), "--model", "register"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("completes without an invocation"));
    let output = Command::new(BINARY)
        .args(["check", history.to_str().unwrap(), "--model", "nonsense"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("known models"));
}
