//! Several tables under one KEK: the journal records which KEK and which tables each rotation
//! moved, no command acts on another scope's unfinished rotation, and no KEK version is
//! destroyed while a row of any table rotor has moved under that KEK still names it. Real
//! OpenBao, SQLite and PostgreSQL.

use std::collections::BTreeMap;

use rotor::store::{Database, RunIdentity, WalletTable};
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
    let (out, pruned) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(3), "{pruned}");
    assert_eq!(pruned["destroyed"], json!([1]), "{pruned}");
    assert_eq!(pruned["kept"], json!([3]), "{pruned}");
    assert_eq!(pruned["in_use"], json!({ "2": TOKENS }), "{pruned}");
    assert_eq!(archived_versions(&world).await, ["v2", "v3"]);
    assert_tokens_open_under(&world, &tokens, 2).await;
    assert_every_wallet_opens(&world, &wallets).await;

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
