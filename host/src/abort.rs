//! `rotor abort`: closes the unfinished rotation without finishing it.
//!
//! For a rotation that cannot or should not be finished, e.g. a rollback to a KEK that no
//! longer exists, which `rotor rotate` would try to resume forever. Aborting moves and writes
//! nothing: each wallet stays on the KEK it is on. It is safe only if every KEK a wallet names
//! stays readable and nobody is still moving wallets, so it refuses otherwise.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::app::App;
use crate::ledger::Ledger;
use crate::plan::DEFAULT_LEASE;
use crate::store::{RotationRecord, RunIdentity, StoreError};

/// What `rotor abort` did.
#[derive(Debug, Serialize)]
pub struct Aborted {
    /// The journal id of the rotation aborted.
    pub rotation_id: i64,
    /// The KEK version its wallets were on when it started.
    pub from_version: i64,
    /// 0 if the rotation had not recorded its target yet.
    pub to_version: i64,
    /// Wallets it had moved before it stopped; they stay on `to_version`.
    pub rotated: i64,
    /// Wallets per KEK version now, as the database counts them.
    pub key_versions: BTreeMap<String, u64>,
}

impl Aborted {
    /// The lines `rotor abort` prints without `--json`.
    pub fn human(&self) -> String {
        let versions: Vec<String> = self.key_versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        format!(
            "rotation #{} (KEK v{} -> {}) aborted after moving {} wallet(s); no KEK was written to Vault\n\
             wallets per KEK version: {} (Vault keeps every one of them)\n\
             `rotor rotate` starts a new rotation when you are ready",
            self.rotation_id,
            self.from_version,
            if self.to_version == 0 { "no target yet".to_owned() } else { format!("v{}", self.to_version) },
            self.rotated,
            if versions.is_empty() { "none".into() } else { versions.join(", ") },
        )
    }
}

/// Closes the unfinished rotation as aborted, under the rotation lease.
pub async fn abort(app: &App) -> anyhow::Result<Aborted> {
    let database = app.database();
    let Some(rotation) = database.our_unfinished_rotation().await? else {
        bail!("there is no unfinished rotation to abort (`rotor status` shows none); nothing was changed");
    };
    let who = RunIdentity::this_process(app.component().sha256.clone());
    // One rotor at a time sets a rotation up or closes it: holding the lease keeps others from
    // closing or resuming this one meanwhile.
    database.acquire_lease(&who, DEFAULT_LEASE).await.map_err(|e| match e {
        StoreError::LeaseHeld { holder, .. } => anyhow::anyhow!(
            "{holder} is setting up or closing rotation #{}: wait for it (`rotor status`), then run \
             `rotor abort` again if it is still unfinished; nothing was changed",
            rotation.id
        ),
        other => other.into(),
    })?;
    let aborted = close(app, &who, &rotation).await;
    if let Err(e) = database.release_lease(&who.lease_token).await {
        tracing::warn!("could not release the rotation lease (it will run out): {e}");
    }
    if aborted.is_ok() {
        Ledger::new(app.kv(), &app.settings().key_path).extend(database).await;
    }
    aborted
}

async fn close(app: &App, who: &RunIdentity, rotation: &RotationRecord) -> anyhow::Result<Aborted> {
    let database = app.database();
    // Claims of rotors that died on this host are freed; any claim left is a live walker,
    // whose next batch would land in a closed rotation.
    database.release_dead_claims(rotation.id, &who.host).await?;
    let walking = database.range_progress(rotation.id).await?.holders;
    if !walking.is_empty() {
        bail!(
            "rotation #{} is still being walked by {}: stop {} (or let {} finish, which closes it), \
             then run `rotor abort` again; nothing was changed",
            rotation.id,
            walking.join("; "),
            if walking.len() == 1 { "it" } else { "them" },
            if walking.len() == 1 { "it" } else { "them" },
        );
    }
    // Every table the rotation moves: a KEK any of them names must stay readable.
    let key_versions = database.version_counts_summed().await?;
    require_keks_in_vault(app, &key_versions).await?;
    if !database.abort_rotation(rotation.id).await? {
        let running = database.unfinished_rotation().await?.is_some_and(|r| r.id == rotation.id);
        let walking = database.range_progress(rotation.id).await?.holders;
        let why = match (running, walking.is_empty()) {
            (false, _) => "was closed by another process meanwhile".to_owned(),
            (true, true) => "had a key range claimed as it was being closed".to_owned(),
            (true, false) => format!("was claimed by {} meanwhile (stop it first)", walking.join("; ")),
        };
        bail!(
            "rotation #{} {why}: nothing was changed; run `rotor status`, then `rotor abort` again if it \
             is still unfinished",
            rotation.id,
        );
    }
    let closed = database
        .rotations()
        .await?
        .into_iter()
        .find(|r| r.id == rotation.id)
        .context("the aborted rotation vanished from the journal")?;
    tracing::warn!(rotation = rotation.id, "rotation aborted: its wallets stay where they are");
    Ok(Aborted {
        rotation_id: closed.id,
        from_version: closed.from_version,
        to_version: closed.to_version,
        rotated: closed.rotated,
        key_versions,
    })
}

/// Every KEK version a wallet names must stay readable once nothing will move those wallets
/// any more: in rotor's archive, or at least in the KV version history. Reads only metadata
/// and folder listings, never a key.
async fn require_keks_in_vault(app: &App, key_versions: &BTreeMap<String, u64>) -> anyhow::Result<()> {
    let key_path = &app.settings().key_path;
    let archive = format!("{key_path}-archive/");
    let archived: BTreeSet<u32> = app
        .kv()
        .list(&archive)
        .await?
        .iter()
        .filter_map(|name| name.strip_prefix('v')?.parse().ok())
        .collect();
    let in_history: BTreeSet<u32> = app
        .kv()
        .metadata(key_path)
        .await?
        .map(|m| {
            m.versions
                .iter()
                .filter(|v| !v.destroyed && v.deletion_time.is_empty())
                .filter_map(|v| u32::try_from(v.version).ok())
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<String> = key_versions
        .iter()
        .filter_map(|(label, count)| Some((label.parse::<u32>().ok()?, count)))
        .filter(|(version, _)| !archived.contains(version) && !in_history.contains(version))
        .map(|(version, count)| format!("{count} wallet(s) on KEK v{version}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} name a KEK that Vault has neither in {archive} nor in the version history of {key_path}: \
             restore it in Vault first (aborting would leave them unreadable for good); nothing was changed",
            missing.join(", ")
        );
    }
    Ok(())
}
