//! The database's own limit, which rotor is measured against: every row read in batches and
//! written back with the plainest multi-row UPDATE, no crypto, no compare-and-swap. The bytes
//! written differ from those read but keep their length: SQLite skips rewriting a record that
//! did not change, so writing the same bytes back would measure nothing.
//!
//! The next batch is read while the current one is written, as rotor's workers do, so the
//! figure is the database's rate, not the sum of its read and write latencies.

use std::time::{Duration, Instant};

use crate::store::{Database, StoreError, WalletRow};

/// Rewrites every row once; returns the rows rewritten and the time taken. The alteration
/// undoes itself on a second pass, so two passes leave the rows as they were: valid
/// ciphertexts stay valid, and the rewrite can be measured on rows measured again afterwards.
pub async fn rewrite(database: &Database, batch_size: u32) -> Result<(u64, Duration), StoreError> {
    let started = Instant::now();
    let read = |after: Option<String>| {
        let database = database.clone();
        tokio::spawn(async move { database.scan(after.as_deref(), batch_size).await })
    };
    let mut ahead = read(None);
    let mut rewritten = 0u64;
    loop {
        let mut rows =
            ahead.await.map_err(|e| StoreError::Config(format!("reading ahead failed: {e}")))??;
        if rows.is_empty() {
            break;
        }
        ahead = read(rows.last().map(|row| row.id.clone()));
        rows.iter_mut().for_each(alter);
        database.overwrite_batch(&rows).await?;
        rewritten += rows.len() as u64;
    }
    Ok((rewritten, started.elapsed()))
}

/// Flips the case of the first ASCII letter: different bytes, same length, and applied twice
/// the row as it was.
fn alter(row: &mut WalletRow) {
    if let Some(at) = row.ciphertext.find(|c: char| c.is_ascii_alphabetic()) {
        let flipped = (row.ciphertext.as_bytes()[at] ^ 0x20) as char;
        row.ciphertext.replace_range(at..=at, flipped.encode_utf8(&mut [0; 4]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alteration_changes_bytes_not_length_and_undoes_itself() {
        for original in ["rotor:v1:xyzA", "+/9ab==", "Q"] {
            let mut row = WalletRow { id: "w".into(), ciphertext: original.into() };
            alter(&mut row);
            assert_eq!(row.ciphertext.len(), original.len());
            assert_ne!(row.ciphertext, original);
            alter(&mut row);
            assert_eq!(row.ciphertext, original);
        }
    }
}
