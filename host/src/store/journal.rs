//! rotor's journal of rotations (`rotor_rotations`), as records.

use std::fmt;

use serde::Serialize;

use super::StoreError;

/// One rotation as rotor's journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationRecord {
    /// The journal's id for the rotation, increasing.
    pub id: i64,
    /// The KEK version the wallets were on when it started (0: the seed's legacy format).
    pub from_version: i64,
    /// The KEK version it moves the wallets to; 0 until the new KEK is recorded.
    pub to_version: i64,
    /// Running (or interrupted), or how it ended.
    pub status: RotationStatus,
    /// When it started, as recorded in the journal.
    pub started_at: String,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<String>,
    /// `user@host (pid N)` of the rotor that began it.
    pub started_by: String,
    /// Wallets in the table when it started.
    pub total: i64,
    /// Wallets moved to `to_version` so far.
    pub rotated: i64,
    /// Wallets that could not be moved; they stay on their old KEK.
    pub failed: i64,
    /// Each wallet's data key is replaced too, not only re-wrapped.
    pub reencrypt: bool,
    /// `envelope` or `legacy`: what the rotation writes.
    pub output_format: String,
    /// For a rollback: the earlier KEK version made current again.
    pub restores: Option<i64>,
    /// Hex sha256 of the component that began it.
    pub component_sha256: String,
    /// Whom Vault knew the token of the rotor that began it as (see
    /// [`RunIdentity::vault_identity`]); `None` when unknown or recorded before 0.2.
    pub vault_identity: Option<String>,
}

/// Where a rotation stands, as the journal's `status` column spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationStatus {
    /// Moving wallets, or interrupted: `rotor rotate` finishes it.
    Running,
    /// Every wallet it could move was moved.
    Finished,
    /// Closed by `rotor abort` before it finished: its wallets stay on whichever KEK they were.
    Aborted,
}

impl RotationStatus {
    /// The journal's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStatus::Running => "running",
            RotationStatus::Finished => "finished",
            RotationStatus::Aborted => "aborted",
        }
    }

    /// Reads the journal's spelling; anything else is a journal rotor did not write.
    pub fn parse(status: &str) -> Result<RotationStatus, StoreError> {
        [RotationStatus::Running, RotationStatus::Finished, RotationStatus::Aborted]
            .into_iter()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "rotor_rotations holds a rotation with status {status:?}, which this rotor does not know \
                     (running, finished or aborted): was it written by a newer rotor?"
                ))
            })
    }
}

impl fmt::Display for RotationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(super) fn unfinished(running: RotationRecord) -> StoreError {
    StoreError::RotationUnfinished {
        id: running.id,
        from_version: running.from_version,
        started_by: running.started_by,
        started_at: running.started_at,
    }
}

/// Reads a [`RotationRecord`] from a row of either database (a macro: sqlx's row types differ).
macro_rules! rotation_from_row {
    ($row:expr) => {{
        let row = $row;
        RotationRecord {
            id: row.try_get("id")?,
            from_version: row.try_get("from_version")?,
            to_version: row.try_get("to_version")?,
            status: RotationStatus::parse(&row.try_get::<String, _>("status")?)?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            started_by: row.try_get("started_by")?,
            total: row.try_get("total")?,
            rotated: row.try_get("rotated")?,
            failed: row.try_get("failed")?,
            reencrypt: row.try_get("reencrypt")?,
            output_format: row.try_get("output_format")?,
            restores: row.try_get("restores")?,
            component_sha256: row.try_get("component_sha256")?,
            vault_identity: row.try_get("vault_identity")?,
        }
    }};
}
pub(crate) use rotation_from_row;

/// `2026-11-30T07:34:44Z`: sortable as text, the same in both databases.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
