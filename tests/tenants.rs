//! A KEK per tenant (`[tenants]` in rotor.toml, `--tenant`), against a real OpenBao on SQLite
//! and PostgreSQL: three tenants share one table; rotating one changes only that tenant's rows
//! and KEK; a list or `all` rotates each in turn; a row moved to another tenant does not open
//! there, is reported by id and left untouched; and no command acts on a tenant it was not
//! given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rotor::store::{Database, WalletTable};
use rotor_codec::Kek;
use rotor_testkit::{
    Kind, Wallets, World, assert_fails_saying, json, json_success, legacy_wallets, on_sqlite_and_postgres,
};
use serde_json::{Value, json};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const PER_TENANT: usize = 15;

fn key_path(tenant: &str) -> String {
    format!("ibn/{tenant}/encryption-key")
}

fn tenant_table(tenant: &str) -> WalletTable {
    WalletTable::default().for_tenant("tenant", tenant).unwrap()
}

/// Three tenants, each with its first KEK stored by `rotor --tenant T migrate-kek` and
/// [`PER_TENANT`] legacy wallets under it in the one `wallets` table; the settings file.
struct Tenants {
    world: World,
    config: PathBuf,
    wallets: BTreeMap<&'static str, Wallets>,
}

impl Tenants {
    async fn new(kind: Kind) -> Tenants {
        let world = World::new(kind).await;
        world.db.execute("ALTER TABLE wallets ADD COLUMN tenant TEXT").await;
        let config = world.scratch.join("rotor.toml");
        std::fs::write(
            &config,
            "[tenants]\nkey-path = \"ibn/{tenant}/encryption-key\"\ncolumn = \"tenant\"\n\
             list = [\"acme\", \"globex\", \"initech\"]\n",
        )
        .unwrap();
        let mut tenants = Tenants { world, config, wallets: BTreeMap::new() };
        for tenant in TENANTS {
            let kek = Kek::generate().unwrap();
            let out = tenants
                .rotor(Some(tenant))
                .args(["migrate-kek", "--from-env", "TENANT_KEK"])
                .env("TENANT_KEK", kek.to_hex().as_str())
                .output()
                .unwrap();
            rotor_testkit::assert_success(&out);
            let (wallets, mut rows) = legacy_wallets(&kek, PER_TENANT);
            for row in &mut rows {
                row.id = format!("{tenant}-{}", row.id);
            }
            let wallets =
                wallets.into_iter().map(|(id, plaintext)| (format!("{tenant}-{id}"), plaintext)).collect();
            tenants.store(tenant).await.put_many(&rows).await.unwrap();
            tenants.wallets.insert(tenant, wallets);
        }
        tenants
    }

    /// `rotor --config rotor.toml [--tenant T]`.
    fn rotor(&self, tenant: Option<&str>) -> Command {
        let mut rotor = self.world.rotor();
        rotor.arg("--config").arg(&self.config);
        if let Some(tenant) = tenant {
            rotor.args(["--tenant", tenant]);
        }
        rotor
    }

    async fn store(&self, tenant: &str) -> Database {
        Database::connect(&self.world.db.url, tenant_table(tenant)).await.unwrap()
    }

    /// Every row of `tenant`, by id, as stored.
    async fn rows(&self, tenant: &str) -> BTreeMap<String, String> {
        let rows = self.store(tenant).await.scan(None, 10_000).await.unwrap();
        rows.into_iter().map(|row| (row.id, row.ciphertext)).collect()
    }

    /// The tenant's current KEK version in Vault.
    async fn kek_version(&self, tenant: &str) -> u64 {
        self.world.vault_client().read(&key_path(tenant), None).await.unwrap().unwrap().version
    }

    /// KEK `version` of `tenant`, from its archive.
    async fn kek(&self, tenant: &str, version: u32) -> Kek {
        let hex = self.world.kv_field(&format!("{}-archive/v{version}", key_path(tenant)), "key").await;
        Kek::from_hex(&hex).unwrap()
    }

    /// Every wallet of `tenant` is an envelope under its KEK `version` and opens to what was stored.
    async fn assert_opens_under(&self, tenant: &str, version: u32) {
        let rows = self.rows(tenant).await;
        let kek = self.kek(tenant, version).await;
        assert_eq!(rows.len(), self.wallets[tenant].len(), "{tenant}: rows appeared or vanished");
        for (id, plaintext) in &self.wallets[tenant] {
            let ciphertext = &rows[id];
            assert!(ciphertext.starts_with(&format!("rotor:v{version}:")), "{id} is not on v{version}");
            let opened = rotor_codec::open(&kek, id, ciphertext).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(opened.as_slice(), plaintext.as_slice(), "{id}");
        }
    }
}

async fn rotating_one_tenant_touches_no_other(kind: Kind) {
    let tenants = Tenants::new(kind).await;
    for tenant in TENANTS {
        let validated = json_success(tenants.rotor(Some(tenant)).arg("validate"));
        assert_eq!(
            (validated["total"].as_u64(), validated["invalid"].as_u64()),
            (Some(15), Some(0)),
            "{tenant}"
        );
    }
    let before: BTreeMap<&str, _> =
        all_rows(&tenants).await.into_iter().filter(|(tenant, _)| *tenant != "acme").collect();

    let rotated = json_success(tenants.rotor(Some("acme")).arg("rotate"));
    assert_eq!(
        (rotated["to_version"].as_u64(), rotated["total"].as_u64()),
        (Some(2), Some(PER_TENANT as u64))
    );
    assert_eq!(rotated["failed"], 0, "{rotated}");
    tenants.assert_opens_under("acme", 2).await;
    assert_eq!(tenants.kek_version("acme").await, 2);
    for tenant in ["globex", "initech"] {
        assert_eq!(tenants.kek_version(tenant).await, 1, "{tenant}'s KEK changed");
        assert_eq!(tenants.rows(tenant).await, before[tenant], "{tenant}'s rows changed");
    }
    let keys = json_success(tenants.rotor(Some("acme")).arg("keys"));
    assert_eq!(keys["key_path"], "secret/ibn/acme/encryption-key");
    assert_eq!(keys["versions"][0]["rows"], json!({ "wallets": PER_TENANT }), "{keys}");
    let status = json_success(tenants.rotor(Some("globex")).arg("status"));
    assert_eq!(status["key_versions"], json!({ "legacy": PER_TENANT }), "{status}");

    // A list rotates each tenant in turn, in one document.
    let (out, both) = json(tenants.rotor(Some("globex,initech")).arg("rotate"));
    rotor_testkit::assert_success(&out);
    for tenant in ["globex", "initech"] {
        assert_eq!(both["tenants"][tenant]["to_version"], 2, "{both}");
        tenants.assert_opens_under(tenant, 2).await;
    }
    assert_eq!(both["tenants"].as_object().unwrap().len(), 2, "{both}");
    assert_eq!(tenants.kek_version("acme").await, 2, "acme rotated again");

    // The tenants' v2 keys differ: each is its own KEK.
    let keks =
        [tenants.kek("acme", 2).await, tenants.kek("globex", 2).await, tenants.kek("initech", 2).await];
    assert!(keks[0] != keks[1] && keks[1] != keks[2] && keks[0] != keks[2]);
}

/// Every tenant's rows, by tenant.
async fn all_rows(tenants: &Tenants) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    for tenant in TENANTS {
        all.insert(tenant, tenants.rows(tenant).await);
    }
    all
}

async fn a_row_moved_across_tenants_does_not_open(kind: Kind) {
    let tenants = Tenants::new(kind).await;
    let (out, all) = json(tenants.rotor(Some("all")).arg("rotate"));
    rotor_testkit::assert_success(&out);
    assert_eq!(all["tenants"].as_object().unwrap().len(), 3, "{all}");

    // acme's wallet, its row relabelled as globex's: same id, same ciphertext, other tenant.
    let moved = "acme-user-00003@IBNMSP";
    let ciphertext = tenants.rows("acme").await[moved].clone();
    tenants.world.db.execute(&format!("UPDATE wallets SET tenant = 'globex' WHERE id = '{moved}'")).await;

    let out = tenants.rotor(Some("globex")).args(["open", moved]).output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty(), "globex opened acme's wallet");
    let out = tenants.rotor(Some("acme")).args(["open", moved]).output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty(), "acme still reads a row now globex's");
    let (out, validated) = json(tenants.rotor(Some("globex")).arg("validate"));
    assert_eq!(out.status.code(), Some(3), "{validated}");
    assert_eq!(
        (validated["total"].as_u64(), validated["valid"].as_u64()),
        (Some(16), Some(15)),
        "{validated}"
    );
    assert_eq!(validated["invalid_ids"], json!([moved]), "{validated}");

    // rotate --tenant all: acme and initech move; globex moves all but the stranger, which is
    // named and left exactly as it was.
    let (out, all) = json(tenants.rotor(Some("all")).arg("rotate"));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(all["tenants"]["acme"]["total"], PER_TENANT - 1, "{all}");
    assert_eq!(all["tenants"]["globex"]["failed"], 1, "{all}");
    assert_eq!(all["tenants"]["initech"]["failed"], 0, "{all}");
    assert_eq!(tenants.rows("globex").await[moved], ciphertext, "the moved row was rewritten");

    // A seal for acme under an id that is now globex's takes nothing over.
    let mut seal = tenants
        .rotor(Some("acme"))
        .args(["seal", moved])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    seal.stdin.take().unwrap().write_all(b"taken over").unwrap();
    let out = seal.wait_with_output().unwrap();
    assert_fails_saying(&out, 1, &[moved, "not tenant \"acme\"'s", "left as it is"]);
    assert_eq!(tenants.rows("globex").await[moved], ciphertext);
}

async fn no_command_guesses_the_tenant(kind: Kind) {
    let tenants = Tenants::new(kind).await;
    let rows = all_rows(&tenants).await;
    let refusals: [(Option<&str>, &[&str], &[&str]); 4] = [
        (None, &["rotate"], &["pass --tenant NAME", "acme, globex, initech"]),
        (Some("acme,globex"), &["validate"], &["only `rotor rotate` acts on several tenants"]),
        (Some("acmee"), &["rotate"], &["tenant \"acmee\" is not in [tenants] list"]),
        (Some("acme,acmee"), &["rotate"], &["tenant \"acmee\" is not in [tenants] list"]),
    ];
    for (tenant, command, phrases) in refusals {
        let out = tenants.rotor(tenant).args(command).output().unwrap();
        assert_fails_saying(&out, 1, phrases);
    }
    let out = tenants.rotor(Some("acme")).args(["--key-path", "ibn/other", "rotate"]).output().unwrap();
    assert_fails_saying(&out, 1, &["--key-path", "--tenant"]);
    let out = tenants.world.rotor().args(["--tenant", "acme", "validate"]).output().unwrap();
    assert_fails_saying(&out, 1, &["no [tenants]"]);
    assert_eq!(all_rows(&tenants).await, rows, "a refused command changed rows");
    for tenant in TENANTS {
        assert_eq!(tenants.kek_version(tenant).await, 1);
    }
}

/// A second table whose tenant column has a name of its own, as an application's JWT signing
/// keys would: `tenant-column` in each `[[target]]`, no `[tenants] column`.
async fn each_target_names_its_own_tenant_column(kind: Kind) {
    let tenants = Tenants::new(kind).await;
    tenants
        .world
        .db
        .execute("CREATE TABLE jwt_keys (key_id TEXT PRIMARY KEY, sealed TEXT NOT NULL, org TEXT)")
        .await;
    std::fs::write(
        &tenants.config,
        "[tenants]\nkey-path = \"ibn/{tenant}/encryption-key\"\nlist = [\"acme\", \"globex\", \"initech\"]\n\
         [[target]]\ntable = \"wallets\"\ntenant-column = \"tenant\"\n\
         [[target]]\ntable = \"jwt_keys\"\nid-column = \"key_id\"\nciphertext-column = \"sealed\"\n\
         tenant-column = \"org\"\n",
    )
    .unwrap();
    let jwt = |tenant: &str| {
        WalletTable::new("jwt_keys", "key_id", "sealed").unwrap().for_tenant("org", tenant).unwrap()
    };
    let mut jwt_keys = BTreeMap::new();
    for tenant in TENANTS {
        let kek = Kek::from_hex(&tenants.world.kv_field(&key_path(tenant), "key").await).unwrap();
        let (keys, mut rows) = legacy_wallets(&kek, 5);
        for row in &mut rows {
            row.id = format!("{tenant}-jwt-{}", row.id);
        }
        Database::connect(&tenants.world.db.url, jwt(tenant)).await.unwrap().put_many(&rows).await.unwrap();
        let keys: Wallets =
            keys.into_iter().map(|(id, plaintext)| (format!("{tenant}-jwt-{id}"), plaintext)).collect();
        jwt_keys.insert(tenant, keys);
    }
    let jwt_rows = async |tenant: &str| -> BTreeMap<String, String> {
        let db = Database::connect(&tenants.world.db.url, jwt(tenant)).await.unwrap();
        db.scan(None, 1000).await.unwrap().into_iter().map(|row| (row.id, row.ciphertext)).collect()
    };
    let globex_before = (tenants.rows("globex").await, jwt_rows("globex").await);

    // One rotation of acme moves acme's rows of both tables, and no other tenant's.
    let rotated = json_success(tenants.rotor(Some("acme")).arg("rotate"));
    assert_eq!((rotated["to_version"].as_u64(), rotated["total"].as_u64()), (Some(2), Some(20)), "{rotated}");
    tenants.assert_opens_under("acme", 2).await;
    let kek = tenants.kek("acme", 2).await;
    let rows = jwt_rows("acme").await;
    assert_eq!(rows.len(), 5);
    for (id, plaintext) in &jwt_keys["acme"] {
        assert!(rows[id].starts_with("rotor:v2:"), "{id}");
        assert_eq!(rotor_codec::open(&kek, id, &rows[id]).unwrap().as_slice(), plaintext.as_slice(), "{id}");
    }
    assert_eq!(
        (tenants.rows("globex").await, jwt_rows("globex").await),
        globex_before,
        "globex's rows changed"
    );
    assert_eq!(tenants.kek_version("globex").await, 1);
    let keys = json_success(tenants.rotor(Some("acme")).arg("keys"));
    assert_eq!(keys["versions"][0]["rows"], json!({ "wallets": PER_TENANT, "jwt_keys": 5 }), "{keys}");
    // The journal records each table's own tenant column.
    let history = json_success(tenants.rotor(Some("acme")).arg("history"));
    let targets = history[0]["targets"].to_string();
    assert!(targets.contains("tenant=acme") && targets.contains("org=acme"), "{history}");
}

/// `[tenants] derive-from`: each tenant's KEK versions derived from one root KEK with
/// HKDF-SHA256 (a fresh salt per version, the tenant's name as context). Vault holds the root
/// and, at each tenant's key path, only the records that derive its versions.
async fn tenant_keks_derive_from_one_root(kind: Kind) {
    const ROOT: &str = "ibn/tenant-root";
    let tenants = Tenants::new(kind).await;
    let file = std::fs::read_to_string(&tenants.config).unwrap();
    std::fs::write(
        &tenants.config,
        file.replace("[tenants]\n", &format!("[tenants]\nderive-from = \"{ROOT}\"\n")),
    )
    .unwrap();
    let vault = tenants.world.vault_client();
    let record = async |tenant: &str, version: u32| {
        let path = format!("{}-archive/v{version}", key_path(tenant));
        let secret = vault.read(&path, None).await.unwrap().unwrap_or_else(|| panic!("no {path}"));
        let field = |name: &str| secret.data.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(field("key"), None, "{path} holds a key: a derived KEK must never be stored");
        assert_eq!(field("derive").as_deref(), Some("hkdf-sha256"), "{path}");
        assert_eq!(field("root-path").as_deref(), Some(ROOT), "{path}");
        let salt = hex::decode(field("salt").unwrap()).unwrap();
        (field("root-version").unwrap().parse::<u32>().unwrap(), salt)
    };
    // The key a record stands for, derived here from the root's archived version.
    let derived = async |tenant: &str, version: u32| -> Kek {
        let (root_version, salt) = record(tenant, version).await;
        let root = tenants.world.kv_field(&format!("{ROOT}-archive/v{root_version}"), "key").await;
        let info = [b"rotor tenant KEK v1\0".as_slice(), tenant.as_bytes()].concat();
        Kek::from_hex(&root).unwrap().derive(&salt, &info)
    };
    let opens_under = async |tenant: &str, version: u32, kek: &Kek| {
        let rows = tenants.rows(tenant).await;
        assert_eq!(rows.len(), PER_TENANT, "{tenant}");
        for (id, plaintext) in &tenants.wallets[tenant] {
            assert!(rows[id].starts_with(&format!("rotor:v{version}:")), "{id} is not on v{version}");
            let opened = rotor_codec::open(kek, id, &rows[id]).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(opened.as_slice(), plaintext.as_slice(), "{id}");
        }
    };
    let before = all_rows(&tenants).await;

    // acme's first derived version: the root's first version is stored with it.
    let rotated = json_success(tenants.rotor(Some("acme")).arg("rotate"));
    assert_eq!((rotated["to_version"].as_u64(), rotated["failed"].as_u64()), (Some(2), Some(0)), "{rotated}");
    assert_eq!(record("acme", 2).await.0, 1);
    assert_eq!(vault.read(ROOT, None).await.unwrap().unwrap().version, 1);
    let acme_v2 = derived("acme", 2).await;
    opens_under("acme", 2, &acme_v2).await;
    for tenant in ["globex", "initech"] {
        assert_eq!(tenants.rows(tenant).await, before[tenant], "{tenant}'s rows changed");
        assert_eq!(tenants.kek_version(tenant).await, 1, "{tenant}'s KEK changed");
    }
    // rotor reads what it derived: status and open, through the host's key ring.
    let status = json_success(tenants.rotor(Some("acme")).arg("status"));
    assert_eq!(status["key_versions"], json!({ "2": PER_TENANT }), "{status}");
    let id = "acme-user-00001@IBNMSP";
    let out = tenants.rotor(Some("acme")).args(["open", id]).output().unwrap();
    rotor_testkit::assert_success(&out);
    assert_eq!(out.stdout, tenants.wallets["acme"][id].as_slice());

    // globex derives from the same root version with a salt of its own: another key.
    json_success(tenants.rotor(Some("globex")).arg("rotate"));
    let globex_v2 = derived("globex", 2).await;
    opens_under("globex", 2, &globex_v2).await;
    assert_ne!(acme_v2, globex_v2);
    assert_ne!(record("acme", 2).await.1, record("globex", 2).await.1, "two tenants drew one salt");
    // Its row labelled acme's does not open as acme's: acme's KEKs are not globex's.
    let moved = "globex-user-00002@IBNMSP";
    tenants.world.db.execute(&format!("UPDATE wallets SET tenant = 'acme' WHERE id = '{moved}'")).await;
    let out = tenants.rotor(Some("acme")).args(["open", moved]).output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty(), "acme opened globex's wallet");
    tenants.world.db.execute(&format!("UPDATE wallets SET tenant = 'globex' WHERE id = '{moved}'")).await;

    // A new root, then every tenant under it: one root version for all three.
    let (out, all) = json(tenants.rotor(Some("all")).args(["rotate", "--new-root"]));
    rotor_testkit::assert_success(&out);
    assert!(all["new_root"].as_str().unwrap().contains("stored v2 at ibn/tenant-root"), "{all}");
    assert_eq!(vault.read(ROOT, None).await.unwrap().unwrap().version, 2);
    let keys = json_success(tenants.rotor(Some("acme")).arg("keys"));
    let roots: Vec<_> =
        keys["versions"].as_array().unwrap().iter().map(|v| v["derived_from"].clone()).collect();
    assert_eq!(roots, [json!("ibn/tenant-root v2"), json!("ibn/tenant-root v1"), Value::Null], "{keys}");
    let expected = [("acme", 3), ("globex", 3), ("initech", 2)];
    for (tenant, version) in expected {
        assert_eq!(all["tenants"][tenant]["to_version"], version, "{all}");
        assert_eq!(record(tenant, version).await.0, 2, "{tenant} v{version}");
        opens_under(tenant, version, &derived(tenant, version).await).await;
    }

    // Destroying a derived version destroys its record; the root stays for the others.
    let pruned = json_success(tenants.rotor(Some("acme")).args(["prune", "--keep", "1"]));
    assert_eq!(pruned["destroyed"], json!([1, 2]), "{pruned}");
    assert!(vault.read(&format!("{}-archive/v2", key_path("acme")), None).await.unwrap().is_none());
    assert_eq!(vault.read(ROOT, None).await.unwrap().unwrap().version, 2);
    opens_under("globex", 3, &derived("globex", 3).await).await;

    // Without derive-from, a derived version is refused by name, and nothing changes.
    std::fs::write(&tenants.config, file).unwrap();
    let rows = all_rows(&tenants).await;
    let out = tenants.rotor(Some("acme")).args(["open", id]).output().unwrap();
    assert_fails_saying(&out, 1, &["derived from the root KEK at ibn/tenant-root", "derive-from"]);
    assert_eq!(all_rows(&tenants).await, rows);
}

on_sqlite_and_postgres!(
    tenant_keks_derive_from_one_root,
    each_target_names_its_own_tenant_column,
    rotating_one_tenant_touches_no_other,
    a_row_moved_across_tenants_does_not_open,
    no_command_guesses_the_tenant,
);
