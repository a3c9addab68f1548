//! After a fault, the next ordinary command an operator or a cron job runs either finishes the
//! rotation or says exactly what to do, and that advice works; `status` and `history` tell the
//! truth meanwhile. Rotations are stopped at the worst instant (mid-walk, frozen with SIGSTOP,
//! then killed or signalled), or the state a crash leaves is made directly in the journal and
//! Vault. Real OpenBao, SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rotor::store::{Database, RotationRecord, RunIdentity};
use rotor_codec::Kek;
use rotor_testkit::{
    Kind, Wallets, World, assert_every_wallet_opens, assert_success, failure, json, json_success,
    new_rotation, on_sqlite_and_postgres, text,
};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

/// Enough wallets that one worker with small batches walks them for a while (the first
/// rotation converts legacy wallets, the slowest kind).
const WALLETS: usize = 2000;

/// A world with [`WALLETS`] legacy wallets under KEK v1, and what each must open to.
async fn world_with_wallets(kind: Kind) -> (World, Wallets) {
    let (world, kek) = World::with_kek(kind).await;
    let expected = world.enroll_legacy(&kek, WALLETS).await;
    (world, expected)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// Starts `rotor rotate` (one worker, small batches) with `extra` arguments and freezes it with
/// SIGSTOP once the journal shows wallets moved while the rotation still runs: the process
/// holds a key range and has batches committed behind it and more to go.
async fn rotate_and_freeze(world: &World, extra: &[&str]) -> Child {
    let db = world.db.connect().await;
    let mut child = world
        .rotor()
        .args(["rotate", "--workers", "1", "--batch-size", "10"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let moved = db.unfinished_rotation().await.unwrap().map_or(0, |r| r.rotated);
        if moved >= 100 {
            signal(&child, "STOP");
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rotor ended ({status}) before it could be stopped mid-walk");
        }
        assert!(Instant::now() < deadline, "the rotation never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let frozen = db.unfinished_rotation().await.unwrap().expect("the rotation is unfinished");
    assert!((frozen.rotated as usize) < WALLETS, "frozen too late: {frozen:?}");
    child
}

/// Freezes a rotation mid-walk, then kills it with SIGKILL: no clean-up of any kind.
async fn rotate_and_kill(world: &World, extra: &[&str]) -> RotationRecord {
    let mut child = rotate_and_freeze(world, extra).await;
    child.kill().unwrap();
    child.wait().unwrap();
    world.db.connect().await.unfinished_rotation().await.unwrap().expect("the killed rotation is unfinished")
}

/// Vault's current version of the KEK.
async fn current_kek_version(world: &World) -> u64 {
    world.vault_client().metadata("ibn/encryption-key").await.unwrap().unwrap().current_version
}

fn status_json(world: &World) -> Value {
    json_success(world.rotor().arg("status"))
}

fn history_json(world: &World) -> Vec<Value> {
    let history = json_success(world.rotor().arg("history"));
    history.as_array().unwrap().clone()
}

/// Runs `command` and kills it if it has not ended within `limit` (a rotor waiting out a claim).
fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("rotor did not end within {limit:?}; stderr:\n{}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The journal as rotor keeps it, begun the way a rotor that crashed right after recording it
/// would have left it.
async fn begin_rotation(world: &World, restores: Option<i64>) -> RotationRecord {
    let db: Database = world.db.connect().await;
    db.migrate().await.unwrap();
    let who = RunIdentity::this_process("a rotor that crashed".into());
    db.begin_rotation(&new_rotation(WALLETS as i64, "envelope", restores), &who).await.unwrap()
}

// 1. The daily job finishes what a crash left; a dry run describes that rotation.

async fn if_older_than_resumes_an_unfinished_rotation(kind: Kind) {
    let (world, expected) = world_with_wallets(kind).await;
    let killed = rotate_and_kill(&world, &[]).await;
    assert_eq!(killed.to_version, 2);
    let rows = world.rows().await;

    let dry = json_success(world.rotor().args(["rotate", "--dry-run"]));
    assert_eq!(dry["rotation_id"], killed.id, "the dry run describes the unfinished rotation: {dry:#}");
    assert_eq!((dry["from_version"].as_u64(), dry["to_version"].as_u64()), (Some(1), Some(2)), "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    let (would_move, already) = (dry["rotated"].as_u64().unwrap(), dry["unchanged"].as_u64().unwrap());
    assert_eq!(would_move + already, WALLETS as u64, "{dry:#}");
    assert!(already >= killed.rotated as u64, "wallets moved before the kill count as done: {dry:#}");
    assert_eq!(world.rows().await, rows, "a dry run changes nothing");
    assert_eq!(current_kek_version(&world).await, 2, "a dry run stores no KEK");

    let (out, report) = json(world.rotor().args(["rotate", "--if-older-than", "90d"]));
    assert_success(&out);
    assert_eq!(report.get("skipped"), None, "an unfinished rotation is never skipped: {report:#}");
    assert_eq!(report["rotation_id"], killed.id, "{report:#}");
    assert_eq!(report["to_version"], 2);
    assert_eq!(report["failed"], 0);
    assert!(text(&out.stderr).contains("resuming it whatever --if-older-than says"), "{}", text(&out.stderr));

    let status = status_json(&world);
    assert_eq!(status["unfinished"], json!(null), "{status:#}");
    assert_eq!(status["key_versions"], json!({ "2": WALLETS }), "{status:#}");
    assert_eq!(current_kek_version(&world).await, 2, "exactly one new KEK");
    let history = history_json(&world);
    assert_eq!(history[0]["status"], "finished");
    // Who began it: the operating-system user and, beside it, the Vault identity of its token.
    let who = history[0]["vault_identity"].as_str().unwrap_or_else(|| panic!("{history:#?}"));
    assert!(who.contains("policies root"), "{who}");
    assert!(history[0]["started_by"].as_str().unwrap().contains("(pid "), "{history:#?}");
    assert_every_wallet_opens(&world, &expected).await;

    // The KEK is young now: the same cron line skips, and says how young in words.
    let out = world.rotor().args(["rotate", "--if-older-than", "90d"]).output().unwrap();
    assert_success(&out);
    let said = text(&out.stdout);
    assert!(said.contains("younger than --if-older-than 90 days") && !said.contains("months"), "{said}");
}

on_sqlite_and_postgres!(if_older_than_resumes_an_unfinished_rotation);

// 2. --reencrypt cannot claim a plain rotation it did not re-encrypt.

/// The data part of an envelope (data nonce, wallet ciphertext, tag: bytes 61…), which a
/// re-wrap keeps and a re-encryption replaces.
fn data_part(ciphertext: &str) -> Vec<u8> {
    let (_, encoded) = ciphertext.rsplit_once(':').unwrap();
    base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()[61..].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn reencrypt_does_not_pretend_to_cover_a_plain_rotation() {
    let (world, expected) = world_with_wallets(Kind::Sqlite).await;
    let killed = rotate_and_kill(&world, &[]).await;
    let rows = world.rows().await;

    let (out, refused) = json(world.rotor().args(["rotate", "--reencrypt"]));
    assert_eq!(out.status.code(), Some(1), "{refused:#}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("rotation #{}", killed.id))
            && error.contains("`rotor rotate`")
            && error.contains("`rotor rotate --reencrypt`"),
        "{error}"
    );
    assert_eq!(world.rows().await, rows, "a refused command changes nothing");
    assert_eq!(status_json(&world)["unfinished"]["id"], killed.id);

    // The advice works: finish the plain rotation, then re-encrypt.
    let finished = json_success(world.rotor().arg("rotate"));
    assert_eq!(
        (finished["rotation_id"].as_i64(), finished["reencrypt"].as_bool()),
        (Some(killed.id), Some(false))
    );
    let rewrapped = world.rows().await;
    let reencrypted = json_success(world.rotor().args(["rotate", "--reencrypt"]));
    assert_eq!(
        (reencrypted["to_version"].as_u64(), reencrypted["reencrypt"].as_bool()),
        (Some(3), Some(true))
    );
    let after = world.rows().await;
    for (id, before) in &rewrapped {
        assert_ne!(data_part(before), data_part(&after[id]), "{id} kept its data key under --reencrypt");
    }
    let history = history_json(&world);
    assert_eq!(
        (history[0]["reencrypt"].as_bool(), history[1]["reencrypt"].as_bool()),
        (Some(true), Some(false))
    );
    assert_every_wallet_opens(&world, &expected).await;

    // A --reencrypt rotation resumed without the flag stays one, and says so.
    let killed = rotate_and_kill(&world, &["--reencrypt"]).await;
    let before_resume = world.rows().await;
    let resumed = json_success(world.rotor().arg("rotate"));
    assert_eq!(
        (resumed["rotation_id"].as_i64(), resumed["reencrypt"].as_bool()),
        (Some(killed.id), Some(true))
    );
    let after = world.rows().await;
    for (id, before) in &before_resume {
        if before.starts_with("rotor:v3:") {
            assert_ne!(data_part(before), data_part(&after[id]), "{id}");
        }
    }
    assert_every_wallet_opens(&world, &expected).await;
}

// 6. SIGTERM/SIGINT: claims released, the usual JSON error, a non-zero exit.

async fn a_signal_stops_the_rotation_cleanly(kind: Kind, name: &str, code: i32) {
    let (world, expected) = world_with_wallets(kind).await;
    // A long lease: if the claims were not given back, the next rotor would wait ten minutes.
    let child = rotate_and_freeze(&world, &["--json", "--lease-seconds", "600"]).await;
    signal(&child, name);
    signal(&child, "CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "stderr:\n{}", text(&out.stderr));
    let error: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("interrupted by SIG{name}"))
            && message.contains("`rotor rotate` resumes it"),
        "{message}"
    );

    let status = status_json(&world);
    assert_eq!(status["unfinished"]["status"], "running", "{status:#}");
    assert_eq!(status["walk"]["holders"], json!([]), "a stopped rotor holds no key range: {status:#}");
    assert!(status["lease"].is_null() || status["lease_expired"] == true, "{status:#}");
    assert_every_wallet_opens(&world, &expected).await;

    let started = Instant::now();
    let (out, report) = json(world.rotor().arg("rotate"));
    assert_success(&out);
    assert!(started.elapsed() < Duration::from_secs(30), "the next rotor waited for claims to run out");
    assert_eq!(report["rotation_id"], status["unfinished"]["id"]);
    assert_eq!(current_kek_version(&world).await, 2, "exactly one new KEK");
    assert_eq!(status_json(&world)["key_versions"], json!({ "2": WALLETS }));
    assert_every_wallet_opens(&world, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_rotation_cleanly_postgres() {
    a_signal_stops_the_rotation_cleanly(Kind::Postgres, "TERM", 143).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_the_rotation_cleanly_sqlite() {
    a_signal_stops_the_rotation_cleanly(Kind::Sqlite, "INT", 130).await;
}

// 7. A holder is known by more than its pid.

async fn a_reused_pid_does_not_hold_a_rotation(kind: Kind) {
    let (world, expected) = world_with_wallets(kind).await;
    let killed = rotate_and_kill(&world, &[]).await;
    // What a rotor that ran as PID 1 in a container now replaced leaves behind: a claim that
    // lasts another hour, by a pid that is alive again (this host's PID 1) but is another
    // process (the claim keeps the dead rotor's boot id and start time).
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claimed = execute(
        &world,
        &format!(
            "UPDATE rotor_ranges SET pid = 1, expires_at = {expires} \
             WHERE rotation_id = {} AND state = 'claimed'",
            killed.id
        ),
    )
    .await;
    assert_eq!(claimed, 1, "the killed rotor held one range");

    let out = output_within(world.rotor().args(["rotate", "--json"]), Duration::from_secs(60));
    assert_success(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rotation_id"], killed.id);
    assert!(text(&out.stderr).contains("a rotor that is gone"), "{}", text(&out.stderr));
    assert_eq!(status_json(&world)["key_versions"], json!({ "2": WALLETS }));
    assert_every_wallet_opens(&world, &expected).await;
}

/// Runs one statement on the world's database; returns the rows it changed.
async fn execute(world: &World, sql: &str) -> u64 {
    if world.db.url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(&world.db.url).await.unwrap();
        sqlx::query(AssertSqlSafe(sql)).execute(&mut db).await.unwrap().rows_affected()
    } else {
        let mut db = sqlx::PgConnection::connect(&world.db.url).await.unwrap();
        sqlx::query(AssertSqlSafe(sql)).execute(&mut db).await.unwrap().rows_affected()
    }
}

on_sqlite_and_postgres!(a_reused_pid_does_not_hold_a_rotation);

// 8. A KEK stored but not yet recorded, or not stored: status and history say which.

async fn status_tells_a_stored_but_unrecorded_kek(kind: Kind) {
    let (world, expected) = world_with_wallets(kind).await;
    // Killed between storing the new KEK in Vault and recording it in the journal.
    let rotation = begin_rotation(&world, None).await;
    let mut data = BTreeMap::new();
    data.insert("key".to_owned(), zeroize::Zeroizing::new(Kek::generate().unwrap().to_hex().to_string()));
    assert_eq!(world.vault_client().write("ibn/encryption-key", &data, Some(1)).await.unwrap(), 2);

    let status = status_json(&world);
    assert_eq!(status["unfinished"]["to_version"], 0, "{status:#}");
    assert_eq!(
        (status["next_kek_version"].as_u64(), status["current_kek_version"].as_u64()),
        (Some(2), Some(2))
    );
    let out = world.rotor().arg("status").output().unwrap();
    let said = text(&out.stdout);
    assert!(said.contains("v1 -> v2 (stored in Vault") && !said.contains("not stored yet"), "{said}");
    let out = world.rotor().arg("history").output().unwrap();
    let said = text(&out.stdout);
    assert!(said.contains("v1 -> v2 (stored, not yet recorded)") && !said.contains("v0"), "{said}");

    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!((report["rotation_id"].as_i64(), report["to_version"].as_u64()), (Some(rotation.id), Some(2)));
    assert_eq!(
        current_kek_version(&world).await,
        2,
        "the stored KEK is the target, not a reason for another"
    );
    assert_eq!(status_json(&world)["key_versions"], json!({ "2": WALLETS }));
    assert_every_wallet_opens(&world, &expected).await;
}

on_sqlite_and_postgres!(status_tells_a_stored_but_unrecorded_kek);

#[tokio::test(flavor = "multi_thread")]
async fn status_tells_a_kek_not_stored_yet() {
    let (world, expected) = world_with_wallets(Kind::Sqlite).await;
    // Stopped after recording the rotation, before the KEK write reached Vault.
    let rotation = begin_rotation(&world, None).await;
    let status = status_json(&world);
    assert_eq!(
        (status["next_kek_version"].clone(), status["current_kek_version"].as_u64()),
        (Value::Null, Some(1))
    );
    let said = text(&world.rotor().arg("status").output().unwrap().stdout);
    assert!(said.contains("v1 -> (new KEK not stored yet"), "{said}");
    let said = text(&world.rotor().arg("history").output().unwrap().stdout);
    assert!(said.contains("v1 -> (no new KEK stored yet)") && !said.contains("v0"), "{said}");

    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!((report["rotation_id"].as_i64(), report["to_version"].as_u64()), (Some(rotation.id), Some(2)));
    assert_every_wallet_opens(&world, &expected).await;
}

// 9. A rollback to a KEK Vault does not have records nothing; `rotor abort` closes what an
// earlier rotor left wedged.

async fn rollback_to_a_missing_kek_records_nothing(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let expected = world.enroll_legacy(&kek, 40).await;
    assert_success(&world.rotor().arg("rotate").output().unwrap());
    assert_success(&world.rotor().arg("rotate").output().unwrap());
    let pruned = json_success(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(pruned["destroyed"], json!([1, 2]), "{pruned:#}");
    let rows = world.rows().await;

    for (to, says) in
        [("7", "the current KEK is v3"), ("3", "the current KEK is v3"), ("1", "destroyed by `rotor prune`")]
    {
        let (out, refused) = json(world.rotor().args(["rollback", "--to", to]));
        let (code, _) = failure(&out);
        assert_eq!(code, 1);
        let error = refused["error"].as_str().unwrap();
        assert!(error.contains(says) && error.contains("nothing was recorded"), "--to {to}: {error}");
        assert_eq!(history_json(&world).len(), 2, "--to {to} recorded a rotation");
        assert_eq!(status_json(&world)["unfinished"], json!(null));
        assert_eq!(world.rows().await, rows);
        assert_eq!(current_kek_version(&world).await, 3);
    }
    // Nothing is wedged: the next rotation runs.
    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(report["to_version"], 4);
    assert_every_wallet_opens(&world, &expected).await;
}

on_sqlite_and_postgres!(rollback_to_a_missing_kek_records_nothing);

async fn abort_closes_a_rotation_that_cannot_finish(kind: Kind) {
    let (world, expected) = world_with_wallets(kind).await;
    // What rotor 0.1 left after `rollback --to 7` failed: a rollback recorded, never started.
    let wedged = begin_rotation(&world, Some(7)).await;
    let rows = world.rows().await;
    for args in [&["rotate"][..], &["rotate", "--if-older-than", "90d"], &["prune", "--keep", "1"]] {
        let (out, refused) = json(world.rotor().args(args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {refused:#}");
        let error = refused["error"].as_str().unwrap();
        if args[0] == "rotate" {
            assert!(error.contains("KEK v7") && error.contains("`rotor abort`"), "{args:?}: {error}");
        }
    }
    assert_eq!(world.rows().await, rows);
    assert_eq!(current_kek_version(&world).await, 1);

    let aborted = json_success(world.rotor().arg("abort"));
    assert_eq!((aborted["rotation_id"].as_i64(), aborted["rotated"].as_i64()), (Some(wedged.id), Some(0)));
    assert_eq!(aborted["key_versions"], json!({ "legacy": WALLETS }));
    assert_eq!(history_json(&world)[0]["status"], "aborted");
    assert_eq!(status_json(&world)["unfinished"], json!(null));
    assert_eq!(world.rows().await, rows, "aborting writes no wallet");

    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(report["to_version"], 2);
    assert_every_wallet_opens(&world, &expected).await;
    let (out, refused) = json(world.rotor().arg("abort"));
    assert_eq!(out.status.code(), Some(1));
    assert!(refused["error"].as_str().unwrap().contains("no unfinished rotation"), "{refused}");
}

on_sqlite_and_postgres!(abort_closes_a_rotation_that_cannot_finish);

/// `rotor abort` refuses while a live rotor walks (here: frozen, so alive and holding a
/// range), and once it is gone closes the rotation with every wallet readable where it is.
async fn abort_refuses_a_live_walker(kind: Kind) {
    let (world, expected) = world_with_wallets(kind).await;
    let mut frozen = rotate_and_freeze(&world, &[]).await;
    stopped_holding_a_range(&world, &frozen, kind).await;
    let (out, refused) = json(world.rotor().arg("abort"));
    assert_eq!(out.status.code(), Some(1), "{refused:#}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("still being walked by") && error.contains(&format!("pid {}", frozen.id())),
        "{error}"
    );

    frozen.kill().unwrap();
    frozen.wait().unwrap();
    let moved = world.db.connect().await.unfinished_rotation().await.unwrap().unwrap().rotated;
    let aborted = json_success(world.rotor().arg("abort"));
    assert_eq!(aborted["rotated"], moved, "{aborted:#}");
    let versions = aborted["key_versions"].as_object().unwrap();
    assert_eq!(versions["2"], moved);
    assert_eq!(versions["legacy"].as_i64().unwrap() + moved, WALLETS as i64);
    assert_every_wallet_opens(&world, &expected).await;

    let report = json_success(world.rotor().arg("rotate"));
    assert_eq!(report["to_version"], 3);
    assert_eq!(status_json(&world)["key_versions"], json!({ "3": WALLETS }));
    assert_every_wallet_opens(&world, &expected).await;
}

/// Lets a frozen walker run a moment at a time until it is stopped where `rotor abort` can
/// meet it: holding a key range (stopped in the instant between finishing one range and
/// claiming the next it holds none, and abort rightly finds no live walker), and on SQLite
/// outside a batch's transaction (inside one it holds SQLite's one write lock, and every other
/// rotor waits for the database rather than meeting the walker's claim).
async fn stopped_holding_a_range(world: &World, frozen: &Child, kind: Kind) {
    use sqlx::sqlite::SqliteConnectOptions;
    let db = world.db.connect().await;
    let rotation = db.unfinished_rotation().await.unwrap().expect("the rotation is unfinished").id;
    let mut sqlite = match kind {
        Kind::Sqlite => {
            let options: SqliteConnectOptions = world.db.url.parse().unwrap();
            Some(sqlx::SqliteConnection::connect_with(&options.busy_timeout(Duration::ZERO)).await.unwrap())
        }
        _ => None,
    };
    for _ in 0..1000 {
        let holding = !db.range_progress(rotation).await.unwrap().holders.is_empty();
        let outside = match &mut sqlite {
            Some(db) => {
                let free = sqlx::query("BEGIN IMMEDIATE").execute(&mut *db).await.is_ok();
                if free {
                    sqlx::query("ROLLBACK").execute(&mut *db).await.unwrap();
                }
                free
            }
            None => true,
        };
        if holding && outside {
            return;
        }
        signal(frozen, "CONT");
        tokio::time::sleep(Duration::from_millis(1)).await;
        signal(frozen, "STOP");
    }
    panic!("the walker was never frozen holding a key range outside a write");
}

on_sqlite_and_postgres!(abort_refuses_a_live_walker);

/// Closing a rotation as aborted looks for live walkers in the same statement: a range claimed
/// after `rotor abort` last looked (a walker that was between two ranges then) keeps the
/// rotation open with its ranges, its journal and its claim as they were; a claim that ran
/// out does not, and once the walker gives its range back the rotation closes.
async fn abort_looks_for_walkers_as_it_closes(kind: Kind) {
    let world = World::new(kind).await;
    let rotation = begin_rotation(&world, None).await;
    let db: Database = world.db.connect().await;
    db.set_rotation_target(rotation.id, 2).await.unwrap();
    let ranges = db.range_progress(rotation.id).await.unwrap().ranges;
    assert!(ranges >= 1, "{ranges} range(s)");

    let walker = RunIdentity::this_process("a walker between two ranges".into());
    let later = rotor::store::unix_now() + 60;
    let claimed = db.claim_range(rotation.id, 0, &walker, later).await.unwrap().expect("a free range");
    assert!(!db.abort_rotation(rotation.id).await.unwrap(), "closed under a live claim");
    let journal = db.unfinished_rotation().await.unwrap().expect("still running");
    assert_eq!(journal.id, rotation.id);
    let progress = db.range_progress(rotation.id).await.unwrap();
    assert_eq!((progress.ranges, progress.holders.clone()), (ranges, vec![walker.started_by.clone()]));

    // Run out (its holder gone without a word): no obstacle.
    let gone = RunIdentity::this_process("a walker whose claim ran out".into());
    db.release_claims(rotation.id, &walker.lease_token).await.unwrap();
    let stale = db.claim_range(rotation.id, 0, &gone, rotor::store::unix_now() - 1).await.unwrap();
    assert_eq!(stale.map(|r| r.seq), Some(claimed.seq));
    assert!(db.abort_rotation(rotation.id).await.unwrap(), "a claim that ran out kept it open");
    assert!(db.unfinished_rotation().await.unwrap().is_none());
    let closed = db.rotations().await.unwrap().into_iter().find(|r| r.id == rotation.id).unwrap();
    assert_eq!(closed.status, rotor::store::RotationStatus::Aborted);
    assert_eq!(db.range_progress(rotation.id).await.unwrap().ranges, 0, "its ranges were kept");
    assert!(!db.abort_rotation(rotation.id).await.unwrap(), "closed twice");
}

on_sqlite_and_postgres!(abort_looks_for_walkers_as_it_closes);

// 11. Usage errors honour --json; rollback takes no schedule.

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_honour_json_and_rollback_takes_no_schedule() {
    let world = World::new(Kind::Sqlite).await;
    for args in [&["rollback", "--if-older-than", "90d", "--json"][..], &["rotate", "--bogus", "--json"]] {
        let out = world.rotor().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let error: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", text(&out.stdout)));
        assert_eq!(error["usage"], true);
        assert!(error["error"].as_str().unwrap().contains(args[1]), "{args:?}: {error}");
        assert!(text(&out.stderr).contains("Usage:"), "clap's message still goes to stderr");
    }
    let out = world.rotor().args(["rotate", "--bogus"]).output().unwrap();
    assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(2), true));
}
