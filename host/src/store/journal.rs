//! rotor's journal of rotations (`rotor_rotations`), as records.

use std::fmt;

use serde::Serialize;

use super::StoreError;

/// One rotation as rotor's journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RotationRecord {
    /// The journal's id for the rotation, increasing.
    pub id: i64,
    /// The KEK version the wallets were on when it started (0: the seed's legacy format).
    pub from_version: i64,
    /// The KEK version it moves the wallets to; 0 until the new KEK is recorded.
    pub to_version: i64,
    /// Running (or interrupted), or how it ended.
    #[sqlx(try_from = "String")]
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

/// What the journal records of a rotation as it begins.
#[derive(Clone, Copy, Debug)]
pub struct NewRotation<'a> {
    /// The KEK version the wallets are on (0: the seed's legacy format).
    pub from_version: i64,
    /// Wallets in the table.
    pub total: i64,
    /// Whether each wallet's data key is replaced too.
    pub reencrypt: bool,
    /// `envelope` or `legacy`: what the rotation writes.
    pub output_format: &'a str,
    /// For a rollback: the earlier KEK version it makes current again.
    pub restores: Option<i64>,
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

impl TryFrom<String> for RotationStatus {
    type Error = StoreError;

    fn try_from(status: String) -> Result<RotationStatus, StoreError> {
        RotationStatus::parse(&status)
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

/// `2026-11-30T07:34:44Z`: sortable as text, the same in both databases.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
