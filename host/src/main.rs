use std::process::ExitCode;

use std::io::IsTerminal;

use clap::Parser;
use rotor::cli::{self, Cli, EXIT_WALLETS_FAILED, LogFormat, Outcome};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let (json, log_format) = (cli.global.json, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(json, log_format, &anyhow::Error::from(e).context("starting the async runtime"));
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::WalletsFailed) => ExitCode::from(EXIT_WALLETS_FAILED),
        Ok(Outcome::Problems) => ExitCode::FAILURE,
        Err(e) => fail(json, log_format, &e),
    }
}

fn fail(json: bool, log_format: LogFormat, error: &anyhow::Error) -> ExitCode {
    if json {
        cli::print_json(&serde_json::json!({ "error": format!("{error:#}") }));
    }
    match log_format {
        LogFormat::Text => eprintln!("error: {error:#}"),
        // A log collector reads stderr line by line as JSON: the error is one more such line.
        LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "command failed"),
    }
    ExitCode::FAILURE
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
