//! The HTTP side of the client: one connection pool, the `X-Vault-*` headers, retrying what
//! [`super::retry`] says may be retried, one log line per request (method, route and status,
//! never a body), and the error an answer that is not a success stands for.
//!
//! Nothing here knows where the token comes from: each request is sent as the token it is given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{
    Certificate, Method, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::config::VaultConfig;
use super::error::VaultError;
use super::retry::{self, FIRST_CONTACT_RETRY_FOR, Replay, Schedule, Tries};

/// `{"data": …}`: how Vault wraps most answers.
#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) data: T,
}

/// A status and body; the body may hold secret values, hence zeroized on drop.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Zeroizing<Vec<u8>>,
    /// The attempts it took.
    pub(super) tries: Tries,
}

impl Reply {
    /// Vault's `errors`, if the body has them.
    pub(super) fn errors(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        serde_json::from_slice::<Errors>(&self.body).map(|e| e.errors).unwrap_or_default()
    }

    /// KV v2 answers 404 with no error text for missing, deleted and destroyed versions; a 404
    /// with errors means something else (e.g. no such mount).
    pub(super) fn absent(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.errors().is_empty()
    }

    /// 503 "Vault is sealed": nothing was applied.
    pub(super) fn sealed(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE && self.errors().iter().any(|e| e.contains("sealed"))
    }
}

/// `addr` without a trailing `/`, if it is an http:// or https:// URL.
pub(super) fn base_url(addr: &str) -> Result<String, VaultError> {
    let addr = addr.trim_end_matches('/').to_owned();
    if !reqwest::Url::parse(&addr).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return Err(VaultError::Config(format!("VAULT_ADDR `{addr}` is not an http:// or https:// URL")));
    }
    Ok(addr)
}

/// Requests to one Vault server, for one KV mount.
pub(super) struct Transport {
    http: reqwest::Client,
    /// Base URL, from [`base_url`].
    addr: String,
    /// The KV mount, named when Vault has no route for a request.
    mount: String,
    namespace: Option<String>,
    timeout: Duration,
    retry_for: Duration,
    /// Whether Vault has answered once: until then retries stop after a second (see
    /// [`FIRST_CONTACT_RETRY_FOR`]).
    contacted: AtomicBool,
}

impl Transport {
    /// The HTTP client for `config`, at `addr` (from [`base_url`]): namespace header, extra CA,
    /// certificate checks. Sends nothing.
    pub(super) fn new(addr: String, config: &VaultConfig) -> Result<Transport, VaultError> {
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
        Ok(Transport {
            http,
            addr,
            mount: config.mount.clone(),
            namespace: config.namespace.clone(),
            timeout: config.timeout,
            retry_for: config.retry_for,
            contacted: AtomicBool::new(false),
        })
    }

    /// The server's base URL, without a trailing `/`.
    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    /// The KV v2 mount path, e.g. `secret`.
    pub(super) fn mount(&self) -> &str {
        &self.mount
    }

    /// The Vault Enterprise namespace, if any.
    pub(super) fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Sends one request as `token`, retrying with backoff what [`super::retry`] says may be
    /// retried, for `retry-for` (for a second only until Vault first answers). The first retry
    /// is logged as a warning, the others at debug level: one line per request, not one per
    /// attempt. What was tried is kept in the reply, for the error message if it failed.
    pub(super) async fn send_as(
        &self,
        token: Option<&HeaderValue>,
        method: Method,
        target: &str,
        body: Option<&[u8]>,
        replay: Replay,
    ) -> Result<Reply, VaultError> {
        let url = format!("{}/v1/{target}", self.addr);
        let window = if self.contacted.load(Ordering::Relaxed) {
            self.retry_for
        } else {
            FIRST_CONTACT_RETRY_FOR.min(self.retry_for)
        };
        let mut schedule = Schedule::new(replay, window);
        let mut warned = false;
        loop {
            let outcome = self.attempt(token, &method, &url, body).await;
            let retry = match &outcome {
                Ok(reply) => {
                    if !retry::is_hiccup(reply.status) {
                        self.contacted.store(true, Ordering::Relaxed);
                    }
                    retry::retry_status(replay, reply.status, reply.sealed())
                }
                Err(e) => retry::retry_transport(replay, e),
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
                    retry::describe(reply.status, &reply.errors(), &reply.body)
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
                    retry::seconds(window)
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
        let mut request = self.http.request(method.clone(), url);
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
            format!("no answer within {:?}", self.timeout)
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
        VaultError::Unreachable { addr: self.addr.clone(), reason }
    }

    /// The most specific error for a reply that is not a success, from the reply alone. A 403
    /// is not decided here: whether the token or its policy is at fault takes another request
    /// (see the session's `fail`).
    pub(super) fn error(&self, reply: Reply, route: &str) -> VaultError {
        let errors = reply.errors();
        let says = |text: &str| errors.iter().any(|e| e.contains(text));
        match reply.status.as_u16() {
            400 if says("check-and-set") => VaultError::CasMismatch { path: route.to_owned() },
            404 if says("no handler for route") => VaultError::NoMount { mount: self.mount.clone() },
            503 if says("sealed") => VaultError::Sealed { addr: self.addr.clone() },
            status => {
                let answer = retry::describe(reply.status, &errors, &reply.body);
                if retry::is_hiccup(reply.status) {
                    VaultError::Unavailable {
                        status,
                        path: route.to_owned(),
                        answer,
                        tries: reply.tries,
                        retry_for: retry::seconds(self.retry_for),
                    }
                } else {
                    VaultError::Http { status, path: route.to_owned(), errors, answer }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> Transport {
        let config = VaultConfig::with_token("http://127.0.0.1:8200", "t");
        Transport::new(base_url(&config.addr).unwrap(), &config).unwrap()
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Zeroizing::new(body.as_bytes().to_vec()),
            tries: Tries::default(),
        }
    }

    #[test]
    fn base_url_takes_http_and_https_only_and_drops_the_trailing_slash() {
        assert_eq!(base_url("https://vault.example:8200/").unwrap(), "https://vault.example:8200");
        assert_eq!(base_url("http://127.0.0.1:8200").unwrap(), "http://127.0.0.1:8200");
        for bad in ["127.0.0.1:8200", "ftp://vault.example", "vault", ""] {
            let err = base_url(bad).unwrap_err();
            assert!(matches!(err, VaultError::Config(_)) && err.to_string().contains("VAULT_ADDR"), "{err}");
        }
    }

    #[test]
    fn replies_tell_absent_from_missing_mount_and_sealed_from_down() {
        assert!(reply(404, "").absent());
        assert!(reply(404, r#"{"errors":[]}"#).absent());
        assert!(!reply(404, r#"{"errors":["no handler for route \"kv/data/x\""]}"#).absent());
        assert!(reply(503, r#"{"errors":["Vault is sealed"]}"#).sealed());
        assert!(!reply(503, "<html>Service Unavailable</html>").sealed());
        assert!(!reply(500, r#"{"errors":["Vault is sealed"]}"#).sealed());
    }

    #[test]
    fn replies_become_the_most_specific_error() {
        let vault = transport();
        let route = "secret/data/ibn/encryption-key";
        let error = |status, body| vault.error(reply(status, body), route);

        let cas = error(400, r#"{"errors":["check-and-set parameter did not match the current version"]}"#);
        assert!(matches!(&cas, VaultError::CasMismatch { path } if path == route), "{cas}");
        let no_mount = error(404, r#"{"errors":["no handler for route \"secret/data/x\""]}"#);
        assert!(matches!(&no_mount, VaultError::NoMount { mount } if mount == "secret"), "{no_mount}");
        let sealed = error(503, r#"{"errors":["Vault is sealed"]}"#);
        assert!(
            matches!(&sealed, VaultError::Sealed { addr } if addr == "http://127.0.0.1:8200"),
            "{sealed}"
        );

        let proxy = error(502, "<html><body>bad gateway</body></html>").to_string();
        assert!(proxy.starts_with("Vault answered HTTP 502 for secret/data/ibn/encryption-key"), "{proxy}");
        assert!(proxy.contains("1 attempt") && proxy.contains("now 60 s"), "{proxy}");

        let odd = error(418, r#"{"errors":["  short and stout "]}"#);
        assert!(
            matches!(&odd, VaultError::Http { status: 418, errors, answer, .. }
                if errors.len() == 1 && answer == "short and stout"),
            "{odd:?}"
        );
    }
}
