//! The `keys` import (and the auditor's `key-reader`): KEKs, data keys and decrypted wallets
//! held by the host, handed to the component as handles in the instance's resource table.
//!
//! No function here returns key bytes or plaintext, and every nonce and fresh key comes from
//! the host's CSPRNG: whatever a component writes, it cannot carry a key or a wallet out, nor
//! a secret of its own choosing. What changes the KEK in Vault (storing the next version,
//! archiving, destroying, importing) is a host operation with its own checks, open only to the
//! commands whose grant names it.
//!
//! Over 500 lines with its unit tests on purpose: `key-types`, `keys` and `key-reader` are one
//! capability whose resources share the handle and byte budgets and the grant checks kept here.

use rotor_codec::layout::Parts;
use rotor_codec::{DataKey, Detached, NONCE_LEN, Plaintext, TAG_LEN};
use wasmtime::component::{Resource, ResourceTable};

use super::random;
use crate::bindings::auditor::key_reader;
use crate::bindings::{key_types, keys};
use crate::grants::Grants;
pub use crate::keyring::{DataKeyHandle, KekHandle, SecretHandle};
use crate::keyring::{DestroyedKek, HeldKek, KeyError, KeyRing};
use crate::store::Database;
use crate::vault::KvMetadata;

/// Live handles one instance may hold at once: a batch's worth many times over, and a bound
/// on what a component can make the host keep in memory.
pub const MAX_HANDLES: usize = 65_536;
/// Decrypted bytes one instance may hold at once.
pub const MAX_SECRET_BYTES: usize = 64 << 20;

/// What the `keys` import reaches: the key path's KEKs, the command's grant, the database (to
/// count the rows naming a version before it is destroyed), and what the component holds.
pub struct Keys {
    ring: KeyRing,
    grants: Grants,
    database: Database,
    handles: usize,
    secret_bytes: usize,
    /// What this instance destroyed (or, rehearsing, would have), for the command's receipt.
    destroyed: Vec<DestroyedKek>,
    /// `prune --dry-run`: `destroy` makes every check and records what it would destroy, and
    /// destroys nothing.
    rehearsing: bool,
}

impl Keys {
    /// The KEKs of `ring`, within `grants`.
    pub fn new(ring: KeyRing, grants: Grants, database: Database) -> Keys {
        Keys { ring, grants, database, handles: 0, secret_bytes: 0, destroyed: Vec::new(), rehearsing: false }
    }

    /// From now on `destroy` destroys nothing: it checks, and records what it would destroy.
    pub fn rehearse(&mut self) {
        self.rehearsing = true;
    }

    /// The KEK versions this instance destroyed since last asked, as the host checked them.
    pub fn take_destroyed(&mut self) -> Vec<DestroyedKek> {
        std::mem::take(&mut self.destroyed)
    }

    /// The KEKs, for the checks of the wallet store.
    pub fn ring_mut(&mut self) -> &mut KeyRing {
        &mut self.ring
    }

    fn path_allowed(&self, key_path: &str) -> Result<(), KeyError> {
        if key_path == self.ring.key_path() {
            return Ok(());
        }
        tracing::warn!(key_path, "component denied: a key path outside this run's grant");
        Err(KeyError::Denied(format!("{key_path} is not this command's key path ({})", self.ring.key_path())))
    }

    fn allowed(&self, key_path: &str, what: &str, granted: bool) -> Result<(), KeyError> {
        self.path_allowed(key_path)?;
        if granted {
            return Ok(());
        }
        tracing::warn!(what, "component denied: not in this command's grant");
        Err(KeyError::Denied(format!("{what} is not in this command's grant ({})", self.grants)))
    }
}

/// The `keys` import of one instance: its keys and its resource table.
pub struct KeysView<'a> {
    /// The keys and the grant.
    pub keys: &'a mut Keys,
    /// The instance's resource table, where the handles live.
    pub table: &'a mut ResourceTable,
}

// Linked as `keys` for a rotator, as the read-only `key-reader` for an auditor.
link_for_world!('a, KeysView<'a>, key_types, keys, key_reader);

fn to_wit(error: KeyError) -> key_types::Error {
    match error {
        KeyError::Denied(why) => key_types::Error::Denied(why),
        KeyError::NotFound(why) => key_types::Error::NotFound(why),
        KeyError::Conflict(why) => key_types::Error::Conflict(why),
        KeyError::Refused(why) => key_types::Error::Refused(why),
        KeyError::Unavailable(why) => key_types::Error::Unavailable(why),
    }
}

fn fresh_nonce() -> wasmtime::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    random::fill(&mut nonce).map_err(csprng_failed)?;
    Ok(nonce)
}

fn csprng_failed(error: getrandom::Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the host's CSPRNG failed: {error}"))
}

/// Seals under a nonce the host draws: no nonce ever comes from a component.
fn seal_fresh(
    seal: impl FnOnce(&[u8; NONCE_LEN]) -> (Vec<u8>, [u8; TAG_LEN]),
) -> wasmtime::Result<key_types::Sealed> {
    let nonce = fresh_nonce()?;
    let (ciphertext, tag) = seal(&nonce);
    Ok(key_types::Sealed { nonce: nonce.to_vec(), ciphertext, tag: tag.to_vec() })
}

/// The WIT record as the codec's borrowed parts.
fn parts(sealed: &key_types::Sealed) -> Parts<'_> {
    Parts { nonce: &sealed.nonce, ciphertext: &sealed.ciphertext, tag: &sealed.tag }
}

fn metadata_to_wit(m: KvMetadata) -> key_types::KeyMetadata {
    key_types::KeyMetadata {
        current_version: m.current_version,
        oldest_version: m.oldest_version,
        max_versions: m.max_versions,
        created_time: m.created_time,
        updated_time: m.updated_time,
        versions: m
            .versions
            .into_iter()
            .map(|v| key_types::VersionMetadata {
                version: v.version,
                created_time: v.created_time,
                deletion_time: v.deletion_time,
                destroyed: v.destroyed,
            })
            .collect(),
    }
}

/// A handle count or byte budget ran out: the component is holding on to too much.
fn too_many(what: &str) -> key_types::Error {
    key_types::Error::TooLarge(format!(
        "{what}: this instance holds too many key handles or decrypted bytes (at most {MAX_HANDLES} handles, \
         {} MiB); drop the ones it no longer needs",
        MAX_SECRET_BYTES >> 20
    ))
}

impl KeysView<'_> {
    fn push<T: Send + 'static>(&mut self, value: T) -> wasmtime::Result<Option<Resource<T>>> {
        if self.keys.handles >= MAX_HANDLES {
            return Ok(None);
        }
        self.keys.handles += 1;
        Ok(Some(self.table.push(value)?))
    }

    fn forget<T: 'static>(&mut self, handle: Resource<T>) -> wasmtime::Result<T> {
        let value = self.table.delete(handle)?;
        self.keys.handles = self.keys.handles.saturating_sub(1);
        Ok(value)
    }

    fn push_kek(&mut self, held: HeldKek) -> wasmtime::Result<Result<Resource<KekHandle>, key_types::Error>> {
        Ok(self.push(KekHandle::new(held))?.ok_or_else(|| too_many("a KEK handle")))
    }

    /// A secret is pushed only within the byte budget; `None` when over it.
    fn push_secret(&mut self, plaintext: Plaintext) -> wasmtime::Result<Option<Resource<SecretHandle>>> {
        let len = plaintext.len();
        if self.keys.secret_bytes + len > MAX_SECRET_BYTES {
            return Ok(None);
        }
        let pushed = self.push(SecretHandle::new(plaintext))?;
        if pushed.is_some() {
            self.keys.secret_bytes += len;
        }
        Ok(pushed)
    }

    fn kek(&self, handle: &Resource<KekHandle>) -> wasmtime::Result<&HeldKek> {
        Ok(self.table.get(handle)?.held())
    }

    /// The data key `wrapped` holds under KEK `kek`, binding `aad`; `None` if it does not
    /// verify. What `unwrap`, `rewrap` and `open-envelope` all begin with.
    fn unwrap_under(
        &self,
        kek: &Resource<KekHandle>,
        wrapped: &key_types::Sealed,
        aad: &[u8],
    ) -> wasmtime::Result<Option<DataKey>> {
        Ok(self.kek(kek)?.kek.unwrap_detached(aad, parts(wrapped)).ok())
    }

    async fn current(
        &mut self,
        key_path: String,
    ) -> wasmtime::Result<Result<Option<Resource<KekHandle>>, key_types::Error>> {
        if let Err(denied) = self.keys.path_allowed(&key_path) {
            return Ok(Err(to_wit(denied)));
        }
        match self.keys.ring.current().await {
            Ok(Some(held)) => Ok(self.push_kek(held)?.map(Some)),
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(to_wit(e))),
        }
    }

    async fn held_version(
        &mut self,
        key_path: &str,
        version: u32,
    ) -> Result<Option<HeldKek>, key_types::Error> {
        self.keys.path_allowed(key_path).map_err(to_wit)?;
        self.keys.ring.version(version).await.map_err(to_wit)
    }

    async fn seed_archives(
        &mut self,
        key_path: String,
    ) -> wasmtime::Result<Result<Vec<Resource<KekHandle>>, key_types::Error>> {
        if let Err(denied) = self.keys.path_allowed(&key_path) {
            return Ok(Err(to_wit(denied)));
        }
        let seed = match self.keys.ring.seed_archives().await {
            Ok(seed) => seed,
            Err(e) => return Ok(Err(to_wit(e))),
        };
        let mut handles = Vec::with_capacity(seed.len());
        for held in seed {
            match self.push_kek(held)? {
                Ok(handle) => handles.push(handle),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(handles))
    }

    async fn metadata(
        &mut self,
        key_path: String,
    ) -> Result<Option<key_types::KeyMetadata>, key_types::Error> {
        self.keys.path_allowed(&key_path).map_err(to_wit)?;
        Ok(self.keys.ring.metadata().await.map_err(to_wit)?.map(metadata_to_wit))
    }

    async fn archive_entries(
        &mut self,
        key_path: String,
    ) -> Result<Vec<key_types::ArchiveEntry>, key_types::Error> {
        self.keys.path_allowed(&key_path).map_err(to_wit)?;
        let names = self.keys.ring.archive_entries().await.map_err(to_wit)?;
        Ok(names
            .into_iter()
            .map(|name| key_types::ArchiveEntry { name, created_time: String::new() })
            .collect())
    }
}

impl key_types::Host for KeysView<'_> {}

impl key_types::HostSecret for KeysView<'_> {
    fn len(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<u32> {
        Ok(u32::try_from(self.table.get(&secret)?.bytes().len()).unwrap_or(u32::MAX))
    }

    fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        let secret = self.forget(secret)?;
        self.keys.secret_bytes = self.keys.secret_bytes.saturating_sub(secret.bytes().len());
        Ok(())
    }
}

impl key_types::HostDataKey for KeysView<'_> {
    fn new(&mut self) -> wasmtime::Result<Resource<DataKeyHandle>> {
        let key = DataKey::generate_with(random::fill).map_err(csprng_failed)?;
        // A constructor has no error to answer with: over the handle budget, the call traps.
        self.push(DataKeyHandle::new(key))?
            .ok_or_else(|| wasmtime::Error::msg(format!("{:?}", too_many("a new data key"))))
    }

    fn seal(
        &mut self,
        key: Resource<DataKeyHandle>,
        plaintext: Resource<SecretHandle>,
        aad: Vec<u8>,
    ) -> wasmtime::Result<key_types::Sealed> {
        let (key, plaintext) = (self.table.get(&key)?.key(), self.table.get(&plaintext)?.bytes());
        seal_fresh(|nonce| key.seal_detached(nonce, &aad, plaintext))
    }

    fn open(
        &mut self,
        key: Resource<DataKeyHandle>,
        sealed: key_types::Sealed,
        aad: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<SecretHandle>>> {
        match self.table.get(&key)?.key().open_detached(&aad, parts(&sealed)) {
            Ok(plaintext) => self.push_secret(plaintext),
            Err(_) => Ok(None),
        }
    }

    fn drop(&mut self, key: Resource<DataKeyHandle>) -> wasmtime::Result<()> {
        self.forget(key).map(drop)
    }
}

impl key_types::HostKek for KeysView<'_> {
    fn version(&mut self, kek: Resource<KekHandle>) -> wasmtime::Result<u32> {
        Ok(self.kek(&kek)?.version)
    }

    fn same_key(&mut self, kek: Resource<KekHandle>, other: Resource<KekHandle>) -> wasmtime::Result<bool> {
        Ok(*self.kek(&kek)?.kek == *self.kek(&other)?.kek)
    }

    fn wrap(
        &mut self,
        kek: Resource<KekHandle>,
        key: Resource<DataKeyHandle>,
        aad: Vec<u8>,
    ) -> wasmtime::Result<key_types::Sealed> {
        let (kek, key) = (&self.kek(&kek)?.kek, self.table.get(&key)?.key());
        seal_fresh(|nonce| kek.wrap_detached(nonce, &aad, key))
    }

    fn unwrap(
        &mut self,
        kek: Resource<KekHandle>,
        wrapped: key_types::Sealed,
        aad: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<DataKeyHandle>>> {
        match self.unwrap_under(&kek, &wrapped, &aad)? {
            Some(key) => self.push(DataKeyHandle::new(key)),
            None => Ok(None),
        }
    }

    fn rewrap(
        &mut self,
        kek: Resource<KekHandle>,
        wrapped: key_types::Sealed,
        aad: Vec<u8>,
        to: Resource<KekHandle>,
        to_aad: Vec<u8>,
    ) -> wasmtime::Result<Option<key_types::Sealed>> {
        // The data key lives only in this frame (zeroized on drop), never in the table.
        let Some(key) = self.unwrap_under(&kek, &wrapped, &aad)? else {
            return Ok(None);
        };
        let to = &self.kek(&to)?.kek;
        seal_fresh(|nonce| to.wrap_detached(nonce, &to_aad, &key)).map(Some)
    }

    fn open_envelope(
        &mut self,
        kek: Resource<KekHandle>,
        wrapped: key_types::Sealed,
        aad: Vec<u8>,
        data: key_types::Sealed,
        data_aad: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<SecretHandle>>> {
        // As in `rewrap`, the data key lives only in this frame.
        let Some(key) = self.unwrap_under(&kek, &wrapped, &aad)? else {
            return Ok(None);
        };
        match key.open_detached(&data_aad, parts(&data)) {
            Ok(plaintext) => self.push_secret(plaintext),
            Err(_) => Ok(None),
        }
    }

    fn seal(
        &mut self,
        kek: Resource<KekHandle>,
        plaintext: Resource<SecretHandle>,
        aad: Vec<u8>,
    ) -> wasmtime::Result<key_types::Sealed> {
        let (kek, plaintext) = (&self.kek(&kek)?.kek, self.table.get(&plaintext)?.bytes());
        seal_fresh(|nonce| kek.seal_detached(nonce, &aad, plaintext))
    }

    fn open(
        &mut self,
        kek: Resource<KekHandle>,
        sealed: key_types::Sealed,
        aad: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<SecretHandle>>> {
        match self.kek(&kek)?.kek.open_detached(&aad, parts(&sealed)) {
            Ok(plaintext) => self.push_secret(plaintext),
            Err(_) => Ok(None),
        }
    }

    fn drop(&mut self, kek: Resource<KekHandle>) -> wasmtime::Result<()> {
        self.forget(kek).map(drop)
    }
}

/// The reads `keys` and `key-reader` share, in both `Host` impls: one checked call each.
macro_rules! shared_reads {
    () => {
        async fn current(
            &mut self,
            key_path: String,
        ) -> wasmtime::Result<Result<Option<Resource<KekHandle>>, key_types::Error>> {
            KeysView::current(self, key_path).await
        }

        async fn seed_archives(
            &mut self,
            key_path: String,
        ) -> wasmtime::Result<Result<Vec<Resource<KekHandle>>, key_types::Error>> {
            KeysView::seed_archives(self, key_path).await
        }

        async fn metadata(
            &mut self,
            key_path: String,
        ) -> wasmtime::Result<Result<Option<key_types::KeyMetadata>, key_types::Error>> {
            Ok(KeysView::metadata(self, key_path).await)
        }

        async fn archive_entries(
            &mut self,
            key_path: String,
        ) -> wasmtime::Result<Result<Vec<key_types::ArchiveEntry>, key_types::Error>> {
            Ok(KeysView::archive_entries(self, key_path).await)
        }
    };
}

impl keys::Host for KeysView<'_> {
    shared_reads!();

    async fn version(
        &mut self,
        key_path: String,
        version: u32,
    ) -> wasmtime::Result<Result<Option<Resource<KekHandle>>, key_types::Error>> {
        match self.held_version(&key_path, version).await {
            Ok(Some(held)) => Ok(self.push_kek(held)?.map(Some)),
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn create_next(
        &mut self,
        key_path: String,
        expected_current: u32,
        restore: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<KekHandle>, key_types::Error>> {
        if let Err(denied) = self.keys.allowed(&key_path, "storing a new KEK", self.keys.grants.kek_create) {
            return Ok(Err(to_wit(denied)));
        }
        match self.keys.ring.create_next(expected_current, restore).await {
            Ok(held) => self.push_kek(held),
            Err(e) => Ok(Err(to_wit(e))),
        }
    }

    async fn draft(
        &mut self,
        key_path: String,
        restore: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<KekHandle>, key_types::Error>> {
        if let Err(denied) = self.keys.path_allowed(&key_path) {
            return Ok(Err(to_wit(denied)));
        }
        match self.keys.ring.draft(restore).await {
            Ok(held) => self.push_kek(held),
            Err(e) => Ok(Err(to_wit(e))),
        }
    }

    async fn archive(
        &mut self,
        key_path: String,
        version: u32,
    ) -> wasmtime::Result<Result<(), key_types::Error>> {
        if let Err(denied) = self.keys.allowed(&key_path, "archiving a KEK", self.keys.grants.kek_archive) {
            return Ok(Err(to_wit(denied)));
        }
        Ok(self.keys.ring.archive(version).await.map_err(to_wit))
    }

    async fn destroy(
        &mut self,
        key_path: String,
        version: u32,
    ) -> wasmtime::Result<Result<(), key_types::Error>> {
        if let Err(denied) =
            self.keys.allowed(&key_path, "destroying a KEK version", self.keys.grants.kek_destroy)
        {
            return Ok(Err(to_wit(denied)));
        }
        let database = self.keys.database.clone();
        let checked = match self.keys.rehearsing {
            true => self.keys.ring.rehearse_destroy(version, &database).await,
            false => self.keys.ring.destroy(version, &database).await,
        };
        Ok(match checked {
            Ok(destroyed) => {
                self.keys.destroyed.push(destroyed);
                Ok(())
            }
            Err(e) => Err(to_wit(e)),
        })
    }

    async fn import_given(&mut self, key_path: String) -> wasmtime::Result<Result<u32, key_types::Error>> {
        if let Err(denied) = self.keys.allowed(&key_path, "importing a KEK", self.keys.grants.kek_import) {
            return Ok(Err(to_wit(denied)));
        }
        Ok(self.keys.ring.import_given().await.map_err(to_wit))
    }
}

// The auditor's read-only interface: the same checked calls, and no function that stores,
// archives or destroys.
impl key_reader::Host for KeysView<'_> {
    shared_reads!();

    async fn version(
        &mut self,
        key_path: String,
        version: u32,
    ) -> wasmtime::Result<Result<Option<(Resource<KekHandle>, bool)>, key_types::Error>> {
        match self.held_version(&key_path, version).await {
            Ok(Some(held)) => {
                let from_history = held.from_history;
                Ok(self.push_kek(held)?.map(|handle| Some((handle, from_history))))
            }
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn archived(
        &mut self,
        key_path: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<Resource<KekHandle>>, key_types::Error>> {
        if let Err(denied) = self.keys.path_allowed(&key_path) {
            return Ok(Err(to_wit(denied)));
        }
        let version = name.strip_prefix('v').and_then(|v| v.parse().ok()).unwrap_or(0);
        match self.keys.ring.archived(&name).await {
            Ok(Some(kek)) => {
                let held = HeldKek { version, kek, from_history: false, draft: false, derived: None };
                Ok(self.push_kek(held)?.map(Some))
            }
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(to_wit(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtime::component::ResourceTable;
    use zeroize::Zeroizing;

    use super::*;
    use crate::bindings::key_types::{HostDataKey, HostKek, HostSecret};
    use crate::bindings::keys::Host as _;
    use crate::grants::Access;
    use crate::store::WalletTable;
    use crate::vault::{EnvKek, KvBackend};

    fn borrow<T: 'static>(handle: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(handle.rep())
    }

    const KEY_HEX: &str = "abababababababababababababababababababababababababababababababab";

    /// A folder of the test's own, removed with everything in it when dropped.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Keys over the seed's environment KEK (no Vault needed) with the grants of `access`, and
    /// the folder of the (empty) wallet database they need.
    async fn keys(access: Access) -> (Keys, Scratch) {
        let kv =
            KvBackend::EnvKek(Arc::new(EnvKek::new("VAR", "k", Zeroizing::new(KEY_HEX.into())).unwrap()));
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch =
            Scratch(std::env::temp_dir().join(format!("rotor-keys-test-{}-{n}", std::process::id())));
        std::fs::create_dir_all(&scratch.0).unwrap();
        let file = scratch.0.join("wallets.db");
        std::fs::write(&file, b"").unwrap();
        let url = format!("sqlite:{}", file.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE wallets (id TEXT PRIMARY KEY, ciphertext TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let table = WalletTable::new("wallets", "id", "ciphertext").unwrap();
        let database = Database::connect(&url, table).await.unwrap();
        (Keys::new(KeyRing::new(kv, "k"), Grants::for_key("k", &access), database), scratch)
    }

    #[tokio::test]
    async fn handles_seal_and_open_under_host_nonces_and_never_show_bytes() {
        let (mut keys, _scratch) = keys(Access::ReadOnly).await;
        let mut table = ResourceTable::new();
        let mut view = KeysView { keys: &mut keys, table: &mut table };
        let kek = view.current("k".into()).await.unwrap().unwrap().unwrap();
        assert_eq!(HostKek::version(&mut view, borrow(&kek)).unwrap(), 1);

        let dek = HostDataKey::new(&mut view).unwrap();
        let first = HostKek::wrap(&mut view, borrow(&kek), borrow(&dek), b"aad".to_vec()).unwrap();
        let second = HostKek::wrap(&mut view, borrow(&kek), borrow(&dek), b"aad".to_vec()).unwrap();
        assert_eq!((first.nonce.len(), first.ciphertext.len(), first.tag.len()), (12, 32, 16));
        assert_ne!(first.nonce, second.nonce, "every wrap draws a fresh nonce");
        assert!(!first.ciphertext.windows(4).any(|w| w == [0xab; 4]), "the KEK shows in the wrap");
        let unwrapped = HostKek::unwrap(&mut view, borrow(&kek), first.clone(), b"aad".to_vec()).unwrap();
        assert!(unwrapped.is_some());
        let wrong_aad = HostKek::unwrap(&mut view, borrow(&kek), first.clone(), b"other".to_vec()).unwrap();
        assert!(wrong_aad.is_none(), "a wrap opens only with its associated data");

        // A re-wrap is an unwrap and a wrap: a fresh nonce, the new associated data, the same
        // data key, and no handle left behind.
        let handles = view.keys.handles;
        let moved = HostKek::rewrap(
            &mut view,
            borrow(&kek),
            first.clone(),
            b"aad".to_vec(),
            borrow(&kek),
            b"new".to_vec(),
        )
        .unwrap()
        .expect("the wrap verifies");
        assert_eq!(view.keys.handles, handles, "a re-wrap leaves no handle behind");
        assert_ne!(moved.nonce, first.nonce, "a re-wrap draws a fresh nonce");
        let moved_key = view.kek(&kek).unwrap().kek.unwrap_detached(b"new", parts(&moved)).unwrap();
        assert!(
            moved_key == *view.table.get(&dek).unwrap().key(),
            "the re-wrap holds the data key it was given"
        );
        let old_aad = HostKek::unwrap(&mut view, borrow(&kek), moved, b"aad".to_vec()).unwrap();
        assert!(old_aad.is_none(), "a re-wrap binds the new associated data, not the old");
        let refused =
            HostKek::rewrap(&mut view, borrow(&kek), first, b"other".to_vec(), borrow(&kek), b"new".to_vec());
        assert!(refused.unwrap().is_none(), "a wrap that does not verify is not re-wrapped");

        // A secret sealed under the data key opens to the same length; its bytes never leave.
        let secret = view.push_secret(Zeroizing::new(b"wallet bytes".to_vec())).unwrap().unwrap();
        let sealed = HostDataKey::seal(&mut view, borrow(&dek), borrow(&secret), b"id".to_vec()).unwrap();

        // An envelope (the data key's wrap and the sealed wallet) opens in one call, to a
        // secret handle only; a wrong associated data on either layer opens nothing.
        let wrap = HostKek::wrap(&mut view, borrow(&kek), borrow(&dek), b"aad".to_vec()).unwrap();
        let handles = view.keys.handles;
        let open_envelope = |view: &mut KeysView<'_>, wrap_aad: &[u8], data_aad: &[u8]| {
            let (wrapped, data) = (wrap.clone(), sealed.clone());
            HostKek::open_envelope(view, borrow(&kek), wrapped, wrap_aad.to_vec(), data, data_aad.to_vec())
                .unwrap()
        };
        let opened = open_envelope(&mut view, b"aad", b"id").expect("the envelope opens");
        assert_eq!(view.keys.handles, handles + 1, "one handle, the secret's, and no data key's");
        assert_eq!(view.table.get(&opened).unwrap().bytes(), b"wallet bytes");
        HostSecret::drop(&mut view, opened).unwrap();
        for (wrap_aad, data_aad) in [(&b"other"[..], &b"id"[..]), (b"aad", b"other")] {
            let refused = open_envelope(&mut view, wrap_aad, data_aad);
            assert!(refused.is_none(), "opened with {wrap_aad:?} / {data_aad:?}");
        }
        assert_eq!(view.keys.handles, handles, "a refused envelope leaves no handle behind");
        assert_ne!(sealed.ciphertext, b"wallet bytes");
        let opened = HostDataKey::open(&mut view, borrow(&dek), sealed, b"id".to_vec()).unwrap().unwrap();
        assert_eq!(HostSecret::len(&mut view, borrow(&opened)).unwrap(), 12);
        assert_eq!(view.table.get(&opened).unwrap().bytes(), b"wallet bytes");
        HostSecret::drop(&mut view, opened).unwrap();
        assert_eq!(view.keys.secret_bytes, 12, "the secret still held is counted, the dropped one not");
    }

    #[tokio::test]
    async fn a_key_path_or_operation_outside_the_commands_grant_is_denied() {
        let (mut keys, _scratch) = keys(Access::Seal { id: "w-1".into() }).await;
        let mut table = ResourceTable::new();
        let mut view = KeysView { keys: &mut keys, table: &mut table };
        let other = view.current("ibn/other-team-secret".into()).await.unwrap().unwrap_err();
        assert!(
            matches!(&other, key_types::Error::Denied(why) if why.contains("is not this command's key path"))
        );
        let destroyed = view.destroy("k".into(), 1).await.unwrap().unwrap_err();
        assert!(
            matches!(&destroyed, key_types::Error::Denied(why)
                if why.contains("destroying a KEK version is not in this command's grant")
                    && why.contains("wallets: wallet \"w-1\" only")),
            "{destroyed:?}"
        );
        let created = view.create_next("k".into(), 1, None).await.unwrap().unwrap_err();
        assert!(matches!(created, key_types::Error::Denied(_)), "{created:?}");
        let imported = view.import_given("k".into()).await.unwrap().unwrap_err();
        assert!(matches!(imported, key_types::Error::Denied(_)), "{imported:?}");
    }

    #[tokio::test]
    async fn an_instance_cannot_make_the_host_hold_unbounded_handles() {
        let (mut keys, _scratch) = keys(Access::ReadOnly).await;
        let mut table = ResourceTable::new();
        let mut view = KeysView { keys: &mut keys, table: &mut table };
        for _ in 0..MAX_HANDLES {
            HostDataKey::new(&mut view).unwrap();
        }
        let refused = HostDataKey::new(&mut view).unwrap_err().to_string();
        assert!(refused.contains("too many key handles"), "{refused}");
        let current = view.current("k".into()).await.unwrap().unwrap_err();
        assert!(matches!(current, key_types::Error::TooLarge(_)), "{current:?}");
    }
}
