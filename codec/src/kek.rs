use core::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use alloc::string::String;
use zeroize::{Zeroize, Zeroizing};

use alloc::vec::Vec;

use crate::envelope::Parts;
use crate::{CodecError, DataKey, NONCE_LEN, TAG_LEN};

/// KEK and data-key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// A key-encryption key. Zeroized on drop; its `Debug` shows no key bytes.
#[derive(Clone)]
pub struct Kek {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    /// Expanded once: a rotation uses the same two KEKs for every wallet, and without AES-NI
    /// (inside wasm) the key schedule costs as much as wrapping a data key. aes-gcm's
    /// `zeroize` feature wipes it on drop.
    cipher: Aes256Gcm,
}

impl Kek {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Kek::new(Zeroizing::new(bytes))
    }

    fn new(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = Aes256Gcm::new_from_slice(bytes.as_ref()).expect("KEK is 32 bytes");
        Kek { bytes, cipher }
    }

    /// Parses the Vault representation: exactly 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, CodecError> {
        if hex_key.len() != 2 * KEY_LEN {
            return Err(CodecError::InvalidKey("expected 64 hex characters"));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(hex_key, bytes.as_mut())
            .map_err(|_| CodecError::InvalidKey("not hexadecimal"))?;
        Ok(Kek::new(bytes))
    }

    /// A fresh key from the system's CSPRNG (`wasi:random` inside the component).
    #[cfg(feature = "getrandom")]
    pub fn generate() -> Result<Self, CodecError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| CodecError::Randomness)?;
        Ok(Kek::new(bytes))
    }

    /// The Vault representation: 64 lowercase hex characters, zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut buf = [0u8; 2 * KEY_LEN];
        hex::encode_to_slice(self.bytes.as_ref(), &mut buf).expect("buffer is exactly 64 bytes");
        let hex_key = Zeroizing::new(String::from(core::str::from_utf8(&buf).expect("hex is ASCII")));
        buf.zeroize();
        hex_key
    }

    /// The KEK that HKDF-SHA256 (RFC 5869) derives from this one as input keying material,
    /// with `salt` and `info` as that RFC names them. A tenant's KEK comes from the root KEK so,
    /// with the tenant's name in `info`: one tenant's key says nothing of another's, and a
    /// fresh `salt` per version gives each tenant's rotations keys of their own under one root.
    #[cfg(feature = "derive")]
    pub fn derive(&self, salt: &[u8], info: &[u8]) -> Kek {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), self.bytes.as_ref())
            .expand(info, bytes.as_mut())
            .expect("32 bytes is within HKDF-SHA256's 8160-byte output");
        Kek::new(bytes)
    }

    /// The AES-256-GCM cipher keyed by this KEK.
    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }

    /// Wraps `key` under this KEK with `nonce`, binding `aad`.
    pub fn wrap_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        key: &DataKey,
    ) -> (Vec<u8>, [u8; TAG_LEN]) {
        crate::primitive::seal(&self.cipher, nonce, aad, key.bytes())
    }

    /// Unwraps a data key wrapped by [`Kek::wrap_detached`]; `Authentication` if the tag does
    /// not verify.
    pub fn unwrap_detached(&self, aad: &[u8], wrapped: Parts<'_>) -> Result<DataKey, CodecError> {
        if wrapped.ciphertext.len() != KEY_LEN {
            return Err(CodecError::Malformed("a wrapped data key is 32 bytes"));
        }
        let opened = crate::primitive::open(&self.cipher, aad, wrapped)?;
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&opened);
        let key = DataKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }
}

impl PartialEq for Kek {
    /// Constant-time: compares every byte whatever the first difference.
    fn eq(&self, other: &Self) -> bool {
        self.bytes.iter().zip(other.bytes.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl Eq for Kek {}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn hex_round_trip_and_validation() {
        let hex_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let kek = Kek::from_hex(hex_key).unwrap();
        assert_eq!(kek.to_hex().as_str(), hex_key);
        assert_eq!(Kek::from_hex(&hex_key[2..]), Err(CodecError::InvalidKey("expected 64 hex characters")));
        let not_hex = hex_key.replace('a', "g");
        assert_eq!(Kek::from_hex(&not_hex), Err(CodecError::InvalidKey("not hexadecimal")));
    }

    #[cfg(feature = "derive")]
    #[test]
    fn derivation_is_hkdf_sha256_and_separates_salts_and_contexts() {
        let root = Kek::from_bytes([0x0b; KEY_LEN]);
        let salt: [u8; 13] = core::array::from_fn(|i| i as u8);
        let info: [u8; 10] = core::array::from_fn(|i| 0xf0 + i as u8);
        // RFC 5869 A.1's salt and info with a 32-byte IKM (a KEK is 32 bytes, A.1's IKM 22): the
        // RFC's extract and expand written out with Python's hmac and hashlib, apart from this
        // code, give this.
        assert_eq!(
            root.derive(&salt, &info).to_hex().as_str(),
            "d4100799f26a09615a72af3e58fa3841a2ff20d5ace3fb392e562e207fe6b718"
        );
        let acme = root.derive(b"salt", b"acme");
        assert_eq!(acme, root.derive(b"salt", b"acme"));
        assert_ne!(acme, root.derive(b"salt", b"globex"));
        assert_ne!(acme, root.derive(b"other salt", b"acme"));
        assert_ne!(acme, root);
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let kek = Kek::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{kek:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
