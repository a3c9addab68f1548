//! `rotor status`: where the wallets and the KEK stand, and any unfinished rotation with who
//! is working on it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app::App;
use crate::keyring::StagedKek;
use crate::store::{LeaseHolder, RangeProgress, RotationRecord};

#[derive(Debug, Serialize)]
/// What `rotor status` prints (`--json`: this document).
pub struct Status {
    /// The running or interrupted rotation, if any.
    pub unfinished: Option<RotationRecord>,
    /// Set when the unfinished rotation was begun for another KEK or other tables: what they
    /// are, for the operator to run rotor with those settings.
    pub unfinished_elsewhere: Option<String>,
    /// Who holds the rotation lease (it may have expired: then nobody is setting up or closing).
    pub lease: Option<LeaseHolder>,
    /// The lease's expiry time has passed.
    pub lease_expired: bool,
    /// The unfinished rotation's key ranges: how many are done, who walks the others.
    pub walk: Option<RangeProgress>,
    /// The KEK version the unfinished rotation moves wallets to: as the journal records it, or
    /// Vault's current one if the rotation stored it but stopped before recording it; `None`
    /// while the new KEK is not stored yet.
    pub next_kek_version: Option<u64>,
    /// The version of the KEK in Vault now; `None` if Vault has none.
    pub current_kek_version: Option<u64>,
    /// The KEK `rotor rotate --stage` staged as the next version, waiting for `rotor promote`
    /// (left out of the JSON when none is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedKek>,
    /// Wallets per KEK version: "legacy" for the seed's format, else the version number.
    pub key_versions: BTreeMap<String, u64>,
    /// Wallets in the table (in every target, with several).
    pub total: u64,
    /// With several targets (`[[target]]`), each table's wallets per KEK version; empty (and
    /// left out of the JSON) for one table.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Status {
    /// The lines `rotor status` prints without `--json`.
    pub fn human(&self) -> String {
        let mut lines = Vec::new();
        match &self.unfinished {
            Some(r) => lines.push(format!(
                "rotation #{} unfinished: v{} -> {}, {} of {} moved so far, started by {}{} at {}",
                r.id,
                r.from_version,
                match (r.to_version, self.next_kek_version) {
                    (0, Some(next)) => format!(
                        "v{next} (stored in Vault before the rotation stopped; `rotor rotate` records it \
                         and moves the wallets)"
                    ),
                    (0, None) =>
                        "(new KEK not stored yet: `rotor rotate` stores it and moves the wallets)".into(),
                    (to, _) => format!("v{to}"),
                },
                r.rotated,
                r.total,
                r.started_by,
                r.vault_identity.as_ref().map(|v| format!(" as {v} in Vault")).unwrap_or_default(),
                r.started_at
            )),
            None => lines.push("no rotation in progress".into()),
        }
        if let Some(theirs) = &self.unfinished_elsewhere {
            lines.push(format!(
                "that rotation moves {theirs}, not what these settings name: resume or abort it with the \
                 settings that began it"
            ));
        }
        match (&self.lease, self.lease_expired) {
            (Some(l), false) => {
                lines.push(format!("{} holds the rotation lease since {}", l.holder, l.acquired_at))
            }
            (Some(l), true) => lines.push(format!("{} held the rotation lease, which has expired", l.holder)),
            (None, _) => {}
        }
        if let Some(walk) = &self.walk {
            lines.push(format!("{} of {} key ranges walked", walk.done, walk.ranges));
            if walk.holders.is_empty() {
                lines.push("nobody is walking it: `rotor rotate` resumes it".into());
            } else {
                lines.push(format!("walking: {}", walk.holders.join("; ")));
            }
        }
        let versions: Vec<String> = self.key_versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        lines.push(format!("{} wallets per KEK version: {}", self.total, versions.join(", ")));
        for (table, counts) in &self.tables {
            let versions: Vec<String> = counts.iter().map(|(v, n)| format!("{v}: {n}")).collect();
            lines.push(format!("  table {table}: {}", versions.join(", ")));
        }
        if let Some(v) = self.current_kek_version {
            lines.push(format!("current KEK in Vault: v{v}"));
        }
        if let Some(s) = &self.staged {
            lines.push(format!(
                "staged KEK: v{} since {} (fingerprint {}); `rotor promote` makes it current",
                s.version, s.staged_at, s.fingerprint
            ));
        }
        lines.join("\n")
    }
}

/// Reads the database's wallet counts, lease and journal, and the KEK's metadata in Vault.
pub async fn status(app: &App) -> anyhow::Result<Status> {
    let database = app.database();
    let per_table = database.version_counts_of_targets().await?;
    let key_versions = crate::store::sum_counts(per_table.iter().map(|(_, counts)| counts));
    let lease = database.lease().await?;
    let metadata = app.kv().metadata(&app.settings().key_path).await?;
    let unfinished = database.unfinished_rotation().await?;
    let walk = match &unfinished {
        Some(rotation) => Some(database.range_progress(rotation.id).await?),
        None => None,
    };
    let current_kek_version = metadata.map(|m| m.current_version);
    // A token from before staging existed may not read it: status still answers the rest.
    let mut ring = app.key_ring();
    let staged = ring.staged().await.unwrap_or_else(|error| {
        tracing::warn!("status: cannot read the staged KEK: {error}");
        None
    });
    let next_kek_version = unfinished.as_ref().and_then(|r| match r.to_version {
        0 => current_kek_version.filter(|current| *current > r.from_version as u64),
        to => Some(to as u64),
    });
    let scope = database.scope();
    Ok(Status {
        unfinished_elsewhere: unfinished
            .as_ref()
            .filter(|r| !r.belongs_to(scope))
            .map(RotationRecord::describe_scope),
        walk,
        next_kek_version,
        unfinished,
        lease_expired: lease.as_ref().is_some_and(|l| l.expires_at < crate::store::unix_now()),
        lease,
        current_kek_version,
        staged,
        total: key_versions.values().sum(),
        key_versions,
        tables: match per_table.len() {
            1 => BTreeMap::new(),
            _ => per_table.into_iter().collect(),
        },
    })
}
