//! The seed's KV v2 path kept in step with the mount's key ring, for applications that read
//! their KEK there today (`secret/ibn/encryption-key`, field `key`, hex). Each version of the
//! ring is written there under the same version number, so that an application opening a
//! `rotor:v<N>:…` envelope reads `?version=N`, as it does when the `rotor` CLI rotates against
//! Vault KV. The ring stays the source: the seed path only follows it.
//!
//! A rotation moves no wallet onto a version the seed path lacks: the write that adds a
//! version fails if the path cannot follow, and every rotation first brings the path in step
//! (see [`Mirror::sync`]). The path's own history is checked, not overwritten: a version there
//! holding another key than the ring's stops the mirror with an error naming it, and the mirror
//! destroys only versions it wrote or found equal to the ring's (recorded in the mount's
//! storage, [`FOLLOWED`]).
//!
//! Whoever may write the mirror's settings may send the ring's keys to an address of their
//! choosing: the mirror takes `https://` only (plain `http://` to a loopback address), never
//! sends a stored credential to a new address, and docs/PLUGIN.md shows how to keep its fields
//! out of operators' policies.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rotor::vault::{
    AppRole, KvData, KvFuture, KvMetadata, KvSecret, KvStore, VaultAuth, VaultClient, VaultConfig, VaultError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::keyring::{KEK_PATH, KEY_FIELD};
use crate::kv::MountKv;
use crate::request::{Failure, Request};
use crate::storage::Storage;

/// The seed's KV v2 mount and path, as its service reads them.
const SEED_MOUNT: &str = "secret";
const SEED_PATH: &str = "ibn/encryption-key";

/// How long the mirror retries an OpenBao that answers 5xx or cannot be reached, before the
/// write that needed it fails.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// The field a version the ring does not hold is written with, then destroyed: KV v2 numbers
/// versions one by one, and the seed path's numbers must stay the ring's.
const GAP_FIELD: &str = "rotor_gap";

/// Where the mount records which versions the path holds as the ring's: the mirror's own
/// writes, and versions it compared. Only those may it destroy when the ring destroys them.
const FOLLOWED: &str = "mirror/followed";

/// The versions known to be the ring's at one place.
#[derive(Default, Serialize, Deserialize)]
struct Followed {
    place: String,
    versions: BTreeSet<u64>,
}

impl Followed {
    /// The record for `place`: empty if the stored one is for another place.
    async fn load(storage: &Storage, place: &str) -> anyhow::Result<Followed> {
        let stored: Option<Followed> = storage.get(FOLLOWED).await?;
        Ok(stored
            .filter(|stored| stored.place == place)
            .unwrap_or_else(|| Followed { place: place.to_owned(), versions: BTreeSet::new() }))
    }

    async fn store(&self, storage: &Storage) -> anyhow::Result<()> {
        storage.put(FOLLOWED, self).await
    }
}

/// Whether the path of `settings` holds `version` of the ring: a ciphertext sealed under it
/// opens for applications reading the path.
pub async fn holds(storage: &Storage, settings: &MirrorSettings, version: u32) -> anyhow::Result<bool> {
    Ok(Followed::load(storage, &settings.place()).await?.versions.contains(&u64::from(version)))
}

/// The fields `rotor/config` takes for the mirror.
pub const FIELDS: &[&str] =
    &["mirror_address", "mirror_token", "mirror_role_id", "mirror_secret_id", "mirror_mount", "mirror_path"];

/// Where and as whom the mount writes the seed's path. The credentials are wiped when dropped
/// and never shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MirrorSettings {
    /// OpenBao's API address as the plugin reaches it, e.g. `https://127.0.0.1:8200`.
    #[zeroize(skip)]
    address: String,
    /// A token allowed to read, write and destroy the path (a periodic one: once checked, the
    /// mirror renews it while the plugin process runs).
    token: Option<String>,
    /// Or an AppRole (at `auth/approle`) with those grants: its role id,
    role_id: Option<String>,
    /// and its secret id.
    secret_id: Option<String>,
    /// The KV v2 mount, `secret` by default.
    #[zeroize(skip)]
    mount: String,
    /// The path in it, `ibn/encryption-key` by default.
    #[zeroize(skip)]
    path: String,
}

impl std::fmt::Debug for MirrorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSettings").field("place", &self.place()).finish_non_exhaustive()
    }
}

impl MirrorSettings {
    /// The mirror a write to `rotor/config` asks for over `before`: `mirror_address=""` turns it
    /// off; a field left out keeps its value.
    pub fn from_request(
        request: &Request,
        before: Option<&MirrorSettings>,
    ) -> Result<Option<MirrorSettings>, Failure> {
        let text = |field: &str| -> Result<Option<String>, Failure> {
            Ok(request.text(field)?.map(|value| value.trim().to_owned()))
        };
        let address = match text("mirror_address")? {
            Some(address) if address.is_empty() => return Ok(None),
            Some(address) => address,
            None => match before {
                Some(before) => before.address.clone(),
                None if FIELDS.iter().any(|field| request.data.contains_key(*field)) => {
                    return Err(Failure::BadRequest(
                        "field \"mirror_address\" is required to keep the seed's KV v2 path in step: \
                         OpenBao's API address as the plugin reaches it"
                            .into(),
                    ));
                }
                None => return Ok(None),
            },
        };
        check_address(&address)?;
        // A stored credential is sent only where it was given for.
        let credentials = before.filter(|before| before.address == address);
        let secret = |field: &str, was: Option<&Option<String>>| -> Result<Option<String>, Failure> {
            Ok(match request.text(field)? {
                Some(value) => Some(value.trim().to_owned()).filter(|v| !v.is_empty()),
                None => was.cloned().flatten(),
            })
        };
        let mut settings = MirrorSettings {
            address,
            token: secret("mirror_token", credentials.map(|b| &b.token))?,
            role_id: secret("mirror_role_id", credentials.map(|b| &b.role_id))?,
            secret_id: secret("mirror_secret_id", credentials.map(|b| &b.secret_id))?,
            mount: text("mirror_mount")?
                .or_else(|| before.map(|b| b.mount.clone()))
                .unwrap_or_else(|| SEED_MOUNT.to_owned()),
            path: text("mirror_path")?
                .or_else(|| before.map(|b| b.path.clone()))
                .unwrap_or_else(|| SEED_PATH.to_owned()),
        };
        // A new credential of one kind replaces a stored one of the other.
        if request.text("mirror_token")?.is_some_and(|t| !t.trim().is_empty()) {
            (settings.role_id, settings.secret_id) = (None, None);
        } else if request.text("mirror_role_id")?.is_some() || request.text("mirror_secret_id")?.is_some() {
            settings.token = None;
        }
        let approle = settings.role_id.is_some() && settings.secret_id.is_some();
        if settings.token.is_none() && !approle {
            return Err(Failure::BadRequest(
                "the mirror needs a credential for this address (a stored one is never sent to another): \
                 mirror_token=<a periodic token>, or mirror_role_id and mirror_secret_id of an AppRole, \
                 allowed to read, write and destroy the seed's path"
                    .into(),
            ));
        }
        let plain = |name: &str, value: &str| {
            let fine = !value.is_empty() && value.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
            if fine {
                Ok(())
            } else {
                Err(Failure::BadRequest(format!("field {name:?}: {value:?} is not a path")))
            }
        };
        plain("mirror_mount", &settings.mount)?;
        plain("mirror_path", &settings.path)?;
        Ok(Some(settings))
    }

    /// Where the mirror writes, for messages and its record: `secret/ibn/encryption-key at https://…`.
    pub fn place(&self) -> String {
        format!("{}/{} at {}", self.mount, self.path, self.address)
    }

    /// What `read rotor/config` shows: everything but the credentials, and which kind they are.
    pub fn shown(&self) -> Value {
        let auth = if self.token.is_some() { "token" } else { "approle" };
        json!({ "address": self.address, "mount": self.mount, "path": self.path, "auth": auth })
    }

    /// The mirror these settings describe.
    pub fn mirror(&self) -> Result<Mirror, Failure> {
        let auth = match (&self.token, &self.role_id, &self.secret_id) {
            (Some(token), _, _) => VaultAuth::Token(Zeroizing::new(token.clone())),
            (None, Some(role_id), Some(secret_id)) => VaultAuth::AppRole(AppRole {
                mount: "approle".to_owned(),
                role_id: Zeroizing::new(role_id.clone()),
                secret_id: Zeroizing::new(secret_id.clone()),
            }),
            _ => return Err(Failure::BadRequest("the mirror has no credential".into())),
        };
        let mut config = VaultConfig::with_token(&self.address, "");
        config.auth = auth;
        config.mount = self.mount.clone();
        config.retry_for = RETRY_FOR;
        let client = VaultClient::new(config).map_err(|e| Failure::BadRequest(format!("the mirror: {e}")))?;
        Ok(Mirror { client, path: self.path.clone(), place: self.place(), turn: Mutex::new(()) })
    }
}

/// A client for the seed's path, and the lock that keeps this process's syncs in turn.
pub struct Mirror {
    client: VaultClient,
    path: String,
    place: String,
    turn: Mutex<()>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("place", &self.place).finish()
    }
}

impl Mirror {
    /// Where the mirror writes: `secret/ibn/encryption-key at https://…`.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Checks that OpenBao answers at the address, with the credential, and that the mount is
    /// KV v2.
    pub async fn check(&self) -> Result<(), Failure> {
        self.client.check().await.map_err(|e| self.failed(&e.to_string()))
    }

    fn failed(&self, why: &str) -> Failure {
        Failure::BadRequest(format!("keeping {} in step with the key ring: {why}", self.place))
    }

    /// Brings the seed's path in step with the ring: each version the path lacks is written
    /// under its number (a number the ring does not hold, written and destroyed), and each
    /// version the ring destroyed is destroyed there if the mirror wrote it or found it equal.
    /// Anything else (a version holding another key, one the ring never held or can no longer
    /// compare, versions beyond the ring's) stops it with an error naming it: nothing at the
    /// path is overwritten or destroyed that is not the ring's.
    pub async fn sync(&self, kv: &MountKv) -> Result<(), Failure> {
        let _turn = self.turn.lock().await;
        let ring = kv.metadata(KEK_PATH).await.map_err(|e| Failure::Internal(e.into()))?;
        let ring_current = ring.as_ref().map_or(0, |m| m.current_version);
        let ring_destroyed =
            |version: u64| ring.iter().flat_map(|m| &m.versions).any(|v| v.version == version && v.destroyed);
        let readable = kv.readable_versions(KEK_PATH).await.map_err(|e| Failure::Internal(e.into()))?;
        let key_of =
            |version: u64| readable.iter().find(|s| s.version == version).and_then(|s| s.data.get(KEY_FIELD));
        let mut followed = Followed::load(kv.storage(), &self.place).await?;
        let seed = self.client.metadata(&self.path).await.map_err(|e| self.failed(&e.to_string()))?;
        let seed_current = seed.as_ref().map_or(0, |m| m.current_version);
        if seed_current > ring_current {
            return Err(self.failed(&format!(
                "it holds v{seed_current}, beyond the ring's v{ring_current}: import those keys with \
                 rotor/keys/import version=N first, or point mirror_path at a new path"
            )));
        }
        // What the path holds already must be the ring's, or what the ring destroyed.
        let mut destroy = Vec::new();
        for meta in seed.iter().flat_map(|m| &m.versions).filter(|v| !v.destroyed) {
            let version = meta.version;
            let held =
                self.client.read(&self.path, Some(version)).await.map_err(|e| self.failed(&e.to_string()))?;
            let Some(held) = held else {
                tracing::warn!(path = %self.place, version, "a version at the seed's path is deleted; undelete it for applications that read it");
                continue;
            };
            if held.data.contains_key(GAP_FIELD) {
                destroy.push(version);
                continue;
            }
            match key_of(version) {
                Some(key) if held.data.get(KEY_FIELD).is_some_and(|k| k.eq_ignore_ascii_case(key)) => {
                    followed.versions.insert(version);
                }
                Some(_) => {
                    return Err(self.failed(&format!(
                        "its v{version} holds another key than the ring's v{version}; nothing was written. \
                         Point mirror_path at a new path"
                    )));
                }
                None if ring_destroyed(version) && followed.versions.contains(&version) => {
                    destroy.push(version)
                }
                None => {
                    return Err(self.failed(&format!(
                        "its v{version} is not a key the ring holds or the mirror wrote; nothing was written \
                         or destroyed. Point mirror_path at a new path, or destroy v{version} there if no \
                         application needs it"
                    )));
                }
            }
        }
        for version in seed_current + 1..=ring_current {
            let (data, gap) = match key_of(version) {
                Some(key) => (KvData::from([(KEY_FIELD.to_owned(), key.clone())]), false),
                None => {
                    let note = Zeroizing::new("not in rotor's key ring".to_owned());
                    (KvData::from([(GAP_FIELD.to_owned(), note)]), true)
                }
            };
            let written = self.client.write(&self.path, &data, Some(version - 1)).await;
            let written = written.map_err(|error| match error {
                VaultError::CasMismatch { .. } => self.failed(&format!(
                    "another writer added v{version} while the mount was writing it; nothing was overwritten"
                )),
                other => self.failed(&other.to_string()),
            })?;
            if written != version {
                return Err(self.failed(&format!("OpenBao stored v{written} where v{version} was due")));
            }
            followed.versions.insert(version);
            if gap {
                destroy.push(version);
            }
        }
        // Recorded before anything is destroyed: a version written here is known as the ring's
        // even if the process dies now.
        followed.store(kv.storage()).await?;
        if !destroy.is_empty() {
            self.client
                .destroy_versions(&self.path, &destroy)
                .await
                .map_err(|e| self.failed(&e.to_string()))?;
        }
        if ring_current > seed_current || !destroy.is_empty() {
            tracing::info!(path = %self.place, version = ring_current, destroyed = ?destroy, "the seed's path is in step");
        }
        Ok(())
    }
}

/// Refuses an address the ring's keys should not travel to in clear text.
fn check_address(address: &str) -> Result<(), Failure> {
    if address.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = address.strip_prefix("http://") else {
        return Err(Failure::BadRequest(format!(
            "field \"mirror_address\": {address:?} is not an https:// address"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(Failure::BadRequest(format!(
            "field \"mirror_address\": {address:?} would carry the ring's keys in clear text; use https:// \
             (plain http:// only to a loopback address)"
        )))
    }
}

/// The mount's KV with the seed's path following its key ring: what the host library rotates
/// through when the mirror is on. A version added or destroyed reaches the path before the
/// write returns, so that the rotation moves no wallet onto a version applications cannot read.
#[derive(Debug)]
pub struct MirroredKv {
    kv: Arc<MountKv>,
    mirror: Arc<Mirror>,
}

impl MirroredKv {
    /// `kv`, followed by `mirror`.
    pub fn new(kv: Arc<MountKv>, mirror: Arc<Mirror>) -> MirroredKv {
        MirroredKv { kv, mirror }
    }

    async fn follow(&self, path: &str) -> Result<(), VaultError> {
        if path != KEK_PATH {
            return Ok(());
        }
        self.mirror.sync(&self.kv).await.map(drop).map_err(|failure| VaultError::Store {
            path: self.mirror.place().to_owned(),
            reason: failure.to_string(),
        })
    }
}

impl KvStore for MirroredKv {
    fn read<'a>(&'a self, path: &'a str, version: Option<u64>) -> KvFuture<'a, Option<KvSecret>> {
        self.kv.read(path, version)
    }

    fn write<'a>(&'a self, path: &'a str, data: &'a KvData, cas: Option<u64>) -> KvFuture<'a, u64> {
        Box::pin(async move {
            let version = self.kv.write(path, data, cas).await?;
            self.follow(path).await?;
            Ok(version)
        })
    }

    fn list<'a>(&'a self, folder: &'a str) -> KvFuture<'a, Vec<String>> {
        self.kv.list(folder)
    }

    fn metadata<'a>(&'a self, path: &'a str) -> KvFuture<'a, Option<KvMetadata>> {
        self.kv.metadata(path)
    }

    fn destroy_versions<'a>(&'a self, path: &'a str, versions: &'a [u64]) -> KvFuture<'a, ()> {
        Box::pin(async move {
            self.kv.destroy_versions(path, versions).await?;
            self.follow(path).await
        })
    }

    fn delete_all<'a>(&'a self, path: &'a str) -> KvFuture<'a, ()> {
        self.kv.delete_all(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(data: Value, before: Option<&MirrorSettings>) -> Result<Option<MirrorSettings>, Failure> {
        MirrorSettings::from_request(&Request::update("config", &data.to_string()), before)
    }

    #[test]
    fn keys_travel_only_over_https_or_to_loopback() {
        for fine in [
            "https://bao.example:8200",
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ] {
            assert!(check_address(fine).is_ok(), "{fine}");
        }
        for bad in ["http://bao.example:8200", "http://10.0.0.5:8200", "ftp://x", "bao.example:8200"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stored_credential_is_never_sent_to_a_new_address() {
        let first = json!({"mirror_address": "https://a.example", "mirror_token": "s.first"});
        let stored = settings(first, None).unwrap().unwrap();
        let moved = settings(json!({"mirror_address": "https://evil.example"}), Some(&stored));
        assert!(moved.unwrap_err().to_string().contains("never sent to another"));
        let same = settings(json!({"mirror_path": "app/kek"}), Some(&stored)).unwrap().unwrap();
        assert_eq!((same.token.as_deref(), same.path.as_str()), (Some("s.first"), "app/kek"));
        // A new address with its credential keeps the other fields.
        let again = json!({"mirror_address": "https://b.example", "mirror_token": "s.second"});
        let moved = settings(again, Some(&same)).unwrap().unwrap();
        assert_eq!((moved.token.as_deref(), moved.path.as_str()), (Some("s.second"), "app/kek"));
        // A new credential of the other kind replaces the stored one.
        let approle = json!({"mirror_role_id": "r", "mirror_secret_id": "s"});
        let switched = settings(approle, Some(&stored)).unwrap().unwrap();
        assert_eq!((switched.token.as_deref(), switched.shown()["auth"].as_str()), (None, Some("approle")));
        assert!(settings(json!({"mirror_address": ""}), Some(&stored)).unwrap().is_none());
        assert!(
            settings(json!({"mirror_token": "t"}), None).unwrap_err().to_string().contains("mirror_address")
        );
        assert!(!stored.shown().to_string().contains("s.first"));
    }
}
