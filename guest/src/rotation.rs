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

use crate::Failure;
use std::cell::RefCell;

use rotor_codec::layout::{EnvelopeHeadParts, Stored};
use rotor_codec::listed::{LISTED, Listed};
use rotor_codec::{CodecError, PREFIX};

use crate::bindings::exports::rotor::kek::operations::{
    KeyLocation, MoveReport, RotateOptions, RotateReport, RotationPlan,
};
use crate::bindings::rotor::kek::journal::{self, Rotation};
use crate::bindings::rotor::kek::journal_types::RotationStatus;
use crate::bindings::rotor::kek::keys;
use crate::bindings::rotor::kek::types::{OutputFormat, WalletFailure};
use crate::bindings::rotor::kek::wallet_store::{self, BatchOutcome, Replacement, Rewrite, Wallet};
use crate::keyring::{
    Keyring, OpenError, key_error, open_legacy, parts, rewrap_data_key, seal_envelope, seal_legacy,
};
use crate::{log, scan};

/// How often a row that another writer keeps changing is re-read before it is reported.
const MAX_ATTEMPTS: u32 = 5;

pub(crate) fn rotate(at: &KeyLocation, options: &RotateOptions) -> Result<RotateReport, Failure> {
    if options.dry_run {
        return dry_run(Keyring::load(&at.key_path)?, options);
    }
    let (mut keyring, plan) = start(at, options)?;
    // The whole walk in this instance: keyset batches over the table, then one sweep for
    // wallets an application wrote under the old KEK, with a key it had read just before the
    // switch, after the walk had passed them.
    let on_target = skip_prefix(&plan);
    let total = wallet_store::count().map_err(scan::store_error)?;
    let mut walk = Tally::default();
    for batch in scan::batches(options.batch_size, on_target.clone()) {
        walk.move_batch(&mut keyring, &plan, batch?)?;
        log::progress(walk.seen, total.max(walk.seen));
    }
    // The sweep meets every wallet still off the target, those the walk failed included: what
    // it fails is what the rotation leaves behind. Keeping the walk's failed ids to skip them
    // would grow with the failures, as large as the table under a wrong key path.
    let mut sweep = Tally::default();
    for batch in scan::batches(options.batch_size, on_target) {
        sweep.move_batch(&mut keyring, &plan, batch?)?;
    }
    let (failed, failed_count) = sweep.failed.into_parts();
    if failed_count > 0 {
        log::warn(&format!(
            "{failed_count} wallet(s) could not be moved and were left untouched on their old KEK"
        ));
    }
    journal::finish(plan.rotation_id, failed_count)?;
    let total = wallet_store::count().map_err(scan::store_error)?;
    let rotated = walk.rotated + sweep.rotated;
    Ok(RotateReport {
        rotation_id: plan.rotation_id,
        from_version: plan.from_version,
        to_version: plan.to_version,
        total,
        rotated,
        unchanged: total.saturating_sub(rotated + failed_count),
        failed,
        failed_count,
        dry_run: false,
    })
}

/// Steps 1–4: a rotation recorded in the journal with its new KEK stored in Vault, or the
/// unfinished one picked up.
pub(crate) fn start_rotation(at: &KeyLocation, options: &RotateOptions) -> Result<RotationPlan, Failure> {
    if options.dry_run {
        return Err("start-rotation stores a KEK: a dry run goes through `rotate`".into());
    }
    let (keyring, plan) = start(at, options)?;
    KEYRING.set(Some(keyring));
    Ok(plan)
}

thread_local! {
    /// The keys this instance last worked with. An instance runs one command: its later calls
    /// (the host's sweep after the walk) need no Vault, which may be gone by then.
    static KEYRING: RefCell<Option<Keyring>> = const { RefCell::new(None) };
}

/// The keyring kept from an earlier call for `key_path`, or a fresh one from Vault.
fn keyring_for(key_path: &str) -> Result<Keyring, Failure> {
    match KEYRING.take() {
        Some(keyring) if keyring.key_path() == key_path => Ok(keyring),
        _ => Keyring::load(key_path),
    }
}

/// Step 5 for one worker: the batches the host hands out, until there are none. Each batch is
/// submitted to be written while the next one is resealed; the outcome of a write comes back
/// with the next submission (or from `settle-batches` at the end), and its conflicts are
/// retried then.
pub(crate) fn move_wallets(at: &KeyLocation, plan: &RotationPlan) -> Result<MoveReport, Failure> {
    let mut keyring = keyring_for(&at.key_path)?;
    let mut tally = Tally::default();
    let walked = (|| {
        while let Some(batch) = wallet_store::next_batch().map_err(scan::store_error)? {
            tally.seen += batch.len() as u64;
            // A re-wrap's head alone crosses back: the host keeps the rest of the row.
            let rows: Vec<(String, Rewrite)> = tally
                .plan(&mut keyring, batch, plan)?
                .into_iter()
                .map(|(wallet, resealed)| (wallet.id, resealed.into_rewrite()))
                .collect();
            let earlier = wallet_store::submit_current_batch(&rows).map_err(scan::store_error)?;
            tally.settled(&mut keyring, plan, earlier)?;
        }
        let last = wallet_store::settle_batches().map_err(scan::store_error)?;
        tally.settled(&mut keyring, plan, last)
    })();
    KEYRING.set(Some(keyring));
    walked?;
    let (failed, failed_count) = tally.failed.into_parts();
    Ok(MoveReport {
        seen: tally.seen,
        rotated: tally.rotated,
        unchanged: tally.unchanged,
        failed,
        failed_count,
    })
}

/// What the database may leave out of a walk: wallets whose prefix names the target already.
/// Legacy output names no version, so there every wallet is read, and trial decryption tells
/// which are done.
fn skip_prefix(plan: &RotationPlan) -> Option<String> {
    match plan.output_format {
        OutputFormat::Envelope => Some(format!("{PREFIX}{}:", plan.to_version)),
        OutputFormat::Legacy => None,
    }
}

fn start(at: &KeyLocation, options: &RotateOptions) -> Result<(Keyring, RotationPlan), Failure> {
    if options.strict {
        refuse_unopenable(&mut Keyring::load(&at.key_path)?, options.batch_size)?;
    }
    let resumed = journal::resume()?;
    // Read after the journal answers: the host may have waited for another rotor to set a
    // rotation up, which stores a new KEK.
    let mut keyring = Keyring::load(&at.key_path)?;
    let plan = |rotation_id, from_version, to_version, reencrypt, output_format| RotationPlan {
        rotation_id,
        from_version,
        to_version,
        reencrypt,
        output_format,
    };
    match (resumed, options.resume) {
        (Some(rotation), _) => {
            check_resumable(&rotation, options)?;
            log::info(&format!(
                "resuming rotation #{} from KEK v{} (started by {} at {})",
                rotation.id, rotation.from_version, rotation.started_by, rotation.started_at
            ));
            let to = resume_target(&mut keyring, &rotation)?;
            Ok((
                keyring,
                plan(rotation.id, rotation.from_version, to, rotation.reencrypt, rotation.output_format),
            ))
        }
        (None, true) => Err("there is no unfinished rotation to resume".into()),
        (None, false) => {
            let from = keyring.current_version();
            if let Some(version) = options.restore {
                // Checked before the journal records anything: a rollback to a key Vault does
                // not have would otherwise leave a rotation that can never finish.
                check_restorable(&mut keyring, version)?;
            }
            let total = wallet_store::count().map_err(scan::store_error)?;
            let rotation =
                journal::begin(from, total, options.reencrypt, options.output_format, options.restore)?;
            let to = install_kek(&mut keyring, options.restore)?;
            journal::set_target(rotation.id, to)?;
            log::info(&format!(
                "rotation #{}: new KEK v{to} stored; moving wallets from v{from}",
                rotation.id
            ));
            Ok((keyring, plan(rotation.id, from, to, options.reencrypt, options.output_format)))
        }
    }
}

/// Whether an unfinished rotation may be resumed by a command with `options`. A rotation keeps
/// what it began with: one begun with --reencrypt stays one when resumed without the flag, and
/// one writing legacy stays legacy (its applications may not read envelopes). What it cannot do
/// is become what it was not, since the wallets it moved already were not treated so.
pub(crate) fn check_resumable(rotation: &Rotation, options: &RotateOptions) -> Result<(), Failure> {
    let id = rotation.id;
    if options.restore.is_some() && rotation.restores != options.restore {
        return Err(format!(
            "rotation #{id} (from KEK v{}) is unfinished: finish it with `rotor rotate` (or close it with \
             `rotor abort`) before rolling back; nothing was changed",
            rotation.from_version
        )
        .into());
    }
    if (rotation.output_format, options.output_format) == (OutputFormat::Envelope, OutputFormat::Legacy) {
        return Err(format!(
            "rotation #{id} writes rotor's envelope format: finish it with `rotor rotate`, \
             then rotate again with --output-format legacy (nothing was changed)"
        )
        .into());
    }
    if options.reencrypt && !rotation.reencrypt {
        return Err(format!(
            "rotation #{id} only re-wraps data keys, and the wallets it moved before it stopped keep \
             theirs, so --reencrypt cannot apply to it: finish it with `rotor rotate`, then run \
             `rotor rotate --reencrypt` for fresh data keys everywhere (nothing was changed)"
        )
        .into());
    }
    Ok(())
}

/// A rollback's target must be an older KEK that Vault still has.
fn check_restorable(keyring: &mut Keyring, version: u32) -> Result<(), Failure> {
    let current = keyring.current_version();
    if version >= current {
        return Err(format!(
            "cannot roll back to KEK v{version}: the current KEK is v{current}, and a rollback goes to an \
             older one (`rotor history` lists them); nothing was recorded or changed"
        )
        .into());
    }
    if !keyring.has(version)? {
        return Err(format!(
            "cannot roll back to KEK v{version}: Vault has it neither in {} nor in the version history of \
             {} (destroyed by `rotor prune`, or never written); nothing was recorded or changed",
            crate::keyring::archive_path(keyring.key_path(), version),
            keyring.key_path()
        )
        .into());
    }
    Ok(())
}

/// Archives the current KEK, has the host store the next one with check-and-set (and archive
/// it), and makes it current. The next KEK is fresh from the host's CSPRNG, or for a rollback
/// the key of version `restore`. Returns the new version.
fn install_kek(keyring: &mut Keyring, restore: Option<u32>) -> Result<u32, Failure> {
    let from = keyring.current_version();
    keyring.archive(from)?;
    let kek = keys::create_next(keyring.key_path(), from, restore).map_err(key_error)?;
    let version = kek.version();
    keyring.install_current(kek);
    Ok(version)
}

/// The KEK an unfinished rotation moves wallets to. A crash after the new KEK reached Vault but
/// before the journal heard of it leaves Vault one version ahead: that key is the target.
fn resume_target(keyring: &mut Keyring, rotation: &Rotation) -> Result<u32, Failure> {
    let current = keyring.current_version();
    if let (0, Some(version)) = (rotation.to_version, rotation.restores)
        && current == rotation.from_version
        && !keyring.has(version)?
    {
        return Err(format!(
            "rotation #{} rolls back to KEK v{version}, which Vault does not have (destroyed by `rotor \
             prune`, or never written); no wallet was moved: close it with `rotor abort`",
            rotation.id
        )
        .into());
    }
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
        )
        .into());
    }
    keyring.archive(to)?;
    if rotation.to_version == 0 {
        journal::set_target(rotation.id, to)?;
    }
    Ok(to)
}

/// A wallet's new ciphertext, as [`reseal`] makes it.
enum Resealed {
    /// The whole of it.
    Whole(String),
    /// A re-wrap: the envelope's new head, in place of the first `old_head` characters of the
    /// wallet's ciphertext, whose rest it keeps.
    Head { head: String, old_head: usize },
}

impl Resealed {
    /// As `submit-current-batch` takes it.
    fn into_rewrite(self) -> Rewrite {
        match self {
            Resealed::Whole(whole) => Rewrite::Whole(whole),
            Resealed::Head { head, .. } => Rewrite::Head(head),
        }
    }

    /// The whole new ciphertext of a wallet whose ciphertext is `old`.
    fn into_whole(self, old: &str) -> String {
        match self {
            Resealed::Whole(whole) => whole,
            Resealed::Head { mut head, old_head } => {
                head.push_str(&old[old_head..]);
                head
            }
        }
    }
}

/// What one wallet becomes under `plan`'s KEK (loaded in `keyring`): `None` if it is there
/// already.
fn reseal(
    keyring: &mut Keyring,
    wallet: &Wallet,
    plan: &RotationPlan,
) -> Result<Option<Resealed>, OpenError> {
    let wallet_error = |e: CodecError| OpenError::Wallet(e.to_string());
    let (to, id) = (plan.to_version, wallet.id.as_str());
    // Re-wrap: the data key moves from the old KEK to the new one inside the host. Only the
    // envelope's head is decoded and encoded again; the wallet's own ciphertext is checked and
    // kept where it is.
    let rewraps = plan.output_format == OutputFormat::Envelope && !plan.reencrypt;
    if rewraps && wallet.ciphertext.starts_with(PREFIX) {
        let envelope = EnvelopeHeadParts::parse(&wallet.ciphertext).map_err(wallet_error)?;
        let kek_version = envelope.kek_version();
        if kek_version == to {
            return Ok(None);
        }
        keyring.require_for_envelope(kek_version)?;
        let wrap =
            rewrap_data_key(keyring.get(kek_version), kek_version, envelope.wrap(), keyring.get(to), to, id)
                .ok_or_else(|| wallet_error(CodecError::Authentication))?;
        let head = envelope.rewrapped_head(to, parts(&wrap)).map_err(wallet_error)?;
        return Ok(Some(Resealed::Head { head, old_head: envelope.head_len() }));
    }
    // Parsed once: the format and the opening both read this.
    let stored = Stored::parse(&wallet.ciphertext).map_err(wallet_error)?;
    if plan.output_format == OutputFormat::Legacy {
        // The layout names no version: a legacy wallet that opens under the new KEK is done.
        if let Stored::Legacy(legacy) = &stored
            && open_legacy(keyring.get(to), legacy).is_some()
        {
            return Ok(None);
        }
        let (_, secret) = keyring.open_stored(id, &stored)?;
        return seal_legacy(keyring.get(to), &secret)
            .map(|new| Some(Resealed::Whole(new)))
            .map_err(wallet_error);
    }
    if let Stored::Envelope(envelope) = &stored
        && envelope.kek_version() == to
    {
        return Ok(None);
    }
    // Legacy rows have no data key to re-wrap; --reencrypt replaces data keys on purpose.
    let (_, secret) = keyring.open_stored(id, &stored)?;
    seal_envelope(keyring.get(to), to, id, &secret)
        .map(|new| Some(Resealed::Whole(new)))
        .map_err(wallet_error)
}

#[derive(Default)]
struct Tally {
    seen: u64,
    rotated: u64,
    unchanged: u64,
    failed: Listed<WalletFailure>,
}

impl Tally {
    fn fail(&mut self, id: String, reason: String) {
        self.failed.push(WalletFailure { id, reason });
    }

    /// Reseals `wallets`, returning each to write with what it becomes. Wallets that do not
    /// open are tallied as failed; a Vault failure stops everything.
    fn plan(
        &mut self,
        keyring: &mut Keyring,
        wallets: Vec<Wallet>,
        plan: &RotationPlan,
    ) -> Result<Vec<(Wallet, Resealed)>, Failure> {
        keyring.require(plan.to_version)?;
        let mut replacements = Vec::with_capacity(wallets.len());
        for wallet in wallets {
            match reseal(keyring, &wallet, plan) {
                Ok(Some(resealed)) => replacements.push((wallet, resealed)),
                Ok(None) => self.unchanged += 1,
                Err(OpenError::Wallet(reason)) => self.fail(wallet.id, reason),
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
        }
        Ok(replacements)
    }

    /// Moves one batch of this instance's own walk in one atomic write; rows another writer
    /// changed meanwhile are read again and retried.
    fn move_batch(
        &mut self,
        keyring: &mut Keyring,
        plan: &RotationPlan,
        batch: Vec<Wallet>,
    ) -> Result<(), Failure> {
        self.seen += batch.len() as u64;
        self.write_from(keyring, plan, batch, 1)
    }

    /// Tallies what submitted writes did, and moves their conflicting rows again (their first
    /// attempt was the submission).
    fn settled(
        &mut self,
        keyring: &mut Keyring,
        plan: &RotationPlan,
        outcome: BatchOutcome,
    ) -> Result<(), Failure> {
        self.rotated += u64::from(outcome.replaced);
        let pending = self.read_again(outcome.conflicts, 1)?;
        self.write_from(keyring, plan, pending, 2)
    }

    /// Reseals and writes `pending`, as attempt `first` and on, until nothing conflicts or the
    /// attempts run out.
    fn write_from(
        &mut self,
        keyring: &mut Keyring,
        plan: &RotationPlan,
        mut pending: Vec<Wallet>,
        first: u32,
    ) -> Result<(), Failure> {
        for attempt in first..=MAX_ATTEMPTS {
            let replacements: Vec<Replacement> = self
                .plan(keyring, std::mem::take(&mut pending), plan)?
                .into_iter()
                .map(|(wallet, resealed)| Replacement {
                    replacement: resealed.into_whole(&wallet.ciphertext),
                    id: wallet.id,
                    expected: wallet.ciphertext,
                })
                .collect();
            if replacements.is_empty() {
                break;
            }
            let outcome = wallet_store::replace_batch(&replacements).map_err(scan::store_error)?;
            self.rotated += u64::from(outcome.replaced);
            pending = self.read_again(outcome.conflicts, attempt)?;
        }
        Ok(())
    }

    /// Rows that conflicted on attempt `attempt`: written by someone else since they were
    /// read, so read again to move what they hold now (deleted rows are simply gone), or
    /// failed once the attempts are spent.
    fn read_again(&mut self, conflicts: Vec<String>, attempt: u32) -> Result<Vec<Wallet>, Failure> {
        let mut pending = Vec::new();
        for id in conflicts {
            if attempt >= MAX_ATTEMPTS {
                let reason = format!("changed by another writer on each of {MAX_ATTEMPTS} attempts");
                self.fail(id, reason);
            } else if let Some(ciphertext) = wallet_store::get(&id).map_err(scan::store_error)? {
                pending.push(Wallet { id, ciphertext });
            }
        }
        Ok(pending)
    }
}

/// `--strict`: every wallet must open before anything changes.
fn refuse_unopenable(keyring: &mut Keyring, batch_size: u32) -> Result<(), Failure> {
    // The refusal names the first few; the rest are counted, however many there are.
    const SHOWN: usize = 20;
    let mut shown = Vec::new();
    let mut count = 0u64;
    for batch in scan::batches(batch_size, None) {
        for wallet in batch? {
            match keyring.open(&wallet.id, &wallet.ciphertext) {
                Ok(_) => {}
                Err(OpenError::Wallet(reason)) => {
                    count += 1;
                    if shown.len() < SHOWN {
                        shown.push(format!("{}: {reason}", wallet.id));
                    }
                }
                Err(OpenError::Fatal(reason)) => return Err(reason),
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    let more = count - shown.len() as u64;
    Err(Failure::Inconsistent(format!(
        "--strict: {count} wallet(s) do not open, so nothing was changed:\n  {}{}",
        shown.join("\n  "),
        if more > 0 {
            format!("\n  … and {more} more (`rotor validate` names them, up to {LISTED})")
        } else {
            String::new()
        }
    )))
}

/// Opens and reseals every wallet under the KEK the rotation would move them to, writing
/// nothing: the unfinished rotation if there is one (what `rotor rotate` would resume), else a
/// new one under a KEK that is never stored.
fn dry_run(mut keyring: Keyring, options: &RotateOptions) -> Result<RotateReport, Failure> {
    let unfinished = journal::rotations()?.into_iter().find(|r| r.status == RotationStatus::Running);
    let (rotation_id, from, stored_target, restore, reencrypt, output_format) = match unfinished {
        Some(rotation) => {
            check_resumable(&rotation, options)?;
            log::info(&format!(
                "dry run of unfinished rotation #{} from KEK v{}: what `rotor rotate` would resume",
                rotation.id, rotation.from_version
            ));
            let current = keyring.current_version();
            let stored = match rotation.to_version {
                0 if current > rotation.from_version => Some(current),
                0 => None,
                to => Some(to),
            };
            let (id, from) = (rotation.id, rotation.from_version);
            (id, from, stored, rotation.restores, rotation.reencrypt, rotation.output_format)
        }
        None => {
            if let Some(version) = options.restore {
                check_restorable(&mut keyring, version)?;
            }
            let from = keyring.current_version();
            (0, from, None, options.restore, options.reencrypt, options.output_format)
        }
    };
    let to = match stored_target {
        Some(to) => {
            keyring.require(to)?;
            to
        }
        // A KEK the host never stores, numbered as the next version.
        None => {
            let draft = keys::draft(keyring.key_path(), restore).map_err(key_error)?;
            let to = draft.version();
            keyring.install_current(draft);
            to
        }
    };
    let plan = RotationPlan { rotation_id, from_version: from, to_version: to, reencrypt, output_format };
    let mut tally = Tally::default();
    for batch in scan::batches(options.batch_size, None) {
        let batch = batch?;
        tally.seen += batch.len() as u64;
        tally.rotated += tally.plan(&mut keyring, batch, &plan)?.len() as u64;
    }
    let (failed, failed_count) = tally.failed.into_parts();
    Ok(RotateReport {
        rotation_id,
        from_version: from,
        to_version: to,
        total: tally.seen,
        rotated: tally.rotated,
        unchanged: tally.unchanged,
        failed,
        failed_count,
        dry_run: true,
    })
}
