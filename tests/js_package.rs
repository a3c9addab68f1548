//! The npm package `@rotor/codec` (bindings/js) against rotor itself, over a real OpenBao: wallets
//! sealed by `rotor seal` open in Node and wallets sealed in Node open with `rotor open`; legacy
//! wallets open; the package's Vault loader finds every KEK version after `rotor rotate`; and the
//! example WalletService (examples/wallet-service) reads any version while rotor rotates.
//!
//! The checks themselves are node:test files, which this test runs with `node --test` after
//! building the package; Node.js (>= 20) must be installed, and scripts/setup installs the npm
//! dependencies.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rotor::demo::wallets::{fabric_identity, legacy_wallet};
use rotor_codec::Kek;
use rotor_testkit::{Kind, Wallets, World, assert_ran, assert_success, json_success, text};
use serde_json::{Value, json};
use zeroize::Zeroizing;

const NEEDS_NODE: &str = "Node.js (>= 20, with npm) is needed to test the npm package in bindings/js: \
     install it (Debian/Ubuntu: apt-get install nodejs npm; or https://nodejs.org), then run scripts/setup";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The tests of this file share bindings/js's build output, which each one rebuilds (build.sh
/// starts by deleting it): one at a time.
static PACKAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds the package and the example (component, jco bindings, tsc); cheap when nothing changed.
/// Hold [`PACKAGE`] while the build is used.
fn build() {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|out| out.status.success()), "{NEEDS_NODE}");
    for script in ["bindings/js/build.sh", "examples/wallet-service/build.sh"] {
        let out = Command::new(repo().join(script)).output().unwrap();
        assert_ran(script, &out);
    }
}

/// `node --test FILE` in `dir`, with this world's Vault and database and the files it exchanges
/// with this test.
fn node_test(world: &World, dir: &str, file: &str, env: &[(&str, &Path)]) {
    let mut command = Command::new("node");
    command
        .current_dir(repo().join(dir))
        .args(["--test", file])
        .env("VAULT_ADDR", world.vault.addr())
        .env("VAULT_TOKEN", world.vault.root_token())
        .env("DATABASE_URL", &world.db.url)
        .env("ROTOR_BIN", env!("CARGO_BIN_EXE_rotor"))
        .env("HOME", &world.scratch)
        .env_remove("VAULT_NAMESPACE");
    for (name, path) in env {
        command.env(name, path);
    }
    assert_ran(&format!("node --test {dir}/{file}"), &command.output().unwrap());
}

fn rotor_seal(world: &World, id: &str, plaintext: &[u8]) {
    let mut child =
        world.rotor().args(["seal", id]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(plaintext).unwrap();
    assert_success(&child.wait_with_output().unwrap());
}

/// Wallets in every state an application may meet, written to a fixture file for the Node tests
/// (`{ current, wallets: [{ id, ciphertext, plaintext_base64 }] }`): legacy ones under the first
/// KEK and under a seed script archive, and envelopes of v1, v2 and v3, captured before each of
/// two rotations. Returns the file and the plaintexts of the wallets now in the table.
async fn wallets_of_every_version(world: &World) -> (PathBuf, Wallets) {
    let db = world.db.connect().await;

    // The seed's era: its script archived an older KEK at <key-path>-archive/<unix-ms>, and the
    // application wrote legacy wallets under that key and under the one rotor then imports.
    let seed_kek = Kek::generate().unwrap();
    let data = BTreeMap::from([("key".to_owned(), seed_kek.to_hex())]);
    world.vault_client().write("ibn/encryption-key-archive/1768363055263", &data, None).await.unwrap();
    let first = Kek::generate().unwrap();
    world.migrate_kek(&first);
    let mut plaintexts = world.enroll_legacy(&first, 3).await;
    let old = b"a wallet from before the seed's own rotation".to_vec();
    db.put("seed-era@IBNMSP", &legacy_wallet(&seed_kek, &old)).await.unwrap();
    plaintexts.insert("seed-era@IBNMSP".into(), old);

    let mut wallets = Vec::new();
    for version in 1..=3 {
        let id = format!("sealed-by-rotor-v{version}@IBNMSP");
        let plaintext = fabric_identity(&id);
        rotor_seal(world, &id, &plaintext);
        plaintexts.insert(id, plaintext);
        for (id, ciphertext) in world.rows().await {
            wallets.push(json!({ "id": id, "ciphertext": ciphertext }));
        }
        if version < 3 {
            let _ = json_success(world.rotor().arg("rotate"));
        }
    }
    for wallet in &mut wallets {
        let plaintext = &plaintexts[wallet["id"].as_str().unwrap()];
        wallet["plaintext_base64"] = STANDARD.encode(plaintext).into();
    }
    let fixture = world.scratch.join("wallets.json");
    std::fs::write(&fixture, serde_json::to_vec(&json!({ "current": 3, "wallets": wallets })).unwrap())
        .unwrap();
    (fixture, plaintexts)
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_rotor_read_each_others_wallets() {
    let _package = PACKAGE.lock().await;
    build();
    let world = World::new(Kind::Sqlite).await;
    let db = world.db.connect().await;
    let (fixture, _) = wallets_of_every_version(&world).await;
    let sealed_by_node = world.scratch.join("sealed-by-node.json");

    node_test(
        &world,
        "bindings/js",
        "test/rotor-interop.test.js",
        &[("ROTOR_JS_FIXTURE", &fixture), ("ROTOR_JS_OUT", &sealed_by_node)],
    );

    // What Node sealed, stored as an application would, opens with rotor.
    let sealed: Vec<Value> = serde_json::from_slice(&std::fs::read(&sealed_by_node).unwrap()).unwrap();
    assert!(!sealed.is_empty());
    for wallet in &sealed {
        let id = wallet["id"].as_str().unwrap();
        db.put(id, wallet["ciphertext"].as_str().unwrap()).await.unwrap();
        let out = world.rotor().args(["open", id]).output().unwrap();
        assert_success(&out);
        let expected = Zeroizing::new(STANDARD.decode(wallet["plaintext_base64"].as_str().unwrap()).unwrap());
        assert_eq!(out.stdout, *expected, "{id}");
    }
    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["invalid"], 0, "{report:#}");

    // The example service, running while rotor rotates under it.
    node_test(&world, "examples/wallet-service", "test/wallet-service.test.js", &[]);
}

/// An application's token with the policy `rotor policy app` prints alone (and one with the seed's plain
/// `read` on the key path): `Keyring.fromVault()` loads every KEK version after two rotations,
/// opens every wallet, loads a KEK staged by `rotor rotate --stage`, and Vault refuses it every
/// write (bindings/js/test/app-policy.test.js).
/// Nothing in Vault or the table changed but what the test itself did (KV version 1 destroyed,
/// as KV's max_versions would): the KEKs are those rotor wrote and every wallet still opens.
#[tokio::test(flavor = "multi_thread")]
async fn app_policy_reads_every_version_and_writes_nothing() {
    let _package = PACKAGE.lock().await;
    build();
    let world = World::new(Kind::Sqlite).await;
    let (fixture, plaintexts) = wallets_of_every_version(&world).await;
    let keks_before: Vec<String> =
        archived_keks(&world).await.iter().map(|kek| kek.to_hex().to_string()).collect();

    let policy = world.rotor().args(["policy", "app"]).output().unwrap();
    assert_success(&policy);
    let policy_file = world.scratch.join("rotor-app.hcl");
    std::fs::write(&policy_file, &policy.stdout).unwrap();
    let env = [("ROTOR_JS_FIXTURE", fixture.as_path()), ("ROTOR_APP_POLICY_FILE", policy_file.as_path())];
    node_test(&world, "bindings/js", "test/app-policy.test.js", &env);

    let vault = world.vault_client();
    let current = vault.read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 3, "the app changed the current KEK");
    assert_eq!(current.data["key"].as_str(), keks_before[2]);
    let keks_after: Vec<String> =
        archived_keks(&world).await.iter().map(|kek| kek.to_hex().to_string()).collect();
    assert_eq!(keks_after, keks_before, "an archived KEK changed");
    assert!(vault.read("ibn/encryption-key-archive/v9", None).await.unwrap().is_none(), "the app wrote v9");
    // The node test staged v4 through rotor; the app token could not change it.
    assert_eq!(world.kv_field("ibn/encryption-key-staged", "kek_version").await, "4");
    assert_eq!(vault.read("ibn/encryption-key-staged", None).await.unwrap().unwrap().version, 1);
    rotor_testkit::assert_every_wallet_opens(&world, &plaintexts).await;
    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["invalid"], 0, "{report:#}");
}

/// Tenants whose KEKs rotor derives from one root (`[tenants] derive-from`): acme's application,
/// with the token the policy `rotor --tenant acme policy app` prints, loads acme's KEKs with
/// `{ tenant: 'acme' }` and derives each with Node's own HKDF: every acme wallet opens (legacy
/// under the stored v1, envelopes under the derived v2), the derived v3 staged by `rotate
/// --stage` loads, a wallet sealed in Node under v2 opens with `rotor open`, and nothing of
/// globex's opens (bindings/js/test/derived.test.js).
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_app_derives_its_keks_from_the_root() {
    let _package = PACKAGE.lock().await;
    build();
    let world = World::new(Kind::Sqlite).await;
    world.db.execute("ALTER TABLE wallets ADD COLUMN tenant TEXT").await;
    let config = world.scratch.join("rotor.toml");
    std::fs::write(
        &config,
        "[tenants]\nkey-path = \"ibn/{tenant}/encryption-key\"\ncolumn = \"tenant\"\n\
         list = [\"acme\", \"globex\"]\nderive-from = \"ibn/tenant-root\"\n",
    )
    .unwrap();
    let rotor = |tenant: &str| {
        let mut rotor = world.rotor();
        rotor.arg("--config").arg(&config).args(["--tenant", tenant]);
        rotor
    };
    let store = async |tenant: &str| {
        let table = rotor::store::WalletTable::default().for_tenant("tenant", tenant).unwrap();
        rotor::store::Database::connect(&world.db.url, table).await.unwrap()
    };
    let mut fixture = serde_json::Map::new();
    for tenant in ["acme", "globex"] {
        let kek = Kek::generate().unwrap();
        let out = rotor(tenant)
            .args(["migrate-kek", "--from-env", "TENANT_KEK"])
            .env("TENANT_KEK", kek.to_hex().as_str())
            .output()
            .unwrap();
        assert_success(&out);
        let db = store(tenant).await;
        let mut plaintexts = BTreeMap::new();
        for n in 0..3 {
            let id = format!("{tenant}-{n}@IBNMSP");
            let plaintext = fabric_identity(&id);
            db.put(&id, &legacy_wallet(&kek, &plaintext)).await.unwrap();
            plaintexts.insert(id, plaintext);
        }
        let mut wallets = Vec::new();
        for round in 0..2 {
            for row in db.scan(None, 100).await.unwrap() {
                let plaintext = STANDARD.encode(&plaintexts[&row.id]);
                wallets.push(
                    json!({ "id": row.id, "ciphertext": row.ciphertext, "plaintext_base64": plaintext }),
                );
            }
            if round == 0 {
                let rotated = json_success(rotor(tenant).arg("rotate"));
                assert_eq!(rotated["to_version"], 2, "{rotated}");
            }
        }
        fixture.insert(tenant.to_owned(), Value::Array(wallets));
    }
    let staged = json_success(rotor("acme").args(["rotate", "--stage"]));
    assert_eq!(staged["staged"]["version"], 3, "{staged}");
    let fixture_file = world.scratch.join("tenants.json");
    std::fs::write(&fixture_file, serde_json::to_vec(&fixture).unwrap()).unwrap();
    let policy = rotor("acme").args(["policy", "app"]).output().unwrap();
    assert_success(&policy);
    let policy_file = world.scratch.join("rotor-acme-app.hcl");
    std::fs::write(&policy_file, &policy.stdout).unwrap();
    let sealed_by_node = world.scratch.join("sealed-by-node.json");
    let env = [
        ("ROTOR_JS_FIXTURE", fixture_file.as_path()),
        ("ROTOR_APP_POLICY_FILE", policy_file.as_path()),
        ("ROTOR_JS_OUT", sealed_by_node.as_path()),
    ];
    node_test(&world, "bindings/js", "test/derived.test.js", &env);

    let sealed: Vec<Value> = serde_json::from_slice(&std::fs::read(&sealed_by_node).unwrap()).unwrap();
    let acme = store("acme").await;
    for wallet in &sealed {
        let id = wallet["id"].as_str().unwrap();
        acme.put(id, wallet["ciphertext"].as_str().unwrap()).await.unwrap();
        let out = rotor("acme").args(["open", id]).output().unwrap();
        assert_success(&out);
        let expected = Zeroizing::new(STANDARD.decode(wallet["plaintext_base64"].as_str().unwrap()).unwrap());
        assert_eq!(out.stdout, *expected, "{id}");
    }
    let validated = json_success(rotor("acme").arg("validate"));
    assert_eq!(
        (validated["total"].as_u64(), validated["invalid"].as_u64()),
        (Some(4), Some(0)),
        "{validated}"
    );
}

/// KEKs v1 to v3 as rotor archived them.
async fn archived_keks(world: &World) -> Vec<Kek> {
    let mut keks = Vec::new();
    for version in 1..=3 {
        keks.push(world.kek(version).await);
    }
    keks
}

/// `npm pack` builds first (the `prepack` script): the package holds the component, its jco
/// bindings and the compiled wrapper, not only package.json and the README.
#[test]
fn npm_pack_holds_the_built_package() {
    let _package = PACKAGE.blocking_lock();
    let node = Command::new("npm").arg("--version").output();
    assert!(node.is_ok_and(|out| out.status.success()), "{NEEDS_NODE}");
    let dir = repo().join("bindings/js");
    // As a fresh checkout has it: nothing built yet.
    for built in ["dist", "generated"] {
        let _ = std::fs::remove_dir_all(dir.join(built));
    }
    let out = Command::new("npm")
        .current_dir(&dir)
        .args(["pack", "--dry-run", "--json", "--ignore-scripts=false"])
        .output()
        .unwrap();
    assert_ran("npm pack --dry-run", &out);
    let packed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("npm pack --json printed no JSON ({e}):\n{}", text(&out.stdout)));
    let files: Vec<&str> =
        packed[0]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for expected in [
        "package.json",
        "README.md",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/vault.js",
        "generated/codec.js",
        "generated/codec.d.ts",
        "generated/codec.core.wasm",
    ] {
        assert!(files.contains(&expected), "npm pack leaves out {expected}: {files:?}");
    }
    assert!(!files.iter().any(|f| f.starts_with("src/") || f.starts_with("test/")), "{files:?}");
}

/// The package's own tests (`npm test`: docs/FORMAT.md's vectors, what must not open, the
/// Keyring's errors), which need no Vault.
#[test]
fn package_unit_tests_pass() {
    let _package = PACKAGE.blocking_lock();
    build();
    let out = Command::new("node")
        .current_dir(repo().join("bindings/js"))
        .args(["--test", "test/codec.test.js"])
        .output()
        .unwrap();
    assert_ran("node --test bindings/js/test/codec.test.js", &out);
}
