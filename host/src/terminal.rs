//! What rotor's binaries (`rotor`, `rotor-bench`) share at the terminal: the log format and
//! logging set-up, and how a bad command line or a failed command is told (on stderr, and with
//! `--json` as the one JSON document on stdout) and mapped to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::report::print_json;
use crate::shutdown::Interrupted;

/// Exit code of a command line that does not parse (as clap's own).
pub const EXIT_USAGE: u8 = 2;

/// How log lines on stderr are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text for a person.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Logs go to stderr, so stdout carries only the command's result. `crates` are the crates
/// whose own lines `-v` turns up (rotor's, and the bench's for `rotor-bench`).
pub fn init_logging(quiet: bool, verbose: u8, format: LogFormat, crates: &[&str]) {
    let levels = |level: &str| crates.iter().map(|c| format!(",{c}={level}")).collect::<String>();
    let default = match (quiet, verbose) {
        (true, _) => "error".to_owned(),
        // sqlx warns about connection hiccups it recovers from; rotor reports what matters.
        (false, 0) => format!("warn,sqlx=error{}", levels("info")),
        (false, 1) => format!("info{}", levels("debug")),
        (false, _) => format!("debug{}", levels("trace")),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // One JSON object per line, with time, level, target and fields, for log collectors.
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => {
            let logs = logs.with_ansi(std::io::stderr().is_terminal()).with_target(false);
            // Timestamps help when debugging; in plain use they crowd the few lines rotor prints.
            if verbose > 0 { logs.init() } else { logs.without_time().init() }
        }
    }
}

/// A command line that does not parse: clap's message on stderr, and with `--json` also as the
/// one JSON document on stdout that every command promises. Help and version print as usual.
pub fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        error.exit();
    }
    // The arguments did not parse, so look for the flag itself (before any `--`).
    let json = std::env::args_os().skip(1).take_while(|arg| arg != "--").any(|arg| arg == "--json");
    if json {
        let text = error.render().to_string();
        let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim()).to_owned();
        print_json(&serde_json::json!({ "error": message, "usage": true }));
    }
    let _ = error.print();
    ExitCode::from(EXIT_USAGE)
}

/// Prints the error as the command's result (JSON with `--json`) and on stderr. A command
/// stopped by a signal exits 128 + its number, as a shell reports it.
pub fn fail(json: bool, log_format: LogFormat, error: &anyhow::Error) -> ExitCode {
    if json {
        print_json(&serde_json::json!({ "error": format!("{error:#}") }));
    }
    match log_format {
        LogFormat::Text => eprintln!("error: {error:#}"),
        // A log collector reads stderr line by line as JSON: the error is one more such line.
        LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "command failed"),
    }
    match error.downcast_ref::<Interrupted>() {
        Some(interrupted) => ExitCode::from(interrupted.signal.exit_code()),
        None => ExitCode::FAILURE,
    }
}
