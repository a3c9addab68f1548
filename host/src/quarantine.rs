//! `rotor quarantine`: find the rows under a KEK that open under no key Vault holds and set them
//! aside, so that they stop blocking `rotor prune` and `rotor destroy` forever.
//!
//! A row that names an old KEK version but does not open (its ciphertext damaged, copied from
//! another row, or sealed under a key that was lost) can never be moved by a rotation, so the
//! version it names could never be destroyed. Quarantine records the row, and its exact
//! ciphertext, in rotor's own table; the destroy check stops counting it while it holds that
//! ciphertext; the receipt of a destruction lists what was set aside. The application's row is
//! never changed or deleted, and `--release` counts it again.

use std::collections::HashSet;

use serde::Serialize;

use crate::app::App;
use crate::keyring::KeyError;
use crate::store::{OddRow, OddRows, QuarantinedRow, RunIdentity, named_version, now_rfc3339};

/// Rows read per query while looking for rows that do not open.
const PAGE: u32 = 500;

/// What `rotor quarantine` prints (`--json`: this document).
#[derive(Debug, Serialize)]
pub struct Quarantined {
    /// `mount/path` of the KEK.
    pub key_path: String,
    /// Nothing was recorded: `set_aside` is what would be.
    pub dry_run: bool,
    /// Rows tried: every row of every table under the KEK that names no current version.
    pub checked: u64,
    /// Rows found not to open, set aside now (or, in a dry run, that would be).
    pub set_aside: Vec<QuarantinedRow>,
    /// Rows set aside before and unchanged since: left as they are.
    pub already: u64,
    /// Rows holding no text ciphertext: no key opens them and none is named, so they are
    /// reported to be fixed or deleted rather than set aside.
    pub odd_rows: Vec<OddEntry>,
}

/// A row the scan could not handle, and why.
#[derive(Debug, Serialize)]
pub struct OddEntry {
    /// Its id (or a label for rows without a usable one).
    pub id: String,
    /// What is odd about it and what to do.
    pub reason: String,
}

/// Tries every row of every table under the KEK that does not name the current version, and
/// sets aside those that open under no key Vault holds (recording nothing if `dry_run`).
pub async fn quarantine(app: &App, dry_run: bool) -> anyhow::Result<Quarantined> {
    let database = app.database();
    let mut ring = app.key_ring();
    let current = ring.current().await?.map(|held| held.version).ok_or_else(|| {
        anyhow::anyhow!(
            "{} holds no KEK: there is nothing a row could be opened with",
            app.settings().key_path
        )
    })?;
    let (skip, current) = (format!("rotor:v{current}:"), current.to_string());
    let recorded = database.quarantined().await?;
    // Looked up once per row tried: a set, not a scan of every record.
    let recorded: HashSet<(&str, &str, &str)> =
        recorded.iter().map(|r| (r.table.as_str(), r.id.as_str(), r.ciphertext.as_str())).collect();
    let quarantined_by = RunIdentity::this_process(app.component().sha256.clone()).started_by;
    let odd = OddRows::default();
    let already = database.quarantined_counts_by_target().await?;
    let mut found = Quarantined {
        key_path: database.scope().key_path.clone(),
        dry_run,
        checked: 0,
        set_aside: Vec::new(),
        already: already.iter().flat_map(|(_, counts)| counts.values()).sum(),
        odd_rows: Vec::new(),
    };
    // The tables the destroy check counts, each checked to exist: a row there is what blocks it.
    for (table, counts) in database.version_counts_by_target().await? {
        if counts.keys().all(|named| *named == current) {
            continue;
        }
        let target = database.with_table(table.clone());
        let mut after: Option<String> = None;
        loop {
            let page = target.checked_scan(after.as_deref(), None, PAGE, Some(&skip), &odd).await?;
            for row in &page.rows {
                // Set aside already (and counted in `already`): nothing to try.
                if recorded.contains(&(table.table.as_str(), row.id.as_str(), row.ciphertext.as_str())) {
                    continue;
                }
                found.checked += 1;
                let reason = match ring.open_row(&row.id, &row.ciphertext).await {
                    // It opens: a rotation moves it; nothing to set aside.
                    Ok(_) => continue,
                    Err(KeyError::Refused(why)) => why,
                    Err(e) => {
                        return Err(anyhow::anyhow!("row {:?} of table `{}`: {e}", row.id, table.table));
                    }
                };
                let entry = QuarantinedRow {
                    table: table.table.clone(),
                    id: row.id.clone(),
                    kek_version: named_version(&row.ciphertext),
                    reason,
                    quarantined_at: now_rfc3339(),
                    quarantined_by: quarantined_by.clone(),
                    ciphertext: row.ciphertext.clone(),
                };
                if !dry_run {
                    database.quarantine_row(&entry).await?;
                    tracing::warn!(id = %entry.id, table = %entry.table, "row set aside: it opens under no KEK");
                }
                found.set_aside.push(entry);
            }
            if page.fetched < PAGE as usize {
                break;
            }
            after = page.last_id;
        }
    }
    found.odd_rows =
        odd.entries().into_iter().map(|OddRow { id, reason, .. }| OddEntry { id, reason }).collect();
    Ok(found)
}

/// `rotor quarantine --list`: what is set aside under the KEK, and whether each row still
/// holds the ciphertext recorded (if not, it counts, and blocks, again).
#[derive(Debug, Serialize)]
pub struct Listed {
    /// `mount/path` of the KEK.
    pub key_path: String,
    /// Every record, by table and id.
    pub rows: Vec<ListedRow>,
}

/// One record of [`Listed`].
#[derive(Debug, Serialize)]
pub struct ListedRow {
    /// The record.
    #[serde(flatten)]
    pub row: QuarantinedRow,
    /// `set-aside` (the row holds the recorded ciphertext), `changed` (it holds another, so it
    /// counts again) or `gone` (no such row any more).
    pub state: &'static str,
}

/// Lists the records of this KEK's quarantine.
pub async fn list(app: &App) -> anyhow::Result<Listed> {
    let database = app.database();
    let tables = database.kek_targets().await?;
    let mut rows = Vec::new();
    for row in database.quarantined().await? {
        let held = match tables.iter().find(|t| t.table == row.table) {
            Some(table) => database.with_table(table.clone()).get(&row.id).await?,
            None => None,
        };
        let state = match held {
            Some(ciphertext) if ciphertext == row.ciphertext => "set-aside",
            Some(_) => "changed",
            None => "gone",
        };
        rows.push(ListedRow { row, state });
    }
    Ok(Listed { key_path: database.scope().key_path.clone(), rows })
}

/// `rotor quarantine --release ID`: counts row `id` again (prune and destroy wait for it).
pub async fn release(app: &App, id: &str) -> anyhow::Result<Released> {
    let released = app.database().release_quarantined(id).await?;
    anyhow::ensure!(
        released > 0,
        "no row {id:?} is set aside under KEK {}: `rotor quarantine --list` shows those that are",
        app.settings().key_path
    );
    Ok(Released { id: id.to_owned(), records: released })
}

/// What `rotor quarantine --release` did.
#[derive(Debug, Serialize)]
pub struct Released {
    /// The row's id.
    pub id: String,
    /// Records removed (one per table holding such an id).
    pub records: u64,
}

impl Quarantined {
    /// The lines printed without `--json`.
    pub fn human(&self) -> String {
        let verb = if self.dry_run { "would set aside" } else { "set aside" };
        let mut lines = vec![format!(
            "KEK {}: tried {} row(s) not on the current version; {verb} {} that open under no KEK Vault holds{}",
            self.key_path,
            self.checked,
            self.set_aside.len(),
            if self.already > 0 { format!(" ({} already set aside)", self.already) } else { String::new() }
        )];
        for row in &self.set_aside {
            lines.push(format!(
                "  {}/{} (names {}): {}",
                row.table,
                row.id,
                version_label(&row.kek_version),
                row.reason
            ));
        }
        for odd in &self.odd_rows {
            lines.push(format!("  not set aside: row {}: {}", odd.id, odd.reason));
        }
        if !self.set_aside.is_empty() {
            lines.push(match self.dry_run {
                true => "dry run: nothing recorded; `rotor quarantine` sets these aside".to_owned(),
                false => "prune and destroy no longer count these rows while they hold what was recorded; \
                          their rows in the database are unchanged; `rotor quarantine --release ID` counts one again"
                    .to_owned(),
            });
        }
        lines.join("\n")
    }
}

impl Listed {
    /// The lines printed without `--json`.
    pub fn human(&self) -> String {
        if self.rows.is_empty() {
            return format!("KEK {}: no row is set aside", self.key_path);
        }
        let mut lines = vec![format!("KEK {}: {} row(s) set aside", self.key_path, self.rows.len())];
        for ListedRow { row, state } in &self.rows {
            lines.push(format!(
                "  {}/{} (names {}) {state}, since {} by {}: {}",
                row.table,
                row.id,
                version_label(&row.kek_version),
                row.quarantined_at,
                row.quarantined_by,
                row.reason
            ));
        }
        lines.join("\n")
    }
}

impl Released {
    /// The line printed without `--json`.
    pub fn human(&self) -> String {
        format!("row {} counts again: prune and destroy wait for it", self.id)
    }
}

fn version_label(named: &str) -> String {
    match named.parse::<u32>() {
        Ok(version) => format!("v{version}"),
        Err(_) => named.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, version: &str) -> QuarantinedRow {
        QuarantinedRow {
            table: "wallets".into(),
            id: id.into(),
            kek_version: version.into(),
            reason: "ciphertext does not open".into(),
            quarantined_at: "2026-12-05T12:00:00Z".into(),
            quarantined_by: "ops@host (pid 7)".into(),
            ciphertext: "rotor:v2:secret-looking-bytes".into(),
        }
    }

    #[test]
    fn the_report_names_each_row_and_never_its_ciphertext() {
        let found = Quarantined {
            key_path: "secret/ibn/encryption-key".into(),
            dry_run: true,
            checked: 3,
            set_aside: vec![row("w-1", "2"), row("w-2", "legacy")],
            already: 1,
            odd_rows: vec![OddEntry { id: "w-9".into(), reason: "its `ciphertext` is NULL".into() }],
        };
        let said = found.human();
        for phrase in [
            "tried 3 row(s) not on the current version; would set aside 2",
            "(1 already set aside)",
            "wallets/w-1 (names v2): ciphertext does not open",
            "wallets/w-2 (names legacy)",
            "not set aside: row w-9",
            "dry run: nothing recorded",
        ] {
            assert!(said.contains(phrase), "{phrase:?} not in:\n{said}");
        }
        let json = serde_json::to_string(&found).unwrap();
        assert!(!said.contains("secret-looking") && !json.contains("secret-looking"), "{json}");
        let listed = Listed {
            key_path: "secret/k".into(),
            rows: vec![ListedRow { row: row("w-1", "2"), state: "changed" }],
        };
        assert!(
            listed.human().contains("wallets/w-1 (names v2) changed, since 2026-12-05T12:00:00Z by ops@host")
        );
        assert!(!serde_json::to_string(&listed).unwrap().contains("secret-looking"));
    }
}
