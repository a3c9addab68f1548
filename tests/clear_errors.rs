//! Every misconfiguration an operator is likely to meet fails with exit 1 and a message that
//! names the problem and the fix, without leaking a secret. Covered elsewhere: unreachable
//! Vault, bad or missing token, missing KEK, missing table or column and a core module instead of
//! a component (`end_to_end.rs`, `clear_errors`); sealed Vault (`outages.rs`); AppRole login and
//! TLS (`vault_auth.rs`).

use reqwest::Method;
use rotor_codec::Kek;
use rotor_testkit::{Kind, World, assert_says, failure, json};
use serde_json::json;

/// A token whose policy does not cover the KEK: the error names the API path, the capability
/// and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn permission_denied_names_the_path() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    let policy = r#"path "secret/data/other/*" { capabilities = ["read"] }"#;
    world.vault_admin(Method::POST, "sys/policies/acl/elsewhere", json!({ "policy": policy })).await;
    let token =
        world.vault_admin(Method::POST, "auth/token/create", json!({ "policies": ["elsewhere"] })).await;
    let token = token["auth"]["client_token"].as_str().unwrap().to_owned();

    let (out, error) = json(world.rotor().arg("validate").env("VAULT_TOKEN", &token));
    let (code, stderr) = failure(&out);
    eprintln!("{stderr}");
    assert_eq!(code, 1);
    assert!(stderr.contains("permission denied on secret/data/ibn/encryption-key"), "{stderr}");
    assert!(stderr.contains("does not grant `read`") && stderr.contains("add it to the policy"), "{stderr}");
    assert!(error["error"].as_str().unwrap().contains("permission denied"), "{error}");
    assert!(!stderr.contains(&token), "the token leaked: {stderr}");
}

/// A KEK in Vault that is not 64 hex characters: named by path and field, never echoed.
#[tokio::test(flavor = "multi_thread")]
async fn kek_not_64_hex() {
    let world = World::new(Kind::Sqlite).await;
    let mangled = std::collections::BTreeMap::from([(
        "key".to_owned(),
        zeroize::Zeroizing::new("c0ffee-not-hex".to_owned()),
    )]);
    world.vault_client().write("ibn/encryption-key", &mangled, None).await.unwrap();
    world.enroll_legacy(&Kek::generate().unwrap(), 3).await;

    for command in ["validate", "rotate"] {
        let out = world.rotor().arg(command).output().unwrap();
        let (code, stderr) = failure(&out);
        eprintln!("rotor {command}: {stderr}");
        assert_eq!(code, 1);
        assert_says(
            &stderr,
            &["ibn/encryption-key field `key` is not a KEK", "it must be 64 hex characters"],
        );
        assert!(!stderr.contains("c0ffee"), "the value leaked: {stderr}");
    }
}

/// The database cannot be reached: the URL (without its password) and what to check.
#[tokio::test(flavor = "multi_thread")]
async fn database_unreachable() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://rotor:hunter2@127.0.0.1:{closed}/app");
    let started = std::time::Instant::now();
    let out = world.rotor().arg("validate").env("DATABASE_URL", &url).output().unwrap();
    let (code, stderr) = failure(&out);
    eprintln!("after {:?}: {stderr}", started.elapsed());
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot open the database postgres://rotor:***@127.0.0.1:{closed}/app")),
        "{stderr}"
    );
    assert!(stderr.contains("check DATABASE_URL (or --database-url)"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "the cause, not a pool timeout: {stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");

    let missing = world.scratch.join("nowhere.db");
    let out = world
        .rotor()
        .arg("validate")
        .env("DATABASE_URL", format!("sqlite://{}", missing.display()))
        .output()
        .unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("the file does not exist") && stderr.contains("DATABASE_URL"), "{stderr}");
}

/// A SQLite database in UTF-16: refused by name before any row is read or written, and the
/// wallet in it left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_utf16_sqlite_database_is_refused() {
    use sqlx::{ConnectOptions, Connection};

    let world = World::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    world.migrate_kek(&kek);
    let path = world.scratch.join("utf16.db");
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .pragma("encoding", "'UTF-16le'")
        .connect()
        .await
        .unwrap();
    let wallet = rotor_codec::seal_legacy(&kek, b"a wallet").unwrap();
    sqlx::query("CREATE TABLE wallets (id TEXT PRIMARY KEY, ciphertext TEXT NOT NULL)")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO wallets VALUES ('w1', ?)").bind(&wallet).execute(&mut db).await.unwrap();
    let encoding: String = sqlx::query_scalar("PRAGMA encoding").fetch_one(&mut db).await.unwrap();
    assert_eq!(encoding, "UTF-16le");
    db.close().await.unwrap();

    for command in ["validate", "rotate"] {
        let out = world
            .rotor()
            .arg(command)
            .env("DATABASE_URL", format!("sqlite://{}", path.display()))
            .output()
            .unwrap();
        let (code, stderr) = failure(&out);
        eprintln!("rotor {command}: {stderr}");
        assert_eq!(code, 1);
        assert_says(&stderr, &["its text encoding is UTF-16le", "UTF-8, only", "DATABASE_URL"]);
    }
    let mut db = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    let held: String = sqlx::query_scalar("SELECT ciphertext FROM wallets WHERE id = 'w1'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(held, wallet, "the wallet changed");
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'rotor%'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(tables, 0, "rotor wrote its tables into a database it refused");
    let kek_versions = world.vault_client().metadata("ibn/encryption-key").await.unwrap().unwrap();
    assert_eq!(kek_versions.current_version, 1, "a KEK was made for a database rotor refused");
}

/// A component file that is missing, or is not WebAssembly at all.
#[tokio::test(flavor = "multi_thread")]
async fn component_missing_or_not_a_component() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());

    let missing = world.scratch.join("missing.wasm");
    let out = world.rotor().arg("validate").arg("--component").arg(&missing).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("cannot read component file {}", missing.display())), "{stderr}");
    assert!(stderr.contains("--component or ROTOR_COMPONENT"), "{stderr}");

    let garbage = world.scratch.join("garbage.wasm");
    std::fs::write(&garbage, b"#!/bin/sh\necho not wasm\n").unwrap();
    let out = world.rotor().arg("validate").env("ROTOR_COMPONENT", &garbage).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a WebAssembly component"), "{stderr}");
    assert!(stderr.contains("built for wasm32-wasip2"), "{stderr}");
}
