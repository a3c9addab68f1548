//! The mount's KEK versions, kept in its own storage like Transit's key ring: inside OpenBao's
//! barrier, never returned by any path.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context;
use rotor_codec::Kek;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::request::Failure;
use crate::storage::Storage;

/// Where the ring is stored.
const RING: &str = "keys/ring";

/// How a version came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Made inside the plugin from the OS's random source.
    Generated,
    /// Given through `keys/import`: an application's existing KEK.
    Imported,
}

/// One version as stored: the key as hex, wiped when the document is dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredVersion {
    #[zeroize(skip)]
    version: u32,
    key: String,
    #[zeroize(skip)]
    created: String,
    #[zeroize(skip)]
    origin: Origin,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredRing {
    versions: Vec<StoredVersion>,
}

/// A KEK version held in memory.
struct Held {
    kek: Kek,
    created: String,
    origin: Origin,
}

/// The mount's KEK versions, by number.
#[derive(Default)]
pub struct KeyRing {
    versions: BTreeMap<u32, Held>,
}

impl KeyRing {
    /// Reads the ring from the mount's storage; an empty ring when none is stored yet.
    pub async fn load(storage: &Storage) -> anyhow::Result<KeyRing> {
        let stored: StoredRing = storage.get(RING).await?.unwrap_or_default();
        let mut ring = KeyRing::default();
        for version in &stored.versions {
            let kek = Kek::from_hex(&version.key)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("KEK v{} in the mount's storage", version.version))?;
            ring.versions.insert(
                version.version,
                Held { kek, created: version.created.clone(), origin: version.origin },
            );
        }
        Ok(ring)
    }

    async fn save(&self, storage: &Storage) -> anyhow::Result<()> {
        let versions = self
            .versions
            .iter()
            .map(|(&version, held)| StoredVersion {
                version,
                key: held.kek.to_hex().to_string(),
                created: held.created.clone(),
                origin: held.origin,
            })
            .collect();
        storage.put(RING, &StoredRing { versions }).await
    }

    /// The newest version, which encrypts.
    pub fn latest(&self) -> Option<(u32, &Kek)> {
        self.versions.last_key_value().map(|(&version, held)| (version, &held.kek))
    }

    /// The KEK of `version`, which decrypts what names it.
    pub fn get(&self, version: u32) -> Option<&Kek> {
        self.versions.get(&version).map(|held| &held.kek)
    }

    /// The version that holds `kek`, if one does.
    pub fn version_of(&self, kek: &Kek) -> Option<u32> {
        self.versions.iter().find(|(_, held)| held.kek == *kek).map(|(&version, _)| version)
    }

    /// Adds `kek` as `version` (the next one when `None`) and stores the ring. Versions only
    /// grow: an envelope names its version, so a number once used must keep meaning one key.
    pub async fn add(
        &mut self,
        storage: &Storage,
        version: Option<u32>,
        kek: Kek,
        origin: Origin,
    ) -> Result<u32, Failure> {
        let latest = self.latest().map_or(0, |(v, _)| v);
        let next = latest.checked_add(1).ok_or_else(|| {
            Failure::BadRequest(format!("the key ring holds v{latest}, the last version number there is"))
        });
        let version = match version {
            Some(version) => version,
            None => next?,
        };
        if version <= latest {
            return Err(Failure::BadRequest(format!(
                "the key ring already holds versions up to v{latest}; a version must be above it \
                 (import an application's versions oldest first)"
            )));
        }
        let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        self.versions.insert(version, Held { kek, created, origin });
        if let Err(error) = self.save(storage).await {
            self.versions.remove(&version);
            return Err(error.into());
        }
        tracing::info!(version, ?origin, "KEK version added to the mount's key ring");
        Ok(version)
    }

    /// What `rotor/keys` shows: numbers, dates and origins, never a key.
    pub fn summary(&self) -> Value {
        let versions: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .map(|(version, held)| {
                (version.to_string(), json!({ "created": held.created, "origin": held.origin }))
            })
            .collect();
        json!({ "latest_version": self.latest().map(|(v, _)| v), "versions": versions })
    }
}
