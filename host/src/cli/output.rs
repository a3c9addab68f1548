//! What commands without a report type of their own print, as text or JSON.

use serde::Serialize;

use crate::report::print_json;

#[derive(Debug, Serialize)]
pub(super) struct Sealed {
    pub(super) id: String,
    pub(super) kek_version: u32,
    pub(super) bytes: usize,
}

pub(super) fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        print_json(value);
    } else {
        println!("{}", human());
    }
}
