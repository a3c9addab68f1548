//! `rotor-bench`, which `rotor bench` runs: the bench's command line, what it prints (a Markdown
//! table on stdout, or one JSON document with --json; each figure on stderr as it is measured)
//! and its exit codes, as rotor's own commands have them.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rotor::cli::LogFormat;
use rotor::report::print_json;
use rotor::shutdown::{Interrupted, Shutdown};
use rotor_bench::BenchArgs;
use tracing_subscriber::EnvFilter;

/// Exit code of a command line that does not parse (clap's, as rotor's).
const EXIT_USAGE: u8 = 2;

const AFTER_HELP: &str = "\
It measures the `rotor` binary in its own folder (cargo builds both into target/release/:
`cargo build --release --workspace`). `rotor bench` runs it with the same options.

Exit codes: 0 success, 1 error (the message says what to fix), 2 bad usage, 130/143 stopped by
SIGINT/SIGTERM.";

/// Measure rotor against the database's own rewrite rate, a native build of its crypto core and
/// OpenBao Transit, in one run; print a table (and with --out, Markdown, JSON and a PNG chart).
///
/// Starts an OpenBao dev server, and creates SQLite files and a PostgreSQL database (on
/// --postgres-url), removed afterwards. 1,000,000 wallets take about ten minutes on 2 cores;
/// --quick (100,000) about two; `--wallets 2000` is a smoke check.
#[derive(Debug, Parser)]
#[command(name = "rotor-bench", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    /// Print the report as one JSON document on stdout (errors too: {"error": "..."}).
    #[arg(long)]
    json: bool,
    /// More logging, here and in each rotor command the bench runs (-v: debug, -vv: trace).
    /// RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Errors only (the figures are still printed on stderr as they are measured).
    #[arg(short, long)]
    quiet: bool,
    /// Log lines on stderr as text, or as JSON objects (one per line) for a log collector.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "ROTOR_LOG_FORMAT", hide_env_values = true)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_logging(&cli);
    let (json, log_format) = (cli.json, cli.log_format);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(json, log_format, &error),
    }
}

/// Runs the bench, writes --out, prints the report. A signal stops it at once: what it started
/// (OpenBao, the temporary folder) goes with it.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("listening for signals")?;
    // As typed, `rotor bench …` when `rotor bench` ran it: the report says how to reproduce it.
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let report = tokio::select! {
        report = rotor_bench::run(&cli.bench, command_line, cli.verbose) => report?,
        signal = shutdown.wait() => {
            let what = format!(
                "the bench stopped before it finished; a PostgreSQL database named \
                 rotor_bench_{}_<N> may be left on --postgres-url: drop it",
                std::process::id()
            );
            return Err(Interrupted { signal, what }.into());
        }
    };
    if let Some(dir) = &cli.bench.out {
        report.write(dir)?;
    }
    if cli.json {
        print_json(&report);
    } else {
        println!("{}", report.markdown());
    }
    Ok(())
}

/// clap's message on stderr, and with `--json` also as the one JSON document on stdout, as
/// rotor does. Help and version print as usual.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        error.exit();
    }
    if std::env::args_os().skip(1).any(|arg| arg == "--json") {
        let text = error.render().to_string();
        let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim()).to_owned();
        print_json(&serde_json::json!({ "error": message, "usage": true }));
    }
    let _ = error.print();
    ExitCode::from(EXIT_USAGE)
}

/// The error as the result (JSON with `--json`) and on stderr; 128 + the signal's number when a
/// signal stopped the bench.
fn fail(json: bool, log_format: LogFormat, error: &anyhow::Error) -> ExitCode {
    if json {
        print_json(&serde_json::json!({ "error": format!("{error:#}") }));
    }
    match log_format {
        LogFormat::Text => eprintln!("error: {error:#}"),
        LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "bench failed"),
    }
    match error.downcast_ref::<Interrupted>() {
        Some(interrupted) => ExitCode::from(interrupted.signal.exit_code()),
        None => ExitCode::FAILURE,
    }
}

/// Logs go to stderr, so stdout carries only the report.
fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,sqlx=error,rotor=info,rotor_bench=info",
        (false, 1) => "info,rotor=debug,rotor_bench=debug",
        (false, _) => "debug,rotor=trace,rotor_bench=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => {
            logs.with_ansi(std::io::stderr().is_terminal()).with_target(false).without_time().init()
        }
    }
}
