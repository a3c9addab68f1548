//! A rotation component that adds a policy to rotor's own logic: it refuses to start a rotation
//! while more than [`MAX_UNOPENABLE_PERCENT`] of the wallets do not open, because a rotation
//! would leave those on the old KEK and hide a larger problem (a wrong key, a corrupted
//! restore) behind a "finished" rotation.
//!
//! Everything else is rotor's reference implementation, reused through the `rotor-guest`
//! crate: the component targets the same WIT world, and the same `rotor` binary runs it with
//! `--component`. The host checks every write itself: each replacement must open, under the
//! current KEK, to what its row held.

use rotor_guest::Component as Reference;
use rotor_guest::bindings::exports::rotor::kek::operations as ops;
use rotor_guest::Failure;
use rotor_guest::bindings::rotor::kek::key_types::Secret;

/// The share of wallets that may fail to open before this component refuses to rotate.
pub const MAX_UNOPENABLE_PERCENT: u64 = 1;

struct Guarded;

fn check_policy(at: &ops::KeyLocation, options: &ops::RotateOptions) -> Result<(), Failure> {
    if options.resume || options.dry_run {
        return Ok(());
    }
    let report = <Reference as ops::Guest>::validate(at.clone(), options.batch_size)?;
    let invalid = report.invalid.len() as u64;
    if invalid * 100 > report.total * MAX_UNOPENABLE_PERCENT {
        return Err(Failure::Refused(format!(
            "policy of guarded-rotation: {invalid} of {} wallets do not open, more than the \
             {MAX_UNOPENABLE_PERCENT}% this component rotates with; nothing was changed. \
             `rotor validate` lists them",
            report.total
        )));
    }
    Ok(())
}

impl ops::Guest for Guarded {
    fn rotate(at: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotateReport, Failure> {
        check_policy(&at, &options)?;
        <Reference as ops::Guest>::rotate(at, options)
    }

    fn start_rotation(
        at: ops::KeyLocation,
        options: ops::RotateOptions,
    ) -> Result<ops::RotationPlan, Failure> {
        check_policy(&at, &options)?;
        <Reference as ops::Guest>::start_rotation(at, options)
    }

    fn move_wallets(at: ops::KeyLocation, plan: ops::RotationPlan) -> Result<ops::MoveReport, Failure> {
        <Reference as ops::Guest>::move_wallets(at, plan)
    }

    fn validate(at: ops::KeyLocation, batch_size: u32) -> Result<ops::ValidateReport, Failure> {
        <Reference as ops::Guest>::validate(at, batch_size)
    }

    fn validate_batches(at: ops::KeyLocation) -> Result<ops::ValidateReport, Failure> {
        <Reference as ops::Guest>::validate_batches(at)
    }

    fn history(at: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, Failure> {
        <Reference as ops::Guest>::history(at)
    }

    fn seal_wallet(at: ops::KeyLocation, id: String, plaintext: Secret) -> Result<u32, Failure> {
        <Reference as ops::Guest>::seal_wallet(at, id, plaintext)
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Secret, Failure> {
        <Reference as ops::Guest>::open_wallet(at, id)
    }

    fn import_kek(at: ops::KeyLocation) -> Result<u32, Failure> {
        <Reference as ops::Guest>::import_kek(at)
    }

    fn prune(at: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, Failure> {
        <Reference as ops::Guest>::prune(at, keep)
    }
}

rotor_guest::bindings::export!(Guarded with_types_in rotor_guest::bindings);
