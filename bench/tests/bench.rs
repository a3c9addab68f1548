//! `rotor bench --wallets 2000` as a smoke check: every setup is measured on both databases,
//! the report comes out as a table, JSON and a PNG chart, and the bench leaves no database
//! behind. No speed is asserted here: `rotor bench` prints the figures, BENCHMARKS.md keeps them.
//!
//! It runs `rotor bench` as operators type it: the `rotor` binary next to rotor-bench, which
//! hands over to rotor-bench. Cargo builds that `rotor` for `cargo test --workspace`; with
//! `cargo test -p rotor-bench` alone, build it first (`cargo build --release -p rotor -p rotor-plugin`:
//! the bench also measures rotations through the OpenBao plugin).

use std::path::PathBuf;
use std::process::Command;

use rotor_testkit::{postgres_admin_url, text};
use serde_json::Value;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread")]
async fn bench_measures_every_setup_and_cleans_up() {
    let out_dir = std::env::temp_dir().join(format!("rotor_bench_{}", std::process::id()));
    let child = Command::new(rotor())
        .args(["bench", "--wallets", "2000", "--postgres-url", &postgres_admin_url(), "--out"])
        .arg(&out_dir)
        .env_remove("ROTOR_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rotor bench failed:\n{}", text(&out.stderr));

    let table = text(&out.stdout);
    for row in [
        "| rotor rotate, first (from legacy) | SQLite |",
        "| rotor rotate, first (from legacy) | PostgreSQL |",
        "| raw rewrite of legacy rows | PostgreSQL |",
        "| rotor validate | PostgreSQL |",
        "| native read-and-open | SQLite |",
        "| native read-and-open | PostgreSQL |",
        "| rotor rotate (re-wrap) | SQLite |",
        "| rotor rotate (re-wrap) | PostgreSQL |",
        "| rotor rotate --reencrypt | PostgreSQL |",
        "| native baseline, re-wrap | SQLite |",
        "| raw rewrite (no crypto) | PostgreSQL |",
        "| sandbox ceiling (--reencrypt, no writes) | SQLite |",
        "| rotor validate | SQLite |",
        "| OpenBao Transit rewrap, wallets | OpenBao |",
        "| OpenBao Transit rewrap, data keys | OpenBao |",
        "| rotor rotate (re-wrap), CLI beside the plugin | SQLite |",
        "| rotor/rotate in the OpenBao plugin | SQLite |",
        "| rotor/rotate in the OpenBao plugin | PostgreSQL |",
        "rotation through the OpenBao plugin >= 0.8x the CLI's, same rows, PostgreSQL",
        "a command on 10 wallets starts in",
    ] {
        assert!(table.contains(row), "no {row:?} in:\n{table}");
    }
    assert_eq!(
        std::fs::read_to_string(out_dir.join("bench.md")).unwrap().lines().next(),
        table.lines().next()
    );

    let json: Value = serde_json::from_slice(&std::fs::read(out_dir.join("bench.json")).unwrap()).unwrap();
    let measurements = json["report"]["measurements"].as_array().unwrap();
    // SQLite: 10 setups; PostgreSQL: the same but the sandbox ceiling; Transit: 2; the CLI
    // and the plugin on the same rows, in each database: 4.
    assert_eq!(measurements.len(), 10 + 9 + 2 + 4, "{json:#}");
    for m in measurements {
        assert_eq!(m["size"], 2000, "{m}");
        assert_eq!(m["handled"].as_u64().unwrap() % 2000, 0, "every wallet handled: {m}");
        assert!(m["per_second"].as_f64().unwrap() > 0.0, "{m}");
    }
    for setup in ["rotate", "rotate-legacy", "validate", "plugin-rotate"] {
        let runs = measurements.iter().filter(|m| m["setup"] == setup);
        assert!(
            runs.clone().count() == 2 && runs.into_iter().all(|m| m["peak_rss_mib"].as_f64().unwrap() > 1.0),
            "{setup}: {json:#}"
        );
    }
    assert!(!json["targets"].as_array().unwrap().is_empty());
    // rotor-bench ran in rotor's place, and says so as the command that was typed.
    let command = json["report"]["command"].as_str().unwrap();
    assert!(
        command.starts_with(&format!("{} bench --wallets 2000 --postgres-url ", rotor().display())),
        "{command}"
    );

    let png = std::fs::read(out_dir.join("bench.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());

    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname LIKE $1")
        .bind(format!("rotor_bench_{pid}_%"))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "the bench left its PostgreSQL database behind");
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// The `rotor` binary cargo built next to rotor-bench.
fn rotor() -> PathBuf {
    let rotor = PathBuf::from(env!("CARGO_BIN_EXE_rotor-bench")).with_file_name("rotor");
    assert!(
        rotor.is_file(),
        "no {}: build it with `cargo build --release -p rotor` (cargo test --workspace does)",
        rotor.display()
    );
    rotor
}

/// With rotor-bench beside it, `rotor bench --help` is rotor-bench's full help under the name
/// typed, without ROTOR_BENCH_PG_URL's value (it may hold a password); a bad option is
/// rotor-bench's usage error: exit 2, and with --json (given to rotor) one JSON document.
#[test]
fn help_and_usage_errors_come_from_rotor_bench() {
    let out = Command::new(rotor())
        .args(["bench", "--help"])
        .env("ROTOR_BENCH_PG_URL", "postgres://u:hunter2@h/db")
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for wanted in
        ["Usage: rotor bench [OPTIONS]", "--wallets <N,…>", "--quick", "--out <DIR>", "--postgres-url"]
    {
        assert!(help.contains(wanted), "no {wanted:?} in:\n{help}");
    }
    assert!(help.contains("ROTOR_BENCH_PG_URL") && !help.contains("hunter2"), "{help}");

    let out = Command::new(rotor()).args(["--json", "bench", "--wallets", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["usage"], true, "{json}");
    assert!(json["error"].as_str().unwrap().contains("--wallets"), "{json}");
}

/// A `rotor` installed without rotor-bench says how to build it (exit 1; JSON with --json), and
/// `rotor bench --help` still describes the bench, with the same note.
#[test]
fn without_rotor_bench_rotor_says_how_to_build_it() {
    let dir = std::env::temp_dir().join(format!("rotor_alone_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alone = dir.join("rotor");
    std::fs::copy(rotor(), &alone).unwrap();
    let build = "cargo build --release -p rotor-bench";

    let out = Command::new(&alone).args(["bench", "--wallets", "2000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(build) && stderr.contains(&dir.display().to_string()), "{stderr}");
    assert_eq!(text(&out.stdout), "");

    let out = Command::new(&alone).args(["--json", "bench"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["error"].as_str().unwrap().contains(build), "{json}");

    let out = Command::new(&alone).args(["bench", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // clap wraps lines where it likes.
    let help = text(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("Measure rotor against") && help.contains(build), "{help}");
    assert!(text(&out.stderr).starts_with("note: ") && text(&out.stderr).contains(build));
    std::fs::remove_dir_all(&dir).unwrap();
}
