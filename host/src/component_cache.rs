//! Compiled components kept on disk, so that a command does not recompile the component it ran
//! last time (~85 ms for rotor's own in a release build; far more for a large one).
//!
//! An entry is keyed by the component's sha256 and by the engine's compatibility hash (wasmtime
//! version, compiler settings, CPU features), so an upgraded rotor or another machine's cache
//! never loads a stale entry. Loading an entry runs native code from the cache directory, so
//! rotor only trusts one that this user owns and nobody else can write (see docs/SANDBOX.md).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// `ROTOR_CACHE_DIR`, else `$XDG_CACHE_HOME/rotor`, else `~/.cache/rotor`; `None` when none
    /// of them is set (then every command compiles).
    pub fn default_location() -> Option<ComponentCache> {
        let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = env_dir("ROTOR_CACHE_DIR")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("rotor")))
            .or_else(|| env_dir("HOME").map(|d| d.join(".cache").join("rotor")))?;
        Some(ComponentCache { dir })
    }

    /// A cache in `dir`, whether or not it exists yet.
    pub fn at(dir: impl Into<PathBuf>) -> ComponentCache {
        ComponentCache { dir: dir.into() }
    }

    /// The folder the compiled components are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of the component with this digest lives for this engine.
    pub fn entry(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached compiled component, or compiles `bytes` and caches the result. A cache that
    /// cannot be used (unwritable, untrusted, stale) only costs the compilation: it is logged,
    /// never fatal.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, sha256);
        match self.load(engine, &entry) {
            Ok(Some(component)) => return Ok((component, CacheOutcome::Hit)),
            Ok(None) => {}
            Err(e) => tracing::warn!("not using cached component {}: {e:#}", entry.display()),
        }
        let component = Component::new(engine, bytes)?;
        match self.store(&component, &entry) {
            Ok(()) => tracing::debug!(path = %entry.display(), "compiled component cached"),
            Err(e) => {
                tracing::warn!("could not cache the compiled component in {}: {e:#}", self.dir.display())
            }
        }
        Ok((component, CacheOutcome::Compiled))
    }

    fn load(&self, engine: &Engine, entry: &Path) -> anyhow::Result<Option<Component>> {
        let metadata = match std::fs::symlink_metadata(entry) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        trusted(&std::fs::symlink_metadata(&self.dir)?, &self.dir)?;
        trusted(&metadata, entry)?;
        anyhow::ensure!(metadata.is_file(), "{} is not a regular file", entry.display());
        deserialize(engine, entry).map(Some)
    }

    fn store(&self, component: &Component, entry: &Path) -> anyhow::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let compiled = component.serialize()?;
        // Written whole under a temporary name, then renamed: a reader sees all or nothing.
        let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
        let mut file =
            std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&compiled)?;
        file.sync_all()?;
        std::fs::rename(&temporary, entry)?;
        Ok(())
    }
}

/// Whether a command used a cached compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The compiled form was in the cache and was loaded.
    Hit,
    /// The component was compiled (and the cache written, if there is one).
    Compiled,
}

/// Only this user may have written it: owned by us, not writable by group or others.
fn trusted(metadata: &std::fs::Metadata, path: &Path) -> anyhow::Result<()> {
    let me = process_uid()?;
    anyhow::ensure!(
        metadata.uid() == me,
        "{} belongs to uid {}, not to this user (uid {me})",
        path.display(),
        metadata.uid()
    );
    anyhow::ensure!(
        metadata.mode() & 0o022 == 0,
        "{} is writable by others (mode {:o}): fix with chmod go-w",
        path.display(),
        metadata.mode() & 0o777
    );
    Ok(())
}

/// This process's effective uid: the owner of its /proc entry (std has no safe `geteuid`).
fn process_uid() -> anyhow::Result<u32> {
    let metadata = std::fs::metadata("/proc/self").context("reading /proc/self to learn this user's uid")?;
    Ok(metadata.uid())
}

/// Loads native code compiled by this engine configuration.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, entry: &Path) -> anyhow::Result<Component> {
    // SAFETY: wasmtime requires that the file was produced by `Component::serialize` of a
    // compatible engine and not tampered with. rotor writes entries only through `store`, under
    // names keyed by the engine's compatibility hash, in a directory `load` has just checked is
    // owned by this user and writable by nobody else; wasmtime itself rejects files whose
    // header does not match this engine.
    let component = unsafe { Component::deserialize_file(engine, entry) }?;
    Ok(component)
}
