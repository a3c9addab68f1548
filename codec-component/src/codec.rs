//! The pure `codec` export: one wallet at a time, keys passed in by the caller.

use rotor_codec::{CodecError, Format, Kek};
use zeroize::Zeroizing;

/// Parses a hex KEK and wipes the caller's string, which is ours once it crossed the boundary.
pub(crate) fn kek_from_hex(hex_key: String) -> Result<Kek, CodecError> {
    let hex_key = Zeroizing::new(hex_key);
    Kek::from_hex(&hex_key)
}

pub(crate) fn seal(
    kek_hex: String,
    kek_version: u32,
    id: &str,
    plaintext: Vec<u8>,
) -> Result<String, String> {
    let plaintext = Zeroizing::new(plaintext);
    if kek_version == 0 {
        return Err("KEK versions start at 1".into());
    }
    let kek = kek_from_hex(kek_hex).map_err(|e| e.to_string())?;
    rotor_codec::seal(&kek, kek_version, id, &plaintext).map_err(|e| e.to_string())
}

pub(crate) fn open(keks: Vec<(u32, String)>, id: &str, ciphertext: &str) -> Result<Vec<u8>, String> {
    let mut keyring = Vec::with_capacity(keks.len());
    for (version, hex_key) in keks {
        let kek = kek_from_hex(hex_key).map_err(|e| format!("KEK version {version}: {e}"))?;
        keyring.push((version, kek));
    }
    match rotor_codec::inspect(ciphertext).map_err(|e| e.to_string())? {
        Format::Envelope { kek_version } => {
            let (_, kek) = keyring
                .iter()
                .find(|(v, _)| *v == kek_version)
                .ok_or_else(|| format!("no KEK version {kek_version} was given"))?;
            open_plain(kek, id, ciphertext)
        }
        Format::Legacy => {
            // The legacy layout names no version: try the newest key first, as MultiFernet does.
            keyring.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
            keyring
                .iter()
                .find_map(|(_, kek)| open_plain(kek, id, ciphertext).ok())
                .ok_or_else(|| CodecError::Authentication.to_string())
        }
    }
}

/// Opens and hands the plaintext over to the caller (the WIT return value owns it).
fn open_plain(kek: &Kek, id: &str, ciphertext: &str) -> Result<Vec<u8>, String> {
    let plaintext = rotor_codec::open(kek, id, ciphertext).map_err(|e| e.to_string())?;
    Ok(plaintext.to_vec())
}

pub(crate) fn inspect(ciphertext: &str) -> Result<u32, String> {
    rotor_codec::inspect(ciphertext)
        .map(|format| format.kek_version().unwrap_or(0))
        .map_err(|e| e.to_string())
}
