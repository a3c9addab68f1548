//! The whole job against a real OpenBao and real databases: legacy wallets enrolled, validated,
//! rotated, validated again, every plaintext byte-identical, every KEK still readable.

use rotor_codec::{Format, Kek};
use rotor_testkit::{
    Kind, World, assert_every_wallet_opens, assert_says, assert_success, failure, json, json_success,
    on_sqlite_and_postgres, text,
};
use serde_json::json;

async fn legacy_to_rotor_and_on(kind: Kind) {
    let (world, first) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&first, 300).await;

    let before = json_success(world.rotor().arg("validate"));
    assert_eq!(before["total"], 300);
    assert_eq!(before["valid"], 300);
    assert_eq!(before["invalid"], 0);
    assert_eq!(before["key_versions"], json!({ "legacy": 300 }));

    let rotated = json_success(world.rotor().args(["rotate", "--batch-size", "64"]));
    assert_eq!(rotated["from_version"], 1);
    assert_eq!(rotated["to_version"], 2);
    assert_eq!(rotated["total"], 300);
    assert_eq!(rotated["rotated"], 300);
    assert_eq!(rotated["failed"], 0);
    assert!(rotated["duration_ms"].is_u64());

    let after = json_success(world.rotor().arg("validate"));
    assert_eq!(after["key_versions"], json!({ "2": 300 }));
    assert_eq!(after["invalid_ids"], json!([]));

    // Vault holds the new KEK as current; the old one stays readable, in rotor's archive and
    // as KV version 1.
    let vault = world.vault_client();
    let current = vault.read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 2);
    let second = Kek::from_hex(current.data["key"].as_str()).unwrap();
    assert_ne!(second, first);
    assert_eq!(world.kek(1).await, first);
    assert_eq!(world.kek(2).await, second);
    let old = vault.read("ibn/encryption-key", Some(1)).await.unwrap().unwrap();
    assert_eq!(Kek::from_hex(old.data["key"].as_str()).unwrap(), first);

    // Every wallet, read straight from the database and opened natively with the new KEK,
    // is byte-identical to what was enrolled and names v2.
    let rows = world.rows().await;
    assert_eq!(rows.len(), wallets.len());
    for (id, plaintext) in &wallets {
        let ciphertext = &rows[id];
        assert!(ciphertext.starts_with("rotor:v2:"), "{id}: {ciphertext:.20}");
        assert_eq!(
            rotor_codec::open(&second, id, ciphertext).unwrap().as_slice(),
            plaintext.as_slice(),
            "{id}"
        );
    }
    // ... and through `rotor open`, to the exact bytes.
    for (id, plaintext) in wallets.iter().step_by(97) {
        let out = world.rotor().args(["open", id]).output().unwrap();
        assert_success(&out);
        assert_eq!(&out.stdout, plaintext, "{id}");
    }

    // A second rotation re-wraps data keys only: the data part of every envelope is unchanged.
    let again = json_success(world.rotor().arg("rotate"));
    assert_eq!(
        (again["from_version"].clone(), again["to_version"].clone(), again["rotated"].clone()),
        (json!(2), json!(3), json!(300))
    );
    let third = world.kek(3).await;
    let rewrapped = world.rows().await;
    for (id, plaintext) in &wallets {
        assert_eq!(rotor_codec::open(&third, id, &rewrapped[id]).unwrap().as_slice(), plaintext.as_slice());
        assert_eq!(data_part(&rewrapped[id]), data_part(&rows[id]), "{id}: data re-encrypted by a re-wrap");
    }

    // --reencrypt replaces the data keys too.
    let full = json_success(world.rotor().args(["rotate", "--reencrypt"]));
    assert_eq!(full["rotated"], 300);
    let fourth = world.kek(4).await;
    let reencrypted = world.rows().await;
    for (id, plaintext) in &wallets {
        assert_eq!(
            rotor_codec::open(&fourth, id, &reencrypted[id]).unwrap().as_slice(),
            plaintext.as_slice()
        );
        assert_ne!(data_part(&reencrypted[id]), data_part(&rewrapped[id]), "{id}");
    }

    // History lists the three rotations, newest first, with the component that ran them.
    let history = json_success(world.rotor().arg("history"));
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{history:#}");
    assert_eq!((entries[0]["from_version"].clone(), entries[0]["to_version"].clone()), (json!(3), json!(4)));
    assert_eq!(entries[2]["rotated"], 300);
    assert_eq!(entries[0]["status"], "finished");
    assert_eq!(entries[0]["component_sha256"], full["component_sha256"]);
    assert_eq!(entries[0]["component_sha256"].as_str().unwrap().len(), 64);
}

/// The wallet ciphertext part of an envelope (after the wrapped data key), base64-decoded.
fn data_part(envelope: &str) -> Vec<u8> {
    use base64::Engine;
    let encoded = envelope.splitn(3, ':').nth(2).unwrap();
    base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()[61..].to_vec()
}

on_sqlite_and_postgres!(legacy_to_rotor_and_on);

/// Rows that cannot be opened are reported by id and never overwritten; the rest still move.
async fn bad_rows_are_reported_and_left_alone(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, 40).await;
    let foreign = Kek::generate().unwrap();
    let good_envelope = rotor_codec::seal(&kek, 1, "user-00000@IBNMSP", b"wallet").unwrap();
    let bad: Vec<(&str, String)> = vec![
        ("bad-garbage", "this is not base64 at all!".into()),
        ("bad-truncated", good_envelope[..40].to_owned()),
        ("bad-foreign-key", rotor::demo::wallets::legacy_wallet(&foreign, b"someone else's wallet")),
        ("bad-copied-row", good_envelope.clone()),
        ("bad-unknown-version", rotor_codec::seal(&kek, 9, "bad-unknown-version", b"w").unwrap()),
    ];
    let db = world.db.connect().await;
    for (id, ciphertext) in &bad {
        db.put(id, ciphertext).await.unwrap();
    }
    let mut bad_ids: Vec<&str> = bad.iter().map(|(id, _)| *id).collect();
    bad_ids.sort();

    let (out, report) = json(world.rotor().arg("validate"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(report["invalid_ids"], json!(bad_ids));
    assert_eq!(report["valid"], 40);
    let reasons: Vec<String> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("version 9")), "{reasons:?}");

    let (out, rotated) = json(world.rotor().arg("rotate"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(rotated["rotated"], 40);
    assert_eq!(rotated["failed"], 5);
    assert_eq!(rotated["failed_ids"], json!(bad_ids));

    let rows = world.rows().await;
    for (id, ciphertext) in &bad {
        assert_eq!(&rows[*id], ciphertext, "{id} was overwritten");
    }
    for id in wallets.keys() {
        assert_eq!(rotor_codec::inspect(&rows[id]), Ok(Format::Envelope { kek_version: 2 }));
    }
}

on_sqlite_and_postgres!(bad_rows_are_reported_and_left_alone);

/// Wallets that do not open, more than a report lists (1,000): every command counts them all,
/// names the first 1,000, says how many it left out, and the rotation leaves each one as it
/// was and records them all in the journal. A wrong key path fails a whole table this way; at a
/// million rows an unbounded list overran the component's memory and the boundary.
async fn failures_beyond_the_listed_ones_are_counted(kind: Kind) {
    const LISTED: usize = rotor_codec::listed::LISTED;
    const LOST: usize = LISTED + 30;
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, 20).await;
    // Legacy wallets under a KEK Vault never had, named apart from the good ones.
    let (_, mut lost) = rotor_testkit::legacy_wallets(&Kek::generate().unwrap(), LOST);
    for (n, row) in lost.iter_mut().enumerate() {
        row.id = format!("lost-{n:05}");
    }
    world.db.connect().await.put_many(&lost).await.unwrap();
    let lost_ids: Vec<String> = lost.iter().map(|row| row.id.clone()).collect();
    let before = world.rows().await;
    let listed = |report: &serde_json::Value, field: &str| -> Vec<String> {
        let ids = report[field].as_array().unwrap_or_else(|| panic!("no {field}: {report:#}"));
        ids.iter().map(|id| id.as_str().unwrap().to_owned()).collect()
    };

    let (out, report) = json(world.rotor().arg("validate"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        (&report["total"], &report["valid"], &report["invalid"], &report["unlisted"]),
        (&json!(LOST + 20), &json!(20), &json!(LOST), &json!(LOST - LISTED)),
        "{report:#}"
    );
    assert_eq!(listed(&report, "invalid_ids"), lost_ids[..LISTED], "the first ones, in id order");
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(LISTED));
    let out = world.rotor().arg("validate").output().unwrap();
    let said = text(&out.stdout);
    assert_says(
        &said,
        &[&format!("{LOST} do not"), "… and 30 more, not listed (a report names the first 1000)"],
    );
    assert_eq!(said.lines().filter(|line| line.contains("lost-")).count(), LISTED, "{said}");

    let (out, report) = json(world.rotor().args(["rotate", "--dry-run"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        (&report["rotated"], &report["failed"], &report["unlisted"]),
        (&json!(20), &json!(LOST), &json!(LOST - LISTED)),
        "{report:#}"
    );
    assert_eq!(listed(&report, "failed_ids"), lost_ids[..LISTED]);
    let vault = world.vault_client();
    assert_eq!(
        vault.read("ibn/encryption-key", None).await.unwrap().unwrap().version,
        1,
        "a dry run stored a KEK"
    );

    // Two workers in small batches: their lists, and the sweep's, add up within the bound.
    let (out, report) = json(world.rotor().args(["rotate", "--workers", "2", "--batch-size", "64"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        (&report["to_version"], &report["rotated"], &report["failed"], &report["unlisted"]),
        (&json!(2), &json!(20), &json!(LOST), &json!(LOST - LISTED)),
        "{report:#}"
    );
    assert_eq!(listed(&report, "failed_ids"), lost_ids[..LISTED]);
    let rows = world.rows().await;
    for id in &lost_ids {
        assert_eq!(rows[id], before[id], "{id} was changed");
    }
    for id in wallets.keys() {
        assert_eq!(rotor_codec::inspect(&rows[id]), Ok(Format::Envelope { kek_version: 2 }), "{id}");
    }
    let history = json_success(world.rotor().arg("history"));
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["failed"].as_u64()),
        (Some("finished"), Some(LOST as u64)),
        "the journal counts every wallet left behind: {history:#}"
    );

    // The next rotation says the same in words; KEK v1 stays archived for the lost wallets'
    // sake, and every good wallet moves on.
    let out = world.rotor().arg("rotate").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert_says(
        &said,
        &[&format!("{LOST} failed"), "… and 30 more, not listed (a report names the first 1000)"],
    );
    assert_eq!(
        said.lines().filter(|line| line.starts_with("  left untouched: lost-")).count(),
        LISTED,
        "{said}"
    );
    let rows = world.rows().await;
    assert!(lost_ids.iter().all(|id| rows[id] == before[id]), "a lost wallet was changed");
    let third = world.kek(3).await;
    for (id, plaintext) in &wallets {
        assert_eq!(
            rotor_codec::open(&third, id, &rows[id]).unwrap().as_slice(),
            plaintext.as_slice(),
            "{id}"
        );
    }

    let (out, audit) = json(world.rotor().arg("audit"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(audit["unopenable_count"], json!(LOST), "{audit:#}");
    assert_eq!(audit["unopenable"].as_array().map(Vec::len), Some(LISTED), "{audit:#}");
}

on_sqlite_and_postgres!(failures_beyond_the_listed_ones_are_counted);

/// `validate` over several workers reads the table in pages of 1000 rows and hands them out in
/// batches of `--batch-size`: every row is checked exactly once, across page and batch ends,
/// and a bad row past the first page is still reported by id.
async fn validate_checks_every_row_once_across_pages(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    world.enroll_legacy(&kek, 2_345).await;
    let db = world.db.connect().await;
    db.put(
        "user-zzz-bad",
        &rotor_codec::seal_legacy(&Kek::generate().unwrap(), b"not under the KEK").unwrap(),
    )
    .await
    .unwrap();
    for (workers, batch) in [("2", "100"), ("2", "1500"), ("1", "250")] {
        let (out, report) =
            json(world.rotor().args(["validate", "--workers", workers, "--batch-size", batch]));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(report["invalid_ids"], json!(["user-zzz-bad"]), "{report:#}");
        assert_eq!(
            (report["total"].as_u64(), report["valid"].as_u64()),
            (Some(2_346), Some(2_345)),
            "{report:#}"
        );
    }
}

on_sqlite_and_postgres!(validate_checks_every_row_once_across_pages);

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 25).await;
    let rows = world.rows().await;

    let report = json_success(world.rotor().args(["rotate", "--dry-run"]));
    assert_eq!(
        (report["dry_run"].clone(), report["rotated"].clone(), report["to_version"].clone()),
        (json!(true), json!(25), json!(2))
    );
    assert_eq!(world.rows().await, rows);
    let current = world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 1);
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history, json!([]));
}

/// A KEK put in Vault by hand (or by the seed's script), never archived by rotor: what every
/// adopter starts from. A dry run drafts the next KEK in place of the current one, and must
/// still open the legacy wallets under the key it displaced, as the real rotation does.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_opens_legacy_wallets_under_a_kek_rotor_never_archived() {
    let world = World::new(Kind::Sqlite).await;
    let kek = Kek::generate().unwrap();
    let body = json!({ "data": { "key": kek.to_hex().as_str() } });
    world.vault_admin(reqwest::Method::POST, "secret/data/ibn/encryption-key", body).await;
    let wallets = world.enroll_legacy(&kek, 25).await;
    let rows = world.rows().await;

    let report = json_success(world.rotor().args(["rotate", "--dry-run"]));
    assert_eq!(
        (report["dry_run"].clone(), report["rotated"].clone(), report["failed"].clone()),
        (json!(true), json!(25), json!(0)),
        "{report}"
    );
    assert_eq!(world.rows().await, rows);
    let vault = world.vault_client();
    let current = vault.read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 1);
    assert!(vault.read("ibn/encryption-key-archive/v1", None).await.unwrap().is_none(), "nothing archived");

    // What the dry run promised, the rotation does.
    let report = json_success(world.rotor().args(["rotate"]));
    assert_eq!((report["rotated"].clone(), report["failed"].clone()), (json!(25), json!(0)), "{report}");
    assert_every_wallet_opens(&world, &wallets).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seal_and_open_round_trip_exact_bytes() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\n']).collect();
    let mut seal = world
        .rotor()
        .args(["seal", "binary-wallet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut seal.stdin.take().unwrap(), &bytes).unwrap();
    assert_success(&seal.wait_with_output().unwrap());
    let rows = world.rows().await;
    assert!(rows["binary-wallet"].starts_with("rotor:v1:"));

    let out = world.rotor().args(["open", "binary-wallet"]).output().unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, bytes);

    let (out, missing) = json(world.rotor().args(["open", "nobody"]));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("no wallet with id \"nobody\""), "{stderr}");
    assert!(missing["error"].as_str().unwrap().contains("nobody"));
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_kek_refuses_to_overwrite_a_different_key() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.migrate_kek(&kek); // the same key again: nothing to do, success

    let other = Kek::generate().unwrap();
    let out = world.migrate_kek_from_env("K", other.to_hex().as_str()).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("a different KEK is already stored"), "{stderr}");
    assert_eq!(world.kek(1).await, kek);

    let out = world.migrate_kek_from_env("K", "abc123").output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("64 hex characters"), "{stderr}");
    assert!(!stderr.contains("abc123"), "the rejected key leaked into the message: {stderr}");
}

/// Misconfigurations fail before any work, with a message that names the fix.
#[tokio::test(flavor = "multi_thread")]
async fn clear_errors() {
    let world = World::new(Kind::Sqlite).await;
    world.migrate_kek(&Kek::generate().unwrap());

    let out = world.rotor().arg("validate").env("VAULT_TOKEN", "not-a-token").output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("VAULT_TOKEN") && stderr.contains("invalid or expired"), "{stderr}");
    assert!(!stderr.contains("not-a-token"), "the token leaked into the message: {stderr}");

    let out = world.rotor().arg("validate").env_remove("VAULT_TOKEN").output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("VAULT_TOKEN"), "{stderr}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = world.rotor().arg("validate").env("VAULT_ADDR", format!("http://{closed}")).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("cannot reach Vault") && stderr.contains("VAULT_ADDR"), "{stderr}");

    let out = world.rotor().args(["validate", "--table", "nope"]).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(
        stderr.contains("table `nope` not found") && stderr.contains(r#"CREATE TABLE "nope""#),
        "{stderr}"
    );

    let out = world.rotor().args(["validate", "--ciphertext-column", "secret"]).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(
        stderr.contains("column `secret` not found") && stderr.contains("--ciphertext-column"),
        "{stderr}"
    );

    let out = world.rotor().args(["validate", "--key-path", "ibn/missing"]).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("no KEK at ibn/missing") && stderr.contains("migrate-kek"), "{stderr}");

    let (out, error) = json(world.rotor().args(["validate", "--database-url", "mysql://x"]));
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(error["error"].as_str().unwrap().contains("sqlite://"), "{error}");

    let not_a_component = world.scratch.join("not.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").unwrap();
    let out = world.rotor().arg("validate").arg("--component").arg(&not_a_component).output().unwrap();
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("core WebAssembly module, not a component"), "{stderr}");
}

#[test]
fn help_teaches() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rotor")).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    for word in
        ["validate", "rotate", "history", "seal", "open", "migrate-kek", "demo", "VAULT_ADDR", "Exit codes"]
    {
        assert!(help.contains(word), "--help does not mention {word}:\n{help}");
    }
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_rotor")).args(["rotate", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("--dry-run") && help.contains("check-and-set"), "{help}");
}

/// The seed's script archived old KEKs at `<key-path>-archive/<unix-ms>`: history shows them, and
/// a legacy wallet still under such a key opens and rotates.
#[tokio::test(flavor = "multi_thread")]
async fn seed_archives_are_history_and_keys() {
    use std::collections::BTreeMap;

    let (world, current) = World::with_kek(Kind::Sqlite).await;
    let archived = Kek::generate().unwrap();
    let data = BTreeMap::from([("key".to_owned(), archived.to_hex())]);
    world.vault_client().write("ibn/encryption-key-archive/1768363055263", &data, None).await.unwrap();
    let db = world.db.connect().await;
    db.put("old-wallet", &rotor::demo::wallets::legacy_wallet(&archived, b"from before the seed's rotation"))
        .await
        .unwrap();
    db.put("new-wallet", &rotor::demo::wallets::legacy_wallet(&current, b"current")).await.unwrap();

    let history = json_success(world.rotor().arg("history"));
    assert_eq!(
        history,
        json!([{
            "source": "seed-archive",
            "archive_path": "ibn/encryption-key-archive/1768363055263",
            "archived_at": "2026-01-14T03:57:35Z"
        }])
    );

    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["key_versions"], json!({ "legacy": 2 }));
    let _ = json_success(world.rotor().arg("rotate"));
    let out = world.rotor().args(["open", "old-wallet"]).output().unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, b"from before the seed's rotation");
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history.as_array().unwrap().len(), 2, "{history:#}");
    assert_eq!(history[0]["source"], "rotor");
}

/// `--if-older-than` makes a daily cron job safe: a young KEK is left alone (exit 0, says why).
#[tokio::test(flavor = "multi_thread")]
async fn rotate_if_older_than() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 10).await;

    let skipped = json_success(world.rotor().args(["rotate", "--if-older-than", "90d"]));
    assert_eq!(skipped["skipped"], true);
    assert!(skipped["kek_age_seconds"].as_u64().unwrap() < 60, "{skipped}");
    assert_eq!(skipped["if_older_than_seconds"], 90 * 86_400);
    assert_eq!(world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap().version, 1);
    let out = world.rotor().args(["rotate", "--if-older-than", "90d"]).output().unwrap();
    assert!(text(&out.stdout).contains("not rotating: the current KEK is"), "{}", text(&out.stdout));

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rotated = json_success(world.rotor().args(["rotate", "--if-older-than", "1s"]));
    assert_eq!((rotated["to_version"].clone(), rotated["rotated"].clone()), (json!(2), json!(10)));
}
