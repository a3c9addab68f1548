//! Reading what a `rotor` process printed and how it ended.

use std::process::{Command, Output};

use serde_json::Value;

/// Runs a `rotor … --json` command and parses its one JSON document.
pub fn json(command: &mut Command) -> (Output, Value) {
    let out = command.arg("--json").output().unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, value)
}

/// Runs a `rotor … --json` command that must succeed; its one JSON document.
pub fn json_success(command: &mut Command) -> Value {
    let (out, value) = json(command);
    assert_success(&out);
    value
}

/// Bytes a process printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that rotor succeeded, showing what it printed if not.
pub fn assert_success(out: &Output) {
    assert_ran("rotor", out);
}

/// Asserts that the process `what` succeeded, showing what it printed if not.
pub fn assert_ran(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Asserts that `said` (what rotor printed) holds every one of `phrases`, showing it if not.
pub fn assert_says(said: &str, phrases: &[&str]) {
    for phrase in phrases {
        assert!(said.contains(phrase), "{phrase:?} missing from:\n{said}");
    }
}

/// The exit code, and stderr for the message checks.
pub fn failure(out: &Output) -> (i32, String) {
    assert!(!out.status.success(), "rotor should have failed:\nstdout:\n{}", text(&out.stdout));
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

/// Asserts that rotor failed with exit code `code` and that its stderr holds every one of
/// `phrases`; the stderr, for further checks.
pub fn assert_fails_saying(out: &Output, code: i32, phrases: &[&str]) -> String {
    let (exit, stderr) = failure(out);
    assert_eq!(exit, code, "{stderr}");
    assert_says(&stderr, phrases);
    stderr
}
