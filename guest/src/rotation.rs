//! `rotate`: moves every wallet to a new KEK without ever writing a wallet under a key that is
//! not safely in Vault.
//!
//! Order of steps (docs/ROTATION.md says what a crash at each one leaves behind):
//! 1. the journal records the rotation (one unfinished rotation at a time);
//! 2. the current KEK is archived at `<key-path>-archive/v<from>`;
//! 3. a fresh KEK is written to `<key-path>` with check-and-set on `from`, then archived too;
//! 4. the journal records the target version;
//! 5. wallets move in atomic batches with a per-row compare-and-swap; rows already on the target
//!    are skipped, so running the walk again after a crash is harmless (with legacy output, which
//!    names no version, "on the target" means "opens under the new KEK");
//! 6. the journal closes the rotation.

use std::collections::HashSet;

use rotor_codec::{Format, Kek, PREFIX};

use crate::bindings::exports::rotor::kek::operations::{KeyLocation, RotateOptions, RotateReport};
use crate::bindings::rotor::kek::journal::{self, Rotation};
use crate::bindings::rotor::kek::kv;
use crate::bindings::rotor::kek::types::{OutputFormat, WalletFailure};
use crate::bindings::rotor::kek::wallet_store::{self, Replacement, Wallet};
use crate::keyring::{Keyring, OpenError, kv_error, wipe};
use crate::{log, scan};

/// How often a row that another writer keeps changing is re-read before it is reported.
const MAX_ATTEMPTS: u32 = 5;

pub(crate) fn rotate(at: &KeyLocation, options: &RotateOptions) -> Result<RotateReport, String> {
    let mut keyring = Keyring::load(&at.key_path)?;
    if options.dry_run {
        return dry_run(keyring, options);
    }
    if options.strict {
        refuse_unopenable(&mut keyring, options.batch_size)?;
    }
    match (journal::resume()?, options.resume) {
        (Some(rotation), _) if options.restore.is_some() && rotation.restores != options.restore => {
            Err(format!(
                "rotation #{} (from KEK v{}) is unfinished: finish it with `rotor rotate` before rolling back",
                rotation.id, rotation.from_version
            ))
        }
        (Some(rotation), _) => {
            log::info(&format!(
                "resuming rotation #{} from KEK v{} (started by {} at {})",
                rotation.id, rotation.from_version, rotation.started_by, rotation.started_at
            ));
            let to = resume_target(&mut keyring, &rotation)?;
            // A rotation begun with --reencrypt stays one when resumed without the flag, and one
            // writing legacy stays legacy: its applications may not read envelopes.
            let output_format = match (rotation.output_format, options.output_format) {
                (OutputFormat::Envelope, OutputFormat::Legacy) => {
                    return Err(format!(
                        "rotation #{} writes rotor's envelope format: finish it with `rotor rotate`, \
                         then rotate again with --output-format legacy",
                        rotation.id
                    ));
                }
                (recorded, _) => recorded,
            };
            let options = RotateOptions {
                reencrypt: options.reencrypt || rotation.reencrypt,
                output_format,
                ..options.clone()
            };
            move_wallets(&mut keyring, rotation.id, rotation.from_version, to, &options)
        }
        (None, true) => Err("there is no unfinished rotation to resume".into()),
        (None, false) => {
            let from = keyring.current_version();
            let total = wallet_store::count().map_err(scan::store_error)?;
            let rotation =
                journal::begin(from, total, options.reencrypt, options.output_format, options.restore)?;
            let to = install_kek(&mut keyring, options.restore)?;
            journal::set_target(rotation.id, to)?;
            log::info(&format!(
                "rotation #{}: new KEK v{to} stored; moving wallets from v{from}",
                rotation.id
            ));
            move_wallets(&mut keyring, rotation.id, from, to, options)
        }
    }
}

/// Archives the current KEK, stores the next one with check-and-set, archives it, and makes it
/// current. The next KEK is fresh from the CSPRNG, or for a rollback the key of version
/// `restore`. Returns the new version.
fn install_kek(keyring: &mut Keyring, restore: Option<u32>) -> Result<u32, String> {
    let from = keyring.current_version();
    keyring.archive(from)?;
    let kek = match restore {
        None => Kek::generate().map_err(|e| e.to_string())?,
        Some(version) => keyring.require(version)?,
    };
    let path = keyring.key_path().to_owned();
    let data = vec![("key".to_owned(), kek.to_hex().to_string())];
    let written = kv::write(&path, &data, Some(from.into()));
    wipe(data);
    let version = match written {
        Ok(version) => u32::try_from(version).map_err(|_| format!("{path} reached version {version}"))?,
        Err(kv::Error::CasMismatch(_)) => {
            return Err(format!(
                "{path} changed in Vault while the rotation was starting (another writer?); nothing \
                 was moved: run `rotor rotate` again to resume"
            ));
        }
        Err(e) => return Err(kv_error(&path, e)),
    };
    keyring.install_current(version, kek);
    keyring.archive(version)?;
    Ok(version)
}

/// The KEK an unfinished rotation moves wallets to. A crash after the new KEK reached Vault but
/// before the journal heard of it leaves Vault one version ahead: that key is the target.
fn resume_target(keyring: &mut Keyring, rotation: &Rotation) -> Result<u32, String> {
    let current = keyring.current_version();
    let to = match rotation.to_version {
        0 if current > rotation.from_version => current,
        0 => install_kek(keyring, rotation.restores)?,
        to => to,
    };
    if to != keyring.current_version() {
        return Err(format!(
            "unfinished rotation #{} moves wallets to KEK v{to}, but Vault's current KEK is v{}: \
             the key was changed outside rotor; restore v{to} as current before resuming",
            rotation.id,
            keyring.current_version()
        ));
    }
    keyring.archive(to)?;
    if rotation.to_version == 0 {
        journal::set_target(rotation.id, to)?;
    }
    Ok(to)
}

/// What one wallet becomes under KEK `to` (`new_kek`): `None` if it is there already.
fn reseal(
    keyring: &mut Keyring,
    new_kek: &Kek,
    wallet: &Wallet,
    to: u32,
    options: &RotateOptions,
) -> Result<Option<String>, OpenError> {
    let wallet_error = |e: rotor_codec::CodecError| OpenError::Wallet(e.to_string());
    let format = rotor_codec::inspect(&wallet.ciphertext).map_err(wallet_error)?;
    if options.output_format == OutputFormat::Legacy {
        // The layout names no version: a legacy wallet that opens under the new KEK is done.
        if format == Format::Legacy && rotor_codec::open(new_kek, &wallet.id, &wallet.ciphertext).is_ok() {
            return Ok(None);
        }
        let (_, plaintext) = keyring.open(&wallet.id, &wallet.ciphertext)?;
        return rotor_codec::seal_legacy(new_kek, &plaintext).map(Some).map_err(wallet_error);
    }
    let resealed = match format {
        Format::Envelope { kek_version } if kek_version == to => return Ok(None),
        Format::Envelope { kek_version } if !options.reencrypt => {
            let old_kek = keyring.for_envelope(kek_version)?;
            rotor_codec::rewrap(&old_kek, new_kek, to, &wallet.id, &wallet.ciphertext)
        }
        // Legacy rows have no data key to re-wrap; --reencrypt replaces data keys on purpose.
        _ => {
            let (_, plaintext) = keyring.open(&wallet.id, &wallet.ciphertext)?;
            rotor_codec::seal(new_kek, to, &wallet.id, &plaintext)
        }
    };
    resealed.map(Some).map_err(wallet_error)
}

#[derive(Default)]
struct Tally {
    seen: u64,
    rotated: u64,
    unchanged: u64,
    failed: Vec<WalletFailure>,
    failed_ids: HashSet<String>,
}

impl Tally {
    fn fail(&mut self, id: String, reason: String) {
        self.failed_ids.insert(id.clone());
        self.failed.push(WalletFailure { id, reason });
    }

    /// Reseals `wallets`, returning the replacements to write. Wallets that do not open are
    /// tallied as failed; a Vault failure stops everything.
    fn plan(
        &mut self,
        keyring: &mut Keyring,
        wallets: Vec<Wallet>,
        to: u32,
        options: &RotateOptions,
    ) -> Result<Vec<Replacement>, String> {
        let new_kek = keyring.require(to)?;
        let mut replacements = Vec::with_capacity(wallets.len());
        for wallet in wallets {
            match reseal(keyring, &new_kek, &wallet, to, options) {
                Ok(Some(replacement)) => {
                    replacements.push(Replacement { id: wallet.id, expected: wallet.ciphertext, replacement })
                }
                Ok(None) => self.unchanged += 1,
                Err(OpenError::Wallet(reason)) => self.fail(wallet.id, reason),
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
        }
        Ok(replacements)
    }
}

fn move_wallets(
    keyring: &mut Keyring,
    rotation_id: u64,
    from: u32,
    to: u32,
    options: &RotateOptions,
) -> Result<RotateReport, String> {
    let total = wallet_store::count().map_err(scan::store_error)?;
    // Wallets already on the target (moved before a crash, or written by applications since the
    // new KEK was stored) are left out by the database itself. Legacy output names no version,
    // so there every wallet is read, and trial decryption tells which are done.
    let on_target = match options.output_format {
        OutputFormat::Envelope => Some(format!("{PREFIX}{to}:")),
        OutputFormat::Legacy => None,
    };
    let mut tally = Tally::default();
    // The walk, then one sweep for wallets an application wrote under the old KEK, with a key it
    // had read just before the switch, after the walk had passed them.
    for sweep in [false, true] {
        for batch in scan::batches(options.batch_size, on_target.clone()) {
            let mut pending: Vec<Wallet> =
                batch?.into_iter().filter(|w| !tally.failed_ids.contains(&w.id)).collect();
            if !sweep {
                tally.seen += pending.len() as u64;
            }
            for attempt in 1..=MAX_ATTEMPTS {
                let replacements = tally.plan(keyring, std::mem::take(&mut pending), to, options)?;
                if replacements.is_empty() {
                    break;
                }
                let outcome = wallet_store::replace_batch(&replacements).map_err(scan::store_error)?;
                tally.rotated += u64::from(outcome.replaced);
                // A conflicting row was written by someone else since it was read: read it again
                // and move what it holds now (deleted rows are simply gone).
                for id in outcome.conflicts {
                    if attempt == MAX_ATTEMPTS {
                        let reason = format!("changed by another writer on each of {MAX_ATTEMPTS} attempts");
                        tally.fail(id, reason);
                    } else if let Some(ciphertext) = wallet_store::get(&id).map_err(scan::store_error)? {
                        pending.push(Wallet { id, ciphertext });
                    }
                }
            }
            if !sweep {
                log::progress(tally.seen, total.max(tally.seen));
            }
        }
    }
    if !tally.failed.is_empty() {
        log::warn(&format!(
            "{} wallet(s) could not be moved and were left untouched on their old KEK",
            tally.failed.len()
        ));
    }
    journal::finish(rotation_id, tally.failed.len() as u64)?;
    let total = wallet_store::count().map_err(scan::store_error)?;
    let moved_or_failed = tally.rotated + tally.failed.len() as u64;
    Ok(RotateReport {
        rotation_id,
        from_version: from,
        to_version: to,
        total,
        rotated: tally.rotated,
        unchanged: total.saturating_sub(moved_or_failed),
        failed: tally.failed,
        dry_run: false,
    })
}

/// `--strict`: every wallet must open before anything changes.
fn refuse_unopenable(keyring: &mut Keyring, batch_size: u32) -> Result<(), String> {
    let mut failed = Vec::new();
    for batch in scan::batches(batch_size, None) {
        for wallet in batch? {
            match keyring.open(&wallet.id, &wallet.ciphertext) {
                Ok(_) => {}
                Err(OpenError::Wallet(reason)) => failed.push(format!("{}: {reason}", wallet.id)),
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 20;
    let more = failed.len().saturating_sub(SHOWN);
    failed.truncate(SHOWN);
    Err(format!(
        "--strict: {} wallet(s) do not open, so nothing was changed:\n  {}{}",
        failed.len() + more,
        failed.join("\n  "),
        if more > 0 {
            format!("\n  … and {more} more (rotor validate lists them all)")
        } else {
            String::new()
        }
    ))
}

/// Opens and reseals every wallet under a KEK that is never stored; writes nothing.
fn dry_run(mut keyring: Keyring, options: &RotateOptions) -> Result<RotateReport, String> {
    let from = keyring.current_version();
    let to = from + 1;
    let kek = match options.restore {
        Some(version) => keyring.require(version)?,
        None => Kek::generate().map_err(|e| e.to_string())?,
    };
    keyring.install_current(to, kek);
    let mut tally = Tally::default();
    for batch in scan::batches(options.batch_size, None) {
        let batch = batch?;
        tally.seen += batch.len() as u64;
        tally.rotated += tally.plan(&mut keyring, batch, to, options)?.len() as u64;
    }
    Ok(RotateReport {
        rotation_id: 0,
        from_version: from,
        to_version: to,
        total: tally.seen,
        rotated: tally.rotated,
        unchanged: tally.unchanged,
        failed: tally.failed,
        dry_run: true,
    })
}
