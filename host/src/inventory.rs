//! `rotor keys`: every version of the KEK, with its state, when and by whom it was made, a
//! fingerprint that names the key without revealing it, and the rows of each table that name
//! it, counted by the database: what an operator checks before destroying a version.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::app::App;
use crate::keyring::fingerprint;

/// What `rotor keys` prints (`--json`: this document).
#[derive(Debug, Serialize)]
pub struct Inventory {
    /// `mount/path` of the KEK.
    pub key_path: String,
    /// The tables counted: the run's, then those rotations of this KEK recorded.
    pub tables: Vec<String>,
    /// Every version Vault or a row knows of, newest first.
    pub versions: Vec<KeyVersion>,
    /// Rows that name no version, per table: `legacy` (the seed's format: any KEK may be
    /// theirs), `null`, `not-text`.
    pub unversioned_rows: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Where a KEK version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// The next version, readable but sealing nothing until `rotor promote` (`rotate --stage`).
    Staged,
    /// What new rows are sealed under.
    Current,
    /// Kept for the rows that still name it (or until `rotor prune` destroys it).
    Archived,
    /// Destroyed: Vault holds neither its archive entry nor its KV version.
    Destroyed,
    /// Rows name it, but Vault holds no such key: those rows cannot be opened.
    Missing,
}

impl KeyState {
    /// As `--json` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Staged => "staged",
            KeyState::Current => "current",
            KeyState::Archived => "archived",
            KeyState::Destroyed => "destroyed",
            KeyState::Missing => "missing",
        }
    }
}

/// One KEK version.
#[derive(Debug, Serialize)]
pub struct KeyVersion {
    /// Its number in Vault's version history.
    pub version: u32,
    /// Rows naming it, per table (tables with none left out), not counting those set aside.
    pub rows: BTreeMap<String, u64>,
    /// Rows naming it that are set aside (`rotor quarantine`: they open under no key), per
    /// table; they do not keep the version from being destroyed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<String, u64>,
    /// Where it stands.
    pub state: KeyState,
    /// When Vault stored it (RFC 3339); `None` once Vault no longer keeps its metadata.
    pub created_at: Option<String>,
    /// The rotation that made it, as the journal records it (`None`: not made by a rotation
    /// recorded here, such as the first KEK `migrate-kek` stored).
    pub created_by: Option<String>,
    /// [`fingerprint`](crate::keyring::fingerprint) of the key; `None` if Vault no longer holds it.
    pub fingerprint: Option<String>,
    /// The root version it is derived from (`[tenants] derive-from`), as `<root-path> v<N>`;
    /// `None` for a stored key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
}

/// Reads the KEK's versions from Vault, the journal's rotations of it, and each table's rows
/// per version.
pub async fn inventory(app: &App) -> anyhow::Result<Inventory> {
    survey(app, true).await
}

/// [`inventory`] without fingerprints, so that no key is read: what a metrics page shows every
/// refresh. A version's state comes from where Vault keeps it (its KV version not destroyed, or
/// rotor's archive entry) rather than from reading it.
pub async fn states(app: &App) -> anyhow::Result<Inventory> {
    survey(app, false).await
}

async fn survey(app: &App, read_keys: bool) -> anyhow::Result<Inventory> {
    let database = app.database();
    let mut ring = app.key_ring();
    let metadata = ring.metadata().await?;
    let current = metadata.as_ref().map(|m| m.current_version);
    let archived: BTreeSet<u32> =
        ring.archive_entries().await?.iter().filter_map(|e| e.strip_prefix('v')?.parse().ok()).collect();

    let mut rows: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    let mut unversioned_rows = BTreeMap::new();
    let mut tables = Vec::new();
    for (table, counts) in database.version_counts_by_target().await? {
        for (named, count) in counts {
            match named.parse::<u32>() {
                Ok(version) => {
                    rows.entry(version).or_default().insert(table.table.clone(), count);
                }
                Err(_) => {
                    unversioned_rows
                        .entry(table.table.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(named, count);
                }
            }
        }
        tables.push(table.table);
    }

    let mut quarantined: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for (table, counts) in database.quarantined_counts_by_target().await? {
        for (named, count) in counts {
            match named.parse::<u32>() {
                Ok(version) => {
                    quarantined.entry(version).or_default().insert(table.clone(), count);
                }
                Err(_) => {
                    unversioned_rows
                        .entry(table.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(format!("{named} (set aside)"), count);
                }
            }
        }
    }

    let in_kv = metadata.iter().flat_map(|m| m.versions.iter()).filter_map(|v| u32::try_from(v.version).ok());
    let staged = ring.staged().await?;
    let known: BTreeSet<u32> = in_kv
        .chain(archived.iter().copied())
        .chain(rows.keys().copied())
        .chain(quarantined.keys().copied())
        .chain(staged.iter().map(|s| s.version))
        .collect();
    let rotations = database.rotations().await?;
    let mut versions = Vec::with_capacity(known.len());
    for version in known.into_iter().rev() {
        let meta = metadata.iter().flat_map(|m| m.versions.iter()).find(|v| v.version == u64::from(version));
        let staged = staged.as_ref().filter(|s| s.version == version);
        let readable = !matches!(meta, Some(meta) if meta.destroyed && !archived.contains(&version));
        let key = if readable && read_keys { ring.version(version).await? } else { None };
        let held = match read_keys {
            true => key.is_some(),
            // Kept where a read would look: the KV version, the archive or the staged copy.
            false => readable && (meta.is_some() || archived.contains(&version) || staged.is_some()),
        };
        let state = match (held, current == Some(u64::from(version))) {
            (true, _) if staged.is_some() => KeyState::Staged,
            (true, true) => KeyState::Current,
            (true, false) => KeyState::Archived,
            (false, _) if rows.contains_key(&version) => KeyState::Missing,
            (false, _) => KeyState::Destroyed,
        };
        let created_by = rotations.iter().find(|r| r.to_version == i64::from(version)).map(|r| {
            let identity = r.vault_identity.as_ref().map(|v| format!(" as {v}")).unwrap_or_default();
            format!("rotation #{} by {}{identity}", r.id, r.started_by)
        });
        versions.push(KeyVersion {
            version,
            rows: rows.remove(&version).unwrap_or_default(),
            quarantined: quarantined.remove(&version).unwrap_or_default(),
            state,
            created_at: meta.map(|m| m.created_time.clone()).or_else(|| staged.map(|s| s.staged_at.clone())),
            created_by,
            derived_from: key
                .as_ref()
                .and_then(|held| held.derived.as_ref())
                .map(|record| format!("{} v{}", record.root_path, record.root_version)),
            fingerprint: key.map(|held| fingerprint(&held.kek)),
        });
    }
    Ok(Inventory { key_path: database.scope().key_path.clone(), tables, versions, unversioned_rows })
}

impl Inventory {
    /// The lines `rotor keys` prints without `--json`.
    pub fn human(&self) -> String {
        let mut lines = vec![format!("KEK {} (rows counted in: {})", self.key_path, self.tables.join(", "))];
        lines.push(format!(
            "{:<8} {:<10} {:<21} {:<17} {}",
            "version", "state", "created", "fingerprint", "rows"
        ));
        for v in &self.versions {
            let rows: Vec<String> = v.rows.iter().map(|(table, n)| format!("{table} {n}")).collect();
            lines.push(format!(
                "{:<8} {:<10} {:<21} {:<17} {}",
                format!("v{}", v.version),
                v.state.as_str(),
                v.created_at.as_deref().map_or("-", |t| t.get(..19).unwrap_or(t)),
                v.fingerprint.as_deref().unwrap_or("-"),
                if rows.is_empty() { "none".to_owned() } else { rows.join(", ") }
            ));
            if !v.quarantined.is_empty() {
                let rows: Vec<String> =
                    v.quarantined.iter().map(|(table, n)| format!("{table} {n}")).collect();
                lines.push(format!("         set aside (rotor quarantine): {}", rows.join(", ")));
            }
            if let Some(by) = &v.created_by {
                lines.push(format!("         made by {by}"));
            }
            if let Some(root) = &v.derived_from {
                lines.push(format!("         derived from the root KEK {root}"));
            }
        }
        for (table, counts) in &self.unversioned_rows {
            let counts: Vec<String> = counts.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            lines.push(format!("{table}: rows naming no version: {}", counts.join(", ")));
        }
        lines.join("\n")
    }
}
