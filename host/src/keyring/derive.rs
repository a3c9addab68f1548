//! Tenant KEKs derived from one root KEK (`[tenants] derive-from` in rotor.toml), the shape of
//! AWS's hierarchical keyring: Vault holds one root key, and each tenant's KEK versions are
//! HKDF-SHA256 of a root version, a fresh salt and the tenant's name.
//!
//! A derived version is kept where a stored key would be (the tenant's key path, its archive,
//! its staged copy), as the record that derives it: fields `derive` (`hkdf-sha256`),
//! `root-path`, `root-version` and `salt`. So every other part of the key ring (versions,
//! archives, staging, destruction with receipts) is the same for both kinds, and:
//! * rotating one tenant writes a new record with a new salt under the root's current version,
//!   touching no other tenant and not the root;
//! * destroying a tenant's version destroys its record: with the salt gone, the root alone
//!   cannot give that key back;
//! * a tenant's KEK never sits in Vault; a reader with `read` on the root derives it.
//!
//! The root is a key ring of its own at `root-path` (current version and `-archive/v<K>`, as
//! rotor keeps any KEK), created with the first derived version. A record names its root
//! version, so a new root version (`rotor rotate --new-root`) changes only what later
//! rotations derive from.

use std::sync::Arc;

use rotor_codec::{KEY_LEN, Kek};
use zeroize::Zeroizing;

use super::{HeldKek, KEY_FIELD, KeyError, KeyRing, kek_of};
use crate::vault::{KvData, KvSecret, VaultError};

/// The field that marks a derived version, and its one value.
const DERIVE_FIELD: &str = "derive";
const HKDF_SHA256: &str = "hkdf-sha256";
const ROOT_PATH_FIELD: &str = "root-path";
const ROOT_VERSION_FIELD: &str = "root-version";
const SALT_FIELD: &str = "salt";

/// Where a tenant's KEKs are derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivation {
    /// The root KEK's path inside the KV mount.
    pub root_path: String,
    /// The tenant's name: HKDF's context, so no two tenants share a key.
    pub tenant: String,
}

impl Derivation {
    /// HKDF's `info`: a label for what the key is, then the tenant's name.
    fn info(&self) -> Vec<u8> {
        [b"rotor tenant KEK v1\0".as_slice(), self.tenant.as_bytes()].concat()
    }
}

/// What Vault keeps of a derived KEK version in place of its key. Nothing in it is secret
/// without the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedFrom {
    /// The root's key path.
    pub root_path: String,
    /// The root version it is derived from.
    pub root_version: u32,
    /// HKDF's salt, fresh for each version.
    salt: [u8; KEY_LEN],
}

impl DerivedFrom {
    /// The record's fields, as Vault stores them.
    pub(super) fn to_data(&self) -> KvData {
        KvData::from([
            (DERIVE_FIELD.to_owned(), Zeroizing::new(HKDF_SHA256.to_owned())),
            (ROOT_PATH_FIELD.to_owned(), Zeroizing::new(self.root_path.clone())),
            (ROOT_VERSION_FIELD.to_owned(), Zeroizing::new(self.root_version.to_string())),
            (SALT_FIELD.to_owned(), Zeroizing::new(hex::encode(self.salt))),
        ])
    }

    /// The record in `data` read from `path`; `None` if `data` holds a key instead.
    fn from_data(path: &str, data: &KvData) -> Result<Option<DerivedFrom>, KeyError> {
        let Some(kind) = data.get(DERIVE_FIELD) else {
            return Ok(None);
        };
        let bad = |what: &str| {
            KeyError::Refused(format!(
                "{path} is a derived KEK record, but its `{what}` is missing or malformed; it was not \
                 written by rotor"
            ))
        };
        if kind.as_str() != HKDF_SHA256 {
            return Err(KeyError::Refused(format!(
                "{path} derives its KEK by {:?}, which rotor does not know (it writes `{HKDF_SHA256}`)",
                kind.as_str()
            )));
        }
        let root_path =
            data.get(ROOT_PATH_FIELD).filter(|p| !p.is_empty()).ok_or_else(|| bad(ROOT_PATH_FIELD))?;
        let root_version = data
            .get(ROOT_VERSION_FIELD)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| bad(ROOT_VERSION_FIELD))?;
        let mut salt = [0u8; KEY_LEN];
        let text = data.get(SALT_FIELD).ok_or_else(|| bad(SALT_FIELD))?;
        hex::decode_to_slice(text.as_str(), &mut salt).map_err(|_| bad(SALT_FIELD))?;
        Ok(Some(DerivedFrom { root_path: root_path.to_string(), root_version, salt }))
    }
}

/// A KEK as rotor reads or makes it: the key, and the record that derives it if it is derived.
pub(super) type Keyed = (Arc<Kek>, Option<Arc<DerivedFrom>>);

impl HeldKek {
    /// What Vault keeps of this KEK: its record if it is derived, else its key.
    pub(super) fn stored_form(&self) -> KvData {
        match &self.derived {
            Some(record) => record.to_data(),
            None => KvData::from([(KEY_FIELD.to_owned(), self.kek.to_hex())]),
        }
    }
}

impl KeyRing {
    /// These KEKs derived from a root (`[tenants] derive-from`): versions rotor writes from
    /// now on are records, and every derived record must name this root. Versions stored as
    /// keys (written before the setting) still read as they are.
    pub fn with_derivation(mut self, derivation: Derivation) -> KeyRing {
        self.derivation = Some(derivation);
        self
    }

    /// The root's own key ring.
    fn root_ring(&self, derivation: &Derivation) -> KeyRing {
        KeyRing::new(self.kv.clone(), &derivation.root_path)
    }

    /// The KEK in `secret`, read from `path`: its key, or derived from the root its record
    /// names.
    pub(super) async fn kek_in(&self, path: &str, secret: KvSecret) -> Result<Keyed, KeyError> {
        let Some(record) = DerivedFrom::from_data(path, &secret.data)? else {
            return Ok((Arc::new(kek_of(path, secret)?), None));
        };
        let derivation = match &self.derivation {
            Some(derivation) if derivation.root_path == record.root_path => derivation,
            Some(derivation) => {
                return Err(KeyError::Refused(format!(
                    "{path} is derived from the root KEK at {}, but rotor.toml derives these KEKs from {}: \
                     refusing a root it was not given",
                    record.root_path, derivation.root_path
                )));
            }
            None => {
                return Err(KeyError::Refused(format!(
                    "{path} is derived from the root KEK at {}, but rotor.toml's [tenants] names no \
                     `derive-from`: add it (derive-from = \"{}\") to read these KEKs",
                    record.root_path, record.root_path
                )));
            }
        };
        let root = self.root_version(derivation, record.root_version).await.map_err(|e| match e {
            KeyError::NotFound(why) => KeyError::NotFound(format!(
                "{path} is derived from a root version Vault does not have: {why}"
            )),
            other => other,
        })?;
        let kek = root.derive(&record.salt, &derivation.info());
        Ok((Arc::new(kek), Some(Arc::new(record))))
    }

    /// Root version `version`, from the root's archive or its KV history. (Not the root ring's
    /// [`KeyRing::version`]: a root holds keys, never records, and reading it so would make
    /// reading a record recursive.)
    async fn root_version(&self, derivation: &Derivation, version: u32) -> Result<Arc<Kek>, KeyError> {
        // Every tenant version under one root version derives from the same key: read it once.
        if let Some(kek) = self.root_keys.lock().unwrap_or_else(|e| e.into_inner()).get(&version) {
            return Ok(kek.clone());
        }
        let kek = self.read_root_version(derivation, version).await?;
        self.root_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(version, kek.clone());
        Ok(kek)
    }

    /// [`KeyRing::root_version`] from Vault.
    async fn read_root_version(&self, derivation: &Derivation, version: u32) -> Result<Arc<Kek>, KeyError> {
        let root = self.root_ring(derivation);
        let archived = root.archive_path(version);
        if let Some(secret) = root.read(&archived, None).await? {
            return Ok(Arc::new(kek_of(&archived, secret)?));
        }
        match root.read(&root.key_path, Some(version.into())).await? {
            Some(secret) => Ok(Arc::new(kek_of(&root.key_path, secret)?)),
            None => Err(KeyError::NotFound(format!(
                "root KEK version {version} is neither in {archived} nor in the version history of {}",
                root.key_path
            ))),
        }
    }

    /// A new KEK for the next version: from the host's CSPRNG, or derived from the root's
    /// current version (created first if Vault has none) with a fresh salt.
    pub(super) async fn fresh(&self) -> Result<Keyed, KeyError> {
        let random = || Kek::generate().map_err(|e| KeyError::Refused(e.to_string()));
        let Some(derivation) = &self.derivation else {
            return Ok((Arc::new(random()?), None));
        };
        let mut root_ring = self.root_ring(derivation);
        let root = match root_ring.current().await? {
            Some(root) => root,
            None => root_ring.store_root(None).await?,
        };
        let mut salt = [0u8; KEY_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| KeyError::Refused(format!("no randomness for a salt: {e}")))?;
        let record =
            DerivedFrom { root_path: derivation.root_path.clone(), root_version: root.version, salt };
        let kek = root.kek.derive(&record.salt, &derivation.info());
        Ok((Arc::new(kek), Some(Arc::new(record))))
    }

    /// Stores a new root KEK after version `after` (check-and-set), none for the first, and
    /// archives it. If another rotor stored the first one meanwhile, that one is the root. (Not
    /// [`KeyRing::create_next`]: a root is never staged, and its readers need no grant there.)
    async fn store_root(&mut self, after: Option<u32>) -> Result<HeldKek, KeyError> {
        let kek = Kek::generate().map_err(|e| KeyError::Refused(e.to_string()))?;
        let data = KvData::from([(KEY_FIELD.to_owned(), kek.to_hex())]);
        let path = self.key_path.clone();
        match self.kv.write(&path, &data, Some(after.unwrap_or(0).into())).await {
            Ok(_) => {}
            Err(VaultError::CasMismatch { .. }) if after.is_none() => {}
            Err(VaultError::CasMismatch { .. }) => {
                return Err(KeyError::Conflict(format!(
                    "{path} changed while a new root KEK was being stored (another rotor?): run it again"
                )));
            }
            Err(e) => return Err(KeyError::vault(&path, e)),
        }
        let root = self
            .current()
            .await?
            .ok_or_else(|| KeyError::Conflict(format!("{path} was just written but holds no KEK")))?;
        self.archive(root.version).await?;
        tracing::info!(path, version = root.version, "stored a root KEK version");
        Ok(root)
    }

    /// `rotor rotate --new-root`: a new root version, from which every later rotation of any
    /// tenant derives. Versions derived from older roots still open: their records name their
    /// root version, which stays archived.
    pub async fn new_root(&self) -> Result<HeldKek, KeyError> {
        let derivation = self.derivation.as_ref().ok_or_else(|| {
            KeyError::Refused("--new-root: rotor.toml's [tenants] names no `derive-from` root".into())
        })?;
        let mut root_ring = self.root_ring(derivation);
        let current = root_ring.current().await?.map(|root| root.version);
        root_ring.store_root(current).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_bad_one_is_named() {
        let record = DerivedFrom { root_path: "ibn/root".into(), root_version: 3, salt: [7; KEY_LEN] };
        let data = record.to_data();
        assert_eq!(DerivedFrom::from_data("p", &data).unwrap(), Some(record.clone()));
        let key_only = KvData::from([(KEY_FIELD.to_owned(), Zeroizing::new("ab".repeat(32)))]);
        assert_eq!(DerivedFrom::from_data("p", &key_only).unwrap(), None);
        for (field, value, named) in [
            (DERIVE_FIELD, "pbkdf2", "pbkdf2"),
            (ROOT_VERSION_FIELD, "0", ROOT_VERSION_FIELD),
            (ROOT_VERSION_FIELD, "x", ROOT_VERSION_FIELD),
            (SALT_FIELD, "abcd", SALT_FIELD),
            (ROOT_PATH_FIELD, "", ROOT_PATH_FIELD),
        ] {
            let mut bad = data.clone();
            bad.insert(field.to_owned(), Zeroizing::new(value.to_owned()));
            let error = DerivedFrom::from_data("ibn/acme/kek", &bad).unwrap_err().to_string();
            assert!(error.contains("ibn/acme/kek") && error.contains(named), "{error}");
        }
    }

    #[test]
    fn each_tenant_has_its_own_context() {
        let acme = Derivation { root_path: "r".into(), tenant: "acme".into() };
        let globex = Derivation { root_path: "r".into(), tenant: "globex".into() };
        assert_ne!(acme.info(), globex.info());
        assert!(acme.info().ends_with(b"\0acme"));
    }
}
