//! The wallet store: the application's wallet table plus rotor's own bookkeeping tables, in
//! SQLite (the embedded default) or PostgreSQL, chosen by the database URL.
//!
//! rotor changes nothing in the application's table but the ciphertext column (and inserts rows
//! for `rotor seal`). Its own state lives in `rotor_*` tables that [`Database::migrate`] creates.

mod postgres;
mod sqlite;

use std::fmt;

use serde::Serialize;

pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

/// Where the wallets are: table and column names, validated as plain SQL identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletTable {
    pub table: String,
    pub id_column: String,
    pub ciphertext_column: String,
}

impl Default for WalletTable {
    fn default() -> Self {
        WalletTable {
            table: "wallets".into(),
            id_column: "id".into(),
            ciphertext_column: "ciphertext".into(),
        }
    }
}

impl WalletTable {
    /// Checks the names before they are ever spliced into SQL (identifiers cannot be bound).
    pub fn new(table: &str, id_column: &str, ciphertext_column: &str) -> Result<Self, StoreError> {
        for (what, name) in
            [("table", table), ("id column", id_column), ("ciphertext column", ciphertext_column)]
        {
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.len() <= 63;
            if !valid {
                return Err(StoreError::Config(format!(
                    "{what} name {name:?} is not a plain SQL identifier (letters, digits, _; at most 63)"
                )));
            }
        }
        Ok(WalletTable {
            table: table.into(),
            id_column: id_column.into(),
            ciphertext_column: ciphertext_column.into(),
        })
    }

    /// The `CREATE TABLE` an application would run; shown in errors and used by the demo.
    pub fn create_statement(&self) -> String {
        format!(
            "CREATE TABLE {} ({} TEXT PRIMARY KEY, {} TEXT NOT NULL)",
            self.table, self.id_column, self.ciphertext_column
        )
    }
}

/// A wallet row as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletRow {
    pub id: String,
    pub ciphertext: String,
}

impl fmt::Debug for WalletRow {
    // Ciphertexts are not secret, but they are long: show their length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletRow({:?}, {} bytes)", self.id, self.ciphertext.len())
    }
}

/// Replace `id`'s ciphertext with `replacement` only if it still is `expected`.
#[derive(Clone, Debug)]
pub struct Replacement {
    pub id: String,
    pub expected: String,
    pub replacement: String,
}

/// What an atomic batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub replaced: u32,
    /// Ids whose row changed (or vanished) since it was read; left untouched.
    pub conflicts: Vec<String>,
}

/// One rotation as rotor's journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationRecord {
    pub id: i64,
    pub from_version: i64,
    pub to_version: i64,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub started_by: String,
    pub total: i64,
    pub rotated: i64,
    pub failed: i64,
    pub reencrypt: bool,
    pub component_sha256: String,
}

/// Facts about the run that the host, not the component, knows.
#[derive(Clone, Debug)]
pub struct RunIdentity {
    pub started_by: String,
    pub component_sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("table `{table}` not found in {url}: point --table at the wallet table, or create it: {create}")]
    MissingTable { url: String, table: String, create: String },
    #[error("column `{column}` not found in table `{table}` (it has: {found}); set --{flag}")]
    MissingColumn { table: String, column: String, found: String, flag: &'static str },
    #[error(
        "rotation #{id} is unfinished (from KEK v{from_version}, started by {started_by} at {started_at}): run `rotor rotate --resume` to finish it"
    )]
    RotationUnfinished { id: i64, from_version: i64, started_by: String, started_at: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The database behind a run: the wallet table and rotor's journal.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Database::Sqlite($store) => $call,
            Database::Postgres($store) => $call,
        }
    };
}

impl Database {
    /// Connects by URL (`sqlite://path`, `postgres://…`) and checks that the wallet table and its
    /// columns exist, so a typo fails here with the fix rather than mid-rotation.
    pub async fn connect(url: &str, table: WalletTable) -> Result<Database, StoreError> {
        let store = if url.starts_with("sqlite:") {
            Database::Sqlite(SqliteStore::connect(url, table).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Database::Postgres(PgStore::connect(url, table).await?)
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL {}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        store.check_table().await?;
        Ok(store)
    }

    /// Creates or upgrades rotor's own tables. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    async fn check_table(&self) -> Result<(), StoreError> {
        let (table, url, columns) = dispatch!(self, s => (s.table(), s.url(), s.columns().await?));
        if columns.is_empty() {
            return Err(StoreError::MissingTable {
                url: url.to_owned(),
                table: table.table.clone(),
                create: table.create_statement(),
            });
        }
        for (column, flag) in
            [(&table.id_column, "id-column"), (&table.ciphertext_column, "ciphertext-column")]
        {
            if !columns.iter().any(|c| c == column) {
                return Err(StoreError::MissingColumn {
                    table: table.table.clone(),
                    column: column.clone(),
                    found: columns.join(", "),
                    flag,
                });
            }
        }
        Ok(())
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count().await)
    }

    pub async fn scan(&self, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>, StoreError> {
        dispatch!(self, s => s.scan(after, limit).await)
    }

    pub async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    pub async fn put(&self, id: &str, ciphertext: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.put(id, ciphertext).await)
    }

    /// Inserts or replaces many wallets in one transaction (enrollment of test data).
    pub async fn put_many(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_many(rows).await)
    }

    /// Applies the replacements whose rows still hold their expected ciphertext, in one
    /// transaction. When `rotation` is given, its progress is checkpointed in the same
    /// transaction, so the journal never disagrees with the rows.
    pub async fn replace_batch(
        &self,
        rows: &[Replacement],
        rotation: Option<i64>,
    ) -> Result<BatchOutcome, StoreError> {
        dispatch!(self, s => s.replace_batch(rows, rotation).await)
    }

    /// Records a new running rotation; refuses while another one is unfinished.
    pub async fn begin_rotation(
        &self,
        from_version: i64,
        total: i64,
        reencrypt: bool,
        who: &RunIdentity,
    ) -> Result<RotationRecord, StoreError> {
        if let Some(running) = self.unfinished_rotation().await? {
            return Err(unfinished(running));
        }
        let started_at = now_rfc3339();
        let inserted =
            dispatch!(self, s => s.insert_rotation(from_version, total, reencrypt, who, &started_at).await);
        match inserted {
            Ok(record) => Ok(record),
            // Another process won the race for the one-running-rotation slot.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                match self.unfinished_rotation().await? {
                    Some(running) => Err(unfinished(running)),
                    None => {
                        Err(StoreError::Config("another rotation started and ended meanwhile; retry".into()))
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn set_rotation_target(&self, id: i64, to_version: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_rotation_target(id, to_version).await)
    }

    pub async fn finish_rotation(&self, id: i64, failed: i64) -> Result<(), StoreError> {
        let finished_at = now_rfc3339();
        dispatch!(self, s => s.finish_rotation(id, failed, &finished_at).await)
    }

    pub async fn unfinished_rotation(&self) -> Result<Option<RotationRecord>, StoreError> {
        Ok(self.rotations().await?.into_iter().find(|r| r.status == "running"))
    }

    /// Every rotation, newest first. Empty if rotor's tables do not exist yet.
    pub async fn rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        dispatch!(self, s => s.rotations().await)
    }

    /// The URL with any password removed, for messages.
    pub fn display_url(&self) -> &str {
        dispatch!(self, s => s.url())
    }
}

/// Creates a SQLite database file holding an empty wallet table, as an application would.
/// For the demo and the bench; fails if the file exists.
pub async fn create_sqlite_database(
    path: &std::path::Path,
    table: &WalletTable,
) -> Result<String, StoreError> {
    sqlite::create_database(path, table).await
}

fn unfinished(running: RotationRecord) -> StoreError {
    StoreError::RotationUnfinished {
        id: running.id,
        from_version: running.from_version,
        started_by: running.started_by,
        started_at: running.started_at,
    }
}

/// The journal's columns, in the order [`rotation_from_row`] reads them.
pub(crate) const ROTATION_COLUMNS: &str = "id, from_version, to_version, status, started_at, finished_at, \
     started_by, total, rotated, failed, reencrypt, component_sha256";

/// Reads a [`RotationRecord`] from a row of either database (a macro: sqlx's row types differ).
macro_rules! rotation_from_row {
    ($row:expr) => {{
        let row = $row;
        RotationRecord {
            id: row.try_get("id")?,
            from_version: row.try_get("from_version")?,
            to_version: row.try_get("to_version")?,
            status: row.try_get("status")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            started_by: row.try_get("started_by")?,
            total: row.try_get("total")?,
            rotated: row.try_get("rotated")?,
            failed: row.try_get("failed")?,
            reencrypt: row.try_get("reencrypt")?,
            component_sha256: row.try_get("component_sha256")?,
        }
    }};
}
pub(crate) use rotation_from_row;

/// `2026-11-30T07:34:44Z`: sortable as text, the same in both databases.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A database URL without its password, safe for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            if credentials.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(WalletTable::new("wallets", "id", "ciphertext").is_ok());
        assert!(WalletTable::new("_w2", "wallet_id", "enc").is_ok());
        for bad in ["", "1x", "w;drop", "w w", "w\"", &"a".repeat(64)] {
            let err = WalletTable::new(bad, "id", "c").unwrap_err().to_string();
            assert!(err.contains("not a plain SQL identifier"), "{bad}: {err}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://rotor.db"), "sqlite://rotor.db");
    }
}
