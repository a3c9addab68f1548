//! Every KEK Vault holds for one key path, as handles from the read-only `key-reader` import:
//! the audit opens wallets under them without ever holding a key byte.
//!
//! The layout is rotor's (see `host/src/keyring.rs`): the current KEK at `<key-path>`; every
//! rotor version at `<key-path>-archive/v<K>`; the seed script's archives at
//! `<key-path>-archive/<unix-ms>`.

use std::collections::BTreeMap;

use rotor_codec::layout::{self, EnvelopeParts, LegacyParts, Parts};

use crate::bindings::rotor::kek::key_reader;
use crate::bindings::rotor::kek::key_types::{Error, Kek, Sealed};

/// The current KEK.
pub(crate) struct Current {
    pub version: u32,
    /// When Vault wrote it (RFC 3339); empty if Vault does not say.
    pub created_time: String,
    pub kek: Kek,
}

/// What the audit found in Vault.
pub(crate) struct Keys {
    pub current: Option<Current>,
    /// rotor's archive: `v<K>` entries.
    pub archived: BTreeMap<u32, Kek>,
    /// The seed's archives, newest first.
    pub seed: Vec<Kek>,
    /// Entries that hold no usable key: (path, why).
    pub broken: Vec<(String, String)>,
    /// Versions asked for that are neither current nor archived: from KV's version history.
    from_history: BTreeMap<u32, Option<Kek>>,
}

/// A failure that is not about one entry (Vault down, access refused): the audit stops.
fn fatal(error: Error) -> String {
    match error {
        Error::Denied(why) => format!("Vault refused to let the audit read the KEKs: {why}"),
        Error::NotFound(why)
        | Error::Conflict(why)
        | Error::Refused(why)
        | Error::Unavailable(why)
        | Error::TooLarge(why) => why,
    }
}

/// An entry's own problem (no usable key in it), or a failure that stops the audit.
fn entry_problem(path: &str, error: Error) -> Result<String, String> {
    match error {
        Error::Refused(why) => Ok(why.strip_prefix(path).unwrap_or(&why).trim_start().to_owned()),
        other => Err(fatal(other)),
    }
}

fn sealed(parts: Parts<'_>) -> Sealed {
    Sealed { nonce: parts.nonce.to_vec(), ciphertext: parts.ciphertext.to_vec(), tag: parts.tag.to_vec() }
}

/// Whether an envelope opens under `kek` for wallet `id`.
pub(crate) fn envelope_opens(kek: &Kek, envelope: &EnvelopeParts, id: &str) -> bool {
    let Some(dek) = kek.unwrap(&sealed(envelope.wrap()), &layout::wrap_aad(envelope.kek_version(), id))
    else {
        return false;
    };
    dek.open(&sealed(envelope.data()), &layout::data_aad(id)).is_some()
}

/// Whether a legacy ciphertext opens under `kek`.
pub(crate) fn legacy_opens(kek: &Kek, legacy: &LegacyParts) -> bool {
    kek.open(&sealed(legacy.parts()), b"").is_some()
}

impl Keys {
    pub(crate) fn load(key_path: &str) -> Result<Keys, String> {
        let mut keys = Keys {
            current: None,
            archived: BTreeMap::new(),
            seed: Vec::new(),
            broken: Vec::new(),
            from_history: BTreeMap::new(),
        };
        match key_reader::current(key_path) {
            Ok(Some(kek)) => {
                let version = kek.version();
                let created_time = key_reader::metadata(key_path)
                    .map_err(fatal)?
                    .and_then(|m| m.versions.into_iter().find(|v| v.version == u64::from(version)))
                    .map(|v| v.created_time)
                    .unwrap_or_default();
                keys.current = Some(Current { version, created_time, kek });
            }
            Ok(None) => {}
            Err(error) => keys.broken.push((key_path.to_owned(), entry_problem(key_path, error)?)),
        }
        let folder = format!("{key_path}-archive/");
        let mut seed = Vec::new();
        for entry in key_reader::archive_entries(key_path).map_err(fatal)? {
            let path = format!("{folder}{}", entry.name);
            let version = entry.name.strip_prefix('v').and_then(|v| v.parse::<u32>().ok());
            let Some(version) = version else {
                if let Ok(stamp) = entry.name.parse::<u64>() {
                    seed.push((stamp, entry.name));
                }
                continue;
            };
            match key_reader::archived(key_path, &entry.name) {
                Ok(Some(kek)) => {
                    keys.archived.insert(version, kek);
                }
                Ok(None) => keys.broken.push((path, "is listed but has no readable version".into())),
                Err(error) => keys.broken.push((path.clone(), entry_problem(&path, error)?)),
            }
        }
        seed.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (_, name) in seed {
            let path = format!("{folder}{name}");
            match key_reader::archived(key_path, &name) {
                Ok(Some(kek)) => keys.seed.push(kek),
                Ok(None) => {}
                Err(error) => keys.broken.push((path.clone(), entry_problem(&path, error)?)),
            }
        }
        Ok(keys)
    }

    /// KEK `version` and whether it came from KV's version history only (not archived).
    pub(crate) fn get(&mut self, key_path: &str, version: u32) -> Result<Option<(&Kek, bool)>, String> {
        if let Some(current) = self.current.as_ref().filter(|c| c.version == version) {
            return Ok(Some((&current.kek, false)));
        }
        if self.archived.contains_key(&version) {
            return Ok(self.archived.get(&version).map(|kek| (kek, false)));
        }
        if !self.from_history.contains_key(&version) {
            let found = key_reader::version(key_path, version).map_err(fatal)?.map(|(kek, _)| kek);
            self.from_history.insert(version, found);
        }
        Ok(self.from_history[&version].as_ref().map(|kek| (kek, true)))
    }

    /// Every key a legacy ciphertext may be under: the current KEK, rotor's archive newest
    /// first, the seed's archives newest first.
    pub(crate) fn legacy_candidates(&self) -> impl Iterator<Item = &Kek> {
        self.current.iter().map(|c| &c.kek).chain(self.archived.values().rev()).chain(self.seed.iter())
    }
}
