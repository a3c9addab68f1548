//! `rotor --via-plugin MOUNT …`: `validate`, `rotate`, `status` and `history` run by the
//! `rotor-plugin` secrets engine mounted at MOUNT in OpenBao (docs/PLUGIN.md). The mount holds
//! the KEK and its `rotor/config` names the database; the CLI only asks, follows and shows, with
//! the Vault address and token it would use for Vault KV.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::report::Outcome;
use crate::shutdown::{Interrupted, Shutdown};
use crate::vault::{VaultClient, VaultConfig};

use super::args::{Command, GlobalArgs, OutputFormat, RotateCommand};
use super::output::print;

/// How often a rotation through the mount is looked at (the mount answers from its journal
/// while the rotation runs, without counting rows).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Runs `command` through the mount at `mount`.
pub(super) async fn run(
    global: &GlobalArgs,
    mount: &str,
    command: &Command,
    shutdown: &Shutdown,
) -> anyhow::Result<Outcome> {
    let mount = mount.trim_matches('/');
    if mount.is_empty() {
        bail!("--via-plugin needs the mount's path, e.g. `--via-plugin rotor`");
    }
    // Often exported for the application, so a warning rather than a refusal.
    let ignored: Vec<&str> = [
        ("--database-url (DATABASE_URL)", global.database_url.is_some()),
        ("--tenant (ROTOR_TENANT)", global.tenant.is_some()),
        ("--component (ROTOR_COMPONENT)", global.component.is_some()),
    ]
    .iter()
    .filter(|(_, given)| *given)
    .map(|(what, _)| *what)
    .collect();
    if !ignored.is_empty() {
        tracing::warn!(
            "--via-plugin ignores {}: the mount's rotor/config names the database and the component",
            ignored.join(", ")
        );
    }
    let client = VaultClient::new(VaultConfig::from_env("secret")?)?;
    let at = |path: &str| format!("{mount}/{path}");
    match command {
        Command::Validate(args) => {
            if args.workers.is_some() {
                bail!(
                    "--via-plugin validate: the mount's rotor/config sets the workers; leave --workers out"
                );
            }
            let report = client.logical_write(&at("validate"), &json!({})).await?;
            let invalid = report["invalid"].as_u64().unwrap_or(0);
            print(global.json, &report, || validated(&report));
            Ok(if invalid > 0 { Outcome::WalletsFailed } else { Outcome::Success })
        }
        Command::Rotate(rotate) => {
            refuse_local_flags(rotate)?;
            let body = json!({ "reencrypt": rotate.rotate.reencrypt });
            let started = client.logical_write(&at("rotate"), &body).await?;
            if let Some(id) = started["resuming_rotation"].as_i64() {
                tracing::info!("the mount resumes its unfinished rotation #{id}");
            }
            let status = at("status");
            let last_run = tokio::select! {
                last_run = follow(&client, &status) => last_run?,
                signal = shutdown.wait() => {
                    let what = format!(
                        "stopped following; the rotation goes on inside OpenBao: \
                         `rotor --via-plugin {mount} status` follows it"
                    );
                    return Err(Interrupted { signal, what }.into());
                }
            };
            let report = &last_run["report"];
            if last_run["state"] != "finished" {
                bail!(
                    "the rotation through {mount}/ did not finish ({}): {}; `rotor --via-plugin {mount} rotate` \
                     resumes it",
                    last_run["state"].as_str().unwrap_or("?"),
                    last_run["error"].as_str().unwrap_or("no reason given")
                );
            }
            print(global.json, report, || rotated(report));
            let failed = report["failed"].as_u64().unwrap_or(0);
            Ok(if failed > 0 { Outcome::WalletsFailed } else { Outcome::Success })
        }
        Command::Status => {
            let status = read(&client, &at("status")).await?;
            print(global.json, &status, || status_lines(&status));
            Ok(Outcome::Success)
        }
        Command::History => {
            let history = read(&client, &at("history")).await?;
            print(global.json, &history, || history_lines(&history));
            Ok(Outcome::Success)
        }
        _ => bail!(
            "--via-plugin runs validate, rotate, status and history through the mount; run other commands \
             without it (they act on Vault KV), or through OpenBao's API as docs/PLUGIN.md shows"
        ),
    }
}

/// Refuses what a rotation through the mount does not take, rather than ignoring it.
fn refuse_local_flags(command: &RotateCommand) -> anyhow::Result<()> {
    let args = &command.rotate;
    let given = [
        ("--dry-run", args.dry_run),
        ("--resume", args.resume),
        ("--strict", args.strict),
        ("--workers", args.workers.is_some()),
        ("--output-format legacy", args.output_format != OutputFormat::Envelope),
        ("--lease-seconds", args.lease_seconds != 60),
        ("--if-older-than", command.if_older_than.is_some()),
        ("--scheduled", command.scheduled),
        ("--compromised", command.compromised.is_some()),
        ("--stage", command.stage),
        ("--new-root", command.new_root),
    ];
    let refused: Vec<&str> = given.iter().filter(|(_, on)| *on).map(|(flag, _)| *flag).collect();
    if !refused.is_empty() {
        bail!(
            "--via-plugin rotate takes --reencrypt only (the mount resumes an unfinished rotation by itself, \
             and its rotor/config sets batch size and workers); not: {}",
            refused.join(", ")
        );
    }
    Ok(())
}

async fn read(client: &VaultClient, path: &str) -> anyhow::Result<Value> {
    client
        .logical_read(path)
        .await?
        .with_context(|| format!("nothing at {path}: is the plugin mounted there?"))
}

/// Reads the mount's status until its rotation is no longer running; its `last_run`.
async fn follow(client: &VaultClient, status: &str) -> anyhow::Result<Value> {
    loop {
        let shown = read(client, status).await?;
        if shown["last_run"]["state"] != "running" {
            return Ok(shown["last_run"].clone());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

fn versions(counts: &Value) -> String {
    let Some(counts) = counts.as_object() else { return "none".into() };
    let shown: Vec<String> = counts
        .iter()
        .map(|(version, count)| match version.as_str() {
            "legacy" => format!("{count} legacy"),
            version => format!("{count} on v{version}"),
        })
        .collect();
    if shown.is_empty() { "none".into() } else { shown.join(", ") }
}

/// What a report's list of ids leaves out: it names the first 1,000 wallets at most.
fn unlisted(report: &Value) -> String {
    match report["unlisted"].as_u64() {
        Some(n) if n > 0 => format!(" and {n} more"),
        _ => String::new(),
    }
}

fn validated(report: &Value) -> String {
    let mut lines = vec![format!(
        "{} of {} wallets open ({})",
        report["valid"],
        report["total"],
        versions(&report["key_versions"])
    )];
    if let Some(ids) = report["invalid_ids"].as_array().filter(|ids| !ids.is_empty()) {
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        lines.push(format!("do not open: {}{}", ids.join(", "), unlisted(report)));
    }
    lines.join("\n")
}

fn rotated(report: &Value) -> String {
    let mut lines = vec![format!(
        "rotation #{} inside OpenBao: KEK v{} → v{}, {} wallets moved, {} unchanged, {} failed",
        report["rotation_id"],
        report["from_version"],
        report["to_version"],
        report["rotated"],
        report["unchanged"],
        report["failed"]
    )];
    if let Some(ids) = report["failed_ids"].as_array().filter(|ids| !ids.is_empty()) {
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        lines.push(format!("not moved: {}{}", ids.join(", "), unlisted(report)));
    }
    lines.join("\n")
}

fn status_lines(status: &Value) -> String {
    let mut lines = vec![match &status["key_versions"] {
        Value::Null => "wallets: counted once the running rotation is done".to_owned(),
        counts => format!("wallets: {}", versions(counts)),
    }];
    if let Some(version) = status["current_kek_version"].as_u64() {
        lines.push(format!("current KEK in the mount: v{version}"));
    }
    match status["unfinished"]["id"].as_i64() {
        Some(id) => lines.push(format!("rotation #{id} is unfinished: `rotate` resumes it")),
        None => lines.push("no rotation is unfinished".into()),
    }
    lines.push(format!(
        "last rotation of this plugin process: {}",
        status["last_run"]["state"].as_str().unwrap_or("?")
    ));
    lines.join("\n")
}

fn history_lines(history: &Value) -> String {
    let Some(rotations) = history["rotations"].as_array().filter(|r| !r.is_empty()) else {
        return "no rotation yet".into();
    };
    let line = |r: &Value| {
        format!(
            "#{} v{} → v{} {} {} → {}: {} moved, {} failed{}",
            r["id"],
            r["from_version"],
            r["to_version"],
            r["status"].as_str().unwrap_or("?"),
            r["started_at"].as_str().unwrap_or("?"),
            r["finished_at"].as_str().unwrap_or("…"),
            r["rotated"],
            r["failed"],
            if r["reencrypt"] == true { " (--reencrypt)" } else { "" }
        )
    };
    rotations.iter().filter(|r| r["source"] == "rotor").map(line).collect::<Vec<_>>().join("\n")
}
