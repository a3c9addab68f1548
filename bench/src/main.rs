//! `rotor-bench`, which `rotor bench` runs: the bench's command line, what it prints (a Markdown
//! table on stdout, or one JSON document with --json; each figure on stderr as it is measured)
//! and its exit codes, as rotor's own commands have them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rotor::report::print_json;
use rotor::shutdown::{Interrupted, Shutdown};
use rotor::terminal::{LogFormat, fail, init_logging, usage_error};
use rotor_bench::{BenchArgs, BenchReport};

const AFTER_HELP: &str = "\
It measures the `rotor` binary in its own folder (cargo builds both into target/release/:
`cargo build --release --workspace`). `rotor bench` runs it with the same options.

Exit codes: 0 success, 1 error (the message says what to fix), 2 bad usage, 130/143 stopped by
SIGINT/SIGTERM.";

/// Measure rotor against the database's own rewrite rate, a native build of its crypto core and
/// OpenBao Transit, in one run; print a table (and with --out, Markdown, JSON and a PNG chart).
///
/// Starts an OpenBao dev server, and creates SQLite files and a PostgreSQL database (on
/// --postgres-url), removed afterwards. 1,000,000 wallets take about twenty minutes on 2
/// cores; --quick (100,000) about four; `--wallets 2000` is a smoke check.
#[derive(Debug, Parser)]
#[command(name = "rotor-bench", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    /// Measure nothing: draw bench.md and bench.png in DIR again from the bench.json a run
    /// wrote there with --out (after a change to how the table or the chart is drawn).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["wallets", "quick", "out"])]
    redraw: Option<std::path::PathBuf>,
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
    init_logging(cli.quiet, cli.verbose, cli.log_format, &["rotor", "rotor_bench"]);
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
    if let Some(dir) = &cli.redraw {
        let report = BenchReport::read(dir)?;
        report.write(dir)?;
        eprintln!("bench: drew {} again from its bench.json", dir.display());
        return Ok(());
    }
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
