//! What destroying a KEK version leaves behind: a fingerprint of the key that names it without
//! revealing it, and the row counts that showed nothing needed it any more.

use std::collections::BTreeMap;

use rotor_codec::Kek;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A short name of `kek` that reveals nothing of it: the first 8 bytes of a domain-separated
/// SHA-256 of the key, in hex. The same key always has the same fingerprint, so a receipt or
/// an inventory can say which key it means.
pub fn fingerprint(kek: &Kek) -> String {
    let mut hash = Sha256::new();
    hash.update(b"rotor KEK fingerprint v1\0");
    hash.update(kek.to_hex().as_bytes());
    hex::encode(&hash.finalize()[..8])
}

/// One KEK version the host destroyed, and why it could.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedKek {
    /// The version.
    pub version: u32,
    /// [`fingerprint`] of its key; `None` if Vault no longer held a readable copy.
    pub fingerprint: Option<String>,
    /// Rows naming it in each table under the KEK, counted just before it was destroyed: all 0.
    pub rows: BTreeMap<String, u64>,
    /// Rows naming it that had been set aside (`rotor quarantine`: they opened under no key),
    /// per table: with the version gone, they can never be opened.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_names_a_key_without_revealing_it() {
        let (a, b) = (Kek::generate().unwrap(), Kek::generate().unwrap());
        assert_eq!(fingerprint(&a), fingerprint(&Kek::from_hex(&a.to_hex()).unwrap()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        assert!(!a.to_hex().contains(&fingerprint(&a)));
    }
}
