//! The `rotor` command line: [`args`] is what clap parses, [`settings`] resolves flags,
//! environment and rotor.toml into the [`Settings`] and [`RunPlan`] a command runs with, and
//! this module runs each command through the library and prints what it did ([`output`]).
//! Nothing else in the crate imports it: a second front end (the OpenBao plugin) calls the
//! same library functions.

mod args;
mod output;
mod rotate;
mod settings;
mod via_plugin;

pub use args::{
    BatchArgs, Cli, Command, ComponentCommand, ConfigCommand, GlobalArgs, OutputFormat, RollbackArgs,
    RotateArgs, RotateCommand, ServeArgs, ValidateArgs,
};
pub use settings::Resolved;

use std::ffi::OsString;
use std::io::{Read, Write};

use anyhow::{Context, anyhow};
use clap::CommandFactory;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::abort::Aborted;
use crate::answer::answer;
use crate::app::App;
use crate::component::{ComponentSource, Sandbox};
use crate::grants::Access;
use crate::inspect::Inspection;
use crate::limits::Limits;
use crate::metrics::{Observed, Recorder, WalletCheck};
use crate::progress::Reporter;
use crate::report::{Outcome, print_json};
use crate::shutdown::{Interrupted, Shutdown};
use crate::status::Status;
use crate::terminal::LogFormat;
use crate::vault::{KekUse, PolicyRole, VaultWrites};

use self::args::PlanFlags;
use self::output::{Sealed, print};
use self::rotate::{rotate, rotate_tenants};
use self::settings::{config_check, kv_source, open_app, open_app_to_read};

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
            | Command::Promote(_)
            | Command::Rollback(_)
            | Command::Prune { .. }
            | Command::Destroy { .. }
            | Command::Status
            | Command::Abort
    );
    let cleans_up = matches!(cli.command, Command::Rotate(_) | Command::Promote(_) | Command::Rollback(_));
    // For a server, a signal is the ordinary way to stop: it ends with success.
    let stops_itself = matches!(cli.command, Command::Serve(_));
    // Labelled from the settings even if the command fails before it reads anything; settings
    // that do not resolve leave the page unlabelled, and the command reports why.
    let labels = match (records_metrics, &cli.global.metrics_file) {
        (true, Some(_)) => {
            cli.global.settings().map(|s| crate::metrics::scope_labels(&s)).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let metrics = Recorder::new(cli.global.metrics_file.clone().filter(|_| records_metrics), labels);
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
    if let Some(mount) = &global.via_plugin {
        return via_plugin::run(global, mount, &cli.command, shutdown).await;
    }
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
        Command::Policy { role } => {
            let settings = global.settings()?;
            let role = PolicyRole::from(*role);
            let hcl = crate::vault::policy_hcl(
                role,
                &settings.kv_mount,
                &settings.key_path,
                settings.derive_from.as_deref(),
            );
            let printed = serde_json::json!({ "name": role.policy_name(), "policy": hcl });
            print(global.json, &printed, || hcl.trim_end().to_owned());
            Ok(Outcome::Success)
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
        Command::Rotate(command) => {
            if let Some(tenants) = global.tenant_list()? {
                return rotate_tenants(global, command, tenants, shutdown).await;
            }
            let (outcome, shown) = rotate(global, command, metrics, shutdown).await?;
            shown.print(global.json);
            Ok(outcome)
        }
        Command::Destroy { version, dry_run } => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            if !dry_run {
                app.require_policies(VaultWrites::Prune).await?;
            }
            let destroyed = crate::prune::destroy(&app, *version, *dry_run).await?;
            metrics.observe(&app, Observed::default()).await;
            print(global.json, &destroyed, || destroyed.human());
            Ok(if destroyed.receipt_not_stored.is_some() { Outcome::Problems } else { Outcome::Success })
        }
        Command::Promote(args) => {
            let app = open_app(global, true, args.plan()).await?;
            crate::staging::require_promotable(&app).await?;
            let access = if args.dry_run { Access::ReadOnly } else { Access::Rotate };
            require_vault_writes(&app, args, VaultWrites::Rotation).await?;
            let instance = app.instance(access, global.reporter("promote")).await?;
            let report = crate::rotation::rotate(&app, instance, &args.request(), None, shutdown).await?;
            metrics.observe(&app, report.observed()).await;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Unstage => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            app.require_policies(VaultWrites::Stage).await?;
            let unstaged = crate::staging::unstage(&app).await?;
            print(global.json, &unstaged, || unstaged.human());
            Ok(Outcome::Success)
        }
        Command::Rollback(args) => {
            let app = open_app(global, true, args.rotate.plan()).await?;
            if app.database().our_unfinished_rotation().await?.is_none() && !args.rotate.dry_run {
                crate::staging::refuse_while_staged(&app, "rollback").await?;
            }
            let to = match args.to {
                Some(version) => version,
                None => crate::rotation::previous_kek(&app).await?,
            };
            let access = if args.rotate.dry_run { Access::ReadOnly } else { Access::Rotate };
            require_vault_writes(&app, &args.rotate, VaultWrites::Rotation).await?;
            let instance = app.instance(access, global.reporter("rollback")).await?;
            let report =
                crate::rotation::rotate(&app, instance, &args.rotate.request(), Some(to), shutdown).await?;
            metrics.observe(&app, report.observed()).await;
            print(global.json, &report, || report.human());
            Ok(report.outcome())
        }
        Command::Prune { keep, dry_run } => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            // A dry run writes nothing to Vault, so it asks for no write policy.
            if !dry_run {
                app.require_policies(VaultWrites::Prune).await?;
            }
            let instance = app.instance(Access::Prune, Reporter::silent()).await?;
            let pruned = crate::prune::prune(&app, instance, *keep, *dry_run).await?;
            metrics.observe(&app, Observed::default()).await;
            print(global.json, &pruned, || pruned.human());
            Ok(match (&pruned.receipt_not_stored, pruned.in_use.is_empty()) {
                (Some(_), _) => Outcome::Problems,
                (None, true) => Outcome::Success,
                (None, false) => Outcome::WalletsFailed,
            })
        }
        Command::Quarantine { dry_run, list, release } => {
            let app = open_app(global, true, PlanFlags::default()).await?;
            match (list, release) {
                (true, _) => {
                    let listed = crate::quarantine::list(&app).await?;
                    print(global.json, &listed, || listed.human());
                }
                (false, Some(id)) => {
                    let released = crate::quarantine::release(&app, id).await?;
                    print(global.json, &released, || released.human());
                }
                (false, None) => {
                    let found = crate::quarantine::quarantine(&app, *dry_run).await?;
                    print(global.json, &found, || found.human());
                }
            }
            Ok(Outcome::Success)
        }
        Command::Abort => host_only(global, metrics, true, crate::abort::abort, Aborted::human).await,
        Command::Status => host_only(global, metrics, false, crate::status::status, Status::human).await,
        Command::Keys => {
            host_only(global, metrics, false, crate::inventory::inventory, crate::inventory::Inventory::human)
                .await
        }
        Command::History => {
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
            let entries = answer(instance.history(&app.key_location()).await)?;
            let mut entries = crate::history::history_lines(&app, entries).await?;
            let current = app.kv().metadata(&app.settings().key_path).await?.map(|m| m.current_version);
            let key_path = &app.settings().key_path;
            let verdict = match app.kv().vault() {
                Some(_) => Some(crate::ledger::Ledger::new(app.kv(), key_path).verify(app.database()).await?),
                None => None,
            };
            let broken = verdict.as_ref().is_some_and(crate::ledger::Verdict::is_broken);
            let human = crate::history::history_human(&entries, current);
            let human = match &verdict {
                Some(verdict) => format!("{human}\n{}", verdict.human(key_path)),
                None => human,
            };
            // JSON keeps its one line per rotation; the chain gets a line only when there is
            // something to look at.
            if let Some(verdict) = verdict.filter(|v| v.is_broken() || v.unreadable.is_some()) {
                entries.push(crate::history::HistoryLine {
                    source: "vault-history".into(),
                    rotation: None,
                    archive_path: None,
                    archived_at: None,
                    chain: Some(verdict),
                });
            }
            print(global.json, &entries, || human);
            Ok(if broken { Outcome::Problems } else { Outcome::Success })
        }
        Command::Seal { id } => {
            let mut plaintext = Zeroizing::new(Vec::new());
            std::io::stdin().read_to_end(&mut plaintext).context("reading the plaintext from stdin")?;
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::Seal { id: id.clone() }, Reporter::silent()).await?;
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
            let plaintext = opened?;
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
            let text = crate::vault::kek_from_var(from_env)?;
            let kek = rotor_codec::Kek::from_hex(text.trim())
                .map_err(|e| anyhow!("{from_env} does not hold a KEK ({e}): it must be 64 hex characters"))?;
            let app = open_app(global, false, PlanFlags::default()).await?;
            let mut instance = app.instance(Access::ImportKek, Reporter::silent()).await?;
            let version = answer(instance.import_kek(&app.key_location(), kek).await)?;
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

/// A command the host answers from the journal and Vault alone, with no component: runs it,
/// records the metrics and prints what it found. `migrate`: it may write the journal.
async fn host_only<T: Serialize>(
    global: &GlobalArgs,
    metrics: &Recorder,
    migrate: bool,
    command: impl AsyncFnOnce(&App) -> anyhow::Result<T>,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<Outcome> {
    let app = open_app(global, migrate, PlanFlags::default()).await?;
    let found = command(&app).await?;
    metrics.observe(&app, Observed::default()).await;
    print(global.json, &found, || human(&found));
    Ok(Outcome::Success)
}

/// `rotor component inspect PATH`.
fn component_inspect(path: &std::path::Path) -> anyhow::Result<Inspection> {
    let source = ComponentSource::from_file(path)?;
    let sandbox = Sandbox::new(Limits::default(), None)?;
    let (_, inspection) = sandbox.compile(&source)?;
    Ok(inspection)
}

/// A rotation or rollback that will write to Vault checks first that the token's policies
/// allow it, so that a read-only token is refused before anything is recorded.
async fn require_vault_writes(app: &App, args: &RotateArgs, writes: VaultWrites) -> anyhow::Result<()> {
    if args.dry_run { Ok(()) } else { app.require_policies(writes).await }
}
