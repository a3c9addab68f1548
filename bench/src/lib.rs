//! `rotor bench`: how fast rotor rotates, next to what bounds it and what a user would use
//! instead, all measured in one run on this machine.
//!
//! This is the `rotor-bench` binary's library, a crate of its own so that the production `rotor`
//! binary links neither the chart library nor its font: `rotor bench` runs `rotor-bench`, and
//! `rotor-bench` measures the `rotor` binary next to it ([`rotor_binary`]).
//!
//! It starts what it needs (an OpenBao dev server, SQLite files in a temporary folder, a fresh
//! PostgreSQL database dropped afterwards), enrolls wallets of a realistic size natively in the
//! seed's legacy layout, and for each size measures, per database: the first `rotor rotate`
//! (from legacy), `rotor validate`, `rotor rotate` (re-wrap) and `rotate --reencrypt`, each run
//! as the real command in a child process; the same rotations and a plain read-and-open with
//! the crypto core compiled natively ([`native`]); the plain rewrite of the same rows ([`raw`]);
//! then OpenBao Transit rewrapping as many ciphertexts ([`transit`]), and the start-up time of
//! a command on a 10-wallet database. [`report`] turns the figures into the table, the ratios against the
//! targets, JSON, and a chart ([`chart`]).

// rotor's library under the names these modules used when they were part of it (`crate::store`
// and so on), so that they read as they did there.
use rotor::{coordination, progress, store, vault};

pub mod chart;
mod native;
mod plugin;
mod raw;
mod report;
pub mod transit;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rotor_codec::Kek;
use serde::Deserialize;
use sqlx::{AssertSqlSafe, Connection};

use crate::store::{Database, WalletRow, WalletTable, create_sqlite_database, redact_url};
use crate::vault::{VaultClient, VaultConfig};
use rotor::demo::wallets::fabric_identity;
use rotor::plan::default_workers;

pub use report::{BenchReport, Measurement, Setup};

use crate::plugin::OpenBao;

/// What to measure, and how (`rotor bench --help`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sizes to measure, comma-separated, e.g. 10000,100000,1000000 [default: 1000000].
    #[arg(long, value_delimiter = ',', value_name = "N,…", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub wallets: Vec<u64>,
    /// 100,000 wallets only: a run of about four minutes rather than twenty.
    #[arg(long, conflicts_with = "wallets")]
    pub quick: bool,
    /// Also write the table as bench.md, the figures as bench.json and a chart as bench.png in
    /// this folder (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A PostgreSQL server the bench may create a database on (dropped at the end). Start a
    /// throwaway one with `scripts/postgres-for-tests start` if none is running.
    #[arg(
        long,
        env = "ROTOR_BENCH_PG_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "URL"
    )]
    pub postgres_url: String,
    /// Workers of each rotation [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
    /// Wallets per batch, for rotor and the native baseline alike (the raw rewrite also tries
    /// 1000 and keeps the faster).
    #[arg(long, default_value_t = rotor::plan::BatchSize::DEFAULT, value_name = "N")]
    pub batch_size: rotor::plan::BatchSize,
}

impl BenchArgs {
    fn sizes(&self) -> Vec<u64> {
        match (self.quick, self.wallets.is_empty()) {
            (true, _) => vec![100_000],
            (false, true) => vec![1_000_000],
            (false, false) => {
                let mut sizes = self.wallets.clone();
                sizes.sort_unstable();
                sizes.dedup();
                sizes
            }
        }
    }
}

/// Transit's default listener refuses JSON of 1000 strings or more: 499 items of two.
const TRANSIT_BATCH: usize = 499;

/// Runs the whole bench, printing each figure as it comes (to stderr) and returning them all.
/// With `verbose`, each rotor command the bench runs logs to stderr (`-v` once, `-vv` twice).
pub async fn run(args: &BenchArgs, command_line: String, verbose: u8) -> anyhow::Result<BenchReport> {
    let sizes = args.sizes();
    let workers = args.workers.unwrap_or_else(default_workers).get();
    let rotor = rotor_binary()?;
    let plugin = plugin::plugin_binary(&rotor)?;
    let dir = TempDir::new()?;
    let vault = OpenBao::start(&plugin).await.context("starting an OpenBao dev server for the bench")?;
    let postgres = PostgresServer::connect(&args.postgres_url).await?;
    let bench = Bench {
        rotor: &rotor,
        vault: &vault,
        dir: dir.path(),
        workers,
        batch_size: args.batch_size.get(),
        verbose,
    };
    let mut report = BenchReport::new(command_line, workers, args.batch_size.get(), sizes.clone());

    let outcome = async {
        report.startup = Some(bench.startup().await.context("measuring start-up")?);
        for &n in &sizes {
            let sqlite = bench.sqlite_database(n).await?;
            bench.database_setups(&mut report, n, Store::Sqlite, &sqlite).await?;
            let pg_url = postgres.create_database(n).await?;
            bench.database_setups(&mut report, n, Store::Postgres, &pg_url).await?;
            postgres.drop_database(n).await?;
            for store in [Store::Sqlite, Store::Postgres] {
                let url = match store {
                    Store::Sqlite => bench.sqlite_database_named(&format!("bench-plugin-{n}.db")).await?,
                    Store::Postgres => postgres.create_database(n).await?,
                };
                bench.plugin_setups(&mut report, n, store, &url).await?;
            }
            postgres.drop_database(n).await?;
            bench.transit(&mut report, n).await?;
        }
        anyhow::Ok(())
    }
    .await;
    postgres.drop_all().await;
    if let Err(e) = vault.stop().await {
        tracing::warn!("could not stop the bench's OpenBao server: {e}");
    }
    outcome?;
    Ok(report)
}

/// Where a measurement ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

struct Bench<'a> {
    rotor: &'a Path,
    vault: &'a OpenBao,
    dir: &'a Path,
    workers: usize,
    batch_size: u32,
    verbose: u8,
}

impl Bench<'_> {
    fn vault_client(&self) -> anyhow::Result<VaultClient> {
        Ok(VaultClient::new(VaultConfig::with_token(self.vault.addr(), self.vault.root_token()))?)
    }

    /// A fresh SQLite file with an empty wallet table.
    async fn sqlite_database(&self, n: u64) -> anyhow::Result<String> {
        self.sqlite_database_named(&format!("bench-{n}.db")).await
    }

    /// A fresh SQLite file `name` with an empty wallet table.
    async fn sqlite_database_named(&self, name: &str) -> anyhow::Result<String> {
        Ok(create_sqlite_database(&self.dir.join(name), &WalletTable::default()).await?)
    }

    /// A rotation through the OpenBao plugin beside the CLI's, on the same `n` rows: the CLI
    /// moves fresh legacy rows onto the envelope, then re-wraps them (the figure compared);
    /// the plugin, given that KEK, re-wraps them once more.
    async fn plugin_setups(
        &self,
        report: &mut BenchReport,
        n: u64,
        store: Store,
        url: &str,
    ) -> anyhow::Result<()> {
        let name = format!("{}-{n}", store.name().to_lowercase());
        let key_path = format!("bench/plugin-{name}/encryption-key");
        let kek = Kek::generate()?;
        self.store_first_kek(&key_path, &kek).await?;
        enroll_legacy(&Database::connect(url, WalletTable::default()).await?, &kek, n).await?;
        let (workers, batch) = (self.workers.to_string(), self.batch_size.to_string());
        let args = ["rotate", "--workers", &workers, "--batch-size", &batch];
        let first: Reported = self.rotor(url, &key_path, &args).await?;
        check_moved(&first, n, "the CLI's first rotation, before the plugin's")?;
        settle(url, store).await?;
        let cli: Reported = self.rotor(url, &key_path, &args).await?;
        check_moved(&cli, n, "the CLI's re-wrap beside the plugin's")?;
        report.record_run(Setup::RotateBesidePlugin, store.name(), n, cli.rotated, &cli);
        let (version, current) = self.current_kek(&key_path).await?;
        settle(url, store).await?;
        let mount = format!("rotor-{name}");
        let run = self.vault.rotate(&mount, url, (version, &current), self.workers, self.batch_size).await?;
        if run.rotated != n || run.failed != 0 {
            bail!("the plugin's re-wrap moved {} of {n} wallets ({} failed)", run.rotated, run.failed);
        }
        tracing::info!(
            store = store.name(),
            wallets = n,
            wall_seconds = run.wall.as_secs_f64(),
            "plugin rotation seen done"
        );
        report.record(Setup::PluginRotate, store.name(), n, run.rotated, run.took, run.peak_rss_bytes);
        Ok(())
    }

    /// Every per-database measurement at size `n`, in an order that keeps each one's input
    /// valid: the wallets start in the seed's legacy layout, which the first rotation moves to
    /// rotor's envelope; validate and the sandbox ceiling read; the later rotations write; the
    /// raw rewrites leave the rows as they found them.
    async fn database_setups(
        &self,
        report: &mut BenchReport,
        n: u64,
        store: Store,
        url: &str,
    ) -> anyhow::Result<()> {
        let key_path = format!("bench/{}-{n}/encryption-key", store.name().to_lowercase());
        let kek = Kek::generate()?;
        self.store_first_kek(&key_path, &kek).await?;
        let database = Database::connect(url, WalletTable::default()).await?;
        let enrolled = Instant::now();
        enroll_legacy(&database, &kek, n).await?;
        tracing::info!(
            wallets = n,
            store = store.name(),
            seconds = enrolled.elapsed().as_secs_f64(),
            "enrolled"
        );

        let workers = self.workers.to_string();
        let batch = self.batch_size.to_string();
        // What every adopter runs first: the seed's rows, rewritten plainly, then rotated.
        // Every timed step starts from a settled table (see `settle`).
        let (rewritten, took) = self.raw_rewrite(&database, url, store).await?;
        report.record(Setup::RawRewriteLegacy, store.name(), n, rewritten, took, None);
        settle(url, store).await?;
        let args = ["rotate", "--workers", &workers, "--batch-size", &batch];
        let first: Reported = self.rotor(url, &key_path, &args).await?;
        check_moved(&first, n, "the first rotor rotate, from legacy wallets")?;
        report.record_run(Setup::RotateLegacy, store.name(), n, first.rotated, &first);

        settle(url, store).await?;
        let validated: Reported =
            self.rotor(url, &key_path, &["validate", "--workers", &workers, "--batch-size", &batch]).await?;
        report.record_run(Setup::Validate, store.name(), n, validated.total, &validated);
        let (_, current) = self.current_kek(&key_path).await?;
        let (opened, took) = native::read_and_open(&database, current, self.workers).await?;
        report.record(Setup::NativeOpen, store.name(), n, opened, took, None);
        if store == Store::Sqlite {
            // One instance opening and resealing every wallet in memory, writing nothing: the
            // rate of the component and the host's AES on one core, times the cores the workers
            // can use, is the ceiling of --reencrypt.
            let dry: Reported = self
                .rotor(url, &key_path, &["rotate", "--dry-run", "--reencrypt", "--batch-size", &batch])
                .await?;
            let cores = self.workers.min(default_workers().get()) as u64;
            report.record(
                Setup::ReencryptCeiling,
                store.name(),
                n,
                dry.rotated * cores,
                dry.duration(),
                None,
            );
        }
        for (setup, reencrypt) in [(Setup::Rotate, false), (Setup::RotateReencrypt, true)] {
            let mut args = vec!["rotate", "--workers", &workers, "--batch-size", &batch];
            args.extend(reencrypt.then_some("--reencrypt"));
            settle(url, store).await?;
            let rotated: Reported = self.rotor(url, &key_path, &args).await?;
            check_moved(&rotated, n, &format!("rotor {}", args.join(" ")))?;
            report.record_run(setup, store.name(), n, rotated.rotated, &rotated);
        }

        // The same moves natively: from the KEK the rotations left current to a fresh one
        // (never stored: only this process needs it), and on from there.
        let mut from = self.current_kek(&key_path).await?;
        for (setup, reencrypt) in [(Setup::NativeRotate, false), (Setup::NativeReencrypt, true)] {
            let to = (from.0 + 1, Kek::generate()?);
            let next = (to.0, to.1.clone());
            let keys = native::NativeKeys { from, to };
            settle(url, store).await?;
            let (moved, took) =
                native::rotate(&database, keys, reencrypt, self.workers, self.batch_size).await?;
            report.record(setup, store.name(), n, moved, took, None);
            from = next;
        }

        // The database's limit is its fastest plain rewrite: of the bench's batches, and of
        // the 1000-row transactions the limit was first measured with.
        let (rewritten, took) = self.raw_rewrite(&database, url, store).await?;
        report.record(Setup::RawRewrite, store.name(), n, rewritten, took, None);
        Ok(())
    }

    /// The database's plain rewrite of every row, twice: in the bench's batches and in 1000-row
    /// ones, each from a settled table. The rows end as they began (see [`raw::rewrite`]);
    /// returns the rows of one pass and the faster pass's time.
    async fn raw_rewrite(
        &self,
        database: &Database,
        url: &str,
        store: Store,
    ) -> anyhow::Result<(u64, Duration)> {
        settle(url, store).await?;
        let (rows, first) = raw::rewrite(database, self.batch_size).await?;
        settle(url, store).await?;
        let (_, second) = raw::rewrite(database, 1000).await?;
        Ok((rows, first.min(second)))
    }

    /// Transit rewrapping `n` ciphertexts twice over: of wallets (what a user who lets Transit
    /// encrypt the wallets would rotate) and of 32-byte data keys (Transit as the KEK of an
    /// envelope scheme like rotor's; storing the results back is not counted).
    async fn transit(&self, report: &mut BenchReport, n: u64) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let wallet_size = fabric_identity("wallet-00000000").len();
        for (setup, plaintext_len) in
            [(Setup::TransitRewrap, wallet_size), (Setup::TransitRewrapDataKeys, 32)]
        {
            let key = format!("bench-{n}-{plaintext_len}");
            let (addr, token) = (self.vault.addr(), self.vault.root_token());
            let work = transit::Workload { count: n, batch: TRANSIT_BATCH, plaintext_len };
            let run = transit::measure_rewrap(&client, addr, token, "transit", &key, work)
                .await
                .context("measuring OpenBao Transit rewrap")?;
            report.record(setup, "OpenBao", n, run.ciphertexts, run.rewrap, None);
        }
        Ok(())
    }

    /// `rotor validate` on a 10-wallet SQLite database, compiled component cached: the fastest
    /// of five runs, and a Vault KV read alone for comparison.
    async fn startup(&self) -> anyhow::Result<report::Startup> {
        let url = self.sqlite_database(10).await?;
        let key_path = "bench/startup/encryption-key";
        let kek = Kek::generate()?;
        self.store_first_kek(key_path, &kek).await?;
        let database = Database::connect(&url, WalletTable::default()).await?;
        enroll_legacy(&database, &kek, 10).await?;
        let mut runs = Vec::new();
        for _ in 0..6 {
            let started = Instant::now();
            let _: Reported = self.rotor(&url, key_path, &["validate"]).await?;
            runs.push(started.elapsed());
        }
        // The first run may compile the component into the cache.
        let command = runs[1..].iter().min().copied().unwrap_or_default();
        let vault = self.vault_client()?;
        let mut reads = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            vault.read(key_path, None).await?;
            reads.push(started.elapsed());
        }
        let kv_read = reads.iter().min().copied().unwrap_or_default();
        Ok(report::Startup { command_ms: ms(command), vault_read_ms: ms(kv_read), vault_reads: 1 })
    }

    async fn store_first_kek(&self, key_path: &str, kek: &Kek) -> anyhow::Result<()> {
        let data = BTreeMap::from([("key".to_owned(), kek.to_hex())]);
        self.vault_client()?.write(key_path, &data, Some(0)).await?;
        Ok(())
    }

    /// The current KEK and its version.
    async fn current_kek(&self, key_path: &str) -> anyhow::Result<(u32, Kek)> {
        let secret = self.vault_client()?.read(key_path, None).await?.context("the bench's KEK vanished")?;
        let hex = secret.data.get("key").context("the bench's KEK has no field `key`")?;
        Ok((u32::try_from(secret.version)?, Kek::from_hex(hex)?))
    }

    /// Runs the rotor binary as a user would, and reads its JSON report.
    async fn rotor<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        key_path: &str,
        args: &[&str],
    ) -> anyhow::Result<T> {
        let mut command = tokio::process::Command::new(self.rotor);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if self.verbose > 0 {
            command.arg(format!("-{}", "v".repeat(self.verbose.into()))).stderr(Stdio::inherit());
        }
        // `spawn` rather than `output`, which would capture stderr whatever was asked.
        let output = command
            .args(args)
            .args(["--json", "--database-url", url, "--key-path", key_path])
            .env("VAULT_ADDR", self.vault.addr())
            .env("VAULT_TOKEN", self.vault.root_token())
            .env_remove("ROTOR_CONFIG")
            .env_remove("VAULT_NAMESPACE")
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .spawn()?
            .wait_with_output()
            .await?;
        let shown = format!("rotor {} on {}", args.join(" "), redact_url(url));
        if !output.status.success() {
            bail!("{shown} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        serde_json::from_slice(&output.stdout).with_context(|| format!("{shown} printed no JSON report"))
    }
}

/// The `rotor` binary the bench measures: the one in the same folder as this `rotor-bench`, as
/// cargo builds them (target/release/) and as `rotor bench` finds `rotor-bench`.
pub fn rotor_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the rotor-bench binary")?;
    let rotor = exe.with_file_name("rotor");
    if !rotor.is_file() {
        bail!(
            "rotor-bench measures the rotor binary next to it, and there is none in {}: build it \
             with `cargo build --release -p rotor` (`cargo build --release --workspace` builds \
             both)",
            exe.parent().map_or_else(|| exe.display().to_string(), |dir| dir.display().to_string())
        );
    }
    Ok(rotor)
}

/// What the bench reads of `rotor rotate --json` and `rotor validate --json`.
#[derive(Deserialize)]
struct Reported {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    rotated: u64,
    #[serde(default)]
    failed: u64,
    duration_ms: u64,
    peak_rss_bytes: Option<u64>,
}

impl Reported {
    fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms.max(1))
    }
}

impl BenchReport {
    /// Adds what a rotor command reported: `handled` wallets in its own time, its peak RSS.
    fn record_run(&mut self, setup: Setup, store: &str, size: u64, handled: u64, run: &Reported) {
        self.record(setup, store, size, handled, run.duration(), run.peak_rss_bytes);
    }
}

fn check_moved(reported: &Reported, n: u64, what: &str) -> anyhow::Result<()> {
    if reported.rotated != n || reported.failed != 0 {
        bail!(
            "{what} moved {} of {n} wallets ({} failed): the figures would mean nothing",
            reported.rotated,
            reported.failed
        );
    }
    Ok(())
}

/// On PostgreSQL, clears the dead row versions the previous rotation left (each rewrite of a
/// row leaves one), so that two rotations compared start from the same table rather than the
/// second paying for the first's garbage, or for an autovacuum running beside it.
async fn settle(url: &str, store: Store) -> anyhow::Result<()> {
    if store == Store::Postgres {
        let mut connection = sqlx::PgConnection::connect(url).await?;
        sqlx::query("VACUUM ANALYZE wallets")
            .execute(&mut connection)
            .await
            .context("vacuuming the wallets")?;
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `n` Fabric identities sealed natively in the seed's legacy layout under `kek`, as the seed
/// script left them, inserted 10,000 at a time so that memory stays flat whatever `n`.
async fn enroll_legacy(database: &Database, kek: &Kek, n: u64) -> anyhow::Result<()> {
    const CHUNK: u64 = 10_000;
    let mut next = 0;
    while next < n {
        let upto = (next + CHUNK).min(n);
        let rows = (next..upto)
            .map(|i| {
                let id = format!("wallet-{i:08}");
                let ciphertext = rotor_codec::seal_legacy(kek, &fabric_identity(&id))?;
                Ok(WalletRow { id, ciphertext })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        database.put_many(&rows).await?;
        next = upto;
    }
    Ok(())
}

/// The PostgreSQL server the bench creates its databases on.
struct PostgresServer {
    url: String,
    created: std::sync::Mutex<Vec<String>>,
}

impl PostgresServer {
    async fn connect(url: &str) -> anyhow::Result<PostgresServer> {
        let connection = sqlx::PgConnection::connect(url).await.with_context(|| {
            format!(
                "the bench needs a PostgreSQL server it may create databases on, and {} did not \
                 answer: start one (`eval \"$(scripts/postgres-for-tests start)\"` starts a throwaway \
                 one) and pass --postgres-url or ROTOR_BENCH_PG_URL",
                redact_url(url)
            )
        })?;
        connection.close().await?;
        Ok(PostgresServer { url: url.to_owned(), created: Default::default() })
    }

    fn name(n: u64) -> String {
        format!("rotor_bench_{}_{n}", std::process::id())
    }

    /// A fresh database with an empty wallet table; returns its URL.
    async fn create_database(&self, n: u64) -> anyhow::Result<String> {
        let name = PostgresServer::name(n);
        let mut admin = sqlx::PgConnection::connect(&self.url).await?;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut admin).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        admin.close().await?;
        self.created.lock().expect("not poisoned").push(name.clone());
        let url = with_database(&self.url, &name);
        let mut connection = sqlx::PgConnection::connect(&url).await?;
        sqlx::query(AssertSqlSafe(WalletTable::default().create_statement()))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        Ok(url)
    }

    async fn drop_database(&self, n: u64) -> anyhow::Result<()> {
        let name = PostgresServer::name(n);
        let mut admin = sqlx::PgConnection::connect(&self.url).await?;
        // The rotor processes are gone, but a pool's connection may linger a moment.
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        self.created.lock().expect("not poisoned").retain(|created| *created != name);
        Ok(())
    }

    /// Drops whatever a failed run left behind.
    async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.created.lock().expect("not poisoned"));
        for name in names {
            if let Some(n) = name.rsplit('_').next().and_then(|n| n.parse().ok())
                && let Err(e) = self.drop_database(n).await
            {
                tracing::warn!("could not drop the bench's database {name}: {e}");
            }
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("rotor-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "b"), "postgres://u@h:5432/b");
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "b"),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
    }
}
