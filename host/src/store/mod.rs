//! The wallet store: the application's wallet table plus rotor's own bookkeeping tables, in
//! SQLite (the embedded default) or PostgreSQL, chosen by the database URL.
//!
//! rotor changes nothing in the application's table but the ciphertext column (and inserts rows
//! for `rotor seal`). Its own state lives in `rotor_*` tables that [`Database::migrate`] creates.
//!
//! Over 500 lines on purpose: [`Database`] is the one facade both backends answer, one short
//! documented method per operation; the types live in `table.rs`, `journal.rs` and `lease.rs`.

mod journal;
mod lease;
mod odd;
mod postgres;
mod quarantine;
mod shared;
mod sqlite;
mod sqlite_handle;
mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::plan::RunPlan;

pub use self::journal::{NewRotation, RotationRecord, RotationStatus, Scope, now_rfc3339};
pub use self::lease::{Checkpoint, ClaimedRange, LeaseHolder, RangeProgress, RunIdentity, unix_now};
pub use self::odd::{OddRow, OddRows};
pub use self::quarantine::{QuarantinedRow, named_version};
pub(crate) use self::table::Scanned;
pub use self::table::{
    BatchOutcome, QuotedNames, Replacement, RowFilter, RowVersion, ScanPage, TargetFormat, TenantRows,
    WalletRow, WalletTable, check_tenant_name,
};

use self::journal::{foreign, unfinished};
use self::lease::{lease_held, process_alive};
pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why a database operation failed; the texts tell the operator what to do next.
pub enum StoreError {
    #[error("{0}")]
    /// A setting rotor cannot use (e.g. an unsupported database URL), or a row it cannot read.
    Config(String),
    #[error(
        "cannot open the database {url}: {reason}; check DATABASE_URL (or --database-url) and that the database server is running"
    )]
    /// The database could not be opened.
    Connect {
        /// The database URL as given.
        url: String,
        /// The driver's error.
        reason: String,
    },
    #[error("table `{table}` not found in {url}: point --table at the wallet table, or create it: {create}")]
    /// The wallet table does not exist.
    MissingTable {
        /// The database URL as given.
        url: String,
        /// The table name the settings give.
        table: String,
        /// A `CREATE TABLE` statement for a table rotor can use.
        create: String,
    },
    #[error("column `{column}` not found in table `{table}` (it has: {found}); set --{flag}")]
    /// A column the settings name is not in the wallet table.
    MissingColumn {
        /// The wallet table.
        table: String,
        /// The column the settings name.
        column: String,
        /// The table's columns, comma-separated.
        found: String,
        /// The command-line flag that names this column, without `--`.
        flag: &'static str,
    },
    #[error(
        "column `{column}` of table `{table}` is {found}, but rotor reads and writes ids and ciphertexts as \
         text: point --{flag} at a text, varchar or char column, or, if the application stores text there, \
         change its type: {fix}"
    )]
    /// An id or ciphertext column does not hold text.
    ColumnType {
        /// The wallet table.
        table: String,
        /// The column of the wrong type.
        column: String,
        /// Its type, as the database names it.
        found: String,
        /// The command-line flag that names this column, without `--`.
        flag: &'static str,
        /// An `ALTER TABLE` statement that changes its type to text.
        fix: String,
    },
    #[error(
        "rotation #{id} is unfinished (from KEK v{from_version}, started by {started_by} at {started_at}): run `rotor rotate --resume` to finish it \
         (or `rotor abort` to close it unfinished)"
    )]
    /// An earlier rotation is still running or was interrupted; a new one may not start.
    RotationUnfinished {
        /// Its journal id.
        id: i64,
        /// The KEK version its wallets were on when it started.
        from_version: i64,
        /// `user@host (pid N)` of the rotor that began it.
        started_by: String,
        /// When it started, as the journal records it.
        started_at: String,
    },
    #[error(
        "rotation #{id} is unfinished and belongs to other settings: it moves {theirs} (started by \
         {started_by}), while this rotor is set for {ours}; finish it with the settings that began it \
         (`rotor rotate --resume`, or `rotor abort` to close it unfinished); nothing was changed"
    )]
    /// The unfinished rotation was begun for another KEK or other tables: no command of this
    /// scope resumes, aborts or works around it.
    OtherScope {
        /// Its journal id.
        id: i64,
        /// Its tables and KEK, as recorded.
        theirs: String,
        /// This run's tables and KEK.
        ours: String,
        /// `user@host (pid N)` of the rotor that began it.
        started_by: String,
    },
    #[error(
        "another rotor is moving wallets: {holder}, since {since}; its lease runs until {until} \
         (wait for it; a holder that died on this host is replaced at once, elsewhere when its lease runs out)"
    )]
    /// Another live rotor holds the rotation lease.
    LeaseHeld {
        /// `user@host (pid N)` of the holder.
        holder: String,
        /// When it took the lease.
        since: String,
        /// When the lease expires unless renewed (RFC 3339, UTC).
        until: String,
    },
    #[error(
        "this rotor lost the rotation lease to another process (it was paused past its lease); \
         nothing of the current batch was written"
    )]
    /// This process's lease was taken over by another; the batch in hand was not written.
    LeaseLost,
    #[error("database error: {}", describe(.0))]
    /// Any other error from the database driver.
    Database(#[from] sqlx::Error),
    #[error("database error: {message} (code {code}), in `{statement} …`")]
    /// SQLite's error for a statement rotor ran on a connection's own handle (a batch's
    /// transaction on SQLite).
    Sqlite {
        /// The statement's first words (never its parameters).
        statement: String,
        /// SQLite's message.
        message: String,
        /// SQLite's extended result code.
        code: i32,
    },
}

/// The database behind a run: the wallet table and rotor's journal, as seen by one
/// [`Scope`] (a KEK and the tables it protects).
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
    scope: Arc<Scope>,
}

/// Which database engine holds the tables.
#[derive(Debug, Clone)]
enum Backend {
    /// A SQLite database (`sqlite:` URLs).
    Sqlite(SqliteStore),
    /// A PostgreSQL database (`postgres:` and `postgresql:` URLs).
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($store) => $call,
            Backend::Postgres($store) => $call,
        }
    };
}

impl Database {
    /// Connects by URL (`sqlite://path`, `postgres://…`) and checks that the wallet table and its
    /// columns exist, so a typo fails here with the fix rather than mid-rotation. The scope is
    /// `table` under the default KEK, and the pool fits the default [`RunPlan`];
    /// [`Database::connect_for`] takes others.
    pub async fn connect(url: &str, table: WalletTable) -> Result<Database, StoreError> {
        Database::connect_for(url, Scope::default_for(table), &RunPlan::default()).await
    }

    /// As [`Database::connect`], for `scope` (its first target is the table rows are read from
    /// and written to), with a pool sized for `plan`'s workers.
    pub async fn connect_for(url: &str, scope: Scope, plan: &RunPlan) -> Result<Database, StoreError> {
        let connections = plan.connections();
        let table = scope
            .targets
            .first()
            .cloned()
            .ok_or_else(|| StoreError::Config("no table to read wallets from was given".into()))?;
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteStore::connect(url, table, connections).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres(PgStore::connect(url, table, connections).await?)
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL {}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        let database = Database { backend, scope: Arc::new(scope) };
        for target in database.targets() {
            target.check_table().await?;
        }
        Ok(database)
    }

    /// The same connections once for each of the scope's targets, in order, each reading and
    /// writing its own table: what a rotation of several tables walks, one after another.
    pub fn targets(&self) -> Vec<Database> {
        self.scope.targets.iter().map(|table| self.with_table(table.clone())).collect()
    }

    /// The table this handle reads and writes.
    pub fn table(&self) -> &WalletTable {
        dispatch!(self, s => s.table())
    }

    /// The rows of every target of the scope, counted by the database: a rotation's total.
    pub async fn count_targets(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for target in self.targets() {
            total += target.count().await?;
        }
        Ok(total)
    }

    /// The KEK and tables this database handle acts for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The same connections, reading and writing `table` instead (still in this scope).
    pub fn with_table(&self, table: WalletTable) -> Database {
        let backend = match &self.backend {
            Backend::Sqlite(store) => Backend::Sqlite(store.with_table(table)),
            Backend::Postgres(store) => Backend::Postgres(store.with_table(table)),
        };
        Database { backend, scope: self.scope.clone() }
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
            // SQLite keeps any value in any column: odd values are reported row by row instead.
            if let Backend::Postgres(store) = &self.backend {
                let found = store.column_type(column).await?;
                if !matches!(found.as_str(), "text" | "character varying" | "character") {
                    let quoted = table.quoted();
                    let using = if found == "bytea" {
                        format!("convert_from(\"{column}\", 'UTF8')")
                    } else {
                        format!("\"{column}\"::text")
                    };
                    return Err(StoreError::ColumnType {
                        table: table.table.clone(),
                        column: column.clone(),
                        found,
                        flag,
                        fix: format!(
                            "ALTER TABLE {} ALTER COLUMN \"{column}\" TYPE text USING {using}",
                            quoted.table
                        ),
                    });
                }
            }
        }
        if let Some(filter) = &table.filter
            && !columns.contains(&filter.column)
        {
            return Err(StoreError::Config(format!(
                "column `{}` not found in table `{}` (it has: {}): the `filter` of its [[target]] in \
                 rotor.toml names it",
                filter.column,
                table.table,
                columns.join(", ")
            )));
        }
        if let Some(rows) = &table.tenant
            && !columns.contains(&rows.column)
        {
            return Err(StoreError::Config(format!(
                "column `{}` not found in table `{}` (it has: {}): `column` under [tenants] in rotor.toml \
                 names the column that says whose each row is",
                rows.column,
                table.table,
                columns.join(", ")
            )));
        }
        Ok(())
    }

    /// The number of rows in the wallet table.
    pub async fn count(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count().await)
    }

    /// Up to `limit` rows after `after` in id order, leaving out those without a usable id.
    /// Strict: a NULL or non-text ciphertext fails the whole call, naming the row, so rotor's
    /// commands use [`Database::checked_scan`]; this one is for tests and the bench, which know
    /// their rows.
    pub async fn scan(&self, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>, StoreError> {
        let scanned = dispatch!(self, s => s.checked_scan(after, None, limit, None).await)?;
        scanned
            .into_iter()
            .map(|row| match row.ciphertext {
                Ok(ciphertext) => Ok(WalletRow { id: row.id, ciphertext }),
                Err(odd) => Err(StoreError::Config(format!("wallet {:?}: {}", odd.id, odd.reason))),
            })
            .collect()
    }

    /// Up to `limit` rows after `after` (and up to `upto`, inclusive) in id order, leaving out
    /// those whose ciphertext starts with `skip_prefix` (letters, digits and `:` only: it
    /// becomes a LIKE pattern), for rows handed to a component: a row whose ciphertext is NULL or
    /// not text is not read out but recorded in `odd` (by id, with what to do), and rows
    /// without a usable id are left out and counted into `odd` once per collection. The page
    /// says how far it reached, so that a page of odd rows only does not end a walk early.
    pub async fn checked_scan(
        &self,
        after: Option<&str>,
        upto: Option<&str>,
        limit: u32,
        skip_prefix: Option<&str>,
        odd: &OddRows,
    ) -> Result<ScanPage, StoreError> {
        if odd.first_to_count_unaddressable() {
            for row in self.unaddressable().await? {
                odd.record(row);
            }
        }
        let scanned = dispatch!(self, s => s.checked_scan(after, upto, limit, skip_prefix).await)?;
        let mut page = ScanPage {
            rows: Vec::with_capacity(scanned.len()),
            last_id: scanned.last().map(|row| row.id.clone()),
            fetched: scanned.len(),
            versions: Vec::new(),
        };
        for row in scanned {
            match row.ciphertext {
                Ok(ciphertext) => {
                    page.rows.push(WalletRow { id: row.id, ciphertext });
                    page.versions.extend(row.version);
                }
                Err(odd_row) => odd.record(odd_row),
            }
        }
        // A version for every row or none: a database either numbers them or does not.
        if page.versions.len() != page.rows.len() {
            page.versions.clear();
        }
        Ok(page)
    }

    /// Rows whose id is NULL (or, on SQLite, not text), one entry per kind: no query can
    /// name them, so the walk leaves them out.
    pub async fn unaddressable(&self) -> Result<Vec<OddRow>, StoreError> {
        let column = &dispatch!(self, s => s.table()).id_column;
        let counts = dispatch!(self, s => s.unaddressable_counts().await)?;
        Ok(counts
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(sql_type, count)| OddRow::unaddressable(column, &sql_type, count as u64))
            .collect())
    }

    /// Strict: a NULL or non-text ciphertext is an error. See [`Database::checked_get`].
    pub async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    /// One wallet's ciphertext, or why the row holds none rotor can hand out; `None` if there
    /// is no such id.
    pub async fn checked_get(&self, id: &str) -> Result<Option<Result<String, OddRow>>, StoreError> {
        Ok(dispatch!(self, s => s.checked_get(id).await)?.map(|row| row.ciphertext))
    }

    /// Writes `id`'s ciphertext, inserting the row or replacing the one there.
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
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchOutcome, StoreError> {
        dispatch!(self, s => s.replace_batch(rows, checkpoint).await)
    }

    /// Overwrites the rows' ciphertexts in one transaction, unconditionally: the plainest
    /// rewrite there is, which `rotor bench` measures as the database's limit. rotor itself
    /// always writes through [`Database::replace_batch`].
    pub async fn overwrite_batch(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        dispatch!(self, s => s.overwrite_batch(rows).await)
    }

    /// Takes the rotation lease for `ttl`, or renews it if this process holds it. A holder whose
    /// lease ran out, or that died on this host, is replaced; a live one is named in the error.
    pub async fn acquire_lease(&self, who: &RunIdentity, ttl: std::time::Duration) -> Result<(), StoreError> {
        let now = unix_now();
        let current = dispatch!(self, s => s.lease().await)?;
        let stale = match &current {
            None => None,
            Some(held) if held.token == who.lease_token || held.expires_at < now => Some(held.token.as_str()),
            Some(held) if held.host == who.host && !process_alive(held.pid, held.process_key.as_deref()) => {
                Some(held.token.as_str())
            }
            Some(held) => return Err(lease_held(held)),
        };
        let expires_at = now + ttl.as_secs() as i64;
        if dispatch!(self, s => s.take_lease(who, stale, &now_rfc3339(), expires_at).await)? {
            if let Some(held) = current.filter(|held| held.token != who.lease_token) {
                tracing::warn!(holder = %held.holder, "took over the rotation lease of a rotor that is gone");
            }
            return Ok(());
        }
        // Another process took it between our read and our write.
        match dispatch!(self, s => s.lease().await)? {
            Some(held) => Err(lease_held(&held)),
            None => Err(StoreError::Config("the rotation lease changed hands meanwhile; retry".into())),
        }
    }

    /// Extends this process's lease; `Err(LeaseLost)` if another process holds it now.
    pub async fn renew_lease(&self, token: &str, ttl: std::time::Duration) -> Result<(), StoreError> {
        let expires_at = unix_now() + ttl.as_secs() as i64;
        if dispatch!(self, s => s.renew_lease(token, expires_at).await)? {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    /// Gives the rotation lease up if `token` still holds it; does nothing otherwise, or if the
    /// lease table does not exist yet.
    pub async fn release_lease(&self, token: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.release_lease(token).await)
    }

    /// Wallets per KEK version as their prefixes name it (`legacy` for the seed's format;
    /// `null` and `not-text` for rows holding no text ciphertext, which use no KEK), counted by
    /// the database without opening anything.
    pub async fn version_counts(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let counts = dispatch!(self, s => s.version_counts().await)?;
        Ok(counts.into_iter().map(|(version, count)| (version, count as u64)).collect())
    }

    /// Who holds the rotation lease, if anyone (expired leases included).
    pub async fn lease(&self) -> Result<Option<LeaseHolder>, StoreError> {
        dispatch!(self, s => s.lease().await)
    }

    /// Records a new running rotation; refuses while another one is unfinished.
    pub async fn begin_rotation(
        &self,
        rotation: &NewRotation<'_>,
        who: &RunIdentity,
    ) -> Result<RotationRecord, StoreError> {
        if let Some(running) = self.unfinished_rotation().await? {
            return Err(unfinished(running, &self.scope));
        }
        let started_at = now_rfc3339();
        let inserted = dispatch!(self, s => s.insert_rotation(rotation, &self.scope, who, &started_at).await);
        match inserted {
            Ok(record) => Ok(record),
            // Another process won the race for the one-running-rotation slot.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                match self.unfinished_rotation().await? {
                    Some(running) => Err(unfinished(running, &self.scope)),
                    None => {
                        Err(StoreError::Config("another rotation started and ended meanwhile; retry".into()))
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Records the rotation's target KEK and, in the same transaction, splits the wallets of
    /// each target into about 64 key ranges for workers to claim. Planned before the target is
    /// visible, so a process that joins the rotation always finds its ranges.
    pub async fn set_rotation_target(&self, id: i64, to_version: i64) -> Result<(), StoreError> {
        // For one table, the count the journal took when the rotation began sizes the ranges
        // well enough; several are counted one by one.
        let total = match self.scope.targets.len() {
            1 => self.rotations().await?.into_iter().find(|r| r.id == id).map(|r| r.total.max(0) as u64),
            _ => None,
        };
        let boundaries = self.target_boundaries(total).await?;
        dispatch!(self, s => s.set_rotation_target(id, to_version, &boundaries).await)
    }

    /// Splits an unfinished rotation that has no key ranges (begun by an earlier rotor, which
    /// planned none) into ranges; a no-op if it has some. Call it holding the rotation lease.
    pub async fn plan_ranges(&self, id: i64) -> Result<(), StoreError> {
        if self.has_ranges(id).await? {
            return Ok(());
        }
        let boundaries = self.target_boundaries(None).await?;
        dispatch!(self, s => s.insert_ranges(id, &boundaries).await)
    }

    /// [`Database::range_boundaries`] of each target, in order.
    async fn target_boundaries(&self, total: Option<u64>) -> Result<Vec<Vec<String>>, StoreError> {
        let mut boundaries = Vec::new();
        for target in self.targets() {
            boundaries.push(target.range_boundaries(total).await?);
        }
        Ok(boundaries)
    }

    /// Whether the rotation's walk is planned.
    pub async fn has_ranges(&self, id: i64) -> Result<bool, StoreError> {
        match dispatch!(self, s => s.range_count(id).await) {
            Ok(count) => Ok(count > 0),
            Err(StoreError::Database(e)) if shared::is_missing_table(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The inclusive upper ends of all ranges but the last, which is unbounded (rows inserted
    /// later beyond the last boundary belong to it). About 64 ranges: enough for every worker
    /// of several processes to find one free, few enough that claiming costs nothing.
    async fn range_boundaries(&self, total: Option<u64>) -> Result<Vec<String>, StoreError> {
        let total = match total {
            Some(total) => total,
            None => self.count().await?,
        };
        let rows_per_range = (total / RANGES_PER_ROTATION).clamp(MIN_RANGE_ROWS, MAX_RANGE_ROWS);
        let mut boundaries: Vec<String> = Vec::new();
        let offset = rows_per_range as i64 - 1;
        while let Some(id) =
            dispatch!(self, s => s.nth_id_after(boundaries.last().map(String::as_str), offset).await)?
        {
            boundaries.push(id);
        }
        Ok(boundaries)
    }

    /// Claims the first key range of `rotation`'s target number `target` (its place in the
    /// scope) that is free, or whose holder's claim ran out, until `expires_at` (Unix seconds).
    pub async fn claim_range(
        &self,
        rotation: i64,
        target: usize,
        who: &RunIdentity,
        expires_at: i64,
    ) -> Result<Option<ClaimedRange>, StoreError> {
        dispatch!(self, s => s.claim_range(rotation, target, who, expires_at, unix_now()).await)
    }

    /// Frees the ranges claimed by processes of this host that are gone, so that they are
    /// walked again at once rather than when their claims run out. Returns how many.
    pub async fn release_dead_claims(&self, rotation: i64, host: &str) -> Result<usize, StoreError> {
        let claims = dispatch!(self, s => s.claims_on(rotation, host).await)?;
        let mut released = 0;
        let dead = claims.into_iter().filter(|(_, _, pid, key)| !process_alive(*pid, key.as_deref()));
        for (seq, token, pid, _) in dead {
            dispatch!(self, s => s.release_range(rotation, seq, &token).await)?;
            tracing::warn!(range = seq, pid, "took over a key range of a rotor that is gone");
            released += 1;
        }
        Ok(released)
    }

    /// Extends this process's claim on a range; `Err(LeaseLost)` if another process took it.
    pub async fn renew_range(
        &self,
        rotation: i64,
        seq: i64,
        token: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        if dispatch!(self, s => s.renew_range(rotation, seq, token, expires_at).await)? {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    /// Marks a claimed range as walked to its end.
    pub async fn finish_range(&self, rotation: i64, seq: i64, token: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.finish_range(rotation, seq, token).await)
    }

    /// Ranges of `rotation`'s target number `target` not walked to their end yet, by anyone.
    pub async fn ranges_left(&self, rotation: i64, target: usize) -> Result<u64, StoreError> {
        dispatch!(self, s => s.ranges_left(rotation, target).await)
    }

    /// How many of a process's `workers` sweep the table at once at the end of a rotation.
    /// PostgreSQL scans in its server, one backend per sweeper, so all of them sweep and the
    /// scan uses every core (0.23 to 0.34 s instead of 0.31 to 0.40 s of a re-wrap of 100,000
    /// wallets, in alternating `--quick` runs of the bench). SQLite scans in this process: a
    /// second sweeper was no faster there (0.09 to 0.14 s either way) and raised the command's
    /// peak RSS by 3 to 5 MiB, so one sweeps, the whole table in one query.
    /// Never more than `workers`.
    pub fn sweepers(&self, workers: usize) -> usize {
        match self.backend {
            Backend::Sqlite(_) => workers.min(1),
            Backend::Postgres(_) => workers,
        }
    }

    /// The key ranges of `rotation`'s target number `target`, in order: (after, upto) each, as
    /// [`ClaimedRange`] spells them.
    pub async fn range_bounds(
        &self,
        rotation: i64,
        target: usize,
    ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
        dispatch!(self, s => s.range_bounds(rotation, target).await)
    }

    /// How far the walk of `rotation` is, and who is on it.
    pub async fn range_progress(&self, rotation: i64) -> Result<RangeProgress, StoreError> {
        match dispatch!(self, s => s.range_progress(rotation, unix_now()).await) {
            Err(StoreError::Database(e)) if shared::is_missing_table(&e) => {
                Ok(RangeProgress { ranges: 0, done: 0, holders: Vec::new() })
            }
            other => other,
        }
    }

    /// Closes the rotation: its ranges' counts are folded into the journal and the ranges
    /// dropped, in one transaction. A no-op if another process closed it already.
    pub async fn finish_rotation(&self, id: i64, failed: i64) -> Result<(), StoreError> {
        let finished_at = now_rfc3339();
        dispatch!(self, s => s.close_rotation(id, RotationStatus::Finished, failed, &finished_at, None).await)?;
        Ok(())
    }

    /// Closes an unfinished rotation as aborted (`rotor abort`), the same way as
    /// [`Database::finish_rotation`]; its wallets stay where they are. Call it holding the
    /// rotation lease. `false`, changing nothing, if a range of it is claimed by a live
    /// walker at this instant (or it is no longer running): the look for walkers and the close
    /// are one statement, so a walker between two ranges at an earlier look is not missed.
    pub async fn abort_rotation(&self, id: i64) -> Result<bool, StoreError> {
        let finished_at = now_rfc3339();
        dispatch!(self, s => s.close_rotation(id, RotationStatus::Aborted, 0, &finished_at, Some(unix_now())).await)
    }

    /// Gives back every key range `token` holds, keeping how far each was walked, so that the
    /// next rotor goes on at once: what a rotor stopped by a signal does before it exits.
    pub async fn release_claims(&self, rotation: i64, token: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.release_claims(rotation, token).await)
    }

    /// The journal's running rotation, whatever its scope, if there is one (at most one runs
    /// at a time in a database).
    pub async fn unfinished_rotation(&self) -> Result<Option<RotationRecord>, StoreError> {
        Ok(self.all_rotations().await?.into_iter().find(|r| r.status == RotationStatus::Running))
    }

    /// The running rotation if it is this scope's to resume or close: one begun for another
    /// KEK or other tables is [`StoreError::OtherScope`], which names both.
    pub async fn our_unfinished_rotation(&self) -> Result<Option<RotationRecord>, StoreError> {
        match self.unfinished_rotation().await? {
            Some(running) if !running.belongs_to(&self.scope) => Err(foreign(running, &self.scope)),
            running => Ok(running),
        }
    }

    /// The rotations of this scope's KEK (and those recorded before 0.3, which named none),
    /// newest first. Empty if rotor's tables do not exist yet. A running rotation's `rotated`
    /// includes what its workers have moved so far.
    pub async fn rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        let mut rotations = self.all_rotations().await?;
        rotations.retain(|r| r.rotated_kek_of(&self.scope));
        Ok(rotations)
    }

    /// Every table that may hold rows under this scope's KEK: this run's targets, then those
    /// earlier rotations of the KEK recorded, each once.
    pub async fn kek_targets(&self) -> Result<Vec<WalletTable>, StoreError> {
        let mut tables = self.scope.targets.clone();
        for recorded in self.rotations().await?.iter().flat_map(RotationRecord::target_tables) {
            if !tables.iter().any(|t| t.table == recorded.table) {
                tables.push(recorded);
            }
        }
        Ok(tables)
    }

    /// [`Database::version_counts`] of each of this run's targets, in order.
    pub async fn version_counts_of_targets(
        &self,
    ) -> Result<Vec<(String, BTreeMap<String, u64>)>, StoreError> {
        let mut counts = Vec::new();
        for target in self.targets() {
            counts.push((target.table().table.clone(), target.version_counts().await?));
        }
        Ok(counts)
    }

    /// [`Database::version_counts_of_targets`], summed over the tables.
    pub async fn version_counts_summed(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        Ok(sum_counts(self.version_counts_of_targets().await?.iter().map(|(_, counts)| counts)))
    }

    /// [`Database::version_counts`] for each of [`Database::kek_targets`], without the rows set
    /// aside by `rotor quarantine` that still hold what was recorded: what destroying a KEK
    /// version must check. A recorded table that is gone (or lost its ciphertext column) is an
    /// error: rotor cannot tell whether rows moved elsewhere still need the version.
    pub async fn version_counts_by_target(
        &self,
    ) -> Result<Vec<(WalletTable, BTreeMap<String, u64>)>, StoreError> {
        let mut counts = Vec::new();
        for table in self.kek_targets().await? {
            let database = self.with_table(table.clone());
            let columns = dispatch!(database, s => s.columns().await)?;
            if !columns.contains(&table.ciphertext_column) {
                return Err(StoreError::Config(format!(
                    "table `{}` held rows under KEK {} (a rotation recorded it) but it, or its column `{}`, \
                     is not in this database any more: rotor cannot tell whether its rows still need an old \
                     KEK version, so none is destroyed. If the rows moved to another table, rotate that table \
                     once (`rotor --table NAME rotate`) so that the journal knows it, and keep this one until \
                     then; if the table was dropped for good, create it empty ({}) to confirm that no row \
                     needs one",
                    table.table,
                    self.scope.key_path,
                    table.ciphertext_column,
                    table.create_statement()
                )));
            }
            let mut found = database.version_counts().await?;
            // Rows set aside (`rotor quarantine`) and unchanged since need no KEK version.
            for (version, set_aside) in
                dispatch!(database, s => s.quarantined_counts(&self.scope.key_path).await)?
            {
                if let Some(count) = found.get_mut(&version) {
                    *count = count.saturating_sub(set_aside as u64);
                }
            }
            found.retain(|_, count| *count > 0);
            counts.push((table, found));
        }
        Ok(counts)
    }

    /// The rows of each of [`Database::kek_targets`] set aside under this KEK (`rotor
    /// quarantine`) that still hold the ciphertext recorded, per version they name; tables
    /// with none are left out.
    pub async fn quarantined_counts_by_target(
        &self,
    ) -> Result<Vec<(String, BTreeMap<String, u64>)>, StoreError> {
        let mut counts = Vec::new();
        for table in self.kek_targets().await? {
            let database = self.with_table(table.clone());
            let found = dispatch!(database, s => s.quarantined_counts(&self.scope.key_path).await)?;
            if !found.is_empty() {
                counts.push((table.table, found.into_iter().map(|(v, n)| (v, n as u64)).collect()));
            }
        }
        Ok(counts)
    }

    /// Records `row` as set aside under this KEK: see [`QuarantinedRow`]. The application's
    /// table is not touched.
    pub async fn quarantine_row(&self, row: &QuarantinedRow) -> Result<(), StoreError> {
        dispatch!(self, s => s.quarantine_row(&self.scope.key_path, row).await)
    }

    /// Every row set aside under this KEK.
    pub async fn quarantined(&self) -> Result<Vec<QuarantinedRow>, StoreError> {
        dispatch!(self, s => s.quarantined(&self.scope.key_path).await)
    }

    /// Takes row `id` out of this KEK's quarantine (in every table); how many records went.
    pub async fn release_quarantined(&self, id: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.release_quarantined(&self.scope.key_path, id).await)
    }

    /// [`Database::version_counts_by_target`], summed over the tables.
    pub async fn version_counts_under_kek(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        Ok(sum_counts(self.version_counts_by_target().await?.iter().map(|(_, counts)| counts)))
    }

    /// Every rotation in the database, of every scope, newest first.
    async fn all_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        let mut rotations = dispatch!(self, s => s.rotations().await)?;
        for rotation in rotations.iter_mut().filter(|r| r.status == RotationStatus::Running) {
            match dispatch!(self, s => s.range_rotated(rotation.id).await) {
                Ok(moved) => rotation.rotated += moved,
                Err(StoreError::Database(e)) if shared::is_missing_table(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rotations)
    }
}

/// Counts per KEK version of several tables, added up.
pub fn sum_counts<'a>(tables: impl IntoIterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for (version, count) in tables.into_iter().flatten() {
        *total.entry(version.clone()).or_default() += count;
    }
    total
}

/// How many key ranges a rotation's walk is split into, for workers to claim…
const RANGES_PER_ROTATION: u64 = 64;
/// …unless that makes them smaller than this (claiming costs a write)…
const MIN_RANGE_ROWS: u64 = 256;
/// …or larger than this (a range whose holder dies waits for its claim to run out).
const MAX_RANGE_ROWS: u64 = 20_000;

/// Creates a SQLite database file holding an empty wallet table, as an application would.
/// For the demo and the bench; fails if the file exists.
pub async fn create_sqlite_database(
    path: &std::path::Path,
    table: &WalletTable,
) -> Result<String, StoreError> {
    sqlite::create_database(path, table).await
}

/// The database's own message and code, without the position in the server's source code that
/// sqlx appends (an operator would read "at line N" as a line of their input).
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => match e.code() {
            Some(code) => format!("{} (code {code})", e.message()),
            None => e.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// A database URL without its password, safe for messages and logs. The credentials are what
/// comes before the authority's last `@` (a password may hold `@`; the path may too).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
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
        assert_eq!(redact_url("postgres://rotor:p@ss@db:5432/app"), "postgres://rotor:***@db:5432/app");
        assert_eq!(redact_url("postgres://db/app?user=a@b"), "postgres://db/app?user=a@b");
    }
}
