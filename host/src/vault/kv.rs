//! The KV v2 operations of [`VaultClient`]: read, write (with check-and-set), list, metadata,
//! destroy and delete, each under `<mount>/<kind>/<path>`; and what they return.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::client::VaultClient;
use super::config::check_path;
use super::error::{VaultError, decode};
use super::retry::Replay;
use super::transport::Envelope;

/// The fields of one version of a secret: name → value, each value zeroized on drop.
pub type KvData = BTreeMap<String, Zeroizing<String>>;

/// One version of a secret. `Debug` shows the field names, never the values.
pub struct KvSecret {
    /// Version number, starting at 1.
    pub version: u64,
    /// RFC 3339 time the version was written.
    pub created_time: String,
    /// Field name → value; non-string JSON values are kept as their JSON text.
    pub data: KvData,
}

impl fmt::Debug for KvSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSecret")
            .field("version", &self.version)
            .field("created_time", &self.created_time)
            .field("fields", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Metadata of one version of a secret.
#[derive(Debug, Clone, Deserialize)]
pub struct KvVersionMeta {
    /// Version number (the metadata endpoint keys versions by number instead of a field).
    #[serde(default)]
    pub version: u64,
    /// RFC 3339 time the version was written.
    pub created_time: String,
    /// RFC 3339 time the version was (or will be) soft-deleted; `""` if never.
    #[serde(default)]
    pub deletion_time: String,
    /// Whether the version's data was permanently destroyed.
    #[serde(default)]
    pub destroyed: bool,
}

/// Metadata of a secret across all its versions.
#[derive(Debug, Clone)]
pub struct KvMetadata {
    /// Latest version number.
    pub current_version: u64,
    /// Oldest version still kept.
    pub oldest_version: u64,
    /// How many versions are kept; 0 means the mount's default.
    pub max_versions: u64,
    /// RFC 3339 time the secret was created.
    pub created_time: String,
    /// RFC 3339 time the secret was last written.
    pub updated_time: String,
    /// Kept versions, sorted by version number.
    pub versions: Vec<KvVersionMeta>,
}

impl VaultClient {
    /// Reads the latest version, or `version`. `Ok(None)` if the secret or that version does not
    /// exist, was deleted or was destroyed.
    pub async fn read(&self, path: &str, version: Option<u64>) -> Result<Option<KvSecret>, VaultError> {
        #[derive(Deserialize)]
        struct Body {
            data: Option<BTreeMap<String, serde_json::Value>>,
            metadata: KvVersionMeta,
        }
        let route = self.route("data", path)?;
        let target = match version {
            Some(v) => format!("{route}?version={v}"),
            None => route.clone(),
        };
        let reply = self.send(Method::GET, &target, None, Replay::Safe).await?;
        if reply.absent() {
            // Nothing there, or a KV v1 mount, which has no `data/` paths: tell them apart
            // before the caller reports a missing KEK.
            self.check_mount_once().await?;
            return Ok(None);
        }
        if reply.status != StatusCode::OK {
            return Err(self.fail(reply, &route, "read").await);
        }
        let Body { data, metadata } = decode::<Envelope<Body>>(&route, &reply.body)?.data;
        Ok(data.map(|data| KvSecret {
            version: metadata.version,
            created_time: metadata.created_time,
            data: data
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (name, Zeroizing::new(text))
                })
                .collect(),
        }))
    }

    /// Writes a new version and returns its number. With `cas: Some(n)` the write only succeeds
    /// if the current version is `n` (`Some(0)`: only if the secret does not exist yet), else
    /// [`VaultError::CasMismatch`].
    ///
    /// A check-and-set write is retried like a read: when a retry meets a mismatch, an earlier
    /// attempt may have been applied with its answer lost (a proxy's 502, a timeout), so version
    /// `n + 1` is read back, and if it holds exactly `data` it is ours and its number is
    /// returned. A write without check-and-set is retried only when Vault surely did not apply
    /// it (connection refused, sealed), since a replay would add a version.
    pub async fn write(&self, path: &str, data: &KvData, cas: Option<u64>) -> Result<u64, VaultError> {
        #[derive(Serialize)]
        struct Options {
            cas: u64,
        }
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            options: Option<Options>,
            data: BTreeMap<&'a str, &'a str>,
        }
        #[derive(Deserialize)]
        struct Written {
            version: u64,
        }
        let route = self.route("data", path)?;
        let request = Request {
            options: cas.map(|cas| Options { cas }),
            data: data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        };
        let body = Zeroizing::new(serde_json::to_vec(&request).expect("string maps serialise"));
        let replay = if cas.is_some() { Replay::Safe } else { Replay::IfNotApplied };
        let reply = self.send(Method::POST, &route, Some(&body), replay).await?;
        if !reply.status.is_success() {
            let retried = reply.tries.attempts > 1;
            let error = self.fail(reply, &route, "create/update").await;
            if let (VaultError::CasMismatch { .. }, Some(cas), true) = (&error, cas, retried)
                && let Some(version) = self.our_write(path, data, cas + 1).await?
            {
                tracing::warn!(
                    route = %route,
                    version,
                    "an earlier attempt of this check-and-set write was applied but its answer was lost; \
                     the version it created is used"
                );
                return Ok(version);
            }
            return Err(error);
        }
        Ok(decode::<Envelope<Written>>(&route, &reply.body)?.data.version)
    }

    /// `Some(version)` if `version` of `path` holds exactly `data`: a write of ours whose answer
    /// was lost. (A KEK is 256 random bits: another writer cannot have written the same.)
    async fn our_write(&self, path: &str, data: &KvData, version: u64) -> Result<Option<u64>, VaultError> {
        let Some(found) = self.read(path, Some(version)).await? else { return Ok(None) };
        let same = found.data.len() == data.len()
            && found.data.iter().zip(data).all(|((k1, v1), (k2, v2))| k1 == k2 && v1.as_str() == v2.as_str());
        Ok(same.then_some(found.version))
    }

    /// Lists the keys under a folder (`""` for the mount's root); sub-folders end in `/`.
    /// A folder that does not exist lists as empty.
    pub async fn list(&self, path: &str) -> Result<Vec<String>, VaultError> {
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        let route = self.folder_route(path)?;
        let reply = self.send(Method::GET, &format!("{route}/?list=true"), None, Replay::Safe).await?;
        if reply.absent() {
            return Ok(Vec::new());
        }
        if reply.status != StatusCode::OK {
            return Err(self.fail(reply, &route, "list").await);
        }
        Ok(decode::<Envelope<Keys>>(&route, &reply.body)?.data.keys)
    }

    /// Reads a secret's metadata; `Ok(None)` if the secret does not exist.
    pub async fn metadata(&self, path: &str) -> Result<Option<KvMetadata>, VaultError> {
        #[derive(Deserialize)]
        struct Body {
            current_version: u64,
            oldest_version: u64,
            max_versions: u64,
            created_time: String,
            updated_time: String,
            versions: BTreeMap<String, KvVersionMeta>,
        }
        let route = self.route("metadata", path)?;
        let reply = self.send(Method::GET, &route, None, Replay::Safe).await?;
        if reply.absent() {
            return Ok(None);
        }
        if reply.status != StatusCode::OK {
            return Err(self.fail(reply, &route, "read").await);
        }
        let body = decode::<Envelope<Body>>(&route, &reply.body)?.data;
        let mut versions = body
            .versions
            .into_iter()
            .map(|(number, meta)| match number.parse() {
                Ok(version) => Ok(KvVersionMeta { version, ..meta }),
                Err(_) => Err(VaultError::Decode {
                    path: route.clone(),
                    reason: format!("version key `{number}` is not a number"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The map is keyed by decimal strings, so "10" sorted before "2".
        versions.sort_by_key(|v| v.version);
        Ok(Some(KvMetadata {
            current_version: body.current_version,
            oldest_version: body.oldest_version,
            max_versions: body.max_versions,
            created_time: body.created_time,
            updated_time: body.updated_time,
            versions,
        }))
    }

    /// Permanently destroys the data of the given versions (metadata stays). Destroying a
    /// missing or already destroyed version succeeds.
    pub async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), VaultError> {
        if versions.is_empty() {
            return Ok(()); // Vault rejects an empty list; nothing to do is not an error.
        }
        let route = self.route("destroy", path)?;
        let body = serde_json::to_vec(&serde_json::json!({ "versions": versions }))
            .expect("a list of numbers serialises");
        let reply = self.send(Method::POST, &route, Some(&body), Replay::Safe).await?;
        if !reply.status.is_success() {
            return Err(self.fail(reply, &route, "update").await);
        }
        Ok(())
    }

    /// DELETE /v1/{mount}/metadata/{path}: the secret with every version, for good. Deleting
    /// what does not exist succeeds.
    pub async fn delete_all(&self, path: &str) -> Result<(), VaultError> {
        let route = self.route("metadata", path)?;
        let reply = self.send(Method::DELETE, &route, None, Replay::Safe).await?;
        if !reply.status.is_success() && !reply.absent() {
            return Err(self.fail(reply, &route, "delete").await);
        }
        Ok(())
    }

    /// `<mount>/<kind>/<path>`, once `path` is checked (see [`check_path`]).
    fn route(&self, kind: &str, path: &str) -> Result<String, VaultError> {
        check_path("secret path", path)?;
        Ok(format!("{}/{kind}/{path}", self.mount()))
    }

    /// The metadata route of a folder: `""` is the mount's root, and a trailing `/` (as `list`
    /// returns folders) is dropped.
    fn folder_route(&self, path: &str) -> Result<String, VaultError> {
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.is_empty() { Ok(format!("{}/metadata", self.mount())) } else { self.route("metadata", path) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::VaultConfig;

    fn client() -> VaultClient {
        VaultClient::new(VaultConfig::with_token("http://127.0.0.1:8200", "t")).unwrap()
    }

    #[test]
    fn routes_stay_under_the_mount() {
        let vault = client();
        assert_eq!(vault.route("data", "ibn/encryption-key").unwrap(), "secret/data/ibn/encryption-key");
        assert_eq!(vault.folder_route("").unwrap(), "secret/metadata");
        assert_eq!(vault.folder_route("/").unwrap(), "secret/metadata");
        assert_eq!(
            vault.folder_route("ibn/encryption-key-archive/").unwrap(),
            "secret/metadata/ibn/encryption-key-archive"
        );
        for escape in ["../sys/seal", "a/../../sys", "/abs", "a//b"] {
            assert!(matches!(vault.route("data", escape), Err(VaultError::Config(_))), "{escape}");
            assert!(matches!(vault.folder_route(escape), Err(VaultError::Config(_))), "{escape}");
        }
    }

    #[test]
    fn secret_debug_shows_field_names_not_values() {
        let secret = KvSecret {
            version: 1,
            created_time: String::new(),
            data: KvData::from([("key".to_owned(), Zeroizing::new("c0ffee".repeat(8)))]),
        };
        let debug = format!("{secret:?}");
        assert!(debug.contains("key") && !debug.contains("c0ffee"), "{debug}");
    }
}
