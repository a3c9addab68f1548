//! The token rotor acts with, and keeping it alive: a fixed token, or AppRole logins.
//!
//! A long rotation can outlive a short-lived token, so the session renews it (`renew-self`) once
//! two thirds of its TTL have passed, and with AppRole logs in again when renewal fails, when
//! the token nears its max TTL, or when Vault no longer knows it (expired, revoked). Every
//! request above the transport goes through [`Session::send`], which attaches the token.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::config::{VaultAuth, VaultConfig, check_path};
use super::error::{VaultError, decode};
use super::retry::{self, Replay};
use super::transport::{Envelope, Reply, Transport, base_url};

/// Answers any valid token (the default policy allows it): who the token is, and whether it is.
pub(super) const LOOKUP_SELF: &str = "auth/token/lookup-self";
const RENEW_SELF: &str = "auth/token/renew-self";
/// How soon to try again after a renewal and a new login both failed.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// What Vault said about the token rotor uses.
#[derive(Clone, Debug, Default)]
pub(super) struct TokenLease {
    /// Time to live granted by the last login or renewal; `None` for a token that never expires.
    ttl: Option<Duration>,
    /// The TTL a fresh token gets: a renewal granting less means the max TTL is near.
    full_ttl: Option<Duration>,
    renewable: bool,
}

impl TokenLease {
    /// When to renew: two thirds into the TTL, so a slow request or a busy machine still has a
    /// third of it to spare. `None` if the token never expires or cannot be renewed.
    fn renew_after(&self) -> Option<Duration> {
        let ttl = self.ttl.filter(|ttl| !ttl.is_zero())?;
        Some(ttl * 2 / 3)
    }

    /// A renewal that granted less than a fresh token gets: the max TTL cuts it short.
    fn nearing_max_ttl(&self) -> bool {
        matches!((self.ttl, self.full_ttl), (Some(ttl), Some(full)) if ttl < full)
    }
}

/// How many logins and renewals a client did: for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// AppRole logins, the first one included.
    pub logins: u32,
    /// Successful `renew-self` calls.
    pub renewals: u32,
    /// The current token's accessor (not a secret: it cannot be used to authenticate).
    pub accessor: Option<String>,
}

/// The token, how to get another, and the transport to send with it.
pub(super) struct Session {
    transport: Transport,
    /// How to log in again (AppRole), or the fixed token.
    auth: VaultAuth,
    /// The current token as a header value marked sensitive; cloning it shares the bytes rather
    /// than copying the secret. `None` until the first AppRole login.
    token: RwLock<Option<HeaderValue>>,
    /// The token's lease; held while logging in or renewing, so that only one does.
    lease: tokio::sync::Mutex<TokenLease>,
    stats: std::sync::Mutex<TokenStats>,
    renewer_running: AtomicBool,
    /// Where a fixed token was read from, if from `~/.vault-token`.
    token_file: Option<PathBuf>,
}

impl Session {
    /// Checks the settings (address, mount, credentials, then namespace and TLS) and builds the
    /// HTTP client; sends nothing.
    pub(super) fn new(config: VaultConfig) -> Result<Session, VaultError> {
        let addr = base_url(&config.addr)?;
        check_path("mount", &config.mount)?;
        let token = match &config.auth {
            VaultAuth::Token(token) => Some(token_header(token)?),
            VaultAuth::AppRole(role) => {
                check_path("AppRole mount (VAULT_APPROLE_MOUNT)", &role.mount)?;
                None
            }
        };
        let transport = Transport::new(addr, &config)?;
        Ok(Session {
            transport,
            auth: config.auth,
            token: RwLock::new(token),
            lease: tokio::sync::Mutex::new(TokenLease::default()),
            stats: std::sync::Mutex::new(TokenStats::default()),
            renewer_running: AtomicBool::new(false),
            token_file: config.token_file,
        })
    }

    /// Where requests go, and how.
    pub(super) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Logins and renewals so far, and the token's accessor.
    pub(super) fn stats(&self) -> TokenStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends one request with the current token. With AppRole, a token that Vault no longer
    /// knows (expired, revoked) is replaced by a new login and the request sent once more: a 403
    /// applied nothing.
    pub(super) async fn send(
        self: &Arc<Self>,
        method: Method,
        target: &str,
        body: Option<&[u8]>,
        replay: Replay,
    ) -> Result<Reply, VaultError> {
        let token = self.token().await?;
        let reply = self.transport.send_as(Some(&token), method.clone(), target, body, replay).await?;
        if reply.status == StatusCode::FORBIDDEN && matches!(self.auth, VaultAuth::AppRole(_)) {
            let dead = self
                .transport
                .send_as(Some(&token), Method::GET, LOOKUP_SELF, None, Replay::Safe)
                .await?
                .status
                == StatusCode::FORBIDDEN;
            if dead {
                let token = self.login_again(&token).await?;
                return self.transport.send_as(Some(&token), method, target, body, replay).await;
            }
        }
        Ok(reply)
    }

    /// `auth/token/lookup-self`, which fails only if the token is not valid (or Vault cannot
    /// say).
    pub(super) async fn lookup_self(self: &Arc<Self>) -> Result<Reply, VaultError> {
        let reply = self.send(Method::GET, LOOKUP_SELF, None, Replay::Safe).await?;
        match reply.status {
            status if status.is_success() => Ok(reply),
            StatusCode::FORBIDDEN => Err(self.bad_token()),
            _ => Err(self.fail(reply, LOOKUP_SELF, "read").await),
        }
    }

    /// Turns a non-success reply into the most specific error.
    pub(super) async fn fail(
        self: &Arc<Self>,
        reply: Reply,
        route: &str,
        capability: &'static str,
    ) -> VaultError {
        if reply.status != StatusCode::FORBIDDEN {
            return self.transport.error(reply, route);
        }
        if reply.errors().iter().any(|e| e.contains("invalid token")) {
            return self.bad_token();
        }
        // Vault answers a bare 403 "permission denied" both for a bad token and for a missing
        // policy grant; lookup-self is allowed for every valid token (default policy), so it
        // tells the two apart.
        match self.send(Method::GET, LOOKUP_SELF, None, Replay::Safe).await {
            Ok(reply) if reply.status == StatusCode::FORBIDDEN => self.bad_token(),
            _ => VaultError::PermissionDenied { path: route.to_owned(), capability },
        }
    }

    /// The token is not valid: named after where it came from.
    fn bad_token(&self) -> VaultError {
        match &self.token_file {
            Some(path) if matches!(self.auth, VaultAuth::Token(_)) => {
                VaultError::BadTokenFile { path: path.clone() }
            }
            _ => VaultError::BadToken,
        }
    }

    /// The current token, logging in through AppRole first if there is none yet.
    async fn token(self: &Arc<Self>) -> Result<HeaderValue, VaultError> {
        if let Some(token) = self.current_token() {
            return Ok(token);
        }
        let mut lease = self.lease.lock().await;
        match self.current_token() {
            Some(token) => Ok(token),
            None => self.login(&mut lease).await,
        }
    }

    fn current_token(&self) -> Option<HeaderValue> {
        self.token.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces `stale` by a fresh AppRole login, unless another request did so meanwhile.
    async fn login_again(self: &Arc<Self>, stale: &HeaderValue) -> Result<HeaderValue, VaultError> {
        let mut lease = self.lease.lock().await;
        match self.current_token() {
            Some(token) if token != stale => Ok(token),
            _ => {
                tracing::info!("the Vault token expired or was revoked: logging in again through AppRole");
                self.login(&mut lease).await
            }
        }
    }

    /// AppRole login: POST auth/<mount>/login. Called with the lease held.
    async fn login(self: &Arc<Self>, lease: &mut TokenLease) -> Result<HeaderValue, VaultError> {
        #[derive(Serialize)]
        struct Credentials<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let VaultAuth::AppRole(role) = &self.auth else {
            return Err(VaultError::BadToken); // a fixed token cannot be replaced
        };
        let route = format!("auth/{}/login", role.mount);
        let body = Zeroizing::new(
            serde_json::to_vec(&Credentials { role_id: &role.role_id, secret_id: &role.secret_id })
                .expect("strings serialise"),
        );
        // Not retried once sent: a secret ID may be limited to a number of uses.
        let reply =
            self.transport.send_as(None, Method::POST, &route, Some(&body), Replay::IfNotApplied).await?;
        if !reply.status.is_success() {
            if reply.sealed() {
                return Err(VaultError::Sealed { addr: self.transport.addr().to_owned() });
            }
            let answer = retry::describe(reply.status, &reply.errors(), &reply.body);
            return Err(VaultError::LoginFailed {
                mount: role.mount.clone(),
                reason: format!("HTTP {}: {answer}", reply.status.as_u16()),
            });
        }
        let auth = decode::<AuthReply>(&route, &reply.body)?.auth;
        let token = token_header(&auth.client_token)?;
        let ttl = Duration::from_secs(auth.lease_duration);
        *lease = TokenLease {
            ttl: (!ttl.is_zero()).then_some(ttl),
            full_ttl: (!ttl.is_zero()).then_some(ttl),
            renewable: auth.renewable,
        };
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.logins += 1;
            stats.accessor = Some(auth.accessor.clone());
        }
        tracing::debug!(mount = %role.mount, ttl_seconds = auth.lease_duration, "logged in to Vault through AppRole");
        self.start_renewer();
        Ok(token)
    }

    /// Learns a fixed token's TTL from a lookup-self answer, and keeps the token alive if it
    /// expires. (An AppRole token's lease comes with its login.)
    pub(super) async fn adopt_lease(self: &Arc<Self>, lookup: &Reply) {
        #[derive(Deserialize)]
        struct Lookup {
            #[serde(default)]
            ttl: u64,
            #[serde(default)]
            creation_ttl: u64,
            #[serde(default)]
            renewable: bool,
            #[serde(default)]
            accessor: String,
        }
        if !matches!(self.auth, VaultAuth::Token(_)) {
            return;
        }
        let Ok(found) = decode::<Envelope<Lookup>>(LOOKUP_SELF, &lookup.body).map(|e| e.data) else {
            return;
        };
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).accessor =
            Some(found.accessor).filter(|a| !a.is_empty());
        if found.ttl == 0 || !found.renewable {
            return; // never expires, or cannot be helped
        }
        *self.lease.lock().await = TokenLease {
            ttl: Some(Duration::from_secs(found.ttl)),
            full_ttl: Some(Duration::from_secs(found.creation_ttl.max(found.ttl))),
            renewable: true,
        };
        self.start_renewer();
    }

    /// Renews the token, or with AppRole logs in again when renewal fails or the max TTL is near.
    async fn refresh(self: &Arc<Self>) {
        let mut lease = self.lease.lock().await;
        let Some(token) = self.current_token() else { return };
        let approle = matches!(self.auth, VaultAuth::AppRole(_));
        let renewed = if lease.renewable {
            self.renew_self(&token, lease.full_ttl).await
        } else {
            Err(VaultError::Config("the token is not renewable".into()))
        };
        match renewed {
            Ok(auth) => {
                lease.ttl = Some(Duration::from_secs(auth.lease_duration)).filter(|ttl| !ttl.is_zero());
                lease.renewable = auth.renewable;
                self.stats.lock().unwrap_or_else(PoisonError::into_inner).renewals += 1;
                tracing::debug!(ttl_seconds = auth.lease_duration, "renewed the Vault token");
                if lease.nearing_max_ttl() {
                    if approle {
                        tracing::info!("the Vault token nears its max TTL: logging in again through AppRole");
                        if let Err(e) = self.login(&mut lease).await {
                            tracing::warn!(
                                "could not log in to Vault again: {e}; the token lasts {}s more",
                                auth.lease_duration
                            );
                            lease.ttl = Some(REFRESH_RETRY * 3 / 2);
                        }
                    } else {
                        tracing::warn!(
                            "the Vault token reaches its max TTL in {}s and cannot be renewed further",
                            auth.lease_duration
                        );
                    }
                }
            }
            Err(e) if approle => {
                tracing::warn!("could not renew the Vault token ({e}): logging in again through AppRole");
                if let Err(e) = self.login(&mut lease).await {
                    tracing::warn!("could not log in to Vault again: {e}; retrying in {REFRESH_RETRY:?}");
                    lease.ttl = Some(REFRESH_RETRY * 3 / 2);
                }
            }
            Err(e) => {
                tracing::warn!("could not renew the Vault token: {e}; it will expire");
                lease.ttl = None;
            }
        }
    }

    async fn renew_self(
        self: &Arc<Self>,
        token: &HeaderValue,
        increment: Option<Duration>,
    ) -> Result<AuthBody, VaultError> {
        let body = match increment {
            Some(ttl) => serde_json::json!({ "increment": format!("{}s", ttl.as_secs()) }),
            None => serde_json::json!({}),
        };
        let body = serde_json::to_vec(&body).expect("JSON serialises");
        let reply =
            self.transport.send_as(Some(token), Method::POST, RENEW_SELF, Some(&body), Replay::Safe).await?;
        match reply.status {
            status if status.is_success() => Ok(decode::<AuthReply>(RENEW_SELF, &reply.body)?.auth),
            // Every valid token may renew itself (the default policy), so a 403 here means the
            // token is dead. Not `fail`, which tells a dead token from a missing grant by way of
            // `send`, and `send` may log in again: the caller holds the lease that login takes,
            // and would wait for itself for ever.
            StatusCode::FORBIDDEN => Err(self.bad_token()),
            _ => Err(self.transport.error(reply, RENEW_SELF)),
        }
    }

    /// Starts the task that renews the token two thirds into each TTL. It holds the session
    /// weakly, so it ends with the client.
    fn start_renewer(self: &Arc<Self>) {
        if self.renewer_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(session) = weak.upgrade() else { return };
                    let wait = session.lease.lock().await.renew_after();
                    if wait.is_none() {
                        session.renewer_running.store(false, Ordering::SeqCst);
                        return;
                    }
                    wait
                };
                tokio::time::sleep(wait.unwrap_or_default()).await;
                let Some(session) = weak.upgrade() else { return };
                session.refresh().await;
            }
        });
    }
}

/// The `auth` block of a login or renewal.
#[derive(Deserialize)]
struct AuthReply {
    auth: AuthBody,
}

#[derive(Deserialize)]
struct AuthBody {
    #[serde(default)]
    client_token: String,
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

impl Drop for AuthBody {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.client_token);
    }
}

/// A token as a header value marked sensitive (hidden from `Debug`).
fn token_header(token: &str) -> Result<HeaderValue, VaultError> {
    let mut value = HeaderValue::from_str(token).map_err(|_| {
        VaultError::Config("the Vault token contains characters not allowed in HTTP headers".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::AppRole;

    #[test]
    fn renews_two_thirds_into_the_ttl() {
        let lease = TokenLease { ttl: Some(Duration::from_secs(30)), ..TokenLease::default() };
        assert_eq!(lease.renew_after(), Some(Duration::from_secs(20)));
        assert_eq!(TokenLease::default().renew_after(), None, "a token without TTL never expires");
        let cut = TokenLease {
            ttl: Some(Duration::from_secs(4)),
            full_ttl: Some(Duration::from_secs(10)),
            ..TokenLease::default()
        };
        assert!(cut.nearing_max_ttl());
    }

    #[test]
    fn token_headers_are_sensitive_and_refusals_do_not_quote_the_token() {
        let header = token_header("hvs.SECRET").unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("SECRET"));
        let err = token_header("hvs.SECRET\nX-Injected: 1").unwrap_err().to_string();
        assert!(err.contains("not allowed in HTTP headers") && !err.contains("SECRET"), "{err}");
    }

    #[test]
    fn settings_are_checked_before_anything_is_sent() {
        let mut approle = VaultConfig::with_token("http://127.0.0.1:8200", "unused");
        approle.auth = VaultAuth::AppRole(AppRole {
            mount: "/approle".into(),
            role_id: Zeroizing::new("r".into()),
            secret_id: Zeroizing::new("s".into()),
        });
        let err = Session::new(approle).err().expect("a mount with a leading / is refused").to_string();
        assert!(err.contains("AppRole mount (VAULT_APPROLE_MOUNT)"), "{err}");

        // Several settings wrong: the address is named first, as it always was.
        let mut both = VaultConfig::with_token("vault:8200", "line\nbreak");
        both.mount = "/secret".into();
        let err = Session::new(both).err().expect("refused").to_string();
        assert!(err.contains("VAULT_ADDR"), "{err}");
    }
}
