//! The `rotor` command line: arguments, the commands, and what they print.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::app::{App, SandboxSettings, Settings};
use crate::bindings::operations;
use crate::bindings::types;
use crate::component::{ComponentSource, Sandbox, answer};
use crate::component_cache::ComponentCache;
use crate::config::Loaded;
use crate::grants::Access;
use crate::inspect::Inspection;
use crate::limits::Limits;
use crate::metrics::{Observed, Recorder, WalletCheck};
use crate::plan::{BatchSize, RunPlan};
use crate::progress::Reporter;
use crate::report::{Outcome, print_json};
use crate::rotation::RotateRequest;
use crate::shutdown::{Interrupted, Shutdown};
use crate::store::{LeaseHolder, RangeProgress, RotationRecord, WalletTable, status as rotation_status};
use crate::terminal::LogFormat;
use crate::vault::{KekUse, KvSource, VaultWrites};

const AFTER_HELP: &str = "\
Vault is reached as the Vault CLI does: VAULT_ADDR (default http://127.0.0.1:8200), VAULT_TOKEN
(else ~/.vault-token) or AppRole (VAULT_ROLE_ID and VAULT_SECRET_ID, VAULT_APPROLE_MOUNT default
approle; the token is renewed during long runs), VAULT_NAMESPACE, VAULT_CACERT, VAULT_SKIP_VERIFY
(only when set to true; insecure). The KEK is field `key` (64 hex characters) of
<kv-mount>/<key-path>; rotor keeps every KEK version at <key-path>-archive/v<N>. Without any Vault
credentials, `validate` and `open` read the seed's WALLET_ENCRYPTION_KEY (read-only, with a
warning); nothing else does. policies/ holds the Vault policies for a runner, an auditor and
an application that only reads KEKs.

Exit codes:
  0  success (also a rotation skipped by --if-older-than)
  1  error: nothing was left half-done; the message says what to fix
  2  bad usage
  3  finished, but some wallets do not open or could not be moved (listed by id)
  130, 143  stopped by SIGINT or SIGTERM: a rotation gives its key ranges back and `rotor rotate`
            resumes it";

/// Rotates the key-encryption key (KEK) of AES-256-GCM wallets kept in SQL, with the KEK in
/// Vault KV v2. All crypto runs inside a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "rotor", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Settings file [default: rotor.toml in the working directory, if there is one]. Flags
    /// and environment variables override what it sets; `rotor config check` shows the result.
    #[arg(long, env = "ROTOR_CONFIG", hide_env_values = true, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database with the wallet table: sqlite://PATH or postgres://USER@HOST/DB
    /// [default: sqlite://rotor.db].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Table that holds the wallets [default: wallets].
    #[arg(long, global = true, value_name = "NAME")]
    pub table: Option<String>,
    /// Column with the wallet id (text, unique) [default: id].
    #[arg(long, global = true, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Column with the encrypted wallet (text) [default: ciphertext].
    #[arg(long, global = true, value_name = "NAME")]
    pub ciphertext_column: Option<String>,
    /// Mount point of the KV v2 secrets engine [default: secret].
    #[arg(long, env = "ROTOR_KV_MOUNT", hide_env_values = true, global = true, value_name = "MOUNT")]
    pub kv_mount: Option<String>,
    /// Path of the KEK within the mount [default: ibn/encryption-key].
    #[arg(long, env = "ROTOR_KEY_PATH", hide_env_values = true, global = true, value_name = "PATH")]
    pub key_path: Option<String>,
    /// Run this component instead of the built-in one (for `audit`: this audit component). It
    /// must be pinned in rotor.toml unless --allow-unpinned is given.
    #[arg(long, env = "ROTOR_COMPONENT", hide_env_values = true, global = true, value_name = "PATH")]
    pub component: Option<PathBuf>,
    /// Run a component file whose digest is not pinned in rotor.toml (logged as a warning).
    #[arg(long, global = true)]
    pub allow_unpinned: bool,
    /// Do not have rotor's reference component check the batches a --component writes.
    #[arg(long, global = true)]
    pub no_cross_check: bool,
    /// Print exactly one JSON document on stdout (errors too: {"error": "..."}).
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Errors only; no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines on stderr as text, or as JSON objects (one per line) for a log collector.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "ROTOR_LOG_FORMAT", hide_env_values = true, global = true)]
    pub log_format: LogFormat,
    /// After validate, rotate, rollback, prune or status, write Prometheus metrics to PATH,
    /// atomically (for node-exporter's textfile collector: a *.prom file in its directory).
    #[arg(long, env = "ROTOR_METRICS_FILE", hide_env_values = true, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open every wallet with the KEK it names; count wallets per KEK version, list those that fail.
    ///
    /// Legacy wallets name no KEK version: rotor tries the current KEK, then archived ones.
    /// Exits 3 if any wallet does not open.
    Validate(ValidateArgs),
    /// Move every wallet to a new KEK.
    ///
    /// A new 256-bit KEK from a CSPRNG is stored in Vault (check-and-set) and archived before any
    /// wallet is written under it; the old KEK stays readable in the archive. Wallets move in
    /// atomic batches, each row only if nobody changed it meanwhile; legacy wallets are converted
    /// to rotor's envelope format (or, with --output-format legacy, every wallet stays in the seed's
    /// layout). If a rotation was interrupted, `rotor rotate` finishes it (whatever
    /// --if-older-than says); `rotor abort` closes it instead.
    Rotate(RotateCommand),
    /// Move every wallet back to the previous KEK, as a normal rotation (no database restore).
    ///
    /// The previous KEK (by default the one the last rotation moved away from) becomes current
    /// again as a new KV version holding the same key, and every wallet is re-wrapped to it.
    Rollback(RollbackArgs),
    /// Close the unfinished rotation without finishing it.
    ///
    /// For a rotation that cannot or should not be finished (say, a rollback to a KEK that was
    /// destroyed). Its wallets stay on whichever KEK they are, all of which Vault keeps; the next
    /// `rotor rotate` starts a new rotation. Refuses while another rotor is still moving its
    /// wallets, or if a KEK its wallets name is missing from Vault. Nothing is written to Vault.
    Abort,
    /// Destroy archived KEKs that no wallet uses any more, keeping the newest N versions.
    ///
    /// A version still used by some wallet is not destroyed (its count is shown; exit 3). Nothing
    /// is destroyed while legacy wallets exist or a rotation is unfinished.
    Prune {
        /// How many of the newest KEK versions to keep whatever their use (at least 1: the current).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
    },
    /// The unfinished rotation if there is one (progress, who runs it), and wallets per KEK
    /// version as the database counts them (no key is read).
    Status,
    /// Past rotations: rotor's journal, and archives left by the seed's script.
    History,
    /// Encrypt a wallet under the current KEK and store it (plaintext on stdin).
    Seal {
        /// Wallet id; an existing wallet with this id is replaced.
        id: String,
    },
    /// Decrypt a wallet and write its exact plaintext bytes to stdout.
    Open {
        /// Wallet id.
        id: String,
    },
    /// Store a KEK kept in an environment variable as the first KEK in Vault (the seed's Day 2).
    ///
    /// Refuses to overwrite a different KEK already in Vault; does nothing if the same one is there.
    MigrateKek {
        /// Environment variable holding the KEK as 64 hex characters.
        #[arg(long, value_name = "VAR")]
        from_env: String,
    },
    /// Read-only checks by an audit component: wallets per KEK version, legacy rows, rows that do
    /// not open, KEK age, archive and journal consistency.
    ///
    /// Runs rotor's own audit component, or a third party's with --component. Audit components
    /// target the `auditor` world, which has no function that writes: they cannot change a
    /// secret, a wallet or the journal. Exits 3 if the audit found errors.
    Audit(BatchArgs),
    /// Inspect component files.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Check rotor.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A Prometheus exporter: serves GET /metrics until stopped (SIGTERM or Ctrl-C).
    ///
    /// Refreshes the rotation journal, wallets per KEK version and the KEK's age every
    /// --interval, and opens every wallet (read-only) every --validate-every for the count of
    /// invalid wallets.
    Serve(ServeArgs),
    /// The whole job on the embedded default: start an OpenBao dev server, enroll legacy wallets
    /// in a SQLite file, validate, rotate, validate again, stop the server.
    Demo(crate::demo::DemoArgs),
    /// Measure rotor against the database's own rewrite rate, a native build of its crypto
    /// core and OpenBao Transit, in one run; print a table (and with --out, Markdown, JSON and
    /// a PNG chart).
    ///
    /// Starts an OpenBao dev server, and creates SQLite files and a PostgreSQL database (on
    /// --postgres-url), removed afterwards. 1,000,000 wallets take about ten minutes on 2 cores;
    /// --quick (100,000) about two; `--wallets 2000` is a smoke check.
    ///
    /// `rotor bench --help` describes the options. The bench is a binary of its own,
    /// rotor-bench, which `rotor bench` runs from rotor's folder so that rotor carries none of its
    /// code: build it with `cargo build --release -p rotor-bench` (`cargo build --release
    /// --workspace` builds both).
    #[command(
        disable_help_flag = true,
        override_usage = "rotor bench [--wallets N,…] [--quick] [--out DIR] [--postgres-url URL] \
                          [--workers N] [--batch-size N] [--json] [-v]"
    )]
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum ComponentCommand {
    /// Print a component's sha256 (what `pinned` in rotor.toml lists), the world it targets, its
    /// imports and exports. Fails if it imports anything outside its world's grants.
    Inspect {
        /// The component file (.wasm).
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Read rotor.toml, environment and flags, and print the effective settings and where each
    /// came from, secrets redacted. Fails on unknown keys and invalid values.
    Check,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "HOST:PORT")]
    pub metrics_addr: std::net::SocketAddr,
    /// How often to refresh the journal, wallet counts and KEK age.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub interval: humantime::Duration,
    /// How often to open every wallet for rotor_invalid_wallets (0s: never).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub validate_every: humantime::Duration,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Wallets per batch (per transaction and per call into the component). Larger batches
    /// cost memory (each worker holds several at once) without going faster: see BENCHMARKS.md.
    #[arg(long, default_value_t = BatchSize::DEFAULT, value_name = "N")]
    pub batch_size: BatchSize,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Instances of the component opening wallets at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<std::num::NonZeroUsize>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Open and re-seal every wallet under a throwaway KEK; store nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also replace each wallet's data key (a full re-encryption), not only re-wrap it.
    #[arg(long)]
    pub reencrypt: bool,
    /// Finish the interrupted rotation; fails if there is none.
    #[arg(long, conflicts_with = "dry_run")]
    pub resume: bool,
    /// Check first that every wallet opens; if one does not, change nothing (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// What the wallets are written in. `legacy` is for applications that cannot read rotor's
    /// envelope yet: every wallet is re-encrypted in the seed's layout, which names no KEK
    /// version and binds no wallet id (docs/ROTATION.md says what that gives up). A resumed
    /// rotation keeps the format it began with.
    #[arg(long, value_enum, default_value_t = OutputFormat::Envelope, value_name = "FORMAT")]
    pub output_format: OutputFormat,
    /// Instances of the component moving wallets at once, each on its own key ranges [default:
    /// the number of cores]. Other `rotor rotate` processes started meanwhile, here or on other
    /// machines, join the same rotation and share its ranges.
    #[arg(long, value_name = "N")]
    pub workers: Option<std::num::NonZeroUsize>,
    /// How long this rotor's hold on the rotation lasts without progress. Another rotor may take
    /// over after that (at once if this one died on the same host).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=86_400), value_name = "SECONDS")]
    pub lease_seconds: u64,
}

impl RotateArgs {
    /// What these flags ask of a rotation.
    pub fn request(&self) -> RotateRequest {
        RotateRequest {
            dry_run: self.dry_run,
            reencrypt: self.reencrypt,
            resume: self.resume,
            strict: self.strict,
            output_format: self.output_format.into(),
        }
    }

    /// What these flags say of the run plan.
    fn plan(&self) -> PlanFlags {
        PlanFlags {
            batch_size: Some(self.batch.batch_size),
            workers: self.workers,
            lease_ttl: Some(std::time::Duration::from_secs(self.lease_seconds)),
        }
    }
}

/// `rotor rotate`: a rotation, and when to skip it.
#[derive(Debug, Args)]
pub struct RotateCommand {
    #[command(flatten)]
    pub rotate: RotateArgs,
    /// Rotate only if the current KEK is older than this (as written in Vault), e.g. 90d or
    /// 12h; otherwise say so and exit 0. For a daily cron job or Kubernetes CronJob. An
    /// unfinished rotation is resumed whatever the KEK's age.
    #[arg(long, value_name = "AGE")]
    pub if_older_than: Option<humantime::Duration>,
}

/// The wallet format a rotation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// rotor's envelope, `rotor:v<K>:…`: names its KEK version, binds the wallet id.
    Envelope,
    /// the seed's `base64(iv ‖ tag ‖ ciphertext)` under the KEK, which the seed's application reads.
    Legacy,
}

impl From<OutputFormat> for types::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Envelope => types::OutputFormat::Envelope,
            OutputFormat::Legacy => types::OutputFormat::Legacy,
        }
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The KEK version to go back to (default: the one the last rotation moved away from).
    #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u32).range(1..))]
    pub to: Option<u32>,
    #[command(flatten)]
    pub rotate: RotateArgs,
}

impl GlobalArgs {
    /// The effective settings: flags and environment, then rotor.toml, then defaults.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(self.resolve()?.settings)
    }

    /// The effective settings, with the run plan a command's `flags` ask for.
    fn settings_for(&self, flags: PlanFlags) -> anyhow::Result<Settings> {
        let mut settings = self.settings()?;
        settings.plan =
            RunPlan::resolve(flags.batch_size, flags.workers, flags.lease_ttl, &settings.sandbox.limits);
        Ok(settings)
    }

    /// The effective settings, and where each came from.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let loaded = Loaded::load(self.config.as_deref())?;
        let file = &loaded.file;
        let mut sources = Vec::new();
        let mut pick = |name: &'static str,
                        flag: &Option<String>,
                        env: Option<&str>,
                        from_file: &Option<String>,
                        default: &str| {
            let (value, source) = match (flag, from_file) {
                (Some(value), _) => {
                    let from_env = env.is_some_and(|var| std::env::var(var).ok().as_ref() == Some(value));
                    (
                        value.clone(),
                        if from_env {
                            format!("environment {}", env.unwrap_or_default())
                        } else {
                            "flag".into()
                        },
                    )
                }
                (None, Some(value)) => (value.clone(), "rotor.toml".into()),
                (None, None) => (default.to_owned(), "default".into()),
            };
            sources.push((name, source));
            value
        };
        let database_url = pick(
            "database-url",
            &self.database_url,
            Some("DATABASE_URL"),
            &file.database.url,
            "sqlite://rotor.db",
        );
        let table = pick("table", &self.table, None, &file.database.table, "wallets");
        let id_column = pick("id-column", &self.id_column, None, &file.database.id_column, "id");
        let ciphertext_column = pick(
            "ciphertext-column",
            &self.ciphertext_column,
            None,
            &file.database.ciphertext_column,
            "ciphertext",
        );
        let kv_mount = pick("kv-mount", &self.kv_mount, Some("ROTOR_KV_MOUNT"), &file.vault.mount, "secret");
        let key_path = pick(
            "key-path",
            &self.key_path,
            Some("ROTOR_KEY_PATH"),
            &file.vault.key_path,
            "ibn/encryption-key",
        );
        let component = self.component.clone().or_else(|| file.component.path.clone());
        let cache = match (&file.component.cache_dir, file.component.cache) {
            (_, false) => None,
            (Some(dir), true) => Some(ComponentCache::at(dir)),
            (None, true) => ComponentCache::default_location(),
        };
        let settings = Settings {
            database_url,
            table: WalletTable::new(&table, &id_column, &ciphertext_column)?,
            kv_mount,
            key_path,
            component,
            sandbox: SandboxSettings {
                limits: file.limits,
                pinned: file.component.pinned.clone(),
                allow_unpinned: self.allow_unpinned || file.component.allow_unpinned,
                cross_check: !self.no_cross_check && file.component.cross_check,
                cache,
            },
            vault_defaults: file.vault.clone(),
            plan: RunPlan::resolve(None, None, None, &file.limits),
        };
        Ok(Resolved { settings, sources, file: loaded.path })
    }

    fn reporter(&self, label: &str) -> Reporter {
        Reporter::new(label, self.shows_progress())
    }

    /// Whether a progress bar may be drawn: not with JSON output or logs, nor with -q.
    fn shows_progress(&self) -> bool {
        !self.json && !self.quiet && self.log_format == LogFormat::Text
    }
}

/// How long a command that cleans up after a signal (a rotation giving its ranges back) may
/// take to stop before it is abandoned: longer than a batch, shorter than an orchestrator's
/// patience (Kubernetes sends SIGKILL 30 s after SIGTERM).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs the parsed command, printing its result, then writes `--metrics-file` if asked. A
/// signal on `shutdown` stops it: rotations clean up first, other commands are dropped at once
/// (they leave nothing half-done).
pub async fn run(cli: Cli, shutdown: Shutdown) -> anyhow::Result<Outcome> {
    let records_metrics = matches!(
        cli.command,
        Command::Validate(_)
            | Command::Rotate(_)
            | Command::Rollback(_)
            | Command::Prune { .. }
            | Command::Status
            | Command::Abort
    );
    let cleans_up = matches!(cli.command, Command::Rotate(_) | Command::Rollback(_));
    // For a server, a signal is the ordinary way to stop: it ends with success.
    let stops_itself = matches!(cli.command, Command::Serve(_));
    let metrics = Recorder::new(cli.global.metrics_file.clone().filter(|_| records_metrics));
    let command = execute(&cli, &metrics, &shutdown);
    tokio::pin!(command);
    let result = tokio::select! {
        result = &mut command => result,
        signal = shutdown.wait(), if !stops_itself => {
            let stopped = |what: &str| Interrupted { signal, what: what.to_owned() };
            if cleans_up {
                match tokio::time::timeout(STOP_GRACE, &mut command).await {
                    Ok(result) => result,
                    Err(_) => Err(stopped(
                        "the rotation did not stop within 15 s and was abandoned; its claims run out \
                         (`rotor status` shows them) and `rotor rotate` resumes it",
                    ).into()),
                }
            } else {
                Err(stopped("stopped before it finished; it changes nothing that could be left half-done").into())
            }
        }
    };
    metrics.finish(result.as_ref().map_or(1, Outcome::exit_code));
    result
}

async fn execute(cli: &Cli, metrics: &Recorder, shutdown: &Shutdown) -> anyhow::Result<Outcome> {
    let global = &cli.global;
    match &cli.command {
        Command::Demo(args) => {
            let output = crate::demo::DemoOutput { json: global.json, progress: global.shows_progress() };
            return crate::demo::run(global.settings()?, output, args).await;
        }
        Command::Bench(args) => {
            // rotor's flags that the bench honours, when given before `bench`; after it, they
            // are among the options already.
            let mut flags: Vec<OsString> = Vec::new();
            flags.extend(global.json.then(|| "--json".into()));
            flags.extend(global.quiet.then(|| "--quiet".into()));
            flags.extend(
                (global.verbose > 0).then(|| format!("-{}", "v".repeat(global.verbose.into())).into()),
            );
            flags.extend((global.log_format == LogFormat::Json).then(|| "--log-format=json".into()));
            match crate::bench::exec(&flags, args) {
                missing @ crate::bench::BenchError::Missing { .. } if args.wants_help() => {
                    let mut cli = Cli::command();
                    cli.build();
                    let bench = cli.find_subcommand_mut("bench").expect("rotor has a bench command");
                    println!("{}", bench.render_long_help());
                    eprintln!("note: {missing}");
                    Ok(Outcome::Success)
                }
                error => Err(error.into()),
            }
        }
        Command::Config(ConfigCommand::Check) => {
            let effective = config_check(global)?;
            print(global.json, &effective, || {
                serde_json::to_string_pretty(&effective).expect("settings serialize")
            });
            let problems = effective["problems"].as_array().map_or(0, Vec::len);
            if problems > 0 && !global.json {
                eprintln!("error: {problems} problem(s) in the settings: see \"problems\" above");
            }
            Ok(if problems == 0 { Outcome::Success } else { Outcome::Problems })
        }
        Command::Component(ComponentCommand::Inspect { path }) => {
            let inspection = component_inspect(path)?;
            print(global.json, &inspection, || inspection.human());
            let refusal = match inspection.world {
                Some(world) => inspection.require(&path.display().to_string(), world).err(),
                None => Some(anyhow!(
                    "{} exports neither rotor:kek/operations nor rotor:kek/audit: rotor cannot run it",
                    path.display()
                )),
            };
            match refusal {
                None => Ok(Outcome::Success),
                Some(refusal) => {
                    if !global.json {
                        eprintln!("error: {refusal:#}");
                    }
                    Ok(Outcome::Problems)
                }
            }
        }
        Command::Audit(args) => {
            let settings = global.settings_for(PlanFlags::batch(args))?;
            let kv = kv_source(&settings, KekUse::ReadOnly)?;
            let app = App::open_audit(settings, kv).await?;
            let report = crate::audit::run(&app, global.reporter("audit")).await?;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Serve(args) => {
            let app = open_app(global, false, PlanFlags::batch(&args.batch)).await?;
            let options = crate::exporter::ExporterOptions {
                addr: args.metrics_addr,
                interval: *args.interval,
                validate_every: *args.validate_every,
            };
            crate::exporter::serve(&app, &options, shutdown).await?;
            Ok(Outcome::Success)
        }
        Command::Validate(args) => {
            let flags = PlanFlags { workers: args.workers, ..PlanFlags::batch(&args.batch) };
            let app = open_app_to_read(global, flags).await?;
            let mut instance = app.instance(Access::ReadOnly, global.reporter("validate")).await?;
            let report = crate::validate::validate(&app, &mut instance).await?;
            metrics
                .observe(&app, Observed { check: Some(WalletCheck::now(report.invalid)), rotation: None })
                .await;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Rotate(RotateCommand { rotate: args, if_older_than }) => {
            let app = open_app(global, true, args.plan()).await?;
            let unfinished = app.database().unfinished_rotation().await?;
            if let Some(rotation) = unfinished.as_ref().filter(|_| if_older_than.is_some()) {
                // The schedule is for starting rotations; one left unfinished is due now.
                tracing::info!(
                    rotation = rotation.id,
                    "rotation #{} is unfinished: resuming it whatever --if-older-than says",
                    rotation.id
                );
            } else if let Some(min_age) = *if_older_than {
                let age = kek_age(&app).await?;
                if age < *min_age {
                    let skipped = serde_json::json!({
                        "skipped": true,
                        "kek_age_seconds": age.as_secs(),
                        "if_older_than_seconds": min_age.as_secs(),
                    });
                    print(global.json, &skipped, || {
                        format!(
                            "not rotating: the current KEK is {} old, younger than --if-older-than {}",
                            crate::durations::human(age),
                            crate::durations::human(*min_age)
                        )
                    });
                    metrics.observe(&app, Observed::default()).await;
                    return Ok(Outcome::Success);
                }
            }
            let access = if args.dry_run { Access::ReadOnly } else { Access::ReadWrite };
            require_vault_writes(&app, args, VaultWrites::Rotation).await?;
            let instance = app.instance(access, global.reporter("rotate")).await?;
            let report = crate::rotation::rotate(&app, instance, &args.request(), None, shutdown).await?;
            metrics.observe(&app, report.observed()).await;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Rollback(args) => {
            let app = open_app(global, true, args.rotate.plan()).await?;
            let to = match args.to {
                Some(version) => version,
                None => previous_kek(&app).await?,
            };
            let access = if args.rotate.dry_run { Access::ReadOnly } else { Access::ReadWrite };
            require_vault_writes(&app, &args.rotate, VaultWrites::Rotation).await?;
            let instance = app.instance(access, global.reporter("rollback")).await?;
            let report =
                crate::rotation::rotate(&app, instance, &args.rotate.request(), Some(to), shutdown).await?;
            metrics.observe(&app, report.observed()).await;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Prune { keep } => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            if let Some(vault) = app.kv().vault() {
                crate::vault::require_policies(vault, &app.settings().key_path, VaultWrites::Prune).await?;
            }
            let mut instance = app.instance(Access::ReadWrite, Reporter::silent()).await?;
            let report = answer(instance.prune(&app.key_location(), *keep).await)?;
            let pruned = Pruned {
                destroyed: report.destroyed,
                kept: report.kept,
                in_use: report.in_use.iter().map(|c| (c.version.to_string(), c.count)).collect(),
            };
            metrics.observe(&app, Observed::default()).await;
            print(global.json, &pruned, || pruned.human());
            Ok(if pruned.in_use.is_empty() { Outcome::Success } else { Outcome::WalletsFailed })
        }
        Command::Abort => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            let aborted = crate::abort::abort(&app).await?;
            metrics.observe(&app, Observed::default()).await;
            print(global.json, &aborted, || aborted.human());
            Ok(Outcome::Success)
        }
        Command::Status => {
            let app = open_app(global, false, PlanFlags::default()).await?;
            let status = status(&app).await?;
            metrics.observe(&app, Observed::default()).await;
            print(global.json, &status, || status.human());
            Ok(Outcome::Success)
        }
        Command::History => {
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
            let entries = answer(instance.history(&app.key_location()).await)?;
            let entries = history_lines(&app, entries).await?;
            let current = app.kv().metadata(&app.settings().key_path).await?.map(|m| m.current_version);
            print(global.json, &entries, || history_human(&entries, current));
            Ok(Outcome::Success)
        }
        Command::Seal { id } => {
            let mut plaintext = Zeroizing::new(Vec::new());
            std::io::stdin().read_to_end(&mut plaintext).context("reading the plaintext from stdin")?;
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ReadWrite, Reporter::silent()).await?;
            let version = answer(instance.seal_wallet(&app.key_location(), id, &plaintext).await)?;
            let sealed = Sealed { id: id.clone(), kek_version: version, bytes: plaintext.len() };
            print(global.json, &sealed, || {
                format!("sealed wallet {id:?} ({} bytes) under KEK v{version}", sealed.bytes)
            });
            Ok(Outcome::Success)
        }
        Command::Open { id } => {
            let app = open_app_to_read(global, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
            let opened = answer(instance.open_wallet(&app.key_location(), id).await);
            // A row holding no text ciphertext reads as absent to the component: say what it holds.
            let opened = opened.map_err(|e| match instance.state().wallets().odd_rows().reason(id) {
                Some(reason) => anyhow!("wallet {id:?} cannot be opened: {reason}"),
                None => e,
            });
            let plaintext = Zeroizing::new(opened?);
            if global.json {
                // JSON carries bytes as base64 so that any wallet survives the trip.
                use base64::Engine;
                let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*plaintext));
                print_json(&serde_json::json!({ "id": id, "plaintext_base64": *encoded }));
            } else {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&plaintext)?;
                stdout.flush()?;
            }
            Ok(Outcome::Success)
        }
        Command::MigrateKek { from_env } => {
            let kek = crate::vault::kek_from_var(from_env)?;
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ReadWrite, Reporter::silent()).await?;
            let version = answer(instance.import_kek(&app.key_location(), kek.trim()).await)?;
            let path = format!("{}/{}", app.settings().kv_mount, app.settings().key_path);
            let migrated = serde_json::json!({ "path": path, "kek_version": version });
            print(global.json, &migrated, || {
                format!(
                    "KEK from {from_env} is in Vault at {path} (version {version}); archived at {path}-archive/v{version}"
                )
            });
            Ok(Outcome::Success)
        }
    }
}

/// What a command's flags say of its [`RunPlan`]; `None` takes the default.
#[derive(Clone, Copy, Debug, Default)]
struct PlanFlags {
    batch_size: Option<BatchSize>,
    workers: Option<std::num::NonZeroUsize>,
    lease_ttl: Option<std::time::Duration>,
}

impl PlanFlags {
    fn batch(batch: &BatchArgs) -> PlanFlags {
        PlanFlags { batch_size: Some(batch.batch_size), ..PlanFlags::default() }
    }
}

/// The app with the KEK in Vault (the only source any command that writes may use).
async fn open_app(global: &GlobalArgs, migrate: bool, plan: PlanFlags) -> anyhow::Result<App> {
    let settings = global.settings_for(plan)?;
    let kv = kv_source(&settings, KekUse::VaultOnly)?;
    App::open(settings, kv, migrate).await
}

/// Vault as the Vault CLI's variables describe it, with rotor.toml's `[vault]` filling in what
/// they leave unset; or the seed's env KEK where `kek_use` allows it.
fn kv_source(settings: &Settings, kek_use: KekUse) -> anyhow::Result<KvSource> {
    let mut source = KvSource::from_env(&settings.kv_mount, &settings.key_path, kek_use)?;
    if let Some(config) = source.vault_config_mut() {
        settings.vault_defaults.fill_in(config);
    }
    Ok(source)
}

/// The app for a command that only reads KEKs: Vault, or the seed's env fallback.
async fn open_app_to_read(global: &GlobalArgs, plan: PlanFlags) -> anyhow::Result<App> {
    let settings = global.settings_for(plan)?;
    let kv = kv_source(&settings, KekUse::ReadOnly)?;
    App::open(settings, kv, false).await
}

/// A rotation or rollback that will write to Vault checks first that the token's policies
/// allow it, so that a read-only token is refused before anything is recorded.
async fn require_vault_writes(app: &App, args: &RotateArgs, writes: VaultWrites) -> anyhow::Result<()> {
    match app.kv().vault() {
        Some(vault) if !args.dry_run => {
            crate::vault::require_policies(vault, &app.settings().key_path, writes).await
        }
        _ => Ok(()),
    }
}

/// Settings as `rotor config check` shows them.
pub struct Resolved {
    pub settings: Settings,
    /// Setting name → where its value came from (flag, environment, rotor.toml, default).
    pub sources: Vec<(&'static str, String)>,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
}

/// `rotor config check`: the effective settings, secrets redacted.
fn config_check(global: &GlobalArgs) -> anyhow::Result<serde_json::Value> {
    let Resolved { settings, sources, file } = global.resolve()?;
    let source = |name: &str| sources.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone());
    let setting = |name: &str, value: String| serde_json::json!({ "value": value, "source": source(name) });
    let mut problems = Vec::new();
    // The token itself is never shown: only whether there is one.
    let vault = match crate::vault::VaultConfig::from_env(&settings.kv_mount) {
        Ok(mut vault) => {
            settings.vault_defaults.fill_in(&mut vault);
            serde_json::json!({
            "addr": vault.addr,
            "namespace": vault.namespace,
            "ca_cert": vault.ca_cert,
            "auth": match &vault.auth {
                crate::vault::VaultAuth::Token(_) => "token (redacted)".to_owned(),
                crate::vault::VaultAuth::AppRole(role) => format!("approle at auth/{} (ids redacted)", role.mount),
            },
            "skip_verify": vault.skip_verify,
            "retry_for": humantime::format_duration(vault.retry_for).to_string(),
            })
        }
        Err(e) => {
            problems.push(e.to_string());
            serde_json::Value::Null
        }
    };
    let component = match &settings.component {
        Some(path) => match ComponentSource::from_file(path) {
            Ok(source) => {
                if let Err(e) = settings.sandbox.admit(&source) {
                    problems.push(e.to_string());
                }
                let pinned = settings.sandbox.pinned.contains(&source.sha256);
                serde_json::json!({ "path": path, "sha256": source.sha256, "pinned": pinned })
            }
            Err(e) => {
                problems.push(format!("{e:#}"));
                serde_json::json!({ "path": path })
            }
        },
        None => serde_json::json!({ "path": "built-in", "sha256": ComponentSource::builtin().sha256 }),
    };
    Ok(serde_json::json!({
        "config_file": file.map(|f| f.display().to_string()),
        "database_url": setting("database-url", crate::config::redact_url(&settings.database_url)),
        "table": setting("table", settings.table.table.clone()),
        "id_column": setting("id-column", settings.table.id_column.clone()),
        "ciphertext_column": setting("ciphertext-column", settings.table.ciphertext_column.clone()),
        "kv_mount": setting("kv-mount", settings.kv_mount.clone()),
        "key_path": setting("key-path", settings.key_path.clone()),
        "vault": vault,
        "component": component,
        "pinned": settings.sandbox.pinned,
        "allow_unpinned": settings.sandbox.allow_unpinned,
        "cross_check": settings.sandbox.cross_check,
        "cache_dir": settings.sandbox.cache.as_ref().map(|c| c.dir().display().to_string()),
        "limits": settings.sandbox.limits,
        "problems": problems,
    }))
}

/// `rotor component inspect PATH`.
fn component_inspect(path: &std::path::Path) -> anyhow::Result<Inspection> {
    let source = ComponentSource::from_file(path)?;
    let sandbox = Sandbox::new(Limits::default(), None)?;
    let (_, inspection) = sandbox.compile(&source)?;
    Ok(inspection)
}

/// How long ago the current KEK was written to Vault (its KV version's creation time).
async fn kek_age(app: &App) -> anyhow::Result<std::time::Duration> {
    let key_path = &app.settings().key_path;
    let metadata = app.kv().metadata(key_path).await?.ok_or_else(|| {
        anyhow!("no KEK at {key_path} in Vault: store the first one with `rotor migrate-kek --from-env VAR`")
    })?;
    let created = metadata
        .versions
        .iter()
        .find(|v| v.version == metadata.current_version)
        .map(|v| v.created_time.as_str())
        .ok_or_else(|| anyhow!("Vault's metadata of {key_path} lists no current version"))?;
    let created = humantime::parse_rfc3339_weak(created)
        .with_context(|| format!("Vault's creation time of {key_path} is not RFC 3339: {created}"))?;
    Ok(std::time::SystemTime::now().duration_since(created).unwrap_or_default())
}

/// The KEK version the last rotation moved away from: what `rollback` goes back to.
async fn previous_kek(app: &App) -> anyhow::Result<u32> {
    let current = app.kv().metadata(&app.settings().key_path).await?.map(|m| m.current_version);
    let last = app.database().rotations().await?.into_iter().find(|r| r.status == rotation_status::FINISHED);
    match last {
        Some(r) if Some(r.to_version as u64) == current => Ok(r.from_version as u32),
        _ => Err(anyhow!(
            "the current KEK was not made by a rotor rotation recorded here, so there is no previous one \
             to go back to: name the version with --to"
        )),
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    /// The running or interrupted rotation, if any.
    pub unfinished: Option<RotationRecord>,
    /// Who holds the rotation lease (it may have expired: then nobody is setting up or closing).
    pub lease: Option<LeaseHolder>,
    pub lease_expired: bool,
    /// The unfinished rotation's key ranges: how many are done, who walks the others.
    pub walk: Option<RangeProgress>,
    /// The KEK version the unfinished rotation moves wallets to: as the journal records it, or
    /// Vault's current one if the rotation stored it but stopped before recording it; `None`
    /// while the new KEK is not stored yet.
    pub next_kek_version: Option<u64>,
    pub current_kek_version: Option<u64>,
    pub key_versions: BTreeMap<String, u64>,
    pub total: u64,
}

impl Status {
    pub fn human(&self) -> String {
        let mut lines = Vec::new();
        match &self.unfinished {
            Some(r) => lines.push(format!(
                "rotation #{} unfinished: v{} -> {}, {} of {} moved so far, started by {}{} at {}",
                r.id,
                r.from_version,
                match (r.to_version, self.next_kek_version) {
                    (0, Some(next)) => format!(
                        "v{next} (stored in Vault before the rotation stopped; `rotor rotate` records it \
                         and moves the wallets)"
                    ),
                    (0, None) =>
                        "(new KEK not stored yet: `rotor rotate` stores it and moves the wallets)".into(),
                    (to, _) => format!("v{to}"),
                },
                r.rotated,
                r.total,
                r.started_by,
                r.vault_identity.as_ref().map(|v| format!(" as {v} in Vault")).unwrap_or_default(),
                r.started_at
            )),
            None => lines.push("no rotation in progress".into()),
        }
        match (&self.lease, self.lease_expired) {
            (Some(l), false) => {
                lines.push(format!("{} holds the rotation lease since {}", l.holder, l.acquired_at))
            }
            (Some(l), true) => lines.push(format!("{} held the rotation lease, which has expired", l.holder)),
            (None, _) => {}
        }
        if let Some(walk) = &self.walk {
            lines.push(format!("{} of {} key ranges walked", walk.done, walk.ranges));
            if walk.holders.is_empty() {
                lines.push("nobody is walking it: `rotor rotate` resumes it".into());
            } else {
                lines.push(format!("walking: {}", walk.holders.join("; ")));
            }
        }
        let versions: Vec<String> = self.key_versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        lines.push(format!("{} wallets per KEK version: {}", self.total, versions.join(", ")));
        if let Some(v) = self.current_kek_version {
            lines.push(format!("current KEK in Vault: v{v}"));
        }
        lines.join("\n")
    }
}

pub async fn status(app: &App) -> anyhow::Result<Status> {
    let database = app.database();
    let key_versions = database.version_counts().await?;
    let lease = database.lease().await?;
    let metadata = app.kv().metadata(&app.settings().key_path).await?;
    let unfinished = database.unfinished_rotation().await?;
    let walk = match &unfinished {
        Some(rotation) => Some(database.range_progress(rotation.id).await?),
        None => None,
    };
    let current_kek_version = metadata.map(|m| m.current_version);
    let next_kek_version = unfinished.as_ref().and_then(|r| match r.to_version {
        0 => current_kek_version.filter(|current| *current > r.from_version as u64),
        to => Some(to as u64),
    });
    Ok(Status {
        walk,
        next_kek_version,
        unfinished,
        lease_expired: lease.as_ref().is_some_and(|l| l.expires_at < crate::store::unix_now()),
        lease,
        current_kek_version,
        total: key_versions.values().sum(),
        key_versions,
    })
}

#[derive(Debug, Serialize)]
struct Pruned {
    destroyed: Vec<u32>,
    kept: Vec<u32>,
    /// Versions not destroyed because wallets use them: version → wallets.
    in_use: BTreeMap<String, u64>,
}

impl Pruned {
    fn human(&self) -> String {
        let list = |versions: &[u32]| versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        let mut text = format!(
            "destroyed: {}; kept: {}",
            if self.destroyed.is_empty() { "nothing".into() } else { list(&self.destroyed) },
            list(&self.kept)
        );
        for (version, count) in &self.in_use {
            text.push_str(&format!("\nrefused to destroy v{version}: {count} wallet(s) still use it"));
        }
        text
    }
}

#[derive(Debug, Serialize)]
struct Sealed {
    id: String,
    kek_version: u32,
    bytes: usize,
}

/// One line of `rotor history`.
#[derive(Debug, Serialize)]
pub struct HistoryLine {
    pub source: String,
    #[serde(flatten)]
    pub rotation: Option<RotationRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

impl From<operations::HistoryEntry> for HistoryLine {
    fn from(entry: operations::HistoryEntry) -> Self {
        HistoryLine {
            source: entry.source,
            rotation: entry.rotation.map(RotationRecord::from),
            archive_path: entry.archive_path,
            archived_at: entry.archived_at,
        }
    }
}

/// The component's history with each rotation as rotor's own journal holds it (the component
/// only passes records through, and the WIT record lacks the Vault identity).
async fn history_lines(
    app: &App,
    entries: Vec<operations::HistoryEntry>,
) -> anyhow::Result<Vec<HistoryLine>> {
    let journal: BTreeMap<i64, RotationRecord> =
        app.database().rotations().await?.into_iter().map(|r| (r.id, r)).collect();
    Ok(entries
        .into_iter()
        .map(HistoryLine::from)
        .map(|mut line| {
            if let Some(recorded) = line.rotation.as_ref().and_then(|r| journal.get(&r.id)) {
                line.rotation = Some(recorded.clone());
            }
            line
        })
        .collect())
}

/// `current`: Vault's current KEK version, which an unfinished rotation that stopped before
/// recording its target moves to.
fn history_human(entries: &[HistoryLine], current: Option<u64>) -> String {
    if entries.is_empty() {
        return "no rotations recorded".into();
    }
    let target = |r: &RotationRecord| match r.to_version {
        0 if r.status == rotation_status::RUNNING => match current.filter(|c| *c > r.from_version as u64) {
            Some(current) => format!("v{current} (stored, not yet recorded)"),
            None => "(no new KEK stored yet)".into(),
        },
        0 => "(no new KEK)".into(),
        to => format!("v{to}"),
    };
    let lines: Vec<String> = entries
        .iter()
        .map(|entry| match (&entry.rotation, &entry.archive_path) {
            (Some(r), _) => format!(
                "{}  #{} v{} -> {}  {}  {} of {} moved, {} failed{}  by {}{}  component {}",
                r.started_at,
                r.id,
                r.from_version,
                target(r),
                r.status,
                r.rotated,
                r.total,
                r.failed,
                r.finished_at.as_ref().map(|f| format!(", ended {f}")).unwrap_or_default(),
                r.started_by,
                r.vault_identity.as_ref().map(|v| format!(" as {v}")).unwrap_or_default(),
                &r.component_sha256[..r.component_sha256.len().min(12)],
            ),
            (None, Some(path)) => format!(
                "{}  seed script archived a KEK at {path}",
                entry.archived_at.as_deref().unwrap_or("?")
            ),
            (None, None) => String::new(),
        })
        .collect();
    lines.join("\n")
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        print_json(value);
    } else {
        println!("{}", human());
    }
}
