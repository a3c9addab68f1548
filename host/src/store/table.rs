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
    /// Only the rows of one tenant (`[tenants]` in rotor.toml): every query of this table reads
    /// and writes those rows alone.
    pub tenant: Option<TenantRows>,
    /// Only the rows whose column holds a value (`filter` of a `[[target]]`), as for a tenant:
    /// a table whose other rows are not under this KEK, or hold no ciphertext at all.
    pub filter: Option<RowFilter>,
    /// The layout this table's application reads (`format` of a `[[target]]`), where it is not
    /// the one the rotation writes everywhere else (`--output-format`).
    pub format: Option<TargetFormat>,
}

/// A ciphertext layout a table's application reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetFormat {
    /// rotor's versioned envelope.
    Envelope,
    /// The seed's layout (base64 of iv, tag, ciphertext), for an application not updated yet.
    Legacy,
}

impl TargetFormat {
    /// As rotor.toml and the journal spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetFormat::Envelope => "envelope",
            TargetFormat::Legacy => "legacy",
        }
    }

    /// The layout `name` spells, if any.
    pub fn parse(name: &str) -> Option<TargetFormat> {
        [TargetFormat::Envelope, TargetFormat::Legacy].into_iter().find(|f| f.as_str() == name)
    }
}

/// The rows a target covers: those whose `column` holds `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowFilter {
    /// The column compared.
    pub column: String,
    /// The value it must hold.
    pub value: String,
}

/// The rows of one tenant: those whose tenant column holds its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRows {
    /// The column naming each row's tenant.
    pub column: String,
    /// The tenant's name.
    pub tenant: String,
}

impl Default for WalletTable {
    fn default() -> Self {
        WalletTable {
            table: "wallets".into(),
            id_column: "id".into(),
            ciphertext_column: "ciphertext".into(),
            tenant: None,
            filter: None,
            format: None,
        }
    }
}

/// Checks an identifier before it is ever spliced into SQL (identifiers cannot be bound).
fn check_identifier(what: &str, name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if valid {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "{what} name {name:?} is not a plain SQL identifier (letters, digits, _; at most 63)"
    )))
}

/// Checks a tenant's name: it is spliced into SQL as a literal and into Vault paths, so it
/// holds only letters, digits, `_`, `-` and `.` (not first), at most 63 of them.
pub fn check_tenant_name(tenant: &str) -> Result<(), StoreError> {
    let mut chars = tenant.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && tenant.len() <= 63;
    if valid {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "tenant name {tenant:?} is not usable: letters, digits, `_`, `-` and `.` (a letter or digit \
         first), at most 63"
    )))
}

impl WalletTable {
    /// Checks the names before they are ever spliced into SQL (identifiers cannot be bound).
    pub fn new(table: &str, id_column: &str, ciphertext_column: &str) -> Result<Self, StoreError> {
        for (what, name) in
            [("table", table), ("id column", id_column), ("ciphertext column", ciphertext_column)]
        {
            check_identifier(what, name)?;
        }
        Ok(WalletTable {
            table: table.into(),
            id_column: id_column.into(),
            ciphertext_column: ciphertext_column.into(),
            tenant: None,
            filter: None,
            format: None,
        })
    }

    /// The same table, written in `format` whatever layout a rotation writes elsewhere.
    pub fn with_format(self, format: TargetFormat) -> Self {
        WalletTable { format: Some(format), ..self }
    }

    /// The same table, limited to the rows whose `column` holds `value`. The value is spliced
    /// into SQL and the journal as a literal, so it is held to a tenant name's characters.
    pub fn with_filter(self, column: &str, value: &str) -> Result<Self, StoreError> {
        check_identifier("filter column", column)?;
        check_tenant_name(value).map_err(|_| {
            StoreError::Config(format!(
                "filter value {value:?} is not usable: letters, digits, `_`, `-` and `.` (a letter or \
                 digit first), at most 63"
            ))
        })?;
        Ok(WalletTable { filter: Some(RowFilter { column: column.into(), value: value.into() }), ..self })
    }

    /// The same table, limited to the rows whose `column` names `tenant`.
    pub fn for_tenant(self, column: &str, tenant: &str) -> Result<Self, StoreError> {
        check_identifier("tenant column", column)?;
        check_tenant_name(tenant)?;
        Ok(WalletTable { tenant: Some(TenantRows { column: column.into(), tenant: tenant.into() }), ..self })
    }

    /// The columns this table's rows are limited to, with the value each must hold: the
    /// tenant's, then the filter's.
    fn limits(&self) -> impl Iterator<Item = (&str, &str)> {
        let tenant = self.tenant.iter().map(|t| (t.column.as_str(), t.tenant.as_str()));
        tenant.chain(self.filter.iter().map(|f| (f.column.as_str(), f.value.as_str())))
    }

    /// The SQL condition that keeps a query to this table's rows: always true without a
    /// tenant or filter, else `"column" = 'value'` for each, on the table named `qualifier`
    /// (or unqualified). Values were checked to hold no quote, so splicing them needs no
    /// escaping.
    pub fn rows_sql(&self, qualifier: Option<&str>) -> String {
        let prefix = qualifier.map(|q| format!("{q}.")).unwrap_or_default();
        let conditions: Vec<String> =
            self.limits().map(|(column, value)| format!("{prefix}\"{column}\" = '{value}'")).collect();
        if conditions.is_empty() { "1 = 1".to_owned() } else { conditions.join(" AND ") }
    }

    /// For an insert: the quoted tenant and filter columns and their values' literals
    /// (`, "tenant"` and `, 'acme'`), or two empty strings without either.
    pub fn tenant_insert(&self) -> (String, String) {
        self.limits().fold((String::new(), String::new()), |(columns, values), (column, value)| {
            (format!("{columns}, \"{column}\""), format!("{values}, '{value}'"))
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
    /// The version the row was read at, where the database numbers them.
    pub version: Option<RowVersion>,
}

/// The version a row was read at, as PostgreSQL numbers it: the id of the transaction that
/// wrote it (`xmin`). Every write of a row makes a new version with the writer's id, so a row
/// still at the version it was read at holds what was read, and comparing the number is an
/// exact compare-and-swap that sends 4 bytes instead of a whole ciphertext. (Ids wrap around
/// after 2^32 transactions: only a write by a transaction numbered exactly 2^32 after the one
/// read, between a batch's read and its write milliseconds later, would pass unseen.) SQLite
/// numbers no versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowVersion(pub(crate) u32);

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
    /// The version each of `rows` was read at, in the same order; empty where the database
    /// numbers no versions.
    pub versions: Vec<RowVersion>,
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
    /// The version the row was read at, when `expected` was read from the database by rotor
    /// itself (a walk's batch; never a component's word): the row must still be at it, which
    /// PostgreSQL compares instead of `expected`.
    pub read_at: Option<RowVersion>,
    /// Where the heads end, (in `expected`, in `replacement`), when the host made
    /// `replacement` itself from a re-wrap's new head and the rest of `expected` (see
    /// [`rotor_codec::rewrap_head_lengths`]): what follows the heads is then the same text by
    /// construction, and only the heads need checking, comparing and writing.
    pub heads: Option<(usize, usize)>,
}

/// How much of a row SQLite's batch statement compares and writes for one [`Replacement`]
/// (PostgreSQL compares a row's version instead, or the whole ciphertext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// The whole ciphertext: compared with `expected`, replaced by `replacement`.
    Whole,
    /// A re-wrap's head only (see [`rotor_codec::rewrap_heads`]): compared with the row's
    /// ciphertext up to its length, replaced by the new head, and the rest of the row kept as
    /// the database holds it. The wallet's own ciphertext, nearly all of an envelope, is then
    /// neither sent nor compared. A row whose head is as read holds the data key the host
    /// checked, so what follows it is a wallet under that key, and opens after the write as it
    /// opened before.
    Head,
}

impl Span {
    /// SQLite's condition that is true while `current` still holds `expected`.
    pub(crate) fn holds(self, current: &str, expected: &str) -> String {
        match self {
            Span::Whole => format!("{current} = {expected}"),
            Span::Head => format!("substr({current}, 1, length({expected})) = {expected}"),
        }
    }

    /// SQLite's value written over `current`, which holds `expected`. The rest of a row after
    /// a head is cut as bytes: a head is ASCII, so its length in characters is its length in
    /// bytes, and cutting text would walk the 1.8 KB that follows it character by character (5%
    /// of a re-wrap's CPU, perf). Joined with `||`, the result is text again (rotor reads rows
    /// as UTF-8, the encoding of every database it can walk: see `checked_columns`).
    pub(crate) fn written(self, current: &str, expected: &str, replacement: &str) -> String {
        match self {
            Span::Whole => replacement.to_owned(),
            Span::Head => {
                format!("{replacement} || substr(CAST({current} AS BLOB), length({expected}) + 1)")
            }
        }
    }
}

/// One replacement as a statement binds it: what of it [`Span`] says is compared and written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Swap<'a> {
    /// The wallet's id.
    pub(crate) id: &'a str,
    /// What the row must still hold: all of it, or its head.
    pub(crate) expected: &'a str,
    /// What is written in its place.
    pub(crate) replacement: &'a str,
}

impl Replacement {
    /// This replacement compared and written whole.
    pub(crate) fn whole(&self) -> Swap<'_> {
        Swap { id: &self.id, expected: &self.expected, replacement: &self.replacement }
    }

    /// `id`'s re-wrap given as its new head alone: `head` in place of the head of `expected`,
    /// the rest kept (see [`Replacement::heads`]). `Err(id)` unless `expected` is an envelope
    /// and `head` exactly the head of one that keeps its data
    /// ([`rotor_codec::rewrap_head_lengths`]).
    pub(crate) fn joined(
        id: String,
        expected: String,
        head: &str,
        read_at: Option<RowVersion>,
    ) -> Result<Replacement, String> {
        let Some(heads) = rotor_codec::rewrap_head_lengths(&expected, head) else { return Err(id) };
        let mut replacement = String::with_capacity(head.len() + expected.len() - heads.0);
        replacement.push_str(head);
        replacement.push_str(&expected[heads.0..]);
        Ok(Replacement { id, expected, replacement, read_at, heads: Some(heads) })
    }

    /// What the host's check compares: the two heads of a replacement the host joined (what
    /// follows them is the same text), else the two ciphertexts whole.
    pub fn compared(&self) -> (&str, &str) {
        match self.heads {
            Some((old, new)) => (&self.expected[..old], &self.replacement[..new]),
            None => (&self.expected, &self.replacement),
        }
    }

    /// What a statement compares and writes for this replacement: the heads of a re-wrap,
    /// otherwise the whole ciphertexts.
    pub(crate) fn swap(&self) -> (Span, Swap<'_>) {
        let heads = self.heads.or_else(|| rotor_codec::rewrap_heads(&self.expected, &self.replacement));
        match heads {
            Some((old, new)) => (
                Span::Head,
                Swap { id: &self.id, expected: &self.expected[..old], replacement: &self.replacement[..new] },
            ),
            None => (Span::Whole, self.whole()),
        }
    }

    /// `rows` grouped by [`Span`], each group in the order given, for a statement each.
    pub(crate) fn by_span(rows: &[Replacement]) -> [(Span, Vec<Swap<'_>>); 2] {
        let (mut heads, mut wholes) = (Vec::new(), Vec::new());
        for row in rows {
            match row.swap() {
                (Span::Head, swap) => heads.push(swap),
                (Span::Whole, swap) => wholes.push(swap),
            }
        }
        [(Span::Head, heads), (Span::Whole, wholes)]
    }
}

/// What an atomic batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows replaced.
    pub replaced: u32,
    /// Ids whose row changed (or vanished) since it was read; left untouched.
    pub conflicts: Vec<String>,
}

impl BatchOutcome {
    /// The outcome of a batch of `rows` of which those with ids in `replaced` were replaced;
    /// the others are its conflicts.
    pub(crate) fn of(rows: &[Replacement], replaced: &std::collections::HashSet<String>) -> BatchOutcome {
        BatchOutcome {
            replaced: replaced.len() as u32,
            conflicts: rows
                .iter()
                .filter(|row| !replaced.contains(&row.id))
                .map(|row| row.id.clone())
                .collect(),
        }
    }

    /// Adds what `other` did: the outcome of several batches, reported at once.
    pub fn absorb(&mut self, other: BatchOutcome) {
        self.replaced += other.replaced;
        self.conflicts.extend(other.conflicts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_rows_are_one_condition_and_its_name_cannot_break_out() {
        let table = WalletTable::default();
        assert_eq!(table.rows_sql(None), "1 = 1");
        assert_eq!(table.tenant_insert(), (String::new(), String::new()));
        let acme = table.clone().for_tenant("org", "acme-2.eu_west").unwrap();
        assert_eq!(acme.rows_sql(None), "\"org\" = 'acme-2.eu_west'");
        assert_eq!(acme.rows_sql(Some("w")), "w.\"org\" = 'acme-2.eu_west'");
        assert_eq!(acme.tenant_insert(), (", \"org\"".to_owned(), ", 'acme-2.eu_west'".to_owned()));
        for bad in ["acme'; DROP TABLE wallets; --", "", "-acme", "a b", "ac:me", "a=b", &"x".repeat(64)] {
            assert!(table.clone().for_tenant("org", bad).is_err(), "{bad:?} was accepted");
        }
        assert!(table.for_tenant("org\"", "acme").is_err(), "a column name with a quote was accepted");
    }

    #[test]
    fn a_filter_is_one_more_condition_and_its_value_cannot_break_out() {
        let tokens = WalletTable::default().with_filter("kind", "token").unwrap();
        assert_eq!(tokens.rows_sql(None), "\"kind\" = 'token'");
        let acme = tokens.clone().for_tenant("org", "acme").unwrap();
        assert_eq!(acme.rows_sql(Some("t")), "t.\"org\" = 'acme' AND t.\"kind\" = 'token'");
        assert_eq!(acme.tenant_insert(), (", \"org\", \"kind\"".to_owned(), ", 'acme', 'token'".to_owned()));
        for bad in ["x' OR '1'='1", "", "a b"] {
            assert!(WalletTable::default().with_filter("kind", bad).is_err(), "{bad:?} was accepted");
        }
        assert!(WalletTable::default().with_filter("ki nd", "token").is_err());
    }
}
