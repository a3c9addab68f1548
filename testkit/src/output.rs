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

/// Bytes a process printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that rotor succeeded, showing what it printed if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "rotor failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The exit code, and stderr for the message checks.
pub fn failure(out: &Output) -> (i32, String) {
    assert!(!out.status.success(), "rotor should have failed:\nstdout:\n{}", text(&out.stdout));
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}
