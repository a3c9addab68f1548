//! A KEK staged as the next version (`rotor rotate --stage`), the add step of Tink's add →
//! promote: readers accept it before any row is written under it, so that when `rotor promote`
//! makes it current, every application instance that loaded its keys since can already open
//! the rows rotor moves.
//!
//! It is kept at `<key-path>-staged` (fields `key` and `kek_version`), not as a KV version of
//! the key path: a KV version there would be the current KEK at once, for rotor and for every
//! application. Promotion is the ordinary rotation, whose host-side `create_next` stores the
//! staged key (never a fresh one) as the next version, whatever a component asks; a crash
//! between that and the staged copy's removal leaves a copy whose version is no longer ahead of
//! the current one, which every reader ignores.

use serde::Serialize;
use zeroize::Zeroizing;

use super::{HeldKek, KeyError, KeyRing, fingerprint};
use crate::vault::VaultError;

/// Field of the staged secret that names the version the key will have.
const VERSION_FIELD: &str = "kek_version";

/// A staged KEK as reports show it: no key bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StagedKek {
    /// The version it will have once promoted: the current one + 1.
    pub version: u32,
    /// [`fingerprint`] of the key.
    pub fingerprint: String,
    /// When it was staged (RFC 3339, as Vault recorded the write).
    pub staged_at: String,
}

/// What `<key-path>-staged` holds: its KV version (for check-and-set) and the key.
struct StagedSecret {
    kv_version: u64,
    held: HeldKek,
    staged_at: String,
}

impl StagedSecret {
    fn report(&self) -> StagedKek {
        StagedKek {
            version: self.held.version,
            fingerprint: fingerprint(&self.held.kek),
            staged_at: self.staged_at.clone(),
        }
    }
}

impl KeyRing {
    /// `<key-path>-staged`.
    pub fn staged_path(&self) -> String {
        format!("{}-staged", self.key_path)
    }

    async fn read_staged(&self) -> Result<Option<StagedSecret>, KeyError> {
        let path = self.staged_path();
        let Some(mut secret) = self.read(&path, None).await? else {
            return Ok(None);
        };
        let version =
            secret.data.remove(VERSION_FIELD).and_then(|text| text.trim().parse::<u32>().ok()).ok_or_else(
                || {
                    KeyError::Refused(format!(
                        "{path} has no field `{VERSION_FIELD}` holding a KEK version: it was not written by \
                     `rotor rotate --stage`; `rotor unstage` removes it"
                    ))
                },
            )?;
        let (kv_version, staged_at) = (secret.version, secret.created_time.clone());
        let (kek, derived) = self.kek_in(&path, secret).await?;
        let held = HeldKek { version, kek, from_history: false, draft: false, derived };
        Ok(Some(StagedSecret { kv_version, held, staged_at }))
    }

    /// The staged KEK if it is the version after `current`. A copy left by a promotion that
    /// stopped before removing it (its version not ahead of `current`) is none; one further
    /// ahead is refused, as nothing rotor does leaves it so.
    async fn staged_after(&self, current: u32) -> Result<Option<StagedSecret>, KeyError> {
        let read = self.read_staged().await?;
        self.pending(read, current)
    }

    /// `staged` if it waits to become the version after `current` (see [`KeyRing::staged_after`]).
    fn pending(&self, staged: Option<StagedSecret>, current: u32) -> Result<Option<StagedSecret>, KeyError> {
        let Some(staged) = staged else {
            return Ok(None);
        };
        let version = staged.held.version;
        if version <= current {
            return Ok(None);
        }
        if version != current + 1 {
            return Err(KeyError::Conflict(format!(
                "{} stages KEK v{version}, but the current KEK is v{current}: it can never be promoted; \
                 `rotor unstage` discards it",
                self.staged_path()
            )));
        }
        Ok(Some(staged))
    }

    /// The KEK staged to become the next version, if one is, for reports. A token whose policy
    /// predates staging may not read it: that reads as none (logged), as it cannot matter to
    /// what such a reader does.
    pub async fn staged(&mut self) -> Result<Option<StagedKek>, KeyError> {
        let current = self.current_version().await?.unwrap_or(0);
        Ok(self.staged_for_reader(current).await?.map(|staged| staged.report()))
    }

    /// The staged key of `version`, for [`KeyRing::version`]: readers accept it before it is
    /// current. Only the version after the current one can be staged, so any other miss asks
    /// Vault nothing more.
    pub(super) async fn staged_version(&mut self, version: u32) -> Result<Option<HeldKek>, KeyError> {
        let current = self.current_version().await?.unwrap_or(0);
        if version != current + 1 {
            return Ok(None);
        }
        Ok(self.staged_for_reader(current).await?.map(|s| s.held))
    }

    /// [`KeyRing::staged_after`] for readers: refused by the token's policy reads as none. (A
    /// writer never reads it so: `create_next` must know.)
    async fn staged_for_reader(&self, current: u32) -> Result<Option<StagedSecret>, KeyError> {
        match self.staged_after(current).await {
            Err(KeyError::Denied(why)) => {
                tracing::warn!("the staged KEK was not read ({why}); the token's policy predates staging");
                Ok(None)
            }
            other => other,
        }
    }

    /// The key [`KeyRing::create_next`] must store as the version after `expected_current`:
    /// the staged one if there is one; for a rollback (`restore`), a refusal while one is
    /// staged, since readers already take the staged key for that version number.
    pub(super) async fn next_from_stage(
        &self,
        expected_current: u32,
        restore: Option<u32>,
    ) -> Result<Option<HeldKek>, KeyError> {
        match (self.staged_after(expected_current).await?, restore) {
            (None, _) => Ok(None),
            (Some(staged), None) => Ok(Some(staged.held)),
            (Some(staged), Some(restore)) => Err(KeyError::Refused(format!(
                "KEK v{} is staged, and readers already accept it as that version: a rollback to \
                 v{restore} cannot take its number. `rotor unstage` discards it first",
                staged.held.version
            ))),
        }
    }

    /// Removes the staged copy once its key is stored as a version. A failure only leaves a
    /// copy every reader ignores, so it is logged, not returned.
    pub(super) async fn clear_promoted_stage(&self) {
        let path = self.staged_path();
        if let Err(error) = self.kv.delete_all(&path).await {
            tracing::warn!(path, %error, "the promoted KEK's staged copy was not removed; readers ignore it");
        }
    }

    /// Stages a fresh KEK from the host's CSPRNG as the version after the current one. If one
    /// is staged already, returns it and `false`: staging twice is not an error (a schedule may
    /// fire again before anyone promotes).
    pub async fn stage(&mut self) -> Result<(StagedKek, bool), KeyError> {
        let current = self.current().await?.ok_or_else(|| {
            KeyError::NotFound(format!(
                "{} holds no KEK to stage a successor for: `rotor migrate-kek` stores the first one",
                self.key_path
            ))
        })?;
        let existing = self.read_staged().await?;
        // A stale copy (from a promotion that stopped before removing it) is overwritten.
        let cas = existing.as_ref().map_or(0, |stale| stale.kv_version);
        if let Some(staged) = self.pending(existing, current.version)? {
            return Ok((staged.report(), false));
        }
        let path = self.staged_path();
        let (kek, derived) = self.fresh().await?;
        let version = current.version + 1;
        let held = HeldKek { version, kek: kek.clone(), from_history: false, draft: false, derived };
        let mut data = held.stored_form();
        data.insert(VERSION_FIELD.to_owned(), Zeroizing::new(version.to_string()));
        match self.kv.write(&path, &data, Some(cas)).await {
            Ok(_) => {}
            Err(VaultError::CasMismatch { .. }) => {
                return Err(KeyError::Conflict(format!(
                    "{path} changed while this KEK was being staged (another rotor?): nothing was \
                     staged; run it again"
                )));
            }
            Err(e) => return Err(KeyError::vault(&path, e)),
        }
        let staged = self.read_staged().await?.filter(|s| s.held.kek == kek).ok_or_else(|| {
            KeyError::Conflict(format!("{path} does not hold the key just staged (another rotor?)"))
        })?;
        tracing::info!(path, version, "staged the next KEK version");
        Ok((staged.report(), true))
    }

    /// Discards the staged KEK, if one is. Safe whenever: no writer seals under a staged key,
    /// so no row can need it. A stale copy (see the module's comment) is removed too, and
    /// reported as none.
    pub async fn unstage(&mut self) -> Result<Option<StagedKek>, KeyError> {
        let Some(staged) = self.read_staged().await? else {
            return Ok(None);
        };
        let path = self.staged_path();
        self.kv.delete_all(&path).await.map_err(|e| KeyError::vault(&path, e))?;
        let current = self.current_version().await?.unwrap_or(0);
        let version = staged.held.version;
        tracing::info!(path, version, "removed the staged KEK");
        if version <= current {
            return Ok(None);
        }
        self.versions.remove(&version);
        Ok(Some(staged.report()))
    }
}
