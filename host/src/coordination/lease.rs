//! The rotation lease as one component instance holds it: whose it is, how long it lasts, and
//! which rotation the instance works on.

use std::time::{Duration, Instant};

use crate::store::{Checkpoint, Database, RotationRecord, RunIdentity, StoreError, unix_now};

/// How long a rotor waits for another one to finish setting up a rotation (or closing one)
/// before it gives up and names the holder. Setting up takes well under a second.
const SETUP_PATIENCE: Duration = Duration::from_secs(10);

/// How often a rotor waiting to join a rotation that is being set up looks again.
const SETUP_POLL: Duration = Duration::from_millis(25);

/// One instance's hold on (or claim to) the rotation lease, and the rotation it works on.
pub struct Lease {
    database: Database,
    identity: RunIdentity,
    ttl: Duration,
    /// The rotation whose progress each batch checkpoints, once the component names it.
    active_rotation: Option<i64>,
}

impl Lease {
    /// Not held yet: `identity` names the holder once [`Lease::acquire`] succeeds.
    pub fn new(database: Database, identity: RunIdentity, ttl: Duration) -> Lease {
        Lease { database, identity, ttl, active_rotation: None }
    }

    /// Who holds (or would hold) the lease.
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    /// Records whom Vault knows this run's token as, for the journal.
    pub fn set_vault_identity(&mut self, identity: String) {
        self.identity.vault_identity = Some(identity);
    }

    /// How long the lease lasts without a batch renewing it.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease, or fails with [`StoreError::LeaseHeld`] naming a live holder.
    pub async fn acquire(&self) -> Result<(), StoreError> {
        self.database.acquire_lease(&self.identity, self.ttl).await
    }

    /// Extends the lease this run holds; fails if it was lost (expired and taken over).
    pub async fn renew(&self) -> Result<(), StoreError> {
        self.database.renew_lease(&self.identity.lease_token, self.ttl).await
    }

    /// Gives the lease up if this run holds it (when the command ends, however it ends).
    pub async fn release(&self) -> Result<(), StoreError> {
        self.database.release_lease(&self.identity.lease_token).await
    }

    /// Names the rotation this instance works on (`None` once it is closed).
    pub fn work_on(&mut self, rotation: Option<i64>) {
        self.active_rotation = rotation;
    }

    /// What a batch written outside a walk renews: the lease, while a rotation is active.
    pub fn checkpoint(&self) -> Option<Checkpoint<'_>> {
        self.active_rotation.map(|rotation| Checkpoint::Rotation {
            rotation,
            lease_token: &self.identity.lease_token,
            lease_expires_at: unix_now() + self.ttl.as_secs() as i64,
        })
    }

    /// The unfinished rotation, if any. One whose key ranges are planned (its target is
    /// recorded) is joined at once: any number of rotors share its walk. Otherwise this rotor
    /// takes the rotation lease first, waiting a little for a live holder, so that one rotor
    /// at a time stores a KEK and plans the ranges.
    pub async fn join_or_lead(&mut self) -> Result<Option<RotationRecord>, StoreError> {
        let deadline = Instant::now() + SETUP_PATIENCE;
        // The rotation this rotor waited to join: if it finishes meanwhile, it is the answer
        // (the host then reports it done), rather than a reason to start another one.
        let mut waited_for: Option<i64> = None;
        loop {
            match self.database.our_unfinished_rotation().await? {
                Some(rotation)
                    if rotation.to_version != 0 && self.database.has_ranges(rotation.id).await? =>
                {
                    self.active_rotation = Some(rotation.id);
                    return Ok(Some(rotation));
                }
                Some(rotation) => waited_for = Some(rotation.id),
                None => {
                    if let Some(id) = waited_for
                        && let Some(done) = self.database.rotations().await?.into_iter().find(|r| r.id == id)
                    {
                        return Ok(Some(done));
                    }
                }
            }
            match self.acquire().await {
                Ok(()) => break,
                // Set-up takes milliseconds: look again soon, to join the rotation rather than
                // arrive after it is over.
                Err(StoreError::LeaseHeld { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(SETUP_POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
        let record = self.database.our_unfinished_rotation().await?;
        if let Some(rotation) = record.as_ref().filter(|r| r.to_version != 0) {
            // Begun by an earlier rotor, which planned no ranges: plan them now, under the lease.
            self.database.plan_ranges(rotation.id).await?;
        }
        self.active_rotation = record.as_ref().map(|r| r.id);
        Ok(record)
    }
}
