//! KEKs as Vault keeps them, read through the `kv` import.
//!
//! Layout, relative to the KV mount (`key-path` is `ibn/encryption-key` by default):
//! * `<key-path>`, field `key`: the current KEK, 64 hex characters. Its KV version number is the
//!   KEK version that `rotor:v<K>:` ciphertexts name.
//! * `<key-path>-archive/v<K>`, fields `key` and `kek_version`: every KEK version rotor has
//!   written or rotated away from, kept explicitly because KV v2 drops versions beyond its
//!   `max_versions` (10 by default).
//! * `<key-path>-archive/<unix-ms>`, field `key`: the seed script's archives of old KEKs.

use std::collections::BTreeMap;

use rotor_codec::{Format, Kek, Plaintext};
use zeroize::Zeroizing;

use crate::bindings::rotor::kek::kv;
use crate::codec::kek_from_hex;

/// Field that holds the hex KEK, in the current path and in archives.
const KEY_FIELD: &str = "key";

pub(crate) fn archive_folder(key_path: &str) -> String {
    format!("{key_path}-archive/")
}

pub(crate) fn archive_path(key_path: &str, version: u32) -> String {
    format!("{key_path}-archive/v{version}")
}

pub(crate) fn kv_error(path: &str, error: kv::Error) -> String {
    match error {
        kv::Error::Denied(why) => format!("Vault refused access to {path}: {why}"),
        kv::Error::CasMismatch(why) => format!("{path} changed while rotor was using it: {why}"),
        kv::Error::Unavailable(why) | kv::Error::Other(why) => why,
    }
}

/// Takes the KEK out of a secret's data, wiping every value it does not keep.
fn kek_of(path: &str, secret: kv::Secret) -> Result<Kek, String> {
    let mut found = None;
    for (field, value) in secret.data {
        let value = Zeroizing::new(value);
        if field == KEY_FIELD {
            found = Some(value);
        }
    }
    let hex_key = found.ok_or_else(|| format!("{path} has no field `{KEY_FIELD}`"))?;
    kek_from_hex(hex_key.to_string()).map_err(|e| {
        format!("{path} field `{KEY_FIELD}` is not a KEK ({e}); it must be 64 hex characters")
    })
}

/// Wipes the values of secret data this component built to send to Vault.
pub(crate) fn wipe(data: Vec<(String, String)>) {
    for (_, value) in data {
        drop(Zeroizing::new(value));
    }
}

fn read(path: &str, version: Option<u64>) -> Result<Option<kv::Secret>, String> {
    kv::read(path, version).map_err(|e| kv_error(path, e))
}

/// The current KEK, its version and every older one asked for so far.
pub(crate) struct Keyring {
    key_path: String,
    current_version: u32,
    keys: BTreeMap<u32, Kek>,
    /// KEKs in the seed's archives, newest first; loaded when a legacy row first needs them.
    seed_archives: Option<Vec<Kek>>,
}

impl Keyring {
    /// Reads the current KEK. Errors name the path and what to do if it is missing or invalid.
    pub(crate) fn load(key_path: &str) -> Result<Keyring, String> {
        let secret = read(key_path, None)?.ok_or_else(|| {
            format!(
                "no KEK at {key_path} in Vault: store the first one with `rotor migrate-kek --from-env VAR`"
            )
        })?;
        let current_version = u32::try_from(secret.version).map_err(|_| {
            format!(
                "{key_path} is at version {}, beyond rotor's range",
                secret.version
            )
        })?;
        let kek = kek_of(key_path, secret)?;
        Ok(Keyring {
            key_path: key_path.to_owned(),
            current_version,
            keys: BTreeMap::from([(current_version, kek)]),
            seed_archives: None,
        })
    }

    pub(crate) fn key_path(&self) -> &str {
        &self.key_path
    }

    pub(crate) fn current_version(&self) -> u32 {
        self.current_version
    }

    pub(crate) fn current(&self) -> &Kek {
        &self.keys[&self.current_version]
    }

    /// Makes a KEK this run has just stored in Vault the current one.
    pub(crate) fn install_current(&mut self, version: u32, kek: Kek) {
        self.keys.insert(version, kek);
        self.current_version = version;
    }

    /// KEK `version`: from rotor's archive, else from the KV version history.
    pub(crate) fn get(&mut self, version: u32) -> Result<Kek, String> {
        if let Some(kek) = self.keys.get(&version) {
            return Ok(kek.clone());
        }
        let kek = self.fetch(version)?;
        self.keys.insert(version, kek.clone());
        Ok(kek)
    }

    fn fetch(&self, version: u32) -> Result<Kek, String> {
        let archived = archive_path(&self.key_path, version);
        if let Some(secret) = read(&archived, None)? {
            return kek_of(&archived, secret);
        }
        match read(&self.key_path, Some(version.into()))? {
            Some(secret) => kek_of(&self.key_path, secret),
            None => Err(format!(
                "KEK version {version} is neither in {archived} nor in the version history of {}",
                self.key_path
            )),
        }
    }

    /// Keys a legacy ciphertext may be under: every rotor KEK version, newest first (the
    /// current one, then rotor's archive), then the seed's timestamped archives, newest first.
    pub(crate) fn legacy_candidates(&mut self) -> Result<impl Iterator<Item = &Kek>, String> {
        if self.seed_archives.is_none() {
            let folder = archive_folder(&self.key_path);
            let entries = kv::list_keys(&folder).map_err(|e| kv_error(&folder, e))?;
            for version in entries
                .iter()
                .filter_map(|name| name.strip_prefix('v')?.parse().ok())
            {
                self.get(version)?;
            }
            let mut stamps: Vec<u64> = entries
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect();
            stamps.sort_unstable_by(|a, b| b.cmp(a));
            let mut seed_archives = Vec::with_capacity(stamps.len());
            for stamp in stamps {
                let path = format!("{folder}{stamp}");
                if let Some(secret) = read(&path, None)? {
                    seed_archives.push(kek_of(&path, secret)?);
                }
            }
            self.seed_archives = Some(seed_archives);
        }
        Ok(self
            .keys
            .values()
            .rev()
            .chain(self.seed_archives.iter().flatten()))
    }

    /// Makes sure KEK `version` is in rotor's archive, so it stays readable whatever KV v2's
    /// `max_versions` drops. Idempotent; refuses if the archive holds a different key.
    pub(crate) fn archive(&mut self, version: u32) -> Result<(), String> {
        let path = archive_path(&self.key_path, version);
        let kek = self.get(version)?;
        let data = vec![
            (KEY_FIELD.to_owned(), kek.to_hex().to_string()),
            ("kek_version".to_owned(), version.to_string()),
        ];
        let written = kv::write(&path, &data, Some(0));
        wipe(data);
        match written {
            Ok(_) => Ok(()),
            Err(kv::Error::CasMismatch(_)) => {
                let stored = read(&path, None)?
                    .ok_or_else(|| format!("{path} exists but cannot be read"))?;
                if kek_of(&path, stored)? == kek {
                    Ok(())
                } else {
                    Err(format!(
                        "{path} holds a different key than KEK version {version}: refusing to go on; \
                         inspect the archive before rotating"
                    ))
                }
            }
            Err(e) => Err(kv_error(&path, e)),
        }
    }
}

impl Keyring {
    /// Opens a wallet in either format: envelopes with the KEK they name, legacy ciphertexts
    /// with each candidate in turn. Returns the version it was under (0 for legacy).
    pub(crate) fn open(&mut self, id: &str, ciphertext: &str) -> Result<(u32, Plaintext), String> {
        match rotor_codec::inspect(ciphertext).map_err(|e| e.to_string())? {
            Format::Envelope { kek_version } => {
                let kek = self.get(kek_version)?;
                let plaintext =
                    rotor_codec::open(&kek, id, ciphertext).map_err(|e| e.to_string())?;
                Ok((kek_version, plaintext))
            }
            Format::Legacy => self
                .legacy_candidates()?
                .find_map(|kek| rotor_codec::open(kek, id, ciphertext).ok())
                .map(|plaintext| (0, plaintext))
                .ok_or_else(|| {
                    "legacy ciphertext opens under neither the current KEK nor any archived one"
                        .to_owned()
                }),
        }
    }
}
