//! AES-256-GCM with detached tags, for the key types' `*_detached` methods.

use aes_gcm::{AeadInOut, Aes256Gcm, aead::Nonce};
use alloc::vec::Vec;
use zeroize::Zeroizing;

use crate::{CodecError, NONCE_LEN, Plaintext, TAG_LEN};

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

pub(crate) fn open(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Plaintext, CodecError> {
    let nonce =
        Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CodecError::Malformed("a nonce is 12 bytes"))?;
    let tag = tag.try_into().map_err(|_| CodecError::Malformed("a tag is 16 bytes"))?;
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), tag)
        .map_err(|_| CodecError::Authentication)?;
    Ok(plaintext)
}
