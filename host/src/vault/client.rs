//! [`VaultClient`]: one Vault server and one KV v2 mount, checked before work starts. Its KV v2
//! operations are in [`super::kv`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::auth::{LOOKUP_SELF, Session, TokenStats};
use super::config::VaultConfig;
use super::error::{VaultError, decode};
use super::identity::VaultIdentity;
use super::retry::Replay;
use super::transport::{Envelope, Reply};

/// Vault KV v2 client for one mount. Cheap to clone; clones share one connection pool and one
/// token. `Debug` shows where it points, never the token.
#[derive(Clone)]
pub struct VaultClient {
    session: Arc<Session>,
    /// Whether the mount was found to be KV v2 (or could not be looked up).
    mount_checked: Arc<AtomicBool>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = self.session.transport();
        f.debug_struct("VaultClient")
            .field("addr", &transport.addr())
            .field("mount", &transport.mount())
            .field("namespace", &transport.namespace())
            .finish_non_exhaustive()
    }
}

impl VaultClient {
    /// Validates the configuration and builds the HTTP client; sends nothing (see [`Self::check`]).
    pub fn new(config: VaultConfig) -> Result<Self, VaultError> {
        Ok(Self { session: Arc::new(Session::new(config)?), mount_checked: Arc::new(AtomicBool::new(false)) })
    }

    /// The KV v2 mount path, e.g. `secret`.
    pub fn mount(&self) -> &str {
        self.session.transport().mount()
    }

    /// The server's base URL, without a trailing `/`.
    pub fn addr(&self) -> &str {
        self.session.transport().addr()
    }

    /// Logs in (AppRole) and verifies address and token with `auth/token/lookup-self`, so
    /// misconfiguration surfaces before any work starts: [`VaultError::Unreachable`],
    /// [`VaultError::Sealed`], [`VaultError::LoginFailed`], [`VaultError::BadToken`] (or
    /// [`VaultError::BadTokenFile`]); then that the mount is KV v2 ([`VaultError::KvV1`],
    /// [`VaultError::NotKv`]). A token that expires is renewed from then on, in the background,
    /// for as long as the client lives.
    pub async fn check(&self) -> Result<(), VaultError> {
        let lookup = self.session.lookup_self().await?;
        self.session.adopt_lease(&lookup).await;
        self.check_mount().await
    }

    /// Who Vault knows the token as (`auth/token/lookup-self`): display name, entity, AppRole
    /// role, policies. Never the token itself.
    pub async fn identity(&self) -> Result<VaultIdentity, VaultError> {
        VaultIdentity::from_lookup(LOOKUP_SELF, &self.session.lookup_self().await?.body)
    }

    /// Logins and renewals so far, and the token's accessor.
    pub fn token_stats(&self) -> TokenStats {
        self.session.stats()
    }

    /// Which Vault policies allow this token to do what on `paths` (`sys/capabilities-self`).
    /// `Ok(None)` when the token may not ask: the caller then learns from the requests themselves.
    pub async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, VaultError> {
        const ROUTE: &str = "sys/capabilities-self";
        let body = serde_json::to_vec(&serde_json::json!({ "paths": paths })).expect("strings serialise");
        let reply = self.send(Method::POST, ROUTE, Some(&body), Replay::Safe).await?;
        if reply.status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.fail(reply, ROUTE, "update").await);
        }
        // The answer maps each path to its capabilities (beside a few other fields).
        let answer: BTreeMap<String, serde_json::Value> = decode(ROUTE, &reply.body)?;
        Ok(Some(
            paths
                .iter()
                .map(|path| {
                    let granted = answer
                        .get(path)
                        .and_then(|v| v.as_array())
                        .map(|caps| caps.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    (path.clone(), granted)
                })
                .collect(),
        ))
    }

    /// Fails on a mount that is not KV v2, unless that was settled before. A KV v1 mount would
    /// otherwise answer rotor's `<mount>/data/<path>` reads as "no such secret", and rotor would
    /// say there is no KEK.
    pub(super) async fn check_mount_once(&self) -> Result<(), VaultError> {
        if self.mount_checked.load(Ordering::Relaxed) { Ok(()) } else { self.check_mount().await }
    }

    /// `sys/internal/ui/mounts/<mount>` answers any token with some grant under the mount; when
    /// it does not answer (no grant, an older server), rotor learns from the requests themselves.
    async fn check_mount(&self) -> Result<(), VaultError> {
        #[derive(Deserialize)]
        struct Mount {
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(default)]
            options: Option<BTreeMap<String, String>>,
            #[serde(default)]
            path: String,
        }
        let route = format!("sys/internal/ui/mounts/{}", self.mount());
        let reply = self.send(Method::GET, &route, None, Replay::Safe).await?;
        if !reply.status.is_success() {
            tracing::debug!(status = reply.status.as_u16(), "cannot look up the KV mount's version");
            self.mount_checked.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let Ok(Envelope { data: mount }) = decode::<Envelope<Mount>>(&route, &reply.body) else {
            tracing::debug!("unexpected answer looking up the KV mount's version");
            self.mount_checked.store(true, Ordering::Relaxed);
            return Ok(());
        };
        let path = if mount.path.is_empty() { format!("{}/", self.mount()) } else { mount.path };
        let version = mount.options.as_ref().and_then(|o| o.get("version")).map(String::as_str);
        match (mount.kind.as_str(), version) {
            ("kv" | "generic", Some("2")) => {}
            ("kv" | "generic", _) => return Err(VaultError::KvV1 { mount: path }),
            (kind, _) => return Err(VaultError::NotKv { mount: path, kind: kind.to_owned() }),
        }
        self.mount_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Sends one request with the current token (see [`Session::send`]).
    pub(super) async fn send(
        &self,
        method: Method,
        target: &str,
        body: Option<&[u8]>,
        replay: Replay,
    ) -> Result<Reply, VaultError> {
        self.session.send(method, target, body, replay).await
    }

    /// The most specific error for a reply that is not a success; `capability` is what the
    /// request needs of the token's policy on `route`.
    pub(super) async fn fail(&self, reply: Reply, route: &str, capability: &'static str) -> VaultError {
        self.session.fail(reply, route, capability).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str) -> VaultConfig {
        VaultConfig {
            namespace: Some("team-a".into()),
            ..VaultConfig::with_token("http://127.0.0.1:8200/", token)
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        let token = "hvs.SUPERSECRETTOKEN";
        let config = config(token);
        assert!(!format!("{config:?}").contains(token));
        let client = VaultClient::new(config).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("team-a") && debug.contains("\"secret\""), "{debug}");
        assert_eq!(client.addr(), "http://127.0.0.1:8200");
        assert_eq!(client.mount(), "secret");
    }

    #[test]
    fn rejects_bad_config() {
        let mut bad_addr = config("t");
        bad_addr.addr = "127.0.0.1:8200".into();
        assert!(matches!(VaultClient::new(bad_addr), Err(VaultError::Config(_))));

        let err = VaultClient::new(config("line\nbreak")).unwrap_err();
        assert!(!err.to_string().contains("break"), "{err}");

        let mut bad_mount = config("t");
        bad_mount.mount = "/secret".into();
        assert!(matches!(VaultClient::new(bad_mount), Err(VaultError::Config(_))));

        let mut bad_namespace = config("t");
        bad_namespace.namespace = Some("team\na".into());
        let err = VaultClient::new(bad_namespace).unwrap_err().to_string();
        assert!(err.contains("VAULT_NAMESPACE"), "{err}");
    }
}
