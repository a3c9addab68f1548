//! The mount's settings (`rotor/config`): the database and table its rotations move, how they
//! spread the work, the component they run, pinned by its sha256, and the limits it runs
//! within. Stored in the mount's
//! storage, inside OpenBao's barrier; the database URL may carry a password, so it is never
//! returned whole, never logged and wiped when dropped.

use std::num::NonZeroUsize;

use rotor::app::{SandboxSettings, Settings};
use rotor::component::ComponentChoice;
use rotor::limits::Limits;
use rotor::plan::{BatchSize, RunPlan};
use rotor::store::{WalletTable, redact_url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::components;
use crate::keyring::KEK_PATH;
use crate::mirror::{self, MirrorSettings};
use crate::request::{Failure, Request};
use crate::storage::Storage;

/// Where the settings are stored.
const CONFIG: &str = "config";

/// The settings as stored. `Debug` leaves the database URL out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MountConfig {
    database_url: String,
    #[zeroize(skip)]
    table: String,
    #[zeroize(skip)]
    id_column: String,
    #[zeroize(skip)]
    ciphertext_column: String,
    #[zeroize(skip)]
    batch_size: u32,
    #[zeroize(skip)]
    workers: Option<u32>,
    /// The component run instead of the built-in one: a file in the plugin directory, or
    /// `components/NAME` for one uploaded to the mount.
    #[zeroize(skip)]
    component: Option<String>,
    /// The sha256 a component must have to run.
    #[zeroize(skip)]
    component_sha256: Option<String>,
    /// What the component may consume; rotor's defaults unless set (and in settings stored
    /// before the mount took limits).
    #[zeroize(skip)]
    #[serde(default)]
    limits: Limits,
    /// The seed's KV v2 path, kept in step with the key ring, if applications read it.
    #[serde(default)]
    mirror: Option<MirrorSettings>,
}

/// The component a mount's settings name.
#[derive(Debug, PartialEq, Eq)]
pub enum Component<'a> {
    /// A file in OpenBao's plugin directory.
    File(&'a str),
    /// One uploaded to `rotor/components/NAME`.
    Uploaded(&'a str),
}

/// The sandbox limits `rotor/config` takes, as it names them and as rotor.toml's `[limits]` does.
const LIMITS: [(&str, &str); 7] = [
    ("cpu_seconds", "cpu-seconds"),
    ("call_seconds", "call-seconds"),
    ("wall_seconds", "wall-seconds"),
    ("call_wall_seconds", "call-wall-seconds"),
    ("memory_mib", "memory-mib"),
    ("max_batch_rows", "max-batch-rows"),
    ("max_value_kib", "max-value-kib"),
];

impl std::fmt::Debug for MountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountConfig")
            .field("table", &self.table)
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

/// The fields `rotor/config` takes besides the limits (`LIMITS`) and the mirror's.
pub const FIELDS: &[&str] = &[
    "database_url",
    "table",
    "id_column",
    "ciphertext_column",
    "batch_size",
    "workers",
    "component",
    "component_sha256",
];

impl MountConfig {
    /// The stored settings, if the mount was configured.
    pub async fn load(storage: &Storage) -> anyhow::Result<Option<MountConfig>> {
        storage.get(CONFIG).await
    }

    /// Stores these settings.
    pub async fn store(&self, storage: &Storage) -> anyhow::Result<()> {
        storage.put(CONFIG, self).await
    }

    /// The settings a write to `rotor/config` asks for, over the stored ones (`before`): a field
    /// left out keeps its value, and a first write needs `database_url`.
    pub fn from_request(request: &Request, before: Option<&MountConfig>) -> Result<MountConfig, Failure> {
        request.only_fields(&[FIELDS, &LIMITS.map(|(field, _)| field), mirror::FIELDS].concat())?;
        let text = |field: &str, default: &str, was: Option<&String>| -> Result<String, Failure> {
            Ok(request.text(field)?.map_or_else(|| was.map_or(default, String::as_str), str::trim).to_owned())
        };
        // Wiped however this ends: a refused request must not leave the password behind.
        let mut database_url = Zeroizing::new(match (request.text("database_url")?, before) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Some(before)) => before.database_url.clone(),
            (None, None) => {
                return Err(Failure::BadRequest(
                    "field \"database_url\" is required: postgres://USER:PASSWORD@HOST/DB or \
                     sqlite:///ABSOLUTE/PATH"
                        .into(),
                ));
            }
        });
        check_url(&database_url)?;
        let defaults = WalletTable::default();
        let table = text("table", &defaults.table, before.map(|b| &b.table))?;
        let id_column = text("id_column", &defaults.id_column, before.map(|b| &b.id_column))?;
        let ciphertext_column =
            text("ciphertext_column", &defaults.ciphertext_column, before.map(|b| &b.ciphertext_column))?;
        WalletTable::new(&table, &id_column, &ciphertext_column)
            .map_err(|e| Failure::BadRequest(format!("the wallet table: {e}")))?;
        let batch_size = match request.number("batch_size")? {
            Some(size) => {
                BatchSize::new(size).map_err(|e| Failure::BadRequest(format!("field \"batch_size\": {e}")))?
            }
            None => before
                .map_or(Ok(BatchSize::DEFAULT), |b| BatchSize::new(b.batch_size))
                .map_err(Failure::BadRequest)?,
        };
        // `number` takes 1 and up only.
        let workers = request.number("workers")?.or_else(|| before.and_then(|b| b.workers));
        if let Some(workers) = workers.filter(|&w| w as usize > RunPlan::MAX_WORKERS) {
            return Err(Failure::BadRequest(format!(
                "field \"workers\": {workers} is more than the {} a rotation can keep busy (each holds two \
                 of its 64 database connections)",
                RunPlan::MAX_WORKERS
            )));
        }
        let limits = limits_from(request, before.map_or_else(Limits::default, |b| b.limits))?;
        let mirror = MirrorSettings::from_request(request, before.and_then(|b| b.mirror.as_ref()))?;
        let component = match request.text("component")? {
            Some("") => None,
            Some(name) => Some(component_name(name)?),
            None => before.and_then(|b| b.component.clone()),
        };
        let component_sha256 = match request.text("component_sha256")? {
            Some("") => None,
            Some(digest) => Some(digest_text(digest)?),
            None => before.and_then(|b| b.component_sha256.clone()),
        };
        if component.is_some() && component_sha256.is_none() {
            return Err(Failure::BadRequest(
                "field \"component_sha256\" is required with \"component\": the plugin runs a component \
                 only if its digest is pinned (sha256sum FILE)"
                    .into(),
            ));
        }
        Ok(MountConfig {
            database_url: std::mem::take(&mut *database_url),
            table,
            id_column,
            ciphertext_column,
            batch_size: batch_size.get(),
            workers,
            component,
            component_sha256,
            limits,
            mirror,
        })
    }

    /// What `read rotor/config` shows: everything but the database URL's password and query.
    pub fn shown(&self) -> Value {
        json!({
            "database": shown_url(&self.database_url),
            "table": self.table,
            "id_column": self.id_column,
            "ciphertext_column": self.ciphertext_column,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "component": self.component,
            "component_sha256": self.component_sha256,
            "limits": shown_limits(&self.limits),
            "mirror": self.mirror.as_ref().map(MirrorSettings::shown),
        })
    }

    /// The seed's KV v2 path to keep in step with the key ring, if the mount keeps one.
    pub fn mirror(&self) -> Option<&MirrorSettings> {
        self.mirror.as_ref()
    }

    /// The component these settings name, with the digest it must have to run.
    pub fn component(&self) -> Option<(Component<'_>, &str)> {
        let name = self.component.as_deref()?;
        let component = match name.strip_prefix(components::FOLDER) {
            Some(uploaded) => Component::Uploaded(uploaded),
            None => Component::File(name),
        };
        Some((component, self.component_sha256.as_deref().unwrap_or_default()))
    }

    /// The uploaded component these settings run, if they run one: its name and pinned digest.
    pub fn uploaded_component(&self) -> Option<(&str, &str)> {
        match self.component()? {
            (Component::Uploaded(name), pinned) => Some((name, pinned)),
            (Component::File(_), _) => None,
        }
    }

    /// rotor's settings for a run on this mount: the mount's KEK, this database and table, the
    /// component (checked against its pinned digest by the caller).
    pub fn settings(&self, component: Option<ComponentChoice>) -> Result<Settings, Failure> {
        let table = WalletTable::new(&self.table, &self.id_column, &self.ciphertext_column)
            .map_err(|e| Failure::BadRequest(format!("the wallet table: {e}")))?;
        let batch_size = BatchSize::new(self.batch_size).map_err(Failure::BadRequest)?;
        let workers = self.workers.and_then(|w| NonZeroUsize::new(w as usize));
        let sandbox = SandboxSettings {
            pinned: self.component_sha256.iter().cloned().collect(),
            // Compiled components are not kept on disk: OpenBao's plugin directory is not the
            // plugin's to write, and the plugin keeps one compiled component in memory.
            cache: None,
            limits: self.limits,
            ..SandboxSettings::default()
        };
        let plan = RunPlan::resolve(Some(batch_size), workers, None, &sandbox.limits);
        Ok(Settings {
            database_url: self.database_url.clone(),
            table,
            more_targets: Vec::new(),
            kv_mount: "rotor-plugin".to_owned(),
            key_path: KEK_PATH.to_owned(),
            component,
            sandbox,
            vault_defaults: Default::default(),
            plan,
            profile: None,
            rotate_after: None,
            tenant: None,
            derive_from: None,
        })
    }
}

/// The database URL with its password replaced by `***`, and its query (which may carry
/// `password=` or a key file's path) by `?…`.
fn shown_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{}?…", redact_url(base)),
        None => redact_url(url),
    }
}

/// A component's name: a plain file name in the plugin directory, or `components/NAME` for one
/// uploaded to the mount.
fn component_name(name: &str) -> Result<String, Failure> {
    let name = name.trim();
    if let Some(uploaded) = name.strip_prefix(components::FOLDER) {
        components::check_name(uploaded)
            .map_err(|e| Failure::BadRequest(format!("field \"component\": {e}")))?;
        return Ok(name.to_owned());
    }
    let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    if !plain {
        return Err(Failure::BadRequest(format!(
            "field \"component\": {name:?} is not a file name; put the component in OpenBao's plugin \
             directory and name the file, or upload it to rotor/components/NAME and name it \
             components/NAME"
        )));
    }
    Ok(name.to_owned())
}

/// Refuses a database URL rotor cannot open from inside OpenBao: another scheme, or a SQLite
/// path that would be taken relative to wherever OpenBao happened to start.
fn check_url(url: &str) -> Result<(), Failure> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if !path.starts_with('/') {
            return Err(Failure::BadRequest(format!(
                "field \"database_url\": {path:?} is not an absolute path; OpenBao would resolve it \
                 against its own working directory: write sqlite:///ABSOLUTE/PATH"
            )));
        }
        return Ok(());
    }
    if ["postgres://", "postgresql://"].iter().any(|scheme| url.starts_with(scheme)) {
        return Ok(());
    }
    Err(Failure::BadRequest(
        "field \"database_url\": rotor reads postgres://… (or postgresql://…) and sqlite:… URLs".into(),
    ))
}

/// The limits a request sets over `limits`, checked as rotor.toml's are.
fn limits_from(request: &Request, limits: Limits) -> Result<Limits, Failure> {
    // Set through rotor.toml's own names, so that `Limits` stays the one list of the fields.
    let mut stored = serde_json::to_value(limits).map_err(anyhow::Error::from)?;
    for (field, setting) in LIMITS {
        // `number` takes 1 and up only.
        if let Some(value) = request.number(field)? {
            stored[setting] = value.into();
        }
    }
    let limits: Limits = serde_json::from_value(stored).map_err(anyhow::Error::from)?;
    limits.check().map_err(|e| Failure::BadRequest(in_mount_words(&e)))?;
    Ok(limits)
}

/// The limits under the names `rotor/config` takes.
fn shown_limits(limits: &Limits) -> Value {
    let stored = serde_json::to_value(limits).unwrap_or_default();
    LIMITS.iter().map(|(field, setting)| ((*field).to_owned(), stored[setting].clone())).collect()
}

/// rotor's words for a limit (`limits.call-seconds`, set in rotor.toml) as the mount's: the
/// field of `rotor/config` that sets it.
pub fn in_mount_words(message: &str) -> String {
    let mut message = message.to_owned();
    for (field, setting) in LIMITS {
        message = message
            .replace(&format!("limits.{setting} in rotor.toml"), &format!("{field} in rotor/config"))
            .replace(&format!("limits.{setting}"), &format!("field \"{field}\""));
    }
    message
}

/// A sha256 digest as 64 lowercase hex characters.
fn digest_text(digest: &str) -> Result<String, Failure> {
    let digest = digest.trim().to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::BadRequest(
            "field \"component_sha256\" must be a sha256 digest: 64 hex characters".into(),
        ));
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_keeps_no_password() {
        assert_eq!(shown_url("postgres://rotor:hunter2@db:5432/app"), "postgres://rotor:***@db:5432/app");
        assert_eq!(shown_url("postgres://db/app?user=rotor&password=hunter2"), "postgres://db/app?…");
        assert_eq!(shown_url("sqlite:/var/lib/app/wallets.db"), "sqlite:/var/lib/app/wallets.db");
    }

    #[test]
    fn a_sqlite_path_must_be_absolute() {
        for good in
            ["sqlite:///var/lib/w.db", "sqlite:/var/lib/w.db", "sqlite:///w.db?mode=rwc", "postgres://db/app"]
        {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in ["sqlite:w.db", "sqlite://w.db", "sqlite::memory:", "mysql://db/app"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_set_and_shown_under_the_mounts_names() {
        let request = Request::update("config", r#"{"call_seconds":"2","max_batch_rows":500}"#);
        let limits = limits_from(&request, Limits::default()).unwrap();
        assert_eq!((limits.call_seconds, limits.max_batch_rows), (2, 500));
        assert_eq!(limits.cpu_seconds, Limits::default().cpu_seconds);
        let shown = shown_limits(&limits);
        assert_eq!((&shown["call_seconds"], &shown["max_batch_rows"]), (&json!(2), &json!(500)));
        assert_eq!(shown.as_object().unwrap().len(), LIMITS.len());
        let small = Request::update("config", r#"{"memory_mib":8}"#);
        assert!(
            limits_from(&small, limits)
                .unwrap_err()
                .to_string()
                .contains("\"memory_mib\" must be at least 16")
        );
    }

    #[test]
    fn limit_messages_name_the_mounts_field() {
        let said = in_mount_words(
            "the component computed for 2.1s without calling the host; if the work is genuine, raise \
             limits.call-seconds in rotor.toml",
        );
        assert!(said.ends_with("raise call_seconds in rotor/config"), "{said}");
        assert_eq!(
            in_mount_words("limits.memory-mib must be at least 16"),
            "field \"memory_mib\" must be at least 16"
        );
    }

    #[test]
    fn debug_leaves_the_database_url_out() {
        let config = MountConfig {
            database_url: "postgres://rotor:hunter2@db/app".into(),
            table: "wallets".into(),
            id_column: "id".into(),
            ciphertext_column: "ciphertext".into(),
            batch_size: 250,
            workers: None,
            component: None,
            component_sha256: None,
            limits: Limits::default(),
            mirror: None,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && shown.contains("wallets"), "{shown}");
    }
}
