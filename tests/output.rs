//! What an operator sees: the progress bar only on a terminal and never with --json, logs as text
//! or JSON lines, -q and -v, and the exit codes documented in --help.

use std::process::Command;

use rotor_testkit::{Kind, World, failure, text};

/// Runs `rotor ARGS` under a pseudo-terminal (util-linux `script`), as an operator at a shell
/// would; returns everything the terminal showed.
fn on_a_terminal(world: &World, args: &str) -> String {
    let rotor = world.rotor();
    let mut command = Command::new("script");
    command.args(["-qefc", &format!("{} {args}", env!("CARGO_BIN_EXE_rotor")), "/dev/null"]);
    for (name, value) in rotor.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let out = command.output().expect("`script` (util-linux) runs commands under a pseudo-terminal");
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_bar_only_on_a_terminal_and_never_with_json() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 3000).await;

    let shown = on_a_terminal(&world, "validate --batch-size 10");
    assert!(shown.contains("wallets,") && shown.contains("ETA"), "no progress bar on a terminal:\n{shown}");
    assert!(shown.contains(" wallets/s,"), "the rate is not whole wallets per second:\n{shown}");

    let shown = on_a_terminal(&world, "validate --batch-size 10 --json");
    assert!(!shown.contains("ETA"), "a progress bar with --json:\n{shown}");
    let document = &shown[shown.find('{').unwrap()..];
    let report: serde_json::Value = serde_json::from_str(document.trim()).unwrap();
    assert_eq!(report["total"], 3000);

    let shown = on_a_terminal(&world, "validate --batch-size 10 --log-format json");
    assert!(!shown.contains("ETA"), "a progress bar with JSON logs:\n{shown}");

    // Not a terminal (a cron job, a pipe): no bar, only the result.
    let out = world.rotor().args(["validate", "--batch-size", "10"]).output().unwrap();
    assert!(!text(&out.stderr).contains("ETA"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_as_json_lines_quiet_and_verbose() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 5).await;

    // JSON logs: every stderr line is one JSON object, the error included.
    let out = world
        .rotor()
        .args(["validate", "--log-format", "json", "--key-path", "ibn/missing"])
        .output()
        .unwrap();
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let error = lines.iter().find(|l| l["level"] == "ERROR").unwrap_or_else(|| panic!("{stderr}"));
    assert!(error["fields"]["error"].as_str().unwrap().contains("no KEK at ibn/missing"), "{error}");
    assert!(error["timestamp"].is_string(), "{error}");

    // -v shows each Vault request (route and status only); JSON lines carry them as fields.
    let out = world.rotor().args(["validate", "-v", "--log-format", "json"]).output().unwrap();
    let stderr = text(&out.stderr);
    let requests: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|l| l["fields"]["message"] == "Vault request")
        .collect();
    assert!(!requests.is_empty(), "{stderr}");
    assert!(requests.iter().all(|r| r["fields"]["route"].is_string() && r["fields"]["status"].is_number()));
    assert!(!stderr.contains(&kek.to_hex().to_string()), "the KEK leaked into debug logs");

    // -q: nothing but errors, even a warning is left out.
    let warned =
        world.rotor().arg("validate").env("WALLET_ENCRYPTION_KEY", kek.to_hex().as_str()).output().unwrap();
    assert!(text(&warned.stderr).contains("WARN"), "{}", text(&warned.stderr));
    let quiet = world
        .rotor()
        .args(["validate", "-q"])
        .env("WALLET_ENCRYPTION_KEY", kek.to_hex().as_str())
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(text(&quiet.stderr), "");
}

#[test]
fn exit_codes_are_documented() {
    let out = Command::new(env!("CARGO_BIN_EXE_rotor")).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    for line in ["0  success", "1  error", "2  bad usage", "3  finished, but some wallets"] {
        assert!(help.contains(line), "--help does not document {line:?}:\n{help}");
    }
    for word in [
        "VAULT_ROLE_ID",
        "VAULT_SKIP_VERIFY",
        "WALLET_ENCRYPTION_KEY",
        "--log-format",
        "--metrics-file",
        "serve",
    ] {
        assert!(help.contains(word), "--help does not mention {word}:\n{help}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for line in ["`0` success", "`1` error", "`2` bad usage", "`3` finished"] {
        assert!(readme.contains(line), "README.md does not document {line:?}");
    }
    // Bad usage is exit 2 (clap's), as documented.
    let out = Command::new(env!("CARGO_BIN_EXE_rotor")).args(["rotate", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--help` with DATABASE_URL set: clap would print the variable's value (a password in it) and
/// make `--database-url` look as if it had to be given.
#[test]
fn help_never_shows_environment_values() {
    for args in [&["--help"][..], &["rotate", "--help"], &["validate", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_rotor"))
            .args(args)
            .env("DATABASE_URL", "postgres://u:hunter2@h/db")
            .env("ROTOR_KEY_PATH", "team/secret-kek-path")
            .env("ROTOR_METRICS_FILE", "/srv/private/rotor.prom")
            .output()
            .unwrap();
        assert!(out.status.success(), "rotor {args:?}: {}", text(&out.stderr));
        let help = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for value in ["hunter2", "postgres://u:", "team/secret-kek-path", "/srv/private"] {
            assert!(!help.contains(value), "rotor {args:?} shows {value:?}:\n{help}");
        }
        // The variable is still named (clap may wrap the line), its value is not.
        assert!(help.contains("[env:") && help.contains("DATABASE_URL"), "rotor {args:?}:\n{help}");
    }
}
