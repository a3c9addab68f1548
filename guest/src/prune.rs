//! `prune`: destroys KEK versions no wallet uses any more, keeping the newest few.

use crate::Failure;
use std::collections::{BTreeMap, BTreeSet};

use crate::bindings::exports::rotor::kek::operations::{KeyLocation, PruneReport};
use crate::bindings::rotor::kek::journal_types::RotationStatus;
use crate::bindings::rotor::kek::types::VersionCount;
use crate::bindings::rotor::kek::{journal, keys, wallet_store};
use crate::keyring::{Keyring, key_error};
use crate::log;
use crate::scan::store_error;

pub(crate) fn prune(at: &KeyLocation, keep: u32) -> Result<PruneReport, Failure> {
    if keep == 0 {
        return Err("--keep must be at least 1: the current KEK is always kept".into());
    }
    let key_path = &at.key_path;
    let keyring = Keyring::load(key_path)?;
    if let Some(running) = journal::rotations()?.into_iter().find(|r| r.status == RotationStatus::Running) {
        return Err(Failure::Inconsistent(format!(
            "rotation #{} is unfinished and may still need its KEKs: finish it with `rotor rotate` (or close it \
             with `rotor abort`); nothing was destroyed",
            running.id
        )));
    }
    let mut in_use = BTreeMap::<u32, u64>::new();
    for (version, count) in wallet_store::version_counts().map_err(store_error)? {
        if version == "legacy" {
            return Err(format!(
                "{count} legacy wallet(s) name no KEK version, so any archived KEK may be theirs: \
                 run `rotor rotate` first; nothing was destroyed"
            )
            .into());
        }
        // A value that is not text (a BLOB on SQLite) may be a wallet stored as bytes, under
        // any KEK: once converted to text it must still open.
        if version == "not-text" {
            return Err(format!(
                "{count} wallet(s) hold a ciphertext that is not text (`rotor validate` lists them), which \
                 may be sealed under any KEK: store them as text and run `rotor rotate`, or delete them; \
                 nothing was destroyed"
            )
            .into());
        }
        // A malformed prefix names no real version, and `null` rows hold no wallet: neither
        // needs a KEK.
        if let Ok(version) = version.parse() {
            in_use.insert(version, count);
        }
    }

    // Every version Vault still has: rotor's archive entries and the KV versions not yet destroyed.
    let archived: BTreeSet<u32> = keys::archive_entries(key_path)
        .map_err(key_error)?
        .iter()
        .filter_map(|entry| entry.name.strip_prefix('v')?.parse().ok())
        .collect();
    let in_kv: BTreeSet<u32> = keys::metadata(key_path)
        .map_err(key_error)?
        .map(|m| {
            m.versions.iter().filter(|v| !v.destroyed).filter_map(|v| u32::try_from(v.version).ok()).collect()
        })
        .unwrap_or_default();
    let all: BTreeSet<u32> = archived.union(&in_kv).copied().collect();
    let kept: Vec<u32> = all.iter().rev().take(keep as usize).copied().collect();
    debug_assert!(kept.contains(&keyring.current_version()));

    let mut report = PruneReport { destroyed: Vec::new(), kept: kept.clone(), in_use: Vec::new() };
    for version in all.into_iter().filter(|v| !kept.contains(v)) {
        if let Some(&count) = in_use.get(&version) {
            report.in_use.push(VersionCount { version, count });
            continue;
        }
        // The host destroys the KV version and the archive entry, and refuses if a row names it.
        keys::destroy(key_path, version).map_err(key_error)?;
        log::info(&format!("destroyed KEK v{version}: no wallet uses it"));
        report.destroyed.push(version);
    }
    Ok(report)
}
