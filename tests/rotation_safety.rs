//! A rotation cannot lose a wallet: kill -9 at random instants, writers racing the rotation,
//! several rotors sharing a rotation (one killed), --strict. Real OpenBao, real SQLite and PostgreSQL.
//!
//! ROTOR_CRASH_TRIALS sets the kill -9 trials per database (default 20); ROTOR_TEST_SEED the
//! seed of the instants (printed, so that a failure can be replayed).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rotor_codec::Kek;
use rotor_testkit::{
    Kind, World, assert_every_wallet_opens, assert_success, json, json_success, on_sqlite_and_postgres, text,
};
use serde_json::json;

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed.
struct Seeded(u64);

impl Seeded {
    fn from_env() -> Seeded {
        let seed = std::env::var("ROTOR_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
        eprintln!("ROTOR_TEST_SEED={seed}");
        Seeded(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn kill_at_random_instants(kind: Kind) {
    let trials: u32 = std::env::var("ROTOR_CRASH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(20);
    let mut random = Seeded::from_env();
    let (world, kek) = World::with_kek(kind).await;
    let expected = world.enroll_legacy(&kek, 600).await;

    // Kill instants are spread over one whole rotation as this machine runs it now (start-up
    // included), so the window follows rotor's speed instead of a guess that it outgrows. The
    // first rotation converts the legacy wallets; the trials re-wrap, which is faster, so the
    // window is measured on a re-wrap.
    assert_success(&world.rotor().args(["rotate", "--batch-size", "25"]).output().unwrap());
    let started = Instant::now();
    assert_success(&world.rotor().args(["rotate", "--batch-size", "25"]).output().unwrap());
    let mut window_ms = (started.elapsed().as_millis() as u64).max(20);
    eprintln!("one whole re-wrap rotation of 600 wallets took {window_ms} ms: kills land in that window");

    // A machine that speeds up after the window was measured (a neighbour's build ends) lets
    // rotations finish before their kill: each that does shortens the window, and trials go on,
    // up to three times the number asked for, until half that number landed mid-rotation.
    let (mut interrupted, mut trial) = (0, 0);
    while trial < trials || (interrupted < trials / 2 && trial < 3 * trials) {
        trial += 1;
        let mut rotor = world
            .rotor()
            .args(["rotate", "--batch-size", "25"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let instant = Duration::from_millis(random.below(window_ms));
        std::thread::sleep(instant);
        let finished_on_its_own = rotor.try_wait().unwrap().is_some();
        rotor.kill().unwrap(); // SIGKILL: no clean-up of any kind
        rotor.wait().unwrap();
        interrupted += u32::from(!finished_on_its_own);
        if finished_on_its_own {
            window_ms = (window_ms * 3 / 4).max(20);
        }

        // Whatever the instant, every wallet opens: nothing is ever half-written.
        let report = json_success(world.rotor().arg("validate"));
        assert_eq!(report["invalid"], 0, "trial {trial} (killed after {instant:?}): {report:#}");

        let status = json_success(world.rotor().arg("status"));
        assert_eq!(status["total"], 600);
        if let Some(unfinished) = status["unfinished"].as_object() {
            assert_eq!(unfinished["status"], "running", "trial {trial}: {status:#}");
        }
    }
    eprintln!("{trial} trials, {interrupted} killed mid-rotation (window at the end: {window_ms} ms)");
    assert!(
        interrupted >= trials / 2,
        "too few kills landed mid-rotation ({interrupted} of {trial}) to prove anything"
    );

    // The next rotate finishes the interrupted rotation at once: a dead holder's lease is taken over.
    let status = json_success(world.rotor().arg("status"));
    let resumed_target = status["unfinished"]["to_version"].as_u64();
    let started = Instant::now();
    let report = json_success(world.rotor().arg("rotate"));
    assert!(started.elapsed() < Duration::from_secs(30), "resuming waited for a lease to expire");
    if let Some(target) = resumed_target.filter(|t| *t > 0) {
        assert_eq!(
            report["to_version"].as_u64(),
            Some(target),
            "a resumed rotation made another KEK: {report:#}"
        );
    }
    assert_eq!(report["failed"], 0);
    let status = json_success(world.rotor().arg("status"));
    assert_eq!(status["unfinished"], json!(null));
    let to = report["to_version"].as_u64().unwrap().to_string();
    assert_eq!(status["key_versions"], json!({ to: 600 }), "{status:#}");
    assert_every_wallet_opens(&world, &expected).await;
}

on_sqlite_and_postgres!(kill_at_random_instants);

/// An application keeps inserting and updating wallets, sealing under whatever KEK Vault calls
/// current at that moment, while a rotation runs: every write survives and opens.
async fn writer_during_rotation(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let mut expected = world.enroll_legacy(&kek, 1500).await;
    let ids: Vec<String> = expected.keys().cloned().collect();

    let mut rotor = world
        .rotor()
        .args(["rotate", "--batch-size", "10", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = world.db.connect().await;
    let vault = world.vault_client();
    let mut random = Seeded::from_env();
    let mut writes = 0;
    while rotor.try_wait().unwrap().is_none() {
        let current = vault.read("ibn/encryption-key", None).await.unwrap().unwrap();
        let current_kek = Kek::from_hex(current.data["key"].as_str()).unwrap();
        let id = if writes % 3 == 0 {
            format!("new-{writes}")
        } else {
            ids[random.below(ids.len() as u64) as usize].clone()
        };
        let plaintext = format!("write {writes} to {id}").into_bytes();
        let sealed = rotor_codec::seal(&current_kek, current.version as u32, &id, &plaintext).unwrap();
        db.put(&id, &sealed).await.unwrap();
        expected.insert(id, plaintext);
        writes += 1;
    }
    let out = rotor.wait_with_output().unwrap();
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{writes} application writes during the rotation: {report}");
    assert!(writes >= 20, "the writer barely overlapped the rotation ({writes} writes)");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_every_wallet_opens(&world, &expected).await;
    let after = json_success(world.rotor().arg("validate"));
    assert_eq!(after["key_versions"], json!({ "2": expected.len() }), "{after:#}");
}

on_sqlite_and_postgres!(writer_during_rotation);

/// A batch's compare-and-swap replaces a row only if it still holds what the rotation read:
/// every row an application wrote, relabelled, deleted or re-sealed since the read is a
/// conflict left exactly as the application left it, and the rest of the batch is written.
/// On SQLite a re-wrap compares and writes only the head it changes (faster there; on
/// PostgreSQL slower: `cargo run --release --example write_paths`, BENCHMARKS.md), so a row
/// whose head is as read but whose wallet the application sealed again under the same data key
/// is re-wrapped with the application's wallet kept: it opens under the new KEK to what the
/// application wrote. On PostgreSQL that row is a conflict, left as the application left it.
async fn a_batch_replaces_only_rows_that_still_hold_what_was_read(kind: Kind) {
    use rotor::store::Replacement;
    use rotor_codec::{DataKey, EnvelopeNonces, KEY_LEN, NONCE_LEN, rewrap_with, seal_with};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let (old_kek, new_kek) = (Kek::from_bytes([1; KEY_LEN]), Kek::from_bytes([2; KEY_LEN]));
    let dek = DataKey::from_bytes([3; KEY_LEN]);
    let nonces = EnvelopeNonces { wrap: [4; NONCE_LEN], data: [5; NONCE_LEN] };
    let sealed = |id: &str, wallet: &[u8]| seal_with(&old_kek, 1, id, wallet, &dek, nonces);
    let ids =
        ["untouched", "same-key", "fresh-key", "legacy", "relabelled", "deleted", "reencrypted", "raced"];
    for id in ids {
        db.put(id, &sealed(id, format!("wallet {id}").as_bytes())).await.unwrap();
    }
    let read = db_handle.rows().await;
    let rewrap = |id: &str| rewrap_with(&old_kek, &new_kek, 2, id, &read[id], [6; NONCE_LEN]).unwrap();
    let reencrypt = |id: &str| {
        let again = EnvelopeNonces { wrap: [7; NONCE_LEN], data: [8; NONCE_LEN] };
        seal_with(
            &new_kek,
            2,
            id,
            format!("wallet {id}").as_bytes(),
            &DataKey::from_bytes([9; KEY_LEN]),
            again,
        )
    };

    // What the application does between the rotation's read and its write. `same-key` is sealed
    // again under the same data key and nonces (its envelope's head is unchanged) over another
    // wallet: only its tail differs from what was read.
    let same_key = sealed("same-key", b"the application's new wallet, longer than the one read");
    db.put("same-key", &same_key).await.unwrap();
    let fresh = seal_with(&old_kek, 1, "fresh-key", b"fresh", &DataKey::from_bytes([10; KEY_LEN]), nonces);
    db.put("fresh-key", &fresh).await.unwrap();
    let legacy = rotor_codec::seal_legacy_with(&old_kek, b"legacy", [11; NONCE_LEN]);
    db.put("legacy", &legacy).await.unwrap();
    let relabelled = read["relabelled"].replacen("rotor:v1:", "rotor:v3:", 1);
    db.put("relabelled", &relabelled).await.unwrap();
    db_handle.execute("DELETE FROM wallets WHERE id = 'deleted'").await;
    db.put("raced", &sealed("raced", b"raced")).await.unwrap();

    let mut rows: Vec<Replacement> = ids[..6]
        .iter()
        .map(|&id| Replacement {
            id: id.into(),
            expected: read[id].clone(),
            replacement: rewrap(id),
            read_at: None,
            heads: None,
        })
        .collect();
    for id in ["reencrypted", "raced"] {
        rows.push(Replacement {
            id: id.into(),
            expected: read[id].clone(),
            replacement: reencrypt(id),
            read_at: None,
            heads: None,
        });
    }
    let outcome = db.replace_batch(&rows, None).await.unwrap();
    let mut conflicts = outcome.conflicts.clone();
    conflicts.sort();
    let heads_only = matches!(kind, Kind::Sqlite);
    let mut expected_conflicts = vec!["deleted", "fresh-key", "legacy", "raced", "relabelled"];
    if !heads_only {
        expected_conflicts.push("same-key");
    }
    assert_eq!(conflicts, expected_conflicts, "{outcome:?}");
    assert_eq!(outcome.replaced, if heads_only { 3 } else { 2 });

    let after = db_handle.rows().await;
    assert_eq!(after["untouched"], rewrap("untouched"));
    assert_eq!(after["reencrypted"], reencrypt("reencrypted"));
    for (id, written) in [("fresh-key", &fresh), ("legacy", &legacy), ("relabelled", &relabelled)] {
        assert_eq!(&after[id], written, "{id} is not as the application left it");
    }
    if heads_only {
        // The re-wrapped head over the application's wallet: under the new KEK, what it wrote.
        let (_, head) = rotor_codec::rewrap_heads(&read["same-key"], &rewrap("same-key")).unwrap();
        let (tail_at, _) = rotor_codec::rewrap_heads(&same_key, &same_key).unwrap();
        assert_eq!(after["same-key"], format!("{}{}", &rewrap("same-key")[..head], &same_key[tail_at..]));
        let opened = rotor_codec::open(&new_kek, "same-key", &after["same-key"]).unwrap();
        assert_eq!(opened.as_slice(), b"the application's new wallet, longer than the one read");
    } else {
        assert_eq!(after["same-key"], same_key, "same-key is not as the application left it");
    }
    assert_eq!(after["raced"], sealed("raced", b"raced"));
    assert!(!after.contains_key("deleted"), "{after:?}");
}

on_sqlite_and_postgres!(a_batch_replaces_only_rows_that_still_hold_what_was_read);

/// The final sweep, shared out among two workers by the walk's key ranges (as on PostgreSQL)
/// or by one alone over the table whole (as on SQLite), on either database: it meets every row
/// still on the old KEK exactly once, odd rows are recorded rather than handed out, rows on the
/// new KEK are left to the database, and each of two sweepers takes a part.
async fn the_sweep_shares_the_walks_ranges_and_meets_every_row_left_behind_once(kind: Kind) {
    use rotor::coordination::{SweepParts, WorkerBatches};
    use rotor::store::{OddRows, WalletRow};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    // 2000 wallets: eight key ranges of 256. Every seventh was written under the old KEK
    // behind the walk; the rest are on v2 already.
    let rows: Vec<WalletRow> = (0..2000)
        .map(|n| WalletRow {
            id: format!("w{n:04}"),
            ciphertext: format!("rotor:v{}:wallet-{n}", if n % 7 == 0 { 1 } else { 2 }),
        })
        .collect();
    db.put_many(&rows).await.unwrap();
    // One odd row: a value that is no text (SQLite keeps a BLOB in a TEXT column; PostgreSQL
    // cannot, so there it is a NULL).
    match kind {
        Kind::Sqlite => db_handle.execute("UPDATE wallets SET ciphertext = X'00ff' WHERE id = 'w0500'").await,
        Kind::Postgres => {
            db_handle.execute("ALTER TABLE wallets ALTER COLUMN ciphertext DROP NOT NULL").await;
            db_handle.execute("UPDATE wallets SET ciphertext = NULL WHERE id = 'w0500'").await;
        }
    }
    let (rotation, walk) = walk_to_v2(&db, 2000, "sweep test").await;
    let ranges = db.range_bounds(rotation, 0).await.unwrap();
    assert!(ranges.len() >= 4, "the walk was planned in {} range(s)", ranges.len());

    let parts = SweepParts::of(&walk, 2).await.unwrap();
    let odd = OddRows::default();
    let sweep = |mut batches: WorkerBatches, odd: OddRows| async move {
        let mut met = Vec::new();
        while let Some(batch) = batches.next(&odd).await.unwrap() {
            met.extend(batch.into_iter().map(|row| row.id));
        }
        met
    };
    let (first, second) = tokio::join!(
        sweep(WorkerBatches::sweep(walk.clone(), parts.clone()), odd.clone()),
        sweep(WorkerBatches::sweep(walk.clone(), parts.clone()), odd.clone()),
    );
    assert!(!first.is_empty() && !second.is_empty(), "one worker swept alone: {first:?} {second:?}");
    let mut met = [first, second].concat();
    met.sort();
    let left_behind: Vec<String> =
        (0..2000).filter(|n| n % 7 == 0 && *n != 500).map(|n| format!("w{n:04}")).collect();
    assert_eq!(met, left_behind, "the sweep missed a row left behind, met one twice or met one on v2");
    let odd_ids = |odd: &OddRows| odd.entries().into_iter().map(|row| row.id).collect::<Vec<_>>();
    assert_eq!(odd_ids(&odd), ["w0500"]);

    let lone = OddRows::default();
    let whole = SweepParts::of(&walk, 1).await.unwrap();
    let alone = sweep(WorkerBatches::sweep(walk.clone(), whole), lone.clone()).await;
    assert_eq!(alone, left_behind, "a lone sweeper missed a row left behind or met one on v2");
    assert_eq!(odd_ids(&lone), ["w0500"]);
}

on_sqlite_and_postgres!(the_sweep_shares_the_walks_ranges_and_meets_every_row_left_behind_once);

/// A rotation to KEK v2 of `total` wallets begun by `who`, its key ranges planned, and its walk
/// in batches of 16 (rows already on v2 left to the database): the rotation's id and the walk.
async fn walk_to_v2(
    db: &rotor::store::Database,
    total: i64,
    who: &str,
) -> (i64, std::sync::Arc<rotor::coordination::Walk>) {
    use rotor::coordination::{Walk, WalkSpec};
    use rotor::progress::Reporter;
    use rotor::store::RunIdentity;

    let identity = RunIdentity::this_process(who.into());
    let rotation =
        db.begin_rotation(&rotor_testkit::new_rotation(total, "envelope", None), &identity).await.unwrap();
    db.set_rotation_target(rotation.id, 2).await.unwrap();
    let walk = Walk::new(WalkSpec {
        database: db.clone(),
        rotation: rotation.id,
        target: 0,
        skip_prefix: Some("rotor:v2:".into()),
        batch_size: 16,
        identity,
        claim_ttl: Duration::from_secs(60),
        reporter: Reporter::silent(),
        total: total as u64,
        done_before: 0,
    });
    (rotation.id, walk)
}

/// A walk's batch is written back only over rows still as the walk read them. PostgreSQL
/// compares the version each row was read at, so a row the application wrote since is a
/// conflict even if it wrote back the very bytes that were there (a write rotor cannot tell
/// from none on SQLite, which compares the bytes and replaces it). A wallet the batch did not
/// hand out, or one named twice, gets no replacement at all.
async fn a_walks_batch_is_compared_with_the_rows_as_the_walk_read_them(kind: Kind) {
    use rotor::coordination::{SweepParts, WorkerBatches};
    use rotor::store::{OddRows, WalletRow};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let rows: Vec<WalletRow> = ["rewritten-alike", "changed", "changed-back", "untouched"]
        .into_iter()
        .map(|id| WalletRow { id: id.into(), ciphertext: format!("rotor:v1:{id}") })
        .collect();
    db.put_many(&rows).await.unwrap();
    let (_, walk) = walk_to_v2(&db, 4, "compare test").await;
    let mut batches = WorkerBatches::sweep(walk.clone(), SweepParts::of(&walk, 1).await.unwrap());
    let batch = batches.next(&OddRows::default()).await.unwrap().expect("a batch");
    assert_eq!(batch.len(), 4, "{batch:?}");

    // The application, between the walk's read and its write.
    db.put("rewritten-alike", "rotor:v1:rewritten-alike").await.unwrap();
    db.put("changed", "the application's").await.unwrap();
    db.put("changed-back", "for a moment").await.unwrap();
    db.put("changed-back", "rotor:v1:changed-back").await.unwrap();

    let mut replacements = Vec::new();
    for row in batch {
        let replacement = batches.replacement(row.id.clone(), format!("rotor:v2:{}", row.id)).unwrap();
        assert_eq!(replacement.expected, row.ciphertext);
        assert_eq!(replacement.read_at.is_some(), kind == Kind::Postgres, "{replacement:?}");
        replacements.push(replacement);
    }
    assert_eq!(batches.replacement("untouched".into(), "twice".into()).unwrap_err(), "untouched");
    assert_eq!(batches.replacement("never-read".into(), "x".into()).unwrap_err(), "never-read");

    let outcome = db.replace_batch(&replacements, None).await.unwrap();
    let mut conflicts = outcome.conflicts.clone();
    conflicts.sort();
    let after = db_handle.rows().await;
    assert_eq!(after["untouched"], "rotor:v2:untouched");
    assert_eq!(after["changed"], "the application's");
    match kind {
        Kind::Postgres => {
            assert_eq!(conflicts, ["changed", "changed-back", "rewritten-alike"], "{outcome:?}");
            assert_eq!(outcome.replaced, 1);
            assert_eq!(after["rewritten-alike"], "rotor:v1:rewritten-alike");
            assert_eq!(after["changed-back"], "rotor:v1:changed-back");
        }
        Kind::Sqlite => {
            assert_eq!(conflicts, ["changed"], "{outcome:?}");
            assert_eq!(outcome.replaced, 3);
            assert_eq!(after["rewritten-alike"], "rotor:v2:rewritten-alike");
            assert_eq!(after["changed-back"], "rotor:v2:changed-back");
        }
    }
}

on_sqlite_and_postgres!(a_walks_batch_is_compared_with_the_rows_as_the_walk_read_them);

/// A re-wrap handed back as its new head alone is joined to the rest of the row as the walk
/// read it, and written so: every wallet opens under the new KEK to what it held. A head for a
/// row that is no envelope, a whole envelope given as a head, a head keeping another data
/// nonce, and a second head for the same wallet are refused.
async fn a_rewrap_given_as_its_head_is_joined_to_the_row_the_walk_read(kind: Kind) {
    use rotor::coordination::{NotRewrapped, SweepParts, WorkerBatches};
    use rotor::store::{OddRows, WalletRow};
    use std::collections::BTreeMap;

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let (old, new) = (Kek::generate().unwrap(), Kek::generate().unwrap());
    let plaintexts: BTreeMap<String, Vec<u8>> = (0..6)
        .map(|i| (format!("w{i}"), format!("wallet {i} {}", "x".repeat(i * 300)).into_bytes()))
        .collect();
    // Each wallet's data nonce its own, so no two heads hold the same first bytes of one.
    let mut rows: Vec<WalletRow> = plaintexts
        .iter()
        .zip(1u8..)
        .map(|((id, plaintext), n)| {
            let nonces = rotor_codec::EnvelopeNonces { wrap: [n; 12], data: [n; 12] };
            let dek = rotor_codec::DataKey::from_bytes([n; 32]);
            WalletRow {
                id: id.clone(),
                ciphertext: rotor_codec::seal_with(&old, 1, id, plaintext, &dek, nonces),
            }
        })
        .collect();
    rows[5].ciphertext = rotor_codec::seal_legacy(&old, &plaintexts["w5"]).unwrap();
    db.put_many(&rows).await.unwrap();
    let (_, walk) = walk_to_v2(&db, rows.len() as i64, "head test").await;
    let mut batches = WorkerBatches::sweep(walk.clone(), SweepParts::of(&walk, 1).await.unwrap());
    let batch = batches.next(&OddRows::default()).await.unwrap().expect("a batch");
    assert_eq!(batch.len(), 6, "{batch:?}");
    let read: BTreeMap<String, String> = batch.into_iter().map(|row| (row.id, row.ciphertext)).collect();
    let head_of = |id: &str| rotor_codec::rewrap_head(&old, &new, 2, id, &read[id]).unwrap();

    let mut replacements = Vec::new();
    for id in ["w0", "w1", "w2"] {
        let head = head_of(id);
        let replacement = batches.rewrapped(id.into(), &head).unwrap();
        let (old_head, new_head) = replacement.heads.expect("joined by the walk");
        assert_eq!(new_head, head.len());
        assert_eq!(replacement.replacement, format!("{head}{}", &read[id][old_head..]));
        assert_eq!(replacement.compared(), (&read[id][..old_head], head.as_str()));
        replacements.push(replacement);
    }
    // w3: a whole envelope is not a head; w4: a head beside another data nonce (w0's); w5: legacy.
    let whole = rotor_codec::rewrap(&old, &new, 2, "w3", &read["w3"]).unwrap();
    let refused = [
        ("w3", whole.as_str()),
        ("w4", &head_of("w0")),
        ("w5", &head_of("w1")),
        ("w0", &head_of("w0")),
        ("never-read", &head_of("w1")),
    ]
    .map(|(id, head)| batches.rewrapped(id.into(), head).map(|r| r.id));
    let expected_refusals = [
        Err(NotRewrapped::NotAHead("w3".into())),
        Err(NotRewrapped::NotAHead("w4".into())),
        Err(NotRewrapped::NotAHead("w5".into())),
        Err(NotRewrapped::NotHandedOut("w0".into())),
        Err(NotRewrapped::NotHandedOut("never-read".into())),
    ];
    assert_eq!(refused, expected_refusals);

    let outcome = db.replace_batch(&replacements, None).await.unwrap();
    assert_eq!((outcome.replaced, outcome.conflicts.len()), (3, 0));
    let after = db_handle.rows().await;
    for (id, plaintext) in &plaintexts {
        let (kek, version) =
            if ["w0", "w1", "w2"].contains(&id.as_str()) { (&new, Some(2)) } else { (&old, None) };
        assert_eq!(&*rotor_codec::open(kek, id, &after[id]).unwrap(), plaintext, "{id}");
        assert_eq!(
            rotor_codec::inspect(&after[id]).unwrap().kek_version().filter(|_| version.is_some()),
            version,
            "{id}"
        );
        if version.is_none() {
            assert_eq!(after[id], read[id], "{id} untouched");
        }
    }
}

on_sqlite_and_postgres!(a_rewrap_given_as_its_head_is_joined_to_the_row_the_walk_read);

/// A worker's writes are submitted to land behind it, one at a time and in order. An
/// application rewrites the first wallet of every batch between the walk's read and the write:
/// each conflict comes back with the next submission and is retried at once, under the
/// checkpoint of the batch handed out last; at a key range's end an empty batch is handed out
/// so that the last write's conflict is collected and retried while the range is still the
/// worker's. Every wallet ends on v2, replaced once, and the key ranges count every one of them.
/// A worker dropped with a write in flight leaves nothing landing once the walk's writes are
/// settled.
async fn submitted_writes_land_in_order_and_their_conflicts_count_in_their_range(kind: Kind) {
    use rotor::coordination::WorkerBatches;
    use rotor::store::{BatchOutcome, OddRows, Replacement, RotationStatus, WalletRow};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let total = 600;
    let rows: Vec<WalletRow> = (0..total)
        .map(|n| WalletRow { id: format!("w{n:04}"), ciphertext: format!("rotor:v1:wallet-{n}") })
        .collect();
    db.put_many(&rows).await.unwrap();
    let (rotation, walk) = walk_to_v2(&db, total as i64, "submit test").await;
    let ranges = db.range_bounds(rotation, 0).await.unwrap().len();
    assert!(ranges >= 2, "the walk was planned in {ranges} range(s)");

    let mut batches = WorkerBatches::ranges(walk.clone());
    let odd = OddRows::default();
    let (mut replaced, mut empty, mut handed_out, mut rewritten) = (0u32, 0, 0, Vec::new());
    while let Some(batch) = batches.next(&odd).await.unwrap() {
        handed_out += batch.len();
        if batch.is_empty() {
            empty += 1;
        }
        // The application, between the walk's read and its write.
        if let Some(first) = batch.first() {
            db.put(&first.id, &format!("rotor:v1:the-application's-{}", first.id)).await.unwrap();
            rewritten.push(first.id.clone());
        }
        let replacements = batch
            .iter()
            .map(|row| batches.replacement(row.id.clone(), format!("rotor:v2:{}", row.id)).unwrap())
            .collect();
        let earlier = batches.submit(replacements).await.unwrap();
        replaced += earlier.replaced;
        for id in earlier.conflicts {
            let now = db.get(&id).await.unwrap().expect("the row is there");
            assert!(now.starts_with("rotor:v1:the-application's-"), "{id}: {now}");
            let retry = Replacement {
                replacement: format!("rotor:v2:{id}"),
                id,
                expected: now,
                read_at: None,
                heads: None,
            };
            let outcome = batches.write(&[retry]).await.unwrap();
            assert_eq!(outcome, BatchOutcome { replaced: 1, conflicts: Vec::new() });
            replaced += 1;
        }
    }
    assert_eq!(batches.settle_all().await.unwrap(), BatchOutcome::default(), "left to collect at the end");
    assert_eq!(handed_out, total, "a wallet was handed out twice or not at all");
    assert_eq!(empty, ranges, "one empty batch per range, for its last write's conflict");
    assert_eq!(replaced as usize, total, "rows replaced, retries included");
    let after = db_handle.rows().await;
    assert!(after.iter().all(|(id, ct)| *ct == format!("rotor:v2:{id}")), "a wallet was not moved");
    let progress = db.range_progress(rotation).await.unwrap();
    assert_eq!((progress.ranges, progress.done), (ranges as u64, ranges as u64));
    let recorded = db.rotations().await.unwrap().into_iter().find(|r| r.id == rotation).unwrap();
    assert_eq!(recorded.status, RotationStatus::Running);
    assert_eq!(
        recorded.rotated,
        total as i64,
        "the ranges did not count every row ({} retried)",
        rewritten.len()
    );

    // A worker stopped with a write in flight: once the walk's writes are settled, the table
    // stays as it is.
    db.finish_rotation(rotation, 0).await.unwrap();
    let rows: Vec<WalletRow> = (0..64)
        .map(|n| WalletRow { id: format!("x{n:04}"), ciphertext: format!("rotor:v1:x-{n}") })
        .collect();
    db.put_many(&rows).await.unwrap();
    let (_, walk) = walk_to_v2(&db, 64, "stopped worker").await;
    let mut batches = WorkerBatches::ranges(walk.clone());
    let batch = batches.next(&odd).await.unwrap().expect("a batch");
    let replacements = batch
        .iter()
        .map(|row| batches.replacement(row.id.clone(), format!("rotor:v2:{}", row.id)).unwrap())
        .collect();
    batches.submit(replacements).await.unwrap();
    drop(batches);
    walk.writes_settled().await;
    let settled = db_handle.rows().await;
    let moved = batch.iter().filter(|row| settled[&row.id].starts_with("rotor:v2:")).count();
    assert!(moved == 0 || moved == batch.len(), "{moved} of {} rows of one batch were written", batch.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db_handle.rows().await, settled, "a write landed after the walk's writes were settled");
}

on_sqlite_and_postgres!(submitted_writes_land_in_order_and_their_conflicts_count_in_their_range);

/// A batch carries its process's claim on its key range (or, outside the walk, the rotation
/// lease) into its transaction: written by a process whose claim ran out and passed to another,
/// or whose lease another holds now, it is refused as `LeaseLost` and changes no row, while
/// the holder's batch of the same rows lands.
async fn a_batch_of_a_process_that_lost_its_claim_or_lease_writes_nothing(kind: Kind) {
    use rotor::store::{Checkpoint, Replacement, RunIdentity, StoreError, WalletRow, unix_now};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let rows: Vec<WalletRow> = (0..4)
        .map(|n| WalletRow { id: format!("w{n}"), ciphertext: format!("rotor:v1:wallet-{n}") })
        .collect();
    db.put_many(&rows).await.unwrap();
    let (rotation, _walk) = walk_to_v2(&db, 4, "lost claim test").await;
    let later = unix_now() + 60;
    let (gone, holder) =
        (RunIdentity::this_process("paused".into()), RunIdentity::this_process("holder".into()));
    let ran_out = db.claim_range(rotation, 0, &gone, unix_now() - 1).await.unwrap().expect("a free range");
    let taken = db.claim_range(rotation, 0, &holder, later).await.unwrap().expect("the claim that ran out");
    assert_eq!(taken.seq, ran_out.seq);
    let batch = |ids: &[usize]| -> Vec<Replacement> {
        ids.iter()
            .map(|n| Replacement {
                id: format!("w{n}"),
                expected: format!("rotor:v1:wallet-{n}"),
                replacement: format!("rotor:v2:wallet-{n}"),
                read_at: None,
                heads: None,
            })
            .collect()
    };
    let range =
        |token| Checkpoint::Range { rotation, seq: taken.seq, token, cursor: "w1", expires_at: later };

    let refused = db.replace_batch(&batch(&[0, 1]), Some(range(&gone.lease_token))).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert_eq!(db_handle.rows().await["w0"], "rotor:v1:wallet-0", "a batch without its claim wrote");
    let outcome = db.replace_batch(&batch(&[0, 1]), Some(range(&holder.lease_token))).await.unwrap();
    assert_eq!((outcome.replaced, outcome.conflicts.len()), (2, 0));

    db.acquire_lease(&holder, Duration::from_secs(60)).await.unwrap();
    let lease = |lease_token| Checkpoint::Rotation { rotation, lease_token, lease_expires_at: later };
    let refused = db.replace_batch(&batch(&[2]), Some(lease(&gone.lease_token))).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert_eq!(db_handle.rows().await["w2"], "rotor:v1:wallet-2", "a batch without the lease wrote");
    let outcome = db.replace_batch(&batch(&[3]), Some(lease(&holder.lease_token))).await.unwrap();
    assert_eq!(outcome.replaced, 1);

    let after = db_handle.rows().await;
    let versions: Vec<&str> = (0..4).map(|n| &after[&format!("w{n}")][..8]).collect();
    assert_eq!(versions, ["rotor:v2", "rotor:v2", "rotor:v1", "rotor:v2"]);
}

on_sqlite_and_postgres!(a_batch_of_a_process_that_lost_its_claim_or_lease_writes_nothing);

/// Each of `rows` replaced by `moved <id>` if it still holds what it held when read, compared
/// by its ciphertext (no row version): what a component's `replace-batch` asks for.
fn moved_as_read(rows: &[rotor::store::WalletRow]) -> Vec<rotor::store::Replacement> {
    rows.iter()
        .map(|r| rotor::store::Replacement {
            id: r.id.clone(),
            expected: r.ciphertext.clone(),
            replacement: format!("moved {}", r.id),
            read_at: None,
            heads: None,
        })
        .collect()
}

/// Which rows a batch replaced is read from the database's count where it can be: a batch of
/// several statements whose last holds the one conflict, and a batch naming a row twice, still
/// report exactly the rows left as they were.
async fn a_long_batch_names_its_one_conflict_and_a_row_named_twice_counts_once(kind: Kind) {
    use rotor::store::{Replacement, WalletRow};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let rows: Vec<WalletRow> =
        (0..2500).map(|i| WalletRow { id: format!("w{i:05}"), ciphertext: format!("read {i}") }).collect();
    db.put_many(&rows).await.unwrap();
    db.put("w02400", "the application's").await.unwrap();
    let batch = moved_as_read(&rows);
    let outcome = db.replace_batch(&batch, None).await.unwrap();
    assert_eq!(outcome.conflicts, ["w02400"], "{:?}", outcome.replaced);
    assert_eq!(outcome.replaced, 2499);
    let after = db_handle.rows().await;
    assert_eq!(after["w02400"], "the application's");
    assert!(
        rows.iter().filter(|r| r.id != "w02400").all(|r| after[&r.id] == format!("moved {}", r.id)),
        "a row outside the conflict was not written"
    );

    let named_twice = ["one", "two"].map(|to| Replacement {
        id: "w00007".into(),
        expected: "moved w00007".into(),
        replacement: to.into(),
        read_at: None,
        heads: None,
    });
    let outcome = db.replace_batch(&named_twice, None).await.unwrap();
    assert_eq!((outcome.replaced, outcome.conflicts.len()), (1, 0), "{:?}", outcome.conflicts);
    let written = &db_handle.rows().await["w00007"];
    assert!(written == "one" || written == "two", "{written}");
}

on_sqlite_and_postgres!(a_long_batch_names_its_one_conflict_and_a_row_named_twice_counts_once);

/// A legacy row the application sealed again since it was read (a fresh iv, the same length),
/// or one that kept its iv and tag but grew, is a conflict and keeps what the application
/// wrote: the compare-and-swap of a wallet moved out of the seed's layout is exact, whatever a
/// cheaper compare might take for granted about its first bytes or its length.
async fn a_sealed_row_changed_since_it_was_read_is_a_conflict(kind: Kind) {
    use rotor::store::WalletRow;
    use rotor_codec::{NONCE_LEN, seal_legacy_with};

    let db_handle = rotor_testkit::TestDb::new(kind).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let kek = Kek::from_bytes([7; 32]);
    let sealed = |n: u8, wallet: &str| seal_legacy_with(&kek, wallet.as_bytes(), [n; NONCE_LEN]);
    let rows: Vec<WalletRow> =
        (0..4u8).map(|n| WalletRow { id: format!("w{n}"), ciphertext: sealed(n, "a wallet") }).collect();
    db.put_many(&rows).await.unwrap();
    // w1: sealed again under a fresh iv, the same length. w2: the same iv and tag, then more.
    let resealed = sealed(9, "a wallet");
    assert_eq!(resealed.len(), rows[1].ciphertext.len());
    db.put("w1", &resealed).await.unwrap();
    let longer = format!("{}QUJD", rows[2].ciphertext);
    db.put("w2", &longer).await.unwrap();

    let batch = moved_as_read(&rows);
    let mut outcome = db.replace_batch(&batch, None).await.unwrap();
    outcome.conflicts.sort();
    assert_eq!((outcome.replaced, outcome.conflicts), (2, vec!["w1".to_owned(), "w2".to_owned()]));
    let after = db_handle.rows().await;
    assert_eq!((after["w0"].as_str(), after["w3"].as_str()), ("moved w0", "moved w3"));
    assert_eq!((&after["w1"], &after["w2"]), (&resealed, &longer), "the application's writes are kept");
}

on_sqlite_and_postgres!(a_sealed_row_changed_since_it_was_read_is_a_conflict);

/// Two rotors started together share one rotation: one stores the new KEK, both move wallets.
/// (Small batches keep the rotation going long enough for the second to find it running.)
async fn two_rotors_at_once(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    world.enroll_legacy(&kek, 1500).await;

    let start = || {
        world
            .rotor()
            .args(["rotate", "--batch-size", "3", "--workers", "1", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let outcomes = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    for outcome in &outcomes {
        assert_success(outcome);
    }
    let reports: Vec<serde_json::Value> =
        outcomes.iter().map(|o| serde_json::from_slice(&o.stdout).unwrap()).collect();
    assert_eq!(reports[0]["rotation_id"], reports[1]["rotation_id"], "{reports:?}");

    let current = world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 2, "exactly one new KEK");
    let (_, status) = json(world.rotor().arg("status"));
    assert_eq!(status["key_versions"], json!({ "2": 1500 }));
    assert_eq!(status["unfinished"], json!(null));
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history[0]["rotated"], 1500, "each wallet moved once: {history:#}");
}

on_sqlite_and_postgres!(two_rotors_at_once);

#[tokio::test(flavor = "multi_thread")]
async fn strict_changes_nothing_when_a_wallet_does_not_open() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 30).await;
    world.db.connect().await.put("broken", "rotor:v1:AAAA").await.unwrap();
    let rows = world.rows().await;

    let out = world.rotor().args(["rotate", "--strict"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--strict: 1 wallet(s) do not open") && stderr.contains("broken"), "{stderr}");
    assert_eq!(world.rows().await, rows);
    assert_eq!(world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap().version, 1);
    let (_, status) = json(world.rotor().arg("status"));
    assert_eq!(status["unfinished"], json!(null));

    let out = world.rotor().args(["rotate", "--resume"]).output().unwrap();
    assert!(text(&out.stderr).contains("no unfinished rotation"), "{}", text(&out.stderr));
}

/// Rollback is a normal rotation back to the previous key; prune destroys only what no wallet uses.
async fn rollback_then_prune(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let expected = world.enroll_legacy(&kek, 50).await;

    let (out, refused) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        refused["error"].as_str().unwrap().contains("50 legacy wallet(s) name no KEK version"),
        "{refused}"
    );

    for _ in 0..2 {
        assert_success(&world.rotor().arg("rotate").output().unwrap());
    }
    let rollback = json_success(world.rotor().arg("rollback"));
    assert_eq!((rollback["from_version"].clone(), rollback["to_version"].clone()), (json!(3), json!(4)));
    assert_eq!((rollback["restored_version"].clone(), rollback["rotated"].clone()), (json!(2), json!(50)));
    assert_eq!(world.kek(4).await, world.kek(2).await, "v4 holds the previous key again");
    assert_every_wallet_opens(&world, &expected).await;
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history[0]["restores"], 2);

    // A wallet still on v3 keeps v3 alive; v1 and v2 go.
    let kek3 = world.kek(3).await;
    let straggler = rotor_codec::seal(&kek3, 3, "straggler", b"still on v3").unwrap();
    world.db.connect().await.put("straggler", &straggler).await.unwrap();
    let (out, pruned) = json(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(out.status.code(), Some(3), "{pruned:#}");
    assert_eq!(
        (&pruned["destroyed"], &pruned["kept"], &pruned["in_use"]),
        (&json!([1, 2]), &json!([4]), &json!({ "3": 1 })),
        "{pruned:#}"
    );
    // The rollback made v2's key current again as v4: the receipt's fingerprints show that the
    // key destroyed as v2 lives on.
    let fingerprint = rotor::keyring::fingerprint(&world.kek(4).await);
    assert_eq!(pruned["receipt"]["versions"][1]["version"], json!(2));
    assert_eq!(pruned["receipt"]["versions"][1]["fingerprint"], json!(fingerprint));
    assert_ne!(pruned["receipt"]["versions"][0]["fingerprint"], json!(fingerprint));
    let vault = world.vault_client();
    for version in [1u64, 2] {
        assert!(vault.read(&format!("ibn/encryption-key-archive/v{version}"), None).await.unwrap().is_none());
        assert!(vault.read("ibn/encryption-key", Some(version)).await.unwrap().is_none());
    }
    assert_eq!(world.kek(3).await, kek3);
    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["key_versions"], json!({ "3": 1, "4": 50 }));
}

on_sqlite_and_postgres!(rollback_then_prune);

/// A lease held by a rotor on another host is respected until it runs out, then taken over.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_held_elsewhere_is_respected_until_it_expires() {
    use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 10).await;
    assert_success(&world.rotor().args(["rotate", "--dry-run"]).output().unwrap()); // creates rotor's tables

    let now = rotor::store::unix_now();
    let mut db = SqliteConnection::connect(&world.db.url).await.unwrap();
    let hold = |expires_at: i64| {
        format!(
            "INSERT INTO rotor_lease (id, token, holder, host, pid, acquired_at, expires_at) VALUES \
             (1, 'elsewhere', 'ops@other-host (pid 4242)', 'other-host', 4242, '2026-11-30T00:00:00Z', {expires_at}) \
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
        )
    };
    sqlx::query(AssertSqlSafe(hold(now + 3600))).execute(&mut db).await.unwrap();
    // rotor waits a while for a rotor setting up a rotation, then names it.
    let out = world.rotor().arg("rotate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ops@other-host (pid 4242)") && stderr.contains("2026-11-30T00:00:00Z"),
        "{stderr}"
    );
    assert_eq!(world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap().version, 1);

    sqlx::query(AssertSqlSafe(hold(now - 1))).execute(&mut db).await.unwrap();
    let (out, report) = json(world.rotor().arg("rotate"));
    assert_success(&out);
    assert_eq!(report["rotated"], 10);
    assert!(text(&out.stderr).contains("took over the rotation lease"), "{}", text(&out.stderr));
}

/// Three `rotor rotate` processes share one rotation on one PostgreSQL database; one is killed
/// while it holds a key range half walked. The others take its range over when its claim runs
/// out: every wallet moves exactly once and opens.
#[tokio::test(flavor = "multi_thread")]
async fn three_rotors_share_a_rotation_and_survive_one_killed() {
    use sqlx::Connection;

    let (world, kek) = World::with_kek(Kind::Postgres).await;
    const WALLETS: usize = 6000;
    let expected = world.enroll_legacy(&kek, WALLETS).await;

    let start = || {
        world
            .rotor()
            .args(["rotate", "--batch-size", "10", "--workers", "1", "--lease-seconds", "5", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut rotors = vec![start(), start(), start()];
    let victim = rotors.remove(1);
    let victim_pid = victim.id();

    // Kill the victim once it holds a range it has committed batches of, but not finished.
    let mut db = sqlx::PgConnection::connect(&world.db.url).await.unwrap();
    let holding = format!("%(pid {victim_pid})");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mid_range: Option<i64> = sqlx::query_scalar(
            "SELECT rotated FROM rotor_ranges WHERE holder LIKE $1 AND state = 'claimed' AND rotated > 0 LIMIT 1",
        )
        .bind(&holding)
        .fetch_optional(&mut db)
        .await
        .unwrap_or(None);
        if mid_range.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the victim never got a range half walked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut victim = victim;
    victim.kill().unwrap();
    victim.wait().unwrap();

    let mut moved_by_survivors = 0;
    for rotor in rotors {
        let out = rotor.wait_with_output().unwrap();
        assert_success(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        moved_by_survivors += report["rotated"].as_u64().unwrap();
    }
    assert!(moved_by_survivors < WALLETS as u64, "the victim moved none before it died");

    let current = world.vault_client().read("ibn/encryption-key", None).await.unwrap().unwrap();
    assert_eq!(current.version, 2, "exactly one new KEK");
    let (_, status) = json(world.rotor().arg("status"));
    assert_eq!(status["key_versions"], json!({ "2": WALLETS }));
    assert_eq!(status["unfinished"], json!(null));
    let (_, history) = json(world.rotor().arg("history"));
    assert_eq!(history[0]["rotated"], WALLETS, "each wallet moved exactly once: {history:#}");
    assert_every_wallet_opens(&world, &expected).await;
}

/// rotor's SQLite connections checkpoint the write-ahead log beside their writers instead of
/// inside a commit (store/sqlite.rs). A checkpoint that only ever ran beside them was never
/// whole, so the log never started over and grew by every page written: 209 MB for a re-wrap
/// of 100,000 wallets. Here 90 MB of rows go through the store's batches (as a rotation's and
/// the bench's writes do): the log stays within a few checkpoints' worth, and every row reads
/// back as last written.
#[tokio::test(flavor = "multi_thread")]
async fn sqlites_write_ahead_log_stays_small_through_a_rotations_worth_of_batches() {
    use rotor::store::WalletRow;

    const ROWS: usize = 15_000;
    let db_handle = rotor_testkit::TestDb::new(Kind::Sqlite).await;
    let db = db_handle.connect().await;
    db.migrate().await.unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", db_handle.url.trim_start_matches("sqlite://")));
    let rows_of = |pass: char| -> Vec<WalletRow> {
        (0..ROWS)
            .map(|i| WalletRow { id: format!("w{i:05}"), ciphertext: format!("{pass}{i:05}").repeat(333) })
            .collect()
    };
    let mut largest = 0;
    for pass in ['a', 'b', 'c'] {
        for batch in rows_of(pass).chunks(250) {
            if pass == 'a' {
                db.put_many(batch).await.unwrap();
            } else {
                db.overwrite_batch(batch).await.unwrap();
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
    }
    let written = 3 * ROWS as u64 * 6 * 333;
    eprintln!("largest write-ahead log: {largest} bytes for {written} bytes written");
    assert!(
        largest < 24 << 20,
        "the write-ahead log grew to {largest} bytes for {written} bytes of rows written in batches"
    );
    let rows = db_handle.rows().await;
    assert_eq!(rows.len(), ROWS);
    for (i, (id, ciphertext)) in rows.iter().enumerate() {
        assert_eq!(
            (id.as_str(), ciphertext.as_str()),
            (format!("w{i:05}").as_str(), format!("c{i:05}").repeat(333).as_str())
        );
    }
}
