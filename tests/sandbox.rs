//! The sandbox against hostile components, each built here from tests/hostile/: a loop, a
//! memory hoarder, one reaching past its grants, one writing garbage, one swapping wallets, one
//! writing under a key it chose, one showing all it can of a key, one destroying KEKs, one
//! lying about an import, an audit component that imports writes, one with the world's names
//! but other types, one that keeps itself alive by calling the host, one that forges and floods
//! the log. Each is stopped or refused with a clear error, and afterwards no wallet row and no
//! Vault secret has changed that should not have. Also: pinning, the
//! upgrade example in examples/, the shipped audit, `component inspect` and the
//! compiled-component cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rotor_codec::Kek;
use rotor_testkit::{
    Kind, Wallets, World, assert_every_wallet_opens, assert_fails_saying, assert_success, build_components,
    failure, json, json_success, on_sqlite_and_postgres, text,
};
use serde_json::json;
use sha2::{Digest, Sha256};

fn hostile(name: &str) -> PathBuf {
    build_components("tests/hostile", Path::new(env!("CARGO_TARGET_TMPDIR"))).join(name)
}

fn guarded_rotation() -> PathBuf {
    build_components("examples/guarded-rotation", Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join("guarded_rotation.wasm")
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A world with a KEK, legacy wallets, and a secret of another team's that no run may touch.
async fn world_with_wallets(count: usize) -> (World, Kek, Wallets) {
    world_with_wallets_on(Kind::Sqlite, count).await
}

/// As [`world_with_wallets`], on the database `kind`. Every hostile run in it is then checked
/// to have printed none of its KEK's and wallets' bytes (see [`run_hostile`]).
async fn world_with_wallets_on(kind: Kind, count: usize) -> (World, Kek, Wallets) {
    let (world, kek) = World::with_kek(kind).await;
    let wallets = world.enroll_legacy(&kek, count).await;
    secrets_of_worlds().lock().unwrap().insert(world.scratch.clone(), secrets_shown(&kek, &wallets));
    let secret = BTreeMap::from([("password".to_owned(), zeroize::Zeroizing::new("hunter2".to_owned()))]);
    world.vault_client().write("ibn/other-team-secret", &secret, None).await.unwrap();
    (world, kek, wallets)
}

/// Every wallet row and every secret rotor's layout and the planted one hold, to show that a
/// run changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    rows: BTreeMap<String, String>,
    secrets: BTreeMap<String, (u64, Vec<(String, String)>)>,
}

impl Snapshot {
    async fn take(world: &World) -> Snapshot {
        Snapshot { rows: world.rows().await, secrets: vault_state(world).await }
    }

    async fn assert_unchanged(&self, world: &World) {
        assert_eq!(&Snapshot::take(world).await, self, "a wallet or a secret changed");
    }
}

/// Every secret rotor's layout and the planted one hold: path → (version, data).
async fn vault_state(world: &World) -> BTreeMap<String, (u64, Vec<(String, String)>)> {
    let vault = world.vault_client();
    let mut paths = vec!["ibn/encryption-key".to_owned(), "ibn/other-team-secret".to_owned()];
    for name in vault.list("ibn/encryption-key-archive/").await.unwrap() {
        paths.push(format!("ibn/encryption-key-archive/{name}"));
    }
    let mut state = BTreeMap::new();
    for path in paths {
        if let Some(secret) = vault.read(&path, None).await.unwrap() {
            let data = secret.data.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            state.insert(path, (secret.version, data));
        }
    }
    state
}

/// Every way each test world's KEK and wallets could be printed, by the world's scratch folder.
fn secrets_of_worlds() -> &'static std::sync::Mutex<BTreeMap<PathBuf, Vec<String>>> {
    static SECRETS: OnceLock<std::sync::Mutex<BTreeMap<PathBuf, Vec<String>>>> = OnceLock::new();
    SECRETS.get_or_init(Default::default)
}

/// No KEK and no wallet of `world` in what a run printed.
fn assert_nothing_secret_printed(world: &World, out: &std::process::Output) {
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let secrets = secrets_of_worlds().lock().unwrap();
    for secret in secrets.get(&world.scratch).into_iter().flatten() {
        assert!(!printed.contains(secret.as_str()), "a secret was printed: {secret}\n{printed}");
    }
}

/// Runs `rotor <command>` with a hostile component from tests/hostile/ (unpinned, allowed),
/// and with `config` as rotor.toml if given; checks that it printed no KEK and no wallet.
fn run_hostile(
    world: &World,
    command: &[&str],
    component: &str,
    config: Option<&Path>,
) -> std::process::Output {
    let mut rotor = world.rotor();
    rotor.args(command).args(["--allow-unpinned", "--component"]).arg(hostile(component));
    if let Some(config) = config {
        rotor.arg("--config").arg(config);
    }
    let out = rotor.output().unwrap();
    assert_nothing_secret_printed(world, &out);
    out
}

/// As [`run_hostile`] with `hostile_rotator.wasm`, but a rotor still running after `patience`
/// is killed and the test fails, instead of waiting for a loop that does not end.
fn run_hostile_killed_after(
    world: &World,
    command: &[&str],
    config: Option<&Path>,
    patience: Duration,
) -> std::process::Output {
    let mut rotor = world.rotor();
    rotor.args(command).args(["--allow-unpinned", "--component"]).arg(hostile("hostile_rotator.wasm"));
    if let Some(config) = config {
        rotor.arg("--config").arg(config);
    }
    // Into files, so that a chatty child never blocks on a full pipe while we wait.
    let (stdout, stderr) = (world.scratch.join("hostile.stdout"), world.scratch.join("hostile.stderr"));
    rotor.stdout(std::fs::File::create(&stdout).unwrap()).stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = rotor.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > patience {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "rotor {command:?} still ran after {patience:?}: no limit stopped it\n{}",
                text(&std::fs::read(&stderr).unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::process::Output {
        status,
        stdout: std::fs::read(&stdout).unwrap(),
        stderr: std::fs::read(&stderr).unwrap(),
    };
    assert_nothing_secret_printed(world, &out);
    out
}

/// Writes a rotor.toml in the world's scratch folder and returns its path.
fn config(world: &World, text: &str) -> PathBuf {
    let path = world.scratch.join("rotor.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_computes_forever_is_stopped_soon_after_its_budget() {
    let (world, _, _) = world_with_wallets(10).await;
    let before = Snapshot::take(&world).await;
    let config = config(&world, "[limits]\ncall-seconds = 2\n");

    let started = Instant::now();
    let out = run_hostile(&world, &["validate"], "hostile_rotator.wasm", Some(&config));
    let elapsed = started.elapsed();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the component was stopped"), "{stderr}");
    assert!(
        stderr.contains("without calling the host") && stderr.contains("limits.call-seconds"),
        "{stderr}"
    );
    // The budget is 2 s; the command also starts, compiles and connects. Printed, and bounded
    // loosely: the machine is shared.
    eprintln!("a 2 s budget stopped the loop after {elapsed:.2?} (whole command)");
    assert!(elapsed < Duration::from_secs(2 + 8), "stopped only after {elapsed:?}");

    // The run-wide budget is enforced the same way.
    let config = world.scratch.join("cpu.toml");
    std::fs::write(&config, "[limits]\ncpu-seconds = 1\ncall-seconds = 30\n").unwrap();
    let out = run_hostile(&world, &["validate"], "hostile_rotator.wasm", Some(&config));
    let (_, stderr) = failure(&out);
    assert!(stderr.contains("of CPU time") && stderr.contains("limits.cpu-seconds"), "{stderr}");

    before.assert_unchanged(&world).await;
}

/// `hostile-rotator`'s `prune --keep 1` calls `report.progress` forever, `--keep 2`
/// `wallet-store.count` forever: each host call resets `call-seconds` and spends no guest CPU
/// to speak of, so only the real-time limits stop them.
async fn a_component_that_keeps_calling_the_host_is_stopped_by_the_wall_clock(kind: Kind) {
    let (world, _, _) = world_with_wallets_on(kind, 10).await;
    let (rows, secrets) = (world.rows().await, vault_state(&world).await);
    let stopped = |keep: &str, limits: &str, file: &str| {
        let config = world.scratch.join(file);
        std::fs::write(&config, format!("[limits]\ncpu-seconds = 2\ncall-seconds = 2\n{limits}")).unwrap();
        let started = Instant::now();
        let out = run_hostile_killed_after(
            &world,
            &["prune", "--keep", keep],
            Some(&config),
            Duration::from_secs(60),
        );
        let elapsed = started.elapsed();
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("the component was stopped"), "{stderr}");
        // Printed, and bounded loosely: the machine is shared. Without the limit it runs forever.
        eprintln!("prune --keep {keep} with {limits:?} stopped after {elapsed:.2?} (whole command)");
        assert!(elapsed >= Duration::from_secs(3), "stopped too soon, after {elapsed:?}: {stderr}");
        assert!(elapsed < Duration::from_secs(15), "stopped only after {elapsed:?}");
        stderr
    };

    // The run's limit, whichever host function the loop calls.
    for keep in ["1", "2"] {
        let stderr = stopped(keep, "wall-seconds = 3\n", "wall.toml");
        assert!(stderr.contains("of real time, over this run's limit of 3s"), "{stderr}");
        assert!(stderr.contains("time in host calls counts"), "{stderr}");
        assert!(stderr.contains("limits.wall-seconds in rotor.toml"), "{stderr}");
    }
    // The limit of one quick call (prune handles a few KEK versions), the run's left at its default.
    let stderr = stopped("2", "call-wall-seconds = 3\n", "call-wall.toml");
    assert!(stderr.contains("the component's prune ran for"), "{stderr}");
    assert!(stderr.contains("over the limit of 3s per call"), "{stderr}");
    assert!(stderr.contains("limits.call-wall-seconds in rotor.toml"), "{stderr}");

    assert_eq!(world.rows().await, rows);
    assert_eq!(vault_state(&world).await, secrets);
}

on_sqlite_and_postgres!(a_component_that_keeps_calling_the_host_is_stopped_by_the_wall_clock);

/// `hostile-rotator`'s `prune --keep 3` logs a line with a newline and a forged host line after
/// it, a line of 1 MiB, and 10,000 more lines.
async fn a_component_cannot_forge_bury_or_flood_the_log(kind: Kind) {
    let (world, _, _) = world_with_wallets_on(kind, 10).await;
    let (rows, secrets) = (world.rows().await, vault_state(&world).await);
    let forge = |format: &str| {
        let out = run_hostile(
            &world,
            &["prune", "--keep", "3", "--log-format", format],
            "hostile_rotator.wasm",
            None,
        );
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("hostile component logged its lines"), "{stderr}");
        // 1000 lines of at most ~2 KiB, not the 1 MiB line nor the 10,000 lines.
        assert!(stderr.len() < 256 << 10, "{} bytes of stderr", stderr.len());
        assert!(!stderr.contains("END-OF-HUGE-LINE"));
        assert!(!stderr.contains(['\r', '\x1b']), "control characters printed");
        stderr
    };

    let stderr = forge("text");
    // The forged line stays inside the component's line, escaped and marked.
    let escaped = r"[component] nothing to prune\n INFO rotor: every batch was cross-checked by the reference component\r\u{1b}[2K";
    assert!(stderr.contains(escaped), "{stderr}");
    assert!(
        !stderr.lines().any(|line| line.trim_start().starts_with("INFO rotor:")),
        "a forged host line was printed:\n{stderr}"
    );
    let huge = stderr.lines().find(|line| line.contains("[component] AAAA")).expect("the long line");
    assert!(huge.len() < 2048 + 100, "{} bytes", huge.len());
    assert!(huge.contains("more bytes cut]"), "{huge}");
    let flood = stderr.lines().filter(|line| line.contains("[component] flood line")).count();
    assert_eq!(flood, 1000 - 2, "component lines printed beyond the 1000 of a run");
    assert!(stderr.contains("log limit of 1000 lines per run reached"), "{stderr}");
    assert!(stderr.contains("9002 further log line(s) of the component were dropped"), "{stderr}");
    // Every line the component wrote is marked as its own.
    for line in stderr.lines().filter(|line| line.contains("flood line") || line.contains("AAAA")) {
        assert!(line.contains("[component] "), "{line}");
    }

    // As JSON, each line is one object; the component's have the rotor::component target.
    let stderr = forge("json");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let from_component = |line: &&serde_json::Value| line["target"] == "rotor::component";
    assert_eq!(lines.iter().filter(from_component).count(), 1000 + 2, "{stderr}");
    let forged =
        lines.iter().find(|line| line.to_string().contains("every batch was cross-checked")).unwrap();
    assert_eq!(forged["target"], "rotor::component");
    assert!(forged["fields"]["message"].as_str().unwrap().starts_with("[component] nothing to prune\\n"));

    assert_eq!(world.rows().await, rows);
    assert_eq!(vault_state(&world).await, secrets);
}

on_sqlite_and_postgres!(a_component_cannot_forge_bury_or_flood_the_log);

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_allocates_without_bound_is_stopped_at_its_memory_cap() {
    let (world, _, _) = world_with_wallets(10).await;
    let before = Snapshot::take(&world).await;
    let config = config(&world, "[limits]\nmemory-mib = 64\n");
    let out = run_hostile(&world, &["history"], "hostile_rotator.wasm", Some(&config));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("tried to grow its memory") && stderr.contains("limit of 64 MiB"), "{stderr}");
    assert!(stderr.contains("limits.memory-mib"), "{stderr}");
    before.assert_unchanged(&world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_cannot_reach_past_its_grants() {
    let (world, _, _) = world_with_wallets(10).await;
    let before = Snapshot::take(&world).await;
    // `open` grants reading the KEK's own path only: no other key, no KEK operation, no write.
    let out = run_hostile(&world, &["open", "user-00000@IBNMSP"], "hostile_rotator.wasm", None);
    assert_fails_saying(
        &out,
        1,
        &[
            "hostile component was refused",
            "ibn/other-team-secret is not this command's key path (ibn/encryption-key)",
            "destroying a KEK version is not in this command's grant",
            "storing a new KEK is not in this command's grant",
            "importing a KEK is not in this command's grant",
            "put: wallets are read-only in this run",
            // The host logged each refusal itself, whatever the component says.
            "component denied: a key path outside this run's grant",
            "component denied: not in this command's grant",
            "component denied: wallets are read-only",
        ],
    );
    before.assert_unchanged(&world).await;
}

/// `hostile-rotator`'s `seal-wallet` tries every KEK operation, writes another wallet, and
/// finally seals another wallet's plaintext under the current KEK as the one it was asked for.
async fn a_seal_cannot_touch_keks_or_other_wallets(kind: Kind) {
    let (world, _, wallets) = world_with_wallets_on(kind, 10).await;
    let before = Snapshot::take(&world).await;
    let mut rotor = world.rotor();
    rotor
        .args(["seal", "new-wallet@IBNMSP", "--allow-unpinned", "--component"])
        .arg(hostile("hostile_rotator.wasm"));
    use std::process::Stdio;
    let out = rotor.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().and_then(
        |mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"the operator's new wallet")?;
            child.wait_with_output()
        },
    );
    let out = out.unwrap();
    assert_nothing_secret_printed(&world, &out);
    let stderr = assert_fails_saying(
        &out,
        1,
        &[
            "component denied: a key path outside this run's grant",
            "component denied: not in this command's grant",
            "component denied: this run may write wallet \"new-wallet@IBNMSP\" only action=\"put\"",
            "the component was stopped: write refused for wallet \"new-wallet@IBNMSP\"",
            "the new ciphertext opens to a different wallet than the row holds",
        ],
    );
    assert!(!stderr.contains("the host let it through"), "{stderr}");
    // No wallet written, none changed, every KEK version as it was.
    before.assert_unchanged(&world).await;
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(a_seal_cannot_touch_keks_or_other_wallets);

/// `rotate --reencrypt` makes `hostile-rotator` seal the second wallet's plaintext for the
/// first wallet's id under the current KEK — a ciphertext that opens, for that id, under that
/// key — and write it over the first; `--output-format legacy`, the first wallet's own
/// plaintext under a KEK that is never stored, named as the rotation's target.
async fn a_rotation_component_cannot_swap_wallets_or_choose_their_key(kind: Kind) {
    let (world, kek, wallets) = world_with_wallets_on(kind, 25).await;
    let before = Snapshot::take(&world).await;
    let out = run_hostile(&world, &["rotate", "--reencrypt", "--workers", "1"], "hostile_rotator.wasm", None);
    assert_fails_saying(
        &out,
        1,
        &[
            "the component was stopped: write refused for wallet \"user-00000@IBNMSP\"",
            "the new ciphertext opens to a different wallet than the row holds",
            "nothing of the batch was written",
        ],
    );
    assert_eq!(world.rows().await, before.rows);
    assert_every_wallet_opens(&world, &wallets).await;

    // The hostile start-rotation left its rotation unfinished: close it, then the other attack.
    assert_success(&world.rotor().arg("abort").output().unwrap());
    let out = run_hostile(
        &world,
        &["rotate", "--output-format", "legacy", "--workers", "1"],
        "hostile_rotator.wasm",
        None,
    );
    assert_fails_saying(
        &out,
        1,
        &[
            "the component was stopped: write refused for wallet \"user-00000@IBNMSP\"",
            "the new ciphertext names KEK v2, but this command writes under the current KEK v1",
        ],
    );
    assert_eq!(world.rows().await, before.rows);
    assert_eq!(vault_state(&world).await, before.secrets, "a KEK was stored or changed");
    assert_every_wallet_opens(&world, &wallets).await;
    assert_eq!(world.kek(1).await, kek);
}

on_sqlite_and_postgres!(a_rotation_component_cannot_swap_wallets_or_choose_their_key);

/// Every way a KEK or a wallet could show: hex and base64 of the key, each wallet's bytes as
/// text, in hex and in base64.
fn secrets_shown(kek: &Kek, wallets: &rotor_testkit::Wallets) -> Vec<String> {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let key = hex::decode(kek.to_hex().as_str()).unwrap();
    let mut shown = vec![kek.to_hex().to_string(), kek.to_hex().to_uppercase(), b64(&key)];
    for plaintext in wallets.values() {
        shown.push(hex::encode(plaintext));
        shown.push(b64(plaintext));
        // A line of the wallet's own text, long enough to be its own.
        let text = String::from_utf8_lossy(plaintext);
        shown.extend(text.lines().filter(|line| line.len() >= 24).map(str::to_owned));
    }
    shown
}

/// `hostile-rotator`'s `prune --keep 4` logs and returns all it can get of the current KEK and
/// of a wallet: their handles, what the host wraps and seals under the KEK.
async fn a_component_sees_no_key_and_leaks_none(kind: Kind) {
    let (world, kek, wallets) = world_with_wallets_on(kind, 10).await;
    let before = Snapshot::take(&world).await;
    for format in ["text", "json"] {
        let mut rotor = world.rotor();
        rotor.args(["prune", "--keep", "4", "--log-format", format, "--allow-unpinned", "--component"]);
        let out = rotor.arg(hostile("hostile_rotator.wasm")).output().unwrap();
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1, "{stderr}");
        let printed = format!("{stderr}{}", text(&out.stdout));
        assert!(printed.contains("hostile component showed: kek"), "{printed}");
        assert!(printed.contains("leak: kek"), "the component's log line: {printed}");
        for secret in secrets_shown(&kek, &wallets) {
            assert!(!printed.contains(&secret), "a secret was printed ({format}): {secret}\n{printed}");
        }
    }
    // Nor did anything reach a row or Vault.
    before.assert_unchanged(&world).await;
    let rows = world.rows().await;
    for secret in secrets_shown(&kek, &wallets) {
        assert!(!rows.iter().any(|(id, row)| id.contains(&secret) || row.contains(&secret)));
    }
}

on_sqlite_and_postgres!(a_component_sees_no_key_and_leaks_none);

/// `hostile-rotator`'s `prune --keep 5` destroys KEK versions 1 to 10 without looking at the
/// wallets: the host destroys only what no wallet names and is not current.
async fn a_component_cannot_destroy_a_kek_wallets_use(kind: Kind) {
    let (world, _, wallets) = world_with_wallets_on(kind, 10).await;
    // Legacy wallets name no version: every KEK may be theirs, so nothing is destroyed.
    let before = Snapshot::take(&world).await;
    let prune = |world: &World| {
        let out = run_hostile(world, &["prune", "--keep", "5"], "hostile_rotator.wasm", None);
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("hostile component tried to destroy every KEK"), "{stderr}");
        stderr
    };
    let stderr = prune(&world);
    assert!(stderr.contains("KEK v1 was not destroyed: it is the current KEK"), "{stderr}");
    before.assert_unchanged(&world).await;

    // After a rotation v2 is current and every wallet names it: v1 is unused and may go, v2 may not.
    assert_success(&world.rotor().arg("rotate").output().unwrap());
    let v2 = world.kek(2).await;
    let rows = world.rows().await;
    let stderr = prune(&world);
    assert!(stderr.contains("v1: destroyed"), "{stderr}");
    assert!(stderr.contains("KEK v2 was not destroyed: it is the current KEK"), "{stderr}");
    assert!(stderr.contains("KEK v3 is neither in the version history"), "{stderr}");
    assert_eq!(world.rows().await, rows);
    assert_eq!(world.kek(2).await, v2);
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(a_component_cannot_destroy_a_kek_wallets_use);

/// `hostile-rotator`'s `import-kek` stores nothing of the operator's key and claims version 1:
/// the host reads Vault back and does not report an import that did not happen.
async fn migrate_kek_is_not_reported_done_unless_vault_holds_the_key_given(kind: Kind) {
    let world = World::new(kind).await;
    let kek = Kek::from_bytes([7; 32]);
    let mut rotor = world.migrate_kek_from_env("ROTOR_TEST_KEK", kek.to_hex().as_str());
    let out = rotor
        .args(["--allow-unpinned", "--component"])
        .arg(hostile("hostile_rotator.wasm"))
        .output()
        .unwrap();
    let stderr = assert_fails_saying(
        &out,
        1,
        &[
            "the import is not done: ibn/encryption-key holds no KEK",
            "component denied: not in this command's grant",
        ],
    );
    assert!(!text(&out.stdout).contains("is in Vault"), "{}", text(&out.stdout));
    assert!(world.vault_client().read("ibn/encryption-key", None).await.unwrap().is_none());
    assert!(!stderr.contains(kek.to_hex().as_str()));
}

on_sqlite_and_postgres!(migrate_kek_is_not_reported_done_unless_vault_holds_the_key_given);

/// `hostile-rotator`'s plain `rotate` submits garbage for its whole batch with
/// `submit-current-batch`, to be written while it goes on, and never collects the outcome:
/// the host checks a submitted batch before it is queued, not when it lands.
async fn garbage_from_a_rotation_component_is_refused_by_the_hosts_check(kind: Kind) {
    let (world, _, _) = world_with_wallets_on(kind, 25).await;
    let before = Snapshot::take(&world).await;
    let out = run_hostile(&world, &["rotate"], "hostile_rotator.wasm", None);
    assert_fails_saying(
        &out,
        1,
        &[
            "the component was stopped: write refused for wallet \"user-00000@IBNMSP\"",
            "the new ciphertext is not in a format rotor reads",
            "nothing of the batch was written",
        ],
    );
    before.assert_unchanged(&world).await;
}

on_sqlite_and_postgres!(garbage_from_a_rotation_component_is_refused_by_the_hosts_check);

/// Over envelopes, `hostile-rotator`'s plain `rotate` submits each wallet's new head alone,
/// every one an honest re-wrap but the first wallet's: it holds the second wallet's data key,
/// bound to the first wallet's id and laid out beside the first wallet's own data, so it
/// unwraps and the rest of the row would be kept. The host compares the two data keys, refuses
/// the batch, and stops the component.
async fn a_new_head_holding_another_wallets_data_key_is_refused(kind: Kind) {
    let (world, kek, wallets) = world_with_wallets_on(kind, 25).await;
    let envelopes: Vec<rotor::store::WalletRow> = wallets
        .iter()
        .map(|(id, plaintext)| rotor::store::WalletRow {
            id: id.clone(),
            ciphertext: rotor_codec::seal(&kek, 1, id, plaintext).unwrap(),
        })
        .collect();
    world.db.connect().await.put_many(&envelopes).await.unwrap();
    let before = Snapshot::take(&world).await;
    assert!(before.rows.values().all(|ciphertext| ciphertext.starts_with("rotor:v1:")));
    let out = run_hostile(&world, &["rotate"], "hostile_rotator.wasm", None);
    assert_fails_saying(
        &out,
        1,
        &[
            "the component was stopped: write refused for wallet \"user-00000@IBNMSP\"",
            "the new ciphertext opens to a different wallet than the row holds",
            "nothing of the batch was written",
        ],
    );
    before.assert_unchanged(&world).await;
    assert_every_wallet_opens(&world, &wallets).await;
}

on_sqlite_and_postgres!(a_new_head_holding_another_wallets_data_key_is_refused);

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_cannot_run_a_component_that_imports_writes() {
    let (world, _, _) = world_with_wallets(10).await;
    let before = Snapshot::take(&world).await;

    let out = run_hostile(&world, &["audit"], "hostile_auditor.wasm", None);
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "imports rotor:kek/wallet-store@0.3.0, which the rotor:kek/auditor@0.3.0 world does not grant"
        ),
        "{stderr}"
    );

    // A rotation component (whose world has writes) is no audit component either.
    let out = run_hostile(&world, &["audit"], "hostile_rotator.wasm", None);
    let (_, stderr) = failure(&out);
    assert!(
        stderr.contains("targets rotor:kek/rotator@0.3.0, but this command runs rotor:kek/auditor"),
        "{stderr}"
    );

    let (out, inspected) =
        json(world.rotor().args(["component", "inspect"]).arg(hostile("hostile_auditor.wasm")));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(inspected["world"], "auditor");
    assert_eq!(inspected["refused_imports"], json!(["rotor:kek/wallet-store@0.3.0"]));

    before.assert_unchanged(&world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_with_the_worlds_names_but_other_types_is_refused_naming_each_misfit() {
    let (world, _, _) = world_with_wallets(10).await;
    let (rows, secrets) = (world.rows().await, vault_state(&world).await);
    let misfit = hostile("misfit_rotator.wasm");

    // `component inspect` refuses it, naming each import and export whose type is not the world's.
    let (out, inspected) = json(world.rotor().args(["component", "inspect"]).arg(&misfit));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(inspected["world"], "rotator");
    assert_eq!(inspected["refused_imports"], json!([]), "its names are all the world's");
    let misfits = inspected["misfits"].as_array().unwrap();
    let find = |side: &str, interface: &str, function: &str| {
        misfits
            .iter()
            .find(|m| m["side"] == side && m["interface"] == interface && m["function"] == function)
            .unwrap_or_else(|| panic!("no misfit for {side} {interface} {function}: {inspected}"))
    };
    let put = find("import", "rotor:kek/wallet-store@0.3.0", "put");
    assert!(put["reason"].as_str().unwrap().contains("parameters"), "{put}");
    assert!(put["declared"].as_str().unwrap().starts_with("func(id: string) -> result<_, "), "{put}");
    assert!(
        put["expected"].as_str().unwrap().starts_with("func(id: string, ciphertext: string) -> result<_, "),
        "{put}"
    );
    // A component written for a contract that handed out key bytes does not link.
    let current = find("import", "rotor:kek/keys@0.3.0", "current");
    assert!(current["reason"].as_str().unwrap().contains("results"), "{current}");
    let validate = find("export", "rotor:kek/operations@0.3.0", "validate");
    assert_eq!(validate["reason"], "its parameters differ", "{validate}");
    assert_eq!(validate["declared"], "func(at: record{key-path: string}) -> result<u64, string>");
    let rotate = find("export", "rotor:kek/operations@0.3.0", "rotate");
    assert!(
        rotate["declared"].is_null() && rotate["reason"].as_str().unwrap().contains("not exported"),
        "{rotate}"
    );
    // What fits is not reported.
    assert!(
        !misfits.iter().any(|m| m["function"] == "count"),
        "wallet-store.count has the world's type: {inspected}"
    );

    // In words, for an operator.
    let out = world.rotor().args(["component", "inspect"]).arg(&misfit).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("refused: types that do not fit the world"), "{stdout}");
    assert!(
        stdout.contains("import rotor:kek/wallet-store@0.3.0 function `put`: type mismatch with parameters"),
        "{stdout}"
    );
    assert!(stdout.contains("export rotor:kek/operations@0.3.0 function `validate`"), "{stdout}");
    assert!(stderr.contains("does not fit the rotor:kek/rotator@0.3.0 world of wit/rotor.wit"), "{stderr}");

    // No command runs it, unpinned or pinned: refused with the same words before it is
    // instantiated, so nothing changes.
    let out = run_hostile(&world, &["validate"], "misfit_rotator.wasm", None);
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not fit the rotor:kek/rotator@0.3.0 world"), "{stderr}");
    assert!(stderr.contains("import rotor:kek/keys@0.3.0 function `current`"), "{stderr}");
    assert!(stderr.contains("more (`rotor component inspect"), "{stderr}");
    let pinned = config(
        &world,
        &format!("[component]\npath = \"{}\"\npinned = [\"{}\"]\n", misfit.display(), sha256_of(&misfit)),
    );
    let out = world.rotor().arg("rotate").arg("--config").arg(&pinned).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("import rotor:kek/wallet-store@0.3.0 function `put`"), "{stderr}");
    assert_eq!(world.rows().await, rows);
    assert_eq!(vault_state(&world).await, secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_example_runs_pinned_under_the_unchanged_binary() {
    let (world, _, wallets) = world_with_wallets(40).await;
    let component = guarded_rotation();
    let digest = sha256_of(&component);

    // Unpinned: refused, naming the digest to pin.
    let out = world.rotor().arg("rotate").arg("--component").arg(&component).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("(sha256 {digest}) is not pinned")), "{stderr}");
    assert!(stderr.contains("--allow-unpinned"), "{stderr}");

    // `component inspect` prints the digest to pin and the world.
    let inspected = json_success(world.rotor().args(["component", "inspect"]).arg(&component));
    assert_eq!(inspected["sha256"], digest.as_str());
    assert_eq!(inspected["world"], "rotator");
    assert_eq!(inspected["refused_imports"], json!([]));
    assert_eq!(inspected["misfits"], json!([]), "{inspected}");

    // Pinned in rotor.toml: it rotates, every batch checked by the host, and the journal
    // records which component did it.
    let config = config(
        &world,
        &format!("[component]\npath = \"{}\"\npinned = [\"{digest}\"]\n", component.display()),
    );
    let (out, rotated) = json(world.rotor().arg("rotate").arg("--config").arg(&config).arg("-v"));
    assert_success(&out);
    assert_eq!(rotated["rotated"], 40);
    assert_eq!(rotated["component_sha256"], digest.as_str());
    assert!(text(&out.stderr).contains("batch checked by the host"), "{}", text(&out.stderr));
    assert_every_wallet_opens(&world, &wallets).await;
    let history = json_success(world.rotor().arg("history"));
    assert_eq!(history[0]["component_sha256"], digest.as_str());

    // Its policy: with 1 of 40 wallets (2.5%) unreadable it refuses to start, changing nothing.
    world.db.connect().await.put("user-00003@IBNMSP", "rotor:v2:AAAA").await.unwrap();
    let before = Snapshot::take(&world).await;
    let out = world.rotor().arg("rotate").arg("--config").arg(&config).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("policy of guarded-rotation: 1 of 40 wallets do not open"), "{stderr}");
    before.assert_unchanged(&world).await;
    // rotor's own component has no such policy and moves the other 39.
    let (out, rotated) = json(world.rotor().arg("rotate"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(rotated["rotated"], 39);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_audit_reports_versions_legacy_rows_failures_and_key_age() {
    let (world, _, _) = world_with_wallets(30).await;
    let before = Snapshot::take(&world).await;

    let audit = json_success(world.rotor().arg("audit"));
    assert_eq!(audit["total"], 30);
    assert_eq!(audit["key_versions"], json!({ "legacy": 30 }));
    assert_eq!(audit["current_kek_version"], 1);
    assert!(audit["kek_age_seconds"].as_u64().unwrap() < 600, "{audit}");
    assert_eq!(audit["errors"], 0, "{audit}");
    let checks: Vec<&str> =
        audit["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    assert!(checks.contains(&"legacy-format"), "{audit}");
    // Auditing changed nothing.
    before.assert_unchanged(&world).await;

    assert_success(&world.rotor().arg("rotate").output().unwrap());
    world.db.connect().await.put("user-00007@IBNMSP", "not a wallet").await.unwrap();
    let (out, audit) = json(world.rotor().arg("audit"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(audit["key_versions"], json!({ "2": 29 }));
    assert_eq!(audit["unopenable"][0]["id"], "user-00007@IBNMSP");
    assert!(audit["errors"].as_u64().unwrap() >= 1);
    assert_eq!(audit["component"], "built-in audit");
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_and_an_untrusted_cache_is_not_loaded() {
    let (world, _, _) = world_with_wallets(5).await;
    let cache = world.scratch.join(".cache").join("rotor");
    assert_success(&world.rotor().arg("validate").output().unwrap());
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("no cache at {}: {e}", cache.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let builtin = rotor::component::ComponentSource::builtin().sha256;
    assert!(entries[0].file_name().unwrap().to_str().unwrap().starts_with(&builtin));

    // Writable by others: not trusted, recompiled instead, and the command still works.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&entries[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = world.rotor().arg("validate").output().unwrap();
    assert_success(&out);
    assert!(text(&out.stderr).contains("not using cached component"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("writable by others"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_shows_effective_settings_and_names_bad_keys() {
    let world = World::new(Kind::Sqlite).await;
    let config = config(
        &world,
        "[database]\nurl = \"postgres://rotor:s3cret@db.example/app\"\ntable = \"vault_wallets\"\n\n[limits]\ncpu-seconds = 120\n",
    );
    // DATABASE_URL from the environment wins over the file; the file's table is used.
    let token = "s.distinctive-test-token-9f3a";
    let effective = json_success(
        world.rotor().env("VAULT_TOKEN", token).args(["config", "check", "--config"]).arg(&config),
    );
    assert_eq!(effective["database_url"]["source"], "environment DATABASE_URL");
    assert_eq!(effective["table"], json!({ "value": "vault_wallets", "source": "rotor.toml" }));
    assert_eq!(effective["limits"]["cpu-seconds"], 120);
    assert_eq!(effective["vault"]["auth"], "token (redacted)");
    assert!(!effective.to_string().contains(token), "token leaked: {effective}");

    // Without DATABASE_URL the file's URL is used, with its password redacted.
    let effective = json_success(
        world.rotor().env_remove("DATABASE_URL").args(["config", "check", "--config"]).arg(&config),
    );
    assert_eq!(effective["database_url"]["value"], "postgres://rotor:***@db.example/app");
    assert!(!effective.to_string().contains("s3cret"));

    // rotor.toml's Vault address applies where VAULT_ADDR is unset, and only there.
    std::fs::write(&config, "[vault]\naddr = \"https://vault.example:8200\"\n").unwrap();
    let effective = json_success(
        world.rotor().env_remove("VAULT_ADDR").args(["config", "check", "--config"]).arg(&config),
    );
    assert_eq!(effective["vault"]["addr"], "https://vault.example:8200");
    let effective = json_success(world.rotor().args(["config", "check", "--config"]).arg(&config));
    assert_eq!(effective["vault"]["addr"], world.vault.addr());

    std::fs::write(&config, "[limits]\ncpu-second = 5\n").unwrap();
    let out = world.rotor().args(["config", "check", "--config"]).arg(&config).output().unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown field `cpu-second`"), "{stderr}");
}
