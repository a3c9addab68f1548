//! How rotor logs in to Vault and keeps its token alive: a token as the Vault CLI finds it
//! (`VAULT_TOKEN`, else `~/.vault-token`), or AppRole (`VAULT_ROLE_ID` / `VAULT_SECRET_ID`), and
//! `VAULT_SKIP_VERIFY`.
//!
//! A long rotation can outlive a short-lived token, so the client renews it (`renew-self`) once
//! two thirds of its TTL have passed, and with AppRole logs in again when renewal fails or the
//! token nears its max TTL. The schedule lives here; the HTTP calls are [`crate::vault`]'s.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::vault_error::{VaultError, decode};

/// Mount path of the AppRole auth method unless `VAULT_APPROLE_MOUNT` says otherwise.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// How the client obtains its Vault token. `Debug` redacts every secret.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token given as is.
    Token(Zeroizing<String>),
    /// Log in through the AppRole auth method, and again whenever the token cannot be renewed.
    AppRole(AppRole),
}

/// AppRole credentials.
#[derive(Clone)]
pub struct AppRole {
    /// Path the auth method is mounted at (`approle` by default).
    pub mount: String,
    pub role_id: Zeroizing<String>,
    pub secret_id: Zeroizing<String>,
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::AppRole(role) => {
                write!(f, "AppRole {{ mount: {:?}, role_id: <redacted>, secret_id: <redacted> }}", role.mount)
            }
        }
    }
}

fn var(name: &str) -> Option<Zeroizing<String>> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| Zeroizing::new(trimmed.to_owned()))
}

impl VaultAuth {
    /// `VAULT_ROLE_ID` with `VAULT_SECRET_ID` (and optionally `VAULT_APPROLE_MOUNT`) for AppRole;
    /// else `VAULT_TOKEN`; else the `~/.vault-token` file that `bao login` writes.
    pub fn from_env() -> Result<VaultAuth, VaultError> {
        let token = var("VAULT_TOKEN");
        match (var("VAULT_ROLE_ID"), var("VAULT_SECRET_ID")) {
            (Some(_), Some(_)) if token.is_some() => Err(VaultError::Config(
                "both VAULT_TOKEN and VAULT_ROLE_ID/VAULT_SECRET_ID are set: unset one, so that it is clear \
                 which identity rotor acts as"
                    .into(),
            )),
            (Some(role_id), Some(secret_id)) => Ok(VaultAuth::AppRole(AppRole {
                mount: var("VAULT_APPROLE_MOUNT")
                    .map_or_else(|| DEFAULT_APPROLE_MOUNT.to_owned(), |m| m.trim_matches('/').to_owned()),
                role_id,
                secret_id,
            })),
            (Some(_), None) => Err(VaultError::Config(
                "VAULT_ROLE_ID is set but VAULT_SECRET_ID is not: AppRole needs both".into(),
            )),
            (None, Some(_)) => Err(VaultError::Config(
                "VAULT_SECRET_ID is set but VAULT_ROLE_ID is not: AppRole needs both".into(),
            )),
            (None, None) => match token {
                Some(token) => Ok(VaultAuth::Token(token)),
                None => token_file().map(VaultAuth::Token),
            },
        }
    }
}

/// Whether the environment names any way to log in to Vault (without reading a secret).
pub fn credentials_in_env() -> bool {
    ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"].iter().any(|name| var(name).is_some())
        || token_file_path().is_some_and(|path| path.is_file())
}

/// The `~/.vault-token` file when it is the only credential [`VaultAuth::from_env`] finds (no
/// VAULT_TOKEN, no AppRole variables): named when Vault rejects the token in it.
pub fn token_file_in_use() -> Option<PathBuf> {
    let named = ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"].iter().any(|name| var(name).is_some());
    if named { None } else { token_file_path().filter(|path| path.is_file()) }
}

fn token_file_path() -> Option<PathBuf> {
    Some(PathBuf::from(std::env::var_os("HOME")?).join(".vault-token"))
}

fn token_file() -> Result<Zeroizing<String>, VaultError> {
    let missing = || {
        VaultError::Config(
            "no Vault credentials: set VAULT_TOKEN (or log in with `bao login`, which writes ~/.vault-token), \
             or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole"
                .to_owned(),
        )
    };
    let path = token_file_path().ok_or_else(missing)?;
    let content = match std::fs::read_to_string(&path) {
        Ok(content) => Zeroizing::new(content),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(VaultError::Config(format!("cannot read {}: {e}", path.display()))),
    };
    match content.trim() {
        "" => Err(missing()),
        token => Ok(Zeroizing::new(token.to_owned())),
    }
}

/// `VAULT_SKIP_VERIFY` as the Vault CLI reads it (Go's boolean spellings); unset or empty is
/// false. Anything else is an error rather than a guess, since true turns TLS checks off.
pub fn skip_verify_from_env() -> Result<bool, VaultError> {
    let Some(value) = var("VAULT_SKIP_VERIFY") else {
        return Ok(false);
    };
    match value.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(VaultError::Config(format!(
            "VAULT_SKIP_VERIFY={other:?} is neither true nor false (use 1/true or 0/false)"
        ))),
    }
}

/// What Vault said about the token rotor uses.
#[derive(Clone, Debug, Default)]
pub struct TokenLease {
    /// Time to live granted by the last login or renewal; `None` for a token that never expires.
    pub ttl: Option<Duration>,
    /// The TTL a fresh token gets: a renewal granting less means the max TTL is near.
    pub full_ttl: Option<Duration>,
    pub renewable: bool,
    /// The token's accessor (not a secret: it cannot be used to authenticate).
    pub accessor: Option<String>,
}

impl TokenLease {
    /// When to renew: two thirds into the TTL, so a slow request or a busy machine still has a
    /// third of it to spare. `None` if the token never expires or cannot be renewed.
    pub fn renew_after(&self) -> Option<Duration> {
        let ttl = self.ttl.filter(|ttl| !ttl.is_zero())?;
        Some(ttl * 2 / 3)
    }

    /// A renewal that granted less than a fresh token gets: the max TTL cuts it short.
    pub fn nearing_max_ttl(&self) -> bool {
        matches!((self.ttl, self.full_ttl), (Some(ttl), Some(full)) if ttl < full)
    }
}

/// Whom Vault knows rotor's token as, from `auth/token/lookup-self`: what an audit trail should
/// record beside the operating-system user. Holds no secret (never the token or its accessor);
/// `Display` gives one line, e.g. `approle (AppRole role rotor-runner, entity 5f1…, policies
/// rotor-runner)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultIdentity {
    /// The token's display name (`token`, `approle`, `ldap-alice`, ...).
    pub display_name: String,
    /// The identity entity the token belongs to; `None` for tokens without one (root, orphans
    /// made by `token create`).
    pub entity_id: Option<String>,
    /// The AppRole role that logged in (the token's `role_name` metadata), if it came from AppRole.
    pub role_name: Option<String>,
    /// The token's policies.
    pub policies: Vec<String>,
}

impl VaultIdentity {
    /// From a lookup-self answer. Only the fields named here are read: the answer also holds the
    /// token itself (`id`), which is never kept.
    pub(crate) fn from_lookup(route: &str, body: &[u8]) -> Result<VaultIdentity, VaultError> {
        #[derive(serde::Deserialize)]
        struct Lookup {
            data: Data,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            #[serde(default)]
            display_name: Option<String>,
            #[serde(default)]
            entity_id: Option<String>,
            #[serde(default)]
            meta: Option<std::collections::BTreeMap<String, Option<String>>>,
            #[serde(default)]
            policies: Option<Vec<String>>,
        }
        let data = decode::<Lookup>(route, body)?.data;
        let clean = |text: String| -> Option<String> {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        Ok(VaultIdentity {
            display_name: data.display_name.and_then(clean).unwrap_or_else(|| "unnamed token".to_owned()),
            entity_id: data.entity_id.and_then(clean),
            role_name: data.meta.and_then(|mut meta| meta.remove("role_name")).flatten().and_then(clean),
            policies: data.policies.unwrap_or_default().into_iter().filter_map(clean).collect(),
        })
    }
}

impl fmt::Display for VaultIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(role) = &self.role_name {
            parts.push(format!("AppRole role {role}"));
        }
        if let Some(entity) = &self.entity_id {
            parts.push(format!("entity {entity}"));
        }
        if !self.policies.is_empty() {
            parts.push(format!("policies {}", self.policies.join(", ")));
        }
        f.write_str(&self.display_name)?;
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// How many logins and renewals a client did: for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenStats {
    pub logins: u32,
    pub renewals: u32,
    pub accessor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn identity_keeps_who_not_the_token() {
        let body = br#"{"data": {"id": "s.SECRETTOKEN", "accessor": "acc", "display_name": "approle",
            "entity_id": "f511535c", "meta": {"role_name": "rotor-runner"}, "policies": ["default", "rotor-runner"]}}"#;
        let identity = VaultIdentity::from_lookup("auth/token/lookup-self", body).unwrap();
        assert_eq!(
            identity.to_string(),
            "approle (AppRole role rotor-runner, entity f511535c, policies default, rotor-runner)"
        );
        assert!(!format!("{identity:?}").contains("SECRETTOKEN"));
        let root = br#"{"data": {"id": "root", "display_name": "token", "entity_id": "", "meta": null, "policies": ["root"]}}"#;
        let identity = VaultIdentity::from_lookup("auth/token/lookup-self", root).unwrap();
        assert_eq!((identity.entity_id.clone(), identity.role_name.clone()), (None, None));
        assert_eq!(identity.to_string(), "token (policies root)");
    }

    #[test]
    fn debug_redacts_credentials() {
        let auth = VaultAuth::AppRole(AppRole {
            mount: "approle".into(),
            role_id: Zeroizing::new("role-1234".into()),
            secret_id: Zeroizing::new("secret-5678".into()),
        });
        let debug = format!("{auth:?}");
        assert!(!debug.contains("1234") && !debug.contains("5678"), "{debug}");
        let debug = format!("{:?}", VaultAuth::Token(Zeroizing::new("hvs.TOKEN".into())));
        assert!(!debug.contains("hvs"), "{debug}");
    }
}
