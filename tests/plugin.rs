//! rotor inside OpenBao: a real `bao server -dev` with a `plugin_directory` runs the
//! `rotor-plugin` binary, registered by its sha256, as a secrets engine. Every check goes
//! through OpenBao's own HTTP API or its CLI, as an operator or an application would.

use std::path::Path;
use std::process::Command;

use reqwest::{Method, StatusCode};
use rotor_codec::Kek;
use rotor_testkit::{FileServer, PluginDevServer, Vault, assert_says};
use serde_json::{Value, json};

const PLUGIN: &str = env!("CARGO_BIN_EXE_rotor-plugin");

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("reading the plugin")))
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
    let mut tokens = Vec::new();
    for (name, hcl) in policies {
        ok(&server, Method::PUT, &format!("sys/policies/acl/{name}"), json!({"policy": hcl})).await;
        let (status, reply) = call(
            &server,
            server.root_token(),
            Method::POST,
            "auth/token/create",
            json!({"policies": [name]}),
        )
        .await;
        assert!(status.is_success(), "{reply}");
        tokens.push(reply["auth"]["client_token"].as_str().unwrap().to_owned());
    }
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
