//! What commands report: how they ended (the exit code), and the reports of the long ones
//! (validate, rotate), printed as text or as one JSON document.

use crate::capabilities::report::one_line;
use std::collections::BTreeMap;

use rotor_codec::listed::{LISTED, Listed};
use serde::Serialize;

use crate::bindings::types::WalletFailure;
use crate::metrics::{Observed, WalletCheck};

/// Exit code of a command that ran to the end but left wallets that do not open or did not move.
pub const EXIT_WALLETS_FAILED: u8 = 3;

/// How a command ended when it did not fail outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done.
    Success,
    /// Done, but some wallets do not open or could not be moved.
    WalletsFailed,
    /// The command printed its result, which reports problems (exit 1).
    Problems,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::WalletsFailed => EXIT_WALLETS_FAILED,
            Outcome::Problems => 1,
        }
    }
}

/// A wallet that failed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The wallet's id in the table.
    pub id: String,
    /// Why it failed, e.g. why its ciphertext does not open; never holds plaintext or key material.
    pub reason: String,
}

#[derive(Debug, Serialize)]
/// What `rotor validate` prints (`--json`: this document).
pub struct ValidateReport {
    /// Wallets per KEK version: "legacy" for the seed's format, else the version number.
    pub key_versions: BTreeMap<String, u64>,
    /// Wallets read.
    pub total: u64,
    /// Wallets that open with the KEK their ciphertext names.
    pub valid: u64,
    /// Wallets that do not open (`total - valid`).
    pub invalid: u64,
    /// The ids of the wallets that do not open, as in `failures`.
    pub invalid_ids: Vec<String>,
    /// Each wallet that does not open, and why: the first 1,000 at most.
    pub failures: Vec<Failure>,
    /// Wallets that do not open beyond those in `failures`.
    pub unlisted: u64,
    /// With several targets (`[[target]]`), each table's figures; their failures are named
    /// `table/id`. Empty (and left out of the JSON) for one table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCheck>,
    /// Wall-clock time of the command, in milliseconds.
    pub duration_ms: u64,
    /// The most memory this rotor process has held (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

/// One table's share of a `validate` of several targets.
#[derive(Debug, Serialize)]
pub struct TableCheck {
    /// The table.
    pub table: String,
    /// Its wallets read.
    pub total: u64,
    /// Those that open.
    pub valid: u64,
    /// Those that do not.
    pub invalid: u64,
}

/// The process's peak resident memory, from /proc (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl ValidateReport {
    /// How the command ended.
    pub fn outcome(&self) -> Outcome {
        if self.invalid == 0 { Outcome::Success } else { Outcome::WalletsFailed }
    }

    /// The lines `rotor validate` prints without `--json`.
    pub fn human(&self) -> String {
        let versions: Vec<String> = self.key_versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        let mut text = format!(
            "{} wallets, {} open, {} do not ({} ms)\nper KEK version: {}",
            self.total,
            self.valid,
            self.invalid,
            self.duration_ms,
            if versions.is_empty() { "none".into() } else { versions.join(", ") }
        );
        for table in &self.tables {
            text.push_str(&format!(
                "\n  table {}: {} wallets, {} open, {} do not",
                table.table, table.total, table.valid, table.invalid
            ));
        }
        for failure in &self.failures {
            // A component's words: one escaped line each, whatever they hold.
            text.push_str(&format!("\n  {}: {}", one_line(&failure.id), one_line(&failure.reason)));
        }
        text.push_str(&unlisted_line(self.unlisted));
        text
    }
}

/// Failures as reports list them: the first [`LISTED`] named, every one counted.
pub type Failures = Listed<WalletFailure>;

/// Adds a report's failures (`listed` of `count`) to `all`, which keeps the first [`LISTED`]
/// by id: workers and sweeps each list their own first ones, met in id order.
pub fn add_failures(all: &mut Failures, listed: Vec<WalletFailure>, count: u64) {
    all.merge_by(listed, count, |a, b| a.id.cmp(&b.id));
}

/// Lists `odd`'s entries among `failed`, one for each (an entry for rows without a usable id
/// stands for all of them).
pub fn add_odd_rows(failed: &mut Failures, odd: &crate::store::OddRows) {
    let entries = odd.entries();
    let count = entries.len() as u64;
    add_failures(failed, entries.into_iter().map(WalletFailure::from).collect(), count);
}

/// A report's failures as the host prints them: `(count, ids, each with its reason, unlisted)`.
pub fn failure_parts(failures: Failures) -> (u64, Vec<String>, Vec<Failure>, u64) {
    let (count, unlisted) = (failures.count(), failures.unlisted());
    let (listed, _) = failures.into_parts();
    let listed: Vec<Failure> = listed.into_iter().map(|f| Failure { id: f.id, reason: f.reason }).collect();
    (count, listed.iter().map(|f| f.id.clone()).collect(), listed, unlisted)
}

/// The line that closes a list of failures cut at [`LISTED`]; empty if none was left out.
pub(crate) fn unlisted_line(unlisted: u64) -> String {
    match unlisted {
        0 => String::new(),
        n => format!("\n  … and {n} more, not listed (a report names the first {LISTED})"),
    }
}

/// Names each failed wallet `table/id`: the reports of a command over several tables, whose
/// ids may repeat from table to table.
pub fn name_by_table(table: &str, failures: &mut [WalletFailure]) {
    for failure in failures {
        failure.id = format!("{table}/{}", failure.id);
    }
}

/// A KEK version as reports name it: `legacy` for the seed's format (version 0).
pub fn version_label(version: u32) -> String {
    if version == 0 { "legacy".into() } else { version.to_string() }
}

#[derive(Debug, Serialize)]
/// What `rotor rotate` and `rotor rollback` print (`--json`: this document).
pub struct RotateReport {
    /// The rotation's journal id; 0 if a dry run had no unfinished rotation to name.
    pub rotation_id: u64,
    /// The KEK version the wallets were on when the rotation started (0: the seed's legacy format).
    pub from_version: u32,
    /// The KEK version the wallets move to.
    pub to_version: u32,
    /// Wallets in the table.
    pub total: u64,
    /// Wallets this command moved (a dry run: would move) to `to_version`.
    pub rotated: u64,
    /// Wallets already on `to_version` (a resumed rotation).
    pub unchanged: u64,
    /// Wallets that could not be moved; they stay on their old KEK.
    pub failed: u64,
    /// The ids of the failed wallets, as in `failures`.
    pub failed_ids: Vec<String>,
    /// Each failed wallet, and why: the first 1,000 at most.
    pub failures: Vec<Failure>,
    /// Failed wallets beyond those in `failures`.
    pub unlisted: u64,
    /// Nothing was stored: neither a new KEK in Vault nor any wallet.
    pub dry_run: bool,
    /// Each wallet's data key was replaced too, not only re-wrapped; a resumed rotation keeps what
    /// it began with.
    pub reencrypt: bool,
    /// For a rollback: the earlier KEK version the wallets went back to.
    pub restored_version: Option<u32>,
    /// Wall-clock time of the command, in milliseconds.
    pub duration_ms: u64,
    /// `rotated` per second of `duration_ms`.
    pub wallets_per_second: f64,
    /// Hex sha256 of the component that ran.
    pub component_sha256: String,
    /// The most memory this rotor process has held (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

impl RotateReport {
    /// What the metrics learn from this run: its wallets left behind, and (unless a dry run)
    /// the rotation's exact duration.
    pub fn observed(&self) -> Observed {
        Observed {
            check: Some(WalletCheck::now(self.failed)),
            rotation: (!self.dry_run)
                .then(|| (self.rotation_id, std::time::Duration::from_millis(self.duration_ms))),
        }
    }

    /// How the command ended.
    pub fn outcome(&self) -> Outcome {
        if self.failed == 0 { Outcome::Success } else { Outcome::WalletsFailed }
    }

    /// The lines `rotor rotate` and `rotor rollback` print without `--json`.
    pub fn human(&self) -> String {
        let verb = if self.dry_run { "would move" } else { "moved" };
        let mut text = format!(
            "{}{} #{}: KEK v{} -> v{}: {verb} {} of {} wallets ({} already on v{}), {} failed, in {} ms ({:.0} wallets/s)",
            if self.dry_run { "dry run, nothing stored: " } else { "" },
            match self.restored_version {
                Some(v) => format!("rollback to the key of v{v}, rotation"),
                None => "rotation".into(),
            },
            self.rotation_id,
            self.from_version,
            self.to_version,
            self.rotated,
            self.total,
            self.unchanged,
            self.to_version,
            self.failed,
            self.duration_ms,
            self.wallets_per_second,
        );
        for failure in &self.failures {
            text.push_str(&format!(
                "\n  left untouched: {}: {}",
                one_line(&failure.id),
                one_line(&failure.reason)
            ));
        }
        text.push_str(&unlisted_line(self.unlisted));
        text
    }
}

/// Prints a report as the one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("reports serialize"));
}
