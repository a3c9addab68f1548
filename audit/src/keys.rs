//! Every KEK Vault holds for one key path, read through the read-only `kv-reader` import.
//!
//! The layout is rotor's (see `guest/src/keyring.rs`): the current KEK at `<key-path>`, field
//! `key`; every rotor version at `<key-path>-archive/v<K>`; the seed script's archives at
//! `<key-path>-archive/<unix-ms>`.

use std::collections::BTreeMap;

use rotor_codec::Kek;
use zeroize::Zeroizing;

use crate::bindings::rotor::kek::kv_reader;
use crate::bindings::rotor::kek::kv_types::{Error, Secret};

const KEY_FIELD: &str = "key";

/// The current KEK as Vault has it.
pub(crate) struct Current {
    pub version: u32,
    pub created_time: String,
    pub kek: Kek,
}

/// What the audit found in Vault.
pub(crate) struct Keys {
    pub current: Option<Current>,
    /// Rotor's archive: version → key.
    pub archived: BTreeMap<u32, Kek>,
    /// The seed script's archives, newest first.
    pub seed: Vec<Kek>,
    /// Archive entries that are not a usable KEK, with why (reported, not fatal).
    pub broken: Vec<(String, String)>,
}

fn describe(path: &str, error: Error) -> String {
    match error {
        Error::Denied(why) => format!("Vault refused to let the audit read {path}: {why}"),
        Error::CasMismatch(why) | Error::Unavailable(why) | Error::Other(why) => why,
    }
}

/// The KEK in a secret's `key` field; every value is wiped once read.
fn kek_of(secret: Secret) -> Result<Kek, String> {
    let mut key = None;
    for (field, value) in secret.data {
        let value = Zeroizing::new(value);
        if field == KEY_FIELD {
            key = Some(value);
        }
    }
    let key = key.ok_or_else(|| format!("has no field `{KEY_FIELD}`"))?;
    Kek::from_hex(&key).map_err(|e| format!("field `{KEY_FIELD}` is not 64 hex characters ({e})"))
}

fn read(path: &str, version: Option<u64>) -> Result<Option<Secret>, String> {
    kv_reader::read(path, version).map_err(|e| describe(path, e))
}

impl Keys {
    /// Reads the current KEK and every archive entry. Fails only if Vault fails.
    pub(crate) fn load(key_path: &str) -> Result<Keys, String> {
        let mut keys =
            Keys { current: None, archived: BTreeMap::new(), seed: Vec::new(), broken: Vec::new() };
        if let Some(secret) = read(key_path, None)? {
            let version = u32::try_from(secret.version).unwrap_or(u32::MAX);
            let created_time = secret.created_time.clone();
            match kek_of(secret) {
                Ok(kek) => keys.current = Some(Current { version, created_time, kek }),
                Err(why) => keys.broken.push((key_path.to_owned(), why)),
            }
        }
        let folder = format!("{key_path}-archive/");
        let entries = kv_reader::list_keys(&folder).map_err(|e| describe(&folder, e))?;
        let mut seed = Vec::new();
        for name in entries {
            let path = format!("{folder}{name}");
            let slot = if let Some(version) = name.strip_prefix('v').and_then(|v| v.parse::<u32>().ok()) {
                Some(version)
            } else if let Ok(stamp) = name.parse::<u64>() {
                seed.push((stamp, path.clone()));
                continue;
            } else {
                None
            };
            let Some(version) = slot else { continue };
            match read(&path, None)? {
                Some(secret) => match kek_of(secret) {
                    Ok(kek) => {
                        keys.archived.insert(version, kek);
                    }
                    Err(why) => keys.broken.push((path, why)),
                },
                None => keys.broken.push((path, "is listed but has no readable version".into())),
            }
        }
        seed.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (_, path) in seed {
            if let Some(secret) = read(&path, None)? {
                match kek_of(secret) {
                    Ok(kek) => keys.seed.push(kek),
                    Err(why) => keys.broken.push((path, why)),
                }
            }
        }
        Ok(keys)
    }

    /// The KEK of `version`: the current one, rotor's archive, else KV's version history
    /// (`from_history` says so: such a key is lost once KV's `max_versions` drops it).
    pub(crate) fn get(&mut self, key_path: &str, version: u32) -> Result<Option<(Kek, bool)>, String> {
        if let Some(current) = self.current.as_ref().filter(|c| c.version == version) {
            return Ok(Some((current.kek.clone(), false)));
        }
        if let Some(kek) = self.archived.get(&version) {
            return Ok(Some((kek.clone(), false)));
        }
        match read(key_path, Some(version.into()))? {
            Some(secret) => Ok(kek_of(secret).ok().map(|kek| (kek, true))),
            None => Ok(None),
        }
    }

    /// Keys a legacy ciphertext may be under, newest first.
    pub(crate) fn legacy_candidates(&self) -> impl Iterator<Item = &Kek> {
        self.current.iter().map(|c| &c.kek).chain(self.archived.values().rev()).chain(self.seed.iter())
    }
}
