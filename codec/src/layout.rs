//! The formats' byte layout without the cryptography: for a component whose keys are held by
//! its host. The host seals and opens under handles, drawing every nonce itself; the component
//! takes the pieces apart and lays them out with these functions, so that rotor's formats are
//! written in one place whoever holds the keys.

use alloc::{string::String, vec::Vec};

pub use crate::envelope::Parts;
use crate::envelope::{self, Envelope, EnvelopeHead};
use crate::{CodecError, KEY_LEN, NONCE_LEN, TAG_LEN, legacy};

impl Parts<'_> {
    fn check(&self, what: &'static str) -> Result<(), CodecError> {
        if self.nonce.len() != NONCE_LEN || self.tag.len() != TAG_LEN {
            return Err(CodecError::Malformed(what));
        }
        Ok(())
    }
}

/// A parsed, not yet authenticated, envelope.
pub struct EnvelopeParts(Envelope);

impl EnvelopeParts {
    /// Parses `rotor:v<K>:…`, checking structure only.
    pub fn parse(text: &str) -> Result<Self, CodecError> {
        Envelope::parse(text).map(EnvelopeParts)
    }

    /// The KEK version the prefix names.
    pub fn kek_version(&self) -> u32 {
        self.0.kek_version
    }

    /// The data key wrapped under the KEK.
    pub fn wrap(&self) -> Parts<'_> {
        self.0.wrap_parts()
    }

    /// The wallet encrypted under the data key.
    pub fn data(&self) -> Parts<'_> {
        self.0.data_parts()
    }
}

/// An envelope read only as far as its wrapped data key: what a re-wrap needs. The wallet's own
/// ciphertext stays base64 text, checked but not decoded, and is carried over byte for byte;
/// about a thirtieth of a 1.8 KB wallet is decoded and encoded again instead of all of it.
pub struct EnvelopeHeadParts<'a>(EnvelopeHead<'a>);

impl<'a> EnvelopeHeadParts<'a> {
    /// Parses `rotor:v<K>:…`, refusing what [`EnvelopeParts::parse`] refuses.
    pub fn parse(text: &'a str) -> Result<Self, CodecError> {
        let head = EnvelopeHead::parse(text)?;
        head.check_tail()?;
        Ok(EnvelopeHeadParts(head))
    }

    /// The KEK version the prefix names.
    pub fn kek_version(&self) -> u32 {
        self.0.kek_version
    }

    /// The data key wrapped under the KEK.
    pub fn wrap(&self) -> Parts<'_> {
        self.0.wrap_parts()
    }

    /// The envelope naming `kek_version`, with `wrap` as its wrapped data key and the same
    /// wallet ciphertext; refuses pieces of the wrong length.
    pub fn rewrapped(&self, kek_version: u32, wrap: Parts<'_>) -> Result<String, CodecError> {
        Self::check_wrap(kek_version, wrap)?;
        Ok(self.0.with_wrap(kek_version, wrap))
    }

    /// The head alone of [`EnvelopeHeadParts::rewrapped`]: what replaces this envelope's first
    /// [`EnvelopeHeadParts::head_len`] characters, the rest being kept (see
    /// [`crate::rewrap_head_lengths`]).
    pub fn rewrapped_head(&self, kek_version: u32, wrap: Parts<'_>) -> Result<String, CodecError> {
        Self::check_wrap(kek_version, wrap)?;
        Ok(self.0.new_head(kek_version, wrap))
    }

    /// Characters of this envelope's head: its `rotor:v<K>:` prefix and the base64 up to the
    /// wallet's own ciphertext.
    pub fn head_len(&self) -> usize {
        self.0.head_len()
    }

    fn check_wrap(kek_version: u32, wrap: Parts<'_>) -> Result<(), CodecError> {
        if kek_version == 0 {
            return Err(CodecError::Malformed("KEK versions start at 1"));
        }
        wrap.check("a wrap's nonce is 12 bytes and its tag 16")?;
        if wrap.ciphertext.len() != KEY_LEN {
            return Err(CodecError::Malformed("a wrapped data key is 32 bytes"));
        }
        Ok(())
    }
}

/// Associated data of an envelope's wrap of the data key under KEK version `kek_version`.
pub fn wrap_aad(kek_version: u32, id: &str) -> Vec<u8> {
    envelope::wrap_aad(kek_version, id)
}

/// Associated data of an envelope's wallet encryption.
pub fn data_aad(id: &str) -> Vec<u8> {
    envelope::data_aad(id)
}

/// Lays out an envelope naming `kek_version` from its wrapped data key and its encrypted
/// wallet; refuses pieces of the wrong length.
pub fn encode_envelope(kek_version: u32, wrap: Parts<'_>, data: Parts<'_>) -> Result<String, CodecError> {
    if kek_version == 0 {
        return Err(CodecError::Malformed("KEK versions start at 1"));
    }
    wrap.check("a wrap's nonce is 12 bytes and its tag 16")?;
    data.check("the data's nonce is 12 bytes and its tag 16")?;
    if wrap.ciphertext.len() != KEY_LEN {
        return Err(CodecError::Malformed("a wrapped data key is 32 bytes"));
    }
    Ok(envelope::encode_parts(kek_version, wrap, data))
}

/// A parsed, not yet authenticated, ciphertext in the seed's layout.
pub struct LegacyParts(Vec<u8>);

impl LegacyParts {
    /// Decodes `base64(iv ‖ tag ‖ ciphertext)`, checking structure only.
    pub fn parse(text: &str) -> Result<Self, CodecError> {
        legacy::decode(text).map(LegacyParts)
    }

    /// Its nonce, ciphertext and tag (no associated data).
    pub fn parts(&self) -> Parts<'_> {
        let (nonce, rest) = self.0.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        Parts { nonce, ciphertext, tag }
    }
}

/// A stored ciphertext in either format, parsed once: [`crate::inspect`] and a parse would
/// each decode the whole payload.
pub enum Stored {
    /// `rotor:v<K>:…`.
    Envelope(EnvelopeParts),
    /// The seed's `base64(iv ‖ tag ‖ ciphertext)`.
    Legacy(LegacyParts),
}

impl Stored {
    /// Parses either format, checking structure only (as [`crate::inspect`] does).
    pub fn parse(text: &str) -> Result<Self, CodecError> {
        if text.starts_with("rotor:") {
            EnvelopeParts::parse(text).map(Stored::Envelope)
        } else {
            LegacyParts::parse(text).map(Stored::Legacy)
        }
    }

    /// Which format it is, and the KEK version an envelope names.
    pub fn format(&self) -> crate::Format {
        match self {
            Stored::Envelope(envelope) => crate::Format::Envelope { kek_version: envelope.kek_version() },
            Stored::Legacy(_) => crate::Format::Legacy,
        }
    }
}

/// Lays out a ciphertext in the seed's layout.
pub fn encode_legacy(sealed: Parts<'_>) -> Result<String, CodecError> {
    sealed.check("a legacy ciphertext's iv is 12 bytes and its tag 16")?;
    Ok(legacy::encode(sealed.nonce, sealed.tag, sealed.ciphertext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, EnvelopeNonces, Kek, open, seal_legacy_with, seal_with};

    #[test]
    fn envelope_pieces_lay_out_again_byte_for_byte() {
        let kek = Kek::from_bytes([7; KEY_LEN]);
        let nonces = EnvelopeNonces { wrap: [1; NONCE_LEN], data: [2; NONCE_LEN] };
        let sealed = seal_with(&kek, 3, "w-1", b"secret", &DataKey::from_bytes([9; KEY_LEN]), nonces);
        let parts = EnvelopeParts::parse(&sealed).unwrap();
        assert_eq!(parts.kek_version(), 3);
        assert_eq!(parts.wrap().nonce, &[1; NONCE_LEN]);
        assert_eq!(parts.data().nonce, &[2; NONCE_LEN]);
        assert_eq!(encode_envelope(3, parts.wrap(), parts.data()).unwrap(), sealed);
        assert_eq!(open(&kek, "w-1", &sealed).unwrap().as_slice(), b"secret");
        let short = Parts { ciphertext: &[0; 31], ..parts.wrap() };
        assert_eq!(
            encode_envelope(3, short, parts.data()),
            Err(CodecError::Malformed("a wrapped data key is 32 bytes"))
        );
    }

    #[test]
    fn a_stored_ciphertext_parses_once_as_inspect_reads_it() {
        let kek = Kek::from_bytes([7; KEY_LEN]);
        let nonces = EnvelopeNonces { wrap: [1; NONCE_LEN], data: [2; NONCE_LEN] };
        let envelope = seal_with(&kek, 5, "w", b"secret", &DataKey::from_bytes([9; KEY_LEN]), nonces);
        let legacy = seal_legacy_with(&kek, b"wallet", [4; NONCE_LEN]);
        for text in [envelope.as_str(), legacy.as_str()] {
            assert_eq!(Stored::parse(text).map(|s| s.format()), crate::inspect(text));
        }
        for bad in ["rotor:v5:@@@", "rotor:vx:AAAA", "not base64!", "QUJD"] {
            assert!(Stored::parse(bad).is_err(), "{bad}");
            assert_eq!(Stored::parse(bad).err(), crate::inspect(bad).err(), "{bad}");
        }
    }

    /// The head-only re-wrap gives what the whole-payload one gives, and refuses every
    /// payload the whole parse refuses, whatever the length of the wallet.
    #[test]
    fn a_head_only_rewrap_matches_the_whole_one_and_refuses_the_same() {
        let (old, new) = (Kek::from_bytes([7; KEY_LEN]), Kek::from_bytes([8; KEY_LEN]));
        let dek = DataKey::from_bytes([9; KEY_LEN]);
        for len in [0, 1, 2, 3, 4, 5, 100, 1300] {
            let wallet = alloc::vec![0x5a; len];
            let nonces = EnvelopeNonces { wrap: [1; NONCE_LEN], data: [2; NONCE_LEN] };
            let sealed = seal_with(&old, 3, "w-1", &wallet, &dek, nonces);
            let head = EnvelopeHeadParts::parse(&sealed).unwrap();
            let whole = EnvelopeParts::parse(&sealed).unwrap();
            assert_eq!((head.kek_version(), head.wrap()), (3, whole.wrap()));
            let nonce = [6; NONCE_LEN];
            let (wrapped, tag) = new.wrap_detached(&nonce, &wrap_aad(4, "w-1"), &dek);
            let wrap = Parts { nonce: &nonce, ciphertext: &wrapped, tag: &tag };
            let expected = crate::rewrap_with(&old, &new, 4, "w-1", &sealed, nonce).unwrap();
            assert_eq!(head.rewrapped(4, wrap).unwrap(), expected, "{len}");
            // The head alone, joined to the rest of the old envelope, is that same envelope.
            let new_head = head.rewrapped_head(4, wrap).unwrap();
            assert_eq!(new_head, expected[..new_head.len()], "{len}");
            assert_eq!(alloc::format!("{new_head}{}", &sealed[head.head_len()..]), expected, "{len}");
            assert_eq!(
                crate::rewrap_head_lengths(&sealed, &new_head),
                Some((head.head_len(), new_head.len()))
            );
            assert_eq!(crate::rewrap_head_with(&old, &new, 4, "w-1", &sealed, nonce).unwrap(), new_head);
            assert_eq!(
                crate::same_rewrapped(&old, &new, "w-1", &sealed[..head.head_len()], &new_head),
                Some(Ok(true))
            );
            assert_eq!(open(&new, "w-1", &expected).unwrap().as_slice(), wallet.as_slice());
            // Every way to spoil the payload after the head: both parsers refuse it.
            let cut = sealed.len() - 4;
            let spoilt = [
                alloc::format!("{}@{}", &sealed[..cut], &sealed[cut + 1..]),
                alloc::format!("{}=AAA", &sealed[..cut]),
                alloc::string::String::from(&sealed[..cut]),
                alloc::format!("{}A", &sealed),
                alloc::format!(
                    "{}{}",
                    &sealed[..sealed.len() - 1],
                    if sealed.ends_with('=') { "B" } else { "=" }
                ),
            ];
            // Any character that is not base64 inside the tail (one byte long, so that only
            // the character class is wrong): both parsers refuse it.
            let inside = sealed.len() - 8;
            if inside >= "rotor:v3:".len() + 84 {
                for c in ['=', '-', '_', ' ', '.', '\0', '\x7f', '`', '{'] {
                    let bad = alloc::format!("{}{c}{}", &sealed[..inside], &sealed[inside + 1..]);
                    assert!(EnvelopeHeadParts::parse(&bad).is_err(), "{len}: {c:?} accepted");
                    assert!(EnvelopeParts::parse(&bad).is_err(), "{len}: {c:?} accepted whole");
                }
            }
            for bad in spoilt {
                let (whole, head) = (EnvelopeParts::parse(&bad).err(), EnvelopeHeadParts::parse(&bad).err());
                assert!(whole.is_some() == head.is_some(), "{len}: {bad}: {whole:?} / {head:?}");
            }
        }
    }

    #[test]
    fn legacy_pieces_lay_out_again_byte_for_byte() {
        let sealed = seal_legacy_with(&Kek::from_bytes([3; KEY_LEN]), b"wallet", [4; NONCE_LEN]);
        let parts = LegacyParts::parse(&sealed).unwrap();
        assert_eq!(parts.parts().nonce, &[4; NONCE_LEN]);
        assert_eq!(parts.parts().ciphertext.len(), 6);
        assert_eq!(encode_legacy(parts.parts()).unwrap(), sealed);
    }
}
