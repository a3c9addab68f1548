//! One wallet at a time under the current KEK (`rotor seal`, `rotor open`), and the first KEK's
//! import into Vault (`rotor migrate-kek`). The plaintext stays a handle throughout: the host
//! hands it in and prints what `open` answers.

use crate::Failure;
use crate::bindings::exports::rotor::kek::operations::KeyLocation;
use crate::bindings::rotor::kek::key_types::Secret;
use crate::bindings::rotor::kek::{keys, wallet_store};
use crate::keyring::{Keyring, OpenError, key_error, seal_envelope};
use crate::scan::store_error;

pub(crate) fn seal(at: &KeyLocation, id: &str, plaintext: Secret) -> Result<u32, Failure> {
    if id.is_empty() {
        return Err("a wallet id must not be empty".into());
    }
    let keyring = Keyring::load(&at.key_path)?;
    let version = keyring.current_version();
    let sealed = seal_envelope(keyring.current(), version, id, &plaintext).map_err(|e| e.to_string())?;
    wallet_store::put(id, &sealed).map_err(store_error)?;
    Ok(version)
}

pub(crate) fn open(at: &KeyLocation, id: &str) -> Result<Secret, Failure> {
    let ciphertext =
        wallet_store::get(id).map_err(store_error)?.ok_or_else(|| format!("no wallet with id {id:?}"))?;
    let mut keyring = Keyring::load(&at.key_path)?;
    let (_, plaintext) = keyring.open(id, &ciphertext).map_err(|e| match e {
        OpenError::Wallet(reason) => Failure::Inconsistent(format!("wallet {id:?} does not open: {reason}")),
        OpenError::Fatal(failure) => failure,
    })?;
    Ok(plaintext)
}

/// The seed's Day 2: the host stores the key the operator gave (the same key already there is
/// no change; another one is refused), then this keeps a copy in rotor's archive.
pub(crate) fn import_kek(at: &KeyLocation) -> Result<u32, Failure> {
    let version = keys::import_given(&at.key_path).map_err(key_error)?;
    keys::archive(&at.key_path, version).map_err(key_error)?;
    Ok(version)
}
