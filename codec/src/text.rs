//! Standard base64 with padding, the text of both formats, through `base64-simd`: SSSE3 or AVX2
//! chosen at run time natively (with the `std` feature), wasm's SIMD128 inside the component.
//!
//! The formats are strict: padding only at the end and no stray bits in the last character,
//! so that one ciphertext has one text.

use alloc::{string::String, vec::Vec};
use base64_simd::{Out, STANDARD};

/// The bytes `text` encodes; `None` unless it is canonical padded base64.
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode_to_vec(text).ok()
}

/// Decodes `text` into the front of `out`, returning how many bytes it wrote; `None` unless it
/// is canonical padded base64 of at most `out.len()` bytes.
pub(crate) fn decode_into(text: &[u8], out: &mut [u8]) -> Option<usize> {
    // `decode` panics on a short buffer, so the length is checked first.
    if STANDARD.decoded_length(text).ok()? > out.len() {
        return None;
    }
    STANDARD.decode(text, Out::from_slice(out)).ok().map(|decoded| decoded.len())
}

/// Appends the base64 of `bytes` to `text`.
pub(crate) fn encode_append(bytes: &[u8], text: &mut String) {
    STANDARD.encode_append(bytes, text);
}

/// The base64 of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::STANDARD as OTHER};

    /// The strictness the formats rely on, as the `base64` crate's standard engine had it:
    /// each of these is refused by both.
    #[test]
    fn only_canonical_padded_text_decodes() {
        assert_eq!(decode(b"QUJD").as_deref(), Some(&b"ABC"[..]));
        assert_eq!(decode(b"QUI=").as_deref(), Some(&b"AB"[..]));
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
        for bad in ["QR==", "QUJ=", "QQ", "QQ=", "Q===", "QUJD\n", "QUJ D", "QU=D", "!!!!", "QUJDQ"] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
            assert!(OTHER.decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoding_into_a_buffer_refuses_what_does_not_fit() {
        let mut out = [0u8; 3];
        assert_eq!(decode_into(b"QUJD", &mut out), Some(3));
        assert_eq!(&out, b"ABC");
        assert_eq!(decode_into(b"QUI=", &mut out), Some(2));
        assert_eq!(decode_into(b"QUJDQUJD", &mut out), None);
        assert_eq!(decode_into(b"QR==", &mut out), None);
    }

    /// Every length, against the `base64` crate's standard engine (what rotor used before, and
    /// an implementation of its own): the same text, and each decodes the other's.
    #[test]
    fn every_length_matches_another_implementation() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1400).collect();
        for len in (0..64).chain([1313, 1342, 1400]) {
            let mut text = String::from("prefix:");
            encode_append(&bytes[..len], &mut text);
            let encoded = text.strip_prefix("prefix:").unwrap();
            assert_eq!(encoded, encode(&bytes[..len]));
            assert_eq!(encoded, OTHER.encode(&bytes[..len]), "{len}");
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(&bytes[..len]), "{len}");
            let mut out = [0u8; 1400];
            assert_eq!(decode_into(encoded.as_bytes(), &mut out), Some(len));
            assert_eq!(&out[..len], &bytes[..len]);
        }
    }
}
