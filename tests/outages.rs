//! Vault and the database failing mid-rotation: OpenBao killed (and restarted, coming back
//! sealed), PostgreSQL backends terminated. Real servers; whatever fails, every wallet still opens
//! and the next `rotor rotate` finishes the job.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rotor::demo::wallets::fabric_identity;
use rotor::store::WalletRow;
use rotor_codec::Kek;
use rotor_testkit::{
    Kind, Vault, Wallets, World, assert_every_wallet_opens, assert_success, failure, json_success,
    on_sqlite_and_postgres, text,
};
use serde_json::json;
use sqlx::{Connection, PgConnection};

const WALLETS: usize = 1500;
/// Legacy wallets placed after the envelope ones in the first test.
const LEGACY: u64 = 100;

/// `rotor rotate` in small batches, so that it is still moving wallets when the outage hits.
fn start_rotation<V: Vault>(world: &World<V>) -> Child {
    world
        .rotor()
        // One worker walks the key ranges in id order, so that where the walk is (envelope
        // wallets first, legacy ones last) follows from what it has moved.
        .args(["rotate", "--batch-size", "10", "--workers", "1", "--json"])
        // A killed OpenBao is retried for `retry-for` (60 s by default) before rotor gives up.
        .env("ROTOR_VAULT_RETRY_FOR", "5s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` (`-STOP`, `-CONT`) to `rotor`.
fn signal(rotor: &Child, signal: &str) {
    let sent = Command::new("kill").args([signal, &rotor.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill {signal} failed");
}

/// Polls `moving` until it holds: the new KEK is in Vault and the first batches are committed.
async fn wait_until_moving(rotor: &mut Child, mut moving: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !moving().await {
        if let Some(status) = rotor.try_wait().unwrap() {
            panic!("rotor ended ({status}) before it moved a wallet");
        }
        assert!(Instant::now() < deadline, "rotor moved no wallet within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wallets an application sealed in rotor's envelope format under KEK v1; returns (id, plaintext).
async fn enroll_envelopes<V: Vault>(
    world: &World<V>,
    kek: &Kek,
    prefix: &str,
    count: usize,
) -> Vec<(String, Vec<u8>)> {
    let wallets: Vec<(String, Vec<u8>)> = (0..count)
        .map(|n| {
            let id = format!("{prefix}-{n:05}@IBNMSP");
            let plaintext = fabric_identity(&id);
            (id, plaintext)
        })
        .collect();
    let rows: Vec<WalletRow> = wallets
        .iter()
        .map(|(id, plaintext)| WalletRow {
            id: id.clone(),
            ciphertext: rotor_codec::seal(kek, 1, id, plaintext).unwrap(),
        })
        .collect();
    world.db.connect().await.put_many(&rows).await.unwrap();
    wallets
}

/// The rotation is finished: no unfinished rotation, every wallet on v2 and opening to the bytes
/// it held before.
async fn assert_all_on_v2<V: Vault>(world: &World<V>, expected: &Wallets) {
    let status = json_success(world.rotor().arg("status"));
    assert_eq!(status["unfinished"], json!(null), "{status:#}");
    assert_eq!(status["key_versions"], json!({ "2": expected.len() }), "{status:#}");
    assert_every_wallet_opens(world, expected).await;
}

/// OpenBao crashes while wallets are moving: rotor stops with a message naming Vault, nothing is
/// half-written; the server comes back sealed, and rotor says so and how to unseal; once unsealed,
/// `rotor rotate` finishes the interrupted rotation.
async fn openbao_killed_mid_rotation_then_restarted_sealed(kind: Kind) {
    let mut world = World::with_file_server(kind).await;
    let kek = Kek::generate().unwrap();
    world.migrate_kek(&kek);
    // rotor reads a KEK from Vault only when it first needs it, and the first legacy wallet makes
    // it read every archived one. Envelope wallets first in id order ("app-" < "user-"), legacy
    // ones after them, make the walk go back to Vault after the crash.
    let mut expected: Wallets =
        enroll_envelopes(&world, &kek, "app", WALLETS - LEGACY as usize).await.into_iter().collect();
    expected.extend(world.enroll_legacy(&kek, LEGACY as usize).await);

    let mut rotor = start_rotation(&world);
    let db = world.db.connect().await;
    wait_until_moving(&mut rotor, async || db.version_counts().await.unwrap().contains_key("2")).await;
    // Frozen while it is still among the envelope wallets (1,500 take well under a second), so
    // that OpenBao is gone before the walk reaches the legacy ones and must read the archive.
    signal(&rotor, "-STOP");
    assert_eq!(db.version_counts().await.unwrap()["legacy"], LEGACY, "rotor reached the legacy wallets");
    world.vault.kill().await.unwrap();
    signal(&rotor, "-CONT");
    let out = rotor.wait_with_output().unwrap();
    let (code, stderr) = failure(&out);
    eprintln!("rotor, when OpenBao died mid-rotation (exit {code}):\n{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot reach Vault at {}", world.vault.addr())), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(error["error"].as_str().is_some_and(|e| e.contains("cannot reach Vault")), "{error}");
    let counts = db.version_counts().await.unwrap();
    eprintln!("wallets per version when rotor stopped: {counts:?}");
    assert!(counts["2"] > 0 && counts["legacy"] == LEGACY, "the crash should land mid-walk: {counts:?}");

    // Back, but sealed: rotor refuses before touching anything, and says how to unseal.
    world.vault.restart().await.unwrap();
    let rows = world.rows().await;
    for command in ["validate", "rotate"] {
        let out = world.rotor().arg(command).output().unwrap();
        let (code, stderr) = failure(&out);
        eprintln!("rotor {command}, OpenBao sealed (exit {code}):\n{stderr}");
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(&format!("Vault at {} is sealed", world.vault.addr())), "{stderr}");
        assert!(stderr.contains("bao operator unseal"), "{stderr}");
    }
    assert_eq!(world.rows().await, rows, "rotor changed wallets while Vault was sealed");

    world.vault.unseal().await.unwrap();
    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["invalid"], 0, "{report:#}");
    let status = json_success(world.rotor().arg("status"));
    assert_eq!(status["unfinished"]["status"], "running", "{status:#}");
    assert_eq!(status["unfinished"]["to_version"], 2, "{status:#}");

    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(report["rotation_id"], status["unfinished"]["id"], "resumed: {report:#}");
    assert_eq!(report["to_version"], 2, "{report:#}");
    assert_eq!(report["rotated"], WALLETS as u64 - counts["2"], "moved wallets are skipped: {report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_all_on_v2(&world, &expected).await;
}

on_sqlite_and_postgres!(openbao_killed_mid_rotation_then_restarted_sealed);

/// rotor holds every KEK a rotation of legacy wallets needs once its first batch has run (the
/// current and new KEK, and the archive it tried legacy wallets against): OpenBao crashing after
/// that does not stop it.
#[tokio::test(flavor = "multi_thread")]
async fn openbao_killed_once_the_keys_are_loaded_does_not_stop_a_rotation() {
    let mut world = World::with_file_server(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    world.migrate_kek(&kek);
    let expected = world.enroll_legacy(&kek, WALLETS).await;

    let mut rotor = start_rotation(&world);
    let db = world.db.connect().await;
    wait_until_moving(&mut rotor, async || db.version_counts().await.unwrap().contains_key("2")).await;
    world.vault.kill().await.unwrap();
    let moved_before = db.version_counts().await.unwrap()["2"];
    let out = rotor.wait_with_output().unwrap();
    assert_success(&out);
    eprintln!("{moved_before} wallets had moved when OpenBao died; rotor finished: {}", text(&out.stdout));
    assert!(moved_before < WALLETS as u64, "OpenBao died only after the rotation");

    world.vault.restart().await.unwrap();
    world.vault.unseal().await.unwrap();
    assert_all_on_v2(&world, &expected).await;
}

/// PostgreSQL drops rotor's connections mid-rotation: rotor finishes or stops with a database
/// error, never panics, never leaves a wallet half-written; `rotor rotate` then finishes.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_backends_terminated_mid_rotation() {
    let (world, kek) = World::with_kek(Kind::Postgres).await;
    let expected = world.enroll_legacy(&kek, WALLETS).await;
    let database = world.db.url.rsplit_once('/').unwrap().1.to_owned();

    let mut rotor = start_rotation(&world);
    let mut poller = PgConnection::connect(&world.db.url).await.unwrap();
    wait_until_moving(&mut rotor, async || {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM wallets WHERE ciphertext LIKE 'rotor:v2:%')",
        )
        .fetch_one(&mut poller)
        .await
        .unwrap()
    })
    .await;
    // Only rotor's connections to the test database are left to terminate.
    poller.close().await.unwrap();
    let mut admin = PgConnection::connect(&rotor_testkit::postgres_admin_url()).await.unwrap();
    let mut terminated = 0;
    for _ in 0..5 {
        if rotor.try_wait().unwrap().is_some() {
            break;
        }
        let outcomes: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&database)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        terminated += outcomes.into_iter().filter(|done| *done).count();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin.close().await.unwrap();
    let out = rotor.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    eprintln!("{terminated} backend(s) terminated; rotor ended with {}:\n{stderr}", out.status);
    assert!(terminated > 0, "rotor had no connection to terminate: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stopped = match out.status.code() {
        Some(0) => false,
        Some(1) => {
            assert!(stderr.contains("database error"), "not a clear database error: {stderr}");
            true
        }
        other => panic!("rotor ended with {other:?}, neither success nor a clean error:\n{stderr}"),
    };

    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["invalid"], 0, "{report:#}");
    let status = json_success(world.rotor().arg("status"));
    // A rotor that finished leaves nothing unfinished. One that stopped usually does; but a
    // connection cut after the rotation's last commit stops rotor with the error it met (it
    // cannot know that the commit landed) and leaves nothing to resume: `status` tells which,
    // and every wallet must be on v2 either way (below).
    if !stopped {
        assert!(status["unfinished"].is_null(), "{status:#}");
    }
    if status["unfinished"].is_object() {
        let report = json_success(world.rotor().arg("rotate"));
        assert_eq!(report["rotation_id"], status["unfinished"]["id"], "resumed: {report:#}");
        assert_eq!(report["failed"], 0, "{report:#}");
    }
    assert_all_on_v2(&world, &expected).await;
}
