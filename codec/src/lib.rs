//! Wallet ciphertext formats.
//!
//! rotor reads two formats and writes one (byte-level layout and test vectors: `docs/FORMAT.md`):
//!
//! * **legacy**: what the seed's Node service writes. AES-256-GCM directly under the KEK, stored as
//!   `base64(iv[12] ‖ tag[16] ‖ ciphertext)`, no associated data. It names no key version.
//! * **envelope**: what every rotation writes. `rotor:v<K>:base64(payload)`, where `K` is the KEK
//!   version. A fresh 256-bit data key (DEK) encrypts the wallet; the KEK wraps the DEK. Both
//!   layers bind the wallet id as associated data, so a ciphertext copied onto another row does
//!   not open. A KEK rotation re-wraps the 48-byte wrapped DEK and leaves the data untouched.
//!
//! This crate is pure computation: no I/O, no clocks. It compiles natively and for
//! `wasm32-wasip2`, where the crypto-core component uses it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod envelope;
mod error;
mod kek;
pub mod layout;
mod legacy;
pub mod listed;
mod primitive;
mod text;

pub use envelope::{
    DataKey, EnvelopeNonces, PAYLOAD_OVERHEAD, PREFIX, rewrap_head_with, rewrap_with, seal_with,
};
pub use error::CodecError;
pub use kek::{KEY_LEN, Kek};
pub use legacy::{LEGACY_OVERHEAD, seal_legacy_with};
pub use primitive::Detached;

#[cfg(feature = "getrandom")]
pub use envelope::{rewrap, rewrap_head, seal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrap_is_recognised_without_opening_the_wallet() {
        let (old_kek, new_kek) = (Kek::from_bytes([1; KEY_LEN]), Kek::from_bytes([2; KEY_LEN]));
        let nonces = EnvelopeNonces { wrap: [3; NONCE_LEN], data: [4; NONCE_LEN] };
        let old = seal_with(&old_kek, 1, "w", b"wallet", &DataKey::from_bytes([5; KEY_LEN]), nonces);
        let moved = rewrap_with(&old_kek, &new_kek, 2, "w", &old, [6; NONCE_LEN]).unwrap();
        assert_eq!(rewrap_versions(&old, &moved), Some((1, 2)));
        let (old_head, new_head) = rewrap_heads(&old, &moved).unwrap();
        assert_eq!((old_head, new_head), ("rotor:v1:".len() + 84, "rotor:v2:".len() + 84));
        assert_eq!(old[old_head..], moved[new_head..], "what follows the heads is the wallet's, unchanged");
        assert_ne!(old[..old_head], moved[..new_head]);
        assert_eq!(same_rewrapped(&old_kek, &new_kek, "w", &old, &moved), Some(Ok(true)));
        // The same data part beside the wrap of another data key: not the same wallet.
        let other = seal_with(&new_kek, 2, "w", b"wallet", &DataKey::from_bytes([7; KEY_LEN]), nonces);
        let (other, old_parts) =
            (layout::EnvelopeParts::parse(&other).unwrap(), layout::EnvelopeParts::parse(&old).unwrap());
        let spliced = layout::encode_envelope(2, other.wrap(), old_parts.data()).unwrap();
        assert_eq!(same_rewrapped(&old_kek, &new_kek, "w", &old, &spliced), Some(Ok(false)));
        // Another wallet's data: not recognised as a re-wrap, so the caller opens both.
        let reencrypted = seal_with(
            &new_kek,
            2,
            "w",
            b"wallet",
            &DataKey::from_bytes([5; KEY_LEN]),
            EnvelopeNonces { data: [8; NONCE_LEN], ..nonces },
        );
        assert_eq!(same_rewrapped(&old_kek, &new_kek, "w", &old, &reencrypted), None);
        assert_eq!(rewrap_heads(&old, &reencrypted), None);
        assert_eq!(rewrap_heads(&old, &seal_legacy_with(&new_kek, b"wallet", [9; NONCE_LEN])), None);
        // A wrap under a key that is not the one named does not unwrap.
        assert_eq!(
            same_rewrapped(&new_kek, &new_kek, "w", &old, &moved),
            Some(Err(CodecError::Authentication))
        );
        assert_eq!(
            same_rewrapped(&old_kek, &new_kek, "x", &old, &moved),
            Some(Err(CodecError::Authentication))
        );
    }

    #[test]
    fn a_rewrap_given_as_its_head_alone_is_recognised_and_nothing_else_is() {
        let (old_kek, new_kek) = (Kek::from_bytes([1; KEY_LEN]), Kek::from_bytes([2; KEY_LEN]));
        let nonces = EnvelopeNonces { wrap: [3; NONCE_LEN], data: [4; NONCE_LEN] };
        let old = seal_with(&old_kek, 9, "w", b"wallet", &DataKey::from_bytes([5; KEY_LEN]), nonces);
        // v9 to v10: the prefix grows by a character, so the heads differ in length.
        let head = rewrap_head_with(&old_kek, &new_kek, 10, "w", &old, [6; NONCE_LEN]).unwrap();
        let whole = rewrap_with(&old_kek, &new_kek, 10, "w", &old, [6; NONCE_LEN]).unwrap();
        let (old_len, new_len) = rewrap_head_lengths(&old, &head).unwrap();
        assert_eq!((old_len, new_len), ("rotor:v9:".len() + 84, "rotor:v10:".len() + 84));
        assert_eq!(alloc::format!("{head}{}", &old[old_len..]), whole);
        assert_eq!(open(&new_kek, "w", &whole).unwrap().as_slice(), b"wallet");
        assert_eq!(same_rewrapped(&old_kek, &new_kek, "w", &old[..old_len], &head), Some(Ok(true)));
        // Another wallet's data key under the same head layout: recognised as a head, and
        // the data keys then differ.
        let other = seal_with(&old_kek, 9, "w", b"other", &DataKey::from_bytes([7; KEY_LEN]), nonces);
        let other_head = rewrap_head_with(&old_kek, &new_kek, 10, "w", &other, [6; NONCE_LEN]).unwrap();
        assert_eq!(rewrap_head_lengths(&old, &other_head), Some((old_len, new_len)));
        assert_eq!(same_rewrapped(&old_kek, &new_kek, "w", &old[..old_len], &other_head), Some(Ok(false)));
        // Not a head alone, not the same data nonce, not an envelope: none is a head re-wrap.
        let moved_nonce = seal_with(
            &old_kek,
            9,
            "w",
            b"wallet",
            &DataKey::from_bytes([5; KEY_LEN]),
            EnvelopeNonces { data: [8; NONCE_LEN], ..nonces },
        );
        let moved_nonce =
            rewrap_head_with(&old_kek, &new_kek, 10, "w", &moved_nonce, [6; NONCE_LEN]).unwrap();
        let legacy = seal_legacy_with(&old_kek, b"wallet", [9; NONCE_LEN]);
        let refused = [
            (old.as_str(), whole.as_str()),
            (old.as_str(), &whole[..new_len + 4]),
            (old.as_str(), &head[..new_len - 4]),
            (old.as_str(), moved_nonce.as_str()),
            (legacy.as_str(), head.as_str()),
            (old.as_str(), legacy.as_str()),
        ];
        for (old, new) in refused {
            assert_eq!(rewrap_head_lengths(old, new), None, "{new}");
        }
    }

    #[test]
    fn a_decoded_ciphertext_opens_as_inspect_and_open_say_and_can_be_tried_with_several_keys() {
        let (wrong, right) = (Kek::from_bytes([1; KEY_LEN]), Kek::from_bytes([2; KEY_LEN]));
        let legacy = seal_legacy_with(&right, b"legacy wallet", [3; NONCE_LEN]);
        let decoded = Decoded::parse(&legacy).unwrap();
        assert_eq!(decoded.format(), Format::Legacy);
        assert_eq!(decoded.open(&wrong, "any"), Err(CodecError::Authentication));
        assert_eq!(decoded.open(&right, "any").unwrap().as_slice(), b"legacy wallet");

        let nonces = EnvelopeNonces { wrap: [4; NONCE_LEN], data: [5; NONCE_LEN] };
        let envelope = seal_with(&right, 7, "w", b"wallet", &DataKey::from_bytes([6; KEY_LEN]), nonces);
        let decoded = Decoded::parse(&envelope).unwrap();
        assert_eq!(decoded.format(), inspect(&envelope).unwrap());
        assert_eq!(decoded.format(), Format::Envelope { kek_version: 7 });
        assert_eq!(decoded.open(&right, "x"), Err(CodecError::Authentication), "the id is bound");
        assert_eq!(decoded.open(&right, "w").unwrap().as_slice(), b"wallet");
        assert_eq!(alloc::format!("{decoded:?}"), "Decoded(Envelope { kek_version: 7 })");

        for malformed in ["rotor:v7:!!!", "not base64 at all", "AAAA"] {
            assert_eq!(Decoded::parse(malformed).map(|d| d.format()), inspect(malformed), "{malformed}");
            assert!(Decoded::parse(malformed).is_err(), "{malformed}");
        }
    }
}
#[cfg(feature = "getrandom")]
pub use legacy::seal_legacy;

use alloc::vec::Vec;
use zeroize::Zeroizing;

/// Decrypted wallet bytes; wiped from memory when dropped.
pub type Plaintext = Zeroizing<Vec<u8>>;

/// AES-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// What a stored ciphertext says about itself, read without any key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// The seed's layout: names no KEK version.
    Legacy,
    /// rotor's envelope, wrapped under KEK version `kek_version`.
    Envelope {
        /// The KEK version named by the `rotor:v<K>:` prefix.
        kek_version: u32,
    },
}

impl Format {
    /// The KEK version this ciphertext names, if any.
    pub fn kek_version(self) -> Option<u32> {
        match self {
            Format::Legacy => None,
            Format::Envelope { kek_version } => Some(kek_version),
        }
    }
}

/// A stored ciphertext decoded once, to be opened with whichever KEK its format calls for: what
/// to use where [`inspect`] and [`open`] would each decode it (the host's check of every write
/// does both, and tries a legacy row with several keys).
pub struct Decoded(Stored);

enum Stored {
    Envelope(envelope::Envelope),
    /// `iv ‖ tag ‖ ciphertext`.
    Legacy(alloc::vec::Vec<u8>),
}

impl Decoded {
    /// Checks the structure (prefix, base64, lengths) as [`inspect`] does, not authenticity.
    pub fn parse(ciphertext: &str) -> Result<Decoded, CodecError> {
        Ok(Decoded(if ciphertext.starts_with("rotor:") {
            Stored::Envelope(envelope::Envelope::parse(ciphertext)?)
        } else {
            Stored::Legacy(legacy::decode(ciphertext)?)
        }))
    }

    /// Its format and the KEK version it names.
    pub fn format(&self) -> Format {
        match &self.0 {
            Stored::Envelope(envelope) => Format::Envelope { kek_version: envelope.kek_version },
            Stored::Legacy(_) => Format::Legacy,
        }
    }

    /// Opens it with `kek`, for wallet `id` (envelopes bind it; legacy ciphertexts do not).
    pub fn open(&self, kek: &Kek, id: &str) -> Result<Plaintext, CodecError> {
        match &self.0 {
            Stored::Envelope(envelope) => envelope.open(kek, id),
            Stored::Legacy(raw) => legacy::open_decoded(kek, raw),
        }
    }
}

impl core::fmt::Debug for Decoded {
    // Ciphertext is not secret, but long: the format says what matters.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Decoded").field(&self.format()).finish()
    }
}

/// Tells which format a stored ciphertext claims to be, and which KEK version it names,
/// checking its structure (prefix, base64, lengths) but not its authenticity.
pub fn inspect(ciphertext: &str) -> Result<Format, CodecError> {
    Decoded::parse(ciphertext).map(|decoded| decoded.format())
}

/// Whether `new` is `old` re-wrapped: both envelopes, the same data part byte for byte, and the
/// same data key — `old`'s unwrapped under `old_kek`, `new`'s under `new_kek` — so that `new`
/// holds exactly the wallet `old` holds, without decoding or decrypting the wallet itself.
/// `None` when they are not both envelopes with the same data part (open both to compare);
/// `Some(Err)` when a data key does not unwrap. `old_kek` must be the KEK `old` names and
/// `new_kek` the one `new` names (see [`rewrap_versions`]).
pub fn same_rewrapped(
    old_kek: &Kek,
    new_kek: &Kek,
    id: &str,
    old: &str,
    new: &str,
) -> Option<Result<bool, CodecError>> {
    let (old, new) = (envelope::EnvelopeHead::parse(old).ok()?, envelope::EnvelopeHead::parse(new).ok()?);
    if !old.same_data(&new) {
        return None;
    }
    Some(old.unwrap_dek(old_kek, id).and_then(|before| Ok(before == new.unwrap_dek(new_kek, id)?)))
}

/// The KEK versions two envelopes name, if both are envelopes that differ only in their wrap
/// of the data key (what [`same_rewrapped`] can check without opening the wallet).
pub fn rewrap_versions(old: &str, new: &str) -> Option<(u32, u32)> {
    let (old, new) = (envelope::EnvelopeHead::parse(old).ok()?, envelope::EnvelopeHead::parse(new).ok()?);
    old.same_data(&new).then_some((old.kek_version, new.kek_version))
}

/// The lengths of two envelopes' heads, if `new` is `old` re-wrapped as [`rewrap_versions`]
/// recognises it: each head is the `rotor:v<K>:` prefix and the base64 of the wrapped data key
/// and the nonces, the part a re-wrap changes. What follows the heads, the wallet's own
/// ciphertext under that data key, is the same in both, so a store may compare and write the
/// heads alone.
pub fn rewrap_heads(old: &str, new: &str) -> Option<(usize, usize)> {
    let (old_head, new_head) =
        (envelope::EnvelopeHead::parse(old).ok()?, envelope::EnvelopeHead::parse(new).ok()?);
    old_head.same_data(&new_head).then(|| (old.len() - old_head.tail_len(), new.len() - new_head.tail_len()))
}

/// Where the heads end when `old` is re-wrapped as `new_head` alone (what [`rewrap_head`]
/// makes): `old` an envelope, `new_head` exactly an envelope's head and no more, holding the
/// same part of `old`'s data (the first bytes of its nonce) as `old`'s head. The envelope this
/// re-wrap makes is `new_head` followed by `old[old_head..]`, byte for byte the wallet's own
/// ciphertext, so a checker compares the two heads (see [`same_rewrapped`], which takes heads
/// alone too) and never that rest. `None` if either is not so.
pub fn rewrap_head_lengths(old: &str, new_head: &str) -> Option<(usize, usize)> {
    let (old, new) =
        (envelope::EnvelopeHead::parse(old).ok()?, envelope::EnvelopeHead::parse(new_head).ok()?);
    (new.tail_len() == 0 && old.same_data_in_head(&new)).then(|| (old.head_len(), new_head.len()))
}

/// Opens a wallet in either format with the given KEK. `id` must be the row's id: envelopes
/// bind it; legacy ciphertexts do not.
pub fn open(kek: &Kek, id: &str, ciphertext: &str) -> Result<Plaintext, CodecError> {
    Decoded::parse(ciphertext)?.open(kek, id)
}
