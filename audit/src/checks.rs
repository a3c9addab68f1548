//! The audit: walks every wallet and every KEK, and reports what it finds.

use std::collections::{BTreeMap, BTreeSet};

use rotor_codec::Format;
use rotor_codec::layout::{EnvelopeParts, LegacyParts};
use rotor_codec::listed::Listed;

use crate::bindings::exports::rotor::kek::audit::{AuditOptions, AuditReport, Finding, Severity};
use crate::bindings::rotor::kek::journal_reader;
use crate::bindings::rotor::kek::journal_types::{Error as JournalError, RotationStatus};
use crate::bindings::rotor::kek::report::{self, Level};
use crate::bindings::rotor::kek::types::{VersionCount, WalletFailure};
use crate::bindings::rotor::kek::wallet_reader;
use crate::bindings::rotor::kek::wallet_types::Error as StoreError;
use crate::keys::{Keys, envelope_opens, legacy_opens};
use crate::time::unix_seconds;

/// Largest batch asked of the host (its own cap may be lower).
const MAX_BATCH: u32 = 10_000;

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, level: Severity, check: &str, message: String) {
        let log_level = match level {
            Severity::Info => Level::Info,
            Severity::Warning => Level::Warn,
            Severity::Error => Level::Error,
        };
        report::log(log_level, &format!("{check}: {message}"));
        self.0.push(Finding { level, check: check.into(), message });
    }
}

/// The host's words, whichever kind of failure they came with: the audit reports them as they
/// are.
macro_rules! host_words {
    ($error:expr, $kind:ident: $($variant:ident)|+) => {
        match $error {
            $($kind::$variant(why))|+ => why,
        }
    };
}

fn store_error(error: StoreError) -> String {
    host_words!(error, StoreError: Denied | Refused | TooLarge | Database)
}

pub(crate) fn run(key_path: &str, options: &AuditOptions) -> Result<AuditReport, String> {
    let mut findings = Findings(Vec::new());
    let mut keys = Keys::load(key_path)?;
    for (path, why) in &keys.broken {
        findings.add(Severity::Error, "kek-archive", format!("{path} {why}"));
    }

    let current_version = keys.current.as_ref().map(|c| c.version);
    let mut kek_age_seconds = None;
    match &keys.current {
        None => findings.add(
            Severity::Error,
            "kek-present",
            format!("no usable KEK at {key_path}: no wallet can be opened or rotated"),
        ),
        Some(current) => {
            match unix_seconds(&current.created_time) {
                Some(created) => {
                    let age = options.now.saturating_sub(created);
                    kek_age_seconds = Some(age);
                    findings.add(
                        Severity::Info,
                        "kek-age",
                        format!("KEK v{} was written {} days ago", current.version, age / 86_400),
                    );
                }
                None => findings.add(
                    Severity::Warning,
                    "kek-age",
                    format!(
                        "Vault's creation time of {key_path} is not RFC 3339: {:?}",
                        current.created_time
                    ),
                ),
            }
            match keys.archived.get(&current.version) {
                Some(archived) if archived.same_key(&current.kek) => {}
                Some(_) => findings.add(
                    Severity::Error,
                    "kek-archive",
                    format!(
                        "{key_path}-archive/v{v} holds a different key than the current KEK v{v}",
                        v = current.version
                    ),
                ),
                None => findings.add(
                    Severity::Warning,
                    "kek-archive",
                    format!(
                        "the current KEK v{v} is not archived at {key_path}-archive/v{v}: once KV drops \
                         the version, wallets under it cannot be opened (the next `rotor rotate` archives it)",
                        v = current.version
                    ),
                ),
            }
        }
    }

    // Every wallet, opened with the KEK it names.
    let total_expected = wallet_reader::count().map_err(store_error)?;
    let batch_size = options.batch_size.clamp(1, MAX_BATCH);
    let mut per_version = BTreeMap::<u32, u64>::new();
    let mut unopenable = Listed::default();
    let mut missing_versions = BTreeMap::<u32, u64>::new();
    let mut from_history = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut total = 0u64;
    loop {
        let batch = wallet_reader::scan(after.as_deref(), batch_size, None).map_err(store_error)?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id.clone());
        for wallet in batch {
            total += 1;
            let format = match rotor_codec::inspect(&wallet.ciphertext) {
                Ok(format) => format,
                Err(e) => {
                    unopenable.push(WalletFailure { id: wallet.id, reason: e.to_string() });
                    continue;
                }
            };
            let opened = match format {
                Format::Envelope { kek_version } => {
                    *per_version.entry(kek_version).or_default() += 1;
                    match keys.get(key_path, kek_version)? {
                        Some((kek, history)) => {
                            if history {
                                from_history.insert(kek_version);
                            }
                            let envelope =
                                EnvelopeParts::parse(&wallet.ciphertext).map_err(|e| e.to_string());
                            envelope.and_then(|envelope| {
                                envelope_opens(kek, &envelope, &wallet.id)
                                    .then_some(())
                                    .ok_or_else(|| rotor_codec::CodecError::Authentication.to_string())
                            })
                        }
                        None => {
                            *missing_versions.entry(kek_version).or_default() += 1;
                            Err(format!("names KEK version {kek_version}, which Vault does not have"))
                        }
                    }
                }
                Format::Legacy => {
                    *per_version.entry(0).or_default() += 1;
                    let legacy = LegacyParts::parse(&wallet.ciphertext).map_err(|e| e.to_string());
                    legacy.and_then(|legacy| {
                        keys.legacy_candidates()
                            .any(|kek| legacy_opens(kek, &legacy))
                            .then_some(())
                            .ok_or_else(|| "legacy ciphertext opens under no KEK Vault has".to_owned())
                    })
                }
            };
            if let Err(reason) = opened {
                unopenable.push(WalletFailure { id: wallet.id, reason });
            }
        }
        report::progress(total, total_expected.max(total));
    }

    if unopenable.count() > 0 {
        findings.add(
            Severity::Error,
            "wallets-open",
            format!("{} of {total} wallets do not open (listed by id)", unopenable.count()),
        );
    }
    for (version, count) in &missing_versions {
        findings.add(
            Severity::Error,
            "kek-available",
            format!("{count} wallet(s) name KEK v{version}, which Vault no longer has"),
        );
    }
    for version in &from_history {
        findings.add(
            Severity::Warning,
            "kek-archive",
            format!(
                "KEK v{version} is only in KV's version history of {key_path}, not in its archive: \
                 it is lost once KV's max_versions drops it"
            ),
        );
    }
    if let Some(legacy) = per_version.get(&0) {
        findings.add(
            Severity::Warning,
            "legacy-format",
            format!("{legacy} wallet(s) are still in the seed's legacy format: `rotor rotate` converts them"),
        );
    }
    if let Some(current) = current_version {
        let behind: u64 =
            per_version.iter().filter(|(v, _)| **v != 0 && **v != current).map(|(_, n)| n).sum();
        if behind > 0 {
            findings.add(
                Severity::Warning,
                "kek-current",
                format!("{behind} wallet(s) are on an older KEK than the current v{current}"),
            );
        }
    }

    check_journal(key_path, current_version, &mut findings)?;
    let (unopenable, unopenable_count) = unopenable.into_parts();

    Ok(AuditReport {
        total,
        key_versions: per_version
            .into_iter()
            .map(|(version, count)| VersionCount { version, count })
            .collect(),
        unopenable,
        unopenable_count,
        current_version,
        kek_age_seconds,
        findings: findings.0,
    })
}

/// A journal failure, as the audit's error: the host's words say what failed.
fn journal_error(error: JournalError) -> String {
    host_words!(error, JournalError: Denied | Busy | LeaseLost | Database)
}

/// The journal agrees with Vault: no rotation left half-way, the last one made the current KEK.
fn check_journal(key_path: &str, current: Option<u32>, findings: &mut Findings) -> Result<(), String> {
    let rotations = journal_reader::rotations().map_err(journal_error)?;
    for unfinished in rotations.iter().filter(|r| r.status == RotationStatus::Running) {
        findings.add(
            Severity::Warning,
            "journal",
            format!(
                "rotation #{} (v{} -> v{}) started {} by {} is unfinished: `rotor rotate` finishes it",
                unfinished.id,
                unfinished.from_version,
                unfinished.to_version,
                unfinished.started_at,
                unfinished.started_by
            ),
        );
    }
    for aborted in rotations.iter().filter(|r| r.status == RotationStatus::Aborted) {
        findings.add(
            Severity::Info,
            "journal",
            format!(
                "rotation #{} (v{} -> v{}) was aborted after moving {} wallet(s)",
                aborted.id, aborted.from_version, aborted.to_version, aborted.rotated
            ),
        );
    }
    for failed in rotations.iter().filter(|r| r.status == RotationStatus::Finished && r.failed > 0) {
        findings.add(
            Severity::Info,
            "journal",
            format!("rotation #{} left {} wallet(s) on v{}", failed.id, failed.failed, failed.from_version),
        );
    }
    let last_finished = rotations.iter().find(|r| r.status == RotationStatus::Finished);
    if let (Some(last), Some(current)) = (last_finished, current) {
        if last.to_version > current {
            findings.add(
                Severity::Error,
                "journal",
                format!(
                    "rotation #{} moved wallets to KEK v{}, but Vault's current KEK at {key_path} is v{current}",
                    last.id, last.to_version
                ),
            );
        } else if last.to_version < current {
            findings.add(
                Severity::Warning,
                "journal",
                format!(
                    "the current KEK v{current} was written after rotor's last rotation (#{}, to v{}): \
                     by `rotor migrate-kek` or outside rotor",
                    last.id, last.to_version
                ),
            );
        }
    }
    Ok(())
}
