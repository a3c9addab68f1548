//! The mount's KEK versions, kept in its own storage like Transit's key ring: inside OpenBao's
//! barrier, never returned by any path. They are the versions of one KV v2 secret of the
//! mount's [`MountKv`], [`KEK_PATH`], which rotor's host library reads and adds to when the
//! mount rotates, as it would Vault's `secret/ibn/encryption-key`.

use std::collections::BTreeMap;

use anyhow::Context;
use rotor::vault::KvData;
use rotor_codec::Kek;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use rotor::vault::KvStore as _;

use crate::kv::MountKv;
use crate::request::Failure;

/// The KEK's path in the mount's KV: the key path of every rotation the mount runs.
pub const KEK_PATH: &str = "kek";

/// The field holding a version's key (hex), as rotor's host library writes it.
pub const KEY_FIELD: &str = "key";

/// The field recording how a version came to be; absent in the versions rotations store.
const ORIGIN_FIELD: &str = "origin";

/// How a version came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Made inside the plugin from the OS's random source.
    Generated,
    /// Given through `keys/import`: an application's existing KEK.
    Imported,
    /// Stored by a rotation (`rotor/rotate`).
    Rotation,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Generated => "generated",
            Origin::Imported => "imported",
            Origin::Rotation => "rotation",
        }
    }

    fn of(data: &KvData) -> Origin {
        match data.get(ORIGIN_FIELD).map(|o| o.as_str()) {
            Some("generated") => Origin::Generated,
            Some("imported") => Origin::Imported,
            _ => Origin::Rotation,
        }
    }
}

/// A KEK version held in memory.
struct Held {
    kek: Kek,
    created: String,
    origin: Origin,
}

/// The mount's KEK versions, by number: those not destroyed by a prune.
#[derive(Default)]
pub struct KeyRing {
    versions: BTreeMap<u32, Held>,
}

impl KeyRing {
    /// Reads the ring from the mount's storage; an empty ring when none is stored yet.
    pub async fn load(kv: &MountKv) -> anyhow::Result<KeyRing> {
        let mut ring = KeyRing::default();
        for readable in kv.readable_versions(KEK_PATH).await? {
            let version = u32::try_from(readable.version)
                .with_context(|| format!("KEK v{} is beyond rotor's range", readable.version))?;
            let key = readable.data.get(KEY_FIELD).with_context(|| format!("KEK v{version} has no key"))?;
            let kek = Kek::from_hex(key)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("KEK v{version} in the mount's storage"))?;
            let origin = Origin::of(&readable.data);
            ring.versions.insert(version, Held { kek, created: readable.created_time, origin });
        }
        Ok(ring)
    }

    /// Whether the mount holds no readable KEK version, without decoding any key.
    pub async fn is_empty(kv: &MountKv) -> anyhow::Result<bool> {
        let metadata = kv.metadata(KEK_PATH).await?;
        Ok(metadata.is_none_or(|m| m.versions.iter().all(|v| v.destroyed)))
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

    /// Adds `kek` as `version` (the next one when `None`) to the stored ring. Versions only
    /// grow: an envelope names its version, so a number once used must keep meaning one key.
    pub async fn add(kv: &MountKv, version: Option<u32>, kek: &Kek, origin: Origin) -> Result<u32, Failure> {
        let data = KvData::from([
            (KEY_FIELD.to_owned(), kek.to_hex()),
            (ORIGIN_FIELD.to_owned(), Zeroizing::new(origin.name().to_owned())),
        ]);
        let written = kv.write_as(KEK_PATH, version.map(u64::from), u32::MAX.into(), &data).await?;
        let version = u32::try_from(written).expect("write_as keeps to the highest version given");
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
