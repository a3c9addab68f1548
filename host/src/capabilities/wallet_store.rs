//! The `wallet-store` import (and the auditor's `wallet-reader`): the wallet table, read in
//! pages or in the batches a rotation's walk hands out, and written only in checked batches.
//!
//! Every write passes the same gate whatever function it comes through: the command's grant,
//! the size limits, then the host's own check of each row — the new ciphertext must open,
//! under the current KEK, to exactly the wallet the row held (or, for `seal`, the plaintext
//! the operator gave) — and only then one transaction that also renews the run's hold on the
//! rotation (its lease or its key range). A component whose write fails the check is stopped.

use rotor_codec::{Decoded, Format};

use crate::bindings::auditor::wallet_reader;
use crate::bindings::wallet_store::{self, Rewrite};
use crate::bindings::wallet_types;
use crate::capabilities::keys::Keys;
use crate::coordination::{Batches, Lease, NotRewrapped, WorkerBatches};
use crate::grants::WalletWrites;
use crate::keyring::KeyRing;
use crate::limits::Limits;
use crate::store::{BatchOutcome, Database, OddRow, OddRows, Replacement, StoreError, WalletRow};

/// Why the host refused a write. The component that asked for it is stopped, and nothing of
/// the batch was written.
#[derive(Debug, thiserror::Error)]
#[error(
    "write refused for wallet {id:?}: {reason}; nothing of the batch was written, and every wallet \
     stays as it was"
)]
pub struct WriteRefused {
    /// The wallet whose new ciphertext failed the check.
    pub id: String,
    /// What the check found.
    pub reason: String,
}

/// What the `wallet-store` import reaches.
pub struct WalletStore {
    database: Database,
    /// Which wallets the run may write (its grant).
    writes: WalletWrites,
    limits: Limits,
    /// `seal`: the plaintext the operator gave, which the one wallet written must open to.
    seal_plaintext: Option<rotor_codec::Plaintext>,
    /// Rows checked before being written, for the log.
    checked: u64,
    /// What `next-batch` hands out: this instance's share of a rotation's walk, or of a
    /// read-only pass over the table (`validate` on several instances).
    batches: Option<Batches>,
    /// Rows left untouched because they hold no text ciphertext, have no usable id, or would
    /// grow over `limits.max-value-kib`: never handed to the component, listed in the
    /// command's report. Shared by all instances of one command.
    odd_rows: OddRows,
}

impl WalletStore {
    /// The wallet table of `database`, writable as `writes` says, within `limits`.
    pub fn new(database: Database, writes: WalletWrites, limits: Limits) -> WalletStore {
        WalletStore {
            database,
            writes,
            limits,
            seal_plaintext: None,
            checked: 0,
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

    /// Points this instance's reads (and checked writes outside a walk) at another table of
    /// the run's scope: how a dry run of several targets passes over each in turn.
    pub fn use_target(&mut self, database: Database) {
        self.database = database;
    }

    /// `seal`: the wallet the command writes must open to `plaintext`.
    pub fn expect_seal(&mut self, plaintext: rotor_codec::Plaintext) {
        self.seal_plaintext = Some(plaintext);
    }

    /// How many rows the host checked and wrote so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// This instance's share of a rotation's walk, which `action` needs.
    fn walk_batches(&mut self, action: &str) -> Result<&mut WorkerBatches, wallet_store::Error> {
        match &mut self.batches {
            Some(Batches::Walk(batches)) => Ok(batches.as_mut()),
            _ => Err(wallet_store::Error::Denied(format!(
                "{action}: this instance was handed no batch (use replace-batch)"
            ))),
        }
    }

    /// Waits for the write this worker submitted last to land, if there is one: what the host
    /// does once the component's `move-wallets` has returned, whether or not it collected it.
    pub async fn settle_writes(&mut self) -> Result<(), StoreError> {
        match &mut self.batches {
            Some(Batches::Walk(batches)) => batches.settle().await,
            _ => Ok(()),
        }
    }

    /// [`WalletStore::settle_writes`], then what the landed writes did that the component was
    /// not told yet (nothing, for an instance that is no walk's worker).
    async fn settle_all(&mut self) -> Result<BatchOutcome, StoreError> {
        match &mut self.batches {
            Some(Batches::Walk(batches)) => batches.settle_all().await,
            _ => Ok(BatchOutcome::default()),
        }
    }

    fn check_write(&self, action: &str, id: Option<&str>) -> Result<(), wallet_store::Error> {
        let allowed = match (&self.writes, id) {
            (WalletWrites::Batches, None) => true,
            (WalletWrites::One(granted), Some(id)) => granted == id,
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        let why = match &self.writes {
            WalletWrites::None => "wallets are read-only in this run".to_owned(),
            WalletWrites::Batches => "this run writes a rotation's batches only".to_owned(),
            WalletWrites::One(granted) => format!("this run may write wallet {granted:?} only"),
        };
        tracing::warn!(action, "component denied: {why}");
        Err(wallet_store::Error::Denied(format!("{action}: {why}")))
    }
}

/// Checks a replacement: for a re-wrap (both envelopes, the same data part byte for byte) by
/// unwrapping both data keys, which is enough and touches only the wrapped key (and only the
/// heads are read of a re-wrap the host joined itself); for anything else by opening both rows
/// and comparing the wallets.
async fn check_replacement(ring: &mut KeyRing, row: &Replacement) -> wasmtime::Result<Result<(), String>> {
    let host_failure = |e: crate::keyring::KeyError| wasmtime::Error::msg(format!("checking a write: {e}"));
    let id = row.id.as_str();
    let (old_head, new_head) = row.compared();
    if let Some((from, to)) = rotor_codec::rewrap_versions(old_head, new_head) {
        let Some(current) = ring.current_version().await.map_err(host_failure)? else {
            return Ok(Err("Vault has no current KEK".into()));
        };
        if to != current {
            return Ok(Err(format!(
                "the new ciphertext names KEK v{to}, but this command writes under the current KEK v{current}"
            )));
        }
        let (old, target) =
            (ring.version(from).await.map_err(host_failure)?, ring.version(to).await.map_err(host_failure)?);
        let (Some(old), Some(target)) = (old, target) else {
            return Ok(Err(format!(
                "Vault does not have KEK v{from} or v{to}, so the host cannot confirm that the re-wrap holds the same wallet"
            )));
        };
        match rotor_codec::same_rewrapped(&old.kek, &target.kek, id, old_head, new_head) {
            Some(Ok(true)) => return Ok(Ok(())),
            Some(Ok(false)) => {
                return Ok(Err("the new ciphertext opens to a different wallet than the row holds".into()));
            }
            Some(Err(e)) => {
                return Ok(Err(format!(
                    "a data key does not unwrap under the KEK its envelope names ({e}): the row's own, or the new one"
                )));
            }
            None => {}
        }
    }
    let before = match ring.open_row(id, &row.expected).await {
        Ok((_, plaintext)) => Ok(plaintext),
        // Vault failing says nothing about the row: the run stops as for any outage.
        Err(e @ (crate::keyring::KeyError::Unavailable(_) | crate::keyring::KeyError::Denied(_))) => {
            return Err(host_failure(e));
        }
        Err(e) => Err(format!(
            "the row's current ciphertext does not open ({e}), so the host cannot confirm that the \
             replacement holds the same wallet"
        )),
    };
    let before = before.as_ref().map(|p| p.as_slice()).map_err(Clone::clone);
    check_row(ring, id, before, &row.replacement).await
}

/// Checks that `new` opens, under the current KEK, to `before` (what the row held, or what
/// `seal` was given); `Err` with the reason if not. Vault failing is a host failure, not a
/// verdict on the row.
async fn check_row(
    ring: &mut KeyRing,
    id: &str,
    before: Result<&[u8], String>,
    new: &str,
) -> wasmtime::Result<Result<(), String>> {
    let host_failure = |e: crate::keyring::KeyError| wasmtime::Error::msg(format!("checking a write: {e}"));
    let Some(current) = ring.current_version().await.map_err(host_failure)? else {
        return Ok(Err("Vault has no current KEK".into()));
    };
    // Decoded once for both the format's check and the opening.
    let decoded = match Decoded::parse(new) {
        Ok(decoded) => decoded,
        Err(e) => return Ok(Err(format!("the new ciphertext is not in a format rotor reads ({e})"))),
    };
    if let Format::Envelope { kek_version } = decoded.format()
        && kek_version != current
    {
        return Ok(Err(format!(
            "the new ciphertext names KEK v{kek_version}, but this command writes under the current KEK v{current}"
        )));
    }
    let held = ring.version(current).await.map_err(host_failure)?;
    let Some(held) = held else {
        return Ok(Err(format!("Vault does not have the current KEK v{current}")));
    };
    let after = match decoded.open(&held.kek, id) {
        Ok(after) => after,
        Err(e) => {
            return Ok(Err(format!(
                "the new ciphertext does not open under the current KEK v{current} ({e})"
            )));
        }
    };
    Ok(match before {
        Ok(before) if before == after.as_slice() => Ok(()),
        Ok(_) => Err("the new ciphertext opens to a different wallet than the row holds".into()),
        Err(why) => Err(why),
    })
}

/// The `wallet-store` import of one instance: its table, its keys (to check writes), and its
/// lease, which every batch written outside a walk renews.
pub struct WalletStoreView<'a> {
    /// The table and what this instance may do to it.
    pub store: &'a mut WalletStore,
    /// The KEKs every write is checked with.
    pub keys: &'a mut Keys,
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

/// The reads `wallet-store` and `wallet-reader` share: written once, expanded into both `Host`
/// impls, so the auditor's read-only interface makes exactly the same checked calls.
macro_rules! wallet_reads {
    () => {
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

        async fn version_counts(
            &mut self,
        ) -> wasmtime::Result<Result<Vec<(String, u64)>, wallet_store::Error>> {
            Ok(self
                .store
                .database
                .version_counts_under_kek()
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
    };
}

impl wallet_store::Host for WalletStoreView<'_> {
    wallet_reads!();

    async fn put(
        &mut self,
        id: String,
        ciphertext: String,
    ) -> wasmtime::Result<Result<(), wallet_store::Error>> {
        if let Err(denied) = self.store.check_write("put", Some(&id)) {
            return Ok(Err(denied));
        }
        let max = self.store.limits.max_value_bytes();
        if ciphertext.len() > max {
            return Ok(Err(wallet_store::Error::TooLarge(format!(
                "ciphertext for {id:?} is {} bytes; the limit is {max} (limits.max-value-kib)",
                ciphertext.len()
            ))));
        }
        // Borrowed, not copied: the plaintext lives only in its zeroizing buffer.
        let before = match &self.store.seal_plaintext {
            Some(plaintext) => Ok(plaintext.as_slice()),
            None => Err("the command was given no plaintext to seal".to_owned()),
        };
        if let Err(reason) = check_row(self.keys.ring_mut(), &id, before, &ciphertext).await? {
            tracing::error!(%id, "write refused: {reason}");
            return Err(wasmtime::Error::new(WriteRefused { id, reason }));
        }
        self.store.checked += 1;
        Ok(self.store.database.put(&id, &ciphertext).await.map_err(store_error))
    }

    async fn replace_batch(
        &mut self,
        rows: Vec<wallet_store::Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.store.check_write("replace-batch", None) {
            return Ok(Err(denied));
        }
        // The component says what each row holds; the host compares it with the row as it is.
        let rows = rows
            .into_iter()
            .map(|r| Replacement {
                id: r.id,
                expected: r.expected,
                replacement: r.replacement,
                read_at: None,
                heads: None,
            })
            .collect();
        self.write_replacements(rows).await
    }

    async fn replace_current_batch(
        &mut self,
        rows: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        let rows = rows.into_iter().map(|(id, whole)| (id, Rewrite::Whole(whole))).collect();
        let earlier = match self.submit("replace-current-batch", rows).await? {
            Ok(earlier) => earlier,
            Err(refused) => return Ok(Err(refused)),
        };
        let settled = self.store.settle_all().await.map(|mut outcome| {
            outcome.absorb(earlier);
            to_wit_outcome(outcome)
        });
        Ok(settled.map_err(store_error))
    }

    async fn submit_current_batch(
        &mut self,
        rows: Vec<(String, Rewrite)>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        Ok(self.submit("submit-current-batch", rows).await?.map(to_wit_outcome))
    }

    async fn settle_batches(
        &mut self,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        Ok(self.store.settle_all().await.map(to_wit_outcome).map_err(store_error))
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
    /// `submit-current-batch` (and the first half of `replace-current-batch`): the rows matched
    /// with the batch handed out last, checked as every write is, and handed to the walk to
    /// write; answers the outcome of the earlier writes not reported yet.
    async fn submit(
        &mut self,
        action: &str,
        rows: Vec<(String, Rewrite)>,
    ) -> wasmtime::Result<Result<BatchOutcome, wallet_store::Error>> {
        if let Err(denied) = self.store.check_write(action, None) {
            return Ok(Err(denied));
        }
        let batches = match self.store.walk_batches(action) {
            Ok(batches) => batches,
            Err(denied) => return Ok(Err(denied)),
        };
        let matched: Result<Vec<Replacement>, NotRewrapped> = rows
            .into_iter()
            .map(|(id, rewrite)| match rewrite {
                Rewrite::Whole(whole) => batches.replacement(id, whole).map_err(NotRewrapped::NotHandedOut),
                Rewrite::Head(head) => batches.rewrapped(id, &head),
            })
            .collect();
        let replacements = match matched {
            Ok(replacements) => replacements,
            Err(unmatched) => {
                return Ok(Err(wallet_store::Error::Denied(format!(
                    "{action}: {}; nothing of the batch was written",
                    why_unmatched(&unmatched)
                ))));
            }
        };
        let replacements = match self.checked(replacements).await? {
            Ok(replacements) => replacements,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(match self.store.walk_batches(action) {
            Ok(batches) => batches.submit(replacements).await.map_err(store_error),
            Err(denied) => Err(denied),
        })
    }

    /// `replace-batch`: the rows checked, then written at once, after the worker's write in
    /// flight if it is one of a walk's workers.
    async fn write_replacements(
        &mut self,
        rows: Vec<Replacement>,
    ) -> wasmtime::Result<Result<wallet_store::BatchOutcome, wallet_store::Error>> {
        let rows = match self.checked(rows).await? {
            Ok(rows) => rows,
            Err(refused) => return Ok(Err(refused)),
        };
        // A walk's batches go back to the table they came from (a rotation of several tables
        // walks each in turn); anything else writes this instance's table.
        let written = match &mut self.store.batches {
            Some(Batches::Walk(batches)) => batches.write(&rows).await,
            _ => self.store.database.replace_batch(&rows, self.lease.checkpoint()).await,
        };
        Ok(written.map(to_wit_outcome).map_err(store_error))
    }

    /// What every replace function checks before anything is written: sizes, then each row. A
    /// replacement over `limits.max-value-kib` is left out of the batch (neither replaced nor a
    /// conflict, which the component would retry) and its row reported as odd: the wallet stays
    /// on its old KEK and the rest of the batch is written. A row that fails the host's check
    /// stops the component (the `Err`).
    async fn checked(
        &mut self,
        rows: Vec<Replacement>,
    ) -> wasmtime::Result<Result<Vec<Replacement>, wallet_store::Error>> {
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
        // A row that fails the check stops the run: nothing of the batch is written, and a
        // component that produced it is not trusted with the next one.
        for row in &rows {
            let checked = check_replacement(self.keys.ring_mut(), row).await?;
            if let Err(reason) = checked {
                tracing::error!(id = %row.id, "write refused: {reason}");
                return Err(wasmtime::Error::new(WriteRefused { id: row.id.clone(), reason }));
            }
        }
        store.checked += rows.len() as u64;
        tracing::debug!(
            rows = rows.len(),
            total = store.checked,
            "batch checked by the host: every row opens, under the current KEK, to what it held"
        );
        Ok(Ok(rows))
    }
}

/// Why a row of a submitted batch was not matched with the batch handed out, for the
/// component's error.
fn why_unmatched(unmatched: &NotRewrapped) -> String {
    match unmatched {
        NotRewrapped::NotHandedOut(id) => {
            format!("wallet {id:?} is not in the batch handed out last (or is named twice)")
        }
        NotRewrapped::NotAHead(id) => format!(
            "the head given for wallet {id:?} is not exactly an envelope head that keeps its row's data \
             (or the row is not an envelope)"
        ),
    }
}

fn to_wit_outcome(outcome: BatchOutcome) -> wallet_store::BatchOutcome {
    wallet_store::BatchOutcome { replaced: outcome.replaced, conflicts: outcome.conflicts }
}

// The auditor's read-only interface.
impl wallet_reader::Host for WalletStoreView<'_> {
    wallet_reads!();
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
