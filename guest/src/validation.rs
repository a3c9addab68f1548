//! `validate`: opens every wallet, counts them per KEK version, names the ones that fail.

use crate::Failure;
use std::collections::BTreeMap;

use rotor_codec::listed::Listed;

use crate::bindings::exports::rotor::kek::operations::{KeyLocation, ValidateReport};
use crate::bindings::rotor::kek::types::{VersionCount, WalletFailure};
use crate::bindings::rotor::kek::wallet_store::{self, Wallet};
use crate::keyring::{Keyring, OpenError};
use crate::{log, scan};

pub(crate) fn validate(at: &KeyLocation, batch_size: u32) -> Result<ValidateReport, Failure> {
    let mut keyring = Keyring::load(&at.key_path)?;
    let total = wallet_store::count().map_err(scan::store_error)?;
    let mut counts = Counts::default();
    for batch in scan::batches(batch_size, None) {
        counts.open(&mut keyring, batch?)?;
        log::progress(counts.seen, total.max(counts.seen));
    }
    Ok(counts.report())
}

/// One instance's share: the batches the host hands out.
pub(crate) fn validate_batches(at: &KeyLocation) -> Result<ValidateReport, Failure> {
    let mut keyring = Keyring::load(&at.key_path)?;
    let mut counts = Counts::default();
    while let Some(batch) = wallet_store::next_batch().map_err(scan::store_error)? {
        counts.open(&mut keyring, batch)?;
    }
    Ok(counts.report())
}

#[derive(Default)]
struct Counts {
    seen: u64,
    per_version: BTreeMap<u32, u64>,
    invalid: Listed<WalletFailure>,
}

impl Counts {
    fn open(&mut self, keyring: &mut Keyring, batch: Vec<Wallet>) -> Result<(), Failure> {
        for wallet in batch {
            match keyring.open(&wallet.id, &wallet.ciphertext) {
                Ok((version, _plaintext)) => *self.per_version.entry(version).or_default() += 1,
                Err(OpenError::Wallet(reason)) => self.invalid.push(WalletFailure { id: wallet.id, reason }),
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
            self.seen += 1;
        }
        Ok(())
    }

    fn report(self) -> ValidateReport {
        let (invalid, invalid_count) = self.invalid.into_parts();
        if invalid_count > 0 {
            log::warn(&format!("{invalid_count} wallet(s) do not open"));
        }
        ValidateReport {
            total: self.seen,
            valid: self.seen - invalid_count,
            key_versions: self
                .per_version
                .into_iter()
                .map(|(version, count)| VersionCount { version, count })
                .collect(),
            invalid,
            invalid_count,
        }
    }
}
