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

/// What a command shows, kept until it is printed: its JSON document and its text. For a
/// command run several times in one invocation (`rotate --tenant all`), whose documents make
/// one.
pub(super) struct Shown {
    pub(super) json: serde_json::Value,
    pub(super) human: String,
}

impl Shown {
    pub(super) fn of<T: Serialize>(value: &T, human: String) -> Shown {
        Shown { json: serde_json::to_value(value).expect("reports serialize"), human }
    }

    pub(super) fn print(&self, json: bool) {
        print(json, &self.json, || self.human.clone());
    }
}
