//! The mount's storage: OpenBao's barrier-encrypted key-value store, reached over the broker
//! connection OpenBao offers in `Setup`. Values are JSON documents.

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::proto::backend::{
    StorageDeleteArgs, StorageEntry, StorageGetArgs, StorageListArgs, StoragePutArgs,
};
use crate::proto::pb::storage_client::StorageClient;

/// The mount's storage.
#[derive(Clone)]
pub struct Storage {
    client: StorageClient<Channel>,
}

impl Storage {
    /// Storage over a connection to OpenBao's storage server.
    pub fn new(channel: Channel) -> Storage {
        Storage { client: StorageClient::new(channel) }
    }

    /// Reads the document at `key`, if there is one. The raw bytes are wiped once parsed,
    /// since documents hold key material.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let Some(value) = self.get_bytes(key).await? else { return Ok(None) };
        let value = Zeroizing::new(value);
        let document = serde_json::from_slice(&value)
            .with_context(|| format!("the mount's storage entry {key:?} is not rotor's"))?;
        Ok(Some(document))
    }

    /// Writes `document` at `key`.
    pub async fn put<T: Serialize>(&self, key: &str, document: &T) -> anyhow::Result<()> {
        // The message owns the only copy; tonic encodes it and drops it (not wiped: see
        // SECURITY in docs/PLUGIN.md).
        let value = serde_json::to_vec(document).context("encoding a storage entry")?;
        self.put_bytes(key, value).await
    }

    /// Reads the bytes at `key`, if there are any.
    pub async fn get_bytes(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let reply = self
            .client
            .clone()
            .get(StorageGetArgs { key: key.to_owned() })
            .await
            .with_context(|| format!("reading {key:?} from the mount's storage"))?
            .into_inner();
        if !reply.err.is_empty() {
            bail!("reading {key:?} from the mount's storage: {}", reply.err);
        }
        Ok(reply.entry.map(|entry| entry.value))
    }

    /// Writes `value` at `key`.
    pub async fn put_bytes(&self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let entry = StorageEntry { key: key.to_owned(), value, seal_wrap: false };
        let reply = self
            .client
            .clone()
            .put(StoragePutArgs { entry: Some(entry) })
            .await
            .with_context(|| format!("writing {key:?} to the mount's storage"))?
            .into_inner();
        if !reply.err.is_empty() {
            bail!("writing {key:?} to the mount's storage: {}", reply.err);
        }
        Ok(())
    }

    /// Removes the entry at `key`; nothing to do when there is none.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let reply = self
            .client
            .clone()
            .delete(StorageDeleteArgs { key: key.to_owned() })
            .await
            .with_context(|| format!("deleting {key:?} from the mount's storage"))?
            .into_inner();
        if !reply.err.is_empty() {
            bail!("deleting {key:?} from the mount's storage: {}", reply.err);
        }
        Ok(())
    }

    /// The keys directly under `folder` (which ends in `/`), relative to it; sub-folders end in
    /// `/`.
    pub async fn list(&self, folder: &str) -> anyhow::Result<Vec<String>> {
        let reply = self
            .client
            .clone()
            .list(StorageListArgs { prefix: folder.to_owned() })
            .await
            .with_context(|| format!("listing {folder:?} in the mount's storage"))?
            .into_inner();
        if !reply.err.is_empty() {
            bail!("listing {folder:?} in the mount's storage: {}", reply.err);
        }
        Ok(reply.keys)
    }
}
