//! AES-256-GCM with detached tags, for the key types' `*_detached` methods and [`Detached`].

use aes_gcm::{AeadInOut, Aes256Gcm, aead::Nonce};
use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::envelope::Parts;
use crate::{CodecError, DataKey, Kek, NONCE_LEN, Plaintext, TAG_LEN};

pub(crate) fn seal(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> (Vec<u8>, [u8; TAG_LEN]) {
    let mut ciphertext = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(*nonce), aad, ciphertext.as_mut_slice().into())
        .expect("wallets are far below AES-GCM's length limit");
    (ciphertext, tag.into())
}

pub(crate) fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: Parts<'_>) -> Result<Plaintext, CodecError> {
    let nonce = Nonce::<Aes256Gcm>::try_from(sealed.nonce)
        .map_err(|_| CodecError::Malformed("a nonce is 12 bytes"))?;
    let tag = sealed.tag.try_into().map_err(|_| CodecError::Malformed("a tag is 16 bytes"))?;
    let mut plaintext = Zeroizing::new(sealed.ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), tag)
        .map_err(|_| CodecError::Authentication)?;
    Ok(plaintext)
}

/// AES-256-GCM with detached tags under one of rotor's keys ([`Kek`], [`DataKey`]), for a host
/// that holds keys on a component's behalf and lays nothing out itself.
pub trait Detached: private::Keyed {
    /// AES-256-GCM of `plaintext` with `nonce`, binding `aad`: the ciphertext and the tag.
    fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> (Vec<u8>, [u8; TAG_LEN]) {
        self.with_cipher(|cipher| seal(cipher, nonce, aad, plaintext))
    }

    /// Opens what [`Detached::seal_detached`] made; `Authentication` if the tag does not verify.
    fn open_detached(&self, aad: &[u8], sealed: Parts<'_>) -> Result<Plaintext, CodecError> {
        self.with_cipher(|cipher| open(cipher, aad, sealed))
    }
}

impl Detached for Kek {}
impl Detached for DataKey {}

impl private::Keyed for Kek {
    fn with_cipher<R>(&self, f: impl FnOnce(&Aes256Gcm) -> R) -> R {
        f(self.cipher())
    }
}

impl private::Keyed for DataKey {
    fn with_cipher<R>(&self, f: impl FnOnce(&Aes256Gcm) -> R) -> R {
        f(&self.cipher())
    }
}

/// Sealed: only rotor's key types hold a cipher, and nothing outside the crate can reach it.
mod private {
    pub trait Keyed {
        fn with_cipher<R>(&self, f: impl FnOnce(&aes_gcm::Aes256Gcm) -> R) -> R;
    }
}
