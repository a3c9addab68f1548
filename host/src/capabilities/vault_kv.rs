//! The `kv` import (and the auditor's `kv-reader`): Vault KV v2, or the seed's KEK from the
//! environment, limited to the paths this run was granted.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::bindings::auditor::kv_reader;
use crate::bindings::{kv, kv_types};
use crate::grants::Grants;
use crate::vault::{KvBackend, KvMetadata, KvSecret, VaultError};

/// What the `kv` import reaches: the backend and the paths this run may read and write.
pub struct VaultKv {
    backend: KvBackend,
    grants: Grants,
}

impl VaultKv {
    /// Calls on `backend`, within `grants`.
    pub fn new(backend: KvBackend, grants: Grants) -> VaultKv {
        VaultKv { backend, grants }
    }

    /// The backend, for host code that needs Vault itself (whom the token belongs to).
    pub fn backend(&self) -> &KvBackend {
        &self.backend
    }

    fn denied(&self, action: &str, path: &str) -> kv::Error {
        tracing::warn!(path, action, "component denied: outside this run's grant");
        kv::Error::Denied(format!("{action} {path} is outside this run's grant ({})", self.grants))
    }
}

// Linked as `kv` for a rotator, as the read-only `kv-reader` for an auditor.
link_for_world!('a, &'a mut VaultKv, kv_types, kv, kv_reader);

fn kv_error(error: VaultError) -> kv::Error {
    let message = error.to_string();
    match error {
        VaultError::PermissionDenied { .. } | VaultError::ReadOnly { .. } => kv::Error::Denied(message),
        VaultError::CasMismatch { .. } => kv::Error::CasMismatch(message),
        VaultError::Unreachable { .. }
        | VaultError::Sealed { .. }
        | VaultError::BadToken
        | VaultError::LoginFailed { .. } => kv::Error::Unavailable(message),
        _ => kv::Error::Other(message),
    }
}

/// Hands secret values to the component. The strings are moved, not copied, so the only
/// copies left are the one wasmtime lowers into the guest's memory and the guest's own.
fn secret_to_wit(secret: KvSecret) -> kv::Secret {
    kv::Secret {
        version: secret.version,
        created_time: secret.created_time,
        data: secret.data.into_iter().map(|(k, mut v)| (k, std::mem::take(&mut *v))).collect(),
    }
}

fn metadata_to_wit(m: KvMetadata) -> kv::SecretMetadata {
    kv::SecretMetadata {
        current_version: m.current_version,
        oldest_version: m.oldest_version,
        max_versions: m.max_versions,
        created_time: m.created_time,
        updated_time: m.updated_time,
        versions: m
            .versions
            .into_iter()
            .map(|v| kv::VersionMetadata {
                version: v.version,
                created_time: v.created_time,
                deletion_time: v.deletion_time,
                destroyed: v.destroyed,
            })
            .collect(),
    }
}

impl kv_types::Host for VaultKv {}

impl kv::Host for VaultKv {
    async fn read(
        &mut self,
        path: String,
        version: Option<u64>,
    ) -> wasmtime::Result<Result<Option<kv::Secret>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied("reading", &path)));
        }
        Ok(self.backend.read(&path, version).await.map(|s| s.map(secret_to_wit)).map_err(kv_error))
    }

    async fn write(
        &mut self,
        path: String,
        data: Vec<(String, String)>,
        cas: Option<u64>,
    ) -> wasmtime::Result<Result<u64, kv::Error>> {
        let data: BTreeMap<String, Zeroizing<String>> =
            data.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect();
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied("writing", &path)));
        }
        Ok(self.backend.write(&path, &data, cas).await.map_err(kv_error))
    }

    async fn list_keys(&mut self, path: String) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied("listing", &path)));
        }
        Ok(self.backend.list(&path).await.map_err(kv_error))
    }

    async fn metadata(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<kv::SecretMetadata>, kv::Error>> {
        if !self.grants.may_read(&path) {
            return Ok(Err(self.denied("reading metadata of", &path)));
        }
        Ok(self.backend.metadata(&path).await.map(|m| m.map(metadata_to_wit)).map_err(kv_error))
    }

    async fn destroy_versions(
        &mut self,
        path: String,
        versions: Vec<u64>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied("destroying versions of", &path)));
        }
        tracing::info!(path, ?versions, "destroying KEK versions");
        Ok(self.backend.destroy_versions(&path, &versions).await.map_err(kv_error))
    }

    async fn delete_all(&mut self, path: String) -> wasmtime::Result<Result<(), kv::Error>> {
        if !self.grants.may_write(&path) {
            return Ok(Err(self.denied("deleting", &path)));
        }
        tracing::info!(path, "deleting an archived KEK");
        Ok(self.backend.delete_all(&path).await.map_err(kv_error))
    }
}

// The auditor's read-only interface: the same checked calls as their read-write counterparts.
impl kv_reader::Host for VaultKv {
    async fn read(
        &mut self,
        path: String,
        version: Option<u64>,
    ) -> wasmtime::Result<Result<Option<kv::Secret>, kv::Error>> {
        kv::Host::read(self, path, version).await
    }

    async fn list_keys(&mut self, path: String) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        kv::Host::list_keys(self, path).await
    }

    async fn metadata(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Option<kv::SecretMetadata>, kv::Error>> {
        kv::Host::metadata(self, path).await
    }
}
