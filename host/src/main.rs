use std::process::ExitCode;

use clap::Parser;
use rotor::cli::{self, Cli};
use rotor::report::{EXIT_WALLETS_FAILED, Outcome};
use rotor::shutdown::Shutdown;
use rotor::terminal::{fail, init_logging, usage_error};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let global = &cli.global;
    init_logging(global.quiet, global.verbose, global.log_format, &["rotor"]);
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
