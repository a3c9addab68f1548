//! `rotor rotate --output-format legacy`: for applications that cannot read rotor's envelope yet,
//! every wallet is re-encrypted in the seed's layout under the new KEK; validate and open find
//! the key by trial; a resumed legacy rotation stays legacy and skips the wallets it did.

use std::collections::BTreeMap;

use rotor::store::{Replacement, RunIdentity};
use rotor_codec::{Format, Kek};
use rotor_testkit::{
    Kind, Wallets, World, assert_success, failure, json, json_success, new_rotation, on_sqlite_and_postgres,
};
use serde_json::json;

/// Every row is in the seed's layout and opens under `kek`, to what was enrolled.
async fn all_legacy_under(world: &World, kek: &Kek, expected: &Wallets) {
    let rows = world.rows().await;
    assert_eq!(rows.len(), expected.len());
    for (id, ciphertext) in &rows {
        assert_eq!(rotor_codec::inspect(ciphertext).unwrap(), Format::Legacy, "{id}");
        let opened = rotor_codec::open(kek, id, ciphertext).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(opened.as_slice(), expected[id].as_slice(), "{id}");
    }
}

async fn legacy_output(kind: Kind) {
    let (world, first) = World::with_kek(kind).await;
    let mut expected = world.enroll_legacy(&first, 40).await;
    // An envelope too (an application already on rotor's format): legacy output converts it.
    let envelope = rotor::demo::wallets::fabric_identity("envelope@IBNMSP");
    world
        .db
        .connect()
        .await
        .put("envelope@IBNMSP", &rotor_codec::seal(&first, 1, "envelope@IBNMSP", &envelope).unwrap())
        .await
        .unwrap();
    expected.insert("envelope@IBNMSP".into(), envelope);

    let report =
        json_success(world.rotor().args(["rotate", "--output-format", "legacy", "--batch-size", "7"]));
    assert_eq!(
        (report["to_version"].as_u64(), report["rotated"].as_u64()),
        (Some(2), Some(41)),
        "{report:#}"
    );
    let second = world.kek(2).await;
    all_legacy_under(&world, &second, &expected).await;
    assert!(
        rotor_codec::open(&first, "user-00000@IBNMSP", &world.rows().await["user-00000@IBNMSP"]).is_err()
    );

    // The layout names no version: validate and open find the key by trial.
    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(
        (report["key_versions"].clone(), report["invalid"].clone()),
        (json!({ "legacy": 41 }), json!(0))
    );
    let out = world.rotor().args(["open", "envelope@IBNMSP"]).output().unwrap();
    assert_success(&out);
    assert_eq!(out.stdout, expected["envelope@IBNMSP"]);

    // A second legacy rotation re-encrypts wallets that are legacy already.
    let report = json_success(world.rotor().args(["rotate", "--output-format", "legacy"]));
    assert_eq!(
        (report["to_version"].as_u64(), report["rotated"].as_u64()),
        (Some(3), Some(41)),
        "{report:#}"
    );
    all_legacy_under(&world, &world.kek(3).await, &expected).await;
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history[0]["output_format"], "legacy", "{history:#}");

    // Prune cannot tell which KEKs legacy wallets use, so it destroys nothing.
    let (out, _) = json(world.rotor().args(["prune", "--keep", "1"]));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("legacy wallet(s) name no KEK version"), "{stderr}");

    // And a normal rotation takes the wallets to rotor's envelope.
    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(report["rotated"], 41);
    let (_, status) = json(world.rotor().arg("status"));
    assert_eq!(status["key_versions"], json!({ "4": 41 }), "{status:#}");
}

on_sqlite_and_postgres!(legacy_output);

/// The state a crash leaves half-way through a legacy rotation from v1 to v2: the new KEK in
/// Vault, the journal naming it, `done` wallets already re-encrypted under it.
async fn interrupted_legacy_rotation(world: &World, first: &Kek, done: usize) -> Kek {
    let second = Kek::generate().unwrap();
    let db = world.db.connect().await;
    db.migrate().await.unwrap();
    let total = db.count().await.unwrap() as i64;
    let who = RunIdentity::this_process("test".into());
    let rotation = db.begin_rotation(&new_rotation(total, "legacy", None), &who).await.unwrap();
    let vault = world.vault_client();
    let key = BTreeMap::from([("key".to_owned(), second.to_hex())]);
    assert_eq!(vault.write("ibn/encryption-key", &key, Some(1)).await.unwrap(), 2);
    vault.write("ibn/encryption-key-archive/v2", &key, Some(0)).await.unwrap();
    db.set_rotation_target(rotation.id, 2).await.unwrap();
    let rows: Vec<Replacement> = world
        .rows()
        .await
        .into_iter()
        .take(done)
        .map(|(id, ciphertext)| {
            let plaintext = rotor_codec::open(first, &id, &ciphertext).unwrap();
            let replacement = rotor_codec::seal_legacy(&second, &plaintext).unwrap();
            Replacement { id, expected: ciphertext, replacement, read_at: None, heads: None }
        })
        .collect();
    assert_eq!(db.replace_batch(&rows, None).await.unwrap().replaced as usize, done);
    second
}

async fn resumed_legacy_rotation(kind: Kind) {
    let (world, first) = World::with_kek(kind).await;
    let expected = world.enroll_legacy(&first, 30).await;
    let second = interrupted_legacy_rotation(&world, &first, 12).await;

    // Resumed without the flag, it stays legacy, and re-encrypts only what it had not done.
    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(
        (report["to_version"].as_u64(), report["rotated"].as_u64()),
        (Some(2), Some(18)),
        "{report:#}"
    );
    assert_eq!(report["unchanged"], 12);
    all_legacy_under(&world, &second, &expected).await;
}

on_sqlite_and_postgres!(resumed_legacy_rotation);

#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_rotation_cannot_be_resumed_as_legacy() {
    let (world, first) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&first, 5).await;
    let db = world.db.connect().await;
    db.migrate().await.unwrap();
    db.begin_rotation(&new_rotation(5, "envelope", None), &RunIdentity::this_process("test".into()))
        .await
        .unwrap();

    let (out, _) = json(world.rotor().args(["rotate", "--output-format", "legacy"]));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("writes rotor's envelope format: finish it with `rotor rotate`"), "{stderr}");
}
