use std::process::ExitCode;

use std::io::IsTerminal;

use clap::Parser;
use rotor::cli::{self, Cli, LogFormat};
use rotor::report::{EXIT_WALLETS_FAILED, Outcome, print_json};
use rotor::shutdown::{Interrupted, Shutdown};
use tracing_subscriber::EnvFilter;

/// Exit code of a command line that does not parse (as clap's own).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_logging(&cli.global);
    let (json, log_format) = (cli.global.json, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(json, log_format, &anyhow::Error::from(e).context("starting the async runtime"));
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown =
            Shutdown::on_signals().map_err(|e| anyhow::Error::from(e).context("listening for signals"))?;
        cli::run(cli, shutdown).await
    });
    match outcome {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::WalletsFailed) => ExitCode::from(EXIT_WALLETS_FAILED),
        Ok(Outcome::Problems) => ExitCode::FAILURE,
        Err(e) => fail(json, log_format, &e),
    }
}

/// A command line that does not parse: clap's message on stderr, and with `--json` also as the
/// one JSON document on stdout that every command promises. Help and version print as usual.
fn usage_error(error: clap::Error) -> ExitCode {
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
fn fail(json: bool, log_format: LogFormat, error: &anyhow::Error) -> ExitCode {
    report_error(json, log_format, error);
    match error.downcast_ref::<Interrupted>() {
        Some(interrupted) => ExitCode::from(interrupted.signal.exit_code()),
        None => ExitCode::FAILURE,
    }
}

fn report_error(json: bool, log_format: LogFormat, error: &anyhow::Error) {
    if json {
        print_json(&serde_json::json!({ "error": format!("{error:#}") }));
    }
    match log_format {
        LogFormat::Text => eprintln!("error: {error:#}"),
        // A log collector reads stderr line by line as JSON: the error is one more such line.
        LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "command failed"),
    }
}

/// Logs go to stderr, so stdout carries only the command's result.
fn init_logging(global: &cli::GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        // sqlx warns about connection hiccups it recovers from; rotor reports what matters.
        (false, 0) => "warn,sqlx=error,rotor=info",
        (false, 1) => "info,rotor=debug",
        (false, _) => "debug,rotor=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match global.log_format {
        // One JSON object per line, with time, level, target and fields, for log collectors.
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => {
            let logs = logs.with_ansi(std::io::stderr().is_terminal()).with_target(false);
            // Timestamps help when debugging; in plain use they crowd the few lines rotor prints.
            if global.verbose > 0 { logs.init() } else { logs.without_time().init() }
        }
    }
}
