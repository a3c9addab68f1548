//! The seed's layout: `base64(iv[12] ‖ tag[16] ‖ ciphertext)`, AES-256-GCM under the KEK,
//! no associated data.

use alloc::{string::String, vec::Vec};
use zeroize::Zeroizing;

use aes_gcm::{AeadInOut, Aes256Gcm, aead::Nonce};

use crate::{CodecError, Kek, NONCE_LEN, Plaintext, TAG_LEN, text};

/// Decoded bytes beyond the plaintext's own length (28).
pub const LEGACY_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub(crate) fn decode(text: &str) -> Result<Vec<u8>, CodecError> {
    let raw = text::decode(text.as_bytes())
        .ok_or(CodecError::Malformed("neither rotor:v<version>: nor valid base64"))?;
    if raw.len() < LEGACY_OVERHEAD {
        return Err(CodecError::Malformed("legacy ciphertext is shorter than iv and tag"));
    }
    Ok(raw)
}

/// Opens what [`decode`] returned.
pub(crate) fn open_decoded(kek: &Kek, raw: &[u8]) -> Result<Plaintext, CodecError> {
    let (iv, rest) = raw.split_at(NONCE_LEN);
    let (tag, ciphertext) = rest.split_at(TAG_LEN);
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    kek.cipher()
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::try_from(iv).expect("12-byte iv"),
            b"",
            plaintext.as_mut_slice().into(),
            tag.try_into().expect("16-byte tag"),
        )
        .map_err(|_| CodecError::Authentication)?;
    Ok(plaintext)
}

/// Seals in the seed's layout with a given iv. rotor never writes this format during a
/// rotation; it exists to enroll legacy wallets in tests and the demo, and for test vectors.
pub fn seal_legacy_with(kek: &Kek, plaintext: &[u8], iv: [u8; NONCE_LEN]) -> String {
    let mut ciphertext = plaintext.to_vec();
    let tag = kek
        .cipher()
        .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(iv), b"", ciphertext.as_mut_slice().into())
        .expect("wallets are far below AES-GCM's length limit");
    encode(&iv, &tag, &ciphertext)
}

/// `base64(iv ‖ tag ‖ ciphertext)`.
pub(crate) fn encode(iv: &[u8], tag: &[u8], ciphertext: &[u8]) -> String {
    text::encode(&[iv, tag, ciphertext].concat())
}

/// Seals in the seed's layout with a fresh iv.
#[cfg(feature = "getrandom")]
pub fn seal_legacy(kek: &Kek, plaintext: &[u8]) -> Result<String, CodecError> {
    let mut iv = [0u8; NONCE_LEN];
    getrandom::fill(&mut iv).map_err(|_| CodecError::Randomness)?;
    Ok(seal_legacy_with(kek, plaintext, iv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, KEY_LEN, inspect, open};
    // The layout checked with another crate's base64 than the one that wrote it.
    use base64::{Engine, engine::general_purpose::STANDARD};

    #[test]
    fn round_trip_and_layout() {
        let kek = Kek::from_bytes([3; KEY_LEN]);
        let sealed = seal_legacy_with(&kek, b"wallet", [4; NONCE_LEN]);
        let raw = STANDARD.decode(&sealed).unwrap();
        assert_eq!(&raw[..NONCE_LEN], &[4; NONCE_LEN]);
        assert_eq!(raw.len(), LEGACY_OVERHEAD + 6);
        assert_eq!(inspect(&sealed), Ok(Format::Legacy));
        assert_eq!(open(&kek, "any", &sealed).unwrap().as_slice(), b"wallet");
        assert_eq!(open(&Kek::from_bytes([5; KEY_LEN]), "any", &sealed), Err(CodecError::Authentication));
    }

    #[test]
    fn short_or_non_base64_input_is_malformed() {
        assert_eq!(
            inspect("AAAA"),
            Err(CodecError::Malformed("legacy ciphertext is shorter than iv and tag"))
        );
        assert_eq!(
            inspect("not base64!"),
            Err(CodecError::Malformed("neither rotor:v<version>: nor valid base64"))
        );
    }
}
