//! Vault KV v2 client: the only way rotor talks to Vault (or OpenBao, which serves the same API).
//!
//! Secrets must not leak: the token and secret values are held in [`Zeroizing`] buffers, never
//! appear in `Debug` output or errors, and logs carry only method, route and status.
//! Logging in (token or AppRole) and keeping the token alive: see [`crate::vault_auth`].

use std::{
    collections::BTreeMap,
    fmt,
    path::PathBuf,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::{
    Certificate, Method, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crate::vault_auth::{AppRole, TokenLease, TokenStats, VaultAuth, VaultIdentity};
pub use crate::vault_error::VaultError;
use crate::vault_error::decode;
pub use crate::vault_retry::{DEFAULT_RETRY_FOR, RETRY_FOR_VAR};
use crate::vault_retry::{FIRST_CONTACT_RETRY_FOR, Replay, Schedule, Tries};

const DEFAULT_ADDR: &str = "http://127.0.0.1:8200";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const LOOKUP_SELF: &str = "auth/token/lookup-self";
const RENEW_SELF: &str = "auth/token/renew-self";
/// How soon to try again after a renewal and a new login both failed.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// Where and how to reach Vault. `Debug` redacts the credentials.
#[derive(Clone)]
pub struct VaultConfig {
    /// Base URL, e.g. `https://vault.example:8200`.
    pub addr: String,
    /// How to get the token sent as `X-Vault-Token`.
    pub auth: VaultAuth,
    /// Vault Enterprise namespace sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// PEM file with an extra CA to trust (a private CA usually signs Vault's certificate).
    pub ca_cert: Option<PathBuf>,
    /// Accept any TLS certificate (`VAULT_SKIP_VERIFY`): for a test server only.
    pub skip_verify: bool,
    /// Path the KV v2 engine is mounted at, e.g. `secret`.
    pub mount: String,
    /// Limit for each HTTP request, including reading the response.
    pub timeout: Duration,
    /// How long a request is retried while Vault answers 429/5xx or cannot be reached (see
    /// [`crate::vault_retry`]): `retry-for` under `[vault]`, or `ROTOR_VAULT_RETRY_FOR`.
    pub retry_for: Duration,
    /// The `~/.vault-token` file the token was read from, if that is where it came from: named
    /// when Vault rejects the token.
    pub token_file: Option<PathBuf>,
}

impl VaultConfig {
    /// Reads the standard Vault CLI variables: `VAULT_ADDR` (default `http://127.0.0.1:8200`),
    /// the credentials (see [`VaultAuth::from_env`]), `VAULT_NAMESPACE`, `VAULT_CACERT` and
    /// `VAULT_SKIP_VERIFY`; and rotor's `ROTOR_VAULT_RETRY_FOR` (default 60 s).
    pub fn from_env(mount: &str) -> Result<Self, VaultError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        let retry_for = match var(RETRY_FOR_VAR) {
            Some(text) => {
                crate::vault_retry::parse_retry_for(RETRY_FOR_VAR, &text).map_err(VaultError::Config)?
            }
            None => DEFAULT_RETRY_FOR,
        };
        Ok(Self {
            addr: var("VAULT_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            auth: VaultAuth::from_env()?,
            namespace: var("VAULT_NAMESPACE"),
            ca_cert: var("VAULT_CACERT").map(PathBuf::from),
            skip_verify: crate::vault_auth::skip_verify_from_env()?,
            mount: mount.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            retry_for,
            token_file: crate::vault_auth::token_file_in_use(),
        })
    }

    /// `addr` with a fixed token, KV v2 at `secret`, no TLS options: for tests and the demo.
    pub fn with_token(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            auth: VaultAuth::Token(Zeroizing::new(token.to_owned())),
            namespace: None,
            ca_cert: None,
            skip_verify: false,
            mount: "secret".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            retry_for: DEFAULT_RETRY_FOR,
            token_file: None,
        }
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("skip_verify", &self.skip_verify)
            .field("mount", &self.mount)
            .field("timeout", &self.timeout)
            .field("retry_for", &self.retry_for)
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// One version of a secret. `Debug` shows the field names, never the values.
pub struct KvSecret {
    /// Version number, starting at 1.
    pub version: u64,
    /// RFC 3339 time the version was written.
    pub created_time: String,
    /// Field name → value; non-string JSON values are kept as their JSON text.
    pub data: BTreeMap<String, Zeroizing<String>>,
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

/// Vault KV v2 client for one mount. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    addr: String,
    mount: String,
    namespace: Option<String>,
    timeout: Duration,
    /// How to log in again (AppRole), or the fixed token.
    auth: VaultAuth,
    /// The current token as a header value marked sensitive; cloning it shares the bytes rather
    /// than copying the secret. `None` until the first AppRole login.
    token: RwLock<Option<HeaderValue>>,
    /// The token's lease; held while logging in or renewing, so that only one does.
    lease: tokio::sync::Mutex<TokenLease>,
    stats: std::sync::Mutex<TokenStats>,
    renewer_running: AtomicBool,
    retry_for: Duration,
    token_file: Option<PathBuf>,
    /// Whether Vault has answered once: until then retries stop after a second (see
    /// [`FIRST_CONTACT_RETRY_FOR`]).
    contacted: AtomicBool,
    /// Whether the mount was found to be KV v2 (or could not be looked up).
    mount_checked: AtomicBool,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("addr", &self.inner.addr)
            .field("mount", &self.inner.mount)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// A status and body; the body may hold secret values, hence zeroized on drop.
struct Reply {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
    /// The attempts it took.
    tries: Tries,
}

impl Reply {
    fn errors(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        serde_json::from_slice::<Errors>(&self.body).map(|e| e.errors).unwrap_or_default()
    }

    /// KV v2 answers 404 with no error text for missing, deleted and destroyed versions; a 404
    /// with errors means something else (e.g. no such mount).
    fn absent(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.errors().is_empty()
    }

    /// 503 "Vault is sealed": nothing was applied.
    fn sealed(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE && self.errors().iter().any(|e| e.contains("sealed"))
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

impl VaultClient {
    /// Validates the configuration and builds the HTTP client; sends nothing (see [`Self::check`]).
    pub fn new(config: VaultConfig) -> Result<Self, VaultError> {
        let addr = config.addr.trim_end_matches('/').to_owned();
        if !reqwest::Url::parse(&addr).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(VaultError::Config(format!("VAULT_ADDR `{addr}` is not an http:// or https:// URL")));
        }
        check_path("mount", &config.mount)?;
        let token = match &config.auth {
            VaultAuth::Token(token) => Some(token_header(token)?),
            VaultAuth::AppRole(role) => {
                check_path("AppRole mount (VAULT_APPROLE_MOUNT)", &role.mount)?;
                None
            }
        };
        let mut headers = HeaderMap::new();
        if let Some(ns) = &config.namespace {
            let value = HeaderValue::from_str(ns).map_err(|_| {
                VaultError::Config(format!("VAULT_NAMESPACE `{ns}` is not a valid header value"))
            })?;
            headers.insert("X-Vault-Namespace", value);
        }
        let mut builder = reqwest::Client::builder().timeout(config.timeout).default_headers(headers);
        if let Some(path) = &config.ca_cert {
            let cert = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
                .map_err(|e| VaultError::Config(format!("VAULT_CACERT {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        if config.skip_verify {
            tracing::warn!(
                "VAULT_SKIP_VERIFY is set: rotor does not verify Vault's TLS certificate, so anyone on the \
                 network path can pose as Vault and read the KEK; use VAULT_CACERT instead"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http =
            builder.build().map_err(|e| VaultError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                addr,
                mount: config.mount,
                namespace: config.namespace,
                timeout: config.timeout,
                auth: config.auth,
                token: RwLock::new(token),
                lease: tokio::sync::Mutex::new(TokenLease::default()),
                stats: std::sync::Mutex::new(TokenStats::default()),
                renewer_running: AtomicBool::new(false),
                retry_for: config.retry_for,
                token_file: config.token_file,
                contacted: AtomicBool::new(false),
                mount_checked: AtomicBool::new(false),
            }),
        })
    }

    /// The KV v2 mount path, e.g. `secret`.
    pub fn mount(&self) -> &str {
        &self.inner.mount
    }

    /// The server's base URL, without a trailing `/`.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Logs in (AppRole) and verifies address and token with `auth/token/lookup-self`, so
    /// misconfiguration surfaces before any work starts: [`VaultError::Unreachable`],
    /// [`VaultError::Sealed`], [`VaultError::LoginFailed`], [`VaultError::BadToken`] (or
    /// [`VaultError::BadTokenFile`]); then that the mount is KV v2 ([`VaultError::KvV1`],
    /// [`VaultError::NotKv`]). A token that expires is renewed from then on, in the background,
    /// for as long as the client lives.
    pub async fn check(&self) -> Result<(), VaultError> {
        let reply = self.send(Method::GET, LOOKUP_SELF, None, Replay::Safe).await?;
        match reply.status {
            status if status.is_success() => {
                if matches!(self.inner.auth, VaultAuth::Token(_)) {
                    self.adopt_token_lease(&reply).await;
                }
            }
            StatusCode::FORBIDDEN => return Err(self.bad_token()),
            _ => return Err(self.fail(reply, LOOKUP_SELF, "read").await),
        }
        self.check_mount().await
    }

    /// Who Vault knows the token as (`auth/token/lookup-self`): display name, entity, AppRole
    /// role, policies. Never the token itself.
    pub async fn identity(&self) -> Result<VaultIdentity, VaultError> {
        let reply = self.send(Method::GET, LOOKUP_SELF, None, Replay::Safe).await?;
        match reply.status {
            status if status.is_success() => VaultIdentity::from_lookup(LOOKUP_SELF, &reply.body),
            StatusCode::FORBIDDEN => Err(self.bad_token()),
            _ => Err(self.fail(reply, LOOKUP_SELF, "read").await),
        }
    }

    /// Fails on a mount that is not KV v2. A KV v1 mount would otherwise answer rotor's
    /// `<mount>/data/<path>` reads as "no such secret", and rotor would say there is no KEK.
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
        let route = format!("sys/internal/ui/mounts/{}", self.inner.mount);
        let reply = self.send(Method::GET, &route, None, Replay::Safe).await?;
        if !reply.status.is_success() {
            tracing::debug!(status = reply.status.as_u16(), "cannot look up the KV mount's version");
            self.inner.mount_checked.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let Ok(Envelope { data: mount }) = decode::<Envelope<Mount>>(&route, &reply.body) else {
            tracing::debug!("unexpected answer looking up the KV mount's version");
            self.inner.mount_checked.store(true, Ordering::Relaxed);
            return Ok(());
        };
        let path = if mount.path.is_empty() { format!("{}/", self.inner.mount) } else { mount.path };
        let version = mount.options.as_ref().and_then(|o| o.get("version")).map(String::as_str);
        match (mount.kind.as_str(), version) {
            ("kv" | "generic", Some("2")) => {}
            ("kv" | "generic", _) => return Err(VaultError::KvV1 { mount: path }),
            (kind, _) => return Err(VaultError::NotKv { mount: path, kind: kind.to_owned() }),
        }
        self.inner.mount_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Logins and renewals so far, and the token's accessor.
    pub fn token_stats(&self) -> TokenStats {
        self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
            if !self.inner.mount_checked.load(Ordering::Relaxed) {
                self.check_mount().await?;
            }
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
    pub async fn write(
        &self,
        path: &str,
        data: &BTreeMap<String, Zeroizing<String>>,
        cas: Option<u64>,
    ) -> Result<u64, VaultError> {
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
    async fn our_write(
        &self,
        path: &str,
        data: &BTreeMap<String, Zeroizing<String>>,
        version: u64,
    ) -> Result<Option<u64>, VaultError> {
        let Some(found) = self.read(path, Some(version)).await? else { return Ok(None) };
        let same = found.data.len() == data.len()
            && found.data.iter().zip(data).all(|((k1, v1), (k2, v2))| k1 == k2 && v1.as_str() == v2.as_str());
        Ok(same.then_some(found.version))
    }

    /// Lists the keys under a folder (`""` for the mount's root); sub-folders end in `/`.
    /// A folder that does not exist lists as empty.
    pub async fn list(&self, path: &str) -> Result<Vec<String>, VaultError> {
        // Folders are written with a trailing `/` (as `list` returns them); the route has none.
        let path = path.strip_suffix('/').unwrap_or(path);
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        let route = if path.is_empty() {
            format!("{}/metadata", self.inner.mount)
        } else {
            self.route("metadata", path)?
        };
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

    /// The current token, logging in through AppRole first if there is none yet.
    async fn token(&self) -> Result<HeaderValue, VaultError> {
        if let Some(token) = self.current_token() {
            return Ok(token);
        }
        let mut lease = self.inner.lease.lock().await;
        match self.current_token() {
            Some(token) => Ok(token),
            None => self.login(&mut lease).await,
        }
    }

    fn current_token(&self) -> Option<HeaderValue> {
        self.inner.token.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces `stale` by a fresh AppRole login, unless another request did so meanwhile.
    async fn login_again(&self, stale: &HeaderValue) -> Result<HeaderValue, VaultError> {
        let mut lease = self.inner.lease.lock().await;
        match self.current_token() {
            Some(token) if token != stale => Ok(token),
            _ => {
                tracing::info!("the Vault token expired or was revoked: logging in again through AppRole");
                self.login(&mut lease).await
            }
        }
    }

    /// AppRole login: POST auth/<mount>/login. Called with the lease held.
    async fn login(&self, lease: &mut TokenLease) -> Result<HeaderValue, VaultError> {
        #[derive(Serialize)]
        struct Credentials<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let VaultAuth::AppRole(role) = &self.inner.auth else {
            return Err(VaultError::BadToken); // a fixed token cannot be replaced
        };
        let route = format!("auth/{}/login", role.mount);
        let body = Zeroizing::new(
            serde_json::to_vec(&Credentials { role_id: &role.role_id, secret_id: &role.secret_id })
                .expect("strings serialise"),
        );
        // Not retried once sent: a secret ID may be limited to a number of uses.
        let reply = self.send_as(None, Method::POST, &route, Some(&body), Replay::IfNotApplied).await?;
        if !reply.status.is_success() {
            if reply.sealed() {
                return Err(VaultError::Sealed { addr: self.inner.addr.clone() });
            }
            let answer = crate::vault_retry::describe(reply.status, &reply.errors(), &reply.body);
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
            accessor: Some(auth.accessor.clone()),
        };
        *self.inner.token.write().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        {
            let mut stats = self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.logins += 1;
            stats.accessor = Some(auth.accessor.clone());
        }
        tracing::debug!(mount = %role.mount, ttl_seconds = auth.lease_duration, "logged in to Vault through AppRole");
        self.start_renewer();
        Ok(token)
    }

    /// Learns a fixed token's TTL from lookup-self, and keeps it alive if it expires.
    async fn adopt_token_lease(&self, reply: &Reply) {
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
        let Ok(found) = decode::<Envelope<Lookup>>(LOOKUP_SELF, &reply.body).map(|e| e.data) else {
            return;
        };
        self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner).accessor =
            Some(found.accessor.clone()).filter(|a| !a.is_empty());
        if found.ttl == 0 || !found.renewable {
            return; // never expires, or cannot be helped
        }
        *self.inner.lease.lock().await = TokenLease {
            ttl: Some(Duration::from_secs(found.ttl)),
            full_ttl: Some(Duration::from_secs(found.creation_ttl.max(found.ttl))),
            renewable: true,
            accessor: Some(found.accessor),
        };
        self.start_renewer();
    }

    /// Renews the token, or with AppRole logs in again when renewal fails or the max TTL is near.
    async fn refresh(&self) {
        let mut lease = self.inner.lease.lock().await;
        let Some(token) = self.current_token() else { return };
        let approle = matches!(self.inner.auth, VaultAuth::AppRole(_));
        let renewed = if lease.renewable {
            self.renew_self(&token, lease.full_ttl).await
        } else {
            Err(VaultError::Config("the token is not renewable".into()))
        };
        match renewed {
            Ok(auth) => {
                lease.ttl = Some(Duration::from_secs(auth.lease_duration)).filter(|ttl| !ttl.is_zero());
                lease.renewable = auth.renewable;
                self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner).renewals += 1;
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
        &self,
        token: &HeaderValue,
        increment: Option<Duration>,
    ) -> Result<AuthBody, VaultError> {
        let body = match increment {
            Some(ttl) => serde_json::json!({ "increment": format!("{}s", ttl.as_secs()) }),
            None => serde_json::json!({}),
        };
        let body = serde_json::to_vec(&body).expect("JSON serialises");
        let reply = self.send_as(Some(token), Method::POST, RENEW_SELF, Some(&body), Replay::Safe).await?;
        if !reply.status.is_success() {
            return Err(self.fail(reply, RENEW_SELF, "update").await);
        }
        Ok(decode::<AuthReply>(RENEW_SELF, &reply.body)?.auth)
    }

    /// Starts the task that renews the token two thirds into each TTL. It holds the client
    /// weakly, so it ends with the client.
    fn start_renewer(&self) {
        if self.inner.renewer_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = weak.upgrade() else { return };
                    let wait = inner.lease.lock().await.renew_after();
                    if wait.is_none() {
                        inner.renewer_running.store(false, Ordering::SeqCst);
                        return;
                    }
                    wait
                };
                tokio::time::sleep(wait.unwrap_or_default()).await;
                let Some(inner) = weak.upgrade() else { return };
                VaultClient { inner }.refresh().await;
            }
        });
    }

    fn route(&self, kind: &str, path: &str) -> Result<String, VaultError> {
        check_path("secret path", path)?;
        Ok(format!("{}/{kind}/{path}", self.inner.mount))
    }

    /// Sends one request with the current token. With AppRole, a token that Vault no longer
    /// knows (expired, revoked) is replaced by a new login and the request sent once more: a 403
    /// applied nothing.
    async fn send(
        &self,
        method: Method,
        target: &str,
        body: Option<&[u8]>,
        replay: Replay,
    ) -> Result<Reply, VaultError> {
        let token = self.token().await?;
        let reply = self.send_as(Some(&token), method.clone(), target, body, replay).await?;
        if reply.status == StatusCode::FORBIDDEN && matches!(self.inner.auth, VaultAuth::AppRole(_)) {
            let dead = self.send_as(Some(&token), Method::GET, LOOKUP_SELF, None, Replay::Safe).await?.status
                == StatusCode::FORBIDDEN;
            if dead {
                let token = self.login_again(&token).await?;
                return self.send_as(Some(&token), method, target, body, replay).await;
            }
        }
        Ok(reply)
    }

    /// Sends one request as `token`, retrying with backoff what [`crate::vault_retry`] says may
    /// be retried, for `retry-for` (for a second only until Vault first answers). The first
    /// retry is logged as a warning, the others at debug level: one line per request, not one
    /// per attempt. What was tried is kept in the reply, for the error message if it failed.
    async fn send_as(
        &self,
        token: Option<&HeaderValue>,
        method: Method,
        target: &str,
        body: Option<&[u8]>,
        replay: Replay,
    ) -> Result<Reply, VaultError> {
        let url = format!("{}/v1/{target}", self.inner.addr);
        let window = if self.inner.contacted.load(Ordering::Relaxed) {
            self.inner.retry_for
        } else {
            FIRST_CONTACT_RETRY_FOR.min(self.inner.retry_for)
        };
        let mut schedule = Schedule::new(replay, window);
        let mut warned = false;
        loop {
            let outcome = self.attempt(token, &method, &url, body).await;
            let retry = match &outcome {
                Ok(reply) => {
                    if !crate::vault_retry::is_hiccup(reply.status) {
                        self.inner.contacted.store(true, Ordering::Relaxed);
                    }
                    crate::vault_retry::retry_status(replay, reply.status, reply.sealed())
                }
                Err(e) => crate::vault_retry::retry_transport(replay, e),
            };
            let delay = if retry { schedule.next_delay() } else { None };
            let Some(delay) = delay else {
                let tries = schedule.tries();
                // The error, if it failed for good, says what was tried.
                if warned && let Ok(reply) = &outcome {
                    let status = reply.status.as_u16();
                    tracing::info!(%method, route = target, status, "Vault answered after {tries}");
                }
                return match outcome {
                    Ok(mut reply) => {
                        reply.tries = tries;
                        Ok(reply)
                    }
                    Err(e) => Err(self.unreachable(&e, warned.then_some(tries))),
                };
            };
            let what = match &outcome {
                Ok(reply) => format!(
                    "Vault answered HTTP {}: {}",
                    reply.status.as_u16(),
                    crate::vault_retry::describe(reply.status, &reply.errors(), &reply.body)
                ),
                Err(e) => format!("no answer from Vault ({})", self.reason(e)),
            };
            if warned {
                tracing::debug!(%method, route = target, attempt = schedule.tries().attempts, "{what}; retrying");
            } else {
                tracing::warn!(
                    %method,
                    route = target,
                    "{what}; retrying for up to {} (retry-for under [vault])",
                    crate::vault_retry::seconds(window)
                );
                warned = true;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: the request, and its whole answer.
    async fn attempt(
        &self,
        token: Option<&HeaderValue>,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.inner.http.request(method.clone(), url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        let response = request.send().await?;
        let status = response.status();
        // The route (path after /v1/) names what was asked; it never holds a secret.
        let route = url.split_once("/v1/").map_or(url, |(_, route)| route);
        tracing::debug!(%method, route, status = status.as_u16(), "Vault request");
        let body = response.bytes().await?;
        Ok(Reply { status, body: Zeroizing::new(body.into()), tries: Tries::default() })
    }

    /// Why a request got no answer, in a few words.
    fn reason(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no answer within {:?}", self.inner.timeout)
        } else {
            // reqwest's own message is just "error sending request"; the root cause says why.
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        }
    }

    /// No answer; `retried` says what was tried when rotor retried.
    fn unreachable(&self, e: &reqwest::Error, retried: Option<Tries>) -> VaultError {
        let mut reason = self.reason(e);
        if let Some(tries) = retried {
            reason = format!(
                "{reason} (still after {tries}; raise `retry-for` under [vault] in rotor.toml, or \
                 ROTOR_VAULT_RETRY_FOR, to wait longer)"
            );
        }
        VaultError::Unreachable { addr: self.inner.addr.clone(), reason }
    }

    /// The token is not valid: named after where it came from.
    fn bad_token(&self) -> VaultError {
        match &self.inner.token_file {
            Some(path) if matches!(self.inner.auth, VaultAuth::Token(_)) => {
                VaultError::BadTokenFile { path: path.clone() }
            }
            _ => VaultError::BadToken,
        }
    }

    /// Turns a non-success reply into the most specific error.
    async fn fail(&self, reply: Reply, route: &str, capability: &'static str) -> VaultError {
        let errors = reply.errors();
        let says = |text: &str| errors.iter().any(|e| e.contains(text));
        match reply.status.as_u16() {
            403 if says("invalid token") => self.bad_token(),
            403 => self.denied(route, capability).await,
            400 if says("check-and-set") => VaultError::CasMismatch { path: route.to_owned() },
            404 if says("no handler for route") => VaultError::NoMount { mount: self.inner.mount.clone() },
            503 if says("sealed") => VaultError::Sealed { addr: self.inner.addr.clone() },
            status => {
                let answer = crate::vault_retry::describe(reply.status, &errors, &reply.body);
                if crate::vault_retry::is_hiccup(reply.status) {
                    VaultError::Unavailable {
                        status,
                        path: route.to_owned(),
                        answer,
                        tries: reply.tries,
                        retry_for: crate::vault_retry::seconds(self.inner.retry_for),
                    }
                } else {
                    VaultError::Http { status, path: route.to_owned(), errors, answer }
                }
            }
        }
    }

    /// Vault answers a bare 403 "permission denied" both for a bad token and for a missing
    /// policy grant; lookup-self is allowed for every valid token (default policy), so it tells
    /// the two apart.
    async fn denied(&self, route: &str, capability: &'static str) -> VaultError {
        match self.send(Method::GET, LOOKUP_SELF, None, Replay::Safe).await {
            Ok(reply) if reply.status == StatusCode::FORBIDDEN => self.bad_token(),
            _ => VaultError::PermissionDenied { path: route.to_owned(), capability },
        }
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

/// Rejects paths that could escape the mount or be rewritten by URL normalisation.
fn check_path(what: &str, path: &str) -> Result<(), VaultError> {
    let valid = !path.contains("..")
        && path.split('/').all(|segment| !segment.is_empty() && segment != ".")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(VaultError::Config(format!(
            "invalid {what} `{path}`: use [A-Za-z0-9._-] segments separated by single '/', without '..' or a leading '/'"
        )))
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
    fn accepts_plain_paths() {
        for path in ["ibn/encryption-key", "a", "a.b/c_d-1", "x/y/z"] {
            assert!(check_path("path", path).is_ok(), "{path}");
        }
    }

    #[test]
    fn rejects_escaping_or_odd_paths() {
        for path in ["", "/abs", "a/../b", "..", "a..b", "a//b", "a/", "./a", "a b", "a?b", "a%2e", "ü"] {
            let err = check_path("secret path", path).unwrap_err();
            assert!(matches!(err, VaultError::Config(_)), "{path}");
        }
    }

    #[test]
    fn debug_redacts_token_and_values() {
        let token = "hvs.SUPERSECRETTOKEN";
        let config = config(token);
        assert!(!format!("{config:?}").contains(token));
        let client = VaultClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains(token));
        assert_eq!(client.addr(), "http://127.0.0.1:8200");

        let secret = KvSecret {
            version: 1,
            created_time: String::new(),
            data: BTreeMap::from([("key".to_owned(), Zeroizing::new("c0ffee".repeat(8)))]),
        };
        let debug = format!("{secret:?}");
        assert!(debug.contains("key") && !debug.contains("c0ffee"), "{debug}");
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
    }
}
