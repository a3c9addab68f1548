//! KEKs as Vault keeps them, read through the `kv` import.
//!
//! Layout, relative to the KV mount (`key-path` is `ibn/encryption-key` by default):
//! * `<key-path>`, field `key`: the current KEK, 64 hex characters. Its KV version number is the
//!   KEK version that `rotor:v<K>:` ciphertexts name.
//! * `<key-path>-archive/v<K>`, fields `key` and `kek_version`: every KEK version rotor has
//!   written or rotated away from, kept explicitly because KV v2 drops versions beyond its
//!   `max_versions` (10 by default).
//! * `<key-path>-archive/<unix-ms>`, field `key`: the seed script's archives of old KEKs.

use std::collections::{BTreeMap, BTreeSet};

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
    kek_from_hex(hex_key.to_string())
        .map_err(|e| format!("{path} field `{KEY_FIELD}` is not a KEK ({e}); it must be 64 hex characters"))
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

/// Why a wallet did not open.
pub(crate) enum OpenError {
    /// The wallet's own problem (malformed, wrong key or id, its KEK version is gone): reported
    /// by id, and the row is left as it is.
    Wallet(String),
    /// Vault or the host failed: nothing is known about the wallet, so the operation stops.
    Fatal(String),
}

/// The current KEK, its version and every older one asked for so far.
pub(crate) struct Keyring {
    key_path: String,
    current_version: u32,
    keys: BTreeMap<u32, Kek>,
    /// Versions Vault has no key for, so each is looked up once however many wallets name it.
    missing: BTreeSet<u32>,
    /// KEKs in the seed's archives, newest first; loaded when a legacy row first needs them.
    seed_archives: Option<Vec<Kek>>,
    /// The key that opened the last legacy wallet.
    legacy_hit: Option<Kek>,
}

impl Keyring {
    /// Reads the current KEK. Errors name the path and what to do if it is missing or invalid.
    pub(crate) fn load(key_path: &str) -> Result<Keyring, String> {
        let secret = read(key_path, None)?.ok_or_else(|| {
            format!(
                "no KEK at {key_path} in Vault: store the first one with `rotor migrate-kek --from-env VAR`"
            )
        })?;
        let current_version = u32::try_from(secret.version)
            .map_err(|_| format!("{key_path} is at version {}, beyond rotor's range", secret.version))?;
        let kek = kek_of(key_path, secret)?;
        Ok(Keyring {
            key_path: key_path.to_owned(),
            current_version,
            keys: BTreeMap::from([(current_version, kek)]),
            missing: BTreeSet::new(),
            seed_archives: None,
            legacy_hit: None,
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

    /// KEK `version`: from rotor's archive, else from the KV version history; `None` if Vault
    /// has it in neither. `Err` only when Vault itself fails.
    pub(crate) fn get(&mut self, version: u32) -> Result<Option<Kek>, String> {
        if let Some(kek) = self.keys.get(&version) {
            return Ok(Some(kek.clone()));
        }
        if self.missing.contains(&version) {
            return Ok(None);
        }
        let archived = archive_path(&self.key_path, version);
        let kek = match read(&archived, None)? {
            Some(secret) => Some(kek_of(&archived, secret)?),
            None => match read(&self.key_path, Some(version.into()))? {
                Some(secret) => Some(kek_of(&self.key_path, secret)?),
                None => None,
            },
        };
        match &kek {
            Some(kek) => self.keys.insert(version, kek.clone()),
            None => {
                self.missing.insert(version);
                None
            }
        };
        Ok(kek)
    }

    /// Like [`Keyring::get`], for a KEK that must exist (the current one or a rotation's target).
    pub(crate) fn require(&mut self, version: u32) -> Result<Kek, String> {
        self.get(version)?.ok_or_else(|| {
            format!(
                "KEK version {version} is neither in {} nor in the version history of {}",
                archive_path(&self.key_path, version),
                self.key_path
            )
        })
    }

    /// Keys a legacy ciphertext may be under: every rotor KEK version, newest first (the
    /// current one, then rotor's archive), then the seed's timestamped archives, newest first.
    pub(crate) fn legacy_candidates(&mut self) -> Result<impl Iterator<Item = &Kek>, String> {
        if self.seed_archives.is_none() {
            let folder = archive_folder(&self.key_path);
            let entries = kv::list_keys(&folder).map_err(|e| kv_error(&folder, e))?;
            for version in entries.iter().filter_map(|name| name.strip_prefix('v')?.parse().ok()) {
                self.require(version)?;
            }
            let mut stamps: Vec<u64> = entries.iter().filter_map(|name| name.parse().ok()).collect();
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
        Ok(self.keys.values().rev().chain(self.seed_archives.iter().flatten()))
    }

    /// Makes sure KEK `version` is in rotor's archive, so it stays readable whatever KV v2's
    /// `max_versions` drops. Idempotent; refuses if the archive holds a different key.
    pub(crate) fn archive(&mut self, version: u32) -> Result<(), String> {
        let path = archive_path(&self.key_path, version);
        let kek = self.require(version)?;
        let data = vec![
            (KEY_FIELD.to_owned(), kek.to_hex().to_string()),
            ("kek_version".to_owned(), version.to_string()),
        ];
        let written = kv::write(&path, &data, Some(0));
        wipe(data);
        match written {
            Ok(_) => Ok(()),
            Err(kv::Error::CasMismatch(_)) => {
                let stored = read(&path, None)?.ok_or_else(|| format!("{path} exists but cannot be read"))?;
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
    /// The KEK an envelope names; a wallet error if Vault has no such version.
    pub(crate) fn for_envelope(&mut self, kek_version: u32) -> Result<Kek, OpenError> {
        self.get(kek_version).map_err(OpenError::Fatal)?.ok_or_else(|| {
            OpenError::Wallet(format!(
                "names KEK version {kek_version}, which Vault does not have (neither in {} nor in \
                 the version history of {})",
                archive_path(&self.key_path, kek_version),
                self.key_path
            ))
        })
    }

    /// Opens a wallet in either format: envelopes with the KEK they name, legacy ciphertexts
    /// with each candidate in turn. Returns the version it was under (0 for legacy).
    pub(crate) fn open(&mut self, id: &str, ciphertext: &str) -> Result<(u32, Plaintext), OpenError> {
        let wallet_error = |e: rotor_codec::CodecError| OpenError::Wallet(e.to_string());
        match rotor_codec::inspect(ciphertext).map_err(wallet_error)? {
            Format::Envelope { kek_version } => {
                let kek = self.for_envelope(kek_version)?;
                let plaintext = rotor_codec::open(&kek, id, ciphertext).map_err(wallet_error)?;
                Ok((kek_version, plaintext))
            }
            Format::Legacy => {
                // Legacy wallets are mostly under one key: try the last one that worked first,
                // which halves the AES work of converting them during a rotation.
                if let Some(plaintext) =
                    self.legacy_hit.as_ref().and_then(|kek| rotor_codec::open(kek, id, ciphertext).ok())
                {
                    return Ok((0, plaintext));
                }
                let opened = self.legacy_candidates().map_err(OpenError::Fatal)?.find_map(|kek| {
                    rotor_codec::open(kek, id, ciphertext).ok().map(|plaintext| (kek.clone(), plaintext))
                });
                let (kek, plaintext) = opened.ok_or_else(|| {
                    OpenError::Wallet(
                        "legacy ciphertext opens under neither the current KEK nor any archived one".into(),
                    )
                })?;
                self.legacy_hit = Some(kek);
                Ok((0, plaintext))
            }
        }
    }
}
