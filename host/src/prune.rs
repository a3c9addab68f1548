//! `rotor prune` and `rotor destroy`: destroy KEK versions that no row of any table under the
//! KEK names (prune: all but the newest few, as the component decides; destroy: one version
//! the operator names, decided by the host), and leave a receipt of what was destroyed:
//! printed, stored in Vault at `<key-path>-receipts/<time>`, where no runner may change it
//! afterwards, and appended to the history chained in Vault.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::answer::answer;
use crate::app::App;
use crate::component::Instance;
use crate::keyring::DestroyedKek;
use crate::ledger::Ledger;
use crate::store::{RotationStatus, RunIdentity, now_rfc3339};
use crate::vault::KvData;

/// What `rotor prune` prints (`--json`: this document).
#[derive(Debug, Serialize)]
pub struct Pruned {
    /// Versions destroyed (none in a dry run).
    pub destroyed: Vec<u32>,
    /// `--dry-run`: the versions a prune would destroy now, each having passed every check
    /// the host makes before destroying (fingerprint, rows per table); nothing was destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_destroy: Option<Vec<DestroyedKek>>,
    /// Versions kept as the newest `--keep`.
    pub kept: Vec<u32>,
    /// Versions not destroyed because rows use them: version → rows.
    pub in_use: BTreeMap<String, u64>,
    /// What was destroyed, by whom and why it could be; `None` when nothing was.
    pub receipt: Option<Receipt>,
    /// Why the receipt could not be stored in Vault (it is printed all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_not_stored: Option<String>,
}

/// The record a prune that destroyed anything leaves.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// `mount/path` of the KEK.
    pub key_path: String,
    /// When the versions were destroyed (RFC 3339, UTC).
    pub destroyed_at: String,
    /// `user@host (pid N)` of the rotor that destroyed them.
    pub destroyed_by: String,
    /// Whom Vault knew the run's token as; `None` when it could not say.
    pub vault_identity: Option<String>,
    /// The rotor release that ran.
    pub rotor_version: String,
    /// sha256 of the component that decided what to destroy.
    pub component_sha256: String,
    /// Each destroyed version, its fingerprint, and its row counts per table just before.
    pub versions: Vec<DestroyedKek>,
    /// Database backups taken before this time may hold rows sealed under the destroyed
    /// versions, which can no longer be opened (the end of the KEK's latest finished rotation;
    /// `None`: none is recorded, so any backup may).
    pub backups_unreadable_before: Option<String>,
    /// Where Vault keeps it (`mount/path`), once stored.
    pub stored_at: Option<String>,
}

/// Runs the component's prune in `instance` (granted `Access::Prune`) and writes the receipt
/// of what the host destroyed for it. A `dry_run` makes the same decisions and checks, and
/// destroys and stores nothing.
pub async fn prune(app: &App, mut instance: Instance, keep: u32, dry_run: bool) -> anyhow::Result<Pruned> {
    if dry_run {
        instance.state_mut().keys_mut().rehearse();
        let report = answer(instance.prune(&app.key_location(), keep).await)?;
        return Ok(Pruned {
            destroyed: Vec::new(),
            would_destroy: Some(instance.state_mut().keys_mut().take_destroyed()),
            kept: report.kept,
            in_use: report.in_use.iter().map(|c| (c.version.to_string(), c.count)).collect(),
            receipt: None,
            receipt_not_stored: None,
        });
    }
    let outcome = instance.prune(&app.key_location(), keep).await;
    // Collected before the outcome is looked at: a component that fails after destroying
    // something still leaves a receipt of it.
    let destroyed = instance.state_mut().keys_mut().take_destroyed();
    let destroyed_by = instance.state().lease().identity().started_by.clone();
    let receipt = if destroyed.is_empty() { None } else { Some(receipt(app, destroyed_by, destroyed).await) };
    let (receipt, receipt_not_stored) = match receipt {
        Some(receipt) => match store(app, receipt).await {
            Ok(stored) => (Some(stored), None),
            Err((receipt, why)) => (Some(receipt), Some(why)),
        },
        None => (None, None),
    };
    chain(app, receipt.as_ref()).await;
    let report = match answer(outcome) {
        Ok(report) => report,
        Err(e) if receipt.is_some() => {
            // The error goes out, and the receipt with it, so that nothing destroyed goes
            // unrecorded.
            let receipt = serde_json::to_string(&receipt).unwrap_or_default();
            return Err(e.context(format!("prune failed after destroying KEK versions; receipt: {receipt}")));
        }
        Err(e) => return Err(e),
    };
    Ok(Pruned {
        destroyed: report.destroyed,
        would_destroy: None,
        kept: report.kept,
        in_use: report.in_use.iter().map(|c| (c.version.to_string(), c.count)).collect(),
        receipt,
        receipt_not_stored,
    })
}

/// Appends the receipt (and any closed rotation the chain lacks) to the history in Vault. A
/// failure is logged: the versions are gone and the receipt is printed and in its own path.
async fn chain(app: &App, receipt: Option<&Receipt>) {
    let ledger = Ledger::new(app.kv(), &app.settings().key_path);
    let Some(receipt) = receipt else {
        ledger.extend(app.database()).await;
        return;
    };
    let recorded = match serde_json::to_value(receipt) {
        Ok(value) => ledger.record_prune(app.database(), value).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = recorded {
        tracing::warn!(
            "the receipt is not in the history in Vault ({e:#}); it is printed, and stored on its own"
        );
    }
}

/// `rotor destroy`: destroys KEK `version` once the host's checks pass (not the current KEK,
/// no unfinished rotation, no row of any table under the KEK naming it), with a receipt as
/// prune leaves; a `dry_run` makes the checks and destroys nothing. A refusal destroys
/// nothing and says why.
pub async fn destroy(app: &App, version: u32, dry_run: bool) -> anyhow::Result<Pruned> {
    let mut ring = app.key_ring();
    let database = app.database();
    let checked = match dry_run {
        true => ring.rehearse_destroy(version, database).await,
        false => ring.destroy(version, database).await,
    };
    let destroyed = checked.map_err(|e| anyhow::anyhow!("{e}; nothing was destroyed"))?;
    if dry_run {
        return Ok(Pruned {
            destroyed: Vec::new(),
            would_destroy: Some(vec![destroyed]),
            kept: Vec::new(),
            in_use: BTreeMap::new(),
            receipt: None,
            receipt_not_stored: None,
        });
    }
    let destroyed_by = RunIdentity::this_process(app.component().sha256.clone()).started_by;
    let receipt = receipt(app, destroyed_by, vec![destroyed]).await;
    let (receipt, receipt_not_stored) = match store(app, receipt).await {
        Ok(stored) => (stored, None),
        Err((receipt, why)) => (receipt, Some(why)),
    };
    chain(app, Some(&receipt)).await;
    Ok(Pruned {
        destroyed: vec![version],
        would_destroy: None,
        kept: Vec::new(),
        in_use: BTreeMap::new(),
        receipt: Some(receipt),
        receipt_not_stored,
    })
}

/// The receipt of `versions`, destroyed by `destroyed_by` (`user@host (pid N)`). What cannot
/// be learnt now (Vault's name for the token, the journal) is left out rather than failing:
/// the versions are gone already.
async fn receipt(app: &App, destroyed_by: String, versions: Vec<DestroyedKek>) -> Receipt {
    let vault_identity = match app.kv().vault() {
        Some(vault) => vault.identity().await.ok().map(|identity| identity.to_string()),
        None => None,
    };
    let latest = match app.database().rotations().await {
        Ok(rotations) => rotations
            .iter()
            .filter(|r| r.status == RotationStatus::Finished)
            .find_map(|r| r.finished_at.clone()),
        Err(e) => {
            tracing::warn!("the receipt cannot say which backups need the destroyed versions: {e}");
            None
        }
    };
    Receipt {
        key_path: app.database().scope().key_path.clone(),
        destroyed_at: now_rfc3339(),
        destroyed_by,
        vault_identity,
        rotor_version: env!("CARGO_PKG_VERSION").to_owned(),
        component_sha256: app.component().sha256.clone(),
        versions,
        backups_unreadable_before: latest,
        stored_at: None,
    }
}

/// Writes `receipt` create-only at `<key-path>-receipts/<time>-v<N>…`; on failure, gives it
/// back with the reason.
async fn store(app: &App, mut receipt: Receipt) -> Result<Receipt, (Receipt, String)> {
    let versions: Vec<String> = receipt.versions.iter().map(|v| format!("v{}", v.version)).collect();
    let name = format!("{}-{}", receipt.destroyed_at.replace(':', "-"), versions.join("-"));
    let path = format!("{}-receipts/{name}", app.settings().key_path);
    let written = async {
        let document = serde_json::to_string(&receipt).context("encoding the receipt")?;
        let data = KvData::from([("receipt".to_owned(), Zeroizing::new(document))]);
        app.kv().write(&path, &data, Some(0)).await.with_context(|| format!("writing {path}"))?;
        anyhow::Ok(())
    }
    .await;
    match written {
        Ok(()) => {
            receipt.stored_at = Some(format!("{}-receipts/{name}", receipt.key_path));
            Ok(receipt)
        }
        Err(e) => {
            tracing::error!(
                "the receipt of the destroyed KEK versions is not in Vault ({e:#}): keep this output"
            );
            Err((receipt, format!("{e:#}")))
        }
    }
}

impl Pruned {
    /// The lines `rotor prune` prints without `--json`.
    pub fn human(&self) -> String {
        let list = |versions: &[u32]| versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        if let Some(would) = &self.would_destroy {
            let versions: Vec<u32> = would.iter().map(|v| v.version).collect();
            let named = if versions.is_empty() { "nothing".into() } else { list(&versions) };
            let mut lines = vec![match self.kept.is_empty() {
                true => format!("dry run, nothing destroyed: would destroy {named}"),
                false => format!(
                    "dry run, nothing destroyed: would destroy {named}; would keep {}",
                    list(&self.kept)
                ),
            }];
            for version in would {
                lines.push(format!(
                    "v{}: fingerprint {}",
                    version.version,
                    version.fingerprint.as_deref().unwrap_or("unknown (no readable copy)")
                ));
            }
            for (version, count) in &self.in_use {
                lines.push(format!("would refuse to destroy v{version}: {count} row(s) still use it"));
            }
            if !self.in_use.is_empty() {
                lines.push(crate::keyring::QUARANTINE_HINT.to_owned());
            }
            return lines.join("\n");
        }
        let destroyed = if self.destroyed.is_empty() { "nothing".into() } else { list(&self.destroyed) };
        let mut lines = vec![match self.kept.is_empty() {
            true => format!("destroyed: {destroyed}"),
            false => format!("destroyed: {destroyed}; kept: {}", list(&self.kept)),
        }];
        for (version, count) in &self.in_use {
            lines.push(format!("refused to destroy v{version}: {count} row(s) still use it"));
        }
        if !self.in_use.is_empty() {
            lines.push(crate::keyring::QUARANTINE_HINT.to_owned());
        }
        let Some(receipt) = &self.receipt else { return lines.join("\n") };
        for destroyed in &receipt.versions {
            let rows: Vec<String> = destroyed.rows.iter().map(|(table, n)| format!("{table} {n}")).collect();
            lines.push(format!(
                "v{}: fingerprint {}, rows naming it when destroyed: {}",
                destroyed.version,
                destroyed.fingerprint.as_deref().unwrap_or("unknown (no readable copy)"),
                rows.join(", ")
            ));
            if !destroyed.quarantined.is_empty() {
                let rows: Vec<String> =
                    destroyed.quarantined.iter().map(|(table, n)| format!("{table} {n}")).collect();
                lines.push(format!(
                    "v{}: rows set aside in quarantine that named it, now unreadable for good: {}",
                    destroyed.version,
                    rows.join(", ")
                ));
            }
        }
        match (&receipt.stored_at, &self.receipt_not_stored) {
            (Some(at), _) => lines.push(format!("receipt stored in Vault at {at}")),
            (None, Some(why)) => {
                lines.push(format!("receipt NOT stored in Vault ({why}): keep this output as the record"))
            }
            (None, None) => {}
        }
        lines.push(match &receipt.backups_unreadable_before {
            Some(time) => format!(
                "warning: database backups taken before {time} may hold rows sealed under {}, which can no \
                 longer be opened",
                list(&self.destroyed)
            ),
            None => format!(
                "warning: any database backup may hold rows sealed under {}, which can no longer be opened",
                list(&self.destroyed)
            ),
        });
        lines.join("\n")
    }
}
