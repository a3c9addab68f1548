//! `rotor history`: rotor's journal merged with the seed's KEK archives, newest first.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app::App;
use crate::bindings::operations;
use crate::store::{RotationRecord, RotationStatus};

/// One line of `rotor history`.
#[derive(Debug, Serialize)]
pub struct HistoryLine {
    /// `rotor` for a rotation from rotor's journal, `seed-archive` for a KEK the seed archived.
    pub source: String,
    #[serde(flatten)]
    /// The rotation, for a journal line.
    pub rotation: Option<RotationRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Where the seed archived the KEK (`<key-path>-archive/<timestamp>`), for an archive line.
    pub archive_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// When the seed archived it, for an archive line.
    pub archived_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// For the `vault-history` line, last and only when the history chained in Vault is
    /// broken or could not be read: what was found.
    pub chain: Option<crate::ledger::Verdict>,
}

/// The component's history with each rotation as rotor's own journal holds it: the component
/// only passes records through (and the WIT record lacks the Vault identity), so a rotation the
/// journal does not hold is one the component made up, and is left out with a warning.
pub async fn history_lines(
    app: &App,
    entries: Vec<operations::HistoryEntry>,
) -> anyhow::Result<Vec<HistoryLine>> {
    let journal: BTreeMap<i64, RotationRecord> =
        app.database().rotations().await?.into_iter().map(|r| (r.id, r)).collect();
    Ok(as_journaled(entries, &journal))
}

/// `entries` with each rotation replaced by `journal`'s record of it, leaving out those it does
/// not hold.
fn as_journaled(
    entries: Vec<operations::HistoryEntry>,
    journal: &BTreeMap<i64, RotationRecord>,
) -> Vec<HistoryLine> {
    let mut lines = Vec::with_capacity(entries.len());
    for entry in entries {
        let rotation = match entry.rotation {
            Some(told) => match journal.get(&(told.id as i64)) {
                Some(recorded) => Some(recorded.clone()),
                None => {
                    tracing::warn!(
                        "the component's history names rotation #{}, which rotor's journal does not hold; left out",
                        told.id
                    );
                    continue;
                }
            },
            None => None,
        };
        lines.push(HistoryLine {
            source: entry.source,
            rotation,
            archive_path: entry.archive_path,
            archived_at: entry.archived_at,
            chain: None,
        });
    }
    lines
}

/// `current`: Vault's current KEK version, which an unfinished rotation that stopped before
/// recording its target moves to.
pub fn history_human(entries: &[HistoryLine], current: Option<u64>) -> String {
    if entries.is_empty() {
        return "no rotations recorded".into();
    }
    let target = |r: &RotationRecord| match r.to_version {
        0 if r.status == RotationStatus::Running => match current.filter(|c| *c > r.from_version as u64) {
            Some(current) => format!("v{current} (stored, not yet recorded)"),
            None => "(no new KEK stored yet)".into(),
        },
        0 => "(no new KEK)".into(),
        to => format!("v{to}"),
    };
    let lines: Vec<String> = entries
        .iter()
        .map(|entry| match (&entry.rotation, &entry.archive_path) {
            (Some(r), _) => format!(
                "{}  #{} v{} -> {}  {}  {} of {} moved, {} failed{}  by {}{}  component {}",
                r.started_at,
                r.id,
                r.from_version,
                target(r),
                r.status,
                r.rotated,
                r.total,
                r.failed,
                r.finished_at.as_ref().map(|f| format!(", ended {f}")).unwrap_or_default(),
                r.started_by,
                r.vault_identity.as_ref().map(|v| format!(" as {v}")).unwrap_or_default(),
                &r.component_sha256[..r.component_sha256.len().min(12)],
            ),
            (None, Some(path)) => format!(
                "{}  seed script archived a KEK at {path}",
                entry.archived_at.as_deref().unwrap_or("?")
            ),
            (None, None) => String::new(),
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64) -> RotationRecord {
        RotationRecord::example(id)
    }

    fn told(rotation: RotationRecord) -> operations::HistoryEntry {
        operations::HistoryEntry {
            source: "rotor".into(),
            rotation: Some(rotation.into()),
            archive_path: None,
            archived_at: None,
        }
    }

    #[test]
    fn history_shows_the_journal_not_what_a_component_claims() {
        let journal = BTreeMap::from([(1, record(1))]);
        let mut inflated = record(1);
        inflated.rotated = 999;
        inflated.started_by = "nobody".into();
        let archive = operations::HistoryEntry {
            source: "seed-archive".into(),
            rotation: None,
            archive_path: Some("ibn/encryption-key-archive/1700000000000".into()),
            archived_at: Some("2023-11-14T22:13:20Z".into()),
        };
        let lines = as_journaled(vec![told(inflated), told(record(7)), archive], &journal);
        assert_eq!(lines.len(), 2, "the made-up rotation #7 is left out: {lines:?}");
        assert_eq!(
            lines[0].rotation.as_ref(),
            Some(&record(1)),
            "the journal's record, Vault identity included"
        );
        assert_eq!(lines[1].source, "seed-archive");
        assert_eq!(lines[1].archive_path.as_deref(), Some("ibn/encryption-key-archive/1700000000000"));
    }
}
