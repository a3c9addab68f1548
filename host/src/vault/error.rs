//! What can go wrong talking to Vault, for the client and its authentication alike: one error
//! type, each message naming the problem and the fix, none quoting a secret.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use super::retry::Tries;

/// What went wrong talking to Vault; each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No HTTP answer: connection refused, DNS, TLS or timeout (after retrying, once Vault had
    /// answered before: the reason says for how long).
    #[error(
        "cannot reach Vault at {addr}: {reason}; check VAULT_ADDR (and VAULT_CACERT for TLS) and that the server is running"
    )]
    Unreachable {
        /// Vault's base URL.
        addr: String,
        /// Why there was no answer (and, after retrying, for how long rotor tried).
        reason: String,
    },
    /// Vault, or a proxy in front of it, kept answering a status that usually passes (429, 500,
    /// 502, 503, 504) until rotor stopped retrying.
    #[error(
        "Vault answered HTTP {status} for {path}: {answer} ({tries}); check that Vault is up and \
         unsealed and any load balancer or proxy in front of it, then run the command again; to \
         wait out longer outages raise `retry-for` under [vault] in rotor.toml (or ROTOR_VAULT_RETRY_FOR, \
         now {retry_for})"
    )]
    Unavailable {
        /// The last status Vault (or the proxy) answered.
        status: u16,
        /// The API path asked for.
        path: String,
        /// What the last answer said (see [`VaultError::Http`]'s `answer`).
        answer: String,
        /// The attempts made.
        tries: Tries,
        /// The `retry-for` in force, e.g. `60 s`.
        retry_for: String,
    },
    /// Vault answered 503 "Vault is sealed" (also what a never-initialised server answers).
    #[error(
        "Vault at {addr} is sealed; unseal it (bao operator unseal; a new server needs bao operator init first) and retry"
    )]
    Sealed {
        /// Vault's base URL.
        addr: String,
    },
    /// The token does not exist, was revoked or expired.
    #[error(
        "Vault rejected the token (VAULT_TOKEN): it is invalid or expired; log in again or set a valid token"
    )]
    BadToken,
    /// The token read from `~/.vault-token` (written by `bao login`) does not exist, was revoked
    /// or expired.
    #[error(
        "Vault rejected the token in {path} (left by an earlier `bao login`/`vault login`): it is invalid or \
         expired; log in again, set VAULT_TOKEN (or VAULT_ROLE_ID and VAULT_SECRET_ID), or remove the file"
    )]
    BadTokenFile {
        /// Where the token was read from.
        path: PathBuf,
    },
    /// AppRole login refused: wrong role or secret ID, an expired or used-up secret ID, or no
    /// AppRole auth method at that mount.
    #[error(
        "AppRole login at auth/{mount}/login failed: {reason}; check VAULT_ROLE_ID and VAULT_SECRET_ID (a secret ID \
         may have expired or been used up: issue a new one) and VAULT_APPROLE_MOUNT"
    )]
    LoginFailed {
        /// The AppRole auth method's mount path.
        mount: String,
        /// The status and what Vault answered.
        reason: String,
    },
    /// A write to a KV that only serves reads (the KEK from `WALLET_ENCRYPTION_KEY`).
    #[error(
        "refusing to change {path}: the KEK comes from {source_var}, read-only; store it in Vault first \
         (rotor migrate-kek --from-env {source_var})"
    )]
    ReadOnly {
        /// The secret path a write was attempted on.
        path: String,
        /// The environment variable the KEK came from.
        source_var: String,
    },
    /// The token is valid but its policies do not allow this request.
    #[error(
        "permission denied on {path}: the token's policy does not grant `{capability}` there; add it to the policy"
    )]
    PermissionDenied {
        /// API path as written in Vault policies, e.g. `secret/data/ibn/encryption-key`.
        path: String,
        /// Capability the request needs, e.g. `read`.
        capability: &'static str,
    },
    /// A check-and-set write lost a race: someone wrote the secret since it was read.
    #[error("check-and-set failed on {path}: the secret changed since it was read; re-read it and retry")]
    CasMismatch {
        /// The API path written to.
        path: String,
    },
    /// Vault has no route for the mount (it answered "no handler for route").
    #[error(
        "no secrets engine is mounted at `{mount}/`; pass the right mount or enable KV v2 there (bao secrets enable -path={mount} kv-v2)"
    )]
    NoMount {
        /// The KV mount path.
        mount: String,
    },
    /// The mount is a KV version 1 engine: it has no versions and no check-and-set, and serves
    /// rotor's KV v2 paths (`<mount>/data/...`) as plain, missing secrets.
    #[error(
        "the secrets engine at `{mount}` is KV version 1, but rotor needs KV version 2 (versions, check-and-set): \
         upgrade it in place with `bao kv enable-versioning {mount}` (`vault kv enable-versioning {mount}`; \
         existing secrets become version 1), or point --kv-mount (ROTOR_KV_MOUNT, [vault] mount) at a KV v2 mount"
    )]
    KvV1 {
        /// The mount path, with its trailing `/`.
        mount: String,
    },
    /// The mount is another kind of secrets engine.
    #[error(
        "the secrets engine at `{mount}` is `{kind}`, not KV version 2: point --kv-mount (ROTOR_KV_MOUNT, \
         [vault] mount) at a KV v2 mount"
    )]
    NotKv {
        /// The mount path, with its trailing `/`.
        mount: String,
        /// The engine's type, e.g. `transit`.
        kind: String,
    },
    /// Any other unexpected status. `answer` is Vault's `errors`, or the reason phrase and an
    /// excerpt of the body when it has none.
    #[error("Vault answered HTTP {status} for {path}: {answer}")]
    Http {
        /// The status Vault answered.
        status: u16,
        /// The API path asked for.
        path: String,
        /// Vault's `errors`, as it sent them.
        errors: Vec<String>,
        /// What the error message quotes of the answer.
        answer: String,
    },
    /// A [`KvStore`](super::KvStore) the embedding program supplies failed (the OpenBao
    /// plugin's: its mount's storage).
    #[error("the key store failed on {path}: {reason}")]
    Store {
        /// The secret's path.
        path: String,
        /// What failed, quoting no secret.
        reason: String,
    },
    /// Invalid settings, rejected before any request is sent.
    #[error("invalid Vault configuration: {0}")]
    Config(String),
    /// The response was not the JSON Vault's API documents.
    #[error("unexpected response from Vault for {path}: {reason}")]
    Decode {
        /// The API path asked for.
        path: String,
        /// What did not parse, without quoting the body.
        reason: String,
    },
}

/// Parses a JSON body. The reason omits serde_json's message, which can quote the offending
/// value, and values here may be secrets.
pub(super) fn decode<T: DeserializeOwned>(route: &str, body: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice(body).map_err(|e| VaultError::Decode {
        path: route.to_owned(),
        reason: format!(
            "malformed JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}
