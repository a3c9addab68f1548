//! Logging and progress through the host's `report` import. Messages never carry key material
//! or plaintext: they name ids, paths and versions only.

use crate::bindings::rotor::kek::report::{self, Level};

pub(crate) fn info(message: &str) {
    report::log(Level::Info, message);
}

pub(crate) fn warn(message: &str) {
    report::log(Level::Warn, message);
}

pub(crate) fn progress(done: u64, total: u64) {
    report::progress(done, total);
}
