//! What a component holds of the host's keys and secrets: handles in its instance's resource
//! table, which name a key or bytes the host keeps. None of them gives its bytes to a component.

use std::sync::Arc;

use rotor_codec::{DataKey, Kek, Plaintext};

use super::DerivedFrom;

/// One KEK version as the host holds it. `Debug` shows no key bytes: [`Kek`]'s own is redacted.
#[derive(Clone, Debug)]
pub struct HeldKek {
    /// The version its ciphertexts name; 0 for a seed archive's key, which has none.
    pub version: u32,
    /// The key itself; never handed to a component.
    pub kek: Arc<Kek>,
    /// Read from KV's version history only: rotor's archive lacks it.
    pub from_history: bool,
    /// Made for a dry run and never stored: no write may be under it.
    pub draft: bool,
    /// The record Vault keeps in place of the key, if it is derived from a root KEK.
    pub derived: Option<Arc<DerivedFrom>>,
}

/// A KEK version, as a component holds it: a handle in its instance's resource table.
pub struct KekHandle(HeldKek);

impl KekHandle {
    /// A handle on `held`.
    pub fn new(held: HeldKek) -> KekHandle {
        KekHandle(held)
    }

    /// The KEK it stands for.
    pub fn held(&self) -> &HeldKek {
        &self.0
    }
}

/// A data key, as a component holds it.
pub struct DataKeyHandle(DataKey);

impl DataKeyHandle {
    /// A handle on `key`.
    pub fn new(key: DataKey) -> DataKeyHandle {
        DataKeyHandle(key)
    }

    /// The key it stands for.
    pub fn key(&self) -> &DataKey {
        &self.0
    }
}

/// Decrypted bytes, as a component holds them.
pub struct SecretHandle(Plaintext);

impl SecretHandle {
    /// Bytes handed into a component (`seal-wallet`'s plaintext, or what the host opened).
    pub fn new(plaintext: Plaintext) -> SecretHandle {
        SecretHandle(plaintext)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for the host to show the operator (`open-wallet`).
    pub fn into_plaintext(self) -> Plaintext {
        self.0
    }
}
