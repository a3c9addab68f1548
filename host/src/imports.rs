//! The host side of the component's imports: Vault KV, the wallet store, the journal and
//! reporting, each call checked against the run's [`Grants`] and [`Limits`]. The read-only
//! interfaces of the `auditor` world delegate to the same checked functions.

use std::collections::BTreeMap;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use zeroize::Zeroizing;

use crate::bindings::auditor::{journal_reader, kv_reader, wallet_reader};
use crate::bindings::{journal, journal_types, kv, kv_types, report, types, wallet_store, wallet_types};
use crate::grants::Grants;
use crate::kv_backend::KvBackend;
use crate::limits::{GuestClock, Limits, MemoryCap};
use crate::progress::Reporter;
use crate::store::{
    Checkpoint, Database, OddRow, OddRows, Replacement, RotationRecord, RunIdentity, StoreError, unix_now,
};
use crate::vault::{KvMetadata, KvSecret, VaultError};
use crate::walk::Batches;

/// Everything one component instance may reach, and nothing more.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    memory: MemoryCap,
    clock: GuestClock,
    /// Vault, or the read-only KEK from the environment.
    kv: KvBackend,
    database: Database,
    grants: Grants,
    identity: RunIdentity,
    reporter: Reporter,
    /// The rotation whose progress each batch checkpoints, once the component names it.
    active_rotation: Option<i64>,
    /// How long the rotation lease lasts without a batch renewing it.
    lease_ttl: std::time::Duration,
    /// When this run's component is not the reference one: the reference opens every batch
    /// it writes before the batch is committed (see [`crate::cross_check`]).
    cross_check: Option<Box<dyn BatchCheck>>,
    /// What `next-batch` hands out: this instance's share of a rotation's walk, or of a
    /// read-only pass over the table (`validate` on several instances).
    batches: Option<Batches>,
    /// Rows left untouched because they hold no text ciphertext, have no usable id, or would
    /// grow over `limits.max-value-kib`: never handed to the component, listed in the
    /// command's report. Shared by all instances of one command.
    odd_rows: OddRows,
}

/// A check every batch must pass before it is written, whatever import it comes through. The
/// runner supplies it (rotor's reference component, [`crate::cross_check`]); it is a trait here
/// so that the imports need nothing from the runner that instantiates them.
pub trait BatchCheck: Send {
    /// `Ok` to write `rows`; an error (usually [`CrossCheckFailed`]) stops the run with nothing of
    /// the batch written.
    fn verify<'a>(&'a mut self, rows: &'a [wallet_store::Replacement])
    -> BoxFuture<'a, wasmtime::Result<()>>;
}

/// A boxed future, for the one async trait method above.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why the reference component refused a batch.
#[derive(Debug, thiserror::Error)]
#[error(
    "cross-check failed for wallet {id:?}: {reason}; the reference component refused the batch, nothing \
     of it was written (run rotor's own component, or --no-cross-check if you trust this one)"
)]
pub struct CrossCheckFailed {
    pub id: String,
    pub reason: String,
}

/// Default rotation lease: long enough for any batch, short enough to take over from a rotor
/// that died on another host without much wait.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

impl RunState {
    pub fn new(
        kv: impl Into<KvBackend>,
        database: Database,
        grants: Grants,
        identity: RunIdentity,
        reporter: Reporter,
        limits: Limits,
    ) -> Self {
        // Randomness (wasi:random) is all the component gets from WASI: no preopened
        // directories, no environment, no arguments, no network, no inherited stdio.
        let wasi = WasiCtx::builder().build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(&limits),
            clock: GuestClock::new(&limits),
            limits,
            kv: kv.into(),
            database,
            grants,
            identity,
            reporter,
            active_rotation: None,
            lease_ttl: DEFAULT_LEASE,
            cross_check: None,
            batches: None,
            odd_rows: OddRows::default(),
        }
    }

    /// The rows this instance left untouched so far (see [`OddRows`]).
    pub fn odd_rows(&self) -> &OddRows {
        &self.odd_rows
    }

    /// Collects this instance's odd rows in `odd`, shared with the command's other instances.
    pub fn set_odd_rows(&mut self, odd: OddRows) {
        self.odd_rows = odd;
    }

    /// Makes this instance a worker of a rotation's walk, or one of several reading the
    /// table: `next-batch` hands out `batches`.
    pub fn set_batches(&mut self, batches: Batches) {
        self.batches = Some(batches);
    }

    /// This run's identity: its lease token names its hold on the rotation lease.
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    pub fn lease_ttl(&self) -> std::time::Duration {
        self.lease_ttl
    }

    /// Has the reference component check every batch before it is committed.
    pub fn set_cross_check(&mut self, check: Box<dyn BatchCheck>) {
        self.cross_check = Some(check);
    }

    pub fn set_lease_ttl(&mut self, ttl: std::time::Duration) {
        self.lease_ttl = ttl;
    }

    /// Gives up the rotation lease if this run holds it (when the command ends, however it ends).
    pub async fn release_lease(&self) -> Result<(), StoreError> {
        self.database.release_lease(&self.identity.lease_token).await
    }

    pub(crate) fn memory_cap(&mut self) -> &mut MemoryCap {
        &mut self.memory
    }

    pub(crate) fn clock(&mut self) -> &mut GuestClock {
        &mut self.clock
    }

    /// Guest CPU time this run has used so far.
    pub fn guest_time(&self) -> std::time::Duration {
        self.clock.used()
    }

    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    fn denied_kv(&self, action: &str, path: &str) -> kv::Error {
        tracing::warn!(path, action, "component denied: outside this run's grant");
        kv::Error::Denied(format!("{action} {path} is outside this run's grant ({})", self.grants))
    }

    fn check_wallets_write(&self, action: &str) -> Result<(), wallet_store::Error> {
        if self.grants.wallets_write {
            return Ok(());
        }
        tracing::warn!(action, "component denied: wallets are read-only in this run");
        Err(wallet_store::Error::Denied(format!("{action}: wallets are read-only in this run")))
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn kv_error(error: VaultError) -> kv::Error {
    let message = error.to_string();
    match error {
        VaultError::PermissionDenied { .. } | VaultError::ReadOnly { .. } => kv::Error::Denied(message),
        VaultError::CasMismatch { .. } => kv::Error::CasMismatch(message),
        VaultError::Unreachable { .. }
        | VaultError::Sealed { .. }
        | VaultError::BadToken
        | VaultError::LoginFailed { .. } => kv::Error::Unavailable(message),
        _ => kv::Error::Other(message),
    }
}

/// Hands secret values to the component. The strings are moved, not copied, so the only
/// copies left are the one wasmtime lowers into the guest's memory and the guest's own.
fn secret_to_wit(secret: KvSecret) -> kv::Secret {
    kv::Secret {
        version: secret.version,
        created_time: secret.created_time,
        data: secret.data.into_iter().map(|(k, mut v)| (k, std::mem::take(&mut *v))).collect(),
    }
}

fn metadata_to_wit(m: KvMetadata) -> kv::SecretMetadata {
    kv::SecretMetadata {
        current_version: m.current_version,
        oldest_version: m.oldest_version,
        max_versions: m.max_versions,
        created_time: m.created_time,
        updated_time: m.updated_time,
        versions: m
            .versions
            .into_iter()
            .map(|v| kv::VersionMetadata {
                version: v.version,
                created_time: v.created_time,
                deletion_time: v.deletion_time,
                destroyed: v.destroyed,
            })
            .collect(),
    }
}

impl kv::Host for RunState {
    async fn read(
        &mut self,
        path: String,
        version: Option<u64>,
    ) -> wasmtime::Result<Result<Option<kv::Secret>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied_kv("reading", &path)));
        }
        Ok(self.kv.read(&path, version).await.map(|s| s.map(secret_to_wit)).map_err(kv_error))
    }

    async fn write(
        &mut self,
        path: String,
        data: Vec<(String, String)>,
        cas: Option<u64>,
    ) -> wasmtime::Result<Result<u64, kv::Error>> {
        let data: BTreeMap<String, Zeroizing<String>> =
            data.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect();
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied_kv("writing", &path)));
        }
        Ok(self.kv.write(&path, &data, cas).await.map_err(kv_error))
    }

    async fn list_keys(&mut self, path: String) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied_kv("listing", &path)));
        }
        Ok(self.kv.list(&path).await.map_err(kv_error))
    }

    async fn metadata(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<kv::SecretMetadata>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied_kv("reading metadata of", &path)));
        }
        Ok(self.kv.metadata(&path).await.map(|m| m.map(metadata_to_wit)).map_err(kv_error))
    }

    async fn destroy_versions(
        &mut self,
        path: String,
        versions: Vec<u64>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied_kv("destroying versions of", &path)));
        }
        tracing::info!(path, ?versions, "destroying KEK versions");
        Ok(self.kv.destroy_versions(&path, &versions).await.map_err(kv_error))
    }

    async fn delete_all(&mut self, path: String) -> wasmtime::Result<Result<(), kv::Error>> {
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied_kv("deleting", &path)));
        }
        tracing::info!(path, "deleting an archived KEK");
        Ok(self.kv.delete_all(&path).await.map_err(kv_error))
    }
}

fn store_error(error: StoreError) -> wallet_store::Error {
    wallet_store::Error::Database(error.to_string())
}

impl wallet_store::Host for RunState {
    async fn count(&mut self) -> wasmtime::Result<Result<u64, wallet_store::Error>> {
        Ok(self.database.count().await.map_err(store_error))
    }

    async fn scan(
        &mut self,
        after: Option<String>,
        limit: u32,
        skip_prefix: Option<String>,
    ) -> wasmtime::Result<Result<Vec<wallet_store::Wallet>, wallet_store::Error>> {
        let limit = limit.min(self.limits.max_batch_rows);
        if limit == 0 {
            return Ok(Ok(Vec::new()));
        }
        // Spliced into a LIKE pattern: no wildcards, nothing to escape.
        if let Some(prefix) =
            skip_prefix.as_deref().filter(|p| !p.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'))
        {
            return Ok(Err(wallet_store::Error::Database(format!(
                "skip-prefix {prefix:?} may hold letters, digits and ':' only"
            ))));
        }
        // The component's cursor is the last wallet it is handed: odd rows (recorded, not
        // handed out) after it are read again on its next call, and a page of odd rows only
        // must not look like the end of the table, so read on until a wallet or the end.
        let mut after = after;
        loop {
            let page = match self
                .database
                .checked_scan(after.as_deref(), None, limit, skip_prefix.as_deref(), &self.odd_rows)
                .await
            {
                Ok(page) => page,
                Err(e) => return Ok(Err(store_error(e))),
            };
            if !page.rows.is_empty() || page.fetched < limit as usize {
                return Ok(Ok(page
                    .rows
                    .into_iter()
                    .map(|row| wallet_store::Wallet { id: row.id, ciphertext: row.ciphertext })
                    .collect()));
            }
            after = page.last_id;
        }
    }

    async fn version_counts(&mut self) -> wasmtime::Result<Result<Vec<(String, u64)>, wallet_store::Error>> {
        Ok(self
            .database
            .version_counts()
            .await
            .map(|counts| counts.into_iter().collect())
            .map_err(store_error))
    }

    /// A row holding no text ciphertext is recorded as odd and answered as absent: there is
    /// no wallet in it to open or move.
    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Option<String>, wallet_store::Error>> {
        Ok(match self.database.checked_get(&id).await {
            Ok(Some(Ok(ciphertext))) => Ok(Some(ciphertext)),
            Ok(Some(Err(odd))) => {
                self.odd_rows.record(odd);
                Ok(None)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(store_error(e)),
        })
    }

    async fn put(
        &mut self,
        id: String,
        ciphertext: String,
    ) -> wasmtime::Result<Result<(), wallet_store::Error>> {
        if let Err(denied) = self.check_wallets_write("put") {
            return Ok(Err(denied));
        }
        let max = self.limits.max_value_bytes();
        if ciphertext.len() > max {
            return Ok(Err(wallet_store::Error::TooLarge(format!(
                "ciphertext for {id:?} is {} bytes; the limit is {max} (limits.max-value-kib)",
                ciphertext.len()
            ))));
        }
        Ok(self.database.put(&id, &ciphertext).await.map_err(store_error))
    }

    async fn replace_batch(
        &mut self,
        rows: Vec<wallet_store::Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.check_wallets_write("replace-batch") {
            return Ok(Err(denied));
        }
        self.write_replacements(rows).await
    }

    async fn replace_current_batch(
        &mut self,
        rows: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.check_wallets_write("replace-current-batch") {
            return Ok(Err(denied));
        }
        let Some(Batches::Walk(batches)) = &mut self.batches else {
            return Ok(Err(wallet_store::Error::Denied(
                "replace-current-batch: this instance was handed no batch (use replace-batch)".into(),
            )));
        };
        let mut replacements = Vec::with_capacity(rows.len());
        for (id, replacement) in rows {
            let Some(expected) = batches.take_handed_out(&id) else {
                return Ok(Err(wallet_store::Error::Denied(format!(
                    "replace-current-batch: wallet {id:?} is not in the batch handed out last (or is named twice); \
                     nothing of the batch was written"
                ))));
            };
            replacements.push(wallet_store::Replacement { id, expected, replacement });
        }
        self.write_replacements(replacements).await
    }

    async fn next_batch(
        &mut self,
    ) -> wasmtime::Result<Result<Option<Vec<wallet_store::Wallet>>, wallet_store::Error>> {
        Ok(RunState::next_batch(self).await)
    }
}

impl RunState {
    /// Both replace functions: sizes checked, the cross-check, then one transaction. A
    /// replacement over `limits.max-value-kib` is left out of the batch (neither replaced nor a
    /// conflict, which the component would retry) and its row reported as odd: the wallet stays
    /// on its old KEK and the rest of the batch is written.
    async fn write_replacements(
        &mut self,
        rows: Vec<wallet_store::Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        let (max_rows, max_bytes) = (self.limits.max_batch_rows as usize, self.limits.max_value_bytes());
        if rows.len() > max_rows {
            return Ok(Err(wallet_store::Error::TooLarge(format!(
                "a batch of {} rows; the limit is {max_rows} (limits.max-batch-rows)",
                rows.len()
            ))));
        }
        let (rows, too_large): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.replacement.len() <= max_bytes);
        for row in too_large {
            self.odd_rows.record(OddRow::over_limit(
                row.id,
                row.replacement.len(),
                self.limits.max_value_kib,
            ));
        }
        if let Some(check) = &mut self.cross_check {
            // A batch the reference cannot read back stops the run: nothing of it is written,
            // and a component that produced it is not trusted with the next one.
            check.verify(&rows).await?;
        }
        let rows: Vec<Replacement> = rows
            .into_iter()
            .map(|r| Replacement { id: r.id, expected: r.expected, replacement: r.replacement })
            .collect();
        let checkpoint = match &self.batches {
            Some(Batches::Walk(batches)) => batches.checkpoint(),
            _ => self.active_rotation.map(|rotation| Checkpoint::Rotation {
                rotation,
                lease_token: &self.identity.lease_token,
                lease_expires_at: unix_now() + self.lease_ttl.as_secs() as i64,
            }),
        };
        Ok(self
            .database
            .replace_batch(&rows, checkpoint)
            .await
            .map(|outcome| wallet_store::BatchOutcome {
                replaced: outcome.replaced,
                conflicts: outcome.conflicts,
            })
            .map_err(store_error))
    }

    async fn next_batch(&mut self) -> Result<Option<Vec<wallet_store::Wallet>>, wallet_store::Error> {
        let to_wit = |rows: Vec<crate::store::WalletRow>| {
            rows.into_iter()
                .map(|row| wallet_store::Wallet { id: row.id, ciphertext: row.ciphertext })
                .collect()
        };
        let Some(batches) = &mut self.batches else {
            return Err(wallet_store::Error::Denied(
                "next-batch: this instance is not a worker of a rotation (the host hands out batches \
                 to move-wallets only)"
                    .into(),
            ));
        };
        Ok(batches.next(&self.odd_rows).await.map_err(store_error)?.map(to_wit))
    }
}

impl From<OddRow> for types::WalletFailure {
    fn from(row: OddRow) -> Self {
        types::WalletFailure { id: row.id, reason: row.reason }
    }
}

impl From<RotationRecord> for journal::Rotation {
    fn from(r: RotationRecord) -> Self {
        journal::Rotation {
            id: r.id as u64,
            from_version: r.from_version as u32,
            to_version: r.to_version as u32,
            status: r.status,
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

impl From<journal::Rotation> for RotationRecord {
    fn from(r: journal::Rotation) -> Self {
        RotationRecord {
            id: r.id as i64,
            from_version: r.from_version.into(),
            to_version: r.to_version.into(),
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            started_by: r.started_by,
            total: r.total as i64,
            rotated: r.rotated as i64,
            failed: r.failed as i64,
            reencrypt: r.reencrypt,
            output_format: output_format_name(r.output_format).into(),
            restores: r.restores.map(i64::from),
            component_sha256: r.component_sha256,
            // Not part of the WIT record: `rotor history` reads it from the journal itself.
            vault_identity: None,
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

/// How long a rotor waits for another one to finish setting up a rotation (or closing one)
/// before it gives up and names the holder. Setting up takes well under a second.
const SETUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl RunState {
    /// The unfinished rotation, if any. One whose key ranges are planned (its target is
    /// recorded) is joined at once: any number of rotors share its walk. Otherwise this rotor
    /// takes the rotation lease first, waiting a little for a live holder, so that one rotor
    /// at a time stores a KEK and plans the ranges.
    async fn join_or_lead(&mut self) -> Result<Option<journal::Rotation>, StoreError> {
        let deadline = std::time::Instant::now() + SETUP_PATIENCE;
        // The rotation this rotor waited to join: if it finishes meanwhile, it is the answer
        // (the host then reports it done), rather than a reason to start another one.
        let mut waited_for: Option<i64> = None;
        loop {
            match self.database.unfinished_rotation().await? {
                Some(rotation)
                    if rotation.to_version != 0 && self.database.has_ranges(rotation.id).await? =>
                {
                    self.active_rotation = Some(rotation.id);
                    return Ok(Some(rotation.into()));
                }
                Some(rotation) => waited_for = Some(rotation.id),
                None => {
                    if let Some(id) = waited_for
                        && let Some(done) = self.database.rotations().await?.into_iter().find(|r| r.id == id)
                    {
                        return Ok(Some(done.into()));
                    }
                }
            }
            match self.database.acquire_lease(&self.identity, self.lease_ttl).await {
                Ok(()) => break,
                // Set-up takes milliseconds: look again soon, to join the rotation rather than
                // arrive after it is over.
                Err(StoreError::LeaseHeld { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let record = self.database.unfinished_rotation().await?;
        if let Some(rotation) = record.as_ref().filter(|r| r.to_version != 0) {
            // Begun by an earlier rotor, which planned no ranges: plan them now, under the lease.
            self.database.plan_ranges(rotation.id).await?;
        }
        self.active_rotation = record.as_ref().map(|r| r.id);
        Ok(record.map(Into::into))
    }

    /// Whom Vault knows this run's token as, for the journal beside the operating-system user:
    /// asked once, when a rotation is recorded. Not knowing it (an old server, a token without
    /// lookup-self) records nothing rather than failing the rotation.
    async fn learn_vault_identity(&mut self) {
        let Some(vault) = self.kv.vault().filter(|_| self.identity.vault_identity.is_none()) else {
            return;
        };
        match vault.identity().await {
            Ok(identity) => self.identity.vault_identity = Some(identity.to_string()),
            Err(e) => tracing::warn!("the journal will not name the Vault identity: {e}"),
        }
    }

    fn check_journal_write(&self) -> Result<(), String> {
        if self.grants.journal_write {
            Ok(())
        } else {
            tracing::warn!("component denied: the journal is read-only in this run");
            Err("the journal is read-only in this run".into())
        }
    }
}

impl journal::Host for RunState {
    async fn begin(
        &mut self,
        from_version: u32,
        total: u64,
        reencrypt: bool,
        output_format: types::OutputFormat,
        restores: Option<u32>,
    ) -> wasmtime::Result<Result<journal::Rotation, String>> {
        if let Err(denied) = self.check_journal_write() {
            return Ok(Err(denied));
        }
        self.learn_vault_identity().await;
        let begun = self
            .database
            .begin_rotation(
                from_version.into(),
                total as i64,
                reencrypt,
                output_format_name(output_format),
                restores.map(i64::from),
                &self.identity,
            )
            .await;
        Ok(match begun {
            Ok(record) => {
                self.active_rotation = Some(record.id);
                Ok(record.into())
            }
            Err(e) => Err(e.to_string()),
        })
    }

    async fn set_target(&mut self, id: u64, to_version: u32) -> wasmtime::Result<Result<(), String>> {
        if let Err(denied) = self.check_journal_write() {
            return Ok(Err(denied));
        }
        self.active_rotation = Some(id as i64);
        if let Err(lost) = self.database.renew_lease(&self.identity.lease_token, self.lease_ttl).await {
            return Ok(Err(lost.to_string()));
        }
        Ok(self.database.set_rotation_target(id as i64, to_version.into()).await.map_err(|e| e.to_string()))
    }

    async fn resume(&mut self) -> wasmtime::Result<Result<Option<journal::Rotation>, String>> {
        if let Err(denied) = self.check_journal_write() {
            return Ok(Err(denied));
        }
        Ok(self.join_or_lead().await.map_err(|e| e.to_string()))
    }

    async fn finish(&mut self, id: u64, failed: u64) -> wasmtime::Result<Result<(), String>> {
        if let Err(denied) = self.check_journal_write() {
            return Ok(Err(denied));
        }
        self.active_rotation = None;
        if let Err(lost) = self.database.renew_lease(&self.identity.lease_token, self.lease_ttl).await {
            return Ok(Err(lost.to_string()));
        }
        Ok(self.database.finish_rotation(id as i64, failed as i64).await.map_err(|e| e.to_string()))
    }

    async fn rotations(&mut self) -> wasmtime::Result<Result<Vec<journal::Rotation>, String>> {
        Ok(self
            .database
            .rotations()
            .await
            .map(|records| records.into_iter().map(Into::into).collect())
            .map_err(|e| e.to_string()))
    }
}

impl report::Host for RunState {
    async fn log(&mut self, level: report::Level, message: String) -> wasmtime::Result<()> {
        match level {
            report::Level::Debug => tracing::debug!(target: "rotor::component", "{message}"),
            report::Level::Info => tracing::info!(target: "rotor::component", "{message}"),
            report::Level::Warn => tracing::warn!(target: "rotor::component", "{message}"),
            report::Level::Error => tracing::error!(target: "rotor::component", "{message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, done: u64, total: u64) -> wasmtime::Result<()> {
        self.reporter.progress(done, total);
        Ok(())
    }
}

impl types::Host for RunState {}
impl kv_types::Host for RunState {}
impl wallet_types::Host for RunState {}
impl journal_types::Host for RunState {}

// The auditor world's read-only imports: the same checked calls as their read-write
// counterparts, with no way to reach the writes.

impl kv_reader::Host for RunState {
    async fn read(
        &mut self,
        path: String,
        version: Option<u64>,
    ) -> wasmtime::Result<Result<Option<kv::Secret>, kv::Error>> {
        kv::Host::read(self, path, version).await
    }

    async fn list_keys(&mut self, path: String) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        kv::Host::list_keys(self, path).await
    }

    async fn metadata(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<kv::SecretMetadata>, kv::Error>> {
        kv::Host::metadata(self, path).await
    }
}

impl wallet_reader::Host for RunState {
    async fn count(&mut self) -> wasmtime::Result<Result<u64, wallet_store::Error>> {
        wallet_store::Host::count(self).await
    }

    async fn version_counts(&mut self) -> wasmtime::Result<Result<Vec<(String, u64)>, wallet_store::Error>> {
        wallet_store::Host::version_counts(self).await
    }

    async fn scan(
        &mut self,
        after: Option<String>,
        limit: u32,
        skip_prefix: Option<String>,
    ) -> wasmtime::Result<Result<Vec<wallet_store::Wallet>, wallet_store::Error>> {
        wallet_store::Host::scan(self, after, limit, skip_prefix).await
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Option<String>, wallet_store::Error>> {
        wallet_store::Host::get(self, id).await
    }
}

impl journal_reader::Host for RunState {
    async fn rotations(&mut self) -> wasmtime::Result<Result<Vec<journal::Rotation>, String>> {
        journal::Host::rotations(self).await
    }
}
