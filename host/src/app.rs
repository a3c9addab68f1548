//! What every command sets up: the compiled component, a checked Vault client and a checked
//! database, and a way to start a component instance with the grants the command needs.

use std::sync::Arc;

use anyhow::Context;

use crate::bindings::operations::KeyLocation;
use crate::capabilities::RunState;
use crate::component::{
    AuditInstance, AuditRuntime, ComponentChoice, ComponentSource, Instance, Runtime, Sandbox,
};
use crate::component_cache::ComponentCache;
use crate::grants::{Access, Grants};
use crate::inspect::World;
use crate::keyring::{Derivation, KeyRing};
use crate::limits::Limits;
use crate::plan::RunPlan;
use crate::progress::Reporter;
use crate::store::{Database, RunIdentity, Scope, WalletTable};
use crate::vault::{KvBackend, KvSource, VaultWrites};

/// Where things are: the database, the wallet table, the KEK in Vault, the component, and the
/// sandbox's rules.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The database to connect to (`postgres://…` or `sqlite:…`).
    pub database_url: String,
    /// The table holding the wallets, and its id and ciphertext columns: the first target,
    /// which single-row commands (`seal`, `open`) use.
    pub table: WalletTable,
    /// Further tables under the same KEK (`[[target]]` in rotor.toml), which a rotation moves
    /// with `table` to the same new KEK version.
    pub more_targets: Vec<WalletTable>,
    /// The Vault KV v2 mount the KEK lives under (e.g. `secret`).
    pub kv_mount: String,
    /// The KEK's path inside `kv_mount`.
    pub key_path: String,
    /// A component to run instead of the built-in one.
    pub component: Option<ComponentChoice>,
    /// Which components may run, and within which limits.
    pub sandbox: SandboxSettings,
    /// rotor.toml's Vault address, namespace and CA, for what the environment leaves unset.
    pub vault_defaults: crate::config::VaultSection,
    /// How the command spreads its work: batch size, workers, lease.
    pub plan: RunPlan,
    /// The settings file's profile these settings come from, if one was chosen.
    pub profile: Option<String>,
    /// How old the KEK may grow before `rotor rotate --scheduled` replaces it.
    pub rotate_after: Option<std::time::Duration>,
    /// The tenant whose KEK and rows these settings name (`--tenant`), if rotor.toml has
    /// `[tenants]`.
    pub tenant: Option<String>,
    /// `[tenants] derive-from`: the root KEK's path, from which each tenant's KEKs are derived.
    pub derive_from: Option<String>,
}

impl Settings {
    /// The KEK and the tables this run acts on, as the journal records them.
    pub fn scope(&self) -> Scope {
        let targets = std::iter::once(&self.table).chain(&self.more_targets).cloned().collect();
        Scope::new(&self.kv_mount, &self.key_path, targets)
    }

    /// Where this tenant's KEKs are derived from, if rotor.toml derives them.
    pub fn derivation(&self) -> Option<Derivation> {
        let (root_path, tenant) = (self.derive_from.clone()?, self.tenant.clone()?);
        Some(Derivation { root_path, tenant })
    }
}

/// What components may run, and within which limits.
#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// What each component instance may use: CPU and per-call time, memory, batch rows, value size.
    pub limits: Limits,
    /// sha256 digests of the component files allowed to run.
    pub pinned: Vec<String>,
    /// Run a component whose digest is not in `pinned`.
    pub allow_unpinned: bool,
    /// Where compiled components are kept between runs; `None`: compile on every run.
    pub cache: Option<ComponentCache>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            limits: Limits::default(),
            pinned: Vec::new(),
            allow_unpinned: false,
            cache: ComponentCache::default_location(),
        }
    }
}

impl SandboxSettings {
    /// Refuses a component file whose digest is not pinned, unless unpinned ones are allowed.
    pub fn admit(&self, source: &ComponentSource) -> anyhow::Result<()> {
        if source.is_builtin() || self.pinned.contains(&source.sha256) {
            return Ok(());
        }
        if self.allow_unpinned {
            tracing::warn!(component = %source.origin, sha256 = %source.sha256, "running an unpinned component");
            return Ok(());
        }
        anyhow::bail!(
            "component {} (sha256 {}) is not pinned: review it, then add its digest to `pinned` under \
             [component] in rotor.toml, or pass --allow-unpinned to run it anyway",
            source.origin,
            source.sha256
        )
    }
}

/// The component a command runs, compiled and linked for its world.
enum Loaded {
    Rotator(Runtime),
    Auditor(AuditRuntime),
}

/// A command's connections and compiled component.
pub struct App {
    settings: Settings,
    sandbox: Arc<Sandbox>,
    source: ComponentSource,
    loaded: Loaded,
    kv: KvBackend,
    database: Database,
}

impl App {
    /// Compiles the rotation component, checks Vault (address, seal status, token) and the
    /// database (reachable, wallet table and columns present) at once, so that a
    /// misconfiguration fails before any work with a message that names the fix. `migrate`
    /// creates rotor's own tables.
    pub async fn open(settings: Settings, kv: impl Into<KvSource>, migrate: bool) -> anyhow::Result<App> {
        App::open_for(World::Rotator, settings, kv.into(), migrate).await
    }

    /// As [`App::open`], for an audit component.
    pub async fn open_audit(settings: Settings, kv: impl Into<KvSource>) -> anyhow::Result<App> {
        App::open_for(World::Auditor, settings, kv.into(), false).await
    }

    async fn open_for(world: World, settings: Settings, kv: KvSource, migrate: bool) -> anyhow::Result<App> {
        let choice = settings.component.clone();
        let sandbox_settings = settings.sandbox.clone();
        let compile = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let source = match choice {
                Some(choice) => choice.load()?,
                None => ComponentSource::builtin_for(world),
            };
            sandbox_settings.admit(&source)?;
            let sandbox = Sandbox::new(sandbox_settings.limits, sandbox_settings.cache.clone())?;
            let loaded = match world {
                World::Rotator => Loaded::Rotator(sandbox.rotator(&source)?),
                World::Auditor => Loaded::Auditor(sandbox.auditor(&source)?),
            };
            Ok((Arc::new(sandbox), source, loaded))
        });
        // Vault checked, or the seed's environment KEK (see KvSource::connect).
        let check_vault = kv.connect();
        let connect_database = async {
            let database =
                Database::connect_for(&settings.database_url, settings.scope(), &settings.plan).await?;
            if migrate {
                database.migrate().await.context("creating rotor's tables")?;
            }
            anyhow::Ok(database)
        };
        let (compiled, vault_checked, database) = tokio::join!(compile, check_vault, connect_database);
        let (sandbox, source, loaded) = compiled.context("compiling the component panicked")??;
        let kv = vault_checked?;
        let database = database?;
        tracing::debug!(component = %source.origin, sha256 = %source.sha256, "component ready");
        Ok(App { settings, sandbox, source, loaded, kv, database })
    }

    /// The settings the app was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How the command spreads its work.
    pub fn plan(&self) -> &RunPlan {
        &self.settings.plan
    }

    /// The component this app runs: its bytes, origin and digest.
    pub fn component(&self) -> &ComponentSource {
        &self.source
    }

    /// The wallet database, connected and checked at startup.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Where the component's `kv` import reads: Vault, or the seed's environment KEK.
    pub fn kv(&self) -> &KvBackend {
        &self.kv
    }

    /// The KEKs at the settings' key path, held by the host: for commands that read or change
    /// them without a component (`keys`, `status`, `destroy`, staging).
    pub fn key_ring(&self) -> KeyRing {
        let ring = KeyRing::new(self.kv.clone(), &self.settings.key_path);
        match self.settings.derivation() {
            Some(derivation) => ring.with_derivation(derivation),
            None => ring,
        }
    }

    /// Fails, before anything changes, if the Vault token's policies do not allow `writes` at
    /// the settings' KEK (and the root it is derived from); without Vault there is no one to ask.
    pub async fn require_policies(&self, writes: VaultWrites) -> anyhow::Result<()> {
        let Some(vault) = self.kv.vault() else {
            return Ok(());
        };
        let settings = &self.settings;
        crate::vault::require_policies(vault, &settings.key_path, settings.derive_from.as_deref(), writes)
            .await
    }

    /// Where the KEK lives, in the form the component's exports take.
    pub fn key_location(&self) -> KeyLocation {
        KeyLocation { key_path: self.settings.key_path.clone() }
    }

    fn run_state(&self, grants: Grants, reporter: Reporter) -> RunState {
        let identity = RunIdentity::this_process(self.source.sha256.clone());
        RunState::new(
            self.key_ring(),
            self.database.clone(),
            grants,
            identity,
            reporter,
            *self.sandbox.limits(),
            self.settings.plan.lease_ttl,
        )
    }

    /// A fresh rotation-component instance with the grants `access` needs of the KEK and the
    /// wallets. Whatever component it is, the host checks every wallet it writes.
    pub async fn instance(&self, access: Access, reporter: Reporter) -> anyhow::Result<Instance> {
        let Loaded::Rotator(runtime) = &self.loaded else {
            anyhow::bail!("this command loaded an audit component, not a rotation component");
        };
        let state = self.run_state(Grants::for_key(&self.settings.key_path, &access), reporter);
        runtime.instantiate(state).await
    }

    /// A fresh audit-component instance: read-only grants on the KEK's paths and the wallets.
    pub async fn audit_instance(&self, reporter: Reporter) -> anyhow::Result<AuditInstance> {
        let Loaded::Auditor(runtime) = &self.loaded else {
            anyhow::bail!("this command loaded a rotation component, not an audit component");
        };
        let state = self.run_state(Grants::for_key(&self.settings.key_path, &Access::ReadOnly), reporter);
        runtime.instantiate(state).await
    }
}
