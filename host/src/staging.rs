//! Staged roll-out: `rotor rotate --stage` stores the next KEK where readers find it but no
//! writer seals under it; `rotor promote` makes it current and moves the rows (an ordinary
//! rotation, which stores the staged key as the next version); `rotor unstage` discards it.
//!
//! Between the two steps the application fleet reloads its keys (`Keyring.fromVault()` reads
//! the staged KEK too), so no instance meets a row under a KEK it has not loaded, which a
//! rotation that makes its KEK current at once cannot promise (an instance that has not
//! reloaded fails on every row already moved). The keys live in the key ring
//! (`keyring::staged`); this module is the commands' side: what they refuse and print.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::app::App;
use crate::keyring::StagedKek;

/// What `rotor rotate --stage` printed.
#[derive(Debug, Serialize)]
pub struct Staged {
    /// The staged KEK.
    pub staged: StagedKek,
    /// The current KEK's version, which writers still seal under.
    pub current_version: u32,
    /// `false` if it was staged by an earlier run, which this one left as it was.
    pub newly_staged: bool,
}

impl Staged {
    /// The lines printed without `--json`.
    pub fn human(&self) -> String {
        let s = &self.staged;
        let head = if self.newly_staged {
            format!("staged KEK v{} (fingerprint {})", s.version, s.fingerprint)
        } else {
            format!(
                "KEK v{} was already staged at {} (fingerprint {}); nothing changed",
                s.version, s.staged_at, s.fingerprint
            )
        };
        format!(
            "{head}\nwriters still seal under v{}; applications that load their keys from now on also \
             open v{}\nonce every instance has reloaded, `rotor promote` makes v{} current and moves \
             the rows (`rotor unstage` discards it instead)",
            self.current_version, s.version, s.version
        )
    }
}

/// What `rotor unstage` printed.
#[derive(Debug, Serialize)]
pub struct Unstaged {
    /// The staged KEK it discarded; `None` if none was staged.
    pub discarded: Option<StagedKek>,
}

impl Unstaged {
    /// The lines printed without `--json`.
    pub fn human(&self) -> String {
        match &self.discarded {
            Some(s) => format!(
                "discarded the staged KEK v{} (fingerprint {}); no row was under it. Applications that \
                 loaded it should reload before the next rotation, which gives v{} another key",
                s.version, s.fingerprint, s.version
            ),
            None => "no KEK was staged; nothing changed".to_owned(),
        }
    }
}

/// `rotor rotate --stage`: stages the next KEK unless one is. Refused while a rotation is
/// unfinished: the version it moves to is the next one already.
pub async fn stage(app: &App) -> anyhow::Result<Staged> {
    if let Some(rotation) = app.database().our_unfinished_rotation().await? {
        bail!(
            "rotation #{} is unfinished: finish it (`rotor rotate`) or close it (`rotor abort`) before \
             staging the next KEK; nothing was staged",
            rotation.id
        );
    }
    let mut ring = app.key_ring();
    let (staged, newly_staged) = ring.stage().await?;
    let current_version = staged.version - 1;
    Ok(Staged { staged, current_version, newly_staged })
}

/// `rotor unstage`: discards the staged KEK. Refused while a rotation is unfinished, which may
/// be the promotion about to store it.
pub async fn unstage(app: &App) -> anyhow::Result<Unstaged> {
    if let Some(rotation) = app.database().our_unfinished_rotation().await? {
        bail!(
            "rotation #{} is unfinished and may be promoting the staged KEK: finish it (`rotor rotate`) \
             or close it (`rotor abort`) first; nothing was discarded",
            rotation.id
        );
    }
    let discarded = app.key_ring().unstage().await?;
    Ok(Unstaged { discarded })
}

/// The staged KEK, if one is.
pub async fn staged(app: &App) -> anyhow::Result<Option<StagedKek>> {
    app.key_ring().staged().await.context("reading the staged KEK")
}

/// Refuses `command` (a rotation that would store a KEK of its own) while a KEK is staged:
/// readers already take the staged key as the next version.
pub async fn refuse_while_staged(app: &App, command: &str) -> anyhow::Result<()> {
    if let Some(s) = staged(app).await? {
        bail!(
            "KEK v{} is staged (since {}): `rotor {command}` would store another key as v{}. `rotor promote` \
             makes the staged one current and moves the rows; `rotor unstage` discards it. Nothing was \
             changed",
            s.version,
            s.staged_at,
            s.version
        );
    }
    Ok(())
}

/// What `rotor promote` starts from: a staged KEK, or an unfinished rotation (a promotion
/// that stopped, which it finishes).
pub async fn require_promotable(app: &App) -> anyhow::Result<()> {
    if app.database().our_unfinished_rotation().await?.is_some() || staged(app).await?.is_some() {
        return Ok(());
    }
    bail!("no KEK is staged: `rotor rotate --stage` stages one first; nothing was changed")
}
