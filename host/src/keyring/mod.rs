//! The KEKs of one key path as Vault keeps them, held by the host: components reach them only
//! as handles (`capabilities::keys`), and the host opens every wallet a write replaces with
//! them to check the write (`capabilities::wallet_store`).
//!
//! Layout, relative to the KV mount (`key-path` is `ibn/encryption-key` by default):
//! * `<key-path>`, field `key`: the current KEK, 64 hex characters. Its KV version number is the
//!   KEK version that `rotor:v<K>:` ciphertexts name.
//! * `<key-path>-archive/v<K>`, fields `key` and `kek_version`: every KEK version rotor has
//!   written or rotated away from, kept explicitly because KV v2 drops versions beyond its
//!   `max_versions` (10 by default).
//! * `<key-path>-archive/<unix-ms>`, field `key`: the seed script's archives of old KEKs.
//!
//! Over 500 lines on purpose: reading, storing, archiving, destroying (with its checks) and
//! opening rows are one key ring's operations on one cache of versions; the receipt types live
//! in `receipt.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rotor_codec::{Decoded, Format, Kek, Plaintext};
use zeroize::Zeroizing;

use crate::store::Database;

mod derive;
mod handles;
mod receipt;
mod staged;
pub use self::derive::{Derivation, DerivedFrom};
pub use self::handles::{DataKeyHandle, HeldKek, KekHandle, SecretHandle};
pub use self::receipt::{DestroyedKek, fingerprint};
pub use self::staged::StagedKek;
use crate::vault::{KvBackend, KvData, KvMetadata, KvSecret, VaultError};

/// Field that holds the hex KEK, in the current path and in archives.
const KEY_FIELD: &str = "key";

/// Why a key operation failed. Texts name paths and versions, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The command's grant does not cover it.
    #[error("{0}")]
    Denied(String),
    /// Vault does not have it.
    #[error("{0}")]
    NotFound(String),
    /// Vault changed under the operation, or an archive holds another key.
    #[error("{0}")]
    Conflict(String),
    /// A check refused it.
    #[error("{0}")]
    Refused(String),
    /// Vault is unreachable, sealed, or refused the token.
    #[error("{0}")]
    Unavailable(String),
}

impl KeyError {
    fn vault(path: &str, error: VaultError) -> KeyError {
        let message = format!("{path}: {error}");
        match error {
            VaultError::PermissionDenied { .. } | VaultError::ReadOnly { .. } => KeyError::Denied(message),
            VaultError::CasMismatch { .. } => KeyError::Conflict(message),
            _ => KeyError::Unavailable(message),
        }
    }
}

/// The KEKs of one key path, read from Vault as they are first needed.
pub struct KeyRing {
    kv: KvBackend,
    key_path: String,
    /// The current version as last read from Vault.
    current: Option<u32>,
    /// Versions read so far; `None`: Vault has neither an archive nor a KV version of it.
    versions: BTreeMap<u32, Option<HeldKek>>,
    /// The seed's timestamped archives, newest first, once read.
    seed: Option<Vec<HeldKek>>,
    /// The key the operator handed `migrate-kek`, the only one `import_given` stores.
    given: Option<Arc<Kek>>,
    /// Keys a legacy wallet may be under, newest first, once read; and the one that opened the
    /// last legacy wallet.
    legacy: Option<Vec<HeldKek>>,
    legacy_hit: usize,
    /// Where new versions are derived from, if rotor.toml derives them (`derive.rs`).
    derivation: Option<Derivation>,
    /// Root versions read so far, for derived versions (`derive.rs`). Behind a lock because
    /// records are read through `&self`.
    root_keys: std::sync::Mutex<BTreeMap<u32, Arc<Kek>>>,
}

/// Takes the KEK out of a secret's data.
fn kek_of(path: &str, mut secret: KvSecret) -> Result<Kek, KeyError> {
    let value = secret
        .data
        .remove(KEY_FIELD)
        .ok_or_else(|| KeyError::Refused(format!("{path} has no field `{KEY_FIELD}`")))?;
    Kek::from_hex(value.trim()).map_err(|e| {
        KeyError::Refused(format!(
            "{path} field `{KEY_FIELD}` is not a KEK ({e}); it must be 64 hex characters"
        ))
    })
}

impl KeyRing {
    /// The KEKs at `key_path` in `kv`.
    pub fn new(kv: KvBackend, key_path: &str) -> KeyRing {
        KeyRing {
            kv,
            key_path: key_path.to_owned(),
            current: None,
            versions: BTreeMap::new(),
            seed: None,
            given: None,
            legacy: None,
            legacy_hit: 0,
            derivation: None,
            root_keys: std::sync::Mutex::default(),
        }
    }

    /// Where the KEKs are read and written.
    pub fn kv(&self) -> &KvBackend {
        &self.kv
    }

    /// The key path.
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    /// `migrate-kek`: the key from the operator that [`KeyRing::import_given`] may store.
    pub fn set_given(&mut self, kek: Kek) {
        self.given = Some(Arc::new(kek));
    }

    /// `<key-path>-archive/v<version>`.
    pub fn archive_path(&self, version: u32) -> String {
        format!("{}-archive/v{version}", self.key_path)
    }

    fn archive_folder(&self) -> String {
        format!("{}-archive/", self.key_path)
    }

    async fn read(&self, path: &str, version: Option<u64>) -> Result<Option<KvSecret>, KeyError> {
        self.kv.read(path, version).await.map_err(|e| KeyError::vault(path, e))
    }

    /// Reads the current KEK from Vault (every call: another rotor may have stored one).
    pub async fn current(&mut self) -> Result<Option<HeldKek>, KeyError> {
        let Some(secret) = self.read(&self.key_path, None).await? else {
            self.current = None;
            return Ok(None);
        };
        let version = u32::try_from(secret.version).map_err(|_| {
            KeyError::Refused(format!(
                "{} is at version {}, beyond rotor's range",
                self.key_path, secret.version
            ))
        })?;
        let (kek, derived) = self.kek_in(&self.key_path, secret).await?;
        let held = HeldKek { version, kek, from_history: false, draft: false, derived };
        self.current = Some(version);
        self.versions.entry(version).or_insert_with(|| Some(held.clone()));
        Ok(Some(held))
    }

    /// The current version, from Vault if it was not read yet.
    pub async fn current_version(&mut self) -> Result<Option<u32>, KeyError> {
        match self.current {
            Some(version) => Ok(Some(version)),
            None => Ok(self.current().await?.map(|held| held.version)),
        }
    }

    /// KEK `version`: from rotor's archive, else from the KV version history, else the staged
    /// KEK if that is the version it will have; `None` if Vault has it nowhere.
    pub async fn version(&mut self, version: u32) -> Result<Option<HeldKek>, KeyError> {
        if let Some(held) = self.versions.get(&version) {
            return Ok(held.clone());
        }
        let archived = self.archive_path(version);
        let held = match self.read(&archived, None).await? {
            Some(secret) => {
                let (kek, derived) = self.kek_in(&archived, secret).await?;
                Some(HeldKek { version, kek, from_history: false, draft: false, derived })
            }
            None => match self.read(&self.key_path, Some(version.into())).await? {
                Some(secret) => {
                    let (kek, derived) = self.kek_in(&self.key_path, secret).await?;
                    Some(HeldKek { version, kek, from_history: true, draft: false, derived })
                }
                None => self.staged_version(version).await?,
            },
        };
        self.versions.insert(version, held.clone());
        Ok(held)
    }

    async fn require(&mut self, version: u32) -> Result<HeldKek, KeyError> {
        self.version(version).await?.ok_or_else(|| {
            KeyError::NotFound(format!(
                "KEK version {version} is neither in {} nor in the version history of {}",
                self.archive_path(version),
                self.key_path
            ))
        })
    }

    /// The names in the archive folder.
    pub async fn archive_entries(&self) -> Result<Vec<String>, KeyError> {
        let folder = self.archive_folder();
        self.kv.list(&folder).await.map_err(|e| KeyError::vault(&folder, e))
    }

    /// The key archived under `name` in the archive folder; `None` if the entry is gone.
    pub async fn archived(&self, name: &str) -> Result<Option<Arc<Kek>>, KeyError> {
        if name.contains('/') {
            return Err(KeyError::Denied(format!("{name:?} is not an entry of {}", self.archive_folder())));
        }
        let path = format!("{}{name}", self.archive_folder());
        match self.read(&path, None).await? {
            Some(secret) => Ok(Some(self.kek_in(&path, secret).await?.0)),
            None => Ok(None),
        }
    }

    /// The seed's timestamped archives, newest first.
    pub async fn seed_archives(&mut self) -> Result<Vec<HeldKek>, KeyError> {
        if let Some(seed) = &self.seed {
            return Ok(seed.clone());
        }
        let mut stamps: Vec<u64> =
            self.archive_entries().await?.iter().filter_map(|n| n.parse().ok()).collect();
        stamps.sort_unstable_by(|a, b| b.cmp(a));
        let mut seed = Vec::with_capacity(stamps.len());
        for stamp in stamps {
            if let Some(kek) = self.archived(&stamp.to_string()).await? {
                seed.push(HeldKek { version: 0, kek, from_history: false, draft: false, derived: None });
            }
        }
        self.seed = Some(seed.clone());
        Ok(seed)
    }

    /// The KEK's version history, without keys.
    pub async fn metadata(&self) -> Result<Option<KvMetadata>, KeyError> {
        self.kv.metadata(&self.key_path).await.map_err(|e| KeyError::vault(&self.key_path, e))
    }

    /// Copies KEK `version` as read here to `<key-path>-archive/v<version>`. Idempotent;
    /// `Conflict` if the archive holds another key.
    pub async fn archive(&mut self, version: u32) -> Result<(), KeyError> {
        let held = self.require(version).await?;
        if held.draft {
            return Err(KeyError::Refused(format!("KEK v{version} is a dry run's and is never stored")));
        }
        let path = self.archive_path(version);
        let mut data = held.stored_form();
        data.insert("kek_version".to_owned(), Zeroizing::new(version.to_string()));
        match self.kv.write(&path, &data, Some(0)).await {
            Ok(_) => Ok(()),
            Err(VaultError::CasMismatch { .. }) => {
                let stored = self.read(&path, None).await?;
                let stored =
                    stored.ok_or_else(|| KeyError::Conflict(format!("{path} exists but cannot be read")))?;
                if self.kek_in(&path, stored).await?.0 == held.kek {
                    Ok(())
                } else {
                    Err(KeyError::Conflict(format!(
                        "{path} holds a different key than KEK version {version}: refusing to go on; \
                         inspect the archive before rotating"
                    )))
                }
            }
            Err(e) => Err(KeyError::vault(&path, e)),
        }
    }

    /// Stores the next KEK version with check-and-set on `expected_current` and archives it: the
    /// staged key if one is (`rotor promote`), else a fresh key from the host's CSPRNG, or for a
    /// rollback the key of version `restore`.
    pub async fn create_next(
        &mut self,
        expected_current: u32,
        restore: Option<u32>,
    ) -> Result<HeldKek, KeyError> {
        // Readers already take a staged key as the next version: that number is its.
        let staged = self.next_from_stage(expected_current, restore).await?;
        // A rollback stores the restored version's key, or its record: the same key either way.
        let (kek, derived) = match (restore, &staged) {
            (_, Some(staged)) => (staged.kek.clone(), staged.derived.clone()),
            (Some(version), None) => {
                let restored = self.require(version).await?;
                (restored.kek, restored.derived)
            }
            (None, None) => self.fresh().await?,
        };
        let path = self.key_path.clone();
        let held = HeldKek { version: 0, kek, from_history: false, draft: false, derived };
        let data = held.stored_form();
        let written = match self.kv.write(&path, &data, Some(expected_current.into())).await {
            Ok(version) => version,
            Err(VaultError::CasMismatch { .. }) => {
                return Err(KeyError::Conflict(format!(
                    "{path} changed in Vault while the rotation was starting (another writer?); nothing \
                     was moved: run `rotor rotate` again to resume"
                )));
            }
            Err(e) => return Err(KeyError::vault(&path, e)),
        };
        let version = u32::try_from(written).map_err(|_| {
            KeyError::Refused(format!("{path} reached version {written}, beyond rotor's range"))
        })?;
        let held = HeldKek { version, ..held };
        self.versions.insert(version, Some(held.clone()));
        self.current = Some(version);
        self.legacy = None;
        self.archive(version).await?;
        if staged.is_some() {
            self.clear_promoted_stage().await;
        }
        tracing::info!(path, version, promoted = staged.is_some(), "stored a new KEK version");
        Ok(held)
    }

    /// A KEK that is never stored, numbered as the next version: a dry run's.
    pub async fn draft(&mut self, restore: Option<u32>) -> Result<HeldKek, KeyError> {
        let current = self.current_version().await?.unwrap_or(0);
        let kek = match restore {
            Some(version) => self.require(version).await?.kek,
            None => Arc::new(Kek::generate().map_err(|e| KeyError::Refused(e.to_string()))?),
        };
        Ok(HeldKek { version: current + 1, kek, from_history: false, draft: true, derived: None })
    }

    /// Stores the operator's key (`migrate-kek`) as the first KEK; if the same key is current
    /// already, writes nothing. Returns its version.
    /// With `[tenants] derive-from` too: the key the application already has is stored as it
    /// is, since the legacy rows are under it; the versions rotations add are derived.
    pub async fn import_given(&mut self) -> Result<u32, KeyError> {
        let Some(given) = self.given.clone() else {
            return Err(KeyError::Denied("this command was given no KEK to import".into()));
        };
        let path = self.key_path.clone();
        let data = KvData::from([(KEY_FIELD.to_owned(), given.to_hex())]);
        match self.kv.write(&path, &data, Some(0)).await {
            Ok(written) => {
                let version = u32::try_from(written)
                    .map_err(|_| KeyError::Refused(format!("{path} reached version {written}")))?;
                self.versions.insert(
                    version,
                    Some(HeldKek { version, kek: given, from_history: false, draft: false, derived: None }),
                );
                self.current = Some(version);
                Ok(version)
            }
            Err(VaultError::CasMismatch { .. }) => {
                let current = self.current().await?.ok_or_else(|| {
                    KeyError::Conflict(format!("{path} exists but has no readable version"))
                })?;
                if *current.kek == *given {
                    Ok(current.version)
                } else {
                    Err(KeyError::Conflict(format!(
                        "a different KEK is already stored at {path} (version {}): refusing to overwrite it",
                        current.version
                    )))
                }
            }
            Err(e) => Err(KeyError::vault(&path, e)),
        }
    }

    /// After a component reported `migrate-kek` done at `version`: `Ok` only if Vault's current
    /// KEK is that version, holds the operator's key, and is archived with the same key. The
    /// host does not take the component's word for it.
    pub async fn confirm_import(&mut self, version: u32) -> Result<(), KeyError> {
        let given =
            self.given.clone().ok_or_else(|| KeyError::Denied("no KEK was given to import".into()))?;
        let refused = |why: String| Err(KeyError::Refused(format!("the import is not done: {why}")));
        match self.current().await? {
            Some(current) if current.version == version && *current.kek == *given => {}
            Some(current) if current.version == version => {
                return refused(format!("{} v{version} holds another key than the one given", self.key_path));
            }
            Some(current) => {
                return refused(format!(
                    "the component reported version {version}, but {} is at v{}",
                    self.key_path, current.version
                ));
            }
            None => return refused(format!("{} holds no KEK", self.key_path)),
        }
        match self.archived(&format!("v{version}")).await? {
            Some(archived) if *archived == *given => Ok(()),
            Some(_) => refused(format!("{} holds another key", self.archive_path(version))),
            None => refused(format!("{} was not written", self.archive_path(version))),
        }
    }

    /// Destroys KEK `version` for good: its KV version and its archive entry. Refused while it
    /// is current, while a rotation is unfinished, and while any wallet names it or wallets
    /// exist that name no version (legacy, or not text), whatever a component says. Returns
    /// what a receipt records of it.
    pub async fn destroy(&mut self, version: u32, database: &Database) -> Result<DestroyedKek, KeyError> {
        let checked = self.check_destroy(version, database).await?;
        if checked.in_kv {
            self.kv
                .destroy_versions(&self.key_path, &[u64::from(version)])
                .await
                .map_err(|e| KeyError::vault(&self.key_path, e))?;
        }
        if checked.archived {
            let path = self.archive_path(version);
            self.kv.delete_all(&path).await.map_err(|e| KeyError::vault(&path, e))?;
        }
        self.versions.remove(&version);
        tracing::info!(path = self.key_path, version, "destroyed a KEK version no wallet names");
        Ok(checked.receipt)
    }

    /// Every check [`KeyRing::destroy`] makes, and what it would record, with nothing
    /// destroyed: what `rotor prune --dry-run` answers.
    pub async fn rehearse_destroy(
        &mut self,
        version: u32,
        database: &Database,
    ) -> Result<DestroyedKek, KeyError> {
        Ok(self.check_destroy(version, database).await?.receipt)
    }

    async fn check_destroy(&mut self, version: u32, database: &Database) -> Result<DestroyCheck, KeyError> {
        let refuse = |why: String| Err(KeyError::Refused(format!("KEK v{version} was not destroyed: {why}")));
        if self.current().await?.is_some_and(|current| current.version == version) {
            return refuse("it is the current KEK".into());
        }
        let db_error = |e: crate::store::StoreError| KeyError::Unavailable(format!("the database: {e}"));
        if let Some(rotation) = database.unfinished_rotation().await.map_err(db_error)? {
            return refuse(format!("rotation #{} is unfinished and may still need it", rotation.id));
        }
        // Every table under this KEK: a version another table's rows name is not free. The
        // receipt records each table's count, which is 0 once the check lets it through.
        let mut rows = BTreeMap::new();
        let this_version = version.to_string();
        for (table, counts) in database.version_counts_by_target().await.map_err(db_error)? {
            let table = table.table;
            for (named, &count) in counts.iter().filter(|(_, count)| **count > 0) {
                if named == "legacy" || named == "not-text" {
                    return refuse(format!(
                        "{count} row(s) of table `{table}` name no KEK version ({named}): any KEK may be \
                         theirs. {QUARANTINE_HINT}"
                    ));
                }
                if *named == this_version {
                    return refuse(format!(
                        "{count} row(s) of table `{table}` still name it. {QUARANTINE_HINT}"
                    ));
                }
            }
            rows.insert(table, 0);
        }
        let mut quarantined = BTreeMap::new();
        for (table, counts) in database.quarantined_counts_by_target().await.map_err(db_error)? {
            if let Some(&count) = counts.get(&this_version) {
                quarantined.insert(table, count);
            }
        }
        let in_kv = self
            .metadata()
            .await?
            .is_some_and(|m| m.versions.iter().any(|v| v.version == u64::from(version) && !v.destroyed));
        let archived = self.archive_entries().await?.contains(&format!("v{version}"));
        if !in_kv && !archived {
            return Err(KeyError::NotFound(format!(
                "KEK v{version} is neither in the version history of {} nor in its archive: nothing to destroy",
                self.key_path
            )));
        }
        // Read before it is gone: the receipt names the key by its fingerprint.
        let fingerprint = self.version(version).await?.map(|held| fingerprint(&held.kek));
        Ok(DestroyCheck {
            in_kv,
            archived,
            receipt: DestroyedKek { version, fingerprint, rows, quarantined },
        })
    }

    /// Opens a stored wallet with the KEKs Vault has, as rotor's formats say: an envelope with
    /// the version it names, a legacy ciphertext with each candidate in turn (current, rotor's
    /// archive newest first, the seed's archives). The format and the plaintext, or why not.
    pub async fn open_row(&mut self, id: &str, ciphertext: &str) -> Result<(Format, Plaintext), KeyError> {
        let unopenable = |why: String| KeyError::Refused(why);
        // Decoded once, however many keys a legacy row is tried with.
        let decoded = Decoded::parse(ciphertext).map_err(|e| unopenable(e.to_string()))?;
        let format = decoded.format();
        match format {
            Format::Envelope { kek_version } => {
                let held = self.version(kek_version).await?.ok_or_else(|| {
                    unopenable(format!("it names KEK version {kek_version}, which Vault does not have"))
                })?;
                let plaintext = decoded.open(&held.kek, id).map_err(|e| unopenable(e.to_string()))?;
                Ok((format, plaintext))
            }
            Format::Legacy => {
                if self.legacy.is_none() {
                    self.legacy = Some(self.legacy_candidates().await?);
                }
                let candidates = self.legacy.as_deref().unwrap_or_default();
                // Legacy wallets are mostly under one key: the last one that opened goes first.
                let order = std::iter::once(self.legacy_hit).chain(0..candidates.len());
                for index in order.filter(|&i| i < candidates.len()) {
                    if let Ok(plaintext) = decoded.open(&candidates[index].kek, id) {
                        self.legacy_hit = index;
                        return Ok((format, plaintext));
                    }
                }
                Err(unopenable("a legacy ciphertext that opens under none of the KEKs Vault has".into()))
            }
        }
    }

    /// Every key a legacy ciphertext may be under, newest first.
    async fn legacy_candidates(&mut self) -> Result<Vec<HeldKek>, KeyError> {
        let mut candidates: Vec<HeldKek> = self.current().await?.into_iter().collect();
        let mut archived: Vec<u32> = self
            .archive_entries()
            .await?
            .iter()
            .filter_map(|name| name.strip_prefix('v')?.parse().ok())
            .collect();
        archived.sort_unstable_by(|a, b| b.cmp(a));
        for version in archived {
            if let Some(held) = self.version(version).await? {
                candidates.push(held);
            }
        }
        candidates.extend(self.seed_archives().await?);
        Ok(candidates)
    }
}

/// What a refusal to destroy because of rows says about the rows that cannot be moved.
pub const QUARANTINE_HINT: &str = "`rotor rotate` moves the rows that open; `rotor quarantine --dry-run` \
     lists those that open under no key, and `rotor quarantine` sets them aside so that they stop \
     blocking this";

/// What [`KeyRing::destroy`]'s checks found: where the version is kept, and the receipt's entry.
struct DestroyCheck {
    /// In the KV version history, not yet destroyed there.
    in_kv: bool,
    /// In rotor's archive.
    archived: bool,
    receipt: DestroyedKek,
}
