//! Flags and environment, then rotor.toml, then defaults: the [`Settings`] and [`RunPlan`] a
//! command runs with, resolved once, and the app opened with them.

use std::path::PathBuf;

use crate::app::{App, SandboxSettings, Settings};
use crate::component::{ComponentChoice, ComponentSource};
use crate::component_cache::ComponentCache;
use crate::config::Loaded;
use crate::plan::RunPlan;
use crate::progress::Reporter;
use crate::store::WalletTable;
use crate::terminal::LogFormat;
use crate::vault::{KekUse, KvSource};

use super::args::{GlobalArgs, PlanFlags};

impl GlobalArgs {
    /// The effective settings: flags and environment, then rotor.toml, then defaults.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(self.resolve()?.settings)
    }

    /// The effective settings, with the run plan a command's `flags` ask for.
    pub(super) fn settings_for(&self, flags: PlanFlags) -> anyhow::Result<Settings> {
        let mut settings = self.settings()?;
        settings.plan =
            RunPlan::resolve(flags.batch_size, flags.workers, flags.lease_ttl, &settings.sandbox.limits);
        Ok(settings)
    }

    /// The effective settings, and where each came from.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let loaded = Loaded::load(self.config.as_deref(), self.profile.as_deref())?;
        let file = &loaded.file;
        let mut sources = Vec::new();
        let mut pick = |name: &'static str,
                        flag: &Option<String>,
                        env: Option<&str>,
                        from_file: &Option<String>,
                        default: &str| {
            let (value, source) = match (flag, from_file) {
                (Some(value), _) => {
                    let from_env = env.is_some_and(|var| std::env::var(var).ok().as_ref() == Some(value));
                    (
                        value.clone(),
                        if from_env {
                            format!("environment {}", env.unwrap_or_default())
                        } else {
                            "flag".into()
                        },
                    )
                }
                (None, Some(value)) => (value.clone(), "rotor.toml".into()),
                (None, None) => (default.to_owned(), "default".into()),
            };
            sources.push((name, source));
            value
        };
        let database_url = pick(
            "database-url",
            &self.database_url,
            Some("DATABASE_URL"),
            &file.database.url,
            "sqlite://rotor.db",
        );
        // `--table` names one table, whatever [[target]] lists; without it, the listed
        // targets stand in for [database]'s table and columns.
        let (listed, more_targets) = match (&self.table, file.target.split_first()) {
            (None, Some((first, rest))) => {
                if self.id_column.is_some() || self.ciphertext_column.is_some() {
                    anyhow::bail!(
                        "--id-column and --ciphertext-column name the columns of --table's table, but no \
                         --table was given and rotor.toml lists its tables in [[target]] with their columns: \
                         pass --table too, or change the [[target]] entry"
                    );
                }
                let rest: anyhow::Result<Vec<_>> =
                    rest.iter().map(|t| Ok((t.wallet_table()?, t.tenant_column.clone()))).collect();
                (Some(first.clone()), rest?)
            }
            _ => (None, Vec::new()),
        };
        // The file's check keeps [database]'s table and columns out when it lists targets.
        let (file_table, file_id, file_ciphertext) = match &listed {
            Some(t) => (Some(t.table.clone()), Some(t.id_column.clone()), Some(t.ciphertext_column.clone())),
            None => {
                let database = &file.database;
                (database.table.clone(), database.id_column.clone(), database.ciphertext_column.clone())
            }
        };
        let table = pick("table", &self.table, None, &file_table, "wallets");
        let id_column = pick("id-column", &self.id_column, None, &file_id, "id");
        let ciphertext_column =
            pick("ciphertext-column", &self.ciphertext_column, None, &file_ciphertext, "ciphertext");
        let kv_mount = pick("kv-mount", &self.kv_mount, Some("ROTOR_KV_MOUNT"), &file.vault.mount, "secret");
        let tenant = one_tenant(self.tenant.as_deref(), &file.tenants)?;
        let file_key_path = match &tenant {
            Some(tenant) => file.tenants.key_path_of(tenant),
            None => file.vault.key_path.clone(),
        };
        let key_path =
            pick("key-path", &self.key_path, Some("ROTOR_KEY_PATH"), &file_key_path, "ibn/encryption-key");
        if tenant.is_some() && self.key_path.is_some() {
            anyhow::bail!(
                "--key-path (or ROTOR_KEY_PATH) and --tenant both name the KEK: with [tenants], the tenant's \
                 key path is the template's; drop --key-path"
            );
        }
        // Each target holds every tenant's rows: the tenant's are those its tenant column (its
        // own `tenant-column`, else [tenants] column) names.
        let for_tenant = |table: WalletTable, own_column: Option<String>| -> anyhow::Result<WalletTable> {
            match (&tenant, own_column.as_ref().or(file.tenants.column.as_ref())) {
                (Some(tenant), Some(column)) => Ok(table.for_tenant(column, tenant)?),
                (Some(_), None) => anyhow::bail!(
                    "table `{}` names no tenant column: set `tenant-column` in its [[target]] entry, or \
                     `column` under [tenants]",
                    table.table
                ),
                _ => Ok(table),
            }
        };
        let more_targets = more_targets
            .into_iter()
            .map(|(table, column)| for_tenant(table, column))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The first [[target]]'s own tenant column, filter and layout; a table named by
        // `--table` has none of these, and [tenants] column is its tenant column.
        let first_tenant_column = listed.as_ref().and_then(|t| t.tenant_column.clone());
        let mut first_table = match listed.as_ref().and_then(|t| t.filter.as_ref()) {
            Some(filter) => WalletTable::new(&table, &id_column, &ciphertext_column)?
                .with_filter(&filter.column, &filter.equals)?,
            None => WalletTable::new(&table, &id_column, &ciphertext_column)?,
        };
        if let Some(format) = listed.as_ref().and_then(|t| t.format) {
            first_table = first_table.with_format(format);
        }
        let component =
            self.component.clone().or_else(|| file.component.path.clone()).map(ComponentChoice::File);
        let cache = match (&file.component.cache_dir, file.component.cache) {
            (_, false) => None,
            (Some(dir), true) => Some(ComponentCache::at(dir)),
            (None, true) => ComponentCache::default_location(),
        };
        if self.no_cross_check || !file.component.cross_check {
            tracing::warn!(
                "--no-cross-check / cross-check = false no longer has any effect: the host itself checks \
                 every wallet any component writes, and that check cannot be turned off"
            );
        }
        let settings = Settings {
            database_url,
            table: for_tenant(first_table, first_tenant_column)?,
            more_targets,
            kv_mount,
            key_path,
            component,
            sandbox: SandboxSettings {
                limits: file.limits,
                pinned: file.component.pinned.clone(),
                allow_unpinned: self.allow_unpinned || file.component.allow_unpinned,
                cache,
            },
            vault_defaults: file.vault.clone(),
            plan: RunPlan::resolve(None, None, None, &file.limits),
            profile: loaded.profile.clone(),
            // Checked when the file was read.
            rotate_after: file.schedule.rotate_after().ok().flatten(),
            derive_from: tenant.as_ref().and(file.tenants.derive_from.clone()),
            tenant,
        };
        Ok(Resolved { settings, sources, file: loaded.path })
    }

    /// The tenants `--tenant` names for `rotor rotate`: `None` for one (or none), else the list
    /// (`all`: every tenant in rotor.toml), each checked.
    pub(super) fn tenant_list(&self) -> anyhow::Result<Option<Vec<String>>> {
        let Some(given) = self.tenant.as_deref().filter(|t| *t == "all" || t.contains(',')) else {
            return Ok(None);
        };
        let loaded = Loaded::load(self.config.as_deref(), self.profile.as_deref())?;
        let tenants = &loaded.file.tenants;
        let names: Vec<String> = match given {
            "all" => tenants.list.clone(),
            list => list.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect(),
        };
        for name in &names {
            one_tenant(Some(name), tenants)?;
        }
        Ok(Some(names))
    }

    pub(super) fn reporter(&self, label: &str) -> Reporter {
        Reporter::new(label, self.shows_progress())
    }

    /// Whether a progress bar may be drawn: not with JSON output or logs, nor with -q.
    pub(super) fn shows_progress(&self) -> bool {
        !self.json && !self.quiet && self.log_format == LogFormat::Text
    }
}

/// The one tenant `tenant` (`--tenant`) names, checked against rotor.toml's `[tenants]`;
/// `None` when the file has none (and then `--tenant` is an error).
fn one_tenant(
    tenant: Option<&str>,
    tenants: &crate::config::TenantsSection,
) -> anyhow::Result<Option<String>> {
    match (tenant, tenants.configured()) {
        (None, false) => Ok(None),
        (Some(_), false) => anyhow::bail!(
            "--tenant (or ROTOR_TENANT) was given, but the settings file has no [tenants]: describe \
             the tenants' KEKs and rows there first"
        ),
        (None, true) => anyhow::bail!(
            "the settings file gives each tenant its own KEK ([tenants]): pass --tenant NAME (one of {})",
            tenants.list.join(", ")
        ),
        (Some(tenant), true) if tenant == "all" || tenant.contains(',') => {
            anyhow::bail!("--tenant {tenant}: only `rotor rotate` acts on several tenants; name one tenant")
        }
        (Some(tenant), true) if !tenants.list.iter().any(|t| t == tenant) => anyhow::bail!(
            "tenant {tenant:?} is not in [tenants] list ({}): add it there first (a misspelt name would \
             get a KEK of its own)",
            tenants.list.join(", ")
        ),
        (Some(tenant), true) => Ok(Some(tenant.to_owned())),
    }
}

/// The app with the KEK in Vault (the only source any command that writes may use).
pub(super) async fn open_app(global: &GlobalArgs, migrate: bool, plan: PlanFlags) -> anyhow::Result<App> {
    let settings = global.settings_for(plan)?;
    let kv = kv_source(&settings, KekUse::VaultOnly)?;
    App::open(settings, kv, migrate).await
}

/// Vault as the Vault CLI's variables describe it, with rotor.toml's `[vault]` filling in what
/// they leave unset; or the seed's env KEK where `kek_use` allows it.
pub(super) fn kv_source(settings: &Settings, kek_use: KekUse) -> anyhow::Result<KvSource> {
    let mut source = KvSource::from_env(&settings.kv_mount, &settings.key_path, kek_use)?;
    if let Some(config) = source.vault_config_mut() {
        settings.vault_defaults.fill_in(config);
    }
    Ok(source)
}

/// The app for a command that only reads KEKs: Vault, or the seed's env fallback.
pub(super) async fn open_app_to_read(global: &GlobalArgs, plan: PlanFlags) -> anyhow::Result<App> {
    let settings = global.settings_for(plan)?;
    let kv = kv_source(&settings, KekUse::ReadOnly)?;
    App::open(settings, kv, false).await
}

/// Settings as `rotor config check` shows them.
pub struct Resolved {
    /// The settings the command would run with.
    pub settings: Settings,
    /// Setting name → where its value came from (flag, environment, rotor.toml, default).
    pub sources: Vec<(&'static str, String)>,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
}

/// `rotor config check`: the effective settings, secrets redacted.
pub(super) fn config_check(global: &GlobalArgs) -> anyhow::Result<serde_json::Value> {
    let Resolved { settings, sources, file } = global.resolve()?;
    let source = |name: &str| sources.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone());
    let setting = |name: &str, value: String| serde_json::json!({ "value": value, "source": source(name) });
    let mut problems = Vec::new();
    // The token itself is never shown: only whether there is one.
    let vault = match crate::vault::VaultConfig::from_env(&settings.kv_mount) {
        Ok(mut vault) => {
            settings.vault_defaults.fill_in(&mut vault);
            serde_json::json!({
            "addr": vault.addr,
            "namespace": vault.namespace,
            "ca_cert": vault.ca_cert,
            "auth": match &vault.auth {
                crate::vault::VaultAuth::Token(_) => "token (redacted)".to_owned(),
                crate::vault::VaultAuth::AppRole(role) => format!("approle at auth/{} (ids redacted)", role.mount),
            },
            "skip_verify": vault.skip_verify,
            "retry_for": humantime::format_duration(vault.retry_for).to_string(),
            })
        }
        Err(e) => {
            problems.push(e.to_string());
            serde_json::Value::Null
        }
    };
    let component = match &settings.component {
        Some(choice) => match choice.load() {
            Ok(source) => {
                if let Err(e) = settings.sandbox.admit(&source) {
                    problems.push(e.to_string());
                }
                let pinned = settings.sandbox.pinned.contains(&source.sha256);
                serde_json::json!({ "path": choice.origin(), "sha256": source.sha256, "pinned": pinned })
            }
            Err(e) => {
                problems.push(format!("{e:#}"));
                serde_json::json!({ "path": choice.origin() })
            }
        },
        None => serde_json::json!({ "path": "built-in", "sha256": ComponentSource::builtin().sha256 }),
    };
    Ok(serde_json::json!({
        "config_file": file.map(|f| f.display().to_string()),
        "database_url": setting("database-url", crate::store::redact_url(&settings.database_url)),
        "table": setting("table", settings.table.table.clone()),
        "id_column": setting("id-column", settings.table.id_column.clone()),
        "ciphertext_column": setting("ciphertext-column", settings.table.ciphertext_column.clone()),
        "targets": settings.scope().targets.iter().map(|t| {
            serde_json::json!({ "table": t.table, "id_column": t.id_column, "ciphertext_column": t.ciphertext_column })
        }).collect::<Vec<_>>(),
        "kv_mount": setting("kv-mount", settings.kv_mount.clone()),
        "key_path": setting("key-path", settings.key_path.clone()),
        "vault": vault,
        "component": component,
        "pinned": settings.sandbox.pinned,
        "allow_unpinned": settings.sandbox.allow_unpinned,
        "cache_dir": settings.sandbox.cache.as_ref().map(|c| c.dir().display().to_string()),
        "limits": settings.sandbox.limits,
        "profile": settings.profile,
        "tenant": settings.tenant,
        "rotate_after": settings.rotate_after.map(|age| humantime::format_duration(age).to_string()),
        "problems": problems,
    }))
}
