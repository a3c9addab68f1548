//! The host side of the component's imports, one module per WIT capability, each with its
//! context, its `Host` impls (read-write and, where the auditor world has one, read-only) and
//! its `add_to_linker`, in the shape of wasmtime's WASI crates:
//!
//! * [`keys`]: `keys` / `key-reader`, the KEKs held by the host, handed out as handles;
//! * [`wallet_store`]: `wallet-store` / `wallet-reader`, the wallet table and checked writes;
//! * [`journal`]: `journal` / `journal-reader`, rotor's record of rotations;
//! * [`report`]: `report`, the component's log and progress.
//!
//! [`RunState`] is what one instance's store holds: those contexts, the instance's
//! [`Lease`], and the WASI context and limits the runner wires in.

/// Defines a capability's `add_to_linker` for a world, with the `HasData` marker wasmtime's
/// generated linking takes: the capability's types interface, then `$read_write` for a rotator
/// or the read-only `$read_only` for an auditor, so that no write function is in an auditor's
/// linker at all. `$data` is what the getter hands the `Host` impls, for a lifetime `$lt`.
macro_rules! link_for_world {
    ($lt:lifetime, $data:ty, $types:ident, $read_write:ident, $read_only:ident) => {
        /// Marks what this capability's `Host` impls are implemented on.
        pub struct Has;

        impl wasmtime::component::HasData for Has {
            type Data<$lt> = $data;
        }

        /// Links the capability for `world`: the read-write interface for a rotator, the
        /// read-only one for an auditor.
        pub fn add_to_linker<T: Send + 'static>(
            linker: &mut wasmtime::component::Linker<T>,
            world: crate::inspect::World,
            get: fn(&mut T) -> <Has as wasmtime::component::HasData>::Data<'_>,
        ) -> wasmtime::Result<()> {
            $types::add_to_linker::<T, Has>(linker, get)?;
            match world {
                crate::inspect::World::Rotator => $read_write::add_to_linker::<T, Has>(linker, get),
                crate::inspect::World::Auditor => $read_only::add_to_linker::<T, Has>(linker, get),
            }
        }
    };
}

pub mod journal;
pub mod keys;
mod random;
pub mod report;
pub mod wallet_store;

use std::time::Duration;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::types;
use crate::coordination::Lease;
use crate::grants::Grants;
use crate::inspect::World;
use crate::keyring::KeyRing;
use crate::limits::{GuestClock, Limits, MemoryCap, WallClock};
use crate::progress::Reporter;
use crate::store::{Database, OddRow, RunIdentity};

pub use journal::Journal;
pub use keys::{Keys, SecretHandle};
pub use report::Report;
pub use wallet_store::{WalletStore, WriteRefused};

/// Everything one component instance may reach, and nothing more.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    clock: GuestClock,
    wall: WallClock,
    keys: Keys,
    wallets: WalletStore,
    journal: Journal,
    report: Report,
    lease: Lease,
}

impl RunState {
    /// An instance's reach: the KEKs of `ring` (whose Vault also keeps the journal's history)
    /// and the wallets in `database`, within `grants` and `limits`, acting as
    /// `identity`, its progress shown by `reporter`.
    pub fn new(
        ring: KeyRing,
        database: Database,
        grants: Grants,
        identity: RunIdentity,
        reporter: Reporter,
        limits: Limits,
        lease_ttl: Duration,
    ) -> Self {
        let kv = ring.kv().clone();
        // Randomness (wasi:random) is all the component gets from WASI: no preopened
        // directories, no environment, no arguments, no network, no inherited stdio.
        let wasi = WasiCtx::builder().build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(&limits),
            clock: GuestClock::new(&limits),
            wall: WallClock::new(&limits),
            journal: Journal::new(database.clone(), grants.journal_write, kv.vault().cloned()),
            wallets: WalletStore::new(database.clone(), grants.wallets.clone(), limits),
            keys: Keys::new(ring, grants, database.clone()),
            report: Report::new(reporter),
            lease: Lease::new(database, identity, lease_ttl),
        }
    }

    /// The wallet-store capability: odd rows, batches, checked writes.
    pub fn wallets(&self) -> &WalletStore {
        &self.wallets
    }

    /// The wallet-store capability, to hand it batches or what `seal` must write.
    pub fn wallets_mut(&mut self) -> &mut WalletStore {
        &mut self.wallets
    }

    /// This instance's hold on the rotation lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The command's progress display.
    pub fn reporter(&self) -> &Reporter {
        self.report.reporter()
    }

    /// Guest CPU time this run has used so far.
    pub fn guest_time(&self) -> Duration {
        self.clock.used()
    }

    pub(crate) fn memory_cap(&mut self) -> &mut MemoryCap {
        &mut self.memory
    }

    pub(crate) fn clock(&mut self) -> &mut GuestClock {
        &mut self.clock
    }

    pub(crate) fn wall(&mut self) -> &mut WallClock {
        &mut self.wall
    }

    /// The keys capability, to hand it the key `migrate-kek` imports.
    pub fn keys_mut(&mut self) -> &mut Keys {
        &mut self.keys
    }

    /// The resource table, to hand the component a secret or take one back.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn wallet_store(&mut self) -> wallet_store::WalletStoreView<'_> {
        wallet_store::WalletStoreView { store: &mut self.wallets, keys: &mut self.keys, lease: &self.lease }
    }

    fn keys(&mut self) -> keys::KeysView<'_> {
        keys::KeysView { keys: &mut self.keys, table: &mut self.table }
    }

    fn journal(&mut self) -> journal::JournalView<'_> {
        journal::JournalView { journal: &mut self.journal, lease: &mut self.lease }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Links every import of `world` into `linker`. The `auditor` world gets the read-only
/// interfaces only, so that no write function exists for an audit component to call.
pub fn add_to_linker(linker: &mut Linker<RunState>, world: World) -> wasmtime::Result<()> {
    types::add_to_linker::<RunState, SharedTypes>(linker, |_| SharedTypes)?;
    keys::add_to_linker(linker, world, RunState::keys)?;
    wallet_store::add_to_linker(linker, world, RunState::wallet_store)?;
    journal::add_to_linker(linker, world, RunState::journal)?;
    report::add_to_linker(linker, |s| &mut s.report)
}

/// The `types` interface every capability shares: types only, no functions.
struct SharedTypes;

impl HasData for SharedTypes {
    type Data<'a> = SharedTypes;
}

impl types::Host for SharedTypes {}

impl From<OddRow> for types::WalletFailure {
    fn from(row: OddRow) -> Self {
        types::WalletFailure { id: row.id, reason: row.reason }
    }
}
