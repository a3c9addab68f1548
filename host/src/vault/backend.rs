//! What serves the component's `kv` import: Vault; for the seed's env fallback, a KEK from an
//! environment variable, served read-only from memory; or a [`KvStore`] of the embedding
//! program's own (the OpenBao plugin keeps KV v2's versions in its mount's storage).
//!
//! The seed's service fell back to `WALLET_ENCRYPTION_KEY` when Vault had no key. rotor honours
//! that only to read (`validate`, `open`), and never to rotate: a rotation must store its new
//! KEK in Vault before it moves a wallet. In that mode no Vault client exists at all, and every
//! write the component attempts is refused here as well as by the run's grants.
//!
//! A `~/.vault-token` left by an old `bao login` must not silently switch that fallback off:
//! when it is the only credential and Vault rejects it, read-only commands say so and use the
//! variable; the others refuse, naming the file.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::bail;
use zeroize::Zeroizing;

use super::client::VaultClient;
use super::config::{VaultConfig, credentials_in_env, token_file_in_use};
use super::error::VaultError;
use super::kv::{KvData, KvMetadata, KvSecret};

/// The environment variable the seed's service read its KEK from.
const SEED_KEK_VAR: &str = "WALLET_ENCRYPTION_KEY";

/// Where a command's KEKs come from.
#[derive(Debug)]
pub enum KvSource {
    /// Vault, with these settings.
    Vault(VaultConfig),
    /// The seed's KEK from the environment, read-only.
    EnvKek(EnvKek),
    /// Vault with only a `~/.vault-token` to log in, for a read-only command while
    /// `WALLET_ENCRYPTION_KEY` is set: if Vault rejects that token, the variable's KEK is used.
    VaultElseEnv(VaultConfig, PendingEnvKek),
    /// A store the embedding program supplies, used as it is.
    Store(Arc<dyn KvStore>),
}

/// What [`KvStore`]'s operations return.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, VaultError>> + Send + 'a>>;

/// KV v2's operations, as [`VaultClient`] offers them, for a program that embeds rotor and keeps
/// secrets elsewhere: the OpenBao plugin keeps them in its mount's storage, so that the KEK
/// never leaves OpenBao. Each operation means what the [`VaultClient`] method of the same name
/// does: versions numbered from 1, check-and-set with `Some(0)` for "only if absent", destroyed
/// versions read as absent, `list` naming a folder's entries (sub-folders with a trailing `/`).
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// See [`VaultClient::read`].
    fn read<'a>(&'a self, path: &'a str, version: Option<u64>) -> KvFuture<'a, Option<KvSecret>>;
    /// See [`VaultClient::write`]; a lost check-and-set is [`VaultError::CasMismatch`].
    fn write<'a>(&'a self, path: &'a str, data: &'a KvData, cas: Option<u64>) -> KvFuture<'a, u64>;
    /// See [`VaultClient::list`].
    fn list<'a>(&'a self, folder: &'a str) -> KvFuture<'a, Vec<String>>;
    /// See [`VaultClient::metadata`].
    fn metadata<'a>(&'a self, path: &'a str) -> KvFuture<'a, Option<KvMetadata>>;
    /// See [`VaultClient::destroy_versions`].
    fn destroy_versions<'a>(&'a self, path: &'a str, versions: &'a [u64]) -> KvFuture<'a, ()>;
    /// See [`VaultClient::delete_all`].
    fn delete_all<'a>(&'a self, path: &'a str) -> KvFuture<'a, ()>;
}

/// The seed's KEK, checked only if it comes to be used. `Debug` shows the variable's name only.
pub struct PendingEnvKek {
    var: &'static str,
    key_path: String,
    key: Zeroizing<String>,
}

impl std::fmt::Debug for PendingEnvKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEnvKek").field("var", &self.var).field("key_path", &self.key_path).finish()
    }
}

impl From<VaultConfig> for KvSource {
    fn from(config: VaultConfig) -> Self {
        KvSource::Vault(config)
    }
}

/// Which commands may fall back to the seed's environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekUse {
    /// `validate`, `open`: the KEK is only read.
    ReadOnly,
    /// Everything else: the KEK must be in Vault.
    VaultOnly,
}

impl KvSource {
    /// Vault as the environment configures it. Without any Vault credentials but with the seed's
    /// `WALLET_ENCRYPTION_KEY` set, read-only commands use that key (with a warning) and the
    /// others refuse, saying how to move the key into Vault.
    pub fn from_env(mount: &str, key_path: &str, kek_use: KekUse) -> anyhow::Result<KvSource> {
        let seed_kek = std::env::var(SEED_KEK_VAR).ok().filter(|v| !v.trim().is_empty()).map(Zeroizing::new);
        if let (Some(key), KekUse::ReadOnly, Some(_)) = (&seed_kek, kek_use, token_file_in_use()) {
            let fallback =
                PendingEnvKek { var: SEED_KEK_VAR, key_path: key_path.to_owned(), key: key.clone() };
            return Ok(KvSource::VaultElseEnv(VaultConfig::from_env(mount)?, fallback));
        }
        if credentials_in_env() || seed_kek.is_none() {
            if seed_kek.is_some() && kek_use == KekUse::ReadOnly {
                tracing::warn!(
                    "{SEED_KEK_VAR} is set but ignored: rotor reads the KEK from Vault; remove it from the \
                     environment once `rotor validate` shows every wallet opens"
                );
            }
            return Ok(KvSource::Vault(VaultConfig::from_env(mount)?));
        }
        let seed_kek = seed_kek.expect("checked above");
        match kek_use {
            KekUse::ReadOnly => {
                tracing::warn!(
                    "no Vault credentials: using the KEK in {SEED_KEK_VAR} (the seed's fallback), read-only. \
                     Store it in Vault with `rotor migrate-kek --from-env {SEED_KEK_VAR}`"
                );
                Ok(KvSource::EnvKek(EnvKek::new(SEED_KEK_VAR, key_path, seed_kek)?))
            }
            KekUse::VaultOnly => bail!(
                "{SEED_KEK_VAR} (the seed's env fallback) is only read by `rotor validate` and `rotor open`; \
                 this command needs the KEK in Vault, since a rotation stores its new KEK there before \
                 moving any wallet. Store the key with `rotor migrate-kek --from-env {SEED_KEK_VAR}` and set \
                 VAULT_TOKEN (or VAULT_ROLE_ID and VAULT_SECRET_ID)"
            ),
        }
    }
}

impl KvSource {
    /// The Vault settings, if Vault may be used: for rotor.toml to fill in what the environment
    /// leaves unset.
    pub fn vault_config_mut(&mut self) -> Option<&mut VaultConfig> {
        match self {
            KvSource::Vault(config) | KvSource::VaultElseEnv(config, _) => Some(config),
            KvSource::EnvKek(_) | KvSource::Store(_) => None,
        }
    }

    /// The backend, with Vault checked (address, seal, token, KV v2 mount: see
    /// [`VaultClient::check`]); for [`KvSource::VaultElseEnv`], the environment's KEK if Vault
    /// rejects the token file.
    pub async fn connect(self) -> anyhow::Result<KvBackend> {
        match self {
            KvSource::Vault(config) => {
                let client = VaultClient::new(config)?;
                client.check().await?;
                Ok(KvBackend::Vault(client))
            }
            KvSource::EnvKek(kek) => Ok(KvBackend::EnvKek(Arc::new(kek))),
            KvSource::Store(store) => Ok(KvBackend::Store(store)),
            KvSource::VaultElseEnv(config, fallback) => {
                let client = VaultClient::new(config)?;
                match client.check().await {
                    Ok(()) => {
                        tracing::warn!(
                            "{} is set but ignored: rotor reads the KEK from Vault; remove it from the \
                             environment once `rotor validate` shows every wallet opens",
                            fallback.var
                        );
                        Ok(KvBackend::Vault(client))
                    }
                    Err(VaultError::BadTokenFile { path }) => {
                        let kek = EnvKek::new(fallback.var, &fallback.key_path, fallback.key)?;
                        tracing::warn!(
                            "Vault rejected the token in {} (invalid or expired; left by an earlier `bao login`), \
                             the only Vault credential: using the KEK in {} instead, read-only. Log in again \
                             or remove the file; commands that write need a valid token",
                            path.display(),
                            fallback.var
                        );
                        Ok(KvBackend::EnvKek(Arc::new(kek)))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Reads the KEK in environment variable `var` (for `rotor migrate-kek --from-env VAR`): 64 hex
/// characters, returned trimmed. An error names `var` and what is wrong, never the value.
pub fn kek_from_var(var: &str) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(var) {
        Ok(value) => check_kek_text(var, Zeroizing::new(value)),
        Err(std::env::VarError::NotPresent) => {
            bail!("environment variable {var} is not set (it should hold the KEK as 64 hex characters)")
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{var} does not hold a KEK: it is not valid UTF-8 (it must be 64 hex characters)")
        }
    }
}

/// A KEK as 64 hex characters (surrounding whitespace ignored), trimmed. The error names `var`
/// and what is wrong (length, non-hex characters), never the value.
fn check_kek_text(var: &str, key: Zeroizing<String>) -> anyhow::Result<Zeroizing<String>> {
    let trimmed = key.trim();
    let hex = trimmed.bytes().all(|b| b.is_ascii_hexdigit());
    if trimmed.len() != 64 || !hex {
        bail!(
            "{var} does not hold a KEK: it must be 64 hex characters (it has {} characters{})",
            trimmed.chars().count(),
            if hex { "" } else { ", not all hex" }
        );
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// A KEK from an environment variable, standing in for `<key-path>` version 1 with an empty
/// archive. `Debug` shows the variable's name only.
pub struct EnvKek {
    var: String,
    key_path: String,
    key: Zeroizing<String>,
}

impl std::fmt::Debug for EnvKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvKek").field("var", &self.var).field("key_path", &self.key_path).finish()
    }
}

impl EnvKek {
    /// Checks the key's shape here, so the error names the variable rather than a Vault path.
    pub fn new(var: &str, key_path: &str, key: Zeroizing<String>) -> anyhow::Result<EnvKek> {
        let key = check_kek_text(var, key)?;
        Ok(EnvKek { var: var.to_owned(), key_path: key_path.to_owned(), key })
    }

    fn read(&self, path: &str, version: Option<u64>) -> Option<KvSecret> {
        (path == self.key_path && version.is_none_or(|v| v == 1)).then(|| KvSecret {
            version: 1,
            created_time: String::new(),
            data: KvData::from([("key".to_owned(), self.key.clone())]),
        })
    }

    fn refuse<T>(&self, path: &str) -> Result<T, VaultError> {
        tracing::warn!(path, "refused a write: the KEK comes from {}, read-only", self.var);
        Err(VaultError::ReadOnly { path: path.to_owned(), source_var: self.var.clone() })
    }
}

/// The component's `kv` import is served by one of these.
#[derive(Clone, Debug)]
pub enum KvBackend {
    /// Vault's KV v2.
    Vault(VaultClient),
    /// The seed's KEK from the environment: `<key-path>` version 1, every write refused.
    EnvKek(Arc<EnvKek>),
    /// A store the embedding program supplies (see [`KvStore`]).
    Store(Arc<dyn KvStore>),
}

impl From<VaultClient> for KvBackend {
    fn from(client: VaultClient) -> Self {
        KvBackend::Vault(client)
    }
}

impl KvBackend {
    /// The Vault client, unless the KEK comes from the environment.
    pub fn vault(&self) -> Option<&VaultClient> {
        match self {
            KvBackend::Vault(client) => Some(client),
            KvBackend::EnvKek(_) | KvBackend::Store(_) => None,
        }
    }

    /// Whether writes can be stored: false only for the environment's KEK.
    pub fn writable(&self) -> bool {
        !matches!(self, KvBackend::EnvKek(_))
    }

    /// See [`VaultClient::read`].
    pub async fn read(&self, path: &str, version: Option<u64>) -> Result<Option<KvSecret>, VaultError> {
        match self {
            KvBackend::Vault(client) => client.read(path, version).await,
            KvBackend::EnvKek(kek) => Ok(kek.read(path, version)),
            KvBackend::Store(store) => store.read(path, version).await,
        }
    }

    /// See [`VaultClient::write`]; refused for the environment's KEK.
    pub async fn write(&self, path: &str, data: &KvData, cas: Option<u64>) -> Result<u64, VaultError> {
        match self {
            KvBackend::Vault(client) => client.write(path, data, cas).await,
            KvBackend::EnvKek(kek) => kek.refuse(path),
            KvBackend::Store(store) => store.write(path, data, cas).await,
        }
    }

    /// See [`VaultClient::list`]; the environment's KEK has no archive to list.
    pub async fn list(&self, path: &str) -> Result<Vec<String>, VaultError> {
        match self {
            KvBackend::Vault(client) => client.list(path).await,
            KvBackend::EnvKek(_) => Ok(Vec::new()),
            KvBackend::Store(store) => store.list(path).await,
        }
    }

    /// See [`VaultClient::metadata`]; the environment knows no version history: `None` there.
    pub async fn metadata(&self, path: &str) -> Result<Option<KvMetadata>, VaultError> {
        match self {
            KvBackend::Vault(client) => client.metadata(path).await,
            KvBackend::EnvKek(_) => Ok(None),
            KvBackend::Store(store) => store.metadata(path).await,
        }
    }

    /// See [`VaultClient::destroy_versions`]; refused for the environment's KEK.
    pub async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), VaultError> {
        match self {
            KvBackend::Vault(client) => client.destroy_versions(path, versions).await,
            KvBackend::EnvKek(kek) => kek.refuse(path),
            KvBackend::Store(store) => store.destroy_versions(path, versions).await,
        }
    }

    /// See [`VaultClient::delete_all`]; refused for the environment's KEK.
    pub async fn delete_all(&self, path: &str) -> Result<(), VaultError> {
        match self {
            KvBackend::Vault(client) => client.delete_all(path).await,
            KvBackend::EnvKek(kek) => kek.refuse(path),
            KvBackend::Store(store) => store.delete_all(path).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_kek() -> KvBackend {
        let key = Zeroizing::new("ab".repeat(32));
        KvBackend::EnvKek(Arc::new(EnvKek::new(SEED_KEK_VAR, "ibn/encryption-key", key).unwrap()))
    }

    #[tokio::test]
    async fn env_kek_serves_the_key_as_version_1_and_refuses_every_write() {
        let kv = env_kek();
        let secret = kv.read("ibn/encryption-key", None).await.unwrap().unwrap();
        assert_eq!((secret.version, secret.data["key"].as_str()), (1, "ab".repeat(32).as_str()));
        assert!(kv.read("ibn/encryption-key", Some(2)).await.unwrap().is_none());
        assert!(kv.read("ibn/encryption-key-archive/v1", None).await.unwrap().is_none());
        assert!(kv.list("ibn/encryption-key-archive/").await.unwrap().is_empty());
        let data = KvData::from([("key".to_owned(), Zeroizing::new("cd".repeat(32)))]);
        for refused in [
            kv.write("ibn/encryption-key", &data, Some(1)).await.map(drop),
            kv.destroy_versions("ibn/encryption-key", &[1]).await,
            kv.delete_all("ibn/encryption-key-archive/v1").await,
        ] {
            let err = refused.unwrap_err().to_string();
            assert!(err.contains("read-only") && err.contains("rotor migrate-kek"), "{err}");
        }
        assert!(kv.vault().is_none(), "no Vault client exists in this mode");
    }

    #[test]
    fn env_kek_must_be_64_hex_and_is_never_echoed() {
        for bad in ["abc123", &"zz".repeat(32), &"ab".repeat(33)] {
            let err = EnvKek::new(SEED_KEK_VAR, "k", Zeroizing::new(bad.to_owned())).unwrap_err().to_string();
            assert!(err.contains("64 hex characters") && err.contains(SEED_KEK_VAR), "{err}");
            assert!(!err.contains(bad), "the rejected key leaked: {err}");
        }
        let debug = format!("{:?}", env_kek());
        assert!(!debug.contains("abab"), "{debug}");
    }
}
