//! `validate`: opens every wallet, counts them per KEK version, names the ones that fail.

use std::collections::BTreeMap;

use crate::bindings::exports::rotor::kek::operations::{KeyLocation, ValidateReport};
use crate::bindings::rotor::kek::types::{VersionCount, WalletFailure};
use crate::bindings::rotor::kek::wallet_store;
use crate::keyring::{Keyring, OpenError};
use crate::{log, scan};

pub(crate) fn validate(at: &KeyLocation, batch_size: u32) -> Result<ValidateReport, String> {
    let mut keyring = Keyring::load(&at.key_path)?;
    let total = wallet_store::count().map_err(scan::store_error)?;
    let mut per_version = BTreeMap::<u32, u64>::new();
    let mut invalid = Vec::new();
    let mut seen = 0u64;
    for batch in scan::batches(batch_size, None) {
        for wallet in batch? {
            match keyring.open(&wallet.id, &wallet.ciphertext) {
                Ok((version, _plaintext)) => *per_version.entry(version).or_default() += 1,
                Err(OpenError::Wallet(reason)) => invalid.push(WalletFailure { id: wallet.id, reason }),
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
            seen += 1;
        }
        log::progress(seen, total.max(seen));
    }
    if !invalid.is_empty() {
        log::warn(&format!("{} wallet(s) do not open", invalid.len()));
    }
    Ok(ValidateReport {
        total: seen,
        valid: seen - invalid.len() as u64,
        key_versions: per_version
            .into_iter()
            .map(|(version, count)| VersionCount { version, count })
            .collect(),
        invalid,
    })
}
