//! rotor's audit component, built for the `auditor` world (`wasm32-wasip2`).
//!
//! It can only read: the world it targets has no function that writes a secret, a wallet or
//! the journal. It re-derives everything it reports from Vault and the wallet table itself,
//! independently of the rotation component's code, so that it checks that code's results
//! rather than repeating its reasoning.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "auditor", path: "../wit" });

    use super::Component;
    export!(Component with_types_in crate::bindings);
}

mod checks;
mod keys;
mod time;

use bindings::exports::rotor::kek::audit::{AuditOptions, AuditReport, Guest, KeyLocation};
use bindings::rotor::kek::types::Failure;

struct Component;

impl Guest for Component {
    fn run(at: KeyLocation, options: AuditOptions) -> Result<AuditReport, Failure> {
        // What the audit finds wrong is a finding; it fails only when Vault, the database or
        // the host does.
        checks::run(&at.key_path, &options).map_err(Failure::Unavailable)
    }
}
