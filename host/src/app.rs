//! What every command sets up: the compiled component, a checked Vault client and a checked
//! database, and a way to start a component instance with the grants the command needs.

use std::path::PathBuf;

use anyhow::Context;

use crate::bindings::operations::KeyLocation;
use crate::component::{ComponentSource, Instance, Runtime};
use crate::grants::{Access, Grants};
use crate::imports::RunState;
use crate::kv_backend::{KvBackend, KvSource};
use crate::progress::Reporter;
use crate::store::{Database, RunIdentity, WalletTable};
use crate::vault::VaultClient;

/// Where things are: the database, the wallet table, the KEK in Vault, the component.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: String,
    pub table: WalletTable,
    pub kv_mount: String,
    pub key_path: String,
    /// A component file to run instead of the built-in one.
    pub component: Option<PathBuf>,
}

/// A command's connections and compiled component.
pub struct App {
    settings: Settings,
    source: ComponentSource,
    runtime: Runtime,
    kv: KvBackend,
    database: Database,
}

impl App {
    /// Compiles the component, checks Vault (address, seal status, token) and the database
    /// (reachable, wallet table and columns present) at once, so a misconfiguration fails before
    /// any work with a message that names the fix. `migrate` creates rotor's own tables.
    pub async fn open(settings: Settings, kv: impl Into<KvSource>, migrate: bool) -> anyhow::Result<App> {
        let component_path = settings.component.clone();
        let compile = tokio::task::spawn_blocking(move || -> anyhow::Result<(ComponentSource, Runtime)> {
            let source = match component_path {
                Some(path) => ComponentSource::from_file(&path)?,
                None => ComponentSource::builtin(),
            };
            let runtime = Runtime::load(&source)?;
            Ok((source, runtime))
        });
        let kv = match kv.into() {
            KvSource::Vault(config) => KvBackend::Vault(VaultClient::new(config)?),
            KvSource::EnvKek(kek) => KvBackend::EnvKek(std::sync::Arc::new(kek)),
        };
        let check_vault = async {
            if let Some(vault) = kv.vault() {
                vault.check().await?;
            }
            anyhow::Ok(())
        };
        let connect_database = async {
            let database = Database::connect(&settings.database_url, settings.table.clone()).await?;
            if migrate {
                database.migrate().await.context("creating rotor's tables")?;
            }
            anyhow::Ok(database)
        };
        let (compiled, vault_checked, database) = tokio::join!(compile, check_vault, connect_database);
        let (source, runtime) = compiled.context("compiling the component panicked")??;
        vault_checked?;
        let database = database?;
        tracing::debug!(component = %source.origin, sha256 = %source.sha256, "component ready");
        Ok(App { settings, source, runtime, kv, database })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn component(&self) -> &ComponentSource {
        &self.source
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Vault, or the read-only KEK from the environment.
    pub fn kv(&self) -> &KvBackend {
        &self.kv
    }

    pub fn key_location(&self) -> KeyLocation {
        KeyLocation { key_path: self.settings.key_path.clone() }
    }

    /// A fresh component instance that may touch the KEK's paths and the wallets, read-only
    /// or read-write.
    pub async fn instance(&self, access: Access, reporter: Reporter) -> anyhow::Result<Instance> {
        let identity = RunIdentity::this_process(self.source.sha256.clone());
        let state = RunState::new(
            self.kv.clone(),
            self.database.clone(),
            Grants::for_key(&self.settings.key_path, access),
            identity,
            reporter,
        );
        self.runtime.instantiate(state).await
    }
}
