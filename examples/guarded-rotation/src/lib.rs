//! A rotation component that adds a policy to rotor's own logic: it refuses to start a rotation
//! while more than [`MAX_UNOPENABLE_PERCENT`] of the wallets do not open, because a rotation
//! would leave those on the old KEK and hide a larger problem (a wrong key, a corrupted
//! restore) behind a "finished" rotation.
//!
//! Everything else is rotor's reference implementation, reused through the `rotor-guest`
//! crate: the component targets the same WIT world, and the same `rotor` binary runs it with
//! `--component`. The host cross-checks every batch it writes against the reference component.

use rotor_guest::Component as Reference;
use rotor_guest::bindings::exports::rotor::kek::codec;
use rotor_guest::bindings::exports::rotor::kek::operations as ops;

/// The share of wallets that may fail to open before this component refuses to rotate.
pub const MAX_UNOPENABLE_PERCENT: u64 = 1;

struct Guarded;

impl codec::Guest for Guarded {
    fn seal(kek_hex: String, kek_version: u32, id: String, plaintext: Vec<u8>) -> Result<String, String> {
        <Reference as codec::Guest>::seal(kek_hex, kek_version, id, plaintext)
    }

    fn open(keks: Vec<(u32, String)>, id: String, ciphertext: String) -> Result<Vec<u8>, String> {
        <Reference as codec::Guest>::open(keks, id, ciphertext)
    }

    fn inspect(ciphertext: String) -> Result<u32, String> {
        <Reference as codec::Guest>::inspect(ciphertext)
    }
}

/// The policy, checked before a rotation starts (a resumed rotation passed it when it started).
fn check_policy(at: &ops::KeyLocation, options: &ops::RotateOptions) -> Result<(), String> {
    if options.resume || options.dry_run {
        return Ok(());
    }
    let report = <Reference as ops::Guest>::validate(at.clone(), options.batch_size)?;
    let invalid = report.invalid.len() as u64;
    if invalid * 100 > report.total * MAX_UNOPENABLE_PERCENT {
        return Err(format!(
            "policy of guarded-rotation: {invalid} of {} wallets do not open, more than the \
             {MAX_UNOPENABLE_PERCENT}% this component rotates with; nothing was changed. \
             `rotor validate` lists them",
            report.total
        ));
    }
    Ok(())
}

impl ops::Guest for Guarded {
    fn rotate(at: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotateReport, String> {
        check_policy(&at, &options)?;
        <Reference as ops::Guest>::rotate(at, options)
    }

    fn start_rotation(at: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotationPlan, String> {
        check_policy(&at, &options)?;
        <Reference as ops::Guest>::start_rotation(at, options)
    }

    fn move_wallets(at: ops::KeyLocation, plan: ops::RotationPlan) -> Result<ops::MoveReport, String> {
        <Reference as ops::Guest>::move_wallets(at, plan)
    }

    fn validate(at: ops::KeyLocation, batch_size: u32) -> Result<ops::ValidateReport, String> {
        <Reference as ops::Guest>::validate(at, batch_size)
    }

    fn validate_batches(at: ops::KeyLocation) -> Result<ops::ValidateReport, String> {
        <Reference as ops::Guest>::validate_batches(at)
    }

    fn history(at: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, String> {
        <Reference as ops::Guest>::history(at)
    }

    fn seal_wallet(at: ops::KeyLocation, id: String, plaintext: Vec<u8>) -> Result<u32, String> {
        <Reference as ops::Guest>::seal_wallet(at, id, plaintext)
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Vec<u8>, String> {
        <Reference as ops::Guest>::open_wallet(at, id)
    }

    fn import_kek(at: ops::KeyLocation, kek_hex: String) -> Result<u32, String> {
        <Reference as ops::Guest>::import_kek(at, kek_hex)
    }

    fn prune(at: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, String> {
        <Reference as ops::Guest>::prune(at, keep)
    }
}

rotor_guest::bindings::export!(Guarded with_types_in rotor_guest::bindings);
