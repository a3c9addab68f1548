//! rotor inside OpenBao: a real `bao server -dev` with a `plugin_directory` runs the
//! `rotor-plugin` binary, registered by its sha256, as a secrets engine. Every check goes
//! through OpenBao's own HTTP API or its CLI, as an operator or an application would.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use reqwest::{Method, StatusCode};
use rotor::component::ComponentSource;
use rotor::store::WalletRow;
use rotor_codec::Kek;
use rotor_testkit::{
    FileServer, Kind, PluginDevServer, TestDb, Vault, Wallets, assert_fails_saying, assert_says,
    legacy_wallets, rotor_binary,
};
use serde_json::{Value, json};

const PLUGIN: &str = env!("CARGO_BIN_EXE_rotor-plugin");

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("reading the plugin")))
}

/// rotor's own component with a custom section of `padding` bytes appended: another file, and
/// digest, that does the same work, so that a report shows which one ran.
fn builtin_with_custom_section(padding: usize) -> Vec<u8> {
    let mut section = vec![4, b't', b'e', b's', b't'];
    section.resize(section.len() + padding.max(1), 0x01);
    let mut bytes = ComponentSource::builtin().bytes().to_vec();
    bytes.push(0x00);
    // The section's size, LEB128.
    let mut size = section.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        bytes.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&section);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

fn succeeded(what: &str, out: &std::process::Output) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One call to OpenBao's HTTP API: the status and the JSON body (`null` when empty).
async fn call(
    server: &impl Vault,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut request =
        http.request(method.clone(), format!("{}/v1/{path}", server.addr())).header("X-Vault-Token", token);
    if method != Method::GET {
        request = request.json(&body);
    }
    let response = request.send().await.expect("OpenBao answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
}

/// The call succeeds; its `data`.
async fn ok(server: &impl Vault, method: Method, path: &str, body: Value) -> Value {
    let (status, reply) = call(server, server.root_token(), method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {reply}");
    reply["data"].clone()
}

/// The root token's write to `path` succeeds within 10 s, retried as an application retries a
/// 5xx; its `data`.
async fn eventually_ok(server: &impl Vault, path: &str, body: Value) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, reply) = call(server, server.root_token(), Method::POST, path, body.clone()).await;
        if status.is_success() {
            return reply["data"].clone();
        }
        assert!(status.is_server_error(), "{path}: {status} {reply}");
        assert!(std::time::Instant::now() < deadline, "{path} still fails: {status} {reply}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits until `done` holds, for at most 10 s: for what OpenBao does in the background.
async fn within_10s(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The call is refused with `status`; the error text OpenBao gives.
async fn refused(
    server: &impl Vault,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
    status: StatusCode,
) -> String {
    let (got, reply) = call(server, token, method, path, body).await;
    assert_eq!(got, status, "{path}: {reply}");
    reply["errors"].to_string()
}

/// The root token's write to `path` is refused as a bad request; the error text.
async fn bad_request(server: &impl Vault, path: &str, body: Value) -> String {
    refused(server, server.root_token(), Method::POST, path, body, StatusCode::BAD_REQUEST).await
}

/// The root token's `method` on `path` is refused as a bad request; the error text.
async fn bad_request_to(server: &impl Vault, method: Method, path: &str) -> String {
    refused(server, server.root_token(), method, path, Value::Null, StatusCode::BAD_REQUEST).await
}

/// Stores each `(name, hcl)` ACL policy and makes a token with it alone; the tokens, in order.
async fn tokens_with(server: &impl Vault, policies: &[(&str, &str)]) -> Vec<String> {
    let mut tokens = Vec::new();
    for (name, hcl) in policies {
        ok(server, Method::PUT, &format!("sys/policies/acl/{name}"), json!({"policy": hcl})).await;
        let token = json!({"policies": [name]});
        let (status, reply) =
            call(server, server.root_token(), Method::POST, "auth/token/create", token).await;
        assert!(status.is_success(), "{reply}");
        tokens.push(reply["auth"]["client_token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// Registers the plugin in `plugin_dir` by its digest and mounts it at `rotor/`, as the
/// operator's guide says.
fn register_and_mount(server: &impl Vault, plugin_dir: &Path) {
    std::fs::copy(PLUGIN, plugin_dir.join("rotor-plugin")).expect("copying the plugin");
    let sha = sha256_of(&plugin_dir.join("rotor-plugin"));
    succeeded(
        "register",
        &server.bao(&["plugin", "register", &format!("-sha256={sha}"), "secret", "rotor-plugin"]),
    );
    succeeded("enable", &server.bao(&["secrets", "enable", "-path=rotor", "rotor-plugin"]));
}

async fn registered_and_mounted() -> PluginDevServer {
    let server = PluginDevServer::start().await.expect("an OpenBao dev server with a plugin folder");
    register_and_mount(&server, &server.plugin_dir());
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_runs_the_plugin_only_with_the_sha256_it_was_registered_with() {
    let server = PluginDevServer::start().await.expect("an OpenBao dev server with a plugin folder");
    let binary = server.plugin_dir().join("rotor-plugin");
    std::fs::copy(PLUGIN, &binary).expect("copying the plugin");
    let enable = |path: &str| server.bao(&["secrets", "enable", &format!("-path={path}"), "rotor-plugin"]);

    // OpenBao takes the registration (it checks digests when it launches a binary), then
    // refuses to mount what does not match it.
    let wrong = "0".repeat(64);
    succeeded(
        "register",
        &server.bao(&["plugin", "register", &format!("-sha256={wrong}"), "secret", "rotor-plugin"]),
    );
    let out = enable("rotor");
    assert!(!out.status.success(), "a plugin registered with another digest was mounted");
    assert_says(&String::from_utf8_lossy(&out.stderr), &["checksums did not match"]);

    // Registered with its digest, then swapped on disk: refused too.
    let sha = sha256_of(&binary);
    succeeded(
        "register",
        &server.bao(&["plugin", "register", &format!("-sha256={sha}"), "secret", "rotor-plugin"]),
    );
    let mut tampered = std::fs::read(&binary).unwrap();
    tampered.extend_from_slice(b"tampered");
    std::fs::write(&binary, tampered).unwrap();
    let out = enable("rotor");
    assert!(!out.status.success(), "a binary changed after registration was mounted");
    assert_says(&String::from_utf8_lossy(&out.stderr), &["checksums did not match"]);
    let (status, _) = call(&server, server.root_token(), Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no mount exists at rotor/");
}

#[tokio::test(flavor = "multi_thread")]
async fn applications_seal_and_open_wallets_through_the_mount_with_the_kek_inside_openbao() {
    let server = registered_and_mounted().await;

    // An application's existing KEK, imported as the version its envelopes already name.
    let kek = Kek::generate().unwrap();
    let hex_key = kek.to_hex().to_string();
    let empty = bad_request(&server, "rotor/encrypt/w-0", json!({"plaintext": "AA=="})).await;
    assert_says(&empty, &["key ring is empty", "rotor/keys/import"]);
    let bad = bad_request(&server, "rotor/keys/import", json!({"key": "abc"})).await;
    assert_says(&bad, &["\\\"key\\\"", "invalid KEK"]);
    let imported =
        ok(&server, Method::POST, "rotor/keys/import", json!({"key": hex_key, "version": "3"})).await;
    assert_eq!(imported["version"], 3);
    let again = bad_request(&server, "rotor/keys/import", json!({"key": hex_key})).await;
    assert_says(&again, &["already v3"]);
    let older =
        bad_request(&server, "rotor/keys/import", json!({"key": "11".repeat(32), "version": 2})).await;
    assert_says(&older, &["up to v3"]);
    let first = bad_request(&server, "rotor/keys", json!({})).await;
    assert_says(&first, &["already holds v3", "rotation"]);

    // The ring shows versions, never a key: not through the API, not through the CLI.
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys["latest_version"], 3);
    assert_eq!(keys["versions"]["3"]["origin"], "imported");
    assert_eq!(keys["versions"].as_object().unwrap().len(), 1);
    let cli = server.bao(&["read", "-format=json", "rotor/keys"]);
    assert!(cli.status.success());
    for said in [keys.to_string(), String::from_utf8_lossy(&cli.stdout).into_owned(), server.log()] {
        assert!(!said.to_lowercase().contains(&hex_key), "the KEK appeared in what OpenBao said");
    }

    // Wallets sealed one by one and in a batch open byte for byte, through the mount and apart
    // from it (with the KEK, as rotor's codec does).
    let wallets: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("wallet-{i}"), format!("0x{i:064x} secret key of wallet {i}").into_bytes()))
        .collect();
    let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let mut sealed = Vec::new();
    for (id, wallet) in &wallets[..5] {
        let reply =
            ok(&server, Method::POST, &format!("rotor/encrypt/{id}"), json!({"plaintext": b64(wallet)}))
                .await;
        assert_eq!(reply["key_version"], 3);
        sealed.push(reply["ciphertext"].as_str().unwrap().to_owned());
    }
    let batch: Vec<Value> =
        wallets[5..].iter().map(|(id, w)| json!({"id": id, "plaintext": b64(w)})).collect();
    let reply = ok(&server, Method::POST, "rotor/encrypt", json!({"batch_input": batch})).await;
    for result in reply["batch_results"].as_array().unwrap() {
        assert!(result.get("error").is_none(), "{result}");
        sealed.push(result["ciphertext"].as_str().unwrap().to_owned());
    }
    assert_eq!(sealed.len(), wallets.len());
    for ((id, wallet), ciphertext) in wallets.iter().zip(&sealed) {
        assert!(ciphertext.starts_with("rotor:v3:"), "{ciphertext}");
        assert_eq!(&*rotor_codec::open(&kek, id, ciphertext).expect("opens with the KEK"), wallet.as_slice());
        let reply =
            ok(&server, Method::POST, &format!("rotor/decrypt/{id}"), json!({"ciphertext": ciphertext}))
                .await;
        assert_eq!(reply["plaintext"], b64(wallet));
    }
    // A wallet of the application's own, sealed outside OpenBao under v3, opens too.
    let outside = rotor_codec::seal(&kek, 3, "wallet-outside", b"made by the app").unwrap();
    let reply =
        ok(&server, Method::POST, "rotor/decrypt/wallet-outside", json!({"ciphertext": outside})).await;
    assert_eq!(reply["plaintext"], b64(b"made by the app"));

    // The id is bound: a ciphertext moved onto another wallet does not open, one by one or in a
    // batch, where the other items still do.
    let moved = bad_request(&server, "rotor/decrypt/wallet-1", json!({"ciphertext": sealed[0]})).await;
    assert_says(&moved, &["wallet-1", "does not decrypt"]);
    let mixed = json!({"batch_input": [
        {"id": "wallet-0", "ciphertext": sealed[0]},
        {"id": "wallet-2", "ciphertext": sealed[1]},
        {"id": "wallet-3", "ciphertext": "rotor:v9:AAAA"},
        {"id": "wallet-4", "ciphertext": sealed[4]},
    ]});
    let results = ok(&server, Method::POST, "rotor/decrypt", mixed).await["batch_results"].clone();
    assert_eq!(results[0]["plaintext"], b64(&wallets[0].1));
    assert_says(results[1]["error"].as_str().unwrap(), &["does not decrypt"]);
    assert!(results[2]["error"].is_string(), "{}", results[2]);
    assert_eq!(results[3]["plaintext"], b64(&wallets[4].1));
    let unknown =
        bad_request(&server, "rotor/decrypt/wallet-0", json!({"ciphertext": sealed[0], "extra": 1})).await;
    assert_says(&unknown, &["unknown field", "extra"]);
    let (status, _) =
        call(&server, server.root_token(), Method::GET, "rotor/nothing-here", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Policies: an application may seal and open, not touch keys; an auditor may read the ring,
    // not open wallets.
    let policies = [
        (
            "rotor-app",
            r#"path "rotor/encrypt/*" { capabilities = ["update"] }
path "rotor/decrypt/*" { capabilities = ["update"] }"#,
        ),
        ("rotor-auditor", r#"path "rotor/keys" { capabilities = ["read"] }"#),
    ];
    let tokens = tokens_with(&server, &policies).await;
    let (app, auditor) = (&tokens[0], &tokens[1]);
    let (status, reply) =
        call(&server, app, Method::POST, "rotor/decrypt/wallet-9", json!({"ciphertext": sealed[9]})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["plaintext"], b64(&wallets[9].1));
    refused(
        &server,
        app,
        Method::POST,
        "rotor/keys/import",
        json!({"key": "22".repeat(32)}),
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(&server, app, Method::GET, "rotor/keys", Value::Null, StatusCode::FORBIDDEN).await;
    let (status, reply) = call(&server, auditor, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!((status, reply["data"]["latest_version"].clone()), (StatusCode::OK, json!(3)));
    refused(
        &server,
        auditor,
        Method::POST,
        "rotor/decrypt/wallet-9",
        json!({"ciphertext": sealed[9]}),
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &server,
        auditor,
        Method::POST,
        "rotor/keys/import",
        json!({"key": "22".repeat(32)}),
        StatusCode::FORBIDDEN,
    )
    .await;
    let keys_after = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys_after, keys, "a refused call changed the key ring");

    // An upgrade as docs/PLUGIN.md tells it: a new binary beside the old one, registered under
    // the same name with its own digest, then reloaded. The ring is in the mount's storage, so
    // the new process opens what the old one sealed.
    let dir = server.plugin_dir();
    std::fs::copy(PLUGIN, dir.join("rotor-plugin-next")).unwrap();
    let sha = sha256_of(&dir.join("rotor-plugin-next"));
    let register = [
        "plugin",
        "register",
        &format!("-sha256={sha}"),
        "-command=rotor-plugin-next",
        "secret",
        "rotor-plugin",
    ];
    succeeded("register the upgrade", &server.bao(&register));
    let before = plugin_pid(&dir.join("rotor-plugin")).expect("the old binary runs");
    succeeded("reload", &server.bao(&["plugin", "reload", "-plugin=rotor-plugin"]));
    for ((id, wallet), ciphertext) in wallets.iter().zip(&sealed).step_by(7) {
        let reply =
            ok(&server, Method::POST, &format!("rotor/decrypt/{id}"), json!({"ciphertext": ciphertext}))
                .await;
        assert_eq!(reply["plaintext"], b64(wallet));
    }
    assert!(plugin_pid(&dir.join("rotor-plugin-next")).is_some(), "the upgraded binary does not run");
    // OpenBao asks the old process to stop and kills it 2 s later if it has not.
    within_10s(&format!("the old binary (pid {before}) to stop"), || {
        plugin_pid(&dir.join("rotor-plugin")).is_none()
    })
    .await;
    assert_eq!(ok(&server, Method::GET, "rotor/keys", Value::Null).await, keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_mount_makes_its_first_kek_inside_openbao() {
    let server = registered_and_mounted().await;
    let made = ok(&server, Method::POST, "rotor/keys", json!({})).await;
    assert_eq!(made["version"], 1);
    // The plugin's log lines reach OpenBao's log at their own level (hclog JSON on stderr),
    // once OpenBao has copied them from the plugin's stderr.
    let added = || {
        let log = server.log();
        log.lines().find(|line| line.contains("KEK version added to the mount's key ring")).map(str::to_owned)
    };
    within_10s("the plugin's line in OpenBao's log", || added().is_some()).await;
    assert_says(&added().unwrap(), &["[INFO]", "rotor-plugin", "version=1", "origin=Generated"]);
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys["versions"]["1"]["origin"], "generated");
    let reply = ok(&server, Method::POST, "rotor/encrypt/w", json!({"plaintext": "aGVsbG8="})).await;
    assert!(reply["ciphertext"].as_str().unwrap().starts_with("rotor:v1:"));
    let reply =
        ok(&server, Method::POST, "rotor/decrypt/w", json!({"ciphertext": reply["ciphertext"]})).await;
    assert_eq!(reply["plaintext"], "aGVsbG8=");
    // A second mount of the same plugin has a ring of its own.
    succeeded("enable", &server.bao(&["secrets", "enable", "-path=rotor-staging", "rotor-plugin"]));
    let other = ok(&server, Method::GET, "rotor-staging/keys", Value::Null).await;
    assert_eq!(other["latest_version"], Value::Null);
    // The last version number: imported, then nothing above it, and no panic in the plugin.
    let last =
        ok(&server, Method::POST, "rotor/keys/import", json!({"key": "33".repeat(32), "version": u32::MAX}))
            .await;
    assert_eq!(last["version"], u32::MAX);
    let above = bad_request(&server, "rotor/keys/import", json!({"key": "44".repeat(32)})).await;
    assert_says(&above, &["last version number"]);
    let sealed = ok(&server, Method::POST, "rotor/encrypt/w", json!({"plaintext": "aGVsbG8="})).await;
    assert!(sealed["ciphertext"].as_str().unwrap().starts_with(&format!("rotor:v{}:", u32::MAX)), "{sealed}");
}

/// The pid of a process running `binary`, if one runs.
fn plugin_pid(binary: &Path) -> Option<u32> {
    // -x: the whole command line is the binary's path (OpenBao passes no arguments).
    let out = Command::new("pgrep").arg("-fx").arg(binary).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().next().map(|pid| pid.trim().parse().expect("a pid"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_ring_survives_a_killed_plugin_and_a_crashed_openbao() {
    let mut server = FileServer::start().await.expect("a file-backed OpenBao");
    register_and_mount(&server, &server.plugin_dir());
    let kek = Kek::generate().unwrap();
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": kek.to_hex().to_string()})).await;
    let sealed =
        ok(&server, Method::POST, "rotor/encrypt/w-1", json!({"plaintext": "d2FsbGV0"})).await["ciphertext"]
            .clone();

    // kill -9 of the plugin: a request racing the death may fail (500, the socket refuses);
    // once OpenBao has seen the process exit it starts it again, and the next request works.
    let pid = plugin_pid(&server.plugin_dir().join("rotor-plugin")).expect("the plugin runs");
    succeeded("kill", &Command::new("kill").args(["-9", &pid.to_string()]).output().unwrap());
    let opened = eventually_ok(&server, "rotor/decrypt/w-1", json!({"ciphertext": sealed})).await;
    assert_eq!(opened["plaintext"], "d2FsbGV0");
    let again =
        plugin_pid(&server.plugin_dir().join("rotor-plugin")).expect("OpenBao started the plugin again");
    assert_ne!(again, pid);

    // OpenBao killed, restarted and unsealed: the ring is in its storage, the old plugin
    // process is gone (it stops when OpenBao does), and the mount opens what it sealed.
    server.kill().await.unwrap();
    let orphan = server.plugin_dir().join("rotor-plugin");
    within_10s("the plugin to stop once OpenBao is gone", || plugin_pid(&orphan).is_none()).await;
    server.restart().await.unwrap();
    server.unseal().await.unwrap();
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(
        (keys["latest_version"].clone(), keys["versions"]["1"]["origin"].clone()),
        (json!(1), json!("imported"))
    );
    let opened = ok(&server, Method::POST, "rotor/decrypt/w-1", json!({"ciphertext": sealed})).await;
    assert_eq!(opened["plaintext"], "d2FsbGV0");
    assert_eq!(&*rotor_codec::open(&kek, "w-1", sealed.as_str().unwrap()).unwrap(), b"wallet");
}

#[test]
fn run_by_hand_it_says_what_it_is() {
    let out = Command::new(PLUGIN).env_remove("VAULT_BACKEND_PLUGIN").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_says(&String::from_utf8_lossy(&out.stderr), &["OpenBao plugin", "bao plugin register"]);
    assert!(out.stdout.is_empty(), "nothing but a handshake may go to stdout");
}

/// `count` legacy wallets under `kek` in `db`, and one row that holds no wallet (`broken-1`).
async fn seed(db: &TestDb, kek: &Kek, count: usize) -> Wallets {
    let (wallets, mut rows) = legacy_wallets(kek, count);
    rows.push(WalletRow { id: "broken-1".into(), ciphertext: "not a wallet at all".into() });
    db.connect().await.put_many(&rows).await.unwrap();
    wallets
}

/// The database URL with a password in it (PostgreSQL here trusts local connections, so it is
/// ignored), to show that the mount never gives it back.
fn with_password(url: &str) -> String {
    match url.strip_prefix("postgres://postgres@") {
        Some(rest) => format!("postgres://postgres:{DB_PASSWORD}@{rest}"),
        None => url.to_owned(),
    }
}

const DB_PASSWORD: &str = "pw-never-shown-4471";

/// Reads `rotor/status` until the mount's rotation is no longer running (60 s at most).
async fn rotation_done(server: &impl Vault) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = ok(server, Method::GET, "rotor/status", Value::Null).await;
        if status["last_run"]["state"] != "running" {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "the rotation still runs after 60 s: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Decrypts every row through the mount, in batches (OpenBao's listener refuses JSON of 1000
/// strings or more), and compares it with the wallet it holds.
async fn every_wallet_decrypts(server: &impl Vault, rows: &BTreeMap<String, String>, wallets: &Wallets) {
    let wallets: Vec<(&String, &Vec<u8>)> = wallets.iter().collect();
    for chunk in wallets.chunks(200) {
        let batch: Vec<Value> =
            chunk.iter().map(|(id, _)| json!({"id": id, "ciphertext": rows[*id]})).collect();
        let reply = ok(server, Method::POST, "rotor/decrypt", json!({"batch_input": batch})).await;
        let results = reply["batch_results"].as_array().unwrap();
        assert_eq!(results.len(), chunk.len());
        for (result, (id, wallet)) in results.iter().zip(chunk) {
            assert!(result.get("error").is_none(), "{id}: {result}");
            assert_eq!(
                (result["id"].as_str(), &result["plaintext"]),
                (Some(id.as_str()), &json!(b64(wallet)))
            );
        }
    }
}

async fn the_mount_rotates_an_applications_wallets(kind: Kind) {
    let server = registered_and_mounted().await;
    let db = TestDb::new(kind).await;
    let kek = Kek::generate().unwrap();
    let wallets = seed(&db, &kek, 120).await;
    let before = db.rows().await;

    // Nothing runs before the mount knows its database; a bad setting is refused, not stored.
    let unset = refused(
        &server,
        server.root_token(),
        Method::GET,
        "rotor/status",
        Value::Null,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_says(&unset, &["rotor/config", "database_url"]);
    let scheme = bad_request(&server, "rotor/config", json!({"database_url": "mysql://db/app"})).await;
    assert_says(&scheme, &["postgres://", "sqlite:"]);
    let url = with_password(&db.url);
    let table =
        bad_request(&server, "rotor/config", json!({"database_url": url, "table": "no_such_table"})).await;
    assert_says(&table, &["no_such_table"]);
    assert!(!table.contains(DB_PASSWORD), "an error quoted the database password: {table}");
    let (status, _) = call(&server, server.root_token(), Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused setting was stored");

    // The application's KEK, imported as v1 (legacy rows name no version: they are v1's).
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": kek.to_hex().to_string()})).await;
    let stored = ok(
        &server,
        Method::POST,
        "rotor/config",
        json!({"database_url": url, "batch_size": "25", "workers": "2"}),
    )
    .await;
    assert_eq!(stored["config"]["batch_size"], 25);
    let shown = ok(&server, Method::GET, "rotor/config", Value::Null).await;
    assert_eq!((shown["table"].as_str(), shown["workers"].as_u64()), (Some("wallets"), Some(2)));
    assert!(shown.get("database_url").is_none(), "{shown}");
    if kind == Kind::Postgres {
        assert_says(&shown["database"].to_string(), &["postgres://postgres:***@"]);
    }

    // validate → rotate → status, as the CLI's commands of the same names.
    let validated = ok(&server, Method::POST, "rotor/validate", json!({})).await;
    assert_eq!(
        (validated["total"].as_u64(), validated["valid"].as_u64()),
        (Some(121), Some(120)),
        "{validated}"
    );
    assert_eq!(validated["invalid_ids"], json!(["broken-1"]));
    let started = ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    assert_eq!(
        (started["started"].clone(), started["resuming_rotation"].clone()),
        (json!(true), Value::Null)
    );
    let status = rotation_done(&server).await;
    let report = &status["last_run"]["report"];
    assert_eq!(status["last_run"]["state"], "finished", "{status}");
    assert_eq!(
        (report["from_version"].as_u64(), report["to_version"].as_u64(), report["rotated"].as_u64()),
        (Some(1), Some(2), Some(120)),
        "{report}"
    );
    assert_eq!(report["failed_ids"], json!(["broken-1"]));
    assert_eq!((status["current_kek_version"].as_u64(), &status["unfinished"]), (Some(2), &Value::Null));
    assert_eq!(status["key_versions"]["2"], 120, "{status}");

    // One new KEK version, made inside the plugin; every wallet moved to it and decrypts byte
    // for byte through the mount; the odd row is as it was.
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys["latest_version"], 2);
    assert_eq!(
        (keys["versions"]["1"]["origin"].as_str(), keys["versions"]["2"]["origin"].as_str()),
        (Some("imported"), Some("rotation"))
    );
    assert_eq!(keys["versions"].as_object().unwrap().len(), 2);
    let after = db.rows().await;
    assert_eq!(after["broken-1"], before["broken-1"]);
    for id in wallets.keys() {
        assert!(after[id].starts_with("rotor:v2:"), "{id} was not moved to v2");
    }
    every_wallet_decrypts(&server, &after, &wallets).await;
    let history = ok(&server, Method::GET, "rotor/history", Value::Null).await;
    assert_eq!(history["rotations"].as_array().map(Vec::len), Some(1), "{history}");
    let log = server.log();
    assert!(!log.contains(DB_PASSWORD), "the database password appeared in OpenBao's log");
    assert!(!log.to_lowercase().contains(&kek.to_hex().to_string()), "the KEK appeared in OpenBao's log");

    // ACL policies per path: an application decrypts and cannot rotate; an auditor reads the
    // status and nothing else; an operator rotates.
    let policies = [
        (
            "rotor-app",
            r#"path "rotor/decrypt/*" { capabilities = ["update"] }
path "rotor/decrypt" { capabilities = ["update"] }"#,
        ),
        ("rotor-auditor", r#"path "rotor/status" { capabilities = ["read"] }"#),
        (
            "rotor-operator",
            r#"path "rotor/rotate" { capabilities = ["create", "update"] }
path "rotor/status" { capabilities = ["read"] }"#,
        ),
    ];
    let tokens = tokens_with(&server, &policies).await;
    let (app, auditor, operator) = (&tokens[0], &tokens[1], &tokens[2]);
    let id = wallets.keys().next().unwrap();
    let (status, reply) =
        call(&server, app, Method::POST, &format!("rotor/decrypt/{id}"), json!({"ciphertext": after[id]}))
            .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    for (token, method, path) in [
        (app, Method::POST, "rotor/rotate"),
        (app, Method::GET, "rotor/status"),
        (app, Method::GET, "rotor/config"),
        (auditor, Method::POST, "rotor/rotate"),
        (auditor, Method::POST, "rotor/validate"),
        (auditor, Method::GET, "rotor/config"),
        (auditor, Method::POST, "rotor/decrypt"),
        (operator, Method::POST, "rotor/config"),
    ] {
        refused(&server, token, method, path, json!({}), StatusCode::FORBIDDEN).await;
    }
    let (status, reply) = call(&server, auditor, Method::GET, "rotor/status", Value::Null).await;
    assert_eq!((status, reply["data"]["current_kek_version"].clone()), (StatusCode::OK, json!(2)));
    assert_eq!(
        ok(&server, Method::GET, "rotor/keys", Value::Null).await,
        keys,
        "a refused call changed the ring"
    );

    // The operator's second rotation re-wraps every wallet onto v3.
    let (status, reply) = call(&server, operator, Method::POST, "rotor/rotate", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["report"]["to_version"], 3, "{status}");
    let after = db.rows().await;
    every_wallet_decrypts(&server, &after, &wallets).await;
    assert!(wallets.keys().all(|id| after[id].starts_with("rotor:v3:")));

    // A rollback (to the version before the last rotation's, v2) stores v4 with v2's key and
    // moves every wallet onto it.
    let started = ok(&server, Method::POST, "rotor/rollback", json!({})).await;
    assert_eq!(started["restores_version"], 2, "{started}");
    let status = rotation_done(&server).await;
    let report = &status["last_run"]["report"];
    assert_eq!(
        (report["to_version"].as_u64(), report["restored_version"].as_u64()),
        (Some(4), Some(2)),
        "{report}"
    );
    let after = db.rows().await;
    assert!(wallets.keys().all(|id| after[id].starts_with("rotor:v4:")));
    every_wallet_decrypts(&server, &after, &wallets).await;

    // prune: a dry run destroys nothing; then v1 to v3, which no row uses, are destroyed with a
    // receipt in the mount; the auditor may not prune.
    refused(&server, auditor, Method::POST, "rotor/prune", json!({"keep": 1}), StatusCode::FORBIDDEN).await;
    let missing = bad_request(&server, "rotor/prune", json!({})).await;
    assert_says(&missing, &["\\\"keep\\\" is required"]);
    // The odd row names no KEK version: any old KEK may be its, so nothing is destroyed while
    // it is there.
    let refused_prune = bad_request(&server, "rotor/prune", json!({"keep": 1})).await;
    assert_says(&refused_prune, &["legacy wallet(s) name no KEK version", "nothing was destroyed"]);
    assert_eq!(
        ok(&server, Method::GET, "rotor/keys", Value::Null).await["versions"].as_object().unwrap().len(),
        4
    );
    db.execute("DELETE FROM wallets WHERE id = 'broken-1'").await;
    let after = db.rows().await;
    let rehearsed = ok(&server, Method::POST, "rotor/prune", json!({"keep": 1, "dry_run": true})).await;
    assert_eq!(rehearsed["destroyed"], json!([]), "{rehearsed}");
    assert_eq!(
        ok(&server, Method::GET, "rotor/keys", Value::Null).await["versions"].as_object().unwrap().len(),
        4
    );
    let pruned = ok(&server, Method::POST, "rotor/prune", json!({"keep": 1})).await;
    assert_eq!(pruned["destroyed"], json!([1, 2, 3]), "{pruned}");
    assert!(pruned["receipt"]["stored_at"].is_string(), "{pruned}");
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys["versions"].as_object().unwrap().keys().collect::<Vec<_>>(), ["4"], "{keys}");
    every_wallet_decrypts(&server, &after, &wallets).await;
    assert_eq!(db.rows().await, after, "prune changed rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mount_rotates_an_applications_wallets_in_sqlite() {
    the_mount_rotates_an_applications_wallets(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mount_rotates_an_applications_wallets_in_postgres() {
    the_mount_rotates_an_applications_wallets(Kind::Postgres).await;
}

/// The root token's read of `path` succeeds within 10 s, retried as for [`eventually_ok`].
async fn eventually_read(server: &impl Vault, path: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, reply) = call(server, server.root_token(), Method::GET, path, Value::Null).await;
        if status.is_success() {
            return reply["data"].clone();
        }
        assert!(status.is_server_error(), "{path}: {status} {reply}");
        assert!(std::time::Instant::now() < deadline, "{path} still fails: {status} {reply}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits (30 s at most) until at least `least` rows hold an envelope of `prefix` such as
/// `rotor:v2:`; how many do.
async fn moved(db: &TestDb, prefix: &str, least: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let count = db.rows().await.values().filter(|c| c.starts_with(prefix)).count();
        if count >= least {
            return count;
        }
        assert!(std::time::Instant::now() < deadline, "only {count} rows moved to {prefix} in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// After a resumed rotation: every wallet is on `version`, opens byte for byte through the
/// mount, and the ring holds the versions 1 to `version` and no other.
async fn nothing_lost(server: &impl Vault, db: &TestDb, wallets: &Wallets, version: u32, before: &Value) {
    let status = rotation_done(server).await;
    assert_eq!(status["last_run"]["state"], "finished", "{status}");
    assert_eq!(status["last_run"]["report"]["to_version"], version, "{status}");
    assert_eq!(status["unfinished"], Value::Null);
    let rows = db.rows().await;
    let prefix = format!("rotor:v{version}:");
    let behind: Vec<&String> = wallets.keys().filter(|id| !rows[*id].starts_with(&prefix)).collect();
    assert!(
        behind.is_empty(),
        "{} wallets not on v{version}: {:?}",
        behind.len(),
        &behind[..behind.len().min(5)]
    );
    assert_eq!(rows["broken-1"], "not a wallet at all");
    every_wallet_decrypts(server, &rows, wallets).await;
    let keys = ok(server, Method::GET, "rotor/keys", Value::Null).await;
    let versions: Vec<&String> = keys["versions"].as_object().unwrap().keys().collect();
    let expected: Vec<String> = (1..=version).map(|v| v.to_string()).collect();
    assert_eq!(versions, expected.iter().collect::<Vec<_>>(), "one new KEK version per rotation: {keys}");
    for v in 1..version {
        assert_eq!(keys["versions"][v.to_string()], before["versions"][v.to_string()], "v{v} changed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_killed_with_the_plugin_or_with_openbao_resumes_and_loses_nothing() {
    let mut server = FileServer::start().await.expect("a file-backed OpenBao");
    register_and_mount(&server, &server.plugin_dir());
    let binary = server.plugin_dir().join("rotor-plugin");
    let db = TestDb::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let wallets = seed(&db, &kek, 4000).await;
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": kek.to_hex().to_string()})).await;
    // One wallet per batch, one worker: the rotation takes long enough to be caught half-way.
    ok(&server, Method::POST, "rotor/config", json!({"database_url": db.url, "batch_size": 1, "workers": 1}))
        .await;

    // kill -9 of the plugin once some wallets moved: OpenBao starts it again, the journal
    // shows the rotation unfinished, and rotor/rotate resumes it.
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    moved(&db, "rotor:v2:", 20).await;
    let pid = plugin_pid(&binary).expect("the plugin runs");
    succeeded("kill", &Command::new("kill").args(["-9", &pid.to_string()]).output().unwrap());
    let at_kill = moved(&db, "rotor:v2:", 0).await;
    assert!(at_kill < wallets.len(), "the rotation was over before the kill");
    let status = eventually_read(&server, "rotor/status").await;
    let unfinished = status["unfinished"]["id"].clone();
    assert!(unfinished.is_number(), "the journal lost the unfinished rotation: {status}");
    assert_eq!(status["last_run"]["state"], "idle", "a new process: {status}");
    let resumed = eventually_ok(&server, "rotor/rotate", json!({})).await;
    assert_eq!(resumed["resuming_rotation"], unfinished);
    nothing_lost(&server, &db, &wallets, 2, &keys).await;

    // OpenBao itself killed half-way through the next rotation, restarted and unsealed.
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    moved(&db, "rotor:v3:", 20).await;
    server.kill().await.unwrap();
    within_10s("the plugin to stop once OpenBao is gone", || plugin_pid(&binary).is_none()).await;
    let at_kill = moved(&db, "rotor:v3:", 0).await;
    assert!(at_kill < wallets.len(), "the rotation was over before the kill");
    server.restart().await.unwrap();
    server.unseal().await.unwrap();
    let status = eventually_read(&server, "rotor/status").await;
    assert!(status["unfinished"]["id"].is_number(), "{status}");
    let resumed = eventually_ok(&server, "rotor/rotate", json!({})).await;
    assert_eq!(resumed["resuming_rotation"], status["unfinished"]["id"]);
    nothing_lost(&server, &db, &wallets, 3, &keys).await;

    // `bao plugin reload` half-way through a rotation, as an upgrade does: OpenBao's cleanup
    // stops the rotation at a batch's end, the new process resumes it, here with new rotation
    // logic uploaded meanwhile and pinned once the reload stopped the rotation.
    let upgraded = builtin_with_custom_section(1);
    let digest = sha256_hex(&upgraded);
    ok(&server, Method::POST, "rotor/components/rotation-v2", json!({"wasm": b64(&upgraded)})).await;
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    moved(&db, "rotor:v4:", 20).await;
    let pid = plugin_pid(&binary).expect("the plugin runs");
    succeeded("reload", &server.bao(&["plugin", "reload", "-plugin=rotor-plugin"]));
    let at_reload = moved(&db, "rotor:v4:", 0).await;
    assert!(at_reload < wallets.len(), "the rotation was over before the reload");
    let status = eventually_read(&server, "rotor/status").await;
    assert!(status["unfinished"]["id"].is_number(), "{status}");
    assert_ne!(plugin_pid(&binary), Some(pid), "the reload kept the old process");
    let pinned = json!({"component": "components/rotation-v2", "component_sha256": digest});
    eventually_ok(&server, "rotor/config", pinned).await;
    let resumed = eventually_ok(&server, "rotor/rotate", json!({})).await;
    assert_eq!(resumed["resuming_rotation"], status["unfinished"]["id"]);
    nothing_lost(&server, &db, &wallets, 4, &keys).await;
    let status = ok(&server, Method::GET, "rotor/status", Value::Null).await;
    assert_eq!(status["last_run"]["report"]["component_sha256"], digest, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_runs_in_the_mount_only_with_its_digest_pinned() {
    let server = registered_and_mounted().await;
    let db = TestDb::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    seed(&db, &kek, 10).await;
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": kek.to_hex().to_string()})).await;
    let builtin = ComponentSource::builtin();
    let bytes = builtin_with_custom_section(1);
    let component = server.plugin_dir().join("rotation.wasm");
    std::fs::write(&component, &bytes).unwrap();
    let digest = sha256_of(&component);
    assert_ne!(digest, builtin.sha256);
    let config = |fields: Value| {
        let mut body = json!({"database_url": db.url, "component": "rotation.wasm"});
        body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        body
    };

    let unpinned = bad_request(&server, "rotor/config", config(json!({}))).await;
    assert_says(&unpinned, &["component_sha256", "pinned"]);
    let wrong = "ab".repeat(32);
    let mismatch = bad_request(&server, "rotor/config", config(json!({"component_sha256": wrong}))).await;
    assert_says(&mismatch, &["rotation.wasm", &digest, &wrong, "refusing to run it"]);
    let outside = bad_request(
        &server,
        "rotor/config",
        config(json!({"component": "../rotor-plugin", "component_sha256": digest})),
    )
    .await;
    assert_says(&outside, &["not a file name", "plugin directory"]);
    let (status, _) = call(&server, server.root_token(), Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused component was stored");

    // Pinned, it runs: the rotation's report names its digest.
    ok(&server, Method::POST, "rotor/config", config(json!({"component_sha256": digest}))).await;
    let shown = ok(&server, Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(
        (shown["component"].as_str(), shown["component_sha256"].as_str()),
        (Some("rotation.wasm"), Some(digest.as_str()))
    );
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["report"]["component_sha256"], digest, "{status}");
    assert_eq!(status["last_run"]["report"]["rotated"], 10, "{status}");

    // The file swapped on disk (here for rotor's own, unmodified): once the plugin restarts and
    // reads it again, it refuses to run it, naming both digests; no rotation starts.
    std::fs::write(&component, builtin.bytes()).unwrap();
    succeeded("reload", &server.bao(&["plugin", "reload", "-plugin=rotor-plugin"]));
    let before = db.rows().await;
    let (status, reply) = call(&server, server.root_token(), Method::POST, "rotor/rotate", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_says(&reply["errors"].to_string(), &[&builtin.sha256, &digest, "refusing to run it"]);
    assert_eq!(db.rows().await, before, "a refused component changed rows");
    let keys = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    assert_eq!(keys["latest_version"], 2, "a refused component made a KEK version");
}

/// A mounted plugin over a SQLite table of `count` legacy wallets and `broken-1`: their KEK
/// imported as v1, the mount configured for the table.
async fn mounted_over_wallets(count: usize) -> (PluginDevServer, TestDb, Wallets) {
    let server = registered_and_mounted().await;
    let db = TestDb::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let wallets = seed(&db, &kek, count).await;
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": kek.to_hex().to_string()})).await;
    ok(&server, Method::POST, "rotor/config", json!({"database_url": db.url})).await;
    (server, db, wallets)
}

/// A platform team's component uploaded to the mount: refused unless its digest is pinned, run
/// within the mount's own limits, kept across a plugin reload, deleted only once `rotor/config`
/// no longer runs it. A hostile one that computes forever is stopped by the mount's limit, and
/// no row or KEK version changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_uploaded_to_the_mount_runs_pinned_and_within_the_mounts_limits() {
    let (server, db, wallets) = mounted_over_wallets(10).await;
    let list = Method::from_bytes(b"LIST").unwrap();

    // Near the 16 MiB the mount takes: 30-odd storage entries, split and put together again.
    let upgraded = builtin_with_custom_section(15 << 20);
    let digest = sha256_hex(&upgraded);
    let path = "rotor/components/rotation-v2";

    // Refused uploads store nothing.
    let wrong = "ab".repeat(32);
    let damaged = bad_request(&server, path, json!({"wasm": b64(&upgraded), "sha256": wrong})).await;
    assert_says(&damaged, &[&digest, &wrong, "nothing was stored"]);
    let script = bad_request(&server, path, json!({"wasm": b64(b"#!/bin/sh\necho hi\n")})).await;
    assert_says(&script, &["components/rotation-v2", "not a WebAssembly component"]);
    let not_base64 = bad_request(&server, path, json!({"wasm": "%%%"})).await;
    assert_says(&not_base64, &["wasm", "must be the component in base64"]);
    // Past 16 MiB: the request reaches the plugin (OpenBao takes 32 MiB), which refuses it.
    let huge = builtin_with_custom_section(16 << 20);
    let too_big = bad_request(&server, path, json!({"wasm": b64(&huge)})).await;
    assert_says(&too_big, &[&huge.len().to_string(), "over the 16777216 the mount takes"]);
    let (status, _) = call(&server, server.root_token(), Method::GET, path, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused upload was stored");

    let stored = ok(&server, Method::POST, path, json!({"wasm": b64(&upgraded), "sha256": digest})).await;
    assert_eq!(
        (stored["sha256"].as_str(), stored["size"].as_u64()),
        (Some(digest.as_str()), Some(upgraded.len() as u64))
    );
    let listed = ok(&server, list.clone(), "rotor/components", Value::Null).await;
    assert_eq!(listed["keys"], json!(["rotation-v2"]));
    let shown = ok(&server, Method::GET, path, Value::Null).await;
    assert_eq!((shown["sha256"].as_str(), &shown["configured"]), (Some(digest.as_str()), &json!(false)));

    // Named without its digest, with another's, or not uploaded: refused, the settings unchanged.
    let unpinned = bad_request(&server, "rotor/config", json!({"component": "components/rotation-v2"})).await;
    assert_says(&unpinned, &["component_sha256", "pinned"]);
    let builtin = ComponentSource::builtin().sha256;
    let other = json!({"component": "components/rotation-v2", "component_sha256": builtin});
    assert_says(
        &bad_request(&server, "rotor/config", other).await,
        &[&digest, &builtin, "refusing to run it"],
    );
    let missing = json!({"component": "components/missing", "component_sha256": digest});
    assert_says(
        &bad_request(&server, "rotor/config", missing).await,
        &["no component was uploaded", "components/missing"],
    );
    assert!(ok(&server, Method::GET, "rotor/config", Value::Null).await["component"].is_null());

    // Pinned, it rotates: the report carries its digest, and every wallet decrypts.
    let pinned = json!({"component": "components/rotation-v2", "component_sha256": digest});
    ok(&server, Method::POST, "rotor/config", pinned).await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["report"]["component_sha256"], digest, "{status}");
    assert_eq!(status["last_run"]["report"]["rotated"], 10, "{status}");
    every_wallet_decrypts(&server, &db.rows().await, &wallets).await;

    // A new plugin process reads it back from the mount's storage and runs it.
    succeeded("reload", &server.bao(&["plugin", "reload", "-plugin=rotor-plugin"]));
    let validated = eventually_ok(&server, "rotor/validate", json!({})).await;
    assert_eq!(validated["valid"], 10, "{validated}");
    let delete = bad_request_to(&server, Method::DELETE, path).await;
    assert_says(&delete, &["rotor/config runs components/rotation-v2"]);
    // Nor is it replaced under the running mount.
    let other = builtin_with_custom_section(2);
    let replaced = bad_request(&server, path, json!({"wasm": b64(&other)})).await;
    assert_says(&replaced, &[&digest, &sha256_hex(&other), "under another name", "nothing was stored"]);
    assert_eq!(ok(&server, Method::GET, path, Value::Null).await["sha256"], digest);

    // A hostile component that computes forever, under the mount's limit of 2 s without a host
    // call: stopped, the limit named as rotor/config's field, nothing changed.
    let hostile = rotor_testkit::build_components("tests/hostile", Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join("hostile_rotator.wasm");
    let hostile_bytes = std::fs::read(&hostile).unwrap();
    let hostile_digest = sha256_hex(&hostile_bytes);
    ok(&server, Method::POST, "rotor/components/hostile", json!({"wasm": b64(&hostile_bytes)})).await;
    let run_hostile = |limits: Value| {
        let mut body = json!({"component": "components/hostile", "component_sha256": hostile_digest});
        body.as_object_mut().unwrap().extend(limits.as_object().unwrap().clone());
        body
    };
    let zero = bad_request(&server, "rotor/config", run_hostile(json!({"call_seconds": 0}))).await;
    assert_says(&zero, &["call_seconds", "from 1 up"]);
    let small = bad_request(&server, "rotor/config", run_hostile(json!({"memory_mib": 8}))).await;
    assert_says(&small, &["memory_mib", "must be at least 16"]);
    assert!(!small.contains("rotor.toml"), "{small}");
    ok(&server, Method::POST, "rotor/config", run_hostile(json!({"call_seconds": "2"}))).await;
    let shown = ok(&server, Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(
        (&shown["limits"]["call_seconds"], &shown["limits"]["cpu_seconds"]),
        (&json!(2), &json!(3600))
    );

    let (rows, ring) = (db.rows().await, ok(&server, Method::GET, "rotor/keys", Value::Null).await);
    let started = std::time::Instant::now();
    let (status, reply) = call(&server, server.root_token(), Method::POST, "rotor/validate", json!({})).await;
    let elapsed = started.elapsed();
    // An error-shaped response, which OpenBao answers with 400 whatever the plugin's error type.
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let said = reply["errors"].to_string();
    assert_says(
        &said,
        &["the component was stopped", "without calling the host", "call_seconds in rotor/config"],
    );
    assert!(!said.contains("rotor.toml"), "{said}");
    eprintln!("the mount's 2 s budget stopped the loop after {elapsed:.2?} (the whole request)");
    assert!(elapsed < std::time::Duration::from_secs(2 + 8), "stopped only after {elapsed:?}");
    assert_eq!(db.rows().await, rows, "a stopped component changed rows");
    assert_eq!(ok(&server, Method::GET, "rotor/keys", Value::Null).await, ring);

    // Back to the built-in component (and default limits), the uploads can go.
    let builtin_again = json!({"component": "", "component_sha256": "", "call_seconds": 60});
    ok(&server, Method::POST, "rotor/config", builtin_again).await;
    for name in ["rotation-v2", "hostile"] {
        let path = format!("rotor/components/{name}");
        let (status, reply) = call(&server, server.root_token(), Method::DELETE, &path, Value::Null).await;
        assert!(status.is_success(), "{path}: {status} {reply}");
        let (status, _) = call(&server, server.root_token(), Method::GET, &path, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} is still there");
    }
    let (status, reply) = call(&server, server.root_token(), list, "rotor/components", Value::Null).await;
    assert!(status == StatusCode::NOT_FOUND || reply["data"]["keys"] == json!([]), "{status} {reply}");
    let validated = ok(&server, Method::POST, "rotor/validate", json!({})).await;
    assert_eq!(validated["valid"], 10, "{validated}");
}

/// The seed's KV v2 path (`secret/ibn/encryption-key`, field `key`), read at `?version=N`.
async fn seed_path_key(server: &impl Vault, version: u64) -> Option<Kek> {
    let path = format!("secret/data/ibn/encryption-key?version={version}");
    let (status, reply) = call(server, server.root_token(), Method::GET, &path, Value::Null).await;
    if status == StatusCode::NOT_FOUND {
        return None;
    }
    assert!(status.is_success(), "{path}: {status} {reply}");
    reply["data"]["data"]["key"].as_str().map(|key| Kek::from_hex(key).expect("a KEK in hex"))
}

/// Every row opens as an application reading the seed's path opens it: the key of the version
/// its envelope names, read from the path, then rotor's codec.
async fn every_wallet_opens_from_the_seed_path(server: &impl Vault, db: &TestDb, wallets: &Wallets) {
    let rows = db.rows().await;
    let mut keys = BTreeMap::new();
    for (id, wallet) in wallets.iter() {
        let ciphertext = &rows[id];
        let version: u64 = ciphertext
            .strip_prefix("rotor:v")
            .and_then(|rest| rest.split(':').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{id} is not in rotor's envelope: {ciphertext:.20}"));
        if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(version) {
            let kek = seed_path_key(server, version).await;
            slot.insert(kek.unwrap_or_else(|| panic!("no v{version} at the seed path")));
        }
        let opened =
            rotor_codec::open(&keys[&version], id, ciphertext).expect("opens with the seed path's key");
        assert_eq!(&*opened, wallet.as_slice(), "{id}");
    }
}

/// The seed path's versions: (current version, destroyed versions).
async fn seed_path_versions(server: &impl Vault) -> (u64, Vec<u64>) {
    let metadata = ok(server, Method::GET, "secret/metadata/ibn/encryption-key", Value::Null).await;
    let mut destroyed: Vec<u64> = metadata["versions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["destroyed"] == json!(true))
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    destroyed.sort_unstable();
    (metadata["current_version"].as_u64().unwrap(), destroyed)
}

/// Applications that read the seed's KV v2 path keep working while the mount owns the key ring:
/// every version the ring gains (rotation, rollback) reaches the path under the same number
/// before any wallet moves onto it, a prune destroys it there too, and a path holding another
/// key is refused, not overwritten. A mirror that cannot write stops the rotation before any
/// wallet moves; once it can, the next rotation brings the path in step and finishes.
#[tokio::test(flavor = "multi_thread")]
async fn the_mount_keeps_the_seeds_kv_path_in_step_for_applications_that_read_it() {
    let server = registered_and_mounted().await;
    let db = TestDb::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let wallets = seed(&db, &kek, 30).await;
    let hex = kek.to_hex().to_string();
    ok(&server, Method::POST, "secret/data/ibn/encryption-key", json!({"data": {"key": hex}})).await;
    ok(&server, Method::POST, "rotor/keys/import", json!({"key": hex})).await;
    let path_policy = |writes: bool| {
        let data = if writes { r#"["create", "read", "update"]"# } else { r#"["read"]"# };
        format!(
            r#"path "secret/data/ibn/encryption-key" {{ capabilities = {data} }}
               path "secret/metadata/ibn/encryption-key" {{ capabilities = ["read"] }}
               path "secret/destroy/ibn/encryption-key" {{ capabilities = ["update"] }}"#
        )
    };
    let [token] =
        <[String; 1]>::try_from(tokens_with(&server, &[("seed-path", &path_policy(true))]).await).unwrap();

    // Refused, and nothing written: no credential; a path holding another key.
    let no_credential = json!({"database_url": db.url, "mirror_address": server.addr()});
    assert_says(
        &bad_request(&server, "rotor/config", no_credential).await,
        &["needs a credential", "mirror_token"],
    );
    let other = Kek::generate().unwrap();
    ok(&server, Method::POST, "secret/data/team-b/kek", json!({"data": {"key": other.to_hex().to_string()}}))
        .await;
    let elsewhere = json!({
        "database_url": db.url, "mirror_address": server.addr(), "mirror_token": server.root_token(),
        "mirror_path": "team-b/kek",
    });
    let other_key = bad_request(&server, "rotor/config", elsewhere).await;
    assert_says(&other_key, &["secret/team-b/kek", "v1 holds another key", "nothing was written"]);
    let team_b = ok(&server, Method::GET, "secret/metadata/team-b/kek", Value::Null).await;
    assert_eq!(team_b["current_version"], 1, "{team_b}");

    let mirrored = json!({"database_url": db.url, "mirror_address": server.addr(), "mirror_token": token});
    ok(&server, Method::POST, "rotor/config", mirrored).await;
    let shown = ok(&server, Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(
        shown["mirror"],
        json!({"address": server.addr(), "mount": "secret", "path": "ibn/encryption-key", "auth": "token"})
    );
    assert!(!shown.to_string().contains(&token), "the mirror's token was shown: {shown}");
    // An operator whose policy keeps the mirror's fields to the mount's owner, as docs/PLUGIN.md
    // shows, may tune the mount but not point the mirror elsewhere.
    let fields = [
        "mirror_address",
        "mirror_token",
        "mirror_role_id",
        "mirror_secret_id",
        "mirror_mount",
        "mirror_path",
    ];
    let denied: Vec<String> = fields.iter().map(|field| format!("\"{field}\" = []")).collect();
    let hcl = format!(
        r#"path "rotor/config" {{ capabilities = ["read", "create", "update"] denied_parameters = {{ {} }} }}"#,
        denied.join(" ")
    );
    let [operator] =
        <[String; 1]>::try_from(tokens_with(&server, &[("config-operator", &hcl)]).await).unwrap();
    let elsewhere = json!({"mirror_address": "https://bao.example", "mirror_token": "t"});
    refused(&server, &operator, Method::POST, "rotor/config", elsewhere, StatusCode::FORBIDDEN).await;
    let (status, reply) =
        call(&server, &operator, Method::POST, "rotor/config", json!({"batch_size": 100})).await;
    assert!(status.is_success(), "{status} {reply}");
    assert_eq!(
        ok(&server, Method::GET, "rotor/config", Value::Null).await["mirror"]["path"],
        "ibn/encryption-key"
    );

    // A rotation: v2 reaches the path, and every wallet opens from it.
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["state"], "finished", "{status}");
    assert_eq!(seed_path_versions(&server).await, (2, vec![]));
    every_wallet_opens_from_the_seed_path(&server, &db, &wallets).await;
    assert_eq!(seed_path_key(&server, 1).await.as_ref(), Some(&kek), "v1 was rewritten");

    // A rollback: v3 holds v1's key, there too; a prune destroys v1 and v2 there too.
    ok(&server, Method::POST, "rotor/rollback", json!({})).await;
    rotation_done(&server).await;
    assert_eq!(seed_path_key(&server, 3).await.as_ref(), Some(&kek));
    every_wallet_opens_from_the_seed_path(&server, &db, &wallets).await;
    // The row that holds no wallet would keep any version from being pruned.
    db.execute("DELETE FROM wallets WHERE id = 'broken-1'").await;
    ok(&server, Method::POST, "rotor/prune", json!({"keep": 1})).await;
    assert_eq!(seed_path_versions(&server).await, (3, vec![1, 2]));
    every_wallet_opens_from_the_seed_path(&server, &db, &wallets).await;

    // The mirror may read but no longer write: the rotation stores v4 in the ring, cannot bring
    // it to the path, and stops before any wallet moves.
    ok(&server, Method::PUT, "sys/policies/acl/seed-path", json!({"policy": path_policy(false)})).await;
    let rows = db.rows().await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["state"], "failed", "{status}");
    assert_says(&status["last_run"]["error"].to_string(), &["secret/ibn/encryption-key", "in step"]);
    assert_eq!(db.rows().await, rows, "wallets moved onto a version the seed path lacks");
    assert_eq!(seed_path_versions(&server).await, (3, vec![1, 2]));
    // Nor does the mount seal an application's wallet under v4 meanwhile.
    let sealing = json!({"plaintext": b64(b"a new wallet")});
    let not_yet = bad_request(&server, "rotor/encrypt/wallet-new", sealing.clone()).await;
    assert_says(&not_yet, &["v4 has not reached secret/ibn/encryption-key", "could not open"]);

    // Allowed to write again, the next rotation brings the path in step first, then finishes.
    ok(&server, Method::PUT, "sys/policies/acl/seed-path", json!({"policy": path_policy(true)})).await;
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    let status = rotation_done(&server).await;
    assert_eq!(status["last_run"]["state"], "finished", "{status}");
    let ring = ok(&server, Method::GET, "rotor/keys", Value::Null).await;
    let latest = ring["latest_version"].as_u64().unwrap();
    assert_eq!(latest, 4, "the rotation that resumed made a version of its own: {ring}");
    assert_eq!(seed_path_versions(&server).await.0, latest);
    every_wallet_opens_from_the_seed_path(&server, &db, &wallets).await;
    let sealed = ok(&server, Method::POST, "rotor/encrypt/wallet-new", sealing).await;
    assert_eq!(sealed["key_version"], 4, "{sealed}");
    assert!(db.rows().await.values().all(|c| c.starts_with(&format!("rotor:v{latest}:"))));

    // As an AppRole instead of a token: the new credential replaces the old one.
    ok(&server, Method::POST, "sys/auth/approle", json!({"type": "approle"})).await;
    ok(&server, Method::POST, "auth/approle/role/mirror", json!({"token_policies": ["seed-path"]})).await;
    let role_id = ok(&server, Method::GET, "auth/approle/role/mirror/role-id", Value::Null).await;
    let secret_id = ok(&server, Method::POST, "auth/approle/role/mirror/secret-id", json!({})).await;
    let approle = json!({"mirror_role_id": role_id["role_id"], "mirror_secret_id": secret_id["secret_id"]});
    ok(&server, Method::POST, "rotor/config", approle).await;
    let shown = ok(&server, Method::GET, "rotor/config", Value::Null).await;
    assert_eq!(shown["mirror"]["auth"], "approle", "{shown}");
    let secret_id = secret_id["secret_id"].as_str().unwrap();
    assert!(!shown.to_string().contains(secret_id), "the secret id was shown: {shown}");
    ok(&server, Method::POST, "rotor/rotate", json!({})).await;
    assert_eq!(rotation_done(&server).await["last_run"]["state"], "finished");
    assert_eq!(seed_path_versions(&server).await, (5, vec![1, 2]));
    every_wallet_opens_from_the_seed_path(&server, &db, &wallets).await;

    // The stored credential never goes to another address, and keys never in clear text
    // beyond loopback.
    let moved = bad_request(&server, "rotor/config", json!({"mirror_address": "https://bao.example"})).await;
    assert_says(&moved, &["needs a credential for this address"]);
    let clear = json!({"mirror_address": "http://10.0.0.9:8200", "mirror_token": "t"});
    assert_says(&bad_request(&server, "rotor/config", clear).await, &["clear text", "https://"]);
    // A path whose v1 the ring can no longer compare (pruned) is left alone, not destroyed.
    let team_c = json!({"data": {"key": other.to_hex().to_string()}});
    ok(&server, Method::POST, "secret/data/team-c/kek", team_c).await;
    let team_c_config = json!({"mirror_path": "team-c/kek", "mirror_token": server.root_token()});
    let pointed = bad_request(&server, "rotor/config", team_c_config).await;
    assert_says(&pointed, &["secret/team-c/kek", "v1 is not a key the ring holds or the mirror wrote"]);
    let team_c = ok(&server, Method::GET, "secret/data/team-c/kek", Value::Null).await;
    assert_eq!(team_c["data"]["key"], other.to_hex().to_string(), "another team's key was touched");
    assert_eq!(
        ok(&server, Method::GET, "rotor/config", Value::Null).await["mirror"]["path"],
        "ibn/encryption-key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_the_mount_with_via_plugin() {
    let (server, db, wallets) = mounted_over_wallets(50).await;
    let rotor = |token: &str, args: &[&str]| {
        let mut command = Command::new(rotor_binary());
        command
            .args(["--via-plugin", "rotor/"])
            .args(args)
            .env("VAULT_ADDR", server.addr())
            .env("VAULT_TOKEN", token)
            .env_remove("DATABASE_URL")
            .env_remove("ROTOR_CONFIG");
        command.output().unwrap()
    };
    let root = server.root_token();

    // validate: the odd row named, exit 3 as `rotor validate` gives when wallets do not open.
    let out = rotor(root, &["--json", "validate"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["valid"].as_u64(), report["invalid_ids"].clone()),
        (Some(50), json!(["broken-1"])),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));

    // rotate follows the mount's rotation to its end and shows its report.
    let out = rotor(root, &["rotate"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_says(&said, &["inside OpenBao", "v1 → v2", "50 wallets moved", "not moved: broken-1"]);
    assert_eq!(out.status.code(), Some(3), "{said}");
    let rows = db.rows().await;
    every_wallet_decrypts(&server, &rows, &wallets).await;
    assert!(wallets.keys().all(|id| rows[id].starts_with("rotor:v2:")));
    let out = rotor(root, &["--json", "status"]);
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((status["current_kek_version"].as_u64(), &status["unfinished"]), (Some(2), &Value::Null));
    let out = rotor(root, &["history"]);
    assert_says(&String::from_utf8_lossy(&out.stdout), &["#1 v1 → v2 finished", "50 moved, 1 failed"]);

    // What the mount does not take is refused, naming it; nothing changes.
    let out = rotor(root, &["rotate", "--dry-run", "--workers", "3", "--output-format", "legacy"]);
    assert_fails_saying(&out, 1, &["--reencrypt only", "--dry-run", "--workers", "--output-format legacy"]);
    let out = rotor(root, &["validate", "--workers", "3"]);
    assert_fails_saying(&out, 1, &["rotor/config sets the workers"]);
    let out = rotor(root, &["abort"]);
    assert_fails_saying(&out, 1, &["validate, rotate, status and history"]);
    let out = rotor(root, &["--database-url", "sqlite:other.db", "status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_says(
        &String::from_utf8_lossy(&out.stderr),
        &["ignores --database-url", "rotor/config names the database"],
    );
    assert_says(&String::from_utf8_lossy(&out.stdout), &["current KEK in the mount: v2"]);

    // An application's token may not rotate through the CLI either.
    let app =
        &tokens_with(&server, &[("rotor-app", r#"path "rotor/decrypt/*" { capabilities = ["update"] }"#)])
            .await[0];
    let out = rotor(app, &["rotate"]);
    assert_fails_saying(&out, 1, &["permission denied", "rotor/rotate"]);
    assert_eq!(db.rows().await, rows, "a refused rotation changed rows");
    assert_eq!(ok(&server, Method::GET, "rotor/keys", Value::Null).await["latest_version"], 2);
}
