//! SQLite (the embedded default), in WAL mode so readers keep reading during a rotation.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row, Sqlite};

use super::quarantine::quarantine_queries;
use super::shared::{Dialect, Value, batch_records, shared_queries};
use super::sqlite_handle::in_transaction;
use super::{
    BatchOutcome, Checkpoint, ClaimedRange, LeaseHolder, NewRotation, OddRow, QuotedNames, RangeProgress,
    Replacement, RotationRecord, RotationStatus, RunIdentity, Scanned, StoreError, WalletRow, WalletTable,
};

/// Rows per statement of a batch's transaction: 3 bound values each, far below SQLite's
/// 32766-variable limit, and large enough that preparing the statement is amortised (a batch
/// of the default 250 is one statement).
const ROWS_PER_STATEMENT: usize = 1000;

/// Rows sqlx's SQLite worker thread may read ahead of the task consuming them. Its default, 50,
/// makes the thread stop and be woken several times per page of a walk; a page of rotor's
/// batch size and more now comes through in one go, at most a few MiB.
const ROW_BUFFER: usize = 1024;

/// Bytes of rows written between two checkpoints of the write-ahead log: about SQLite's own
/// default of 1000 pages.
const CHECKPOINT_EVERY_BYTES: u64 = 4 << 20;

/// SQLite serializes writers itself.
const MIGRATION_LOCK: Option<&str> = None;

/// SQLite serializes writers, so two claims never see the same free range.
const CLAIM_LOCK: &str = "";

/// A table's column names ($1: the table), for the columns added since its first release.
const TABLE_COLUMNS: &str = "SELECT name FROM pragma_table_info($1)";

/// SQLite's spelling of rotor's tables (`AUTOINCREMENT`: ids are never reused, even after a
/// journal row is deleted by hand).
const DIALECT: Dialect =
    Dialect { int: "INTEGER", small: "INTEGER", serial_key: "INTEGER PRIMARY KEY AUTOINCREMENT" };

pub(super) async fn create_database(path: &Path, table: &WalletTable) -> Result<String, StoreError> {
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    if path.exists() {
        return Err(StoreError::Config(format!("{} exists already; choose a new file", path.display())));
    }
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Connect { url: url.clone(), reason: e.to_string() })?;
    sqlx::query(AssertSqlSafe(table.create_statement())).execute(&mut connection).await?;
    connection.close().await?;
    Ok(url)
}

#[derive(Debug, Clone)]
/// The wallet table and rotor's journal in a SQLite file, over a connection pool.
pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
    table: WalletTable,
    /// SQLite lets one transaction write at a time and makes the others sleep and poll for the
    /// lock; this process's workers queue here instead, and each write starts the moment the
    /// previous one commits. Taken only by a task that holds its pool connection already, never
    /// the other way round (`SqliteStore::writer`): whoever holds the gate never waits for a
    /// connection, so a full pool cannot deadlock it.
    write_gate: Arc<tokio::sync::Mutex<()>>,
    /// When the write-ahead log's pages are next copied into the database file.
    checkpoints: Arc<WalCheckpoints>,
}

/// Checkpoints of the write-ahead log, mostly off the writers' path. SQLite's own
/// (`wal_autocheckpoint`) runs inside the commit that fills the log past 1000 pages, and so
/// inside this process's write gate: a rotation's writers waited on the copy of 4 MB and its
/// fsyncs (a third of the time its commits held the gate). Here a background task on a
/// connection of its own copies the log in two passes: the first beside the writers (SQLite
/// lets them commit through a PASSIVE checkpoint), the second, of what they added meanwhile,
/// behind the gate, so that the log is copied whole and the next write starts it over (a log
/// checkpointed only beside writers is never whole, and grew to the size of every page the
/// rotation wrote).
#[derive(Debug, Default)]
struct WalCheckpoints {
    /// Bytes of rows written since the last checkpoint began.
    written: AtomicU64,
    /// A checkpoint is running: no other starts until it ends.
    running: AtomicBool,
}

impl SqliteStore {
    pub(super) async fn connect(url: &str, table: WalletTable, connections: u32) -> Result<Self, StoreError> {
        let connect_error = |reason: String| StoreError::Connect { url: url.to_owned(), reason };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // An `UPDATE … FROM` sets aside every row it will write before writing it: a
            // batch's new ciphertexts, about 0.5 MB, which SQLite's default spilled to a temp
            // file of its own per statement (strace: 190 writes of 4 KiB per batch, and a
            // file created and unlinked each time). Kept in memory, they are freed with it.
            .pragma("temp_store", "memory")
            // Checkpoints run beside the writes (`WalCheckpoints`); other connections to the
            // file keep their own setting, and the last one to close checkpoints the rest.
            .pragma("wal_autocheckpoint", "0")
            .row_buffer_size(ROW_BUFFER);
        if !options.get_filename().exists() {
            return Err(connect_error(
                "the file does not exist (rotor never creates the application's database)".into(),
            ));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            // sqlx pings a connection before handing it out, to catch a dropped network link;
            // a SQLite connection is a thread of this process on a local file, so the ping is
            // only a round trip to that thread, two per batch (its read and its write): 12% of
            // a re-wrap's context switches. A connection whose thread died fails its first
            // statement instead, and the batch with it, writing nothing.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        // rotor reads ciphertexts out as UTF-8 bytes and cuts a re-wrapped row's head as bytes
        // (`Span::written`): in a UTF-16 database both would be wrong, so it is refused here.
        let encoding: String = sqlx::query_scalar("PRAGMA encoding")
            .fetch_one(&pool)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        if encoding != "UTF-8" {
            return Err(connect_error(format!(
                "its text encoding is {encoding}; rotor reads and writes wallets in SQLite's default \
                 encoding, UTF-8, only"
            )));
        }
        Ok(SqliteStore {
            pool,
            url: url.to_owned(),
            table,
            write_gate: Default::default(),
            checkpoints: Default::default(),
        })
    }

    /// A connection to write on, and then this process's turn to write: in that order, so that
    /// the gate's holder never waits for a connection and the gate is held for the transaction
    /// alone.
    async fn writer(&self) -> Result<(PoolConnection<Sqlite>, tokio::sync::MutexGuard<'_, ()>), StoreError> {
        let connection = self.pool.acquire().await?;
        Ok((connection, self.write_gate.lock().await))
    }

    /// Counts `bytes` of rows committed, and starts a checkpoint in the background once enough
    /// are in the write-ahead log and none is running. A failed checkpoint is logged: the log
    /// only grows until the next one.
    fn wrote(&self, bytes: usize) {
        let checkpoints = &self.checkpoints;
        let written = checkpoints.written.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if written < CHECKPOINT_EVERY_BYTES || checkpoints.running.swap(true, Ordering::AcqRel) {
            return;
        }
        checkpoints.written.store(0, Ordering::Relaxed);
        let (pool, gate, checkpoints) =
            (self.pool.clone(), Arc::clone(&self.write_gate), Arc::clone(checkpoints));
        tokio::spawn(async move {
            let passes = async {
                let mut connection = pool.acquire().await?;
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *connection).await?;
                let _writing = gate.lock().await;
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *connection).await
            };
            if let Err(e) = passes.await {
                tracing::warn!("checkpointing SQLite's write-ahead log failed (the next batches retry): {e}");
            }
            checkpoints.running.store(false, Ordering::Release);
        });
    }

    pub(super) async fn columns(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM pragma_table_info(?)")
            .bind(&self.table.table)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| row.get("name")).collect())
    }

    pub(super) async fn put_many(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        let (tenant_column, tenant) = self.table.tenant_insert();
        let insert = format!("INSERT INTO {table} ({idc}, {ct}{tenant_column}) ");
        // A row of another tenant is never taken over: only this tenant's rows are updated.
        let upsert = format!(
            " ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct} WHERE {}",
            self.table.rows_sql(Some(&table))
        );
        self.write_pairs(rows, &insert, &upsert, &tenant).await
    }

    /// Runs `head VALUES (id, ciphertext<extra>), … tail` over `rows`, a statement per chunk,
    /// all in one transaction, behind this process's other writers. `extra` is spliced after
    /// each pair: a tenant's literal, or nothing.
    async fn write_pairs(
        &self,
        rows: &[WalletRow],
        head: &str,
        tail: &str,
        extra: &str,
    ) -> Result<(), StoreError> {
        // Behind the gate, as every batch is: a checkpoint's last pass holds it so that the
        // log is copied whole before the next write (`WalCheckpoints`).
        let (connection, _writing) = self.writer().await?;
        in_transaction(connection, |handle| {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let values = tuples(&format!("(?, ?{extra})"), chunk.len());
                let params: Vec<Value<'_>> = chunk
                    .iter()
                    .flat_map(|row| [Value::Text(&row.id), Value::Text(&row.ciphertext)])
                    .collect();
                handle.execute(&format!("{head}VALUES {values}{tail}"), &params)?;
            }
            Ok(())
        })
        .await?;
        self.wrote(rows.iter().map(|row| row.ciphertext.len()).sum());
        Ok(())
    }

    pub(super) async fn replace_batch(
        &self,
        rows: &[Replacement],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchOutcome, StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        let current = format!("{table}.{ct}");
        let only = self.table.rows_sql(Some(&table));
        let (connection, _writing) = self.writer().await?;
        let replaced = in_transaction(connection, |handle| {
            let mut replaced = HashSet::with_capacity(rows.len());
            for (span, swaps) in Replacement::by_span(rows) {
                let (holds, value) =
                    (span.holds(&current, "v.column2"), span.written(&current, "v.column2", "v.column3"));
                for chunk in swaps.chunks(ROWS_PER_STATEMENT) {
                    // One statement per chunk: the compare-and-swap is the `holds` condition.
                    // A chunk is almost always written whole, and as one row changes at most
                    // once, a count equal to the chunk's length means every row of it was
                    // replaced (and its ids were distinct).
                    let values = tuples("(?, ?, ?)", chunk.len());
                    let params: Vec<Value<'_>> = chunk
                        .iter()
                        .flat_map(|swap| [swap.id, swap.expected, swap.replacement].map(Value::Text))
                        .collect();
                    let update = format!(
                        "UPDATE {table} SET {ct} = {value} FROM (VALUES {values}) AS v \
                         WHERE {table}.{idc} = v.column1 AND {holds} AND {only}"
                    );
                    if handle.execute(&update, &params)? == chunk.len() as u64 {
                        replaced.extend(chunk.iter().map(|swap| swap.id.to_owned()));
                        continue;
                    }
                    // Some rows changed since they were read: the replaced ones are those that
                    // hold their replacement now. A replacement is a fresh ciphertext (a
                    // re-wrap's head, a fresh wrap of its data key); were another writer to
                    // have put the very same one there, the row holds what it should either way.
                    let values = tuples("(?, ?)", chunk.len());
                    let params: Vec<Value<'_>> =
                        chunk.iter().flat_map(|swap| [swap.id, swap.replacement].map(Value::Text)).collect();
                    let holding = format!(
                        "SELECT {table}.{idc} FROM {table} JOIN (VALUES {values}) AS v \
                         ON {table}.{idc} = v.column1 AND {holds} WHERE {only}"
                    );
                    replaced.extend(handle.texts(&holding, &params)?);
                }
            }
            for record in batch_records(checkpoint, replaced.len(), rows) {
                record.check(handle.execute(record.sql, &record.values)?)?;
            }
            Ok(replaced)
        })
        .await?;
        // A re-wrap writes a head, but SQLite writes the row's pages whole.
        self.wrote(rows.iter().map(|row| row.expected.len().max(row.replacement.len())).sum());
        Ok(BatchOutcome::of(rows, &replaced))
    }

    pub(super) async fn overwrite_batch(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        let update = format!("UPDATE {table} SET {ct} = v.column2 FROM (");
        let matching =
            format!(") AS v WHERE {table}.{idc} = v.column1 AND {}", self.table.rows_sql(Some(&table)));
        self.write_pairs(rows, &update, &matching, "").await
    }

    /// What the ciphertext in `ct` names, as every count spells it: a version, `legacy`,
    /// `null` or `not-text`.
    fn version_label(ct: &str) -> String {
        format!(
            "CASE WHEN {ct} IS NULL THEN 'null' WHEN typeof({ct}) <> 'text' THEN 'not-text' \
             WHEN {ct} LIKE 'rotor:v%' THEN substr({ct}, 8, instr(substr({ct}, 8), ':') - 1) \
             ELSE 'legacy' END"
        )
    }

    /// SQLite keeps a value of any type in any column: only text ids can be named by the
    /// walk's text cursor (NULLs and numbers sort before text, BLOBs after it).
    fn addressable(id: &str) -> String {
        format!("typeof({id}) = 'text'")
    }

    fn not_text(ct: &str) -> String {
        format!("typeof({ct}) <> 'text'")
    }

    /// Text ciphertexts come out as bytes (decoded here, so that a non-UTF-8 one is one odd
    /// row, not a failed page); others are not read out, only their type and size.
    fn checked_columns(names: &QuotedNames) -> String {
        let QuotedNames { id, ciphertext: ct, .. } = names;
        format!(
            "{id}, typeof({ct}), CASE WHEN typeof({ct}) = 'text' THEN CAST({ct} AS BLOB) END, \
             CASE WHEN typeof({ct}) = 'blob' THEN length({ct}) END"
        )
    }

    fn decode_checked(&self, row: &sqlx::sqlite::SqliteRow) -> Result<Scanned, sqlx::Error> {
        let id: String = row.try_get(0)?;
        let sql_type: String = row.try_get(1)?;
        let text: Option<Vec<u8>> = row.try_get(2)?;
        let column = &self.table.ciphertext_column;
        let ciphertext = match (sql_type.as_str(), text) {
            ("text", Some(bytes)) => {
                String::from_utf8(bytes).map_err(|_| OddRow::not_utf8_ciphertext(id.clone(), column))
            }
            ("null", _) => Err(OddRow::null_ciphertext(id.clone(), column)),
            (other, _) => Err(OddRow::not_text_ciphertext(id.clone(), column, other, row.try_get(3)?)),
        };
        Ok(Scanned { id, ciphertext, version: None })
    }

    /// (type, rows) for each type of id other than text.
    pub(super) async fn unaddressable_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let QuotedNames { table, id, .. } = self.table.quoted();
        let sql = format!(
            "SELECT typeof({id}), COUNT(*) FROM {table} WHERE typeof({id}) <> 'text' AND {} GROUP BY 1",
            self.table.rows_sql(None)
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await?)
    }

    /// Journals made before 0.2 allow only `running` and `finished`. SQLite cannot change a
    /// CHECK constraint in place, so such a table is rebuilt with the current definition and
    /// its rows copied over, in the migration's transaction.
    async fn allow_aborted_status(tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<(), StoreError> {
        let definition: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'rotor_rotations'",
        )
        .fetch_one(&mut **tx)
        .await?;
        if definition.contains("'aborted'") {
            return Ok(());
        }
        let columns = super::shared::ROTATION_COLUMNS.to_owned() + ", running, last_id";
        for statement in [
            "ALTER TABLE rotor_rotations RENAME TO rotor_rotations_before_0_2".to_owned(),
            super::shared::schema(&DIALECT)[0].clone(),
            format!(
                "INSERT INTO rotor_rotations ({columns}) SELECT {columns} FROM rotor_rotations_before_0_2"
            ),
            "DROP TABLE rotor_rotations_before_0_2".to_owned(),
        ] {
            sqlx::query(AssertSqlSafe(statement)).execute(&mut **tx).await?;
        }
        Ok(())
    }

    shared_queries!(Sqlite);
    quarantine_queries!();
}

/// `count` copies of `tuple`, comma-separated: the rows of a `VALUES` list of one statement.
fn tuples(tuple: &str, count: usize) -> String {
    vec![tuple; count].join(", ")
}
