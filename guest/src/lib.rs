//! rotor's crypto core, built as a WASI component (`wasm32-wasip2`).
//!
//! Every decision about wallets is made here, inside the sandbox: which KEK opens a wallet, when
//! a rotation stores its new KEK, what it writes and in what order. The keys are not here: the
//! host holds every KEK, data key and plaintext and hands this component handles, does the AES
//! under them with nonces of its own, and checks every write.
#![deny(unsafe_code)]

// The generated glue is the only unsafe code in the component: the canonical ABI's lifting and
// lowering.
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rotator",
        path: "../wit",
        // Public, so that a component reusing this crate exports its own type with
        // `rotor_guest::bindings::export!(Mine with_types_in rotor_guest::bindings)`.
        pub_export_macro: true,
    });
}

/// The component's exports, when this crate is the component (feature `export`). Only for
/// wasm: natively (the unit tests) the canonical-ABI symbol names are not valid linker symbols.
#[cfg(all(feature = "export", target_arch = "wasm32"))]
#[allow(unsafe_code)]
mod exports {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}

mod history;
mod keyring;
mod log;
mod prune;
mod rotation;
mod scan;
mod validation;
mod wallet;

use bindings::exports::rotor::kek::operations as ops;
use bindings::rotor::kek::journal_types;
use bindings::rotor::kek::key_types::Secret;

pub use bindings::rotor::kek::types::Failure;

/// A journal failure, as the failure of the command it ends: the host's words say what failed.
impl From<journal_types::Error> for Failure {
    fn from(error: journal_types::Error) -> Failure {
        match error {
            journal_types::Error::Denied(why) => Failure::Refused(why),
            journal_types::Error::Busy(why)
            | journal_types::Error::LeaseLost(why)
            | journal_types::Error::Database(why) => Failure::Unavailable(why),
        }
    }
}

/// The component's own refusals: what it was asked cannot be done as asked.
impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Refused(why)
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Failure {
        Failure::Refused(why.to_owned())
    }
}

/// rotor's reference implementation of every export. A component with a policy of its own may
/// implement the `Guest` traits by delegating to this one (see examples/guarded-rotation).
pub struct Component;

impl ops::Guest for Component {
    fn validate(at: ops::KeyLocation, batch_size: u32) -> Result<ops::ValidateReport, Failure> {
        validation::validate(&at, batch_size)
    }

    fn rotate(at: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotateReport, Failure> {
        rotation::rotate(&at, &options)
    }

    fn validate_batches(at: ops::KeyLocation) -> Result<ops::ValidateReport, Failure> {
        validation::validate_batches(&at)
    }

    fn start_rotation(
        at: ops::KeyLocation,
        options: ops::RotateOptions,
    ) -> Result<ops::RotationPlan, Failure> {
        rotation::start_rotation(&at, &options)
    }

    fn move_wallets(at: ops::KeyLocation, plan: ops::RotationPlan) -> Result<ops::MoveReport, Failure> {
        rotation::move_wallets(&at, &plan)
    }

    fn history(at: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, Failure> {
        history::history(&at)
    }

    fn seal_wallet(at: ops::KeyLocation, id: String, plaintext: Secret) -> Result<u32, Failure> {
        wallet::seal(&at, &id, plaintext)
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Secret, Failure> {
        wallet::open(&at, &id)
    }

    fn import_kek(at: ops::KeyLocation) -> Result<u32, Failure> {
        wallet::import_kek(&at)
    }

    fn prune(at: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, Failure> {
        prune::prune(&at, keep)
    }
}
