//! `rotor::vault` against a real OpenBao dev server: every test starts its own server and fails,
//! never skips, when the `bao` binary is missing.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rotor::{
    demo::openbao::DevServer,
    vault::{KvSecret, VaultClient, VaultConfig, VaultError},
};
use zeroize::Zeroizing;

const PATH: &str = "ibn/encryption-key";

async fn start_server() -> DevServer {
    DevServer::start().await.unwrap_or_else(|e| panic!("these tests need a real OpenBao: {e:#}"))
}

fn client(addr: &str, token: &str, mount: &str) -> VaultClient {
    VaultClient::new(VaultConfig {
        mount: mount.to_owned(),
        timeout: Duration::from_secs(5),
        ..VaultConfig::with_token(addr, token)
    })
    .expect("valid config")
}

fn root_client(server: &DevServer) -> VaultClient {
    client(server.addr(), server.root_token(), "secret")
}

fn key_fields(hex: &str) -> BTreeMap<String, Zeroizing<String>> {
    BTreeMap::from([("key".to_owned(), Zeroizing::new(hex.to_owned()))])
}

fn key_of(secret: &KvSecret) -> &str {
    secret.data["key"].as_str()
}

/// Calls the Vault API as root for setup the client under test does not offer.
async fn admin(server: &DevServer, path: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{path}", server.addr()))
        .header("X-Vault-Token", server.root_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_check_and_set() {
    let server = start_server().await;
    let vault = root_client(&server);
    let (old, new) = ("0123456789abcdef".repeat(4), "fedcba9876543210".repeat(4));

    assert_eq!(vault.write(PATH, &key_fields(&old), Some(0)).await.unwrap(), 1);
    let first = vault.read(PATH, None).await.unwrap().unwrap();
    assert_eq!((first.version, key_of(&first)), (1, old.as_str()));
    assert_eq!(key_of(&first).len(), 64);

    assert_eq!(vault.write(PATH, &key_fields(&new), Some(1)).await.unwrap(), 2);
    for stale in [Some(1), Some(0)] {
        let err = vault.write(PATH, &key_fields("x"), stale).await.unwrap_err();
        assert!(matches!(err, VaultError::CasMismatch { .. }), "{stale:?}: {err}");
    }

    let latest = vault.read(PATH, None).await.unwrap().unwrap();
    assert_eq!((latest.version, key_of(&latest)), (2, new.as_str()));
    let v1 = vault.read(PATH, Some(1)).await.unwrap().unwrap();
    assert_eq!((v1.version, key_of(&v1)), (1, old.as_str()));
    assert!(vault.read(PATH, Some(3)).await.unwrap().is_none());

    let meta = vault.metadata(PATH).await.unwrap().unwrap();
    assert_eq!(meta.current_version, 2);
    let numbers: Vec<_> = meta.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2]);
    assert!(meta.versions.iter().all(|v| !v.destroyed));

    vault.destroy_versions(PATH, &[1]).await.unwrap();
    assert!(vault.read(PATH, Some(1)).await.unwrap().is_none());
    assert_eq!(vault.read(PATH, None).await.unwrap().unwrap().version, 2);
    let meta = vault.metadata(PATH).await.unwrap().unwrap();
    assert!(meta.versions[0].destroyed && !meta.versions[1].destroyed);

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_paths_and_listing() {
    let server = start_server().await;
    let vault = root_client(&server);

    assert!(vault.read("ibn/missing", None).await.unwrap().is_none());
    assert!(vault.metadata("ibn/missing").await.unwrap().is_none());
    assert!(vault.list("ibn").await.unwrap().is_empty());

    for path in ["ibn/b", "ibn/a", "ibn/old/c", "other/d"] {
        vault.write(path, &key_fields("00"), None).await.unwrap();
    }
    assert_eq!(vault.list("ibn").await.unwrap(), ["a", "b", "old/"]);
    assert_eq!(vault.list("").await.unwrap(), ["ibn/", "other/"]);

    let err = vault.read("../sys/health", None).await.unwrap_err();
    assert!(matches!(err, VaultError::Config(_)), "{err}");
    let err = client(server.addr(), server.root_token(), "nope").read(PATH, None).await.unwrap_err();
    assert!(matches!(err, VaultError::NoMount { .. }), "{err}");

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn token_problems_are_named() {
    let server = start_server().await;
    root_client(&server).check().await.unwrap();

    let bad_token = "s.not-a-real-token-4711";
    let vault = client(server.addr(), bad_token, "secret");
    let err = vault.check().await.unwrap_err();
    assert!(matches!(err, VaultError::BadToken), "{err}");
    let err = vault.read(PATH, None).await.unwrap_err();
    assert!(matches!(err, VaultError::BadToken), "{err}");
    assert!(err.to_string().contains("VAULT_TOKEN"), "{err}");
    assert!(!format!("{err} {err:?} {vault:?}").contains(bad_token));

    // A valid token whose policy only allows reading: writes are denied, not "bad token".
    let policy = r#"path "secret/data/ibn/*" { capabilities = ["read"] }"#;
    admin(&server, "sys/policies/acl/reader", serde_json::json!({ "policy": policy })).await;
    let created = admin(&server, "auth/token/create", serde_json::json!({ "policies": ["reader"] })).await;
    let reader = client(server.addr(), created["auth"]["client_token"].as_str().unwrap(), "secret");
    reader.check().await.unwrap();
    assert!(reader.read(PATH, None).await.unwrap().is_none());
    let err = reader.write(PATH, &key_fields("00"), None).await.unwrap_err();
    match &err {
        VaultError::PermissionDenied { path, .. } => {
            assert_eq!(path, "secret/data/ibn/encryption-key")
        }
        _ => panic!("expected PermissionDenied, got {err}"),
    }

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_server_is_reported() {
    let server = start_server().await;
    let vault = root_client(&server);
    admin(&server, "sys/seal", serde_json::json!({})).await;

    let err = vault.check().await.unwrap_err();
    assert!(matches!(err, VaultError::Sealed { .. }), "{err}");
    let err = vault.read(PATH, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Sealed { .. }), "{err}");

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_address_fails_fast() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).unwrap().port();
    let vault = VaultClient::new(VaultConfig {
        timeout: Duration::from_millis(500),
        ..VaultConfig::with_token(&format!("http://127.0.0.1:{port}"), "root")
    })
    .unwrap();

    let started = Instant::now();
    let err = vault.check().await.unwrap_err();
    assert!(matches!(err, VaultError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let err = vault.read(PATH, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Unreachable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_output_hides_secret_values() {
    let server = start_server().await;
    let vault = root_client(&server);
    let value = "5ec2e7".repeat(10) + "beef";
    vault.write(PATH, &key_fields(&value), None).await.unwrap();

    let secret = vault.read(PATH, None).await.unwrap().unwrap();
    assert_eq!(key_of(&secret), value);
    let debug = format!("{secret:?} {vault:?}");
    assert!(debug.contains("key"), "{debug}");
    assert!(!debug.contains(&value) && !debug.contains("5ec2e7"), "{debug}");
    assert!(!format!("{vault:?}").contains(server.root_token()));

    server.stop().await.unwrap();
}
