//! Vault misbehaving as deployments see it, against a real OpenBao behind a fault-injecting proxy
//! (tests/support/fault_proxy.rs): a load balancer's 502s during a rotation, a write applied but
//! answered 502, an outage longer than `retry-for`; a KV v1 mount; a stale `~/.vault-token`
//! beside the seed's WALLET_ENCRYPTION_KEY; malformed keys in environment variables; and who
//! Vault says rotor's token is.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use rotor::vault::{AppRole, VaultAuth, VaultClient, VaultConfig, VaultError};
use rotor_codec::Kek;
use rotor_testkit::fault_proxy::{FaultProxy, Times};
use rotor_testkit::{
    Kind, Wallets, World, assert_every_wallet_opens, assert_success, failure, json, json_success, text,
};
use serde_json::json;
use zeroize::Zeroizing;

/// The current KEK's path, for the proxy: `$` keeps its archive (`…-archive/vN`) out.
const KEK_WRITE: &str = "/v1/secret/data/ibn/encryption-key$";
const WALLETS: usize = 30;

/// A world with KEK v1 in Vault and legacy wallets; returns it with the wallets by id.
async fn world_with_wallets() -> (World, Wallets) {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    let expected = world.enroll_legacy(&kek, WALLETS).await;
    (world, expected)
}

/// `rotor` talking to Vault through the proxy.
fn through(world: &World, proxy: &FaultProxy) -> Command {
    let mut command = world.rotor();
    command.env("VAULT_ADDR", proxy.addr());
    command
}

/// KV versions of the KEK and the archive's entries: exactly what Vault holds.
async fn kek_versions(world: &World) -> (u64, Vec<String>) {
    let vault = world.vault_client();
    let metadata = vault.metadata("ibn/encryption-key").await.unwrap().expect("the KEK exists");
    let mut archive = vault.list("ibn/encryption-key-archive/").await.unwrap();
    archive.sort();
    (metadata.current_version, archive)
}

/// Every wallet on KEK v2, no unfinished rotation, and the journal holds one finished rotation.
async fn assert_rotated_to_v2(world: &World, expected: &Wallets) {
    let status = json_success(world.rotor().arg("status"));
    assert_eq!(status["unfinished"], json!(null), "{status:#}");
    assert_eq!(status["current_kek_version"], 2, "{status:#}");
    assert_eq!(status["key_versions"], json!({ "2": expected.len() }), "{status:#}");
    let history = json_success(world.rotor().arg("history"));
    let rotations: Vec<&serde_json::Value> =
        history.as_array().expect("a list").iter().filter(|line| line["source"] == "rotor").collect();
    assert_eq!(rotations.len(), 1, "{history:#}");
    assert_eq!(
        (rotations[0]["status"].clone(), rotations[0]["to_version"].clone()),
        (json!("finished"), json!(2))
    );
    assert_eq!(kek_versions(world).await, (2, vec!["v1".to_owned(), "v2".to_owned()]), "exactly one new KEK");
    assert_every_wallet_opens(world, expected).await;
}

/// A load balancer answers 502 to the KEK write for a few seconds (a fail-over): rotor keeps
/// retrying, says so once, and the rotation finishes with exactly one new KEK.
#[tokio::test(flavor = "multi_thread")]
async fn a_502_on_the_kek_write_is_ridden_out() {
    let (world, expected) = world_with_wallets().await;
    let proxy = FaultProxy::start(world.vault.addr());
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body>\r\n</html>\r\n";
    let rule = proxy.fail_with_body(Method::POST, KEK_WRITE, 502, page, Times::Always);

    let rotor = through(&world, &proxy)
        .args(["rotate", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.hits(rule) == 0 {
        assert!(Instant::now() < deadline, "rotor never wrote the KEK");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.clear();
    let out = rotor.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["to_version"].clone(), report["rotated"].clone()), (json!(2), json!(WALLETS)));
    assert!(proxy.hits(rule) >= 3, "retried with backoff: {} attempts", proxy.hits(rule));
    assert_eq!(proxy.seen(Method::POST, KEK_WRITE), proxy.hits(rule) + 1, "one write got through");
    // One warning for the request, naming what Vault (the proxy) answered; not one per attempt.
    assert_eq!(stderr.matches("retrying for up to").count(), 1, "{stderr}");
    assert!(stderr.contains("Vault answered HTTP 502: Bad Gateway, body: \"<html> <head>"), "{stderr}");
    assert_rotated_to_v2(&world, &expected).await;
}

/// Vault applies the KEK write but the answer is lost (a 502 from the proxy): the retry meets a
/// check-and-set mismatch, recognises its own write, and goes on with it: still one new KEK.
#[tokio::test(flavor = "multi_thread")]
async fn a_kek_write_applied_but_answered_502_is_recognised() {
    let (world, expected) = world_with_wallets().await;
    let proxy = FaultProxy::start(world.vault.addr());
    let rule = proxy.apply_then_fail(Method::POST, KEK_WRITE, 502, Times::Next(1));

    let (out, report) = json(through(&world, &proxy).arg("rotate"));
    let stderr = text(&out.stderr);
    assert_success(&out);
    assert_eq!(proxy.hits(rule), 1);
    assert_eq!(proxy.seen(Method::POST, KEK_WRITE), 2, "the write was sent again once");
    assert_eq!((report["to_version"].clone(), report["rotated"].clone()), (json!(2), json!(WALLETS)));
    assert!(stderr.contains("answer was lost"), "{stderr}");
    assert_rotated_to_v2(&world, &expected).await;
}

/// Vault stays down longer than `retry-for`: rotor gives up in bounded time, saying what Vault
/// answered, how long it tried and what to do; no wallet changed; once Vault is back, `status`
/// works and `rotor rotate` finishes.
#[tokio::test(flavor = "multi_thread")]
async fn vault_down_longer_than_retry_for_fails_clearly_then_the_next_run_finishes() {
    let (world, expected) = world_with_wallets().await;
    let rows = world.rows().await;
    let proxy = FaultProxy::start(world.vault.addr());
    proxy.fail(Method::POST, KEK_WRITE, 502, Times::Always);

    let started = Instant::now();
    let (out, error) = json(through(&world, &proxy).arg("rotate").env("ROTOR_VAULT_RETRY_FOR", "2s"));
    let took = started.elapsed();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(took < Duration::from_secs(20), "gave up after {took:?}");
    let message = error["error"].as_str().expect("a JSON error");
    for expected_text in [
        "Vault answered HTTP 502 for secret/data/ibn/encryption-key: Bad Gateway, with an empty body",
        "attempts over",
        "load balancer",
        "retry-for",
    ] {
        assert!(message.contains(expected_text), "{expected_text:?} missing: {message}");
        assert!(stderr.contains(expected_text), "{expected_text:?} missing: {stderr}");
    }
    assert!(!message.contains(": (") && !message.trim_end().ends_with(':'), "an empty tail: {message}");
    assert_eq!(world.rows().await, rows, "a wallet changed");
    assert_eq!(kek_versions(&world).await, (1, vec!["v1".to_owned()]), "no new KEK");

    proxy.clear();
    json_success(through(&world, &proxy).arg("status"));
    let report = json_success(through(&world, &proxy).arg("rotate"));
    assert_eq!(report["to_version"], 2, "{report:#}");
    assert_rotated_to_v2(&world, &expected).await;
}

/// A KV v1 mount holding the KEK: rotor names the engine version and the fix (not "run
/// migrate-kek"), and the fix works.
#[tokio::test(flavor = "multi_thread")]
async fn kv_v1_mount_is_named_with_its_fix() {
    let world = World::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let expected = world.enroll_legacy(&kek, 5).await;
    world
        .vault_admin(Method::POST, "sys/mounts/kv1", json!({ "type": "kv", "options": { "version": "1" } }))
        .await;
    world.vault_admin(Method::POST, "kv1/ibn/encryption-key", json!({ "key": kek.to_hex().as_str() })).await;

    let rows = world.rows().await;
    for command in ["validate", "rotate"] {
        let (out, error) = json(world.rotor().args([command, "--kv-mount", "kv1"]));
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1);
        for expected_text in ["`kv1/` is KV version 1", "bao kv enable-versioning kv1/", "--kv-mount"] {
            assert!(stderr.contains(expected_text), "{expected_text:?} missing: {stderr}");
        }
        assert!(error["error"].as_str().unwrap().contains("KV version 1"), "{error}");
        assert!(!stderr.contains("migrate-kek") && !stderr.contains("no KEK"), "{stderr}");
    }
    assert_eq!(world.rows().await, rows);

    // Without the start-up check (a library caller), a read that finds nothing says the same.
    let client = VaultClient::new(VaultConfig {
        mount: "kv1".into(),
        ..VaultConfig::with_token(world.vault.addr(), world.vault.root_token())
    })
    .unwrap();
    let err = client.read("ibn/encryption-key", None).await.unwrap_err();
    assert!(matches!(err, VaultError::KvV1 { .. }), "{err}");

    // The advice works: upgraded in place, the key is version 1 and every wallet opens.
    world.vault_admin(Method::POST, "sys/mounts/kv1/tune", json!({ "options": { "version": "2" } })).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (out, report) = json(world.rotor().args(["validate", "--kv-mount", "kv1"]));
        if out.status.success() {
            break report;
        }
        assert!(Instant::now() < deadline, "still failing after the upgrade: {}", text(&out.stderr));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((report["valid"].clone(), report["invalid"].clone()), (json!(5), json!(0)), "{report:#}");
    let upgraded = client.read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!((upgraded.version, upgraded.data["key"].as_str()), (1, kek.to_hex().as_str()));
    assert_eq!(world.rows().await, rows);
    drop(expected);
}

/// A `~/.vault-token` that Vault rejects, beside the seed's WALLET_ENCRYPTION_KEY: read-only
/// commands warn naming the file and use the variable; commands that write refuse, naming the
/// file and what to do. A valid token file wins over the variable.
#[tokio::test(flavor = "multi_thread")]
async fn stale_token_file_falls_back_to_the_env_kek_for_reads_only() {
    let world = World::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let wallets = world.enroll_legacy(&kek, 12).await;
    let token_file = world.scratch.join(".vault-token");
    let stale = "s.StaleTokenFromLastWeek42";
    std::fs::write(&token_file, format!("{stale}\n")).unwrap();
    let stale_file_and_env_kek = || {
        let mut command = world.rotor();
        command.env_remove("VAULT_TOKEN").env("WALLET_ENCRYPTION_KEY", kek.to_hex().as_str());
        command
    };

    let (out, report) = json(stale_file_and_env_kek().arg("validate"));
    let stderr = text(&out.stderr);
    assert_success(&out);
    assert_eq!((report["valid"].clone(), report["invalid"].clone()), (json!(12), json!(0)), "{report:#}");
    let file = token_file.display().to_string();
    assert!(stderr.contains(&format!("Vault rejected the token in {file}")), "{stderr}");
    assert!(stderr.contains("using the KEK in WALLET_ENCRYPTION_KEY instead, read-only"), "{stderr}");
    let (id, plaintext) = wallets.iter().nth(4).unwrap();
    let out = stale_file_and_env_kek().args(["open", id]).output().unwrap();
    assert_success(&out);
    assert_eq!(&out.stdout, plaintext);

    let rows = world.rows().await;
    let (out, error) = json(stale_file_and_env_kek().arg("rotate"));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("Vault rejected the token in {file}")), "{stderr}");
    assert!(stderr.contains("log in again") && stderr.contains("remove the file"), "{stderr}");
    assert!(error["error"].as_str().unwrap().contains(&file), "{error}");
    assert_eq!(world.rows().await, rows, "a refused rotation changed wallets");
    for output in [text(&out.stdout), stderr] {
        assert!(
            !output.contains(stale) && !output.contains(kek.to_hex().as_str()),
            "a secret leaked: {output}"
        );
    }

    // A valid token in the file: Vault is the source, and the variable is said to be ignored.
    world.migrate_kek(&kek);
    std::fs::write(&token_file, world.vault.root_token()).unwrap();
    let (out, report) = json(stale_file_and_env_kek().arg("validate"));
    assert_success(&out);
    assert_eq!(report["valid"], 12, "{report:#}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WALLET_ENCRYPTION_KEY is set but ignored"), "{stderr}");
    assert!(!stderr.contains("Vault rejected the token"), "{stderr}");
}

/// A malformed KEK in WALLET_ENCRYPTION_KEY or in `migrate-kek --from-env VAR`: the error names
/// the variable and what is wrong, never the value; nothing reaches Vault.
#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_in_variables_are_named_not_shown() {
    let world = World::new(Kind::Sqlite).await;
    world.enroll_legacy(&Kek::generate().unwrap(), 3).await;
    let too_short = "FakeKek0123abcdef";
    let not_hex = "FakeKekZ".repeat(8);

    for (value, wrong) in
        [(too_short, "it has 17 characters, not all hex"), (&not_hex, "it has 64 characters, not all hex")]
    {
        let mut validate = world.rotor();
        validate.args(["validate", "--json"]).env_remove("VAULT_TOKEN").env("WALLET_ENCRYPTION_KEY", value);
        let mut migrate = world.migrate_kek_from_env("ROTOR_NEW_KEK", value);
        migrate.arg("--json");
        for (variable, command) in [("WALLET_ENCRYPTION_KEY", &mut validate), ("ROTOR_NEW_KEK", &mut migrate)]
        {
            let out = command.output().unwrap();
            let (code, stderr) = failure(&out);
            assert_eq!(code, 1);
            let named = format!("{variable} does not hold a KEK: it must be 64 hex characters");
            assert!(stderr.contains(&named) && stderr.contains(wrong), "{stderr}");
            for output in [text(&out.stdout), stderr] {
                assert!(!output.contains("FakeKek"), "the value leaked: {output}");
            }
        }
    }
    let out = world.rotor().args(["migrate-kek", "--from-env", "ROTOR_UNSET_KEK"]).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("environment variable ROTOR_UNSET_KEK is not set"), "{stderr}");
    assert!(
        world.vault_client().metadata("ibn/encryption-key").await.unwrap().is_none(),
        "Vault was written"
    );
}

/// `retry-for` in rotor.toml, overridden by ROTOR_VAULT_RETRY_FOR, shown by `rotor config check`;
/// a malformed value is named.
#[tokio::test(flavor = "multi_thread")]
async fn retry_for_is_a_setting() {
    let world = World::new(Kind::Sqlite).await;
    let config = world.scratch.join("rotor.toml");
    std::fs::write(&config, "[vault]\nretry-for = \"2m 30s\"\n").unwrap();
    let check =
        |command: &mut Command| json_success(command.args(["config", "check"]).env("ROTOR_CONFIG", &config));
    assert_eq!(check(&mut world.rotor())["vault"]["retry_for"], "2m 30s");
    assert_eq!(check(world.rotor().env("ROTOR_VAULT_RETRY_FOR", "5s"))["vault"]["retry_for"], "5s");
    let (out, shown) = json(
        world
            .rotor()
            .args(["config", "check"])
            .env("ROTOR_CONFIG", &config)
            .env("ROTOR_VAULT_RETRY_FOR", "a while"),
    );
    assert_eq!(failure(&out).0, 1);
    assert!(
        shown["problems"].to_string().contains(r#"ROTOR_VAULT_RETRY_FOR = \"a while\" is not a duration"#),
        "{shown:#}"
    );

    std::fs::write(&config, "[vault]\nretry-for = \"soonish\"\n").unwrap();
    let out = world.rotor().args(["config", "check"]).env("ROTOR_CONFIG", &config).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("vault.retry-for = \"soonish\" is not a duration"), "{stderr}");
}

/// `VaultClient::identity`: who Vault says the token is, for root and for an AppRole login;
/// never the token or the secret ID.
#[tokio::test(flavor = "multi_thread")]
async fn identity_names_the_token_holder() {
    let world = World::new(Kind::Sqlite).await;
    let root = world.vault_client().identity().await.unwrap();
    assert_eq!(root.display_name, "token");
    assert_eq!((root.entity_id.clone(), root.role_name.clone()), (None, None));
    assert_eq!(root.policies, vec!["root".to_owned()]);
    assert_eq!(root.to_string(), "token (policies root)");

    let policy = r#"path "secret/data/ibn/*" { capabilities = ["read"] }"#;
    world.vault_admin(Method::POST, "sys/policies/acl/kek-reader", json!({ "policy": policy })).await;
    world.vault_admin(Method::POST, "sys/auth/approle", json!({ "type": "approle" })).await;
    world
        .vault_admin(
            Method::POST,
            "auth/approle/role/rotor-runner",
            json!({ "token_policies": ["kek-reader"] }),
        )
        .await;
    let role_id = world.vault_admin(Method::GET, "auth/approle/role/rotor-runner/role-id", json!({})).await;
    let secret_id =
        world.vault_admin(Method::POST, "auth/approle/role/rotor-runner/secret-id", json!({})).await;
    let secret_id = secret_id["data"]["secret_id"].as_str().unwrap().to_owned();
    let vault = VaultClient::new(VaultConfig {
        auth: VaultAuth::AppRole(AppRole {
            mount: "approle".into(),
            role_id: Zeroizing::new(role_id["data"]["role_id"].as_str().unwrap().to_owned()),
            secret_id: Zeroizing::new(secret_id.clone()),
        }),
        ..VaultConfig::with_token(world.vault.addr(), "unused")
    })
    .unwrap();
    let identity = vault.identity().await.unwrap();
    assert_eq!(identity.display_name, "approle");
    assert_eq!(identity.role_name.as_deref(), Some("rotor-runner"));
    let entity = identity.entity_id.clone().expect("an AppRole login has an entity");
    assert!(identity.policies.contains(&"kek-reader".to_owned()), "{identity:?}");
    let shown = identity.to_string();
    assert!(
        shown.starts_with("approle (AppRole role rotor-runner, entity ") && shown.contains(&entity),
        "{shown}"
    );
    assert!(!format!("{shown} {identity:?}").contains(&secret_id), "the secret ID leaked");
    let accessor = vault.token_stats().accessor.unwrap();
    assert!(!format!("{shown} {identity:?}").contains(&accessor));
}

/// What the client sends again: a read held past its timeout (a node stuck mid fail-over) is
/// retried and succeeds; a write without check-and-set answered 502 is not (Vault may have
/// applied it, and a replay would add a version), and its error says what Vault answered.
#[tokio::test(flavor = "multi_thread")]
async fn only_what_may_be_replayed_is_retried() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    let proxy = FaultProxy::start(world.vault.addr());
    let vault = VaultClient::new(VaultConfig {
        timeout: Duration::from_millis(500),
        ..VaultConfig::with_token(&proxy.addr(), world.vault.root_token())
    })
    .unwrap();
    vault.check().await.unwrap();

    let held = proxy.hold(
        Method::GET,
        "/v1/secret/data/ibn/encryption-key$",
        Duration::from_secs(3),
        Times::Next(1),
    );
    let started = Instant::now();
    let secret = vault.read("ibn/encryption-key", None).await.unwrap().expect("the KEK");
    assert_eq!(secret.version, 1);
    assert_eq!(proxy.hits(held), 1);
    assert_eq!(proxy.seen(Method::GET, "/v1/secret/data/ibn/encryption-key$"), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "waited out the hold: {:?}", started.elapsed());

    let failed = proxy.fail(Method::POST, "/v1/secret/data/app/setting$", 502, Times::Next(1));
    let data = BTreeMap::from([("value".to_owned(), Zeroizing::new("on".to_owned()))]);
    let err = vault.write("app/setting", &data, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable { status: 502, .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("HTTP 502 for secret/data/app/setting: Bad Gateway, with an empty body (1 attempt, not retried since Vault may have applied it)"),
        "{message}"
    );
    assert_eq!((proxy.hits(failed), proxy.seen(Method::POST, "/v1/secret/data/app/setting$")), (1, 1));
    assert!(vault.metadata("app/setting").await.unwrap().is_none(), "nothing was written");
    // With check-and-set the same 502 is retried, and the write lands once.
    proxy.fail(Method::POST, "/v1/secret/data/app/setting$", 502, Times::Next(2));
    assert_eq!(vault.write("app/setting", &data, Some(0)).await.unwrap(), 1);
    assert_eq!(vault.metadata("app/setting").await.unwrap().unwrap().current_version, 1);
}
