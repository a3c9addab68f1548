//! rotor's envelope format:
//! `rotor:v<K>:` ‖ base64(0x01 ‖ wrap_nonce[12] ‖ wrapped_dek[32] ‖ wrap_tag[16] ‖
//! data_nonce[12] ‖ data_ciphertext[n] ‖ data_tag[16]).

use core::fmt;

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, aead::Nonce};
use alloc::{format, string::String, vec::Vec};
use zeroize::Zeroizing;

use crate::{CodecError, KEY_LEN, Kek, NONCE_LEN, Plaintext, TAG_LEN, text};

/// Every envelope starts with this, then the KEK version in decimal and a colon.
pub const PREFIX: &str = "rotor:v";
/// Payload byte that identifies this layout; a future layout gets another one.
const LAYOUT_V1: u8 = 0x01;
/// Associated-data labels: separate the two layers and pin the layout version.
const WRAP_LABEL: &[u8] = b"rotor/dek/v1";
const DATA_LABEL: &[u8] = b"rotor/data/v1";

const WRAP_NONCE: usize = 1;
const WRAPPED_DEK: usize = WRAP_NONCE + NONCE_LEN;
const WRAP_TAG: usize = WRAPPED_DEK + KEY_LEN;
const DATA_NONCE: usize = WRAP_TAG + TAG_LEN;
const DATA: usize = DATA_NONCE + NONCE_LEN;
/// Payload bytes beyond the plaintext's own length (89).
pub const PAYLOAD_OVERHEAD: usize = DATA + TAG_LEN;

/// A wallet's data-encryption key. Zeroized on drop; its `Debug` shows no key bytes.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A key whose bytes `fill` writes in place (a host's own source of randomness), so that
    /// they exist nowhere else.
    pub fn generate_with<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        let mut key = DataKey(Zeroizing::new([0u8; KEY_LEN]));
        fill(key.0.as_mut())?;
        Ok(key)
    }

    /// Wraps raw key bytes (tests and test vectors; rotor itself draws fresh ones).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// A fresh key from the system's CSPRNG.
    #[cfg(feature = "getrandom")]
    pub fn generate() -> Result<Self, CodecError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| CodecError::Randomness)?;
        Ok(DataKey(bytes))
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.as_ref()).expect("data key is 32 bytes")
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl PartialEq for DataKey {
    /// Constant-time: compares every byte whatever the first difference.
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl Eq for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The two nonces of an envelope. They must never repeat under the same key: rotor draws them
/// from the CSPRNG; fixed ones exist for test vectors only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeNonces {
    /// Nonce of the DEK wrap under the KEK.
    pub wrap: [u8; NONCE_LEN],
    /// Nonce of the wallet encryption under the DEK.
    pub data: [u8; NONCE_LEN],
}

#[cfg(feature = "getrandom")]
fn random_nonce() -> Result<[u8; NONCE_LEN], CodecError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| CodecError::Randomness)?;
    Ok(nonce)
}

/// Associated data of the wrap: label ‖ u32be(K) ‖ id. The version is bound so that editing
/// the readable prefix makes the envelope fail to open rather than be misfiled.
pub(crate) fn wrap_aad(kek_version: u32, id: &str) -> Vec<u8> {
    [WRAP_LABEL, &kek_version.to_be_bytes(), id.as_bytes()].concat()
}

pub(crate) fn data_aad(id: &str) -> Vec<u8> {
    [DATA_LABEL, id.as_bytes()].concat()
}

/// One AES-256-GCM output, borrowed from a parsed ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The 12-byte nonce.
    pub nonce: &'a [u8],
    /// The encrypted bytes.
    pub ciphertext: &'a [u8],
    /// The 16-byte tag.
    pub tag: &'a [u8],
}

/// A parsed (not yet authenticated) envelope.
pub(crate) struct Envelope {
    pub(crate) kek_version: u32,
    payload: Vec<u8>,
}

impl Envelope {
    pub(crate) fn parse(text: &str) -> Result<Self, CodecError> {
        let (kek_version, encoded) = split_prefix(text)?;
        let payload =
            text::decode(encoded.as_bytes()).ok_or(CodecError::Malformed("payload is not valid base64"))?;
        if payload.len() < PAYLOAD_OVERHEAD {
            return Err(CodecError::Malformed("payload is truncated"));
        }
        if payload[0] != LAYOUT_V1 {
            return Err(CodecError::Malformed("unknown payload layout byte"));
        }
        Ok(Envelope { kek_version, payload })
    }

    fn unwrap_dek(&self, kek: &Kek, id: &str) -> Result<DataKey, CodecError> {
        let p = &self.payload;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        dek.copy_from_slice(&p[WRAPPED_DEK..WRAP_TAG]);
        kek.cipher()
            .decrypt_inout_detached(
                &nonce(&p[WRAP_NONCE..WRAPPED_DEK]),
                &wrap_aad(self.kek_version, id),
                dek.as_mut_slice().into(),
                p[WRAP_TAG..DATA_NONCE].try_into().expect("16-byte tag"),
            )
            .map_err(|_| CodecError::Authentication)?;
        Ok(DataKey(dek))
    }

    pub(crate) fn wrap_parts(&self) -> Parts<'_> {
        wrap_parts_of(&self.payload)
    }

    pub(crate) fn data_parts(&self) -> Parts<'_> {
        let p = &self.payload;
        let tag_at = p.len() - TAG_LEN;
        Parts { nonce: &p[DATA_NONCE..DATA], ciphertext: &p[DATA..tag_at], tag: &p[tag_at..] }
    }

    pub(crate) fn open(&self, kek: &Kek, id: &str) -> Result<Plaintext, CodecError> {
        let dek = self.unwrap_dek(kek, id)?;
        let p = &self.payload;
        let tag_at = p.len() - TAG_LEN;
        let mut plaintext = Zeroizing::new(p[DATA..tag_at].to_vec());
        dek.cipher()
            .decrypt_inout_detached(
                &nonce(&p[DATA_NONCE..DATA]),
                &data_aad(id),
                plaintext.as_mut_slice().into(),
                p[tag_at..].try_into().expect("16-byte tag"),
            )
            .map_err(|_| CodecError::Authentication)?;
        Ok(plaintext)
    }
}

/// Base64 characters that encode the payload up to and including the first two bytes of the
/// data nonce (63 bytes, a whole number of base64 quanta): the part a re-wrap changes.
pub(crate) const HEAD_CHARS: usize = DATA_NONCE.div_ceil(3) * 4;
const HEAD_BYTES: usize = HEAD_CHARS / 4 * 3;

/// 1 for each byte that is not a symbol of standard base64 (its padding `=` included).
const NOT_BASE64: [u8; 256] = {
    let mut table = [1; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' {
            table[byte] = 0;
        }
        byte += 1;
    }
    table
};

/// `byte` in each of a u64's eight bytes.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each of a u64's eight bytes.
const HIGH_BITS: u64 = splat(0x80);

/// For eight bytes in a u64, each below 0x80: the high bit of each byte that lies in
/// `lo..=hi` (`hi` below 0x80 too). Below 0x80, neither sum carries into the next byte.
const fn in_range(bytes: u64, lo: u8, hi: u8) -> u64 {
    bytes.wrapping_add(splat(0x80 - lo)) & !bytes.wrapping_add(splat(0x7f - hi)) & HIGH_BITS
}

/// Whether every byte of `text` is a base64 symbol (`A-Z`, `a-z`, `0-9`, `+`, `/`; not `=`).
/// Eight bytes per step, as one u64: in wasm a re-wrap checks 1.8 KB per wallet this way, and
/// a table lookup per byte was still a fifteenth of a re-wrap's CPU on PostgreSQL.
fn all_base64_symbols(text: &[u8]) -> bool {
    let mut words = text.chunks_exact(8);
    let mut bad = 0u64;
    for word in &mut words {
        let bytes = u64::from_le_bytes(word.try_into().expect("chunks of eight bytes"));
        let ascii = bytes & !HIGH_BITS;
        // Setting bit 5 folds `A-Z` onto `a-z` and moves nothing else into that range; `/`
        // and the digits are one range, 0x2F-0x39.
        let symbol = in_range(ascii | splat(0x20), b'a', b'z')
            | in_range(ascii, b'/', b'9')
            | in_range(ascii, b'+', b'+');
        // A high bit in `bytes` is a byte above ASCII; a clear one in `symbol`, no symbol.
        bad |= bytes | !symbol;
    }
    let rest = words.remainder().iter().fold(0, |bad, &b| bad | NOT_BASE64[usize::from(b)]);
    bad & HIGH_BITS == 0 && rest == 0
}

/// An envelope read only as far as its wrapped data key; the rest stays base64 text, unread.
pub(crate) struct EnvelopeHead<'a> {
    pub(crate) kek_version: u32,
    head: [u8; HEAD_BYTES],
    /// Characters before `tail`: the `rotor:v<K>:` prefix and the head's base64.
    head_len: usize,
    tail: &'a str,
}

impl<'a> EnvelopeHead<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, CodecError> {
        let (kek_version, encoded) = split_prefix(text)?;
        if encoded.len() < HEAD_CHARS || !encoded.is_char_boundary(HEAD_CHARS) {
            return Err(CodecError::Malformed("payload is truncated"));
        }
        let (head_text, tail) = encoded.split_at(HEAD_CHARS);
        let mut head = [0u8; HEAD_BYTES];
        let decoded = text::decode_into(head_text.as_bytes(), &mut head)
            .ok_or(CodecError::Malformed("payload is not valid base64"))?;
        if decoded != HEAD_BYTES || head[0] != LAYOUT_V1 {
            return Err(CodecError::Malformed("unknown payload layout byte"));
        }
        Ok(EnvelopeHead { kek_version, head, head_len: text.len() - tail.len(), tail })
    }

    pub(crate) fn unwrap_dek(&self, kek: &Kek, id: &str) -> Result<DataKey, CodecError> {
        kek.unwrap_detached(&wrap_aad(self.kek_version, id), self.wrap_parts())
    }

    /// Whether both envelopes hold the same data part, byte for byte.
    pub(crate) fn same_data(&self, other: &EnvelopeHead<'_>) -> bool {
        self.same_data_in_head(other) && self.tail == other.tail
    }

    /// Whether both heads hold the same first bytes of the data part (of its nonce).
    pub(crate) fn same_data_in_head(&self, other: &EnvelopeHead<'_>) -> bool {
        self.head[DATA_NONCE..] == other.head[DATA_NONCE..]
    }

    /// Characters after the head: the wallet's own ciphertext, base64.
    pub(crate) fn tail_len(&self) -> usize {
        self.tail.len()
    }

    /// The wrapped data key's nonce, ciphertext and tag.
    pub(crate) fn wrap_parts(&self) -> Parts<'_> {
        wrap_parts_of(&self.head)
    }

    /// Checks what [`EnvelopeHead::parse`] left unread as [`Envelope::parse`] would: canonical
    /// base64 (padding only at the end, no stray bits) of a payload no shorter than an
    /// envelope's. Reading each character's class is far cheaper than decoding them all.
    pub(crate) fn check_tail(&self) -> Result<(), CodecError> {
        let tail = self.tail.as_bytes();
        let not_base64 = CodecError::Malformed("payload is not valid base64");
        if !tail.len().is_multiple_of(4) || tail.is_empty() {
            return Err(not_base64);
        }
        let (body, last) = tail.split_at(tail.len() - 4);
        // No branch per character: in wasm, the short-circuiting test of each character's
        // class took a third of a re-wrap's CPU.
        if !all_base64_symbols(body) {
            return Err(not_base64);
        }
        let mut quantum = [0u8; 3];
        let decoded = text::decode_into(last, &mut quantum).ok_or(not_base64)?;
        if HEAD_BYTES + body.len() / 4 * 3 + decoded < PAYLOAD_OVERHEAD {
            return Err(CodecError::Malformed("payload is truncated"));
        }
        Ok(())
    }

    /// Characters before the tail: the `rotor:v<K>:` prefix and the head's base64.
    pub(crate) fn head_len(&self) -> usize {
        self.head_len
    }

    /// This envelope's head naming `kek_version`, its data key wrapped as `wrap`, with room
    /// for `extra` more characters.
    fn head_with_wrap(&self, kek_version: u32, wrap: Parts<'_>, extra: usize) -> String {
        let mut head = self.head;
        head[WRAP_NONCE..WRAPPED_DEK].copy_from_slice(wrap.nonce);
        head[WRAPPED_DEK..WRAP_TAG].copy_from_slice(wrap.ciphertext);
        head[WRAP_TAG..DATA_NONCE].copy_from_slice(wrap.tag);
        encode_with_room(kek_version, &head, extra)
    }

    /// The head alone of [`EnvelopeHead::with_wrap`]: what a re-wrap changes, for a store
    /// that keeps the rest of the row as it is.
    pub(crate) fn new_head(&self, kek_version: u32, wrap: Parts<'_>) -> String {
        self.head_with_wrap(kek_version, wrap, 0)
    }

    /// This envelope naming `kek_version`, its data key wrapped as `wrap`: the head encoded
    /// again, the rest copied as text.
    pub(crate) fn with_wrap(&self, kek_version: u32, wrap: Parts<'_>) -> String {
        let mut text = self.head_with_wrap(kek_version, wrap, self.tail.len());
        text.push_str(self.tail);
        text
    }
}

/// The wrapped data key in a payload's first bytes (whole, or only its head).
fn wrap_parts_of(payload: &[u8]) -> Parts<'_> {
    Parts {
        nonce: &payload[WRAP_NONCE..WRAPPED_DEK],
        ciphertext: &payload[WRAPPED_DEK..WRAP_TAG],
        tag: &payload[WRAP_TAG..DATA_NONCE],
    }
}

/// The wrapped data key as [`wrap_into`] lays it out on its own (nonce ‖ wrapped ‖ tag).
fn wrap_parts_of_wrap(wrap: &[u8]) -> Parts<'_> {
    let (nonce, rest) = wrap.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(KEY_LEN);
    Parts { nonce, ciphertext, tag }
}

/// `rotor:v<K>:<payload>` split into K and the payload's base64, both envelope readers' first step.
fn split_prefix(text: &str) -> Result<(u32, &str), CodecError> {
    let rest =
        text.strip_prefix(PREFIX).ok_or(CodecError::Malformed("expected the prefix rotor:v<version>:"))?;
    let (version, encoded) =
        rest.split_once(':').ok_or(CodecError::Malformed("no ':' after the KEK version"))?;
    Ok((parse_version(version)?, encoded))
}

fn parse_version(digits: &str) -> Result<u32, CodecError> {
    const BAD: CodecError =
        CodecError::Malformed("KEK version must be a decimal number from 1, without leading zeros");
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    digits.parse().map_err(|_| BAD)
}

fn nonce(bytes: &[u8]) -> Nonce<Aes256Gcm> {
    Nonce::<Aes256Gcm>::try_from(bytes).expect("12-byte nonce")
}

/// Wraps `dek` under `kek` into `out` (nonce ‖ wrapped ‖ tag).
fn wrap_into(
    out: &mut Vec<u8>,
    kek: &Kek,
    kek_version: u32,
    id: &str,
    dek: &DataKey,
    wrap_nonce: [u8; NONCE_LEN],
) {
    out.extend_from_slice(&wrap_nonce);
    let start = out.len();
    out.extend_from_slice(dek.0.as_ref());
    let tag = kek
        .cipher()
        .encrypt_inout_detached(&nonce(&wrap_nonce), &wrap_aad(kek_version, id), (&mut out[start..]).into())
        .expect("a 32-byte message is within AES-GCM limits");
    out.extend_from_slice(&tag);
}

/// Lays out an envelope from its two AES-GCM outputs (lengths checked by the caller).
pub(crate) fn encode_parts(kek_version: u32, wrap: Parts<'_>, data: Parts<'_>) -> String {
    let mut payload = Vec::with_capacity(PAYLOAD_OVERHEAD + data.ciphertext.len());
    payload.push(LAYOUT_V1);
    for piece in [wrap.nonce, wrap.ciphertext, wrap.tag, data.nonce, data.ciphertext, data.tag] {
        payload.extend_from_slice(piece);
    }
    encode(kek_version, &payload)
}

fn encode(kek_version: u32, payload: &[u8]) -> String {
    encode_with_room(kek_version, payload, 0)
}

/// `rotor:v<K>:` and the base64 of `payload` (or of an envelope's head), with room for `extra`
/// more characters (the rest of a row a re-wrap keeps) so that appending them copies nothing.
fn encode_with_room(kek_version: u32, payload: &[u8], extra: usize) -> String {
    let mut out = format!("{PREFIX}{kek_version}:");
    out.reserve(payload.len().div_ceil(3) * 4 + extra);
    text::encode_append(payload, &mut out);
    out
}

/// Seals `plaintext` for wallet `id` with the given data key and nonces. Deterministic; rotor's
/// own writes go through [`seal`], which draws them fresh.
pub fn seal_with(
    kek: &Kek,
    kek_version: u32,
    id: &str,
    plaintext: &[u8],
    dek: &DataKey,
    nonces: EnvelopeNonces,
) -> String {
    assert!(kek_version >= 1, "KEK versions start at 1");
    let mut payload = Vec::with_capacity(PAYLOAD_OVERHEAD + plaintext.len());
    payload.push(LAYOUT_V1);
    wrap_into(&mut payload, kek, kek_version, id, dek, nonces.wrap);
    payload.extend_from_slice(&nonces.data);
    let start = payload.len();
    payload.extend_from_slice(plaintext);
    let tag = dek
        .cipher()
        .encrypt_inout_detached(&nonce(&nonces.data), &data_aad(id), (&mut payload[start..]).into())
        .expect("wallets are far below AES-GCM's length limit");
    payload.extend_from_slice(&tag);
    encode(kek_version, &payload)
}

/// Seals `plaintext` for wallet `id` under KEK version `kek_version`, with a fresh data key.
#[cfg(feature = "getrandom")]
pub fn seal(kek: &Kek, kek_version: u32, id: &str, plaintext: &[u8]) -> Result<String, CodecError> {
    let nonces = EnvelopeNonces { wrap: random_nonce()?, data: random_nonce()? };
    Ok(seal_with(kek, kek_version, id, plaintext, &DataKey::generate()?, nonces))
}

/// Moves an envelope to another KEK by re-wrapping its data key: ~60 bytes of AES, whatever the
/// wallet's size. The wallet's own ciphertext is kept byte for byte. Only envelopes can be
/// re-wrapped; a legacy ciphertext has no data key and must be re-encrypted. Deterministic;
/// rotor's own writes go through [`rewrap`], which draws the nonce fresh.
pub fn rewrap_with(
    old_kek: &Kek,
    new_kek: &Kek,
    new_version: u32,
    id: &str,
    ciphertext: &str,
    wrap_nonce: [u8; NONCE_LEN],
) -> Result<String, CodecError> {
    let (mut text, old_head_len) = rewrapped_head(old_kek, new_kek, new_version, id, ciphertext, wrap_nonce)?;
    // The rest is the wallet's own ciphertext, already checked as base64: copied, not decoded.
    text.push_str(&ciphertext[old_head_len..]);
    Ok(text)
}

/// [`rewrap_with`], returning the new envelope's head alone: the `rotor:v<K>:` prefix and the
/// base64 up to the wallet's own ciphertext, which a re-wrap keeps (see [`crate::rewrap_head_lengths`]).
/// Decodes only the head and checks the rest as [`rewrap_with`] would, without decoding it.
pub fn rewrap_head_with(
    old_kek: &Kek,
    new_kek: &Kek,
    new_version: u32,
    id: &str,
    ciphertext: &str,
    wrap_nonce: [u8; NONCE_LEN],
) -> Result<String, CodecError> {
    rewrapped_head(old_kek, new_kek, new_version, id, ciphertext, wrap_nonce).map(|(head, _)| head)
}

/// The new head of a re-wrap and the length of the old one, which the re-wrap replaces.
fn rewrapped_head(
    old_kek: &Kek,
    new_kek: &Kek,
    new_version: u32,
    id: &str,
    ciphertext: &str,
    wrap_nonce: [u8; NONCE_LEN],
) -> Result<(String, usize), CodecError> {
    assert!(new_version >= 1, "KEK versions start at 1");
    let head = EnvelopeHead::parse(ciphertext)?;
    head.check_tail()?;
    let dek = head.unwrap_dek(old_kek, id)?;
    let mut wrap = Vec::with_capacity(DATA_NONCE - WRAP_NONCE);
    wrap_into(&mut wrap, new_kek, new_version, id, &dek, wrap_nonce);
    Ok((head.new_head(new_version, wrap_parts_of_wrap(&wrap)), head.head_len()))
}

/// [`rewrap_head_with`] under a fresh nonce.
#[cfg(feature = "getrandom")]
pub fn rewrap_head(
    old_kek: &Kek,
    new_kek: &Kek,
    new_version: u32,
    id: &str,
    ciphertext: &str,
) -> Result<String, CodecError> {
    rewrap_head_with(old_kek, new_kek, new_version, id, ciphertext, random_nonce()?)
}

/// Moves an envelope to another KEK by re-wrapping its data key under a fresh nonce.
#[cfg(feature = "getrandom")]
pub fn rewrap(
    old_kek: &Kek,
    new_kek: &Kek,
    new_version: u32,
    id: &str,
    ciphertext: &str,
) -> Result<String, CodecError> {
    rewrap_with(old_kek, new_kek, new_version, id, ciphertext, random_nonce()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, inspect, open};

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes([byte; KEY_LEN])
    }

    const NONCES: EnvelopeNonces = EnvelopeNonces { wrap: [1; NONCE_LEN], data: [2; NONCE_LEN] };

    #[test]
    fn the_base64_table_names_exactly_the_standard_alphabet() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for byte in 0..=255u8 {
            assert_eq!(NOT_BASE64[usize::from(byte)] == 0, alphabet.contains(&byte), "byte {byte}");
        }
    }

    #[test]
    fn the_eight_byte_check_knows_every_byte_in_every_place() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        // Lengths around a word, so that the byte falls in a word and in the remainder.
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut text = alloc::vec![b'Q'; len];
                    text[at] = byte;
                    let want = alphabet.contains(&byte);
                    assert_eq!(all_base64_symbols(&text), want, "byte {byte} at {at} of {len}");
                }
            }
        }
        assert!(all_base64_symbols(b""));
        assert!(all_base64_symbols(alphabet));
    }

    #[test]
    fn seal_open_round_trip_names_version() {
        let sealed = seal_with(&kek(7), 3, "w-1", b"secret", &DataKey::from_bytes([9; 32]), NONCES);
        assert!(sealed.starts_with("rotor:v3:"));
        assert_eq!(inspect(&sealed), Ok(Format::Envelope { kek_version: 3 }));
        assert_eq!(open(&kek(7), "w-1", &sealed).unwrap().as_slice(), b"secret");
        let base64_len = (PAYLOAD_OVERHEAD + 6).div_ceil(3) * 4;
        assert_eq!(sealed.len(), "rotor:v3:".len() + base64_len);
    }

    #[test]
    fn wrong_key_wrong_id_and_edited_version_fail() {
        let sealed = seal_with(&kek(7), 3, "w-1", b"secret", &DataKey::from_bytes([9; 32]), NONCES);
        assert_eq!(open(&kek(8), "w-1", &sealed), Err(CodecError::Authentication));
        assert_eq!(open(&kek(7), "w-2", &sealed), Err(CodecError::Authentication));
        let relabelled = sealed.replacen("rotor:v3:", "rotor:v4:", 1);
        assert_eq!(open(&kek(7), "w-1", &relabelled), Err(CodecError::Authentication));
    }

    #[test]
    fn rewrap_keeps_data_and_moves_version() {
        let dek = DataKey::from_bytes([9; 32]);
        let sealed = seal_with(&kek(7), 3, "w-1", b"secret", &dek, NONCES);
        let moved = rewrap_with(&kek(7), &kek(8), 4, "w-1", &sealed, [5; NONCE_LEN]).unwrap();
        assert!(moved.starts_with("rotor:v4:"));
        assert_eq!(open(&kek(8), "w-1", &moved).unwrap().as_slice(), b"secret");
        assert_eq!(open(&kek(7), "w-1", &moved), Err(CodecError::Authentication));
        let data_of = |s: &str| Envelope::parse(s).unwrap().payload[DATA_NONCE..].to_vec();
        assert_eq!(data_of(&sealed), data_of(&moved));
        assert_eq!(
            rewrap_with(&kek(9), &kek(8), 4, "w-1", &sealed, [5; NONCE_LEN]).err(),
            Some(CodecError::Authentication)
        );
    }

    #[test]
    fn malformed_inputs_say_what_is_wrong() {
        let cases = [
            ("rotor:v0:AAAA", "KEK version must be a decimal number from 1, without leading zeros"),
            ("rotor:v01:AAAA", "KEK version must be a decimal number from 1, without leading zeros"),
            ("rotor:vx:AAAA", "KEK version must be a decimal number from 1, without leading zeros"),
            ("rotor:v99999999999:AAAA", "KEK version must be a decimal number from 1, without leading zeros"),
            ("rotor:v1", "no ':' after the KEK version"),
            ("rotor:v1:!!!", "payload is not valid base64"),
            ("rotor:v1:AAAA", "payload is truncated"),
            ("rotor:x", "expected the prefix rotor:v<version>:"),
        ];
        for (input, why) in cases {
            assert_eq!(inspect(input), Err(CodecError::Malformed(why)), "{input}");
        }
        let mut payload = [0u8; PAYLOAD_OVERHEAD];
        payload[0] = 2;
        assert_eq!(inspect(&encode(1, &payload)), Err(CodecError::Malformed("unknown payload layout byte")));
    }

    #[cfg(feature = "getrandom")]
    #[test]
    fn fresh_seals_differ_and_sealing_again_replaces_the_data_key() {
        let a = seal(&kek(7), 1, "w", b"same").unwrap();
        let b = seal(&kek(7), 1, "w", b"same").unwrap();
        assert_ne!(a, b);
        let moved = seal(&kek(8), 2, "w", &open(&kek(7), "w", &a).unwrap()).unwrap();
        let data_of = |s: &str| Envelope::parse(s).unwrap().payload[DATA_NONCE..].to_vec();
        assert_ne!(data_of(&a), data_of(&moved));
        assert_eq!(open(&kek(8), "w", &moved).unwrap().as_slice(), b"same");
    }
}
