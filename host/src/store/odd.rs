//! Rows rotor cannot hand to a component: a NULL or non-text ciphertext, an id that is NULL (or,
//! on SQLite, not text), a wallet whose new ciphertext is over `limits.max-value-kib`. Each is
//! left exactly as it is and reported by id with what to do, and the run goes on; a command
//! collects them in one [`OddRows`] shared by all its instances and lists them in its report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A row left untouched, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OddRow {
    /// The row's id, or for rows rotor cannot address a label such as `(null id)`.
    pub id: String,
    /// What is odd about it and what to do.
    pub reason: String,
    /// How many rows the entry stands for (more than one only for rows without a usable id).
    pub rows: u64,
}

impl OddRow {
    /// A row whose ciphertext is NULL.
    pub fn null_ciphertext(id: String, column: &str) -> OddRow {
        OddRow {
            id,
            reason: format!(
                "its `{column}` is NULL: there is no wallet to open or move; rotor left the row as it is \
                 (store the wallet's ciphertext there, or delete the row)"
            ),
            rows: 1,
        }
    }

    /// A row whose ciphertext is a value of SQLite type `sql_type` (not text), `bytes` long.
    pub fn not_text_ciphertext(id: String, column: &str, sql_type: &str, bytes: Option<i64>) -> OddRow {
        let size = bytes.map(|n| format!(" of {n} bytes")).unwrap_or_default();
        OddRow {
            id,
            reason: format!(
                "its `{column}` is {} {sql_type}{size}, not text: rotor reads and writes ciphertexts as text \
                 and left the row as it is; if it holds a wallet's text, store it as text \
                 (UPDATE … SET \"{column}\" = CAST(\"{column}\" AS TEXT) WHERE typeof(\"{column}\") = '{sql_type}') \
                 and run rotor again",
                article(sql_type)
            ),
            rows: 1,
        }
    }

    /// A row whose ciphertext is text but not UTF-8.
    pub fn not_utf8_ciphertext(id: String, column: &str) -> OddRow {
        OddRow {
            id,
            reason: format!(
                "its `{column}` is text that is not valid UTF-8, so it is no ciphertext rotor wrote or reads; \
                 rotor left the row as it is (restore the wallet's ciphertext, or delete the row)"
            ),
            rows: 1,
        }
    }

    /// `count` rows whose id is NULL (`sql_type` "null") or, on SQLite, of a type other than text.
    pub fn unaddressable(column: &str, sql_type: &str, count: u64) -> OddRow {
        let (id, what) = if sql_type == "null" {
            ("(null id)".to_owned(), "a NULL".to_owned())
        } else {
            (format!("({sql_type} id)"), format!("{} {sql_type} (not text)", article(sql_type)))
        };
        OddRow {
            id,
            reason: format!(
                "{count} row(s) have {what} `{column}`; rotor cannot address them, so it read none of them \
                 and left them as they are: give each a text id (or delete them), then run rotor again"
            ),
            rows: count,
        }
    }

    /// A wallet whose new ciphertext, `bytes` long, is over the limit of `max_kib` KiB.
    pub fn over_limit(id: String, bytes: usize, max_kib: u64) -> OddRow {
        let needed = (bytes as u64).div_ceil(1024);
        OddRow {
            id,
            reason: format!(
                "its new ciphertext is {bytes} bytes, over the limit of {max_kib} KiB (limits.max-value-kib): \
                 it was left untouched on its old KEK; raise `max-value-kib` under [limits] in rotor.toml \
                 (to at least {needed}) and run `rotor rotate` again to move it"
            ),
            rows: 1,
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// The odd rows one command met, deduplicated by id (a row met again, in the final sweep or a
/// retry, is listed once). Cloning shares the collection.
#[derive(Clone, Debug, Default)]
pub struct OddRows(Arc<Mutex<Collected>>);

#[derive(Debug, Default)]
struct Collected {
    rows: BTreeMap<String, OddRow>,
    /// Rows without a usable id are counted with one query per collection, not per batch.
    unaddressable_counted: bool,
}

impl OddRows {
    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A panic elsewhere cannot leave the map half-updated: inserts are single calls.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `row` (once: a row met again keeps its first entry, and is logged once).
    pub fn record(&self, row: OddRow) {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.lock().rows.entry(row.id.clone()) {
            tracing::warn!(id = %row.id, reason = %row.reason, "row left untouched");
            slot.insert(row);
        }
    }

    /// `true` the first time only: whoever gets it counts the rows without a usable id.
    pub(crate) fn first_to_count_unaddressable(&self) -> bool {
        !std::mem::replace(&mut self.lock().unaddressable_counted, true)
    }

    /// Entries collected so far, in id order.
    pub fn entries(&self) -> Vec<OddRow> {
        self.lock().rows.values().cloned().collect()
    }

    /// No odd row has been collected.
    pub fn is_empty(&self) -> bool {
        self.lock().rows.is_empty()
    }

    /// The rows the entries stand for.
    pub fn rows(&self) -> u64 {
        self.lock().rows.values().map(|row| row.rows).sum()
    }

    /// Whether `id` was met, and why it is odd.
    pub fn reason(&self, id: &str) -> Option<String> {
        self.lock().rows.get(id).map(|row| row.reason.clone())
    }

    /// Adds `other`'s entries to these.
    pub fn absorb(&self, other: &OddRows) {
        if Arc::ptr_eq(&self.0, &other.0) {
            return;
        }
        let entries = other.entries();
        self.lock().rows.extend(entries.into_iter().map(|row| (row.id.clone(), row)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplicated_by_id_and_counted_by_rows() {
        let odd = OddRows::default();
        odd.record(OddRow::null_ciphertext("a".into(), "ciphertext"));
        odd.record(OddRow::null_ciphertext("a".into(), "ciphertext"));
        odd.record(OddRow::unaddressable("id", "null", 3));
        assert_eq!(odd.entries().len(), 2);
        assert_eq!(odd.rows(), 4);
        assert!(odd.first_to_count_unaddressable());
        assert!(!odd.clone().first_to_count_unaddressable());
        odd.absorb(&odd.clone());
        let other = OddRows::default();
        other.record(OddRow::over_limit("b".into(), 2 << 20, 1024));
        odd.absorb(&other);
        assert_eq!(odd.entries().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["(null id)", "a", "b"]);
        assert!(odd.reason("b").unwrap().contains("max-value-kib"), "{:?}", odd.reason("b"));
    }
}
