//! Logging in to a real OpenBao as an operator's deployment would: AppRole with the policies
//! `rotor policy` prints, token renewal and new logins during long runs, TLS with VAULT_CACERT and
//! VAULT_SKIP_VERIFY, and the seed's WALLET_ENCRYPTION_KEY fallback (read-only).

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use rotor::vault::{AppRole, VaultAuth, VaultClient, VaultConfig};
use rotor_codec::Kek;
use rotor_testkit::fault_proxy::{FaultProxy, Times};
use rotor_testkit::{Kind, World, assert_success, failure, json, json_success, text};
use serde_json::json;
use zeroize::Zeroizing;

/// Installs the policy `rotor policy <role>` prints in OpenBao, as `rotor-<role>`.
async fn write_policy(world: &World, role: &str) {
    let out = world.rotor().args(["policy", role]).output().unwrap();
    assert_success(&out);
    let policy = text(&out.stdout);
    assert!(policy.starts_with(&format!("# rotor-{role}: ")), "{policy}");
    let name = format!("rotor-{role}");
    world.vault_admin(Method::POST, &format!("sys/policies/acl/{name}"), json!({ "policy": policy })).await;
}

async fn enable_approle(world: &World) {
    world.vault_admin(Method::POST, "sys/auth/approle", json!({ "type": "approle" })).await;
}

/// Creates an AppRole role whose tokens carry `policy` only (no `default` policy, so the policy
/// file must grant everything rotor needs); returns (role_id, secret_id).
async fn role(world: &World, name: &str, policy: &str, ttl: &str, max_ttl: &str) -> (String, String) {
    let settings = json!({
        "token_policies": [policy],
        "token_no_default_policy": true,
        "token_ttl": ttl,
        "token_max_ttl": max_ttl,
    });
    world.vault_admin(Method::POST, &format!("auth/approle/role/{name}"), settings).await;
    let role_id =
        world.vault_admin(Method::GET, &format!("auth/approle/role/{name}/role-id"), json!({})).await;
    let secret_id =
        world.vault_admin(Method::POST, &format!("auth/approle/role/{name}/secret-id"), json!({})).await;
    (
        role_id["data"]["role_id"].as_str().unwrap().to_owned(),
        secret_id["data"]["secret_id"].as_str().unwrap().to_owned(),
    )
}

/// A world with a KEK and an AppRole role `name` holding the auditor policy only, whose tokens
/// live `ttl` and at most `max_ttl`; the role's (role_id, secret_id).
async fn auditor_role(name: &str, ttl: &str, max_ttl: &str) -> (World, String, String) {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    write_policy(&world, "auditor").await;
    enable_approle(&world).await;
    let (role_id, secret_id) = role(&world, name, "rotor-auditor", ttl, max_ttl).await;
    (world, role_id, secret_id)
}

/// A client of the Vault at `addr` that logs in through AppRole at `approle/`.
fn approle_client(addr: &str, role_id: String, secret_id: String) -> VaultClient {
    VaultClient::new(VaultConfig {
        auth: VaultAuth::AppRole(AppRole {
            mount: "approle".into(),
            role_id: Zeroizing::new(role_id),
            secret_id: Zeroizing::new(secret_id),
        }),
        ..VaultConfig::with_token(addr, "unused")
    })
    .unwrap()
}

/// `rotor` logged in through AppRole from the environment alone: no token anywhere (HOME is the
/// world's scratch folder, which holds no ~/.vault-token).
fn rotor_as(world: &World, (role_id, secret_id): &(String, String)) -> Command {
    let mut command = world.rotor();
    command.env_remove("VAULT_TOKEN").env("VAULT_ROLE_ID", role_id).env("VAULT_SECRET_ID", secret_id);
    command
}

/// The runner policy is enough to rotate, roll back and prune; the auditor policy is enough to
/// validate, show status and history, and rotate is refused before anything changes, with a
/// "permission denied" naming the path and the policy that grants it.
#[tokio::test(flavor = "multi_thread")]
async fn approle_runner_rotates_and_auditor_only_reads() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    let expected = world.enroll_legacy(&kek, 40).await;
    write_policy(&world, "runner").await;
    write_policy(&world, "auditor").await;
    enable_approle(&world).await;
    let runner = role(&world, "rotor-runner", "rotor-runner", "5m", "1h").await;
    let auditor = role(&world, "rotor-auditor", "rotor-auditor", "5m", "1h").await;

    // The auditor reads everything it needs.
    for command in ["validate", "status", "history"] {
        let _ = json_success(rotor_as(&world, &auditor).arg(command));
    }
    // ... and may not rotate: refused before the journal or Vault changed.
    let out = rotor_as(&world, &auditor).arg("rotate").output().unwrap();
    let (code, stderr) = failure(&out);
    eprintln!("rotor rotate as auditor (exit {code}):\n{stderr}");
    assert_eq!(code, 1);
    assert!(stderr.contains("permission denied on secret/data/ibn/encryption-key"), "{stderr}");
    assert!(stderr.contains("create, update") && stderr.contains("`rotor policy runner`"), "{stderr}");
    assert!(!stderr.contains(&auditor.1), "the secret ID leaked: {stderr}");
    let (_, status) = json(world.rotor().arg("status"));
    assert_eq!(status["unfinished"], json!(null), "{status:#}");
    assert_eq!(status["current_kek_version"], 1, "{status:#}");
    let out = rotor_as(&world, &auditor).args(["prune", "--keep", "1"]).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("permission denied on secret/"), "{stderr}");

    // The runner rotates, rolls back and prunes.
    let rotated = json_success(rotor_as(&world, &runner).arg("rotate"));
    assert_eq!((rotated["to_version"].clone(), rotated["rotated"].clone()), (json!(2), json!(40)));
    let rolled_back = json_success(rotor_as(&world, &runner).arg("rollback"));
    assert_eq!(rolled_back["restored_version"], 1, "{rolled_back:#}");
    let pruned = json_success(rotor_as(&world, &runner).args(["prune", "--keep", "1"]));
    assert_eq!(pruned["destroyed"], json!([1, 2]), "{pruned:#}");
    let report = json_success(rotor_as(&world, &auditor).arg("validate"));
    assert_eq!(report["key_versions"], json!({ "3": 40 }), "{report:#}");
    rotor_testkit::assert_every_wallet_opens(&world, &expected).await;

    // A wrong secret ID: the login fails with what to check, and the ID is not shown.
    let wrong = (runner.0.clone(), "00000000-0000-0000-0000-000000000000".to_owned());
    let out = rotor_as(&world, &wrong).arg("validate").output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("AppRole login at auth/approle/login failed"), "{stderr}");
    assert!(stderr.contains("VAULT_SECRET_ID"), "{stderr}");
    // Half an AppRole, or AppRole and a token at once, is a configuration error.
    let out = rotor_as(&world, &runner).arg("validate").env("VAULT_TOKEN", "root").output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("both VAULT_TOKEN and VAULT_ROLE_ID/VAULT_SECRET_ID are set"), "{stderr}");
    let out = world
        .rotor()
        .arg("validate")
        .env_remove("VAULT_TOKEN")
        .env("VAULT_ROLE_ID", &runner.0)
        .output()
        .unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("VAULT_SECRET_ID is not"), "{stderr}");
}

/// A client logged in through AppRole keeps working past its token's TTL (renewed two thirds in,
/// while idle), past its max TTL (logged in again), and after its token is revoked (logged in
/// again on the next request).
#[tokio::test(flavor = "multi_thread")]
async fn approle_token_is_renewed_and_replaced() {
    let (world, role_id, secret_id) = auditor_role("short", "4s", "10s").await;
    let vault = approle_client(world.vault.addr(), role_id, secret_id);
    vault.check().await.unwrap();
    assert_eq!(vault.token_stats().logins, 1);

    // Idle for longer than the 4 s TTL: only a renewal in the background keeps the token valid.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(vault.read("ibn/encryption-key", None).await.unwrap().is_some());
    let stats = vault.token_stats();
    eprintln!("after 6 s: {stats:?}");
    assert!(stats.renewals >= 1, "{stats:?}");
    assert_eq!(stats.logins, 1, "renewed, not replaced: {stats:?}");

    // Past the 10 s max TTL no renewal helps: the client logged in again before it ran out.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(vault.read("ibn/encryption-key", None).await.unwrap().is_some());
    let stats = vault.token_stats();
    eprintln!("after 12 s: {stats:?}");
    assert!(stats.logins >= 2, "{stats:?}");

    // Revoked behind its back: the next request logs in again and succeeds.
    let accessor = stats.accessor.clone().unwrap();
    world.vault_admin(Method::POST, "auth/token/revoke-accessor", json!({ "accessor": accessor })).await;
    assert!(vault.read("ibn/encryption-key", None).await.unwrap().is_some());
    let after = vault.token_stats();
    assert_eq!(after.logins, stats.logins + 1, "{after:?}");
    assert_ne!(after.accessor, stats.accessor);
}

/// A renewal refused with a bare 403 (no "invalid token" in the answer, as a proxy or an older
/// server may say it) while lookup-self is refused too: the token is dead, and the renewer logs
/// in again. It used to ask lookup-self through the request path, which logs in again under the
/// lock the renewer already held, and every later request waited for ever.
#[tokio::test(flavor = "multi_thread")]
async fn approle_renewal_refused_with_a_bare_403_logs_in_again() {
    let (world, role_id, secret_id) = auditor_role("refused", "4s", "1h").await;
    let proxy = FaultProxy::start(world.vault.addr());
    let vault = approle_client(&proxy.addr(), role_id, secret_id);
    vault.check().await.unwrap();
    let denied = r#"{"errors":["permission denied"]}"#;
    let renewals = proxy.fail_with_body(Method::POST, "auth/token/renew-self", 403, denied, Times::Always);
    proxy.fail_with_body(Method::GET, "auth/token/lookup-self", 403, denied, Times::Always);

    // Past the 4 s TTL: the renewal (due ~2.7 s in) was refused, and the renewer logged in again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let read = tokio::time::timeout(Duration::from_secs(20), vault.read("ibn/encryption-key", None)).await;
    let read = read.expect("a read after a refused renewal must not hang");
    assert!(read.unwrap().is_some());
    assert!(proxy.hits(renewals) >= 1, "the renewal should have been tried");
    let stats = vault.token_stats();
    assert!(stats.logins >= 2, "a refused renewal of an AppRole token means a new login: {stats:?}");
}

/// HTTPS with a private CA: untrusted it fails naming VAULT_CACERT; VAULT_CACERT makes it work;
/// VAULT_SKIP_VERIFY works only when set to a true value, and warns.
#[tokio::test(flavor = "multi_thread")]
async fn tls_with_cacert_or_explicit_skip_verify() {
    let world = World::new_tls(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    world.enroll_legacy(&kek, 5).await;

    let out = world.rotor().arg("validate").output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach Vault") && stderr.contains("VAULT_CACERT"), "{stderr}");
    let out = world.rotor().arg("validate").env("VAULT_SKIP_VERIFY", "false").output().unwrap();
    failure(&out);
    let out = world.rotor().arg("validate").env("VAULT_SKIP_VERIFY", "maybe").output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("VAULT_SKIP_VERIFY=\"maybe\" is neither true nor false"), "{stderr}");

    let out = world
        .migrate_kek_from_env("KEK", kek.to_hex().as_str())
        .env("VAULT_CACERT", world.vault.ca_cert())
        .output()
        .unwrap();
    assert_success(&out);
    let out = world.rotor().arg("validate").env("VAULT_CACERT", world.vault.ca_cert()).output().unwrap();
    assert_success(&out);
    assert!(!text(&out.stderr).contains("VAULT_SKIP_VERIFY"), "{}", text(&out.stderr));

    let out = world.rotor().arg("validate").env("VAULT_SKIP_VERIFY", "true").output().unwrap();
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("VAULT_SKIP_VERIFY is set") && stderr.contains("VAULT_CACERT instead"),
        "{stderr}"
    );
}

/// The seed's fallback: with no Vault credentials, validate and open read the KEK from
/// WALLET_ENCRYPTION_KEY (and say so); rotate refuses and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn seed_env_kek_is_read_only() {
    let world = World::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let wallets = world.enroll_legacy(&kek, 12).await;
    let env_only = || {
        let mut command = world.rotor();
        command.env_remove("VAULT_TOKEN").env("WALLET_ENCRYPTION_KEY", kek.to_hex().as_str());
        command
    };

    let (out, report) = json(env_only().arg("validate"));
    assert_success(&out);
    assert_eq!((report["valid"].clone(), report["invalid"].clone()), (json!(12), json!(0)), "{report:#}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("using the KEK in WALLET_ENCRYPTION_KEY") && stderr.contains("read-only"),
        "{stderr}"
    );
    assert!(stderr.contains("rotor migrate-kek --from-env WALLET_ENCRYPTION_KEY"), "{stderr}");
    assert!(!stderr.contains(kek.to_hex().as_str()), "the KEK leaked: {stderr}");
    let (id, plaintext) = wallets.iter().nth(3).unwrap();
    let out = env_only().args(["open", id]).output().unwrap();
    assert_success(&out);
    assert_eq!(&out.stdout, plaintext);

    let rows = world.rows().await;
    for command in
        [vec!["rotate"], vec!["rollback", "--to", "1"], vec!["prune", "--keep", "1"], vec!["seal", "x"]]
    {
        let out = env_only().args(&command).output().unwrap();
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1, "{command:?}: {stderr}");
        assert!(stderr.contains("only read by `rotor validate` and `rotor open`"), "{command:?}: {stderr}");
        assert!(stderr.contains("rotor migrate-kek --from-env WALLET_ENCRYPTION_KEY"), "{stderr}");
    }
    assert_eq!(world.rows().await, rows, "a refused command changed wallets");

    let out = env_only().arg("validate").env("WALLET_ENCRYPTION_KEY", "abc123").output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(
        stderr.contains("WALLET_ENCRYPTION_KEY does not hold a KEK: it must be 64 hex characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("abc123"), "{stderr}");

    // With Vault credentials, Vault is the source and the variable is ignored (with a warning).
    world.migrate_kek(&kek);
    let out = world.rotor().arg("validate").env("WALLET_ENCRYPTION_KEY", "ff".repeat(32)).output().unwrap();
    assert_success(&out);
    assert!(text(&out.stderr).contains("WALLET_ENCRYPTION_KEY is set but ignored"), "{}", text(&out.stderr));
}

/// A plain token with a TTL (as `bao login` or an orchestrator hands out) is renewed in the
/// background too, so an idle stretch longer than its TTL does not end the run.
#[tokio::test(flavor = "multi_thread")]
async fn short_lived_token_is_renewed() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    write_policy(&world, "auditor").await;
    let created = world
        .vault_admin(
            Method::POST,
            "auth/token/create",
            json!({ "policies": ["rotor-auditor"], "no_default_policy": true, "ttl": "4s", "explicit_max_ttl": "1m" }),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap();
    let vault = VaultClient::new(VaultConfig::with_token(world.vault.addr(), token)).unwrap();
    vault.check().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(vault.read("ibn/encryption-key", None).await.unwrap().is_some(), "the token expired");
    let stats = vault.token_stats();
    assert!(stats.renewals >= 1 && stats.logins == 0, "{stats:?}");
}
