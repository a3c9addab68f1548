//! One wallet at a time under the current KEK (`rotor seal`, `rotor open`), and the first KEK's
//! import into Vault (`rotor migrate-kek`).

use zeroize::Zeroizing;

use crate::bindings::exports::rotor::kek::operations::KeyLocation;
use crate::bindings::rotor::kek::{kv, wallet_store};
use crate::codec::kek_from_hex;
use crate::keyring::{Keyring, OpenError, kv_error, wipe};
use crate::scan::store_error;

pub(crate) fn seal(at: &KeyLocation, id: &str, plaintext: Vec<u8>) -> Result<u32, String> {
    let plaintext = Zeroizing::new(plaintext);
    if id.is_empty() {
        return Err("a wallet id must not be empty".into());
    }
    let keyring = Keyring::load(&at.key_path)?;
    let version = keyring.current_version();
    let sealed = rotor_codec::seal(keyring.current(), version, id, &plaintext).map_err(|e| e.to_string())?;
    wallet_store::put(id, &sealed).map_err(store_error)?;
    Ok(version)
}

pub(crate) fn open(at: &KeyLocation, id: &str) -> Result<Vec<u8>, String> {
    let ciphertext =
        wallet_store::get(id).map_err(store_error)?.ok_or_else(|| format!("no wallet with id {id:?}"))?;
    let mut keyring = Keyring::load(&at.key_path)?;
    let (_, plaintext) = keyring.open(id, &ciphertext).map_err(|e| match e {
        OpenError::Wallet(reason) => format!("wallet {id:?} does not open: {reason}"),
        OpenError::Fatal(reason) => reason,
    })?;
    Ok(plaintext.to_vec())
}

pub(crate) fn import_kek(at: &KeyLocation, kek_hex: String) -> Result<u32, String> {
    let path = &at.key_path;
    let kek = kek_from_hex(kek_hex).map_err(|e| format!("the key to import is not a KEK: {e}"))?;
    let data = vec![("key".to_owned(), kek.to_hex().to_string())];
    let written = kv::write(path, &data, Some(0));
    wipe(data);
    match written {
        Ok(version) => {
            let mut keyring = Keyring::load(path)?;
            keyring.archive(keyring.current_version())?;
            u32::try_from(version).map_err(|_| format!("{path} reached version {version}"))
        }
        Err(kv::Error::CasMismatch(_)) => {
            let keyring = Keyring::load(path)?;
            if *keyring.current() == kek {
                Ok(keyring.current_version())
            } else {
                Err(format!(
                    "a different KEK is already stored at {path} (version {}): refusing to overwrite it",
                    keyring.current_version()
                ))
            }
        }
        Err(e) => Err(kv_error(path, e)),
    }
}
