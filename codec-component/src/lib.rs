//! rotor's `codec` export alone, as a WASI component (world `codec-only`): what applications
//! embed to read and write wallets exactly as rotor does. `bindings/js` transpiles it with jco.
//!
//! Its wallet code is `rotor-codec`, the crate the host checks every write with, so that rotor
//! and every application read and write wallets with the same code.
#![deny(unsafe_code)]

// The generated glue is the only unsafe code: the canonical ABI's lifting and lowering.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "codec-only",
        path: "../wit",
    });

    use super::Component;
    export!(Component with_types_in crate::bindings);
}

mod codec;

use bindings::exports::rotor::kek::codec as codec_api;

struct Component;

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
