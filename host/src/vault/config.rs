//! Where and how to reach Vault: the address, the credentials, TLS, the KV mount and the retry
//! window, read from the Vault CLI's variables (a token as the CLI finds it: `VAULT_TOKEN`, else
//! `~/.vault-token`; or AppRole: `VAULT_ROLE_ID` / `VAULT_SECRET_ID`) and checked before any
//! request is sent. Nothing here talks to Vault.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::error::VaultError;
use super::retry::{DEFAULT_RETRY_FOR, RETRY_FOR_VAR, parse_retry_for};

const DEFAULT_ADDR: &str = "http://127.0.0.1:8200";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Mount path of the AppRole auth method unless `VAULT_APPROLE_MOUNT` says otherwise.
const DEFAULT_APPROLE_MOUNT: &str = "approle";
/// The variables that name a credential; `~/.vault-token` counts only when none is set.
const CREDENTIAL_VARS: [&str; 3] = ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"];

/// Where and how to reach Vault. `Debug` redacts the credentials (see [`VaultAuth`]).
#[derive(Clone, Debug)]
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
    /// How long a request is retried while Vault answers 429/5xx or cannot be reached:
    /// `retry-for` under `[vault]`, or `ROTOR_VAULT_RETRY_FOR`.
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
            Some(text) => parse_retry_for(RETRY_FOR_VAR, &text).map_err(VaultError::Config)?,
            None => DEFAULT_RETRY_FOR,
        };
        Ok(Self {
            addr: var("VAULT_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            auth: VaultAuth::from_env()?,
            namespace: var("VAULT_NAMESPACE"),
            ca_cert: var("VAULT_CACERT").map(PathBuf::from),
            skip_verify: skip_verify_from_env()?,
            mount: mount.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            retry_for,
            token_file: token_file_in_use(),
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
    /// The role ID (`VAULT_ROLE_ID`).
    pub role_id: Zeroizing<String>,
    /// The secret ID (`VAULT_SECRET_ID`).
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

impl VaultAuth {
    /// `VAULT_ROLE_ID` with `VAULT_SECRET_ID` (and optionally `VAULT_APPROLE_MOUNT`) for AppRole;
    /// else `VAULT_TOKEN`; else the `~/.vault-token` file that `bao login` writes.
    pub fn from_env() -> Result<VaultAuth, VaultError> {
        let token = secret_var("VAULT_TOKEN");
        match (secret_var("VAULT_ROLE_ID"), secret_var("VAULT_SECRET_ID")) {
            (Some(_), Some(_)) if token.is_some() => Err(VaultError::Config(
                "both VAULT_TOKEN and VAULT_ROLE_ID/VAULT_SECRET_ID are set: unset one, so that it is clear \
                 which identity rotor acts as"
                    .into(),
            )),
            (Some(role_id), Some(secret_id)) => Ok(VaultAuth::AppRole(AppRole {
                mount: secret_var("VAULT_APPROLE_MOUNT")
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

/// A variable that may hold a secret, trimmed; unset and blank are both `None`.
fn secret_var(name: &str) -> Option<Zeroizing<String>> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| Zeroizing::new(trimmed.to_owned()))
}

/// Whether the environment names any way to log in to Vault (without reading a secret).
pub(super) fn credentials_in_env() -> bool {
    CREDENTIAL_VARS.iter().any(|name| secret_var(name).is_some())
        || token_file_path().is_some_and(|path| path.is_file())
}

/// The `~/.vault-token` file when it is the only credential [`VaultAuth::from_env`] finds (no
/// VAULT_TOKEN, no AppRole variables): named when Vault rejects the token in it.
pub(super) fn token_file_in_use() -> Option<PathBuf> {
    let named = CREDENTIAL_VARS.iter().any(|name| secret_var(name).is_some());
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

/// `VAULT_SKIP_VERIFY` as the Vault CLI reads it (see [`parse_skip_verify`]).
fn skip_verify_from_env() -> Result<bool, VaultError> {
    parse_skip_verify(secret_var("VAULT_SKIP_VERIFY").as_ref().map(|value| value.as_str()))
}

/// Go's boolean spellings, as the Vault CLI reads `VAULT_SKIP_VERIFY`; unset or blank (`None`)
/// is false. Anything else is an error rather than a guess, since true turns TLS checks off.
fn parse_skip_verify(value: Option<&str>) -> Result<bool, VaultError> {
    match value {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(VaultError::Config(format!(
            "VAULT_SKIP_VERIFY={other:?} is neither true nor false (use 1/true or 0/false)"
        ))),
    }
}

/// Rejects paths that could escape the mount or be rewritten by URL normalisation; `what` names
/// the path in the error.
pub(super) fn check_path(what: &str, path: &str) -> Result<(), VaultError> {
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
    fn path_errors_name_what_was_checked() {
        let err = check_path("AppRole mount (VAULT_APPROLE_MOUNT)", "/approle").unwrap_err().to_string();
        assert!(err.starts_with("invalid Vault configuration: invalid AppRole mount"), "{err}");
        assert!(err.contains("`/approle`"), "{err}");
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

    #[test]
    fn config_debug_shows_where_but_not_the_credentials() {
        let config = VaultConfig {
            auth: VaultAuth::AppRole(AppRole {
                mount: "approle".into(),
                role_id: Zeroizing::new("role-1234".into()),
                secret_id: Zeroizing::new("secret-5678".into()),
            }),
            ..VaultConfig::with_token("https://vault.example:8200", "unused")
        };
        let debug = format!("{config:?}");
        assert!(
            debug.contains("https://vault.example:8200") && debug.contains("mount: \"secret\""),
            "{debug}"
        );
        assert!(!debug.contains("1234") && !debug.contains("5678"), "{debug}");
    }

    #[test]
    fn skip_verify_reads_go_booleans_and_refuses_a_guess() {
        assert!(!parse_skip_verify(None).unwrap());
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse_skip_verify(Some(yes)).unwrap(), "{yes}");
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse_skip_verify(Some(no)).unwrap(), "{no}");
        }
        for odd in ["yes", "on", "2", "tRuE"] {
            let err = parse_skip_verify(Some(odd)).unwrap_err().to_string();
            assert!(err.contains("VAULT_SKIP_VERIFY") && err.contains("neither true nor false"), "{err}");
        }
    }
}
