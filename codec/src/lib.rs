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
mod primitive;

pub use envelope::{DataKey, EnvelopeNonces, PAYLOAD_OVERHEAD, PREFIX, rewrap_with, seal_with};
pub use error::CodecError;
pub use kek::{KEY_LEN, Kek};
pub use legacy::{LEGACY_OVERHEAD, seal_legacy_with};

#[cfg(feature = "getrandom")]
pub use envelope::{reencrypt, rewrap, seal};
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

/// Tells which format a stored ciphertext claims to be, and which KEK version it names,
/// checking its structure (prefix, base64, lengths) but not its authenticity.
pub fn inspect(ciphertext: &str) -> Result<Format, CodecError> {
    if ciphertext.starts_with("rotor:") {
        envelope::Envelope::parse(ciphertext).map(|e| Format::Envelope { kek_version: e.kek_version })
    } else {
        legacy::decode(ciphertext).map(|_| Format::Legacy)
    }
}

/// Opens a wallet in either format with the given KEK. `id` must be the row's id: envelopes
/// bind it; legacy ciphertexts do not.
pub fn open(kek: &Kek, id: &str, ciphertext: &str) -> Result<Plaintext, CodecError> {
    if ciphertext.starts_with("rotor:") {
        envelope::Envelope::parse(ciphertext)?.open(kek, id)
    } else {
        legacy::open(kek, ciphertext)
    }
}
