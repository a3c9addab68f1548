//! Walking the wallet table in keyset-paginated batches.

use crate::Failure;
use crate::bindings::rotor::kek::wallet_store::{self, Wallet};

/// Upper bound on one batch: keeps each call across the boundary, and each transaction, small.
pub(crate) const MAX_BATCH: u32 = 10_000;

pub(crate) fn store_error(error: wallet_store::Error) -> Failure {
    match error {
        wallet_store::Error::Database(why) => Failure::Unavailable(why),
        wallet_store::Error::Denied(why)
        | wallet_store::Error::Refused(why)
        | wallet_store::Error::TooLarge(why) => Failure::Refused(why),
    }
}

/// Batches of up to `batch_size` wallets in id order, leaving out those whose ciphertext starts
/// with `skip_prefix`. Rows inserted behind the cursor while the walk is under way are not seen.
pub(crate) fn batches(
    batch_size: u32,
    skip_prefix: Option<String>,
) -> impl Iterator<Item = Result<Vec<Wallet>, Failure>> {
    let limit = batch_size.clamp(1, MAX_BATCH);
    let mut after: Option<String> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match wallet_store::scan(after.as_deref(), limit, skip_prefix.as_deref()) {
            Ok(batch) if batch.is_empty() => {
                done = true;
                None
            }
            Ok(batch) => {
                after = batch.last().map(|w| w.id.clone());
                Some(Ok(batch))
            }
            Err(e) => {
                done = true;
                Some(Err(store_error(e)))
            }
        }
    })
}
