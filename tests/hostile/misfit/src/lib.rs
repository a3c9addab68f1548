//! A rotation component whose imports and exports have the names of rotor's `rotator` world
//! but not its types (`wit/misfit.wit`): `wallet-store.put` takes one string, `keys.current`
//! answers with the key's hex instead of a handle, `operations.validate` takes and returns
//! others, and the rest of `operations` is missing. `tests/sandbox.rs` checks that `rotor
//! component inspect` names each misfit and that no command links it.

mod bindings {
    wit_bindgen::generate!({ world: "rotator", path: "wit" });

    use super::Misfit;
    export!(Misfit with_types_in crate::bindings);
}

use bindings::exports::rotor::kek::operations::{Guest, KeyLocation};
use bindings::rotor::kek::{keys, wallet_store};

struct Misfit;

impl Guest for Misfit {
    fn validate(at: KeyLocation) -> Result<u64, String> {
        // Calls every import, so that the component keeps them (unused imports are dropped).
        let _ = keys::current(&at.key_path);
        wallet_store::put("w-0").map_err(|e| format!("{e:?}"))?;
        wallet_store::count().map_err(|e| format!("{e:?}"))
    }
}
