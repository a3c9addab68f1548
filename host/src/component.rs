//! Loading the crypto-core component and calling its exports inside a fresh, limited store.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

use crate::bindings::{Rotator, RotatorPre, operations};
use crate::imports::RunState;

/// Linear memory one instance may grow to. A batch of 10,000 2 KiB wallets with their
/// replacements needs ~60 MiB; anything far beyond is a runaway component.
pub const MEMORY_LIMIT_BYTES: usize = 256 << 20;

/// The reference component, built from `guest/` by `build.rs` and shipped inside the binary.
static BUILTIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rotor_guest.wasm"));

/// The component bytes a run uses, where they came from, and their digest.
pub struct ComponentSource {
    bytes: Cow<'static, [u8]>,
    /// `built-in` or the file's path.
    pub origin: String,
    /// Hex sha256 of the bytes; recorded with every rotation.
    pub sha256: String,
}

impl ComponentSource {
    pub fn builtin() -> ComponentSource {
        ComponentSource::new(Cow::Borrowed(BUILTIN), "built-in".into())
    }

    /// Reads a component file (`--component PATH` / `ROTOR_COMPONENT`).
    pub fn from_file(path: &Path) -> anyhow::Result<ComponentSource> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read component file {} (check --component or ROTOR_COMPONENT)", path.display())
        })?;
        // A component starts with the wasm magic and layer 1; a core module has layer 0.
        match bytes.get(..8) {
            Some([0x00, b'a', b's', b'm', _, _, 0x01, 0x00]) => {}
            Some([0x00, b'a', b's', b'm', ..]) => bail!(
                "{} is a core WebAssembly module, not a component: build it for wasm32-wasip2 \
                 (or wrap it with `wasm-tools component new`)",
                path.display()
            ),
            _ => bail!(
                "{} is not a WebAssembly component (no \\0asm header): point --component at a component \
                 built for wasm32-wasip2, or leave it unset for the built-in one",
                path.display()
            ),
        }
        Ok(ComponentSource::new(Cow::Owned(bytes), path.display().to_string()))
    }

    fn new(bytes: Cow<'static, [u8]>, origin: String) -> ComponentSource {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        ComponentSource { bytes, origin, sha256 }
    }
}

/// A compiled, linked component, ready to be instantiated once per command.
pub struct Runtime {
    engine: Engine,
    pre: RotatorPre<RunState>,
}

impl Runtime {
    /// Compiles the component and links it against rotor's imports and WASI p2. Fails if the
    /// component imports anything else, or does not export rotor's interfaces.
    pub fn load(source: &ComponentSource) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&Config::new())?;
        let component = Component::new(&engine, &source.bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component {} does not compile", source.origin))?;
        let mut linker = Linker::<RunState>::new(&engine);
        // A guest built with std imports wasi:cli, wasi:io and wasi:random; RunState grants it
        // no directories, environment or sockets, so randomness is all it gets in practice.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Rotator::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(RotatorPre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| {
            format!("component {} does not fit rotor's world rotor:kek/rotator@0.1.0", source.origin)
        })?;
        Ok(Runtime { engine, pre })
    }

    /// A fresh instance in its own store, with `state` as everything it may reach.
    pub async fn instantiate(&self, state: RunState) -> anyhow::Result<Instance> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limits());
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance { store, bindings })
    }
}

/// One instance of the component. Each method is one call of an export; its outer `Err` is a
/// trap or host failure, its inner `Err` the component's own error message.
pub struct Instance {
    store: Store<RunState>,
    bindings: Rotator,
}

type Answer<T> = anyhow::Result<Result<T, String>>;

impl Instance {
    pub fn state(&self) -> &RunState {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut RunState {
        self.store.data_mut()
    }

    pub async fn validate(
        &mut self,
        at: &operations::KeyLocation,
        batch_size: u32,
    ) -> Answer<operations::ValidateReport> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_validate(&mut self.store, at, batch_size).await?)
    }

    pub async fn rotate(
        &mut self,
        at: &operations::KeyLocation,
        options: operations::RotateOptions,
    ) -> Answer<operations::RotateReport> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_rotate(&mut self.store, at, options).await?)
    }

    pub async fn history(&mut self, at: &operations::KeyLocation) -> Answer<Vec<operations::HistoryEntry>> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_history(&mut self.store, at).await?)
    }

    pub async fn seal_wallet(
        &mut self,
        at: &operations::KeyLocation,
        id: &str,
        plaintext: &[u8],
    ) -> Answer<u32> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_seal_wallet(&mut self.store, at, id, plaintext).await?)
    }

    pub async fn open_wallet(&mut self, at: &operations::KeyLocation, id: &str) -> Answer<Vec<u8>> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_open_wallet(&mut self.store, at, id).await?)
    }

    pub async fn import_kek(&mut self, at: &operations::KeyLocation, kek_hex: &str) -> Answer<u32> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_import_kek(&mut self.store, at, kek_hex).await?)
    }

    pub async fn prune(
        &mut self,
        at: &operations::KeyLocation,
        keep: u32,
    ) -> Answer<operations::PruneReport> {
        let ops = self.bindings.rotor_kek_operations();
        Ok(ops.call_prune(&mut self.store, at, keep).await?)
    }

    pub async fn codec_open(
        &mut self,
        keks: &[(u32, String)],
        id: &str,
        ciphertext: &str,
    ) -> Answer<Vec<u8>> {
        let codec = self.bindings.rotor_kek_codec();
        Ok(codec.call_open(&mut self.store, keks, id, ciphertext).await?)
    }

    pub async fn codec_seal(
        &mut self,
        kek_hex: &str,
        kek_version: u32,
        id: &str,
        plaintext: &[u8],
    ) -> Answer<String> {
        let codec = self.bindings.rotor_kek_codec();
        Ok(codec.call_seal(&mut self.store, kek_hex, kek_version, id, plaintext).await?)
    }
}
