//! The `journal` import (and the auditor's `journal-reader`): rotor's record of rotations,
//! written only under the rotation lease this instance holds.

use crate::bindings::auditor::journal_reader;
use crate::bindings::{journal, journal_types, types};
use crate::coordination::Lease;
use crate::store::{Database, NewRotation, RotationRecord, RotationStatus, StoreError};
use crate::vault::VaultClient;

/// What the `journal` import reaches.
pub struct Journal {
    database: Database,
    /// May record rotations (the run's grant).
    may_write: bool,
    /// Whom the run's token belongs to is asked of Vault once, when a rotation is recorded.
    vault: Option<VaultClient>,
}

impl Journal {
    /// The journal in `database`, writable if `may_write`; `vault` names the run's token.
    pub fn new(database: Database, may_write: bool, vault: Option<VaultClient>) -> Journal {
        Journal { database, may_write, vault }
    }

    fn check_write(&self) -> Result<(), journal::Error> {
        if self.may_write {
            Ok(())
        } else {
            tracing::warn!("component denied: the journal is read-only in this run");
            Err(journal::Error::Denied("the journal is read-only in this run".into()))
        }
    }
}

/// The `journal` import of one instance: the journal, and the lease its writes need.
pub struct JournalView<'a> {
    /// The journal and what this instance may do to it.
    pub journal: &'a mut Journal,
    /// The instance's hold on the rotation lease, and the rotation it works on.
    pub lease: &'a mut Lease,
}

// Linked as `journal` for a rotator, as the read-only `journal-reader` for an auditor.
link_for_world!('a, JournalView<'a>, journal_types, journal, journal_reader);

impl From<RotationStatus> for journal_types::RotationStatus {
    fn from(status: RotationStatus) -> Self {
        match status {
            RotationStatus::Running => Self::Running,
            RotationStatus::Finished => Self::Finished,
            RotationStatus::Aborted => Self::Aborted,
        }
    }
}

impl From<RotationRecord> for journal::Rotation {
    fn from(r: RotationRecord) -> Self {
        journal::Rotation {
            id: r.id as u64,
            from_version: r.from_version as u32,
            to_version: r.to_version as u32,
            status: r.status.into(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            started_by: r.started_by,
            total: r.total as u64,
            rotated: r.rotated as u64,
            failed: r.failed as u64,
            reencrypt: r.reencrypt,
            output_format: match r.output_format.as_str() {
                "legacy" => types::OutputFormat::Legacy,
                _ => types::OutputFormat::Envelope,
            },
            restores: r.restores.map(|v| v as u32),
            component_sha256: r.component_sha256,
        }
    }
}

/// How the journal spells an output format.
fn output_format_name(format: types::OutputFormat) -> &'static str {
    match format {
        types::OutputFormat::Envelope => "envelope",
        types::OutputFormat::Legacy => "legacy",
    }
}

/// What a failed journal call tells the component: which kind of failure, and the host's words.
fn journal_error(error: StoreError) -> journal::Error {
    let message = error.to_string();
    match error {
        StoreError::RotationUnfinished { .. } | StoreError::LeaseHeld { .. } => journal::Error::Busy(message),
        StoreError::LeaseLost => journal::Error::LeaseLost(message),
        // Not this run's rotation: no retry will make it so.
        StoreError::OtherScope { .. } => journal::Error::Denied(message),
        _ => journal::Error::Database(message),
    }
}

impl JournalView<'_> {
    /// Whom Vault knows this run's token as, for the journal beside the operating-system user:
    /// asked once, when a rotation is recorded. Not knowing it (an old server, a token without
    /// lookup-self) records nothing rather than failing the rotation.
    async fn learn_vault_identity(&mut self) {
        let Some(vault) =
            self.journal.vault.as_ref().filter(|_| self.lease.identity().vault_identity.is_none())
        else {
            return;
        };
        match vault.identity().await {
            Ok(identity) => self.lease.set_vault_identity(identity.to_string()),
            Err(e) => tracing::warn!("the journal will not name the Vault identity: {e}"),
        }
    }
}

impl journal_types::Host for JournalView<'_> {}

impl journal::Host for JournalView<'_> {
    async fn begin(
        &mut self,
        from_version: u32,
        total: u64,
        reencrypt: bool,
        output_format: types::OutputFormat,
        restores: Option<u32>,
    ) -> wasmtime::Result<Result<journal::Rotation, journal::Error>> {
        if let Err(denied) = self.journal.check_write() {
            return Ok(Err(denied));
        }
        self.learn_vault_identity().await;
        // The component counts the table it reads; a rotation of several tables records the
        // rows of all of them, as the host counts them.
        let database = &self.journal.database;
        let total = match database.scope().targets.len() {
            1 => total,
            _ => match database.count_targets().await {
                Ok(total) => total,
                Err(e) => return Ok(Err(journal_error(e))),
            },
        };
        let begun = self
            .journal
            .database
            .begin_rotation(
                &NewRotation {
                    from_version: from_version.into(),
                    total: total as i64,
                    reencrypt,
                    output_format: output_format_name(output_format),
                    restores: restores.map(i64::from),
                },
                self.lease.identity(),
            )
            .await;
        Ok(match begun {
            Ok(record) => {
                self.lease.work_on(Some(record.id));
                Ok(record.into())
            }
            Err(e) => Err(journal_error(e)),
        })
    }

    async fn set_target(&mut self, id: u64, to_version: u32) -> wasmtime::Result<Result<(), journal::Error>> {
        if let Err(denied) = self.journal.check_write() {
            return Ok(Err(denied));
        }
        self.lease.work_on(Some(id as i64));
        if let Err(lost) = self.lease.renew().await {
            return Ok(Err(journal_error(lost)));
        }
        Ok(self
            .journal
            .database
            .set_rotation_target(id as i64, to_version.into())
            .await
            .map_err(journal_error))
    }

    async fn resume(&mut self) -> wasmtime::Result<Result<Option<journal::Rotation>, journal::Error>> {
        if let Err(denied) = self.journal.check_write() {
            return Ok(Err(denied));
        }
        Ok(self.lease.join_or_lead().await.map(|r| r.map(Into::into)).map_err(journal_error))
    }

    async fn finish(&mut self, id: u64, failed: u64) -> wasmtime::Result<Result<(), journal::Error>> {
        if let Err(denied) = self.journal.check_write() {
            return Ok(Err(denied));
        }
        self.lease.work_on(None);
        if let Err(lost) = self.lease.renew().await {
            return Ok(Err(journal_error(lost)));
        }
        Ok(self.journal.database.finish_rotation(id as i64, failed as i64).await.map_err(journal_error))
    }

    async fn rotations(&mut self) -> wasmtime::Result<Result<Vec<journal::Rotation>, journal::Error>> {
        Ok(self
            .journal
            .database
            .rotations()
            .await
            .map(|records| records.into_iter().map(Into::into).collect())
            .map_err(journal_error))
    }
}

// The auditor's read-only interface.
impl journal_reader::Host for JournalView<'_> {
    async fn rotations(&mut self) -> wasmtime::Result<Result<Vec<journal::Rotation>, journal::Error>> {
        journal::Host::rotations(self).await
    }
}
