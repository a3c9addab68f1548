//! The application's wallet table as rotor sees it: its names, its rows, and what a batch
//! replaces.

use std::fmt;

use super::{OddRow, StoreError};

/// Where the wallets are: table and column names, validated as plain SQL identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletTable {
    /// The wallet table's name.
    pub table: String,
    /// The column holding each wallet's id (text, unique).
    pub id_column: String,
    /// The column holding each wallet's ciphertext (text).
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

    /// The names as SQL may splice them: double-quoted, so that PostgreSQL keeps their case
    /// (`"Wallets"`, Sequelize's default, is not `wallets`). [`WalletTable::new`] allows no
    /// quote inside a name, so quoting needs no escaping. Every query splices these, never
    /// the raw names.
    pub fn quoted(&self) -> QuotedNames {
        let quote = |name: &str| format!("\"{name}\"");
        QuotedNames {
            table: quote(&self.table),
            id: quote(&self.id_column),
            ciphertext: quote(&self.ciphertext_column),
        }
    }

    /// The `CREATE TABLE` an application would run; shown in errors and used by the demo.
    pub fn create_statement(&self) -> String {
        let QuotedNames { table, id, ciphertext } = self.quoted();
        format!("CREATE TABLE {table} ({id} TEXT PRIMARY KEY, {ciphertext} TEXT NOT NULL)")
    }
}

/// A [`WalletTable`]'s names quoted for SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotedNames {
    /// The quoted table name.
    pub table: String,
    /// The quoted id column.
    pub id: String,
    /// The quoted ciphertext column.
    pub ciphertext: String,
}

/// A wallet row as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletRow {
    /// The wallet's id.
    pub id: String,
    /// The wallet's ciphertext as stored: not secret, but long.
    pub ciphertext: String,
}

impl fmt::Debug for WalletRow {
    // Ciphertexts are not secret, but they are long: show their length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletRow({:?}, {} bytes)", self.id, self.ciphertext.len())
    }
}

/// A row as the checked scan reads it: its ciphertext, or why it is not one rotor can hand out.
pub(crate) struct Scanned {
    pub id: String,
    pub ciphertext: Result<String, OddRow>,
}

/// One page of [`Database::checked_scan`]: the wallets a component may be handed, and how far
/// the page reached. The odd rows it met went to the run's [`OddRows`].
#[derive(Debug, Default)]
pub struct ScanPage {
    /// The rows a component may be handed, in id order.
    pub rows: Vec<WalletRow>,
    /// The last id read, odd or not: where the next page starts.
    pub last_id: Option<String>,
    /// Rows read, odd or not: fewer than the limit means the table (or range) is exhausted.
    pub fetched: usize,
}

/// Replace `id`'s ciphertext with `replacement` only if it still is `expected`.
#[derive(Clone, Debug)]
pub struct Replacement {
    /// The wallet's id.
    pub id: String,
    /// The ciphertext the row must still hold.
    pub expected: String,
    /// The ciphertext to write.
    pub replacement: String,
}

/// What an atomic batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows replaced.
    pub replaced: u32,
    /// Ids whose row changed (or vanished) since it was read; left untouched.
    pub conflicts: Vec<String>,
}
