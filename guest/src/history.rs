//! `history`: rotor's journal merged with the seed's archives, newest first.

use crate::Failure;
use crate::bindings::exports::rotor::kek::operations::{HistoryEntry, KeyLocation};
use crate::bindings::rotor::kek::{journal, keys};
use crate::keyring::{archive_folder, key_error};

pub(crate) fn history(at: &KeyLocation) -> Result<Vec<HistoryEntry>, Failure> {
    let mut entries: Vec<HistoryEntry> = journal::rotations()?
        .into_iter()
        .map(|rotation| HistoryEntry {
            source: "rotor".into(),
            archived_at: None,
            archive_path: None,
            rotation: Some(rotation),
        })
        .collect();
    let folder = archive_folder(&at.key_path);
    let entries_in_vault = keys::archive_entries(&at.key_path).map_err(key_error)?;
    // The seed names each archive after the Unix time in milliseconds when it was made.
    for millis in entries_in_vault.iter().filter_map(|entry| entry.name.parse::<u64>().ok()) {
        entries.push(HistoryEntry {
            source: "seed-archive".into(),
            archived_at: Some(rfc3339_utc(millis / 1000)),
            archive_path: Some(format!("{folder}{millis}")),
            rotation: None,
        });
    }
    entries.sort_by(|a, b| when(b).cmp(when(a)));
    Ok(entries)
}

fn when(entry: &HistoryEntry) -> &str {
    match (&entry.rotation, &entry.archived_at) {
        (Some(rotation), _) => &rotation.started_at,
        (None, Some(at)) => at,
        (None, None) => "",
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian calendar).
fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_the_seed_archive_stamp() {
        // The seed's archive `ibn/encryption-key-archive/1768363055263`.
        assert_eq!(super::rfc3339_utc(1_768_363_055), "2026-01-14T03:57:35Z");
        assert_eq!(super::rfc3339_utc(0), "1970-01-01T00:00:00Z");
    }
}
