//! Nonces and data keys for the key handles: the OS's CSPRNG, read 4 KiB at a time.
//!
//! A rotation draws three random values per wallet (a data key and two nonces); one `getrandom`
//! system call each cost more than the AES they feed. The pool hands out each byte it read once
//! and wipes it as it does, so what it gives is exactly what the OS gave, never repeated.

use std::cell::RefCell;

use zeroize::{Zeroize, Zeroizing};

/// Bytes read from the OS at once.
const POOL_BYTES: usize = 4096;

struct Pool {
    bytes: Zeroizing<[u8; POOL_BYTES]>,
    /// The first byte not handed out yet; `POOL_BYTES` when empty.
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool { bytes: Zeroizing::new([0; POOL_BYTES]), next: POOL_BYTES });
}

/// Fills `out` with fresh bytes from the OS's CSPRNG.
pub(crate) fn fill(out: &mut [u8]) -> Result<(), getrandom::Error> {
    if out.len() > POOL_BYTES {
        return getrandom::fill(out);
    }
    POOL.with_borrow_mut(|pool| {
        if POOL_BYTES - pool.next < out.len() {
            getrandom::fill(pool.bytes.as_mut())?;
            pool.next = 0;
        }
        let taken = &mut pool.bytes[pool.next..pool.next + out.len()];
        out.copy_from_slice(taken);
        taken.zeroize();
        pool.next += out.len();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_draw_is_fresh_and_taken_bytes_are_wiped() {
        let mut seen = std::collections::HashSet::new();
        // More than one pool's worth, so that it is read again from the OS.
        for _ in 0..(3 * POOL_BYTES / 12) {
            let mut nonce = [0u8; 12];
            fill(&mut nonce).unwrap();
            assert!(seen.insert(nonce), "a nonce repeated");
        }
        POOL.with_borrow(|pool| assert!(pool.bytes[..pool.next].iter().all(|b| *b == 0)));
        let mut large = vec![0u8; POOL_BYTES + 1];
        fill(&mut large).unwrap();
        assert!(large.iter().any(|b| *b != 0));
    }
}
