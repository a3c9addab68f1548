//! PostgreSQL (production). A batch is one `UPDATE … FROM UNNEST(…)` statement: three array
//! parameters, whatever the batch size, so a batch costs one round trip.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::quarantine::quarantine_queries;
use super::shared::{Dialect, Value, batch_records, shared_queries};
use super::table::Swap;
use super::{
    BatchOutcome, Checkpoint, ClaimedRange, LeaseHolder, NewRotation, OddRow, QuotedNames, RangeProgress,
    Replacement, RotationRecord, RotationStatus, RowVersion, RunIdentity, Scanned, StoreError, WalletRow,
    WalletTable, redact_url,
};

/// Held for the migration's transaction; the key is arbitrary but fixed ("rotor" in ASCII).
const MIGRATION_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(491496173426)");

/// Claiming a range skips the ones other processes are claiming at this instant, rather than
/// queueing behind them.
const CLAIM_LOCK: &str = "FOR UPDATE SKIP LOCKED";

/// A table's column names ($1: the table), for the columns added since its first release.
const TABLE_COLUMNS: &str = "SELECT column_name::text FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1";

/// PostgreSQL's spelling of rotor's tables.
const DIALECT: Dialect = Dialect { int: "BIGINT", small: "SMALLINT", serial_key: "BIGSERIAL PRIMARY KEY" };

#[derive(Debug, Clone)]
/// The wallet table and rotor's journal in PostgreSQL, over a connection pool.
pub struct PgStore {
    pool: PgPool,
    url: String,
    table: WalletTable,
}

impl PgStore {
    pub(super) async fn connect(url: &str, table: WalletTable, connections: u32) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let connect_error =
            |e: sqlx::Error| StoreError::Connect { url: shown.clone(), reason: e.to_string() };
        let options: PgConnectOptions = url.parse().map_err(connect_error)?;
        // One plain connection first: the pool retries until its timeout and then reports only
        // that it timed out, where this says why at once (refused, unknown host, bad password).
        PgConnection::connect_with(&options)
            .await
            .map_err(connect_error)?
            .close()
            .await
            .map_err(connect_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        Ok(PgStore { pool, url: shown, table })
    }

    pub(super) async fn columns(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&self.table.table)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("name")).collect())
    }

    pub(super) async fn put_many(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        // A row of another tenant is never taken over: only this tenant's rows are updated.
        let (tenant_column, tenant) = self.table.tenant_insert();
        let sql = format!(
            "INSERT INTO {table} ({idc}, {ct}{tenant_column}) SELECT v.id, v.ct{tenant} \
             FROM UNNEST($1::text[], $2::text[]) AS v(id, ct) \
             ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct} WHERE {}",
            self.table.rows_sql(Some(&table))
        );
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(10_000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
            let ciphertexts: Vec<&str> = chunk.iter().map(|r| r.ciphertext.as_str()).collect();
            sqlx::query(AssertSqlSafe(sql.as_str())).bind(ids).bind(ciphertexts).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn replace_batch(
        &self,
        rows: &[Replacement],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchOutcome, StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        let only = self.table.rows_sql(Some("w"));
        let current = format!("w.{ct}");
        // A row rotor read itself is compared by the version it was read at, bound as text
        // (the only way into an `xid`); any other by its whole ciphertext. Both are exact, and
        // the version is 4 bytes where an envelope is about 2 KB to send and compare: cutting
        // the compare to the envelope's head, as SQLite does, cost PostgreSQL more than it
        // saved (BENCHMARKS.md).
        let versions: Vec<String> =
            rows.iter().map(|row| row.read_at.map(|v| v.0.to_string()).unwrap_or_default()).collect();
        let (mut by_version, mut whole) = (Vec::new(), Vec::new());
        for (row, version) in rows.iter().zip(&versions) {
            match row.read_at {
                Some(_) => {
                    by_version.push(Swap { id: &row.id, expected: version, replacement: &row.replacement })
                }
                None => whole.push(row.whole()),
            }
        }
        let groups =
            [("w.xmin = v.expected::xid".to_owned(), by_version), (format!("{current} = v.expected"), whole)];
        let mut tx = self.pool.begin().await?;
        let mut replaced = HashSet::with_capacity(rows.len());
        for (holds, swaps) in groups {
            if swaps.is_empty() {
                continue;
            }
            let ids: Vec<&str> = swaps.iter().map(|swap| swap.id).collect();
            let replacements: Vec<&str> = swaps.iter().map(|swap| swap.replacement).collect();
            // The compare-and-swap is the `holds` condition. No RETURNING: each returned id is
            // a message of its own to read and decode. As on SQLite, a count equal to the
            // group's length means every row of it was replaced (a row changes at most once
            // per statement, so its ids were distinct too).
            let sql = format!(
                "UPDATE {table} AS w SET {ct} = v.replacement \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(id, expected, replacement) \
                 WHERE w.{idc} = v.id AND {holds} AND {only}",
            );
            let written = sqlx::query(AssertSqlSafe(sql))
                .bind(&ids)
                .bind(swaps.iter().map(|swap| swap.expected).collect::<Vec<&str>>())
                .bind(&replacements)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if written == swaps.len() as u64 {
                replaced.extend(swaps.iter().map(|swap| swap.id.to_owned()));
                continue;
            }
            // Some rows changed since they were read: the replaced ones are those that hold
            // their replacement now (a fresh ciphertext no other writer puts there).
            let sql = format!(
                "SELECT w.{idc} FROM {table} AS w JOIN UNNEST($1::text[], $2::text[]) AS v(id, replacement) \
                 ON w.{idc} = v.id AND {current} = v.replacement WHERE {only}",
            );
            let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(&ids)
                .bind(&replacements)
                .fetch_all(&mut *tx)
                .await?;
            replaced.extend(ids);
        }
        for record in batch_records(checkpoint, replaced.len(), rows) {
            let mut query = sqlx::query(record.sql);
            for &value in &record.values {
                query = match value {
                    Value::Int(value) => query.bind(value),
                    Value::Text(text) => query.bind(text),
                    Value::Null => query.bind(None::<&str>),
                };
            }
            record.check(query.execute(&mut *tx).await?.rows_affected())?;
        }
        tx.commit().await?;
        Ok(BatchOutcome::of(rows, &replaced))
    }

    pub(super) async fn overwrite_batch(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
        let sql = format!(
            "UPDATE {table} AS w SET {ct} = v.ciphertext FROM UNNEST($1::text[], $2::text[]) AS v(id, ciphertext) \
             WHERE w.{idc} = v.id AND {}",
            self.table.rows_sql(Some("w"))
        );
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let ciphertexts: Vec<&str> = rows.iter().map(|r| r.ciphertext.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(sql)).bind(ids).bind(ciphertexts).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the ciphertext in `ct` names, as every count spells it: a version, `legacy` or
    /// `null` (the column is text: `check_table` saw to it).
    fn version_label(ct: &str) -> String {
        format!(
            "CASE WHEN {ct} IS NULL THEN 'null' WHEN {ct} LIKE 'rotor:v%' \
             THEN split_part(substr({ct}, 8), ':', 1) ELSE 'legacy' END"
        )
    }

    /// The column's type as information_schema names it (`text`, `character varying`, …).
    pub(super) async fn column_type(&self, column: &str) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
        )
        .bind(&self.table.table)
        .bind(column)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Ids are text-like (`connect` checked): only NULLs cannot be named.
    fn addressable(id: &str) -> String {
        format!("{id} IS NOT NULL")
    }

    fn not_text(ct: &str) -> String {
        format!("{ct} IS NULL")
    }

    /// The row's version too (see [`RowVersion`]): `xid` has no cast to a number but through
    /// its text.
    fn checked_columns(names: &QuotedNames) -> String {
        format!("{}, {}, xmin::text::int8", names.id, names.ciphertext)
    }

    fn decode_checked(&self, row: &sqlx::postgres::PgRow) -> Result<Scanned, sqlx::Error> {
        let id: String = row.try_get(0)?;
        let ciphertext: Option<String> = row.try_get(1)?;
        let version: i64 = row.try_get(2)?;
        let column = &self.table.ciphertext_column;
        let ciphertext = ciphertext.ok_or_else(|| OddRow::null_ciphertext(id.clone(), column));
        // An xid is 32 bits: anything else is no version rotor can compare, so none is kept.
        Ok(Scanned { id, ciphertext, version: u32::try_from(version).ok().map(RowVersion) })
    }

    /// ("null", rows) for the rows whose id is NULL.
    pub(super) async fn unaddressable_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let QuotedNames { table, id, .. } = self.table.quoted();
        let sql = format!(
            "SELECT 'null', COUNT(*) FROM {table} WHERE {id} IS NULL AND {}",
            self.table.rows_sql(None)
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await?)
    }

    /// Journals made before 0.2 allow only `running` and `finished`: replace that CHECK.
    async fn allow_aborted_status(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), StoreError> {
        let definition: Option<String> = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'rotor_rotations'::regclass AND conname = 'rotor_rotations_status_check'",
        )
        .fetch_optional(&mut **tx)
        .await?;
        if definition.is_some_and(|d| d.contains("'aborted'")) {
            return Ok(());
        }
        sqlx::query(
            "ALTER TABLE rotor_rotations DROP CONSTRAINT IF EXISTS rotor_rotations_status_check, \
             ADD CONSTRAINT rotor_rotations_status_check CHECK (status IN ('running', 'finished', 'aborted'))",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    shared_queries!(sqlx::Postgres);
    quarantine_queries!();
}
