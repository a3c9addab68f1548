//! Several tables, KEKs and environments in one database: the journal records which KEK and
//! which tables each rotation moved, no command acts on another scope's unfinished rotation, no
//! KEK version is destroyed while a row of any table rotor has moved under that KEK still names
//! it, and profiles in one settings file rotate on their own schedules with metrics that do not
//! collide. Real OpenBao, SQLite and PostgreSQL.

use std::collections::BTreeMap;

use rotor::store::{Database, RunIdentity, WalletTable};
use rotor_testkit::fault_proxy::{FaultProxy, Times};
use rotor_testkit::{
    Kind, Wallets, World, assert_every_wallet_opens, assert_fails_saying, json, json_success, legacy_wallets,
    new_rotation, on_sqlite_and_postgres,
};
use serde_json::json;

const WALLETS: usize = 40;
const TOKENS: usize = 12;

/// A second table under the same KEK, with column names of its own, as an application's API
/// tokens would be.
fn tokens_table() -> WalletTable {
    WalletTable::new("api_tokens", "token_id", "sealed").unwrap()
}

/// The flags that point rotor at the tokens table.
const TOKENS_FLAGS: [&str; 6] =
    ["--table", "api_tokens", "--id-column", "token_id", "--ciphertext-column", "sealed"];

/// A world whose KEK v1 seals [`WALLETS`] legacy wallets and [`TOKENS`] legacy tokens.
async fn world_with_two_tables(kind: Kind) -> (World, Wallets, Wallets) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    world.db.execute(&tokens_table().create_statement()).await;
    let (tokens, rows) = legacy_wallets(&kek, TOKENS);
    tokens_db(&world).await.put_many(&rows).await.unwrap();
    (world, wallets, tokens)
}

/// When the KEK's latest finished rotation ended, as `rotor history` says.
fn history_end(world: &World) -> serde_json::Value {
    let history = json_success(world.rotor().arg("history"));
    history[0]["finished_at"].clone()
}

async fn tokens_db(world: &World) -> Database {
    Database::connect(&world.db.url, tokens_table()).await.unwrap()
}

/// Every token's row, by id.
async fn token_rows(world: &World) -> BTreeMap<String, String> {
    let rows = tokens_db(world).await.scan(None, 1000).await.unwrap();
    rows.into_iter().map(|row| (row.id, row.ciphertext)).collect()
}

/// Asserts that every token is in rotor's envelope under KEK `version` and opens to what was
/// stored, with that version as Vault keeps it.
async fn assert_tokens_open_under(world: &World, tokens: &Wallets, version: u32) {
    let rows = token_rows(world).await;
    assert_eq!(rows.len(), tokens.len(), "tokens appeared or vanished");
    let kek = world.kek(version).await;
    for (id, plaintext) in tokens {
        let ciphertext = &rows[id];
        assert!(ciphertext.starts_with(&format!("rotor:v{version}:")), "{id} is not on v{version}");
        let opened = rotor_codec::open(&kek, id, ciphertext).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(opened.as_slice(), plaintext.as_slice(), "{id}");
    }
}

/// The KEK versions rotor's archive holds, as Vault lists them.
async fn archived_versions(world: &World) -> Vec<String> {
    let listed = world
        .vault_admin(reqwest::Method::GET, "secret/metadata/ibn/encryption-key-archive?list=true", json!({}))
        .await;
    let mut keys: Vec<String> =
        listed["data"]["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect();
    keys.sort();
    keys
}

// 1. `prune` for one table keeps what another table under the KEK still needs.

async fn prune_keeps_the_versions_another_table_still_names(kind: Kind) {
    let (world, wallets, tokens) = world_with_two_tables(kind).await;
    let moved = json_success(world.rotor().args(TOKENS_FLAGS).arg("rotate"));
    assert_eq!((moved["to_version"].as_u64(), moved["rotated"].as_u64()), (Some(2), Some(TOKENS as u64)));
    let moved = json_success(world.rotor().arg("rotate"));
    assert_eq!((moved["to_version"].as_u64(), moved["rotated"].as_u64()), (Some(3), Some(WALLETS as u64)));

    // Run for `wallets` alone, prune must still see the tokens on v2: the journal recorded
    // that a rotation of this KEK moved `api_tokens`.
    let v1 = rotor::keyring::fingerprint(&world.kek(1).await);
    let (out, pruned) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(3), "{pruned}");
    assert_eq!(pruned["destroyed"], json!([1]), "{pruned}");
    assert_eq!(pruned["kept"], json!([3]), "{pruned}");
    assert_eq!(pruned["in_use"], json!({ "2": TOKENS }), "{pruned}");
    // Its receipt names the key destroyed and the counts that allowed it, and Vault keeps it.
    let receipt = &pruned["receipt"];
    assert_eq!(
        receipt["versions"],
        json!([{ "version": 1, "fingerprint": v1, "rows": { "wallets": 0, "api_tokens": 0 } }]),
        "{pruned}"
    );
    assert_eq!(receipt["key_path"], json!("secret/ibn/encryption-key"));
    assert!(receipt["vault_identity"].as_str().unwrap().contains("root"), "{receipt}");
    assert!(receipt["destroyed_by"].as_str().unwrap().contains("pid"), "{receipt}");
    assert_eq!(receipt["rotor_version"], json!(env!("CARGO_PKG_VERSION")));
    assert_eq!(receipt["backups_unreadable_before"], history_end(&world), "{receipt}");
    let stored_at = receipt["stored_at"].as_str().unwrap();
    let stored = world
        .vault_client()
        .read(stored_at.strip_prefix("secret/").unwrap(), None)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no receipt at {stored_at}"));
    let mut stored: serde_json::Value = serde_json::from_str(&stored.data["receipt"]).unwrap();
    stored["stored_at"] = receipt["stored_at"].clone();
    assert_eq!(&stored, receipt);
    assert_eq!(archived_versions(&world).await, ["v2", "v3"]);
    assert_tokens_open_under(&world, &tokens, 2).await;
    assert_every_wallet_opens(&world, &wallets).await;

    // The inventory says the same, with counts that match the rows themselves.
    let keys = json_success(world.rotor().arg("keys"));
    assert_eq!(keys["tables"], json!(["wallets", "api_tokens"]), "{keys}");
    let versions = keys["versions"].as_array().unwrap();
    let states: Vec<(u64, &str)> =
        versions.iter().map(|v| (v["version"].as_u64().unwrap(), v["state"].as_str().unwrap())).collect();
    assert_eq!(states, [(3, "current"), (2, "archived"), (1, "destroyed")], "{keys}");
    let mut counted: BTreeMap<u32, BTreeMap<&str, u64>> = BTreeMap::new();
    for (table, rows) in [("wallets", world.rows().await), ("api_tokens", token_rows(&world).await)] {
        for ciphertext in rows.values() {
            let Ok(rotor_codec::Format::Envelope { kek_version }) = rotor_codec::inspect(ciphertext) else {
                panic!("a {table} row is not in rotor's envelope");
            };
            *counted.entry(kek_version).or_default().entry(table).or_default() += 1;
        }
    }
    for version in versions {
        let number = version["version"].as_u64().unwrap() as u32;
        assert_eq!(version["rows"], json!(counted.remove(&number).unwrap_or_default()), "{keys}");
    }
    assert!(counted.is_empty(), "rows name versions the inventory left out: {counted:?}");
    let out = world.rotor().arg("keys").output().unwrap();
    rotor_testkit::assert_success(&out);
    let said = rotor_testkit::text(&out.stdout);
    rotor_testkit::assert_says(
        &said,
        &["KEK secret/ibn/encryption-key (rows counted in: wallets, api_tokens)", "made by rotation #2"],
    );
    for (version, state, rows) in
        [("v3", "current", "wallets 40"), ("v2", "archived", "api_tokens 12"), ("v1", "destroyed", "none")]
    {
        assert!(
            said.lines().any(|l| l.starts_with(version) && l.contains(state) && l.ends_with(rows)),
            "{said}"
        );
    }
    for (index, version, made_by) in
        [(0, 3, Some("rotation #2 by")), (1, 2, Some("rotation #1 by")), (2, 1, None)]
    {
        let listed = &versions[index];
        assert_eq!(
            listed["created_by"].as_str().map(|by| by.starts_with(made_by.unwrap())),
            made_by.map(|_| true)
        );
        let fingerprint = match version {
            1 => None,
            _ => Some(rotor::keyring::fingerprint(&world.kek(version).await)),
        };
        assert_eq!(listed["fingerprint"].as_str(), fingerprint.as_deref(), "{keys}");
    }

    // A metrics page says the same per version and per table, without reading a key.
    let page = world.scratch.join("keys.prom");
    json_success(world.rotor().arg("--metrics-file").arg(&page).arg("status"));
    let samples = page_samples(&page);
    let scope = r#"key_path="secret/ibn/encryption-key",table="wallets""#;
    for (series, value) in [
        (format!(r#"rotor_kek_versions{{{scope},key_version="3",state="current"}}"#), "1"),
        (format!(r#"rotor_kek_versions{{{scope},key_version="2",state="archived"}}"#), "1"),
        (format!(r#"rotor_kek_versions{{{scope},key_version="1",state="destroyed"}}"#), "1"),
        (format!(r#"rotor_kek_version_rows{{{scope},key_version="3",target="wallets"}}"#), "40"),
        (format!(r#"rotor_kek_version_rows{{{scope},key_version="2",target="api_tokens"}}"#), "12"),
    ] {
        assert_eq!(samples.get(&series).map(String::as_str), Some(value), "{series} in {samples:#?}");
    }
    let rows_series = samples.keys().filter(|k| k.starts_with("rotor_kek_version_rows")).count();
    assert_eq!(rows_series, 2, "{samples:#?}");

    // Once the tokens move on, v2 is free; v3 still holds the wallets.
    let moved = json_success(world.rotor().args(TOKENS_FLAGS).arg("rotate"));
    assert_eq!(moved["to_version"].as_u64(), Some(4));
    let (out, pruned) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(3), "{pruned}");
    assert_eq!((&pruned["destroyed"], &pruned["in_use"]), (&json!([2]), &json!({ "3": WALLETS })));
    assert_eq!(archived_versions(&world).await, ["v3", "v4"]);
    assert_tokens_open_under(&world, &tokens, 4).await;
    assert_every_wallet_opens(&world, &wallets).await;

    // A recorded table that is gone might have moved anywhere: nothing is destroyed until the
    // operator says where its rows are.
    world.db.execute("DROP TABLE api_tokens").await;
    let wallets_moved = json_success(world.rotor().arg("rotate"));
    assert_eq!(wallets_moved["to_version"].as_u64(), Some(5));
    let (out, refused) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_fails_saying(
        &out,
        1,
        &["table `api_tokens`", "is not in this database any more", "none is destroyed", "CREATE TABLE"],
    );
    assert!(refused["error"].as_str().unwrap().contains("api_tokens"), "{refused}");
    assert_eq!(archived_versions(&world).await, ["v3", "v4", "v5"]);
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(prune_keeps_the_versions_another_table_still_names);

// 2. An unfinished rotation is finished (or aborted) only with the settings that began it.

async fn an_unfinished_rotation_is_left_to_its_own_settings(kind: Kind) {
    let (world, wallets, tokens) = world_with_two_tables(kind).await;
    // A rotation of `wallets` that crashed before it stored its KEK.
    let who = RunIdentity::this_process("a rotor that crashed".into());
    let db = world.db.connect().await;
    db.migrate().await.unwrap();
    let crashed = db.begin_rotation(&new_rotation(WALLETS as i64, "envelope", None), &who).await.unwrap();
    assert_eq!(crashed.targets.as_deref(), Some("wallets:id:ciphertext"));
    assert_eq!(crashed.key_path.as_deref(), Some("secret/ibn/encryption-key"));
    let tokens_before = token_rows(&world).await;
    let wallets_before = world.rows().await;

    let elsewhere = [
        "is unfinished and belongs to other settings",
        "table `wallets` under KEK secret/ibn/encryption-key",
        "nothing was changed",
    ];
    let out = world.rotor().args(TOKENS_FLAGS).arg("rotate").output().unwrap();
    assert_fails_saying(&out, 1, &[&elsewhere[..], &["table `api_tokens` under KEK"]].concat());
    let out = world.rotor().args(TOKENS_FLAGS).arg("abort").output().unwrap();
    assert_fails_saying(&out, 1, &elsewhere);
    let out = world.rotor().args(["--key-path", "ibn/other-key", "rotate"]).output().unwrap();
    assert_fails_saying(&out, 1, &[&elsewhere[..], &["under KEK secret/ibn/other-key"]].concat());
    let status = json_success(world.rotor().args(TOKENS_FLAGS).arg("status"));
    assert_eq!(status["unfinished"]["id"], json!(crashed.id), "{status}");
    assert!(status["unfinished_elsewhere"].as_str().unwrap().contains("table `wallets`"), "{status}");
    let status = json_success(world.rotor().arg("status"));
    assert_eq!(status["unfinished_elsewhere"], json!(null), "{status}");

    // Nothing moved, no KEK was stored, the rotation is still there to resume.
    assert_eq!(token_rows(&world).await, tokens_before);
    assert_eq!(world.rows().await, wallets_before);
    assert_eq!(archived_versions(&world).await, ["v1"]);
    let running = world.db.connect().await.unfinished_rotation().await.unwrap().unwrap();
    assert_eq!(running.id, crashed.id);

    // Its own settings finish it; then the tokens rotate in a rotation of their own.
    let resumed = json_success(world.rotor().arg("rotate"));
    assert_eq!(
        (resumed["rotation_id"].as_i64(), resumed["to_version"].as_u64()),
        (Some(crashed.id), Some(2))
    );
    assert_every_wallet_opens(&world, &wallets).await;
    let moved = json_success(world.rotor().args(TOKENS_FLAGS).arg("rotate"));
    assert_eq!(moved["to_version"].as_u64(), Some(3));
    assert_tokens_open_under(&world, &tokens, 3).await;
    let history = json_success(world.rotor().arg("history"));
    let targets: Vec<&str> =
        history.as_array().unwrap().iter().filter_map(|line| line["targets"].as_str()).collect();
    assert_eq!(targets, ["api_tokens:token_id:sealed", "wallets:id:ciphertext"], "{history}");
}

on_sqlite_and_postgres!(an_unfinished_rotation_is_left_to_its_own_settings);

// 3. Environments in one settings file: each profile has its own KEK, table and schedule, and
//    their metrics pages can lie side by side.

const PROFILES: &str = r#"
[schedule]
rotate-after = "90d"

[profile.dev.database]
table = "dev_wallets"
[profile.dev.vault]
key-path = "ibn/dev/encryption-key"
[profile.dev.schedule]
rotate-after = "1s"

[profile.staging.vault]
key-path = "ibn/staging/encryption-key"
[profile.staging.schedule]
rotate-after = "30d"

[profile.prod.limits]
cpu-seconds = 900
"#;

/// Every sample of a metrics page, as written (name and labels), with its value.
fn page_samples(path: &std::path::Path) -> BTreeMap<String, String> {
    let page = std::fs::read_to_string(path).unwrap();
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

async fn profiles_rotate_on_their_own_schedules(kind: Kind) {
    let (world, prod_kek) = World::with_kek(kind).await;
    let prod_wallets = world.enroll_legacy(&prod_kek, WALLETS).await;
    let config = world.scratch.join("rotor.toml");
    std::fs::write(&config, PROFILES).unwrap();
    let rotor = |profile: &str| {
        let mut command = world.rotor();
        command.arg("--config").arg(&config).env("ROTOR_PROFILE", profile);
        command
    };
    // dev: its own KEK and table.
    let dev_table = WalletTable::new("dev_wallets", "id", "ciphertext").unwrap();
    world.db.execute(&dev_table.create_statement()).await;
    let dev_kek = rotor_codec::Kek::generate().unwrap();
    let out = rotor("dev")
        .args(["migrate-kek", "--from-env", "DEV_KEK"])
        .env("DEV_KEK", dev_kek.to_hex().as_str())
        .output()
        .unwrap();
    rotor_testkit::assert_success(&out);
    let (dev_wallets, rows) = legacy_wallets(&dev_kek, TOKENS);
    Database::connect(&world.db.url, dev_table.clone()).await.unwrap().put_many(&rows).await.unwrap();
    let prod_rows = world.rows().await;

    // dev's KEK is past its 1 s; prod's is far from its 90 days.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let metrics = |name: &str| world.scratch.join(format!("{name}.prom"));
    let dev =
        json_success(rotor("dev").args(["rotate", "--scheduled", "--metrics-file"]).arg(metrics("dev")));
    assert_eq!(
        (dev["to_version"].as_u64(), dev["rotated"].as_u64()),
        (Some(2), Some(TOKENS as u64)),
        "{dev}"
    );
    let prod =
        json_success(rotor("prod").args(["rotate", "--scheduled", "--metrics-file"]).arg(metrics("prod")));
    assert_eq!(prod["skipped"], json!(true), "{prod}");
    assert_eq!(prod["if_older_than_seconds"].as_u64(), Some(90 * 86_400), "{prod}");
    let out = rotor("prod").args(["rotate", "--scheduled"]).output().unwrap();
    rotor_testkit::assert_success(&out);
    rotor_testkit::assert_says(
        &rotor_testkit::text(&out.stdout),
        &["not rotating", "younger than rotate-after"],
    );

    // dev moved to its v2 and nothing else; prod's wallets and KEK are as they were.
    let dev_v2 = world.vault_client().read("ibn/dev/encryption-key-archive/v2", None).await.unwrap().unwrap();
    let dev_v2 = rotor_codec::Kek::from_hex(dev_v2.data["key"].as_str()).unwrap();
    let rows = Database::connect(&world.db.url, dev_table).await.unwrap().scan(None, 1000).await.unwrap();
    assert_eq!(rows.len(), dev_wallets.len());
    for row in rows {
        let opened = rotor_codec::open(&dev_v2, &row.id, &row.ciphertext).unwrap();
        assert_eq!(opened.as_slice(), dev_wallets[&row.id].as_slice(), "{}", row.id);
    }
    assert_eq!(world.rows().await, prod_rows);
    assert_eq!(archived_versions(&world).await, ["v1"]);
    assert_every_wallet_opens(&world, &prod_wallets).await;

    // The two pages name their profile, KEK and table on every sample, so no series is in both.
    let (dev_page, prod_page) = (page_samples(&metrics("dev")), page_samples(&metrics("prod")));
    for (page, scope) in [
        (&dev_page, r#"profile="dev",key_path="secret/ibn/dev/encryption-key",table="dev_wallets""#),
        (&prod_page, r#"profile="prod",key_path="secret/ibn/encryption-key",table="wallets""#),
    ] {
        assert!(page.len() >= 8 && page.keys().all(|key| key.contains(scope)), "{scope}: {page:#?}");
    }
    assert!(dev_page.keys().all(|key| !prod_page.contains_key(key)));
    // Each KEK's journal is its own: dev's rotation is not prod's.
    let total = |page: &BTreeMap<String, String>, profile: &str| {
        page.iter()
            .find(|(k, _)| k.starts_with("rotor_rotations_total{") && k.contains(profile))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!((total(&dev_page, "dev"), total(&prod_page, "prod")), ("1".to_owned(), "0".to_owned()));
    assert_eq!(
        dev_page[r#"rotor_kek_version{profile="dev",key_path="secret/ibn/dev/encryption-key",table="dev_wallets"}"#],
        "2"
    );
    assert_eq!(
        prod_page[r#"rotor_kek_version{profile="prod",key_path="secret/ibn/encryption-key",table="wallets"}"#],
        "1"
    );

    // `config check` says which profile and schedule a command would run with.
    let checked = json_success(rotor("dev").args(["config", "check"]));
    assert_eq!((&checked["profile"], &checked["rotate_after"]), (&json!("dev"), &json!("1s")), "{checked}");
    assert_eq!(checked["key_path"], json!({ "value": "ibn/dev/encryption-key", "source": "rotor.toml" }));

    // A profile that is not in the file, and a schedule that is not set, are named.
    let out = rotor("qa").arg("status").output().unwrap();
    assert_fails_saying(&out, 1, &["no profile `qa`", "dev, prod, staging"]);
    std::fs::write(&config, "[database]\ntable = \"wallets\"\n").unwrap();
    let out = world.rotor().arg("--config").arg(&config).args(["rotate", "--scheduled"]).output().unwrap();
    assert_fails_saying(
        &out,
        1,
        &["--scheduled needs `rotate-after` under [schedule]", "nothing was changed"],
    );
    assert_eq!(archived_versions(&world).await, ["v1"]);
}

on_sqlite_and_postgres!(profiles_rotate_on_their_own_schedules);

// 4. A receipt Vault refuses to store is printed all the same, and the command fails.

async fn a_receipt_vault_refuses_is_printed_and_fails_the_command(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    json_success(world.rotor().arg("rotate"));
    json_success(world.rotor().arg("rotate"));
    let v1 = rotor::keyring::fingerprint(&world.kek(1).await);
    let proxy = FaultProxy::start(world.vault.addr());
    let refused =
        proxy.fail(reqwest::Method::POST, "/v1/secret/data/ibn/encryption-key-receipts/", 403, Times::Always);
    let (out, pruned) = json(world.rotor().env("VAULT_ADDR", proxy.addr()).args(["prune", "--keep", "2"]));
    assert_eq!(out.status.code(), Some(1), "{pruned}");
    assert_eq!(proxy.hits(refused), 1);
    assert_eq!(pruned["destroyed"], json!([1]), "{pruned}");
    assert_eq!(pruned["receipt"]["versions"][0]["fingerprint"], json!(v1), "{pruned}");
    assert_eq!(pruned["receipt"]["stored_at"], json!(null), "{pruned}");
    assert!(pruned["receipt_not_stored"].as_str().unwrap().contains("permission denied"), "{pruned}");
    assert!(rotor_testkit::text(&out.stderr).contains("keep this output"));
    assert_eq!(archived_versions(&world).await, ["v2", "v3"]);
    assert_every_wallet_opens(&world, &wallets).await;

    // A receipt stored, but whose history entry Vault refused (502), is appended by the next
    // command that writes the history.
    proxy.clear();
    json_success(world.rotor().arg("rotate"));
    let entries = |world: &World| {
        let out = world.rotor().arg("history").output().unwrap();
        rotor_testkit::text(&out.stdout)
    };
    assert!(entries(&world).contains("4 entries, chain intact"), "{}", entries(&world));
    let failing =
        proxy.fail(reqwest::Method::POST, "/v1/secret/data/ibn/encryption-key-history/", 502, Times::Always);
    let (out, pruned) = json(world.rotor().env("VAULT_ADDR", proxy.addr()).args(["prune", "--keep", "2"]));
    assert_eq!(out.status.code(), Some(0), "{pruned}");
    assert!(proxy.hits(failing) >= 1);
    assert_eq!(pruned["destroyed"], json!([2]), "{pruned}");
    assert!(rotor_testkit::text(&out.stderr).contains("the receipt is not in the history in Vault"));
    assert!(entries(&world).contains("4 entries, chain intact"));
    proxy.clear();
    json_success(world.rotor().arg("rotate"));
    assert!(entries(&world).contains("6 entries, chain intact"), "{}", entries(&world));
    // In the order they happened: the prune, then the rotation after it.
    let (_, prune) = history_entry(&world, 5).await;
    let (_, rotation) = history_entry(&world, 6).await;
    assert_eq!(prune["event"]["receipt"], pruned["receipt"], "{prune}");
    assert_eq!(rotation["event"]["kind"], json!("rotation"), "{rotation}");
    // Appended once: another command that writes the history finds nothing missing.
    let kept = json_success(world.rotor().args(["prune", "--keep", "3"]));
    assert_eq!(kept["destroyed"], json!([]), "{kept}");
    assert!(entries(&world).contains("6 entries, chain intact"), "{}", entries(&world));
}

on_sqlite_and_postgres!(a_receipt_vault_refuses_is_printed_and_fails_the_command);

// 5. `[[target]]`: one rotation moves every table a KEK protects to one new KEK version, and
//    survives a kill -9 half-way through the second table.

/// Rows in the second table: enough that a rotation with small batches is still walking it
/// when the test freezes it.
const JWT_KEYS: usize = 1500;

const TWO_TARGETS: &str = r#"
[[target]]
table = "wallets"

[[target]]
table = "jwt_keys"
id-column = "kid"
ciphertext-column = "sealed_key"
"#;

fn jwt_table() -> WalletTable {
    WalletTable::new("jwt_keys", "kid", "sealed_key").unwrap()
}

async fn jwt_db(world: &World) -> Database {
    Database::connect(&world.db.url, jwt_table()).await.unwrap()
}

/// Asserts that every row of `table` is on KEK `version` and opens to what was stored.
async fn assert_table_opens_under(world: &World, table: &Database, expected: &Wallets, version: u32) {
    let rows = table.scan(None, 10_000).await.unwrap();
    assert_eq!(rows.len(), expected.len(), "rows appeared or vanished in {}", table.table().table);
    let kek = world.kek(version).await;
    for row in rows {
        assert!(row.ciphertext.starts_with(&format!("rotor:v{version}:")), "{} is not on v{version}", row.id);
        let opened =
            rotor_codec::open(&kek, &row.id, &row.ciphertext).unwrap_or_else(|e| panic!("{}: {e}", row.id));
        assert_eq!(opened.as_slice(), expected[&row.id].as_slice(), "{}", row.id);
    }
}

async fn one_rotation_moves_every_target(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    // The same ids in both tables: a batch written to the wrong table would be caught.
    let wallets = world.enroll_legacy(&kek, WALLETS * 5).await;
    world.db.execute(&jwt_table().create_statement()).await;
    let (jwt, rows) = legacy_wallets(&kek, JWT_KEYS);
    jwt_db(&world).await.put_many(&rows).await.unwrap();
    let config = world.scratch.join("rotor.toml");
    std::fs::write(&config, TWO_TARGETS).unwrap();
    let rotor = || {
        let mut command = world.rotor();
        command.arg("--config").arg(&config);
        command
    };
    let total = (WALLETS * 5 + JWT_KEYS) as u64;

    // validate reads both tables and gives each its figures.
    let validated = json_success(rotor().arg("validate"));
    assert_eq!((validated["total"].as_u64(), validated["valid"].as_u64()), (Some(total), Some(total)));
    assert_eq!(
        validated["tables"],
        json!([
            { "table": "wallets", "total": WALLETS * 5, "valid": WALLETS * 5, "invalid": 0 },
            { "table": "jwt_keys", "total": JWT_KEYS, "valid": JWT_KEYS, "invalid": 0 },
        ]),
        "{validated}"
    );
    let dry = json_success(rotor().args(["rotate", "--dry-run"]));
    assert_eq!((dry["total"].as_u64(), dry["rotated"].as_u64()), (Some(total), Some(total)), "{dry}");
    assert_eq!(archived_versions(&world).await, ["v1"]);

    // A rotation frozen once the first table is done and the second is half-way, then killed.
    let db = world.db.connect().await;
    let mut child = rotor()
        .args(["rotate", "--workers", "1", "--batch-size", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let moved = db.unfinished_rotation().await.unwrap().map_or(0, |r| r.rotated as usize);
        if moved >= WALLETS * 5 + 100 {
            let stopped =
                std::process::Command::new("kill").args(["-STOP", &child.id().to_string()]).status();
            assert!(stopped.unwrap().success());
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rotor ended ({status}) before it could be stopped in the second table");
        }
        assert!(std::time::Instant::now() < deadline, "the rotation never reached the second table");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = db.unfinished_rotation().await.unwrap().expect("the killed rotation is unfinished");
    assert_eq!(killed.targets.as_deref(), Some("wallets:id:ciphertext,jwt_keys:kid:sealed_key"));
    assert_eq!((killed.to_version, killed.total), (2, total as i64), "{killed:?}");
    assert!((killed.rotated as u64) < total, "killed too late: {killed:?}");
    let jwt_rows = jwt_db(&world).await.scan(None, 10_000).await.unwrap();
    let jwt_moved = jwt_rows.iter().filter(|row| row.ciphertext.starts_with("rotor:v2:")).count();
    assert!(jwt_moved > 0 && jwt_moved < JWT_KEYS, "the kill came in the second table: {jwt_moved} moved");
    let status = json_success(rotor().arg("status"));
    assert_eq!(status["tables"]["wallets"], json!({ "2": WALLETS * 5 }), "{status}");
    assert_eq!(status["tables"]["jwt_keys"]["legacy"].as_u64(), Some((JWT_KEYS - jwt_moved) as u64));

    // Settings naming one table only do not touch it.
    let out = world.rotor().arg("rotate").output().unwrap();
    assert_fails_saying(&out, 1, &["belongs to other settings", "tables `wallets`, `jwt_keys`"]);

    // The rerun finishes both tables under the one new KEK version.
    let resumed = json_success(rotor().arg("rotate"));
    assert_eq!((resumed["rotation_id"].as_i64(), resumed["to_version"].as_u64()), (Some(killed.id), Some(2)));
    assert_eq!((resumed["total"].as_u64(), resumed["failed"].as_u64()), (Some(total), Some(0)), "{resumed}");
    assert_eq!(archived_versions(&world).await, ["v1", "v2"]);
    assert_every_wallet_opens(&world, &wallets).await;
    assert_table_opens_under(&world, &world.db.connect().await, &wallets, 2).await;
    assert_table_opens_under(&world, &jwt_db(&world).await, &jwt, 2).await;
    let history = json_success(rotor().arg("history"));
    assert_eq!(history[0]["status"], json!("finished"), "{history}");
    assert_eq!(history[0]["failed"], json!(0), "{history}");
    // An audit reads both tables too, each with its figures; a row of the second that does
    // not open is named by table and id.
    let audited = json_success(rotor().arg("audit"));
    assert_eq!(audited["total"].as_u64(), Some(total), "{audited}");
    assert_eq!(audited["key_versions"], json!({ "2": total }), "{audited}");
    assert_eq!(
        audited["tables"],
        json!([
            { "table": "wallets", "total": WALLETS * 5, "unopenable": 0 },
            { "table": "jwt_keys", "total": JWT_KEYS, "unopenable": 0 },
        ]),
        "{audited}"
    );
    let jwt_before = jwt_db(&world).await.get("user-00001@IBNMSP").await.unwrap().unwrap();
    let other = jwt_db(&world).await.get("user-00002@IBNMSP").await.unwrap().unwrap();
    jwt_db(&world).await.put("user-00001@IBNMSP", &other).await.unwrap();
    let (out, audited) = json(rotor().arg("audit"));
    assert_eq!(out.status.code(), Some(3), "{audited}");
    assert_eq!(audited["unopenable"][0]["id"], json!("jwt_keys/user-00001@IBNMSP"), "{audited}");
    assert_eq!(audited["tables"][1]["unopenable"], json!(1), "{audited}");
    jwt_db(&world).await.put("user-00001@IBNMSP", &jwt_before).await.unwrap();

    // An application instance that had not reloaded wrote one key under v1: prune keeps v1.
    let v1 = world.kek(1).await;
    let stale = "user-00007@IBNMSP";
    let sealed = rotor_codec::seal(&v1, 1, stale, &jwt[stale]).unwrap();
    jwt_db(&world).await.put(stale, &sealed).await.unwrap();
    let (out, pruned) = json(rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(3), "{pruned}");
    assert_eq!((&pruned["destroyed"], &pruned["in_use"]), (&json!([]), &json!({ "1": 1 })), "{pruned}");
    assert_eq!(archived_versions(&world).await, ["v1", "v2"]);

    // The next rotation moves that row too; then v1 and v2 go, with a receipt for both tables.
    let moved = json_success(rotor().arg("rotate"));
    assert_eq!((moved["to_version"].as_u64(), moved["rotated"].as_u64()), (Some(3), Some(total)), "{moved}");
    // A dry run says so first, with the fingerprints, and destroys nothing.
    let rehearsed = json_success(rotor().args(["prune", "--keep", "1", "--dry-run"]));
    let fingerprints = [rotor::keyring::fingerprint(&v1), rotor::keyring::fingerprint(&world.kek(2).await)];
    for (index, fingerprint) in fingerprints.iter().enumerate() {
        let would = &rehearsed["would_destroy"][index];
        assert_eq!((&would["version"], &would["fingerprint"]), (&json!(index + 1), &json!(fingerprint)));
    }
    assert_eq!((&rehearsed["destroyed"], &rehearsed["receipt"]), (&json!([]), &json!(null)), "{rehearsed}");
    assert_eq!(archived_versions(&world).await, ["v1", "v2", "v3"]);
    let pruned = json_success(rotor().args(["prune", "--keep", "1"]));
    assert_eq!(pruned["destroyed"], json!([1, 2]), "{pruned}");
    let counted = json!({ "wallets": 0, "jwt_keys": 0 });
    for (index, version) in [1, 2].into_iter().enumerate() {
        assert_eq!(pruned["receipt"]["versions"][index]["version"], json!(version), "{pruned}");
        assert_eq!(pruned["receipt"]["versions"][index]["rows"], counted, "{pruned}");
    }
    assert_eq!(archived_versions(&world).await, ["v3"]);
    assert_table_opens_under(&world, &world.db.connect().await, &wallets, 3).await;
    assert_table_opens_under(&world, &jwt_db(&world).await, &jwt, 3).await;

    // Both tables in [[target]] and in [database] is refused, as is a table listed twice.
    for (text, said) in [
        (format!("{TWO_TARGETS}\n[database]\ntable = \"wallets\"\n"), "keep the tables in [[target]] only"),
        (format!("{TWO_TARGETS}\n[[target]]\ntable = \"jwt_keys\"\n"), "lists table \"jwt_keys\" twice"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = rotor().arg("status").output().unwrap();
        assert_fails_saying(&out, 1, &[said]);
    }
}

on_sqlite_and_postgres!(one_rotation_moves_every_target);

// 6. The history chained in Vault: an entry edited in Vault, or a journal row edited in the
//    database, is reported by `rotor history`.

/// Entry `seq` of the KEK's history chain as Vault stores it: its text and its JSON.
async fn history_entry(world: &World, seq: u64) -> (String, serde_json::Value) {
    let text = world.kv_field(&format!("ibn/encryption-key-history/{seq:08}"), "entry").await;
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

async fn an_edited_history_is_reported(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    json_success(world.rotor().arg("rotate"));
    json_success(world.rotor().arg("rotate"));
    let pruned = json_success(world.rotor().args(["prune", "--keep", "2"]));
    assert_eq!(pruned["destroyed"], json!([1]), "{pruned}");

    // Two rotations and a prune, each linked to the one before.
    let (first, first_json) = history_entry(&world, 1).await;
    let (second, second_json) = history_entry(&world, 2).await;
    let (_, third_json) = history_entry(&world, 3).await;
    assert_eq!((&first_json["prev"], &first_json["event"]["kind"]), (&json!(""), &json!("rotation")));
    assert_eq!(first_json["event"]["rotation"]["id"], json!(1));
    assert_eq!(second_json["prev"], json!(sha256_hex(&first)), "{second_json}");
    assert_eq!(third_json["prev"], json!(sha256_hex(&second)), "{third_json}");
    assert_eq!(third_json["event"]["kind"], json!("prune"));
    assert_eq!(third_json["event"]["receipt"], pruned["receipt"], "{third_json}");
    let out = world.rotor().arg("history").output().unwrap();
    rotor_testkit::assert_success(&out);
    rotor_testkit::assert_says(&rotor_testkit::text(&out.stdout), &["3 entries, chain intact"]);
    let history = json_success(world.rotor().arg("history"));
    assert_eq!(history.as_array().unwrap().len(), 2, "an intact chain adds no line: {history}");

    // Someone with write access to Vault makes rotation #1 look smaller.
    let mut edited = first_json.clone();
    edited["event"]["rotation"]["rotated"] = json!(WALLETS - 1);
    let text = serde_json::to_string(&edited).unwrap();
    world
        .vault_admin(
            reqwest::Method::POST,
            "secret/data/ibn/encryption-key-history/00000001",
            json!({ "data": { "entry": text } }),
        )
        .await;
    let (out, history) = json(world.rotor().arg("history"));
    assert_eq!(out.status.code(), Some(1), "{history}");
    let line = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(line["source"], json!("vault-history"), "{history}");
    let breaks: Vec<&str> =
        line["chain"]["breaks"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
    for expected in [
        "entry 1 was rewritten in Vault",
        "entry 2 does not follow entry 1",
        "entry 1 (rotation #1) and rotor's journal disagree on rotated",
    ] {
        assert!(breaks.iter().any(|b| b.contains(expected)), "{expected}: {breaks:#?}");
    }
    let out = world.rotor().arg("history").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    rotor_testkit::assert_says(
        &rotor_testkit::text(&out.stdout),
        &["HISTORY BROKEN", "entry 2 does not follow entry 1"],
    );

    // The journal is checked against the chain too: an edit in the database shows.
    world.db.execute("UPDATE rotor_rotations SET failed = 5 WHERE id = 2").await;
    let (_, history) = json(world.rotor().arg("history"));
    let line = history.as_array().unwrap().last().unwrap();
    assert!(
        line["chain"]["breaks"]
            .to_string()
            .contains("entry 2 (rotation #2) and rotor's journal disagree on failed"),
        "{history}"
    );
    // Nothing of this touched a wallet.
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(an_edited_history_is_reported);

// 7. A leaked KEK version: `rotate --compromised` gives every row a new data key and destroys
//    the version with a receipt; `destroy` refuses what rows or the KEK still need.

async fn a_compromised_kek_is_retired(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    json_success(world.rotor().arg("rotate"));
    let before = world.rows().await;
    let leaked = rotor::keyring::fingerprint(&world.kek(2).await);

    // v2 is current and every row names it: destroy refuses, destroying nothing.
    let out = world.rotor().args(["destroy", "v2"]).output().unwrap();
    assert_fails_saying(&out, 1, &["KEK v2 was not destroyed", "current KEK", "nothing was destroyed"]);
    let out = world.rotor().args(["destroy", "v9"]).output().unwrap();
    assert_fails_saying(&out, 1, &["KEK v9 is neither in the version history", "nothing was destroyed"]);
    let out = world.rotor().args(["destroy", "two"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", rotor_testkit::text(&out.stderr));
    assert_eq!(archived_versions(&world).await, ["v1", "v2"]);

    let retired = json_success(world.rotor().args(["rotate", "--compromised", "v2"]));
    assert_eq!(retired["compromised_version"], json!(2), "{retired}");
    let rotation = &retired["rotation"];
    assert_eq!((rotation["to_version"].as_u64(), rotation["reencrypt"].as_bool()), (Some(3), Some(true)));
    assert_eq!(rotation["rotated"].as_u64(), Some(WALLETS as u64));
    assert_eq!(retired["destroyed"]["destroyed"], json!([2]), "{retired}");
    let receipt = &retired["destroyed"]["receipt"];
    assert_eq!(receipt["versions"][0]["fingerprint"], json!(leaked), "{retired}");
    assert_eq!(receipt["versions"][0]["rows"], json!({ "wallets": 0 }), "{retired}");
    assert!(receipt["stored_at"].as_str().is_some(), "{retired}");
    assert_eq!(archived_versions(&world).await, ["v1", "v3"]);
    // Not a re-wrap: every wallet's data part, and so its data key, is new.
    let after = world.rows().await;
    for (id, old) in &before {
        assert!(rotor_codec::rewrap_versions(old, &after[id]).is_none(), "{id} kept its data key");
    }
    assert_every_wallet_opens(&world, &wallets).await;

    // v1 is named by no row any more: a dry run shows it, then it goes with a receipt.
    let rehearsed = json_success(world.rotor().args(["destroy", "1", "--dry-run"]));
    let v1 = rotor::keyring::fingerprint(&world.kek(1).await);
    assert_eq!(rehearsed["would_destroy"][0]["fingerprint"], json!(v1), "{rehearsed}");
    assert_eq!(archived_versions(&world).await, ["v1", "v3"]);
    let out = world.rotor().args(["destroy", "v1"]).output().unwrap();
    rotor_testkit::assert_success(&out);
    rotor_testkit::assert_says(
        &rotor_testkit::text(&out.stdout),
        &["destroyed: v1", &format!("v1: fingerprint {v1}"), "receipt stored in Vault at"],
    );
    assert_eq!(archived_versions(&world).await, ["v3"]);
    assert_every_wallet_opens(&world, &wallets).await;
    // Both destructions are in the history chained in Vault.
    let out = world.rotor().arg("history").output().unwrap();
    rotor_testkit::assert_says(&rotor_testkit::text(&out.stdout), &["4 entries, chain intact"]);
}

on_sqlite_and_postgres!(a_compromised_kek_is_retired);

// 8. A target that covers only some rows of its table (`filter`): a table shared with rows the
//    KEK does not protect.

async fn a_filtered_target_moves_only_its_rows(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    world
        .db
        .execute("CREATE TABLE secrets (id TEXT PRIMARY KEY, sealed TEXT NOT NULL, kind TEXT NOT NULL)")
        .await;
    let filtered =
        WalletTable::new("secrets", "id", "sealed").unwrap().with_filter("kind", "api-token").unwrap();
    let (tokens, rows) = legacy_wallets(&kek, TOKENS);
    let tokens_db = Database::connect(&world.db.url, filtered.clone()).await.unwrap();
    tokens_db.put_many(&rows).await.unwrap();
    // Rows of another kind in the same table, holding no ciphertext at all.
    world
        .db
        .execute("INSERT INTO secrets (id, sealed, kind) VALUES ('theme', 'dark', 'setting'), ('zz-motd', 'hello', 'setting')")
        .await;
    let config = world.scratch.join("rotor.toml");
    std::fs::write(
        &config,
        "[[target]]\ntable = \"wallets\"\n[[target]]\ntable = \"secrets\"\nciphertext-column = \"sealed\"\n\
         filter = { column = \"kind\", equals = \"api-token\" }\n",
    )
    .unwrap();
    let rotor = || {
        let mut command = world.rotor();
        command.arg("--config").arg(&config);
        command
    };
    let total = (WALLETS + TOKENS) as u64;

    let validated = json_success(rotor().arg("validate"));
    assert_eq!(
        (validated["total"].as_u64(), validated["valid"].as_u64()),
        (Some(total), Some(total)),
        "{validated}"
    );
    let rotated = json_success(rotor().arg("rotate"));
    assert_eq!((rotated["total"].as_u64(), rotated["failed"].as_u64()), (Some(total), Some(0)), "{rotated}");
    assert_every_wallet_opens(&world, &wallets).await;
    assert_table_opens_under(&world, &tokens_db, &tokens, 2).await;
    // The other rows are exactly as they were, and counted nowhere.
    let everything =
        Database::connect(&world.db.url, WalletTable::new("secrets", "id", "sealed").unwrap()).await.unwrap();
    assert_eq!(everything.get("theme").await.unwrap().as_deref(), Some("dark"));
    assert_eq!(everything.get("zz-motd").await.unwrap().as_deref(), Some("hello"));
    let keys = json_success(rotor().arg("keys"));
    assert_eq!(keys["versions"][0]["rows"], json!({ "wallets": WALLETS, "secrets": TOKENS }), "{keys}");
    assert_eq!(keys["unversioned_rows"], json!({}), "{keys}");
    let history = json_success(rotor().arg("history"));
    assert_eq!(history[0]["targets"], json!("wallets:id:ciphertext,secrets:id:sealed:where.kind=api-token"));
    // Prune sees both targets: v1 goes, with both tables counted.
    let pruned = json_success(rotor().args(["prune", "--keep", "1"]));
    assert_eq!(pruned["receipt"]["versions"][0]["rows"], json!({ "wallets": 0, "secrets": 0 }), "{pruned}");
    assert_eq!(everything.get("theme").await.unwrap().as_deref(), Some("dark"));
}

on_sqlite_and_postgres!(a_filtered_target_moves_only_its_rows);

// 9. A target whose application still reads the seed's layout (`format = "legacy"`) is written
//    in it, while the others get rotor's envelope, in one rotation.

async fn a_target_keeps_the_layout_its_application_reads(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    world.db.execute(&jwt_table().create_statement()).await;
    let (jwt, rows) = legacy_wallets(&kek, TOKENS);
    jwt_db(&world).await.put_many(&rows).await.unwrap();
    let config = world.scratch.join("rotor.toml");
    std::fs::write(&config, format!("{TWO_TARGETS}format = \"legacy\"\n")).unwrap();
    let rotor = || {
        let mut command = world.rotor();
        command.arg("--config").arg(&config);
        command
    };
    for version in [2u32, 3] {
        let rotated = json_success(rotor().arg("rotate"));
        assert_eq!(
            (rotated["to_version"].as_u64(), rotated["failed"].as_u64()),
            (Some(version.into()), Some(0))
        );
        assert_eq!(rotated["rotated"].as_u64(), Some((WALLETS + TOKENS) as u64), "{rotated}");
        assert_table_opens_under(&world, &world.db.connect().await, &wallets, version).await;
        let kek = world.kek(version).await;
        for row in jwt_db(&world).await.scan(None, 1000).await.unwrap() {
            assert_eq!(rotor_codec::inspect(&row.ciphertext), Ok(rotor_codec::Format::Legacy), "{}", row.id);
            let opened = rotor_codec::open(&kek, &row.id, &row.ciphertext)
                .unwrap_or_else(|e| panic!("{}: {e}", row.id));
            assert_eq!(opened.as_slice(), jwt[&row.id].as_slice(), "{}", row.id);
        }
    }
    let history = json_success(rotor().arg("history"));
    assert_eq!(history[0]["targets"], json!("wallets:id:ciphertext,jwt_keys:kid:sealed_key:format.legacy"));
    let validated = json_success(rotor().arg("validate"));
    assert_eq!(validated["valid"].as_u64(), Some((WALLETS + TOKENS) as u64), "{validated}");
}

on_sqlite_and_postgres!(a_target_keeps_the_layout_its_application_reads);
