//! KEKs as handles the host holds, through the `keys` import, and opening wallets with them.
//!
//! The component never sees a key byte or a wallet's plaintext: it takes ciphertexts apart
//! (`rotor_codec::layout`), asks the host to unwrap, open, wrap or seal under a handle, and lays
//! the host's output out again. Which key opens what, and in what order they are tried, is
//! decided here.
//!
//! Layout in Vault, relative to the KV mount (`key-path` is `ibn/encryption-key` by default):
//! * `<key-path>`: the current KEK; its KV version is the version `rotor:v<K>:` names.
//! * `<key-path>-archive/v<K>`: every KEK version rotor has written or rotated away from.
//! * `<key-path>-archive/<unix-ms>`: the seed script's archives of old KEKs.

use crate::Failure;
use std::collections::{BTreeMap, BTreeSet};

use rotor_codec::CodecError;
use rotor_codec::layout::{self, EnvelopeParts, LegacyParts, Parts, Stored};

use crate::bindings::rotor::kek::key_types::{self, DataKey, Kek, Sealed, Secret};
use crate::bindings::rotor::kek::keys;

pub(crate) fn archive_folder(key_path: &str) -> String {
    format!("{key_path}-archive/")
}

pub(crate) fn archive_path(key_path: &str, version: u32) -> String {
    format!("{key_path}-archive/v{version}")
}

/// A key operation's failure, as the command's: the host's words name what failed.
pub(crate) fn key_error(error: key_types::Error) -> Failure {
    match error {
        key_types::Error::Unavailable(why) => Failure::Unavailable(why),
        key_types::Error::Conflict(why) => Failure::Inconsistent(why),
        key_types::Error::Denied(why)
        | key_types::Error::NotFound(why)
        | key_types::Error::Refused(why)
        | key_types::Error::TooLarge(why) => Failure::Refused(why),
    }
}

/// Pieces of a ciphertext, as the host's functions take them.
pub(crate) fn sealed(parts: Parts<'_>) -> Sealed {
    Sealed { nonce: parts.nonce.to_vec(), ciphertext: parts.ciphertext.to_vec(), tag: parts.tag.to_vec() }
}

/// The host's output, as the layout functions take it.
pub(crate) fn parts(sealed: &Sealed) -> Parts<'_> {
    Parts { nonce: &sealed.nonce, ciphertext: &sealed.ciphertext, tag: &sealed.tag }
}

/// Why a wallet did not open.
pub(crate) enum OpenError {
    /// The wallet's own problem (malformed, wrong key or id, its KEK version is gone): reported
    /// by id, and the row is left as it is.
    Wallet(String),
    /// Vault or the host failed: nothing is known about the wallet, so the operation stops.
    Fatal(Failure),
}

fn wallet_error(error: CodecError) -> OpenError {
    OpenError::Wallet(error.to_string())
}

/// Seals `secret` for wallet `id` as an envelope under `kek` (version `version`), with a fresh
/// data key from the host.
pub(crate) fn seal_envelope(
    kek: &Kek,
    version: u32,
    id: &str,
    secret: &Secret,
) -> Result<String, CodecError> {
    let dek = DataKey::new();
    let data = dek.seal(secret, &layout::data_aad(id));
    let wrap = kek.wrap(&dek, &layout::wrap_aad(version, id));
    layout::encode_envelope(version, parts(&wrap), parts(&data))
}

/// Seals `secret` in the seed's legacy layout, directly under `kek`.
pub(crate) fn seal_legacy(kek: &Kek, secret: &Secret) -> Result<String, CodecError> {
    layout::encode_legacy(parts(&kek.seal(secret, b"")))
}

/// Opens a legacy ciphertext under `kek`; `None` if it is not under it.
pub(crate) fn open_legacy(kek: &Kek, legacy: &LegacyParts) -> Option<Secret> {
    kek.open(&sealed(legacy.parts()), b"")
}

/// The data key an envelope naming `from_version` wraps as `wrap` under `from`, wrapped for
/// wallet `id` under `to` (version `to_version`) instead, in one call to the host; `None` if
/// it does not unwrap.
pub(crate) fn rewrap_data_key(
    from: &Kek,
    from_version: u32,
    wrap: Parts<'_>,
    to: &Kek,
    to_version: u32,
    id: &str,
) -> Option<Sealed> {
    from.rewrap(&sealed(wrap), &layout::wrap_aad(from_version, id), to, &layout::wrap_aad(to_version, id))
}

/// Opens an envelope under `kek`; a wallet error if it does not open.
pub(crate) fn open_envelope(kek: &Kek, envelope: &EnvelopeParts, id: &str) -> Result<Secret, OpenError> {
    // One call into the host: the data key never becomes a handle here.
    let wrap_aad = layout::wrap_aad(envelope.kek_version(), id);
    kek.open_envelope(&sealed(envelope.wrap()), &wrap_aad, &sealed(envelope.data()), &layout::data_aad(id))
        .ok_or_else(|| wallet_error(CodecError::Authentication))
}

/// The current KEK, its version and every older one asked for so far.
pub(crate) struct Keyring {
    key_path: String,
    current_version: u32,
    keys: BTreeMap<u32, Kek>,
    /// Versions Vault has no key for, so each is looked up once however many wallets name it.
    missing: BTreeSet<u32>,
    /// Keys a legacy wallet may be under, newest first, once asked for: rotor's archived
    /// versions, then the seed's archives.
    legacy: Option<Vec<Kek>>,
    /// Which of the current KEK (`None`) or `legacy` opened the last legacy wallet.
    legacy_hit: Option<usize>,
}

impl Keyring {
    /// The current KEK. Errors name the path and what to do if it is missing or invalid.
    pub(crate) fn load(key_path: &str) -> Result<Keyring, Failure> {
        let current = keys::current(key_path).map_err(key_error)?.ok_or_else(|| {
            format!(
                "no KEK at {key_path} in Vault: store the first one with `rotor migrate-kek --from-env VAR`"
            )
        })?;
        let current_version = current.version();
        Ok(Keyring {
            key_path: key_path.to_owned(),
            current_version,
            keys: BTreeMap::from([(current_version, current)]),
            missing: BTreeSet::new(),
            legacy: None,
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

    /// Makes a KEK this run has just had the host store (or draft, for a dry run) the current one.
    pub(crate) fn install_current(&mut self, kek: Kek) {
        let version = kek.version();
        self.keys.insert(version, kek);
        self.missing.remove(&version);
        self.current_version = version;
        self.legacy = None;
        self.legacy_hit = None;
    }

    /// Whether Vault has KEK `version` (rotor's archive, else the KV version history). `Err`
    /// only when Vault or the host fails.
    pub(crate) fn has(&mut self, version: u32) -> Result<bool, Failure> {
        if self.keys.contains_key(&version) {
            return Ok(true);
        }
        if self.missing.contains(&version) {
            return Ok(false);
        }
        match keys::version(&self.key_path, version).map_err(key_error)? {
            Some(kek) => {
                self.keys.insert(version, kek);
                Ok(true)
            }
            None => {
                self.missing.insert(version);
                Ok(false)
            }
        }
    }

    /// Loads KEK `version`, which must exist (the current one or a rotation's target).
    pub(crate) fn require(&mut self, version: u32) -> Result<(), Failure> {
        if !self.has(version)? {
            return Err(format!(
                "KEK version {version} is neither in {} nor in the version history of {}",
                archive_path(&self.key_path, version),
                self.key_path
            )
            .into());
        }
        Ok(())
    }

    /// Loads the KEK an envelope names; a wallet error if Vault has no such version.
    pub(crate) fn require_for_envelope(&mut self, kek_version: u32) -> Result<(), OpenError> {
        if !self.has(kek_version).map_err(OpenError::Fatal)? {
            return Err(OpenError::Wallet(format!(
                "names KEK version {kek_version}, which Vault does not have (neither in {} nor in \
                 the version history of {})",
                archive_path(&self.key_path, kek_version),
                self.key_path
            )));
        }
        Ok(())
    }

    /// KEK `version`, loaded before by [`Keyring::require`] or [`Keyring::has`].
    pub(crate) fn get(&self, version: u32) -> &Kek {
        &self.keys[&version]
    }

    /// Keys a legacy ciphertext may be under besides the current one: every other rotor KEK
    /// version, newest first (those in the archive, and those this run holds already: a dry
    /// run's draft displaces a current KEK that was never archived, the key a fresh deployment's
    /// wallets are under), then the seed's timestamped archives, newest first.
    fn legacy_candidates(&mut self) -> Result<&[Kek], Failure> {
        if self.legacy.is_none() {
            let folder = archive_folder(&self.key_path);
            let entries = keys::archive_entries(&self.key_path).map_err(key_error)?;
            let archived: BTreeSet<u32> =
                entries.iter().filter_map(|entry| entry.name.strip_prefix('v')?.parse().ok()).collect();
            let held = self.keys.keys().copied();
            let versions: BTreeSet<u32> = archived.iter().copied().chain(held).collect();
            let mut candidates = Vec::new();
            for version in versions.into_iter().rev().filter(|v| *v != self.current_version) {
                // A handle is not copied: the host hands out another for the same version.
                match keys::version(&self.key_path, version).map_err(key_error)? {
                    Some(kek) => candidates.push(kek),
                    None if archived.contains(&version) => {
                        return Err(format!("{folder}v{version} is listed but Vault has no such KEK").into());
                    }
                    None => {}
                }
            }
            candidates.extend(keys::seed_archives(&self.key_path).map_err(key_error)?);
            self.legacy = Some(candidates);
        }
        Ok(self.legacy.as_deref().unwrap_or_default())
    }

    /// Opens a wallet in either format: envelopes with the KEK they name, legacy ciphertexts
    /// with each candidate in turn. Returns the version it was under (0 for legacy).
    pub(crate) fn open(&mut self, id: &str, ciphertext: &str) -> Result<(u32, Secret), OpenError> {
        self.open_stored(id, &Stored::parse(ciphertext).map_err(wallet_error)?)
    }

    /// [`Keyring::open`] of a ciphertext already parsed.
    pub(crate) fn open_stored(&mut self, id: &str, stored: &Stored) -> Result<(u32, Secret), OpenError> {
        match stored {
            Stored::Envelope(envelope) => {
                let kek_version = envelope.kek_version();
                self.require_for_envelope(kek_version)?;
                Ok((kek_version, open_envelope(self.get(kek_version), envelope, id)?))
            }
            Stored::Legacy(legacy) => Ok((0, self.open_legacy(legacy)?)),
        }
    }

    /// A legacy wallet: legacy wallets are mostly under one key, so the one that opened the
    /// last goes first, which halves the work of converting them during a rotation.
    fn open_legacy(&mut self, legacy: &LegacyParts) -> Result<Secret, OpenError> {
        if let Some(hit) = self.legacy_hit {
            let kek = self.legacy.as_ref().and_then(|keys| keys.get(hit));
            if let Some(secret) = kek.and_then(|kek| open_legacy(kek, legacy)) {
                return Ok(secret);
            }
        }
        if let Some(secret) = open_legacy(self.current(), legacy) {
            self.legacy_hit = None;
            return Ok(secret);
        }
        let candidates = self.legacy_candidates().map_err(OpenError::Fatal)?;
        for (index, kek) in candidates.iter().enumerate() {
            if let Some(secret) = open_legacy(kek, legacy) {
                self.legacy_hit = Some(index);
                return Ok(secret);
            }
        }
        Err(OpenError::Wallet(
            "legacy ciphertext opens under neither the current KEK nor any archived one".into(),
        ))
    }

    /// Makes sure KEK `version` is in rotor's archive (the host copies what it read).
    pub(crate) fn archive(&mut self, version: u32) -> Result<(), Failure> {
        keys::archive(&self.key_path, version).map_err(key_error)
    }
}
