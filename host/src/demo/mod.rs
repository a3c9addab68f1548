//! `rotor demo`: the whole job on the embedded default, against a real OpenBao dev server.
//!
//! It replays the seed's story: a KEK in an environment variable moves into Vault (Day 2),
//! the service has enrolled wallets in its legacy format, and then rotor validates, rotates
//! (converting every wallet to its envelope format under a new KEK) and validates again.
//! [`openbao`] starts its OpenBao, [`wallets`] makes the wallets the seed's service wrote.

pub mod openbao;
pub mod wallets;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Args;
use rotor_codec::Kek;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::answer::answer;
use crate::app::{App, Settings};
use crate::grants::Access;
use crate::plan::{BatchSize, RunPlan};
use crate::progress::Reporter;
use crate::report::{Outcome, RotateReport, ValidateReport, print_json};
use crate::rotation::RotateRequest;
use crate::shutdown::Shutdown;
use crate::store::{WalletRow, WalletTable, create_sqlite_database};
use crate::vault::VaultConfig;
use openbao::DevServer;
use wallets::{fabric_identity, legacy_wallet};

#[derive(Debug, Args)]
/// `rotor demo`'s arguments.
pub struct DemoArgs {
    /// How many legacy wallets to enroll (Fabric identities, ~1.3 KB each).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub wallets: u64,
    /// Keep the SQLite database in this folder (default: a temporary folder, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Wallets per batch (per transaction and per call into the component).
    #[arg(long, default_value_t = BatchSize::DEFAULT, value_name = "N")]
    pub batch_size: BatchSize,
}

/// How the demo shows itself: the command line's `--json`, and whether a progress bar may be
/// drawn.
#[derive(Clone, Copy, Debug)]
pub struct DemoOutput {
    /// Print the JSON report instead of text.
    pub json: bool,
    /// Progress bars are wanted (not `--quiet`); they are drawn only on a terminal.
    pub progress: bool,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    vault_addr: String,
    database_url: String,
    wallets: u64,
    enroll_ms: u64,
    before: ValidateReport,
    rotation: RotateReport,
    after: ValidateReport,
    spot_checks: usize,
    current_kek_version: u64,
    archived_kek_versions: Vec<String>,
}

/// Narrates a step on stdout, unless the output is JSON.
struct Narrator {
    quiet: bool,
}

impl Narrator {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

/// Runs the demo with `configured`'s key path, component and sandbox (the demo brings its own
/// database and Vault).
pub async fn run(configured: Settings, output: DemoOutput, args: &DemoArgs) -> anyhow::Result<Outcome> {
    let say = Narrator { quiet: output.json };
    let server = DevServer::start().await.context("starting the OpenBao dev server")?;
    say.say(format!("1. OpenBao dev server running at {} (in memory; stopped at the end)", server.addr()));

    let (dir, temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("rotor-demo-{}", std::process::id())), true),
    };
    let result = run_with_server(configured, output, args, &server, &dir, &say).await;
    let stopped = server.stop().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    stopped.context("stopping the OpenBao dev server")?;
    say.say("9. OpenBao stopped.");
    if output.json {
        print_json(&report);
    }
    let clean = report.after.invalid == 0 && report.rotation.failed == 0;
    Ok(if clean { Outcome::Success } else { Outcome::WalletsFailed })
}

async fn run_with_server(
    configured: Settings,
    output: DemoOutput,
    args: &DemoArgs,
    server: &DevServer,
    dir: &std::path::Path,
    say: &Narrator,
) -> anyhow::Result<DemoReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let table = WalletTable::default();
    let database_url = create_sqlite_database(&dir.join("wallets.db"), &table).await?;
    say.say(format!("2. SQLite wallet table created: {database_url}"));

    // The demo's own database and Vault; the rest (key path, component, sandbox) as configured.
    let plan = RunPlan::resolve(Some(args.batch_size), None, None, &configured.sandbox.limits);
    let settings = Settings {
        database_url: database_url.clone(),
        table,
        more_targets: Vec::new(),
        kv_mount: "secret".into(),
        key_path: configured.key_path,
        component: configured.component,
        sandbox: configured.sandbox,
        vault_defaults: configured.vault_defaults,
        plan,
        profile: configured.profile,
        rotate_after: configured.rotate_after,
        tenant: None,
        derive_from: None,
    };
    let vault = VaultConfig::with_token(server.addr(), server.root_token());
    let app = App::open(settings, vault, true).await?;
    let at = app.key_location();

    // The seed's Day 2: the KEK leaves the environment for Vault.
    let kek = Kek::generate().context("generating the demo's first KEK")?;
    let mut instance = app.instance(Access::ImportKek, Reporter::silent()).await?;
    let version = answer(instance.import_kek(&at, kek.clone()).await)?;
    say.say(format!(
        "3. First KEK stored in Vault at secret/{} (version {version}), as `rotor migrate-kek` does",
        at.key_path
    ));

    let started = Instant::now();
    let mut originals = Vec::with_capacity(args.wallets as usize);
    let mut rows = Vec::with_capacity(args.wallets as usize);
    for n in 0..args.wallets {
        let id = format!("user-{n:07}@IBNMSP");
        let plaintext = Zeroizing::new(fabric_identity(&id));
        rows.push(WalletRow { id: id.clone(), ciphertext: legacy_wallet(&kek, &plaintext) });
        originals.push((id, plaintext));
    }
    app.database().put_many(&rows).await?;
    drop(rows);
    let enroll_ms = started.elapsed().as_millis() as u64;
    say.say(format!(
        "4. Enrolled {} wallets in the seed's legacy format (base64 iv|tag|ciphertext) in {enroll_ms} ms",
        args.wallets
    ));

    let mut instance = app.instance(Access::ReadOnly, reporter(output, "validate")).await?;
    let before = crate::validate::validate(&app, &mut instance).await?;
    say.say(format!("5. validate: {}", before.human().replace('\n', "\n   ")));

    let request = RotateRequest {
        dry_run: false,
        reencrypt: false,
        resume: false,
        strict: false,
        output_format: crate::bindings::types::OutputFormat::Envelope,
    };
    let instance = app.instance(Access::Rotate, reporter(output, "rotate")).await?;
    // A signal stops the whole demo (its OpenBao and database are throwaway), not a rotation.
    let rotation = crate::rotation::rotate(&app, instance, &request, None, &Shutdown::new()).await?;
    say.say(format!("6. rotate: {}", rotation.human().replace('\n', "\n   ")));

    let mut instance = app.instance(Access::ReadOnly, reporter(output, "validate")).await?;
    let after = crate::validate::validate(&app, &mut instance).await?;
    say.say(format!("7. validate: {}", after.human().replace('\n', "\n   ")));

    // Spot checks through the component, byte for byte (the tests check every wallet).
    let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
    let samples: Vec<usize> = [0, originals.len() / 2, originals.len() - 1].into_iter().collect();
    for &i in &samples {
        let (id, original) = &originals[i];
        let opened = Zeroizing::new(answer(instance.open_wallet(&at, id).await)?);
        ensure!(opened.as_slice() == original.as_slice(), "wallet {id} does not open to what was enrolled");
    }
    let current =
        app.kv().metadata(&at.key_path).await?.context("the KEK disappeared from Vault")?.current_version;
    let archived = app.kv().list(&format!("{}-archive/", at.key_path)).await?;
    say.say(format!(
        "8. {} wallets opened byte-identical through `rotor open`; Vault: current KEK v{current}, archive keeps {}",
        samples.len(),
        archived.join(", ")
    ));

    Ok(DemoReport {
        vault_addr: server.addr().to_owned(),
        database_url,
        wallets: args.wallets,
        enroll_ms,
        before,
        rotation,
        after,
        spot_checks: samples.len(),
        current_kek_version: current,
        archived_kek_versions: archived,
    })
}

fn reporter(output: DemoOutput, label: &str) -> Reporter {
    Reporter::new(label, output.progress)
}
