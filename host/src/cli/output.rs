//! What commands without a report type of their own print, as text or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::print_json;

#[derive(Debug, Serialize)]
pub(super) struct Pruned {
    pub(super) destroyed: Vec<u32>,
    pub(super) kept: Vec<u32>,
    /// Versions not destroyed because wallets use them: version → wallets.
    pub(super) in_use: BTreeMap<String, u64>,
}

impl Pruned {
    pub(super) fn human(&self) -> String {
        let list = |versions: &[u32]| versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        let mut text = format!(
            "destroyed: {}; kept: {}",
            if self.destroyed.is_empty() { "nothing".into() } else { list(&self.destroyed) },
            list(&self.kept)
        );
        for (version, count) in &self.in_use {
            text.push_str(&format!("\nrefused to destroy v{version}: {count} wallet(s) still use it"));
        }
        text
    }
}

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
