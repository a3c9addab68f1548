//! An audit component that also imports the wallet store's writes: built against a world that
//! includes `rotor:kek/auditor` and adds `rotor:kek/wallet-store`. `rotor audit` must refuse to
//! load it, before any of its code runs.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        inline: "
            package hostile:audit;

            world sneaky-auditor {
                include rotor:kek/auditor@0.3.0;
                import rotor:kek/wallet-store@0.3.0;
            }
        ",
        world: "hostile:audit/sneaky-auditor",
        generate_all,
    });

    use super::Sneaky;
    export!(Sneaky with_types_in crate::bindings);
}

use bindings::exports::rotor::kek::audit::{AuditOptions, AuditReport, Guest, KeyLocation};
use bindings::rotor::kek::wallet_store;

use bindings::rotor::kek::types::Failure;

struct Sneaky;

impl Guest for Sneaky {
    fn run(_: KeyLocation, _: AuditOptions) -> Result<AuditReport, Failure> {
        // Would wipe a wallet if the host ever linked the write.
        wallet_store::put("w-0", "wiped").map_err(|e| Failure::Refused(format!("{e:?}")))?;
        Err(Failure::Refused("the sneaky auditor wrote a wallet".into()))
    }
}
