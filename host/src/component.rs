//! Loading components and calling their exports, each call inside a fresh store with the run's
//! limits: CPU and real-time budgets enforced through epoch interruption and at every host
//! call, a memory cap, and the grants the imports check.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre};
use wasmtime::{CallHook, Config, Engine, Store, UpdateDeadline};

use crate::answer::{Answer, explain};
use crate::bindings::auditor::audit::{self, AuditOptions, AuditReport};
use crate::bindings::auditor::{Auditor, AuditorPre};
use crate::bindings::operations::{
    HistoryEntry, KeyLocation, MoveReport, PruneReport, RotateOptions, RotateReport, RotationPlan,
    ValidateReport,
};
use crate::bindings::types::Failure;
use crate::bindings::{Rotator, RotatorPre};
use crate::capabilities::{RunState, SecretHandle};
use crate::component_cache::{CacheOutcome, ComponentCache};
use crate::fit;
use crate::inspect::{Inspection, World};
use crate::limits::{CallBound, EPOCH_TICK, Limits};
use rotor_codec::{Kek, Plaintext};
use wasmtime::component::Resource;
use zeroize::Zeroizing;

/// The reference rotation component, built from `guest/` by `build.rs`, shipped in the binary.
static BUILTIN_ROTATOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rotor_guest.wasm"));
/// The shipped audit component, built from `audit/`.
static BUILTIN_AUDITOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rotor_audit.wasm"));

/// Which component a command runs instead of the built-in one.
#[derive(Clone)]
pub enum ComponentChoice {
    /// A component file (`--component PATH`, `[component] path` in rotor.toml).
    File(PathBuf),
    /// A component already in memory, e.g. one uploaded to rotor's OpenBao mount.
    Bytes {
        /// What errors and reports call it.
        origin: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl ComponentChoice {
    /// Reads the component.
    pub fn load(&self) -> anyhow::Result<ComponentSource> {
        match self {
            ComponentChoice::File(path) => ComponentSource::from_file(path),
            ComponentChoice::Bytes { origin, bytes } => {
                ComponentSource::from_bytes(bytes.to_vec(), origin.clone())
            }
        }
    }

    /// What errors and reports call it: the file's path, or the origin given.
    pub fn origin(&self) -> String {
        match self {
            ComponentChoice::File(path) => path.display().to_string(),
            ComponentChoice::Bytes { origin, .. } => origin.clone(),
        }
    }
}

impl std::fmt::Debug for ComponentChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentChoice::File(path) => f.debug_tuple("File").field(path).finish(),
            ComponentChoice::Bytes { origin, bytes } => {
                f.debug_struct("Bytes").field("origin", origin).field("len", &bytes.len()).finish()
            }
        }
    }
}

/// The component bytes a run uses, where they came from, and their digest.
pub struct ComponentSource {
    bytes: Cow<'static, [u8]>,
    /// `built-in` or the file's path.
    pub origin: String,
    /// Hex sha256 of the bytes; recorded with every rotation.
    pub sha256: String,
    builtin: bool,
}

impl ComponentSource {
    /// rotor's own rotation component: the reference every other one is checked against.
    pub fn builtin() -> ComponentSource {
        ComponentSource::new(Cow::Borrowed(BUILTIN_ROTATOR), "built-in".into(), true)
    }

    /// rotor's own audit component.
    pub fn builtin_auditor() -> ComponentSource {
        ComponentSource::new(Cow::Borrowed(BUILTIN_AUDITOR), "built-in audit".into(), true)
    }

    /// The built-in component for `world`.
    pub fn builtin_for(world: World) -> ComponentSource {
        match world {
            World::Rotator => ComponentSource::builtin(),
            World::Auditor => ComponentSource::builtin_auditor(),
        }
    }

    /// Reads a component file (`--component PATH` / `ROTOR_COMPONENT`).
    pub fn from_file(path: &Path) -> anyhow::Result<ComponentSource> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read component file {} (check --component or ROTOR_COMPONENT)", path.display())
        })?;
        ComponentSource::from_bytes(bytes, path.display().to_string())
    }

    /// A component held in memory (one uploaded to rotor's OpenBao mount, say); `origin` names
    /// it in errors and reports.
    pub fn from_bytes(bytes: Vec<u8>, origin: String) -> anyhow::Result<ComponentSource> {
        // A component starts with the wasm magic and layer 1; a core module has layer 0.
        match bytes.get(..8) {
            Some([0x00, b'a', b's', b'm', _, _, 0x01, 0x00]) => {}
            Some([0x00, b'a', b's', b'm', ..]) => bail!(
                "{origin} is a core WebAssembly module, not a component: build it for wasm32-wasip2 \
                 (or wrap it with `wasm-tools component new`)"
            ),
            _ => bail!(
                "{origin} is not a WebAssembly component (no \\0asm header): use a component built for \
                 wasm32-wasip2, or leave the component unset for the built-in one"
            ),
        }
        Ok(ComponentSource::new(Cow::Owned(bytes), origin, false))
    }

    fn new(bytes: Cow<'static, [u8]>, origin: String, builtin: bool) -> ComponentSource {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        ComponentSource { bytes, origin, sha256, builtin }
    }

    /// The component's bytes, as compiled and hashed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Shipped inside this rotor binary (trusted as the binary is).
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }
}

/// The engine every component of this process runs on, with the run limits and the cache of
/// compiled components.
pub struct Sandbox {
    engine: Engine,
    limits: Limits,
    cache: Option<ComponentCache>,
    /// What this sandbox compiled, by sha256: rotor's own component, which a component's
    /// exports are checked against, compiles once per command.
    compiled: std::sync::Mutex<std::collections::HashMap<String, Component>>,
}

impl Sandbox {
    /// An engine configured for `limits` (epoch interruption, async, memory), compiling through
    /// `cache` when there is one.
    pub fn new(limits: Limits, cache: Option<ComponentCache>) -> anyhow::Result<Sandbox> {
        limits.check().map_err(anyhow::Error::msg)?;
        let mut config = Config::new();
        // Generated code checks the epoch at loop heads and function entries; a thread advances
        // it every tick, and each store's callback decides whether its guest is over budget.
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("rotor-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticking.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the thread that enforces CPU limits")?;
        Ok(Sandbox { engine, limits, cache, compiled: Default::default() })
    }

    /// The engine every component of this command is compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every instance of this command runs within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles the component (or loads its cached compilation) and inspects it: names, and
    /// types against the world it targets (see [`crate::fit`]).
    pub fn compile(&self, source: &ComponentSource) -> anyhow::Result<(Component, Inspection)> {
        let component = self.compile_only(source)?;
        let mut inspection = Inspection::of(&self.engine, &component, &source.sha256, source.bytes().len());
        if let Some(world) = inspection.world {
            // rotor's own component is the reference for the world's exports; it needs no
            // comparing with itself.
            let reference = match source.is_builtin() {
                true => None,
                false => {
                    Some(self.compile_only(&ComponentSource::builtin_for(world)).with_context(|| {
                        format!("compiling rotor's own {} component to compare with", world.name())
                    })?)
                }
            };
            inspection.misfits = fit::misfits(&self.engine, &component, world, reference.as_ref());
        }
        Ok((component, inspection))
    }

    fn compile_only(&self, source: &ComponentSource) -> anyhow::Result<Component> {
        let compiled_here = || self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(component) = compiled_here().get(&source.sha256) {
            return Ok(component.clone());
        }
        let compiled = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &source.sha256, source.bytes()),
            None => Component::new(&self.engine, source.bytes())
                .map(|c| (c, CacheOutcome::Compiled))
                .map_err(anyhow::Error::from),
        };
        let (component, outcome) =
            compiled.with_context(|| format!("component {} does not compile", source.origin))?;
        tracing::debug!(component = %source.origin, ?outcome, "component compiled");
        compiled_here().insert(source.sha256.clone(), component.clone());
        Ok(component)
    }

    /// A rotation component, checked against the `rotator` world and linked.
    pub fn rotator(&self, source: &ComponentSource) -> anyhow::Result<Runtime> {
        let pre = self.link(source, World::Rotator, RotatorPre::new)?;
        Ok(Runtime { engine: self.engine.clone(), pre })
    }

    /// An audit component, checked against the read-only `auditor` world and linked with its
    /// imports only: the write functions are not in the linker at all.
    pub fn auditor(&self, source: &ComponentSource) -> anyhow::Result<AuditRuntime> {
        let pre = self.link(source, World::Auditor, AuditorPre::new)?;
        Ok(AuditRuntime { engine: self.engine.clone(), pre })
    }

    /// Compiles `source`, checks it against `world` and links it with that world's imports
    /// only; `typed` makes the world's typed pre-instance.
    fn link<P>(
        &self,
        source: &ComponentSource,
        world: World,
        typed: impl FnOnce(InstancePre<RunState>) -> wasmtime::Result<P>,
    ) -> anyhow::Result<P> {
        let (component, inspection) = self.compile(source)?;
        inspection.require(&source.origin, world)?;
        fit::world_linker(&self.engine, world)?
            .instantiate_pre(&component)
            .and_then(typed)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("component {} does not fit rotor's world {}", source.origin, world.name())
            })
    }
}

/// A store for one instance, with everything that limits it wired in.
fn limited_store(engine: &Engine, state: RunState) -> Store<RunState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.memory_cap());
    // Each switch between guest and host moves the guest clock, so that time spent waiting for
    // Vault or the database does not count against the component's CPU budget. And a call into
    // the host past the run's or the call's real-time limit traps instead of running, so that a
    // component cannot keep itself alive by calling the host (even only `report.progress`).
    store.call_hook(|mut store, hook| {
        let clock = store.data_mut().clock();
        match hook {
            CallHook::CallingWasm => clock.enter_guest(true),
            CallHook::ReturningFromHost => clock.enter_guest(false),
            CallHook::CallingHost => {
                clock.leave_guest(true);
                store.data_mut().wall().check()?;
            }
            CallHook::ReturningFromWasm => clock.leave_guest(false),
        }
        Ok(())
    });
    store.set_epoch_deadline(1);
    // The runtime's epoch check is itself a call into the host: the clock knows to discount it.
    store.epoch_deadline_callback(|mut store| {
        store.data_mut().clock().tick()?;
        store.data_mut().wall().check()?;
        Ok(UpdateDeadline::Continue(1))
    });
    store
}

/// A compiled, linked rotation component, ready to be instantiated once per command.
pub struct Runtime {
    engine: Engine,
    pre: RotatorPre<RunState>,
}

impl Runtime {
    /// A fresh instance in its own store, with `state` as everything it may reach.
    pub async fn instantiate(&self, state: RunState) -> anyhow::Result<Instance> {
        let mut store = limited_store(&self.engine, state);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance { store, bindings })
    }
}

/// A compiled, linked audit component.
pub struct AuditRuntime {
    engine: Engine,
    pre: AuditorPre<RunState>,
}

impl AuditRuntime {
    /// A fresh instance in its own store, with `state` as everything it may reach.
    pub async fn instantiate(&self, state: RunState) -> anyhow::Result<AuditInstance> {
        let mut store = limited_store(&self.engine, state);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(AuditInstance { store, bindings })
    }
}

/// Methods that call one export each, in the instance's store, under its wall-clock bound (a
/// [`CallBound`]: the whole run's, for exports that walk the table, or a quick call's own), with a
/// trap or limit turned into the operator's message by [`explain`]:
/// `name [bound] => interface.call(args) -> answer`.
macro_rules! exports {
    ($(
        $(#[$doc:meta])*
        $name:ident [$($bound:tt)+] => $interface:ident . $call:ident ( $($arg:ident : $ty:ty),* ) -> $answer:ty;
    )*) => {$(
        $(#[$doc])*
        pub async fn $name(&mut self, $($arg: $ty),*) -> Answer<$answer> {
            self.store.data_mut().wall().begin_call(CallBound::$($bound)+);
            self.bindings.$interface().$call(&mut self.store, $($arg),*).await.map_err(explain)
        }
    )*};
}

/// One instance of a rotation component.
pub struct Instance {
    store: Store<RunState>,
    bindings: Rotator,
}

impl Instance {
    /// What the instance may reach, and what it recorded (odd rows, its lease).
    pub fn state(&self) -> &RunState {
        self.store.data()
    }

    /// What the instance may reach, to hand it batches.
    pub fn state_mut(&mut self) -> &mut RunState {
        self.store.data_mut()
    }

    exports! {
        /// `operations.validate`: opens every wallet, `batch_size` at a time.
        validate [Run] => rotor_kek_operations.call_validate(at: &KeyLocation, batch_size: u32) -> ValidateReport;
        /// `operations.validate-batches`: opens the batches the host hands this instance.
        validate_batches [Run] => rotor_kek_operations.call_validate_batches(at: &KeyLocation) -> ValidateReport;
        /// `operations.rotate`: a whole rotation in this one instance (dry runs).
        rotate [Run] => rotor_kek_operations.call_rotate(at: &KeyLocation, options: RotateOptions) -> RotateReport;
        /// `operations.start-rotation`: records the rotation and stores its KEK, or resumes one.
        start_rotation [Run] => rotor_kek_operations.call_start_rotation(at: &KeyLocation, options: RotateOptions) -> RotationPlan;
        /// `operations.move-wallets`: moves the batches the host hands this instance.
        move_wallets [Run] => rotor_kek_operations.call_move_wallets(at: &KeyLocation, plan: RotationPlan) -> MoveReport;
        /// `operations.history`: the journal and the seed's archives, newest first.
        history [Quick("history")] => rotor_kek_operations.call_history(at: &KeyLocation) -> Vec<HistoryEntry>;
        /// `operations.seal-wallet` on a secret already in the instance's table (see
        /// [`Instance::seal_wallet`]).
        seal_wallet_handle [Quick("seal-wallet")] => rotor_kek_operations.call_seal_wallet(at: &KeyLocation, id: &str, plaintext: Resource<SecretHandle>) -> u32;
        /// `operations.open-wallet`, answering with the secret's handle (see [`Instance::open_wallet`]).
        open_wallet_handle [Quick("open-wallet")] => rotor_kek_operations.call_open_wallet(at: &KeyLocation, id: &str) -> Resource<SecretHandle>;
        /// `operations.import-kek` of the key handed to the instance (see [`Instance::import_kek`]).
        import_given_kek [Quick("import-kek")] => rotor_kek_operations.call_import_kek(at: &KeyLocation) -> u32;
        /// `operations.prune`: destroys KEK versions no wallet uses, keeping the newest `keep`.
        prune [Quick("prune")] => rotor_kek_operations.call_prune(at: &KeyLocation, keep: u32) -> PruneReport;
    }

    /// `operations.seal-wallet`: stores `plaintext` as wallet `id` under the current KEK. The
    /// component gets the plaintext as a handle; the host checks that the row it writes opens
    /// to exactly these bytes.
    pub async fn seal_wallet(&mut self, at: &KeyLocation, id: &str, plaintext: &[u8]) -> Answer<u32> {
        let state = self.store.data_mut();
        state.wallets_mut().expect_seal(Zeroizing::new(plaintext.to_vec()));
        let secret = state.table().push(SecretHandle::new(Zeroizing::new(plaintext.to_vec())))?;
        self.seal_wallet_handle(at, id, secret).await
    }

    /// `operations.open-wallet`: wallet `id`'s plaintext, taken back from the handle the
    /// component answers with.
    pub async fn open_wallet(&mut self, at: &KeyLocation, id: &str) -> Answer<Plaintext> {
        match self.open_wallet_handle(at, id).await? {
            Ok(secret) => Ok(Ok(self.store.data_mut().table().delete(secret)?.into_plaintext())),
            Err(failure) => Ok(Err(failure)),
        }
    }

    /// `operations.import-kek`: stores `kek` (the operator's, from `migrate-kek`) as the first
    /// KEK. The component only orders the steps; the key goes from here to Vault.
    /// The host then reads Vault back: the answer stands only if the key given is current and
    /// archived at the version the component reports.
    pub async fn import_kek(&mut self, at: &KeyLocation, kek: Kek) -> Answer<u32> {
        self.store.data_mut().keys_mut().ring_mut().set_given(kek);
        let version = match self.import_given_kek(at).await? {
            Ok(version) => version,
            Err(failure) => return Ok(Err(failure)),
        };
        let ring = self.store.data_mut().keys_mut().ring_mut();
        Ok(match ring.confirm_import(version).await {
            Ok(()) => Ok(version),
            Err(e) => {
                tracing::error!("migrate-kek: {e}");
                Err(Failure::Inconsistent(e.to_string()))
            }
        })
    }
}

/// One instance of an audit component.
pub struct AuditInstance {
    store: Store<RunState>,
    bindings: Auditor,
}

impl AuditInstance {
    /// What the instance may reach, and what it recorded (odd rows).
    pub fn state(&self) -> &RunState {
        self.store.data()
    }

    /// The same, to point the instance at another target between runs.
    pub fn state_mut(&mut self) -> &mut RunState {
        self.store.data_mut()
    }

    exports! {
        /// `audit.run`: every check over every wallet and KEK.
        run [Run] => rotor_kek_audit.call_run(at: &audit::KeyLocation, options: AuditOptions) -> AuditReport;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{ComponentSource, Sandbox, World};
    use crate::fit;
    use crate::inspect::Side;
    use crate::limits::Limits;

    /// The built-in bytes as if read from a file, so that they are inspected as any other.
    fn as_file(world: World) -> ComponentSource {
        let bytes = ComponentSource::builtin_for(world).bytes().to_vec();
        ComponentSource::new(Cow::Owned(bytes), format!("{}.wasm", world.name()), false)
    }

    #[test]
    fn rotors_own_components_fit_their_worlds() {
        let sandbox = Sandbox::new(Limits::default(), None).unwrap();
        for world in [World::Rotator, World::Auditor] {
            let (_, inspection) = sandbox.compile(&as_file(world)).unwrap();
            assert_eq!(inspection.world, Some(world));
            assert_eq!(inspection.misfits, [], "{}", inspection.human());
            inspection.require("rotor's own", world).unwrap();
        }
    }

    #[test]
    fn a_component_of_the_other_world_lacks_every_export_rotor_calls() {
        let sandbox = Sandbox::new(Limits::default(), None).unwrap();
        let (auditor, _) = sandbox.compile(&ComponentSource::builtin_auditor()).unwrap();
        let (rotator, _) = sandbox.compile(&ComponentSource::builtin()).unwrap();
        let misfits = fit::misfits(sandbox.engine(), &auditor, World::Rotator, Some(&rotator));
        // Its imports are refused by name (`refused_imports`), not as misfits.
        assert!(misfits.iter().all(|m| m.side == Side::Export), "{misfits:?}");
        let named = |interface: &str, function: &str| {
            misfits.iter().find(|m| {
                m.interface.as_deref() == Some(interface) && m.function.as_deref() == Some(function)
            })
        };
        let validate = named("rotor:kek/operations@0.3.0", "validate").expect("validate");
        assert_eq!(validate.declared, None);
        assert_eq!(validate.reason, "not exported: rotor calls it");
        let open = named("rotor:kek/operations@0.3.0", "open-wallet").expect("open-wallet");
        assert_eq!(
            open.expected.as_deref(),
            Some(
                "func(at: record{key-path: string}, id: string) -> result<own<resource>, variant{refused(string), inconsistent(string), unavailable(string)}>"
            )
        );
    }
}
