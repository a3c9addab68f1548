//! KV version 2 kept in the mount's storage: what rotor's host library reads and writes its KEKs,
//! archive, history and receipts through (its [`KvStore`]), so that a rotation run by the
//! plugin keeps every key inside OpenBao's barrier.
//!
//! One storage entry per secret, `kv/<path>`, holding all its versions: a version is written
//! by reading the entry, adding to it and putting it back, so writes take one process-wide
//! lock (OpenBao runs one plugin process per mount). Versions count from 1 and only grow; a
//! destroyed version keeps its number with its data wiped, as in KV v2.

use std::collections::BTreeMap;

use rotor::vault::{KvData, KvFuture, KvMetadata, KvSecret, KvStore, KvVersionMeta, VaultError};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zeroize::{Zeroize, Zeroizing};

use crate::request::Failure;
use crate::storage::Storage;
use crate::timestamp::now;

/// Where secrets live in the mount's storage.
const PREFIX: &str = "kv/";

/// One version of a secret as stored; its values are wiped when it is dropped.
#[derive(Serialize, Deserialize)]
struct StoredVersion {
    created_time: String,
    #[serde(default)]
    destroyed: bool,
    data: BTreeMap<String, String>,
}

impl StoredVersion {
    /// This version as `version` of a secret, its values copied into wiped-on-drop strings.
    fn secret(&self, version: u64) -> KvSecret {
        KvSecret {
            version,
            created_time: self.created_time.clone(),
            data: self.data.iter().map(|(k, v)| (k.clone(), Zeroizing::new(v.clone()))).collect(),
        }
    }
}

impl Drop for StoredVersion {
    fn drop(&mut self) {
        self.data.values_mut().for_each(Zeroize::zeroize);
    }
}

/// A secret and all its versions.
#[derive(Serialize, Deserialize, Default)]
struct StoredSecret {
    created_time: String,
    updated_time: String,
    versions: BTreeMap<u64, StoredVersion>,
}

impl StoredSecret {
    fn current_version(&self) -> u64 {
        self.versions.last_key_value().map_or(0, |(&version, _)| version)
    }

    fn add(&mut self, version: u64, data: &KvData) {
        let now = now();
        if self.versions.is_empty() {
            self.created_time = now.clone();
        }
        self.updated_time = now.clone();
        let data = data.iter().map(|(name, value)| (name.clone(), value.as_str().to_owned())).collect();
        self.versions.insert(version, StoredVersion { created_time: now, destroyed: false, data });
    }
}

/// KV v2 in the mount's storage.
pub struct MountKv {
    storage: Storage,
    writes: Mutex<()>,
}

impl std::fmt::Debug for MountKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MountKv")
    }
}

fn failed(path: &str, error: anyhow::Error) -> VaultError {
    VaultError::Store { path: path.to_owned(), reason: format!("{error:#}") }
}

impl MountKv {
    /// KV v2 over `storage`.
    pub fn new(storage: Storage) -> MountKv {
        MountKv { storage, writes: Mutex::new(()) }
    }

    /// The mount's storage, for what is not a secret (the mount's settings).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    async fn load(&self, path: &str) -> Result<Option<StoredSecret>, VaultError> {
        check(path)?;
        self.storage.get(&format!("{PREFIX}{path}")).await.map_err(|e| failed(path, e))
    }

    async fn save(&self, path: &str, secret: &StoredSecret) -> Result<(), VaultError> {
        self.storage.put(&format!("{PREFIX}{path}"), secret).await.map_err(|e| failed(path, e))
    }

    /// Every readable version of `path`, oldest first (none if there is no such secret).
    pub async fn readable_versions(&self, path: &str) -> Result<Vec<KvSecret>, VaultError> {
        let Some(secret) = self.load(path).await? else { return Ok(Vec::new()) };
        Ok(secret
            .versions
            .iter()
            .filter(|(_, stored)| !stored.destroyed)
            .map(|(&version, stored)| stored.secret(version))
            .collect())
    }

    /// Writes `data` as `version` of `path` (the next one when `None`), which must be above every
    /// version written so far: an application's existing KEK keeps the number its envelopes
    /// name. No version is numbered above `highest`. Returns the version written.
    pub async fn write_as(
        &self,
        path: &str,
        version: Option<u64>,
        highest: u64,
        data: &KvData,
    ) -> Result<u64, Failure> {
        let _turn = self.writes.lock().await;
        let mut secret = self.load(path).await.map_err(anyhow::Error::from)?.unwrap_or_default();
        let current = secret.current_version();
        let version = match version {
            Some(version) if version <= current => {
                return Err(Failure::BadRequest(format!(
                    "the key ring already holds versions up to v{current}; a version must be above it \
                     (import an application's versions oldest first)"
                )));
            }
            Some(version) => version,
            None if current >= highest => {
                return Err(Failure::BadRequest(format!(
                    "the key ring holds v{current}, the last version number there is"
                )));
            }
            None => current + 1,
        };
        secret.add(version, data);
        self.save(path, &secret).await.map_err(anyhow::Error::from)?;
        Ok(version)
    }
}

/// Refuses paths that would reach outside `kv/` or name a folder.
fn check(path: &str) -> Result<(), VaultError> {
    let bad = path.is_empty() || path.ends_with('/') || path.split('/').any(|s| s.is_empty() || s == "..");
    if bad {
        return Err(VaultError::Store { path: path.to_owned(), reason: "not a secret's path".to_owned() });
    }
    Ok(())
}

impl KvStore for MountKv {
    fn read<'a>(&'a self, path: &'a str, version: Option<u64>) -> KvFuture<'a, Option<KvSecret>> {
        Box::pin(async move {
            let Some(secret) = self.load(path).await? else { return Ok(None) };
            let version = version.unwrap_or_else(|| secret.current_version());
            Ok(secret
                .versions
                .get(&version)
                .filter(|stored| !stored.destroyed)
                .map(|stored| stored.secret(version)))
        })
    }

    fn write<'a>(&'a self, path: &'a str, data: &'a KvData, cas: Option<u64>) -> KvFuture<'a, u64> {
        Box::pin(async move {
            let _turn = self.writes.lock().await;
            let mut secret = self.load(path).await?.unwrap_or_default();
            let current = secret.current_version();
            if cas.is_some_and(|expected| expected != current) {
                return Err(VaultError::CasMismatch { path: path.to_owned() });
            }
            secret.add(current + 1, data);
            self.save(path, &secret).await?;
            Ok(current + 1)
        })
    }

    fn list<'a>(&'a self, folder: &'a str) -> KvFuture<'a, Vec<String>> {
        Box::pin(async move {
            let folder = folder.trim_end_matches('/');
            check(folder)?;
            self.storage.list(&format!("{PREFIX}{folder}/")).await.map_err(|e| failed(folder, e))
        })
    }

    fn metadata<'a>(&'a self, path: &'a str) -> KvFuture<'a, Option<KvMetadata>> {
        Box::pin(async move {
            let Some(secret) = self.load(path).await? else { return Ok(None) };
            Ok(Some(KvMetadata {
                current_version: secret.current_version(),
                oldest_version: secret.versions.first_key_value().map_or(0, |(&version, _)| version),
                max_versions: 0,
                created_time: secret.created_time.clone(),
                updated_time: secret.updated_time.clone(),
                versions: secret
                    .versions
                    .iter()
                    .map(|(&version, stored)| KvVersionMeta {
                        version,
                        created_time: stored.created_time.clone(),
                        deletion_time: String::new(),
                        destroyed: stored.destroyed,
                    })
                    .collect(),
            }))
        })
    }

    fn destroy_versions<'a>(&'a self, path: &'a str, versions: &'a [u64]) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let _turn = self.writes.lock().await;
            let Some(mut secret) = self.load(path).await? else { return Ok(()) };
            for version in versions {
                if let Some(stored) = secret.versions.get_mut(version) {
                    stored.destroyed = true;
                    stored.data.values_mut().for_each(Zeroize::zeroize);
                    stored.data.clear();
                }
            }
            secret.updated_time = now();
            self.save(path, &secret).await
        })
    }

    fn delete_all<'a>(&'a self, path: &'a str) -> KvFuture<'a, ()> {
        Box::pin(async move {
            check(path)?;
            let _turn = self.writes.lock().await;
            self.storage.delete(&format!("{PREFIX}{path}")).await.map_err(|e| failed(path, e))
        })
    }
}
