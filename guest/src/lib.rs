//! rotor's crypto core, built as a WASI component (`wasm32-wasip2`).
//!
//! Every decision about key material and ciphertexts is made here, inside the sandbox: which
//! KEK opens a wallet, when a new KEK is generated and stored, what a rotation writes. The host
//! only carries bytes between this component, Vault and the database, within the grants it
//! enforces.
#![deny(unsafe_code)]

// The generated glue is the only unsafe code in the component: the canonical ABI's lifting and
// lowering.
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rotator",
        path: "../wit",
        // Key material crosses the boundary as strings and byte lists; the generated types own
        // them, and the code below moves them into zeroizing wrappers as soon as it can.
        //
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

mod codec;
mod history;
mod keyring;
mod log;
mod prune;
mod rotation;
mod scan;
mod validation;
mod wallet;

use bindings::exports::rotor::kek::{codec as codec_api, operations as ops};
use bindings::rotor::kek::journal_types;

/// A journal failure, as the message of the command it ends: the host's words say what failed.
impl From<journal_types::Error> for String {
    fn from(error: journal_types::Error) -> String {
        match error {
            journal_types::Error::Denied(why)
            | journal_types::Error::Busy(why)
            | journal_types::Error::LeaseLost(why)
            | journal_types::Error::Database(why) => why,
        }
    }
}

/// rotor's reference implementation of every export. A component with a policy of its own may
/// implement the `Guest` traits by delegating to this one (see examples/guarded-rotation).
pub struct Component;

impl codec_api::Guest for Component {
    fn seal(kek_hex: String, kek_version: u32, id: String, plaintext: Vec<u8>) -> Result<String, String> {
        codec::seal(kek_hex, kek_version, &id, plaintext)
    }

    fn open(keks: Vec<(u32, String)>, id: String, ciphertext: String) -> Result<Vec<u8>, String> {
        codec::open(keks, &id, &ciphertext)
    }

    fn inspect(ciphertext: String) -> Result<u32, String> {
        codec::inspect(&ciphertext)
    }
}

impl ops::Guest for Component {
    fn validate(at: ops::KeyLocation, batch_size: u32) -> Result<ops::ValidateReport, String> {
        validation::validate(&at, batch_size)
    }

    fn rotate(at: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotateReport, String> {
        rotation::rotate(&at, &options)
    }

    fn validate_batches(at: ops::KeyLocation) -> Result<ops::ValidateReport, String> {
        validation::validate_batches(&at)
    }

    fn start_rotation(
        at: ops::KeyLocation,
        options: ops::RotateOptions,
    ) -> Result<ops::RotationPlan, String> {
        rotation::start_rotation(&at, &options)
    }

    fn move_wallets(at: ops::KeyLocation, plan: ops::RotationPlan) -> Result<ops::MoveReport, String> {
        rotation::move_wallets(&at, &plan)
    }

    fn history(at: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, String> {
        history::history(&at)
    }

    fn seal_wallet(at: ops::KeyLocation, id: String, plaintext: Vec<u8>) -> Result<u32, String> {
        wallet::seal(&at, &id, plaintext)
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Vec<u8>, String> {
        wallet::open(&at, &id)
    }

    fn import_kek(at: ops::KeyLocation, kek_hex: String) -> Result<u32, String> {
        wallet::import_kek(&at, kek_hex)
    }

    fn prune(at: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, String> {
        prune::prune(&at, keep)
    }
}
