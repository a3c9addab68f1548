//! Staged roll-out (`rotor rotate --stage`, `rotor promote`, `rotor unstage`) against a real
//! OpenBao, on SQLite and PostgreSQL: a staged KEK opens wallets but seals none and moves none;
//! nothing else may take its version number; the promotion stores exactly that key as the next
//! version and moves every wallet to it, finishing after a kill -9; and a staged copy left
//! behind by a promotion is ignored by every reader.

use std::io::Write;
use std::process::{Command, Stdio};

use rotor::keyring::fingerprint;
use rotor_codec::Kek;
use rotor_testkit::fault_proxy::{FaultProxy, Times};
use rotor_testkit::{
    Kind, Wallets, World, assert_every_wallet_opens, assert_fails_saying, assert_success, json_success,
    on_sqlite_and_postgres,
};
use serde_json::json;

const WALLETS: usize = 60;
const KEY: &str = "ibn/encryption-key";
const STAGED: &str = "ibn/encryption-key-staged";

/// `rotor seal ID` with `plaintext` on stdin; returns the KEK version it reports.
fn seal(mut rotor: Command, id: &str, plaintext: &[u8]) -> u64 {
    let mut child =
        rotor.args(["seal", id, "--json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(plaintext).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let sealed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    sealed["kek_version"].as_u64().unwrap()
}

/// The current KEK's KV version and key, as Vault holds them.
async fn current_kek(world: &World) -> (u64, String) {
    let secret = world.vault_client().read(KEY, None).await.unwrap().unwrap();
    (secret.version, secret.data["key"].as_str().to_owned())
}

/// What the versions of `rotor keys --json` say: (version, state, fingerprint).
fn inventory(world: &World) -> Vec<(u64, String, String)> {
    let keys = json_success(world.rotor().arg("keys"));
    keys["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let field = |name: &str| v[name].as_str().unwrap_or("-").to_owned();
            (v["version"].as_u64().unwrap(), field("state"), field("fingerprint"))
        })
        .collect()
}

/// A world whose wallets rotor has moved once: every row is an envelope under v2.
async fn world_on_v2(kind: Kind) -> (World, Wallets) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS).await;
    let rotated = json_success(world.rotor().arg("rotate"));
    assert_eq!((rotated["to_version"].as_u64(), rotated["failed"].as_u64()), (Some(2), Some(0)));
    (world, wallets)
}

async fn a_staged_kek_opens_wallets_and_seals_none_until_promoted(kind: Kind) {
    let (world, mut wallets) = world_on_v2(kind).await;
    let rows_before = world.rows().await;

    let staged = json_success(world.rotor().args(["rotate", "--stage"]));
    assert_eq!(staged["staged"]["version"], 3, "{staged}");
    assert_eq!((staged["current_version"].as_u64(), staged["newly_staged"].as_bool()), (Some(2), Some(true)));
    let staged_hex = world.kv_field(STAGED, "key").await;
    let staged_kek = Kek::from_hex(&staged_hex).unwrap();
    assert_eq!(staged["staged"]["fingerprint"], fingerprint(&staged_kek), "{staged}");
    assert_eq!(world.kv_field(STAGED, "kek_version").await, "3");
    assert_eq!(current_kek(&world).await.0, 2, "staging made the KEK current");
    assert!(world.vault_client().read("ibn/encryption-key-archive/v3", None).await.unwrap().is_none());
    assert_eq!(world.rows().await, rows_before, "staging moved wallets");

    let status = json_success(world.rotor().arg("status"));
    assert_eq!((&status["staged"], status["current_kek_version"].as_u64()), (&staged["staged"], Some(2)));

    // Staging again (a schedule firing twice) keeps the staged key.
    let again = json_success(world.rotor().args(["rotate", "--stage"]));
    assert_eq!((again["newly_staged"].as_bool(), &again["staged"]), (Some(false), &staged["staged"]));
    assert_eq!(world.vault_client().read(STAGED, None).await.unwrap().unwrap().version, 1, "rewritten");
    assert_eq!(
        inventory(&world)[..2],
        [
            (3, "staged".into(), fingerprint(&staged_kek)),
            (2, "current".into(), fingerprint(&world.kek(2).await)),
        ]
    );

    // Writers keep sealing under v2; a wallet under the staged key (as an application instance
    // that already promoted would write one) opens and validates.
    let plaintext = b"sealed while v3 is staged".to_vec();
    assert_eq!(seal(world.rotor(), "during@IBNMSP", &plaintext), 2);
    wallets.insert("during@IBNMSP".into(), plaintext);
    let ahead = b"sealed under the staged key".to_vec();
    let ciphertext = rotor_codec::seal(&staged_kek, 3, "ahead@IBNMSP", &ahead).unwrap();
    world.db.connect().await.put("ahead@IBNMSP", &ciphertext).await.unwrap();
    wallets.insert("ahead@IBNMSP".into(), ahead.clone());
    let opened = world.rotor().args(["open", "ahead@IBNMSP"]).output().unwrap();
    assert_success(&opened);
    assert_eq!(opened.stdout, ahead);
    let validated = json_success(world.rotor().arg("validate"));
    assert_eq!(validated["invalid"], 0, "{validated}");
    assert_eq!(validated["key_versions"], json!({ "2": WALLETS + 1, "3": 1 }), "{validated}");

    // Nothing else may take v3's number while it is staged.
    let rows_staged = world.rows().await;
    for command in [&["rotate"][..], &["rotate", "--compromised", "v1"], &["rollback"]] {
        let out = world.rotor().args(command).output().unwrap();
        assert_fails_saying(
            &out,
            1,
            &["KEK v3 is staged", "rotor promote", "rotor unstage", "Nothing was changed"],
        );
    }
    assert_eq!(current_kek(&world).await.0, 2);
    assert_eq!(world.rows().await, rows_staged, "a refused command moved wallets");

    // The promotion stores exactly the staged key as v3 and moves every wallet to it.
    let promoted = json_success(world.rotor().arg("promote"));
    assert_eq!(
        (promoted["to_version"].as_u64(), promoted["failed"].as_u64()),
        (Some(3), Some(0)),
        "{promoted}"
    );
    assert_eq!(current_kek(&world).await, (3, staged_hex.to_string()));
    assert_eq!(world.kek(3).await, staged_kek, "the archive holds another v3");
    assert!(world.vault_client().read(STAGED, None).await.unwrap().is_none(), "the staged copy is left");
    let rows = world.rows().await;
    assert!(rows.values().all(|c| c.starts_with("rotor:v3:")), "{rows:?}");
    assert_every_wallet_opens(&world, &wallets).await;
    assert_eq!(seal(world.rotor(), "after@IBNMSP", b"after"), 3);
    assert!(inventory(&world).iter().all(|(_, state, _)| state != "staged"));
    let status = json_success(world.rotor().arg("status"));
    assert!(status.get("staged").is_none(), "{status}");

    let out = world.rotor().arg("promote").output().unwrap();
    assert_fails_saying(&out, 1, &["no KEK is staged", "rotor rotate --stage"]);
    assert_eq!(current_kek(&world).await.0, 3);
}

async fn a_promotion_killed_midway_finishes_with_the_staged_key(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, WALLETS * 5).await;
    let staged = json_success(world.rotor().args(["rotate", "--stage"]));
    assert_eq!(staged["staged"]["version"], 2);
    let staged_hex = world.kv_field(STAGED, "key").await;

    let db = world.db.connect().await;
    let mut child = world
        .rotor()
        .args(["promote", "--workers", "1", "--batch-size", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if db.unfinished_rotation().await.unwrap().is_some_and(|r| r.rotated >= 20) {
            child.kill().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rotor promote ended ({status}) before it could be killed");
        }
        assert!(std::time::Instant::now() < deadline, "the promotion never moved a wallet");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.wait().unwrap();
    let killed = db.unfinished_rotation().await.unwrap().expect("the killed promotion is unfinished");
    assert!((killed.rotated as usize) < WALLETS * 5, "killed too late: {killed:?}");
    assert_eq!(current_kek(&world).await, (2, staged_hex.to_string()));

    // Unstaging now could discard what the promotion stores: refused.
    let out = world.rotor().arg("unstage").output().unwrap();
    assert_fails_saying(
        &out,
        1,
        &[&format!("rotation #{} is unfinished", killed.id), "nothing was discarded"],
    );

    let resumed = json_success(world.rotor().arg("promote"));
    assert_eq!(resumed["rotation_id"].as_i64(), Some(killed.id), "{resumed}");
    assert_eq!((resumed["to_version"].as_u64(), resumed["failed"].as_u64()), (Some(2), Some(0)), "{resumed}");
    assert_eq!(current_kek(&world).await, (2, staged_hex.to_string()), "a second new version");
    assert!(world.rows().await.values().all(|c| c.starts_with("rotor:v2:")));
    assert_every_wallet_opens(&world, &wallets).await;
}

async fn a_discarded_or_left_over_stage_gives_its_number_to_a_fresh_key(kind: Kind) {
    let (world, wallets) = world_on_v2(kind).await;

    // Discarded: the next rotation's v3 is a fresh key.
    let staged = json_success(world.rotor().args(["rotate", "--stage"]));
    let discarded = json_success(world.rotor().arg("unstage"));
    assert_eq!(discarded["discarded"], staged["staged"], "{discarded}");
    assert!(world.vault_client().read(STAGED, None).await.unwrap().is_none());
    let nothing = json_success(world.rotor().arg("unstage"));
    assert_eq!(nothing["discarded"], serde_json::Value::Null);
    let rotated = json_success(world.rotor().arg("rotate"));
    assert_eq!(rotated["to_version"], 3, "{rotated}");
    assert_ne!(fingerprint(&world.kek(3).await), staged["staged"]["fingerprint"].as_str().unwrap());

    // A promotion whose removal of the staged copy Vault refused: the copy (now v4, current)
    // is left, and every reader ignores it.
    let staged = json_success(world.rotor().args(["rotate", "--stage"]));
    assert_eq!(staged["staged"]["version"], 4);
    let proxy = FaultProxy::start(world.vault.addr());
    let via_proxy = || {
        let mut rotor = world.rotor();
        rotor.env("VAULT_ADDR", proxy.addr());
        rotor
    };
    let rule = proxy.fail(reqwest::Method::DELETE, "encryption-key-staged", 502, Times::Always);
    let promoted = json_success(via_proxy().arg("promote"));
    assert_eq!((promoted["to_version"].as_u64(), promoted["failed"].as_u64()), (Some(4), Some(0)));
    assert!(proxy.hits(rule) > 0, "the removal was never tried");
    assert_eq!(world.kv_field(STAGED, "kek_version").await, "4", "the copy is not left over");
    assert!(inventory(&world).iter().all(|(_, state, _)| state != "staged"));
    let out = world.rotor().arg("promote").output().unwrap();
    assert_fails_saying(&out, 1, &["no KEK is staged"]);
    let rotated = json_success(world.rotor().arg("rotate"));
    assert_eq!((rotated["to_version"].as_u64(), rotated["failed"].as_u64()), (Some(5), Some(0)));
    assert_ne!(world.kek(5).await, world.kek(4).await, "the left-over copy was promoted again");

    // Staging over the left-over copy replaces it.
    let staged = json_success(world.rotor().args(["rotate", "--stage"]));
    assert_eq!(
        (staged["staged"]["version"].as_u64(), staged["newly_staged"].as_bool()),
        (Some(6), Some(true))
    );
    assert_eq!(world.kv_field(STAGED, "kek_version").await, "6");
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(
    a_staged_kek_opens_wallets_and_seals_none_until_promoted,
    a_promotion_killed_midway_finishes_with_the_staged_key,
    a_discarded_or_left_over_stage_gives_its_number_to_a_fresh_key,
);
