//! The `wallet-store` import (and the auditor's `wallet-reader`): the wallet table, read in
//! pages or in the batches a rotation's walk hands out, and written only in checked batches.
//!
//! Every write passes the same gate whatever function it comes through: the run's grant, the
//! size limits, then the [`BatchCheck`] the runner installed, and only then one transaction
//! that also renews the run's hold on the rotation (its lease or its key range).

use crate::bindings::auditor::wallet_reader;
use crate::bindings::{wallet_store, wallet_types};
use crate::coordination::{Batches, Lease};
use crate::limits::Limits;
use crate::store::{Database, OddRow, OddRows, Replacement, StoreError, WalletRow};

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
    /// The wallet whose replacement the reference could not read back.
    pub id: String,
    /// What the reference found.
    pub reason: String,
}

/// What the `wallet-store` import reaches.
pub struct WalletStore {
    database: Database,
    /// May insert or replace wallets (the run's grant).
    may_write: bool,
    limits: Limits,
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

impl WalletStore {
    /// The wallet table of `database`, writable if `may_write`, within `limits`.
    pub fn new(database: Database, may_write: bool, limits: Limits) -> WalletStore {
        WalletStore {
            database,
            may_write,
            limits,
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

    /// Has `check` pass every batch before it is committed.
    pub fn set_cross_check(&mut self, check: Box<dyn BatchCheck>) {
        self.cross_check = Some(check);
    }

    fn check_write(&self, action: &str) -> Result<(), wallet_store::Error> {
        if self.may_write {
            return Ok(());
        }
        tracing::warn!(action, "component denied: wallets are read-only in this run");
        Err(wallet_store::Error::Denied(format!("{action}: wallets are read-only in this run")))
    }
}

/// The `wallet-store` import of one instance: its table, and its lease, which every batch
/// written outside a walk renews.
pub struct WalletStoreView<'a> {
    /// The table and what this instance may do to it.
    pub store: &'a mut WalletStore,
    /// The instance's hold on the rotation it works on.
    pub lease: &'a Lease,
}

// Linked as `wallet-store` for a rotator, as the read-only `wallet-reader` for an auditor.
link_for_world!('a, WalletStoreView<'a>, wallet_types, wallet_store, wallet_reader);

fn store_error(error: StoreError) -> wallet_store::Error {
    wallet_store::Error::Database(error.to_string())
}

fn to_wit(rows: Vec<WalletRow>) -> Vec<wallet_store::Wallet> {
    rows.into_iter().map(|row| wallet_store::Wallet { id: row.id, ciphertext: row.ciphertext }).collect()
}

/// Only letters, digits and ':' reach the LIKE pattern a skip-prefix becomes: no wildcards,
/// nothing to escape.
fn check_skip_prefix(prefix: Option<&str>) -> Result<(), wallet_store::Error> {
    match prefix {
        Some(p) if !p.chars().all(|c| c.is_ascii_alphanumeric() || c == ':') => Err(
            wallet_store::Error::Database(format!("skip-prefix {p:?} may hold letters, digits and ':' only")),
        ),
        _ => Ok(()),
    }
}

impl wallet_types::Host for WalletStoreView<'_> {}

impl wallet_store::Host for WalletStoreView<'_> {
    async fn count(&mut self) -> wasmtime::Result<Result<u64, wallet_store::Error>> {
        Ok(self.store.database.count().await.map_err(store_error))
    }

    async fn scan(
        &mut self,
        after: Option<String>,
        limit: u32,
        skip_prefix: Option<String>,
    ) -> wasmtime::Result<Result<Vec<wallet_store::Wallet>, wallet_store::Error>> {
        let limit = limit.min(self.store.limits.max_batch_rows);
        if limit == 0 {
            return Ok(Ok(Vec::new()));
        }
        if let Err(refused) = check_skip_prefix(skip_prefix.as_deref()) {
            return Ok(Err(refused));
        }
        // The component's cursor is the last wallet it is handed: odd rows (recorded, not
        // handed out) after it are read again on its next call, and a page of odd rows only
        // must not look like the end of the table, so read on until a wallet or the end.
        let store = &mut *self.store;
        let mut after = after;
        loop {
            let page = match store
                .database
                .checked_scan(after.as_deref(), None, limit, skip_prefix.as_deref(), &store.odd_rows)
                .await
            {
                Ok(page) => page,
                Err(e) => return Ok(Err(store_error(e))),
            };
            if !page.rows.is_empty() || page.fetched < limit as usize {
                return Ok(Ok(to_wit(page.rows)));
            }
            after = page.last_id;
        }
    }

    async fn version_counts(&mut self) -> wasmtime::Result<Result<Vec<(String, u64)>, wallet_store::Error>> {
        Ok(self
            .store
            .database
            .version_counts()
            .await
            .map(|counts| counts.into_iter().collect())
            .map_err(store_error))
    }

    /// A row holding no text ciphertext is recorded as odd and answered as absent: there is
    /// no wallet in it to open or move.
    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Option<String>, wallet_store::Error>> {
        Ok(match self.store.database.checked_get(&id).await {
            Ok(Some(Ok(ciphertext))) => Ok(Some(ciphertext)),
            Ok(Some(Err(odd))) => {
                self.store.odd_rows.record(odd);
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
        if let Err(denied) = self.store.check_write("put") {
            return Ok(Err(denied));
        }
        let max = self.store.limits.max_value_bytes();
        if ciphertext.len() > max {
            return Ok(Err(wallet_store::Error::TooLarge(format!(
                "ciphertext for {id:?} is {} bytes; the limit is {max} (limits.max-value-kib)",
                ciphertext.len()
            ))));
        }
        Ok(self.store.database.put(&id, &ciphertext).await.map_err(store_error))
    }

    async fn replace_batch(
        &mut self,
        rows: Vec<wallet_store::Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.store.check_write("replace-batch") {
            return Ok(Err(denied));
        }
        self.write_replacements(rows).await
    }

    async fn replace_current_batch(
        &mut self,
        rows: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.store.check_write("replace-current-batch") {
            return Ok(Err(denied));
        }
        let Some(Batches::Walk(batches)) = &mut self.store.batches else {
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
        let store = &mut *self.store;
        let Some(batches) = &mut store.batches else {
            return Ok(Err(wallet_store::Error::Denied(
                "next-batch: this instance is not a worker of a rotation (the host hands out batches \
                 to move-wallets only)"
                    .into(),
            )));
        };
        Ok(batches.next(&store.odd_rows).await.map(|rows| rows.map(to_wit)).map_err(store_error))
    }
}

impl WalletStoreView<'_> {
    /// Both replace functions: sizes checked, the cross-check, then one transaction. A
    /// replacement over `limits.max-value-kib` is left out of the batch (neither replaced nor a
    /// conflict, which the component would retry) and its row reported as odd: the wallet stays
    /// on its old KEK and the rest of the batch is written.
    async fn write_replacements(
        &mut self,
        rows: Vec<wallet_store::Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        let store = &mut *self.store;
        let (max_rows, max_bytes) = (store.limits.max_batch_rows as usize, store.limits.max_value_bytes());
        if rows.len() > max_rows {
            return Ok(Err(wallet_store::Error::TooLarge(format!(
                "a batch of {} rows; the limit is {max_rows} (limits.max-batch-rows)",
                rows.len()
            ))));
        }
        let (rows, too_large): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.replacement.len() <= max_bytes);
        for row in too_large {
            store.odd_rows.record(OddRow::over_limit(
                row.id,
                row.replacement.len(),
                store.limits.max_value_kib,
            ));
        }
        if let Some(check) = &mut store.cross_check {
            // A batch the reference cannot read back stops the run: nothing of it is written,
            // and a component that produced it is not trusted with the next one.
            check.verify(&rows).await?;
        }
        let rows: Vec<Replacement> = rows
            .into_iter()
            .map(|r| Replacement { id: r.id, expected: r.expected, replacement: r.replacement })
            .collect();
        let checkpoint = match &store.batches {
            Some(Batches::Walk(batches)) => batches.checkpoint(),
            _ => self.lease.checkpoint(),
        };
        Ok(store
            .database
            .replace_batch(&rows, checkpoint)
            .await
            .map(|outcome| wallet_store::BatchOutcome {
                replaced: outcome.replaced,
                conflicts: outcome.conflicts,
            })
            .map_err(store_error))
    }
}

// The auditor's read-only interface: the same checked calls as their read-write counterparts.
impl wallet_reader::Host for WalletStoreView<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_prefix_reaches_sql_only_as_letters_digits_and_colons() {
        assert!(check_skip_prefix(None).is_ok());
        assert!(check_skip_prefix(Some("rotor:v7:")).is_ok());
        for hostile in ["rotor:v7:%", "_", "a'b", "x y", "rotor:v1:\\"] {
            assert!(check_skip_prefix(Some(hostile)).is_err(), "{hostile:?} must be refused");
        }
    }
}
